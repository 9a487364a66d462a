//! Request and response bodies of the HTTP API (the JSON contract).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::core::types::{Filter, HitKind, Message, NewMessage, SearchMode, Summary};

/// `POST /v1/namespaces/{ns}/messages` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMessages {
    /// Messages to store (1 to `max_messages_per_request`, default 1,000).
    pub messages: Vec<NewMessage>,
}

/// Ids of stored messages, in request order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AddedIds {
    /// Message ids (UUID v7).
    pub ids: Vec<String>,
}

/// `POST /v1/namespaces/{ns}/search` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    /// Query text (embedded with the server's model). Exactly one of `query` and `vector`.
    #[serde(default)]
    pub query: Option<String>,
    /// Query vector of the model's dimension (384 for all-MiniLM-L6-v2); normalized before use.
    #[serde(default)]
    pub vector: Option<Vec<f32>>,
    /// Number of hits, 1..=1000. Default 10.
    #[serde(default)]
    pub k: Option<usize>,
    /// Restrictions on which messages may be returned.
    #[serde(default)]
    pub filter: Option<Filter>,
    /// Kinds of hits, any of `message`, `summary`, `context`, `board`; default
    /// `["message", "summary", "context"]`.
    #[serde(default)]
    pub kinds: Option<Vec<HitKind>>,
    /// `self` (default): this namespace only; `inherit`: this namespace and its
    /// ancestors, merged on comparable scores (each hit names its namespace).
    #[serde(default)]
    pub scope: Option<crate::core::types::SearchScope>,
    /// Ranking: `hybrid` (default: BM25 and cosine fused, plus neighbouring turns
    /// and the best-matching session),
    /// `dense` (cosine only) or `lexical` (BM25 only, text queries only).
    #[serde(default)]
    pub mode: Option<SearchMode>,
}

/// Summaries, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SummaryList {
    /// The summaries.
    pub summaries: Vec<Summary>,
}

/// `GET /v1/namespaces/{ns}/recent` query string.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecentParams {
    /// How many messages, newest first. Default 20, at most the short-term capacity.
    pub limit: Option<usize>,
}

/// `GET /v1/namespaces/{ns}/messages` query string.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// The `next` cursor of the previous page; absent for the first page.
    pub after: Option<String>,
    /// Page size, 1..=1000. Default 100.
    pub limit: Option<usize>,
}

/// Messages, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageList {
    /// The messages.
    pub messages: Vec<Message>,
}

/// `GET /v1/namespaces` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NamespaceList {
    /// Namespaces with at least one message, by name.
    pub namespaces: Vec<crate::core::types::NamespaceInfo>,
}

/// `GET /health` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or `loading` (with status 503) while the model loads.
    pub status: String,
    /// Model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Embedding dimension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dim: Option<usize>,
    /// Stored messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<usize>,
}

/// Input of `POST /v1/embeddings`: one text or a list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
}

/// `POST /v1/embeddings` body (OpenAI-compatible).
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbeddingRequest {
    /// Text(s) to embed.
    pub input: EmbeddingInput,
    /// Accepted for compatibility; the server's own model is always used and named in the response.
    #[serde(default)]
    pub model: Option<String>,
    /// Only `float` is supported.
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Accepted for compatibility (OpenAI's end-user id); ignored.
    #[serde(default)]
    pub user: Option<String>,
}

/// One embedding.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingData {
    /// Always `embedding`.
    pub object: String,
    /// Position in the input.
    pub index: usize,
    /// Unit-length vector, `[dim]`.
    pub embedding: Vec<f32>,
}

/// Token counts of an embedding request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// Tokens after truncation, special tokens included.
    pub prompt_tokens: usize,
    /// Same as `prompt_tokens`.
    pub total_tokens: usize,
}

/// `POST /v1/embeddings` response (OpenAI-compatible).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingResponse {
    /// Always `list`.
    pub object: String,
    /// One entry per input, in input order.
    pub data: Vec<EmbeddingData>,
    /// The model that produced them.
    pub model: String,
    /// Token counts.
    pub usage: Usage,
}
