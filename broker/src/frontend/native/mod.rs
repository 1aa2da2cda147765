//! The native binary protocol front end: framing, pipelining, backpressure
//! and one handler per request kind. A handler decodes its request, calls
//! the shard (which routes to the partition or delivery service on the
//! owning shard), and encodes the answer; it holds no partition or group
//! logic.
//!
//! | module          | role                                                     |
//! |-----------------|----------------------------------------------------------|
//! | [`listener`]    | accepting connections                                    |
//! | [`connection`]  | reading frames, budgets, writing replies                 |
//! | [`dispatch`]    | version checks and routing a frame to its handler        |
//! | [`codec`]       | meta decoding, response encoding, errors into responses  |
//! | [`context`]     | what a connection's handlers share                       |
//! | [`produce`], [`fetch`], [`offsets`], [`metadata`], [`topic_admin`], [`group`], [`delivery`], [`dlq`], [`stats`] | one request kind each |
//! | [`authenticate`], [`security_admin`] | SCRAM steps; users, tokens, ACLs       |
//!
//! Every handler reaches the services through `shard.access(&caller)`,
//! the connection's principal and address; when authentication is on, a
//! connection that has not authenticated may only hand-shake and
//! authenticate.

pub mod authenticate;
pub mod codec;
pub mod connection;
pub mod context;
pub mod delivery;
pub mod dispatch;
pub mod dlq;
pub mod fetch;
pub mod group;
pub mod listener;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod security_admin;
pub mod stats;
pub mod topic_admin;

pub use listener::accept_loop;
