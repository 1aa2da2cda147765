//! Physical baselines, measured in the same run as the broker figures.
//!
//! A broker figure means little alone: 400 MB/s is excellent on a disk that
//! does 450 and poor on one that does 3,000. Each run therefore measures
//! what the hardware underneath can do — loopback TCP between two pinned
//! threads ([`loopback`]) and the data directory's direct-I/O write
//! bandwidth and fdatasync latency ([`disk`]) — and the report prints every
//! broker figure with its ratio to the matching baseline. Each measurement is
//! bounded in time and bytes so baselines cost a few seconds of a run.

pub mod disk;
pub mod loopback;

use serde::Serialize;

/// Both baselines of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Baselines {
    pub loopback: loopback::LoopbackBaseline,
    pub disk: disk::DiskBaseline,
}

/// A byte buffer whose start is aligned to `align` bytes (for O_DIRECT),
/// carved out of a slightly larger allocation so no unsafe code is needed.
pub(crate) struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    pub(crate) fn new(len: usize, align: usize, fill: u8) -> Self {
        let storage = vec![fill; len + align];
        let start = storage.as_ptr().align_offset(align);
        assert!(
            start < align,
            "align_offset of a u8 buffer is below the alignment"
        );
        Self { storage, start, len }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
}

/// Pins the calling thread to the `index`-th core the process may use, if
/// it exists; answers the core id actually used.
pub fn pin_to(index: usize) -> Option<usize> {
    let cores = core_affinity::get_core_ids()?;
    let core = *cores.get(index % cores.len().max(1))?;
    core_affinity::set_for_current(core).then_some(core.id)
}
