//! Records as the client hands them to applications, read out of batches.

use crate::batch::{self, BatchError, BatchLimits, BatchRecords};

/// One consumed record, owned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConsumedRecord {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    /// Producer create time (ms since the Unix epoch).
    pub timestamp_ms: i64,
    /// Broker append time (ms since the Unix epoch).
    pub append_time_ms: i64,
    pub key: Option<Vec<u8>>,
    /// `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub message_id: Option<String>,
    /// 1 on first delivery; higher on redeliveries (group consumption only;
    /// always 1 for partition fetches).
    pub delivery_count: u32,
}

/// Which records of a batch to surface.
pub(crate) enum Select<'a> {
    /// Every record at or after this offset (partition fetch).
    From(u64),
    /// Exactly these offsets, with their delivery counts (group poll).
    Listed(&'a [(u64, u32)]),
}

/// Validates one batch and appends the selected records to `out`.
pub(crate) fn read_batch(
    topic: &str,
    partition: u32,
    bytes: &[u8],
    select: Select<'_>,
    out: &mut Vec<ConsumedRecord>,
) -> Result<(), BatchError> {
    let limits = BatchLimits::default();
    let header = batch::validate(bytes, &limits)?;
    let body = BatchRecords::open(bytes, &header, &limits)?;
    let records = body.records()?;
    let mut listed = match &select {
        Select::Listed(list) => list.iter().peekable(),
        Select::From(_) => [].iter().peekable(),
    };
    for (i, record) in records.iter().enumerate() {
        let offset = header.base_offset + i as u64;
        let delivery_count = match &select {
            Select::From(first) if offset < *first => continue,
            Select::From(_) => 1,
            Select::Listed(_) => {
                while listed.next_if(|(o, _)| *o < offset).is_some() {}
                match listed.next_if(|(o, _)| *o == offset) {
                    Some((_, count)) => *count,
                    None => continue,
                }
            }
        };
        out.push(ConsumedRecord {
            topic: topic.to_string(),
            partition,
            offset,
            timestamp_ms: batch::record_timestamp(&header, record),
            append_time_ms: header.append_time_ms,
            key: record.key.as_ref().map(|k| k.to_vec()),
            value: record.value.as_ref().map(|v| v.to_vec()),
            headers: record
                .headers
                .iter()
                .map(|h| (h.key.to_string(), h.value.to_vec()))
                .collect(),
            message_id: record.message_id.as_ref().map(|m| m.to_string()),
            delivery_count,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, NewRecord};

    fn batch_at(base: u64, n: usize) -> rkyv::util::AlignedVec<16> {
        let mut b = BatchBuilder::new();
        for i in 0..n {
            b.push(NewRecord {
                timestamp_ms: 1000 + i as i64,
                value: Some(vec![i as u8]),
                ..NewRecord::default()
            });
        }
        let mut bytes = b.finish().unwrap();
        batch::patch(&mut bytes, base, 0, 5000);
        bytes
    }

    /// A fetch skips records below the wanted offset; a poll surfaces only the
    /// listed offsets, with their delivery counts.
    #[test]
    fn selects_records() {
        let bytes = batch_at(10, 5);
        let mut out = Vec::new();
        read_batch("t", 2, &bytes, Select::From(12), &mut out).unwrap();
        assert_eq!(out.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![12, 13, 14]);
        assert_eq!(out[0].timestamp_ms, 1002);
        assert_eq!(out[0].append_time_ms, 5000);
        out.clear();
        read_batch(
            "t",
            2,
            &bytes,
            Select::Listed(&[(9, 1), (11, 3), (14, 1)]),
            &mut out,
        )
        .unwrap();
        let got: Vec<_> = out.iter().map(|r| (r.offset, r.delivery_count)).collect();
        assert_eq!(got, vec![(11, 3), (14, 1)]);
    }
}
