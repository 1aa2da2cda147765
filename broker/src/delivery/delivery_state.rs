//! Delivery state of one (group, topic, partition), sans-IO.
//!
//! The partition's records from the committed offset up to `next_offset`
//! (the next record not yet read from the log) form the *window*. Every
//! record in the window that is not yet done (acked or quarantined) has a
//! [`Pending`] entry: in flight to one member under a lease, waiting for
//! (re)delivery at a time, or held behind an earlier record of its key.
//! Done records leave the window, so the ack floor — the committed offset —
//! is the first pending offset, or `next_offset` when none is pending.
//! The floor only moves forward, except through an explicit seek.
//!
//! Records handed back from the quarantine (redrive) sit below the floor and
//! are kept apart from the window so they never hold the floor back.
//!
//! A record's `failures` are its failed deliveries (nack, reject, lease
//! expiry, member expelled); its delivery count on the next delivery is
//! `failures + 1`. The coordinator persists `failures` on every failure, so
//! counts survive a restart ([`Restored`]).
//!
//! The window is bounded ([`WINDOW_RECORDS_MAX`]): no new records are read
//! while it is full, which is the back-pressure on a group that does not ack.

use std::collections::BTreeMap;

use super::key_lanes::KeyLanes;

/// Most pending records per (group, partition).
pub const WINDOW_RECORDS_MAX: usize = 4096;

/// Where a pending record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Leased to `member` until `lease_until_ms`.
    InFlight { member: String, lease_until_ms: i64 },
    /// To be delivered at or after `ready_at_ms`.
    Waiting { ready_at_ms: i64 },
    /// Behind an earlier record of the same key (ordered retry).
    Held,
}

/// A record not yet done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub failures: u32,
    pub phase: Phase,
    /// Lane of the record's key, when ordered retry is on and it has a key.
    pub lane: Option<u64>,
    pub first_failure_ms: i64,
    pub last_failure_ms: i64,
    pub reason: String,
    /// Times the record came back from the quarantine (loop guard).
    pub redrive_count: u32,
}

impl Pending {
    fn fresh(phase: Phase, lane: Option<u64>) -> Self {
        Pending {
            failures: 0,
            phase,
            lane,
            first_failure_ms: 0,
            last_failure_ms: 0,
            reason: String::new(),
            redrive_count: 0,
        }
    }
}

/// Failure history restored from the state log for a record not yet read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub failures: u32,
    pub first_failure_ms: i64,
    pub last_failure_ms: i64,
    pub reason: String,
    /// When its retry is due (the backoff is kept across a restart).
    pub ready_at_ms: i64,
}

/// What to do with a record that just failed (decided by the retry policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    RetryAt { ready_at_ms: i64 },
    Quarantine,
}

/// Why an ack or nack of one offset was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("offset {0} is not leased to this member")]
    NotLeased(u64),
}

/// The state of one group partition.
#[derive(Debug, Clone)]
pub struct PartitionDelivery {
    committed: u64,
    next_offset: u64,
    window: BTreeMap<u64, Pending>,
    redriven: BTreeMap<u64, Pending>,
    lanes: KeyLanes,
    /// Failure counts (and quarantined offsets, as `None`) from before a restart.
    restored: BTreeMap<u64, Option<Restored>>,
}

impl PartitionDelivery {
    pub fn new(committed: u64) -> Self {
        PartitionDelivery {
            committed,
            next_offset: committed,
            window: BTreeMap::new(),
            redriven: BTreeMap::new(),
            lanes: KeyLanes::default(),
            restored: BTreeMap::new(),
        }
    }

    /// The durable committed offset (last floor handed to [`Self::take_floor`]).
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// The next offset to read from the log.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Restores a failure history (replay); `None` marks a quarantined offset.
    pub fn restore(&mut self, offset: u64, failures: Option<Restored>) {
        if offset >= self.committed {
            self.restored.insert(offset, failures);
        }
    }

    /// Restores a redriven record (replay).
    pub fn restore_redriven(&mut self, offset: u64, redrive_count: u32, now: i64) {
        self.redrive(offset, redrive_count, now);
    }

    /// Room for more records read from the log.
    pub fn window_room(&self) -> usize {
        WINDOW_RECORDS_MAX.saturating_sub(self.window.len())
    }

    /// Takes in the record at `offset` just read from the log (offsets must
    /// increase). Returns false if it is already done (quarantined before a
    /// restart). `lane` is its key lane under ordered retry.
    pub fn admit(&mut self, offset: u64, lane: Option<u64>, now: i64) -> bool {
        debug_assert!(offset >= self.next_offset, "admit goes forward");
        self.next_offset = offset + 1;
        let restored = self.restored.remove(&offset);
        if matches!(restored, Some(None)) {
            return false;
        }
        let head = lane.is_none_or(|k| self.lanes.push(k, offset));
        let phase = if head {
            Phase::Waiting { ready_at_ms: now }
        } else {
            Phase::Held
        };
        let mut pending = Pending::fresh(phase, lane);
        if let Some(Some(r)) = restored {
            if let Phase::Waiting { ready_at_ms } = &mut pending.phase {
                *ready_at_ms = r.ready_at_ms.max(now);
            }
            pending.failures = r.failures;
            pending.first_failure_ms = r.first_failure_ms;
            pending.last_failure_ms = r.last_failure_ms;
            pending.reason = r.reason;
        }
        self.window.insert(offset, pending);
        true
    }

    /// Moves the read position past offsets the log no longer has or skipped.
    pub fn skip_to(&mut self, offset: u64) {
        self.next_offset = self.next_offset.max(offset);
    }

    /// Offsets ready for delivery at `now`, redriven ones first, then in
    /// offset order; `retry_ok` decides per record with failures whether a
    /// retry may go now (the retry budget).
    pub fn due(&self, now: i64, limit: usize, mut retry_ok: impl FnMut(&Pending) -> bool) -> Vec<u64> {
        let ready = |p: &&Pending| matches!(p.phase, Phase::Waiting { ready_at_ms } if ready_at_ms <= now);
        self.redriven
            .iter()
            .chain(self.window.iter())
            .filter(|(_, p)| ready(p))
            .filter(|(_, p)| p.failures == 0 || retry_ok(p))
            .map(|(o, _)| *o)
            .take(limit)
            .collect()
    }

    /// The earliest time a waiting record becomes due.
    pub fn next_due(&self) -> Option<i64> {
        self.redriven
            .values()
            .chain(self.window.values())
            .filter_map(|p| match p.phase {
                Phase::Waiting { ready_at_ms } => Some(ready_at_ms),
                _ => None,
            })
            .min()
    }

    /// Leases a due record to `member`; returns its delivery count.
    pub fn lease(&mut self, offset: u64, member: &str, lease_until_ms: i64) -> u32 {
        let p = self.entry_mut(offset).expect("leasing a pending record");
        p.phase = Phase::InFlight {
            member: member.to_string(),
            lease_until_ms,
        };
        p.failures + 1
    }

    /// Ends a record's lease with an ack. Returns the record's state.
    pub fn ack(&mut self, offset: u64, member: &str, now: i64) -> Result<Pending, LeaseError> {
        self.check_lease(offset, member)?;
        Ok(self.finish(offset, now))
    }

    /// Checks that `offset` is in flight to `member`.
    pub fn check_lease(&self, offset: u64, member: &str) -> Result<(), LeaseError> {
        match self.entry(offset).map(|p| &p.phase) {
            Some(Phase::InFlight { member: m, .. }) if m == member => Ok(()),
            _ => Err(LeaseError::NotLeased(offset)),
        }
    }

    /// Counts a failed delivery and applies `verdict(failures)`: schedules
    /// the retry, or removes the record for the quarantine (returned).
    pub fn fail(
        &mut self,
        offset: u64,
        now: i64,
        reason: &str,
        verdict: impl FnOnce(&Pending) -> Verdict,
    ) -> Option<(Pending, Verdict)> {
        let p = self.entry_mut(offset)?;
        p.failures += 1;
        if p.first_failure_ms == 0 {
            p.first_failure_ms = now;
        }
        p.last_failure_ms = now;
        p.reason = reason.to_string();
        let v = verdict(p);
        match v {
            Verdict::RetryAt { ready_at_ms } => {
                p.phase = Phase::Waiting { ready_at_ms };
                Some((p.clone(), v))
            }
            Verdict::Quarantine => Some((self.finish(offset, now), v)),
        }
    }

    /// Removes a done record and promotes the next record of its key.
    fn finish(&mut self, offset: u64, now: i64) -> Pending {
        let p = match self.redriven.remove(&offset) {
            Some(p) => p,
            None => self.window.remove(&offset).expect("finishing a pending record"),
        };
        if let Some(next) = p.lane.and_then(|k| self.lanes.remove(k, offset)) {
            if let Some(n) = self.window.get_mut(&next) {
                n.phase = Phase::Waiting { ready_at_ms: now };
            }
        }
        p
    }

    /// Offsets whose lease ran out at `now`.
    pub fn expired(&self, now: i64) -> Vec<u64> {
        self.in_flight_where(|_, until| until <= now)
    }

    /// Offsets in flight to `member`.
    pub fn leased_to(&self, member: &str) -> Vec<u64> {
        self.in_flight_where(|m, _| m == member)
    }

    fn in_flight_where(&self, f: impl Fn(&str, i64) -> bool) -> Vec<u64> {
        self.redriven
            .iter()
            .chain(self.window.iter())
            .filter(|(_, p)| matches!(&p.phase, Phase::InFlight { member, lease_until_ms } if f(member, *lease_until_ms)))
            .map(|(o, _)| *o)
            .collect()
    }

    /// The ack floor: the first pending offset of the window.
    pub fn floor(&self) -> u64 {
        self.window.keys().next().copied().unwrap_or(self.next_offset)
    }

    /// If the floor moved past the committed offset, commits it and returns it.
    pub fn take_floor(&mut self) -> Option<u64> {
        let floor = self.floor();
        (floor > self.committed).then(|| {
            self.committed = floor;
            self.restored = self.restored.split_off(&floor);
            floor
        })
    }

    /// Explicit commit: records below `offset` are done (forward only).
    /// Returns the records dropped from the window.
    pub fn commit(&mut self, offset: u64, now: i64) -> Vec<(u64, Pending)> {
        let dropped: Vec<u64> = self.window.range(..offset).map(|(o, _)| *o).collect();
        let out = dropped.into_iter().map(|o| (o, self.finish(o, now))).collect();
        self.next_offset = self.next_offset.max(offset);
        out
    }

    /// Replay: moves the position to `offset`, forgetting pending records
    /// (they will be read and delivered again).
    pub fn seek(&mut self, offset: u64) {
        self.window.clear();
        self.lanes.clear();
        self.restored.clear();
        self.committed = offset;
        self.next_offset = offset;
    }

    /// Hands a quarantined record back for delivery.
    pub fn redrive(&mut self, offset: u64, redrive_count: u32, now: i64) {
        let mut p = Pending::fresh(Phase::Waiting { ready_at_ms: now }, None);
        p.redrive_count = redrive_count;
        self.redriven.insert(offset, p);
    }

    /// True if `offset` is a redriven record.
    pub fn is_redriven(&self, offset: u64) -> bool {
        self.redriven.contains_key(&offset)
    }

    pub fn entry(&self, offset: u64) -> Option<&Pending> {
        self.redriven.get(&offset).or_else(|| self.window.get(&offset))
    }

    fn entry_mut(&mut self, offset: u64) -> Option<&mut Pending> {
        match self.redriven.get_mut(&offset) {
            Some(p) => Some(p),
            None => self.window.get_mut(&offset),
        }
    }

    /// Records in flight.
    pub fn in_flight(&self) -> u64 {
        self.count(|p| matches!(p.phase, Phase::InFlight { .. }))
    }

    /// Records waiting for a retry (failed at least once, not in flight).
    pub fn retry_backlog(&self) -> u64 {
        self.count(|p| p.failures > 0 && !matches!(p.phase, Phase::InFlight { .. }))
    }

    fn count(&self, f: impl Fn(&Pending) -> bool) -> u64 {
        self.redriven
            .values()
            .chain(self.window.values())
            .filter(|p| f(p))
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry_in(ms: i64) -> impl FnOnce(&Pending) -> Verdict {
        move |_| Verdict::RetryAt { ready_at_ms: ms }
    }

    /// Acks out of order move the floor only up to the first unacked record.
    #[test]
    fn floor_is_first_unacked() {
        let mut d = PartitionDelivery::new(10);
        for o in 10..15 {
            assert!(d.admit(o, None, 0));
            assert_eq!(d.lease(o, "m", 100), 1);
        }
        d.ack(11, "m", 1).unwrap();
        d.ack(12, "m", 1).unwrap();
        assert_eq!(d.take_floor(), None);
        d.ack(10, "m", 1).unwrap();
        assert_eq!(d.take_floor(), Some(13));
        assert_eq!(d.ack(13, "other", 1), Err(LeaseError::NotLeased(13)));
        assert_eq!(d.ack(12, "m", 1), Err(LeaseError::NotLeased(12)), "already acked");
    }

    /// A failure schedules a retry with a higher delivery count; a quarantine
    /// verdict removes the record and unblocks the floor.
    #[test]
    fn fail_then_retry_then_quarantine() {
        let mut d = PartitionDelivery::new(0);
        d.admit(0, None, 0);
        d.lease(0, "m", 50);
        let (p, _) = d.fail(0, 5, "boom", retry_in(30)).unwrap();
        assert_eq!(p.failures, 1);
        assert!(d.due(29, 10, |_| true).is_empty());
        assert_eq!(d.due(30, 10, |_| true), vec![0]);
        assert!(d.due(30, 10, |_| false).is_empty(), "budget holds the retry");
        assert_eq!(d.lease(0, "m", 100), 2);
        assert_eq!(d.expired(100), vec![0]);
        let (p, v) = d.fail(0, 100, "lease expired", |_| Verdict::Quarantine).unwrap();
        assert_eq!(
            (p.failures, v, p.first_failure_ms, p.last_failure_ms),
            (2, Verdict::Quarantine, 5, 100)
        );
        assert_eq!(d.take_floor(), Some(1));
    }

    /// Under ordered retry a later record of a key waits until the earlier is done.
    #[test]
    fn key_lane_holds_later_records() {
        let mut d = PartitionDelivery::new(0);
        d.admit(0, Some(7), 0);
        d.admit(1, Some(7), 0);
        d.admit(2, Some(8), 0);
        assert_eq!(d.due(0, 10, |_| true), vec![0, 2]);
        d.lease(0, "m", 99);
        d.fail(0, 1, "x", retry_in(10));
        assert_eq!(d.due(5, 10, |_| true), vec![2]);
        assert_eq!(d.due(10, 10, |_| true), vec![0, 2]);
        d.lease(0, "m", 99);
        d.ack(0, "m", 20).unwrap();
        assert_eq!(d.due(20, 10, |_| true), vec![1, 2]);
    }

    /// Offsets quarantined before a restart are not delivered again, and
    /// failure counts carry over.
    #[test]
    fn restored_history() {
        let mut d = PartitionDelivery::new(0);
        d.restore(0, None);
        d.restore(
            1,
            Some(Restored {
                failures: 2,
                first_failure_ms: 1,
                last_failure_ms: 2,
                reason: "r".into(),
                ready_at_ms: 0,
            }),
        );
        assert!(!d.admit(0, None, 0));
        assert!(d.admit(1, None, 0));
        assert_eq!(d.lease(1, "m", 9), 3);
        assert_eq!(d.floor(), 1);
    }

    quickcheck::quickcheck! {
        /// Against a model, under any mix of acks, failures, expiries and
        /// key lanes: the floor is the first record not done, it never goes
        /// back, and once everything is done each record was acked xor
        /// quarantined, with per-key first successes in offset order.
        fn matches_model(ops: Vec<(u8, u8)>, keys: Vec<u8>) -> bool {
            let n = 24u64;
            let lane = |o: u64| keys.get(o as usize).map(|k| u64::from(k % 3));
            let mut d = PartitionDelivery::new(0);
            for o in 0..n {
                d.admit(o, lane(o), 0);
            }
            let (mut acked, mut quarantined) = (Vec::new(), Vec::new());
            let mut last_floor = 0;
            let mut now = 0;
            let steps = ops.into_iter().map(|(a, b)| (a % 4, u64::from(b) % n));
            // The random steps, then enough acks to finish everything.
            let finish = (0..n * 10).map(|i| (0, i % n));
            for (op, o) in steps.chain(finish) {
                now += 1;
                for due in d.due(now, usize::MAX, |_| true) {
                    d.lease(due, "m", now + 5);
                }
                match op {
                    0 | 1 if d.ack(o, "m", now).is_ok() => acked.push(o),
                    2 => {
                        let verdict = |p: &Pending| {
                            if p.failures >= 3 { Verdict::Quarantine } else { Verdict::RetryAt { ready_at_ms: now + 2 } }
                        };
                        if d.check_lease(o, "m").is_ok() {
                            if let Some((_, Verdict::Quarantine)) = d.fail(o, now, "x", verdict) {
                                quarantined.push(o);
                            }
                        }
                    }
                    _ => {
                        for e in d.expired(now) {
                            d.fail(e, now, "lease", |_| Verdict::RetryAt { ready_at_ms: now });
                        }
                    }
                }
                let done: std::collections::BTreeSet<u64> = acked.iter().chain(&quarantined).copied().collect();
                let model_floor = (0..n).find(|o| !done.contains(o)).unwrap_or(n);
                if d.floor() != model_floor || model_floor < last_floor {
                    return false;
                }
                last_floor = model_floor;
            }
            let mut all: Vec<u64> = acked.iter().chain(&quarantined).copied().collect();
            all.sort_unstable();
            let per_key_in_order = (0..3).all(|k| {
                let firsts: Vec<u64> = acked.iter().copied().filter(|o| lane(*o) == Some(k)).collect();
                firsts.windows(2).all(|w| w[0] < w[1])
            });
            all == (0..n).collect::<Vec<_>>() && d.floor() == n && per_key_in_order
        }
    }

    /// Redriven records are delivered without holding the floor back.
    #[test]
    fn redriven_records_sit_below_the_floor() {
        let mut d = PartitionDelivery::new(100);
        d.redrive(5, 1, 0);
        assert_eq!(d.floor(), 100);
        assert_eq!(d.due(0, 10, |_| true), vec![5]);
        d.lease(5, "m", 10);
        let p = d.ack(5, "m", 1).unwrap();
        assert_eq!(p.redrive_count, 1);
        assert!(!d.is_redriven(5));
    }
}
