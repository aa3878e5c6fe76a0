//! The API's accept loop, in place of `axum::serve`, which bounds neither how long a client may
//! take to send its request headers nor how many connections it holds: 200 clients sending a
//! byte every 3 s held their connections for ever. Each connection is served by hyper (HTTP/1,
//! as the load balancer speaks to its targets) with a header-read timeout on its timer,
//! and at most [`ConnectionLimits::max_connections`] are open at once (a further client waits
//! in the listen backlog until one closes). Shutdown stops accepting and lets the open
//! connections finish their requests (hyper-util's graceful shutdown).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long a client may take over its request headers, and how many connections may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `HIRING_HEADER_READ_TIMEOUT_SECS` (default 10): a client that has not sent a whole request
    /// header within it, on a new connection or an idle kept-alive one, is disconnected.
    pub header_read_timeout: Duration,
    /// `HIRING_MAX_CONNECTIONS` (default 512): connections open at once.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits { header_read_timeout: Duration::from_secs(10), max_connections: 512 }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then waits for the open connections'
/// requests to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // HTTP/1 only: the load balancer speaks HTTP/1.1 to its targets, and detecting the version
    // would read the first bytes before hyper's header timer starts, so a client sending
    // nothing at all would hold its connection for ever.
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Too many open files and the like: wait a little instead of spinning.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "a connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
