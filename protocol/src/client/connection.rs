//! One TCP connection to one broker port, with pipelined requests.
//!
//! Requests are written by the calling thread (under a write lock, header,
//! meta and payload in one vectored write) and answered on a reader thread
//! that decodes frames and hands each one to the caller waiting on its
//! correlation id. Any number of requests may be in flight, up to
//! `in_flight_max`; a caller over the bound waits for a slot (backpressure)
//! rather than queueing without limit.
//!
//! Failure handling: a write or read error, or a frame the decoder rejects,
//! closes the connection for good; every caller still waiting gets
//! [`ProtocolError::Closed`] with the reason, and later calls fail at once
//! (the [`super::Client`] opens a new connection). A reply that arrives after
//! its caller timed out is dropped.

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::api::ApiKey;
use crate::codec::{self, Message, Request};
use crate::error::{check, ProtocolError};
use crate::frame::{Frame, FrameDecoder, FRAME_LEN_MAX};
use crate::messages::handshake::{negotiate, supported_versions, HandshakeRequest, HandshakeResponse};
use crate::tls::ClientSecurity;

use super::wire::{plaintext_hint, tls_handshake, WireReader, WireWriter};

/// Size of the reader thread's socket read buffer.
const READ_BUF_BYTES: usize = 256 << 10;

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    pub connect_timeout_ms: u64,
    /// How long a caller waits for a reply, on top of any long-poll wait the
    /// request itself asks for.
    pub request_timeout_ms: u64,
    /// Requests in flight at once on this connection.
    pub in_flight_max: usize,
    /// Largest reply frame accepted.
    pub frame_len_max: usize,
    /// Free text sent in the handshake.
    pub client_software: String,
    /// TLS and credentials (none: plaintext, unauthenticated).
    pub security: ClientSecurity,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            connect_timeout_ms: 5_000,
            request_timeout_ms: 30_000,
            in_flight_max: 1024,
            frame_len_max: FRAME_LEN_MAX,
            client_software: format!("shoal-protocol/{}", env!("CARGO_PKG_VERSION")),
            security: ClientSecurity::default(),
        }
    }
}

type ReplySender = SyncSender<Result<Frame, ProtocolError>>;

#[derive(Default)]
struct State {
    pending: HashMap<u32, ReplySender>,
    /// Set once, when the connection fails; the reason every later call gets.
    closed: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when an in-flight slot frees up or the connection closes.
    slot_freed: Condvar,
}

impl Shared {
    fn close(&self, reason: String) {
        let mut state = self.state.lock().expect("connection state lock");
        if state.closed.is_none() {
            state.closed = Some(reason.clone());
        }
        for (_, tx) in state.pending.drain() {
            let _ = tx.try_send(Err(ProtocolError::Closed(reason.clone())));
        }
        self.slot_freed.notify_all();
    }
}

/// A reply not yet received. Wait for it with [`PendingReply::wait`].
pub struct PendingReply<M> {
    rx: Receiver<Result<Frame, ProtocolError>>,
    correlation_id: u32,
    deadline: Instant,
    started: Instant,
    shared: Arc<Shared>,
    _message: std::marker::PhantomData<M>,
}

impl<M> Drop for PendingReply<M> {
    /// Frees the in-flight slot of a reply that was not (or not fully)
    /// waited for; a no-op when the reply already arrived.
    fn drop(&mut self) {
        let mut state = self.shared.state.lock().expect("connection state lock");
        if state.pending.remove(&self.correlation_id).is_some() {
            self.shared.slot_freed.notify_one();
        }
    }
}

/// A decoded reply and the frame it came in (for the payload).
#[derive(Debug)]
pub struct Reply<M> {
    pub message: M,
    pub frame: Frame,
}

impl<M: Message> PendingReply<M> {
    /// Blocks until the reply arrives, the connection fails, or the timeout.
    pub fn wait(self) -> Result<Reply<M>, ProtocolError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let frame = match self.rx.recv_timeout(left) {
            Ok(result) => result?,
            Err(RecvTimeoutError::Timeout) => {
                // Drop frees the in-flight slot; a late reply is discarded.
                return Err(ProtocolError::Timeout {
                    what: M::NAME,
                    elapsed_ms: self.started.elapsed().as_millis() as u64,
                });
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(ProtocolError::Closed("reader thread ended".into()));
            }
        };
        let message = codec::decode::<M>(&frame)?;
        Ok(Reply { message, frame })
    }
}

/// A connection to one broker port, shareable between threads.
pub struct Connection {
    addr: SocketAddr,
    writer: Arc<Mutex<WireWriter>>,
    shared: Arc<Shared>,
    next_correlation_id: AtomicU32,
    config: ConnectionConfig,
    handshake: HandshakeResponse,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("shard_id", &self.handshake.shard_id)
            .finish()
    }
}

impl Connection {
    /// Connects (TCP_NODELAY on), completes the TLS handshake when
    /// configured, starts the reader thread, performs the handshake and,
    /// with credentials, the SCRAM-SHA-256 exchange. Fails with
    /// `UnsupportedVersion` if the broker shares no version of some API with
    /// this build, and with `AuthenticationFailed` on a wrong password.
    pub fn connect(addr: SocketAddr, config: ConnectionConfig) -> Result<Connection, ProtocolError> {
        let timeout = Duration::from_millis(config.connect_timeout_ms);
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        // Nagle plus delayed ACK holds small frames back by ~40 ms.
        stream.set_nodelay(true)?;
        let (writer, read_half) = match &config.security.tls {
            None => {
                let read_half = WireReader::Plain(stream.try_clone()?);
                (Arc::new(Mutex::new(WireWriter::Plain(stream))), read_half)
            }
            Some(tls) => {
                let (socket, session) = tls_handshake(stream, addr, tls, timeout)?;
                let writer = Arc::new(Mutex::new(WireWriter::Tls {
                    socket: socket.try_clone()?,
                    tls: session.clone(),
                }));
                let reader = WireReader::Tls {
                    socket,
                    tls: session,
                    plain: Vec::new(),
                    writer: writer.clone(),
                };
                (writer, reader)
            }
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            slot_freed: Condvar::new(),
        });
        let reader = {
            let shared = Arc::clone(&shared);
            let frame_len_max = config.frame_len_max;
            std::thread::Builder::new()
                .name(format!("shoal-conn-{addr}"))
                .spawn(move || read_loop(read_half, shared, frame_len_max))?
        };
        let mut conn = Connection {
            addr,
            writer,
            shared,
            next_correlation_id: AtomicU32::new(1),
            config,
            handshake: HandshakeResponse {
                error: 0,
                message: String::new(),
                broker_software: String::new(),
                api_versions: Vec::new(),
                shard_id: 0,
                shard_count: 0,
                frame_len_max: 0,
            },
            reader: Mutex::new(Some(reader)),
        };
        conn.handshake = conn.perform_handshake()?;
        if let Some(credentials) = conn.config.security.credentials.clone() {
            super::authenticate::scram(&conn, &credentials)?;
        }
        Ok(conn)
    }

    fn perform_handshake(&self) -> Result<HandshakeResponse, ProtocolError> {
        let ours = supported_versions();
        let request = HandshakeRequest {
            client_software: self.config.client_software.clone(),
            api_versions: ours.clone(),
        };
        let reply = self.send(&request, &[], 0)?.wait()?.message;
        check(reply.error, &reply.message)?;
        for range in &ours {
            match ApiKey::from_wire(range.api_key) {
                // An optional API the broker lacks is simply not used.
                Some(api) if api.is_optional() && !speaks(&reply, api) => {}
                Some(api) => {
                    negotiate(&ours, &reply.api_versions, api)?;
                }
                None => {}
            }
        }
        Ok(reply)
    }

    /// Whether the broker listed `api` in its handshake (see
    /// [`ApiKey::is_optional`]).
    pub fn speaks(&self, api: ApiKey) -> bool {
        speaks(&self.handshake, api)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the broker said in the handshake (shard id, shard count, limits).
    pub fn handshake(&self) -> &HandshakeResponse {
        &self.handshake
    }

    /// Whether the connection has failed (a new one is needed).
    pub fn is_closed(&self) -> bool {
        self.shared
            .state
            .lock()
            .expect("connection state lock")
            .closed
            .is_some()
    }

    /// Sends a request with `payload` (whole batches) after its meta, and
    /// returns a handle to wait for the reply. `extra_wait_ms` extends the
    /// reply timeout by the long-poll time the request asks the broker for.
    pub fn send<R: Request>(
        &self,
        request: &R,
        payload: &[&[u8]],
        extra_wait_ms: u64,
    ) -> Result<PendingReply<R::Response>, ProtocolError> {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(self.config.request_timeout_ms + extra_wait_ms);
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let payload_len = payload.iter().map(|p| p.len()).sum();
        let head = codec::encode_head(request, correlation_id, payload_len)?;
        let rx = self.register(correlation_id, deadline, R::NAME)?;
        let mut slices = Vec::with_capacity(payload.len() + 1);
        slices.push(IoSlice::new(&head));
        slices.extend(payload.iter().filter(|p| !p.is_empty()).map(|p| IoSlice::new(p)));
        let written = {
            let mut writer = self.writer.lock().expect("connection writer lock");
            writer.write_all(&mut slices)
        };
        if let Err(e) = written {
            let reason = format!("write to {} failed: {e}", self.addr);
            self.shared.close(reason);
            let _ = self.writer.lock().map(|w| w.shutdown());
            return Err(e.into());
        }
        Ok(PendingReply {
            rx,
            correlation_id,
            deadline,
            started,
            shared: Arc::clone(&self.shared),
            _message: std::marker::PhantomData,
        })
    }

    /// Sends and waits: one round trip.
    pub fn call<R: Request>(
        &self,
        request: &R,
        payload: &[&[u8]],
        extra_wait_ms: u64,
    ) -> Result<Reply<R::Response>, ProtocolError> {
        self.send(request, payload, extra_wait_ms)?.wait()
    }

    /// Waits for an in-flight slot and registers the correlation id.
    fn register(
        &self,
        correlation_id: u32,
        deadline: Instant,
        what: &'static str,
    ) -> Result<Receiver<Result<Frame, ProtocolError>>, ProtocolError> {
        let mut state = self.shared.state.lock().expect("connection state lock");
        loop {
            if let Some(reason) = &state.closed {
                return Err(ProtocolError::Closed(reason.clone()));
            }
            if state.pending.len() < self.config.in_flight_max {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ProtocolError::Timeout {
                    what,
                    elapsed_ms: self.config.request_timeout_ms,
                });
            }
            state = self
                .shared
                .slot_freed
                .wait_timeout(state, left)
                .expect("connection state lock")
                .0;
        }
        let (tx, rx) = mpsc::sync_channel(1);
        state.pending.insert(correlation_id, tx);
        Ok(rx)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Ok(writer) = self.writer.lock() {
            writer.shutdown();
        }
        self.shared.close("connection dropped".into());
        if let Some(handle) = self.reader.lock().ok().and_then(|mut r| r.take()) {
            let _ = handle.join();
        }
    }
}

/// True when the broker's handshake lists `api`.
fn speaks(handshake: &HandshakeResponse, api: ApiKey) -> bool {
    handshake.api_versions.iter().any(|r| r.api_key == api.to_wire())
}

/// The reader thread: frames in, each handed to its waiting caller.
fn read_loop(mut stream: WireReader, shared: Arc<Shared>, frame_len_max: usize) {
    let mut decoder = FrameDecoder::new(frame_len_max);
    let mut buf = vec![0u8; READ_BUF_BYTES];
    let mut first = true;
    let reason = loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break "the broker closed the connection".to_string(),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break format!("read failed: {e}"),
        };
        if first {
            first = false;
            if let (WireReader::Plain(_), Some(hint)) = (&stream, plaintext_hint(&buf[..n])) {
                stream.shutdown();
                break hint.to_string();
            }
        }
        if let Err(e) = dispatch(&mut decoder, &buf[..n], &shared) {
            stream.shutdown();
            break format!("invalid frame from broker: {e}");
        }
    };
    shared.close(reason);
}

fn dispatch(decoder: &mut FrameDecoder, mut input: &[u8], shared: &Shared) -> Result<(), ProtocolError> {
    while let Some(frame) = decoder.decode(&mut input)? {
        let cid = frame.header().correlation_id;
        let mut state = shared.state.lock().expect("connection state lock");
        if let Some(tx) = state.pending.remove(&cid) {
            let _ = tx.try_send(Ok(frame));
            shared.slot_freed.notify_one();
        }
    }
    Ok(())
}
