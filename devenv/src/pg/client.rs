//! A small blocking facade over sqlx for what `pg` needs: log in, run a statement, read text.
//!
//! sqlx is already built for the workspace (the API and the tests use it with the same
//! features), so xtask reuses it instead of needing `psql` or a protocol client of its own.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection as _, PgConnection, Row};

/// Why a connection or a query failed.
#[derive(Debug)]
pub enum Error {
    /// The socket failed: nothing listens, the connection dropped, or it timed out.
    Io(std::io::Error),
    /// Anything else sqlx reports (authentication, a server error with its SQLSTATE, …).
    Sql(sqlx::Error),
}

impl Error {
    /// The SQLSTATE code, when the server sent one.
    pub fn code(&self) -> Option<String> {
        match self {
            Error::Sql(sqlx::Error::Database(e)) => e.code().map(|c| c.into_owned()),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(error) => write!(f, "{error}"),
            Error::Sql(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::Io(io) => Error::Io(io),
            other => Error::Sql(other),
        }
    }
}

/// One logged-in session, driven by its own single-threaded runtime.
pub struct Connection {
    runtime: tokio::runtime::Runtime,
    /// Taken by `Drop` to close it.
    connection: Option<PgConnection>,
}

impl Connection {
    /// Logs in as `user` (no password) to `database` at `address`.
    pub fn connect(address: SocketAddr, user: &str, database: &str) -> Result<Self, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Error::Io)?;
        let options = PgConnectOptions::new()
            .host(&address.ip().to_string())
            .port(address.port())
            .username(user)
            .database(database)
            .disable_statement_logging();
        let connection = runtime.block_on(async {
            match tokio::time::timeout(Duration::from_secs(10), options.connect()).await {
                Ok(connected) => connected.map_err(Error::from),
                Err(_) => Err(Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 10 s"))),
            }
        })?;
        Ok(Connection { runtime, connection: Some(connection) })
    }

    /// Runs one statement (simple protocol) and returns its rows; every column must be text.
    pub fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, Error> {
        let Connection { runtime, connection } = self;
        let connection = connection.as_mut().expect("the connection is open until dropped");
        runtime.block_on(async {
            let rows = sqlx::raw_sql(sql).fetch_all(&mut *connection).await?;
            rows.iter()
                .map(|row| (0..row.len()).map(|i| row.try_get::<Option<String>, _>(i)).collect::<Result<Vec<_>, _>>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(Error::from)
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Close politely so the server does not log an unexpected EOF; errors are moot.
        if let Some(connection) = self.connection.take() {
            let _ = self.runtime.block_on(connection.close());
        }
    }
}

/// Quotes an identifier (a database name) for SQL.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
