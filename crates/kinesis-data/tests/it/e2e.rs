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

struct Running {
    child: Child,
    endpoint: String,
    addr: std::net::SocketAddr,
}

fn start(data_dir: &Path, extra: &[&str]) -> anyhow::Result<Running> {
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

fn terminate(r: &mut Running) -> anyhow::Result<std::process::ExitStatus> {
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
    assert_eq!(v["services"]["firehose"], "not_implemented");
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
