//! Retention decisions (sans-IO): which whole segments to delete.
//!
//! Retention only ever removes whole segments from the front of the log and
//! never the active (last) segment, so the log stays a contiguous suffix.
//! - By time: a segment goes once its newest batch is `retention_ms` old.
//! - By size (Kafka's rule): the oldest segment goes while the segments after
//!   it still hold at least `retention_bytes`, so the log never shrinks
//!   below the configured size.

/// What retention needs to know about one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    pub base_offset: u64,
    pub size_bytes: u64,
    /// Newest append time in the segment; `None` when it is empty.
    pub max_append_ms: Option<i64>,
}

/// How many leading segments of `segments` (oldest first, the last one
/// active) to delete at `now_ms`.
pub fn segments_to_delete(
    segments: &[SegmentSummary],
    now_ms: i64,
    retention_ms: Option<u64>,
    retention_bytes: Option<u64>,
) -> usize {
    let candidates = segments.len().saturating_sub(1);
    let by_time = retention_ms.map_or(0, |ms| {
        segments[..candidates]
            .iter()
            .take_while(|s| {
                s.max_append_ms
                    .is_none_or(|t| now_ms.saturating_sub(t) >= ms as i64)
            })
            .count()
    });
    let by_size = retention_bytes.map_or(0, |limit| {
        let mut remaining: u64 = segments.iter().map(|s| s.size_bytes).sum();
        segments[..candidates]
            .iter()
            .take_while(|s| {
                let keep = remaining - s.size_bytes >= limit;
                if keep {
                    remaining -= s.size_bytes;
                }
                keep
            })
            .count()
    });
    by_time.max(by_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(times: &[i64]) -> Vec<SegmentSummary> {
        times
            .iter()
            .enumerate()
            .map(|(i, &t)| SegmentSummary {
                base_offset: i as u64 * 10,
                size_bytes: 100,
                max_append_ms: Some(t),
            })
            .collect()
    }

    /// Time retention stops at the first young segment and spares the active one.
    #[test]
    fn by_time() {
        let s = segs(&[100, 200, 300, 400]);
        assert_eq!(segments_to_delete(&s, 1000, Some(750), None), 2);
        assert_eq!(segments_to_delete(&s, 1000, Some(1), None), 3);
        assert_eq!(segments_to_delete(&s, 1000, Some(5000), None), 0);
        assert_eq!(segments_to_delete(&s, 1000, None, None), 0);
    }

    /// Size retention keeps at least `retention_bytes` and the active segment.
    #[test]
    fn by_size() {
        let s = segs(&[1, 2, 3, 4]);
        assert_eq!(segments_to_delete(&s, 0, None, Some(250)), 1);
        assert_eq!(segments_to_delete(&s, 0, None, Some(200)), 2);
        assert_eq!(segments_to_delete(&s, 0, None, Some(0)), 3);
        assert_eq!(segments_to_delete(&s, 0, None, Some(400)), 0);
        assert_eq!(segments_to_delete(&s[..1], 0, Some(0), Some(0)), 0);
    }
}
