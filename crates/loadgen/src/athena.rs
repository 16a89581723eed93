//! `loadgen athena`: Athena (kinesis-data's DataFusion engine, through the Athena API)
//! against DuckDB on the same files.
//!
//! 1. Generates a dataset of Firehose-delivered events once (deterministic RNG; reused by
//!    later runs when its parameters match `manifest.json`): `--size-mb` MB (10^6 bytes) of
//!    uncompressed JSON lines spread over `--days` days of hourly partitions, written as
//!    GZIP JSON lines (level 1, as Firehose here writes them) and as the same rows in Parquet
//!    (Snappy), both in Firehose's key layout
//!    `<prefix>/YYYY/MM/DD/HH/<stream>-1-YYYY-MM-DD-HH-MM-SS-<uuid>.{gz,parquet}`, plus a
//!    small dimension table (`countries/countries.csv`). Everything lives under `--dir`.
//! 2. Uploads what the bucket lacks through the S3 API and declares the tables with Athena
//!    DDL: the OpenX JsonSerDe and STORED AS PARQUET, both with partition projection over
//!    the Firehose date layout (`storage.location.template`).
//! 3. Runs the fixed query set `--reps` times through StartQueryExecution →
//!    GetQueryExecution (polled every 2 ms) → GetQueryResults, and the same queries with
//!    DuckDB (a `python3` subprocess, `import duckdb`) on the local copies of the same
//!    files; prints medians side by side, checks that both engines return the same rows, and
//!    that the partition-filtered count scanned only its day's objects.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arrow::array::{ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use aws_sdk_athena::types::{QueryExecutionContext, QueryExecutionState, ResultConfiguration};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::{Common, ensure_bucket, s3};

/// Bumped whenever the generated data changes, so old directories are regenerated.
const DATA_VERSION: u32 = 1;
/// The first hour of the data.
const START: (i32, u32, u32) = (2026, 11, 1);
/// The Firehose delivery stream named in the object keys.
const STREAM: &str = "bench-events";
const JSON_PREFIX: &str = "events-json";
const PARQUET_PREFIX: &str = "events-parquet";
const DIM_KEY: &str = "countries/countries.csv";

/// Flags of `loadgen athena`.
#[derive(clap::Args, Clone)]
pub struct BenchArgs {
    /// Local directory of the generated files (reused when present).
    #[arg(long, default_value = "/tmp/athena-bench")]
    dir: PathBuf,
    /// Uncompressed JSON lines to generate, in MB (10^6 bytes).
    #[arg(long, default_value_t = 2000)]
    size_mb: u64,
    /// Days of hourly partitions.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Objects per hourly partition (per format).
    #[arg(long, default_value_t = 1)]
    files_per_hour: u32,
    /// RNG seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Bucket the files are uploaded to (created if missing).
    #[arg(long, default_value = "athena-bench")]
    bucket: String,
    /// Glue database of the tables.
    #[arg(long, default_value = "bench")]
    database: String,
    /// Athena output location.
    #[arg(long, default_value = "s3://athena-bench-results/")]
    output: String,
    /// Runs of each query per engine (the median is reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Python with the duckdb module.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Skip DuckDB (Athena figures only).
    #[arg(long)]
    no_duckdb: bool,
    /// Run only the queries whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// Run only this format (`json` or `parquet`).
    #[arg(long)]
    format: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Data generation

/// SplitMix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn f64(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// (ticker, base price).
const TICKERS: [(&str, f64); 20] = [
    ("AAPL", 228.0),
    ("MSFT", 415.0),
    ("AMZN", 187.0),
    ("GOOG", 172.0),
    ("META", 560.0),
    ("NVDA", 135.0),
    ("TSLA", 250.0),
    ("NFLX", 700.0),
    ("ORCL", 170.0),
    ("CRM", 290.0),
    ("ADBE", 510.0),
    ("INTC", 22.0),
    ("AMD", 150.0),
    ("IBM", 210.0),
    ("CSCO", 58.0),
    ("QCOM", 165.0),
    ("UBER", 75.0),
    ("SHOP", 95.0),
    ("SAP", 230.0),
    ("ASML", 690.0),
];

/// (code, name, region); the first ones are drawn more often.
const COUNTRIES: [(&str, &str, &str); 30] = [
    ("US", "United States", "Americas"),
    ("DE", "Germany", "EMEA"),
    ("GB", "United Kingdom", "EMEA"),
    ("FR", "France", "EMEA"),
    ("JP", "Japan", "APAC"),
    ("IN", "India", "APAC"),
    ("BR", "Brazil", "Americas"),
    ("CA", "Canada", "Americas"),
    ("AU", "Australia", "APAC"),
    ("NL", "Netherlands", "EMEA"),
    ("ES", "Spain", "EMEA"),
    ("IT", "Italy", "EMEA"),
    ("MX", "Mexico", "Americas"),
    ("KR", "South Korea", "APAC"),
    ("SE", "Sweden", "EMEA"),
    ("CH", "Switzerland", "EMEA"),
    ("PL", "Poland", "EMEA"),
    ("SG", "Singapore", "APAC"),
    ("ZA", "South Africa", "EMEA"),
    ("AR", "Argentina", "Americas"),
    ("IE", "Ireland", "EMEA"),
    ("NO", "Norway", "EMEA"),
    ("DK", "Denmark", "EMEA"),
    ("FI", "Finland", "EMEA"),
    ("BE", "Belgium", "EMEA"),
    ("AT", "Austria", "EMEA"),
    ("NZ", "New Zealand", "APAC"),
    ("CL", "Chile", "Americas"),
    ("ID", "Indonesia", "APAC"),
    ("EG", "Egypt", "EMEA"),
];

const KINDS: [&str; 4] = ["view", "cart", "buy", "sell"];
const USERS: f64 = 100_000.0;

/// One object of each format: hour index and file index within the hour.
#[derive(Clone, Copy)]
struct Slot {
    hour: u32,
    file: u32,
}

fn hour_start(hour: u32) -> chrono::NaiveDateTime {
    let (y, m, d) = START;
    let day = chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
    day.and_hms_opt(0, 0, 0).unwrap_or_default() + chrono::Duration::hours(i64::from(hour))
}

/// The object key of a slot, without the extension.
fn key_stem(prefix: &str, slot: Slot, rng: &mut Rng, files_per_hour: u32) -> String {
    let h = hour_start(slot.hour);
    // Delivered some time within the hour (Firehose names the object by its delivery time).
    let minute = (slot.file * 60 / files_per_hour.max(1)) as i64 + rng.below(3) as i64;
    let t = h + chrono::Duration::minutes(minute.min(59)) + chrono::Duration::seconds(rng.below(60) as i64);
    let (a, b) = (rng.next(), rng.next());
    let uuid = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    );
    format!(
        "{prefix}/{}/{STREAM}-1-{}-{uuid}",
        h.format("%Y/%m/%d/%H"),
        t.format("%Y-%m-%d-%H-%M-%S")
    )
}

/// The rows of one object, column by column.
#[derive(Default)]
struct Columns {
    event_id: Vec<i64>,
    event_time: Vec<String>,
    ticker: Vec<&'static str>,
    price: Vec<f64>,
    user_id: Vec<i64>,
    country: Vec<&'static str>,
    amount: Vec<f64>,
    kind: Vec<&'static str>,
    session: Vec<String>,
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Generates the rows of one object until `budget` bytes of JSON lines; returns them and
/// the JSON lines.
fn generate(slot: Slot, seed: u64, budget: u64, index: u64) -> (Columns, Vec<u8>) {
    let mut rng = Rng(seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407));
    let mut c = Columns::default();
    let mut json = Vec::with_capacity(budget as usize + 4096);
    let start = hour_start(slot.hour);
    let est_rows = (budget / 190).max(1);
    let mut i: u64 = 0;
    while (json.len() as u64) < budget {
        let ms = (i * 3_600_000 / est_rows).min(3_599_999) as i64;
        let t = start + chrono::Duration::milliseconds(ms);
        let event_time = t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let (ticker, base) = TICKERS[rng.below(TICKERS.len() as u64) as usize];
        let price = round2(base * (1.0 + (rng.f64() - 0.5) * 0.04));
        // Skewed: a few users do most of the events.
        let user_id = 1 + (USERS * rng.f64().powi(3)) as i64;
        let r = rng.f64();
        let country = COUNTRIES[((r * r) * COUNTRIES.len() as f64) as usize % COUNTRIES.len()].0;
        let amount = round2(0.01 + rng.f64() * 9_999.99);
        let kind = KINDS[match rng.below(10) {
            0..=5 => 0,
            6..=7 => 1,
            8 => 2,
            _ => 3,
        }];
        let session = format!("{:016x}", rng.next());
        let event_id = (index as i64) * 10_000_000 + i as i64;
        let _ = writeln!(
            json,
            r#"{{"event_id":{event_id},"event_time":"{event_time}","ticker":"{ticker}","price":{price},"user_id":{user_id},"country":"{country}","amount":{amount},"kind":"{kind}","session":"{session}"}}"#
        );
        c.event_id.push(event_id);
        c.event_time.push(event_time);
        c.ticker.push(ticker);
        c.price.push(price);
        c.user_id.push(user_id);
        c.country.push(country);
        c.amount.push(amount);
        c.kind.push(kind);
        c.session.push(session);
        i += 1;
    }
    (c, json)
}

fn parquet_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Int64, true),
        Field::new("event_time", DataType::Utf8, true),
        Field::new("ticker", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
        Field::new("user_id", DataType::Int64, true),
        Field::new("country", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("kind", DataType::Utf8, true),
        Field::new("session", DataType::Utf8, true),
    ]))
}

fn to_parquet(c: &Columns) -> anyhow::Result<Vec<u8>> {
    let ints = |v: &[i64]| -> ArrayRef {
        let mut b = Int64Builder::with_capacity(v.len());
        b.append_slice(v);
        Arc::new(b.finish())
    };
    let floats = |v: &[f64]| -> ArrayRef {
        let mut b = Float64Builder::with_capacity(v.len());
        b.append_slice(v);
        Arc::new(b.finish())
    };
    fn strings<S: AsRef<str>>(v: &[S]) -> ArrayRef {
        let mut b = StringBuilder::new();
        for s in v {
            b.append_value(s.as_ref());
        }
        Arc::new(b.finish())
    }
    let schema = parquet_schema();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            ints(&c.event_id),
            strings(&c.event_time),
            strings(&c.ticker),
            floats(&c.price),
            ints(&c.user_id),
            strings(&c.country),
            floats(&c.amount),
            strings(&c.kind),
            strings(&c.session),
        ],
    )?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema, Some(props))?;
    w.write(&batch)?;
    w.close()?;
    Ok(out)
}

/// What `manifest.json` records of a finished generation.
#[derive(Debug, Clone, PartialEq)]
struct Manifest {
    params: String,
    rows: u64,
    json_bytes: u64,
    gz_bytes: u64,
    parquet_bytes: u64,
    objects: u64,
}

impl Manifest {
    fn encode(&self) -> String {
        serde_json::json!({
            "params": self.params, "rows": self.rows, "json_bytes": self.json_bytes,
            "gz_bytes": self.gz_bytes, "parquet_bytes": self.parquet_bytes, "objects": self.objects,
        })
        .to_string()
    }

    fn decode(s: &str) -> Option<Manifest> {
        let v: serde_json::Value = serde_json::from_str(s).ok()?;
        Some(Manifest {
            params: v.get("params")?.as_str()?.to_owned(),
            rows: v.get("rows")?.as_u64()?,
            json_bytes: v.get("json_bytes")?.as_u64()?,
            gz_bytes: v.get("gz_bytes")?.as_u64()?,
            parquet_bytes: v.get("parquet_bytes")?.as_u64()?,
            objects: v.get("objects")?.as_u64()?,
        })
    }
}

fn params(a: &BenchArgs) -> String {
    format!(
        "v{DATA_VERSION} size_mb={} days={} files_per_hour={} seed={}",
        a.size_mb, a.days, a.files_per_hour, a.seed
    )
}

/// Generates the dataset under `<dir>/data` unless `<dir>/manifest.json` says it is there.
fn ensure_data(a: &BenchArgs) -> anyhow::Result<Manifest> {
    let manifest_path = a.dir.join("manifest.json");
    let data = a.dir.join("data");
    if let Ok(s) = std::fs::read_to_string(&manifest_path)
        && let Some(m) = Manifest::decode(&s)
        && m.params == params(a)
    {
        println!("dataset: reusing {} ({} rows, {})", a.dir.display(), m.rows, params(a));
        return Ok(m);
    }
    if data.exists() {
        std::fs::remove_dir_all(&data).with_context(|| format!("remove {}", data.display()))?;
    }
    let _ = std::fs::remove_file(&manifest_path);
    std::fs::create_dir_all(&data)?;
    let hours = a.days.max(1) * 24;
    let files = u64::from(hours) * u64::from(a.files_per_hour.max(1));
    let budget = (a.size_mb * 1_000_000).div_ceil(files);
    let slots: Vec<Slot> = (0..hours)
        .flat_map(|hour| (0..a.files_per_hour.max(1)).map(move |file| Slot { hour, file }))
        .collect();
    let t = Instant::now();
    println!(
        "dataset: generating {} MB of JSON lines in {files} objects per format under {} …",
        a.size_mb,
        data.display()
    );
    let next = AtomicUsize::new(0);
    let (rows, json_bytes, gz_bytes, pq_bytes) = (
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    );
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| -> anyhow::Result<()> {
        let mut handles = Vec::new();
        for _ in 0..workers {
            handles.push(s.spawn(|| -> anyhow::Result<()> {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(slot) = slots.get(i).copied() else {
                        return Ok(());
                    };
                    let (cols, json) = generate(slot, a.seed, budget, i as u64);
                    let mut names = Rng(a.seed.wrapping_add(i as u64).wrapping_mul(31));
                    let json_key = format!("{}.gz", key_stem(JSON_PREFIX, slot, &mut names, a.files_per_hour));
                    let pq_key = format!(
                        "{}.parquet",
                        key_stem(PARQUET_PREFIX, slot, &mut names, a.files_per_hour)
                    );
                    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    gz.write_all(&json)?;
                    let gz = gz.finish()?;
                    let pq = to_parquet(&cols)?;
                    for (key, bytes) in [(&json_key, &gz), (&pq_key, &pq)] {
                        let path = data.join(key);
                        if let Some(dir) = path.parent() {
                            std::fs::create_dir_all(dir)?;
                        }
                        std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
                    }
                    rows.fetch_add(cols.event_id.len() as u64, Ordering::Relaxed);
                    json_bytes.fetch_add(json.len() as u64, Ordering::Relaxed);
                    gz_bytes.fetch_add(gz.len() as u64, Ordering::Relaxed);
                    pq_bytes.fetch_add(pq.len() as u64, Ordering::Relaxed);
                }
            }));
        }
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("a generator thread panicked"))??;
        }
        Ok(())
    })?;
    let mut csv = String::from("code,name,region\n");
    for (code, name, region) in COUNTRIES {
        csv.push_str(&format!("{code},{name},{region}\n"));
    }
    let dim = data.join(DIM_KEY);
    if let Some(dir) = dim.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&dim, csv)?;
    let m = Manifest {
        params: params(a),
        rows: rows.load(Ordering::Relaxed),
        json_bytes: json_bytes.load(Ordering::Relaxed),
        gz_bytes: gz_bytes.load(Ordering::Relaxed),
        parquet_bytes: pq_bytes.load(Ordering::Relaxed),
        objects: files,
    };
    std::fs::write(&manifest_path, m.encode())?;
    println!("dataset: generated in {:.1} s", t.elapsed().as_secs_f64());
    Ok(m)
}

/// Every file under `dir`, as (key relative to `dir`, path, size).
fn walk(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf, u64)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("read {}", d.display()))? {
            let e = e?;
            let p = e.path();
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let rel = p
                    .strip_prefix(dir)?
                    .to_str()
                    .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", p.display()))?
                    .to_owned();
                out.push((rel, p, e.metadata()?.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Uploads the files the bucket lacks (same key and size = present).
async fn upload(common: &Common, a: &BenchArgs) -> anyhow::Result<()> {
    let c = s3(common);
    ensure_bucket(&c, &a.bucket).await?;
    if let Some((bucket, _)) = a.output.strip_prefix("s3://").and_then(|s| s.split_once('/')) {
        ensure_bucket(&c, bucket).await?;
    }
    let mut present: BTreeMap<String, u64> = BTreeMap::new();
    let mut token = None;
    loop {
        let out = c
            .list_objects_v2()
            .bucket(&a.bucket)
            .set_continuation_token(token)
            .send()
            .await
            .context("list bucket")?;
        for o in out.contents() {
            present.insert(o.key().unwrap_or_default().to_owned(), o.size().unwrap_or(0) as u64);
        }
        token = out.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let files: Vec<(String, PathBuf, u64)> = walk(&a.dir.join("data"))?
        .into_iter()
        .filter(|(k, _, size)| present.get(k) != Some(size))
        .collect();
    if files.is_empty() {
        println!("upload: every object already in s3://{}/", a.bucket);
        return Ok(());
    }
    let total: u64 = files.iter().map(|f| f.2).sum();
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let n = files.len();
    for (key, path, _) in files {
        while set.len() >= 8 {
            if let Some(r) = set.join_next().await {
                r??;
            }
        }
        let (c, bucket) = (c.clone(), a.bucket.clone());
        set.spawn(async move {
            let body = aws_sdk_s3::primitives::ByteStream::from_path(&path).await?;
            c.put_object()
                .bucket(bucket)
                .key(&key)
                .body(body)
                .send()
                .await
                .with_context(|| format!("put {key}"))?;
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    println!(
        "upload: {n} objects, {:.0} MB in {:.1} s to s3://{}/",
        total as f64 / 1e6,
        t.elapsed().as_secs_f64(),
        a.bucket
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Athena

fn athena(c: &Common) -> aws_sdk_athena::Client {
    sdk_client!(aws_sdk_athena, c)
}

/// One finished Athena query.
struct AthenaRun {
    wall: Duration,
    engine_ms: i64,
    scanned: i64,
    rows: Vec<Vec<String>>,
}

/// Runs `sql` to the end and reads its first page of results.
async fn athena_query(
    a: &aws_sdk_athena::Client,
    args: &BenchArgs,
    database: Option<&str>,
    sql: &str,
) -> anyhow::Result<AthenaRun> {
    let t = Instant::now();
    let mut req = a
        .start_query_execution()
        .query_string(sql)
        .result_configuration(ResultConfiguration::builder().output_location(&args.output).build());
    if let Some(db) = database {
        req = req.query_execution_context(QueryExecutionContext::builder().database(db).build());
    }
    let id = req
        .send()
        .await
        .with_context(|| format!("StartQueryExecution {sql}"))?
        .query_execution_id()
        .unwrap_or_default()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(3600);
    let exec = loop {
        let out = a.get_query_execution().query_execution_id(&id).send().await?;
        let exec = out
            .query_execution()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("GetQueryExecution without QueryExecution"))?;
        let state = exec.status().and_then(|s| s.state()).cloned();
        match state {
            Some(QueryExecutionState::Succeeded) => break exec,
            Some(QueryExecutionState::Failed) | Some(QueryExecutionState::Cancelled) => {
                let reason = exec
                    .status()
                    .and_then(|s| s.state_change_reason())
                    .unwrap_or_default()
                    .to_owned();
                anyhow::bail!("query {id} failed: {reason}\n{sql}");
            }
            _ => {}
        }
        anyhow::ensure!(Instant::now() < deadline, "query {id} still running after an hour");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let results = a
        .get_query_results()
        .query_execution_id(&id)
        .max_results(1000)
        .send()
        .await
        .context("GetQueryResults")?;
    let wall = t.elapsed();
    let rows = results
        .result_set()
        .map(|rs| {
            rs.rows()
                .iter()
                .skip(1)
                .map(|r| {
                    r.data()
                        .iter()
                        .map(|d| d.var_char_value().unwrap_or("NULL").to_owned())
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    let stats = exec.statistics();
    Ok(AthenaRun {
        wall,
        engine_ms: stats.and_then(|s| s.engine_execution_time_in_millis()).unwrap_or(-1),
        scanned: stats.and_then(|s| s.data_scanned_in_bytes()).unwrap_or(-1),
        rows,
    })
}

const COLUMNS_DDL: &str = "event_id bigint, event_time string, ticker string, price double, user_id bigint, \
     country string, amount double, kind string, session string";

fn projection(a: &BenchArgs, prefix: &str) -> String {
    let first = hour_start(0).format("%Y/%m/%d/%H");
    let last = hour_start(a.days.max(1) * 24 - 1).format("%Y/%m/%d/%H");
    format!(
        "TBLPROPERTIES ('projection.enabled'='true', 'projection.datehour.type'='date', \
         'projection.datehour.format'='yyyy/MM/dd/HH', 'projection.datehour.range'='{first},{last}', \
         'projection.datehour.interval'='1', 'projection.datehour.interval.unit'='HOURS', \
         'storage.location.template'='s3://{b}/{prefix}/${{datehour}}/')",
        b = a.bucket
    )
}

/// The tables, dropped and declared again (cheap: catalog entries only).
async fn declare(client: &aws_sdk_athena::Client, a: &BenchArgs) -> anyhow::Result<()> {
    let db = a.database.as_str();
    let b = a.bucket.as_str();
    athena_query(client, a, None, &format!("CREATE DATABASE IF NOT EXISTS {db}")).await?;
    let ddl = [
        "DROP TABLE IF EXISTS events_json".to_owned(),
        format!(
            "CREATE EXTERNAL TABLE events_json ({COLUMNS_DDL}) PARTITIONED BY (datehour string) \
             ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' LOCATION 's3://{b}/{JSON_PREFIX}/' {}",
            projection(a, JSON_PREFIX)
        ),
        "DROP TABLE IF EXISTS events_parquet".to_owned(),
        format!(
            "CREATE EXTERNAL TABLE events_parquet ({COLUMNS_DDL}) PARTITIONED BY (datehour string) \
             STORED AS PARQUET LOCATION 's3://{b}/{PARQUET_PREFIX}/' {}",
            projection(a, PARQUET_PREFIX)
        ),
        "DROP TABLE IF EXISTS countries".to_owned(),
        format!(
            "CREATE EXTERNAL TABLE countries (code string, name string, region string) \
             ROW FORMAT DELIMITED FIELDS TERMINATED BY ',' LOCATION 's3://{b}/countries/' \
             TBLPROPERTIES ('skip.header.line.count'='1')"
        ),
    ];
    for sql in ddl {
        athena_query(client, a, Some(db), &sql).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The query set

struct Query {
    name: &'static str,
    /// `{t}` = the table (Athena) or the reader of every object (DuckDB).
    sql: &'static str,
    /// DuckDB's text when it differs (`{day}` = the reader of one day's objects).
    duck: Option<&'static str>,
}

/// The day the partition-filtered count selects (the third).
const PARTITION_DAY: u32 = 2;

fn queries() -> Vec<Query> {
    vec![
        Query {
            name: "count",
            sql: "SELECT count(*) AS n FROM {t}",
            duck: None,
        },
        Query {
            name: "filter",
            sql: "SELECT count(*) AS n, sum(amount) AS total FROM {t} WHERE ticker = 'NFLX' AND amount > 9900",
            duck: None,
        },
        Query {
            name: "group by",
            sql: "SELECT ticker, kind, count(*) AS n, avg(price) AS avg_price, sum(amount) AS total \
                  FROM {t} GROUP BY ticker, kind ORDER BY ticker, kind",
            duck: None,
        },
        Query {
            name: "top-N",
            sql: "SELECT user_id, count(*) AS n, sum(amount) AS total FROM {t} \
                  GROUP BY user_id ORDER BY total DESC, user_id LIMIT 10",
            duck: None,
        },
        Query {
            name: "join",
            sql: "SELECT c.region, count(*) AS n, sum(e.amount) AS total FROM {t} e \
                  JOIN countries c ON e.country = c.code GROUP BY c.region ORDER BY c.region",
            duck: None,
        },
        Query {
            name: "partition count",
            sql: "SELECT count(*) AS n FROM {t} WHERE datehour BETWEEN '{d0}' AND '{d1}'",
            duck: Some("SELECT count(*) AS n FROM {day}"),
        },
    ]
}

fn day_bounds() -> (String, String) {
    let d0 = hour_start(PARTITION_DAY * 24);
    let d1 = hour_start(PARTITION_DAY * 24 + 23);
    (
        d0.format("%Y/%m/%d/%H").to_string(),
        d1.format("%Y/%m/%d/%H").to_string(),
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Json,
    Parquet,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Json => "gzip JSON",
            Format::Parquet => "Parquet",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Format::Json => "events_json",
            Format::Parquet => "events_parquet",
        }
    }

    /// DuckDB's reader of the objects matching `glob` (relative to the data directory).
    fn duck_reader(self, data: &Path, glob: &str) -> String {
        let path = data.join(glob).display().to_string().replace('\'', "''");
        match self {
            Format::Json => format!(
                "read_json('{path}', format='newline_delimited', compression='gzip', hive_partitioning=false, \
                 columns={{'event_id':'BIGINT','event_time':'VARCHAR','ticker':'VARCHAR','price':'DOUBLE',\
                 'user_id':'BIGINT','country':'VARCHAR','amount':'DOUBLE','kind':'VARCHAR','session':'VARCHAR'}})"
            ),
            Format::Parquet => format!("read_parquet('{path}', hive_partitioning=false)"),
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Format::Json => JSON_PREFIX,
            Format::Parquet => PARQUET_PREFIX,
        }
    }

    fn ext(self) -> &'static str {
        match self {
            Format::Json => "gz",
            Format::Parquet => "parquet",
        }
    }
}

// ---------------------------------------------------------------------------------------
// DuckDB

const DUCK_SCRIPT: &str = r#"
import json, sys, time
import duckdb
job = json.load(sys.stdin)
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
for s in job["setup"]:
    con.execute(s)
threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
out = {"version": duckdb.__version__, "threads": threads, "results": []}
def cell(v):
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return repr(v)
    return str(v)
for q in job["queries"]:
    times = []
    rows = None
    for _ in range(job["reps"]):
        t = time.perf_counter()
        rows = con.execute(q).fetchall()
        times.append((time.perf_counter() - t) * 1000.0)
    out["results"].append({"times_ms": times, "rows": [[cell(v) for v in r] for r in rows]})
sys.stdout.write("\nDUCKDB-RESULT " + json.dumps(out) + "\n")
"#;

struct DuckRun {
    times_ms: Vec<f64>,
    rows: Vec<Vec<String>>,
}

/// Runs the queries in one DuckDB process; returns DuckDB's version, threads and results.
async fn duckdb(
    a: &BenchArgs,
    setup: Vec<String>,
    queries: Vec<String>,
) -> anyhow::Result<(String, String, Vec<DuckRun>)> {
    use tokio::io::AsyncWriteExt as _;
    let job = serde_json::json!({"setup": setup, "queries": queries, "reps": a.reps.max(1)});
    let mut child = tokio::process::Command::new(&a.python)
        .arg("-c")
        .arg(DUCK_SCRIPT)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .with_context(|| format!("start {} (needs `pip install duckdb`)", a.python))?;
    let mut stdin = child.stdin.take().ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    stdin.write_all(job.to_string().as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    anyhow::ensure!(out.status.success(), "DuckDB script failed ({})", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("DUCKDB-RESULT "))
        .ok_or_else(|| anyhow::anyhow!("no result line in DuckDB's output: {stdout}"))?;
    let v: serde_json::Value = serde_json::from_str(line).context("DuckDB script output")?;
    let text = |k: &str| {
        v.get(k)
            .map(|x| x.to_string().trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    let mut runs = Vec::new();
    for r in v.get("results").and_then(|r| r.as_array()).into_iter().flatten() {
        let times_ms = r
            .get("times_ms")
            .and_then(|t| t.as_array())
            .map(|t| t.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default();
        let rows = r
            .get("rows")
            .and_then(|t| t.as_array())
            .map(|rows| {
                rows.iter()
                    .map(|row| {
                        row.as_array()
                            .map(|cells| {
                                cells
                                    .iter()
                                    .map(|c| c.as_str().unwrap_or_default().to_owned())
                                    .collect()
                            })
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        runs.push(DuckRun { times_ms, rows });
    }
    Ok((text("version"), text("threads"), runs))
}

// ---------------------------------------------------------------------------------------
// Comparison and report

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Equal cells: the same text, or numbers within 1e-9 relative (sums of doubles in another
/// order).
fn same_cell(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

fn same_rows(a: &[Vec<String>], b: &[Vec<String>]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_cell(p, q)))
}

fn mb(bytes: i64) -> String {
    if bytes < 0 {
        return "?".into();
    }
    format!("{:.1} MB", bytes as f64 / 1e6)
}

struct Line {
    format: Format,
    query: &'static str,
    wall_ms: f64,
    engine_ms: f64,
    scanned: i64,
    duck_ms: Option<f64>,
    same: Option<bool>,
    rows: Vec<Vec<String>>,
}

/// Runs the benchmark.
pub async fn run(common: Common, a: BenchArgs) -> anyhow::Result<()> {
    let m = tokio::task::spawn_blocking({
        let a = a.clone();
        move || ensure_data(&a)
    })
    .await??;
    println!(
        "dataset: {} rows = {:.3} GB of uncompressed JSON lines (\"{} GB\" means {} × 10^6 bytes of newline-terminated JSON text before compression); \
         {} objects per format over {} days of hourly partitions; gzip JSON {:.1} MB, Parquet (Snappy) {:.1} MB on disk",
        m.rows,
        m.json_bytes as f64 / 1e9,
        a.size_mb as f64 / 1000.0,
        a.size_mb,
        m.objects,
        a.days,
        m.gz_bytes as f64 / 1e6,
        m.parquet_bytes as f64 / 1e6,
    );
    upload(&common, &a).await?;
    let client = athena(&common);
    declare(&client, &a).await?;
    println!(
        "tables: {db}.events_json (OpenX JsonSerDe), {db}.events_parquet (Parquet), {db}.countries (CSV); partition projection over yyyy/MM/dd/HH",
        db = a.database
    );

    let data = a.dir.join("data");
    let (d0, d1) = day_bounds();
    let day_glob = |f: Format| format!("{}/{}/*/*.{}", f.prefix(), &d0[..10], f.ext());
    let all_glob = |f: Format| format!("{}/*/*/*/*/*.{}", f.prefix(), f.ext());
    let formats: Vec<Format> = [Format::Json, Format::Parquet]
        .into_iter()
        .filter(|f| match a.format.as_deref() {
            Some("json") => *f == Format::Json,
            Some("parquet") => *f == Format::Parquet,
            _ => true,
        })
        .collect();
    let qs: Vec<Query> = queries()
        .into_iter()
        .filter(|q| a.only.as_deref().is_none_or(|o| q.name.contains(o)))
        .collect();
    let reps = a.reps.max(1);
    let mut lines: Vec<Line> = Vec::new();
    for &f in &formats {
        // Athena: one untimed warm-up run of the first query, then `reps` runs of each.
        athena_query(
            &client,
            &a,
            Some(&a.database),
            &format!("SELECT count(*) FROM {}", f.table()),
        )
        .await?;
        for q in &qs {
            let sql = q
                .sql
                .replace("{t}", f.table())
                .replace("{d0}", &d0)
                .replace("{d1}", &d1);
            let mut walls = Vec::new();
            let mut engines = Vec::new();
            let mut last = None;
            for _ in 0..reps {
                let r = athena_query(&client, &a, Some(&a.database), &sql).await?;
                walls.push(r.wall.as_secs_f64() * 1000.0);
                engines.push(r.engine_ms as f64);
                last = Some(r);
            }
            let last = last.ok_or_else(|| anyhow::anyhow!("no run"))?;
            println!(
                "athena {:<9} {:<16} median wall {:>8.1} ms, engine {:>7.0} ms, scanned {}",
                f.name(),
                q.name,
                median(walls.clone()),
                median(engines.clone()),
                mb(last.scanned)
            );
            lines.push(Line {
                format: f,
                query: q.name,
                wall_ms: median(walls),
                engine_ms: median(engines),
                scanned: last.scanned,
                duck_ms: None,
                same: None,
                rows: last.rows,
            });
        }
    }

    let mut duck_version = String::new();
    let mut duck_threads = String::new();
    if !a.no_duckdb {
        let dim = data.join(DIM_KEY).display().to_string().replace('\'', "''");
        let mut setup = vec![format!(
            "CREATE VIEW countries AS SELECT * FROM read_csv('{dim}', header=true, \
             columns={{'code':'VARCHAR','name':'VARCHAR','region':'VARCHAR'}})"
        )];
        for &f in &formats {
            setup.push(format!(
                "CREATE VIEW {} AS SELECT * FROM {}",
                f.table(),
                f.duck_reader(&data, &all_glob(f))
            ));
        }
        let mut texts = Vec::new();
        for &f in &formats {
            for q in &qs {
                texts.push(
                    q.duck
                        .unwrap_or(q.sql)
                        .replace("{t}", f.table())
                        .replace("{day}", &f.duck_reader(&data, &day_glob(f))),
                );
            }
        }
        // Warm-up: the same first query once per format (reads the files into the page cache).
        let mut warm = Vec::new();
        for &f in &formats {
            warm.push(format!("SELECT count(*) FROM {}", f.table()));
        }
        let n_warm = warm.len();
        warm.extend(texts);
        let (v, th, runs) = duckdb(&a, setup, warm).await?;
        duck_version = v;
        duck_threads = th;
        anyhow::ensure!(
            runs.len() == lines.len() + n_warm,
            "DuckDB returned {} results",
            runs.len()
        );
        for (line, run) in lines.iter_mut().zip(runs.into_iter().skip(n_warm)) {
            line.duck_ms = Some(median(run.times_ms));
            line.same = Some(same_rows(&line.rows, &run.rows));
            if line.same == Some(false) {
                eprintln!(
                    "MISMATCH {} {}:\n  athena {:?}\n  duckdb {:?}",
                    line.format.name(),
                    line.query,
                    line.rows,
                    run.rows
                );
            }
        }
    }

    // Report.
    println!();
    println!(
        "Athena via the API (median of {reps}; wall = StartQueryExecution → SUCCEEDED → first GetQueryResults page) \
         vs DuckDB {duck_version} ({duck_threads} threads, in-process, median of {reps}); page cache warm for both"
    );
    println!();
    println!(
        "| format | query | Athena wall ms | Athena engine ms | DataScannedInBytes | DuckDB ms | Athena / DuckDB | same result |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for l in &lines {
        println!(
            "| {} | {} | {:.0} | {:.0} | {} | {} | {} | {} |",
            l.format.name(),
            l.query,
            l.wall_ms,
            l.engine_ms,
            mb(l.scanned),
            l.duck_ms.map_or("-".into(), |d| format!("{d:.0}")),
            l.duck_ms.map_or("-".into(), |d| format!("{:.2}×", l.wall_ms / d)),
            match l.same {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            }
        );
    }
    println!();
    let mut failed = false;
    for &f in &formats {
        let ls: Vec<&Line> = lines.iter().filter(|l| l.format == f).collect();
        let athena: f64 = ls.iter().map(|l| l.wall_ms).sum();
        if let Some(duck) = ls.iter().map(|l| l.duck_ms).sum::<Option<f64>>() {
            let target = if f == Format::Json { 1.5 } else { 1.2 };
            let ratio = athena / duck;
            let geo = (ls
                .iter()
                .filter_map(|l| l.duck_ms.map(|d| (l.wall_ms / d).ln()))
                .sum::<f64>()
                / ls.len().max(1) as f64)
                .exp();
            println!(
                "{}: whole query set Athena {:.0} ms vs DuckDB {:.0} ms = {ratio:.2}× (geometric mean of the per-query ratios {geo:.2}×); target ≤ {target}×: {}",
                f.name(),
                athena,
                duck,
                if ratio <= target { "met" } else { "MISSED" }
            );
        }
        let full = ls.iter().find(|l| l.query == "count").map(|l| l.scanned);
        let part = ls.iter().find(|l| l.query == "partition count").map(|l| l.scanned);
        if let (Some(full), Some(part)) = (full, part) {
            let share = part as f64 / full.max(1) as f64;
            let expected = 1.0 / f64::from(a.days.max(1));
            let ok = share <= expected * 1.2;
            failed |= !ok;
            println!(
                "{}: partition-filtered count (datehour of day {}, 24 of {} partitions) scanned {} of the full scan's {} ({:.1} %, one day = {:.1} %): {}",
                f.name(),
                &d0[..10],
                a.days.max(1) * 24,
                mb(part),
                mb(full),
                share * 100.0,
                expected * 100.0,
                if ok {
                    "only the matching objects were read"
                } else {
                    "MORE THAN THE MATCHING OBJECTS WERE READ"
                }
            );
        }
    }
    let mismatches = lines.iter().filter(|l| l.same == Some(false)).count();
    if !a.no_duckdb {
        println!(
            "results: {} of {} queries return the same rows in both engines",
            lines.len() - mismatches,
            lines.len()
        );
    }
    anyhow::ensure!(mismatches == 0, "{mismatches} queries differ between Athena and DuckDB");
    anyhow::ensure!(!failed, "a partition-filtered count read more than its partitions");
    Ok(())
}
