//! The aligned tail buffers of the active segment.
//!
//! Appends copy batch bytes into the current tail buffer, a DMA buffer that
//! mirrors the segment's data from an aligned position. The writer takes
//! full buffers as they are sealed ([`Appender::take_sealed`]) and, when
//! none is left, the partial current one ([`Appender::take_tail`]), and
//! writes each with one large aligned write, padded with zeros to the block
//! size. The last, partial block is carried into the next buffer, so the
//! next write rewrites it with the bytes that follow: O_DIRECT only writes
//! whole blocks, and the rewrite is what keeps earlier bytes of that block
//! intact.
//!
//! Appends that arrive while a write is in flight land in the fresh buffer
//! and go out together in the next round: that is the group commit.
//!
//! Each buffer also carries the last batch boundary it holds (a [`Mark`]:
//! offset, data position, and the segment's digest of the header bytes the
//! batch CRC does not cover), so that once its write completes the group
//! commit knows exactly what a checkpoint may claim.

use crate::checkpoint::digest_step;
use crate::device::{Device, DeviceFile, IoBuffer};
use crate::group_commit::Mark;
use crate::segment::Segment;
use std::collections::VecDeque;
use std::rc::Rc;

/// A buffer of log bytes bound for one position of one segment file.
pub(crate) struct TailBuf<D: Device> {
    pub segment: Rc<Segment<D>>,
    buf: D::Buffer,
    /// Aligned data position of `buf[0]`.
    pub file_pos: u64,
    /// Bytes of log data in `buf`.
    pub len: usize,
    /// Bytes at the front already on disk (the carried partial block).
    carried: usize,
    /// The last batch boundary in this buffer or, if no batch ends in it,
    /// before it.
    pub reached: Mark,
}

impl<D: Device> TailBuf<D> {
    fn new(
        segment: Rc<Segment<D>>,
        mut buf: D::Buffer,
        file_pos: u64,
        carried: &[u8],
        reached: Mark,
    ) -> Self {
        buf.as_bytes_mut()[..carried.len()].copy_from_slice(carried);
        TailBuf {
            segment,
            buf,
            file_pos,
            len: carried.len(),
            carried: carried.len(),
            reached,
        }
    }

    fn dirty(&self) -> bool {
        self.len > self.carried
    }

    fn room(&self) -> usize {
        self.buf.len() - self.len
    }

    /// The bytes of the last, partial block and where that block starts.
    fn partial_block(&self, alignment: usize) -> (u64, &[u8]) {
        let start = self.len / alignment * alignment;
        (
            self.file_pos + start as u64,
            &self.buf.as_bytes()[start..self.len],
        )
    }

    /// The buffer to write: the data padded with zeros to whole blocks.
    pub fn into_write_buffer(mut self, alignment: usize) -> (Rc<Segment<D>>, D::Buffer) {
        let padded = self.len.div_ceil(alignment) * alignment;
        self.buf.as_bytes_mut()[self.len..padded].fill(0);
        self.buf.trim_to_size(padded);
        (self.segment, self.buf)
    }
}

/// The tail buffers of the log, oldest first.
pub(crate) struct Appender<D: Device> {
    alignment: usize,
    chunk_bytes: usize,
    current: Option<TailBuf<D>>,
    sealed: VecDeque<TailBuf<D>>,
    pending_bytes: usize,
    /// Written full buffers kept for reuse: fresh memory costs a page fault
    /// per 4 KiB on first touch, which dominated the append path.
    free: Vec<D::Buffer>,
    free_max: usize,
    /// The current segment's digest up to the last batch pushed.
    digest: u32,
}

impl<D: Device> Appender<D> {
    pub fn new(alignment: usize, chunk_bytes: usize, free_max: usize) -> Self {
        Appender {
            alignment,
            chunk_bytes,
            current: None,
            sealed: VecDeque::new(),
            pending_bytes: 0,
            free: Vec::new(),
            free_max,
            digest: 0,
        }
    }

    /// A buffer of `capacity()` bytes: a recycled one if any.
    fn buffer(&mut self, segment: &Segment<D>) -> D::Buffer {
        let capacity = self.capacity();
        self.free
            .pop()
            .unwrap_or_else(|| segment.file.alloc_buffer(capacity))
    }

    /// Takes back a written buffer for reuse if it is whole and there is room.
    pub fn recycle(&mut self, buf: D::Buffer) {
        if buf.len() == self.capacity() && self.free.len() < self.free_max {
            self.free.push(buf);
        }
    }

    /// Bytes appended but not yet handed to the flusher.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    pub fn has_unwritten(&self) -> bool {
        !self.sealed.is_empty() || self.current.as_ref().is_some_and(TailBuf::dirty)
    }

    /// Starts appending to `segment`, whose data ends at `end` (a batch
    /// boundary); `partial` is its last partial block as on disk.
    pub fn start_segment(&mut self, segment: Rc<Segment<D>>, end: Mark, partial: &[u8]) {
        if let Some(cur) = self.current.take().filter(TailBuf::dirty) {
            self.sealed.push_back(cur);
        }
        assert_eq!(
            end.segment, segment.base_offset,
            "the end must lie in the segment"
        );
        let block_start = end.data_len - partial.len() as u64;
        assert_eq!(
            block_start % self.alignment as u64,
            0,
            "partial block must start aligned"
        );
        let buf = self.buffer(&segment);
        self.digest = end.digest;
        self.current = Some(TailBuf::new(segment, buf, block_start, partial, end));
    }

    /// Copies one batch (ending at `end_offset`) into the tail. A batch
    /// that does not fit fills the current buffer to its (aligned) end and
    /// continues in a new buffer at the next position, so full buffers never
    /// overlap and can be written concurrently.
    pub fn push(&mut self, bytes: &[u8], end_offset: u64) {
        self.digest = digest_step(self.digest, bytes);
        let mut rest = bytes;
        loop {
            let cur = self.current.as_mut().expect("start_segment runs before any push");
            let n = cur.room().min(rest.len());
            cur.buf.as_bytes_mut()[cur.len..cur.len + n].copy_from_slice(&rest[..n]);
            cur.len += n;
            rest = &rest[n..];
            if rest.is_empty() {
                cur.reached = Mark {
                    offset: end_offset,
                    segment: cur.segment.base_offset,
                    data_len: cur.file_pos + cur.len as u64,
                    digest: self.digest,
                };
                break;
            }
            let (segment, next_pos, reached) =
                (cur.segment.clone(), cur.file_pos + cur.len as u64, cur.reached);
            let buf = self.buffer(&segment);
            let next = TailBuf::new(segment, buf, next_pos, &[], reached);
            let full = self.current.replace(next).expect("present");
            self.sealed.push_back(full);
        }
        self.pending_bytes += bytes.len();
    }

    /// Capacity of a new buffer: whole blocks, room for a carried block.
    fn capacity(&self) -> usize {
        self.chunk_bytes
            .next_multiple_of(self.alignment)
            .max(self.alignment * 2)
    }

    /// Takes the sealed buffers, oldest first: full buffers (or the last
    /// buffer of a segment already rolled away from), none ending in a
    /// block that a later buffer rewrites. The writer may write them while
    /// earlier ones of the same round are still in flight.
    pub fn take_sealed(&mut self) -> Vec<TailBuf<D>> {
        let out: Vec<TailBuf<D>> = self.sealed.drain(..).collect();
        let taken: usize = out.iter().map(|b| b.len - b.carried).sum();
        self.pending_bytes -= taken;
        out
    }

    /// Takes the current buffer if it holds unwritten bytes, replacing it
    /// with a fresh one that carries its partial block: the write of that
    /// fresh buffer rewrites the block, so it must wait until this one's
    /// write has completed (the writer ends its round with this).
    pub fn take_tail(&mut self) -> Option<TailBuf<D>> {
        let cur = self.current.take_if(|cur| cur.dirty())?;
        let buf = self.buffer(&cur.segment);
        let (pos, partial) = cur.partial_block(self.alignment);
        self.current = Some(TailBuf::new(cur.segment.clone(), buf, pos, partial, cur.reached));
        self.pending_bytes -= cur.len - cur.carried;
        Some(cur)
    }

    /// Forgets every buffer (after truncate_suffix, which restarts the tail).
    pub fn clear(&mut self) {
        self.current = None;
        self.sealed.clear();
        self.pending_bytes = 0;
    }
}
