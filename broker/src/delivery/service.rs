//! The delivery service of one shard: the groups it coordinates, their
//! quarantine, the durable state log, and the timer that expires sessions
//! and leases.
//!
//! Every operation is a method of [`Delivery`] (in the files named for it:
//! `group_coordinator`, `poll`, `outcome`, `redrive`, `lag`), works on this
//! shard's groups only, and reads partitions through its
//! [`PartitionSource`]. Routing a request to the group's coordinating shard
//! is the shard's job, done before the call.

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
use super::source::PartitionSource;
use super::state_log::{StateLog, StateRecord};
use crate::error::{BrokerError, BrokerResult};
use crate::runtime::now_ms;

/// How often the coordinator checks sessions and leases.
pub const TICK_MS: u64 = 25;

/// One shard's delivery state: the groups it coordinates and their quarantine.
pub struct Delivery<S> {
    pub(super) source: S,
    pub(super) groups: RefCell<BTreeMap<String, Group>>,
    /// Groups Shoal does not deliver to (Kafka's): committed offsets and
    /// reported membership ([`super::external_group`]).
    pub(super) external: RefCell<BTreeMap<String, ExternalGroup>>,
    pub(super) quarantine: RefCell<QuarantineStore>,
    log: RefCell<Option<Rc<StateLog>>>,
    pub(super) settings: DeliveryConfig,
    /// Set once the shard stops: the timer ends.
    stopped: Cell<bool>,
}

impl<S: PartitionSource> Delivery<S> {
    pub fn new(shard: u32, settings: DeliveryConfig, source: S) -> Self {
        Delivery {
            source,
            groups: RefCell::new(BTreeMap::new()),
            external: RefCell::new(BTreeMap::new()),
            quarantine: RefCell::new(QuarantineStore::new(shard)),
            log: RefCell::new(None),
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
        *self.log.borrow_mut() = Some(Rc::new(log));
        let delivery = self.clone();
        glommio::spawn_local(async move {
            while !delivery.stopped.get() {
                crate::runtime::sleep(Duration::from_millis(TICK_MS)).await;
                delivery.tick().await;
            }
        })
        .detach();
        Ok(())
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

    /// Writes state changes durably; the caller replies only after `Ok`.
    pub(super) async fn persist(&self, records: Vec<StateRecord>) -> BrokerResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let log = self.log.borrow().clone();
        match log {
            Some(log) => log
                .append(records, now_ms())
                .await
                .map_err(|e| BrokerError::internal(e.to_string())),
            None => Err(BrokerError::internal("the delivery state log is not open")),
        }
    }

    /// Compacts the state log when it has grown (timer).
    pub(super) async fn compact_log(&self, now: i64) {
        let log = self.log.borrow().clone();
        if let Some(log) = log {
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

    /// Stops the timer, flushes and closes the state log (shutdown).
    pub async fn close(&self) {
        self.stopped.set(true);
        let log = self.log.borrow_mut().take();
        if let Some(log) = log {
            log.close().await;
        }
    }
}
