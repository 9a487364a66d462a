//! API-key routes (admin): `POST /v1/keys` (the token is in this answer and
//! nowhere else), `GET /v1/keys`, `DELETE /v1/keys/{id}` (revoke).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorResponse};
use super::{ApiJson, ApiPath, AppState, Caller};
use crate::core::keys::{ApiKey, CreatedKey, NewKey};

/// Every API key (never a token).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// Keys, oldest first.
    pub keys: Vec<ApiKey>,
}

/// The key routes (merged into `/v1`).
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/keys", get(list_keys).post(create_key))
        .route("/v1/keys/{id}", delete(revoke_key))
}

#[utoipa::path(post, path = "/v1/keys", request_body = NewKey,
    responses((status = 201, description = "the key and its token (shown once)", body = CreatedKey),
        (status = 403, description = "needs admin on `*`", body = ErrorResponse),
        (status = 422, body = ErrorResponse)))]
pub(super) async fn create_key(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiJson(body): ApiJson<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let created = s.engine()?.create_key(&me, body).await?;
    tracing::info!(key_id = %created.key.id, name = %created.key.name, "API key created");
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/v1/keys",
    responses((status = 200, body = KeyList), (status = 403, body = ErrorResponse)))]
pub(super) async fn list_keys(
    State(s): State<AppState>,
    Caller(me): Caller,
) -> Result<Json<KeyList>, ApiError> {
    Ok(Json(KeyList {
        keys: s.engine()?.keys(&me)?,
    }))
}

#[utoipa::path(delete, path = "/v1/keys/{id}",
    params(("id" = String, Path, description = "key id")),
    responses((status = 200, description = "the key, revoked", body = ApiKey),
        (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub(super) async fn revoke_key(
    State(s): State<AppState>,
    Caller(me): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ApiKey>, ApiError> {
    let key = s.engine()?.revoke_key(&me, &id).await?;
    tracing::info!(key_id = %key.id, "API key revoked");
    Ok(Json(key))
}
