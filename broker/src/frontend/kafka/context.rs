//! What a Kafka connection's handlers share: the shard, the peer, the
//! limits applied to its requests, its quotas, and what a handler answers.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::BytesMut;
use shoal_protocol::batch::BatchLimits;

use super::codec::KafkaLimits;
use super::records::RecordLimits;
use crate::frontend::quota::ByteRate;
use crate::metadata::security::Caller;
use crate::shard::Shard;
use shoal_protocol::scram::ScramServer;

/// What a request's handler leaves for the connection's writer, in request
/// order.
#[derive(Debug)]
pub enum Answer {
    /// A whole response frame.
    Reply(BytesMut),
    /// Nothing to send: a Produce with acks=0 that was accepted (Kafka
    /// clients expect no response to it).
    Silent,
    /// Close the connection once the replies before this one are written:
    /// a request that cannot be served on this connection, or a Produce
    /// with acks=0 that failed (Kafka's broker closes the connection so
    /// that the client, which reads no response, learns of the failure).
    Close,
}

/// Where a connection's SASL exchange stands ([`super::sasl`]).
#[derive(Default)]
pub enum SaslState {
    /// No SaslHandshake yet.
    #[default]
    Start,
    /// PLAIN chosen; its one message is next.
    Plain,
    /// SCRAM-SHA-256 chosen; `None` until its first message arrived.
    Scram(Option<Box<ScramServer>>),
    /// Authenticated (or failed): no further exchange on this connection.
    Done,
}

/// The port a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// The shared Kafka port (the bootstrap address): the broker as a whole.
    Shared,
    /// The shard's own Kafka port, where Metadata advertises it as Kafka
    /// broker `shard id`: that broker only.
    Broker,
}

/// Per-connection state shared by the reader and the handlers.
pub struct KafkaConn {
    pub shard: Rc<Shard>,
    /// Which port the client reached: ListGroups on a broker's own port
    /// lists the groups that broker coordinates, as each Kafka broker does
    /// (clients such as librdkafka ask every broker and concatenate).
    pub door: Door,
    /// The peer as Kafka reports it in DescribeGroups (`/ip`).
    pub client_host: String,
    pub limits: KafkaLimits,
    /// Caps on a produced Kafka batch (before and after decompression).
    pub record_limits: RecordLimits,
    /// Caps for reading stored Shoal batches on fetch.
    pub batch_limits: BatchLimits,
    /// Largest fetch response this connection builds (bytes of records).
    pub fetch_response_bytes_max: usize,
    pub produce_quota: RefCell<ByteRate>,
    pub fetch_quota: RefCell<ByteRate>,
    /// Throttle the reader must honour before reading again, in ms.
    pub throttle_ms: Cell<u64>,
    /// Who the connection acts as, for the shard's access gate: anonymous
    /// until SASL authenticates it (or the client certificate's name under
    /// mTLS), and its address.
    pub caller: RefCell<Rc<Caller>>,
    /// Where the connection's SASL exchange stands.
    pub sasl: RefCell<SaslState>,
    /// Set by a successful SaslAuthenticate, or at the start by a verified
    /// client certificate (mTLS).
    pub authenticated: Cell<bool>,
}

impl KafkaConn {
    /// The connection's caller, for `shard.access(&caller)`.
    pub fn caller(&self) -> Rc<Caller> {
        self.caller.borrow().clone()
    }

    /// Charges `bytes` to a quota; returns the throttle earned (ms), which
    /// the response carries as `throttle_time_ms`, and has the reader pause
    /// that long.
    pub fn charge(&self, quota: &RefCell<ByteRate>, bytes: u64) -> i32 {
        let throttle = quota.borrow_mut().charge(bytes, crate::runtime::now_ms());
        if throttle > 0 {
            self.throttle_ms.set(self.throttle_ms.get().max(throttle));
            crate::metrics::add(&self.shard.metrics().throttle_ms, throttle);
        }
        throttle.min(i32::MAX as u64) as i32
    }
}
