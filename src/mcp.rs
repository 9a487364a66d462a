//! The MCP front end ([Model Context Protocol](https://modelcontextprotocol.io),
//! served with `rmcp`, the official Rust SDK): tools and resources over the
//! public [`Engine`] API, nothing else.
//!
//! Two transports share one handler, [`MemoryMcp`]:
//! - **streamable HTTP** at `/mcp` in the server's axum app (stateless, JSON
//!   responses: any node behind a load balancer can answer any request). The
//!   caller's [`Access`] is what the server's `authenticate` middleware put in
//!   the request's extensions (bearer API key, or full access on a loopback
//!   server without keys).
//! - **stdio** (`memoryd mcp --data-dir DIR`): the process owns the data
//!   directory and the local user has full access. `memoryd mcp --server URL`
//!   instead runs [`McpProxy`], which forwards every request to a running
//!   memoryd's `/mcp` (with `--token`), so several clients share one store.
//!
//! Tool results are text written for a model to read plus the same data as
//! `structuredContent`. Engine errors are tool errors (`isError: true`, text
//! `code: message`) so the model sees what to fix; malformed arguments are too
//! (rmcp turns a failed deserialization into a tool error).

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig,
};
use rmcp::model::{
    ResourceUpdatedNotificationParam, SubscribeRequestParams, SubscriptionFilter,
    UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, RunningService, SubscriptionContext};
use rmcp::{ErrorData, RoleClient, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::core::access::Access;
use crate::core::agents::{AgentFilter, InboxAck, NewMail};
use crate::core::board::{NewProblem, NewProposal, NewVote, Resolve};
use crate::core::context::ContextWrite;
use crate::core::error::Error;
use crate::core::types::{
    Filter, HitKind, Interaction, NewMessage, Role, SearchMode, SearchRequest, SearchScope,
};
use crate::engine::Engine;

/// The URI of a namespace's resource: `memoryd://namespaces/<name>`.
pub fn namespace_uri(ns: &str) -> String {
    format!("memoryd://namespaces/{ns}")
}

const URI_PREFIX: &str = "memoryd://namespaces/";

/// How the handler finds its engine: a fixed one (stdio) or the server's, which
/// answers 503 while the model loads.
#[derive(Clone)]
pub enum EngineSource {
    /// The engine this process opened.
    Fixed(Engine),
    /// The HTTP server's state.
    Server(crate::server::AppState),
}

/// The MCP server: memoryd's tools and one resource per namespace.
#[derive(Clone)]
pub struct MemoryMcp {
    source: EngineSource,
    /// The caller when no HTTP request says otherwise (stdio: full access).
    default_access: Option<Access>,
    tool_router: Arc<ToolRouter<MemoryMcp>>,
    /// Legacy (`resources/subscribe`) subscriptions of this connection: URI →
    /// the watcher's cancellation.
    legacy_subscriptions: Arc<
        parking_lot::Mutex<std::collections::HashMap<String, tokio_util::sync::CancellationToken>>,
    >,
}

/// How long one wait for a commit lasts before the watchers look again (they
/// also notice a closed subscription then).
const WATCH_TICK: std::time::Duration = std::time::Duration::from_secs(15);

/// Each readable namespace's change-log position (`last_seq`).
fn positions(engine: &Engine, access: &Access) -> std::collections::HashMap<String, u64> {
    engine
        .namespaces(access)
        .into_iter()
        .map(|n| (n.name, n.last_seq))
        .collect()
}

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

// ---- rendering ----

fn ok(text: String, data: Value) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(data);
    r
}

fn failed(e: Error) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!("{e} [{}]", e.code()))])
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn parse_enum<T: serde::de::DeserializeOwned>(
    field: &str,
    v: &str,
    allowed: &str,
) -> Result<T, Error> {
    serde_json::from_value(Value::String(v.to_owned()))
        .map_err(|_| Error::invalid(field, format!("must be one of {allowed}")))
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

impl MemoryMcp {
    /// A handler over `source`; `default_access` is the caller when the request
    /// carries none (stdio); `None` refuses such requests (errs closed).
    pub fn new(source: EngineSource, default_access: Option<Access>) -> MemoryMcp {
        MemoryMcp {
            source,
            default_access,
            tool_router: Arc::new(Self::tool_router()),
            legacy_subscriptions: Arc::default(),
        }
    }

    fn engine(&self) -> Result<Engine, Error> {
        match &self.source {
            EngineSource::Fixed(e) => Ok(e.clone()),
            EngineSource::Server(s) => s.engine_now().ok_or(Error::ModelUnavailable(
                "the embedding model is still loading; retry in a few seconds".into(),
            )),
        }
    }

    /// The caller: the authenticated `Access` of the HTTP request, else the
    /// default (stdio), else none.
    fn access(&self, ctx: &RequestContext<RoleServer>) -> Result<Access, Error> {
        if let Some(parts) = ctx.extensions.get::<axum::http::request::Parts>() {
            return parts
                .extensions
                .get::<Access>()
                .cloned()
                .ok_or_else(|| Error::Unauthorized("no credentials were checked".into()));
        }
        self.default_access
            .clone()
            .ok_or_else(|| Error::Unauthorized("no credentials".into()))
    }

    async fn run<F, Fut>(&self, ctx: &RequestContext<RoleServer>, f: F) -> CallToolResult
    where
        F: FnOnce(Engine, Access) -> Fut,
        Fut: std::future::Future<Output = Result<CallToolResult, Error>>,
    {
        let go = async {
            let engine = self.engine()?;
            let access = self.access(ctx)?;
            f(engine, access).await
        };
        go.await.unwrap_or_else(failed)
    }
}

fn render_hits(hits: &[crate::core::types::Hit]) -> String {
    if hits.is_empty() {
        return "No matching memories.".into();
    }
    let mut out = String::new();
    for (i, h) in hits.iter().enumerate() {
        let who = match (&h.message, h.kind) {
            (Some(m), _) => {
                let name = m
                    .name
                    .as_deref()
                    .map(|n| format!(" {n}"))
                    .unwrap_or_default();
                format!(
                    "{}{name}, {}",
                    m.role.as_str(),
                    m.timestamp.format("%Y-%m-%d %H:%M")
                )
            }
            (None, HitKind::Summary) => "summary".into(),
            (None, HitKind::Context) => format!("context {}", h.id),
            (None, HitKind::Board) => "board".into(),
            (None, HitKind::Agent) => format!("agent {}", h.id),
            (None, HitKind::Message) => "message".into(),
        };
        out.push_str(&format!(
            "{}. [{:.3}] ({who}) {}\n   id: {}\n",
            i + 1,
            h.score,
            clip(&h.text(), 600),
            h.id
        ));
    }
    out
}

#[tool_router]
impl MemoryMcp {
    /// Store messages (or one user/agent exchange) in long-term memory.
    #[tool(
        description = "Remember: store conversation messages (or one user/agent exchange) in a namespace's long-term memory. Each is embedded and becomes searchable with `recall` at once. Returns the new message ids.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn remember(
        &self,
        Parameters(a): Parameters<RememberArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let stored = match (a.messages, a.interaction) {
                (Some(ms), None) => {
                    let mut batch = Vec::with_capacity(ms.len());
                    for m in ms {
                        let role = match m.role.as_deref() {
                            None => Role::User,
                            Some(r) => parse_enum("role", r, "user, assistant, system, tool")?,
                        };
                        let timestamp = m
                            .timestamp
                            .as_deref()
                            .map(|t| {
                                chrono::DateTime::parse_from_rfc3339(t)
                                    .map(|t| t.with_timezone(&chrono::Utc))
                                    .map_err(|_| Error::invalid("timestamp", "must be RFC 3339"))
                            })
                            .transpose()?;
                        batch.push(NewMessage {
                            role,
                            name: m.name,
                            content: m.content,
                            timestamp,
                            agent_id: None,
                            session_id: m.session_id,
                            metadata: m.metadata.unwrap_or_default(),
                        });
                    }
                    e.add_batch(&acc, &a.namespace, batch).await?
                }
                (None, Some(it)) => {
                    e.add_interaction(
                        &acc,
                        &a.namespace,
                        Interaction {
                            agent_id: None,
                            user_message: it.user_message,
                            agent_response: it.agent_response,
                            session_id: it.session_id,
                            user_name: it.user_name,
                            timestamp: None,
                            metadata: Map::new(),
                        },
                    )
                    .await?
                }
                _ => {
                    return Err(Error::invalid(
                        "messages",
                        "give either `messages` or `interaction`",
                    ));
                }
            };
            let ids: Vec<&str> = stored.iter().map(|m| m.id.as_str()).collect();
            Ok(ok(
                format!(
                    "Remembered {} message(s) in {}: {}",
                    ids.len(),
                    a.namespace,
                    ids.join(", ")
                ),
                json!({"namespace": a.namespace, "ids": ids}),
            ))
        })
        .await
    }

    /// Search memory.
    #[tool(
        description = "Recall: search a namespace's memory for what is relevant to a query (hybrid of meaning and words by default) and return the top-k messages, summaries and shared-context entries, best first, with scores and ids.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn recall(
        &self,
        Parameters(a): Parameters<RecallArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let mut req = SearchRequest::text(a.query, a.k.unwrap_or(5));
            if let Some(m) = a.mode.as_deref() {
                req.mode = parse_enum::<SearchMode>("mode", m, "hybrid, dense, lexical")?;
            }
            if let Some(s) = a.scope.as_deref() {
                req.scope = parse_enum::<SearchScope>("scope", s, "self, inherit")?;
            }
            if let Some(kinds) = a.kinds {
                req.kinds = kinds
                    .iter()
                    .map(|k| parse_enum::<HitKind>("kinds", k, "message, summary, context, board"))
                    .collect::<Result<_, _>>()?;
            }
            if let Some(f) = a.filter {
                req.filter = serde_json::from_value::<Filter>(f)
                    .map_err(|err| Error::invalid("filter", err.to_string()))?;
            }
            let res = e.search(&acc, &a.namespace, req).await?;
            Ok(ok(render_hits(&res.hits), to_value(&res)))
        })
        .await
    }

    /// The newest messages.
    #[tool(
        description = "Recent: the newest messages of a namespace (its short-term memory), oldest first.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn recent(
        &self,
        Parameters(a): Parameters<RecentArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let n = a.n.unwrap_or(10);
            if n == 0 || n > e.config().limits.max_k {
                return Err(Error::invalid(
                    "n",
                    format!("must be 1 to {}", e.config().limits.max_k),
                ));
            }
            let msgs = e.recent(&acc, &a.namespace, n).await?;
            let text = if msgs.is_empty() {
                "No messages yet.".to_owned()
            } else {
                msgs.iter()
                    .map(|m| {
                        format!(
                            "[{}] {}{}: {}",
                            m.timestamp.format("%Y-%m-%d %H:%M"),
                            m.role.as_str(),
                            m.name
                                .as_deref()
                                .map(|n| format!(" ({n})"))
                                .unwrap_or_default(),
                            clip(&m.content, 600)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            Ok(ok(text, json!({"messages": msgs})))
        })
        .await
    }

    /// Summarize now.
    #[tool(
        description = "Summarize: fold the namespace's not-yet-summarized messages into a long-term summary now (memoryd also does this in the background). Returns the summaries written.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn summarize(
        &self,
        Parameters(a): Parameters<NamespaceArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let made = e.summarize(&acc, &a.namespace).await?;
            let text = if made.is_empty() {
                "Nothing to summarize.".to_owned()
            } else {
                made.iter()
                    .map(|s| s.text.clone())
                    .collect::<Vec<_>>()
                    .join("\n\n")
            };
            Ok(ok(text, json!({"summaries": made})))
        })
        .await
    }

    /// Long-term summaries.
    #[tool(
        description = "Summaries: a namespace's long-term summaries, oldest first (each covers a window of older messages).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn summaries(
        &self,
        Parameters(a): Parameters<NamespaceArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let all = e.summaries(&acc, &a.namespace).await?;
            let text = if all.is_empty() {
                "No summaries yet.".to_owned()
            } else {
                all.iter()
                    .map(|s| {
                        format!(
                            "[{} – {}] {}",
                            s.from.format("%Y-%m-%d"),
                            s.to.format("%Y-%m-%d"),
                            s.text
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n\n")
            };
            Ok(ok(text, json!({"summaries": all})))
        })
        .await
    }

    /// Delete a message or a namespace.
    #[tool(
        description = "Forget: delete one message by id, or a whole namespace with everything in it (needs the delete scope). Cannot be undone.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn forget(
        &self,
        Parameters(a): Parameters<ForgetArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            match (a.id, a.namespace) {
                (Some(id), None) => {
                    e.delete(&acc, &id).await?;
                    Ok(ok(format!("Forgot message {id}."), json!({"deleted": id})))
                }
                (None, Some(ns)) => {
                    let n = e.delete_namespace(&acc, &ns).await?;
                    Ok(ok(
                        format!("Deleted namespace {ns} ({n} messages)."),
                        json!({"namespace": ns, "messages": n}),
                    ))
                }
                _ => Err(Error::invalid("id", "give either `id` or `namespace`")),
            }
        })
        .await
    }

    /// Read a shared context entry.
    #[tool(
        description = "Context get: read a shared context entry (a versioned JSON value other agents can see and change).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn context_get(
        &self,
        Parameters(a): Parameters<ContextKeyArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let entry = e.context_get(&acc, &a.namespace, &a.key).await?;
            Ok(ok(
                format!(
                    "{} = {} (version {})",
                    entry.key, entry.value, entry.version
                ),
                to_value(&entry),
            ))
        })
        .await
    }

    /// Write a shared context entry.
    #[tool(
        description = "Context set: write a shared context entry as a new version. With `expected_version` it is compare-and-set: it fails (and tells the current version) if someone else wrote since you read it — read again, merge, retry.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn context_set(
        &self,
        Parameters(a): Parameters<ContextSetArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let opts = ContextWrite {
                expected_version: a.expected_version,
                ttl_s: a.ttl_s,
                ..Default::default()
            };
            let entry = e
                .context_set(&acc, &a.namespace, &a.key, a.value, opts)
                .await?;
            Ok(ok(
                format!("{} is now version {}.", entry.key, entry.version),
                to_value(&entry),
            ))
        })
        .await
    }

    /// List shared context entries.
    #[tool(
        description = "Context list: the shared context entries of a namespace (optionally under a key prefix), by key.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn context_list(
        &self,
        Parameters(a): Parameters<ContextListArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let page = e
                .context_list(
                    &acc,
                    &a.namespace,
                    a.prefix.as_deref().unwrap_or(""),
                    None,
                    a.limit.unwrap_or(100),
                )
                .await?;
            let text = if page.entries.is_empty() {
                "No entries.".to_owned()
            } else {
                page.entries
                    .iter()
                    .map(|en| {
                        format!(
                            "{} = {} (v{})",
                            en.key,
                            clip(&en.value.to_string(), 300),
                            en.version
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            Ok(ok(text, to_value(&page)))
        })
        .await
    }

    /// A shared context entry's history.
    #[tool(
        description = "Context history: every kept version of a shared context entry, oldest first, with who wrote it and when.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn context_history(
        &self,
        Parameters(a): Parameters<ContextKeyArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let versions = e
                .context_history(&acc, &a.namespace, &a.key, 0, 100)
                .await?;
            let text = versions
                .iter()
                .map(|v| {
                    format!(
                        "v{} {} by {}: {}",
                        v.version,
                        v.at.format("%Y-%m-%d %H:%M:%S"),
                        v.agent_id.as_deref().unwrap_or("?"),
                        clip(&v.value.to_string(), 300)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            Ok(ok(text, json!({"versions": versions})))
        })
        .await
    }

    /// Post a problem.
    #[tool(
        description = "Board post: put a problem on the namespace's blackboard for agents to propose solutions and vote on.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn board_post(
        &self,
        Parameters(a): Parameters<BoardPostArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let p = e
                .board_post(
                    &acc,
                    &a.namespace,
                    NewProblem {
                        title: a.title,
                        body: a.body.unwrap_or_default(),
                        agent_id: None,
                    },
                )
                .await?;
            Ok(ok(
                format!("Posted problem {}: {}", p.id, p.title),
                to_value(&p),
            ))
        })
        .await
    }

    /// Propose a solution.
    #[tool(
        description = "Board propose: propose a solution to an open problem, with your confidence (0 to 1).",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn board_propose(
        &self,
        Parameters(a): Parameters<BoardProposeArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let p = e
                .board_propose(
                    &acc,
                    &a.namespace,
                    &a.problem_id,
                    NewProposal {
                        body: a.body,
                        confidence: a.confidence,
                        agent_id: None,
                    },
                )
                .await?;
            Ok(ok(format!("Proposed {}.", p.id), to_value(&p)))
        })
        .await
    }

    /// Vote on a proposal.
    #[tool(
        description = "Board vote: vote +1 or -1 on a proposal (one vote per agent; voting again replaces your vote).",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn board_vote(
        &self,
        Parameters(a): Parameters<BoardVoteArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let p = e
                .board_vote(
                    &acc,
                    &a.namespace,
                    &a.proposal_id,
                    NewVote {
                        agent_id: a.agent_id,
                        value: a.value,
                    },
                )
                .await?;
            Ok(ok(
                format!("Proposal {} now has score {}.", p.id, p.score),
                to_value(&p),
            ))
        })
        .await
    }

    /// Resolve a problem.
    #[tool(
        description = "Board resolve: close a problem by choosing one of its proposals (compare-and-set: only one resolution wins).",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn board_resolve(
        &self,
        Parameters(a): Parameters<BoardResolveArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let p = e
                .board_resolve(
                    &acc,
                    &a.namespace,
                    &a.problem_id,
                    Resolve {
                        proposal_id: a.proposal_id,
                        expected_version: None,
                        agent_id: None,
                    },
                )
                .await?;
            Ok(ok(format!("Resolved problem {}.", p.id), to_value(&p)))
        })
        .await
    }

    /// Show the blackboard.
    #[tool(
        description = "Board show: one problem with its proposals ranked by votes, or (without problem_id) the open problems.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn board_show(
        &self,
        Parameters(a): Parameters<BoardShowArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            match a.problem_id {
                Some(id) => {
                    let d = e.board_problem(&acc, &a.namespace, &id).await?;
                    let mut text = format!(
                        "{} [{:?}]: {}\n{}\n",
                        d.problem.id, d.problem.status, d.problem.title, d.problem.body
                    );
                    for (i, p) in d.proposals.iter().enumerate() {
                        text.push_str(&format!(
                            "{}. {} (score {}, confidence {:.2}) id {}\n",
                            i + 1,
                            clip(&p.body, 400),
                            p.score,
                            p.confidence,
                            p.id
                        ));
                    }
                    Ok(ok(text, to_value(&d)))
                }
                None => {
                    let page = e
                        .board_problems(
                            &acc,
                            &a.namespace,
                            Some(crate::core::board::ProblemStatus::Open),
                            None,
                            100,
                        )
                        .await?;
                    let text = if page.problems.is_empty() {
                        "No open problems.".to_owned()
                    } else {
                        page.problems
                            .iter()
                            .map(|p| format!("{}: {}", p.id, p.title))
                            .collect::<Vec<_>>()
                            .join("\n")
                    };
                    Ok(ok(text, to_value(&page)))
                }
            }
        })
        .await
    }

    /// Find agents.
    #[tool(
        description = "Find agents: the registered agents whose Agent Card best matches what you need done (by meaning and words), with their ids, skills and health. Send them work with `send_to_agent`.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn find_agents(
        &self,
        Parameters(a): Parameters<FindAgentsArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let filter = AgentFilter {
                status: a
                    .healthy_only
                    .unwrap_or(true)
                    .then_some(crate::core::agents::AgentStatus::Healthy),
                ..Default::default()
            };
            let found = e
                .discover_agents(&acc, &a.query, a.k.unwrap_or(5), &filter)
                .await?;
            let text = if found.is_empty() {
                "No matching agents.".to_owned()
            } else {
                found
                    .iter()
                    .map(|m| {
                        format!(
                            "{} [{:.3}] ({}): {}",
                            m.agent.id,
                            m.score,
                            m.agent.status.as_str(),
                            clip(m.agent.card["description"].as_str().unwrap_or(""), 300)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            Ok(ok(text, json!({"agents": found})))
        })
        .await
    }

    /// Send a direct message.
    #[tool(
        description = "Send to agent: put a durable direct message in another agent's inbox (kept until it acknowledges). For a request/response, set a correlation_id and expect the reply in your own inbox.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn send_to_agent(
        &self,
        Parameters(a): Parameters<SendArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let mail = e
                .send_mail(
                    &acc,
                    &a.to,
                    NewMail {
                        from: a.from,
                        kind: a.kind,
                        payload: a.payload,
                        correlation_id: a.correlation_id,
                        priority: a.priority,
                        ttl_s: a.ttl_s,
                    },
                )
                .await?;
            Ok(ok(
                format!("Sent {} to {}.", mail.id, a.to),
                to_value(&mail),
            ))
        })
        .await
    }

    /// Read an inbox.
    #[tool(
        description = "Read inbox: your unacknowledged direct messages, highest priority first, then oldest. Reading does not remove them: call `ack_inbox` with the ids you handled.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn read_inbox(
        &self,
        Parameters(a): Parameters<InboxArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let consumer = a.consumer.as_deref().unwrap_or("default");
            let page = e
                .inbox(&acc, &a.agent_id, consumer, a.limit.unwrap_or(20))
                .await?;
            let text = if page.messages.is_empty() {
                "Inbox empty.".to_owned()
            } else {
                page.messages
                    .iter()
                    .map(|m| {
                        format!(
                            "{} from {} [{} p{}]{}: {}",
                            m.id,
                            m.from,
                            m.kind,
                            m.priority,
                            m.correlation_id
                                .as_deref()
                                .map(|c| format!(" re {c}"))
                                .unwrap_or_default(),
                            clip(&m.payload.to_string(), 600)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            Ok(ok(text, to_value(&page)))
        })
        .await
    }

    /// Acknowledge direct messages.
    #[tool(
        description = "Ack inbox: acknowledge direct messages you handled (by id); they are not delivered to you again.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn ack_inbox(
        &self,
        Parameters(a): Parameters<AckArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        self.run(&ctx, |e, acc| async move {
            let consumer = a.consumer.as_deref().unwrap_or("default");
            let st = e
                .inbox_ack(
                    &acc,
                    &a.agent_id,
                    consumer,
                    InboxAck {
                        upto: None,
                        ids: a.ids,
                    },
                )
                .await?;
            Ok(ok(
                format!("Acknowledged up to {}.", st.upto),
                to_value(&st),
            ))
        })
        .await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for MemoryMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_resources_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("memoryd", env!("CARGO_PKG_VERSION")).with_title("memoryd"))
        .with_instructions(
            "memoryd is long-term memory shared between agents. Store what matters with `remember`, \
             fetch relevant past context with `recall` before answering, keep shared state in \
             `context_*` entries (compare-and-set with expected_version), coordinate on the \
             blackboard (`board_*`), and find or message other agents with `find_agents`, \
             `send_to_agent`, `read_inbox`. Each namespace is also a resource \
             (memoryd://namespaces/<name>) with its summaries and recent messages.",
        )
    }

    async fn list_resources(
        &self,
        _p: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let engine = self.engine().map_err(protocol)?;
        let access = self.access(&ctx).map_err(protocol)?;
        let resources = engine
            .namespaces(&access)
            .into_iter()
            .map(|ns| {
                Resource::new(namespace_uri(&ns.name), ns.name.clone())
                    .with_description(format!(
                        "Namespace {}: {} messages, {} summaries. Its latest summaries and recent messages.",
                        ns.name, ns.messages, ns.summaries
                    ))
                    .with_mime_type("text/markdown")
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _p: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new(format!("{URI_PREFIX}{{namespace}}"), "namespace")
                .with_description("A namespace's latest summaries and recent messages.")
                .with_mime_type("text/markdown"),
        ]))
    }

    /// `subscriptions/listen` (protocol 2026-07-28, stdio and stateless HTTP):
    /// namespace resources and the list of them.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut f = SubscriptionFilter::default();
        f.resources_list_changed = requested.resources_list_changed;
        f.resource_subscriptions = requested.resource_subscriptions.as_ref().map(|uris| {
            uris.iter()
                .filter(|u| u.starts_with(URI_PREFIX))
                .cloned()
                .collect()
        });
        Some(f)
    }

    /// Sends `notifications/resources/updated` when a subscribed namespace's
    /// change log moves (any write: messages, summaries, context, board), and
    /// `notifications/resources/list_changed` when the readable namespaces
    /// change, until the client closes the subscription.
    async fn listen(&self, ctx: SubscriptionContext) -> Result<(), ErrorData> {
        let engine = self.engine().map_err(protocol)?;
        let access = self.access(ctx.request_context()).map_err(protocol)?;
        let uris = ctx
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default();
        let list = ctx.accepted().resources_list_changed == Some(true);
        let sink = ctx.sink().clone();
        let mut seen = engine.commit_counter();
        let mut before = positions(&engine, &access);
        loop {
            tokio::select! {
                _ = ctx.cancelled() => return Ok(()),
                c = engine.wait_for_commit(seen, WATCH_TICK) => seen = c,
            }
            let now = positions(&engine, &access);
            for uri in &uris {
                let ns = &uri[URI_PREFIX.len()..];
                if now.get(ns) != before.get(ns)
                    && sink.notify_resource_updated(uri.clone()).await.is_err()
                {
                    return Ok(());
                }
            }
            let names_changed =
                now.len() != before.len() || now.keys().any(|k| !before.contains_key(k));
            if list && names_changed && sink.notify_resource_list_changed().await.is_err() {
                return Ok(());
            }
            before = now;
        }
    }

    /// Legacy `resources/subscribe` (protocols before 2026-07-28): works where
    /// the connection stays open (stdio); stateless HTTP has no channel back,
    /// so there the watcher ends at its first notification.
    #[allow(deprecated)]
    async fn subscribe(
        &self,
        req: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let Some(ns) = req.uri.strip_prefix(URI_PREFIX).map(str::to_owned) else {
            return Err(ErrorData::resource_not_found(
                format!("unknown resource {}", req.uri),
                None,
            ));
        };
        let engine = self.engine().map_err(protocol)?;
        let access = self.access(&ctx).map_err(protocol)?;
        engine.namespace(&access, &ns).await.map_err(protocol)?;
        let stop = tokio_util::sync::CancellationToken::new();
        if let Some(old) = self
            .legacy_subscriptions
            .lock()
            .insert(req.uri.clone(), stop.clone())
        {
            old.cancel();
        }
        let (peer, uri) = (ctx.peer.clone(), req.uri.clone());
        tokio::spawn(async move {
            let mut seen = engine.commit_counter();
            let mut before = positions(&engine, &access).get(&ns).copied();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    c = engine.wait_for_commit(seen, WATCH_TICK) => seen = c,
                }
                let now = positions(&engine, &access).get(&ns).copied();
                if now != before {
                    let sent = peer
                        .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri.clone()))
                        .await;
                    if sent.is_err() {
                        return;
                    }
                    before = now;
                }
            }
        });
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        req: UnsubscribeRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if let Some(stop) = self.legacy_subscriptions.lock().remove(&req.uri) {
            stop.cancel();
        }
        Ok(())
    }

    async fn read_resource(
        &self,
        req: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let Some(ns) = req.uri.strip_prefix(URI_PREFIX) else {
            return Err(ErrorData::resource_not_found(
                format!("unknown resource {}; use {URI_PREFIX}<namespace>", req.uri),
                None,
            ));
        };
        let engine = self.engine().map_err(protocol)?;
        let access = self.access(&ctx).map_err(protocol)?;
        let summaries = engine.summaries(&access, ns).await.map_err(protocol)?;
        let recent = engine.recent(&access, ns, 20).await.map_err(protocol)?;
        let mut text = format!("# Namespace {ns}\n\n## Summaries (latest first)\n");
        if summaries.is_empty() {
            text.push_str("(none yet)\n");
        }
        for s in summaries.iter().rev().take(5) {
            text.push_str(&format!(
                "- [{} – {}] {}\n",
                s.from.format("%Y-%m-%d"),
                s.to.format("%Y-%m-%d"),
                s.text
            ));
        }
        text.push_str("\n## Recent messages (oldest first)\n");
        if recent.is_empty() {
            text.push_str("(none yet)\n");
        }
        for m in &recent {
            text.push_str(&format!(
                "- [{}] {}{}: {}\n",
                m.timestamp.format("%Y-%m-%d %H:%M"),
                m.role.as_str(),
                m.name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default(),
                clip(&m.content, 600)
            ));
        }
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(text, req.uri.clone()).with_mime_type("text/markdown"),
        ])
        .into())
    }
}

/// An engine error as a protocol error (resources have no tool-error form).
fn protocol(e: Error) -> ErrorData {
    match e {
        Error::NotFound { .. } => ErrorData::resource_not_found(e.to_string(), None),
        Error::InvalidInput { .. } | Error::InvalidNamespace(_) => {
            ErrorData::invalid_params(e.to_string(), None)
        }
        _ => ErrorData::internal_error(format!("{}: {e}", e.code()), None),
    }
}

/// The stdio side of `memoryd mcp --server URL`: every request is forwarded to
/// the running memoryd's `/mcp` (streamable HTTP, with the bearer token), so
/// tools, resources, access and errors are exactly the server's.
pub struct McpProxy {
    remote: RunningService<RoleClient, ()>,
}

impl McpProxy {
    /// Connects to `url` (`http://host:port/mcp`) with an optional API key.
    ///
    /// # Errors
    /// When the server cannot be reached or refuses the token.
    pub async fn connect(url: &str, token: Option<&str>) -> anyhow::Result<McpProxy> {
        use rmcp::ServiceExt;
        use rmcp::transport::StreamableHttpClientTransport;
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
        let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
        if let Some(t) = token {
            config = config.auth_header(t.to_owned());
        }
        let transport = StreamableHttpClientTransport::from_config(config);
        let remote = ()
            .serve(transport)
            .await
            .map_err(|e| anyhow::anyhow!("connecting to {url}: {e}"))?;
        Ok(McpProxy { remote })
    }
}

fn forwarded(e: rmcp::ServiceError) -> ErrorData {
    match e {
        rmcp::ServiceError::McpError(e) => e,
        other => ErrorData::internal_error(format!("the memoryd server: {other}"), None),
    }
}

impl ServerHandler for McpProxy {
    fn get_info(&self) -> ServerConfig {
        match self.remote.peer_info() {
            Some(info) => {
                // Subscriptions are not forwarded (the upstream session is a
                // request/response one): not advertised.
                let mut caps = info.capabilities.clone();
                if let Some(r) = caps.resources.as_mut() {
                    r.subscribe = None;
                    r.list_changed = None;
                }
                let mut c = ServerConfig::new(caps);
                if let Some(si) = info.server_info.clone() {
                    c = c.with_server_info(si);
                }
                c.instructions = info.instructions.clone();
                c
            }
            None => ServerConfig::new(ServerCapabilities::builder().enable_tools().build()),
        }
    }

    async fn list_tools(
        &self,
        _p: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = self.remote.list_all_tools().await.map_err(forwarded)?;
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        req: CallToolRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let mut forward = CallToolRequestParams::new(req.name.clone());
        forward.arguments = req.arguments;
        let mut r = self.remote.call_tool(forward).await.map_err(forwarded)?;
        // The upstream session speaks the handshake protocol, whose results
        // carry no `resultType`; the absent field means "complete" (and rmcp
        // clears it again for clients of older versions).
        r.result_type
            .get_or_insert(rmcp::model::ResultType::COMPLETE);
        Ok(r.into())
    }

    async fn list_resources(
        &self,
        _p: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let all = self.remote.list_all_resources().await.map_err(forwarded)?;
        Ok(ListResourcesResult::with_all_items(all))
    }

    async fn list_resource_templates(
        &self,
        _p: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let all = self
            .remote
            .list_all_resource_templates()
            .await
            .map_err(forwarded)?;
        Ok(ListResourceTemplatesResult::with_all_items(all))
    }

    async fn read_resource(
        &self,
        req: ReadResourceRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let r = self
            .remote
            .read_resource(ReadResourceRequestParams::new(req.uri))
            .await
            .map_err(forwarded)?;
        let mut r = r;
        r.result_type
            .get_or_insert(rmcp::model::ResultType::COMPLETE);
        Ok(r.into())
    }
}

/// Serves `handler` on stdin/stdout until stdin closes.
///
/// # Errors
/// When the MCP session fails to start.
pub async fn serve_stdio<H: ServerHandler>(handler: H) -> anyhow::Result<()> {
    use rmcp::ServiceExt;
    let running = handler
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("MCP over stdio: {e}"))?;
    running.waiting().await?;
    Ok(())
}

/// The streamable HTTP service to mount at `/mcp`: stateless, JSON responses,
/// `Host` checked against `allowed_hosts` (empty: not checked), ended by
/// `shutdown`.
pub fn http_service(
    state: crate::server::AppState,
    allowed_hosts: Vec<String>,
    max_body_bytes: usize,
    shutdown: tokio_util::sync::CancellationToken,
) -> rmcp::transport::StreamableHttpService<
    MemoryMcp,
    rmcp::transport::streamable_http_server::session::never::NeverSessionManager,
> {
    use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
    use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_max_request_body_bytes(max_body_bytes)
        .with_cancellation_token(shutdown);
    config = if allowed_hosts.is_empty() {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(allowed_hosts)
    };
    let handler = MemoryMcp::new(EngineSource::Server(state), None);
    StreamableHttpService::new(
        // One handler per request (stateless): no subscription state shared
        // between clients.
        move || {
            Ok(MemoryMcp {
                legacy_subscriptions: Arc::default(),
                ..handler.clone()
            })
        },
        Arc::new(NeverSessionManager::default()),
        config,
    )
}
