//! `cargo xtask`: see the library's docs. The AWS commands are handed to the `ops` binary.

use std::process::ExitCode;

/// A failure is one line on stderr ("error: what went wrong: why"), as the ops commands print
/// theirs, whatever `RUST_BACKTRACE` says.
fn main() -> ExitCode {
    match xtask::cli::run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
