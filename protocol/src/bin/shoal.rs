//! `shoal`: the operator's command-line tool, built on the thin client.
//!
//! Every command takes `--broker HOST:PORT` (default `127.0.0.1:9400`, or
//! `SHOAL_BROKER`) and `--json` for machine-readable output: one JSON
//! document per command (JSON lines for `consume`). Errors go to stderr
//! (or, with `--json`, to stdout as `{"error": {...}}` with the stable code
//! name and number) and the exit status is 1.
//!
//! Text output is for people: aligned tables with units (sizes in KiB/MiB,
//! durations in ms/s/min, times in RFC 3339), enum values by their stable
//! snake-case names, never Rust debug syntax (`tests/tests/cli_output.rs`
//! greps every command's output for it). Error messages add what to do
//! next where there is something to do. `--json` output is the wire types
//! as they serialise and does not change with the text layout.
//!
//! ```text
//! shoal topic create orders --partitions 8 --max-attempts 5
//! shoal topic list | describe orders | delete orders
//! printf 'k1:hello\nk2:world\n' | shoal produce orders --key-sep :
//! shoal consume orders --group billing --max 10
//! shoal consume orders --partition 0 --from 2026-11-26T12:00:00Z
//! shoal group list | describe billing
//! shoal group seek billing --topic orders --from earliest
//! shoal dlq browse orders --group billing
//! shoal dlq redrive orders --group billing --rate 50 --dry-run
//! shoal dlq purge orders --group billing
//! shoal user create alice | token create alice | acl add User:alice produce --topic orders
//! ```
//!
//! A secured broker: `--tls-ca` (TLS), `--tls-cert`/`--tls-key` (mTLS) and
//! `--user` with `SHOAL_PASSWORD` (SCRAM-SHA-256), or the same from
//! `SHOAL_*` variables or a `--client-config` file (`shoal_protocol::tls`).
#![forbid(unsafe_code)]

#[path = "../cli/security.rs"]
mod security;

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};
use shoal_protocol::batch::{Compression, NewRecord, RecordHeader};
use shoal_protocol::client::{
    Client, ClientConfig, ConsumedRecord, GroupConsumer, GroupConsumerConfig, PartitionConsumer, Producer,
    ProducerConfig,
};
use shoal_protocol::error::ErrorCode;
use shoal_protocol::messages::delivery::SeekTarget;
use shoal_protocol::messages::dlq::*;
use shoal_protocol::messages::offsets::OffsetSpec;
use shoal_protocol::messages::produce::Acks;
use shoal_protocol::messages::topic::{FlushPolicy, RetryPolicy, TopicConfig};
use shoal_protocol::tls::SecurityArgs;
use shoal_protocol::ProtocolError;

#[derive(Parser)]
#[command(
    name = "shoal",
    version,
    about = "Operate a Shoal broker: topics, produce, consume, groups, quarantine"
)]
struct Cli {
    /// Broker address (the shared native-protocol port).
    #[arg(long, global = true, env = "SHOAL_BROKER", default_value = "127.0.0.1:9400")]
    broker: String,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// TLS and credentials.
    #[command(flatten)]
    security: SecurityArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(TopicCmd),
    /// Produce one record per line of stdin.
    Produce(ProduceArgs),
    /// Consume records, as a group member or from a partition.
    Consume(ConsumeArgs),
    /// Inspect consumer groups and move their positions.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Browse, redrive and purge a topic's dead-letter quarantine.
    #[command(subcommand)]
    Dlq(DlqCmd),
    /// Users and their passwords (SCRAM-SHA-256).
    #[command(subcommand)]
    User(security::UserCmd),
    /// HTTP bearer tokens.
    #[command(subcommand)]
    Token(security::TokenCmd),
    /// Who may do what: ACL entries.
    #[command(subcommand)]
    Acl(security::AclCmd),
    /// The cluster's nodes and their liveness.
    #[command(subcommand)]
    Cluster(ClusterCmd),
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Nodes, their node-link addresses, link states and liveness.
    Status {
        /// The broker's HTTP address (`GET /cluster` is read there; HTTPS with --tls-ca).
        #[arg(long, env = "SHOAL_HTTP", default_value = "127.0.0.1:9480")]
        http: String,
        /// A bearer token for an HTTP port with authentication on (`shoal token create`).
        #[arg(long, env = "SHOAL_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Hands the leaderships the node at --http holds back to their
    /// preferred replicas (those alive and caught up). Every node also does
    /// this by itself every 5 s, a few at a time.
    RebalanceLeaders {
        /// The broker's HTTP address.
        #[arg(long, env = "SHOAL_HTTP", default_value = "127.0.0.1:9480")]
        http: String,
        /// A bearer token for an HTTP port with authentication on.
        #[arg(long, env = "SHOAL_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Only list what would move.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum TopicCmd {
    Create(CreateArgs),
    List,
    Describe { name: String },
    Delete { name: String },
}

#[derive(Args)]
struct CreateArgs {
    name: String,
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Delete segments older than this (default: keep by time forever).
    #[arg(long)]
    retention_ms: Option<u64>,
    /// Keep each partition under this size (default: no limit).
    #[arg(long)]
    retention_bytes: Option<u64>,
    /// Keep only the latest record per key.
    #[arg(long)]
    compacted: bool,
    #[arg(long, default_value_t = 86_400_000)]
    tombstone_retention_ms: u64,
    /// `always`, `never`, or an interval in milliseconds.
    #[arg(long, default_value = "always")]
    flush: String,
    /// Window for message_id dedup; 0 disables it.
    #[arg(long, default_value_t = 300_000)]
    dedup_window_ms: u64,
    #[arg(long, default_value_t = RetryPolicy::default().max_attempts)]
    max_attempts: u32,
    #[arg(long, default_value_t = RetryPolicy::default().backoff_base_ms)]
    backoff_base_ms: u32,
    #[arg(long, default_value_t = RetryPolicy::default().backoff_max_ms)]
    backoff_max_ms: u32,
    /// Drop records that exhaust their attempts instead of quarantining them.
    #[arg(long)]
    no_dead_letter: bool,
    /// Later records of a key wait while an earlier one waits for a retry.
    #[arg(long)]
    ordered_retry: bool,
    /// Replicas per partition (a cluster of at least this many nodes).
    #[arg(long, default_value_t = 1)]
    replication_factor: u32,
}

#[derive(Clone, Copy, ValueEnum)]
enum AcksArg {
    None,
    Leader,
    Quorum,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressionArg {
    None,
    Lz4,
    Zstd,
}

#[derive(Args)]
struct ProduceArgs {
    topic: String,
    /// The key of every record.
    #[arg(long, conflicts_with = "key_sep")]
    key: Option<String>,
    /// Split each line at the first SEP into key and value.
    #[arg(long)]
    key_sep: Option<String>,
    /// A header `k=v` on every record (repeatable).
    #[arg(long = "header", value_name = "K=V")]
    headers: Vec<String>,
    #[arg(long, value_enum, default_value = "leader")]
    acks: AcksArg,
    #[arg(long, value_enum, default_value = "none")]
    compression: CompressionArg,
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
}

#[derive(Args)]
struct ConsumeArgs {
    topic: String,
    /// Consume as a member of this group (acks what it prints).
    #[arg(long, conflicts_with_all = ["partition", "offset", "from"])]
    group: Option<String>,
    /// Read this partition directly (default: every partition).
    #[arg(long)]
    partition: Option<u32>,
    /// Start at this offset (with --partition).
    #[arg(long, requires = "partition", conflicts_with = "from")]
    offset: Option<u64>,
    /// Start at `earliest`, `latest` or an RFC 3339 time.
    #[arg(long)]
    from: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    max: Option<u64>,
    /// Stop when no record arrives for this long.
    #[arg(long, default_value_t = 2_000)]
    timeout_ms: u64,
    /// Nack every record instead of acking (exercises retries; group only).
    #[arg(long, requires = "group")]
    nack_all: bool,
    /// Reason sent with --nack-all.
    #[arg(long, default_value = "nacked by shoal consume --nack-all")]
    reason: String,
}

#[derive(Subcommand)]
enum GroupCmd {
    List,
    /// Members, per-partition committed offset, lag in records and seconds.
    Describe {
        group: String,
    },
    /// Move the group's committed position (replay).
    Seek(SeekArgs),
}

#[derive(Args)]
struct SeekArgs {
    group: String,
    #[arg(long)]
    topic: String,
    /// Partitions to move (repeatable; default all).
    #[arg(long = "partition")]
    partitions: Vec<u32>,
    #[arg(long, conflicts_with = "from", required_unless_present = "from")]
    offset: Option<u64>,
    /// `earliest`, `latest` or an RFC 3339 time.
    #[arg(long)]
    from: Option<String>,
}

#[derive(Subcommand)]
enum DlqCmd {
    /// List entries without consuming them.
    Browse(DlqBrowseArgs),
    /// Entry counts grouped by group and reason.
    Counts(DlqFilterArgs),
    /// Hand entries back to the group that failed them.
    Redrive(DlqRedriveArgs),
    /// Delete entries.
    Purge(DlqPurgeArgs),
}

#[derive(Args)]
struct DlqFilterArgs {
    topic: String,
    #[arg(long)]
    group: Option<String>,
    #[arg(long)]
    partition: Option<u32>,
    #[arg(long)]
    reason_contains: Option<String>,
    /// Only this entry id (repeatable).
    #[arg(long = "entry")]
    entries: Vec<u64>,
}

#[derive(Args)]
struct DlqBrowseArgs {
    #[command(flatten)]
    filter: DlqFilterArgs,
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Continue after this entry id.
    #[arg(long)]
    cursor: Option<u64>,
}

#[derive(Args)]
struct DlqRedriveArgs {
    #[command(flatten)]
    filter: DlqFilterArgs,
    /// Entries per second (0 = unpaced).
    #[arg(long, default_value_t = 100)]
    rate: u32,
    #[arg(long)]
    dry_run: bool,
    /// Stop after this many entries (0 = all).
    #[arg(long, default_value_t = 0)]
    max: u32,
}

#[derive(Args)]
struct DlqPurgeArgs {
    #[command(flatten)]
    filter: DlqFilterArgs,
    #[arg(long)]
    dry_run: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let broker = cli.broker.clone();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report_error(&e, json, &broker);
            ExitCode::FAILURE
        }
    }
}

fn report_error(e: &ProtocolError, json: bool, broker: &str) {
    if json {
        let code = e.code();
        let doc = json!({"error": {
            "code": code.map(|c| c.name()),
            "number": code.map(|c| c.to_wire()),
            "retryable": e.is_retryable(),
            "message": e.to_string(),
        }});
        println!("{doc}");
    } else {
        eprintln!("error: {e}");
        if let Some(hint) = text::hint(e, broker) {
            eprintln!("hint: {hint}");
        }
    }
}

#[path = "shoal/cluster.rs"]
mod cluster;

fn run(cli: Cli) -> Result<(), ProtocolError> {
    let out = Output { json: cli.json };
    // The cluster status is read over HTTP (see `cluster`): no native connection.
    let command = match cli.command {
        Command::Cluster(ClusterCmd::Status { http, token }) => {
            let security = cli.security.resolve()?;
            let doc = cluster::fetch_status(&http, security.tls.as_ref(), token.as_deref())
                .map_err(|e| ProtocolError::Io(Arc::new(std::io::Error::other(e))))?;
            out.emit(doc.clone(), || cluster::render(&doc));
            return Ok(());
        }
        Command::Cluster(ClusterCmd::RebalanceLeaders { http, token, dry_run }) => {
            let security = cli.security.resolve()?;
            let doc = cluster::rebalance_leaders(&http, dry_run, security.tls.as_ref(), token.as_deref())
                .map_err(|e| ProtocolError::Io(Arc::new(std::io::Error::other(e))))?;
            out.emit(doc.clone(), || cluster::render_moves(&doc));
            return Ok(());
        }
        other => other,
    };
    let mut config = ClientConfig::default();
    config.connection.security = cli.security.resolve()?;
    let client = Arc::new(Client::with_config(&cli.broker, config)?);
    match command {
        Command::Topic(cmd) => topic(&client, cmd, &out),
        Command::Produce(args) => produce(client, args, &out),
        Command::Consume(args) => consume(client, args, &out),
        Command::Group(cmd) => group(&client, cmd, &out),
        Command::Dlq(cmd) => dlq(&client, cmd, &out),
        Command::User(cmd) => security::user(&client, cmd, &out),
        Command::Token(cmd) => security::token(&client, cmd, &out),
        Command::Acl(cmd) => security::acl(&client, cmd, &out),
        Command::Cluster(_) => Ok(()),
    }
}

/// Prints either the JSON document or the text lines.
struct Output {
    json: bool,
}

impl Output {
    fn emit(&self, doc: Value, text: impl FnOnce() -> String) {
        let mut stdout = std::io::stdout().lock();
        let line = if self.json { doc.to_string() } else { text() };
        let _ = writeln!(stdout, "{line}");
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn topic(client: &Client, cmd: TopicCmd, out: &Output) -> Result<(), ProtocolError> {
    match cmd {
        TopicCmd::Create(args) => {
            let name = args.name.clone();
            let config = topic_config(args)?;
            client.create_topic(&name, config.clone())?;
            out.emit(json!({"created": name, "config": to_json(&config)}), || {
                format!(
                    "created topic {name}: {} partitions, retention {}, flush {}",
                    config.partitions,
                    text::retention(&config),
                    text::flush(config.flush)
                )
            });
        }
        TopicCmd::List => {
            let topics = client.list_topics()?;
            out.emit(to_json(&topics), || {
                if topics.is_empty() {
                    return "no topics (create one with: shoal topic create NAME --partitions N)".into();
                }
                let mut table = text::Table::new(&["TOPIC", "PARTITIONS>", "CLEANUP"]);
                for t in &topics {
                    let cleanup = if t.compacted { "compact" } else { "delete" };
                    table.row([t.name.clone(), t.partitions.to_string(), cleanup.into()]);
                }
                table.render()
            });
        }
        TopicCmd::Describe { name } => {
            let d = client.describe_topic(&name)?;
            out.emit(to_json(&d), || text::describe_topic(&d));
        }
        TopicCmd::Delete { name } => {
            client.delete_topic(&name)?;
            out.emit(json!({"deleted": name}), || format!("deleted topic {name}"));
        }
    }
    Ok(())
}

fn topic_config(args: CreateArgs) -> Result<TopicConfig, ProtocolError> {
    let flush = match args.flush.as_str() {
        "always" => FlushPolicy::Always,
        "never" => FlushPolicy::Never,
        ms => FlushPolicy::IntervalMs(ms.parse().map_err(|_| {
            ProtocolError::InvalidArgument(format!("--flush must be always, never or milliseconds, not {ms}"))
        })?),
    };
    Ok(TopicConfig {
        partitions: args.partitions,
        retention_ms: args.retention_ms,
        retention_bytes: args.retention_bytes,
        compacted: args.compacted,
        tombstone_retention_ms: args.tombstone_retention_ms,
        flush,
        dedup_window_ms: args.dedup_window_ms,
        retry: RetryPolicy {
            max_attempts: args.max_attempts,
            backoff_base_ms: args.backoff_base_ms,
            backoff_max_ms: args.backoff_max_ms,
            dead_letter: !args.no_dead_letter,
            ordered_retry: args.ordered_retry,
        },
        replication_factor: args.replication_factor,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn produce(client: Arc<Client>, args: ProduceArgs, out: &Output) -> Result<(), ProtocolError> {
    let headers = args
        .headers
        .iter()
        .map(|h| match h.split_once('=') {
            Some((k, v)) => Ok(RecordHeader {
                key: k.to_string(),
                value: v.as_bytes().to_vec(),
            }),
            None => Err(ProtocolError::InvalidArgument(format!("--header {h} is not k=v"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config = ProducerConfig {
        acks: match args.acks {
            AcksArg::None => Acks::None,
            AcksArg::Leader => Acks::Leader,
            AcksArg::Quorum => Acks::Quorum,
        },
        compression: match args.compression {
            CompressionArg::None => Compression::None,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        },
        linger_ms: args.linger_ms,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client, config)?;
    let mut handles = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let (key, value) = split_line(&line, &args);
        let record = NewRecord {
            timestamp_ms: now_ms(),
            key,
            value: Some(value),
            headers: headers.clone(),
            message_id: None,
        };
        handles.push(producer.send(&args.topic, record)?);
    }
    producer.flush();
    let acks = handles
        .into_iter()
        .map(|h| h.wait())
        .collect::<Result<Vec<_>, _>>()?;
    producer.close();
    let doc = json!({"topic": args.topic, "produced": acks.len(), "acks": to_json(&acks)});
    out.emit(doc, || text::produced(&args.topic, &acks));
    Ok(())
}

fn split_line(line: &str, args: &ProduceArgs) -> (Option<Vec<u8>>, Vec<u8>) {
    if let Some(sep) = &args.key_sep {
        if let Some((k, v)) = line.split_once(sep.as_str()) {
            return (Some(k.as_bytes().to_vec()), v.as_bytes().to_vec());
        }
    }
    (
        args.key.as_ref().map(|k| k.as_bytes().to_vec()),
        line.as_bytes().to_vec(),
    )
}

/// `earliest`, `latest` or an RFC 3339 time as an offset lookup.
fn parse_from(from: &str) -> Result<OffsetSpec, ProtocolError> {
    match from {
        "earliest" => Ok(OffsetSpec::Earliest),
        "latest" => Ok(OffsetSpec::Latest),
        time => {
            let at = humantime::parse_rfc3339_weak(time).map_err(|e| {
                ProtocolError::InvalidArgument(format!(
                    "--from must be earliest, latest or an RFC 3339 time ({time}: {e})"
                ))
            })?;
            let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            Ok(OffsetSpec::Timestamp(ms))
        }
    }
}

fn print_record(out: &Output, r: &ConsumedRecord) {
    let utf8 = |b: &Option<Vec<u8>>| b.as_ref().map(|v| String::from_utf8_lossy(v).into_owned());
    let headers: serde_json::Map<String, Value> = r
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(String::from_utf8_lossy(v).into_owned())))
        .collect();
    let doc = json!({
        "topic": r.topic, "partition": r.partition, "offset": r.offset,
        "timestamp_ms": r.timestamp_ms, "key": utf8(&r.key), "value": utf8(&r.value),
        "headers": headers, "message_id": r.message_id, "delivery_count": r.delivery_count,
    });
    out.emit(doc, || {
        let key = utf8(&r.key).unwrap_or_else(|| "-".into());
        let value = utf8(&r.value).unwrap_or_else(|| "<tombstone>".into());
        let redelivery = if r.delivery_count > 1 {
            format!("  (delivery {})", r.delivery_count)
        } else {
            String::new()
        };
        format!(
            "{}/{} offset {}  key {key}  value {value}{redelivery}",
            r.topic, r.partition, r.offset
        )
    });
}

fn consume(client: Arc<Client>, args: ConsumeArgs, out: &Output) -> Result<(), ProtocolError> {
    match args.group.clone() {
        Some(group) => consume_group(client, &group, &args, out),
        None => consume_partitions(client, &args, out),
    }
}

fn consume_group(
    client: Arc<Client>,
    group: &str,
    args: &ConsumeArgs,
    out: &Output,
) -> Result<(), ProtocolError> {
    let mut config = GroupConsumerConfig::new(group, &[args.topic.as_str()]);
    config.max_wait_ms = args.timeout_ms.min(500) as u32;
    if let Some(max) = args.max {
        config.max_records = max.clamp(1, 500) as u32;
    }
    let consumer = GroupConsumer::join(client, config)?;
    let (mut seen, mut last_record) = (0u64, Instant::now());
    while args.max.is_none_or(|m| seen < m) && last_record.elapsed() < Duration::from_millis(args.timeout_ms)
    {
        let mut records = consumer.poll()?;
        if let Some(max) = args.max {
            // Records past --max are not printed and not acked: the broker
            // redelivers them after their lease.
            records.truncate((max - seen) as usize);
        }
        if records.is_empty() {
            continue;
        }
        last_record = Instant::now();
        records.iter().for_each(|r| print_record(out, r));
        seen += records.len() as u64;
        if args.nack_all {
            consumer.nack(&records, &args.reason, None, false)?;
        } else {
            consumer.ack(&records)?;
        }
    }
    consumer.close()
}

fn consume_partitions(client: Arc<Client>, args: &ConsumeArgs, out: &Output) -> Result<(), ProtocolError> {
    let count = client.partition_count(&args.topic)?;
    let partitions = match args.partition {
        // Checked here so the message names the valid range, not only the count.
        Some(p) if p >= count => {
            return Err(ProtocolError::InvalidArgument(format!(
                "topic {} has {count} partitions (0-{}); asked for partition {p}",
                args.topic,
                count.saturating_sub(1)
            )))
        }
        Some(p) => vec![p],
        None => (0..count).collect(),
    };
    let spec = args
        .from
        .as_deref()
        .map(parse_from)
        .transpose()?
        .unwrap_or(OffsetSpec::Earliest);
    let mut consumers = Vec::new();
    for p in partitions {
        let mut c = match args.offset {
            Some(offset) => PartitionConsumer::at_offset(Arc::clone(&client), &args.topic, p, offset),
            None => PartitionConsumer::new(Arc::clone(&client), &args.topic, p, spec)?,
        };
        c.max_wait_ms = (args.timeout_ms / consumers.len().max(1) as u64).min(200) as u32;
        consumers.push(c);
    }
    let (mut seen, mut last_record) = (0u64, Instant::now());
    while last_record.elapsed() < Duration::from_millis(args.timeout_ms) {
        for c in &mut consumers {
            for r in c.poll()? {
                if args.max.is_some_and(|m| seen >= m) {
                    return Ok(());
                }
                print_record(out, &r);
                seen += 1;
                last_record = Instant::now();
            }
        }
        if args.max.is_some_and(|m| seen >= m) {
            return Ok(());
        }
    }
    Ok(())
}

fn group(client: &Client, cmd: GroupCmd, out: &Output) -> Result<(), ProtocolError> {
    match cmd {
        GroupCmd::List => {
            let groups = client.list_groups()?;
            out.emit(to_json(&groups), || {
                if groups.is_empty() {
                    return "no consumer groups (a group appears when a consumer joins it)".into();
                }
                let mut table = text::Table::new(&["GROUP", "STATE", "GENERATION>", "MEMBERS>", "TOPICS"]);
                for g in &groups {
                    table.row([
                        g.group.clone(),
                        text::group_state(g.state).into(),
                        g.generation.to_string(),
                        g.members.to_string(),
                        g.topics.join(", "),
                    ]);
                }
                table.render()
            });
        }
        GroupCmd::Describe { group } => describe_group(client, &group, out)?,
        GroupCmd::Seek(args) => {
            let target = match (args.offset, args.from.as_deref()) {
                (Some(o), _) => SeekTarget::Offset(o),
                (None, Some(from)) => match parse_from(from)? {
                    OffsetSpec::Earliest => SeekTarget::Earliest,
                    OffsetSpec::Latest => SeekTarget::Latest,
                    OffsetSpec::Timestamp(ms) => SeekTarget::Timestamp(ms),
                },
                (None, None) => return Err(ProtocolError::InvalidArgument("give --offset or --from".into())),
            };
            let reply = client.seek_group(&args.group, &args.topic, args.partitions, target)?;
            out.emit(to_json(&reply), || {
                let mut table = text::Table::new(&["PARTITION>", "COMMITTED OFFSET>", "RESULT"]);
                for p in &reply.partitions {
                    let result = ErrorCode::from_wire(p.error);
                    let result = if result.is_ok() { "moved" } else { result.name() };
                    table.row([p.partition.to_string(), p.offset.to_string(), result.into()]);
                }
                format!(
                    "group {} on topic {}:\n{}",
                    args.group,
                    args.topic,
                    table.render()
                )
            });
        }
    }
    Ok(())
}

fn describe_group(client: &Client, group: &str, out: &Output) -> Result<(), ProtocolError> {
    let s = client.group_stats(group)?;
    out.emit(to_json(&s), || text::describe_group(&s));
    Ok(())
}

fn filter(args: &DlqFilterArgs) -> QuarantineFilter {
    QuarantineFilter {
        group: args.group.clone(),
        partition: args.partition,
        reason_contains: args.reason_contains.clone(),
        entry_ids: args.entries.clone(),
    }
}

fn dlq(client: &Client, cmd: DlqCmd, out: &Output) -> Result<(), ProtocolError> {
    match cmd {
        DlqCmd::Browse(args) => dlq_browse(client, args, out),
        DlqCmd::Counts(args) => {
            let reply = client.dlq_counts(&QuarantineCountsRequest {
                topic: args.topic.clone(),
                filter: filter(&args),
            })?;
            out.emit(to_json(&reply), || {
                let mut text = format!("{} entries in the quarantine of {}", reply.total, args.topic);
                if !reply.counts.is_empty() {
                    let mut table = text::Table::new(&["ENTRIES>", "GROUP", "REASON"]);
                    for c in &reply.counts {
                        table.row([c.count.to_string(), c.group.clone(), c.reason.clone()]);
                    }
                    text = format!("{text}\n{}", table.render());
                }
                text
            });
            Ok(())
        }
        DlqCmd::Redrive(args) => dlq_redrive(client, args, out),
        DlqCmd::Purge(args) => {
            let reply = client.dlq_purge(&QuarantinePurgeRequest {
                topic: args.filter.topic.clone(),
                filter: filter(&args.filter),
                dry_run: args.dry_run,
            })?;
            out.emit(to_json(&reply), || {
                let verb = if args.dry_run { "would purge" } else { "purged" };
                format!("{verb} {} entries from {}", reply.purged, args.filter.topic)
            });
            Ok(())
        }
    }
}

fn dlq_browse(client: &Client, args: DlqBrowseArgs, out: &Output) -> Result<(), ProtocolError> {
    let reply = client.dlq_browse(&QuarantineBrowseRequest {
        topic: args.filter.topic.clone(),
        filter: filter(&args.filter),
        limit: args.limit,
        cursor: args.cursor,
    })?;
    let utf8 = |b: &Option<Vec<u8>>| b.as_ref().map(|v| String::from_utf8_lossy(v).into_owned());
    let entries: Vec<Value> = reply
        .entries
        .iter()
        .map(|e| {
            let mut doc = to_json(e);
            doc["key"] = json!(utf8(&e.key));
            doc["value"] = json!(utf8(&e.value));
            doc
        })
        .collect();
    out.emit(
        json!({"entries": entries, "next_cursor": reply.next_cursor}),
        || text::browse(&args.filter.topic, &reply),
    );
    Ok(())
}

/// Redrives until every matching entry is handled, resuming with the
/// broker's cursor after each paced chunk.
fn dlq_redrive(client: &Client, args: DlqRedriveArgs, out: &Output) -> Result<(), ProtocolError> {
    let Some(group) = args.filter.group.clone() else {
        return Err(ProtocolError::InvalidArgument(
            "dlq redrive needs --group: entries go back to the group that failed them".into(),
        ));
    };
    let (mut matched, mut redriven, mut skipped) = (0u64, 0u64, 0u64);
    let mut cursor = None;
    loop {
        let left = if args.max == 0 {
            0
        } else {
            args.max.saturating_sub(redriven as u32)
        };
        let reply = client.dlq_redrive(&QuarantineRedriveRequest {
            topic: args.filter.topic.clone(),
            group: group.clone(),
            filter: filter(&args.filter),
            rate_per_sec: args.rate,
            dry_run: args.dry_run,
            max_entries: left,
            cursor,
            timeout_ms: 10_000,
        })?;
        matched += reply.matched;
        redriven += reply.redriven;
        skipped += reply.skipped_loop_guard;
        cursor = reply.next_cursor;
        let capped = args.max != 0 && redriven >= u64::from(args.max);
        // A chunk that looked at nothing means the broker has nothing more.
        if cursor.is_none() || capped || reply.matched == 0 {
            break;
        }
    }
    let doc = json!({"topic": args.filter.topic, "group": group, "dry_run": args.dry_run,
        "matched": matched, "redriven": redriven, "skipped_loop_guard": skipped});
    out.emit(doc, || {
        let verb = if args.dry_run { "would redrive" } else { "redrove" };
        let count = if args.dry_run { matched } else { redriven };
        format!(
            "{verb} {count} entries of {} to group {group} ({skipped} refused by the loop guard)",
            args.filter.topic
        )
    });
    Ok(())
}

/// Text output for people: tables, units and names (never `{:?}`).
mod text {
    use std::time::{Duration, UNIX_EPOCH};

    use shoal_protocol::client::RecordAck;
    use shoal_protocol::error::ErrorCode;
    use shoal_protocol::messages::dlq::QuarantineBrowseResponse;
    use shoal_protocol::messages::group::GroupState;
    use shoal_protocol::messages::produce::Durability;
    use shoal_protocol::messages::stats::{CircuitState, GroupStatsResponse};
    use shoal_protocol::messages::topic::{DescribeTopicResponse, FlushPolicy, TopicConfig};
    use shoal_protocol::ProtocolError;

    /// Longest key, value or reason a table cell shows before cutting it.
    const CELL_CHARS_MAX: usize = 48;

    /// An aligned table: columns are padded to their widest cell; a header
    /// ending in `>` is right-aligned (numbers), the `>` is not printed.
    pub struct Table {
        headers: Vec<(String, bool)>,
        rows: Vec<Vec<String>>,
    }

    impl Table {
        pub fn new(headers: &[&str]) -> Table {
            let headers = headers
                .iter()
                .map(|h| match h.strip_suffix('>') {
                    Some(h) => (h.to_string(), true),
                    None => (h.to_string(), false),
                })
                .collect();
            Table {
                headers,
                rows: Vec::new(),
            }
        }

        pub fn row<const N: usize>(&mut self, cells: [String; N]) {
            debug_assert_eq!(N, self.headers.len(), "a row has one cell per column");
            self.rows.push(cells.into());
        }

        pub fn render(&self) -> String {
            let width = |i: usize| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([self.headers[i].0.chars().count()])
                    .max()
                    .unwrap_or(0)
            };
            let widths: Vec<usize> = (0..self.headers.len()).map(width).collect();
            let line = |cells: Vec<&str>| {
                let mut out = String::new();
                for (i, cell) in cells.iter().enumerate() {
                    let (w, right) = (widths[i], self.headers[i].1);
                    let last = i + 1 == cells.len();
                    let cell = match (right, last) {
                        (true, _) => format!("{cell:>w$}"),
                        (false, true) => cell.to_string(),
                        (false, false) => format!("{cell:<w$}"),
                    };
                    out.push_str(&cell);
                    if !last {
                        out.push_str("  ");
                    }
                }
                out.trim_end().to_string()
            };
            let mut lines = vec![line(self.headers.iter().map(|h| h.0.as_str()).collect())];
            lines.extend(
                self.rows
                    .iter()
                    .map(|r| line(r.iter().map(String::as_str).collect())),
            );
            lines.join("\n")
        }
    }

    /// Bytes in binary units: `512 B`, `4.0 KiB`, `1.5 GiB`.
    pub fn bytes(n: u64) -> String {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut value = n as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            format!("{n} B")
        } else {
            format!("{value:.1} {}", UNITS[unit])
        }
    }

    /// A duration in the largest unit that keeps it readable: `250 ms`,
    /// `1.5 s`, `5 min`, `7 d`.
    pub fn duration_ms(ms: u64) -> String {
        const UNITS: [(u64, &str); 4] = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "min"), (1_000, "s")];
        for (size, unit) in UNITS {
            if ms >= size {
                let value = ms as f64 / size as f64;
                return if ms % size == 0 {
                    format!("{} {unit}", ms / size)
                } else {
                    format!("{value:.1} {unit}")
                };
            }
        }
        format!("{ms} ms")
    }

    /// Milliseconds since the Unix epoch as RFC 3339 (UTC, whole seconds).
    pub fn time_ms(ms: i64) -> String {
        if ms <= 0 {
            return "-".into();
        }
        let at = UNIX_EPOCH + Duration::from_millis(ms as u64);
        humantime::format_rfc3339_seconds(at).to_string()
    }

    /// Cuts a cell to [`CELL_CHARS_MAX`] characters, on one line.
    pub fn cut(s: &str) -> String {
        let one_line = s.replace(['\n', '\r', '\t'], " ");
        if one_line.chars().count() <= CELL_CHARS_MAX {
            return one_line;
        }
        let kept: String = one_line.chars().take(CELL_CHARS_MAX - 1).collect();
        format!("{kept}…")
    }

    pub fn durability(d: Durability) -> &'static str {
        match d {
            Durability::Accepted => "accepted (not yet stored)",
            Durability::Memory => "in memory",
            Durability::Written => "written, not yet fsynced",
            Durability::Fsynced => "fsynced",
            Durability::Replicated => "replicated",
        }
    }

    pub fn group_state(s: GroupState) -> &'static str {
        match s {
            GroupState::Empty => "empty",
            GroupState::Rebalancing => "rebalancing",
            GroupState::Stable => "stable",
        }
    }

    pub fn circuit(c: CircuitState) -> &'static str {
        match c {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open (deliveries paused)",
            CircuitState::HalfOpen => "half-open (probing)",
        }
    }

    pub fn flush(f: FlushPolicy) -> String {
        match f {
            FlushPolicy::Always => "always (fsync before ack)".into(),
            FlushPolicy::IntervalMs(ms) => format!("every {}", duration_ms(u64::from(ms))),
            FlushPolicy::Never => "never (ack from memory)".into(),
        }
    }

    pub fn retention(c: &TopicConfig) -> String {
        match (c.retention_ms, c.retention_bytes) {
            (None, None) => "forever".into(),
            (Some(ms), None) => duration_ms(ms),
            (None, Some(b)) => format!("{} per partition", bytes(b)),
            (Some(ms), Some(b)) => format!("{} or {} per partition", duration_ms(ms), bytes(b)),
        }
    }

    /// `topic describe`: the configuration as labelled lines, then the
    /// partitions as a table.
    pub fn describe_topic(d: &DescribeTopicResponse) -> String {
        let c = &d.config;
        let r = &c.retry;
        let on_off = |b: bool| if b { "on" } else { "off" };
        let compaction = if c.compacted {
            format!("on (tombstones kept {})", duration_ms(c.tombstone_retention_ms))
        } else {
            "off".into()
        };
        let dedup = if c.dedup_window_ms == 0 {
            "off".into()
        } else {
            duration_ms(c.dedup_window_ms)
        };
        let fields = [
            ("partitions", c.partitions.to_string()),
            ("retention", retention(c)),
            ("compaction", compaction),
            ("flush", flush(c.flush)),
            ("dedup window", dedup),
            ("max attempts", r.max_attempts.to_string()),
            (
                "retry backoff",
                format!(
                    "{} doubling to {}",
                    duration_ms(u64::from(r.backoff_base_ms)),
                    duration_ms(u64::from(r.backoff_max_ms))
                ),
            ),
            (
                "dead letters",
                if r.dead_letter { "quarantined" } else { "dropped" }.into(),
            ),
            ("ordered retry", on_off(r.ordered_retry).into()),
            ("replication", c.replication_factor.to_string()),
        ];
        let mut out = format!("topic {}\n", d.name);
        for (label, value) in fields {
            out += &format!("  {label:<14} {value}\n");
        }
        let mut table = Table::new(&[
            "PARTITION>",
            "SHARD>",
            "LOG START>",
            "HIGH WATERMARK>",
            "LOG END>",
            "SIZE>",
            "STATE",
        ]);
        for p in &d.partitions {
            let code = ErrorCode::from_wire(p.error);
            let state = if code.is_ok() { "ok" } else { code.name() };
            table.row([
                p.partition.to_string(),
                p.shard.to_string(),
                p.log_start.to_string(),
                p.high_watermark.to_string(),
                p.log_end.to_string(),
                bytes(p.size_bytes),
                state.into(),
            ]);
        }
        out + "\n" + &table.render()
    }

    /// `produce`: a summary line, then per partition the records and the
    /// offsets they got.
    pub fn produced(topic: &str, acks: &[RecordAck]) -> String {
        let Some(first) = acks.first() else {
            return format!("produced 0 records to {topic} (stdin was empty)");
        };
        let mut out = format!(
            "produced {} records to {topic}, durability {}",
            acks.len(),
            durability(first.durability)
        );
        let mut partitions: Vec<u32> = acks.iter().map(|a| a.partition).collect();
        partitions.sort_unstable();
        partitions.dedup();
        let mut table = Table::new(&["PARTITION>", "RECORDS>", "OFFSETS", "DUPLICATES>"]);
        for p in partitions {
            let mine: Vec<&RecordAck> = acks.iter().filter(|a| a.partition == p).collect();
            let offsets: Vec<u64> = mine.iter().filter_map(|a| a.offset).collect();
            let range = match (offsets.iter().min(), offsets.iter().max()) {
                (Some(lo), Some(hi)) if lo == hi => lo.to_string(),
                (Some(lo), Some(hi)) => format!("{lo}-{hi}"),
                _ => "not yet assigned (acks none)".into(),
            };
            let dups = mine.iter().filter(|a| a.duplicate_of.is_some()).count();
            table.row([p.to_string(), mine.len().to_string(), range, dups.to_string()]);
        }
        out += "\n";
        out + &table.render()
    }

    /// `group describe`: the group's state, then members and partitions.
    pub fn describe_group(s: &GroupStatsResponse) -> String {
        let budget = format!(
            "{:.1}% of deliveries used, {:.0}% allowed",
            f64::from(s.retry_budget_used_permille) / 10.0,
            f64::from(s.retry_budget_permille) / 10.0
        );
        let fields = [
            ("state", group_state(s.state).to_string()),
            ("generation", s.generation.to_string()),
            ("members", s.members.len().to_string()),
            ("circuit", circuit(s.circuit).to_string()),
            ("retry budget", budget),
            (
                "totals",
                format!(
                    "{} delivered, {} acked, {} nacked, {} retried, {} quarantined",
                    s.deliveries_total, s.acks_total, s.nacks_total, s.retries_total, s.quarantined_total
                ),
            ),
        ];
        let mut out = format!("group {}\n", s.group);
        for (label, value) in fields {
            out += &format!("  {label:<13} {value}\n");
        }
        if !s.members.is_empty() {
            let mut members = Table::new(&["MEMBER", "NAME", "LAST HEARTBEAT>", "ASSIGNMENT"]);
            for m in &s.members {
                let assignment: Vec<String> = m
                    .assignment
                    .iter()
                    .map(|a| {
                        let ps: Vec<String> = a.partitions.iter().map(u32::to_string).collect();
                        format!("{} {}", a.topic, ps.join(","))
                    })
                    .collect();
                members.row([
                    m.member_id.clone(),
                    m.member_name.clone(),
                    format!("{} ago", duration_ms(m.last_heartbeat_age_ms)),
                    assignment.join("; "),
                ]);
            }
            out += &format!("\n{}\n", members.render());
        }
        let mut table = Table::new(&[
            "TOPIC",
            "PARTITION>",
            "COMMITTED>",
            "LOG END>",
            "LAG>",
            "LAG TIME>",
            "IN FLIGHT>",
            "RETRY>",
            "QUARANTINE>",
        ]);
        for p in &s.partitions {
            table.row([
                p.topic.clone(),
                p.partition.to_string(),
                p.committed_offset.to_string(),
                p.log_end.to_string(),
                p.lag_records.to_string(),
                duration_ms(p.lag_ms),
                p.in_flight.to_string(),
                p.retry_backlog.to_string(),
                p.quarantine_depth.to_string(),
            ]);
        }
        out + "\n" + &table.render()
    }

    /// `dlq browse`: one row per entry, and how to get the next page.
    pub fn browse(topic: &str, reply: &QuarantineBrowseResponse) -> String {
        if reply.entries.is_empty() {
            return format!("no quarantined entries of {topic} match");
        }
        let utf8 = |b: &Option<Vec<u8>>| match b {
            Some(v) => cut(&String::from_utf8_lossy(v)),
            None => "-".into(),
        };
        let mut table = Table::new(&[
            "ENTRY>",
            "PARTITION>",
            "OFFSET>",
            "GROUP",
            "ATTEMPTS>",
            "LAST FAILURE",
            "KEY",
            "VALUE",
            "REASON",
        ]);
        for e in &reply.entries {
            table.row([
                e.entry_id.to_string(),
                e.partition.to_string(),
                e.offset.to_string(),
                e.group.clone(),
                e.attempts.to_string(),
                time_ms(e.last_failure_at_ms),
                utf8(&e.key),
                utf8(&e.value),
                cut(&e.reason),
            ]);
        }
        let mut out = table.render();
        if let Some(cursor) = reply.next_cursor {
            out += &format!("\nmore entries: add --cursor {cursor}");
        }
        out
    }

    /// What to do next after an error, where there is something to do.
    pub fn hint(e: &ProtocolError, broker: &str) -> Option<String> {
        if let ProtocolError::Io(_) | ProtocolError::Closed(_) = e {
            return Some(format!(
                "is shoald running and listening on {broker}? Point the CLI elsewhere with --broker HOST:PORT or SHOAL_BROKER"
            ));
        }
        let hint = match e.code()? {
            ErrorCode::UnknownTopic => "list the topics with: shoal topic list",
            ErrorCode::UnknownGroup => "list the groups with: shoal group list",
            ErrorCode::TopicExists => "inspect it with shoal topic describe NAME, or delete it first",
            ErrorCode::UnknownPartition => "shoal topic describe NAME shows the topic's partitions",
            ErrorCode::PartitionFenced => {
                "the partition is read-only after a storage error: shoal topic describe NAME shows it; fix the device, then restart the broker (README, runbook: a fenced partition)"
            }
            ErrorCode::CircuitOpen => {
                "the group's handlers keep failing: fix the consumer; shoal group describe GROUP shows the breaker"
            }
            ErrorCode::Throttled => "the connection is over its byte-rate quota: retry after the throttle time",
            ErrorCode::ShuttingDown => "the broker is stopping: retry once it is back",
            ErrorCode::PartitionRecovering => "the broker is still recovering the partition: retry shortly",
            ErrorCode::UnknownMember | ErrorCode::StaleGeneration => "rejoin the group and retry",
            ErrorCode::AuthenticationFailed => {
                "give a user with --user and its password in SHOAL_PASSWORD (or a --client-config file)"
            }
            ErrorCode::AuthorizationFailed => {
                "an admin can grant it: shoal acl add User:NAME OPERATION --topic|--group NAME (shoal acl list shows the grants)"
            }
            _ => return None,
        };
        Some(hint.to_string())
    }
}
