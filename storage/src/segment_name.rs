//! File names inside a partition directory.
//!
//! Every segment is named by its base offset, zero-padded to 20 digits so
//! that lexical order is offset order: `00000000000000000042.log` with its
//! `.index` (sparse offset index) and `.timeindex` (time index). Files being
//! written atomically carry a further `.tmp` suffix until renamed.

/// Which file of a segment a name denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Log,
    OffsetIndex,
    TimeIndex,
    /// An unfinished atomic write; deleted on open.
    Temporary,
}

impl FileKind {
    fn extension(self) -> &'static str {
        match self {
            FileKind::Log => "log",
            FileKind::OffsetIndex => "index",
            FileKind::TimeIndex => "timeindex",
            FileKind::Temporary => "tmp",
        }
    }
}

/// Name of the small non-empty file opened first on every executor, so the
/// executor's device probe never runs on a new empty file (glommio 0.9 bug).
pub const PROBE_FILE_NAME: &str = "probe.shoal";

const OFFSET_DIGITS: usize = 20;

/// The file name of `kind` for the segment starting at `base_offset`.
pub fn file_name(base_offset: u64, kind: FileKind) -> String {
    format!("{base_offset:0OFFSET_DIGITS$}.{}", kind.extension())
}

/// The name under which `final_name` is written before its atomic rename.
pub fn temporary_name(final_name: &str) -> String {
    format!("{final_name}.tmp")
}

/// Parses a directory entry. `None` for names that are not segment files.
pub fn parse_file_name(name: &str) -> Option<(u64, FileKind)> {
    if name.ends_with(".tmp") {
        let base = name.get(..OFFSET_DIGITS)?.parse().ok()?;
        return Some((base, FileKind::Temporary));
    }
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != OFFSET_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let kind = match ext {
        "log" => FileKind::Log,
        "index" => FileKind::OffsetIndex,
        "timeindex" => FileKind::TimeIndex,
        _ => return None,
    };
    Some((stem.parse().ok()?, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names round-trip and sort in offset order.
    #[test]
    fn names_roundtrip_and_sort() {
        for kind in [FileKind::Log, FileKind::OffsetIndex, FileKind::TimeIndex] {
            for base in [0, 1, 42, u64::MAX] {
                assert_eq!(parse_file_name(&file_name(base, kind)), Some((base, kind)));
            }
        }
        assert!(file_name(9, FileKind::Log) < file_name(10, FileKind::Log));
        let tmp = temporary_name(&file_name(7, FileKind::OffsetIndex));
        assert_eq!(parse_file_name(&tmp), Some((7, FileKind::Temporary)));
        assert_eq!(parse_file_name("probe.shoal"), None);
        assert_eq!(parse_file_name("12.log"), None);
        assert_eq!(parse_file_name("0000000000000000000x.log"), None);
    }
}
