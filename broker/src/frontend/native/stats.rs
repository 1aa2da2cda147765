//! Group and topic stats (lag in records and time).

use std::rc::Rc;

use shoal_protocol::frame::Frame;
use shoal_protocol::messages::stats::*;

use super::codec::{decode, encode_result, respond, Failure};
use super::context::{ConnectionCtx, Reply};
use super::group::serve;

pub async fn group(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, GroupStatsRequest, group_stats)
}

pub async fn topic(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, TopicStatsRequest, topic_stats)
}
