//! The real `hiring-api` binary, started on a test database for the tests that need a process
//! of its own (killed mid-upload, its memory measured).

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::PgPool;

pub const TOKEN: &str = "binary-test-token-0123456789";

pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    pub fn start(database_url: &str, data_dir: &std::path::Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_hiring-api"))
            .env("DATABASE_URL", database_url)
            .env("HIRING_LISTEN", format!("127.0.0.1:{port}"))
            .env("HIRING_DATA_DIR", data_dir)
            .env("HIRING_API_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("hiring-api starts");
        Server { child, base: format!("http://127.0.0.1:{port}") }
    }

    pub async fn wait_healthy(&self, client: &reqwest::Client) {
        // Generous: under a full test run the machine's two cores are shared by many servers.
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{}/health", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("hiring-api did not become healthy within 90 s");
    }

    pub async fn upload(
        &self,
        client: &reqwest::Client,
        table: &str,
        csv: Vec<u8>,
    ) -> reqwest::Result<reqwest::Response> {
        let form = reqwest::multipart::Form::new()
            .part(table.to_owned(), reqwest::multipart::Part::bytes(csv).file_name(format!("{table}.csv")));
        client.post(format!("{}/upload", self.base)).bearer_auth(TOKEN).multipart(form).send().await
    }

    /// `GET path` with the token, as JSON.
    pub async fn get_json(&self, client: &reqwest::Client, path: &str) -> serde_json::Value {
        let response = client.get(format!("{}{path}", self.base)).bearer_auth(TOKEN).send().await.unwrap();
        response.json().await.unwrap()
    }

    /// The process's peak resident memory so far (VmHWM), in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("the server runs");
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status");
        kib * 1024.0 / 1e6
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The URL of the test database `pool` is on, on the server `cargo xtask test` names.
pub fn database_url(pool: &PgPool) -> String {
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL is set by cargo xtask test");
    let server = server.rsplit_once('/').map_or(server.as_str(), |(base, _)| base).to_owned();
    format!("{server}/{}", pool.connect_options().get_database().expect("a test database"))
}
