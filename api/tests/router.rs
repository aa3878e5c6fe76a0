//! HTTP behaviour that needs neither a socket nor a database, through the router itself
//! (`app(state).oneshot(request)`): the fast level of the API's tests. The pool points at a
//! closed port and is never used by these requests; what needs PostgreSQL is tested end to
//! end in `tests/`.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

const TOKEN: &str = "router-test-token";

fn app(token: Option<&str>) -> (tempfile::TempDir, axum::Router) {
    let data = tempfile::tempdir().expect("a temporary directory");
    let data_dir = data.path().display().to_string();
    let vars = [
        ("DATABASE_URL", Some("postgres://nobody@127.0.0.1:1/none")),
        ("HIRING_DATA_DIR", Some(data_dir.as_str())),
        ("HIRING_API_TOKEN", token),
    ];
    let settings = api::config::Settings::from_lookup(|name| {
        vars.iter().find(|(n, _)| *n == name).and_then(|(_, v)| v.map(str::to_owned))
    })
    .expect("settings");
    let pool =
        sqlx::postgres::PgPoolOptions::new().connect_lazy_with("postgres://nobody@127.0.0.1:1/none".parse().unwrap());
    let state = api::state::AppState::new(pool, settings).expect("state");
    (data, api::app(state))
}

async fn send(app: axum::Router, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = app.oneshot(request).await.expect("the router answers");
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.expect("a body");
    (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404_with_the_security_headers() {
    let (_data, app) = app(None);
    let (status, headers, body) = send(app, Request::get("/no/such/thing").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert!(headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn writes_need_the_token_and_are_refused_without_one_configured() {
    let (_data, guarded) = app(Some(TOKEN));
    let batch = || Request::post("/batch/jobs").header(header::CONTENT_TYPE, "application/json");
    let (status, _, body) = send(guarded.clone(), batch().body(Body::from("[]")).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let wrong = batch().header(header::AUTHORIZATION, "Bearer wrong").body(Body::from("[]")).unwrap();
    assert_eq!(send(guarded, wrong).await.0, StatusCode::UNAUTHORIZED);

    let (_read_only_data, read_only) = app(None);
    let (status, _, body) = send(read_only, batch().body(Body::from("[]")).unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no token configured: writes are off ({body})");
}

#[tokio::test]
async fn the_openapi_document_lists_the_endpoints() {
    let (_data, app) = app(None);
    let (status, _, document) = send(app, Request::get("/openapi.json").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    for path in ["/upload", "/batch/{table}", "/metrics/hires", "/metrics/departments", "/health"] {
        assert!(document["paths"].get(path).is_some(), "{path} is documented");
    }
}
