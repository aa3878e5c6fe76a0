//! The OpenAPI document: the handlers' `#[utoipa::path]` annotations and the types' schemas,
//! collected as [`crate::app`] routes them (utoipa-axum), so a route cannot be served without
//! being documented. Served at `GET /openapi.json`; Swagger UI at `/docs`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The shape of every error answer; [`crate::error`] answers with it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

impl ErrorBody {
    /// The JSON answer `{"error":{"code","message"}}` with `status`.
    pub fn response(status: StatusCode, code: &str, message: String) -> Response {
        Self::response_with(status, code, message, Vec::new())
    }

    /// The same, naming the ingestions a timed-out request started.
    pub fn response_with(status: StatusCode, code: &str, message: String, ingestions: Vec<i64>) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: code.to_owned(), message, ingestions } };
        (status, Json(body)).into_response()
    }
}

/// An error's code and message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code, e.g. `unknown_table`, `invalid_year`, `unauthorized`, `database_unavailable`.
    #[schema(example = "unknown_table")]
    pub code: String,
    /// What is wrong and what to do next.
    pub message: String,
    /// For a write that timed out (`timeout`): the ingestions it started, which go on; follow
    /// them at `GET /ingestions/{id}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingestions: Vec<i64>,
}

/// The document's fixed parts; the paths are added by the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "hiring-api",
        description = "The hiring data platform's API: CSV uploads and JSON batches into PostgreSQL, \
                       ingestion reports with every rejected row, AVRO backups and restores, and the two \
                       metrics as JSON or CSV. Every endpoint but `/health` needs `Authorization: Bearer <token>`: \
                       a read token for reads, a write token for writes (the server may open the metrics \
                       and the report with HIRING_PUBLIC_METRICS). \
                       Every answer carries `X-Request-Id` (the caller's, when it sent a plain one of \
                       at most 64 characters).",
        license(name = "MIT"),
    ),
    modifiers(&BearerToken),
    components(schemas(ErrorBody, ErrorDetail, crate::routes::metrics::Format)),
    tags(
        (name = "ingest", description = "Uploads, batches and their reports"),
        (name = "metrics", description = "The two metrics"),
        (name = "backups", description = "AVRO backups and restores"),
        (name = "report", description = "The visual report"),
        (name = "operations", description = "Health and Prometheus metrics"),
    )
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A read or write token of HIRING_API_TOKENS (or HIRING_API_TOKEN, a write token)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The paths whose `GET` answers without a token when the server opens the aggregates
/// (`HIRING_PUBLIC_METRICS`).
pub const METRICS_PATHS: [&str; 3] = ["/", "/metrics/hires", "/metrics/departments"];
/// The paths that never need a token.
pub const OPEN_PATHS: [&str; 2] = ["/health", "/uploads/{id}"];

/// Documents on every operation what [`crate::auth`] asks of it: the bearer scheme (optional on
/// the aggregates when `public_metrics`), and the 401 and 403 answers.
pub fn document_auth(openapi: &mut utoipa::openapi::OpenApi, public_metrics: bool) {
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
            .build()
    };
    for (path, item) in openapi.paths.paths.iter_mut() {
        if OPEN_PATHS.contains(&path.as_str()) {
            continue;
        }
        let public = public_metrics && METRICS_PATHS.contains(&path.as_str());
        for (method, operation) in [("GET", item.get.as_mut()), ("POST", item.post.as_mut())] {
            let Some(operation) = operation else { continue };
            let mut security = vec![SecurityRequirement::new("bearer", Vec::<String>::new())];
            if public {
                security.push(SecurityRequirement::default());
            }
            operation.security = Some(security);
            let responses = &mut operation.responses.responses;
            responses.entry("401".to_owned()).or_insert_with(|| error("No bearer token, or a wrong one").into());
            let forbidden = if method == "POST" {
                "A read token (this needs a write token), or the server has no write token (read-only)"
            } else {
                "The server has no token configured"
            };
            responses.entry("403".to_owned()).or_insert_with(|| error(forbidden).into());
        }
    }
}
