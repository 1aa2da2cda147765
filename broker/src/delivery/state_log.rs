//! The durable delivery state of one shard: a compacted internal log.
//!
//! Each shard keeps one [`PartitionLog`] in `data_dir/internal/shard-N`
//! (flush `always`, compacted) holding small keyed records about the
//! groups it coordinates and their quarantine:
//!
//! | key                                   | value                           |
//! |---------------------------------------|---------------------------------|
//! | `c/<group>/<topic>/<partition>`        | committed offset                |
//! | `f/<group>/<topic>/<partition>/<off>`  | failures of one pending record  |
//! | `r/<group>/<topic>/<partition>/<off>`  | a redriven record awaiting ack  |
//! | `q/<entry id>`                         | a quarantine entry              |
//! | `x/<group>/<topic>/<partition>`        | an external (Kafka) group's committed offset, leader epoch, metadata, commit time |
//!
//! A record without a value is a tombstone. Values are rkyv archives read
//! back through validated access. On start the log is replayed into a map
//! (latest value per key wins, tombstones delete), which the coordinator
//! turns back into committed offsets, failure counts, redriven records and
//! quarantine entries. Compaction keeps the latest record per key, so the
//! log stays proportional to the live state, not to the traffic.
//!
//! Durability argument: the coordinator mutates its in-memory state, builds
//! the records describing that change, and replies to the client only after
//! `append` returned an `Fsynced` ack; the log assigns offsets in call order
//! and appends are issued without an await after the mutation, so the
//! replay order equals the mutation order. A failed append fences the log
//! (storage never retries a failed fsync) and every later change is
//! answered with an error instead of being acknowledged.
//!
//! `tests/state_log_sim.rs` checks this argument on a simulated disk: with
//! power cut at random moments (also during rolls and compaction), the
//! replayed state is always the state after a prefix of the changes in the
//! order they were issued, holding every acknowledged one. It found that
//! appends waiting for a roll could place out of call order (a committed
//! offset replayed older than the acknowledged one); the log now places
//! appends in call order (`shoal_storage`'s placement queue).
//!
//! The shard count must stay the same across restarts for groups to find
//! their state: a group's state lives in the log of its coordinating shard.
//!
//! This log serves a single node. On a cluster the same records, encoded
//! by [`encode_batch`] and read back by [`apply_batch`], travel in the
//! shard's replicated group state partition instead
//! ([`super::replicated_state`]).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use bytes::BytesMut;
use shoal_protocol::batch::{self, BatchBuilder, BatchLimits, BatchRecords, NewRecord};
use shoal_protocol::messages::dlq::QuarantineEntry;
use shoal_storage::{Device, DmaDevice, Durability, FlushPolicy, LogConfig, LogError, PartitionLog};

use super::assignment::TopicPartition;

/// Segment size of the internal log (small, so compaction has sealed
/// segments to work on).
pub const SEGMENT_BYTES: u64 = 1 << 20;
/// Records appended between two compaction passes.
pub const COMPACT_EVERY_RECORDS: u64 = 20_000;
/// Bytes read per step of the replay.
const REPLAY_CHUNK_BYTES: usize = 1 << 20;
/// Separator inside keys (names never contain it: they are `[A-Za-z0-9._-]`).
const SEP: char = '\u{1f}';

/// Why the state log failed.
#[derive(Debug, thiserror::Error)]
pub enum StateLogError {
    /// Storage failed; the log is fenced and no later change is acknowledged.
    #[error("delivery state log: {0}")]
    Log(#[from] LogError),
    /// A record does not decode: refusing to start beats forgetting state.
    #[error("delivery state log record at offset {offset} is corrupt: {reason}")]
    Corrupt { offset: u64, reason: String },
    /// The append returned without reaching the disk.
    #[error("delivery state log append reached only {0:?}")]
    NotDurable(Durability),
}

/// A value in the state log.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum StateValue {
    Committed(u64),
    Failures {
        failures: u32,
        first_failure_ms: i64,
        last_failure_ms: i64,
        reason: String,
    },
    Redriven {
        redrive_count: u32,
    },
    Entry(QuarantineEntry),
    /// Added after the variants above (rkyv tags them in order, and the
    /// archived enum is no larger than with `Entry`, so older logs read
    /// the same).
    ExternalCommitted {
        offset: u64,
        leader_epoch: i32,
        metadata: Option<String>,
        commit_ms: i64,
    },
}

/// The key of a state record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum StateKey {
    Committed {
        group: String,
        topic: String,
        partition: u32,
    },
    Failures {
        group: String,
        topic: String,
        partition: u32,
        offset: u64,
    },
    Redriven {
        group: String,
        topic: String,
        partition: u32,
        offset: u64,
    },
    Entry(u64),
    ExternalCommitted {
        group: String,
        topic: String,
        partition: u32,
    },
}

impl StateKey {
    pub fn encode(&self) -> Vec<u8> {
        let s = match self {
            StateKey::Committed {
                group,
                topic,
                partition,
            } => format!("c{SEP}{group}{SEP}{topic}{SEP}{partition}"),
            StateKey::Failures {
                group,
                topic,
                partition,
                offset,
            } => {
                format!("f{SEP}{group}{SEP}{topic}{SEP}{partition}{SEP}{offset}")
            }
            StateKey::Redriven {
                group,
                topic,
                partition,
                offset,
            } => {
                format!("r{SEP}{group}{SEP}{topic}{SEP}{partition}{SEP}{offset}")
            }
            StateKey::Entry(id) => format!("q{SEP}{id}"),
            StateKey::ExternalCommitted {
                group,
                topic,
                partition,
            } => format!("x{SEP}{group}{SEP}{topic}{SEP}{partition}"),
        };
        s.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<StateKey> {
        let text = std::str::from_utf8(bytes).ok()?;
        let f: Vec<&str> = text.split(SEP).collect();
        let (group, topic) = (f.get(1)?.to_string(), f.get(2).map(|t| t.to_string()));
        match (f[0], f.len()) {
            ("c", 4) => Some(StateKey::Committed {
                group,
                topic: topic?,
                partition: f[3].parse().ok()?,
            }),
            ("f", 5) => Some(StateKey::Failures {
                group,
                topic: topic?,
                partition: f[3].parse().ok()?,
                offset: f[4].parse().ok()?,
            }),
            ("r", 5) => Some(StateKey::Redriven {
                group,
                topic: topic?,
                partition: f[3].parse().ok()?,
                offset: f[4].parse().ok()?,
            }),
            ("q", 2) => Some(StateKey::Entry(f[1].parse().ok()?)),
            ("x", 4) => Some(StateKey::ExternalCommitted {
                group,
                topic: topic?,
                partition: f[3].parse().ok()?,
            }),
            _ => None,
        }
    }
}

/// One change: a value, or a tombstone (`None`).
#[derive(Debug, Clone)]
pub struct StateRecord {
    pub key: StateKey,
    pub value: Option<StateValue>,
}

impl StateRecord {
    pub fn put(key: StateKey, value: StateValue) -> Self {
        StateRecord {
            key,
            value: Some(value),
        }
    }

    pub fn delete(key: StateKey) -> Self {
        StateRecord { key, value: None }
    }
}

/// The internal log of one shard, on glommio DMA files unless a test passes
/// its simulated disk to [`StateLog::open_on`] (`tests/state_log_sim.rs`
/// cuts its power while changes are in flight).
pub struct StateLog<D: Device = DmaDevice> {
    log: Rc<PartitionLog<D>>,
    since_compaction: Cell<u64>,
}

/// The replayed live state: the latest value per key.
pub type State = BTreeMap<StateKey, StateValue>;

impl StateLog<DmaDevice> {
    /// Opens (recovering) the log and replays it into the live state.
    pub async fn open(dir: &Path) -> Result<(StateLog, State), StateLogError> {
        Self::open_on(DmaDevice, dir, SEGMENT_BYTES).await
    }
}

impl<D: Device> StateLog<D> {
    /// Opens (recovering) the log in `dir` on `device`, with segments of
    /// `segment_bytes`, and replays it into the live state.
    pub async fn open_on(device: D, dir: &Path, segment_bytes: u64) -> Result<(Self, State), StateLogError> {
        let config = LogConfig {
            flush: FlushPolicy::Always,
            segment_bytes_max: segment_bytes,
            preallocate_bytes: segment_bytes,
            write_chunk_bytes: 64 << 10,
            read_chunk_bytes: 64 << 10,
            cache_bytes_max: 1 << 20,
            pending_bytes_max: 8 << 20,
            compacted: true,
            tombstone_retention_ms: 3_600_000,
            ..LogConfig::default()
        };
        let log = PartitionLog::open_on(device, dir, config).await?;
        let state = replay(&log).await?;
        let out = StateLog {
            log,
            since_compaction: Cell::new(0),
        };
        Ok((out, state))
    }

    /// Appends `records` as one batch and waits until it is fsynced.
    pub async fn append(&self, records: Vec<StateRecord>, now_ms: i64) -> Result<(), StateLogError> {
        if records.is_empty() {
            return Ok(());
        }
        let n = records.len() as u64;
        let bytes = encode_batch(records, now_ms)?;
        let ack = self.log.append(bytes).await?;
        self.since_compaction.set(self.since_compaction.get() + n);
        if ack.durability != Durability::Fsynced {
            return Err(StateLogError::NotDurable(ack.durability));
        }
        Ok(())
    }

    /// Compacts the sealed segments once enough records were appended.
    pub async fn maybe_compact(&self, now_ms: i64) {
        if self.since_compaction.get() < COMPACT_EVERY_RECORDS {
            return;
        }
        self.since_compaction.set(0);
        if let Err(e) = self.compact(now_ms).await {
            tracing::error!(error = %e, "delivery state log compaction failed");
        }
    }

    /// Compacts the sealed segments now: the latest record per key stays.
    pub async fn compact(&self, now_ms: i64) -> Result<(), StateLogError> {
        self.log.compact(now_ms).await?;
        Ok(())
    }

    /// Starts a new segment, so what was written so far can be compacted.
    pub async fn roll(&self) -> Result<(), StateLogError> {
        self.log.roll().await?;
        Ok(())
    }

    pub fn fenced(&self) -> Option<String> {
        self.log.fenced()
    }

    pub fn size_records(&self) -> u64 {
        self.log.log_end_offset() - self.log.log_start_offset()
    }

    pub async fn close(&self) {
        if let Err(e) = self.log.close().await {
            tracing::error!(error = %e, "closing the delivery state log");
        }
    }
}

/// `records` as one record batch (key: the encoded [`StateKey`]; value: the
/// rkyv archive of the [`StateValue`], none for a tombstone).
pub(super) fn encode_batch(records: Vec<StateRecord>, now_ms: i64) -> Result<BytesMut, StateLogError> {
    let mut b = BatchBuilder::new();
    for r in records {
        let value = match r.value {
            Some(v) => Some(
                rkyv::to_bytes::<rkyv::rancor::Error>(&v)
                    .map_err(|e| StateLogError::Corrupt {
                        offset: 0,
                        reason: e.to_string(),
                    })?
                    .to_vec(),
            ),
            None => None,
        };
        b.push(NewRecord {
            timestamp_ms: now_ms,
            key: Some(r.key.encode()),
            value,
            ..NewRecord::default()
        });
    }
    let bytes = b.finish().map_err(|e| StateLogError::Corrupt {
        offset: 0,
        reason: e.to_string(),
    })?;
    Ok(BytesMut::from(&bytes[..]))
}

/// Reads the whole log, keeping the latest value per key.
async fn replay<D: Device>(log: &PartitionLog<D>) -> Result<State, StateLogError> {
    let mut state = BTreeMap::new();
    let limits = BatchLimits::default();
    replay_batches(log, |bytes| apply_batch(bytes, &limits, &mut state)).await?;
    Ok(state)
}

/// Hands every batch of `log` below its high watermark to `each`, in
/// offset order, a chunk at a time (the replay of a state log, local or
/// replicated).
pub(super) async fn replay_batches<D: Device>(
    log: &PartitionLog<D>,
    mut each: impl FnMut(&[u8]) -> Result<(), StateLogError>,
) -> Result<(), StateLogError> {
    let mut at = log.log_start_offset();
    while at < log.high_watermark() {
        let read = log.read(at, REPLAY_CHUNK_BYTES).await?;
        let Some(next) = read.next_offset() else { break };
        for stored in &read.batches {
            each(&stored.bytes)?;
        }
        at = next;
    }
    Ok(())
}

/// Applies the records of one stored batch to `state` in order: the latest
/// value per key wins, a tombstone deletes.
pub(super) fn apply_batch(
    bytes: &[u8],
    limits: &BatchLimits,
    state: &mut BTreeMap<StateKey, StateValue>,
) -> Result<(), StateLogError> {
    let corrupt = |offset: u64, reason: String| StateLogError::Corrupt { offset, reason };
    let header = batch::validate(bytes, limits).map_err(|e| corrupt(0, e.to_string()))?;
    let body =
        BatchRecords::open(bytes, &header, limits).map_err(|e| corrupt(header.base_offset, e.to_string()))?;
    let records = body
        .records()
        .map_err(|e| corrupt(header.base_offset, e.to_string()))?;
    for (i, record) in records.iter().enumerate() {
        let offset = header.base_offset + i as u64;
        let key_bytes = record.key.as_ref().map(|k| k.as_slice()).unwrap_or_default();
        let key = StateKey::decode(key_bytes).ok_or_else(|| corrupt(offset, "unknown key".into()))?;
        match record.value.as_ref() {
            None => {
                state.remove(&key);
            }
            Some(v) => {
                let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(v.len());
                aligned.extend_from_slice(v.as_slice());
                let value = rkyv::from_bytes::<StateValue, rkyv::rancor::Error>(&aligned)
                    .map_err(|e| corrupt(offset, e.to_string()))?;
                state.insert(key, value);
            }
        }
    }
    Ok(())
}

/// Key of a group partition's committed offset.
pub fn committed_key(group: &str, tp: &TopicPartition) -> StateKey {
    StateKey::Committed {
        group: group.to_string(),
        topic: tp.topic.clone(),
        partition: tp.partition,
    }
}

/// Key of one pending record's failures.
pub fn failures_key(group: &str, tp: &TopicPartition, offset: u64) -> StateKey {
    StateKey::Failures {
        group: group.to_string(),
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset,
    }
}

/// Key of a redriven record awaiting its ack.
pub fn redriven_key(group: &str, tp: &TopicPartition, offset: u64) -> StateKey {
    StateKey::Redriven {
        group: group.to_string(),
        topic: tp.topic.clone(),
        partition: tp.partition,
        offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys survive an encode/decode round trip.
    #[test]
    fn keys_round_trip() {
        let keys = [
            StateKey::Committed {
                group: "g".into(),
                topic: "t.x".into(),
                partition: 3,
            },
            StateKey::Failures {
                group: "g-1".into(),
                topic: "t".into(),
                partition: 0,
                offset: 99,
            },
            StateKey::Redriven {
                group: "g".into(),
                topic: "t".into(),
                partition: 1,
                offset: 7,
            },
            StateKey::Entry(1 << 40),
            StateKey::ExternalCommitted {
                group: "kafka-g".into(),
                topic: "t".into(),
                partition: 12,
            },
        ];
        for k in keys {
            assert_eq!(StateKey::decode(&k.encode()), Some(k));
        }
        assert_eq!(StateKey::decode(b"zz"), None);
    }

    /// A value written before `ExternalCommitted` existed reads back the
    /// same: the new variant did not change the archived enum's layout.
    #[test]
    fn values_from_before_external_offsets_still_read() {
        #[derive(rkyv::Archive, rkyv::Serialize)]
        #[allow(dead_code)]
        enum Before {
            Committed(u64),
            Failures {
                failures: u32,
                first_failure_ms: i64,
                last_failure_ms: i64,
                reason: String,
            },
            Redriven {
                redrive_count: u32,
            },
            Entry(QuarantineEntry),
        }
        let old = [
            (Before::Committed(77), StateValue::Committed(77)),
            (
                Before::Redriven { redrive_count: 3 },
                StateValue::Redriven { redrive_count: 3 },
            ),
            (
                Before::Failures {
                    failures: 2,
                    first_failure_ms: 10,
                    last_failure_ms: 20,
                    reason: "r".into(),
                },
                StateValue::Failures {
                    failures: 2,
                    first_failure_ms: 10,
                    last_failure_ms: 20,
                    reason: "r".into(),
                },
            ),
        ];
        for (before, now) in old {
            let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&before).unwrap();
            let read = rkyv::from_bytes::<StateValue, rkyv::rancor::Error>(&bytes).unwrap();
            assert_eq!(read, now);
        }
        assert_eq!(
            std::mem::size_of::<ArchivedBefore>(),
            std::mem::size_of::<ArchivedStateValue>()
        );
    }

    fn log_bytes(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum()
    }

    /// Rewriting the same keys over and over stays bounded once compacted,
    /// and the replay still gives the latest values.
    #[test]
    fn compaction_bounds_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard-1");
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .make()
            .unwrap();
        ex.run(async move {
            let key = |p: u32| StateKey::Committed {
                group: "g".into(),
                topic: "t".into(),
                partition: p,
            };
            {
                let (log, _) = StateLog::open(&path).await.unwrap();
                for round in 0..(COMPACT_EVERY_RECORDS / 100 + 1) {
                    let batch = (0..100)
                        .map(|p| StateRecord::put(key(p), StateValue::Committed(round)))
                        .collect();
                    log.append(batch, 1).await.unwrap();
                }
                let before = log_bytes(&path);
                log.maybe_compact(2).await;
                let after = log_bytes(&path);
                assert!(after * 2 < before, "compaction kept {after} of {before} bytes");
                log.close().await;
            }
            let (_log, state) = StateLog::open(&path).await.unwrap();
            assert_eq!(state.len(), 100);
            let last = COMPACT_EVERY_RECORDS / 100;
            assert!(state.values().all(|v| *v == StateValue::Committed(last)));
        });
    }

    /// Records written, then a tombstone, replay to the latest state after a reopen.
    #[test]
    fn replay_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard-0");
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .make()
            .unwrap();
        ex.run(async move {
            let c = StateKey::Committed {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
            };
            let f = StateKey::Failures {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
                offset: 4,
            };
            {
                let (log, state) = StateLog::open(&path).await.unwrap();
                assert!(state.is_empty());
                let fail = StateValue::Failures {
                    failures: 2,
                    first_failure_ms: 1,
                    last_failure_ms: 2,
                    reason: "r".into(),
                };
                log.append(
                    vec![
                        StateRecord::put(c.clone(), StateValue::Committed(3)),
                        StateRecord::put(f.clone(), fail),
                    ],
                    1,
                )
                .await
                .unwrap();
                log.append(
                    vec![
                        StateRecord::put(c.clone(), StateValue::Committed(5)),
                        StateRecord::delete(f.clone()),
                    ],
                    2,
                )
                .await
                .unwrap();
                log.close().await;
            }
            let (_log, state) = StateLog::open(&path).await.unwrap();
            assert_eq!(state.get(&c), Some(&StateValue::Committed(5)));
            assert!(!state.contains_key(&f));
        });
    }
}
