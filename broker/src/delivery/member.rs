//! A consumer group's membership and partition ownership, sans-IO.
//!
//! The group keeps two assignments. `target` is what the sticky assignor
//! wants for the current members. `owners` is who may actually hold each
//! partition. A partition whose target changed stays with its old owner
//! while that member still has records of it in flight (it is *revoked*:
//! the member finishes and acks what it holds but gets nothing new from
//! it); it moves once those are done or the member is gone (drain before
//! revoke). Every change of membership or of `owners` bumps the
//! generation, so at any generation each partition has at most one owner,
//! and a member must learn the new generation (heartbeat) before polling.

use std::collections::{BTreeMap, BTreeSet};

use shoal_protocol::messages::group::{GroupState, TopicPartitions};

use super::assignment::{assign, Assignment, TopicPartition};
use super::delivery_state::PartitionDelivery;
use super::retry_policy::{CircuitBreaker, RetryBudget};
use shoal_config::DeliveryConfig;

/// Shortest session timeout a member may ask for.
pub const SESSION_TIMEOUT_MS_MIN: u32 = 100;
/// Longest session timeout a member may ask for.
pub const SESSION_TIMEOUT_MS_MAX: u32 = 300_000;
/// Most members per group.
pub const MEMBERS_MAX: usize = 1000;

/// One member of a group.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub topics: BTreeSet<String>,
    pub session_timeout_ms: u32,
    pub last_seen_ms: i64,
    /// The assignment last reported to the member (to compute `added`).
    pub reported: BTreeSet<TopicPartition>,
}

impl Member {
    /// Records are leased for twice the session timeout (at least 1 s): a
    /// member that keeps heartbeating but holds a record that long is stuck.
    pub fn lease_ms(&self) -> u32 {
        self.session_timeout_ms.saturating_mul(2).max(1000)
    }

    /// Heartbeat a third of the session timeout, so two may be lost.
    pub fn heartbeat_interval_ms(&self) -> u32 {
        (self.session_timeout_ms / 3).clamp(10, 3000)
    }
}

/// Lifetime counters of a group, shown in stats.
#[derive(Debug, Clone, Default)]
pub struct GroupCounters {
    pub deliveries: u64,
    pub acks: u64,
    pub nacks: u64,
    pub retries: u64,
    pub quarantined: u64,
    /// Records dropped after their attempts because the topic's policy has
    /// `dead_letter = false`.
    pub dropped: u64,
}

/// A consumer group on its coordinating shard.
#[derive(Debug)]
pub struct Group {
    pub name: String,
    pub generation: u32,
    pub members: BTreeMap<String, Member>,
    pub target: Assignment,
    pub owners: Assignment,
    pub partitions: BTreeMap<TopicPartition, PartitionDelivery>,
    pub breaker: CircuitBreaker,
    pub budget: RetryBudget,
    pub counters: GroupCounters,
    next_member: u64,
}

impl Group {
    pub fn new(name: &str, settings: &DeliveryConfig) -> Self {
        Group {
            name: name.to_string(),
            generation: 0,
            members: BTreeMap::new(),
            target: Assignment::new(),
            owners: Assignment::new(),
            partitions: BTreeMap::new(),
            breaker: CircuitBreaker::new(
                settings.breaker_failure_permille,
                i64::from(settings.breaker_open_ms),
            ),
            budget: RetryBudget::new(settings.retry_budget_permille),
            counters: GroupCounters::default(),
            next_member: 0,
        }
    }

    /// Adds a member; returns its new id.
    pub fn add_member(&mut self, name: &str, topics: &[String], session_timeout_ms: u32, now: i64) -> String {
        self.next_member += 1;
        // The random part keeps ids unique across broker restarts (the
        // counters restart), so a member from before a restart stays fenced.
        let id = format!(
            "{name}-{}-{}-{:08x}",
            self.generation + 1,
            self.next_member,
            rand::random::<u32>()
        );
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                name: name.to_string(),
                topics: topics.iter().cloned().collect(),
                session_timeout_ms,
                last_seen_ms: now,
                reported: BTreeSet::new(),
            },
        );
        self.generation += 1;
        id
    }

    /// Removes a member (leave or expiry); its records must be failed by the caller.
    pub fn remove_member(&mut self, id: &str) -> Option<Member> {
        let m = self.members.remove(id)?;
        self.generation += 1;
        Some(m)
    }

    /// Members whose session ran out at `now`.
    pub fn expired_members(&self, now: i64) -> Vec<String> {
        self.members
            .values()
            .filter(|m| now - m.last_seen_ms > i64::from(m.session_timeout_ms))
            .map(|m| m.id.clone())
            .collect()
    }

    /// Recomputes the target assignment and moves what may move.
    /// `partitions` maps each topic to its partition count.
    pub fn rebalance(&mut self, partitions: &BTreeMap<String, u32>) {
        let subs = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.topics.clone()))
            .collect();
        self.target = assign(&subs, partitions, &self.target);
        self.settle();
    }

    /// Hands partitions to their target owner once the previous owner is
    /// gone or has nothing of them in flight. Bumps the generation if any moved.
    pub fn settle(&mut self) -> bool {
        let mut changed = false;
        let current: Vec<TopicPartition> = self.owners.keys().chain(self.target.keys()).cloned().collect();
        for tp in current {
            let owner = self.owners.get(&tp).cloned();
            let target = self.target.get(&tp).cloned();
            if owner == target {
                continue;
            }
            let drained = match &owner {
                Some(o) if self.members.contains_key(o) => {
                    self.partitions.get(&tp).is_none_or(|d| d.leased_to(o).is_empty())
                }
                _ => true,
            };
            if drained {
                match target {
                    Some(t) => self.owners.insert(tp, t),
                    None => self.owners.remove(&tp),
                };
                changed = true;
            }
        }
        if changed {
            self.generation += 1;
        }
        changed
    }

    /// Partitions `member` owns and keeps (polls deliver from these).
    pub fn assignment_of(&self, member: &str) -> BTreeSet<TopicPartition> {
        self.owners
            .iter()
            .filter(|(tp, o)| {
                o.as_str() == member && self.target.get(*tp).map(String::as_str) == Some(member)
            })
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Partitions `member` still owns but must drain and give up.
    pub fn revoked_of(&self, member: &str) -> BTreeSet<TopicPartition> {
        self.owners
            .iter()
            .filter(|(tp, o)| {
                o.as_str() == member && self.target.get(*tp).map(String::as_str) != Some(member)
            })
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    pub fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else if self.owners != self.target {
            GroupState::Rebalancing
        } else {
            GroupState::Stable
        }
    }

    /// Topics the group consumes or has positions in.
    pub fn topics(&self) -> BTreeSet<String> {
        let subscribed = self.members.values().flat_map(|m| m.topics.iter().cloned());
        let positioned = self.partitions.keys().map(|tp| tp.topic.clone());
        subscribed.chain(positioned).collect()
    }
}

/// Groups partitions by topic, for the wire.
pub fn by_topic(set: &BTreeSet<TopicPartition>) -> Vec<TopicPartitions> {
    let mut out: Vec<TopicPartitions> = Vec::new();
    for tp in set {
        match out.last_mut() {
            Some(last) if last.topic == tp.topic => last.partitions.push(tp.partition),
            _ => out.push(TopicPartitions {
                topic: tp.topic.clone(),
                partitions: vec![tp.partition],
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts() -> BTreeMap<String, u32> {
        [("t".to_string(), 4)].into_iter().collect()
    }

    /// A partition moves to a new member only after its old owner drained it.
    #[test]
    fn drain_before_revoke() {
        let mut g = Group::new("g", &DeliveryConfig::default());
        let a = g.add_member("a", &["t".into()], 1000, 0);
        g.rebalance(&counts());
        assert_eq!(g.assignment_of(&a).len(), 4);
        // a holds a record of every partition.
        for p in 0..4 {
            let d = g
                .partitions
                .entry(TopicPartition::new("t", p))
                .or_insert_with(|| PartitionDelivery::new(0));
            d.admit(0, None, 0);
            d.lease(0, &a, 1000);
        }
        let gen = g.generation;
        let b = g.add_member("b", &["t".into()], 1000, 0);
        g.rebalance(&counts());
        assert!(
            g.assignment_of(&b).is_empty(),
            "nothing moves while a holds records"
        );
        assert_eq!(g.revoked_of(&a).len(), 2);
        assert_eq!(g.state(), GroupState::Rebalancing);
        for p in 0..4 {
            let _ = g
                .partitions
                .get_mut(&TopicPartition::new("t", p))
                .unwrap()
                .ack(0, &a, 1);
        }
        assert!(g.settle());
        assert!(g.generation > gen + 1);
        assert_eq!(g.assignment_of(&a).len(), 2);
        assert_eq!(g.assignment_of(&b).len(), 2);
        assert_eq!(g.state(), GroupState::Stable);
        // Owners never overlap.
        assert!(g.assignment_of(&a).is_disjoint(&g.assignment_of(&b)));
    }

    /// A member that is gone loses its partitions at once.
    #[test]
    fn expiry_moves_partitions() {
        let mut g = Group::new("g", &DeliveryConfig::default());
        let a = g.add_member("a", &["t".into()], 100, 0);
        let b = g.add_member("b", &["t".into()], 100_000, 0);
        g.rebalance(&counts());
        assert_eq!(g.expired_members(101), vec![a.clone()]);
        g.remove_member(&a);
        g.rebalance(&counts());
        assert_eq!(g.assignment_of(&b).len(), 4);
    }
}
