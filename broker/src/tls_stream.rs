//! A rustls sans-IO session driven over a futures-io stream (glommio's
//! `TcpStream` in the broker): TLS records in and out of the socket,
//! plaintext through `AsyncRead`/`AsyncWrite`, no other runtime.
//!
//! One adapter for both sides: [`TlsStream`] is generic over the session,
//! a `ServerConnection` (every listener, `frontend::tls`, and the node
//! links' accepting side) or a `ClientConnection` (the node links' dialling
//! side, `cluster::node_tls`). Both dereference to rustls's
//! `ConnectionCommon`, which is all the adapter uses. It imports nothing
//! else of the broker, so front ends and the cluster links share it.
//!
//! The shape follows the usual adapter: rustls reads ciphertext through a
//! `std::io::Read` that polls the socket and turns `Pending` into
//! `WouldBlock` (the waker is registered by that poll), and writes records
//! the same way. Plaintext is returned as soon as rustls has any; records
//! rustls has queued (handshake messages, alerts, key updates) are flushed
//! before more ciphertext is read, except while the writing side waits
//! for the socket (glommio keeps one write waiter per socket: a reader's
//! flush would take the waiter from a writer task and strand it).
//!
//! Memory per connection is bounded by rustls: one incoming record (at
//! most 16 KiB of plaintext plus overhead; a handshake message at most
//! 64 KiB), its received-plaintext buffer (16 KiB by default) and the
//! outgoing buffer, capped here at [`TLS_SEND_BUFFER_BYTES`]: when it is
//! full, `poll_write` waits for the socket instead of accepting more. The
//! front ends' own bounds (receive pool, in-flight budgets, frame
//! deadlines) apply to the plaintext above this layer unchanged.

use std::io::{self, Read, Write};
use std::ops::DerefMut;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};
use rustls::{ConnectionCommon, SideData};

/// Ciphertext rustls may hold for the socket before writers wait.
pub const TLS_SEND_BUFFER_BYTES: usize = 256 << 10;
/// The record type of a TLS handshake message: the first byte a TLS client
/// sends, so a listener can tell TLS from plaintext by it.
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A TLS session over `IO`: `C` is a `rustls::ServerConnection` or a
/// `rustls::ClientConnection`.
pub struct TlsStream<IO, C> {
    io: IO,
    conn: C,
    /// The peer closed its side of the socket.
    eof: bool,
    /// `close_notify` was queued.
    closing: bool,
    /// The writing side got `Pending` from the socket and waits for it to
    /// take more: its waker is the socket's write waiter.
    writer_parked: bool,
}

/// `std::io::Read`/`Write` over a polled stream: `Pending` is `WouldBlock`.
struct SyncIo<'a, 'b, IO> {
    io: &'a mut IO,
    cx: &'a mut Context<'b>,
}

impl<IO: AsyncRead + Unpin> Read for SyncIo<'_, '_, IO> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_read(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<IO: AsyncWrite + Unpin> Write for SyncIo<'_, '_, IO> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match Pin::new(&mut *self.io).poll_flush(self.cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<IO, C, S> TlsStream<IO, C>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    C: DerefMut<Target = ConnectionCommon<S>> + Unpin,
    S: SideData,
{
    /// Wraps a fresh session; `initial` holds bytes already read from the
    /// socket (a server's first bytes of the ClientHello; empty for a
    /// client, which speaks first).
    pub fn new(io: IO, mut conn: C, mut initial: &[u8]) -> io::Result<TlsStream<IO, C>> {
        conn.set_buffer_limit(Some(TLS_SEND_BUFFER_BYTES));
        while !initial.is_empty() {
            conn.read_tls(&mut initial)?;
            conn.process_new_packets().map_err(invalid)?;
        }
        Ok(TlsStream {
            io,
            conn,
            eof: false,
            closing: false,
            writer_parked: false,
        })
    }

    pub fn session(&self) -> &C {
        &self.conn
    }

    /// Completes the handshake (the caller bounds it with a deadline).
    pub async fn handshake(&mut self) -> io::Result<()> {
        futures_lite::future::poll_fn(|cx| self.poll_handshake(cx)).await
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.poll_flush_tls(cx) {
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => {}
            }
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            match self.poll_read_tls(cx) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed during the TLS handshake",
                    )))
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Reads ciphertext into rustls and processes it. On a protocol error
    /// the alert rustls queued is sent (best effort) before failing.
    fn poll_read_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut sync = SyncIo { io: &mut self.io, cx };
        let n = match self.conn.read_tls(&mut sync) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if n == 0 {
            self.eof = true;
            return Poll::Ready(Ok(0));
        }
        if let Err(e) = self.conn.process_new_packets() {
            let _ = self.poll_flush_tls(cx);
            return Poll::Ready(Err(invalid(e)));
        }
        Poll::Ready(Ok(n))
    }

    /// Writes every queued record to the socket.
    fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            let mut sync = SyncIo { io: &mut self.io, cx };
            match self.conn.write_tls(&mut sync) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO, C, S> AsyncRead for TlsStream<IO, C>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    C: DerefMut<Target = ConnectionCommon<S>> + Unpin,
    S: SideData,
{
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        loop {
            match this.conn.reader().read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if this.eof {
                // Closed without close_notify: a truncation, reported as EOF
                // to the frame reader, which treats it as a closed peer.
                return Poll::Ready(Ok(0));
            }
            // Queued records (e.g. a key update reply) go out first; a
            // socket that cannot take them now does not stop reading. Not
            // while the writing side waits for the socket: glommio keeps
            // one write waiter per socket, so the reader's flush would
            // replace the writer's waker and the writer (a connection
            // split into a read and a write task) would never wake; the
            // writer sends what is queued when it runs.
            if !this.writer_parked {
                if let Poll::Ready(Err(e)) = this.poll_flush_tls(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            match this.poll_read_tls(cx) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<IO, C, S> AsyncWrite for TlsStream<IO, C>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    C: DerefMut<Target = ConnectionCommon<S>> + Unpin,
    S: SideData,
{
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = this.poll_write_inner(cx, buf);
        this.writer_parked = polled.is_pending();
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = this.poll_flush_inner(cx);
        this.writer_parked = polled.is_pending();
        polled
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = this.poll_close_inner(cx);
        this.writer_parked = polled.is_pending();
        polled
    }
}

impl<IO, C, S> TlsStream<IO, C>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    C: DerefMut<Target = ConnectionCommon<S>> + Unpin,
    S: SideData,
{
    fn poll_write_inner(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self;
        loop {
            let n = this.conn.writer().write(buf)?;
            let flushed = this.poll_flush_tls(cx);
            if n > 0 {
                if let Poll::Ready(Err(e)) = flushed {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(Ok(n));
            }
            match flushed {
                Poll::Ready(Ok(())) if buf.is_empty() => return Poll::Ready(Ok(0)),
                // The buffer drained: try the plaintext again.
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_flush_inner(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self;
        this.conn.writer().flush()?;
        match this.poll_flush_tls(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_flush(cx),
            other => other,
        }
    }

    fn poll_close_inner(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self;
        if !this.closing {
            this.conn.send_close_notify();
            this.closing = true;
        }
        match this.poll_flush_tls(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_close(cx),
            other => other,
        }
    }
}
