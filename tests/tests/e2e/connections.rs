//! The API's own accept loop (`api::serve`): a client that trickles its request headers is
//! disconnected within the header-read timeout while others are served, and the connection
//! cap holds a further client back only until a connection closes.

use std::time::{Duration, Instant};

use api::serve::ConnectionLimits;
use api::state::AppState;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The API served by `api::serve` with `limits`; its address.
async fn serve(pool: PgPool, limits: ConnectionLimits) -> (std::net::SocketAddr, tempfile::TempDir) {
    let data_dir = tempfile::tempdir().unwrap();
    let settings = crate::helpers::settings(&pool, data_dir.path());
    let state = AppState::new(pool, settings).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(api::serve::serve(listener, api::app(state), limits, std::future::pending()));
    (address, data_dir)
}

/// Sends `GET /health` headers one byte every `pace`, until the server closes the connection
/// (then the time it took) or `give_up` passes (then `None`).
async fn trickle(address: std::net::SocketAddr, pace: Duration, give_up: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ";
    let mut buffer = [0u8; 256];
    for byte in request.iter().chain(std::iter::repeat(&b'a')) {
        if started.elapsed() > give_up {
            return None;
        }
        if stream.write_all(&[*byte]).await.is_err() {
            return Some(started.elapsed());
        }
        // Closed by the server: a read answers at once (end of stream, or a 408 then the end).
        if let Ok(read) = tokio::time::timeout(pace, stream.read(&mut buffer)).await
            && read.map_or(true, |n| n == 0 || buffer[..n].starts_with(b"HTTP/1.1 408"))
        {
            return Some(started.elapsed());
        }
    }
    None
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_client_trickling_its_headers_is_closed_within_the_timeout_while_another_is_served(pool: PgPool) {
    let limits = ConnectionLimits { header_read_timeout: Duration::from_secs(1), max_connections: 64 };
    let (address, _dir) = serve(pool, limits).await;
    let slow = tokio::spawn(trickle(address, Duration::from_millis(200), Duration::from_secs(10)));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let served = client.get(format!("http://{address}/health")).send().await.unwrap();
    assert_eq!(served.status(), 200, "another client is served meanwhile");
    let closed = slow.await.unwrap().expect("the slow client was disconnected");
    assert!(closed < Duration::from_secs(3), "closed after {closed:?}, for a 1 s header timeout");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn the_connection_cap_holds_a_client_back_until_a_connection_closes(pool: PgPool) {
    let limits = ConnectionLimits { header_read_timeout: Duration::from_secs(1), max_connections: 2 };
    let (address, _dir) = serve(pool, limits).await;
    // Two silent connections take the two places.
    let silent = [TcpStream::connect(address).await.unwrap(), TcpStream::connect(address).await.unwrap()];
    let started = Instant::now();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let answer = client.get(format!("http://{address}/health")).send().await.expect("served within 10 s");
    let waited = started.elapsed();
    assert_eq!(answer.status(), 200);
    assert!(waited >= Duration::from_millis(700), "the third client waited for a place: {waited:?}");
    assert!(waited < Duration::from_secs(5), "and got one when the silent ones were closed: {waited:?}");
    drop(silent);
}
