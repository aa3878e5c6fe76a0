//! The real `hiring-api` binary killed in the middle of a large upload: no partial rows are
//! kept, and once restarted it reports the ingestion as failed.

use std::time::{Duration, Instant};

use sqlx::PgPool;

mod server;

use server::{Server, TOKEN, database_url};

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_server_killed_during_a_large_upload_keeps_the_table_as_before(pool: PgPool) {
    let data_dir = tempfile::tempdir().unwrap();
    let url = database_url(&pool);
    let client = reqwest::Client::new();
    let mut server = Server::start(&url, data_dir.path());
    server.wait_healthy(&client).await;
    assert_eq!(server.upload(&client, "departments", b"1,Sales\n2,Support\n".to_vec()).await.unwrap().status(), 200);
    assert_eq!(server.upload(&client, "jobs", b"1,Analyst\n".to_vec()).await.unwrap().status(), 200);
    let before = b"1,Ann,2021-01-05T00:00:00Z,1,1\n2,Bob,2021-02-05T00:00:00Z,2,1\n".to_vec();
    assert_eq!(server.upload(&client, "hired_employees", before).await.unwrap().status(), 200);

    // A large file that replaces the two rows above and adds a million more.
    let mut big = Vec::with_capacity(50 << 20);
    for id in 1..=1_000_000 {
        big.extend_from_slice(
            format!("{id},Person {id},2021-06-{:02}T12:00:00Z,{},1\n", id % 28 + 1, id % 2 + 1).as_bytes(),
        );
    }
    let upload = {
        let (client, base) = (client.clone(), server.base.clone());
        let form = reqwest::multipart::Form::new()
            .part("hired_employees", reqwest::multipart::Part::bytes(big).file_name("big.csv"));
        tokio::spawn(
            async move { client.post(format!("{base}/upload")).bearer_auth(TOKEN).multipart(form).send().await },
        )
    };
    // Kill it once the load is under way inside its transaction.
    let deadline = Instant::now() + Duration::from_secs(60);
    let running: i64 = loop {
        let running: Option<i64> = sqlx::query_scalar("SELECT id FROM ingestions WHERE status = 'running'")
            .fetch_optional(&pool)
            .await
            .unwrap();
        if let Some(id) = running {
            break id;
        }
        assert!(Instant::now() < deadline, "the large upload never started loading");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The transaction is inserting rows: its session's last statement is the hires upsert.
    loop {
        let writing: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND xact_start IS NOT NULL AND query LIKE '%INSERT INTO hired_employees%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if writing > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the large upload never started writing rows");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert!(upload.await.unwrap().is_err(), "the client saw the connection drop");

    let rows: Vec<(i32, String)> =
        sqlx::query_as("SELECT id, name FROM hired_employees ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(rows, [(1, "Ann".to_owned()), (2, "Bob".to_owned())], "no partial rows after the kill");
    let rollup: i64 =
        sqlx::query_scalar("SELECT sum(q1 + q2 + q3 + q4)::bigint FROM hires_rollup").fetch_one(&pool).await.unwrap();
    assert_eq!(rollup, 2);

    let restarted = Server::start(&url, data_dir.path());
    restarted.wait_healthy(&client).await;
    // PostgreSQL ends the dead server's session (and frees its lock) when it next reads from
    // the closed socket, at the end of the statement in flight; until then the load still
    // counts as running.
    let deadline = Instant::now() + Duration::from_secs(20);
    let ingestion = loop {
        let ingestion = restarted.get_json(&client, &format!("/ingestions/{running}")).await;
        if ingestion["status"] != "running" || Instant::now() > deadline {
            break ingestion;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ingestion["status"], "retrying", "a dead step is retryable, never final: {ingestion}");
    assert!(ingestion["error"].as_str().unwrap().contains("send the file again"));
    assert_eq!(
        rows.len() as i64,
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM hired_employees").fetch_one(&pool).await.unwrap()
    );
}
