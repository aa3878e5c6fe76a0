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
    // Reading stops at row 1001: the answer does not count the rest.
    assert_eq!(body["error"]["message"], "a batch holds 1 to 1000 rows; this one holds more than 1000");
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

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn concurrent_batches_with_overlapping_ids_keep_table_and_metrics_exact(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_dimensions().await;
    let mut clients = Vec::new();
    for client in 0..8i64 {
        let (http, url) = (app.client.clone(), app.url("/batch/hired_employees"));
        clients.push(tokio::spawn(async move {
            for round in 0..6i64 {
                // Clients 0-3 share one id range and 4-7 another; ranges also straddle id blocks.
                let first = (client % 2) * 700 + round * 50;
                let rows: Vec<Value> = (first..first + 300)
                    .map(|id| {
                        json!({"id": id + 1, "name": format!("C{client}R{round}"),
                               "datetime": format!("2021-{:02}-10T00:00:00Z", (id + client + round) % 12 + 1),
                               "department_id": (id + client) % 3 + 1, "job_id": (id + round) % 3 + 1})
                    })
                    .collect();
                let response = http.post(&url).bearer_auth(crate::helpers::TOKEN).json(&rows).send().await.unwrap();
                assert_eq!(response.status(), 200);
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let distinct: i64 = sqlx::query_scalar("SELECT count(*) FROM hired_employees").fetch_one(&app.pool).await.unwrap();
    assert_eq!(distinct, 2 * 550, "ids 1..=550 and 701..=1250 were each written at least once");
    let rollup: Vec<(i32, i32, i32, i64)> = sqlx::query_as(
        "SELECT year, department_id, job_id, sum(q1 + q2 + q3 + q4)::bigint FROM hires_rollup GROUP BY 1, 2, 3 HAVING sum(q1 + q2 + q3 + q4) <> 0 ORDER BY 1, 2, 3",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let truth: Vec<(i32, i32, i32, i64)> = sqlx::query_as(
        "SELECT extract(year FROM datetime AT TIME ZONE 'UTC')::integer, department_id, job_id, count(*) FROM hired_employees GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(rollup, truth, "the rollup counts every stored hire exactly once");
}
