//! The two background tasks of a log: the writer and the syncer.
//!
//! The writer writes tail buffers with `write_depth_max` in flight at every
//! moment (a sliding window over disjoint, aligned ranges). A round keeps
//! taking full buffers as appends seal them and ends with the partial tail
//! buffer once nothing else is in flight; only that last buffer ends in a
//! partial block, which the next round rewrites, and rounds never overlap.
//! As each write completes, in file order, it moves `written` and wakes the
//! syncer, so an fdatasync can start while the rest of the round is still
//! being written.
//!
//! The syncer runs while the writer keeps writing: it snapshots `written`,
//! fdatasyncs every segment file written since its last round, and only then
//! moves `synced` to the snapshot. A write that completes during an
//! fdatasync is not counted as covered by it; the next round covers it.
//! This pipelining is the group commit: one fdatasync covers every append
//! written while the previous one ran.
//!
//! Both tasks hold only a weak reference while idle and exit when the log is
//! dropped, closed (after finishing pending work) or fenced.

use crate::config::FlushPolicy;
use crate::partition_log::PartitionLog;
use crate::segment::Segment;
use crate::segment_appender::TailBuf;
use glommio::io::DmaBuffer;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::Poll;
use std::time::Instant;

/// What one write reports: the segment, the offset and byte end it
/// completes, the bytes expected, the result, and the buffer for reuse.
type WriteDone = (
    Rc<Segment>,
    u64,
    u64,
    usize,
    glommio::Result<usize, ()>,
    Rc<DmaBuffer>,
);
type WriteFuture = Pin<Box<dyn Future<Output = WriteDone>>>;

impl PartitionLog {
    fn has_write_work(&self) -> bool {
        self.fenced.borrow().is_none() && self.appender.borrow().has_unwritten()
    }

    fn has_sync_work(&self) -> bool {
        let wanted =
            self.config.flush == FlushPolicy::Always || self.sync_requested.get() > self.synced.get();
        self.fenced.borrow().is_none() && wanted && self.written.get() > self.synced.get()
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
    /// Completions are taken in file order, so `written` only ever covers a
    /// contiguous prefix.
    async fn write_round(&self) {
        let mut bufs: VecDeque<TailBuf> = VecDeque::new();
        let mut took_tail = false;
        let mut window = WriteWindow::default();
        let started = Instant::now();
        loop {
            while window.len() < self.config.write_depth_max && !took_tail {
                if bufs.is_empty() {
                    let mut appender = self.appender.borrow_mut();
                    bufs.extend(appender.take_sealed());
                    if bufs.is_empty() && window.len() == 0 {
                        bufs.extend(appender.take_tail());
                        took_tail = true;
                    }
                    drop(appender);
                    // The pending bytes went to the writer: appenders held
                    // back may go on.
                    self.changed.notify();
                }
                let Some(buf) = bufs.pop_front() else { break };
                let (end_offset, pos, logical_end) =
                    (buf.end_offset, buf.file_pos, buf.file_pos + buf.len as u64);
                let (segment, dma) = buf.into_write_buffer(self.alignment);
                let expected = dma.len();
                window.push(Box::pin(async move {
                    let dma = Rc::new(dma);
                    let result = segment.file.write_rc_at(dma.clone(), pos).await;
                    (segment, end_offset, logical_end, expected, result, dma)
                }));
            }
            let Some(done) = window.next_in_order().await else {
                break;
            };
            if let Err(failure) = self.complete_write(done) {
                // Let the writes already submitted finish before fencing:
                // their buffers belong to the kernel until then.
                while window.next_in_order().await.is_some() {}
                return self.fence("write", failure);
            }
        }
        self.bump(|s| s.write_wait_us += started.elapsed().as_micros() as u64);
    }

    /// Accounts one completed write: moves `written`, marks the segment
    /// dirty for the syncer and wakes readers and the syncer.
    fn complete_write(&self, done: WriteDone) -> Result<(), String> {
        let (segment, end_offset, logical_end, expected, result, dma) = done;
        match result {
            Ok(n) if n == expected => {}
            Ok(n) => return Err(format!("short write: {n} of {expected} bytes")),
            Err(e) => return Err(e.to_string()),
        }
        if let Ok(buf) = Rc::try_unwrap(dma) {
            self.appender.borrow_mut().recycle(buf);
        }
        segment
            .written_len
            .set(segment.written_len.get().max(logical_end));
        self.bump(|s| {
            s.writes += 1;
            s.bytes_written += expected as u64;
        });
        {
            let mut dirty = self.dirty.borrow_mut();
            if !dirty.iter().any(|s| Rc::ptr_eq(s, &segment)) {
                dirty.push(segment);
            }
        }
        self.written.set(self.written.get().max(end_offset));
        self.cache.borrow_mut().evict(self.written.get());
        self.advance_high_watermark();
        self.changed.notify();
        self.sync_work.notify();
        Ok(())
    }

    /// One sync round: fdatasync every file written since the last round,
    /// then mark what was written before it started as synced.
    async fn sync_round(&self) {
        let target = self.written.get();
        let files: Vec<Rc<Segment>> = self.dirty.borrow_mut().drain(..).collect();
        for segment in files {
            let started = Instant::now();
            if let Err(e) = segment.file.fdatasync().await {
                return self.fence("fdatasync", e.to_string());
            }
            let took = started.elapsed().as_micros() as u64;
            self.bump(|s| s.record_sync(took));
        }
        self.synced.set(self.synced.get().max(target));
        self.advance_high_watermark();
        self.changed.notify();
    }
}

/// Runs write rounds while there is work; see the module header.
pub(crate) async fn run_writer(log: Weak<PartitionLog>) {
    loop {
        let Some(strong) = log.upgrade() else { return };
        if strong.fenced.borrow().is_some() {
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
pub(crate) async fn run_syncer(log: Weak<PartitionLog>) {
    loop {
        let Some(strong) = log.upgrade() else { return };
        if strong.fenced.borrow().is_some() {
            return;
        }
        if strong.has_sync_work() {
            strong.sync_round().await;
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

/// The writes in flight, oldest first. Every pending write is polled (so
/// all of them are submitted and progress), but results are handed out
/// only in the order the writes were pushed.
#[derive(Default)]
struct WriteWindow {
    slots: VecDeque<(Option<WriteFuture>, Option<WriteDone>)>,
}

impl WriteWindow {
    fn len(&self) -> usize {
        self.slots.len()
    }

    fn push(&mut self, write: WriteFuture) {
        self.slots.push_back((Some(write), None));
    }

    /// The oldest write's result once it completes; `None` when empty.
    async fn next_in_order(&mut self) -> Option<WriteDone> {
        if self.slots.is_empty() {
            return None;
        }
        let done = std::future::poll_fn(|cx| {
            for (write, done) in self.slots.iter_mut() {
                if let Some(fut) = write {
                    if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                        *done = Some(v);
                        *write = None;
                    }
                }
            }
            match self.slots.front_mut() {
                Some((_, done @ Some(_))) => Poll::Ready(done.take()),
                _ => Poll::Pending,
            }
        })
        .await;
        self.slots.pop_front();
        done
    }
}
