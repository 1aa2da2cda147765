//! One Kafka client connection: read frames, serve requests, write the
//! responses in request order.
//!
//! Kafka requires the responses on a connection in the order of the
//! requests. Requests are still pipelined: the reader decodes each frame,
//! takes its bytes from the connection's and the shard's budgets and spawns
//! its handler at once, so many requests are served concurrently; the
//! handlers' tasks go into a bounded FIFO ([`REQUESTS_IN_FLIGHT_MAX`]) and
//! the writer awaits them in that order. Requests for one partition keep
//! their order because handlers reach the partition (or the mesh's FIFO
//! inbox) in spawn order before their first suspension point.
//!
//! The memory rules are the native connection's
//! (`frontend/native/connection.rs`):
//! - a frame larger than one read chunk (64 KiB) reserves its whole length
//!   from the shard's receive pool as soon as its prefix arrives (after the
//!   per-API cap check), before the rest is read, and holds it until its
//!   request is answered; a smaller frame takes its bytes from the shard's
//!   in-flight budget once complete; every frame also takes its bytes from
//!   the connection's budget. While a budget is spent the socket is not
//!   read, so TCP holds the client back;
//! - a frame must arrive within `limits.frame_read_ms_max` of its
//!   reservation, and a connection with nothing in flight and nothing
//!   received for `limits.connection_idle_ms_max` is closed;
//! - a fetch response holds at most [`super::context::KafkaConn::fetch_response_bytes_max`]
//!   of records (`limits.frame_bytes_max`), and at most
//!   [`REQUESTS_IN_FLIGHT_MAX`] responses wait for the writer.
//!
//! Bad input: a frame whose prefix is out of bounds, a request for an API
//! or version not served, or a body that does not decode closes this
//! connection only (after the responses already due), as Kafka's broker
//! does; an ApiVersions request at a version not served is answered (v0,
//! UNSUPPORTED_VERSION) and the connection stays open.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::sync::{Semaphore, StaticPermit};
use glommio::task::JoinHandle;

use super::codec::{decode_request, FrameDecoder, KafkaLimits};
use super::context::{Answer, Door, KafkaConn};
use super::dispatch::serve_request;
use super::records::RecordLimits;
use crate::frontend::admission::Admitted;
use crate::frontend::quota::ByteRate;
use crate::metrics::counters::kafka as kafka_metrics;
use crate::runtime::now_ms;
use crate::shard::Shard;

/// Socket read size.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// Requests read and not yet answered, per connection (Kafka clients keep
/// at most 5 in flight by default).
pub const REQUESTS_IN_FLIGHT_MAX: usize = 32;
/// Small responses are coalesced into one write up to this size.
const WRITE_COALESCE_BYTES: usize = 256 << 10;

/// A request's place in the response order.
enum Pending {
    /// A handler running (or done), with the budgets its frame holds.
    Handler(JoinHandle<Answer>),
    /// An answer known when the frame was read (a refusal).
    Ready(Answer),
}

/// The limits a connection applies, from the broker's configuration.
fn connection_limits(shard: &Shard) -> (KafkaLimits, RecordLimits) {
    let frame_max = shard.config().limits.frame_bytes_max;
    let defaults = KafkaLimits::default();
    let limits = KafkaLimits {
        produce_frame_len_max: frame_max,
        frame_len_max: defaults.frame_len_max.min(frame_max),
        request_elements_max: defaults.request_elements_max,
    };
    let records = RecordLimits {
        batch_len_max: frame_max,
        ..RecordLimits::default()
    };
    (limits, records)
}

/// Serves one admitted connection until it closes.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr, door: Door, _admitted: Admitted) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    let _open = kafka_metrics::ConnectionGuard::open();
    let (reader, writer) = futures_lite::io::split(stream);
    let (tx, rx) = local_channel::new_bounded::<Pending>(REQUESTS_IN_FLIGHT_MAX);
    let in_flight = Rc::new(Cell::new(0usize));
    let write_task = glommio::spawn_local(write_loop(writer, rx, in_flight.clone()));
    let now = now_ms();
    let (limits, record_limits) = connection_limits(&shard);
    let config_limits = &shard.config().limits;
    let conn = Rc::new(KafkaConn {
        shard: shard.clone(),
        door,
        client_host: format!("/{}", peer.ip()),
        limits,
        record_limits,
        batch_limits: shoal_protocol::batch::BatchLimits::default(),
        fetch_response_bytes_max: config_limits.frame_bytes_max,
        produce_quota: ByteRate::new(config_limits.produce_bytes_per_sec_max, now).into(),
        fetch_quota: ByteRate::new(config_limits.fetch_bytes_per_sec_max, now).into(),
        throttle_ms: 0.into(),
    });
    read_loop(conn, reader, tx, in_flight).await;
    // The reader dropped its sender; the writer drains what is queued
    // (awaiting the handlers still running) and stops.
    write_task.await;
}

/// What a connection's reader keeps between reads.
struct Reader {
    decoder: FrameDecoder,
    /// The receive-pool reservation of the large frame being read.
    reserved: Option<StaticPermit>,
    /// When the frame being read started (after its reservation).
    frame_started: Option<Instant>,
    last_read: Instant,
    /// Requests read and not yet written.
    in_flight: Rc<Cell<usize>>,
}

/// Why a read did not return bytes.
enum ReadEnd {
    Closed,
    Expired(&'static str),
}

async fn read_loop(
    conn: Rc<KafkaConn>,
    mut socket: futures_lite::io::ReadHalf<TcpStream>,
    tx: LocalSender<Pending>,
    in_flight: Rc<Cell<usize>>,
) {
    let shard = conn.shard.clone();
    let conn_budget = Rc::new(Semaphore::new(
        shard.config().limits.connection_inflight_bytes_max as u64,
    ));
    let mut r = Reader {
        decoder: FrameDecoder::new(conn.limits),
        reserved: None,
        frame_started: None,
        last_read: Instant::now(),
        in_flight,
    };
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    loop {
        let throttle = conn.throttle_ms.replace(0);
        if throttle > 0 {
            crate::runtime::sleep(Duration::from_millis(throttle)).await;
        }
        if !r.reserve_pending(&shard).await {
            return;
        }
        let n = match r.read(&shard, &mut socket, &mut buf).await {
            Ok(n) => n,
            Err(ReadEnd::Closed) => return,
            Err(ReadEnd::Expired(why)) => {
                kafka_metrics::count_expired();
                tracing::debug!(why, "closing kafka connection");
                return;
            }
        };
        kafka_metrics::count_bytes_in(n as u64);
        if !r.take_frames(&conn, &conn_budget, &tx, &buf[..n]).await {
            return;
        }
    }
}

impl Reader {
    /// Cuts every whole frame out of `input` and queues its request.
    /// False when the connection must close (bad input, or the writer is
    /// gone).
    async fn take_frames(
        &mut self,
        conn: &Rc<KafkaConn>,
        conn_budget: &Rc<Semaphore>,
        tx: &LocalSender<Pending>,
        mut input: &[u8],
    ) -> bool {
        while !input.is_empty() {
            let frame = match self.decoder.decode(&mut input) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    kafka_metrics::count_rejected();
                    kafka_metrics::count_error(-1, e.kafka_code());
                    tracing::debug!(error = %e, "closing kafka connection after a bad frame");
                    let _ = tx.send(Pending::Ready(Answer::Close)).await;
                    return false;
                }
            };
            let large = self.reserved.take();
            self.frame_started = None;
            let frame_len = frame.len() as u64 + 4;
            // The frame is at least a request header long (checked by the
            // decoder), so its API key is readable even when refused.
            let api_key = i16::from_be_bytes([frame[0], frame[1]]);
            let request = match decode_request(frame, &conn.limits) {
                Ok(request) => request,
                Err(refusal) => {
                    kafka_metrics::count_request(api_key);
                    kafka_metrics::count_error(api_key, refusal.error.kafka_code());
                    tracing::debug!(error = %refusal.error, "kafka request refused");
                    if let Some(reply) = refusal.reply {
                        self.in_flight.set(self.in_flight.get() + 1);
                        if tx.send(Pending::Ready(Answer::Reply(reply))).await.is_err() {
                            return false;
                        }
                    }
                    if refusal.close {
                        kafka_metrics::count_rejected();
                        let _ = tx.send(Pending::Ready(Answer::Close)).await;
                        return false;
                    }
                    continue;
                }
            };
            let Some(permits) = admit_frame(&conn.shard, conn_budget, frame_len, large).await else {
                return false;
            };
            self.in_flight.set(self.in_flight.get() + 1);
            let conn = conn.clone();
            let handler = glommio::spawn_local(async move {
                let answer = serve_request(&conn, request).await;
                drop(permits);
                answer
            })
            .detach();
            if tx.send(Pending::Handler(handler)).await.is_err() {
                return false;
            }
        }
        if self.decoder.is_idle() {
            self.frame_started = None;
        } else if self.frame_started.is_none() {
            self.frame_started = Some(Instant::now());
        }
        true
    }

    /// Reserves the whole pending frame in the receive pool when its prefix
    /// announced more than one read chunk (waiting, so not reading, while
    /// the pool is spent). False when the pool is closed.
    async fn reserve_pending(&mut self, shard: &Shard) -> bool {
        let Some(len) = self.decoder.pending_frame_len() else {
            return true;
        };
        if len <= READ_CHUNK_BYTES || self.reserved.is_some() {
            return true;
        }
        match shard.receive_pool().acquire_static_permit(len as u64).await {
            Ok(permit) => {
                self.reserved = Some(permit);
                self.decoder.reserve_pending();
                // The deadline runs from when the broker is ready for the body.
                self.frame_started = Some(Instant::now());
                true
            }
            Err(_) => false,
        }
    }

    /// Reads the next bytes, within the frame deadline while a frame is
    /// being read, or the idle deadline while nothing is in flight.
    async fn read(
        &mut self,
        shard: &Shard,
        socket: &mut futures_lite::io::ReadHalf<TcpStream>,
        buf: &mut [u8],
    ) -> Result<usize, ReadEnd> {
        let limits = &shard.config().limits;
        loop {
            let (deadline, why) = match self.frame_started {
                Some(start) => (
                    Some(start + Duration::from_millis(limits.frame_read_ms_max)),
                    "a frame did not arrive within limits.frame_read_ms_max",
                ),
                None if limits.connection_idle_ms_max > 0 => (
                    Some(self.last_read + Duration::from_millis(limits.connection_idle_ms_max)),
                    "idle for limits.connection_idle_ms_max",
                ),
                None => (None, ""),
            };
            let read = async { Some(socket.read(buf).await) };
            let outcome = match deadline {
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    let timer = async {
                        crate::runtime::sleep(left).await;
                        None
                    };
                    futures_lite::future::or(read, timer).await
                }
                None => read.await,
            };
            match outcome {
                Some(Ok(0)) => return Err(ReadEnd::Closed),
                Some(Ok(n)) => {
                    self.last_read = Instant::now();
                    return Ok(n);
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "kafka connection read failed");
                    return Err(ReadEnd::Closed);
                }
                // A connection waiting for its responses (a long poll, a
                // rebalance) is not idle.
                None if self.frame_started.is_none() && self.in_flight.get() > 0 => {
                    self.last_read = Instant::now();
                }
                None => return Err(ReadEnd::Expired(why)),
            }
        }
    }
}

/// The budgets a frame holds while its request is served.
struct FramePermits {
    _connection: StaticPermit,
    /// A small frame's share of the shard's in-flight budget, or a large
    /// frame's receive-pool reservation.
    _shard: StaticPermit,
}

/// Takes a complete frame's share of the connection's budget and, for a
/// small frame, of the shard's in-flight budget (a large one already holds
/// its receive-pool reservation), waiting (not reading) while spent.
async fn admit_frame(
    shard: &Shard,
    conn: &Rc<Semaphore>,
    units: u64,
    large: Option<StaticPermit>,
) -> Option<FramePermits> {
    let connection = conn.acquire_static_permit(units).await.ok()?;
    let shard_permit = match large {
        Some(reserved) => reserved,
        None => shard.inflight().acquire_static_permit(units).await.ok()?,
    };
    Some(FramePermits {
        _connection: connection,
        _shard: shard_permit,
    })
}

/// Writes the answers in request order, coalescing those that are ready
/// together; stops at a `Close` (after writing everything before it) or a
/// failed write.
async fn write_loop(
    mut writer: futures_lite::io::WriteHalf<TcpStream>,
    rx: LocalReceiver<Pending>,
    in_flight: Rc<Cell<usize>>,
) {
    let mut out = BytesMut::with_capacity(WRITE_COALESCE_BYTES);
    loop {
        // Take the next request without waiting if it is queued; else the
        // answers gathered so far go out before the wait.
        let next = match futures_lite::future::poll_once(rx.recv()).await {
            Some(next) => next,
            None => {
                if flush(&mut writer, &mut out).await.is_err() {
                    break;
                }
                rx.recv().await
            }
        };
        let Some(pending) = next else { break };
        let answer = match pending {
            Pending::Ready(answer) => answer,
            Pending::Handler(mut handle) => match futures_lite::future::poll_once(&mut handle).await {
                Some(done) => done,
                None => {
                    // Not done (a long poll, an fsync): send what is ready first.
                    if flush(&mut writer, &mut out).await.is_err() {
                        break;
                    }
                    handle.await
                }
            }
            // A handler that panicked gives no answer: close rather than
            // leave the client waiting on a response that never comes.
            .unwrap_or(Answer::Close),
        };
        in_flight.set(in_flight.get().saturating_sub(1));
        match answer {
            Answer::Reply(bytes) => {
                kafka_metrics::count_bytes_out(bytes.len() as u64);
                out.extend_from_slice(&bytes);
                if out.len() >= WRITE_COALESCE_BYTES && flush(&mut writer, &mut out).await.is_err() {
                    break;
                }
            }
            Answer::Silent => {}
            Answer::Close => break,
        }
    }
    let _ = flush(&mut writer, &mut out).await;
    let _ = writer.close().await;
}

async fn flush(
    writer: &mut futures_lite::io::WriteHalf<TcpStream>,
    out: &mut BytesMut,
) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let result = writer.write_all(out).await;
    out.clear();
    result
}
