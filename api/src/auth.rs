//! Bearer-token protection of the write endpoints.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// Lets a request through only with `Authorization: Bearer <HIRING_API_TOKEN>`; answers 403
/// when no token is configured (read-only mode) and 401 otherwise.
pub async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    let Some(expected) = &state.settings.api_token else {
        return Err(ApiError::ReadOnly);
    };
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        // `ct_eq` compares in time independent of where the bytes differ.
        Some(token) if bool::from(token.as_bytes().ct_eq(expected.expose().as_bytes())) => Ok(next.run(request).await),
        Some(_) => Err(ApiError::Unauthorized("the bearer token is not valid")),
        None => Err(ApiError::Unauthorized("this endpoint needs `Authorization: Bearer <token>`")),
    }
}
