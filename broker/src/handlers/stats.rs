//! Group and topic stats (lag in records and time): thin wrappers over
//! [`crate::delivery`].

use std::rc::Rc;

use shoal_protocol::frame::Frame;
use shoal_protocol::messages::stats::*;

use super::group::serve;
use super::{decode, respond, Failure};
use crate::connection::{ConnectionCtx, Reply};
use crate::delivery;

pub async fn group(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, GroupStatsRequest, delivery::group_stats)
}

pub async fn topic(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, TopicStatsRequest, delivery::topic_stats)
}
