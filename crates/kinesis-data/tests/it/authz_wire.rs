//! Authorisation end to end: IAM users and assumed-role sessions may do exactly what their
//! policies allow, across Kinesis, S3, IAM and STS; refusals write nothing and carry AWS's
//! codes and messages; `iam = "off"` allows every authenticated request.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_s3::primitives::ByteStream;
use kd_test_support::{TestServer, kinesis_client, kinesis_session_client, s3_client, s3_session_client, sts_client};

use crate::assert_aws_error;
use crate::common::user_with;

type R = anyhow::Result<()>;

#[tokio::test]
async fn kinesis_enforces_identity_policies() -> R {
    let s = TestServer::start().await?;
    let root = s.kinesis();
    root.create_stream()
        .stream_name("allowed")
        .shard_count(1)
        .send()
        .await?;
    root.create_stream().stream_name("secret").shard_count(1).send().await?;
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"kinesis:*","Resource":"arn:aws:kinesis:us-east-1:000000000000:stream/allowed"},
        {"Effect":"Deny","Action":"kinesis:DeleteStream","Resource":"*"}]}"#;
    let (ak, sk) = user_with(&s, "bob", policy).await?;
    let bob = kinesis_client(&s.endpoint(), "us-east-1", &ak, &sk);
    bob.put_record()
        .stream_name("allowed")
        .partition_key("k")
        .data(Blob::new(b"ok".to_vec()))
        .send()
        .await?;
    let m = assert_aws_error!(
        bob.put_record()
            .stream_name("secret")
            .partition_key("k")
            .data(Blob::new(b"no".to_vec()))
            .send()
            .await,
        "AccessDeniedException",
        400
    );
    assert_eq!(
        m,
        "User: arn:aws:iam::000000000000:user/bob is not authorized to perform: kinesis:PutRecord on resource: arn:aws:kinesis:us-east-1:000000000000:stream/secret because no identity-based policy allows the kinesis:PutRecord action"
    );
    let m = assert_aws_error!(
        bob.delete_stream().stream_name("allowed").send().await,
        "AccessDeniedException",
        400
    );
    assert!(m.ends_with("with an explicit deny in an identity-based policy"), "{m}");
    assert_aws_error!(bob.list_streams().send().await, "AccessDeniedException", 400);
    // Nothing was written by the refused calls.
    let d = root.describe_stream().stream_name("allowed").send().await?;
    assert_eq!(
        d.stream_description().map(|d| d.stream_status().as_str()),
        Some("ACTIVE")
    );
    let it = crate::common::trim_horizon(&root, "secret", "shardId-000000000000").await?;
    assert!(root.get_records().shard_iterator(it).send().await?.records().is_empty());
    // Reading the allowed stream by iterator is checked against the iterator's stream.
    let it = bob
        .get_shard_iterator()
        .stream_name("allowed")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await?;
    assert_eq!(
        bob.get_records()
            .shard_iterator(it.shard_iterator().unwrap_or_default())
            .send()
            .await?
            .records()
            .len(),
        1
    );
    // A policy change takes effect at once.
    s.iam()
        .delete_user_policy()
        .user_name("bob")
        .policy_name("p")
        .send()
        .await?;
    assert_aws_error!(
        bob.put_record()
            .stream_name("allowed")
            .partition_key("k")
            .data(Blob::new(b"x".to_vec()))
            .send()
            .await,
        "AccessDeniedException",
        400
    );
    s.stop().await
}

#[tokio::test]
async fn s3_enforces_identity_policies() -> R {
    let s = TestServer::start().await?;
    let root = s.s3();
    root.create_bucket().bucket("data").send().await?;
    root.put_object()
        .bucket("data")
        .key("in/a.txt")
        .body(ByteStream::from_static(b"a"))
        .send()
        .await?;
    let iam = s.iam();
    iam.create_user().user_name("reader").send().await?;
    iam.attach_user_policy()
        .user_name("reader")
        .policy_arn("arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")
        .send()
        .await?;
    iam.put_user_policy()
        .user_name("reader")
        .policy_name("uploads")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::data/uploads/*"}]}"#)
        .send()
        .await?;
    let k = iam.create_access_key().user_name("reader").send().await?;
    let k = k.access_key().ok_or_else(|| anyhow::anyhow!("no key"))?;
    let reader = s3_client(&s.endpoint(), "us-east-1", k.access_key_id(), k.secret_access_key());
    let got = reader
        .get_object()
        .bucket("data")
        .key("in/a.txt")
        .send()
        .await?
        .body
        .collect()
        .await?
        .into_bytes();
    assert_eq!(got.as_ref(), b"a");
    assert_eq!(
        reader.list_objects_v2().bucket("data").send().await?.key_count(),
        Some(1)
    );
    reader
        .put_object()
        .bucket("data")
        .key("uploads/ok.txt")
        .body(ByteStream::from_static(b"u"))
        .send()
        .await?;
    match reader
        .put_object()
        .bucket("data")
        .key("in/b.txt")
        .body(ByteStream::from_static(b"b"))
        .send()
        .await
    {
        Ok(_) => anyhow::bail!("a read-only user wrote an object"),
        Err(e) => {
            let se = e.as_service_error().map(|x| {
                aws_sdk_s3::error::ProvideErrorMetadata::code(x)
                    .unwrap_or_default()
                    .to_owned()
            });
            assert_eq!(se.as_deref(), Some("AccessDenied"));
            assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(403));
        }
    }
    assert!(
        root.head_object().bucket("data").key("in/b.txt").send().await.is_err(),
        "nothing written"
    );
    assert!(
        reader
            .delete_object()
            .bucket("data")
            .key("in/a.txt")
            .send()
            .await
            .is_err()
    );
    assert!(reader.create_bucket().bucket("mine").send().await.is_err());
    // Copy needs GetObject on the source and PutObject on the target.
    reader
        .copy_object()
        .bucket("data")
        .key("uploads/copy.txt")
        .copy_source("data/in/a.txt")
        .send()
        .await?;
    assert!(
        reader
            .copy_object()
            .bucket("data")
            .key("in/copy.txt")
            .copy_source("data/in/a.txt")
            .send()
            .await
            .is_err()
    );
    s.stop().await
}

#[tokio::test]
async fn assumed_roles_act_with_their_policies_and_trust() -> R {
    let s = TestServer::start().await?;
    let iam = s.iam();
    let trust_account = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"sts:AssumeRole"}]}"#;
    let trust_lambda = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    iam.create_role()
        .role_name("lister")
        .assume_role_policy_document(trust_account)
        .send()
        .await?;
    iam.put_role_policy()
        .role_name("lister")
        .policy_name("p")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kinesis:ListStreams","s3:ListAllMyBuckets"],"Resource":"*"}]}"#)
        .send()
        .await?;
    iam.create_role()
        .role_name("fn-role")
        .assume_role_policy_document(trust_lambda)
        .send()
        .await?;
    let sts = s.sts();
    let m = assert_aws_error!(
        sts.assume_role()
            .role_arn("arn:aws:iam::000000000000:role/fn-role")
            .role_session_name("me")
            .send()
            .await,
        "AccessDenied",
        403
    );
    assert!(m.contains("is not authorized to perform: sts:AssumeRole"), "{m}");
    let out = sts
        .assume_role()
        .role_arn("arn:aws:iam::000000000000:role/lister")
        .role_session_name("me")
        .send()
        .await?;
    let c = out.credentials().ok_or_else(|| anyhow::anyhow!("no credentials"))?;
    let k = kinesis_session_client(
        &s.endpoint(),
        "us-east-1",
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token()),
    );
    k.list_streams().send().await?;
    let m = assert_aws_error!(
        k.create_stream().stream_name("nope").shard_count(1).send().await,
        "AccessDeniedException",
        400
    );
    assert!(
        m.starts_with("User: arn:aws:sts::000000000000:assumed-role/lister/me is not authorized"),
        "{m}"
    );
    let s3 = s3_session_client(
        &s.endpoint(),
        "us-east-1",
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token()),
    );
    s3.list_buckets().send().await?;
    // S3 checks the session token too.
    let forged = s3_session_client(
        &s.endpoint(),
        "us-east-1",
        c.access_key_id(),
        c.secret_access_key(),
        Some("forged"),
    );
    assert!(forged.list_buckets().send().await.is_err());
    let who = sts_client(
        &s.endpoint(),
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token()),
    );
    let me = who.get_caller_identity().send().await?;
    assert_eq!(me.arn(), Some("arn:aws:sts::000000000000:assumed-role/lister/me"));
    s.stop().await
}

#[tokio::test]
async fn iam_off_allows_every_authenticated_request() -> R {
    let s = TestServer::start_with(|c| c.iam = "off".to_owned()).await?;
    let (ak, sk) = user_with(
        &s,
        "anyone",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#,
    )
    .await?;
    let k = kinesis_client(&s.endpoint(), "us-east-1", &ak, &sk);
    k.create_stream().stream_name("free").shard_count(1).send().await?;
    let b = s3_client(&s.endpoint(), "us-east-1", &ak, &sk);
    b.create_bucket().bucket("free-bucket").send().await?;
    // Authentication still applies.
    let bad = kinesis_client(&s.endpoint(), "us-east-1", &ak, "wrong");
    assert_aws_error!(bad.list_streams().send().await, "InvalidSignatureException", 400);
    s.stop().await
}

#[tokio::test]
async fn conditions_see_the_caller() -> R {
    let s = TestServer::start().await?;
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"kinesis:ListStreams","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"127.0.0.0/8"}}},
        {"Effect":"Allow","Action":"kinesis:DescribeLimits","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}},
        {"Effect":"Allow","Action":"kinesis:CreateStream","Resource":"arn:aws:kinesis:*:*:stream/${aws:username}-*"}]}"#;
    let (ak, sk) = user_with(&s, "carol", policy).await?;
    let k = kinesis_client(&s.endpoint(), "us-east-1", &ak, &sk);
    k.list_streams().send().await?;
    assert_aws_error!(k.describe_limits().send().await, "AccessDeniedException", 400);
    k.create_stream()
        .stream_name("carol-events")
        .shard_count(1)
        .send()
        .await?;
    assert_aws_error!(
        k.create_stream().stream_name("dave-events").shard_count(1).send().await,
        "AccessDeniedException",
        400
    );
    s.stop().await
}
