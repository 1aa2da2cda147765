//! Users, tokens and ACLs: the client calls behind `shoal user`, `shoal
//! token` and `shoal acl`. A new password is turned into a SCRAM credential
//! here, so it never leaves the client.

use crate::error::{check, ProtocolError};
use crate::messages::security::{
    AclEntry, ScramCredential, SecurityAdminRequest, SecurityAdminResponse, SecurityOp, TokenInfo,
};
use crate::scram::{ITERATIONS_DEFAULT, SALT_BYTES};

use super::Client;

impl Client {
    /// One security administration call on the shared port.
    pub fn security_admin(&self, op: SecurityOp) -> Result<SecurityAdminResponse, ProtocolError> {
        let reply = self.call_shared(&SecurityAdminRequest { op })?;
        check(reply.error, &reply.message)?;
        Ok(reply)
    }

    /// Creates a user (`create_only`) or sets a user's password.
    pub fn upsert_user(&self, user: &str, password: &str, create_only: bool) -> Result<(), ProtocolError> {
        let credential = new_credential(password)?;
        self.security_admin(SecurityOp::UpsertUser {
            user: user.to_string(),
            credential,
            create_only,
        })?;
        Ok(())
    }

    pub fn delete_user(&self, user: &str) -> Result<(), ProtocolError> {
        self.security_admin(SecurityOp::DeleteUser {
            user: user.to_string(),
        })?;
        Ok(())
    }

    pub fn list_users(&self) -> Result<Vec<String>, ProtocolError> {
        Ok(self.security_admin(SecurityOp::ListUsers)?.users)
    }

    /// A new bearer token for `user` (shown once) and its id.
    pub fn create_token(&self, user: &str) -> Result<(String, TokenInfo), ProtocolError> {
        let reply = self.security_admin(SecurityOp::CreateToken {
            user: user.to_string(),
        })?;
        let info = reply
            .tokens
            .into_iter()
            .next()
            .ok_or_else(|| ProtocolError::Closed("the broker returned no token info".into()))?;
        Ok((reply.token, info))
    }

    pub fn revoke_token(&self, id: &str) -> Result<(), ProtocolError> {
        self.security_admin(SecurityOp::RevokeToken { id: id.to_string() })?;
        Ok(())
    }

    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>, ProtocolError> {
        Ok(self.security_admin(SecurityOp::ListTokens)?.tokens)
    }

    pub fn add_acl(&self, entry: AclEntry) -> Result<(), ProtocolError> {
        self.security_admin(SecurityOp::AddAcl(entry))?;
        Ok(())
    }

    pub fn remove_acl(&self, entry: AclEntry) -> Result<(), ProtocolError> {
        self.security_admin(SecurityOp::RemoveAcl(entry))?;
        Ok(())
    }

    pub fn list_acls(&self) -> Result<Vec<AclEntry>, ProtocolError> {
        Ok(self.security_admin(SecurityOp::ListAcls)?.acls)
    }
}

/// A SCRAM credential for `password` with a fresh random salt.
pub fn new_credential(password: &str) -> Result<ScramCredential, ProtocolError> {
    let mut salt = [0u8; SALT_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| ProtocolError::InvalidArgument("no system randomness for the salt".into()))?;
    ScramCredential::derive(password, &salt, ITERATIONS_DEFAULT)
        .map_err(|e| ProtocolError::InvalidArgument(e.to_string()))
}
