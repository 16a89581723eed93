//! S3 through aws-sdk-s3 against the in-process server: every operation and error of the S3
//! issue, with S3's codes and statuses.

use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart,
    CreateBucketConfiguration, Delete, EncodingType, Event, FilterRule, FilterRuleName, LambdaFunctionConfiguration,
    MetadataDirective, NotificationConfiguration, NotificationConfigurationFilter, ObjectIdentifier, S3KeyFilter, Tag,
    Tagging,
};
use kd_test_support::{TestServer, raw_http, s3_client};

use crate::common::payload;

type R = anyhow::Result<()>;

fn s3_code<E: ProvideErrorMetadata + std::fmt::Debug>(
    e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> (String, u16) {
    let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    let code = e
        .as_service_error()
        .and_then(|s| s.code())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{e:?}"));
    (code, status)
}

macro_rules! s3_err {
    ($r:expr, $code:expr, $status:expr) => {{
        match $r {
            Ok(v) => panic!("expected {} but got {:?}", $code, v),
            Err(e) => {
                let (code, status) = s3_code(&e);
                assert_eq!((code.as_str(), status), ($code, $status), "{e:?}");
            }
        }
    }};
}

/// Status only (HEAD errors have no body, so no code).
macro_rules! s3_status {
    ($r:expr, $status:expr) => {{
        match $r {
            Ok(v) => panic!("expected status {} but got {:?}", $status, v),
            Err(e) => assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some($status), "{e:?}"),
        }
    }};
}

fn md5_hex(b: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn buckets() -> R {
    let s = TestServer::start().await?;
    let c = s.s3();
    c.create_bucket().bucket("alpha").send().await?;
    s3_err!(
        c.create_bucket().bucket("alpha").send().await,
        "BucketAlreadyOwnedByYou",
        409
    );
    s3_err!(
        c.create_bucket().bucket("Bad_Name").send().await,
        "InvalidBucketName",
        400
    );
    c.head_bucket().bucket("alpha").send().await?;
    s3_status!(c.head_bucket().bucket("nope").send().await, 404);
    let eu = s3_client(&s.endpoint(), "eu-west-1", "test", "test");
    eu.create_bucket()
        .bucket("beta-eu")
        .create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::EuWest1)
                .build(),
        )
        .send()
        .await?;
    let loc = c.get_bucket_location().bucket("beta-eu").send().await?;
    assert_eq!(loc.location_constraint(), Some(&BucketLocationConstraint::EuWest1));
    let loc = c.get_bucket_location().bucket("alpha").send().await?;
    assert!(loc.location_constraint().is_none_or(|l| l.as_str().is_empty()));
    let names: Vec<String> = c
        .list_buckets()
        .send()
        .await?
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect();
    assert_eq!(names, ["alpha", "beta-eu"]);
    c.put_object()
        .bucket("alpha")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await?;
    s3_err!(c.delete_bucket().bucket("alpha").send().await, "BucketNotEmpty", 409);
    c.delete_object().bucket("alpha").key("k").send().await?;
    c.delete_bucket().bucket("alpha").send().await?;
    s3_err!(c.delete_bucket().bucket("alpha").send().await, "NoSuchBucket", 404);
    s3_err!(
        c.put_object()
            .bucket("alpha")
            .key("k")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        "NoSuchBucket",
        404
    );
    s.stop().await
}

#[tokio::test]
async fn objects_headers_ranges_and_conditions() -> R {
    let s = TestServer::start().await?;
    let c = s.s3();
    c.create_bucket().bucket("objs").send().await?;
    let body = payload(7, 10_000);
    let put = c
        .put_object()
        .bucket("objs")
        .key("dir/file.json")
        .body(ByteStream::from(body.clone()))
        .content_type("application/json")
        .content_encoding("identity")
        .content_disposition("attachment; filename=\"f.json\"")
        .cache_control("max-age=60")
        .metadata("colour", "blue")
        .send()
        .await?;
    let etag = format!("\"{}\"", md5_hex(&body));
    assert_eq!(put.e_tag(), Some(etag.as_str()));
    let got = c.get_object().bucket("objs").key("dir/file.json").send().await?;
    assert_eq!(got.e_tag(), Some(etag.as_str()));
    assert_eq!(got.content_type(), Some("application/json"));
    assert_eq!(got.content_disposition(), Some("attachment; filename=\"f.json\""));
    assert_eq!(got.cache_control(), Some("max-age=60"));
    assert_eq!(
        got.metadata().and_then(|m| m.get("colour")).map(String::as_str),
        Some("blue")
    );
    assert_eq!(got.content_length(), Some(10_000));
    assert_eq!(got.body.collect().await?.into_bytes().as_ref(), body.as_slice());
    let head = c.head_object().bucket("objs").key("dir/file.json").send().await?;
    assert_eq!(head.content_length(), Some(10_000));
    let last_modified = head
        .last_modified()
        .copied()
        .ok_or_else(|| anyhow::anyhow!("no last-modified"))?;
    // Ranges.
    let r = c
        .get_object()
        .bucket("objs")
        .key("dir/file.json")
        .range("bytes=100-199")
        .send()
        .await?;
    assert_eq!(r.content_range(), Some("bytes 100-199/10000"));
    assert_eq!(r.body.collect().await?.into_bytes().as_ref(), &body[100..200]);
    let r = c
        .get_object()
        .bucket("objs")
        .key("dir/file.json")
        .range("bytes=-10")
        .send()
        .await?;
    assert_eq!(r.body.collect().await?.into_bytes().as_ref(), &body[9990..]);
    s3_err!(
        c.get_object()
            .bucket("objs")
            .key("dir/file.json")
            .range("bytes=20000-")
            .send()
            .await,
        "InvalidRange",
        416
    );
    // Conditions.
    s3_err!(
        c.get_object()
            .bucket("objs")
            .key("dir/file.json")
            .if_match("\"nope\"")
            .send()
            .await,
        "PreconditionFailed",
        412
    );
    s3_status!(
        c.get_object()
            .bucket("objs")
            .key("dir/file.json")
            .if_none_match(&etag)
            .send()
            .await,
        304
    );
    s3_status!(
        c.get_object()
            .bucket("objs")
            .key("dir/file.json")
            .if_modified_since(last_modified)
            .send()
            .await,
        304
    );
    let earlier = aws_sdk_s3::primitives::DateTime::from_secs(last_modified.secs() - 3600);
    s3_err!(
        c.get_object()
            .bucket("objs")
            .key("dir/file.json")
            .if_unmodified_since(earlier)
            .send()
            .await,
        "PreconditionFailed",
        412
    );
    c.get_object()
        .bucket("objs")
        .key("dir/file.json")
        .if_match(&etag)
        .if_modified_since(earlier)
        .send()
        .await?;
    // Response overrides.
    let o = c
        .get_object()
        .bucket("objs")
        .key("dir/file.json")
        .response_content_type("text/plain")
        .response_cache_control("no-cache")
        .send()
        .await?;
    assert_eq!(o.content_type(), Some("text/plain"));
    assert_eq!(o.cache_control(), Some("no-cache"));
    s3_err!(
        c.get_object().bucket("objs").key("missing").send().await,
        "NoSuchKey",
        404
    );
    s3_status!(c.head_object().bucket("objs").key("missing").send().await, 404);
    // Delete, DeleteObjects.
    for k in ["a", "b", "c"] {
        c.put_object()
            .bucket("objs")
            .key(k)
            .body(ByteStream::from_static(b"1"))
            .send()
            .await?;
    }
    c.delete_object().bucket("objs").key("a").send().await?;
    c.delete_object().bucket("objs").key("never-existed").send().await?;
    let del = Delete::builder()
        .objects(ObjectIdentifier::builder().key("b").build()?)
        .objects(ObjectIdentifier::builder().key("c").build()?)
        .build()?;
    let out = c.delete_objects().bucket("objs").delete(del).send().await?;
    assert_eq!(out.deleted().len(), 2);
    s3_err!(c.head_object().bucket("objs").key("b").send().await, "NotFound", 404);
    s.stop().await
}

#[tokio::test]
async fn copy_object_directives_and_conditions() -> R {
    let s = TestServer::start().await?;
    let c = s.s3();
    c.create_bucket().bucket("src").send().await?;
    c.create_bucket().bucket("dst").send().await?;
    c.put_object()
        .bucket("src")
        .key("a b+c")
        .body(ByteStream::from_static(b"hello"))
        .content_type("text/plain")
        .metadata("m", "1")
        .tagging("t=1")
        .send()
        .await?;
    let out = c
        .copy_object()
        .bucket("dst")
        .key("copy")
        .copy_source("src/a%20b%2Bc")
        .send()
        .await?;
    assert_eq!(
        out.copy_object_result().and_then(|r| r.e_tag()),
        Some(format!("\"{}\"", md5_hex(b"hello")).as_str())
    );
    let h = c.head_object().bucket("dst").key("copy").send().await?;
    assert_eq!(h.content_type(), Some("text/plain"));
    assert_eq!(h.metadata().and_then(|m| m.get("m")).map(String::as_str), Some("1"));
    let tags = c.get_object_tagging().bucket("dst").key("copy").send().await?;
    assert_eq!(tags.tag_set().len(), 1);
    c.copy_object()
        .bucket("dst")
        .key("replaced")
        .copy_source("src/a%20b%2Bc")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("application/x-new")
        .metadata("n", "2")
        .send()
        .await?;
    let h = c.head_object().bucket("dst").key("replaced").send().await?;
    assert_eq!(h.content_type(), Some("application/x-new"));
    assert!(h.metadata().and_then(|m| m.get("m")).is_none());
    s3_err!(
        c.copy_object()
            .bucket("dst")
            .key("x")
            .copy_source("src/a%20b%2Bc")
            .copy_source_if_match("\"bad\"")
            .send()
            .await,
        "PreconditionFailed",
        412
    );
    s3_err!(
        c.copy_object()
            .bucket("src")
            .key("a b+c")
            .copy_source("src/a%20b%2Bc")
            .send()
            .await,
        "InvalidRequest",
        400
    );
    s3_err!(
        c.copy_object()
            .bucket("dst")
            .key("x")
            .copy_source("src/none")
            .send()
            .await,
        "NoSuchKey",
        404
    );
    s.stop().await
}

#[tokio::test]
async fn listing() -> R {
    let s = TestServer::start().await?;
    let c = s.s3();
    c.create_bucket().bucket("list").send().await?;
    let keys = ["a/1", "a/2", "a/b/3", "b/4", "c", "d e", "é/5"];
    for k in keys {
        c.put_object()
            .bucket("list")
            .key(k)
            .body(ByteStream::from_static(b"z"))
            .send()
            .await?;
    }
    let all = c.list_objects_v2().bucket("list").send().await?;
    let got: Vec<&str> = all.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(got, keys);
    assert_eq!(all.key_count(), Some(7));
    let d = c.list_objects_v2().bucket("list").delimiter("/").send().await?;
    let prefixes: Vec<&str> = d.common_prefixes().iter().filter_map(|p| p.prefix()).collect();
    assert_eq!(prefixes, ["a/", "b/", "é/"]);
    let top: Vec<&str> = d.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(top, ["c", "d e"]);
    let p = c
        .list_objects_v2()
        .bucket("list")
        .prefix("a/")
        .delimiter("/")
        .send()
        .await?;
    assert_eq!(
        p.contents().iter().filter_map(|o| o.key()).collect::<Vec<_>>(),
        ["a/1", "a/2"]
    );
    assert_eq!(
        p.common_prefixes()
            .iter()
            .filter_map(|p| p.prefix())
            .collect::<Vec<_>>(),
        ["a/b/"]
    );
    // Paging with continuation tokens.
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .list_objects_v2()
            .bucket("list")
            .max_keys(3)
            .set_continuation_token(token)
            .send()
            .await?;
        seen.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        if page.is_truncated() != Some(true) {
            break;
        }
        token = page.next_continuation_token().map(str::to_owned);
    }
    assert_eq!(seen, keys);
    let sa = c.list_objects_v2().bucket("list").start_after("b/4").send().await?;
    assert_eq!(
        sa.contents().iter().filter_map(|o| o.key()).collect::<Vec<_>>(),
        ["c", "d e", "é/5"]
    );
    let owner = c
        .list_objects_v2()
        .bucket("list")
        .fetch_owner(true)
        .max_keys(1)
        .send()
        .await?;
    assert!(owner.contents()[0].owner().is_some());
    let url = c
        .list_objects_v2()
        .bucket("list")
        .prefix("d")
        .encoding_type(EncodingType::Url)
        .send()
        .await?;
    assert_eq!(
        url.contents().iter().filter_map(|o| o.key()).collect::<Vec<_>>(),
        ["d+e"]
    );
    // v1 with markers.
    let v1 = c.list_objects().bucket("list").max_keys(2).send().await?;
    assert_eq!(v1.contents().len(), 2);
    assert_eq!(v1.is_truncated(), Some(true));
    let v1b = c.list_objects().bucket("list").marker("a/2").send().await?;
    assert_eq!(v1b.contents().iter().filter_map(|o| o.key()).next(), Some("a/b/3"));
    s.stop().await
}

#[tokio::test]
async fn multipart_uploads() -> R {
    let s = TestServer::start_with(|c| c.s3.min_part_size = 1024).await?;
    let c = s.s3();
    c.create_bucket().bucket("mpu").send().await?;
    let up = c
        .create_multipart_upload()
        .bucket("mpu")
        .key("big")
        .content_type("application/octet-stream")
        .send()
        .await?;
    let id = up.upload_id().unwrap_or_default().to_owned();
    let p1 = payload(1, 2048);
    let p2 = payload(2, 2048);
    let p3 = payload(3, 100);
    let e1 = c
        .upload_part()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from(p1.clone()))
        .send()
        .await?;
    c.put_object()
        .bucket("mpu")
        .key("source")
        .body(ByteStream::from(p2.clone()))
        .send()
        .await?;
    let e2 = c
        .upload_part_copy()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .part_number(2)
        .copy_source("mpu/source")
        .copy_source_range("bytes=0-2047")
        .send()
        .await?;
    let e3 = c
        .upload_part()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .part_number(3)
        .body(ByteStream::from(p3.clone()))
        .send()
        .await?;
    let parts = c.list_parts().bucket("mpu").key("big").upload_id(&id).send().await?;
    assert_eq!(parts.parts().len(), 3);
    let uploads = c.list_multipart_uploads().bucket("mpu").send().await?;
    assert_eq!(uploads.uploads().len(), 1);
    let part = |n: i32, e: Option<&str>| {
        CompletedPart::builder()
            .part_number(n)
            .set_e_tag(e.map(str::to_owned))
            .build()
    };
    let e2tag = e2.copy_part_result().and_then(|r| r.e_tag());
    // Out of order → InvalidPartOrder; wrong ETag → InvalidPart.
    s3_err!(
        c.complete_multipart_upload()
            .bucket("mpu")
            .key("big")
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .parts(part(2, e2tag))
                    .parts(part(1, e1.e_tag()))
                    .build()
            )
            .send()
            .await,
        "InvalidPartOrder",
        400
    );
    s3_err!(
        c.complete_multipart_upload()
            .bucket("mpu")
            .key("big")
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .parts(part(1, Some("\"0000\"")))
                    .build()
            )
            .send()
            .await,
        "InvalidPart",
        400
    );
    let done = c
        .complete_multipart_upload()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(part(1, e1.e_tag()))
                .parts(part(2, e2tag))
                .parts(part(3, e3.e_tag()))
                .build(),
        )
        .send()
        .await?;
    assert!(done.e_tag().is_some_and(|e| e.ends_with("-3\"")), "{:?}", done.e_tag());
    let got = c
        .get_object()
        .bucket("mpu")
        .key("big")
        .send()
        .await?
        .body
        .collect()
        .await?
        .into_bytes();
    let mut want = p1.clone();
    want.extend_from_slice(&p2);
    want.extend_from_slice(&p3);
    assert_eq!(got.as_ref(), want.as_slice());
    s3_err!(
        c.list_parts().bucket("mpu").key("big").upload_id(&id).send().await,
        "NoSuchUpload",
        404
    );
    // EntityTooSmall: a non-last part under the minimum.
    let up = c.create_multipart_upload().bucket("mpu").key("small").send().await?;
    let id = up.upload_id().unwrap_or_default().to_owned();
    let a = c
        .upload_part()
        .bucket("mpu")
        .key("small")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from_static(b"tiny"))
        .send()
        .await?;
    let b = c
        .upload_part()
        .bucket("mpu")
        .key("small")
        .upload_id(&id)
        .part_number(2)
        .body(ByteStream::from_static(b"tiny"))
        .send()
        .await?;
    s3_err!(
        c.complete_multipart_upload()
            .bucket("mpu")
            .key("small")
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .parts(part(1, a.e_tag()))
                    .parts(part(2, b.e_tag()))
                    .build()
            )
            .send()
            .await,
        "EntityTooSmall",
        400
    );
    c.abort_multipart_upload()
        .bucket("mpu")
        .key("small")
        .upload_id(&id)
        .send()
        .await?;
    s3_err!(
        c.abort_multipart_upload()
            .bucket("mpu")
            .key("small")
            .upload_id(&id)
            .send()
            .await,
        "NoSuchUpload",
        404
    );
    s.stop().await
}

#[tokio::test]
async fn tagging_and_notifications() -> R {
    let s = TestServer::start().await?;
    let c = s.s3();
    c.create_bucket().bucket("tags").send().await?;
    c.put_object()
        .bucket("tags")
        .key("o")
        .body(ByteStream::from_static(b"1"))
        .tagging("a=1&b=2")
        .send()
        .await?;
    let t = c.get_object_tagging().bucket("tags").key("o").send().await?;
    assert_eq!(t.tag_set().len(), 2);
    let tagging = Tagging::builder()
        .tag_set(Tag::builder().key("x").value("y").build()?)
        .build()?;
    c.put_object_tagging()
        .bucket("tags")
        .key("o")
        .tagging(tagging.clone())
        .send()
        .await?;
    assert_eq!(
        c.get_object_tagging().bucket("tags").key("o").send().await?.tag_set()[0].key(),
        "x"
    );
    c.delete_object_tagging().bucket("tags").key("o").send().await?;
    assert!(
        c.get_object_tagging()
            .bucket("tags")
            .key("o")
            .send()
            .await?
            .tag_set()
            .is_empty()
    );
    let mut too_many = Tagging::builder();
    for i in 0..11 {
        too_many = too_many.tag_set(Tag::builder().key(format!("k{i}")).value("v").build()?);
    }
    s3_err!(
        c.put_object_tagging()
            .bucket("tags")
            .key("o")
            .tagging(too_many.build()?)
            .send()
            .await,
        "InvalidTag",
        400
    );
    s3_err!(c.get_bucket_tagging().bucket("tags").send().await, "NoSuchTagSet", 404);
    c.put_bucket_tagging().bucket("tags").tagging(tagging).send().await?;
    assert_eq!(c.get_bucket_tagging().bucket("tags").send().await?.tag_set().len(), 1);
    c.delete_bucket_tagging().bucket("tags").send().await?;
    s3_err!(c.get_bucket_tagging().bucket("tags").send().await, "NoSuchTagSet", 404);

    let lambda = |id: &str, prefix: &str| {
        LambdaFunctionConfiguration::builder()
            .id(id)
            .lambda_function_arn("arn:aws:lambda:us-east-1:000000000000:function:thumbs")
            .events(Event::S3ObjectCreated)
            .filter(
                NotificationConfigurationFilter::builder()
                    .key(
                        S3KeyFilter::builder()
                            .filter_rules(FilterRule::builder().name(FilterRuleName::Prefix).value(prefix).build())
                            .filter_rules(FilterRule::builder().name(FilterRuleName::Suffix).value(".jpg").build())
                            .build(),
                    )
                    .build(),
            )
            .build()
    };
    let cfg = NotificationConfiguration::builder()
        .lambda_function_configurations(lambda("one", "images/")?)
        .build();
    // The function does not exist: S3 cannot validate the destination...
    s3_err!(
        c.put_bucket_notification_configuration()
            .bucket("tags")
            .notification_configuration(cfg.clone())
            .send()
            .await,
        "InvalidArgument",
        400
    );
    // ...unless told not to.
    c.put_bucket_notification_configuration()
        .bucket("tags")
        .notification_configuration(cfg)
        .skip_destination_validation(true)
        .send()
        .await?;
    let got = c.get_bucket_notification_configuration().bucket("tags").send().await?;
    let l = &got.lambda_function_configurations()[0];
    assert_eq!(l.id(), Some("one"));
    assert_eq!(l.events(), [Event::S3ObjectCreated]);
    let overlapping = NotificationConfiguration::builder()
        .lambda_function_configurations(lambda("one", "images/")?)
        .lambda_function_configurations(lambda("two", "images/2024/")?)
        .build();
    s3_err!(
        c.put_bucket_notification_configuration()
            .bucket("tags")
            .notification_configuration(overlapping)
            .send()
            .await,
        "InvalidArgument",
        400
    );
    s.stop().await
}

#[tokio::test]
async fn checksums_and_digests() -> R {
    let s = TestServer::start().await?;
    let c = s.s3();
    c.create_bucket().bucket("sums").send().await?;
    for algo in [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Sha256,
    ] {
        let key = format!("k-{}", algo.as_str());
        c.put_object()
            .bucket("sums")
            .key(&key)
            .body(ByteStream::from_static(b"hello world"))
            .checksum_algorithm(algo.clone())
            .send()
            .await?;
        let h = c
            .head_object()
            .bucket("sums")
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await?;
        let value = match algo {
            ChecksumAlgorithm::Crc32 => h.checksum_crc32(),
            ChecksumAlgorithm::Crc32C => h.checksum_crc32_c(),
            _ => h.checksum_sha256(),
        };
        let want = match algo {
            ChecksumAlgorithm::Crc32 => "DUoRhQ==",
            ChecksumAlgorithm::Crc32C => "yZRlqg==",
            _ => "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=",
        };
        assert_eq!(value, Some(want), "{algo:?}");
    }
    s3_err!(
        c.put_object()
            .bucket("sums")
            .key("bad")
            .body(ByteStream::from_static(b"hello world"))
            .checksum_crc32("AAAAAA==")
            .send()
            .await,
        "BadDigest",
        400
    );
    s3_err!(
        c.put_object()
            .bucket("sums")
            .key("bad")
            .body(ByteStream::from_static(b"hello world"))
            .content_md5("AAAAAAAAAAAAAAAAAAAAAA==")
            .send()
            .await,
        "BadDigest",
        400
    );
    s3_status!(c.head_object().bucket("sums").key("bad").send().await, 404);
    s.stop().await
}

#[tokio::test]
async fn authentication_and_presigning() -> R {
    let s = TestServer::start().await?;
    let c = s.s3();
    c.create_bucket().bucket("auth").send().await?;
    c.put_object()
        .bucket("auth")
        .key("o")
        .body(ByteStream::from_static(b"secret"))
        .send()
        .await?;
    let wrong = s3_client(&s.endpoint(), "us-east-1", "test", "wrong");
    s3_err!(wrong.list_buckets().send().await, "SignatureDoesNotMatch", 403);
    let unknown = s3_client(&s.endpoint(), "us-east-1", "NOSUCHKEY", "x");
    s3_err!(unknown.list_buckets().send().await, "InvalidAccessKeyId", 403);
    let (status, _, body) = raw_http(s.inner().addr(), "GET", "/auth/o", &[], b"").await?;
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("<Code>AccessDenied</Code>"));
    // Presigned GET and PUT.
    let get = c
        .get_object()
        .bucket("auth")
        .key("o")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(60))?)
        .await?;
    let uri: http::Uri = get.uri().parse()?;
    let path = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let (status, _, body) = raw_http(s.inner().addr(), "GET", &path, &[], b"").await?;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, b"secret");
    let put = c
        .put_object()
        .bucket("auth")
        .key("via-url")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(60))?)
        .await?;
    let uri: http::Uri = put.uri().parse()?;
    let path = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let (status, _, body) = raw_http(s.inner().addr(), "PUT", &path, &[], b"uploaded").await?;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let got = c
        .get_object()
        .bucket("auth")
        .key("via-url")
        .send()
        .await?
        .body
        .collect()
        .await?
        .into_bytes();
    assert_eq!(got.as_ref(), b"uploaded");
    // An expired presigned URL is refused.
    let old = c
        .get_object()
        .bucket("auth")
        .key("o")
        .presigned(
            PresigningConfig::builder()
                .start_time(std::time::SystemTime::now() - Duration::from_secs(3600))
                .expires_in(Duration::from_secs(60))
                .build()?,
        )
        .await?;
    let uri: http::Uri = old.uri().parse()?;
    let path = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let (status, _, body) = raw_http(s.inner().addr(), "GET", &path, &[], b"").await?;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    s.stop().await
}

#[tokio::test]
async fn awkward_keys_round_trip_and_stay_inside_the_data_dir() -> R {
    let s = TestServer::start().await?;
    let c = s.s3();
    c.create_bucket().bucket("keys").send().await?;
    let keys = [
        "with space",
        "ünïcödé/日本",
        "plus+sign",
        "per%cent",
        "../../escape",
        "a//b",
        "./dot",
        "trailing/",
        "/leading",
    ];
    for (i, k) in keys.iter().enumerate() {
        let data = payload(i as u64, 64);
        c.put_object()
            .bucket("keys")
            .key(*k)
            .body(ByteStream::from(data.clone()))
            .send()
            .await?;
        let got = c
            .get_object()
            .bucket("keys")
            .key(*k)
            .send()
            .await?
            .body
            .collect()
            .await?
            .into_bytes();
        assert_eq!(got.as_ref(), data.as_slice(), "key {k:?}");
    }
    let listed: Vec<String> = c
        .list_objects_v2()
        .bucket("keys")
        .send()
        .await?
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    let mut want: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    want.sort();
    assert_eq!(listed, want);
    // Nothing was written outside the data directory.
    for entry in std::fs::read_dir(s.temp_dir())? {
        let name = entry?.file_name();
        assert_eq!(name, "data", "unexpected entry beside the data dir: {name:?}");
    }
    s.stop().await
}

#[tokio::test]
async fn virtual_hosted_style() -> R {
    let s = TestServer::start().await?;
    let c = s.s3();
    c.create_bucket().bucket("vhost").send().await?;
    c.put_object()
        .bucket("vhost")
        .key("k")
        .body(ByteStream::from_static(b"v"))
        .send()
        .await?;
    let addr = s.inner().addr();
    let url = format!("http://vhost.localhost:{}/k", addr.port());
    // sha256 of the empty body, as an SDK sends it.
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let headers = vec![("x-amz-content-sha256".to_owned(), empty.to_owned())];
    let signed = kd_test_support::sign_headers("GET", &url, &headers, b"", "s3", "us-east-1")?;
    let mut with_host: Vec<(String, String)> = signed.into_iter().filter(|(k, _)| k != "host").collect();
    with_host.push(("host".into(), format!("vhost.localhost:{}", addr.port())));
    let (status, _, body) = raw_http_host(addr, "GET", "/k", &with_host).await?;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, b"v");
    s.stop().await
}

/// raw_http sends its own Host header; this variant sends the caller's.
async fn raw_http_host(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
) -> anyhow::Result<(u16, Vec<(String, String)>, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\ncontent-length: 0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no header end"))?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, Vec::new(), buf[split + 4..].to_vec()))
}

#[tokio::test]
async fn malformed_xml_skewed_clock_and_wrong_method() -> R {
    let s = TestServer::start().await?;
    let c = s.s3();
    c.create_bucket().bucket("raw").send().await?;
    let addr = s.inner().addr();
    let sha = |b: &[u8]| {
        use sha2::{Digest, Sha256};
        Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect::<String>()
    };
    // A DeleteObjects body that is not XML.
    let body = b"<Delete><Object><Key>unclosed";
    let url = format!("http://{addr}/raw?delete");
    let h = vec![
        ("x-amz-content-sha256".to_owned(), sha(body)),
        ("content-md5".to_owned(), {
            use base64::Engine as _;
            use md5::{Digest, Md5};
            base64::engine::general_purpose::STANDARD.encode(Md5::digest(body))
        }),
    ];
    let signed = kd_test_support::sign_headers("POST", &url, &h, body, "s3", "us-east-1")?;
    let (status, _, resp) = raw_http(addr, "POST", "/raw?delete", &signed, body).await?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("<Code>MalformedXML</Code>"), "{text}");
    // A request signed an hour ago.
    let url = format!("http://{addr}/raw");
    let h = vec![
        ("x-amz-content-sha256".to_owned(), sha(b"")),
        (
            "x-amz-date".to_owned(),
            kd_edge::sigv4::format_amz_date(now_secs() - 3600),
        ),
    ];
    let signed = sign_at("GET", &url, &h, now_secs() - 3600)?;
    let (status, _, resp) = raw_http(addr, "GET", "/raw", &signed, b"").await?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("<Code>RequestTimeTooSkewed</Code>"), "{text}");
    s.stop().await
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// SigV4-signs a request as if at `unix` seconds.
fn sign_at(method: &str, url: &str, headers: &[(String, String)], unix: i64) -> anyhow::Result<Vec<(String, String)>> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    let identity = aws_sdk_s3::config::Credentials::new("test", "test", None, None, "t").into();
    let time = std::time::UNIX_EPOCH + Duration::from_secs(unix as u64);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(time)
        .settings(SigningSettings::default())
        .build()?
        .into();
    let hdrs: Vec<(String, String)> = headers.iter().filter(|(k, _)| k != "x-amz-date").cloned().collect();
    let signable = SignableRequest::new(
        method,
        url,
        hdrs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(b""),
    )?;
    let (instructions, _) = sign(signable, &params)?.into_parts();
    let mut out = hdrs;
    for (k, v) in instructions.headers() {
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}
