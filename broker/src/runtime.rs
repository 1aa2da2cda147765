//! The small runtime layer over glommio.
//!
//! glommio 0.9 is the last release and upstream is barely maintained, so the
//! executor-level parts live here: starting one pinned executor per shard,
//! the latency task queues, timers (`sleep`), the wall clock, and turning
//! pre-bound std listeners into glommio ones. Other modules use glommio
//! directly only for what runs inside an executor, and each for one reason:
//! - tasks (`spawn_local`, `spawn_local_into`): `server` (a shard's
//!   accept loops), `shard::route` and `shard::inbox` (one task per
//!   partition append and per mesh call), `delivery::service` (the timer);
//! - `glommio::sync::Semaphore` for byte budgets and the dedup lock:
//!   `shard::state`, `frontend::native::connection`, `partition::replica`;
//! - `glommio::net::TcpStream` and local channels: the front ends'
//!   connections (`frontend::native::connection`, `frontend::http`);
//! - `TaskQueueHandle`: `partition` (the logs' flush queue);
//! - DMA files: only through `shoal_storage` (`delivery::state_log` and
//!   `partition::replica` open logs).
//!
//! Replacing the runtime means replacing those uses, listed above. Measured
//! pitfalls handled here or documented for the callers:
//! - every executor's first DMA open must be of a non-empty file (the storage
//!   crate's `PartitionLog::open` takes care of it);
//! - I/O paths run in a `Latency::Matters` queue (1 ms), otherwise the
//!   default preemption timer can hold them up to 100 ms behind CPU-bound
//!   work;
//! - disk completions do not preempt running tasks: they are reaped when the
//!   executor next polls its rings (at the latency queues' preemption
//!   interval while tasks keep running), and a task queue woken by one runs
//!   after the current queue's slice. The logs' writers therefore have a
//!   queue of their own (`log-flush`) rather than sharing the request
//!   handlers' FIFO, and keep several writes in flight so the device stays
//!   busy across that delay (measured in `storage/benches/log_append.rs`);
//! - `spin_before_park` trades a burnt core for ~5 µs cross-core wake-ups; it
//!   is a setting (`runtime.spin_before_park_us`), off by default;
//! - under heavy connection churn on a loaded host an idle executor was seen
//!   parked in the io_uring wait with accepts and reads ready (connections
//!   in its listener's accept queue and unread bytes on an open one, the
//!   thread in `io_cqring_wait` for over 10 s); a timer every
//!   `runtime.wake_interval_ms` (100 by default) makes the reactor poll its
//!   rings again. To repeat it (it needs a busy machine; on the 2-core
//!   development VM with other builds running it came about once in eight
//!   runs with the timer off, and not in 18 with it on):
//!   `SHOAL_TEST_WAKE_INTERVAL_MS=0 SHOAL_KAFKA_BAD_SEED=9245798958064164434
//!   cargo test -p shoal-tests --test kafka_bad_input malformed`, in a loop.

use std::io;
use std::net::SocketAddr;
use std::os::fd::IntoRawFd;
use std::time::Duration;

use glommio::{Latency, LocalExecutorBuilder, Placement, Shares, TaskQueueHandle};

use shoal_config::RuntimeConfig;

/// Preemption budget for latency-sensitive queues (the storage crate's
/// constant, which the storage bench measures with).
const IO_QUEUE_LATENCY: Duration = shoal_storage::config::IO_QUEUE_LATENCY;
/// Pending connections the kernel keeps per listening socket.
const LISTEN_BACKLOG: i32 = 1024;

/// Starts shard `shard` on its own thread with a pinned glommio executor and
/// runs `body` on it. Returns the thread's join handle.
pub fn spawn_shard<F, Fut, T>(
    shard: u32,
    cpu: Option<usize>,
    config: &RuntimeConfig,
    body: F,
) -> io::Result<glommio::ExecutorJoinHandle<T>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    let placement = match cpu {
        Some(cpu) => Placement::Fixed(cpu),
        None => Placement::Unbound,
    };
    let mut builder = LocalExecutorBuilder::new(placement)
        .name(&format!("shard-{shard}"))
        .io_memory(config.io_memory_bytes);
    if config.spin_before_park_us > 0 {
        builder = builder.spin_before_park(Duration::from_micros(config.spin_before_park_us));
    }
    builder.spawn(body).map_err(|e| io::Error::other(e.to_string()))
}

/// The CPU each shard is pinned to, or `None` everywhere when pinning is off.
/// Shards wrap around the available cores when there are more shards.
pub fn shard_cpus(shards: u32, pin: bool) -> Vec<Option<usize>> {
    let cores = if pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    (0..shards as usize)
        .map(|i| (!cores.is_empty()).then(|| cores[i % cores.len()].id))
        .collect()
}

/// A task queue for request handling and I/O on the current executor.
pub fn io_queue(name: &str) -> TaskQueueHandle {
    glommio::executor().create_task_queue(Shares::default(), Latency::Matters(IO_QUEUE_LATENCY), name)
}

/// Sleeps on the current executor.
pub async fn sleep(duration: Duration) {
    glommio::timer::sleep(duration).await;
}

/// Wakes the executor every `interval` until `stopped()`: a guard against
/// the reactor sleeping while I/O is ready (`runtime.wake_interval_ms`).
pub async fn wake_every(interval: Duration, stopped: impl Fn() -> bool) {
    while !stopped() {
        sleep(interval).await;
    }
}

/// Binds a TCP socket with SO_REUSEPORT (so every shard can bind the shared
/// port and the kernel spreads connections), before any executor exists.
/// Port 0 picks a free port; the caller reads it back and binds the other
/// shards to the same one. It listens at once when `listen_now`: clients
/// of a single node that connect while it recovers wait in the kernel's
/// backlog, with nowhere better to go. A cluster member's sockets listen
/// only once the shard serves ([`adopt_listener`]): until then a client or
/// peer is refused at once and goes to another node, instead of waiting
/// for one that is still recovering.
pub fn bind_listener(addr: SocketAddr, listen_now: bool) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if listen_now {
        socket.listen(LISTEN_BACKLOG)?;
    }
    Ok(socket.into())
}

/// Makes sure a socket bound by [`bind_listener`] listens (the shard is
/// ready to serve; listening again only sets the backlog) and hands it to
/// the current executor.
pub fn adopt_listener(listener: std::net::TcpListener) -> io::Result<glommio::net::TcpListener> {
    use std::os::fd::FromRawFd;
    socket2::SockRef::from(&listener).listen(LISTEN_BACKLOG)?;
    let fd = listener.into_raw_fd();
    // SAFETY: `fd` comes from `into_raw_fd` of a listening socket we own, so it
    // is valid, open, and owned by nobody else; glommio takes ownership of it
    // and closes it on drop.
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(fd) })
}

/// Milliseconds since the Unix epoch (wall clock), for append times and lag.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
