//! `cargo xtask test [--no-lint] [--only PHASE,…] [-- <test runner args>]`: what CI runs, in
//! order, stopping at the first failure: `cargo fmt --check`, `cargo clippy -D warnings`, then
//! every test of the
//! workspace with `DATABASE_URL` pointing at a real PostgreSQL (see `pg`). Tests use
//! `#[sqlx::test]`, which creates a database per test on that server.
//!
//! The tests run under cargo-nextest when it is installed (one process per test, faster and
//! clearer output), else under `cargo test`; nextest does not run doc tests, so they follow.
//!
//! Tests that need AWS run against moto from the project's Python venv (see `venv`), which is
//! created or updated first; `HIRING_PYTHON` and `HIRING_MOTO_SERVER` tell the tests where it is.
//! The workspace is built once in the dev profile (`functions::build_host`); the Lambda
//! functions are packaged from that build (`<target>/lambda-host`) and run under cargo-lambda's
//! emulator: `HIRING_LAMBDA_DIR` and `HIRING_CARGO_LAMBDA` say where.
//! The CloudFormation templates are checked before the tests too (see `lint`: synth --check,
//! cfn-lint, cfn-guard); `HIRING_CFN_GUARD` gives the rules' own tests the cfn-guard binary.
//! The API image is built from the same build (`HIRING_IMAGE_DIR`: the tests unpack it and run
//! the API in it).
//! Debian's Chromium is installed for the report's browser test (`HIRING_CHROMIUM`; where it
//! cannot be, `HIRING_CHROMIUM_SKIP` gives the test its reason to skip), and the venv's
//! schemathesis sends generated requests to every endpoint (`HIRING_SCHEMATHESIS`).
//! Last, `test-local` runs the local stage end to end (the `ops` binary the test build made).
//!
//! A run with a test filter (`cargo xtask test -- upload`) runs only the `tests` phase: no
//! lints, no template checks, no artifact builds, no doc tests, no test-local; naming a package
//! (`cargo xtask test -- -p hiring`) builds only that package's tests. `--only` picks
//! the phases by name (see [`Phase`]), e.g. `--only artifacts,tests -- image`.

use std::ffi::OsString;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::functions;
use devenv::pg::{self, Source};
use devenv::venv;

use crate::{browser, image, lint};

#[derive(clap::Args)]
pub struct Test {
    /// Skip `cargo fmt --check` and `cargo clippy`, for quick local iterations.
    #[arg(long)]
    no_lint: bool,
    /// Run only these phases (comma-separated). Without it every phase runs, or, when test
    /// runner arguments (a filter) are given, only `tests`: a filtered run asks for a few tests,
    /// not for the whole check.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Phase>,
    /// Passed to the test runner, e.g. a filter: `cargo xtask test -- upload`.
    #[arg(last = true)]
    args: Vec<OsString>,
}

/// The phases of `cargo xtask test`, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// `cargo fmt --check`.
    Fmt,
    /// `cargo clippy -D warnings` on every target.
    Clippy,
    /// The committed templates: synth --check, cfn-lint, cfn-guard.
    Templates,
    /// The Lambda zips and the API image the function and image tests run.
    Artifacts,
    /// Every test of the workspace (or those the filter names).
    Tests,
    /// The doc tests.
    Doc,
    /// The local stage end to end on the emulator.
    TestLocal,
}

impl Test {
    /// Whether `phase` runs in this invocation.
    fn runs(&self, phase: Phase) -> bool {
        if !self.only.is_empty() {
            return self.only.contains(&phase);
        }
        if self.no_lint && matches!(phase, Phase::Fmt | Phase::Clippy) {
            return false;
        }
        self.args.is_empty() || phase == Phase::Tests
    }
}

impl Test {
    pub fn run(self) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut phases = Vec::new();

        if self.runs(Phase::Fmt) {
            phase(&mut phases, "fmt", devenv::cargo().args(["fmt", "--all", "--check"]))
                .context("the formatting differs from rustfmt; `cargo fmt --all` fixes it")?;
        }
        if self.runs(Phase::Clippy) {
            phase(
                &mut phases,
                "clippy",
                devenv::cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]),
            )?;
        }

        let venv_started = Instant::now();
        let venv = venv::ensure().context("failed to prepare the Python venv (moto) the AWS tests need")?;
        phases.push(("venv", venv_started.elapsed()));

        // The infrastructure: templates match the code, then the offline linters. The rules'
        // own tests need cfn-guard, so it is installed (once) whenever tests run.
        let templates_started = Instant::now();
        let cfn_guard = lint::cfn_guard().context("failed to install cfn-guard")?;
        if self.runs(Phase::Templates) {
            lint::templates(&venv, &cfn_guard)?;
        }
        phases.push(("templates", templates_started.elapsed()));

        // One dev-profile build for the tests and for what the function and image tests run:
        // the functions and the API as this machine's binaries, packaged as a stage packages
        // them. (The release cross-build for Lambda, `cargo xtask build-functions`, is the AWS
        // stages'; building it here too would compile every dependency a second time.)
        if self.runs(Phase::Artifacts) {
            let build_started = Instant::now();
            functions::build_host().context("failed to build the workspace")?;
            phases.push(("build", build_started.elapsed()));
            let artifacts_started = Instant::now();
            functions::package_host().context("failed to package the Lambda functions the tests run")?;
            image::build_host().context("failed to build the API image the tests unpack")?;
            phases.push(("artifacts", artifacts_started.elapsed()));
        } else {
            println!("artifacts not rebuilt: the function and image tests use those already packaged, if any");
        }
        let image_dir = image::host_image_dir();

        // The report's browser test: skipped, with the reason, only where Chromium cannot be had.
        let browser_started = Instant::now();
        let browser = browser::ensure();
        if let Err(reason) = &browser {
            println!("warning: the report's browser test will be skipped: {reason}");
        }
        phases.push(("browser", browser_started.elapsed()));

        let database_started = Instant::now();
        let postgres = pg::find_or_start("hiring_test").context("failed to find PostgreSQL")?;
        println!("PostgreSQL: {} ({})", postgres.display_url(), postgres.source());
        phases.push(("postgres", database_started.elapsed()));
        // Ctrl-C reaches the whole foreground process group, so the test runner stops on its
        // own; this process then sees it fail and stops the cluster on its way out, instead of
        // dying first and leaving the cluster running.
        let _interrupts = match postgres.source() {
            Source::Private { started: true, .. } => Some(DeferredInterrupts::install()?),
            _ => None,
        };

        let nextest =
            devenv::cargo().args(["nextest", "--version"]).output().is_ok_and(|output| output.status.success());
        if self.runs(Phase::Tests) {
            let mut tests = devenv::cargo();
            if nextest {
                tests.args(["nextest", "run", "--no-fail-fast"]);
            } else {
                println!("cargo-nextest is not installed; using cargo test");
                tests.args(["test", "--no-fail-fast"]);
            }
            // `-- -p hiring …` builds and runs one package's tests only (the fast level);
            // otherwise the whole workspace.
            let names_packages = self.args.iter().any(|arg| {
                let arg = arg.to_string_lossy();
                arg == "-p" || arg.starts_with("--package") || (arg.starts_with("-p") && arg.len() > 2)
            });
            if !names_packages {
                tests.arg("--workspace");
            }
            tests
                .args(&self.args)
                .env("DATABASE_URL", postgres.url())
                .env("HIRING_PYTHON", venv.python())
                .env("HIRING_MOTO_SERVER", venv.bin("moto_server"))
                .env("HIRING_LAMBDA_DIR", functions::host_lambda_dir())
                .env("HIRING_CARGO_LAMBDA", venv.bin("cargo-lambda"))
                .env("HIRING_CFN_GUARD", &cfn_guard)
                .env("HIRING_IMAGE_DIR", &image_dir)
                .env("HIRING_SCHEMATHESIS", venv.bin("st"));
            match &browser {
                Ok(chromium) => tests.env("HIRING_CHROMIUM", chromium),
                Err(reason) => tests.env("HIRING_CHROMIUM_SKIP", reason),
            };
            phase(&mut phases, "tests", &mut tests)?;
        }

        // nextest does not run doc tests; `cargo test` did, with the others.
        if nextest && self.runs(Phase::Doc) {
            let mut doc = devenv::cargo();
            doc.args(["test", "--workspace", "--doc"]).env("DATABASE_URL", postgres.url());
            phase(&mut phases, "doc tests", &mut doc)?;
        }

        drop(postgres);
        if self.runs(Phase::TestLocal) {
            let started = Instant::now();
            println!("\n==> test-local");
            let code = if self.runs(Phase::Tests) {
                // The ops binary the test build just made (`ops` has tests, so cargo built its
                // binary with the workspace's features): no second build of the AWS SDK.
                let ops = devenv::target_dir().join("debug").join("ops");
                let status = Command::new(&ops)
                    .args(["test-local", "--emulator", "moto"])
                    .status()
                    .with_context(|| format!("failed to run {}", ops.display()))?;
                status.success()
            } else {
                crate::ops("test-local", &["--emulator".into(), "moto".into()])? == std::process::ExitCode::SUCCESS
            };
            if !code {
                bail!("test-local failed; see its output above");
            }
            phases.push(("test-local", started.elapsed()));
        }
        println!();
        for (name, duration) in &phases {
            println!("  {name:<10} {}", seconds(*duration));
        }
        println!("  {:<10} {}", "total", seconds(started.elapsed()));
        println!("all checks passed");
        Ok(())
    }
}

/// Runs one phase with its output on the terminal, and records how long it took.
fn phase(phases: &mut Vec<(&'static str, Duration)>, name: &'static str, command: &mut Command) -> anyhow::Result<()> {
    println!("\n==> {name}: {}", describe(command));
    let started = Instant::now();
    let status = command.status().with_context(|| format!("failed to run {name}"))?;
    let took = started.elapsed();
    println!("==> {name}: {} in {}", if status.success() { "ok" } else { "FAILED" }, seconds(took));
    phases.push((name, took));
    if !status.success() {
        bail!("{name} failed ({status}); see its output above");
    }
    Ok(())
}

fn describe(command: &Command) -> String {
    let args: Vec<_> = command.get_args().map(|arg| arg.to_string_lossy()).collect();
    format!("cargo {}", args.join(" "))
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

/// While alive, SIGINT no longer kills this process (tokio keeps the handler installed).
struct DeferredInterrupts {
    _runtime: tokio::runtime::Runtime,
    _signal: tokio::signal::unix::Signal,
}

impl DeferredInterrupts {
    fn install() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to build a tokio runtime")?;
        let signal = {
            let _context = runtime.enter();
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .context("failed to install a SIGINT handler")?
        };
        Ok(DeferredInterrupts { _runtime: runtime, _signal: signal })
    }
}
