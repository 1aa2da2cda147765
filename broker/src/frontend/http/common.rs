//! What the HTTP resources share: the parsed request, per-connection
//! state, byte encodings in JSON, topic lookup, names of enums in JSON, and
//! the reply shape for per-partition failures.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use base64::Engine as _;
use bytes::Bytes;
use hyper::Method;
use serde::Serialize;
use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::group::GroupState;
use shoal_protocol::messages::produce::Durability;
use shoal_protocol::messages::stats::CircuitState;

use super::json::{json_response, ok, ErrorTag, HttpError, HttpResponse};
use crate::frontend::quota::ByteRate;
use crate::metadata::security::Caller;
use crate::metadata::TopicMeta;
use crate::shard::Shard;

/// A request's method, decoded path segments, query and body.
pub struct HttpRequest {
    pub method: Method,
    pub path: String,
    pub segments: Vec<String>,
    pub query: HashMap<String, String>,
    pub body: Bytes,
    /// Who the request acts as (see `auth.rs`); every service call goes
    /// through `shard.access(&req.caller)`.
    pub caller: Rc<Caller>,
}

impl HttpRequest {
    /// A query parameter parsed as `T`, or `None` when absent.
    pub fn param<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, HttpError> {
        match self.query.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| HttpError::invalid(format!("query parameter {name}={v:?} is not valid"))),
        }
    }
}

/// Per-connection state the endpoints share.
pub struct ConnState {
    /// The connection's publish byte rate (`limits.produce_bytes_per_sec_max`).
    pub publish_quota: RefCell<ByteRate>,
    /// Until this wall-clock time (ms) the connection is throttled: publishes
    /// are refused with 429 and `Retry-After`.
    pub throttled_until_ms: Cell<i64>,
    /// The connection's caller: its address and, under mTLS, the client
    /// certificate's user; a bearer token overrides it per request.
    pub caller: Rc<Caller>,
}

impl ConnState {
    pub fn new(shard: &Shard, caller: Caller) -> ConnState {
        let rate = shard.config().limits.produce_bytes_per_sec_max;
        ConnState {
            publish_quota: RefCell::new(ByteRate::new(rate, crate::runtime::now_ms())),
            throttled_until_ms: Cell::new(0),
            caller: Rc::new(caller),
        }
    }
}

/// How bytes travel in JSON strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Base64,
}

impl Encoding {
    pub fn parse(name: Option<&str>) -> Result<Encoding, HttpError> {
        match name {
            None | Some("utf8") | Some("utf-8") => Ok(Encoding::Utf8),
            Some("base64") => Ok(Encoding::Base64),
            Some(other) => Err(HttpError::invalid(format!(
                "encoding {other:?} is not one of utf8 | base64"
            ))),
        }
    }

    pub fn decode(self, field: &str, s: &str) -> Result<Vec<u8>, HttpError> {
        match self {
            Encoding::Utf8 => Ok(s.as_bytes().to_vec()),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| HttpError::invalid(format!("{field} is not valid base64: {e}"))),
        }
    }

    /// Bytes as a JSON string: UTF-8 text as is (lossy for invalid bytes
    /// under `Utf8`), or base64.
    pub fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }
}

/// The topic's metadata, or 404.
pub fn topic_meta(shard: &Shard, name: &str) -> Result<Rc<TopicMeta>, HttpError> {
    shard.topic(name).ok_or_else(|| {
        HttpError::from_code(ErrorCode::UnknownTopic, format!("topic {name:?} does not exist"))
    })
}

/// The name a durability has in JSON.
pub fn durability_name(d: Durability) -> &'static str {
    match d {
        Durability::Accepted => "accepted",
        Durability::Memory => "memory",
        Durability::Written => "written",
        Durability::Fsynced => "fsynced",
        Durability::Replicated => "replicated",
    }
}

pub fn state_name(s: GroupState) -> &'static str {
    match s {
        GroupState::Empty => "empty",
        GroupState::Rebalancing => "rebalancing",
        GroupState::Stable => "stable",
    }
}

pub fn circuit_name(c: CircuitState) -> &'static str {
    match c {
        CircuitState::Closed => "closed",
        CircuitState::Open => "open",
        CircuitState::HalfOpen => "half_open",
    }
}

/// The stable name of a wire error code.
pub fn code_name(code: u16) -> &'static str {
    ErrorCode::from_wire(code).name()
}

/// The first failed item's code among per-partition wire codes.
pub fn first_error(codes: impl IntoIterator<Item = u16>) -> Option<ErrorCode> {
    codes.into_iter().map(ErrorCode::from_wire).find(|c| !c.is_ok())
}

/// Replies 200 with `body`, or, when a partition failed, with that error's
/// status and the error fields (`code`, `error_code`, `message`) added to
/// `body` so the per-partition outcome is still there.
pub fn with_partition_errors<T: Serialize>(first_error: Option<ErrorCode>, body: &T) -> HttpResponse {
    let Some(code) = first_error else {
        return ok(body);
    };
    let e = HttpError::from_code(code, code.message());
    let mut value = serde_json::to_value(body).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("code".into(), e.code.into());
        map.insert("error_code".into(), e.error_code.into());
        map.insert("message".into(), e.message.clone().into());
    }
    let mut resp = json_response(e.status, &value);
    resp.extensions_mut().insert(ErrorTag(e.code));
    resp
}
