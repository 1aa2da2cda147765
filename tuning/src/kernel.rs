//! Kernel release, parsed from `/proc/sys/kernel/osrelease`.

use serde::{Deserialize, Serialize};

use crate::error::TuneError;

/// The running kernel's release string and its numeric version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelVersion {
    pub release: String,
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

/// Oldest kernel glommio 0.9 (the broker's runtime) runs on.
pub const KERNEL_MIN: (u32, u32) = (5, 8);

impl KernelVersion {
    /// Parses `6.18.44-fc-v657` or `5.15.0-91-generic`; a missing patch level is 0.
    pub fn parse(osrelease: &str) -> Result<KernelVersion, TuneError> {
        let release = osrelease.trim().to_string();
        let numeric: String = release
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = numeric
            .split('.')
            .filter(|p| !p.is_empty())
            .map(str::parse::<u32>);
        let mut next = |name: &str| -> Result<Option<u32>, TuneError> {
            parts
                .next()
                .transpose()
                .map_err(|e| TuneError::parse("kernel release", format!("{name}: {e}")))
        };
        let major = next("major")?.ok_or_else(|| TuneError::parse("kernel release", release.clone()))?;
        let minor = next("minor")?.ok_or_else(|| TuneError::parse("kernel release", release.clone()))?;
        let patch = next("patch")?.unwrap_or(0);
        Ok(KernelVersion {
            release,
            major,
            minor,
            patch,
        })
    }

    /// Whether this kernel is at least `major.minor`.
    pub fn at_least(&self, (major, minor): (u32, u32)) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distribution suffixes are kept in the release and ignored in the numbers.
    #[test]
    fn parses_common_releases() {
        let k = KernelVersion::parse("6.18.44-fc-v657\n").unwrap();
        assert_eq!((k.major, k.minor, k.patch), (6, 18, 44));
        assert_eq!(k.release, "6.18.44-fc-v657");
        let k = KernelVersion::parse("5.15.0-91-generic").unwrap();
        assert_eq!((k.major, k.minor, k.patch), (5, 15, 0));
        assert!(k.at_least(KERNEL_MIN));
        let k = KernelVersion::parse("4.19").unwrap();
        assert_eq!(k.patch, 0);
        assert!(!k.at_least(KERNEL_MIN));
        assert!(KernelVersion::parse("garbage").is_err());
    }
}
