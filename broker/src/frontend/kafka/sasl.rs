//! SASL on the Kafka listener: SaslHandshake (v0–1) names the mechanism,
//! SaslAuthenticate (v0–2) carries its exchange (KIP-152). Mechanisms:
//! PLAIN (one message: `authzid \0 user \0 password`) and SCRAM-SHA-256
//! (two messages, `shoal_protocol::scram`, the native handshake's code).
//! Both check the security service's credential store (salted and hashed,
//! never a password in clear) behind its per-address failure limiter, and
//! a failure is logged and audited by the service, never with the secret.
//!
//! These requests are served in the connection's reader, in frame order
//! and before the next frame is read, so a request sent after a successful
//! SaslAuthenticate already runs as the authenticated principal and one
//! sent before it is refused ([`admits_before_auth`]). A failed
//! SaslAuthenticate is answered SASL_AUTHENTICATION_FAILED and the
//! connection is closed, as Kafka's broker does.
//!
//! A v0 SaslHandshake is answered, but the raw (unframed) tokens that
//! follow it in pre-KIP-152 clients are not read: every client in use
//! (librdkafka, the Java client since 1.0, franz-go) sends SaslAuthenticate.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use shoal_protocol::scram::{nonce_text, ScramServer, MECHANISM as SCRAM_SHA_256};

use super::context::{KafkaConn, SaslState};
use crate::metadata::acl::Principal;
use crate::metadata::security::Caller;
use crate::runtime::now_ms;

/// The mechanisms SaslHandshake offers.
pub const MECHANISMS: [&str; 2] = ["PLAIN", SCRAM_SHA_256];

/// Whether a request with `api_key` may run before the connection is
/// authenticated (when authentication is on).
pub fn admits_before_auth(api_key: i16) -> bool {
    [
        ApiKey::ApiVersions,
        ApiKey::SaslHandshake,
        ApiKey::SaslAuthenticate,
    ]
    .iter()
    .any(|k| *k as i16 == api_key)
}

/// Answers a SaslHandshake: the mechanism is remembered when offered.
pub fn handshake(conn: &KafkaConn, req: SaslHandshakeRequest) -> SaslHandshakeResponse {
    let offered = MECHANISMS.iter().map(|m| StrBytes::from_static_str(m)).collect();
    let response = SaslHandshakeResponse::default().with_mechanisms(offered);
    let mut state = conn.sasl.borrow_mut();
    if !matches!(*state, SaslState::Start) {
        return response.with_error_code(ResponseError::IllegalSaslState.code());
    }
    *state = match req.mechanism.as_str() {
        "PLAIN" => SaslState::Plain,
        m if m == SCRAM_SHA_256 => SaslState::Scram(None),
        _ => return response.with_error_code(ResponseError::UnsupportedSaslMechanism.code()),
    };
    response
}

/// Answers a SaslAuthenticate; the bool is true when the connection must
/// close after the answer (the exchange failed).
pub fn authenticate(conn: &Rc<KafkaConn>, req: SaslAuthenticateRequest) -> (SaslAuthenticateResponse, bool) {
    let service = conn.shard.security().service().clone();
    let source = conn.caller().source;
    let now = now_ms();
    let failed = |message: String| {
        let response = SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::SaslAuthenticationFailed.code())
            .with_error_message(Some(StrBytes::from_string(message)));
        (response, true)
    };
    let state = std::mem::replace(&mut *conn.sasl.borrow_mut(), SaslState::Done);
    if matches!(state, SaslState::Start | SaslState::Done) {
        let response = SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::IllegalSaslState.code())
            .with_error_message(Some(StrBytes::from_static_str("SaslHandshake first")));
        return (response, true);
    }
    if !service.may_attempt(source, now) {
        return failed(format!("too many failed attempts from {source}: retry later"));
    }
    match state {
        SaslState::Plain => {
            let Some((user, password)) = plain_fields(&req.auth_bytes) else {
                service.auth_failed(source, "", "SASL/PLAIN: malformed message", now);
                return failed("malformed SASL/PLAIN message".into());
            };
            if !service.verify_password(&user, &password) {
                service.auth_failed(source, &user, "SASL/PLAIN", now);
                return failed("invalid user name or password".into());
            }
            authenticated(conn, user, "SASL/PLAIN");
            (SaslAuthenticateResponse::default(), false)
        }
        SaslState::Scram(None) => {
            let mut random = [0u8; 18];
            if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random).is_err() {
                return failed("no system randomness for the nonce".into());
            }
            let mut server = ScramServer::new(&nonce_text(&random), service.scram_secret());
            match server.client_first(&req.auth_bytes, |user| service.credential(user)) {
                Ok(reply) => {
                    *conn.sasl.borrow_mut() = SaslState::Scram(Some(Box::new(server)));
                    (
                        SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(reply)),
                        false,
                    )
                }
                Err(e) => {
                    service.auth_failed(source, "", &format!("SASL/SCRAM-SHA-256: {e}"), now);
                    failed(e.to_string())
                }
            }
        }
        SaslState::Scram(Some(mut server)) => {
            let claimed = server.user().unwrap_or_default().to_string();
            match server.client_final(&req.auth_bytes) {
                Ok((reply, user)) => {
                    authenticated(conn, user, "SASL/SCRAM-SHA-256");
                    (
                        SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(reply)),
                        false,
                    )
                }
                Err(e) => {
                    service.auth_failed(source, &claimed, &format!("SASL/SCRAM-SHA-256: {e}"), now);
                    failed("invalid user name or password".into())
                }
            }
        }
        SaslState::Start | SaslState::Done => unreachable!("handled above"),
    }
}

/// The connection acts as `User:<user>` from its next request on.
fn authenticated(conn: &KafkaConn, user: String, how: &'static str) {
    let source = conn.caller().source;
    tracing::info!(%source, user, how, "kafka connection authenticated");
    conn.caller
        .replace(Rc::new(Caller::new(Principal::User(user), source)));
    conn.authenticated.set(true);
}

/// `authzid \0 authcid \0 passwd` (RFC 4616). An authorization identity
/// other than the user itself is refused (no impersonation).
fn plain_fields(message: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(message).ok()?;
    let mut parts = text.split('\0');
    let (authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() || (!authzid.is_empty() && authzid != user) {
        return None;
    }
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PLAIN's three fields; a foreign authzid, a missing field or an
    /// extra one is malformed.
    #[test]
    fn plain_message() {
        assert_eq!(
            plain_fields(b"\0alice\0secret"),
            Some(("alice".into(), "secret".into()))
        );
        assert_eq!(
            plain_fields(b"alice\0alice\0pw"),
            Some(("alice".into(), "pw".into()))
        );
        assert_eq!(plain_fields(b"bob\0alice\0pw"), None);
        assert_eq!(plain_fields(b"\0alice"), None);
        assert_eq!(plain_fields(b"\0\0pw"), None);
        assert_eq!(plain_fields(b"\0a\0b\0c"), None);
        assert_eq!(plain_fields(&[0, 0xff, 0, b'p']), None);
    }

    /// Only the SASL requests and ApiVersions run before authentication.
    #[test]
    fn before_auth() {
        assert!(admits_before_auth(ApiKey::ApiVersions as i16));
        assert!(admits_before_auth(ApiKey::SaslHandshake as i16));
        assert!(admits_before_auth(ApiKey::SaslAuthenticate as i16));
        assert!(!admits_before_auth(ApiKey::Metadata as i16));
        assert!(!admits_before_auth(ApiKey::Produce as i16));
    }
}
