//! What the simulation knows about the log, independently of it.
//!
//! Every batch the test appends carries a unique tag in each record's value
//! (`"<tag>:<record>:"` then filler), so any batch or record read back can
//! be traced to what was appended, whatever the log did to it (a torn tail
//! cut, a compaction rewrite). The model keeps:
//! - the source of every tag: its records and its bytes before the log
//!   patched offsets and append time;
//! - where each batch is placed (base offset) and, once acknowledged or
//!   verified, its exact bytes;
//! - `durable`: batches below it must survive any power cut (an `Fsynced`
//!   acknowledgement, or a flush, roll or close that returned Ok, covered
//!   them);
//! - `settled`: below it a flush, roll or close returned Ok, so the log
//!   must report damage there instead of cutting it (see the crate header's
//!   recovery rules).
//!
//! Checks return `Err(reason)` instead of panicking, so one run can try
//! thousands of seeds and report every failing one.

use bytes::BytesMut;
use shoal_protocol::batch::{self, BatchBuilder, BatchLimits, BatchRecords, NewRecord};
use shoal_storage::StoredBatch;
use std::collections::{BTreeMap, HashMap};

/// Distinct keys, few so that compaction has records to drop.
pub const KEYS: u64 = 5;

/// One appended batch as the test built it.
pub struct Source {
    /// (key, value) of each record.
    pub records: Vec<KeyValue>,
    /// The batch as built, before the log patched it.
    pub original: Vec<u8>,
}

/// A batch the model believes is in the log at its base offset.
#[derive(Debug, Clone)]
pub struct Placed {
    pub tag: u64,
    pub next: u64,
    /// The bytes a read must return: known once acknowledged (the ack
    /// names the offsets and append time) or verified after a cut.
    pub exact: Option<Vec<u8>>,
    /// Disk clock when the acknowledgement was observed.
    pub acked_at: Option<u64>,
}

#[derive(Default)]
pub struct Model {
    sources: HashMap<u64, Source>,
    pub batches: BTreeMap<u64, Placed>,
    /// Base offset of each placed tag.
    bases: HashMap<u64, u64>,
    pub start: u64,
    pub durable: u64,
    pub settled: u64,
    /// Below this the log may have compacted (checked record by record).
    pub compacted_below: u64,
    pub compacted: bool,
    /// A `truncate_suffix` to this offset was called and has not returned:
    /// batches from it on (even ones acknowledged meanwhile, which it may
    /// cut too) may or may not be there.
    pub truncating: Option<u64>,
    /// `apply_retention` was called and has not returned: a prefix of whole
    /// segments may be gone.
    pub retaining: bool,
}

/// Builds the batch for `tag` with `records` records of about `value_len`
/// bytes each.
pub fn build(tag: u64, records: usize, value_len: usize) -> (BytesMut, Source) {
    let mut builder = BatchBuilder::new();
    let mut kept = Vec::new();
    for r in 0..records.max(1) {
        let key = format!("k{}", (tag * 3 + r as u64) % KEYS).into_bytes();
        let mut value = format!("{tag}:{r}:").into_bytes();
        let fill = (tag as usize).wrapping_mul(131).wrapping_add(r * 17);
        value.extend((0..value_len).map(|i| (fill + i) as u8));
        builder.push(NewRecord {
            timestamp_ms: 1_700_000_000_000 + tag as i64,
            key: Some(key.clone()),
            value: Some(value.clone()),
            ..Default::default()
        });
        kept.push((key, value));
    }
    let bytes = builder.finish().expect("encode");
    let source = Source {
        records: kept,
        original: bytes.to_vec(),
    };
    (BytesMut::from(&bytes[..]), source)
}

/// (tag, record index) from a record value built by [`build`].
fn identify(value: &[u8]) -> Option<(u64, usize)> {
    let mut parts = value.splitn(3, |&b| b == b':');
    let tag = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let r = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    parts.next()?;
    Some((tag, r))
}

/// One record as (key, value).
type KeyValue = (Vec<u8>, Vec<u8>);

/// The base offset and records of a stored batch, after validating it.
fn records_of(bytes: &[u8]) -> Result<(u64, Vec<KeyValue>), String> {
    let limits = BatchLimits::default();
    let header = batch::validate(bytes, &limits).map_err(|e| format!("invalid batch: {e}"))?;
    let records = BatchRecords::open(bytes, &header, &limits).map_err(|e| e.to_string())?;
    let archived = records.records().map_err(|e| e.to_string())?;
    let out = archived
        .iter()
        .map(|r| {
            let key = r.key.as_ref().map(|k| k.to_vec()).unwrap_or_default();
            let value = r.value.as_ref().map(|v| v.to_vec()).unwrap_or_default();
            (key, value)
        })
        .collect();
    Ok((header.base_offset, out))
}

impl Model {
    pub fn new(compacted: bool) -> Self {
        Model {
            compacted,
            ..Model::default()
        }
    }

    pub fn add_source(&mut self, tag: u64, source: Source) {
        self.sources.insert(tag, source);
    }

    /// An acknowledgement: the batch `tag` is at `[base, next)` with the
    /// given append time; `fsynced` if the ack said so.
    pub fn ack(
        &mut self,
        tag: u64,
        base: u64,
        next: u64,
        append_ms: i64,
        fsynced: bool,
        now: u64,
    ) -> Result<(), String> {
        let source = self.sources.get(&tag).ok_or("ack for an unknown tag")?;
        let mut exact = source.original.clone();
        batch::patch(&mut exact, base, 0, append_ms);
        if let Some(other) = self.batches.get(&base) {
            if other.tag != tag {
                return Err(format!(
                    "offset {base} acknowledged for tag {tag}, but it holds tag {}",
                    other.tag
                ));
            }
        }
        let (records, placed_end) = (source.records.len() as u64, next);
        if base + records != placed_end {
            return Err(format!("ack [{base}, {next}) for a batch of {records} records"));
        }
        self.batches.insert(
            base,
            Placed {
                tag,
                next,
                exact: Some(exact),
                acked_at: Some(now),
            },
        );
        self.bases.insert(tag, base);
        if fsynced {
            self.durable = self.durable.max(next);
        }
        Ok(())
    }

    /// A flush, roll or close returned Ok: everything below `end` (the log
    /// end when it was called) is durable and settled.
    pub fn settle(&mut self, end: u64) {
        self.durable = self.durable.max(end);
        self.settled = self.settled.max(end);
    }

    /// `truncate_suffix` returned `new_end`.
    pub fn truncate(&mut self, new_end: u64) {
        self.truncating = None;
        self.batches.retain(|_, p| p.next <= new_end);
        self.bases.retain(|_, base| *base < new_end);
        self.durable = self.durable.min(new_end);
        self.settled = self.settled.min(new_end);
        self.compacted_below = self.compacted_below.min(new_end);
    }

    /// Retention moved the log start to `start`.
    pub fn retain_from(&mut self, start: u64) {
        self.retaining = false;
        self.start = self.start.max(start);
        self.batches.retain(|_, p| p.next > start);
    }

    fn in_compacted_region(&self, base: u64) -> bool {
        self.compacted && base < self.compacted_below
    }

    /// Checks one batch a read returned: genuine, at its offset, with the
    /// bytes the model expects.
    pub fn check_batch(&self, stored: &StoredBatch) -> Result<(), String> {
        let bytes = &stored.bytes[..];
        let (base, records) =
            records_of(bytes).map_err(|e| format!("batch at {}: {e}", stored.base_offset))?;
        if base != stored.base_offset || base + records.len() as u64 != stored.next_offset {
            return Err(format!(
                "batch at {} claims [{base}, {})",
                stored.base_offset, stored.next_offset
            ));
        }
        if self.in_compacted_region(base) {
            return self.check_records(base, &records);
        }
        let (tag, _) = records
            .first()
            .and_then(|(_, v)| identify(v))
            .ok_or_else(|| format!("batch at {base} is not one the test appended"))?;
        let source = self
            .sources
            .get(&tag)
            .ok_or(format!("batch at {base}: unknown tag {tag}"))?;
        match self.batches.get(&base) {
            Some(placed) if placed.tag != tag => Err(format!(
                "offset {base} holds tag {tag}, the model has tag {}",
                placed.tag
            )),
            Some(Placed {
                exact: Some(exact), ..
            }) if exact[..] != *bytes => Err(format!(
                "batch at {base} (tag {tag}) differs from what was acknowledged"
            )),
            Some(_) => same_content(bytes, &source.original).map_err(|e| format!("batch at {base}: {e}")),
            None if self.bases.get(&tag).is_some_and(|&b| b != base) => Err(format!(
                "tag {tag} read at {base}, placed at {}",
                self.bases[&tag]
            )),
            None => same_content(bytes, &source.original).map_err(|e| format!("batch at {base}: {e}")),
        }
    }

    /// Records of a possibly compacted batch: each one is a record the test
    /// appended, at the offset it was given.
    fn check_records(&self, base: u64, records: &[KeyValue]) -> Result<(), String> {
        for (i, (key, value)) in records.iter().enumerate() {
            let offset = base + i as u64;
            let (tag, r) = identify(value).ok_or(format!("record at {offset} is not the test's"))?;
            let placed = self.bases.get(&tag).map(|b| b + r as u64);
            let source = self
                .sources
                .get(&tag)
                .ok_or(format!("record at {offset}: unknown tag"))?;
            if placed != Some(offset) {
                return Err(format!("record {tag}:{r} at {offset}, placed at {placed:?}"));
            }
            if source.records.get(r) != Some(&(key.clone(), value.clone())) {
                return Err(format!("record at {offset} altered"));
            }
        }
        Ok(())
    }

    /// After a reopen: the whole log as read must hold every durable batch
    /// intact and nothing that is not genuine. The batches found become the
    /// model (unacknowledged survivors were checked against their source).
    pub fn reconcile(&mut self, read: &[StoredBatch], start: u64, end: u64) -> Result<(), String> {
        for stored in read {
            self.check_batch(stored)?;
        }
        self.check_layout(read, start, end)?;
        self.check_durable_present(read, start, end)?;
        self.adopt(read, start);
        Ok(())
    }

    /// Offsets increase (and are contiguous unless compacted) from the log
    /// start to the log end.
    fn check_layout(&self, read: &[StoredBatch], start: u64, end: u64) -> Result<(), String> {
        if start < self.start {
            return Err(format!("log start went back from {} to {start}", self.start));
        }
        if start > self.start && !self.retaining {
            return Err(format!(
                "log start moved from {} to {start} with no retention",
                self.start
            ));
        }
        let mut expected = start;
        for stored in read {
            let ok = if self.in_compacted_region(stored.base_offset) {
                stored.base_offset >= expected
            } else {
                stored.base_offset == expected || (self.compacted && stored.base_offset >= expected)
            };
            if !ok {
                return Err(format!(
                    "batch at {} where {expected} was expected",
                    stored.base_offset
                ));
            }
            expected = stored.next_offset;
        }
        if expected != end && !(self.compacted && expected <= end) {
            return Err(format!("batches end at {expected}, the log at {end}"));
        }
        Ok(())
    }

    /// Every batch below `durable` is there (for a compacted region: the
    /// newest durable record of each key, or a newer one of that key).
    fn check_durable_present(&self, read: &[StoredBatch], start: u64, end: u64) -> Result<(), String> {
        let durable = self.durable_end();
        if end < durable {
            return Err(format!("log ends at {end}, below the durable end {durable}"));
        }
        let bases: std::collections::BTreeSet<u64> = read.iter().map(|b| b.base_offset).collect();
        for (&base, placed) in self.batches.range(start..) {
            if placed.next > durable || self.in_compacted_region(base) {
                continue;
            }
            if !bases.contains(&base) {
                return Err(format!("durable batch at {base} (tag {}) is missing", placed.tag));
            }
        }
        if self.compacted {
            self.check_latest_per_key(read, start)?;
        }
        Ok(())
    }

    /// Compaction may drop a record only for a newer one of the same key.
    fn check_latest_per_key(&self, read: &[StoredBatch], start: u64) -> Result<(), String> {
        let mut present: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut offsets = std::collections::BTreeSet::new();
        for stored in read {
            let (base, records) = records_of(&stored.bytes)?;
            for (i, (key, _)) in records.into_iter().enumerate() {
                let offset = base + i as u64;
                offsets.insert(offset);
                let newest = present.entry(key).or_insert(offset);
                *newest = (*newest).max(offset);
            }
        }
        let mut latest: HashMap<Vec<u8>, u64> = HashMap::new();
        for (&base, placed) in self.batches.range(start..) {
            if placed.next > self.durable_end() {
                continue;
            }
            for (r, (key, _)) in self.sources[&placed.tag].records.iter().enumerate() {
                let newest = latest.entry(key.clone()).or_insert(base + r as u64);
                *newest = (*newest).max(base + r as u64);
            }
        }
        for (key, offset) in latest {
            let kept = offsets.contains(&offset) || present.get(&key).is_some_and(|&p| p > offset);
            if !kept {
                return Err(format!(
                    "the newest durable record of key {} (offset {offset}) is gone",
                    String::from_utf8_lossy(&key)
                ));
            }
        }
        Ok(())
    }

    /// What must survive: `durable`, but not beyond a truncation that may
    /// have happened (which takes the whole batch holding its offset).
    pub fn durable_end(&self) -> u64 {
        let Some(target) = self.truncating else {
            return self.durable;
        };
        let cut = match self.batches.range(..=target).next_back() {
            Some((&base, placed)) if placed.next > target => base,
            _ => target,
        };
        self.durable.min(cut)
    }

    /// The read log becomes the model: survivors keep (or gain) their exact
    /// bytes, lost unacknowledged batches are forgotten. In a compacted
    /// region batches may have been rewritten, so the original placements
    /// stay (records are identified one by one) and survivors the model did
    /// not know are placed from their records.
    fn adopt(&mut self, read: &[StoredBatch], start: u64) {
        self.start = start;
        self.retaining = false;
        if self.truncating.take().is_some() {
            let end = read.last().map_or(start, |b| b.next_offset);
            self.durable = self.durable.min(end);
            self.settled = self.settled.min(end);
        }
        let mut batches: BTreeMap<u64, Placed> = self
            .batches
            .range(..self.compacted_below)
            .filter(|(&base, p)| self.in_compacted_region(base) && p.next > start)
            .map(|(&base, p)| (base, p.clone()))
            .collect();
        for stored in read {
            let (_, records) = records_of(&stored.bytes).expect("checked");
            if self.in_compacted_region(stored.base_offset) {
                for (i, (_, value)) in records.iter().enumerate() {
                    let (tag, r) = identify(value).expect("checked");
                    let base = stored.base_offset + i as u64 - r as u64;
                    let next = base + self.sources[&tag].records.len() as u64;
                    batches.entry(base).or_insert(Placed {
                        tag,
                        next,
                        exact: None,
                        acked_at: None,
                    });
                }
                continue;
            }
            let (tag, _) = identify(&records[0].1).expect("checked");
            let acked_at = self.batches.get(&stored.base_offset).and_then(|p| p.acked_at);
            batches.insert(
                stored.base_offset,
                Placed {
                    tag,
                    next: stored.next_offset,
                    exact: Some(stored.bytes.to_vec()),
                    acked_at,
                },
            );
        }
        self.batches = batches;
        self.refresh_bases();
    }

    fn refresh_bases(&mut self) {
        self.bases = self.batches.iter().map(|(&b, p)| (p.tag, b)).collect();
    }
}

/// A batch equals its source except where the log patches it: the base
/// offset (checked by the caller) and the append time. The leader epoch
/// must be the configured 0.
fn same_content(bytes: &[u8], original: &[u8]) -> Result<(), String> {
    if bytes.len() != original.len() {
        return Err(format!("{} bytes, appended {}", bytes.len(), original.len()));
    }
    if bytes[8..16] != original[8..16] || bytes[24..] != original[24..] {
        return Err("content differs from what was appended".into());
    }
    Ok(())
}
