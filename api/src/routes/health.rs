//! `GET /health`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::state::AppState;

/// 200 `{"status":"ok"}` when the database answers within 2 s; 503 otherwise.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "The database answers", body = Object, example = json!({"status": "ok"})),
        (status = 503, description = "The database does not answer", body = Object,
         example = json!({"status": "unavailable", "error": {"code": "database_unavailable", "message": "the database is unreachable; retry later"}})),
    )
)]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    // Every connection busy with writes says PostgreSQL answers: waiting for one of them would
    // report a busy pool as a dead database (and have ECS replace a working task).
    let pool = &state.pool;
    if pool.num_idle() == 0 && pool.size() >= pool.options().get_max_connections() {
        return (StatusCode::OK, Json(json!({"status": "ok", "pool": "busy"})));
    }
    let probe = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(pool);
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(_)) => (StatusCode::OK, Json(json!({"status": "ok"}))),
        Ok(Err(e)) => unhealthy(e.to_string()),
        Err(_) => unhealthy("no answer within 2 s".into()),
    }
}

fn unhealthy(reason: String) -> (StatusCode, Json<Value>) {
    tracing::warn!(reason, "health check failed: database unreachable");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(
            json!({"status": "unavailable", "error": {"code": "database_unavailable", "message": "the database is unreachable; retry later"}}),
        ),
    )
}
