//! Issue 16, item 3: a step whose COMMIT reached PostgreSQL but whose acknowledgement was lost
//! (the connection dropped in between) must not remove the outputs of the work that did commit.
//! A proxy between the step and PostgreSQL forwards the COMMIT, then cuts the connection
//! before the answer comes back: PostgreSQL commits, the step sees a broken connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hiring::ingestions::{self, IngestionStatus};
use hiring::pipeline::{self, RawObject};
use hiring::zones::Zones;
use sqlx::PgPool;
use sqlx::postgres::{PgPoolOptions, PgSslMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy to PostgreSQL that, once armed, lets the next `COMMIT` through and then drops
/// the connection without passing on PostgreSQL's answer.
struct CommitCutter {
    port: u16,
    armed: Arc<AtomicBool>,
    /// Set once a COMMIT was let through and its answer dropped.
    cut: Arc<AtomicBool>,
}

impl CommitCutter {
    async fn start(server: (String, u16)) -> CommitCutter {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (armed, cut) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (armed_, cut_) = (armed.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = TcpStream::connect((server.0.as_str(), server.1)).await.unwrap();
                tokio::spawn(relay(client, upstream, armed_.clone(), cut_.clone()));
            }
        });
        CommitCutter { port, armed, cut }
    }
}

async fn relay(client: TcpStream, upstream: TcpStream, armed: Arc<AtomicBool>, cut: Arc<AtomicBool>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = upstream.into_split();
    // This connection's answers stop once it let a COMMIT through.
    let dropped = Arc::new(AtomicBool::new(false));
    let dropping = dropped.clone();
    let answers = tokio::spawn(async move {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if dropping.load(Ordering::SeqCst) || client_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    });
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let n = match client_read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let commit = buffer[..n].windows(6).any(|w| w == b"COMMIT");
        if commit && armed.swap(false, Ordering::SeqCst) {
            dropped.store(true, Ordering::SeqCst);
            cut.store(true, Ordering::SeqCst);
            let _ = server_write.write_all(&buffer[..n]).await;
            // PostgreSQL reads the COMMIT and commits; its answer goes nowhere.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            break;
        }
        if server_write.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    answers.abort();
    // Dropping both halves of both sockets closes the connections.
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_lost_commit_acknowledgement_keeps_the_committed_outputs(pool: PgPool) {
    let options = pool.connect_options();
    let cutter = CommitCutter::start((options.get_host().to_owned(), options.get_port())).await;
    let proxied = PgPoolOptions::new()
        .max_connections(4)
        .connect_with((*options).clone().host("127.0.0.1").port(cutter.port).ssl_mode(PgSslMode::Disable))
        .await
        .unwrap();
    let directory = tempfile::tempdir().unwrap();
    let zones = Zones::local(directory.path()).unwrap();
    zones.raw.put("departments/1.csv", b"1,Sales\n2,Support\n".to_vec()).await.unwrap();
    let object = RawObject { key: "departments/1.csv".to_owned(), etag: None };
    let validation = pipeline::validate(&proxied, &zones, &object, "test").await.unwrap();

    cutter.armed.store(true, Ordering::SeqCst);
    let processed = pipeline::process(&proxied, &zones, &validation).await;
    assert!(cutter.cut.load(Ordering::SeqCst), "the load's COMMIT went through the cutter");

    let ingestion = ingestions::get(&pool, validation.ingestion).await.unwrap();
    assert_eq!(ingestion.status, IngestionStatus::Succeeded, "PostgreSQL committed the load");
    let key = ingestion.processed_key.clone().expect("the committed ingestion names its Parquet file");
    assert!(
        zones.processed.head(&key).await.unwrap().is_some(),
        "the committed ingestion's Parquet file {key} is still in the processed zone"
    );
    let report = processed.expect("the step reports the load that committed");
    assert_eq!((report.load.inserted, report.processed_key.as_deref()), (2, Some(key.as_str())));
}
