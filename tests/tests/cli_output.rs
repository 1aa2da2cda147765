//! Every human-facing `shoal` command, run against a live broker, prints
//! text for people: no Rust debug syntax (`TopicConfig { .. }`, `Some(..)`,
//! `Fsynced`), tables with units, and errors that say what to do next.
//! `--json` stays machine output.

use shoal_tests::{shoal_cli, BrokerProcess};

/// What `{:?}` of the wire types leaves in text: struct braces, options,
/// paths, and enum variants in their Rust spelling.
const DEBUG_SYNTAX: &[&str] = &[
    "{ ",
    " }",
    "Some(",
    "None",
    "::",
    "TopicConfig",
    "RetryPolicy",
    "FlushPolicy",
    "IntervalMs",
    "Always",
    "Never",
    "Fsynced",
    "Written",
    "Accepted",
    "Stable",
    "Empty",
    "Rebalancing",
    "Closed",
    "HalfOpen",
    "Open",
    "\\\"",
    "[\"",
    "Vec<",
];

fn assert_readable(what: &str, text: &str) {
    for pattern in DEBUG_SYNTAX {
        assert!(
            !text.contains(pattern),
            "{what} prints debug syntax {pattern:?}:\n{text}"
        );
    }
}

/// Runs `args`, which must succeed, and checks its stdout and stderr.
fn run(broker: &BrokerProcess, args: &[&str], stdin: &str) -> String {
    let (ok, stdout, stderr) = shoal_cli(broker, args, stdin);
    let what = format!("shoal {}", args.join(" "));
    assert!(ok, "{what} failed\nstdout: {stdout}\nstderr: {stderr}");
    assert!(!stdout.trim().is_empty(), "{what} printed nothing");
    assert_readable(&what, &stdout);
    assert_readable(&what, &stderr);
    stdout
}

/// Runs `args`, which must fail, and returns its stderr.
fn fail(broker: &BrokerProcess, args: &[&str]) -> String {
    let (ok, stdout, stderr) = shoal_cli(broker, args, "");
    let what = format!("shoal {}", args.join(" "));
    assert!(!ok, "{what} succeeded: {stdout}");
    assert_readable(&what, &stderr);
    stderr
}

#[test]
fn every_command_prints_readable_text() {
    let broker = BrokerProcess::start();
    let out = run(
        &broker,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--retention-ms",
            "86400000",
            "--retention-bytes",
            "1048576",
        ],
        "",
    );
    assert!(
        out.contains("3 partitions, retention 1 d or 1.0 MiB per partition"),
        "{out}"
    );
    run(
        &broker,
        &["topic", "create", "latest", "--compacted", "--flush", "50"],
        "",
    );
    run(
        &broker,
        &[
            "topic",
            "create",
            "invoices",
            "--partitions",
            "2",
            "--max-attempts",
            "2",
            "--backoff-base-ms",
            "20",
            "--backoff-max-ms",
            "50",
        ],
        "",
    );
    let out = run(
        &broker,
        &[
            "topic",
            "create",
            "invoices-x",
            "--backoff-base-ms",
            "20",
            "--backoff-max-ms",
            "50",
        ],
        "",
    );
    assert!(out.contains("created topic invoices-x"), "{out}");

    let list = run(&broker, &["topic", "list"], "");
    let header = list.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("TOPIC") && header.contains("PARTITIONS"),
        "{list}"
    );
    // Aligned: every row's partition count ends where the header's column does.
    let end = header.find("PARTITIONS").unwrap() + "PARTITIONS".len();
    for line in list.lines().skip(1) {
        assert!(
            line[..end].ends_with(|c: char| c.is_ascii_digit()),
            "not aligned:\n{list}"
        );
    }

    let produced = run(
        &broker,
        &["produce", "orders", "--key-sep", ":"],
        "alice:one\nbob:two\ncarol:three\n",
    );
    assert!(produced.contains("durability fsynced"), "{produced}");
    assert!(
        produced.contains("PARTITION") && produced.contains("OFFSETS"),
        "{produced}"
    );
    run(
        &broker,
        &["produce", "latest", "--key", "k", "--header", "trace=t1"],
        "v1\nv2\n",
    );
    run(
        &broker,
        &["produce", "invoices", "--key-sep", ":"],
        "a:1\nb:2\nc:3\n",
    );

    let described = run(&broker, &["topic", "describe", "orders"], "");
    for expected in [
        "topic orders",
        "retention",
        "1 d or 1.0 MiB per partition",
        "always (fsync before ack)",
        "HIGH WATERMARK",
        "SIZE",
    ] {
        assert!(described.contains(expected), "missing {expected:?}:\n{described}");
    }
    assert!(
        [" B", "KiB", "MiB", "GiB"].iter().any(|u| described.contains(u)),
        "sizes without units:\n{described}"
    );
    let compacted = run(&broker, &["topic", "describe", "latest"], "");
    assert!(
        compacted.contains("every 50 ms") && compacted.contains("compaction     on"),
        "{compacted}"
    );

    let consumed = run(
        &broker,
        &[
            "consume",
            "orders",
            "--from",
            "earliest",
            "--max",
            "3",
            "--timeout-ms",
            "1000",
        ],
        "",
    );
    assert_eq!(consumed.lines().count(), 3, "{consumed}");
    run(
        &broker,
        &[
            "consume",
            "orders",
            "--partition",
            "0",
            "--offset",
            "0",
            "--max",
            "1",
            "--timeout-ms",
            "500",
        ],
        "",
    );
    run(
        &broker,
        &[
            "consume",
            "invoices",
            "--group",
            "billing",
            "--nack-all",
            "--max",
            "6",
            "--timeout-ms",
            "3000",
        ],
        "",
    );

    run(&broker, &["group", "list"], "");
    let group = run(&broker, &["group", "describe", "billing"], "");
    for expected in [
        "group billing",
        "circuit",
        "retry budget",
        "LAG TIME",
        "QUARANTINE",
    ] {
        assert!(group.contains(expected), "missing {expected:?}:\n{group}");
    }
    run(
        &broker,
        &[
            "group", "seek", "billing", "--topic", "invoices", "--from", "latest",
        ],
        "",
    );

    let counts = run(&broker, &["dlq", "counts", "invoices"], "");
    assert!(
        counts.contains("3 entries in the quarantine of invoices"),
        "{counts}"
    );
    let browsed = run(
        &broker,
        &["dlq", "browse", "invoices", "--group", "billing", "--limit", "2"],
        "",
    );
    assert!(
        browsed.contains("LAST FAILURE") && browsed.contains("more entries: add --cursor"),
        "{browsed}"
    );
    run(
        &broker,
        &["dlq", "redrive", "invoices", "--group", "billing", "--dry-run"],
        "",
    );
    run(
        &broker,
        &[
            "dlq", "redrive", "invoices", "--group", "billing", "--rate", "0", "--max", "1",
        ],
        "",
    );
    run(
        &broker,
        &["dlq", "purge", "invoices", "--group", "billing", "--dry-run"],
        "",
    );
    run(&broker, &["dlq", "purge", "invoices", "--group", "billing"], "");
    let empty = run(&broker, &["dlq", "browse", "invoices"], "");
    assert!(empty.contains("no quarantined entries"), "{empty}");
    run(&broker, &["topic", "delete", "latest"], "");

    // --json stays one JSON document per command.
    for args in [
        &["topic", "describe", "orders", "--json"][..],
        &["group", "describe", "billing", "--json"][..],
        &["dlq", "counts", "invoices", "--json"][..],
    ] {
        let (ok, stdout, _) = shoal_cli(&broker, args, "");
        assert!(ok, "{args:?}");
        serde_json::from_str::<serde_json::Value>(&stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"));
    }
}

#[test]
fn errors_say_what_to_do_next() {
    let broker = BrokerProcess::start();
    run(&broker, &["topic", "create", "orders", "--partitions", "4"], "");
    let e = fail(&broker, &["topic", "describe", "nope"]);
    assert!(
        e.contains("does not exist") && e.contains("hint: list the topics with: shoal topic list"),
        "{e}"
    );
    let e = fail(
        &broker,
        &[
            "consume",
            "orders",
            "--partition",
            "9",
            "--offset",
            "0",
            "--max",
            "1",
        ],
    );
    assert!(e.contains("has 4 partitions (0-3); asked for partition 9"), "{e}");
    let e = fail(&broker, &["topic", "create", "orders"]);
    assert!(e.contains("already exists") && e.contains("hint:"), "{e}");
    let e = fail(&broker, &["group", "describe", "nobody"]);
    assert!(e.contains("hint: list the groups with: shoal group list"), "{e}");
    let e = fail(&broker, &["dlq", "redrive", "orders"]);
    assert!(e.contains("needs --group"), "{e}");
    // A broker that is not there: the hint names the address and the flag.
    let (ok, _, e) = {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        let addr = dead.local_addr().expect("addr").to_string();
        drop(dead);
        let out = std::process::Command::new(shoal_tests::bin_path("shoal"))
            .args(["--broker", &addr, "topic", "list"])
            .output()
            .expect("run shoal");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert!(!ok);
    assert!(e.contains("is shoald running") && e.contains("--broker"), "{e}");
    assert_readable("shoal topic list against no broker", &e);
}
