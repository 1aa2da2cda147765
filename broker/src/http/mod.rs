//! The HTTP/JSON API and Prometheus `/metrics`, served by every shard.
//!
//! hyper 1.x parses and writes HTTP/1.1; each accepted connection runs
//! `http1::Builder::serve_connection` in a glommio task on the shard that
//! accepted it (no `Send` needed), through [`io_adapter`]. Handlers call the
//! same broker service functions as the native protocol (`handlers::produce`,
//! `handlers::fetch`, the topic catalogue on shard 0, the mesh), so both
//! front doors share one implementation of every operation.
//!
//! | module         | endpoints                                                     |
//! |----------------|---------------------------------------------------------------|
//! | [`router`]     | method + path dispatch, query strings, body reading           |
//! | [`topics`]     | `POST/GET /topics`, `GET/DELETE /topics/:name`                |
//! | [`messages`]   | `POST /topics/:name/messages`                                 |
//! | [`poll`]       | `GET /topics/:name/poll` (group or partition), `POST .../replay` |
//! | [`offsets`]    | `POST /offsets/commit`, `POST /topics/:name/ack` and `/nack`  |
//! | [`groups`]     | `POST /groups/:g/join|heartbeat|leave`, `GET /groups[/:g]`    |
//! | [`quarantine`] | `/topics/:name/quarantine` browse, counts, redrive, purge     |
//! | [`health`]     | `GET /healthz`, `GET /readyz`                                 |
//! | [`metrics`]    | `GET /metrics`: every shard's snapshot over the mesh          |
//! | [`json`]       | the error body and the status of each error class             |
//!
//! Quotas: publishes are charged to the connection's byte rate
//! (`limits.produce_bytes_per_sec_max`), Kafka-style: a publish over the rate
//! is still served and its reply carries `throttle_time_ms`; a publish sent
//! on that connection before the throttle time has passed is refused with
//! 429 `throttled` and `Retry-After`, so a client that ignores the hint is
//! held back anyway.
//!
//! Bounds: a request body is capped at [`HTTP_BODY_BYTES_MAX`] (413 beyond,
//! checked on `Content-Length` and again while reading a chunked body); a
//! request head must arrive within [`HEADER_READ_MS_MAX`] of its first byte
//! and a body within [`BODY_READ_MS_MAX`]; a connection with no request in
//! service and no traffic for [`IDLE_MS_MAX`] is closed. hyper's own
//! header-read timer needs a `Send + Sync` timer that glommio lacks, so these
//! deadlines are enforced here by a per-connection watchdog on glommio's
//! timers; without it a slow client could hold a connection forever.
#![deny(unsafe_code)]

pub mod groups;
pub mod health;
pub mod io_adapter;
pub mod json;
pub mod messages;
pub mod metrics;
pub mod offsets;
pub mod poll;
pub mod quarantine;
pub mod router;
pub mod topics;

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::net::TcpStream;
use hyper::server::conn::http1;

use crate::quota::ByteRate;
use crate::shard::Shard;
use io_adapter::{ConnClock, HyperIo};

/// Largest request body accepted, in bytes.
pub const HTTP_BODY_BYTES_MAX: usize = 8 << 20;
/// Longest a client may take from the first byte of a request head to its end.
pub const HEADER_READ_MS_MAX: u64 = 10_000;
/// Longest a client may take to send a request body once its head arrived.
pub const BODY_READ_MS_MAX: u64 = 30_000;
/// A connection with no request in service and no traffic for this long is closed.
pub const IDLE_MS_MAX: u64 = 60_000;
/// How often the watchdog checks a connection's deadlines.
const WATCHDOG_TICK_MS: u64 = 250;
/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_RETRY_MS: u64 = 10;

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
) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if shard.shutting_down.get() {
                    continue;
                }
                if let Ok(task) = glommio::spawn_local_into(serve(shard.clone(), stream), queue) {
                    task.detach();
                }
            }
            Err(e) => {
                tracing::warn!(shard = shard.id, error = %e, "http accept failed");
                crate::runtime::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
            }
        }
    }
}

/// Serves one accepted HTTP connection until it closes or a deadline passes.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    let _open = metrics::ConnectionGuard::open();
    let clock = ConnClock::new(Instant::now());
    let io = HyperIo::new(stream, clock.clone());
    let conn_state = Rc::new(ConnState::new(&shard));
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
            metrics::count_deadline_close();
            tracing::debug!(?expired, "http connection closed by its deadline");
        }
    }
}

/// Per-connection state the endpoints share.
pub struct ConnState {
    /// The connection's publish byte rate (`limits.produce_bytes_per_sec_max`).
    pub publish_quota: RefCell<ByteRate>,
    /// Until this wall-clock time (ms) the connection is throttled: publishes
    /// are refused with 429 and `Retry-After`.
    pub throttled_until_ms: Cell<i64>,
}

impl ConnState {
    fn new(shard: &Shard) -> ConnState {
        let rate = shard.config.limits.produce_bytes_per_sec_max;
        ConnState {
            publish_quota: RefCell::new(ByteRate::new(rate, crate::runtime::now_ms())),
            throttled_until_ms: Cell::new(0),
        }
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
        if let Some(expired) = deadline_passed(clock, shard.shutting_down.get(), Instant::now()) {
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
