//! `/metrics`, `/healthz` and `/readyz`, on a port anyone who reaches the pod can connect to, on
//! the runtime that also renews the lease. So every connection is bounded: its request headers
//! must arrive within [`HEADER_READ_TIMEOUT`] and fit in [`MAX_HEADER_BYTES`], it lives at most
//! [`CONNECTION_LIFETIME`], and at most [`MAX_CONNECTIONS`] are open at once — a new one closes the
//! oldest, so a flood of half-sent requests cannot keep a probe out.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may stay open, whatever it does.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// The most bytes a request's headers may take (hyper's smallest read buffer).
pub const MAX_HEADER_BYTES: usize = 8192;
/// The most connections open at once; one more closes the oldest.
pub const MAX_CONNECTIONS: usize = 128;

/// Readiness: set once the caches are synced (leader) or while waiting for the lease (standby).
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Marks the process ready or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// The open connections, oldest first, each with what closes it.
#[derive(Default)]
struct Open {
    next: u64,
    by_age: BTreeMap<u64, CancellationToken>,
}

impl Open {
    /// Registers a new connection, closing the oldest if there are already `max`.
    fn admit(&mut self, max: usize) -> (u64, CancellationToken) {
        while self.by_age.len() >= max {
            if let Some((_, oldest)) = self.by_age.pop_first() {
                oldest.cancel();
            }
        }
        let id = self.next;
        self.next += 1;
        let close = CancellationToken::new();
        self.by_age.insert(id, close.clone());
        (id, close)
    }
}

/// Serves the endpoints on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health });
    let open = Arc::new(Mutex::new(Open::default()));
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::debug!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (id, close) = open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(MAX_CONNECTIONS);
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEADER_BYTES)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let (open, shutdown) = (open.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_LIFETIME, connection) => {}
                () = close.cancelled() => {}
                () = shutdown.cancelled() => {}
            }
            open.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .by_age
                .remove(&id);
        });
    }
}

/// Binds the endpoints' address.
pub async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.health.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_over_the_limit_closes_the_oldest() {
        let mut open = Open::default();
        let (first, close_first) = open.admit(2);
        let (_, close_second) = open.admit(2);
        let (third, _) = open.admit(2);
        assert!(close_first.is_cancelled() && !close_second.is_cancelled());
        assert_eq!(
            open.by_age.keys().copied().collect::<Vec<_>>(),
            [first + 1, third]
        );
    }
}
