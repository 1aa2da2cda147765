//! `shoal`: the operator's command-line tool, built on the thin client.
//!
//! Every command takes `--broker HOST:PORT` (default `127.0.0.1:9400`, or
//! `SHOAL_BROKER`) and `--json` for machine-readable output: one JSON
//! document per command (JSON lines for `consume`). Errors go to stderr
//! (or, with `--json`, to stdout as `{"error": {...}}` with the stable code
//! name and number) and the exit status is 1.
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
//! ```
#![forbid(unsafe_code)]

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};
use shoal_protocol::batch::{Compression, NewRecord, RecordHeader};
use shoal_protocol::client::{
    Client, ConsumedRecord, GroupConsumer, GroupConsumerConfig, PartitionConsumer, Producer, ProducerConfig,
};
use shoal_protocol::messages::delivery::SeekTarget;
use shoal_protocol::messages::dlq::*;
use shoal_protocol::messages::offsets::OffsetSpec;
use shoal_protocol::messages::produce::Acks;
use shoal_protocol::messages::topic::{FlushPolicy, RetryPolicy, TopicConfig};
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
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report_error(&e, json);
            ExitCode::FAILURE
        }
    }
}

fn report_error(e: &ProtocolError, json: bool) {
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
    }
}

fn run(cli: Cli) -> Result<(), ProtocolError> {
    let client = Arc::new(Client::connect(&cli.broker)?);
    let out = Output { json: cli.json };
    match cli.command {
        Command::Topic(cmd) => topic(&client, cmd, &out),
        Command::Produce(args) => produce(client, args, &out),
        Command::Consume(args) => consume(client, args, &out),
        Command::Group(cmd) => group(&client, cmd, &out),
        Command::Dlq(cmd) => dlq(&client, cmd, &out),
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
                format!("created topic {name} ({} partitions)", config.partitions)
            });
        }
        TopicCmd::List => {
            let topics = client.list_topics()?;
            out.emit(to_json(&topics), || {
                let lines: Vec<String> = topics
                    .iter()
                    .map(|t| {
                        let kind = if t.compacted { " compacted" } else { "" };
                        format!("{}\t{} partitions{kind}", t.name, t.partitions)
                    })
                    .collect();
                lines.join("\n")
            });
        }
        TopicCmd::Describe { name } => {
            let d = client.describe_topic(&name)?;
            out.emit(to_json(&d), || {
                let mut text = format!(
                    "topic {}\nconfig {:?}\npartition\tshard\tlog_start\tlog_end",
                    d.name, d.config
                );
                for p in &d.partitions {
                    text += &format!("\n{}\t{}\t{}\t{}", p.partition, p.shard, p.log_start, p.log_end);
                }
                text
            });
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
    out.emit(doc, || {
        let mut partitions: Vec<u32> = acks.iter().map(|a| a.partition).collect();
        partitions.sort_unstable();
        partitions.dedup();
        let durability = acks
            .first()
            .map(|a| format!(" ({:?})", a.durability))
            .unwrap_or_default();
        format!(
            "produced {} records to {} partitions {partitions:?}{durability}",
            acks.len(),
            args.topic
        )
    });
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
    let text = |b: &Option<Vec<u8>>| b.as_ref().map(|v| String::from_utf8_lossy(v).into_owned());
    let headers: serde_json::Map<String, Value> = r
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(String::from_utf8_lossy(v).into_owned())))
        .collect();
    let doc = json!({
        "topic": r.topic, "partition": r.partition, "offset": r.offset,
        "timestamp_ms": r.timestamp_ms, "key": text(&r.key), "value": text(&r.value),
        "headers": headers, "message_id": r.message_id, "delivery_count": r.delivery_count,
    });
    out.emit(doc, || {
        let key = text(&r.key).unwrap_or_default();
        let value = text(&r.value).unwrap_or_else(|| "<tombstone>".into());
        let redelivery = if r.delivery_count > 1 {
            format!(" delivery={}", r.delivery_count)
        } else {
            String::new()
        };
        format!(
            "{}/{}@{}{redelivery}\t{key}\t{value}",
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
    let partitions = match args.partition {
        Some(p) => vec![p],
        None => (0..client.partition_count(&args.topic)?).collect(),
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
                let lines: Vec<String> = groups
                    .iter()
                    .map(|g| {
                        format!(
                            "{}\t{:?}\tgeneration {}\t{} members\t{}",
                            g.group,
                            g.state,
                            g.generation,
                            g.members,
                            g.topics.join(",")
                        )
                    })
                    .collect();
                lines.join("\n")
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
                let moved: Vec<String> = reply
                    .partitions
                    .iter()
                    .map(|p| format!("{}/{} -> {}", args.topic, p.partition, p.offset))
                    .collect();
                format!("group {} moved: {}", args.group, moved.join(", "))
            });
        }
    }
    Ok(())
}

fn describe_group(client: &Client, group: &str, out: &Output) -> Result<(), ProtocolError> {
    let s = client.group_stats(group)?;
    out.emit(to_json(&s), || {
        let mut text = format!(
            "group {} {:?} generation {} members {} circuit {:?} retry budget {}/{} permille",
            s.group,
            s.state,
            s.generation,
            s.members.len(),
            s.circuit,
            s.retry_budget_used_permille,
            s.retry_budget_permille
        );
        for m in &s.members {
            text += &format!(
                "\nmember {} ({}) heartbeat {} ms ago",
                m.member_id, m.member_name, m.last_heartbeat_age_ms
            );
        }
        text += "\ntopic\tpartition\tcommitted\tlog_end\tlag\tlag_s\tin_flight\tretry\tquarantine";
        for p in &s.partitions {
            text += &format!(
                "\n{}\t{}\t{}\t{}\t{}\t{:.1}\t{}\t{}\t{}",
                p.topic,
                p.partition,
                p.committed_offset,
                p.log_end,
                p.lag_records,
                p.lag_ms as f64 / 1000.0,
                p.in_flight,
                p.retry_backlog,
                p.quarantine_depth
            );
        }
        text
    });
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
                for c in &reply.counts {
                    text += &format!("\n{}\t{}\t{}", c.count, c.group, c.reason);
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
    let text = |b: &Option<Vec<u8>>| b.as_ref().map(|v| String::from_utf8_lossy(v).into_owned());
    let entries: Vec<Value> = reply
        .entries
        .iter()
        .map(|e| {
            let mut doc = to_json(e);
            doc["key"] = json!(text(&e.key));
            doc["value"] = json!(text(&e.value));
            doc
        })
        .collect();
    out.emit(
        json!({"entries": entries, "next_cursor": reply.next_cursor}),
        || {
            let mut lines: Vec<String> = reply
                .entries
                .iter()
                .map(|e| {
                    format!(
                        "#{} {}/{}@{} group={} attempts={} reason={:?} key={} value={}",
                        e.entry_id,
                        e.topic,
                        e.partition,
                        e.offset,
                        e.group,
                        e.attempts,
                        e.reason,
                        text(&e.key).unwrap_or_default(),
                        text(&e.value).unwrap_or_default()
                    )
                })
                .collect();
            if let Some(cursor) = reply.next_cursor {
                lines.push(format!("more: --cursor {cursor}"));
            }
            lines.join("\n")
        },
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
