//! The client's side of SCRAM-SHA-256 over [`AuthenticateRequest`]s, run
//! once per connection right after the handshake.

use crate::error::{check, ProtocolError};
use crate::messages::security::AuthenticateRequest;
use crate::scram::{nonce_text, ScramClient, MECHANISM};
use crate::tls::Credentials;

use super::connection::Connection;

/// Authenticates `conn` as `credentials.user`; the broker's signature is
/// checked too, so a broker without the user's credential is refused.
pub(super) fn scram(conn: &Connection, credentials: &Credentials) -> Result<(), ProtocolError> {
    let mut random = [0u8; 18];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
        .map_err(|_| ProtocolError::Authentication("no system randomness for the nonce".into()))?;
    let (mut client, first) =
        ScramClient::start(&credentials.user, &credentials.password, &nonce_text(&random));
    let step = |payload: Vec<u8>| {
        let request = AuthenticateRequest {
            mechanism: MECHANISM.to_string(),
            payload,
        };
        let reply = conn.call(&request, &[], 0)?.message;
        check(reply.error, &reply.message)?;
        Ok::<_, ProtocolError>(reply)
    };
    let server_first = step(first)?;
    let last = client
        .server_first(&server_first.payload)
        .map_err(|e| ProtocolError::Authentication(e.to_string()))?;
    let server_final = step(last)?;
    client
        .server_final(&server_final.payload)
        .map_err(|e| ProtocolError::Authentication(e.to_string()))?;
    if !server_final.done {
        return Err(ProtocolError::Authentication(
            "the broker did not finish the exchange".into(),
        ));
    }
    Ok(())
}
