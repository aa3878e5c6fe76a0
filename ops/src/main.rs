//! `ops`: the AWS commands. Run them as `cargo xtask <command>`; see the library's docs.

use std::process::ExitCode;

/// A failure is one line on stderr ("error: what went wrong: why"), whatever `RUST_BACKTRACE`
/// says: anyhow's `Debug` form, which `fn main() -> Result` prints, adds "Caused by:" lists and
/// backtraces meant for developers.
fn main() -> ExitCode {
    match ops::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
