//! [`object_store::ObjectStore`] over one bucket of the S3 engine, so object_store users
//! (DataFusion, ...) read and write the emulator's buckets in-process, without HTTP.
//!
//! One [`BucketStore`] serves one bucket. An [`object_store::path::Path`] is the S3 key,
//! byte for byte (`Path::as_ref`); objects whose keys are not canonical object_store paths
//! (folder markers ending in `/`, keys with a leading `/` or empty, `.` or `..` segments)
//! cannot be addressed by a `Path` and are skipped by the listings.
//!
//! Mapping onto the engine:
//!
//! * `put_opts` → PutObject. `PutMode::Create` / `PutMode::Update` are conditional writes
//!   ([`WriteCondition`]) checked under the engine's per-object lock in the commit, so they
//!   are atomic (compare-and-swap). Attributes ↔ the stored headers and user metadata
//!   (`Attribute::StorageClass` is accepted and ignored: the engine has no storage classes);
//!   the tag set ↔ the object tags (S3's limits apply).
//! * `put_multipart_opts` → an engine multipart upload. Parts are coalesced client-side
//!   until they reach the engine's `min_part_size` (as `WriteMultipart` does), so any
//!   sequence of `put_part` calls completes; at most one part's worth is buffered.
//! * `get_opts` → GetObject / HeadObject with object_store's range and precondition rules
//!   (`NotModified`, `Precondition`); the body streams from the blob file (or the inline
//!   bytes of a small object).
//! * ETags are S3's (hex MD5, or `hex-N` for multipart objects), quoted as in the HTTP
//!   header, like object_store's S3 backend; comparisons ignore the quotes. No versions.
//! * `list` / `list_with_offset` page through ListObjects 1000 keys at a time (a stream:
//!   a large bucket is never held at once); `list_with_delimiter` collects every page.
//! * `copy_opts` → CopyObject (COPY directive: headers and tags kept); `CopyMode::Create`
//!   is a conditional write like `PutMode::Create`. `rename` is copy + delete (default).
//! * `delete_stream` → DeleteObject (a missing key is success, as in S3).
//!
//! [`BucketStore`] also implements [`MultipartStore`] and [`PaginatedListStore`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::list::{PaginatedListOptions, PaginatedListResult, PaginatedListStore};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, CopyMode, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartId, MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutPayload, PutResult, TagSet,
    UpdateVersion, UploadPart,
};

use crate::{
    ByteRange, ConditionFailed, Error, ListPage, ObjectHeaders, ObjectInfo, Objects, PutOptions, WriteCondition,
};

/// The `store` name in [`object_store::Error::Generic`].
const STORE: &str = "kinesis-data";
/// Keys per ListObjects call.
const PAGE: usize = 1000;
/// object_store's path delimiter.
const DELIMITER: &str = "/";
/// Concurrent deletions of `delete_stream`.
const DELETE_CONCURRENCY: usize = 10;
/// Bounded ranges up to this size are read in one positioned read, not streamed.
const SMALL_RANGE: u64 = 16 * 1024 * 1024;

type OsResult<T> = object_store::Result<T>;

/// An [`ObjectStore`] over the bucket `bucket` of an [`Objects`] engine.
#[derive(Debug, Clone)]
pub struct BucketStore {
    objects: Arc<Objects>,
    bucket: String,
}

impl BucketStore {
    /// A store over `bucket` (not checked: operations on a missing bucket fail with
    /// `Error::Generic` wrapping [`Error::NoSuchBucket`]).
    pub fn new(objects: Arc<Objects>, bucket: impl Into<String>) -> BucketStore {
        BucketStore {
            objects,
            bucket: bucket.into(),
        }
    }

    /// A store over `bucket`, which must exist.
    pub fn open(objects: Arc<Objects>, bucket: impl Into<String>) -> crate::Result<BucketStore> {
        let bucket = bucket.into();
        objects.bucket(&bucket)?;
        Ok(BucketStore::new(objects, bucket))
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The engine.
    pub fn objects(&self) -> &Arc<Objects> {
        &self.objects
    }
}

impl fmt::Display for BucketStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KinesisData({})", self.bucket)
    }
}

// ---------------------------------------------------------------- conversions

fn generic(source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: source.into(),
    }
}

/// Maps an engine error for the object at `path`.
fn os_err(e: Error, path: &str) -> object_store::Error {
    match e {
        Error::NoSuchKey { .. } => object_store::Error::NotFound {
            path: path.to_string(),
            source: Box::new(e),
        },
        other => generic(other),
    }
}

/// Maps a refused conditional write of `path`.
fn condition_err(failed: ConditionFailed, path: &str) -> object_store::Error {
    let source = failed.to_string().into();
    match failed {
        ConditionFailed::Exists { .. } => object_store::Error::AlreadyExists {
            path: path.to_string(),
            source,
        },
        ConditionFailed::Missing | ConditionFailed::ETagMismatch { .. } => object_store::Error::Precondition {
            path: path.to_string(),
            source,
        },
    }
}

fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

fn datetime(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn meta(info: &ObjectInfo, location: Path) -> ObjectMeta {
    ObjectMeta {
        location,
        last_modified: datetime(info.last_modified_ms),
        size: info.size,
        e_tag: Some(quoted(&info.etag)),
        version: None,
    }
}

/// The `Path` of `key` if the key is a canonical object_store path (round-trips exactly).
fn key_path(key: &str) -> Option<Path> {
    match Path::parse(key) {
        Ok(p) if p.as_ref() == key && !key.is_empty() => Some(p),
        _ => {
            tracing::debug!(key, "S3 key is not an object_store path; skipped");
            None
        }
    }
}

/// The `Path` of a common prefix (`a/b/`), if canonical.
fn prefix_path(common_prefix: &str) -> Option<Path> {
    let trimmed = common_prefix.strip_suffix(DELIMITER)?;
    key_path(trimmed)
}

/// The S3 prefix listing `prefix` segment-wise: `a/b` → `a/b/`, root → ``.
fn s3_prefix(prefix: Option<&Path>) -> String {
    match prefix {
        Some(p) if !p.as_ref().is_empty() => format!("{}{DELIMITER}", p.as_ref()),
        _ => String::new(),
    }
}

fn attributes(h: &ObjectHeaders) -> Attributes {
    let mut out = Attributes::new();
    for (attribute, value) in [
        (Attribute::ContentType, &h.content_type),
        (Attribute::ContentEncoding, &h.content_encoding),
        (Attribute::ContentDisposition, &h.content_disposition),
        (Attribute::ContentLanguage, &h.content_language),
        (Attribute::CacheControl, &h.cache_control),
    ] {
        if let Some(v) = value {
            out.insert(attribute, v.clone().into());
        }
    }
    for (k, v) in &h.user_metadata {
        out.insert(Attribute::Metadata(k.clone().into()), v.clone().into());
    }
    out
}

/// The engine's put options for object_store attributes and tags.
fn engine_opts(attributes: &Attributes, tags: &TagSet) -> OsResult<PutOptions> {
    let mut o = PutOptions::default();
    for (attribute, value) in attributes {
        let value = value.to_string();
        match attribute {
            Attribute::ContentType => o.content_type = Some(value),
            Attribute::ContentEncoding => o.content_encoding = Some(value),
            Attribute::ContentDisposition => o.content_disposition = Some(value),
            Attribute::ContentLanguage => o.content_language = Some(value),
            Attribute::CacheControl => o.cache_control = Some(value),
            Attribute::Metadata(name) => {
                o.user_metadata.insert(name.to_string(), value);
            }
            // No storage classes in the engine; anything newer is not stored either.
            _ => {}
        }
    }
    o.tags = decode_tags(tags.encoded())?;
    Ok(o)
}

/// Decodes a tag set (`application/x-www-form-urlencoded`, as `TagSet` encodes it).
fn decode_tags(encoded: &str) -> OsResult<BTreeMap<String, String>> {
    let mut tags = BTreeMap::new();
    for pair in encoded.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (form_decode(k), form_decode(v)) {
            (Some(k), Some(v)) => {
                tags.insert(k, v);
            }
            _ => return Err(generic(format!("malformed tag set {encoded:?}"))),
        }
    }
    Ok(tags)
}

fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn body(payload: PutPayload) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + Unpin {
    stream::iter(payload.into_iter().map(Ok))
}

/// Whether `etag` (unquoted) is in the comma-separated list `cond` (`*` matches any).
fn etag_listed(cond: &str, etag: &str) -> bool {
    cond.split(',')
        .map(|x| x.trim().trim_matches('"'))
        .any(|x| x == "*" || x.eq_ignore_ascii_case(etag))
}

/// object_store's (RFC 9110) precondition rules, ETags compared without quotes.
fn check_preconditions(o: &GetOptions, meta: &ObjectMeta, etag: &str) -> OsResult<()> {
    let path = || meta.location.to_string();
    if let Some(m) = &o.if_match {
        if !etag_listed(m, etag) {
            return Err(object_store::Error::Precondition {
                path: path(),
                source: format!("ETag {etag} does not match {m}").into(),
            });
        }
    } else if let Some(date) = o.if_unmodified_since
        && meta.last_modified > date
    {
        return Err(object_store::Error::Precondition {
            path: path(),
            source: format!("modified at {} after {date}", meta.last_modified).into(),
        });
    }
    if let Some(m) = &o.if_none_match {
        if etag_listed(m, etag) {
            return Err(object_store::Error::NotModified {
                path: path(),
                source: format!("ETag {etag} matches {m}").into(),
            });
        }
    } else if let Some(date) = o.if_modified_since
        && meta.last_modified <= date
    {
        return Err(object_store::Error::NotModified {
            path: path(),
            source: format!("not modified since {date} (last modified {})", meta.last_modified).into(),
        });
    }
    Ok(())
}

fn empty_payload() -> GetResultPayload {
    GetResultPayload::Stream(stream::empty().boxed())
}

// ---------------------------------------------------------------- the store

impl BucketStore {
    fn list_page(&self, prefix: &str, delimiter: Option<&str>, after: Option<&str>, max: usize) -> OsResult<ListPage> {
        self.objects
            .list_objects(&self.bucket, prefix, delimiter, after, max)
            .map_err(generic)
    }

    /// Lists keys under `prefix` (an S3 prefix) after `after`, paging lazily.
    fn list_stream(&self, prefix: String, after: Option<String>) -> BoxStream<'static, OsResult<ObjectMeta>> {
        let store = self.clone();
        stream::try_unfold(Some(after), move |state| {
            let store = store.clone();
            let prefix = prefix.clone();
            async move {
                // `None`: the previous page was the last.
                let Some(after) = state else {
                    return OsResult::Ok(None);
                };
                let page = store.list_page(&prefix, None, after.as_deref(), PAGE)?;
                let next = if page.is_truncated {
                    page.next_marker.clone().map(Some)
                } else {
                    None
                };
                let metas: Vec<OsResult<ObjectMeta>> = page
                    .objects
                    .iter()
                    .filter_map(|info| key_path(&info.key).map(|p| Ok(meta(info, p))))
                    .collect();
                Ok(Some((stream::iter(metas), next)))
            }
        })
        .try_flatten()
        .boxed()
    }

    /// A stored part of an engine upload, as the engine names it.
    async fn upload_part(
        objects: &Objects,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        chunks: PutPayload,
    ) -> OsResult<String> {
        let part = objects
            .upload_part(bucket, key, upload_id, part_number, body(chunks), None)
            .await
            .map_err(|e| os_err(e, key))?;
        Ok(part.etag)
    }
}

#[async_trait]
impl ObjectStore for BucketStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: object_store::PutOptions,
    ) -> OsResult<PutResult> {
        let key = location.as_ref();
        let object_store::PutOptions {
            mode,
            tags,
            attributes,
            extensions: _,
        } = opts;
        let engine = engine_opts(&attributes, &tags)?;
        let condition = match mode {
            PutMode::Overwrite => None,
            PutMode::Create => Some(WriteCondition::NotExists),
            PutMode::Update(UpdateVersion { e_tag, version: _ }) => Some(WriteCondition::ETagMatches(
                e_tag.ok_or_else(|| generic("ETag required for conditional update"))?,
            )),
        };
        let info = self
            .objects
            .put_object_if(&self.bucket, key, body(payload), engine, condition)
            .await
            .map_err(|e| os_err(e, key))?
            .map_err(|failed| condition_err(failed, key))?;
        Ok(PutResult {
            e_tag: Some(quoted(&info.etag)),
            version: None,
        })
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> OsResult<Box<dyn MultipartUpload>> {
        let key = location.as_ref();
        let PutMultipartOptions {
            tags,
            attributes,
            extensions: _,
        } = opts;
        let engine = engine_opts(&attributes, &tags)?;
        let upload_id = self
            .objects
            .create_multipart(&self.bucket, key, engine)
            .await
            .map_err(|e| os_err(e, key))?;
        Ok(Box::new(Upload {
            objects: self.objects.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            upload_id,
            min_part_size: self.objects.config().min_part_size,
            pending: Vec::new(),
            pending_len: 0,
            next_part: 1,
            stored: Arc::new(Mutex::new(BTreeMap::new())),
            finished: false,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> OsResult<GetResult> {
        let key = location.as_ref();
        if options.version.is_some() {
            return Err(object_store::Error::NotSupported {
                source: "kinesis-data buckets are not versioned".into(),
            });
        }
        let head = |options: &GetOptions| -> OsResult<(ObjectInfo, ObjectMeta)> {
            let info = self
                .objects
                .head_object(&self.bucket, key)
                .map_err(|e| os_err(e, key))?;
            let m = meta(&info, location.clone());
            check_preconditions(options, &m, &info.etag)?;
            Ok((info, m))
        };
        if options.head {
            let (info, meta) = head(&options)?;
            return Ok(GetResult {
                payload: empty_payload(),
                range: 0..info.size,
                attributes: attributes(&info.headers),
                meta,
            });
        }
        // A small bounded range (a Parquet footer or column chunk) in one positioned read.
        if let Some(GetRange::Bounded(b)) = &options.range
            && b.end > b.start
            && b.end - b.start <= SMALL_RANGE
            && options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
        {
            match self
                .objects
                .read_ranges(&self.bucket, key, std::slice::from_ref(b))
                .await
            {
                Ok((info, mut parts)) => {
                    let bytes = parts.pop().unwrap_or_default();
                    return Ok(GetResult {
                        payload: GetResultPayload::Stream(stream::once(async move { Ok(bytes) }).boxed()),
                        range: b.clone(),
                        attributes: attributes(&info.headers),
                        meta: meta(&info, location.clone()),
                    });
                }
                // Past the end: the streamed path below truncates or refuses, as before.
                Err(Error::InvalidRange { .. }) => {}
                Err(e) => return Err(os_err(e, key)),
            }
        }
        let range = match &options.range {
            None => None,
            Some(r) => {
                r.is_valid().map_err(generic)?;
                Some(match r {
                    // `is_valid`: end > start.
                    GetRange::Bounded(b) => ByteRange::FromTo(b.start, b.end.saturating_sub(1)),
                    GetRange::Offset(o) => ByteRange::From(*o),
                    GetRange::Suffix(n) => ByteRange::Suffix(*n),
                })
            }
        };
        match self.objects.get_object(&self.bucket, key, range).await {
            Ok((info, resolved, stream)) => {
                let m = meta(&info, location.clone());
                check_preconditions(&options, &m, &info.etag)?;
                let path = key.to_string();
                // Fused: object_store's `collect_bytes` polls again after the end.
                let payload = stream
                    .map_err(move |e| generic(format!("reading {path}: {e}")))
                    .fuse()
                    .boxed();
                Ok(GetResult {
                    payload: GetResultPayload::Stream(payload),
                    range: resolved.map_or(0..info.size, |(a, b)| a..b + 1),
                    attributes: attributes(&info.headers),
                    meta: m,
                })
            }
            Err(Error::InvalidRange { size }) => {
                // Preconditions first, as HTTP does; then object_store's rule that a
                // suffix of 0 bytes (or of an empty object) is an empty range at the end,
                // where S3 answers 416.
                let (info, meta) = head(&options)?;
                match options.range {
                    Some(GetRange::Suffix(_)) => Ok(GetResult {
                        payload: empty_payload(),
                        range: info.size..info.size,
                        attributes: attributes(&info.headers),
                        meta,
                    }),
                    _ => Err(generic(format!(
                        "range {:?} not satisfiable for {key} ({size} bytes)",
                        options.range
                    ))),
                }
            }
            Err(e) => Err(os_err(e, key)),
        }
    }

    /// Positioned reads of each range, without coalescing: the bytes are local, so reading
    /// the gaps between a Parquet file's column chunks would only cost copies.
    async fn get_ranges(&self, location: &Path, ranges: &[std::ops::Range<u64>]) -> OsResult<Vec<Bytes>> {
        let key = location.as_ref();
        self.objects
            .read_ranges(&self.bucket, key, ranges)
            .await
            .map(|(_, parts)| parts)
            .map_err(|e| match e {
                Error::InvalidRange { size } => generic(format!("ranges {ranges:?} outside {key} ({size} bytes)")),
                e => os_err(e, key),
            })
    }

    fn delete_stream(&self, locations: BoxStream<'static, OsResult<Path>>) -> BoxStream<'static, OsResult<Path>> {
        let store = self.clone();
        locations
            .map(move |location| {
                let store = store.clone();
                async move {
                    let location = location?;
                    store
                        .objects
                        .delete_object(&store.bucket, location.as_ref())
                        .await
                        .map_err(|e| os_err(e, location.as_ref()))?;
                    Ok(location)
                }
            })
            .buffered(DELETE_CONCURRENCY)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, OsResult<ObjectMeta>> {
        self.list_stream(s3_prefix(prefix), None)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, OsResult<ObjectMeta>> {
        self.list_stream(s3_prefix(prefix), Some(offset.as_ref().to_string()))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> OsResult<ListResult> {
        let prefix = s3_prefix(prefix);
        let mut result = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
        };
        let mut after: Option<String> = None;
        loop {
            let page = self.list_page(&prefix, Some(DELIMITER), after.as_deref(), PAGE)?;
            result
                .objects
                .extend(page.objects.iter().filter_map(|i| key_path(&i.key).map(|p| meta(i, p))));
            result
                .common_prefixes
                .extend(page.common_prefixes.iter().filter_map(|cp| prefix_path(cp)));
            match (page.is_truncated, page.next_marker) {
                (true, Some(next)) => after = Some(next),
                _ => return Ok(result),
            }
        }
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> OsResult<()> {
        let CopyOptions { mode, extensions: _ } = options;
        let condition = match mode {
            CopyMode::Overwrite => None,
            CopyMode::Create => Some(WriteCondition::NotExists),
        };
        if from == to {
            // S3 refuses a copy onto itself that changes nothing; here it is a no-op.
            self.objects
                .head_object(&self.bucket, from.as_ref())
                .map_err(|e| os_err(e, from.as_ref()))?;
            return match condition {
                None => Ok(()),
                Some(_) => Err(object_store::Error::AlreadyExists {
                    path: to.to_string(),
                    source: "copy onto itself".into(),
                }),
            };
        }
        self.objects
            .copy_object_if(&self.bucket, from.as_ref(), &self.bucket, to.as_ref(), None, condition)
            .await
            .map_err(|e| os_err(e, from.as_ref()))?
            .map_err(|failed| condition_err(failed, to.as_ref()))?;
        Ok(())
    }
}

#[async_trait]
impl MultipartStore for BucketStore {
    async fn create_multipart(&self, path: &Path) -> OsResult<MultipartId> {
        self.objects
            .create_multipart(&self.bucket, path.as_ref(), PutOptions::default())
            .await
            .map_err(|e| os_err(e, path.as_ref()))
    }

    async fn put_part(&self, path: &Path, id: &MultipartId, part_idx: usize, data: PutPayload) -> OsResult<PartId> {
        let number = u32::try_from(part_idx)
            .ok()
            .and_then(|i| i.checked_add(1))
            .ok_or_else(|| generic(format!("part index {part_idx} out of range")))?;
        let etag = Self::upload_part(&self.objects, &self.bucket, path.as_ref(), id, number, data).await?;
        Ok(PartId { content_id: etag })
    }

    async fn complete_multipart(&self, path: &Path, id: &MultipartId, parts: Vec<PartId>) -> OsResult<PutResult> {
        let key = path.as_ref();
        let mut listed = Vec::with_capacity(parts.len().max(1));
        for (i, part) in parts.into_iter().enumerate() {
            let number = u32::try_from(i + 1).map_err(|_| generic("too many parts"))?;
            listed.push((number, part.content_id));
        }
        if listed.is_empty() {
            // S3 needs at least one part: an empty object is one empty part.
            let etag = Self::upload_part(&self.objects, &self.bucket, key, id, 1, PutPayload::new()).await?;
            listed.push((1, etag));
        }
        let info = self
            .objects
            .complete_multipart(&self.bucket, key, id, listed)
            .await
            .map_err(|e| os_err(e, key))?;
        Ok(PutResult {
            e_tag: Some(quoted(&info.etag)),
            version: None,
        })
    }

    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> OsResult<()> {
        self.objects
            .abort_multipart(&self.bucket, path.as_ref(), id)
            .await
            .map_err(|e| os_err(e, path.as_ref()))
    }
}

#[async_trait]
impl PaginatedListStore for BucketStore {
    async fn list_paginated(&self, prefix: Option<&str>, opts: PaginatedListOptions) -> OsResult<PaginatedListResult> {
        let after = opts.page_token.or(opts.offset);
        let max = opts.max_keys.unwrap_or(PAGE).clamp(1, PAGE);
        let page = self.list_page(prefix.unwrap_or(""), opts.delimiter.as_deref(), after.as_deref(), max)?;
        Ok(PaginatedListResult {
            result: ListResult {
                objects: page
                    .objects
                    .iter()
                    .filter_map(|i| key_path(&i.key).map(|p| meta(i, p)))
                    .collect(),
                common_prefixes: page.common_prefixes.iter().filter_map(|cp| prefix_path(cp)).collect(),
            },
            page_token: if page.is_truncated { page.next_marker } else { None },
        })
    }
}

// ---------------------------------------------------------------- multipart upload

/// A [`MultipartUpload`] onto an engine multipart upload. Payloads are buffered until
/// they reach the engine's minimum part size, so every part but the last is big enough;
/// an upload dropped without `complete` or `abort` is aborted in the background.
#[derive(Debug)]
struct Upload {
    objects: Arc<Objects>,
    bucket: String,
    key: String,
    upload_id: String,
    min_part_size: u64,
    /// Payload not yet sent (less than `min_part_size`).
    pending: Vec<Bytes>,
    pending_len: u64,
    /// The number the next sent part gets (1-based).
    next_part: u32,
    /// ETags of the parts stored so far, by part number.
    stored: Arc<Mutex<BTreeMap<u32, String>>>,
    /// Completed or aborted.
    finished: bool,
}

impl Upload {
    /// Sends the buffered payload as the next part.
    fn send_pending(&mut self) -> UploadPart {
        let chunks: PutPayload = std::mem::take(&mut self.pending).into_iter().collect();
        self.pending_len = 0;
        let number = self.next_part;
        self.next_part = self.next_part.saturating_add(1);
        let objects = self.objects.clone();
        let (bucket, key, id) = (self.bucket.clone(), self.key.clone(), self.upload_id.clone());
        let stored = self.stored.clone();
        Box::pin(async move {
            let etag = BucketStore::upload_part(&objects, &bucket, &key, &id, number, chunks).await?;
            stored
                .lock()
                .map_err(|_| generic("upload state lock poisoned"))?
                .insert(number, etag);
            Ok(())
        })
    }
}

#[async_trait]
impl MultipartUpload for Upload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        for chunk in data {
            if !chunk.is_empty() {
                self.pending_len += chunk.len() as u64;
                self.pending.push(chunk);
            }
        }
        if self.pending_len < self.min_part_size {
            return Box::pin(futures_util::future::ready(Ok(())));
        }
        self.send_pending()
    }

    async fn complete(&mut self) -> OsResult<PutResult> {
        if !self.pending.is_empty() || self.next_part == 1 {
            self.send_pending().await?;
        }
        let parts: Vec<(u32, String)> = {
            let stored = self.stored.lock().map_err(|_| generic("upload state lock poisoned"))?;
            if stored.len() as u64 != u64::from(self.next_part - 1) {
                return Err(generic(format!(
                    "multipart upload of {}: {} of {} parts stored (complete before every put_part finished, or a part failed)",
                    self.key,
                    stored.len(),
                    self.next_part - 1
                )));
            }
            stored.iter().map(|(n, e)| (*n, e.clone())).collect()
        };
        let info = self
            .objects
            .complete_multipart(&self.bucket, &self.key, &self.upload_id, parts)
            .await
            .map_err(|e| os_err(e, &self.key))?;
        self.finished = true;
        Ok(PutResult {
            e_tag: Some(quoted(&info.etag)),
            version: None,
        })
    }

    async fn abort(&mut self) -> OsResult<()> {
        self.pending.clear();
        self.pending_len = 0;
        let result = self
            .objects
            .abort_multipart(&self.bucket, &self.key, &self.upload_id)
            .await;
        self.finished = true;
        match result {
            Ok(()) | Err(Error::NoSuchUpload { .. }) => Ok(()),
            Err(e) => Err(os_err(e, &self.key)),
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(upload_id = %self.upload_id, "multipart upload dropped outside a runtime; left in place");
            return;
        };
        let objects = self.objects.clone();
        let (bucket, key, id) = (self.bucket.clone(), self.key.clone(), self.upload_id.clone());
        runtime.spawn(async move {
            if let Err(e) = objects.abort_multipart(&bucket, &key, &id).await {
                tracing::debug!(error = %e, upload_id = %id, "cannot abort dropped multipart upload");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_sets_round_trip() {
        let mut set = TagSet::default();
        set.push("test/foo", "value sdlks");
        set.push("foo", " sdf _ /+./sd");
        set.push("ünï", "€");
        let tags = decode_tags(set.encoded()).ok();
        let expected: BTreeMap<String, String> = [("test/foo", "value sdlks"), ("foo", " sdf _ /+./sd"), ("ünï", "€")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(tags, Some(expected));
        assert!(decode_tags("a=%zz").is_err());
        assert!(decode_tags("a=%+1").is_err());
        assert!(decode_tags("a=%f").is_err());
        assert_eq!(decode_tags("").ok(), Some(BTreeMap::new()));
    }

    #[test]
    fn paths_and_prefixes() {
        assert_eq!(
            key_path("a/b.parquet").map(|p| p.to_string()),
            Some("a/b.parquet".into())
        );
        assert!(key_path("dir/").is_none());
        assert!(key_path("/abs").is_none());
        assert!(key_path("a//b").is_none());
        assert!(key_path("").is_none());
        assert_eq!(prefix_path("a/b/").map(|p| p.to_string()), Some("a/b".into()));
        assert!(prefix_path("a//").is_none());
        assert_eq!(s3_prefix(None), "");
        assert_eq!(s3_prefix(Some(&Path::from("/"))), "");
        assert_eq!(s3_prefix(Some(&Path::from("a/b"))), "a/b/");
    }

    #[test]
    fn etag_lists() {
        assert!(etag_listed("\"abc\"", "abc"));
        assert!(etag_listed("x, \"abc\"", "abc"));
        assert!(etag_listed("*", "abc"));
        assert!(!etag_listed("invalid", "abc"));
    }
}
