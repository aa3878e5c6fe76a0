//! `cargo xtask`: the project's automation, written in Rust so it runs wherever cargo runs.
//!
//! ```text
//! cargo xtask dev        # PostgreSQL + the API on 127.0.0.1:8080, sample data loaded
//! cargo xtask test       # fmt, clippy, then every test against a real PostgreSQL
//! cargo xtask gen-data --rows 1000000 --bad 0.01   # deterministic synthetic CSV files
//! cargo xtask bench      # ingest, batch and metric figures against the targets
//! cargo xtask venv       # the Python venv under target/ (moto, fastavro, cargo-lambda, Zig), created once
//! cargo xtask build-functions [--arch arm64]   # the Lambda zips, target/lambda/<name>/bootstrap.zip
//! cargo xtask synth [--stage S] [--check] [--diagram]   # CloudFormation under templates/
//! cargo xtask lint       # the templates: synth --check, cfn-lint, cfn-guard with stack/rules/
//! ```
//!
//! Each subcommand lives in its own module with a `run(self)` entry point; `pg` is the shared
//! PostgreSQL discovery (an existing server, or a private throwaway cluster under `target/`).

mod artifacts;
mod aws;
mod bench;
mod browser;
mod cfn;
mod deploy;
mod destroy;
mod dev;
mod diff;
mod functions;
mod gen_data;
mod image;
mod lint;
use hiring_tests::pg;
mod pg_check;
mod publish;
mod status;
mod synth;
mod test;
mod test_local;
mod venv;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "Project automation for the hiring workspace")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole system locally: PostgreSQL, the API, the sample data.
    Dev(dev::Dev),
    /// Check formatting and lints, then run every test against a real PostgreSQL.
    Test(test::Test),
    /// Write deterministic synthetic CSV files (optionally with broken rows) and a manifest.
    GenData(gen_data::GenData),
    /// Measure ingest, batch and metric performance against the targets; writes target/bench/report.json.
    Bench(bench::Bench),
    /// Find or start PostgreSQL the way `dev` and `test` do, check it answers, and stop it.
    #[command(hide = true)]
    PgCheck(pg_check::PgCheck),
    /// Create or update the Python venv under target/ (moto, fastavro, cargo-lambda) and print its paths.
    Venv(venv::VenvCommand),
    /// Build the Lambda functions (release, glibc 2.34) into target/lambda/<name>/bootstrap.zip.
    BuildFunctions(functions::BuildFunctions),
    /// Build the API's container image (OCI layout, no Docker) into target/image/<arch>/.
    BuildImage(image::BuildImage),
    /// Build what a stage deploys: the Lambda zips and the API image, for its architecture.
    Build(artifacts::Build),
    /// Write the CloudFormation templates of the typed topology under templates/ (--check: fail on drift).
    Synth(synth::Synth),
    /// Check the committed templates offline: they match the code, cfn-lint and cfn-guard pass.
    Lint(lint::Lint),
    /// Build the stage's artifacts and upload them (bootstrap stack, S3 zips, ECR image); writes the deploy parameters.
    Publish(publish::Publish),
    /// Deploy the stage stack through a change set (diff, approval, live events, outputs).
    Deploy(deploy::Deploy),
    /// What deploying would change (--offline: against the deployed template).
    Diff(diff::Diff),
    /// The stage stack's state and outputs; exits 1 unless it is healthy.
    Status(status::Status),
    /// The local stage end to end on an AWS emulator: build, publish, deploy, API, pipeline, checks, status.
    TestLocal(test_local::TestLocal),
    /// Delete the stage stack after listing what outlives it (prod needs --force-prod).
    Destroy(destroy::Destroy),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Dev(command) => command.run(),
        Command::Test(command) => command.run(),
        Command::GenData(command) => command.run(),
        Command::Bench(command) => command.run(),
        Command::PgCheck(command) => command.run(),
        Command::Venv(command) => command.run(),
        Command::BuildFunctions(command) => command.run(),
        Command::BuildImage(command) => command.run(),
        Command::Build(command) => command.run(),
        Command::Synth(command) => command.run(),
        Command::Lint(command) => command.run(),
        Command::Publish(command) => command.run(),
        Command::Deploy(command) => command.run(),
        Command::Diff(command) => command.run(),
        Command::Status(command) => command.run(),
        Command::TestLocal(command) => command.run(),
        Command::Destroy(command) => command.run(),
    }
}

/// Asks `question` on the terminal and returns the answer, trimmed; `None` when there is no
/// terminal to ask (CI, a pipe), where the caller refuses and says which flag to pass.
pub fn ask(question: &str) -> anyhow::Result<Option<String>> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    print!("{question}");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(Some(answer.trim().to_owned()))
}

/// The workspace root: the parent of this crate's manifest directory.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the current directory, as cargo
/// reads it) or `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => std::path::absolute(&dir).unwrap_or_else(|_| PathBuf::from(dir)),
        _ => project_root().join("target"),
    }
}

/// The cargo that runs this xtask (set by `cargo run`), so nested builds use the same toolchain.
pub fn cargo() -> std::process::Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.current_dir(project_root());
    command
}
