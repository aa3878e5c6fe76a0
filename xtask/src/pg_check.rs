//! `cargo xtask pg-check` (hidden): finds or starts PostgreSQL exactly as `dev` and `test` do,
//! proves it answers, and stops it again. `HIRING_PG=private cargo xtask pg-check` exercises
//! the private cluster on a machine that also runs a server.

use anyhow::Context;

use crate::pg::{self, Source};

#[derive(clap::Args)]
pub struct PgCheck {
    /// The database to find or create.
    #[arg(long, default_value = "hiring_pg_check")]
    database: String,
}

impl PgCheck {
    pub fn run(self) -> anyhow::Result<()> {
        let postgres = pg::find_or_start(&self.database).context("failed to find PostgreSQL")?;
        println!("found:     {}", postgres.source());
        println!("url:       {}", postgres.display_url());
        println!("admin url: {}", postgres.display_admin_url());
        if !matches!(postgres.source(), Source::DatabaseUrl) {
            let version = pg::server_version(&postgres).context("failed to query the server")?;
            println!("version:   {version}");
        }
        Ok(())
    }
}
