//! Helpers shared by the `security_*` and `cluster_tls` tests: a
//! throw-away PKI made with rcgen at test time (a CA, broker, client and
//! node certificates, an expired one, a second CA), brokers with `[security]` settings, and clients that
//! carry TLS settings and credentials.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use shoal_protocol::client::{Client, ClientConfig};
use shoal_protocol::error::ProtocolError;
use shoal_protocol::tls::{ClientTls, Credentials};
use shoal_tests::{bin_path, BrokerOptions, BrokerProcess};

/// A certificate authority that can sign leaves.
pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf for `names` (DNS names or IP addresses) with subject CN `cn`;
    /// `expired` dates it 2020-2021.
    pub fn leaf(&self, cn: &str, names: &[&str], client: bool, expired: bool) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

impl Ca {
    /// A node certificate for the node links' mutual TLS: `names` (the
    /// host the peers dial it by), usable as server and as client.
    pub fn node(&self, cn: &str, names: &[&str]) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// PEM files in a directory: `ca.pem`, `broker.pem`/`broker.key`, and
/// whatever else a test writes with [`Pki::write`].
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
}

impl Pki {
    /// A CA and a broker certificate for 127.0.0.1 and localhost.
    pub fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca: Ca::new("shoal test CA"),
        };
        pki.write("ca.pem", &pki.ca.cert.pem());
        let (cert, key) = pki.ca.leaf("broker", &["127.0.0.1", "localhost"], false, false);
        pki.write("broker.pem", &cert);
        pki.write("broker.key", &key);
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A client certificate for mTLS as `<name>.pem` / `<name>.key`.
    pub fn client_cert(&self, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = self.ca.leaf(name, &[], true, false);
        (
            self.write(&format!("{name}.pem"), &cert),
            self.write(&format!("{name}.key"), &key),
        )
    }

    /// The `[security.tls]` section for the broker's certificate.
    pub fn tls_toml(&self, extra: &str) -> String {
        format!(
            "[security.tls]\ncert_file = {:?}\nkey_file = {:?}\n{extra}\n",
            self.path("broker.pem"),
            self.path("broker.key")
        )
    }
}

/// A broker with `toml` appended to its config (a `[security]` section).
pub fn broker_with(toml: &str) -> BrokerProcess {
    BrokerProcess::start_with(BrokerOptions {
        config_toml: toml.to_string(),
        ..BrokerOptions::default()
    })
}

/// Client TLS settings trusting `ca`.
pub fn client_tls(ca: &Path, cert: Option<(&Path, &Path)>) -> ClientTls {
    ClientTls::load(ca, cert.map(|c| c.0), cert.map(|c| c.1), None).unwrap()
}

/// A client of `broker` with these TLS settings and credentials.
pub fn connect(
    broker: &BrokerProcess,
    tls: Option<ClientTls>,
    credentials: Option<(&str, &str)>,
) -> Result<Client, ProtocolError> {
    let mut config = ClientConfig::default();
    config.connection.security.tls = tls;
    config.connection.security.credentials = credentials.map(|(user, password)| Credentials {
        user: user.into(),
        password: password.into(),
    });
    config.retries_max = 0;
    Client::with_config(&broker.addr_string(), config)
}

/// Runs the `shoal` CLI against `broker` with `env` set.
pub fn cli(broker: &BrokerProcess, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(bin_path("shoal"));
    cmd.arg("--broker").arg(broker.addr_string()).args(args);
    for var in [
        "SHOAL_TLS_CA",
        "SHOAL_USER",
        "SHOAL_PASSWORD",
        "SHOAL_CLIENT_CONFIG",
        "SHOAL_NEW_PASSWORD",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run shoal")
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Whether `curl` is on the PATH (the curl checks need it).
pub fn have_curl() -> bool {
    Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `curl -s` with `args`; returns (HTTP status, body). Status 0: curl failed
/// before an HTTP answer (its error text is the body).
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-S", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", "0"));
    let code: u16 = code.trim().parse().unwrap_or(0);
    if code == 0 {
        return (0, String::from_utf8_lossy(&out.stderr).to_string());
    }
    (code, body.to_string())
}
