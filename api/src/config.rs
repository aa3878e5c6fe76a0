//! Settings, read once from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

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
    /// `DATABASE_URL`, or as the stack deploys the API, `HIRING_DB_HOST`… with the database
    /// secret's ARN (`HIRING_DB_SECRET_ARN`, read at start and again when PostgreSQL refuses
    /// the password) or its JSON (`HIRING_DB_SECRET`): see `hiring::settings` and `secrets`.
    /// Never printed: it may hold a password.
    pub database: secrets::DatabaseAccess,
    /// `HIRING_LISTEN`: the address to listen on (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// `HIRING_DATA_DIR`: where uploaded files are kept (default `./data/local`).
    pub data_dir: PathBuf,
    /// `HIRING_API_TOKENS` (`{"read": […], "write": […]}`) and `HIRING_API_TOKEN` (one write
    /// token): the bearer tokens and their scopes ([`crate::auth`]). Without a write token the
    /// server runs read-only.
    pub tokens: crate::auth::Tokens,
    /// `HIRING_PUBLIC_METRICS` (`true` or `false`, the default): whether the aggregate metrics
    /// and the report answer without a token. Rejects, ingestions and backups never do.
    pub public_metrics: bool,
    /// `HIRING_MAX_UPLOAD_BYTES`: the largest `POST /upload` body (default 2 GiB).
    pub max_upload_bytes: usize,
    /// `HIRING_MULTIPART_ABOVE_BYTES`: a presigned upload to S3 larger than this is a multipart
    /// upload (default 5 GiB, the most one `PUT` takes).
    pub multipart_above_bytes: u64,
    /// `HIRING_MULTIPART_PART_BYTES`: the size of a multipart upload's parts (default 64 MiB,
    /// at least S3's 5 MiB; larger when a file would need over 10,000 parts).
    pub multipart_part_bytes: u64,
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
    /// `HIRING_HEADER_READ_TIMEOUT_SECS` and `HIRING_MAX_CONNECTIONS`: how long a client may take
    /// over its request headers, and how many connections may be open (see [`crate::serve`]).
    pub connection_limits: crate::serve::ConnectionLimits,
    /// `HIRING_WORKFLOW_WAIT_SECS`: how long a hires file waits for the departments and jobs of
    /// its upload (default 1800); every deadline of an ingestion derives from it (the upload
    /// URLs' life, the sweep's deadline: `hiring::lifecycle::Deadlines`).
    pub deadlines: hiring::lifecycle::Deadlines,
    /// `HIRING_MAX_CONCURRENT_WRITES`: writes (uploads, batches, backups, restores) running at
    /// once; more answer 503 `busy` (default 8).
    pub max_concurrent_writes: usize,
    /// The AWS settings the zones read (`AWS_ENDPOINT_URL`, credentials, region), as given to
    /// [`Settings::from_lookup`]; secrets are wrapped.
    pub aws: Vec<(String, Secret)>,
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
        let database = secrets::DatabaseAccess::from_lookup(&lookup).map_err(anyhow::Error::msg)?;
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
        let single_put = crate::routes::uploads::MAX_SINGLE_PUT_BYTES;
        let multipart_above_bytes = number("HIRING_MULTIPART_ABOVE_BYTES", single_put)?.min(single_put);
        let multipart_part_bytes = number("HIRING_MULTIPART_PART_BYTES", 64 * 1024 * 1024)?;
        if multipart_part_bytes < crate::routes::uploads::MIN_PART_BYTES {
            bail!("HIRING_MULTIPART_PART_BYTES `{multipart_part_bytes}` is under S3's smallest part, 5 MiB (5242880)");
        }
        let upload_timeout = Duration::from_secs(number("HIRING_UPLOAD_TIMEOUT_SECS", 900)?.max(1));
        let defaults = crate::serve::ConnectionLimits::default();
        let connection_limits = crate::serve::ConnectionLimits {
            header_read_timeout: Duration::from_secs(
                number("HIRING_HEADER_READ_TIMEOUT_SECS", defaults.header_read_timeout.as_secs())?.max(1),
            ),
            max_connections: usize::try_from(
                number("HIRING_MAX_CONNECTIONS", defaults.max_connections as u64)?.max(1),
            )?,
        };
        let default_wait = hiring::lifecycle::Deadlines::DEFAULT.workflow_wait.as_secs();
        let deadlines = hiring::lifecycle::Deadlines::new(Duration::from_secs(
            number("HIRING_WORKFLOW_WAIT_SECS", default_wait)?.max(1),
        ));
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
            tokens: crate::auth::Tokens::from_settings(
                lookup("HIRING_API_TOKENS").filter(|v| !v.is_empty()).as_deref(),
                lookup("HIRING_API_TOKEN").filter(|v| !v.is_empty()).as_deref(),
            )?,
            public_metrics: match lookup("HIRING_PUBLIC_METRICS").as_deref().filter(|v| !v.is_empty()) {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => bail!("HIRING_PUBLIC_METRICS `{other}` is not true or false"),
            },
            max_upload_bytes,
            multipart_above_bytes,
            multipart_part_bytes,
            db_max_connections,
            cors_origins,
            request_timeout,
            upload_timeout,
            connection_limits,
            deadlines,
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

    #[tokio::test]
    async fn the_database_is_the_managed_secret_s_user_when_deployed() {
        let s = settings(&[
            ("HIRING_DB_HOST", "db.example.internal"),
            ("HIRING_DB_SECRET", r#"{"username":"hiring","password":"p@ss:w/rd?#"}"#),
        ])
        .expect("settings");
        let options = s.database.options().await.expect("options");
        assert_eq!(
            (options.get_host(), options.get_port(), options.get_username(), options.get_database()),
            ("db.example.internal", 5432, "hiring", Some("hiring"))
        );
        assert!(matches!(options.get_ssl_mode(), sqlx::postgres::PgSslMode::Require));
        assert!(!format!("{s:?}").contains("p@ss"), "the settings never print the password");
        let with_url =
            settings(&[("DATABASE_URL", "postgres://a@b/c"), ("HIRING_DB_HOST", "ignored")]).expect("settings");
        let options = with_url.database.options().await.expect("options");
        assert_eq!((options.get_host(), options.get_database()), ("b", Some("c")));
    }

    #[test]
    fn a_missing_or_broken_database_setting_says_what_to_set() {
        let missing = settings(&[]).unwrap_err().to_string();
        assert!(missing.contains("DATABASE_URL is not set"), "{missing}");
        let broken = settings(&[("HIRING_DB_HOST", "h"), ("HIRING_DB_SECRET", "hunter2")]).expect("settings");
        let broken = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(broken.database.options())
            .unwrap_err()
            .to_string();
        assert!(broken.contains("HIRING_DB_SECRET: the database secret is not the JSON"), "{broken}");
        assert!(!broken.contains("hunter2"), "the secret never reaches an error message");
    }
}
