//! The API's protections against misuse, as middleware: request ids, security headers,
//! deadlines, a bound on concurrent writes, and CORS (closed unless configured).
//!
//! Body limits are per route in [`crate::app`]; the token check is [`crate::auth`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::ApiError;
use crate::state::AppState;

/// The header that carries a request's id, in and out.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request's id: the caller's `X-Request-Id` when it is 1–64 characters of
/// `[A-Za-z0-9._:-]`, else one made here. It is the `request_id` of the request's log span.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    /// The id of `request`, taken from its header or made new.
    pub fn of(request: &Request) -> RequestId {
        let given = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).filter(|id| acceptable(id));
        match given {
            Some(id) => RequestId(id.into()),
            None => RequestId(new_id().into()),
        }
    }
}

fn acceptable(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// `<process start, hex seconds>-<pid>-<counter>`: unique across the tasks of a service and
/// across restarts, without coordination.
fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START
        .get_or_init(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    format!("{start:x}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Headers every answer carries. Pages get a strict Content-Security-Policy (no scripts on the
/// report, Swagger UI's own files on `/docs`); JSON answers `default-src 'none'`.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let docs = request.uri().path().starts_with("/docs");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let csp = if docs {
        // Swagger UI needs its scripts, styles and inline styles; it loads nothing elsewhere.
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    } else {
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; \
         base-uri 'none'; form-action 'self'"
    };
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, csp),
        (HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
        (HeaderName::from_static("cross-origin-resource-policy"), "same-origin"),
        (HeaderName::from_static("permissions-policy"), "camera=(), microphone=(), geolocation=()"),
    ] {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    }
    response
}

/// The 413 of `POST /upload`: it names the flow that takes files of any size.
pub const UPLOAD_TOO_LARGE: &str = "the upload is over this server's limit for POST /upload (HIRING_MAX_UPLOAD_BYTES); \
     send large files straight to storage instead: POST /uploads answers presigned URLs (`cargo xtask upload` does it \
     for you)";

/// Puts the answers axum's extractors make on their own (a body over its limit, a missing
/// content type, a malformed JSON body…), which are plain text, into the API's error shape.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let upload = request.uri().path() == "/upload";
    let response = next.run(request).await;
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|kind| kind.to_str().is_ok_and(|kind| kind.starts_with("text/plain")));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 16 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let code = match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        _ if status.is_server_error() => "internal",
        _ => "client_error",
    };
    let message = match (status.as_u16(), text.trim()) {
        (413, _) if upload => UPLOAD_TOO_LARGE.to_owned(),
        (413, _) => {
            "the body is over this endpoint's limit; send less (see the API's limits in docs/api.md)".to_owned()
        }
        (405, _) => "this path does not take that method; see /docs".to_owned(),
        (_, "") => status.canonical_reason().unwrap_or("error").to_owned(),
        (_, text) => text.to_owned(),
    };
    let mut answer = crate::openapi::ErrorBody::response(status, code, message);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

/// The ingestions a request has started, which go on after its deadline: the handler records
/// them here (a request extension the deadline puts in), and the deadline's 503 names them so
/// the client can follow the work it started instead of sending it again.
#[derive(Debug, Clone, Default)]
pub struct Started(Arc<std::sync::Mutex<Vec<i64>>>);

impl Started {
    /// Records ingestions the request has started.
    pub fn ingestions(&self, ids: impl IntoIterator<Item = i64>) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(ids);
    }

    fn ids(&self) -> Vec<i64> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Answers 503 (`timeout`) when the handler has not answered within `limit`. Loads run in
/// their own tasks, so a write that times out still finishes its transaction (or none), and
/// the answer says how to learn its outcome: the ingestions it started (see [`Started`]), or,
/// for a batch, to send the same batch again (rows already stored count as unchanged).
pub async fn deadline(State(limit): State<Duration>, mut request: Request, next: Next) -> Response {
    use axum::response::IntoResponse;
    let started = Started::default();
    request.extensions_mut().insert(started.clone());
    let work = if request.uri().path().starts_with("/batch/") {
        Some(crate::error::Work::Batch)
    } else if request.method() == Method::POST {
        Some(crate::error::Work::Write)
    } else {
        None
    };
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let ingestions = started.ids();
            let work = if ingestions.is_empty() { work } else { Some(crate::error::Work::Ingestions(ingestions)) };
            ApiError::Timeout(limit, work).into_response()
        }
    }
}

/// Reads the database credentials again when PostgreSQL refused them during the request
/// ([`crate::error::RefreshCredentials`]), before the 503 goes out, so the client's retry
/// connects with the rotated password.
pub async fn refresh_credentials(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.extensions().get::<crate::error::RefreshCredentials>().is_some()
        && let Some(credentials) = &state.credentials
        && let Err(error) = credentials.refresh().await
    {
        tracing::error!(%error, "could not read the database credentials again");
    }
    response
}

/// The write endpoints' shared bound: at most this many run at once; more answer 503 (`busy`)
/// with `Retry-After` at once rather than queueing behind them.
#[derive(Debug)]
pub struct WritePermits(Arc<Semaphore>);

impl WritePermits {
    /// Room for `concurrent` writes at once.
    pub fn new(concurrent: usize) -> Self {
        WritePermits(Arc::new(Semaphore::new(concurrent.max(1))))
    }

    /// Waits for a permit, for work that runs in the background (a presigned upload's steps).
    pub async fn acquire(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.0.clone().acquire_owned().await.ok()
    }
}

/// A write's permit, shared by the request and the work it starts: it is free again only when
/// both ended, so a write whose client got the deadline's 503 still counts while it works.
#[derive(Debug, Clone)]
pub struct WritePermit(#[allow(dead_code)] Arc<tokio::sync::OwnedSemaphorePermit>);

/// Lets a write through when a permit is free, holding it until the answer is made and, through
/// the request's [`WritePermit`] extension, until the work the handler spawned ends.
pub async fn write_permit(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Ok(permit) = state.write_permits.0.clone().try_acquire_owned() else {
        return Err(ApiError::Busy);
    };
    let permit = WritePermit(Arc::new(permit));
    request.extensions_mut().insert(permit.clone());
    let response = next.run(request).await;
    drop(permit);
    Ok(response)
}

/// CORS for the origins of `HIRING_CORS_ORIGINS`; `None` when there are none, and then no CORS
/// header is ever sent, so browsers keep other origins out.
pub fn cors(origins: &[HeaderValue]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT, REQUEST_ID.clone()])
            .expose_headers([REQUEST_ID.clone(), header::LINK, header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_taken_from_callers() {
        assert!(acceptable("abc-123_x.y:z"));
        assert!(!acceptable(""));
        assert!(!acceptable(&"a".repeat(65)));
        assert!(!acceptable("a b"));
        assert!(!acceptable("a\nb"));
        assert_ne!(new_id(), new_id());
    }
}
