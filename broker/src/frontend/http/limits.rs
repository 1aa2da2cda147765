//! The HTTP front door's bounds.

/// Largest request body accepted, in bytes.
pub const HTTP_BODY_BYTES_MAX: usize = 8 << 20;
/// Longest a client may take from the first byte of a request head to its end.
pub const HEADER_READ_MS_MAX: u64 = 10_000;
/// Longest a client may take to send a request body once its head arrived.
pub const BODY_READ_MS_MAX: u64 = 30_000;
/// A connection with no request in service and no traffic for this long is closed.
pub const IDLE_MS_MAX: u64 = 60_000;
