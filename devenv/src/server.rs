//! What the fixtures that run a local server share ([`crate::moto`], [`crate::lambda`]):
//! starting it on a free port of 127.0.0.1 (another port when the first was taken meanwhile),
//! waiting until it answers HTTP, and quoting its log when it does not.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How to start one server.
pub struct Server<'a> {
    /// Its name in messages, e.g. `moto`.
    pub name: &'a str,
    /// Where its log files go (`<name>-<attempt>.log`).
    pub directory: &'a Path,
    /// A text its log holds when its port was taken before it bound it.
    pub port_taken: &'a str,
    /// How long it may take to answer HTTP.
    pub ready_timeout: Duration,
    /// The path of a `GET` that it answers at once, with any status.
    pub probe: &'a str,
}

/// A started server: its process, port and log file.
pub struct Started {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Server<'_> {
    /// Starts the program `command(port)` makes, with its output in a log file, and waits until
    /// it answers HTTP on that port. A port can be free when picked and taken before the server
    /// binds it: then another is tried (three attempts in all).
    pub fn start(&self, command: impl Fn(u16) -> Command) -> anyhow::Result<Started> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let log = self.directory.join(format!("{}-{attempt}.log", self.name.replace(' ', "-")));
            let port = free_port()?;
            match self.start_on(command(port), port, &log) {
                Ok(child) => return Ok(Started { child, port, log }),
                Err(error) if attempt < 3 && log_tail(&log).contains(self.port_taken) => {
                    eprintln!("{} could not bind its port, trying another: {error:#}", self.name);
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn start_on(&self, mut command: Command, port: u16, log: &Path) -> anyhow::Result<Child> {
        let name = self.name;
        let output = File::create(log).with_context(|| format!("failed to create {}", log.display()))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(output.try_clone().context("failed to share the log file")?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("failed to start {}", command.get_program().to_string_lossy()))?;
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().with_context(|| format!("failed to check on {name}"))? {
                bail!("{name} exited at start ({status}); its output ends with:\n{}", log_tail(log));
            }
            if answers_http(port, self.probe) {
                return Ok(child);
            }
            if started.elapsed() > self.ready_timeout {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{name} did not answer on 127.0.0.1:{port} within {}s; its output ends with:\n{}",
                    self.ready_timeout.as_secs(),
                    log_tail(log)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether something answers a `GET path` on the port (any status will do).
fn answers_http(port: u16, path: &str) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut start = [0; 5];
    stream.read_exact(&mut start).is_ok() && &start == b"HTTP/"
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("failed to find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The last lines of a log file, for error messages.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_else(|error| format!("(cannot read: {error})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
