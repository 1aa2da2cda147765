//! Topic administration: create, delete, list, describe.
//!
//! Create and delete go to shard 0, the catalogue's single writer, which
//! makes the change durable before any shard applies it.

use std::rc::Rc;

use shoal_protocol::error::ErrorCode;
use shoal_protocol::frame::Frame;
use shoal_protocol::messages::security::Operation;
use shoal_protocol::messages::topic::{
    CreateTopicRequest, CreateTopicResponse, DeleteTopicRequest, DeleteTopicResponse, DescribeTopicRequest,
    DescribeTopicResponse, ListTopicsRequest, ListTopicsResponse, PartitionDescription, TopicConfig,
    TopicSummary,
};

use super::codec::{decode, respond, Failure};
use super::context::{ConnectionCtx, Reply};
use crate::error::BrokerResult;
use crate::ids::PartitionId;
use crate::metadata::acl::Resource;

/// The `error` and `message` of an admin reply, counting an error.
fn outcome(ctx: &ConnectionCtx, result: BrokerResult<()>) -> (u16, String) {
    match result {
        Ok(()) => (ErrorCode::None.to_wire(), String::new()),
        Err(e) => {
            ctx.shard.metrics().count_error(e.code());
            (e.code().to_wire(), e.to_string())
        }
    }
}

pub async fn create(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let req: CreateTopicRequest = decode(frame)?;
    let caller = ctx.caller();
    let created = ctx.shard.access(&caller).create_topic(req.name, req.config).await;
    let (error, message) = outcome(ctx, created);
    respond(
        frame.header().correlation_id,
        &CreateTopicResponse { error, message },
        Vec::new(),
    )
}

pub async fn delete(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let req: DeleteTopicRequest = decode(frame)?;
    let caller = ctx.caller();
    let deleted = ctx.shard.access(&caller).delete_topic(req.name).await;
    let (error, message) = outcome(ctx, deleted);
    respond(
        frame.header().correlation_id,
        &DeleteTopicResponse { error, message },
        Vec::new(),
    )
}

pub async fn list(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let _: ListTopicsRequest = decode(frame)?;
    let caller = ctx.caller();
    let access = ctx.shard.access(&caller);
    let topics = ctx
        .shard
        .topics()
        .iter()
        .filter(|t| access.may_describe_topic(&t.name))
        .map(|t| TopicSummary {
            name: t.name.clone(),
            partitions: t.config.partitions,
            compacted: t.config.compacted,
        })
        .collect();
    respond(
        frame.header().correlation_id,
        &ListTopicsResponse { topics },
        Vec::new(),
    )
}

pub async fn describe(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let req: DescribeTopicRequest = decode(frame)?;
    let shard = ctx.shard.clone();
    let caller = ctx.caller();
    let access = shard.access(&caller);
    let found = shard.topic(&req.name);
    let refusal = match &found {
        None => Some((
            ErrorCode::UnknownTopic,
            format!("topic {:?} does not exist", req.name),
        )),
        Some(_) => access
            .require(Resource::Topic(&req.name), Operation::Describe)
            .err()
            .map(|e| (ErrorCode::AuthorizationFailed, e.to_string())),
    };
    if let Some((error, message)) = refusal {
        let resp = DescribeTopicResponse {
            error: error.to_wire(),
            message,
            name: req.name,
            config: TopicConfig::default(),
            partitions: Vec::new(),
        };
        return respond(frame.header().correlation_id, &resp, Vec::new());
    }
    let meta = found.expect("the topic exists when nothing refused it");
    let mut partitions = Vec::with_capacity(meta.config.partitions as usize);
    for p in (0..meta.config.partitions).map(PartitionId) {
        let owner = shard.owner(&meta.name, p);
        let (f, error) = match access.figures(&meta.name, p).await {
            Ok(f) if f.fenced.is_some() => (f, ErrorCode::PartitionFenced),
            Ok(f) => (f, ErrorCode::None),
            Err(e) => (Default::default(), e.code()),
        };
        partitions.push(PartitionDescription {
            partition: p.get(),
            shard: owner.get(),
            log_start: f.log_start,
            high_watermark: f.high_watermark,
            log_end: f.log_end,
            size_bytes: f.size_bytes,
            error: error.to_wire(),
        });
    }
    let resp = DescribeTopicResponse {
        error: 0,
        message: String::new(),
        name: meta.name.clone(),
        config: meta.config.clone(),
        partitions,
    };
    respond(frame.header().correlation_id, &resp, Vec::new())
}
