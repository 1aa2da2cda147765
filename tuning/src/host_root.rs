//! The only place the probe reads /proc and /sys.
//!
//! Every host fact is read through a [`HostRoot`]: `/` on a live host, a
//! directory under `tuning/testdata/` in tests. Parsers elsewhere take the text
//! this returns, so the whole probe runs against a fixture tree unchanged.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::TuneError;

/// A root directory under which absolute host paths (`/proc/...`, `/sys/...`) are read.
#[derive(Debug, Clone)]
pub struct HostRoot {
    root: PathBuf,
}

impl HostRoot {
    /// The running host.
    pub fn live() -> HostRoot {
        HostRoot {
            root: PathBuf::from("/"),
        }
    }

    /// A fixture tree laid out like `/` (with `proc/` and `sys/` inside).
    pub fn at(root: impl Into<PathBuf>) -> HostRoot {
        HostRoot { root: root.into() }
    }

    /// Maps an absolute host path to the path under this root.
    pub fn path(&self, host_path: &str) -> PathBuf {
        self.root.join(host_path.trim_start_matches('/'))
    }

    /// Whole text of a host file.
    pub fn read(&self, host_path: &str) -> Result<String, TuneError> {
        let path = self.path(host_path);
        fs::read_to_string(&path).map_err(|source| TuneError::Read { path, source })
    }

    /// Text of a host file that may legitimately be absent (older kernels,
    /// other drivers); absence and read errors both give `None`.
    pub fn read_optional(&self, host_path: &str) -> Option<String> {
        fs::read_to_string(self.path(host_path)).ok()
    }

    /// Whether a host path exists.
    pub fn exists(&self, host_path: &str) -> bool {
        self.path(host_path).exists()
    }

    /// Sorted entry names of a host directory; empty when it does not exist.
    pub fn list_dir(&self, host_path: &str) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.path(host_path)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The root this reads under.
    pub fn root(&self) -> &Path {
        &self.root
    }
}
