//! Bounded memory and connection state under slow or hostile clients:
//! partial maximal frames count against the shard's receive pool (RSS
//! stays under the configured budgets plus 256 MiB while a well-behaved
//! client keeps working), frames must arrive within a deadline, idle
//! connections close, and connection limits refuse with a clear error.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_protocol::batch::NewRecord;
use shoal_protocol::client::{Client, GroupConsumer, GroupConsumerConfig, Producer, ProducerConfig};
use shoal_protocol::codec;
use shoal_protocol::error::ErrorCode;
use shoal_protocol::frame::{FrameHeader, FRAME_HEADER_LEN};
use shoal_protocol::messages::handshake::ErrorResponse;
use shoal_protocol::messages::topic::TopicConfig;
use shoal_tests::{wait_until, BrokerOptions, BrokerProcess};

const MIB: u64 = 1 << 20;

/// A header announcing a produce frame of `frame_len` bytes (whose body
/// never completes): it passes every header check, so the broker commits
/// to reading the body.
fn hostile_header(frame_len: u32) -> [u8; FRAME_HEADER_LEN] {
    FrameHeader {
        frame_len,
        api_key: shoal_protocol::api::ApiKey::Produce.to_wire(),
        api_version: shoal_protocol::api::ApiKey::Produce.version(),
        correlation_id: 7,
        flags: 0,
        reserved: 0,
        meta_len: 64,
        crc32c: 0,
    }
    .to_bytes()
}

/// Opens a connection with a small send buffer (so the kernel holds little
/// of what the broker does not read) and writes the header and as much of
/// the body as the socket takes without blocking, up to `body_max` bytes.
fn hold_partial_frame(addr: &str, frame_len: u32, body_max: usize) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).ok()?;
    set_send_buffer(&s, 64 << 10);
    s.write_all(&hostile_header(frame_len)).ok()?;
    s.set_nonblocking(true).ok()?;
    let chunk = vec![0u8; 256 << 10];
    let mut sent = 0;
    while sent < body_max {
        match s.write(&chunk[..chunk.len().min(body_max - sent)]) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    Some(s)
}

/// Tops up every held connection's body as far as the broker reads it.
fn feed(conns: &mut [(TcpStream, usize)], body_max: usize) -> usize {
    let chunk = vec![0u8; 256 << 10];
    let mut moved = 0;
    for (s, sent) in conns.iter_mut() {
        while *sent < body_max {
            match s.write(&chunk[..chunk.len().min(body_max - *sent)]) {
                Ok(n) => {
                    *sent += n;
                    moved += n;
                }
                Err(_) => break,
            }
        }
    }
    moved
}

fn set_send_buffer(s: &TcpStream, bytes: i32) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on a socket we own, with a pointer to a live i32.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &bytes as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
    }
}

fn record(i: usize) -> NewRecord {
    NewRecord {
        key: Some(format!("k{i}").into_bytes()),
        value: Some(format!("well-behaved {i}").into_bytes()),
        ..NewRecord::default()
    }
}

/// One value of a metric family (summed over its samples) from `/metrics`.
fn metric(broker: &BrokerProcess, name: &str) -> f64 {
    let url = format!("http://127.0.0.1:{}/metrics", broker.http_port);
    let text = ureq::get(&url)
        .call()
        .expect("scrape")
        .into_string()
        .expect("body");
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// 1,000 connections that each announce a maximal (16 MiB) frame, send as
/// much of it as the broker takes and stall, plus 100 HTTP connections
/// doing the same with 8 MiB bodies: the broker's RSS stays under its
/// configured budgets (receive pool + in-flight, per shard) plus 256 MiB,
/// and a well-behaved client produces and reads back throughout. Stalled
/// frames are cut off by the frame deadline.
#[test]
fn hostile_partial_frames_stay_within_the_budget() {
    let (pool, inflight, shards) = (64 * MIB, 32 * MIB, 2u64);
    let options = BrokerOptions {
        shards: shards as u32,
        config_toml: format!(
            "[limits]\nframe_bytes_max = {}\nconnection_inflight_bytes_max = {}\nshard_inflight_bytes_max = {inflight}\nreceive_pool_bytes_max = {pool}\nframe_read_ms_max = 3000\n",
            16 * MIB,
            16 * MIB
        ),
        ..BrokerOptions::default()
    };
    let broker = BrokerProcess::start_with(options);
    let budget_kib = shards * (pool + inflight) / 1024;
    let bound_kib = budget_kib + 256 * 1024;
    let client = Arc::new(Client::connect(&broker.addr_string()).expect("connect"));
    client
        .create_topic(
            "calm",
            TopicConfig {
                partitions: 2,
                ..TopicConfig::default()
            },
        )
        .expect("create");
    let addr = broker.addr_string();
    let frame_len = (16 * MIB) as u32;
    let body_max = (15 * MIB) as usize;
    let mut native: Vec<(TcpStream, usize)> = Vec::new();
    for _ in 0..1000 {
        let s = hold_partial_frame(&addr, frame_len, 64 << 10).expect("hostile connect");
        native.push((s, 64 << 10));
    }
    let http_addr = format!("127.0.0.1:{}", broker.http_port);
    let mut http = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(&http_addr).expect("http connect");
        set_send_buffer(&s, 64 << 10);
        let head = format!(
            "POST /topics/calm/messages HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            8 * MIB
        );
        s.write_all(head.as_bytes()).expect("http head");
        s.set_nonblocking(true).expect("nonblocking");
        http.push((s, 0usize));
    }
    let producer = Producer::new(client.clone(), ProducerConfig::default()).expect("producer");
    let started = Instant::now();
    let mut sent = 0;
    let mut peak_kib = 0;
    // Keep the hostile peers pushing while the calm client works.
    while started.elapsed() < Duration::from_secs(12) {
        feed(&mut native, body_max);
        feed(&mut http, (8 * MIB) as usize);
        let acks = producer
            .send_all("calm", (sent..sent + 10).map(record).collect())
            .expect("a well-behaved produce is served while hostile frames stall");
        assert_eq!(acks.len(), 10);
        sent += 10;
        peak_kib = peak_kib.max(broker.rss_kib());
        assert!(
            broker.rss_kib() < bound_kib,
            "RSS {} KiB is over the budget {budget_kib} KiB + 256 MiB",
            broker.rss_kib()
        );
    }
    let read: usize = (0..2)
        .map(|p| {
            client
                .fetch("calm", p, 0, 4 << 20, 0)
                .expect("fetch")
                .records
                .len()
        })
        .sum();
    assert_eq!(read, sent, "every well-behaved record reads back");
    let peak = broker.peak_rss_kib();
    eprintln!(
        "hostile frames: {} native + {} http connections; {sent} calm records; RSS peak {peak} KiB (sampled {peak_kib} KiB), bound {bound_kib} KiB",
        native.len(),
        http.len()
    );
    assert!(peak < bound_kib, "peak RSS {peak} KiB over {bound_kib} KiB");
    assert!(
        metric(&broker, "shoal_native_connections_expired_total") > 0.0,
        "stalled frames are cut off by the frame deadline"
    );
}

/// A frame that stops half way is cut off after `frame_read_ms_max`; a
/// connection that sends nothing is closed after `connection_idle_ms_max`;
/// a consumer that heartbeats (and long-polls longer than the idle time)
/// keeps its connection.
#[test]
fn stalled_frames_and_idle_connections_close() {
    let options = BrokerOptions {
        shards: 1,
        config_toml: "[limits]\nframe_read_ms_max = 500\nconnection_idle_ms_max = 1500\n".into(),
        ..BrokerOptions::default()
    };
    let broker = BrokerProcess::start_with(options);
    let closed_within = |mut s: TcpStream, limit: Duration| {
        s.set_read_timeout(Some(limit)).expect("timeout");
        let mut buf = [0u8; 64];
        let started = Instant::now();
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Some(started.elapsed()),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    };
    let mut stalled = TcpStream::connect(broker.addr_string()).expect("connect");
    stalled.write_all(&hostile_header(1024)[..]).expect("header");
    stalled.write_all(&[0u8; 100]).expect("part of the body");
    let took = closed_within(stalled, Duration::from_secs(5)).expect("a stalled frame is cut off");
    assert!(
        took >= Duration::from_millis(400),
        "not before its deadline ({took:?})"
    );
    let idle = TcpStream::connect(broker.addr_string()).expect("connect");
    let took = closed_within(idle, Duration::from_secs(8)).expect("an idle connection is closed");
    assert!(
        took >= Duration::from_millis(1400),
        "not before the idle time ({took:?})"
    );

    let client = Arc::new(Client::connect(&broker.addr_string()).expect("connect"));
    client
        .create_topic(
            "beat",
            TopicConfig {
                partitions: 1,
                ..TopicConfig::default()
            },
        )
        .expect("create");
    let mut config = GroupConsumerConfig::new("g", &["beat"]);
    config.session_timeout_ms = 3000;
    config.max_wait_ms = 2500;
    let consumer = GroupConsumer::join(client.clone(), config).expect("join");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        consumer.poll().expect("a heartbeating consumer is never idle");
    }
    let producer = Producer::new(client.clone(), ProducerConfig::default()).expect("producer");
    producer.send_all("beat", vec![record(1)]).expect("produce");
    let got = (0..20)
        .flat_map(|_| consumer.poll().expect("poll"))
        .take(1)
        .count();
    assert_eq!(got, 1, "the consumer still receives after idle periods");
    assert!(
        metric(&broker, "shoal_native_connections_expired_total") >= 2.0,
        "both closes are counted"
    );
}

/// A TCP connection from `source` (a loopback address other than
/// 127.0.0.1, so the test's own scrapes do not count against the limit).
fn connect_from(source: &str, to: &str) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let source: std::net::SocketAddr = format!("{source}:0").parse().expect("source address");
    socket.bind(&source.into())?;
    let to: std::net::SocketAddr = to.parse().expect("broker address");
    socket.connect(&to.into())?;
    Ok(socket.into())
}

/// Past `connections_per_ip_max` from one address, a native connection gets
/// an error frame `too_many_connections` and is closed, an HTTP one a 503
/// with that code; other addresses are still served; closing one admits
/// the next.
#[test]
fn connection_limits_refuse_with_a_clear_error() {
    let options = BrokerOptions {
        shards: 1,
        config_toml: "[limits]\nconnections_per_ip_max = 3\n".into(),
        ..BrokerOptions::default()
    };
    let broker = BrokerProcess::start_with(options);
    let (native, http) = (broker.addr_string(), format!("127.0.0.1:{}", broker.http_port));
    let source = "127.0.0.2";
    let held: Vec<TcpStream> = (0..3)
        .map(|_| connect_from(source, &native).expect("connect"))
        .collect();
    // Each counts once the broker accepted it: wait for the gauge.
    assert!(wait_until(Duration::from_secs(5), || {
        metric(&broker, "shoal_connections_open") >= 4.0
    }));
    let mut refused = connect_from(source, &native).expect("tcp connect");
    refused.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = Vec::new();
    let _ = refused.read_to_end(&mut reply);
    let decoded = shoal_protocol::frame::decode_frame(&reply, 1 << 20);
    let shoal_protocol::frame::Decoded::Frame { frame, .. } = decoded else {
        panic!(
            "the refused connection gets an error frame, got {} bytes",
            reply.len()
        );
    };
    let err = codec::decode::<ErrorResponse>(&frame).expect("an error frame");
    assert_eq!(ErrorCode::from_wire(err.error), ErrorCode::TooManyConnections);
    assert!(err.message.contains("connections_per_ip_max"), "{}", err.message);

    let mut h = connect_from(source, &http).expect("http connect");
    h.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    h.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut text = String::new();
    let _ = h.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("too_many_connections"), "{text}");
    // Another address is served meanwhile.
    let url = format!("http://{http}/healthz");
    assert!(ureq::get(&url).call().is_ok());
    drop(held);
    assert!(wait_until(Duration::from_secs(5), || {
        connect_from(source, &http)
            .and_then(|mut s| {
                s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")?;
                let mut t = String::new();
                s.read_to_string(&mut t)?;
                Ok(t.starts_with("HTTP/1.1 200"))
            })
            .unwrap_or(false)
    }));
    assert!(metric(&broker, "shoal_connections_refused_total") >= 2.0);
}
