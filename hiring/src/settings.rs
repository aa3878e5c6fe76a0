//! The settings the API and the Lambda functions share, read from their environment: one
//! owner for the variables, their defaults and their errors.
//!
//! Where PostgreSQL is ([`DatabaseSettings`]):
//! - `DATABASE_URL`: a PostgreSQL URL, used as it is (development, tests);
//! - else, as the stack deploys them: `HIRING_DB_HOST`, `HIRING_DB_PORT` (5432),
//!   `HIRING_DB_NAME` (hiring), `HIRING_DB_SSLMODE` (require: RDS refuses unencrypted
//!   connections) and the user from RDS's managed master secret, `{"username", "password"}`:
//!   its JSON in `HIRING_DB_SECRET` (ECS injects it into the API's task), or its ARN in
//!   `HIRING_DB_SECRET_ARN` (the functions read it at their first invocation).

use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// A PostgreSQL server's address, without credentials.
#[derive(Debug, Clone)]
pub struct DatabaseServer {
    /// `HIRING_DB_HOST`.
    pub host: String,
    /// `HIRING_DB_PORT`, default 5432.
    pub port: u16,
    /// `HIRING_DB_NAME`, default `hiring`.
    pub name: String,
    /// `HIRING_DB_SSLMODE`, default `require`.
    pub ssl_mode: PgSslMode,
    /// `HIRING_DB_SSLROOTCERT`: the authorities (a PEM file) `verify-ca` and `verify-full` check
    /// the server's certificate against; unset: Amazon RDS's (the `secrets` crate embeds them).
    pub ssl_root_cert: Option<String>,
}

/// Where the secret holding the database user is.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `HIRING_DB_SECRET`: the secret's JSON itself.
    Value(String),
    /// `HIRING_DB_SECRET_ARN`: its ARN in Secrets Manager.
    Arn(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Value(_) => formatter.write_str("Value([redacted])"),
            SecretSource::Arn(arn) => formatter.debug_tuple("Arn").field(arn).finish(),
        }
    }
}

/// Where a program finds PostgreSQL.
#[derive(Clone)]
pub enum DatabaseSettings {
    /// `DATABASE_URL`, as given (it may hold a password).
    Url(String),
    /// A server, and the secret that holds its user.
    Server {
        /// The address.
        server: DatabaseServer,
        /// The user's secret.
        secret: SecretSource,
        /// The master user's secret (`HIRING_DB_ADMIN_SECRET_ARN` or `HIRING_DB_ADMIN_SECRET`),
        /// when `secret` is the application role's: the migrations run as the master user,
        /// which also gives the application role its password.
        admin: Option<SecretSource>,
    },
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseSettings::Url(_) => formatter.write_str("Url([redacted])"),
            DatabaseSettings::Server { server, secret, admin } => formatter
                .debug_struct("Server")
                .field("server", server)
                .field("secret", secret)
                .field("admin", admin)
                .finish(),
        }
    }
}

impl DatabaseSettings {
    /// Reads the settings through `lookup` (empty values count as unset). The error is one
    /// line naming the variable and what to give.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<DatabaseSettings, String> {
        let setting = |name: &str| lookup(name).filter(|value| !value.is_empty());
        if let Some(url) = setting("DATABASE_URL") {
            return Ok(DatabaseSettings::Url(url));
        }
        let secret = match (setting("HIRING_DB_SECRET"), setting("HIRING_DB_SECRET_ARN")) {
            (Some(json), _) => SecretSource::Value(json),
            (None, Some(arn)) => SecretSource::Arn(arn),
            (None, None) => {
                return Err("DATABASE_URL is not set: point it at PostgreSQL \
                     (e.g. postgres://postgres@127.0.0.1:5432/hiring_dev), or give HIRING_DB_HOST with \
                     HIRING_DB_SECRET or HIRING_DB_SECRET_ARN as the stack does"
                    .to_owned());
            }
        };
        let host = setting("HIRING_DB_HOST").ok_or("HIRING_DB_HOST is not set: give the database's address")?;
        let port = match setting("HIRING_DB_PORT") {
            Some(port) => port.parse().map_err(|_| format!("HIRING_DB_PORT `{port}` is not a port number"))?,
            None => 5432,
        };
        let ssl_mode =
            setting("HIRING_DB_SSLMODE").as_deref().unwrap_or("require").parse().map_err(|_| {
                "HIRING_DB_SSLMODE is not an sslmode (disable, prefer, require, verify-full…)".to_owned()
            })?;
        let name = setting("HIRING_DB_NAME").unwrap_or_else(|| "hiring".to_owned());
        let ssl_root_cert = setting("HIRING_DB_SSLROOTCERT");
        let admin = match (setting("HIRING_DB_ADMIN_SECRET"), setting("HIRING_DB_ADMIN_SECRET_ARN")) {
            (Some(json), _) => Some(SecretSource::Value(json)),
            (None, Some(arn)) => Some(SecretSource::Arn(arn)),
            (None, None) => None,
        };
        let server = DatabaseServer { host, port, name, ssl_mode, ssl_root_cert };
        Ok(DatabaseSettings::Server { server, secret, admin })
    }
}

/// The user of a database secret, `{"username", "password"}` (RDS's managed master secret, or the
/// application role's).
#[derive(serde::Deserialize)]
pub struct SecretUser {
    /// The user.
    pub username: String,
    /// Its password.
    pub password: String,
}

impl SecretUser {
    /// Reads the secret's JSON; the error never quotes it.
    pub fn parse(secret: &str) -> Result<SecretUser, String> {
        serde_json::from_str(secret).map_err(|_| {
            "the database secret is not the JSON of a database secret ({\"username\", \"password\"})".to_owned()
        })
    }
}

impl DatabaseServer {
    /// Connect options for this server as the user of `secret`, the JSON of RDS's managed
    /// master secret.
    pub fn options(&self, secret: &str) -> Result<PgConnectOptions, String> {
        let master = SecretUser::parse(secret)?;
        let options = PgConnectOptions::new_without_pgpass()
            .host(&self.host)
            .port(self.port)
            .database(&self.name)
            .username(&master.username)
            .password(&master.password)
            .ssl_mode(self.ssl_mode);
        Ok(match &self.ssl_root_cert {
            Some(path) => options.ssl_root_cert(path),
            None => options,
        })
    }
}

/// The AWS settings the storage zones (S3) and the functions' secret reader (Secrets Manager)
/// take from their environment, as Lambda and ECS give them or pointing at an emulator. Unset
/// ones fall back to the SDKs' own chains (container and web-identity credentials).
#[derive(Clone, Default)]
pub struct AwsSettings {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, when both of the
    /// first two are set.
    pub credentials: Option<AwsCredentials>,
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    endpoint: Option<String>,
    endpoint_s3: Option<String>,
    endpoint_secrets_manager: Option<String>,
}

/// Static AWS credentials.
#[derive(Clone)]
pub struct AwsCredentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsSettings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AwsSettings")
            .field("credentials", &self.credentials.as_ref().map(|_| "[redacted]"))
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("endpoint_s3", &self.endpoint_s3)
            .field("endpoint_secrets_manager", &self.endpoint_secrets_manager)
            .finish()
    }
}

impl AwsSettings {
    /// Every variable [`AwsSettings::from_lookup`] reads.
    pub const VARIABLES: [&str; 8] = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    ];

    /// Reads the settings through `lookup` (empty values count as unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> AwsSettings {
        let setting = |name: &str| lookup(name).filter(|value| !value.is_empty());
        AwsSettings {
            credentials: setting("AWS_ACCESS_KEY_ID").zip(setting("AWS_SECRET_ACCESS_KEY")).map(
                |(access_key_id, secret_access_key)| AwsCredentials {
                    access_key_id,
                    secret_access_key,
                    session_token: setting("AWS_SESSION_TOKEN"),
                },
            ),
            region: setting("AWS_REGION").or_else(|| setting("AWS_DEFAULT_REGION")),
            endpoint: setting("AWS_ENDPOINT_URL"),
            endpoint_s3: setting("AWS_ENDPOINT_URL_S3"),
            endpoint_secrets_manager: setting("AWS_ENDPOINT_URL_SECRETS_MANAGER"),
        }
    }

    /// S3's endpoint: `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` (the SDKs'
    /// service-specific endpoint variables); none means AWS's own.
    pub fn s3_endpoint(&self) -> Option<&str> {
        self.endpoint_s3.as_deref().or(self.endpoint.as_deref())
    }

    /// Secrets Manager's endpoint: `AWS_ENDPOINT_URL_SECRETS_MANAGER`, else `AWS_ENDPOINT_URL`.
    pub fn secrets_manager_endpoint(&self) -> Option<&str> {
        self.endpoint_secrets_manager.as_deref().or(self.endpoint.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<DatabaseSettings, String> {
        DatabaseSettings::from_lookup(|name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned()))
    }

    #[test]
    fn the_url_wins_and_is_never_printed() {
        let url = settings(&[("DATABASE_URL", "postgres://u:hunter2@h/d"), ("HIRING_DB_HOST", "x")]).unwrap();
        assert!(matches!(&url, DatabaseSettings::Url(given) if given == "postgres://u:hunter2@h/d"));
        assert!(!format!("{url:?}").contains("hunter2"));
    }

    #[test]
    fn the_deployed_settings_have_the_defaults_and_hide_the_secret() {
        let deployed =
            settings(&[("HIRING_DB_HOST", "db.internal"), ("HIRING_DB_SECRET", r#"{"username":"u","password":"p"}"#)])
                .unwrap();
        let DatabaseSettings::Server { server, secret, admin: None } = &deployed else { panic!("{deployed:?}") };
        assert_eq!((server.host.as_str(), server.port, server.name.as_str()), ("db.internal", 5432, "hiring"));
        assert!(matches!(server.ssl_mode, PgSslMode::Require));
        assert!(!format!("{deployed:?}").contains("\"p\""));
        let SecretSource::Value(json) = secret else { panic!() };
        let options = server.options(json).unwrap();
        assert_eq!((options.get_username(), options.get_database()), ("u", Some("hiring")));
    }

    #[test]
    fn aws_endpoints_fall_back_to_the_general_one_and_credentials_never_print() {
        let vars = [
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "hunter2"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:6000"),
        ];
        let aws = AwsSettings::from_lookup(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()));
        assert_eq!(aws.s3_endpoint(), Some("http://127.0.0.1:6000"));
        assert_eq!(aws.secrets_manager_endpoint(), Some("http://127.0.0.1:5000"));
        assert_eq!(aws.region.as_deref(), Some("eu-west-1"));
        assert!(!format!("{aws:?}").contains("hunter2"));
        assert!(AwsSettings::VARIABLES.iter().all(|name| name.starts_with("AWS_")));
    }

    #[test]
    fn wrong_or_missing_settings_say_what_to_give() {
        assert!(settings(&[]).unwrap_err().contains("DATABASE_URL is not set"));
        let no_host = settings(&[("HIRING_DB_SECRET_ARN", "arn:aws:secretsmanager:x")]).unwrap_err();
        assert!(no_host.contains("HIRING_DB_HOST"), "{no_host}");
        let port = settings(&[("HIRING_DB_HOST", "h"), ("HIRING_DB_SECRET", "{}"), ("HIRING_DB_PORT", "x")]);
        assert!(port.unwrap_err().contains("HIRING_DB_PORT `x`"));
        let server = DatabaseServer {
            host: "h".into(),
            port: 1,
            name: "n".into(),
            ssl_mode: PgSslMode::Disable,
            ssl_root_cert: None,
        };
        assert!(server.options("hunter2").unwrap_err().contains("not the JSON of a database secret"));
    }
}
