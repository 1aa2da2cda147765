//! The cluster metadata log's contents (sans-IO): the commands that change
//! the cluster's topics, how one is written as a record batch, and how the
//! batches read back from the log turn into commands again.
//!
//! On a cluster, topic creation and deletion, and changes to users, tokens
//! and ACLs, go through one raft group over every node: the internal topic [`METADATA_TOPIC`], one partition, a
//! replica on shard 0 of each node (`shard::cluster_metadata` drives it).
//! Each command is one record: its value the rkyv archive of a
//! [`MetaCommand`], its `message_id` the request id of the node that asked
//! (so a request forwarded twice to the leader is stored once, by the
//! partition's ordinary dedup window). Every node applies the committed
//! commands in log order to its own catalogue, so every node serves the
//! same topics; the outcome of a command (created, or why not) is decided
//! by applying it, identically everywhere.

use bytes::BytesMut;
use shoal_protocol::batch::{self, BatchBuilder, BatchIter, BatchLimits, BatchRecords, NewRecord};
use shoal_protocol::messages::topic::{CreateTopicRequest, FlushPolicy, TopicConfig};

use super::checked_file::from_archive;
use super::security::SecurityChange;
use super::topic_registry::TopicMeta;

/// The metadata log's internal topic. User topics cannot start with `__`.
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// The node-link envelopes of [`METADATA_TOPIC`] with this partition carry
/// a proposal forwarded to the leader (a record batch), not a raft message.
pub const FORWARD_PARTITION: u32 = 1;
/// How long the metadata partition remembers request ids (forwarded
/// proposals are resent for much less than this).
const REQUEST_IDS_WINDOW_MS: u64 = 10 * 60 * 1000;
/// Cap on one command's encoded size.
pub const COMMAND_BYTES_MAX: usize = 64 << 10;

/// One change to the cluster's metadata.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum MetaCommand {
    CreateTopic(CreateTopicRequest),
    DeleteTopic {
        name: String,
    },
    /// Users, tokens, ACLs: credentials only salted and hashed, tokens only
    /// as their hash (as `security.meta` holds them).
    Security(SecurityChange),
}

/// A command read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedCommand {
    pub offset: u64,
    /// The asking node's request id (`None` when the record had none).
    pub request_id: Option<String>,
    /// The command, or why its record does not hold one (a record the
    /// applier skips, logged; the log is written by brokers only).
    pub command: Result<MetaCommand, String>,
}

/// The metadata partition's topic: replicated to all `nodes`, every write
/// fdatasynced, never deleted by retention.
pub fn metadata_topic(nodes: u32) -> TopicMeta {
    TopicMeta {
        name: METADATA_TOPIC.to_string(),
        config: TopicConfig {
            partitions: 1,
            retention_ms: None,
            retention_bytes: None,
            compacted: false,
            flush: FlushPolicy::Always,
            dedup_window_ms: REQUEST_IDS_WINDOW_MS,
            replication_factor: nodes,
            ..TopicConfig::default()
        },
    }
}

/// One command as a record batch ready to append.
pub fn encode(request_id: &str, command: &MetaCommand, now_ms: i64) -> Result<BytesMut, String> {
    let value = rkyv::to_bytes::<rkyv::rancor::Error>(command).map_err(|e| e.to_string())?;
    if value.len() > COMMAND_BYTES_MAX {
        return Err(format!(
            "metadata command of {} bytes exceeds {COMMAND_BYTES_MAX}",
            value.len()
        ));
    }
    let mut builder = BatchBuilder::new();
    builder.push(NewRecord {
        timestamp_ms: now_ms,
        key: None,
        value: Some(value.to_vec()),
        headers: Vec::new(),
        message_id: Some(request_id.to_string()),
    });
    let bytes = builder.finish().map_err(|e| e.to_string())?;
    Ok(BytesMut::from(bytes.as_slice()))
}

/// The commands of batches read from the metadata log, from `from` on
/// (records of the first batch below `from` are skipped).
pub fn decode(
    batches: &[bytes::Bytes],
    from: u64,
    limits: &BatchLimits,
) -> Result<Vec<LoggedCommand>, String> {
    let mut out = Vec::new();
    for bytes in batches {
        for item in BatchIter::new(bytes, *limits) {
            let (header, raw) = item.map_err(|e| e.to_string())?;
            let body = BatchRecords::open(raw, &header, limits).map_err(|e| e.to_string())?;
            let records = body.records().map_err(|e| e.to_string())?;
            for (i, record) in records.iter().enumerate() {
                let offset = header.base_offset + i as u64;
                if offset < from {
                    continue;
                }
                let command = match record.value.as_ref() {
                    Some(value) => from_archive::<MetaCommand>(value.as_slice()),
                    None => Err("a record without a value".to_string()),
                };
                out.push(LoggedCommand {
                    offset,
                    request_id: record.message_id.as_ref().map(|id| id.to_string()),
                    command,
                });
            }
        }
    }
    Ok(out)
}

/// The limits a metadata batch is read with.
pub fn limits() -> BatchLimits {
    BatchLimits::default()
}

/// Whether `bytes` is one valid batch (a forwarded proposal's first check).
pub fn is_batch(bytes: &[u8]) -> bool {
    batch::validate(bytes, &limits()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command survives the batch round trip with its request id and the
    /// offset the log gave it; offsets below `from` are skipped.
    #[test]
    fn commands_round_trip_through_batches() {
        let create = MetaCommand::CreateTopic(CreateTopicRequest {
            name: "orders".into(),
            config: TopicConfig {
                partitions: 3,
                replication_factor: 3,
                ..TopicConfig::default()
            },
        });
        let delete = MetaCommand::DeleteTopic { name: "old".into() };
        let mut a = encode("n1-5", &create, 1).unwrap();
        let mut b = encode("n2-9", &delete, 2).unwrap();
        batch::patch(&mut a, 4, 1, 1);
        batch::patch(&mut b, 5, 1, 2);
        let batches = vec![a.freeze(), b.freeze()];
        let all = decode(&batches, 0, &limits()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].offset, all[0].request_id.as_deref()), (4, Some("n1-5")));
        assert_eq!(all[0].command, Ok(create));
        assert_eq!((all[1].offset, all[1].command.clone()), (5, Ok(delete)));
        assert_eq!(decode(&batches, 5, &limits()).unwrap().len(), 1);
        assert!(is_batch(&batches[0]));
        assert!(!is_batch(&batches[0][..10]));
    }
}
