//! Handshake (version negotiation) and the frozen error response.
//!
//! The first request on every connection is a [`HandshakeRequest`]: the
//! client lists the version range it speaks for each API; the broker answers
//! with its own ranges, its shard id (the shard that accepted the connection)
//! and the shard count. Both structs are frozen at version 0 so that any two
//! builds can always complete this exchange; see [`crate::api`].

use crate::api::{ApiKey, API_KEYS_ALL};
use crate::error::{ErrorCode, ProtocolError};
use crate::messages::{message, message_pair};

/// The versions of one API that a peer speaks, inclusive.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct ApiVersionRange {
    /// An [`ApiKey`] number.
    pub api_key: u16,
    pub min_version: u16,
    pub max_version: u16,
}

/// First request on a connection.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct HandshakeRequest {
    /// Free text naming the client software and version, for broker logs.
    pub client_software: String,
    /// What the client speaks, one entry per API it uses.
    pub api_versions: Vec<ApiVersionRange>,
}

/// The broker's answer to a handshake.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct HandshakeResponse {
    /// [`ErrorCode`]; `UnsupportedVersion` if the client's ranges leave no
    /// common version for an API it listed.
    pub error: u16,
    pub message: String,
    /// Free text naming the broker software and version.
    pub broker_software: String,
    /// What the broker speaks.
    pub api_versions: Vec<ApiVersionRange>,
    /// The shard that accepted this connection.
    pub shard_id: u32,
    pub shard_count: u32,
    /// The largest frame the broker accepts, in bytes.
    pub frame_len_max: u32,
}

/// The reply to a request that cannot be answered with its own response
/// type: unknown API key, unsupported version, undecodable meta. Sent with
/// API key [`ApiKey::Error`], version 0, the request's correlation id and the
/// response flag. Frozen forever.
#[derive(
    Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, serde::Serialize,
)]
pub struct ErrorResponse {
    /// [`ErrorCode`], never 0.
    pub error: u16,
    pub message: String,
}

message_pair!(HandshakeRequest => HandshakeResponse, ApiKey::Handshake);
message!(ErrorResponse, ApiKey::Error, true);

/// The version ranges this build speaks: exactly one version per API.
pub fn supported_versions() -> Vec<ApiVersionRange> {
    API_KEYS_ALL
        .iter()
        .filter(|k| **k != ApiKey::Error)
        .map(|k| ApiVersionRange {
            api_key: k.to_wire(),
            min_version: k.version(),
            max_version: k.version(),
        })
        .collect()
}

/// The highest version of `api` in both `ours` and `theirs`, or an
/// `UnsupportedVersion` error naming both ranges.
pub fn negotiate(
    ours: &[ApiVersionRange],
    theirs: &[ApiVersionRange],
    api: ApiKey,
) -> Result<u16, ProtocolError> {
    let find = |ranges: &[ApiVersionRange]| ranges.iter().find(|r| r.api_key == api.to_wire()).cloned();
    let describe = |r: &Option<ApiVersionRange>| match r {
        Some(r) => format!("{}..={}", r.min_version, r.max_version),
        None => "none".to_string(),
    };
    let (a, b) = (find(ours), find(theirs));
    if let (Some(x), Some(y)) = (&a, &b) {
        let low = x.min_version.max(y.min_version);
        let high = x.max_version.min(y.max_version);
        if low <= high {
            return Ok(high);
        }
    }
    Err(ProtocolError::broker(
        ErrorCode::UnsupportedVersion.to_wire(),
        format!(
            "no common version of {api}: this side speaks {}, the peer speaks {}",
            describe(&a),
            describe(&b)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::{arbitrary_struct, round_trip_tests};

    arbitrary_struct!(ApiVersionRange {
        api_key,
        min_version,
        max_version
    });
    arbitrary_struct!(HandshakeRequest {
        client_software,
        api_versions
    });
    arbitrary_struct!(HandshakeResponse {
        error,
        message,
        broker_software,
        api_versions,
        shard_id,
        shard_count,
        frame_len_max
    });
    arbitrary_struct!(ErrorResponse { error, message });

    round_trip_tests! {
        handshake_request: HandshakeRequest,
        handshake_response: HandshakeResponse,
        error_response: ErrorResponse,
    }

    /// Overlapping ranges pick the highest common version; disjoint ones fail clearly.
    #[test]
    fn negotiation() {
        let r = |min, max| {
            vec![ApiVersionRange {
                api_key: ApiKey::Produce.to_wire(),
                min_version: min,
                max_version: max,
            }]
        };
        assert_eq!(negotiate(&r(1, 3), &r(2, 5), ApiKey::Produce).unwrap(), 3);
        let err = negotiate(&r(1, 1), &r(2, 5), ApiKey::Produce).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::UnsupportedVersion));
        assert!(err.to_string().contains("1..=1"), "{err}");
        assert!(negotiate(&r(1, 1), &[], ApiKey::Produce).is_err());
        let ours = supported_versions();
        assert_eq!(
            negotiate(&ours, &ours, ApiKey::Fetch).unwrap(),
            ApiKey::Fetch.version()
        );
    }
}
