//! Where PostgreSQL is, as the API and the Lambda functions read it from their environment:
//! one owner for the variables, their defaults and their errors.
//!
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
    },
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseSettings::Url(_) => formatter.write_str("Url([redacted])"),
            DatabaseSettings::Server { server, secret } => {
                formatter.debug_struct("Server").field("server", server).field("secret", secret).finish()
            }
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
        Ok(DatabaseSettings::Server { server: DatabaseServer { host, port, name, ssl_mode }, secret })
    }
}

/// The user of RDS's managed master secret.
#[derive(serde::Deserialize)]
struct Master {
    username: String,
    password: String,
}

impl DatabaseServer {
    /// Connect options for this server as the user of `secret`, the JSON of RDS's managed
    /// master secret.
    pub fn options(&self, secret: &str) -> Result<PgConnectOptions, String> {
        let master: Master = serde_json::from_str(secret)
            .map_err(|_| "the database secret is not the JSON of a database secret ({\"username\", \"password\"})")?;
        Ok(PgConnectOptions::new_without_pgpass()
            .host(&self.host)
            .port(self.port)
            .database(&self.name)
            .username(&master.username)
            .password(&master.password)
            .ssl_mode(self.ssl_mode))
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
        let DatabaseSettings::Server { server, secret } = &deployed else { panic!("{deployed:?}") };
        assert_eq!((server.host.as_str(), server.port, server.name.as_str()), ("db.internal", 5432, "hiring"));
        assert!(matches!(server.ssl_mode, PgSslMode::Require));
        assert!(!format!("{deployed:?}").contains("\"p\""));
        let SecretSource::Value(json) = secret else { panic!() };
        let options = server.options(json).unwrap();
        assert_eq!((options.get_username(), options.get_database()), ("u", Some("hiring")));
    }

    #[test]
    fn wrong_or_missing_settings_say_what_to_give() {
        assert!(settings(&[]).unwrap_err().contains("DATABASE_URL is not set"));
        let no_host = settings(&[("HIRING_DB_SECRET_ARN", "arn:aws:secretsmanager:x")]).unwrap_err();
        assert!(no_host.contains("HIRING_DB_HOST"), "{no_host}");
        let port = settings(&[("HIRING_DB_HOST", "h"), ("HIRING_DB_SECRET", "{}"), ("HIRING_DB_PORT", "x")]);
        assert!(port.unwrap_err().contains("HIRING_DB_PORT `x`"));
        let server = DatabaseServer { host: "h".into(), port: 1, name: "n".into(), ssl_mode: PgSslMode::Disable };
        assert!(server.options("hunter2").unwrap_err().contains("not the JSON of a database secret"));
    }
}
