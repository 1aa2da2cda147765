//! A heap buffer with a chosen alignment, for O_DIRECT I/O.
//!
//! O_DIRECT needs the memory address, the length and the file offset aligned to
//! the file system's DIO alignment; `Vec<u8>` promises none of that. The buffer
//! owns its allocation and frees it on drop; callers that hand its pointer to
//! the kernel must keep it alive until the I/O completes.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use crate::error::TuneError;

/// An owned, zero-initialised, aligned byte buffer.
pub struct AlignedBuffer {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl AlignedBuffer {
    /// Allocates `len` zeroed bytes aligned to `align` (a power of two).
    pub fn new(len: usize, align: usize) -> Result<AlignedBuffer, TuneError> {
        let layout = Layout::from_size_align(len.max(1), align)
            .map_err(|e| TuneError::Limits(format!("buffer of {len} bytes aligned to {align}: {e}")))?;
        // SAFETY: the layout has a non-zero size (len.max(1)).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout);
        };
        Ok(AlignedBuffer { ptr, layout })
    }

    pub fn len(&self) -> usize {
        self.layout.size()
    }

    pub fn is_empty(&self) -> bool {
        self.layout.size() == 0
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is a live allocation of layout.size() initialised bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        // SAFETY: ptr was returned by alloc_zeroed with exactly this layout and is freed once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

// SAFETY: the buffer is plain owned bytes with no thread affinity.
unsafe impl Send for AlignedBuffer {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The address honours the alignment and the bytes start zeroed and are writable.
    #[test]
    fn is_aligned_and_writable() {
        let mut b = AlignedBuffer::new(8192, 4096).unwrap();
        assert_eq!(b.as_ptr() as usize % 4096, 0);
        assert!(b.as_slice().iter().all(|&x| x == 0));
        b.as_mut_slice()[8191] = 7;
        assert_eq!(b.as_slice()[8191], 7);
        assert!(
            AlignedBuffer::new(10, 3).is_err(),
            "alignment must be a power of two"
        );
    }
}
