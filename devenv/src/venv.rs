//! The project's Python virtual environment, `<target>/venv`: the tools the tests and the
//! deploy tooling borrow from PyPI (moto's AWS emulator, fastavro to check Avro backups, DuckDB
//! to read the processed zone's Parquet as Athena would, cargo-lambda and the Zig toolchain it
//! links with), at pinned versions.
//!
//! `ensure()` creates it once with `python3 -m venv` and installs `PACKAGES` with pip. A stamp
//! file records the list installed; while it matches `PACKAGES`, `ensure()` only checks two
//! files and returns. Change the list and the next `ensure()` installs it again.
//!
//! `cargo xtask venv` runs `ensure()` and prints the paths.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use anyhow::{Context, bail};

/// What the venv holds, as pip requirement specifiers. Pin every version: the stamp compares
/// this list as text, so a bumped pin reinstalls.
///
/// `cargo-lambda` builds the Lambda zips (`cargo xtask build-functions`) and emulates the
/// Lambda Runtime API in tests; it links through `ziglang`'s Zig, found as `python3 -m ziglang`
/// with the venv's `bin` first on `PATH` (see [`Venv::path_env`]). The pair was checked
/// together here: cargo-lambda 1.9.2 reads Zig 0.15's `zig env` format.
pub const PACKAGES: &[&str] = &[
    "moto[server]==5.2.5",
    "fastavro==1.13.1",
    "duckdb==1.5.6",
    "cargo-lambda==1.9.2",
    "ziglang==0.15.2",
    "cfn-lint==1.58.0",
    "schemathesis==4.32.5",
];

/// The static checkers of `cargo xtask lint`, in a venv of their own (`<target>/lint-venv`):
/// checkov pins boto3 1.35 and packaging < 24, which would hold moto's botocore two years back
/// and conflict with schemathesis's pytest in one venv. checkov checks the templates against
/// AWS practice; parliament (Duo Labs) lints the IAM policies in them.
pub const LINT_PACKAGES: &[&str] = &["checkov==3.3.30", "parliament==1.6.4"];

/// The file in the venv recording which packages were installed.
const STAMP: &str = "hiring-packages.txt";

/// The Python that creates the venv, found on `PATH`.
const BASE_PYTHON: &str = "python3";

/// A ready venv.
#[derive(Debug, Clone)]
pub struct Venv {
    /// The venv's directory, `<target>/venv`.
    pub dir: PathBuf,
}

impl Venv {
    /// The venv's Python interpreter.
    pub fn python(&self) -> PathBuf {
        self.bin("python")
    }

    /// A program the venv's packages installed, e.g. `moto_server`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    /// `PATH` with the venv's `bin` directory first, for programs that look for the venv's tools
    /// by name: cargo-lambda finds Zig as `python3 -m ziglang`, and only the venv's `python3`
    /// has the `ziglang` package.
    pub fn path_env(&self) -> anyhow::Result<std::ffi::OsString> {
        let inherited = std::env::var_os("PATH").unwrap_or_default();
        let paths = std::iter::once(self.dir.join("bin")).chain(std::env::split_paths(&inherited));
        std::env::join_paths(paths).context("a directory on PATH contains the path separator `:`")
    }

    fn stamp(&self) -> PathBuf {
        self.dir.join(STAMP)
    }
}

/// The venv at `<target>/venv` with `PACKAGES` installed: created and filled on the first call,
/// refilled when `PACKAGES` changed, otherwise returned at once.
pub fn ensure() -> anyhow::Result<Venv> {
    ensure_at("venv", PACKAGES)
}

/// The venv at `<target>/lint-venv` with [`LINT_PACKAGES`], as [`ensure`] makes its own.
pub fn ensure_lint() -> anyhow::Result<Venv> {
    ensure_at("lint-venv", LINT_PACKAGES)
}

fn ensure_at(name: &str, packages: &[&str]) -> anyhow::Result<Venv> {
    let venv = Venv { dir: crate::target_dir().join(name) };
    let wanted: String = packages.iter().map(|package| format!("{package}\n")).collect();
    let has_python = venv.python().is_file();
    if has_python && std::fs::read_to_string(venv.stamp()).is_ok_and(|stamp| stamp == wanted) {
        return Ok(venv);
    }

    let started = Instant::now();
    if !has_python || !runs(Command::new(venv.python()).args(["-c", "import pip"])) {
        create(&venv.dir)?;
    }
    // Written again only after pip succeeds, so an interrupted install is retried.
    let _ = std::fs::remove_file(venv.stamp());
    println!("venv: installing {} into {}", packages.join(" "), venv.dir.display());
    let output = Command::new(venv.python())
        .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
        .args(packages)
        .output()
        .with_context(|| format!("failed to run {} -m pip", venv.python().display()))?;
    if !output.status.success() {
        bail!(
            "pip could not install {} into {} ({}); PyPI must be reachable (or set PIP_INDEX_URL). pip said:\n{}",
            packages.join(" "),
            venv.dir.display(),
            output.status,
            both(&output).trim_end()
        );
    }
    std::fs::write(venv.stamp(), wanted).with_context(|| format!("failed to write {}", venv.stamp().display()))?;
    println!("venv: ready in {:.1}s", started.elapsed().as_secs_f64());
    Ok(venv)
}

/// Creates the venv from scratch with `python3 -m venv`. On Debian the venv module needs the
/// `python3-venv` package (without it venv fails on `ensurepip`); as root with apt-get at hand
/// it is installed, saying so, otherwise the error says what to install.
fn create(dir: &Path) -> anyhow::Result<()> {
    let version = Command::new(BASE_PYTHON).arg("--version").output();
    match version {
        Ok(output) if output.status.success() => {
            println!("venv: creating {} with {}", dir.display(), both(&output).trim());
        }
        _ => bail!(
            "`{BASE_PYTHON}` is not installed or does not run; the tests need it for the AWS emulator \
             (moto). Install it, e.g. `apt-get install python3 python3-venv`"
        ),
    }

    let output = make_venv(dir)?;
    if output.status.success() {
        return Ok(());
    }
    let said = both(&output);
    if !said.contains("ensurepip") {
        bail!("`{BASE_PYTHON} -m venv {}` failed ({}):\n{}", dir.display(), output.status, said.trim_end());
    }
    // Debian's message ends with the package for the running Python (`apt install
    // python3.11-venv`); without one, `python3-venv` is the one.
    let package = said
        .split_whitespace()
        .rev()
        .find(|word| word.starts_with("python3") && word.ends_with("-venv"))
        .unwrap_or("python3-venv")
        .to_owned();
    if !(crate::is_root() && crate::which("apt-get").is_some()) {
        bail!(
            "`{BASE_PYTHON} -m venv` cannot install pip into a venv: on Debian and Ubuntu the venv module \
             lives in a separate package. Install it with `apt-get install {package}` (as root), then \
             run this again. Python said:\n{}",
            said.trim_end()
        );
    }
    println!("venv: {BASE_PYTHON} -m venv needs the Debian package {package}; installing it with apt-get");
    if !crate::apt_install(&[&package]) {
        bail!("`apt-get install {package}` failed (see its output above); install {package}, then run this again");
    }
    let output = make_venv(dir)?;
    if !output.status.success() {
        bail!(
            "`{BASE_PYTHON} -m venv {}` still fails after installing {package} ({}):\n{}",
            dir.display(),
            output.status,
            both(&output).trim_end()
        );
    }
    Ok(())
}

/// `python3 -m venv --clear DIR`; `--clear` empties what a failed attempt left behind.
fn make_venv(dir: &Path) -> anyhow::Result<Output> {
    Command::new(BASE_PYTHON)
        .args(["-m", "venv", "--clear"])
        .arg(dir)
        .output()
        .with_context(|| format!("failed to run `{BASE_PYTHON} -m venv`"))
}

fn runs(command: &mut Command) -> bool {
    command.output().is_ok_and(|output| output.status.success())
}

fn both(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}
