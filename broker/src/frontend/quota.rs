//! Byte-rate quotas per client connection, sans-IO.
//!
//! Kafka-style: the broker never drops a request for being over quota; it
//! serves it, computes how long the client must hold back for its rate to
//! fall back under the limit, returns that as `throttle_time_ms` in the reply
//! and stops reading the connection for that long (so a client that ignores
//! the hint is throttled by TCP backpressure anyway).

/// Longest throttle one request can earn, so a huge burst cannot mute a
/// connection for minutes.
pub const THROTTLE_MS_MAX: u64 = 30_000;

/// A token bucket measured in bytes; one second of burst.
#[derive(Debug, Clone)]
pub struct ByteRate {
    bytes_per_sec: u64,
    /// Bytes of credit; negative when the client is over its rate.
    credit: i64,
    last_ms: i64,
}

impl ByteRate {
    /// `bytes_per_sec == 0` means unlimited.
    pub fn new(bytes_per_sec: u64, now_ms: i64) -> Self {
        ByteRate {
            bytes_per_sec,
            credit: bytes_per_sec as i64,
            last_ms: now_ms,
        }
    }

    /// Charges `bytes` at `now_ms` and returns the throttle time in ms
    /// (0 when within the rate).
    pub fn charge(&mut self, bytes: u64, now_ms: i64) -> u64 {
        if self.bytes_per_sec == 0 {
            return 0;
        }
        let rate = self.bytes_per_sec as i64;
        let elapsed = (now_ms - self.last_ms).max(0);
        self.last_ms = now_ms;
        self.credit = (self.credit + elapsed.saturating_mul(rate) / 1000).min(rate);
        self.credit -= bytes as i64;
        if self.credit >= 0 {
            return 0;
        }
        let deficit = (-self.credit) as u64;
        (deficit.saturating_mul(1000) / self.bytes_per_sec).min(THROTTLE_MS_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within the rate there is no throttle; over it the throttle is the
    /// time the deficit takes to refill.
    #[test]
    fn throttle_matches_deficit() {
        let mut q = ByteRate::new(1000, 0);
        assert_eq!(q.charge(1000, 0), 0);
        assert_eq!(q.charge(500, 0), 500);
        // After 500 ms the deficit is paid back.
        assert_eq!(q.charge(0, 500), 0);
        let mut free = ByteRate::new(0, 0);
        assert_eq!(free.charge(u64::MAX / 2, 0), 0);
    }

    /// The throttle is capped.
    #[test]
    fn throttle_capped() {
        let mut q = ByteRate::new(1, 0);
        assert_eq!(q.charge(1 << 40, 0), THROTTLE_MS_MAX);
    }
}
