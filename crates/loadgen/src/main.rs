//! `loadgen`: drives any Kinesis endpoint (kinesis-data, AWS, or a peer such as kinesalite)
//! with aws-sdk-kinesis and reports throughput and latency. It is the benchmark behind the
//! figures in docs/benchmarks.md; it is not part of the server.
//!
//! ```text
//! loadgen put  --endpoint http://127.0.0.1:4566 --stream bench --shards 2 --clients 16 --batch 500 --record-bytes 1024 --seconds 20
//! loadgen get  --endpoint http://127.0.0.1:4566 --stream bench
//! loadgen put-one --endpoint http://127.0.0.1:4566 --stream bench1 --clients 1 --seconds 10
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType, StreamStatus};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "loadgen", about = "Load generator for Kinesis endpoints")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// Endpoint URL.
    #[arg(long, default_value = "http://127.0.0.1:4566")]
    endpoint: String,
    /// Region.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Access key id.
    #[arg(long, default_value = "test")]
    access_key: String,
    /// Secret key.
    #[arg(long, default_value = "test")]
    secret_key: String,
    /// Stream name.
    #[arg(long, default_value = "loadgen")]
    stream: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// PutRecords load: `clients` concurrent callers, `batch` records each.
    Put {
        #[command(flatten)]
        common: Common,
        /// Shards of the stream (created if missing).
        #[arg(long, default_value_t = 2)]
        shards: i32,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Records per PutRecords call.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Bytes per record.
        #[arg(long, default_value_t = 1024)]
        record_bytes: usize,
        /// How long to run.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// Single-record PutRecord latency.
    PutOne {
        #[command(flatten)]
        common: Common,
        /// Concurrent clients.
        #[arg(long, default_value_t = 1)]
        clients: usize,
        /// Bytes per record.
        #[arg(long, default_value_t = 1024)]
        record_bytes: usize,
        /// How long to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Reads every shard from TRIM_HORIZON to the tip and reports the read rate.
    Get {
        #[command(flatten)]
        common: Common,
    },
    /// S3 small objects: `clients` concurrent PUTs (then GETs of what was written).
    S3Small {
        #[command(flatten)]
        common: Common,
        /// Bucket (created if missing).
        #[arg(long, default_value = "loadgen")]
        bucket: String,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Bytes per object.
        #[arg(long, default_value_t = 4096)]
        object_bytes: usize,
        /// Seconds for each of the PUT and GET phases.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// S3 one large object: PUT it from a file, GET it to nowhere; MB/s of each.
    S3Big {
        #[command(flatten)]
        common: Common,
        /// Bucket (created if missing).
        #[arg(long, default_value = "loadgen")]
        bucket: String,
        /// Object size in MiB.
        #[arg(long, default_value_t = 1024)]
        mib: u64,
        /// Scratch file to upload from (created if missing).
        #[arg(long, default_value = "/tmp/loadgen-big.bin")]
        file: std::path::PathBuf,
    },
    /// Firehose: fill a 2-shard stream with a backlog of 1 KiB JSON records, then create a GZIP
    /// delivery stream over it and time the delivery of the whole backlog (the server must run
    /// with `[firehose] start_at_trim_horizon = true`).
    FirehoseBacklog {
        #[command(flatten)]
        common: Common,
        /// Backlog size in MiB.
        #[arg(long, default_value_t = 1024)]
        mib: u64,
        /// Bucket the delivery stream writes to.
        #[arg(long, default_value = "loadgen-firehose")]
        bucket: String,
    },
    /// Firehose: delay from a PutRecord to its object being listed, IntervalInSeconds=1.
    FirehoseLatency {
        #[command(flatten)]
        common: Common,
        /// Samples.
        #[arg(long, default_value_t = 10)]
        samples: usize,
        /// Bucket the delivery stream writes to.
        #[arg(long, default_value = "loadgen-firehose-latency")]
        bucket: String,
    },
    /// S3 listing: ListObjectsV2 pages of 1,000 keys at random points of a large bucket.
    S3List {
        #[command(flatten)]
        common: Common,
        /// Bucket (created and filled with `keys` empty objects if it holds fewer).
        #[arg(long, default_value = "loadgen-list")]
        bucket: String,
        /// Keys in the bucket.
        #[arg(long, default_value_t = 1_000_000)]
        keys: u64,
        /// Concurrent clients while filling.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// List calls to time.
        #[arg(long, default_value_t = 200)]
        lists: usize,
    },
}

fn client(c: &Common) -> aws_sdk_kinesis::Client {
    let conf = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(c.region.clone()))
        .endpoint_url(&c.endpoint)
        .credentials_provider(Credentials::new(&c.access_key, &c.secret_key, None, None, "loadgen"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_kinesis::Client::from_conf(conf)
}

async fn ensure_stream(k: &aws_sdk_kinesis::Client, name: &str, shards: i32) -> anyhow::Result<()> {
    if k.describe_stream_summary().stream_name(name).send().await.is_err() {
        k.create_stream()
            .stream_name(name)
            .shard_count(shards)
            .send()
            .await
            .context("create stream")?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let d = k.describe_stream_summary().stream_name(name).send().await?;
        if d.stream_description_summary().map(|s| s.stream_status()) == Some(&StreamStatus::Active) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "stream {name} never became ACTIVE");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Stats {
    latencies_us: Vec<u64>,
    records: u64,
    bytes: u64,
    failed: u64,
}

impl Stats {
    fn new() -> Self {
        Self {
            latencies_us: Vec::new(),
            records: 0,
            bytes: 0,
            failed: 0,
        }
    }

    /// Sums the stats of finished workers.
    async fn gather(tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Stats>>>) -> anyhow::Result<Stats> {
        let mut all = Stats::new();
        for t in tasks {
            let s = t.await??;
            all.latencies_us.extend(s.latencies_us);
            all.records += s.records;
            all.bytes += s.bytes;
            all.failed += s.failed;
        }
        Ok(all)
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn report(name: &str, elapsed: Duration, mut s: Stats) {
    s.latencies_us.sort_unstable();
    let secs = elapsed.as_secs_f64();
    println!(
        "{name}: {} records in {:.1} s = {:.0} records/s, {:.1} MB/s; calls {} (failed records {}); latency ms p50 {:.2} p99 {:.2} max {:.2}",
        s.records,
        secs,
        s.records as f64 / secs,
        s.bytes as f64 / secs / 1e6,
        s.latencies_us.len(),
        s.failed,
        percentile(&s.latencies_us, 0.50),
        percentile(&s.latencies_us, 0.99),
        percentile(&s.latencies_us, 1.0),
    );
}

async fn put(
    common: Common,
    shards: i32,
    clients: usize,
    batch: usize,
    record_bytes: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let k = client(&common);
    ensure_stream(&k, &common.stream, shards).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let seq = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..clients {
        let k = k.clone();
        let stop = stop.clone();
        let seq = seq.clone();
        let stream = common.stream.clone();
        tasks.push(tokio::spawn(async move {
            let data = Blob::new(vec![b'x'; record_bytes]);
            let mut st = Stats::new();
            while !stop.load(Ordering::Relaxed) {
                let base = seq.fetch_add(batch as u64, Ordering::Relaxed);
                let entries: Vec<PutRecordsRequestEntry> = (0..batch as u64)
                    .filter_map(|i| {
                        PutRecordsRequestEntry::builder()
                            .partition_key(format!("pk-{w}-{}", base + i))
                            .data(data.clone())
                            .build()
                            .ok()
                    })
                    .collect();
                let t = Instant::now();
                match k
                    .put_records()
                    .stream_name(&stream)
                    .set_records(Some(entries))
                    .send()
                    .await
                {
                    Ok(out) => {
                        st.latencies_us.push(t.elapsed().as_micros() as u64);
                        let failed = out.failed_record_count().unwrap_or(0) as u64;
                        st.failed += failed;
                        st.records += batch as u64 - failed;
                        st.bytes += (batch as u64 - failed) * record_bytes as u64;
                    }
                    Err(e) => {
                        eprintln!("PutRecords failed: {e:?}");
                        st.failed += batch as u64;
                    }
                }
            }
            anyhow::Ok(st)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let all = Stats::gather(tasks).await?;
    report(
        &format!("PutRecords x{batch} x{record_bytes}B, {clients} clients, {shards} shards"),
        start.elapsed(),
        all,
    );
    Ok(())
}

async fn put_one(common: Common, clients: usize, record_bytes: usize, seconds: u64) -> anyhow::Result<()> {
    let k = client(&common);
    ensure_stream(&k, &common.stream, 1).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..clients {
        let k = k.clone();
        let stop = stop.clone();
        let stream = common.stream.clone();
        tasks.push(tokio::spawn(async move {
            let data = Blob::new(vec![b'y'; record_bytes]);
            let mut st = Stats::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let t = Instant::now();
                match k
                    .put_record()
                    .stream_name(&stream)
                    .partition_key(format!("{w}-{i}"))
                    .data(data.clone())
                    .send()
                    .await
                {
                    Ok(_) => {
                        st.latencies_us.push(t.elapsed().as_micros() as u64);
                        st.records += 1;
                        st.bytes += record_bytes as u64;
                    }
                    Err(e) => {
                        eprintln!("PutRecord failed: {e:?}");
                        st.failed += 1;
                    }
                }
            }
            anyhow::Ok(st)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let all = Stats::gather(tasks).await?;
    report(
        &format!("PutRecord x{record_bytes}B, {clients} clients"),
        start.elapsed(),
        all,
    );
    Ok(())
}

async fn get(common: Common) -> anyhow::Result<()> {
    let k = client(&common);
    let shards = k
        .list_shards()
        .stream_name(&common.stream)
        .send()
        .await?
        .shards()
        .to_vec();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for sh in shards {
        let k = k.clone();
        let stream = common.stream.clone();
        tasks.push(tokio::spawn(async move {
            let mut st = Stats::new();
            let mut it = k
                .get_shard_iterator()
                .stream_name(&stream)
                .shard_id(sh.shard_id())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await?
                .shard_iterator
                .unwrap_or_default();
            loop {
                let t = Instant::now();
                let out = k.get_records().shard_iterator(&it).send().await?;
                st.latencies_us.push(t.elapsed().as_micros() as u64);
                let n = out.records().len();
                st.records += n as u64;
                st.bytes += out
                    .records()
                    .iter()
                    .map(|r| r.data().as_ref().len() as u64)
                    .sum::<u64>();
                match out.next_shard_iterator() {
                    Some(next) if n > 0 => it = next.to_owned(),
                    _ => break,
                }
            }
            anyhow::Ok(st)
        }));
    }
    let all = Stats::gather(tasks).await?;
    report("GetRecords read-back (TRIM_HORIZON to tip)", start.elapsed(), all);
    Ok(())
}

fn s3(c: &Common) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(c.region.clone()))
        .endpoint_url(&c.endpoint)
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            &c.access_key,
            &c.secret_key,
            None,
            None,
            "loadgen",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

async fn ensure_bucket(c: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<()> {
    if c.head_bucket().bucket(bucket).send().await.is_err() {
        c.create_bucket().bucket(bucket).send().await.context("create bucket")?;
    }
    Ok(())
}

/// Runs `clients` workers calling `op(worker, i)` until `seconds` pass; one latency per call.
async fn timed<F, Fut>(clients: usize, seconds: u64, op: F) -> anyhow::Result<(Stats, Duration)>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<u64>> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..clients {
        let op = op.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut st = Stats::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match op(w, i).await {
                    Ok(bytes) => {
                        st.latencies_us.push(t.elapsed().as_micros() as u64);
                        st.records += 1;
                        st.bytes += bytes;
                    }
                    Err(e) => {
                        eprintln!("call failed: {e}");
                        st.failed += 1;
                    }
                }
                i += 1;
            }
            anyhow::Ok(st)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let all = Stats::gather(tasks).await?;
    Ok((all, start.elapsed()))
}

async fn s3_small(
    common: Common,
    bucket: String,
    clients: usize,
    object_bytes: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let c = s3(&common);
    ensure_bucket(&c, &bucket).await?;
    // Objects written by the slowest worker: every worker has at least that many keys.
    let written: Arc<Vec<AtomicU64>> = Arc::new((0..clients).map(|_| AtomicU64::new(0)).collect());
    let (cp, bp, wp) = (c.clone(), bucket.clone(), written.clone());
    let (st, el) = timed(clients, seconds, move |w, i| {
        let (c, b, written) = (cp.clone(), bp.clone(), wp.clone());
        async move {
            let body = aws_sdk_s3::primitives::ByteStream::from(vec![b'o'; object_bytes]);
            c.put_object()
                .bucket(b)
                .key(format!("small/{w:02}/{i:08}"))
                .body(body)
                .send()
                .await?;
            if let Some(n) = written.get(w) {
                n.store(i + 1, Ordering::Relaxed);
            }
            Ok(object_bytes as u64)
        }
    })
    .await?;
    report(&format!("S3 PUT {object_bytes} B objects, {clients} clients"), el, st);
    let per_worker = written
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .min()
        .unwrap_or(0)
        .max(1);
    let (cg, bg) = (c.clone(), bucket.clone());
    let (st, el) = timed(clients, seconds, move |w, i| {
        let (c, b) = (cg.clone(), bg.clone());
        async move {
            let key = format!("small/{w:02}/{:08}", i % per_worker);
            let out = c.get_object().bucket(b).key(key).send().await?;
            let n = out.body.collect().await?.into_bytes().len();
            Ok(n as u64)
        }
    })
    .await?;
    report(&format!("S3 GET {object_bytes} B objects, {clients} clients"), el, st);
    Ok(())
}

async fn s3_big(common: Common, bucket: String, mib: u64, file: std::path::PathBuf) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let c = s3(&common);
    ensure_bucket(&c, &bucket).await?;
    let size = mib * 1024 * 1024;
    if std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) != size {
        let mut f = tokio::fs::File::create(&file).await?;
        let chunk = vec![b'b'; 1024 * 1024];
        for _ in 0..mib {
            f.write_all(&chunk).await?;
        }
        f.sync_all().await?;
    }
    let t = Instant::now();
    let body = aws_sdk_s3::primitives::ByteStream::from_path(&file).await?;
    c.put_object().bucket(&bucket).key("big").body(body).send().await?;
    let put = t.elapsed();
    let t = Instant::now();
    let out = c.get_object().bucket(&bucket).key("big").send().await?;
    let mut body = out.body;
    let mut n = 0u64;
    while let Some(chunk) = body.try_next().await? {
        n += chunk.len() as u64;
    }
    let get = t.elapsed();
    anyhow::ensure!(n == size, "GET returned {n} bytes, expected {size}");
    println!(
        "S3 one {mib} MiB object: PUT {:.1} s = {:.0} MB/s; GET {:.1} s = {:.0} MB/s",
        put.as_secs_f64(),
        size as f64 / put.as_secs_f64() / 1e6,
        get.as_secs_f64(),
        size as f64 / get.as_secs_f64() / 1e6
    );
    Ok(())
}

async fn s3_list(common: Common, bucket: String, keys: u64, clients: usize, lists: usize) -> anyhow::Result<()> {
    let c = s3(&common);
    ensure_bucket(&c, &bucket).await?;
    let filled = c
        .head_object()
        .bucket(&bucket)
        .key(format!("k/{:010}", keys - 1))
        .send()
        .await
        .is_ok();
    if !filled {
        let next = Arc::new(AtomicU64::new(0));
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (c, b, next) = (c.clone(), bucket.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= keys {
                        return anyhow::Ok(());
                    }
                    c.put_object()
                        .bucket(&b)
                        .key(format!("k/{i:010}"))
                        .body(Vec::new().into())
                        .send()
                        .await?;
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        println!(
            "filled {keys} keys in {:.1} s ({:.0} PUT/s)",
            t.elapsed().as_secs_f64(),
            keys as f64 / t.elapsed().as_secs_f64()
        );
    }
    let mut lat = Vec::with_capacity(lists);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..lists {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = x % keys.saturating_sub(1000).max(1);
        let t = Instant::now();
        let out = c
            .list_objects_v2()
            .bucket(&bucket)
            .start_after(format!("k/{at:010}"))
            .max_keys(1000)
            .send()
            .await?;
        lat.push(t.elapsed().as_micros() as u64);
        anyhow::ensure!(
            out.key_count() == Some(1000),
            "expected a full page, got {:?}",
            out.key_count()
        );
    }
    lat.sort_unstable();
    println!(
        "S3 ListObjectsV2 of 1,000 keys in a bucket of {keys}: p50 {:.2} ms, p99 {:.2} ms ({lists} calls)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    Ok(())
}

fn firehose(c: &Common) -> aws_sdk_firehose::Client {
    let conf = aws_sdk_firehose::Config::builder()
        .behavior_version(aws_sdk_firehose::config::BehaviorVersion::latest())
        .region(aws_sdk_firehose::config::Region::new(c.region.clone()))
        .endpoint_url(&c.endpoint)
        .credentials_provider(aws_sdk_firehose::config::Credentials::new(
            &c.access_key,
            &c.secret_key,
            None,
            None,
            "loadgen",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_firehose::Client::from_conf(conf)
}

const FIREHOSE_ROLE: &str = "arn:aws:iam::000000000000:role/loadgen-firehose";

/// Creates the delivery role (trusting Firehose, allowed everything); reruns reuse it.
async fn ensure_firehose_role(common: &Common) -> anyhow::Result<()> {
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"firehose.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    let conf = aws_sdk_iam::Config::builder()
        .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
        .region(aws_sdk_iam::config::Region::new(common.region.clone()))
        .endpoint_url(&common.endpoint)
        .credentials_provider(aws_sdk_iam::config::Credentials::new(
            &common.access_key,
            &common.secret_key,
            None,
            None,
            "loadgen",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    let iam = aws_sdk_iam::Client::from_conf(conf);
    if iam.get_role().role_name("loadgen-firehose").send().await.is_err() {
        iam.create_role()
            .role_name("loadgen-firehose")
            .assume_role_policy_document(trust)
            .send()
            .await?;
    }
    iam.put_role_policy()
        .role_name("loadgen-firehose")
        .policy_name("all")
        .policy_document(policy)
        .send()
        .await?;
    Ok(())
}

async fn create_delivery(
    f: &aws_sdk_firehose::Client,
    name: &str,
    source_stream_arn: Option<&str>,
    bucket: &str,
    interval: i32,
) -> anyhow::Result<()> {
    use aws_sdk_firehose::types::{
        BufferingHints, CompressionFormat, DeliveryStreamType, ExtendedS3DestinationConfiguration,
        KinesisStreamSourceConfiguration,
    };
    let dest = ExtendedS3DestinationConfiguration::builder()
        .role_arn(FIREHOSE_ROLE)
        .bucket_arn(format!("arn:aws:s3:::{bucket}"))
        .buffering_hints(
            BufferingHints::builder()
                .size_in_mbs(128)
                .interval_in_seconds(interval)
                .build(),
        )
        .compression_format(CompressionFormat::Gzip)
        .build()?;
    let mut req = f
        .create_delivery_stream()
        .delivery_stream_name(name)
        .extended_s3_destination_configuration(dest);
    if let Some(arn) = source_stream_arn {
        req = req
            .delivery_stream_type(DeliveryStreamType::KinesisStreamAsSource)
            .kinesis_stream_source_configuration(
                KinesisStreamSourceConfiguration::builder()
                    .kinesis_stream_arn(arn)
                    .role_arn(FIREHOSE_ROLE)
                    .build()?,
            );
    }
    req.send().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = f.describe_delivery_stream().delivery_stream_name(name).send().await?;
        if d.delivery_stream_description()
            .map(|x| x.delivery_stream_status().as_str())
            == Some("ACTIVE")
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "delivery stream {name} never became ACTIVE");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Downloads and gunzips every object not seen yet; returns the uncompressed bytes added.
async fn count_new(
    s3c: &aws_sdk_s3::Client,
    bucket: &str,
    seen: &mut std::collections::HashSet<String>,
) -> anyhow::Result<u64> {
    use std::io::Read as _;
    let mut added = 0u64;
    let mut token = None;
    loop {
        let page = s3c
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await?;
        for o in page.contents() {
            let Some(key) = o.key() else { continue };
            if seen.contains(key) {
                continue;
            }
            let bytes = s3c
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await?
                .body
                .collect()
                .await?
                .into_bytes();
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(bytes.as_ref()).read_to_end(&mut out)?;
            added += out.len() as u64;
            seen.insert(key.to_owned());
        }
        if page.is_truncated() != Some(true) {
            return Ok(added);
        }
        token = page.next_continuation_token().map(str::to_owned);
    }
}

async fn firehose_backlog(common: Common, mib: u64, bucket: String) -> anyhow::Result<()> {
    let k = client(&common);
    let s3c = s3(&common);
    let f = firehose(&common);
    ensure_firehose_role(&common).await?;
    ensure_bucket(&s3c, &bucket).await?;
    let stream = format!("fh-backlog-{}", std::process::id());
    ensure_stream(&k, &stream, 2).await?;
    // Fill: 1 KiB JSON lines, 500 per call, 8 concurrent callers.
    let total = mib * 1024 * 1024;
    let record = {
        let mut r = format!("{{\"id\":0,\"payload\":\"{}\"}}", "x".repeat(1000));
        r.truncate(1023);
        r.push('\n');
        r.into_bytes()
    };
    let calls = total.div_ceil(500 * record.len() as u64);
    let next = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (k, next, stream, record) = (k.clone(), next.clone(), stream.clone(), record.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < calls {
                let entries: Vec<PutRecordsRequestEntry> = (0..500)
                    .filter_map(|i| {
                        PutRecordsRequestEntry::builder()
                            .partition_key(format!("p{i}"))
                            .data(Blob::new(record.clone()))
                            .build()
                            .ok()
                    })
                    .collect();
                k.put_records()
                    .stream_name(&stream)
                    .set_records(Some(entries))
                    .send()
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let filled = calls * 500 * record.len() as u64;
    println!(
        "backlog: {:.0} MiB in {:.1} s",
        filled as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    let arn = k
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await?
        .stream_description_summary()
        .map(|d| d.stream_arn().to_owned())
        .unwrap_or_default();
    let t = Instant::now();
    create_delivery(&f, &stream, Some(&arn), &bucket, 1).await?;
    let mut seen = std::collections::HashSet::new();
    let mut delivered = 0u64;
    let deadline = Instant::now() + Duration::from_secs(1800);
    while delivered < filled {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {delivered} of {filled} bytes delivered"
        );
        delivered += count_new(&s3c, &bucket, &mut seen).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "Firehose GZIP delivery of a 2-shard backlog: {:.0} MiB in {:.1} s = {:.1} MB/s of input ({} objects)",
        delivered as f64 / 1048576.0,
        secs,
        delivered as f64 / secs / 1e6,
        seen.len()
    );
    Ok(())
}

async fn firehose_latency(common: Common, samples: usize, bucket: String) -> anyhow::Result<()> {
    let s3c = s3(&common);
    let f = firehose(&common);
    ensure_firehose_role(&common).await?;
    ensure_bucket(&s3c, &bucket).await?;
    let name = format!("fh-latency-{}", std::process::id());
    create_delivery(&f, &name, None, &bucket, 1).await?;
    let mut seen = std::collections::HashSet::new();
    let mut lat = Vec::new();
    for i in 0..samples {
        let rec = aws_sdk_firehose::types::Record::builder()
            .data(aws_sdk_firehose::primitives::Blob::new(format!("sample {i}\n")))
            .build()?;
        let t = Instant::now();
        f.put_record().delivery_stream_name(&name).record(rec).send().await?;
        loop {
            if count_new(&s3c, &bucket, &mut seen).await? > 0 {
                break;
            }
            anyhow::ensure!(t.elapsed() < Duration::from_secs(30), "sample {i} never arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        lat.push(t.elapsed().as_micros() as u64);
    }
    lat.sort_unstable();
    println!(
        "Firehose DirectPut, IntervalInSeconds=1: put → object listed p50 {:.0} ms, max {:.0} ms ({samples} samples)",
        percentile(&lat, 0.5),
        percentile(&lat, 1.0)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Put {
            common,
            shards,
            clients,
            batch,
            record_bytes,
            seconds,
        } => put(common, shards, clients, batch, record_bytes, seconds).await,
        Cmd::PutOne {
            common,
            clients,
            record_bytes,
            seconds,
        } => put_one(common, clients, record_bytes, seconds).await,
        Cmd::Get { common } => get(common).await,
        Cmd::S3Small {
            common,
            bucket,
            clients,
            object_bytes,
            seconds,
        } => s3_small(common, bucket, clients, object_bytes, seconds).await,
        Cmd::S3Big {
            common,
            bucket,
            mib,
            file,
        } => s3_big(common, bucket, mib, file).await,
        Cmd::FirehoseBacklog { common, mib, bucket } => firehose_backlog(common, mib, bucket).await,
        Cmd::FirehoseLatency {
            common,
            samples,
            bucket,
        } => firehose_latency(common, samples, bucket).await,
        Cmd::S3List {
            common,
            bucket,
            keys,
            clients,
            lists,
        } => s3_list(common, bucket, keys, clients, lists).await,
    }
}
