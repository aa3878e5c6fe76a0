//! Finding a PostgreSQL server for `dev`, `test` and `bench`, in this order:
//!
//! 1. `DATABASE_URL`, used as it is;
//! 2. a server on 127.0.0.1:5432 that lets user `postgres` in without a password (the
//!    database is created if missing);
//! 3. a private cluster under `<target>/pg/<major>/`, created with `initdb` on first use,
//!    started on a free port, and stopped again when the [`Postgres`] value is dropped;
//! 4. otherwise, one error saying what to install.
//!
//! `HIRING_PG=private` skips 1 and 2, so the private cluster can be used (and tested) on a
//! machine that also runs a server.
//!
//! [`Cluster::start_in`] starts a cluster of a test's own, which it may stop and start again
//! (the fault tests restart PostgreSQL under a running API).

mod client;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{project_root, target_dir, which};

use self::client::Connection;

/// The superuser every server is reached as (`initdb -U postgres` for the private cluster).
const SUPERUSER: &str = "postgres";
/// The port of a server installed system-wide.
const SYSTEM_PORT: u16 = 5432;

/// A PostgreSQL server to use, and the database on it.
pub struct Postgres {
    url: reqwest::Url,
    source: Source,
    /// Set only when this process started the cluster: dropping it stops the cluster.
    _cluster: Option<PrivateCluster>,
}

/// How the server was found.
#[derive(Debug, Clone)]
pub enum Source {
    /// `DATABASE_URL` was set.
    DatabaseUrl,
    /// A server answered on 127.0.0.1:5432.
    System,
    /// A private cluster in `dir`, either `started` now or found running.
    Private { dir: PathBuf, started: bool },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::DatabaseUrl => f.write_str("DATABASE_URL"),
            Source::System => write!(f, "the server on 127.0.0.1:{SYSTEM_PORT}"),
            Source::Private { dir, started: true } => {
                write!(f, "a private cluster started in {} (log: server.log)", dir.display())
            }
            Source::Private { dir, started: false } => {
                write!(f, "the private cluster already running in {}", dir.display())
            }
        }
    }
}

impl Postgres {
    /// The URL of the database, e.g. `postgres://postgres@127.0.0.1:5432/hiring_dev`.
    pub fn url(&self) -> String {
        self.url.to_string()
    }

    /// The URL of the same server's `postgres` database, for administrative statements.
    pub fn admin_url(&self) -> String {
        let mut url = self.url.clone();
        url.set_path("/postgres");
        url.to_string()
    }

    /// [`Postgres::url`] with any password masked, for printing.
    pub fn display_url(&self) -> String {
        masked(self.url.clone())
    }

    /// How the server was found.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Drops the database (closing its sessions) and creates it empty. Refused for a
    /// `DATABASE_URL`, which may name a database that matters.
    pub fn recreate(&self) -> anyhow::Result<()> {
        if matches!(self.source, Source::DatabaseUrl) {
            bail!("refusing to drop the database of DATABASE_URL; drop it yourself if you mean it");
        }
        let port = self.url.port().unwrap_or(SYSTEM_PORT);
        let address = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into();
        let database = client::quote_identifier(self.url.path().trim_start_matches('/'));
        let mut connection =
            Connection::connect(address, SUPERUSER, "postgres").context("failed to connect to the server")?;
        connection
            .query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .with_context(|| format!("failed to drop {database}"))?;
        connection
            .query(&format!("CREATE DATABASE {database}"))
            .with_context(|| format!("failed to create {database}"))?;
        Ok(())
    }
}

/// Finds a server as the module documentation describes and makes sure `database` exists on
/// it (except with `DATABASE_URL`, whose database is used as it is).
pub fn find_or_start(database: &str) -> anyhow::Result<Postgres> {
    if database.is_empty() || !database.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        bail!("database name `{database}` must be lowercase letters, digits and underscores");
    }
    let force_private = match std::env::var("HIRING_PG").unwrap_or_default().as_str() {
        "" | "auto" => false,
        "private" => true,
        other => bail!("HIRING_PG={other} is not understood; use `private`, `auto` or unset it"),
    };

    if !force_private {
        if let Some(url) = std::env::var("DATABASE_URL").ok().filter(|url| !url.is_empty()) {
            let url = reqwest::Url::parse(&url).context("DATABASE_URL is not a valid URL")?;
            return Ok(Postgres { url, source: Source::DatabaseUrl, _cluster: None });
        }
        let address = SocketAddrV4::new(Ipv4Addr::LOCALHOST, SYSTEM_PORT).into();
        match create_database(address, database) {
            Ok(()) => {
                return Ok(Postgres { url: url_for(SYSTEM_PORT, database), source: Source::System, _cluster: None });
            }
            // Nothing listens: the usual case on a machine without a system-wide server.
            Err(client::Error::Io(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(error) => eprintln!(
                "note: 127.0.0.1:{SYSTEM_PORT} does not let user `{SUPERUSER}` create database \
                 `{database}` ({error}); using a private cluster instead (set DATABASE_URL to use \
                 that server)"
            ),
        }
    }
    start_private(database, force_private)
}

/// Connects to `url` and names the database and the server's version: a check that the URL
/// really works.
pub fn describe(url: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(url).context("not a valid URL")?;
    let host = url.host_str().context("the URL has no host")?;
    let address = (host, url.port().unwrap_or(SYSTEM_PORT))
        .to_socket_addrs()
        .with_context(|| format!("failed to resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let user = if url.username().is_empty() { SUPERUSER } else { url.username() };
    let mut connection = Connection::connect(address, user, url.path().trim_start_matches('/'))
        .with_context(|| format!("failed to connect to {}", masked(url.clone())))?;
    let rows = connection
        .query("SELECT current_database() || ' on PostgreSQL ' || current_setting('server_version')")
        .context("failed to query the server version")?;
    rows.into_iter().next().and_then(|row| row.into_iter().next().flatten()).context("the server returned no version")
}

fn masked(mut url: reqwest::Url) -> String {
    if url.password().is_some() {
        // Setting a password only fails for URLs without a host, which never get here.
        let _ = url.set_password(Some("****"));
    }
    url.to_string()
}

fn url_for(port: u16, database: &str) -> reqwest::Url {
    let url = format!("postgres://{SUPERUSER}@127.0.0.1:{port}/{database}");
    reqwest::Url::parse(&url).expect("a URL built from a port and a plain database name is valid")
}

/// Creates `database` unless it exists (a concurrent creation counts as existing).
fn create_database(address: SocketAddr, database: &str) -> Result<(), client::Error> {
    let mut connection = Connection::connect(address, SUPERUSER, "postgres")?;
    let exists = connection.query(&format!("SELECT datname::text FROM pg_database WHERE datname = '{database}'"))?;
    if exists.is_empty() {
        let create = format!("CREATE DATABASE {}", client::quote_identifier(database));
        match connection.query(&create) {
            // 42P04: duplicate_database, another process created it meanwhile.
            Err(error) if error.code().as_deref() == Some("42P04") => {}
            other => other.map(drop)?,
        }
    }
    Ok(())
}

/// A private cluster started by this process, stopped when dropped.
struct PrivateCluster {
    pg_ctl: PathBuf,
    data: PathBuf,
    runner: Runner,
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        eprintln!("stopping the private PostgreSQL cluster");
        let stop = self
            .runner
            .command(
                &self.pg_ctl,
                &["-D".as_ref(), self.data.as_os_str(), "-m".as_ref(), "fast".as_ref(), "-w".as_ref(), "stop".as_ref()],
            )
            .stdin(Stdio::null())
            .output();
        match stop {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!("warning: pg_ctl stop failed: {}", combined(&output).trim()),
            Err(error) => eprintln!("warning: could not run pg_ctl stop: {error}"),
        }
    }
}

/// The PostgreSQL server programs of one installation.
struct Tools {
    initdb: PathBuf,
    pg_ctl: PathBuf,
    /// The major version, e.g. `15`; clusters of different majors live in different folders.
    major: String,
}

/// Who runs `initdb` and `pg_ctl`: they refuse to run as root, so root runs them as `postgres`.
#[derive(Clone, Copy)]
enum Runner {
    CurrentUser,
    RunUser,
    Su,
}

impl Runner {
    fn detect() -> anyhow::Result<Runner> {
        let uid = Command::new("id").arg("-u").output().context("failed to run `id -u`")?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Ok(Runner::CurrentUser);
        }
        let has_user = Command::new("id").arg(SUPERUSER).output().is_ok_and(|o| o.status.success());
        if !has_user {
            bail!(
                "PostgreSQL refuses to run as root and there is no `{SUPERUSER}` user to run it \
                 as; install PostgreSQL (`apt-get install postgresql` creates the user), create \
                 the user (`useradd --system {SUPERUSER}`), run as another user, or set DATABASE_URL"
            );
        }
        if which("runuser").is_some() {
            Ok(Runner::RunUser)
        } else if which("su").is_some() {
            Ok(Runner::Su)
        } else {
            bail!("running as root, but neither `runuser` nor `su` is available to run PostgreSQL as `{SUPERUSER}`")
        }
    }

    fn command(self, program: &Path, args: &[&std::ffi::OsStr]) -> Command {
        match self {
            Runner::CurrentUser => {
                let mut command = Command::new(program);
                command.args(args);
                command
            }
            Runner::RunUser => {
                let mut command = Command::new("runuser");
                command.args(["-u", SUPERUSER, "--"]).arg(program).args(args);
                command
            }
            Runner::Su => {
                let line = std::iter::once(program.as_os_str())
                    .chain(args.iter().copied())
                    .map(|arg| shell_quote(&arg.to_string_lossy()))
                    .collect::<Vec<_>>()
                    .join(" ");
                let mut command = Command::new("su");
                command.args(["-s", "/bin/sh", SUPERUSER, "-c", &line]);
                command
            }
        }
    }

    fn is_root(self) -> bool {
        !matches!(self, Runner::CurrentUser)
    }
}

fn start_private(database: &str, forced: bool) -> anyhow::Result<Postgres> {
    let Some(tools) = find_tools() else {
        let why = if forced {
            "HIRING_PG=private needs initdb and pg_ctl, which are".to_owned()
        } else {
            format!(
                "DATABASE_URL is not set, nothing lets user `{SUPERUSER}` in on \
                 127.0.0.1:{SYSTEM_PORT}, and initdb/pg_ctl (to start a private cluster) are"
            )
        };
        bail!(
            "no PostgreSQL available: {why} not on PATH nor in /usr/lib/postgresql/*/bin; install \
             PostgreSQL (Debian/Ubuntu: `apt-get install postgresql`, macOS: `brew install \
             postgresql`) or set DATABASE_URL=postgres://user:password@host:port/database"
        );
    };
    let runner = Runner::detect()?;
    let dir = cluster_dir(&tools.major, runner)?;
    let data = dir.join("data");
    let log = dir.join("server.log");
    let arg = |s: &'static str| std::ffi::OsStr::new(s);

    // A cluster left running (by a concurrent `cargo xtask dev`, or by a run that was killed)
    // is reused and left running: stopping it could pull it from under its owner.
    if data.join("postmaster.pid").exists() {
        let status = runner
            .command(&tools.pg_ctl, &[arg("-D"), data.as_os_str(), arg("status")])
            .stdin(Stdio::null())
            .output()
            .context("failed to run pg_ctl status")?;
        if status.status.success() {
            let port = running_port(&data)?;
            let address = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into();
            wait_until_ready(address, Duration::from_secs(30))?;
            create_database(address, database).with_context(|| format!("failed to create database `{database}`"))?;
            eprintln!(
                "note: reusing the private PostgreSQL cluster running in {} on port {port}; stop \
                 it with `pg_ctl -D {} stop`",
                dir.display(),
                data.display()
            );
            return Ok(Postgres {
                url: url_for(port, database),
                source: Source::Private { dir, started: false },
                _cluster: None,
            });
        }
    }

    if !data.join("PG_VERSION").exists() {
        init_cluster(&tools, runner, &data)?;
    }

    // The free port is only free when checked; if another process takes it before the server
    // binds it, the start fails and the next attempt picks another port.
    let mut attempts = 0;
    let port = loop {
        attempts += 1;
        let port = free_port()?;
        let port_option = format!("-p {port}");
        let started = runner
            .command(
                &tools.pg_ctl,
                &[
                    arg("-D"),
                    data.as_os_str(),
                    arg("-l"),
                    log.as_os_str(),
                    arg("-o"),
                    port_option.as_ref(),
                    arg("-w"),
                    arg("-t"),
                    arg("60"),
                    arg("start"),
                ],
            )
            .stdin(Stdio::null())
            .output()
            .context("failed to run pg_ctl start")?;
        if started.status.success() {
            break port;
        }
        if attempts == 3 {
            bail!(
                "pg_ctl could not start the private cluster in {}: {}\nlast lines of {}:\n{}",
                data.display(),
                combined(&started).trim(),
                log.display(),
                tail(&log, 20)
            );
        }
    };
    let cluster = PrivateCluster { pg_ctl: tools.pg_ctl, data, runner };

    let address = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into();
    wait_until_ready(address, Duration::from_secs(30))?;
    create_database(address, database).with_context(|| format!("failed to create database `{database}`"))?;
    Ok(Postgres {
        url: url_for(port, database),
        source: Source::Private { dir, started: true },
        _cluster: Some(cluster),
    })
}

/// Creates a cluster in `data`: trust authentication for `postgres`, listening on 127.0.0.1
/// only, its socket inside `data`, and durability off (the data is disposable; tests that
/// create a database each run much faster without fsync).
fn init_cluster(tools: &Tools, runner: Runner, data: &Path) -> anyhow::Result<()> {
    if data.exists() {
        // A half-made cluster from an interrupted initdb.
        std::fs::remove_dir_all(data).with_context(|| format!("failed to remove {}", data.display()))?;
    }
    eprintln!("creating a private PostgreSQL cluster in {}", data.display());
    let arg = |s: &'static str| std::ffi::OsStr::new(s);
    let initdb = runner
        .command(
            &tools.initdb,
            &[
                arg("-D"),
                data.as_os_str(),
                arg("-U"),
                arg(SUPERUSER),
                arg("--auth=trust"),
                arg("--encoding=UTF8"),
                arg("--locale=C"),
                arg("--no-sync"),
            ],
        )
        .stdin(Stdio::null())
        .output()
        .context("failed to run initdb")?;
    if !initdb.status.success() {
        bail!("initdb failed in {}:\n{}", data.display(), combined(&initdb).trim());
    }
    let socket_dir = data.to_string_lossy().replace('\'', "''");
    let settings = format!(
        "\n# Added by cargo xtask: a private, disposable cluster.\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{socket_dir}'\n\
         max_connections = 200\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n"
    );
    let conf = data.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).with_context(|| format!("failed to read {}", conf.display()))?;
    text.push_str(&settings);
    // Root writes into the postgres-owned file; writing in place keeps its owner.
    std::fs::write(&conf, text).with_context(|| format!("failed to write {}", conf.display()))
}

/// Picks the folder of the private cluster: `<target>/pg/<major>`, unless the `postgres` user
/// cannot reach it (root running in a home directory such as /root, mode 700) or its path is
/// too long for the server's Unix socket (about 100 bytes); then a folder under the system's
/// temporary directory, named after the workspace so checkouts do not share clusters.
fn cluster_dir(major: &str, runner: Runner) -> anyhow::Result<PathBuf> {
    let preferred = target_dir().join("pg").join(major);
    let problem = match prepare_dir(&preferred, runner) {
        Ok(()) => return Ok(preferred),
        Err(problem) => problem,
    };
    let root = project_root();
    let fallback =
        std::env::temp_dir().join(format!("hiring-pg-{:016x}", fnv1a(root.as_os_str().as_encoded_bytes()))).join(major);
    prepare_dir(&fallback, runner)
        .with_context(|| format!("{problem:#}; the fallback {} is not usable either", fallback.display()))?;
    eprintln!("note: the private cluster lives in {} because {problem:#}", fallback.display());
    Ok(fallback)
}

/// Creates `dir`, hands it to the `postgres` user when running as root, and checks it is usable.
fn prepare_dir(dir: &Path, runner: Runner) -> anyhow::Result<()> {
    // The longest socket path is `<dir>/data/.s.PGSQL.65535`; Linux allows 107 bytes, macOS 103.
    let socket = dir.join("data").join(".s.PGSQL.65535");
    if socket.as_os_str().len() > 100 {
        bail!("{} is too long a path for a Unix socket", socket.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    if runner.is_root() {
        // Our own temporary folder must be traversable whatever root's umask is.
        if let Some(parent) = dir.parent().filter(|p| p.starts_with(std::env::temp_dir())) {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("failed to open up {}", parent.display()))?;
        }
        let chown = Command::new("chown")
            .args(["-R", &format!("{SUPERUSER}:")])
            .arg(dir)
            .output()
            .context("failed to run chown")?;
        if !chown.status.success() {
            bail!("chown of {} failed: {}", dir.display(), combined(&chown).trim());
        }
        let usable = runner
            .command(Path::new("test"), &["-w".as_ref(), dir.as_os_str()])
            .output()
            .is_ok_and(|o| o.status.success());
        if !usable {
            bail!("user `{SUPERUSER}` cannot write to {} (is a parent folder private?)", dir.display());
        }
    }
    Ok(())
}

/// A cluster of its own in a folder, on a fixed port, that can be stopped and started again;
/// stopped (immediately) when dropped.
pub struct Cluster {
    tools: Tools,
    runner: Runner,
    data: PathBuf,
    port: u16,
    running: bool,
}

impl Cluster {
    /// Creates a cluster in `<dir>/data`, durable (fsync and synchronous commits on, unlike the
    /// shared test cluster), and starts it on a free port of 127.0.0.1.
    pub fn start_in(dir: &Path) -> anyhow::Result<Cluster> {
        let tools = find_tools().context("initdb and pg_ctl are not on PATH nor in /usr/lib/postgresql/*/bin")?;
        let runner = Runner::detect()?;
        prepare_dir(dir, runner)?;
        let data = dir.join("data");
        init_cluster(&tools, runner, &data)?;
        // Unlike the shared test cluster, this one is crashed on purpose: a commit it
        // acknowledged must survive, as on a real server (RDS), so durability is back on.
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).with_context(|| format!("failed to read {}", conf.display()))?;
        text.push_str("\n# Crash tests: acknowledged commits are durable.\nfsync = on\nsynchronous_commit = on\nfull_page_writes = on\n");
        std::fs::write(&conf, text).with_context(|| format!("failed to write {}", conf.display()))?;
        let mut cluster = Cluster { tools, runner, data, port: free_port()?, running: false };
        cluster.start()?;
        Ok(cluster)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on it (created if missing).
    pub fn database_url(&self, database: &str) -> anyhow::Result<String> {
        let address = SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port).into();
        create_database(address, database).with_context(|| format!("failed to create database `{database}`"))?;
        Ok(url_for(self.port, database).to_string())
    }

    /// Starts it (again) on its port and waits until it lets clients in.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let port_option = format!("-p {}", self.port);
        let log = self.data.with_file_name("server.log");
        let output = self.pg_ctl(&[
            "-l".as_ref(),
            log.as_os_str(),
            "-o".as_ref(),
            port_option.as_ref(),
            "-w".as_ref(),
            "start".as_ref(),
        ])?;
        if !output.status.success() {
            bail!(
                "pg_ctl start failed: {}
{}",
                combined(&output).trim(),
                tail(&log, 20)
            );
        }
        self.running = true;
        wait_until_ready(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port).into(), Duration::from_secs(30))
    }

    /// Restarts it with `settings` appended to `postgresql.conf`, `hba` as `pg_hba.conf`, and
    /// `files` written into its data folder, readable by the server's user only: a test's own
    /// server set up as RDS is (TLS with a certificate, password authentication).
    pub fn reconfigure(&mut self, settings: &str, hba: &str, files: &[(&str, &[u8])]) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if self.running {
            let output = self.pg_ctl(&["-m".as_ref(), "fast".as_ref(), "-w".as_ref(), "stop".as_ref()])?;
            if !output.status.success() {
                bail!("pg_ctl stop failed: {}", combined(&output).trim());
            }
            self.running = false;
        }
        let conf = self.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).with_context(|| format!("failed to read {}", conf.display()))?;
        text.push_str("\n# The test's own settings.\n");
        text.push_str(settings);
        let written: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|(name, bytes)| ((*name).to_owned(), bytes.to_vec()))
            .chain([
                ("postgresql.conf".to_owned(), text.into_bytes()),
                ("pg_hba.conf".to_owned(), hba.as_bytes().to_vec()),
            ])
            .collect();
        for (name, bytes) in &written {
            let path = self.data.join(name);
            std::fs::write(&path, bytes).with_context(|| format!("failed to write {}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            if self.runner.is_root() {
                let chown = Command::new("chown").arg(format!("{SUPERUSER}:")).arg(&path).output()?;
                if !chown.status.success() {
                    bail!("chown of {} failed: {}", path.display(), combined(&chown).trim());
                }
            }
        }
        self.start()
    }

    /// Stops it the way a crash would (`pg_ctl stop -m immediate`: no checkpoint, clients cut
    /// off); the next start recovers from the write-ahead log.
    pub fn crash(&mut self) -> anyhow::Result<()> {
        let output = self.pg_ctl(&["-m".as_ref(), "immediate".as_ref(), "-w".as_ref(), "stop".as_ref()])?;
        if !output.status.success() {
            bail!("pg_ctl stop failed: {}", combined(&output).trim());
        }
        self.running = false;
        Ok(())
    }

    fn pg_ctl(&self, args: &[&std::ffi::OsStr]) -> anyhow::Result<Output> {
        let mut all: Vec<&std::ffi::OsStr> = vec!["-D".as_ref(), self.data.as_os_str()];
        all.extend_from_slice(args);
        self.runner.command(&self.tools.pg_ctl, &all).stdin(Stdio::null()).output().context("failed to run pg_ctl")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.crash();
        }
    }
}

/// Finds initdb and pg_ctl: on PATH first, else the highest version in /usr/lib/postgresql
/// (Debian and Ubuntu install them there, off PATH).
fn find_tools() -> Option<Tools> {
    let from_path = which("initdb").map(|initdb| {
        let beside = initdb.with_file_name("pg_ctl");
        (initdb, beside)
    });
    let (initdb, pg_ctl) = match from_path {
        Some((initdb, beside)) if beside.is_file() => (initdb, beside),
        Some((initdb, _)) => (initdb, which("pg_ctl")?),
        None => {
            let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(|entry| {
                    let entry = entry.ok()?;
                    let version = entry.file_name().to_str()?.parse().ok()?;
                    let bin = entry.path().join("bin");
                    (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
                })
                .collect();
            versions.sort();
            let (_, bin) = versions.pop()?;
            (bin.join("initdb"), bin.join("pg_ctl"))
        }
    };
    // `initdb (PostgreSQL) 15.20` → `15`.
    let version = Command::new(&initdb).arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&version.stdout);
    let major = version.split_whitespace().last()?.split('.').next()?.to_owned();
    Some(Tools { initdb, pg_ctl, major })
}

/// The port of a running cluster: line 4 of `postmaster.pid`.
fn running_port(data: &Path) -> anyhow::Result<u16> {
    let pid_file = data.join("postmaster.pid");
    let text = std::fs::read_to_string(&pid_file).with_context(|| format!("failed to read {}", pid_file.display()))?;
    text.lines()
        .nth(3)
        .and_then(|line| line.trim().parse().ok())
        .with_context(|| format!("no port on line 4 of {}", pid_file.display()))
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("failed to find a free port")?;
    Ok(listener.local_addr().context("failed to read the free port")?.port())
}

/// Waits until the server lets us in (it refuses logins while it recovers or starts up).
fn wait_until_ready(address: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match Connection::connect(address, SUPERUSER, "postgres") {
            Ok(_) => return Ok(()),
            Err(error) if Instant::now() >= deadline => {
                return Err(error)
                    .context(format!("PostgreSQL on {address} did not accept connections within {timeout:?}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn combined(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// The last `lines` lines of a (log) file, or a note that it cannot be read.
fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("({error})"),
    }
}

/// Quotes one word for `sh -c`.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// FNV-1a: a hash that never changes between Rust versions, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}
