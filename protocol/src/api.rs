//! API keys and versions.
//!
//! # Versioning
//!
//! Every frame names an API key and an API version. The version is the
//! version of that API's *meta layout*: rkyv archives are not
//! self-describing, so a change to a request or response struct (a new
//! field, a new enum variant) is a new version number for that API, and a
//! decoder only accepts the exact version it was built for. This build speaks
//! exactly one version of each API ([`ApiKey::version`]).
//!
//! A connection starts with a handshake: the client sends the range of
//! versions it can speak for each API, the broker replies with its ranges,
//! and each side uses the highest version in both ranges. If an API the
//! client needs has no common version, the client reports
//! [`crate::error::ErrorCode::UnsupportedVersion`] naming the API and both
//! ranges, before sending anything it could not decode.
//!
//! Two things are frozen forever so that this negotiation itself always
//! works across versions: the handshake's version-0 layout, and the
//! [`ApiKey::Error`] response (`ErrorResponse`), which is what a broker sends
//! back for a request whose key or version it does not know.

/// Which request/response kind a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[repr(u16)]
pub enum ApiKey {
    /// Response only: a request could not be served with its own response
    /// type (unknown key or version, undecodable meta). Frozen layout.
    Error = 0,
    Handshake = 1,
    Metadata = 2,
    CreateTopic = 3,
    DeleteTopic = 4,
    ListTopics = 5,
    DescribeTopic = 6,
    Produce = 7,
    Fetch = 8,
    ListOffsets = 9,
    JoinGroup = 10,
    Heartbeat = 11,
    LeaveGroup = 12,
    Poll = 13,
    Ack = 14,
    Nack = 15,
    CommitOffset = 16,
    Seek = 17,
    ListGroups = 18,
    GroupStats = 19,
    TopicStats = 20,
    QuarantineBrowse = 21,
    QuarantineCounts = 22,
    QuarantineRedrive = 23,
    QuarantinePurge = 24,
    /// One step of a SASL exchange (SCRAM-SHA-256) after the handshake.
    Authenticate = 25,
    /// Users, tokens and ACLs (cluster admin only).
    SecurityAdmin = 26,
    /// Partition leaders and node addresses (a cluster). Optional: a
    /// broker built before it lacks it ([`ApiKey::is_optional`]).
    Leaders = 27,
}

/// Every API key, in numeric order.
pub const API_KEYS_ALL: &[ApiKey] = &[
    ApiKey::Error,
    ApiKey::Handshake,
    ApiKey::Metadata,
    ApiKey::CreateTopic,
    ApiKey::DeleteTopic,
    ApiKey::ListTopics,
    ApiKey::DescribeTopic,
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::JoinGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::Poll,
    ApiKey::Ack,
    ApiKey::Nack,
    ApiKey::CommitOffset,
    ApiKey::Seek,
    ApiKey::ListGroups,
    ApiKey::GroupStats,
    ApiKey::TopicStats,
    ApiKey::QuarantineBrowse,
    ApiKey::QuarantineCounts,
    ApiKey::QuarantineRedrive,
    ApiKey::QuarantinePurge,
    ApiKey::Authenticate,
    ApiKey::SecurityAdmin,
    ApiKey::Leaders,
];

impl ApiKey {
    pub fn to_wire(self) -> u16 {
        self as u16
    }

    /// The key for a wire number, or `None` if this build does not know it.
    pub fn from_wire(key: u16) -> Option<ApiKey> {
        API_KEYS_ALL
            .get(usize::from(key))
            .copied()
            .filter(|k| k.to_wire() == key)
    }

    /// The one version of this API's meta layout that this build speaks.
    /// The handshake and the error response are frozen at version 0.
    pub fn version(self) -> u16 {
        match self {
            ApiKey::Error | ApiKey::Handshake => 0,
            // 2: TopicConfig gained `replication_factor` (issue 14).
            ApiKey::CreateTopic | ApiKey::DescribeTopic => 2,
            _ => 1,
        }
    }

    /// An API a client may find missing on an older broker without
    /// failing its handshake: the client then does without it (routing as
    /// on a single node when [`ApiKey::Leaders`] is missing).
    pub fn is_optional(self) -> bool {
        matches!(self, ApiKey::Leaders)
    }

    pub fn name(self) -> &'static str {
        match self {
            ApiKey::Error => "error",
            ApiKey::Handshake => "handshake",
            ApiKey::Metadata => "metadata",
            ApiKey::CreateTopic => "create_topic",
            ApiKey::DeleteTopic => "delete_topic",
            ApiKey::ListTopics => "list_topics",
            ApiKey::DescribeTopic => "describe_topic",
            ApiKey::Produce => "produce",
            ApiKey::Fetch => "fetch",
            ApiKey::ListOffsets => "list_offsets",
            ApiKey::JoinGroup => "join_group",
            ApiKey::Heartbeat => "heartbeat",
            ApiKey::LeaveGroup => "leave_group",
            ApiKey::Poll => "poll",
            ApiKey::Ack => "ack",
            ApiKey::Nack => "nack",
            ApiKey::CommitOffset => "commit_offset",
            ApiKey::Seek => "seek",
            ApiKey::ListGroups => "list_groups",
            ApiKey::GroupStats => "group_stats",
            ApiKey::TopicStats => "topic_stats",
            ApiKey::QuarantineBrowse => "quarantine_browse",
            ApiKey::QuarantineCounts => "quarantine_counts",
            ApiKey::QuarantineRedrive => "quarantine_redrive",
            ApiKey::QuarantinePurge => "quarantine_purge",
            ApiKey::Authenticate => "authenticate",
            ApiKey::SecurityAdmin => "security_admin",
            ApiKey::Leaders => "leaders",
        }
    }
}

impl std::fmt::Display for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key maps back from its number; unknown numbers are `None`.
    #[test]
    fn keys_round_trip() {
        for &k in API_KEYS_ALL {
            assert_eq!(ApiKey::from_wire(k.to_wire()), Some(k));
        }
        assert_eq!(ApiKey::from_wire(API_KEYS_ALL.len() as u16), None);
        assert_eq!(ApiKey::from_wire(u16::MAX), None);
    }
}
