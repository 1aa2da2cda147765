//! `shoal cluster status`: the cluster's nodes and their liveness;
//! `shoal cluster rebalance-leaders`: leaderships back to their preferred
//! replicas (`POST /cluster/rebalance-leaders`).
//!
//! Reads the broker's `GET /cluster` over its HTTP port (`--http`), with a
//! plain blocking HTTP/1.1 request: the node-link state lives with the
//! broker's shards, and the HTTP endpoint already renders it as JSON, so
//! the CLI needs no new native API for it. Over HTTPS when the CLI has a CA
//! (`--tls-ca`, as for every command), with `Authorization: Bearer` when it
//! has a token (`--token`, `SHOAL_TOKEN`): an HTTP port with TLS or
//! authentication on answers only so.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use shoal_protocol::tls::ClientTls;

/// Longest the status request may take.
const TIMEOUT_MS: u64 = 5_000;
/// Cap on the reply read.
const REPLY_BYTES_MAX: u64 = 1 << 20;

/// Fetches `GET /cluster` from `http` (`host:port`), over TLS with `tls`,
/// with a bearer `token`.
pub fn fetch_status(http: &str, tls: Option<&ClientTls>, token: Option<&str>) -> Result<Value, String> {
    call(http, "GET /cluster", tls, token)
}

/// `POST /cluster/rebalance-leaders` (`dry_run` only lists the moves).
pub fn rebalance_leaders(
    http: &str,
    dry_run: bool,
    tls: Option<&ClientTls>,
    token: Option<&str>,
) -> Result<Value, String> {
    call(
        http,
        &format!("POST /cluster/rebalance-leaders?dry_run={dry_run}"),
        tls,
        token,
    )
}

/// One request line (`METHOD /path`) without a body; the JSON reply.
fn call(http: &str, line: &str, tls: Option<&ClientTls>, token: Option<&str>) -> Result<Value, String> {
    let timeout = Some(Duration::from_millis(TIMEOUT_MS));
    let addr = std::net::ToSocketAddrs::to_socket_addrs(http)
        .map_err(|e| format!("cannot resolve {http}: {e}"))?
        .next()
        .ok_or_else(|| format!("{http} resolves to no address"))?;
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(TIMEOUT_MS))
        .map_err(|e| format!("cannot connect to the HTTP port {http}: {e}"))?;
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    let _ = stream.set_nodelay(true);
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request =
        format!("{line} HTTP/1.1\r\nHost: {http}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n");
    let reply = match tls {
        None => exchange(stream, &request),
        Some(tls) => {
            let host = http.rsplit_once(':').map_or(http, |(h, _)| h);
            let name = tls
                .server_name(host.trim_start_matches('[').trim_end_matches(']'))
                .map_err(|e| e.to_string())?;
            let conn = rustls::ClientConnection::new(tls.config.clone(), name)
                .map_err(|e| format!("TLS with {http}: {e}"))?;
            exchange(rustls::StreamOwned::new(conn, stream), &request)
        }
    }
    .map_err(|e| format!("talking to {http}: {e}"))?;
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{http} sent no HTTP reply"))?;
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200 ") {
        return Err(format!("{http} answered {status}: {body}"));
    }
    serde_json::from_str(body).map_err(|e| format!("{http} sent a body that is not JSON: {e}"))
}

/// Sends `request` and reads the reply until the server closes. A TLS
/// peer that closes without `close_notify` after a whole reply is fine.
fn exchange(mut stream: impl Read + Write, request: &str) -> std::io::Result<Vec<u8>> {
    stream.write_all(request.as_bytes())?;
    stream.flush()?;
    let mut reply = Vec::new();
    match stream.take(REPLY_BYTES_MAX).read_to_end(&mut reply) {
        Ok(_) => Ok(reply),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !reply.is_empty() => Ok(reply),
        Err(e) => Err(e),
    }
}

/// The status as text lines.
pub fn render(doc: &Value) -> String {
    if doc["enabled"] != Value::Bool(true) {
        return "not a cluster: a single node (no --node-id / [cluster] section)".to_string();
    }
    let mut out = format!(
        "cluster {} (node {}, links of shard {})\n{:<6} {:<22} {:<11} {:<6} last heard\n",
        doc["cluster_id"].as_str().unwrap_or("?"),
        doc["node_id"],
        doc["shard"],
        "node",
        "address",
        "link",
        "alive"
    );
    for n in doc["nodes"].as_array().into_iter().flatten() {
        let heard = match n["last_heard_ms_ago"].as_u64() {
            _ if n["local"] == Value::Bool(true) => "-".to_string(),
            Some(ms) => format!("{ms} ms ago"),
            None => "never".to_string(),
        };
        let alive = if n["alive"] == Value::Bool(true) {
            "yes"
        } else {
            "no"
        };
        out.push_str(&format!(
            "{:<6} {:<22} {:<11} {:<6} {}",
            n["node_id"],
            n["address"].as_str().unwrap_or(""),
            n["link"].as_str().unwrap_or(""),
            alive,
            heard
        ));
        if let Some(reason) = n["refused"].as_str() {
            out.push_str(&format!(" (refused: {reason})"));
        }
        out.push('\n');
    }
    out.trim_end().to_string()
}

/// The leadership moves as text lines.
pub fn render_moves(doc: &Value) -> String {
    let dry = doc["dry_run"] == Value::Bool(true);
    let moves = doc["moves"].as_array().cloned().unwrap_or_default();
    let mut out = if dry {
        format!("{} leaderships would move (dry run)", moves.len())
    } else {
        format!("{} of {} leaderships handed over", doc["started"], moves.len())
    };
    for m in &moves {
        let state = match (m["started"].as_bool(), m["waiting"].as_str()) {
            (Some(true), _) => "started".to_string(),
            (_, Some(why)) => format!("waiting: {why}"),
            _ => "would start".to_string(),
        };
        out.push_str(&format!(
            "\n  {}/{}: node {} -> node {} ({state})",
            m["topic"].as_str().unwrap_or("?"),
            m["partition"],
            m["from"],
            m["to"]
        ));
    }
    out
}
