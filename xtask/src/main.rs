//! `cargo xtask`: see the library's docs. The AWS commands are handed to the `ops` binary.

fn main() -> anyhow::Result<std::process::ExitCode> {
    xtask::cli::run()
}
