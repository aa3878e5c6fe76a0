//! Settings, read once from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::postgres::PgConnectOptions;

/// A secret that never prints: `Debug` and `Display` show `[redacted]`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; only for comparing or connecting, never for logging.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How `POST /upload` runs the pipeline after writing each file to the raw zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipeline {
    /// Validate and process in this process, then answer with the reports (the default).
    Inline,
    /// Record the files as queued and answer 202: the Step Functions state machine, started by
    /// the raw bucket's events, runs the functions.
    StepFunctions,
}

/// The API's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `DATABASE_URL`, or the deployed variables (see [`Database`]).
    pub database: Database,
    /// `HIRING_LISTEN`: the address to listen on (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// `HIRING_DATA_DIR`: where uploaded files are kept (default `./data/local`).
    pub data_dir: PathBuf,
    /// `HIRING_API_TOKEN`: the bearer token of write endpoints; unset means read-only.
    pub api_token: Option<Secret>,
    /// `HIRING_MAX_UPLOAD_BYTES`: the largest `POST /upload` body (default 2 GiB).
    pub max_upload_bytes: usize,
    /// `HIRING_DB_MAX_CONNECTIONS`: the pool's size (default 16).
    pub db_max_connections: u32,
    /// `HIRING_PIPELINE`: `inline` (default) or `stepfunctions`.
    pub pipeline: Pipeline,
    /// `HIRING_RAW_URL`, `HIRING_REJECTS_URL`, `HIRING_PROCESSED_URL`, `HIRING_BACKUPS_URL`:
    /// where each zone lives, a directory or `s3://bucket/prefix` (default: `<data dir>/<zone>`).
    pub zone_urls: Vec<(hiring::zones::ZoneName, String)>,
    /// `HIRING_CORS_ORIGINS`: origins allowed to call the API from a browser, comma-separated
    /// (e.g. `https://dashboard.example.com`); none by default, so CORS stays closed.
    pub cors_origins: Vec<axum::http::HeaderValue>,
    /// `HIRING_REQUEST_TIMEOUT_SECS`: how long any request but an upload may take (default 30).
    pub request_timeout: Duration,
    /// `HIRING_UPLOAD_TIMEOUT_SECS`: how long `POST /upload` may take (default 900).
    pub upload_timeout: Duration,
    /// `HIRING_MAX_CONCURRENT_WRITES`: writes (uploads, batches, backups, restores) running at
    /// once; more answer 503 `busy` (default 8).
    pub max_concurrent_writes: usize,
    /// The AWS settings the zones read (`AWS_ENDPOINT_URL`, credentials, region), as given to
    /// [`Settings::from_lookup`]; secrets are wrapped.
    pub aws: Vec<(String, Secret)>,
}

/// The database to connect to, from `hiring::settings` (`DATABASE_URL`, or as the stack
/// deploys the API, `HIRING_DB_HOST`… with `HIRING_DB_SECRET`, the JSON of RDS's managed
/// master secret that ECS injects). Never printed: the options hold the password.
#[derive(Clone)]
pub struct Database(pub PgConnectOptions);

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

fn database(lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Database> {
    use hiring::settings::{DatabaseSettings, SecretSource};
    let options = match DatabaseSettings::from_lookup(lookup).map_err(anyhow::Error::msg)? {
        // sqlx's parse error is left out: it may quote the URL, password included.
        DatabaseSettings::Url(url) => url.parse().map_err(|_| {
            anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL (postgres://user@host:5432/name)")
        })?,
        DatabaseSettings::Server { server, secret: SecretSource::Value(json) } => {
            server.options(&json).map_err(|e| anyhow::anyhow!("HIRING_DB_SECRET: {e}"))?
        }
        DatabaseSettings::Server { secret: SecretSource::Arn(_), .. } => bail!(
            "HIRING_DB_SECRET_ARN is read by the functions: give the API HIRING_DB_SECRET, the secret's JSON \
             (ECS injects it from the ARN)"
        ),
    };
    Ok(Database(options))
}

impl Settings {
    /// The default `HIRING_MAX_UPLOAD_BYTES`.
    pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 2 * 1024 * 1024 * 1024;

    /// Opens the zones named by the settings.
    pub fn open_zones(&self) -> anyhow::Result<hiring::zones::Zones> {
        let url_of = |zone| {
            self.zone_urls.iter().find(|(name, _)| *name == zone).map(|(_, url)| url.clone()).unwrap_or_default()
        };
        let aws = |name: &str| self.aws.iter().find(|(n, _)| *n == name).map(|(_, v)| v.expose().to_owned());
        hiring::zones::Zones::open(url_of, aws).context("could not open the storage zones (HIRING_*_URL)")
    }

    /// Reads the settings from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let database = database(&lookup)?;
        let listen = lookup("HIRING_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = listen
            .parse()
            .with_context(|| format!("HIRING_LISTEN `{listen}` is not an address such as 127.0.0.1:8080"))?;
        let max_upload_bytes = match lookup("HIRING_MAX_UPLOAD_BYTES") {
            Some(v) => v.parse().with_context(|| format!("HIRING_MAX_UPLOAD_BYTES `{v}` is not a number of bytes"))?,
            None => Self::DEFAULT_MAX_UPLOAD_BYTES,
        };
        let number = |name: &str, default: u64| -> anyhow::Result<u64> {
            match lookup(name).filter(|v| !v.is_empty()) {
                Some(v) => v.parse().with_context(|| format!("{name} `{v}` is not a whole number")),
                None => Ok(default),
            }
        };
        let request_timeout = Duration::from_secs(number("HIRING_REQUEST_TIMEOUT_SECS", 30)?.max(1));
        let upload_timeout = Duration::from_secs(number("HIRING_UPLOAD_TIMEOUT_SECS", 900)?.max(1));
        let max_concurrent_writes = usize::try_from(number("HIRING_MAX_CONCURRENT_WRITES", 8)?.max(1))?;
        let cors_origins = lookup("HIRING_CORS_ORIGINS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(|origin| {
                if origin == "*" || !(origin.starts_with("https://") || origin.starts_with("http://")) {
                    bail!("HIRING_CORS_ORIGINS `{origin}` is not an origin such as https://dashboard.example.com (`*` is refused: name the origins)");
                }
                axum::http::HeaderValue::from_str(origin.trim_end_matches('/'))
                    .with_context(|| format!("HIRING_CORS_ORIGINS `{origin}` is not a valid header value"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let db_max_connections = match lookup("HIRING_DB_MAX_CONNECTIONS") {
            Some(v) => v.parse().with_context(|| format!("HIRING_DB_MAX_CONNECTIONS `{v}` is not a number"))?,
            None => 16,
        };
        let pipeline = match lookup("HIRING_PIPELINE").as_deref().filter(|v| !v.is_empty()) {
            None | Some("inline") => Pipeline::Inline,
            Some("stepfunctions") => Pipeline::StepFunctions,
            Some(other) => bail!("HIRING_PIPELINE `{other}` is not a pipeline mode: use inline or stepfunctions"),
        };
        let data_dir: PathBuf = lookup("HIRING_DATA_DIR").unwrap_or_else(|| "./data/local".into()).into();
        let zone_urls = hiring::zones::ZoneName::ALL
            .into_iter()
            .map(|zone| {
                let variable = format!("HIRING_{}_URL", zone.name().to_uppercase());
                let url = lookup(&variable)
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| data_dir.join(zone.name()).display().to_string());
                (zone, url)
            })
            .collect();
        let aws = hiring::settings::AwsSettings::VARIABLES
            .iter()
            .filter_map(|&name| {
                lookup(name).filter(|v| !v.is_empty()).map(|value| (name.to_owned(), Secret::new(value)))
            })
            .collect();
        Ok(Settings {
            database,
            listen,
            pipeline,
            zone_urls,
            aws,
            data_dir,
            api_token: lookup("HIRING_API_TOKEN").filter(|v| !v.is_empty()).map(Secret::new),
            max_upload_bytes,
            db_max_connections,
            cors_origins,
            request_timeout,
            upload_timeout,
            max_concurrent_writes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        Settings::from_lookup(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn the_database_is_the_managed_secret_s_user_when_deployed() {
        let s = settings(&[
            ("HIRING_DB_HOST", "db.example.internal"),
            ("HIRING_DB_SECRET", r#"{"username":"hiring","password":"p@ss:w/rd?#"}"#),
        ])
        .expect("settings");
        let options = &s.database.0;
        assert_eq!(
            (options.get_host(), options.get_port(), options.get_username(), options.get_database()),
            ("db.example.internal", 5432, "hiring", Some("hiring"))
        );
        assert!(matches!(options.get_ssl_mode(), sqlx::postgres::PgSslMode::Require));
        assert!(!format!("{s:?}").contains("p@ss"), "the settings never print the password");
        let with_url =
            settings(&[("DATABASE_URL", "postgres://a@b/c"), ("HIRING_DB_HOST", "ignored")]).expect("settings");
        assert_eq!((with_url.database.0.get_host(), with_url.database.0.get_database()), ("b", Some("c")));
    }

    #[test]
    fn a_missing_or_broken_database_setting_says_what_to_set() {
        let missing = settings(&[]).unwrap_err().to_string();
        assert!(missing.contains("DATABASE_URL is not set"), "{missing}");
        let broken = settings(&[("HIRING_DB_HOST", "h"), ("HIRING_DB_SECRET", "hunter2")]).unwrap_err().to_string();
        assert!(broken.contains("HIRING_DB_SECRET: the database secret is not the JSON"), "{broken}");
        assert!(!broken.contains("hunter2"), "the secret never reaches an error message");
    }
}
