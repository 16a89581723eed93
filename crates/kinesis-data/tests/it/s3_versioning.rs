//! S3 bucket versioning through aws-sdk-s3 against the in-process server: version ids,
//! GET/HEAD/DELETE by version, delete markers (codes and headers), ListObjectVersions
//! paging, suspended (null) versions, copies from a version, tagging and DeleteObjects by
//! version, and MFA Delete refusal.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, Delete, MfaDelete, ObjectIdentifier, Tag, Tagging, VersioningConfiguration,
};
use kd_test_support::TestServer;

type R = anyhow::Result<()>;

/// (code, status, x-amz-delete-marker, x-amz-version-id) of a failed call.
fn failure<E: ProvideErrorMetadata + std::fmt::Debug, T: std::fmt::Debug>(
    r: Result<T, SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
) -> (String, u16, Option<String>, Option<String>) {
    let e = match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    };
    let raw = e.raw_response();
    let status = raw.map(|r| r.status().as_u16()).unwrap_or(0);
    let header = |n: &str| raw.and_then(|r| r.headers().get(n)).map(str::to_owned);
    let code = e
        .as_service_error()
        .and_then(|s| s.code())
        .map(str::to_owned)
        .unwrap_or_default();
    (code, status, header("x-amz-delete-marker"), header("x-amz-version-id"))
}

async fn enable(c: &aws_sdk_s3::Client, bucket: &str, status: BucketVersioningStatus) -> R {
    c.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(status).build())
        .send()
        .await?;
    Ok(())
}

async fn put(c: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &str) -> anyhow::Result<Option<String>> {
    Ok(c.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.as_bytes().to_vec()))
        .send()
        .await?
        .version_id)
}

async fn read(c: &aws_sdk_s3::Client, bucket: &str, key: &str, version: Option<&str>) -> anyhow::Result<String> {
    let out = c
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version.map(str::to_owned))
        .send()
        .await?;
    Ok(String::from_utf8(out.body.collect().await?.to_vec())?)
}

#[tokio::test]
async fn versions_get_head_delete_markers() -> R {
    let s = TestServer::start().await?;
    let c = s.s3();
    c.create_bucket().bucket("ver").send().await?;
    let v = c.get_bucket_versioning().bucket("ver").send().await?;
    assert_eq!(v.status, None);
    // Unversioned: no version id.
    assert_eq!(put(&c, "ver", "plain", "p").await?, None);
    enable(&c, "ver", BucketVersioningStatus::Enabled).await?;
    let v = c.get_bucket_versioning().bucket("ver").send().await?;
    assert_eq!(v.status, Some(BucketVersioningStatus::Enabled));

    let v1 = put(&c, "ver", "k", "one").await?.expect("version id");
    let v2 = put(&c, "ver", "k", "two").await?.expect("version id");
    assert_eq!(v1.len(), 32);
    assert_ne!(v1, v2);
    assert_eq!(read(&c, "ver", "k", None).await?, "two");
    assert_eq!(read(&c, "ver", "k", Some(&v1)).await?, "one");
    let got = c.get_object().bucket("ver").key("k").send().await?;
    assert_eq!(got.version_id.as_deref(), Some(v2.as_str()));
    let head = c.head_object().bucket("ver").key("k").version_id(&v1).send().await?;
    assert_eq!(head.version_id.as_deref(), Some(v1.as_str()));
    assert_eq!(head.content_length, Some(3));
    // The pre-versioning object is the null version.
    assert_eq!(read(&c, "ver", "plain", Some("null")).await?, "p");

    let missing = "0123456789abcdef0123456789abcdef";
    let (code, status, _, _) = failure(c.get_object().bucket("ver").key("k").version_id(missing).send().await);
    assert_eq!((code.as_str(), status), ("NoSuchVersion", 404));
    let (code, status, _, _) = failure(c.get_object().bucket("ver").key("k").version_id("bad!").send().await);
    assert_eq!((code.as_str(), status), ("InvalidArgument", 400));

    // DELETE without a version: a delete marker.
    let del = c.delete_object().bucket("ver").key("k").send().await?;
    assert_eq!(del.delete_marker, Some(true));
    let marker = del.version_id.expect("marker version id");
    let (code, status, dm, vid) = failure(c.get_object().bucket("ver").key("k").send().await);
    assert_eq!((code.as_str(), status), ("NoSuchKey", 404));
    assert_eq!(dm.as_deref(), Some("true"));
    assert_eq!(vid.as_deref(), Some(marker.as_str()));
    let (_, status, dm, _) = failure(c.head_object().bucket("ver").key("k").send().await);
    assert_eq!((status, dm.as_deref()), (404, Some("true")));
    let (code, status, dm, vid) = failure(c.get_object().bucket("ver").key("k").version_id(&marker).send().await);
    assert_eq!((code.as_str(), status), ("MethodNotAllowed", 405));
    assert_eq!(dm.as_deref(), Some("true"));
    assert_eq!(vid.as_deref(), Some(marker.as_str()));
    let (_, status, dm, _) = failure(c.head_object().bucket("ver").key("k").version_id(&marker).send().await);
    assert_eq!((status, dm.as_deref()), (405, Some("true")));
    let listed = c.list_objects_v2().bucket("ver").send().await?;
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["plain"]);
    // Old versions are still readable.
    assert_eq!(read(&c, "ver", "k", Some(&v2)).await?, "two");

    // DELETE of the marker by version id restores v2.
    let del = c
        .delete_object()
        .bucket("ver")
        .key("k")
        .version_id(&marker)
        .send()
        .await?;
    assert_eq!(del.delete_marker, Some(true));
    assert_eq!(del.version_id.as_deref(), Some(marker.as_str()));
    assert_eq!(read(&c, "ver", "k", None).await?, "two");
    // Permanently deleting the current version makes v1 current.
    let del = c.delete_object().bucket("ver").key("k").version_id(&v2).send().await?;
    assert_eq!(del.delete_marker, None);
    assert_eq!(read(&c, "ver", "k", None).await?, "one");
    let (code, status, _, _) = failure(c.get_object().bucket("ver").key("k").version_id(&v2).send().await);
    assert_eq!((code.as_str(), status), ("NoSuchVersion", 404));

    // A versioned bucket cannot be deleted while versions remain.
    let (code, status, _, _) = failure(c.delete_bucket().bucket("ver").send().await);
    assert_eq!((code.as_str(), status), ("BucketNotEmpty", 409));

    // MFA Delete is refused clearly.
    let r = c
        .put_bucket_versioning()
        .bucket("ver")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .mfa_delete(MfaDelete::Enabled)
                .build(),
        )
        .send()
        .await;
    let (code, status, _, _) = failure(r);
    assert_eq!((code.as_str(), status), ("NotImplemented", 501));
    Ok(())
}

#[tokio::test]
async fn list_object_versions_pages() -> R {
    let s = TestServer::start().await?;
    let c = s.s3();
    c.create_bucket().bucket("pages").send().await?;
    enable(&c, "pages", BucketVersioningStatus::Enabled).await?;
    let mut ids = Vec::new();
    for key in ["a", "dir/x", "dir/y", "z"] {
        for i in 0..3 {
            ids.push((key, put(&c, "pages", key, &format!("{key}{i}")).await?.expect("id")));
        }
    }
    let marker = c
        .delete_object()
        .bucket("pages")
        .key("z")
        .send()
        .await?
        .version_id
        .expect("id");

    let all = c.list_object_versions().bucket("pages").send().await?;
    assert_eq!(all.is_truncated, Some(false));
    assert_eq!(all.versions().len(), 12);
    assert_eq!(all.delete_markers().len(), 1);
    let dm = &all.delete_markers()[0];
    assert_eq!(
        (dm.key(), dm.version_id(), dm.is_latest()),
        (Some("z"), Some(marker.as_str()), Some(true))
    );
    // Newest first within a key; only the newest object version of "a" is latest.
    let a: Vec<_> = all.versions().iter().filter(|v| v.key() == Some("a")).collect();
    assert_eq!(a[0].version_id(), Some(ids[2].1.as_str()));
    assert_eq!(
        a.iter().map(|v| v.is_latest()).collect::<Vec<_>>(),
        [Some(true), Some(false), Some(false)]
    );
    assert!(
        all.versions()
            .iter()
            .filter(|v| v.key() == Some("z"))
            .all(|v| v.is_latest() == Some(false))
    );

    // Paging with key and version-id markers visits every entry once.
    let mut seen = Vec::new();
    let (mut km, mut vm) = (None::<String>, None::<String>);
    loop {
        let page = c
            .list_object_versions()
            .bucket("pages")
            .max_keys(5)
            .set_key_marker(km.clone())
            .set_version_id_marker(vm.clone())
            .send()
            .await?;
        let n = page.versions().len() + page.delete_markers().len();
        assert!(n <= 5);
        for v in page.versions() {
            seen.push(v.version_id().unwrap_or_default().to_owned());
        }
        for d in page.delete_markers() {
            seen.push(d.version_id().unwrap_or_default().to_owned());
        }
        if page.is_truncated != Some(true) {
            break;
        }
        km = page.next_key_marker;
        vm = page.next_version_id_marker;
        assert!(km.is_some());
    }
    seen.sort();
    let mut want: Vec<String> = ids.iter().map(|(_, v)| v.clone()).chain([marker]).collect();
    want.sort();
    assert_eq!(seen, want);

    // Delimiter and prefix.
    let page = c.list_object_versions().bucket("pages").delimiter("/").send().await?;
    let prefixes: Vec<_> = page.common_prefixes().iter().filter_map(|p| p.prefix()).collect();
    assert_eq!(prefixes, ["dir/"]);
    assert_eq!(page.versions().len(), 6);
    let page = c.list_object_versions().bucket("pages").prefix("dir/y").send().await?;
    assert_eq!(page.versions().len(), 3);
    Ok(())
}

#[tokio::test]
async fn suspended_copy_tagging_and_batch_delete() -> R {
    let s = TestServer::start().await?;
    let c = s.s3();
    c.create_bucket().bucket("sus").send().await?;
    enable(&c, "sus", BucketVersioningStatus::Enabled).await?;
    let v1 = put(&c, "sus", "k", "one").await?.expect("id");
    enable(&c, "sus", BucketVersioningStatus::Suspended).await?;
    let v = c.get_bucket_versioning().bucket("sus").send().await?;
    assert_eq!(v.status, Some(BucketVersioningStatus::Suspended));
    assert_eq!(put(&c, "sus", "k", "two").await?.as_deref(), Some("null"));
    assert_eq!(put(&c, "sus", "k", "three").await?.as_deref(), Some("null"));
    let all = c.list_object_versions().bucket("sus").send().await?;
    let ids: Vec<_> = all.versions().iter().filter_map(|v| v.version_id()).collect();
    assert_eq!(ids, ["null", v1.as_str()]);
    assert_eq!(read(&c, "sus", "k", Some("null")).await?, "three");
    let del = c.delete_object().bucket("sus").key("k").send().await?;
    assert_eq!(
        (del.delete_marker, del.version_id.as_deref()),
        (Some(true), Some("null"))
    );

    // Copy from a specific version (restores it).
    enable(&c, "sus", BucketVersioningStatus::Enabled).await?;
    let copied = c
        .copy_object()
        .bucket("sus")
        .key("k")
        .copy_source(format!("sus/k?versionId={v1}"))
        .send()
        .await?;
    assert_eq!(copied.copy_source_version_id.as_deref(), Some(v1.as_str()));
    let v3 = copied.version_id.expect("new version id");
    assert_ne!(v3, v1);
    assert_eq!(read(&c, "sus", "k", None).await?, "one");

    // Tagging by version.
    let tagging = Tagging::builder()
        .tag_set(Tag::builder().key("t").value("old").build()?)
        .build()?;
    let out = c
        .put_object_tagging()
        .bucket("sus")
        .key("k")
        .version_id(&v1)
        .tagging(tagging)
        .send()
        .await?;
    assert_eq!(out.version_id.as_deref(), Some(v1.as_str()));
    let tags = c
        .get_object_tagging()
        .bucket("sus")
        .key("k")
        .version_id(&v1)
        .send()
        .await?;
    assert_eq!(tags.tag_set().len(), 1);
    assert_eq!(tags.version_id.as_deref(), Some(v1.as_str()));
    let current = c.get_object_tagging().bucket("sus").key("k").send().await?;
    assert!(current.tag_set().is_empty());
    assert_eq!(current.version_id.as_deref(), Some(v3.as_str()));
    c.delete_object_tagging()
        .bucket("sus")
        .key("k")
        .version_id(&v1)
        .send()
        .await?;
    let tags = c
        .get_object_tagging()
        .bucket("sus")
        .key("k")
        .version_id(&v1)
        .send()
        .await?;
    assert!(tags.tag_set().is_empty());

    // DeleteObjects: one marker, one version by id.
    let out = c
        .delete_objects()
        .bucket("sus")
        .delete(
            Delete::builder()
                .objects(ObjectIdentifier::builder().key("k").version_id(&v1).build()?)
                .objects(ObjectIdentifier::builder().key("other").build()?)
                .build()?,
        )
        .send()
        .await?;
    assert!(out.errors().is_empty());
    let by_key = |k: &str| out.deleted().iter().find(|d| d.key() == Some(k)).cloned();
    let d = by_key("k").expect("k deleted");
    assert_eq!(d.version_id(), Some(v1.as_str()));
    let d = by_key("other").expect("other deleted");
    assert_eq!(d.delete_marker(), Some(true));
    assert!(d.delete_marker_version_id().is_some());
    let (code, status, _, _) = failure(c.get_object().bucket("sus").key("k").version_id(&v1).send().await);
    assert_eq!((code.as_str(), status), ("NoSuchVersion", 404));
    Ok(())
}

#[tokio::test]
async fn replication_configuration_needs_versioned_buckets() -> R {
    use aws_sdk_s3::types::{
        DeleteMarkerReplication, DeleteMarkerReplicationStatus, Destination, ReplicationConfiguration, ReplicationRule,
        ReplicationRuleFilter, ReplicationRuleStatus,
    };
    let s = TestServer::start().await?;
    let c = s.s3();
    for b in ["repl-src", "repl-dst"] {
        c.create_bucket().bucket(b).send().await?;
    }
    let cfg = ReplicationConfiguration::builder()
        .role("arn:aws:iam::000000000000:role/replication")
        .rules(
            ReplicationRule::builder()
                .id("all")
                .priority(1)
                .status(ReplicationRuleStatus::Enabled)
                .filter(ReplicationRuleFilter::builder().prefix("").build())
                .delete_marker_replication(
                    DeleteMarkerReplication::builder()
                        .status(DeleteMarkerReplicationStatus::Disabled)
                        .build(),
                )
                .destination(Destination::builder().bucket("arn:aws:s3:::repl-dst").build()?)
                .build()?,
        )
        .build()?;
    let put = |cfg: ReplicationConfiguration| {
        c.put_bucket_replication()
            .bucket("repl-src")
            .replication_configuration(cfg)
            .send()
    };
    let enable = |b: &'static str| {
        c.put_bucket_versioning()
            .bucket(b)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
    };
    let (code, status, _, _) = failure(put(cfg.clone()).await);
    assert_eq!(
        (code.as_str(), status),
        ("InvalidRequest", 400),
        "the source must be versioned"
    );
    enable("repl-src").await?;
    let (code, status, _, _) = failure(put(cfg.clone()).await);
    assert_eq!(
        (code.as_str(), status),
        ("InvalidRequest", 400),
        "the destination must be versioned"
    );
    enable("repl-dst").await?;
    put(cfg).await?;
    let got = c.get_bucket_replication().bucket("repl-src").send().await?;
    let got = got.replication_configuration().expect("configuration");
    assert_eq!(got.role(), "arn:aws:iam::000000000000:role/replication");
    assert_eq!(
        got.rules()[0].destination().map(|d| d.bucket()),
        Some("arn:aws:s3:::repl-dst")
    );
    c.delete_bucket_replication().bucket("repl-src").send().await?;
    let (code, status, _, _) = failure(c.get_bucket_replication().bucket("repl-src").send().await);
    assert_eq!((code.as_str(), status), ("ReplicationConfigurationNotFoundError", 404));
    Ok(())
}
