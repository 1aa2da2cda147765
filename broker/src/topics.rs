//! Topic metadata: names, configs, and the durable catalogue on disk.
//!
//! Shard 0 is the catalogue's single writer. A create or delete that lands on
//! any shard is forwarded to shard 0, which validates it, writes the new
//! catalogue durably (write to a temporary file, fdatasync, rename over
//! `topics.meta`, fsync the directory — every result checked) and only then
//! tells every shard to apply the change to its own copy of the registry.
//! Each shard therefore reads its local [`TopicRegistry`] without locks, and
//! a restart reloads exactly what was acknowledged.
//!
//! The file is the rkyv archive of the protocol's `CreateTopicRequest` list
//! (the same type clients send), followed by a CRC-32C of the archive.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use shoal_protocol::messages::topic::{CreateTopicRequest, TopicConfig};

/// Longest topic or group name.
pub const NAME_LEN_MAX: usize = 249;
/// Most partitions one topic may have.
pub const PARTITIONS_MAX: u32 = 4096;
/// Most topics one broker keeps.
pub const TOPICS_MAX: usize = 10_000;

const CATALOGUE_FILE: &str = "topics.meta";

/// Why a topic operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("invalid topic name {0:?}: use 1-{NAME_LEN_MAX} of [A-Za-z0-9._-], not starting with \"__\"")]
    BadName(String),
    #[error("invalid topic config: {0}")]
    BadConfig(String),
    #[error("topic {0:?} already exists")]
    Exists(String),
    #[error("topic {0:?} does not exist")]
    Unknown(String),
    #[error("too many topics (max {TOPICS_MAX})")]
    TooMany,
    /// The catalogue could not be made durable; the change was not applied.
    #[error("topic catalogue I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The catalogue on disk does not decode; the broker refuses to start
    /// rather than forget topics.
    #[error("topic catalogue {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Checks a topic (or group) name.
pub fn validate_name(name: &str) -> Result<(), TopicError> {
    let ok = !name.is_empty()
        && name.len() <= NAME_LEN_MAX
        && !name.starts_with("__")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(TopicError::BadName(name.to_string()))
    }
}

/// Checks a topic configuration's values.
pub fn validate_config(config: &TopicConfig) -> Result<(), TopicError> {
    let bad = |s: &str| Err(TopicError::BadConfig(s.to_string()));
    if config.partitions == 0 || config.partitions > PARTITIONS_MAX {
        return bad("partitions must be between 1 and 4096");
    }
    if config.retry.max_attempts == 0 {
        return bad("retry.max_attempts must be at least 1");
    }
    if config.retry.backoff_base_ms > config.retry.backoff_max_ms {
        return bad("retry.backoff_base_ms must be <= retry.backoff_max_ms");
    }
    if let shoal_protocol::messages::topic::FlushPolicy::IntervalMs(0) = config.flush {
        return bad("flush interval must be > 0 ms");
    }
    Ok(())
}

/// One topic as every shard knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicMeta {
    pub name: String,
    pub config: TopicConfig,
}

/// A shard's copy of the topic catalogue. Cheap to clone (shared `Rc`s).
#[derive(Debug, Default, Clone)]
pub struct TopicRegistry {
    topics: BTreeMap<String, Rc<TopicMeta>>,
}

impl TopicRegistry {
    pub fn get(&self, name: &str) -> Option<&Rc<TopicMeta>> {
        self.topics.get(name)
    }

    pub fn insert(&mut self, meta: TopicMeta) {
        self.topics.insert(meta.name.clone(), Rc::new(meta));
    }

    pub fn remove(&mut self, name: &str) -> Option<Rc<TopicMeta>> {
        self.topics.remove(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Rc<TopicMeta>> {
        self.topics.values()
    }

    pub fn len(&self) -> usize {
        self.topics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }
}

/// The durable catalogue file, written by shard 0 only.
pub struct Catalogue {
    dir: PathBuf,
}

impl Catalogue {
    pub fn new(data_dir: &Path) -> Self {
        Catalogue {
            dir: data_dir.to_path_buf(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(CATALOGUE_FILE)
    }

    /// Loads every topic; an absent file is an empty catalogue.
    pub fn load(&self) -> Result<Vec<TopicMeta>, TopicError> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        decode_catalogue(&bytes)
            .map_err(|reason| TopicError::Corrupt { path, reason })
            .map(|list| {
                list.into_iter()
                    .map(|t| TopicMeta {
                        name: t.name,
                        config: t.config,
                    })
                    .collect()
            })
    }

    /// Writes the whole catalogue durably, replacing the old one atomically.
    /// Returns only after the rename and the directory fsync succeeded.
    pub fn store(&self, topics: &TopicRegistry) -> Result<(), TopicError> {
        let list: Vec<CreateTopicRequest> = topics
            .iter()
            .map(|t| CreateTopicRequest {
                name: t.name.clone(),
                config: t.config.clone(),
            })
            .collect();
        let bytes = encode_catalogue(&list);
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!("{CATALOGUE_FILE}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_data()?;
        drop(file);
        std::fs::rename(&tmp, self.path())?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

fn encode_catalogue(list: &Vec<CreateTopicRequest>) -> Vec<u8> {
    let archive = rkyv::to_bytes::<rkyv::rancor::Error>(list).expect("catalogue archives");
    let mut out = archive.to_vec();
    out.extend_from_slice(&crc32c::crc32c(&archive).to_le_bytes());
    out
}

fn decode_catalogue(bytes: &[u8]) -> Result<Vec<CreateTopicRequest>, String> {
    if bytes.len() < 4 {
        return Err("file shorter than its checksum".into());
    }
    let (archive, crc) = bytes.split_at(bytes.len() - 4);
    let expected = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    if crc32c::crc32c(archive) != expected {
        return Err("checksum mismatch".into());
    }
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(archive.len());
    aligned.extend_from_slice(archive);
    rkyv::from_bytes::<Vec<CreateTopicRequest>, rkyv::rancor::Error>(&aligned).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names follow the documented alphabet; internal names are refused.
    #[test]
    fn names() {
        assert!(validate_name("orders.v1_x-2").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("__internal").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name(&"a".repeat(NAME_LEN_MAX + 1)).is_err());
    }

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
        cat.store(&reg).unwrap();
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
}
