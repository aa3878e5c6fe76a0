//! Database credentials that rotate: the password changes in PostgreSQL and in the
//! secret (on the emulator's Secrets Manager) while the API serves traffic and between two runs
//! of a function; nothing restarts, and no request fails beyond the one retry the answer asks
//! for (`Retry-After`).
//!
//! The server is a cluster of the test's own with password (SCRAM) authentication: the shared
//! test server trusts every local connection, so it would accept any password.

use std::time::Duration;

use aws_sdk_secretsmanager::Client as Secrets;
use devenv::moto::Moto;
use devenv::pg::Cluster;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

const TOKEN: &str = "rotation-write-token-0123456789";
/// The user of the tests without a master user: it owns the database and runs the migrations.
const USER: &str = "hiring_owner";

struct Setup {
    _dir: tempfile::TempDir,
    cluster: Cluster,
    admin_url: String,
    moto: Moto,
    secrets: Secrets,
    arn: String,
}

/// A cluster that checks passwords, the user `hiring_owner` owning database `hiring`, and the
/// secret holding its first password on the emulator.
async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().to_owned();
    // The cluster's tools block: they run off the async runtime.
    let (cluster, admin_url) = tokio::task::spawn_blocking(move || {
        let mut cluster = Cluster::start_in(&path).expect("a private PostgreSQL cluster");
        let hba =
            "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n";
        cluster.reconfigure("password_encryption = 'scram-sha-256'\n", hba, &[]).expect("password authentication");
        let admin_url = cluster.database_url("postgres").expect("the admin database");
        (cluster, admin_url)
    })
    .await
    .expect("the cluster starts");
    let mut admin = PgConnection::connect(&admin_url).await.expect("the superuser connects");
    sqlx::query(&format!("CREATE ROLE {USER} LOGIN PASSWORD 'first-password-0001'")).execute(&mut admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE hiring OWNER {USER}")).execute(&mut admin).await.unwrap();

    let moto = Moto::start().expect("moto starts");
    let secrets = Secrets::new(&moto.sdk_config().await);
    let created = secrets
        .create_secret()
        .name("hiring-rotation/database")
        .secret_string(json!({ "username": USER, "password": "first-password-0001" }).to_string())
        .send()
        .await
        .expect("CreateSecret");
    let arn = created.arn().expect("an ARN").to_owned();
    Setup { _dir: dir, cluster, admin_url, moto, secrets, arn }
}

impl Setup {
    /// The settings as the stack deploys them: the server's address and the secret's ARN.
    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.moto.aws_env();
        env.extend([
            ("HIRING_DB_HOST".to_owned(), "127.0.0.1".to_owned()),
            ("HIRING_DB_PORT".to_owned(), self.cluster.port().to_string()),
            ("HIRING_DB_NAME".to_owned(), "hiring".to_owned()),
            ("HIRING_DB_SSLMODE".to_owned(), "disable".to_owned()),
            ("HIRING_DB_SECRET_ARN".to_owned(), self.arn.clone()),
        ]);
        env
    }

    /// Rotates as RDS does: the user's password, then the secret; and closes the user's open
    /// connections, so the next ones must log in with the new password.
    async fn rotate(&self, password: &str) {
        let mut admin = PgConnection::connect(&self.admin_url).await.unwrap();
        sqlx::query(&format!("ALTER ROLE {USER} PASSWORD '{password}'")).execute(&mut admin).await.unwrap();
        self.secrets
            .put_secret_value()
            .secret_id(&self.arn)
            .secret_string(json!({ "username": USER, "password": password }).to_string())
            .send()
            .await
            .expect("PutSecretValue");
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
            .bind(USER)
            .execute(&mut admin)
            .await
            .unwrap();
    }
}

/// What one request of the client went through.
#[derive(Debug)]
struct Outcome {
    first: u16,
    first_code: String,
    retried: Option<u16>,
}

/// `POST /batch/jobs` as a careful client sends it: once, and once more after `Retry-After`
/// when the answer is a 503 that asks for it.
async fn batch(client: &reqwest::Client, base: &str, id: i64) -> Outcome {
    let send = || {
        client
            .post(format!("{base}/batch/jobs"))
            .bearer_auth(TOKEN)
            .json(&json!([{ "id": id, "job": format!("Job {id}") }]))
            .send()
    };
    let first = send().await.expect("the API answers");
    let status = first.status().as_u16();
    let after = first.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let body: Value = first.json().await.unwrap_or(Value::Null);
    let first_code = body["error"]["code"].as_str().unwrap_or_default().to_owned();
    let retried = match (status, after) {
        (503, Some(seconds)) => {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            Some(send().await.expect("the API answers").status().as_u16())
        }
        _ => None,
    };
    Outcome { first: status, first_code, retried }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_follows_a_rotated_password_without_a_restart() {
    let setup = setup().await;
    let env = setup.env();
    let mut vars: Vec<(String, String)> = env.clone();
    vars.extend([
        ("HIRING_API_TOKEN".to_owned(), TOKEN.to_owned()),
        // Eight writes at once: the write permits follow the pool (its connections less one).
        ("HIRING_DB_MAX_CONNECTIONS".to_owned(), "9".to_owned()),
        ("HIRING_DATA_DIR".to_owned(), setup._dir.path().join("data").display().to_string()),
    ]);
    let (base, stop, server) = start_api(vars).await;
    let client = reqwest::Client::new();

    let before: Vec<Outcome> = futures_util::future::join_all((1..=8).map(|id| batch(&client, &base, id))).await;
    assert!(before.iter().all(|o| o.first == 200), "before the rotation: {before:?}");

    setup.rotate("second-password-0002").await;
    // Eight clients at once meet the rotation: each may be asked to retry once, and its retry
    // succeeds.
    let after: Vec<Outcome> = futures_util::future::join_all((101..=108).map(|id| batch(&client, &base, id))).await;
    for outcome in &after {
        let ok = outcome.first == 200 || (outcome.first == 503 && outcome.retried == Some(200));
        assert!(ok, "a request failed beyond its one retry: {after:?}");
    }
    assert!(
        after.iter().any(|o| o.first_code == "database_credentials"),
        "no request met the refused password, so the rotation was not exercised: {after:?}"
    );
    // And from then on, no retry at all.
    let settled: Vec<Outcome> = futures_util::future::join_all((201..=208).map(|id| batch(&client, &base, id))).await;
    assert!(settled.iter().all(|o| o.first == 200), "after the refresh: {settled:?}");
    assert!(!server.is_finished(), "the server stopped");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_reads_the_rotated_password_and_runs_its_step_again() {
    let setup = setup().await;
    let zones = setup._dir.path().join("zones");
    let mut env = setup.env();
    for zone in ["raw", "rejects", "processed", "backups"] {
        env.push((format!("HIRING_{}_URL", zone.to_uppercase()), zones.join(zone).display().to_string()));
    }
    let function =
        hiring_functions::Function::from_lookup(|name| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
            .expect("the function's settings");
    let function: &'static hiring_functions::Function = Box::leak(Box::new(function));
    let event = |key: &str| -> hiring_functions::ObjectCreated {
        serde_json::from_value(json!({
            "source": "aws.s3", "detail-type": "Object Created",
            "detail": { "bucket": { "name": "local" }, "object": { "key": key } }
        }))
        .unwrap()
    };
    function.zones.raw.put("jobs/first.csv", "1,Analyst\n").await.unwrap();
    let first = hiring_functions::invoke(function, hiring_functions::validate, event("jobs/first.csv")).await;
    assert!(first.is_ok(), "before the rotation: {:?}", first.err());

    setup.rotate("second-password-0002").await;
    function.zones.raw.put("jobs/second.csv", "2,Manager\n").await.unwrap();
    let second = hiring_functions::invoke(function, hiring_functions::validate, event("jobs/second.csv")).await;
    let report = second.unwrap_or_else(|e| panic!("the step failed after the rotation: {}", e.message));
    assert_eq!((report.rows, report.loadable), (1, true));
}

/// Starts the API as `hiring-api` runs, with `vars`; returns its URL and the means to stop it.
async fn start_api(
    vars: Vec<(String, String)>,
) -> (String, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let settings =
        api::config::Settings::from_lookup(|name| vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
            .expect("settings");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(settings, listener, async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(!server.is_finished(), "the API stopped while starting");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (base, stop, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_as_a_least_privilege_role_whose_password_follows_its_secret() {
    let setup = setup().await;
    // As deployed: the master user's secret for the migrations, the application role's for
    // the pool (the role and its password are the API's to apply).
    let admin = setup
        .secrets
        .create_secret()
        .name("hiring-rotation/database-admin")
        .secret_string(json!({ "username": "postgres", "password": "trusted-here" }).to_string())
        .send()
        .await
        .expect("CreateSecret");
    let app = setup
        .secrets
        .create_secret()
        .name("hiring-rotation/database-app")
        .secret_string(json!({ "username": "hiring_app", "password": "app-password-0001" }).to_string())
        .send()
        .await
        .expect("CreateSecret");
    let app_arn = app.arn().unwrap().to_owned();
    let mut admin_db = PgConnection::connect(&setup.admin_url).await.unwrap();
    sqlx::query("CREATE DATABASE hiring_least").execute(&mut admin_db).await.unwrap();
    let mut vars: Vec<(String, String)> = setup
        .env()
        .into_iter()
        .filter(|(name, _)| name != "HIRING_DB_SECRET_ARN" && name != "HIRING_DB_NAME")
        .collect();
    vars.extend([
        ("HIRING_DB_NAME".to_owned(), "hiring_least".to_owned()),
        ("HIRING_DB_SECRET_ARN".to_owned(), app_arn.clone()),
        ("HIRING_DB_ADMIN_SECRET_ARN".to_owned(), admin.arn().unwrap().to_owned()),
        ("HIRING_API_TOKEN".to_owned(), TOKEN.to_owned()),
        ("HIRING_DATA_DIR".to_owned(), setup._dir.path().join("least").display().to_string()),
        // The API reads its secret again every second here (5 minutes by default).
        ("HIRING_DB_SECRET_REFRESH_SECS".to_owned(), "1".to_owned()),
    ]);
    let (base, stop, server) = start_api(vars).await;
    let client = reqwest::Client::new();

    // Everything a user does works with the role's privileges.
    let mut form = reqwest::multipart::Form::new();
    for table in ["departments", "jobs", "hired_employees"] {
        let bytes = std::fs::read(devenv::project_root().join(format!("data/sample/{table}.csv"))).unwrap();
        form = form.part(table, reqwest::multipart::Part::bytes(bytes).file_name(format!("{table}.csv")));
    }
    let upload = client.post(format!("{base}/upload")).bearer_auth(TOKEN).multipart(form).send().await.unwrap();
    assert_eq!(upload.status(), 200, "{}", upload.text().await.unwrap());
    let backup = client.post(format!("{base}/backups/jobs")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(backup.status(), 200);
    let key: Value = backup.json().await.unwrap();
    let restore = client
        .post(format!("{base}/restore/jobs"))
        .bearer_auth(TOKEN)
        .json(&json!({ "key": key["key"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(restore.status(), 200, "{}", restore.text().await.unwrap());
    let metrics = client.get(format!("{base}/metrics/departments?year=2021")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(metrics.status(), 200);

    // The API's connections are the role's, and the role can do nothing but rows.
    let users: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT usename::text FROM pg_stat_activity WHERE datname = 'hiring_least' AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin_db)
    .await
    .unwrap();
    assert_eq!(users, ["hiring_app"], "the API connects as the application role");
    let app_url =
        setup.admin_url.replace("postgres@", "hiring_app:app-password-0001@").replace("/postgres", "/hiring_least");
    let mut as_app = PgConnection::connect(&app_url).await.expect("the role logs in with its secret's password");
    for statement in [
        "DROP TABLE hired_employees",
        "CREATE ROLE intruder",
        "ALTER TABLE jobs ADD COLUMN x int",
        "DELETE FROM _sqlx_migrations",
    ] {
        let refused = sqlx::query(statement).execute(&mut as_app).await.expect_err(statement);
        let code = refused.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{statement}: {refused}");
    }
    drop(as_app);

    // An operator puts a new password in the application's secret, and nothing else: the API
    // applies it to the role within its refresh period, while every request succeeds.
    setup
        .secrets
        .put_secret_value()
        .secret_id(&app_arn)
        .secret_string(json!({ "username": "hiring_app", "password": "app-password-0002" }).to_string())
        .send()
        .await
        .expect("PutSecretValue");
    let new_url = app_url.replace("app-password-0001", "app-password-0002");
    let mut applied = false;
    for id in 301..=400 {
        assert_eq!(batch(&client, &base, id).await.first, 200, "a request failed while the password changed");
        if PgConnection::connect(&new_url).await.is_ok() {
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(applied, "the API did not apply the secret's new password to the role within 10 s");
    // The pool's new connections use it.
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'hiring_app'")
        .execute(&mut admin_db)
        .await
        .unwrap();
    let settled: Vec<Outcome> = futures_util::future::join_all((401..=404).map(|id| batch(&client, &base, id))).await;
    assert!(settled.iter().all(|o| o.first == 200), "{settled:?}");
    // And a rotation done elsewhere (the role and the secret changed together, as another task
    // or RDS would): refused once, then read again; the client's one retry succeeds.
    sqlx::query("ALTER ROLE hiring_app PASSWORD 'app-password-0003'").execute(&mut admin_db).await.unwrap();
    setup
        .secrets
        .put_secret_value()
        .secret_id(&app_arn)
        .secret_string(json!({ "username": "hiring_app", "password": "app-password-0003" }).to_string())
        .send()
        .await
        .expect("PutSecretValue");
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'hiring_app'")
        .execute(&mut admin_db)
        .await
        .unwrap();
    let after: Vec<Outcome> = futures_util::future::join_all((501..=506).map(|id| batch(&client, &base, id))).await;
    for outcome in &after {
        assert!(
            outcome.first == 200 || (outcome.first == 503 && outcome.retried == Some(200)),
            "a request failed beyond its one retry: {after:?}"
        );
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
