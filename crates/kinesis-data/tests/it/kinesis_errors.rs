//! Every Kinesis error code, provoked through the SDK (or raw HTTP where an SDK would refuse
//! to send the request), with AWS's code, status and message shape.

use std::sync::Arc;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use kd_storage::ManualClock;
use kd_test_support::{TestServer, kinesis_client, raw_http, sign_headers};

use crate::assert_aws_error;
use crate::common::{blob, trim_horizon};

type R = anyhow::Result<()>;

fn scope() -> kd_stream::Scope {
    kd_stream::Scope {
        account: "000000000000".into(),
        region: "us-east-1".into(),
    }
}

#[tokio::test]
async fn validation_exceptions() -> R {
    let s = TestServer::start().await?;
    let c = s.kinesis();
    let m = assert_aws_error!(
        c.create_stream().stream_name("bad name!").shard_count(1).send().await,
        "ValidationException",
        400
    );
    assert_eq!(
        m,
        "1 validation error detected: Value 'bad name!' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
    );
    let long = "x".repeat(129);
    assert_aws_error!(
        c.describe_stream().stream_name(long).send().await,
        "ValidationException",
        400
    );
    c.create_stream().stream_name("v").shard_count(1).send().await?;
    let mut req = c.put_records().stream_name("v");
    for i in 0..501u64 {
        req = req.records(
            PutRecordsRequestEntry::builder()
                .partition_key("k")
                .data(blob(i, 1))
                .build()?,
        );
    }
    let m = assert_aws_error!(req.send().await, "ValidationException", 400);
    assert!(m.contains("Member must have length less than or equal to 500"), "{m}");
    let m = assert_aws_error!(
        c.put_record()
            .stream_name("v")
            .partition_key("k")
            .data(Blob::new(vec![0u8; 1024 * 1024 + 1]))
            .send()
            .await,
        "ValidationException",
        400
    );
    assert!(m.contains("at 'data'"), "{m}");
    assert_aws_error!(
        c.put_record()
            .stream_name("v")
            .partition_key("k".repeat(257))
            .data(blob(1, 1))
            .send()
            .await,
        "ValidationException",
        400
    );
    let it = trim_horizon(&c, "v", "shardId-000000000000").await?;
    assert_aws_error!(
        c.get_records().shard_iterator(&it).limit(0).send().await,
        "ValidationException",
        400
    );
    assert_aws_error!(
        c.put_record()
            .stream_name("v")
            .partition_key("k")
            .explicit_hash_key("01")
            .data(blob(1, 1))
            .send()
            .await,
        "ValidationException",
        400
    );
    // On-demand streams cannot be resharded.
    c.create_stream()
        .stream_name("od")
        .stream_mode_details(
            aws_sdk_kinesis::types::StreamModeDetails::builder()
                .stream_mode(aws_sdk_kinesis::types::StreamMode::OnDemand)
                .build()?,
        )
        .send()
        .await?;
    let m = assert_aws_error!(
        c.split_shard()
            .stream_name("od")
            .shard_to_split("shardId-000000000000")
            .new_starting_hash_key("5")
            .send()
            .await,
        "ValidationException",
        400
    );
    assert_eq!(
        m,
        "Request is invalid. Stream od under account 000000000000 is in On-Demand mode."
    );
    s.stop().await
}

#[tokio::test]
async fn invalid_argument_exceptions() -> R {
    let s = TestServer::start().await?;
    let c = s.kinesis();
    c.create_stream().stream_name("ia").shard_count(2).send().await?;
    let m = assert_aws_error!(
        c.put_record()
            .stream_name("ia")
            .partition_key("k")
            .explicit_hash_key("340282366920938463463374607431768211456")
            .data(blob(1, 1))
            .send()
            .await,
        "InvalidArgumentException",
        400
    );
    assert!(m.starts_with("Invalid ExplicitHashKey."), "{m}");
    assert_aws_error!(
        c.get_shard_iterator()
            .stream_name("ia")
            .shard_id("shardId-000000000000")
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .send()
            .await,
        "InvalidArgumentException",
        400
    );
    assert_aws_error!(
        c.get_shard_iterator()
            .stream_name("ia")
            .shard_id("shardId-000000000000")
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number("12345")
            .send()
            .await,
        "InvalidArgumentException",
        400
    );
    let m = assert_aws_error!(
        c.get_records().shard_iterator("bm90IGFuIGl0ZXJhdG9y").send().await,
        "InvalidArgumentException",
        400
    );
    assert_eq!(m, "Invalid ShardIterator.");
    assert_aws_error!(
        c.decrease_stream_retention_period()
            .stream_name("ia")
            .retention_period_hours(48)
            .send()
            .await,
        "InvalidArgumentException",
        400
    );
    assert_aws_error!(
        c.increase_stream_retention_period()
            .stream_name("ia")
            .retention_period_hours(9000)
            .send()
            .await,
        "InvalidArgumentException",
        400
    );
    assert_aws_error!(
        c.split_shard()
            .stream_name("ia")
            .shard_to_split("shardId-000000000000")
            .new_starting_hash_key("0")
            .send()
            .await,
        "InvalidArgumentException",
        400
    );
    c.create_stream().stream_name("ia3").shard_count(3).send().await?;
    let m = assert_aws_error!(
        c.merge_shards()
            .stream_name("ia3")
            .shard_to_merge("shardId-000000000000")
            .adjacent_shard_to_merge("shardId-000000000002")
            .send()
            .await,
        "InvalidArgumentException",
        400
    );
    assert!(m.contains("not an adjacent pair"), "{m}");
    assert_aws_error!(
        c.update_shard_count()
            .stream_name("ia")
            .target_shard_count(5)
            .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
            .send()
            .await,
        "InvalidArgumentException",
        400
    );
    // 5 MiB request limit (each record under 1 MiB).
    let mut req = c.put_records().stream_name("ia");
    for i in 0..6u64 {
        req = req.records(
            PutRecordsRequestEntry::builder()
                .partition_key("k")
                .data(blob(i, 1000 * 1000))
                .build()?,
        );
    }
    let m = assert_aws_error!(req.send().await, "InvalidArgumentException", 400);
    assert_eq!(m, "Records size exceeds 5 MB limit");
    s.stop().await
}

#[tokio::test]
async fn resource_not_found_in_use_and_limits() -> R {
    let s = TestServer::start_with(|c| {
        c.kinesis.shard_limit = 5;
        c.kinesis.update_delay_ms = 60_000;
    })
    .await?;
    let c = s.kinesis();
    let m = assert_aws_error!(
        c.describe_stream().stream_name("nope").send().await,
        "ResourceNotFoundException",
        400
    );
    assert_eq!(m, "Stream nope under account 000000000000 not found.");
    assert_aws_error!(
        c.put_record()
            .stream_name("nope")
            .partition_key("k")
            .data(blob(1, 1))
            .send()
            .await,
        "ResourceNotFoundException",
        400
    );
    c.create_stream().stream_name("r").shard_count(2).send().await?;
    let m = assert_aws_error!(
        c.create_stream().stream_name("r").shard_count(1).send().await,
        "ResourceInUseException",
        400
    );
    assert_eq!(m, "Stream r under account 000000000000 already exists.");
    let m = assert_aws_error!(
        c.get_shard_iterator()
            .stream_name("r")
            .shard_id("shardId-000000000009")
            .shard_iterator_type(ShardIteratorType::Latest)
            .send()
            .await,
        "ResourceNotFoundException",
        400
    );
    assert_eq!(
        m,
        "Shard shardId-000000000009 in stream r under account 000000000000 does not exist"
    );
    let m = assert_aws_error!(
        c.create_stream().stream_name("big").shard_count(4).send().await,
        "LimitExceededException",
        400
    );
    assert!(
        m.starts_with("This request would exceed the shard limit for the account 000000000000 in us-east-1."),
        "{m}"
    );
    // A split leaves the stream UPDATING (60 s here): a second reshard is refused.
    c.split_shard()
        .stream_name("r")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key("12345")
        .send()
        .await?;
    let m = assert_aws_error!(
        c.split_shard()
            .stream_name("r")
            .shard_to_split("shardId-000000000001")
            .new_starting_hash_key("170141183460469231731687303715884105729")
            .send()
            .await,
        "ResourceInUseException",
        400
    );
    assert_eq!(
        m,
        "Stream r under account 000000000000 not ACTIVE, instead in state UPDATING"
    );
    // Writes continue while UPDATING.
    c.put_record()
        .stream_name("r")
        .partition_key("k")
        .data(blob(1, 1))
        .send()
        .await?;
    s.stop().await
}

#[tokio::test]
async fn creating_streams_refuse_io() -> R {
    let s = TestServer::start_with(|c| c.kinesis.create_delay_ms = 60_000).await?;
    let c = s.kinesis();
    c.create_stream().stream_name("slow").shard_count(1).send().await?;
    assert_aws_error!(
        c.put_record()
            .stream_name("slow")
            .partition_key("k")
            .data(blob(1, 1))
            .send()
            .await,
        "ResourceNotFoundException",
        400
    );
    assert_aws_error!(
        c.delete_stream().stream_name("slow").send().await,
        "ResourceInUseException",
        400
    );
    s.stop().await
}

#[tokio::test]
async fn expired_iterators_and_tokens() -> R {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let s = TestServer::start_with_clock(clock.clone(), |_| {}).await?;
    let c = s.kinesis();
    c.create_stream().stream_name("e").shard_count(3).send().await?;
    let it = trim_horizon(&c, "e", "shardId-000000000000").await?;
    let page = c.list_shards().stream_name("e").max_results(1).send().await?;
    clock.advance(299_000);
    let fresh = c.get_records().shard_iterator(&it).send().await?;
    clock.advance(2_000);
    let m = assert_aws_error!(
        c.get_records().shard_iterator(&it).send().await,
        "ExpiredIteratorException",
        400
    );
    assert!(m.starts_with("Iterator expired."), "{m}");
    // The next iterator from a read is fresh.
    c.get_records()
        .shard_iterator(fresh.next_shard_iterator().unwrap_or_default())
        .send()
        .await?;
    assert_aws_error!(
        c.list_shards()
            .next_token(page.next_token().unwrap_or_default())
            .send()
            .await,
        "ExpiredNextTokenException",
        400
    );
    s.stop().await
}

#[tokio::test]
async fn throughput_limits_when_enabled() -> R {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let s = TestServer::start_with_clock(clock.clone(), |c| c.kinesis.enforce_write_limits = true).await?;
    let c = s.kinesis();
    c.create_stream().stream_name("t").shard_count(1).send().await?;
    let mut req = c.put_records().stream_name("t");
    for i in 0..500u64 {
        req = req.records(
            PutRecordsRequestEntry::builder()
                .partition_key("k")
                .data(blob(i, 10))
                .build()?,
        );
    }
    assert_eq!(req.clone().send().await?.failed_record_count(), Some(0));
    assert_eq!(req.clone().send().await?.failed_record_count(), Some(0));
    let third = req.send().await?;
    assert_eq!(third.failed_record_count(), Some(500));
    let e = &third.records()[0];
    assert_eq!(e.error_code(), Some("ProvisionedThroughputExceededException"));
    assert_eq!(
        e.error_message(),
        Some("Rate exceeded for shard shardId-000000000000 in stream t under account 000000000000.")
    );
    assert_aws_error!(
        c.put_record()
            .stream_name("t")
            .partition_key("k")
            .data(blob(1, 1))
            .send()
            .await,
        "ProvisionedThroughputExceededException",
        400
    );
    clock.advance(1_000);
    c.put_record()
        .stream_name("t")
        .partition_key("k")
        .data(blob(1, 1))
        .send()
        .await?;
    s.stop().await
}

#[tokio::test]
async fn authentication_errors() -> R {
    let s = TestServer::start().await?;
    let bad_secret = kinesis_client(&s.endpoint(), "us-east-1", "test", "wrong");
    let m = assert_aws_error!(bad_secret.list_streams().send().await, "InvalidSignatureException", 400);
    assert!(
        m.starts_with("The request signature we calculated does not match"),
        "{m}"
    );
    let unknown = kinesis_client(&s.endpoint(), "us-east-1", "NOSUCHKEY", "x");
    let m = assert_aws_error!(unknown.list_streams().send().await, "UnrecognizedClientException", 400);
    assert_eq!(m, "The security token included in the request is invalid.");
    let addr = s.inner().addr();
    let json = |target: &str| {
        vec![
            ("content-type".to_owned(), "application/x-amz-json-1.1".to_owned()),
            ("x-amz-target".to_owned(), target.to_owned()),
        ]
    };
    let (status, headers, body) = raw_http(addr, "POST", "/", &json("Kinesis_20131202.ListStreams"), b"{}").await?;
    assert_eq!(status, 400);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "x-amzn-errortype" && v == "MissingAuthenticationTokenException")
    );
    assert!(String::from_utf8_lossy(&body).contains("MissingAuthenticationTokenException"));
    let mut h = json("Kinesis_20131202.ListStreams");
    h.push((
        "authorization".into(),
        "AWS4-HMAC-SHA256 Credential=test/garbage".into(),
    ));
    let (status, _, body) = raw_http(addr, "POST", "/", &h, b"{}").await?;
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("IncompleteSignatureException"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    s.stop().await
}

async fn signed(
    s: &TestServer,
    headers: Vec<(String, String)>,
    body: &[u8],
) -> anyhow::Result<(u16, Vec<(String, String)>, Vec<u8>)> {
    let addr = s.inner().addr();
    let url = format!("http://{addr}/");
    let h = sign_headers("POST", &url, &headers, body, "kinesis", "us-east-1")?;
    raw_http(addr, "POST", "/", &h, body).await
}

#[tokio::test]
async fn serialization_and_unknown_operation() -> R {
    let s = TestServer::start().await?;
    let h = |t: &str| {
        vec![
            ("content-type".to_owned(), "application/x-amz-json-1.1".to_owned()),
            ("x-amz-target".to_owned(), t.to_owned()),
        ]
    };
    let (status, _, body) = signed(&s, h("Kinesis_20131202.CreateStream"), b"{not json").await?;
    assert_eq!(status, 400);
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    assert_eq!(v["__type"], "SerializationException");
    let (status, _, body) = signed(
        &s,
        h("Kinesis_20131202.CreateStream"),
        br#"{"StreamName":"x","ShardCount":"two"}"#,
    )
    .await?;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body)?["__type"],
        "SerializationException"
    );
    let (status, _, body) = signed(&s, h("Kinesis_20131202.FlyToTheMoon"), b"{}").await?;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body)?["__type"],
        "UnknownOperationException"
    );
    // Other services answer "not implemented" in their own protocol, at once.
    let (status, _, body) = signed(&s, h("DynamoDB_20120810.ListTables"), b"{}").await?;
    assert_eq!(status, 501);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body)?["__type"],
        "NotImplemented"
    );
    let (status, headers, body) = raw_http(s.inner().addr(), "GET", "/some-bucket/key", &[], b"").await?;
    assert_eq!(status, 403, "unsigned S3 request: {}", String::from_utf8_lossy(&body));
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/xml")
    );
    s.stop().await
}

#[tokio::test]
async fn cbor_wire_encoding() -> R {
    let s = TestServer::start().await?;
    let cbor = |target: &str| {
        vec![
            ("content-type".to_owned(), "application/x-amz-cbor-1.1".to_owned()),
            ("x-amz-target".to_owned(), target.to_owned()),
        ]
    };
    let create = kd_wire::cbor::encode_from_json(&serde_json::json!({"StreamName": "cb", "ShardCount": 1}), &[], &[]);
    let (status, headers, _) = signed(&s, cbor("Kinesis_20131202.CreateStream"), &create).await?;
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/x-amz-cbor-1.1")
    );
    // Data is a CBOR byte string.
    let put = kd_wire::cbor::encode_from_json(
        &serde_json::json!({"StreamName": "cb", "PartitionKey": "k", "Data": "AAEC/w=="}),
        &["Data"],
        &[],
    );
    let (status, _, body) = signed(&s, cbor("Kinesis_20131202.PutRecord"), &put).await?;
    assert_eq!(status, 200);
    let out = kd_wire::cbor::decode_to_json(&body)?;
    assert_eq!(out["ShardId"], "shardId-000000000000");
    let it_req = kd_wire::cbor::encode_from_json(
        &serde_json::json!({"StreamName": "cb", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}),
        &[],
        &[],
    );
    let (_, _, body) = signed(&s, cbor("Kinesis_20131202.GetShardIterator"), &it_req).await?;
    let it = kd_wire::cbor::decode_to_json(&body)?["ShardIterator"].clone();
    let get = kd_wire::cbor::encode_from_json(&serde_json::json!({"ShardIterator": it}), &[], &[]);
    let (status, _, body) = signed(&s, cbor("Kinesis_20131202.GetRecords"), &get).await?;
    assert_eq!(status, 200);
    // Decoding turns byte strings back into base64 and tag-1 ms into seconds.
    let out = kd_wire::cbor::decode_to_json(&body)?;
    assert_eq!(out["Records"][0]["Data"], "AAEC/w==");
    assert!(out["Records"][0]["ApproximateArrivalTimestamp"].as_f64().unwrap_or(0.0) > 1.0e9);
    // Errors come back in CBOR too.
    let (status, _, body) = signed(
        &s,
        cbor("Kinesis_20131202.DescribeStream"),
        &kd_wire::cbor::encode_from_json(&serde_json::json!({"StreamName": "none"}), &[], &[]),
    )
    .await?;
    assert_eq!(status, 400);
    assert_eq!(
        kd_wire::cbor::decode_to_json(&body)?["__type"],
        "ResourceNotFoundException"
    );
    s.stop().await
}

#[tokio::test]
async fn storage_faults_are_never_acknowledged() -> R {
    let s = TestServer::start().await?;
    let c = s.kinesis();
    c.create_stream().stream_name("f").shard_count(1).send().await?;
    let ok1 = c
        .put_record()
        .stream_name("f")
        .partition_key("k")
        .data(blob(1, 16))
        .send()
        .await?;
    let log = s
        .inner()
        .stream_engine()
        .log_of(&scope(), "f")
        .ok_or_else(|| anyhow::anyhow!("no log"))?;
    log.fault_injector().set_fail_syncs(true);
    let m = assert_aws_error!(
        c.put_record()
            .stream_name("f")
            .partition_key("k")
            .data(blob(2, 16))
            .send()
            .await,
        "InternalFailure",
        500
    );
    assert_eq!(m, "Internal Service Failure");
    // Writes stay refused while the fault lasts.
    assert_aws_error!(
        c.put_record()
            .stream_name("f")
            .partition_key("k")
            .data(blob(3, 16))
            .send()
            .await,
        "InternalFailure",
        500
    );
    log.fault_injector().set_fail_syncs(false);
    let ok2 = c
        .put_record()
        .stream_name("f")
        .partition_key("k")
        .data(blob(4, 16))
        .send()
        .await?;
    let it = trim_horizon(&c, "f", "shardId-000000000000").await?;
    let r = c.get_records().shard_iterator(&it).send().await?;
    let seqs: Vec<&str> = r.records().iter().map(|r| r.sequence_number()).collect();
    assert_eq!(
        seqs,
        [ok1.sequence_number(), ok2.sequence_number()],
        "failed writes are never readable"
    );
    assert_eq!(r.records()[1].data().as_ref(), crate::common::payload(4, 16));
    s.stop().await
}
