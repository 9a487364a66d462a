//! Abstractive summaries from any OpenAI-compatible chat endpoint
//! (`POST {base_url}/chat/completions`): Ollama, vLLM, llama.cpp server, OpenAI.

use std::time::Duration;

use serde_json::{Value, json};

use super::{BoxFuture, Summarizer, SummaryInput, SummaryText, time_span};
use crate::core::error::{Error, Result};

/// Where and how to call the chat endpoint.
#[derive(Clone, PartialEq)]
pub struct LlmConfig {
    /// Base URL including the API version, e.g. `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    /// Model name, e.g. `llama3.2`.
    pub model: String,
    /// Bearer token, if the endpoint needs one (never logged).
    pub api_key: Option<String>,
    /// Per-request timeout. Default 30 s.
    pub timeout: Duration,
}

impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Summaries written by a chat model.
pub struct OpenAiChat {
    config: LlmConfig,
    client: reqwest::Client,
}

impl OpenAiChat {
    /// A summarizer calling `config.base_url`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the HTTP client cannot be built.
    pub fn new(config: LlmConfig) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| Error::invalid("summarizer", e.to_string()))?;
        Ok(OpenAiChat { config, client })
    }
}

const SYSTEM: &str = "You summarize conversations for an AI agent's long-term memory. \
Write one paragraph of at most 120 words in the third person. Keep names, dates, places, \
numbers, decisions, preferences and plans. No preamble.";

impl Summarizer for OpenAiChat {
    fn name(&self) -> String {
        format!("openai-chat:{}/1", self.config.model)
    }

    fn summarize<'a>(&'a self, input: SummaryInput<'a>) -> BoxFuture<'a, Result<SummaryText>> {
        Box::pin(async move {
            let transcript: String = input
                .messages
                .iter()
                .map(|m| {
                    format!(
                        "[{}] {}: {}\n",
                        m.timestamp.format("%Y-%m-%d %H:%M"),
                        m.name.as_deref().unwrap_or(m.role.as_str()),
                        m.content
                    )
                })
                .collect();
            let body = json!({
                "model": self.config.model,
                "temperature": 0,
                "max_tokens": 200,
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": transcript},
                ],
            });
            let url = format!(
                "{}/chat/completions",
                self.config.base_url.trim_end_matches('/')
            );
            let mut req = self.client.post(&url).json(&body);
            if let Some(key) = &self.config.api_key {
                req = req.bearer_auth(key);
            }
            let fail = |e: String| Error::Embedding(format!("chat summarizer at {url}: {e}"));
            let resp = req.send().await.map_err(|e| fail(e.to_string()))?;
            if !resp.status().is_success() {
                return Err(fail(format!("status {}", resp.status())));
            }
            let v: Value = resp.json().await.map_err(|e| fail(e.to_string()))?;
            let text = v["choices"][0]["message"]["content"]
                .as_str()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| fail("no choices[0].message.content in the response".into()))?;
            Ok(SummaryText {
                text: format!("{} {text}", time_span(input.messages)),
                summarizer: self.name(),
            })
        })
    }
}
