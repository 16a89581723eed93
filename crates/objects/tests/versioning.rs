//! Engine tests of S3 bucket versioning: version ids, delete markers, permanent version
//! deletes, suspended (null) versions, listing versions, durability across reopen, blob
//! cleanup, events, and a property test against an in-memory model.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use kd_objects::{Config, DEFAULT_INLINE_MAX, Error, Objects, PutOptions, Versioning};
use kd_storage::{Clock, ManualClock, MetaStore};

type R<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const MODES: [u64; 2] = [0, DEFAULT_INLINE_MAX];

struct Env {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    inline_max: u64,
    s3: Option<Objects>,
    meta: Option<Arc<MetaStore>>,
}

fn open_engine(dir: &Path, clock: Arc<ManualClock>, inline_max: u64) -> R<(Objects, Arc<MetaStore>)> {
    let mut last = None;
    for _ in 0..100 {
        match MetaStore::open(&dir.join("meta.redb")) {
            Ok(meta) => {
                let config = Config {
                    root: dir.join("s3"),
                    min_part_size: 16,
                    inline_max,
                };
                let clock: Arc<dyn Clock> = clock;
                let meta = Arc::new(meta);
                return Ok((Objects::open(config, meta.clone(), clock)?, meta));
            }
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(format!("reopen failed: {last:?}").into())
}

impl Env {
    fn with_inline(inline_max: u64) -> R<Env> {
        let dir = tempfile::tempdir()?;
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let (s3, meta) = open_engine(dir.path(), clock.clone(), inline_max)?;
        Ok(Env {
            dir,
            clock,
            inline_max,
            s3: Some(s3),
            meta: Some(meta),
        })
    }

    fn s3(&self) -> &Objects {
        self.s3.as_ref().expect("engine open")
    }

    fn reopen(&mut self) -> R {
        self.s3 = None;
        self.meta = None;
        let (s3, meta) = open_engine(self.dir.path(), self.clock.clone(), self.inline_max)?;
        self.s3 = Some(s3);
        self.meta = Some(meta);
        Ok(())
    }

    /// Stored bodies: blob files plus inline rows (waits briefly for retired blobs).
    async fn bodies(&self) -> R<usize> {
        // Retired blobs are deleted right after the commit that drops their reference.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let meta = self.meta.as_ref().ok_or("engine closed")?;
        Ok(blob_files(&self.dir.path().join("s3/blobs")).len() + meta.scan_prefix("s3_inline", "")?.len())
    }

    fn orphan_rows(&self) -> R<usize> {
        let meta = self.meta.as_ref().ok_or("engine closed")?;
        Ok(meta.scan_prefix("s3_orphans", "")?.len())
    }
}

fn blob_files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(blob_files(&p));
        } else {
            out.insert(p);
        }
    }
    out
}

fn body(data: &[u8]) -> futures_util::stream::Iter<std::vec::IntoIter<std::io::Result<Bytes>>> {
    futures_util::stream::iter(vec![Ok(Bytes::copy_from_slice(data))])
}

async fn put(s3: &Objects, bucket: &str, key: &str, data: &[u8]) -> R<Option<String>> {
    Ok(s3
        .put_object(bucket, key, body(data), PutOptions::default())
        .await?
        .version_id)
}

async fn get(s3: &Objects, bucket: &str, key: &str, version: Option<&str>) -> Result<Vec<u8>, Error> {
    let (_, _, mut stream) = s3.get_object_version(bucket, key, version, None).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.map_err(|e| Error::Internal(e.to_string()))?);
    }
    Ok(out)
}

/// (key, version id, is latest, delete marker) of every version in the bucket.
fn versions(s3: &Objects, bucket: &str) -> R<Vec<(String, String, bool, bool)>> {
    let page = s3.list_object_versions(bucket, "", None, None, None, 1000)?;
    assert!(!page.is_truncated);
    Ok(page
        .versions
        .into_iter()
        .map(|v| (v.info.key, v.version_id, v.is_latest, v.delete_marker))
        .collect())
}

fn is_id(v: &str) -> bool {
    v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versioning_configuration_rules() -> R {
    let env = Env::with_inline(DEFAULT_INLINE_MAX)?;
    let s3 = env.s3();
    s3.create_bucket("1", "us-east-1", "bkt").await?;
    assert_eq!(s3.get_bucket_versioning("bkt")?, None);
    assert!(matches!(
        s3.get_bucket_versioning("nope"),
        Err(Error::NoSuchBucket { .. })
    ));
    assert!(matches!(
        s3.put_bucket_versioning("nope", Versioning::Enabled).await,
        Err(Error::NoSuchBucket { .. })
    ));
    s3.put_bucket_versioning("bkt", Versioning::Enabled).await?;
    assert_eq!(s3.get_bucket_versioning("bkt")?, Some(Versioning::Enabled));
    s3.put_bucket_versioning("bkt", Versioning::Suspended).await?;
    assert_eq!(s3.get_bucket_versioning("bkt")?, Some(Versioning::Suspended));
    // Unversioned buckets behave as before: no version ids.
    s3.create_bucket("1", "us-east-1", "plain").await?;
    assert_eq!(put(s3, "plain", "k", b"x").await?, None);
    assert_eq!(s3.head_object("plain", "k")?.version_id, None);
    let out = s3.delete_object_version("plain", "k", None).await?;
    assert_eq!(out.version_id, None);
    assert!(!out.delete_marker);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabled_versions_markers_and_permanent_deletes() -> R {
    for mode in MODES {
        enabled_versions_in(mode).await?;
    }
    Ok(())
}

async fn enabled_versions_in(inline_max: u64) -> R {
    let mut env = Env::with_inline(inline_max)?;
    env.s3().create_bucket("1", "us-east-1", "bkt").await?;
    env.s3().put_bucket_versioning("bkt", Versioning::Enabled).await?;
    let s3 = env.s3();
    let v1 = put(s3, "bkt", "k", b"one").await?.ok_or("no version id")?;
    let v2 = put(s3, "bkt", "k", b"two").await?.ok_or("no version id")?;
    assert!(is_id(&v1) && is_id(&v2) && v1 != v2);
    assert!(v2 < v1, "newer versions sort first");
    assert_eq!(get(s3, "bkt", "k", None).await?, b"two");
    assert_eq!(get(s3, "bkt", "k", Some(&v1)).await?, b"one");
    assert_eq!(s3.head_object("bkt", "k")?.version_id.as_deref(), Some(v2.as_str()));
    assert_eq!(
        s3.head_object_version("bkt", "k", Some(&v1))?.version_id.as_deref(),
        Some(v1.as_str())
    );
    assert!(matches!(
        s3.head_object_version("bkt", "k", Some("0123456789abcdef0123456789abcdef")),
        Err(Error::NoSuchVersion { .. })
    ));
    assert!(matches!(
        s3.head_object_version("bkt", "k", Some("bogus")),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(env.bodies().await?, 2);

    // A plain delete inserts a delete marker; both versions stay.
    let out = s3.delete_object_version("bkt", "k", None).await?;
    assert!(out.delete_marker);
    let marker = out.version_id.ok_or("no marker id")?;
    assert!(is_id(&marker));
    match s3.head_object("bkt", "k") {
        Err(Error::DeleteMarker {
            version_id, by_version, ..
        }) => {
            assert_eq!(version_id, marker);
            assert!(!by_version);
        }
        other => return Err(format!("expected a delete marker, got {other:?}").into()),
    }
    assert!(matches!(
        get(s3, "bkt", "k", Some(&marker)).await,
        Err(Error::DeleteMarker { by_version: true, .. })
    ));
    assert!(s3.list_objects("bkt", "", None, None, 1000)?.objects.is_empty());
    assert_eq!(
        versions(s3, "bkt")?,
        vec![
            ("k".into(), marker.clone(), true, true),
            ("k".into(), v2.clone(), false, false),
            ("k".into(), v1.clone(), false, false),
        ]
    );
    assert_eq!(env.bodies().await?, 2);
    // A bucket with versions is not empty.
    assert!(matches!(
        s3.delete_bucket("bkt").await,
        Err(Error::BucketNotEmpty { .. })
    ));

    // Survives a reopen.
    env.reopen()?;
    let s3 = env.s3();
    assert_eq!(versions(s3, "bkt")?.len(), 3);
    assert_eq!(get(s3, "bkt", "k", Some(&v2)).await?, b"two");

    // Removing the marker makes v2 current again.
    let out = s3.delete_object_version("bkt", "k", Some(&marker)).await?;
    assert!(out.delete_marker);
    assert_eq!(get(s3, "bkt", "k", None).await?, b"two");
    assert_eq!(s3.list_objects("bkt", "", None, None, 1000)?.objects.len(), 1);
    // Removing the current version makes v1 current, and frees v2's body.
    let out = s3.delete_object_version("bkt", "k", Some(&v2)).await?;
    assert!(!out.delete_marker);
    assert_eq!(out.version_id.as_deref(), Some(v2.as_str()));
    assert_eq!(get(s3, "bkt", "k", None).await?, b"one");
    assert_eq!(env.bodies().await?, 1);
    assert!(matches!(
        get(s3, "bkt", "k", Some(&v2)).await,
        Err(Error::NoSuchVersion { .. })
    ));
    // Deleting an absent version is a no-op success.
    s3.delete_object_version("bkt", "k", Some(&v2)).await?;
    // Removing a noncurrent version keeps the current one.
    let v3 = put(s3, "bkt", "k", b"three").await?.ok_or("no version id")?;
    s3.delete_object_version("bkt", "k", Some(&v1)).await?;
    assert_eq!(get(s3, "bkt", "k", None).await?, b"three");
    assert_eq!(versions(s3, "bkt")?, vec![("k".into(), v3.clone(), true, false)]);
    s3.delete_object_version("bkt", "k", Some(&v3)).await?;
    assert!(versions(s3, "bkt")?.is_empty());
    assert!(matches!(s3.head_object("bkt", "k"), Err(Error::NoSuchKey { .. })));
    assert_eq!(env.bodies().await?, 0);
    env.reopen()?;
    assert_eq!(env.bodies().await?, 0);
    assert_eq!(env.orphan_rows()?, 0);
    env.s3().delete_bucket("bkt").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_buckets_write_null_versions() -> R {
    for mode in MODES {
        suspended_in(mode).await?;
    }
    Ok(())
}

async fn suspended_in(inline_max: u64) -> R {
    let mut env = Env::with_inline(inline_max)?;
    let s3 = env.s3();
    s3.create_bucket("1", "us-east-1", "bkt").await?;
    s3.put_bucket_versioning("bkt", Versioning::Enabled).await?;
    let v1 = put(s3, "bkt", "k", b"one").await?.ok_or("no version id")?;
    s3.put_bucket_versioning("bkt", Versioning::Suspended).await?;
    assert_eq!(put(s3, "bkt", "k", b"two").await?.as_deref(), Some("null"));
    assert_eq!(put(s3, "bkt", "k", b"three").await?.as_deref(), Some("null"));
    // The second null write replaced the first: two bodies.
    assert_eq!(env.bodies().await?, 2);
    assert_eq!(
        versions(s3, "bkt")?,
        vec![
            ("k".into(), "null".into(), true, false),
            ("k".into(), v1.clone(), false, false),
        ]
    );
    assert_eq!(get(s3, "bkt", "k", Some("null")).await?, b"three");
    // A delete inserts a null delete marker, replacing the null version.
    let out = s3.delete_object_version("bkt", "k", None).await?;
    assert!(out.delete_marker);
    assert_eq!(out.version_id.as_deref(), Some("null"));
    assert_eq!(env.bodies().await?, 1);
    assert_eq!(
        versions(s3, "bkt")?,
        vec![
            ("k".into(), "null".into(), true, true),
            ("k".into(), v1.clone(), false, false),
        ]
    );
    env.reopen()?;
    let s3 = env.s3();
    // Re-enabling keeps everything; new writes get ids again.
    s3.put_bucket_versioning("bkt", Versioning::Enabled).await?;
    let v4 = put(s3, "bkt", "k", b"four").await?.ok_or("no version id")?;
    assert!(is_id(&v4));
    assert_eq!(versions(s3, "bkt")?.len(), 3);
    s3.delete_object_version("bkt", "k", Some("null")).await?;
    assert_eq!(
        versions(s3, "bkt")?,
        vec![
            ("k".into(), v4.clone(), true, false),
            ("k".into(), v1.clone(), false, false),
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_objects_become_null_versions() -> R {
    for mode in MODES {
        let env = Env::with_inline(mode)?;
        let s3 = env.s3();
        s3.create_bucket("1", "us-east-1", "bkt").await?;
        assert_eq!(put(s3, "bkt", "old", b"legacy").await?, None);
        // Unversioned buckets list their objects as null versions.
        assert_eq!(versions(s3, "bkt")?, vec![("old".into(), "null".into(), true, false)]);
        assert_eq!(get(s3, "bkt", "old", Some("null")).await?, b"legacy");
        s3.put_bucket_versioning("bkt", Versioning::Enabled).await?;
        assert_eq!(s3.head_object("bkt", "old")?.version_id.as_deref(), Some("null"));
        let v = put(s3, "bkt", "old", b"new").await?.ok_or("no version id")?;
        assert_eq!(
            versions(s3, "bkt")?,
            vec![
                ("old".into(), v.clone(), true, false),
                ("old".into(), "null".into(), false, false),
            ]
        );
        assert_eq!(get(s3, "bkt", "old", Some("null")).await?, b"legacy");
        assert_eq!(env.bodies().await?, 2);
        s3.delete_object_version("bkt", "old", Some("null")).await?;
        assert_eq!(env.bodies().await?, 1);
        assert_eq!(get(s3, "bkt", "old", None).await?, b"new");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_version_ids() -> R {
    let env = Env::with_inline(DEFAULT_INLINE_MAX)?;
    let s3 = env.s3();
    s3.create_bucket("1", "us-east-1", "bkt").await?;
    put(s3, "bkt", "plain", b"x").await?;
    s3.put_bucket_versioning("bkt", Versioning::Enabled).await?;
    let v = put(s3, "bkt", "k", b"x").await?;
    let marker = s3.delete_object_version("bkt", "k", None).await?.version_id;
    s3.delete_object_version("bkt", "k", marker.as_deref()).await?;
    let events = s3.pending_events(100)?;
    let got: Vec<(String, Option<String>)> = events
        .iter()
        .map(|e| (e.event_name.clone(), e.version_id.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("ObjectCreated:Put".into(), None),
            ("ObjectCreated:Put".into(), v),
            ("ObjectRemoved:DeleteMarkerCreated".into(), marker.clone()),
            ("ObjectRemoved:Delete".into(), marker),
        ]
    );
    // Events stored before versioning (no version_id field) still load.
    let old: kd_objects::ObjectEvent = serde_json::from_str(
        r#"{"version":1,"seq":1,"event_name":"ObjectCreated:Put","bucket":"b","key":"k","size":1,"etag":"e","sequencer":"01","time_ms":5}"#,
    )?;
    assert_eq!(old.version_id, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_versions_paging_prefixes_and_markers() -> R {
    let env = Env::with_inline(DEFAULT_INLINE_MAX)?;
    let s3 = env.s3();
    s3.create_bucket("1", "us-east-1", "bkt").await?;
    s3.put_bucket_versioning("bkt", Versioning::Enabled).await?;
    for key in ["a", "a/x", "a/y", "b", "c"] {
        for i in 0..3 {
            put(s3, "bkt", key, format!("{key}{i}").as_bytes()).await?;
        }
    }
    s3.delete_object_version("bkt", "b", None).await?;
    let all = versions(s3, "bkt")?;
    assert_eq!(all.len(), 16);
    // Every page size pages through the same sequence.
    for max in [1, 2, 3, 5, 7] {
        let mut seen = Vec::new();
        let (mut km, mut vm): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = s3.list_object_versions("bkt", "", None, km.as_deref(), vm.as_deref(), max)?;
            assert!(page.versions.len() <= max);
            seen.extend(
                page.versions
                    .iter()
                    .map(|v| (v.info.key.clone(), v.version_id.clone(), v.is_latest, v.delete_marker)),
            );
            if !page.is_truncated {
                break;
            }
            km = page.next_key_marker;
            vm = page.next_version_id_marker;
        }
        assert_eq!(seen, all, "page size {max}");
    }
    // Delimiter: "a/" rolls up, counted once.
    let page = s3.list_object_versions("bkt", "", Some("/"), None, None, 1000)?;
    assert_eq!(page.common_prefixes, vec!["a/".to_string()]);
    assert_eq!(page.versions.len(), 3 + 4 + 3);
    let page = s3.list_object_versions("bkt", "", Some("/"), None, None, 4)?;
    assert_eq!(page.common_prefixes, vec!["a/".to_string()]);
    assert_eq!(page.versions.len(), 3);
    assert!(page.is_truncated);
    // Prefix and key marker.
    let page = s3.list_object_versions("bkt", "a/", None, Some("a/x"), None, 1000)?;
    assert!(page.versions.iter().all(|v| v.info.key == "a/y"));
    assert_eq!(page.versions.len(), 3);
    assert!(page.versions[0].is_latest && !page.versions[1].is_latest);
    // Current-only listing ignores the key whose latest is a delete marker.
    let keys: Vec<String> = s3
        .list_objects("bkt", "", None, None, 1000)?
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["a", "a/x", "a/y", "c"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_copies_address_versions() -> R {
    for mode in MODES {
        let env = Env::with_inline(mode)?;
        let s3 = env.s3();
        s3.create_bucket("1", "us-east-1", "bkt").await?;
        s3.put_bucket_versioning("bkt", Versioning::Enabled).await?;
        let v1 = put(s3, "bkt", "k", b"one").await?.ok_or("no id")?;
        let v2 = put(s3, "bkt", "k", b"two").await?.ok_or("no id")?;
        let tags: BTreeMap<String, String> = [("t".to_string(), "1".to_string())].into();
        let tagged = s3.put_object_version_tags("bkt", "k", Some(&v1), tags.clone()).await?;
        assert_eq!(tagged.as_deref(), Some(v1.as_str()));
        assert_eq!(s3.get_object_version_tags("bkt", "k", Some(&v1))?, tags);
        assert!(s3.get_object_tags("bkt", "k")?.is_empty());
        // Tagging the current version updates what GET sees.
        s3.put_object_tags("bkt", "k", tags.clone()).await?;
        assert_eq!(s3.head_object("bkt", "k")?.tag_count, 1);
        assert_eq!(s3.get_object_version_tags("bkt", "k", Some(&v2))?, tags);
        // Copy an old version over the key (restores it as a new version).
        let info = s3
            .copy_object_version_if("bkt", "k", Some(&v1), "bkt", "k", None, None)
            .await?
            .map_err(|f| f.to_string())?;
        let v3 = info.version_id.ok_or("no id")?;
        assert!(v3 != v1 && v3 != v2);
        assert_eq!(get(s3, "bkt", "k", None).await?, b"one");
        assert_eq!(versions(s3, "bkt")?.len(), 3);
        assert_eq!(env.bodies().await?, 3);
        // Copying a delete marker is refused.
        let marker = s3.delete_object_version("bkt", "k", None).await?.version_id;
        assert!(matches!(
            s3.copy_object_version_if("bkt", "k", marker.as_deref(), "bkt", "k2", None, None)
                .await,
            Err(Error::DeleteMarker { by_version: true, .. })
        ));
        assert!(matches!(
            s3.copy_object("bkt", "k", "bkt", "k2", None).await,
            Err(Error::DeleteMarker { by_version: false, .. })
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_completion_creates_a_version() -> R {
    let env = Env::with_inline(0)?;
    let s3 = env.s3();
    s3.create_bucket("1", "us-east-1", "bkt").await?;
    s3.put_bucket_versioning("bkt", Versioning::Enabled).await?;
    let v1 = put(s3, "bkt", "k", b"one").await?.ok_or("no id")?;
    let upload = s3.create_multipart("bkt", "k", PutOptions::default()).await?;
    let p = s3.upload_part("bkt", "k", &upload, 1, body(b"multi"), None).await?;
    let info = s3.complete_multipart("bkt", "k", &upload, vec![(1, p.etag)]).await?;
    let v2 = info.version_id.ok_or("no id")?;
    assert_ne!(v1, v2);
    assert_eq!(get(s3, "bkt", "k", None).await?, b"multi");
    assert_eq!(get(s3, "bkt", "k", Some(&v1)).await?, b"one");
    assert_eq!(env.bodies().await?, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_clears_versions() -> R {
    let env = Env::with_inline(0)?;
    let s3 = env.s3();
    s3.create_bucket("1", "us-east-1", "bkt").await?;
    s3.put_bucket_versioning("bkt", Versioning::Enabled).await?;
    put(s3, "bkt", "k", b"one").await?;
    put(s3, "bkt", "k", b"two").await?;
    s3.delete_object("bkt", "k").await?;
    s3.reset().await?;
    let meta = env.meta.as_ref().ok_or("closed")?;
    assert!(meta.scan_prefix("s3_versions", "")?.is_empty());
    assert_eq!(env.bodies().await?, 0);
    s3.create_bucket("1", "us-east-1", "bkt").await?;
    assert_eq!(s3.get_bucket_versioning("bkt")?, None);
    assert!(versions(s3, "bkt")?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_ids_stay_ordered_when_the_clock_goes_back() -> R {
    let mut env = Env::with_inline(DEFAULT_INLINE_MAX)?;
    env.s3().create_bucket("1", "us-east-1", "bkt").await?;
    env.s3().put_bucket_versioning("bkt", Versioning::Enabled).await?;
    env.clock.advance(3_600_000);
    let v1 = put(env.s3(), "bkt", "k", b"one").await?.ok_or("no id")?;
    // Restart with a clock an hour behind: the new version must still be the newest.
    env.clock.set(1_700_000_000_000);
    env.reopen()?;
    let v2 = put(env.s3(), "bkt", "k", b"two").await?.ok_or("no id")?;
    assert!(v2 < v1);
    assert_eq!(get(env.s3(), "bkt", "k", None).await?, b"two");
    assert_eq!(versions(env.s3(), "bkt")?[0].1, v2);
    Ok(())
}

// ------------------------------------------------------------------ model-based property test

#[derive(Debug, Clone)]
enum Op {
    Put(usize, u8),
    Delete(usize),
    DeleteVersion(usize, usize),
    SetVersioning(bool),
    Reopen,
}

fn op_strategy() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0..3usize, any::<u8>()).prop_map(|(k, b)| Op::Put(k, b)),
        2 => (0..3usize).prop_map(Op::Delete),
        2 => (0..3usize, 0..4usize).prop_map(|(k, i)| Op::DeleteVersion(k, i)),
        1 => any::<bool>().prop_map(Op::SetVersioning),
        1 => Just(Op::Reopen),
    ]
}

/// One version in the model: id and body (`None` = delete marker).
type ModelVersion = (String, Option<Vec<u8>>);

async fn run_model(ops: Vec<Op>, inline_max: u64) -> R {
    const KEYS: [&str; 3] = ["a", "a/b", "b"];
    let mut env = Env::with_inline(inline_max)?;
    env.s3().create_bucket("1", "us-east-1", "mdl").await?;
    // Starts unversioned; newest first per key.
    let mut state: Option<Versioning> = None;
    let mut model: BTreeMap<&str, Vec<ModelVersion>> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Put(k, b) => {
                let data = vec![b; 1 + usize::from(b % 7)];
                let vid = put(env.s3(), "mdl", KEYS[k], &data).await?;
                let versions = model.entry(KEYS[k]).or_default();
                match state {
                    None => {
                        assert_eq!(vid, None);
                        versions.clear();
                        versions.push(("null".into(), Some(data)));
                    }
                    Some(Versioning::Suspended) => {
                        assert_eq!(vid.as_deref(), Some("null"));
                        versions.retain(|(v, _)| v != "null");
                        versions.insert(0, ("null".into(), Some(data)));
                    }
                    Some(Versioning::Enabled) => {
                        let vid = vid.ok_or("no version id")?;
                        assert!(is_id(&vid));
                        versions.insert(0, (vid, Some(data)));
                    }
                }
            }
            Op::Delete(k) => {
                let out = env.s3().delete_object_version("mdl", KEYS[k], None).await?;
                let versions = model.entry(KEYS[k]).or_default();
                match state {
                    None => {
                        assert!(!out.delete_marker);
                        versions.clear();
                    }
                    Some(Versioning::Suspended) => {
                        assert_eq!(out.version_id.as_deref(), Some("null"));
                        versions.retain(|(v, _)| v != "null");
                        versions.insert(0, ("null".into(), None));
                    }
                    Some(Versioning::Enabled) => {
                        assert!(out.delete_marker);
                        versions.insert(0, (out.version_id.ok_or("no marker id")?, None));
                    }
                }
            }
            Op::DeleteVersion(k, i) => {
                let versions = model.entry(KEYS[k]).or_default();
                if versions.is_empty() {
                    continue;
                }
                let (vid, body) = versions.remove(i % versions.len());
                let out = env.s3().delete_object_version("mdl", KEYS[k], Some(&vid)).await?;
                assert_eq!(out.delete_marker, state.is_some() && body.is_none());
            }
            Op::SetVersioning(enabled) => {
                let s = if enabled {
                    Versioning::Enabled
                } else {
                    Versioning::Suspended
                };
                env.s3().put_bucket_versioning("mdl", s).await?;
                state = Some(s);
            }
            Op::Reopen => env.reopen()?,
        }
        // Compare: every version, current reads, bodies stored.
        let s3 = env.s3();
        let mut expected = Vec::new();
        let mut bodies = 0;
        for (key, versions) in &model {
            for (i, (vid, body)) in versions.iter().enumerate() {
                expected.push((key.to_string(), vid.clone(), i == 0, body.is_none()));
                if body.is_some() {
                    bodies += 1;
                }
                if let Some(data) = body {
                    assert_eq!(&get(s3, "mdl", key, Some(vid)).await?, data);
                }
            }
            match versions.first() {
                Some((_, Some(data))) => assert_eq!(&get(s3, "mdl", key, None).await?, data),
                Some((vid, None)) => match get(s3, "mdl", key, None).await {
                    Err(Error::DeleteMarker {
                        version_id,
                        by_version: false,
                        ..
                    }) => assert_eq!(&version_id, vid),
                    other => return Err(format!("{key}: expected a delete marker, got {other:?}").into()),
                },
                None => assert!(matches!(get(s3, "mdl", key, None).await, Err(Error::NoSuchKey { .. }))),
            }
        }
        assert_eq!(versions(s3, "mdl")?, expected);
        let current: Vec<String> = model
            .iter()
            .filter(|(_, v)| matches!(v.first(), Some((_, Some(_)))))
            .map(|(k, _)| k.to_string())
            .collect();
        let listed: Vec<String> = s3
            .list_objects("mdl", "", None, None, 1000)?
            .objects
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(listed, current);
        assert_eq!(env.bodies().await?, bodies);
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

    #[test]
    fn versions_match_the_model(ops in proptest::collection::vec(op_strategy(), 1..30), inline in proptest::bool::ANY) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
        let inline_max = if inline { DEFAULT_INLINE_MAX } else { 0 };
        rt.block_on(run_model(ops, inline_max))
            .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
    }
}

fn rule(id: &str, prefix: &str, dest: &str, markers: bool) -> kd_objects::ReplicationRule {
    kd_objects::ReplicationRule {
        id: id.into(),
        priority: 0,
        enabled: true,
        prefix: prefix.into(),
        tags: Vec::new(),
        destination_bucket: dest.into(),
        storage_class: None,
        delete_marker_replication: markers,
    }
}

#[tokio::test]
async fn replication_queue_survives_reopen_and_replicas_are_idempotent() -> R {
    for inline_max in MODES {
        replication_in(inline_max)
            .await
            .map_err(|e| format!("inline_max {inline_max}: {e}"))?;
    }
    Ok(())
}

async fn replication_in(inline_max: u64) -> R {
    use kd_objects::{ReplicationConfig, ReplicationStatus};
    let mut env = Env::with_inline(inline_max)?;
    for b in ["src", "dst", "dst2"] {
        env.s3().create_bucket("1", "r", b).await?;
        env.s3().put_bucket_versioning(b, Versioning::Enabled).await?;
    }
    // Writes before the configuration are not queued.
    put(env.s3(), "src", "early", b"e").await?;
    let cfg = ReplicationConfig {
        role: "arn:aws:iam::1:role/r".into(),
        rules: vec![
            rule("a", "", "dst", true),
            rule("b", "two/", "dst2", false),
            kd_objects::ReplicationRule {
                enabled: false,
                ..rule("off", "", "dst2", false)
            },
        ],
    };
    env.s3().set_bucket_replication("src", Some(("{}".into(), cfg))).await?;
    assert!(matches!(
        env.s3().put_bucket_versioning("src", Versioning::Suspended).await,
        Err(Error::InvalidBucketState(_))
    ));
    let big = vec![7u8; 100_000];
    let v1 = put(env.s3(), "src", "one", &big).await?.ok_or("no version")?;
    let v2 = put(env.s3(), "src", "two/x", b"two").await?.ok_or("no version")?;
    assert_eq!(
        env.s3().head_object("src", "one")?.replication_status,
        Some(ReplicationStatus::Pending)
    );
    assert_eq!(env.s3().head_object("src", "early")?.replication_status, None);
    // The queue is durable.
    env.reopen()?;
    let tasks = env.s3().pending_replications(100)?;
    let dests: Vec<(&str, &str)> = tasks
        .iter()
        .map(|t| (t.key.as_str(), t.destination_bucket.as_str()))
        .collect();
    assert_eq!(dests, [("one", "dst"), ("two/x", "dst"), ("two/x", "dst2")]);
    // The first of two destinations leaves the version pending.
    for t in &tasks {
        let replica = env.s3().replicate(t).await?;
        assert_eq!(replica.replication_status, Some(ReplicationStatus::Replica));
        env.s3().finish_replication(t, true).await?;
        if t.key == "two/x" && t.destination_bucket == "dst" {
            assert_eq!(
                env.s3().head_object("src", "two/x")?.replication_status,
                Some(ReplicationStatus::Pending)
            );
        }
    }
    assert!(env.s3().pending_replications(100)?.is_empty());
    for (key, v) in [("one", &v1), ("two/x", &v2)] {
        let src = env.s3().head_object("src", key)?;
        assert_eq!(src.replication_status, Some(ReplicationStatus::Completed));
        let dst = env.s3().head_object("dst", key)?;
        assert_eq!(
            (dst.version_id.as_ref(), dst.etag.as_str()),
            (Some(v), src.etag.as_str())
        );
        assert_eq!(dst.last_modified_ms, src.last_modified_ms);
    }
    assert_eq!(get(env.s3(), "dst", "one", None).await?, big);
    // Replicating again (a crash between replica and status) keeps one version and one body.
    let bodies = env.bodies().await?;
    env.s3().replicate(&tasks[0]).await?;
    assert_eq!(versions(env.s3(), "dst")?.iter().filter(|v| v.0 == "one").count(), 1);
    assert_eq!(env.bodies().await?, bodies);
    // A newer object in the destination stays current over an older replica.
    put(env.s3(), "dst2", "two/x", b"newer").await?;
    env.s3().replicate(&tasks[2]).await?;
    assert_eq!(get(env.s3(), "dst2", "two/x", None).await?, b"newer");
    assert_eq!(get(env.s3(), "dst2", "two/x", Some(&v2)).await?, b"two");
    // Delete markers follow rules that replicate them.
    let marker = env.s3().delete_object_version("src", "two/x", None).await?;
    let queued = env.s3().pending_replications(100)?;
    assert_eq!(queued.len(), 1);
    assert!(queued[0].delete_marker && queued[0].destination_bucket == "dst");
    env.s3().replicate(&queued[0]).await?;
    env.s3().finish_replication(&queued[0], true).await?;
    assert!(matches!(
        env.s3().head_object("dst", "two/x"),
        Err(Error::DeleteMarker { .. })
    ));
    assert!(
        versions(env.s3(), "dst")?
            .iter()
            .any(|v| v.0 == "two/x" && Some(&v.1) == marker.version_id.as_ref() && v.3)
    );
    // A failure sticks until Batch Replication restarts the round.
    let v3 = put(env.s3(), "src", "three", b"3").await?.ok_or("no version")?;
    let t = env.s3().pending_replications(1)?.remove(0);
    env.s3().finish_replication(&t, false).await?;
    assert_eq!(
        env.s3().head_object("src", "three")?.replication_status,
        Some(ReplicationStatus::Failed)
    );
    let (_, again) = env.s3().replication_tasks_for("src", "three", Some(&v3))?;
    env.s3().restart_replication("src", "three", &v3).await?;
    env.s3().replicate(&again[0]).await?;
    env.s3().finish_replication(&again[0], true).await?;
    assert_eq!(
        env.s3().head_object("src", "three")?.replication_status,
        Some(ReplicationStatus::Completed)
    );
    // Without a configuration nothing is queued; a replica is never queued again.
    env.s3().set_bucket_replication("src", None).await?;
    put(env.s3(), "src", "four", b"4").await?;
    assert!(env.s3().pending_replications(10)?.is_empty());
    assert!(matches!(
        env.s3().replication_tasks_for("src", "four", None),
        Err(Error::InvalidRequest(_))
    ));
    Ok(())
}
