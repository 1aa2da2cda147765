//! What a native connection's handlers share: the shard, the connection's
//! quotas, and the reply type they produce.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::Bytes;
use rkyv::util::AlignedVec;

use shoal_protocol::scram::ScramServer;

use crate::frontend::quota::ByteRate;
use crate::metadata::security::Caller;
use crate::shard::Shard;

/// A reply ready to send: the frame head (header + meta) and the payload
/// pieces (batch bytes, shared with the cache, not copied).
pub struct Reply {
    pub head: AlignedVec<16>,
    pub payload: Vec<Bytes>,
}

impl Reply {
    pub fn head_only(head: AlignedVec<16>) -> Reply {
        Reply {
            head,
            payload: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.payload.iter().map(Bytes::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per-connection state shared by its reader and its handlers.
pub struct ConnectionCtx {
    pub shard: Rc<Shard>,
    pub produce_quota: RefCell<ByteRate>,
    pub fetch_quota: RefCell<ByteRate>,
    /// Throttle the reader must honour before reading again, in ms.
    pub throttle_ms: Cell<u64>,
    /// Who the connection acts as: anonymous until authenticated (or the
    /// client certificate's name under mTLS), and its address.
    pub caller: RefCell<Rc<Caller>>,
    /// A SCRAM exchange in progress (between its two steps).
    pub scram: RefCell<Option<ScramServer>>,
}

impl ConnectionCtx {
    /// The connection's caller, for the shard's access gate.
    pub fn caller(&self) -> Rc<Caller> {
        self.caller.borrow().clone()
    }

    /// Charges `bytes` to a quota; returns the throttle earned (ms) and
    /// tells the reader to pause for it.
    pub fn charge(&self, quota: &RefCell<ByteRate>, bytes: u64) -> u64 {
        let throttle = quota.borrow_mut().charge(bytes, crate::runtime::now_ms());
        if throttle > 0 {
            self.throttle_ms.set(throttle);
            crate::metrics::add(&self.shard.metrics().throttle_ms, throttle);
        }
        throttle
    }
}
