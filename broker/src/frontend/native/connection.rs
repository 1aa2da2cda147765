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
//! Bad input: a frame that cannot be decoded gets an error reply (with the
//! correlation id when the header was readable) and closes this connection
//! only; the shard keeps serving every other connection.

use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::sync::{Semaphore, StaticPermit};
use shoal_protocol::codec;
use shoal_protocol::error::ErrorCode;
use shoal_protocol::frame::{FrameDecoder, FrameError};

use super::context::{ConnectionCtx, Reply};
use super::dispatch::dispatch;
use crate::frontend::quota::ByteRate;
use crate::metrics::add;
use crate::runtime::now_ms;
use crate::shard::Shard;

/// Socket read size.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// Replies queued for the writer before handlers wait.
const REPLY_QUEUE_MAX: usize = 256;
/// Small reply pieces are coalesced into one write up to this size.
const WRITE_COALESCE_BYTES: usize = 256 << 10;

/// Serves one accepted connection until it closes.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
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
    });
    read_loop(ctx, reader, tx).await;
    // The reply sender is gone once every handler finished; the writer then
    // drains what is queued and stops.
    write_task.await;
    add(&shard.metrics().connections_open, u64::MAX);
}

async fn read_loop(
    ctx: Rc<ConnectionCtx>,
    mut reader: futures_lite::io::ReadHalf<TcpStream>,
    tx: LocalSender<Reply>,
) {
    let shard = ctx.shard.clone();
    let conn_budget = Rc::new(Semaphore::new(
        shard.config().limits.connection_inflight_bytes_max as u64,
    ));
    let mut decoder = FrameDecoder::new(shard.config().limits.frame_bytes_max);
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let tx = Rc::new(tx);
    loop {
        let throttle = ctx.throttle_ms.replace(0);
        if throttle > 0 {
            crate::runtime::sleep(Duration::from_millis(throttle)).await;
        }
        let n = match reader.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "connection read failed");
                return;
            }
        };
        add(&shard.metrics().bytes_in, n as u64);
        let mut input = &buf[..n];
        while !input.is_empty() {
            match decoder.decode(&mut input) {
                Ok(Some(frame)) => {
                    let units = frame.as_bytes().len() as u64;
                    let Some(permits) = take_budget(&conn_budget, shard.inflight(), units).await else {
                        return;
                    };
                    let (ctx, tx) = (ctx.clone(), tx.clone());
                    glommio::spawn_local(async move {
                        let reply = dispatch(&ctx, frame).await;
                        // A closed writer means the peer went away.
                        let _ = tx.send(reply).await;
                        drop(permits);
                    })
                    .detach();
                }
                Ok(None) => break,
                Err(e) => {
                    reject(&shard, &tx, &e).await;
                    return;
                }
            }
        }
    }
}

/// Takes `units` from the connection's and the shard's budgets, waiting
/// (and so not reading the socket) while either is spent.
async fn take_budget(
    conn: &Rc<Semaphore>,
    shard: &Rc<Semaphore>,
    units: u64,
) -> Option<(StaticPermit, StaticPermit)> {
    let a = conn.acquire_static_permit(units).await.ok()?;
    let b = shard.acquire_static_permit(units).await.ok()?;
    Some((a, b))
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
    mut writer: futures_lite::io::WriteHalf<TcpStream>,
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
    writer: &mut futures_lite::io::WriteHalf<TcpStream>,
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
