//! `kinesis-data batch` (the built binary) against the in-process server: a copy job over a
//! bucket prefix, followed to completion, with its completion report; and an AWS error
//! printed as `error: <Code>: <Message>`.

use std::process::Output;
use std::time::Duration;

use kd_test_support::TestServer;

type R = anyhow::Result<()>;

const TRUST_BATCH: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"batchoperations.s3.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

async fn batch(server: &TestServer, args: &[&str]) -> anyhow::Result<Output> {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kinesis-data"));
    cmd.arg("batch")
        .arg("--endpoint")
        .arg(server.endpoint())
        .args(args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .kill_on_drop(true);
    Ok(tokio::time::timeout(Duration::from_secs(120), cmd.output()).await??)
}

async fn read(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> anyhow::Result<String> {
    let got = s3.get_object().bucket(bucket).key(key).send().await?;
    Ok(String::from_utf8_lossy(&got.body.collect().await?.into_bytes()).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_command_copies_a_prefix_and_writes_the_report() -> R {
    let server = TestServer::start().await?;
    let s3 = server.s3();
    for b in ["src", "dst", "manifests", "reports"] {
        s3.create_bucket().bucket(b).send().await?;
    }
    // 20 objects under in/ (keys that need URL-encoding among them), one outside it.
    let keys: Vec<String> = (0..17)
        .map(|i| format!("in/f{i:02}.txt"))
        .chain([
            "in/with space+plus.txt".to_owned(),
            "in/ünï/cödé,1.txt".to_owned(),
            "in/a&b=c%d.txt".to_owned(),
        ])
        .collect();
    for k in keys.iter().chain([&"other/not-copied.txt".to_owned()]) {
        s3.put_object()
            .bucket("src")
            .key(k)
            .body(format!("body of {k}").into_bytes().into())
            .send()
            .await?;
    }
    let iam = server.iam();
    let role = iam
        .create_role()
        .role_name("batch-cli")
        .assume_role_policy_document(TRUST_BATCH)
        .send()
        .await?
        .role
        .map(|r| r.arn)
        .unwrap_or_default();
    iam.attach_role_policy()
        .role_name("batch-cli")
        .policy_arn("arn:aws:iam::aws:policy/AmazonS3FullAccess")
        .send()
        .await?;

    let out = batch(
        &server,
        &[
            "--role-arn",
            &role,
            "--source-bucket",
            "src",
            "--prefix",
            "in/",
            "--manifest-bucket",
            "manifests",
            "--operation",
            "copy",
            "--target-bucket",
            "dst",
            "--target-prefix",
            "copied",
            "--report-bucket",
            "reports",
            "--report-prefix",
            "batch",
        ],
    )
    .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("Status:         Complete\n"), "{stdout}");
    assert!(
        stdout.contains("Tasks:          20 total, 20 succeeded, 0 failed\n"),
        "{stdout}"
    );
    assert!(stdout.contains("FailureReasons: none\n"), "{stdout}");
    assert!(stderr.contains("(20 objects, ETag "), "{stderr}");
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("JobId:"))
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    assert!(!id.is_empty(), "{stdout}");
    let report_key = format!("batch/job-{id}/manifest.json");
    assert!(
        stdout.contains(&format!("Report:         s3://reports/{report_key}\n")),
        "{stdout}"
    );

    // The copies, and nothing from outside the prefix.
    for k in &keys {
        assert_eq!(read(&s3, "dst", &format!("copied/{k}")).await?, format!("body of {k}"));
    }
    let listed = s3.list_objects_v2().bucket("dst").send().await?;
    assert_eq!(listed.key_count(), Some(20));
    // The manifest the command wrote: one URL-encoded line per object.
    let manifests = s3
        .list_objects_v2()
        .bucket("manifests")
        .prefix("manifests/")
        .send()
        .await?;
    let mkey = manifests
        .contents()
        .first()
        .and_then(|o| o.key())
        .unwrap_or_default()
        .to_owned();
    let csv = read(&s3, "manifests", &mkey).await?;
    assert_eq!(csv.lines().count(), 20, "{csv}");
    assert!(csv.contains("src,in/with%20space%2Bplus.txt\n"), "{csv}");
    assert!(csv.contains("src,in/%C3%BCn%C3%AF/c%C3%B6d%C3%A9%2C1.txt\n"), "{csv}");

    // The completion report: every task succeeded.
    let manifest_json: serde_json::Value = serde_json::from_str(&read(&s3, "reports", &report_key).await?)?;
    assert_eq!(manifest_json["Format"], "Report_CSV_20180820");
    let mut rows = String::new();
    for r in manifest_json["Results"].as_array().cloned().unwrap_or_default() {
        rows.push_str(&read(&s3, "reports", r["Key"].as_str().unwrap_or_default()).await?);
    }
    assert_eq!(rows.lines().count(), 20, "{rows}");
    assert!(rows.lines().all(|l| l.contains(",succeeded,")), "{rows}");

    // An AWS error: the manifest bucket does not exist.
    let out = batch(
        &server,
        &[
            "--role-arn",
            &role,
            "--source-bucket",
            "src",
            "--manifest-bucket",
            "no-such-bucket",
            "--operation",
            "untag",
        ],
    )
    .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("error: NoSuchBucket: "), "{stderr}");
    Ok(())
}
