//! Method + path dispatch, query strings and body reading.
//!
//! Paths are matched segment by segment; a path segment or query value is
//! percent-decoded once. Every reply, success or error, is counted in the
//! shard's HTTP counters by status and error code.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::sync::StaticPermit;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request};
use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::security::Operation;

use super::common::{ConnState, HttpRequest};
use super::json::{ErrorTag, HttpError, HttpResponse};
use super::limits::{BODY_READ_MS_MAX, HTTP_BODY_BYTES_MAX};
use super::{cluster, console, groups, health, messages, metrics, offsets, poll, quarantine, stats, topics};
use crate::metadata::acl::Resource;
use crate::metrics::counters::http as http_metrics;
use crate::shard::Shard;

/// Bodies up to this size are read without a receive-pool reservation
/// (as native frames up to one read chunk are).
const BODY_UNRESERVED_BYTES_MAX: u64 = 64 << 10;

/// Serves one request and counts the outcome.
///
/// While it is served, the request holds its body size (at least one unit)
/// of the shard's in-flight byte budget, the one native requests draw from:
/// a shard full of work stops taking HTTP bodies too, and the shutdown drain
/// waits for HTTP requests as it does for native ones. A draining shard
/// answers 503 `shutting_down` to everything but the health probes.
pub async fn route(shard: &Rc<Shard>, conn: &ConnState, req: Request<Incoming>) -> HttpResponse {
    http_metrics::count_request();
    let resp = match read(shard, conn, req).await {
        Ok((req, _reserved)) => serve(shard, conn, req).await,
        Err(e) => e.into_response(),
    };
    count_response(&resp);
    resp
}

/// Counts a reply by status and, for errors, by its JSON `code` (kept on
/// the response as an [`ErrorTag`], so the body is never parsed).
fn count_response(resp: &HttpResponse) {
    let status = resp.status();
    let code = if status.is_success() {
        ""
    } else {
        resp.extensions().get::<ErrorTag>().map_or("unknown", |t| t.0)
    };
    http_metrics::count_response(status.as_u16(), code);
}

async fn serve(shard: &Rc<Shard>, conn: &ConnState, req: HttpRequest) -> HttpResponse {
    let probe = matches!(
        req.segments.first().map(String::as_str),
        Some("healthz" | "readyz")
    );
    if shard.is_shutting_down() && !probe {
        return HttpError::from_code(ErrorCode::ShuttingDown, "the broker is shutting down").into_response();
    }
    let budget = shard.config().limits.shard_inflight_bytes_max.max(1) as u64;
    let units = (req.body.len() as u64).clamp(1, budget);
    let Ok(_permit) = shard.inflight().acquire_permit(units).await else {
        return HttpError::from_code(ErrorCode::ShuttingDown, "the shard's request budget is closed")
            .into_response();
    };
    dispatch(shard, conn, req)
        .await
        .unwrap_or_else(HttpError::into_response)
}

/// Reads a request: head, then body. A body that may be over
/// [`BODY_UNRESERVED_BYTES_MAX`] (declared so, or chunked) first reserves
/// its length (the cap when unknown) in the shard's receive pool, held
/// until the request is answered, so bodies still arriving are bounded the
/// same way as native frames. A request with neither a content-length nor
/// chunked encoding has no body (RFC 9112 §6.3) and reserves nothing:
/// were it to reserve the cap, every bodiless GET (a long poll above all)
/// would hold 8 MiB of the pool, and a pool smaller than that would never
/// answer one. For the same reason a body may not be larger than the pool.
async fn read(
    shard: &Shard,
    conn: &ConnState,
    req: Request<Incoming>,
) -> Result<(HttpRequest, Option<StaticPermit>), HttpError> {
    use hyper::body::Body as _;
    let (parts, body) = req.into_parts();
    let body_max = HTTP_BODY_BYTES_MAX.min(shard.config().limits.receive_pool_bytes_max);
    let caller = super::auth::caller_of(shard, &conn.caller, &parts)?;
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > body_max as u64) {
        return Err(HttpError::body_too_large(body_max));
    }
    // hyper knows the body's framing: exactly its content-length, exactly 0
    // without one, unknown when chunked (then the cap is reserved).
    let expected = body
        .size_hint()
        .upper()
        .unwrap_or(body_max as u64)
        .min(body_max as u64);
    let reserved = if expected > BODY_UNRESERVED_BYTES_MAX {
        let permit = shard
            .receive_pool()
            .acquire_static_permit(expected)
            .await
            .map_err(|_| {
                HttpError::from_code(ErrorCode::ShuttingDown, "the shard's receive pool is closed")
            })?;
        Some(permit)
    } else {
        None
    };
    let body = read_body(body, body_max).await?;
    let path = parts.uri.path().to_string();
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect::<Result<_, _>>()?;
    let query = parse_query(parts.uri.query().unwrap_or(""))?;
    let req = HttpRequest {
        method: parts.method,
        path,
        segments,
        query,
        body,
        caller,
    };
    Ok((req, reserved))
}

async fn read_body(body: Incoming, body_max: usize) -> Result<Bytes, HttpError> {
    let collect = async {
        match Limited::new(body, body_max).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(HttpError::body_too_large(body_max)),
            Err(e) => Err(HttpError::invalid(format!(
                "reading the request body failed: {e}"
            ))),
        }
    };
    let deadline = async {
        crate::runtime::sleep(Duration::from_millis(BODY_READ_MS_MAX)).await;
        Err(HttpError::request_timeout(format!(
            "the request body did not arrive within {BODY_READ_MS_MAX} ms"
        )))
    };
    futures_lite::future::or(collect, deadline).await
}

async fn dispatch(shard: &Rc<Shard>, conn: &ConnState, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    let segs: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let m = &req.method;
    match (segs.as_slice(), m) {
        ([], &Method::GET) => Ok(console::index()),
        (["console", file], &Method::GET) => console::asset(file),
        (["stats"], &Method::GET) => stats::broker(shard, &req).await,
        (["healthz"], &Method::GET) => Ok(health::healthz(shard)),
        (["cluster"], &Method::GET) => Ok(cluster::status(shard)),
        (["cluster", "rebalance-leaders"], &Method::POST) => cluster::rebalance_leaders(shard, &req).await,
        (["readyz"], &Method::GET) => Ok(health::readyz(shard).await),
        (["metrics"], &Method::GET) => {
            // Every topic's and group's figures: cluster `admin` when
            // authentication is on (a scraper gets a token of its own).
            shard
                .access(&req.caller)
                .require(Resource::Cluster, Operation::Admin)?;
            Ok(metrics::handle(shard).await)
        }
        (["topics"], &Method::GET) => Ok(topics::list(shard, &req)),
        (["topics"], &Method::POST) => topics::create(shard, &req).await,
        (["topics", name], &Method::GET) => topics::describe(shard, name, &req).await,
        (["topics", name], &Method::DELETE) => topics::delete(shard, name, &req).await,
        (["topics", name, "stats"], &Method::GET) => stats::topic(shard, name, &req).await,
        (["topics", name, "messages"], &Method::POST) => messages::publish(shard, conn, name, &req).await,
        (["topics", name, "poll"], &Method::GET) => poll::poll(shard, name, &req).await,
        (["topics", name, "replay"], &Method::POST) => poll::replay(shard, name, &req).await,
        (["topics", name, "ack"], &Method::POST) => offsets::ack(shard, name, &req).await,
        (["topics", name, "nack"], &Method::POST) => offsets::nack(shard, name, &req).await,
        (["offsets", "commit"], &Method::POST) => offsets::commit(shard, &req).await,
        (["topics", name, "quarantine"], &Method::GET) => quarantine::browse(shard, name, &req).await,
        (["topics", name, "quarantine", "counts"], &Method::GET) => {
            quarantine::counts(shard, name, &req).await
        }
        (["topics", name, "quarantine", "redrive"], &Method::POST) => {
            quarantine::redrive(shard, name, &req).await
        }
        (["topics", name, "quarantine", "purge"], &Method::POST) => {
            quarantine::purge(shard, name, &req).await
        }
        (["groups"], &Method::GET) => groups::list(shard, &req).await,
        (["groups", group], &Method::GET) => groups::describe(shard, group, &req).await,
        (["groups", group, "join"], &Method::POST) => groups::join(shard, group, &req).await,
        (["groups", group, "heartbeat"], &Method::POST) => groups::heartbeat(shard, group, &req).await,
        (["groups", group, "leave"], &Method::POST) => groups::leave(shard, group, &req).await,
        _ => Err(unmatched(&req, &segs)),
    }
}

/// 405 when the path is known with another method, else 404.
fn unmatched(req: &HttpRequest, segs: &[&str]) -> HttpError {
    let known = matches!(
        segs,
        [] | ["console", _]
            | ["stats"]
            | ["healthz"]
            | ["readyz"]
            | ["metrics"]
            | ["topics"]
            | ["topics", _]
            | ["groups"]
            | ["groups", _]
    ) || matches!(
        segs,
        [
            "topics",
            _,
            "messages" | "poll" | "replay" | "ack" | "nack" | "quarantine" | "stats"
        ] | ["topics", _, "quarantine", "counts" | "redrive" | "purge"]
            | ["groups", _, "join" | "heartbeat" | "leave"]
            | ["offsets", "commit"]
    );
    if known {
        HttpError::method_not_allowed(&req.method, &req.path)
    } else {
        HttpError::unknown_route(&req.method, &req.path)
    }
}

/// Splits `a=1&b=x%20y` into decoded pairs; a repeated key keeps its last value.
pub fn parse_query(query: &str) -> Result<HashMap<String, String>, HttpError> {
    let mut out = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(k)?, percent_decode(v)?);
    }
    Ok(out)
}

/// Decodes `%XX` escapes (and `+` as a space, as forms send it).
pub fn percent_decode(s: &str) -> Result<String, HttpError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| HttpError::invalid(format!("bad percent escape in {s:?}")))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| HttpError::invalid(format!("{s:?} does not decode to UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Query strings decode escapes and `+`, and reject broken escapes.
    #[test]
    fn query_decoding() {
        let q = parse_query("group=g%201&member=a+b&flag&max=10").unwrap();
        assert_eq!(q["group"], "g 1");
        assert_eq!(q["member"], "a b");
        assert_eq!(q["flag"], "");
        assert_eq!(q["max"], "10");
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%4").is_err());
        assert!(percent_decode("%ff").is_err(), "a lone 0xff byte is not UTF-8");
    }
}
