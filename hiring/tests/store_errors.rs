//! How a zone on S3 reports what the store answered: a real object_store client against a
//! small HTTP server on 127.0.0.1 that answers every request with one S3 error response
//! (the shapes of "Error responses", Amazon S3 API Reference). Transient answers must come
//! out retryable (Step Functions retries `hiring.Retryable`), the rest not, and a missing
//! bucket gets its own error.

use std::io::{Read, Write};
use std::net::TcpListener;

use hiring::error::Error;
use hiring::zones::Zone;

/// Serves `status` with an S3 error body of `code` to every request, until the test ends.
fn s3_answering(status: &str, code: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = listener.local_addr().unwrap();
    let body =
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>test</Message></Error>");
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(64) {
            let mut stream = stream;
            let mut request = [0u8; 64 * 1024];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(response.as_bytes());
        }
    });
    format!("http://{address}")
}

fn zone(endpoint: &str) -> Zone {
    let settings = [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("HIRING_STORE_MAX_RETRIES", "0"),
    ];
    Zone::open_with("s3://bucket/raw", |name| settings.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
        .expect("the zone opens")
}

#[tokio::test]
async fn throttling_and_server_errors_are_retryable() {
    for (status, code) in [("503 Slow Down", "SlowDown"), ("500 Internal Server Error", "InternalError")] {
        let error = zone(&s3_answering(status, code)).put("jobs/1.csv", b"1,x\n".to_vec()).await.unwrap_err();
        assert!(matches!(error, Error::Store { .. }), "{status}: {error}");
        assert!(error.is_retryable(), "{status} is transient: {error}");
        assert!(error.to_string().contains("s3://bucket/raw/jobs/1.csv"), "the message names the object: {error}");
    }
}

#[tokio::test]
async fn a_refused_call_is_not_retryable() {
    let error = zone(&s3_answering("403 Forbidden", "AccessDenied")).get("jobs/1.csv").await.unwrap_err();
    assert!(matches!(error, Error::Store { .. }), "{error}");
    assert!(!error.is_retryable(), "retrying a denied call cannot help: {error}");
}

#[tokio::test]
async fn a_missing_bucket_and_a_missing_object_are_told_apart() {
    let bucket = zone(&s3_answering("404 Not Found", "NoSuchBucket")).get("jobs/1.csv").await.unwrap_err();
    assert!(matches!(bucket, Error::BucketNotFound { .. }), "{bucket}");
    let object = zone(&s3_answering("404 Not Found", "NoSuchKey")).get("jobs/1.csv").await.unwrap_err();
    assert!(matches!(object, Error::ObjectNotFound(_)), "{object}");
}

#[tokio::test]
async fn a_connection_that_fails_is_retryable() {
    // A port nothing listens on: the connection is refused at once.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let error = zone(&format!("http://{closed}")).put("jobs/1.csv", b"1,x\n".to_vec()).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
}
