//! Stored records as JSON: opening fetched batches (validated access) and
//! turning each record into strings in the requested encoding.
//!
//! Values are UTF-8 strings by default; a record whose key, value or header
//! values are not valid UTF-8 is sent base64-encoded with
//! `"encoding": "base64"` on that record, so no byte is ever lost.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Serialize;
use shoal_protocol::batch::{self, BatchIter, BatchLimits, BatchRecords};
use shoal_protocol::error::ErrorCode;

use super::common::Encoding;
use super::json::HttpError;

/// One record as JSON shows it.
#[derive(Debug, Serialize)]
pub struct RecordOut {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<String>,
    pub value: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub message_id: Option<String>,
    pub encoding: &'static str,
    /// Set in group mode: 1 on first delivery, more on redeliveries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_count: Option<u32>,
}

/// Turns stored record bytes into JSON strings in the requested encoding,
/// falling back to base64 for the whole record if any part is not UTF-8.
struct RawRecord<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: Vec<(&'a str, &'a [u8])>,
}

impl RawRecord<'_> {
    fn encode(
        &self,
        want: Encoding,
    ) -> (
        Option<String>,
        Option<String>,
        BTreeMap<String, String>,
        &'static str,
    ) {
        let utf8 = want == Encoding::Utf8
            && self.key.is_none_or(|k| std::str::from_utf8(k).is_ok())
            && self.value.is_none_or(|v| std::str::from_utf8(v).is_ok())
            && self.headers.iter().all(|(_, v)| std::str::from_utf8(v).is_ok());
        let enc = |b: &[u8]| {
            if utf8 {
                Encoding::Utf8.encode(b)
            } else {
                Encoding::Base64.encode(b)
            }
        };
        let headers = self
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), enc(v)))
            .collect();
        let name = if utf8 { "utf8" } else { "base64" };
        (self.key.map(enc), self.value.map(enc), headers, name)
    }
}

/// Opens fetched batches and returns the records at or after `from`, at
/// most `max` of them.
pub fn decode_records(
    topic: &str,
    partition: u32,
    batches: &[Bytes],
    from: u64,
    max: usize,
    enc: Encoding,
) -> Result<Vec<RecordOut>, HttpError> {
    let limits = BatchLimits::default();
    let mut out = Vec::new();
    for bytes in batches {
        for item in BatchIter::new(bytes, limits) {
            let (header, raw) =
                item.map_err(|e| HttpError::from_code(ErrorCode::CorruptBatch, e.to_string()))?;
            let opened = BatchRecords::open(raw, &header, &limits)
                .map_err(|e| HttpError::from_code(ErrorCode::CorruptBatch, e.to_string()))?;
            let records = opened
                .records()
                .map_err(|e| HttpError::from_code(ErrorCode::CorruptBatch, e.to_string()))?;
            for (i, rec) in records.iter().enumerate() {
                let offset = header.base_offset + i as u64;
                if offset < from {
                    continue;
                }
                if out.len() >= max {
                    return Ok(out);
                }
                let raw = RawRecord {
                    key: rec.key.as_ref().map(|k| k.as_slice()),
                    value: rec.value.as_ref().map(|v| v.as_slice()),
                    headers: rec
                        .headers
                        .iter()
                        .map(|h| (h.key.as_str(), h.value.as_slice()))
                        .collect(),
                };
                let (key, value, headers, encoding) = raw.encode(enc);
                out.push(RecordOut {
                    topic: topic.to_string(),
                    partition,
                    offset,
                    timestamp_ms: batch::record_timestamp(&header, rec),
                    key,
                    value,
                    headers,
                    message_id: rec.message_id.as_ref().map(|m| m.to_string()),
                    encoding,
                    delivery_count: None,
                });
            }
        }
    }
    Ok(out)
}
