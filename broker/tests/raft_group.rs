//! Three replicas of one partition, each a `RaftGroup` over its own real
//! partition log, on one executor with an in-memory network the test
//! controls: a leader is elected; committed batches land at the same
//! offsets with the same bytes on every replica; when the leader is cut
//! off, the majority elects another and commits, while what the old leader
//! accepted alone is superseded, never acknowledged, and cut from its log
//! when it rejoins; a replica dropped without closing reopens from its
//! files (hard state, sidecar reconciled with the log) and catches up; a
//! follower behind the leader's in-memory entry window catches up from
//! the leader's log; a follower behind the leader's log start (retention)
//! installs a snapshot and catches up from there, also across a reopen.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::{LocalExecutorBuilder, Placement};
use raft::eraftpb::Message;
use shoal_broker::partition::raft_group::{Committed, Outbox, ProposeError, RaftGroup, TICK_MS};
use shoal_protocol::batch::{self, BatchBuilder, NewRecord};
use shoal_storage::{LogConfig, PartitionLog};

const VOTERS: [u64; 3] = [1, 2, 3];
/// Bound on every wait in this test.
const WAIT_MS_MAX: u64 = 10_000;

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 1 << 20,
        preallocate_bytes: 1 << 20,
        write_chunk_bytes: 64 << 10,
        cache_bytes_max: 1 << 20,
        hw_follows_ack: false,
        ..LogConfig::default()
    }
}

fn make_batch(tag: u64, records: usize) -> BytesMut {
    let mut b = BatchBuilder::new();
    for r in 0..records {
        b.push(NewRecord {
            timestamp_ms: 1_700_000_000_000,
            key: Some(format!("k{tag}").into_bytes()),
            value: Some(format!("value {tag}/{r}").into_bytes()),
            headers: Vec::new(),
            message_id: None,
        });
    }
    BytesMut::from(b.finish().unwrap().as_slice())
}

struct Replica {
    id: u64,
    dir: PathBuf,
    log: Rc<PartitionLog>,
    group: Rc<RaftGroup>,
    hw: Rc<Cell<u64>>,
}

async fn open_replica(id: u64, dir: &Path, config: LogConfig, sent: &Rc<RefCell<Vec<Message>>>) -> Replica {
    let log = PartitionLog::open(dir, config).await.expect("open log");
    let hw = Rc::new(Cell::new(0));
    let on_commit = {
        let (hw, log) = (hw.clone(), log.clone());
        Box::new(move |end: u64| {
            hw.set(end);
            log.set_high_watermark(end);
        })
    };
    let group = RaftGroup::open(id, &VOTERS, dir.to_path_buf(), log.clone(), on_commit)
        .await
        .expect("open raft group");
    group.set_outbox(Rc::new(Sent(sent.clone())));
    Replica {
        id,
        dir: dir.to_path_buf(),
        log,
        group,
        hw,
    }
}

/// The test's network and the replicas it connects.
struct Cluster {
    replicas: RefCell<Vec<Option<Replica>>>,
    /// Replicas cut off from the others (messages to and from them drop).
    isolated: RefCell<BTreeSet<u64>>,
    outbox: Rc<RefCell<Vec<Message>>>,
    last_tick: Cell<Instant>,
}

/// What the replicas send, delivered by the next [`Cluster::step`]; the
/// steps run rounds on their own, so a writer's request for one is moot.
struct Sent(Rc<RefCell<Vec<Message>>>);

impl Outbox for Sent {
    fn send(&self, messages: Vec<Message>) {
        self.0.borrow_mut().extend(messages);
    }

    fn wake(&self) {}
}

impl Cluster {
    /// Three fresh replicas under `root`.
    async fn open(root: &Path) -> Rc<Cluster> {
        Self::open_with(root, log_config()).await
    }

    async fn open_with(root: &Path, config: LogConfig) -> Rc<Cluster> {
        let outbox = Rc::new(RefCell::new(Vec::new()));
        let mut replicas = Vec::new();
        for id in VOTERS {
            let dir = root.join(format!("replica-{id}"));
            std::fs::create_dir_all(&dir).unwrap();
            replicas.push(Some(open_replica(id, &dir, config.clone(), &outbox).await));
        }
        Rc::new(Cluster {
            replicas: RefCell::new(replicas),
            isolated: RefCell::new(BTreeSet::new()),
            outbox,
            last_tick: Cell::new(Instant::now()),
        })
    }

    /// Closes every open replica's group and log.
    async fn close(&self) {
        let open: Vec<(Rc<RaftGroup>, Rc<PartitionLog>)> = self
            .replicas
            .borrow()
            .iter()
            .flatten()
            .map(|r| (r.group.clone(), r.log.clone()))
            .collect();
        for (group, log) in open {
            group.close().await;
            log.close().await.unwrap();
        }
    }

    fn group(&self, id: u64) -> Option<Rc<RaftGroup>> {
        self.replicas.borrow()[id as usize - 1]
            .as_ref()
            .map(|r| r.group.clone())
    }

    fn hw(&self, id: u64) -> u64 {
        self.replicas.borrow()[id as usize - 1]
            .as_ref()
            .map_or(0, |r| r.hw.get())
    }

    /// One round of every live replica, then delivery of what they sent.
    async fn step(&self) {
        let tick = self.last_tick.get().elapsed() >= Duration::from_millis(TICK_MS);
        if tick {
            self.last_tick.set(Instant::now());
        }
        for id in VOTERS {
            if let Some(g) = self.group(id) {
                g.round(tick).await;
            }
        }
        let msgs = std::mem::take(&mut *self.outbox.borrow_mut());
        let isolated = self.isolated.borrow().clone();
        for m in msgs {
            if isolated.contains(&m.from) || isolated.contains(&m.to) {
                continue;
            }
            if let Some(g) = self.group(m.to) {
                g.deliver(m);
            }
        }
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }

    /// Runs rounds until `f` holds; panics past the bound.
    async fn until(&self, what: &str, f: impl Fn(&Cluster) -> bool) {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        while !f(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            self.step().await;
        }
    }

    fn leader_among(&self, ids: &[u64]) -> Option<u64> {
        ids.iter()
            .copied()
            .find(|&id| self.group(id).is_some_and(|g| g.is_leader()))
    }

    /// Proposes batches through `leader`; every one must commit at the
    /// next dense offset (`next`, moved past it). `what` names the step.
    async fn commit(self: &Rc<Self>, leader: u64, batches: Vec<Vec<BytesMut>>, next: &mut u64, what: &str) {
        for r in self.produce(leader, batches).await {
            let c = r.unwrap_or_else(|e| panic!("{what}: not committed: {e:?}"));
            assert_eq!(c.base_offset, *next, "{what}: offsets are dense and in order");
            *next += c.records;
        }
    }

    /// Proposes batches through `leader` while running rounds; returns
    /// each proposal's outcome.
    async fn produce(
        self: &Rc<Self>,
        leader: u64,
        batches: Vec<Vec<BytesMut>>,
    ) -> Vec<Result<Committed, ProposeError>> {
        let group = self.group(leader).expect("leader is up");
        let results = Rc::new(RefCell::new(Vec::new()));
        let pending = Rc::new(Cell::new(batches.len()));
        for (i, b) in batches.into_iter().enumerate() {
            let (group, results, pending) = (group.clone(), results.clone(), pending.clone());
            glommio::spawn_local(async move {
                let r = group.propose(b).await;
                results.borrow_mut().push((i, r));
                pending.set(pending.get() - 1);
            })
            .detach();
        }
        self.until("proposals answered", |_| pending.get() == 0).await;
        let mut out = std::mem::take(&mut *results.borrow_mut());
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, r)| r).collect()
    }
}

/// Every batch of a log, as (base offset, bytes with the broker fields).
async fn log_batches(log: &PartitionLog) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    for _ in 0..100_000 {
        if offset >= end {
            break;
        }
        let read = log.read_uncommitted(offset, 1 << 20).await.expect("read");
        for b in read.batches {
            out.push((b.base_offset, b.bytes.to_vec()));
            offset = b.next_offset;
        }
    }
    out
}

/// No offset holds two different batches on two replicas (compared where
/// both hold it: retention may have removed a prefix on some), and
/// everything below `committed_end` is on all of them.
async fn assert_logs_agree(cluster: &Cluster, committed_end: u64) {
    let mut logs = Vec::new();
    for r in cluster.replicas.borrow().iter().flatten() {
        logs.push((r.id, r.log.clone()));
    }
    let mut contents = Vec::new();
    for (id, log) in &logs {
        let batches: std::collections::BTreeMap<u64, Vec<u8>> = log_batches(log).await.into_iter().collect();
        contents.push((*id, batches));
    }
    let (first_id, first) = &contents[0];
    for (id, other) in &contents[1..] {
        for (offset, a) in first {
            if let Some(b) = other.get(offset) {
                assert_eq!(
                    a, b,
                    "replicas {first_id} and {id} hold different bytes at offset {offset}"
                );
            } else {
                let covered = other.range(..offset).next_back().is_some_and(|(&o, b)| {
                    o + u64::from(batch::BatchHeader::parse(b).unwrap().record_count) > *offset
                });
                assert!(
                    !covered,
                    "replicas {first_id} and {id} place batches differently at {offset}"
                );
            }
        }
    }
    for (id, c) in &contents {
        let end = c.values().next_back().map_or(0, |b| {
            let h = batch::BatchHeader::parse(b).unwrap();
            h.next_offset()
        });
        assert!(
            end >= committed_end,
            "replica {id} ends at {end}, below the committed {committed_end}"
        );
    }
}

fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F) {
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(4 << 20)
        .make()
        .expect("executor");
    let f = f();
    ex.run(async move {
        f.await;
        glommio::timer::sleep(Duration::from_millis(1)).await;
    });
}

#[test]
fn three_replicas_elect_replicate_fail_over_and_catch_up() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(move || async move {
        let cluster = Cluster::open(&root).await;

        // 1. A leader is elected; 40 requests commit at dense offsets.
        cluster
            .until("a leader", |c| c.leader_among(&VOTERS).is_some())
            .await;
        let leader = cluster.leader_among(&VOTERS).unwrap();
        let requests: Vec<Vec<BytesMut>> = (0..40u64)
            .map(|i| vec![make_batch(i, 1 + (i % 4) as usize)])
            .collect();
        let mut expected_next = 0;
        cluster
            .commit(leader, requests, &mut expected_next, "first requests")
            .await;
        cluster
            .until("every replica's watermark", |c| {
                VOTERS.iter().all(|&id| c.hw(id) == expected_next)
            })
            .await;
        assert_logs_agree(&cluster, expected_next).await;

        // 2. A non-leader refuses proposals, naming the leader.
        let follower = *VOTERS.iter().find(|&&id| id != leader).unwrap();
        let refused = cluster
            .group(follower)
            .unwrap()
            .propose(vec![make_batch(99, 1)])
            .await;
        assert_eq!(refused, Err(ProposeError::NotLeader { leader }));

        // 3. The leader is cut off. It accepts a proposal it cannot commit;
        // the majority elects a new leader and commits other batches.
        cluster.isolated.borrow_mut().insert(leader);
        let old = cluster.group(leader).unwrap();
        let (tx, rx) = flume::bounded(1);
        glommio::spawn_local(async move {
            let _ = tx.send(old.propose(vec![make_batch(500, 3)]).await);
        })
        .detach();
        let rest: Vec<u64> = VOTERS.iter().copied().filter(|&id| id != leader).collect();
        let start = Instant::now();
        cluster
            .until("a new leader", |c| c.leader_among(&rest).is_some())
            .await;
        let failover = start.elapsed();
        let new_leader = cluster.leader_among(&rest).unwrap();
        let more: Vec<Vec<BytesMut>> = (100..110u64).map(|i| vec![make_batch(i, 2)]).collect();
        cluster
            .commit(new_leader, more, &mut expected_next, "the majority commits")
            .await;
        // It may have stepped down by now (check-quorum) and answered
        // not_leader; it must not have acknowledged.
        let early = rx.try_recv().ok();
        assert!(
            !matches!(early, Some(Ok(_))),
            "the isolated leader acknowledged a write"
        );
        println!("failover: new leader {new_leader} after {failover:?}");

        // 4. The old leader rejoins: its lone entry is superseded and cut.
        cluster.isolated.borrow_mut().clear();
        let answer = match early {
            Some(answer) => answer,
            None => {
                cluster
                    .until("the old leader's proposal answered", |_| !rx.is_empty())
                    .await;
                rx.try_recv().unwrap()
            }
        };
        assert!(
            matches!(
                answer,
                Err(ProposeError::Superseded) | Err(ProposeError::NotLeader { .. })
            ),
            "the old leader's proposal: {answer:?}"
        );
        cluster
            .until("every replica's watermark", |c| {
                VOTERS.iter().all(|&id| c.hw(id) == expected_next)
            })
            .await;
        assert_logs_agree(&cluster, expected_next).await;

        // 5. A follower crashes (dropped without closing), misses writes,
        // reopens from its files and catches up.
        let crashed = *VOTERS
            .iter()
            .find(|&&id| !cluster.group(id).unwrap().is_leader())
            .unwrap();
        let gone = cluster.replicas.borrow_mut()[crashed as usize - 1]
            .take()
            .unwrap();
        // A crash also stops the replica's writer; here it would go on, so
        // the crash is as if it came right after its last write.
        gone.group.writes_done().await;
        let dir = gone.dir.clone();
        drop(gone);
        glommio::timer::sleep(Duration::from_millis(5)).await;
        let leader = cluster.leader_among(&VOTERS).unwrap();
        let later: Vec<Vec<BytesMut>> = (200..220u64)
            .map(|i| vec![make_batch(i, 1), make_batch(i + 1000, 2)])
            .collect();
        cluster
            .commit(leader, later, &mut expected_next, "two of three commit")
            .await;
        let reopened = open_replica(crashed, &dir, log_config(), &cluster.outbox).await;
        cluster.replicas.borrow_mut()[crashed as usize - 1] = Some(reopened);
        cluster
            .until("the crashed replica caught up", |c| {
                c.hw(crashed) == expected_next
            })
            .await;
        assert_logs_agree(&cluster, expected_next).await;
        cluster.close().await;
    });
}

/// A follower cut off while the leader commits far more than its
/// in-memory entry window holds (16 KiB here, 64 MiB in a broker) catches
/// up once it is back: the leader reads the entries it lacks from its log
/// (an asynchronous fetch, between rounds) instead of waiting for a
/// snapshot that does not exist. Before, such a follower never caught up.
#[test]
fn a_follower_behind_the_entry_window_catches_up_from_the_log() {
    const WINDOW_BYTES: usize = 16 << 10;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(move || async move {
        let cluster = Cluster::open(&root).await;
        for id in VOTERS {
            cluster.group(id).unwrap().set_window_bytes_max(WINDOW_BYTES);
        }
        cluster
            .until("a leader", |c| c.leader_among(&VOTERS).is_some())
            .await;
        let leader = cluster.leader_among(&VOTERS).unwrap();
        let behind = *VOTERS.iter().find(|&&id| id != leader).unwrap();
        cluster.isolated.borrow_mut().insert(behind);

        // About 30 batches of 40 records (~1.5 KiB each) per round, 10
        // rounds: ~450 KiB, some 28 windows.
        let mut expected_next = 0;
        for round in 0..10u64 {
            let requests: Vec<Vec<BytesMut>> = (0..30u64)
                .map(|i| vec![make_batch(round * 100 + i, 40)])
                .collect();
            cluster
                .commit(leader, requests, &mut expected_next, "two of three commit")
                .await;
        }
        assert_eq!(cluster.hw(behind), 0, "the cut-off follower saw nothing");

        cluster.isolated.borrow_mut().clear();
        cluster
            .until("the follower behind the window caught up", |c| {
                c.hw(behind) == expected_next
            })
            .await;
        let fetched = cluster.group(leader).unwrap().fetched_total();
        println!("the leader sent {fetched} entries from its log");
        assert!(fetched > 0, "the catch-up never read below the window");
        assert_logs_agree(&cluster, expected_next).await;
        cluster.close().await;
    });
}

/// A follower cut off while retention removes, on the leader and the other
/// follower, segments it never received (must-show 4 of issue 14, in
/// process): once back, the leader sends a snapshot (the last removed
/// entry and the log start after it); the follower empties its log,
/// restarts it at the leader's log start and takes the entries after it.
/// Reopened from its files, it keeps that start and goes on replicating.
#[test]
fn a_follower_behind_the_log_start_installs_a_snapshot_and_catches_up() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let config = LogConfig {
        segment_bytes_max: 64 << 10,
        preallocate_bytes: 64 << 10,
        retention_bytes: Some(128 << 10),
        ..log_config()
    };
    run(move || async move {
        let cluster = Cluster::open_with(&root, config.clone()).await;
        cluster
            .until("a leader", |c| c.leader_among(&VOTERS).is_some())
            .await;
        let leader = cluster.leader_among(&VOTERS).unwrap();
        let behind = *VOTERS.iter().find(|&&id| id != leader).unwrap();
        // It holds a little, then is cut off.
        let mut expected_next = 0;
        cluster
            .commit(
                leader,
                vec![vec![make_batch(1, 5)]],
                &mut expected_next,
                "first batch",
            )
            .await;
        cluster
            .until("the follower has the first batch", |c| {
                c.hw(behind) == expected_next
            })
            .await;
        cluster.isolated.borrow_mut().insert(behind);

        // ~600 KiB in 1.5 KiB batches: about ten 64 KiB segments.
        for round in 0..10u64 {
            let requests: Vec<Vec<BytesMut>> = (0..40u64)
                .map(|i| vec![make_batch(100 + round * 100 + i, 40)])
                .collect();
            cluster
                .commit(leader, requests, &mut expected_next, "two of three commit")
                .await;
        }
        let live: Vec<(u64, Rc<PartitionLog>)> = cluster
            .replicas
            .borrow()
            .iter()
            .flatten()
            .filter(|r| r.id != behind)
            .map(|r| (r.id, r.log.clone()))
            .collect();
        for (_, log) in &live {
            let removed = log.apply_retention(i64::MAX / 2).await.expect("retention");
            assert!(removed > 0, "retention removed segments");
        }
        let leader_start = live
            .iter()
            .find(|(id, _)| *id == leader)
            .map(|(_, l)| l.log_start_offset())
            .unwrap();
        println!("leader log start {leader_start}, committed end {expected_next}");

        cluster.isolated.borrow_mut().clear();
        cluster
            .until("the follower behind the log start caught up", |c| {
                c.hw(behind) == expected_next
            })
            .await;
        let (installed, follower_start) = {
            let rs = cluster.replicas.borrow();
            let r = rs[behind as usize - 1].as_ref().unwrap();
            (r.group.installed_total(), r.log.log_start_offset())
        };
        assert_eq!(installed, 1, "one snapshot installed");
        assert_eq!(
            follower_start, leader_start,
            "the follower's log starts at the leader's"
        );
        assert_logs_agree(&cluster, expected_next).await;

        // Reopened from its files (closed cleanly), it keeps its start and
        // goes on replicating.
        let (group, log, dir) = {
            let mut rs = cluster.replicas.borrow_mut();
            let r = rs[behind as usize - 1].take().unwrap();
            (r.group, r.log, r.dir)
        };
        group.close().await;
        log.close().await.unwrap();
        drop((group, log));
        let reopened = open_replica(behind, &dir, config.clone(), &cluster.outbox).await;
        assert_eq!(reopened.log.log_start_offset(), leader_start);
        cluster.replicas.borrow_mut()[behind as usize - 1] = Some(reopened);
        let leader = cluster.leader_among(&VOTERS).unwrap();
        let more: Vec<Vec<BytesMut>> = (0..10u64).map(|i| vec![make_batch(5000 + i, 3)]).collect();
        cluster
            .commit(leader, more, &mut expected_next, "after the reopen")
            .await;
        cluster
            .until("the reopened follower caught up", |c| {
                c.hw(behind) == expected_next
            })
            .await;
        assert_logs_agree(&cluster, expected_next).await;
        cluster.close().await;
    });
}

/// A snapshot install cut short by a crash (its base persisted with the
/// hard state, the old log still there) is finished when the replica
/// opens: the log restarts at the base's offset, the raft log after the
/// base's index, and the replica then takes entries from there.
#[test]
fn an_interrupted_snapshot_install_is_finished_on_open() {
    use shoal_storage::raft_files::{store_hard_state, HardStateRecord, SnapshotBase};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("replica-1");
    std::fs::create_dir_all(&dir).unwrap();
    run(move || async move {
        let log = PartitionLog::open(&dir, log_config()).await.expect("open log");
        for i in 0..10u64 {
            log.append(make_batch(i, 8)).await.expect("append");
        }
        assert_eq!(log.log_end_offset(), 80);
        let base = SnapshotBase {
            index: 50,
            term: 3,
            offset: 500,
        };
        let hs = HardStateRecord {
            term: 3,
            vote: 2,
            commit: 50,
            voters: VOTERS.to_vec(),
            snapshot: Some(base),
        };
        store_hard_state(&shoal_storage::DmaDevice, &dir, &hs)
            .await
            .unwrap();
        log.close().await.unwrap();
        drop(log);

        let replica = open_replica(1, &dir, log_config(), &Rc::default()).await;
        let b = replica.log.bounds();
        assert_eq!((b.log_start_offset, b.log_end_offset), (500, 500));
        assert_eq!(
            replica.group.indexes(),
            (50, 50),
            "(last index, commit) at the base"
        );
        replica.group.close().await;
        replica.log.close().await.unwrap();
    });
}
