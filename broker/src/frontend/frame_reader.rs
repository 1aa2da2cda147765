//! The reading side every framed front end (native, Kafka) shares: the
//! bounded-memory rules of a connection.
//!
//! - A frame larger than one read chunk ([`READ_CHUNK_BYTES`]) reserves its
//!   whole announced length from the shard's receive pool as soon as its
//!   header (or length prefix) arrives, and holds it until its request is
//!   answered; while the pool is spent the socket is not read.
//! - A complete frame takes its bytes from the connection's budget and, when
//!   small, from the shard's in-flight budget ([`admit_frame`]).
//! - A frame must arrive within `limits.frame_read_ms_max` of its start (of
//!   its reservation, for a large one); a connection with nothing in flight
//!   and nothing received for `limits.connection_idle_ms_max` is closed. A
//!   connection waiting for its replies (a long poll, a rebalance) is not
//!   idle.
//!
//! Each protocol brings its decoder through [`PendingFrame`]; the socket is
//! any byte stream, so TLS (`frontend::tls::ServerStream`) sits underneath.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::io::AsyncReadExt;
use glommio::sync::{Semaphore, StaticPermit};

use crate::shard::Shard;

/// Bytes read from the socket at a time; larger frames reserve their length.
pub const READ_CHUNK_BYTES: usize = 64 << 10;

/// What the reader needs from a protocol's frame decoder.
pub trait PendingFrame {
    /// True between frames.
    fn is_idle(&self) -> bool;
    /// The whole length of the frame being read, once its header passed
    /// the decoder's caps.
    fn pending_frame_len(&self) -> Option<usize>;
    /// Allocates the rest of the pending frame at once (its memory is
    /// reserved by then).
    fn reserve_pending(&mut self);
}

impl PendingFrame for shoal_protocol::frame::FrameDecoder {
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

/// Why a read did not return bytes.
pub enum ReadEnd {
    Closed,
    Expired(&'static str),
}

/// A connection's decoder with its reservation and deadlines.
pub struct FrameReader<D> {
    pub decoder: D,
    /// The receive-pool reservation of the large frame being read.
    reserved: Option<StaticPermit>,
    /// When the frame being read started (after its reservation).
    frame_started: Option<Instant>,
    last_read: Instant,
    /// Requests read and not yet answered.
    pub in_flight: Rc<Cell<usize>>,
}

impl<D: PendingFrame> FrameReader<D> {
    pub fn new(decoder: D, in_flight: Rc<Cell<usize>>) -> Self {
        FrameReader {
            decoder,
            reserved: None,
            frame_started: None,
            last_read: Instant::now(),
            in_flight,
        }
    }

    /// Reserves the whole pending frame in the receive pool when its header
    /// announced more than one read chunk (waiting, so not reading, while
    /// the pool is spent). False when the pool is closed.
    pub async fn reserve_pending(&mut self, shard: &Shard) -> bool {
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

    /// A frame came out of the decoder: hands over its reservation (if it
    /// was large) and stops its deadline.
    pub fn frame_taken(&mut self) -> Option<StaticPermit> {
        self.frame_started = None;
        self.reserved.take()
    }

    /// After the bytes of one read are decoded: the deadline runs while a
    /// frame is partly read.
    pub fn bytes_decoded(&mut self) {
        if self.decoder.is_idle() {
            self.frame_started = None;
        } else if self.frame_started.is_none() {
            self.frame_started = Some(Instant::now());
        }
    }

    /// Reads the next bytes, within the frame deadline while a frame is
    /// being read, or the idle deadline while nothing is in flight.
    pub async fn read(
        &mut self,
        shard: &Shard,
        socket: &mut (impl futures_lite::io::AsyncRead + Unpin),
        buf: &mut [u8],
    ) -> Result<usize, ReadEnd> {
        read_within(
            shard,
            socket,
            buf,
            self.frame_started,
            &mut self.last_read,
            &self.in_flight,
        )
        .await
    }
}

impl FrameReader<shoal_protocol::frame::FrameDecoder> {
    /// While a reserved large frame is being read, reads the rest of its
    /// body straight into the frame's own buffer (no copy out of a read
    /// chunk, and reads as large as the socket has ready); the caller
    /// reports the bytes with `FrameDecoder::body_filled`. `None` when no
    /// such frame is pending: read into a chunk and decode it.
    pub async fn read_body(
        &mut self,
        shard: &Shard,
        socket: &mut (impl futures_lite::io::AsyncRead + Unpin),
    ) -> Option<Result<usize, ReadEnd>> {
        let spare = self.decoder.body_spare()?;
        Some(
            read_within(
                shard,
                socket,
                spare,
                self.frame_started,
                &mut self.last_read,
                &self.in_flight,
            )
            .await,
        )
    }
}

/// One read under the connection's deadlines: the frame deadline while a
/// frame is partly read (`frame_started`), else the idle deadline unless
/// requests are in flight.
async fn read_within(
    shard: &Shard,
    socket: &mut (impl futures_lite::io::AsyncRead + Unpin),
    buf: &mut [u8],
    frame_started: Option<Instant>,
    last_read: &mut Instant,
    in_flight: &Cell<usize>,
) -> Result<usize, ReadEnd> {
    let limits = &shard.config().limits;
    loop {
        let (deadline, why) = match frame_started {
            Some(start) => (
                Some(start + Duration::from_millis(limits.frame_read_ms_max)),
                "a frame did not arrive within limits.frame_read_ms_max",
            ),
            None if limits.connection_idle_ms_max > 0 => (
                Some(*last_read + Duration::from_millis(limits.connection_idle_ms_max)),
                "idle for limits.connection_idle_ms_max",
            ),
            None => (None, ""),
        };
        let read = async { Some(socket.read(&mut *buf).await) };
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
                *last_read = Instant::now();
                return Ok(n);
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "connection read failed");
                return Err(ReadEnd::Closed);
            }
            // A connection waiting for its replies is not idle.
            None if frame_started.is_none() && in_flight.get() > 0 => {
                *last_read = Instant::now();
            }
            None => return Err(ReadEnd::Expired(why)),
        }
    }
}

/// The budgets a frame holds while its request is served.
pub struct FramePermits {
    _connection: StaticPermit,
    /// A small frame's share of the shard's in-flight budget, or a large
    /// frame's receive-pool reservation.
    _shard: StaticPermit,
}

/// Takes a complete frame's `units` bytes from the connection's budget and,
/// for a small frame, from the shard's in-flight budget (a large one
/// already holds its receive-pool reservation), waiting (not reading)
/// while spent. `None` when a budget is closed.
pub async fn admit_frame(
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
