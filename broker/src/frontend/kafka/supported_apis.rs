//! The Kafka APIs this front end serves, at which versions, and the
//! ApiVersions response built from that one table.
//!
//! The ranges are the ones real clients negotiate (librdkafka 2.x, the Java
//! client 3.x/4.x, franz-go), inside what kafka-protocol 0.18 encodes and
//! decodes, and no wider than what the handlers implement. A client picks,
//! per API, the highest version both sides support, so a range's top is the
//! version most traffic uses:
//!
//! | API            | key | versions | why this range                                                  |
//! |----------------|----:|----------|-----------------------------------------------------------------|
//! | Produce        |   0 | 3–9      | RecordBatch v2 only (v3+); v9 is the first flexible version    |
//! | Fetch          |   1 | 4–12     | v12 is the last keyed by topic name (v13+ by topic id)          |
//! | ListOffsets    |   2 | 1–6      | v6 flexible; v7+ (max-timestamp lookup, tiered storage) unused  |
//! | Metadata       |   3 | 0–9      | v10+ carries topic ids; leader epoch is sent as −1              |
//! | OffsetCommit   |   8 | 2–8      | v9+ is the KIP-848 consumer protocol; kafka-protocol starts at 2 |
//! | OffsetFetch    |   9 | 1–7      | v8+ batches groups; clients fall back to one group per request  |
//! | FindCoordinator|  10 | 0–4      | v4 batches keys (the Java client uses it when offered)          |
//! | JoinGroup      |  11 | 0–9      | v4+ answers MEMBER_ID_REQUIRED on a first join                 |
//! | Heartbeat      |  12 | 0–4      |                                                                 |
//! | LeaveGroup     |  13 | 0–5      | v3+ leaves several members in one request                       |
//! | SyncGroup      |  14 | 0–5      | v5 names protocol type and name                                 |
//! | DescribeGroups |  15 | 0–5      |                                                                 |
//! | ListGroups     |  16 | 0–4      | v4 filters by state; v5 (type filter) left out                  |
//! | SaslHandshake  |  17 | 0–1      | PLAIN and SCRAM-SHA-256 ([`super::sasl`])                       |
//! | ApiVersions    |  18 | 0–3      | a higher version is answered in v0 with UNSUPPORTED_VERSION     |
//! | CreateTopics   |  19 | 2–7      | kafka-protocol starts at 2                                       |
//! | DeleteTopics   |  20 | 1–6      | kafka-protocol starts at 1                                       |
//! | InitProducerId |  22 | 0–4      | idempotent producers (the Java client's default); no transactions |
//! | SaslAuthenticate | 36 | 0–2     | the SASL exchange, framed (KIP-152)                             |
//!
//! Anything else (transactions, configs, ACLs, KIP-848 groups) is not
//! advertised; a request for it is refused by [`super::codec`].

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// One served API and its version range (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSupport {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ApiSupport {
    ApiSupport { key, min, max }
}

/// Every API this front end serves, in key order.
pub const SUPPORTED_APIS: &[ApiSupport] = &[
    api(ApiKey::Produce, 3, 9),
    api(ApiKey::Fetch, 4, 12),
    api(ApiKey::ListOffsets, 1, 6),
    api(ApiKey::Metadata, 0, 9),
    api(ApiKey::OffsetCommit, 2, 8),
    api(ApiKey::OffsetFetch, 1, 7),
    api(ApiKey::FindCoordinator, 0, 4),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::ListGroups, 0, 4),
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::ApiVersions, 0, 3),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::InitProducerId, 0, 4),
    api(ApiKey::SaslAuthenticate, 0, 2),
];

/// The served range of the API with wire key `api_key`, if it is served.
pub fn support(api_key: i16) -> Option<&'static ApiSupport> {
    SUPPORTED_APIS.iter().find(|s| s.key as i16 == api_key)
}

impl ApiSupport {
    pub fn contains(&self, version: i16) -> bool {
        (self.min..=self.max).contains(&version)
    }
}

/// The ApiVersions response advertising [`SUPPORTED_APIS`], with
/// `error_code` (0, or UNSUPPORTED_VERSION when answering a version we do
/// not serve: clients then retry with the highest version listed for
/// ApiVersions).
pub fn api_versions_response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|s| {
            ApiVersion::default()
                .with_api_key(s.key as i16)
                .with_min_version(s.min)
                .with_max_version(s.max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
        .with_throttle_time_ms(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every advertised range is one kafka-protocol can decode and encode,
    /// and the table lists each API once, in key order.
    #[test]
    fn ranges_inside_kafka_protocol() {
        for s in SUPPORTED_APIS {
            let valid = s.key.valid_versions();
            assert!(s.min <= s.max, "{:?}", s.key);
            assert!(
                s.min >= valid.min && s.max <= valid.max,
                "{:?} {}..{} vs {valid}",
                s.key,
                s.min,
                s.max
            );
        }
        let keys: Vec<i16> = SUPPORTED_APIS.iter().map(|s| s.key as i16).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(keys, sorted);
    }

    /// The ranges issue 18 asks for are the ones advertised.
    #[test]
    fn issue_ranges() {
        let range = |k: ApiKey| support(k as i16).map(|s| (s.min, s.max));
        assert_eq!(range(ApiKey::ApiVersions), Some((0, 3)));
        assert_eq!(range(ApiKey::Metadata), Some((0, 9)));
        assert_eq!(range(ApiKey::Produce), Some((3, 9)));
        assert_eq!(range(ApiKey::Fetch), Some((4, 12)));
        assert_eq!(range(ApiKey::ListOffsets), Some((1, 6)));
        assert_eq!(
            support(ApiKey::SaslHandshake as i16).map(|s| (s.min, s.max)),
            Some((0, 1))
        );
        assert_eq!(
            support(ApiKey::SaslAuthenticate as i16).map(|s| (s.min, s.max)),
            Some((0, 2))
        );
        assert_eq!(support(ApiKey::DescribeAcls as i16), None);
        assert_eq!(support(-1), None);
    }

    /// The response lists exactly the table.
    #[test]
    fn response_lists_table() {
        let r = api_versions_response(0);
        assert_eq!(r.api_keys.len(), SUPPORTED_APIS.len());
        for (v, s) in r.api_keys.iter().zip(SUPPORTED_APIS) {
            assert_eq!(
                (v.api_key, v.min_version, v.max_version),
                (s.key as i16, s.min, s.max)
            );
        }
    }
}
