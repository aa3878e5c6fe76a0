//! TLS to the database, verified: with `HIRING_DB_SSLMODE=verify-full`, the API and
//! the functions connect only to a server whose certificate chains to the authorities they
//! trust and names the host: a test CA here (`HIRING_DB_SSLROOTCERT`), Amazon RDS's by default.
//!
//! The server is a cluster of the test's own that takes TLS connections only, with a
//! certificate for 127.0.0.1 signed by a CA the test makes.

use devenv::pg::Cluster;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use sqlx::Connection;

struct Authority {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

fn authority(name: &str) -> Authority {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().expect("a key");
    let certificate = params.clone().self_signed(&key).expect("a CA certificate");
    Authority { params, key, pem: certificate.pem() }
}

/// A server certificate for `names`, signed by `ca`: (certificate PEM, key PEM).
fn server_certificate(ca: &Authority, names: &[&str]) -> (String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("parameters");
    params.subject_alt_names = names
        .iter()
        .map(|name| match name.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*name).try_into().expect("a DNS name")),
        })
        .collect();
    let key = KeyPair::generate().expect("a key");
    let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
    let certificate = params.signed_by(&key, &issuer).expect("a server certificate");
    (certificate.pem(), key.serialize_pem())
}

/// A cluster taking only TLS connections (but the superuser's, for setup), with `certificate`.
async fn tls_cluster(dir: &std::path::Path, certificate: (String, String)) -> (Cluster, String) {
    let path = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut cluster = Cluster::start_in(&path).expect("a private PostgreSQL cluster");
        let hba = "local all all trust\nhost all postgres 127.0.0.1/32 trust\n\
                   hostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 127.0.0.1/32 reject\n";
        let settings = "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
                        password_encryption = 'scram-sha-256'\n";
        let files: [(&str, &[u8]); 2] =
            [("server.crt", certificate.0.as_bytes()), ("server.key", certificate.1.as_bytes())];
        cluster.reconfigure(settings, hba, &files).expect("TLS on");
        let admin = cluster.database_url("postgres").expect("the admin database");
        (cluster, admin)
    })
    .await
    .expect("the cluster starts")
}

/// Connects as the stack configures the API: the server's address, the secret's JSON, the
/// given sslmode and, when given, the authorities' file.
async fn connect(port: u16, mode: &str, root: Option<&std::path::Path>) -> Result<(), String> {
    let root = root.map(|p| p.display().to_string());
    let vars = [
        ("HIRING_DB_HOST", Some("127.0.0.1".to_owned())),
        ("HIRING_DB_PORT", Some(port.to_string())),
        ("HIRING_DB_NAME", Some("postgres".to_owned())),
        ("HIRING_DB_SSLMODE", Some(mode.to_owned())),
        ("HIRING_DB_SSLROOTCERT", root),
        ("HIRING_DB_SECRET", Some(r#"{"username": "hiring_app", "password": "tls-password-0001"}"#.to_owned())),
    ];
    let access =
        secrets::DatabaseAccess::from_lookup(|name| vars.iter().find(|(n, _)| *n == name).and_then(|(_, v)| v.clone()))
            .map_err(|e| e.to_string())?;
    let options = access.options().await.map_err(|e| e.to_string())?;
    let mut connection = sqlx::PgConnection::connect_with(&options).await.map_err(|e| e.to_string())?;
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut connection)
        .await
        .map_err(|e| e.to_string())?;
    if ssl { Ok(()) } else { Err("the connection is not encrypted".to_owned()) }
}

#[tokio::test]
async fn verify_full_accepts_the_trusted_authority_and_refuses_any_other() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let test_ca = authority("hiring test CA");
    let other_ca = authority("another CA");
    let (cluster, admin_url) = tls_cluster(dir.path(), server_certificate(&test_ca, &["127.0.0.1", "localhost"])).await;
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.expect("the superuser connects");
    sqlx::query("CREATE ROLE hiring_app LOGIN PASSWORD 'tls-password-0001'").execute(&mut admin).await.unwrap();
    let trusted = dir.path().join("test-ca.pem");
    let untrusted = dir.path().join("other-ca.pem");
    std::fs::write(&trusted, &test_ca.pem).unwrap();
    std::fs::write(&untrusted, &other_ca.pem).unwrap();
    let port = cluster.port();

    connect(port, "verify-full", Some(&trusted)).await.expect("verify-full with the server's CA connects");
    let other = connect(port, "verify-full", Some(&untrusted)).await.expect_err("another CA is accepted");
    assert!(other.to_lowercase().contains("certificate"), "{other}");
    // Without HIRING_DB_SSLROOTCERT, the authorities are RDS's, which did not sign this server.
    let rds = connect(port, "verify-full", None).await.expect_err("the RDS bundle accepted a test certificate");
    assert!(rds.to_lowercase().contains("certificate"), "{rds}");
    // `require` encrypts without checking who answers: what the stages no longer use.
    connect(port, "require", Some(&untrusted)).await.expect("require does not verify");
    // The server does not take unencrypted connections from the application's user.
    assert!(connect(port, "disable", None).await.is_err());
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_for_another_host() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let test_ca = authority("hiring test CA");
    let (cluster, admin_url) = tls_cluster(dir.path(), server_certificate(&test_ca, &["db.example.com"])).await;
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.expect("the superuser connects");
    sqlx::query("CREATE ROLE hiring_app LOGIN PASSWORD 'tls-password-0001'").execute(&mut admin).await.unwrap();
    let trusted = dir.path().join("test-ca.pem");
    std::fs::write(&trusted, &test_ca.pem).unwrap();
    let error =
        connect(cluster.port(), "verify-full", Some(&trusted)).await.expect_err("a certificate for another name");
    assert!(error.contains("not valid for name"), "{error}");
}
