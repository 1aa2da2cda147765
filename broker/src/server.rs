//! Starting and stopping a broker: listeners, shards, and the drain on
//! shutdown.
//!
//! Listening sockets are bound before any executor starts, so a port clash
//! fails the start at once and port 0 resolves to one real port that every
//! shard then shares (SO_REUSEPORT). Each shard then runs on its own pinned
//! executor: it loads the topic catalogue, opens its partitions (recovery),
//! accepts on the shared port and on its own shard port (native protocol,
//! and Kafka protocol when `kafka.enabled`), serves HTTP, and serves its
//! mesh inbox. `start` returns once every shard is serving.
//!
//! Shutdown (SIGTERM/SIGINT in `shoald`, or [`RunningBroker::stop`]): every
//! shard stops accepting, waits (bounded by [`DRAIN_MS_MAX`]) for the
//! requests in flight to finish, then flushes and fsyncs every partition it
//! owns and closes it.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_config::Config;

use crate::cluster::node_tls::NodeTls;
use crate::error::{BrokerError, BrokerResult};
use crate::frontend::tls::TlsAcceptor;
use crate::frontend::{http, kafka, native};
use crate::ids::ShardId;
use crate::mesh::{self, Envelope, Mesh};
use crate::metadata::security::SecurityService;
use crate::runtime::{adopt_listener, bind_listener, shard_cpus, spawn_shard};
use crate::shard::call::{ShardCall, ShardReply};
use crate::shard::{KafkaPorts, Ports, Shard};

/// A shard's inbox, as the mesh delivers it.
type Inbox = flume::Receiver<Envelope<ShardCall, ShardReply>>;

/// Longest a shard waits for in-flight requests on shutdown.
pub const DRAIN_MS_MAX: u64 = 10_000;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start shard {shard}: {reason}")]
    Shard { shard: u32, reason: String },
    /// Another broker holds the data directory or the port. SO_REUSEPORT
    /// would otherwise let two brokers share a port silently, the kernel
    /// splitting connections between them.
    #[error("{what} is in use by another process (is another shoald running?): {source}")]
    InUse { what: String, source: std::io::Error },
    /// Secure by default: a non-loopback address needs TLS and
    /// authentication, or an explicit `security.insecure = true`.
    #[error(
        "refusing to serve {addr} without TLS and authentication: set [security.tls] and \
         security.authentication = true, bind a loopback address, or set security.insecure = true"
    )]
    Insecure { addr: SocketAddr },
    /// Secure by default: plaintext node links (no `[cluster.tls]`) on a
    /// non-loopback address need `security.insecure = true`.
    #[error("{0}")]
    InsecureNodeLinks(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("security: {0}")]
    Security(String),
}

/// Takes an exclusive lock on `<data_dir>/LOCK` for the broker's lifetime.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    use std::os::fd::AsRawFd;
    let path = data_dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::DataDir {
            path: path.clone(),
            source,
        })?;
    // SAFETY: flock(2) on a file descriptor we own and keep open; no memory
    // is shared with the kernel.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let source = std::io::Error::last_os_error();
        return Err(StartError::InUse {
            what: format!("data directory {}", data_dir.display()),
            source,
        });
    }
    Ok(file)
}

/// Longest a start waits for a fixed port to be released.
pub const PORT_WAIT_MS_MAX: u64 = 10_000;
/// Pause between two probes of a port still held.
const PORT_PROBE_INTERVAL_MS: u64 = 100;

/// Fails if a fixed port stays bound by anyone, by binding it without
/// SO_REUSEPORT (then releasing it). A broker restarted right after a crash
/// may find its ports still held for a moment while the kernel tears down
/// the dead process's sockets and io_uring, so a held port is probed again
/// for up to [`PORT_WAIT_MS_MAX`] (logging why) before the start fails.
/// Another live broker is refused at once by the data directory lock,
/// taken before this.
fn probe_port(addr: SocketAddr) -> Result<(), StartError> {
    if addr.port() == 0 {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_millis(PORT_WAIT_MS_MAX);
    let mut logged = false;
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(listener) => {
                drop(listener);
                return Ok(());
            }
            Err(source) if source.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                if !logged {
                    tracing::warn!(%addr, "port still held (a previous broker's sockets are being torn down?); waiting up to 10 s");
                    logged = true;
                }
                std::thread::sleep(Duration::from_millis(PORT_PROBE_INTERVAL_MS));
            }
            Err(source) => {
                return Err(StartError::InUse {
                    what: format!("address {addr}"),
                    source,
                })
            }
        }
    }
}

/// A started broker.
pub struct RunningBroker {
    pub ports: Ports,
    /// The listeners' TLS settings, reloaded by [`RunningBroker::tls_reloader`].
    tls: Option<Arc<TlsAcceptor>>,
    /// The node links' TLS settings (`[cluster.tls]`), reloaded with them.
    node_tls: Option<Arc<NodeTls>>,
    /// Held until the broker is dropped: the data directory's lock.
    _lock: std::fs::File,
    stops: Vec<flume::Sender<()>>,
    handles: Vec<glommio::ExecutorJoinHandle<()>>,
}

impl RunningBroker {
    /// Asks every shard to drain and flush, and waits for them to exit.
    pub fn stop(self) {
        for stop in &self.stops {
            let _ = stop.send(());
        }
        self.join();
    }

    /// Waits for every shard to exit.
    pub fn join(self) {
        for handle in self.handles {
            if let Err(e) = handle.join() {
                tracing::error!(error = %e, "shard thread failed");
            }
        }
    }

    /// A handle that re-reads the TLS certificate and key files (SIGHUP),
    /// the listeners' and the node links': new connections use them, open
    /// ones keep their sessions. A bad file keeps the old settings of its
    /// own kind and is reported.
    pub fn tls_reloader(&self) -> impl Fn() -> Result<(), String> + Send + 'static {
        let tls = self.tls.clone();
        let node_tls = self.node_tls.clone();
        move || {
            if tls.is_none() && node_tls.is_none() {
                return Err("TLS is not configured".into());
            }
            let listeners = tls
                .as_ref()
                .map_or(Ok(()), |t| t.reload().map_err(|e| e.to_string()));
            let links = node_tls
                .as_ref()
                .map_or(Ok(()), |t| t.reload().map_err(|e| e.to_string()));
            match (listeners, links) {
                (Ok(()), Ok(())) => Ok(()),
                (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
                (Err(a), Err(b)) => Err(format!("{a}; {b}")),
            }
        }
    }

    /// A handle that can trigger the stop from another thread (signals).
    pub fn stopper(&self) -> impl Fn() + Send + 'static {
        let stops = self.stops.clone();
        move || {
            for stop in &stops {
                let _ = stop.send(());
            }
        }
    }
}

struct Listeners {
    shared: Vec<std::net::TcpListener>,
    shard: Vec<std::net::TcpListener>,
    http: Vec<std::net::TcpListener>,
    /// Kafka's shared and per-shard listeners, one pair per shard.
    kafka: Vec<(std::net::TcpListener, std::net::TcpListener)>,
    /// Node-link listeners, one per shard (cluster members only).
    node: Vec<std::net::TcpListener>,
    ports: Ports,
}

/// Binds `addr`; listens at once when `early` (a single node: see
/// [`bind_listener`]).
fn bind(addr: SocketAddr, early: bool) -> Result<std::net::TcpListener, StartError> {
    bind_listener(addr, early).map_err(|source| StartError::Bind { addr, source })
}

fn bind_all(config: &Config, shards: u32) -> Result<Listeners, StartError> {
    let early = !config.cluster.enabled();
    let first = bind(config.server.listen, early)?;
    let shared_port = first
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.server.listen,
            source,
        })?
        .port();
    let ip: IpAddr = config.server.listen.ip();
    let mut shared = vec![first];
    for _ in 1..shards {
        shared.push(bind(SocketAddr::new(ip, shared_port), early)?);
    }
    let (shard, shard_ports) = bind_shard_ports(ip, config.server.shard_port_base, shards, early)?;
    let (http, http_port) = bind_shared(config.server.http_listen, shards, early)?;
    let (kafka, kafka_ports) = if config.kafka.enabled {
        let k = &config.kafka;
        let (shared, shared_port) = bind_shared(k.listen, shards, early)?;
        let (own, own_ports) = bind_shard_ports(k.listen.ip(), k.shard_port_base, shards, early)?;
        let ports = KafkaPorts {
            host: k.advertised_host(),
            shared: shared_port,
            shard_ports: own_ports,
        };
        (shared.into_iter().zip(own).collect(), Some(ports))
    } else {
        (Vec::new(), None)
    };
    let node = bind_node_ports(config, shards)?;
    let ports = Ports {
        host: ip.to_string(),
        shared: shared_port,
        shard_ports,
        http: http_port,
        kafka: kafka_ports,
    };
    Ok(Listeners {
        shared,
        shard,
        http,
        kafka,
        node,
        ports,
    })
}

/// Binds shard `i`'s own port `base + i` on `ip` (free ports when `base`
/// is 0) and returns the listeners with the ports they got.
fn bind_shard_ports(
    ip: IpAddr,
    base: u16,
    shards: u32,
    early: bool,
) -> Result<(Vec<std::net::TcpListener>, Vec<u16>), StartError> {
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    for i in 0..shards {
        let port = if base == 0 { 0 } else { base + i as u16 };
        let addr = SocketAddr::new(ip, port);
        let listener = bind(addr, early)?;
        ports.push(
            listener
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?
                .port(),
        );
        listeners.push(listener);
    }
    Ok((listeners, ports))
}

/// A cluster member's node ports: shard `i` on `cluster.node_listen` + i
/// (see `cluster`). None on a single node.
fn bind_node_ports(config: &Config, shards: u32) -> Result<Vec<std::net::TcpListener>, StartError> {
    let Some(base) = config.cluster.node_listen.filter(|_| config.cluster.enabled()) else {
        return Ok(Vec::new());
    };
    (0..shards)
        .map(|i| {
            let addr = SocketAddr::new(base.ip(), base.port() + i as u16);
            probe_port(addr)?;
            bind(addr, false)
        })
        .collect()
}

/// Binds `addr` once per shard with SO_REUSEPORT; port 0 resolves to one
/// real port that every shard then shares.
fn bind_shared(
    addr: SocketAddr,
    shards: u32,
    early: bool,
) -> Result<(Vec<std::net::TcpListener>, u16), StartError> {
    let first = bind(addr, early)?;
    let port = first
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?
        .port();
    let mut all = vec![first];
    for _ in 1..shards {
        all.push(bind(SocketAddr::new(addr.ip(), port), early)?);
    }
    Ok((all, port))
}

/// Probes every fixed shard port `base + i` (none when `base` is 0).
fn probe_shard_ports(ip: IpAddr, base: u16, config: &Config) -> Result<(), StartError> {
    if base == 0 {
        return Ok(());
    }
    for i in 0..config.effective_shards() {
        probe_port(SocketAddr::new(ip, base + i as u16))?;
    }
    Ok(())
}

/// Starts the broker and returns once every shard serves.
pub fn start(config: Config) -> Result<RunningBroker, StartError> {
    let data_dir = config.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| StartError::DataDir {
        path: data_dir,
        source,
    })?;
    let lock = lock_data_dir(&config.server.data_dir)?;
    let mut exposed = vec![config.server.listen, config.server.http_listen];
    if config.kafka.enabled {
        exposed.push(config.kafka.listen);
    }
    if let Some(addr) = config.security.exposed_without_protection(&exposed) {
        return Err(StartError::Insecure { addr });
    }
    if let Some(addr) = config.cluster.exposed_node_listen() {
        if !config.security.insecure {
            return Err(StartError::InsecureNodeLinks(shoal_config::node_links_refusal(
                addr,
            )));
        }
        tracing::warn!(%addr, "security.insecure = true: node links on a non-loopback address, without [cluster.tls]");
    }
    if config.security.insecure && exposed.iter().any(|a| !a.ip().is_loopback()) {
        tracing::warn!(
            "security.insecure = true: serving a non-loopback address without TLS and authentication; \
             anyone who can reach it can read, write and delete every topic"
        );
    }
    let tls = match &config.security.tls {
        Some(settings) => Some(TlsAcceptor::load(settings).map_err(|e| StartError::Tls(e.to_string()))?),
        None => None,
    };
    let node_tls = match config.cluster.tls.as_ref().filter(|_| config.cluster.enabled()) {
        Some(files) => Some(NodeTls::load(files).map_err(|e| StartError::Tls(e.to_string()))?),
        None => None,
    };
    let security = SecurityService::start(&config).map_err(|e| StartError::Security(e.to_string()))?;
    probe_port(config.server.listen)?;
    probe_port(config.server.http_listen)?;
    probe_shard_ports(config.server.listen.ip(), config.server.shard_port_base, &config)?;
    if config.kafka.enabled {
        probe_port(config.kafka.listen)?;
        probe_shard_ports(config.kafka.listen.ip(), config.kafka.shard_port_base, &config)?;
    }
    let shards = config.effective_shards();
    let listeners = bind_all(&config, shards)?;
    let ports = listeners.ports.clone();
    let (senders, inboxes) = mesh::build::<ShardCall, ShardReply>(shards);
    let cpus = shard_cpus(shards, config.runtime.pin_cores);
    let (ready_tx, ready_rx) = flume::unbounded::<(ShardId, BrokerResult<()>)>();
    let mut stops = Vec::new();
    let mut handles = Vec::new();
    let mut shared = listeners.shared.into_iter();
    let mut own = listeners.shard.into_iter();
    let mut http = listeners.http.into_iter();
    let mut kafka_listeners = listeners.kafka.into_iter();
    let mut node = listeners.node.into_iter();
    for (id, inbox) in (0..shards).zip(inboxes) {
        let (stop_tx, stop_rx) = flume::bounded::<()>(1);
        stops.push(stop_tx);
        let ctx = ShardStart {
            id,
            config: config.clone(),
            ports: ports.clone(),
            peers: senders.clone(),
            inbox,
            shared: shared.next().expect("one shared listener per shard"),
            own: own.next().expect("one shard listener per shard"),
            http: http.next().expect("one HTTP listener per shard"),
            security: security.clone(),
            tls: tls.clone(),
            kafka: kafka_listeners.next(),
            node: node.next(),
            node_tls: node_tls.clone(),
            stop: stop_rx,
            ready: ready_tx.clone(),
        };
        let handle =
            spawn_shard(id, cpus[id as usize], &config.runtime, move || run_shard(ctx)).map_err(|e| {
                StartError::Shard {
                    shard: id,
                    reason: e.to_string(),
                }
            })?;
        handles.push(handle);
    }
    drop(senders);
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok((_, Ok(()))) => {}
            Ok((shard, Err(e))) => {
                return Err(StartError::Shard {
                    shard: shard.get(),
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(StartError::Shard {
                    shard: 0,
                    reason: "a shard exited during start".into(),
                })
            }
        }
    }
    Ok(RunningBroker {
        ports,
        tls,
        node_tls,
        _lock: lock,
        stops,
        handles,
    })
}

/// What a shard thread needs to start.
struct ShardStart {
    id: u32,
    config: Config,
    ports: Ports,
    peers: Vec<flume::Sender<Envelope<ShardCall, ShardReply>>>,
    inbox: Inbox,
    shared: std::net::TcpListener,
    own: std::net::TcpListener,
    http: std::net::TcpListener,
    security: Arc<SecurityService>,
    tls: Option<Arc<TlsAcceptor>>,
    /// Kafka's shared and own listener, when the Kafka listener is on.
    kafka: Option<(std::net::TcpListener, std::net::TcpListener)>,
    /// This shard's node-link listener (cluster members only).
    node: Option<std::net::TcpListener>,
    /// Mutual TLS on the node links (`[cluster.tls]`).
    node_tls: Option<Arc<NodeTls>>,
    stop: flume::Receiver<()>,
    ready: flume::Sender<(ShardId, BrokerResult<()>)>,
}

/// A shard's sockets, listening (bound at start, see [`bind_listener`]).
struct Listening {
    shared: glommio::net::TcpListener,
    own: glommio::net::TcpListener,
    http: glommio::net::TcpListener,
    kafka: Option<(glommio::net::TcpListener, glommio::net::TcpListener)>,
    node: Option<glommio::net::TcpListener>,
}

impl Listening {
    fn start(
        shared: std::net::TcpListener,
        own: std::net::TcpListener,
        http: std::net::TcpListener,
        kafka: Option<(std::net::TcpListener, std::net::TcpListener)>,
        node: Option<std::net::TcpListener>,
    ) -> std::io::Result<Listening> {
        Ok(Listening {
            shared: adopt_listener(shared)?,
            own: adopt_listener(own)?,
            http: adopt_listener(http)?,
            kafka: match kafka {
                Some((shared, own)) => Some((adopt_listener(shared)?, adopt_listener(own)?)),
                None => None,
            },
            node: node.map(adopt_listener).transpose()?,
        })
    }
}

async fn run_shard(ctx: ShardStart) {
    let queue = crate::runtime::io_queue("requests");
    let id = ShardId(ctx.id);
    let mesh = Mesh::new(id, ctx.peers);
    let shard = Shard::new(id, Rc::new(ctx.config), ctx.ports, mesh, ctx.security);
    let inbox_task = glommio::spawn_local_into(shard.clone().serve_inbox(ctx.inbox), queue)
        .expect("the request queue exists");
    if let Err(e) = shard.start().await {
        let _ = ctx.ready.send((id, Err(e)));
        return;
    }
    // A cluster member's ports listen only now: until here a client (or a
    // peer node) connecting is refused and goes to another node, instead
    // of waiting for one that is still recovering (a single node's
    // listened from the start: its clients have nowhere else to go).
    let listening = Listening::start(ctx.shared, ctx.own, ctx.http, ctx.kafka, ctx.node);
    let listening = match listening {
        Ok(listening) => listening,
        Err(e) => {
            let _ = ctx
                .ready
                .send((id, Err(BrokerError::internal(format!("listen: {e}")))));
            return;
        }
    };
    let accept_shared = glommio::spawn_local_into(
        native::accept_loop(shard.clone(), listening.shared, queue, ctx.tls.clone()),
        queue,
    )
    .expect("the request queue exists");
    let accept_own = glommio::spawn_local_into(
        native::accept_loop(shard.clone(), listening.own, queue, ctx.tls.clone()),
        queue,
    )
    .expect("the request queue exists");
    let accept_http = glommio::spawn_local_into(
        http::accept_loop(shard.clone(), listening.http, queue, ctx.tls.clone()),
        queue,
    )
    .expect("the request queue exists");
    let accept_kafka: Vec<_> = listening
        .kafka
        .into_iter()
        .flat_map(|(shared, own)| [(shared, kafka::Door::Shared), (own, kafka::Door::Broker)])
        .map(|(listener, door)| {
            glommio::spawn_local_into(
                kafka::accept_loop(shard.clone(), listener, door, queue, ctx.tls.clone()),
                queue,
            )
            .expect("the request queue exists")
        })
        .collect();
    let links = match (shard.cluster(), listening.node) {
        (Some(cluster), Some(listener)) => cluster.start(listener, ctx.node_tls.clone()),
        _ => Vec::new(),
    };
    let replication = shard.partitions().replication().cloned();
    let replication_task = replication
        .clone()
        .map(|r| glommio::spawn_local_into(r.run(), queue).expect("the request queue exists"));
    // Detached: it checks `shutting_down` between partitions, so shutdown
    // never cancels a retention or compaction pass half way.
    glommio::spawn_local_into(shard.clone().maintenance_loop(), queue)
        .expect("the request queue exists")
        .detach();
    let wake_ms = shard.config().runtime.wake_interval_ms;
    if wake_ms > 0 {
        let waking = shard.clone();
        let wake =
            crate::runtime::wake_every(Duration::from_millis(wake_ms), move || waking.is_shutting_down());
        glommio::spawn_local_into(wake, queue)
            .expect("the request queue exists")
            .detach();
    }
    let _ = ctx.ready.send((id, Ok(())));
    // Runs until a stop arrives (or the broker handle is dropped).
    let _ = ctx.stop.recv_async().await;
    tracing::info!(shard = %shard.id(), "shard draining");
    shard.begin_drain();
    drop(accept_shared);
    drop(accept_own);
    drop(accept_http);
    drop(accept_kafka);
    drain(&shard).await;
    if let (Some(r), Some(task)) = (replication, replication_task) {
        r.stop();
        task.await;
    }
    drop(links);
    shard.shutdown().await;
    drop(inbox_task);
    tracing::info!(shard = %shard.id(), "shard stopped");
}

/// Waits until no request bytes are in flight on the shard, or the drain
/// deadline passes.
async fn drain(shard: &Shard) {
    let limits = &shard.config().limits;
    let (inflight, pool) = (
        limits.shard_inflight_bytes_max as u64,
        limits.receive_pool_bytes_max as u64,
    );
    let busy = || shard.inflight().available() < inflight || shard.receive_pool().available() < pool;
    let deadline = Instant::now() + Duration::from_millis(DRAIN_MS_MAX);
    while busy() && Instant::now() < deadline {
        crate::runtime::sleep(Duration::from_millis(5)).await;
    }
}
