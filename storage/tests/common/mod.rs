//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use bytes::BytesMut;
use glommio::{LocalExecutorBuilder, Placement};
use shoal_protocol::batch::{BatchBuilder, NewRecord};
use shoal_storage::{FlushPolicy, LogConfig};
use std::future::Future;

/// Locked memory per test executor: keep it small (many run in parallel).
pub const TEST_IO_MEMORY_BYTES: usize = 1 << 20;

/// Runs `f` on a fresh glommio executor on this thread.
pub fn run_local<F, T>(f: impl FnOnce() -> F) -> T
where
    F: Future<Output = T> + 'static,
    T: 'static,
{
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(TEST_IO_MEMORY_BYTES)
        .make()
        .expect("executor");
    ex.run(f())
}

/// A config with tiny segments and buffers so tests roll and refill often.
pub fn small_config(flush: FlushPolicy) -> LogConfig {
    LogConfig {
        flush,
        segment_bytes_max: 16 << 10,
        preallocate_bytes: 16 << 10,
        write_chunk_bytes: 8 << 10,
        pending_bytes_max: 64 << 10,
        cache_bytes_max: 6 << 10,
        index_interval_bytes: 512,
        read_chunk_bytes: 4096,
        ..LogConfig::default()
    }
}

/// A batch of `records` records whose values are `value_len` bytes derived
/// from `tag`, so every batch of a test has distinct content.
pub fn make_batch(tag: u64, records: usize, value_len: usize) -> BytesMut {
    let mut b = BatchBuilder::new();
    for r in 0..records.max(1) {
        let fill = (tag as usize * 31 + r) as u8;
        b.push(NewRecord {
            timestamp_ms: 1_700_000_000_000 + tag as i64,
            key: Some(format!("key-{}", tag % 7).into_bytes()),
            value: Some(vec![fill; value_len]),
            ..Default::default()
        });
    }
    BytesMut::from(&b.finish().expect("encode")[..])
}

/// A seed from `SHOAL_TEST_SEED`, or a fresh one; printed either way so a
/// failing run can be repeated.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("SHOAL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("{test}: seed {seed} (rerun with SHOAL_TEST_SEED={seed})");
    seed
}
