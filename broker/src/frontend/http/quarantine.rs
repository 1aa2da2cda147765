//! The dead-letter quarantine over HTTP: browse (without consuming), counts
//! by reason, redrive to the failing group (paced, dry run, resumable) and
//! purge, all through the shard's group routing (redrive on the group's
//! coordinator, the others over every shard).
//!
//! | endpoint                                   | body / query                          |
//! |--------------------------------------------|---------------------------------------|
//! | `GET  /topics/:name/quarantine`            | `group, partition, reason, limit, cursor, encoding` |
//! | `GET  /topics/:name/quarantine/counts`     | `group, partition, reason`            |
//! | `POST /topics/:name/quarantine/redrive`    | `group, rate_per_sec, dry_run, max_entries, cursor, timeout_ms` + filter |
//! | `POST /topics/:name/quarantine/purge`      | filter + `dry_run`                    |
//!
//! Keys, values and header values are UTF-8 strings unless a record's
//! bytes are not UTF-8 (or `encoding=base64` is asked for), in which case
//! that entry is base64 with `"encoding": "base64"`.

use std::collections::BTreeMap;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use shoal_protocol::messages::dlq::{
    QuarantineBrowseRequest, QuarantineCountsRequest, QuarantineEntry, QuarantineFilter,
    QuarantinePurgeRequest, QuarantineRedriveRequest,
};

use super::common::{topic_meta, Encoding, HttpRequest};
use super::json::{ok, parse, HttpError, HttpResponse};
use crate::shard::Shard;

/// Entries one browse returns when the request does not say.
const BROWSE_LIMIT_DEFAULT: u32 = 100;
/// Most entries one browse returns.
pub const BROWSE_LIMIT_MAX: u32 = 1_000;
/// Longest a redrive request may run before replying with a cursor.
const REDRIVE_TIMEOUT_MS_DEFAULT: u32 = 10_000;

fn filter_from_query(req: &HttpRequest) -> Result<QuarantineFilter, HttpError> {
    Ok(QuarantineFilter {
        group: req.query.get("group").cloned(),
        partition: req.param("partition")?,
        reason_contains: req.query.get("reason").cloned(),
        entry_ids: Vec::new(),
    })
}

#[derive(Serialize)]
struct EntryView {
    entry_id: u64,
    topic: String,
    partition: u32,
    offset: u64,
    timestamp_ms: i64,
    key: Option<String>,
    value: Option<String>,
    headers: BTreeMap<String, String>,
    message_id: Option<String>,
    encoding: &'static str,
    group: String,
    attempts: u32,
    reason: String,
    first_failure_at_ms: i64,
    last_failure_at_ms: i64,
    quarantined_at_ms: i64,
    redrive_count: u32,
}

fn view(e: QuarantineEntry, want: Encoding) -> EntryView {
    let utf8 = want == Encoding::Utf8
        && e.key.as_deref().is_none_or(|k| std::str::from_utf8(k).is_ok())
        && e.value.as_deref().is_none_or(|v| std::str::from_utf8(v).is_ok())
        && e.headers.iter().all(|h| std::str::from_utf8(&h.value).is_ok());
    let enc = |b: Vec<u8>| {
        if utf8 {
            String::from_utf8_lossy(&b).into_owned()
        } else {
            Encoding::Base64.encode(&b)
        }
    };
    EntryView {
        entry_id: e.entry_id,
        topic: e.topic,
        partition: e.partition,
        offset: e.offset,
        timestamp_ms: e.timestamp_ms,
        key: e.key.map(enc),
        value: e.value.map(enc),
        headers: e.headers.into_iter().map(|h| (h.key, enc(h.value))).collect(),
        message_id: e.message_id,
        encoding: if utf8 { "utf8" } else { "base64" },
        group: e.group,
        attempts: e.attempts,
        reason: e.reason,
        first_failure_at_ms: e.first_failure_at_ms,
        last_failure_at_ms: e.last_failure_at_ms,
        quarantined_at_ms: e.quarantined_at_ms,
        redrive_count: e.redrive_count,
    }
}

/// `GET /topics/:name/quarantine`.
pub async fn browse(shard: &Rc<Shard>, topic: &str, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    topic_meta(shard, topic)?;
    let enc = Encoding::parse(req.query.get("encoding").map(String::as_str))?;
    let limit = req
        .param::<u32>("limit")?
        .unwrap_or(BROWSE_LIMIT_DEFAULT)
        .clamp(1, BROWSE_LIMIT_MAX);
    let resp = shard
        .access(&req.caller)
        .quarantine_browse(QuarantineBrowseRequest {
            topic: topic.to_string(),
            filter: filter_from_query(req)?,
            limit,
            cursor: req.param("cursor")?,
        })
        .await?;
    #[derive(Serialize)]
    struct Page {
        entries: Vec<EntryView>,
        next_cursor: Option<u64>,
    }
    Ok(ok(&Page {
        entries: resp.entries.into_iter().map(|e| view(e, enc)).collect(),
        next_cursor: resp.next_cursor,
    }))
}

/// `GET /topics/:name/quarantine/counts`.
pub async fn counts(shard: &Rc<Shard>, topic: &str, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    topic_meta(shard, topic)?;
    let resp = shard
        .access(&req.caller)
        .quarantine_counts(QuarantineCountsRequest {
            topic: topic.to_string(),
            filter: filter_from_query(req)?,
        })
        .await?;
    #[derive(Serialize)]
    struct Count {
        group: String,
        reason: String,
        count: u64,
    }
    #[derive(Serialize)]
    struct Counts {
        total: u64,
        by_reason: Vec<Count>,
    }
    Ok(ok(&Counts {
        total: resp.total,
        by_reason: resp
            .counts
            .into_iter()
            .map(|c| Count {
                group: c.group,
                reason: c.reason,
                count: c.count,
            })
            .collect(),
    }))
}

/// Filter fields a redrive or purge body may carry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    group: Option<String>,
    partition: Option<u32>,
    reason_contains: Option<String>,
    #[serde(default)]
    entry_ids: Vec<u64>,
    #[serde(default)]
    dry_run: bool,
    /// Redrive only.
    rate_per_sec: Option<u32>,
    max_entries: Option<u32>,
    cursor: Option<u64>,
    timeout_ms: Option<u32>,
}

/// `POST /topics/:name/quarantine/redrive`.
pub async fn redrive(shard: &Rc<Shard>, topic: &str, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    topic_meta(shard, topic)?;
    let body: ActionBody = parse(&req.body)?;
    let group = body
        .group
        .clone()
        .ok_or_else(|| HttpError::invalid("redrive needs the group to hand the entries back to"))?;
    let resp = shard
        .access(&req.caller)
        .quarantine_redrive(QuarantineRedriveRequest {
            topic: topic.to_string(),
            group: group.clone(),
            filter: QuarantineFilter {
                group: Some(group),
                partition: body.partition,
                reason_contains: body.reason_contains,
                entry_ids: body.entry_ids,
            },
            rate_per_sec: body.rate_per_sec.unwrap_or(0),
            dry_run: body.dry_run,
            max_entries: body.max_entries.unwrap_or(0),
            cursor: body.cursor,
            timeout_ms: body.timeout_ms.unwrap_or(REDRIVE_TIMEOUT_MS_DEFAULT),
        })
        .await?;
    #[derive(Serialize)]
    struct Redriven {
        dry_run: bool,
        matched: u64,
        redriven: u64,
        skipped_loop_guard: u64,
        next_cursor: Option<u64>,
    }
    Ok(ok(&Redriven {
        dry_run: body.dry_run,
        matched: resp.matched,
        redriven: resp.redriven,
        skipped_loop_guard: resp.skipped_loop_guard,
        next_cursor: resp.next_cursor,
    }))
}

/// `POST /topics/:name/quarantine/purge`.
pub async fn purge(shard: &Rc<Shard>, topic: &str, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    topic_meta(shard, topic)?;
    let body: ActionBody = parse(&req.body)?;
    if body.rate_per_sec.is_some()
        || body.max_entries.is_some()
        || body.cursor.is_some()
        || body.timeout_ms.is_some()
    {
        return Err(HttpError::invalid(
            "rate_per_sec, max_entries, cursor and timeout_ms belong to redrive",
        ));
    }
    let resp = shard
        .access(&req.caller)
        .quarantine_purge(QuarantinePurgeRequest {
            topic: topic.to_string(),
            filter: QuarantineFilter {
                group: body.group,
                partition: body.partition,
                reason_contains: body.reason_contains,
                entry_ids: body.entry_ids,
            },
            dry_run: body.dry_run,
        })
        .await?;
    #[derive(Serialize)]
    struct Purged {
        dry_run: bool,
        purged: u64,
    }
    Ok(ok(&Purged {
        dry_run: body.dry_run,
        purged: resp.purged,
    }))
}
