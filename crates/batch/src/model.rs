//! The engine's public types: what CreateJob asks for ([`JobSpec`]) and what DescribeJob /
//! ListJobs answer ([`JobInfo`], [`JobSummary`]). Member names follow S3 Control's model;
//! enum-valued members the engine only echoes are kept as the strings the caller sent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The account and region a job lives in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// 12-digit account id.
    pub account: String,
    /// Region.
    pub region: String,
}

/// `JobStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobStatus {
    /// Running tasks.
    Active,
    /// Terminal: cancelled.
    Cancelled,
    /// Cancel requested; in-flight tasks finish, then the report is written.
    Cancelling,
    /// Terminal: every task ran.
    Complete,
    /// Every task ran; the report is being written.
    Completing,
    /// Terminal: failed (see `FailureReasons`).
    Failed,
    /// Failing; in-flight tasks finish, then the report is written.
    Failing,
    /// Created, not yet preparing.
    New,
    /// Not used by this engine (a lower-priority job simply waits while Active).
    Paused,
    /// Not used by this engine.
    Pausing,
    /// Reading the manifest.
    Preparing,
    /// Prepared; waits for a task slot.
    Ready,
    /// Prepared; waits for confirmation (`ConfirmationRequired`).
    Suspended,
}

impl JobStatus {
    /// Every status, in the model's order.
    pub const ALL: [JobStatus; 13] = [
        JobStatus::Active,
        JobStatus::Cancelled,
        JobStatus::Cancelling,
        JobStatus::Complete,
        JobStatus::Completing,
        JobStatus::Failed,
        JobStatus::Failing,
        JobStatus::New,
        JobStatus::Paused,
        JobStatus::Pausing,
        JobStatus::Preparing,
        JobStatus::Ready,
        JobStatus::Suspended,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Active => "Active",
            JobStatus::Cancelled => "Cancelled",
            JobStatus::Cancelling => "Cancelling",
            JobStatus::Complete => "Complete",
            JobStatus::Completing => "Completing",
            JobStatus::Failed => "Failed",
            JobStatus::Failing => "Failing",
            JobStatus::New => "New",
            JobStatus::Paused => "Paused",
            JobStatus::Pausing => "Pausing",
            JobStatus::Preparing => "Preparing",
            JobStatus::Ready => "Ready",
            JobStatus::Suspended => "Suspended",
        }
    }

    /// The status of a wire name.
    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Complete, Cancelled or Failed.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Complete | JobStatus::Cancelled | JobStatus::Failed)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `RequestedJobStatus` of UpdateJobStatus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestedStatus {
    /// Confirm a Suspended job.
    Ready,
    /// Cancel the job.
    Cancelled,
}

impl RequestedStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestedStatus::Ready => "Ready",
            RequestedStatus::Cancelled => "Cancelled",
        }
    }
}

/// A tag (`S3Tag`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// CreateJob's input (without the account, which is the [`Scope`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// `ClientRequestToken` (idempotency).
    pub client_request_token: String,
    /// `ConfirmationRequired`: the job waits in `Suspended` after preparing.
    pub confirmation_required: bool,
    /// `Operation` (exactly one).
    pub operation: Operation,
    /// `Report`.
    pub report: Report,
    /// `Manifest` (empty, `format` `""`, when the job has a `ManifestGenerator`).
    pub manifest: Manifest,
    /// `ManifestGenerator`: the tasks are the source bucket's versions that its filter
    /// selects, instead of a manifest's rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_generator: Option<ManifestGenerator>,
    /// `Description`.
    pub description: Option<String>,
    /// `Priority` (0..=2147483647; higher runs first).
    pub priority: i32,
    /// `RoleArn`: every task, the manifest read and the report write act as this role.
    pub role_arn: String,
    /// `Tags`.
    pub tags: Vec<Tag>,
}

/// `JobOperation` (the supported ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    /// `LambdaInvoke`.
    LambdaInvoke(LambdaInvoke),
    /// `S3PutObjectCopy` (boxed: it is much larger than the others).
    S3PutObjectCopy(Box<CopyObject>),
    /// `S3PutObjectTagging`.
    S3PutObjectTagging(PutTagging),
    /// `S3DeleteObjectTagging`.
    S3DeleteObjectTagging,
    /// `S3ReplicateObject` (S3 Batch Replication): replicate each version by the source
    /// bucket's replication configuration.
    S3ReplicateObject,
}

impl Operation {
    /// The `OperationName` (ListJobs).
    pub fn name(&self) -> &'static str {
        match self {
            Operation::LambdaInvoke(_) => "LambdaInvoke",
            Operation::S3PutObjectCopy(_) => "S3PutObjectCopy",
            Operation::S3PutObjectTagging(_) => "S3PutObjectTagging",
            Operation::S3DeleteObjectTagging => "S3DeleteObjectTagging",
            Operation::S3ReplicateObject => "S3ReplicateObject",
        }
    }
}

/// `LambdaInvokeOperation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LambdaInvoke {
    /// `FunctionArn`.
    pub function_arn: String,
    /// `InvocationSchemaVersion`: `1.0` (default) or `2.0`.
    pub invocation_schema_version: Option<String>,
    /// `UserArguments` (schema 2.0 only).
    pub user_arguments: Option<BTreeMap<String, String>>,
}

impl LambdaInvoke {
    /// Whether the events use schema 2.0.
    pub fn schema_2(&self) -> bool {
        self.invocation_schema_version.as_deref() == Some("2.0")
    }
}

/// `S3CopyObjectOperation` (the members this engine takes; the last four are kept and
/// shown but have no effect locally).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyObject {
    /// `TargetResource`: the destination bucket's ARN.
    pub target_resource: Option<String>,
    /// `TargetKeyPrefix`: destination keys are `<prefix>/<source key>`.
    pub target_key_prefix: Option<String>,
    /// `MetadataDirective` (`COPY` | `REPLACE`).
    pub metadata_directive: Option<String>,
    /// `NewObjectMetadata`.
    pub new_object_metadata: Option<ObjectMetadata>,
    /// `NewObjectTagging`.
    pub new_object_tagging: Option<Vec<Tag>>,
    /// `StorageClass`.
    pub storage_class: Option<String>,
    /// `CannedAccessControlList` (shown, not applied).
    pub canned_access_control_list: Option<String>,
    /// `RequesterPays` (shown, not applied).
    pub requester_pays: Option<bool>,
    /// `BucketKeyEnabled` (shown, not applied).
    pub bucket_key_enabled: Option<bool>,
    /// `ChecksumAlgorithm` (shown, not applied).
    pub checksum_algorithm: Option<String>,
}

/// `S3ObjectMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMetadata {
    /// `CacheControl`.
    pub cache_control: Option<String>,
    /// `ContentDisposition`.
    pub content_disposition: Option<String>,
    /// `ContentEncoding`.
    pub content_encoding: Option<String>,
    /// `ContentLanguage`.
    pub content_language: Option<String>,
    /// `ContentType`.
    pub content_type: Option<String>,
    /// `UserMetadata`.
    pub user_metadata: Option<BTreeMap<String, String>>,
    /// `ContentLength` (shown only).
    pub content_length: Option<i64>,
    /// `ContentMD5` (shown only).
    pub content_md5: Option<String>,
    /// `HttpExpiresDate` as sent (shown only).
    pub http_expires_date: Option<String>,
    /// `RequesterCharged` (shown only).
    pub requester_charged: Option<bool>,
    /// `SSEAlgorithm` (shown only).
    pub sse_algorithm: Option<String>,
}

/// `S3SetObjectTaggingOperation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutTagging {
    /// `TagSet` (`None`: not given, which sets an empty tag set).
    pub tag_set: Option<Vec<Tag>>,
}

/// `JobReport`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// `Enabled`.
    pub enabled: bool,
    /// `Bucket` (ARN).
    pub bucket: Option<String>,
    /// `Format` (`Report_CSV_20180820`).
    pub format: Option<String>,
    /// `Prefix`.
    pub prefix: Option<String>,
    /// `ReportScope`: `AllTasks` | `FailedTasksOnly`.
    pub report_scope: Option<String>,
    /// `ExpectedBucketOwner` (shown only).
    pub expected_bucket_owner: Option<String>,
}

/// `JobManifest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// `Spec.Format`: `S3BatchOperations_CSV_20180820`.
    pub format: String,
    /// `Spec.Fields` (`Ignore` | `Bucket` | `Key` | `VersionId`), as given.
    pub fields: Option<Vec<String>>,
    /// `Location.ObjectArn` (`arn:aws:s3:::bucket/key`).
    pub object_arn: String,
    /// `Location.ObjectVersionId`.
    pub object_version_id: Option<String>,
    /// `Location.ETag`.
    pub etag: String,
}

/// `S3JobManifestGenerator`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestGenerator {
    /// `SourceBucket` (ARN).
    pub source_bucket: String,
    /// `ExpectedBucketOwner`: the source bucket's owner must be this account.
    pub expected_bucket_owner: Option<String>,
    /// `EnableManifestOutput`: write the generated manifest to `output`.
    pub enable_manifest_output: bool,
    /// `ManifestOutputLocation`.
    pub output: Option<ManifestOutput>,
    /// `Filter`.
    pub filter: Option<GeneratorFilter>,
}

/// `S3ManifestOutputLocation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestOutput {
    /// `Bucket` (ARN).
    pub bucket: String,
    /// `ManifestPrefix`.
    pub prefix: Option<String>,
    /// `ManifestFormat` (`S3InventoryReport_CSV_20211130`).
    pub format: String,
    /// `ExpectedManifestBucketOwner`.
    pub expected_owner: Option<String>,
    /// `ManifestEncryption`: `SSES3` or `SSEKMS` (shown, not applied).
    pub encryption: Option<String>,
    /// `ManifestEncryption.SSEKMS.KeyId` (shown, not applied).
    pub kms_key_id: Option<String>,
}

/// `JobManifestGeneratorFilter`. Every member given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratorFilter {
    /// `EligibleForReplication`: a rule of the source bucket's replication configuration
    /// matches the version.
    pub eligible_for_replication: Option<bool>,
    /// `CreatedAfter` (ms).
    pub created_after_ms: Option<i64>,
    /// `CreatedBefore` (ms).
    pub created_before_ms: Option<i64>,
    /// `ObjectReplicationStatuses` (`COMPLETED`, `FAILED`, `REPLICA`, `NONE`).
    pub object_replication_statuses: Option<Vec<String>>,
    /// `KeyNameConstraint.MatchAnyPrefix`.
    pub match_any_prefix: Option<Vec<String>>,
    /// `KeyNameConstraint.MatchAnySuffix`.
    pub match_any_suffix: Option<Vec<String>>,
    /// `KeyNameConstraint.MatchAnySubstring`.
    pub match_any_substring: Option<Vec<String>>,
    /// `ObjectSizeGreaterThanBytes`.
    pub size_greater_than: Option<i64>,
    /// `ObjectSizeLessThanBytes`.
    pub size_less_than: Option<i64>,
    /// `MatchAnyStorageClass` (every object is `STANDARD` here).
    pub match_any_storage_class: Option<Vec<String>>,
}

/// `S3GeneratedManifestDescriptor`: where the generated manifest was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratedManifest {
    /// `Format` (`S3InventoryReport_CSV_20211130`).
    pub format: String,
    /// `Location.ObjectArn` (its `manifest.json`).
    pub object_arn: String,
    /// `Location.ETag`.
    pub etag: String,
}

/// `JobFailure`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFailure {
    /// `FailureCode` (≤ 64 characters).
    pub code: String,
    /// `FailureReason` (≤ 256 characters).
    pub reason: String,
}

/// `JobProgressSummary`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// `TotalNumberOfTasks` (0 until the manifest is read).
    pub total: u64,
    /// `NumberOfTasksSucceeded`.
    pub succeeded: u64,
    /// `NumberOfTasksFailed`.
    pub failed: u64,
    /// `Timers.ElapsedTimeInActiveSeconds`.
    pub elapsed_active_secs: u64,
}

/// DescribeJob's `Job`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// `JobId`.
    pub id: String,
    /// `JobArn`.
    pub arn: String,
    /// `Status`.
    pub status: JobStatus,
    /// `ConfirmationRequired`.
    pub confirmation_required: bool,
    /// `Description`.
    pub description: Option<String>,
    /// `Manifest`.
    pub manifest: Manifest,
    /// `Operation`.
    pub operation: Operation,
    /// `Priority`.
    pub priority: i32,
    /// `ProgressSummary`.
    pub progress: Progress,
    /// `StatusUpdateReason`.
    pub status_update_reason: Option<String>,
    /// `FailureReasons`.
    pub failure_reasons: Vec<JobFailure>,
    /// `Report`.
    pub report: Report,
    /// `CreationTime` (ms).
    pub creation_ms: i64,
    /// `TerminationDate` (ms).
    pub termination_ms: Option<i64>,
    /// `RoleArn`.
    pub role_arn: String,
    /// `SuspendedDate` (ms).
    pub suspended_ms: Option<i64>,
    /// `SuspendedCause`.
    pub suspended_cause: Option<String>,
    /// `ManifestGenerator`.
    pub manifest_generator: Option<ManifestGenerator>,
    /// `GeneratedManifestDescriptor` (once the manifest was generated and written).
    pub generated_manifest: Option<GeneratedManifest>,
}

/// ListJobs' `JobListDescriptor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    /// `JobId`.
    pub id: String,
    /// `Description`.
    pub description: Option<String>,
    /// `Operation` (its name).
    pub operation: &'static str,
    /// `Priority`.
    pub priority: i32,
    /// `Status`.
    pub status: JobStatus,
    /// `CreationTime` (ms).
    pub creation_ms: i64,
    /// `TerminationDate` (ms).
    pub termination_ms: Option<i64>,
    /// `ProgressSummary`.
    pub progress: Progress,
}

/// One page of ListJobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPage {
    /// `Jobs`, newest first.
    pub jobs: Vec<JobSummary>,
    /// `NextToken`.
    pub next_token: Option<String>,
}

/// UpdateJobStatus' answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// `JobId`.
    pub id: String,
    /// `Status` after the update.
    pub status: JobStatus,
    /// `StatusUpdateReason`.
    pub reason: Option<String>,
}

/// The ARN of a job.
pub fn job_arn(scope: &Scope, id: &str) -> String {
    format!("arn:aws:s3:{}:{}:job/{id}", scope.region, scope.account)
}

/// The bucket name of an S3 bucket ARN (`arn:<partition>:s3:::<bucket>`, also with a region
/// or account, and `s3express`), or `None`.
pub fn bucket_of_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("s3" | "s3express"), Some(_region), Some(_account), Some(rest)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let bucket = rest.strip_prefix("bucket/").unwrap_or(rest);
    (!bucket.is_empty() && !bucket.contains('/')).then_some(bucket)
}

/// The (bucket, key) of an S3 object ARN (`arn:<partition>:s3:::<bucket>/<key>`), or `None`.
pub fn object_of_arn(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("s3"), Some(_region), Some(_account), Some(rest)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let (bucket, key) = rest.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        assert_eq!(bucket_of_arn("arn:aws:s3:::reports"), Some("reports"));
        assert_eq!(bucket_of_arn("arn:aws:s3:us-east-1:123456789012:bucket/b"), Some("b"));
        assert_eq!(bucket_of_arn("arn:aws:s3:::"), None);
        assert_eq!(bucket_of_arn("arn:aws:s3:::a/b"), None);
        assert_eq!(bucket_of_arn("arn:aws:iam:::a"), None);
        assert_eq!(object_of_arn("arn:aws:s3:::b/dir/m.csv"), Some(("b", "dir/m.csv")));
        assert_eq!(object_of_arn("arn:aws:s3:::b"), None);
        assert_eq!(object_of_arn("arn:aws:s3:::b/"), None);
        assert_eq!(JobStatus::parse("Suspended"), Some(JobStatus::Suspended));
        assert_eq!(JobStatus::parse("suspended"), None);
    }
}
