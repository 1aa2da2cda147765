//! A small metadata file replaced whole (the topic catalogue, the security
//! file): its bytes followed by a CRC-32C of them, so a torn or damaged
//! file is refused at start rather than read as empty. Written to a
//! temporary file, fdatasynced, renamed over the old one and the
//! directory fsynced, every result checked: a store that returns `Ok` is
//! durable.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a checked file could not be read.
#[derive(Debug)]
pub enum LoadError {
    Io(std::io::Error),
    /// The bytes are not what was written (the reason says how).
    Corrupt(String),
}

/// One checked file in a directory.
pub struct CheckedFile {
    dir: PathBuf,
    name: &'static str,
}

impl CheckedFile {
    pub fn new(dir: &Path, name: &'static str) -> CheckedFile {
        CheckedFile {
            dir: dir.to_path_buf(),
            name,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(self.name)
    }

    /// The stored bytes (checksum checked and removed); `None` when the
    /// file does not exist.
    pub fn load(&self) -> Result<Option<Vec<u8>>, LoadError> {
        let mut bytes = match std::fs::read(self.path()) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LoadError::Io(e)),
        };
        let Some(split) = bytes.len().checked_sub(4) else {
            return Err(LoadError::Corrupt("shorter than its checksum".into()));
        };
        let want = u32::from_le_bytes(bytes[split..].try_into().expect("four bytes"));
        bytes.truncate(split);
        if crc32c::crc32c(&bytes) != want {
            return Err(LoadError::Corrupt("checksum mismatch".into()));
        }
        Ok(Some(bytes))
    }

    /// Replaces the file with `body` (and its checksum), durably.
    pub fn store(&self, body: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!("{}.tmp", self.name));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(body)?;
        file.write_all(&crc32c::crc32c(body).to_le_bytes())?;
        file.sync_data()?;
        drop(file);
        std::fs::rename(&tmp, self.path())?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

/// Reads an rkyv archive out of `bytes` (copied once into an aligned
/// buffer, as rkyv's validated access needs).
pub fn from_archive<T>(bytes: &[u8]) -> Result<T, String>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rkyv::rancor::Error>(&aligned).map_err(|e| e.to_string())
}
