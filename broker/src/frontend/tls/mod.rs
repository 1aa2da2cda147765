//! TLS for every client listener: the settings ([`acceptor`]), the client
//! certificate's name ([`peer_name`]) and the accept step every front end
//! runs ([`secure`]). rustls is driven over glommio's stream by
//! [`crate::tls_stream`], which the node links (`cluster::node_tls`, with
//! their own settings from `[cluster.tls]`) share.
//!
//! A front end (native, HTTP, Kafka) accepts a
//! `TcpStream`, passes it through [`secure`] with the listener's acceptor
//! (or none), and serves the returned [`ServerStream`], which is plain TCP
//! or TLS behind the same futures-io traits. [`secure`] runs in the
//! connection's own task, after admission, so a slow or hostile handshake
//! holds one admitted connection slot and its bounded rustls buffers, and
//! is cut off at [`TLS_HANDSHAKE_MS_MAX`].
//!
//! A peer that speaks plaintext to a TLS port is recognised from its first
//! byte (a TLS handshake record starts with 0x16) and handed back as
//! [`Refusal::Plaintext`], so the front end can answer in its own protocol
//! ("this port requires TLS") instead of closing silently.

pub mod acceptor;
pub mod peer_name;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use glommio::net::TcpStream;

pub use crate::tls_stream::TlsStream;
use crate::tls_stream::TLS_HANDSHAKE_RECORD;
pub use acceptor::{TlsAcceptor, TlsSetupError};

/// Longest a TLS handshake may take from the first byte read.
pub const TLS_HANDSHAKE_MS_MAX: u64 = 10_000;
/// First bytes read to tell TLS from plaintext (and fed to rustls).
const FIRST_READ_BYTES: usize = 4096;

/// A served connection: plain TCP or TLS.
pub enum ServerStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream, rustls::ServerConnection>>),
}

/// A connection after the accept step.
pub struct Secured {
    pub stream: ServerStream,
    /// The subject CN of a verified client certificate (mTLS).
    pub client_user: Option<String>,
}

/// Why a connection did not come through the accept step.
pub enum Refusal {
    /// Plaintext on a TLS port: the socket and the bytes read, so the
    /// front end can answer in plaintext.
    Plaintext { stream: TcpStream, first: Vec<u8> },
    /// The handshake failed (bad certificate, malformed ClientHello,
    /// timeout, peer gone); the reason is for the debug log.
    Failed(String),
}

/// Runs the TLS handshake when `tls` is set; a plaintext stream otherwise.
pub async fn secure(mut stream: TcpStream, tls: Option<&TlsAcceptor>) -> Result<Secured, Refusal> {
    let Some(tls) = tls else {
        return Ok(Secured {
            stream: ServerStream::Plain(stream),
            client_user: None,
        });
    };
    let config = tls.config();
    let handshake = async {
        let mut first = vec![0u8; FIRST_READ_BYTES];
        let n = stream
            .read(&mut first)
            .await
            .map_err(|e| Refusal::Failed(format!("read failed: {e}")))?;
        first.truncate(n);
        if n == 0 {
            return Err(Refusal::Failed("closed before the handshake".into()));
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            return Err(Refusal::Plaintext { stream, first });
        }
        let session = rustls::ServerConnection::new(config).map_err(|e| Refusal::Failed(e.to_string()))?;
        let mut tls_stream =
            TlsStream::new(stream, session, &first).map_err(|e| Refusal::Failed(format!("TLS: {e}")))?;
        tls_stream
            .handshake()
            .await
            .map_err(|e| Refusal::Failed(format!("TLS handshake: {e}")))?;
        let client_user = tls_stream
            .session()
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| peer_name::subject_common_name(leaf));
        Ok(Secured {
            stream: ServerStream::Tls(Box::new(tls_stream)),
            client_user,
        })
    };
    let deadline = async {
        crate::runtime::sleep(Duration::from_millis(TLS_HANDSHAKE_MS_MAX)).await;
        Err(Refusal::Failed("the TLS handshake did not finish in time".into()))
    };
    futures_lite::future::or(handshake, deadline).await
}

impl AsyncRead for ServerStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_close(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}
