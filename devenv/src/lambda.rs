//! The Lambda Runtime API, emulated, as a test fixture: runs a built function binary
//! (`bootstrap`) the way Lambda's `provided.al2023` runtime does, and invokes it with JSON
//! events, so tests exercise the real binary, its event parsing and its error reports.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use devenv::lambda::{self, Invocation, LambdaEmulator};
//!
//! let emulator = LambdaEmulator::start(&lambda::cargo_lambda()?)?;
//! let function = emulator.run_function("validate", &lambda::bootstrap("validate")?, &[])?;
//! match function.invoke(&serde_json::json!({"key": "raw/jobs/jobs.csv"})).await? {
//!     Invocation::Response(report) => println!("{report}"),
//!     Invocation::Error(error) => println!("{}: {}", error.error_type, error.error_message),
//! }
//! # Ok(()) }
//! ```
//!
//! The emulator is cargo-lambda's own (`cargo lambda watch --only-lambda-apis`), one private
//! server per [`LambdaEmulator`] on a free port of 127.0.0.1, killed on drop. In that mode it
//! builds and starts nothing itself: it serves the Runtime API under
//! `http://127.0.0.1:PORT/.rt/<function>/2018-06-01/runtime/...` and the Invoke API at
//! `POST /2015-03-31/functions/<function>/invocations`, which answers once the function has
//! posted its response (200, the response) or its error (500, `{"errorType","errorMessage"}`).
//! It reads the workspace's `cargo metadata` at start and accepts only function names that are
//! binaries of the workspace (`validate`, `process`, `backup`).
//!
//! [`LambdaEmulator::run_function`] starts the binary with a clean environment: what Lambda
//! sets (`AWS_LAMBDA_RUNTIME_API` pointing at the emulator, `AWS_LAMBDA_FUNCTION_NAME`, …)
//! plus the caller's variables, so nothing of the developer's environment (AWS credentials)
//! leaks in. Its output goes to a log file whose tail every error message quotes.
//!
//! The paths come from `cargo xtask test`: `HIRING_CARGO_LAMBDA` (the venv's cargo-lambda) and
//! `HIRING_LAMBDA_DIR` (`<target>/lambda-host`, where `cargo xtask test` packages the dev build's
//! `<name>/bootstrap`); without them, the same places under the default target directory. There
//! is no silent skip: a missing file fails the test and says which command makes it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::server::{Server, log_tail};
use crate::{project_root, target_dir};

/// How long cargo-lambda may take to answer HTTP after it is started (it runs `cargo metadata`
/// first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one invocation may take, from the request to the function's answer.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);

/// The region a function sees in `AWS_REGION` unless the caller's environment says otherwise.
const REGION: &str = "us-east-1";

/// The path under which cargo-lambda serves the Runtime API.
const RUNTIME_PREFIX: &str = ".rt";

/// A running cargo-lambda emulator, killed on drop. Its output goes to [`Self::log_path`].
#[derive(Debug)]
pub struct LambdaEmulator {
    child: Child,
    port: u16,
    log: PathBuf,
    /// Numbers the log files of the functions started, so each start has its own.
    started: AtomicUsize,
    directory: tempfile::TempDir,
}

impl LambdaEmulator {
    /// Starts a fresh emulator with the given `cargo-lambda` program (see [`cargo_lambda`]) and
    /// waits (up to 60 s) until it answers HTTP.
    pub fn start(cargo_lambda: &Path) -> anyhow::Result<LambdaEmulator> {
        if !cargo_lambda.is_file() {
            bail!("{} does not exist; {}", cargo_lambda.display(), HOW_TO_GET_CARGO_LAMBDA);
        }
        let directory = tempfile::Builder::new()
            .prefix("hiring-lambda-")
            .tempdir()
            .context("failed to create a temporary directory")?;
        let workspace = project_root();
        let started = Server {
            name: "cargo lambda watch",
            directory: directory.path(),
            port_taken: "in use",
            ready_timeout: READY_TIMEOUT,
            // The Invoke API takes only POST: a GET is answered at once (405) and invokes nothing.
            probe: "/2015-03-31/functions/probe/invocations",
        }
        .start(|port| {
            let mut command = Command::new(cargo_lambda);
            command
                .args(["lambda", "watch", "--only-lambda-apis", "--ignore-changes", "--invoke-address", "127.0.0.1"])
                .args(["--invoke-port", &port.to_string()])
                .arg("--manifest-path")
                .arg(workspace.join("Cargo.toml"))
                .current_dir(&workspace)
                .env("NO_COLOR", "1");
            command
        })?;
        Ok(LambdaEmulator {
            child: started.child,
            port: started.port,
            log: started.log,
            started: AtomicUsize::new(0),
            directory,
        })
    }

    /// `http://127.0.0.1:PORT`, where the Invoke API and the Runtime API are served.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The Runtime API of one function, the value of its `AWS_LAMBDA_RUNTIME_API`.
    pub fn runtime_api(&self, function: &str) -> String {
        format!("{}/{RUNTIME_PREFIX}/{function}", self.endpoint())
    }

    /// Where the emulator's output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Starts `bootstrap` as the function `name` (a binary name of the workspace) polling this
    /// emulator. `env` is added to Lambda's own variables and wins over them, e.g. a moto
    /// server's `aws_env()` or `DATABASE_URL`. The process is killed when the returned value
    /// is dropped.
    pub fn run_function(
        &self,
        name: &str,
        bootstrap: &Path,
        env: &[(String, String)],
    ) -> anyhow::Result<RunningFunction> {
        if !bootstrap.is_file() {
            bail!("{} does not exist; {}", bootstrap.display(), HOW_TO_GET_BOOTSTRAP);
        }
        let number = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        let log = self.directory.path().join(format!("{name}-{number}.log"));
        let output = File::create(&log).with_context(|| format!("failed to create {}", log.display()))?;
        let lambda_env = [
            ("AWS_LAMBDA_RUNTIME_API", self.runtime_api(name)),
            ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024".to_owned()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
            ("AWS_LAMBDA_LOG_STREAM_NAME", format!("local/{number}")),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_DEFAULT_REGION", REGION.to_owned()),
            ("RUST_BACKTRACE", std::env::var("RUST_BACKTRACE").unwrap_or_else(|_| "1".to_owned())),
        ];
        let child = Command::new(bootstrap)
            .env_clear()
            .envs(lambda_env)
            .envs(env.iter().map(|(name, value)| (name, value)))
            .current_dir(bootstrap.parent().unwrap_or(Path::new("/")))
            .stdin(Stdio::null())
            .stdout(output.try_clone().context("failed to share the log file")?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("failed to start {}", bootstrap.display()))?;
        Ok(RunningFunction {
            name: name.to_owned(),
            child: Mutex::new(child),
            invoke_url: format!("{}/2015-03-31/functions/{name}/invocations", self.endpoint()),
            log,
            emulator_log: self.log.clone(),
            client: reqwest::Client::new(),
        })
    }
}

impl Drop for LambdaEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A function process polling an emulator, killed on drop.
#[derive(Debug)]
pub struct RunningFunction {
    name: String,
    child: Mutex<Child>,
    invoke_url: String,
    log: PathBuf,
    emulator_log: PathBuf,
    client: reqwest::Client,
}

/// What one invocation returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// The handler returned this JSON.
    Response(Value),
    /// The handler returned an error (or panicked), as lambda_runtime reports it.
    Error(FunctionError),
}

impl Invocation {
    /// The response, or an error quoting the function's error.
    pub fn into_response(self) -> anyhow::Result<Value> {
        match self {
            Invocation::Response(value) => Ok(value),
            Invocation::Error(error) => bail!("the function failed: {}: {}", error.error_type, error.error_message),
        }
    }

    /// The function's error, or an error quoting the response it returned instead.
    pub fn into_error(self) -> anyhow::Result<FunctionError> {
        match self {
            Invocation::Error(error) => Ok(error),
            Invocation::Response(value) => bail!("the function succeeded, where an error was expected: {value}"),
        }
    }
}

/// A function error, from the `{"errorType": …, "errorMessage": …}` body Lambda reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionError {
    pub error_type: String,
    pub error_message: String,
}

impl RunningFunction {
    /// The function's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the function's stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the function printed so far (its tracing logs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Invokes the function with `event` and waits (up to 60 s) for its answer. Fails if the
    /// function process exits first (e.g. it panicked at start), quoting its output.
    pub async fn invoke(&self, event: &Value) -> anyhow::Result<Invocation> {
        let payload = serde_json::to_vec(event).context("failed to serialize the event")?;
        self.invoke_raw(payload).await
    }

    /// Invokes the function with a payload as it is, which need not be JSON: a payload the
    /// function cannot parse is answered with lambda_runtime's deserialization error.
    pub async fn invoke_raw(&self, payload: impl Into<Vec<u8>>) -> anyhow::Result<Invocation> {
        let request = self
            .client
            .post(&self.invoke_url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(payload.into())
            .send();
        tokio::pin!(request);
        let deadline = tokio::time::sleep(INVOKE_TIMEOUT);
        tokio::pin!(deadline);
        let response = loop {
            tokio::select! {
                response = &mut request => {
                    break response.with_context(|| format!("failed to send the invocation to {}", self.invoke_url))?;
                }
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    if let Some(status) = self.exited()? {
                        bail!(
                            "function {} exited ({status}) before it answered; its output ends with:\n{}",
                            self.name,
                            log_tail(&self.log)
                        );
                    }
                }
                () = &mut deadline => bail!(
                    "function {} did not answer within {}s; its output ends with:\n{}\nthe emulator's:\n{}",
                    self.name,
                    INVOKE_TIMEOUT.as_secs(),
                    log_tail(&self.log),
                    log_tail(&self.emulator_log)
                ),
            }
        };

        let status = response.status();
        let function_error = response.headers().contains_key("x-amz-function-error");
        let body = response.text().await.context("failed to read the invocation's answer")?;
        let json: Option<Value> = serde_json::from_str(&body).ok();
        if status.is_success() && !function_error {
            return match json {
                Some(value) => Ok(Invocation::Response(value)),
                None => bail!("function {} answered with a body that is not JSON: {body:?}", self.name),
            };
        }
        // cargo-lambda answers a function error with 500; Lambda itself with 200 and X-Amz-Function-Error.
        let field =
            |name: &str| json.as_ref().and_then(|json| json.get(name)).and_then(Value::as_str).map(str::to_owned);
        match (field("errorType"), field("errorMessage")) {
            (Some(error_type), Some(error_message)) => {
                Ok(Invocation::Error(FunctionError { error_type, error_message }))
            }
            _ => bail!(
                "the emulator answered the invocation of {} with {status}: {body}\n(a 404 `Missing function` means the \
                 name is not a binary of the workspace); the emulator's output ends with:\n{}",
                self.name,
                log_tail(&self.emulator_log)
            ),
        }
    }

    fn exited(&self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let mut child = self.child.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        child.try_wait().with_context(|| format!("failed to check on function {}", self.name))
    }
}

impl Drop for RunningFunction {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = child.kill();
        let _ = child.wait();
    }
}

const HOW_TO_GET_CARGO_LAMBDA: &str = "cargo-lambda comes from the project's Python venv: run `cargo xtask venv` \
     and set HIRING_CARGO_LAMBDA to the path it prints, or run the tests with `cargo xtask test`, which does both";

const HOW_TO_GET_BOOTSTRAP: &str = "build the functions with `cargo xtask build-functions` and set \
     HIRING_LAMBDA_DIR to the lambda directory it prints (<target>/lambda), or run `cargo xtask test --only artifacts,tests`, \
     which packages the dev build's functions into <target>/lambda-host and points the tests there";

/// `HIRING_CARGO_LAMBDA`, else the venv's `cargo-lambda` under the target directory.
pub fn cargo_lambda() -> anyhow::Result<PathBuf> {
    let (path, from) = match std::env::var_os("HIRING_CARGO_LAMBDA") {
        Some(path) if !path.is_empty() => (PathBuf::from(path), "HIRING_CARGO_LAMBDA"),
        _ => (target_dir().join("venv/bin/cargo-lambda"), "the default location"),
    };
    if !path.is_file() {
        bail!("cargo-lambda, the Lambda emulator, is not at {} ({from}); {HOW_TO_GET_CARGO_LAMBDA}", path.display());
    }
    Ok(path)
}

/// The built binary of function `name`: `$HIRING_LAMBDA_DIR/<name>/bootstrap`, else under
/// `<target>/lambda-host` (what `cargo xtask test` packages).
pub fn bootstrap(name: &str) -> anyhow::Result<PathBuf> {
    let (directory, from) = match std::env::var_os("HIRING_LAMBDA_DIR") {
        Some(path) if !path.is_empty() => (PathBuf::from(path), "HIRING_LAMBDA_DIR"),
        _ => (target_dir().join("lambda-host"), "the default location"),
    };
    let path = directory.join(name).join("bootstrap");
    if !path.is_file() {
        bail!("the {name} function is not built at {} ({from}); {HOW_TO_GET_BOOTSTRAP}", path.display());
    }
    Ok(path)
}
