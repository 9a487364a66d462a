//! The HTTP API (axum). Handlers only extract, call the [`Engine`] and map the
//! result; see `docs/openapi.json` for the contract.

pub mod agents;
pub mod api;
pub mod board;
pub mod context;
pub mod error;
pub mod events;
pub mod keys;
pub mod namespaces;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use utoipa::OpenApi;

use crate::core::access::Access;
use crate::core::error::Error;
use crate::core::types::{
    Hit, HitKind, Message, NamespaceInfo, NewMessage, Query, Role, SearchRequest, SearchResults,
    Summary,
};
use crate::engine::Engine;
use api::*;
use error::{ApiError, ErrorBody, ErrorResponse};

/// The caller of a request, as [`authenticate`] established it: the extractor
/// every handler that reaches the engine takes.
pub struct Caller(pub Access);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        // Only routes behind `authenticate` take a caller; a route that forgot the
        // layer is refused rather than served as anyone.
        parts
            .extensions
            .get::<Access>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| Error::Unauthorized("no credentials were checked".into()).into())
    }
}

/// The bearer token of `Authorization: Bearer <token>`: `Ok(None)` without the
/// header, `Err` for another scheme or a malformed value.
fn bearer(headers: &axum::http::HeaderMap) -> Result<Option<&str>, ()> {
    let Some(v) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| ())?.trim();
    let (scheme, token) = v.split_once(' ').ok_or(())?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(());
    }
    Ok(Some(token.trim()))
}

/// Authenticates every request of the routes it wraps and stores the caller
/// ([`Access`]) in the request for [`Caller`]:
/// - `Authorization: Bearer <token>` → that key's access, or 401
///   `unauthorized` (invalid, revoked, expired);
/// - no header → full access only when no API key exists and the server may
///   serve anonymously (a loopback address, or `--insecure-no-auth`); else 401.
///
/// Failures count in `memoryd_auth_failures_total{reason}`; tokens are never
/// logged.
async fn authenticate(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    use crate::engine::AuthFailure;
    let engine = match s.engine() {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    let access = match bearer(req.headers()) {
        Ok(Some(token)) => engine.authenticate(token),
        Ok(None) if s.anonymous && !engine.auth_required() => Ok(engine.bind(Access::full())),
        Ok(None) => Err(AuthFailure::Missing),
        Err(()) => Err(AuthFailure::Invalid),
    };
    match access {
        Ok(a) => {
            let span = tracing::Span::current();
            span.record("key_id", a.key_id.as_deref());
            span.record("agent_id", a.agent_id.as_deref());
            req.extensions_mut().insert(a);
            next.run(req).await
        }
        Err(f) => {
            metrics::counter!("memoryd_auth_failures_total", "reason" => f.as_str()).increment(1);
            let mut resp = ApiError::from(Error::from(f)).into_response();
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"memoryd\""),
            );
            resp
        }
    }
}

/// JSON body extractor whose failures use our error body.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Path extractor whose failures use our error body.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Query-string extractor whose failures use our error body.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Server settings that are not engine settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body in bytes. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Requests to `/v1/...` handled at once; more are answered 429 `overloaded`
    /// immediately. Default 512. (Text embedding has its own bounded queue,
    /// `embed_queue_capacity`, which also answers 429 when full.)
    pub max_in_flight: usize,
    /// Event streams (SSE) open at once; more are answered 429. Streams do not
    /// hold `max_in_flight` permits. Default 1024.
    pub max_streams: usize,
    /// A connection must deliver a request's complete header within this time
    /// from when the server starts waiting for it, which includes the idle time
    /// of a kept-alive connection between requests: a half-sent header or an idle
    /// connection is closed after it. Default 10 s.
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body; the request then fails
    /// (400 `bad_body`) instead of holding its connection and permit. Default 30 s.
    pub body_read_timeout: Duration,
    /// Connections open at once; further ones wait in the kernel's accept queue
    /// until one closes. Keep it below the process's file-descriptor limit.
    /// Default 4096.
    pub max_connections: usize,
    /// Serve requests without a token while no API key exists. Default true;
    /// `memoryd serve` sets it only for a loopback address or
    /// `--insecure-no-auth`. Once a key exists every request needs a token.
    pub anonymous: bool,
    /// `Host` headers `/mcp` accepts (DNS-rebinding protection; see
    /// [`ServerConfig::mcp_hosts_for`]). Empty: any.
    pub mcp_allowed_hosts: Vec<String>,
    /// The externally visible base URL (`https://memory.example.com`) the A2A
    /// Agent Card names; default `http://<Host header>`.
    pub public_url: Option<String>,
}

impl ServerConfig {
    /// The `Host` names `/mcp` should accept when serving `bind`: loopback names
    /// on a loopback address; the address itself plus loopback names on another
    /// specific address; any host on an unspecified address (`0.0.0.0`, `::`),
    /// where every request needs an API key anyway unless `--insecure-no-auth`.
    pub fn mcp_hosts_for(bind: std::net::SocketAddr) -> Vec<String> {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
        let ip = bind.ip();
        if ip.is_unspecified() {
            return Vec::new();
        }
        if !ip.is_loopback() {
            hosts.push(ip.to_string());
        }
        hosts
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 1024 * 1024,
            max_in_flight: 512,
            max_streams: 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 4096,
            anonymous: true,
            mcp_allowed_hosts: ServerConfig::mcp_hosts_for(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                0,
            ))),
            public_url: None,
        }
    }
}

/// Shared state: the engine once loaded (the server answers 503 before that).
#[derive(Clone)]
pub struct AppState {
    engine: Arc<OnceLock<Engine>>,
    metrics: Option<PrometheusHandle>,
    /// Permits of open event streams (sized by [`router`] from `max_streams`).
    streams: Arc<tokio::sync::Semaphore>,
    /// Set when the server shuts down: open event streams end at once.
    closing: Arc<tokio::sync::watch::Sender<bool>>,
    /// [`ServerConfig::anonymous`].
    anonymous: bool,
}

impl AppState {
    /// State with the engine still loading; call [`AppState::set_engine`] when ready.
    pub fn loading() -> Self {
        AppState {
            engine: Arc::new(OnceLock::new()),
            metrics: prometheus(),
            streams: Arc::new(tokio::sync::Semaphore::new(
                ServerConfig::default().max_streams,
            )),
            closing: Arc::new(tokio::sync::watch::Sender::new(false)),
            anonymous: ServerConfig::default().anonymous,
        }
    }

    /// State with a ready engine.
    pub fn ready(engine: Engine) -> Self {
        let s = AppState::loading();
        s.set_engine(engine);
        s
    }

    /// Makes the engine available to requests (first call wins).
    pub fn set_engine(&self, engine: Engine) {
        let _ = self.engine.set(engine);
    }

    /// The engine, if loaded (front ends that are not axum handlers, e.g. MCP).
    pub fn engine_now(&self) -> Option<Engine> {
        self.engine.get().cloned()
    }

    fn engine(&self) -> Result<&Engine, ApiError> {
        self.engine.get().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "model_loading",
                "the embedding model is still loading; retry in a few seconds",
            )
        })
    }
}

/// The process-wide Prometheus recorder (installed once; `None` if another
/// recorder was installed first by an embedding application).
fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            let batch = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), &latency)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("memoryd_embed_batch_size".into()),
                        &batch,
                    )
                })
                .ok()
                .and_then(|b| b.install_recorder().ok())
        })
        .clone()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "memoryd",
        description = "Semantic conversation memory for AI agents."
    ),
    paths(
        health,
        add_messages,
        list_messages,
        add_interaction,
        search,
        recent,
        summarize,
        summaries,
        list_namespaces,
        namespaces::get_namespace,
        namespaces::put_namespace,
        namespaces::delete_namespace,
        get_message,
        delete_message,
        embeddings,
        context::put_context,
        context::patch_context,
        context::get_context,
        context::delete_context,
        context::list_context,
        context::history,
        board::post_problem,
        board::list_problems,
        board::get_problem,
        board::propose,
        board::vote,
        board::resolve,
        events::events,
        events::put_consumer,
        events::get_consumer,
        keys::create_key,
        keys::list_keys,
        keys::revoke_key,
        agents::register,
        agents::list_agents,
        agents::discover,
        agents::get_agent,
        agents::deregister,
        agents::heartbeat,
        agents::send,
        agents::inbox,
        agents::ack,
        agents::publish,
        audit
    ),
    components(schemas(
        ErrorResponse,
        ErrorBody,
        SummaryList,
        Summary,
        AddMessages,
        AddedIds,
        SearchBody,
        MessageList,
        crate::engine::MessagePage,
        NamespaceList,
        Health,
        EmbeddingRequest,
        EmbeddingInput,
        EmbeddingResponse,
        EmbeddingData,
        Usage,
        NewMessage,
        Message,
        Role,
        Hit,
        HitKind,
        SearchResults,
        NamespaceInfo,
        crate::core::types::Filter,
        crate::core::types::Interaction,
        context::ContextBody,
        context::ContextHistory,
        crate::core::context::ContextEntry,
        crate::core::context::ContextVersion,
        crate::core::context::ContextOp,
        crate::engine::ContextPage,
        crate::engine::NamespaceDetail,
        namespaces::NamespaceBody,
        crate::core::types::SearchScope,
        crate::core::board::Problem,
        crate::core::board::Proposal,
        crate::core::board::ProblemDetail,
        crate::core::board::ProblemStatus,
        crate::core::board::Resolution,
        crate::core::board::BoardItem,
        crate::core::board::NewProblem,
        crate::core::board::NewProposal,
        crate::core::board::NewVote,
        crate::core::board::Resolve,
        agents::Registration,
        crate::core::agents::AgentRecord,
        crate::core::agents::AgentStatus,
        crate::core::agents::AgentPage,
        crate::core::agents::AgentMatch,
        crate::core::agents::NewMail,
        crate::core::agents::Mail,
        crate::core::agents::InboxPage,
        crate::core::agents::InboxAck,
        crate::core::agents::AckState,
        crate::engine::ProblemPage,
        crate::engine::Event,
        crate::engine::EventPage,
        crate::storage::ChangeKind,
        events::ConsumerCursor,
        events::TreeEventPage,
        crate::storage::AuditEntry,
        crate::engine::AuditPage,
        keys::KeyList,
        crate::core::keys::ApiKey,
        crate::core::keys::NewKey,
        crate::core::keys::CreatedKey,
        crate::core::redact::Redaction,
        crate::core::access::Scope
    ))
)]
struct ApiDoc;

/// Query of `GET /v1/audit`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only changes made as this agent.
    pub agent_id: Option<String>,
    /// Only this action (a change kind, e.g. `context.set`).
    pub action: Option<crate::storage::ChangeKind>,
    /// Only entries at or after this time (RFC 3339).
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only entries before this time (RFC 3339).
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// Entries with seq above this (the previous page's `next`).
    pub after: Option<u64>,
    /// Page size, 1..=1000. Default 100.
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/audit", params(AuditParams),
    responses((status = 200, description = "audit entries, oldest first (needs admin)", body = crate::engine::AuditPage),
        (status = 422, body = ErrorResponse)))]
async fn audit(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Json<crate::engine::AuditPage>, ApiError> {
    let query = crate::engine::AuditQuery {
        namespace: p.namespace,
        agent_id: p.agent_id,
        action: p.action,
        from: p.from,
        to: p.to,
        after: p.after.unwrap_or(0),
    };
    Ok(Json(
        s.engine()?
            .audit(&me, &query, p.limit.unwrap_or(100))
            .await?,
    ))
}

/// The OpenAPI document of this API, as committed in `docs/openapi.json`.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
}

/// The router with every route, our error bodies for unknown routes and
/// methods, the body limit and per-route metrics.
pub fn router(mut state: AppState, config: &ServerConfig) -> Router {
    state.streams = Arc::new(tokio::sync::Semaphore::new(config.max_streams));
    state.anonymous = config.anonymous;
    let auth = middleware::from_fn_with_state(state.clone(), authenticate);
    // Every /v1 request holds one of `max_in_flight` permits; when none is free the
    // request is answered 429 at once instead of queueing (health, metrics and the
    // OpenAPI document stay reachable under overload).
    let shed = tower::ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(
            |_: tower::BoxError| async {
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "overloaded",
                    "too many requests in flight; retry after the Retry-After delay",
                )
            },
        ))
        .load_shed()
        // Global: one semaphore shared by every route (the per-route
        // `concurrency_limit` would give each route its own).
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            config.max_in_flight.max(1),
        ));
    let v1 = Router::new()
        .route("/v1/namespaces", get(list_namespaces))
        .route(
            "/v1/namespaces/{ns}",
            get(namespaces::get_namespace)
                .put(namespaces::put_namespace)
                .delete(namespaces::delete_namespace),
        )
        .route(
            "/v1/namespaces/{ns}/messages",
            post(add_messages).get(list_messages),
        )
        .route("/v1/namespaces/{ns}/interactions", post(add_interaction))
        .route("/v1/namespaces/{ns}/search", post(search))
        .route("/v1/namespaces/{ns}/recent", get(recent))
        .route("/v1/namespaces/{ns}/summarize", post(summarize))
        .route("/v1/namespaces/{ns}/summaries", get(summaries))
        .route("/v1/messages/{id}", get(get_message).delete(delete_message))
        .route("/v1/embeddings", post(embeddings))
        .merge(context::routes())
        .merge(board::routes())
        .merge(events::routes())
        .merge(keys::routes())
        .merge(agents::routes())
        .route("/v1/audit", get(audit))
        .layer(shed.clone())
        // Outside the in-flight limit: a flood of bad tokens holds no permit.
        .layer(auth.clone());
    // MCP (streamable HTTP, stateless): behind the same bearer check; its
    // long-lived streams end when the server starts shutting down.
    let mcp_shutdown = tokio_util::sync::CancellationToken::new();
    {
        let (token, mut closing) = (mcp_shutdown.clone(), state.closing.subscribe());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = closing.wait_for(|c| *c).await;
                token.cancel();
            });
        }
    }
    let mcp = Router::new()
        .nest_service(
            "/mcp",
            crate::mcp::http_service(
                state.clone(),
                config.mcp_allowed_hosts.clone(),
                config.max_body_bytes,
                mcp_shutdown,
            ),
        )
        .layer(shed.clone())
        .layer(auth.clone());
    // A2A: the Agent Card is public (cards are how agents find each other);
    // the JSON-RPC endpoint takes the bearer check.
    let a2a = crate::a2a::card_route(crate::a2a::A2aConfig {
        public_url: config.public_url.clone(),
    })
    .merge(
        crate::a2a::rpc_route()
            .layer(shed.clone())
            .layer(auth.clone()),
    );
    Router::new()
        .route("/health", get(health))
        .merge(mcp)
        .merge(a2a)
        .route("/openapi.json", get(openapi))
        .merge(
            Router::new()
                .route("/metrics", get(metrics_text))
                .merge(events::stream_routes())
                .layer(auth),
        )
        .merge(v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            config.body_read_timeout,
        ))
        .layer(middleware::from_fn(track))
        .with_state(state)
}

async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    // One span per request (exported with --otlp-endpoint; see `telemetry`):
    // `authenticate` records the key and agent, engine spans nest beneath it.
    let namespace = req
        .uri()
        .path()
        .strip_prefix("/v1/namespaces/")
        .map(|rest| rest.split('/').next().unwrap_or_default().to_owned());
    let body_size = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{method} {route}"),
        http.request.method = %method,
        http.route = %route,
        http.request.body.size = body_size,
        http.response.status_code = tracing::field::Empty,
        namespace = namespace.as_deref(),
        key_id = tracing::field::Empty,
        agent_id = tracing::field::Empty,
    );
    let resp = {
        use tracing::Instrument;
        next.run(req).instrument(span.clone()).await
    };
    span.record("http.response.status_code", resp.status().as_u16());
    let status = resp.status().as_u16().to_string();
    metrics::counter!("memoryd_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("memoryd_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    resp
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        "no such route; see GET /openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that HTTP method; see GET /openapi.json",
    )
}

#[utoipa::path(get, path = "/health", responses(
    (status = 200, body = Health), (status = 503, description = "model loading", body = Health)))]
async fn health(State(s): State<AppState>) -> Response {
    match s.engine.get() {
        Some(e) if !e.is_healthy() => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "model_failed".into(),
                model: Some(e.model_info().id.clone()),
                dim: Some(e.model_info().dim),
                messages: None,
            }),
        )
            .into_response(),
        Some(e) => {
            let stats = e.stats();
            Json(Health {
                status: "ok".into(),
                model: Some(stats.model),
                dim: Some(stats.dim),
                messages: Some(stats.messages),
            })
            .into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "loading".into(),
                model: None,
                dim: None,
                messages: None,
            }),
        )
            .into_response(),
    }
}

async fn metrics_text(State(s): State<AppState>, Caller(me): Caller) -> Response {
    // Process-wide figures: for callers with admin on every namespace.
    if let Err(e) = me.check_admin() {
        return ApiError::from(e).into_response();
    }
    if let Ok(e) = s.engine() {
        let stats = e.stats();
        metrics::gauge!("memoryd_index_vectors").set(stats.messages as f64);
        metrics::gauge!("memoryd_namespaces").set(stats.namespaces as f64);
        metrics::gauge!("memoryd_embed_queue_depth").set(stats.embed_queue_depth as f64);
        metrics::gauge!("memoryd_disk_bytes").set(stats.disk_bytes as f64);
        metrics::gauge!("memoryd_graph_tail_rows").set(stats.graph_tail_rows as f64);
        metrics::gauge!("memoryd_graph_namespaces").set(stats.graph_namespaces as f64);
        metrics::gauge!("memoryd_graphs_reloading").set(stats.graphs_reloading as f64);
    }
    match &s.metrics {
        Some(h) => {
            h.run_upkeep();
            ([("content-type", "text/plain; version=0.0.4")], h.render()).into_response()
        }
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics_unavailable",
            "another metrics recorder is installed in this process",
        )
        .into_response(),
    }
}

async fn openapi() -> Response {
    ([("content-type", "application/json")], openapi_json()).into_response()
}

#[utoipa::path(post, path = "/v1/namespaces/{ns}/messages", request_body = AddMessages,
    params(("ns" = String, Path, description = "namespace")),
    responses((status = 201, body = AddedIds), (status = 400, body = ErrorResponse),
        (status = 413, body = ErrorResponse), (status = 422, body = ErrorResponse),
        (status = 429, body = ErrorResponse)))]
async fn add_messages(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(ns): ApiPath<String>,
    ApiJson(body): ApiJson<AddMessages>,
) -> Result<(StatusCode, Json<AddedIds>), ApiError> {
    let stored = s.engine()?.add_batch(&me, &ns, body.messages).await?;
    Ok((StatusCode::CREATED, Json(ids(stored))))
}

#[utoipa::path(get, path = "/v1/namespaces/{ns}/messages",
    params(("ns" = String, Path, description = "namespace"), ListParams),
    responses((status = 200, description = "all stored messages, oldest first, one page at a time", body = crate::engine::MessagePage),
        (status = 422, body = ErrorResponse)))]
async fn list_messages(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(ns): ApiPath<String>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<crate::engine::MessagePage>, ApiError> {
    let page = s
        .engine()?
        .list(&me, &ns, p.after.as_deref(), p.limit.unwrap_or(100))
        .await?;
    Ok(Json(page))
}

fn ids(messages: Vec<Message>) -> AddedIds {
    AddedIds {
        ids: messages.into_iter().map(|m| m.id).collect(),
    }
}

#[utoipa::path(post, path = "/v1/namespaces/{ns}/interactions", request_body = crate::core::types::Interaction,
    params(("ns" = String, Path, description = "namespace")),
    responses((status = 201, description = "[user message id, agent message id]", body = AddedIds),
        (status = 422, body = ErrorResponse), (status = 429, body = ErrorResponse)))]
async fn add_interaction(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(ns): ApiPath<String>,
    ApiJson(body): ApiJson<crate::core::types::Interaction>,
) -> Result<(StatusCode, Json<AddedIds>), ApiError> {
    let stored = s.engine()?.add_interaction(&me, &ns, body).await?;
    Ok((StatusCode::CREATED, Json(ids(stored))))
}

#[utoipa::path(post, path = "/v1/namespaces/{ns}/search", request_body = SearchBody,
    params(("ns" = String, Path, description = "namespace")),
    responses((status = 200, body = SearchResults), (status = 422, body = ErrorResponse),
        (status = 429, body = ErrorResponse)))]
async fn search(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(ns): ApiPath<String>,
    ApiJson(body): ApiJson<SearchBody>,
) -> Result<Json<SearchResults>, ApiError> {
    let query = match (body.query, body.vector) {
        (Some(q), None) => Query::Text(q),
        (None, Some(v)) => Query::Vector(v),
        _ => {
            return Err(
                Error::invalid("query", "give exactly one of `query` (text) and `vector`").into(),
            );
        }
    };
    let request = SearchRequest {
        query,
        k: body.k.unwrap_or(10),
        filter: body.filter.unwrap_or_default(),
        kinds: body.kinds.unwrap_or_default(),
        mode: body.mode.unwrap_or_default(),
        scope: body.scope.unwrap_or_default(),
        hybrid: None,
    };
    Ok(Json(s.engine()?.search(&me, &ns, request).await?))
}

#[utoipa::path(get, path = "/v1/namespaces/{ns}/recent",
    params(("ns" = String, Path, description = "namespace"), RecentParams),
    responses((status = 200, body = MessageList), (status = 422, body = ErrorResponse)))]
async fn recent(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(ns): ApiPath<String>,
    ApiQuery(p): ApiQuery<RecentParams>,
) -> Result<Json<MessageList>, ApiError> {
    let e = s.engine()?;
    let cap = e.config().short_term_capacity;
    let limit = p.limit.unwrap_or(20);
    if limit == 0 || limit > cap {
        return Err(Error::invalid(
            "limit",
            format!("must be between 1 and the short-term capacity ({cap})"),
        )
        .into());
    }
    Ok(Json(MessageList {
        messages: e.recent(&me, &ns, limit).await?,
    }))
}

#[utoipa::path(post, path = "/v1/namespaces/{ns}/summarize",
    params(("ns" = String, Path, description = "namespace")),
    responses((status = 200, description = "ids of the new summaries, oldest first (empty when nothing was pending)", body = AddedIds),
        (status = 422, body = ErrorResponse), (status = 429, body = ErrorResponse)))]
async fn summarize(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(ns): ApiPath<String>,
) -> Result<Json<AddedIds>, ApiError> {
    let made = s.engine()?.summarize(&me, &ns).await?;
    Ok(Json(AddedIds {
        ids: made.into_iter().map(|s| s.id).collect(),
    }))
}

#[utoipa::path(get, path = "/v1/namespaces/{ns}/summaries",
    params(("ns" = String, Path, description = "namespace")),
    responses((status = 200, body = SummaryList), (status = 422, body = ErrorResponse)))]
async fn summaries(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(ns): ApiPath<String>,
) -> Result<Json<SummaryList>, ApiError> {
    Ok(Json(SummaryList {
        summaries: s.engine()?.summaries(&me, &ns).await?,
    }))
}

#[utoipa::path(get, path = "/v1/namespaces", responses((status = 200, body = NamespaceList)))]
async fn list_namespaces(
    State(s): State<AppState>,
    Caller(me): Caller,
) -> Result<Json<NamespaceList>, ApiError> {
    Ok(Json(NamespaceList {
        namespaces: s.engine()?.namespaces(&me),
    }))
}

#[utoipa::path(get, path = "/v1/messages/{id}",
    params(("id" = String, Path, description = "message id")),
    responses((status = 200, body = Message), (status = 404, body = ErrorResponse)))]
async fn get_message(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Message>, ApiError> {
    Ok(Json(s.engine()?.get(&me, &id).await?))
}

#[utoipa::path(delete, path = "/v1/messages/{id}",
    params(("id" = String, Path, description = "message id")),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorResponse)))]
async fn delete_message(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    s.engine()?.delete(&me, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/embeddings", request_body = EmbeddingRequest,
    responses((status = 200, body = EmbeddingResponse), (status = 413, body = ErrorResponse),
        (status = 422, body = ErrorResponse), (status = 429, body = ErrorResponse)))]
async fn embeddings(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<EmbeddingRequest>,
) -> Result<Json<EmbeddingResponse>, ApiError> {
    if let Some(f) = body.encoding_format.as_deref().filter(|f| *f != "float") {
        return Err(Error::invalid(
            "encoding_format",
            format!("{f:?} is not supported; use \"float\""),
        )
        .into());
    }
    let texts = match body.input {
        EmbeddingInput::One(t) => vec![t],
        EmbeddingInput::Many(v) => v,
    };
    let e = s.engine()?;
    let out = e.embed(texts).await?;
    let tokens: usize = out.tokens.iter().sum();
    Ok(Json(EmbeddingResponse {
        object: "list".into(),
        data: out
            .rows()
            .enumerate()
            .map(|(index, v)| EmbeddingData {
                object: "embedding".into(),
                index,
                embedding: v.to_vec(),
            })
            .collect(),
        model: e.model_info().id.clone(),
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }))
}

/// Serves `app` on `listener` until SIGINT/SIGTERM, then stops accepting, ends
/// event streams, lets in-flight requests finish (up to `grace`) and flushes the
/// store.
///
/// Connection-level protection ([`ServerConfig`]): at most `max_connections`
/// open at once (further ones wait in the accept queue), a header-read timeout
/// that also closes idle kept-alive connections, and a body-read timeout (in
/// [`router`]). Without them one client holding thousands of half-sent requests
/// exhausts the process's file descriptors and nobody is served.
///
/// # Errors
/// I/O errors from the listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    state: AppState,
    grace: Duration,
    config: &ServerConfig,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let permits = Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // HTTP/1 only: detecting HTTP/2 first waits for 24 bytes with no timeout, so
    // a connection that sends nothing would hold its permit forever; with HTTP/1
    // the header timer runs from the moment the connection is accepted.
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    let shutdown = shutdown_signal(grace);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        metrics::gauge!("memoryd_connections_open").increment(1.0);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            metrics::gauge!("memoryd_connections_open").decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    // Event streams never finish on their own: end them now.
    state.closing.send_replace(true);
    graceful.shutdown().await;
    if let Some(e) = state.engine.get()
        && let Err(err) = e.flush().await
    {
        tracing::error!(error = %err, "final flush failed");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal(grace: Duration) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!(
        grace_s = grace.as_secs(),
        "shutting down: finishing in-flight requests"
    );
    // Bound the drain: a stuck client must not keep the process alive forever.
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        tracing::warn!("grace period over; exiting");
        std::process::exit(0);
    });
}
