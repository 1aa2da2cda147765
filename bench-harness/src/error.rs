//! The crate's one error type.
//!
//! Variants keep their classes apart: a bad workload or flag is the user's to
//! fix and is never retried; an I/O error while measuring a baseline or
//! writing a report names what was being done; a broker/driver failure says
//! which phase of the run it stopped.

use std::path::PathBuf;

/// Everything that can stop a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A workload setting is missing, out of range or contradicts another.
    /// Terminal: the same workload will always be rejected.
    #[error("invalid workload: {0}")]
    InvalidWorkload(String),

    /// A workload file could not be parsed as TOML of the expected shape.
    #[error("cannot parse workload {path}: {message}")]
    WorkloadParse { path: String, message: String },

    /// No preset of that name ships with the harness.
    #[error("unknown preset {0:?} (known: {1})")]
    UnknownPreset(String, String),

    /// A file-system or socket operation failed; `what` says which one.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// A report file could not be produced.
    #[error("cannot write report {path}: {message}")]
    Report { path: PathBuf, message: String },

    /// The throw-away CA and broker certificate of `--compare-tls` could
    /// not be made. Terminal: nothing was measured yet.
    #[error("cannot make the run's certificates: {0}")]
    Certificates(String),

    /// The broker or the client failed during the run. Terminal for the
    /// run: figures measured against a failing broker are not reported.
    #[error("driver: {0}")]
    Driver(String),
}

impl BenchError {
    /// Wraps an I/O error with a description of the operation that failed.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        BenchError::Io {
            what: what.into(),
            source,
        }
    }
}
