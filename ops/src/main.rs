//! `ops`: the AWS commands. Run them as `cargo xtask <command>`; see the library's docs.

fn main() -> anyhow::Result<()> {
    ops::cli::run()
}
