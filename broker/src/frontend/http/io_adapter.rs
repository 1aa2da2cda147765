//! glommio's TCP stream as a hyper 1.x connection.
//!
//! hyper reads and writes through its own `hyper::rt::Read`/`Write` traits;
//! glommio's `TcpStream` implements the futures-io ones. This adapter
//! forwards one to the other and stamps every transfer into the
//! connection's [`ConnClock`], which the connection watchdog uses for the
//! idle and header-read deadlines (hyper's own header timer needs a
//! `Send + Sync` timer, which glommio does not provide).
//!
//! Reads fill hyper's spare buffer in place (no intermediate copy): the
//! unfilled part is zero-initialised once by hyper's `initialize_unfilled`,
//! the socket writes into it, and the cursor advances by what was read.
//! `NotConnected` on shutdown means the peer already closed: that is the
//! outcome a shutdown asks for, so it counts as success.
// The one `unsafe` here (advancing hyper's read cursor) is argued at its site.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_lite::io::{AsyncRead, AsyncWrite};

use crate::frontend::tls::ServerStream;

/// When a connection last moved bytes, and whether it waits for a request
/// head. Shared by the adapter, the request service and the watchdog.
#[derive(Debug)]
pub struct ConnClock {
    /// Last successful read or write.
    pub last_io: Cell<Instant>,
    /// First byte of a request head that has not reached the service yet.
    pub head_started: Cell<Option<Instant>>,
    /// Requests being served on this connection right now.
    pub busy: Cell<u32>,
}

impl ConnClock {
    pub fn new(now: Instant) -> Rc<ConnClock> {
        Rc::new(ConnClock {
            last_io: Cell::new(now),
            head_started: Cell::new(None),
            busy: Cell::new(0),
        })
    }

    fn read(&self, now: Instant) {
        self.last_io.set(now);
        if self.busy.get() == 0 && self.head_started.get().is_none() {
            self.head_started.set(Some(now));
        }
    }
}

/// A glommio stream (plain or TLS) seen by hyper.
pub struct HyperIo {
    stream: ServerStream,
    clock: Rc<ConnClock>,
}

impl HyperIo {
    pub fn new(stream: ServerStream, clock: Rc<ConnClock>) -> Self {
        HyperIo { stream, clock }
    }
}

impl hyper::rt::Read for HyperIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let spare = buf.initialize_unfilled();
        match Pin::new(&mut this.stream).poll_read(cx, spare) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.clock.read(Instant::now());
                }
                // SAFETY: `initialize_unfilled` initialised every spare byte
                // and the socket wrote `n <= spare.len()` of them, so the
                // first `n` bytes of the unfilled part are initialised.
                unsafe { buf.advance(n) };
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::rt::Write for HyperIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            if n > 0 {
                this.clock.last_io.set(Instant::now());
            }
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.stream).poll_close(cx) {
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            other => other,
        }
    }
}
