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
        let body = ErrorBody { error: ErrorDetail { code: code.to_owned(), message } };
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
}

/// The document's fixed parts; the paths are added by the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "hiring-api",
        description = "The hiring data platform's API: CSV uploads and JSON batches into PostgreSQL, \
                       ingestion reports with every rejected row, AVRO backups and restores, and the two \
                       metrics as JSON or CSV. Writes need `Authorization: Bearer <HIRING_API_TOKEN>`. \
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
                    .description(Some("The HIRING_API_TOKEN the server was started with"))
                    .build(),
            ),
        );
    }
}
