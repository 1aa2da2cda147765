//! The metadata service: topics (names, configs, the registry every shard
//! keeps) and the durable catalogue. Placement of partitions on shards is
//! `partitioner::shard_for_partition`; the cluster's metadata joins here.
//!
//! | module             | role                                                  |
//! |--------------------|-------------------------------------------------------|
//! | [`topic_registry`] | names, configs, limits, the per-shard registry        |
//! | [`catalogue`]      | `topics.meta`: written atomically by shard 0          |

pub mod catalogue;
pub mod topic_registry;

pub use catalogue::Catalogue;
pub use topic_registry::{
    validate_config, validate_name, TopicError, TopicMeta, TopicRegistry, NAME_LEN_MAX, PARTITIONS_MAX,
    TOPICS_MAX,
};
