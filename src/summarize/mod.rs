//! Long-term memory: summarizing windows of messages.
//!
//! [`Summarizer`] is the seam: [`Extractive`] (default: local, deterministic,
//! no network) and [`OpenAiChat`] (any OpenAI-compatible chat endpoint: Ollama,
//! vLLM, llama.cpp server, OpenAI), wrapped in [`WithFallback`] so a failing
//! endpoint degrades to extractive instead of losing the summary.

mod extractive;
mod llm;

pub use extractive::Extractive;
pub use extractive::sentences;
pub use llm::{LlmConfig, OpenAiChat};

use std::future::Future;
use std::pin::Pin;

use crate::core::error::Result;
use crate::core::types::Message;
use crate::embed::EmbedQueue;

/// A boxed, sendable future (the trait is object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a summarizer gets.
pub struct SummaryInput<'a> {
    /// The window, oldest first (at least one message).
    pub messages: &'a [Message],
    /// The engine's embedder (for extractive selection).
    pub embed: &'a EmbedQueue,
    /// Token budget of the summary (the model's `max_seq_length`).
    pub max_tokens: usize,
}

/// A summary text and who wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryText {
    /// The text.
    pub text: String,
    /// Name and version of the summarizer that produced it, e.g. `extractive-mmr/1`.
    pub summarizer: String,
}

/// Turns a window of messages into one summary text.
pub trait Summarizer: Send + Sync + 'static {
    /// Name and version, e.g. `extractive-mmr/1`.
    fn name(&self) -> String;

    /// Summarizes `input.messages`.
    ///
    /// # Errors
    /// Whatever the implementation hits (model, network); callers fall back or retry.
    fn summarize<'a>(&'a self, input: SummaryInput<'a>) -> BoxFuture<'a, Result<SummaryText>>;
}

/// Tries `primary`; on any error logs it, counts it in
/// `memoryd_summarizer_fallback_total` and uses `fallback`.
pub struct WithFallback<P, F> {
    /// Tried first.
    pub primary: P,
    /// Used when `primary` fails.
    pub fallback: F,
}

impl<P: Summarizer, F: Summarizer> Summarizer for WithFallback<P, F> {
    fn name(&self) -> String {
        self.primary.name()
    }

    fn summarize<'a>(&'a self, input: SummaryInput<'a>) -> BoxFuture<'a, Result<SummaryText>> {
        Box::pin(async move {
            let SummaryInput {
                messages,
                embed,
                max_tokens,
            } = input;
            match self
                .primary
                .summarize(SummaryInput {
                    messages,
                    embed,
                    max_tokens,
                })
                .await
            {
                Ok(done) => Ok(done),
                Err(e) => {
                    tracing::warn!(error = %e, summarizer = %self.primary.name(), "summarizer failed; falling back");
                    metrics::counter!("memoryd_summarizer_fallback_total").increment(1);
                    self.fallback
                        .summarize(SummaryInput {
                            messages,
                            embed,
                            max_tokens,
                        })
                        .await
                }
            }
        })
    }
}

/// The header stating the time span, e.g.
/// `"2023-05-08 13:56 to 2023-05-09 10:02 UTC."`.
pub fn time_span(messages: &[Message]) -> String {
    let from = messages.iter().map(|m| m.timestamp).min();
    let to = messages.iter().map(|m| m.timestamp).max();
    match (from, to) {
        (Some(f), Some(t)) if f.date_naive() == t.date_naive() && f == t => {
            format!("{} UTC.", f.format("%Y-%m-%d %H:%M"))
        }
        (Some(f), Some(t)) => format!(
            "{} to {} UTC.",
            f.format("%Y-%m-%d %H:%M"),
            t.format("%Y-%m-%d %H:%M")
        ),
        _ => String::new(),
    }
}
