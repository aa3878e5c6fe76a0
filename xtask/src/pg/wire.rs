//! Just enough of the PostgreSQL frontend/backend protocol (version 3.0) to log in without a
//! password and run simple queries: what `pg` needs to probe a server and create a database.
//!
//! It exists so xtask needs neither `psql` (the `postgresql-client` package is often missing
//! where a server runs in a sidecar container) nor a full client crate (sqlx or tokio-postgres
//! would add minutes to a cold build of a tool that sends two statements). Only `trust`
//! authentication is supported; a server that asks for a password is reported as such, and
//! the user points `DATABASE_URL` at it instead.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The protocol version 3.0, as sent in the startup message.
const PROTOCOL_VERSION: u32 = 196_608;

/// Why a connection or a query failed.
#[derive(Debug)]
pub enum Error {
    /// The socket failed: nothing listens, the connection dropped, or it timed out.
    Io(io::Error),
    /// The server wants a password (or a certificate) for this user.
    PasswordRequired,
    /// The server answered with an error (SQLSTATE `code`).
    Server { code: String, message: String },
    /// The server sent something this client does not understand.
    Protocol(String),
}

impl Error {
    /// The SQLSTATE code, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(error) => write!(f, "{error}"),
            Error::PasswordRequired => f.write_str("the server requires a password"),
            Error::Server { code, message } => write!(f, "{message} (SQLSTATE {code})"),
            Error::Protocol(what) => write!(f, "unexpected reply from the server: {what}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Self {
        Error::Io(error)
    }
}

/// One logged-in session.
pub struct Connection {
    stream: TcpStream,
}

impl Connection {
    /// Connects and logs in as `user` to `database`, without a password.
    pub fn connect(address: SocketAddr, user: &str, database: &str) -> Result<Self, Error> {
        let stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        let mut connection = Connection { stream };

        let mut body = PROTOCOL_VERSION.to_be_bytes().to_vec();
        for (key, value) in [("user", user), ("database", database), ("client_encoding", "UTF8")] {
            for text in [key, value] {
                body.extend_from_slice(text.as_bytes());
                body.push(0);
            }
        }
        body.push(0);
        connection.send(None, &body)?;

        loop {
            let (kind, body) = connection.receive()?;
            match kind {
                b'R' => match body.get(..4) {
                    Some([0, 0, 0, 0]) => {}
                    Some(_) => return Err(Error::PasswordRequired),
                    None => return Err(Error::Protocol("empty authentication request".into())),
                },
                b'E' => return Err(server_error(&body)),
                b'Z' => return Ok(connection),
                // Parameter status, backend key data and notices: not needed here.
                b'S' | b'K' | b'N' => {}
                other => return Err(unexpected(other)),
            }
        }
    }

    /// Runs one statement (simple query protocol) and returns its rows as text.
    pub fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, Error> {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        self.send(Some(b'Q'), &body)?;

        let mut rows = Vec::new();
        let mut failure = None;
        loop {
            let (kind, body) = self.receive()?;
            match kind {
                b'D' => rows.push(data_row(&body)?),
                b'E' => failure = Some(server_error(&body)),
                b'Z' => break,
                // Row description, command complete, empty query, notices, parameter status.
                b'T' | b'C' | b'I' | b'N' | b'S' => {}
                other => return Err(unexpected(other)),
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(rows),
        }
    }

    fn send(&mut self, kind: Option<u8>, body: &[u8]) -> io::Result<()> {
        let length = u32::try_from(body.len() + 4)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too long"))?;
        let mut message = Vec::with_capacity(body.len() + 5);
        message.extend(kind);
        message.extend_from_slice(&length.to_be_bytes());
        message.extend_from_slice(body);
        self.stream.write_all(&message)
    }

    fn receive(&mut self) -> Result<(u8, Vec<u8>), Error> {
        let mut header = [0; 5];
        self.stream.read_exact(&mut header)?;
        let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if !(4..=1 << 26).contains(&length) {
            return Err(Error::Protocol(format!("message length {length}")));
        }
        let mut body = vec![0; length - 4];
        self.stream.read_exact(&mut body)?;
        Ok((header[0], body))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Terminate politely so the server does not log an unexpected EOF; errors are moot.
        let _ = self.send(Some(b'X'), &[]);
    }
}

/// Quotes an identifier (a database name) for SQL.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn server_error(body: &[u8]) -> Error {
    let (mut code, mut message) = (String::new(), String::new());
    let mut fields = body;
    while let [kind, rest @ ..] = fields {
        if *kind == 0 {
            break;
        }
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let value = String::from_utf8_lossy(&rest[..end]).into_owned();
        match kind {
            b'C' => code = value,
            b'M' => message = value,
            _ => {}
        }
        fields = rest.get(end + 1..).unwrap_or_default();
    }
    Error::Server { code, message }
}

fn data_row(body: &[u8]) -> Result<Vec<Option<String>>, Error> {
    let truncated = || Error::Protocol("truncated data row".into());
    let count = u16::from_be_bytes(body.get(..2).ok_or_else(truncated)?.try_into().unwrap_or_default());
    let mut rest = &body[2..];
    let mut values = Vec::with_capacity(count.into());
    for _ in 0..count {
        let length = i32::from_be_bytes(rest.get(..4).ok_or_else(truncated)?.try_into().unwrap_or_default());
        rest = &rest[4..];
        if length < 0 {
            values.push(None);
            continue;
        }
        let value = rest.get(..length as usize).ok_or_else(truncated)?;
        values.push(Some(String::from_utf8_lossy(value).into_owned()));
        rest = &rest[length as usize..];
    }
    Ok(values)
}

fn unexpected(kind: u8) -> Error {
    Error::Protocol(format!("message type `{}`", kind.escape_ascii()))
}
