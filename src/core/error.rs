//! The engine's error type and its stable error codes.
//!
//! Every front end (HTTP, CLI, future protocol adapters) maps [`Error`] through
//! [`Error::code`] and [`Error::kind`]; the codes are part of the public contract and
//! never change meaning once released.

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside memoryd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A namespace name does not match `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`.
    #[error(
        "invalid namespace {0:?}: use 1-128 characters from [A-Za-z0-9._:-], starting with a letter or digit"
    )]
    InvalidNamespace(String),
    /// A field has a value the engine cannot accept (empty content, k out of range, ...).
    #[error("invalid value for `{field}`: {message}")]
    InvalidInput {
        /// The offending field, as named in the API (`content`, `k`, `filter.from`, ...).
        field: String,
        /// What was wrong and how to fix it.
        message: String,
    },
    /// A request exceeds a configured limit (messages per request, content length, ...).
    #[error("`{field}` is too large: {message}")]
    TooLarge {
        /// The field or part of the request that is too large.
        field: String,
        /// The limit and how to stay within it.
        message: String,
    },
    /// No message (or other record) has this id.
    #[error("no {what} with id {id:?}")]
    NotFound {
        /// What was looked up (`message`, `namespace`).
        what: &'static str,
        /// The id that was looked up.
        id: String,
    },
    /// The embedding queue is full; retry after a short delay.
    #[error("the embedding queue is full ({capacity} requests waiting); retry shortly")]
    Overloaded {
        /// The queue's capacity in requests.
        capacity: usize,
    },
    /// The data directory was created with another embedding model.
    #[error(
        "the data directory was written with model {stored:?} ({stored_dim}-d); this engine runs {current:?} ({current_dim}-d). Vector spaces never mix: open it with the original model or use another --data-dir"
    )]
    ModelMismatch {
        /// Model id recorded in the data directory.
        stored: String,
        /// Dimension recorded in the data directory.
        stored_dim: usize,
        /// Model id of the running embedder.
        current: String,
        /// Dimension of the running embedder.
        current_dim: usize,
    },
    /// The model files could not be found, fetched or verified.
    #[error("model unavailable: {0}")]
    ModelUnavailable(String),
    /// The model failed while running (tokenization or forward pass).
    #[error("embedding failed: {0}")]
    Embedding(String),
    /// The model crashed (panicked) and the embedding worker stopped: this and
    /// every later embedding request fail until the server is restarted.
    #[error("the embedding model crashed and is stopped until a restart: {0}")]
    ModelFailed(String),
    /// A persisted record could not be decoded.
    #[error("corrupt record in {tree}: {message}")]
    Corrupt {
        /// Where the record lives (a table or tree name).
        tree: &'static str,
        /// What could not be decoded.
        message: String,
    },
    /// The storage backend failed (the backend's own message; no backend type
    /// crosses the storage seam).
    #[error("storage error: {0}")]
    Storage(String),
    /// A write lost a race that the caller cannot resolve by retrying the same
    /// request unchanged (e.g. a concurrent writer changed what it depended on).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A compare-and-set precondition (`If-Match`, expected version) did not hold.
    #[error("precondition failed: {message}")]
    PreconditionFailed {
        /// What was expected and what was found.
        message: String,
        /// The current version, when the record exists.
        current_version: Option<u64>,
        /// The current record as JSON, when it exists (front ends return it so the
        /// caller can merge and retry).
        current: Option<serde_json::Value>,
    },
    /// The caller is known but its access does not cover this namespace or scope.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The caller did not prove who it is (no key, or an unknown, revoked or
    /// expired one).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// A filesystem operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The engine is shutting down and takes no new work.
    #[error("the engine is shutting down")]
    ShuttingDown,
}

/// Broad classes of errors, which front ends map to their status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller sent something invalid (HTTP 422).
    Invalid,
    /// The request is over a limit (HTTP 413).
    TooLarge,
    /// The named thing does not exist (HTTP 404).
    NotFound,
    /// Try again later (HTTP 429 / 503).
    Overloaded,
    /// The server is not able to serve (HTTP 503).
    Unavailable,
    /// A concurrent change won (HTTP 409).
    Conflict,
    /// A compare-and-set precondition failed (HTTP 412).
    PreconditionFailed,
    /// Authenticated, but not allowed (HTTP 403).
    Forbidden,
    /// Not authenticated (HTTP 401).
    Unauthorized,
    /// A bug or an environment failure (HTTP 500).
    Internal,
}

impl Error {
    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidInput {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::TooLarge`].
    pub fn too_large(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::TooLarge {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The stable snake_case code for this error (part of the HTTP contract).
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidNamespace(_) => "invalid_namespace",
            Error::InvalidInput { .. } => "invalid_value",
            Error::TooLarge { .. } => "too_large",
            Error::NotFound { .. } => "not_found",
            Error::Overloaded { .. } => "overloaded",
            Error::ModelMismatch { .. } => "model_mismatch",
            Error::ModelUnavailable(_) => "model_unavailable",
            Error::Embedding(_) => "embedding_failed",
            Error::ModelFailed(_) => "model_failed",
            Error::Corrupt { .. } => "corrupt_record",
            Error::Storage(_) => "storage_error",
            Error::Conflict(_) => "conflict",
            Error::PreconditionFailed { .. } => "precondition_failed",
            Error::Forbidden(_) => "forbidden",
            Error::Unauthorized(_) => "unauthorized",
            Error::Io(_) => "io_error",
            Error::ShuttingDown => "shutting_down",
        }
    }

    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidNamespace(_) | Error::InvalidInput { .. } => ErrorKind::Invalid,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Overloaded { .. } => ErrorKind::Overloaded,
            Error::ShuttingDown | Error::ModelUnavailable(_) | Error::ModelFailed(_) => {
                ErrorKind::Unavailable
            }
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::PreconditionFailed { .. } => ErrorKind::PreconditionFailed,
            Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::Unauthorized(_) => ErrorKind::Unauthorized,
            Error::ModelMismatch { .. }
            | Error::Embedding(_)
            | Error::Corrupt { .. }
            | Error::Storage(_)
            | Error::Io(_) => ErrorKind::Internal,
        }
    }
}

/// Shorthand for a storage failure with the backend's message.
impl Error {
    /// [`Error::Storage`] from any backend error.
    pub fn storage(e: impl std::fmt::Display) -> Self {
        Error::Storage(e.to_string())
    }
}
