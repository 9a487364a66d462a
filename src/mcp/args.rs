//! Tool arguments of the MCP server: the JSON Schemas a model reads are
//! generated from these structs (doc comments become descriptions).

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

// ---- tool arguments (JSON Schemas generated from these; doc comments become
// the descriptions a model reads) ----

/// One message to remember.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageArg {
    /// Who said it: `user`, `assistant`, `system` or `tool`. Default `user`.
    #[serde(default)]
    pub role: Option<String>,
    /// What was said.
    pub content: String,
    /// The speaker's name, if known.
    #[serde(default)]
    pub name: Option<String>,
    /// The conversation (session) it belongs to.
    #[serde(default)]
    pub session_id: Option<String>,
    /// When it was said (RFC 3339); default now.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Extra JSON fields stored with it (filterable in `recall`).
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

/// A user message and the agent's response, stored as one exchange.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InteractionArg {
    /// What the user said.
    pub user_message: String,
    /// What the agent answered.
    pub agent_response: String,
    /// The user's name, if known.
    #[serde(default)]
    pub user_name: Option<String>,
    /// The conversation (session) it belongs to.
    #[serde(default)]
    pub session_id: Option<String>,
}

/// Arguments of `remember`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RememberArgs {
    /// The memory space, e.g. a user, project or team (created if new).
    pub namespace: String,
    /// Messages to store, in order. Give these or `interaction`.
    #[serde(default)]
    pub messages: Option<Vec<MessageArg>>,
    /// One user/agent exchange to store. Give this or `messages`.
    #[serde(default)]
    pub interaction: Option<InteractionArg>,
}

/// Arguments of `recall`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecallArgs {
    /// The memory space to search.
    pub namespace: String,
    /// What to look for, in words.
    pub query: String,
    /// How many results, 1 to 1000. Default 5.
    #[serde(default)]
    pub k: Option<usize>,
    /// `hybrid` (default: meaning and words), `dense` (meaning) or `lexical` (words).
    #[serde(default)]
    pub mode: Option<String>,
    /// What to search: any of `message`, `summary`, `context`, `board`. Default
    /// messages, summaries and context entries.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
    /// `self` (default) or `inherit`: also the namespace's ancestors.
    #[serde(default)]
    pub scope: Option<String>,
    /// Only messages matching all of: `agent_id`, `session_id`, `role`, `name`,
    /// `from`/`to` (RFC 3339), `metadata` (exact values).
    #[serde(default)]
    pub filter: Option<Value>,
}

/// Arguments naming a namespace and a count.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecentArgs {
    /// The memory space.
    pub namespace: String,
    /// How many of the newest messages, 1 to 1000. Default 10.
    #[serde(default)]
    pub n: Option<usize>,
}

/// Arguments naming a namespace.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespaceArgs {
    /// The memory space.
    pub namespace: String,
}

/// Arguments of `forget`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgetArgs {
    /// The id of one message to delete.
    #[serde(default)]
    pub id: Option<String>,
    /// Delete this whole namespace and everything in it (needs the `delete`
    /// scope). Give `id` or `namespace`, not both.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// Arguments of `context_get` and `context_history`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextKeyArgs {
    /// The namespace.
    pub namespace: String,
    /// The key.
    pub key: String,
}

/// Arguments of `context_set`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextSetArgs {
    /// The namespace.
    pub namespace: String,
    /// The key (starts with a letter or digit).
    pub key: String,
    /// The new value: any JSON.
    pub value: Value,
    /// Compare-and-set: write only if the current version is this (0: only if
    /// absent). On a mismatch nothing is written and the current version is returned.
    #[serde(default)]
    pub expected_version: Option<u64>,
    /// Seconds until the entry expires.
    #[serde(default)]
    pub ttl_s: Option<u64>,
}

/// Arguments of `context_list`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextListArgs {
    /// The namespace.
    pub namespace: String,
    /// Only keys starting with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// At most this many, 1 to 1000. Default 100.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Arguments of `board_post`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BoardPostArgs {
    /// The namespace whose blackboard it goes on.
    pub namespace: String,
    /// The problem in one line.
    pub title: String,
    /// Details.
    #[serde(default)]
    pub body: Option<String>,
}

/// Arguments of `board_propose`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BoardProposeArgs {
    /// The namespace.
    pub namespace: String,
    /// The problem's id.
    pub problem_id: String,
    /// The proposed solution.
    pub body: String,
    /// How sure you are, 0 to 1.
    pub confidence: f64,
}

/// Arguments of `board_vote`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BoardVoteArgs {
    /// The namespace.
    pub namespace: String,
    /// The proposal's id.
    pub proposal_id: String,
    /// +1 for, -1 against.
    pub value: i64,
    /// Who votes (one vote per agent; a later vote replaces it).
    #[serde(default)]
    pub agent_id: Option<String>,
}

/// Arguments of `board_resolve`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BoardResolveArgs {
    /// The namespace.
    pub namespace: String,
    /// The problem's id.
    pub problem_id: String,
    /// The chosen proposal's id.
    pub proposal_id: String,
}

/// Arguments of `board_show`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BoardShowArgs {
    /// The namespace.
    pub namespace: String,
    /// A problem's id; without it, the open problems are listed.
    #[serde(default)]
    pub problem_id: Option<String>,
}

/// Arguments of `find_agents`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FindAgentsArgs {
    /// What the agent should be able to do, in words.
    pub query: String,
    /// How many, 1 to 1000. Default 5.
    #[serde(default)]
    pub k: Option<usize>,
    /// Only healthy agents (default true).
    #[serde(default)]
    pub healthy_only: Option<bool>,
}

/// Arguments of `send_to_agent`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendArgs {
    /// The recipient's agent id.
    pub to: String,
    /// Your agent id (a key bound to an agent sends as that agent).
    #[serde(default)]
    pub from: Option<String>,
    /// What kind of message: `task`, `reply`, `notice`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The message: text or any JSON.
    pub payload: Value,
    /// Ties a reply to its request.
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// 0 (lowest) to 10; default 5.
    #[serde(default)]
    pub priority: Option<u8>,
    /// Seconds until it expires undelivered.
    #[serde(default)]
    pub ttl_s: Option<u64>,
}

/// Arguments of `read_inbox`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InboxArgs {
    /// Whose inbox (your agent id).
    pub agent_id: String,
    /// Your consumer name; default `default`.
    #[serde(default)]
    pub consumer: Option<String>,
    /// At most this many, 1 to 1000. Default 20.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Arguments of `ack_inbox`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AckArgs {
    /// Whose inbox.
    pub agent_id: String,
    /// Your consumer name; default `default`.
    #[serde(default)]
    pub consumer: Option<String>,
    /// Ids of the messages you handled.
    pub ids: Vec<String>,
}
