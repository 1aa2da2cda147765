//! Running a piece of work on another shard: Seastar's `submit_to`.
//!
//! A front end whose state is owned per shard (the Kafka front end's group
//! coordinators live on the group's coordinating shard) sends a closure to
//! the shard that owns the state; that shard's inbox runs it with its own
//! [`Shard`] and sends the result back. The shard does not know what the
//! work is: the closure and its result cross the mesh as opaque values, so
//! nothing here imports a front end. Work for this shard runs in place,
//! without a hop.
//!
//! The closure must be `Send` (it crosses threads once, before it runs);
//! the future it returns runs on the target shard only and need not be.

use std::any::Any;
use std::future::Future;
use std::rc::Rc;

use super::call::{ShardCall, ShardReply, Submitted, SubmittedFuture, SubmittedWork};
use super::state::Shard;
use crate::error::{BrokerError, BrokerResult};
use crate::ids::ShardId;

impl Shard {
    /// Runs `work` on shard `to` (here, when `to` is this shard) and
    /// returns its result. Fails only when `to` has stopped.
    pub async fn submit_to<T, F, Fut>(self: &Rc<Self>, to: ShardId, work: F) -> BrokerResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        if to == self.id() {
            return Ok(work(self.clone()).await);
        }
        let erased = SubmittedWork(Box::new(move |shard: Rc<dyn Any>| -> SubmittedFuture {
            let shard = shard
                .downcast::<Shard>()
                .expect("submitted work is run with the target's shard");
            Box::pin(async move { Box::new(work(shard).await) as Submitted })
        }));
        match self.mesh().call(to, ShardCall::Submit(erased)).await {
            Ok(ShardReply::Submitted(result)) => result
                .downcast::<T>()
                .map(|b| *b)
                .map_err(|_| BrokerError::internal("mesh reply mismatch (submitted work)")),
            Ok(_) => Err(BrokerError::internal("mesh reply mismatch")),
            Err(_) => Err(BrokerError::shard_stopped(to)),
        }
    }

    /// Runs work submitted by another shard (the inbox calls this).
    pub(super) async fn run_submitted(self: &Rc<Self>, work: SubmittedWork) -> Submitted {
        let shard: Rc<dyn Any> = self.clone();
        (work.0)(shard).await
    }
}
