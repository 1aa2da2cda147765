//! Users, bearer tokens and ACLs, and their durable file
//! (`<data_dir>/security.meta`).
//!
//! Nothing secret is stored in clear: a user is its SCRAM credential (salt,
//! iterations, `StoredKey`, `ServerKey`; see `shoal_protocol::scram`), a
//! token is the SHA-256 of its text. The file is written like the topic
//! catalogue: temporary file, fdatasync, rename over the old one, directory
//! fsync, every result checked; a change is acknowledged only after that.
//! Its bytes are the rkyv archive of [`SecurityState`] followed by a
//! CRC-32C of the archive, so a torn or corrupt file is refused at start
//! rather than read as "no users" (which would lock every client out, or
//! with authentication off hide the damage).
//!
//! A later cluster replicates this state through its metadata log; the
//! state type is the unit it would replicate.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use shoal_protocol::messages::security::{AclEntry, ScramCredential, TokenInfo};

const SECURITY_FILE: &str = "security.meta";
/// Users, tokens and ACL entries are each capped (a security file is read
/// whole at start and copied on every change).
pub const USERS_MAX: usize = 10_000;
pub const TOKENS_MAX: usize = 10_000;
pub const ACLS_MAX: usize = 100_000;

/// Everything the broker knows about principals.
#[derive(Debug, Clone, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SecurityState {
    pub users: BTreeMap<String, ScramCredential>,
    /// Tokens by the lowercase hex SHA-256 of their text.
    pub tokens: BTreeMap<String, TokenInfo>,
    pub acls: BTreeSet<AclEntry>,
}

/// Why the security file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SecurityStoreError {
    #[error("security file i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("security file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// The durable security file.
pub struct SecurityStore {
    dir: PathBuf,
}

impl SecurityStore {
    pub fn new(data_dir: &Path) -> SecurityStore {
        SecurityStore {
            dir: data_dir.to_path_buf(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(SECURITY_FILE)
    }

    /// Loads the state; an absent file is an empty state.
    pub fn load(&self) -> Result<SecurityState, SecurityStoreError> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SecurityState::default()),
            Err(e) => return Err(e.into()),
        };
        decode(&bytes).map_err(|reason| SecurityStoreError::Corrupt { path, reason })
    }

    /// Replaces the file atomically and durably.
    pub fn store(&self, state: &SecurityState) -> Result<(), SecurityStoreError> {
        let bytes = encode(state);
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!("{SECURITY_FILE}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_data()?;
        drop(file);
        std::fs::rename(&tmp, self.path())?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

fn encode(state: &SecurityState) -> Vec<u8> {
    let archive = rkyv::to_bytes::<rkyv::rancor::Error>(state).expect("the security state archives");
    let mut out = archive.to_vec();
    out.extend_from_slice(&crc32c::crc32c(&archive).to_le_bytes());
    out
}

fn decode(bytes: &[u8]) -> Result<SecurityState, String> {
    let Some(split) = bytes.len().checked_sub(4) else {
        return Err("shorter than its checksum".into());
    };
    let (archive, crc) = bytes.split_at(split);
    let want = u32::from_le_bytes(crc.try_into().expect("four bytes"));
    if crc32c::crc32c(archive) != want {
        return Err("checksum mismatch".into());
    }
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(archive.len());
    aligned.extend_from_slice(archive);
    rkyv::from_bytes::<SecurityState, rkyv::rancor::Error>(&aligned).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::messages::security::{Operation, PatternKind, ResourceKind};

    /// The state round-trips through the file; a flipped byte or a torn
    /// file is reported as corrupt, an absent file is empty.
    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = SecurityStore::new(dir.path());
        assert_eq!(store.load().unwrap(), SecurityState::default());
        let mut state = SecurityState::default();
        state.users.insert(
            "alice".into(),
            ScramCredential::derive("pw", &[3; 16], 4096).unwrap(),
        );
        state.tokens.insert(
            "ab".repeat(32),
            TokenInfo {
                id: "abababababababab".into(),
                user: "alice".into(),
                created_at_ms: 7,
            },
        );
        state.acls.insert(AclEntry {
            principal: "User:alice".into(),
            kind: ResourceKind::Topic,
            pattern_kind: PatternKind::Prefix,
            pattern: "orders".into(),
            operation: Operation::Produce,
        });
        store.store(&state).unwrap();
        assert_eq!(store.load().unwrap(), state);
        let path = dir.path().join(SECURITY_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(store.load(), Err(SecurityStoreError::Corrupt { .. })));
        std::fs::write(&path, &bytes[..3]).unwrap();
        assert!(matches!(store.load(), Err(SecurityStoreError::Corrupt { .. })));
    }
}
