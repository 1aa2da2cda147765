//! Consumers: direct partition reads, and group membership with
//! acknowledgements.
//!
//! [`PartitionConsumer`] reads one partition from an offset it tracks
//! itself (fetch, long-poll); nothing is committed on the broker.
//!
//! [`GroupConsumer`] joins a consumer group; the broker assigns partitions.
//! A heartbeat thread keeps the session alive and picks up assignment
//! changes. [`GroupConsumer::poll`] returns records with their delivery
//! count; each must be acked ([`GroupConsumer::ack`]) or nacked
//! ([`GroupConsumer::nack`]) before its lease runs out, or it is redelivered.
//! If the broker expels the member (session expired, fenced generation), the
//! consumer joins again with a new id; records it held are redelivered, and
//! acks for them from the old membership are rejected (fencing).
//!
//! Every group call goes to the group's coordinator and follows it when it
//! moves (`not_coordinator`, a cluster failover; [`super::coordinator`]).
//! A new coordinator restores the group's committed offsets, failure
//! counts and quarantine but not its members: the consumer's next call
//! gets `unknown_member` and it joins again, as after an expulsion.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::records::{read_batch, Select};
use super::{Client, ConsumedRecord};
use crate::codec::split_payload;
use crate::error::{check, ErrorCode, ProtocolError};
use crate::messages::delivery::*;
use crate::messages::group::*;
use crate::messages::offsets::OffsetSpec;

/// Reads one partition from a position the caller controls.
pub struct PartitionConsumer {
    client: Arc<Client>,
    topic: String,
    partition: u32,
    position: u64,
    /// Cap on batch bytes per fetch.
    pub max_bytes: u32,
    /// Long-poll wait per fetch.
    pub max_wait_ms: u32,
}

impl PartitionConsumer {
    /// Starts at the offset `start` names (earliest, latest or by time).
    pub fn new(
        client: Arc<Client>,
        topic: &str,
        partition: u32,
        start: OffsetSpec,
    ) -> Result<Self, ProtocolError> {
        let (position, _) = client.list_offset(topic, partition, start)?;
        Ok(Self::at_offset(client, topic, partition, position))
    }

    /// Starts at `offset`.
    pub fn at_offset(client: Arc<Client>, topic: &str, partition: u32, offset: u64) -> Self {
        PartitionConsumer {
            client,
            topic: topic.to_string(),
            partition,
            position: offset,
            max_bytes: 1 << 20,
            max_wait_ms: 500,
        }
    }

    /// The next offset to be read.
    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn seek(&mut self, offset: u64) {
        self.position = offset;
    }

    /// Fetches the next records (possibly none, after `max_wait_ms`).
    pub fn poll(&mut self) -> Result<Vec<ConsumedRecord>, ProtocolError> {
        let fetched = self.client.fetch(
            &self.topic,
            self.partition,
            self.position,
            self.max_bytes,
            self.max_wait_ms,
        )?;
        self.position = fetched.next_offset;
        Ok(fetched.records)
    }
}

/// Settings of a [`GroupConsumer`].
#[derive(Debug, Clone)]
pub struct GroupConsumerConfig {
    pub group: String,
    pub topics: Vec<String>,
    /// Shown in group stats; defaults to `host-pid`-like text chosen by the caller.
    pub member_name: String,
    pub session_timeout_ms: u32,
    /// Cap on records per poll.
    pub max_records: u32,
    /// Cap on batch bytes per poll.
    pub max_bytes: u32,
    /// Long-poll wait per poll.
    pub max_wait_ms: u32,
}

impl GroupConsumerConfig {
    pub fn new(group: &str, topics: &[&str]) -> Self {
        GroupConsumerConfig {
            group: group.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            member_name: format!("shoal-client-{}", std::process::id()),
            session_timeout_ms: 10_000,
            max_records: 500,
            max_bytes: 4 << 20,
            max_wait_ms: 500,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Membership {
    member_id: String,
    generation: u32,
    assignment: Vec<TopicPartitions>,
    heartbeat_interval_ms: u32,
}

struct Shared {
    client: Arc<Client>,
    config: GroupConsumerConfig,
    membership: Mutex<Membership>,
    stopped: Mutex<bool>,
    stop: Condvar,
}

/// A member of a consumer group.
pub struct GroupConsumer {
    shared: Arc<Shared>,
    heartbeat: Option<JoinHandle<()>>,
}

impl GroupConsumer {
    /// Joins the group and starts heartbeating.
    pub fn join(client: Arc<Client>, config: GroupConsumerConfig) -> Result<GroupConsumer, ProtocolError> {
        let shared = Arc::new(Shared {
            client,
            config,
            membership: Mutex::new(Membership::default()),
            stopped: Mutex::new(false),
            stop: Condvar::new(),
        });
        shared.join()?;
        let heartbeat = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("shoal-heartbeat".into())
                .spawn(move || shared.heartbeat_loop())?
        };
        Ok(GroupConsumer {
            shared,
            heartbeat: Some(heartbeat),
        })
    }

    pub fn member_id(&self) -> String {
        self.shared.membership().member_id
    }

    pub fn generation(&self) -> u32 {
        self.shared.membership().generation
    }

    /// The partitions currently assigned to this member.
    pub fn assignment(&self) -> Vec<TopicPartitions> {
        self.shared.membership().assignment
    }

    /// Sends a heartbeat now (the background thread also does, on its own).
    pub fn heartbeat(&self) -> Result<(), ProtocolError> {
        self.shared.heartbeat()
    }

    /// Waits up to `max_wait_ms` for records. Returns none (not an error)
    /// while the group rebalances, while its circuit breaker is open, or
    /// after the member had to join again.
    pub fn poll(&self) -> Result<Vec<ConsumedRecord>, ProtocolError> {
        let m = self.shared.membership();
        let c = &self.shared.config;
        let request = PollRequest {
            group: c.group.clone(),
            member_id: m.member_id.clone(),
            generation: m.generation,
            max_records: c.max_records,
            max_bytes: c.max_bytes,
            max_wait_ms: c.max_wait_ms,
        };
        let reply = self
            .shared
            .client
            .call_group_reply(&c.group, &request, u64::from(c.max_wait_ms))?;
        let poll = &reply.message;
        match ErrorCode::from_wire(poll.error) {
            ErrorCode::None => {}
            ErrorCode::UnknownMember | ErrorCode::StaleGeneration => {
                self.shared.join()?;
                return Ok(Vec::new());
            }
            ErrorCode::RebalanceInProgress => {
                self.shared.heartbeat()?;
                return Ok(Vec::new());
            }
            ErrorCode::CircuitOpen | ErrorCode::Throttled => {
                let pause = poll.throttle_time_ms.clamp(10, c.max_wait_ms.max(10));
                std::thread::sleep(Duration::from_millis(u64::from(pause)));
                return Ok(Vec::new());
            }
            _ => check(poll.error, &poll.message)?,
        }
        let lens = poll.batches.iter().map(|b| b.batch_len);
        let batches = split_payload(reply.frame.payload(), lens)?;
        let mut records = Vec::new();
        for (meta, bytes) in poll.batches.iter().zip(batches) {
            let listed: Vec<(u64, u32)> = meta
                .deliveries
                .iter()
                .map(|d| (d.offset, d.delivery_count))
                .collect();
            read_batch(
                &meta.topic,
                meta.partition,
                bytes,
                Select::Listed(&listed),
                &mut records,
            )?;
        }
        Ok(records)
    }

    /// Acknowledges processed records; the group's committed offset advances
    /// to the first unacked record of each partition.
    pub fn ack(&self, records: &[ConsumedRecord]) -> Result<AckResponse, ProtocolError> {
        if records.is_empty() {
            return Ok(empty_ack());
        }
        let m = self.shared.membership();
        let request = AckRequest {
            group: self.shared.config.group.clone(),
            member_id: m.member_id,
            generation: m.generation,
            records: offsets_by_partition(records),
        };
        let reply = self.shared.call(&request)?;
        check(reply.error, &reply.message)?;
        for p in &reply.partitions {
            check(p.error, &format!("ack {}/{}", p.topic, p.partition))?;
        }
        Ok(reply)
    }

    /// Reports records as failed: they are redelivered after a backoff (or
    /// `delay_ms`), or quarantined when attempts run out or `reject` is set.
    pub fn nack(
        &self,
        records: &[ConsumedRecord],
        reason: &str,
        delay_ms: Option<u32>,
        reject: bool,
    ) -> Result<NackResponse, ProtocolError> {
        let m = self.shared.membership();
        let request = NackRequest {
            group: self.shared.config.group.clone(),
            member_id: m.member_id,
            generation: m.generation,
            records: offsets_by_partition(records),
            reason: reason.to_string(),
            delay_ms,
            reject,
        };
        let reply = self.shared.call(&request)?;
        check(reply.error, &reply.message)?;
        for p in &reply.partitions {
            check(p.error, &format!("nack {}/{}", p.topic, p.partition))?;
        }
        Ok(reply)
    }

    /// Commits positions explicitly: `offset` is the next record to consume.
    pub fn commit(&self, offsets: &[(String, u32, u64)]) -> Result<(), ProtocolError> {
        let m = self.shared.membership();
        let request = CommitOffsetRequest {
            group: self.shared.config.group.clone(),
            member_id: m.member_id,
            generation: m.generation,
            offsets: offsets
                .iter()
                .map(|(topic, partition, offset)| PartitionCommit {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: *offset,
                })
                .collect(),
        };
        let reply = self.shared.call(&request)?;
        check(reply.error, &reply.message)?;
        for p in &reply.partitions {
            check(p.error, &format!("commit {}/{}", p.topic, p.partition))?;
        }
        Ok(())
    }

    /// Leaves the group cleanly (its partitions move at once) and stops
    /// heartbeating.
    pub fn close(mut self) -> Result<(), ProtocolError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), ProtocolError> {
        let Some(heartbeat) = self.heartbeat.take() else {
            return Ok(());
        };
        *self.shared.stopped.lock().expect("consumer lock") = true;
        self.shared.stop.notify_all();
        let _ = heartbeat.join();
        let request = LeaveGroupRequest {
            group: self.shared.config.group.clone(),
            member_id: self.shared.membership().member_id,
        };
        let reply = self.shared.call(&request)?;
        check(reply.error, &reply.message)
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl Shared {
    fn membership(&self) -> Membership {
        self.membership.lock().expect("consumer lock").clone()
    }

    /// One request at the group's coordinator, with the client's retries
    /// and coordinator redirects.
    fn call<R: crate::codec::Request>(&self, request: &R) -> Result<R::Response, ProtocolError>
    where
        R::Response: super::GroupReply,
    {
        self.client.call_group(&self.config.group, request)
    }

    /// Joins as a new member (a fresh id: an expelled member never returns
    /// under its old id).
    fn join(&self) -> Result<(), ProtocolError> {
        let request = JoinGroupRequest {
            group: self.config.group.clone(),
            member_name: self.config.member_name.clone(),
            member_id: None,
            topics: self.config.topics.clone(),
            session_timeout_ms: self.config.session_timeout_ms,
        };
        let reply = self.call(&request)?;
        check(reply.error, &reply.message)?;
        *self.membership.lock().expect("consumer lock") = Membership {
            member_id: reply.member_id,
            generation: reply.generation,
            assignment: reply.assignment,
            heartbeat_interval_ms: reply.heartbeat_interval_ms,
        };
        Ok(())
    }

    fn heartbeat(&self) -> Result<(), ProtocolError> {
        let m = self.membership();
        let request = HeartbeatRequest {
            group: self.config.group.clone(),
            member_id: m.member_id.clone(),
            generation: m.generation,
        };
        let reply = self.call(&request)?;
        match ErrorCode::from_wire(reply.error) {
            ErrorCode::None | ErrorCode::RebalanceInProgress => {
                let mut current = self.membership.lock().expect("consumer lock");
                // A join that raced this heartbeat wins: its id is newer.
                if current.member_id == m.member_id {
                    current.generation = reply.generation;
                    current.assignment = reply.assignment;
                }
                Ok(())
            }
            ErrorCode::UnknownMember | ErrorCode::StaleGeneration => self.join(),
            _ => check(reply.error, &reply.message),
        }
    }

    fn heartbeat_loop(&self) {
        loop {
            let interval = self.membership().heartbeat_interval_ms.max(10);
            let stopped = self.stopped.lock().expect("consumer lock");
            let (stopped, _) = self
                .stop
                .wait_timeout_while(stopped, Duration::from_millis(u64::from(interval)), |s| !*s)
                .expect("consumer lock");
            if *stopped {
                return;
            }
            drop(stopped);
            // A failed heartbeat is retried on the next tick; the session
            // timeout is several intervals long.
            let _ = self.heartbeat();
        }
    }
}

fn empty_ack() -> AckResponse {
    AckResponse {
        error: 0,
        message: String::new(),
        partitions: Vec::new(),
    }
}

/// Groups record offsets by topic and partition, in order.
fn offsets_by_partition(records: &[ConsumedRecord]) -> Vec<PartitionOffsets> {
    let mut map: BTreeMap<(&str, u32), Vec<u64>> = BTreeMap::new();
    for r in records {
        map.entry((r.topic.as_str(), r.partition))
            .or_default()
            .push(r.offset);
    }
    map.into_iter()
        .map(|((topic, partition), mut offsets)| {
            offsets.sort_unstable();
            offsets.dedup();
            PartitionOffsets {
                topic: topic.to_string(),
                partition,
                offsets,
            }
        })
        .collect()
}
