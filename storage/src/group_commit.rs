//! Group-commit bookkeeping (sans-IO): how far the appended bytes got, and
//! what the writer and the syncer must do next.
//!
//! Three marks, all offsets (one past the last offset covered), only ever
//! moving forward except when `truncate_suffix` resets them:
//! - `written`: every batch below it is in its segment file (its write
//!   completed, in file order);
//! - `synced`: every batch below it is covered by an fdatasync that
//!   *started after* the write holding its last byte completed, and
//!   returned Ok;
//! - `sync_requested`: the syncer keeps running rounds until `synced`
//!   reaches it (under flush `always` it runs whenever anything is written
//!   and not synced).
//!
//! A completed write moves `written` and marks its segment dirty; a sync
//! round snapshots `written` and takes the dirty segments when it starts
//! ([`GroupCommit::start_sync`]), and only when every fdatasync of the round
//! returned Ok moves `synced` to the snapshot ([`GroupCommit::sync_done`]).
//! A write that completes while a round runs is therefore never counted as
//! covered by that round: the next round covers it. That pipelining is the
//! group commit: one fdatasync covers every append written while the
//! previous one ran.
//!
//! A failed or short write and a failed fdatasync **fence**: the first
//! failure is kept, every later append and wait fails with it, and no mark
//! moves again (the kernel may have dropped the dirty state, so nothing is
//! retried and trusted).
//!
//! The I/O glue is `write_pipeline`; this module only decides, so it is
//! tested without a runtime (unit tests and a quickcheck property below).
//!
//! The segment handle type `S` is opaque here (the glue's `Rc<Segment>`,
//! `()` in tests); segments are told apart by their base offset.

use crate::config::FlushPolicy;

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

/// What the writer reports for one finished write, handed over in file
/// order (the order the writes were submitted).
#[derive(Debug)]
pub(crate) struct WriteDone<S> {
    /// The segment written, and its base offset (its identity).
    pub segment: S,
    pub segment_base: u64,
    /// One past the last offset whose batch lies whole in this write or
    /// before it.
    pub end_offset: u64,
    /// Bytes submitted (whole aligned blocks).
    pub submitted: usize,
    /// Bytes the device reported written, or why the write failed.
    pub outcome: Result<usize, String>,
}

/// One sync round: fdatasync every file, then everything below `target`
/// is synced.
#[derive(Debug)]
pub(crate) struct SyncRound<S> {
    pub target: u64,
    pub files: Vec<S>,
}

/// The failure that made the log read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fence {
    pub operation: &'static str,
    pub cause: String,
}

/// The marks and the dirty segments of one log; see the module header.
#[derive(Debug)]
pub(crate) struct GroupCommit<S> {
    written: u64,
    synced: u64,
    sync_requested: u64,
    /// Segments written since the last sync round started, oldest first.
    dirty: Vec<(u64, S)>,
    fence: Option<Fence>,
}

impl<S: Clone> GroupCommit<S> {
    /// A log whose recovered bytes end at `end`, all of them on stable
    /// storage (recovery made them so).
    pub fn new(end: u64) -> Self {
        GroupCommit {
            written: end,
            synced: end,
            sync_requested: end,
            dirty: Vec::new(),
            fence: None,
        }
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn synced(&self) -> u64 {
        self.synced
    }

    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }

    /// Keeps the first failure; later ones add nothing.
    pub fn set_fence(&mut self, operation: &'static str, cause: String) {
        self.fence.get_or_insert(Fence { operation, cause });
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
        if !self.dirty.iter().any(|(base, _)| *base == done.segment_base) {
            self.dirty.push((done.segment_base, done.segment));
        }
        self.written = self.written.max(done.end_offset);
        Ok(())
    }

    /// Asks the syncer to run until `synced` reaches `offset`.
    pub fn request_sync(&mut self, offset: u64) {
        self.sync_requested = self.sync_requested.max(offset);
    }

    /// Whether the syncer has a round to run: something written is not yet
    /// synced, and the policy or a request wants it synced.
    pub fn sync_wanted(&self, flush: FlushPolicy) -> bool {
        let wanted = flush == FlushPolicy::Always || self.sync_requested > self.synced;
        self.fence.is_none() && wanted && self.written > self.synced
    }

    /// Starts a sync round: snapshots `written` and takes the dirty files.
    pub fn start_sync(&mut self) -> SyncRound<S> {
        SyncRound {
            target: self.written,
            files: self.dirty.drain(..).map(|(_, s)| s).collect(),
        }
    }

    /// Ends a sync round: every fdatasync returned Ok (then `synced` moves to
    /// the round's target) or one failed (then the log is fenced).
    pub fn sync_done(&mut self, round: &SyncRound<S>, outcome: Result<(), String>) -> Result<(), Fence> {
        self.check_live()?;
        if let Err(cause) = outcome {
            self.set_fence("fdatasync", cause);
            return self.check_live();
        }
        self.synced = self.synced.max(round.target);
        Ok(())
    }

    /// The durability the batches ending before `next` have reached.
    pub fn durability_of(&self, next: u64) -> Durability {
        if self.synced >= next {
            Durability::Fsynced
        } else if self.written >= next {
            Durability::Written
        } else {
            Durability::Memory
        }
    }

    /// The end of what appends under `flush` have been acknowledged (in
    /// single-node mode, the high watermark).
    pub fn acked_end(&self, flush: FlushPolicy, log_end: u64) -> u64 {
        match flush {
            FlushPolicy::Always => self.synced,
            FlushPolicy::IntervalMs(_) => self.written,
            FlushPolicy::Never => log_end,
        }
    }

    /// Forgets everything beyond `end` (after `truncate_suffix`, which
    /// synced the log before cutting it).
    pub fn reset(&mut self, end: u64) {
        self.written = end;
        self.synced = end;
        self.sync_requested = end;
        self.dirty.clear();
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

    fn write(base: u64, end_offset: u64) -> WriteDone<()> {
        WriteDone {
            segment: (),
            segment_base: base,
            end_offset,
            submitted: 4096,
            outcome: Ok(4096),
        }
    }

    /// A write completed during a sync round is not covered by it; the
    /// next round covers it, and only then is it `Fsynced`.
    #[test]
    fn write_during_sync_waits_for_next_round() {
        let mut gc = GroupCommit::new(0);
        gc.write_done(write(0, 10)).unwrap();
        assert_eq!(gc.durability_of(10), Durability::Written);
        assert!(gc.sync_wanted(FlushPolicy::Always));
        let round = gc.start_sync();
        assert_eq!((round.target, round.files.len()), (10, 1));
        gc.write_done(write(0, 20)).unwrap();
        gc.sync_done(&round, Ok(())).unwrap();
        assert_eq!(gc.durability_of(10), Durability::Fsynced);
        assert_eq!(gc.durability_of(20), Durability::Written);
        let next = gc.start_sync();
        assert_eq!((next.target, next.files.len()), (20, 1));
        gc.sync_done(&next, Ok(())).unwrap();
        assert_eq!(gc.durability_of(20), Durability::Fsynced);
        assert!(!gc.sync_wanted(FlushPolicy::Always));
    }

    /// Without flush `always` the syncer runs only up to a request.
    #[test]
    fn sync_only_on_request_unless_always() {
        let mut gc = GroupCommit::new(5);
        gc.write_done(write(0, 9)).unwrap();
        assert!(!gc.sync_wanted(FlushPolicy::Never));
        assert!(!gc.sync_wanted(FlushPolicy::IntervalMs(10)));
        gc.request_sync(9);
        assert!(gc.sync_wanted(FlushPolicy::Never));
        let round = gc.start_sync();
        gc.sync_done(&round, Ok(())).unwrap();
        assert!(!gc.sync_wanted(FlushPolicy::Never));
        assert_eq!(gc.acked_end(FlushPolicy::Never, 30), 30);
        assert_eq!(gc.acked_end(FlushPolicy::IntervalMs(1), 30), 9);
        assert_eq!(gc.acked_end(FlushPolicy::Always, 30), 9);
    }

    /// Each dirty segment is fdatasynced once per round, oldest first.
    #[test]
    fn dirty_segments_once_each() {
        let mut gc: GroupCommit<u64> = GroupCommit::new(0);
        for (base, end) in [(0, 3), (0, 6), (6, 8), (0, 6), (6, 9)] {
            gc.write_done(WriteDone {
                segment: base,
                segment_base: base,
                end_offset: end,
                submitted: 1,
                outcome: Ok(1),
            })
            .unwrap();
        }
        assert_eq!(gc.start_sync().files, vec![0, 6]);
        assert!(gc.start_sync().files.is_empty());
    }

    /// A short write, a failed write and a failed fdatasync fence for good:
    /// the first cause is kept and no mark moves again.
    #[test]
    fn failures_fence() {
        let mut gc = GroupCommit::new(0);
        let mut short = write(0, 4);
        short.outcome = Ok(512);
        let fence = gc.write_done(short).unwrap_err();
        assert_eq!(fence.operation, "write");
        assert!(fence.cause.contains("short write"), "{fence:?}");
        assert!(gc.write_done(write(0, 8)).is_err());
        assert_eq!(gc.written(), 0);
        assert!(!gc.sync_wanted(FlushPolicy::Always));

        let mut gc = GroupCommit::new(0);
        gc.write_done(write(0, 4)).unwrap();
        let round = gc.start_sync();
        let fence = gc.sync_done(&round, Err("EIO".into())).unwrap_err();
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
        StartSync,
        FinishSync,
        Request {
            ahead: u8,
        },
    }

    impl Arbitrary for Event {
        fn arbitrary(g: &mut Gen) -> Self {
            match u8::arbitrary(g) % 4 {
                0 => Event::WriteDone {
                    adds: u8::arbitrary(g) % 5,
                },
                1 => Event::StartSync,
                2 => Event::FinishSync,
                _ => Event::Request {
                    ahead: u8::arbitrary(g) % 8,
                },
            }
        }
    }

    /// Over any event sequence: marks never go back, `synced <= written`,
    /// and an offset is `Fsynced` only if a round that started after its
    /// write completed has finished (checked against an independent log of
    /// when each offset was written and which rounds started when).
    fn marks_are_honest(events: Vec<Event>) -> bool {
        let mut gc = GroupCommit::new(0);
        let mut end = 0u64;
        // written_at[o]: event index at which offset o's write completed.
        let mut written_at: Vec<usize> = Vec::new();
        let mut round: Option<(SyncRound<()>, usize)> = None;
        let mut covered_before = 0usize; // writes before this index are covered
        for (i, event) in events.iter().enumerate() {
            let (w, s) = (gc.written(), gc.synced());
            match *event {
                Event::WriteDone { adds } => {
                    end += u64::from(adds);
                    written_at.resize(end as usize, i);
                    gc.write_done(write(0, end)).unwrap();
                }
                Event::StartSync if round.is_none() => round = Some((gc.start_sync(), i)),
                Event::FinishSync => {
                    if let Some((r, started)) = round.take() {
                        gc.sync_done(&r, Ok(())).unwrap();
                        covered_before = covered_before.max(started);
                    }
                }
                Event::Request { ahead } => gc.request_sync(end + u64::from(ahead)),
                Event::StartSync => {}
            }
            if gc.written() < w || gc.synced() < s || gc.synced() > gc.written() {
                return false;
            }
            let fsynced_ok = (0..end).all(|o| {
                gc.durability_of(o + 1) != Durability::Fsynced || written_at[o as usize] < covered_before
            });
            if !fsynced_ok {
                return false;
            }
        }
        true
    }

    #[test]
    fn quickcheck_marks_are_honest() {
        QuickCheck::new()
            .tests(2000)
            .quickcheck(marks_are_honest as fn(Vec<Event>) -> bool);
    }
}
