//! Users, bearer tokens and ACLs, and their durable file
//! (`<data_dir>/security.meta`).
//!
//! Nothing secret is stored in clear: a user is its SCRAM credential (salt,
//! iterations, `StoredKey`, `ServerKey`; see `shoal_protocol::scram`), a
//! token is the SHA-256 of its text. The file is a [`CheckedFile`] like the
//! topic catalogue (written atomically and durably; a change is
//! acknowledged only after that) holding the rkyv archive of
//! [`SecurityState`], so a torn or corrupt file is refused at start rather
//! than read as "no users" (which would lock every client out, or with
//! authentication off hide the damage).
//!
//! A later cluster replicates this state through its metadata log; the
//! state type is the unit it would replicate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use shoal_protocol::messages::security::{AclEntry, ScramCredential, TokenInfo};

use super::checked_file::{from_archive, CheckedFile, LoadError};

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
    file: CheckedFile,
}

impl SecurityStore {
    pub fn new(data_dir: &Path) -> SecurityStore {
        SecurityStore {
            file: CheckedFile::new(data_dir, SECURITY_FILE),
        }
    }

    /// Loads the state; an absent file is an empty state.
    pub fn load(&self) -> Result<SecurityState, SecurityStoreError> {
        let corrupt = |reason| SecurityStoreError::Corrupt {
            path: self.file.path(),
            reason,
        };
        match self.file.load() {
            Ok(Some(bytes)) => from_archive::<SecurityState>(&bytes).map_err(corrupt),
            Ok(None) => Ok(SecurityState::default()),
            Err(LoadError::Io(e)) => Err(e.into()),
            Err(LoadError::Corrupt(reason)) => Err(corrupt(reason)),
        }
    }

    /// Replaces the file atomically and durably.
    pub fn store(&self, state: &SecurityState) -> Result<(), SecurityStoreError> {
        let archive = rkyv::to_bytes::<rkyv::rancor::Error>(state).expect("the security state archives");
        Ok(self.file.store(&archive)?)
    }
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
