//! Who may call what: every endpoint without a token, with a read token and with a
//! write token, as a deployed stage configures the API (every endpoint but `/health` behind a
//! token) and as `cargo xtask dev` does (the aggregates open); and a token rotated with two
//! valid at once.

use api::auth::{Scope, Tokens};
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{READ_TOKEN, TOKEN, TestApp};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Nobody,
    Reader,
    Writer,
}

impl Who {
    fn token(self) -> Option<&'static str> {
        match self {
            Who::Nobody => None,
            Who::Reader => Some(READ_TOKEN),
            Who::Writer => Some(TOKEN),
        }
    }
}

/// (method, path, JSON body) of every endpoint; `{id}` is a real ingestion.
fn endpoints(id: i64) -> Vec<(&'static str, String, Option<serde_json::Value>)> {
    vec![
        ("GET", "/health".into(), None),
        ("GET", "/openapi.json".into(), None),
        ("GET", "/".into(), None),
        ("GET", "/metrics/hires".into(), None),
        ("GET", "/metrics/departments".into(), None),
        ("GET", "/metrics".into(), None),
        ("GET", "/backups".into(), None),
        ("GET", format!("/ingestions/{id}"), None),
        ("GET", format!("/ingestions/{id}/rejects"), None),
        ("POST", "/batch/jobs".into(), Some(json!([{"id": 500, "job": "Auditor"}]))),
        ("POST", "/uploads".into(), Some(json!({"files": [{"table": "jobs", "bytes": 10}]}))),
        ("POST", "/backups/jobs".into(), None),
        ("POST", "/upload".into(), None),
        ("POST", "/restore/jobs".into(), Some(json!({"key": "jobs/none.avro"}))),
    ]
}

/// What the API answers `who` on `path`, as the status class that matters: 200-ish (let in,
/// whatever the endpoint then says), 401 or 403.
fn expected(method: &str, path: &str, who: Who, public_metrics: bool) -> u16 {
    let open = ["/health", "/openapi.json"].contains(&path);
    let aggregate = ["/", "/metrics/hires", "/metrics/departments"].contains(&path);
    match (method, who) {
        _ if open => 200,
        ("GET", Who::Nobody) if aggregate && public_metrics => 200,
        (_, Who::Nobody) => 401,
        ("GET", _) => 200,
        ("POST", Who::Reader) => 403,
        _ => 200,
    }
}

async fn check_matrix(app: &TestApp, public_metrics: bool) {
    let loaded = app.upload_csv("departments", "1,Sales\n2,Support\nx,Broken\n").await;
    let id = loaded["id"].as_i64().expect("an ingestion id");
    let mut failures = Vec::new();
    for (method, path, body) in endpoints(id) {
        for who in [Who::Nobody, Who::Reader, Who::Writer] {
            let mut request = match method {
                "GET" => app.client.get(app.url(&path)),
                _ => app.client.post(app.url(&path)),
            };
            if let Some(token) = who.token() {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request.send().await.expect("the API answers");
            let status = response.status().as_u16();
            let got = match status {
                401 | 403 => status,
                _ => 200,
            };
            let want = expected(method, &path, who, public_metrics);
            if got != want {
                failures.push(format!("{method} {path} as {who:?}: {status}, expected {want}"));
            }
            if status == 401 {
                assert_eq!(response.headers()["www-authenticate"], "Bearer", "{method} {path}");
            }
            if status == 403 && who == Who::Reader {
                let body: serde_json::Value = response.json().await.expect("a JSON error");
                assert_eq!(body["error"]["code"], "insufficient_scope", "{method} {path}");
            }
        }
    }
    assert!(failures.is_empty(), "public_metrics={public_metrics}:\n{}", failures.join("\n"));
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_deployed_stage_answers_only_tokens_and_writes_only_write_tokens(pool: PgPool) {
    // As the stack configures it: HIRING_API_TOKENS with both scopes, HIRING_PUBLIC_METRICS=false.
    let app = TestApp::start_with(pool, |s| s.public_metrics = false).await;
    check_matrix(&app, false).await;
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn the_dev_server_opens_the_aggregates_and_nothing_else(pool: PgPool) {
    // As `cargo xtask dev` runs it: HIRING_PUBLIC_METRICS=true.
    let app = TestApp::start_with(pool, |s| s.public_metrics = true).await;
    check_matrix(&app, true).await;
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_write_token_rotates_with_two_valid_at_once(pool: PgPool) {
    const OLD: &str = "old-write-token-0123456789";
    const NEW: &str = "new-write-token-0123456789";
    let batch = |app: &TestApp, token: &'static str, id: i64| {
        app.client.post(app.url("/batch/jobs")).bearer_auth(token).json(&json!([{"id": id, "job": "Auditor"}])).send()
    };
    // During the rotation the secret holds both: {"write": [old, new]}.
    let both = Tokens::from_settings(Some(&json!({ "write": [OLD, NEW] }).to_string()), None).expect("tokens");
    let app = TestApp::start_with(pool.clone(), |s| s.tokens = both).await;
    assert_eq!(batch(&app, OLD, 1).await.unwrap().status(), 200, "the old token still works");
    assert_eq!(batch(&app, NEW, 2).await.unwrap().status(), 200, "the new token works");
    // Then the old one is removed (and the tasks restarted): it is refused, the new one works.
    let after = TestApp::start_with(pool, |s| s.tokens = Tokens::new([(Scope::Write, NEW)])).await;
    assert_eq!(batch(&after, OLD, 3).await.unwrap().status(), 401, "the retired token is refused");
    assert_eq!(batch(&after, NEW, 4).await.unwrap().status(), 200);
}
