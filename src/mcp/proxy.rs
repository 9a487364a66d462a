//! `memoryd mcp --server URL`: the stdio server that forwards to a running
//! memoryd's `/mcp`.

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::{ErrorData, RoleClient, RoleServer, ServerHandler};

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
