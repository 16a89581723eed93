//! Public request and response types of the S3 engine.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};

/// Engine configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory holding `blobs/` and `tmp/` (the metadata lives in the shared `MetaStore`).
    pub root: PathBuf,
    /// Minimum size of every part but the last in CompleteMultipartUpload (S3: 5 MiB).
    pub min_part_size: u64,
    /// Bodies (objects and parts) of at most this many bytes are stored inline in the
    /// metadata store, committed in the same transaction as their document, instead of as
    /// a blob file ([`DEFAULT_INLINE_MAX`]). `0` disables inline storage: every body, even an
    /// empty one, becomes a blob file. Up to this many bytes (plus one chunk) of each body
    /// being written are held in memory.
    pub inline_max: u64,
}

/// Default [`Config::inline_max`]: 64 KiB.
pub const DEFAULT_INLINE_MAX: u64 = 64 * 1024;

impl Config {
    /// S3's defaults under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Config {
        Config {
            root: root.into(),
            min_part_size: crate::MIN_PART_SIZE,
            inline_max: DEFAULT_INLINE_MAX,
        }
    }
}

/// An object body as the engine returns it: chunks of at most 256 KiB read from the blob
/// file or sliced from the inline bytes. Feeds `axum::body::Body::from_stream` directly.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// A bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    /// The bucket name.
    pub name: String,
    /// Account id that created it.
    pub owner_account: String,
    /// Region it was created in.
    pub region: String,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// A unique id of this incarnation of the bucket (differs after delete + create).
    pub uid: String,
}

/// The additional checksum algorithms of S3 (`x-amz-checksum-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChecksumAlgorithm {
    /// CRC-32 (ISO-HDLC), base64 of the big-endian u32.
    Crc32,
    /// CRC-32C (Castagnoli), base64 of the big-endian u32.
    Crc32c,
    /// CRC-64/NVME, base64 of the big-endian u64.
    Crc64Nvme,
    /// SHA-1, base64 of the digest.
    Sha1,
    /// SHA-256, base64 of the digest.
    Sha256,
}

impl ChecksumAlgorithm {
    /// The S3 spelling ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256").
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "CRC32",
            ChecksumAlgorithm::Crc32c => "CRC32C",
            ChecksumAlgorithm::Crc64Nvme => "CRC64NVME",
            ChecksumAlgorithm::Sha1 => "SHA1",
            ChecksumAlgorithm::Sha256 => "SHA256",
        }
    }

    /// Parses the S3 spelling, case-insensitively.
    pub fn parse(s: &str) -> Option<ChecksumAlgorithm> {
        match s.to_ascii_uppercase().as_str() {
            "CRC32" => Some(ChecksumAlgorithm::Crc32),
            "CRC32C" => Some(ChecksumAlgorithm::Crc32c),
            "CRC64NVME" => Some(ChecksumAlgorithm::Crc64Nvme),
            "SHA1" => Some(ChecksumAlgorithm::Sha1),
            "SHA256" => Some(ChecksumAlgorithm::Sha256),
            _ => None,
        }
    }
}

/// A request to compute (and optionally verify) an additional checksum while streaming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumRequest {
    /// Which algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// The value the caller sent (base64), verified against the body: mismatch → `BadDigest`.
    pub expected_b64: Option<String>,
}

/// Options of PutObject / CreateMultipartUpload / CopyObject (REPLACE directive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Expires`, as given.
    pub expires: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `x-amz-meta-*` (names without the prefix).
    pub user_metadata: BTreeMap<String, String>,
    /// `x-amz-tagging`, decoded.
    pub tags: BTreeMap<String, String>,
    /// `x-amz-checksum-*` / `x-amz-sdk-checksum-algorithm`.
    pub checksum: Option<ChecksumRequest>,
    /// `Content-MD5` (base64 of the digest), verified against the body.
    pub content_md5: Option<String>,
}

/// The stored header fields of an object (the persistent part of [`PutOptions`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHeaders {
    /// `Content-Type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// `Content-Disposition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    /// `Cache-Control`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// `Expires`, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// `Content-Language`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// `x-amz-meta-*`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_metadata: BTreeMap<String, String>,
}

impl ObjectHeaders {
    pub(crate) fn from_opts(o: &PutOptions) -> ObjectHeaders {
        ObjectHeaders {
            content_type: o.content_type.clone(),
            content_encoding: o.content_encoding.clone(),
            content_disposition: o.content_disposition.clone(),
            cache_control: o.cache_control.clone(),
            expires: o.expires.clone(),
            content_language: o.content_language.clone(),
            user_metadata: o.user_metadata.clone(),
        }
    }
}

/// An object's metadata (HeadObject, list entries, PUT results).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Unquoted ETag: hex MD5, or `hex-N` for multipart objects.
    pub etag: String,
    /// Last-Modified, ms since the epoch.
    pub last_modified_ms: i64,
    /// Stored header fields and user metadata.
    pub headers: ObjectHeaders,
    /// The additional checksum stored with the object (algorithm, base64 value).
    pub checksum: Option<(ChecksumAlgorithm, String)>,
    /// Number of parts for objects made by CompleteMultipartUpload.
    pub parts_count: Option<u32>,
    /// Number of tags (`x-amz-tagging-count`).
    pub tag_count: usize,
    /// The version id (`x-amz-version-id`): `None` for an object written while its bucket
    /// had never been versioned, `"null"` for the null version of a versioned bucket.
    pub version_id: Option<String>,
    /// `x-amz-replication-status`: set on a version a replication rule matched, and on
    /// replicas.
    pub replication_status: Option<ReplicationStatus>,
}

/// A bucket's versioning state (PutBucketVersioning). A bucket that never had one is
/// unversioned; once set, it can only switch between these two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Versioning {
    /// Every write creates a new version with a unique id.
    Enabled,
    /// Writes replace the `null` version; existing versions are kept.
    Suspended,
}

impl Versioning {
    /// The S3 spelling ("Enabled", "Suspended").
    pub fn as_str(self) -> &'static str {
        match self {
            Versioning::Enabled => "Enabled",
            Versioning::Suspended => "Suspended",
        }
    }
}

/// `x-amz-replication-status` of a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReplicationStatus {
    /// A rule matched; the replica is not written yet.
    Pending,
    /// Every destination holds the replica.
    Completed,
    /// Replication to at least one destination failed (S3 Batch Replication can retry it).
    Failed,
    /// This version is a replica written by replication.
    Replica,
}

impl ReplicationStatus {
    /// S3's spelling (`PENDING`, `COMPLETED`, `FAILED`, `REPLICA`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicationStatus::Pending => "PENDING",
            ReplicationStatus::Completed => "COMPLETED",
            ReplicationStatus::Failed => "FAILED",
            ReplicationStatus::Replica => "REPLICA",
        }
    }
}

/// One rule of a bucket's replication configuration, as the engine applies it (the
/// adapter translates S3's XML shapes, V1 `Prefix` and V2 `Filter` alike, into this).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationRule {
    /// `ID`.
    pub id: String,
    /// `Priority` (V2; higher wins when two rules match for one destination).
    pub priority: i32,
    /// `Status` is `Enabled`.
    pub enabled: bool,
    /// Key prefix the rule covers (`""`: every key).
    pub prefix: String,
    /// Tags an object must all carry.
    pub tags: Vec<(String, String)>,
    /// Destination bucket name.
    pub destination_bucket: String,
    /// `Destination.StorageClass` (accepted; the engine has one storage class).
    pub storage_class: Option<String>,
    /// `DeleteMarkerReplication.Status` is `Enabled`.
    pub delete_marker_replication: bool,
}

impl ReplicationRule {
    /// Whether the rule covers an object of `key` with `tags`.
    pub fn matches(&self, key: &str, tags: &BTreeMap<String, String>) -> bool {
        self.enabled && key.starts_with(&self.prefix) && self.tags.iter().all(|(k, v)| tags.get(k) == Some(v))
    }
}

/// A bucket's replication configuration as the engine applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationConfig {
    /// `Role`: the IAM role S3 assumes to replicate.
    pub role: String,
    /// `Rule`s.
    pub rules: Vec<ReplicationRule>,
}

impl ReplicationConfig {
    /// The rule that applies to an object of `key` with `tags` for each destination (the
    /// highest-priority matching enabled rule), in destination order.
    pub fn targets(&self, key: &str, tags: &BTreeMap<String, String>) -> Vec<&ReplicationRule> {
        let mut best: BTreeMap<&str, &ReplicationRule> = BTreeMap::new();
        for r in self.rules.iter().filter(|r| r.matches(key, tags)) {
            let slot = best.entry(r.destination_bucket.as_str()).or_insert(r);
            if r.priority > slot.priority {
                *slot = r;
            }
        }
        best.into_values().collect()
    }
}

/// One replication to do: version `version_id` of `bucket/key` to `destination_bucket`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationTask {
    /// Source bucket.
    pub bucket: String,
    /// Key (the same in the destination).
    pub key: String,
    /// The source version (the replica gets the same version id).
    pub version_id: String,
    /// Destination bucket.
    pub destination_bucket: String,
    /// The rule that matched.
    pub rule_id: String,
    /// `Destination.StorageClass` of that rule (accepted, not applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// The version is a delete marker (replicated as a delete marker).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_marker: bool,
}

/// What DeleteObject did (`x-amz-delete-marker`, `x-amz-version-id`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The version created (a delete marker) or permanently removed; `None` in an
    /// unversioned bucket.
    pub version_id: Option<String>,
    /// A delete marker was created, or the removed version was a delete marker.
    pub delete_marker: bool,
}

/// One entry of ListObjectVersions: an object version or a delete marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEntry {
    /// The version's metadata (size 0 and empty ETag for a delete marker).
    pub info: ObjectInfo,
    /// Its version id (`"null"` for the null version).
    pub version_id: String,
    /// It is the key's current version.
    pub is_latest: bool,
    /// It is a delete marker.
    pub delete_marker: bool,
}

/// One page of ListObjectVersions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionPage {
    /// Versions and delete markers, in key order, newest first within a key.
    pub versions: Vec<VersionEntry>,
    /// Common prefixes (with a delimiter), in order.
    pub common_prefixes: Vec<String>,
    /// More entries follow.
    pub is_truncated: bool,
    /// When truncated: the key (or common prefix) of the last entry returned.
    pub next_key_marker: Option<String>,
    /// When truncated and the last entry was a version: its version id.
    pub next_version_id_marker: Option<String>,
}

/// A precondition of a conditional write (S3's `If-None-Match: *` / `If-Match` on
/// PutObject), checked against the current object under the object's lock in the same
/// step that installs the new one, so it is atomic with the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// The key must not exist.
    NotExists,
    /// The key must exist with this ETag (surrounding quotes are ignored).
    ETagMatches(String),
}

/// Why a conditional write was refused (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionFailed {
    /// [`WriteCondition::NotExists`], and the key exists with this (unquoted) ETag.
    Exists {
        /// The current ETag.
        etag: String,
    },
    /// [`WriteCondition::ETagMatches`], and the key does not exist.
    Missing,
    /// [`WriteCondition::ETagMatches`], and the current (unquoted) ETag differs.
    ETagMismatch {
        /// The current ETag.
        current: String,
    },
}

impl std::fmt::Display for ConditionFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConditionFailed::Exists { etag } => write!(f, "the object exists (ETag {etag})"),
            ConditionFailed::Missing => write!(f, "the object does not exist"),
            ConditionFailed::ETagMismatch { current } => write!(f, "the object's ETag is {current}"),
        }
    }
}

/// A byte range of GetObject / UploadPartCopy, as in `Range: bytes=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` (inclusive; `b` past the end is clipped).
    FromTo(u64, u64),
    /// `bytes=a-`.
    From(u64),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// One page of ListObjects(V2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Objects, in key order.
    pub objects: Vec<ObjectInfo>,
    /// Common prefixes (with a delimiter), in order.
    pub common_prefixes: Vec<String>,
    /// More keys follow.
    pub is_truncated: bool,
    /// The last key or common prefix returned when truncated (NextMarker / the
    /// continuation point for `start_after`).
    pub next_marker: Option<String>,
}

/// A part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// 1..=10000.
    pub part_number: u32,
    /// Unquoted hex MD5 of the part.
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// Upload time, ms since the epoch.
    pub last_modified_ms: i64,
    /// Additional checksum of the part, if one was requested.
    pub checksum: Option<(ChecksumAlgorithm, String)>,
}

/// An in-progress multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Upload id.
    pub upload_id: String,
    /// Initiation time, ms since the epoch.
    pub initiated_ms: i64,
}

/// One record of the event outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEvent {
    /// Format version of the stored document.
    pub version: u32,
    /// Outbox sequence number (strictly increasing, never reused).
    pub seq: u64,
    /// "ObjectCreated:Put", "ObjectCreated:Copy", "ObjectCreated:CompleteMultipartUpload",
    /// "ObjectRemoved:Delete" or "ObjectRemoved:DeleteMarkerCreated".
    pub event_name: String,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Object size (0 for removals).
    pub size: u64,
    /// Unquoted ETag (empty for removals).
    pub etag: String,
    /// S3's `sequencer`: upper-case hex, 16 digits, increasing.
    pub sequencer: String,
    /// Event time, ms since the epoch.
    pub time_ms: i64,
    /// The version created or removed, in a bucket that has versioning configured (absent
    /// in events stored before versioning existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}
