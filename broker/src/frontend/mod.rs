//! Front ends: adapters between a wire protocol and the shard's services.
//! Each decodes a request, calls a service through the shard's routing,
//! and encodes the answer; none holds partition or group logic.
//!
//! | module     | protocol                                                     |
//! |------------|--------------------------------------------------------------|
//! | [`native`] | Shoal's binary protocol (rkyv frames), shard-aware clients   |
//! | [`http`]   | HTTP/JSON API and Prometheus `/metrics` (hyper over glommio)  |
//! | [`kafka`]  | the Kafka wire protocol: existing Kafka clients, shard-aware |
//! | [`quota`]  | byte-rate quotas both front ends charge                      |
//! | [`admission`] | per-shard and per-address connection limits               |
//! | [`accept`] | the accept loop of every client listener (admission, one task per connection) |
//! | [`tls`]    | TLS for every listener: rustls over glommio, SIGHUP reload    |
//! | [`frame_reader`] | receive-pool reservation, budgets and deadlines of framed connections |

pub mod accept;
pub mod admission;
pub mod frame_reader;
pub mod http;
pub mod kafka;
pub mod native;
pub mod quota;
pub mod tls;
