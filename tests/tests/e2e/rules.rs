//! Each rule of the data contract, one test each: the row is not inserted, and the reject is
//! stored with its stable reason, its position and its raw text.

use serde_json::json;
use sqlx::PgPool;

use crate::helpers::TestApp;

const GOOD: &str = "2021-07-27T16:02:08Z";

/// Uploads hires after departments and jobs 1..=3; returns the rejects and the hire count.
async fn upload_hires(app: &TestApp, csv: &str) -> (serde_json::Value, Vec<(i64, String, String)>) {
    app.load_dimensions().await;
    let report = app.upload_csv("hired_employees", csv).await;
    let rejects = app.rejects(&report).await;
    (report, rejects)
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_row_with_the_wrong_number_of_fields_is_rejected(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let (report, rejects) = upload_hires(&app, &format!("1,Ann,{GOOD},1,1\n2,Bob,{GOOD},1\n3,Cy,{GOOD},1,1,9\n")).await;
    assert_eq!((report["inserted"].as_i64(), report["rejected"].as_i64()), (Some(1), Some(2)));
    assert_eq!(
        rejects,
        [
            (2, "wrong_field_count".into(), format!("2,Bob,{GOOD},1")),
            (3, "wrong_field_count".into(), format!("3,Cy,{GOOD},1,1,9"))
        ]
    );
    assert_eq!(app.count("hired_employees").await, 1);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_row_with_an_empty_or_blank_field_is_rejected(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let (_, rejects) =
        upload_hires(&app, &format!("1,   ,{GOOD},1,1\n2,Bob,,1,1\n3,Cy,{GOOD},,1\n4,Di,{GOOD},1,\"  \"\n")).await;
    assert_eq!(rejects.len(), 4);
    assert!(rejects.iter().all(|r| r.1 == "missing_field"), "{rejects:?}");
    assert_eq!(app.count("hired_employees").await, 0);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn ids_that_are_not_positive_32_bit_integers_are_rejected(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let csv = format!(
        "abc,Ann,{GOOD},1,1\n0,Bob,{GOOD},1,1\n-4,Cy,{GOOD},1,1\n2147483648,Di,{GOOD},1,1\n12.5,Ed,{GOOD},1,1\n5,Fay,{GOOD},x,1\n6,Gus,{GOOD},1,0\n2147483647,Max,{GOOD},1,1\n"
    );
    let (_, rejects) = upload_hires(&app, &csv).await;
    let reasons: Vec<&str> = rejects.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(reasons, ["invalid_id"; 7]);
    let stored: Vec<i32> = sqlx::query_scalar("SELECT id FROM hired_employees").fetch_all(&app.pool).await.unwrap();
    assert_eq!(stored, [i32::MAX]);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_datetime_that_is_not_iso_8601_is_rejected(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let csv = "1,Ann,2021-13-40T99:00:00Z,1,1\n2,Bob,yesterday,1,1\n3,Cy,2021-02-30T10:00:00Z,1,1\n4,Di,2021-07-27,1,1\n5,Ed,2021-07-27T16:02:08+02:00,1,1\n";
    let (_, rejects) = upload_hires(&app, csv).await;
    let positions: Vec<(i64, &str)> = rejects.iter().map(|r| (r.0, r.1.as_str())).collect();
    assert_eq!(
        positions,
        [(1, "invalid_datetime"), (2, "invalid_datetime"), (3, "invalid_datetime"), (4, "invalid_datetime")]
    );
    let stored: String =
        sqlx::query_scalar("SELECT to_char(datetime AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM hired_employees")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, "2021-07-27 14:02:08", "an offset converts to UTC");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_hire_in_an_unknown_department_is_rejected(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let (_, rejects) = upload_hires(&app, &format!("1,Ann,{GOOD},99,1\n2,Bob,{GOOD},3,1\n")).await;
    assert_eq!(rejects, [(1, "unknown_department".into(), format!("1,Ann,{GOOD},99,1"))]);
    assert_eq!(app.count("hired_employees").await, 1);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_hire_in_an_unknown_job_is_rejected(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let (_, rejects) = upload_hires(&app, &format!("1,Ann,{GOOD},1,42\n")).await;
    assert_eq!(rejects, [(1, "unknown_job".into(), format!("1,Ann,{GOOD},1,42"))]);
    assert_eq!(app.count("hired_employees").await, 0);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn an_id_repeated_in_the_same_file_keeps_the_first_row(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let (_, rejects) =
        upload_hires(&app, &format!("7,First,{GOOD},1,1\n8,Other,{GOOD},1,1\n7,Second,{GOOD},2,2\n")).await;
    assert_eq!(rejects, [(3, "duplicate_id".into(), format!("7,Second,{GOOD},2,2"))]);
    let name: String =
        sqlx::query_scalar("SELECT name FROM hired_employees WHERE id = 7").fetch_one(&app.pool).await.unwrap();
    assert_eq!(name, "First");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_row_with_invalid_utf8_is_rejected_and_kept_readable(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_dimensions().await;
    let mut csv = format!("1,Ann,{GOOD},1,1\n").into_bytes();
    csv.extend_from_slice(b"2,Jos\xe9 \xff\x00,2021-07-27T16:02:08Z,1,1\n");
    let report = app.upload_csv("hired_employees", csv).await;
    let rejects = app.rejects(&report).await;
    assert_eq!(rejects.len(), 1);
    assert_eq!((rejects[0].0, rejects[0].1.as_str()), (2, "invalid_utf8"));
    assert!(rejects[0].2.starts_with("2,Jos\u{FFFD}"), "{:?}", rejects[0].2);
    assert_eq!(app.count("hired_employees").await, 1);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_field_over_one_megabyte_is_a_rejected_row_not_a_crash(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let huge = "x".repeat(1024 * 1024 + 1);
    let (report, rejects) = upload_hires(&app, &format!("1,{huge},{GOOD},1,1\n2,Bob,{GOOD},1,1\n")).await;
    assert_eq!((report["rows"].as_i64(), report["rejected"].as_i64()), (Some(2), Some(1)));
    assert_eq!((rejects[0].0, rejects[0].1.as_str()), (1, "field_too_long"));
    // Its first 4 KiB are kept; its length and hash identify the rest (see api/tests/memory.rs).
    assert_eq!(rejects[0].2, format!("1,{}", &huge[..4094]), "the stored raw text is cut at 4 KiB");
    assert_eq!(app.count("hired_employees").await, 1);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn json_ids_given_as_strings_or_floats_are_wrong_types(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_dimensions().await;
    let row =
        |id: serde_json::Value| json!({"id": id, "name": "Ann", "datetime": GOOD, "department_id": 1, "job_id": 1});
    let (status, body) =
        app.batch("hired_employees", &json!([row(json!("1")), row(json!(2.5)), row(json!(3.0)), row(json!(4))])).await;
    assert_eq!(status, 200, "{body}");
    let reasons: Vec<(i64, &str)> = body["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_i64().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons, [(0, "wrong_type"), (1, "wrong_type"), (2, "wrong_type")]);
    assert_eq!(app.count("hired_employees").await, 1);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_json_row_with_a_field_the_table_lacks_is_rejected(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let (status, body) = app.batch("departments", &json!([{"id": 1, "department": "Sales", "budget": 3}])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rejects"][0]["reason"], "unexpected_field");
    assert_eq!(app.count("departments").await, 0);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_json_row_that_is_not_an_object_is_rejected(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let (status, body) = app.batch("jobs", &json!([[1, "Analyst"], {"id": 2, "job": "Manager"}])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rejects"][0]["reason"], "not_an_object");
    assert_eq!((body["inserted"].as_i64(), body["rejected"].as_i64()), (Some(1), Some(1)));
    let (_, stored) = app.get_json(&format!("/ingestions/{}/rejects", body["id"])).await;
    assert_eq!(stored[0]["index"], 0);
    assert_eq!(stored[0]["raw"], "[1,\"Analyst\"]");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_text_field_with_a_nul_character_is_rejected(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let report = app.upload_csv("jobs", "1,Ana\0lyst\n2,Tab\there \\ back\\slash\n").await;
    let rejects = app.rejects(&report).await;
    assert_eq!(rejects, [(1, "invalid_character".into(), "1,Ana\u{FFFD}lyst".into())]);
    let stored: String = sqlx::query_scalar("SELECT job FROM jobs WHERE id = 2").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, "Tab\there \\ back\\slash", "tabs and backslashes survive COPY");
}
