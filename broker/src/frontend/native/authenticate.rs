//! SCRAM-SHA-256 on a native connection: two `Authenticate` steps after
//! the handshake. The SCRAM logic is `shoal_protocol::scram` (sans-IO);
//! the credential lookup, the failed-attempt limiter and the audit log are
//! the security service's. A connection that completes the exchange acts as
//! `User:<name>` from its next request on.

use std::rc::Rc;

use shoal_protocol::error::ErrorCode;
use shoal_protocol::frame::Frame;
use shoal_protocol::messages::security::{AuthenticateRequest, AuthenticateResponse};
use shoal_protocol::scram::{nonce_text, ScramServer, MECHANISM};

use super::codec::{decode, respond, Failure};
use super::context::{ConnectionCtx, Reply};
use crate::metadata::acl::Principal;
use crate::metadata::security::Caller;
use crate::runtime::now_ms;

pub async fn authenticate(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let req: AuthenticateRequest = decode(frame)?;
    let resp = step(ctx, req);
    if resp.error != 0 {
        ctx.shard.metrics().count_error(ErrorCode::from_wire(resp.error));
    }
    respond(frame.header().correlation_id, &resp, Vec::new())
}

fn failed(message: impl Into<String>) -> AuthenticateResponse {
    AuthenticateResponse {
        error: ErrorCode::AuthenticationFailed.to_wire(),
        message: message.into(),
        payload: Vec::new(),
        done: false,
        principal: String::new(),
    }
}

fn next(payload: Vec<u8>, principal: Option<String>) -> AuthenticateResponse {
    AuthenticateResponse {
        error: 0,
        message: String::new(),
        payload,
        done: principal.is_some(),
        principal: principal.unwrap_or_default(),
    }
}

/// One step: message 1 starts an exchange, message 3 finishes it.
fn step(ctx: &ConnectionCtx, req: AuthenticateRequest) -> AuthenticateResponse {
    let service = ctx.shard.security().service().clone();
    let source = ctx.caller().source;
    let now = now_ms();
    if req.mechanism != MECHANISM {
        return failed(format!(
            "mechanism {:?} is not supported (use {MECHANISM})",
            req.mechanism
        ));
    }
    if !service.may_attempt(source, now) {
        ctx.scram.replace(None);
        return failed(format!("too many failed attempts from {source}: retry later"));
    }
    let in_progress = ctx.scram.borrow_mut().take();
    match in_progress {
        None => {
            let mut random = [0u8; 18];
            if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random).is_err() {
                return failed("no system randomness for the nonce");
            }
            let mut server = ScramServer::new(&nonce_text(&random), service.scram_secret());
            match server.client_first(&req.payload, |user| service.credential(user)) {
                Ok(reply) => {
                    ctx.scram.replace(Some(server));
                    next(reply, None)
                }
                Err(e) => {
                    service.auth_failed(source, "", &e.to_string(), now);
                    failed(e.to_string())
                }
            }
        }
        Some(mut server) => {
            let claimed = server.user().unwrap_or_default().to_string();
            match server.client_final(&req.payload) {
                Ok((reply, user)) => {
                    tracing::info!(%source, user, "authenticated (SCRAM-SHA-256)");
                    let principal = Principal::User(user);
                    let name = principal.name();
                    ctx.caller.replace(Rc::new(Caller::new(principal, source)));
                    next(reply, Some(name))
                }
                Err(e) => {
                    service.auth_failed(source, &claimed, &e.to_string(), now);
                    failed("invalid user name or password")
                }
            }
        }
    }
}
