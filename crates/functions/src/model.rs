//! The Lambda data model: stored documents (one JSON document per function in the
//! `lambda_functions` table, holding `$LATEST`, the published versions, aliases, the
//! resource policy and the invoke settings), the views the API returns, and the ports the
//! engine needs from the rest of the system (roles and credentials, code in S3).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::host::Credentials;

/// Format version of stored documents.
pub const FORMAT_VERSION: u32 = 1;

/// Runtimes accepted by CreateFunction (the ones kinesis-data can run).
pub const RUNTIMES: &[&str] = &[
    "provided.al2023",
    "provided.al2",
    "provided",
    "python3.9",
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "python3.14",
    "nodejs18.x",
    "nodejs20.x",
    "nodejs22.x",
    "nodejs24.x",
];

/// Where a request acts: the caller's account and region.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// 12-digit account.
    pub account: String,
    /// Region.
    pub region: String,
}

/// One version's configuration (`$LATEST` or a published number).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionConfig {
    /// `$LATEST` or `1`, `2`, ….
    pub version: String,
    /// Runtime identifier.
    pub runtime: String,
    /// Handler.
    pub handler: String,
    /// Execution role ARN.
    pub role: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Timeout in seconds (1..=900).
    pub timeout: u32,
    /// Memory in MB (128..=10240).
    pub memory_size: u32,
    /// Environment variables.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// `x86_64` or `arm64`.
    pub architecture: String,
    /// Ephemeral storage in MB (512..=10240), recorded.
    #[serde(default = "default_ephemeral")]
    pub ephemeral_storage: u32,
    /// SHA-256 of the deployment package, lower-case hex (names its file in the code store).
    pub code_sha256_hex: String,
    /// Size of the deployment package in bytes.
    pub code_size: u64,
    /// Last modification, ms since the epoch.
    pub last_modified_ms: i64,
    /// Changes with every update (`RevisionId`).
    pub revision_id: String,
    /// The function is `Pending` before this instant and `Active` from it.
    pub active_at_ms: i64,
    /// Whether the last update is still `InProgress` before `active_at_ms` (else it was a
    /// create).
    #[serde(default)]
    pub updated: bool,
    /// Dead-letter target ARN (recorded; failed async events go to the on-failure
    /// destination or the dead-letter log).
    #[serde(default)]
    pub dead_letter_target: Option<String>,
    /// Layers (recorded, not applied).
    #[serde(default)]
    pub layers: Vec<String>,
    /// `LoggingConfig.LogFormat` (`Text` or `JSON`).
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// `LoggingConfig.LogGroup` (None: `/aws/lambda/<name>`).
    #[serde(default)]
    pub log_group: Option<String>,
    /// `LoggingConfig.ApplicationLogLevel` (JSON format only; recorded).
    #[serde(default)]
    pub application_log_level: Option<String>,
    /// `LoggingConfig.SystemLogLevel` (JSON format only; recorded).
    #[serde(default)]
    pub system_log_level: Option<String>,
}

impl VersionConfig {
    /// The log group the function's output goes to.
    pub fn log_group_of(&self, function_name: &str) -> String {
        self.log_group
            .clone()
            .unwrap_or_else(|| format!("/aws/lambda/{function_name}"))
    }

    /// `LoggingConfig` as GetFunctionConfiguration shows it (levels only with JSON, `INFO`
    /// unless set).
    pub fn logging_config(&self, function_name: &str) -> serde_json::Value {
        let mut v = serde_json::json!({"LogFormat": self.log_format, "LogGroup": self.log_group_of(function_name)});
        if self.log_format == "JSON" {
            v["ApplicationLogLevel"] = serde_json::json!(self.application_log_level.as_deref().unwrap_or("INFO"));
            v["SystemLogLevel"] = serde_json::json!(self.system_log_level.as_deref().unwrap_or("INFO"));
        }
        v
    }
}

fn default_ephemeral() -> u32 {
    512
}

fn default_log_format() -> String {
    "Text".to_owned()
}

/// An alias: a name for a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasDoc {
    /// Alias name.
    pub name: String,
    /// The version it points at.
    pub function_version: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Revision id.
    pub revision_id: String,
}

/// Asynchronous invocation settings (`PutFunctionEventInvokeConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventInvokeConfig {
    /// Retries after a function error (0..=2, default 2).
    pub maximum_retry_attempts: Option<u32>,
    /// Oldest event age before it is discarded (60..=21600 s, default 21600).
    pub maximum_event_age_seconds: Option<u32>,
    /// ARN of the on-success destination.
    pub on_success: Option<String>,
    /// ARN of the on-failure destination.
    pub on_failure: Option<String>,
    /// Last modification, ms since the epoch.
    pub last_modified_ms: i64,
}

/// The stored document of one function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDoc {
    /// Format version.
    pub version: u32,
    /// Owning account.
    pub account: String,
    /// Region.
    pub region: String,
    /// Name.
    pub name: String,
    /// Unqualified ARN.
    pub arn: String,
    /// `$LATEST`.
    pub latest: VersionConfig,
    /// Published versions by number.
    #[serde(default)]
    pub published: BTreeMap<u64, VersionConfig>,
    /// The next version number PublishVersion gives.
    #[serde(default = "one")]
    pub next_version: u64,
    /// Aliases by name.
    #[serde(default)]
    pub aliases: BTreeMap<String, AliasDoc>,
    /// Resource-policy statements (AddPermission), in order.
    #[serde(default)]
    pub policy: Vec<serde_json::Value>,
    /// The policy's revision id.
    #[serde(default)]
    pub policy_revision: String,
    /// Reserved concurrency.
    #[serde(default)]
    pub reserved_concurrency: Option<u32>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Asynchronous invocation settings.
    #[serde(default)]
    pub event_invoke: Option<EventInvokeConfig>,
}

fn one() -> u64 {
    1
}

impl FunctionDoc {
    /// The configuration of `version` (`$LATEST` or a number).
    pub fn version_config(&self, version: &str) -> Option<&VersionConfig> {
        if version == "$LATEST" {
            return Some(&self.latest);
        }
        version.parse::<u64>().ok().and_then(|n| self.published.get(&n))
    }
}

/// `Environment` / `Code` / … inputs of CreateFunction, already decoded by the adapter.
#[derive(Debug, Clone, Default)]
pub struct FunctionInput {
    /// Runtime.
    pub runtime: Option<String>,
    /// Handler.
    pub handler: Option<String>,
    /// Role ARN.
    pub role: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Timeout in seconds.
    pub timeout: Option<u32>,
    /// Memory in MB.
    pub memory_size: Option<u32>,
    /// Environment variables (`Some(empty)` clears them).
    pub environment: Option<BTreeMap<String, String>>,
    /// Architectures (exactly one).
    pub architectures: Option<Vec<String>>,
    /// Ephemeral storage in MB.
    pub ephemeral_storage: Option<u32>,
    /// Dead-letter target ARN (`Some("")` clears it).
    pub dead_letter_target: Option<String>,
    /// Layer ARNs.
    pub layers: Option<Vec<String>>,
    /// Log format.
    pub log_format: Option<String>,
    /// `LoggingConfig.LogGroup`.
    pub log_group: Option<String>,
    /// `LoggingConfig.ApplicationLogLevel`.
    pub application_log_level: Option<String>,
    /// `LoggingConfig.SystemLogLevel`.
    pub system_log_level: Option<String>,
    /// Expected revision id (update only).
    pub revision_id: Option<String>,
}

/// Where a deployment package comes from.
#[derive(Debug, Clone)]
pub enum CodeInput {
    /// The zip's bytes.
    Zip(bytes::Bytes),
    /// An object in our S3.
    S3 {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Version id.
        version: Option<String>,
    },
}

/// What the control plane shows of one version (`FunctionConfiguration`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionConfiguration {
    pub function_name: String,
    pub function_arn: String,
    pub runtime: String,
    pub role: String,
    pub handler: String,
    pub code_size: u64,
    pub description: String,
    pub timeout: u32,
    pub memory_size: u32,
    pub last_modified: String,
    pub code_sha256: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<serde_json::Value>,
    pub tracing_config: serde_json::Value,
    pub revision_id: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason_code: Option<String>,
    pub last_update_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update_status_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update_status_reason_code: Option<String>,
    pub package_type: String,
    pub architectures: Vec<String>,
    pub ephemeral_storage: serde_json::Value,
    pub snap_start: serde_json::Value,
    pub logging_config: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_config: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<serde_json::Value>,
    pub runtime_version_config: serde_json::Value,
}

/// A parsed `FunctionName` (name, `name:qualifier`, ARN or partial ARN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    /// Account named in an ARN, if any.
    pub account: Option<String>,
    /// Region named in a full ARN, if any.
    pub region: Option<String>,
    /// Function name.
    pub name: String,
    /// Version or alias in the name/ARN, if any.
    pub qualifier: Option<String>,
}

impl FunctionRef {
    /// Parses any of AWS's function name forms: `f`, `f:q`, `123456789012:function:f[:q]`,
    /// `arn:aws:lambda:us-east-1:123456789012:function:f[:q]`.
    pub fn parse(s: &str) -> Option<FunctionRef> {
        let parts: Vec<&str> = s.split(':').collect();
        let (account, region, rest): (Option<&str>, Option<&str>, &[&str]) = match parts.as_slice() {
            ["arn", partition, "lambda", region, account, "function", rest @ ..] if partition.starts_with("aws") => {
                (Some(account), Some(region), rest)
            }
            [account, "function", rest @ ..] if account.len() == 12 => (Some(account), None, rest),
            rest => (None, None, rest),
        };
        let (name, qualifier) = match rest {
            [name] => (*name, None),
            [name, q] => (*name, Some(*q)),
            _ => return None,
        };
        if !valid_name(name) || qualifier.is_some_and(|q| !valid_qualifier(q)) {
            return None;
        }
        if account.is_some_and(|a| a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit())) {
            return None;
        }
        Some(FunctionRef {
            account: account.map(str::to_owned),
            region: region.map(str::to_owned),
            name: name.to_owned(),
            qualifier: qualifier.map(str::to_owned),
        })
    }
}

/// Function names: 1-64 of `[a-zA-Z0-9-_]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Qualifiers: `$LATEST`, a version number or an alias name (`[a-zA-Z0-9-_]{1,128}`).
pub fn valid_qualifier(q: &str) -> bool {
    q == "$LATEST"
        || (!q.is_empty() && q.len() <= 128 && q.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// Alias names: not only digits (those are versions).
pub fn valid_alias_name(name: &str) -> bool {
    valid_qualifier(name) && name != "$LATEST" && !name.bytes().all(|b| b.is_ascii_digit())
}

/// The function ARN for `name` in `scope`.
pub fn function_arn(scope: &Scope, name: &str) -> String {
    format!("arn:aws:lambda:{}:{}:function:{name}", scope.region, scope.account)
}

/// The execution role's part of the system (the IAM store), as the engine needs it.
pub trait Roles: Send + Sync + 'static {
    /// `Ok` when `role_arn` names an existing role that trusts `lambda.amazonaws.com`
    /// (always `Ok` when IAM is off); the error is AWS's message.
    fn check_lambda_trust(&self, role_arn: &str) -> Result<(), String>;
    /// Temporary credentials for an instance of `function_name` acting as `role_arn`.
    fn credentials(&self, role_arn: &str, function_name: &str) -> Result<Credentials, String>;
}

/// Reads a deployment package from S3 (`Code.S3Bucket`/`S3Key`).
#[async_trait::async_trait]
pub trait CodeFetcher: Send + Sync + 'static {
    /// The object's bytes, at most `limit` of them; the error is AWS's message
    /// (InvalidParameterValueException).
    async fn fetch(
        &self,
        account: &str,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        limit: u64,
    ) -> Result<bytes::Bytes, String>;
}

/// Formats ms since the epoch as Lambda's `LastModified` (`2024-05-01T13:22:10.123+0000`).
pub fn last_modified(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let (y, mo, d) = kd_storage::civil::civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}+0000",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_refs() {
        let r = FunctionRef::parse("f").expect("name");
        assert_eq!((r.name.as_str(), r.qualifier), ("f", None));
        let r = FunctionRef::parse("f:prod").expect("alias");
        assert_eq!(r.qualifier.as_deref(), Some("prod"));
        let r = FunctionRef::parse("123456789012:function:f:3").expect("partial");
        assert_eq!(r.account.as_deref(), Some("123456789012"));
        assert_eq!(r.qualifier.as_deref(), Some("3"));
        let r = FunctionRef::parse("arn:aws:lambda:eu-west-1:123456789012:function:my-fn").expect("arn");
        assert_eq!(r.region.as_deref(), Some("eu-west-1"));
        assert_eq!(r.name, "my-fn");
        assert!(FunctionRef::parse("arn:aws:lambda:eu-west-1:123456789012:function:f:$LATEST").is_some());
        assert!(FunctionRef::parse("bad name").is_none());
        assert!(FunctionRef::parse("").is_none());
        assert!(FunctionRef::parse(&"x".repeat(65)).is_none());
        assert!(FunctionRef::parse("a:b:c:d").is_none());
    }

    #[test]
    fn last_modified_format() {
        assert_eq!(last_modified(1_714_569_730_123), "2024-05-01T13:22:10.123+0000");
    }
}
