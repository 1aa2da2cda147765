//! Hostile compressed batch bodies cost at most their declared size, and a
//! declared size over the reader's cap costs nothing: measured with a global
//! allocator that records the largest single allocation on this thread.
//!
//! The cap (`BatchLimits::body_uncompressed_max`) is the bound by design: a
//! body that declares a size under the cap gets a buffer of that size, just
//! as a real decompression bomb of that size would.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use shoal_protocol::batch::{self, BatchBuilder, BatchLimits, Compression, NewRecord, BATCH_HEADER_LEN};

struct PeakAlloc;

thread_local! {
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; the only
// addition is a const-initialised thread-local counter, which allocates
// nothing and has no destructor.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = PEAK.try_with(|p| p.set(p.get().max(layout.size())));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = PEAK.try_with(|p| p.set(p.get().max(new_size)));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// Largest single allocation `f` made on this thread.
fn peak_of(f: impl FnOnce()) -> usize {
    PEAK.with(|p| p.set(0));
    f();
    PEAK.with(|p| p.get())
}

/// A valid batch of `compression` with its body replaced by `body`, lengths
/// and CRC fixed so only the body checks can refuse it.
fn with_body(compression: Compression, body: &[u8]) -> Vec<u8> {
    let mut b = BatchBuilder::new().compression(compression);
    b.push(NewRecord {
        value: Some(b"v".to_vec()),
        ..NewRecord::default()
    });
    let built = b.finish().unwrap();
    let len = batch::padded_len(BATCH_HEADER_LEN + body.len());
    let mut out = vec![0u8; len];
    out[..BATCH_HEADER_LEN].copy_from_slice(&built[..BATCH_HEADER_LEN]);
    out[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    out[36..40].copy_from_slice(&(body.len() as u32).to_le_bytes());
    out[BATCH_HEADER_LEN..BATCH_HEADER_LEN + body.len()].copy_from_slice(body);
    let crc = batch::compute_crc(&out);
    out[24..28].copy_from_slice(&crc.to_le_bytes());
    out
}

/// A single-segment zstd frame claiming `content_size`, one raw block of
/// `data`.
fn zstd_frame_claiming(content_size: u64, data: &[u8]) -> Vec<u8> {
    let mut f = 0xFD2F_B528u32.to_le_bytes().to_vec();
    f.push(0b1110_0000);
    f.extend_from_slice(&content_size.to_le_bytes());
    f.extend_from_slice(&(((data.len() as u32) << 3) | 1).to_le_bytes()[..3]);
    f.extend_from_slice(data);
    f
}

/// Over-the-cap declarations (4 GiB, cap + 1) and a zstd frame claiming
/// 1 TiB are refused with no allocation anywhere near their claims; for
/// both compressed codecs.
#[test]
fn hostile_sizes_refused_before_allocating() {
    let limits = BatchLimits {
        body_uncompressed_max: 8 << 20,
        ..BatchLimits::default()
    };
    let frame = zstd::bulk::compress(&[7u8; 1000], 3).unwrap();
    let cases: Vec<(&str, Compression, Vec<u8>)> = vec![
        (
            "zstd declares 4 GiB",
            Compression::Zstd,
            [&u32::MAX.to_le_bytes()[..], &frame].concat(),
        ),
        (
            "zstd declares cap + 1",
            Compression::Zstd,
            [&((8u32 << 20) + 1).to_le_bytes()[..], &frame].concat(),
        ),
        (
            "lz4 declares 4 GiB",
            Compression::Lz4,
            [&u32::MAX.to_le_bytes()[..], &[0x10, 0x41][..]].concat(),
        ),
        (
            "zstd frame claims 1 TiB",
            Compression::Zstd,
            [&64u32.to_le_bytes()[..], &zstd_frame_claiming(1 << 40, b"abc")].concat(),
        ),
    ];
    for (name, codec, body) in cases {
        let bytes = with_body(codec, &body);
        let mut result = None;
        let peak = peak_of(|| result = Some(batch::validate(&bytes, &limits)));
        let err = result.unwrap().expect_err(name);
        println!("{name}: {err}; largest allocation {peak} B");
        assert!(peak < 1 << 20, "{name}: allocated {peak} B");
    }
}

/// A declaration under the cap costs exactly that much and no more: the
/// cap, not the body, bounds a reader's memory.
#[test]
fn declared_size_under_cap_bounds_the_allocation() {
    let limits = BatchLimits {
        body_uncompressed_max: 8 << 20,
        ..BatchLimits::default()
    };
    let declared = 4u32 << 20;
    let body = [&declared.to_le_bytes()[..], &zstd_frame_claiming(1 << 40, b"abc")].concat();
    let bytes = with_body(Compression::Zstd, &body);
    let mut result = None;
    let peak = peak_of(|| result = Some(batch::validate(&bytes, &limits)));
    assert!(result.unwrap().is_err());
    assert!(peak >= declared as usize, "the declared buffer was allocated");
    assert!(
        peak < declared as usize + (1 << 20),
        "nothing beyond it: {peak} B"
    );
}
