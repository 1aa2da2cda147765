//! Quarantine browse, counts, redrive and purge.

use std::rc::Rc;

use shoal_protocol::frame::Frame;
use shoal_protocol::messages::dlq::*;

use super::codec::{decode, encode_result, respond, Failure};
use super::context::{ConnectionCtx, Reply};
use super::group::serve;

pub async fn browse(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, QuarantineBrowseRequest, quarantine_browse)
}

pub async fn counts(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, QuarantineCountsRequest, quarantine_counts)
}

pub async fn redrive(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, QuarantineRedriveRequest, quarantine_redrive)
}

pub async fn purge(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, QuarantinePurgeRequest, quarantine_purge)
}
