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
//! The memory rules are the native connection's, in one place
//! (`frontend/frame_reader.rs`):
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

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::io::AsyncWriteExt;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use glommio::task::JoinHandle;
use kafka_protocol::messages::{RequestKind, ResponseKind};
use std::sync::Arc;

use super::codec::{decode_request, encode_response, FrameDecoder, KafkaLimits, KafkaRequest};
use super::context::{Answer, Door, KafkaConn, SaslState};
use super::dispatch::serve_request;
use super::records::RecordLimits;
use super::sasl;
use crate::frontend::admission::Admitted;
use crate::frontend::frame_reader::{admit_frame, FrameReader, PendingFrame, ReadEnd, READ_CHUNK_BYTES};
use crate::frontend::quota::ByteRate;
use crate::frontend::tls::{secure, Refusal, ServerStream, TlsAcceptor};
use crate::metadata::acl::Principal;
use crate::metadata::security::Caller;
use crate::metrics::counters::kafka as kafka_metrics;
use crate::runtime::now_ms;
use crate::shard::Shard;

/// Socket read size.
/// Requests read and not yet answered, per connection (Kafka clients keep
/// at most 5 in flight by default).
pub const REQUESTS_IN_FLIGHT_MAX: usize = 32;
/// Small responses are coalesced into one write up to this size.
const WRITE_COALESCE_BYTES: usize = 256 << 10;
/// Responses at least this large are written from their own buffer.
const WRITE_DIRECT_BYTES_MIN: usize = WRITE_COALESCE_BYTES / 4;

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

/// Serves one admitted connection until it closes: TLS first when the
/// listener has it, then frames.
pub async fn serve(
    shard: Rc<Shard>,
    stream: TcpStream,
    peer: SocketAddr,
    door: Door,
    _admitted: Admitted,
    tls: Option<Arc<TlsAcceptor>>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    let secured = match secure(stream, tls.as_deref()).await {
        Ok(s) => s,
        Err(refusal) => {
            // Kafka has no message a broker sends unasked, and a plaintext
            // client could not read a TLS alert: the refusal is the close.
            kafka_metrics::count_rejected();
            match refusal {
                Refusal::Plaintext { mut stream, .. } => {
                    tracing::debug!(%peer, "plaintext connection to the TLS Kafka port");
                    let _ = stream.close().await;
                }
                Refusal::Failed(reason) => tracing::debug!(%peer, reason, "kafka TLS handshake failed"),
            }
            return;
        }
    };
    let authenticated = secured.client_user.is_some();
    let principal = secured.client_user.map_or(Principal::Anonymous, Principal::User);
    let stream = secured.stream;
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
        caller: RefCell::new(Rc::new(Caller::new(principal, peer.ip()))),
        sasl: RefCell::new(SaslState::default()),
        authenticated: Cell::new(authenticated),
    });
    read_loop(conn, reader, tx, in_flight).await;
    // The reader dropped its sender; the writer drains what is queued
    // (awaiting the handlers still running) and stops.
    write_task.await;
}

async fn read_loop(
    conn: Rc<KafkaConn>,
    mut socket: futures_lite::io::ReadHalf<ServerStream>,
    tx: LocalSender<Pending>,
    in_flight: Rc<Cell<usize>>,
) {
    let shard = conn.shard.clone();
    let conn_budget = Rc::new(Semaphore::new(
        shard.config().limits.connection_inflight_bytes_max as u64,
    ));
    let mut r = FrameReader::new(FrameDecoder::new(conn.limits), in_flight);
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
        if !take_frames(&mut r, &conn, &conn_budget, &tx, &buf[..n]).await {
            return;
        }
    }
}

/// Cuts every whole frame out of `input` and queues its request.
/// False when the connection must close (bad input, or the writer is
/// gone).
async fn take_frames(
    r: &mut FrameReader<FrameDecoder>,
    conn: &Rc<KafkaConn>,
    conn_budget: &Rc<Semaphore>,
    tx: &LocalSender<Pending>,
    mut input: &[u8],
) -> bool {
    while !input.is_empty() {
        let frame = match r.decoder.decode(&mut input) {
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
        let large = r.frame_taken();
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
                    r.in_flight.set(r.in_flight.get() + 1);
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
        if !may_serve(conn, api_key) {
            kafka_metrics::count_rejected();
            tracing::debug!(
                api_key,
                "kafka request before authentication; closing the connection"
            );
            let _ = tx.send(Pending::Ready(Answer::Close)).await;
            return false;
        }
        // The SASL requests are served here, in frame order, so the next
        // frame already runs as the principal they authenticated.
        if let Some((answer, close)) = serve_sasl(conn, &request) {
            r.in_flight.set(r.in_flight.get() + 1);
            if tx.send(Pending::Ready(answer)).await.is_err() {
                return false;
            }
            if close {
                kafka_metrics::count_rejected();
                let _ = tx.send(Pending::Ready(Answer::Close)).await;
                return false;
            }
            continue;
        }
        let Some(permits) = admit_frame(&conn.shard, conn_budget, frame_len, large).await else {
            return false;
        };
        r.in_flight.set(r.in_flight.get() + 1);
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
    r.bytes_decoded();
    true
}

/// Writes the answers in request order, coalescing those that are ready
/// together; stops at a `Close` (after writing everything before it) or a
/// failed write.
async fn write_loop(
    mut writer: futures_lite::io::WriteHalf<ServerStream>,
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
                if write_reply(&mut writer, &mut out, &bytes).await.is_err() {
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

/// Adds a response to the coalescing buffer; a large one (a fetch of many
/// records) is written straight from its own buffer after what is
/// gathered, rather than copied once more.
async fn write_reply(
    writer: &mut futures_lite::io::WriteHalf<ServerStream>,
    out: &mut BytesMut,
    reply: &[u8],
) -> std::io::Result<()> {
    if reply.len() >= WRITE_DIRECT_BYTES_MIN {
        flush(writer, out).await?;
        return writer.write_all(reply).await;
    }
    out.extend_from_slice(reply);
    if out.len() >= WRITE_COALESCE_BYTES {
        flush(writer, out).await?;
    }
    Ok(())
}

async fn flush(
    writer: &mut futures_lite::io::WriteHalf<ServerStream>,
    out: &mut BytesMut,
) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let result = writer.write_all(out).await;
    out.clear();
    result
}

/// Whether this request may run now: with authentication on, only
/// ApiVersions and the SASL requests run before the connection has
/// authenticated.
fn may_serve(conn: &KafkaConn, api_key: i16) -> bool {
    conn.authenticated.get()
        || !conn.shard.security().service().authentication()
        || sasl::admits_before_auth(api_key)
}

/// Answers SaslHandshake and SaslAuthenticate (`None` for any other
/// request); the bool is true when the connection must close after it.
fn serve_sasl(conn: &Rc<KafkaConn>, request: &KafkaRequest) -> Option<(Answer, bool)> {
    let (response, close) = match &request.body {
        RequestKind::SaslHandshake(r) => (
            ResponseKind::SaslHandshake(sasl::handshake(conn, r.clone())),
            false,
        ),
        RequestKind::SaslAuthenticate(r) => {
            let (response, close) = sasl::authenticate(conn, r.clone());
            (ResponseKind::SaslAuthenticate(response), close)
        }
        _ => return None,
    };
    let context = request.context();
    kafka_metrics::count_request(context.api_key as i16);
    for code in super::dispatch::error_codes(&response) {
        kafka_metrics::count_error(context.api_key as i16, code);
    }
    let mut out = BytesMut::new();
    match encode_response(&context, &response, &mut out) {
        Ok(()) => Some((Answer::Reply(out), close)),
        Err(e) => {
            tracing::error!(error = %e, "SASL response does not encode; closing the connection");
            Some((Answer::Close, true))
        }
    }
}

impl PendingFrame for FrameDecoder {
    fn is_idle(&self) -> bool {
        self.is_idle()
    }
    fn pending_frame_len(&self) -> Option<usize> {
        self.pending_frame_len()
    }
    fn reserve_pending(&mut self) {
        self.reserve_pending()
    }
}
