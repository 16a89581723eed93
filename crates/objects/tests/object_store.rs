//! `kd_objects::store::BucketStore` against object_store's conformance suite
//! (`object_store::integration`, every public suite function) plus its own edge cases.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use kd_objects::store::BucketStore;
use kd_objects::{Config, Objects};
use kd_storage::{Clock, MetaStore, SystemClock};
use object_store::integration::*;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, MultipartUpload, ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions,
    TagSet, UpdateVersion,
};

type R<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const BUCKET: &str = "lake";

struct Env {
    _dir: tempfile::TempDir,
    objects: Arc<Objects>,
    store: BucketStore,
}

fn env_with(min_part_size: u64) -> R<Env> {
    let dir = tempfile::tempdir()?;
    let meta = Arc::new(MetaStore::open(&dir.path().join("meta.redb"))?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config = Config {
        root: dir.path().join("s3"),
        min_part_size,
        ..Config::new(dir.path().join("s3"))
    };
    let objects = Arc::new(Objects::open(config, meta, clock)?);
    Ok(Env {
        _dir: dir,
        store: BucketStore::new(objects.clone(), BUCKET),
        objects,
    })
}

/// An engine with S3's 5 MiB minimum part size (the suite is written for it) and a bucket.
async fn env() -> R<Env> {
    let env = env_with(kd_objects::MIN_PART_SIZE)?;
    env.objects.create_bucket("000000000000", "us-east-1", BUCKET).await?;
    Ok(env)
}

// ---------------------------------------------------------------- the conformance suite

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_put_get_delete_list() -> R {
    let env = env().await?;
    put_get_delete_list(&env.store).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_list_with_offset_exclusivity() -> R {
    let env = env().await?;
    list_with_offset_exclusivity(&env.store).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_get_opts() -> R {
    let env = env().await?;
    get_opts(&env.store).await;
    Ok(())
}

/// `get_ranges` reads each range in place (no coalescing); a small bounded `get_range` takes
/// the same path; both refuse ranges past the end, and a bounded range that runs past the
/// end through `get_opts` is truncated as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::single_range_in_vec_init)] // one range per call is the point
async fn ranges_are_read_in_place() -> R {
    let env = env().await?;
    let data: Vec<u8> = (0..=255u8).cycle().take(3 * 1024 * 1024).collect();
    let path = Path::from("file.parquet");
    env.store.put(&path, data.clone().into()).await?;
    let ranges = [3_000_000..3_145_728, 8..1_000, 1_048_576..2_097_152, 5..5];
    let got = env.store.get_ranges(&path, &ranges).await?;
    for (r, b) in ranges.iter().zip(&got) {
        assert_eq!(b.as_ref(), &data[r.start as usize..r.end as usize], "{r:?}");
    }
    let b = env.store.get_range(&path, 100..200).await?;
    assert_eq!(b.as_ref(), &data[100..200]);
    assert!(env.store.get_ranges(&path, &[0..3_145_729]).await.is_err());
    let r = env
        .store
        .get_opts(
            &path,
            object_store::GetOptions::new().with_range(Some(3_145_000..4_000_000)),
        )
        .await?;
    assert_eq!(r.range, 3_145_000..3_145_728);
    assert_eq!(r.bytes().await?.as_ref(), &data[3_145_000..]);
    assert!(matches!(
        env.store.get_ranges(&Path::from("missing"), &[0..1]).await,
        Err(object_store::Error::NotFound { .. })
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_put_opts_with_atomic_update() -> R {
    let env = env().await?;
    // `true`: PutMode::Update is supported, and the concurrent-increment race must not
    // lose an update (the condition is checked under the engine's object lock).
    put_opts(&env.store, true).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_put_get_attributes() -> R {
    let env = env().await?;
    put_get_attributes(&env.store).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_list_uses_directories_correctly() -> R {
    let env = env().await?;
    list_uses_directories_correctly(&env.store).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_list_with_delimiter() -> R {
    let env = env().await?;
    list_with_delimiter(&env.store).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_list_paginated() -> R {
    let env = env().await?;
    list_paginated(&env.store, &env.store).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_rename_and_copy() -> R {
    let env = env().await?;
    rename_and_copy(&env.store).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_copy_if_not_exists() -> R {
    let env = env().await?;
    copy_if_not_exists(&env.store).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_copy_rename_nonexistent_object() -> R {
    let env = env().await?;
    copy_rename_nonexistent_object(&env.store).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_get_nonexistent_object() -> R {
    let env = env().await?;
    let err = get_nonexistent_object(&env.store, None).await;
    assert!(matches!(err, Err(object_store::Error::NotFound { .. })), "{err:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_stream_get() -> R {
    let env = env().await?;
    stream_get(&env.store).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_multipart_store() -> R {
    let env = env().await?;
    multipart(&env.store, &env.store).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_multipart_race_condition() -> R {
    let env = env().await?;
    multipart_race_condition(&env.store, true).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_multipart_out_of_order() -> R {
    let env = env().await?;
    multipart_out_of_order(&env.store).await;
    Ok(())
}

/// The suite through `Arc<dyn ObjectStore>`, as DataFusion holds stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_as_dyn_object_store() -> R {
    let env = env().await?;
    let store: Arc<dyn ObjectStore> = Arc::new(env.store.clone());
    put_get_delete_list(&store).await;
    get_opts(&store).await;
    list_with_delimiter(&store).await;
    rename_and_copy(&store).await;
    assert_eq!(store.to_string(), format!("KinesisData({BUCKET})"));
    Ok(())
}

// ---------------------------------------------------------------- beyond the suite

async fn put_many(store: &BucketStore, keys: &[String]) -> R {
    futures_util::stream::iter(keys.iter().cloned())
        .map(|k| async move { store.put(&Path::from(k), Bytes::from_static(b"x").into()).await })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Listings page through the engine (1000 keys per call) and still return every key once,
/// in key order; offsets and delimiters work across page boundaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_cross_page_boundaries() -> R {
    let env = env().await?;
    let mut keys: Vec<String> = (0..1100).map(|i| format!("t/part-{i:05}.parquet")).collect();
    keys.extend((0..1050).map(|i| format!("d/dir{i:05}/x")));
    put_many(&env.store, &keys).await?;

    let listed: Vec<String> = env
        .store
        .list(Some(&Path::from("t")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await?;
    assert_eq!(listed, keys[..1100].to_vec());

    let all = env.store.list(None).try_collect::<Vec<_>>().await?;
    assert_eq!(all.len(), keys.len());

    let offset = Path::from("t/part-00499.parquet");
    let after: Vec<String> = env
        .store
        .list_with_offset(Some(&Path::from("t")), &offset)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await?;
    assert_eq!(after, keys[500..1100].to_vec());

    let dirs = env.store.list_with_delimiter(Some(&Path::from("d"))).await?;
    assert!(dirs.objects.is_empty());
    assert_eq!(dirs.common_prefixes.len(), 1050);
    assert_eq!(dirs.common_prefixes.first(), Some(&Path::from("d/dir00000")));
    assert_eq!(dirs.common_prefixes.last(), Some(&Path::from("d/dir01049")));

    let root = env.store.list_with_delimiter(None).await?;
    assert_eq!(root.common_prefixes, vec![Path::from("d"), Path::from("t")]);
    Ok(())
}

/// Keys that no `Path` can name (folder markers, empty segments, a leading `/`) are
/// invisible to the listings instead of failing them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_path_keys_are_skipped() -> R {
    let env = env().await?;
    for key in ["dir/", "dir//x", "/abs", "dir/./y"] {
        let body = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(b"m"))]);
        env.objects
            .put_object(BUCKET, key, body, kd_objects::PutOptions::default())
            .await?;
    }
    env.store.put(&Path::from("dir/real"), "r".into()).await?;
    let listed: Vec<Path> = env.store.list(None).map_ok(|m| m.location).try_collect().await?;
    assert_eq!(listed, vec![Path::from("dir/real")]);
    let under: Vec<Path> = env
        .store
        .list(Some(&Path::from("dir")))
        .map_ok(|m| m.location)
        .try_collect()
        .await?;
    assert_eq!(under, vec![Path::from("dir/real")]);
    let d = env.store.list_with_delimiter(Some(&Path::from("dir"))).await?;
    assert_eq!(d.objects.len(), 1);
    assert!(d.common_prefixes.is_empty(), "{:?}", d.common_prefixes);
    Ok(())
}

/// Tags and attributes reach the engine's object (what S3 clients see), and the ETag is
/// the S3 one, quoted; a conditional update accepts it with or without quotes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_attributes_and_etags_are_s3s() -> R {
    let env = env().await?;
    let path = Path::from("tagged/a.csv");
    let mut tags = TagSet::default();
    tags.push("team", "data eng");
    tags.push("k/v", "a+b=c&d");
    let opts = PutOptions {
        tags,
        attributes: Attributes::from_iter([
            (Attribute::ContentType, "text/csv"),
            (Attribute::Metadata("origin".into()), "test"),
        ]),
        ..PutOptions::default()
    };
    let put = env.store.put_opts(&path, "a,b\n".into(), opts).await?;
    let stored = env.objects.head_object(BUCKET, "tagged/a.csv")?;
    assert_eq!(put.e_tag, Some(format!("\"{}\"", stored.etag)));
    assert_eq!(stored.headers.content_type.as_deref(), Some("text/csv"));
    assert_eq!(
        stored.headers.user_metadata.get("origin").map(String::as_str),
        Some("test")
    );
    let expected: BTreeMap<String, String> = [("team", "data eng"), ("k/v", "a+b=c&d")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(env.objects.get_object_tags(BUCKET, "tagged/a.csv")?, expected);

    let head = env.store.head(&path).await?;
    assert_eq!(head.e_tag, put.e_tag);
    assert_eq!(head.size, 4);

    // An unquoted ETag (as the S3 API's JSON tools print it) is accepted too.
    let update = PutMode::Update(UpdateVersion {
        e_tag: Some(stored.etag.clone()),
        version: None,
    });
    env.store.put_opts(&path, "c,d\n".into(), update.into()).await?;
    let stale = PutMode::Update(UpdateVersion {
        e_tag: put.e_tag.clone(),
        version: None,
    });
    let err = env.store.put_opts(&path, "e".into(), stale.into()).await;
    assert!(matches!(err, Err(object_store::Error::Precondition { .. })), "{err:?}");
    Ok(())
}

/// Parts smaller than the engine's minimum are coalesced client-side: any sequence of
/// `put_part` calls completes, every part but the last is at least the minimum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_parts_are_coalesced() -> R {
    let env = env_with(1000)?;
    env.objects.create_bucket("000000000000", "us-east-1", BUCKET).await?;
    let path = Path::from("coalesced.bin");
    let mut upload = env.store.put_multipart(&path).await?;
    let mut expected = Vec::new();
    let mut pending = Vec::new();
    for i in 0..25u8 {
        let chunk = vec![i; 130];
        expected.extend_from_slice(&chunk);
        pending.push(upload.put_part(chunk.into()));
    }
    futures_util::future::try_join_all(pending).await?;
    upload.complete().await?;
    let got = env.store.get(&path).await?.bytes().await?;
    assert_eq!(got.as_ref(), expected.as_slice());
    let info = env.objects.head_object(BUCKET, "coalesced.bin")?;
    // 25 × 130 = 3250 bytes in parts of ≥ 1000: 1040, 1040, 1040, 130.
    assert_eq!(info.parts_count, Some(4));
    Ok(())
}

/// An upload dropped without `complete` or `abort` is aborted in the background, so it
/// does not keep the bucket from being deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_upload_is_aborted() -> R {
    let env = env().await?;
    let mut upload = env.store.put_multipart(&Path::from("dropped")).await?;
    upload.put_part(vec![1u8; 10].into()).await?;
    drop(upload);
    for _ in 0..200 {
        let (uploads, _) = env.objects.list_multipart_uploads(BUCKET, "", None, None, 10)?;
        if uploads.is_empty() {
            env.objects.delete_bucket(BUCKET).await?;
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Err("the dropped upload was not aborted".into())
}

/// `copy_if_not_exists` is a conditional write: of concurrent copies onto one new key,
/// exactly one succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copy_if_not_exists_has_one_winner() -> R {
    let env = env().await?;
    env.store.put(&Path::from("src"), "payload".into()).await?;
    let results = futures_util::future::join_all((0..8).map(|_| {
        let store = env.store.clone();
        async move { store.copy_if_not_exists(&Path::from("src"), &Path::from("dst")).await }
    }))
    .await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let lost = results
        .iter()
        .filter(|r| matches!(r, Err(object_store::Error::AlreadyExists { .. })))
        .count();
    assert_eq!((won, lost), (1, 7), "{results:?}");
    // A self-copy changes nothing; with Create it reports the existing object.
    env.store.copy(&Path::from("src"), &Path::from("src")).await?;
    let err = env
        .store
        .copy_if_not_exists(&Path::from("src"), &Path::from("src"))
        .await;
    assert!(matches!(err, Err(object_store::Error::AlreadyExists { .. })), "{err:?}");
    Ok(())
}

/// Attributes and tags of a multipart upload land on the completed object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_keeps_options() -> R {
    let env = env().await?;
    let mut tags = TagSet::default();
    tags.push("kind", "mp");
    let opts = PutMultipartOptions {
        tags,
        attributes: Attributes::from_iter([(Attribute::ContentType, "application/x-parquet")]),
        ..PutMultipartOptions::default()
    };
    let path = Path::from("mp/obj");
    let mut upload = env.store.put_multipart_opts(&path, opts).await?;
    upload.put_part("abc".into()).await?;
    let done = upload.complete().await?;
    let r = env.store.get(&path).await?;
    assert_eq!(
        r.attributes.get(&Attribute::ContentType).map(|v| v.to_string()),
        Some("application/x-parquet".into())
    );
    assert_eq!(r.meta.e_tag, done.e_tag);
    assert_eq!(r.bytes().await?.as_ref(), b"abc");
    assert_eq!(
        env.objects
            .get_object_tags(BUCKET, "mp/obj")?
            .get("kind")
            .map(String::as_str),
        Some("mp")
    );
    Ok(())
}

/// A store over a missing bucket fails every call with a generic error (not NotFound,
/// which would read as a missing object).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_a_generic_error() -> R {
    let env = env().await?;
    assert!(BucketStore::open(env.objects.clone(), "nope").is_err());
    let store = BucketStore::new(env.objects.clone(), "nope");
    let err = store.get(&Path::from("a")).await;
    assert!(matches!(err, Err(object_store::Error::Generic { .. })), "{err:?}");
    let err = store.list(None).try_collect::<Vec<_>>().await;
    assert!(matches!(err, Err(object_store::Error::Generic { .. })), "{err:?}");
    Ok(())
}

fn blob_files(root: &std::path::Path) -> usize {
    let Ok(dirs) = std::fs::read_dir(root.join("blobs")) else {
        return 0;
    };
    dirs.flatten()
        .filter_map(|d| std::fs::read_dir(d.path()).ok())
        .map(|files| files.count())
        .sum()
}

/// The engine's conditional writes: a refused write leaves no blob, no event, no change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_conditional_writes() -> R {
    use kd_objects::{ConditionFailed, WriteCondition};
    let env = env().await?;
    let s3 = &env.objects;
    let body = |b: &'static [u8]| futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(b))]);
    let opts = kd_objects::PutOptions::default;

    let first = s3
        .put_object_if(BUCKET, "k", body(b"one"), opts(), Some(WriteCondition::NotExists))
        .await?;
    let Ok(first) = first else {
        return Err("first create refused".into());
    };
    let events = s3.pending_events(100)?.len();
    let blobs = blob_files(&env._dir.path().join("s3"));

    let again = s3
        .put_object_if(BUCKET, "k", body(b"two"), opts(), Some(WriteCondition::NotExists))
        .await?;
    assert_eq!(
        again,
        Err(ConditionFailed::Exists {
            etag: first.etag.clone()
        })
    );
    let missing = s3
        .put_object_if(
            BUCKET,
            "nope",
            body(b"x"),
            opts(),
            Some(WriteCondition::ETagMatches("abc".into())),
        )
        .await?;
    assert_eq!(missing, Err(ConditionFailed::Missing));
    let stale = s3
        .put_object_if(
            BUCKET,
            "k",
            body(b"x"),
            opts(),
            Some(WriteCondition::ETagMatches("\"abc\"".into())),
        )
        .await?;
    assert_eq!(
        stale,
        Err(ConditionFailed::ETagMismatch {
            current: first.etag.clone()
        })
    );
    let copy = s3
        .copy_object_if(BUCKET, "k", BUCKET, "k", Some(opts()), Some(WriteCondition::NotExists))
        .await?;
    assert!(matches!(copy, Err(ConditionFailed::Exists { .. })), "{copy:?}");

    assert_eq!(s3.pending_events(100)?.len(), events);
    assert_eq!(blob_files(&env._dir.path().join("s3")), blobs);
    assert_eq!(s3.head_object(BUCKET, "k")?.etag, first.etag);

    let quoted = format!("\"{}\"", first.etag);
    let swapped = s3
        .put_object_if(
            BUCKET,
            "k",
            body(b"two"),
            opts(),
            Some(WriteCondition::ETagMatches(quoted)),
        )
        .await?;
    assert!(swapped.is_ok(), "{swapped:?}");
    assert_eq!(s3.pending_events(100)?.len(), events + 1);
    Ok(())
}
