//! The metadata service: topics (names, configs, the registry every shard
//! keeps) and the durable catalogue. Placement of partitions on shards is
//! `partitioner::shard_for_partition`. On a cluster, topic changes are
//! commands in the replicated metadata log (`cluster_log`), applied by
//! every node to its own catalogue.
//!
//! | module             | role                                                  |
//! |--------------------|-------------------------------------------------------|
//! | [`topic_registry`] | names, configs, limits, the per-shard registry        |
//! | [`catalogue`]      | `topics.meta`: written atomically by shard 0          |
//! | [`cluster_log`]    | a cluster's metadata commands as log records          |
//! | [`checked_file`]   | a file replaced whole, checksummed, written durably   |
//! | [`acl`]            | principals, resources, the pure ACL decision           |
//! | [`security_store`] | users, tokens, ACLs; `security.meta` written atomically |
//! | [`security`]       | the process-wide security service and each shard's view |

pub mod acl;
pub mod catalogue;
pub mod checked_file;
pub mod cluster_log;
pub mod security;
pub mod security_store;
pub mod topic_registry;

pub use catalogue::Catalogue;
pub use topic_registry::{
    validate_config, validate_name, TopicError, TopicMeta, TopicRegistry, NAME_LEN_MAX, PARTITIONS_MAX,
    TOPICS_MAX,
};
