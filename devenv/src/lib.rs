//! The development environment that `cargo xtask`, `ops` and the tests share: the services a
//! developer's machine runs for them, found or started on demand.
//!
//! - [`pg`]: PostgreSQL, found (`DATABASE_URL`, a server on 127.0.0.1:5432) or started as a
//!   private cluster, and clusters a test may crash and restart;
//! - [`moto`]: the AWS emulator, one private server per fixture;
//! - [`lambda`]: cargo-lambda's Runtime API emulator running the built function binaries;
//! - [`server`]: any local HTTP server on a free port, ready when it answers;
//! - [`venv`]: the Python venv under the target directory (moto, cfn-lint, cargo-lambda, Zig,
//!   schemathesis) at pinned versions;
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
pub mod server;
pub mod venv;

/// The workspace root: the parent of this crate's manifest directory.
pub fn project_root() -> PathBuf {
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
/// toolchain, started in the workspace root.
pub fn cargo() -> std::process::Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.current_dir(project_root());
    command
}
