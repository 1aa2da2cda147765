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
pub mod stats;
pub mod topic_admin;

pub use listener::accept_loop;
