//! Authentication and authorization end to end on a broker with
//! `security.authentication = true`: SCRAM-SHA-256 through the client and
//! the CLI, bearer tokens through curl, wrong passwords and tokens refused
//! and rate-limited; a user without an ACL gets `authorization_failed`
//! (HTTP 403) for produce, consume, seek, redrive and purge, and succeeds
//! once the ACL is added; admin actions and failures reach the audit log;
//! credentials survive a restart and are not stored in clear.

mod security_support;

use std::sync::Arc;

use serde_json::Value;
use shoal_protocol::batch::NewRecord;
use shoal_protocol::client::{Client, GroupConsumer, GroupConsumerConfig, Producer, ProducerConfig};
use shoal_protocol::error::{ErrorCode, ProtocolError};
use shoal_protocol::messages::delivery::SeekTarget;
use shoal_protocol::messages::dlq::{QuarantineFilter, QuarantinePurgeRequest, QuarantineRedriveRequest};
use shoal_protocol::messages::topic::TopicConfig;
use shoal_tests::BrokerProcess;

use security_support::*;

const ADMIN_PASSWORD: &str = "admin-secret-1";
const ALICE_PASSWORD: &str = "alice-secret-2";

/// A loopback broker with authentication on and `admin` bootstrapped.
fn secured_broker(dir: &tempfile::TempDir) -> BrokerProcess {
    let pw = dir.path().join("admin.pw");
    std::fs::write(&pw, format!("{ADMIN_PASSWORD}\n")).unwrap();
    broker_with(&format!(
        "[security]\nauthentication = true\nsuper_users = [\"admin\"]\nbootstrap_admin_password_file = {pw:?}\n\
         auth_failures_per_window_max = 5\n"
    ))
}

fn denied<T: std::fmt::Debug>(what: &str, result: Result<T, ProtocolError>) {
    match result {
        Err(e) => assert_eq!(e.code(), Some(ErrorCode::AuthorizationFailed), "{what}: {e}"),
        Ok(v) => panic!("{what} was allowed without an ACL: {v:?}"),
    }
}

fn admin_cli(broker: &BrokerProcess, args: &[&str]) -> String {
    let out = cli(
        broker,
        &[("SHOAL_USER", "admin"), ("SHOAL_PASSWORD", ADMIN_PASSWORD)],
        args,
    );
    assert!(out.status.success(), "shoal {args:?}: {}", text(&out));
    text(&out)
}

/// The admin creates the user alice (password [`ALICE_PASSWORD`]).
fn create_alice(broker: &BrokerProcess) {
    let out = cli(
        broker,
        &[
            ("SHOAL_USER", "admin"),
            ("SHOAL_PASSWORD", ADMIN_PASSWORD),
            ("SHOAL_NEW_PASSWORD", ALICE_PASSWORD),
        ],
        &["user", "create", "alice"],
    );
    assert!(out.status.success(), "{}", text(&out));
}

fn grant(broker: &BrokerProcess, args: &[&str]) {
    let mut all = vec!["acl", "add", "User:alice"];
    all.extend_from_slice(args);
    admin_cli(broker, &all);
}

fn record(value: &str) -> NewRecord {
    NewRecord {
        value: Some(value.as_bytes().to_vec()),
        ..NewRecord::default()
    }
}

/// SCRAM through the client and the CLI; every guarded action refused
/// without its ACL and allowed with it; the audit log records it all.
#[test]
fn scram_and_acls_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let broker = secured_broker(&dir);

    // Unauthenticated and wrong-password clients are refused.
    let anon = connect(&broker, None, None).unwrap();
    let err = anon.list_topics().unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AuthenticationFailed), "{err}");
    let err = connect(&broker, None, Some(("admin", "wrong"))).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AuthenticationFailed), "{err}");
    let out = cli(
        &broker,
        &[("SHOAL_USER", "admin"), ("SHOAL_PASSWORD", "nope")],
        &["topic", "list"],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("authentication"), "{}", text(&out));

    // The admin (a super user) creates a topic and the user alice.
    admin_cli(&broker, &["topic", "create", "orders", "--partitions", "2"]);
    create_alice(&broker);
    assert!(admin_cli(&broker, &["user", "list"]).contains("alice"));
    let err = connect(&broker, None, Some(("alice", "not-her-password"))).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AuthenticationFailed), "{err}");

    let alice = Arc::new(connect(&broker, None, Some(("alice", ALICE_PASSWORD))).expect("alice logs in"));
    // Without ACLs alice sees no topics and may do nothing.
    assert!(
        alice.list_topics().unwrap().is_empty(),
        "a topic she may not describe is hidden"
    );
    let producer = Producer::new(alice.clone(), ProducerConfig::default()).unwrap();
    denied("produce", producer.send_all("orders", vec![record("a")]));
    grant(&broker, &["produce", "--topic", "orders"]);
    producer
        .send_all("orders", vec![record("a"), record("b")])
        .expect("produce with the ACL");

    denied("consume (fetch)", alice.fetch("orders", 0, 0, 1 << 20, 0));
    let group_config = GroupConsumerConfig::new("billing", &["orders"]);
    denied(
        "consume (group join)",
        GroupConsumer::join(alice.clone(), group_config.clone()).map(|_| ()),
    );
    grant(&broker, &["consume", "--topic", "orders"]);
    alice
        .fetch("orders", 0, 0, 1 << 20, 0)
        .expect("fetch with the ACL");
    denied(
        "consume (group join)",
        GroupConsumer::join(alice.clone(), group_config.clone()).map(|_| ()),
    );
    grant(&broker, &["consume", "--group", "bill", "--prefix"]);
    let consumer = GroupConsumer::join(alice.clone(), group_config).expect("join with the ACLs");
    consumer.close().unwrap();

    denied(
        "seek",
        alice.seek_group("billing", "orders", vec![], SeekTarget::Earliest),
    );
    let redrive = QuarantineRedriveRequest {
        topic: "orders".into(),
        group: "billing".into(),
        filter: QuarantineFilter {
            group: Some("billing".into()),
            ..QuarantineFilter::default()
        },
        rate_per_sec: 0,
        dry_run: true,
        max_entries: 0,
        cursor: None,
        timeout_ms: 5_000,
    };
    denied("redrive", alice.dlq_redrive(&redrive));
    let purge = QuarantinePurgeRequest {
        topic: "orders".into(),
        filter: QuarantineFilter {
            group: Some("billing".into()),
            ..QuarantineFilter::default()
        },
        dry_run: true,
    };
    denied("purge", alice.dlq_purge(&purge));
    grant(&broker, &["alter", "--group", "billing"]);
    alice
        .seek_group("billing", "orders", vec![], SeekTarget::Earliest)
        .expect("seek with the ACL");
    alice.dlq_redrive(&redrive).expect("redrive with the ACL");
    alice.dlq_purge(&purge).expect("purge with the ACL");

    // Admin-only operations stay refused; removing an ACL takes effect.
    denied("create topic", alice.create_topic("mine", TopicConfig::default()));
    denied("list users", alice.list_users());
    admin_cli(
        &broker,
        &["acl", "remove", "User:alice", "produce", "--topic", "orders"],
    );
    denied(
        "produce after the ACL was removed",
        producer.send_all("orders", vec![record("c")]),
    );
    let acls = admin_cli(&broker, &["acl", "list"]);
    assert!(acls.contains("User:alice consume group:bill (prefix)"), "{acls}");

    // The CLI as alice: an ACL error says what to do.
    let out = cli(
        &broker,
        &[("SHOAL_USER", "alice"), ("SHOAL_PASSWORD", ALICE_PASSWORD)],
        &["topic", "delete", "orders"],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("shoal acl add"), "{}", text(&out));

    // The audit log: admin actions with principal, source and outcome,
    // refusals and failed logins included; no secret anywhere.
    let audit = std::fs::read_to_string(broker.data_dir.join("audit.log")).unwrap();
    let events: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let has = |action: &str, principal: &str, outcome: &str| {
        events
            .iter()
            .any(|e| e["action"] == action && e["principal"] == principal && e["outcome"] == outcome)
    };
    assert!(has("topic.create", "User:admin", "ok"), "{audit}");
    assert!(has("user.create", "User:admin", "ok"), "{audit}");
    assert!(has("acl.add", "User:admin", "ok"), "{audit}");
    assert!(has("acl.remove", "User:admin", "ok"), "{audit}");
    assert!(has("group.seek", "User:alice", "denied"), "{audit}");
    assert!(has("group.seek", "User:alice", "ok"), "{audit}");
    assert!(has("quarantine.redrive", "User:alice", "ok"), "{audit}");
    assert!(has("quarantine.purge", "User:alice", "denied"), "{audit}");
    assert!(has("topic.delete", "User:alice", "denied"), "{audit}");
    assert!(
        has("authenticate", "ANONYMOUS", "authentication_failed"),
        "{audit}"
    );
    assert!(events.iter().all(|e| e["source"] == "127.0.0.1"), "{audit}");
    for secret in [ADMIN_PASSWORD, ALICE_PASSWORD, "not-her-password"] {
        assert!(!audit.contains(secret), "a password reached the audit log");
    }
}

/// Bearer tokens on HTTP (curl): missing or wrong is 401, no ACL is 403,
/// with the ACL 200; a revoked token stops working. Only the token's hash
/// is stored.
#[test]
fn bearer_tokens_over_http() {
    if !have_curl() {
        eprintln!("curl not found: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = secured_broker(&dir);
    admin_cli(&broker, &["topic", "create", "events", "--partitions", "1"]);
    create_alice(&broker);
    let created: Value =
        serde_json::from_str(admin_cli(&broker, &["--json", "token", "create", "alice"]).trim()).unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    let base = format!("http://127.0.0.1:{}", broker.http_port);
    let auth = format!("Authorization: Bearer {token}");
    let publish = |auth: &str| {
        curl(&[
            "-X",
            "POST",
            "-H",
            auth,
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"records":[{"value":"hello"}]}"#,
            &format!("{base}/topics/events/messages"),
        ])
    };

    let (status, body) = curl(&[&format!("{base}/topics")]);
    assert_eq!(status, 401, "no token: {body}");
    assert!(body.contains("authentication_failed"), "{body}");
    let (status, body) = curl(&[
        "-H",
        "Authorization: Bearer shoal_wrong",
        &format!("{base}/topics"),
    ]);
    assert_eq!(status, 401, "wrong token: {body}");
    let (status, body) = curl(&[&format!("{base}/healthz")]);
    assert_eq!(status, 200, "probes need no token: {body}");
    // `shoal cluster status` sends the token (any authenticated caller
    // may read GET /cluster); without one it reports the 401.
    let http = format!("127.0.0.1:{}", broker.http_port);
    let out = cli(
        &broker,
        &[],
        &["cluster", "status", "--http", &http, "--token", &token],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("not a cluster"), "{}", text(&out));
    let out = cli(&broker, &[], &["cluster", "status", "--http", &http]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("401"), "{}", text(&out));

    let (status, body) = publish(&auth);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("authorization_failed"), "{body}");
    grant(&broker, &["produce", "--topic", "events"]);
    let (status, body) = publish(&auth);
    assert_eq!(status, 200, "{body}");
    let (status, body) = curl(&[
        "-H",
        &auth,
        &format!("{base}/topics/events/poll?partition=0&offset=0"),
    ]);
    assert_eq!(status, 403, "poll without consume: {body}");
    grant(&broker, &["consume", "--topic", "events"]);
    let (status, body) = curl(&[
        "-H",
        &auth,
        &format!("{base}/topics/events/poll?partition=0&offset=0"),
    ]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello"), "{body}");
    let (status, body) = curl(&["-X", "DELETE", "-H", &auth, &format!("{base}/topics/events")]);
    assert_eq!(status, 403, "{body}");

    let stored = std::fs::read(broker.data_dir.join("security.meta")).unwrap();
    assert!(
        !stored.windows(token.len()).any(|w| w == token.as_bytes()),
        "the token is stored in clear"
    );
    assert!(!stored
        .windows(ALICE_PASSWORD.len())
        .any(|w| w == ALICE_PASSWORD.as_bytes()));
    assert!(admin_cli(&broker, &["token", "list"]).contains(&id));
    admin_cli(&broker, &["token", "revoke", &id]);
    let (status, body) = publish(&auth);
    assert_eq!(status, 401, "revoked token: {body}");
}

/// Failed attempts are limited per source address: after the limit even
/// the right password is refused until the window passes.
#[test]
fn failed_attempts_are_rate_limited_and_users_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = secured_broker(&dir);
    for _ in 0..5 {
        let err = connect(&broker, None, Some(("admin", "guess"))).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::AuthenticationFailed), "{err}");
    }
    let err = connect(&broker, None, Some(("admin", ADMIN_PASSWORD))).unwrap_err();
    assert!(err.to_string().contains("too many failed attempts"), "{err}");
    let failures = std::fs::read_to_string(broker.data_dir.join("audit.log"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("authentication_failed"))
        .count();
    assert!(failures >= 5, "every failure is audited ({failures})");

    // A restart clears the in-memory limiter; the users are durable.
    broker.terminate();
    broker.restart();
    let admin: Client = connect(&broker, None, Some(("admin", ADMIN_PASSWORD))).expect("admin after restart");
    admin.list_topics().unwrap();
}
