//! moto, the AWS emulator, as a test fixture: one private server per [`Moto`], on a free port of
//! 127.0.0.1, stopped when the value is dropped.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let moto = hiring_tests::moto::Moto::start()?;
//! moto.create_bucket("zones").await?;
//! let env = moto.aws_env(); // credentials, region and endpoint of this server
//! let lookup = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
//! let zone = hiring::zones::Zone::open_with("s3://zones/raw", lookup)?;
//! # let _ = zone; Ok(()) }
//! ```
//!
//! The server is `moto_server` from the project's Python venv: `HIRING_MOTO_SERVER` (which
//! `cargo xtask test` sets), else `<workspace>/target/venv/bin/moto_server`. There is no silent
//! skip: without the server the test fails and says how to get it (`cargo xtask venv`).
//!
//! moto accepts any credentials and does not check signatures, so plain unsigned HTTP requests
//! work too (see [`Moto::create_bucket`]).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long moto may take to answer HTTP after it is started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The region everything is created in.
pub const REGION: &str = "us-east-1";

/// A running moto server, killed on drop. Its output goes to [`Moto::log_path`].
#[derive(Debug)]
pub struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
    _directory: tempfile::TempDir,
}

impl Moto {
    /// Starts a fresh, empty moto server and waits (up to 30 s) until it answers HTTP.
    pub fn start() -> anyhow::Result<Moto> {
        let server = server_path()?;
        let directory = tempfile::Builder::new()
            .prefix("hiring-moto-")
            .tempdir()
            .context("failed to create a temporary directory")?;
        // The port is free when picked but may be taken before moto binds it: then try another.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let log = directory.path().join(format!("moto-{attempt}.log"));
            match Moto::start_on(&server, free_port()?, &log) {
                Ok((child, port)) => return Ok(Moto { child, port, log, _directory: directory }),
                Err(error) if attempt < 3 && log_tail(&log).contains("Address already in use") => {
                    eprintln!("moto could not bind its port, trying another: {error:#}");
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn start_on(server: &Path, port: u16, log: &Path) -> anyhow::Result<(Child, u16)> {
        let output = File::create(log).with_context(|| format!("failed to create {}", log.display()))?;
        let mut child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(output.try_clone().context("failed to share the log file")?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("failed to start {}", server.display()))?;
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().context("failed to check on moto")? {
                bail!("moto exited at start ({status}); its output ends with:\n{}", log_tail(log));
            }
            if answers_http(port) {
                return Ok((child, port));
            }
            if started.elapsed() > READY_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "moto did not answer on 127.0.0.1:{port} within {}s; its output ends with:\n{}",
                    READY_TIMEOUT.as_secs(),
                    log_tail(log)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`, the endpoint of every service.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the server's output goes (it logs each request).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The environment an AWS client needs to talk to this server: test credentials, the
    /// region, and the endpoint (`AWS_ENDPOINT_URL`, and `AWS_ENDPOINT_URL_S3` so a value from
    /// the surrounding environment cannot win). Pass it to child processes with `Command::envs`.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        let endpoint = self.endpoint();
        [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ENDPOINT_URL", &endpoint),
            ("AWS_ENDPOINT_URL_S3", &endpoint),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
    }

    /// Creates an S3 bucket with a plain, unsigned `PUT /{name}` (moto does not check
    /// signatures).
    pub async fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        let url = format!("{}/{name}", self.endpoint());
        let response =
            reqwest::Client::new().put(&url).send().await.with_context(|| format!("failed to send PUT {url}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("PUT {url} answered {status}: {body}");
        }
        Ok(())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `HIRING_MOTO_SERVER`, else the venv's `moto_server` under the target directory.
fn server_path() -> anyhow::Result<PathBuf> {
    let (server, from) = match std::env::var_os("HIRING_MOTO_SERVER") {
        Some(path) if !path.is_empty() => (PathBuf::from(path), "HIRING_MOTO_SERVER"),
        _ => (default_target_dir().join("venv/bin/moto_server"), "the default location"),
    };
    if !server.is_file() {
        bail!(
            "moto_server, the AWS emulator these tests need, is not at {} ({from}); run `cargo xtask venv` \
             (creates the Python venv under target/) and set HIRING_MOTO_SERVER to the path it prints, \
             or run the tests with `cargo xtask test`, which does both",
            server.display()
        );
    }
    Ok(server)
}

/// `CARGO_TARGET_DIR` when set to an absolute path, else `<workspace>/target`.
fn default_target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").join("target"),
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("failed to find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Whether something answers an HTTP request on the port (any status will do).
fn answers_http(port: u16) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut start = [0; 5];
    stream.read_exact(&mut start).is_ok() && &start == b"HTTP/"
}

/// The last lines of a log file, for error messages.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_else(|error| format!("(cannot read: {error})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
