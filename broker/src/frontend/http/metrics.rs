//! `GET /metrics`: every shard's snapshot (over the mesh, counted as hops)
//! and every group's stats, rendered as Prometheus text.

use std::rc::Rc;

use hyper::StatusCode;

use super::json::HttpResponse;
use crate::metrics::prometheus;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>) -> HttpResponse {
    let snapshot = shard.broker_snapshot().await;
    let text = prometheus::render(&snapshot);
    let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(text)));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}
