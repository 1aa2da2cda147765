//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

pub mod sim_disk;
pub mod sim_epoch;

use bytes::BytesMut;
use glommio::{LocalExecutorBuilder, Placement};
use shoal_protocol::batch::{self, BatchBuilder, BatchLimits, BatchRecords, NewRecord};
use shoal_storage::{FlushPolicy, LogConfig, PartitionLog};
use std::collections::BTreeMap;
use std::future::Future;

/// Locked memory per test executor: keep it small (many run in parallel).
pub const TEST_IO_MEMORY_BYTES: usize = 1 << 20;

/// Runs `f` on a fresh glommio executor on this thread. The executor runs
/// one more turn after `f`: glommio closes a dropped file through its ring,
/// so an executor that stopped right away would leak the fds of every log
/// `f` dropped (a long test would run out of them, and a test filesystem
/// holding them could not be unmounted).
pub fn run_local<F, T>(f: impl FnOnce() -> F) -> T
where
    F: Future<Output = T> + 'static,
    T: 'static,
{
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(TEST_IO_MEMORY_BYTES)
        .make()
        .expect("executor");
    let f = f();
    ex.run(async move {
        let out = f.await;
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        out
    })
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

/// The bytes the log must hold for `batch` once acknowledged with `ack`:
/// the batch as appended, with the fields the log patches (base offset,
/// leader epoch 0, append time) set as the ack reports them. Tests compare
/// reads with this, never with bytes read back from the log itself.
pub fn acked_bytes(batch: &[u8], ack: &shoal_storage::AppendAck) -> Vec<u8> {
    let mut expected = batch.to_vec();
    batch::patch(&mut expected, ack.base_offset, 0, ack.append_time_ms);
    expected
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

/// The value of record `r` in the batch tagged `tag` (see `make_batch`).
pub fn expected_fill(tag: u64, r: usize) -> u8 {
    (tag as usize * 31 + r) as u8
}

/// Checks that the batch at each acknowledged base offset (mapped to the
/// tag it was built from by `make_batch`) is the batch that was
/// acknowledged there, record by record.
pub async fn check_acked(
    log: &PartitionLog,
    acked: &BTreeMap<u64, u64>,
    records_per_batch: usize,
    value_bytes: usize,
) {
    let limits = BatchLimits::default();
    let mut found = 0;
    let mut at = log.log_start_offset();
    while at < log.high_watermark() {
        let read = log.read(at, 1 << 20).await.expect("read");
        let Some(next) = read.next_offset() else { break };
        for stored in &read.batches {
            let header = batch::validate(&stored.bytes, &limits).expect("valid batch");
            let Some(&tag) = acked.get(&header.base_offset) else {
                continue;
            };
            let records = BatchRecords::open(&stored.bytes, &header, &limits).expect("records");
            let records = records.records().expect("archive");
            assert_eq!(
                records.len(),
                records_per_batch,
                "batch at {}",
                header.base_offset
            );
            for (r, record) in records.iter().enumerate() {
                let value = record.value.as_ref().expect("value");
                assert_eq!(value.len(), value_bytes);
                assert!(
                    value.iter().all(|&b| b == expected_fill(tag, r)),
                    "record {r} of the batch at {} altered",
                    header.base_offset
                );
            }
            found += 1;
        }
        at = next;
    }
    assert_eq!(found, acked.len(), "acknowledged batches missing");
}

/// What [`append_until_refused`] saw: acknowledged batches (base offset ->
/// tag) and the error that stopped each appender.
pub struct AppendOutcome {
    pub acked: BTreeMap<u64, u64>,
    pub errors: Vec<shoal_storage::LogError>,
}

/// Runs `appenders` concurrent appenders over the tags `0..batches_max`
/// (each a `make_batch(tag, records, value_len)`), each until its tags run
/// out or the log refuses it. Every acknowledgement must be fsynced; after
/// each one, `on_ack` gets the number acknowledged so far (to inject a fault
/// mid-run).
pub async fn append_until_refused(
    log: &std::rc::Rc<PartitionLog>,
    appenders: u64,
    batches_max: u64,
    records: usize,
    value_len: usize,
    on_ack: std::rc::Rc<dyn Fn(usize)>,
) -> AppendOutcome {
    use std::cell::RefCell;
    use std::rc::Rc;
    let acked: Rc<RefCell<BTreeMap<u64, u64>>> = Rc::default();
    let errors: Rc<RefCell<Vec<shoal_storage::LogError>>> = Rc::default();
    let tasks: Vec<_> = (0..appenders)
        .map(|lane| {
            let (log, acked, errors, on_ack) = (log.clone(), acked.clone(), errors.clone(), on_ack.clone());
            glommio::spawn_local(async move {
                for tag in (lane..batches_max).step_by(appenders as usize) {
                    match log.append(make_batch(tag, records, value_len)).await {
                        Ok(ack) => {
                            assert_eq!(ack.durability, shoal_storage::Durability::Fsynced);
                            let count = {
                                let mut acked = acked.borrow_mut();
                                acked.insert(ack.base_offset, tag);
                                acked.len()
                            };
                            on_ack(count);
                        }
                        Err(e) => {
                            errors.borrow_mut().push(e);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await;
    }
    AppendOutcome {
        acked: acked.take(),
        errors: errors.take(),
    }
}
