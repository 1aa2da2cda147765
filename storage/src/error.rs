//! The one error type of the storage crate.
//!
//! Classes are kept apart so callers can act on them without parsing text:
//! I/O failures, corruption at a known offset, fencing after a failed write,
//! rejected input and configured limits. Each variant says whether retrying
//! the same call can succeed.

use shoal_protocol::batch::BatchError;
use std::path::PathBuf;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An I/O call failed outside the write path (open, read, list, rename).
    /// Retryable: the log state is unchanged, and a later call may succeed if
    /// the cause (a full disk, a missing directory) goes away. Failures of a
    /// data write or fdatasync never surface as this: they fence the log.
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A batch before the tail of the log does not verify (bad CRC, bad
    /// framing, or an offset out of sequence) while valid data follows it, or
    /// it sits in a sealed segment. Terminal: the partition must be fenced and
    /// repaired by an operator (or from a replica); the log never truncates
    /// acknowledged data on its own.
    #[error("corrupt batch at offset {offset} (segment {segment_base}, byte {position}): {reason}")]
    Corrupt {
        segment_base: u64,
        offset: u64,
        position: u64,
        reason: String,
    },

    /// The log was fenced by an earlier failed write or fdatasync and is now
    /// read-only. Terminal for this `PartitionLog`: reopening runs recovery,
    /// which is the only way back (the kernel may have dropped the dirty
    /// pages, so the failed write is never retried and trusted).
    #[error("log is fenced (read-only) after a failed {operation}: {cause}")]
    Fenced { operation: &'static str, cause: String },

    /// The log was closed; no further appends are accepted. Terminal.
    #[error("log is closed")]
    Closed,

    /// The batch handed to `append` is not one well-formed batch. Terminal
    /// for that batch: the same bytes fail the same way.
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] BatchError),

    /// A configured limit would be exceeded (batch size, compaction key
    /// count). Terminal for that call; the limit is a setting.
    #[error("limit exceeded: {what} is {value}, the limit is {limit}")]
    Limit {
        what: &'static str,
        value: u64,
        limit: u64,
    },

    /// The requested offset is outside `[log_start_offset, log_end_offset]`.
    /// Retryable after the caller refreshes its view of the log bounds.
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: u64, start: u64, end: u64 },

    /// A setting is inconsistent (e.g. a segment larger than the index can
    /// address). Terminal until the configuration changes.
    #[error("invalid log configuration: {0}")]
    Config(String),

    /// A file in the log directory has a name the log does not recognise as
    /// its own. Terminal until an operator removes it.
    #[error("unexpected file in log directory: {0}")]
    UnexpectedFile(PathBuf),
}

impl LogError {
    /// Wraps an I/O error with what the log was doing.
    pub fn io(context: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        LogError::Io {
            context: context.into(),
            source: source.into(),
        }
    }

    /// True when the same call may succeed later without operator action.
    pub fn is_retryable(&self) -> bool {
        matches!(self, LogError::Io { .. } | LogError::OffsetOutOfRange { .. })
    }
}
