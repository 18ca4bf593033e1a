//! Serving connections with the limits a public endpoint needs.
//!
//! Write keys are public, so the tracking API meets clients that are slow or hostile on
//! purpose: a header trickled one byte every few seconds, idle keep-alive sockets by the
//! hundred, a body that never ends. `axum::serve` holds all of them open indefinitely, and
//! with them file descriptors until `/health` itself cannot be answered. So Rapport runs its
//! own accept loop over hyper:
//! - the request head (and, between requests, an idle keep-alive connection) must arrive
//!   within `header_read_timeout`; a body within `body_read_timeout`;
//! - at most `max_connections` are open, and at most `max_connections_per_ip` from one peer
//!   address; a connection beyond either gets `503` with a JSON body and is closed;
//! - on shutdown, new connections are refused and those open get `shutdown_grace` to
//!   finish their requests before they are closed.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// Connection limits. Defaults suit a server facing browsers and SDKs directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionLimits {
    /// Seconds a client has to send a request's head, and that an idle keep-alive
    /// connection stays open. Default 10.
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send a request's whole body. Default 30.
    pub body_read_timeout_secs: u64,
    /// Connections open at once; more are refused. Default 1,024.
    pub max_connections: usize,
    /// Connections open at once from one peer address. Default 256.
    pub max_connections_per_ip: usize,
    /// Seconds open connections get to finish at shutdown. Default 10.
    pub shutdown_grace_secs: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            max_connections: 1024,
            max_connections_per_ip: 256,
            shutdown_grace_secs: 10,
        }
    }
}

impl ConnectionLimits {
    /// Checks the values; `Err` names the field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("body_read_timeout_secs", self.body_read_timeout_secs),
            ("max_connections", self.max_connections as u64),
            ("max_connections_per_ip", self.max_connections_per_ip as u64),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err((field, format!("`{field}` must be at least 1")));
            }
        }
        Ok(())
    }
}

/// Open connections, in total and per peer address.
#[derive(Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// A place among the open connections, given back when the connection ends.
struct Slot {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
}

impl Slot {
    fn take(open: &Arc<Mutex<Open>>, ip: IpAddr, limits: &ConnectionLimits) -> Option<Slot> {
        let mut o = open.lock().expect("connection table");
        let mine = o.per_ip.get(&ip).copied().unwrap_or(0);
        if o.total >= limits.max_connections || mine >= limits.max_connections_per_ip {
            return None;
        }
        o.total += 1;
        *o.per_ip.entry(ip).or_default() += 1;
        Some(Slot {
            open: open.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut o = self.open.lock().expect("connection table");
        o.total -= 1;
        if let Some(n) = o.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                o.per_ip.remove(&self.ip);
            }
        }
    }
}

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 93\r\n\r\n{\"error\":{\"code\":\"too_many_connections\",\"message\":\"too many open connections; retry later\"}}";

/// Serves `app` on `listener` until `shutdown` completes, then lets open connections finish
/// for at most `shutdown_grace_secs`. Handlers can read the peer address with
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        Duration::from_secs(limits.body_read_timeout_secs),
    ));
    // HTTP/1.1 only, as every tracking SDK speaks it; hyper's own builder starts the header
    // timeout as soon as a connection waits for a request (the protocol-sniffing builder
    // would first wait, without a timeout, for bytes).
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs))
        .keep_alive(true);
    let open = Arc::new(Mutex::new(Open::default()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was
                    // accepted: wait a moment rather than spin.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = Slot::take(&open, peer.ip(), &limits) else {
            metrics::counter!("rapport_connections_refused_total").increment(1);
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    let _ = stream.write_all(REFUSAL).await;
                    let _ = stream.shutdown().await;
                })
                .await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            },
        ));
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let grace = Duration::from_secs(limits.shutdown_grace_secs);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            seconds = limits.shutdown_grace_secs,
            "connections still open after the shutdown grace period were closed"
        );
    }
    Ok(())
}
