//! TLS on the native ports (shared and shard) and HTTP, with certificates
//! made at test time: the client, the CLI and curl work over TLS; a wrong
//! CA, an expired broker certificate and plaintext to a TLS port are
//! refused with a clear error; a client certificate authenticates (mTLS);
//! SIGHUP swaps the certificates for new connections while an open one
//! keeps working.

mod security_support;

use std::sync::Arc;

use shoal_protocol::batch::NewRecord;
use shoal_protocol::client::{Producer, ProducerConfig};
use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::topic::TopicConfig;

use security_support::*;

fn record(value: &str) -> NewRecord {
    NewRecord {
        value: Some(value.as_bytes().to_vec()),
        ..NewRecord::default()
    }
}

/// A client trusting only the CA in `ca` cannot connect: it refuses the
/// broker's certificate as issued by an unknown CA.
fn refused_as_unknown_issuer(broker: &shoal_tests::BrokerProcess, ca: &std::path::Path) {
    let err = connect(broker, Some(client_tls(ca, None)), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("UnknownIssuer") || err.contains("unknown issuer"),
        "{err}"
    );
}

fn topic(partitions: u32) -> TopicConfig {
    TopicConfig {
        partitions,
        ..TopicConfig::default()
    }
}

/// Produce and fetch over TLS through the shared and the shard ports
/// (the client is shard-aware, so partitions go to their shard's port).
#[test]
fn native_client_cli_and_curl_over_tls() {
    let pki = Pki::new();
    let broker = broker_with(&pki.tls_toml(""));
    let ca = pki.path("ca.pem");
    let client = Arc::new(connect(&broker, Some(client_tls(&ca, None)), None).expect("TLS connect"));
    client.create_topic("secure", topic(4)).unwrap();
    let producer = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
    let records: Vec<NewRecord> = (0..200).map(|i| record(&format!("r{i}"))).collect();
    let acks = producer.send_all("secure", records).unwrap();
    assert_eq!(acks.len(), 200);
    let mut read = 0;
    for p in 0..4 {
        read += client.fetch("secure", p, 0, 1 << 20, 0).unwrap().records.len();
    }
    assert_eq!(read, 200, "every record read back over TLS");

    // The CLI, with the CA by flag and by environment variable.
    let ca_str = ca.to_str().unwrap();
    let out = cli(&broker, &[], &["--tls-ca", ca_str, "topic", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("secure"), "{}", text(&out));
    let out = cli(
        &broker,
        &[("SHOAL_TLS_CA", ca_str)],
        &["topic", "describe", "secure"],
    );
    assert!(out.status.success(), "{}", text(&out));
    // And from a client config file.
    let file = pki.write("client.toml", &format!("tls_ca = {ca_str:?}\n"));
    let out = cli(
        &broker,
        &[],
        &["--client-config", file.to_str().unwrap(), "topic", "list"],
    );
    assert!(out.status.success(), "{}", text(&out));
    // `shoal cluster status` reads GET /cluster over HTTPS with the CA.
    let http = format!("127.0.0.1:{}", broker.http_port);
    let out = cli(
        &broker,
        &[],
        &["--tls-ca", ca_str, "cluster", "status", "--http", &http],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("not a cluster"), "{}", text(&out));
    let out = cli(&broker, &[], &["cluster", "status", "--http", &http]);
    assert!(
        !out.status.success(),
        "plain HTTP to the HTTPS port: {}",
        text(&out)
    );
    assert!(text(&out).contains("requires TLS"), "{}", text(&out));

    if have_curl() {
        let url = format!("https://127.0.0.1:{}/topics/secure", broker.http_port);
        let (status, body) = curl(&["--cacert", ca_str, &url]);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"secure\""), "{body}");
        // Plain HTTP to the HTTPS port is answered in plain text.
        let (status, body) = curl(&[&format!("http://127.0.0.1:{}/topics", broker.http_port)]);
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("requires TLS"), "{body}");
        // curl without the CA refuses the broker's certificate.
        let (status, body) = curl(&[&url]);
        assert_eq!(status, 0, "{body}");
        assert!(body.to_lowercase().contains("certificate"), "{body}");
    } else {
        eprintln!("curl not found: the curl checks are skipped");
    }
}

/// A wrong CA, an expired certificate and plaintext to a TLS port fail
/// with errors that say so; the broker keeps serving good clients.
#[test]
fn refusals_are_clear() {
    let pki = Pki::new();
    let broker = broker_with(&pki.tls_toml(""));
    let other = Ca::new("someone else's CA");
    let wrong = pki.write("wrong-ca.pem", &other.cert.pem());

    refused_as_unknown_issuer(&broker, &wrong);

    let err = connect(&broker, None, None).unwrap_err().to_string();
    assert!(err.contains("requires TLS"), "plaintext client: {err}");
    let out = cli(&broker, &[], &["topic", "list"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("requires TLS"), "{}", text(&out));

    // An expired broker certificate, on a broker of its own.
    let (cert, key) = pki.ca.leaf("broker", &["127.0.0.1"], false, true);
    pki.write("expired.pem", &cert);
    pki.write("expired.key", &key);
    let expired = broker_with(&format!(
        "[security.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        pki.path("expired.pem"),
        pki.path("expired.key")
    ));
    let err = connect(&expired, Some(client_tls(&pki.path("ca.pem"), None)), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Expired") || err.contains("expired"), "{err}");

    // A TLS client to a plaintext broker is told the port is not TLS.
    let plain = broker_with("");
    let err = connect(&plain, Some(client_tls(&pki.path("ca.pem"), None)), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("TLS"), "{err}");

    // The TLS broker still serves a good client after all that.
    let good = connect(&broker, Some(client_tls(&pki.path("ca.pem"), None)), None).unwrap();
    good.create_topic("after", topic(1)).unwrap();
}

/// A client certificate signed by the client CA authenticates as its CN:
/// without an ACL it is refused `authorization_failed`; with one it works.
/// A client without a certificate is refused when certificates are required.
#[test]
fn client_certificates_authenticate() {
    let pki = Pki::new();
    let (alice_cert, alice_key) = pki.client_cert("alice");
    let (admin_cert, admin_key) = pki.client_cert("admin");
    let ca = pki.path("ca.pem");
    let broker = broker_with(&format!(
        "[security]\nauthentication = true\nsuper_users = [\"admin\"]\n{}",
        pki.tls_toml(&format!("client_ca_file = {ca:?}\nrequire_client_cert = true"))
    ));
    let admin = connect(
        &broker,
        Some(client_tls(&ca, Some((&admin_cert, &admin_key)))),
        None,
    )
    .unwrap();
    admin.create_topic("orders", topic(1)).unwrap();
    let alice = Arc::new(
        connect(
            &broker,
            Some(client_tls(&ca, Some((&alice_cert, &alice_key)))),
            None,
        )
        .unwrap(),
    );
    let err = alice.fetch("orders", 0, 0, 1 << 10, 0).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AuthorizationFailed), "{err}");
    let out = cli(
        &broker,
        &[],
        &[
            "--tls-ca",
            ca.to_str().unwrap(),
            "--tls-cert",
            admin_cert.to_str().unwrap(),
            "--tls-key",
            admin_key.to_str().unwrap(),
            "acl",
            "add",
            "User:alice",
            "consume",
            "--topic",
            "orders",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    alice
        .fetch("orders", 0, 0, 1 << 10, 0)
        .expect("allowed once the ACL exists");

    let err = connect(&broker, Some(client_tls(&ca, None)), None)
        .unwrap_err()
        .to_string();
    assert!(!err.is_empty());
}

/// SIGHUP re-reads the certificate files: new connections get the new
/// certificate (from another CA), an open connection keeps working.
#[test]
fn sighup_reloads_certificates() {
    let pki = Pki::new();
    let broker = broker_with(&pki.tls_toml(""));
    let old_ca = pki.path("ca.pem");
    let open = connect(&broker, Some(client_tls(&old_ca, None)), None).unwrap();
    open.create_topic("before", topic(1)).unwrap();

    let next = Ca::new("next CA");
    let next_ca = pki.write("next-ca.pem", &next.cert.pem());
    let (cert, key) = next.leaf("broker", &["127.0.0.1"], false, false);
    pki.write("broker.pem", &cert);
    pki.write("broker.key", &key);
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    unsafe {
        libc::kill(broker.pid() as i32, libc::SIGHUP);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match connect(&broker, Some(client_tls(&next_ca, None)), None) {
            Ok(c) => {
                c.create_topic("after-reload", topic(1)).unwrap();
                break;
            }
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("the new certificate was not served after SIGHUP: {e}"),
        }
    }
    refused_as_unknown_issuer(&broker, &old_ca);
    // The connection opened before the reload still works.
    open.create_topic("still-open", topic(1)).unwrap();
    open.list_topics().unwrap();
}
