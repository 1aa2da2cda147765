//! The sticky assignor, sans-IO: which member owns which partition.
//!
//! Input: the members with their subscribed topics, the topics' partition
//! counts, and the previous assignment. Output: every partition of a topic
//! that at least one member subscribes to gets exactly one owner, who
//! subscribes to it. Partitions stay with their previous owner where that
//! keeps the load balanced (so a rebalance moves as few as possible), and
//! loads differ by at most one between members that could swap partitions.
//! Ties break on member id, so the result is deterministic.

use std::collections::{BTreeMap, BTreeSet};

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: &str, partition: u32) -> Self {
        TopicPartition {
            topic: topic.to_string(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// Partition -> owning member id.
pub type Assignment = BTreeMap<TopicPartition, String>;

/// Computes the new assignment. `members` maps member id to its topics;
/// `partitions` maps topic to partition count.
pub fn assign(
    members: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
    previous: &Assignment,
) -> Assignment {
    let wanted = wanted_partitions(members, partitions);
    let mut load: BTreeMap<&str, usize> = members.keys().map(|m| (m.as_str(), 0)).collect();
    let mut out = Assignment::new();
    // Keep previous owners that still subscribe; `balance` then moves only
    // what it must, so an unchanged group is a fixed point.
    for tp in &wanted {
        if let Some(owner) = previous.get(tp) {
            if subscribes(members, owner, &tp.topic) {
                *load.get_mut(owner.as_str()).expect("member") += 1;
                out.insert(tp.clone(), owner.clone());
            }
        }
    }
    // Give the rest to the least-loaded subscriber.
    for tp in &wanted {
        if out.contains_key(tp) {
            continue;
        }
        if let Some(m) = least_loaded(members, &load, &tp.topic) {
            *load.get_mut(m.as_str()).expect("member") += 1;
            out.insert(tp.clone(), m);
        }
    }
    balance(members, &mut out, &mut load);
    out
}

/// Every partition of every subscribed topic, in order.
fn wanted_partitions(
    members: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
) -> Vec<TopicPartition> {
    let topics: BTreeSet<&String> = members.values().flatten().collect();
    topics
        .into_iter()
        .filter_map(|t| partitions.get(t).map(|n| (t, *n)))
        .flat_map(|(t, n)| (0..n).map(move |p| TopicPartition::new(t, p)))
        .collect()
}

fn subscribes(members: &BTreeMap<String, BTreeSet<String>>, member: &str, topic: &str) -> bool {
    members.get(member).is_some_and(|t| t.contains(topic))
}

fn least_loaded(
    members: &BTreeMap<String, BTreeSet<String>>,
    load: &BTreeMap<&str, usize>,
    topic: &str,
) -> Option<String> {
    members
        .iter()
        .filter(|(_, topics)| topics.contains(topic))
        .min_by_key(|(m, _)| (load[m.as_str()], m.as_str()))
        .map(|(m, _)| m.clone())
}

/// Moves partitions from the most to the least loaded member that can take
/// them until no such move narrows the gap. Each move lowers the sum of
/// squared loads, so the loop ends; the cap is a safety net.
fn balance(
    members: &BTreeMap<String, BTreeSet<String>>,
    out: &mut Assignment,
    load: &mut BTreeMap<&str, usize>,
) {
    let moves_max = out.len() * members.len() + 1;
    for _ in 0..moves_max {
        let mut moved = false;
        let candidates: Vec<(TopicPartition, String)> =
            out.iter().rev().map(|(tp, m)| (tp.clone(), m.clone())).collect();
        for (tp, owner) in candidates {
            let Some(to) = least_loaded(members, load, &tp.topic) else {
                continue;
            };
            if load[to.as_str()] + 1 < load[owner.as_str()] {
                *load.get_mut(owner.as_str()).expect("member") -= 1;
                *load.get_mut(to.as_str()).expect("member") += 1;
                out.insert(tp, to);
                moved = true;
                break;
            }
        }
        if !moved {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{quickcheck, TestResult};

    fn setup(subs: &[Vec<u8>], counts: &[u8]) -> (BTreeMap<String, BTreeSet<String>>, BTreeMap<String, u32>) {
        let topics: BTreeMap<String, u32> = counts
            .iter()
            .take(4)
            .enumerate()
            .map(|(i, n)| (format!("t{i}"), u32::from(n % 9)))
            .collect();
        let members = subs
            .iter()
            .take(6)
            .enumerate()
            .map(|(i, s)| {
                let t = s.iter().map(|x| format!("t{}", x % 4)).collect();
                (format!("m{i}"), t)
            })
            .collect();
        (members, topics)
    }

    fn valid(
        members: &BTreeMap<String, BTreeSet<String>>,
        topics: &BTreeMap<String, u32>,
        a: &Assignment,
    ) -> bool {
        let wanted = wanted_partitions(members, topics);
        wanted.len() == a.len()
            && wanted
                .iter()
                .all(|tp| a.get(tp).is_some_and(|m| subscribes(members, m, &tp.topic)))
    }

    quickcheck! {
        /// Every subscribed partition has exactly one owner, who subscribes to it.
        fn one_owner_per_partition(subs: Vec<Vec<u8>>, counts: Vec<u8>, prev_seed: Vec<(u8, u8, u8)>) -> bool {
            let (members, topics) = setup(&subs, &counts);
            let previous: Assignment = prev_seed
                .iter()
                .map(|(t, p, m)| (TopicPartition::new(&format!("t{}", t % 4), u32::from(p % 9)), format!("m{}", m % 8)))
                .collect();
            valid(&members, &topics, &assign(&members, &topics, &previous))
        }

        /// With unchanged members, assigning again changes nothing (sticky).
        fn stable_when_nothing_changes(subs: Vec<Vec<u8>>, counts: Vec<u8>) -> bool {
            let (members, topics) = setup(&subs, &counts);
            let first = assign(&members, &topics, &Assignment::new());
            assign(&members, &topics, &first) == first
        }

        /// When every member subscribes to everything, loads differ by at most
        /// one, and a member joining moves no more partitions than it gets.
        fn balanced_and_minimal_moves(n_members: u8, counts: Vec<u8>) -> TestResult {
            let n = usize::from(n_members % 6) + 1;
            let (_, topics) = setup(&[], &counts);
            let all: BTreeSet<String> = topics.keys().cloned().collect();
            let members: BTreeMap<String, BTreeSet<String>> =
                (0..n).map(|i| (format!("m{i}"), all.clone())).collect();
            let before = assign(&members, &topics, &Assignment::new());
            let mut grown = members.clone();
            grown.insert("new".into(), all);
            let after = assign(&grown, &topics, &before);
            let mut loads: BTreeMap<&String, usize> = grown.keys().map(|m| (m, 0)).collect();
            for m in after.values() {
                *loads.get_mut(m).unwrap() += 1;
            }
            let (lo, hi) = (loads.values().min().unwrap(), loads.values().max().unwrap());
            let moved = after.iter().filter(|(tp, m)| before.get(*tp) != Some(*m)).count();
            TestResult::from_bool(hi - lo <= 1 && moved == loads[&"new".to_string()])
        }
    }
}
