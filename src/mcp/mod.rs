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
use rmcp::model::{
    CallToolResult, Implementation, ListResourceTemplatesResult, ListResourcesResult,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig,
};
use rmcp::model::{
    ResourceUpdatedNotificationParam, SubscribeRequestParams, SubscriptionFilter,
    UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler, tool_handler};

use crate::core::access::Access;
use crate::core::error::Error;
use crate::engine::Engine;

mod args;
mod proxy;
mod tools;

use tools::{clip, failed};

pub use args::*;
pub use proxy::McpProxy;

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
