//! The driver's traits implemented with Shoal's own client (`shoal_protocol::client`).
//!
//! - Producer: one [`Producer`] per thread (its batching, linger and acks as
//!   the workload says). `Producer::send` returns a [`SendHandle`] that can
//!   only be waited on, so a small waiter thread per producer waits on the
//!   handles in send order and timestamps each ack the moment it resolves;
//!   the producer loop collects them without blocking its schedule.
//!   Waiting in send order can observe an ack late by the spread between
//!   the batches of one producer round (a later partition's batch may finish
//!   first); end-to-end latency, timed at the consumer, has no such bias.
//! - Partition consumer: the thread's share of `(topic, partition)` pairs,
//!   each read by its own fetch thread (a long-poll on one partition must
//!   not delay records of another), positioned at the log end when opened.
//! - Group consumer: one [`GroupConsumer`] per thread; acks and nacks of a
//!   poll are sent together before the next poll.
//!
//! Topics are named `<prefix>-<flush>-p<partitions>-<i>` so that an existing
//! topic (an external broker, a previous run) always has the flush policy and
//! partition count the run reports; that is still checked before use.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shoal_protocol::batch::NewRecord;
use shoal_protocol::client::{
    BatchAcks, Client, ClientConfig, ConsumedRecord, GroupConsumer, GroupConsumerConfig, PartitionConsumer,
    Producer, ProducerConfig, SendHandle,
};
use shoal_protocol::messages::dlq::{QuarantineBrowseRequest, QuarantineCountsRequest, QuarantineFilter};
use shoal_protocol::messages::offsets::OffsetSpec;
use shoal_protocol::messages::produce::{Acks as WireAcks, Durability};
use shoal_protocol::messages::topic::{FlushPolicy, TopicConfig};
use shoal_protocol::tls::ClientSecurity;
use shoal_protocol::{ErrorCode, ProtocolError};

use crate::driver::{AckEvent, Connector, ConsumeClient, InRecord, OutRecord, ProduceClient};
use crate::error::BenchError;
use crate::workload::{Acks, Consumption, Flush, Workload};

/// Long-poll wait of each fetch or group poll, in ms; bounds how long a stop takes.
const FETCH_WAIT_MS: u32 = 100;
/// Pause before retrying a failed fetch or group poll.
const FETCH_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Records per group poll.
const GROUP_POLL_RECORDS_MAX: u32 = 2_000;

fn driver_error(what: &str, e: ProtocolError) -> BenchError {
    BenchError::Driver(format!("{what}: {e}"))
}

/// Opens Shoal clients against `address` (the broker's shared port).
pub struct ShoalConnector {
    address: String,
    /// Where the topics are created (every node of a cluster).
    nodes: Vec<String>,
    /// The redirect counter of every client opened (one per thread).
    redirects: Mutex<Vec<Arc<AtomicU64>>>,
    security: ClientSecurity,
}

impl ShoalConnector {
    /// `security`: TLS and credentials for every connection (`--tls-ca`,
    /// `--user`, ...; the default is plaintext without authentication).
    pub fn new(address: impl Into<String>, security: ClientSecurity) -> Self {
        let address = address.into();
        Self {
            nodes: vec![address.clone()],
            address,
            redirects: Mutex::new(Vec::new()),
            security,
        }
    }

    /// The nodes of a cluster: topics are created through the first (the
    /// cluster's metadata log takes them to the others), and the run starts
    /// once every node serves them; by default `address` only.
    pub fn with_nodes(mut self, nodes: Vec<String>) -> Self {
        self.nodes = nodes;
        self
    }

    /// Creates the workload's topics on `node`, or checks that existing
    /// ones have the workload's settings.
    fn create_topics(&self, node: &str, w: &Workload, config: &TopicConfig) -> Result<(), BenchError> {
        let client = self.client_of(node)?;
        for name in topic_names(w) {
            match client.create_topic(&name, config.clone()) {
                Ok(()) => {}
                Err(e) if e.code() == Some(ErrorCode::TopicExists) => {
                    let found = client
                        .describe_topic(&name)
                        .map_err(|e| driver_error("describe topic", e))?;
                    if found.config.partitions != config.partitions
                        || found.config.flush != config.flush
                        || found.config.replication_factor != config.replication_factor
                    {
                        return Err(BenchError::Driver(format!(
                            "topic {name} exists with other settings; choose another --topic-prefix"
                        )));
                    }
                }
                Err(e) => return Err(driver_error(&format!("create topic on {node}"), e)),
            }
        }
        Ok(())
    }

    /// Waits until `node` serves every topic of the workload (bounded).
    fn wait_topics(&self, node: &str, w: &Workload) -> Result<(), BenchError> {
        const WAIT: Duration = Duration::from_secs(30);
        let client = self.client_of(node)?;
        let started = Instant::now();
        for name in topic_names(w) {
            while let Err(e) = client.describe_topic(&name) {
                if started.elapsed() > WAIT {
                    return Err(driver_error(&format!("topic {name} on {node}"), e));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    fn client(&self) -> Result<Arc<Client>, BenchError> {
        self.client_of(&self.address)
    }

    fn client_of(&self, address: &str) -> Result<Arc<Client>, BenchError> {
        let mut config = ClientConfig::default();
        config.connection.security = self.security.clone();
        let client = Client::with_config(address, config)
            .map(Arc::new)
            .map_err(|e| driver_error("connect", e))?;
        let mut counters = self.redirects.lock().expect("connector lock");
        counters.push(client.redirect_counter());
        Ok(client)
    }
}

/// The topic names a workload runs on with this connector.
pub fn topic_names(w: &Workload) -> Vec<String> {
    let flush = match w.flush {
        Flush::Always => "always".to_string(),
        Flush::Interval => format!("interval{}ms", w.flush_interval_ms),
        Flush::Never => "never".to_string(),
    };
    (0..w.topics)
        .map(|i| format!("{}-{flush}-p{}-{i}", w.topic_prefix, w.partitions))
        .collect()
}

fn flush_policy(w: &Workload) -> FlushPolicy {
    match w.flush {
        Flush::Always => FlushPolicy::Always,
        Flush::Interval => FlushPolicy::IntervalMs(w.flush_interval_ms.min(u64::from(u32::MAX)) as u32),
        Flush::Never => FlushPolicy::Never,
    }
}

impl Connector for ShoalConnector {
    fn redirects(&self) -> u64 {
        let counters = self.redirects.lock().expect("connector lock");
        counters.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn prepare(&self, w: &Workload) -> Result<(), BenchError> {
        let config = TopicConfig {
            partitions: w.partitions,
            flush: flush_policy(w),
            replication_factor: w.replication_factor,
            ..TopicConfig::default()
        };
        let Some((first, others)) = self.nodes.split_first() else {
            return Ok(());
        };
        self.create_topics(first, w, &config)?;
        for node in others {
            self.wait_topics(node, w)?;
        }
        Ok(())
    }

    fn producer(&self, w: &Workload, _index: u32) -> Result<Box<dyn ProduceClient>, BenchError> {
        let config = ProducerConfig {
            acks: match w.acks {
                Acks::None => WireAcks::None,
                Acks::Leader => WireAcks::Leader,
                Acks::Quorum => WireAcks::Quorum,
            },
            linger_ms: w.linger_ms,
            batch_bytes_max: w.batch_bytes,
            ..ProducerConfig::default()
        };
        let producer = Producer::new(self.client()?, config).map_err(|e| driver_error("producer", e))?;
        Ok(Box::new(ShoalProducer::new(producer, topic_names(w))?))
    }

    fn consumer(
        &self,
        w: &Workload,
        index: u32,
        of: u32,
        group: &str,
    ) -> Result<Box<dyn ConsumeClient>, BenchError> {
        let client = self.client()?;
        let topics = topic_names(w);
        match w.consumption {
            Consumption::Partition => Ok(Box::new(FetchConsumer::open(client, w, &topics, index, of)?)),
            Consumption::Group => {
                let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
                let mut config = GroupConsumerConfig::new(group, &refs);
                config.member_name = format!("shoal-bench-{index}");
                config.max_wait_ms = FETCH_WAIT_MS;
                config.max_records = GROUP_POLL_RECORDS_MAX;
                let consumer =
                    GroupConsumer::join(client, config).map_err(|e| driver_error("join group", e))?;
                Ok(Box::new(ShoalGroupConsumer {
                    consumer,
                    last: Vec::new(),
                    acks: Vec::new(),
                    nacks: Vec::new(),
                }))
            }
        }
    }

    fn group_stats(&self, group: &str) -> Result<Option<serde_json::Value>, BenchError> {
        let stats = self
            .client()?
            .group_stats(group)
            .map_err(|e| driver_error("group stats", e))?;
        serde_json::to_value(&stats)
            .map(Some)
            .map_err(|e| BenchError::Driver(format!("group stats: {e}")))
    }

    fn quarantine_count(&self, workload: &Workload, group: &str) -> Result<Option<u64>, BenchError> {
        let client = self.client()?;
        let mut total = 0;
        for topic in topic_names(workload) {
            let reply = client
                .dlq_counts(&QuarantineCountsRequest {
                    topic,
                    filter: group_filter(group),
                })
                .map_err(|e| driver_error("quarantine counts", e))?;
            total += reply.total;
        }
        Ok(Some(total))
    }

    fn quarantine_values(
        &self,
        workload: &Workload,
        group: &str,
    ) -> Result<Option<Vec<Vec<u8>>>, BenchError> {
        let client = self.client()?;
        let mut values = Vec::new();
        for topic in topic_names(workload) {
            let mut cursor = None;
            loop {
                let reply = client
                    .dlq_browse(&QuarantineBrowseRequest {
                        topic: topic.clone(),
                        filter: group_filter(group),
                        limit: QUARANTINE_PAGE,
                        cursor,
                    })
                    .map_err(|e| driver_error("quarantine browse", e))?;
                values.extend(reply.entries.into_iter().filter_map(|e| e.value));
                match reply.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(Some(values))
    }
}

/// Entries per quarantine browse call.
const QUARANTINE_PAGE: u32 = 1000;

fn group_filter(group: &str) -> QuarantineFilter {
    QuarantineFilter {
        group: Some(group.to_string()),
        ..QuarantineFilter::default()
    }
}

/// A producer whose acks are collected by a waiter thread.
struct ShoalProducer {
    producer: Producer,
    topics: Vec<String>,
    pending: Option<mpsc::Sender<(u64, SendHandle)>>,
    acks: mpsc::Receiver<AckEvent>,
    waiter: Option<JoinHandle<()>>,
}

impl ShoalProducer {
    fn new(producer: Producer, topics: Vec<String>) -> Result<Self, BenchError> {
        let (pending_tx, pending_rx) = mpsc::channel::<(u64, SendHandle)>();
        let (ack_tx, acks) = mpsc::channel();
        let waiter = std::thread::Builder::new()
            .name("shoal-bench-acks".into())
            .spawn(move || wait_acks(pending_rx, ack_tx))
            .map_err(|e| BenchError::io("spawn ack waiter", e))?;
        Ok(Self {
            producer,
            topics,
            pending: Some(pending_tx),
            acks,
            waiter: Some(waiter),
        })
    }
}

impl ProduceClient for ShoalProducer {
    fn send(&mut self, record: OutRecord) -> Result<(), BenchError> {
        let topic = &self.topics[record.topic as usize];
        let new = NewRecord {
            timestamp_ms: 0,
            key: record.key,
            value: Some(record.value),
            headers: Vec::new(),
            message_id: None,
        };
        let handle = self
            .producer
            .send(topic, new)
            .map_err(|e| driver_error("send", e))?;
        let pending = self.pending.as_ref().expect("pending channel lives until drop");
        pending
            .send((record.token, handle))
            .map_err(|_| BenchError::Driver("ack waiter stopped".into()))
    }

    fn poll_acks(&mut self, wait: Duration, out: &mut Vec<AckEvent>) -> Result<(), BenchError> {
        match self.acks.recv_timeout(wait) {
            Ok(ack) => out.push(ack),
            Err(mpsc::RecvTimeoutError::Timeout) => return Ok(()),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(BenchError::Driver("ack waiter stopped".into()));
            }
        }
        out.extend(self.acks.try_iter());
        Ok(())
    }
}

impl Drop for ShoalProducer {
    fn drop(&mut self) {
        // Closing the channel ends the waiter once it has resolved every handle.
        self.pending.take();
        if let Some(waiter) = self.waiter.take() {
            let _ = waiter.join();
        }
    }
}

/// Resolves pending records in send order, one wait per batch: the records
/// of a batch share its outcome and its ack time.
fn wait_acks(pending: mpsc::Receiver<(u64, SendHandle)>, acks: mpsc::Sender<AckEvent>) {
    let mut batch: Option<(SendHandle, Result<BatchAcks, String>, Instant)> = None;
    for (token, handle) in pending {
        let same = batch.as_ref().is_some_and(|(h, _, _)| h.same_batch(&handle));
        if !same {
            let (outcome, _) = handle.wait_batch();
            batch = Some((handle, outcome.map_err(|e| e.to_string()), Instant::now()));
        }
        let (_, outcome, at) = batch.as_ref().expect("set above");
        let result = match outcome {
            Ok(b) => Ok(durability_name(b.durability)),
            Err(e) => Err(e.clone()),
        };
        if acks
            .send(AckEvent {
                token,
                result,
                at: *at,
            })
            .is_err()
        {
            return;
        }
    }
}

/// The name a durability is counted under (as the report prints it).
fn durability_name(d: Durability) -> &'static str {
    match d {
        Durability::Accepted => "Accepted",
        Durability::Memory => "Memory",
        Durability::Written => "Written",
        Durability::Fsynced => "Fsynced",
        Durability::Replicated => "Replicated",
    }
}

/// Reads a fixed share of partitions, one fetch thread each.
struct FetchConsumer {
    records: mpsc::Receiver<Vec<ConsumedRecord>>,
    stop: Arc<AtomicBool>,
    fetchers: Vec<JoinHandle<()>>,
}

impl FetchConsumer {
    /// Thread `index` of `of` takes every `of`-th `(topic, partition)` pair,
    /// each positioned at the log end now (before the load starts).
    fn open(
        client: Arc<Client>,
        w: &Workload,
        topics: &[String],
        index: u32,
        of: u32,
    ) -> Result<Self, BenchError> {
        let pairs = topics
            .iter()
            .flat_map(|t| (0..w.partitions).map(move |p| (t.clone(), p)));
        let mine: Vec<(String, u32)> = pairs
            .enumerate()
            .filter(|(k, _)| *k as u32 % of == index)
            .map(|(_, x)| x)
            .collect();
        let (tx, records) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut fetchers = Vec::with_capacity(mine.len());
        for (topic, partition) in mine {
            let mut consumer = PartitionConsumer::new(client.clone(), &topic, partition, OffsetSpec::Latest)
                .map_err(|e| driver_error("position consumer", e))?;
            consumer.max_wait_ms = FETCH_WAIT_MS;
            let (tx, stop) = (tx.clone(), stop.clone());
            let fetcher = std::thread::Builder::new()
                .name(format!("shoal-bench-fetch-{partition}"))
                .spawn(move || fetch_loop(consumer, &topic, partition, &tx, &stop))
                .map_err(|e| BenchError::io("spawn fetcher", e))?;
            fetchers.push(fetcher);
        }
        Ok(Self {
            records,
            stop,
            fetchers,
        })
    }
}

/// Fetches one partition until stopped. A failed fetch (the broker restarting)
/// is reported once per outage on stderr and retried after
/// [`FETCH_RETRY_PAUSE`]; the position is kept, so nothing is skipped.
fn fetch_loop(
    mut consumer: PartitionConsumer,
    topic: &str,
    partition: u32,
    tx: &mpsc::Sender<Vec<ConsumedRecord>>,
    stop: &AtomicBool,
) {
    let mut failing = false;
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll() {
            Ok(batch) => {
                failing = false;
                if !batch.is_empty() && tx.send(batch).is_err() {
                    return;
                }
            }
            Err(e) => {
                if !failing {
                    eprintln!(
                        "fetch {topic}/{partition} at {}: {e}; retrying",
                        consumer.position()
                    );
                }
                failing = true;
                std::thread::sleep(FETCH_RETRY_PAUSE);
            }
        }
    }
}

fn into_in_record(record: ConsumedRecord, handle: u64) -> InRecord {
    InRecord {
        delivery_count: record.delivery_count,
        value: record.value.unwrap_or_default(),
        handle,
    }
}

impl ConsumeClient for FetchConsumer {
    fn poll(&mut self, wait: Duration, out: &mut Vec<InRecord>) -> Result<(), BenchError> {
        let first = match self.records.recv_timeout(wait) {
            Ok(batch) => batch,
            Err(mpsc::RecvTimeoutError::Timeout) => return Ok(()),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(BenchError::Driver("fetchers stopped".into()))
            }
        };
        for batch in std::iter::once(first).chain(self.records.try_iter()) {
            out.extend(batch.into_iter().map(|r| {
                let offset = r.offset;
                into_in_record(r, offset)
            }));
        }
        Ok(())
    }

    fn settle(&mut self, _record: &InRecord, _ok: bool) -> Result<(), BenchError> {
        // Partition consumption tracks its own position; there is nothing to acknowledge.
        Ok(())
    }
}

impl Drop for FetchConsumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for fetcher in self.fetchers.drain(..) {
            let _ = fetcher.join();
        }
    }
}

/// A group member; acks and nacks of one poll go out before the next poll.
struct ShoalGroupConsumer {
    consumer: GroupConsumer,
    last: Vec<ConsumedRecord>,
    acks: Vec<ConsumedRecord>,
    nacks: Vec<ConsumedRecord>,
}

impl ShoalGroupConsumer {
    fn settle_pending(&mut self) -> Result<(), BenchError> {
        if !self.acks.is_empty() {
            self.consumer
                .ack(&self.acks)
                .map_err(|e| driver_error("ack", e))?;
            self.acks.clear();
        }
        if !self.nacks.is_empty() {
            self.consumer
                .nack(&self.nacks, "shoal-bench retry storm", None, false)
                .map_err(|e| driver_error("nack", e))?;
            self.nacks.clear();
        }
        Ok(())
    }
}

impl ConsumeClient for ShoalGroupConsumer {
    fn poll(&mut self, _wait: Duration, out: &mut Vec<InRecord>) -> Result<(), BenchError> {
        self.settle_pending()?;
        self.last = match self.consumer.poll() {
            Ok(records) => records,
            // A failed poll (the broker restarting) is retried; unacked records are redelivered.
            Err(e) if e.is_retryable() || matches!(e, ProtocolError::Io(_)) => {
                eprintln!("group poll: {e}; retrying");
                std::thread::sleep(FETCH_RETRY_PAUSE);
                Vec::new()
            }
            Err(e) => return Err(driver_error("group poll", e)),
        };
        out.extend(
            self.last
                .iter()
                .enumerate()
                .map(|(i, r)| into_in_record(r.clone(), i as u64)),
        );
        Ok(())
    }

    fn settle(&mut self, record: &InRecord, ok: bool) -> Result<(), BenchError> {
        let Some(r) = self.last.get(record.handle as usize) else {
            return Err(BenchError::Driver(
                "settle of a record from an earlier poll".into(),
            ));
        };
        if ok {
            self.acks.push(r.clone());
        } else {
            self.nacks.push(r.clone());
        }
        Ok(())
    }
}
