//! The write pipeline of a log: appended bytes on their way to stable
//! storage, and the two background tasks that move them.
//!
//! [`WritePipeline`] holds what the appenders and the tasks share: the
//! aligned tail buffers ([`Appender`]), the tail batch cache, the group
//! commit marks ([`GroupCommit`], which decides; this module only does the
//! I/O), the log end and the counters. `PartitionLog` owns it; the tasks
//! hold only a weak reference while idle and exit when the log is dropped,
//! closed (after finishing pending work) or fenced.
//!
//! The writer writes tail buffers with `write_depth_max` in flight at every
//! moment (a sliding window over disjoint, aligned ranges). A round keeps
//! taking full buffers as appends seal them and ends with the partial tail
//! buffer once nothing else is in flight; only that last buffer ends in a
//! partial block, which the next round rewrites, and rounds never overlap.
//! Each write's completion is handed to the group commit in file order
//! ([`WriteDone`]), which moves `written`, so an fdatasync can start while
//! the rest of the round is still being written.
//!
//! The syncer runs while the writer keeps writing: it asks the group commit
//! for its next step and does it. A round fdatasyncs the dirty segments
//! (with the active segment's checkpoint header written beside it when one
//! is due) and reports back; only then do `synced` and the durable
//! checkpoint move. A lone checkpoint write, and the round that makes it
//! durable, run only when a settle asks for them (flush, roll, close,
//! truncation). Under `IntervalMs` a third task asks for a round (or, when
//! nothing was appended, a settle) every interval.

use crate::batch_cache::{BatchCache, CachedBatch};
use crate::checkpoint::Checkpoint;
use crate::config::{FlushPolicy, LogConfig};
use crate::device::{Device, DeviceFile, IoBuffer};
use crate::error::LogError;
use crate::group_commit::{
    CheckpointWrite, Durability, Fence, GroupCommit, Mark, SyncRound, SyncStep, WriteDone,
};
use crate::log_stats::LogStats;
use crate::mutation::{self, Mutation};
use crate::notify::Notify;
use crate::segment::Segment;
use crate::segment_appender::{Appender, TailBuf};
use std::cell::{Cell, Ref, RefCell, RefMut};
use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

/// The shared state of a log's write path; see the module header.
pub(crate) struct WritePipeline<D: Device> {
    /// For log lines only.
    dir: PathBuf,
    flush: FlushPolicy,
    write_depth_max: usize,
    alignment: usize,
    appender: RefCell<Appender<D>>,
    cache: RefCell<BatchCache>,
    commit: RefCell<GroupCommit<Rc<Segment<D>>>>,
    /// One past the last offset accepted (in the tail, maybe not written).
    log_end: Cell<u64>,
    closed: Cell<bool>,
    stats: RefCell<LogStats>,
    /// Progress: written, synced, fencing, pending bytes handed to the
    /// writer, close, end of maintenance, high watermark.
    changed: Notify,
    /// Wake the writer and the syncer; shared so they can wait without
    /// keeping the pipeline alive.
    write_work: Rc<Notify>,
    sync_work: Rc<Notify>,
}

/// One finished write as the window hands it back.
struct CompletedWrite<D: Device> {
    done: WriteDone<Rc<Segment<D>>>,
    /// Bytes of log data in the segment up to the end of this write.
    data_end: u64,
    /// The written buffer, for reuse.
    buffer: Rc<D::Buffer>,
}

impl<D: Device> WritePipeline<D> {
    /// A pipeline whose log ends at `end` in `active`, everything before it
    /// durable, with `durable` the checkpoint in `active`'s header.
    pub fn new(
        dir: PathBuf,
        config: &LogConfig,
        alignment: usize,
        appender: Appender<D>,
        active: Rc<Segment<D>>,
        end: Mark,
        durable: Checkpoint,
    ) -> Self {
        WritePipeline {
            dir,
            flush: config.flush,
            write_depth_max: config.write_depth_max,
            alignment,
            appender: RefCell::new(appender),
            cache: RefCell::new(BatchCache::new(config.cache_bytes_max, end.offset)),
            commit: RefCell::new(GroupCommit::new(end, durable, active)),
            log_end: Cell::new(end.offset),
            closed: Cell::new(false),
            stats: RefCell::new(LogStats::default()),
            changed: Notify::default(),
            write_work: Rc::new(Notify::default()),
            sync_work: Rc::new(Notify::default()),
        }
    }

    /// Takes one placed batch (offsets and append time patched) ending at
    /// `cached.next_offset` into the tail buffers and the cache.
    pub fn accept(&self, cached: CachedBatch) {
        let next = cached.next_offset;
        self.appender.borrow_mut().push(&cached.bytes, next);
        let written = self.commit.borrow().written();
        self.cache.borrow_mut().push(cached, written);
        self.log_end.set(next);
        self.bump(|s| s.appends += 1);
    }

    pub fn log_end(&self) -> u64 {
        self.log_end.get()
    }

    /// Bytes appended but not yet handed to the writer.
    pub fn pending_bytes(&self) -> usize {
        self.appender.borrow().pending_bytes()
    }

    /// Appends go to the new, empty `segment` from now on (after a roll,
    /// which settled the previous one).
    pub fn start_segment(&self, segment: Rc<Segment<D>>) {
        let base = segment.base_offset;
        self.commit.borrow_mut().start_segment(base, segment.clone());
        self.appender
            .borrow_mut()
            .start_segment(segment, Mark::segment_start(base), &[]);
    }

    /// Restarts the tail at `end` in `segment` after `truncate_suffix`:
    /// buffers, cache beyond it and marks are forgotten, and a settle at
    /// `end` is due (see [`GroupCommit::reset`]). The syncer must be idle.
    pub fn restart(&self, segment: Rc<Segment<D>>, end: Mark, partial: &[u8]) {
        let mut appender = self.appender.borrow_mut();
        appender.clear();
        appender.start_segment(segment.clone(), end, partial);
        self.cache.borrow_mut().truncate_from(end.offset, end.offset);
        self.commit.borrow_mut().reset(end, segment);
        self.log_end.set(end.offset);
        self.kick();
    }

    pub fn cache(&self) -> Ref<'_, BatchCache> {
        self.cache.borrow()
    }

    pub fn cache_mut(&self) -> RefMut<'_, BatchCache> {
        self.cache.borrow_mut()
    }

    /// Offsets below this are written to their segment files.
    pub fn written(&self) -> u64 {
        self.commit.borrow().written()
    }

    /// Offsets below this are covered by a completed fdatasync.
    pub fn synced(&self) -> u64 {
        self.commit.borrow().synced()
    }

    /// What appends under this log's policy have been acknowledged.
    pub fn acked_end(&self) -> u64 {
        self.commit.borrow().acked_end(self.flush, self.log_end.get())
    }

    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Fails once a write or fdatasync fenced the log, or it was closed.
    pub fn check_writable(&self) -> Result<(), LogError> {
        if let Some(fence) = self.commit.borrow().fence() {
            return Err(LogError::Fenced {
                operation: fence.operation,
                cause: fence.cause.clone(),
            });
        }
        if self.closed.get() {
            return Err(LogError::Closed);
        }
        Ok(())
    }

    /// The cause, if a failed write or fdatasync fenced the log.
    pub fn fenced(&self) -> Option<String> {
        let commit = self.commit.borrow();
        commit.fence().map(|f| format!("{}: {}", f.operation, f.cause))
    }

    /// Stops taking appends; the tasks finish pending work and exit.
    pub fn close(&self) {
        self.closed.set(true);
        self.kick();
        self.changed.notify();
    }

    pub fn request_sync(&self, offset: u64) {
        self.commit.borrow_mut().request_sync(offset);
    }

    /// Wakes the writer and the syncer.
    pub fn kick(&self) {
        self.write_work.notify();
        self.sync_work.notify();
    }

    /// Writes and fdatasyncs everything below `offset`.
    pub async fn sync_to(&self, offset: u64) -> Result<(), LogError> {
        self.request_sync(offset);
        self.kick();
        self.wait_durable(offset, Durability::Fsynced).await
    }

    /// Writes and fdatasyncs everything below `offset`, then makes the
    /// checkpoint durable up to it: from then on recovery reports damage
    /// to those batches instead of cutting them.
    pub async fn settle_to(&self, offset: u64) -> Result<(), LogError> {
        self.commit.borrow_mut().request_settle(offset);
        self.kick();
        loop {
            if self.commit.borrow().is_settled(offset) {
                return Ok(());
            }
            self.check_writable()?;
            self.changed.notified().await;
        }
    }

    /// Waits until the syncer has no round or checkpoint write running.
    pub async fn wait_syncer_idle(&self) -> Result<(), LogError> {
        while self.commit.borrow().busy() {
            self.check_fenced()?;
            self.changed.notified().await;
        }
        Ok(())
    }

    /// Fails once a write or fdatasync fenced the log (a closed log may
    /// still finish its flush).
    fn check_fenced(&self) -> Result<(), LogError> {
        match self.commit.borrow().fence() {
            Some(fence) => Err(LogError::Fenced {
                operation: fence.operation,
                cause: fence.cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Waits until the batches ending before `next` reach `durability`.
    pub async fn wait_durable(&self, next: u64, durability: Durability) -> Result<(), LogError> {
        loop {
            if self.durability_of(next) >= durability {
                return Ok(());
            }
            self.check_writable()?;
            self.changed.notified().await;
        }
    }

    pub fn durability_of(&self, next: u64) -> Durability {
        self.commit.borrow().durability_of(next)
    }

    pub fn stats(&self) -> LogStats {
        *self.stats.borrow()
    }

    /// Updates the counters in place (they are too large to copy out and
    /// back on every append and read).
    pub fn bump(&self, f: impl FnOnce(&mut LogStats)) {
        f(&mut self.stats.borrow_mut());
    }

    fn has_write_work(&self) -> bool {
        self.commit.borrow().fence().is_none() && self.appender.borrow().has_unwritten()
    }

    fn is_fenced(&self) -> bool {
        self.commit.borrow().fence().is_some()
    }

    /// Makes the log read-only after a failure outside the write path that
    /// leaves the files in doubt (a truncation cut short).
    pub fn fence(&self, operation: &'static str, cause: String) {
        let mut commit = self.commit.borrow_mut();
        commit.set_fence(operation, cause);
        let fence = commit.fence().expect("just set").clone();
        drop(commit);
        self.report_fence(&fence);
        self.kick();
    }

    /// Logs the fence and wakes every waiter, which then sees it.
    fn report_fence(&self, fence: &Fence) {
        tracing::error!(
            dir = %self.dir.display(),
            operation = fence.operation,
            cause = %fence.cause,
            "partition log fenced"
        );
        self.changed.notify();
    }

    /// One write round, with up to `write_depth_max` writes in flight at
    /// every moment (a sliding window: a new write starts as soon as the
    /// oldest completes). While buffers keep being sealed the round keeps
    /// taking them, so a steady stream of appends meets a full queue, not a
    /// drain at every round boundary. The partial tail buffer is taken only
    /// once nothing else is in flight, and then the round only finishes:
    /// the next buffer starts by rewriting the tail's last block, so it must
    /// not be written while the tail's write may still be in flight. Taking
    /// the tail any earlier would end the round with the device idle until
    /// the executor next polls the ring (up to its preemption interval, as
    /// disk completions do not preempt running tasks), and the appends in
    /// the tail lose nothing by waiting: `written` moves in file order, so
    /// their acknowledgement waits for the writes before them anyway.
    async fn write_round(&self) {
        let mut bufs: VecDeque<TailBuf<D>> = VecDeque::new();
        let mut took_tail = false;
        let mut window = WriteWindow::default();
        let started = Instant::now();
        loop {
            while window.len() < self.write_depth_max && !took_tail {
                if bufs.is_empty() {
                    took_tail = self.take_buffers(&mut bufs, window.len() == 0);
                }
                let Some(buf) = bufs.pop_front() else { break };
                window.push(Box::pin(write_buffer(buf, self.alignment)));
            }
            let Some(completed) = window.next_in_order().await else {
                break;
            };
            if !self.complete_write(completed) {
                // Let the writes already submitted finish: their buffers
                // belong to the kernel until then.
                while window.next_in_order().await.is_some() {}
                return;
            }
        }
        self.bump(|s| s.write_wait_us += started.elapsed().as_micros() as u64);
    }

    /// Moves the sealed buffers into `bufs`, or, when there are none and
    /// nothing is in flight (`idle`), the partial tail. Returns whether it
    /// took the tail.
    fn take_buffers(&self, bufs: &mut VecDeque<TailBuf<D>>, idle: bool) -> bool {
        let mut appender = self.appender.borrow_mut();
        bufs.extend(appender.take_sealed());
        let take_tail = bufs.is_empty() && idle;
        if take_tail {
            bufs.extend(appender.take_tail());
        }
        drop(appender);
        // The pending bytes went to the writer: appenders held back may go on.
        self.changed.notify();
        take_tail
    }

    /// Hands one finished write to the group commit and, if it moved the
    /// marks, updates the segment, the cache and the waiters. Returns false
    /// if the write fenced the log.
    fn complete_write(&self, completed: CompletedWrite<D>) -> bool {
        let CompletedWrite {
            done,
            data_end,
            buffer,
        } = completed;
        let (segment, submitted) = (done.segment.clone(), done.submitted);
        let accounted = self.commit.borrow_mut().write_done(done);
        if let Err(fence) = accounted {
            self.report_fence(&fence);
            return false;
        }
        if let Ok(buf) = Rc::try_unwrap(buffer) {
            self.appender.borrow_mut().recycle(buf);
        }
        segment.written_len.set(segment.written_len.get().max(data_end));
        self.bump(|s| {
            s.writes += 1;
            s.bytes_written += submitted as u64;
        });
        let written = self.written();
        self.cache.borrow_mut().evict(written);
        self.changed.notify();
        self.sync_work.notify();
        true
    }

    /// Runs the syncer's next step; false when there was none.
    async fn sync_step(&self) -> bool {
        let step = self.commit.borrow_mut().sync_step(self.flush);
        match step {
            SyncStep::Idle => false,
            SyncStep::WriteCheckpoint(write) => {
                let outcome = write_checkpoint(&write).await;
                let result = self.commit.borrow_mut().checkpoint_done(&write, outcome);
                self.report(result);
                true
            }
            SyncStep::Round(round) => {
                if mutation::active(Mutation::AckBeforeSync) {
                    self.changed.notify();
                }
                self.sync_round(round).await;
                true
            }
        }
    }

    /// One sync round: fdatasync every file written since the last round,
    /// beside the due checkpoint write, then report both to the group
    /// commit, which moves `synced` and the durable checkpoint, or fences.
    async fn sync_round(&self, mut round: SyncRound<Rc<Segment<D>>>) {
        let checkpoint = round.checkpoint_write.take();
        let (synced, written) = join(self.fdatasync_all(&round.files), async {
            match &checkpoint {
                Some(write) => Some(write_checkpoint(write).await),
                None => None,
            }
        })
        .await;
        if let (Some(write), Some(outcome)) = (&checkpoint, written) {
            let result = self.commit.borrow_mut().checkpoint_done(write, outcome);
            self.report(result);
        }
        let result = self.commit.borrow_mut().sync_done(&round, synced);
        self.report(result);
    }

    /// fdatasyncs `files` one after another, counting each; stops at the
    /// first failure.
    async fn fdatasync_all(&self, files: &[Rc<Segment<D>>]) -> Result<(), String> {
        for segment in files {
            if mutation::active(Mutation::SkipFdatasync) {
                continue;
            }
            let started = Instant::now();
            segment.file.fdatasync().await.map_err(|e| e.to_string())?;
            let took = started.elapsed().as_micros() as u64;
            self.bump(|s| s.record_sync(took));
        }
        Ok(())
    }

    /// Wakes the waiters after a step; a fence is logged once it happens.
    fn report(&self, result: Result<(), Fence>) {
        match result {
            Ok(()) => self.changed.notify(),
            Err(fence) => self.report_fence(&fence),
        }
    }
}

/// Writes a checkpoint into its segment's header.
async fn write_checkpoint<D: Device>(write: &CheckpointWrite<Rc<Segment<D>>>) -> Result<(), String> {
    write
        .segment
        .write_checkpoint(&write.checkpoint, write.previous.as_ref())
        .await
        .map_err(|e| e.to_string())
}

/// Runs two futures to completion together (both are polled whenever
/// either is woken).
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut out_a, mut out_b) = (None, None);
    std::future::poll_fn(|cx| {
        if out_a.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                out_a = Some(v);
            }
        }
        if out_b.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                out_b = Some(v);
            }
        }
        if out_a.is_some() && out_b.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (out_a.expect("done"), out_b.expect("done"))
}

/// Writes one tail buffer where it belongs.
async fn write_buffer<D: Device>(buf: TailBuf<D>, alignment: usize) -> CompletedWrite<D> {
    let (reached, pos) = (buf.reached, buf.file_pos);
    let data_end = buf.file_pos + buf.len as u64;
    let (segment, dma) = buf.into_write_buffer(alignment);
    let submitted = dma.len();
    let buffer = Rc::new(dma);
    let outcome = segment
        .write_data(buffer.clone(), pos)
        .await
        .map_err(|e| e.to_string());
    CompletedWrite {
        done: WriteDone {
            segment_base: segment.base_offset,
            segment,
            reached,
            submitted,
            outcome,
        },
        data_end,
        buffer,
    }
}

/// Runs write rounds while there is work; see the module header.
pub(crate) async fn run_writer<D: Device>(pipeline: Weak<WritePipeline<D>>) {
    loop {
        let Some(strong) = pipeline.upgrade() else { return };
        if strong.is_fenced() {
            return;
        }
        if strong.has_write_work() {
            strong.write_round().await;
            continue;
        }
        if strong.closed.get() {
            return;
        }
        let work = strong.write_work.clone();
        let wake = work.notified();
        drop(strong);
        wake.await;
    }
}

/// Runs sync rounds while there is work; see the module header.
pub(crate) async fn run_syncer<D: Device>(pipeline: Weak<WritePipeline<D>>) {
    loop {
        let Some(strong) = pipeline.upgrade() else { return };
        if strong.is_fenced() {
            return;
        }
        if strong.sync_step().await {
            continue;
        }
        if strong.closed.get() && !strong.appender.borrow().has_unwritten() {
            return;
        }
        let work = strong.sync_work.clone();
        let wake = work.notified();
        drop(strong);
        wake.await;
    }
}

/// Under `IntervalMs`, asks for an fdatasync every interval if anything was
/// appended since the last one.
pub(crate) async fn run_interval_sync<D: Device>(pipeline: Weak<WritePipeline<D>>, every: Duration) {
    loop {
        glommio::timer::sleep(every).await;
        let Some(strong) = pipeline.upgrade() else { return };
        if strong.closed.get() || strong.is_fenced() {
            return;
        }
        strong.commit.borrow_mut().interval_tick(strong.log_end());
        strong.kick();
    }
}

/// The writes in flight, oldest first. Every pending write is polled (so
/// all of them are submitted and progress), but results are handed out
/// only in the order the writes were pushed.
struct WriteWindow<D: Device, F> {
    slots: VecDeque<Slot<D, F>>,
}

/// One write of the window: still running, or finished and waiting for
/// the writes before it.
enum Slot<D: Device, F> {
    InFlight(Pin<Box<F>>),
    Done(CompletedWrite<D>),
}

impl<D: Device, F> Default for WriteWindow<D, F> {
    fn default() -> Self {
        WriteWindow {
            slots: VecDeque::new(),
        }
    }
}

impl<D: Device, F: Future<Output = CompletedWrite<D>>> WriteWindow<D, F> {
    fn len(&self) -> usize {
        self.slots.len()
    }

    fn push(&mut self, write: Pin<Box<F>>) {
        self.slots.push_back(Slot::InFlight(write));
    }

    /// The oldest write's result once it completes; `None` when empty.
    async fn next_in_order(&mut self) -> Option<CompletedWrite<D>> {
        if self.slots.is_empty() {
            return None;
        }
        std::future::poll_fn(|cx| {
            for slot in self.slots.iter_mut() {
                if let Slot::InFlight(fut) = slot {
                    if let Poll::Ready(done) = fut.as_mut().poll(cx) {
                        *slot = Slot::Done(done);
                    }
                }
            }
            match self.slots.front() {
                Some(Slot::Done(_)) => Poll::Ready(()),
                _ => Poll::Pending,
            }
        })
        .await;
        match self.slots.pop_front() {
            Some(Slot::Done(done)) => Some(done),
            _ => unreachable!("the front slot was done"),
        }
    }
}
