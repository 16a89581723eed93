//! The S3 engine: buckets, objects, multipart uploads, object and bucket tags, bucket
//! notification configurations and an event outbox. No HTTP, XML or wire types: the
//! `api-s3` adapter maps S3 requests onto [`Objects`]; below it is `kd-storage`
//! ([`kd_storage::MetaStore`] for metadata, plain files for bytes).
//!
//! # On disk
//!
//! * Metadata: tables prefixed `s3_` in the shared `MetaStore` (redb), serde_json documents
//!   with a `version` field. Object index keys are `<bucket>\0<key>`, so a range scan lists
//!   a bucket in UTF-8 binary order. Table list and lock order: [`engine`].
//! * Small bytes: a body (object or part) of at most [`Config::inline_max`] bytes (default
//!   64 KiB, 0 = never) is *inline*: the raw bytes are the value of `s3_inline/<uuid>`, and
//!   its document says `"inline": true`. Listings never read that table.
//! * Other bytes: `<root>/blobs/<xx>/<uuid>` (one file per object or part, raw bytes; `xx`
//!   = the first two hex digits of the uuid) and `<root>/tmp/<uuid>` while a body streams.
//!   An object key never becomes a path.
//! * Versions (document format 2): a bucket with versioning configured keeps every version
//!   and delete marker of a key in `s3_versions` under `<bucket>\0<key>\0<stamp>` (32 hex
//!   digits, newest first; the version id is the stamp, or `null`), and `s3_objects` mirrors
//!   the current version unless it is a delete marker. Never-versioned buckets have no such
//!   rows and no version fields; format-1 documents (all pre-versioning) read as
//!   unversioned. Layout and rules: [`engine`].
//!
//! # Durability and recovery
//!
//! An inline body is written in the same grouped redb transaction as its document and
//! outbox event, and deleted in the transaction that replaces or deletes that document: it
//! is committed atomically with its document, so there is nothing to recover (and a small
//! PUT costs one grouped commit, no file sync).
//!
//! A larger body is streamed to `tmp/`, `fdatasync`ed, renamed into `blobs/`, the directory
//! fsynced, and only then is the metadata committed (grouped: one redb transaction serves
//! many concurrent writers) together with its outbox event; replaced blobs are deleted
//! after the commit. An `s3_orphans` row exists for every blob file not referenced by
//! committed metadata (written before the rename, removed in the referencing transaction;
//! written in the transaction that drops a reference). On open: `tmp/` is emptied and
//! every blob with an orphan row is deleted, so no crash leaves a stray blob or loses a
//! referenced one. Details: [`blob`].
//!
//! Versioning adds no recovery step: a new version (its row, the mirror, a replaced null
//! version's release, the event), a delete marker, or a permanent version delete is one
//! grouped transaction, and the first PutBucketVersioning converts the bucket's objects to
//! `null` versions in the transaction that stores the configuration. A body is owned by its
//! version row: it is released (inline row deleted, or orphan row written and the blob file
//! retired after the commit) only in the transaction that permanently deletes that version
//! (or replaces the `null` version), so the blob rule above still covers every crash.
//!
//! # object_store
//!
//! [`store::BucketStore`] implements `object_store::ObjectStore` (0.13) over one bucket,
//! for in-process readers and writers such as DataFusion; its writes are ordinary S3
//! writes (events included), and `PutMode::Create`/`Update` use the engine's atomic
//! conditional writes ([`WriteCondition`]).

pub mod blob;
mod checksum;
pub mod engine;
mod error;
mod names;
pub mod store;
mod types;

pub use engine::{INLINE_READ_BYTES, MAX_OBJECT_SIZE, MAX_PART_NUMBER, MAX_RANGES_BYTES, Objects};
pub use error::{Error, Result};
pub use names::{MAX_KEY_LEN, validate_bucket_name};
pub use types::{
    BodyStream, BucketInfo, ByteRange, ChecksumAlgorithm, ChecksumRequest, ConditionFailed, Config, DEFAULT_INLINE_MAX,
    DeleteOutcome, ListPage, ObjectEvent, ObjectHeaders, ObjectInfo, PartInfo, PutOptions, ReplicationConfig,
    ReplicationRule, ReplicationStatus, ReplicationTask, UploadInfo, VersionEntry, VersionPage, Versioning,
    WriteCondition,
};

/// S3's minimum size of every part but the last (5 MiB).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
