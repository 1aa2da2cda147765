//! Node-link I/O on one shard: accepting peers' connections and dialling
//! the same shard index of every peer.
//!
//! Each direction is its own TCP connection. A shard *dials* every peer
//! (its sending side: hello, then pings, later batched raft frames) and
//! *accepts* the peers' dials (its receiving side). An accepted connection
//! must send a valid hello within [`HELLO_MS_MAX`]; a hello from another
//! cluster, an unknown node, another shard count or shard index is answered
//! with `Refused` (the reason is logged here and by the dialler) and
//! closed. Garbage, a frame over the cap, a bad CRC, an unknown message
//! type or a second hello close that connection only; so does silence
//! longer than [`INBOUND_IDLE_MS_MAX`] (a live dialler pings every
//! [`PING_INTERVAL_MS`]).
//!
//! With `[cluster.tls]` every connection is mutual TLS before the hello
//! ([`super::node_tls`]): the acceptor runs the handshake first and the
//! dialler after its TCP connect, each bounded by
//! `NODE_TLS_HANDSHAKE_MS_MAX`; the frames above are the same over TLS or
//! plaintext (the code is generic over the stream). A handshake that fails
//! closes that connection only and is counted like a refused hello (a
//! certificate the cluster CA did not sign, none, plaintext on a TLS port,
//! TLS on a plaintext port) or like bad input (malformed, too slow), with
//! the reason logged and kept as `last_inbound_refusal` in the status. The
//! dialler's link turns `Refused` with the TLS reason (shown by
//! `GET /cluster` and `shoal cluster status`) and redials at the slow pace.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use shoal_protocol::frame::FrameDecoder;

use super::node_tls::{self, AcceptRefusal, NodeTls};
use super::wire::{LinkMessage, Ping, RaftFrame, Refused, Welcome, WireError};
use super::{ClusterNode, LinkState};
use crate::runtime::{now_ms, sleep};
use crate::tls_stream::TLS_HANDSHAKE_RECORD;

/// An accepted connection must say hello within this.
pub const HELLO_MS_MAX: u64 = 5_000;
/// A dialler sends a ping when it sent nothing else for this long.
pub const PING_INTERVAL_MS: u64 = 500;
/// An accepted connection silent for this long is closed.
pub const INBOUND_IDLE_MS_MAX: u64 = 10_000;
/// Longest a dial waits for the TCP connection.
const CONNECT_MS_MAX: u64 = 2_000;
/// Redial backoff: first pause, cap.
const REDIAL_MS_MIN: u64 = 100;
const REDIAL_MS_MAX: u64 = 2_000;
/// Frames one wake-up of a dialler sends at most before it waits again.
const RAFT_FRAMES_PER_WAKE_MAX: usize = 64;
/// Bytes read from a link socket at once.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// What a TLS node port answers a plaintext hello.
const PLAINTEXT_REFUSAL: &str =
    "this node's links require mutual TLS: set [cluster.tls] with a certificate from the cluster CA";
/// The first byte of a TLS record's version (3.1 to 3.4 are TLS 1.0-1.3).
const TLS_VERSION_MAJOR: u8 = 0x03;
/// Why a plaintext node port closes a connection that opens with a TLS handshake.
const TLS_ON_PLAINTEXT: &str =
    "a TLS handshake on a plaintext node port: the peer has [cluster.tls] and this node has not";

/// A node link's byte stream: a `TcpStream`, or TLS over one.
trait LinkIo: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> LinkIo for T {}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum LinkEnd {
    #[error("closed by the peer")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("nothing arrived within {0} ms")]
    Silent(u64),
    #[error("unexpected {0} on this connection")]
    Unexpected(&'static str),
    #[error("refused: {0}")]
    Refused(String),
    /// The TLS handshake or a TLS record failed (the reason in words).
    #[error("TLS: {0}")]
    Tls(String),
}

impl LinkEnd {
    /// A read or write error: a TLS one (a refused certificate arrives as
    /// an alert on the first read after the handshake) or plain I/O.
    fn from_io(e: std::io::Error) -> LinkEnd {
        match node_tls::rustls_error(&e) {
            Some(tls) => LinkEnd::Tls(node_tls::describe(tls)),
            None => LinkEnd::Io(e),
        }
    }
}

/// Frames out of a stream: the decoder plus bytes read past the last frame.
struct FrameReader {
    decoder: FrameDecoder,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameReader {
    fn new(frame_bytes_max: usize) -> Self {
        FrameReader {
            decoder: FrameDecoder::new(frame_bytes_max),
            buf: vec![0; READ_CHUNK_BYTES],
            start: 0,
            end: 0,
        }
    }

    /// Whether the last bytes read began like a TLS handshake record: its
    /// type, then a 3.x version (a valid frame never starts so: its length
    /// is a multiple of 8).
    fn read_tls_handshake(&self) -> bool {
        self.end >= 2 && self.buf[0] == TLS_HANDSHAKE_RECORD && self.buf[1] == TLS_VERSION_MAJOR
    }

    /// The next message, or why the connection must close. Waits at most
    /// `wait_ms` for each read.
    async fn next(&mut self, stream: &mut impl LinkIo, wait_ms: u64) -> Result<LinkMessage, LinkEnd> {
        loop {
            let mut input = &self.buf[self.start..self.end];
            let before = input.len();
            let frame = self.decoder.decode(&mut input).map_err(WireError::from)?;
            self.start += before - input.len();
            if let Some(frame) = frame {
                return Ok(LinkMessage::decode(&frame)?);
            }
            let read = async { Some(stream.read(&mut self.buf).await) };
            let timer = async {
                sleep(Duration::from_millis(wait_ms)).await;
                None
            };
            match futures_lite::future::or(read, timer).await {
                None => return Err(LinkEnd::Silent(wait_ms)),
                Some(Ok(0)) => return Err(LinkEnd::Closed),
                Some(Ok(n)) => {
                    self.start = 0;
                    self.end = n;
                }
                Some(Err(e)) => return Err(LinkEnd::from_io(e)),
            }
        }
    }
}

/// Writes one message; the flush pushes out what a TLS session buffered.
async fn send(stream: &mut impl LinkIo, message: &LinkMessage) -> Result<(), LinkEnd> {
    let bytes = message.encode()?;
    stream.write_all(&bytes).await.map_err(LinkEnd::from_io)?;
    stream.flush().await.map_err(LinkEnd::from_io)?;
    Ok(())
}

/// Accepts peers' connections on this shard's node port until dropped;
/// with `tls`, each must complete a mutual TLS handshake first.
pub async fn accept_loop(
    node: Rc<ClusterNode>,
    listener: glommio::net::TcpListener,
    tls: Option<Arc<NodeTls>>,
) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(serve_inbound(node.clone(), stream, tls.clone())).detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "node link accept failed");
                sleep(Duration::from_millis(REDIAL_MS_MIN)).await;
            }
        }
    }
}

/// Serves one accepted connection: the TLS handshake when configured,
/// then the hello and the frames.
async fn serve_inbound(node: Rc<ClusterNode>, stream: TcpStream, tls: Option<Arc<NodeTls>>) {
    let _ = stream.set_nodelay(true);
    let from = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let Some(tls) = tls else {
        return serve_hello(&node, &from, stream, false).await;
    };
    match node_tls::accept(&tls, stream).await {
        Ok(link) => serve_hello(&node, &from, link, true).await,
        Err(AcceptRefusal::Plaintext(mut stream)) => {
            tracing::warn!(%from, reason = PLAINTEXT_REFUSAL, "node link refused: plaintext on a TLS node port");
            node.count_refused(format!("{from}: plaintext on a TLS node port"));
            let refused = LinkMessage::Refused(Refused {
                reason: PLAINTEXT_REFUSAL.into(),
            });
            let _ = send(&mut stream, &refused).await;
            let _ = stream.close().await;
        }
        Err(AcceptRefusal::Failed { reason, refused }) => {
            tracing::warn!(%from, %reason, "node link refused: TLS handshake failed");
            if refused {
                node.count_refused(format!("{from}: {reason}"));
            } else {
                node.count_bad_input(format!("{from}: {reason}"));
            }
        }
    }
}

/// The hello, then the peer's frames, on an accepted stream (`tls` says
/// whether it is TLS, for the diagnosis of a TLS peer on a plaintext port).
async fn serve_hello(node: &ClusterNode, from: &str, mut stream: impl LinkIo, tls: bool) {
    let mut reader = FrameReader::new(node.frame_bytes_max);
    let end = match reader.next(&mut stream, HELLO_MS_MAX).await {
        Ok(LinkMessage::Hello(hello)) => match node.membership.check_hello(&hello) {
            Ok(id) => {
                node.set_client_addr(id, hello.client_addr.clone());
                let welcome = LinkMessage::Welcome(Welcome {
                    node_id: node.membership.me.0,
                });
                match send(&mut stream, &welcome).await {
                    Ok(()) => {
                        tracing::info!(peer = %id, %from, shard = node.membership.shard, tls, "node link accepted");
                        node.heard_from(id);
                        receive(node, id, &mut reader, &mut stream).await
                    }
                    Err(e) => e,
                }
            }
            Err(reason) => {
                tracing::warn!(%from, node = hello.node_id, cluster = %hello.cluster_id, %reason, "node link refused");
                node.count_refused(format!("{from}: {reason}"));
                let _ = send(&mut stream, &LinkMessage::Refused(Refused { reason })).await;
                let _ = stream.close().await;
                return;
            }
        },
        Ok(_) => LinkEnd::Unexpected("message before the hello"),
        Err(LinkEnd::Wire(_)) if !tls && reader.read_tls_handshake() => {
            tracing::warn!(%from, reason = TLS_ON_PLAINTEXT, "node link refused");
            node.count_refused(format!("{from}: {TLS_ON_PLAINTEXT}"));
            let _ = stream.close().await;
            return;
        }
        Err(e) => e,
    };
    if !matches!(end, LinkEnd::Closed) {
        tracing::warn!(%from, reason = %end, "node link closed");
        node.count_bad_input(format!("{from}: {end}"));
    }
    let _ = stream.close().await;
}

/// Reads a welcomed peer's frames until the connection ends.
async fn receive(
    node: &ClusterNode,
    id: super::NodeId,
    reader: &mut FrameReader,
    stream: &mut impl LinkIo,
) -> LinkEnd {
    loop {
        match reader.next(stream, INBOUND_IDLE_MS_MAX).await {
            Ok(LinkMessage::Ping(_)) => node.heard_from(id),
            Ok(LinkMessage::Raft(frame)) => {
                node.heard_from(id);
                node.deliver_raft(id, frame);
            }
            Ok(LinkMessage::Hello(_)) => return LinkEnd::Unexpected("second hello"),
            Ok(LinkMessage::Welcome(_) | LinkMessage::Refused(_)) => {
                return LinkEnd::Unexpected("reply on a receiving link")
            }
            Err(e) => return e,
        }
    }
}

/// Keeps a connection to peer `index` up, redialling with backoff, until
/// the task is dropped; with `tls`, each connection is mutual TLS.
pub async fn dial_loop(node: Rc<ClusterNode>, index: usize, tls: Option<Arc<NodeTls>>) {
    let peer = node.membership.peers[index].clone();
    let addr = peer.addr.shard_addr(node.membership.shard);
    let mut backoff = REDIAL_MS_MIN;
    loop {
        // A refusal stays on show while the redial runs: it is still the
        // last thing the peer said.
        if !node.link_refused(index) {
            node.set_link(index, LinkState::Connecting);
        }
        match dial_once(&node, index, &addr, tls.as_deref()).await {
            Ok(()) => backoff = REDIAL_MS_MIN,
            Err(LinkEnd::Refused(reason)) => {
                tracing::error!(peer = %peer.id, %addr, %reason, "peer refused this node's hello");
                node.set_link(index, LinkState::Refused(reason));
                backoff = REDIAL_MS_MAX;
            }
            Err(LinkEnd::Tls(reason)) => {
                tracing::error!(peer = %peer.id, %addr, %reason, "node link TLS failed");
                node.set_link(index, LinkState::Refused(format!("TLS: {reason}")));
                node.clear_outbox(index);
                backoff = REDIAL_MS_MAX;
            }
            Err(e) => {
                tracing::debug!(peer = %peer.id, %addr, error = %e, "node link down");
                if node.link_was_up(index) {
                    backoff = REDIAL_MS_MIN;
                }
                node.set_link(index, LinkState::Down);
                node.clear_outbox(index);
            }
        }
        sleep(Duration::from_millis(backoff)).await;
        backoff = (backoff * 2).min(REDIAL_MS_MAX);
    }
}

/// One connection: dial, the TLS handshake when configured, then the
/// hello and pings until a write fails.
async fn dial_once(
    node: &ClusterNode,
    index: usize,
    addr: &str,
    tls: Option<&NodeTls>,
) -> Result<(), LinkEnd> {
    let connect = async { Some(TcpStream::connect(addr).await) };
    let timer = async {
        sleep(Duration::from_millis(CONNECT_MS_MAX)).await;
        None
    };
    let stream = match futures_lite::future::or(connect, timer).await {
        Some(Ok(s)) => s,
        Some(Err(e)) => return Err(LinkEnd::Io(std::io::Error::other(e.to_string()))),
        None => return Err(LinkEnd::Silent(CONNECT_MS_MAX)),
    };
    let _ = stream.set_nodelay(true);
    match tls {
        None => run_dialled(node, index, addr, stream).await,
        Some(tls) => {
            let host = node.membership.peers[index].addr.tls_name();
            let link = node_tls::connect(tls, stream, host).await.map_err(LinkEnd::Tls)?;
            run_dialled(node, index, addr, link).await
        }
    }
}

/// The hello and its welcome on a dialled stream, then the sending loop.
async fn run_dialled(
    node: &ClusterNode,
    index: usize,
    addr: &str,
    mut stream: impl LinkIo,
) -> Result<(), LinkEnd> {
    send(&mut stream, &LinkMessage::Hello(node.membership.hello())).await?;
    let mut reader = FrameReader::new(node.frame_bytes_max);
    let expected = node.membership.peers[index].id;
    match reader.next(&mut stream, HELLO_MS_MAX).await? {
        LinkMessage::Welcome(w) if w.node_id == expected.0 => {}
        LinkMessage::Welcome(w) => {
            return Err(LinkEnd::Refused(format!(
                "node {} answered at the address of node {expected}",
                w.node_id
            )))
        }
        LinkMessage::Refused(r) => return Err(LinkEnd::Refused(r.reason)),
        _ => return Err(LinkEnd::Unexpected("message instead of a welcome")),
    }
    node.set_link(
        index,
        LinkState::Up {
            since: Instant::now(),
        },
    );
    tracing::info!(peer = %expected, %addr, "node link up");
    let bell = node.bell(index);
    loop {
        let rung = async {
            let _ = bell.recv().await;
        };
        let idle = sleep(Duration::from_millis(PING_INTERVAL_MS));
        futures_lite::future::or(rung, idle).await;
        send_queued(node, index, &mut stream).await?;
    }
}

/// Sends what the outbox holds as raft frames (each under half the frame
/// cap), or a ping when it is empty.
async fn send_queued(node: &ClusterNode, index: usize, stream: &mut impl LinkIo) -> Result<(), LinkEnd> {
    let mut sent = false;
    for _ in 0..RAFT_FRAMES_PER_WAKE_MAX {
        let messages = node.take_outbox(index, node.frame_bytes_max / 2);
        if messages.is_empty() {
            break;
        }
        send(stream, &LinkMessage::Raft(RaftFrame { messages })).await?;
        sent = true;
    }
    if !sent {
        send(stream, &LinkMessage::Ping(Ping { sent_ms: now_ms() })).await?;
    }
    Ok(())
}
