//! The broker's TLS server settings, built from the PEM files named in
//! `[security.tls]` and rebuilt on SIGHUP.
//!
//! The current `rustls::ServerConfig` sits behind a lock that is taken only
//! to clone its `Arc` when a connection is accepted; a reload builds the
//! new config first (a bad file leaves the old one in place and is
//! reported) and then swaps it. Connections already open keep the session
//! they negotiated; new connections get the new certificates.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::server::WebPkiClientVerifier;
use shoal_config::{TlsConfig, TlsVersion};
use shoal_protocol::tls::{provider, read_certs, read_key};

/// Why the TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{0}")]
    Files(String),
    #[error("TLS settings: {0}")]
    Rustls(String),
}

/// The live TLS server settings.
pub struct TlsAcceptor {
    settings: TlsConfig,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl TlsAcceptor {
    pub fn load(settings: &TlsConfig) -> Result<Arc<TlsAcceptor>, TlsSetupError> {
        let config = build(settings)?;
        Ok(Arc::new(TlsAcceptor {
            settings: settings.clone(),
            current: RwLock::new(Arc::new(config)),
        }))
    }

    /// The settings new connections use now.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-reads the PEM files; on failure the old settings stay.
    pub fn reload(&self) -> Result<(), TlsSetupError> {
        let config = build(&self.settings)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(())
    }

    /// Whether client certificates are checked (mTLS).
    pub fn verifies_clients(&self) -> bool {
        self.settings.client_ca_file.is_some()
    }
}

fn files(e: shoal_protocol::ProtocolError) -> TlsSetupError {
    TlsSetupError::Files(e.to_string())
}

fn rustls_err(e: impl std::fmt::Display) -> TlsSetupError {
    TlsSetupError::Rustls(e.to_string())
}

/// A rustls server config from the settings.
pub fn build(settings: &TlsConfig) -> Result<rustls::ServerConfig, TlsSetupError> {
    let certs = read_certs(&settings.cert_file).map_err(files)?;
    let key = read_key(&settings.key_file).map_err(files)?;
    let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(rustls_err)?;
    let builder = match &settings.client_ca_file {
        Some(ca) => builder.with_client_cert_verifier(client_verifier(ca, settings.require_client_cert)?),
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(certs, key).map_err(rustls_err)
}

fn client_verifier(
    ca: &Path,
    required: bool,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca).map_err(files)? {
        roots.add(cert).map_err(rustls_err)?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder.build().map_err(rustls_err)
}
