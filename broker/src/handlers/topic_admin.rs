//! Topic administration: create, delete, list, describe.
//!
//! Create and delete go to shard 0, the catalogue's single writer, which
//! makes the change durable before any shard applies it.

use std::rc::Rc;

use shoal_protocol::error::ErrorCode;
use shoal_protocol::frame::Frame;
use shoal_protocol::messages::topic::{
    CreateTopicRequest, CreateTopicResponse, DeleteTopicRequest, DeleteTopicResponse, DescribeTopicRequest,
    DescribeTopicResponse, ListTopicsRequest, ListTopicsResponse, PartitionDescription, TopicConfig,
    TopicSummary,
};

use super::{decode, respond, Failure};
use crate::connection::{ConnectionCtx, Reply};
use crate::mesh::{ShardCall, ShardReply};
use crate::topics::TopicMeta;

const CATALOGUE_SHARD: u32 = 0;

pub async fn create(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let req: CreateTopicRequest = decode(frame)?;
    let shard = &ctx.shard;
    let (error, message) = if shard.id == CATALOGUE_SHARD {
        let (code, msg) = shard
            .create_topic(TopicMeta {
                name: req.name,
                config: req.config,
            })
            .await;
        (code.to_wire(), msg)
    } else {
        admin_call(
            shard,
            ShardCall::CreateTopic {
                name: req.name,
                config: req.config,
            },
        )
        .await
    };
    shard.metrics.count_error(error);
    respond(
        frame.header().correlation_id,
        &CreateTopicResponse { error, message },
        Vec::new(),
    )
}

pub async fn delete(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let req: DeleteTopicRequest = decode(frame)?;
    let shard = &ctx.shard;
    let (error, message) = if shard.id == CATALOGUE_SHARD {
        let (code, msg) = shard.delete_topic(&req.name).await;
        (code.to_wire(), msg)
    } else {
        admin_call(shard, ShardCall::DeleteTopic { name: req.name }).await
    };
    shard.metrics.count_error(error);
    respond(
        frame.header().correlation_id,
        &DeleteTopicResponse { error, message },
        Vec::new(),
    )
}

async fn admin_call(shard: &crate::shard::Shard, call: ShardCall) -> (u16, String) {
    match shard.on(CATALOGUE_SHARD, call).await {
        Ok(ShardReply::Admin(code, msg)) => (code, msg),
        Ok(_) => (ErrorCode::Internal.to_wire(), "mesh reply mismatch".into()),
        Err(e) => (ErrorCode::ShuttingDown.to_wire(), e.to_string()),
    }
}

pub async fn list(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    let _: ListTopicsRequest = decode(frame)?;
    let topics = ctx
        .shard
        .topics
        .borrow()
        .iter()
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
    let meta = shard.topics.borrow().get(&req.name).cloned();
    let Some(meta) = meta else {
        let resp = DescribeTopicResponse {
            error: ErrorCode::UnknownTopic.to_wire(),
            message: format!("topic {:?} does not exist", req.name),
            name: req.name,
            config: TopicConfig::default(),
            partitions: Vec::new(),
        };
        return respond(frame.header().correlation_id, &resp, Vec::new());
    };
    let mut partitions = Vec::with_capacity(meta.config.partitions as usize);
    for p in 0..meta.config.partitions {
        let owner = shard.owner(&meta.name, p);
        let figures = if owner == shard.id {
            shard.partition(&meta.name, p).map(|p| p.figures())
        } else {
            match shard
                .on(
                    owner,
                    ShardCall::PartitionStats {
                        topic: meta.name.clone(),
                        partition: p,
                    },
                )
                .await
            {
                Ok(ShardReply::Stats(f)) => f,
                _ => None,
            }
        };
        let f = figures.unwrap_or_default();
        partitions.push(PartitionDescription {
            partition: p,
            shard: owner,
            log_start: f.log_start,
            high_watermark: f.high_watermark,
            log_end: f.log_end,
            size_bytes: f.size_bytes,
            error: if f.fenced.is_some() {
                ErrorCode::PartitionFenced.to_wire()
            } else {
                0
            },
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
