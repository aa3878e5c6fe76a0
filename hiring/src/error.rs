//! The errors of the hiring domain.

/// What can go wrong in the hiring domain, outside of rejected rows (which are data, not errors).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be reached or a statement failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The source file could not be read.
    #[error("could not read the source: {0}")]
    Io(std::io::Error),
    /// The file is not CSV the decoder can follow (a stray quote leaves a quoted field open):
    /// the message names the line and what to do. No retry mends it.
    #[error("the file is malformed: {0}")]
    MalformedFile(String),
    /// The schema migrations could not be applied.
    #[error("could not apply the database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A batch is empty or too large; nothing was inserted.
    #[error("a batch holds 1 to {max} rows; this one holds {}", crate::batch::held(*got), max = crate::batch::MAX_BATCH_ROWS)]
    BatchSize {
        /// The number of rows received; reading stops at one past the limit.
        got: usize,
    },
    /// A batch body is not valid JSON; nothing was inserted.
    #[error("the body is not valid JSON: {0}")]
    BatchJson(String),
    /// A batch body is JSON but not an array; nothing was inserted.
    #[error("the body must be a JSON array of 1 to {max} row objects, e.g. [{{\"id\":1,\"department\":\"Sales\"}}]", max = crate::batch::MAX_BATCH_ROWS)]
    BatchNotArray,
    /// An unknown table name.
    #[error("unknown table `{0}`: expected one of departments, jobs, hired_employees")]
    UnknownTable(String),
    /// A storage zone could not be opened (a malformed URL, a directory that cannot be made),
    /// or holds something the pipeline cannot use.
    #[error("storage error: {0}")]
    Zone(String),
    /// A call to a zone's store failed. Transient kinds (see [`Error::is_retryable`]) are
    /// worth retrying later.
    #[error("storage error at {location}: {source}")]
    Store {
        /// The zone's URL and the key, e.g. `s3://bucket/raw/jobs/1.csv`.
        location: String,
        /// What the store answered.
        #[source]
        source: object_store::Error,
    },
    /// The bucket (or directory) a zone names does not exist.
    #[error(
        "the bucket of {location} does not exist: deploy the stage (its stack creates the buckets) or fix the zone's URL"
    )]
    BucketNotFound {
        /// The zone's URL and the key.
        location: String,
    },
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
    /// A hires file waits for a departments or jobs file of the same upload, not finished yet:
    /// its rows are checked against what that file loads.
    #[error(
        "ingestion {id} waits for ingestion {earlier} ({table}, {status}) of the same upload: hires are \
         checked against the departments and jobs it loads; retry once it has finished"
    )]
    Waiting {
        /// The waiting (hires) ingestion.
        id: i64,
        /// The unfinished ingestion it waits for.
        earlier: i64,
        /// That ingestion's table.
        table: String,
        /// Its status.
        status: String,
    },
    /// A file of an upload whose other files the API is still storing: no step loads it until
    /// every file is stored (then it is released) or the upload fails (then it fails too).
    #[error(
        "ingestion {0} belongs to an upload whose other files are still being stored; retry once they are (the \
         upload then releases it, or fails it)"
    )]
    Held(i64),
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
    /// Another version of an announced (presigned) upload's object: its first file was taken,
    /// and this one is not ingested (the client put the same URL twice).
    #[error(
        "object `{key}` is the file of ingestion {ingestion}, announced for one file, which already arrived: this \
         second version is not ingested; to send a file again, announce a new upload with POST /uploads"
    )]
    DuplicateUpload {
        /// The object's key.
        key: String,
        /// The announced ingestion.
        ingestion: i64,
    },
    /// The ingestion failed for good (see `GET /ingestions/{id}`); no step runs on it again.
    #[error("ingestion {id} failed: {reason}")]
    Failed {
        /// The ingestion.
        id: i64,
        /// Why, as recorded.
        reason: String,
    },
    /// A step's process died (only ever injected, by `crate::faults`, to test what a crash
    /// leaves behind).
    #[error("the step's process crashed")]
    Crashed,
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

impl From<std::io::Error> for Error {
    /// The decoder reports a structural error in the file as `InvalidData`: the file is
    /// malformed, not unreadable.
    fn from(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::InvalidData {
            Error::MalformedFile(error.to_string())
        } else {
            Error::Io(error)
        }
    }
}

impl Error {
    /// True when retrying the same operation later may succeed: the database was unreachable
    /// or busy, another worker holds the ingestion, or the store failed in a transient way.
    pub fn is_retryable(&self) -> bool {
        // An authentication failure too: the password rotated, and the caller reads the new one
        // before retrying (the `secrets` crate).
        matches!(self, Error::Store { source, .. } if transient(source))
            || matches!(
                self,
                Error::Database(
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                )
            )
            || matches!(self, Error::Busy(_) | Error::Waiting { .. } | Error::Held(_))
            || self.is_auth_failure()
            || matches!(self, Error::Database(sqlx::Error::Database(e)) if e.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "40001" || c == "40P01"))
    }
}

impl Error {
    /// PostgreSQL refused the credentials (SQLSTATE 28P01 or 28000), typically because the
    /// password rotated since the pool read it.
    pub fn is_auth_failure(&self) -> bool {
        let sqlx = match self {
            Error::Database(e) => e,
            Error::Migrate(sqlx::migrate::MigrateError::Execute(e)) => e,
            _ => return false,
        };
        refused_credentials(sqlx)
    }
}

/// PostgreSQL refused the credentials: SQLSTATE 28P01 (`invalid_password`) or 28000
/// (`invalid_authorization_specification`, e.g. a user that no longer exists).
pub fn refused_credentials(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().is_some_and(|code| code == "28P01" || code == "28000"))
}

/// True for a store failure that a later attempt may not meet: the connection failed, timed out
/// or was cut, or S3 answered 5xx or 429, or an error code AWS documents as retryable
/// (`InternalError`, `ServiceUnavailable`, `SlowDown`, `RequestTimeout`: "Error responses",
/// Amazon S3 API Reference, https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html).
/// object_store has retried these itself (up to 10 times within 3 minutes); when it gives up,
/// the whole step is worth retrying later, e.g. by Step Functions.
///
/// object_store's retry and request error types are private, so their kind is read from their
/// messages ("Server returned non-2xx status code: 503 Service Unavailable: …", "HTTP error: …")
/// and from the `std::io::Error` at the bottom of the chain.
fn transient(error: &object_store::Error) -> bool {
    use std::io::ErrorKind;
    let object_store::Error::Generic { source, .. } = error else {
        return false;
    };
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::NotConnected
                    | ErrorKind::BrokenPipe
                    | ErrorKind::TimedOut
                    | ErrorKind::UnexpectedEof
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
            )
        {
            return true;
        }
        let text = error.to_string();
        // object_store's `HttpError` ("HTTP error: …"): no answer came (connect, send, timeout,
        // cut), which it documents as retried; a body that could not be decoded is not.
        if text.starts_with("HTTP error: ") && !text.contains("decoding") {
            return true;
        }
        let status = text.split("status code: ").nth(1).and_then(|rest| rest.get(..3));
        if status.is_some_and(|code| code.starts_with('5') || code == "429") {
            return true;
        }
        if ["InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout"]
            .iter()
            .any(|code| text.contains(&format!("<Code>{code}</Code>")))
        {
            return true;
        }
        next = error.source();
    }
    false
}

/// The result type of the hiring domain.
pub type Result<T, E = Error> = std::result::Result<T, E>;
