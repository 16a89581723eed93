//! The ports the engine acts through. The composition root implements them over the S3 and
//! Lambda engines; every call acts as the job's role (`role_arn`), so the implementation
//! enforces that role's IAM permissions and answers with S3's / Lambda's error codes.

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;

/// A failed port call: the HTTP status and error code the service would answer with
/// (e.g. 404 `NoSuchKey`, 403 `AccessDenied`, 503 `SlowDown`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortError {
    /// HTTP status (404, 403, 500, …).
    pub http_status: u16,
    /// The service's error code (`NoSuchKey`, `AccessDenied`, …).
    pub code: String,
    /// The service's message.
    pub message: String,
}

impl PortError {
    /// A port error.
    pub fn new(http_status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            http_status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// Whether retrying may succeed: throttling (429, `SlowDown`, …) and server errors (5xx).
    pub fn is_transient(&self) -> bool {
        self.http_status >= 500
            || self.http_status == 429
            || matches!(
                self.code.as_str(),
                "SlowDown" | "RequestTimeout" | "Throttling" | "ThrottlingException" | "TooManyRequestsException"
            )
    }
}

impl std::fmt::Display for PortError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.http_status, self.message)
    }
}

impl std::error::Error for PortError {}

/// Object access for manifests, operations and reports.
#[async_trait]
pub trait BatchObjects: Send + Sync + 'static {
    /// Reads a whole object (manifests), at most `limit` bytes; returns (bytes, unquoted etag).
    /// A larger object is an error (any code; the job fails with it).
    async fn get(
        &self,
        role_arn: &str,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        limit: u64,
    ) -> Result<(Bytes, String), PortError>;

    /// Server-side copy.
    #[allow(clippy::too_many_arguments)]
    async fn copy(
        &self,
        role_arn: &str,
        src_bucket: &str,
        src_key: &str,
        src_version: Option<&str>,
        dst_bucket: &str,
        dst_key: &str,
        opts: &CopyOptions,
    ) -> Result<(), PortError>;

    /// Replaces an object's tag set.
    async fn put_tagging(
        &self,
        role_arn: &str,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        tags: &[(String, String)],
    ) -> Result<(), PortError>;

    /// Removes an object's tag set.
    async fn delete_tagging(
        &self,
        role_arn: &str,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(), PortError>;

    /// One page of `bucket`'s object versions (delete markers excluded) after `after`
    /// (`(key, version id)` of the previous page's last entry), at most `limit`, for a
    /// `ManifestGenerator`. With `eligibility`, each entry says whether a rule of the
    /// bucket's replication configuration matches it.
    async fn list_versions(
        &self,
        role_arn: &str,
        bucket: &str,
        after: Option<(String, String)>,
        limit: usize,
        eligibility: bool,
    ) -> Result<VersionListing, PortError> {
        let _ = (role_arn, bucket, after, limit, eligibility);
        Err(PortError::new(
            501,
            "NotImplemented",
            "listing versions is not supported",
        ))
    }

    /// `S3ReplicateObject`: replicates the version by the source bucket's replication
    /// configuration (acting as its role), the job's role having `s3:InitiateReplication`.
    async fn replicate(
        &self,
        role_arn: &str,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(), PortError> {
        let _ = (role_arn, bucket, key, version_id);
        Err(PortError::new(501, "NotImplemented", "replication is not supported"))
    }

    /// Writes a report file.
    async fn put(
        &self,
        role_arn: &str,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), PortError>;
}

/// One object version listed for a manifest generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedVersion {
    /// Key (not encoded).
    pub key: String,
    /// Version id (`None` in a bucket that was never versioned).
    pub version_id: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Last-Modified (ms).
    pub last_modified_ms: i64,
    /// `x-amz-replication-status` (`PENDING`, `COMPLETED`, `FAILED`, `REPLICA`), if any.
    pub replication_status: Option<String>,
    /// A replication rule matches it (when asked for).
    pub eligible: bool,
}

/// One page of [`BatchObjects::list_versions`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionListing {
    /// The versions, in key order, newest first within a key.
    pub versions: Vec<ListedVersion>,
    /// Where the next page starts, when there is one.
    pub next: Option<(String, String)>,
}

/// What an `S3PutObjectCopy` task asks of [`BatchObjects::copy`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// `COPY` or `REPLACE` (as the job gave it; `None`: S3's default, COPY).
    pub metadata_directive: Option<String>,
    /// User metadata (without the `x-amz-meta-` prefix).
    pub new_metadata: BTreeMap<String, String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `x-amz-storage-class`.
    pub storage_class: Option<String>,
    /// `COPY` or `REPLACE` (`REPLACE` when the job gives `NewObjectTagging`).
    pub tagging_directive: Option<String>,
    /// The new tag set (with `tagging_directive` `REPLACE`).
    pub new_tags: Vec<(String, String)>,
}

/// A synchronous invocation's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeOutput {
    /// The response document (or the error document with a function error).
    pub payload: Bytes,
    /// `X-Amz-Function-Error` (`Unhandled`, `Handled`).
    pub function_error: Option<String>,
}

/// Function invocation for `LambdaInvoke` jobs.
#[async_trait]
pub trait BatchFunctions: Send + Sync + 'static {
    /// Synchronous invoke of `function_arn` as the job's role.
    async fn invoke(&self, role_arn: &str, function_arn: &str, payload: Bytes) -> Result<InvokeOutput, PortError>;
}
