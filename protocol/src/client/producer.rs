//! A batching producer.
//!
//! [`Producer::send`] picks the partition (murmur2 of the key, see
//! [`crate::partitioner`]; keyless records go round-robin, one batch per
//! partition at a time), appends the record to that partition's open batch
//! and returns a [`SendHandle`] at once. A sender thread ships a batch when
//! it reaches `batch_bytes_max`, when it has waited `linger_ms`, or on
//! [`Producer::flush`]. Each round groups the ready batches by destination
//! (the owning shard's port) and topic into one produce request each, sends
//! them all (pipelined), and resolves every handle with the record's offset
//! and the durability the broker achieved, or the error.
//!
//! Memory is bounded: when `buffer_bytes_max` of records wait to be sent,
//! `send` blocks until the sender catches up (backpressure to the caller).
//! Retryable failures are retried `retries_max` times (see the
//! [`super`] module docs on duplicates).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rkyv::util::AlignedVec;

use super::{Client, Connection, PendingReply};
use crate::batch::{BatchBuilder, Compression, NewRecord, BATCH_HEADER_LEN, BATCH_LEN_MAX};
use crate::error::{check, ErrorCode, ProtocolError};
use crate::frame::FRAME_LEN_MAX;
use crate::messages::produce::{Acks, Durability, ProducePartition, ProduceRequest, ProduceResponse};
use crate::partitioner::partition_for_key;

/// Record bytes shipped in one round (one produce request per shard); the
/// broker's default frame limit is 16 MiB. Also capped at half the frame
/// limit the broker states in its handshake.
const ROUND_BYTES_MAX: usize = 8 << 20;
/// Room left in a frame for the header and meta around the batches.
const FRAME_OVERHEAD_BYTES: usize = 64 << 10;

/// Settings of a [`Producer`].
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub acks: Acks,
    /// How long a batch may wait for more records before it is sent.
    pub linger_ms: u64,
    /// A batch is sent once its records reach this size.
    pub batch_bytes_max: usize,
    pub compression: Compression,
    /// How long the broker may take to meet `acks`.
    pub timeout_ms: u32,
    /// Record bytes waiting to be sent before `send` blocks.
    pub buffer_bytes_max: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::Leader,
            linger_ms: 5,
            batch_bytes_max: 1 << 20,
            compression: Compression::None,
            timeout_ms: 30_000,
            buffer_bytes_max: 64 << 20,
        }
    }
}

/// Where one record was stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordAck {
    /// Shared by every record of the batch (no allocation per record).
    pub topic: Arc<str>,
    pub partition: u32,
    /// The record's offset; `None` with acks `none` (not yet assigned).
    /// For a duplicate, the offset of the first copy.
    pub offset: Option<u64>,
    pub durability: Durability,
    /// Set when the broker found this record already stored (message_id
    /// dedup): the first copy's offset.
    pub duplicate_of: Option<u64>,
}

/// What the broker said about one batch: enough to give every record its
/// ack without building one per record (see [`BatchAcks::record`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchAcks {
    pub topic: Arc<str>,
    pub partition: u32,
    /// Offset of the batch's first stored record; `None` with acks `none`.
    pub base_offset: Option<u64>,
    pub durability: Durability,
    /// Records already stored (message_id dedup): (index in the batch,
    /// offset of the first copy), by index.
    pub duplicates: Vec<(u32, u64)>,
    /// Records in the batch.
    pub records: u32,
}

impl BatchAcks {
    /// The ack of the record at `index` in the batch: stored records take
    /// consecutive offsets from `base_offset` in batch order, duplicates
    /// their first copy's.
    pub fn record(&self, index: u32) -> Option<RecordAck> {
        if index >= self.records {
            return None;
        }
        let dup_before = self.duplicates.partition_point(|&(i, _)| i < index);
        let duplicate_of = self
            .duplicates
            .get(dup_before)
            .filter(|&&(i, _)| i == index)
            .map(|&(_, original)| original);
        let offset = match duplicate_of {
            Some(original) => Some(original),
            None => self
                .base_offset
                .map(|base| base + u64::from(index) - dup_before as u64),
        };
        Some(RecordAck {
            topic: Arc::clone(&self.topic),
            partition: self.partition,
            offset,
            durability: self.durability,
            duplicate_of,
        })
    }

    /// Every record's ack, in batch order.
    pub fn records(&self) -> impl Iterator<Item = RecordAck> + '_ {
        (0..self.records).filter_map(|i| self.record(i))
    }
}

/// The shared outcome of one batch.
struct BatchSlot {
    outcome: Mutex<Option<Result<BatchAcks, ProtocolError>>>,
    done: Condvar,
}

impl BatchSlot {
    fn new() -> Arc<BatchSlot> {
        Arc::new(BatchSlot {
            outcome: Mutex::new(None),
            done: Condvar::new(),
        })
    }

    fn resolve(&self, outcome: Result<BatchAcks, ProtocolError>) {
        *self.outcome.lock().expect("slot lock") = Some(outcome);
        self.done.notify_all();
    }

    /// Waits for the outcome and looks at it under the lock: a batch's
    /// acks are read by every record's handle, so none copies the whole.
    fn wait_with<T>(&self, f: impl FnOnce(&Result<BatchAcks, ProtocolError>) -> T) -> T {
        let mut outcome = self.outcome.lock().expect("slot lock");
        while outcome.is_none() {
            outcome = self.done.wait(outcome).expect("slot lock");
        }
        f(outcome.as_ref().expect("resolved"))
    }

    #[cfg(test)]
    fn wait(&self) -> Result<Vec<RecordAck>, ProtocolError> {
        self.wait_with(|o| o.as_ref().map(|b| b.records().collect()).map_err(Clone::clone))
    }
}

/// A record on its way; [`SendHandle::wait`] blocks until it is acknowledged.
pub struct SendHandle {
    slot: Arc<BatchSlot>,
    index: usize,
}

impl SendHandle {
    pub fn wait(self) -> Result<RecordAck, ProtocolError> {
        self.slot.wait_with(|outcome| match outcome {
            Ok(acks) => acks
                .record(self.index as u32)
                .ok_or_else(|| ProtocolError::Closed("batch outcome is missing a record".into())),
            Err(e) => Err(e.clone()),
        })
    }

    /// Waits for the outcome of this record's whole batch; `index` is the
    /// record's place in it. One wait per batch serves all its records.
    pub fn wait_batch(&self) -> (Result<BatchAcks, ProtocolError>, u32) {
        (self.slot.wait_with(Clone::clone), self.index as u32)
    }

    /// True when this record is in the same batch as `other`'s.
    pub fn same_batch(&self, other: &SendHandle) -> bool {
        Arc::ptr_eq(&self.slot, &other.slot)
    }
}

struct OpenBatch {
    builder: BatchBuilder,
    slot: Arc<BatchSlot>,
    opened: Instant,
    record_bytes: usize,
    partitions: u32,
}

struct SealedBatch {
    topic: String,
    partition: u32,
    builder: BatchBuilder,
    slot: Arc<BatchSlot>,
    record_bytes: usize,
}

#[derive(Default)]
struct State {
    /// Open batches by topic, then partition: looked up by `&str`, so
    /// `send` allocates nothing per record once a topic has been seen.
    open: HashMap<String, HashMap<u32, OpenBatch>>,
    sealed: VecDeque<SealedBatch>,
    /// Next partition for keyless records, per topic.
    round_robin: HashMap<String, u32>,
    /// Batches the sender is shipping now (so `flush` can wait for them).
    in_flight: Vec<Arc<BatchSlot>>,
    buffered_bytes: usize,
    flushes_waiting: usize,
    closing: bool,
}

struct Inner {
    client: Arc<Client>,
    config: ProducerConfig,
    /// Record bytes per round, from [`ROUND_BYTES_MAX`] and the broker's frame limit.
    round_bytes_max: usize,
    /// Largest single record accepted by `send`.
    record_bytes_max: usize,
    state: Mutex<State>,
    /// Wakes the sender (new batch, flush, close) and blocked senders
    /// (buffer space freed).
    wake: Condvar,
}

/// A batching, pipelining producer. Cheap to share by reference between
/// threads; dropping it flushes what is buffered.
pub struct Producer {
    inner: Arc<Inner>,
    sender: Option<JoinHandle<()>>,
}

impl Producer {
    pub fn new(client: Arc<Client>, mut config: ProducerConfig) -> Result<Producer, ProtocolError> {
        let frame_len_max = match client.any_connection()?.handshake().frame_len_max as usize {
            0 => FRAME_LEN_MAX,
            n => n.min(FRAME_LEN_MAX),
        };
        let round_bytes_max = ROUND_BYTES_MAX.min(frame_len_max / 2);
        let record_bytes_max = BATCH_LEN_MAX
            .min(config.buffer_bytes_max)
            .min(frame_len_max.saturating_sub(FRAME_OVERHEAD_BYTES + BATCH_HEADER_LEN));
        // A batch must fit a round, or it could never be sent.
        config.batch_bytes_max = config.batch_bytes_max.min(round_bytes_max).max(1);
        let inner = Arc::new(Inner {
            client,
            config,
            round_bytes_max,
            record_bytes_max,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let sender = {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("shoal-producer".into())
                .spawn(move || inner.run_sender())?
        };
        Ok(Producer {
            inner,
            sender: Some(sender),
        })
    }

    /// Queues `record` for `topic` and returns a handle to its outcome.
    /// Blocks while the producer's buffer is full.
    pub fn send(&self, topic: &str, record: NewRecord) -> Result<SendHandle, ProtocolError> {
        let size = record.approx_len();
        if size > self.inner.record_bytes_max {
            return Err(ProtocolError::broker(
                ErrorCode::RecordTooLarge.to_wire(),
                format!(
                    "record of ~{size} bytes is over the limit of {} bytes (batch, buffer and broker frame limits)",
                    self.inner.record_bytes_max
                ),
            ));
        }
        let partitions = self.inner.client.partition_count(topic)?;
        let mut st = self.inner.wait_for_space(size)?;
        let partition = match &record.key {
            Some(key) => partition_for_key(key, partitions),
            None => match st.round_robin.get(topic) {
                Some(next) => next % partitions,
                None => {
                    st.round_robin.insert(topic.to_string(), 0);
                    0
                }
            },
        };
        let config = &self.inner.config;
        let overflows = st
            .open
            .get(topic)
            .and_then(|t| t.get(&partition))
            .is_some_and(|o| !o.builder.is_empty() && o.builder.approx_len() + size > config.batch_bytes_max);
        // The sender needs a wake-up when a batch is sealed (ship it) or
        // opened (its linger clock starts); not for every record.
        let mut wake = overflows;
        if overflows {
            seal(&mut st, topic, partition);
        }
        if !st.open.contains_key(topic) {
            st.open.insert(topic.to_string(), HashMap::new());
        }
        let open = st
            .open
            .get_mut(topic)
            .expect("inserted above")
            .entry(partition)
            .or_insert_with(|| {
                wake = true;
                OpenBatch {
                    builder: BatchBuilder::new().compression(config.compression),
                    slot: BatchSlot::new(),
                    opened: Instant::now(),
                    record_bytes: 0,
                    partitions,
                }
            });
        let handle = SendHandle {
            slot: Arc::clone(&open.slot),
            index: open.builder.len(),
        };
        open.builder.push(record);
        open.record_bytes += size;
        let full = open.builder.approx_len() >= config.batch_bytes_max;
        st.buffered_bytes += size;
        if full {
            seal(&mut st, topic, partition);
            wake = true;
        }
        drop(st);
        if wake {
            self.inner.wake.notify_all();
        }
        Ok(handle)
    }

    /// Sends every buffered record now and waits until all are acknowledged
    /// (or failed; the failures are reported through their handles).
    pub fn flush(&self) {
        let slots: Vec<Arc<BatchSlot>> = {
            let mut st = self.inner.state.lock().expect("producer lock");
            st.flushes_waiting += 1;
            let open = st
                .open
                .values()
                .flat_map(HashMap::values)
                .map(|o| Arc::clone(&o.slot));
            let sealed = st.sealed.iter().map(|s| Arc::clone(&s.slot));
            let mut slots: Vec<_> = open.chain(sealed).collect();
            slots.extend(st.in_flight.iter().cloned());
            slots
        };
        self.inner.wake.notify_all();
        for slot in slots {
            slot.wait_with(|_| ());
        }
        self.inner.state.lock().expect("producer lock").flushes_waiting -= 1;
    }

    /// Sends `records` to `topic` and waits for all of them: one ack per record.
    pub fn send_all(&self, topic: &str, records: Vec<NewRecord>) -> Result<Vec<RecordAck>, ProtocolError> {
        let handles = records
            .into_iter()
            .map(|r| self.send(topic, r))
            .collect::<Result<Vec<_>, _>>()?;
        self.flush();
        handles.into_iter().map(SendHandle::wait).collect()
    }

    /// Flushes and stops the sender thread.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.inner.state.lock().expect("producer lock").closing = true;
        self.inner.wake.notify_all();
        if let Some(sender) = self.sender.take() {
            let _ = sender.join();
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Moves an open batch to the send queue and advances the topic's
/// round-robin partition past it.
fn seal(st: &mut State, topic: &str, partition: u32) {
    let Some(open) = st.open.get_mut(topic).and_then(|t| t.remove(&partition)) else {
        return;
    };
    if let Some(next) = st.round_robin.get_mut(topic) {
        if *next % open.partitions == partition {
            *next = (partition + 1) % open.partitions;
        }
    }
    st.sealed.push_back(SealedBatch {
        topic: topic.to_string(),
        partition,
        builder: open.builder,
        slot: open.slot,
        record_bytes: open.record_bytes,
    });
}

/// An encoded batch on its way to the broker.
struct Outgoing {
    topic: String,
    partition: u32,
    bytes: AlignedVec<16>,
    records: usize,
    slot: Arc<BatchSlot>,
}

impl Inner {
    fn wait_for_space(&self, size: usize) -> Result<MutexGuard<'_, State>, ProtocolError> {
        let mut st = self.state.lock().expect("producer lock");
        while st.buffered_bytes > 0 && st.buffered_bytes + size > self.config.buffer_bytes_max && !st.closing
        {
            st = self.wake.wait(st).expect("producer lock");
        }
        if st.closing {
            return Err(ProtocolError::Closed("producer is closing".into()));
        }
        Ok(st)
    }

    fn run_sender(&self) {
        while let Some(batches) = self.next_round() {
            let slots = batches.iter().map(|b| Arc::clone(&b.slot)).collect();
            self.state.lock().expect("producer lock").in_flight = slots;
            let freed: usize = batches.iter().map(|b| b.record_bytes).sum();
            self.ship(batches);
            let mut st = self.state.lock().expect("producer lock");
            st.in_flight.clear();
            st.buffered_bytes -= freed;
            drop(st);
            self.wake.notify_all();
        }
    }

    /// Waits until batches are ready (full, lingered, flushed) and takes
    /// them; `None` once closing and empty.
    fn next_round(&self) -> Option<Vec<SealedBatch>> {
        let linger = Duration::from_millis(self.config.linger_ms);
        let mut st = self.state.lock().expect("producer lock");
        loop {
            let now = Instant::now();
            let everything = st.flushes_waiting > 0 || st.closing;
            let due: Vec<(String, u32)> = st
                .open
                .iter()
                .flat_map(|(topic, t)| t.iter().map(move |(p, o)| (topic, *p, o)))
                .filter(|(_, _, o)| everything || now.duration_since(o.opened) >= linger)
                .map(|(topic, p, _)| (topic.clone(), p))
                .collect();
            for (topic, partition) in &due {
                seal(&mut st, topic, *partition);
            }
            if !st.sealed.is_empty() {
                // One round becomes one request per shard: keep it well under
                // the broker's frame limit (a larger frame closes the connection).
                let mut take = 0;
                let mut bytes = 0;
                for b in st.sealed.iter() {
                    if take > 0 && bytes + b.record_bytes > self.round_bytes_max {
                        break;
                    }
                    bytes += b.record_bytes;
                    take += 1;
                }
                return Some(st.sealed.drain(..take).collect());
            }
            if st.closing {
                return None;
            }
            let next_due = st
                .open
                .values()
                .flat_map(HashMap::values)
                .map(|o| o.opened + linger)
                .min();
            let wait = next_due.map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now));
            st = self.wake.wait_timeout(st, wait).expect("producer lock").0;
        }
    }

    /// Encodes, sends and resolves one round of batches, retrying
    /// retryable failures.
    fn ship(&self, batches: Vec<SealedBatch>) {
        let mut pending = Vec::with_capacity(batches.len());
        for b in batches {
            let records = b.builder.len();
            match b.builder.finish() {
                Ok(bytes) => pending.push(Outgoing {
                    topic: b.topic,
                    partition: b.partition,
                    bytes,
                    records,
                    slot: b.slot,
                }),
                Err(e) => b.slot.resolve(Err(e.into())),
            }
        }
        // One budget for the whole round, as before: every batch of the
        // round waits the longest backoff any of them was given.
        let policy = self.client.retry_policy();
        let mut tries = super::Retries::default();
        while !pending.is_empty() {
            let (retry, backoff) = self.send_round(pending, &policy, &mut tries);
            pending = retry;
            if let Some(backoff) = backoff.filter(|_| !pending.is_empty()) {
                std::thread::sleep(backoff);
            }
        }
    }

    /// Sends one request per (connection, topic), waits for all replies and
    /// resolves the batches; returns those to retry.
    fn send_round(
        &self,
        batches: Vec<Outgoing>,
        policy: &super::RetryPolicy,
        tries: &mut super::Retries,
    ) -> (Vec<Outgoing>, Option<Duration>) {
        let mut groups: Vec<(Arc<Connection>, String, Vec<Outgoing>)> = Vec::new();
        // Batches whose leader's node could not be reached: settled below
        // like a failed reply (a redirect on a replicated partition).
        let mut failed: Vec<(String, Vec<Outgoing>, Result<ProduceResponse, ProtocolError>)> = Vec::new();
        for b in batches {
            let conn = match self.client.partition_connection(&b.topic, b.partition) {
                Ok(conn) => conn,
                Err(e) => {
                    failed.push((b.topic.clone(), vec![b], Err(e)));
                    continue;
                }
            };
            match groups
                .iter_mut()
                .find(|(c, t, _)| Arc::ptr_eq(c, &conn) && *t == b.topic)
            {
                Some((_, _, list)) => list.push(b),
                None => groups.push((conn, b.topic.clone(), vec![b])),
            }
        }
        let sent: Vec<_> = groups
            .into_iter()
            .map(|(conn, topic, list)| {
                let reply = self.send_request(&conn, &topic, &list);
                (topic, list, reply)
            })
            .collect();
        let outcomes = sent
            .into_iter()
            .map(|(topic, list, reply)| (topic, list, reply.and_then(|p| p.wait()).map(|r| r.message)))
            .chain(failed);
        let mut round = Round {
            client: &self.client,
            policy,
            start: *tries,
            after: *tries,
            retry: Vec::new(),
            backoff: None,
        };
        for (topic, list, reply) in outcomes {
            round.settle(&topic, list, reply);
        }
        *tries = round.after;
        (round.retry, round.backoff)
    }

    fn send_request(
        &self,
        conn: &Connection,
        topic: &str,
        batches: &[Outgoing],
    ) -> Result<PendingReply<ProduceResponse>, ProtocolError> {
        let mut partitions: Vec<ProducePartition> = Vec::new();
        let mut order: Vec<&Outgoing> = Vec::with_capacity(batches.len());
        for p in partition_order(batches) {
            let mine: Vec<&Outgoing> = batches.iter().filter(|b| b.partition == p).collect();
            partitions.push(ProducePartition {
                partition: p,
                batch_lens: mine.iter().map(|b| b.bytes.len() as u32).collect(),
            });
            order.extend(mine);
        }
        let request = ProduceRequest {
            topic: topic.to_string(),
            acks: self.config.acks,
            timeout_ms: self.config.timeout_ms,
            partitions,
        };
        let payload: Vec<&[u8]> = order.iter().map(|b| b.bytes.as_slice()).collect();
        conn.send(&request, &payload, u64::from(self.config.timeout_ms))
    }
}

/// Partitions of `batches` in first-seen order.
fn partition_order(batches: &[Outgoing]) -> Vec<u32> {
    let mut seen = Vec::new();
    for b in batches {
        if !seen.contains(&b.partition) {
            seen.push(b.partition);
        }
    }
    seen
}

/// Splits batches by partition, keeping first-seen partition order and
/// each partition's batch order.
fn by_partition(batches: Vec<Outgoing>) -> Vec<(u32, Vec<Outgoing>)> {
    let mut out: Vec<(u32, Vec<Outgoing>)> = Vec::new();
    for b in batches {
        match out.iter_mut().find(|(p, _)| *p == b.partition) {
            Some((_, list)) => list.push(b),
            None => out.push((b.partition, vec![b])),
        }
    }
    out
}

/// The settling of one send round: which batches to retry, and after
/// how long (the policy's longest answer in the round). A round is one
/// attempt for every batch in it, so each failure is judged against the
/// attempts made before the round (`start`), and the round as a whole
/// spends the most any of them spent (`after`).
struct Round<'a> {
    client: &'a Client,
    policy: &'a super::RetryPolicy,
    start: super::Retries,
    after: super::Retries,
    retry: Vec<Outgoing>,
    backoff: Option<Duration>,
}

impl Round<'_> {
    /// Resolves the batches of one request from its reply, keeping those
    /// whose failure the policy retries.
    fn settle(&mut self, topic: &str, batches: Vec<Outgoing>, reply: Result<ProduceResponse, ProtocolError>) {
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => return self.fail_or_retry(topic, batches, e),
        };
        for (p, mine) in by_partition(batches) {
            let Some(part) = reply.partitions.iter().find(|r| r.partition == p) else {
                let e =
                    ProtocolError::broker(ErrorCode::Internal.to_wire(), "produce reply lacks a partition");
                mine.iter().for_each(|b| b.slot.resolve(Err(e.clone())));
                continue;
            };
            if let Err(e) = check(part.error, &part.message) {
                self.fail_or_retry(topic, mine, e);
                continue;
            }
            resolve_partition(topic, &mine, part);
        }
    }

    fn fail_or_retry(&mut self, topic: &str, batches: Vec<Outgoing>, e: ProtocolError) {
        let redirect = self.client.is_redirect(topic, &e);
        let mut tries = self.start;
        if let Some(backoff) = self.policy.next(&e, redirect, &mut tries) {
            self.after.retries = self.after.retries.max(tries.retries);
            self.after.redirects = self.after.redirects.max(tries.redirects);
            if redirect {
                self.client.redirected(topic);
            } else if e.code() == Some(ErrorCode::NotOwner) {
                self.client.invalidate(topic);
            }
            self.backoff = self.backoff.max(Some(backoff));
            self.retry.extend(batches);
            return;
        }
        for b in &batches {
            b.slot.resolve(Err(e.clone()));
        }
    }
}

/// Gives every batch of one partition its outcome: stored records count up
/// from `base_offset` across the batches in request order, duplicates keep
/// their first copy's offset (see [`crate::messages::produce`]). One
/// outcome per batch, nothing per record.
fn resolve_partition(
    topic: &str,
    batches: &[Outgoing],
    part: &crate::messages::produce::ProducePartitionResponse,
) {
    let assigned = part.durability != Durability::Accepted;
    let topic: Arc<str> = topic.into();
    let mut first_index = 0u32;
    let mut stored = 0u64;
    for b in batches {
        let records = b.records as u32;
        let range = first_index..first_index + records;
        let mut duplicates: Vec<(u32, u64)> = part
            .duplicates
            .iter()
            .filter(|d| range.contains(&d.record_index))
            .map(|d| (d.record_index - first_index, d.original_offset))
            .collect();
        duplicates.sort_unstable();
        let base_offset = assigned.then(|| part.base_offset + stored);
        stored += u64::from(records) - duplicates.len() as u64;
        first_index += records;
        b.slot.resolve(Ok(BatchAcks {
            topic: Arc::clone(&topic),
            partition: b.partition,
            base_offset,
            durability: part.durability,
            duplicates,
            records,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::produce::{DuplicateRecord, ProducePartitionResponse};

    fn outgoing(partition: u32, records: usize) -> Outgoing {
        Outgoing {
            topic: "t".into(),
            partition,
            bytes: AlignedVec::new(),
            records,
            slot: BatchSlot::new(),
        }
    }

    fn response(durability: Durability, duplicates: Vec<DuplicateRecord>) -> ProducePartitionResponse {
        ProducePartitionResponse {
            partition: 2,
            error: 0,
            message: String::new(),
            base_offset: 100,
            last_offset: 102,
            log_start: 0,
            append_time_ms: 0,
            durability,
            duplicates,
        }
    }

    /// Stored records count up from base_offset across batches in request
    /// order; duplicates get their first copy's offset and say so.
    #[test]
    fn offsets_skip_duplicates_across_batches() {
        let batches = vec![outgoing(2, 3), outgoing(2, 2)];
        let dups = vec![
            DuplicateRecord {
                record_index: 1,
                original_offset: 7,
            },
            DuplicateRecord {
                record_index: 3,
                original_offset: 9,
            },
        ];
        resolve_partition("t", &batches, &response(Durability::Fsynced, dups));
        let first = batches[0].slot.wait().unwrap();
        let second = batches[1].slot.wait().unwrap();
        let offsets: Vec<_> = first
            .iter()
            .chain(&second)
            .map(|a| (a.offset, a.duplicate_of))
            .collect();
        assert_eq!(
            offsets,
            vec![
                (Some(100), None),
                (Some(7), Some(7)),
                (Some(101), None),
                (Some(9), Some(9)),
                (Some(102), None)
            ]
        );
        assert!(first
            .iter()
            .all(|a| a.durability == Durability::Fsynced && a.partition == 2));
    }

    /// With acks none the broker assigns no offsets yet.
    #[test]
    fn accepted_has_no_offsets() {
        let batches = vec![outgoing(2, 2)];
        resolve_partition("t", &batches, &response(Durability::Accepted, Vec::new()));
        let acks = batches[0].slot.wait().unwrap();
        assert!(acks.iter().all(|a| a.offset.is_none()));
    }

    /// Batches split by partition keep first-seen order and batch order.
    #[test]
    fn split_by_partition_keeps_order() {
        let batches = vec![outgoing(3, 1), outgoing(1, 2), outgoing(3, 3)];
        let split = by_partition(batches);
        let shape: Vec<(u32, Vec<usize>)> = split
            .iter()
            .map(|(p, list)| (*p, list.iter().map(|b| b.records).collect()))
            .collect();
        assert_eq!(shape, vec![(3, vec![1, 3]), (1, vec![2])]);
    }
}
