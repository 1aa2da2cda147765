//! The dead-letter quarantine: browse, counts by reason, redrive, purge.
//!
//! Records land in a topic's quarantine after `max_attempts` failed
//! deliveries to a group, or on an explicit reject. Each entry keeps the
//! record and its original coordinates, so an operator can inspect it
//! without consuming it, fix the cause, and redrive it to the failing group
//! only. Redrive is paced (`rate_per_sec`), can be a dry run, and is
//! resumable through a cursor; a loop guard refuses entries that were
//! already redriven `redrive_max` times by the broker's policy.

use crate::api::ApiKey;
use crate::messages::message_pair;

/// Which entries an operation applies to; `None`/empty fields match all.
#[derive(
    Debug, Clone, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct QuarantineFilter {
    /// Only entries that failed in this group.
    pub group: Option<String>,
    pub partition: Option<u32>,
    /// Only entries whose last failure reason contains this text.
    pub reason_contains: Option<String>,
    /// Only these entry ids.
    pub entry_ids: Vec<u64>,
}

/// A record header as stored in the quarantine.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct QuarantineHeader {
    pub key: String,
    pub value: Vec<u8>,
}

/// One quarantined record.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct QuarantineEntry {
    /// Stable id within the topic's quarantine, increasing in entry order.
    pub entry_id: u64,
    pub topic: String,
    pub partition: u32,
    /// The record's offset in its partition.
    pub offset: u64,
    /// The record's create time.
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<QuarantineHeader>,
    pub message_id: Option<String>,
    /// The group whose deliveries failed.
    pub group: String,
    /// Deliveries attempted before quarantine.
    pub attempts: u32,
    /// The last nack reason (or "lease expired", "rejected: …").
    pub reason: String,
    pub first_failure_at_ms: i64,
    pub last_failure_at_ms: i64,
    pub quarantined_at_ms: i64,
    /// How many times this entry was redriven before (loop guard).
    pub redrive_count: u32,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct QuarantineBrowseRequest {
    pub topic: String,
    pub filter: QuarantineFilter,
    /// Cap on entries returned.
    pub limit: u32,
    /// Return entries with `entry_id` greater than this (the previous
    /// reply's `next_cursor`); `None` starts at the oldest.
    pub cursor: Option<u64>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct QuarantineBrowseResponse {
    /// [`crate::error::ErrorCode`]: `UnknownTopic`.
    pub error: u16,
    pub message: String,
    /// In `entry_id` order. Browsing does not change the entries.
    pub entries: Vec<QuarantineEntry>,
    /// Cursor for the next page; `None` when there are no more entries.
    pub next_cursor: Option<u64>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct QuarantineCountsRequest {
    pub topic: String,
    pub filter: QuarantineFilter,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct ReasonCount {
    pub group: String,
    pub reason: String,
    pub count: u64,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct QuarantineCountsResponse {
    /// [`crate::error::ErrorCode`].
    pub error: u16,
    pub message: String,
    /// Entries matching the filter.
    pub total: u64,
    /// Counts grouped by (group, reason), largest first.
    pub counts: Vec<ReasonCount>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct QuarantineRedriveRequest {
    pub topic: String,
    /// Entries go back to this group only (other groups never see them again).
    pub group: String,
    pub filter: QuarantineFilter,
    /// Pace in entries per second; 0 means as fast as possible.
    pub rate_per_sec: u32,
    /// Count what would be redriven, move nothing.
    pub dry_run: bool,
    /// Cap on entries redriven by this request; 0 means no cap.
    pub max_entries: u32,
    /// Resume after this entry id (the previous reply's `next_cursor`).
    pub cursor: Option<u64>,
    /// Reply (with a cursor to resume) before this much time has passed.
    pub timeout_ms: u32,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct QuarantineRedriveResponse {
    /// [`crate::error::ErrorCode`].
    pub error: u16,
    pub message: String,
    /// Entries matching the filter that this request looked at.
    pub matched: u64,
    /// Entries handed back to the group (0 on a dry run).
    pub redriven: u64,
    /// Entries refused by the loop guard.
    pub skipped_loop_guard: u64,
    /// Where to resume; `None` when every matching entry was handled.
    pub next_cursor: Option<u64>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct QuarantinePurgeRequest {
    pub topic: String,
    pub filter: QuarantineFilter,
    /// Count what would be purged, delete nothing.
    pub dry_run: bool,
}

#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct QuarantinePurgeResponse {
    /// [`crate::error::ErrorCode`].
    pub error: u16,
    pub message: String,
    /// Entries deleted (or, on a dry run, that would be).
    pub purged: u64,
}

message_pair!(QuarantineBrowseRequest => QuarantineBrowseResponse, ApiKey::QuarantineBrowse);
message_pair!(QuarantineCountsRequest => QuarantineCountsResponse, ApiKey::QuarantineCounts);
message_pair!(QuarantineRedriveRequest => QuarantineRedriveResponse, ApiKey::QuarantineRedrive);
message_pair!(QuarantinePurgeRequest => QuarantinePurgeResponse, ApiKey::QuarantinePurge);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::{arbitrary_struct, round_trip_tests};

    arbitrary_struct!(QuarantineFilter {
        group,
        partition,
        reason_contains,
        entry_ids
    });
    arbitrary_struct!(QuarantineHeader { key, value });
    arbitrary_struct!(QuarantineEntry {
        entry_id,
        topic,
        partition,
        offset,
        timestamp_ms,
        key,
        value,
        headers,
        message_id,
        group,
        attempts,
        reason,
        first_failure_at_ms,
        last_failure_at_ms,
        quarantined_at_ms,
        redrive_count
    });
    arbitrary_struct!(QuarantineBrowseRequest {
        topic,
        filter,
        limit,
        cursor
    });
    arbitrary_struct!(QuarantineBrowseResponse {
        error,
        message,
        entries,
        next_cursor
    });
    arbitrary_struct!(QuarantineCountsRequest { topic, filter });
    arbitrary_struct!(ReasonCount { group, reason, count });
    arbitrary_struct!(QuarantineCountsResponse {
        error,
        message,
        total,
        counts
    });
    arbitrary_struct!(QuarantineRedriveRequest {
        topic,
        group,
        filter,
        rate_per_sec,
        dry_run,
        max_entries,
        cursor,
        timeout_ms
    });
    arbitrary_struct!(QuarantineRedriveResponse {
        error,
        message,
        matched,
        redriven,
        skipped_loop_guard,
        next_cursor
    });
    arbitrary_struct!(QuarantinePurgeRequest {
        topic,
        filter,
        dry_run
    });
    arbitrary_struct!(QuarantinePurgeResponse {
        error,
        message,
        purged
    });

    round_trip_tests! {
        quarantine_browse_request: QuarantineBrowseRequest,
        quarantine_browse_response: QuarantineBrowseResponse,
        quarantine_counts_request: QuarantineCountsRequest,
        quarantine_counts_response: QuarantineCountsResponse,
        quarantine_redrive_request: QuarantineRedriveRequest,
        quarantine_redrive_response: QuarantineRedriveResponse,
        quarantine_purge_request: QuarantinePurgeRequest,
        quarantine_purge_response: QuarantinePurgeResponse,
    }
}
