//! A running `hiring-api` on 127.0.0.1 (port 0) over a test database, and a client for it.

use std::path::{Path, PathBuf};

use api::auth::{Scope, Tokens};
use api::config::Settings;
use api::state::AppState;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use sqlx::PgPool;

/// The write token of the test server.
pub const TOKEN: &str = "test-token-0123456789";
/// Its read token.
pub const READ_TOKEN: &str = "test-read-token-0123456789";

/// The sample files shipped with the project.
pub fn sample(name: &str) -> PathBuf {
    devenv::project_root().join("data/sample").join(name)
}

/// A file of the test fixtures.
pub fn fixture(name: &str) -> PathBuf {
    devenv::project_root().join("tests/fixtures").join(name)
}

pub fn settings(pool: &PgPool, data_dir: &Path) -> Settings {
    let settings = Settings::from_lookup(|name| match name {
        "DATABASE_URL" => Some("postgres://unused".into()),
        "HIRING_LISTEN" => Some("127.0.0.1:0".into()),
        "HIRING_DATA_DIR" => Some(data_dir.display().to_string()),
        _ => None,
    })
    .expect("test settings are valid");
    let mut settings = settings;
    settings.tokens = Tokens::new([(Scope::Write, TOKEN), (Scope::Read, READ_TOKEN)]);
    // As `cargo xtask dev` runs it: the aggregates answer without a token.
    settings.public_metrics = true;
    let _ = pool;
    settings
}

pub struct TestApp {
    pub base: String,
    pub pool: PgPool,
    pub client: reqwest::Client,
    pub data_dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn start(pool: PgPool) -> TestApp {
        Self::start_with(pool, |_| {}).await
    }

    pub async fn start_with(pool: PgPool, adjust: impl FnOnce(&mut Settings)) -> TestApp {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut settings = settings(&pool, data_dir.path());
        adjust(&mut settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let state = AppState::new(pool.clone(), settings).expect("the zones open");
        state.metrics_cache.clone().spawn_listener(pool.clone());
        let app = api::app(state);
        tokio::spawn(async move { axum::serve(listener, app).await.expect("server runs") });
        TestApp { base, pool, client: reqwest::Client::new(), data_dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `POST /upload` with one part per (part name, file name, bytes).
    pub async fn upload(&self, parts: &[(&str, &str, Vec<u8>)]) -> (u16, Value) {
        let mut form = Form::new();
        for (name, file_name, bytes) in parts {
            form = form.part(name.to_string(), Part::bytes(bytes.clone()).file_name(file_name.to_string()));
        }
        let response =
            self.client.post(self.url("/upload")).bearer_auth(TOKEN).multipart(form).send().await.expect("upload sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    /// Uploads one table's CSV text and returns its ingestion report.
    pub async fn upload_csv(&self, table: &str, csv: impl Into<Vec<u8>>) -> Value {
        let (status, body) = self.upload(&[(table, &format!("{table}.csv"), csv.into())]).await;
        assert_eq!(status, 200, "{body}");
        body["ingestions"][0].clone()
    }

    /// Loads the three sample files.
    pub async fn load_sample(&self) -> Value {
        let files: Vec<(&str, String, Vec<u8>)> = ["departments", "jobs", "hired_employees"]
            .into_iter()
            .map(|t| (t, format!("{t}.csv"), std::fs::read(sample(&format!("{t}.csv"))).expect("sample file")))
            .collect();
        let parts: Vec<(&str, &str, Vec<u8>)> = files.iter().map(|(t, f, b)| (*t, f.as_str(), b.clone())).collect();
        let (status, body) = self.upload(&parts).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// `POST /batch/{table}` with a JSON body.
    pub async fn batch(&self, table: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(&format!("/batch/{table}")))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .await
            .expect("batch sent");
        (response.status().as_u16(), response.json().await.expect("JSON answer"))
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).bearer_auth(READ_TOKEN).send().await.expect("GET sent");
        (response.status().as_u16(), response.json().await.expect("JSON answer"))
    }

    /// All rejects of an ingestion, as (position, reason, raw).
    pub async fn rejects(&self, ingestion: &Value) -> Vec<(i64, String, String)> {
        let (status, body) = self.get_json(&format!("/ingestions/{}/rejects?limit=1000", ingestion["id"])).await;
        assert_eq!(status, 200, "{body}");
        body.as_array()
            .expect("an array")
            .iter()
            .map(|r| {
                let position = r.get("line").or_else(|| r.get("index")).and_then(Value::as_i64).expect("a position");
                (position, r["reason"].as_str().unwrap().to_owned(), r["raw"].as_str().unwrap().to_owned())
            })
            .collect()
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&self.pool).await.expect("count")
    }

    /// Loads departments 1..=3 and jobs 1..=3, the references most hire tests need.
    pub async fn load_dimensions(&self) {
        self.upload_csv("departments", "1,Sales\n2,Support\n3,Engineering\n").await;
        self.upload_csv("jobs", "1,Analyst\n2,Manager\n3,Engineer\n").await;
    }
}
