//! Load and faults: mixed traffic from several clients for a fixed time, then every accepted
//! row is in the database exactly once and every rejected row is logged; and PostgreSQL
//! restarted under a running API, which answers 503 meanwhile and recovers on its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TOKEN, TestApp};

/// What the clients sent and what was answered.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    statuses: BTreeMap<u16, u64>,
    /// Ids of valid hires whose request was answered 200.
    accepted: Vec<i64>,
    /// Ingestion ids and the rejects each answer reported.
    rejected: Vec<(i64, i64)>,
    /// Rows that were valid, sent, and never acknowledged (the client gave up).
    unacknowledged: Vec<i64>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.accepted.extend(other.accepted);
        self.rejected.extend(other.rejected);
        self.unacknowledged.extend(other.unacknowledged);
    }

    fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }
}

/// A valid hire; departments 1..=12 and jobs 1..=183 exist (the sample dimensions).
fn hire(id: i64) -> Value {
    json!({"id": id, "name": format!("Load {id}"), "datetime": "2021-05-06T07:08:09Z",
           "department_id": 1 + id % 12, "job_id": 1 + id % 183})
}

/// A hire breaking a rule (an unknown department).
fn bad_hire(id: i64) -> Value {
    json!({"id": id, "name": format!("Bad {id}"), "datetime": "2021-05-06T07:08:09Z", "department_id": 9999, "job_id": 1})
}

/// Sends one request until it is answered with something other than 503 (retrying after
/// 100 ms: busy, timeout or database down), for at most `patience`. Re-sending is safe: rows
/// already stored are `unchanged`, never duplicated.
async fn until_answered(
    tally: &mut Tally,
    patience: Duration,
    send: impl Fn() -> reqwest::RequestBuilder,
) -> Option<(u16, Value)> {
    let started = Instant::now();
    loop {
        tally.requests += 1;
        let answer = send().send().await;
        let status = answer.as_ref().map_or(0, |r| r.status().as_u16());
        *tally.statuses.entry(status).or_default() += 1;
        if let Ok(response) = answer
            && status != 503
        {
            return Some((status, response.json().await.unwrap_or(Value::Null)));
        }
        if started.elapsed() > patience {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One client: batches (with 1 bad row in 10), small CSV uploads (1 bad line in 10), metric
/// reads and the report, in turn, until `until`; at most `max_rounds` rounds.
async fn client(app: Arc<TestApp>, number: i64, until: Instant, max_rounds: i64, patience: Duration) -> Tally {
    let mut tally = Tally::default();
    let mut round = 0;
    while Instant::now() < until && round < max_rounds {
        let base = 1_000_000 + number * 100_000 + round * 100;
        match round % 4 {
            0 => {
                let rows: Vec<Value> =
                    (0..40).map(|i| if i % 10 == 9 { bad_hire(base + i) } else { hire(base + i) }).collect();
                let valid: Vec<i64> = (0..40).filter(|i| i % 10 != 9).map(|i| base + i).collect();
                let body = Value::Array(rows);
                let send = || app.client.post(app.url("/batch/hired_employees")).bearer_auth(TOKEN).json(&body);
                match until_answered(&mut tally, patience, send).await {
                    Some((200, report)) => {
                        tally.accepted.extend(valid);
                        tally.rejected.push((report["id"].as_i64().unwrap(), report["rejected"].as_i64().unwrap()));
                    }
                    Some((status, body)) => panic!("a batch was answered {status}: {body}"),
                    None => tally.unacknowledged.extend(valid),
                }
            }
            1 => {
                let mut csv = String::new();
                for i in 0..20 {
                    let department = if i % 10 == 9 { 9999 } else { 1 + (base + i) % 12 };
                    csv.push_str(&format!(
                        "{},Upload {},2021-08-09T10:11:12Z,{department},{}\n",
                        base + i,
                        base + i,
                        1 + (base + i) % 183
                    ));
                }
                let valid: Vec<i64> = (0..20).filter(|i| i % 10 != 9).map(|i| base + i).collect();
                let send = || {
                    let part =
                        reqwest::multipart::Part::bytes(csv.clone().into_bytes()).file_name("hired_employees.csv");
                    app.client
                        .post(app.url("/upload"))
                        .bearer_auth(TOKEN)
                        .multipart(reqwest::multipart::Form::new().part("hired_employees", part))
                };
                match until_answered(&mut tally, patience, send).await {
                    Some((200, report)) => {
                        let report = &report["ingestions"][0];
                        tally.accepted.extend(valid);
                        tally.rejected.push((report["id"].as_i64().unwrap(), report["rejected"].as_i64().unwrap()));
                    }
                    Some((status, body)) => panic!("an upload was answered {status}: {body}"),
                    None => tally.unacknowledged.extend(valid),
                }
            }
            2 => {
                let send = || app.client.get(app.url("/metrics/departments?year=2021"));
                let answer = until_answered(&mut tally, patience, send).await;
                assert!(matches!(answer, Some((200, _)) | None), "{answer:?}");
            }
            _ => {
                let send = || app.client.get(app.url("/metrics/hires?year=2021&format=json"));
                let answer = until_answered(&mut tally, patience, send).await;
                assert!(matches!(answer, Some((200, _)) | None), "{answer:?}");
                let page = app.client.get(app.url("/")).send().await.unwrap();
                tally.requests += 1;
                *tally.statuses.entry(page.status().as_u16()).or_default() += 1;
            }
        }
        round += 1;
    }
    tally
}

/// Every accepted hire is stored exactly once with its values; every reported reject is in
/// the rejects table; no invalid row was stored.
async fn check_exactly_once(pool: &PgPool, tally: &Tally) -> (i64, i64) {
    let mut accepted = tally.accepted.clone();
    accepted.sort_unstable();
    let before = accepted.len();
    accepted.dedup();
    assert_eq!(before, accepted.len(), "no id was acknowledged twice");
    let stored: Vec<(i64, String)> =
        sqlx::query_as("SELECT id::bigint, name FROM hired_employees WHERE id >= 1000000 ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    let stored_ids: Vec<i64> = stored.iter().map(|(id, _)| *id).collect();
    let missing: Vec<&i64> = accepted.iter().filter(|id| stored_ids.binary_search(id).is_err()).collect();
    assert!(
        missing.is_empty(),
        "{} accepted rows are missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // Rows of requests that were never acknowledged may or may not be stored; nothing else may.
    let extra: Vec<&i64> = stored_ids
        .iter()
        .filter(|id| accepted.binary_search(id).is_err() && !tally.unacknowledged.contains(id))
        .collect();
    assert!(extra.is_empty(), "rows stored that no client sent as valid: {:?}", &extra[..extra.len().min(5)]);
    for (id, name) in &stored {
        assert!(name == &format!("Load {id}") || name == &format!("Upload {id}"), "row {id} holds {name}");
    }
    let mut rejects_reported = 0;
    for (ingestion, reported) in &tally.rejected {
        let (logged,): (i64,) = sqlx::query_as("SELECT count(*) FROM rejects WHERE ingestion_id = $1")
            .bind(ingestion)
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(logged, *reported, "ingestion {ingestion}: every reported reject is logged");
        rejects_reported += reported;
    }
    (stored.len() as i64, rejects_reported)
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn mixed_traffic_from_several_clients_keeps_every_row_exactly_once(pool: PgPool) {
    let app = Arc::new(TestApp::start_with(pool, |s| s.max_concurrent_writes = 3).await);
    app.load_sample().await;
    let started = Instant::now();
    let until = started + Duration::from_secs(8);
    let clients: Vec<_> =
        (0..6).map(|n| tokio::spawn(client(app.clone(), n, until, 400, Duration::from_secs(30)))).collect();
    let mut tally = Tally::default();
    for handle in clients {
        tally.merge(handle.await.unwrap());
    }
    let elapsed = started.elapsed();
    let (stored, rejects) = check_exactly_once(&app.pool, &tally).await;
    assert!(tally.unacknowledged.is_empty(), "every write was answered");
    assert_eq!(stored as usize, tally.accepted.len());
    let server_errors: u64 = tally.statuses.iter().filter(|(s, _)| **s >= 500 && **s != 503).map(|(_, c)| c).sum();
    assert_eq!(server_errors, 0, "{:?}", tally.statuses);
    assert!(tally.requests >= 40, "the clients got work done: {tally:?}");
    eprintln!(
        "load: {} requests in {:.1} s from 6 clients ({:.0}/s), statuses {:?}; {} rows accepted and stored once, \
         {} rejects reported and logged, 0 lost, 0 duplicated",
        tally.requests,
        elapsed.as_secs_f64(),
        tally.requests as f64 / elapsed.as_secs_f64(),
        tally.statuses,
        stored,
        rejects
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_run_gives_503s_then_the_api_recovers_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // The cluster's control is blocking (pg_ctl, and a client with its own runtime).
    let path = dir.path().to_owned();
    let (mut cluster, url) = tokio::task::spawn_blocking(move || {
        let cluster = devenv::pg::Cluster::start_in(&path).expect("a private PostgreSQL cluster");
        let url = cluster.database_url("hiring_fault").expect("a database on it");
        (cluster, url)
    })
    .await
    .unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(&url)
        .unwrap();
    api::migrate(&pool, None).await.unwrap();
    let app = Arc::new(TestApp::start(pool).await);
    app.load_sample().await;

    let started = Instant::now();
    let until = started + Duration::from_secs(12);
    let clients: Vec<_> =
        (0..4).map(|n| tokio::spawn(client(app.clone(), n, until, 400, Duration::from_secs(40)))).collect();

    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster = tokio::task::spawn_blocking(move || {
        cluster.crash().expect("PostgreSQL stops");
        cluster
    })
    .await
    .unwrap();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (health, _) = app.get_json("/health").await;
    let (metric, body) = app.get_json("/metrics/hires?year=2021").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start().expect("PostgreSQL starts again");
        cluster
    })
    .await
    .unwrap();
    let outage = down.elapsed();
    assert_eq!(health, 503, "health says the database is down");
    // A metric may still be served from the cache; if not, it is a 503, never a 500.
    assert!(metric == 503 || metric == 200, "{metric} {body}");

    let mut tally = Tally::default();
    for handle in clients {
        tally.merge(handle.await.unwrap());
    }
    let recovered = Instant::now();
    let mut healthy = false;
    while recovered.elapsed() < Duration::from_secs(30) {
        if app.get_json("/health").await.0 == 200 {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(healthy, "the API recovered without a restart");
    let (status, _) = app.batch("hired_employees", &json!([hire(9_000_001)])).await;
    assert_eq!(status, 200, "writes work again");
    tally.accepted.push(9_000_001);
    let (stored, rejects) = check_exactly_once(&app.pool, &tally).await;
    drop(cluster);
    let unavailable = tally.count(503);
    assert!(unavailable > 0, "the clients saw the outage as 503s: {:?}", tally.statuses);
    let server_errors: u64 = tally.statuses.iter().filter(|(s, _)| **s >= 500 && **s != 503).map(|(_, c)| c).sum();
    assert_eq!(server_errors, 0, "no 500s, only 503s, during the outage: {:?}", tally.statuses);
    assert!(tally.unacknowledged.is_empty(), "every write was answered once the database was back");
    eprintln!(
        "fault: PostgreSQL down for {:.1} s; {} requests, statuses {:?} ({unavailable} answered 503 and were retried); \
         {stored} rows stored once, {rejects} rejects logged, 0 lost, 0 duplicated",
        outage.as_secs_f64(),
        tally.requests,
        tally.statuses
    );
}
