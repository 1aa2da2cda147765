//! The `[security]` section: TLS, authentication, the audit log and the
//! secure-by-default rule.
//!
//! ```toml
//! [security]
//! authentication = true          # SCRAM on native, bearer tokens on HTTP
//! super_users = ["admin"]        # may do everything, ACLs or not
//! bootstrap_admin_password_file = "/etc/shoal/admin.pw"  # creates `admin` once
//!
//! [security.tls]
//! cert_file = "/etc/shoal/broker.pem"     # chain, leaf first
//! key_file = "/etc/shoal/broker.key"
//! client_ca_file = "/etc/shoal/clients-ca.pem"  # optional: mTLS
//! require_client_cert = false
//! min_version = "1.3"           # "1.2" allows TLS 1.2 too
//! ```
//!
//! Secure by default: a broker whose native or HTTP address is not a
//! loopback address must have TLS and authentication on, or say
//! `insecure = true` (it then warns at every start). The embedded defaults
//! bind 127.0.0.1 and so keep working without either.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Failed authentications allowed per source address per window before
/// further attempts are refused at once.
pub const AUTH_FAILURES_PER_WINDOW_DEFAULT: u32 = 10;
/// The window of the failure count.
pub const AUTH_FAILURE_WINDOW_MS_DEFAULT: u64 = 60_000;

/// `[security]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// TLS on the native (shared and shard) ports and HTTP; off when absent.
    pub tls: Option<TlsConfig>,
    /// Require authentication (SCRAM-SHA-256 on native connections, a
    /// bearer token or a client certificate on HTTP) and check ACLs: deny
    /// by default.
    pub authentication: bool,
    /// Principals (user names) allowed everything, without ACLs.
    pub super_users: Vec<String>,
    /// A file holding a password: on start, if no user exists yet, the
    /// first super user is created with it (the file is read, never logged).
    pub bootstrap_admin_password_file: Option<PathBuf>,
    /// Serve a non-loopback address without TLS and authentication.
    pub insecure: bool,
    /// Failed authentications per source address per window.
    pub auth_failures_per_window_max: u32,
    pub auth_failure_window_ms: u64,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            tls: None,
            authentication: false,
            super_users: Vec::new(),
            bootstrap_admin_password_file: None,
            insecure: false,
            auth_failures_per_window_max: AUTH_FAILURES_PER_WINDOW_DEFAULT,
            auth_failure_window_ms: AUTH_FAILURE_WINDOW_MS_DEFAULT,
        }
    }
}

/// The lowest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// `[security.tls]`: PEM files, re-read on SIGHUP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The broker's certificate chain, leaf first.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// CA(s) that sign client certificates; enables mTLS. A client that
    /// presents a valid certificate is authenticated as its subject's
    /// common name (`User:<CN>`).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate (needs `client_ca_file`).
    #[serde(default)]
    pub require_client_cert: bool,
    #[serde(default = "tls13")]
    pub min_version: TlsVersion,
}

fn tls13() -> TlsVersion {
    TlsVersion::Tls13
}

impl SecurityConfig {
    /// Cross-field rules; the error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(tls) = &self.tls {
            if tls.require_client_cert && tls.client_ca_file.is_none() {
                return Err((
                    "security.tls.require_client_cert",
                    "needs security.tls.client_ca_file".into(),
                ));
            }
        }
        if self.auth_failures_per_window_max == 0 || self.auth_failure_window_ms == 0 {
            return Err((
                "security.auth_failures_per_window_max",
                "the failure limit and its window must be > 0".into(),
            ));
        }
        if self.bootstrap_admin_password_file.is_some() && self.super_users.is_empty() {
            return Err((
                "security.bootstrap_admin_password_file",
                "needs a super user to create (security.super_users)".into(),
            ));
        }
        Ok(())
    }

    /// Whether this broker may serve `addrs` as configured: loopback-only,
    /// or TLS and authentication on, or `insecure = true`. Returns the first
    /// exposed address that is not protected.
    pub fn exposed_without_protection(&self, addrs: &[std::net::SocketAddr]) -> Option<std::net::SocketAddr> {
        if self.insecure || (self.tls.is_some() && self.authentication) {
            return None;
        }
        addrs.iter().copied().find(|a| !a.ip().is_loopback())
    }
}
