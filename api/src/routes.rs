//! One module per group of endpoints.

pub mod backups;
pub mod batch;
pub mod health;
pub mod ingestions;
pub mod metrics;
pub mod prometheus;
pub mod report;
pub mod upload;
pub mod uploads;

use crate::error::ApiError;

/// Unknown paths answer a JSON 404 like every other error.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no endpoint at {}; the API is described at /docs (and /openapi.json)", uri.path()))
}

/// Parses a `{table}` path segment.
pub(crate) fn table(name: &str) -> Result<hiring::table::Table, ApiError> {
    hiring::table::Table::from_name(name).ok_or_else(|| {
        ApiError::bad_request(
            "unknown_table",
            format!("unknown table `{name}`: expected one of departments, jobs, hired_employees"),
        )
    })
}

/// `Query<T>` whose rejection answers in the API's error format (400 `invalid_query`).
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::bad_request("invalid_query", rejection.body_text())),
        }
    }
}

/// `Path<T>` whose rejection answers in the API's error format (400 `invalid_path`).
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(ApiError::bad_request("invalid_path", rejection.body_text())),
        }
    }
}
