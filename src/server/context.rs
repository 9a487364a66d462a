//! Shared-context routes: `/v1/namespaces/{ns}/context[/{key}[/history]]`.
//! Versions travel as `ETag: "<version>"`; `If-Match: "<version>"` (or
//! `expected_version` in the body or query) makes a write compare-and-set, and a
//! lost race answers 412 `precondition_failed` with the current entry in
//! `error.current`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorResponse};
use super::{ApiJson, ApiPath, ApiQuery, AppState, Caller};
use crate::core::context::{ContextEntry, ContextVersion, ContextWrite};
use crate::engine::ContextPage;

/// Body of `PUT` and `PATCH …/context/{key}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextBody {
    /// `PUT`: the new value (any JSON). `PATCH`: a JSON Merge Patch (RFC 7396).
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
    /// Compare-and-set: write only if the current version is this (`0`: only if
    /// the key does not exist). Same as `If-Match`.
    pub expected_version: Option<u64>,
    /// The version's author (default: the caller's agent).
    pub agent_id: Option<String>,
    /// Expire this many seconds after the write.
    pub ttl_s: Option<u64>,
    /// Expire at this time (RFC 3339; wins over `ttl_s`).
    pub expires_at: Option<DateTime<Utc>>,
}

/// Query of `DELETE …/context/{key}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    /// Compare-and-set (same as `If-Match`).
    pub expected_version: Option<u64>,
}

/// Query of `GET …/context/{key}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GetParams {
    /// Fall through the namespace's ancestors like a `ChainMap` (default true);
    /// the entry's `namespace` says where it came from.
    pub inherit: Option<bool>,
}

/// Query of `GET …/context`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ContextListParams {
    /// Only keys that start with this.
    pub prefix: Option<String>,
    /// The `next` key of the previous page.
    pub after: Option<String>,
    /// Page size, 1..=1000. Default 100.
    pub limit: Option<usize>,
}

/// Query of `GET …/context/{key}/history`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// Versions after this one. Default 0.
    pub after: Option<u64>,
    /// Page size, 1..=1000. Default 100.
    pub limit: Option<usize>,
}

/// A key's versions, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContextHistory {
    /// The versions.
    pub versions: Vec<ContextVersion>,
}

/// The context routes (merged into `/v1`).
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/namespaces/{ns}/context", get(list_context))
        .route(
            "/v1/namespaces/{ns}/context/{key}",
            get(get_context)
                .put(put_context)
                .patch(patch_context)
                .delete(delete_context),
        )
        .route("/v1/namespaces/{ns}/context/{key}/history", get(history))
}

/// The version in `If-Match` (`"3"`, `3` or `W/"3"`), if present.
pub(super) fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or_default().trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse().map(Some).map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            "If-Match must be a version number, e.g. \"3\"",
        )
    })
}

/// Header and body must not disagree.
pub(super) fn precondition(
    headers: &HeaderMap,
    body: Option<u64>,
) -> Result<Option<u64>, ApiError> {
    match (if_match(headers)?, body) {
        (Some(h), Some(b)) if h != b => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            format!("If-Match says version {h}, expected_version says {b}"),
        )),
        (h, b) => Ok(h.or(b)),
    }
}

fn with_etag(status: StatusCode, entry: ContextEntry) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", entry.version))
        .expect("digits and quotes are a valid header value");
    let mut resp = (status, Json(entry)).into_response();
    resp.headers_mut().insert(header::ETAG, etag);
    resp
}

fn write_opts(body: &ContextBody, expected_version: Option<u64>) -> ContextWrite {
    ContextWrite {
        expected_version,
        agent_id: body.agent_id.clone(),
        ttl_s: body.ttl_s,
        expires_at: body.expires_at,
    }
}

#[utoipa::path(put, path = "/v1/namespaces/{ns}/context/{key}", request_body = ContextBody,
    params(("ns" = String, Path, description = "namespace"), ("key" = String, Path, description = "context key"),
        ("If-Match" = Option<String>, Header, description = "expected version (compare-and-set)")),
    responses((status = 200, description = "the new version (201 when it created the key); ETag is its version", body = ContextEntry),
        (status = 412, description = "the current version differs; `error.current` holds it", body = ErrorResponse),
        (status = 413, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub(super) async fn put_context(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath((ns, key)): ApiPath<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ContextBody>,
) -> Result<Response, ApiError> {
    let expected = precondition(&headers, body.expected_version)?;
    let opts = write_opts(&body, expected);
    let entry = s
        .engine()?
        .context_set(&me, &ns, &key, body.value, opts)
        .await?;
    let status = if entry.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_etag(status, entry))
}

#[utoipa::path(patch, path = "/v1/namespaces/{ns}/context/{key}", request_body = ContextBody,
    params(("ns" = String, Path, description = "namespace"), ("key" = String, Path, description = "context key"),
        ("If-Match" = Option<String>, Header, description = "expected version (compare-and-set)")),
    responses((status = 200, description = "the merged version", body = ContextEntry),
        (status = 412, body = ErrorResponse), (status = 413, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub(super) async fn patch_context(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath((ns, key)): ApiPath<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ContextBody>,
) -> Result<Response, ApiError> {
    let expected = precondition(&headers, body.expected_version)?;
    let opts = write_opts(&body, expected);
    let entry = s
        .engine()?
        .context_patch(&me, &ns, &key, body.value, opts)
        .await?;
    Ok(with_etag(StatusCode::OK, entry))
}

#[utoipa::path(get, path = "/v1/namespaces/{ns}/context/{key}",
    params(("ns" = String, Path, description = "namespace"), ("key" = String, Path, description = "context key"), GetParams),
    responses((status = 200, description = "the live value; ETag is its version", body = ContextEntry),
        (status = 404, body = ErrorResponse)))]
pub(super) async fn get_context(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath((ns, key)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<GetParams>,
) -> Result<Response, ApiError> {
    let e = s.engine()?;
    let entry = if q.inherit.unwrap_or(true) {
        e.context_lookup(&me, &ns, &key).await?
    } else {
        e.context_get(&me, &ns, &key).await?
    };
    Ok(with_etag(StatusCode::OK, entry))
}

#[utoipa::path(delete, path = "/v1/namespaces/{ns}/context/{key}",
    params(("ns" = String, Path, description = "namespace"), ("key" = String, Path, description = "context key"), DeleteParams,
        ("If-Match" = Option<String>, Header, description = "expected version (compare-and-set)")),
    responses((status = 200, description = "the tombstone version", body = ContextEntry),
        (status = 404, body = ErrorResponse), (status = 412, body = ErrorResponse)))]
pub(super) async fn delete_context(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath((ns, key)): ApiPath<(String, String)>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<DeleteParams>,
) -> Result<Response, ApiError> {
    let expected = precondition(&headers, q.expected_version)?;
    let entry = s.engine()?.context_delete(&me, &ns, &key, expected).await?;
    Ok(with_etag(StatusCode::OK, entry))
}

#[utoipa::path(get, path = "/v1/namespaces/{ns}/context",
    params(("ns" = String, Path, description = "namespace"), ContextListParams),
    responses((status = 200, description = "live entries by key, one page at a time", body = ContextPage),
        (status = 422, body = ErrorResponse)))]
pub(super) async fn list_context(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(ns): ApiPath<String>,
    ApiQuery(q): ApiQuery<ContextListParams>,
) -> Result<Json<ContextPage>, ApiError> {
    Ok(Json(
        s.engine()?
            .context_list(
                &me,
                &ns,
                q.prefix.as_deref().unwrap_or(""),
                q.after.as_deref(),
                q.limit.unwrap_or(100),
            )
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/namespaces/{ns}/context/{key}/history",
    params(("ns" = String, Path, description = "namespace"), ("key" = String, Path, description = "context key"), HistoryParams),
    responses((status = 200, description = "every version, oldest first", body = ContextHistory),
        (status = 422, body = ErrorResponse)))]
pub(super) async fn history(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath((ns, key)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<HistoryParams>,
) -> Result<Json<ContextHistory>, ApiError> {
    Ok(Json(ContextHistory {
        versions: s
            .engine()?
            .context_history(&me, &ns, &key, q.after.unwrap_or(0), q.limit.unwrap_or(100))
            .await?,
    }))
}
