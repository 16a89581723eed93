//! End-to-end tests that start the built `kinesis-data` binary as a user would.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use kd_test_support::{kinesis_client, raw_http};

use crate::common::{blob, payload, read_all};

type R = anyhow::Result<()>;

pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) endpoint: String,
    pub(crate) addr: std::net::SocketAddr,
}

pub(crate) fn start(data_dir: &Path, extra: &[&str]) -> anyhow::Result<Running> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kinesis-data"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("kinesis-data ready on ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let endpoint = rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| anyhow::anyhow!("server never printed its ready line"))?;
    let addr = endpoint.trim_start_matches("http://").parse()?;
    Ok(Running { child, endpoint, addr })
}

pub(crate) fn terminate(r: &mut Running) -> anyhow::Result<std::process::ExitStatus> {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(r.child.id().to_string())
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM failed");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = r.child.try_wait()? {
            return Ok(s);
        }
        anyhow::ensure!(Instant::now() < deadline, "server did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn binary_is_ready_healthy_and_exits_cleanly_on_sigterm() -> R {
    let dir = tempfile::tempdir()?;
    let mut r = start(dir.path(), &[])?;
    let (status, _, body) = raw_http(r.addr, "GET", "/_kinesis-data/health", &[], b"").await?;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    assert_eq!(v["services"]["kinesis"], "running");
    assert_eq!(v["services"]["firehose"], "running");
    let c = kinesis_client(&r.endpoint, "us-east-1", "test", "test");
    c.create_stream().stream_name("e2e").shard_count(1).send().await?;
    // reset empties everything.
    let (status, _, _) = raw_http(r.addr, "POST", "/_kinesis-data/reset", &[], b"").await?;
    assert_eq!(status, 200);
    assert!(c.list_streams().send().await?.stream_names().is_empty());
    let exit = terminate(&mut r)?;
    assert!(exit.success(), "exit status {exit:?}");
    // --no-reset refuses reset.
    let mut r = start(dir.path(), &["--no-reset"])?;
    let (status, _, _) = raw_http(r.addr, "POST", "/_kinesis-data/reset", &[], b"").await?;
    assert_eq!(status, 403);
    assert!(terminate(&mut r)?.success());
    Ok(())
}

/// Kill -9 in the middle of a concurrent write load; after a restart every acknowledged
/// record reads back with the same shard, sequence number and bytes.
#[tokio::test]
async fn kill_9_during_writes_loses_no_acknowledged_record() -> R {
    let dir = tempfile::tempdir()?;
    let mut r = start(dir.path(), &[])?;
    let c = kinesis_client(&r.endpoint, "us-east-1", "test", "test");
    c.create_stream().stream_name("crash").shard_count(2).send().await?;
    kd_test_support::wait_until(Duration::from_secs(5), "ACTIVE", || async {
        let d = c.describe_stream_summary().stream_name("crash").send().await.ok()?;
        (d.stream_description_summary()?.stream_status().as_str() == "ACTIVE").then_some(())
    })
    .await?;
    let acked: Arc<Mutex<HashMap<String, (String, u64)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let c = c.clone();
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for round in 0u64.. {
                let mut req = c.put_records().stream_name("crash");
                let seeds: Vec<u64> = (0..20).map(|i| (w << 40) | (round << 8) | i).collect();
                for s in &seeds {
                    req = req.records(
                        PutRecordsRequestEntry::builder()
                            .partition_key(format!("{s}"))
                            .data(blob(*s, 200))
                            .build()
                            .ok()?,
                    );
                }
                let Ok(out) = req.send().await else { return Some(()) };
                let mut a = acked.lock().ok()?;
                for (rec, s) in out.records().iter().zip(&seeds) {
                    if let (Some(seq), Some(shard)) = (rec.sequence_number(), rec.shard_id()) {
                        a.insert(seq.to_owned(), (shard.to_owned(), *s));
                    }
                }
            }
            Some(())
        }));
    }
    kd_test_support::wait_until(Duration::from_secs(60), "2,000 acknowledged records", || {
        let n = acked.lock().map(|a| a.len()).unwrap_or(0);
        async move { (n >= 2000).then_some(()) }
    })
    .await?;
    r.child.kill()?; // SIGKILL
    r.child.wait()?;
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let mut r = start(dir.path(), &[])?;
    let c = kinesis_client(&r.endpoint, "us-east-1", "test", "test");
    let mut seen = HashMap::new();
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        for (seq, data, _) in read_all(&c, "crash", shard).await? {
            let prev = seen.insert(seq.clone(), (shard.to_owned(), data));
            assert!(prev.is_none(), "duplicate sequence number {seq}");
        }
    }
    for (seq, (shard, seed)) in &acked {
        let got = seen
            .get(seq)
            .ok_or_else(|| anyhow::anyhow!("acknowledged record {seq} lost"))?;
        assert_eq!(&got.0, shard, "record {seq} moved shard");
        assert_eq!(got.1, payload(*seed, 200), "record {seq} changed");
    }
    assert!(seen.len() >= acked.len());
    assert!(terminate(&mut r)?.success());
    Ok(())
}

fn aws_cli(endpoint: &str, dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("aws")
        .args(["--endpoint-url", endpoint, "--region", "us-east-1"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_CONFIG_FILE", dir.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("no-credentials"))
        .env("AWS_PAGER", "")
        .current_dir(dir)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run the AWS CLI (`pip install awscli`): {e}"))?;
    anyhow::ensure!(
        out.status.success(),
        "aws {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The real AWS CLI against the binary: high-level `aws s3` commands (with a 100 MiB
/// multipart upload and download) and `aws s3api` calls.
#[tokio::test]
async fn aws_cli_s3_round_trip() -> R {
    let dir = tempfile::tempdir()?;
    let mut r = start(&dir.path().join("data"), &[])?;
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("tree/sub"))?;
    let big: Vec<u8> = (0..100u64 * 1024 * 1024 / 4096)
        .flat_map(|i| payload(i, 4096))
        .collect();
    std::fs::write(work.join("big.bin"), &big)?;
    std::fs::write(work.join("tree/a.txt"), b"alpha")?;
    std::fs::write(work.join("tree/sub/b.txt"), b"bravo")?;
    let ep = r.endpoint.clone();
    let cli = |args: &[&str]| aws_cli(&ep, &work, args);
    cli(&["s3", "mb", "s3://cli-bucket"])?;
    cli(&["s3", "cp", "big.bin", "s3://cli-bucket/big.bin"])?;
    cli(&["s3", "cp", "s3://cli-bucket/big.bin", "big.down"])?;
    assert!(
        std::fs::read(work.join("big.down"))? == big,
        "100 MiB round trip differs"
    );
    let head = cli(&["s3api", "head-object", "--bucket", "cli-bucket", "--key", "big.bin"])?;
    assert!(head.contains("\"ContentLength\": 104857600"), "{head}");
    assert!(head.contains("-"), "a multipart ETag: {head}");
    cli(&["s3", "sync", "tree", "s3://cli-bucket/tree/"])?;
    let ls = cli(&["s3", "ls", "--recursive", "s3://cli-bucket/tree/"])?;
    assert!(ls.contains("tree/a.txt") && ls.contains("tree/sub/b.txt"), "{ls}");
    cli(&[
        "s3api",
        "put-object-tagging",
        "--bucket",
        "cli-bucket",
        "--key",
        "tree/a.txt",
        "--tagging",
        "TagSet=[{Key=k,Value=v}]",
    ])?;
    let tags = cli(&[
        "s3api",
        "get-object-tagging",
        "--bucket",
        "cli-bucket",
        "--key",
        "tree/a.txt",
    ])?;
    assert!(tags.contains("\"Key\": \"k\""), "{tags}");
    let listed = cli(&[
        "s3api",
        "list-objects-v2",
        "--bucket",
        "cli-bucket",
        "--prefix",
        "tree/",
        "--delimiter",
        "/",
    ])?;
    assert!(
        listed.contains("tree/sub/") && listed.contains("tree/a.txt"),
        "{listed}"
    );
    cli(&["s3", "rm", "--recursive", "s3://cli-bucket/"])?;
    assert!(cli(&["s3", "ls", "--recursive", "s3://cli-bucket/"])?.trim().is_empty());
    cli(&["s3", "rb", "s3://cli-bucket"])?;
    assert!(terminate(&mut r)?.success());
    Ok(())
}

/// Kill -9 during concurrent uploads: every acknowledged object reads back whole after a
/// restart, and no listed object is half-written.
#[tokio::test]
async fn kill_9_during_uploads_loses_no_acknowledged_object() -> R {
    use aws_sdk_s3::primitives::ByteStream;
    let dir = tempfile::tempdir()?;
    let mut r = start(dir.path(), &[])?;
    let c = kd_test_support::s3_client(&r.endpoint, "us-east-1", "test", "test");
    c.create_bucket().bucket("crash").send().await?;
    let size_of = |seed: u64| 1024 + (seed % 7) as usize * 50_000;
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let c = c.clone();
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0u64.. {
                let seed = (w << 32) | i;
                let body = ByteStream::from(payload(seed, size_of(seed)));
                if c.put_object()
                    .bucket("crash")
                    .key(format!("obj-{seed}"))
                    .body(body)
                    .send()
                    .await
                    .is_err()
                {
                    return;
                }
                if let Ok(mut a) = acked.lock() {
                    a.push(seed);
                }
            }
        }));
    }
    kd_test_support::wait_until(Duration::from_secs(60), "300 acknowledged objects", || {
        let n = acked.lock().map(|a| a.len()).unwrap_or(0);
        async move { (n >= 300).then_some(()) }
    })
    .await?;
    r.child.kill()?;
    r.child.wait()?;
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let mut r = start(dir.path(), &[])?;
    let c = kd_test_support::s3_client(&r.endpoint, "us-east-1", "test", "test");
    for seed in &acked {
        let got = c.get_object().bucket("crash").key(format!("obj-{seed}")).send().await?;
        let bytes = got.body.collect().await?.into_bytes();
        assert_eq!(
            bytes.as_ref(),
            payload(*seed, size_of(*seed)).as_slice(),
            "object {seed} damaged"
        );
    }
    let mut token = None;
    let mut listed = 0;
    loop {
        let page = c
            .list_objects_v2()
            .bucket("crash")
            .set_continuation_token(token)
            .send()
            .await?;
        for o in page.contents() {
            let seed: u64 = o
                .key()
                .and_then(|k| k.strip_prefix("obj-"))
                .and_then(|s| s.parse().ok())
                .unwrap_or(u64::MAX);
            assert_eq!(
                o.size(),
                Some(size_of(seed) as i64),
                "listed object {:?} is not whole",
                o.key()
            );
            listed += 1;
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        token = page.next_continuation_token().map(str::to_owned);
    }
    assert!(listed >= acked.len());
    assert!(terminate(&mut r)?.success());
    Ok(())
}

/// Every line of every object in `bucket` (all pages).
async fn bucket_lines(c: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await?;
        for o in page.contents() {
            let got = c
                .get_object()
                .bucket(bucket)
                .key(o.key().unwrap_or_default())
                .send()
                .await?;
            let body = got.body.collect().await?.into_bytes();
            lines.extend(String::from_utf8_lossy(&body).lines().map(str::to_owned));
        }
        if page.is_truncated() != Some(true) {
            return Ok(lines);
        }
        token = page.next_continuation_token().map(str::to_owned);
    }
}

/// A stream feeding a delivery stream feeding a bucket, under a concurrent write load; kill -9
/// while objects are being delivered, restart, and every acknowledged record lands in the
/// bucket exactly once (and nothing that was never sent appears).
#[tokio::test]
async fn kill_9_mid_delivery_delivers_every_record_exactly_once() -> R {
    use aws_sdk_firehose::types::{
        BufferingHints, DeliveryStreamType, ExtendedS3DestinationConfiguration, KinesisStreamSourceConfiguration,
    };
    use std::collections::HashSet;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let cfg = dir.path().join("kinesis-data.toml");
    std::fs::write(
        &cfg,
        "[kinesis]\ncreate_delay_ms = 0\n[firehose]\ncreate_delay_ms = 0\npoll_interval_ms = 50\nstart_at_trim_horizon = true\n",
    )?;
    let cfg_arg = cfg.to_string_lossy().into_owned();
    let args = ["--config", cfg_arg.as_str()];
    let mut r = start(&data, &args)?;
    let k = kinesis_client(&r.endpoint, "us-east-1", "test", "test");
    let s3 = kd_test_support::s3_client(&r.endpoint, "us-east-1", "test", "test");
    let f = kd_test_support::firehose_client(&r.endpoint, "us-east-1", "test", "test");
    let iam = kd_test_support::iam_client(&r.endpoint, "test", "test", None);
    k.create_stream().stream_name("src").shard_count(2).send().await?;
    kd_test_support::wait_until(Duration::from_secs(5), "ACTIVE", || async {
        let d = k.describe_stream_summary().stream_name("src").send().await.ok()?;
        (d.stream_description_summary()?.stream_status().as_str() == "ACTIVE").then_some(())
    })
    .await?;
    s3.create_bucket().bucket("sink").send().await?;
    let role = iam
        .create_role()
        .role_name("delivery")
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"firehose.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await?
        .role()
        .map(|r| r.arn().to_owned())
        .unwrap_or_default();
    for p in ["AmazonS3FullAccess", "AmazonKinesisFullAccess"] {
        iam.attach_role_policy()
            .role_name("delivery")
            .policy_arn(format!("arn:aws:iam::aws:policy/{p}"))
            .send()
            .await?;
    }
    f.create_delivery_stream()
        .delivery_stream_name("to-sink")
        .delivery_stream_type(DeliveryStreamType::KinesisStreamAsSource)
        .kinesis_stream_source_configuration(
            KinesisStreamSourceConfiguration::builder()
                .kinesis_stream_arn("arn:aws:kinesis:us-east-1:000000000000:stream/src")
                .role_arn(&role)
                .build()?,
        )
        .extended_s3_destination_configuration(
            ExtendedS3DestinationConfiguration::builder()
                .role_arn(&role)
                .bucket_arn("arn:aws:s3:::sink")
                .buffering_hints(BufferingHints::builder().size_in_mbs(1).interval_in_seconds(1).build())
                .build()?,
        )
        .send()
        .await?;

    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let attempted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (k, acked, attempted) = (k.clone(), acked.clone(), attempted.clone());
        writers.push(tokio::spawn(async move {
            for round in 0u64.. {
                let names: Vec<String> = (0..25)
                    .map(|i| format!("rec-{}", w * 1_000_000_000 + round * 25 + i))
                    .collect();
                attempted.lock().ok()?.extend(names.iter().cloned());
                let mut req = k.put_records().stream_name("src");
                for n in &names {
                    req = req.records(
                        PutRecordsRequestEntry::builder()
                            .partition_key(n.clone())
                            .data(aws_sdk_kinesis::primitives::Blob::new(format!("{n}\n")))
                            .build()
                            .ok()?,
                    );
                }
                let Ok(out) = req.send().await else { return Some(()) };
                {
                    let mut a = acked.lock().ok()?;
                    for (rec, n) in out.records().iter().zip(&names) {
                        if rec.sequence_number().is_some() {
                            a.insert(n.clone());
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Some(())
        }));
    }
    // Kill while delivery is under way: objects have landed and more records are arriving.
    kd_test_support::wait_until(Duration::from_secs(60), "delivery under way", || async {
        let n = acked.lock().map(|a| a.len()).unwrap_or(0);
        let objects = s3
            .list_objects_v2()
            .bucket("sink")
            .send()
            .await
            .ok()
            .map_or(0, |l| l.contents().len());
        (n >= 3000 && objects >= 2).then_some(())
    })
    .await?;
    r.child.kill()?; // SIGKILL
    r.child.wait()?;
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let attempted = attempted.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();

    let mut r = start(&data, &args)?;
    let s3 = kd_test_support::s3_client(&r.endpoint, "us-east-1", "test", "test");
    let check = |lines: &[String]| -> anyhow::Result<usize> {
        let mut seen = HashSet::new();
        for l in lines {
            anyhow::ensure!(seen.insert(l.as_str()), "record {l} delivered twice");
            anyhow::ensure!(attempted.contains(l), "record {l} was never sent");
        }
        Ok(acked.iter().filter(|a| !seen.contains(a.as_str())).count())
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let lines = bucket_lines(&s3, "sink").await?;
        let missing = check(&lines)?;
        if missing == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{missing} of {} acknowledged records never delivered",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Nothing arrives twice later either (a redelivery would show within a few intervals).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(check(&bucket_lines(&s3, "sink").await?)?, 0);
    assert!(terminate(&mut r)?.success());
    Ok(())
}
