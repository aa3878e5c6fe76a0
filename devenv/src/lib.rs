//! The development environment that `cargo xtask`, `ops` and the tests share: the services a
//! developer's machine runs for them, found or started on demand.
//!
//! - [`pg`]: PostgreSQL, found (`DATABASE_URL`, a server on 127.0.0.1:5432) or started as a
//!   private cluster, and clusters a test may crash and restart;
//! - [`moto`]: the AWS emulator, one private server per fixture;
//! - [`lambda`]: cargo-lambda's Runtime API emulator running the built function binaries;
//! - [`server`]: any local HTTP server on a free port, ready when it answers;
//! - [`venv`]: the Python venv under the target directory (moto, cfn-lint, cargo-lambda, Zig,
//!   schemathesis) at pinned versions, and the lint venv (checkov, parliament);
//! - [`podman`]: the container runtime the API's image runs in, as ECS runs it;
//! - the workspace's paths and the cargo that runs it.
//!
//! It is light on purpose (no AWS SDK service crate: the `sdk` feature adds only `aws-config`
//! for [`moto::Moto::sdk_config`]), so `cargo xtask dev` compiles little before it serves.

use std::path::{Path, PathBuf};

#[cfg(feature = "sdk")]
pub mod aws;
pub mod lambda;
pub mod moto;
pub mod pg;
pub mod podman;
pub mod server;
pub mod venv;

/// The workspace root: the checkout this process runs in — the nearest folder, from the
/// current directory up, holding this workspace's `devenv/Cargo.toml` (cargo starts commands
/// and tests in a folder of the checkout) — else the one this crate was compiled in. A binary
/// that cargo reused from another checkout sharing the target directory would otherwise work
/// on that checkout (docs/development.md, "Two checkouts, one target directory").
pub fn project_root() -> PathBuf {
    if let Ok(mut dir) = std::env::current_dir() {
        loop {
            if dir.join("devenv").join("Cargo.toml").is_file() && dir.join("Cargo.toml").is_file() {
                return dir;
            }
            if !dir.pop() {
                break;
            }
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("devenv lives one level below the workspace root")
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

/// The cargo that runs this program (set by `cargo run`), so nested builds use the same
/// toolchain, started in the workspace root, without the variables `cargo run` gave this
/// program (see [`without_package_env`]).
pub fn cargo() -> std::process::Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.current_dir(project_root());
    without_package_env(&mut command);
    command
}

/// Removes from `command`'s environment the variables cargo sets for the package it runs
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, …). A build started from `cargo xtask` would
/// otherwise see them: ring's build script reruns when `CARGO_MANIFEST_DIR` changes, so every
/// alternation between `cargo xtask` and a build it starts rebuilt ring, rustls and all that
/// depends on them (sqlx, reqwest, the AWS SDK).
pub fn without_package_env(command: &mut std::process::Command) {
    const SET_BY_CARGO_RUN: [&str; 9] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("CARGO_PKG_") || SET_BY_CARGO_RUN.contains(&text.as_ref()) {
            command.env_remove(&name);
        }
    }
}

/// `program` as found on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}

/// Whether this process runs as root (and may install Debian packages).
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// `apt-get install` of Debian `packages` (without their recommends; `--no-upgrade`: an
/// installed package is left as it is), with `apt-get update` first only when the package
/// lists do not know them yet. Whether they installed; apt-get's output goes to the terminal.
pub fn apt_install(packages: &[&str]) -> bool {
    use std::process::Command;
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", "--no-upgrade"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|status| status.success())
    };
    let update = || Command::new("apt-get").args(["update", "-q"]).status().is_ok_and(|status| status.success());
    install() || (update() && install())
}
