//! Ctrl-C during a benchmark: stop at the next I/O boundary and clean up.
//!
//! The default SIGINT/SIGTERM action kills the process before the bench's
//! temporary directory is removed. With [`install`] the signal only sets a
//! flag; the benchmark loops poll [`requested`], drain what is in flight, and
//! return [`crate::TuneError::Interrupted`], so the directory is dropped and
//! deleted on the way out.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to the flag for the rest of the process.
pub fn install() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, handler) };
    }
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
