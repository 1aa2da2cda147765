//! The one error type of shoal-tune.
//!
//! Variants keep their classes apart: a host file that cannot be read is not a
//! host file whose text is not understood, and neither is an I/O failure of the
//! benchmark itself. Every message names the file, operation or limit at fault
//! so an operator can act on it without reading the code.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while probing, benchmarking or recommending.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// A /proc or /sys file (or a config file) could not be read. Terminal for
    /// the fact it carries; the probe reports it rather than guessing a value.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },

    /// A host file had text this tool does not understand (a kernel format change
    /// or a damaged fixture). Terminal: retrying reads the same text.
    #[error("cannot parse {what}: {detail}")]
    Parse { what: &'static str, detail: String },

    /// A file-system operation of the probe or benchmark failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    /// io_uring setup, registration or submission failed.
    #[error("io_uring {op}: {source}")]
    Uring { op: &'static str, source: io::Error },

    /// A benchmark write or sync completed with an error or wrote fewer bytes
    /// than asked. Never retried: a device that fails a write is reported.
    #[error("{op} at offset {offset} failed: {detail}")]
    Completion {
        op: &'static str,
        offset: u64,
        detail: String,
    },

    /// The benchmark limits cannot hold the planned cases, or the directory
    /// lacks the space they need.
    #[error("benchmark limits: {0}")]
    Limits(String),

    /// The operator interrupted the benchmark; its files were removed.
    #[error("interrupted; temporary benchmark files removed")]
    Interrupted,

    /// A broker config file that does not parse or breaks a broker rule.
    #[error("config: {0}")]
    Config(String),

    /// A saved probe or bench report (JSON) that does not parse.
    #[error("report {path}: {detail}")]
    Report { path: PathBuf, detail: String },
}

impl TuneError {
    /// A parse error for `what` with a detail message.
    pub fn parse(what: &'static str, detail: impl Into<String>) -> TuneError {
        TuneError::Parse {
            what,
            detail: detail.into(),
        }
    }
}
