//! The errors of the hiring domain.

/// What can go wrong in the hiring domain, outside of rejected rows (which are data, not errors).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be reached or a statement failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The source file could not be read.
    #[error("could not read the source: {0}")]
    Io(#[from] std::io::Error),
    /// The schema migrations could not be applied.
    #[error("could not apply the database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A batch is empty or too large; nothing was inserted.
    #[error("a batch holds 1 to {max} rows; this one holds {got}", max = crate::batch::MAX_BATCH_ROWS)]
    BatchSize {
        /// The number of rows received.
        got: usize,
    },
    /// An unknown table name.
    #[error("unknown table `{0}`: expected one of departments, jobs, hired_employees")]
    UnknownTable(String),
    /// A storage zone could not be opened, read or written.
    #[error("storage error: {0}")]
    Zone(String),
    /// An object does not exist in its zone.
    #[error("no such object: {0}")]
    ObjectNotFound(String),
    /// An object of the raw zone whose key names no table.
    #[error(
        "raw object `{0}` names no table: put files under departments/, jobs/ or hired_employees/ \
         (or name the file after its table, e.g. jobs.csv)"
    )]
    UnexpectedKey(String),
    /// The object was replaced after the event that named it; its new version has its own event.
    #[error(
        "object `{key}` is no longer at version {etag}: it was replaced, and its new version is ingested on its own"
    )]
    Superseded {
        /// The object's key.
        key: String,
        /// The version the step was asked for.
        etag: String,
    },
    /// Another worker is running a step of this ingestion now.
    #[error("ingestion {0} is being validated or processed by another worker; retry later")]
    Busy(i64),
    /// The validation found no row to load.
    #[error("ingestion {0} has nothing to load: every row was rejected (see its rejects)")]
    NotLoadable(i64),
    /// The process step was asked to load an object not validated yet.
    #[error("ingestion {0} has not been validated: run the validate step first")]
    NotValidated(i64),
    /// A step's input does not match what was recorded.
    #[error("invalid step input: {0}")]
    InvalidStepInput(String),
    /// A requested ingestion does not exist.
    #[error("ingestion {0} does not exist")]
    IngestionNotFound(i64),
    /// The load was interrupted (the decoder thread panicked or was cancelled).
    #[error("the load was interrupted: {0}")]
    Interrupted(String),
    /// A backup cannot be restored: it is not an Avro file, its schema is not the table's, or a
    /// row breaks a rule (the message names the first). Nothing was changed.
    #[error("invalid backup: {0}")]
    InvalidBackup(String),
    /// Restoring `table` (departments or jobs) would leave stored hires referencing ids the
    /// backup does not have. Nothing was changed.
    #[error(
        "restoring {table} would orphan stored hires: {count} referenced id(s) are not in the backup: {ids}{more}; \
         restore hired_employees without those hires first, or use a backup that has them",
        ids = ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        more = if *count > ids.len() as i64 { format!(" and {} more", *count - ids.len() as i64) } else { String::new() }
    )]
    RestoreConflict {
        /// The table whose restore was refused.
        table: crate::table::Table,
        /// The first missing ids, ascending (at most [`crate::backup::MAX_CONFLICT_IDS`]).
        ids: Vec<i32>,
        /// How many ids are missing in all.
        count: i64,
    },
}

impl Error {
    /// True when retrying the same operation later may succeed (the database was unreachable).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Database(
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed
            )
        ) || matches!(self, Error::Busy(_))
            || matches!(self, Error::Database(sqlx::Error::Database(e)) if e.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "40001" || c == "40P01"))
    }
}

/// The result type of the hiring domain.
pub type Result<T, E = Error> = std::result::Result<T, E>;
