//! The delivery service of one shard: the groups it coordinates, their
//! quarantine, the durable state, and the timer that expires sessions and
//! leases.
//!
//! Every operation is a method of [`Delivery`] (in the files named for it:
//! `group_coordinator`, `poll`, `outcome`, `redrive`, `lag`), works on this
//! shard's groups only, and reads partitions through its
//! [`PartitionSource`]. Routing a request to the group's coordinating shard
//! is the shard's job, done before the call.
//!
//! Where the state is durable ([`Store`]): on a single node, the shard's
//! own compacted [`StateLog`], and the shard always coordinates its
//! groups. On a cluster, the shard's replicated state partition
//! ([`ReplicatedState`]), and the shard coordinates only while its replica
//! leads: the timer (and the first request after a leadership change)
//! restores the groups from the committed state when the replica starts
//! leading in a term, and drops them when it stops; meanwhile every group
//! request is refused with `not_coordinator` ([`Delivery::check_coordinator`],
//! which the shard calls before it hands a group request here).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use shoal_config::DeliveryConfig;
use shoal_protocol::messages::group::GroupSummary;
use shoal_protocol::messages::topic::RetryPolicy;

use super::external_group::ExternalGroup;
use super::member::Group;
use super::quarantine::QuarantineStore;
use super::replicated_state::ReplicatedState;
use super::source::PartitionSource;
use super::state_log::{StateLog, StateRecord};
use crate::error::{BrokerError, BrokerResult};
use crate::runtime::now_ms;

/// How often the coordinator checks sessions and leases.
pub const TICK_MS: u64 = 25;

/// Where a shard's delivery state is durable (module header).
#[derive(Clone)]
pub enum Store {
    /// A single node: the shard's compacted log; the shard coordinates.
    Local(Rc<StateLog>),
    /// A cluster: the shard's replicated state partition; the shard
    /// coordinates while its replica leads.
    Replicated(Rc<ReplicatedState>),
}

/// One shard's delivery state: the groups it coordinates and their quarantine.
pub struct Delivery<S> {
    pub(super) source: S,
    shard: u32,
    pub(super) groups: RefCell<BTreeMap<String, Group>>,
    /// Groups Shoal does not deliver to (Kafka's): committed offsets and
    /// reported membership ([`super::external_group`]).
    pub(super) external: RefCell<BTreeMap<String, ExternalGroup>>,
    pub(super) quarantine: RefCell<QuarantineStore>,
    store: RefCell<Option<Store>>,
    /// On a cluster: the term whose committed state the groups above were
    /// restored from (`None`: this shard coordinates nothing now).
    coordinating: Cell<Option<u64>>,
    /// State changes proposed so far (numbered from 1), and the highest
    /// number such that it and every earlier one finished (committed or
    /// failed). A restore waits until all finished, so no change of the
    /// dropped state commits after the restore read the committed state.
    proposals_issued: Cell<u64>,
    proposals_settled: Cell<u64>,
    /// Finished proposals above `proposals_settled`.
    finished_early: RefCell<std::collections::BTreeSet<u64>>,
    /// Callers of `settle_proposals`: the number each waits for, and its bell.
    settle_waiters: RefCell<Vec<(u64, flume::Sender<()>)>>,
    pub(super) settings: DeliveryConfig,
    /// Set once the shard stops: the timer ends.
    stopped: Cell<bool>,
}

impl<S: PartitionSource> Delivery<S> {
    pub fn new(shard: u32, settings: DeliveryConfig, source: S) -> Self {
        Delivery {
            source,
            shard,
            groups: RefCell::new(BTreeMap::new()),
            external: RefCell::new(BTreeMap::new()),
            quarantine: RefCell::new(QuarantineStore::new(shard)),
            store: RefCell::new(None),
            coordinating: Cell::new(None),
            proposals_issued: Cell::new(0),
            proposals_settled: Cell::new(0),
            finished_early: RefCell::new(std::collections::BTreeSet::new()),
            settle_waiters: RefCell::new(Vec::new()),
            settings,
            stopped: Cell::new(false),
        }
    }

    /// Opens the state log in `dir`, restores the groups and quarantine it
    /// holds, and starts the session/lease timer. Runs after the topics are
    /// loaded (restoring needs their retry policies).
    pub async fn start(self: &Rc<Self>, dir: &Path) -> BrokerResult<()>
    where
        S: 'static,
    {
        let (log, state) = StateLog::open(dir)
            .await
            .map_err(|e| BrokerError::internal(e.to_string()))?;
        self.restore(state, now_ms(), &mut rand::random::<f64>);
        *self.store.borrow_mut() = Some(Store::Local(Rc::new(log)));
        self.start_timer();
        Ok(())
    }

    /// On a cluster: keeps the state in the shard's replicated state
    /// partition and starts the timer, which also follows its leadership.
    /// Runs after the topics are loaded.
    pub fn start_replicated(self: &Rc<Self>, state: Rc<ReplicatedState>)
    where
        S: 'static,
    {
        *self.store.borrow_mut() = Some(Store::Replicated(state));
        self.follow_leadership();
        self.start_timer();
    }

    fn start_timer(self: &Rc<Self>)
    where
        S: 'static,
    {
        let delivery = self.clone();
        glommio::spawn_local(async move {
            while !delivery.stopped.get() {
                crate::runtime::sleep(Duration::from_millis(TICK_MS)).await;
                delivery.follow_leadership();
                delivery.tick().await;
            }
        })
        .detach();
    }

    fn store(&self) -> Option<Store> {
        self.store.borrow().clone()
    }

    /// Whether this shard coordinates its groups now: always on a single
    /// node; on a cluster while its replica leads in the restored term.
    pub fn coordinates(&self) -> bool {
        self.check_coordinator().is_ok()
    }

    /// `Ok` when this shard coordinates its groups now, else the
    /// `not_coordinator` refusal naming the leader. A replica that leads
    /// but has not restored yet restores first.
    pub fn check_coordinator(&self) -> BrokerResult<()> {
        let Some(Store::Replicated(state)) = self.store() else {
            return Ok(());
        };
        if self.coordinating.get().is_none() {
            self.follow_leadership();
        }
        match self.coordinating.get() {
            Some(term) if state.leads_in(term) => Ok(()),
            _ => Err(state.not_coordinator()),
        }
    }

    /// On a cluster: drops the groups when the replica stopped leading in
    /// the restored term, and restores them from the committed state when
    /// it leads in a new one (once no change of the old state is still
    /// being proposed).
    fn follow_leadership(&self) {
        let Some(Store::Replicated(state)) = self.store() else {
            return;
        };
        let leading = state.leading_term();
        let restored = self.coordinating.get();
        if leading == restored {
            return;
        }
        if let Some(term) = restored {
            self.forget_state();
            tracing::info!(shard = self.shard, term, "stopped coordinating: groups dropped");
        }
        let Some(term) = leading else { return };
        if self.proposals_settled.get() < self.proposals_issued.get() {
            return;
        }
        let committed = state.committed_state();
        let keys = committed.len();
        self.restore(committed, now_ms(), &mut rand::random::<f64>);
        self.coordinating.set(Some(term));
        tracing::info!(
            shard = self.shard,
            term,
            keys,
            groups = self.groups.borrow().len(),
            quarantined = self.quarantine.borrow().len(),
            "coordinating: groups restored from the replicated state"
        );
    }

    /// Drops every group and quarantine entry held in memory (the durable
    /// state stays in the replicated partition).
    fn forget_state(&self) {
        self.coordinating.set(None);
        self.groups.borrow_mut().clear();
        self.external.borrow_mut().clear();
        *self.quarantine.borrow_mut() = QuarantineStore::new(self.shard);
    }

    /// Runs `f` on the quarantine this shard answers reads from: its own
    /// while it coordinates; on a cluster replica that does not, the
    /// entries of its committed copy of the state (as fresh as its
    /// replication).
    pub(super) fn with_quarantine<T>(&self, f: impl FnOnce(&QuarantineStore) -> T) -> T {
        match self.store() {
            Some(Store::Replicated(state)) if !self.coordinates() => state.with_mirror(|m| {
                let mut copy = QuarantineStore::new(self.shard);
                for entry in m.entries() {
                    copy.insert(entry.clone());
                }
                f(&copy)
            }),
            _ => f(&self.quarantine.borrow()),
        }
    }

    /// A new, empty group with this broker's settings.
    pub(super) fn new_group(&self, name: &str) -> Group {
        Group::new(name, &self.settings)
    }

    /// The retry policy of `topic` (the default if it is gone).
    pub(super) fn retry_policy(&self, topic: &str) -> RetryPolicy {
        self.source
            .topic(topic)
            .map(|m| m.config.retry)
            .unwrap_or_default()
    }

    /// Writes state changes durably (fsynced here, or committed by a
    /// majority of the state partition's replicas); the caller replies only
    /// after `Ok`. Called right after the mutation, with no await between:
    /// changes reach the log in mutation order.
    ///
    /// On a cluster, a change that does not commit leaves memory ahead of
    /// the log: the groups are dropped and restored from the committed
    /// state (if this replica still leads), and the caller gets the error.
    ///
    /// A change with no records still waits until every change proposed
    /// before it finished (on a cluster): its reply may show what they
    /// wrote (a committed offset), which must be durable first.
    pub(super) async fn persist(&self, records: Vec<StateRecord>) -> BrokerResult<()> {
        if records.is_empty() {
            self.settle_proposals().await;
            return Ok(());
        }
        match self.store() {
            Some(Store::Local(log)) => log
                .append(records, now_ms())
                .await
                .map_err(|e| BrokerError::internal(e.to_string())),
            Some(Store::Replicated(state)) => {
                // Not `check_coordinator`, which may restore: a restore
                // between the mutation and its proposal would lose it.
                if !self.coordinating.get().is_some_and(|term| state.leads_in(term)) {
                    self.forget_state();
                    return Err(state.not_coordinator());
                }
                let number = self.proposals_issued.get() + 1;
                self.proposals_issued.set(number);
                let result = state.append(records, now_ms()).await;
                self.proposal_finished(number);
                if let Err(e) = &result {
                    tracing::warn!(shard = self.shard, error = %e, "a group state change did not commit: groups dropped");
                    self.forget_state();
                }
                result
            }
            None => Err(BrokerError::internal("the delivery state log is not open")),
        }
    }

    fn proposal_finished(&self, number: u64) {
        let mut early = self.finished_early.borrow_mut();
        early.insert(number);
        let mut settled = self.proposals_settled.get();
        while early.remove(&(settled + 1)) {
            settled += 1;
        }
        self.proposals_settled.set(settled);
        self.settle_waiters.borrow_mut().retain(|(target, bell)| {
            let waiting = *target > settled;
            if !waiting {
                let _ = bell.send(());
            }
            waiting
        });
    }

    /// Waits until every state change proposed before this call finished
    /// (a cluster's proposals commit in order, so this is short); woken by
    /// the proposal that settles it. On a single node there is nothing to
    /// wait for.
    pub(super) async fn settle_proposals(&self) {
        let target = self.proposals_issued.get();
        if self.proposals_settled.get() >= target {
            return;
        }
        let (bell, rung) = flume::bounded(1);
        self.settle_waiters.borrow_mut().push((target, bell));
        let _ = rung.recv_async().await;
    }

    /// Compacts the local state log when it has grown (timer). The
    /// replicated one is not compacted (`replicated_state`).
    pub(super) async fn compact_log(&self, now: i64) {
        if let Some(Store::Local(log)) = self.store() {
            log.maybe_compact(now).await;
        }
    }

    /// This shard's groups, for list groups: Shoal-protocol groups and
    /// external (Kafka) ones.
    pub fn local_groups(&self) -> Vec<GroupSummary> {
        let mut out: Vec<GroupSummary> = self
            .groups
            .borrow()
            .values()
            .map(|g| GroupSummary {
                group: g.name.clone(),
                state: g.state(),
                generation: g.generation,
                members: g.members.len() as u32,
                topics: g.topics().into_iter().collect(),
            })
            .collect();
        out.extend(self.external_summaries());
        out
    }

    /// Stops the timer, flushes and closes the local state log (shutdown;
    /// the partition service closes the replicated one).
    pub async fn close(&self) {
        self.stopped.set(true);
        let store = self.store.borrow_mut().take();
        if let Some(Store::Local(log)) = store {
            log.close().await;
        }
    }
}
