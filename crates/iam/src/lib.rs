//! Identity and access for kinesis-data: the principals and access keys every request is
//! authenticated against. The edge asks this crate for the secret of an access key while it
//! verifies a SigV4 signature, and learns from it which account the caller belongs to.
//! The configured root keys live in memory; users, roles, policies, the users' access keys
//! and STS sessions live in [`store::IamStore`] (durable in the metadata store), which the
//! IAM/STS adapter (`kd-api-iam`) changes and every key lookup falls back to.

pub mod authz;
pub mod managed;
pub mod policy;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::store::IamStore;

/// Errors of the identity store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The access key id is not 16–128 characters of `[A-Z0-9]`-ish text.
    #[error("invalid access key id {0:?}")]
    InvalidAccessKeyId(String),
    /// An account id must be 12 digits.
    #[error("invalid account id {0:?}: an account id is 12 digits")]
    InvalidAccountId(String),
}

/// A long-term access key and the principal it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccessKey {
    /// The public half, as sent in the SigV4 `Credential=`.
    pub access_key_id: String,
    /// The secret half, used to recompute signatures.
    pub secret_access_key: String,
    /// The 12-digit account the key acts in.
    pub account_id: String,
}

impl AccessKey {
    /// A key after checking the shape of its id and account.
    pub fn new(access_key_id: &str, secret_access_key: &str, account_id: &str) -> Result<Self, Error> {
        if access_key_id.is_empty()
            || access_key_id.len() > 128
            || !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(Error::InvalidAccessKeyId(access_key_id.to_owned()));
        }
        if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidAccountId(account_id.to_owned()));
        }
        Ok(Self {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            account_id: account_id.to_owned(),
        })
    }
}

/// What kind of identity a principal is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A configured key: the account's root user.
    Root,
    /// An IAM user's access key.
    User {
        /// The user's name.
        user_name: String,
    },
    /// Temporary credentials from `sts:AssumeRole`.
    AssumedRole {
        /// The role's name.
        role_name: String,
        /// `RoleSessionName`.
        session_name: String,
    },
}

/// The principal a verified request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The account the request acts in.
    pub account_id: String,
    /// The access key that signed the request.
    pub access_key_id: String,
    /// `arn:aws:iam::<acct>:root`, the user's ARN, or
    /// `arn:aws:sts::<acct>:assumed-role/<role>/<session>`.
    pub arn: String,
    /// `UserId` as `GetCallerIdentity` reports it: the account id (root), `AIDA…` (user),
    /// `AROA…:<session>` (assumed role).
    pub user_id: String,
    /// Root, user or assumed role.
    pub kind: PrincipalKind,
    /// The session token a session's requests must carry (`X-Amz-Security-Token`).
    pub session_token: Option<String>,
    /// When a session's credentials expire, ms since the epoch.
    pub expiration_ms: Option<i64>,
}

impl Principal {
    /// The root principal of a configured key.
    pub fn root(account_id: &str, access_key_id: &str) -> Self {
        Self {
            account_id: account_id.to_owned(),
            access_key_id: access_key_id.to_owned(),
            arn: format!("arn:aws:iam::{account_id}:root"),
            user_id: account_id.to_owned(),
            kind: PrincipalKind::Root,
            session_token: None,
            expiration_ms: None,
        }
    }
}

/// Why a request's session credentials are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The session has expired (`ExpiredToken`).
    #[error("The security token included in the request is expired")]
    Expired,
    /// The session token is missing or is not the session's (`InvalidClientTokenId`).
    #[error("The security token included in the request is invalid.")]
    Invalid,
}

/// The key store. Cheap to read concurrently. Configured (root) keys are held here; keys of
/// IAM users and STS sessions are looked up in the [`IamStore`], if one is attached.
#[derive(Debug, Default)]
pub struct Iam {
    keys: RwLock<HashMap<String, AccessKey>>,
    store: Option<Arc<IamStore>>,
}

impl Iam {
    /// A store holding the given keys.
    pub fn new(keys: impl IntoIterator<Item = AccessKey>) -> Self {
        let map = keys.into_iter().map(|k| (k.access_key_id.clone(), k)).collect();
        Self {
            keys: RwLock::new(map),
            store: None,
        }
    }

    /// The given root keys, plus every user key and session of `store`.
    pub fn with_store(keys: impl IntoIterator<Item = AccessKey>, store: Arc<IamStore>) -> Self {
        let mut iam = Self::new(keys);
        iam.store = Some(store);
        iam
    }

    /// The IAM store, if attached.
    pub fn store(&self) -> Option<&Arc<IamStore>> {
        self.store.as_ref()
    }

    /// The configured key with this id, if known (user keys and sessions are not
    /// [`AccessKey`]s; see [`Iam::principal`]).
    pub fn access_key(&self, access_key_id: &str) -> Option<AccessKey> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(access_key_id)
            .cloned()
    }

    /// The secret for an access key id (what a SigV4 verifier needs): a configured key,
    /// an active user key, or a session's (even an expired one; see [`Iam::check_session`]).
    pub fn secret_for(&self, access_key_id: &str) -> Option<String> {
        if let Some(k) = self.access_key(access_key_id) {
            return Some(k.secret_access_key);
        }
        self.store.as_ref()?.secret_for(access_key_id)
    }

    /// The principal behind an access key.
    pub fn principal(&self, access_key_id: &str) -> Option<Principal> {
        if let Some(k) = self.access_key(access_key_id) {
            return Some(Principal::root(&k.account_id, &k.access_key_id));
        }
        self.store.as_ref()?.principal(access_key_id)
    }

    /// Checks the session side of a verified request: a session's requests must carry its
    /// token and arrive before it expires (by the store's clock). Other principals pass.
    pub fn check_session(&self, principal: &Principal, session_token: Option<&str>) -> Result<(), TokenError> {
        let Some(expected) = &principal.session_token else {
            return Ok(());
        };
        if session_token != Some(expected.as_str()) {
            return Err(TokenError::Invalid);
        }
        if let (Some(exp), Some(store)) = (principal.expiration_ms, &self.store)
            && store.now_ms() >= exp
        {
            return Err(TokenError::Expired);
        }
        Ok(())
    }

    /// The identity policies of `principal` (none for the root or without a store).
    /// The store's generation (0 without a store): changes whenever an entity changes.
    pub fn generation(&self) -> u64 {
        self.store.as_ref().map_or(0, |s| s.generation())
    }

    pub fn identity_policies(&self, principal: &Principal) -> Vec<policy::PolicyDocument> {
        match &self.store {
            Some(s) => s.identity_policies(principal),
            None => Vec::new(),
        }
    }

    /// Adds or replaces a key.
    pub fn insert(&self, key: AccessKey) {
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.access_key_id.clone(), key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_found() {
        assert!(AccessKey::new("te st", "x", "000000000000").is_err());
        assert!(AccessKey::new("test", "x", "12").is_err());
        let iam = Iam::new([AccessKey::new("test", "secret", "000000000000").expect("valid key")]);
        assert_eq!(iam.secret_for("test").as_deref(), Some("secret"));
        assert_eq!(
            iam.principal("test").map(|p| p.account_id).as_deref(),
            Some("000000000000")
        );
        assert!(iam.secret_for("other").is_none());
    }
}
