//! Pipeline files applied to the in-process server through its public APIs: parts 1–4 of
//! the seed come up from one file and work; applying the same file again changes nothing;
//! an edited file changes exactly what was edited, and `plan` (a dry run) says so first.

use std::time::Duration;

use flate2::read::GzDecoder;
use kd_test_support::{ACCESS_KEY, ACCOUNT, SECRET_KEY, TestServer, wait_until};
use kinesis_data::client::Credentials;
use kinesis_data::pipeline::{Change, apply_to, parse};

use crate::lambda_e2e::example_binary;

type R = anyhow::Result<()>;

fn creds() -> Credentials {
    Credentials {
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET_KEY.into(),
        session_token: None,
    }
}

const PIPELINE: &str = r#"
[[role]]
name = "fh"
trust = ["firehose"]
managed_policies = ["AmazonS3FullAccess", "AmazonKinesisFullAccess"]

[[role]]
name = "fn"
trust = ["lambda"]
managed_policies = ["AmazonS3FullAccess"]

[[role]]
name = "batch"
trust = ["batchoperations.s3"]
managed_policies = ["AmazonS3FullAccess", "service-role/AWSLambdaRole"]

[[stream]]
name = "clicks"
shards = @SHARDS@

[[bucket]]
name = "lake"

[[bucket]]
name = "archive"

[[delivery_stream]]
name = "to-lake"
source = "clicks"
role = "fh"
bucket = "lake"
prefix = "clicks/"
compression = "GZIP"
buffer_mib = 1
buffer_seconds = 1

[[delivery_stream]]
name = "to-archive"
source = "clicks"
role = "fh"
bucket = "archive"
buffer_mib = 1
buffer_seconds = 1

[[bucket]]
name = "uploads"

[[bucket.notification]]
function = "copier"
prefix = "in/"

[[bucket]]
name = "processed"

[[function]]
name = "copier"
role = "fn"
code = { example = "s3-copy" }
environment = { TARGET_BUCKET = "processed", TARGET_PREFIX = "@PFX@" }

[[function]]
name = "batch-copier"
role = "fn"
code = { example = "batch-copy" }
environment = { TARGET_BUCKET = "processed" }

[[batch_job]]
name = "copy-in"
role = "batch"
source_bucket = "uploads"
source_prefix = "in/"
report_bucket = "processed"
report_prefix = "reports"
operation = { lambda = "batch-copier", user_arguments = { targetBucket = "processed" } }
"#;

fn pipeline(shards: u32, prefix: &str) -> kinesis_data::pipeline::Pipeline {
    let text = PIPELINE
        .replace("@SHARDS@", &shards.to_string())
        .replace("@PFX@", prefix);
    parse("test.toml", &text).expect("valid pipeline")
}

fn lines(body: &[u8], gz: bool) -> usize {
    use std::io::Read as _;
    let mut text = String::new();
    if gz {
        let _ = GzDecoder::new(body).read_to_string(&mut text);
    } else {
        text = String::from_utf8_lossy(body).into_owned();
    }
    text.lines().count()
}

async fn count(s3: &aws_sdk_s3::Client, bucket: &str, gz: bool) -> Option<usize> {
    let list = s3.list_objects_v2().bucket(bucket).send().await.ok()?;
    let mut n = 0;
    for o in list.contents() {
        let got = s3.get_object().bucket(bucket).key(o.key()?).send().await.ok()?;
        n += lines(&got.body.collect().await.ok()?.into_bytes(), gz);
    }
    Some(n)
}

#[tokio::test]
async fn a_pipeline_file_applies_idempotently_and_edits_change_what_was_edited() -> R {
    let server = TestServer::start().await?;
    let endpoint = server.endpoint();
    let examples = example_binary("s3-copy")?.parent().map(std::path::Path::to_path_buf);
    example_binary("batch-copy")?;
    let s3 = server.s3();
    let apply = |p: kinesis_data::pipeline::Pipeline, dry: bool| {
        let (endpoint, examples) = (endpoint.clone(), examples.clone());
        async move { apply_to(&endpoint, "us-east-1", ACCOUNT, creds(), &p, dry, examples).await }
    };

    // Before the first apply, the plan creates everything.
    let planned = apply(pipeline(2, ""), true).await?;
    assert!(planned.iter().all(|c| matches!(c, Change::Create(_))), "{planned:#?}");
    let first = apply(pipeline(2, ""), false).await?;
    assert_eq!(first.len(), planned.len(), "{first:#?}");

    // Parts 1 and 2: records land in both buckets.
    let records: Vec<serde_json::Value> = (0..200)
        .map(|i| serde_json::json!({"Data": base64_of(&format!("{{\"n\":{i}}}\n")), "PartitionKey": i.to_string()}))
        .collect();
    let k = kinesis_data::client::Client::new(&endpoint, "us-east-1", creds())?;
    k.json(
        "kinesis",
        "Kinesis_20131202.PutRecords",
        &serde_json::json!({"StreamName": "clicks", "Records": records}),
    )
    .await?;
    wait_until(Duration::from_secs(30), "200 records in lake and archive", || {
        let s3 = s3.clone();
        async move {
            (count(&s3, "lake", true).await? == 200 && count(&s3, "archive", false).await? == 200).then_some(())
        }
    })
    .await?;
    // Part 3: the notification invokes the copier.
    s3.put_object()
        .bucket("uploads")
        .key("in/a.txt")
        .body(b"part 3".to_vec().into())
        .send()
        .await?;
    wait_until(Duration::from_secs(60), "the copy of in/a.txt", || {
        let s3 = s3.clone();
        async move { s3.head_object().bucket("processed").key("in/a.txt").send().await.ok() }
    })
    .await?;

    // Applying the same file again changes nothing (the batch job is not created twice).
    let again = apply(pipeline(2, ""), false).await?;
    assert!(again.iter().all(|c| matches!(c, Change::Unchanged(_))), "{again:#?}");

    // An edit: the plan names exactly the edited resources, applying changes them.
    let planned = apply(pipeline(3, "copies/"), true).await?;
    let changed: Vec<String> = planned
        .iter()
        .filter(|c| !matches!(c, Change::Unchanged(_)))
        .map(ToString::to_string)
        .collect();
    let want = ["~ stream clicks: shards 2 → 3", "~ function copier: configuration"];
    assert_eq!(changed.len(), want.len(), "{planned:#?}");
    for (have, want) in changed.iter().zip(want) {
        assert!(have.starts_with(want), "{have} is not {want}…");
    }
    apply(pipeline(3, "copies/"), false).await?;
    let k2 = k
        .json(
            "kinesis",
            "Kinesis_20131202.DescribeStreamSummary",
            &serde_json::json!({"StreamName": "clicks"}),
        )
        .await?;
    assert_eq!(k2["StreamDescriptionSummary"]["OpenShardCount"], 3);
    s3.put_object()
        .bucket("uploads")
        .key("in/b.txt")
        .body(b"edited".to_vec().into())
        .send()
        .await?;
    wait_until(Duration::from_secs(60), "the copy under the new prefix", || {
        let s3 = s3.clone();
        async move {
            s3.head_object()
                .bucket("processed")
                .key("copies/in/b.txt")
                .send()
                .await
                .ok()
        }
    })
    .await?;
    Ok(())
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `put`, `tail` and `ls` against the in-process server.
#[tokio::test]
async fn put_tail_and_ls_talk_to_a_running_server() -> R {
    use kinesis_data::tools::{Target, ls, put, tail};
    let server = TestServer::start().await?;
    let target = Target {
        endpoint: server.endpoint(),
        region: "us-east-1".into(),
    };
    let p = parse(
        "t.toml",
        "[[stream]]\nname = \"s\"\nshards = 2\n\n[[bucket]]\nname = \"bkt\"\n",
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    apply_to(&server.endpoint(), "us-east-1", ACCOUNT, creds(), &p, false, None).await?;
    let input: String = (0..1234).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    assert_eq!(put(&target, "s", None, input.as_bytes()).await?, 1234);
    let mut out = Vec::new();
    assert_eq!(tail(&target, "s", false, false, &mut out).await?, 1234);
    let mut got: Vec<String> = String::from_utf8(out)?.lines().map(str::to_owned).collect();
    let mut want: Vec<String> = input.lines().map(str::to_owned).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    server
        .s3()
        .put_object()
        .bucket("bkt")
        .key("dir/x.txt")
        .body(b"12345".to_vec().into())
        .send()
        .await?;
    let mut listing = Vec::new();
    ls(&target, Some("s3://bkt/dir/"), &mut listing).await?;
    let listing = String::from_utf8(listing)?;
    assert!(
        listing.contains("           5  ") && listing.trim_end().ends_with("dir/x.txt"),
        "{listing}"
    );
    let mut buckets = Vec::new();
    ls(&target, None, &mut buckets).await?;
    assert_eq!(String::from_utf8(buckets)?, "bkt\n");
    assert!(ls(&target, Some("b/x"), std::io::sink()).await.is_err());
    Ok(())
}
