//! HTTP error bodies: `{"error":{"code":"<stable_snake_case>","message":"..."}}`.
//!
//! One table maps every engine error to a status ([`status_of`]); request-level
//! failures (malformed JSON, wrong content type, body too large, unknown route,
//! method not allowed) get their own stable codes.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::core::error::{Error, ErrorKind};

/// The error object inside every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable snake_case code, e.g. `invalid_value`, `malformed_json`, `overloaded`.
    pub code: String,
    /// What was wrong and how to fix it.
    pub message: String,
    /// With `precondition_failed`: the current record, so the caller can merge
    /// and retry without another read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub current: Option<serde_json::Value>,
}

/// Envelope of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorBody,
}

/// An error as the HTTP API reports it.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Returned as `error.current` (see [`ErrorBody::current`]).
    pub current: Option<serde_json::Value>,
}

impl ApiError {
    /// A request-level error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            current: None,
        }
    }
}

/// The HTTP status of an engine error.
pub fn status_of(e: &Error) -> StatusCode {
    match e.kind() {
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = status_of(&e);
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        if status == StatusCode::FORBIDDEN {
            metrics::counter!("memoryd_auth_failures_total", "reason" => "forbidden").increment(1);
        }
        let current = match &e {
            Error::PreconditionFailed { current, .. } => current.clone(),
            _ => None,
        };
        ApiError {
            current,
            ..ApiError::new(status, e.code(), e.to_string())
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_value",
                // The source names the field path and what was expected.
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| e.body_text()),
            ),
            JsonRejection::JsonSyntaxError(e)
                if std::error::Error::source(&e)
                    .is_some_and(|s| s.to_string().contains("recursion limit exceeded")) =>
            {
                // serde_json stops at 128 levels (so a deep body cannot exhaust the stack).
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_value",
                    "the JSON nests deeper than 128 levels (message metadata: at most 32)",
                )
            }
            JsonRejection::JsonSyntaxError(e) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!(
                    "the body is not valid JSON: {}",
                    std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| e.body_text())
                ),
            ),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ),
            JsonRejection::BytesRejection(e) => {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "the request body is over the size limit (--max-body-bytes, default 1 MiB): split it",
                    )
                } else {
                    ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.body_text())
                }
            }
            other => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            r.body_text(),
        )
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = self.status == StatusCode::TOO_MANY_REQUESTS
            || self.status == StatusCode::SERVICE_UNAVAILABLE;
        let mut resp = (
            self.status,
            Json(ErrorResponse {
                error: ErrorBody {
                    code: self.code.to_string(),
                    message: self.message,
                    current: self.current,
                },
            }),
        )
            .into_response();
        if retry {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
