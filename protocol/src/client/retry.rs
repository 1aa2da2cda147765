//! The client's retry policy, pure: given a failure and the attempts so
//! far, retry after a backoff or give up. No clock, no socket; the client
//! sleeps the returned duration.
//!
//! Two budgets: `retries_max` for retryable failures (a broker busy,
//! recovering, a connection lost), with a constant `backoff_ms`; and
//! `redirects_max` for redirects (`not_leader` or `not_coordinator`, or a
//! lost connection to a replicated partition's leader or a cluster's group
//! coordinator), with a backoff doubling from
//! `backoff_ms` up to `redirect_backoff_ms_max`, long enough in total to
//! ride out a raft election (300-500 ms of silence, then a vote).

use std::time::Duration;

use crate::error::ProtocolError;

/// Cap on the doubling exponent, so the shift cannot overflow.
const REDIRECT_DOUBLINGS_MAX: u32 = 16;

/// How a client retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub retries_max: u32,
    pub redirects_max: u32,
    pub backoff_ms: u64,
    pub redirect_backoff_ms_max: u64,
}

/// The attempts one call made so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retries {
    pub retries: u32,
    pub redirects: u32,
}

impl RetryPolicy {
    /// After a failed attempt: the backoff before the next one, or `None`
    /// to give up with `err`. `redirect` says the caller classed `err` as
    /// a redirect (see [`super::Client`]). Counts the attempt in `tries`.
    pub fn next(&self, err: &ProtocolError, redirect: bool, tries: &mut Retries) -> Option<Duration> {
        if redirect {
            if tries.redirects >= self.redirects_max {
                return None;
            }
            let doublings = tries.redirects.min(REDIRECT_DOUBLINGS_MAX);
            tries.redirects += 1;
            let ms = self
                .backoff_ms
                .saturating_mul(1 << doublings)
                .min(self.redirect_backoff_ms_max.max(self.backoff_ms));
            return Some(Duration::from_millis(ms));
        }
        let retryable = err.is_retryable() || matches!(err, ProtocolError::Closed(_) | ProtocolError::Io(_));
        if !retryable || tries.retries >= self.retries_max {
            return None;
        }
        tries.retries += 1;
        Some(Duration::from_millis(self.backoff_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            retries_max: 2,
            redirects_max: 5,
            backoff_ms: 100,
            redirect_backoff_ms_max: 350,
        }
    }

    /// Redirects back off 100, 200, 350, 350, 350 ms, then give up.
    #[test]
    fn redirects_double_up_to_the_cap_and_are_bounded() {
        let err = ProtocolError::broker(ErrorCode::NotLeader.to_wire(), "not the leader");
        let mut tries = Retries::default();
        let waits: Vec<u64> = std::iter::from_fn(|| policy().next(&err, true, &mut tries))
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(waits, vec![100, 200, 350, 350, 350]);
        assert_eq!(tries.redirects, 5);
        assert_eq!(tries.retries, 0, "redirects do not spend the retry budget");
    }

    /// Retryable failures wait the constant backoff; terminal ones give up.
    #[test]
    fn retries_are_constant_and_terminal_errors_are_not_retried() {
        let busy = ProtocolError::Closed("reset".into());
        let mut tries = Retries::default();
        assert_eq!(
            policy().next(&busy, false, &mut tries),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            policy().next(&busy, false, &mut tries),
            Some(Duration::from_millis(100))
        );
        assert_eq!(policy().next(&busy, false, &mut tries), None);
        let terminal = ProtocolError::broker(ErrorCode::UnknownTopic.to_wire(), "no such topic");
        assert_eq!(policy().next(&terminal, false, &mut Retries::default()), None);
    }
}
