//! The delivery ledger: was every acknowledged record consumed, and how often?
//!
//! Producers mark the sequences the broker acknowledged; consumers mark the
//! sequences they received. Each thread keeps its own ledger and the run
//! merges them, then [`DeliveryLedger::verdict`] compares the two sides:
//!
//! - *lost*: acknowledged but never consumed. Always a failure: an ack is a
//!   promise.
//! - *duplicates*: consumed more than once. A failure under exactly-once,
//!   counted but allowed under at-least-once.
//! - *unacked but consumed*: the broker stored it but the ack never reached
//!   the producer (a restart cut the connection). Allowed under both.
//! - *quarantined*: acknowledged, never processed, and found in the group's
//!   quarantine after the run (its deliveries kept failing). Not lost: the
//!   broker kept it where the delivery contract says it goes.
//!
//! Memory is one byte per sequence per producer (a saturating receive
//! count) plus one bit for the ack; at most [`LEDGER_RECORDS_MAX`] sequences
//! per producer are tracked, later ones are counted as `untracked`.

use serde::Serialize;

/// Sequences tracked per producer.
pub const LEDGER_RECORDS_MAX: u64 = 256 * 1024 * 1024;

/// What the run promised about delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    AtLeastOnce,
    ExactlyOnce,
}

#[derive(Clone, Debug, Default)]
struct ProducerSide {
    acked: Vec<u64>,
    received: Vec<u8>,
    quarantined: Vec<u64>,
}

/// Sets bit `sequence` of a bitset, growing it as needed.
fn set_bit(bits: &mut Vec<u64>, sequence: u64) {
    let words = (sequence / 64 + 1) as usize;
    if bits.len() < words {
        bits.resize(words, 0);
    }
    bits[(sequence / 64) as usize] |= 1 << (sequence % 64);
}

fn bit(bits: &[u64], sequence: usize) -> bool {
    bits.get(sequence / 64)
        .is_some_and(|w| w & (1 << (sequence % 64)) != 0)
}

/// ORs `theirs` into `ours`.
fn merge_bits(ours: &mut Vec<u64>, theirs: &[u64]) {
    if ours.len() < theirs.len() {
        ours.resize(theirs.len(), 0);
    }
    for (a, b) in ours.iter_mut().zip(theirs) {
        *a |= *b;
    }
}

/// Acks and receipts per producer and sequence.
#[derive(Clone, Debug, Default)]
pub struct DeliveryLedger {
    producers: Vec<ProducerSide>,
    untracked: u64,
    foreign: u64,
}

/// The comparison of both sides.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryVerdict {
    pub acked: u64,
    pub consumed_distinct: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub unacked_but_consumed: u64,
    /// Acknowledged, never processed, and in the group's quarantine.
    pub quarantined: u64,
    /// Sequences beyond [`LEDGER_RECORDS_MAX`], not verified.
    pub untracked: u64,
    /// Values without a benchmark stamp (not produced by this run).
    pub foreign: u64,
    /// Up to ten lost `(producer, sequence)` pairs, to start an investigation.
    pub lost_examples: Vec<(u32, u64)>,
    pub ok: bool,
}

impl DeliveryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// The broker acknowledged `sequence` of `producer`.
    pub fn ack(&mut self, producer: u32, sequence: u64) {
        if let Some(side) = self.side(producer, sequence) {
            set_bit(&mut side.acked, sequence);
        }
    }

    /// `sequence` of `producer` sits in the consumer group's quarantine.
    pub fn quarantine(&mut self, producer: u32, sequence: u64) {
        if let Some(side) = self.side(producer, sequence) {
            set_bit(&mut side.quarantined, sequence);
        }
    }

    /// A consumer received `sequence` of `producer`.
    pub fn receive(&mut self, producer: u32, sequence: u64) {
        if let Some(side) = self.side(producer, sequence) {
            let at = sequence as usize;
            if side.received.len() <= at {
                side.received.resize(at + 1, 0);
            }
            side.received[at] = side.received[at].saturating_add(1);
        }
    }

    /// A consumer received a value without a stamp.
    pub fn receive_foreign(&mut self) {
        self.foreign += 1;
    }

    /// Adds another thread's ledger into this one.
    pub fn merge(&mut self, other: &DeliveryLedger) {
        if self.producers.len() < other.producers.len() {
            self.producers
                .resize_with(other.producers.len(), ProducerSide::default);
        }
        for (ours, theirs) in self.producers.iter_mut().zip(&other.producers) {
            merge_bits(&mut ours.acked, &theirs.acked);
            merge_bits(&mut ours.quarantined, &theirs.quarantined);
            if ours.received.len() < theirs.received.len() {
                ours.received.resize(theirs.received.len(), 0);
            }
            for (a, b) in ours.received.iter_mut().zip(&theirs.received) {
                *a = a.saturating_add(*b);
            }
        }
        self.untracked += other.untracked;
        self.foreign += other.foreign;
    }

    /// Compares acks with receipts under the promised delivery.
    pub fn verdict(&self, delivery: Delivery) -> DeliveryVerdict {
        let mut v = DeliveryVerdict {
            untracked: self.untracked,
            foreign: self.foreign,
            ..Default::default()
        };
        for (producer, side) in self.producers.iter().enumerate() {
            let len = side.received.len().max(side.acked.len() * 64);
            for seq in 0..len {
                let acked = bit(&side.acked, seq);
                let received = u64::from(side.received.get(seq).copied().unwrap_or(0));
                v.acked += u64::from(acked);
                v.consumed_distinct += u64::from(received > 0);
                v.duplicates += received.saturating_sub(1);
                if acked && received == 0 && bit(&side.quarantined, seq) {
                    v.quarantined += 1;
                } else if acked && received == 0 {
                    v.lost += 1;
                    if v.lost_examples.len() < 10 {
                        v.lost_examples.push((producer as u32, seq as u64));
                    }
                }
                v.unacked_but_consumed += u64::from(!acked && received > 0);
            }
        }
        v.ok = v.lost == 0 && (delivery == Delivery::AtLeastOnce || v.duplicates == 0);
        v
    }

    fn side(&mut self, producer: u32, sequence: u64) -> Option<&mut ProducerSide> {
        if sequence >= LEDGER_RECORDS_MAX {
            self.untracked += 1;
            return None;
        }
        let at = producer as usize;
        if self.producers.len() <= at {
            self.producers.resize_with(at + 1, ProducerSide::default);
        }
        Some(&mut self.producers[at])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_run_is_ok_under_both_promises() {
        // Proves every acked record consumed once yields no loss, no duplicate, ok.
        let mut producer = DeliveryLedger::new();
        let mut consumer = DeliveryLedger::new();
        for seq in 0..1_000 {
            producer.ack(0, seq);
            consumer.receive(0, seq);
        }
        producer.merge(&consumer);
        for delivery in [Delivery::AtLeastOnce, Delivery::ExactlyOnce] {
            let v = producer.verdict(delivery);
            assert_eq!(
                (v.acked, v.consumed_distinct, v.lost, v.duplicates),
                (1_000, 1_000, 0, 0)
            );
            assert!(v.ok);
        }
    }

    #[test]
    fn loss_and_duplicates_are_found_across_threads() {
        // Proves a lost acked record fails both promises and a duplicate fails only exactly-once.
        let mut p0 = DeliveryLedger::new();
        let mut p1 = DeliveryLedger::new();
        let mut c0 = DeliveryLedger::new();
        let mut c1 = DeliveryLedger::new();
        for seq in 0..100 {
            p0.ack(0, seq);
            p1.ack(1, seq);
            if seq != 42 {
                c0.receive(0, seq);
            }
            c1.receive(1, seq);
        }
        c0.receive(1, 7); // a redelivery seen by another consumer
        c1.receive(1, 100); // stored but never acked (ack lost in a restart)
        p0.merge(&p1);
        p0.merge(&c0);
        p0.merge(&c1);
        let v = p0.verdict(Delivery::AtLeastOnce);
        assert_eq!(v.lost, 1);
        assert_eq!(v.lost_examples, vec![(0, 42)]);
        assert_eq!(v.duplicates, 1);
        assert_eq!(v.unacked_but_consumed, 1);
        assert!(!v.ok);

        let mut no_loss = DeliveryLedger::new();
        no_loss.ack(3, 0);
        no_loss.receive(3, 0);
        no_loss.receive(3, 0);
        assert!(no_loss.verdict(Delivery::AtLeastOnce).ok);
        assert!(!no_loss.verdict(Delivery::ExactlyOnce).ok);
    }

    #[test]
    fn quarantined_records_are_not_lost_but_unquarantined_ones_are() {
        // Proves an acked record found in the quarantine counts as quarantined (run ok), while an
        // acked record neither consumed nor quarantined is still lost, across merged ledgers.
        let mut producer = DeliveryLedger::new();
        let mut consumer = DeliveryLedger::new();
        let mut dlq = DeliveryLedger::new();
        for seq in 0..100 {
            producer.ack(0, seq);
            if seq % 10 != 0 {
                consumer.receive(0, seq);
            }
        }
        for seq in (0..100).step_by(10) {
            dlq.quarantine(0, seq);
        }
        producer.merge(&consumer);
        producer.merge(&dlq);
        let v = producer.verdict(Delivery::ExactlyOnce);
        assert_eq!(
            (v.acked, v.consumed_distinct, v.quarantined, v.lost),
            (100, 90, 10, 0)
        );
        assert!(v.ok);

        let mut partial = DeliveryLedger::new();
        partial.ack(0, 1);
        partial.ack(0, 2);
        partial.quarantine(0, 1);
        let v = partial.verdict(Delivery::AtLeastOnce);
        assert_eq!(
            (v.quarantined, v.lost, v.lost_examples.clone()),
            (1, 1, vec![(0, 2)])
        );
        assert!(!v.ok);
    }

    #[test]
    fn sequences_beyond_the_bound_are_counted() {
        // Proves a sequence past LEDGER_RECORDS_MAX is counted as untracked, not stored.
        let mut l = DeliveryLedger::new();
        l.ack(0, LEDGER_RECORDS_MAX);
        l.receive_foreign();
        let v = l.verdict(Delivery::AtLeastOnce);
        assert_eq!((v.untracked, v.foreign, v.acked), (1, 1, 0));
    }
}
