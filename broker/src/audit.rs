//! The audit log: `<data_dir>/audit.log`, one JSON object per line.
//!
//! What is recorded: admin actions (topic create and delete; user, token
//! and ACL changes; seek, redrive and purge) and authentication failures,
//! each with the principal, the source address, the action, the resource,
//! the outcome (`ok`, `denied` or the error code) and when (ms since the
//! epoch). Authorization refusals of those admin actions are recorded too.
//! Never recorded: passwords, SCRAM proofs, token text, request payloads.
//!
//! A file of its own, not a tracing target, so it is written whatever the
//! log filter says and can be shipped or kept apart from the operational
//! log. Lines are appended with `O_APPEND` under a process-wide mutex, from
//! whichever shard saw the event; the events are rare (admin actions, and
//! failed logins, which the per-address limiter caps), so a small blocking
//! write on the executor is acceptable. A write error is logged and counted
//! in the warning log, never fatal: the broker keeps serving.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

/// The audit log file name under the data directory.
pub const AUDIT_FILE: &str = "audit.log";

/// One audited event.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent<'a> {
    pub at_ms: i64,
    /// `User:<name>` or `ANONYMOUS`.
    pub principal: &'a str,
    /// The peer's IP address.
    pub source: String,
    /// e.g. `topic.create`, `acl.add`, `group.seek`, `authenticate`.
    pub action: &'a str,
    /// e.g. `topic:orders`, `group:billing`, `user:alice`.
    pub resource: &'a str,
    /// `ok`, `denied`, or an error code name.
    pub outcome: &'a str,
    /// Extra words for humans; never a secret.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub detail: &'a str,
}

/// The append-only audit file.
pub struct Audit {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl Audit {
    /// Opens (creating) `<data_dir>/audit.log` for appending.
    pub fn open(data_dir: &Path) -> std::io::Result<Audit> {
        let path = data_dir.join(AUDIT_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(Audit {
            path,
            file: Mutex::new(Some(file)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event as a JSON line.
    pub fn record(&self, event: &AuditEvent<'_>) {
        let mut line = match serde_json::to_vec(event) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "audit event did not serialise");
                return;
            }
        };
        line.push(b'\n');
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = guard.as_mut() {
            if let Err(e) = file.write_all(&line) {
                tracing::warn!(error = %e, path = %self.path.display(), "audit log write failed");
            }
        }
    }

    /// Shorthand for the common case.
    #[allow(clippy::too_many_arguments)]
    pub fn event(
        &self,
        at_ms: i64,
        principal: &str,
        source: IpAddr,
        action: &str,
        resource: &str,
        outcome: &str,
        detail: &str,
    ) {
        self.record(&AuditEvent {
            at_ms,
            principal,
            source: source.to_string(),
            action,
            resource,
            outcome,
            detail,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events land as one JSON object per line, appended across reopenings.
    #[test]
    fn appends_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        Audit::open(dir.path())
            .unwrap()
            .event(1, "User:a", ip, "topic.create", "topic:t", "ok", "");
        Audit::open(dir.path()).unwrap().event(
            2,
            "ANONYMOUS",
            ip,
            "authenticate",
            "user:b",
            "authentication_failed",
            "x",
        );
        let text = std::fs::read_to_string(dir.path().join(AUDIT_FILE)).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["action"], "topic.create");
        assert_eq!(lines[1]["outcome"], "authentication_failed");
        assert_eq!(lines[1]["source"], "127.0.0.1");
        assert!(lines[0].get("detail").is_none());
    }
}
