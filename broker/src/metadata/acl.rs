//! Who may do what: principals, resources and the pure authorization
//! decision over a set of ACL entries.
//!
//! The rules, in order:
//! 1. Authentication off: everyone may do everything (today's behaviour
//!    on a loopback broker).
//! 2. A super user (`security.super_users`) may do everything.
//! 3. An entry granting `admin` on the cluster allows everything.
//! 4. Otherwise an entry must grant the operation on the resource: same
//!    kind, its pattern matching the name (literal: equal, or `*`; prefix:
//!    the name starts with it), its principal the caller's or `User:*`.
//!    `describe` is implied by any other grant on the same resource, as in
//!    Kafka.
//! 5. Nothing else is allowed: deny by default. An anonymous caller (no
//!    authentication yet) is allowed nothing.
//!
//! The decision takes the entries and the request and returns a bool; no
//! I/O, no clock, tested below.

use std::collections::BTreeSet;

use shoal_protocol::messages::security::{AclEntry, Operation, PatternKind, ResourceKind};

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// Not authenticated (yet).
    Anonymous,
    /// An authenticated user: SCRAM, a bearer token or a client certificate.
    User(String),
}

impl Principal {
    /// `User:<name>`, or `ANONYMOUS`, as ACL entries and the audit log spell it.
    pub fn name(&self) -> String {
        match self {
            Principal::Anonymous => "ANONYMOUS".to_string(),
            Principal::User(u) => format!("User:{u}"),
        }
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// The resource a request touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    Topic(&'a str),
    Group(&'a str),
    Cluster,
}

impl Resource<'_> {
    pub fn kind(&self) -> ResourceKind {
        match self {
            Resource::Topic(_) => ResourceKind::Topic,
            Resource::Group(_) => ResourceKind::Group,
            Resource::Cluster => ResourceKind::Cluster,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Resource::Topic(n) | Resource::Group(n) => n,
            Resource::Cluster => "*",
        }
    }
}

impl std::fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind().name(), self.name())
    }
}

/// The inputs of a decision besides the request.
pub struct Policy<'a> {
    pub authentication: bool,
    pub super_users: &'a [String],
    pub acls: &'a BTreeSet<AclEntry>,
}

impl Policy<'_> {
    /// Whether `who` may do `op` on `resource`.
    pub fn allows(&self, who: &Principal, resource: Resource<'_>, op: Operation) -> bool {
        if !self.authentication {
            return true;
        }
        let Principal::User(user) = who else {
            return false;
        };
        if self.super_users.iter().any(|s| s == user) {
            return true;
        }
        let name = who.name();
        self.acls
            .iter()
            .filter(|e| e.principal == name || e.principal == "User:*")
            .any(|e| grants(e, resource, op))
    }
}

/// Whether one entry grants `op` on `resource`.
fn grants(entry: &AclEntry, resource: Resource<'_>, op: Operation) -> bool {
    if entry.kind == ResourceKind::Cluster && entry.operation == Operation::Admin {
        return true;
    }
    if entry.kind != resource.kind() {
        return false;
    }
    let op_ok = entry.operation == op || (op == Operation::Describe && entry.operation != Operation::Admin);
    op_ok && matches(entry, resource.name())
}

fn matches(entry: &AclEntry, name: &str) -> bool {
    match entry.pattern_kind {
        PatternKind::Literal => entry.pattern == "*" || entry.pattern == name,
        PatternKind::Prefix => name.starts_with(&entry.pattern),
    }
}

/// Checks an entry's shape before it is stored.
pub fn validate_entry(entry: &AclEntry) -> Result<(), String> {
    let Some(user) = entry.principal.strip_prefix("User:") else {
        return Err(format!(
            "principal {:?} must be User:<name> or User:*",
            entry.principal
        ));
    };
    if user.is_empty() || user.len() > shoal_protocol::scram::USER_NAME_BYTES_MAX {
        return Err("the principal's user name must be 1 to 128 bytes".into());
    }
    if entry.pattern.is_empty() && entry.kind != ResourceKind::Cluster {
        return Err("the pattern must not be empty (use * for every name)".into());
    }
    let ops: &[Operation] = match entry.kind {
        ResourceKind::Topic => &[
            Operation::Produce,
            Operation::Consume,
            Operation::Describe,
            Operation::Alter,
            Operation::Delete,
        ],
        ResourceKind::Group => &[Operation::Consume, Operation::Describe, Operation::Alter],
        ResourceKind::Cluster => &[Operation::Admin],
    };
    if !ops.contains(&entry.operation) {
        let names: Vec<&str> = ops.iter().map(|o| o.name()).collect();
        return Err(format!(
            "{} is not an operation on a {} (one of {})",
            entry.operation.name(),
            entry.kind.name(),
            names.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(principal: &str, kind: ResourceKind, pk: PatternKind, pattern: &str, op: Operation) -> AclEntry {
        AclEntry {
            principal: principal.into(),
            kind,
            pattern_kind: pk,
            pattern: pattern.into(),
            operation: op,
        }
    }

    fn policy<'a>(acls: &'a BTreeSet<AclEntry>, super_users: &'a [String]) -> Policy<'a> {
        Policy {
            authentication: true,
            super_users,
            acls,
        }
    }

    fn alice() -> Principal {
        Principal::User("alice".into())
    }

    /// Deny by default; literal, wildcard and prefix grants; describe implied.
    #[test]
    fn decisions() {
        let mut acls = BTreeSet::new();
        let supers = vec!["root".to_string()];
        assert!(!policy(&acls, &supers).allows(&alice(), Resource::Topic("orders"), Operation::Produce));
        assert!(policy(&acls, &supers).allows(
            &Principal::User("root".into()),
            Resource::Cluster,
            Operation::Admin
        ));
        assert!(!policy(&acls, &supers).allows(
            &Principal::Anonymous,
            Resource::Topic("orders"),
            Operation::Describe
        ));
        acls.insert(entry(
            "User:alice",
            ResourceKind::Topic,
            PatternKind::Literal,
            "orders",
            Operation::Produce,
        ));
        acls.insert(entry(
            "User:alice",
            ResourceKind::Group,
            PatternKind::Prefix,
            "billing-",
            Operation::Consume,
        ));
        let p = policy(&acls, &supers);
        assert!(p.allows(&alice(), Resource::Topic("orders"), Operation::Produce));
        assert!(p.allows(&alice(), Resource::Topic("orders"), Operation::Describe));
        assert!(!p.allows(&alice(), Resource::Topic("orders"), Operation::Consume));
        assert!(!p.allows(&alice(), Resource::Topic("orders2"), Operation::Produce));
        assert!(p.allows(&alice(), Resource::Group("billing-eu"), Operation::Consume));
        assert!(!p.allows(&alice(), Resource::Group("billing-eu"), Operation::Alter));
        assert!(!p.allows(&alice(), Resource::Group("ops"), Operation::Consume));
        assert!(!p.allows(
            &Principal::User("bob".into()),
            Resource::Topic("orders"),
            Operation::Produce
        ));
        acls.insert(entry(
            "User:*",
            ResourceKind::Topic,
            PatternKind::Literal,
            "*",
            Operation::Describe,
        ));
        acls.insert(entry(
            "User:bob",
            ResourceKind::Cluster,
            PatternKind::Literal,
            "*",
            Operation::Admin,
        ));
        let p = policy(&acls, &supers);
        assert!(p.allows(
            &Principal::User("carol".into()),
            Resource::Topic("x"),
            Operation::Describe
        ));
        assert!(!p.allows(
            &Principal::User("carol".into()),
            Resource::Topic("x"),
            Operation::Produce
        ));
        assert!(p.allows(
            &Principal::User("bob".into()),
            Resource::Group("any"),
            Operation::Alter
        ));
        let off = Policy {
            authentication: false,
            super_users: &[],
            acls: &BTreeSet::new(),
        };
        assert!(off.allows(&Principal::Anonymous, Resource::Cluster, Operation::Admin));
    }

    /// Entries are checked for shape: principal form and operations per kind.
    #[test]
    fn entry_validation() {
        let ok = entry(
            "User:a",
            ResourceKind::Group,
            PatternKind::Literal,
            "g",
            Operation::Alter,
        );
        assert!(validate_entry(&ok).is_ok());
        let bad_op = entry(
            "User:a",
            ResourceKind::Group,
            PatternKind::Literal,
            "g",
            Operation::Produce,
        );
        assert!(validate_entry(&bad_op).unwrap_err().contains("not an operation"));
        let bad_principal = entry(
            "alice",
            ResourceKind::Topic,
            PatternKind::Literal,
            "t",
            Operation::Produce,
        );
        assert!(validate_entry(&bad_principal).is_err());
        let empty = entry(
            "User:a",
            ResourceKind::Topic,
            PatternKind::Prefix,
            "",
            Operation::Produce,
        );
        assert!(validate_entry(&empty).is_err());
    }
}
