//! Workgroups: named settings that query executions run under (output location and whether
//! it is enforced, the per-query scan cutoff, the engine version, state, tags), per account
//! and region, as Athena's CreateWorkGroup / GetWorkGroup / ListWorkGroups / UpdateWorkGroup /
//! DeleteWorkGroup and TagResource / UntagResource / ListTagsForResource manage them.
//!
//! # Durability (table `athena_workgroups`, key `<account>/<region>/<name>`, value [`WorkGroup`] as JSON)
//!
//! One document per workgroup (its configuration and tags included), written before the
//! change is acknowledged; a change of one workgroup is one redb transaction. A recursive
//! DeleteWorkGroup deletes the workgroup's document and every execution document of the
//! workgroup in the same transaction. Names are `[a-zA-Z0-9._-]{1,128}`, so the `/` of the key
//! separates its parts unambiguously, and keys sort by name within an account and region.
//!
//! **`primary`** exists in every account and region: the first operation or query that
//! touches an account and region's `primary` commits its document (the engine's
//! `primary_output_location` as its OutputLocation, EnforceWorkGroupConfiguration false, as
//! AWS's own `primary`), and it cannot be deleted. **Recovery rule** ([`Query::open`]): every
//! stored document is loaded; a stored `primary` that UpdateWorkGroup never changed
//! (`modified` false) takes the OutputLocation of the current settings, so changing
//! `[athena] output_location` keeps working after its first use; a document that cannot be
//! read stops the start (as a corrupt execution does).

use std::collections::BTreeMap;

use kd_storage::MetaOp;
use serde::{Deserialize, Serialize};

use crate::engine::{Inner, PRIMARY, Query, State, T_EXECUTIONS, lock};
use crate::error::{Error, Result};
use crate::ports::{Scope, split_s3};

pub(crate) const T_WORKGROUPS: &str = "athena_workgroups";
const FORMAT_VERSION: u32 = 1;
/// The only effective engine version.
pub const EFFECTIVE_ENGINE_VERSION: &str = "Athena engine version 3";
/// The engine versions a workgroup may select.
pub const ENGINE_VERSIONS: &[&str] = &["AUTO", EFFECTIVE_ENGINE_VERSION];
/// Smallest BytesScannedCutoffPerQuery (10 MB, as AWS).
pub const MIN_BYTES_SCANNED_CUTOFF: u64 = 10_000_000;
/// Longest description.
pub const MAX_DESCRIPTION: usize = 1024;
/// Most tags on one resource.
pub const MAX_TAGS: usize = 50;
/// Longest OutputLocation.
pub const MAX_OUTPUT_LOCATION: usize = 1024;
/// Workgroups kept per account and region (AWS's default quota is 1,000).
pub const MAX_WORKGROUPS: usize = 1000;
/// The StateChangeReason of an execution cancelled by its workgroup's BytesScannedCutoffPerQuery.
pub const BYTES_SCANNED_LIMIT_EXCEEDED: &str = "Bytes scanned limit was exceeded";

/// ENABLED or DISABLED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkGroupState {
    /// Queries may run.
    Enabled,
    /// StartQueryExecution is refused.
    Disabled,
}

impl WorkGroupState {
    /// Athena's name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkGroupState::Enabled => "ENABLED",
            WorkGroupState::Disabled => "DISABLED",
        }
    }

    /// Parses Athena's name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "ENABLED" => Ok(WorkGroupState::Enabled),
            "DISABLED" => Ok(WorkGroupState::Disabled),
            other => Err(Error::InvalidRequest(format!(
                "1 validation error detected: Value '{other}' at 'state' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED]"
            ))),
        }
    }
}

/// EncryptionConfiguration (stored and shown; results are not encrypted here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// `SSE_S3`, `SSE_KMS` or `CSE_KMS`.
    pub option: String,
    /// KmsKey.
    pub kms_key: Option<String>,
}

/// A workgroup's ResultConfiguration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultSettings {
    /// OutputLocation (`s3://bucket/prefix/`).
    pub output_location: Option<String>,
    /// EncryptionConfiguration.
    pub encryption: Option<Encryption>,
    /// ExpectedBucketOwner.
    pub expected_bucket_owner: Option<String>,
    /// AclConfiguration.S3AclOption.
    pub acl: Option<String>,
}

/// A workgroup's Configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkGroupConfig {
    /// ResultConfiguration.
    pub result: ResultSettings,
    /// EnforceWorkGroupConfiguration: the workgroup's OutputLocation wins over the request's.
    pub enforce: bool,
    /// PublishCloudWatchMetricsEnabled (stored; no metrics are published).
    pub publish_metrics: bool,
    /// BytesScannedCutoffPerQuery.
    pub bytes_cutoff: Option<u64>,
    /// RequesterPaysEnabled (stored).
    pub requester_pays: bool,
    /// EngineVersion.SelectedEngineVersion.
    pub engine_version: String,
}

impl WorkGroupConfig {
    /// What CreateWorkGroup gives a workgroup when its request says nothing (AWS enforces
    /// the workgroup's configuration by default).
    pub fn created_default() -> Self {
        WorkGroupConfig {
            result: ResultSettings::default(),
            enforce: true,
            publish_metrics: false,
            bytes_cutoff: None,
            requester_pays: false,
            engine_version: "AUTO".into(),
        }
    }

    fn primary(output_location: Option<String>) -> Self {
        WorkGroupConfig {
            result: ResultSettings {
                output_location,
                ..ResultSettings::default()
            },
            enforce: false,
            ..WorkGroupConfig::created_default()
        }
    }

    /// EngineVersion.EffectiveEngineVersion.
    pub fn effective_engine_version(&self) -> &'static str {
        EFFECTIVE_ENGINE_VERSION
    }
}

/// One workgroup (its durable document).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkGroup {
    /// Format version.
    pub version: u32,
    /// Account.
    pub account: String,
    /// Region.
    pub region: String,
    /// Name.
    pub name: String,
    /// State.
    pub state: WorkGroupState,
    /// Description.
    pub description: Option<String>,
    /// CreationTime (ms).
    pub created_ms: i64,
    /// Configuration.
    pub config: WorkGroupConfig,
    /// Tags, by key.
    pub tags: BTreeMap<String, String>,
    /// Changed by UpdateWorkGroup since it was made (only matters for `primary`, whose
    /// OutputLocation follows the engine's settings until then).
    #[serde(default)]
    pub modified: bool,
}

impl WorkGroup {
    /// `arn:aws:athena:<region>:<account>:workgroup/<name>`.
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:athena:{}:{}:workgroup/{}",
            self.region, self.account, self.name
        )
    }
}

/// CreateWorkGroup's input.
#[derive(Debug, Clone)]
pub struct NewWorkGroup {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Configuration ([`WorkGroupConfig::created_default`] when the request has none).
    pub config: WorkGroupConfig,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

/// UpdateWorkGroup's ConfigurationUpdates: `None` leaves a setting as it is; a `remove_*`
/// flag clears it (and wins over a new value, as AWS documents).
#[derive(Debug, Clone, Default)]
pub struct ConfigUpdate {
    /// EnforceWorkGroupConfiguration.
    pub enforce: Option<bool>,
    /// PublishCloudWatchMetricsEnabled.
    pub publish_metrics: Option<bool>,
    /// BytesScannedCutoffPerQuery.
    pub bytes_cutoff: Option<u64>,
    /// RemoveBytesScannedCutoffPerQuery.
    pub remove_bytes_cutoff: bool,
    /// RequesterPaysEnabled.
    pub requester_pays: Option<bool>,
    /// EngineVersion.SelectedEngineVersion.
    pub engine_version: Option<String>,
    /// ResultConfigurationUpdates.OutputLocation.
    pub output_location: Option<String>,
    /// ResultConfigurationUpdates.RemoveOutputLocation.
    pub remove_output_location: bool,
    /// ResultConfigurationUpdates.EncryptionConfiguration.
    pub encryption: Option<Encryption>,
    /// ResultConfigurationUpdates.RemoveEncryptionConfiguration.
    pub remove_encryption: bool,
    /// ResultConfigurationUpdates.ExpectedBucketOwner.
    pub expected_bucket_owner: Option<String>,
    /// ResultConfigurationUpdates.RemoveExpectedBucketOwner.
    pub remove_expected_bucket_owner: bool,
    /// ResultConfigurationUpdates.AclConfiguration.S3AclOption.
    pub acl: Option<String>,
    /// ResultConfigurationUpdates.RemoveAclConfiguration.
    pub remove_acl: bool,
}

/// UpdateWorkGroup's input.
#[derive(Debug, Clone, Default)]
pub struct WorkGroupUpdate {
    /// Description.
    pub description: Option<String>,
    /// State.
    pub state: Option<WorkGroupState>,
    /// ConfigurationUpdates.
    pub config: Option<ConfigUpdate>,
}

fn validation(value: &str, at: &str, constraint: &str) -> Error {
    Error::InvalidRequest(format!(
        "1 validation error detected: Value '{value}' at '{at}' failed to satisfy constraint: {constraint}"
    ))
}

/// Checks a workgroup name (`[a-zA-Z0-9._-]{1,128}`).
pub fn check_name(name: &str, at: &str) -> Result<()> {
    let ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        let shown: String = name.chars().take(256).collect();
        Err(validation(
            &shown,
            at,
            "Member must satisfy regular expression pattern: [a-zA-Z0-9._-]{1,128}",
        ))
    }
}

fn check_description(d: &Option<String>) -> Result<()> {
    match d {
        Some(d) if d.chars().count() > MAX_DESCRIPTION => Err(Error::InvalidRequest(format!(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to {MAX_DESCRIPTION}"
        ))),
        _ => Ok(()),
    }
}

fn check_output_location(l: &str) -> Result<()> {
    if l.len() > MAX_OUTPUT_LOCATION {
        return Err(Error::InvalidRequest(format!(
            "1 validation error detected: Value at 'configuration.resultConfiguration.outputLocation' failed to satisfy constraint: Member must have length less than or equal to {MAX_OUTPUT_LOCATION}"
        )));
    }
    if split_s3(l).is_none_or(|(bucket, _)| bucket.is_empty()) {
        return Err(Error::InvalidRequest(format!(
            "outputLocation {l} is not a valid S3 location (s3://bucket/path/)"
        )));
    }
    Ok(())
}

fn check_encryption(e: &Encryption) -> Result<()> {
    if !matches!(e.option.as_str(), "SSE_S3" | "SSE_KMS" | "CSE_KMS") {
        return Err(validation(
            &e.option,
            "configuration.resultConfiguration.encryptionConfiguration.encryptionOption",
            "Member must satisfy enum value set: [SSE_S3, SSE_KMS, CSE_KMS]",
        ));
    }
    if e.kms_key.as_ref().is_some_and(|k| k.len() > 2048) {
        return Err(Error::InvalidRequest("KmsKey is too long".into()));
    }
    Ok(())
}

fn check_acl(a: &str) -> Result<()> {
    if a == "BUCKET_OWNER_FULL_CONTROL" {
        Ok(())
    } else {
        Err(validation(
            a,
            "configuration.resultConfiguration.aclConfiguration.s3AclOption",
            "Member must satisfy enum value set: [BUCKET_OWNER_FULL_CONTROL]",
        ))
    }
}

fn check_owner(o: &str) -> Result<()> {
    if o.len() == 12 && o.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "ExpectedBucketOwner {o} is not a valid AWS account id"
        )))
    }
}

fn check_cutoff(c: u64) -> Result<()> {
    if c < MIN_BYTES_SCANNED_CUTOFF {
        return Err(validation(
            &c.to_string(),
            "configuration.bytesScannedCutoffPerQuery",
            &format!("Member must have value greater than or equal to {MIN_BYTES_SCANNED_CUTOFF}"),
        ));
    }
    Ok(())
}

fn check_engine_version(v: &str) -> Result<()> {
    if ENGINE_VERSIONS.contains(&v) {
        Ok(())
    } else {
        let shown: String = v.chars().take(256).collect();
        Err(Error::InvalidRequest(format!(
            "The engine version {shown} is not supported. Supported engine versions: AUTO, {EFFECTIVE_ENGINE_VERSION}"
        )))
    }
}

/// Checks a whole configuration (CreateWorkGroup).
pub fn check_config(c: &WorkGroupConfig) -> Result<()> {
    if let Some(l) = &c.result.output_location {
        check_output_location(l)?;
    }
    if let Some(e) = &c.result.encryption {
        check_encryption(e)?;
    }
    if let Some(a) = &c.result.acl {
        check_acl(a)?;
    }
    if let Some(o) = &c.result.expected_bucket_owner {
        check_owner(o)?;
    }
    if let Some(b) = c.bytes_cutoff {
        check_cutoff(b)?;
    }
    check_engine_version(&c.engine_version)
}

/// Checks tags: keys 1–128 and values 0–256 characters, at most [`MAX_TAGS`].
pub fn check_tags<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<()> {
    let mut n = 0usize;
    for (k, v) in tags {
        n += 1;
        if k.is_empty() || k.chars().count() > 128 {
            return Err(Error::InvalidRequest(
                "1 validation error detected: Value at 'tags.member.key' failed to satisfy constraint: Member must have length between 1 and 128".into(),
            ));
        }
        if v.chars().count() > 256 {
            return Err(Error::InvalidRequest(
                "1 validation error detected: Value at 'tags.member.value' failed to satisfy constraint: Member must have length less than or equal to 256".into(),
            ));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(Error::InvalidRequest(format!(
                "Tag keys starting with 'aws:' are reserved for system use: {k}"
            )));
        }
    }
    if n > MAX_TAGS {
        return Err(Error::InvalidRequest(format!(
            "A resource can have at most {MAX_TAGS} tags"
        )));
    }
    Ok(())
}

fn key(account: &str, region: &str, name: &str) -> String {
    format!("{account}/{region}/{name}")
}

fn key_of(w: &WorkGroup) -> String {
    key(&w.account, &w.region, &w.name)
}

pub(crate) fn wg_doc(w: &WorkGroup) -> Result<MetaOp> {
    Ok(MetaOp::Put {
        table: T_WORKGROUPS.into(),
        key: key_of(w),
        value: serde_json::to_vec(w).map_err(|e| Error::Internal(e.to_string()))?,
    })
}

fn not_found(name: &str) -> Error {
    Error::InvalidRequest(format!("WorkGroup {name} is not found."))
}

/// Loads every workgroup document (the recovery rule of the module doc).
pub(crate) fn load(
    meta: &kd_storage::MetaStore,
    primary_output_location: &Option<String>,
) -> Result<BTreeMap<String, WorkGroup>> {
    let mut out = BTreeMap::new();
    for (k, v) in meta.scan_prefix(T_WORKGROUPS, "")? {
        let mut w: WorkGroup =
            serde_json::from_slice(&v).map_err(|e| Error::Internal(format!("stored workgroup {k} unreadable: {e}")))?;
        if w.name == PRIMARY && !w.modified {
            w.config.result.output_location = primary_output_location.clone();
        }
        out.insert(k, w);
    }
    Ok(out)
}

/// Where a resource ARN points: a workgroup of the caller's account and region.
fn workgroup_of_arn<'a>(scope: &Scope, arn: &'a str) -> Result<&'a str> {
    let invalid = || Error::InvalidRequest(format!("{arn} is not a valid workgroup ARN"));
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("athena"), Some(region), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(invalid());
    };
    let Some(name) = resource.strip_prefix("workgroup/") else {
        if resource.starts_with("datacatalog/") {
            return Err(Error::InvalidRequest(format!(
                "Tags are not supported on {arn}: kinesis-data tags workgroups only"
            )));
        }
        return Err(invalid());
    };
    check_name(name, "resourceARN")?;
    if region != scope.region || account != scope.account {
        return Err(Error::ResourceNotFound(format!("Resource {arn} is not found.")));
    }
    Ok(name)
}

impl Inner {
    fn find_workgroup(&self, scope: &Scope, name: &str) -> Option<WorkGroup> {
        lock(&self.workgroups)
            .get(&key(&scope.account, &scope.region, name))
            .cloned()
    }

    /// Commits `primary` of the scope if it is not stored yet. Takes the workgroup write
    /// lock only when it has to.
    pub(crate) async fn ensure_primary(&self, scope: &Scope) -> Result<()> {
        if self.find_workgroup(scope, PRIMARY).is_some() {
            return Ok(());
        }
        let _w = self.wg_lock.write().await;
        self.ensure_primary_locked(scope).await
    }

    /// [`Inner::ensure_primary`] with the write lock held.
    async fn ensure_primary_locked(&self, scope: &Scope) -> Result<()> {
        if self.find_workgroup(scope, PRIMARY).is_some() {
            return Ok(());
        }
        let w = WorkGroup {
            version: FORMAT_VERSION,
            account: scope.account.clone(),
            region: scope.region.clone(),
            name: PRIMARY.into(),
            state: WorkGroupState::Enabled,
            description: None,
            created_ms: self.clock.now_ms(),
            config: WorkGroupConfig::primary(self.config.primary_output_location.clone()),
            tags: BTreeMap::new(),
            modified: false,
        };
        self.meta.write_grouped(vec![wg_doc(&w)?]).await?;
        lock(&self.workgroups).insert(key_of(&w), w);
        Ok(())
    }

    /// The workgroup a query starts in: it must exist and be ENABLED (`primary` must have
    /// been ensured).
    pub(crate) fn workgroup_for_query(&self, scope: &Scope, name: &str) -> Result<WorkGroup> {
        let w = self.find_workgroup(scope, name).ok_or_else(|| not_found(name))?;
        if w.state == WorkGroupState::Disabled {
            return Err(Error::InvalidRequest(format!("WorkGroup {name} is disabled.")));
        }
        Ok(w)
    }

    /// Whether the workgroup exists (without committing `primary`).
    pub(crate) fn workgroup_exists(&self, scope: &Scope, name: &str) -> bool {
        name == PRIMARY || self.find_workgroup(scope, name).is_some()
    }
}

impl Query {
    /// CreateWorkGroup.
    pub async fn create_workgroup(&self, scope: &Scope, new: NewWorkGroup) -> Result<WorkGroup> {
        check_name(&new.name, "name")?;
        check_description(&new.description)?;
        check_config(&new.config)?;
        check_tags(new.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        let inner = &self.inner;
        let _w = inner.wg_lock.write().await;
        inner.ensure_primary_locked(scope).await?;
        if inner.find_workgroup(scope, &new.name).is_some() {
            return Err(Error::InvalidRequest("WorkGroup is already created".into()));
        }
        let prefix = key(&scope.account, &scope.region, "");
        let count = lock(&inner.workgroups)
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .count();
        if count >= MAX_WORKGROUPS {
            return Err(Error::InvalidRequest(format!(
                "You have exceeded the limit of {MAX_WORKGROUPS} workgroups in this Region"
            )));
        }
        let w = WorkGroup {
            version: FORMAT_VERSION,
            account: scope.account.clone(),
            region: scope.region.clone(),
            name: new.name,
            state: WorkGroupState::Enabled,
            description: new.description,
            created_ms: inner.clock.now_ms(),
            config: new.config,
            tags: new.tags.into_iter().collect(),
            modified: true,
        };
        inner.meta.write_grouped(vec![wg_doc(&w)?]).await?;
        lock(&inner.workgroups).insert(key_of(&w), w.clone());
        Ok(w)
    }

    /// GetWorkGroup.
    pub async fn get_workgroup(&self, scope: &Scope, name: &str) -> Result<WorkGroup> {
        check_name(name, "workGroup")?;
        if name == PRIMARY {
            self.inner.ensure_primary(scope).await?;
        }
        self.inner.find_workgroup(scope, name).ok_or_else(|| not_found(name))
    }

    /// ListWorkGroups: up to `max` workgroups after `after` (a name; the previous page's
    /// NextToken), sorted by name, and whether there are more.
    pub async fn list_workgroups(
        &self,
        scope: &Scope,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<WorkGroup>, Option<String>)> {
        self.inner.ensure_primary(scope).await?;
        let prefix = key(&scope.account, &scope.region, "");
        let start = match after {
            Some(a) => {
                check_name(a, "nextToken").map_err(|_| Error::InvalidRequest("The NextToken is not valid.".into()))?;
                std::ops::Bound::Excluded(key(&scope.account, &scope.region, a))
            }
            None => std::ops::Bound::Included(prefix.clone()),
        };
        let all = lock(&self.inner.workgroups);
        let mut items: Vec<WorkGroup> = all
            .range((start, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .take(max.saturating_add(1))
            .map(|(_, w)| w.clone())
            .collect();
        let next = if items.len() > max {
            items.truncate(max);
            items.last().map(|w| w.name.clone())
        } else {
            None
        };
        Ok((items, next))
    }

    /// UpdateWorkGroup.
    pub async fn update_workgroup(&self, scope: &Scope, name: &str, update: WorkGroupUpdate) -> Result<WorkGroup> {
        check_name(name, "workGroup")?;
        check_description(&update.description)?;
        let inner = &self.inner;
        let _w = inner.wg_lock.write().await;
        if name == PRIMARY {
            inner.ensure_primary_locked(scope).await?;
        }
        let mut w = inner.find_workgroup(scope, name).ok_or_else(|| not_found(name))?;
        if let Some(d) = update.description {
            w.description = Some(d);
        }
        if let Some(s) = update.state {
            w.state = s;
        }
        if let Some(u) = update.config {
            let c = &mut w.config;
            if let Some(v) = u.enforce {
                c.enforce = v;
            }
            if let Some(v) = u.publish_metrics {
                c.publish_metrics = v;
            }
            if let Some(v) = u.requester_pays {
                c.requester_pays = v;
            }
            if u.remove_bytes_cutoff {
                c.bytes_cutoff = None;
            } else if let Some(v) = u.bytes_cutoff {
                c.bytes_cutoff = Some(v);
            }
            if let Some(v) = u.engine_version {
                c.engine_version = v;
            }
            let r = &mut c.result;
            if u.remove_output_location {
                r.output_location = None;
            } else if let Some(v) = u.output_location {
                r.output_location = Some(v);
            }
            if u.remove_encryption {
                r.encryption = None;
            } else if let Some(v) = u.encryption {
                r.encryption = Some(v);
            }
            if u.remove_expected_bucket_owner {
                r.expected_bucket_owner = None;
            } else if let Some(v) = u.expected_bucket_owner {
                r.expected_bucket_owner = Some(v);
            }
            if u.remove_acl {
                r.acl = None;
            } else if let Some(v) = u.acl {
                r.acl = Some(v);
            }
            check_config(c)?;
        }
        w.modified = true;
        inner.meta.write_grouped(vec![wg_doc(&w)?]).await?;
        lock(&inner.workgroups).insert(key_of(&w), w.clone());
        Ok(w)
    }

    /// DeleteWorkGroup. `primary` cannot be deleted; a workgroup that still has query
    /// executions is refused unless `recursive`, which deletes them (running ones are
    /// stopped) in the same transaction as the workgroup. Result files stay in S3.
    pub async fn delete_workgroup(&self, scope: &Scope, name: &str, recursive: bool) -> Result<()> {
        check_name(name, "workGroup")?;
        if name == PRIMARY {
            return Err(Error::InvalidRequest("The primary workgroup cannot be deleted.".into()));
        }
        let inner = &self.inner;
        let _w = inner.wg_lock.write().await;
        let w = inner.find_workgroup(scope, name).ok_or_else(|| not_found(name))?;
        let execs: Vec<(String, State)> = lock(&inner.execs)
            .values()
            .filter(|e| e.account == scope.account && e.region == scope.region && e.workgroup == name)
            .map(|e| (e.id.clone(), e.state))
            .collect();
        if !execs.is_empty() && !recursive {
            return Err(Error::InvalidRequest(format!("WorkGroup {name} is not empty")));
        }
        {
            let mut running = lock(&inner.running);
            for (id, _) in &execs {
                if let Some(r) = running.remove(id)
                    && let Some(a) = r.abort
                {
                    a.abort();
                }
            }
        }
        let mut ops: Vec<MetaOp> = execs
            .iter()
            .map(|(id, _)| MetaOp::Delete {
                table: T_EXECUTIONS.into(),
                key: id.clone(),
            })
            .collect();
        ops.push(MetaOp::Delete {
            table: T_WORKGROUPS.into(),
            key: key_of(&w),
        });
        inner.meta.write_grouped(ops).await?;
        {
            let mut all = lock(&inner.execs);
            for (id, _) in &execs {
                all.remove(id);
            }
        }
        lock(&inner.workgroups).remove(&key_of(&w));
        Ok(())
    }

    /// TagResource on a workgroup ARN: adds or replaces the tags.
    pub async fn tag_workgroup(&self, scope: &Scope, arn: &str, tags: Vec<(String, String)>) -> Result<()> {
        let name = workgroup_of_arn(scope, arn)?.to_owned();
        check_tags(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        self.change_tags(scope, arn, &name, |t| {
            t.extend(tags);
        })
        .await
    }

    /// UntagResource on a workgroup ARN.
    pub async fn untag_workgroup(&self, scope: &Scope, arn: &str, keys: Vec<String>) -> Result<()> {
        let name = workgroup_of_arn(scope, arn)?.to_owned();
        self.change_tags(scope, arn, &name, |t| {
            for k in &keys {
                t.remove(k);
            }
        })
        .await
    }

    async fn change_tags(
        &self,
        scope: &Scope,
        arn: &str,
        name: &str,
        f: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Result<()> {
        let inner = &self.inner;
        let _w = inner.wg_lock.write().await;
        if name == PRIMARY {
            inner.ensure_primary_locked(scope).await?;
        }
        let mut w = inner
            .find_workgroup(scope, name)
            .ok_or_else(|| Error::ResourceNotFound(format!("Resource {arn} is not found.")))?;
        f(&mut w.tags);
        check_tags(w.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        inner.meta.write_grouped(vec![wg_doc(&w)?]).await?;
        lock(&inner.workgroups).insert(key_of(&w), w);
        Ok(())
    }

    /// ListTagsForResource on a workgroup ARN: up to `max` tags after the key `after`,
    /// sorted by key, and the next page's token.
    pub async fn workgroup_tags(
        &self,
        scope: &Scope,
        arn: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<(String, String)>, Option<String>)> {
        let name = workgroup_of_arn(scope, arn)?;
        if name == PRIMARY {
            self.inner.ensure_primary(scope).await?;
        }
        let w = self
            .inner
            .find_workgroup(scope, name)
            .ok_or_else(|| Error::ResourceNotFound(format!("Resource {arn} is not found.")))?;
        let mut items: Vec<(String, String)> = w
            .tags
            .into_iter()
            .filter(|(k, _)| after.is_none_or(|a| k.as_str() > a))
            .take(max.saturating_add(1))
            .collect();
        let next = if items.len() > max {
            items.truncate(max);
            items.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        Ok((items, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_model_pattern() {
        assert!(check_name("a.b_c-1", "name").is_ok());
        assert!(check_name(&"x".repeat(128), "name").is_ok());
        assert!(check_name(&"x".repeat(129), "name").is_err());
        assert!(check_name("", "name").is_err());
        assert!(check_name("a/b", "name").is_err());
        assert!(check_name("é", "name").is_err());
    }

    #[test]
    fn arns_name_a_workgroup_of_the_caller() {
        let s = Scope {
            account: "123456789012".into(),
            region: "us-east-1".into(),
        };
        assert_eq!(
            workgroup_of_arn(&s, "arn:aws:athena:us-east-1:123456789012:workgroup/wg").ok(),
            Some("wg")
        );
        assert!(matches!(
            workgroup_of_arn(&s, "arn:aws:athena:eu-west-1:123456789012:workgroup/wg"),
            Err(Error::ResourceNotFound(_))
        ));
        assert!(matches!(
            workgroup_of_arn(&s, "arn:aws:s3:::b"),
            Err(Error::InvalidRequest(_))
        ));
    }

    #[test]
    fn configurations_are_checked() {
        let mut c = WorkGroupConfig::created_default();
        assert!(check_config(&c).is_ok());
        c.bytes_cutoff = Some(9_999_999);
        assert!(check_config(&c).is_err());
        c.bytes_cutoff = Some(MIN_BYTES_SCANNED_CUTOFF);
        c.result.output_location = Some("/tmp/x".into());
        assert!(check_config(&c).is_err());
        c.result.output_location = Some("s3://b/p/".into());
        c.engine_version = "Athena engine version 1".into();
        assert!(check_config(&c).is_err());
        c.engine_version = EFFECTIVE_ENGINE_VERSION.into();
        assert!(check_config(&c).is_ok());
    }
}
