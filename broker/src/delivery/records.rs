//! Reading the records delivery hands out or quarantines, through the
//! [`PartitionSource`]: the stored batch holding an offset, and one record's
//! parts for a quarantine entry.

use bytes::Bytes;
use shoal_protocol::batch::{self, BatchLimits, BatchRecords};
use shoal_protocol::messages::dlq::QuarantineHeader;

use super::assignment::TopicPartition;
use super::failure::RecordDetail;
use super::source::PartitionSource;
use crate::error::{BrokerError, BrokerResult};
use crate::ids::{Offset, PartitionId};

/// The stored batch holding `offset` and its next offset.
pub async fn read_batch_at<S: PartitionSource>(
    src: &S,
    tp: &TopicPartition,
    offset: u64,
) -> BrokerResult<(Bytes, u64)> {
    let read = src
        .read(
            &tp.topic,
            PartitionId(tp.partition),
            Offset(offset),
            1,
            std::time::Duration::ZERO,
        )
        .await?;
    let first = read
        .batches
        .into_iter()
        .next()
        .ok_or(BrokerError::OffsetOutOfRange {
            offset,
            log_start: read.log_start,
            log_end: read.log_end,
            high_watermark: read.high_watermark,
        })?;
    let header = batch::BatchHeader::parse(&first).map_err(|e| BrokerError::CorruptBatch(e.to_string()))?;
    if !(header.base_offset..header.next_offset()).contains(&offset) {
        return Err(BrokerError::OffsetOutOfRange {
            offset,
            log_start: read.log_start,
            log_end: read.log_end,
            high_watermark: read.high_watermark,
        });
    }
    Ok((first, header.next_offset()))
}

/// Reads one record from its partition's owner; `None` if it is gone.
pub async fn read_record<S: PartitionSource>(
    src: &S,
    tp: &TopicPartition,
    offset: u64,
) -> Option<RecordDetail> {
    let (batch, _) = read_batch_at(src, tp, offset).await.ok()?;
    let limits = BatchLimits::default();
    let header = batch::validate(&batch, &limits).ok()?;
    let body = BatchRecords::open(&batch, &header, &limits).ok()?;
    let records = body.records().ok()?;
    let index = offset.checked_sub(header.base_offset)? as usize;
    let r = records.get(index)?;
    Some(RecordDetail {
        timestamp_ms: batch::record_timestamp(&header, r),
        key: r.key.as_ref().map(|k| k.to_vec()),
        value: r.value.as_ref().map(|v| v.to_vec()),
        headers: r
            .headers
            .iter()
            .map(|h| QuarantineHeader {
                key: h.key.to_string(),
                value: h.value.to_vec(),
            })
            .collect(),
        message_id: r.message_id.as_ref().map(|m| m.to_string()),
    })
}
