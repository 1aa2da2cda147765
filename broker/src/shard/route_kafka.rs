//! The Kafka front end's calls into the delivery service: an external
//! group's claim, committed offsets (durable in the shard's state log) and
//! reported membership ([`crate::delivery::external_group`]).
//!
//! These run on the group's coordinating shard only: the Kafka front end
//! keeps each group's coordinator state there and sends its group work
//! there ([`super::submit`]), so these are plain local calls. A call on any
//! other shard is a bug in the caller and is answered with an internal
//! error rather than touching state that belongs to another shard. On a
//! cluster, a shard whose group state replica does not lead answers
//! `not_coordinator` (Kafka's NOT_COORDINATOR): the group lives on the
//! leader's node.

use shoal_protocol::messages::group::GroupSummary;

use super::state::Shard;
use crate::delivery::assignment::TopicPartition;
use crate::delivery::{ExternalMembership, ExternalOffset};
use crate::error::{BrokerError, BrokerResult};

impl Shard {
    fn on_coordinator_of(&self, group: &str) -> BrokerResult<()> {
        let coordinator = self.coordinator(group);
        if coordinator != self.id() {
            return Err(BrokerError::internal(format!(
                "group {group:?} is coordinated by shard {coordinator}, not shard {}",
                self.id()
            )));
        }
        self.delivery().check_coordinator()
    }

    /// Claims `group` for the Kafka protocol (refused for a Shoal group).
    pub fn kafka_claim_group(&self, group: &str) -> BrokerResult<()> {
        self.on_coordinator_of(group)?;
        self.delivery().claim_external(group)
    }

    /// Makes a Kafka group's commits durable; answer the client after `Ok`.
    pub async fn kafka_commit_offsets(
        &self,
        group: &str,
        entries: Vec<(TopicPartition, ExternalOffset)>,
    ) -> BrokerResult<()> {
        self.on_coordinator_of(group)?;
        self.delivery().commit_external(group, entries).await
    }

    /// A Kafka group's committed offsets (of `partitions`, or all).
    pub fn kafka_committed_offsets(
        &self,
        group: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> BrokerResult<Vec<(TopicPartition, Option<ExternalOffset>)>> {
        self.on_coordinator_of(group)?;
        self.delivery().external_offsets(group, partitions)
    }

    /// Records a Kafka group's membership for stats and lists.
    pub fn kafka_report_membership(&self, group: &str, membership: ExternalMembership) {
        if self.on_coordinator_of(group).is_ok() {
            self.delivery().update_external_membership(group, membership);
        }
    }

    /// Drops a Kafka group with no members and no committed offsets.
    pub fn kafka_forget_group(&self, group: &str) {
        if self.on_coordinator_of(group).is_ok() {
            self.delivery().forget_external_if_idle(group);
        }
    }

    /// This shard's groups, each marked `true` when it is a Kafka group.
    pub fn local_groups_by_protocol(&self) -> Vec<(GroupSummary, bool)> {
        let delivery = self.delivery();
        delivery
            .local_groups()
            .into_iter()
            .map(|g| {
                let kafka = delivery.is_external(&g.group);
                (g, kafka)
            })
            .collect()
    }

    /// Whether this shard coordinates a Shoal-protocol group named `group`.
    pub fn is_shoal_group(&self, group: &str) -> bool {
        self.delivery().is_shoal(group)
    }
}
