//! A fault-injecting TCP proxy for one direction of a node-to-node link:
//! node A's `--peer` for node B names the proxy, which forwards to B's node
//! port. The test cuts a link by black-holing its proxy: connections stay
//! open but nothing passes (bytes read are discarded), as on a network
//! that silently drops packets; new connections are accepted and
//! black-holed too. Healing lets bytes through again on new connections
//! (a black-holed connection is closed on heal, so both ends reconnect and
//! no half-forwarded frame is ever passed on).
//!
//! Threads: one acceptor per proxy, two pumps per connection. Every socket
//! has a read timeout, so each thread notices `stop` within
//! [`POLL_MS`]; dropping the proxy stops and joins them all.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a blocked thread looks at the proxy's flags.
const POLL_MS: u64 = 50;
/// Bytes one pump moves per read.
const PUMP_BYTES: usize = 64 << 10;

struct Flags {
    /// Black-hole: discard everything.
    cut: AtomicBool,
    /// Bumped on heal: connections from an earlier generation close.
    generation: AtomicU64,
    stop: AtomicBool,
}

/// One proxy, listening on `addr`, forwarding to `target`.
pub struct LinkProxy {
    pub addr: SocketAddr,
    flags: Arc<Flags>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl LinkProxy {
    pub fn start(listen_port: u16, target: SocketAddr) -> LinkProxy {
        let listener = TcpListener::bind(("127.0.0.1", listen_port)).expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let addr = listener.local_addr().expect("proxy addr");
        let flags = Arc::new(Flags {
            cut: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let threads = Arc::new(Mutex::new(Vec::new()));
        let (f, t) = (flags.clone(), threads.clone());
        let acceptor = std::thread::spawn(move || accept_loop(listener, target, f, t));
        threads.lock().unwrap().push(acceptor);
        LinkProxy { addr, flags, threads }
    }

    /// Black-holes the link.
    pub fn cut(&self) {
        self.flags.cut.store(true, Ordering::SeqCst);
    }

    /// Lets bytes through again (on fresh connections).
    pub fn heal(&self) {
        self.flags.generation.fetch_add(1, Ordering::SeqCst);
        self.flags.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.flags.stop.store(true, Ordering::SeqCst);
        let threads: Vec<JoinHandle<()>> = self.threads.lock().unwrap().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    flags: Arc<Flags>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    while !flags.stop.load(Ordering::SeqCst) {
        let inbound = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(POLL_MS / 5));
                continue;
            }
            Err(_) => continue,
        };
        let _ = inbound.set_nonblocking(false);
        let generation = flags.generation.load(Ordering::SeqCst);
        // A cut link accepts and then swallows; the target is not dialled.
        let outbound = if flags.cut.load(Ordering::SeqCst) {
            None
        } else {
            TcpStream::connect_timeout(&target, Duration::from_secs(1)).ok()
        };
        let Some(outbound) = outbound else {
            let f = flags.clone();
            let h = std::thread::spawn(move || swallow(inbound, f, generation));
            threads.lock().unwrap().push(h);
            continue;
        };
        for (from, to) in [
            (inbound.try_clone(), outbound.try_clone()),
            (outbound.try_clone(), inbound.try_clone()),
        ] {
            let (Ok(from), Ok(to)) = (from, to) else { continue };
            let f = flags.clone();
            let h = std::thread::spawn(move || pump(from, to, f, generation));
            threads.lock().unwrap().push(h);
        }
    }
}

/// Whether a connection of `generation` must close now.
fn expired(flags: &Flags, generation: u64) -> bool {
    flags.stop.load(Ordering::SeqCst) || flags.generation.load(Ordering::SeqCst) != generation
}

/// Copies `from` to `to` while the link is up; discards while it is cut.
fn pump(mut from: TcpStream, mut to: TcpStream, flags: Arc<Flags>, generation: u64) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(POLL_MS)));
    let mut buf = vec![0u8; PUMP_BYTES];
    while !expired(&flags, generation) {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        if flags.cut.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Reads and discards until the link heals (then closes) or the peer goes.
fn swallow(mut from: TcpStream, flags: Arc<Flags>, generation: u64) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(POLL_MS)));
    let mut buf = vec![0u8; PUMP_BYTES];
    while !expired(&flags, generation) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
}
