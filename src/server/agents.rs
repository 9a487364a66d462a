//! Agent registry, discovery, mailboxes and topics: `/v1/agents…` and
//! `/v1/topics/{topic}/publish` (see [`crate::core::agents`]). Subscribing to a
//! topic or an inbox is the namespace's event stream
//! (`GET /v1/namespaces/topic:<topic>/events`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorResponse};
use super::{ApiJson, ApiPath, ApiQuery, AppState, Caller};
use crate::core::agents::{
    AckState, AgentFilter, AgentMatch, AgentPage, AgentRecord, AgentStatus, InboxAck, InboxPage,
    Mail, NewMail,
};

/// Body of `POST /v1/agents`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// The agent id to register under (`[A-Za-z0-9._-]`, 1–64; its inbox is the
    /// namespace `inbox:<id>`).
    pub id: String,
    /// The agent's A2A v1.0 Agent Card.
    #[schema(value_type = Object)]
    pub card: Value,
}

/// Query of `GET /v1/agents`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AgentListParams {
    /// Only agents with a skill of this id or name (case-insensitive).
    pub skill: Option<String>,
    /// Only agents with a skill carrying this tag (case-insensitive).
    pub tag: Option<String>,
    /// Only agents with this health: `healthy`, `unhealthy` or `gone`.
    pub status: Option<String>,
    /// The `next` id of the previous page.
    pub after: Option<String>,
    /// Page size, 1..=1000. Default 100.
    pub limit: Option<usize>,
}

/// Query of `GET /v1/agents/search`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AgentSearchParams {
    /// What the agent should be able to do, in words.
    pub q: String,
    /// How many agents, 1..=1000. Default 5.
    pub k: Option<usize>,
    /// As in `GET /v1/agents`.
    pub skill: Option<String>,
    /// As in `GET /v1/agents`.
    pub tag: Option<String>,
    /// As in `GET /v1/agents`.
    pub status: Option<String>,
}

/// Query of the inbox routes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InboxParams {
    /// Whose acknowledgements count (several consumers may read one inbox).
    /// Default `default`.
    pub consumer: Option<String>,
    /// Most messages to return, 1..=1000. Default 100 (`GET` only).
    pub limit: Option<usize>,
}

/// The agent routes (merged into `/v1`).
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/agents", get(list_agents).post(register))
        .route("/v1/agents/search", get(discover))
        .route("/v1/agents/{id}", get(get_agent).delete(deregister))
        .route("/v1/agents/{id}/heartbeat", put(heartbeat))
        .route("/v1/agents/{id}/inbox", get(inbox).post(send))
        .route("/v1/agents/{id}/inbox/ack", post(ack))
        .route("/v1/topics/{topic}/publish", post(publish))
}

fn filter(
    skill: Option<String>,
    tag: Option<String>,
    status: Option<String>,
) -> Result<AgentFilter, ApiError> {
    Ok(AgentFilter {
        skill,
        tag,
        status: status.as_deref().map(AgentStatus::parse).transpose()?,
    })
}

#[utoipa::path(post, path = "/v1/agents", request_body = Registration,
    responses((status = 201, description = "registered (or re-registered); `agent.registered` in the `agents` namespace", body = AgentRecord),
        (status = 403, body = ErrorResponse), (status = 413, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub(super) async fn register(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiJson(body): ApiJson<Registration>,
) -> Result<(StatusCode, Json<AgentRecord>), ApiError> {
    let rec = s.engine()?.register_agent(&me, &body.id, body.card).await?;
    Ok((StatusCode::CREATED, Json(rec)))
}

#[utoipa::path(get, path = "/v1/agents", params(AgentListParams),
    responses((status = 200, description = "registered agents by id, with their health now", body = AgentPage),
        (status = 422, body = ErrorResponse)))]
pub(super) async fn list_agents(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiQuery(p): ApiQuery<AgentListParams>,
) -> Result<Json<AgentPage>, ApiError> {
    let f = filter(p.skill, p.tag, p.status)?;
    let page = s
        .engine()?
        .agents(&me, &f, p.after.as_deref(), p.limit.unwrap_or(100))
        .await?;
    Ok(Json(page))
}

#[utoipa::path(get, path = "/v1/agents/search", params(AgentSearchParams),
    responses((status = 200, description = "agents whose card best matches `q` (hybrid search over name, description and skills), best first", body = [AgentMatch]),
        (status = 422, body = ErrorResponse)))]
pub(super) async fn discover(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiQuery(p): ApiQuery<AgentSearchParams>,
) -> Result<Json<Vec<AgentMatch>>, ApiError> {
    let f = filter(p.skill, p.tag, p.status)?;
    let hits = s
        .engine()?
        .discover_agents(&me, &p.q, p.k.unwrap_or(5), &f)
        .await?;
    Ok(Json(hits))
}

#[utoipa::path(get, path = "/v1/agents/{id}", params(("id" = String, Path, description = "agent id")),
    responses((status = 200, description = "the agent, with its health now", body = AgentRecord),
        (status = 404, body = ErrorResponse)))]
pub(super) async fn get_agent(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AgentRecord>, ApiError> {
    Ok(Json(s.engine()?.agent(&me, &id).await?))
}

#[utoipa::path(delete, path = "/v1/agents/{id}", params(("id" = String, Path, description = "agent id")),
    responses((status = 204, description = "deregistered (`agent.deregistered`); the inbox stays"),
        (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub(super) async fn deregister(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    s.engine()?.deregister_agent(&me, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/v1/agents/{id}/heartbeat", params(("id" = String, Path, description = "agent id")),
    responses((status = 200, description = "the agent, healthy", body = AgentRecord),
        (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub(super) async fn heartbeat(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AgentRecord>, ApiError> {
    Ok(Json(s.engine()?.agent_heartbeat(&me, &id).await?))
}

#[utoipa::path(post, path = "/v1/agents/{id}/inbox", request_body = NewMail,
    params(("id" = String, Path, description = "the recipient's agent id")),
    responses((status = 201, description = "stored durably in `inbox:<id>`", body = Mail),
        (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse),
        (status = 413, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub(super) async fn send(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<NewMail>,
) -> Result<(StatusCode, Json<Mail>), ApiError> {
    let mail = s.engine()?.send_mail(&me, &id, body).await?;
    Ok((StatusCode::CREATED, Json(mail)))
}

#[utoipa::path(get, path = "/v1/agents/{id}/inbox",
    params(("id" = String, Path, description = "agent id"), InboxParams),
    responses((status = 200, description = "unacknowledged, unexpired messages: highest priority first, then oldest", body = InboxPage),
        (status = 403, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub(super) async fn inbox(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(p): ApiQuery<InboxParams>,
) -> Result<Json<InboxPage>, ApiError> {
    let consumer = p.consumer.as_deref().unwrap_or("default");
    let page = s
        .engine()?
        .inbox(&me, &id, consumer, p.limit.unwrap_or(100))
        .await?;
    Ok(Json(page))
}

#[utoipa::path(post, path = "/v1/agents/{id}/inbox/ack", request_body = InboxAck,
    params(("id" = String, Path, description = "agent id"), InboxParams),
    responses((status = 200, description = "the consumer's acknowledgements now", body = AckState),
        (status = 403, body = ErrorResponse), (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub(super) async fn ack(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(p): ApiQuery<InboxParams>,
    ApiJson(body): ApiJson<InboxAck>,
) -> Result<Json<AckState>, ApiError> {
    let consumer = p.consumer.as_deref().unwrap_or("default");
    Ok(Json(s.engine()?.inbox_ack(&me, &id, consumer, body).await?))
}

#[utoipa::path(post, path = "/v1/topics/{topic}/publish", request_body = NewMail,
    params(("topic" = String, Path, description = "topic name ([A-Za-z0-9._-], 1-64)")),
    responses((status = 201, description = "stored in `topic:<topic>`; subscribers get `message.added` on `GET /v1/namespaces/topic:<topic>/events`", body = Mail),
        (status = 403, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub(super) async fn publish(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(topic): ApiPath<String>,
    ApiJson(body): ApiJson<NewMail>,
) -> Result<(StatusCode, Json<Mail>), ApiError> {
    let mail = s.engine()?.publish(&me, &topic, body).await?;
    Ok((StatusCode::CREATED, Json(mail)))
}
