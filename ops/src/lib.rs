//! The operations that call AWS: `build`, `publish`, `diff`, `deploy`, `status`, `destroy` and
//! `test-local`, run as `cargo xtask <command>` (xtask hands them to the `ops` binary, so only
//! these commands compile the AWS SDK).
//!
//! Each command lives in its own module with a `run(self)` entry point. The artifacts they
//! publish are built by `xtask::functions` and `xtask::image`; the templates come from `stack`.

pub mod artifacts;
pub mod aws;
pub mod cfn;
pub mod cli;
pub mod deploy;
pub mod destroy;
pub mod diff;
pub mod emulated_iam;
pub mod logs;
pub mod publish;
pub mod status;
pub mod test_local;
pub mod upload;

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
