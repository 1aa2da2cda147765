//! The Kafka listener under `[security]`: librdkafka (the `rdkafka` crate)
//! over SASL_SSL with SCRAM-SHA-256 and with PLAIN produces and consumes
//! through the same credential store and ACLs as the native protocol; a
//! wrong password is refused (and audited); a principal without an ACL gets
//! TOPIC_AUTHORIZATION_FAILED until `shoal acl add`; and with
//! authentication on, a connection that sends a real request before
//! authenticating is closed. Certificates are made at test time (rcgen).

mod kafka_support;
mod security_support;

use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, MetadataRequest, RequestKind, ResponseKind};
use kafka_support::raw::RawKafka;
use kafka_support::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use shoal_tests::BrokerProcess;

use security_support::*;

const ADMIN_PASSWORD: &str = "admin-secret-1";
const ALICE_PASSWORD: &str = "alice-secret-2";
const BOB_PASSWORD: &str = "bob-secret-3";

/// A loopback broker with TLS on every listener, authentication on and
/// `admin` bootstrapped.
fn secured_broker(pki: &Pki) -> BrokerProcess {
    let pw = pki.write("admin.pw", &format!("{ADMIN_PASSWORD}\n"));
    broker_with(&format!(
        "[security]\nauthentication = true\nsuper_users = [\"admin\"]\nbootstrap_admin_password_file = {pw:?}\n\n{}",
        pki.tls_toml("")
    ))
}

/// `shoal` as admin over TLS; panics when it fails.
fn admin(broker: &BrokerProcess, pki: &Pki, args: &[&str], new_password: Option<&str>) {
    let ca = pki.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let mut env = vec![
        ("SHOAL_TLS_CA", ca),
        ("SHOAL_USER", "admin"),
        ("SHOAL_PASSWORD", ADMIN_PASSWORD),
    ];
    if let Some(p) = new_password {
        env.push(("SHOAL_NEW_PASSWORD", p));
    }
    let out = cli(broker, &env, args);
    assert!(out.status.success(), "shoal {args:?}: {}", text(&out));
}

/// librdkafka settings for SASL_SSL as `user` with `mechanism`.
fn sasl_ssl(broker: &BrokerProcess, pki: &Pki, mechanism: &str, user: &str, password: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", broker.kafka_bootstrap())
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanism", mechanism)
        .set("sasl.username", user)
        .set("sasl.password", password)
        .set("ssl.ca.location", pki.path("ca.pem").to_str().unwrap());
    c
}

/// Sends `values` and waits for each delivery report (bounded by librdkafka's
/// message timeout); returns the errors.
fn produce(producer: &BaseProducer<Deliveries>, topic: &str, values: &[String]) -> Vec<String> {
    for v in values {
        producer
            .send(BaseRecord::<(), _>::to(topic).payload(v))
            .map_err(|(e, _)| e)
            .expect("enqueue");
    }
    // flush's own timeout bounds the wait; errors are in the reports.
    let _ = producer.flush(Duration::from_secs(30));
    producer.context().errors.lock().unwrap().clone()
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

/// SCRAM-SHA-256 produces and PLAIN consumes in a group, both over TLS,
/// as a user with ACLs for the topic and the group; a wrong password is
/// refused and audited; the password is in no log.
#[test]
fn sasl_ssl_scram_and_plain_produce_and_consume() {
    let pki = Pki::new();
    let broker = secured_broker(&pki);
    admin(&broker, &pki, &["user", "create", "alice"], Some(ALICE_PASSWORD));
    admin(
        &broker,
        &pki,
        &["topic", "create", "secure-events", "--partitions", "2"],
        None,
    );
    admin(
        &broker,
        &pki,
        &["acl", "add", "User:alice", "produce", "--topic", "secure-events"],
        None,
    );
    admin(
        &broker,
        &pki,
        &["acl", "add", "User:alice", "consume", "--topic", "secure-events"],
        None,
    );
    admin(
        &broker,
        &pki,
        &["acl", "add", "User:alice", "consume", "--group", "secure-readers"],
        None,
    );

    let sent = values("scram", 200);
    let producer: BaseProducer<Deliveries> =
        sasl_ssl(&broker, &pki, "SCRAM-SHA-256", "alice", ALICE_PASSWORD)
            .set("message.timeout.ms", "30000")
            .create_with_context(Deliveries::default())
            .expect("producer");
    let errors = produce(&producer, "secure-events", &sent);
    assert!(errors.is_empty(), "SCRAM producer errors: {errors:?}");
    assert_eq!(producer.context().acked.lock().unwrap().len(), sent.len());

    let consumer: BaseConsumer = sasl_ssl(&broker, &pki, "PLAIN", "alice", ALICE_PASSWORD)
        .set("group.id", "secure-readers")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["secure-events"]).expect("subscribe");
    let got = consume_n(&consumer, sent.len(), Duration::from_secs(60));
    let mut got: Vec<String> = got
        .into_iter()
        .map(|c| String::from_utf8(c.value.unwrap_or_default()).unwrap())
        .collect();
    got.sort();
    assert_eq!(got, sent, "PLAIN consumer read back what SCRAM produced");

    // A wrong password gets no metadata (the broker closes after
    // SASL_AUTHENTICATION_FAILED), for either mechanism.
    for mechanism in ["SCRAM-SHA-256", "PLAIN"] {
        let wrong: BaseConsumer = sasl_ssl(&broker, &pki, mechanism, "alice", "not-the-password")
            .create()
            .expect("consumer");
        let result = wrong.fetch_metadata(None, Duration::from_secs(5));
        assert!(result.is_err(), "{mechanism} with a wrong password got metadata");
    }
    wait_for_failed_login(&broker, "alice", "SCRAM-SHA-256");
    let audit = wait_for_failed_login(&broker, "alice", "PLAIN");
    for secret in [ALICE_PASSWORD, "not-the-password", ADMIN_PASSWORD] {
        assert!(!audit.contains(secret), "a password reached the audit log");
    }
}

/// An authenticated principal without an ACL is refused produce with
/// TOPIC_AUTHORIZATION_FAILED; after `shoal acl add` the same produce works.
#[test]
fn produce_without_acl_is_topic_authorization_failed_until_acl_add() {
    let pki = Pki::new();
    let broker = secured_broker(&pki);
    admin(&broker, &pki, &["user", "create", "bob"], Some(BOB_PASSWORD));
    admin(&broker, &pki, &["topic", "create", "guarded"], None);

    let denied: BaseProducer<Deliveries> = sasl_ssl(&broker, &pki, "SCRAM-SHA-256", "bob", BOB_PASSWORD)
        .set("message.timeout.ms", "10000")
        .create_with_context(Deliveries::default())
        .expect("producer");
    let errors = produce(&denied, "guarded", &values("denied", 1));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].to_lowercase().contains("topic authorization failed"),
        "expected TOPIC_AUTHORIZATION_FAILED, got {errors:?}"
    );

    admin(
        &broker,
        &pki,
        &["acl", "add", "User:bob", "produce", "--topic", "guarded"],
        None,
    );
    let allowed: BaseProducer<Deliveries> = sasl_ssl(&broker, &pki, "SCRAM-SHA-256", "bob", BOB_PASSWORD)
        .set("message.timeout.ms", "30000")
        .create_with_context(Deliveries::default())
        .expect("producer");
    let errors = produce(&allowed, "guarded", &values("allowed", 10));
    assert!(errors.is_empty(), "produce after acl add: {errors:?}");
    assert_eq!(allowed.context().acked.lock().unwrap().len(), 10);
}

/// With authentication on (loopback, no TLS), ApiVersions is answered
/// before authenticating but Metadata closes the connection.
#[test]
fn request_before_authentication_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("admin.pw");
    std::fs::write(&pw, format!("{ADMIN_PASSWORD}\n")).unwrap();
    let broker = broker_with(&format!(
        "[security]\nauthentication = true\nsuper_users = [\"admin\"]\nbootstrap_admin_password_file = {pw:?}\n"
    ));
    let mut raw = RawKafka::connect(&broker.kafka_bootstrap());
    let versions = raw.call(
        ApiKey::ApiVersions,
        3,
        RequestKind::ApiVersions(ApiVersionsRequest::default()),
    );
    let ResponseKind::ApiVersions(v) = versions else {
        panic!("not an ApiVersions response")
    };
    assert_eq!(v.error_code, 0);
    let keys: Vec<i16> = v.api_keys.iter().map(|k| k.api_key).collect();
    assert!(keys.contains(&(ApiKey::SaslHandshake as i16)), "{keys:?}");
    assert!(keys.contains(&(ApiKey::SaslAuthenticate as i16)), "{keys:?}");
    raw.send(
        ApiKey::Metadata,
        9,
        &RequestKind::Metadata(MetadataRequest::default()),
    );
    assert!(raw.is_closed_by_peer(), "Metadata before SASL was served");
}

/// The audit log once it records a failed authentication of `user` over
/// SASL `mechanism` (failures are written as they happen; a bounded wait,
/// then the test fails).
fn wait_for_failed_login(broker: &BrokerProcess, user: &str, mechanism: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let how = format!("SASL/{mechanism}");
    loop {
        let audit = std::fs::read_to_string(broker.data_dir.join("audit.log")).unwrap_or_default();
        let found = audit
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|e| {
                e["action"] == "authenticate"
                    && e["outcome"] == "authentication_failed"
                    && e["resource"] == format!("user:{user}")
                    && e["detail"].as_str().is_some_and(|d| d.starts_with(&how))
            });
        if found {
            return audit;
        }
        assert!(
            Instant::now() < deadline,
            "no failed {how} login of {user} in the audit log: {audit}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
