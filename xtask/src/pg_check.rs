//! `cargo xtask pg-check` (hidden): finds or starts PostgreSQL exactly as `dev` and `test` do,
//! proves it answers, and stops it again. `HIRING_PG=private cargo xtask pg-check` exercises
//! the private cluster on a machine that also runs a server.

use anyhow::Context;

use devenv::pg::{self, Source};

#[derive(clap::Args)]
pub struct PgCheck {
    /// The database to find or create.
    #[arg(long, default_value = "hiring_dev")]
    database: String,
}

impl PgCheck {
    pub fn run(self) -> anyhow::Result<()> {
        let postgres = pg::find_or_start(&self.database).context("failed to find PostgreSQL")?;
        println!("url:   {}", postgres.display_url());
        println!("found: {}", postgres.source());
        for url in [postgres.url(), postgres.admin_url()] {
            match pg::describe(&url) {
                Ok(description) => println!("ok:    {description}"),
                // A password-protected DATABASE_URL is fine for the tests; the check only logs in without one.
                Err(error) if matches!(postgres.source(), Source::DatabaseUrl) => {
                    println!("not checked: {error:#}")
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}
