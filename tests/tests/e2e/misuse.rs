//! Misuse: body limits, deadlines, the bound on concurrent writes, security headers, CORS,
//! request ids, bound SQL, secrets kept out of logs, and the Prometheus metrics.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::config::Secret;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{READ_TOKEN, TOKEN, TestApp};

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn bodies_over_each_endpoints_limit_are_refused_with_413(pool: PgPool) {
    let app = TestApp::start_with(pool, |s| s.max_upload_bytes = 64 * 1024).await;
    let post = |path: &str, body: Vec<u8>| {
        app.client.post(app.url(path)).bearer_auth(TOKEN).header("content-type", "application/json").body(body).send()
    };
    let restore = post("/restore/jobs", format!("{{\"key\":\"{}\"}}", "a".repeat(5000)).into_bytes()).await.unwrap();
    assert_eq!(restore.status(), 413, "a restore body is a key: 4 KiB at most");
    let batch = post("/batch/jobs", vec![b' '; api::MAX_BATCH_BODY_BYTES + 1]).await.unwrap();
    assert_eq!(batch.status(), 413);
    let batch: Value = batch.json().await.unwrap();
    assert_eq!(batch["error"]["code"], "payload_too_large", "in the API's error shape");
    let big = "1,Analyst\n".repeat(10_000).into_bytes();
    let (status, body) = app.upload(&[("jobs", "jobs.csv", big)]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("payload_too_large")));
    assert_eq!(app.count("jobs").await, 0);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_request_over_its_deadline_answers_503_and_the_next_one_succeeds(pool: PgPool) {
    let app = TestApp::start_with(pool.clone(), |s| s.request_timeout = Duration::from_secs(1)).await;
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE hires_rollup IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
    let started = std::time::Instant::now();
    let response =
        app.client.get(app.url("/metrics/hires?year=2021")).header("cache-control", "no-cache").send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "timeout");
    assert!(started.elapsed() < Duration::from_secs(5), "answered at the deadline, not when the lock went");
    lock.rollback().await.unwrap();
    let (status, _) = app.get_json("/metrics/hires?year=2021").await;
    assert_eq!(status, 200);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn writes_over_the_concurrency_bound_answer_busy_while_reads_go_on(pool: PgPool) {
    let app = Arc::new(TestApp::start_with(pool.clone(), |s| s.max_concurrent_writes = 1).await);
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
    let first = {
        let app = app.clone();
        tokio::spawn(async move { app.batch("jobs", &json!([{"id": 1, "job": "Analyst"}])).await })
    };
    // Wait until the first write waits on the lock, holding the only permit.
    for _ in 0..100 {
        let (waiting,): (i64,) = sqlx::query_as("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            .fetch_one(&pool)
            .await
            .unwrap();
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = app
        .client
        .post(app.url("/batch/jobs"))
        .bearer_auth(TOKEN)
        .json(&json!([{"id": 2, "job": "Manager"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "1");
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "busy");
    // A caller without the token never takes a permit: it is told so, not that the server is busy.
    let stranger = app.client.post(app.url("/batch/jobs")).json(&json!([])).send().await.unwrap();
    assert_eq!(stranger.status(), 401);
    let (status, _) = app.get_json("/health").await;
    assert_eq!(status, 200, "reads are not bounded by the writes");
    lock.rollback().await.unwrap();
    let (status, body) = first.await.unwrap();
    assert_eq!((status, body["inserted"].as_i64()), (200, Some(1)));
    let (status, _) = app.batch("jobs", &json!([{"id": 2, "job": "Manager"}])).await;
    assert_eq!(status, 200, "the permit is back");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn cors_is_closed_unless_origins_are_configured(pool: PgPool) {
    let preflight = |app: &TestApp, origin: &str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/batch/jobs"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
    };
    let closed = TestApp::start(pool.clone()).await;
    let response = preflight(&closed, "https://dashboard.example.com").await.unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none(), "no CORS by default");
    let response =
        closed.client.get(closed.url("/health")).header("origin", "https://evil.example").send().await.unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none());

    let open = TestApp::start_with(pool, |s| {
        s.cors_origins = vec![reqwest::header::HeaderValue::from_static("https://dashboard.example.com")];
    })
    .await;
    let response = preflight(&open, "https://dashboard.example.com").await.unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "https://dashboard.example.com");
    let allowed = response.headers()["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    let response = preflight(&open, "https://evil.example").await.unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none(), "only the configured origins");
}

#[test]
fn cors_origins_are_read_from_the_environment_and_a_wildcard_is_refused() {
    let settings = |origins: &str| {
        api::config::Settings::from_lookup(|name| match name {
            "DATABASE_URL" => Some("postgres://x@y/z".into()),
            "HIRING_CORS_ORIGINS" => Some(origins.into()),
            _ => None,
        })
    };
    let s = settings("https://a.example, https://b.example/").unwrap();
    assert_eq!(s.cors_origins, ["https://a.example", "https://b.example"]);
    assert!(settings("*").unwrap_err().to_string().contains("name the origins"));
    assert!(settings("a.example").unwrap_err().to_string().contains("not an origin"));
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn every_answer_has_security_headers_and_a_request_id(pool: PgPool) {
    let app = TestApp::start(pool).await;
    for path in ["/", "/health", "/metrics/hires", "/nowhere", "/openapi.json", "/docs/"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert!(headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"), "{path}");
        assert!(!headers["x-request-id"].is_empty(), "{path}");
    }
    let echo = |id: &'static str| app.client.get(app.url("/health")).header("x-request-id", id).send();
    assert_eq!(echo("client-id.42:a_b").await.unwrap().headers()["x-request-id"], "client-id.42:a_b");
    let replaced = echo("not allowed; <script>").await.unwrap().headers()["x-request-id"].clone();
    assert_ne!(replaced, "not allowed; <script>");
    let (a, b) = (
        app.client.get(app.url("/health")).send().await.unwrap().headers()["x-request-id"].clone(),
        app.client.get(app.url("/health")).send().await.unwrap().headers()["x-request-id"].clone(),
    );
    assert_ne!(a, b, "ids are unique");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn hostile_text_is_stored_as_text_never_run_as_sql(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let name = "Robert'); DROP TABLE jobs; --";
    let (status, body) = app.batch("departments", &json!([{"id": 1, "department": name}])).await;
    assert_eq!((status, body["inserted"].as_i64()), (200, Some(1)), "{body}");
    let (stored,): (String,) =
        sqlx::query_as("SELECT department FROM departments WHERE id = 1").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, name);
    assert_eq!(app.count("jobs").await, 0, "the jobs table is still there");
    for query in ["/metrics/hires?year=2021%20OR%201=1", "/ingestions/1%3BDROP", "/backups?table=jobs;DROP"] {
        let (status, body) = app.get_json(query).await;
        assert_eq!(status, 400, "{query}: {body}");
    }
}

/// Every statement built with `format!` interpolates only table and column names from the
/// `Table` enum; values always go through bind parameters (`$1`).
#[test]
fn sql_built_with_format_interpolates_only_known_identifiers() {
    let root = devenv::project_root();
    // Each of these is an identifier from `Table` (its name, a column, a referenced table).
    let allowed = ["{table}", "{dimension}", "{column}", "{}"];
    let mut checked = 0;
    let mut files = vec![];
    for dir in [
        "hiring/src",
        "api/src",
        "functions/handlers/src",
        "functions/validate/src",
        "functions/process/src",
        "functions/backup/src",
    ] {
        collect(&root.join(dir), &mut files);
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("format!(") {
            let before = &text[at.saturating_sub(40)..at];
            if !(before.contains("query") || before.contains("statement")) {
                continue;
            }
            let literal = string_literal(&text[at + 8..]);
            let mut rest = literal;
            while let Some(open) = rest.find('{') {
                let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
                let placeholder = &rest[open..close];
                assert!(
                    allowed.contains(&placeholder),
                    "{}: SQL built with format! interpolates {placeholder}; bind values as $n parameters",
                    file.display()
                );
                rest = &rest[close..];
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "the scan found the dynamic statements ({checked})");
}

/// The text of the string literal that `code` starts with (after spaces).
fn string_literal(code: &str) -> &str {
    let start = code.find('"').expect("format! starts with a string literal") + 1;
    let bytes = code.as_bytes();
    let mut end = start;
    while end < bytes.len() && !(bytes[end] == b'"' && bytes[end - 1] != b'\\') {
        end += 1;
    }
    &code[start..end]
}

fn collect(dir: &std::path::Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// Captured log output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A whole session at debug level — start, uploads, a batch with rejects, wrong tokens,
/// reads, a backup and a restore, errors — and its logs hold no token, password or AWS secret,
/// while every request line has its request id.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_full_session_logs_no_secret(pool: PgPool) {
    const PASSWORD: &str = "pg-password-7f3a9c";
    const AWS_SECRET: &str = "aws-secret-91bd27e4";
    const WRONG: &str = "wrong-token-c0ffee";
    let captured = Captured::default();
    let sink = captured.clone();
    api::telemetry::init_with(
        move || sink.clone(),
        tracing_subscriber::EnvFilter::new("debug,reqwest=warn,hyper_util::client=warn"),
        false,
        false,
    );
    // The server's pool logs in with a password (trust authentication ignores it).
    let options = pool.connect_options().as_ref().clone().password(PASSWORD);
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(4).connect_with(options).await.unwrap();
    let app = TestApp::start_with(pool, |s| {
        let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:5432/hiring");
        s.database = secrets::DatabaseAccess::from_lookup(|name| (name == "DATABASE_URL").then(|| url.clone()))
            .expect("a PostgreSQL URL");
        s.aws = vec![("AWS_SECRET_ACCESS_KEY".into(), Secret::new(AWS_SECRET))];
        api::telemetry::log_settings(s);
    })
    .await;
    app.load_sample().await;
    app.batch("hired_employees", &json!([{"id": 1, "name": "x"}, {"id": 900001, "name": "Ok", "datetime": "2021-01-01T00:00:00Z", "department_id": 1, "job_id": 1}])).await;
    let wrong = app.client.post(app.url("/batch/jobs")).bearer_auth(WRONG).json(&json!([])).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let malformed =
        app.client.post(app.url("/batch/jobs")).header("authorization", format!("Basic {TOKEN}")).send().await.unwrap();
    assert_eq!(malformed.status(), 401);
    let traced = app
        .client
        .get(app.url(&format!("/metrics/hires?year=2021&token={TOKEN}")))
        .header("x-request-id", "session-probe-1")
        .send()
        .await
        .unwrap();
    assert_eq!(traced.status(), 200);
    assert_eq!(app.client.get(app.url("/")).send().await.unwrap().status(), 200);
    app.get_json("/ingestions/3/rejects").await;
    let backup = app.client.post(app.url("/backups/jobs")).bearer_auth(TOKEN).send().await.unwrap();
    let key = backup.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_owned();
    let restore =
        app.client.post(app.url("/restore/jobs")).bearer_auth(TOKEN).json(&json!({"key": key})).send().await.unwrap();
    assert_eq!(restore.status(), 200);
    app.get_json("/nowhere").await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> =
        logs.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let requests: Vec<&Value> = lines.iter().filter(|l| l["message"] == "request").collect();
    assert!(requests.len() >= 10, "a line per request: {}", requests.len());
    for line in &requests {
        assert!(line["span"]["request_id"].is_string(), "every request line has its id: {line}");
    }
    assert!(requests.iter().any(|l| l["span"]["request_id"] == "session-probe-1"), "the caller's id is logged");
    assert!(lines.iter().any(|l| l["message"] == "settings"), "the start was logged");
    for secret in [TOKEN, WRONG, PASSWORD, AWS_SECRET] {
        assert!(!logs.contains(secret), "the logs hold the secret {secret}");
    }
    assert!(logs.contains("[redacted]"), "secrets show as [redacted]");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn prometheus_metrics_count_requests_rows_rejects_and_steps(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_dimensions().await;
    let rows = json!([
        {"id": 1, "name": "Ann", "datetime": "2021-01-01T00:00:00Z", "department_id": 1, "job_id": 1},
        {"id": 2, "name": "Bob", "datetime": "2021-01-01T00:00:00Z", "department_id": 99, "job_id": 1},
    ]);
    app.batch("hired_employees", &rows).await;
    app.get_json("/metrics/departments?year=2021").await;
    app.get_json("/ingestions/999").await;
    let response = app.client.get(app.url("/metrics")).bearer_auth(READ_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    for line in [
        r#"hiring_http_requests_total{route="/batch/{table}",method="POST",status="200"} 1"#,
        r#"hiring_http_requests_total{route="/upload",method="POST",status="200"} 2"#,
        r#"hiring_http_requests_total{route="/ingestions/{id}",method="GET",status="404"} 1"#,
        r#"hiring_http_requests_total{route="/metrics/departments",method="GET",status="200"} 1"#,
        r#"hiring_rows_ingested_total{table="departments",outcome="inserted"} 3"#,
        r#"hiring_rows_ingested_total{table="hired_employees",outcome="inserted"} 1"#,
        r#"hiring_rows_rejected_total{table="hired_employees",reason="unknown_department"} 1"#,
        r#"hiring_pipeline_step_duration_seconds_count{step="batch"} 1"#,
        r#"hiring_pipeline_step_duration_seconds_count{step="validate"} 2"#,
        r#"hiring_pipeline_step_duration_seconds_count{step="process"} 2"#,
        r#"hiring_http_request_duration_seconds_count{route="/metrics/departments",method="GET",status="200"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    assert!(text.trim_end().ends_with("# EOF"));
}

/// A client sending made-up methods cannot make new metric series.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn made_up_methods_fold_into_one_series(pool: PgPool) {
    let app = TestApp::start(pool).await;
    for n in 0..20 {
        let method = reqwest::Method::from_bytes(format!("X{n}METHOD").as_bytes()).unwrap();
        app.client.request(method, app.url("/health")).send().await.unwrap();
    }
    let text = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(crate::helpers::READ_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("METHOD\""), "a client's method became a label value:\n{text}");
    assert!(text.contains("method=\"other\""), "the unknown methods are counted as other:\n{text}");
}

/// A write whose client got the deadline's 503 still works in the background, and keeps
/// its write permit until it ends: more writes answer `busy` instead of piling up behind it.
/// The load is held by a second session's lock on its table, so the timing is certain.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_timed_out_write_keeps_its_permit_until_its_work_ends(pool: PgPool) {
    let app = TestApp::start_with(pool.clone(), |s| {
        s.max_concurrent_writes = 1;
        s.request_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE").execute(&mut *blocker).await.unwrap();
    let (status, body) = app.batch("jobs", &serde_json::json!([{"id": 1, "job": "Analyst"}])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("timeout")), "{body}");
    // The first batch still waits for the lock: the next write must not start beside it.
    let (status, body) = app.batch("jobs", &serde_json::json!([{"id": 2, "job": "Manager"}])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("busy")), "{body}");
    blocker.commit().await.unwrap();
    // Once it ends, the permit is free again, and the timed-out batch did commit.
    let mut answered = 0;
    for _ in 0..50 {
        answered = app.batch("jobs", &serde_json::json!([{"id": 3, "job": "Engineer"}])).await.0;
        if answered == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(answered, 200);
    let jobs: Vec<i32> = sqlx::query_scalar("SELECT id FROM jobs ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(jobs, [1, 3], "the timed-out batch committed; the refused one did not");
}

/// A write whose client got the deadline's 503 goes on, and the 503
/// says how to learn how it ended. An upload names the ingestions it started (and they finish);
/// a batch says to send the same batch again, which is safe: its rows then count as unchanged.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_timed_out_write_tells_how_to_learn_its_outcome(pool: PgPool) {
    let app = TestApp::start_with(pool.clone(), |s| {
        s.request_timeout = std::time::Duration::from_secs(1);
        s.upload_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE departments IN ACCESS EXCLUSIVE MODE").execute(&mut *blocker).await.unwrap();
    let (status, body) = app.upload(&[("departments", "departments.csv", b"1,Sales\n2,Support\n".to_vec())]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("timeout")), "{body}");
    let ingestions = body["error"]["ingestions"].as_array().expect("the ingestions that go on").clone();
    assert_eq!(ingestions.len(), 1, "{body}");
    let id = ingestions[0].as_i64().unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("goes on as ingestion {id}: follow GET /ingestions/{id}")), "{message}");

    let (status, body) = app.batch("departments", &serde_json::json!([{"id": 3, "department": "Ops"}])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("timeout")), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("send the same batch again"), "{message}");
    assert!(body["error"].get("ingestions").is_none(), "{body}");
    blocker.commit().await.unwrap();

    // The upload's ingestion ends, as its 503 said to follow it.
    let mut ingestion = serde_json::json!(null);
    for _ in 0..100 {
        ingestion = app.get_json(&format!("/ingestions/{id}")).await.1;
        if ingestion["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        (ingestion["status"].as_str(), ingestion["inserted"].as_i64()),
        (Some("succeeded"), Some(2)),
        "{ingestion}"
    );
    // The batch, sent again as told, finds its row stored by the first attempt.
    let mut again = serde_json::json!(null);
    for _ in 0..50 {
        let (status, body) = app.batch("departments", &serde_json::json!([{"id": 3, "department": "Ops"}])).await;
        again = body;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!((again["inserted"].as_i64(), again["unchanged"].as_i64()), (Some(0), Some(1)), "{again}");
}
