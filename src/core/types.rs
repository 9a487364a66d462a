//! The data model: messages, interactions, search requests and hits.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::core::error::{Error, Result};
use crate::core::params::HybridParams;

/// Who produced a message, as in chat-completion APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A human user.
    User,
    /// The agent (model) itself.
    Assistant,
    /// A system prompt or instruction.
    System,
    /// Output of a tool call.
    Tool,
}

impl Role {
    /// All roles, in their stable numeric order (used in persisted records).
    pub const ALL: [Role; 4] = [Role::User, Role::Assistant, Role::System, Role::Tool];

    /// The lower-case name used in JSON and in embedded text.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
            Role::Tool => "tool",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(v: u8) -> Option<Role> {
        Role::ALL.get(v as usize).copied()
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Error::invalid("role", "use one of user, assistant, system, tool"))
    }
}

/// What a search hit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HitKind {
    /// One stored message.
    Message,
    /// A summary of a window of messages (long-term memory).
    Summary,
    /// A shared context entry (its key and the strings of its value).
    Context,
    /// A blackboard problem or proposal (its title and body).
    Board,
    /// A registered agent (its Agent Card's name, description and skills).
    Agent,
}

impl HitKind {
    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    /// What a search returns when it names no kinds: messages, summaries and
    /// context entries (board items only when asked for).
    pub const DEFAULT: [HitKind; 3] = [HitKind::Message, HitKind::Summary, HitKind::Context];
}

/// Which namespaces a search covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchScope {
    /// The namespace itself (the default).
    #[default]
    #[serde(rename = "self")]
    Own,
    /// The namespace and its ancestors (parent, grandparent, …), up to the first
    /// one the caller cannot read. Each namespace is ranked on its own, then the
    /// lists are merged on comparable scores (see [`crate::search::merge`]).
    Inherit,
}

/// A summary of a window of a namespace's messages: long-term memory,
/// embedded, indexed and persisted like a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Summary {
    /// Unique id (UUID v7).
    pub id: String,
    /// The namespace it summarizes.
    pub namespace: String,
    /// The summary text (at most the model's `max_seq_length` tokens, so it embeds whole).
    pub text: String,
    /// Ids of the summarized messages, oldest first.
    pub source_ids: Vec<String>,
    /// Timestamp of the earliest summarized message.
    pub from: DateTime<Utc>,
    /// Timestamp of the latest summarized message.
    pub to: DateTime<Utc>,
    /// When the summary was written.
    pub created_at: DateTime<Utc>,
    /// Summarizer name and version, e.g. `extractive-mmr/1`.
    pub summarizer: String,
}

/// A message to store. Only `role` and `content` are required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// Who produced it.
    pub role: Role,
    /// The speaker's name (e.g. "Caroline"); the embedded text is `"<name or role>: <content>"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The text. Must contain a non-whitespace character.
    pub content: String,
    /// When it was said (RFC 3339); defaults to the time it is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
    /// The agent this message belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The session (conversation) this message belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Free-form JSON object, returned as stored and usable in equality filters.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

impl NewMessage {
    /// A message with just a role and content.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        NewMessage {
            role,
            name: None,
            content: content.into(),
            timestamp: None,
            agent_id: None,
            session_id: None,
            metadata: Map::new(),
        }
    }

    /// Sets the speaker's name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the timestamp.
    pub fn with_timestamp(mut self, ts: DateTime<Utc>) -> Self {
        self.timestamp = Some(ts);
        self
    }

    /// Sets the session id.
    pub fn with_session(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Sets the agent id.
    pub fn with_agent(mut self, agent_id: impl Into<String>) -> Self {
        self.agent_id = Some(agent_id.into());
        self
    }

    /// Sets the metadata object.
    pub fn with_metadata(mut self, metadata: Map<String, Value>) -> Self {
        self.metadata = metadata;
        self
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    /// Unique id (UUID v7, time-ordered).
    pub id: String,
    /// The namespace it lives in.
    pub namespace: String,
    /// Who produced it.
    pub role: Role,
    /// The speaker's name, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The text.
    pub content: String,
    /// When it was said (RFC 3339, UTC).
    pub timestamp: DateTime<Utc>,
    /// The agent it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The session it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Shared by the user message and agent response stored by one `add_interaction`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_id: Option<String>,
    /// Free-form JSON object.
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

impl Message {
    /// The text that is embedded: `"<name or role>: <content>"`.
    ///
    /// Speaker attribution is worth +10 points of recall@5 on LoCoMo with
    /// all-MiniLM-L6-v2 (R@5 0.234 → 0.331, `../shared/data/README.md`).
    pub fn embedding_text(&self) -> String {
        embedding_text(self.role, self.name.as_deref(), &self.content)
    }
}

pub(crate) fn embedding_text(role: Role, name: Option<&str>, content: &str) -> String {
    format!("{}: {}", name.unwrap_or(role.as_str()), content)
}

/// One agent turn: the user's message and the agent's response, stored as two
/// messages that share an `exchange_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Interaction {
    /// The responding agent.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// What the user said.
    pub user_message: String,
    /// What the agent answered.
    pub agent_response: String,
    /// The session (conversation).
    #[serde(default)]
    pub session_id: Option<String>,
    /// Name of the user, if known (speaker attribution of the user message).
    #[serde(default)]
    pub user_name: Option<String>,
    /// When the exchange happened; defaults to now.
    #[serde(default)]
    pub timestamp: Option<DateTime<Utc>>,
    /// Copied onto both messages.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

/// Restricts a search to messages matching every given field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Only this agent's messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Only this session's messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Only messages with this role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Only messages from this speaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only messages with `timestamp >= from` (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    /// Only messages with `timestamp < to` (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
    /// Only messages whose metadata has each of these keys with an equal JSON value.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

impl Filter {
    /// True when the filter restricts nothing.
    pub fn is_empty(&self) -> bool {
        self.agent_id.is_none()
            && self.session_id.is_none()
            && self.role.is_none()
            && self.name.is_none()
            && self.from.is_none()
            && self.to.is_none()
            && self.metadata.is_empty()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from >= to
        {
            return Err(Error::invalid(
                "filter.from",
                "the time range [from, to) is empty: `from` must be earlier than `to`",
            ));
        }
        Ok(())
    }
}

/// What to search with.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// A text, embedded with the engine's model.
    Text(String),
    /// A vector of the engine's dimension; it is L2-normalized before use.
    Vector(Vec<f32>),
}

/// How a search ranks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Dense and BM25 scores fused (each normalized over the candidates), then each
    /// candidate lifted by its best neighbouring turn (unless it is long) and by the
    /// best turn of its session ([`HybridParams`]). The default.
    /// A vector query has no text to match, so it ranks as `dense`.
    #[default]
    Hybrid,
    /// Cosine similarity of embeddings only.
    Dense,
    /// BM25 over the namespace's words only (no embedding is computed). Needs a text query.
    Lexical,
}

impl SearchMode {
    /// `hybrid`, `dense` or `lexical`.
    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Hybrid => "hybrid",
            SearchMode::Dense => "dense",
            SearchMode::Lexical => "lexical",
        }
    }
}

impl std::str::FromStr for SearchMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "hybrid" => Ok(SearchMode::Hybrid),
            "dense" => Ok(SearchMode::Dense),
            "lexical" => Ok(SearchMode::Lexical),
            _ => Err(Error::invalid("mode", "must be hybrid, dense or lexical")),
        }
    }
}

/// A top-k search inside one namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    /// The query.
    pub query: Query,
    /// How many hits, 1..=1000.
    pub k: usize,
    /// Restrictions on which messages may be returned.
    pub filter: Filter,
    /// Kinds of hits to return; empty means [`HitKind::DEFAULT`] (messages,
    /// summaries and context entries).
    pub kinds: Vec<HitKind>,
    /// Ranking: hybrid (default), dense or lexical.
    pub mode: SearchMode,
    /// The namespace alone (default) or with its ancestors.
    pub scope: SearchScope,
    /// Overrides the engine's hybrid weights for this request (tuning, evaluation).
    pub hybrid: Option<HybridParams>,
}

impl SearchRequest {
    /// A text query for the top `k` messages, with no filter.
    pub fn text(query: impl Into<String>, k: usize) -> Self {
        SearchRequest {
            query: Query::Text(query.into()),
            k,
            filter: Filter::default(),
            kinds: Vec::new(),
            mode: SearchMode::default(),
            scope: SearchScope::Own,
            hybrid: None,
        }
    }

    /// Sets the scope (the namespace alone, or with its ancestors).
    pub fn with_scope(mut self, scope: SearchScope) -> Self {
        self.scope = scope;
        self
    }

    /// Restricts the kinds of hits.
    pub fn with_kinds(mut self, kinds: Vec<HitKind>) -> Self {
        self.kinds = kinds;
        self
    }

    /// A vector query (`[dim]`, normalized before use) for the top `k`, with no filter.
    pub fn vector(vector: Vec<f32>, k: usize) -> Self {
        SearchRequest {
            query: Query::Vector(vector),
            ..SearchRequest::text(String::new(), k)
        }
    }

    /// Sets the filter.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Sets the ranking mode.
    pub fn with_mode(mut self, mode: SearchMode) -> Self {
        self.mode = mode;
        self
    }

    /// Overrides the hybrid weights for this request.
    pub fn with_hybrid(mut self, params: HybridParams) -> Self {
        self.hybrid = Some(params);
        self
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Hit {
    /// Id of the message, summary or board item; the key of a context entry.
    pub id: String,
    /// What was found.
    pub kind: HitKind,
    /// The namespace it was found in (an ancestor's with `scope: inherit`).
    pub namespace: String,
    /// Ranking score, higher is better. `dense`: cosine similarity to the query, in
    /// [-1, 1]. `lexical`: BM25. `hybrid`: the fused score, in
    /// [0, 1 + neighbor_weight + session_weight] ([0, 2.5] with the defaults).
    pub score: f32,
    /// The message, when `kind` is `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    /// The summary, when `kind` is `summary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// The context entry (current version), when `kind` is `context`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<crate::core::context::ContextEntry>,
    /// The problem or proposal, when `kind` is `board`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub board: Option<crate::core::board::BoardItem>,
    /// The registered agent, when `kind` is `agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<crate::core::agents::AgentRecord>,
}

impl Hit {
    /// The message, if this hit is one.
    pub fn as_message(&self) -> Option<&Message> {
        self.message.as_ref()
    }

    /// The text that matched: the message content or the summary text.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow;
        match (&self.message, &self.summary, &self.context, &self.board) {
            (Some(m), ..) => Cow::Borrowed(&m.content),
            (None, Some(s), ..) => Cow::Borrowed(&s.text),
            (None, None, Some(c), _) => Cow::Owned(c.search_text()),
            (None, None, None, Some(b)) => Cow::Owned(b.search_text()),
            (None, None, None, None) => match &self.agent {
                Some(a) => Cow::Owned(crate::core::agents::card_text(&a.card)),
                None => Cow::Borrowed(""),
            },
        }
    }
}

/// Result of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchResults {
    /// Hits, best first; equal scores are ordered by insertion (older first).
    pub hits: Vec<Hit>,
    /// Time spent inside the engine, in milliseconds (embedding + index + fetch).
    pub took_ms: f64,
}

/// A namespace and its size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NamespaceInfo {
    /// Its name.
    pub name: String,
    /// Number of stored messages.
    pub messages: usize,
    /// Number of summaries.
    #[serde(default)]
    pub summaries: usize,
    /// When it was created (absent for namespaces written before the registry).
    /// Library API only: the HTTP listing keeps its `{name, messages, summaries}`
    /// shape.
    #[serde(skip)]
    pub created_at: Option<DateTime<Utc>>,
    /// The namespace it inherits from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Free-form metadata given at creation.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    /// Newest change-log sequence number (0: no change yet). Library API only,
    /// like `created_at`.
    #[serde(skip)]
    pub last_seq: u64,
}

/// Timestamps are stored with microsecond precision; truncating up front makes a
/// record returned by a write equal to the one read back.
pub(crate) fn to_micros(ts: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(ts.timestamp_micros()).unwrap_or(ts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::access::validate_namespace;

    #[test]
    fn namespace_names() {
        for ok in ["a", "user-1", "conv:26", "A.b_c-d:e", &"x".repeat(128)] {
            assert!(validate_namespace(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".a", "a/b", "..", "a b", "é", &"x".repeat(129)] {
            assert!(validate_namespace(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn embedding_text_prefers_name() {
        let mut m = NewMessage::new(Role::User, "hi");
        assert_eq!(
            embedding_text(m.role, m.name.as_deref(), &m.content),
            "user: hi"
        );
        m = m.with_name("Caroline");
        assert_eq!(
            embedding_text(m.role, m.name.as_deref(), &m.content),
            "Caroline: hi"
        );
    }
}
