//! Routing partition work to the owning shard: the API front ends call.
//!
//! Each method checks the topic and partition against this shard's
//! registry, then calls the partition service directly when this shard owns
//! the partition, or sends the call to the owner over the mesh (counted by
//! kind; the shard-aware client never needs it for produce and fetch). The
//! owner counts records in and out, whichever way the call arrived.
//!
//! Produce runs each partition's append in its own task, so one
//! partition's fsync does not hold up another's; the tasks are spawned in
//! request order before the first await, so appends to one partition keep
//! the order their requests arrived in.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use shoal_protocol::messages::produce::Acks;

use super::call::{ShardCall, ShardReply};
use super::state::Shard;
use crate::error::{BrokerError, BrokerResult};
use crate::ids::{Offset, PartitionId, ShardId};
use crate::metrics::add;
use crate::partition::{Appended, ListedOffset, OffsetQuery, PartitionFigures, PartitionView, ReadBatches};

/// Longest a produce may ask the broker to wait for its acks.
pub const PRODUCE_TIMEOUT_MS_MAX: u32 = 300_000;
/// Longest long-poll a fetch may ask for.
pub const FETCH_WAIT_MS_MAX: u32 = 60_000;

/// One partition's outcome of a produce.
#[derive(Debug, Clone)]
pub enum Produced {
    /// Stored, with the durability reached.
    Stored(Appended),
    /// Acks `none`: answered before the append (at-most-once); the append
    /// goes on in the background.
    Accepted,
}

/// One partition of a fetch.
#[derive(Debug, Clone, Copy)]
pub struct PartitionRead {
    pub partition: PartitionId,
    pub offset: Offset,
    pub max_bytes: u32,
}

/// A fetch over partitions of one topic.
#[derive(Debug, Clone)]
pub struct FetchSpec {
    pub reads: Vec<PartitionRead>,
    /// Longest wait for data when every partition is caught up.
    pub max_wait_ms: u32,
    /// Bytes that end the wait early.
    pub min_bytes: u32,
    /// Budget over all partitions (at least one batch each is returned).
    pub max_bytes: u32,
}

/// What a mesh failure means for a call: the peer shard stopped.
fn stopped(to: ShardId) -> BrokerError {
    BrokerError::shard_stopped(to)
}

fn mismatch() -> BrokerError {
    BrokerError::internal("mesh reply mismatch")
}

impl Shard {
    /// The owner of `partition`, after checking that the topic exists and
    /// has that partition.
    pub fn locate(&self, topic: &str, partition: PartitionId) -> BrokerResult<ShardId> {
        let count = self
            .topic(topic)
            .ok_or_else(|| BrokerError::unknown_topic(topic))?
            .config
            .partitions;
        if partition.get() >= count {
            return Err(BrokerError::UnknownPartition {
                topic: topic.to_string(),
                partition,
                count,
            });
        }
        Ok(self.owner(topic, partition))
    }

    /// Appends batches to partitions of `topic` (each on its owner) and
    /// returns one outcome per partition, in the order given.
    pub(super) async fn produce(
        self: &Rc<Self>,
        topic: &str,
        partitions: Vec<(PartitionId, Vec<BytesMut>)>,
        acks: Acks,
        timeout_ms: u32,
    ) -> Vec<(PartitionId, BrokerResult<Produced>)> {
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(partitions.len());
        for (partition, batches) in partitions {
            let task = match self.locate(topic, partition) {
                Ok(owner) => Ok(self.start_append(owner, topic, partition, batches)),
                Err(e) => Err(e),
            };
            tasks.push((partition, task));
        }
        let timeout = Duration::from_millis(u64::from(timeout_ms.clamp(1, PRODUCE_TIMEOUT_MS_MAX)));
        let mut out = Vec::with_capacity(tasks.len());
        for (partition, task) in tasks {
            let outcome = match task {
                Err(e) => Err(e),
                Ok(_) if acks == Acks::None => Ok(Produced::Accepted),
                Ok(handle) => await_append(handle, started + timeout).await,
            };
            out.push((partition, outcome));
        }
        out
    }

    /// Starts one partition's append in its own task, on this shard or
    /// forwarded to the owner. The batches move, uncopied (the owner copies
    /// a forwarded batch only if it cannot take its buffer over).
    fn start_append(
        self: &Rc<Self>,
        owner: ShardId,
        topic: &str,
        partition: PartitionId,
        batches: Vec<BytesMut>,
    ) -> glommio::task::JoinHandle<BrokerResult<Appended>> {
        let shard = self.clone();
        let topic = topic.to_string();
        if owner == self.id() {
            return glommio::spawn_local(async move { shard.append_local(&topic, partition, batches).await })
                .detach();
        }
        let shared: Vec<Bytes> = batches.into_iter().map(BytesMut::freeze).collect();
        glommio::spawn_local(async move {
            let call = ShardCall::Produce {
                topic,
                partition,
                batches: shared,
            };
            match shard.mesh().call(owner, call).await {
                Ok(ShardReply::Produce(r)) => r,
                Ok(_) => Err(mismatch()),
                Err(_) => Err(stopped(owner)),
            }
        })
        .detach()
    }

    /// Appends to a partition this shard owns and counts the records stored.
    pub(super) async fn append_local(
        &self,
        topic: &str,
        partition: PartitionId,
        batches: Vec<BytesMut>,
    ) -> BrokerResult<Appended> {
        let appended = self.partitions().append(topic, partition, batches).await?;
        add(&self.metrics().records_in, appended.records);
        Ok(appended)
    }

    /// Reads the partitions of a fetch (each on its owner), long-polling as
    /// the fetch allows: one partition waits on its owner; several are read
    /// at once first, and waited on only if all came back short of
    /// `min_bytes`.
    pub(super) async fn fetch(
        self: &Rc<Self>,
        topic: &str,
        spec: &FetchSpec,
    ) -> BrokerResult<Vec<(PartitionId, BrokerResult<ReadBatches>)>> {
        if self.topic(topic).is_none() {
            return Err(BrokerError::unknown_topic(topic));
        }
        let max_wait = spec.max_wait_ms.min(FETCH_WAIT_MS_MAX);
        let single = spec.reads.len() == 1;
        let mut results = self
            .read_all(topic, spec, if single { max_wait } else { 0 })
            .await;
        let bytes: usize = results.iter().map(|(_, r)| read_bytes(r)).sum();
        if !single && max_wait > 0 && bytes < (spec.min_bytes.max(1) as usize) {
            let targets: Vec<(PartitionId, Offset)> =
                spec.reads.iter().map(|r| (r.partition, r.offset)).collect();
            self.wait_any(topic, &targets, Duration::from_millis(u64::from(max_wait)))
                .await;
            results = self.read_all(topic, spec, 0).await;
        }
        Ok(results)
    }

    async fn read_all(
        self: &Rc<Self>,
        topic: &str,
        spec: &FetchSpec,
        max_wait_ms: u32,
    ) -> Vec<(PartitionId, BrokerResult<ReadBatches>)> {
        let mut budget = spec.max_bytes.max(1);
        let mut out = Vec::with_capacity(spec.reads.len());
        for r in &spec.reads {
            let max_bytes = r.max_bytes.min(budget).max(1);
            let result = self
                .read(topic, r.partition, r.offset, max_bytes, max_wait_ms)
                .await;
            budget = budget.saturating_sub(read_bytes(&result) as u32);
            out.push((r.partition, result));
        }
        out
    }

    /// Reads one partition on its owner, waiting up to `max_wait_ms` for
    /// data when caught up.
    pub(super) async fn read(
        &self,
        topic: &str,
        partition: PartitionId,
        offset: Offset,
        max_bytes: u32,
        max_wait_ms: u32,
    ) -> BrokerResult<ReadBatches> {
        let owner = self.locate(topic, partition)?;
        if owner == self.id() {
            return self
                .read_local(topic, partition, offset, max_bytes, max_wait_ms)
                .await;
        }
        let call = ShardCall::Fetch {
            topic: topic.to_string(),
            partition,
            offset,
            max_bytes,
            max_wait_ms,
        };
        match self.mesh().call(owner, call).await {
            Ok(ShardReply::Fetch(r)) => r,
            Ok(_) => Err(mismatch()),
            Err(_) => Err(stopped(owner)),
        }
    }

    /// Reads a partition this shard owns and counts the records read.
    pub(super) async fn read_local(
        &self,
        topic: &str,
        partition: PartitionId,
        offset: Offset,
        max_bytes: u32,
        max_wait_ms: u32,
    ) -> BrokerResult<ReadBatches> {
        let wait = Duration::from_millis(u64::from(max_wait_ms.min(FETCH_WAIT_MS_MAX)));
        let read = self
            .partitions()
            .read(topic, partition, offset, max_bytes, wait)
            .await?;
        add(&self.metrics().records_out, read.records);
        Ok(read)
    }

    /// Waits until any of `partitions` has data at its offset (or fails), or
    /// `max_wait` passes. Each partition long-polls in its own task; the
    /// first to finish with data wakes the wait, and dropping the rest
    /// cancels them.
    pub(super) async fn wait_any(
        self: &Rc<Self>,
        topic: &str,
        partitions: &[(PartitionId, Offset)],
        max_wait: Duration,
    ) {
        if let [(partition, offset)] = partitions {
            let wait_ms = max_wait.as_millis().min(u128::from(FETCH_WAIT_MS_MAX)) as u32;
            let _ = self.read(topic, *partition, *offset, 1, wait_ms).await;
            return;
        }
        let (tx, rx) = glommio::channels::local_channel::new_bounded::<()>(partitions.len().max(1));
        let tx = Rc::new(tx);
        let wait_ms = max_wait.as_millis().min(u128::from(FETCH_WAIT_MS_MAX)) as u32;
        let mut tasks = Vec::with_capacity(partitions.len());
        for &(partition, offset) in partitions {
            let (shard, tx, topic) = (self.clone(), tx.clone(), topic.to_string());
            tasks.push(glommio::spawn_local(async move {
                let result = shard.read(&topic, partition, offset, 1, wait_ms).await;
                if result.as_ref().map_or(true, |r| !r.batches.is_empty()) {
                    let _ = tx.try_send(());
                }
            }));
        }
        let deadline = crate::runtime::sleep(max_wait);
        futures_lite::future::or(async { rx.recv().await.unwrap_or(()) }, deadline).await;
        drop(tasks);
    }

    /// Resolves an offset query on the partition's owner.
    pub(super) async fn list_offset(
        &self,
        topic: &str,
        partition: PartitionId,
        query: OffsetQuery,
    ) -> BrokerResult<ListedOffset> {
        let owner = self.locate(topic, partition)?;
        if owner == self.id() {
            return self.partitions().list_offset(topic, partition, query).await;
        }
        let call = ShardCall::ListOffsets {
            topic: topic.to_string(),
            partition,
            query,
        };
        match self.mesh().call(owner, call).await {
            Ok(ShardReply::ListOffsets(r)) => r,
            Ok(_) => Err(mismatch()),
            Err(_) => Err(stopped(owner)),
        }
    }

    /// A partition's bounds and state, read on its owner.
    pub(super) async fn figures(
        &self,
        topic: &str,
        partition: PartitionId,
    ) -> BrokerResult<PartitionFigures> {
        let owner = self.locate(topic, partition)?;
        if owner == self.id() {
            return self.partitions().figures(topic, partition);
        }
        let call = ShardCall::PartitionFigures {
            topic: topic.to_string(),
            partition,
        };
        match self.mesh().call(owner, call).await {
            Ok(ShardReply::Figures(r)) => r,
            Ok(_) => Err(mismatch()),
            Err(_) => Err(stopped(owner)),
        }
    }

    /// A partition's figures and the append time at `offset`, on its owner.
    pub(super) async fn view(
        &self,
        topic: &str,
        partition: PartitionId,
        offset: Offset,
    ) -> BrokerResult<PartitionView> {
        let owner = self.locate(topic, partition)?;
        if owner == self.id() {
            return self.partitions().view(topic, partition, offset).await;
        }
        let call = ShardCall::PartitionView {
            topic: topic.to_string(),
            partition,
            offset,
        };
        match self.mesh().call(owner, call).await {
            Ok(ShardReply::View(r)) => r,
            Ok(_) => Err(mismatch()),
            Err(_) => Err(stopped(owner)),
        }
    }
}

/// Waits for an append task up to `deadline`; after it, the append still
/// completes but the caller is told `Timeout`.
async fn await_append(
    handle: glommio::task::JoinHandle<BrokerResult<Appended>>,
    deadline: Instant,
) -> BrokerResult<Produced> {
    let left = deadline.saturating_duration_since(Instant::now());
    let timed_out = async {
        crate::runtime::sleep(left).await;
        None
    };
    match futures_lite::future::or(handle, timed_out).await {
        Some(result) => result.map(Produced::Stored),
        None => Err(BrokerError::Timeout(
            "acks not reached within the request timeout; the append may still complete".into(),
        )),
    }
}

fn read_bytes(result: &BrokerResult<ReadBatches>) -> usize {
    result
        .as_ref()
        .map_or(0, |r| r.batches.iter().map(Bytes::len).sum())
}
