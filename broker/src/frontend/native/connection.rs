//! One client connection: read frames, dispatch requests, write replies.
//!
//! Requests on a connection are pipelined: the reader decodes a frame,
//! takes its bytes from the connection's and the shard's in-flight budgets,
//! and spawns the handler; replies go back in completion order, matched by
//! correlation id. Requests for one partition keep their order because
//! handlers reach the partition (or the mesh's FIFO inbox) in spawn order
//! before their first suspension point.
//!
//! Backpressure: when either budget is spent the reader stops reading the
//! socket until replies are written, so TCP pushes back on a producer faster
//! than the disk. A quota throttle also pauses the reader.
//!
//! Bounded memory: a frame larger than one read chunk (64 KiB) reserves its
//! whole announced length from the shard's receive pool as soon as its
//! header arrives, before any more of it is read, and holds that until its
//! request is answered; while the pool is spent such connections are not
//! read. So bytes of incomplete frames are bounded per shard by the pool
//! (plus one read chunk per connection), however many peers announce large
//! frames and stall. A frame must then arrive within
//! `limits.frame_read_ms_max`, and a connection with nothing in flight and
//! nothing received for `limits.connection_idle_ms_max` is closed.
//!
//! Bad input: a frame that cannot be decoded gets an error reply (with the
//! correlation id when the header was readable) and closes this connection
//! only; the shard keeps serving every other connection.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::AsyncWriteExt;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use shoal_protocol::codec;
use shoal_protocol::error::ErrorCode;
use shoal_protocol::frame::{Frame, FrameDecoder, FrameError};
use std::sync::Arc;

use super::context::{ConnectionCtx, Reply};
use super::dispatch::dispatch;
use crate::frontend::admission::Admitted;
use crate::frontend::frame_reader::{admit_frame, FramePermits, FrameReader, ReadEnd, READ_CHUNK_BYTES};
use crate::frontend::quota::ByteRate;
use crate::frontend::tls::{secure, Refusal, ServerStream, TlsAcceptor};
use crate::metadata::acl::Principal;
use crate::metadata::security::Caller;
use crate::metrics::add;
use crate::runtime::now_ms;
use crate::shard::Shard;

/// Replies queued for the writer before handlers wait.
const REPLY_QUEUE_MAX: usize = 256;
/// Small reply pieces are coalesced into one write up to this size.
const WRITE_COALESCE_BYTES: usize = 256 << 10;

/// Serves one admitted connection until it closes: TLS first when the
/// listener has it (a plaintext peer is told the port needs TLS), then
/// frames.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, _admitted: Admitted, tls: Option<Arc<TlsAcceptor>>) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    let Ok(peer) = stream.peer_addr() else { return };
    let secured = match secure(stream, tls.as_deref()).await {
        Ok(s) => s,
        Err(refusal) => return refuse_handshake(&shard, refusal).await,
    };
    let principal = secured.client_user.map_or(Principal::Anonymous, Principal::User);
    let stream = secured.stream;
    add(&shard.metrics().connections_open, 1);
    add(&shard.metrics().connections_total, 1);
    let (reader, writer) = futures_lite::io::split(stream);
    let (tx, rx) = local_channel::new_bounded::<Reply>(REPLY_QUEUE_MAX);
    let write_task = glommio::spawn_local(write_loop(shard.clone(), writer, rx));
    let now = now_ms();
    let limits = &shard.config().limits;
    let ctx = Rc::new(ConnectionCtx {
        shard: shard.clone(),
        produce_quota: ByteRate::new(limits.produce_bytes_per_sec_max, now).into(),
        fetch_quota: ByteRate::new(limits.fetch_bytes_per_sec_max, now).into(),
        throttle_ms: 0.into(),
        caller: RefCell::new(Rc::new(Caller::new(principal, peer.ip()))),
        scram: RefCell::new(None),
    });
    read_loop(ctx, reader, tx).await;
    // The reply sender is gone once every handler finished; the writer then
    // drains what is queued and stops.
    write_task.await;
    add(&shard.metrics().connections_open, u64::MAX);
}

async fn read_loop(
    ctx: Rc<ConnectionCtx>,
    mut socket: futures_lite::io::ReadHalf<ServerStream>,
    tx: LocalSender<Reply>,
) {
    let shard = ctx.shard.clone();
    let limits = &shard.config().limits;
    let conn_budget = Rc::new(Semaphore::new(limits.connection_inflight_bytes_max as u64));
    let mut r = FrameReader::new(FrameDecoder::new(limits.frame_bytes_max), Rc::new(Cell::new(0)));
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let tx = Rc::new(tx);
    loop {
        let throttle = ctx.throttle_ms.replace(0);
        if throttle > 0 {
            crate::runtime::sleep(Duration::from_millis(throttle)).await;
        }
        if !r.reserve_pending(&shard).await {
            return;
        }
        // A large frame's body is read into its own buffer; everything
        // else through the read chunk and the decoder.
        if let Some(read) = r.read_body(&shard, &mut socket).await {
            let Some(n) = bytes_read(&shard, read) else {
                return;
            };
            match r.decoder.body_filled(n) {
                Ok(Some(frame)) => {
                    if !take_frame(&ctx, &tx, &conn_budget, &mut r, frame).await {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    reject(&shard, &tx, &e).await;
                    return;
                }
            }
            r.bytes_decoded();
            continue;
        }
        let read = r.read(&shard, &mut socket, &mut buf).await;
        let Some(n) = bytes_read(&shard, read) else {
            return;
        };
        let mut input = &buf[..n];
        while !input.is_empty() {
            match r.decoder.decode(&mut input) {
                Ok(Some(frame)) => {
                    if !take_frame(&ctx, &tx, &conn_budget, &mut r, frame).await {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    reject(&shard, &tx, &e).await;
                    return;
                }
            }
        }
        r.bytes_decoded();
    }
}

/// The bytes of one read, counted; `None` when the connection is done.
fn bytes_read(shard: &Shard, read: Result<usize, ReadEnd>) -> Option<usize> {
    match read {
        Ok(n) => {
            add(&shard.metrics().bytes_in, n as u64);
            Some(n)
        }
        Err(ReadEnd::Closed) => None,
        Err(ReadEnd::Expired(why)) => {
            add(&shard.metrics().connections_expired, 1);
            tracing::debug!(why, "closing connection");
            None
        }
    }
}

/// Admits a complete frame against the budgets and serves it; false when a
/// budget closed (the shard is stopping).
async fn take_frame(
    ctx: &Rc<ConnectionCtx>,
    tx: &Rc<LocalSender<Reply>>,
    conn_budget: &Rc<Semaphore>,
    r: &mut FrameReader<FrameDecoder>,
    frame: Frame,
) -> bool {
    let large = r.frame_taken();
    let units = frame.as_bytes().len() as u64;
    let Some(permits) = admit_frame(&ctx.shard, conn_budget, units, large).await else {
        return false;
    };
    spawn_handler(ctx, tx, &r.in_flight, frame, permits);
    true
}

/// Serves one request in its own task; the reply goes to the writer.
fn spawn_handler(
    ctx: &Rc<ConnectionCtx>,
    tx: &Rc<LocalSender<Reply>>,
    in_flight: &Rc<Cell<usize>>,
    frame: Frame,
    permits: FramePermits,
) {
    let (ctx, tx, in_flight) = (ctx.clone(), tx.clone(), in_flight.clone());
    in_flight.set(in_flight.get() + 1);
    glommio::spawn_local(async move {
        let reply = dispatch(&ctx, frame).await;
        // A closed writer means the peer went away.
        let _ = tx.send(reply).await;
        drop(permits);
        in_flight.set(in_flight.get() - 1);
    })
    .detach();
}

/// Ends a connection that did not come through TLS: a plaintext peer gets
/// an error frame saying the port needs TLS (in plaintext, which it can
/// read); a failed handshake is only logged (rustls already sent its alert).
async fn refuse_handshake(shard: &Shard, refusal: Refusal) {
    add(&shard.metrics().connections_rejected, 1);
    match refusal {
        Refusal::Plaintext { mut stream, first } => {
            tracing::debug!("plaintext connection to a TLS port");
            // Answer the peer's first request by its correlation id, so a
            // native client reports this message rather than a closed
            // connection.
            let cid = FrameDecoder::new(shard.config().limits.frame_bytes_max)
                .decode(&mut first.as_slice())
                .ok()
                .flatten()
                .map_or(0, |frame| frame.header().correlation_id);
            let message = "this port requires TLS: connect with TLS (shoal --tls-ca, SHOAL_TLS_CA)";
            if let Ok(head) = codec::encode_error(cid, ErrorCode::InvalidRequest.to_wire(), message) {
                let _ = stream.write_all(&head).await;
            }
            let _ = stream.close().await;
        }
        Refusal::Failed(reason) => tracing::debug!(reason, "TLS handshake failed"),
    }
}

/// Answers an undecodable frame with an error and counts the rejection.
async fn reject(shard: &Shard, tx: &LocalSender<Reply>, error: &FrameError) {
    add(&shard.metrics().connections_rejected, 1);
    let code = match error {
        FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
        _ => ErrorCode::CorruptFrame,
    };
    shard.metrics().count_error(code);
    tracing::debug!(error = %error, "closing connection after a malformed frame");
    if let Ok(head) = codec::encode_error(0, code.to_wire(), &error.to_string()) {
        let _ = tx.send(Reply::head_only(head)).await;
    }
}

async fn write_loop(
    shard: Rc<Shard>,
    mut writer: futures_lite::io::WriteHalf<ServerStream>,
    rx: LocalReceiver<Reply>,
) {
    let mut out: Vec<u8> = Vec::with_capacity(WRITE_COALESCE_BYTES);
    while let Some(reply) = rx.recv().await {
        add(&shard.metrics().bytes_out, reply.len() as u64);
        if write_reply(&mut writer, &mut out, reply).await.is_err() {
            break;
        }
        // Coalesce whatever else is ready into the same write.
        while out.len() < WRITE_COALESCE_BYTES {
            let Some(Some(next)) = futures_lite::future::poll_once(rx.recv()).await else {
                break;
            };
            add(&shard.metrics().bytes_out, next.len() as u64);
            if write_reply(&mut writer, &mut out, next).await.is_err() {
                return;
            }
        }
        if !out.is_empty() && writer.write_all(&out).await.is_err() {
            break;
        }
        out.clear();
    }
    let _ = writer.close().await;
}

/// Appends a reply to the coalescing buffer, writing large payload pieces
/// straight from their shared buffers.
async fn write_reply(
    writer: &mut futures_lite::io::WriteHalf<ServerStream>,
    out: &mut Vec<u8>,
    reply: Reply,
) -> std::io::Result<()> {
    out.extend_from_slice(&reply.head);
    for piece in reply.payload {
        if piece.len() >= WRITE_COALESCE_BYTES / 4 {
            writer.write_all(out).await?;
            out.clear();
            writer.write_all(&piece).await?;
        } else {
            out.extend_from_slice(&piece);
        }
    }
    Ok(())
}
