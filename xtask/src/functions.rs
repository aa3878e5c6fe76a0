//! `cargo xtask build-functions [--arch x86_64|arm64]`: builds the Lambda functions
//! ([`FUNCTIONS`]) in release mode into the zips Lambda's `provided.al2023` runtime takes,
//! `<target>/lambda/<name>/bootstrap.zip` (arm64: `<target>/lambda-arm64/...`), with the
//! unzipped `bootstrap` beside each for tests and inspection.
//!
//! The build is `cargo lambda build` from the project's venv (see `venv`): it cross-links with
//! Zig against glibc [`GLIBC`], the version of Amazon Linux 2023, so a binary runs there even
//! though this machine's glibc is newer. Afterwards every binary is checked to need no glibc
//! symbol version above it. [`build`] is the entry point for other commands (`test`, deploy).
//!
//! Choices, and why:
//! - `--disable-optimizations`: cargo-lambda otherwise overrides the release profile with
//!   thin LTO, one codegen unit and `panic = "abort"`. The first two cost minutes of build time
//!   on a 2-core machine for a little size; the third would turn a panicking handler into a
//!   crashed runtime (`Runtime.ExitError`) instead of the error report lambda_runtime sends.
//!   The workspace's `[profile.lambda]` applies as it is: the release profile without line
//!   tables, symbols kept (`strip = "debuginfo"`), which takes the zips from 18 MB to about 5.
//! - `--skip-target-check`: cargo-lambda would run `rustup target add` on its own (network,
//!   and a changed toolchain); a missing target is reported here instead, with the command.
//! - Zig's caches live under `<target>/zig/`, so a warm target directory means a warm build.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use sha2::{Digest, Sha256};

use devenv::venv;

/// The cargo profile of the functions (root `Cargo.toml`).
const PROFILE: &str = "lambda";

/// The glibc of Lambda's `provided.al2023` runtime (Amazon Linux 2023): binaries may need no
/// newer symbol version.
pub const GLIBC: (u32, u32) = (2, 34);

/// A Lambda function of the workspace: its package and its binary, which is also the
/// function's name in `<target>/lambda/<name>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    /// The cargo package, e.g. `hiring-fn-validate`.
    pub package: &'static str,
    /// The binary target, e.g. `validate`.
    pub name: &'static str,
}

/// Every Lambda function of the workspace. A new function crate goes here too.
pub const FUNCTIONS: &[Function] = &[
    Function { package: "hiring-fn-validate", name: "validate" },
    Function { package: "hiring-fn-process", name: "process" },
    Function { package: "hiring-fn-backup", name: "backup" },
];

/// A Lambda instruction set architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    #[value(name = "x86_64")]
    X86_64,
    #[value(name = "arm64")]
    Arm64,
}

impl Arch {
    /// Lambda's name for it (`Architectures` of a function): `x86_64` or `arm64`.
    pub fn lambda_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The Rust target triple, whose standard library rustup must have installed.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// The OCI and Debian name of the architecture: `amd64` or `arm64`.
    pub fn oci_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The Debian architecture, as `apt-get download <package>:<arch>` takes it.
    pub fn debian_name(self) -> &'static str {
        self.oci_name()
    }

    /// The target as cargo-zigbuild takes it: the triple with the glibc version to link against.
    fn zig_target(self) -> String {
        format!("{}.{}.{}", self.rust_target(), GLIBC.0, GLIBC.1)
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.lambda_name())
    }
}

/// One built function.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub function: Function,
    pub arch: Arch,
    /// `<lambda dir>/<name>/bootstrap.zip`, what Lambda is given.
    pub zip: PathBuf,
    /// `<lambda dir>/<name>/bootstrap`, the same binary unzipped.
    pub bootstrap: PathBuf,
    /// The zip's size in bytes.
    pub zip_size: u64,
    /// The binary's size in bytes.
    pub bootstrap_size: u64,
    /// The zip's SHA-256, lowercase hex.
    pub sha256: String,
}

/// Where [`build`] puts the functions of an architecture: `<target>/lambda` for x86_64 (the
/// default), `<target>/lambda-arm64` for arm64.
pub fn lambda_dir(arch: Arch) -> PathBuf {
    match arch {
        Arch::X86_64 => devenv::target_dir().join("lambda"),
        Arch::Arm64 => devenv::target_dir().join("lambda-arm64"),
    }
}

/// `cargo xtask build-functions`.
#[derive(clap::Args)]
pub struct BuildFunctions {
    /// The instruction set to build for. Builds are always release builds.
    #[arg(long, value_enum, default_value_t = Arch::X86_64)]
    arch: Arch,
}

impl BuildFunctions {
    pub fn run(self) -> anyhow::Result<()> {
        build(self.arch)?;
        Ok(())
    }
}

/// Builds every function of [`FUNCTIONS`] for `arch` in release mode and returns the
/// artifacts, after printing their paths, sizes and hashes. Warm, it takes a few seconds.
pub fn build(arch: Arch) -> anyhow::Result<Vec<Artifact>> {
    let started = Instant::now();
    let lambda_dir = lambda_dir(arch);
    println!("==> build-functions: {} for {arch} (glibc {}.{})", names(), GLIBC.0, GLIBC.1);
    build_all(arch)?;

    let target_dir = devenv::target_dir();
    let binaries = target_dir.join(arch.rust_target()).join(PROFILE);
    let mut artifacts = Vec::with_capacity(FUNCTIONS.len());
    for function in FUNCTIONS {
        artifacts.push(collect(*function, arch, &binaries, &lambda_dir)?);
    }

    for artifact in &artifacts {
        println!(
            "  {:<10} {:<6}  {}  {:>9}  sha256 {}",
            artifact.function.name,
            artifact.arch,
            artifact.zip.display(),
            mebibytes(artifact.zip_size),
            artifact.sha256
        );
        println!("  {:<10} {:<6}  {}  {:>9}", "", "", artifact.bootstrap.display(), mebibytes(artifact.bootstrap_size));
    }
    println!(
        "==> build-functions: {} functions for {arch} in {:.1}s",
        artifacts.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(artifacts)
}

/// The dev profile's output directory for this machine, where [`build_host`] puts binaries.
pub fn host_binaries() -> PathBuf {
    devenv::target_dir().join("debug")
}

/// Where [`package_host`] puts the functions the dev profile built for this machine.
pub fn host_lambda_dir() -> PathBuf {
    devenv::target_dir().join("lambda-host")
}

/// Builds every binary and test of the workspace in the dev profile, the one build that
/// `cargo xtask test` makes: the tests, and the functions and the API that the host artifacts
/// package. `--tests` makes the features those of the test build (dev-dependencies on), so a
/// later `cargo nextest run --workspace` or `cargo test --workspace` finds it all built.
pub fn build_host() -> anyhow::Result<()> {
    let started = Instant::now();
    let status = devenv::cargo()
        .args(["build", "--workspace", "--bins", "--tests"])
        .status()
        .context("failed to run cargo build")?;
    if !status.success() {
        bail!("`cargo build --workspace --bins --tests` failed ({status}); its errors are above");
    }
    println!("==> build: the workspace's binaries and tests (dev profile) in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Packages the functions that [`build_host`] built like the release ones:
/// `<target>/lambda-host/<name>/bootstrap` and `bootstrap.zip`. They are this machine's
/// binaries (its glibc, the dev profile): what the tests and the emulator stage run, on this
/// machine, never on Lambda. The release cross-build ([`build`]) is for the AWS stages; both
/// come from the same code.
pub fn package_host() -> anyhow::Result<Vec<Artifact>> {
    let binaries = host_binaries();
    let mut artifacts = Vec::with_capacity(FUNCTIONS.len());
    for function in FUNCTIONS {
        let built = binaries.join(function.name);
        let binary = std::fs::read(&built).with_context(|| {
            format!("failed to read {} (`cargo build --workspace --bins --tests` builds it)", built.display())
        })?;
        let directory = host_lambda_dir().join(function.name);
        std::fs::create_dir_all(&directory).with_context(|| format!("failed to create {}", directory.display()))?;
        let bootstrap = directory.join("bootstrap");
        let zip = directory.join("bootstrap.zip");
        write_executable(&bootstrap, &binary)?;
        write_zip(&zip, &binary)?;
        artifacts.push(Artifact {
            function: *function,
            arch: Arch::X86_64,
            zip_size: file_size(&zip)?,
            bootstrap_size: binary.len() as u64,
            sha256: sha256_file(&zip)?,
            zip,
            bootstrap,
        });
    }
    println!("==> package: {} (dev profile, this machine) in {}", names(), host_lambda_dir().display());
    Ok(artifacts)
}

/// Writes an executable file (mode 0755), replacing any earlier one.
fn write_executable(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, bytes).with_context(|| format!("failed to write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("failed to make {} executable", path.display()))
}

/// A zip holding one executable entry, `bootstrap`, as Lambda's custom runtimes take it; the
/// entry's time is zip's epoch, so the same binary gives the same zip (and sha256).
fn write_zip(path: &Path, binary: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let file = File::create(path).with_context(|| format!("failed to create {}", path.display()))?;
    let mut writer = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o755)
        .large_file(binary.len() > u32::MAX as usize);
    let written: zip::result::ZipResult<()> = (|| {
        writer.start_file("bootstrap", options)?;
        writer.write_all(binary)?;
        writer.finish()?;
        Ok(())
    })();
    written.with_context(|| format!("failed to write {}", path.display()))
}

/// Builds the API server, `hiring-api`, for `arch` the way the functions are built (release,
/// Zig, glibc [`GLIBC`]), for the container image; returns the binary's path.
pub fn build_api(arch: Arch) -> anyhow::Result<PathBuf> {
    println!("==> build-image: hiring-api for {arch} (glibc {}.{})", GLIBC.0, GLIBC.1);
    build_all(arch)?;
    let binary = api_binary(arch);
    ensure!(binary.is_file(), "`cargo lambda build` succeeded but wrote no {}", binary.display());
    Ok(binary)
}

/// Where the API binary is built (cargo-lambda also zips it, unused, beside the functions).
pub fn api_binary(arch: Arch) -> PathBuf {
    devenv::target_dir().join(arch.rust_target()).join(PROFILE).join("hiring-api")
}

/// One `cargo lambda build` of the functions and the API together: built separately, the two
/// would unify their dependencies' features differently and rebuild the shared ones (ring,
/// rustls, sqlx, …) each time the other was built.
fn build_all(arch: Arch) -> anyhow::Result<()> {
    let mut command = cargo_lambda(arch)?;
    command.args(["--output-format", "zip"]).arg("--lambda-dir").arg(lambda_dir(arch));
    for function in FUNCTIONS {
        command.args(["--package", function.package, "--bin", function.name]);
    }
    command.args(["--package", "api", "--bin", "hiring-api"]);
    run_cargo_lambda(&mut command)
}

/// `cargo lambda build` for `arch` from the venv, with the shared options; the caller adds
/// the packages and the output format.
fn cargo_lambda(arch: Arch) -> anyhow::Result<Command> {
    check_target_installed(arch)?;
    let venv = venv::ensure().context("failed to prepare the Python venv that holds cargo-lambda and Zig")?;
    let target_dir = devenv::target_dir();
    let zig_cache = target_dir.join("zig");
    let mut command = Command::new(venv.bin("cargo-lambda"));
    devenv::without_package_env(&mut command);
    command
        .current_dir(devenv::project_root())
        .args(["lambda", "build", "--profile", PROFILE, "--disable-optimizations", "--skip-target-check"])
        .args(["--target", &arch.zig_target()])
        .env("PATH", venv.path_env()?)
        .env("CARGO_ZIGBUILD_PYTHON_PATH", venv.python())
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_ZIGBUILD_CACHE_DIR", zig_cache.join("cargo-zigbuild"))
        .env("ZIG_GLOBAL_CACHE_DIR", zig_cache.join("global"))
        .env("ZIG_LOCAL_CACHE_DIR", zig_cache.join("local"));
    Ok(command)
}

fn run_cargo_lambda(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("failed to run {}", command.get_program().display()))?;
    if !status.success() {
        bail!(
            "`cargo lambda build` failed ({status}); see its output above. A compile error is fixed in the \
             code; a Zig or linker error may need `cargo xtask venv` (reinstalls cargo-lambda and Zig)"
        );
    }
    Ok(())
}

/// Copies the freshly linked binary next to the zip cargo-lambda wrote, checks its glibc
/// needs, and hashes the zip.
fn collect(function: Function, arch: Arch, binaries: &Path, lambda_dir: &Path) -> anyhow::Result<Artifact> {
    let built = binaries.join(function.name);
    let directory = lambda_dir.join(function.name);
    let zip = directory.join("bootstrap.zip");
    let bootstrap = directory.join("bootstrap");
    ensure!(
        zip.is_file(),
        "`cargo lambda build` succeeded but wrote no {}; check that package {} has a binary named `{}`",
        zip.display(),
        function.package,
        function.name
    );
    std::fs::copy(&built, &bootstrap)
        .with_context(|| format!("failed to copy {} to {}", built.display(), bootstrap.display()))?;

    let binary = std::fs::read(&bootstrap).with_context(|| format!("failed to read {}", bootstrap.display()))?;
    if let Some(newest) = newest_glibc(&binary)
        && newest > GLIBC
    {
        bail!(
            "{} needs glibc {}.{}, newer than the {}.{} of Lambda's provided.al2023 runtime; it was not linked \
             through Zig with the `{}` target. Check that `cargo lambda build` used Zig (it prints the zig \
             command with -vv)",
            bootstrap.display(),
            newest.0,
            newest.1,
            GLIBC.0,
            GLIBC.1,
            arch.zig_target()
        );
    }

    Ok(Artifact {
        function,
        arch,
        zip_size: file_size(&zip)?,
        bootstrap_size: binary.len() as u64,
        sha256: sha256_file(&zip)?,
        zip,
        bootstrap,
    })
}

/// Fails, naming the `rustup` command, when the standard library for `arch` is not installed:
/// cargo-lambda would otherwise try to install it itself.
fn check_target_installed(arch: Arch) -> anyhow::Result<()> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = arch.rust_target();
    let output = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", target])
        .output()
        .context("failed to run `rustc --print target-libdir`; is Rust installed?")?;
    let libdir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let has_core = std::fs::read_dir(&libdir).is_ok_and(|entries| {
        entries.flatten().any(|entry| entry.file_name().to_string_lossy().starts_with("libcore-"))
    });
    if !output.status.success() || !has_core {
        bail!(
            "the Rust standard library for {target} ({arch} Lambda functions) is not installed; run \
             `rustup target add {target}`, then this again"
        );
    }
    Ok(())
}

/// The newest `GLIBC_x.y` symbol version named in an ELF binary, if any. The version names a
/// dynamically linked binary needs are strings of its `.dynstr` section; scanning the whole
/// file for them finds those (what `objdump -T` lists) without parsing ELF.
fn newest_glibc(binary: &[u8]) -> Option<(u32, u32)> {
    const PREFIX: &[u8] = b"GLIBC_";
    let mut newest = None;
    for start in memchr::memmem::find_iter(binary, PREFIX) {
        let rest = &binary[start + PREFIX.len()..];
        let text: Vec<u8> = rest.iter().copied().take_while(|byte| byte.is_ascii_digit() || *byte == b'.').collect();
        let mut parts = std::str::from_utf8(&text).unwrap_or_default().split('.');
        let (Some(Ok(major)), Some(Ok(minor))) = (parts.next().map(str::parse), parts.next().map(str::parse)) else {
            continue;
        };
        newest = newest.max(Some((major, minor)));
    }
    newest
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file = File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    loop {
        let read = file.read(&mut buffer).with_context(|| format!("failed to read {}", path.display()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect())
}

fn file_size(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(path).with_context(|| format!("failed to read the size of {}", path.display()))?.len())
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn names() -> String {
    FUNCTIONS.iter().map(|function| function.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_glibc_takes_the_highest_version() {
        let binary = b"\0libc.so.6\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_2.17\0GLIBC_PRIVATE\0";
        assert_eq!(newest_glibc(binary), Some((2, 34)));
        assert_eq!(newest_glibc(b"no versions here"), None);
    }

    #[test]
    fn zig_target_carries_the_glibc_version() {
        assert_eq!(Arch::X86_64.zig_target(), "x86_64-unknown-linux-gnu.2.34");
        assert_eq!(Arch::Arm64.zig_target(), "aarch64-unknown-linux-gnu.2.34");
    }
}
