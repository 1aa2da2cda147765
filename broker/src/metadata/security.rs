//! The security service: users, tokens and ACLs for the whole broker, the
//! authorization decision, the failed-login limiter and the audit log.
//!
//! One instance per process, shared by every shard (`Arc`). Reads vastly
//! outnumber writes (every request is authorized; users and ACLs change a
//! few times a day), so the state is an immutable snapshot
//! (`Arc<SecurityState>`) swapped whole on a change, and each shard keeps
//! its own copy of the current `Arc` ([`ShardView`]), refreshed only when
//! the service's version counter moved. The per-request cost is one atomic
//! load of a cache line that stays shared between cores, never a lock.
//!
//! A change (from any shard) takes the writer mutex, builds the next
//! state, stores it durably ([`SecurityStore`]: written atomically, like the
//! topic catalogue) and only then publishes it and bumps the version: a
//! change is visible only once it survives a crash. The durable write is a
//! small blocking file write and fsync on the calling shard's thread;
//! changes are rare admin actions, so this is accepted rather than routed
//! to a blocking pool.
//!
//! What is kept here, and not in the front ends, is everything a Kafka
//! listener or a replication link needs too: the SCRAM credential lookup,
//! bearer tokens, the ACL decision, the limiter and the audit log.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine as _;
use shoal_config::SecurityConfig;
use shoal_protocol::messages::security::{
    Operation, ScramCredential, SecurityAdminResponse, SecurityOp, TokenInfo,
};
use shoal_protocol::scram::{self, USER_NAME_BYTES_MAX};

use super::acl::{validate_entry, Policy, Principal, Resource};
use super::security_store::{
    SecurityState, SecurityStore, SecurityStoreError, ACLS_MAX, TOKENS_MAX, USERS_MAX,
};
use crate::audit::Audit;
use crate::error::{BrokerError, BrokerResult};

/// Sources whose failures are tracked at once; past this, expired windows
/// are dropped, and if none expired the oldest window is forgotten.
pub const FAILURE_SOURCES_MAX: usize = 65_536;
/// Prefix of every bearer token (tells a leaked token apart in logs and
/// secret scanners).
pub const TOKEN_PREFIX: &str = "shoal_";

/// Failed authentications per source address in a fixed window. Pure:
/// the caller passes `now_ms`.
#[derive(Debug)]
pub struct FailureLimiter {
    max: u32,
    window_ms: u64,
    windows: HashMap<IpAddr, (i64, u32)>,
}

impl FailureLimiter {
    pub fn new(max: u32, window_ms: u64) -> FailureLimiter {
        FailureLimiter {
            max,
            window_ms,
            windows: HashMap::new(),
        }
    }

    fn current(&self, source: IpAddr, now_ms: i64) -> u32 {
        match self.windows.get(&source) {
            Some(&(start, n)) if now_ms - start < self.window_ms as i64 => n,
            _ => 0,
        }
    }

    /// Whether `source` may try again now.
    pub fn allowed(&self, source: IpAddr, now_ms: i64) -> bool {
        self.current(source, now_ms) < self.max
    }

    /// Counts one failure of `source`.
    pub fn failed(&mut self, source: IpAddr, now_ms: i64) {
        let n = self.current(source, now_ms);
        if n == 0 && self.windows.len() >= FAILURE_SOURCES_MAX {
            let window = self.window_ms as i64;
            self.windows.retain(|_, (start, _)| now_ms - *start < window);
            if self.windows.len() >= FAILURE_SOURCES_MAX {
                if let Some(oldest) = self.windows.iter().min_by_key(|(_, (s, _))| *s).map(|(k, _)| *k) {
                    self.windows.remove(&oldest);
                }
            }
        }
        let start = match self.windows.get(&source) {
            Some(&(start, _)) if n > 0 => start,
            _ => now_ms,
        };
        self.windows.insert(source, (start, n + 1));
    }
}

/// Who is acting and from where: what every service call is checked with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    pub source: IpAddr,
}

impl Caller {
    pub fn new(principal: Principal, source: IpAddr) -> Caller {
        Caller { principal, source }
    }
}

/// The process-wide security service.
pub struct SecurityService {
    config: SecurityConfig,
    store: SecurityStore,
    state: RwLock<Arc<SecurityState>>,
    version: AtomicU64,
    writer: Mutex<()>,
    failures: Mutex<FailureLimiter>,
    audit: Audit,
    /// Keys the stable fake SCRAM salt of unknown users (random per start).
    scram_secret: [u8; 32],
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum SecurityStartError {
    #[error("{0}")]
    Store(#[from] SecurityStoreError),
    #[error("cannot open the audit log: {0}")]
    Audit(std::io::Error),
    #[error("cannot read security.bootstrap_admin_password_file {path}: {source}")]
    BootstrapPassword {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("bootstrap admin: {0}")]
    Bootstrap(String),
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut out)
        .expect("the system random source works");
    out
}

impl SecurityService {
    /// Loads the security file, opens the audit log and creates the
    /// bootstrap super user if configured and no user exists yet.
    pub fn start(config: &shoal_config::Config) -> Result<Arc<SecurityService>, SecurityStartError> {
        let data_dir = &config.server.data_dir;
        let store = SecurityStore::new(data_dir);
        let mut state = store.load()?;
        let sec = config.security.clone();
        if let (Some(path), Some(admin)) = (&sec.bootstrap_admin_password_file, sec.super_users.first()) {
            if state.users.is_empty() {
                let password = std::fs::read_to_string(path).map_err(|source| {
                    SecurityStartError::BootstrapPassword {
                        path: path.clone(),
                        source,
                    }
                })?;
                let password = password.trim_end_matches(['\n', '\r']);
                let credential =
                    ScramCredential::derive(password, &random_bytes::<16>(), scram::ITERATIONS_DEFAULT)
                        .map_err(|e| SecurityStartError::Bootstrap(e.to_string()))?;
                state.users.insert(admin.clone(), credential);
                store.store(&state)?;
                tracing::info!(user = %admin, "created the bootstrap super user");
            }
        }
        let audit = Audit::open(data_dir).map_err(SecurityStartError::Audit)?;
        Ok(Arc::new(SecurityService {
            failures: Mutex::new(FailureLimiter::new(
                sec.auth_failures_per_window_max,
                sec.auth_failure_window_ms,
            )),
            config: sec,
            store,
            state: RwLock::new(Arc::new(state)),
            version: AtomicU64::new(1),
            writer: Mutex::new(()),
            audit,
            scram_secret: random_bytes::<32>(),
        }))
    }

    pub fn authentication(&self) -> bool {
        self.config.authentication
    }

    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    pub fn scram_secret(&self) -> &[u8] {
        &self.scram_secret
    }

    /// The current state (an `Arc` copy; hold it as long as needed).
    pub fn snapshot(&self) -> Arc<SecurityState> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The SCRAM credential of `user`, if the user exists.
    pub fn credential(&self, user: &str) -> Option<ScramCredential> {
        self.snapshot().users.get(user).cloned()
    }

    /// Whether `password` is `user`'s (SASL/PLAIN): the stored SCRAM
    /// credential is derived again from the password and compared in
    /// constant time. An unknown user costs the same derivation, so the
    /// answer's timing does not say whether the user exists.
    pub fn verify_password(&self, user: &str, password: &str) -> bool {
        let stored = self.credential(user);
        let (salt, iterations) = match &stored {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (self.scram_secret.to_vec(), scram::ITERATIONS_DEFAULT),
        };
        let Ok(derived) = scram::ScramCredential::derive(password, &salt, iterations) else {
            return false;
        };
        stored.is_some_and(|c| scram::constant_time_eq(&c.stored_key, &derived.stored_key))
    }

    /// The user a bearer token authenticates as.
    pub fn token_user(&self, token: &str) -> Option<String> {
        let hash = hex(&scram::sha256(token.as_bytes()));
        self.snapshot().tokens.get(&hash).map(|t| t.user.clone())
    }

    /// Whether `source` may attempt to authenticate now.
    pub fn may_attempt(&self, source: IpAddr, now_ms: i64) -> bool {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allowed(source, now_ms)
    }

    /// Counts and audits a failed authentication. `user` is the name the
    /// peer claimed (it may not exist); `how` says which method failed.
    pub fn auth_failed(&self, source: IpAddr, user: &str, how: &str, now_ms: i64) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failed(source, now_ms);
        tracing::warn!(%source, user, how, "authentication failed");
        let resource = format!("user:{user}");
        self.audit.event(
            now_ms,
            "ANONYMOUS",
            source,
            "authenticate",
            &resource,
            "authentication_failed",
            how,
        );
    }

    /// Records an admin action's outcome.
    pub fn audit_action(&self, caller: &Caller, action: &str, resource: &str, result: &BrokerResult<()>) {
        let outcome = match result {
            Ok(()) => "ok",
            Err(BrokerError::AuthorizationFailed { .. }) => "denied",
            Err(e) => e.code().name(),
        };
        self.audit.event(
            crate::runtime::now_ms(),
            &caller.principal.name(),
            caller.source,
            action,
            resource,
            outcome,
            "",
        );
    }

    /// Applies one administration operation (the caller was authorized
    /// for cluster `admin` before). Durable before it returns Ok.
    pub fn apply(&self, op: SecurityOp, now_ms: i64) -> BrokerResult<SecurityAdminResponse> {
        if let Some(reply) = self.read(&op) {
            return Ok(reply);
        }
        let (change, reply) = prepare(op, now_ms);
        self.commit(&change)
            .map_err(|e| BrokerError::Internal(format!("storing the security file failed: {e}")))??;
        Ok(reply)
    }

    /// The answer to a read-only operation (`None` for a write).
    pub fn read(&self, op: &SecurityOp) -> Option<SecurityAdminResponse> {
        let mut reply = SecurityAdminResponse::default();
        let state = self.snapshot();
        match op {
            SecurityOp::ListUsers => reply.users = state.users.keys().cloned().collect(),
            SecurityOp::ListTokens => reply.tokens = state.tokens.values().cloned().collect(),
            SecurityOp::ListAcls => reply.acls = state.acls.iter().cloned().collect(),
            _ => return None,
        }
        Some(reply)
    }

    /// Applies a prepared change and stores the state durably. The outer
    /// error is the store's (nothing changed); the inner result the
    /// change's own outcome (an unknown user, a limit).
    pub fn commit(&self, change: &SecurityChange) -> Result<BrokerResult<()>, String> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = (*self.snapshot()).clone();
        if let Err(e) = apply_change(&mut next, change) {
            return Ok(Err(e));
        }
        self.store.store(&next).map_err(|e| e.to_string())?;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(Ok(()))
    }
}

/// A write to the security state with everything random already chosen
/// (a new token is its hash and listing), so applying it is deterministic:
/// a cluster's nodes apply it from the metadata log and agree.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum SecurityChange {
    /// Any write but token creation, as the client sent it.
    Op(SecurityOp),
    /// A new bearer token: its SHA-256 (hex) and what lists it.
    InsertToken { hash: String, info: TokenInfo },
}

/// Turns a write operation into its change and the reply its caller gets
/// (token creation picks the token here: the reply has it, the change only
/// its hash).
pub fn prepare(op: SecurityOp, now_ms: i64) -> (SecurityChange, SecurityAdminResponse) {
    let mut reply = SecurityAdminResponse::default();
    let change = match op {
        SecurityOp::CreateToken { user } => {
            let token = format!(
                "{TOKEN_PREFIX}{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
            );
            let hash = hex(&scram::sha256(token.as_bytes()));
            let info = TokenInfo {
                id: hash[..16].to_string(),
                user,
                created_at_ms: now_ms,
            };
            reply.token = token;
            reply.tokens = vec![info.clone()];
            SecurityChange::InsertToken { hash, info }
        }
        op => SecurityChange::Op(op),
    };
    (change, reply)
}

/// Applies a change to `state`.
fn apply_change(state: &mut SecurityState, change: &SecurityChange) -> BrokerResult<()> {
    let op = match change {
        SecurityChange::InsertToken { hash, info } => {
            if !state.users.contains_key(&info.user) {
                return Err(BrokerError::invalid(format!(
                    "user {:?} does not exist",
                    info.user
                )));
            }
            if state.tokens.len() >= TOKENS_MAX {
                return Err(BrokerError::invalid(format!("at most {TOKENS_MAX} tokens")));
            }
            state.tokens.insert(hash.clone(), info.clone());
            return Ok(());
        }
        SecurityChange::Op(op) => op,
    };
    match op {
        SecurityOp::UpsertUser {
            user,
            credential,
            create_only,
        } => {
            validate_user(user)?;
            credential
                .validate()
                .map_err(|e| BrokerError::invalid(e.to_string()))?;
            if *create_only && state.users.contains_key(user) {
                return Err(BrokerError::invalid(format!("user {user:?} already exists")));
            }
            if !state.users.contains_key(user) && state.users.len() >= USERS_MAX {
                return Err(BrokerError::invalid(format!("at most {USERS_MAX} users")));
            }
            state.users.insert(user.clone(), credential.clone());
        }
        SecurityOp::DeleteUser { user } => {
            if state.users.remove(user).is_none() {
                return Err(BrokerError::invalid(format!("user {user:?} does not exist")));
            }
            state.tokens.retain(|_, t| &t.user != user);
        }
        SecurityOp::RevokeToken { id } => {
            let before = state.tokens.len();
            state.tokens.retain(|_, t| &t.id != id);
            if state.tokens.len() == before {
                return Err(BrokerError::invalid(format!("no token has id {id:?}")));
            }
        }
        SecurityOp::AddAcl(entry) => {
            validate_entry(entry).map_err(BrokerError::invalid)?;
            if state.acls.len() >= ACLS_MAX {
                return Err(BrokerError::invalid(format!("at most {ACLS_MAX} ACL entries")));
            }
            state.acls.insert(entry.clone());
        }
        SecurityOp::RemoveAcl(entry) => {
            if !state.acls.remove(entry) {
                return Err(BrokerError::invalid(format!("no ACL entry {}", entry.describe())));
            }
        }
        // Token creation is prepared into `InsertToken`; reads change nothing.
        SecurityOp::CreateToken { .. }
        | SecurityOp::ListUsers
        | SecurityOp::ListTokens
        | SecurityOp::ListAcls => {}
    }
    Ok(())
}

fn validate_user(user: &str) -> BrokerResult<()> {
    let ok = !user.is_empty()
        && user.len() <= USER_NAME_BYTES_MAX
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(BrokerError::invalid(format!(
            "user name {user:?} must be 1-{USER_NAME_BYTES_MAX} characters of A-Z a-z 0-9 . _ - @"
        )))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One shard's view of the service: the current snapshot, refreshed when
/// the version moved, so authorizing a request takes no lock.
pub struct ShardView {
    service: Arc<SecurityService>,
    cached: RefCell<(u64, Arc<SecurityState>)>,
}

impl ShardView {
    pub fn new(service: Arc<SecurityService>) -> ShardView {
        let cached = RefCell::new((service.version(), service.snapshot()));
        ShardView { service, cached }
    }

    pub fn service(&self) -> &Arc<SecurityService> {
        &self.service
    }

    /// The decision itself, against this shard's copy of the state
    /// (refreshed when the version moved): no lock, and no touch of the
    /// shared snapshot's reference count, per request.
    fn permits(&self, caller: &Caller, resource: Resource<'_>, op: Operation) -> bool {
        if !self.service.authentication() {
            return true;
        }
        let version = self.service.version();
        let mut cached = self.cached.borrow_mut();
        if cached.0 != version {
            *cached = (version, self.service.snapshot());
        }
        let policy = Policy {
            authentication: true,
            super_users: &self.service.config.super_users,
            acls: &cached.1.acls,
        };
        policy.allows(&caller.principal, resource, op)
    }

    /// Ok when `caller` may do `op` on `resource`, else `authorization_failed`.
    pub fn authorize(&self, caller: &Caller, resource: Resource<'_>, op: Operation) -> BrokerResult<()> {
        if self.permits(caller, resource, op) {
            return Ok(());
        }
        tracing::debug!(principal = %caller.principal, %resource, op = op.name(), "not authorized");
        Err(BrokerError::AuthorizationFailed {
            principal: caller.principal.name(),
            operation: op.name(),
            resource: resource.to_string(),
        })
    }

    /// Whether `caller` may do `op` on `resource` (for filtering lists:
    /// no error is built and nothing is logged for what is left out).
    pub fn allows(&self, caller: &Caller, resource: Resource<'_>, op: Operation) -> bool {
        self.permits(caller, resource, op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten failures in a window lock a source out until the window ends;
    /// other sources are unaffected; the table stays bounded.
    #[test]
    fn failure_limiter() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut l = FailureLimiter::new(3, 1_000);
        for _ in 0..3 {
            assert!(l.allowed(a, 0));
            l.failed(a, 0);
        }
        assert!(!l.allowed(a, 999));
        assert!(l.allowed(b, 999));
        assert!(l.allowed(a, 1_000));
        l.failed(a, 1_000);
        assert!(l.allowed(a, 1_001));
        let mut l = FailureLimiter::new(1, 1_000_000);
        for i in 0..(FAILURE_SOURCES_MAX as u32 + 10) {
            l.failed(IpAddr::from(i.to_be_bytes()), i as i64);
        }
        assert!(l.windows.len() <= FAILURE_SOURCES_MAX);
    }

    /// Users, tokens and ACLs change durably; a token authenticates by its
    /// hash; deleting a user drops its tokens.
    #[test]
    fn operations() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = shoal_config::Config::default();
        config.server.data_dir = dir.path().to_path_buf();
        config.security.authentication = true;
        let service = SecurityService::start(&config).unwrap();
        let cred = ScramCredential::derive("pw", &[1; 16], 4096).unwrap();
        let upsert = |create_only| SecurityOp::UpsertUser {
            user: "alice".into(),
            credential: cred.clone(),
            create_only,
        };
        service.apply(upsert(true), 1).unwrap();
        assert!(service.apply(upsert(true), 1).is_err(), "create twice");
        service.apply(upsert(false), 1).unwrap();
        let reply = service
            .apply(SecurityOp::CreateToken { user: "alice".into() }, 5)
            .unwrap();
        assert!(reply.token.starts_with(TOKEN_PREFIX));
        assert_eq!(service.token_user(&reply.token).as_deref(), Some("alice"));
        assert_eq!(service.token_user("shoal_nope"), None);
        let stored = std::fs::read(dir.path().join("security.meta")).unwrap();
        assert!(
            !stored
                .windows(reply.token.len())
                .any(|w| w == reply.token.as_bytes()),
            "the token is stored in clear"
        );
        service
            .apply(SecurityOp::DeleteUser { user: "alice".into() }, 6)
            .unwrap();
        assert_eq!(service.token_user(&reply.token), None);
        let reloaded = SecurityStore::new(dir.path()).load().unwrap();
        assert!(reloaded.users.is_empty());
        assert!(reloaded.tokens.is_empty());
        let bad_name = SecurityOp::UpsertUser {
            user: "a,b".into(),
            credential: cred,
            create_only: true,
        };
        assert!(service.apply(bad_name, 7).is_err());
    }
}
