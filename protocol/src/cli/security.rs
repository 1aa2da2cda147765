//! `shoal user`, `shoal token` and `shoal acl`: users (SCRAM-SHA-256
//! credentials derived here, so a password never reaches the broker),
//! HTTP bearer tokens and ACL entries. Every command needs cluster `admin`
//! on a broker with authentication on.
//!
//! ```text
//! shoal user create alice            # the password from SHOAL_NEW_PASSWORD or one line of stdin
//! shoal user passwd alice | delete alice | list
//! shoal token create alice           # prints the token once
//! shoal token list | revoke ID
//! shoal acl add User:alice produce --topic orders
//! shoal acl add User:alice consume --group billing- --prefix
//! shoal acl add User:ops admin --cluster
//! shoal acl remove User:alice produce --topic orders
//! shoal acl list
//! ```

use std::io::BufRead;

use clap::{Args, Subcommand};
use serde_json::json;
use shoal_protocol::client::Client;
use shoal_protocol::messages::security::{AclEntry, Operation, PatternKind, ResourceKind};
use shoal_protocol::ProtocolError;

use super::{to_json, Output};

#[derive(Subcommand)]
pub enum UserCmd {
    /// Create a user (the password from --new-password, SHOAL_NEW_PASSWORD or stdin).
    Create(PasswordArgs),
    /// Set a user's password.
    Passwd(PasswordArgs),
    /// Delete a user and revoke its tokens.
    Delete {
        #[arg(value_name = "USER")]
        name: String,
    },
    /// List the users.
    List,
}

#[derive(Args)]
pub struct PasswordArgs {
    /// The user's name (not `--user`, which is who runs the command).
    #[arg(value_name = "USER")]
    name: String,
    /// The new password; prefer SHOAL_NEW_PASSWORD or stdin, which `ps` does not show.
    #[arg(long, env = "SHOAL_NEW_PASSWORD", hide_env_values = true)]
    new_password: Option<String>,
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create an HTTP bearer token for a user (printed once; only its hash is stored).
    Create {
        #[arg(value_name = "USER")]
        name: String,
    },
    /// Revoke a token by the id `token list` shows.
    Revoke { id: String },
    /// List the tokens (ids and users, never the tokens).
    List,
}

#[derive(Subcommand)]
pub enum AclCmd {
    /// Grant an operation on a resource.
    Add(AclArgs),
    /// Remove a grant (the same words as it was added with).
    Remove(AclArgs),
    /// List every grant.
    List,
}

#[derive(Args)]
pub struct AclArgs {
    /// `User:<name>`, or `User:*` for every authenticated user.
    principal: String,
    /// produce, consume, describe, alter, delete (topics); consume, describe, alter (groups); admin (cluster).
    operation: String,
    /// A topic name (or prefix with --prefix; `*` for every topic).
    #[arg(long, conflicts_with_all = ["group", "cluster"])]
    topic: Option<String>,
    /// A group name (or prefix with --prefix; `*` for every group).
    #[arg(long, conflicts_with = "cluster")]
    group: Option<String>,
    /// The cluster (for `admin`).
    #[arg(long)]
    cluster: bool,
    /// Match every name starting with the pattern.
    #[arg(long)]
    prefix: bool,
}

impl AclArgs {
    fn entry(self) -> Result<AclEntry, ProtocolError> {
        let invalid = |m: String| ProtocolError::InvalidArgument(m);
        let operation = Operation::parse(&self.operation).ok_or_else(|| {
            invalid(format!(
                "unknown operation {:?}: one of produce, consume, describe, alter, delete, admin",
                self.operation
            ))
        })?;
        let (kind, pattern) = match (self.topic, self.group, self.cluster) {
            (Some(t), None, false) => (ResourceKind::Topic, t),
            (None, Some(g), false) => (ResourceKind::Group, g),
            (None, None, true) => (ResourceKind::Cluster, "*".to_string()),
            _ => {
                return Err(invalid(
                    "name one resource: --topic NAME, --group NAME or --cluster".into(),
                ))
            }
        };
        let pattern_kind = if self.prefix {
            PatternKind::Prefix
        } else {
            PatternKind::Literal
        };
        Ok(AclEntry {
            principal: self.principal,
            kind,
            pattern_kind,
            pattern,
            operation,
        })
    }
}

/// The new password: the flag (or SHOAL_NEW_PASSWORD), else one line of stdin.
fn new_password(given: Option<String>) -> Result<String, ProtocolError> {
    let password = match given {
        Some(p) => p,
        None => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).map_err(|e| {
                ProtocolError::InvalidArgument(format!("cannot read the password from stdin: {e}"))
            })?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
    };
    if password.is_empty() {
        return Err(ProtocolError::InvalidArgument(
            "the password is empty: give it on stdin or in SHOAL_NEW_PASSWORD".into(),
        ));
    }
    Ok(password)
}

pub fn user(client: &Client, cmd: UserCmd, out: &Output) -> Result<(), ProtocolError> {
    match cmd {
        UserCmd::Create(args) => {
            client.upsert_user(&args.name, &new_password(args.new_password)?, true)?;
            out.emit(json!({"created": args.name}), || {
                format!("created user {}", args.name)
            });
        }
        UserCmd::Passwd(args) => {
            client.upsert_user(&args.name, &new_password(args.new_password)?, false)?;
            out.emit(json!({"updated": args.name}), || {
                format!("set the password of {}", args.name)
            });
        }
        UserCmd::Delete { name } => {
            client.delete_user(&name)?;
            out.emit(json!({"deleted": name}), || {
                format!("deleted user {name} and its tokens")
            });
        }
        UserCmd::List => {
            let users = client.list_users()?;
            out.emit(json!({"users": users}), || {
                if users.is_empty() {
                    "no users".to_string()
                } else {
                    users.join("\n")
                }
            });
        }
    }
    Ok(())
}

pub fn token(client: &Client, cmd: TokenCmd, out: &Output) -> Result<(), ProtocolError> {
    match cmd {
        TokenCmd::Create { name } => {
            let (token, info) = client.create_token(&name)?;
            out.emit(json!({"token": token, "id": info.id, "user": info.user}), || {
                format!(
                    "{token}\n(id {}; shown once: store it now; revoke with shoal token revoke {})",
                    info.id, info.id
                )
            });
        }
        TokenCmd::Revoke { id } => {
            client.revoke_token(&id)?;
            out.emit(json!({"revoked": id}), || format!("revoked token {id}"));
        }
        TokenCmd::List => {
            let tokens = client.list_tokens()?;
            out.emit(json!({"tokens": to_json(&tokens)}), || {
                let mut table = super::text::Table::new(&["ID", "USER", "CREATED"]);
                for t in &tokens {
                    table.row([
                        t.id.clone(),
                        t.user.clone(),
                        super::text::time_ms(t.created_at_ms),
                    ]);
                }
                table.render()
            });
        }
    }
    Ok(())
}

pub fn acl(client: &Client, cmd: AclCmd, out: &Output) -> Result<(), ProtocolError> {
    match cmd {
        AclCmd::Add(args) => {
            let entry = args.entry()?;
            client.add_acl(entry.clone())?;
            out.emit(json!({"added": to_json(&entry)}), || {
                format!("added {}", entry.describe())
            });
        }
        AclCmd::Remove(args) => {
            let entry = args.entry()?;
            client.remove_acl(entry.clone())?;
            out.emit(json!({"removed": to_json(&entry)}), || {
                format!("removed {}", entry.describe())
            });
        }
        AclCmd::List => {
            let acls = client.list_acls()?;
            out.emit(json!({"acls": to_json(&acls)}), || {
                if acls.is_empty() {
                    "no ACL entries".to_string()
                } else {
                    acls.iter().map(AclEntry::describe).collect::<Vec<_>>().join("\n")
                }
            });
        }
    }
    Ok(())
}
