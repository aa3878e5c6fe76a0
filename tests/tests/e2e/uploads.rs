//! Presigned uploads on a local raw zone, as under `cargo xtask dev`: the URL points
//! at the API itself, signed and expiring; the API stores the file and runs the steps.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{READ_TOKEN, TOKEN, TestApp, sample};

async fn announce(app: &TestApp, files: Value) -> (u16, Value) {
    let response =
        app.client.post(app.url("/uploads")).bearer_auth(TOKEN).json(&json!({ "files": files })).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn wait_final(app: &TestApp, id: i64) -> Value {
    // Up to 30 s: the steps run in the background, on a machine other tests load too.
    for _ in 0..600 {
        let (status, report) = app.get_json(&format!("/ingestions/{id}")).await;
        assert_eq!(status, 200, "{report}");
        if ["succeeded", "rejected", "failed"].contains(&report["status"].as_str().unwrap_or_default()) {
            return report;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("ingestion {id} did not finish");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn the_sample_goes_through_presigned_urls_in_dependency_order(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let files: Vec<(&str, Vec<u8>)> = ["hired_employees", "jobs", "departments"]
        .into_iter()
        .map(|t| (t, std::fs::read(sample(&format!("{t}.csv"))).unwrap()))
        .collect();
    let announced: Vec<Value> = files.iter().map(|(t, b)| json!({ "table": t, "bytes": b.len() })).collect();
    let (status, body) = announce(&app, json!(announced)).await;
    assert_eq!(status, 201, "{body}");
    let uploads = body["uploads"].as_array().unwrap();
    let tables: Vec<&str> = uploads.iter().map(|u| u["table"].as_str().unwrap()).collect();
    assert_eq!(tables, ["departments", "jobs", "hired_employees"], "dependency order");
    for upload in uploads {
        let id = upload["ingestion"].as_i64().unwrap();
        let (_, before) = app.get_json(&format!("/ingestions/{id}")).await;
        assert_eq!(before["status"], "awaiting_upload", "{before}");
        let url = upload["url"].as_str().unwrap();
        assert!(url.starts_with(&app.base) && url.contains("signature="), "a local, signed URL: {url}");
        let bytes = files.iter().find(|(t, _)| upload["table"] == *t).unwrap().1.clone();
        // No bearer token: the signature is the authorization, as with S3's presigned URLs.
        let put = app.client.put(url).body(bytes.clone()).send().await.unwrap();
        assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
        let report = wait_final(&app, id).await;
        assert_eq!(report["status"], "succeeded", "{report}");
        assert_eq!(report["object_key"], upload["key"]);
        // The URL takes its file once.
        let again = app.client.put(url).body(bytes).send().await.unwrap();
        assert_eq!(again.status(), 409);
    }
    assert_eq!((app.count("departments").await, app.count("jobs").await), (12, 183));
    assert_eq!(app.count("hired_employees").await, 1929);
    let (_, hires) = app.get_json(&format!("/ingestions/{}", uploads[2]["ingestion"])).await;
    assert_eq!(hires["rejected"], 70, "{hires}");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_tampered_expired_or_oversized_put_is_refused(pool: PgPool) {
    let app = TestApp::start(pool).await;
    // "1,Analyst\n": the file put in the end, exactly the size announced.
    let (_, body) = announce(&app, json!([{ "table": "jobs", "bytes": 10 }])).await;
    let upload = &body["uploads"][0];
    let url = upload["url"].as_str().unwrap().to_owned();
    let id = upload["ingestion"].as_i64().unwrap();
    let put = |url: String, bytes: &'static str| app.client.put(url).body(bytes).send();

    let more_bytes = url.replace("bytes=10", "bytes=2000");
    assert_eq!(put(more_bytes, "1,Analyst\n").await.unwrap().status(), 403, "a changed size breaks the signature");
    let other = url.replace(&format!("/uploads/{id}?"), &format!("/uploads/{}?", id + 1));
    assert_eq!(put(other, "1,Analyst\n").await.unwrap().status(), 403, "another ingestion's URL");
    let expires = url.split("expires=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    let expired = url.replace(&format!("expires={expires}"), "expires=1000");
    assert_eq!(put(expired, "1,Analyst\n").await.unwrap().status(), 403);
    let oversized = put(url.clone(), "1,Analyst\n2,Manager\n3,Engineer\n").await.unwrap();
    assert_eq!(oversized.status(), 413);
    let (_, still) = app.get_json(&format!("/ingestions/{id}")).await;
    assert_eq!(still["status"], "awaiting_upload", "a refused put changes nothing");
    assert_eq!(put(url, "1,Analyst\n").await.unwrap().status(), 200);
    assert_eq!(wait_final(&app, id).await["inserted"], 1);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn announcing_needs_a_write_token_and_sane_files(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let files = json!({ "files": [{ "table": "jobs", "bytes": 10 }] });
    let read = app.client.post(app.url("/uploads")).bearer_auth(READ_TOKEN).json(&files).send().await.unwrap();
    assert_eq!(read.status(), 403);
    for (files, code) in [
        (json!([]), 400),
        (json!([{ "table": "jobs", "bytes": 1 }, { "table": "jobs", "bytes": 2 }]), 400),
        (json!([{ "table": "nope", "bytes": 1 }]), 400),
        (json!([{ "table": "jobs", "bytes": 6_000_000_000_000u64 }]), 413),
    ] {
        let (status, body) = announce(&app, files.clone()).await;
        assert_eq!(status, code, "{files}: {body}");
    }
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_direct_upload_over_the_limit_names_the_presigned_flow(pool: PgPool) {
    // As behind API Gateway: the stack sets HIRING_MAX_UPLOAD_BYTES under the 10 MB quota.
    let app = TestApp::start_with(pool, |s| s.max_upload_bytes = 64 * 1024).await;
    let big = "1,Analyst\n".repeat(10_000).into_bytes();
    let (status, body) = app.upload(&[("jobs", "jobs.csv", big)]).await;
    assert_eq!(status, 413, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("POST /uploads") && message.contains("cargo xtask upload"), "{message}");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_hires_file_put_first_waits_for_its_upload_and_loads_when_it_comes(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let files: Vec<(&str, Vec<u8>)> = ["hired_employees", "jobs", "departments"]
        .into_iter()
        .map(|t| (t, std::fs::read(sample(&format!("{t}.csv"))).unwrap()))
        .collect();
    let announced: Vec<Value> = files.iter().map(|(t, b)| json!({ "table": t, "bytes": b.len() })).collect();
    let (status, body) = announce(&app, json!(announced)).await;
    assert_eq!(status, 201, "{body}");
    let uploads = body["uploads"].as_array().unwrap();
    let of = |table: &str| uploads.iter().find(|u| u["table"] == table).unwrap();
    let bytes = |table: &str| files.iter().find(|(t, _)| *t == table).unwrap().1.clone();

    let hires = of("hired_employees");
    let put = app.client.put(hires["url"].as_str().unwrap()).body(bytes("hired_employees")).send().await.unwrap();
    assert_eq!(put.status(), 200);
    // The departments and jobs come later than the steps' retries of a busy database last
    // (about 6 s): the hires wait for them as long as the stage's workflow wait.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let (_, waiting) = app.get_json(&format!("/ingestions/{}", hires["ingestion"])).await;
    assert_eq!(waiting["status"], "queued", "{waiting}");
    for table in ["departments", "jobs"] {
        let put = app.client.put(of(table)["url"].as_str().unwrap()).body(bytes(table)).send().await.unwrap();
        assert_eq!(put.status(), 200);
        assert_eq!(wait_final(&app, of(table)["ingestion"].as_i64().unwrap()).await["status"], "succeeded");
    }
    let report = wait_final(&app, hires["ingestion"].as_i64().unwrap()).await;
    assert_eq!(report["status"], "succeeded", "{report}");
    assert_eq!(app.count("hired_employees").await, 1929);

    // Its URL sent again: refused, saying what to do.
    let again = app.client.put(hires["url"].as_str().unwrap()).body(bytes("hired_employees")).send().await.unwrap();
    assert_eq!(again.status(), 409);
    let message = again.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("POST /uploads"), "the answer says how to send a file again: {message}");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_retried_load_counts_its_rejects_once(pool: PgPool) {
    let app = TestApp::start(pool.clone()).await;
    let file = b"1,Sales\n2,\n".to_vec();
    let (status, body) = announce(&app, json!([{ "table": "departments", "bytes": file.len() }])).await;
    assert_eq!(status, 201, "{body}");
    let upload = &body["uploads"][0];
    // The load loses its connection while it waits for the table: the steps run again, and
    // the validation they replay must not count its rejects a second time.
    let mut locker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE departments IN ACCESS EXCLUSIVE MODE").execute(&mut *locker).await.unwrap();
    let put = app.client.put(upload["url"].as_str().unwrap()).body(file).send().await.unwrap();
    assert_eq!(put.status(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let pid: i32 = loop {
        let waiting: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' LIMIT 1",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        if let Some(pid) = waiting {
            break pid;
        }
        assert!(std::time::Instant::now() < deadline, "the load never waited for the table");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(&pool).await.unwrap();
    locker.rollback().await.unwrap();
    let report = wait_final(&app, upload["ingestion"].as_i64().unwrap()).await;
    assert_eq!(report["status"], "succeeded", "{report}");

    let response = app.client.get(app.url("/metrics")).bearer_auth(READ_TOKEN).send().await.unwrap();
    let text = response.text().await.unwrap();
    let rejected: Vec<&str> = text.lines().filter(|line| line.starts_with("hiring_rows_rejected_total")).collect();
    assert_eq!(rejected, [r#"hiring_rows_rejected_total{table="departments",reason="missing_field"} 1"#], "{text}");
    let inserted: Vec<&str> =
        text.lines().filter(|line| line.starts_with("hiring_rows_ingested_total{table=\"departments\"")).collect();
    assert_eq!(inserted, [r#"hiring_rows_ingested_total{table="departments",outcome="inserted"} 1"#], "{text}");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn one_announced_file_is_one_whole_put(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.upload_csv("departments", "1,Sales\n2,Support\n").await;
    let first = b"1,Analyst\n2,Manager\n".to_vec();
    let second = b"3,Engineer\n4,Tester\n".to_vec();
    assert_eq!(first.len(), second.len(), "two different files of the announced size");
    let (status, body) = announce(&app, json!([{ "table": "jobs", "bytes": first.len() }])).await;
    assert_eq!(status, 201, "{body}");
    let (id, url) = (body["uploads"][0]["ingestion"].as_i64().unwrap(), body["uploads"][0]["url"].as_str().unwrap());

    // A body shorter than announced is refused, and nothing is kept.
    let short = app.client.put(url).body(first[..5].to_vec()).send().await.unwrap();
    assert_eq!(short.status(), 400, "{}", short.text().await.unwrap());
    let (_, waiting) = app.get_json(&format!("/ingestions/{id}")).await;
    assert_eq!(waiting["status"], "awaiting_upload", "{waiting}");

    // Two whole PUTs at once: one is taken, the other refused; the file loaded is one of them.
    let (a, b) =
        tokio::join!(app.client.put(url).body(first.clone()).send(), app.client.put(url).body(second.clone()).send());
    let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "the first complete PUT wins");
    let report = wait_final(&app, id).await;
    assert_eq!(report["status"], "succeeded", "{report}");
    let jobs: Vec<(i32, String)> =
        sqlx::query_as("SELECT id, job FROM jobs ORDER BY id").fetch_all(&app.pool).await.unwrap();
    let one_of = |body: &[u8]| -> Vec<(i32, String)> {
        String::from_utf8_lossy(body)
            .lines()
            .map(|line| {
                let (id, job) = line.split_once(',').unwrap();
                (id.parse().unwrap(), job.to_owned())
            })
            .collect()
    };
    assert!(jobs == one_of(&first) || jobs == one_of(&second), "one whole file, never a mix: {jobs:?}");
    // Later PUTs are refused, pointing at a new upload.
    let again = app.client.put(url).body(first).send().await.unwrap();
    assert_eq!(again.status(), 409);
}
