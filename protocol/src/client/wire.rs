//! A connection's byte stream: plain TCP or TLS (rustls over the same
//! blocking socket), split into the half the callers write to and the half
//! the reader thread reads from.
//!
//! TLS state is one `rustls::ClientConnection` shared by both halves under
//! a mutex that is never held across a socket call: a writer encrypts into
//! a buffer under the lock, releases it, then writes the buffer (holding
//! only the writer's own lock, which keeps records in order); the reader
//! reads ciphertext without the lock, then decrypts under it. Holding the
//! TLS lock while blocked in a socket write could otherwise deadlock a
//! pipelined connection: the writer waits for the broker to read, the
//! broker waits for us to read its replies, and our reader waits for the
//! lock. Records the reader's side must send (a TLS 1.3 key update reply,
//! an alert) are written when the writer's lock is free, else by the next
//! request's write.

use std::io::{IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::ProtocolError;
use crate::tls::ClientTls;

type Tls = Arc<Mutex<rustls::ClientConnection>>;

/// The half requests are written to.
pub(super) enum WireWriter {
    Plain(TcpStream),
    Tls { socket: TcpStream, tls: Tls },
}

/// The half the reader thread reads replies from.
pub(super) enum WireReader {
    Plain(TcpStream),
    Tls {
        socket: TcpStream,
        tls: Tls,
        /// Plaintext decrypted but not yet returned.
        plain: Vec<u8>,
        writer: Arc<Mutex<WireWriter>>,
    },
}

/// Bytes of a TLS record header that announce a record from a TLS peer
/// (handshake or alert, TLS 1.0..1.3 framing).
fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [0x15 | 0x16, 0x03, ..])
}

/// The reason a plaintext connection failed, with a hint when the broker
/// answered in TLS.
pub(super) fn plaintext_hint(first_bytes: &[u8]) -> Option<&'static str> {
    looks_like_tls(first_bytes)
        .then_some("the broker answered with TLS: this port requires TLS (pass --tls-ca or SHOAL_TLS_CA)")
}

/// Connects the TLS session over `socket` and completes the handshake
/// within `timeout`.
pub(super) fn tls_handshake(
    mut socket: TcpStream,
    addr: SocketAddr,
    tls: &ClientTls,
    timeout: Duration,
) -> Result<(TcpStream, Tls), ProtocolError> {
    let name = tls.server_name(&addr.ip().to_string())?;
    let mut conn =
        rustls::ClientConnection::new(tls.config.clone(), name).map_err(|e| ProtocolError::Tls {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
    // Requests are bounded by the frame size; the client buffers them whole.
    conn.set_buffer_limit(None);
    socket.set_read_timeout(Some(timeout))?;
    socket.set_write_timeout(Some(timeout))?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut socket) {
            let mut reason = e.to_string();
            if reason.contains("InvalidContentType") || reason.contains("corrupt message") {
                reason.push_str(" (does this port speak TLS?)");
            }
            return Err(ProtocolError::Tls {
                addr: addr.to_string(),
                reason,
            });
        }
    }
    socket.set_read_timeout(None)?;
    socket.set_write_timeout(None)?;
    Ok((socket, Arc::new(Mutex::new(conn))))
}

impl WireWriter {
    /// Writes every slice, in order, whole.
    pub(super) fn write_all(&mut self, slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
        match self {
            WireWriter::Plain(socket) => write_all_vectored(socket, slices),
            WireWriter::Tls { socket, tls } => {
                let records = {
                    let mut conn = tls.lock().expect("tls lock");
                    for slice in slices.iter() {
                        conn.writer().write_all(slice)?;
                    }
                    drain(&mut conn)?
                };
                socket.write_all(&records)
            }
        }
    }

    pub(super) fn shutdown(&self) {
        let socket = match self {
            WireWriter::Plain(s) => s,
            WireWriter::Tls { socket, .. } => socket,
        };
        let _ = socket.shutdown(Shutdown::Both);
    }
}

/// Every TLS record rustls has ready to send.
fn drain(conn: &mut rustls::ClientConnection) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out)?;
    }
    Ok(out)
}

impl WireReader {
    /// Reads the next bytes of plaintext (0 at a clean end of stream).
    pub(super) fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            WireReader::Plain(socket) => socket.read(buf),
            WireReader::Tls {
                socket,
                tls,
                plain,
                writer,
            } => loop {
                if !plain.is_empty() {
                    let n = plain.len().min(buf.len());
                    buf[..n].copy_from_slice(&plain[..n]);
                    plain.drain(..n);
                    return Ok(n);
                }
                let n = socket.read(buf)?;
                let pending = {
                    let mut conn = tls.lock().expect("tls lock");
                    decrypt(&mut conn, &buf[..n], plain)?;
                    drain(&mut conn)?
                };
                if !pending.is_empty() {
                    if let Ok(mut w) = writer.try_lock() {
                        if let WireWriter::Tls { socket, .. } = &mut *w {
                            socket.write_all(&pending)?;
                        }
                    }
                }
                if n == 0 && plain.is_empty() {
                    return Ok(0);
                }
            },
        }
    }

    pub(super) fn shutdown(&self) {
        let socket = match self {
            WireReader::Plain(s) => s,
            WireReader::Tls { socket, .. } => socket,
        };
        let _ = socket.shutdown(Shutdown::Both);
    }
}

/// Feeds ciphertext to rustls and moves the plaintext out.
fn decrypt(
    conn: &mut rustls::ClientConnection,
    mut input: &[u8],
    plain: &mut Vec<u8>,
) -> std::io::Result<()> {
    loop {
        if !input.is_empty() {
            conn.read_tls(&mut input)?;
        }
        let state = conn
            .process_new_packets()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let ready = state.plaintext_bytes_to_read();
        if ready > 0 {
            let start = plain.len();
            plain.resize(start + ready, 0);
            conn.reader().read_exact(&mut plain[start..])?;
        }
        if input.is_empty() {
            return Ok(());
        }
    }
}

/// Writes every slice fully, continuing after partial vectored writes.
fn write_all_vectored(stream: &mut TcpStream, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    while !slices.is_empty() {
        match stream.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
