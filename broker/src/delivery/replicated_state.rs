//! The durable delivery state of one shard on a cluster: a replicated
//! internal partition instead of the local state log (issue 15).
//!
//! Shard `i` of every node holds a replica of partition `i` of the internal
//! topic [`GROUP_STATE_TOPIC`] (one partition per shard, replication factor
//! `min(3, nodes)`, flush `always`, no retention), a raft group like any
//! replicated partition. Its records are the state log's records (keys and
//! values of [`super::state_log`], one batch per change), so the same decode
//! reads both.
//!
//! - **Who coordinates.** The groups of shard `i` are coordinated by the
//!   leader of partition `i`, once it has applied an entry of its own term
//!   (`RaftGroup::applied_own_term`): then every entry a former leader
//!   committed, or left for this term to commit, is applied here. Every
//!   other replica refuses group requests with `not_coordinator`, naming the
//!   leader it knows.
//! - **Writing.** A change is proposed as one batch and the coordinator
//!   replies to the client only once raft committed it (a majority has it
//!   fdatasynced). Proposals are queued in call order, so the log order is
//!   the mutation order, as on a single node.
//! - **Reading.** Every replica keeps a [`StateMirror`]: the committed
//!   state, latest value per key, fed by each batch as it commits (after a
//!   replay of the committed log on open). A replica that becomes the
//!   coordinator restores its groups and quarantine from the mirror through
//!   the single-node restore path; one that stops leading drops them. Because
//!   the mirror is built from commits only, never from this replica's own
//!   proposals, it is the state every future leader will restore.
//!
//! Compaction: none yet. The partition keeps every state change, so a new
//! leader's mirror and a replica's open replay read the whole history; with
//! no retention the log start stays 0 and raft never has to send a
//! snapshot (which for our partitions carries no data and would lose
//! state). The bound is the write rate: one batch per ack/nack/commit
//! request that changed durable state, a few hundred bytes each, so 10 GB
//! after some 30 million such requests. Compacting it needs a
//! leader-written snapshot of the mirror (`docs/replication.md`).

use std::cell::RefCell;
use std::rc::Rc;

use shoal_protocol::batch::{self, BatchLimits};
use shoal_protocol::messages::dlq::QuarantineEntry;
use shoal_protocol::messages::topic::{FlushPolicy, TopicConfig};

use super::state_log::{apply_batch, encode_batch, replay_batches, State, StateRecord, StateValue};
use crate::error::{BrokerError, BrokerResult};
use crate::ids::ShardId;
use crate::metadata::TopicMeta;
use crate::partition::Replica;

/// The internal topic of the replicated group state (user topics cannot
/// start with `__`; clients ask its leaders to find a coordinator).
pub use shoal_protocol::messages::leaders::GROUP_STATE_TOPIC;
/// Most replicas of a shard's state partition.
pub const REPLICATION_FACTOR_MAX: u32 = 3;

/// The group state topic of a cluster of `nodes` nodes with `shards`
/// shards each: partition `i` on shard `i`, every write fdatasynced by a
/// majority, never deleted by retention, no message ids.
pub fn group_state_topic(nodes: u32, shards: u32) -> TopicMeta {
    TopicMeta {
        name: GROUP_STATE_TOPIC.to_string(),
        config: TopicConfig {
            partitions: shards,
            retention_ms: None,
            retention_bytes: None,
            compacted: false,
            flush: FlushPolicy::Always,
            dedup_window_ms: 0,
            replication_factor: nodes.min(REPLICATION_FACTOR_MAX),
            ..TopicConfig::default()
        },
    }
}

/// The committed delivery state as one replica reads it from the state
/// partition: each committed batch applied once, in offset order (sans-IO).
#[derive(Debug, Default)]
pub struct StateMirror {
    state: State,
    /// The offset after the last batch applied.
    next_offset: u64,
    /// Why a committed batch could not be applied: this replica then
    /// refuses to coordinate rather than serve a state with a hole in it.
    broken: Option<String>,
}

impl StateMirror {
    /// An empty mirror of a log that starts at `log_start`.
    pub fn starting_at(log_start: u64) -> StateMirror {
        StateMirror {
            next_offset: log_start,
            ..StateMirror::default()
        }
    }

    /// Applies one committed batch. A batch below the next offset was
    /// applied already (the open replay and the commit hook overlap) and
    /// is skipped; one above it means a batch was missed.
    pub fn apply(&mut self, bytes: &[u8]) {
        if self.broken.is_some() {
            return;
        }
        let limits = BatchLimits::default();
        let header = match batch::peek(bytes, &limits) {
            Ok((header, _)) => header,
            Err(e) => {
                self.broken = Some(format!("a committed state batch does not frame: {e}"));
                return;
            }
        };
        if header.base_offset < self.next_offset {
            return;
        }
        if header.base_offset > self.next_offset {
            self.broken = Some(format!(
                "committed state batch at offset {} follows offset {}: a batch was missed",
                header.base_offset, self.next_offset
            ));
            return;
        }
        match apply_batch(bytes, &limits, &mut self.state) {
            Ok(()) => self.next_offset = header.next_offset(),
            Err(e) => self.broken = Some(e.to_string()),
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// The quarantine entries of the committed state.
    pub fn entries(&self) -> impl Iterator<Item = &QuarantineEntry> {
        self.state.values().filter_map(|v| match v {
            StateValue::Entry(e) => Some(e),
            _ => None,
        })
    }
}

/// One shard's replica of its group state partition.
pub struct ReplicatedState {
    replica: Rc<Replica>,
    shard: ShardId,
    mirror: RefCell<StateMirror>,
    /// Batches committed while the open replay runs, applied after it.
    queued: RefCell<Option<Vec<Vec<u8>>>>,
}

impl ReplicatedState {
    /// Starts mirroring the opened state partition of `shard`: hooks its
    /// commits, then replays its committed log. A batch committed during
    /// the replay waits in a queue and is applied after it, or skipped if
    /// the replay already read it. A replica that cannot be read (its log
    /// is fenced, or this node holds no replica: more than three nodes)
    /// never coordinates; the reason is logged once here.
    pub async fn open(replica: Rc<Replica>, shard: ShardId) -> Rc<ReplicatedState> {
        let state = Rc::new(ReplicatedState {
            replica: replica.clone(),
            shard,
            mirror: RefCell::new(StateMirror::starting_at(0)),
            queued: RefCell::new(Some(Vec::new())),
        });
        let weak = Rc::downgrade(&state);
        replica.on_committed(Box::new(move |bytes: &[u8]| {
            if let Some(state) = weak.upgrade() {
                state.committed(bytes);
            }
        }));
        if let Err(reason) = state.replay().await {
            state.mirror.borrow_mut().broken = Some(reason);
        }
        let queued = state.queued.borrow_mut().take().unwrap_or_default();
        let mut mirror = state.mirror.borrow_mut();
        for bytes in &queued {
            mirror.apply(bytes);
        }
        if let Some(reason) = mirror.broken() {
            tracing::error!(shard = %shard, %reason, "group state partition unreadable: this node will not coordinate its groups");
        }
        drop(mirror);
        state
    }

    /// Reads the committed log into the mirror.
    async fn replay(&self) -> Result<(), String> {
        if self.replica.raft().is_none() {
            return Err(format!(
                "this node holds no replica of the group state partition of shard {}",
                self.shard
            ));
        }
        let log = self.replica.log().map_err(|e| e.to_string())?.clone();
        *self.mirror.borrow_mut() = StateMirror::starting_at(log.log_start_offset());
        replay_batches(&log, |bytes| {
            self.mirror.borrow_mut().apply(bytes);
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())
    }

    fn committed(&self, bytes: &[u8]) {
        if let Some(queue) = self.queued.borrow_mut().as_mut() {
            queue.push(bytes.to_vec());
            return;
        }
        let mut mirror = self.mirror.borrow_mut();
        mirror.apply(bytes);
        if let Some(reason) = mirror.broken() {
            tracing::error!(shard = %self.shard, %reason, "group state partition unreadable: this node will not coordinate its groups");
        }
    }

    /// The term this replica may coordinate in: it leads, has applied an
    /// entry of that term, and its mirror is whole.
    pub fn leading_term(&self) -> Option<u64> {
        let group = self.replica.raft()?;
        let whole = self.mirror.borrow().broken().is_none() && self.queued.borrow().is_none();
        (whole && group.applied_own_term()).then(|| group.term())
    }

    /// Whether this replica still leads in `term`.
    pub fn leads_in(&self, term: u64) -> bool {
        self.replica
            .raft()
            .is_some_and(|g| g.is_leader() && g.term() == term)
    }

    /// The committed state, for the new coordinator's restore.
    pub fn committed_state(&self) -> State {
        self.mirror.borrow().state().clone()
    }

    /// Runs `f` on the mirror (reads on a replica that does not coordinate).
    pub fn with_mirror<T>(&self, f: impl FnOnce(&StateMirror) -> T) -> T {
        f(&self.mirror.borrow())
    }

    /// The refusal of a replica that does not coordinate, naming the
    /// leader it knows.
    pub fn not_coordinator(&self) -> BrokerError {
        let (leader, address) = self.replica.leader_hint().unwrap_or((0, None));
        BrokerError::NotCoordinator {
            shard: self.shard,
            leader,
            address,
        }
    }

    /// Proposes `records` as one batch and returns once it is committed.
    /// Call it right after the mutation it describes, without an await in
    /// between: proposals are queued in call order.
    pub async fn append(&self, records: Vec<StateRecord>, now_ms: i64) -> BrokerResult<()> {
        let bytes = encode_batch(records, now_ms).map_err(|e| BrokerError::internal(e.to_string()))?;
        match self.replica.append(vec![bytes]).await {
            Ok(_) => Ok(()),
            Err(BrokerError::NotLeader { .. }) => Err(self.not_coordinator()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::state_log::StateKey;

    fn committed(group: &str, offset: u64) -> StateRecord {
        StateRecord::put(
            StateKey::Committed {
                group: group.into(),
                topic: "t".into(),
                partition: 0,
            },
            StateValue::Committed(offset),
        )
    }

    /// A batch as the log stores it: `records` placed at `base`.
    fn placed(records: Vec<StateRecord>, base: u64) -> Vec<u8> {
        let mut bytes = encode_batch(records, 1).unwrap();
        batch::patch(&mut bytes, base, 1, 1);
        bytes.to_vec()
    }

    /// Batches apply once each, in offset order: a repeat (replay and hook
    /// overlapping) is skipped, the latest value wins, a tombstone deletes.
    #[test]
    fn mirror_applies_each_committed_batch_once() {
        let mut m = StateMirror::starting_at(0);
        let first = placed(vec![committed("a", 3), committed("b", 1)], 0);
        m.apply(&first);
        m.apply(&placed(vec![committed("a", 5)], 2));
        m.apply(&first);
        let key_b = committed("b", 0).key;
        m.apply(&placed(vec![StateRecord::delete(key_b.clone())], 3));
        assert_eq!(m.broken(), None);
        assert_eq!(m.next_offset(), 4);
        assert_eq!(
            m.state().get(&committed("a", 0).key),
            Some(&StateValue::Committed(5))
        );
        assert!(!m.state().contains_key(&key_b));
    }

    /// A gap in the committed offsets breaks the mirror: the replica then
    /// refuses to coordinate instead of serving state with a hole.
    #[test]
    fn a_missed_batch_breaks_the_mirror() {
        let mut m = StateMirror::starting_at(0);
        m.apply(&placed(vec![committed("a", 1)], 0));
        m.apply(&placed(vec![committed("a", 2)], 5));
        assert!(m.broken().is_some_and(|r| r.contains("missed")));
        m.apply(&placed(vec![committed("a", 9)], 1));
        assert_eq!(
            m.state().get(&committed("a", 0).key),
            Some(&StateValue::Committed(1))
        );
    }

    /// The topic: one partition per shard, three replicas at most, every
    /// write fsynced, nothing retained away.
    #[test]
    fn topic_shape() {
        let t = group_state_topic(5, 4);
        assert_eq!(t.config.partitions, 4);
        assert_eq!(t.config.replication_factor, 3);
        assert_eq!(group_state_topic(2, 1).config.replication_factor, 2);
        assert_eq!(t.config.flush, FlushPolicy::Always);
        assert_eq!((t.config.retention_ms, t.config.retention_bytes), (None, None));
    }
}
