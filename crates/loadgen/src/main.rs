//! `loadgen`: drives any Kinesis endpoint (kinesis-data, AWS, or a peer such as kinesalite)
//! with aws-sdk-kinesis and reports throughput and latency. It is the benchmark behind the
//! figures in docs/benchmarks.md; it is not part of the server.
//!
//! ```text
//! loadgen put  --endpoint http://127.0.0.1:4566 --stream bench --shards 2 --clients 16 --batch 500 --record-bytes 1024 --seconds 20
//! loadgen get  --endpoint http://127.0.0.1:4566 --stream bench
//! loadgen put-one --endpoint http://127.0.0.1:4566 --stream bench1 --clients 1 --seconds 10
//! loadgen lambda-warm --runtime rust --bootstrap target/release/echo --samples 2000
//! loadgen lambda-cold --samples 30
//! loadgen lambda-throughput --clients 16 --seconds 10
//! loadgen s3-to-lambda --samples 200
//! loadgen batch-copy --tasks 10000 --object-bytes 4096
//! loadgen batch-lambda --tasks 10000 --bootstrap target/release/batch-copy
//! loadgen apigw --clients 16 --seconds 10 --bootstrap target/release/items-api
//! loadgen athena --size-mb 2000 --reps 3
//! ```

/// A client of SDK crate `$sdk` for the endpoint, region and keys of `Common`, over plain
/// HTTP; further builder calls (`force_path_style(true)`, an interceptor) follow the client.
macro_rules! sdk_client {
    ($sdk:ident, $c:expr $(, $call:ident($($arg:expr),*))* $(,)?) => {{
        let c: &Common = $c;
        let conf = $sdk::Config::builder()
            .behavior_version($sdk::config::BehaviorVersion::latest())
            .region($sdk::config::Region::new(c.region.clone()))
            .endpoint_url(&c.endpoint)
            .credentials_provider($sdk::config::Credentials::new(
                &c.access_key,
                &c.secret_key,
                None,
                None,
                "loadgen",
            ))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            $(.$call($($arg),*))*
            .build();
        $sdk::Client::from_conf(conf)
    }};
}

mod apigw;
mod athena;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
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
    /// Lambda: sequential synchronous Invoke round trips on a warm instance of the echo
    /// function (Rust `bootstrap` or a Python handler).
    LambdaWarm {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        function: FunctionArgs,
        /// Timed invokes.
        #[arg(long, default_value_t = 2000)]
        samples: usize,
        /// Untimed invokes first.
        #[arg(long, default_value_t = 50)]
        warmup: usize,
    },
    /// Lambda: cold starts. Each sample changes an environment variable
    /// (UpdateFunctionConfiguration retires the warm instance), then times the next invoke.
    LambdaCold {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        function: FunctionArgs,
        /// Cold starts to time.
        #[arg(long, default_value_t = 30)]
        samples: usize,
    },
    /// Lambda: synchronous invokes/s with `clients` concurrent callers on warm instances.
    LambdaThroughput {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        function: FunctionArgs,
        /// Concurrent callers.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// How long to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Bytes per event.
        #[arg(long, default_value_t = 64)]
        payload_bytes: usize,
    },
    /// S3 → Lambda: time from a PUT's acknowledgement to the notified (Python) handler being
    /// entered, one PUT at a time. The handler appends its entry time to `out`, so the server
    /// must run on this machine.
    S3ToLambda {
        #[command(flatten)]
        common: Common,
        /// Bucket (created if missing; its notification configuration is replaced).
        #[arg(long, default_value = "loadgen-s3-lambda")]
        bucket: String,
        /// PUTs to time.
        #[arg(long, default_value_t = 200)]
        samples: usize,
        /// Pause after each handler entry before the next PUT (lets the instance go idle).
        #[arg(long, default_value_t = 20)]
        gap_ms: u64,
        /// File the handler appends `<entry ns> <key>` lines to.
        #[arg(long, default_value = "/tmp/loadgen-s3-lambda.txt")]
        out: std::path::PathBuf,
    },
    /// S3 Batch Operations: an S3PutObjectCopy job over `tasks` objects (put first, not timed);
    /// tasks/s from CreateJob sent until DescribeJob shows Complete.
    BatchCopy {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        batch: BatchArgs,
    },
    /// API Gateway: GET /{id} through a REST API (Lambda proxy) → the Rust items-api function
    /// (warm) → S3 GET, `clients` keep-alive connections; requests/s, p50, p99.
    Apigw {
        #[command(flatten)]
        common: Common,
        /// The items-api binary (`cargo build --release -p items-api`), packaged as `bootstrap`.
        #[arg(long, default_value = "target/release/items-api")]
        bootstrap: std::path::PathBuf,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// How long to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Objects in the bucket.
        #[arg(long, default_value_t = 100)]
        keys: usize,
        /// Bytes per object.
        #[arg(long, default_value_t = 256)]
        object_bytes: usize,
    },
    /// Athena vs DuckDB: generates gzip JSON lines and the same rows as Parquet in Firehose's
    /// layout (once, under --dir), uploads them, declares the tables with Athena DDL and runs a
    /// fixed query set through the Athena API and through DuckDB on the local files.
    Athena {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        bench: athena::BenchArgs,
    },
    /// S3 Batch Operations: a LambdaInvoke job (schema 2.0, UserArguments targetBucket) calling
    /// the Rust batch-copy example (provided.al2023) for each of `tasks` objects.
    BatchLambda {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        batch: BatchArgs,
        /// The batch-copy binary (`cargo build --release -p batch-copy`), packaged as `bootstrap`.
        #[arg(long, default_value = "target/release/batch-copy")]
        bootstrap: std::path::PathBuf,
        /// Concurrent invokes before the job, so that as many instances are warm (0: the job
        /// pays the cold starts).
        #[arg(long, default_value_t = 0)]
        warmup: usize,
    },
}

fn client(c: &Common) -> aws_sdk_kinesis::Client {
    sdk_client!(aws_sdk_kinesis, c)
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
    sdk_client!(aws_sdk_s3, c, force_path_style(true))
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
    sdk_client!(aws_sdk_firehose, c)
}

fn iam(c: &Common) -> aws_sdk_iam::Client {
    sdk_client!(aws_sdk_iam, c)
}

const FIREHOSE_ROLE: &str = "arn:aws:iam::000000000000:role/loadgen-firehose";

/// Creates the delivery role (trusting Firehose, allowed everything); reruns reuse it.
async fn ensure_firehose_role(common: &Common) -> anyhow::Result<()> {
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"firehose.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    let iam = iam(common);
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

// ------------------------------------------------------------------ Lambda

/// Which example function a Lambda benchmark deploys.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum FnRuntime {
    /// examples/functions/echo as `bootstrap` (provided.al2023).
    Rust,
    /// A one-line Python handler returning the event (python3.12).
    Python,
}

impl FnRuntime {
    fn name(self) -> &'static str {
        match self {
            FnRuntime::Rust => "rust",
            FnRuntime::Python => "python",
        }
    }
}

#[derive(Args, Clone)]
struct FunctionArgs {
    /// Function runtime.
    #[arg(long, value_enum, default_value = "rust")]
    runtime: FnRuntime,
    /// The echo binary (`cargo build --release -p echo`), packaged as `bootstrap`.
    #[arg(long, default_value = "target/release/echo")]
    bootstrap: std::path::PathBuf,
    /// Environment variable of the function, `KEY=VALUE` (repeatable).
    #[arg(long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

impl FunctionArgs {
    fn env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
}

fn lambda(c: &Common) -> aws_sdk_lambda::Client {
    sdk_client!(aws_sdk_lambda, c)
}

const LAMBDA_ROLE: &str = "loadgen-lambda";

/// Creates the execution role (trusting Lambda); reruns reuse it. Returns its ARN.
async fn ensure_lambda_role(common: &Common) -> anyhow::Result<String> {
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let iam = iam(common);
    let role = match iam.get_role().role_name(LAMBDA_ROLE).send().await {
        Ok(out) => out.role,
        Err(_) => {
            iam.create_role()
                .role_name(LAMBDA_ROLE)
                .assume_role_policy_document(trust)
                .send()
                .await
                .context("create the Lambda execution role")?
                .role
        }
    };
    role.map(|r| r.arn)
        .ok_or_else(|| anyhow::anyhow!("role {LAMBDA_ROLE} has no ARN"))
}

/// A deployment package: `(name, bytes, unix mode)` entries, deflated.
fn zip_package(files: &[(&str, &[u8], u32)]) -> anyhow::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes, mode) in files {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(*mode);
        w.start_file(*name, opts)?;
        w.write_all(bytes)?;
    }
    Ok(w.finish()?.into_inner())
}

/// The Python handler of the warm benchmarks: returns the event.
const PY_ECHO: &str = "def handler(event, context):\n    return event\n";

/// (runtime, handler, zip) of the echo function in `runtime`.
fn echo_package(f: &FunctionArgs) -> anyhow::Result<(&'static str, &'static str, Vec<u8>)> {
    match f.runtime {
        FnRuntime::Rust => {
            let bin = std::fs::read(&f.bootstrap).with_context(|| {
                format!(
                    "read {} (build it with `cargo build --release -p echo`)",
                    f.bootstrap.display()
                )
            })?;
            Ok((
                "provided.al2023",
                "bootstrap",
                zip_package(&[("bootstrap", &bin, 0o755)])?,
            ))
        }
        FnRuntime::Python => Ok((
            "python3.12",
            "app.handler",
            zip_package(&[("app.py", PY_ECHO.as_bytes(), 0o644)])?,
        )),
    }
}

/// (Re)creates the function `name` and waits for it to be Active. Returns its ARN.
async fn create_function(
    common: &Common,
    name: &str,
    (runtime, handler, zip): (&str, &str, Vec<u8>),
    env: &[(&str, &str)],
) -> anyhow::Result<String> {
    use aws_sdk_lambda::types::{Environment, FunctionCode, Runtime, State};
    let role = ensure_lambda_role(common).await?;
    let l = lambda(common);
    if l.get_function().function_name(name).send().await.is_ok() {
        l.delete_function().function_name(name).send().await?;
    }
    let mut vars = Environment::builder();
    for (k, v) in env {
        vars = vars.variables(*k, *v);
    }
    let out = l
        .create_function()
        .function_name(name)
        .runtime(Runtime::from(runtime))
        .handler(handler)
        .role(role)
        .code(
            FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(zip))
                .build(),
        )
        .environment(vars.build())
        .send()
        .await
        .context("create function")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = l.get_function_configuration().function_name(name).send().await?;
        if c.state() == Some(&State::Active) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "function {name} never became Active");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out.function_arn
        .ok_or_else(|| anyhow::anyhow!("CreateFunction returned no ARN"))
}

/// One synchronous invoke that must succeed; returns the response payload.
async fn invoke_ok(l: &aws_sdk_lambda::Client, name: &str, payload: &[u8]) -> anyhow::Result<Vec<u8>> {
    let out = l
        .invoke()
        .function_name(name)
        .payload(aws_sdk_lambda::primitives::Blob::new(payload))
        .send()
        .await?;
    if let Some(err) = out.function_error() {
        let body = out.payload().map(|p| String::from_utf8_lossy(p.as_ref()).into_owned());
        anyhow::bail!("function error {err}: {}", body.unwrap_or_default());
    }
    Ok(out.payload.map(|p| p.into_inner()).unwrap_or_default())
}

fn function_name(kind: &str, runtime: FnRuntime) -> String {
    format!("loadgen-{kind}-{}", runtime.name())
}

/// Prints p50 / p99 / max of µs latencies.
fn print_latencies(name: &str, mut lat: Vec<u64>) {
    lat.sort_unstable();
    println!(
        "{name}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
        lat.len()
    );
}

async fn lambda_warm(common: Common, f: FunctionArgs, samples: usize, warmup: usize) -> anyhow::Result<()> {
    let name = function_name("warm", f.runtime);
    create_function(&common, &name, echo_package(&f)?, &f.env()).await?;
    let l = lambda(&common);
    for i in 0..warmup {
        invoke_ok(&l, &name, format!("{{\"warmup\":{i}}}").as_bytes()).await?;
    }
    let mut lat = Vec::with_capacity(samples);
    let start = Instant::now();
    for i in 0..samples {
        let payload = format!("{{\"n\":{i}}}");
        let t = Instant::now();
        let out = invoke_ok(&l, &name, payload.as_bytes()).await?;
        lat.push(t.elapsed().as_micros() as u64);
        anyhow::ensure!(!out.is_empty(), "empty response");
    }
    let secs = start.elapsed().as_secs_f64();
    print_latencies(
        &format!(
            "Lambda warm Invoke ({}), 1 caller, {:.0} invokes/s",
            f.runtime.name(),
            samples as f64 / secs
        ),
        lat,
    );
    Ok(())
}

async fn lambda_throughput(
    common: Common,
    f: FunctionArgs,
    clients: usize,
    seconds: u64,
    payload_bytes: usize,
) -> anyhow::Result<()> {
    let name = function_name("throughput", f.runtime);
    create_function(&common, &name, echo_package(&f)?, &f.env()).await?;
    let l = lambda(&common);
    let payload = format!("{{\"pad\":\"{}\"}}", "x".repeat(payload_bytes.saturating_sub(10)));
    let event_bytes = payload.len();
    // Warm up: `clients` concurrent invokes, a few rounds, so that many instances exist.
    for _ in 0..3 {
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (l, name, payload) = (l.clone(), name.clone(), payload.clone());
            tasks.push(tokio::spawn(
                async move { invoke_ok(&l, &name, payload.as_bytes()).await },
            ));
        }
        for t in tasks {
            t.await??;
        }
    }
    let (st, el) = timed(clients, seconds, move |_, _| {
        let (l, name, payload) = (l.clone(), name.clone(), payload.clone());
        async move {
            let out = invoke_ok(&l, &name, payload.as_bytes()).await?;
            Ok(out.len() as u64)
        }
    })
    .await?;
    let mut lat = st.latencies_us;
    lat.sort_unstable();
    let secs = el.as_secs_f64();
    println!(
        "Lambda Invoke ({}, {event_bytes} B events), {clients} clients: {} invokes in {secs:.1} s = {:.0} invokes/s (failed {}); latency ms p50 {:.2} p99 {:.2} max {:.2}",
        f.runtime.name(),
        st.records,
        st.records as f64 / secs,
        st.failed,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
    );
    Ok(())
}

/// `Init Duration: 12.34 ms` of a base64 log tail, in µs.
fn init_duration_us(log_result: Option<&str>) -> Option<u64> {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.decode(log_result?).ok()?;
    let text = String::from_utf8_lossy(&text);
    let ms: f64 = text
        .split("Init Duration: ")
        .nth(1)?
        .split(" ms")
        .next()?
        .trim()
        .parse()
        .ok()?;
    Some((ms * 1000.0) as u64)
}

async fn lambda_cold(common: Common, f: FunctionArgs, samples: usize) -> anyhow::Result<()> {
    use aws_sdk_lambda::types::{Environment, LastUpdateStatus, LogType};
    let name = function_name("cold", f.runtime);
    let mut env = f.env();
    env.push(("LOADGEN_COLD", "0"));
    create_function(&common, &name, echo_package(&f)?, &env).await?;
    let l = lambda(&common);
    let t = Instant::now();
    invoke_ok(&l, &name, b"{}").await?;
    let first = t.elapsed();
    let (mut cold, mut init, mut warm, mut update) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 1..=samples {
        // A new configuration revision: the warm instance is of an older generation and is
        // stopped; the next invoke must start a new one.
        let t = Instant::now();
        l.update_function_configuration()
            .function_name(&name)
            .environment(
                f.env
                    .iter()
                    .fold(Environment::builder(), |b, (k, v)| b.variables(k, v))
                    .variables("LOADGEN_COLD", i.to_string())
                    .build(),
            )
            .send()
            .await?;
        update.push(t.elapsed().as_micros() as u64);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c = l.get_function_configuration().function_name(&name).send().await?;
            if c.last_update_status() == Some(&LastUpdateStatus::Successful) {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "update {i} never finished");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t = Instant::now();
        let out = l
            .invoke()
            .function_name(&name)
            .log_type(LogType::Tail)
            .payload(aws_sdk_lambda::primitives::Blob::new(format!("{{\"cold\":{i}}}")))
            .send()
            .await?;
        cold.push(t.elapsed().as_micros() as u64);
        anyhow::ensure!(out.function_error().is_none(), "cold invoke {i} failed");
        match init_duration_us(out.log_result()) {
            Some(us) => init.push(us),
            None => eprintln!("cold invoke {i}: no Init Duration in the log tail (not a cold start?)"),
        }
        let t = Instant::now();
        invoke_ok(&l, &name, b"{}").await?;
        warm.push(t.elapsed().as_micros() as u64);
    }
    println!(
        "Lambda first invoke after CreateFunction ({}): {:.2} ms",
        f.runtime.name(),
        first.as_secs_f64() * 1000.0
    );
    print_latencies(
        &format!(
            "Lambda cold invoke after UpdateFunctionConfiguration ({})",
            f.runtime.name()
        ),
        cold,
    );
    print_latencies("  of which Init Duration (spawn to first /next)", init);
    print_latencies("  the warm invoke right after", warm);
    print_latencies("  UpdateFunctionConfiguration itself", update);
    Ok(())
}

/// The S3-notified handler: appends `<time.time_ns() at entry> <key>` to $LOADGEN_OUT.
const PY_S3_PROBE: &str = r#"import os
import time

OUT = os.environ["LOADGEN_OUT"]


def handler(event, context):
    entered = time.time_ns()
    with open(OUT, "a") as f:
        for r in event.get("Records", []):
            f.write("%d %s\n" % (entered, r["s3"]["object"]["key"]))
    return None
"#;

fn epoch_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Waits for `key`'s line in `out`; returns its handler-entry time (ns since the epoch).
async fn handler_entry(out: &std::path::Path, key: &str, within: Duration) -> anyhow::Result<i64> {
    let deadline = Instant::now() + within;
    let suffix = format!(" {key}");
    loop {
        let text = tokio::fs::read_to_string(out).await.unwrap_or_default();
        if let Some(ns) = text
            .lines()
            .filter_map(|l| l.strip_suffix(suffix.as_str()))
            .find_map(|ns| ns.parse().ok())
        {
            return Ok(ns);
        }
        anyhow::ensure!(Instant::now() < deadline, "the handler never saw {key}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn s3_to_lambda(
    common: Common,
    bucket: String,
    samples: usize,
    gap_ms: u64,
    out: std::path::PathBuf,
) -> anyhow::Result<()> {
    use aws_sdk_s3::types::{Event, LambdaFunctionConfiguration, NotificationConfiguration};
    let _ = std::fs::remove_file(&out);
    std::fs::write(&out, "")?;
    let out = std::fs::canonicalize(&out)?;
    let name = "loadgen-s3-probe";
    let zip = zip_package(&[("app.py", PY_S3_PROBE.as_bytes(), 0o644)])?;
    let out_text = out.to_string_lossy().into_owned();
    let arn = create_function(
        &common,
        name,
        ("python3.12", "app.handler", zip),
        &[("LOADGEN_OUT", &out_text)],
    )
    .await?;
    let l = lambda(&common);
    l.add_permission()
        .function_name(name)
        .statement_id("s3-invoke")
        .action("lambda:InvokeFunction")
        .principal("s3.amazonaws.com")
        .source_arn(format!("arn:aws:s3:::{bucket}"))
        .send()
        .await
        .context("add permission")?;
    let c = s3(&common);
    ensure_bucket(&c, &bucket).await?;
    c.put_bucket_notification_configuration()
        .bucket(&bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .lambda_function_configurations(
                    LambdaFunctionConfiguration::builder()
                        .id("loadgen")
                        .lambda_function_arn(&arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .build()?,
                )
                .build(),
        )
        .send()
        .await
        .context("put bucket notification")?;
    let run = std::process::id();
    // Warm-up: the first event starts the instance.
    for i in 0..3 {
        let key = format!("warmup/{run}/{i}");
        c.put_object()
            .bucket(&bucket)
            .key(&key)
            .body(b"w".to_vec().into())
            .send()
            .await?;
        handler_entry(&out, &key, Duration::from_secs(30)).await?;
        tokio::time::sleep(Duration::from_millis(gap_ms)).await;
    }
    let (mut from_ack, mut from_start, mut put) = (Vec::new(), Vec::new(), Vec::new());
    let mut early = 0;
    for i in 0..samples {
        let key = format!("s/{run}/{i:06}");
        let t = Instant::now();
        let started = epoch_ns();
        c.put_object()
            .bucket(&bucket)
            .key(&key)
            .body(format!("sample {i}").into_bytes().into())
            .send()
            .await?;
        let acked = epoch_ns();
        put.push(t.elapsed().as_micros() as u64);
        let entered = handler_entry(&out, &key, Duration::from_secs(30)).await?;
        if entered < acked {
            early += 1;
        }
        from_ack.push(u64::try_from((entered - acked) / 1000).unwrap_or(0));
        from_start.push(u64::try_from((entered - started) / 1000).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(gap_ms)).await;
    }
    print_latencies("S3 PUT acknowledged → Lambda handler entered (python)", from_ack);
    print_latencies("  PUT sent → handler entered", from_start);
    print_latencies("  PUT round trip", put);
    if early > 0 {
        println!("  ({early} handlers entered before the client saw the PUT acknowledgement: counted as 0)");
    }
    Ok(())
}

// ------------------------------------------------------------------ S3 Batch Operations

/// Keeps the `Host` the SDK chose (`<account>.<endpoint host>`) but connects to the endpoint
/// itself: S3 Control puts the account in the host name, which does not resolve for an IP.
#[derive(Debug)]
struct KeepHostConnectToEndpoint {
    authority: String,
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for KeepHostConnectToEndpoint {
    fn name(&self) -> &'static str {
        "KeepHostConnectToEndpoint"
    }

    fn modify_before_transmit(
        &self,
        context: &mut aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut<'_>,
        _rc: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let req = context.request_mut();
        let uri = req.uri().to_owned();
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Ok(());
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host != self.authority && host.ends_with(&format!(".{}", self.authority)) {
            req.headers_mut().insert("host", host.to_owned());
            req.set_uri(format!("{scheme}://{}/{path}", self.authority))?;
        }
        Ok(())
    }
}

fn s3control(c: &Common) -> aws_sdk_s3control::Client {
    let authority = c
        .endpoint
        .split_once("://")
        .map_or(c.endpoint.as_str(), |(_, a)| a)
        .trim_end_matches('/')
        .to_owned();
    sdk_client!(
        aws_sdk_s3control,
        c,
        interceptor(KeepHostConnectToEndpoint { authority })
    )
}

const BATCH_ROLE: &str = "loadgen-batch";

/// Creates the job role (trusting S3 Batch Operations, with AmazonS3FullAccess and
/// AWSLambdaRole attached); reruns reuse it. Returns its ARN.
async fn ensure_batch_role(common: &Common) -> anyhow::Result<String> {
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"batchoperations.s3.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let iam = iam(common);
    let role = match iam.get_role().role_name(BATCH_ROLE).send().await {
        Ok(out) => out.role,
        Err(_) => {
            iam.create_role()
                .role_name(BATCH_ROLE)
                .assume_role_policy_document(trust)
                .send()
                .await
                .context("create the batch job role")?
                .role
        }
    };
    for p in ["AmazonS3FullAccess", "service-role/AWSLambdaRole"] {
        iam.attach_role_policy()
            .role_name(BATCH_ROLE)
            .policy_arn(format!("arn:aws:iam::aws:policy/{p}"))
            .send()
            .await
            .with_context(|| format!("attach {p} to the batch job role"))?;
    }
    role.map(|r| r.arn)
        .ok_or_else(|| anyhow::anyhow!("role {BATCH_ROLE} has no ARN"))
}

/// The account of a role ARN (`arn:aws:iam::<account>:role/<name>`).
fn account_of(role_arn: &str) -> anyhow::Result<String> {
    role_arn
        .split(':')
        .nth(4)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no account in {role_arn}"))
}

#[derive(Args, Clone)]
struct BatchArgs {
    /// Tasks in the job (objects put first and listed in the manifest).
    #[arg(long, default_value_t = 10_000)]
    tasks: usize,
    /// Bytes per object.
    #[arg(long, default_value_t = 4096)]
    object_bytes: usize,
    /// Concurrent PutObject callers while filling the source bucket (not timed).
    #[arg(long, default_value_t = 32)]
    fill_clients: usize,
    /// Source bucket (created if missing).
    #[arg(long, default_value = "loadgen-batch-src")]
    bucket: String,
    /// Target bucket (created if missing).
    #[arg(long, default_value = "loadgen-batch-dst")]
    target: String,
    /// Write a completion report (AllTasks) to this bucket; the time includes writing it.
    #[arg(long)]
    report_bucket: Option<String>,
    /// DescribeJob poll interval.
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,
}

/// Puts `n` objects `obj/<i>` of `bytes` bytes with `clients` concurrent callers; returns
/// the manifest lines.
async fn fill_source(c: &aws_sdk_s3::Client, a: &BatchArgs) -> anyhow::Result<Vec<String>> {
    ensure_bucket(c, &a.bucket).await?;
    ensure_bucket(c, &a.target).await?;
    if let Some(r) = &a.report_bucket {
        ensure_bucket(c, r).await?;
    }
    let t = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..a.fill_clients.max(1) {
        let (c, next, bucket, bytes, n) = (
            c.clone(),
            next.clone(),
            a.bucket.clone(),
            a.object_bytes,
            a.tasks as u64,
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                c.put_object()
                    .bucket(&bucket)
                    .key(format!("obj/{i:07}"))
                    .body(vec![b'b'; bytes].into())
                    .send()
                    .await
                    .with_context(|| format!("put obj/{i:07}"))?;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    eprintln!(
        "filled s3://{}: {} objects of {} B in {:.1} s",
        a.bucket,
        a.tasks,
        a.object_bytes,
        t.elapsed().as_secs_f64()
    );
    Ok((0..a.tasks).map(|i| format!("{},obj/{i:07}", a.bucket)).collect())
}

/// Puts the manifest (CSV `bucket,key`) and returns its location with its ETag.
async fn put_manifest(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    lines: &[String],
) -> anyhow::Result<aws_sdk_s3control::types::JobManifest> {
    use aws_sdk_s3control::types::{
        JobManifest, JobManifestFieldName, JobManifestFormat, JobManifestLocation, JobManifestSpec,
    };
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let put = c
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into_bytes().into())
        .send()
        .await
        .context("put the manifest")?;
    let etag = put.e_tag().unwrap_or_default().trim_matches('"').to_owned();
    Ok(JobManifest::builder()
        .spec(
            JobManifestSpec::builder()
                .format(JobManifestFormat::S3BatchOperationsCsv20180820)
                .fields(JobManifestFieldName::Bucket)
                .fields(JobManifestFieldName::Key)
                .build()?,
        )
        .location(
            JobManifestLocation::builder()
                .object_arn(format!("arn:aws:s3:::{bucket}/{key}"))
                .e_tag(etag)
                .build()?,
        )
        .build())
}

/// Runs one job (CreateJob, then DescribeJob every `poll_ms` until it is terminal) and prints
/// tasks/s over the time from CreateJob sent until DescribeJob shows Complete.
async fn run_job(
    common: &Common,
    a: &BatchArgs,
    label: &str,
    operation: aws_sdk_s3control::types::JobOperation,
    manifest: aws_sdk_s3control::types::JobManifest,
) -> anyhow::Result<()> {
    use aws_sdk_s3control::types::{JobReport, JobReportFormat, JobReportScope, JobStatus};
    let role = ensure_batch_role(common).await?;
    let account = account_of(&role)?;
    let ctl = s3control(common);
    let report = match &a.report_bucket {
        Some(b) => JobReport::builder()
            .enabled(true)
            .bucket(format!("arn:aws:s3:::{b}"))
            .prefix("loadgen")
            .format(JobReportFormat::ReportCsv20180820)
            .report_scope(JobReportScope::AllTasks)
            .build(),
        None => JobReport::builder().enabled(false).build(),
    };
    let token = format!("loadgen-{}-{}", std::process::id(), epoch_ns());
    let start = Instant::now();
    let created = ctl
        .create_job()
        .account_id(&account)
        .confirmation_required(false)
        .priority(10)
        .role_arn(&role)
        .client_request_token(token)
        .description(label)
        .operation(operation)
        .manifest(manifest)
        .report(report)
        .send()
        .await
        .context("CreateJob")?;
    let create_rtt = start.elapsed();
    let id = created
        .job_id()
        .ok_or_else(|| anyhow::anyhow!("CreateJob returned no JobId"))?
        .to_owned();
    // (elapsed, tasks finished) at each poll, and when the job left Preparing.
    let mut prepared: Option<Duration> = None;
    let mut first_done: Option<(Duration, i64)> = None;
    let mut polls = 0u32;
    let deadline = start + Duration::from_secs(600);
    let job = loop {
        tokio::time::sleep(Duration::from_millis(a.poll_ms)).await;
        let d = ctl
            .describe_job()
            .account_id(&account)
            .job_id(&id)
            .send()
            .await
            .context("DescribeJob")?;
        let at = start.elapsed();
        polls += 1;
        let job = d.job.ok_or_else(|| anyhow::anyhow!("DescribeJob returned no job"))?;
        let status = job.status().cloned();
        if prepared.is_none() && !matches!(status, Some(JobStatus::New | JobStatus::Preparing) | None) {
            prepared = Some(at);
        }
        let p = job.progress_summary();
        let finished = p.and_then(|p| p.number_of_tasks_succeeded()).unwrap_or(0)
            + p.and_then(|p| p.number_of_tasks_failed()).unwrap_or(0);
        if first_done.is_none() && finished > 0 {
            first_done = Some((at, finished));
        }
        match status {
            Some(JobStatus::Complete) => break job,
            Some(s @ (JobStatus::Failed | JobStatus::Cancelled)) => {
                anyhow::bail!("job {id} ended {s:?}: {:?}", job.failure_reasons());
            }
            _ => {}
        }
        anyhow::ensure!(Instant::now() < deadline, "job {id} did not finish in 600 s");
    };
    let total_time = start.elapsed();
    let p = job
        .progress_summary()
        .ok_or_else(|| anyhow::anyhow!("no ProgressSummary"))?;
    let total = p.total_number_of_tasks().unwrap_or(0);
    let ok = p.number_of_tasks_succeeded().unwrap_or(0);
    let bad = p.number_of_tasks_failed().unwrap_or(0);
    let active = p.timers().and_then(|t| t.elapsed_time_in_active_seconds());
    let secs = total_time.as_secs_f64();
    println!(
        "{label}: {total} tasks ({ok} succeeded, {bad} failed) in {secs:.2} s from CreateJob sent to Complete seen = {:.0} tasks/s",
        total as f64 / secs
    );
    let prepared = prepared.unwrap_or(total_time);
    println!(
        "  CreateJob round trip {:.1} ms; left Preparing by {:.0} ms (first DescribeJob showing Ready/Active or later); ElapsedTimeInActiveSeconds {}; {polls} DescribeJob polls every {} ms",
        create_rtt.as_secs_f64() * 1000.0,
        prepared.as_secs_f64() * 1000.0,
        active.map_or_else(|| "-".to_owned(), |s| s.to_string()),
        a.poll_ms,
    );
    if let Some((t0, n0)) = first_done {
        let span = (total_time - t0).as_secs_f64();
        if total > n0 && span > 0.0 {
            println!(
                "  running phase: {} tasks from the first poll showing progress ({:.0} ms) to Complete = {:.0} tasks/s",
                total - n0,
                t0.as_secs_f64() * 1000.0,
                (total - n0) as f64 / span
            );
        }
    }
    anyhow::ensure!(bad == 0 && ok == total, "job {id}: {bad} tasks failed");
    Ok(())
}

/// Checks a few copies landed (first, middle, last) with the source's size.
async fn check_copies(c: &aws_sdk_s3::Client, a: &BatchArgs) -> anyhow::Result<()> {
    for i in [0, a.tasks / 2, a.tasks.saturating_sub(1)] {
        let key = format!("obj/{i:07}");
        let h = c
            .head_object()
            .bucket(&a.target)
            .key(&key)
            .send()
            .await
            .with_context(|| format!("the copy s3://{}/{key}", a.target))?;
        anyhow::ensure!(
            h.content_length() == Some(a.object_bytes as i64),
            "s3://{}/{key} has {:?} bytes",
            a.target,
            h.content_length()
        );
    }
    Ok(())
}

async fn batch_copy(common: Common, a: BatchArgs) -> anyhow::Result<()> {
    use aws_sdk_s3control::types::{JobOperation, S3CopyObjectOperation};
    let c = s3(&common);
    let lines = fill_source(&c, &a).await?;
    let manifest = put_manifest(&c, &a.bucket, &format!("manifests/copy-{}.csv", epoch_ns()), &lines).await?;
    let op = JobOperation::builder()
        .s3_put_object_copy(
            S3CopyObjectOperation::builder()
                .target_resource(format!("arn:aws:s3:::{}", a.target))
                .build(),
        )
        .build();
    run_job(
        &common,
        &a,
        &format!("S3PutObjectCopy job, {} B objects", a.object_bytes),
        op,
        manifest,
    )
    .await?;
    check_copies(&c, &a).await
}

async fn batch_lambda(
    common: Common,
    a: BatchArgs,
    bootstrap: std::path::PathBuf,
    warmup: usize,
) -> anyhow::Result<()> {
    use aws_sdk_s3control::types::{JobOperation, LambdaInvokeOperation};
    let c = s3(&common);
    let lines = fill_source(&c, &a).await?;
    let bin = std::fs::read(&bootstrap).with_context(|| {
        format!(
            "read {} (build it with `cargo build --release -p batch-copy`)",
            bootstrap.display()
        )
    })?;
    // The function's own role copies with its S3 rights.
    let s3_all = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
    ensure_lambda_role(&common).await?;
    iam(&common)
        .put_role_policy()
        .role_name(LAMBDA_ROLE)
        .policy_name("s3")
        .policy_document(s3_all)
        .send()
        .await
        .context("give the function's role S3 rights")?;
    let name = "loadgen-batch-copy";
    let arn = create_function(
        &common,
        name,
        (
            "provided.al2023",
            "bootstrap",
            zip_package(&[("bootstrap", &bin, 0o755)])?,
        ),
        &[],
    )
    .await?;
    if warmup > 0 {
        // `warmup` concurrent invokes (a task whose key is missing: PermanentFailure, no copy)
        // so that as many instances are running when the job starts.
        let l = lambda(&common);
        let event = format!(
            r#"{{"invocationSchemaVersion":"2.0","invocationId":"w","job":{{"id":"warmup","userArguments":{{"targetBucket":"{}"}}}},"tasks":[{{"taskId":"w","s3Key":"warmup/missing","s3VersionId":null,"s3Bucket":"{}"}}]}}"#,
            a.target, a.bucket
        );
        let mut tasks = Vec::new();
        for _ in 0..warmup {
            let (l, event) = (l.clone(), event.clone());
            tasks.push(tokio::spawn(async move { invoke_ok(&l, name, event.as_bytes()).await }));
        }
        for t in tasks {
            t.await??;
        }
    }
    let manifest = put_manifest(&c, &a.bucket, &format!("manifests/lambda-{}.csv", epoch_ns()), &lines).await?;
    let op = JobOperation::builder()
        .lambda_invoke(
            LambdaInvokeOperation::builder()
                .function_arn(&arn)
                .invocation_schema_version("2.0")
                .user_arguments("targetBucket", &a.target)
                .build(),
        )
        .build();
    run_job(
        &common,
        &a,
        &format!(
            "LambdaInvoke job (Rust batch-copy, {} B objects, {warmup} instances warmed)",
            a.object_bytes
        ),
        op,
        manifest,
    )
    .await?;
    check_copies(&c, &a).await
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
        Cmd::LambdaWarm {
            common,
            function,
            samples,
            warmup,
        } => lambda_warm(common, function, samples, warmup).await,
        Cmd::LambdaCold {
            common,
            function,
            samples,
        } => lambda_cold(common, function, samples).await,
        Cmd::LambdaThroughput {
            common,
            function,
            clients,
            seconds,
            payload_bytes,
        } => lambda_throughput(common, function, clients, seconds, payload_bytes).await,
        Cmd::Apigw {
            common,
            bootstrap,
            clients,
            seconds,
            keys,
            object_bytes,
        } => apigw::run(common, bootstrap, clients, seconds, keys, object_bytes).await,
        Cmd::Athena { common, bench } => athena::run(common, bench).await,
        Cmd::S3ToLambda {
            common,
            bucket,
            samples,
            gap_ms,
            out,
        } => s3_to_lambda(common, bucket, samples, gap_ms, out).await,
        Cmd::BatchCopy { common, batch } => batch_copy(common, batch).await,
        Cmd::BatchLambda {
            common,
            batch,
            bootstrap,
            warmup,
        } => batch_lambda(common, batch, bootstrap, warmup).await,
    }
}
