//! # shoal-protocol
//!
//! Everything that crosses the wire between Shoal and its clients, kept
//! sans-IO where it can be:
//!
//! - [`batch`]: the record batch, the same bytes on the wire and on disk
//!   (layout documented byte by byte there);
//! - [`frame`]: the 24-byte frame header and the stream decoder (layout
//!   documented byte by byte there);
//! - [`api`]: API keys and the versioning rules;
//! - [`error`]: the stable [`error::ErrorCode`]s and [`error::ProtocolError`];
//! - [`messages`]: the request and response structs, one module per area;
//! - [`codec`]: messages to frames and back (validated rkyv access only);
//! - [`partitioner`]: the stable key → partition and name → shard hash;
//! - [`scram`]: SCRAM-SHA-256, both ends, sans-IO;
//! - [`tls`]: the client's TLS settings (rustls, blocking);
//! - [`client`]: the thin blocking client (pipelined connections,
//!   shard-aware routing, a batching producer, consumers) that the `shoal`
//!   CLI is built on.
#![forbid(unsafe_code)]

pub mod api;
pub mod batch;
pub mod client;
pub mod codec;
pub mod error;
pub mod frame;
pub mod messages;
pub mod partitioner;
pub mod scram;
pub mod tls;

pub use api::ApiKey;
pub use error::{ErrorCode, ProtocolError};
