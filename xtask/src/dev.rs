//! `cargo xtask dev [--listen ADDR] [--no-sample] [--fresh]`: the whole system on this machine.
//!
//! Finds or starts PostgreSQL (database `hiring_dev`, see `pg`), builds and starts `hiring-api`
//! with a fresh random write token, waits for `GET /health`, loads `data/sample/` with one
//! `POST /upload`, prints how to use the API, and runs until Ctrl-C or until the server exits;
//! then it stops the server, and the private PostgreSQL cluster if it started one.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

use devenv::pg;

/// How long the server gets to answer `GET /health` with 200.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
/// How many lines of the server's output an error shows.
const TAIL_LINES: usize = 40;
const TABLES: [&str; 3] = ["departments", "jobs", "hired_employees"];

#[derive(clap::Args)]
pub struct Dev {
    /// The address the API listens on (HIRING_LISTEN).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Do not load data/sample/ into the database.
    #[arg(long)]
    no_sample: bool,
    /// Drop and recreate the database `hiring_dev` first (e.g. after a migration changed).
    #[arg(long)]
    fresh: bool,
    /// Build the API in release mode (slower to build the first time, faster to run); the
    /// default is the dev profile the tests use, so a first `dev` compiles little.
    #[arg(long)]
    release: bool,
}

impl Dev {
    pub fn run(self) -> anyhow::Result<()> {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("failed to build the tokio runtime")?
            .block_on(self.serve())
    }

    async fn serve(self) -> anyhow::Result<()> {
        // Another server on the address would answer our health checks in place of this one.
        if self.listen.port() == 0 {
            bail!("--listen needs a fixed port, such as 127.0.0.1:8080");
        }
        std::net::TcpListener::bind(self.listen).with_context(|| {
            format!("{} is not free (another hiring-api?); choose another with --listen", self.listen)
        })?;
        // Listening from the start turns every Ctrl-C below into an orderly stop, so the
        // private PostgreSQL cluster is never left running.
        let mut interrupt = signal(SignalKind::interrupt()).context("failed to listen for Ctrl-C")?;

        // `pg` blocks (it has its own small runtime), so it runs off this runtime's threads.
        let fresh = self.fresh;
        let postgres = tokio::task::spawn_blocking(move || {
            let postgres = pg::find_or_start("hiring_dev").context("failed to find PostgreSQL")?;
            if fresh {
                postgres.recreate().context("failed to recreate the database")?;
            }
            anyhow::Ok(postgres)
        })
        .await
        .context("PostgreSQL discovery panicked")??;
        println!("PostgreSQL: {} ({})", postgres.display_url(), postgres.source());
        if fresh {
            println!("database recreated empty");
        }

        let binary = build(self.release, &mut interrupt).await?;
        let token = random_token().context("failed to generate an API token")?;
        let data_dir = devenv::project_root().join("data").join("local");
        std::fs::create_dir_all(&data_dir).with_context(|| format!("failed to create {}", data_dir.display()))?;

        let mut command = Command::new(&binary);
        command
            .env("DATABASE_URL", postgres.url())
            .env("HIRING_LISTEN", self.listen.to_string())
            .env("HIRING_DATA_DIR", &data_dir)
            .env("HIRING_API_TOKEN", &token)
            // The report and the metrics open in a browser; rejects, ingestions and backups
            // still need the token.
            .env("HIRING_PUBLIC_METRICS", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        // The logs pass through a pipe to this terminal: ask for readable lines there.
        if std::io::stderr().is_terminal() {
            command.env("HIRING_LOG_FORMAT", "text");
        }
        let mut server = command.spawn().with_context(|| format!("failed to start {}", binary.display()))?;
        let output = Output::capture(&mut server);

        // The server may listen on every interface; clients reach it on loopback.
        let mut address = self.listen;
        if address.ip().is_unspecified() {
            address.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        let base = format!("http://{address}");
        let client = reqwest::Client::new();

        let outcome = async {
            if !wait_for_health(&client, &base, &mut server, &output, &mut interrupt).await? {
                return Ok(());
            }
            if !self.no_sample
                && let Err(error) = load_sample(&client, &base, &token).await
            {
                eprintln!("warning: the sample data did not load: {error:#}");
            }
            print_usage(&base, &token);
            tokio::select! {
                _ = interrupt.recv() => println!("\nstopping"),
                status = server.wait() => {
                    let status = status.context("failed to wait for hiring-api")?;
                    bail!("hiring-api exited ({status}); its last output:\n{}", output.tail().await);
                }
            }
            Ok(())
        }
        .await;

        stop(&mut server).await;
        drop(postgres);
        outcome
    }
}

/// Builds the API (the dev profile, or release) and returns the path of its binary.
async fn build(release: bool, interrupt: &mut Signal) -> anyhow::Result<PathBuf> {
    let profile = if release { "release" } else { "dev" };
    println!("building hiring-api ({profile} profile)");
    let mut cargo = Command::from(devenv::cargo());
    cargo.args(["build", "-p", "api", "--bin", "hiring-api", "--profile", profile]);
    let status = tokio::select! {
        status = cargo.status() => status.context("failed to run cargo build")?,
        _ = interrupt.recv() => bail!("interrupted during the build"),
    };
    if !status.success() {
        bail!("cargo build -p api --profile {profile} failed ({status}); its errors are above");
    }
    Ok(devenv::target_dir().join(if release { "release" } else { "debug" }).join("hiring-api"))
}

/// 32 random bytes from the operating system, as 64 hex digits.
fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Polls `GET /health` until it answers 200. Fails if the server exits or the time runs out;
/// returns `false` when interrupted.
async fn wait_for_health(
    client: &reqwest::Client,
    base: &str,
    server: &mut Child,
    output: &Output,
    interrupt: &mut Signal,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + HEALTH_TIMEOUT;
    let url = format!("{base}/health");
    loop {
        if let Some(status) = server.try_wait().context("failed to check on hiring-api")? {
            bail!("hiring-api exited ({status}) before {url} answered; its last output:\n{}", output.tail().await);
        }
        let last = match client.get(&url).timeout(Duration::from_secs(2)).send().await {
            Ok(response) if response.status() == reqwest::StatusCode::OK => return Ok(true),
            Ok(response) => format!("status {}", response.status()),
            Err(error) => error.to_string(),
        };
        if Instant::now() >= deadline {
            bail!(
                "{url} did not answer 200 within {}s (last: {last}); the server's last output:\n{}",
                HEALTH_TIMEOUT.as_secs(),
                output.tail_now()
            );
        }
        tokio::select! {
            _ = sleep(Duration::from_millis(200)) => {}
            _ = interrupt.recv() => return Ok(false),
        }
    }
}

/// `POST /upload`'s answer.
#[derive(Deserialize)]
struct UploadReport {
    ingestions: Vec<Ingestion>,
}

#[derive(Deserialize)]
struct Ingestion {
    id: serde_json::Value,
    table: String,
    rows: u64,
    inserted: u64,
    updated: u64,
    unchanged: u64,
    rejected: u64,
}

/// Uploads the three sample files in one multipart request and prints what was loaded.
async fn load_sample(client: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<()> {
    let sample = devenv::project_root().join("data").join("sample");
    let mut form = reqwest::multipart::Form::new();
    for table in TABLES {
        let path = sample.join(format!("{table}.csv"));
        let bytes = tokio::fs::read(&path).await.with_context(|| format!("failed to read {}", path.display()))?;
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(format!("{table}.csv"))
            .mime_str("text/csv")
            .context("failed to build the multipart form")?;
        form = form.part(table, part);
    }
    println!("loading {}", sample.display());
    let response = client
        .post(format!("{base}/upload"))
        .bearer_auth(token)
        .multipart(form)
        .timeout(Duration::from_secs(300))
        .send()
        .await
        .context("POST /upload failed")?;
    let status = response.status();
    let body = response.text().await.context("failed to read the /upload response")?;
    if !status.is_success() {
        bail!("POST /upload answered {status}: {body}");
    }
    let report: UploadReport =
        serde_json::from_str(&body).with_context(|| format!("POST /upload answered an unexpected body: {body}"))?;

    println!(
        "\n  {:<16} {:>6} {:>9} {:>8} {:>10} {:>9}  ingestion",
        "table", "rows", "inserted", "updated", "unchanged", "rejected"
    );
    for ingestion in &report.ingestions {
        let id = match &ingestion.id {
            serde_json::Value::String(id) => id.clone(),
            other => other.to_string(),
        };
        println!(
            "  {:<16} {:>6} {:>9} {:>8} {:>10} {:>9}  {id}",
            ingestion.table,
            ingestion.rows,
            ingestion.inserted,
            ingestion.updated,
            ingestion.unchanged,
            ingestion.rejected
        );
    }
    Ok(())
}

fn print_usage(base: &str, token: &str) {
    println!(
        r#"
hiring-api is running at {base}
token (every endpoint; the report and metrics need none here): {token}

  the report:        {base}/
  the API, to try:   {base}/docs/      (OpenAPI document: {base}/openapi.json)

  GET  {base}/health                            (no token)
  GET  {base}/metrics                           (Prometheus)
  GET  {base}/metrics/hires?year=2021
  GET  {base}/metrics/departments?year=2021      (add &format=csv for CSV)
  GET  {base}/ingestions/{{id}}
  GET  {base}/ingestions/{{id}}/rejects
  POST {base}/upload                            (multipart: departments, jobs, hired_employees)
  POST {base}/uploads                           (presigned URLs, for files of any size)
  POST {base}/batch/{{table}}                     (JSON array of 1 to 1000 rows)

  curl -X POST {base}/batch/hired_employees \
    -H 'Authorization: Bearer {token}' \
    -H 'Content-Type: application/json' \
    -d '[{{"id":100001,"name":"Ada Lovelace","datetime":"2021-03-01T09:00:00Z","department_id":1,"job_id":1}}]'

  cargo xtask upload --url {base} --token {token} path/to/hired_employees.csv

Ctrl-C stops everything."#
    );
}

/// Sends SIGTERM, waits up to 10 s for a graceful exit, then kills.
async fn stop(server: &mut Child) {
    if matches!(server.try_wait(), Ok(Some(_))) {
        return;
    }
    if let Some(pid) = server.id() {
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
    }
    let exited: Option<ExitStatus> = timeout(Duration::from_secs(10), server.wait()).await.ok().and_then(Result::ok);
    if exited.is_none() {
        eprintln!("hiring-api did not stop within 10 s of SIGTERM; killing it");
        let _ = server.kill().await;
    }
}

/// The server's stdout and stderr, passed through to ours, with the last lines kept for errors.
struct Output {
    tail: Arc<Mutex<VecDeque<String>>>,
    forwarders: Mutex<Vec<JoinHandle<()>>>,
}

impl Output {
    fn capture(child: &mut Child) -> Output {
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let mut forwarders = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            forwarders.push(tokio::spawn(forward(stdout, Stream::Stdout, tail.clone())));
        }
        if let Some(stderr) = child.stderr.take() {
            forwarders.push(tokio::spawn(forward(stderr, Stream::Stderr, tail.clone())));
        }
        Output { tail, forwarders: Mutex::new(forwarders) }
    }

    /// The last lines, after the (exited) server's output has been read to the end.
    async fn tail(&self) -> String {
        let forwarders = std::mem::take(&mut *self.forwarders.lock().expect("not poisoned"));
        for forwarder in forwarders {
            let _ = timeout(Duration::from_secs(2), forwarder).await;
        }
        self.tail_now()
    }

    /// The last lines read so far.
    fn tail_now(&self) -> String {
        let tail = self.tail.lock().expect("not poisoned");
        if tail.is_empty() {
            return "  (no output)".into();
        }
        tail.iter().map(|line| format!("  | {line}")).collect::<Vec<_>>().join("\n")
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

async fn forward(from: impl AsyncRead + Unpin, to: Stream, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut from = BufReader::new(from);
    let mut bytes = Vec::new();
    // Bytes, not `lines()`: one line of invalid UTF-8 must not stop the forwarding (the server
    // would then block on a full pipe).
    while from.read_until(b'\n', &mut bytes).await.is_ok_and(|read| read > 0) {
        let raw = String::from_utf8_lossy(&bytes);
        let raw = raw.trim_end_matches(['\n', '\r']);
        let line = raw.to_owned();
        // A blocking write of one line to our own terminal is short enough for a runtime thread.
        let _ = match to {
            Stream::Stdout => writeln!(std::io::stdout().lock(), "{line}"),
            Stream::Stderr => writeln!(std::io::stderr().lock(), "{line}"),
        };
        let mut tail = tail.lock().expect("not poisoned");
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
        bytes.clear();
    }
}
