//! Mutual TLS on the node links (`[cluster.tls]`, issue 20): the rustls
//! settings built from the node's certificate and the cluster CA, and the
//! two handshakes the links run, each under [`NODE_TLS_HANDSHAKE_MS_MAX`].
//!
//! - The *accepting* side ([`accept`]) requires a client certificate that
//!   chains to the cluster CA (rustls's `WebPkiClientVerifier`). A peer
//!   that speaks plaintext is recognised from its first byte (a TLS
//!   handshake record starts with 0x16) and handed back as
//!   [`AcceptRefusal::Plaintext`], so the link can refuse it in plaintext
//!   with a reason the dialler shows.
//! - The *dialling* side ([`connect`]) presents the node's certificate and
//!   checks the acceptor's against the cluster CA and the peer's host as
//!   the peer list writes it (`PeerAddr::tls_name`).
//!
//! Both are TLS 1.3 only: every node runs Shoal, so there is no older peer
//! to admit. The settings sit behind a lock taken only to clone an `Arc`
//! when a connection starts; [`NodeTls::reload`] (SIGHUP) builds new ones
//! first and swaps them, so a bad file keeps the old ones. Links already up
//! keep their sessions. Which node a peer is stays the hello's business
//! (`membership`): any certificate from the cluster CA may open a link, so
//! that CA signs node certificates only.
//!
//! Memory per link is the adapter's bound ([`crate::tls_stream`]).

use std::io;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_lite::io::AsyncReadExt;
use glommio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::server::WebPkiClientVerifier;
use rustls::{AlertDescription, CertificateError, ClientConnection, ServerConnection};
use shoal_config::NodeTlsConfig;
use shoal_protocol::tls::{provider, read_certs, read_key};

use crate::runtime::sleep;
use crate::tls_stream::{TlsStream, TLS_HANDSHAKE_RECORD};

/// Longest a node-link TLS handshake may take, on either side.
pub const NODE_TLS_HANDSHAKE_MS_MAX: u64 = 5_000;
/// First bytes an acceptor reads to tell TLS from plaintext (fed to rustls).
const FIRST_READ_BYTES: usize = 4096;

/// A TLS link the node accepted.
pub type AcceptedTls = TlsStream<TcpStream, ServerConnection>;
/// A TLS link the node dialled.
pub type DialledTls = TlsStream<TcpStream, ClientConnection>;

/// Why the node-link TLS settings could not be built (a start or a reload
/// fails with it; the message names the file).
#[derive(Debug, thiserror::Error)]
#[error("cluster.tls: {0}")]
pub struct NodeTlsError(String);

/// The server and client settings of one generation of the PEM files.
struct Settings {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

/// The live node-link TLS settings, shared by every shard.
pub struct NodeTls {
    files: NodeTlsConfig,
    current: RwLock<Arc<Settings>>,
}

impl NodeTls {
    pub fn load(files: &NodeTlsConfig) -> Result<Arc<NodeTls>, NodeTlsError> {
        let settings = build(files)?;
        Ok(Arc::new(NodeTls {
            files: files.clone(),
            current: RwLock::new(Arc::new(settings)),
        }))
    }

    /// Re-reads the PEM files; on failure the old settings stay.
    pub fn reload(&self) -> Result<(), NodeTlsError> {
        let settings = build(&self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
        Ok(())
    }

    fn settings(&self) -> Arc<Settings> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn build(files: &NodeTlsConfig) -> Result<Settings, NodeTlsError> {
    let err = |e: &dyn std::fmt::Display| NodeTlsError(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(&files.ca_file).map_err(|e| err(&e))? {
        roots
            .add(cert)
            .map_err(|e| NodeTlsError(format!("bad CA certificate in {}: {e}", files.ca_file.display())))?;
    }
    let roots = Arc::new(roots);
    let certs = read_certs(&files.cert_file).map_err(|e| err(&e))?;
    let key = read_key(&files.key_file).map_err(|e| err(&e))?;
    let tls13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| err(&e))?;
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(tls13)
        .map_err(|e| err(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(|e| NodeTlsError(format!("{}: {e}", files.cert_file.display())))?;
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(tls13)
        .map_err(|e| err(&e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| NodeTlsError(format!("{}: {e}", files.cert_file.display())))?;
    Ok(Settings {
        server: Arc::new(server),
        client: Arc::new(client),
    })
}

/// Why an accepted connection did not become a TLS link.
pub enum AcceptRefusal {
    /// Plaintext on a TLS node port (a node without `[cluster.tls]`): the
    /// socket, so the link can answer with a `Refused` frame.
    Plaintext(TcpStream),
    /// The handshake failed. `refused` when the peer's certificate (or its
    /// lack of one) was the cause, not malformed input or a timeout.
    Failed { reason: String, refused: bool },
}

/// Runs the accepting side's handshake on `stream`.
pub async fn accept(tls: &NodeTls, mut stream: TcpStream) -> Result<AcceptedTls, AcceptRefusal> {
    let config = tls.settings().server.clone();
    let failed = |reason: String| AcceptRefusal::Failed {
        reason,
        refused: false,
    };
    let handshake = async {
        let mut first = vec![0u8; FIRST_READ_BYTES];
        let n = stream
            .read(&mut first)
            .await
            .map_err(|e| failed(format!("read failed: {e}")))?;
        if n == 0 {
            return Err(failed("closed before the TLS handshake".into()));
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            return Err(AcceptRefusal::Plaintext(stream));
        }
        let session = ServerConnection::new(config).map_err(|e| failed(e.to_string()))?;
        let mut link = TlsStream::new(stream, session, &first[..n]).map_err(|e| handshake_failure(&e))?;
        link.handshake().await.map_err(|e| handshake_failure(&e))?;
        Ok(link)
    };
    let deadline = async {
        sleep(Duration::from_millis(NODE_TLS_HANDSHAKE_MS_MAX)).await;
        Err(failed(format!(
            "the TLS handshake did not finish within {NODE_TLS_HANDSHAKE_MS_MAX} ms"
        )))
    };
    futures_lite::future::or(handshake, deadline).await
}

fn handshake_failure(e: &io::Error) -> AcceptRefusal {
    match rustls_error(e) {
        Some(tls) => AcceptRefusal::Failed {
            reason: describe(tls),
            refused: is_refusal(tls),
        },
        None => AcceptRefusal::Failed {
            reason: describe_io(e),
            refused: false,
        },
    }
}

/// Runs the dialling side's handshake on `stream` to the peer at `host`;
/// the error says why, in words for `GET /cluster`.
pub async fn connect(tls: &NodeTls, stream: TcpStream, host: &str) -> Result<DialledTls, String> {
    let config = tls.settings().client.clone();
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} cannot name a TLS certificate: {e}"))?;
    let handshake = async {
        let session = ClientConnection::new(config, name).map_err(|e| describe(&e))?;
        let mut link = TlsStream::new(stream, session, &[]).map_err(|e| describe_io(&e))?;
        link.handshake().await.map_err(|e| describe_io(&e))?;
        Ok(link)
    };
    let deadline = async {
        sleep(Duration::from_millis(NODE_TLS_HANDSHAKE_MS_MAX)).await;
        Err(format!(
            "the TLS handshake did not finish within {NODE_TLS_HANDSHAKE_MS_MAX} ms"
        ))
    };
    futures_lite::future::or(handshake, deadline).await
}

/// The rustls error inside an I/O error from the adapter, if it is one.
pub fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// An I/O error from a TLS handshake in words: the rustls reason when
/// there is one; a peer that hangs up mid-handshake is most likely a node
/// without `[cluster.tls]` (it cannot parse a ClientHello and closes).
pub fn describe_io(e: &io::Error) -> String {
    match rustls_error(e) {
        Some(tls) => describe(tls),
        None if matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        ) =>
        {
            format!("the peer hung up during the TLS handshake, as a node without [cluster.tls] does ({e})")
        }
        None => e.to_string(),
    }
}

/// Whether a handshake error is the peer's identity being refused (its
/// certificate, or none), not malformed input.
pub fn is_refusal(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::AlertReceived(_)
    )
}

/// A rustls error in an operator's words (pure; the common certificate
/// failures name the cluster CA).
pub fn describe(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "peer certificate not signed by the cluster CA".into()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!("peer certificate does not name the host in the peer list ({e})"),
        rustls::Error::NoCertificatesPresented => "the peer presented no certificate".into(),
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateRequired),
        ) => format!(
            "the peer refused this node's certificate (alert {alert:?}): is it signed by the cluster CA?"
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The certificate failures an operator meets name their cause; the
    /// refusal class covers certificate trouble and nothing else.
    #[test]
    fn errors_in_words() {
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(
            describe(&unknown),
            "peer certificate not signed by the cluster CA"
        );
        assert!(is_refusal(&unknown));
        let alert = rustls::Error::AlertReceived(AlertDescription::UnknownCA);
        assert!(
            describe(&alert).contains("refused this node's certificate"),
            "{}",
            describe(&alert)
        );
        assert!(is_refusal(&alert));
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert!(describe(&name).contains("does not name the host"));
        let garbage = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert!(!is_refusal(&garbage));
        assert!(
            describe(&garbage).contains("InvalidContentType"),
            "{}",
            describe(&garbage)
        );
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, unknown);
        assert_eq!(
            describe_io(&wrapped),
            "peer certificate not signed by the cluster CA"
        );
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "closed");
        assert!(describe_io(&eof).contains("[cluster.tls]"));
    }

    /// Settings build from rcgen files; a missing file is named.
    #[test]
    fn loads_and_names_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let files = NodeTlsConfig {
            cert_file: write("node.pem", &cert.pem()),
            key_file: write("node.key", &key.serialize_pem()),
            ca_file: write("ca.pem", &cert.pem()),
        };
        let tls = NodeTls::load(&files).expect("settings build");
        tls.reload().expect("reload");
        let missing = NodeTlsConfig {
            ca_file: dir.path().join("absent.pem"),
            ..files
        };
        let err = NodeTls::load(&missing)
            .err()
            .expect("a missing CA fails")
            .to_string();
        assert!(err.contains("absent.pem"), "{err}");
    }
}
