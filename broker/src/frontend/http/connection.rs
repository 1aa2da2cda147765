//! One HTTP connection: hyper's HTTP/1.1 server over a glommio stream, and
//! the watchdog that enforces its deadlines (hyper's own header timer needs
//! a `Send + Sync` timer that glommio lacks).

use std::convert::Infallible;
use std::rc::Rc;
use std::time::{Duration, Instant};

use std::sync::Arc;

use glommio::net::TcpStream;
use hyper::server::conn::http1;

use shoal_protocol::error::ErrorCode;

use super::common::ConnState;
use super::io_adapter::{ConnClock, HyperIo};
use super::json::HttpError;
use super::limits::{HEADER_READ_MS_MAX, IDLE_MS_MAX};
use super::router;
use crate::frontend::accept;
use crate::frontend::admission::{Admitted, Refused};
use crate::frontend::tls::{secure, Refusal, TlsAcceptor};
use crate::metadata::acl::Principal;
use crate::metadata::security::Caller;
use crate::metrics::add;
use crate::metrics::counters::http as http_metrics;
use crate::shard::Shard;

/// How often the watchdog checks a connection's deadlines.
const WATCHDOG_TICK_MS: u64 = 250;

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    HeaderRead,
    Idle,
    ShuttingDown,
}

/// Accepts HTTP connections on this shard's socket of the shared HTTP port
/// (SO_REUSEPORT spreads connections over shards) until the task is dropped
/// on shutdown.
pub async fn accept_loop(
    shard: Rc<Shard>,
    listener: glommio::net::TcpListener,
    queue: glommio::TaskQueueHandle,
    tls: Option<Arc<TlsAcceptor>>,
) {
    let (serving, refusing) = (shard.clone(), shard.clone());
    accept::accept_loop(
        shard,
        listener,
        queue,
        "http",
        move |stream, _peer, admitted| serve(serving.clone(), stream, admitted, tls.clone()),
        move |stream, refused| refuse(refusing.clone(), stream, refused),
    )
    .await
}

/// Answers a refused connection with 503 `too_many_connections` and closes
/// it (without reading its request: the reply is written at once).
async fn refuse(shard: Rc<Shard>, mut stream: TcpStream, refused: Refused) {
    use futures_lite::io::AsyncWriteExt;
    add(&shard.metrics().connections_refused, 1);
    let e = HttpError::from_code(ErrorCode::TooManyConnections, refused.to_string());
    let body = format!(
        "{{\"code\":\"{}\",\"error_code\":{},\"message\":{}}}",
        e.code,
        e.error_code,
        serde_json::Value::String(e.message.clone())
    );
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.close().await;
}

/// Serves one admitted HTTP connection until it closes or a deadline
/// passes: HTTPS when the listener has TLS (plain HTTP to it is answered
/// with 400 saying so).
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, _admitted: Admitted, tls: Option<Arc<TlsAcceptor>>) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    let Ok(peer) = stream.peer_addr() else { return };
    let secured = match secure(stream, tls.as_deref()).await {
        Ok(s) => s,
        Err(refusal) => return refuse_handshake(refusal).await,
    };
    let principal = secured.client_user.map_or(Principal::Anonymous, Principal::User);
    let _open = http_metrics::ConnectionGuard::open();
    let clock = ConnClock::new(Instant::now());
    let io = HyperIo::new(secured.stream, clock.clone());
    let conn_state = Rc::new(ConnState::new(&shard, Caller::new(principal, peer.ip())));
    let service = {
        let (shard, clock) = (shard.clone(), clock.clone());
        hyper::service::service_fn(move |req| {
            let (shard, clock, conn_state) = (shard.clone(), clock.clone(), conn_state.clone());
            async move {
                let _busy = Busy::enter(&clock);
                Ok::<_, Infallible>(router::route(&shard, &conn_state, req).await)
            }
        })
    };
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    let served = async { Ok::<_, Expired>(conn.await) };
    let watched = async { Err::<Result<(), hyper::Error>, _>(watchdog(&shard, &clock).await) };
    match futures_lite::future::or(served, watched).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "http connection ended with an error"),
        Err(expired) => {
            http_metrics::count_deadline_close();
            tracing::debug!(?expired, "http connection closed by its deadline");
        }
    }
}

/// Answers plain HTTP sent to an HTTPS port with a 400 in plain text (what
/// curl then prints), and drops a failed handshake (rustls sent its alert).
async fn refuse_handshake(refusal: Refusal) {
    use futures_lite::io::AsyncWriteExt;
    match refusal {
        Refusal::Plaintext { mut stream, .. } => {
            let body = "this port requires TLS: use https://\n";
            let head = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.close().await;
        }
        Refusal::Failed(reason) => tracing::debug!(reason, "https handshake failed"),
    }
}

/// Marks a request as in service for the watchdog; unmarks it on drop, so a
/// request whose connection dies mid-way is unmarked too.
struct Busy(Rc<ConnClock>);

impl Busy {
    fn enter(clock: &Rc<ConnClock>) -> Busy {
        clock.busy.set(clock.busy.get() + 1);
        clock.head_started.set(None);
        Busy(clock.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.set(self.0.busy.get().saturating_sub(1));
        self.0.last_io.set(Instant::now());
    }
}

/// Returns when the connection overstays a deadline (dropping the hyper
/// connection then closes the socket).
async fn watchdog(shard: &Shard, clock: &ConnClock) -> Expired {
    loop {
        crate::runtime::sleep(Duration::from_millis(WATCHDOG_TICK_MS)).await;
        if let Some(expired) = deadline_passed(clock, shard.is_shutting_down(), Instant::now()) {
            return expired;
        }
    }
}

/// The pure deadline check behind [`watchdog`].
fn deadline_passed(clock: &ConnClock, shutting_down: bool, now: Instant) -> Option<Expired> {
    let idle = clock.busy.get() == 0;
    if let Some(started) = clock.head_started.get() {
        if now.saturating_duration_since(started) > Duration::from_millis(HEADER_READ_MS_MAX) {
            return Some(Expired::HeaderRead);
        }
        return None;
    }
    if idle && shutting_down {
        return Some(Expired::ShuttingDown);
    }
    let quiet = now.saturating_duration_since(clock.last_io.get());
    (idle && quiet > Duration::from_millis(IDLE_MS_MAX)).then_some(Expired::Idle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head that trickles in past its deadline is cut off even while bytes
    /// keep arriving; an idle connection is cut off only when nothing runs.
    #[test]
    fn deadlines() {
        let t0 = Instant::now();
        let clock = ConnClock::new(t0);
        let late = t0 + Duration::from_millis(HEADER_READ_MS_MAX + 1);
        assert_eq!(deadline_passed(&clock, false, late), None);
        clock.head_started.set(Some(t0));
        clock.last_io.set(late);
        assert_eq!(deadline_passed(&clock, false, late), Some(Expired::HeaderRead));
        clock.head_started.set(None);
        clock.busy.set(1);
        let quiet = late + Duration::from_millis(IDLE_MS_MAX + 1);
        assert_eq!(deadline_passed(&clock, true, quiet), None);
        clock.busy.set(0);
        assert_eq!(deadline_passed(&clock, false, quiet), Some(Expired::Idle));
        assert_eq!(deadline_passed(&clock, true, late), Some(Expired::ShuttingDown));
    }
}
