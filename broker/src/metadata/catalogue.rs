//! The durable topic catalogue on disk (`<data_dir>/topics.meta`).
//!
//! Shard 0 is the catalogue's single writer. A create or delete that lands on
//! any shard is forwarded to shard 0, which validates it, writes the new
//! catalogue durably (write to a temporary file, fdatasync, rename over
//! `topics.meta`, fsync the directory — every result checked) and only then
//! tells every shard to apply the change to its own copy of the registry.
//! Each shard therefore reads its local registry without locks, and a
//! restart reloads exactly what was acknowledged.
//!
//! On a cluster the catalogue is the state applied from the cluster's
//! metadata log (`shard::cluster_metadata`), and the file also records how
//! far that log was applied, in the same atomic write: a restart resumes
//! applying at exactly the next command.
//!
//! The file is a [`CheckedFile`]: a magic, then the rkyv archive of
//! [`StoredCatalogue`] (the protocol's `CreateTopicRequest` list, the same
//! type clients send, and the applied metadata offset). Files of the two
//! older layouts load with an applied offset of 0.

use std::path::Path;

use shoal_protocol::messages::topic::CreateTopicRequest;

use super::checked_file::{from_archive, CheckedFile, LoadError};
use super::topic_registry::{TopicError, TopicMeta, TopicRegistry};

const CATALOGUE_FILE: &str = "topics.meta";
/// Leads the archive in catalogues written since the cluster metadata log.
const CATALOGUE_MAGIC: &[u8; 8] = b"SHCAT\x00\x03\x00";
/// Leads catalogues written since topics have a replication factor (issue
/// 14) and before the metadata log; a file with neither magic is read in
/// the layout before both.
const CATALOGUE_MAGIC_V2: &[u8; 8] = b"SHCAT\x00\x02\x00";

/// What `topics.meta` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StoredCatalogue {
    pub topics: Vec<CreateTopicRequest>,
    /// The next offset of the cluster metadata log to apply (0 on a single
    /// node, which has no such log).
    pub metadata_applied: u64,
}

/// The durable catalogue file, written by shard 0 only.
pub struct Catalogue {
    file: CheckedFile,
}

impl Catalogue {
    pub fn new(data_dir: &Path) -> Self {
        Catalogue {
            file: CheckedFile::new(data_dir, CATALOGUE_FILE),
        }
    }

    /// Loads every topic; an absent file is an empty catalogue.
    pub fn load(&self) -> Result<Vec<TopicMeta>, TopicError> {
        Ok(self.load_state()?.0)
    }

    /// Loads every topic and the applied metadata-log offset.
    pub fn load_state(&self) -> Result<(Vec<TopicMeta>, u64), TopicError> {
        let corrupt = |reason| TopicError::Corrupt {
            path: self.file.path(),
            reason,
        };
        let bytes = match self.file.load() {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok((Vec::new(), 0)),
            Err(LoadError::Io(e)) => return Err(e.into()),
            Err(LoadError::Corrupt(reason)) => return Err(corrupt(reason)),
        };
        decode_catalogue(&bytes).map_err(corrupt).map(|stored| {
            let topics = stored
                .topics
                .into_iter()
                .map(|t| TopicMeta {
                    name: t.name,
                    config: t.config,
                })
                .collect();
            (topics, stored.metadata_applied)
        })
    }

    /// Writes the whole catalogue durably, replacing the old one atomically,
    /// with the next metadata-log offset to apply (0 on a single node).
    /// Returns only after the rename and the directory fsync succeeded.
    pub fn store(&self, topics: &TopicRegistry, metadata_applied: u64) -> Result<(), TopicError> {
        let stored = StoredCatalogue {
            topics: topics
                .iter()
                .map(|t| CreateTopicRequest {
                    name: t.name.clone(),
                    config: t.config.clone(),
                })
                .collect(),
            metadata_applied,
        };
        let archive = rkyv::to_bytes::<rkyv::rancor::Error>(&stored).expect("catalogue archives");
        let mut body = CATALOGUE_MAGIC.to_vec();
        body.extend_from_slice(&archive);
        Ok(self.file.store(&body)?)
    }
}

/// The topic config as catalogues before issue 14 stored it (no
/// `replication_factor`): read so an upgraded broker keeps its topics.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct LegacyTopicConfig {
    partitions: u32,
    retention_ms: Option<u64>,
    retention_bytes: Option<u64>,
    compacted: bool,
    tombstone_retention_ms: u64,
    flush: shoal_protocol::messages::topic::FlushPolicy,
    dedup_window_ms: u64,
    retry: shoal_protocol::messages::topic::RetryPolicy,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct LegacyCreateTopicRequest {
    name: String,
    config: LegacyTopicConfig,
}

impl From<LegacyCreateTopicRequest> for CreateTopicRequest {
    fn from(old: LegacyCreateTopicRequest) -> Self {
        let c = old.config;
        CreateTopicRequest {
            name: old.name,
            config: shoal_protocol::messages::topic::TopicConfig {
                partitions: c.partitions,
                retention_ms: c.retention_ms,
                retention_bytes: c.retention_bytes,
                compacted: c.compacted,
                tombstone_retention_ms: c.tombstone_retention_ms,
                flush: c.flush,
                dedup_window_ms: c.dedup_window_ms,
                retry: c.retry,
                replication_factor: 1,
            },
        }
    }
}

/// The contents of a catalogue file's checked body, in any of its layouts.
fn decode_catalogue(body: &[u8]) -> Result<StoredCatalogue, String> {
    let topics_only = |topics| StoredCatalogue {
        topics,
        metadata_applied: 0,
    };
    if let Some(archive) = body.strip_prefix(CATALOGUE_MAGIC) {
        return from_archive::<StoredCatalogue>(archive);
    }
    match body.strip_prefix(CATALOGUE_MAGIC_V2) {
        Some(archive) => from_archive::<Vec<CreateTopicRequest>>(archive).map(topics_only),
        None => from_archive::<Vec<LegacyCreateTopicRequest>>(body)
            .map(|old| topics_only(old.into_iter().map(CreateTopicRequest::from).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::messages::topic::TopicConfig;

    /// A stored catalogue loads back; a damaged one is reported, not ignored.
    #[test]
    fn catalogue_roundtrip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalogue::new(dir.path());
        assert!(cat.load().unwrap().is_empty());
        let mut reg = TopicRegistry::default();
        let config = TopicConfig {
            partitions: 3,
            ..TopicConfig::default()
        };
        reg.insert(TopicMeta {
            name: "a".into(),
            config: config.clone(),
        });
        cat.store(&reg, 17).unwrap();
        assert_eq!(cat.load_state().unwrap().1, 17);
        let loaded = cat.load().unwrap();
        assert_eq!(
            loaded,
            vec![TopicMeta {
                name: "a".into(),
                config
            }]
        );
        let path = dir.path().join(CATALOGUE_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(cat.load(), Err(TopicError::Corrupt { .. })));
    }

    /// A catalogue written before topics had a replication factor loads,
    /// its topics with factor 1.
    #[test]
    fn legacy_catalogue_loads() {
        let d = TopicConfig::default();
        let old = vec![LegacyCreateTopicRequest {
            name: "old".into(),
            config: LegacyTopicConfig {
                partitions: 7,
                retention_ms: Some(5),
                retention_bytes: None,
                compacted: true,
                tombstone_retention_ms: d.tombstone_retention_ms,
                flush: d.flush,
                dedup_window_ms: 9,
                retry: d.retry,
            },
        }];
        let dir = tempfile::tempdir().unwrap();
        let archive = rkyv::to_bytes::<rkyv::rancor::Error>(&old).unwrap();
        CheckedFile::new(dir.path(), CATALOGUE_FILE)
            .store(&archive)
            .unwrap();
        let loaded = Catalogue::new(dir.path()).load().unwrap();
        assert_eq!(loaded.len(), 1);
        let c = &loaded[0].config;
        assert_eq!(
            (loaded[0].name.as_str(), c.partitions, c.compacted),
            ("old", 7, true)
        );
        assert_eq!(
            (c.retention_ms, c.dedup_window_ms, c.replication_factor),
            (Some(5), 9, 1)
        );
    }
}
