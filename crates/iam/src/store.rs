//! `IamStore`: the IAM entities of every account (users, roles, inline and customer managed
//! policies, attachments, access keys) and the STS sessions, durable in the server's
//! [`MetaStore`].
//!
//! # On disk
//!
//! One JSON document per entity, each carrying `"version": 1` (the format version; a newer
//! version is refused at open):
//!
//! | table | key | document |
//! |---|---|---|
//! | `iam_users` | `<account>/<lowercased user name>` | [`User`] with its inline policies and attached policy ARNs |
//! | `iam_roles` | `<account>/<lowercased role name>` | [`Role`] with its trust document, inline policies and attached ARNs |
//! | `iam_policies` | `<account>/<lowercased policy name>` | [`CustomerPolicy`] with every version |
//! | `iam_access_keys` | access key id | [`AccessKeyRecord`] of a user |
//! | `iam_sessions` | access key id (`ASIA…`) | [`Session`] from `AssumeRole` |
//!
//! IAM names are unique per account regardless of case, hence the lowercased keys. Every
//! change is one durable `MetaStore::write` transaction, made while holding the store's
//! writer lock and only then applied to the in-memory copy that every read (including the
//! SigV4 key lookups of every request) uses; a reader never waits for a disk sync.
//! Sessions that expired more than a day ago are dropped at open.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use kd_storage::{Clock, MetaOp, MetaStore};
use serde::{Deserialize, Serialize};

use crate::managed;
use crate::policy::{DocKind, PolicyDocument};
use crate::{Principal, PrincipalKind};

const T_USERS: &str = "iam_users";
const T_ROLES: &str = "iam_roles";
const T_POLICIES: &str = "iam_policies";
const T_KEYS: &str = "iam_access_keys";
const T_SESSIONS: &str = "iam_sessions";
/// The format version of every document this module writes.
pub const FORMAT_VERSION: u32 = 1;

/// Most versions a customer managed policy keeps.
pub const MAX_POLICY_VERSIONS: usize = 5;
/// Most access keys of one user.
pub const MAX_ACCESS_KEYS: usize = 2;
/// Most managed policies attached to one role or user.
pub const MAX_ATTACHED: usize = 10;
/// The partition's AWS managed policy ARN prefix.
pub const AWS_POLICY_ARN_PREFIX: &str = "arn:aws:iam::aws:policy/";

/// Errors of IAM and STS operations, each with AWS's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// `EntityAlreadyExists` (409).
    #[error("{0}")]
    EntityAlreadyExists(String),
    /// `NoSuchEntity` (404).
    #[error("{0}")]
    NoSuchEntity(String),
    /// `MalformedPolicyDocument` (400).
    #[error("{0}")]
    MalformedPolicyDocument(String),
    /// `DeleteConflict` (409).
    #[error("{0}")]
    DeleteConflict(String),
    /// `LimitExceeded` (409).
    #[error("{0}")]
    LimitExceeded(String),
    /// `ValidationError` (400).
    #[error("{0}")]
    ValidationError(String),
    /// `InvalidInput` (400).
    #[error("{0}")]
    InvalidInput(String),
    /// `AccessDenied` (403): STS refuses to assume a role that does not exist.
    #[error("{0}")]
    AccessDenied(String),
    /// The metadata store failed; nothing was changed.
    #[error("IAM storage failed: {0}")]
    Storage(String),
}

/// A tag on a user, role or policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// An IAM user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Format version.
    pub version: u32,
    /// Owning account.
    pub account_id: String,
    /// `UserName` as created.
    pub name: String,
    /// `UserId` (`AIDA…`).
    pub id: String,
    /// `Path` (`/` or `/a/b/`).
    pub path: String,
    /// `arn:aws:iam::<acct>:user<path><name>`.
    pub arn: String,
    /// Creation time, ms since the epoch.
    pub create_date_ms: i64,
    /// Inline policies: name → document as given.
    pub inline_policies: BTreeMap<String, String>,
    /// Attached managed policy ARNs, in attachment order.
    pub attached_policies: Vec<String>,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// An IAM role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Format version.
    pub version: u32,
    /// Owning account.
    pub account_id: String,
    /// `RoleName` as created.
    pub name: String,
    /// `RoleId` (`AROA…`).
    pub id: String,
    /// `Path`.
    pub path: String,
    /// `arn:aws:iam::<acct>:role<path><name>`.
    pub arn: String,
    /// Creation time, ms since the epoch.
    pub create_date_ms: i64,
    /// The trust policy as given.
    pub assume_role_policy_document: String,
    /// `Description`.
    pub description: Option<String>,
    /// `MaxSessionDuration` in seconds (3600 by default).
    pub max_session_duration: i32,
    /// Inline policies: name → document as given.
    pub inline_policies: BTreeMap<String, String>,
    /// Attached managed policy ARNs, in attachment order.
    pub attached_policies: Vec<String>,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// One version of a customer managed policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    /// `v1`, `v2`, …
    pub version_id: String,
    /// The document as given.
    pub document: String,
    /// Creation time, ms since the epoch.
    pub create_date_ms: i64,
}

/// A customer managed policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerPolicy {
    /// Format version.
    pub version: u32,
    /// Owning account.
    pub account_id: String,
    /// `PolicyName`.
    pub name: String,
    /// `PolicyId` (`ANPA…`).
    pub id: String,
    /// `Path`.
    pub path: String,
    /// `arn:aws:iam::<acct>:policy<path><name>`.
    pub arn: String,
    /// `Description`.
    pub description: Option<String>,
    /// Creation time, ms since the epoch.
    pub create_date_ms: i64,
    /// Last change of the default version, ms since the epoch.
    pub update_date_ms: i64,
    /// `DefaultVersionId`.
    pub default_version_id: String,
    /// Every version still kept, oldest first.
    pub versions: Vec<PolicyVersion>,
    /// The number the next version gets.
    pub next_version: u32,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// A user's long-term access key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    /// Format version.
    pub version: u32,
    /// Owning account.
    pub account_id: String,
    /// The user (name as created).
    pub user_name: String,
    /// `AKIA…`, 20 characters.
    pub access_key_id: String,
    /// 40 characters.
    pub secret_access_key: String,
    /// Whether the key is `Active` (else `Inactive`).
    pub active: bool,
    /// Creation time, ms since the epoch.
    pub create_date_ms: i64,
}

/// Temporary credentials of an assumed role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Format version.
    pub version: u32,
    /// The role's account.
    pub account_id: String,
    /// `ASIA…`, 20 characters.
    pub access_key_id: String,
    /// 40 characters.
    pub secret_access_key: String,
    /// Must come with every request as `X-Amz-Security-Token`.
    pub session_token: String,
    /// The role's name.
    pub role_name: String,
    /// The role's id (`AROA…`).
    pub role_id: String,
    /// The role's ARN.
    pub role_arn: String,
    /// `RoleSessionName`.
    pub session_name: String,
    /// `arn:aws:sts::<acct>:assumed-role/<role>/<session>`.
    pub arn: String,
    /// Creation time, ms since the epoch.
    pub create_date_ms: i64,
    /// Expiry, ms since the epoch.
    pub expiration_ms: i64,
}

impl Session {
    /// New temporary credentials of `role` for `session_name`, valid `duration_ms` from `now`.
    fn mint(role: &Role, account: &str, session_name: &str, now: i64, duration_ms: i64) -> Session {
        Session {
            version: FORMAT_VERSION,
            account_id: account.to_owned(),
            access_key_id: format!("ASIA{}", random_text(16, ID_ALPHABET)),
            secret_access_key: random_text(40, SECRET_ALPHABET),
            session_token: format!("IQoJb3JpZ2luX2Vj{}", random_text(300, SECRET_ALPHABET)),
            role_name: role.name.clone(),
            role_id: role.id.clone(),
            role_arn: role.arn.clone(),
            session_name: session_name.to_owned(),
            arn: format!("arn:aws:sts::{account}:assumed-role/{}/{session_name}", role.name),
            create_date_ms: now,
            expiration_ms: now + duration_ms,
        }
    }

    /// `AssumedRoleId`: `<role id>:<session name>`.
    pub fn assumed_role_id(&self) -> String {
        format!("{}:{}", self.role_id, self.session_name)
    }
}

/// A managed policy as the read operations show it: customer managed or AWS managed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    /// `PolicyName`.
    pub name: String,
    /// `PolicyId`.
    pub id: String,
    /// `Arn`.
    pub arn: String,
    /// `Path`.
    pub path: String,
    /// `Description`.
    pub description: Option<String>,
    /// `DefaultVersionId`.
    pub default_version_id: String,
    /// `AttachmentCount` in the caller's account.
    pub attachment_count: usize,
    /// `CreateDate`, ms.
    pub create_date_ms: i64,
    /// `UpdateDate`, ms.
    pub update_date_ms: i64,
    /// Whether AWS owns the policy.
    pub aws_managed: bool,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// One policy version as the read operations show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersionInfo {
    /// `VersionId`.
    pub version_id: String,
    /// The document as given.
    pub document: String,
    /// `IsDefaultVersion`.
    pub is_default: bool,
    /// `CreateDate`, ms.
    pub create_date_ms: i64,
}

/// `Scope` of `ListPolicies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyScope {
    /// Both.
    All,
    /// AWS managed only.
    Aws,
    /// Customer managed only.
    Local,
}

/// Input of [`IamStore::create_role`].
#[derive(Debug, Clone, Default)]
pub struct NewRole {
    /// `RoleName`.
    pub name: String,
    /// `Path` (default `/`).
    pub path: Option<String>,
    /// `AssumeRolePolicyDocument`.
    pub assume_role_policy_document: String,
    /// `Description`.
    pub description: Option<String>,
    /// `MaxSessionDuration` (default 3600).
    pub max_session_duration: Option<i32>,
    /// `Tags`.
    pub tags: Vec<Tag>,
}

/// Input of [`IamStore::create_policy`].
#[derive(Debug, Clone, Default)]
pub struct NewPolicy {
    /// `PolicyName`.
    pub name: String,
    /// `Path` (default `/`).
    pub path: Option<String>,
    /// `PolicyDocument`.
    pub document: String,
    /// `Description`.
    pub description: Option<String>,
    /// `Tags`.
    pub tags: Vec<Tag>,
}

/// Whether an inline policy / attachment belongs to a user or a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// A user.
    User,
    /// A role.
    Role,
}

#[derive(Debug, Default)]
struct State {
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    policies: BTreeMap<String, CustomerPolicy>,
    keys: BTreeMap<String, AccessKeyRecord>,
    sessions: BTreeMap<String, Session>,
}

#[derive(Debug)]
enum Change {
    User(String, Option<User>),
    Role(String, Option<Role>),
    Policy(String, Option<CustomerPolicy>),
    Key(String, Option<AccessKeyRecord>),
    Session(String, Option<Session>),
}

fn op<T: Serialize>(table: &str, key: &str, doc: Option<&T>) -> Result<MetaOp, StoreError> {
    Ok(match doc {
        Some(d) => MetaOp::Put {
            table: table.to_owned(),
            key: key.to_owned(),
            value: serde_json::to_vec(d).map_err(|e| StoreError::Storage(e.to_string()))?,
        },
        None => MetaOp::Delete {
            table: table.to_owned(),
            key: key.to_owned(),
        },
    })
}

fn put_or_remove<T>(map: &mut BTreeMap<String, T>, key: String, doc: Option<T>) {
    match doc {
        Some(d) => {
            map.insert(key, d);
        }
        None => {
            map.remove(&key);
        }
    }
}

impl Change {
    fn op(&self) -> Result<MetaOp, StoreError> {
        match self {
            Change::User(k, d) => op(T_USERS, k, d.as_ref()),
            Change::Role(k, d) => op(T_ROLES, k, d.as_ref()),
            Change::Policy(k, d) => op(T_POLICIES, k, d.as_ref()),
            Change::Key(k, d) => op(T_KEYS, k, d.as_ref()),
            Change::Session(k, d) => op(T_SESSIONS, k, d.as_ref()),
        }
    }

    fn apply(self, st: &mut State) {
        match self {
            Change::User(k, d) => put_or_remove(&mut st.users, k, d),
            Change::Role(k, d) => put_or_remove(&mut st.roles, k, d),
            Change::Policy(k, d) => put_or_remove(&mut st.policies, k, d),
            Change::Key(k, d) => put_or_remove(&mut st.keys, k, d),
            Change::Session(k, d) => put_or_remove(&mut st.sessions, k, d),
        }
    }
}

/// The IAM and STS state of every account. `Send + Sync`; share it as `Arc<IamStore>`.
pub struct IamStore {
    meta: Arc<MetaStore>,
    clock: Arc<dyn Clock>,
    state: RwLock<State>,
    writer: Mutex<()>,
    /// Bumped after every applied change: compiled policy caches compare it.
    generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for IamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IamStore")
    }
}

fn load<T: for<'de> Deserialize<'de>>(
    meta: &MetaStore,
    table: &str,
    version_of: impl Fn(&T) -> u32,
) -> Result<BTreeMap<String, T>, StoreError> {
    let mut out = BTreeMap::new();
    for (k, v) in meta.scan_prefix(table, "").map_err(storage)? {
        let doc: T = serde_json::from_slice(&v)
            .map_err(|e| StoreError::Storage(format!("corrupt {table} document {k:?}: {e}")))?;
        if version_of(&doc) > FORMAT_VERSION {
            return Err(StoreError::Storage(format!(
                "{table} document {k:?} has format version {} (this build reads up to {FORMAT_VERSION})",
                version_of(&doc)
            )));
        }
        out.insert(k, doc);
    }
    Ok(out)
}

fn storage(e: kd_storage::Error) -> StoreError {
    StoreError::Storage(e.to_string())
}

fn entity_key(account: &str, name: &str) -> String {
    format!("{account}/{}", name.to_ascii_lowercase())
}

fn validation(value: &str, member: &str, constraint: &str) -> StoreError {
    StoreError::ValidationError(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
    ))
}

/// Checks an IAM name (`[\w+=,.@-]+`, `min..=max` characters); `member` is the camelCase
/// member name AWS reports (`roleName`).
pub fn check_name(value: &str, member: &str, max: usize) -> Result<(), StoreError> {
    if value.is_empty() {
        return Err(validation(
            value,
            member,
            "Member must have length greater than or equal to 1",
        ));
    }
    if value.chars().count() > max {
        return Err(validation(
            value,
            member,
            &format!("Member must have length less than or equal to {max}"),
        ));
    }
    if !value
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || "+=,.@-".contains(c))
    {
        return Err(validation(
            value,
            member,
            "Member must satisfy regular expression pattern: [\\w+=,.@-]+",
        ));
    }
    Ok(())
}

/// Checks a path: `/` or `/…/` of printable ASCII, at most 512 characters.
pub fn check_path(value: &str, member: &str) -> Result<(), StoreError> {
    if value.len() > 512 {
        return Err(validation(
            value,
            member,
            "Member must have length less than or equal to 512",
        ));
    }
    let ok = value == "/"
        || (value.len() >= 3
            && value.starts_with('/')
            && value.ends_with('/')
            && value.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    if !ok {
        return Err(validation(
            value,
            member,
            "Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)",
        ));
    }
    Ok(())
}

fn check_description(d: &Option<String>) -> Result<(), StoreError> {
    if let Some(d) = d
        && d.chars().count() > 1000
    {
        return Err(validation(
            d,
            "description",
            "Member must have length less than or equal to 1000",
        ));
    }
    Ok(())
}

fn check_tags(tags: &[Tag]) -> Result<(), StoreError> {
    if tags.len() > 50 {
        return Err(StoreError::LimitExceeded(
            "Cannot exceed quota for TagsPerRole: 50".to_owned(),
        ));
    }
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 {
            return Err(validation(
                &t.key,
                "tags.member.key",
                "Member must have length less than or equal to 128",
            ));
        }
        if t.value.chars().count() > 256 {
            return Err(validation(
                &t.value,
                "tags.member.value",
                "Member must have length less than or equal to 256",
            ));
        }
    }
    Ok(())
}

fn parse_doc(doc: &str, kind: DocKind, max_len: usize, quota: &str) -> Result<PolicyDocument, StoreError> {
    let significant = doc.chars().filter(|c| !c.is_whitespace()).count();
    if significant > max_len {
        return Err(StoreError::LimitExceeded(format!(
            "Cannot exceed quota for {quota}: {max_len}"
        )));
    }
    PolicyDocument::parse(doc, kind).map_err(|e| StoreError::MalformedPolicyDocument(e.to_string()))
}

const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `n` random characters of `alphabet` (64 characters at most).
fn random_text(n: usize, alphabet: &[u8]) -> String {
    let mut out = String::with_capacity(n);
    while out.len() < n {
        for b in uuid::Uuid::new_v4().as_bytes() {
            if out.len() == n {
                break;
            }
            // The modulo bias over 256 is irrelevant for identifiers of an emulator.
            let c = alphabet[usize::from(*b) % alphabet.len()];
            out.push(char::from(c));
        }
    }
    out
}

/// A unique id with the given four-letter prefix (`AIDA`, `AROA`, `ANPA`): 21 characters.
pub fn new_unique_id(prefix: &str) -> String {
    format!("{prefix}{}", random_text(17, ID_ALPHABET))
}

/// Ms since the epoch of an ISO 8601 UTC time `YYYY-MM-DDTHH:MM:SSZ` (0 if malformed).
fn iso8601_ms(t: &str) -> i64 {
    kd_storage::civil::parse_iso8601(t).map_or(0, |s| s * 1000)
}

/// The entities of one account in a map keyed `<account>/<name>`, in key order.
fn of_account<'a, V>(map: &'a BTreeMap<String, V>, account: &str) -> impl Iterator<Item = &'a V> {
    let prefix = format!("{account}/");
    map.range(prefix.clone()..)
        .take_while(move |(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| v)
}

/// Splits a policy ARN into (account, path, name); `None` if it is not a policy ARN.
pub fn parse_policy_arn(arn: &str) -> Option<(String, String, String)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("policy/")?;
    if account.is_empty() || rest.is_empty() {
        return None;
    }
    let (path, name) = match rest.rsplit_once('/') {
        Some((p, n)) => (format!("/{p}/"), n.to_owned()),
        None => ("/".to_owned(), rest.to_owned()),
    };
    if name.is_empty() {
        return None;
    }
    Some((account.to_owned(), path, name))
}

/// Splits a role ARN into (account, name).
pub fn parse_role_arn(arn: &str) -> Option<(String, String)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("role/")?;
    let name = rest.rsplit('/').next()?;
    if account.is_empty() || name.is_empty() {
        return None;
    }
    Some((account.to_owned(), name.to_owned()))
}

fn no_role(name: &str) -> StoreError {
    StoreError::NoSuchEntity(format!("The role with name {name} cannot be found."))
}

fn no_user(name: &str) -> StoreError {
    StoreError::NoSuchEntity(format!("The user with name {name} cannot be found."))
}

fn no_policy(arn: &str) -> StoreError {
    StoreError::NoSuchEntity(format!("Policy {arn} does not exist or is not attachable."))
}

fn aws_managed(arn: &str) -> Option<managed::ManagedPolicy> {
    if !arn.starts_with(AWS_POLICY_ARN_PREFIX) {
        return None;
    }
    managed::aws_managed_policy(arn).filter(|p| p.arn == arn)
}

impl PolicyHolderDyn for User {
    fn inline_mut(&mut self) -> &mut BTreeMap<String, String> {
        &mut self.inline_policies
    }
    fn attached_mut(&mut self) -> &mut Vec<String> {
        &mut self.attached_policies
    }
}

impl PolicyHolderDyn for Role {
    fn inline_mut(&mut self) -> &mut BTreeMap<String, String> {
        &mut self.inline_policies
    }
    fn attached_mut(&mut self) -> &mut Vec<String> {
        &mut self.attached_policies
    }
}

impl IamStore {
    /// Loads every IAM document from `meta`; time (creation dates, session expiry) comes
    /// from `clock`.
    pub fn open(meta: Arc<MetaStore>, clock: Arc<dyn Clock>) -> Result<IamStore, StoreError> {
        let state = State {
            users: load(&meta, T_USERS, |d: &User| d.version)?,
            roles: load(&meta, T_ROLES, |d: &Role| d.version)?,
            policies: load(&meta, T_POLICIES, |d: &CustomerPolicy| d.version)?,
            keys: load(&meta, T_KEYS, |d: &AccessKeyRecord| d.version)?,
            sessions: load(&meta, T_SESSIONS, |d: &Session| d.version)?,
        };
        let store = IamStore {
            meta,
            clock,
            state: RwLock::new(state),
            writer: Mutex::new(()),
            generation: std::sync::atomic::AtomicU64::new(0),
        };
        let horizon = store.clock.now_ms() - 24 * 3600 * 1000;
        store.mutate(|st, _| {
            let stale = st
                .sessions
                .iter()
                .filter(|(_, s)| s.expiration_ms < horizon)
                .map(|(k, _)| Change::Session(k.clone(), None))
                .collect();
            Ok(((), stale))
        })?;
        Ok(store)
    }

    /// The current time of the store's clock, ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` over the current state under the writer lock, commits its changes durably
    /// and then applies them in memory.
    fn mutate<T>(&self, f: impl FnOnce(&State, i64) -> Result<(T, Vec<Change>), StoreError>) -> Result<T, StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now_ms();
        let (out, changes) = {
            let st = self.read();
            f(&st, now)?
        };
        if !changes.is_empty() {
            let ops = changes.iter().map(Change::op).collect::<Result<Vec<_>, _>>()?;
            self.meta.write(ops).map_err(storage)?;
            let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
            for c in changes {
                c.apply(&mut st);
            }
            self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        Ok(out)
    }

    /// Changes with every applied write; equal generations mean equal policies.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Forgets every entity of every account (for `/_kinesis-data/reset`).
    pub fn reset(&self) -> Result<(), StoreError> {
        self.mutate(|st, _| {
            let mut ch = Vec::new();
            ch.extend(st.users.keys().map(|k| Change::User(k.clone(), None)));
            ch.extend(st.roles.keys().map(|k| Change::Role(k.clone(), None)));
            ch.extend(st.policies.keys().map(|k| Change::Policy(k.clone(), None)));
            ch.extend(st.keys.keys().map(|k| Change::Key(k.clone(), None)));
            ch.extend(st.sessions.keys().map(|k| Change::Session(k.clone(), None)));
            Ok(((), ch))
        })
    }

    // ----- roles -----

    /// `CreateRole`.
    pub fn create_role(&self, account: &str, input: NewRole) -> Result<Role, StoreError> {
        check_name(&input.name, "roleName", 64)?;
        let path = input.path.unwrap_or_else(|| "/".to_owned());
        check_path(&path, "path")?;
        check_description(&input.description)?;
        check_tags(&input.tags)?;
        let max = input.max_session_duration.unwrap_or(3600);
        check_max_session(max)?;
        parse_doc(
            &input.assume_role_policy_document,
            DocKind::Trust,
            2048,
            "ACLSizePerRole",
        )?;
        self.mutate(|st, now| {
            let key = entity_key(account, &input.name);
            if st.roles.contains_key(&key) {
                return Err(StoreError::EntityAlreadyExists(format!(
                    "Role with name {} already exists.",
                    input.name
                )));
            }
            let role = Role {
                version: FORMAT_VERSION,
                account_id: account.to_owned(),
                arn: format!("arn:aws:iam::{account}:role{path}{}", input.name),
                name: input.name,
                id: new_unique_id("AROA"),
                path,
                create_date_ms: now,
                assume_role_policy_document: input.assume_role_policy_document,
                description: input.description,
                max_session_duration: max,
                inline_policies: BTreeMap::new(),
                attached_policies: Vec::new(),
                tags: input.tags,
            };
            Ok((role.clone(), vec![Change::Role(key, Some(role))]))
        })
    }

    /// Whether `role_arn` names an existing role whose trust policy lets the service
    /// principal `service` (e.g. `lambda.amazonaws.com`) call `sts:AssumeRole`, with `ctx`
    /// as the request's condition keys. The check every service makes on the role it is given.
    pub fn service_may_assume(&self, role_arn: &str, service: &str, ctx: &crate::policy::ConditionContext) -> bool {
        let Some((account, name)) = parse_role_arn(role_arn) else {
            return false;
        };
        let Ok(role) = self.get_role(&account, &name) else {
            return false;
        };
        let Ok(doc) = PolicyDocument::parse(&role.assume_role_policy_document, DocKind::Trust) else {
            return false;
        };
        let who = crate::policy::Principal::Service(service.to_owned());
        crate::policy::principal_allowed(&doc, &who, "sts:AssumeRole", &role.arn, ctx) == crate::policy::Decision::Allow
    }

    /// `GetRole`.
    pub fn get_role(&self, account: &str, name: &str) -> Result<Role, StoreError> {
        self.read()
            .roles
            .get(&entity_key(account, name))
            .cloned()
            .ok_or_else(|| no_role(name))
    }

    /// `ListRoles`: roles whose path starts with `path_prefix`, by name.
    pub fn list_roles(&self, account: &str, path_prefix: &str) -> Vec<Role> {
        of_account(&self.read().roles, account)
            .filter(|r| r.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }

    fn update_role_with(
        &self,
        account: &str,
        name: &str,
        f: impl FnOnce(&mut Role) -> Result<(), StoreError>,
    ) -> Result<Role, StoreError> {
        self.mutate(|st, _| {
            let key = entity_key(account, name);
            let mut role = st.roles.get(&key).cloned().ok_or_else(|| no_role(name))?;
            f(&mut role)?;
            Ok((role.clone(), vec![Change::Role(key, Some(role))]))
        })
    }

    /// `UpdateRole`.
    pub fn update_role(
        &self,
        account: &str,
        name: &str,
        description: Option<String>,
        max_session_duration: Option<i32>,
    ) -> Result<Role, StoreError> {
        check_description(&description)?;
        if let Some(m) = max_session_duration {
            check_max_session(m)?;
        }
        self.update_role_with(account, name, |r| {
            if description.is_some() {
                r.description = description;
            }
            if let Some(m) = max_session_duration {
                r.max_session_duration = m;
            }
            Ok(())
        })
    }

    /// `UpdateAssumeRolePolicy`.
    pub fn update_assume_role_policy(&self, account: &str, name: &str, document: String) -> Result<Role, StoreError> {
        parse_doc(&document, DocKind::Trust, 2048, "ACLSizePerRole")?;
        self.update_role_with(account, name, |r| {
            r.assume_role_policy_document = document;
            Ok(())
        })
    }

    /// `DeleteRole`: refused while the role has inline or attached policies.
    pub fn delete_role(&self, account: &str, name: &str) -> Result<(), StoreError> {
        self.mutate(|st, _| {
            let key = entity_key(account, name);
            let role = st.roles.get(&key).ok_or_else(|| no_role(name))?;
            if !role.inline_policies.is_empty() {
                return Err(StoreError::DeleteConflict(
                    "Cannot delete entity, must delete policies first.".to_owned(),
                ));
            }
            if !role.attached_policies.is_empty() {
                return Err(StoreError::DeleteConflict(
                    "Cannot delete entity, must detach all policies first.".to_owned(),
                ));
            }
            Ok(((), vec![Change::Role(key, None)]))
        })
    }

    // ----- users -----

    /// `CreateUser`.
    pub fn create_user(
        &self,
        account: &str,
        name: &str,
        path: Option<String>,
        tags: Vec<Tag>,
    ) -> Result<User, StoreError> {
        check_name(name, "userName", 64)?;
        let path = path.unwrap_or_else(|| "/".to_owned());
        check_path(&path, "path")?;
        check_tags(&tags)?;
        self.mutate(|st, now| {
            let key = entity_key(account, name);
            if st.users.contains_key(&key) {
                return Err(StoreError::EntityAlreadyExists(format!(
                    "User with name {name} already exists."
                )));
            }
            let user = User {
                version: FORMAT_VERSION,
                account_id: account.to_owned(),
                name: name.to_owned(),
                id: new_unique_id("AIDA"),
                arn: format!("arn:aws:iam::{account}:user{path}{name}"),
                path,
                create_date_ms: now,
                inline_policies: BTreeMap::new(),
                attached_policies: Vec::new(),
                tags,
            };
            Ok((user.clone(), vec![Change::User(key, Some(user))]))
        })
    }

    /// `GetUser`.
    pub fn get_user(&self, account: &str, name: &str) -> Result<User, StoreError> {
        self.read()
            .users
            .get(&entity_key(account, name))
            .cloned()
            .ok_or_else(|| no_user(name))
    }

    /// `ListUsers`: users whose path starts with `path_prefix`, by name.
    pub fn list_users(&self, account: &str, path_prefix: &str) -> Vec<User> {
        of_account(&self.read().users, account)
            .filter(|u| u.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }

    /// `DeleteUser`: refused while the user has policies or access keys.
    pub fn delete_user(&self, account: &str, name: &str) -> Result<(), StoreError> {
        self.mutate(|st, _| {
            let key = entity_key(account, name);
            let user = st.users.get(&key).ok_or_else(|| no_user(name))?;
            if !user.inline_policies.is_empty() {
                return Err(StoreError::DeleteConflict(
                    "Cannot delete entity, must delete policies first.".to_owned(),
                ));
            }
            if !user.attached_policies.is_empty() {
                return Err(StoreError::DeleteConflict(
                    "Cannot delete entity, must detach all policies first.".to_owned(),
                ));
            }
            if st
                .keys
                .values()
                .any(|k| k.account_id == account && k.user_name.eq_ignore_ascii_case(name))
            {
                return Err(StoreError::DeleteConflict(
                    "Cannot delete entity, must delete access keys first.".to_owned(),
                ));
            }
            Ok(((), vec![Change::User(key, None)]))
        })
    }

    // ----- inline policies and attachments of users and roles -----

    fn change_holder(
        &self,
        account: &str,
        holder: Holder,
        name: &str,
        f: impl FnOnce(&State, &mut dyn PolicyHolderDyn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.mutate(|st, _| {
            let key = entity_key(account, name);
            match holder {
                Holder::User => {
                    let mut u = st.users.get(&key).cloned().ok_or_else(|| no_user(name))?;
                    f(st, &mut u)?;
                    Ok(((), vec![Change::User(key, Some(u))]))
                }
                Holder::Role => {
                    let mut r = st.roles.get(&key).cloned().ok_or_else(|| no_role(name))?;
                    f(st, &mut r)?;
                    Ok(((), vec![Change::Role(key, Some(r))]))
                }
            }
        })
    }

    fn holder_inline(&self, account: &str, holder: Holder, name: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let st = self.read();
        let key = entity_key(account, name);
        match holder {
            Holder::User => st
                .users
                .get(&key)
                .map(|u| u.inline_policies.clone())
                .ok_or_else(|| no_user(name)),
            Holder::Role => st
                .roles
                .get(&key)
                .map(|r| r.inline_policies.clone())
                .ok_or_else(|| no_role(name)),
        }
    }

    /// `PutRolePolicy` / `PutUserPolicy`.
    pub fn put_inline_policy(
        &self,
        account: &str,
        holder: Holder,
        name: &str,
        policy_name: &str,
        document: String,
    ) -> Result<(), StoreError> {
        check_name(policy_name, "policyName", 128)?;
        let (max, quota) = match holder {
            Holder::User => (2048, "UserPolicySize"),
            Holder::Role => (10240, "RolePolicySize"),
        };
        parse_doc(&document, DocKind::Identity, max, quota)?;
        self.change_holder(account, holder, name, |_, h| {
            h.inline_mut().insert(policy_name.to_owned(), document);
            Ok(())
        })
    }

    /// `GetRolePolicy` / `GetUserPolicy`: the document as given.
    pub fn get_inline_policy(
        &self,
        account: &str,
        holder: Holder,
        name: &str,
        policy_name: &str,
    ) -> Result<String, StoreError> {
        self.holder_inline(account, holder, name)?
            .remove(policy_name)
            .ok_or_else(|| no_inline(holder, policy_name))
    }

    /// `ListRolePolicies` / `ListUserPolicies`: names in order.
    pub fn list_inline_policies(&self, account: &str, holder: Holder, name: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.holder_inline(account, holder, name)?.into_keys().collect())
    }

    /// `DeleteRolePolicy` / `DeleteUserPolicy`.
    pub fn delete_inline_policy(
        &self,
        account: &str,
        holder: Holder,
        name: &str,
        policy_name: &str,
    ) -> Result<(), StoreError> {
        self.change_holder(account, holder, name, |_, h| {
            h.inline_mut()
                .remove(policy_name)
                .map(|_| ())
                .ok_or_else(|| no_inline(holder, policy_name))
        })
    }

    fn policy_exists(st: &State, account: &str, arn: &str) -> Result<(), StoreError> {
        if aws_managed(arn).is_some() {
            return Ok(());
        }
        let Some((acct, _, name)) = parse_policy_arn(arn) else {
            return Err(StoreError::InvalidInput(format!("ARN {arn} is not valid.")));
        };
        match st.policies.get(&entity_key(&acct, &name)) {
            Some(p) if p.arn == arn && acct == account => Ok(()),
            _ => Err(no_policy(arn)),
        }
    }

    /// `AttachRolePolicy` / `AttachUserPolicy` (attaching twice is a no-op).
    pub fn attach_policy(&self, account: &str, holder: Holder, name: &str, policy_arn: &str) -> Result<(), StoreError> {
        self.change_holder(account, holder, name, |st, h| {
            Self::policy_exists(st, account, policy_arn)?;
            let attached = h.attached_mut();
            if attached.iter().any(|a| a == policy_arn) {
                return Ok(());
            }
            if attached.len() >= MAX_ATTACHED {
                let quota = match holder {
                    Holder::User => "PoliciesPerUser",
                    Holder::Role => "PoliciesPerRole",
                };
                return Err(StoreError::LimitExceeded(format!(
                    "Cannot exceed quota for {quota}: {MAX_ATTACHED}"
                )));
            }
            attached.push(policy_arn.to_owned());
            Ok(())
        })
    }

    /// `DetachRolePolicy` / `DetachUserPolicy`.
    pub fn detach_policy(&self, account: &str, holder: Holder, name: &str, policy_arn: &str) -> Result<(), StoreError> {
        self.change_holder(account, holder, name, |_, h| {
            let attached = h.attached_mut();
            let before = attached.len();
            attached.retain(|a| a != policy_arn);
            if attached.len() == before {
                return Err(StoreError::NoSuchEntity(format!("Policy {policy_arn} was not found.")));
            }
            Ok(())
        })
    }

    /// `ListAttachedRolePolicies` / `ListAttachedUserPolicies`: (name, ARN) in attachment
    /// order, filtered by the policies' path prefix.
    pub fn list_attached_policies(
        &self,
        account: &str,
        holder: Holder,
        name: &str,
        path_prefix: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let st = self.read();
        let key = entity_key(account, name);
        let arns = match holder {
            Holder::User => st
                .users
                .get(&key)
                .map(|u| u.attached_policies.clone())
                .ok_or_else(|| no_user(name))?,
            Holder::Role => st
                .roles
                .get(&key)
                .map(|r| r.attached_policies.clone())
                .ok_or_else(|| no_role(name))?,
        };
        Ok(arns
            .into_iter()
            .filter_map(|arn| {
                let (_, path, name) = parse_policy_arn(&arn)?;
                path.starts_with(path_prefix).then_some((name, arn))
            })
            .collect())
    }

    // ----- customer managed policies -----

    fn attachment_count(st: &State, account: &str, arn: &str) -> usize {
        let roles = of_account(&st.roles, account)
            .filter(|r| r.attached_policies.iter().any(|a| a == arn))
            .count();
        let users = of_account(&st.users, account)
            .filter(|u| u.attached_policies.iter().any(|a| a == arn))
            .count();
        roles + users
    }

    fn customer_info(st: &State, p: &CustomerPolicy) -> PolicyInfo {
        PolicyInfo {
            name: p.name.clone(),
            id: p.id.clone(),
            arn: p.arn.clone(),
            path: p.path.clone(),
            description: p.description.clone(),
            default_version_id: p.default_version_id.clone(),
            attachment_count: Self::attachment_count(st, &p.account_id, &p.arn),
            create_date_ms: p.create_date_ms,
            update_date_ms: p.update_date_ms,
            aws_managed: false,
            tags: p.tags.clone(),
        }
    }

    fn aws_info(st: &State, account: &str, p: &managed::ManagedPolicy) -> PolicyInfo {
        PolicyInfo {
            name: p.name.to_owned(),
            id: p.policy_id.to_owned(),
            path: p.path.to_owned(),
            description: Some(p.description.to_owned()).filter(|d| !d.is_empty()),
            default_version_id: p.default_version_id.to_owned(),
            attachment_count: Self::attachment_count(st, account, p.arn),
            create_date_ms: iso8601_ms(p.create_date),
            update_date_ms: iso8601_ms(p.update_date),
            aws_managed: true,
            tags: Vec::new(),
            arn: p.arn.to_owned(),
        }
    }

    fn customer<'a>(st: &'a State, account: &str, arn: &str) -> Result<(String, &'a CustomerPolicy), StoreError> {
        let Some((acct, _, name)) = parse_policy_arn(arn) else {
            return Err(StoreError::InvalidInput(format!("ARN {arn} is not valid.")));
        };
        let key = entity_key(&acct, &name);
        match st.policies.get(&key) {
            Some(p) if p.arn == arn && acct == account => Ok((key, p)),
            _ => Err(no_policy(arn)),
        }
    }

    /// `CreatePolicy`.
    pub fn create_policy(&self, account: &str, input: NewPolicy) -> Result<PolicyInfo, StoreError> {
        check_name(&input.name, "policyName", 128)?;
        let path = input.path.unwrap_or_else(|| "/".to_owned());
        check_path(&path, "path")?;
        check_description(&input.description)?;
        check_tags(&input.tags)?;
        parse_doc(&input.document, DocKind::Identity, 6144, "PolicySize")?;
        self.mutate(|st, now| {
            let key = entity_key(account, &input.name);
            if st.policies.contains_key(&key) {
                return Err(StoreError::EntityAlreadyExists(format!(
                    "A policy called {} already exists. Duplicate names are not allowed.",
                    input.name
                )));
            }
            let policy = CustomerPolicy {
                version: FORMAT_VERSION,
                account_id: account.to_owned(),
                arn: format!("arn:aws:iam::{account}:policy{path}{}", input.name),
                name: input.name,
                id: new_unique_id("ANPA"),
                path,
                description: input.description,
                create_date_ms: now,
                update_date_ms: now,
                default_version_id: "v1".to_owned(),
                versions: vec![PolicyVersion {
                    version_id: "v1".to_owned(),
                    document: input.document,
                    create_date_ms: now,
                }],
                next_version: 2,
                tags: input.tags,
            };
            Ok((
                Self::customer_info(st, &policy),
                vec![Change::Policy(key, Some(policy))],
            ))
        })
    }

    /// `GetPolicy` (customer or AWS managed).
    pub fn get_policy(&self, account: &str, arn: &str) -> Result<PolicyInfo, StoreError> {
        let st = self.read();
        if let Some(p) = aws_managed(arn) {
            return Ok(Self::aws_info(&st, account, &p));
        }
        let (_, p) = Self::customer(&st, account, arn)?;
        Ok(Self::customer_info(&st, p))
    }

    /// `GetPolicyVersion` (customer or AWS managed, whose only version is its default).
    pub fn get_policy_version(
        &self,
        account: &str,
        arn: &str,
        version_id: &str,
    ) -> Result<PolicyVersionInfo, StoreError> {
        let missing = || StoreError::NoSuchEntity(format!("Policy {arn} version {version_id} does not exist."));
        if let Some(p) = aws_managed(arn) {
            return if version_id == p.default_version_id {
                Ok(aws_version(&p))
            } else {
                Err(missing())
            };
        }
        let st = self.read();
        let (_, p) = Self::customer(&st, account, arn)?;
        p.versions
            .iter()
            .find(|v| v.version_id == version_id)
            .map(|v| version_info(p, v))
            .ok_or_else(missing)
    }

    /// `ListPolicyVersions`, newest first.
    pub fn list_policy_versions(&self, account: &str, arn: &str) -> Result<Vec<PolicyVersionInfo>, StoreError> {
        if let Some(p) = aws_managed(arn) {
            return Ok(vec![aws_version(&p)]);
        }
        let st = self.read();
        let (_, p) = Self::customer(&st, account, arn)?;
        Ok(p.versions.iter().rev().map(|v| version_info(p, v)).collect())
    }

    /// `CreatePolicyVersion`: at most five versions are kept.
    pub fn create_policy_version(
        &self,
        account: &str,
        arn: &str,
        document: String,
        set_as_default: bool,
    ) -> Result<PolicyVersionInfo, StoreError> {
        parse_doc(&document, DocKind::Identity, 6144, "PolicySize")?;
        self.mutate(|st, now| {
            let (key, p) = Self::customer(st, account, arn)?;
            if p.versions.len() >= MAX_POLICY_VERSIONS {
                return Err(StoreError::LimitExceeded(format!(
                    "A managed policy can have up to {MAX_POLICY_VERSIONS} versions. Before you create a new version, you must delete an existing version."
                )));
            }
            let mut p = p.clone();
            let v = PolicyVersion {
                version_id: format!("v{}", p.next_version),
                document,
                create_date_ms: now,
            };
            p.next_version += 1;
            if set_as_default {
                p.default_version_id = v.version_id.clone();
                p.update_date_ms = now;
            }
            p.versions.push(v.clone());
            let info = version_info(&p, &v);
            Ok((info, vec![Change::Policy(key, Some(p))]))
        })
    }

    /// `SetDefaultPolicyVersion`.
    pub fn set_default_policy_version(&self, account: &str, arn: &str, version_id: &str) -> Result<(), StoreError> {
        self.mutate(|st, now| {
            let (key, p) = Self::customer(st, account, arn)?;
            if !p.versions.iter().any(|v| v.version_id == version_id) {
                return Err(StoreError::NoSuchEntity(format!(
                    "Policy {arn} version {version_id} does not exist."
                )));
            }
            let mut p = p.clone();
            p.default_version_id = version_id.to_owned();
            p.update_date_ms = now;
            Ok(((), vec![Change::Policy(key, Some(p))]))
        })
    }

    /// `DeletePolicyVersion`: the default version cannot be deleted.
    pub fn delete_policy_version(&self, account: &str, arn: &str, version_id: &str) -> Result<(), StoreError> {
        self.mutate(|st, _| {
            let (key, p) = Self::customer(st, account, arn)?;
            if p.default_version_id == version_id {
                return Err(StoreError::DeleteConflict(
                    "Cannot delete the default version of a policy.".to_owned(),
                ));
            }
            let mut p = p.clone();
            let before = p.versions.len();
            p.versions.retain(|v| v.version_id != version_id);
            if p.versions.len() == before {
                return Err(StoreError::NoSuchEntity(format!(
                    "Policy {arn} version {version_id} does not exist."
                )));
            }
            Ok(((), vec![Change::Policy(key, Some(p))]))
        })
    }

    /// `ListPolicies`: AWS managed ones (by name) and then the account's own (by name).
    pub fn list_policies(
        &self,
        account: &str,
        scope: PolicyScope,
        only_attached: bool,
        path_prefix: &str,
    ) -> Vec<PolicyInfo> {
        let st = self.read();
        let mut out = Vec::new();
        if scope != PolicyScope::Local {
            let mut aws: Vec<PolicyInfo> = managed::all().iter().map(|p| Self::aws_info(&st, account, p)).collect();
            aws.sort_by(|a, b| a.name.cmp(&b.name));
            out.extend(aws);
        }
        if scope != PolicyScope::Aws {
            out.extend(of_account(&st.policies, account).map(|p| Self::customer_info(&st, p)));
        }
        out.retain(|p| p.path.starts_with(path_prefix) && (!only_attached || p.attachment_count > 0));
        out
    }

    /// `DeletePolicy`: refused while attached; deletes every version.
    pub fn delete_policy(&self, account: &str, arn: &str) -> Result<(), StoreError> {
        self.mutate(|st, _| {
            let (key, _) = Self::customer(st, account, arn)?;
            if Self::attachment_count(st, account, arn) > 0 {
                return Err(StoreError::DeleteConflict(
                    "Cannot delete a policy attached to entities.".to_owned(),
                ));
            }
            Ok(((), vec![Change::Policy(key, None)]))
        })
    }

    // ----- access keys -----

    /// `CreateAccessKey`: at most two per user.
    pub fn create_access_key(&self, account: &str, user_name: &str) -> Result<AccessKeyRecord, StoreError> {
        self.mutate(|st, now| {
            let user = st
                .users
                .get(&entity_key(account, user_name))
                .ok_or_else(|| no_user(user_name))?;
            let count = st
                .keys
                .values()
                .filter(|k| k.account_id == account && k.user_name == user.name)
                .count();
            if count >= MAX_ACCESS_KEYS {
                return Err(StoreError::LimitExceeded(format!(
                    "Cannot exceed quota for AccessKeysPerUser: {MAX_ACCESS_KEYS}"
                )));
            }
            let key = AccessKeyRecord {
                version: FORMAT_VERSION,
                account_id: account.to_owned(),
                user_name: user.name.clone(),
                access_key_id: format!("AKIA{}", random_text(16, ID_ALPHABET)),
                secret_access_key: random_text(40, SECRET_ALPHABET),
                active: true,
                create_date_ms: now,
            };
            Ok((key.clone(), vec![Change::Key(key.access_key_id.clone(), Some(key))]))
        })
    }

    /// `ListAccessKeys`, oldest first.
    pub fn list_access_keys(&self, account: &str, user_name: &str) -> Result<Vec<AccessKeyRecord>, StoreError> {
        let st = self.read();
        let user = st
            .users
            .get(&entity_key(account, user_name))
            .ok_or_else(|| no_user(user_name))?;
        let mut keys: Vec<AccessKeyRecord> = st
            .keys
            .values()
            .filter(|k| k.account_id == account && k.user_name == user.name)
            .cloned()
            .collect();
        keys.sort_by(|a, b| (a.create_date_ms, &a.access_key_id).cmp(&(b.create_date_ms, &b.access_key_id)));
        Ok(keys)
    }

    fn user_key<'a>(
        st: &'a State,
        account: &str,
        user_name: &str,
        access_key_id: &str,
    ) -> Result<&'a AccessKeyRecord, StoreError> {
        st.users
            .get(&entity_key(account, user_name))
            .ok_or_else(|| no_user(user_name))?;
        st.keys
            .get(access_key_id)
            .filter(|k| k.account_id == account && k.user_name.eq_ignore_ascii_case(user_name))
            .ok_or_else(|| StoreError::NoSuchEntity(format!("The Access Key with id {access_key_id} cannot be found.")))
    }

    /// `UpdateAccessKey` (Status).
    pub fn update_access_key(
        &self,
        account: &str,
        user_name: &str,
        access_key_id: &str,
        active: bool,
    ) -> Result<(), StoreError> {
        self.mutate(|st, _| {
            let mut k = Self::user_key(st, account, user_name, access_key_id)?.clone();
            k.active = active;
            Ok(((), vec![Change::Key(access_key_id.to_owned(), Some(k))]))
        })
    }

    /// `DeleteAccessKey`.
    pub fn delete_access_key(&self, account: &str, user_name: &str, access_key_id: &str) -> Result<(), StoreError> {
        self.mutate(|st, _| {
            Self::user_key(st, account, user_name, access_key_id)?;
            Ok(((), vec![Change::Key(access_key_id.to_owned(), None)]))
        })
    }

    /// The user of an access key, whether or not the key is active.
    pub fn user_of_key(&self, access_key_id: &str) -> Option<User> {
        let st = self.read();
        let k = st.keys.get(access_key_id)?;
        st.users.get(&entity_key(&k.account_id, &k.user_name)).cloned()
    }

    // ----- STS -----

    /// `AssumeRole`: temporary credentials for `role_arn` lasting `duration_seconds`
    /// (900 up to the role's `MaxSessionDuration`, 3600 by default).
    pub fn assume_role(
        &self,
        role_arn: &str,
        session_name: &str,
        duration_seconds: Option<i32>,
    ) -> Result<Session, StoreError> {
        if role_arn.len() < 20 || role_arn.len() > 2048 {
            return Err(validation(
                role_arn,
                "roleArn",
                "Member must have length greater than or equal to 20",
            ));
        }
        if session_name.chars().count() < 2 || session_name.chars().count() > 64 {
            return Err(validation(
                session_name,
                "roleSessionName",
                if session_name.chars().count() < 2 {
                    "Member must have length greater than or equal to 2"
                } else {
                    "Member must have length less than or equal to 64"
                },
            ));
        }
        if !session_name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || "+=,.@-".contains(c))
        {
            return Err(validation(
                session_name,
                "roleSessionName",
                "Member must satisfy regular expression pattern: [\\w+=,.@-]*",
            ));
        }
        let duration = duration_seconds.unwrap_or(3600);
        if duration < 900 {
            return Err(validation(
                &duration.to_string(),
                "durationSeconds",
                "Member must have value greater than or equal to 900",
            ));
        }
        let Some((account, name)) = parse_role_arn(role_arn) else {
            return Err(StoreError::ValidationError(format!("{role_arn} is invalid")));
        };
        self.mutate(|st, now| {
            let role = st
                .roles
                .get(&entity_key(&account, &name))
                .filter(|r| r.arn == role_arn)
                .ok_or_else(|| {
                    StoreError::AccessDenied(format!(
                        "User is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
                    ))
                })?;
            if duration > role.max_session_duration {
                return Err(StoreError::ValidationError(
                    "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.".to_owned(),
                ));
            }
            let session = Session::mint(role, &account, session_name, now, i64::from(duration) * 1000);
            Ok((
                session.clone(),
                vec![Change::Session(session.access_key_id.clone(), Some(session))],
            ))
        })
    }

    /// A session of `role_arn` that an AWS service opens for itself (a Lambda function's
    /// execution role, a Firehose delivery stream's role): no trust check and no
    /// `MaxSessionDuration` bound, since the service was given the role. Lasts `duration_ms`.
    pub fn service_session(&self, role_arn: &str, session_name: &str, duration_ms: i64) -> Result<Session, StoreError> {
        let Some((account, name)) = parse_role_arn(role_arn) else {
            return Err(StoreError::ValidationError(format!("{role_arn} is invalid")));
        };
        self.mutate(|st, now| {
            let role = st
                .roles
                .get(&entity_key(&account, &name))
                .filter(|r| r.arn == role_arn)
                .ok_or_else(|| StoreError::NoSuchEntity(format!("The role with name {name} cannot be found.")))?;
            let session = Session::mint(role, &account, session_name, now, duration_ms);
            Ok((
                session.clone(),
                vec![Change::Session(session.access_key_id.clone(), Some(session))],
            ))
        })
    }

    /// Records a session as given (tests use it to make sessions with chosen expiries).
    pub fn insert_session(&self, session: Session) -> Result<(), StoreError> {
        self.mutate(|_, _| Ok(((), vec![Change::Session(session.access_key_id.clone(), Some(session))])))
    }

    // ----- authentication and authorisation -----

    /// The secret of an active user key or of a session (expired or not: the expiry is
    /// reported after the signature checks out).
    pub fn secret_for(&self, access_key_id: &str) -> Option<String> {
        let st = self.read();
        if let Some(k) = st.keys.get(access_key_id) {
            return k.active.then(|| k.secret_access_key.clone());
        }
        st.sessions.get(access_key_id).map(|s| s.secret_access_key.clone())
    }

    /// The principal behind an active user key or a session.
    pub fn principal(&self, access_key_id: &str) -> Option<Principal> {
        let st = self.read();
        if let Some(k) = st.keys.get(access_key_id) {
            if !k.active {
                return None;
            }
            let user = st.users.get(&entity_key(&k.account_id, &k.user_name))?;
            return Some(Principal {
                account_id: k.account_id.clone(),
                access_key_id: k.access_key_id.clone(),
                arn: user.arn.clone(),
                user_id: user.id.clone(),
                kind: PrincipalKind::User {
                    user_name: user.name.clone(),
                },
                session_token: None,
                expiration_ms: None,
            });
        }
        let s = st.sessions.get(access_key_id)?;
        Some(Principal {
            account_id: s.account_id.clone(),
            access_key_id: s.access_key_id.clone(),
            arn: s.arn.clone(),
            user_id: s.assumed_role_id(),
            kind: PrincipalKind::AssumedRole {
                role_name: s.role_name.clone(),
                session_name: s.session_name.clone(),
            },
            session_token: Some(s.session_token.clone()),
            expiration_ms: Some(s.expiration_ms),
        })
    }

    /// The identity policies of a principal: the inline and attached (customer and AWS
    /// managed, default version) policies of the user, or of the role behind a session.
    /// The root has none (it may do everything in its account). Documents were validated
    /// when stored; one that no longer parses is left out.
    pub fn identity_policies(&self, principal: &Principal) -> Vec<PolicyDocument> {
        let st = self.read();
        let key = match &principal.kind {
            PrincipalKind::Root => return Vec::new(),
            PrincipalKind::User { user_name } => entity_key(&principal.account_id, user_name),
            PrincipalKind::AssumedRole { role_name, .. } => entity_key(&principal.account_id, role_name),
        };
        let (inline, attached) = match &principal.kind {
            PrincipalKind::User { .. } => match st.users.get(&key) {
                Some(u) => (&u.inline_policies, &u.attached_policies),
                None => return Vec::new(),
            },
            _ => match st.roles.get(&key) {
                Some(r) => (&r.inline_policies, &r.attached_policies),
                None => return Vec::new(),
            },
        };
        let mut texts: Vec<String> = inline.values().cloned().collect();
        for arn in attached {
            if let Some(p) = aws_managed(arn) {
                texts.push(p.document.to_owned());
            } else if let Ok((_, p)) = Self::customer(&st, &principal.account_id, arn)
                && let Some(v) = p.versions.iter().find(|v| v.version_id == p.default_version_id)
            {
                texts.push(v.document.clone());
            }
        }
        texts
            .iter()
            .filter_map(|t| PolicyDocument::parse(t, DocKind::Identity).ok())
            .collect()
    }
}

/// The one version of an AWS managed policy the emulator knows: its default.
fn aws_version(p: &managed::ManagedPolicy) -> PolicyVersionInfo {
    PolicyVersionInfo {
        version_id: p.default_version_id.to_owned(),
        document: p.document.to_owned(),
        is_default: true,
        create_date_ms: iso8601_ms(p.update_date),
    }
}

fn version_info(p: &CustomerPolicy, v: &PolicyVersion) -> PolicyVersionInfo {
    PolicyVersionInfo {
        version_id: v.version_id.clone(),
        document: v.document.clone(),
        is_default: v.version_id == p.default_version_id,
        create_date_ms: v.create_date_ms,
    }
}

fn no_inline(holder: Holder, policy_name: &str) -> StoreError {
    let what = match holder {
        Holder::User => "user",
        Holder::Role => "role",
    };
    StoreError::NoSuchEntity(format!("The {what} policy with name {policy_name} cannot be found."))
}

fn check_max_session(max: i32) -> Result<(), StoreError> {
    if max < 3600 {
        return Err(validation(
            &max.to_string(),
            "maxSessionDuration",
            "Member must have value greater than or equal to 3600",
        ));
    }
    if max > 43200 {
        return Err(validation(
            &max.to_string(),
            "maxSessionDuration",
            "Member must have value less than or equal to 43200",
        ));
    }
    Ok(())
}

/// The inline policies and attachments of a user or a role, for the shared code paths.
trait PolicyHolderDyn {
    fn inline_mut(&mut self) -> &mut BTreeMap<String, String>;
    fn attached_mut(&mut self) -> &mut Vec<String>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Iam, TokenError};
    use kd_storage::ManualClock;

    const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    const DOC: &str =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#;
    const ACCT: &str = "000000000000";

    fn open(dir: &std::path::Path, clock: Arc<ManualClock>) -> IamStore {
        let meta = Arc::new(MetaStore::open(&dir.join("meta.redb")).expect("meta"));
        IamStore::open(meta, clock).expect("store")
    }

    #[test]
    fn entities_keys_sessions_persist_and_resolve() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let store = open(dir.path(), clock.clone());
        let role = store
            .create_role(
                ACCT,
                NewRole {
                    name: "Worker".into(),
                    assume_role_policy_document: TRUST.into(),
                    ..NewRole::default()
                },
            )
            .expect("role");
        assert!(matches!(
            store.create_role(
                ACCT,
                NewRole {
                    name: "worker".into(),
                    assume_role_policy_document: TRUST.into(),
                    ..NewRole::default()
                }
            ),
            Err(StoreError::EntityAlreadyExists(_))
        ));
        store
            .put_inline_policy(ACCT, Holder::Role, "worker", "inline", DOC.into())
            .expect("inline");
        let pol = store
            .create_policy(
                ACCT,
                NewPolicy {
                    name: "p".into(),
                    document: DOC.into(),
                    ..NewPolicy::default()
                },
            )
            .expect("policy");
        store
            .attach_policy(ACCT, Holder::Role, "Worker", &pol.arn)
            .expect("attach");
        let aws = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";
        store
            .attach_policy(ACCT, Holder::Role, "Worker", aws)
            .expect("attach aws");
        let session = store.assume_role(&role.arn, "job", Some(900)).expect("session");
        store.create_user(ACCT, "u", None, Vec::new()).expect("user");
        let key = store.create_access_key(ACCT, "u").expect("key");
        drop(store);

        let store = Arc::new(open(dir.path(), clock.clone()));
        let reread = store.get_role(ACCT, "WORKER").expect("role");
        assert_eq!(
            (reread.id.as_str(), reread.inline_policies.len()),
            (role.id.as_str(), 1)
        );
        assert_eq!(reread.attached_policies.len(), 2);
        let iam = Iam::with_store([], store.clone());
        let user = iam.principal(&key.access_key_id).expect("user principal");
        assert_eq!(user.arn, "arn:aws:iam::000000000000:user/u");
        assert_eq!(iam.secret_for(&key.access_key_id), Some(key.secret_access_key.clone()));
        let p = iam.principal(&session.access_key_id).expect("session principal");
        assert_eq!(p.arn, "arn:aws:sts::000000000000:assumed-role/Worker/job");
        assert_eq!(p.user_id, format!("{}:job", role.id));
        assert_eq!(iam.identity_policies(&p).len(), 3);
        assert!(iam.identity_policies(&user).is_empty());
        assert_eq!(iam.check_session(&p, Some(&session.session_token)), Ok(()));
        assert_eq!(iam.check_session(&p, None), Err(TokenError::Invalid));
        assert_eq!(iam.check_session(&p, Some("x")), Err(TokenError::Invalid));
        clock.advance(900_000);
        assert_eq!(
            iam.check_session(&p, Some(&session.session_token)),
            Err(TokenError::Expired)
        );

        store
            .update_access_key(ACCT, "u", &key.access_key_id, false)
            .expect("deactivate");
        assert!(iam.secret_for(&key.access_key_id).is_none());
        // A day later the expired session is dropped at open.
        clock.advance(25 * 3600 * 1000);
        drop(iam);
        drop(store);
        let store = open(dir.path(), clock);
        assert!(store.principal(&session.access_key_id).is_none());
    }

    #[test]
    fn versions_keys_and_names_are_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), Arc::new(ManualClock::new(0)));
        let pol = store
            .create_policy(
                ACCT,
                NewPolicy {
                    name: "p".into(),
                    path: Some("/a/b/".into()),
                    document: DOC.into(),
                    ..NewPolicy::default()
                },
            )
            .expect("policy");
        assert_eq!(pol.arn, "arn:aws:iam::000000000000:policy/a/b/p");
        assert_eq!(
            parse_policy_arn(&pol.arn),
            Some((ACCT.to_owned(), "/a/b/".to_owned(), "p".to_owned()))
        );
        for _ in 2..=5 {
            store
                .create_policy_version(ACCT, &pol.arn, DOC.into(), true)
                .expect("version");
        }
        assert!(matches!(
            store.create_policy_version(ACCT, &pol.arn, DOC.into(), false),
            Err(StoreError::LimitExceeded(_))
        ));
        assert!(matches!(
            store.delete_policy_version(ACCT, &pol.arn, "v5"),
            Err(StoreError::DeleteConflict(_))
        ));
        store.delete_policy_version(ACCT, &pol.arn, "v1").expect("delete v1");
        let v6 = store
            .create_policy_version(ACCT, &pol.arn, DOC.into(), false)
            .expect("v6");
        assert_eq!(v6.version_id, "v6");
        assert!(matches!(
            store.put_inline_policy(ACCT, Holder::Role, "nobody", "p", DOC.into()),
            Err(StoreError::NoSuchEntity(_))
        ));
        assert!(check_name("a b", "roleName", 64).is_err());
        assert!(check_name(&"a".repeat(65), "roleName", 64).is_err());
        assert!(check_name("a+=,.@-_9", "roleName", 64).is_ok());
        assert!(check_path("/x", "path").is_err());
        assert!(check_path("/x/y/", "path").is_ok());
        assert_eq!(iso8601_ms("2015-04-09T15:03:43Z"), 1_428_591_823_000);
    }
}
