//! Read: the fetch path of the partition service, its long poll, offset
//! lookups by position and time, and the view that lag figures need.
//!
//! Reads return the stored batch bytes themselves (shared with the tail
//! cache or the disk read buffer), never re-encoded, up to the high
//! watermark. A caught-up reader may wait (long poll) for the watermark to
//! pass its offset, bounded by the caller's `max_wait`.

use std::time::Duration;

use bytes::Bytes;
use shoal_storage::LogError;

use super::replica::Replica;
use crate::error::{BrokerError, BrokerResult};
use crate::ids::Offset;

/// Batches read from one partition.
#[derive(Debug, Clone, Default)]
pub struct ReadBatches {
    /// Whole batches, the first one holding the asked offset.
    pub batches: Vec<Bytes>,
    /// Records in those batches.
    pub records: u64,
    pub high_watermark: u64,
    pub log_start: u64,
    pub log_end: u64,
}

/// Where to look up an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    /// The first offset still stored.
    Earliest,
    /// The high watermark: the next offset a reader will see.
    Latest,
    /// The first offset appended at or after this time (ms since the epoch);
    /// the high watermark when none was.
    Timestamp(i64),
}

/// An offset found by [`Replica::list_offset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    pub offset: Offset,
    /// Append time of the batch holding the offset (none at the end).
    pub timestamp_ms: Option<i64>,
}

/// A partition's figures and the append time at one offset (for lag).
#[derive(Debug, Clone, Default)]
pub struct PartitionView {
    pub log_start: u64,
    pub high_watermark: u64,
    pub log_end: u64,
    pub size_bytes: u64,
    pub segments: u32,
    pub last_append_ms: Option<i64>,
    /// Append time of the batch holding the asked offset (`None` at the end).
    pub append_ms_at: Option<i64>,
    pub fenced: bool,
}

impl Replica {
    /// Reads from `offset`, waiting up to `max_wait` for data when the reader
    /// is caught up. A fenced or closed log ends the wait at once.
    pub async fn read(
        &self,
        offset: Offset,
        max_bytes: u32,
        max_wait: Duration,
    ) -> BrokerResult<ReadBatches> {
        let log = self.log()?.clone();
        let offset = offset.get();
        if !max_wait.is_zero() && log.high_watermark() <= offset && offset <= log.log_end_offset() {
            let wait = async {
                let _ = log.wait_for_offset(offset).await;
            };
            futures_lite::future::or(wait, crate::runtime::sleep(max_wait)).await;
        }
        match log.read(offset, max_bytes as usize).await {
            Ok(read) => {
                let mut out = ReadBatches {
                    batches: Vec::with_capacity(read.batches.len()),
                    records: 0,
                    high_watermark: read.high_watermark,
                    log_start: read.log_start_offset,
                    log_end: log.log_end_offset(),
                };
                for b in read.batches {
                    out.records += b.next_offset - b.base_offset;
                    out.batches.push(b.bytes);
                }
                Ok(out)
            }
            Err(LogError::OffsetOutOfRange { offset, start, end }) => Err(BrokerError::OffsetOutOfRange {
                offset,
                log_start: start,
                log_end: end,
                high_watermark: log.high_watermark(),
            }),
            Err(e) => Err(BrokerError::from_log(&e)),
        }
    }

    /// Resolves an offset query.
    pub async fn list_offset(&self, query: OffsetQuery) -> BrokerResult<ListedOffset> {
        let log = self.log()?.clone();
        let offset = match query {
            OffsetQuery::Earliest => log.log_start_offset(),
            OffsetQuery::Latest => log.high_watermark(),
            OffsetQuery::Timestamp(ts) => log
                .offset_for_timestamp(ts)
                .await?
                .unwrap_or_else(|| log.high_watermark()),
        };
        let timestamp_ms = log.append_time_of(offset).await.ok().flatten();
        Ok(ListedOffset {
            offset: Offset(offset),
            timestamp_ms,
        })
    }

    /// Figures plus the append time at `offset` (when below the watermark)
    /// and of the last record.
    pub async fn view(&self, offset: Offset) -> BrokerResult<PartitionView> {
        let figures = self.figures();
        let log = self.log()?.clone();
        let append_ms_at = if offset.get() < figures.high_watermark {
            log.append_time_of(offset.get().max(figures.log_start))
                .await
                .ok()
                .flatten()
        } else {
            None
        };
        let last_append_ms = if figures.log_end > figures.log_start {
            log.append_time_of(figures.log_end - 1).await.ok().flatten()
        } else {
            None
        };
        Ok(PartitionView {
            log_start: figures.log_start,
            high_watermark: figures.high_watermark,
            log_end: figures.log_end,
            size_bytes: figures.size_bytes,
            segments: figures.segments,
            last_append_ms,
            append_ms_at,
            fenced: figures.fenced.is_some(),
        })
    }
}
