//! Who an HTTP request acts as: `Authorization: Bearer <token>` (a token
//! made by `shoal token create`, checked by its SHA-256), else the
//! connection's client certificate (mTLS), else anonymous.
//!
//! When authentication is on, an anonymous request is refused with 401
//! `authentication_failed` before its body is read, except the health
//! probes and the console's static files. A wrong token counts as a failed attempt of the source address
//! (rate-limited and audited like a wrong SCRAM password).

use std::rc::Rc;

use hyper::header::AUTHORIZATION;
use hyper::http::request::Parts;
use shoal_protocol::error::ErrorCode;

use super::json::HttpError;
use crate::metadata::acl::Principal;
use crate::metadata::security::Caller;
use crate::runtime::now_ms;
use crate::shard::Shard;

/// Paths served without authentication: liveness and readiness probes,
/// and the console's static files (they hold no data; every call the
/// console's page makes is authenticated like any other).
fn is_public(path: &str) -> bool {
    matches!(path.trim_end_matches('/'), "" | "/healthz" | "/readyz") || path.starts_with("/console/")
}

fn refused(message: &str) -> HttpError {
    HttpError::from_code(ErrorCode::AuthenticationFailed, message)
}

/// The caller of one request on a connection whose own caller is `conn`.
pub fn caller_of(shard: &Shard, conn: &Rc<Caller>, parts: &Parts) -> Result<Rc<Caller>, HttpError> {
    let service = shard.security().service();
    let header = parts.headers.get(AUTHORIZATION);
    let Some(value) = header else {
        if service.authentication() && conn.principal == Principal::Anonymous && !is_public(parts.uri.path())
        {
            return Err(refused(
                "this broker requires authentication: send Authorization: Bearer <token> (shoal token create)",
            ));
        }
        return Ok(conn.clone());
    };
    let source = conn.source;
    let now = now_ms();
    if !service.may_attempt(source, now) {
        return Err(refused("too many failed attempts from this address: retry later"));
    }
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    match service.token_user(token) {
        Some(user) => Ok(Rc::new(Caller::new(Principal::User(user), source))),
        None => {
            service.auth_failed(source, "", "invalid bearer token", now);
            Err(refused("invalid bearer token"))
        }
    }
}
