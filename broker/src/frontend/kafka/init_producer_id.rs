//! InitProducerId: a producer id for an idempotent Kafka producer.
//!
//! Ids are drawn at random from [0, 2^62), not from a counter: nothing
//! else in Shoal hands out producer ids (the native client does not use
//! them), a random draw needs no coordination between shards and no
//! durable state, and it is never repeated across restarts in practice
//! (two of a million live producers collide with probability about
//! 10^-7). The partition service keys its producer-sequence state by the
//! id (as Kafka id + 1, so 0 stays "none"), remembering the last five
//! batches of each.
//!
//! A producer that asks again with its current id and epoch (KIP-360,
//! after a sequence error) gets the same id with the next epoch, which
//! resets its sequences on every partition; at the last epoch it gets a
//! new id. Transactional producers are refused: Shoal has no transactions.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

/// Producer ids are drawn below this.
pub const PRODUCER_ID_BOUND: u64 = 1 << 62;

pub fn handle(req: InitProducerIdRequest) -> InitProducerIdResponse {
    if req.transactional_id.is_some() {
        return InitProducerIdResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    let (id, epoch) = next_identity(req.producer_id.0, req.producer_epoch, rand::random::<u64>());
    InitProducerIdResponse::default()
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch)
}

/// The identity to hand out: a bumped epoch for a producer that names its
/// own, else a new id from `draw`.
pub fn next_identity(current_id: i64, current_epoch: i16, draw: u64) -> (i64, i16) {
    if current_id >= 0 && (0..i16::MAX - 1).contains(&current_epoch) {
        return (current_id, current_epoch + 1);
    }
    ((draw % PRODUCER_ID_BOUND) as i64, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new producer gets a fresh id at epoch 0; a known one its next
    /// epoch; one at the last epoch a fresh id.
    #[test]
    fn identities() {
        assert_eq!(
            next_identity(-1, -1, u64::MAX),
            ((u64::MAX % PRODUCER_ID_BOUND) as i64, 0)
        );
        assert_eq!(next_identity(77, 3, 5), (77, 4));
        assert_eq!(next_identity(77, i16::MAX - 1, 5), (5, 0));
        let r = handle(InitProducerIdRequest::default().with_transactional_id(None));
        assert_eq!(r.error_code, 0);
        assert!(r.producer_id.0 >= 0 && (r.producer_id.0 as u64) < PRODUCER_ID_BOUND);
        let txn = InitProducerIdRequest::default().with_transactional_id(Some(Default::default()));
        assert_eq!(handle(txn).error_code, 42, "transactions are refused");
    }
}
