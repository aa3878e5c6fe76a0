//! `POST /batch/{table}`: 1 to 1000 rows, one transaction, rejects logged.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::TestApp;

fn hire(id: i64) -> Value {
    json!({"id": id, "name": format!("Person {id}"), "datetime": "2021-07-27T16:02:08Z", "department_id": 1, "job_id": 2})
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_batch_inserts_valid_rows_and_logs_the_rest(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_dimensions().await;
    let mut rows: Vec<Value> = (1..=998).map(hire).collect();
    rows.push(json!({"id": 999, "name": "No Job", "datetime": "2021-07-27T16:02:08Z", "department_id": 1}));
    rows.push(hire(5));
    let (status, body) = app.batch("hired_employees", &Value::Array(rows)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["table"], "hired_employees");
    assert_eq!(
        (body["rows"].as_i64(), body["inserted"].as_i64(), body["rejected"].as_i64()),
        (Some(1000), Some(998), Some(2))
    );
    assert_eq!(
        body["rejects"][0],
        json!({"index": 998, "reason": "missing_field", "message": "job_id is required but empty"})
    );
    assert_eq!(body["rejects"][1]["reason"], "duplicate_id");
    assert_eq!(app.count("hired_employees").await, 998);
    let (_, ingestion) = app.get_json(&format!("/ingestions/{}", body["id"])).await;
    assert_eq!((ingestion["kind"].as_str(), ingestion["status"].as_str()), (Some("batch"), Some("succeeded")));
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn an_empty_batch_or_one_over_1000_rows_is_a_422_and_inserts_nothing(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_dimensions().await;
    let (status, body) = app.batch("hired_employees", &json!([])).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["code"], "batch_size");
    let (status, body) = app.batch("hired_employees", &Value::Array((1..=1001).map(hire).collect())).await;
    assert_eq!(status, 422);
    assert!(body["error"]["message"].as_str().unwrap().contains("1001"));
    assert_eq!(app.count("hired_employees").await, 0);
    assert_eq!(app.count("ingestions").await, 2, "only the two dimension uploads");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_body_that_is_not_a_json_array_is_a_422(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let (status, body) = app.batch("jobs", &json!({"id": 1, "job": "Analyst"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_batch")));
    let response = app
        .client
        .post(app.url("/batch/jobs"))
        .bearer_auth(crate::helpers::TOKEN)
        .body("[{\"id\": 1,")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_batch_for_an_unknown_table_is_a_400(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let (status, body) = app.batch("salaries", &json!([{"id": 1}])).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "unknown_table");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_batch_replaces_existing_ids(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.batch("departments", &json!([{"id": 1, "department": "Sales"}, {"id": 2, "department": "Support"}])).await;
    let (_, body) = app
        .batch("departments", &json!([{"id": 1, "department": "Sales"}, {"id": 2, "department": "Help Desk"}]))
        .await;
    assert_eq!(
        (body["inserted"].as_i64(), body["updated"].as_i64(), body["unchanged"].as_i64()),
        (Some(0), Some(1), Some(1))
    );
}
