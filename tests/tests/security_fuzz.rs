//! Hostile bytes at the security layers of a live broker: thousands of
//! malformed ClientHellos (truncated, mutated, garbage behind a TLS record
//! header, hostile record lengths) and peers that stall mid-handshake; and
//! truncated and mutated SCRAM messages in `Authenticate` requests. The
//! broker must answer or close each one, keep serving a good client, and
//! stay within a memory bound. Seeded: set SHOAL_FUZZ_SEED to replay.

mod security_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustls::pki_types::ServerName;
use shoal_protocol::client::{Connection, ConnectionConfig};
use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::security::AuthenticateRequest;
use shoal_protocol::scram::{nonce_text, ScramClient, MECHANISM};
use shoal_protocol::tls::provider;

use security_support::*;

/// Malformed handshakes sent, one connection each.
const HELLOS: usize = 3_000;
/// Threads sending them.
const POKERS: usize = 8;
/// Peers that send half a ClientHello and then stall.
const STALLED: usize = 200;
/// Authenticate requests with damaged SCRAM messages.
const SCRAM_CASES: usize = 3_000;
/// Peak broker RSS growth allowed over its start, KiB.
const RSS_GROWTH_KIB_MAX: u64 = 64 << 10;

fn seed() -> u64 {
    let seed = std::env::var("SHOAL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("SHOAL_FUZZ_SEED={seed}");
    seed
}

/// A real ClientHello, as rustls sends it.
fn client_hello(ca: &std::path::Path) -> Vec<u8> {
    let tls = client_tls(ca, None);
    let mut conn =
        rustls::ClientConnection::new(tls.config.clone(), ServerName::try_from("127.0.0.1").unwrap())
            .unwrap();
    let _ = provider();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    assert_eq!(hello[0], 0x16, "a handshake record");
    hello
}

fn damaged(hello: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut bytes = hello.to_vec();
    match rng.gen_range(0..4) {
        // Truncated at a random point.
        0 => bytes.truncate(rng.gen_range(1..hello.len())),
        // A few bytes flipped anywhere.
        1 => {
            for _ in 0..rng.gen_range(1..8) {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] ^= rng.gen_range(1..=255u8);
            }
        }
        // Garbage behind a handshake record header.
        2 => {
            let len = rng.gen_range(0..2048);
            bytes = vec![0x16, 0x03, 0x01];
            bytes.extend_from_slice(&(len as u16).to_be_bytes());
            bytes.extend((0..len).map(|_| rng.gen::<u8>()));
        }
        // A hostile length: a record or handshake message larger than allowed.
        _ => {
            bytes[3] = 0xff;
            bytes[4] = 0xff;
            if bytes.len() > 8 {
                bytes[6] = 0xff;
                bytes[7] = 0xff;
                bytes[8] = 0xff;
            }
        }
    }
    bytes
}

/// How long the broker may take to answer or close a damaged handshake
/// once the peer has sent all it will (well under the 10 s handshake
/// deadline: end of input alone must end the handshake).
const ANSWER_WAIT_MAX: Duration = Duration::from_secs(5);

/// Sends `bytes`, then ends the stream (a truncated hello is all the peer
/// will send), and asserts that the broker answers (any bytes: an alert,
/// a ServerHello, a plaintext refusal) or closes the connection within
/// [`ANSWER_WAIT_MAX`]. A write the broker cut short by closing counts
/// as closed.
fn poke(addr: std::net::SocketAddr, bytes: &[u8]) {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    let mut s = TcpStream::connect(addr).expect("connect to the broker");
    s.set_read_timeout(Some(ANSWER_WAIT_MAX)).unwrap();
    match s.write_all(bytes) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted) => return,
        Err(e) => panic!("write to the broker: {e}"),
    }
    // The peer may have closed already; the read below tells.
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    match s.read(&mut sink) {
        // Closed (0) or answered (n > 0).
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ConnectionReset | ConnectionAborted) => {}
        Err(e) => panic!(
            "a damaged handshake ({} bytes, starting {:02x?}) was neither answered nor closed: {e}",
            bytes.len(),
            &bytes[..bytes.len().min(8)]
        ),
    }
}

#[test]
fn malformed_tls_handshakes() {
    let mut rng = StdRng::seed_from_u64(seed());
    let pki = Pki::new();
    let broker = broker_with(&pki.tls_toml(""));
    let ca = pki.path("ca.pem");
    let hello = client_hello(&ca);
    let before = broker.rss_kib();
    let stalled: Vec<TcpStream> = (0..STALLED)
        .filter_map(|_| {
            let mut s = TcpStream::connect(broker.addr).ok()?;
            s.write_all(&hello[..hello.len() / 2]).ok()?;
            Some(s)
        })
        .collect();
    // Shared and shard ports alike, from a few threads at once.
    let cases: Vec<(std::net::SocketAddr, Vec<u8>)> = (0..HELLOS)
        .map(|i| {
            let addr = if i % 2 == 0 {
                broker.addr
            } else {
                std::net::SocketAddr::new(broker.addr.ip(), broker.shard_ports[i % broker.shard_ports.len()])
            };
            (addr, damaged(&hello, &mut rng))
        })
        .collect();
    std::thread::scope(|scope| {
        for chunk in cases.chunks(HELLOS.div_ceil(POKERS)) {
            scope.spawn(move || chunk.iter().for_each(|(addr, bytes)| poke(*addr, bytes)));
        }
    });
    let good = connect(&broker, Some(client_tls(&ca, None)), None).expect("a good client after the storm");
    good.list_topics().unwrap();
    drop(stalled);
    let peak = broker.peak_rss_kib();
    eprintln!("TLS fuzz: RSS before {before} KiB, peak {peak} KiB");
    assert!(
        peak < before + RSS_GROWTH_KIB_MAX,
        "peak RSS {peak} KiB grew more than {RSS_GROWTH_KIB_MAX} KiB over {before} KiB"
    );
}

#[test]
fn truncated_and_mutated_scram_messages() {
    let mut rng = StdRng::seed_from_u64(seed());
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("admin.pw");
    std::fs::write(&pw, "pw").unwrap();
    let broker = broker_with(&format!(
        "[security]\nauthentication = true\nsuper_users = [\"admin\"]\nbootstrap_admin_password_file = {pw:?}\n\
         auth_failures_per_window_max = 1000000000\n"
    ));
    let before = broker.rss_kib();
    let conn = Arc::new(Connection::connect(broker.addr, ConnectionConfig::default()).unwrap());
    let (_, first) = ScramClient::start("admin", "pw", &nonce_text(&[7; 18]));
    for _ in 0..SCRAM_CASES {
        let mut payload = first.clone();
        match rng.gen_range(0..3) {
            0 => payload.truncate(rng.gen_range(0..first.len())),
            1 => {
                let at = rng.gen_range(0..payload.len());
                payload[at] = rng.gen();
            }
            _ => payload = (0..rng.gen_range(0..600)).map(|_| rng.gen()).collect(),
        }
        let reply = conn
            .call(
                &AuthenticateRequest {
                    mechanism: MECHANISM.into(),
                    payload,
                },
                &[],
                0,
            )
            .expect("the broker answers")
            .message;
        if reply.error == 0 {
            // A first message that still parses: finish with garbage.
            let last: Vec<u8> = (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect();
            let reply = conn
                .call(
                    &AuthenticateRequest {
                        mechanism: MECHANISM.into(),
                        payload: last,
                    },
                    &[],
                    0,
                )
                .expect("the broker answers")
                .message;
            assert_eq!(ErrorCode::from_wire(reply.error), ErrorCode::AuthenticationFailed);
            assert!(!reply.done);
        } else {
            assert_eq!(ErrorCode::from_wire(reply.error), ErrorCode::AuthenticationFailed);
        }
    }
    let admin = connect(&broker, None, Some(("admin", "pw"))).expect("the right password still works");
    admin.list_topics().unwrap();
    let peak = broker.peak_rss_kib();
    assert!(
        peak < before + RSS_GROWTH_KIB_MAX,
        "peak RSS {peak} KiB over {before} KiB"
    );
}
