//! Firehose over the wire with aws-sdk-firehose: DirectPut to S3 with GZIP, a stream fanned
//! out to two delivery streams, every validation and AWS error the adapter answers, version
//! checks on UpdateDestination, and a role that cannot write its bucket until it is granted.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::time::Duration;

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::{
    BufferingHints, CompressionFormat, DeliveryStreamType, ExtendedS3DestinationConfiguration,
    ExtendedS3DestinationUpdate, KinesisStreamSourceConfiguration, ProcessingConfiguration, Processor,
    ProcessorParameter, ProcessorParameterName, ProcessorType, Record, S3DestinationConfiguration, Tag,
};
use kd_test_support::{ACCOUNT, TestServer, firehose_client, raw_http, sign_headers, wait_until};

use crate::assert_aws_error;

type R = anyhow::Result<()>;

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"firehose.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// Creates a role Firehose may assume, with `managed` AWS policies attached; returns its ARN.
pub async fn firehose_role(s: &TestServer, name: &str, managed: &[&str]) -> anyhow::Result<String> {
    let iam = s.iam();
    let r = iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(TRUST)
        .send()
        .await?;
    for p in managed {
        iam.attach_role_policy()
            .role_name(name)
            .policy_arn(format!("arn:aws:iam::aws:policy/{p}"))
            .send()
            .await?;
    }
    Ok(r.role().map(|r| r.arn().to_owned()).unwrap_or_default())
}

fn dest(role: &str, bucket: &str) -> anyhow::Result<ExtendedS3DestinationConfiguration> {
    Ok(ExtendedS3DestinationConfiguration::builder()
        .role_arn(role)
        .bucket_arn(format!("arn:aws:s3:::{bucket}"))
        .buffering_hints(BufferingHints::builder().size_in_mbs(1).interval_in_seconds(1).build())
        .build()?)
}

fn record(data: &[u8]) -> anyhow::Result<Record> {
    Ok(Record::builder().data(Blob::new(data.to_vec())).build()?)
}

pub(crate) async fn wait_active(f: &aws_sdk_firehose::Client, name: &str) -> R {
    wait_until(Duration::from_secs(10), "delivery stream ACTIVE", || async {
        let d = f
            .describe_delivery_stream()
            .delivery_stream_name(name)
            .send()
            .await
            .ok()?;
        (d.delivery_stream_description()?.delivery_stream_status().as_str() == "ACTIVE").then_some(())
    })
    .await
}

/// Every object of a bucket: (key, body).
pub(crate) async fn objects(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(list) = s3.list_objects_v2().bucket(bucket).send().await else {
        return out;
    };
    for o in list.contents() {
        let key = o.key().unwrap_or_default().to_owned();
        if let Ok(got) = s3.get_object().bucket(bucket).key(&key).send().await
            && let Ok(body) = got.body.collect().await
        {
            out.push((key, body.into_bytes().to_vec()));
        }
    }
    out
}

/// The lines of every object of a bucket, sorted.
async fn lines_in(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let mut lines: Vec<String> = objects(s3, bucket)
        .await
        .into_iter()
        .flat_map(|(_, b)| {
            String::from_utf8_lossy(&b)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    lines
}

fn is_digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

#[tokio::test]
async fn direct_put_gzip_lands_in_s3() -> R {
    let s = TestServer::start().await?;
    let (f, s3) = (s.firehose(), s.s3());
    s3.create_bucket().bucket("landing").send().await?;
    let role = firehose_role(&s, "fh", &["AmazonS3FullAccess"]).await?;
    let mut d = dest(&role, "landing")?;
    d.compression_format = Some(CompressionFormat::Gzip);
    let arn = f
        .create_delivery_stream()
        .delivery_stream_name("gz")
        .extended_s3_destination_configuration(d)
        .tags(Tag::builder().key("team").value("data").build()?)
        .send()
        .await?
        .delivery_stream_arn()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(arn, format!("arn:aws:firehose:us-east-1:{ACCOUNT}:deliverystream/gz"));
    wait_active(&f, "gz").await?;
    let d = f.describe_delivery_stream().delivery_stream_name("gz").send().await?;
    let d = d
        .delivery_stream_description()
        .ok_or_else(|| anyhow::anyhow!("no description"))?;
    assert_eq!(d.version_id(), "1");
    assert_eq!(d.delivery_stream_type().as_str(), "DirectPut");
    assert!(!d.has_more_destinations());
    let dest = &d.destinations()[0];
    assert_eq!(dest.destination_id(), "destinationId-000000000001");
    let ext = dest
        .extended_s3_destination_description()
        .ok_or_else(|| anyhow::anyhow!("no extended description"))?;
    assert_eq!(ext.compression_format().as_str(), "GZIP");
    assert_eq!(ext.bucket_arn(), "arn:aws:s3:::landing");
    assert_eq!(ext.buffering_hints().and_then(|h| h.interval_in_seconds()), Some(1));
    assert_eq!(
        ext.encryption_configuration()
            .and_then(|e| e.no_encryption_config())
            .map(|n| n.as_str()),
        Some("NoEncryption")
    );
    assert!(dest.s3_destination_description().is_some());
    let listed = f.list_delivery_streams().send().await?;
    assert_eq!(listed.delivery_stream_names(), ["gz"]);
    assert!(!listed.has_more_delivery_streams());
    let tags = f
        .list_tags_for_delivery_stream()
        .delivery_stream_name("gz")
        .send()
        .await?;
    assert_eq!(tags.tags().len(), 1);

    let records: Vec<Vec<u8>> = (0..50).map(|i| format!("rec-{i}\n").into_bytes()).collect();
    let mut batch = f.put_record_batch().delivery_stream_name("gz");
    for r in &records {
        batch = batch.records(record(r)?);
    }
    let out = batch.send().await?;
    assert_eq!(out.failed_put_count(), 0);
    assert_eq!(out.request_responses().len(), 50);
    assert!(out.request_responses().iter().all(|r| r.record_id().is_some()));
    let found = wait_until(Duration::from_secs(20), "the GZIP object", || async {
        let o = objects(&s3, "landing").await;
        (!o.is_empty()).then_some(o)
    })
    .await?;
    assert_eq!(
        found.len(),
        1,
        "one batch, one object: {:?}",
        found.iter().map(|o| &o.0).collect::<Vec<_>>()
    );
    let (key, body) = &found[0];
    // YYYY/MM/DD/HH/gz-1-YYYY-MM-DD-HH-MM-SS-<uuid>.gz
    let parts: Vec<&str> = key.split('/').collect();
    assert_eq!(parts.len(), 5, "{key}");
    assert!(
        is_digits(parts[0], 4) && is_digits(parts[1], 2) && is_digits(parts[2], 2) && is_digits(parts[3], 2),
        "{key}"
    );
    let file = parts[4]
        .strip_suffix(".gz")
        .ok_or_else(|| anyhow::anyhow!("no .gz: {key}"))?;
    let rest = file
        .strip_prefix("gz-1-")
        .ok_or_else(|| anyhow::anyhow!("no name-version: {key}"))?;
    let fields: Vec<&str> = rest.splitn(7, '-').collect();
    assert_eq!(fields.len(), 7, "{key}");
    assert_eq!(fields[0], parts[0]);
    assert_eq!(fields[1], parts[1]);
    assert_eq!(fields[2], parts[2]);
    assert_eq!(fields[3], parts[3]);
    assert!(is_digits(fields[4], 2) && is_digits(fields[5], 2), "{key}");
    assert_eq!(fields[6].len(), 36, "uuid in {key}");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(body.as_slice()).read_to_end(&mut plain)?;
    assert_eq!(plain, records.concat());
    let head = s3.head_object().bucket("landing").key(key).send().await?;
    assert_eq!(head.content_encoding(), Some("gzip"));

    // PutRecord answers a record id, unencrypted.
    let one = f
        .put_record()
        .delivery_stream_name("gz")
        .record(record(b"single\n")?)
        .send()
        .await?;
    assert!(!one.record_id().is_empty());
    assert_eq!(one.encrypted(), Some(false));
    f.delete_delivery_stream().delivery_stream_name("gz").send().await?;
    wait_until(Duration::from_secs(10), "deleted", || async {
        f.describe_delivery_stream()
            .delivery_stream_name("gz")
            .send()
            .await
            .is_err()
            .then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn one_stream_fans_out_to_two_buckets() -> R {
    let s = TestServer::start_with(|c| c.firehose.start_at_trim_horizon = true).await?;
    let (f, s3, k) = (s.firehose(), s.s3(), s.kinesis());
    k.create_stream().stream_name("events").shard_count(2).send().await?;
    let stream_arn = format!("arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/events");
    let role = firehose_role(&s, "reader", &["AmazonS3FullAccess", "AmazonKinesisFullAccess"]).await?;
    for (name, bucket) in [("to-a", "bucket-a"), ("to-b", "bucket-b")] {
        s3.create_bucket().bucket(bucket).send().await?;
        f.create_delivery_stream()
            .delivery_stream_name(name)
            .delivery_stream_type(DeliveryStreamType::KinesisStreamAsSource)
            .kinesis_stream_source_configuration(
                KinesisStreamSourceConfiguration::builder()
                    .kinesis_stream_arn(&stream_arn)
                    .role_arn(&role)
                    .build()?,
            )
            .extended_s3_destination_configuration(dest(&role, bucket)?)
            .send()
            .await?;
    }
    wait_active(&f, "to-a").await?;
    wait_active(&f, "to-b").await?;
    let d = f.describe_delivery_stream().delivery_stream_name("to-a").send().await?;
    let src = d
        .delivery_stream_description()
        .and_then(|d| d.source())
        .and_then(|s| s.kinesis_stream_source_description())
        .ok_or_else(|| anyhow::anyhow!("no source description"))?;
    assert_eq!(src.kinesis_stream_arn(), Some(stream_arn.as_str()));
    assert_eq!(src.role_arn(), Some(role.as_str()));
    let typed = f
        .list_delivery_streams()
        .delivery_stream_type(DeliveryStreamType::KinesisStreamAsSource)
        .send()
        .await?;
    assert_eq!(typed.delivery_stream_names(), ["to-a", "to-b"]);
    let direct = f
        .list_delivery_streams()
        .delivery_stream_type(DeliveryStreamType::DirectPut)
        .send()
        .await?;
    assert!(direct.delivery_stream_names().is_empty());

    let mut expected = Vec::new();
    for i in 0..200 {
        k.put_record()
            .stream_name("events")
            .partition_key(format!("pk-{i}"))
            .data(aws_sdk_kinesis::primitives::Blob::new(format!("rec-{i}\n")))
            .send()
            .await?;
        expected.push(format!("rec-{i}"));
    }
    expected.sort();
    for bucket in ["bucket-a", "bucket-b"] {
        let got = wait_until(Duration::from_secs(30), "every record in the bucket", || async {
            let l = lines_in(&s3, bucket).await;
            (l.len() >= expected.len()).then_some(l)
        })
        .await?;
        assert_eq!(got, expected, "{bucket}");
    }
    // A stream-sourced delivery stream takes no direct puts.
    assert_aws_error!(
        f.put_record()
            .delivery_stream_name("to-a")
            .record(record(b"x")?)
            .send()
            .await,
        "InvalidArgumentException",
        400
    );
    Ok(())
}

/// A raw signed Firehose call, for inputs the SDK will not send.
async fn raw_call(s: &TestServer, op: &str, body: &str) -> anyhow::Result<(u16, serde_json::Value)> {
    let url = format!("{}/", s.endpoint());
    let headers = vec![
        ("content-type".to_owned(), "application/x-amz-json-1.1".to_owned()),
        ("x-amz-target".to_owned(), format!("Firehose_20150804.{op}")),
        ("host".to_owned(), s.inner().addr().to_string()),
    ];
    let signed = sign_headers("POST", &url, &headers, body.as_bytes(), "firehose", "us-east-1")?;
    let signed: Vec<_> = signed.into_iter().filter(|(k, _)| k != "host").collect();
    let (status, _, out) = raw_http(s.inner().addr(), "POST", "/", &signed, body.as_bytes()).await?;
    Ok((status, serde_json::from_slice(&out).unwrap_or(serde_json::Value::Null)))
}

#[tokio::test]
async fn validation_errors() -> R {
    let s = TestServer::start().await?;
    let (f, s3) = (s.firehose(), s.s3());
    s3.create_bucket().bucket("bkt").send().await?;
    let role = firehose_role(&s, "fh", &["AmazonS3FullAccess"]).await?;
    let create = |name: &str| f.create_delivery_stream().delivery_stream_name(name);

    // Modeled constraints: ValidationException.
    let m = assert_aws_error!(
        create("bad name")
            .extended_s3_destination_configuration(dest(&role, "bkt")?)
            .send()
            .await,
        "ValidationException",
        400
    );
    assert_eq!(
        m,
        "1 validation error detected: Value 'bad name' at 'deliveryStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
    );
    let long = "x".repeat(65);
    assert_aws_error!(
        create(&long)
            .extended_s3_destination_configuration(dest(&role, "bkt")?)
            .send()
            .await,
        "ValidationException",
        400
    );
    let mut d = dest(&role, "bkt")?;
    d.buffering_hints = Some(
        BufferingHints::builder()
            .size_in_mbs(0)
            .interval_in_seconds(901)
            .build(),
    );
    let m = assert_aws_error!(
        create("x").extended_s3_destination_configuration(d).send().await,
        "ValidationException",
        400
    );
    assert!(m.starts_with("2 validation errors detected"), "{m}");
    assert!(
        m.contains("bufferingHints.sizeInMBs") && m.contains("bufferingHints.intervalInSeconds"),
        "{m}"
    );
    let mut d = dest(&role, "bkt")?;
    d.compression_format = Some(CompressionFormat::from("gzip"));
    let m = assert_aws_error!(
        create("x").extended_s3_destination_configuration(d).send().await,
        "ValidationException",
        400
    );
    assert!(m.contains("Member must satisfy enum value set"), "{m}");
    let mut d = dest(&role, "bkt")?;
    d.file_extension = Some("json".into());
    assert_aws_error!(
        create("x").extended_s3_destination_configuration(d).send().await,
        "ValidationException",
        400
    );
    let mut d = dest(&role, "bkt")?;
    d.bucket_arn = "my-bucket".into();
    assert_aws_error!(
        create("x").extended_s3_destination_configuration(d).send().await,
        "ValidationException",
        400
    );
    let mut d = dest(&role, "bkt")?;
    d.role_arn = "arn:aws:iam::000000000000:user/u".into();
    assert_aws_error!(
        create("x").extended_s3_destination_configuration(d).send().await,
        "ValidationException",
        400
    );
    Ok(())
}

#[tokio::test]
async fn destination_rules_are_invalid_arguments() -> R {
    let s = TestServer::start().await?;
    let (f, s3) = (s.firehose(), s.s3());
    s3.create_bucket().bucket("bkt").send().await?;
    let role = firehose_role(&s, "fh", &["AmazonS3FullAccess"]).await?;
    let create = |name: &str| f.create_delivery_stream().delivery_stream_name(name);
    // Destination rules: InvalidArgumentException.
    let m = assert_aws_error!(create("x").send().await, "InvalidArgumentException", 400);
    assert_eq!(m, "Exactly one destination configuration is supported for a Firehose");
    let plain = S3DestinationConfiguration::builder()
        .role_arn(&role)
        .bucket_arn("arn:aws:s3:::bkt")
        .build()?;
    #[allow(deprecated)] // the legacy S3DestinationConfiguration is still served
    let both = create("x")
        .extended_s3_destination_configuration(dest(&role, "bkt")?)
        .s3_destination_configuration(plain);
    let m = assert_aws_error!(both.send().await, "InvalidArgumentException", 400);
    assert_eq!(m, "Exactly one destination configuration is supported for a Firehose");
    let (status, v) = raw_call(
        &s,
        "CreateDeliveryStream",
        r#"{"DeliveryStreamName":"x","HttpEndpointDestinationConfiguration":{"EndpointConfiguration":{"Url":"https://example.com"}}}"#,
    )
    .await?;
    assert_eq!((status, v["__type"].as_str()), (400, Some("InvalidArgumentException")));
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not supported by kinesis-data"),
        "{v}"
    );
    let mut d = dest(&role, "bkt")?;
    d.buffering_hints = Some(BufferingHints::builder().size_in_mbs(2).build());
    assert_aws_error!(
        create("x").extended_s3_destination_configuration(d).send().await,
        "InvalidArgumentException",
        400
    );
    let mut d = dest(&role, "bkt")?;
    d.prefix = Some("logs/!{timestamp:yyyy}/".into());
    let m = assert_aws_error!(
        create("x")
            .extended_s3_destination_configuration(d.clone())
            .send()
            .await,
        "InvalidArgumentException",
        400
    );
    assert!(m.contains("ErrorOutputPrefix"), "{m}");
    d.error_output_prefix = Some("errors/!{timestamp:yyyy}/".into());
    let m = assert_aws_error!(
        create("x").extended_s3_destination_configuration(d).send().await,
        "InvalidArgumentException",
        400
    );
    assert!(m.contains("!{firehose:error-output-type}"), "{m}");
    let mut d = dest(&role, "bkt")?;
    d.processing_configuration = Some(
        ProcessingConfiguration::builder()
            .enabled(true)
            .processors(
                Processor::builder()
                    .r#type(ProcessorType::Lambda)
                    .parameters(
                        ProcessorParameter::builder()
                            .parameter_name(ProcessorParameterName::LambdaArn)
                            .parameter_value("arn:aws:lambda:us-east-1:000000000000:notafunction")
                            .build()?,
                    )
                    .build()?,
            )
            .build(),
    );
    // A Lambda processor needs a function ARN.
    let m = assert_aws_error!(
        create("x").extended_s3_destination_configuration(d).send().await,
        "InvalidArgumentException",
        400
    );
    assert!(m.contains("LambdaArn") || m.contains("Lambda"), "{m}");
    // Roles must exist and trust Firehose.
    let missing = "arn:aws:iam::000000000000:role/nobody";
    let m = assert_aws_error!(
        create("x")
            .extended_s3_destination_configuration(dest(missing, "bkt")?)
            .send()
            .await,
        "InvalidArgumentException",
        400
    );
    assert_eq!(
        m,
        format!("Firehose is unable to assume role {missing}. Please check the role provided.")
    );
    let other = s
        .iam()
        .create_role()
        .role_name("lambda-only")
        .assume_role_policy_document(TRUST.replace("firehose.amazonaws.com", "lambda.amazonaws.com"))
        .send()
        .await?;
    let other = other.role().map(|r| r.arn().to_owned()).unwrap_or_default();
    assert_aws_error!(
        create("x")
            .extended_s3_destination_configuration(dest(&other, "bkt")?)
            .send()
            .await,
        "InvalidArgumentException",
        400
    );
    Ok(())
}

#[tokio::test]
async fn delivery_stream_errors() -> R {
    let s = TestServer::start().await?;
    let (f, s3) = (s.firehose(), s.s3());
    s3.create_bucket().bucket("bkt").send().await?;
    let role = firehose_role(&s, "fh", &["AmazonS3FullAccess"]).await?;
    let create = |name: &str| f.create_delivery_stream().delivery_stream_name(name);
    // The delivery stream's own errors.
    create("exists")
        .extended_s3_destination_configuration(dest(&role, "bkt")?)
        .send()
        .await?;
    wait_active(&f, "exists").await?;
    assert_aws_error!(
        create("exists")
            .extended_s3_destination_configuration(dest(&role, "bkt")?)
            .send()
            .await,
        "ResourceInUseException",
        400
    );
    let m = assert_aws_error!(
        f.describe_delivery_stream().delivery_stream_name("nope").send().await,
        "ResourceNotFoundException",
        400
    );
    assert_eq!(m, format!("Firehose nope under account {ACCOUNT} not found."));
    assert_aws_error!(
        f.put_record()
            .delivery_stream_name("nope")
            .record(record(b"x")?)
            .send()
            .await,
        "ResourceNotFoundException",
        400
    );
    assert_aws_error!(
        f.delete_delivery_stream().delivery_stream_name("nope").send().await,
        "ResourceNotFoundException",
        400
    );
    let m = assert_aws_error!(
        f.put_record()
            .delivery_stream_name("exists")
            .record(record(&vec![b'a'; 1_024_001])?)
            .send()
            .await,
        "ValidationException",
        400
    );
    assert!(m.contains("record.data"), "{m}");
    let mut too_many = f.put_record_batch().delivery_stream_name("exists");
    for _ in 0..501 {
        too_many = too_many.records(record(b"x")?);
    }
    assert_aws_error!(too_many.send().await, "ValidationException", 400);
    let mut too_big = f.put_record_batch().delivery_stream_name("exists");
    for _ in 0..5 {
        too_big = too_big.records(record(&vec![b'b'; 1_000_000])?);
    }
    assert_aws_error!(too_big.send().await, "InvalidArgumentException", 400);
    assert_aws_error!(
        f.list_delivery_streams().limit(0).send().await,
        "ValidationException",
        400
    );
    Ok(())
}

#[tokio::test]
async fn update_destination_checks_the_version() -> R {
    let s = TestServer::start().await?;
    let (f, s3) = (s.firehose(), s.s3());
    s3.create_bucket().bucket("bkt").send().await?;
    let role = firehose_role(&s, "fh", &["AmazonS3FullAccess"]).await?;
    let create = |name: &str| f.create_delivery_stream().delivery_stream_name(name);
    create("exists")
        .extended_s3_destination_configuration(dest(&role, "bkt")?)
        .send()
        .await?;
    wait_active(&f, "exists").await?;
    // UpdateDestination: the version must match; an update merges and bumps the version.
    let update = ExtendedS3DestinationUpdate::builder().prefix("v2/").build();
    let m = assert_aws_error!(
        f.update_destination()
            .delivery_stream_name("exists")
            .current_delivery_stream_version_id("7")
            .destination_id("destinationId-000000000001")
            .extended_s3_destination_update(update.clone())
            .send()
            .await,
        "ConcurrentModificationException",
        400
    );
    assert!(!m.is_empty());
    f.update_destination()
        .delivery_stream_name("exists")
        .current_delivery_stream_version_id("1")
        .destination_id("destinationId-000000000001")
        .extended_s3_destination_update(update)
        .send()
        .await?;
    let d = f
        .describe_delivery_stream()
        .delivery_stream_name("exists")
        .send()
        .await?;
    let d = d
        .delivery_stream_description()
        .ok_or_else(|| anyhow::anyhow!("no description"))?;
    assert_eq!(d.version_id(), "2");
    assert!(d.last_update_timestamp().is_some());
    let ext = d.destinations()[0]
        .extended_s3_destination_description()
        .ok_or_else(|| anyhow::anyhow!("no extended description"))?;
    assert_eq!(ext.prefix(), Some("v2/"));
    assert_eq!(ext.bucket_arn(), "arn:aws:s3:::bkt");
    assert_eq!(ext.buffering_hints().and_then(|h| h.size_in_mbs()), Some(1));
    Ok(())
}

#[tokio::test]
async fn tags_round_trip() -> R {
    let s = TestServer::start().await?;
    let (f, s3) = (s.firehose(), s.s3());
    s3.create_bucket().bucket("bkt").send().await?;
    let role = firehose_role(&s, "fh", &["AmazonS3FullAccess"]).await?;
    let create = |name: &str| f.create_delivery_stream().delivery_stream_name(name);
    create("exists")
        .extended_s3_destination_configuration(dest(&role, "bkt")?)
        .send()
        .await?;
    wait_active(&f, "exists").await?;
    // Tags.
    f.tag_delivery_stream()
        .delivery_stream_name("exists")
        .tags(Tag::builder().key("a").value("1").build()?)
        .tags(Tag::builder().key("b").value("2").build()?)
        .send()
        .await?;
    let t = f
        .list_tags_for_delivery_stream()
        .delivery_stream_name("exists")
        .limit(1)
        .send()
        .await?;
    assert_eq!(t.tags().iter().map(|t| t.key()).collect::<Vec<_>>(), ["a"]);
    assert!(t.has_more_tags());
    let t = f
        .list_tags_for_delivery_stream()
        .delivery_stream_name("exists")
        .exclusive_start_tag_key("a")
        .send()
        .await?;
    assert_eq!(t.tags().iter().map(|t| t.key()).collect::<Vec<_>>(), ["b"]);
    f.untag_delivery_stream()
        .delivery_stream_name("exists")
        .tag_keys("a")
        .send()
        .await?;
    let t = f
        .list_tags_for_delivery_stream()
        .delivery_stream_name("exists")
        .send()
        .await?;
    assert_eq!(t.tags().len(), 1);
    assert_aws_error!(
        f.tag_delivery_stream()
            .delivery_stream_name("exists")
            .tags(Tag::builder().key("aws:x").value("1").build()?)
            .send()
            .await,
        "ValidationException",
        400
    );
    Ok(())
}

#[tokio::test]
async fn protocol_errors() -> R {
    let s = TestServer::start().await?;
    let (f, s3) = (s.firehose(), s.s3());
    s3.create_bucket().bucket("bkt").send().await?;
    let role = firehose_role(&s, "fh", &["AmazonS3FullAccess"]).await?;
    let create = |name: &str| f.create_delivery_stream().delivery_stream_name(name);
    create("exists")
        .extended_s3_destination_configuration(dest(&role, "bkt")?)
        .send()
        .await?;
    wait_active(&f, "exists").await?;
    // Protocol errors.
    let (status, v) = raw_call(&s, "NoSuchOperation", "{}").await?;
    assert_eq!((status, v["__type"].as_str()), (400, Some("UnknownOperationException")));
    let (status, v) = raw_call(&s, "PutRecord", "{not json").await?;
    assert_eq!((status, v["__type"].as_str()), (400, Some("SerializationException")));
    Ok(())
}

#[tokio::test]
async fn authorisation_errors() -> R {
    let s = TestServer::start().await?;
    let (f, s3) = (s.firehose(), s.s3());
    s3.create_bucket().bucket("bkt").send().await?;
    let role = firehose_role(&s, "fh", &["AmazonS3FullAccess"]).await?;
    let create = |name: &str| f.create_delivery_stream().delivery_stream_name(name);
    create("exists")
        .extended_s3_destination_configuration(dest(&role, "bkt")?)
        .send()
        .await?;
    wait_active(&f, "exists").await?;
    // Authorisation: a user without Firehose permissions is refused.
    let iam = s.iam();
    iam.create_user().user_name("eve").send().await?;
    let key = iam.create_access_key().user_name("eve").send().await?;
    let key = key.access_key().ok_or_else(|| anyhow::anyhow!("no key"))?;
    let eve = firehose_client(&s.endpoint(), "us-east-1", key.access_key_id(), key.secret_access_key());
    let m = assert_aws_error!(
        eve.put_record()
            .delivery_stream_name("exists")
            .record(record(b"x")?)
            .send()
            .await,
        "AccessDeniedException",
        400
    );
    assert_eq!(
        m,
        format!(
            "User: arn:aws:iam::{ACCOUNT}:user/eve is not authorized to perform: firehose:PutRecord on resource: arn:aws:firehose:us-east-1:{ACCOUNT}:deliverystream/exists because no identity-based policy allows the firehose:PutRecord action"
        )
    );
    assert_aws_error!(eve.list_delivery_streams().send().await, "AccessDeniedException", 400);
    Ok(())
}

#[tokio::test]
async fn dynamic_partitioning_config_is_accepted_and_described() -> R {
    let s = TestServer::start().await?;
    let (f, s3) = (s.firehose(), s.s3());
    s3.create_bucket().bucket("dp-bucket").send().await?;
    let role = firehose_role(&s, "fh", &["AmazonS3FullAccess"]).await?;
    let mut d = dest(&role, "dp-bucket")?;
    d.prefix = Some("customer=!{partitionKeyFromQuery:customer_id}/".into());
    d.error_output_prefix = Some("errors/!{firehose:error-output-type}/".into());
    d.dynamic_partitioning_configuration = Some(
        aws_sdk_firehose::types::DynamicPartitioningConfiguration::builder()
            .enabled(true)
            .build(),
    );
    let param = |n: ProcessorParameterName, v: &str| {
        ProcessorParameter::builder()
            .parameter_name(n)
            .parameter_value(v)
            .build()
    };
    d.processing_configuration = Some(
        ProcessingConfiguration::builder()
            .enabled(true)
            .processors(
                Processor::builder()
                    .r#type(ProcessorType::MetadataExtraction)
                    .parameters(param(
                        ProcessorParameterName::MetadataExtractionQuery,
                        "{customer_id:.customer_id}",
                    )?)
                    .parameters(param(ProcessorParameterName::JsonParsingEngine, "JQ-1.6")?)
                    .build()?,
            )
            .build(),
    );
    f.create_delivery_stream()
        .delivery_stream_name("dp")
        .extended_s3_destination_configuration(d)
        .send()
        .await?;
    let out = f.describe_delivery_stream().delivery_stream_name("dp").send().await?;
    let ext = out
        .delivery_stream_description()
        .and_then(|d| d.destinations().first())
        .and_then(|d| d.extended_s3_destination_description())
        .ok_or_else(|| anyhow::anyhow!("no extended description"))?;
    assert_eq!(
        ext.dynamic_partitioning_configuration().and_then(|d| d.enabled()),
        Some(true)
    );
    assert_eq!(ext.processing_configuration().map(|p| p.processors().len()), Some(1));
    let mut wanted = BTreeMap::new();
    wanted.insert("Prefix", "customer=!{partitionKeyFromQuery:customer_id}/");
    assert_eq!(ext.prefix(), wanted.get("Prefix").copied());
    Ok(())
}

#[tokio::test]
async fn a_role_that_cannot_write_fails_until_granted() -> R {
    let s = TestServer::start().await?;
    let (f, s3) = (s.firehose(), s.s3());
    s3.create_bucket().bucket("locked").send().await?;
    let role = firehose_role(&s, "weak", &[]).await?;
    f.create_delivery_stream()
        .delivery_stream_name("weak")
        .extended_s3_destination_configuration(dest(&role, "locked")?)
        .send()
        .await?;
    wait_active(&f, "weak").await?;
    f.put_record()
        .delivery_stream_name("weak")
        .record(record(b"held back\n")?)
        .send()
        .await?;
    let failure = wait_until(Duration::from_secs(20), "a FailureDescription", || async {
        let d = f
            .describe_delivery_stream()
            .delivery_stream_name("weak")
            .send()
            .await
            .ok()?;
        let fd = d.delivery_stream_description()?.failure_description()?;
        Some((fd.r#type().as_str().to_owned(), fd.details().to_owned()))
    })
    .await?;
    assert!(failure.0.contains("ACCESS_DENIED"), "{failure:?}");
    assert!(objects(&s3, "locked").await.is_empty());
    s.iam()
        .attach_role_policy()
        .role_name("weak")
        .policy_arn("arn:aws:iam::aws:policy/AmazonS3FullAccess")
        .send()
        .await?;
    let lines = wait_until(Duration::from_secs(60), "the held-back record", || async {
        let l = lines_in(&s3, "locked").await;
        (!l.is_empty()).then_some(l)
    })
    .await?;
    assert_eq!(lines, ["held back"]);
    wait_until(Duration::from_secs(20), "the failure to clear", || async {
        let d = f
            .describe_delivery_stream()
            .delivery_stream_name("weak")
            .send()
            .await
            .ok()?;
        d.delivery_stream_description()?
            .failure_description()
            .is_none()
            .then_some(())
    })
    .await?;
    Ok(())
}

fn conversion_config(
    role: &str,
    serializer: aws_sdk_firehose::types::Serializer,
) -> aws_sdk_firehose::types::DataFormatConversionConfiguration {
    use aws_sdk_firehose::types::{
        DataFormatConversionConfiguration, Deserializer, InputFormatConfiguration, OpenXJsonSerDe,
        OutputFormatConfiguration, SchemaConfiguration,
    };
    DataFormatConversionConfiguration::builder()
        .enabled(true)
        .schema_configuration(
            SchemaConfiguration::builder()
                .database_name("db")
                .table_name("events")
                .role_arn(role)
                .build(),
        )
        .input_format_configuration(
            InputFormatConfiguration::builder()
                .deserializer(
                    Deserializer::builder()
                        .open_x_json_ser_de(OpenXJsonSerDe::builder().build())
                        .build(),
                )
                .build(),
        )
        .output_format_configuration(OutputFormatConfiguration::builder().serializer(serializer).build())
        .build()
}

#[tokio::test]
async fn format_conversion_delivers_parquet() -> R {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int32Type, Int64Type};
    use aws_sdk_firehose::types::{OrcSerDe, ParquetCompression, ParquetSerDe, Serializer};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let s = TestServer::start().await?;
    let (f, s3) = (s.firehose(), s.s3());
    s3.create_bucket().bucket("parquet-out").send().await?;
    let role = firehose_role(&s, "fh", &["AmazonS3FullAccess"]).await?;
    let parquet_gzip = Serializer::builder()
        .parquet_ser_de(ParquetSerDe::builder().compression(ParquetCompression::Gzip).build())
        .build();
    let with_conversion = |ser: Serializer| -> anyhow::Result<ExtendedS3DestinationConfiguration> {
        let mut d = dest(&role, "parquet-out")?;
        d.buffering_hints = Some(BufferingHints::builder().size_in_mbs(64).interval_in_seconds(1).build());
        d.error_output_prefix = Some("errors/!{firehose:error-output-type}/".into());
        d.data_format_conversion_configuration = Some(conversion_config(&role, ser));
        Ok(d)
    };
    let schema_tag = Tag::builder()
        .key("kinesis-data:schema")
        .value("id:int,name:string,n:bigint")
        .build()?;

    // Without the schema tag (and without Glue) the table cannot be found.
    let m = assert_aws_error!(
        f.create_delivery_stream()
            .delivery_stream_name("pq")
            .extended_s3_destination_configuration(with_conversion(parquet_gzip.clone())?)
            .send()
            .await,
        "InvalidArgumentException",
        400
    );
    assert!(m.contains("Glue table db.events not found"), "{m}");
    let orc = Serializer::builder().orc_ser_de(OrcSerDe::builder().build()).build();
    let m = assert_aws_error!(
        f.create_delivery_stream()
            .delivery_stream_name("pq")
            .extended_s3_destination_configuration(with_conversion(orc)?)
            .tags(schema_tag.clone())
            .send()
            .await,
        "InvalidArgumentException",
        400
    );
    assert!(m.contains("OrcSerDe"), "{m}");
    let mut gz = with_conversion(parquet_gzip.clone())?;
    gz.compression_format = Some(CompressionFormat::Gzip);
    let m = assert_aws_error!(
        f.create_delivery_stream()
            .delivery_stream_name("pq")
            .extended_s3_destination_configuration(gz)
            .tags(schema_tag.clone())
            .send()
            .await,
        "InvalidArgumentException",
        400
    );
    assert!(m.contains("UNCOMPRESSED"), "{m}");

    f.create_delivery_stream()
        .delivery_stream_name("pq")
        .extended_s3_destination_configuration(with_conversion(parquet_gzip)?)
        .tags(schema_tag)
        .send()
        .await?;
    wait_active(&f, "pq").await?;
    let d = f.describe_delivery_stream().delivery_stream_name("pq").send().await?;
    let conv = d
        .delivery_stream_description()
        .and_then(|d| d.destinations().first())
        .and_then(|d| d.extended_s3_destination_description())
        .and_then(|e| e.data_format_conversion_configuration())
        .ok_or_else(|| anyhow::anyhow!("no conversion in the description"))?;
    assert_eq!(conv.enabled(), Some(true));
    assert_eq!(conv.schema_configuration().and_then(|s| s.table_name()), Some("events"));
    assert_eq!(
        conv.output_format_configuration()
            .and_then(|o| o.serializer())
            .and_then(|s| s.parquet_ser_de())
            .and_then(|p| p.compression()),
        Some(&ParquetCompression::Gzip)
    );

    let mut batch = f.put_record_batch().delivery_stream_name("pq");
    for r in [
        &b"{\"id\":1,\"name\":\"one\",\"n\":10}\n"[..],
        b"{\"id\":2}",
        b"{\"id\":\"two\"}",
    ] {
        batch = batch.records(record(r)?);
    }
    assert_eq!(batch.send().await?.failed_put_count(), 0);
    let found = wait_until(Duration::from_secs(20), "the Parquet and error objects", || async {
        let o = objects(&s3, "parquet-out").await;
        (o.len() == 2).then_some(o)
    })
    .await?;
    let (key, body) = found
        .iter()
        .find(|(k, _)| !k.starts_with("errors/"))
        .ok_or_else(|| anyhow::anyhow!("no data object"))?;
    assert!(key.ends_with(".parquet"), "{key}");
    assert!(key.contains("/pq-1-"), "{key}");
    let batches = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(body.clone()))?
        .build()?
        .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    let b = &batches[0];
    let id = b.column_by_name("id").ok_or_else(|| anyhow::anyhow!("no id"))?;
    assert_eq!(id.as_primitive::<Int32Type>().values().as_ref(), &[1, 2]);
    let name = b.column_by_name("name").ok_or_else(|| anyhow::anyhow!("no name"))?;
    let name = name.as_string::<i32>();
    assert_eq!(name.value(0), "one");
    assert!(name.is_null(1));
    let n = b.column_by_name("n").ok_or_else(|| anyhow::anyhow!("no n"))?;
    assert_eq!(n.as_primitive::<Int64Type>().value(0), 10);
    assert!(n.is_null(1));
    let (ekey, ebody) = found
        .iter()
        .find(|(k, _)| k.starts_with("errors/format-conversion-failed/"))
        .ok_or_else(|| anyhow::anyhow!("no error object"))?;
    let line: serde_json::Value = serde_json::from_slice(ebody.trim_ascii_end())?;
    assert_eq!(line["lastErrorCode"], "DataFormatConversion.MalformedData", "{ekey}");
    Ok(())
}
