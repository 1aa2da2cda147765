//! Quarantine browse, counts, redrive and purge: thin wrappers over
//! [`crate::delivery`].

use std::rc::Rc;

use shoal_protocol::frame::Frame;
use shoal_protocol::messages::dlq::*;

use super::group::serve;
use super::{decode, respond, Failure};
use crate::connection::{ConnectionCtx, Reply};
use crate::delivery;

pub async fn browse(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, QuarantineBrowseRequest, delivery::quarantine_browse)
}

pub async fn counts(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, QuarantineCountsRequest, delivery::quarantine_counts)
}

pub async fn redrive(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, QuarantineRedriveRequest, delivery::quarantine_redrive)
}

pub async fn purge(ctx: &Rc<ConnectionCtx>, frame: &Frame) -> Result<Reply, Failure> {
    serve!(ctx, frame, QuarantinePurgeRequest, delivery::quarantine_purge)
}
