//! Loopback TCP: what the kernel's network stack does between two pinned threads.
//!
//! Throughput: one thread writes 256 KiB chunks to a TCP_NODELAY socket on
//! 127.0.0.1, another reads and counts, for up to `duration` or
//! [`LOOPBACK_BYTES_MAX`]; the figure is bytes read over the reader's time
//! from first to last byte. Round trip: 64-byte ping-pong over a fresh
//! connection for up to `duration` or [`LOOPBACK_PINGS_MAX`] exchanges, into
//! an HDR histogram. The two threads are pinned to the first and second core
//! (the same core on a one-core machine) and the placement is reported.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::baseline::pin_to;
use crate::error::BenchError;
use crate::histogram::{LatencyHistogram, LatencySummary};

/// Most bytes the throughput test sends.
pub const LOOPBACK_BYTES_MAX: u64 = 8 << 30;
/// Most ping-pong exchanges.
pub const LOOPBACK_PINGS_MAX: u64 = 200_000;
const CHUNK_BYTES: usize = 256 * 1024;
const PING_BYTES: usize = 64;

/// What loopback TCP did on this machine.
#[derive(Clone, Debug, Serialize)]
pub struct LoopbackBaseline {
    pub throughput_bytes_per_s: f64,
    pub bytes_sent: u64,
    pub round_trip: LatencySummary,
    /// Cores the sender and receiver were pinned to (None when pinning failed).
    pub sender_core: Option<usize>,
    pub receiver_core: Option<usize>,
}

/// Measures throughput for `duration` and round trips for `duration`.
pub fn measure(duration: Duration) -> Result<LoopbackBaseline, BenchError> {
    let (throughput_bytes_per_s, bytes_sent, sender_core, receiver_core) = throughput(duration)?;
    let round_trip = round_trip(duration)?;
    Ok(LoopbackBaseline {
        throughput_bytes_per_s,
        bytes_sent,
        round_trip,
        sender_core,
        receiver_core,
    })
}

fn connected_pair() -> Result<(TcpStream, TcpStream), BenchError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| BenchError::io("loopback bind", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| BenchError::io("loopback local_addr", e))?;
    let client = TcpStream::connect(addr).map_err(|e| BenchError::io("loopback connect", e))?;
    let (server, _) = listener
        .accept()
        .map_err(|e| BenchError::io("loopback accept", e))?;
    for s in [&client, &server] {
        s.set_nodelay(true)
            .map_err(|e| BenchError::io("loopback TCP_NODELAY", e))?;
    }
    Ok((client, server))
}

fn throughput(duration: Duration) -> Result<(f64, u64, Option<usize>, Option<usize>), BenchError> {
    let (mut tx, mut rx) = connected_pair()?;
    let sender = thread::spawn(move || -> std::io::Result<(u64, Option<usize>)> {
        let core = pin_to(0);
        let chunk = vec![0x5au8; CHUNK_BYTES];
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < duration && sent < LOOPBACK_BYTES_MAX {
            tx.write_all(&chunk)?;
            sent += CHUNK_BYTES as u64;
        }
        Ok((sent, core))
        // Dropping `tx` closes the socket: the reader sees EOF.
    });
    // The receiver runs on its own thread too, so pinning never sticks to the caller.
    let receiver = thread::spawn(move || -> std::io::Result<(u64, Duration, Option<usize>)> {
        let core = pin_to(1);
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut received = 0u64;
        let mut first: Option<Instant> = None;
        loop {
            let n = rx.read(&mut buf)?;
            if n == 0 {
                break;
            }
            first.get_or_insert_with(Instant::now);
            received += n as u64;
        }
        Ok((received, first.map_or(Duration::ZERO, |f| f.elapsed()), core))
    });
    let (received, elapsed, receiver_core) = receiver
        .join()
        .map_err(|_| BenchError::Driver("loopback receiver thread panicked".into()))?
        .map_err(|e| BenchError::io("loopback read", e))?;
    let (sent, sender_core) = sender
        .join()
        .map_err(|_| BenchError::Driver("loopback sender thread panicked".into()))?
        .map_err(|e| BenchError::io("loopback write", e))?;
    if received != sent {
        return Err(BenchError::Driver(format!(
            "loopback lost bytes: sent {sent}, received {received}"
        )));
    }
    let rate = received as f64 / elapsed.as_secs_f64().max(1e-9);
    Ok((rate, sent, sender_core, receiver_core))
}

fn round_trip(duration: Duration) -> Result<LatencySummary, BenchError> {
    let (mut client, mut server) = connected_pair()?;
    let echo = thread::spawn(move || -> std::io::Result<()> {
        pin_to(0);
        let mut buf = [0u8; PING_BYTES];
        loop {
            match server.read_exact(&mut buf) {
                Ok(()) => server.write_all(&buf)?,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });
    let pinger = thread::spawn(move || -> std::io::Result<LatencySummary> {
        pin_to(1);
        let mut hist = LatencyHistogram::new();
        let mut buf = [0u8; PING_BYTES];
        let start = Instant::now();
        let mut pings = 0u64;
        while start.elapsed() < duration && pings < LOOPBACK_PINGS_MAX {
            let sent_at = Instant::now();
            client.write_all(&buf)?;
            client.read_exact(&mut buf)?;
            hist.record(sent_at.elapsed().as_nanos() as u64);
            pings += 1;
        }
        Ok(hist.summary())
        // Dropping `client` ends the echo thread.
    });
    let summary = pinger
        .join()
        .map_err(|_| BenchError::Driver("loopback ping thread panicked".into()))?
        .map_err(|e| BenchError::io("loopback ping-pong", e))?;
    echo.join()
        .map_err(|_| BenchError::Driver("loopback echo thread panicked".into()))?
        .map_err(|e| BenchError::io("loopback echo", e))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_something_real_in_a_short_run() {
        // Proves a 100 ms loopback run moves bytes and times round trips (no speed asserted).
        let b = measure(Duration::from_millis(100)).unwrap();
        assert!(b.bytes_sent > 0);
        assert!(b.throughput_bytes_per_s > 0.0);
        assert!(b.round_trip.count > 0);
        assert!(b.round_trip.p50_ns > 0);
    }
}
