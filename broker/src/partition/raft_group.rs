//! One replicated partition's raft group on this node: a raft-rs
//! `RawNode` over the partition's own log (`docs/replication.md`).
//!
//! One raft entry is one record batch (the leader places it: base offset
//! after the raft log's last entry, `leader_epoch` = the term, its append
//! time) or an empty entry. A [`RaftGroup::round`] does what raft-rs asks,
//! in its order: report the writes that finished since the last round
//! (`on_persist_ready`), step the messages that arrived, tick, propose
//! what producers queued, then for the `Ready`: send the leader's
//! messages, apply what is committed, stage the entries and the hard state
//! and `advance_append_async`. Nothing steps or proposes between `ready()`
//! and the advance: only the round touches the `RawNode`, and rounds of
//! one group never overlap (the shard's loop awaits each).
//!
//! Writes are asynchronous (raft-rs's `advance_append_async`), so a round
//! never waits for a disk. Staging puts the entries into the in-memory
//! storage at once (raft-rs reads them from there after the advance), and
//! queues the write; one writer task per group, running only while writes
//! are queued, takes every queued write at once and persists them in ready
//! order as one: cut a diverged tail, append the batches with their
//! leader-given offsets to the log and the entry records to the sidecar,
//! both fdatasynced, in parallel; then the hard state when term or vote
//! changed. Only then does it send those readies' persisted messages
//! (votes, append acknowledgements) and ask for a round, which tells
//! raft-rs the highest ready number written. So the leader steps its
//! followers' acknowledgements, and commits, while its next write is on
//! the disk, and consecutive readies share one fdatasync (group commit).
//! raft-rs commits and hands out for applying only entries this replica
//! has persisted (the minimum of the commit and the persisted index). A
//! ready with a snapshot waits for the queued writes and is handled whole
//! in its round.
//!
//! Applying a committed entry moves the high watermark to the entry's end
//! offset (through the `on_commit` callback: the replica moves it) and
//! answers the producers waiting for that entry: committed, when the entry
//! at their index still has the term they proposed in; superseded, when a
//! new leader overwrote it.
//!
//! The hard state's commit index is persisted with term and vote changes
//! and on close, not every round: raft may lose it (the leader resends
//! it), and recovery never cuts below what was persisted.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Message, MessageType};
use raft::{RawNode, StateRole};
use shoal_protocol::batch;
use shoal_storage::raft_files::{load_hard_state, store_hard_state, HardStateRecord, RaftIndexFile};
use shoal_storage::raft_index::{reconcile, EntryRecord, ScanStop};
use shoal_storage::{DmaDevice, Durability, PartitionLog};

use super::raft_storage::{snapshot_base, RaftMemory, ReplicaStorage};
use crate::runtime::now_ms;

/// Milliseconds per raft tick.
pub const TICK_MS: u64 = 50;
/// Heartbeats every 2 ticks (100 ms); elections after 6 to 10 ticks of
/// silence (300 to 500 ms, randomised by raft-rs).
const HEARTBEAT_TICKS: usize = 2;
const ELECTION_TICKS_MIN: usize = 6;
const ELECTION_TICKS_MAX: usize = 10;
/// Cap on one append message's entries, and on appends in flight per peer.
const MSG_BYTES_MAX: u64 = 1 << 20;
const INFLIGHT_MSGS_MAX: usize = 256;
/// Cap on one read of entries below the window for a follower.
const FETCH_BYTES_MAX: usize = 4 << 20;
/// Cap on messages and proposals queued between two rounds; past it they
/// are dropped (raft resends; producers get a retryable error).
pub const QUEUE_MAX: usize = 4096;

/// A batch committed by the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub base_offset: u64,
    pub records: u64,
    pub append_time_ms: i64,
    /// The raft index of the request's last batch.
    pub index: u64,
}

/// Why a proposal did not commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This replica is not the leader; `leader` is the one it knows (0: none).
    #[error("not the leader (leader is node {leader})")]
    NotLeader { leader: u64 },
    /// A new leader overwrote the entry: nothing of it is stored.
    #[error("superseded by a new leader before it committed")]
    Superseded,
    #[error("dropped: {0}")]
    Dropped(String),
    /// The group stopped after a storage error.
    #[error("partition fenced: {0}")]
    Fenced(String),
}

type Reply = flume::Sender<Result<Committed, ProposeError>>;

/// Given the bytes of every committed batch (see [`RaftGroup::set_on_apply`]).
pub type ApplyHook = Box<dyn Fn(&[u8])>;

struct Proposal {
    batches: Vec<BytesMut>,
    reply: Reply,
}

/// Where a group's outgoing messages go, and how its writer asks the
/// driver for another round.
pub trait Outbox {
    /// Sends messages now, in order.
    fn send(&self, messages: Vec<Message>);
    /// Asks for a round of this group (a write finished).
    fn wake(&self);
}

/// One ready's share of the disk: its entries (already staged in the
/// in-memory storage), its hard state, and the messages that may leave
/// only once both are durable.
struct Write {
    number: u64,
    entries: Vec<(EntryRecord, Bytes)>,
    hard: Option<HardState>,
    messages: Vec<Message>,
}

struct Waiter {
    term: u64,
    first_index: u64,
    base_offset: u64,
    records: u64,
    append_time_ms: i64,
    reply: Reply,
}

/// One replica's raft group.
pub struct RaftGroup {
    id: u64,
    node: RefCell<RawNode<ReplicaStorage>>,
    mem: Rc<RefCell<RaftMemory>>,
    /// Taken out while a round writes it.
    sidecar: RefCell<Option<RaftIndexFile<DmaDevice>>>,
    log: Rc<PartitionLog>,
    dir: PathBuf,
    inbox: RefCell<Vec<Message>>,
    proposals: RefCell<Vec<Proposal>>,
    waiters: RefCell<BTreeMap<u64, Waiter>>,
    /// End offsets of proposed entries not yet persisted, by index.
    proposed_ends: RefCell<BTreeMap<u64, u64>>,
    /// (term, vote) as last persisted.
    persisted: Cell<(u64, u64)>,
    last_append_ms: Cell<i64>,
    fenced: RefCell<Option<String>>,
    on_commit: Box<dyn Fn(u64)>,
    /// Given every committed batch, in index order, on every replica (the
    /// replica rebuilds its producer state from them).
    on_apply: RefCell<Option<ApplyHook>>,
    /// Where the messages go, and who runs the next round (set once by the
    /// driver that adds the group, [`RaftGroup::set_outbox`]).
    outbox: RefCell<Option<Rc<dyn Outbox>>>,
    /// A leadership transfer was asked for (shutdown); the next round
    /// starts it, since raft must not be stepped between `ready` and
    /// `advance`, which a round spans across its awaits.
    transfer_asked: Cell<bool>,
    /// A transfer to this replica was asked for (leader balancing).
    transfer_to: Cell<Option<u64>>,
    /// Staged writes not yet taken by the writer, in ready order.
    writes: RefCell<Vec<Write>>,
    /// A writer task is running.
    writing: Cell<bool>,
    /// Told when the writer stops with nothing queued.
    drained: RefCell<Vec<flume::Sender<()>>>,
    /// The highest ready number written since the last round reported it.
    written_ready: Cell<Option<u64>>,
    /// The last raft index on disk (entries after it are staged only).
    durable_last: Cell<u64>,
    /// Entries read back from the log for followers (below the window).
    fetched_total: Cell<u64>,
    /// Followers sent a snapshot in the last round (reported next round).
    snapshots_sent: RefCell<Vec<u64>>,
    installed_total: Cell<u64>,
}

/// raft-rs logs through slog; this forwards to tracing (debug and up).
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;
    fn log(&self, record: &slog::Record<'_>, _values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => tracing::error!(target: "raft", "{}", record.msg()),
            slog::Level::Warning => tracing::warn!(target: "raft", "{}", record.msg()),
            slog::Level::Info => tracing::debug!(target: "raft", "{}", record.msg()),
            _ => tracing::trace!(target: "raft", "{}", record.msg()),
        }
        Ok(())
    }
}

impl RaftGroup {
    /// Opens the group of the partition whose (already recovered) log is
    /// `log` in `dir`: loads the hard state, reconciles the sidecar with
    /// the log (`raft_index::reconcile`), refills the entry window and
    /// starts raft-rs. `on_commit` gets the new high watermark.
    pub async fn open(
        id: u64,
        voters: &[u64],
        dir: PathBuf,
        log: Rc<PartitionLog>,
        on_commit: Box<dyn Fn(u64)>,
    ) -> Result<Rc<RaftGroup>, String> {
        let device = DmaDevice;
        let hs = load_hard_state(&device, &dir).await.map_err(|e| e.to_string())?;
        let hs = hs.unwrap_or_else(|| HardStateRecord {
            voters: voters.to_vec(),
            ..HardStateRecord::default()
        });
        if hs.voters != voters {
            return Err(format!(
                "the persisted voters {:?} differ from the configured {voters:?}",
                hs.voters
            ));
        }
        let (mut sidecar, stop) = RaftIndexFile::open(&device, &dir)
            .await
            .map_err(|e| e.to_string())?;
        let base = hs.snapshot.unwrap_or_default();
        if hs.snapshot.is_some() && log.log_start_offset() < base.offset {
            // A snapshot install a crash interrupted (its base is persisted
            // first): finish it.
            tracing::warn!(dir = %dir.display(), index = base.index, offset = base.offset,
                "finishing an interrupted snapshot install");
            sidecar.truncate_from(0).await.map_err(|e| e.to_string())?;
            log.reset_to(base.offset).await.map_err(|e| e.to_string())?;
        }
        let records = sidecar.records().to_vec();
        let plan = reconcile(
            &records,
            log.log_start_offset(),
            log.log_end_offset(),
            hs.commit,
            base.index,
        )
        .map_err(|e| e.to_string())?;
        if plan.keep_records < records.len() || matches!(stop, ScanStop::Torn { .. }) {
            let from = records
                .get(plan.keep_records)
                .map_or_else(|| records.last().map_or(1, |r| r.index + 1), |r| r.index);
            sidecar.truncate_from(from).await.map_err(|e| e.to_string())?;
        }
        if let Some(cut) = plan.cut_log_at {
            tracing::warn!(dir = %dir.display(), cut, "raft recovery cuts the log's unindexed tail");
            log.truncate_suffix(cut).await.map_err(|e| e.to_string())?;
        }
        let records = sidecar.records().to_vec();
        let hard = HardState {
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
            ..HardState::default()
        };
        let conf = ConfState::from((voters.to_vec(), Vec::<u64>::new()));
        let mem = Rc::new(RefCell::new(RaftMemory::new(hard, conf, records, base)));
        mem.borrow_mut().set_log_start(log.log_start_offset());
        let last_append_ms = refill_window(&log, &mem).await?;
        let config = raft::Config {
            id,
            election_tick: ELECTION_TICKS_MIN,
            min_election_tick: ELECTION_TICKS_MIN,
            max_election_tick: ELECTION_TICKS_MAX,
            heartbeat_tick: HEARTBEAT_TICKS,
            applied: hs.commit,
            max_size_per_msg: MSG_BYTES_MAX,
            max_inflight_msgs: INFLIGHT_MSGS_MAX,
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        };
        let logger = slog::Logger::root(slog::Fuse(TracingDrain), slog::o!("raft_id" => id));
        let node = RawNode::new(&config, ReplicaStorage(mem.clone()), &logger).map_err(|e| e.to_string())?;
        mem.borrow_mut().set_applied(hs.commit);
        let committed_end = mem.borrow().end_offset_of(hs.commit);
        let durable_last = mem.borrow().last_index();
        let group = Rc::new(RaftGroup {
            id,
            node: RefCell::new(node),
            mem,
            sidecar: RefCell::new(Some(sidecar)),
            log,
            dir,
            inbox: RefCell::new(Vec::new()),
            proposals: RefCell::new(Vec::new()),
            waiters: RefCell::new(BTreeMap::new()),
            proposed_ends: RefCell::new(BTreeMap::new()),
            persisted: Cell::new((hs.term, hs.vote)),
            last_append_ms: Cell::new(last_append_ms),
            fenced: RefCell::new(None),
            on_commit,
            on_apply: RefCell::new(None),
            outbox: RefCell::new(None),
            transfer_asked: Cell::new(false),
            transfer_to: Cell::new(None),
            writes: RefCell::new(Vec::new()),
            writing: Cell::new(false),
            drained: RefCell::new(Vec::new()),
            written_ready: Cell::new(None),
            durable_last: Cell::new(durable_last),
            fetched_total: Cell::new(0),
            snapshots_sent: RefCell::new(Vec::new()),
            installed_total: Cell::new(0),
        });
        if let Some(end) = committed_end {
            (group.on_commit)(end);
        }
        Ok(group)
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether this replica is the leader now.
    pub fn is_leader(&self) -> bool {
        self.node.borrow().raft.state == StateRole::Leader
    }

    /// The leader this replica knows (0: none).
    pub fn leader(&self) -> u64 {
        self.node.borrow().raft.leader_id
    }

    pub fn term(&self) -> u64 {
        self.node.borrow().raft.term
    }

    /// The last raft index persisted here, and the commit index.
    pub fn indexes(&self) -> (u64, u64) {
        (
            self.durable_last.get(),
            self.node.borrow().raft.raft_log.committed,
        )
    }

    pub fn fenced(&self) -> Option<String> {
        self.fenced.borrow().clone()
    }

    /// Queues a message from a peer for the next round.
    pub fn deliver(&self, message: Message) {
        let mut inbox = self.inbox.borrow_mut();
        if inbox.len() < QUEUE_MAX {
            inbox.push(message);
        }
    }

    /// Proposes the batches of one produce request (validated by the
    /// caller) and waits until they are committed or cannot be.
    pub async fn propose(&self, batches: Vec<BytesMut>) -> Result<Committed, ProposeError> {
        if let Some(reason) = self.fenced() {
            return Err(ProposeError::Fenced(reason));
        }
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader: self.leader(),
            });
        }
        let (tx, rx) = flume::bounded(1);
        {
            let mut queue = self.proposals.borrow_mut();
            if queue.len() >= QUEUE_MAX {
                return Err(ProposeError::Dropped("proposal queue full".into()));
            }
            queue.push(Proposal { batches, reply: tx });
        }
        rx.recv_async()
            .await
            .unwrap_or_else(|_| Err(ProposeError::Dropped("the raft group closed".into())))
    }

    /// Sets the hook given every committed batch from now on (entries
    /// committed before the group opened are in the log, which the replica
    /// reads itself).
    pub fn set_on_apply(&self, f: ApplyHook) {
        *self.on_apply.borrow_mut() = Some(f);
    }

    /// Whether this replica leads and has applied an entry of its own
    /// term: then every entry a former leader left in its log is
    /// committed and applied (raft commits them with the new leader's
    /// first entry), so state rebuilt from applied batches is complete.
    pub fn applied_own_term(&self) -> bool {
        let node = self.node.borrow();
        node.raft.state == StateRole::Leader && {
            let mem = self.mem.borrow();
            mem.record(mem.applied())
                .is_some_and(|r| r.term == node.raft.term)
        }
    }

    /// Asks the next round to hand leadership to a caught-up follower
    /// (SIGTERM: the clients' next leader is ready before this node goes).
    pub fn ask_transfer(&self) {
        self.transfer_asked.set(true);
    }

    /// Asks the next round to hand leadership to replica `to` if it has
    /// every entry of this leader's log then (leader balancing).
    pub fn ask_transfer_to(&self, to: u64) {
        self.transfer_to.set(Some(to));
    }

    /// Whether this replica leads and replica `id` has every entry of its
    /// log (a transfer to it would start at once).
    pub fn is_caught_up(&self, id: u64) -> bool {
        let node = self.node.borrow();
        node.raft.state == StateRole::Leader && caught_up(&node, id)
    }

    /// Whether a round has anything to do without a tick.
    pub fn has_work(&self) -> bool {
        self.transfer_asked.get()
            || self.transfer_to.get().is_some()
            || self.mem.borrow().has_fetches()
            || !self.inbox.borrow().is_empty()
            || !self.proposals.borrow().is_empty()
            || self.written_ready.get().is_some()
            || self.node.borrow().has_ready()
    }

    /// Sets where the group's messages go and who runs its rounds.
    pub fn set_outbox(&self, outbox: Rc<dyn Outbox>) {
        *self.outbox.borrow_mut() = Some(outbox);
    }

    /// One round (module header); none before the driver set the outbox
    /// (which takes the messages to send now, in order, and the writer's
    /// requests for a round). A storage error fences the group: it stops,
    /// and its waiting producers are told.
    pub async fn round(self: &Rc<Self>, tick: bool) {
        if self.fenced.borrow().is_some() {
            return;
        }
        let Some(outbox) = self.outbox.borrow().clone() else {
            return;
        };
        if let Err(reason) = self.round_inner(tick, &outbox).await {
            self.fence(reason);
        }
    }

    fn fence(&self, reason: String) {
        if self.fenced.borrow().is_some() {
            return;
        }
        tracing::error!(dir = %self.dir.display(), %reason, "raft group fenced");
        for (_, w) in std::mem::take(&mut *self.waiters.borrow_mut()) {
            let _ = w.reply.send(Err(ProposeError::Fenced(reason.clone())));
        }
        // Proposals queued for the next round would wait for a round that
        // never comes (a fenced group runs none): they are answered too.
        for p in std::mem::take(&mut *self.proposals.borrow_mut()) {
            let _ = p.reply.send(Err(ProposeError::Fenced(reason.clone())));
        }
        *self.fenced.borrow_mut() = Some(reason);
    }

    async fn round_inner(self: &Rc<Self>, tick: bool, outbox: &Rc<dyn Outbox>) -> Result<(), String> {
        self.mem.borrow_mut().set_log_start(self.log.log_start_offset());
        if let Some(number) = self.written_ready.take() {
            self.node.borrow_mut().on_persist_ready(number);
        }
        for to in std::mem::take(&mut *self.snapshots_sent.borrow_mut()) {
            // Our snapshots are a few bytes and ride the link in order with
            // the appends after them: report them sent, so the leader
            // probes the follower right after (a lost one makes it fall
            // behind the log start again, and get another).
            self.node
                .borrow_mut()
                .report_snapshot(to, raft::SnapshotStatus::Finish);
        }
        self.serve_fetches().await;
        let mut ready = {
            let mut node = self.node.borrow_mut();
            for m in std::mem::take(&mut *self.inbox.borrow_mut()) {
                if let Err(e) = node.step(m) {
                    tracing::debug!(error = %e, "raft step refused a message");
                }
            }
            if tick {
                node.tick();
            }
            if self.transfer_asked.take() {
                transfer_to_caught_up(&mut node);
            } else if let Some(to) = self.transfer_to.take() {
                transfer_to_if_caught_up(&mut node, to);
            }
            self.release_waiters_on_step_down(&node);
            self.propose_queued(&mut node);
            if !node.has_ready() {
                return Ok(());
            }
            node.ready()
        };
        let messages = ready.take_messages();
        self.snapshots_sent.borrow_mut().extend(
            messages
                .iter()
                .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
                .map(|m| m.to),
        );
        outbox.send(messages);
        if !ready.snapshot().is_empty() {
            return self.round_with_snapshot(ready, outbox).await;
        }
        self.apply(&ready.take_committed_entries());
        let write = Write {
            number: ready.number(),
            entries: self.stage(ready.take_entries())?,
            hard: self.stage_hard_state(ready.hs()),
            messages: ready.take_persisted_messages(),
        };
        {
            let mut node = self.node.borrow_mut();
            node.advance_append_async(ready);
            node.advance_apply();
        }
        self.queue_write(write, outbox);
        Ok(())
    }

    /// A ready with a snapshot, handled whole: waits for the queued writes,
    /// installs the snapshot, writes the rest, and advances.
    async fn round_with_snapshot(
        self: &Rc<Self>,
        mut ready: raft::Ready,
        outbox: &Rc<dyn Outbox>,
    ) -> Result<(), String> {
        self.writes_done().await;
        if let Some(reason) = self.fenced() {
            return Err(reason);
        }
        self.install_snapshot(ready.snapshot(), ready.hs()).await?;
        self.apply(&ready.take_committed_entries());
        let write = Write {
            number: ready.number(),
            entries: self.stage(ready.take_entries())?,
            hard: self.stage_hard_state(ready.hs()),
            messages: Vec::new(),
        };
        self.write(&[write]).await?;
        outbox.send(ready.take_persisted_messages());
        let mut light = self.node.borrow_mut().advance(ready);
        outbox.send(light.take_messages());
        self.apply(&light.take_committed_entries());
        self.node.borrow_mut().advance_apply();
        Ok(())
    }

    /// Installs a leader's snapshot (this follower is behind the leader's
    /// log start): persists its base with the hard state first, then
    /// empties the sidecar and the log and restarts the log at the base's
    /// offset; `open` finishes an install a crash interrupted. Everything
    /// this replica held was at most its uncommitted tail or entries the
    /// leader's retention removed.
    async fn install_snapshot(
        &self,
        snap: &raft::eraftpb::Snapshot,
        hs: Option<&HardState>,
    ) -> Result<(), String> {
        let base = snapshot_base(snap)?;
        let voters = &snap.get_metadata().get_conf_state().voters;
        if *voters != self.mem.borrow().conf.voters {
            return Err(format!("a snapshot for voters {voters:?}"));
        }
        tracing::info!(dir = %self.dir.display(), index = base.index, term = base.term, offset = base.offset,
            "installing a snapshot: the log restarts at the leader's log start");
        let mut hard = hs.cloned().unwrap_or_else(|| self.mem.borrow().hard.clone());
        hard.commit = hard.commit.max(base.index);
        self.mem.borrow_mut().install(base);
        self.store_hard_state(&hard).await?;
        self.persisted.set((hard.term, hard.vote));
        let mut sidecar = self.sidecar.borrow_mut().take().ok_or("the sidecar is in use")?;
        let cut = sidecar.truncate_from(0).await;
        *self.sidecar.borrow_mut() = Some(sidecar);
        cut.map_err(|e| e.to_string())?;
        self.log.reset_to(base.offset).await.map_err(|e| e.to_string())?;
        self.proposed_ends.borrow_mut().clear();
        self.durable_last.set(base.index);
        self.installed_total.set(self.installed_total.get() + 1);
        (self.on_commit)(base.offset);
        Ok(())
    }

    /// Snapshots this replica installed since it opened.
    pub fn installed_total(&self) -> u64 {
        self.installed_total.get()
    }

    /// Reads from the log the entries raft-rs asked for below the window
    /// (a follower catching up from far behind) and hands each fetch back
    /// to raft-rs, which sends them at once; they are then forgotten. Done
    /// at the start of a round, outside `ready`/`advance`.
    async fn serve_fetches(&self) {
        let requests = self.mem.borrow_mut().take_fetches();
        for request in requests {
            let bytes_max = request.max_bytes.clamp(1, FETCH_BYTES_MAX as u64) as usize;
            match read_entries(&self.log, &self.mem, request.low, request.high, bytes_max).await {
                Ok(entries) => {
                    self.fetched_total
                        .set(self.fetched_total.get() + entries.len() as u64);
                    self.mem.borrow_mut().set_fetched(entries);
                    self.node.borrow_mut().on_entries_fetched(request.context);
                    self.mem.borrow_mut().set_fetched(Vec::new());
                }
                Err(FetchError::Unreadable(reason)) => {
                    // Retention ran since the round began: raft asks again
                    // and, below the new log start, sends a snapshot.
                    tracing::debug!(dir = %self.dir.display(), index = request.low, %reason,
                        "entries for a follower were just removed");
                    self.mem.borrow_mut().set_log_start(self.log.log_start_offset());
                }
                Err(FetchError::Failed(reason)) => {
                    tracing::warn!(dir = %self.dir.display(), index = request.low, %reason,
                        "reading entries for a follower failed; raft asks again");
                }
            }
        }
    }

    /// Entries sent to followers from the log, below the window.
    pub fn fetched_total(&self) -> u64 {
        self.fetched_total.get()
    }

    /// Caps the in-memory entry window (tests reach the fetch path with
    /// little data).
    pub fn set_window_bytes_max(&self, bytes: usize) {
        self.mem.borrow_mut().set_window_bytes_max(bytes);
    }

    /// A leader that stepped down (a higher term, or check-quorum found no
    /// quorum) answers its waiting producers `not_leader` at once instead
    /// of at their timeout, so they find the new leader sooner. Safe: it
    /// acknowledges nothing. An entry of theirs may still commit under the
    /// new leader; a retry then stores it twice unless it carries a
    /// message id or a producer sequence (which the new leader rebuilt).
    fn release_waiters_on_step_down(&self, node: &RawNode<ReplicaStorage>) {
        if node.raft.state == StateRole::Leader || self.waiters.borrow().is_empty() {
            return;
        }
        let leader = node.raft.leader_id;
        for (_, w) in std::mem::take(&mut *self.waiters.borrow_mut()) {
            let _ = w.reply.send(Err(ProposeError::NotLeader { leader }));
        }
    }

    /// Proposes every queued request (leader only), placing its batches.
    fn propose_queued(&self, node: &mut RawNode<ReplicaStorage>) {
        let queued = std::mem::take(&mut *self.proposals.borrow_mut());
        for p in queued {
            if node.raft.state != StateRole::Leader {
                let _ = p.reply.send(Err(ProposeError::NotLeader {
                    leader: node.raft.leader_id,
                }));
                continue;
            }
            let term = node.raft.term;
            let epoch = u32::try_from(term).unwrap_or(u32::MAX);
            let base = self.end_offset_of_last(node);
            let append_ms = now_ms().max(self.last_append_ms.get());
            let mut next = base;
            let first_index = node.raft.raft_log.last_index() + 1;
            let mut result = Ok(());
            for mut b in p.batches {
                let Ok((header, _)) = batch::peek(&b, &batch::BatchLimits::default()) else {
                    result = Err(ProposeError::Dropped("a batch lost its framing".into()));
                    break;
                };
                batch::patch(&mut b, next, epoch, append_ms);
                next += u64::from(header.record_count);
                if let Err(e) = node.step(proposal_message(node.raft.id, b.freeze())) {
                    result = Err(ProposeError::Dropped(e.to_string()));
                    break;
                }
                let index = node.raft.raft_log.last_index();
                self.proposed_ends.borrow_mut().insert(index, next);
            }
            self.last_append_ms.set(append_ms);
            match result {
                Ok(()) => {
                    let index = node.raft.raft_log.last_index();
                    self.waiters.borrow_mut().insert(
                        index,
                        Waiter {
                            term,
                            first_index,
                            base_offset: base,
                            records: next - base,
                            append_time_ms: append_ms,
                            reply: p.reply,
                        },
                    );
                }
                Err(e) => {
                    let _ = p.reply.send(Err(e));
                }
            }
        }
    }

    /// The end offset of the raft log's last entry, persisted or not: the
    /// offset the next proposed batch starts at.
    fn end_offset_of_last(&self, node: &RawNode<ReplicaStorage>) -> u64 {
        let last = node.raft.raft_log.last_index();
        let proposed = self.proposed_ends.borrow();
        let mem = self.mem.borrow();
        // Entries raft appended itself (a new leader's empty entry) have
        // no records: walk back to one whose end is known.
        for index in (0..=last).rev() {
            if let Some(&end) = proposed.get(&index) {
                return end;
            }
            if let Some(end) = mem.end_offset_of(index) {
                return end;
            }
            if index <= mem.last_index() {
                break;
            }
        }
        mem.last_record()
            .map_or(self.log.log_end_offset(), EntryRecord::end_offset)
    }

    /// Stages a ready's entries in the in-memory storage (raft-rs reads
    /// them from there once advanced): forgets a diverged tail they
    /// replace, checks each batch starts where the entry before it ends,
    /// and returns them with their entry records for the writer.
    fn stage(&self, entries: Vec<Entry>) -> Result<Vec<(EntryRecord, Bytes)>, String> {
        let Some(first) = entries.first().map(|e| e.index) else {
            return Ok(Vec::new());
        };
        let mut mem = self.mem.borrow_mut();
        let cut = mem.record(first).copied();
        if let Some(cut) = cut {
            tracing::info!(dir = %self.dir.display(), index = first, offset = cut.base_offset, "raft cuts a diverged tail");
            mem.truncate_from(first);
        }
        let mut next = match (mem.last_record(), cut) {
            (Some(last), _) => last.end_offset(),
            (None, Some(cut)) => cut.base_offset,
            (None, None) => self.log.log_end_offset(),
        };
        let mut staged = Vec::with_capacity(entries.len());
        for e in entries {
            let count = if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                let (header, _) = batch::peek(&e.data, &batch::BatchLimits::default())
                    .map_err(|err| format!("entry {} does not hold a batch: {err}", e.index))?;
                if header.base_offset != next {
                    return Err(format!(
                        "entry {} holds offset {}, the log is at {next}",
                        e.index, header.base_offset
                    ));
                }
                header.record_count
            } else {
                0
            };
            let record = EntryRecord {
                index: e.index,
                term: e.term,
                base_offset: next,
                record_count: count,
            };
            next += u64::from(count);
            mem.push(record, e.data.clone());
            staged.push((record, e.data));
        }
        let last = mem.last_index();
        self.proposed_ends.borrow_mut().retain(|&i, _| i > last);
        Ok(staged)
    }

    /// Keeps a ready's hard state in memory; returns it for the writer
    /// when term or vote changed (the commit alone rides along later).
    fn stage_hard_state(&self, hs: Option<&HardState>) -> Option<HardState> {
        let hs = hs?;
        self.mem.borrow_mut().hard = hs.clone();
        ((hs.term, hs.vote) != self.persisted.get()).then(|| hs.clone())
    }

    /// Queues a write, and starts the writer unless it runs. A ready with
    /// nothing to persist, and no write before it, sends its messages now.
    fn queue_write(self: &Rc<Self>, write: Write, outbox: &Rc<dyn Outbox>) {
        if write.entries.is_empty() && write.hard.is_none() && !self.writing.get() {
            outbox.send(write.messages);
            return;
        }
        self.writes.borrow_mut().push(write);
        if self.writing.replace(true) {
            return;
        }
        let me = self.clone();
        let outbox = outbox.clone();
        glommio::spawn_local(async move { me.write_queued(outbox).await }).detach();
    }

    /// The writer: persists everything queued, as one write, until the
    /// queue is empty; then sends the persisted messages and asks for a
    /// round. A failed write fences the group and drops the queue.
    async fn write_queued(self: Rc<Self>, outbox: Rc<dyn Outbox>) {
        loop {
            let writes = std::mem::take(&mut *self.writes.borrow_mut());
            let Some(number) = writes.last().map(|w| w.number) else {
                break;
            };
            if self.fenced().is_some() {
                continue;
            }
            if let Err(reason) = self.write(&writes).await {
                self.fence(reason);
                continue;
            }
            for w in writes {
                outbox.send(w.messages);
            }
            self.written_ready.set(Some(number));
            outbox.wake();
        }
        self.writing.set(false);
        for waiter in std::mem::take(&mut *self.drained.borrow_mut()) {
            let _ = waiter.send(());
        }
    }

    /// Waits until no write is queued or running (a snapshot, close; tests:
    /// a replica dropped as if it crashed must not write after its reopened
    /// self).
    pub async fn writes_done(&self) {
        if !self.writing.get() {
            return;
        }
        let (tx, rx) = flume::bounded(1);
        self.drained.borrow_mut().push(tx);
        let _ = rx.recv_async().await;
    }

    /// Persists consecutive writes as one: where an entry replaces one on
    /// disk, cuts the sidecar and the log there first (a replaced entry
    /// still queued is simply not written); appends the batches to the log
    /// and the records to the sidecar, both fdatasynced, in parallel; then
    /// stores the last hard state whose term or vote changed.
    async fn write(&self, writes: &[Write]) -> Result<(), String> {
        let mut cut: Option<(u64, u64)> = None;
        let mut entries: Vec<&(EntryRecord, Bytes)> = Vec::new();
        let mut hard = None;
        for w in writes {
            if let Some((first, _)) = w.entries.first() {
                let on_disk_until = cut.map_or(self.durable_last.get() + 1, |(index, _)| index);
                if first.index < on_disk_until {
                    cut = Some((first.index, first.base_offset));
                    entries.clear();
                } else {
                    entries.retain(|(r, _)| r.index < first.index);
                }
                entries.extend(&w.entries);
            }
            if w.hard.is_some() {
                hard = w.hard.as_ref();
            }
        }
        if cut.is_some() || !entries.is_empty() {
            let mut sidecar = self.sidecar.borrow_mut().take().ok_or("the sidecar is in use")?;
            let result = self.write_entries(&mut sidecar, cut, &entries).await;
            *self.sidecar.borrow_mut() = Some(sidecar);
            result?;
            let last = entries
                .last()
                .map(|(r, _)| r.index)
                .or(cut.map(|(index, _)| index - 1));
            if let Some(last) = last {
                self.durable_last.set(last);
            }
        }
        if let Some(hs) = hard {
            self.store_hard_state(hs).await?;
            self.persisted.set((hs.term, hs.vote));
        }
        Ok(())
    }

    async fn write_entries(
        &self,
        sidecar: &mut RaftIndexFile<DmaDevice>,
        cut: Option<(u64, u64)>,
        entries: &[&(EntryRecord, Bytes)],
    ) -> Result<(), String> {
        if let Some((index, offset)) = cut {
            sidecar.truncate_from(index).await.map_err(|e| e.to_string())?;
            self.log
                .truncate_suffix(offset)
                .await
                .map_err(|e| e.to_string())?;
        }
        let mut batches = Vec::new();
        for (record, data) in entries {
            sidecar.append(*record).map_err(|err| err.to_string())?;
            if record.record_count > 0 {
                batches.push(BytesMut::from(&data[..]));
            }
        }
        let log_write = async {
            if batches.is_empty() {
                return Ok(());
            }
            self.log
                .append_replicated(batches, Durability::Fsynced)
                .await
                .map(|_| ())
        };
        let (logged, indexed) = futures_lite::future::zip(log_write, sidecar.sync()).await;
        logged.map_err(|e| e.to_string())?;
        indexed.map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn store_hard_state(&self, hs: &HardState) -> Result<(), String> {
        let (voters, base) = {
            let m = self.mem.borrow();
            (m.conf.voters.clone(), m.base())
        };
        let record = HardStateRecord {
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
            voters,
            snapshot: (base.index > 0).then_some(base),
        };
        store_hard_state(&DmaDevice, &self.dir, &record)
            .await
            .map_err(|e| e.to_string())
    }

    /// Applies committed entries: the high watermark follows, and the
    /// producers waiting for them are answered.
    fn apply(&self, entries: &[Entry]) {
        let Some(last) = entries.last() else { return };
        if let Some(on_apply) = self.on_apply.borrow().as_ref() {
            for e in entries {
                if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                    on_apply(&e.data);
                }
            }
        }
        self.mem.borrow_mut().set_applied(last.index);
        let mem = self.mem.borrow();
        let Some(end) = mem.end_offset_of(last.index) else {
            return;
        };
        let mut waiters = self.waiters.borrow_mut();
        let later = waiters.split_off(&(last.index + 1));
        let done = std::mem::replace(&mut *waiters, later);
        for (index, w) in done {
            let same_term = |i: u64| mem.record(i).is_some_and(|r| r.term == w.term);
            let kept = same_term(index) && same_term(w.first_index);
            let _ = w.reply.send(if kept {
                Ok(Committed {
                    base_offset: w.base_offset,
                    records: w.records,
                    append_time_ms: w.append_time_ms,
                    index,
                })
            } else {
                Err(ProposeError::Superseded)
            });
        }
        drop(mem);
        (self.on_commit)(end);
    }

    /// Persists the hard state with the current commit and closes the
    /// sidecar (shutdown).
    pub async fn close(&self) {
        self.writes_done().await;
        let hs = self.node.borrow().raft.hard_state();
        if self.fenced().is_none() {
            if let Err(e) = self.store_hard_state(&hs).await {
                tracing::error!(dir = %self.dir.display(), error = %e, "storing the raft hard state on close");
            }
        }
        let taken = self.sidecar.borrow_mut().take();
        if let Some(sidecar) = taken {
            let _ = sidecar.close().await;
        }
    }
}

/// Starts a leadership transfer to a follower that has every entry of
/// this leader's log (none: no transfer; the election after this node
/// leaves elects one). raft-rs sends it `TimeoutNow` once caught up, and
/// it campaigns at once, without waiting out an election timeout.
fn transfer_to_caught_up(node: &mut RawNode<ReplicaStorage>) {
    if node.raft.state != StateRole::Leader {
        return;
    }
    let me = node.raft.id;
    let target = node
        .raft
        .prs()
        .iter()
        .map(|(&id, _)| id)
        .filter(|&id| id != me && caught_up(node, id))
        .min();
    if let Some(target) = target {
        tracing::info!(to = target, "raft transfers leadership (shutdown)");
        node.transfer_leader(target);
    }
}

/// Whether replica `id` has every entry of this (leader's) log.
fn caught_up(node: &RawNode<ReplicaStorage>, id: u64) -> bool {
    let last = node.raft.raft_log.last_index();
    node.raft.prs().get(id).is_some_and(|pr| pr.matched == last)
}

/// Starts a leadership transfer to replica `to` if it has every entry of
/// this leader's log (leader balancing: the preferred replica is back).
fn transfer_to_if_caught_up(node: &mut RawNode<ReplicaStorage>, to: u64) {
    if node.raft.state == StateRole::Leader && to != node.raft.id && caught_up(node, to) {
        tracing::info!(to, "raft transfers leadership to the preferred replica");
        node.transfer_leader(to);
    }
}

/// What `RawNode::propose` builds, with the batch's own `Bytes` as the
/// entry data (raft-rs 0.7's `propose` takes a `Vec<u8>`, a copy).
fn proposal_message(from: u64, data: Bytes) -> Message {
    let e = Entry {
        data,
        ..Entry::default()
    };
    let mut m = Message::default();
    m.set_msg_type(raft::eraftpb::MessageType::MsgPropose);
    m.from = from;
    m.set_entries(vec![e].into());
    m
}

/// Why entries could not be read back for a follower.
enum FetchError {
    /// The log no longer holds them (retention).
    Unreadable(String),
    Failed(String),
}

/// The data of entries `low..high` below the window, read from the log in
/// index order, about `bytes_max` of it (at least one entry), with their
/// indexes. Empty entries have no batch and take no read.
async fn read_entries(
    log: &PartitionLog,
    mem: &RefCell<RaftMemory>,
    low: u64,
    high: u64,
    bytes_max: usize,
) -> Result<Vec<(u64, Bytes)>, FetchError> {
    let records: Vec<EntryRecord> = {
        let m = mem.borrow();
        (low..high.min(m.window_start()))
            .map_while(|i| m.record(i).copied())
            .collect()
    };
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut read = std::collections::VecDeque::new();
    for r in records {
        if r.record_count == 0 {
            out.push((r.index, Bytes::new()));
            continue;
        }
        if bytes >= bytes_max {
            break;
        }
        if read.is_empty() {
            if r.base_offset < log.log_start_offset() {
                return match out.is_empty() {
                    true => Err(FetchError::Unreadable(format!(
                        "offset {} is below the log start {}",
                        r.base_offset,
                        log.log_start_offset()
                    ))),
                    false => Ok(out),
                };
            }
            let batches = log
                .read_uncommitted(r.base_offset, bytes_max - bytes)
                .await
                .map_err(|e| FetchError::Failed(format!("reading offset {}: {e}", r.base_offset)))?;
            read.extend(batches.batches);
        }
        let stored = read
            .pop_front()
            .ok_or_else(|| FetchError::Failed(format!("no batch at offset {}", r.base_offset)))?;
        let (data, _) = entry_data(stored.bytes, &r).map_err(FetchError::Failed)?;
        bytes += data.len();
        out.push((r.index, data));
    }
    Ok(out)
}

/// A stored batch as the data of entry `r`, after checking it is that
/// entry's batch; with its append time.
fn entry_data(stored: Bytes, r: &EntryRecord) -> Result<(Bytes, i64), String> {
    let header = batch::BatchHeader::parse(&stored).map_err(|e| e.to_string())?;
    if header.base_offset != r.base_offset || header.record_count != r.record_count {
        return Err(format!(
            "the batch at offset {} does not match entry {}",
            r.base_offset, r.index
        ));
    }
    Ok((stored, header.append_time_ms))
}

/// Reads the data of the most recent entries back from the log into the
/// window (after a restart). Returns the last batch's append time.
async fn refill_window(log: &PartitionLog, mem: &RefCell<RaftMemory>) -> Result<i64, String> {
    let records: Vec<EntryRecord> = {
        let m = mem.borrow();
        let last = m.last_index();
        let first = m.first_index();
        (first..=last)
            .rev()
            .filter_map(|i| m.record(i).copied())
            .collect()
    };
    let mut last_append = 0i64;
    let mut budget = super::raft_storage::WINDOW_BYTES_MAX;
    for r in records {
        if r.base_offset < log.log_start_offset() {
            break;
        }
        let data = if r.record_count == 0 {
            Bytes::new()
        } else {
            let read = log
                .read_uncommitted(r.base_offset, 1)
                .await
                .map_err(|e| format!("refilling the raft window at offset {}: {e}", r.base_offset))?;
            let Some(stored) = read.batches.into_iter().next() else {
                return Err(format!("no batch at offset {}", r.base_offset));
            };
            let (data, append_ms) = entry_data(stored.bytes, &r)?;
            last_append = last_append.max(append_ms);
            data
        };
        if data.len() > budget {
            break;
        }
        budget -= data.len();
        mem.borrow_mut().prepend_data(r.index, data);
    }
    Ok(last_append.max(now_ms()))
}
