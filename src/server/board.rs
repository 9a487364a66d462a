//! Blackboard routes: `/v1/namespaces/{ns}/board/…`. A problem's version
//! travels as `ETag`; `If-Match` (or `expected_version`) on a resolve makes it
//! compare-and-set.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorResponse};
use super::{ApiJson, ApiPath, ApiQuery, AppState, Caller};
use crate::core::board::{
    NewProblem, NewProposal, NewVote, Problem, ProblemDetail, ProblemStatus, Proposal, Resolve,
};
use crate::engine::ProblemPage;

/// Query of `GET …/board/problems`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ProblemListParams {
    /// Only problems with this status (`open` or `resolved`).
    pub status: Option<ProblemStatus>,
    /// The `next` id of the previous page.
    pub after: Option<String>,
    /// Page size, 1..=1000. Default 100.
    pub limit: Option<usize>,
}

/// The board routes (merged into `/v1`).
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/namespaces/{ns}/board/problems",
            get(list_problems).post(post_problem),
        )
        .route("/v1/namespaces/{ns}/board/problems/{id}", get(get_problem))
        .route(
            "/v1/namespaces/{ns}/board/problems/{id}/proposals",
            post(propose),
        )
        .route(
            "/v1/namespaces/{ns}/board/problems/{id}/resolve",
            post(resolve),
        )
        .route("/v1/namespaces/{ns}/board/proposals/{id}/votes", post(vote))
}

fn with_etag<T: serde::Serialize>(status: StatusCode, version: u64, body: T) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{version}\""))
        .expect("digits and quotes are a valid header value");
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut().insert(header::ETAG, etag);
    resp
}

#[utoipa::path(post, path = "/v1/namespaces/{ns}/board/problems", request_body = NewProblem,
    params(("ns" = String, Path, description = "namespace")),
    responses((status = 201, description = "the problem (status `open`, version 1)", body = Problem),
        (status = 413, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub(super) async fn post_problem(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(ns): ApiPath<String>,
    ApiJson(body): ApiJson<NewProblem>,
) -> Result<Response, ApiError> {
    let p = s.engine()?.board_post(&me, &ns, body).await?;
    Ok(with_etag(StatusCode::CREATED, p.version, p))
}

#[utoipa::path(get, path = "/v1/namespaces/{ns}/board/problems",
    params(("ns" = String, Path, description = "namespace"), ProblemListParams),
    responses((status = 200, description = "problems, oldest first", body = ProblemPage),
        (status = 422, body = ErrorResponse)))]
pub(super) async fn list_problems(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(ns): ApiPath<String>,
    ApiQuery(p): ApiQuery<ProblemListParams>,
) -> Result<Json<ProblemPage>, ApiError> {
    let page = s
        .engine()?
        .board_problems(
            &me,
            &ns,
            p.status,
            p.after.as_deref(),
            p.limit.unwrap_or(100),
        )
        .await?;
    Ok(Json(page))
}

#[utoipa::path(get, path = "/v1/namespaces/{ns}/board/problems/{id}",
    params(("ns" = String, Path, description = "namespace"), ("id" = String, Path, description = "problem id")),
    responses((status = 200, description = "the problem with its proposals, best first; ETag is its version", body = ProblemDetail),
        (status = 404, body = ErrorResponse)))]
pub(super) async fn get_problem(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath((ns, id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let d = s.engine()?.board_problem(&me, &ns, &id).await?;
    Ok(with_etag(StatusCode::OK, d.problem.version, d))
}

#[utoipa::path(post, path = "/v1/namespaces/{ns}/board/problems/{id}/proposals", request_body = NewProposal,
    params(("ns" = String, Path, description = "namespace"), ("id" = String, Path, description = "problem id")),
    responses((status = 201, body = Proposal), (status = 404, body = ErrorResponse),
        (status = 409, description = "the problem is resolved", body = ErrorResponse),
        (status = 422, body = ErrorResponse)))]
pub(super) async fn propose(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath((ns, id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<NewProposal>,
) -> Result<(StatusCode, Json<Proposal>), ApiError> {
    let p = s.engine()?.board_propose(&me, &ns, &id, body).await?;
    Ok((StatusCode::CREATED, Json(p)))
}

#[utoipa::path(post, path = "/v1/namespaces/{ns}/board/proposals/{id}/votes", request_body = NewVote,
    params(("ns" = String, Path, description = "namespace"), ("id" = String, Path, description = "proposal id")),
    responses((status = 200, description = "the proposal with its votes", body = Proposal),
        (status = 404, body = ErrorResponse),
        (status = 409, description = "the problem is resolved", body = ErrorResponse),
        (status = 422, body = ErrorResponse)))]
pub(super) async fn vote(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath((ns, id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<NewVote>,
) -> Result<Json<Proposal>, ApiError> {
    Ok(Json(s.engine()?.board_vote(&me, &ns, &id, body).await?))
}

#[utoipa::path(post, path = "/v1/namespaces/{ns}/board/problems/{id}/resolve", request_body = Resolve,
    params(("ns" = String, Path, description = "namespace"), ("id" = String, Path, description = "problem id"),
        ("If-Match" = Option<String>, Header, description = "expected problem version (compare-and-set)")),
    responses((status = 200, description = "the resolved problem; ETag is its version", body = Problem),
        (status = 404, body = ErrorResponse),
        (status = 409, description = "already resolved", body = ErrorResponse),
        (status = 412, description = "the problem's version differs", body = ErrorResponse),
        (status = 422, body = ErrorResponse)))]
pub(super) async fn resolve(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath((ns, id)): ApiPath<(String, String)>,
    headers: HeaderMap,
    ApiJson(mut body): ApiJson<Resolve>,
) -> Result<Response, ApiError> {
    body.expected_version = super::context::precondition(&headers, body.expected_version)?;
    let p = s.engine()?.board_resolve(&me, &ns, &id, body).await?;
    Ok(with_etag(StatusCode::OK, p.version, p))
}
