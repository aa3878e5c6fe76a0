//! `POST /upload`: whole files, their formats, bad input, idempotence and concurrency.

use serde_json::Value;
use sqlx::PgPool;

use api::auth::{Scope, Tokens};

use crate::helpers::{READ_TOKEN, TOKEN, TestApp, fixture, sample};

fn counts(report: &Value) -> [i64; 5] {
    ["rows", "inserted", "updated", "unchanged", "rejected"].map(|k| report[k].as_i64().unwrap_or(-1))
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn the_sample_data_loads_with_its_70_incomplete_hires_rejected(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let body = app.load_sample().await;
    let reports = body["ingestions"].as_array().unwrap();
    let tables: Vec<&str> = reports.iter().map(|r| r["table"].as_str().unwrap()).collect();
    assert_eq!(tables, ["departments", "jobs", "hired_employees"]);
    assert_eq!(counts(&reports[0]), [12, 12, 0, 0, 0]);
    assert_eq!(counts(&reports[1]), [183, 183, 0, 0, 0]);
    assert_eq!(counts(&reports[2]), [1999, 1929, 0, 0, 70]);
    assert_eq!(app.count("hired_employees").await, 1929);
    let rejects = app.rejects(&reports[2]).await;
    assert_eq!(rejects.len(), 70);
    assert!(rejects.iter().all(|r| r.1 == "missing_field"));
    assert_eq!(rejects[0], (2, "missing_field".into(), "2,Ty Hofer,2021-05-30T05:43:46Z,8,".into()));
    let (status, ingestion) = app.get_json(&format!("/ingestions/{}", reports[2]["id"])).await;
    assert_eq!(status, 200);
    assert_eq!(ingestion["status"], "succeeded");
    assert_eq!(ingestion["rejected"], 70);
    assert_eq!(ingestion["kind"], "file");
    // The uploaded file is kept as received in the raw zone.
    let raw_dir = app.data_dir.path().join("raw/hired_employees");
    let kept: Vec<_> = std::fs::read_dir(&raw_dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read(&kept[0]).unwrap(), std::fs::read(sample("hired_employees.csv")).unwrap());
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn parts_load_in_dependency_order_whatever_order_they_arrive_in(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let read = |t: &str| std::fs::read(sample(&format!("{t}.csv"))).unwrap();
    // Named by file name only (the field names say nothing), hires first.
    let (status, body) = app
        .upload(&[
            ("file", "hired_employees.csv", read("hired_employees")),
            ("file", "jobs.csv", read("jobs")),
            ("file", "departments.csv", read("departments")),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ingestions"][0]["table"], "departments");
    assert_eq!(body["ingestions"][2]["rejected"], 70);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn the_crlf_variant_of_the_sample_loads_the_same(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let read = |t: &str| std::fs::read(fixture(&format!("crlf/{t}.csv"))).unwrap();
    let (status, body) = app
        .upload(&[
            ("departments", "d.csv", read("departments")),
            ("jobs", "j.csv", read("jobs")),
            ("hired_employees", "h.csv", read("hired_employees")),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(counts(&body["ingestions"][2]), [1999, 1929, 0, 0, 70]);
    let rejects = app.rejects(&body["ingestions"][2]).await;
    assert_eq!(rejects[0], (2, "missing_field".into(), "2,Ty Hofer,2021-05-30T05:43:46Z,8,".into()));
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn bom_crlf_header_quoted_commas_and_embedded_quotes_are_read(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let csv = "\u{feff}id,department\r\n1,\"Sales, EMEA\"\r\n2,\"The \"\"Best\"\" Team\"\r\n3,  Padded  \r\n";
    let report = app.upload_csv("departments", csv).await;
    assert_eq!(counts(&report), [3, 3, 0, 0, 0]);
    let names: Vec<String> =
        sqlx::query_scalar("SELECT department FROM departments ORDER BY id").fetch_all(&app.pool).await.unwrap();
    assert_eq!(names, ["Sales, EMEA", "The \"Best\" Team", "Padded"]);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_binary_file_gives_rejected_rows_and_inserts_nothing(pool: PgPool) {
    let app = TestApp::start(pool).await;
    // A PNG-like header and pseudo-random bytes, with a few line breaks.
    let mut bytes = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..4096 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.push((state >> 24) as u8);
    }
    let report = app.upload_csv("jobs", bytes).await;
    assert!(report["rows"].as_i64().unwrap() > 0);
    assert_eq!(report["rejected"], report["rows"]);
    assert_eq!(app.count("jobs").await, 0);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn an_empty_file_is_an_ingestion_of_zero_rows(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let report = app.upload_csv("departments", "").await;
    assert_eq!(counts(&report), [0, 0, 0, 0, 0]);
    let header_only = app.upload_csv("departments", "id,department\n").await;
    assert_eq!(counts(&header_only), [0, 0, 0, 0, 0]);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_part_naming_no_table_is_a_400_and_loads_nothing(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let (status, body) = app
        .upload(&[
            ("departments", "departments.csv", b"1,Sales\n".to_vec()),
            ("salaries", "salaries.csv", b"1,2\n".to_vec()),
        ])
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "unknown_table");
    assert!(body["error"]["message"].as_str().unwrap().contains("salaries"));
    assert_eq!(app.count("departments").await, 0);
    assert_eq!(app.count("ingestions").await, 0);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn an_upload_over_the_limit_is_a_413(pool: PgPool) {
    let app = TestApp::start_with(pool, |s| s.max_upload_bytes = 64 * 1024).await;
    let big = "1,Sales\n".repeat(20_000).into_bytes();
    let (status, body) = app.upload(&[("departments", "departments.csv", big)]).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert_eq!(app.count("departments").await, 0);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn loading_the_same_file_twice_changes_nothing_the_second_time(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_sample().await;
    let before: Vec<(i32, String, String)> =
        sqlx::query_as("SELECT id, name, datetime::text FROM hired_employees ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let again = app.load_sample().await;
    assert_eq!(counts(&again["ingestions"][0]), [12, 0, 0, 12, 0]);
    assert_eq!(counts(&again["ingestions"][2]), [1999, 0, 0, 1929, 70]);
    let after: Vec<(i32, String, String)> =
        sqlx::query_as("SELECT id, name, datetime::text FROM hired_employees ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(before, after);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_changed_row_replaces_the_stored_one_and_counts_as_updated(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.upload_csv("departments", "1,Sales\n2,Support\n").await;
    let report = app.upload_csv("departments", "1,Sales\n2,Customer Support\n3,Legal\n").await;
    assert_eq!(counts(&report), [3, 1, 1, 1, 0]);
    let name: String =
        sqlx::query_scalar("SELECT department FROM departments WHERE id = 2").fetch_one(&app.pool).await.unwrap();
    assert_eq!(name, "Customer Support");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn two_identical_uploads_at_once_insert_each_row_once(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_dimensions().await;
    let csv: String = (1..=20_000)
        .map(|id| format!("{id},Person {id},2021-0{}-15T10:00:00Z,{},{}\n", id % 9 + 1, id % 3 + 1, id % 3 + 1))
        .collect();
    let (a, b) = tokio::join!(app.upload_csv("hired_employees", csv.clone()), app.upload_csv("hired_employees", csv));
    let mut both = [counts(&a), counts(&b)];
    both.sort();
    assert_eq!(both, [[20_000, 0, 0, 20_000, 0], [20_000, 20_000, 0, 0, 0]]);
    assert_eq!(app.count("hired_employees").await, 20_000);
    let rollup: i64 = sqlx::query_scalar("SELECT sum(q1 + q2 + q3 + q4)::bigint FROM hires_rollup")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rollup, 20_000, "the metrics rollup counts each hire once");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn writes_need_the_bearer_token(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let url = app.url("/batch/departments");
    let body = serde_json::json!([{"id": 1, "department": "Sales"}]);
    let missing = app.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let wrong = app.client.post(&url).bearer_auth("not-the-token").json(&body).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let error: Value = wrong.json().await.unwrap();
    assert_eq!(error["error"]["code"], "unauthorized");
    let upload = app.client.post(app.url("/upload")).bearer_auth("nope").send().await.unwrap();
    assert_eq!(upload.status(), 401);
    assert_eq!(app.count("departments").await, 0);
    let right = app.client.post(&url).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    assert_eq!(right.status(), 200);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn without_a_configured_token_the_server_is_read_only(pool: PgPool) {
    let app = TestApp::start_with(pool, |s| s.tokens = Tokens::new([(Scope::Read, READ_TOKEN)])).await;
    let response = app
        .client
        .post(app.url("/batch/jobs"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!([{"id": 1, "job": "x"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "read_only");
    assert!(error["error"]["message"].as_str().unwrap().contains("HIRING_API_TOKEN"));
    let (status, _) = app.get_json("/metrics/hires").await;
    assert_eq!(status, 200, "reads still work");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn rejects_are_paginated_with_a_next_link(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_sample().await;
    let first = app.client.get(app.url("/ingestions/3/rejects?limit=50")).bearer_auth(READ_TOKEN).send().await.unwrap();
    let link = first.headers()["link"].to_str().unwrap().to_owned();
    let page: Vec<Value> = first.json().await.unwrap();
    assert_eq!(page.len(), 50);
    let next = link.trim_start_matches('<').split('>').next().unwrap().to_owned();
    let second = app.client.get(app.url(&next)).bearer_auth(READ_TOKEN).send().await.unwrap();
    assert!(second.headers().get("link").is_none());
    let rest: Vec<Value> = second.json().await.unwrap();
    assert_eq!(rest.len(), 20);
    assert!(rest[0]["line"].as_i64() > page[49]["line"].as_i64());
    let (status, _) = app.get_json("/ingestions/999/rejects").await;
    assert_eq!(status, 404);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn health_is_ok_with_the_database_and_503_without_it(pool: PgPool) {
    let app = TestApp::start(pool).await;
    assert_eq!(app.get_json("/health").await, (200, serde_json::json!({"status": "ok"})));

    let unreachable = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(500))
        .connect_lazy("postgres://postgres@127.0.0.1:1/nowhere")
        .unwrap();
    let down = TestApp::start(unreachable).await;
    let (status, body) = down.get_json("/health").await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "unavailable");
    let (status, body) = down.get_json("/metrics/hires").await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "database_unavailable");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn an_upload_dropped_at_its_deadline_leaves_no_staged_file(pool: PgPool) {
    let app = crate::helpers::TestApp::start_with(pool, |settings| {
        settings.upload_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    // The file comes slowly: its first rows, then nothing until past the deadline.
    let chunks = futures_util::stream::unfold(0u8, |step| async move {
        match step {
            0 => Some((Ok::<_, std::io::Error>(b"1,Sales\n".to_vec()), 1)),
            1 => {
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                Some((Ok(b"2,Support\n".to_vec()), 2))
            }
            _ => None,
        }
    });
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(chunks)).file_name("departments.csv");
    let form = reqwest::multipart::Form::new().part("departments", part);
    let response = app.client.post(app.url("/upload")).bearer_auth(crate::helpers::TOKEN).multipart(form).send().await;
    let status = response.map(|r| r.status().as_u16()).unwrap_or(0);
    assert!(status == 503 || status == 0, "the upload timed out: {status}");
    let staged: Vec<std::path::PathBuf> = walk(&app.data_dir.path().join("raw"));
    assert!(staged.is_empty(), "nothing staged is left behind: {staged:?}");
}

fn walk(directory: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(directory) else { return Vec::new() };
    entries
        .flatten()
        .flat_map(|entry| if entry.path().is_dir() { walk(&entry.path()) } else { vec![entry.path()] })
        .collect()
}

/// An upload holds at most one part per table; more is refused before anything is
/// stored or loaded.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn an_upload_with_a_table_twice_is_refused_whole(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let parts: Vec<(&str, &str, Vec<u8>)> = (0..50).map(|_| ("jobs", "jobs.csv", b"1,Analyst\n".to_vec())).collect();
    let (status, body) = app.upload(&parts).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "duplicate_table", "{body}");
    let ingestions: i64 = sqlx::query_scalar("SELECT count(*) FROM ingestions").fetch_one(&app.pool).await.unwrap();
    assert_eq!((ingestions, app.count("jobs").await), (0, 0), "nothing was recorded or loaded");
    let raw = app.data_dir.path().join("raw").join("jobs");
    let left = std::fs::read_dir(&raw).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "no part stayed in {}", raw.display());
}

/// A raw zone named with another spelling of the staging directory is the same place:
/// the upload keeps its file (it was copied onto itself, then deleted).
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_raw_zone_spelled_otherwise_keeps_the_uploaded_file(pool: PgPool) {
    let data = tempfile::tempdir().unwrap();
    let spelled = format!("file://{}/./raw/", data.path().display());
    let app = TestApp::start_with(pool, |s| {
        s.data_dir = data.path().to_owned();
        for (zone, url) in &mut s.zone_urls {
            *url = match zone {
                hiring::zones::ZoneName::Raw => spelled.clone(),
                other => data.path().join(other.name()).display().to_string(),
            };
        }
    })
    .await;
    let report = app.upload_csv("jobs", "1,Analyst\n2,Manager\n").await;
    assert_eq!(report["inserted"], 2, "{report}");
    let (_, ingestion) = app.get_json(&format!("/ingestions/{}", report["id"])).await;
    let key = ingestion["object_key"].as_str().expect("a key").to_owned();
    let stored = data.path().join("raw").join(&key);
    assert_eq!(
        std::fs::read(&stored).map_err(|e| format!("{}: {e}", stored.display())),
        Ok(b"1,Analyst\n2,Manager\n".to_vec())
    );
}

/// When a later part of an upload cannot be stored in the raw zone, the parts stored
/// before it are removed: the upload fails whole, and nothing of it is left to be loaded (in
/// `stepfunctions` mode each stored part's event would start a load) or orphaned.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn an_upload_whose_later_part_cannot_be_stored_leaves_nothing(pool: PgPool) {
    let raw = tempfile::tempdir().unwrap();
    // A file where the jobs folder would go: storing the jobs part fails, after the departments.
    std::fs::write(raw.path().join("jobs"), b"in the way").unwrap();
    let raw_url = raw.path().display().to_string();
    let app = TestApp::start_with(pool, |s| {
        for (zone, url) in &mut s.zone_urls {
            if *zone == hiring::zones::ZoneName::Raw {
                *url = raw_url.clone();
            }
        }
    })
    .await;
    let (status, body) = app
        .upload(&[
            ("departments", "departments.csv", b"1,Sales\n".to_vec()),
            ("jobs", "jobs.csv", b"1,Analyst\n".to_vec()),
        ])
        .await;
    assert!(status >= 500, "{status} {body}");
    let departments = raw.path().join("departments");
    let left = std::fs::read_dir(&departments).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "the departments part stayed in the raw zone ({})", departments.display());
    let ingestions: i64 = sqlx::query_scalar("SELECT count(*) FROM ingestions").fetch_one(&app.pool).await.unwrap();
    assert_eq!((ingestions, app.count("departments").await), (0, 0));
}
