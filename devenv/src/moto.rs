//! moto, the AWS emulator, as a test fixture: one private server per [`Moto`], on a free port of
//! 127.0.0.1, stopped when the value is dropped.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let moto = devenv::moto::Moto::start()?;
//! moto.create_bucket("zones").await?;
//! // Credentials, region and endpoint of this server, for a program under test (a storage
//! // zone opened with them, e.g. `hiring::zones::Zone::open_with`, reaches this server).
//! let env = moto.aws_env();
//! let program = std::process::Command::new("hiring-api").envs(env).spawn()?;
//! # drop(program); Ok(()) }
//! ```
//!
//! The server is `moto_server` from the project's Python venv: `HIRING_MOTO_SERVER` (which
//! `cargo xtask test` sets), else `<workspace>/target/venv/bin/moto_server`. There is no silent
//! skip: without the server the test fails and says how to get it (`cargo xtask venv`).
//!
//! Until IAM is enforced (`Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", …)])`, or
//! `POST /moto-api/reset-auth`: see `ops::emulated_iam`), moto accepts any credentials and does
//! not check signatures, so plain unsigned HTTP requests work too (see [`Moto::create_bucket`]).
//! The server runs through `moto/server.py`, which fixes two of moto's signature checks under
//! enforcement (it says which).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::server::Server;
use crate::target_dir;

/// `moto_server` with the project's fixes for IAM enforcement (moto/server.py).
const LAUNCHER: &str = include_str!("moto/server.py");

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
        Moto::start_with(&[])
    }

    /// [`Moto::start`] with settings of moto's in the server's environment, e.g.
    /// `INITIAL_NO_AUTH_ACTION_COUNT` (IAM enforced after that many requests) or
    /// `SF_EXECUTION_HISTORY_TYPE=FAILURE` (every Step Functions execution fails).
    pub fn start_with(env: &[(&str, &str)]) -> anyhow::Result<Moto> {
        let server = server_path()?;
        let directory = tempfile::Builder::new()
            .prefix("hiring-moto-")
            .tempdir()
            .context("failed to create a temporary directory")?;
        // moto_server, through the project's fixes to its signature checks (see server.py),
        // with the venv's Python beside it.
        let python = server.with_file_name("python");
        let launcher = directory.path().join("server.py");
        std::fs::write(&launcher, LAUNCHER).context("failed to write the moto launcher")?;
        let started = Server {
            name: "moto",
            directory: directory.path(),
            port_taken: "Address already in use",
            ready_timeout: READY_TIMEOUT,
            probe: "/moto-api/",
        }
        .start(|port| {
            let mut command = Command::new(&python);
            command.arg(&launcher).args(["-H", "127.0.0.1", "-p", &port.to_string()]).envs(env.iter().copied());
            command
        })?;
        Ok(Moto { child: started.child, port: started.port, log: started.log, _directory: directory })
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

    /// An AWS SDK configuration for this server (test credentials, [`REGION`], its endpoint).
    /// S3 clients built from it also need `force_path_style(true)`.
    #[cfg(feature = "sdk")]
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let testing = aws_credential_types::Credentials::new("testing", "testing", None, None, "moto");
        sdk_config(&self.endpoint(), testing).await
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

/// An AWS SDK configuration for the emulator at `url` (moto or another), acting with
/// `credentials`, in [`REGION`]. S3 clients built from it also need `force_path_style(true)`.
#[cfg(feature = "sdk")]
pub async fn sdk_config(url: &str, credentials: aws_credential_types::Credentials) -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .endpoint_url(url)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(credentials)
        .load()
        .await
}

/// `HIRING_MOTO_SERVER`, else the venv's `moto_server` under the target directory.
fn server_path() -> anyhow::Result<PathBuf> {
    let (server, from) = match std::env::var_os("HIRING_MOTO_SERVER") {
        Some(path) if !path.is_empty() => (PathBuf::from(path), "HIRING_MOTO_SERVER"),
        _ => (target_dir().join("venv/bin/moto_server"), "the default location"),
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
