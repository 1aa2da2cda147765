//! The HTTP/JSON API and Prometheus `/metrics`, served by every shard.
//!
//! hyper 1.x parses and writes HTTP/1.1; each accepted connection runs
//! `http1::Builder::serve_connection` in a glommio task on the shard that
//! accepted it (no `Send` needed), through [`io_adapter`]. Resources call
//! the same shard methods as the native protocol (which route to the
//! partition and delivery services on the owning shard), so both front
//! doors share one implementation of every operation.
//!
//! | module         | endpoints                                                     |
//! |----------------|---------------------------------------------------------------|
//! | [`router`]     | method + path dispatch, query strings, body reading           |
//! | [`console`]    | `GET /` and `/console/:file`: the embedded web console        |
//! | [`stats`]      | `GET /stats` (per shard, per group) and `GET /topics/:name/stats` |
//! | [`common`]     | the parsed request, connection state, encodings, shared replies |
//! | [`records`]    | stored records as JSON                                        |
//! | [`topics`]     | `POST/GET /topics`, `GET/DELETE /topics/:name`                |
//! | [`messages`]   | `POST /topics/:name/messages`                                 |
//! | [`poll`]       | `GET /topics/:name/poll` (group or partition), `POST .../replay` |
//! | [`offsets`]    | `POST /offsets/commit`, `POST /topics/:name/ack` and `/nack`  |
//! | [`groups`]     | `POST /groups/:g/join|heartbeat|leave`, `GET /groups[/:g]`    |
//! | [`quarantine`] | `/topics/:name/quarantine` browse, counts, redrive, purge     |
//! | [`health`]     | `GET /healthz`, `GET /readyz`                                 |
//! | [`metrics`]    | `GET /metrics`: every shard's snapshot, rendered by `crate::metrics` |
//! | [`json`]       | the error body and the status of each error class             |
//! | [`auth`]       | the request's caller: bearer token, client certificate or anonymous |
//!
//! Quotas: publishes are charged to the connection's byte rate
//! (`limits.produce_bytes_per_sec_max`), Kafka-style: a publish over the rate
//! is still served and its reply carries `throttle_time_ms`; a publish sent
//! on that connection before the throttle time has passed is refused with
//! 429 `throttled` and `Retry-After`, so a client that ignores the hint is
//! held back anyway.
//!
//! Bounds: a request body is capped at [`limits::HTTP_BODY_BYTES_MAX`] (413 beyond,
//! checked on `Content-Length` and again while reading a chunked body); a
//! request head must arrive within [`limits::HEADER_READ_MS_MAX`] of its first byte
//! and a body within [`limits::BODY_READ_MS_MAX`]; a connection with no request in
//! service and no traffic for [`limits::IDLE_MS_MAX`] is closed. hyper's own
//! header-read timer needs a `Send + Sync` timer that glommio lacks, so these
//! deadlines are enforced here by a per-connection watchdog on glommio's
//! timers; without it a slow client could hold a connection forever.
//!
//! Security: with TLS configured the port serves HTTPS only; every request
//! carries its caller (`auth.rs`) and reaches the services through
//! `shard.access(&req.caller)`, which authorizes it (403
//! `authorization_failed` when no ACL allows it).
#![deny(unsafe_code)]

pub mod auth;
pub mod cluster;
pub mod common;
pub mod connection;
pub mod console;
pub mod groups;
pub mod health;
pub mod io_adapter;
pub mod json;
pub mod limits;
pub mod messages;
pub mod metrics;
pub mod offsets;
pub mod poll;
pub mod quarantine;
pub mod records;
pub mod router;
pub mod stats;
pub mod topics;

pub use connection::accept_loop;
