//! Topic metadata as every shard knows it: names, configs, limits, and the
//! per-shard registry (a copy on every shard, read without locks).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use shoal_protocol::messages::topic::TopicConfig;

use crate::error::BrokerError;

/// Longest topic or group name.
pub const NAME_LEN_MAX: usize = 249;
/// Most partitions one topic may have.
pub const PARTITIONS_MAX: u32 = 4096;
/// Most topics one broker keeps.
pub const TOPICS_MAX: usize = 10_000;

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

impl From<TopicError> for BrokerError {
    fn from(e: TopicError) -> Self {
        match e {
            TopicError::Exists(topic) => BrokerError::TopicExists { topic },
            TopicError::Unknown(topic) => BrokerError::UnknownTopic { topic },
            TopicError::Io(_) | TopicError::Corrupt { .. } => BrokerError::Internal(e.to_string()),
            TopicError::BadName(_) | TopicError::BadConfig(_) | TopicError::TooMany => {
                BrokerError::InvalidRequest(e.to_string())
            }
        }
    }
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
    if config.replication_factor == 0 {
        return bad("replication_factor must be at least 1");
    }
    if config.replication_factor > 1 && config.compacted {
        // Compaction rewrites batches that raft entries stand for: a
        // follower catching up would be sent batches that no longer match.
        return bad("a compacted topic cannot be replicated yet: use replication_factor 1");
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

    /// A replicated topic cannot be compacted (yet); either alone can.
    #[test]
    fn compacted_topics_are_not_replicated() {
        let both = TopicConfig {
            compacted: true,
            replication_factor: 3,
            ..TopicConfig::default()
        };
        let err = validate_config(&both).unwrap_err();
        assert!(err.to_string().contains("compacted"), "{err}");
        for ok in [
            TopicConfig {
                replication_factor: 3,
                ..TopicConfig::default()
            },
            TopicConfig {
                compacted: true,
                ..TopicConfig::default()
            },
        ] {
            assert!(validate_config(&ok).is_ok(), "{ok:?}");
        }
    }
}
