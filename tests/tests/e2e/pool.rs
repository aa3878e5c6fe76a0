//! The API's connection pool under concurrent writes: a request never waits for a connection
//! while it holds another, the write permits follow the pool, and `/health` tells a busy pool
//! from a database that is down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::helpers::TestApp;

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn concurrent_uploads_on_a_small_pool_never_starve_the_database_or_health(pool: PgPool) {
    // The staging stage's pool: 6 connections; here 5.
    let small = PgPoolOptions::new()
        .max_connections(5)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let app = TestApp::start_with(small, |settings| settings.db_max_connections = 5).await;
    app.load_dimensions().await;
    let file = |n: usize| -> Vec<u8> {
        (0..20_000)
            .map(|i| format!("{},Name {i},2021-03-01T00:00:00Z,1,1\n", n * 100_000 + i + 1))
            .collect::<String>()
            .into_bytes()
    };
    let files: Vec<Vec<u8>> = (0..8).map(file).collect();

    let done = AtomicBool::new(false);
    let health = async {
        let mut answers = Vec::new();
        while !done.load(Ordering::SeqCst) {
            let response = app.client.get(app.url("/health")).send().await.unwrap();
            answers.push(response.status().as_u16());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        answers
    };
    let uploads = async {
        let answers = futures_util::future::join_all(
            files
                .iter()
                .map(|bytes| async { app.upload(&[("hired_employees", "hired_employees.csv", bytes.clone())]).await }),
        )
        .await;
        done.store(true, Ordering::SeqCst);
        answers
    };
    let (health, uploads) = tokio::join!(health, uploads);

    for (status, body) in &uploads {
        let code = body["error"]["code"].as_str().unwrap_or_default();
        assert!(*status == 200 || (*status == 503 && code == "busy"), "an upload answered {status} {body}");
    }
    assert!(uploads.iter().any(|(status, _)| *status == 200), "some uploads ran");
    assert!(!health.is_empty() && health.iter().all(|status| *status == 200), "/health answered {health:?}");
    let unfinished: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ingestions WHERE status NOT IN ('succeeded', 'rejected', 'failed')")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(unfinished, 0, "every ingestion a request started is final");
}
