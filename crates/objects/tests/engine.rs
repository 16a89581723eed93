//! Engine tests of the S3 engine (no HTTP).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use kd_objects::{
    BodyStream, ByteRange, ChecksumAlgorithm, ChecksumRequest, Config, DEFAULT_INLINE_MAX, Error, ObjectInfo, Objects,
    PutOptions,
};
use kd_storage::{Clock, ManualClock, MetaStore};

type R<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const MIN_PART: u64 = 16;

/// The two storage modes every engine test runs in: no inline bodies (every body is a blob
/// file), and the default inline limit (the small test bodies are all inline).
const MODES: [u64; 2] = [0, DEFAULT_INLINE_MAX];

struct Env {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    inline_max: u64,
    s3: Option<Objects>,
    meta: Option<Arc<MetaStore>>,
}

fn open_engine(dir: &Path, clock: Arc<ManualClock>, inline_max: u64) -> R<(Objects, Arc<MetaStore>)> {
    // The previous store's committer thread may hold the database for a moment more.
    let mut last = None;
    for _ in 0..100 {
        match MetaStore::open(&dir.join("meta.redb")) {
            Ok(meta) => {
                let config = Config {
                    root: dir.join("s3"),
                    min_part_size: MIN_PART,
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
    fn new() -> R<Env> {
        Env::with_inline(DEFAULT_INLINE_MAX)
    }

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

    /// Closes the engine and its metadata store.
    fn close(&mut self) {
        self.s3 = None;
        self.meta = None;
    }

    fn reopen(&mut self) -> R {
        self.close();
        let (s3, meta) = open_engine(self.dir.path(), self.clock.clone(), self.inline_max)?;
        self.s3 = Some(s3);
        self.meta = Some(meta);
        Ok(())
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("s3")
    }

    /// Every file under the temp dir, relative.
    fn files(&self) -> Vec<PathBuf> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else if let Ok(rel) = p.strip_prefix(base) {
                    out.push(rel.to_path_buf());
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out
    }

    /// The blob ids of the files under `s3/blobs`.
    fn blob_files(&self) -> BTreeSet<String> {
        self.files()
            .iter()
            .filter(|p| p.starts_with("s3/blobs"))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect()
    }

    /// The keys (blob ids) of the `s3_inline` table, with their sizes.
    fn inline_rows(&self) -> R<BTreeMap<String, usize>> {
        let meta = self.meta.as_ref().ok_or("engine closed")?;
        Ok(meta
            .scan_prefix("s3_inline", "")?
            .into_iter()
            .map(|(k, v)| (k, v.len()))
            .collect())
    }

    /// Stored bodies: blob files plus inline rows.
    fn blob_count(&self) -> usize {
        self.blob_files().len() + self.inline_rows().map(|r| r.len()).unwrap_or(usize::MAX / 2)
    }
}

fn body(data: &[u8]) -> futures_util::stream::Iter<std::vec::IntoIter<std::io::Result<Bytes>>> {
    // Split into a few chunks to exercise streaming.
    let chunks: Vec<std::io::Result<Bytes>> = data.chunks(7).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    futures_util::stream::iter(chunks)
}

async fn collect(mut s: BodyStream) -> R<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

async fn get(s3: &Objects, bucket: &str, key: &str) -> R<Vec<u8>> {
    let (_, _, s) = s3.get_object(bucket, key, None).await?;
    collect(s).await
}

async fn put(s3: &Objects, bucket: &str, key: &str, data: &[u8]) -> R<ObjectInfo> {
    Ok(s3.put_object(bucket, key, body(data), PutOptions::default()).await?)
}

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    let d: [u8; 16] = md5::Md5::digest(data).into();
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_lifecycle() -> R {
    for inline_max in MODES {
        buckets_lifecycle_in(inline_max)
            .await
            .map_err(|e| format!("inline_max {inline_max}: {e}"))?;
    }
    Ok(())
}

async fn buckets_lifecycle_in(inline_max: u64) -> R {
    let env = Env::with_inline(inline_max)?;
    let s3 = env.s3();
    let b = s3.create_bucket("111111111111", "us-east-1", "alpha").await?;
    assert_eq!(b.name, "alpha");
    assert_eq!(b.created_ms, 1_700_000_000_000);
    s3.create_bucket("111111111111", "eu-west-1", "beta").await?;
    s3.create_bucket("222222222222", "us-east-1", "gamma").await?;
    assert!(matches!(
        s3.create_bucket("111111111111", "us-east-1", "alpha").await,
        Err(Error::BucketAlreadyOwnedByYou { .. })
    ));
    assert!(matches!(
        s3.create_bucket("222222222222", "us-east-1", "alpha").await,
        Err(Error::BucketAlreadyExists { .. })
    ));
    assert!(matches!(
        s3.create_bucket("1", "us-east-1", "Bad_Name").await,
        Err(Error::InvalidBucketName { .. })
    ));
    let names: Vec<String> = s3.list_buckets("111111111111")?.into_iter().map(|b| b.name).collect();
    assert_eq!(names, vec!["alpha", "beta"]);
    assert_eq!(s3.bucket("beta")?.region, "eu-west-1");
    assert!(matches!(s3.bucket("nope"), Err(Error::NoSuchBucket { .. })));

    put(s3, "alpha", "k", b"x").await?;
    assert!(matches!(
        s3.delete_bucket("alpha").await,
        Err(Error::BucketNotEmpty { .. })
    ));
    s3.delete_object("alpha", "k").await?;
    let upload = s3.create_multipart("alpha", "m", PutOptions::default()).await?;
    assert!(matches!(
        s3.delete_bucket("alpha").await,
        Err(Error::BucketNotEmpty { .. })
    ));
    s3.abort_multipart("alpha", "m", &upload).await?;
    s3.delete_bucket("alpha").await?;
    assert!(matches!(
        s3.delete_bucket("alpha").await,
        Err(Error::NoSuchBucket { .. })
    ));
    assert!(matches!(put(s3, "alpha", "k", b"x").await, Err(e) if e.to_string().contains("does not exist")));
    // A bucket whose name is a prefix of another does not see its objects.
    s3.create_bucket("1", "r", "abc").await?;
    s3.create_bucket("1", "r", "abc.d").await?;
    put(s3, "abc.d", "k", b"x").await?;
    assert!(s3.list_objects("abc", "", None, None, 100)?.objects.is_empty());
    s3.delete_bucket("abc").await?;

    // Bucket tags and notification config.
    let tags: BTreeMap<String, String> = (0..50).map(|i| (format!("k{i}"), "v".into())).collect();
    s3.put_bucket_tags("beta", tags.clone()).await?;
    assert_eq!(s3.get_bucket_tags("beta")?, tags);
    let mut too_many = tags;
    too_many.insert("extra".into(), "v".into());
    assert!(matches!(
        s3.put_bucket_tags("beta", too_many).await,
        Err(Error::InvalidTag(_))
    ));
    s3.delete_bucket_tags("beta").await?;
    assert!(s3.get_bucket_tags("beta")?.is_empty());
    assert_eq!(s3.get_bucket_notification("beta")?, None);
    s3.put_bucket_notification("beta", "{\"x\":1}".into()).await?;
    assert_eq!(s3.get_bucket_notification("beta")?.as_deref(), Some("{\"x\":1}"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_round_trip_and_odd_keys_stay_inside_root() -> R {
    for inline_max in MODES {
        objects_round_trip_and_odd_keys_stay_inside_root_in(inline_max)
            .await
            .map_err(|e| format!("inline_max {inline_max}: {e}"))?;
    }
    Ok(())
}

async fn objects_round_trip_and_odd_keys_stay_inside_root_in(inline_max: u64) -> R {
    let mut env = Env::with_inline(inline_max)?;
    env.s3().create_bucket("1", "us-east-1", "bkt").await?;
    let keys = [
        "plain",
        "with space",
        "unicodé/日本語/🦀",
        "a+b=c",
        "100%25",
        "..",
        "../../escape",
        "a//b",
        "./x",
        "/leading",
        "trailing/",
        "/",
        "\\back\\slash",
        "nul\u{1}ctl",
        &"k".repeat(1024),
    ];
    for (i, key) in keys.iter().enumerate() {
        let data = format!("body of {i}").into_bytes();
        let info = put(env.s3(), "bkt", key, &data).await?;
        assert_eq!(info.etag, md5_hex(&data));
        assert_eq!(info.size, data.len() as u64);
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(get(env.s3(), "bkt", key).await?, format!("body of {i}").into_bytes());
        assert_eq!(
            env.s3().head_object("bkt", key)?.size,
            format!("body of {i}").len() as u64
        );
    }
    let listed: Vec<String> = env
        .s3()
        .list_objects("bkt", "", None, None, 1000)?
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect();
    let mut sorted: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    sorted.sort();
    assert_eq!(listed, sorted);
    for f in env.files() {
        assert!(
            f.starts_with("s3/blobs") || f.starts_with("s3/tmp") || f == Path::new("meta.redb"),
            "unexpected file {f:?}"
        );
    }
    assert_eq!(env.blob_count(), keys.len());
    assert!(matches!(
        put(env.s3(), "bkt", &"k".repeat(1025), b"x").await,
        Err(e) if e.to_string().contains("too long")
    ));
    assert!(matches!(
        env.s3().put_object("bkt", "", body(b""), PutOptions::default()).await,
        Err(Error::InvalidArgument(_))
    ));

    // Metadata round trip, overwrite, empty body.
    let opts = PutOptions {
        content_type: Some("text/plain".into()),
        content_encoding: Some("gzip".into()),
        content_disposition: Some("inline".into()),
        cache_control: Some("no-cache".into()),
        expires: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
        content_language: Some("en".into()),
        user_metadata: BTreeMap::from([("color".into(), "blue".into())]),
        tags: BTreeMap::from([("t".into(), "1".into())]),
        ..PutOptions::default()
    };
    env.clock.advance(5);
    let info = env.s3().put_object("bkt", "plain", body(b""), opts.clone()).await?;
    assert_eq!(info.etag, "d41d8cd98f00b204e9800998ecf8427e");
    let head = env.s3().head_object("bkt", "plain")?;
    assert_eq!(head.headers.content_type.as_deref(), Some("text/plain"));
    assert_eq!(head.headers.expires, opts.expires);
    assert_eq!(head.headers.user_metadata, opts.user_metadata);
    assert_eq!(head.tag_count, 1);
    assert_eq!(head.last_modified_ms, 1_700_000_000_005);
    assert_eq!(get(env.s3(), "bkt", "plain").await?, b"");
    // The replaced blob is gone.
    assert_eq!(env.blob_count(), keys.len());

    env.s3().delete_object("bkt", "plain").await?;
    env.s3().delete_object("bkt", "plain").await?; // missing key is success
    assert!(matches!(
        env.s3().head_object("bkt", "plain"),
        Err(Error::NoSuchKey { .. })
    ));
    assert!(matches!(
        env.s3().get_object("bkt", "plain", None).await,
        Err(Error::NoSuchKey { .. })
    ));
    assert!(matches!(
        env.s3().head_object("nob", "plain"),
        Err(Error::NoSuchBucket { .. })
    ));
    assert!(matches!(
        env.s3().delete_object("nob", "x").await,
        Err(Error::NoSuchBucket { .. })
    ));
    assert_eq!(env.blob_count(), keys.len() - 1);

    // Durable across reopen.
    env.reopen()?;
    for (i, key) in keys.iter().enumerate().skip(1) {
        assert_eq!(get(env.s3(), "bkt", key).await?, format!("body of {i}").into_bytes());
    }
    assert_eq!(env.blob_count(), keys.len() - 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges() -> R {
    for inline_max in MODES {
        ranges_in(inline_max)
            .await
            .map_err(|e| format!("inline_max {inline_max}: {e}"))?;
    }
    Ok(())
}

async fn ranges_in(inline_max: u64) -> R {
    let env = Env::with_inline(inline_max)?;
    let s3 = env.s3();
    s3.create_bucket("1", "r", "bkt").await?;
    let data: Vec<u8> = (0..100u8).collect();
    put(s3, "bkt", "k", &data).await?;
    put(s3, "bkt", "empty", b"").await?;
    let cases = [
        (ByteRange::FromTo(0, 0), (0, 0)),
        (ByteRange::FromTo(10, 19), (10, 19)),
        (ByteRange::FromTo(90, 1000), (90, 99)),
        (ByteRange::From(95), (95, 99)),
        (ByteRange::Suffix(5), (95, 99)),
        (ByteRange::Suffix(500), (0, 99)),
    ];
    for (range, (a, b)) in cases {
        let (info, cr, s) = s3.get_object("bkt", "k", Some(range)).await?;
        assert_eq!(info.size, 100);
        assert_eq!(cr, Some((a, b)), "{range:?}");
        assert_eq!(collect(s).await?, data[a as usize..=b as usize].to_vec(), "{range:?}");
    }
    let (_, cr, s) = s3.get_object("bkt", "k", Some(ByteRange::FromTo(5, 2))).await?;
    assert_eq!(cr, None);
    assert_eq!(collect(s).await?.len(), 100);
    for range in [ByteRange::From(100), ByteRange::FromTo(100, 200), ByteRange::Suffix(0)] {
        assert!(matches!(
            s3.get_object("bkt", "k", Some(range)).await,
            Err(Error::InvalidRange { size: 100 })
        ));
    }
    assert!(matches!(
        s3.get_object("bkt", "empty", Some(ByteRange::From(0))).await,
        Err(Error::InvalidRange { size: 0 })
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_ranges_reads_each_range_in_place() -> R {
    for inline_max in MODES {
        read_ranges_in(inline_max)
            .await
            .map_err(|e| format!("inline_max {inline_max}: {e}"))?;
    }
    Ok(())
}

#[allow(clippy::single_range_in_vec_init)] // one range per call is the point
async fn read_ranges_in(inline_max: u64) -> R {
    let env = Env::with_inline(inline_max)?;
    let s3 = env.s3();
    s3.create_bucket("1", "r", "bkt").await?;
    let data: Vec<u8> = (0..200u8).collect();
    put(s3, "bkt", "k", &data).await?;
    // Scattered, out of order, overlapping and empty ranges come back as asked.
    let ranges = [150..200, 0..4, 2..10, 60..60, 199..200];
    let (info, parts) = s3.read_ranges("bkt", "k", &ranges).await?;
    assert_eq!(info.size, 200);
    assert_eq!(parts.len(), ranges.len());
    for (r, got) in ranges.iter().zip(&parts) {
        assert_eq!(got.as_ref(), &data[r.start as usize..r.end as usize], "{r:?}");
    }
    // A range past the end, or reversed, is InvalidRange with the object's size.
    for bad in [[190..201], [200..201]] {
        assert!(matches!(
            s3.read_ranges("bkt", "k", &bad).await,
            Err(Error::InvalidRange { size: 200 })
        ));
    }
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = [20..10];
    assert!(matches!(
        s3.read_ranges("bkt", "k", &reversed).await,
        Err(Error::InvalidRange { size: 200 })
    ));
    assert!(matches!(
        s3.read_ranges("bkt", "missing", &[0..1]).await,
        Err(Error::NoSuchKey { .. })
    ));
    // No ranges: the object's information alone.
    let (info, parts) = s3.read_ranges("bkt", "k", &[]).await?;
    assert_eq!((info.size, parts.len()), (200, 0));
    if inline_max != 0 {
        return Ok(());
    }
    // More than INLINE_READ_BYTES in all: read on the blocking pool, same answers.
    let big: Vec<u8> = (0..2_200_000u32).map(|i| (i % 251) as u8).collect();
    put(s3, "bkt", "big", &big).await?;
    let ranges = [1_100_000..2_200_000, 0..1_100_000];
    assert!(ranges.iter().map(|r| r.end - r.start).sum::<u64>() > kd_objects::INLINE_READ_BYTES);
    let (info, parts) = s3.read_ranges("bkt", "big", &ranges).await?;
    assert_eq!(info.size, big.len() as u64);
    for (r, got) in ranges.iter().zip(&parts) {
        assert!(got.as_ref() == &big[r.start as usize..r.end as usize], "{r:?}");
    }
    assert!(matches!(
        s3.read_ranges("bkt", "big", &[0..1_500_000, 2_000_000..2_200_001])
            .await,
        Err(Error::InvalidRange { size: 2_200_000 })
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_with_delimiter_prefix_and_pages() -> R {
    for inline_max in MODES {
        listing_with_delimiter_prefix_and_pages_in(inline_max)
            .await
            .map_err(|e| format!("inline_max {inline_max}: {e}"))?;
    }
    Ok(())
}

async fn listing_with_delimiter_prefix_and_pages_in(inline_max: u64) -> R {
    let env = Env::with_inline(inline_max)?;
    let s3 = env.s3();
    s3.create_bucket("1", "r", "bkt").await?;
    let keys = ["a/1", "a/2", "a/b/3", "b", "c/x/y", "c/z", "d"];
    futures_util::future::try_join_all(keys.iter().map(|k| put(s3, "bkt", k, b"v"))).await?;
    let p = s3.list_objects("bkt", "", Some("/"), None, 1000)?;
    assert_eq!(p.common_prefixes, vec!["a/", "c/"]);
    assert_eq!(
        p.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
        vec!["b", "d"]
    );
    assert!(!p.is_truncated);
    let p = s3.list_objects("bkt", "a/", Some("/"), None, 1000)?;
    assert_eq!(p.common_prefixes, vec!["a/b/"]);
    assert_eq!(p.objects.len(), 2);
    let p = s3.list_objects("bkt", "", Some("/"), None, 2)?;
    assert_eq!(p.common_prefixes, vec!["a/"]);
    assert_eq!(p.objects[0].key, "b");
    assert!(p.is_truncated);
    assert_eq!(p.next_marker.as_deref(), Some("b"));
    let p = s3.list_objects("bkt", "", Some("/"), Some("a/"), 2)?;
    assert_eq!(p.common_prefixes, vec!["c/"]);
    assert_eq!(p.objects[0].key, "b");
    assert_eq!(p.next_marker.as_deref(), Some("c/"));
    let p = s3.list_objects("bkt", "", Some("/"), Some("c/"), 2)?;
    assert_eq!(p.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), vec!["d"]);
    assert!(!p.is_truncated && p.next_marker.is_none());
    let p = s3.list_objects("bkt", "", None, Some("a/b/3"), 2)?;
    assert_eq!(
        p.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
        vec!["b", "c/x/y"]
    );
    assert!(s3.list_objects("bkt", "zzz", None, None, 10)?.objects.is_empty());
    assert!(!s3.list_objects("bkt", "", None, None, 0)?.is_truncated);
    assert!(matches!(
        s3.list_objects("nob", "", None, None, 1),
        Err(Error::NoSuchBucket { .. })
    ));
    Ok(())
}

/// The listing model: keys after `start_after` with `prefix`, rolled up at `delimiter`; a
/// `start_after` that is itself a common prefix skips its keys.
fn model_list(
    keys: &BTreeSet<String>,
    prefix: &str,
    delimiter: Option<&str>,
    start_after: Option<&str>,
) -> Vec<(bool, String)> {
    let mut out: Vec<(bool, String)> = Vec::new();
    let skip = match (delimiter, start_after) {
        (Some(d), Some(sa)) => sa
            .strip_prefix(prefix)
            .filter(|rest| rest.find(d).map(|i| i + d.len()) == Some(rest.len()))
            .map(|_| sa.to_string()),
        _ => None,
    };
    for k in keys {
        if !k.starts_with(prefix) || start_after.is_some_and(|sa| k.as_str() <= sa) {
            continue;
        }
        if skip.as_ref().is_some_and(|s| k.starts_with(s.as_str())) {
            continue;
        }
        let rest = &k[prefix.len()..];
        let entry = match delimiter.and_then(|d| rest.find(d).map(|i| (i, d))) {
            Some((i, d)) => (true, k[..prefix.len() + i + d.len()].to_string()),
            None => (false, k.clone()),
        };
        if out.last() != Some(&entry) {
            out.push(entry);
        }
    }
    out
}

mod listing_model {
    use super::*;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = String> {
        proptest::collection::vec(prop_oneof![Just('a'), Just('b'), Just('/'), Just('é')], 1..6)
            .prop_map(|c| c.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn list_matches_model(
            keys in proptest::collection::btree_set(key(), 0..25),
            prefix in proptest::collection::vec(prop_oneof![Just('a'), Just('/')], 0..2).prop_map(|c| c.into_iter().collect::<String>()),
            delimiter in prop_oneof![Just(None), Just(Some("/")), Just(Some("b")), Just(Some("a/"))],
            start_after in proptest::option::of(key()),
            max_keys in 1usize..6,
        ) {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let result: R = rt.block_on(async {
                let env = Env::new()?;
                let s3 = env.s3();
                s3.create_bucket("1", "r", "bkt").await?;
                // Noise in neighbouring buckets.
                s3.create_bucket("1", "r", "bks").await?;
                s3.create_bucket("1", "r", "bkt.z").await?;
                put(s3, "bks", "a", b"").await?;
                put(s3, "bkt.z", "a", b"").await?;
                futures_util::future::try_join_all(keys.iter().map(|k| put(s3, "bkt", k, b""))).await?;
                let expected = model_list(&keys, &prefix, delimiter, start_after.as_deref());
                // Walk the pages, passing next_marker back as start_after.
                let mut got = Vec::new();
                let mut marker = start_after.clone();
                loop {
                    let page = s3.list_objects("bkt", &prefix, delimiter, marker.as_deref(), max_keys)?;
                    let mut entries: Vec<(bool, String)> = page.objects.iter().map(|o| (false, o.key.clone())).collect();
                    entries.extend(page.common_prefixes.iter().map(|p| (true, p.clone())));
                    entries.sort_by(|a, b| a.1.cmp(&b.1));
                    assert!(entries.len() <= max_keys);
                    got.extend(entries);
                    if !page.is_truncated {
                        break;
                    }
                    marker = page.next_marker.clone();
                    assert!(marker.is_some());
                }
                assert_eq!(got, expected);
                Ok(())
            });
            result.map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_object() -> R {
    for inline_max in MODES {
        copy_object_in(inline_max)
            .await
            .map_err(|e| format!("inline_max {inline_max}: {e}"))?;
    }
    Ok(())
}

async fn copy_object_in(inline_max: u64) -> R {
    let env = Env::with_inline(inline_max)?;
    let s3 = env.s3();
    s3.create_bucket("1", "r", "src").await?;
    s3.create_bucket("1", "r", "dst").await?;
    let opts = PutOptions {
        content_type: Some("text/x".into()),
        user_metadata: BTreeMap::from([("m".into(), "1".into())]),
        tags: BTreeMap::from([("t".into(), "1".into())]),
        checksum: Some(ChecksumRequest {
            algorithm: ChecksumAlgorithm::Crc32c,
            expected_b64: None,
        }),
        ..PutOptions::default()
    };
    let src = s3.put_object("src", "k", body(b"hello world"), opts).await?;
    let copy = s3.copy_object("src", "k", "dst", "k2", None).await?;
    assert_eq!(copy.etag, src.etag);
    assert_eq!(copy.headers, src.headers);
    assert_eq!(copy.checksum, src.checksum);
    assert_eq!(copy.tag_count, 1);
    assert_eq!(get(s3, "dst", "k2").await?, b"hello world");
    let replaced = s3
        .copy_object(
            "src",
            "k",
            "src",
            "k",
            Some(PutOptions {
                content_type: Some("a/b".into()),
                ..PutOptions::default()
            }),
        )
        .await?;
    assert_eq!(replaced.headers.content_type.as_deref(), Some("a/b"));
    assert!(replaced.headers.user_metadata.is_empty());
    assert_eq!(replaced.tag_count, 0);
    assert_eq!(get(s3, "src", "k").await?, b"hello world");
    assert!(matches!(
        s3.copy_object("src", "k", "src", "k", None).await,
        Err(Error::InvalidRequest(_))
    ));
    assert!(matches!(
        s3.copy_object("src", "nope", "dst", "x", None).await,
        Err(Error::NoSuchKey { .. })
    ));
    assert!(matches!(
        s3.copy_object("src", "k", "nob", "x", None).await,
        Err(Error::NoSuchBucket { .. })
    ));
    assert_eq!(env.blob_count(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksums_and_bad_digest() -> R {
    for inline_max in MODES {
        checksums_and_bad_digest_in(inline_max)
            .await
            .map_err(|e| format!("inline_max {inline_max}: {e}"))?;
    }
    Ok(())
}

async fn checksums_and_bad_digest_in(inline_max: u64) -> R {
    let env = Env::with_inline(inline_max)?;
    let s3 = env.s3();
    s3.create_bucket("1", "r", "bkt").await?;
    let known = [
        (ChecksumAlgorithm::Crc32, "DUoRhQ=="),
        (ChecksumAlgorithm::Crc32c, "yZRlqg=="),
        (
            ChecksumAlgorithm::Sha256,
            "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=",
        ),
        (ChecksumAlgorithm::Sha1, "Kq5sNclPz7QV2+lfQIuc6R7oRu0="),
    ];
    for (alg, value) in known {
        // Computed on request, verified when supplied.
        for expected in [None, Some(value.to_string())] {
            let opts = PutOptions {
                checksum: Some(ChecksumRequest {
                    algorithm: alg,
                    expected_b64: expected,
                }),
                ..PutOptions::default()
            };
            let info = s3.put_object("bkt", "k", body(b"hello world"), opts).await?;
            assert_eq!(info.checksum, Some((alg, value.to_string())));
            assert_eq!(s3.head_object("bkt", "k")?.checksum, Some((alg, value.to_string())));
        }
        s3.delete_object("bkt", "k").await?;
        let opts = PutOptions {
            checksum: Some(ChecksumRequest {
                algorithm: alg,
                expected_b64: Some("AAAAAA==".into()),
            }),
            ..PutOptions::default()
        };
        assert!(matches!(
            s3.put_object("bkt", "k", body(b"hello world"), opts).await,
            Err(Error::BadDigest { .. })
        ));
        assert!(matches!(s3.head_object("bkt", "k"), Err(Error::NoSuchKey { .. })));
    }
    // Content-MD5.
    let good = PutOptions {
        content_md5: Some("XrY7u+Ae7tCTyyK7j1rNww==".into()),
        ..PutOptions::default()
    };
    s3.put_object("bkt", "md5", body(b"hello world"), good).await?;
    let bad = PutOptions {
        content_md5: Some("1B2M2Y8AsgTpgAmY7PhCfg==".into()),
        ..PutOptions::default()
    };
    assert!(matches!(
        s3.put_object("bkt", "md5", body(b"hello world!"), bad).await,
        Err(Error::BadDigest { .. })
    ));
    assert_eq!(get(s3, "bkt", "md5").await?, b"hello world");
    let malformed = PutOptions {
        content_md5: Some("nope".into()),
        ..PutOptions::default()
    };
    assert!(matches!(
        s3.put_object("bkt", "md5", body(b"x"), malformed).await,
        Err(Error::InvalidDigest { .. })
    ));
    // A body stream that fails stores nothing.
    let failing = futures_util::stream::iter(vec![
        Ok(Bytes::from_static(b"abc")),
        Err(std::io::Error::other("client went away")),
    ]);
    assert!(matches!(
        s3.put_object("bkt", "broken", failing, PutOptions::default()).await,
        Err(Error::IncompleteBody(_))
    ));
    // Nothing was left behind by the failures: one blob (md5), empty tmp/.
    assert_eq!(env.blob_count(), 1);
    assert!(!env.files().iter().any(|f| f.starts_with("s3/tmp")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_tags() -> R {
    for inline_max in MODES {
        object_tags_in(inline_max)
            .await
            .map_err(|e| format!("inline_max {inline_max}: {e}"))?;
    }
    Ok(())
}

async fn object_tags_in(inline_max: u64) -> R {
    let env = Env::with_inline(inline_max)?;
    let s3 = env.s3();
    s3.create_bucket("1", "r", "bkt").await?;
    put(s3, "bkt", "k", b"v").await?;
    assert!(s3.get_object_tags("bkt", "k")?.is_empty());
    let ten: BTreeMap<String, String> = (0..10).map(|i| (format!("k{i}"), "v".repeat(256))).collect();
    s3.put_object_tags("bkt", "k", ten.clone()).await?;
    assert_eq!(s3.get_object_tags("bkt", "k")?, ten);
    assert_eq!(s3.head_object("bkt", "k")?.tag_count, 10);
    let mut eleven = ten.clone();
    eleven.insert("k10".into(), String::new());
    assert!(matches!(
        s3.put_object_tags("bkt", "k", eleven.clone()).await,
        Err(Error::InvalidTag(_))
    ));
    let long_key = BTreeMap::from([("k".repeat(129), String::new())]);
    assert!(matches!(
        s3.put_object_tags("bkt", "k", long_key).await,
        Err(Error::InvalidTag(_))
    ));
    let long_value = BTreeMap::from([("k".into(), "v".repeat(257))]);
    assert!(matches!(
        s3.put_object_tags("bkt", "k", long_value).await,
        Err(Error::InvalidTag(_))
    ));
    let opts = PutOptions {
        tags: eleven,
        ..PutOptions::default()
    };
    assert!(matches!(
        s3.put_object("bkt", "k2", body(b"x"), opts).await,
        Err(Error::InvalidTag(_))
    ));
    assert_eq!(s3.get_object_tags("bkt", "k")?, ten);
    s3.delete_object_tags("bkt", "k").await?;
    assert!(s3.get_object_tags("bkt", "k")?.is_empty());
    assert!(matches!(s3.get_object_tags("bkt", "zz"), Err(Error::NoSuchKey { .. })));
    assert!(matches!(
        s3.put_object_tags("bkt", "zz", BTreeMap::new()).await,
        Err(Error::NoSuchKey { .. })
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_happy_path() -> R {
    for inline_max in MODES {
        multipart_happy_path_in(inline_max)
            .await
            .map_err(|e| format!("inline_max {inline_max}: {e}"))?;
    }
    Ok(())
}

async fn multipart_happy_path_in(inline_max: u64) -> R {
    let mut env = Env::with_inline(inline_max)?;
    env.s3().create_bucket("1", "r", "bkt").await?;
    let opts = PutOptions {
        content_type: Some("video/mp4".into()),
        tags: BTreeMap::from([("a".into(), "b".into())]),
        ..PutOptions::default()
    };
    let id = env.s3().create_multipart("bkt", "big", opts).await?;
    let p1: Vec<u8> = vec![1; 20];
    let p2: Vec<u8> = vec![2; 30];
    let p3: Vec<u8> = vec![3; 5];
    let i3 = env.s3().upload_part("bkt", "big", &id, 3, body(&p3), None).await?;
    let i1 = env
        .s3()
        .upload_part("bkt", "big", &id, 1, body(b"replaced later"), None)
        .await?;
    assert_eq!(i1.etag, md5_hex(b"replaced later"));
    let i1 = env.s3().upload_part("bkt", "big", &id, 1, body(&p1), None).await?;
    assert_eq!(i1.etag, md5_hex(&p1));
    assert_eq!(i1.size, 20);
    // Part 2 from an existing object via UploadPartCopy.
    let mut src = vec![0u8; 10];
    src.extend_from_slice(&p2);
    put(env.s3(), "bkt", "src", &src).await?;
    let i2 = env
        .s3()
        .upload_part_copy("bkt", "big", &id, 2, "bkt", "src", Some(ByteRange::From(10)))
        .await?;
    assert_eq!(i2.etag, md5_hex(&p2));
    // An extra part not listed in the completion is dropped.
    env.s3()
        .upload_part("bkt", "big", &id, 9, body(b"unused"), None)
        .await?;

    let (parts, more) = env.s3().list_parts("bkt", "big", &id, None, 2)?;
    assert!(more);
    assert_eq!(parts.iter().map(|p| p.part_number).collect::<Vec<_>>(), vec![1, 2]);
    let (parts, more) = env.s3().list_parts("bkt", "big", &id, Some(2), 10)?;
    assert!(!more);
    assert_eq!(parts.iter().map(|p| p.part_number).collect::<Vec<_>>(), vec![3, 9]);
    let (ups, more) = env.s3().list_multipart_uploads("bkt", "", None, None, 10)?;
    assert!(!more);
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].upload_id, id);

    // Parts survive a reopen.
    env.reopen()?;
    let s3 = env.s3();
    let info = s3
        .complete_multipart(
            "bkt",
            "big",
            &id,
            vec![
                (1, format!("\"{}\"", i1.etag)),
                (2, i2.etag.clone()),
                (3, i3.etag.clone()),
            ],
        )
        .await?;
    let mut digests = Vec::new();
    for p in [&p1, &p2, &p3] {
        use md5::Digest;
        digests.extend_from_slice(&md5::Md5::digest(p));
    }
    assert_eq!(info.etag, format!("{}-3", md5_hex(&digests)));
    assert_eq!(info.size, 55);
    assert_eq!(info.parts_count, Some(3));
    assert_eq!(info.tag_count, 1);
    assert_eq!(info.headers.content_type.as_deref(), Some("video/mp4"));
    let mut all = p1.clone();
    all.extend_from_slice(&p2);
    all.extend_from_slice(&p3);
    assert_eq!(get(s3, "bkt", "big").await?, all);
    // The upload and its part blobs are gone: blobs left = "src" and "big".
    assert!(s3.list_multipart_uploads("bkt", "", None, None, 10)?.0.is_empty());
    assert!(matches!(
        s3.list_parts("bkt", "big", &id, None, 10),
        Err(Error::NoSuchUpload { .. })
    ));
    assert_eq!(env.blob_count(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_errors() -> R {
    for inline_max in MODES {
        multipart_errors_in(inline_max)
            .await
            .map_err(|e| format!("inline_max {inline_max}: {e}"))?;
    }
    Ok(())
}

async fn multipart_errors_in(inline_max: u64) -> R {
    let env = Env::with_inline(inline_max)?;
    let s3 = env.s3();
    s3.create_bucket("1", "r", "bkt").await?;
    assert!(matches!(
        s3.create_multipart("nob", "k", PutOptions::default()).await,
        Err(Error::NoSuchBucket { .. })
    ));
    let id = s3.create_multipart("bkt", "k", PutOptions::default()).await?;
    for n in [0, 10_001] {
        assert!(matches!(
            s3.upload_part("bkt", "k", &id, n, body(b"x"), None).await,
            Err(Error::InvalidArgument(_))
        ));
    }
    assert!(matches!(
        s3.upload_part("bkt", "k", "nope", 1, body(b"x"), None).await,
        Err(Error::NoSuchUpload { .. })
    ));
    assert!(matches!(
        s3.upload_part("bkt", "other-key", &id, 1, body(b"x"), None).await,
        Err(Error::NoSuchUpload { .. })
    ));
    let big = vec![7u8; MIN_PART as usize];
    let e1 = s3.upload_part("bkt", "k", &id, 1, body(b"small"), None).await?.etag;
    let e2 = s3.upload_part("bkt", "k", &id, 2, body(&big), None).await?.etag;
    let e3 = s3.upload_part("bkt", "k", &id, 3, body(b"last"), None).await?.etag;
    let bad_checksum = ChecksumRequest {
        algorithm: ChecksumAlgorithm::Crc32,
        expected_b64: Some("AAAAAA==".into()),
    };
    assert!(matches!(
        s3.upload_part("bkt", "k", &id, 4, body(b"x"), Some(bad_checksum)).await,
        Err(Error::BadDigest { .. })
    ));
    assert!(matches!(
        s3.complete_multipart("bkt", "k", &id, vec![(2, e2.clone()), (1, e1.clone())])
            .await,
        Err(Error::InvalidPartOrder)
    ));
    assert!(matches!(
        s3.complete_multipart("bkt", "k", &id, vec![(2, e2.clone()), (2, e2.clone())])
            .await,
        Err(Error::InvalidPartOrder)
    ));
    assert!(matches!(
        s3.complete_multipart("bkt", "k", &id, vec![(2, e2.clone()), (5, e3.clone())])
            .await,
        Err(Error::InvalidPart { part_number: 5, .. })
    ));
    assert!(matches!(
        s3.complete_multipart("bkt", "k", &id, vec![(2, e2.clone()), (3, e2.clone())])
            .await,
        Err(Error::InvalidPart { part_number: 3, .. })
    ));
    assert!(matches!(
        s3.complete_multipart("bkt", "k", &id, vec![(1, e1.clone()), (2, e2.clone())])
            .await,
        Err(Error::EntityTooSmall { part_number: 1, .. })
    ));
    assert!(matches!(
        s3.complete_multipart("bkt", "k", &id, Vec::new()).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        s3.complete_multipart("bkt", "k", "nope", vec![(1, e1.clone())]).await,
        Err(Error::NoSuchUpload { .. })
    ));
    // The last part may be small; a single small part is fine.
    let info = s3
        .complete_multipart("bkt", "k", &id, vec![(2, e2.clone()), (3, e3.clone())])
        .await?;
    assert_eq!(info.size, MIN_PART + 4);
    assert!(matches!(
        s3.complete_multipart("bkt", "k", &id, vec![(2, e2.clone())]).await,
        Err(Error::NoSuchUpload { .. })
    ));
    // Abort.
    let id2 = s3.create_multipart("bkt", "k2", PutOptions::default()).await?;
    s3.upload_part("bkt", "k2", &id2, 1, body(b"p"), None).await?;
    s3.abort_multipart("bkt", "k2", &id2).await?;
    assert!(matches!(
        s3.abort_multipart("bkt", "k2", &id2).await,
        Err(Error::NoSuchUpload { .. })
    ));
    assert!(matches!(
        s3.upload_part("bkt", "k2", &id2, 1, body(b"p"), None).await,
        Err(Error::NoSuchUpload { .. })
    ));
    assert!(matches!(s3.head_object("bkt", "k2"), Err(Error::NoSuchKey { .. })));
    // Only the completed object's blob remains.
    assert_eq!(env.blob_count(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_listing_markers() -> R {
    for inline_max in MODES {
        multipart_upload_listing_markers_in(inline_max)
            .await
            .map_err(|e| format!("inline_max {inline_max}: {e}"))?;
    }
    Ok(())
}

async fn multipart_upload_listing_markers_in(inline_max: u64) -> R {
    let env = Env::with_inline(inline_max)?;
    let s3 = env.s3();
    s3.create_bucket("1", "r", "bkt").await?;
    let mut ids = Vec::new();
    for key in ["a", "a", "b", "c/d"] {
        env.clock.advance(1);
        ids.push((key, s3.create_multipart("bkt", key, PutOptions::default()).await?));
    }
    let (all, more) = s3.list_multipart_uploads("bkt", "", None, None, 10)?;
    assert!(!more);
    let got: Vec<(&str, &str)> = all.iter().map(|u| (u.key.as_str(), u.upload_id.as_str())).collect();
    let want: Vec<(&str, &str)> = ids.iter().map(|(k, i)| (*k, i.as_str())).collect();
    assert_eq!(got, want);
    let (page, more) = s3.list_multipart_uploads("bkt", "", Some("a"), Some(&ids[0].1), 1)?;
    assert!(more);
    assert_eq!(page[0].upload_id, ids[1].1);
    let (page, _) = s3.list_multipart_uploads("bkt", "", Some("a"), None, 10)?;
    assert_eq!(
        page.iter().map(|u| u.key.as_str()).collect::<Vec<_>>(),
        vec!["b", "c/d"]
    );
    let (page, _) = s3.list_multipart_uploads("bkt", "c/", None, None, 10)?;
    assert_eq!(page.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_outbox_survives_reopen() -> R {
    for inline_max in MODES {
        event_outbox_survives_reopen_in(inline_max)
            .await
            .map_err(|e| format!("inline_max {inline_max}: {e}"))?;
    }
    Ok(())
}

async fn event_outbox_survives_reopen_in(inline_max: u64) -> R {
    let mut env = Env::with_inline(inline_max)?;
    env.s3().create_bucket("1", "r", "bkt").await?;
    let put_info = put(env.s3(), "bkt", "a", b"hello").await?;
    env.s3().copy_object("bkt", "a", "bkt", "b", None).await?;
    let id = env.s3().create_multipart("bkt", "m", PutOptions::default()).await?;
    let e = env.s3().upload_part("bkt", "m", &id, 1, body(b"x"), None).await?.etag;
    let mp = env.s3().complete_multipart("bkt", "m", &id, vec![(1, e)]).await?;
    env.s3().delete_object("bkt", "a").await?;
    env.s3().delete_object("bkt", "never-existed").await?;

    env.reopen()?;
    let events = env.s3().pending_events(100)?;
    let names: Vec<(&str, &str)> = events.iter().map(|e| (e.event_name.as_str(), e.key.as_str())).collect();
    assert_eq!(
        names,
        vec![
            ("ObjectCreated:Put", "a"),
            ("ObjectCreated:Copy", "b"),
            ("ObjectCreated:CompleteMultipartUpload", "m"),
            ("ObjectRemoved:Delete", "a"),
        ]
    );
    assert_eq!(events[0].size, 5);
    assert_eq!(events[0].etag, put_info.etag);
    assert_eq!(events[2].etag, mp.etag);
    assert_eq!(events[0].bucket, "bkt");
    assert_eq!(events[0].time_ms, 1_700_000_000_000);
    for w in events.windows(2) {
        assert!(w[0].seq < w[1].seq);
        assert!(w[0].sequencer < w[1].sequencer);
    }
    assert_eq!(env.s3().pending_events(2)?.len(), 2);
    env.s3().ack_events(events[1].seq).await?;
    assert_eq!(env.s3().pending_events(100)?, events[2..].to_vec());
    let last = events[3].seq;
    env.s3().ack_events(last).await?;
    assert!(env.s3().pending_events(100)?.is_empty());
    // Sequence numbers are never reused, even after everything was acknowledged.
    env.reopen()?;
    put(env.s3(), "bkt", "c", b"").await?;
    let after = env.s3().pending_events(10)?;
    assert_eq!(after.len(), 1);
    assert!(after[0].seq > last);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_share_commits_and_keep_the_last_blob() -> R {
    for inline_max in MODES {
        concurrent_puts_share_commits_and_keep_the_last_blob_in(inline_max)
            .await
            .map_err(|e| format!("inline_max {inline_max}: {e}"))?;
    }
    Ok(())
}

async fn concurrent_puts_share_commits_and_keep_the_last_blob_in(inline_max: u64) -> R {
    let env = Env::with_inline(inline_max)?;
    let s3 = env.s3();
    s3.create_bucket("1", "r", "bkt").await?;
    let puts = (0..32).map(|i| {
        let key = format!("k{}", i % 4);
        async move { put(s3, "bkt", &key, format!("{i}").as_bytes()).await }
    });
    futures_util::future::try_join_all(puts).await?;
    // Exactly one blob per key survives the overwrites.
    assert_eq!(env.blob_count(), 4);
    assert_eq!(s3.list_objects("bkt", "", None, None, 100)?.objects.len(), 4);
    for i in 0..4 {
        let key = format!("k{i}");
        let data = get(s3, "bkt", &key).await?;
        assert_eq!(s3.head_object("bkt", &key)?.etag, md5_hex(&data));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_deletes_tmp_and_orphaned_blobs() -> R {
    for inline_max in MODES {
        recovery_deletes_tmp_and_orphaned_blobs_in(inline_max)
            .await
            .map_err(|e| format!("inline_max {inline_max}: {e}"))?;
    }
    Ok(())
}

async fn recovery_deletes_tmp_and_orphaned_blobs_in(inline_max: u64) -> R {
    let mut env = Env::with_inline(inline_max)?;
    env.s3().create_bucket("1", "r", "bkt").await?;
    put(env.s3(), "bkt", "keep", b"data").await?;
    env.close();
    // Simulate crashes: a half-written tmp file, and a published blob whose metadata
    // commit never happened (its orphan row is there).
    let root = env.root();
    std::fs::write(root.join("tmp").join("0123456789abcdef0123456789abcdef"), b"partial")?;
    let orphan = "fedcba9876543210fedcba9876543210";
    std::fs::write(root.join("blobs").join("fe").join(orphan), b"lost")?;
    {
        let meta = MetaStore::open(&env.dir.path().join("meta.redb"))?;
        meta.write(vec![kd_storage::MetaOp::Put {
            table: "s3_orphans".into(),
            key: orphan.into(),
            value: b"{\"version\":1,\"since_ms\":0}".to_vec(),
        }])?;
    }
    env.reopen()?;
    let files = env.files();
    assert!(!files.iter().any(|f| f.starts_with("s3/tmp")), "{files:?}");
    assert!(!files.iter().any(|f| f.ends_with(orphan)), "{files:?}");
    assert_eq!(env.blob_count(), 1);
    assert_eq!(get(env.s3(), "bkt", "keep").await?, b"data");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_deletes_everything() -> R {
    for inline_max in MODES {
        reset_deletes_everything_in(inline_max)
            .await
            .map_err(|e| format!("inline_max {inline_max}: {e}"))?;
    }
    Ok(())
}

async fn reset_deletes_everything_in(inline_max: u64) -> R {
    let env = Env::with_inline(inline_max)?;
    let s3 = env.s3();
    s3.create_bucket("1", "r", "bkt").await?;
    put(s3, "bkt", "a", b"1").await?;
    let id = s3.create_multipart("bkt", "m", PutOptions::default()).await?;
    s3.upload_part("bkt", "m", &id, 1, body(b"p"), None).await?;
    s3.reset().await?;
    assert!(s3.list_buckets("1")?.is_empty());
    assert!(s3.pending_events(10)?.is_empty());
    assert_eq!(env.blob_count(), 0);
    s3.create_bucket("1", "r", "bkt").await?;
    assert!(s3.list_objects("bkt", "", None, None, 10)?.objects.is_empty());
    put(s3, "bkt", "a", b"2").await?;
    assert_eq!(get(s3, "bkt", "a").await?, b"2");
    Ok(())
}

// ------------------------------------------------------------------ inline bodies

const T: usize = DEFAULT_INLINE_MAX as usize;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

impl Env {
    /// The `s3_orphans` rows, once the fire-and-forget deletions queued by earlier calls
    /// have committed (waits up to 2 s for the set to become empty).
    async fn orphan_rows(&self) -> R<Vec<String>> {
        let meta = self.meta.as_ref().ok_or("engine closed")?;
        let mut rows = Vec::new();
        for _ in 0..200 {
            rows = meta
                .scan_prefix("s3_orphans", "")?
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            if rows.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok(rows)
    }

    /// Asserts exactly `inline` inline rows and `files` blob files, no orphan rows and an
    /// empty `tmp/`: nothing stray.
    async fn assert_stored(&self, inline: usize, files: usize) -> R {
        let rows = self.inline_rows()?;
        let blobs = self.blob_files();
        assert_eq!(rows.len(), inline, "inline rows {rows:?}");
        assert_eq!(blobs.len(), files, "blob files {blobs:?}");
        assert!(
            rows.keys().all(|k| !blobs.contains(k)),
            "a body is both inline and a file"
        );
        assert!(
            !self.files().iter().any(|f| f.starts_with("s3/tmp")),
            "{:?}",
            self.files()
        );
        assert_eq!(self.orphan_rows().await?, Vec::<String>::new());
        Ok(())
    }
}

async fn check_threshold_objects(env: &Env, cases: &[(&str, usize)]) -> R {
    let s3 = env.s3();
    let page = s3.list_objects("bkt", "", None, None, 100)?;
    assert_eq!(page.objects.len(), cases.len() + 2);
    for (i, (key, len)) in cases.iter().enumerate() {
        let bytes = data(*len, i as u8);
        assert_eq!(get(s3, "bkt", key).await?, bytes, "{key}");
        let head = s3.head_object("bkt", key)?;
        assert_eq!((head.size, head.etag), (*len as u64, md5_hex(&bytes)));
        let listed = page.objects.iter().find(|o| o.key == *key).ok_or("not listed")?;
        assert_eq!(listed.size, *len as u64);
    }
    assert_eq!(get(s3, "bkt", "chunk-over").await?, data(T + 1, 9));
    assert_eq!(get(s3, "bkt", "chunk-exact").await?, data(T, 9));
    Ok(())
}

/// Sizes either side of the threshold round-trip, are stored inline or as a file as
/// expected, list without their bytes and survive a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_threshold_round_trips_and_survives_reopen() -> R {
    let mut env = Env::new()?;
    env.s3().create_bucket("1", "r", "bkt").await?;
    let cases = [
        ("empty", 0usize),
        ("one", 1),
        ("exact", T),
        ("over", T + 1),
        ("big", 5 * T),
    ];
    for (i, (key, len)) in cases.iter().enumerate() {
        let bytes = data(*len, i as u8);
        let info = put(env.s3(), "bkt", key, &bytes).await?;
        assert_eq!(info.size, *len as u64);
        assert_eq!(info.etag, md5_hex(&bytes));
    }
    // T + 1 bytes in one chunk spills too; T bytes in one chunk stays inline.
    let one_chunk = |n: usize| futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from(data(n, 9)))]);
    let opts = || PutOptions {
        checksum: Some(ChecksumRequest {
            algorithm: ChecksumAlgorithm::Crc32c,
            expected_b64: None,
        }),
        ..PutOptions::default()
    };
    let a = env
        .s3()
        .put_object("bkt", "chunk-over", one_chunk(T + 1), opts())
        .await?;
    let b = env.s3().put_object("bkt", "chunk-exact", one_chunk(T), opts()).await?;
    assert!(a.checksum.is_some() && b.checksum.is_some());
    // Inline: empty, one, exact, chunk-exact. Files: over, big, chunk-over.
    env.assert_stored(4, 3).await?;
    let sizes: BTreeSet<usize> = env.inline_rows()?.values().copied().collect();
    assert_eq!(sizes, BTreeSet::from([0, 1, T]));
    check_threshold_objects(&env, &cases).await?;
    env.reopen()?;
    check_threshold_objects(&env, &cases).await?;
    env.assert_stored(4, 3).await?;
    // Bodies written inline stay readable when inline storage is turned off.
    env.inline_max = 0;
    env.reopen()?;
    check_threshold_objects(&env, &cases).await?;
    put(env.s3(), "bkt", "tiny-file", b"x").await?;
    env.assert_stored(4, 4).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_ranges() -> R {
    // A limit above the 256 KiB read chunk, to see an inline body come in several chunks.
    let env = Env::with_inline(600_000)?;
    let s3 = env.s3();
    s3.create_bucket("1", "r", "bkt").await?;
    let small = data(100, 1);
    put(s3, "bkt", "small", &small).await?;
    let large = data(500_000, 2);
    put(s3, "bkt", "large", &large).await?;
    put(s3, "bkt", "empty", b"").await?;
    env.assert_stored(3, 0).await?;
    for (range, want) in [
        (ByteRange::FromTo(0, 0), (0, 0)),
        (ByteRange::FromTo(10, 19), (10, 19)),
        (ByteRange::FromTo(90, 1000), (90, 99)),
        (ByteRange::From(42), (42, 99)),
        (ByteRange::Suffix(7), (93, 99)),
        (ByteRange::Suffix(1000), (0, 99)),
    ] {
        let (_, resolved, stream) = s3.get_object("bkt", "small", Some(range)).await?;
        assert_eq!(resolved, Some(want), "{range:?}");
        assert_eq!(
            collect(stream).await?,
            small[want.0 as usize..=want.1 as usize],
            "{range:?}"
        );
    }
    for range in [ByteRange::From(100), ByteRange::FromTo(100, 200), ByteRange::Suffix(0)] {
        let r = s3.get_object("bkt", "small", Some(range)).await;
        assert!(matches!(r, Err(Error::InvalidRange { size: 100 })), "{range:?}");
    }
    let r = s3.get_object("bkt", "empty", Some(ByteRange::From(0))).await;
    assert!(matches!(r, Err(Error::InvalidRange { size: 0 })));
    let (_, _, s) = s3.get_object("bkt", "empty", None).await?;
    assert!(collect(s).await?.is_empty());
    // The large inline body: several chunks of at most 256 KiB, whole and ranged.
    let (_, _, mut s) = s3.get_object("bkt", "large", None).await?;
    let mut chunks = Vec::new();
    while let Some(c) = s.next().await {
        chunks.push(c?);
    }
    assert!(chunks.len() >= 2, "{} chunks", chunks.len());
    assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= 256 * 1024));
    assert_eq!(chunks.concat(), large);
    let (_, _, s) = s3
        .get_object("bkt", "large", Some(ByteRange::FromTo(100_000, 399_999)))
        .await?;
    assert_eq!(collect(s).await?, large[100_000..400_000]);
    Ok(())
}

/// Copies inline → inline, file → file, and over destinations of the other kind; a
/// reopen without inline storage copies inline sources into files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_copies() -> R {
    let mut env = Env::new()?;
    let small = data(T, 3);
    let big = data(T + 1, 4);
    {
        let s3 = env.s3();
        s3.create_bucket("1", "r", "bkt").await?;
        s3.create_bucket("1", "r", "other").await?;
        let src_small = put(s3, "bkt", "small", &small).await?;
        put(s3, "bkt", "big", &big).await?;
        env.assert_stored(1, 1).await?;
        // inline → new inline object, in another bucket
        let c = s3.copy_object("bkt", "small", "other", "small-copy", None).await?;
        assert_eq!(c.etag, src_small.etag);
        // file → new file object
        s3.copy_object("bkt", "big", "other", "big-copy", None).await?;
        env.assert_stored(2, 2).await?;
        // inline source over a file destination, file source over an inline destination
        s3.copy_object("bkt", "small", "other", "big-copy", None).await?;
        s3.copy_object("bkt", "big", "other", "small-copy", None).await?;
        env.assert_stored(2, 2).await?;
        assert_eq!(get(s3, "other", "big-copy").await?, small);
        assert_eq!(get(s3, "other", "small-copy").await?, big);
        // inline over inline (same key, REPLACE): the old row goes
        let before = env.inline_rows()?;
        let opts = PutOptions {
            content_type: Some("text/plain".into()),
            ..PutOptions::default()
        };
        s3.copy_object("bkt", "small", "bkt", "small", Some(opts)).await?;
        let after = env.inline_rows()?;
        assert_eq!(after.len(), 2);
        assert_ne!(before, after);
        assert_eq!(get(s3, "bkt", "small").await?, small);
        assert_eq!(
            s3.head_object("bkt", "small")?.headers.content_type.as_deref(),
            Some("text/plain")
        );
        env.assert_stored(2, 2).await?;
    }
    // The same bytes under a limit of 0: an inline source copies into a file, and
    // replacing inline objects by files drops their rows.
    env.inline_max = 0;
    env.reopen()?;
    let s3 = env.s3();
    s3.copy_object("bkt", "small", "other", "from-inline", None).await?;
    assert_eq!(get(s3, "other", "from-inline").await?, small);
    env.assert_stored(2, 3).await?;
    s3.copy_object("other", "from-inline", "bkt", "small", Some(PutOptions::default()))
        .await?;
    s3.copy_object("bkt", "big", "other", "big-copy", None).await?;
    env.assert_stored(0, 5).await?;
    assert_eq!(get(s3, "bkt", "small").await?, small);
    assert_eq!(get(s3, "other", "big-copy").await?, big);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_overwrite_and_delete_leave_nothing_stray() -> R {
    let env = Env::new()?;
    let s3 = env.s3();
    s3.create_bucket("1", "r", "bkt").await?;
    put(s3, "bkt", "k", &data(10, 1)).await?;
    env.assert_stored(1, 0).await?;
    let first_row = env.inline_rows()?;
    // inline by inline: a new row replaces the old one
    put(s3, "bkt", "k", &data(20, 2)).await?;
    env.assert_stored(1, 0).await?;
    assert_ne!(env.inline_rows()?, first_row);
    // inline by file
    put(s3, "bkt", "k", &data(T + 1, 3)).await?;
    env.assert_stored(0, 1).await?;
    assert_eq!(get(s3, "bkt", "k").await?, data(T + 1, 3));
    // file by inline
    put(s3, "bkt", "k", &data(T, 4)).await?;
    env.assert_stored(1, 0).await?;
    assert_eq!(get(s3, "bkt", "k").await?, data(T, 4));
    // delete an inline object
    put(s3, "bkt", "other", b"x").await?;
    env.assert_stored(2, 0).await?;
    s3.delete_object("bkt", "k").await?;
    env.assert_stored(1, 0).await?;
    assert!(matches!(
        s3.get_object("bkt", "k", None).await,
        Err(Error::NoSuchKey { .. })
    ));
    // A refused conditional write and a bad digest store nothing.
    let r = s3
        .put_object_if(
            "bkt",
            "other",
            body(b"y"),
            PutOptions::default(),
            Some(kd_objects::WriteCondition::NotExists),
        )
        .await?;
    assert!(r.is_err());
    let bad = PutOptions {
        content_md5: Some("AAAAAAAAAAAAAAAAAAAAAA==".into()),
        ..PutOptions::default()
    };
    assert!(s3.put_object("bkt", "bad", body(b"zz"), bad).await.is_err());
    env.assert_stored(1, 0).await?;
    s3.delete_object("bkt", "other").await?;
    env.assert_stored(0, 0).await?;
    // The outbox saw every write and removal, as for files.
    let names: Vec<String> = s3.pending_events(100)?.into_iter().map(|e| e.event_name).collect();
    assert_eq!(names.iter().filter(|n| n.as_str() == "ObjectCreated:Put").count(), 5);
    assert_eq!(names.iter().filter(|n| n.as_str() == "ObjectRemoved:Delete").count(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_multipart_parts_and_copy_sources() -> R {
    let mut env = Env::new()?;
    let src = data(100, 5);
    let big = data(T + 1, 6);
    let tail = data(30, 7);
    let expected = [&src[10..60], &big[..], &tail[..]].concat();
    let id = {
        let s3 = env.s3();
        s3.create_bucket("1", "r", "bkt").await?;
        put(s3, "bkt", "src", &src).await?;
        let id = s3.create_multipart("bkt", "mp", PutOptions::default()).await?;
        // Part 1 copied from a range of an inline object (an inline part), part 2 a file,
        // part 3 inline; part 3 first uploaded with other bytes and replaced.
        s3.upload_part_copy("bkt", "mp", &id, 1, "bkt", "src", Some(ByteRange::FromTo(10, 59)))
            .await?;
        s3.upload_part("bkt", "mp", &id, 2, body(&big), None).await?;
        s3.upload_part("bkt", "mp", &id, 3, body(b"replaced later"), None)
            .await?;
        s3.upload_part("bkt", "mp", &id, 3, body(&tail), None).await?;
        // src, part 1, part 3 inline; part 2 a file.
        env.assert_stored(3, 1).await?;
        id
    };
    // Parts (inline ones included) survive a reopen.
    env.reopen()?;
    let s3 = env.s3();
    let (parts, _) = s3.list_parts("bkt", "mp", &id, None, 10)?;
    assert_eq!(
        parts.iter().map(|p| p.size).collect::<Vec<_>>(),
        vec![50, T as u64 + 1, 30]
    );
    let list: Vec<(u32, String)> = parts.iter().map(|p| (p.part_number, p.etag.clone())).collect();
    let info = s3.complete_multipart("bkt", "mp", &id, list).await?;
    assert!(info.etag.ends_with("-3"), "{}", info.etag);
    assert_eq!(get(s3, "bkt", "mp").await?, expected);
    // The parts are gone: src inline, the completed object a file.
    env.assert_stored(1, 1).await?;

    // A small upload completes into an inline object; an aborted one leaves nothing.
    let id = s3.create_multipart("bkt", "small-mp", PutOptions::default()).await?;
    let p1 = s3
        .upload_part_copy("bkt", "small-mp", &id, 1, "bkt", "src", None)
        .await?;
    let p2 = s3.upload_part("bkt", "small-mp", &id, 2, body(b"end"), None).await?;
    env.assert_stored(3, 1).await?;
    s3.complete_multipart("bkt", "small-mp", &id, vec![(1, p1.etag), (2, p2.etag)])
        .await?;
    assert_eq!(get(s3, "bkt", "small-mp").await?, [&src[..], b"end"].concat());
    env.assert_stored(2, 1).await?;
    // UploadPartCopy from the (file) multipart object and from the inline one.
    let id = s3.create_multipart("bkt", "aborted", PutOptions::default()).await?;
    s3.upload_part_copy("bkt", "aborted", &id, 1, "bkt", "small-mp", None)
        .await?;
    s3.upload_part_copy("bkt", "aborted", &id, 2, "bkt", "mp", Some(ByteRange::Suffix(20)))
        .await?;
    // Both parts are small, so inline, whatever their source.
    env.assert_stored(4, 1).await?;
    s3.abort_multipart("bkt", "aborted", &id).await?;
    env.assert_stored(2, 1).await?;
    // Copying the multipart object keeps its ETag, inline or not.
    let c = s3.copy_object("bkt", "small-mp", "bkt", "small-mp-copy", None).await?;
    assert_eq!(c.etag, s3.head_object("bkt", "small-mp")?.etag);
    assert_eq!(get(s3, "bkt", "small-mp-copy").await?, [&src[..], b"end"].concat());
    env.assert_stored(3, 1).await?;
    s3.reset().await?;
    env.assert_stored(0, 0).await?;
    Ok(())
}
