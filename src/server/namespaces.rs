//! Namespace routes: `GET`/`PUT`/`DELETE /v1/namespaces/{ns}` (the hierarchy:
//! parent, metadata, children; recursive deletion).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorResponse};
use super::{ApiJson, ApiPath, ApiQuery, AppState, Caller};
use crate::engine::NamespaceDetail;

/// Body of `PUT /v1/namespaces/{ns}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespaceBody {
    /// The namespace it inherits context from (must exist; no cycles; chains at
    /// most 16 deep). Absent or `null`: no parent.
    pub parent: Option<String>,
    /// Free-form JSON metadata (replaces the old metadata).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Query of `DELETE /v1/namespaces/{ns}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteNamespaceParams {
    /// Also delete its descendants (without it, a namespace with children
    /// answers 409 `conflict`).
    pub recursive: Option<bool>,
}

#[utoipa::path(put, path = "/v1/namespaces/{ns}", request_body = NamespaceBody,
    params(("ns" = String, Path, description = "namespace")),
    responses((status = 200, description = "created or updated", body = NamespaceDetail),
        (status = 404, description = "unknown parent", body = ErrorResponse),
        (status = 409, description = "a cycle or a chain deeper than 16", body = ErrorResponse),
        (status = 422, body = ErrorResponse)))]
pub(super) async fn put_namespace(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(ns): ApiPath<String>,
    ApiJson(body): ApiJson<NamespaceBody>,
) -> Result<Json<NamespaceDetail>, ApiError> {
    let e = s.engine()?;
    e.put_namespace(&me, &ns, body.parent.as_deref(), body.metadata)
        .await?;
    Ok(Json(e.namespace(&me, &ns).await?))
}

#[utoipa::path(get, path = "/v1/namespaces/{ns}",
    params(("ns" = String, Path, description = "namespace")),
    responses((status = 200, description = "parent, children, counts", body = NamespaceDetail),
        (status = 404, body = ErrorResponse)))]
pub(super) async fn get_namespace(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(ns): ApiPath<String>,
) -> Result<Json<NamespaceDetail>, ApiError> {
    Ok(Json(s.engine()?.namespace(&me, &ns).await?))
}

#[utoipa::path(delete, path = "/v1/namespaces/{ns}",
    params(("ns" = String, Path, description = "namespace"), DeleteNamespaceParams),
    responses((status = 204, description = "everything in it is forgotten"),
        (status = 409, description = "it has children and `recursive` is not set", body = ErrorResponse),
        (status = 422, body = ErrorResponse)))]
pub(super) async fn delete_namespace(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(ns): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeleteNamespaceParams>,
) -> Result<StatusCode, ApiError> {
    s.engine()?
        .delete_namespace_tree(&me, &ns, q.recursive.unwrap_or(false))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
