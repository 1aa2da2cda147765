//! SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash), sans-IO.
//!
//! Both ends of the exchange live here so the broker and the client agree
//! byte for byte; neither touches a socket or a clock, and randomness (the
//! nonces, the salt) comes in as an argument. The messages, in order:
//!
//! | step | sender | text                                          |
//! |------|--------|-----------------------------------------------|
//! | 1    | client | `n,,n=<user>,r=<client nonce>`                |
//! | 2    | server | `r=<client nonce><server nonce>,s=<salt b64>,i=<iterations>` |
//! | 3    | client | `c=biws,r=<nonce>,p=<client proof b64>`       |
//! | 4    | server | `v=<server signature b64>` or `e=<reason>`    |
//!
//! What the server stores per user is a [`ScramCredential`]: salt,
//! iteration count, `StoredKey = H(ClientKey)` and `ServerKey`. Neither lets
//! anyone log in (a client must prove it knows `ClientKey`, which the
//! server never stores), and the CLI derives the credential on the client
//! side, so the password itself never reaches the broker.
//!
//! Hostile input: every parser here takes untrusted text of bounded length
//! ([`SCRAM_MESSAGE_BYTES_MAX`]), never panics and answers a malformed or
//! truncated message with [`ScramError::Malformed`]. A server that does not
//! know the user still answers step 2 (with a salt derived from a server
//! secret and the name, so it is stable) and fails at step 3, so the
//! exchange does not reveal which names exist. The proof is compared in
//! constant time.

use base64::Engine as _;
use ring::{digest, hmac, pbkdf2};

/// The mechanism name, as SASL spells it.
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// RFC 7677's minimum iteration count; the broker refuses weaker credentials.
pub const ITERATIONS_MIN: u32 = 4096;
/// Iterations the CLI uses for new credentials.
pub const ITERATIONS_DEFAULT: u32 = 8192;
/// More iterations than this are refused (a hostile credential would make
/// every login of that user burn the client's CPU for minutes).
pub const ITERATIONS_MAX: u32 = 1_000_000;
/// Bytes of salt generated for a credential.
pub const SALT_BYTES: usize = 16;
/// Longest SCRAM message either side accepts.
pub const SCRAM_MESSAGE_BYTES_MAX: usize = 1024;
/// Longest user name.
pub const USER_NAME_BYTES_MAX: usize = 128;

const KEY_BYTES: usize = 32;
/// The GS2 header this implementation speaks: no channel binding, no authzid.
const GS2_HEADER: &str = "n,,";
/// `c=` of step 3 is the GS2 header in base64.
const CHANNEL_BINDING_B64: &str = "biws";

/// Why an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message did not parse (truncated, wrong order, bad base64, too long).
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// Unknown user or wrong password: the proof did not verify. The same
    /// error for both, on purpose.
    #[error("invalid user name or password")]
    InvalidProof,
    /// The server's nonce does not extend the client's (a replay or a
    /// man in the middle).
    #[error("the server's nonce does not extend the client's")]
    NonceMismatch,
    /// The server's signature did not verify: it does not hold this
    /// user's credential.
    #[error("the server could not prove it knows the credential")]
    ServerSignature,
    /// The server ended the exchange with `e=<reason>`.
    #[error("the server refused: {0}")]
    Refused(String),
    /// A credential's parameters are outside the accepted bounds.
    #[error("weak or invalid credential: {0}")]
    WeakCredential(&'static str),
    /// The exchange was driven out of order.
    #[error("SCRAM step out of order")]
    OutOfOrder,
}

/// What the server stores for a user: never the password.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

impl ScramCredential {
    /// Derives the credential for `password` with `salt` (PBKDF2-HMAC-SHA-256).
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Result<ScramCredential, ScramError> {
        let salted = salted_password(password, salt, iterations)?;
        let client_key = hmac_sha256(&salted, b"Client Key");
        Ok(ScramCredential {
            salt: salt.to_vec(),
            iterations,
            stored_key: sha256(&client_key).to_vec(),
            server_key: hmac_sha256(&salted, b"Server Key").to_vec(),
        })
    }

    /// Checks the bounds a broker enforces before storing a credential.
    pub fn validate(&self) -> Result<(), ScramError> {
        if self.iterations < ITERATIONS_MIN || self.iterations > ITERATIONS_MAX {
            return Err(ScramError::WeakCredential("iterations must be in 4096..=1000000"));
        }
        if self.salt.len() < SALT_BYTES || self.salt.len() > 64 {
            return Err(ScramError::WeakCredential("salt must be 16 to 64 bytes"));
        }
        if self.stored_key.len() != KEY_BYTES || self.server_key.len() != KEY_BYTES {
            return Err(ScramError::WeakCredential("keys must be 32 bytes"));
        }
        Ok(())
    }
}

fn salted_password(password: &str, salt: &[u8], iterations: u32) -> Result<[u8; KEY_BYTES], ScramError> {
    let rounds = std::num::NonZeroU32::new(iterations)
        .filter(|n| (ITERATIONS_MIN..=ITERATIONS_MAX).contains(&n.get()))
        .ok_or(ScramError::WeakCredential("iterations must be in 4096..=1000000"))?;
    let mut out = [0u8; KEY_BYTES];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        password.as_bytes(),
        &mut out,
    );
    Ok(out)
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; KEY_BYTES] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&key, data);
    let mut out = [0u8; KEY_BYTES];
    out.copy_from_slice(tag.as_ref());
    out
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; KEY_BYTES] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; KEY_BYTES];
    out.copy_from_slice(d.as_ref());
    out
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Result<Vec<u8>, ScramError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| ScramError::Malformed("bad base64"))
}

/// A nonce as printable text (base64 of random bytes, which never
/// contains `,`).
pub fn nonce_text(random: &[u8]) -> String {
    b64(random)
}

/// `saslname` escaping: `=` as `=3D`, `,` as `=2C`.
fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn unescape_name(text: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=3D") => out.push('='),
            Some("=2C") => out.push(','),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits `a=x,b=y` into attribute values, checking each name in order.
/// Extra trailing attributes are refused (this implementation speaks no
/// extensions).
fn attributes<const N: usize>(text: &str, names: [char; N]) -> Result<[&str; N], ScramError> {
    if text.len() > SCRAM_MESSAGE_BYTES_MAX {
        return Err(ScramError::Malformed("message too long"));
    }
    let mut parts = text.split(',');
    let mut out = [""; N];
    for (slot, name) in out.iter_mut().zip(names) {
        let part = parts.next().ok_or(ScramError::Malformed("missing attribute"))?;
        let value = part
            .strip_prefix(name)
            .and_then(|p| p.strip_prefix('='))
            .ok_or(ScramError::Malformed("unexpected attribute"))?;
        *slot = value;
    }
    if parts.next().is_some() {
        return Err(ScramError::Malformed("unexpected extra attribute"));
    }
    Ok(out)
}

fn utf8(bytes: &[u8]) -> Result<&str, ScramError> {
    if bytes.len() > SCRAM_MESSAGE_BYTES_MAX {
        return Err(ScramError::Malformed("message too long"));
    }
    std::str::from_utf8(bytes).map_err(|_| ScramError::Malformed("not UTF-8"))
}

/// Equality whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn xor(a: &[u8; KEY_BYTES], b: &[u8; KEY_BYTES]) -> [u8; KEY_BYTES] {
    let mut out = [0u8; KEY_BYTES];
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = x ^ y;
    }
    out
}

/// Where a client is in the exchange.
#[derive(Debug)]
enum ClientState {
    SentFirst,
    SentFinal { server_signature: [u8; KEY_BYTES] },
    Done,
}

/// The client side of one exchange.
#[derive(Debug)]
pub struct ScramClient {
    password: String,
    client_first_bare: String,
    client_nonce: String,
    state: ClientState,
}

impl ScramClient {
    /// Starts an exchange; returns the client and message 1.
    pub fn start(user: &str, password: &str, client_nonce: &str) -> (ScramClient, Vec<u8>) {
        let client_first_bare = format!("n={},r={client_nonce}", escape_name(user));
        let first = format!("{GS2_HEADER}{client_first_bare}");
        let client = ScramClient {
            password: password.to_string(),
            client_first_bare,
            client_nonce: client_nonce.to_string(),
            state: ClientState::SentFirst,
        };
        (client, first.into_bytes())
    }

    /// Takes message 2, returns message 3.
    pub fn server_first(&mut self, message: &[u8]) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, ClientState::SentFirst) {
            return Err(ScramError::OutOfOrder);
        }
        let server_first = utf8(message)?;
        if let Some(reason) = server_first.strip_prefix("e=") {
            return Err(ScramError::Refused(reason.to_string()));
        }
        let [nonce, salt, iterations] = attributes(server_first, ['r', 's', 'i'])?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = unb64(salt)?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| ScramError::Malformed("iteration count"))?;
        let salted = salted_password(&self.password, &salt, iterations)?;
        let client_key = hmac_sha256(&salted, b"Client Key");
        let stored_key = sha256(&client_key);
        let without_proof = format!("c={CHANNEL_BINDING_B64},r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = hmac_sha256(&stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &client_signature);
        let server_key = hmac_sha256(&salted, b"Server Key");
        self.state = ClientState::SentFinal {
            server_signature: hmac_sha256(&server_key, auth_message.as_bytes()),
        };
        Ok(format!("{without_proof},p={}", b64(&proof)).into_bytes())
    }

    /// Takes message 4: Ok once the server proved it holds the credential.
    pub fn server_final(&mut self, message: &[u8]) -> Result<(), ScramError> {
        let ClientState::SentFinal { server_signature } = &self.state else {
            return Err(ScramError::OutOfOrder);
        };
        let text = utf8(message)?;
        if let Some(reason) = text.strip_prefix("e=") {
            return Err(ScramError::Refused(reason.to_string()));
        }
        let [verifier] = attributes(text, ['v'])?;
        let got = unb64(verifier)?;
        if !constant_time_eq(&got, server_signature) {
            return Err(ScramError::ServerSignature);
        }
        self.state = ClientState::Done;
        Ok(())
    }
}

/// Where a server is in the exchange.
#[derive(Debug)]
enum ServerState {
    Start,
    SentFirst {
        user: String,
        /// `None` for an unknown user: the exchange goes on, then fails.
        credential: Option<ScramCredential>,
        nonce: String,
        auth_prefix: String,
    },
    Done,
}

/// The server side of one exchange.
#[derive(Debug)]
pub struct ScramServer {
    server_nonce: String,
    /// Keys the salt shown for unknown users.
    fake_salt_key: [u8; KEY_BYTES],
    state: ServerState,
}

impl ScramServer {
    /// `server_nonce` must be fresh random text; `secret` keys the stable
    /// fake salt shown for unknown user names.
    pub fn new(server_nonce: &str, secret: &[u8]) -> ScramServer {
        ScramServer {
            server_nonce: server_nonce.to_string(),
            fake_salt_key: sha256(secret),
            state: ServerState::Start,
        }
    }

    /// The user named in message 1, once it was read.
    pub fn user(&self) -> Option<&str> {
        match &self.state {
            ServerState::SentFirst { user, .. } => Some(user),
            _ => None,
        }
    }

    /// Takes message 1 and the stored credential lookup; returns message 2.
    pub fn client_first(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, ServerState::Start) {
            return Err(ScramError::OutOfOrder);
        }
        let text = utf8(message)?;
        let bare = text
            .strip_prefix(GS2_HEADER)
            .ok_or(ScramError::Malformed("GS2 header must be `n,,`"))?;
        let [name, client_nonce] = attributes(bare, ['n', 'r'])?;
        if name.is_empty() || name.len() > USER_NAME_BYTES_MAX * 3 || client_nonce.is_empty() {
            return Err(ScramError::Malformed("empty or oversized user name or nonce"));
        }
        let user = unescape_name(name)?;
        let credential = lookup(&user);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (
                hmac_sha256(&self.fake_salt_key, user.as_bytes())[..SALT_BYTES].to_vec(),
                ITERATIONS_DEFAULT,
            ),
        };
        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!("r={nonce},s={},i={iterations}", b64(&salt));
        self.state = ServerState::SentFirst {
            user,
            credential,
            nonce,
            auth_prefix: format!("{bare},{server_first}"),
        };
        Ok(server_first.into_bytes())
    }

    /// Takes message 3; returns message 4 and the authenticated user name.
    /// A wrong proof (or an unknown user) is [`ScramError::InvalidProof`].
    pub fn client_final(&mut self, message: &[u8]) -> Result<(Vec<u8>, String), ScramError> {
        let ServerState::SentFirst {
            user,
            credential,
            nonce,
            auth_prefix,
        } = std::mem::replace(&mut self.state, ServerState::Done)
        else {
            return Err(ScramError::OutOfOrder);
        };
        let text = utf8(message)?;
        let [binding, got_nonce, proof] = attributes(text, ['c', 'r', 'p'])?;
        if binding != CHANNEL_BINDING_B64 {
            return Err(ScramError::Malformed("channel binding must be `biws`"));
        }
        if got_nonce != nonce {
            return Err(ScramError::NonceMismatch);
        }
        let proof = unb64(proof)?;
        let proof: [u8; KEY_BYTES] = proof
            .try_into()
            .map_err(|_| ScramError::Malformed("proof must be 32 bytes"))?;
        let credential = credential.ok_or(ScramError::InvalidProof)?;
        let stored_key: [u8; KEY_BYTES] = credential
            .stored_key
            .as_slice()
            .try_into()
            .map_err(|_| ScramError::InvalidProof)?;
        let auth_message = format!("{auth_prefix},c={binding},r={got_nonce}");
        let client_signature = hmac_sha256(&stored_key, auth_message.as_bytes());
        let client_key = xor(&proof, &client_signature);
        if !constant_time_eq(&sha256(&client_key), &stored_key) {
            return Err(ScramError::InvalidProof);
        }
        let signature = hmac_sha256(&credential.server_key, auth_message.as_bytes());
        Ok((format!("v={}", b64(&signature)).into_bytes(), user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore, SeedableRng};

    fn credential(password: &str) -> ScramCredential {
        ScramCredential::derive(password, &[7u8; SALT_BYTES], ITERATIONS_MIN).unwrap()
    }

    /// RFC 7677's test vector: user "user", password "pencil".
    #[test]
    fn rfc7677_vector() {
        let (mut client, first) = ScramClient::start("user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(first, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first =
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let final_msg = client.server_first(server_first).unwrap();
        assert_eq!(
            String::from_utf8(final_msg).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        client
            .server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
    }

    /// Client and server agree; the server names the user; the client
    /// checks the server's signature.
    #[test]
    fn exchange_succeeds() {
        let cred = credential("s3cret");
        let (mut client, m1) = ScramClient::start("ali,ce=", "s3cret", "abc");
        let mut server = ScramServer::new("xyz", b"secret");
        let m2 = server
            .client_first(&m1, |u| (u == "ali,ce=").then(|| cred.clone()))
            .unwrap();
        let m3 = client.server_first(&m2).unwrap();
        let (m4, user) = server.client_final(&m3).unwrap();
        assert_eq!(user, "ali,ce=");
        client.server_final(&m4).unwrap();
    }

    /// A wrong password and an unknown user fail the same way at step 3.
    #[test]
    fn wrong_password_and_unknown_user_fail_alike() {
        let cred = credential("right");
        for (user, password) in [("alice", "wrong"), ("mallory", "right")] {
            let (mut client, m1) = ScramClient::start(user, password, "n1");
            let mut server = ScramServer::new("n2", b"secret");
            let m2 = server
                .client_first(&m1, |u| (u == "alice").then(|| cred.clone()))
                .unwrap();
            let m3 = client.server_first(&m2).unwrap();
            assert_eq!(server.client_final(&m3).unwrap_err(), ScramError::InvalidProof);
        }
    }

    /// A server without the credential cannot fake message 4.
    #[test]
    fn client_checks_server_signature() {
        let (mut client, m1) = ScramClient::start("alice", "pw", "n1");
        let mut server = ScramServer::new("n2", b"secret");
        let m2 = server.client_first(&m1, |_| Some(credential("pw"))).unwrap();
        client.server_first(&m2).unwrap();
        let forged = format!("v={}", b64(&[0u8; 32]));
        assert_eq!(
            client.server_final(forged.as_bytes()).unwrap_err(),
            ScramError::ServerSignature
        );
    }

    /// Every strict prefix of every message, and seeded random mutations,
    /// are refused without a panic; a server never answers a mutated
    /// message 3 with success.
    #[test]
    fn truncated_and_mutated_messages_are_refused() {
        let seed: u64 = std::env::var("SCRAM_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| rand::thread_rng().gen());
        println!("scram fuzz seed {seed} (SCRAM_FUZZ_SEED={seed} to re-run)");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let cred = credential("pw");
        let (mut client, m1) = ScramClient::start("alice", "pw", "cnonce");
        let mut server = ScramServer::new("snonce", b"k");
        let m2 = server.client_first(&m1, |_| Some(cred.clone())).unwrap();
        let m3 = client.server_first(&m2).unwrap();
        for cut in 0..m1.len() {
            let mut s = ScramServer::new("snonce", b"k");
            let _ = s.client_first(&m1[..cut], |_| Some(cred.clone()));
        }
        for cut in 0..m3.len() {
            let mut s = ScramServer::new("snonce", b"k");
            s.client_first(&m1, |_| Some(cred.clone())).unwrap();
            assert!(
                s.client_final(&m3[..cut]).is_err(),
                "prefix {cut} of message 3 accepted"
            );
        }
        for cut in 0..m2.len() {
            let (mut c, _) = ScramClient::start("alice", "pw", "cnonce");
            assert!(
                c.server_first(&m2[..cut]).is_err(),
                "prefix {cut} of message 2 accepted"
            );
        }
        for _ in 0..2_000 {
            let mut msg = m3.clone();
            for _ in 0..rng.gen_range(1..4) {
                match rng.gen_range(0..3) {
                    0 if !msg.is_empty() => {
                        let i = rng.gen_range(0..msg.len());
                        msg[i] ^= 1 << rng.gen_range(0..8);
                    }
                    1 => msg.truncate(rng.gen_range(0..=msg.len())),
                    _ => {
                        let mut extra = vec![0u8; rng.gen_range(0..64)];
                        rng.fill_bytes(&mut extra);
                        msg.extend_from_slice(&extra);
                    }
                }
            }
            let mut s = ScramServer::new("snonce", b"k");
            s.client_first(&m1, |_| Some(cred.clone())).unwrap();
            if msg != m3 {
                assert!(
                    s.client_final(&msg).is_err(),
                    "mutated message 3 accepted: {msg:?}"
                );
            }
            let mut s = ScramServer::new("snonce", b"k");
            let _ = s.client_first(&msg, |_| Some(cred.clone()));
        }
        let huge = vec![b'a'; SCRAM_MESSAGE_BYTES_MAX + 1];
        let mut s = ScramServer::new("snonce", b"k");
        assert_eq!(
            s.client_first(&huge, |_| None).unwrap_err(),
            ScramError::Malformed("message too long")
        );
    }

    /// Credentials below RFC 7677's iteration floor or with short salts are refused.
    #[test]
    fn weak_credentials_are_refused() {
        assert!(ScramCredential::derive("pw", &[1; 16], 1000).is_err());
        let mut c = credential("pw");
        c.validate().unwrap();
        c.salt.truncate(4);
        assert!(c.validate().is_err());
    }
}
