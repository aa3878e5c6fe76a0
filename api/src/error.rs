//! The API's one error type: client errors carry a stable code and a message; internal errors
//! answer an opaque message and are logged with their detail.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Everything a handler can answer instead of success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed.
    #[error("{message}")]
    BadRequest {
        /// The stable code.
        code: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// 401: the bearer token is missing or wrong.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: the token's scope does not cover the endpoint.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 403: the server runs read-only.
    #[error("writes are disabled: this server runs read-only because it has no write token")]
    ReadOnly,
    /// 403: the server has no token at all, so only `/health`, the documentation and (when
    /// opened) the metrics answer.
    #[error("this endpoint needs a token, and this server has none")]
    NoTokens,
    /// 404: no such resource.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request conflicts with the stored data; nothing was changed.
    #[error("{message}")]
    Conflict {
        /// The stable code.
        code: &'static str,
        /// What conflicts and how to resolve it.
        message: String,
    },
    /// 413: the body is over the limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 422: well-formed but unacceptable.
    #[error("{message}")]
    Unprocessable {
        /// The stable code.
        code: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// 503: the database is unreachable; retry later.
    #[error("the database is unavailable; retry later")]
    Unavailable(#[source] hiring::error::Error),
    /// 503: PostgreSQL refused the credentials, which rotated: they are read again before
    /// the answer goes, so the retry it asks for (after 1 s) connects.
    #[error("the database refused the credentials, which just rotated; retry after the Retry-After delay")]
    CredentialsRefused(#[source] hiring::error::Error),
    /// 503: the handler did not answer in time (`HIRING_REQUEST_TIMEOUT_SECS`); a write's work
    /// goes on, and the message says how to learn its outcome.
    #[error("{}", timeout_message(*.0, .1.as_ref()))]
    Timeout(std::time::Duration, Option<Work>),
    /// 503: as many writes as the server allows are running (`HIRING_MAX_CONCURRENT_WRITES`).
    #[error("the server is busy with other writes; retry after the Retry-After delay")]
    Busy,
    /// 500: a bug or an unexpected failure; the detail is logged, not shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A 400 with a code and a message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { code, message: message.into() }
    }

    /// A 422 with a code and a message.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Unprocessable { code, message: message.into() }
    }

    /// The HTTP status and the stable error code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "insufficient_scope"),
            ApiError::ReadOnly => (StatusCode::FORBIDDEN, "read_only"),
            ApiError::NoTokens => (StatusCode::FORBIDDEN, "no_tokens"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            ApiError::CredentialsRefused(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_credentials"),
            ApiError::Timeout(..) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            ApiError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// The work a timed-out write leaves running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// A batch: one transaction, committed or rolled back whole.
    Batch,
    /// These ingestions, recorded before the deadline.
    Ingestions(Vec<i64>),
    /// Another write (a backup, a restore).
    Write,
}

fn timeout_message(limit: std::time::Duration, work: Option<&Work>) -> String {
    let secs = limit.as_secs();
    match work {
        None => format!("the request took longer than {secs}s and was stopped; retry, or ask for less"),
        Some(Work::Batch) => format!(
            "the batch took longer than {secs}s to answer but goes on, and commits or rolls back whole: send the \
             same batch again after the Retry-After delay (rows already stored then count as unchanged)"
        ),
        Some(Work::Ingestions(ids)) => format!(
            "the upload took longer than {secs}s to answer but goes on as ingestion{} {}: follow GET /ingestions/{}",
            if ids.len() == 1 { "" } else { "s" },
            ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            ids[0]
        ),
        Some(Work::Write) => format!(
            "the request took longer than {secs}s to answer but its work goes on; check its result (GET /backups/{{table}}, \
             GET /ingestions) before sending it again"
        ),
    }
}

impl From<hiring::error::Error> for ApiError {
    fn from(error: hiring::error::Error) -> Self {
        use hiring::error::Error;
        match error {
            Error::BatchSize { .. } => ApiError::unprocessable("batch_size", error.to_string()),
            Error::BatchJson(_) => ApiError::unprocessable("invalid_json", error.to_string()),
            Error::BatchNotArray => ApiError::unprocessable("invalid_batch", error.to_string()),
            Error::UnknownTable(_) => ApiError::bad_request("unknown_table", error.to_string()),
            Error::IngestionNotFound(_) | Error::ObjectNotFound(_) => ApiError::NotFound(error.to_string()),
            Error::InvalidBackup(_) => ApiError::unprocessable("invalid_backup", error.to_string()),
            Error::RestoreConflict { .. } => {
                ApiError::Conflict { code: "restore_conflict", message: error.to_string() }
            }
            Error::Busy(_) => ApiError::Conflict { code: "in_progress", message: error.to_string() },
            Error::DuplicateUpload { .. } => {
                ApiError::Conflict { code: "already_uploaded", message: error.to_string() }
            }
            Error::MalformedFile(_) => ApiError::unprocessable("malformed_file", error.to_string()),
            Error::Failed { .. } => ApiError::Conflict { code: "ingestion_failed", message: error.to_string() },
            e if e.is_auth_failure() => ApiError::CredentialsRefused(e),
            e if e.is_retryable() => ApiError::Unavailable(e),
            e => ApiError::Internal(e.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            ApiError::ReadOnly | ApiError::NoTokens => format!(
                "{self}; restart it with HIRING_API_TOKEN=<a write token> or HIRING_API_TOKENS={{\"read\": [\"…\"], \"write\": [\"…\"]}}"
            ),
            ApiError::Unavailable(e) | ApiError::CredentialsRefused(e) => {
                tracing::warn!(error = %e, "database unavailable");
                self.to_string()
            }
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                "internal error; the server log has the details".to_owned()
            }
            _ => self.to_string(),
        };
        let ingestions = match &self {
            ApiError::Timeout(_, Some(Work::Ingestions(ids))) => ids.clone(),
            _ => Vec::new(),
        };
        let mut response = crate::openapi::ErrorBody::response_with(status, code, message, ingestions);
        match status {
            StatusCode::UNAUTHORIZED => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                let after = if matches!(self, ApiError::Busy | ApiError::CredentialsRefused(_)) { "1" } else { "5" };
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(after));
                if matches!(self, ApiError::CredentialsRefused(_)) {
                    response.extensions_mut().insert(RefreshCredentials);
                }
            }
            _ => {}
        }
        response
    }
}

/// Marks an answer whose request PostgreSQL refused the credentials of:
/// [`crate::guard::refresh_credentials`] reads them again before the answer goes.
#[derive(Debug, Clone, Copy)]
pub struct RefreshCredentials;
