//! The A2A front end ([Agent2Agent protocol](https://a2a-protocol.org) v1.0,
//! JSON-RPC binding): memoryd as an agent other agents talk to. Wire types come
//! from `a2a-lf` (types only); dispatch is by hand in axum. Everything goes
//! through the public [`Engine`] API.
//!
//! - `GET /.well-known/agent-card.json`: the Agent Card (public, like any
//!   card): one JSON-RPC interface at `/a2a`, protocol 1.0, streaming, skills
//!   `remember`, `recall`, `share-context`; a bearer security scheme when API
//!   keys are required.
//! - `POST /a2a` (behind the bearer check): `SendMessage`,
//!   `SendStreamingMessage` (SSE), `GetTask`, `ListTasks`, `CancelTask`,
//!   `SubscribeToTask`; push-notification methods answer
//!   PushNotificationNotSupported (-32003), `GetExtendedAgentCard`
//!   UnsupportedOperation (-32004).
//!
//! **Mapping.** A message's `contextId` is a namespace (created by its first
//! write; a new one, `a2a-<uuid>`, when absent). Its text parts are stored as
//! messages, `ROLE_USER` as `user` and `ROLE_AGENT` as `assistant`, named by
//! `metadata.sender.name` (or `metadata.name`, or the key's agent). A `data`
//! part `{"skill": "recall", "query": …, "k": …}` (or message metadata
//! `{"skill": "recall"}` with the query as text) searches the namespace and
//! answers with the hits as an artifact; `{"skill": "share-context", "key": …,
//! "value": …, "expected_version": …}` writes a shared context entry (without
//! `value`: reads it). Every request completes at once as a task
//! (`TASK_STATE_COMPLETED`), stored durably as a front-end document of the
//! namespace (collection `a2a-task`) when the caller may write there, so
//! `GetTask` / `ListTasks` find it after a restart. Task ids are
//! `<namespace>/<uuid>`.
//!
//! **Versions.** Only 1.0 is spoken. A request without `A2A-Version` is a 0.3
//! client (the spec's rule) and gets VersionNotSupported (-32009) naming the
//! header to send; no 0.3 shim.

use std::collections::HashMap;

use a2a::{
    A2AError, AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Artifact, JsonRpcId,
    JsonRpcResponse, Message, Part, PartContent, Role as A2aRole, Task, TaskState, TaskStatus,
};
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use crate::core::access::Access;
use crate::core::context::ContextWrite;
use crate::core::error::Error;
use crate::core::types::{NewMessage, Role, SearchRequest};
use crate::engine::Engine;
use crate::server::{AppState, Caller};

/// The document collection tasks are stored in.
const TASKS: &str = "a2a-task";

/// Most tasks per `ListTasks` page (the spec's maximum).
const MAX_PAGE: usize = 100;

/// Settings of the A2A routes.
#[derive(Clone, Debug, Default)]
pub struct A2aConfig {
    /// The externally visible base URL (`https://memory.example.com`); default
    /// `http://<Host header>`.
    pub public_url: Option<String>,
}

/// The routes: the Agent Card (public) and `/a2a` (wrap in the bearer check).
pub fn card_route(config: A2aConfig) -> Router<AppState> {
    Router::new()
        .route("/.well-known/agent-card.json", get(agent_card))
        .layer(Extension(config))
}

/// `POST /a2a` (the caller must be authenticated by the server's middleware).
pub fn rpc_route() -> Router<AppState> {
    Router::new().route("/a2a", post(rpc))
}

/// memoryd's Agent Card for the base URL `base` (`http://host:port`).
pub fn card(base: &str, auth_required: bool) -> Value {
    let skill =
        |id: &str, name: &str, description: &str, tags: &[&str], examples: &[&str]| AgentSkill {
            id: id.into(),
            name: name.into(),
            description: description.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            examples: Some(examples.iter().map(|t| t.to_string()).collect()),
            input_modes: None,
            output_modes: None,
            security_requirements: None,
        };
    let card = AgentCard {
        name: "memoryd".into(),
        description: "Long-term memory shared between agents: stores what agents say (each \
                      contextId is a memory namespace) and recalls the most relevant past \
                      context in milliseconds, with a local embedding model."
            .into(),
        version: env!("CARGO_PKG_VERSION").into(),
        supported_interfaces: vec![AgentInterface::new(
            format!("{}/a2a", base.trim_end_matches('/')),
            a2a::TRANSPORT_PROTOCOL_JSONRPC,
        )],
        capabilities: AgentCapabilities {
            streaming: Some(true),
            push_notifications: Some(false),
            extensions: None,
            extended_agent_card: Some(false),
        },
        default_input_modes: vec!["text/plain".into(), "application/json".into()],
        default_output_modes: vec!["text/plain".into(), "application/json".into()],
        skills: vec![
            skill(
                "remember",
                "Remember",
                "Stores the text parts of the message in the memory namespace named by the contextId.",
                &["memory", "store"],
                &["The customer prefers e-mail over phone calls."],
            ),
            skill(
                "recall",
                "Recall",
                "Finds the most relevant stored context for a query: send a data part {\"skill\": \"recall\", \"query\": \"…\", \"k\": 5}; the hits come back as an artifact.",
                &["memory", "search", "retrieval"],
                &[
                    "{\"skill\": \"recall\", \"query\": \"how does the customer like to be contacted\"}",
                ],
            ),
            skill(
                "share-context",
                "Share context",
                "Reads or writes a versioned shared context entry of the namespace: a data part {\"skill\": \"share-context\", \"key\": \"plan\", \"value\": {…}, \"expected_version\": 3} (compare-and-set); without value it reads the entry.",
                &["memory", "shared-state", "compare-and-set"],
                &["{\"skill\": \"share-context\", \"key\": \"plan\"}"],
            ),
        ],
        provider: None,
        documentation_url: None,
        icon_url: None,
        security_schemes: None,
        security_requirements: None,
        signatures: None,
    };
    let mut v = serde_json::to_value(card).unwrap_or(Value::Null);
    if auth_required {
        v["securitySchemes"] = json!({"bearer": {"httpAuthSecurityScheme": {"scheme": "Bearer", "description": "a memoryd API key"}}});
        v["securityRequirements"] = json!([{"schemes": {"bearer": {"list": []}}}]);
    }
    v
}

async fn agent_card(
    State(s): State<AppState>,
    Extension(cfg): Extension<A2aConfig>,
    headers: HeaderMap,
) -> Response {
    let base = cfg.public_url.clone().unwrap_or_else(|| {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        format!("http://{host}")
    });
    let auth = s.engine_now().is_some_and(|e| e.auth_required());
    let mut resp = Json(card(&base, auth)).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("max-age=60"),
    );
    resp
}

fn rpc_error(id: JsonRpcId, e: A2AError) -> Response {
    // Authorization is the transport's (HTTP 403), with the JSON-RPC error as body.
    if e.code == a2a::error_code::INVALID_REQUEST && e.message.ends_with("[forbidden]") {
        return (
            StatusCode::FORBIDDEN,
            Json(JsonRpcResponse::error(id, e.to_jsonrpc_error())),
        )
            .into_response();
    }
    (
        StatusCode::OK,
        Json(JsonRpcResponse::error(id, e.to_jsonrpc_error())),
    )
        .into_response()
}

fn rpc_ok(id: JsonRpcId, v: Value) -> Response {
    (StatusCode::OK, Json(JsonRpcResponse::success(id, v))).into_response()
}

/// An engine error in A2A terms.
fn a2a_error(e: Error) -> A2AError {
    match &e {
        Error::InvalidInput { .. }
        | Error::InvalidNamespace(_)
        | Error::TooLarge { .. }
        | Error::PreconditionFailed { .. } => {
            A2AError::invalid_params(format!("{e} [{}]", e.code()))
        }
        Error::Forbidden(_) | Error::Unauthorized(_) => {
            A2AError::invalid_request(format!("{e} [{}]", e.code()))
        }
        _ => A2AError::internal(format!("{e} [{}]", e.code())),
    }
}

/// Whether `A2A-Version` names a 1.x version (absent or empty means 0.3).
fn version_ok(headers: &HeaderMap) -> Result<(), A2AError> {
    let v = headers
        .get("a2a-version")
        .and_then(|h| h.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or("0.3");
    if v.split('.').next() == Some("1") {
        Ok(())
    } else {
        Err(A2AError::new(
            a2a::error_code::VERSION_NOT_SUPPORTED,
            format!(
                "A2A protocol version {v} is not supported (a request without an A2A-Version header is 0.3). \
                 memoryd speaks A2A 1.0: send the header `A2A-Version: 1.0` and the 1.0 methods (SendMessage, GetTask, …)."
            ),
        ))
    }
}

async fn rpc(
    State(s): State<AppState>,
    Caller(access): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return rpc_error(JsonRpcId::Null, A2AError::parse_error(e.to_string())),
    };
    if !v.is_object() {
        return rpc_error(
            JsonRpcId::Null,
            A2AError::invalid_request(
                "the body must be one JSON-RPC 2.0 request object (no batches)",
            ),
        );
    }
    let id = v
        .get("id")
        .cloned()
        .and_then(|i| serde_json::from_value::<JsonRpcId>(i).ok())
        .unwrap_or(JsonRpcId::Null);
    let req: a2a::JsonRpcRequest = match serde_json::from_value(v) {
        Ok(r) => r,
        Err(e) => {
            return rpc_error(
                id,
                A2AError::invalid_request(format!("not a JSON-RPC 2.0 request: {e}")),
            );
        }
    };
    if req.jsonrpc != "2.0" {
        return rpc_error(id, A2AError::invalid_request("jsonrpc must be \"2.0\""));
    }
    if let Err(e) = version_ok(&headers) {
        return rpc_error(id, e);
    }
    let Some(engine) = s.engine_now() else {
        return rpc_error(
            id,
            A2AError::internal("the embedding model is still loading; retry in a few seconds"),
        );
    };
    let params = req.params.unwrap_or_else(|| json!({}));
    let result = match req.method.as_str() {
        a2a::methods::SEND_MESSAGE => send_message(&engine, &access, params)
            .await
            .map(|t| json!({"task": t})),
        a2a::methods::SEND_STREAMING_MESSAGE => {
            return match send_message(&engine, &access, params).await {
                Ok(task) => stream_task(id, task),
                Err(e) => rpc_error(id, e),
            };
        }
        a2a::methods::GET_TASK => get_task(&engine, &access, params).await,
        a2a::methods::LIST_TASKS => list_tasks(&engine, &access, params).await,
        a2a::methods::CANCEL_TASK => cancel_task(&engine, &access, params).await,
        a2a::methods::SUBSCRIBE_TO_TASK => match get_task(&engine, &access, params).await {
            Ok(_) => Err(A2AError::unsupported_operation(
                "the task is complete (memoryd completes every task at once); use GetTask",
            )),
            Err(e) => Err(e),
        },
        a2a::methods::CREATE_PUSH_CONFIG
        | a2a::methods::GET_PUSH_CONFIG
        | a2a::methods::LIST_PUSH_CONFIGS
        | a2a::methods::DELETE_PUSH_CONFIG => Err(A2AError::push_notification_not_supported()),
        a2a::methods::GET_EXTENDED_AGENT_CARD => Err(A2AError::unsupported_operation(
            "memoryd has no extended agent card",
        )),
        m => Err(A2AError::method_not_found(m)),
    };
    match result {
        Ok(v) => rpc_ok(id, v),
        Err(e) => rpc_error(id, e),
    }
}

fn params_of<T: serde::de::DeserializeOwned>(params: Value) -> Result<T, A2AError> {
    serde_json::from_value(params)
        .map_err(|e| A2AError::invalid_params(format!("invalid params: {e}")))
}

/// A whole number from a JSON number (clients send `3.0` for `3`).
fn whole(v: &Value, field: &str) -> Result<Option<usize>, A2AError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(n) => match n.as_f64() {
            Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= 1e9 => Ok(Some(f as usize)),
            _ => Err(A2AError::invalid_params(format!(
                "{field} must be a whole number"
            ))),
        },
    }
}

fn sender(msg: &Message, access: &Access) -> Option<String> {
    let meta = msg.metadata.as_ref();
    meta.and_then(|m| m.get("sender"))
        .and_then(|s| s.get("name"))
        .or_else(|| meta.and_then(|m| m.get("name")))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| access.agent_id.clone())
}

fn text_artifact(name: &str, text: String, data: Value) -> Artifact {
    Artifact {
        artifact_id: uuid::Uuid::now_v7().to_string(),
        name: Some(name.into()),
        description: None,
        parts: vec![
            Part::text(text),
            Part::data(data).with_media_type("application/json"),
        ],
        metadata: None,
        extensions: None,
    }
}

async fn send_message(engine: &Engine, access: &Access, params: Value) -> Result<Task, A2AError> {
    let req: a2a::SendMessageRequest = params_of(params)?;
    let mut msg = req.message;
    if msg.parts.is_empty() {
        return Err(A2AError::invalid_params("message.parts must not be empty"));
    }
    if msg.message_id.trim().is_empty() {
        return Err(A2AError::invalid_params(
            "message.messageId must not be empty",
        ));
    }
    if let Some(t) = &msg.task_id {
        // Every task is complete at once: none can be continued.
        return Err(match engine_task(engine, access, t).await {
            Ok(_) => A2AError::unsupported_operation(
                "the task is complete; send a new message without taskId",
            ),
            Err(e) => e,
        });
    }
    let ns = msg
        .context_id
        .clone()
        .unwrap_or_else(|| format!("a2a-{}", uuid::Uuid::now_v7()));
    crate::core::access::NamespaceName::parse(&ns).map_err(|e| {
        A2AError::invalid_params(format!("contextId names the memory namespace: {e}"))
    })?;
    let skill_part = msg.parts.iter().find_map(|p| match &p.content {
        PartContent::Data(d) if d.get("skill").is_some() => Some(d.clone()),
        _ => None,
    });
    let meta_skill = msg
        .metadata
        .as_ref()
        .and_then(|m| m.get("skill"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let texts: Vec<String> = msg
        .parts
        .iter()
        .filter_map(|p| p.as_text().map(str::to_owned))
        .collect();
    let skill = match (&skill_part, &meta_skill) {
        (Some(d), _) => d["skill"].as_str().unwrap_or("").to_owned(),
        (None, Some(s)) => s.clone(),
        (None, None) => "remember".to_owned(),
    };
    let artifact = match skill.as_str() {
        "recall" => {
            let d = skill_part.clone().unwrap_or_default();
            let query = d
                .get("query")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| texts.join("\n"));
            if query.trim().is_empty() {
                return Err(A2AError::invalid_params(
                    "recall needs a query (data part `query`, or text)",
                ));
            }
            let k = whole(&d, "k")?.unwrap_or(5);
            let res = engine
                .search(access, &ns, SearchRequest::text(query, k))
                .await
                .map_err(a2a_error)?;
            let text = if res.hits.is_empty() {
                "No matching memories.".to_owned()
            } else {
                res.hits
                    .iter()
                    .enumerate()
                    .map(|(i, h)| format!("{}. [{:.3}] {}", i + 1, h.score, h.text()))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            text_artifact(
                "recall",
                text,
                serde_json::to_value(&res).unwrap_or(Value::Null),
            )
        }
        "share-context" => {
            let d = skill_part.clone().unwrap_or_default();
            let key = d
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| A2AError::invalid_params("share-context needs a string `key`"))?;
            let entry = match d.get("value") {
                Some(value) => {
                    let expected_version = match d.get("expected_version") {
                        None | Some(Value::Null) => None,
                        Some(_) => whole(&d, "expected_version")?.map(|v| v as u64),
                    };
                    let opts = ContextWrite {
                        expected_version,
                        agent_id: None,
                        ..Default::default()
                    };
                    engine
                        .context_set(access, &ns, key, value.clone(), opts)
                        .await
                        .map_err(a2a_error)?
                }
                None => engine
                    .context_get(access, &ns, key)
                    .await
                    .map_err(|e| match e {
                        Error::NotFound { .. } => {
                            A2AError::invalid_params(format!("no context entry {key:?} in {ns}"))
                        }
                        other => a2a_error(other),
                    })?,
            };
            text_artifact(
                "context",
                format!(
                    "{} = {} (version {})",
                    entry.key, entry.value, entry.version
                ),
                serde_json::to_value(&entry).unwrap_or(Value::Null),
            )
        }
        "remember" => {
            let role = match msg.role {
                A2aRole::Agent => Role::Assistant,
                _ => Role::User,
            };
            let name = sender(&msg, access);
            let mut batch = Vec::new();
            for p in &msg.parts {
                let content = match &p.content {
                    PartContent::Text(t) => t.clone(),
                    PartContent::Data(d) => d.to_string(),
                    PartContent::Raw(_) | PartContent::Url(_) => {
                        return Err(A2AError::content_type_not_supported());
                    }
                };
                let mut metadata = Map::new();
                metadata.insert(
                    "a2a".into(),
                    json!({"message_id": msg.message_id, "context_id": ns}),
                );
                batch.push(NewMessage {
                    role,
                    name: name.clone(),
                    content,
                    timestamp: None,
                    agent_id: None,
                    session_id: None,
                    metadata,
                });
            }
            let stored = engine
                .add_batch(access, &ns, batch)
                .await
                .map_err(a2a_error)?;
            let ids: Vec<&str> = stored.iter().map(|m| m.id.as_str()).collect();
            text_artifact(
                "remembered",
                format!("Stored {} message(s) in namespace {ns}.", ids.len()),
                json!({"namespace": ns, "ids": ids}),
            )
        }
        other => {
            return Err(A2AError::invalid_params(format!(
                "unknown skill {other:?}: use remember, recall or share-context"
            )));
        }
    };
    let uuid = uuid::Uuid::now_v7().to_string();
    let task_id = format!("{ns}/{uuid}");
    msg.context_id = Some(ns.clone());
    msg.task_id = Some(task_id.clone());
    let task = Task {
        id: task_id,
        context_id: ns.clone(),
        status: TaskStatus {
            state: TaskState::Completed,
            message: None,
            timestamp: Some(now_ms()),
        },
        artifacts: Some(vec![artifact]),
        history: Some(vec![msg]),
        metadata: Some(HashMap::from([("skill".to_owned(), json!(skill))])),
    };
    // The work is done (messages are stored): keeping the task is best effort.
    // Durable and listable when the caller may write the namespace; a
    // read-only caller's recall, or a task over the document size limit, is
    // answered but not kept (GetTask will not find it).
    match engine
        .document_put(
            access,
            &ns,
            TASKS,
            &uuid,
            serde_json::to_value(&task).unwrap_or(Value::Null),
        )
        .await
    {
        Ok(_) | Err(Error::Forbidden(_)) => {}
        Err(e) => tracing::warn!(task = %task.id, error = %e, "A2A task answered but not kept"),
    }
    Ok(task)
}

fn now_ms() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(3)
}

/// The stored task `id` (`<namespace>/<uuid>`).
async fn engine_task(engine: &Engine, access: &Access, id: &str) -> Result<Task, A2AError> {
    let not_found = || A2AError::task_not_found(id);
    let (ns, uuid) = id.rsplit_once('/').ok_or_else(not_found)?;
    if crate::core::access::NamespaceName::parse(ns).is_err()
        || uuid::Uuid::parse_str(uuid).is_err()
    {
        return Err(not_found());
    }
    match engine.document_get(access, ns, TASKS, uuid).await {
        Ok(doc) => serde_json::from_value(doc.value)
            .map_err(|e| A2AError::internal(format!("stored task {id}: {e}"))),
        // Another caller's namespace looks like an unknown task.
        Err(Error::NotFound { .. }) | Err(Error::Forbidden(_)) => Err(not_found()),
        Err(e) => Err(a2a_error(e)),
    }
}

fn trim_history(task: &mut Task, history_length: Option<i32>) {
    if let (Some(n), Some(h)) = (history_length, task.history.as_mut()) {
        let n = n.max(0) as usize;
        if n == 0 {
            task.history = None;
        } else if h.len() > n {
            h.drain(..h.len() - n);
        }
    }
}

async fn get_task(engine: &Engine, access: &Access, params: Value) -> Result<Value, A2AError> {
    let req: a2a::GetTaskRequest = params_of(params)?;
    if req.history_length.is_some_and(|n| n < 0) {
        return Err(A2AError::invalid_params(
            "historyLength must not be negative",
        ));
    }
    let mut task = engine_task(engine, access, &req.id).await?;
    trim_history(&mut task, req.history_length);
    Ok(serde_json::to_value(task).unwrap_or(Value::Null))
}

async fn cancel_task(engine: &Engine, access: &Access, params: Value) -> Result<Value, A2AError> {
    let req: a2a::CancelTaskRequest = params_of(params)?;
    engine_task(engine, access, &req.id).await?;
    Err(A2AError::task_not_cancelable(&req.id))
}

async fn list_tasks(engine: &Engine, access: &Access, params: Value) -> Result<Value, A2AError> {
    let req: a2a::ListTasksRequest = params_of(params)?;
    let page_size = match req.page_size {
        None => 50,
        Some(n) if (1..=MAX_PAGE as i32).contains(&n) => n as usize,
        Some(_) => return Err(A2AError::invalid_params("pageSize must be 1 to 100")),
    };
    if req.history_length.is_some_and(|n| n < 0) {
        return Err(A2AError::invalid_params(
            "historyLength must not be negative",
        ));
    }
    let namespaces: Vec<String> = match &req.context_id {
        Some(c) => vec![c.clone()],
        None => engine
            .namespaces(access)
            .into_iter()
            .map(|n| n.name)
            .collect(),
    };
    let mut all: Vec<Task> = Vec::new();
    for ns in namespaces {
        let mut after: Option<String> = None;
        loop {
            let docs = match engine
                .documents(access, &ns, TASKS, after.as_deref(), 1000)
                .await
            {
                Ok(d) => d,
                Err(Error::InvalidNamespace(_)) => {
                    return Err(A2AError::invalid_params(
                        "contextId is not a memory namespace name",
                    ));
                }
                Err(Error::Forbidden(_)) => Vec::new(),
                Err(e) => return Err(a2a_error(e)),
            };
            let full = docs.len() == 1000;
            for d in docs {
                after = d.key.rsplit(':').next().map(str::to_owned);
                if let Ok(t) = serde_json::from_value::<Task>(d.value) {
                    all.push(t);
                }
            }
            if !full {
                break;
            }
        }
    }
    let wanted_state = req.status.filter(|s| *s != TaskState::Unspecified);
    all.retain(|t| {
        wanted_state.as_ref().is_none_or(|s| t.status.state == *s)
            && req
                .status_timestamp_after
                .is_none_or(|after| t.status.timestamp.is_some_and(|ts| ts > after))
    });
    // Newest first (ids end in a UUID v7, ordered by creation time).
    let uuid_of = |t: &Task| t.id.rsplit('/').next().unwrap_or("").to_owned();
    all.sort_by_key(|t| std::cmp::Reverse(uuid_of(t)));
    let total = all.len();
    let start = match req.page_token.as_deref().filter(|t| !t.is_empty()) {
        None => 0,
        Some(tok) => all.partition_point(|t| uuid_of(t).as_str() >= tok),
    };
    let mut page: Vec<Task> = all.into_iter().skip(start).take(page_size).collect();
    let next = if start + page.len() < total {
        page.last().map(uuid_of).unwrap_or_default()
    } else {
        String::new()
    };
    for t in &mut page {
        if !req.include_artifacts.unwrap_or(false) {
            t.artifacts = None;
        }
        trim_history(t, req.history_length);
    }
    Ok(json!({
        "tasks": page,
        "nextPageToken": next,
        "pageSize": page_size,
        "totalSize": total,
    }))
}

/// A completed task as a v1.0 stream: the task (working), each artifact, the
/// final status; then the stream closes.
fn stream_task(id: JsonRpcId, task: Task) -> Response {
    let mut events: Vec<Value> = Vec::new();
    let mut first = task.clone();
    first.artifacts = None;
    first.status = TaskStatus {
        state: TaskState::Working,
        message: None,
        timestamp: task.status.timestamp,
    };
    events.push(json!({"task": first}));
    for a in task.artifacts.iter().flatten() {
        events.push(json!({"artifactUpdate": {
            "taskId": task.id, "contextId": task.context_id, "artifact": a, "lastChunk": true
        }}));
    }
    events.push(json!({"statusUpdate": {
        "taskId": task.id, "contextId": task.context_id, "status": task.status
    }}));
    let frames: Vec<Result<Event, std::convert::Infallible>> = events
        .into_iter()
        .map(|result| {
            let body = serde_json::to_string(&JsonRpcResponse::success(id.clone(), result))
                .unwrap_or_default();
            Ok(Event::default().data(body))
        })
        .collect();
    Sse::new(futures_util::stream::iter(frames))
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_card_passes_our_registry_validation_and_names_its_skills() {
        let c = card("http://127.0.0.1:7070", true);
        crate::core::agents::validate_card(&c).unwrap();
        let skills: Vec<&str> = c["skills"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert_eq!(skills, ["remember", "recall", "share-context"]);
        assert_eq!(
            c["supportedInterfaces"][0]["url"],
            json!("http://127.0.0.1:7070/a2a")
        );
        assert_eq!(c["supportedInterfaces"][0]["protocolVersion"], json!("1.0"));
        assert!(c.get("securitySchemes").is_some());
        assert!(card("http://x", false).get("securitySchemes").is_none());
    }

    #[test]
    fn a_missing_version_header_is_0_3_and_refused() {
        let mut h = HeaderMap::new();
        let err = version_ok(&h).unwrap_err();
        assert_eq!(err.code, a2a::error_code::VERSION_NOT_SUPPORTED);
        assert!(err.message.contains("A2A-Version: 1.0"));
        h.insert("a2a-version", "1.0".parse().unwrap());
        version_ok(&h).unwrap();
        h.insert("a2a-version", "0.3".parse().unwrap());
        assert!(version_ok(&h).is_err());
    }
}
