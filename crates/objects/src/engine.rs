//! The S3 engine: buckets, objects, multipart uploads, tags, notification configs and the
//! event outbox over a shared [`MetaStore`] and the blob files of [`crate::blob`].
//!
//! # Metadata tables (all values serde_json documents with a `version` field)
//!
//! | table | key | value |
//! |---|---|---|
//! | `s3_buckets` | `<bucket>` | `BucketDoc`: owner, region, uid, tags, notification config, versioning, replication config, bucket policy |
//! | `s3_objects` | `<bucket>\0<key>` | `ObjectDoc`: blob id, size, ETag, headers, checksum, tags |
//! | `s3_versions` | `<bucket>\0<key>\0<stamp, 32 hex>` | `ObjectDoc` of one version or delete marker |
//! | `s3_uploads` | `<bucket>\0<key>\0<upload id>` | `UploadDoc` |
//! | `s3_parts` | `<upload id>\0<part number, 5 digits>` | `PartDoc`: blob id, size, ETag |
//! | `s3_events` | `<seq, 20 digits>` | `ObjectEvent` |
//! | `s3_orphans` | `<blob id>` | `OrphanDoc`: blob not referenced by any document |
//! | `s3_inline` | `<blob id>` | the raw bytes of an inline body (no JSON, no header) |
//! | `s3_state` | `events_acked` | highest acknowledged event seq (decimal) |
//! | `s3_replication` | `<bucket>\0<key>\0<version id>\0<destination>` | `ReplicationTask` still to do |
//!
//! # Versioning (document version 2)
//!
//! A bucket whose `BucketDoc.versioning` is absent has never been versioned: it has no
//! `s3_versions` rows and works exactly as before (its `s3_objects` documents carry no
//! version fields). Once versioning is configured (`Enabled` or `Suspended`, never absent
//! again), *every* version of every key, delete markers included, is a row of
//! `s3_versions`, the owner of its body. The row key ends in the version's 32-hex-digit
//! *stamp*: `u64::MAX - t` (t = a strictly increasing microsecond clock, also forced past
//! the key's newest stamp) then 16 random hex digits, so a key's rows sort newest first and
//! the first row is the current version. A version id is its stamp, except that the `null`
//! version (written while suspended, or an object that predates versioning) has id `null`
//! and a stamp of its own. `s3_objects` keeps mirroring the current version (the same
//! document, carrying `vid` and `vsort` = stamp) while that is not a delete marker, and has
//! no row while it is one, so GET/HEAD/ListObjects read `s3_objects` as before. The mirror
//! shares the body of its version row; a body is released (inline row deleted, or orphan
//! row + retire for a blob file) only in the transaction that deletes its version row.
//!
//! The first PutBucketVersioning of a bucket rewrites every existing object as its `null`
//! version (a row in `s3_versions` plus the updated mirror) in the transaction that stores
//! the configuration, under the bucket lock, so the invariant holds from that commit on.
//! Each version write, delete marker or permanent version delete changes the row, the
//! mirror and the outbox event in one grouped transaction: there is nothing to recover on
//! open beyond the blob rule of [`crate::blob`]. Keys containing U+0000 are refused in a
//! versioned bucket (their rows would not sort with their key). Documents of version 1
//! (no version fields) are read as unversioned.
//!
//! # Replication
//!
//! A bucket's replication configuration is kept twice in its `BucketDoc`: the caller's
//! document, opaque, for GetBucketReplication, and the engine's [`ReplicationConfig`]. When
//! a version is written to a bucket whose versioning is `Enabled` and some enabled rule
//! matches its key and tags, the version is stored with status `PENDING` and one
//! `s3_replication` row per destination is written *in the same transaction*, so an
//! acknowledged write is never left without its pending replication. A replicator (the
//! binary's, which also checks the configuration's role) takes rows with
//! [`Objects::pending_replications`], writes each replica with [`Objects::replicate`] (the
//! same version id, body, metadata, tags and ETag; status `REPLICA`; a replica is never
//! replicated again) and then records the outcome with [`Objects::finish_replication`],
//! which sets the source version's status (`COMPLETED` once no row of that version is left,
//! `FAILED` if one failed) and deletes the row in one transaction. A crash between the two
//! steps leaves the row, so the replica is written again: writing a replica whose version
//! id the destination already holds replaces that version, which makes the retry harmless.
//! Delete markers are replicated when the matching rule enables `DeleteMarkerReplication`.
//!
//! Bucket names contain no `\0`, so a range scan from `<bucket>\0` lists a bucket in
//! UTF-8 binary key order, as S3 does. Upload ids start with the hex initiation time, so a
//! key's uploads list in initiation order.
//!
//! A body of at most [`Config::inline_max`] bytes is *inline*: its document (object or
//! part) has `"inline": true` and its bytes are the `s3_inline` row of its blob id, written
//! in the same transaction as the document and deleted in the transaction that drops the
//! document's reference, so an inline row exists exactly while a document references it
//! (no orphan row, no file, nothing to recover). Listings read only `s3_objects`, never the
//! bytes. A reader takes the document and its inline row from one snapshot.
//!
//! Every object change (and its event record) is one grouped metadata transaction; see
//! [`crate::blob`] for the write protocol of blob files and the recovery rule. Event sequence numbers are
//! assigned under a mutex that also enqueues the transaction, so commits happen in seq order
//! and a consumer acknowledging `up_to_seq` never skips a later-committed smaller seq.
//! On open the next seq is one past the larger of the last stored event and `events_acked`.
//!
//! Locks: `buckets` (RwLock: create/delete/bucket config write; object commits read), then
//! per-upload stripes, then per-object stripes, always in that order. Bodies stream
//! without holding any lock; locks are taken only around read-check-commit.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use kd_storage::{Clock, MetaOp, MetaStore, TableSnapshot};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::blob::{Blobs, Origin, bytes_stream, file_stream, read_head};
use crate::checksum::{self, hex};
use crate::error::{Error, Result};
use crate::names::{validate_bucket_name, validate_key, validate_tags};
use crate::types::*;

mod replication;

pub(crate) const T_BUCKETS: &str = "s3_buckets";
pub(crate) const T_OBJECTS: &str = "s3_objects";
pub(crate) const T_UPLOADS: &str = "s3_uploads";
pub(crate) const T_PARTS: &str = "s3_parts";
pub(crate) const T_EVENTS: &str = "s3_events";
pub(crate) const T_ORPHANS: &str = "s3_orphans";
pub(crate) const T_STATE: &str = "s3_state";
pub(crate) const T_INLINE: &str = "s3_inline";
pub(crate) const T_VERSIONS: &str = "s3_versions";
pub(crate) const T_REPLICATION: &str = "s3_replication";
/// The most bytes one [`Objects::read_ranges`] call returns (it holds them in memory).
pub const MAX_RANGES_BYTES: u64 = 256 * 1024 * 1024;
/// [`Objects::read_ranges`] reads up to this many bytes on the calling thread.
pub const INLINE_READ_BYTES: u64 = 2 * 1024 * 1024;
const ALL_TABLES: [&str; 9] = [
    T_BUCKETS,
    T_OBJECTS,
    T_UPLOADS,
    T_PARTS,
    T_EVENTS,
    T_ORPHANS,
    T_INLINE,
    T_VERSIONS,
    T_REPLICATION,
];

/// Version 2 added versioning (optional fields; version 1 documents read as unversioned).
const DOC_VERSION: u32 = 2;
/// The version id of the null version.
const NULL_VERSION: &str = "null";
/// Length of a version stamp (and of a non-null version id).
const STAMP_LEN: usize = 32;
const STRIPES: usize = 256;
/// Largest single PUT / part (S3: 5 GiB).
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Highest part number.
pub const MAX_PART_NUMBER: u32 = 10_000;
const MAX_OBJECT_TAGS: usize = 10;
const MAX_BUCKET_TAGS: usize = 50;
/// Beyond every character a key can continue with: seeking past `prefix + MAX_CHAR` skips
/// (almost) every key starting with `prefix`.
const MAX_CHAR: char = '\u{10FFFF}';

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BucketDoc {
    version: u32,
    name: String,
    owner_account: String,
    region: String,
    created_ms: i64,
    uid: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    notification: Option<String>,
    /// Absent: never versioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    versioning: Option<Versioning>,
    /// PutBucketReplication's configuration, stored opaque (the adapter validates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replication: Option<String>,
    /// The same configuration as the engine applies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replication_rules: Option<ReplicationConfig>,
    /// PutBucketPolicy's document, stored opaque (the adapter validates and enforces it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ObjectDoc {
    version: u32,
    #[serde(default)]
    blob: String,
    size: u64,
    etag: String,
    last_modified_ms: i64,
    #[serde(default)]
    headers: ObjectHeaders,
    #[serde(default)]
    checksum: Option<(ChecksumAlgorithm, String)>,
    #[serde(default)]
    parts_count: Option<u32>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    /// The bytes are the `s3_inline` row of `blob`, not a blob file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    inline: bool,
    /// Version id (versioned buckets only): the stamp, or `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vid: Option<String>,
    /// The stamp ending its `s3_versions` row key (versioned buckets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vsort: Option<String>,
    /// A delete marker (only ever an `s3_versions` row): no body.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    delete_marker: bool,
    /// `x-amz-replication-status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replication_status: Option<ReplicationStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UploadDoc {
    version: u32,
    bucket: String,
    key: String,
    upload_id: String,
    initiated_ms: i64,
    #[serde(default)]
    headers: ObjectHeaders,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    checksum_algorithm: Option<ChecksumAlgorithm>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PartDoc {
    version: u32,
    part_number: u32,
    blob: String,
    size: u64,
    etag: String,
    last_modified_ms: i64,
    #[serde(default)]
    checksum: Option<(ChecksumAlgorithm, String)>,
    /// The bytes are the `s3_inline` row of `blob`, not a blob file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    inline: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OrphanDoc {
    version: u32,
    since_ms: i64,
}

struct EventDraft {
    name: &'static str,
    bucket: String,
    key: String,
    size: u64,
    etag: String,
    version_id: Option<String>,
}

/// A staged body: either inline bytes (nothing written yet) or a blob file written,
/// synced and published, with its orphan row still in place.
struct Staged {
    id: String,
    size: u64,
    digests: checksum::Digests,
    inline: bool,
    /// The body when `inline` (taken by [`Staged::adopt_op`]).
    bytes: Vec<u8>,
}

impl Staged {
    /// The op that adopts the body in the transaction that first references it: stores
    /// the inline bytes, or deletes the blob file's orphan row.
    fn adopt_op(&mut self) -> MetaOp {
        if self.inline {
            put(T_INLINE, self.id.clone(), std::mem::take(&mut self.bytes))
        } else {
            del(T_ORPHANS, self.id.clone())
        }
    }
}

/// The bytes of a stored body, opened for reading (a tokio file for streaming, a std file
/// for positioned reads).
enum StoredBody<F = tokio::fs::File> {
    File(F),
    Inline(Bytes),
}

impl StoredBody {
    /// `len` bytes from `offset` (within the body).
    async fn stream(self, offset: u64, len: u64) -> Result<BodyStream> {
        match self {
            StoredBody::File(f) => file_stream(f, offset, len).await,
            StoredBody::Inline(b) => bytes_stream(b, offset, len),
        }
    }
}

/// The bytes of inline body `id`, which a document of `size` bytes references.
fn inline_bytes(row: Option<Vec<u8>>, id: &str, size: u64) -> Result<Bytes> {
    let bytes = row.ok_or_else(|| Error::Internal(format!("inline body {id} is missing")))?;
    if bytes.len() as u64 != size {
        return Err(Error::Internal(format!(
            "inline body {id} has {} bytes, its document says {size}",
            bytes.len()
        )));
    }
    Ok(Bytes::from(bytes))
}

fn obj_key(bucket: &str, key: &str) -> String {
    format!("{bucket}\0{key}")
}

fn upload_key(bucket: &str, key: &str, upload_id: &str) -> String {
    format!("{bucket}\0{key}\0{upload_id}")
}

fn part_key(upload_id: &str, part: u32) -> String {
    format!("{upload_id}\0{part:05}")
}

fn ver_prefix(bucket: &str, key: &str) -> String {
    format!("{bucket}\0{key}\0")
}

fn ver_key(bucket: &str, key: &str, stamp: &str) -> String {
    format!("{bucket}\0{key}\0{stamp}")
}

/// The stamp at the end of an `s3_versions` row key.
fn stamp_of(row_key: &str) -> &str {
    row_key
        .get(row_key.len().saturating_sub(STAMP_LEN)..)
        .unwrap_or_default()
}

/// The microsecond time a stamp encodes.
fn stamp_time(stamp: &str) -> Option<u64> {
    u64::from_str_radix(stamp.get(..16)?, 16).ok().map(|inv| u64::MAX - inv)
}

/// A well-formed version id: `null` or 32 lower-case hex digits.
fn is_version_id(s: &str) -> bool {
    s == NULL_VERSION || (s.len() == STAMP_LEN && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

fn invalid_version_id() -> Error {
    Error::InvalidArgument("Invalid version id specified".into())
}

/// The version rows of `bucket/key` in `t` (an `s3_versions` snapshot), newest first, at
/// most `limit`.
fn key_versions(t: &TableSnapshot, bucket: &str, key: &str, limit: usize) -> Result<Vec<(String, ObjectDoc)>> {
    let prefix = ver_prefix(bucket, key);
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    for item in t.range(Bound::Included(prefix.as_str()), Bound::Unbounded)? {
        let (k, v) = item?;
        if !k.starts_with(&prefix) {
            break;
        }
        if k.len() != prefix.len() + STAMP_LEN {
            continue;
        }
        let doc = from_json(T_VERSIONS, &k, &v)?;
        out.push((k, doc));
        if out.len() == limit {
            break;
        }
    }
    Ok(out)
}

/// The row of version `vid` of `bucket/key`, if any.
fn find_version(t: &TableSnapshot, bucket: &str, key: &str, vid: &str) -> Result<Option<(String, ObjectDoc)>> {
    if vid == NULL_VERSION {
        return Ok(key_versions(t, bucket, key, usize::MAX)?
            .into_iter()
            .find(|(_, d)| d.vid.as_deref() == Some(NULL_VERSION)));
    }
    let k = ver_key(bucket, key, vid);
    Ok(Objects::snap_doc::<ObjectDoc>(t, T_VERSIONS, &k)?
        .filter(|d| d.vid.as_deref() == Some(vid))
        .map(|d| (k, d)))
}

fn replication_key(bucket: &str, key: &str, version_id: &str, destination: &str) -> String {
    format!("{bucket}\0{key}\0{version_id}\0{destination}")
}

/// The rules (one per destination) that replicate a new version of `key` with `tags` in
/// bucket `b` (versioning `state`): none unless versioning is enabled and a configuration
/// exists; for a delete marker, only rules that replicate delete markers.
fn replication_targets(
    b: &BucketDoc,
    state: Versioning,
    key: &str,
    tags: &BTreeMap<String, String>,
    delete_marker: bool,
) -> Vec<ReplicationRule> {
    let Some(cfg) = b.replication_rules.as_ref().filter(|_| state == Versioning::Enabled) else {
        return Vec::new();
    };
    cfg.targets(key, tags)
        .into_iter()
        .filter(|r| !delete_marker || r.delete_marker_replication)
        .cloned()
        .collect()
}

fn event_key(seq: u64) -> String {
    format!("{seq:020}")
}

fn to_json<T: Serialize>(doc: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(doc).map_err(|e| Error::Internal(format!("encode document: {e}")))
}

fn from_json<T: DeserializeOwned>(table: &str, key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Internal(format!("undecodable {table} document {key:?}: {e}")))
}

fn put(table: &str, key: String, value: Vec<u8>) -> MetaOp {
    MetaOp::Put {
        table: table.into(),
        key,
        value,
    }
}

fn del(table: &str, key: String) -> MetaOp {
    MetaOp::Delete {
        table: table.into(),
        key,
    }
}

fn stripe(parts: &[&str]) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    (h.finish() % STRIPES as u64) as usize
}

fn strip_quotes(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

/// Resolves `range` against `size` with S3 semantics: `Ok(None)` = whole object.
fn resolve_range(range: Option<ByteRange>, size: u64) -> Result<Option<(u64, u64)>> {
    let Some(range) = range else { return Ok(None) };
    let unsatisfiable = Err(Error::InvalidRange { size });
    match range {
        // An invalid spec (last < first) is ignored, as RFC 9110 says.
        ByteRange::FromTo(a, b) if a > b => Ok(None),
        ByteRange::FromTo(a, b) => {
            if a >= size {
                unsatisfiable
            } else {
                Ok(Some((a, b.min(size - 1))))
            }
        }
        ByteRange::From(a) => {
            if a >= size {
                unsatisfiable
            } else {
                Ok(Some((a, size - 1)))
            }
        }
        ByteRange::Suffix(n) => {
            if n == 0 || size == 0 {
                unsatisfiable
            } else {
                Ok(Some((size - n.min(size), size - 1)))
            }
        }
    }
}

impl ObjectDoc {
    fn info(&self, bucket: &str, key: &str) -> ObjectInfo {
        ObjectInfo {
            bucket: bucket.to_string(),
            key: key.to_string(),
            size: self.size,
            etag: self.etag.clone(),
            last_modified_ms: self.last_modified_ms,
            headers: self.headers.clone(),
            checksum: self.checksum.clone(),
            parts_count: self.parts_count,
            tag_count: self.tags.len(),
            version_id: self.vid.clone(),
            replication_status: self.replication_status,
        }
    }

    fn delete_marker(now_ms: i64) -> ObjectDoc {
        ObjectDoc {
            version: DOC_VERSION,
            blob: String::new(),
            size: 0,
            etag: String::new(),
            last_modified_ms: now_ms,
            headers: ObjectHeaders::default(),
            checksum: None,
            parts_count: None,
            tags: BTreeMap::new(),
            inline: false,
            vid: None,
            vsort: None,
            delete_marker: true,
            replication_status: None,
        }
    }
}

impl BucketDoc {
    fn info(&self) -> BucketInfo {
        BucketInfo {
            name: self.name.clone(),
            owner_account: self.owner_account.clone(),
            region: self.region.clone(),
            created_ms: self.created_ms,
            uid: self.uid.clone(),
        }
    }
}

impl PartDoc {
    fn info(&self) -> PartInfo {
        PartInfo {
            part_number: self.part_number,
            etag: self.etag.clone(),
            size: self.size,
            last_modified_ms: self.last_modified_ms,
            checksum: self.checksum.clone(),
        }
    }
}

/// The S3 engine. `Send + Sync`; share it as `Arc<Objects>`.
pub struct Objects {
    config: Config,
    meta: Arc<MetaStore>,
    clock: Arc<dyn Clock>,
    blobs: Blobs,
    buckets_lock: tokio::sync::RwLock<()>,
    upload_locks: Vec<tokio::sync::Mutex<()>>,
    object_locks: Vec<tokio::sync::Mutex<()>>,
    /// The next event seq; held while enqueueing an event-carrying transaction.
    next_seq: std::sync::Mutex<u64>,
    /// Woken after every commit that wrote events (the notification dispatcher waits on it).
    events_notify: Arc<tokio::sync::Notify>,
    /// Woken after every commit that queued replications (the replicator waits on it).
    replication_notify: Arc<tokio::sync::Notify>,
    /// The time (µs) of the last version stamp issued.
    last_stamp: std::sync::Mutex<u64>,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Objects {
    /// Opens the engine: prepares the directories, empties `tmp/`, deletes orphaned blobs
    /// (see [`crate::blob`]) and restores the event sequence.
    pub fn open(config: Config, meta: Arc<MetaStore>, clock: Arc<dyn Clock>) -> Result<Objects> {
        let blobs = Blobs::open(&config.root)?;
        let snap = meta.snapshot()?;
        let orphans = snap.table(T_ORPHANS)?;
        let mut ops = Vec::new();
        for item in orphans.range(Bound::Unbounded, Bound::Unbounded)? {
            let (id, _) = item?;
            if let Err(e) = blobs.remove_sync(&id) {
                tracing::warn!(error = %e, blob = %id, "cannot delete orphaned blob");
                continue;
            }
            ops.push(del(T_ORPHANS, id));
        }
        if !ops.is_empty() {
            tracing::info!(count = ops.len(), "deleted orphaned S3 blobs");
        }
        meta.write(ops)?;
        let last_event = match snap
            .table(T_EVENTS)?
            .range(Bound::Unbounded, Bound::Unbounded)?
            .next_back()
        {
            Some(item) => {
                let (k, _) = item?;
                k.parse::<u64>()
                    .map_err(|_| Error::Internal(format!("bad event key {k:?}")))?
            }
            None => 0,
        };
        let acked = match snap.table(T_STATE)?.get("events_acked")? {
            Some(v) => String::from_utf8_lossy(&v)
                .parse::<u64>()
                .map_err(|_| Error::Internal("bad events_acked".into()))?,
            None => 0,
        };
        Ok(Objects {
            blobs,
            meta,
            clock,
            buckets_lock: tokio::sync::RwLock::new(()),
            upload_locks: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            object_locks: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            next_seq: std::sync::Mutex::new(last_event.max(acked) + 1),
            events_notify: Arc::new(tokio::sync::Notify::new()),
            replication_notify: Arc::new(tokio::sync::Notify::new()),
            last_stamp: std::sync::Mutex::new(0),
            config,
        })
    }

    /// The configuration this engine was opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ---------------------------------------------------------------- helpers

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn object_lock(&self, bucket: &str, key: &str) -> &tokio::sync::Mutex<()> {
        &self.object_locks[stripe(&[bucket, key])]
    }

    fn upload_lock(&self, upload_id: &str) -> &tokio::sync::Mutex<()> {
        &self.upload_locks[stripe(&[upload_id])]
    }

    fn get_doc<T: DeserializeOwned>(&self, table: &str, key: &str) -> Result<Option<T>> {
        match self.meta.get(table, key)? {
            Some(v) => Ok(Some(from_json(table, key, &v)?)),
            None => Ok(None),
        }
    }

    fn snap_doc<T: DeserializeOwned>(t: &TableSnapshot, table: &str, key: &str) -> Result<Option<T>> {
        match t.get(key)? {
            Some(v) => Ok(Some(from_json(table, key, &v)?)),
            None => Ok(None),
        }
    }

    fn bucket_doc(&self, bucket: &str) -> Result<BucketDoc> {
        self.get_doc(T_BUCKETS, bucket)?.ok_or_else(|| Error::NoSuchBucket {
            bucket: bucket.to_string(),
        })
    }

    fn orphan_op(&self, id: &str) -> Result<MetaOp> {
        Ok(put(
            T_ORPHANS,
            id.to_string(),
            to_json(&OrphanDoc {
                version: DOC_VERSION,
                since_ms: self.now(),
            })?,
        ))
    }

    /// Commits `ops` plus one outbox record per event as one grouped transaction.
    async fn commit(&self, mut ops: Vec<MetaOp>, events: Vec<EventDraft>) -> Result<()> {
        let wrote_events = !events.is_empty();
        let pending = {
            let mut next = self
                .next_seq
                .lock()
                .map_err(|_| Error::Internal("event sequence lock poisoned".into()))?;
            let time_ms = self.now();
            for e in events {
                let seq = *next;
                *next += 1;
                let ev = ObjectEvent {
                    version: DOC_VERSION,
                    seq,
                    event_name: e.name.to_string(),
                    bucket: e.bucket,
                    key: e.key,
                    size: e.size,
                    etag: e.etag,
                    sequencer: format!("{seq:016X}"),
                    time_ms,
                    version_id: e.version_id,
                };
                ops.push(put(T_EVENTS, event_key(seq), to_json(&ev)?));
            }
            self.meta.write_grouped(ops)
        };
        pending.await?;
        if wrote_events {
            self.events_notify.notify_one();
        }
        Ok(())
    }

    /// Notified after each commit that wrote events to the outbox.
    pub fn events_notify(&self) -> Arc<tokio::sync::Notify> {
        self.events_notify.clone()
    }

    /// Stages a body: hashed and buffered up to [`Config::inline_max`] bytes; a body that
    /// ends within that stays in memory (inline: no file, no orphan row). A longer one is
    /// written as a blob file (see the write protocol in [`crate::blob`]): on success the
    /// blob is published and its orphan row committed.
    async fn stage<S>(
        &self,
        mut body: S,
        origin: Origin,
        max_size: u64,
        algorithm: Option<ChecksumAlgorithm>,
        content_md5: Option<&str>,
        checksum: Option<&ChecksumRequest>,
    ) -> Result<Staged>
    where
        S: Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + Unpin,
    {
        let mut hasher = checksum::BodyHasher::new(algorithm);
        let head = read_head(&mut body, &mut hasher, self.config.inline_max, max_size, origin).await?;
        if head.complete {
            let digests = hasher.finish();
            checksum::verify(&digests, content_md5, checksum)?;
            return Ok(Staged {
                id: Blobs::new_id(),
                size: head.size,
                digests,
                inline: true,
                bytes: head.concat(),
            });
        }
        let id = Blobs::new_id();
        let orphan = self.meta.write_grouped(vec![self.orphan_op(&id)?]);
        let written = self.blobs.write_tmp(&id, head, body, hasher, max_size, origin).await;
        let result = async {
            let (size, digests) = written?;
            checksum::verify(&digests, content_md5, checksum)?;
            orphan.await?;
            self.blobs.publish(&id).await?;
            Ok(Staged {
                id: id.clone(),
                size,
                digests,
                inline: false,
                bytes: Vec::new(),
            })
        }
        .await;
        if result.is_err() {
            self.discard(&id).await;
        }
        result
    }

    /// Drops the reference of a document to its body `id` in the transaction `ops`: the
    /// inline row goes with it; a blob file gets an orphan row and is added to `retired`
    /// (to delete after the commit).
    fn release(&self, id: &str, inline: bool, ops: &mut Vec<MetaOp>, retired: &mut Vec<String>) -> Result<()> {
        if inline {
            ops.push(del(T_INLINE, id.to_string()));
        } else {
            ops.push(self.orphan_op(id)?);
            retired.push(id.to_string());
        }
        Ok(())
    }

    /// Drops a staged blob file that will not be referenced (an inline body needs nothing).
    async fn discard(&self, id: &str) {
        self.blobs.remove_tmp(id).await;
        if self.blobs.remove(id).await.is_ok() {
            drop(self.meta.write_grouped(vec![del(T_ORPHANS, id.to_string())]));
        }
    }

    /// Deletes blobs whose orphan rows were just committed, then the rows (not awaited:
    /// a crash before they commit only repeats the deletion on open).
    async fn retire(&self, ids: Vec<String>) {
        let mut ops = Vec::new();
        for id in ids {
            match self.blobs.remove(&id).await {
                Ok(()) => ops.push(del(T_ORPHANS, id)),
                Err(e) => tracing::warn!(error = %e, blob = %id, "cannot delete replaced blob"),
            }
        }
        drop(self.meta.write_grouped(ops));
    }

    // ---------------------------------------------------------------- buckets

    /// CreateBucket.
    pub async fn create_bucket(&self, account: &str, region: &str, bucket: &str) -> Result<BucketInfo> {
        validate_bucket_name(bucket)?;
        let _g = self.buckets_lock.write().await;
        if let Some(existing) = self.get_doc::<BucketDoc>(T_BUCKETS, bucket)? {
            return Err(if existing.owner_account == account {
                Error::BucketAlreadyOwnedByYou { bucket: bucket.into() }
            } else {
                Error::BucketAlreadyExists { bucket: bucket.into() }
            });
        }
        let doc = BucketDoc {
            version: DOC_VERSION,
            name: bucket.into(),
            owner_account: account.into(),
            region: region.into(),
            created_ms: self.now(),
            uid: uuid::Uuid::new_v4().to_string(),
            tags: BTreeMap::new(),
            notification: None,
            replication: None,
            replication_rules: None,
            policy: None,
            versioning: None,
        };
        self.commit(vec![put(T_BUCKETS, bucket.into(), to_json(&doc)?)], Vec::new())
            .await?;
        Ok(doc.info())
    }

    /// DeleteBucket: `BucketNotEmpty` while objects or in-progress uploads exist.
    pub async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        let _g = self.buckets_lock.write().await;
        self.bucket_doc(bucket)?;
        let prefix = format!("{bucket}\0");
        let snap = self.meta.snapshot()?;
        for table in [T_OBJECTS, T_UPLOADS, T_VERSIONS] {
            let t = snap.table(table)?;
            if let Some(item) = t.range(Bound::Included(prefix.as_str()), Bound::Unbounded)?.next() {
                let (k, _) = item?;
                if k.starts_with(&prefix) {
                    return Err(Error::BucketNotEmpty { bucket: bucket.into() });
                }
            }
        }
        let mut ops = vec![del(T_BUCKETS, bucket.into())];
        for (k, _) in self.meta.scan_prefix(T_REPLICATION, &prefix)? {
            ops.push(del(T_REPLICATION, k));
        }
        self.commit(ops, Vec::new()).await
    }

    /// HeadBucket / GetBucketLocation.
    pub fn bucket(&self, bucket: &str) -> Result<BucketInfo> {
        Ok(self.bucket_doc(bucket)?.info())
    }

    /// ListBuckets: the buckets of `account`, sorted by name.
    pub fn list_buckets(&self, account: &str) -> Result<Vec<BucketInfo>> {
        let mut out = Vec::new();
        for (k, v) in self.meta.scan_prefix(T_BUCKETS, "")? {
            let doc: BucketDoc = from_json(T_BUCKETS, &k, &v)?;
            if doc.owner_account == account {
                out.push(doc.info());
            }
        }
        Ok(out)
    }

    async fn update_bucket(&self, bucket: &str, f: impl FnOnce(&mut BucketDoc) -> Result<()>) -> Result<()> {
        let _g = self.buckets_lock.write().await;
        let mut doc = self.bucket_doc(bucket)?;
        f(&mut doc)?;
        self.commit(vec![put(T_BUCKETS, bucket.into(), to_json(&doc)?)], Vec::new())
            .await
    }

    /// GetBucketTagging (empty map = no tag set).
    pub fn get_bucket_tags(&self, bucket: &str) -> Result<BTreeMap<String, String>> {
        Ok(self.bucket_doc(bucket)?.tags)
    }

    /// PutBucketTagging (replaces the set; at most 50 tags).
    pub async fn put_bucket_tags(&self, bucket: &str, tags: BTreeMap<String, String>) -> Result<()> {
        validate_tags(&tags, MAX_BUCKET_TAGS)?;
        self.update_bucket(bucket, |d| {
            d.tags = tags;
            Ok(())
        })
        .await
    }

    /// DeleteBucketTagging.
    pub async fn delete_bucket_tags(&self, bucket: &str) -> Result<()> {
        self.update_bucket(bucket, |d| {
            d.tags.clear();
            Ok(())
        })
        .await
    }

    /// PutBucketPolicy (`Some`) / DeleteBucketPolicy (`None`): stored opaque (the adapter
    /// validates the document and enforces it).
    pub async fn put_bucket_policy(&self, bucket: &str, policy: Option<String>) -> Result<()> {
        self.update_bucket(bucket, |d| {
            d.policy = policy;
            Ok(())
        })
        .await
    }

    /// GetBucketPolicy (`None`: the bucket has none).
    pub fn get_bucket_policy(&self, bucket: &str) -> Result<Option<String>> {
        Ok(self.bucket_doc(bucket)?.policy)
    }

    /// PutBucketNotificationConfiguration: stored opaque (the adapter validates).
    pub async fn put_bucket_notification(&self, bucket: &str, config_json: String) -> Result<()> {
        self.update_bucket(bucket, |d| {
            d.notification = Some(config_json);
            Ok(())
        })
        .await
    }

    /// GetBucketNotificationConfiguration.
    pub fn get_bucket_notification(&self, bucket: &str) -> Result<Option<String>> {
        Ok(self.bucket_doc(bucket)?.notification)
    }

    /// PutBucketReplication (`Some((document, config))`: the caller's document, kept opaque
    /// for GetBucketReplication, and the rules the engine applies) / DeleteBucketReplication
    /// (`None`). Versions written from then on follow the new rules; pending replications keep
    /// the destination they were given.
    pub async fn set_bucket_replication(
        &self,
        bucket: &str,
        config: Option<(String, ReplicationConfig)>,
    ) -> Result<()> {
        let (json, rules) = config.unzip();
        self.update_bucket(bucket, |d| {
            d.replication = json;
            d.replication_rules = rules;
            Ok(())
        })
        .await
    }

    /// The replication configuration the engine applies to `bucket`, if any.
    pub fn get_bucket_replication_config(&self, bucket: &str) -> Result<Option<ReplicationConfig>> {
        Ok(self.bucket_doc(bucket)?.replication_rules)
    }

    /// GetBucketReplication.
    pub fn get_bucket_replication(&self, bucket: &str) -> Result<Option<String>> {
        Ok(self.bucket_doc(bucket)?.replication)
    }

    /// GetBucketVersioning: `None` for a bucket that was never versioned.
    pub fn get_bucket_versioning(&self, bucket: &str) -> Result<Option<Versioning>> {
        Ok(self.bucket_doc(bucket)?.versioning)
    }

    /// PutBucketVersioning. The first configuration of a bucket turns every existing
    /// object into its `null` version, in the same transaction.
    pub async fn put_bucket_versioning(&self, bucket: &str, state: Versioning) -> Result<()> {
        let _g = self.buckets_lock.write().await;
        let mut doc = self.bucket_doc(bucket)?;
        if state == Versioning::Suspended && doc.replication_rules.is_some() {
            return Err(Error::InvalidBucketState(
                "Replication configuration is present on this bucket, so you cannot change the versioning state. To change the versioning state, first delete the replication configuration.".into(),
            ));
        }
        let mut ops = Vec::new();
        if doc.versioning.is_none() {
            let prefix = format!("{bucket}\0");
            for (k, v) in self.meta.scan_prefix(T_OBJECTS, &prefix)? {
                let mut d: ObjectDoc = from_json(T_OBJECTS, &k, &v)?;
                let stamp = self.new_stamp(None)?;
                d.version = DOC_VERSION;
                d.vid = Some(NULL_VERSION.into());
                d.vsort = Some(stamp.clone());
                let json = to_json(&d)?;
                ops.push(put(
                    T_VERSIONS,
                    ver_key(bucket, &k[prefix.len()..], &stamp),
                    json.clone(),
                ));
                ops.push(put(T_OBJECTS, k, json));
            }
        }
        doc.versioning = Some(state);
        doc.version = DOC_VERSION;
        ops.push(put(T_BUCKETS, bucket.into(), to_json(&doc)?));
        self.commit(ops, Vec::new()).await
    }

    // ---------------------------------------------------------------- objects

    /// Replaces or creates `bucket/key` with a staged body, as one transaction with its
    /// event (`extra` must hold the staged body's [`Staged::adopt_op`]); deletes the
    /// replaced blob file afterwards. `condition` is checked against the current object
    /// under the object lock; if it fails, the staged body is discarded.
    #[allow(clippy::too_many_arguments)]
    async fn install_object(
        &self,
        bucket: &str,
        key: &str,
        mut doc: ObjectDoc,
        event: &'static str,
        mut extra: Vec<MetaOp>,
        mut retired: Vec<String>,
        condition: Option<&WriteCondition>,
    ) -> Result<Result<ObjectInfo, ConditionFailed>> {
        let staged_id = doc.blob.clone();
        let staged_inline = doc.inline;
        let mut queued = false;
        let result = async {
            let _b = self.buckets_lock.read().await;
            let _o = self.object_lock(bucket, key).lock().await;
            let bdoc = self.bucket_doc(bucket)?;
            let versioning = bdoc.versioning;
            let k = obj_key(bucket, key);
            let old: Option<ObjectDoc> = self.get_doc(T_OBJECTS, &k)?;
            if let Some(failed) = check_condition(condition, old.as_ref()) {
                return Ok(Err(failed));
            }
            let mut ops = Vec::with_capacity(extra.len() + 3);
            match versioning {
                None => {
                    ops.push(put(T_OBJECTS, k, to_json(&doc)?));
                    if let Some(old) = old {
                        self.release(&old.blob, old.inline, &mut ops, &mut retired)?;
                    }
                }
                Some(state) => {
                    let targets = replication_targets(&bdoc, state, key, &doc.tags, false);
                    if !targets.is_empty() {
                        doc.replication_status = Some(ReplicationStatus::Pending);
                    }
                    // The old current version stays (its row owns its body).
                    self.new_version_ops(bucket, key, state, &mut doc, &mut ops, &mut retired)?;
                    queued = self.queue_replications(bucket, key, &doc, targets, &mut ops)?;
                    ops.push(put(T_OBJECTS, k, to_json(&doc)?));
                }
            }
            ops.append(&mut extra);
            let event = EventDraft {
                name: event,
                bucket: bucket.into(),
                key: key.into(),
                size: doc.size,
                etag: doc.etag.clone(),
                version_id: doc.vid.clone(),
            };
            self.commit(ops, vec![event]).await?;
            if queued {
                self.replication_notify.notify_one();
            }
            Ok(Ok(doc.info(bucket, key)))
        }
        .await;
        match result {
            Ok(Ok(info)) => {
                self.retire(retired).await;
                Ok(Ok(info))
            }
            Ok(Err(failed)) => {
                if !staged_inline {
                    self.discard(&staged_id).await;
                }
                Ok(Err(failed))
            }
            Err(e) => {
                if !staged_inline {
                    self.discard(&staged_id).await;
                }
                Err(e)
            }
        }
    }

    /// A new version stamp: newer than every stamp issued before by this engine and than
    /// `newest` (the key's newest stamp).
    fn new_stamp(&self, newest: Option<&str>) -> Result<String> {
        let mut last = self
            .last_stamp
            .lock()
            .map_err(|_| Error::Internal("version stamp lock poisoned".into()))?;
        let mut t = (self.now().max(0) as u64).saturating_mul(1000).max(*last + 1);
        if let Some(n) = newest.and_then(stamp_time) {
            t = t.max(n.saturating_add(1));
        }
        *last = t;
        let random = uuid::Uuid::new_v4().simple().to_string();
        Ok(format!("{:016x}{}", u64::MAX - t, &random[..16]))
    }

    /// Makes `doc` the newest version of `bucket/key` in a bucket with versioning `state`:
    /// stamps it (version id = the stamp, or `null` when suspended) and adds its
    /// `s3_versions` row to `ops`. When suspended, the existing null version is removed
    /// (its body released). The caller holds the object lock and writes the mirror.
    fn new_version_ops(
        &self,
        bucket: &str,
        key: &str,
        state: Versioning,
        doc: &mut ObjectDoc,
        ops: &mut Vec<MetaOp>,
        retired: &mut Vec<String>,
    ) -> Result<()> {
        if key.contains('\0') {
            return Err(Error::InvalidArgument(
                "Object keys containing U+0000 are not supported in a versioned bucket".into(),
            ));
        }
        let snap = self.meta.snapshot()?;
        let t = snap.table(T_VERSIONS)?;
        let rows = match state {
            Versioning::Enabled => key_versions(&t, bucket, key, 1)?,
            Versioning::Suspended => key_versions(&t, bucket, key, usize::MAX)?,
        };
        let stamp = self.new_stamp(rows.first().map(|(k, _)| stamp_of(k)))?;
        if state == Versioning::Suspended {
            for (row, old) in &rows {
                if old.vid.as_deref() == Some(NULL_VERSION) {
                    ops.push(del(T_VERSIONS, row.clone()));
                    if !old.delete_marker {
                        self.release(&old.blob, old.inline, ops, retired)?;
                    }
                }
            }
        }
        doc.vid = Some(match state {
            Versioning::Enabled => stamp.clone(),
            Versioning::Suspended => NULL_VERSION.to_string(),
        });
        doc.vsort = Some(stamp.clone());
        ops.push(put(T_VERSIONS, ver_key(bucket, key, &stamp), to_json(doc)?));
        Ok(())
    }

    /// The current object document of `bucket/key`, if any (no bucket check).
    fn current_doc(&self, bucket: &str, key: &str) -> Result<Option<ObjectDoc>> {
        self.get_doc(T_OBJECTS, &obj_key(bucket, key))
    }

    /// PutObject. A body of at most [`Config::inline_max`] bytes is stored inline; a longer
    /// one is streamed to disk, never held in memory.
    pub async fn put_object<S>(&self, bucket: &str, key: &str, body: S, opts: PutOptions) -> Result<ObjectInfo>
    where
        S: Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + Unpin,
    {
        self.put_object_if(bucket, key, body, opts, None)
            .await?
            .map_err(unconditional)
    }

    /// PutObject with an optional [`WriteCondition`], checked atomically with the commit
    /// (and once before the body is streamed, to fail early). `Ok(Err(_))`: the condition
    /// did not hold and nothing was written.
    pub async fn put_object_if<S>(
        &self,
        bucket: &str,
        key: &str,
        body: S,
        opts: PutOptions,
        condition: Option<WriteCondition>,
    ) -> Result<Result<ObjectInfo, ConditionFailed>>
    where
        S: Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + Unpin,
    {
        validate_key(key)?;
        validate_tags(&opts.tags, MAX_OBJECT_TAGS)?;
        self.bucket_doc(bucket)?;
        if condition.is_some()
            && let Some(failed) = check_condition(condition.as_ref(), self.current_doc(bucket, key)?.as_ref())
        {
            return Ok(Err(failed));
        }
        let algorithm = opts.checksum.as_ref().map(|c| c.algorithm);
        let mut staged = self
            .stage(
                body,
                Origin::Client,
                MAX_OBJECT_SIZE,
                algorithm,
                opts.content_md5.as_deref(),
                opts.checksum.as_ref(),
            )
            .await?;
        let adopt = staged.adopt_op();
        let doc = ObjectDoc {
            version: DOC_VERSION,
            blob: staged.id,
            size: staged.size,
            etag: hex(&staged.digests.md5),
            last_modified_ms: self.now(),
            headers: ObjectHeaders::from_opts(&opts),
            checksum: staged.digests.checksum,
            parts_count: None,
            tags: opts.tags,
            inline: staged.inline,
            vid: None,
            vsort: None,
            delete_marker: false,
            replication_status: None,
        };
        self.install_object(
            bucket,
            key,
            doc,
            "ObjectCreated:Put",
            vec![adopt],
            Vec::new(),
            condition.as_ref(),
        )
        .await
    }

    /// The document of the current version (`version_id = None`) or of the given version
    /// of `bucket/key`, as of `snap`. A delete marker is [`Error::DeleteMarker`].
    fn object_doc_in(
        snap: &kd_storage::Snapshot,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectDoc> {
        if version_id.is_none()
            && let Some(d) = Self::snap_doc(&snap.table(T_OBJECTS)?, T_OBJECTS, &obj_key(bucket, key))?
        {
            return Ok(d);
        }
        let Some(b) = Self::snap_doc::<BucketDoc>(&snap.table(T_BUCKETS)?, T_BUCKETS, bucket)? else {
            return Err(Error::NoSuchBucket { bucket: bucket.into() });
        };
        let Some(vid) = version_id else {
            if b.versioning.is_some()
                && let Some((_, d)) = key_versions(&snap.table(T_VERSIONS)?, bucket, key, 1)?.pop()
                && d.delete_marker
            {
                return Err(Error::DeleteMarker {
                    key: key.into(),
                    version_id: d.vid.unwrap_or_else(|| NULL_VERSION.into()),
                    by_version: false,
                });
            }
            return Err(Error::NoSuchKey { key: key.into() });
        };
        if !is_version_id(vid) {
            return Err(invalid_version_id());
        }
        let no_such_version = || Error::NoSuchVersion {
            key: key.into(),
            version_id: vid.into(),
        };
        if b.versioning.is_none() {
            if vid == NULL_VERSION
                && let Some(d) = Self::snap_doc(&snap.table(T_OBJECTS)?, T_OBJECTS, &obj_key(bucket, key))?
            {
                return Ok(d);
            }
            return Err(no_such_version());
        }
        match find_version(&snap.table(T_VERSIONS)?, bucket, key, vid)? {
            None => Err(no_such_version()),
            Some((_, d)) if d.delete_marker => Err(Error::DeleteMarker {
                key: key.into(),
                version_id: vid.into(),
                by_version: true,
            }),
            Some((_, d)) => Ok(d),
        }
    }

    /// HeadObject.
    pub fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        self.head_object_version(bucket, key, None)
    }

    /// HeadObject of the current version (`None`) or of version `version_id`.
    pub fn head_object_version(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<ObjectInfo> {
        Ok(Self::object_doc_in(&self.meta.snapshot()?, bucket, key, version_id)?.info(bucket, key))
    }

    /// Reads the object document and opens its body: an inline body comes from the same
    /// snapshot as the document; for a blob file, retries if the object was replaced
    /// between reading the document and opening the file.
    async fn open_object(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<(ObjectDoc, StoredBody)> {
        for _ in 0..8 {
            let doc = {
                let snap = self.meta.snapshot()?;
                let doc = Self::object_doc_in(&snap, bucket, key, version_id)?;
                if doc.inline {
                    let bytes = inline_bytes(snap.table(T_INLINE)?.get(&doc.blob)?, &doc.blob, doc.size)?;
                    return Ok((doc, StoredBody::Inline(bytes)));
                }
                doc
            };
            if let Some(f) = self.blobs.open_blob(&doc.blob).await? {
                return Ok((doc, StoredBody::File(f)));
            }
        }
        Err(Error::Internal(format!("blob of {bucket}/{key} keeps disappearing")))
    }

    /// Several byte ranges (half-open, `start..end`) of the current version of an object,
    /// read in one go: one lookup, one open and positioned reads. This is the columnar
    /// readers' path (a Parquet reader asks for a footer, then for column chunks scattered
    /// over the file); unlike [`Objects::get_object`] it neither streams nor coalesces.
    /// Every range must lie within the object (`InvalidRange` otherwise), and their total is
    /// limited to [`MAX_RANGES_BYTES`].
    ///
    /// Up to [`INLINE_READ_BYTES`] in all are read on the calling thread: a query reads
    /// its column chunks from files the page cache usually holds, where a hop to the
    /// blocking pool and back costs more than the copy, and leaves the query's partition
    /// idle meanwhile (a scan waits on one read at a time). Larger reads go to the
    /// blocking pool.
    pub async fn read_ranges(
        &self,
        bucket: &str,
        key: &str,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<(ObjectInfo, Vec<Bytes>)> {
        let (doc, stored) = self.open_current_now(bucket, key)?;
        check_ranges(ranges, doc.size)?;
        let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        let parts = match stored {
            StoredBody::Inline(b) => ranges
                .iter()
                .map(|r| b.slice(r.start as usize..r.end as usize))
                .collect(),
            StoredBody::File(file) if total <= INLINE_READ_BYTES => read_file_ranges(&file, ranges)?,
            StoredBody::File(file) => {
                let ranges = ranges.to_vec();
                tokio::task::spawn_blocking(move || read_file_ranges(&file, &ranges))
                    .await
                    .map_err(|e| Error::Internal(format!("blob reader: {e}")))??
            }
        };
        Ok((doc.info(bucket, key), parts))
    }

    /// [`Objects::open_object`] of the current version on the calling thread (an open is a
    /// metadata lookup the page cache answers).
    fn open_current_now(&self, bucket: &str, key: &str) -> Result<(ObjectDoc, StoredBody<std::fs::File>)> {
        for _ in 0..8 {
            let snap = self.meta.snapshot()?;
            let doc = Self::object_doc_in(&snap, bucket, key, None)?;
            if doc.inline {
                let bytes = inline_bytes(snap.table(T_INLINE)?.get(&doc.blob)?, &doc.blob, doc.size)?;
                return Ok((doc, StoredBody::Inline(bytes)));
            }
            let path = self.blobs.blob_path(&doc.blob)?;
            match std::fs::File::open(&path) {
                Ok(f) => return Ok((doc, StoredBody::File(f))),
                // Replaced or deleted since the lookup: look again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("open {}", path.display()), e)),
            }
        }
        Err(Error::Internal(format!("blob of {bucket}/{key} keeps disappearing")))
    }

    /// GetObject: the object, the resolved range (inclusive) if one was asked for and
    /// satisfiable, and a stream of the bytes.
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, Option<(u64, u64)>, BodyStream)> {
        self.get_object_version(bucket, key, None, range).await
    }

    /// GetObject of the current version (`None`) or of version `version_id`.
    pub async fn get_object_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, Option<(u64, u64)>, BodyStream)> {
        let (doc, stored) = self.open_object(bucket, key, version_id).await?;
        let resolved = resolve_range(range, doc.size)?;
        let (offset, len) = match resolved {
            Some((a, b)) => (a, b - a + 1),
            None => (0, doc.size),
        };
        let stream = stored.stream(offset, len).await?;
        Ok((doc.info(bucket, key), resolved, stream))
    }

    /// DeleteObject: a missing key is success; a removal writes an event. In a versioned
    /// bucket this inserts a delete marker (see [`Objects::delete_object_version`]).
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        self.delete_object_version(bucket, key, None).await.map(|_| ())
    }

    /// DeleteObject with an optional version id. Without one: in an unversioned bucket the
    /// object is removed (event `ObjectRemoved:Delete`); in a versioned bucket a delete
    /// marker becomes the current version (id `null` when suspended, replacing the null
    /// version; event `ObjectRemoved:DeleteMarkerCreated`). With one: that version (or
    /// delete marker) is permanently removed, its body released, and if it was current the
    /// next newest version becomes current (event `ObjectRemoved:Delete`). A missing key or
    /// version is success (nothing written); a malformed id is `InvalidArgument`.
    pub async fn delete_object_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<DeleteOutcome> {
        if let Some(v) = version_id
            && !is_version_id(v)
        {
            return Err(invalid_version_id());
        }
        let (outcome, retired) = {
            let _b = self.buckets_lock.read().await;
            let _o = self.object_lock(bucket, key).lock().await;
            let bdoc = self.bucket_doc(bucket)?;
            let versioning = bdoc.versioning;
            let k = obj_key(bucket, key);
            let mut ops = Vec::new();
            let mut retired = Vec::new();
            let mut queued = false;
            let event = |name: &'static str, version_id: Option<String>| EventDraft {
                name,
                bucket: bucket.into(),
                key: key.into(),
                size: 0,
                etag: String::new(),
                version_id,
            };
            let nothing = DeleteOutcome {
                version_id: version_id.map(str::to_string),
                delete_marker: false,
            };
            let (outcome, event) = match (versioning, version_id) {
                (None, v) => {
                    if v.is_some_and(|v| v != NULL_VERSION) {
                        return Ok(nothing);
                    }
                    let Some(old) = self.get_doc::<ObjectDoc>(T_OBJECTS, &k)? else {
                        return Ok(nothing);
                    };
                    ops.push(del(T_OBJECTS, k));
                    self.release(&old.blob, old.inline, &mut ops, &mut retired)?;
                    (nothing, event("ObjectRemoved:Delete", None))
                }
                (Some(state), None) => {
                    let mut marker = ObjectDoc::delete_marker(self.now());
                    let targets = replication_targets(&bdoc, state, key, &BTreeMap::new(), true);
                    self.new_version_ops(bucket, key, state, &mut marker, &mut ops, &mut retired)?;
                    queued = self.queue_replications(bucket, key, &marker, targets, &mut ops)?;
                    ops.push(del(T_OBJECTS, k));
                    (
                        DeleteOutcome {
                            version_id: marker.vid.clone(),
                            delete_marker: true,
                        },
                        event("ObjectRemoved:DeleteMarkerCreated", marker.vid),
                    )
                }
                (Some(_), Some(v)) => {
                    let snap = self.meta.snapshot()?;
                    let rows = key_versions(&snap.table(T_VERSIONS)?, bucket, key, usize::MAX)?;
                    drop(snap);
                    let Some(pos) = rows.iter().position(|(_, d)| d.vid.as_deref() == Some(v)) else {
                        return Ok(nothing);
                    };
                    let (row, old) = &rows[pos];
                    ops.push(del(T_VERSIONS, row.clone()));
                    if !old.delete_marker {
                        self.release(&old.blob, old.inline, &mut ops, &mut retired)?;
                    }
                    if pos == 0 {
                        // The next newest version becomes current.
                        match rows.get(1) {
                            Some((_, next)) if !next.delete_marker => ops.push(put(T_OBJECTS, k, to_json(next)?)),
                            _ => ops.push(del(T_OBJECTS, k)),
                        }
                    }
                    (
                        DeleteOutcome {
                            version_id: Some(v.to_string()),
                            delete_marker: old.delete_marker,
                        },
                        event("ObjectRemoved:Delete", Some(v.to_string())),
                    )
                }
            };
            self.commit(ops, vec![event]).await?;
            if queued {
                self.replication_notify.notify_one();
            }
            (outcome, retired)
        };
        self.retire(retired).await;
        Ok(outcome)
    }

    /// CopyObject. `replace_metadata = None` is the COPY directive (headers, user metadata
    /// and tags are kept); `Some(opts)` replaces them with `opts` (tags included). The
    /// bytes are copied by streaming.
    pub async fn copy_object(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
        replace_metadata: Option<PutOptions>,
    ) -> Result<ObjectInfo> {
        self.copy_object_if(src_bucket, src_key, dst_bucket, dst_key, replace_metadata, None)
            .await?
            .map_err(unconditional)
    }

    /// CopyObject with an optional [`WriteCondition`] on the destination, checked
    /// atomically with the commit (and once before the bytes are copied). A missing source
    /// is `NoSuchKey` whatever the condition. `Ok(Err(_))`: nothing was written.
    pub async fn copy_object_if(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
        replace_metadata: Option<PutOptions>,
        condition: Option<WriteCondition>,
    ) -> Result<Result<ObjectInfo, ConditionFailed>> {
        self.copy_object_version_if(
            src_bucket,
            src_key,
            None,
            dst_bucket,
            dst_key,
            replace_metadata,
            condition,
        )
        .await
    }

    /// [`Objects::copy_object_if`] from version `src_version_id` of the source (`None`: its
    /// current version). Copying a version onto its own key (to restore it) is allowed.
    #[allow(clippy::too_many_arguments)]
    pub async fn copy_object_version_if(
        &self,
        src_bucket: &str,
        src_key: &str,
        src_version_id: Option<&str>,
        dst_bucket: &str,
        dst_key: &str,
        replace_metadata: Option<PutOptions>,
        condition: Option<WriteCondition>,
    ) -> Result<Result<ObjectInfo, ConditionFailed>> {
        validate_key(dst_key)?;
        if let Some(o) = &replace_metadata {
            validate_tags(&o.tags, MAX_OBJECT_TAGS)?;
        }
        if src_bucket == dst_bucket && src_key == dst_key && replace_metadata.is_none() && src_version_id.is_none() {
            return Err(Error::InvalidRequest(
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.".into(),
            ));
        }
        self.bucket_doc(dst_bucket)?;
        let (src, stored) = self.open_object(src_bucket, src_key, src_version_id).await?;
        if condition.is_some()
            && let Some(failed) = check_condition(condition.as_ref(), self.current_doc(dst_bucket, dst_key)?.as_ref())
        {
            return Ok(Err(failed));
        }
        let algorithm = match &replace_metadata {
            Some(o) => o.checksum.as_ref().map(|c| c.algorithm),
            None => None,
        }
        .or(src.checksum.as_ref().map(|c| c.0));
        let body = stored.stream(0, src.size).await?;
        let mut staged = self
            .stage(body, Origin::Stored, u64::MAX, algorithm, None, None)
            .await?;
        let adopt = staged.adopt_op();
        let (headers, tags) = match replace_metadata {
            Some(o) => (ObjectHeaders::from_opts(&o), o.tags),
            None => (src.headers.clone(), src.tags.clone()),
        };
        let doc = ObjectDoc {
            version: DOC_VERSION,
            blob: staged.id,
            size: staged.size,
            etag: src.etag.clone(),
            last_modified_ms: self.now(),
            headers,
            checksum: staged.digests.checksum,
            parts_count: src.parts_count,
            tags,
            inline: staged.inline,
            vid: None,
            vsort: None,
            delete_marker: false,
            replication_status: None,
        };
        // A copy of a plain object has the MD5 of its bytes, which is the source's ETag; a
        // copy of a multipart object keeps the multipart ETag, as S3 does.
        self.install_object(
            dst_bucket,
            dst_key,
            doc,
            "ObjectCreated:Copy",
            vec![adopt],
            Vec::new(),
            condition.as_ref(),
        )
        .await
    }

    /// ListObjects / ListObjectsV2 over a range scan: keys after `start_after` that start
    /// with `prefix`, rolled up at `delimiter` into common prefixes (a whole common prefix
    /// is skipped with one seek). `next_marker` (set when truncated) is the last key or
    /// common prefix returned and can be passed back as `start_after`.
    pub fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        start_after: Option<&str>,
        max_keys: usize,
    ) -> Result<ListPage> {
        let snap = self.meta.snapshot()?;
        if snap.table(T_BUCKETS)?.get(bucket)?.is_none() {
            return Err(Error::NoSuchBucket { bucket: bucket.into() });
        }
        let objects = snap.table(T_OBJECTS)?;
        let base = format!("{bucket}\0");
        let full_prefix = format!("{base}{prefix}");
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let mut page = ListPage::default();
        if max_keys == 0 {
            return Ok(page);
        }
        // Where to seek, and a prefix whose keys are to be skipped (a rolled-up prefix).
        let mut start = Bound::Included(full_prefix.clone());
        let mut skip: Option<String> = None;
        if let Some(after) = start_after {
            let after_full = format!("{base}{after}");
            if after_full >= full_prefix {
                // A marker that is itself a common prefix skips every key under it.
                if let Some(d) = delimiter
                    && let Some(rest) = after.strip_prefix(prefix)
                    && rest.ends_with(d)
                    && rest.find(d).map(|i| i + d.len()) == Some(rest.len())
                {
                    start = Bound::Excluded(format!("{after_full}{MAX_CHAR}"));
                    skip = Some(after_full);
                } else {
                    start = Bound::Excluded(after_full);
                }
            }
        }
        let mut count = 0usize;
        'seek: loop {
            let range = match &start {
                Bound::Included(s) => objects.range(Bound::Included(s.as_str()), Bound::Unbounded)?,
                Bound::Excluded(s) => objects.range(Bound::Excluded(s.as_str()), Bound::Unbounded)?,
                Bound::Unbounded => objects.range(Bound::Unbounded, Bound::Unbounded)?,
            };
            for item in range {
                let (k, v) = item?;
                if !k.starts_with(&full_prefix) {
                    break 'seek;
                }
                if let Some(s) = &skip
                    && k.starts_with(s.as_str())
                {
                    continue;
                }
                let key = &k[base.len()..];
                let rolled = delimiter.and_then(|d| {
                    key[prefix.len()..]
                        .find(d)
                        .map(|i| key[..prefix.len() + i + d.len()].to_string())
                });
                if count == max_keys {
                    page.is_truncated = true;
                    break 'seek;
                }
                count += 1;
                match rolled {
                    Some(cp) => {
                        let cp_full = format!("{base}{cp}");
                        start = Bound::Excluded(format!("{cp_full}{MAX_CHAR}"));
                        skip = Some(cp_full);
                        page.next_marker = Some(cp.clone());
                        page.common_prefixes.push(cp);
                        continue 'seek;
                    }
                    None => {
                        let doc: ObjectDoc = from_json(T_OBJECTS, &k, &v)?;
                        page.next_marker = Some(key.to_string());
                        page.objects.push(doc.info(bucket, key));
                    }
                }
            }
            break;
        }
        if !page.is_truncated {
            page.next_marker = None;
        }
        Ok(page)
    }

    /// ListObjectVersions: versions and delete markers of keys starting with `prefix`, in
    /// key order and newest first within a key, after (`key_marker`, `version_id_marker`),
    /// rolled up at `delimiter`; at most `max_keys` entries (versions + common prefixes).
    /// An unversioned bucket lists each object as its `null` version.
    pub fn list_object_versions(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        key_marker: Option<&str>,
        version_id_marker: Option<&str>,
        max_keys: usize,
    ) -> Result<VersionPage> {
        let snap = self.meta.snapshot()?;
        let Some(b) = Self::snap_doc::<BucketDoc>(&snap.table(T_BUCKETS)?, T_BUCKETS, bucket)? else {
            return Err(Error::NoSuchBucket { bucket: bucket.into() });
        };
        if let Some(v) = version_id_marker
            && !is_version_id(v)
        {
            return Err(Error::InvalidArgument("Invalid version id specified".into()));
        }
        let versioned = b.versioning.is_some();
        let table_name = if versioned { T_VERSIONS } else { T_OBJECTS };
        let table = snap.table(table_name)?;
        let base = format!("{bucket}\0");
        let full_prefix = format!("{base}{prefix}");
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let mut page = VersionPage::default();
        if max_keys == 0 {
            return Ok(page);
        }
        let mut start = Bound::Included(full_prefix.clone());
        let mut skip: Option<String> = None;
        // The key whose rows before `start` were already listed (its next row is not latest).
        let mut prev_key: Option<String> = None;
        if let Some(km) = key_marker {
            let after_full = format!("{base}{km}");
            if after_full >= full_prefix {
                if let Some(d) = delimiter
                    && let Some(rest) = km.strip_prefix(prefix)
                    && rest.ends_with(d)
                    && rest.find(d).map(|i| i + d.len()) == Some(rest.len())
                {
                    start = Bound::Excluded(format!("{after_full}{MAX_CHAR}"));
                    skip = Some(after_full);
                } else if !versioned {
                    start = Bound::Excluded(after_full);
                } else {
                    let stamp = match version_id_marker {
                        Some(NULL_VERSION) => {
                            find_version(&table, bucket, km, NULL_VERSION)?.map(|(row, _)| stamp_of(&row).to_string())
                        }
                        Some(v) => Some(v.to_string()),
                        None => None,
                    };
                    match stamp {
                        Some(s) => {
                            start = Bound::Excluded(ver_key(bucket, km, &s));
                            prev_key = Some(km.to_string());
                        }
                        None => start = Bound::Excluded(format!("{after_full}\0{MAX_CHAR}")),
                    }
                }
            }
        }
        let mut count = 0usize;
        'seek: loop {
            let range = match &start {
                Bound::Included(s) => table.range(Bound::Included(s.as_str()), Bound::Unbounded)?,
                Bound::Excluded(s) => table.range(Bound::Excluded(s.as_str()), Bound::Unbounded)?,
                Bound::Unbounded => table.range(Bound::Unbounded, Bound::Unbounded)?,
            };
            for item in range {
                let (k, v) = item?;
                if !k.starts_with(&full_prefix) {
                    break 'seek;
                }
                if let Some(s) = &skip
                    && k.starts_with(s.as_str())
                {
                    continue;
                }
                let key = if versioned {
                    match k.len().checked_sub(STAMP_LEN + 1) {
                        Some(end) if end >= base.len() => &k[base.len()..end],
                        _ => continue,
                    }
                } else {
                    &k[base.len()..]
                };
                if !key.starts_with(prefix) {
                    continue;
                }
                let rolled = delimiter.and_then(|d| {
                    key[prefix.len()..]
                        .find(d)
                        .map(|i| key[..prefix.len() + i + d.len()].to_string())
                });
                if count == max_keys {
                    page.is_truncated = true;
                    break 'seek;
                }
                count += 1;
                match rolled {
                    Some(cp) => {
                        let cp_full = format!("{base}{cp}");
                        start = Bound::Excluded(format!("{cp_full}{MAX_CHAR}"));
                        skip = Some(cp_full);
                        page.next_key_marker = Some(cp.clone());
                        page.next_version_id_marker = None;
                        page.common_prefixes.push(cp);
                        continue 'seek;
                    }
                    None => {
                        let doc: ObjectDoc = from_json(table_name, &k, &v)?;
                        let is_latest = prev_key.as_deref() != Some(key);
                        if is_latest {
                            prev_key = Some(key.to_string());
                        }
                        let version_id = doc.vid.clone().unwrap_or_else(|| NULL_VERSION.into());
                        page.next_key_marker = Some(key.to_string());
                        page.next_version_id_marker = Some(version_id.clone());
                        page.versions.push(VersionEntry {
                            info: doc.info(bucket, key),
                            version_id,
                            is_latest,
                            delete_marker: doc.delete_marker,
                        });
                    }
                }
            }
            break;
        }
        if !page.is_truncated {
            page.next_key_marker = None;
            page.next_version_id_marker = None;
        }
        Ok(page)
    }

    // ---------------------------------------------------------------- object tags

    /// GetObjectTagging.
    pub fn get_object_tags(&self, bucket: &str, key: &str) -> Result<BTreeMap<String, String>> {
        self.get_object_version_tags(bucket, key, None)
    }

    /// GetObjectTagging of the current version (`None`) or of version `version_id`.
    pub fn get_object_version_tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<BTreeMap<String, String>> {
        Ok(Self::object_doc_in(&self.meta.snapshot()?, bucket, key, version_id)?.tags)
    }

    /// Rewrites one version's document (its row and, if it is current, the mirror);
    /// returns its version id.
    async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        f: impl FnOnce(&mut ObjectDoc),
    ) -> Result<Option<String>> {
        let _b = self.buckets_lock.read().await;
        let _o = self.object_lock(bucket, key).lock().await;
        let snap = self.meta.snapshot()?;
        let mut doc = Self::object_doc_in(&snap, bucket, key, version_id)?;
        f(&mut doc);
        let json = to_json(&doc)?;
        let k = obj_key(bucket, key);
        let mut ops = Vec::with_capacity(2);
        match &doc.vsort {
            None => ops.push(put(T_OBJECTS, k, json)),
            Some(stamp) => {
                let current: Option<ObjectDoc> = Self::snap_doc(&snap.table(T_OBJECTS)?, T_OBJECTS, &k)?;
                drop(snap);
                ops.push(put(T_VERSIONS, ver_key(bucket, key, stamp), json.clone()));
                if current.is_some_and(|c| c.vsort.as_deref() == Some(stamp.as_str())) {
                    ops.push(put(T_OBJECTS, k, json));
                }
            }
        }
        self.commit(ops, Vec::new()).await?;
        Ok(doc.vid)
    }

    /// PutObjectTagging (replaces the set; at most 10 tags).
    pub async fn put_object_tags(&self, bucket: &str, key: &str, tags: BTreeMap<String, String>) -> Result<()> {
        self.put_object_version_tags(bucket, key, None, tags).await.map(|_| ())
    }

    /// PutObjectTagging of the current version (`None`) or of version `version_id`;
    /// returns the version id of the version tagged.
    pub async fn put_object_version_tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        tags: BTreeMap<String, String>,
    ) -> Result<Option<String>> {
        validate_tags(&tags, MAX_OBJECT_TAGS)?;
        self.update_object(bucket, key, version_id, |d| d.tags = tags).await
    }

    /// DeleteObjectTagging.
    pub async fn delete_object_tags(&self, bucket: &str, key: &str) -> Result<()> {
        self.update_object(bucket, key, None, |d| d.tags.clear())
            .await
            .map(|_| ())
    }

    // ---------------------------------------------------------------- multipart

    /// CreateMultipartUpload: returns the upload id.
    pub async fn create_multipart(&self, bucket: &str, key: &str, opts: PutOptions) -> Result<String> {
        validate_key(key)?;
        validate_tags(&opts.tags, MAX_OBJECT_TAGS)?;
        let _b = self.buckets_lock.read().await;
        self.bucket_doc(bucket)?;
        let now = self.now();
        let upload_id = format!("{:012x}{}", now.max(0), uuid::Uuid::new_v4().simple());
        let doc = UploadDoc {
            version: DOC_VERSION,
            bucket: bucket.into(),
            key: key.into(),
            upload_id: upload_id.clone(),
            initiated_ms: now,
            headers: ObjectHeaders::from_opts(&opts),
            tags: opts.tags,
            checksum_algorithm: opts.checksum.map(|c| c.algorithm),
        };
        self.commit(
            vec![put(T_UPLOADS, upload_key(bucket, key, &upload_id), to_json(&doc)?)],
            Vec::new(),
        )
        .await?;
        Ok(upload_id)
    }

    fn upload_doc(&self, bucket: &str, key: &str, upload_id: &str) -> Result<UploadDoc> {
        match self.get_doc(T_UPLOADS, &upload_key(bucket, key, upload_id))? {
            Some(d) => Ok(d),
            None => {
                self.bucket_doc(bucket)?;
                Err(Error::NoSuchUpload {
                    upload_id: upload_id.into(),
                })
            }
        }
    }

    fn check_part_number(part_number: u32) -> Result<()> {
        if (1..=MAX_PART_NUMBER).contains(&part_number) {
            Ok(())
        } else {
            Err(Error::InvalidArgument(
                "Part number must be an integer between 1 and 10000, inclusive".into(),
            ))
        }
    }

    async fn install_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        mut staged: Staged,
    ) -> Result<PartInfo> {
        let adopt = staged.adopt_op();
        let doc = PartDoc {
            version: DOC_VERSION,
            part_number,
            blob: staged.id.clone(),
            size: staged.size,
            etag: hex(&staged.digests.md5),
            last_modified_ms: self.now(),
            checksum: staged.digests.checksum,
            inline: staged.inline,
        };
        let result = async {
            let _u = self.upload_lock(upload_id).lock().await;
            self.upload_doc(bucket, key, upload_id)?;
            let pk = part_key(upload_id, part_number);
            let old: Option<PartDoc> = self.get_doc(T_PARTS, &pk)?;
            let mut ops = vec![put(T_PARTS, pk, to_json(&doc)?), adopt];
            let mut retired = Vec::new();
            if let Some(old) = &old {
                self.release(&old.blob, old.inline, &mut ops, &mut retired)?;
            }
            self.commit(ops, Vec::new()).await?;
            Ok(retired)
        }
        .await;
        match result {
            Ok(retired) => {
                self.retire(retired).await;
                Ok(doc.info())
            }
            Err(e) => {
                if !doc.inline {
                    self.discard(&staged.id).await;
                }
                Err(e)
            }
        }
    }

    /// UploadPart. A part with the same number is replaced.
    pub async fn upload_part<S>(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: S,
        checksum: Option<ChecksumRequest>,
    ) -> Result<PartInfo>
    where
        S: Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + Unpin,
    {
        Self::check_part_number(part_number)?;
        let upload = self.upload_doc(bucket, key, upload_id)?;
        let algorithm = checksum.as_ref().map(|c| c.algorithm).or(upload.checksum_algorithm);
        let staged = self
            .stage(
                body,
                Origin::Client,
                MAX_OBJECT_SIZE,
                algorithm,
                None,
                checksum.as_ref(),
            )
            .await?;
        self.install_part(bucket, key, upload_id, part_number, staged).await
    }

    /// UploadPartCopy: a part from (a range of) an existing object.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_part_copy(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        src_bucket: &str,
        src_key: &str,
        range: Option<ByteRange>,
    ) -> Result<PartInfo> {
        Self::check_part_number(part_number)?;
        let upload = self.upload_doc(bucket, key, upload_id)?;
        let (src, stored) = self.open_object(src_bucket, src_key, None).await?;
        let (offset, len) = match resolve_range(range, src.size)? {
            Some((a, b)) => (a, b - a + 1),
            None => (0, src.size),
        };
        if len > MAX_OBJECT_SIZE {
            return Err(Error::EntityTooLarge {
                max_size: MAX_OBJECT_SIZE,
            });
        }
        let body = stored.stream(offset, len).await?;
        let staged = self
            .stage(
                body,
                Origin::Stored,
                MAX_OBJECT_SIZE,
                upload.checksum_algorithm,
                None,
                None,
            )
            .await?;
        self.install_part(bucket, key, upload_id, part_number, staged).await
    }

    /// The concatenated bytes of `parts`, each opened only when the previous one is done.
    /// The caller holds the upload lock, so the parts stay in place.
    fn parts_stream(
        &self,
        parts: Vec<PartDoc>,
    ) -> std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + '_>> {
        use futures_util::{StreamExt as _, TryStreamExt as _};
        let streams = futures_util::stream::iter(parts).then(move |p| async move {
            let body = if p.inline {
                self.meta
                    .get(T_INLINE, &p.blob)
                    .map_err(Error::from)
                    .and_then(|row| inline_bytes(row, &p.blob, p.size))
                    .and_then(|b| bytes_stream(b, 0, p.size))
            } else {
                self.blobs.read_segment(&p.blob, 0, p.size).await
            };
            body.map_err(|e| std::io::Error::other(e.to_string()))
        });
        Box::pin(streams.try_flatten())
    }

    fn upload_parts(&self, upload_id: &str) -> Result<Vec<PartDoc>> {
        let prefix = format!("{upload_id}\0");
        let mut out = Vec::new();
        for (k, v) in self.meta.scan_prefix(T_PARTS, &prefix)? {
            out.push(from_json(T_PARTS, &k, &v)?);
        }
        Ok(out)
    }

    /// CompleteMultipartUpload: concatenates the listed parts (streamed) into the object.
    /// ETag = hex(md5(concatenated part digests)) + "-" + N.
    pub async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<(u32, String)>,
    ) -> Result<ObjectInfo> {
        let _u = self.upload_lock(upload_id).lock().await;
        let upload = self.upload_doc(bucket, key, upload_id)?;
        if parts.is_empty() {
            return Err(Error::InvalidArgument("You must specify at least one part".into()));
        }
        for w in parts.windows(2) {
            if w[1].0 <= w[0].0 {
                return Err(Error::InvalidPartOrder);
            }
        }
        let stored: BTreeMap<u32, PartDoc> = self
            .upload_parts(upload_id)?
            .into_iter()
            .map(|p| (p.part_number, p))
            .collect();
        let mut sources = Vec::with_capacity(parts.len());
        let mut md5s = Vec::with_capacity(parts.len() * 16);
        for (i, (number, etag)) in parts.iter().enumerate() {
            let invalid = || Error::InvalidPart {
                part_number: *number,
                etag: etag.clone(),
            };
            let part = stored.get(number).ok_or_else(invalid)?;
            if !part.etag.eq_ignore_ascii_case(strip_quotes(etag)) {
                return Err(invalid());
            }
            if i + 1 < parts.len() && part.size < self.config.min_part_size {
                return Err(Error::EntityTooSmall {
                    part_number: *number,
                    size: part.size,
                    min_size: self.config.min_part_size,
                });
            }
            md5s.extend(decode_hex(&part.etag).ok_or_else(|| Error::Internal("bad part etag".into()))?);
            sources.push(part.clone());
        }
        let mut staged = self
            .stage(self.parts_stream(sources), Origin::Stored, u64::MAX, None, None, None)
            .await?;
        let adopt = staged.adopt_op();
        let mut h = checksum::BodyHasher::new(None);
        h.update(&md5s);
        let etag = format!("{}-{}", hex(&h.finish().md5), parts.len());
        let doc = ObjectDoc {
            version: DOC_VERSION,
            blob: staged.id,
            size: staged.size,
            etag,
            last_modified_ms: self.now(),
            headers: upload.headers,
            checksum: None,
            parts_count: u32::try_from(parts.len()).ok(),
            tags: upload.tags,
            inline: staged.inline,
            vid: None,
            vsort: None,
            delete_marker: false,
            replication_status: None,
        };
        let mut extra = vec![adopt, del(T_UPLOADS, upload_key(bucket, key, upload_id))];
        let mut retired = Vec::new();
        for p in stored.values() {
            extra.push(del(T_PARTS, part_key(upload_id, p.part_number)));
            self.release(&p.blob, p.inline, &mut extra, &mut retired)?;
        }
        self.install_object(
            bucket,
            key,
            doc,
            "ObjectCreated:CompleteMultipartUpload",
            extra,
            retired,
            None,
        )
        .await?
        .map_err(unconditional)
    }

    /// AbortMultipartUpload: deletes the upload and its parts.
    pub async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        let retired = {
            let _u = self.upload_lock(upload_id).lock().await;
            self.upload_doc(bucket, key, upload_id)?;
            let mut ops = vec![del(T_UPLOADS, upload_key(bucket, key, upload_id))];
            let mut retired = Vec::new();
            for p in self.upload_parts(upload_id)? {
                ops.push(del(T_PARTS, part_key(upload_id, p.part_number)));
                self.release(&p.blob, p.inline, &mut ops, &mut retired)?;
            }
            self.commit(ops, Vec::new()).await?;
            retired
        };
        self.retire(retired).await;
        Ok(())
    }

    /// ListMultipartUploads: uploads whose key starts with `prefix`, after
    /// (`key_marker`, `upload_id_marker`), in key then initiation order; `true` if more follow.
    pub fn list_multipart_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: Option<&str>,
        upload_id_marker: Option<&str>,
        max: usize,
    ) -> Result<(Vec<UploadInfo>, bool)> {
        let snap = self.meta.snapshot()?;
        if snap.table(T_BUCKETS)?.get(bucket)?.is_none() {
            return Err(Error::NoSuchBucket { bucket: bucket.into() });
        }
        let full_prefix = format!("{bucket}\0{prefix}");
        let mut start = Bound::Included(full_prefix.clone());
        if let Some(km) = key_marker {
            let marker = match upload_id_marker {
                Some(id) => upload_key(bucket, km, id),
                None => format!("{}{MAX_CHAR}", upload_key(bucket, km, "")),
            };
            if marker >= full_prefix {
                start = Bound::Excluded(marker);
            }
        }
        let t = snap.table(T_UPLOADS)?;
        let range = match &start {
            Bound::Excluded(s) => t.range(Bound::Excluded(s.as_str()), Bound::Unbounded)?,
            Bound::Included(s) => t.range(Bound::Included(s.as_str()), Bound::Unbounded)?,
            Bound::Unbounded => t.range(Bound::Unbounded, Bound::Unbounded)?,
        };
        let mut out = Vec::new();
        for item in range {
            let (k, v) = item?;
            if !k.starts_with(&full_prefix) {
                break;
            }
            if out.len() == max {
                return Ok((out, true));
            }
            let d: UploadDoc = from_json(T_UPLOADS, &k, &v)?;
            out.push(UploadInfo {
                bucket: d.bucket,
                key: d.key,
                upload_id: d.upload_id,
                initiated_ms: d.initiated_ms,
            });
        }
        Ok((out, false))
    }

    /// ListParts: parts after `part_marker`, in order; `true` if more follow.
    pub fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_marker: Option<u32>,
        max: usize,
    ) -> Result<(Vec<PartInfo>, bool)> {
        self.upload_doc(bucket, key, upload_id)?;
        let snap = self.meta.snapshot()?;
        let t = snap.table(T_PARTS)?;
        let prefix = format!("{upload_id}\0");
        let from = part_key(upload_id, part_marker.unwrap_or(0).saturating_add(1).min(99_999));
        let mut out = Vec::new();
        for item in t.range(Bound::Included(from.as_str()), Bound::Unbounded)? {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            if out.len() == max {
                return Ok((out, true));
            }
            out.push(from_json::<PartDoc>(T_PARTS, &k, &v)?.info());
        }
        Ok((out, false))
    }

    // ---------------------------------------------------------------- events

    /// Up to `limit` unacknowledged events, oldest first.
    pub fn pending_events(&self, limit: usize) -> Result<Vec<ObjectEvent>> {
        let snap = self.meta.snapshot()?;
        let t = snap.table(T_EVENTS)?;
        let mut out = Vec::new();
        for item in t.range(Bound::Unbounded, Bound::Unbounded)?.take(limit) {
            let (k, v) = item?;
            out.push(from_json(T_EVENTS, &k, &v)?);
        }
        Ok(out)
    }

    /// Removes every event with `seq <= up_to_seq` from the outbox.
    pub async fn ack_events(&self, up_to_seq: u64) -> Result<()> {
        let snap = self.meta.snapshot()?;
        let t = snap.table(T_EVENTS)?;
        let end = event_key(up_to_seq);
        let mut ops = Vec::new();
        for item in t.range(Bound::Unbounded, Bound::Included(end.as_str()))? {
            ops.push(del(T_EVENTS, item?.0));
        }
        let acked = match snap.table(T_STATE)?.get("events_acked")? {
            Some(v) => String::from_utf8_lossy(&v).parse::<u64>().unwrap_or(0),
            None => 0,
        };
        if up_to_seq > acked {
            ops.push(put(T_STATE, "events_acked".into(), up_to_seq.to_string().into_bytes()));
        }
        self.commit(ops, Vec::new()).await
    }

    // ---------------------------------------------------------------- reset

    /// Deletes every bucket, object, upload, event and blob (test-suite reset). Event
    /// sequence numbers keep increasing.
    pub async fn reset(&self) -> Result<()> {
        let _g = self.buckets_lock.write().await;
        let snap = self.meta.snapshot()?;
        let mut ops = Vec::new();
        for table in ALL_TABLES {
            for item in snap.table(table)?.range(Bound::Unbounded, Bound::Unbounded)? {
                ops.push(del(table, item?.0));
            }
        }
        drop(snap);
        self.commit(ops, Vec::new()).await?;
        self.blobs.clear()
    }
}

/// Whether `condition` holds for the current object `old`: `Some(why)` if it does not.
fn check_condition(condition: Option<&WriteCondition>, old: Option<&ObjectDoc>) -> Option<ConditionFailed> {
    match (condition?, old) {
        (WriteCondition::NotExists, None) => None,
        (WriteCondition::NotExists, Some(old)) => Some(ConditionFailed::Exists { etag: old.etag.clone() }),
        (WriteCondition::ETagMatches(_), None) => Some(ConditionFailed::Missing),
        (WriteCondition::ETagMatches(want), Some(old)) => {
            if old.etag.eq_ignore_ascii_case(strip_quotes(want)) {
                None
            } else {
                Some(ConditionFailed::ETagMismatch {
                    current: old.etag.clone(),
                })
            }
        }
    }
}

/// An unconditional write cannot fail a condition.
fn unconditional(failed: ConditionFailed) -> Error {
    Error::Internal(format!("unconditional write refused: {failed}"))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `InvalidRange` unless every range lies within an object of `size` bytes; the total
/// is limited to [`MAX_RANGES_BYTES`].
fn check_ranges(ranges: &[std::ops::Range<u64>], size: u64) -> Result<()> {
    let mut total = 0u64;
    for r in ranges {
        if r.start > r.end || r.end > size {
            return Err(Error::InvalidRange { size });
        }
        total += r.end - r.start;
    }
    if total > MAX_RANGES_BYTES {
        return Err(Error::InvalidArgument(format!(
            "{total} bytes asked for in one read; at most {MAX_RANGES_BYTES}"
        )));
    }
    Ok(())
}

/// Positioned reads of the ranges (already checked) of a blob file.
fn read_file_ranges(file: &std::fs::File, ranges: &[std::ops::Range<u64>]) -> Result<Vec<Bytes>> {
    use std::os::unix::fs::FileExt;
    let mut out = Vec::with_capacity(ranges.len());
    for r in ranges {
        let mut buf = vec![0u8; (r.end - r.start) as usize];
        file.read_exact_at(&mut buf, r.start)
            .map_err(|e| Error::io("read a blob range", e))?;
        out.push(Bytes::from(buf));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(resolve_range(None, 10).ok(), Some(None));
        assert_eq!(
            resolve_range(Some(ByteRange::FromTo(0, 0)), 10).ok(),
            Some(Some((0, 0)))
        );
        assert_eq!(
            resolve_range(Some(ByteRange::FromTo(2, 100)), 10).ok(),
            Some(Some((2, 9)))
        );
        assert_eq!(resolve_range(Some(ByteRange::FromTo(5, 2)), 10).ok(), Some(None));
        assert!(matches!(
            resolve_range(Some(ByteRange::FromTo(10, 12)), 10),
            Err(Error::InvalidRange { size: 10 })
        ));
        assert_eq!(resolve_range(Some(ByteRange::From(9)), 10).ok(), Some(Some((9, 9))));
        assert!(resolve_range(Some(ByteRange::From(10)), 10).is_err());
        assert_eq!(resolve_range(Some(ByteRange::Suffix(3)), 10).ok(), Some(Some((7, 9))));
        assert_eq!(resolve_range(Some(ByteRange::Suffix(30)), 10).ok(), Some(Some((0, 9))));
        assert!(resolve_range(Some(ByteRange::Suffix(0)), 10).is_err());
        assert!(resolve_range(Some(ByteRange::Suffix(1)), 0).is_err());
        assert!(resolve_range(Some(ByteRange::From(0)), 0).is_err());
    }

    /// Builds `KD_S3_BENCH_KEYS` (default 1,000,000) index entries through grouped commits,
    /// then times 1,000-key listings. Run: `cargo test --release -p kd-objects -- --ignored
    /// list_benchmark --nocapture`.
    #[test]
    #[ignore]
    fn list_benchmark() -> Result<()> {
        let n: usize = std::env::var("KD_S3_BENCH_KEYS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let meta = Arc::new(MetaStore::open(&dir.path().join("meta.redb"))?);
        let clock: Arc<dyn Clock> = Arc::new(kd_storage::SystemClock);
        let s3 = Objects::open(Config::new(dir.path().join("s3")), meta.clone(), clock)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .map_err(|e| Error::io("runtime", e))?;
        let started = std::time::Instant::now();
        rt.block_on(async {
            s3.create_bucket("1", "r", "bench").await?;
            let doc = ObjectDoc {
                version: DOC_VERSION,
                blob: Blobs::new_id(),
                size: 1234,
                etag: "5eb63bbbe01eeed093cb22bb8f5acdc3".into(),
                last_modified_ms: 1_700_000_000_000,
                headers: ObjectHeaders {
                    content_type: Some("application/octet-stream".into()),
                    ..ObjectHeaders::default()
                },
                checksum: None,
                parts_count: None,
                tags: BTreeMap::new(),
                inline: false,
                vid: None,
                vsort: None,
                delete_marker: false,
                replication_status: None,
            };
            let value = to_json(&doc)?;
            // Many concurrent writers of 1,000 entries each, grouped into shared commits.
            let mut pending = Vec::new();
            for batch in 0..n.div_ceil(1000) {
                let ops = (batch * 1000..((batch + 1) * 1000).min(n))
                    .map(|i| {
                        put(
                            T_OBJECTS,
                            obj_key("bench", &format!("dir{:03}/obj{:08}", i % 100, i)),
                            value.clone(),
                        )
                    })
                    .collect();
                pending.push(meta.write_grouped(ops));
                if pending.len() == 16 {
                    for p in pending.drain(..) {
                        p.await?;
                    }
                }
            }
            for p in pending {
                p.await?;
            }
            Ok::<(), Error>(())
        })?;
        eprintln!(
            "built {n} keys in {:?} with {} grouped commits",
            started.elapsed(),
            meta.group_commit_count()
        );
        for (label, prefix, delimiter, after) in [
            ("first page", "", None, None),
            ("middle, start-after", "", None, Some("dir050/obj00500000")),
            ("prefix", "dir077/", None, Some("dir077/obj00400000")),
            ("delimiter (100 common prefixes)", "", Some("/"), None),
        ] {
            let t = std::time::Instant::now();
            let page = s3.list_objects("bench", prefix, delimiter, after, 1000)?;
            let took = t.elapsed();
            eprintln!(
                "{label}: {} objects + {} prefixes in {took:?}",
                page.objects.len(),
                page.common_prefixes.len()
            );
            assert!(
                took < std::time::Duration::from_millis(20) || cfg!(debug_assertions),
                "{label} took {took:?}"
            );
        }
        Ok(())
    }

    /// 16 concurrent clients PUT `KD_S3_BENCH_BYTES` (default 4096) byte objects for
    /// `KD_S3_BENCH_SECS` (default 3) seconds,
    /// with inline storage off and on. Run: `cargo test --release -p kd-objects --
    /// --ignored small_put_benchmark --nocapture`.
    #[test]
    #[ignore]
    fn small_put_benchmark() -> Result<()> {
        let secs: u64 = std::env::var("KD_S3_BENCH_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        let size: usize = std::env::var("KD_S3_BENCH_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4096);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::io("runtime", e))?;
        for inline_max in [0, crate::DEFAULT_INLINE_MAX] {
            let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
            let meta = Arc::new(MetaStore::open(&dir.path().join("meta.redb"))?);
            let clock: Arc<dyn Clock> = Arc::new(kd_storage::SystemClock);
            let config = Config {
                inline_max,
                ..Config::new(dir.path().join("s3"))
            };
            let s3 = Arc::new(Objects::open(config, meta.clone(), clock)?);
            let (puts, took) = rt.block_on(async {
                s3.create_bucket("1", "r", "bench").await?;
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
                let started = std::time::Instant::now();
                let mut tasks = Vec::new();
                for client in 0..16 {
                    let s3 = s3.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut n = 0u64;
                        while std::time::Instant::now() < deadline {
                            let body = futures_util::stream::iter(vec![Ok(Bytes::from(vec![b'o'; size]))]);
                            s3.put_object("bench", &format!("c{client}/o{n}"), body, PutOptions::default())
                                .await?;
                            n += 1;
                        }
                        Ok::<u64, Error>(n)
                    }));
                }
                let mut total = 0;
                for t in tasks {
                    total += t.await.map_err(|e| Error::Internal(e.to_string()))??;
                }
                Ok::<_, Error>((total, started.elapsed()))
            })?;
            let meta_bytes = std::fs::metadata(dir.path().join("meta.redb")).map_or(0, |m| m.len());
            eprintln!(
                "inline_max {inline_max}: {puts} PUTs of {size} B in {took:?} = {:.0}/s ({} group commits, \
                 meta.redb {} bytes/object)",
                puts as f64 / took.as_secs_f64(),
                meta.group_commit_count(),
                meta_bytes / puts.max(1)
            );
        }
        Ok(())
    }

    #[test]
    fn engine_and_its_futures_are_send() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: T) {}
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e));
        let Ok(dir) = dir else { return };
        let Ok(meta) = MetaStore::open(&dir.path().join("m.redb")) else {
            return;
        };
        let clock: Arc<dyn Clock> = Arc::new(kd_storage::SystemClock);
        let Ok(s3) = Objects::open(Config::new(dir.path().join("s3")), Arc::new(meta), clock) else {
            return;
        };
        send_sync(&s3);
        let body = futures_util::stream::iter(Vec::<std::io::Result<Bytes>>::new());
        send(s3.put_object("b", "k", body, PutOptions::default()));
        send(s3.get_object("b", "k", None));
        send(s3.complete_multipart("b", "k", "u", Vec::new()));
        send(s3.copy_object("b", "k", "b", "k2", None));
        send(s3.delete_object("b", "k"));
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(decode_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("zz"), None);
    }
}
