//! The TLS material of a `--compare-tls` run, made at run time.
//!
//! [`BrokerTls::create`] writes into one directory (the run's output
//! directory, `tls/`):
//!
//! | file          | what                                                        |
//! |---------------|-------------------------------------------------------------|
//! | `ca.pem`      | a self-signed CA, made for this run only                    |
//! | `broker.pem`  | the broker's certificate for `127.0.0.1` and `localhost`    |
//! | `broker.key`  | its private key                                             |
//! | `broker.toml` | the `shoald --config` file: `[security.tls]` with the above |
//!
//! Keys are ECDSA P-256 (rcgen's default, and what the README's earlier
//! hand-made certificates used), so the figures compare with those. The
//! CA's key is never written: nothing else can be signed with it after the
//! run. The broker accepts TLS 1.3 only (`min_version = "1.3"`), so the
//! comparison always measures one protocol version. The bench's clients
//! trust `ca.pem` and check the broker's certificate against the address
//! they dial (`127.0.0.1`).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use shoal_protocol::tls::ClientTls;

use crate::error::BenchError;

/// The names the broker's certificate is valid for: the embedded broker
/// listens on loopback and the bench dials it by IP address.
pub const BROKER_NAMES: &[&str] = &["127.0.0.1", "localhost"];

/// The written PEM files and broker config of one run.
#[derive(Clone, Debug)]
pub struct BrokerTls {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The `shoald --config` file that turns TLS on for the native ports.
    pub config_file: PathBuf,
}

impl BrokerTls {
    /// Makes a CA and a broker certificate signed by it, and writes them
    /// with the broker's config file into `dir` (created if missing).
    pub fn create(dir: &Path) -> Result<BrokerTls, BenchError> {
        std::fs::create_dir_all(dir).map_err(|e| BenchError::io(format!("create {}", dir.display()), e))?;
        let cert_err = |e: rcgen::Error| BenchError::Certificates(e.to_string());

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "shoal-bench run CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_key = KeyPair::generate().map_err(cert_err)?;
        let ca = ca_params.self_signed(&ca_key).map_err(cert_err)?;

        let names: Vec<String> = BROKER_NAMES.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).map_err(cert_err)?;
        params.distinguished_name.push(DnType::CommonName, "shoald");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(cert_err)?;
        let cert = params.signed_by(&key, &ca, &ca_key).map_err(cert_err)?;

        let tls = BrokerTls {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("broker.pem"),
            key_file: dir.join("broker.key"),
            config_file: dir.join("broker.toml"),
        };
        write(&tls.ca_file, &ca.pem())?;
        write(&tls.cert_file, &cert.pem())?;
        write(&tls.key_file, &key.serialize_pem())?;
        write(&tls.config_file, &tls.config_toml())?;
        Ok(tls)
    }

    /// The broker's config: `[security.tls]` with the written files, TLS 1.3.
    pub fn config_toml(&self) -> String {
        let mut tls = toml::Table::new();
        let path = |p: &Path| toml::Value::String(p.display().to_string());
        tls.insert("cert_file".into(), path(&self.cert_file));
        tls.insert("key_file".into(), path(&self.key_file));
        tls.insert("min_version".into(), toml::Value::String("1.3".into()));
        let mut security = toml::Table::new();
        security.insert("tls".into(), toml::Value::Table(tls));
        let mut root = toml::Table::new();
        root.insert("security".into(), toml::Value::Table(security));
        root.to_string()
    }

    /// The `shoald` argument that loads [`BrokerTls::config_file`].
    pub fn broker_arg(&self) -> String {
        format!("--config={}", self.config_file.display())
    }

    /// The client side: trust the run's CA, no client certificate.
    pub fn client(&self) -> Result<ClientTls, BenchError> {
        ClientTls::load(&self.ca_file, None, None, None)
            .map_err(|e| BenchError::Certificates(format!("load {}: {e}", self.ca_file.display())))
    }
}

fn write(path: &Path, text: &str) -> Result<(), BenchError> {
    std::fs::write(path, text).map_err(|e| BenchError::io(format!("write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_config_shoald_reads_and_a_ca_the_client_loads() {
        // Proves the files exist, shoald's parser reads them as [security.tls], and the client trusts the CA.
        let dir = tempfile::tempdir().unwrap();
        let tls = BrokerTls::create(&dir.path().join("tls")).unwrap();
        for f in [&tls.ca_file, &tls.cert_file, &tls.key_file, &tls.config_file] {
            assert!(f.is_file(), "{} written", f.display());
        }
        let config = shoal_config::Config::from_file(&tls.config_file).expect("shoald accepts the config");
        let section = config.security.tls.expect("[security.tls]");
        assert_eq!(section.cert_file, tls.cert_file);
        assert_eq!(section.key_file, tls.key_file);
        assert_eq!(section.min_version, shoal_config::TlsVersion::Tls13);
        assert!(
            section.client_ca_file.is_none(),
            "no client certificates asked for"
        );
        let client = tls.client().unwrap();
        assert!(client.server_name("127.0.0.1").is_ok());
        assert!(tls.broker_arg().starts_with("--config="));
    }
}
