//! Identity and access for kinesis-data: the principals and access keys every request is
//! authenticated against. The edge asks this crate for the secret of an access key while it
//! verifies a SigV4 signature, and learns from it which account the caller belongs to.
//! Roles and policies (the IAM issue) will live here too; for now every known key may do
//! everything in its account.

use std::collections::HashMap;
use std::sync::RwLock;

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

/// The principal a verified request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The account the request acts in.
    pub account_id: String,
    /// The access key that signed the request.
    pub access_key_id: String,
}

/// The key store. Cheap to read concurrently; written only by configuration (and later by IAM).
#[derive(Debug, Default)]
pub struct Iam {
    keys: RwLock<HashMap<String, AccessKey>>,
}

impl Iam {
    /// A store holding the given keys.
    pub fn new(keys: impl IntoIterator<Item = AccessKey>) -> Self {
        let map = keys.into_iter().map(|k| (k.access_key_id.clone(), k)).collect();
        Self { keys: RwLock::new(map) }
    }

    /// The key with this id, if known.
    pub fn access_key(&self, access_key_id: &str) -> Option<AccessKey> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(access_key_id)
            .cloned()
    }

    /// The secret for an access key id (what a SigV4 verifier needs).
    pub fn secret_for(&self, access_key_id: &str) -> Option<String> {
        self.access_key(access_key_id).map(|k| k.secret_access_key)
    }

    /// The principal behind an access key.
    pub fn principal(&self, access_key_id: &str) -> Option<Principal> {
        self.access_key(access_key_id).map(|k| Principal {
            account_id: k.account_id,
            access_key_id: k.access_key_id,
        })
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
