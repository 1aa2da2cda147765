//! `shoal-bench --cluster 3` end to end (issue 14): the harness runs the
//! workload on a single embedded node, then starts a local cluster of three
//! `shoald` nodes, creates the topic with replication factor 3 through one
//! node (the metadata log takes it to the others) and
//! produces with `acks = quorum`. Both runs' records are all consumed, the
//! cluster run's acknowledgements say `Replicated`, and the comparison
//! names the two runs' figures with their ratio. A short target-rate run:
//! the figures themselves are measured with `--preset max-rate` (README).

use shoal_tests::{assert_bench_delivered, bench_report, run_shoal_bench_to};

/// `preset` at 2,000 records/s, once on a single node and once on three
/// (`--cluster 3`), no baselines, a short warm-up, with `more` flags;
/// returns the harness's stdout.
fn run_on_three_nodes(out_dir: &std::path::Path, preset: &str, more: &[&str]) -> String {
    let mut args = vec![
        "--preset",
        preset,
        "--cluster",
        "3",
        "--no-baselines",
        "--rate-per-s",
        "2000",
        "--warmup-s",
        "0.5",
    ];
    args.extend_from_slice(more);
    run_shoal_bench_to(out_dir, &args)
}

#[test]
fn cluster_run_reports_replicated_figures_next_to_a_single_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().join("report");
    let stdout = run_on_three_nodes(&out_dir, "quick", &["--duration-s", "2", "--drain-s", "20"]);

    let single = bench_report(&out_dir, "single-node");
    let cluster = bench_report(&out_dir, "cluster-3");
    assert_eq!(single["durability"]["replication_factor"], 1);
    assert_eq!(single["durability"]["acks"], "leader");
    assert_eq!(cluster["durability"]["replication_factor"], 3);
    assert_eq!(cluster["durability"]["acks"], "quorum");
    assert_eq!(cluster["broker"]["mode"], "cluster-3");
    assert_eq!(
        cluster["broker"]["address"].as_str().unwrap().split(',').count(),
        3,
        "three nodes: {}",
        cluster["broker"]
    );
    for report in [&single, &cluster] {
        assert_bench_delivered(report);
    }
    let durability = &cluster["measured"]["ack_durability"];
    assert!(
        durability["Replicated"].as_u64().unwrap_or(0) > 0,
        "the cluster's acks say replicated: {durability}"
    );
    assert!(
        durability.as_object().unwrap().keys().all(|k| k == "Replicated"),
        "every cluster ack is replicated: {durability}"
    );

    let comparison = std::fs::read_to_string(out_dir.join("comparison.txt")).expect("comparison.txt");
    assert!(comparison.contains("replication factor 3"), "{comparison}");
    assert!(comparison.contains("produce->ack p99"), "{comparison}");
    assert!(stdout.contains(&comparison), "the comparison is printed");
}

/// `--preset restart --cluster 3` (issue 15): in the cluster run the
/// harness kills the node leading the most partitions and starts it again;
/// the report gives the unavailability window (the longest wait for an ack
/// after the kill), nothing acknowledged is lost, and the comparison puts
/// the cluster's window next to the single node's restart.
#[test]
fn restart_preset_on_a_cluster_kills_the_busiest_leader_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().join("report");
    let stdout = run_on_three_nodes(
        &out_dir,
        "restart",
        &["--duration-s", "6", "--restart-at-s", "2", "--drain-s", "30"],
    );

    let cluster = bench_report(&out_dir, "cluster-3");
    assert_eq!(cluster["durability"]["acks"], "quorum");
    let measured = &cluster["measured"];
    let restart = &measured["restart"];
    assert!(
        restart.is_object(),
        "the cluster run restarted a node: {measured}"
    );
    let longest_wait = restart["longest_wait_ns"].as_u64().expect("longest wait");
    assert!(longest_wait > 0, "{restart}");
    assert!(
        restart["unavailable_ns"].as_u64().is_some(),
        "acks came after the kill: {restart}"
    );
    assert_bench_delivered(&cluster);
    assert!(
        stdout.contains("longest wait for an ack after the kill"),
        "{stdout}"
    );
    let comparison = std::fs::read_to_string(out_dir.join("comparison.txt")).expect("comparison.txt");
    assert!(
        comparison.contains("restart: longest wait for an ack"),
        "{comparison}"
    );
}
