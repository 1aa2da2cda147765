//! Group-commit bookkeeping (sans-IO): how far the appended bytes got, and
//! what the writer and the syncer must do next.
//!
//! Marks (a [`Mark`] is an offset and where its batch boundary lies in its
//! segment), only ever moving forward except when `truncate_suffix` resets
//! them:
//! - `written`: every batch below it is in its segment file (its write
//!   completed, in file order);
//! - `synced`: every batch below it is covered by an fdatasync that
//!   *started after* the write holding its last byte completed, and
//!   returned Ok;
//! - the durable checkpoint: the newest [`Checkpoint`] of the active
//!   segment whose header write completed before an fdatasync that
//!   returned Ok. Recovery reports damage below it instead of cutting it.
//!
//! A completed write moves `written` and marks its segment dirty; a sync
//! round snapshots `written`, the dirty segments and the newest checkpoint
//! written when it starts ([`GroupCommit::sync_step`]), and only when every
//! fdatasync of the round returned Ok moves `synced` and the durable
//! checkpoint to that snapshot ([`GroupCommit::sync_done`]). A write that
//! completes while a round runs is never counted as covered by it: the next
//! round covers it. That pipelining is the group commit: one fdatasync
//! covers every append written while the previous one ran.
//!
//! The checkpoint trails `synced`: its header write is issued only once
//! `synced` covers what it claims (so no version a power cut leaves on disk
//! claims more than is durable), beside the next round's fdatasync, and the
//! round after that makes it durable. No fdatasync and no awaited write is
//! added per round for it: every round carries the checkpoint of what the
//! previous one synced, so damage to a batch acknowledged before two
//! completed fdatasyncs of its segment is always reported. A settle request
//! ([`GroupCommit::request_settle`], for flush, roll, close, truncation and
//! an idle `IntervalMs` tick) writes the checkpoint on its own and runs the
//! extra round that makes it durable now.
//!
//! A failed or short write and a failed fdatasync **fence**: the first
//! failure is kept, every later append and wait fails with it, and no mark
//! moves again (the kernel may have dropped the dirty state, so nothing is
//! retried and trusted).
//!
//! The I/O glue is `write_pipeline`; this module only decides, so it is
//! tested without a runtime (unit tests and quickcheck properties below).
//! The segment handle type `S` is opaque here (the glue's `Rc<Segment>`,
//! `()` or a number in tests); segments are told apart by their base offset.

use crate::checkpoint::Checkpoint;
use crate::config::FlushPolicy;
use crate::mutation::{self, Mutation};

/// How far an acknowledged append got. Ordered: `Fsynced` implies `Written`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Durability {
    /// Accepted in the tail buffer and cache; lost if the process dies.
    Memory,
    /// Written to the file (O_DIRECT), not yet fdatasynced: survives a
    /// process crash, not necessarily a power loss.
    Written,
    /// Covered by a completed fdatasync: survives a power loss.
    Fsynced,
}

/// A batch boundary: one past the offset of a batch, the segment holding
/// it, and where the batch ends in that segment's data, with the segment's
/// digest up to there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    pub offset: u64,
    pub segment: u64,
    pub data_len: u64,
    pub digest: u32,
}

impl Mark {
    /// The start of an empty segment.
    pub fn segment_start(base_offset: u64) -> Self {
        Mark {
            offset: base_offset,
            segment: base_offset,
            data_len: 0,
            digest: 0,
        }
    }

    fn checkpoint(&self, sequence: u64) -> Checkpoint {
        Checkpoint {
            sequence,
            base_offset: self.segment,
            data_len: self.data_len,
            next_offset: self.offset,
            digest: self.digest,
        }
    }
}

/// What the writer reports for one finished write, handed over in file
/// order (the order the writes were submitted).
#[derive(Debug)]
pub(crate) struct WriteDone<S> {
    /// The segment written, and its base offset (its identity).
    pub segment: S,
    pub segment_base: u64,
    /// The last batch boundary within this write or before it.
    pub reached: Mark,
    /// Bytes submitted (whole aligned blocks).
    pub submitted: usize,
    /// Bytes the device reported written, or why the write failed.
    pub outcome: Result<usize, String>,
}

/// A header write of the active segment: `checkpoint` in its slot and
/// `previous` (the last one written) in the other.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointWrite<S> {
    pub segment: S,
    pub checkpoint: Checkpoint,
    pub previous: Option<Checkpoint>,
}

/// One sync round: fdatasync every file, then everything below `target`
/// is synced and `covers` is the durable checkpoint. `checkpoint_write`,
/// if any, runs beside the fdatasyncs and is *not* covered by them.
#[derive(Debug)]
pub(crate) struct SyncRound<S> {
    pub target: Mark,
    pub files: Vec<S>,
    pub covers: Option<Checkpoint>,
    pub checkpoint_write: Option<CheckpointWrite<S>>,
}

/// What the syncer does next.
#[derive(Debug)]
pub(crate) enum SyncStep<S> {
    Round(SyncRound<S>),
    /// Write the checkpoint now (nothing to fdatasync yet).
    WriteCheckpoint(CheckpointWrite<S>),
    Idle,
}

/// The failure that made the log read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fence {
    pub operation: &'static str,
    pub cause: String,
}

/// The marks, the dirty segments and the checkpoint of one log; see the
/// module header.
#[derive(Debug)]
pub(crate) struct GroupCommit<S> {
    written: Mark,
    synced: Mark,
    sync_requested: u64,
    settle_requested: u64,
    /// Segments written since the last sync round started, oldest first.
    dirty: Vec<(u64, S)>,
    /// The segment appends go to, whose header takes the checkpoints.
    active: (u64, S),
    /// The newest checkpoint whose header write completed, and the newest
    /// one covered by a completed fdatasync (`None` after a reset: the
    /// header may claim more than the log now holds until rewritten).
    checkpoint_written: Option<Checkpoint>,
    checkpoint_durable: Option<Checkpoint>,
    sequence: u64,
    checkpoint_in_flight: bool,
    round_in_flight: bool,
    fence: Option<Fence>,
}

impl<S: Clone> GroupCommit<S> {
    /// A log whose recovered bytes end at `end` in the segment `active`,
    /// all of them on stable storage (recovery made them so), with
    /// `durable` the checkpoint its header holds.
    pub fn new(end: Mark, durable: Checkpoint, active: S) -> Self {
        GroupCommit {
            written: end,
            synced: end,
            sync_requested: end.offset,
            settle_requested: 0,
            dirty: Vec::new(),
            active: (end.segment, active),
            checkpoint_written: Some(durable),
            checkpoint_durable: Some(durable),
            sequence: durable.sequence,
            checkpoint_in_flight: false,
            round_in_flight: false,
            fence: None,
        }
    }

    pub fn written(&self) -> u64 {
        self.written.offset
    }

    pub fn synced(&self) -> u64 {
        self.synced.offset
    }

    /// One past the last offset the durable checkpoint covers (0 when it
    /// is unknown, after a reset).
    #[cfg(test)]
    pub fn settled(&self) -> u64 {
        self.checkpoint_durable.map_or(0, |cp| cp.next_offset)
    }

    /// Whether the durable checkpoint covers everything below `offset`
    /// (never while it is unknown, even for offset 0).
    pub fn is_settled(&self, offset: u64) -> bool {
        self.checkpoint_durable.is_some_and(|cp| cp.next_offset >= offset)
    }

    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }

    /// Keeps the first failure; later ones add nothing.
    pub fn set_fence(&mut self, operation: &'static str, cause: String) {
        self.fence.get_or_insert(Fence { operation, cause });
    }

    /// Whether a sync round or a checkpoint write is running.
    pub fn busy(&self) -> bool {
        self.round_in_flight || self.checkpoint_in_flight
    }

    /// Accounts one finished write (in file order). A failed or short write
    /// fences and moves nothing.
    pub fn write_done(&mut self, done: WriteDone<S>) -> Result<(), Fence> {
        self.check_live()?;
        let failure = match done.outcome {
            Ok(n) if n == done.submitted => None,
            Ok(n) => Some(format!("short write: {n} of {} bytes", done.submitted)),
            Err(cause) => Some(cause),
        };
        if let Some(cause) = failure {
            self.set_fence("write", cause);
            return self.check_live();
        }
        self.mark_dirty(done.segment_base, done.segment);
        if done.reached.offset >= self.written.offset {
            self.written = done.reached;
        }
        Ok(())
    }

    fn mark_dirty(&mut self, base: u64, segment: S) {
        if !self.dirty.iter().any(|(b, _)| *b == base) {
            self.dirty.push((base, segment));
        }
    }

    /// Asks the syncer to run until `synced` reaches `offset`.
    pub fn request_sync(&mut self, offset: u64) {
        self.sync_requested = self.sync_requested.max(offset);
    }

    /// Asks the syncer to make the checkpoint durable up to `offset` (and
    /// so to sync up to it first).
    pub fn request_settle(&mut self, offset: u64) {
        self.request_sync(offset);
        self.settle_requested = self.settle_requested.max(offset);
    }

    /// Whether a round must run to move `synced`: something written is not
    /// yet synced, and the policy or a request wants it synced.
    fn data_sync_wanted(&self, flush: FlushPolicy) -> bool {
        let wanted = flush == FlushPolicy::Always || self.sync_requested > self.synced.offset;
        wanted && self.written.offset > self.synced.offset
    }

    /// Whether the checkpoint lags `synced` in the active segment.
    fn checkpoint_due(&self) -> bool {
        let lags = self
            .checkpoint_written
            .is_none_or(|cp| cp.next_offset < self.synced.offset || cp.data_len < self.synced.data_len);
        !self.checkpoint_in_flight && self.synced.segment == self.active.0 && lags
    }

    fn take_checkpoint_write(&mut self) -> Option<CheckpointWrite<S>> {
        if !self.checkpoint_due() {
            return None;
        }
        self.checkpoint_in_flight = true;
        self.sequence += 1;
        Some(CheckpointWrite {
            segment: self.active.1.clone(),
            checkpoint: self.synced.checkpoint(self.sequence),
            previous: self.checkpoint_written,
        })
    }

    /// What the syncer does next: a round when data waits for an fdatasync
    /// (with the due checkpoint written beside it); else, while a settle is
    /// asked for, the due checkpoint alone, then a round that makes it
    /// durable. A lone checkpoint write is awaited before the next round
    /// may start, so it is done only for a settle, never on the hot path:
    /// without one the checkpoint rides beside the next data round.
    pub fn sync_step(&mut self, flush: FlushPolicy) -> SyncStep<S> {
        if self.fence.is_some() || self.busy() {
            return SyncStep::Idle;
        }
        if self.data_sync_wanted(flush) {
            let checkpoint_write = self.take_checkpoint_write();
            return SyncStep::Round(self.start_round(checkpoint_write));
        }
        if self.is_settled(self.settle_requested) {
            return SyncStep::Idle;
        }
        if let Some(write) = self.take_checkpoint_write() {
            return SyncStep::WriteCheckpoint(write);
        }
        let settles = self
            .checkpoint_written
            .is_some_and(|cp| Some(cp) != self.checkpoint_durable);
        if settles {
            return SyncStep::Round(self.start_round(None));
        }
        SyncStep::Idle
    }

    fn start_round(&mut self, checkpoint_write: Option<CheckpointWrite<S>>) -> SyncRound<S> {
        self.round_in_flight = true;
        if mutation::active(Mutation::AckBeforeSync) {
            self.synced = self.written;
        }
        SyncRound {
            target: self.written,
            files: self.dirty.drain(..).map(|(_, s)| s).collect(),
            covers: self.checkpoint_written,
            checkpoint_write,
        }
    }

    /// A checkpoint's header write finished. Once it completed, the next
    /// round's fdatasync of the active segment makes it durable.
    pub fn checkpoint_done(
        &mut self,
        write: &CheckpointWrite<S>,
        outcome: Result<(), String>,
    ) -> Result<(), Fence> {
        self.checkpoint_in_flight = false;
        self.check_live()?;
        if let Err(cause) = outcome {
            self.set_fence("write", cause);
            return self.check_live();
        }
        if write.checkpoint.base_offset == self.active.0 {
            self.checkpoint_written = Some(write.checkpoint);
            self.mark_dirty(self.active.0, self.active.1.clone());
        }
        Ok(())
    }

    /// Ends a sync round: every fdatasync returned Ok (then `synced` and the
    /// durable checkpoint move to the round's snapshot) or one failed (then
    /// the log is fenced).
    pub fn sync_done(&mut self, round: &SyncRound<S>, outcome: Result<(), String>) -> Result<(), Fence> {
        self.round_in_flight = false;
        self.check_live()?;
        if let Err(cause) = outcome {
            self.set_fence("fdatasync", cause);
            return self.check_live();
        }
        if round.target.offset >= self.synced.offset {
            self.synced = round.target;
        }
        let newer = |cp: &Checkpoint| self.checkpoint_durable.is_none_or(|d| cp.sequence > d.sequence);
        if let Some(cp) = round
            .covers
            .filter(|cp| cp.base_offset == self.active.0 && newer(cp))
        {
            self.checkpoint_durable = Some(cp);
        }
        Ok(())
    }

    /// The durability the batches ending before `next` have reached.
    pub fn durability_of(&self, next: u64) -> Durability {
        if self.synced.offset >= next {
            Durability::Fsynced
        } else if self.written.offset >= next {
            Durability::Written
        } else {
            Durability::Memory
        }
    }

    /// The end of what appends under `flush` have been acknowledged (in
    /// single-node mode, the high watermark).
    pub fn acked_end(&self, flush: FlushPolicy, log_end: u64) -> u64 {
        match flush {
            FlushPolicy::Always => self.synced.offset,
            FlushPolicy::IntervalMs(_) => self.written.offset,
            FlushPolicy::Never => log_end,
        }
    }

    /// Under `IntervalMs`, each tick: sync what was appended since the last
    /// round, or, when there is nothing, settle the checkpoint.
    pub fn interval_tick(&mut self, log_end: u64) {
        if log_end > self.synced.offset {
            self.request_sync(log_end);
        } else {
            self.request_settle(self.synced.offset);
        }
    }

    /// Appends go to a new segment starting at `base` (after a roll, which
    /// settled the previous one): it holds nothing, so its empty checkpoint
    /// is all there is to claim.
    pub fn start_segment(&mut self, base: u64, segment: S) {
        let empty = Checkpoint::empty(base);
        self.active = (base, segment);
        self.checkpoint_written = Some(empty);
        self.checkpoint_durable = Some(empty);
    }

    /// Forgets everything beyond `end` in `segment`, now the active one
    /// (after `truncate_suffix`, which synced the log and waited for the
    /// syncer to be idle before cutting it). The header may claim more than
    /// the log now holds, so the checkpoint is unknown until rewritten; a
    /// settle up to `end` is requested for that.
    pub fn reset(&mut self, end: Mark, segment: S) {
        debug_assert!(!self.busy(), "reset while the syncer works");
        self.written = end;
        self.synced = end;
        self.sync_requested = end.offset;
        self.settle_requested = end.offset;
        self.dirty.clear();
        self.active = (end.segment, segment);
        self.checkpoint_written = None;
        self.checkpoint_durable = None;
    }

    fn check_live(&self) -> Result<(), Fence> {
        match &self.fence {
            Some(fence) => Err(fence.clone()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{Arbitrary, Gen, QuickCheck};

    /// The mark after `offset`, in segment 0, ten bytes per offset.
    fn at(offset: u64) -> Mark {
        Mark {
            offset,
            segment: 0,
            data_len: offset * 10,
            digest: offset as u32,
        }
    }

    fn fresh(end: u64) -> GroupCommit<u64> {
        GroupCommit::new(at(end), at(end).checkpoint(0), 0)
    }

    fn write(end: u64) -> WriteDone<u64> {
        WriteDone {
            segment: 0,
            segment_base: 0,
            reached: at(end),
            submitted: 4096,
            outcome: Ok(4096),
        }
    }

    fn round(step: SyncStep<u64>) -> SyncRound<u64> {
        match step {
            SyncStep::Round(round) => round,
            other => panic!("expected a round, got {other:?}"),
        }
    }

    /// A write completed during a sync round is not covered by it; the
    /// next round covers it, and only then is it `Fsynced`.
    #[test]
    fn write_during_sync_waits_for_next_round() {
        let mut gc = fresh(0);
        gc.write_done(write(10)).unwrap();
        assert_eq!(gc.durability_of(10), Durability::Written);
        let first = round(gc.sync_step(FlushPolicy::Always));
        assert_eq!((first.target.offset, first.files.len()), (10, 1));
        assert!(
            matches!(gc.sync_step(FlushPolicy::Always), SyncStep::Idle),
            "one step at a time"
        );
        gc.write_done(write(20)).unwrap();
        gc.sync_done(&first, Ok(())).unwrap();
        assert_eq!(gc.durability_of(10), Durability::Fsynced);
        assert_eq!(gc.durability_of(20), Durability::Written);
        let next = round(gc.sync_step(FlushPolicy::Always));
        assert_eq!((next.target.offset, next.files.len()), (20, 1));
        gc.sync_done(&next, Ok(())).unwrap();
        assert_eq!(gc.durability_of(20), Durability::Fsynced);
    }

    /// Without flush `always` the syncer runs only up to a request.
    #[test]
    fn sync_only_on_request_unless_always() {
        let mut gc = fresh(5);
        gc.write_done(write(9)).unwrap();
        assert!(matches!(gc.sync_step(FlushPolicy::Never), SyncStep::Idle));
        assert!(matches!(
            gc.sync_step(FlushPolicy::IntervalMs(10)),
            SyncStep::Idle
        ));
        gc.request_sync(9);
        let r = round(gc.sync_step(FlushPolicy::Never));
        gc.sync_done(&r, Ok(())).unwrap();
        assert_eq!(gc.synced(), 9);
        assert_eq!(gc.acked_end(FlushPolicy::Never, 30), 30);
        assert_eq!(gc.acked_end(FlushPolicy::IntervalMs(1), 30), 9);
        assert_eq!(gc.acked_end(FlushPolicy::Always, 30), 9);
    }

    /// Each dirty segment is fdatasynced once per round, oldest first.
    #[test]
    fn dirty_segments_once_each() {
        let mut gc = fresh(0);
        for (base, end) in [(0, 3), (0, 6), (6, 8), (0, 6), (6, 9)] {
            gc.write_done(WriteDone {
                segment: base,
                segment_base: base,
                reached: at(end),
                submitted: 1,
                outcome: Ok(1),
            })
            .unwrap();
        }
        assert_eq!(round(gc.sync_step(FlushPolicy::Always)).files, vec![0, 6]);
    }

    /// A checkpoint is written only for what is synced, beside the next
    /// round's fdatasync (which does not cover it), and is durable after
    /// the round after that.
    #[test]
    fn checkpoint_trails_synced_by_one_round() {
        let mut gc = fresh(0);
        gc.write_done(write(10)).unwrap();
        let r1 = round(gc.sync_step(FlushPolicy::Always));
        assert!(r1.checkpoint_write.is_none(), "nothing synced yet to claim");
        gc.sync_done(&r1, Ok(())).unwrap();
        gc.write_done(write(20)).unwrap();
        let r2 = round(gc.sync_step(FlushPolicy::Always));
        let cw = r2.checkpoint_write.clone().expect("checkpoint beside round 2");
        assert_eq!((cw.checkpoint.next_offset, cw.checkpoint.data_len), (10, 100));
        gc.checkpoint_done(&cw, Ok(())).unwrap();
        gc.sync_done(&r2, Ok(())).unwrap();
        assert_eq!(
            gc.settled(),
            0,
            "the checkpoint written beside round 2 is not covered by it"
        );
        gc.write_done(write(30)).unwrap();
        let r3 = round(gc.sync_step(FlushPolicy::Always));
        assert_eq!(r3.covers.map(|c| c.next_offset), Some(10));
        gc.sync_done(&r3, Ok(())).unwrap();
        assert_eq!(gc.settled(), 10);
    }

    /// A settle request runs sync, checkpoint write and a covering round,
    /// and then nothing more.
    #[test]
    fn settle_makes_the_checkpoint_durable() {
        let mut gc = fresh(0);
        gc.write_done(write(7)).unwrap();
        gc.request_settle(7);
        let r = round(gc.sync_step(FlushPolicy::Never));
        assert!(r.checkpoint_write.is_none());
        gc.sync_done(&r, Ok(())).unwrap();
        let SyncStep::WriteCheckpoint(cw) = gc.sync_step(FlushPolicy::Never) else {
            panic!("expected the checkpoint write");
        };
        assert_eq!(cw.checkpoint.next_offset, 7);
        gc.checkpoint_done(&cw, Ok(())).unwrap();
        let settle = round(gc.sync_step(FlushPolicy::Never));
        assert_eq!(settle.files, vec![0], "the header write made the segment dirty");
        gc.sync_done(&settle, Ok(())).unwrap();
        assert_eq!(gc.settled(), 7);
        assert!(matches!(gc.sync_step(FlushPolicy::Always), SyncStep::Idle));
    }

    /// Under `IntervalMs` a tick syncs what was appended; the next tick,
    /// with nothing new, settles the checkpoint; a third does nothing.
    #[test]
    fn interval_ticks_sync_then_settle() {
        let policy = FlushPolicy::IntervalMs(5);
        let mut gc = fresh(0);
        gc.write_done(write(6)).unwrap();
        assert!(
            matches!(gc.sync_step(policy), SyncStep::Idle),
            "no sync before the tick"
        );
        gc.interval_tick(6);
        let r = round(gc.sync_step(policy));
        gc.sync_done(&r, Ok(())).unwrap();
        assert!(
            matches!(gc.sync_step(policy), SyncStep::Idle),
            "no lone checkpoint write unasked"
        );
        gc.interval_tick(6);
        let SyncStep::WriteCheckpoint(cw) = gc.sync_step(policy) else {
            panic!("an idle tick settles the checkpoint");
        };
        gc.checkpoint_done(&cw, Ok(())).unwrap();
        let settle = round(gc.sync_step(policy));
        gc.sync_done(&settle, Ok(())).unwrap();
        assert!(gc.is_settled(6));
        gc.interval_tick(6);
        assert!(matches!(gc.sync_step(policy), SyncStep::Idle));
    }

    /// After a reset (truncation) the checkpoint is unknown until a settle
    /// rewrites it at the new end; a new segment starts settled.
    #[test]
    fn reset_and_roll() {
        let mut gc = fresh(9);
        gc.reset(at(4), 0);
        assert_eq!((gc.written(), gc.synced(), gc.settled()), (4, 4, 0));
        let SyncStep::WriteCheckpoint(cw) = gc.sync_step(FlushPolicy::Never) else {
            panic!("the truncated end must be checkpointed");
        };
        assert_eq!(cw.checkpoint.next_offset, 4);
        gc.checkpoint_done(&cw, Ok(())).unwrap();
        let r = round(gc.sync_step(FlushPolicy::Never));
        gc.sync_done(&r, Ok(())).unwrap();
        assert_eq!(gc.settled(), 4);
        gc.start_segment(50, 50);
        assert_eq!(gc.settled(), 50, "an empty segment claims nothing");

        // Truncating to the very start: the old header still claims data,
        // so even offset 0 is not settled until the new checkpoint is.
        let mut gc = fresh(9);
        gc.reset(Mark::segment_start(0), 0);
        assert!(!gc.is_settled(0));
        let SyncStep::WriteCheckpoint(cw) = gc.sync_step(FlushPolicy::Never) else {
            panic!("the empty segment must be checkpointed");
        };
        gc.checkpoint_done(&cw, Ok(())).unwrap();
        let r = round(gc.sync_step(FlushPolicy::Never));
        gc.sync_done(&r, Ok(())).unwrap();
        assert!(gc.is_settled(0));
    }

    /// A short write, a failed write and a failed fdatasync fence for good:
    /// the first cause is kept and no mark moves again.
    #[test]
    fn failures_fence() {
        let mut gc = fresh(0);
        let mut short = write(4);
        short.outcome = Ok(512);
        let fence = gc.write_done(short).unwrap_err();
        assert_eq!(fence.operation, "write");
        assert!(fence.cause.contains("short write"), "{fence:?}");
        assert!(gc.write_done(write(8)).is_err());
        assert_eq!(gc.written(), 0);
        assert!(matches!(gc.sync_step(FlushPolicy::Always), SyncStep::Idle));

        let mut gc = fresh(0);
        gc.write_done(write(4)).unwrap();
        let r = round(gc.sync_step(FlushPolicy::Always));
        let fence = gc.sync_done(&r, Err("EIO".into())).unwrap_err();
        assert_eq!(
            fence,
            Fence {
                operation: "fdatasync",
                cause: "EIO".into()
            }
        );
        assert_eq!(gc.synced(), 0);
        gc.set_fence("write", "later".into());
        assert_eq!(
            gc.fence().unwrap().operation,
            "fdatasync",
            "the first cause stays"
        );
    }

    /// Events the glue may deliver, in any interleaving it allows.
    #[derive(Debug, Clone)]
    enum Event {
        /// The next write (in file order) completes, reaching `adds` more offsets.
        WriteDone {
            adds: u8,
        },
        /// The syncer starts its next step, if it is idle.
        Step,
        /// The running step's checkpoint write completes.
        CheckpointDone,
        /// The running step's fdatasyncs complete.
        RoundDone,
        Request {
            ahead: u8,
        },
        Settle,
    }

    impl Arbitrary for Event {
        fn arbitrary(g: &mut Gen) -> Self {
            match u8::arbitrary(g) % 7 {
                0 | 1 => Event::WriteDone {
                    adds: u8::arbitrary(g) % 5,
                },
                2 => Event::Step,
                3 => Event::CheckpointDone,
                4 => Event::RoundDone,
                5 => Event::Request {
                    ahead: u8::arbitrary(g) % 8,
                },
                _ => Event::Settle,
            }
        }
    }

    /// An independent record of what happened, to judge the machine by.
    #[derive(Default)]
    struct Judge {
        /// Event index at which each offset's write completed.
        written_at: Vec<usize>,
        /// Events at which fdatasyncs that have completed had started.
        rounds_started: Vec<usize>,
        /// `synced` offset when each checkpoint write was issued.
        issued_claims: Vec<(u64, u64)>,
    }

    /// Over any event sequence (policy `always`): marks never go back; an
    /// offset is `Fsynced` only once a round that started after its write
    /// completed has finished; a checkpoint never claims more than was
    /// synced when its write was issued; and once two rounds that started
    /// after an offset became `Fsynced` have finished, the durable
    /// checkpoint covers it.
    fn marks_are_honest(events: Vec<Event>) -> bool {
        let mut gc = fresh(0);
        let mut judge = Judge::default();
        let mut end = 0u64;
        let mut step: Option<(SyncStep<u64>, usize)> = None;
        let mut fsynced_at: Vec<Option<usize>> = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let (w, s, c) = (gc.written(), gc.synced(), gc.settled());
            match *event {
                Event::WriteDone { adds } => {
                    end += u64::from(adds);
                    judge.written_at.resize(end as usize, i);
                    fsynced_at.resize(end as usize, None);
                    gc.write_done(write(end)).unwrap();
                }
                Event::Step if step.is_none() => {
                    let next = gc.sync_step(FlushPolicy::Always);
                    let claim = match &next {
                        SyncStep::Round(r) => r.checkpoint_write.as_ref().map(|cw| cw.checkpoint.next_offset),
                        SyncStep::WriteCheckpoint(cw) => Some(cw.checkpoint.next_offset),
                        SyncStep::Idle => None,
                    };
                    if let Some(claim) = claim {
                        judge.issued_claims.push((claim, gc.synced()));
                    }
                    if !matches!(next, SyncStep::Idle) {
                        step = Some((next, i));
                    }
                }
                Event::CheckpointDone => match step.take() {
                    Some((SyncStep::WriteCheckpoint(cw), _)) => gc.checkpoint_done(&cw, Ok(())).unwrap(),
                    Some((SyncStep::Round(mut r), started)) => {
                        if let Some(cw) = r.checkpoint_write.take() {
                            gc.checkpoint_done(&cw, Ok(())).unwrap();
                        }
                        step = Some((SyncStep::Round(r), started));
                    }
                    other => step = other,
                },
                Event::RoundDone => match step.take() {
                    Some((SyncStep::Round(r), started)) if r.checkpoint_write.is_none() => {
                        gc.sync_done(&r, Ok(())).unwrap();
                        judge.rounds_started.push(started);
                    }
                    other => step = other,
                },
                Event::Request { ahead } => gc.request_sync(end + u64::from(ahead)),
                Event::Settle => gc.request_settle(end),
                Event::Step => {}
            }
            if gc.written() < w || gc.synced() < s || gc.settled() < c || gc.synced() > gc.written() {
                return false;
            }
            for (o, fsynced) in fsynced_at.iter_mut().enumerate() {
                if gc.durability_of(o as u64 + 1) == Durability::Fsynced && fsynced.is_none() {
                    *fsynced = Some(i);
                    if !judge.rounds_started.iter().any(|&r| r > judge.written_at[o]) {
                        return false;
                    }
                }
                let later_rounds =
                    fsynced.map_or(0, |f| judge.rounds_started.iter().filter(|&&r| r > f).count());
                if later_rounds >= 2 && gc.settled() <= o as u64 {
                    return false;
                }
            }
            if judge.issued_claims.iter().any(|&(claim, synced)| claim > synced) {
                return false;
            }
        }
        true
    }

    #[test]
    fn quickcheck_marks_are_honest() {
        QuickCheck::new()
            .tests(3000)
            .quickcheck(marks_are_honest as fn(Vec<Event>) -> bool);
    }
}
