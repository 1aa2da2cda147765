//! Handshake and metadata: versions, and where every partition lives.

use std::rc::Rc;

use shoal_protocol::api::{ApiKey, API_KEYS_ALL};
use shoal_protocol::error::ErrorCode;
use shoal_protocol::frame::Frame;
use shoal_protocol::messages::handshake::{
    negotiate, supported_versions, HandshakeRequest, HandshakeResponse,
};
use shoal_protocol::messages::leaders::{LeadersRequest, LeadersResponse, TopicLeaders};
use shoal_protocol::messages::metadata::{
    MetadataRequest, MetadataResponse, PartitionMetadata, ShardEndpoint, TopicMetadata,
};

use super::codec::{decode, respond, Failure};
use super::context::{ConnectionCtx, Reply};
use crate::ids::PartitionId;

/// Version handshake: the broker's ranges, and an `UnsupportedVersion`
/// error naming the first API the client listed with no common version.
pub async fn handshake(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let req: HandshakeRequest = decode(frame)?;
    let ours = supported_versions();
    let mut error = ErrorCode::None.to_wire();
    let mut message = String::new();
    for theirs in &req.api_versions {
        let Some(key) = ApiKey::from_wire(theirs.api_key).filter(|k| API_KEYS_ALL.contains(k)) else {
            continue;
        };
        if let Err(e) = negotiate(&ours, std::slice::from_ref(theirs), key) {
            error = ErrorCode::UnsupportedVersion.to_wire();
            message = e.to_string();
            break;
        }
    }
    tracing::debug!(client = %req.client_software, "handshake");
    let shard = &ctx.shard;
    let resp = HandshakeResponse {
        error,
        message,
        broker_software: format!("shoald {}", env!("CARGO_PKG_VERSION")),
        api_versions: ours,
        shard_id: shard.id().get(),
        shard_count: shard.count(),
        frame_len_max: shard.config().limits.frame_bytes_max as u32,
    };
    respond(frame.header().correlation_id, &resp, Vec::new())
}

/// Topics, partitions, their owning shards and those shards' ports.
pub async fn metadata(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let req: MetadataRequest = decode(frame)?;
    let shard = &ctx.shard;
    let caller = ctx.caller();
    let access = shard.access(&caller);
    let topics = shard.topics();
    let ports = shard.ports();
    let names: Vec<String> = if req.topics.is_empty() {
        topics
            .iter()
            .map(|t| t.name.clone())
            .filter(|name| access.may_describe_topic(name))
            .collect()
    } else {
        req.topics.clone()
    };
    // Listings leave out what the caller may not describe; a topic asked
    // for by name is refused as Kafka's brokers do, so the client reports
    // the missing ACL rather than a missing topic.
    let refused = |name: &String, code: ErrorCode| TopicMetadata {
        name: name.clone(),
        error: code.to_wire(),
        partitions: Vec::new(),
    };
    let describe = |name: &String| match topics.get(name) {
        None => refused(name, ErrorCode::UnknownTopic),
        Some(_) if !access.may_describe_topic(name) => refused(name, ErrorCode::AuthorizationFailed),
        Some(meta) => TopicMetadata {
            name: name.clone(),
            error: 0,
            partitions: (0..meta.config.partitions)
                .map(|p| {
                    let owner = shard.owner(name, PartitionId(p));
                    PartitionMetadata {
                        partition: p,
                        shard: owner.get(),
                        shard_port: ports.shard_ports[owner.index()],
                        error: 0,
                    }
                })
                .collect(),
        },
    };
    let resp = MetadataResponse {
        host: ports.host.clone(),
        shared_port: ports.shared,
        shard_count: shard.count(),
        shards: (0..shard.count())
            .map(|s| ShardEndpoint {
                shard: s,
                port: ports.shard_ports[s as usize],
            })
            .collect(),
        topics: names.iter().map(describe).collect(),
    };
    drop(topics);
    respond(frame.header().correlation_id, &resp, Vec::new())
}

/// Which node leads each replicated partition, and every node's address
/// (the client's redirect to the leader).
pub async fn leaders(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let req: LeadersRequest = decode(frame)?;
    let shard = &ctx.shard;
    let names: Vec<String> = if req.topics.is_empty() {
        shard.topics().iter().map(|t| t.name.clone()).collect()
    } else {
        req.topics.clone()
    };
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        topics.push(match shard.partition_leaders(&name).await {
            Some(partitions) => TopicLeaders {
                name,
                error: 0,
                partitions,
            },
            None => TopicLeaders {
                name,
                error: ErrorCode::UnknownTopic.to_wire(),
                partitions: Vec::new(),
            },
        });
    }
    let (node_id, nodes) = shard.node_addresses();
    let resp = LeadersResponse {
        node_id,
        nodes,
        topics,
    };
    respond(frame.header().correlation_id, &resp, Vec::new())
}
