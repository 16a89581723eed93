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
