//! What a client needs to reach a secured broker: TLS settings (rustls,
//! blocking) and credentials, from flags, environment variables or a small
//! TOML file.
//!
//! | setting        | flag           | environment          | file key     |
//! |----------------|----------------|----------------------|--------------|
//! | CA certificate | `--tls-ca`     | `SHOAL_TLS_CA`       | `tls_ca`     |
//! | client cert    | `--tls-cert`   | `SHOAL_TLS_CERT`     | `tls_cert`   |
//! | client key     | `--tls-key`    | `SHOAL_TLS_KEY`      | `tls_key`    |
//! | server name    | `--tls-server-name` | `SHOAL_TLS_SERVER_NAME` | `tls_server_name` |
//! | user           | `--user`       | `SHOAL_USER`         | `user`       |
//! | password       | `--password`   | `SHOAL_PASSWORD`     | `password`   |
//! | the file       | `--client-config` | `SHOAL_CLIENT_CONFIG` | —       |
//!
//! A flag wins over the environment, which wins over the file. Giving a CA
//! turns TLS on; the broker's certificate must chain to it and name the
//! host connected to (or `tls_server_name`). TLS 1.3 and 1.2 are offered;
//! the broker picks. Passwords are never printed: [`Credentials`]' `Debug`
//! shows the user only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::error::ProtocolError;

/// A user name and password for SCRAM-SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where the client's TLS material lives.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityFile {
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_server_name: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl SecurityFile {
    /// Reads a client security file (TOML with the keys above).
    pub fn read(path: &Path) -> Result<SecurityFile, ProtocolError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ProtocolError::InvalidArgument(format!("cannot read client config {}: {e}", path.display()))
        })?;
        toml::from_str(&text).map_err(|e| {
            ProtocolError::InvalidArgument(format!("invalid client config {}: {e}", path.display()))
        })
    }

    /// `self` with every unset field taken from `fallback`.
    pub fn or(self, fallback: SecurityFile) -> SecurityFile {
        SecurityFile {
            tls_ca: self.tls_ca.or(fallback.tls_ca),
            tls_cert: self.tls_cert.or(fallback.tls_cert),
            tls_key: self.tls_key.or(fallback.tls_key),
            tls_server_name: self.tls_server_name.or(fallback.tls_server_name),
            user: self.user.or(fallback.user),
            password: self.password.or(fallback.password),
        }
    }

    /// The settings from `SHOAL_*` environment variables.
    pub fn from_env() -> SecurityFile {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        SecurityFile {
            tls_ca: var("SHOAL_TLS_CA").map(PathBuf::from),
            tls_cert: var("SHOAL_TLS_CERT").map(PathBuf::from),
            tls_key: var("SHOAL_TLS_KEY").map(PathBuf::from),
            tls_server_name: var("SHOAL_TLS_SERVER_NAME"),
            user: var("SHOAL_USER"),
            password: var("SHOAL_PASSWORD"),
        }
    }

    /// Builds the client's security settings (loads and checks the PEM files).
    pub fn build(&self) -> Result<ClientSecurity, ProtocolError> {
        let tls = match &self.tls_ca {
            Some(ca) => Some(ClientTls::load(
                ca,
                self.tls_cert.as_deref(),
                self.tls_key.as_deref(),
                self.tls_server_name.clone(),
            )?),
            None if self.tls_cert.is_some() || self.tls_key.is_some() => {
                return Err(ProtocolError::InvalidArgument(
                    "a client certificate needs --tls-ca too".into(),
                ))
            }
            None => None,
        };
        let credentials = match (&self.user, &self.password) {
            (Some(user), Some(password)) => Some(Credentials {
                user: user.clone(),
                password: password.clone(),
            }),
            (None, None) => None,
            _ => {
                return Err(ProtocolError::InvalidArgument(
                    "--user and --password go together".into(),
                ))
            }
        };
        Ok(ClientSecurity { tls, credentials })
    }
}

/// A loaded TLS client configuration.
#[derive(Clone)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    /// Overrides the name checked against the broker's certificate.
    pub server_name: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn invalid(what: String) -> ProtocolError {
    ProtocolError::InvalidArgument(what)
}

/// Every certificate in a PEM file; an empty file is an error.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ProtocolError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(format!("cannot read certificates from {}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("bad PEM in {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!("no certificate in {}", path.display())));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ProtocolError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| invalid(format!("cannot read a private key from {}: {e}", path.display())))
}

/// The process-wide crypto provider: ring (the same library SCRAM uses).
/// rustls marks ring's provider deprecated only because it lacks the
/// post-quantum key exchange; aws-lc-rs would need cmake and a C build on
/// every machine, and ring's X25519/P-256 are what TLS clients offer today.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ClientTls {
    pub fn load(
        ca: &Path,
        cert: Option<&Path>,
        key: Option<&Path>,
        server_name: Option<String>,
    ) -> Result<ClientTls, ProtocolError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certs(ca)? {
            roots
                .add(cert)
                .map_err(|e| invalid(format!("bad CA certificate in {}: {e}", ca.display())))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| invalid(format!("TLS versions: {e}")))?
            .with_root_certificates(roots);
        let config = match (cert, key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
                .map_err(|e| invalid(format!("client certificate {}: {e}", cert.display())))?,
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(invalid("--tls-cert and --tls-key go together".into())),
        };
        Ok(ClientTls {
            config: Arc::new(config),
            server_name,
        })
    }

    /// The name to check the broker's certificate against when connecting
    /// to `host` (an IP address or a DNS name).
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, ProtocolError> {
        let name = self.server_name.as_deref().unwrap_or(host);
        ServerName::try_from(name.to_string())
            .map_err(|e| invalid(format!("{name:?} is not a valid TLS server name: {e}")))
    }
}

/// TLS and credentials for every connection a client opens.
#[derive(Debug, Clone, Default)]
pub struct ClientSecurity {
    pub tls: Option<ClientTls>,
    pub credentials: Option<Credentials>,
}

/// The flags of the table above, for the CLI and `shoal-bench` (flattened
/// into their own arguments; `global` so they go before or after a
/// subcommand). Resolved with [`SecurityArgs::resolve`]: flag, then
/// environment, then the file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SecurityArgs {
    /// CA certificate (PEM) the broker's certificate must chain to; turns TLS on [env: SHOAL_TLS_CA]
    #[arg(long, global = true, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS [env: SHOAL_TLS_CERT]
    #[arg(long, global = true, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM) [env: SHOAL_TLS_KEY]
    #[arg(long, global = true, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Name to check the broker's certificate against, when it is not the host connected to [env: SHOAL_TLS_SERVER_NAME]
    #[arg(long, global = true, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// User to authenticate as (SCRAM-SHA-256) [env: SHOAL_USER]
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// The user's password; prefer SHOAL_PASSWORD or the client config file, which `ps` does not show [env: SHOAL_PASSWORD]
    #[arg(long, global = true, hide_env_values = true)]
    pub password: Option<String>,
    /// TOML file with tls_ca, tls_cert, tls_key, tls_server_name, user, password [env: SHOAL_CLIENT_CONFIG]
    #[arg(long, global = true, value_name = "PATH")]
    pub client_config: Option<PathBuf>,
}

impl SecurityArgs {
    /// The settings from the flags, else the environment, else the file.
    pub fn resolve(&self) -> Result<ClientSecurity, ProtocolError> {
        let flags = SecurityFile {
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_server_name: self.tls_server_name.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
        };
        let file_path = self.client_config.clone().or_else(|| {
            std::env::var("SHOAL_CLIENT_CONFIG")
                .ok()
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        let file = match file_path {
            Some(path) => SecurityFile::read(&path)?,
            None => SecurityFile::default(),
        };
        flags.or(SecurityFile::from_env()).or(file).build()
    }
}
