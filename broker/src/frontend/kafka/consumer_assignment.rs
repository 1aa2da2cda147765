//! Reading the partitions out of a member's assignment, for group stats.
//!
//! In the `consumer` protocol type (every Kafka consumer's) the leader's
//! assignment for a member is a `ConsumerProtocolAssignment`: i16 version,
//! an i32-counted array of (i16-length topic name, i32-counted array of
//! i32 partitions), then nullable user data. The broker never needs it to
//! serve the group; it reads it only to show which member owns which
//! partition. The bytes come from a client, so every count is checked
//! against the bytes left before anything is allocated, and anything odd
//! gives up (an empty list) rather than guess.

/// Most partitions read from one assignment.
pub const ASSIGNED_PARTITIONS_MAX: usize = 100_000;

/// The (topic, partition) pairs of a `consumer` assignment, or none when
/// the bytes are not one.
pub fn assigned_partitions(bytes: &[u8]) -> Vec<(String, u32)> {
    parse(bytes).unwrap_or_default()
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn parse(bytes: &[u8]) -> Option<Vec<(String, u32)>> {
    let mut c = Cursor { buf: bytes };
    let version = c.i16()?;
    if !(0..=3).contains(&version) {
        return None;
    }
    let topics = usize::try_from(c.i32()?).ok()?;
    // A topic takes at least 6 bytes (name length and partition count).
    if topics > c.buf.len() / 6 {
        return None;
    }
    let mut out = Vec::new();
    for _ in 0..topics {
        let name_len = usize::try_from(c.i16()?).ok()?;
        let name = std::str::from_utf8(c.take(name_len)?).ok()?.to_string();
        let count = usize::try_from(c.i32()?).ok()?;
        if count > c.buf.len() / 4 || out.len() + count > ASSIGNED_PARTITIONS_MAX {
            return None;
        }
        for _ in 0..count {
            let p = u32::try_from(c.i32()?).ok()?;
            out.push((name.clone(), p));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::{ConsumerProtocolAssignment, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    /// An assignment as kafka-protocol (and so every Kafka client) writes
    /// it reads back; truncations and hostile counts give nothing.
    #[test]
    fn reads_real_assignments_and_refuses_garbage() {
        let topic = |name: &str, ps: Vec<i32>| {
            TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_string(name.to_string())))
                .with_partitions(ps)
        };
        let a = ConsumerProtocolAssignment::default()
            .with_assigned_partitions(vec![topic("orders", vec![0, 3]), topic("pay", vec![1])]);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&1i16.to_be_bytes());
        a.encode(&mut buf, 1).unwrap();
        let want = vec![
            ("orders".to_string(), 0),
            ("orders".to_string(), 3),
            ("pay".to_string(), 1),
        ];
        assert_eq!(assigned_partitions(&buf), want);
        // Every cut before the (ignored) user data loses a field.
        for cut in 0..buf.len() - 4 {
            assert!(assigned_partitions(&buf[..cut]).is_empty(), "cut at {cut}");
        }
        let mut hostile = vec![0, 0];
        hostile.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(assigned_partitions(&hostile).is_empty());
        assert!(assigned_partitions(b"").is_empty());
    }
}
