//! Engine tests with in-memory fake ports (no HTTP).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kd_delivery::*;
use kd_storage::{Clock, ManualClock, MetaStore, SystemClock};

// ---------------------------------------------------------------- fakes

#[derive(Default)]
struct FakeSink {
    objects: Mutex<BTreeMap<String, (Bytes, Option<String>)>>,
    fail: Mutex<Option<PortError>>,
    /// Store the object, then never answer (a crash between put and checkpoint).
    hang_after_put: AtomicBool,
    hung: AtomicBool,
    puts: AtomicUsize,
    /// Keys (`bucket/key`) starting with one of these prefixes are refused with its error.
    refuse: Mutex<Vec<(String, PortError)>>,
    refused: AtomicUsize,
}

#[async_trait::async_trait]
impl ObjectSink for FakeSink {
    async fn put_object(
        &self,
        _account: &str,
        _role_arn: &str,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_encoding: Option<&str>,
    ) -> Result<(), PortError> {
        if let Some(e) = self.fail.lock().expect("lock").clone() {
            return Err(e);
        }
        let full = format!("{bucket}/{key}");
        if let Some((_, e)) = self
            .refuse
            .lock()
            .expect("lock")
            .iter()
            .find(|(p, _)| full.starts_with(p.as_str()))
        {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(e.clone());
        }
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.objects
            .lock()
            .expect("lock")
            .insert(format!("{bucket}/{key}"), (body, content_encoding.map(str::to_string)));
        if self.hang_after_put.load(Ordering::SeqCst) {
            self.hung.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

impl FakeSink {
    fn refuse(&self, prefix: &str, e: PortError) {
        self.refuse.lock().expect("lock").push((prefix.to_string(), e));
    }
    fn allow(&self, prefix: &str) {
        self.refuse.lock().expect("lock").retain(|(p, _)| p != prefix);
    }
    fn objects(&self) -> BTreeMap<String, (Bytes, Option<String>)> {
        self.objects.lock().expect("lock").clone()
    }
    fn keys(&self) -> Vec<String> {
        self.objects().into_keys().collect()
    }
    fn concat(&self) -> Vec<u8> {
        self.objects().values().flat_map(|(b, _)| b.to_vec()).collect()
    }
}

struct FakeShard {
    parents: Vec<String>,
    closed: bool,
    records: Vec<SourceRecord>,
}

#[derive(Default)]
struct FakeSource {
    shards: Mutex<BTreeMap<String, FakeShard>>,
    seq: AtomicU64,
}

impl FakeSource {
    fn add_shard(&self, id: &str, parents: &[&str]) {
        self.shards.lock().expect("lock").insert(
            id.to_string(),
            FakeShard {
                parents: parents.iter().map(|p| p.to_string()).collect(),
                closed: false,
                records: Vec::new(),
            },
        );
    }
    fn close(&self, id: &str) {
        if let Some(s) = self.shards.lock().expect("lock").get_mut(id) {
            s.closed = true;
        }
    }
    fn put(&self, shard: &str, data: &[u8]) {
        let n = self.seq.fetch_add(1, Ordering::SeqCst) + 1_000_000;
        if let Some(s) = self.shards.lock().expect("lock").get_mut(shard) {
            s.records.push(SourceRecord {
                sequence_number: n.to_string(),
                data: Bytes::copy_from_slice(data),
                partition_key: "pk".into(),
                arrival_ms: SystemClock.now_ms(),
            });
        }
    }
}

#[async_trait::async_trait]
impl StreamSource for FakeSource {
    async fn shards(&self, _stream_arn: &str, _role_arn: &str) -> Result<Vec<SourceShard>, PortError> {
        Ok(self
            .shards
            .lock()
            .expect("lock")
            .iter()
            .map(|(id, s)| SourceShard {
                shard_id: id.clone(),
                parents: s.parents.clone(),
                closed: s.closed,
            })
            .collect())
    }
    async fn latest(&self, _stream_arn: &str, _role_arn: &str, shard_id: &str) -> Result<Option<String>, PortError> {
        let shards = self.shards.lock().expect("lock");
        let s = shards
            .get(shard_id)
            .ok_or_else(|| PortError::NotFound(shard_id.into()))?;
        Ok(s.records.last().map(|r| r.sequence_number.clone()))
    }
    async fn read(
        &self,
        _stream_arn: &str,
        _role_arn: &str,
        shard_id: &str,
        after: Option<&str>,
        max_records: usize,
    ) -> Result<SourceBatch, PortError> {
        let shards = self.shards.lock().expect("lock");
        let s = shards
            .get(shard_id)
            .ok_or_else(|| PortError::NotFound(shard_id.into()))?;
        let after: u64 = after.map_or(0, |a| a.parse().unwrap_or(0));
        let rest: Vec<SourceRecord> = s
            .records
            .iter()
            .filter(|r| r.sequence_number.parse::<u64>().unwrap_or(0) > after)
            .cloned()
            .collect();
        let end = s.closed && rest.len() <= max_records;
        Ok(SourceBatch {
            records: rest.into_iter().take(max_records).collect(),
            end_of_shard: end,
        })
    }
}

// ---------------------------------------------------------------- helpers

struct Env {
    _dir: tempfile::TempDir,
    data_dir: std::path::PathBuf,
    meta: Arc<MetaStore>,
    sink: Arc<FakeSink>,
    source: Arc<FakeSource>,
}

fn env() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = Arc::new(MetaStore::open(&dir.path().join("meta.redb")).expect("meta"));
    Env {
        data_dir: dir.path().join("firehose"),
        _dir: dir,
        meta,
        sink: Arc::new(FakeSink::default()),
        source: Arc::new(FakeSource::default()),
    }
}

fn config(env: &Env) -> Config {
    let mut c = Config::new(&env.data_dir);
    c.create_delay_ms = 0;
    c.poll_interval_ms = 10;
    c.transform_retry_ms = 1;
    c
}

fn open(env: &Env, clock: Arc<dyn Clock>) -> Arc<Delivery> {
    Delivery::open(
        config(env),
        env.meta.clone(),
        clock,
        env.sink.clone(),
        env.source.clone(),
    )
    .expect("open")
}

fn scope() -> Scope {
    Scope {
        account: "000000000000".into(),
        region: "us-east-1".into(),
    }
}

fn dest(size_mb: u32, interval_secs: u32, compression: Compression) -> S3Destination {
    S3Destination {
        role_arn: "arn:aws:iam::000000000000:role/r".into(),
        bucket_arn: "arn:aws:s3:::bucket".into(),
        prefix: None,
        error_output_prefix: None,
        size_mb,
        interval_secs,
        compression,
        file_extension: None,
        custom_time_zone: None,
        dynamic_partitioning: None,
        format_conversion: None,
        processor: None,
        raw: serde_json::Value::Null,
        extended: true,
    }
}

fn spec(name: &str, destination: S3Destination) -> DeliveryStreamSpec {
    DeliveryStreamSpec {
        name: name.into(),
        source: Source::DirectPut,
        destination,
        tags: BTreeMap::new(),
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn recs(items: &[&[u8]]) -> Vec<Bytes> {
    items.iter().map(|b| Bytes::copy_from_slice(b)).collect()
}

const T0: i64 = 1_714_569_730_000; // 2024-05-01T13:22:10Z

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_put_size_flush_concatenates_exact_bytes() {
    let env = env();
    let d = open(&env, Arc::new(SystemClock));
    d.create(&scope(), spec("s", dest(1, 900, Compression::Uncompressed)))
        .await
        .expect("create");
    let rec = vec![b'x'; 300 * 1024];
    let mut all = Vec::new();
    for i in 0..5u8 {
        let mut r = rec.clone();
        r[0] = i;
        all.push(r);
    }
    let ids = d
        .put_records(&scope(), "s", all.iter().map(|r| Bytes::from(r.clone())).collect())
        .await
        .expect("put");
    assert_eq!(ids.len(), 5);
    // 4 records reach 1 MiB (1200 KiB): one object of exactly those bytes; the fifth waits.
    wait_until("size flush", || env.sink.keys().len() == 1).await;
    let objects = env.sink.objects();
    let (body, enc) = objects.values().next().expect("object");
    assert!(
        body.as_ref() == all[..4].concat().as_slice(),
        "first object: the first four records"
    );
    assert_eq!(enc, &None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(env.sink.keys().len(), 1, "the rest waits for the interval");
    d.flush_all().await.expect("flush");
    let mut bodies: Vec<Bytes> = env.sink.objects().into_values().map(|(b, _)| b).collect();
    bodies.sort_by_key(|b| b.len());
    assert_eq!(bodies.len(), 2);
    assert!(bodies[0].as_ref() == all[4].as_slice() && bodies[1].as_ref() == all[..4].concat().as_slice());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_put_interval_flush_with_manual_clock() {
    let env = env();
    let clock = Arc::new(ManualClock::new(T0));
    let d = open(&env, clock.clone());
    d.create(&scope(), spec("s", dest(5, 60, Compression::Uncompressed)))
        .await
        .expect("create");
    assert_eq!(d.describe(&scope(), "s").expect("describe").status, Status::Active);
    d.put_records(&scope(), "s", recs(&[b"abc", b"abc"]))
        .await
        .expect("put");
    d.put_records(&scope(), "s", recs(&[b"abc"])).await.expect("put");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(env.sink.keys().is_empty(), "nothing before the interval");
    clock.advance(60_000);
    wait_until("interval flush", || env.sink.keys().len() == 1).await;
    assert_eq!(env.sink.concat(), b"abcabcabc");
    let key = &env.sink.keys()[0];
    // Default prefix: date folders of the oldest record's arrival; then the file name.
    assert!(
        key.starts_with("bucket/2024/05/01/13/s-1-2024-05-01-13-22-10-"),
        "{key}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_round_trips() {
    let env = env();
    let d = open(&env, Arc::new(SystemClock));
    let formats = [
        Compression::Uncompressed,
        Compression::Gzip,
        Compression::Zip,
        Compression::Snappy,
        Compression::HadoopSnappy,
    ];
    let payload: Vec<Bytes> = (0..200)
        .map(|i| Bytes::from(format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "p".repeat(i))))
        .collect();
    let expected: Vec<u8> = payload.iter().flat_map(|b| b.to_vec()).collect();
    for f in formats {
        let name = format!("c-{}", f.as_str());
        d.create(&scope(), spec(&name, dest(5, 0, f))).await.expect("create");
        d.put_records(&scope(), &name, payload.clone()).await.expect("put");
    }
    d.flush_all().await.expect("flush");
    wait_until("five streams delivered", || {
        let objs = env.sink.objects();
        formats
            .iter()
            .all(|f| objs.keys().any(|k| k.contains(&format!("c-{}-1-", f.as_str()))))
    })
    .await;
    let mut per_format: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for (key, (body, enc)) in env.sink.objects() {
        let f = formats
            .iter()
            .find(|f| key.contains(&format!("/c-{}-1-", f.as_str())))
            .copied()
            .expect("format");
        assert!(key.ends_with(compress::extension(f)), "{key}");
        assert_eq!(enc.as_deref(), compress::content_encoding(f));
        let plain = match f {
            Compression::Uncompressed => body.to_vec(),
            Compression::Gzip => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(body.as_ref())
                    .read_to_end(&mut out)
                    .expect("gunzip");
                out
            }
            Compression::Zip => {
                let mut z = zip::ZipArchive::new(std::io::Cursor::new(body.to_vec())).expect("zip");
                assert_eq!(z.len(), 1);
                let mut e = z.by_index(0).expect("entry");
                let file = key.rsplit('/').next().expect("file");
                assert_eq!(e.name().expect("name"), file.strip_suffix(".zip").expect("ext"));
                let mut out = Vec::new();
                e.read_to_end(&mut out).expect("unzip");
                out
            }
            Compression::Snappy => {
                let mut out = Vec::new();
                snap::read::FrameDecoder::new(body.as_ref())
                    .read_to_end(&mut out)
                    .expect("unsnap");
                out
            }
            Compression::HadoopSnappy => hadoop_unsnappy(&body),
        };
        per_format.entry(f.as_str()).or_default().extend(plain);
    }
    for f in formats {
        assert_eq!(per_format.get(f.as_str()), Some(&expected), "{}", f.as_str());
    }
}

fn hadoop_unsnappy(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let be = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
    while !b.is_empty() {
        let ulen = be(b);
        b = &b[4..];
        let mut got = 0;
        while got < ulen {
            let clen = be(b);
            let chunk = snap::raw::Decoder::new()
                .decompress_vec(&b[4..4 + clen])
                .expect("block");
            got += chunk.len();
            out.extend(chunk);
            b = &b[4 + clen..];
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_layouts() {
    let env = env();
    let clock = Arc::new(ManualClock::new(T0));
    let d = open(&env, clock.clone());
    let mut a = dest(5, 0, Compression::Gzip);
    a.prefix = Some("logs/".into());
    let mut b = dest(5, 0, Compression::Uncompressed);
    b.prefix = Some("y=!{timestamp:yyyy}/h=!{timestamp:HH}/!{firehose:random-string}/".into());
    b.error_output_prefix = Some("err/!{firehose:error-output-type}/".into());
    b.custom_time_zone = Some("Asia/Tokyo".into());
    b.file_extension = Some(".json".into());
    let mut c = dest(5, 0, Compression::Snappy);
    c.prefix = Some("legacy".into());
    d.create(&scope(), spec("a", a)).await.expect("create");
    d.create(&scope(), spec("b", b)).await.expect("create");
    d.create(&scope(), spec("c", c)).await.expect("create");
    for n in ["a", "b", "c"] {
        d.put_records(&scope(), n, recs(&[b"r"])).await.expect("put");
    }
    wait_until("three objects", || env.sink.keys().len() == 3).await;
    let keys = env.sink.keys();
    let ka = keys.iter().find(|k| k.contains("/a-1-")).expect("a");
    assert!(
        ka.starts_with("bucket/logs/2024/05/01/13/a-1-2024-05-01-13-22-10-") && ka.ends_with(".gz"),
        "{ka}"
    );
    let kc = keys.iter().find(|k| k.contains("c-1-")).expect("c");
    assert!(
        kc.starts_with("bucket/legacy2024/05/01/13/c-1-") && kc.ends_with(".snappy"),
        "{kc}"
    );
    let kb = keys.iter().find(|k| k.contains("/b-1-")).expect("b");
    // Tokyo is UTC+9: 22h; no date folders because the prefix has a timestamp.
    let rest = kb.strip_prefix("bucket/y=2024/h=22/").expect(kb);
    let (random, file) = rest.split_once('/').expect("random part");
    assert_eq!(random.len(), 11, "{kb}");
    assert!(
        file.starts_with("b-1-2024-05-01-22-22-10-") && file.ends_with(".json"),
        "{kb}"
    );
    let uuid = file
        .strip_prefix("b-1-2024-05-01-22-22-10-")
        .and_then(|f| f.strip_suffix(".json"))
        .expect("uuid");
    assert_eq!(uuid.len(), 36);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_partitioning_splits_objects_and_routes_failures_to_error_output() {
    let env = env();
    let clock = Arc::new(ManualClock::new(T0));
    let d = open(&env, clock.clone());
    let mut x = dest(5, 60, Compression::Uncompressed);
    x.prefix = Some("customer=!{partitionKeyFromQuery:customer_id}/".into());
    x.error_output_prefix = Some("errors/!{firehose:error-output-type}/".into());
    x.dynamic_partitioning = Some(DynamicPartitioning {
        queries: BTreeMap::from([("customer_id".to_string(), ".customer_id".to_string())]),
        retry_seconds: 300,
    });
    d.create(&scope(), spec("dp", x)).await.expect("create");
    d.put_records(
        &scope(),
        "dp",
        recs(&[
            b"{\"customer_id\":1,\"v\":\"a\"}\n",
            b"{\"customer_id\":\"two\",\"v\":\"b\"}\n",
            b"not json",
            b"{\"customer_id\":1,\"v\":\"c\"}\n",
        ]),
    )
    .await
    .expect("put");
    tokio::time::sleep(Duration::from_millis(100)).await;
    clock.advance(60_000);
    wait_until("three objects", || env.sink.keys().len() == 3).await;
    let objs = env.sink.objects();
    let one = objs
        .iter()
        .find(|(k, _)| k.starts_with("bucket/customer=1/dp-1-"))
        .expect("customer 1");
    assert_eq!(
        one.1.0.as_ref(),
        b"{\"customer_id\":1,\"v\":\"a\"}\n{\"customer_id\":1,\"v\":\"c\"}\n"
    );
    let two = objs
        .iter()
        .find(|(k, _)| k.starts_with("bucket/customer=two/dp-1-"))
        .expect("customer two");
    assert_eq!(two.1.0.as_ref(), b"{\"customer_id\":\"two\",\"v\":\"b\"}\n");
    let err = objs
        .iter()
        .find(|(k, _)| k.starts_with("bucket/errors/processing-failed/2024/05/01/13/dp-1-"))
        .expect("error object");
    let line: serde_json::Value = serde_json::from_slice(err.1.0.trim_ascii_end()).expect("json line");
    assert_eq!(line["errorCode"], "DynamicPartitioning.MetadataExtractionFailed");
    assert_eq!(line["rawData"], "bm90IGpzb24=");
    assert_eq!(line["arrivalTimestamp"], T0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_conversion_writes_parquet_and_routes_mismatches_to_error_output() {
    use arrow::array::TimestampMillisecondArray;
    use arrow::array::{Array, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let env = env();
    let clock = Arc::new(ManualClock::new(T0));
    let d = open(&env, clock.clone());
    let mut x = dest(5, 60, Compression::Uncompressed);
    x.error_output_prefix = Some("errors/!{firehose:error-output-type}/".into());
    x.format_conversion = Some(FormatConversion {
        columns: vec![
            ("id".into(), ColumnType::Int),
            ("name".into(), ColumnType::String),
            ("big".into(), ColumnType::Bigint),
            ("price".into(), ColumnType::Double),
            ("ok".into(), ColumnType::Boolean),
            ("ts".into(), ColumnType::Timestamp),
            ("day".into(), ColumnType::Date),
        ],
        compression: ParquetCompression::Snappy,
    });
    d.create(&scope(), spec("pq", x)).await.expect("create");
    d.put_records(
        &scope(),
        "pq",
        recs(&[
            // newline-terminated, with an unknown key and a differently cased one
            b"{\"id\":1,\"Name\":\"a\",\"big\":9007199254740993,\"price\":1.5,\"ok\":true,\"ts\":\"2024-05-01 13:22:10.250\",\"day\":\"2024-05-01\",\"extra\":[1]}\n",
            // no newline; missing fields are nulls
            b"{\"id\":2}",
            // type mismatch: the whole record goes to the error output
            b"{\"id\":\"abc\",\"name\":\"bad\"}",
            // two objects in one record, no separator but whitespace
            b"{\"id\":3,\"ok\":false} {\"id\":4,\"name\":\"d\",\"ts\":1000}",
        ]),
    )
    .await
    .expect("put");
    tokio::time::sleep(Duration::from_millis(100)).await;
    clock.advance(60_000);
    wait_until("data and error objects", || env.sink.keys().len() == 2).await;
    let objs = env.sink.objects();
    let (key, (body, enc)) = objs
        .iter()
        .find(|(k, _)| k.starts_with("bucket/2024/05/01/13/pq-1-"))
        .expect("data object");
    assert!(key.ends_with(".parquet"), "{key}");
    assert_eq!(enc, &None);
    let reader = ParquetRecordBatchReaderBuilder::try_new(body.clone())
        .expect("parquet")
        .build()
        .expect("reader");
    let batches: Vec<_> = reader.collect::<Result<_, _>>().expect("batches");
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat");
    assert_eq!(batch.num_rows(), 4);
    let col = |n: &str| batch.column_by_name(n).expect("column").clone();
    let id = col("id");
    let id = id.as_any().downcast_ref::<Int32Array>().expect("int32");
    assert_eq!(id.values().as_ref(), &[1, 2, 3, 4]);
    let name = col("name");
    let name = name.as_any().downcast_ref::<StringArray>().expect("utf8");
    assert_eq!(name.value(0), "a");
    assert!(name.is_null(1) && name.is_null(2));
    assert_eq!(name.value(3), "d");
    let big = col("big");
    let big = big.as_any().downcast_ref::<Int64Array>().expect("int64");
    assert_eq!(big.value(0), 9_007_199_254_740_993);
    assert!(big.is_null(1));
    let price = col("price");
    let price = price.as_any().downcast_ref::<Float64Array>().expect("f64");
    assert_eq!(price.value(0), 1.5);
    let ok = col("ok");
    let ok = ok.as_any().downcast_ref::<BooleanArray>().expect("bool");
    assert!(ok.value(0) && !ok.value(2) && ok.is_null(1) && ok.is_null(3));
    let ts = col("ts");
    let ts = ts.as_any().downcast_ref::<TimestampMillisecondArray>().expect("ts");
    assert_eq!(ts.value(0), T0 + 250);
    assert_eq!(ts.value(3), 1000);
    let day = col("day");
    let day = day.as_any().downcast_ref::<Date32Array>().expect("date");
    assert_eq!(day.value(0), 19_844);
    assert_eq!(day.null_count(), 3);

    let (_, (err, _)) = objs
        .iter()
        .find(|(k, _)| k.starts_with("bucket/errors/format-conversion-failed/2024/05/01/13/pq-1-"))
        .expect("error object");
    let lines: Vec<&[u8]> = err.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1);
    let line: serde_json::Value = serde_json::from_slice(lines[0]).expect("json line");
    assert_eq!(line["lastErrorCode"], "DataFormatConversion.MalformedData");
    assert_eq!(
        line["rawData"],
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            b"{\"id\":\"abc\",\"name\":\"bad\"}"
        )
    );
    assert!(line["lastErrorMessage"].as_str().expect("message").contains("'id'"));
}

fn stream_spec(name: &str, size_mb: u32, interval: u32) -> DeliveryStreamSpec {
    DeliveryStreamSpec {
        name: name.into(),
        source: Source::KinesisStream {
            stream_arn: "arn:aws:kinesis:us-east-1:000000000000:stream/src".into(),
            role_arn: "arn:aws:iam::000000000000:role/r".into(),
        },
        destination: dest(size_mb, interval, Compression::Uncompressed),
        tags: BTreeMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_source_from_latest_fans_out_to_two_delivery_streams() {
    let env = env();
    env.source.add_shard("shardId-000000000000", &[]);
    env.source.add_shard("shardId-000000000001", &[]);
    env.source.put("shardId-000000000000", b"old;");
    let d = open(&env, Arc::new(SystemClock));
    d.create(&scope(), stream_spec("f1", 5, 0)).await.expect("create");
    d.create(&scope(), stream_spec("f2", 5, 0)).await.expect("create");
    let err = d
        .put_records(&scope(), "f1", recs(&[b"x"]))
        .await
        .expect_err("stream-sourced");
    assert!(matches!(err, Error::InvalidArgument(_)));
    wait_until("both started", || {
        ["f1", "f2"]
            .iter()
            .all(|n| d.describe(&scope(), n).expect("describe").delivery_start_ms.is_some())
    })
    .await;
    env.source.put("shardId-000000000000", b"a;");
    env.source.put("shardId-000000000001", b"b;");
    env.source.put("shardId-000000000000", b"c;");
    d.flush_all().await.expect("flush");
    wait_until("both delivered", || {
        let objs = env.sink.objects();
        ["f1", "f2"].iter().all(|n| {
            let mut got: Vec<u8> = objs
                .iter()
                .filter(|(k, _)| k.contains(&format!("/{n}-1-")))
                .flat_map(|(_, (b, _))| b.to_vec())
                .collect();
            got.sort();
            let mut want = b"a;b;c;".to_vec();
            want.sort();
            got == want
        })
    })
    .await;
    assert!(
        !env.sink.concat().windows(4).any(|w| w == b"old;"),
        "LATEST skips older records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_reads_parent_before_children() {
    let env = env();
    env.source.add_shard("shardId-000000000000", &[]);
    let mut cfg = config(&env);
    cfg.start_at_trim_horizon = true;
    env.source.put("shardId-000000000000", b"p1;");
    env.source.put("shardId-000000000000", b"p2;");
    env.source.close("shardId-000000000000");
    env.source.add_shard("shardId-000000000001", &["shardId-000000000000"]);
    env.source.add_shard("shardId-000000000002", &["shardId-000000000000"]);
    env.source.put("shardId-000000000001", b"c1;");
    env.source.put("shardId-000000000002", b"c2;");
    let d = Delivery::open(
        cfg,
        env.meta.clone(),
        Arc::new(SystemClock),
        env.sink.clone(),
        env.source.clone(),
    )
    .expect("open");
    d.create(&scope(), stream_spec("r", 5, 900)).await.expect("create");
    wait_until("started", || {
        d.describe(&scope(), "r").expect("d").delivery_start_ms.is_some()
    })
    .await;
    d.flush_all().await.expect("flush");
    wait_until("delivered", || env.sink.concat().len() == 12).await;
    let body = env.sink.concat();
    assert!(body.starts_with(b"p1;p2;"), "{}", String::from_utf8_lossy(&body));
    let tail = &body[6..];
    assert!(tail == b"c1;c2;" || tail == b"c2;c1;");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_failure_is_shown_then_everything_is_delivered_once() {
    let env = env();
    let d = open(&env, Arc::new(SystemClock));
    *env.sink.fail.lock().expect("lock") = Some(PortError::AccessDenied("no".into()));
    d.create(&scope(), spec("f", dest(5, 0, Compression::Uncompressed)))
        .await
        .expect("create");
    d.put_records(&scope(), "f", recs(&[b"1;", b"2;"])).await.expect("put");
    wait_until("failure shown", || {
        d.describe(&scope(), "f")
            .expect("d")
            .failure
            .is_some_and(|f| f.kind == "S3_ACCESS_DENIED")
    })
    .await;
    d.put_records(&scope(), "f", recs(&[b"3;"])).await.expect("put");
    // A graceful shutdown does not wait out the retry backoff.
    tokio::time::timeout(Duration::from_secs(5), d.flush_all())
        .await
        .expect("flush_all returns")
        .expect("flush");
    *env.sink.fail.lock().expect("lock") = Some(PortError::NotFound("bucket".into()));
    wait_until("bucket failure shown", || {
        d.describe(&scope(), "f")
            .expect("d")
            .failure
            .is_some_and(|f| f.kind == "S3_BUCKET_NOT_FOUND")
    })
    .await;
    *env.sink.fail.lock().expect("lock") = None;
    wait_until("delivered", || env.sink.concat().len() == 6).await;
    d.flush_all().await.expect("flush");
    // Objects are keyed by random uuids: compare their sorted bodies.
    let mut bodies: Vec<Bytes> = env.sink.objects().into_values().map(|(b, _)| b).collect();
    bodies.sort();
    assert_eq!(bodies.concat(), b"1;2;3;");
    assert!(d.describe(&scope(), "f").expect("d").failure.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_retry_window_writes_error_records_and_retries_the_error_output() {
    use base64::Engine as _;
    let env = env();
    let mut c = config(&env);
    c.retry_max_secs = 0; // the first failure ends the retry window
    let d = Delivery::open(
        c,
        env.meta.clone(),
        Arc::new(SystemClock),
        env.sink.clone(),
        env.source.clone(),
    )
    .expect("open");
    env.sink.refuse("bucket/data/", PortError::AccessDenied("no".into()));
    // The error output (same bucket) fails too at first: it is retried, not dropped.
    env.sink.refuse("bucket/errors/", PortError::Other("busy".into()));
    let mut dst = dest(5, 0, Compression::Uncompressed);
    dst.prefix = Some("data/".into());
    dst.error_output_prefix = Some("errors/!{firehose:error-output-type}/".into());
    d.create(&scope(), spec("f", dst)).await.expect("create");
    d.put_records(&scope(), "f", recs(&[b"a;", b"b;"])).await.expect("put");
    // One data attempt, then at least two error-output attempts (backoff 1 s).
    wait_until("error output retried", || env.sink.refused.load(Ordering::SeqCst) >= 3).await;
    assert!(env.sink.keys().is_empty());
    env.sink.allow("bucket/errors/");
    wait_until("error object", || !env.sink.keys().is_empty()).await;
    let objects = env.sink.objects();
    assert_eq!(objects.len(), 1);
    let (key, (body, _)) = objects.iter().next().expect("one");
    assert!(key.starts_with("bucket/errors/processing-failed/"), "{key}");
    let lines: Vec<serde_json::Value> = std::str::from_utf8(body)
        .expect("utf8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2);
    for (line, raw) in lines.iter().zip([b"a;", b"b;"]) {
        assert_eq!(line["errorCode"], "S3.AccessDenied");
        assert!(line["errorMessage"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(line["attemptsMade"], 1);
        assert!(line["arrivalTimestamp"].as_i64().is_some_and(|t| t > 0));
        assert!(line["attemptEndingTimestamp"].as_i64().is_some_and(|t| t > 0));
        let data = base64::engine::general_purpose::STANDARD
            .decode(line["rawData"].as_str().expect("rawData"))
            .expect("base64");
        assert_eq!(data, raw);
    }
    // The failed records were checkpointed: once the data key is writable, only new
    // records are delivered.
    env.sink.allow("bucket/data/");
    d.put_records(&scope(), "f", recs(&[b"c;"])).await.expect("put");
    wait_until("data object", || env.sink.keys().len() == 2).await;
    let data: Vec<Bytes> = env
        .sink
        .objects()
        .into_iter()
        .filter(|(k, _)| k.starts_with("bucket/data/"))
        .map(|(_, (b, _))| b)
        .collect();
    assert_eq!(data, vec![Bytes::from_static(b"c;")]);
}

#[test]
fn crash_between_put_and_checkpoint_redoes_the_same_key() {
    let env = env();
    let rt1 = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    env.sink.hang_after_put.store(true, Ordering::SeqCst);
    rt1.block_on(async {
        let d = open(&env, Arc::new(SystemClock));
        d.create(&scope(), spec("x", dest(5, 0, Compression::Gzip)))
            .await
            .expect("create");
        d.put_records(&scope(), "x", recs(&[b"one;", b"two;"]))
            .await
            .expect("put");
        wait_until("hung after put", || env.sink.hung.load(Ordering::SeqCst)).await;
        // More records arrive while the worker is stuck: they must be delivered once too.
        d.put_records(&scope(), "x", recs(&[b"three;"])).await.expect("put");
        drop(d);
    });
    // The crash: every task dies between put_object and the checkpoint.
    drop(rt1);
    let first_keys = env.sink.keys();
    assert_eq!(first_keys.len(), 1);
    env.sink.hang_after_put.store(false, Ordering::SeqCst);
    let rt2 = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    rt2.block_on(async {
        let d = open(&env, Arc::new(SystemClock));
        wait_until("redo and rest", || env.sink.puts.load(Ordering::SeqCst) >= 3).await;
        d.flush_all().await.expect("flush");
        let objs = env.sink.objects();
        assert_eq!(objs.len(), 2, "{:?}", objs.keys().collect::<Vec<_>>());
        assert!(objs.contains_key(&first_keys[0]), "the intent's key is rewritten");
        let mut all = Vec::new();
        for (k, (b, _)) in &objs {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(b.as_ref())
                .read_to_end(&mut out)
                .expect("gunzip");
            if k == &first_keys[0] {
                assert_eq!(out, b"one;two;");
            }
            all.extend(out);
        }
        assert_eq!(all.len(), b"one;two;three;".len());
        // Restart again: nothing is redone.
        let puts = env.sink.puts.load(Ordering::SeqCst);
        drop(d);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let d = open(&env, Arc::new(SystemClock));
        tokio::time::sleep(Duration::from_millis(200)).await;
        d.flush_all().await.expect("flush");
        assert_eq!(env.sink.puts.load(Ordering::SeqCst), puts);
    });
}

#[test]
fn crash_with_dynamic_partitions_delivers_each_record_once() {
    let env = env();
    let mut x = dest(5, 0, Compression::Uncompressed);
    x.prefix = Some("c=!{partitionKeyFromQuery:c}/".into());
    x.error_output_prefix = Some("e/".into());
    x.dynamic_partitioning = Some(DynamicPartitioning {
        queries: BTreeMap::from([("c".to_string(), ".c".to_string())]),
        retry_seconds: 0,
    });
    let rt1 = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    env.sink.hang_after_put.store(true, Ordering::SeqCst);
    rt1.block_on(async {
        let d = open(&env, Arc::new(SystemClock));
        d.create(&scope(), spec("p", x)).await.expect("create");
        d.put_records(
            &scope(),
            "p",
            recs(&[b"{\"c\":1}", b"{\"c\":2}", b"{\"c\":1}", b"{\"c\":3}"]),
        )
        .await
        .expect("put");
        wait_until("hung after put", || env.sink.hung.load(Ordering::SeqCst)).await;
        drop(d);
    });
    drop(rt1);
    env.sink.hang_after_put.store(false, Ordering::SeqCst);
    let rt2 = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    rt2.block_on(async {
        let d = open(&env, Arc::new(SystemClock));
        wait_until("three partitions", || env.sink.keys().len() == 3).await;
        d.flush_all().await.expect("flush");
        let objs = env.sink.objects();
        assert_eq!(objs.len(), 3);
        let body = |p: &str| {
            objs.iter()
                .find(|(k, _)| k.starts_with(&format!("bucket/c={p}/")))
                .map(|(_, (b, _))| b.to_vec())
                .expect("partition")
        };
        assert_eq!(body("1"), b"{\"c\":1}{\"c\":1}");
        assert_eq!(body("2"), b"{\"c\":2}");
        assert_eq!(body("3"), b"{\"c\":3}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_destination_checks_versions_and_bumps_keys() {
    let env = env();
    let d = open(&env, Arc::new(SystemClock));
    d.create(&scope(), spec("u", dest(5, 900, Compression::Uncompressed)))
        .await
        .expect("create");
    let err = d
        .update_destination(
            &scope(),
            "u",
            2,
            "destinationId-000000000001",
            dest(5, 0, Compression::Uncompressed),
        )
        .await
        .expect_err("version");
    assert_eq!(
        err.to_string(),
        "Cannot update firehose: u since the current version id: 1 and specified version id: 2 do not match"
    );
    assert!(matches!(err, Error::ConcurrentModification(_)));
    let err = d
        .update_destination(
            &scope(),
            "u",
            1,
            "destinationId-000000000002",
            dest(5, 0, Compression::Uncompressed),
        )
        .await
        .expect_err("id");
    assert!(matches!(err, Error::InvalidArgument(_)));
    let mut nd = dest(5, 0, Compression::Uncompressed);
    nd.prefix = Some("new/".into());
    d.update_destination(&scope(), "u", 1, "destinationId-000000000001", nd)
        .await
        .expect("update");
    let info = d.describe(&scope(), "u").expect("d");
    assert_eq!(info.version, 2);
    assert!(info.updated_ms.is_some());
    d.put_records(&scope(), "u", recs(&[b"z"])).await.expect("put");
    wait_until("delivered", || env.sink.keys().len() == 1).await;
    assert!(env.sink.keys()[0].starts_with("bucket/new/") && env.sink.keys()[0].contains("/u-2-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_list_tags_and_errors() {
    let env = env();
    let clock = Arc::new(ManualClock::new(T0));
    let mut cfg = config(&env);
    cfg.create_delay_ms = 200;
    let d = Delivery::open(
        cfg,
        env.meta.clone(),
        clock.clone(),
        env.sink.clone(),
        env.source.clone(),
    )
    .expect("open");
    let arn = d
        .create(&scope(), spec("b", dest(5, 300, Compression::Uncompressed)))
        .await
        .expect("create");
    assert_eq!(arn, "arn:aws:firehose:us-east-1:000000000000:deliverystream/b");
    let err = d
        .create(&scope(), spec("b", dest(5, 300, Compression::Uncompressed)))
        .await
        .expect_err("dup");
    assert_eq!(err.to_string(), "Firehose b under account 000000000000 already exists.");
    assert!(matches!(err, Error::InUse(_)));
    assert_eq!(d.describe(&scope(), "b").expect("d").status, Status::Creating);
    assert!(matches!(d.delete(&scope(), "b").await, Err(Error::InUse(_))));
    clock.advance(200);
    assert_eq!(d.describe(&scope(), "b").expect("d").status, Status::Active);
    d.create(&scope(), spec("a", dest(5, 300, Compression::Uncompressed)))
        .await
        .expect("create");
    d.create(&scope(), stream_spec("c", 5, 300)).await.expect("create");
    assert_eq!(
        d.list(&scope(), None, None, 10),
        (vec!["a".into(), "b".into(), "c".into()], false)
    );
    assert_eq!(d.list(&scope(), None, Some("a"), 1), (vec!["b".into()], true));
    assert_eq!(
        d.list(&scope(), Some("KinesisStreamAsSource"), None, 10),
        (vec!["c".into()], false)
    );
    assert_eq!(d.list(&scope(), Some("DirectPut"), None, 10).0.len(), 2);
    d.tag(
        &scope(),
        "a",
        BTreeMap::from([("k".into(), "v".into()), ("k2".into(), "v2".into())]),
    )
    .await
    .expect("tag");
    d.untag(&scope(), "a", &["k2".to_string()]).await.expect("untag");
    assert_eq!(
        d.list_tags(&scope(), "a").expect("tags"),
        BTreeMap::from([("k".into(), "v".into())])
    );
    let too_many: BTreeMap<String, String> = (0..51).map(|i| (format!("t{i}"), String::new())).collect();
    assert!(matches!(
        d.tag(&scope(), "a", too_many).await,
        Err(Error::LimitExceeded(_))
    ));
    let err = d.describe(&scope(), "zz").expect_err("missing");
    assert_eq!(err.to_string(), "Firehose zz under account 000000000000 not found.");
    let mut bad = dest(5, 300, Compression::Uncompressed);
    bad.custom_time_zone = Some("Mars/Olympus".into());
    assert!(matches!(
        d.create(&scope(), spec("tz", bad)).await,
        Err(Error::InvalidArgument(_))
    ));
    // Durable: a reopened engine sees the same streams and tags.
    drop(d);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let d = open(&env, clock.clone());
    assert_eq!(d.list(&scope(), None, None, 10).0.len(), 3);
    assert_eq!(d.list_tags(&scope(), "a").expect("tags").len(), 1);
    d.delete(&scope(), "a").await.expect("delete");
    assert!(matches!(d.describe(&scope(), "a"), Err(Error::NotFound { .. })));
    d.reset().await.expect("reset");
    assert!(d.list(&scope(), None, None, 10).0.is_empty());
}

// ---------------------------------------------------------------- Lambda processor

type Script = Arc<dyn Fn(&TransformInputRecord) -> Option<TransformedRecord> + Send + Sync>;

/// An in-memory transformation function: `script` answers each record (`None`: the record
/// is left out of the answer); `fail` makes every invocation fail; `fail_next` fails that
/// many invocations first.
struct FakeTransformer {
    script: Script,
    calls: Mutex<Vec<(String, String, TransformRequest)>>,
    fail: Mutex<Option<PortError>>,
    fail_next: AtomicUsize,
}

impl FakeTransformer {
    fn new(script: Script) -> Arc<FakeTransformer> {
        Arc::new(FakeTransformer {
            script,
            calls: Mutex::new(Vec::new()),
            fail: Mutex::new(None),
            fail_next: AtomicUsize::new(0),
        })
    }
    fn requests(&self) -> Vec<TransformRequest> {
        self.calls
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, _, r)| r.clone())
            .collect()
    }
    fn count(&self) -> usize {
        self.calls.lock().expect("lock").len()
    }
}

#[async_trait::async_trait]
impl RecordTransformer for FakeTransformer {
    async fn transform(
        &self,
        function_arn: &str,
        role_arn: &str,
        event: TransformRequest,
    ) -> Result<TransformResponse, PortError> {
        self.calls
            .lock()
            .expect("lock")
            .push((function_arn.to_string(), role_arn.to_string(), event.clone()));
        if let Some(e) = self.fail.lock().expect("lock").clone() {
            return Err(e);
        }
        if self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(PortError::Other("transient".into()));
        }
        Ok(TransformResponse {
            records: event.records.iter().filter_map(|r| (self.script)(r)).collect(),
        })
    }
}

fn answer(r: &TransformInputRecord, result: TransformResult, data: &[u8]) -> Option<TransformedRecord> {
    Some(TransformedRecord {
        record_id: r.record_id.clone(),
        result,
        data: Bytes::copy_from_slice(data),
        partition_keys: BTreeMap::new(),
    })
}

/// `drop…` → Dropped, `fail…` → ProcessingFailed, `skip…` → left out, else Ok uppercased.
fn upper_script() -> Script {
    Arc::new(|r: &TransformInputRecord| {
        let d = r.data.as_ref();
        if d.starts_with(b"drop") {
            answer(r, TransformResult::Dropped, b"")
        } else if d.starts_with(b"fail") {
            answer(r, TransformResult::ProcessingFailed, b"")
        } else if d.starts_with(b"skip") {
            None
        } else {
            answer(r, TransformResult::Ok, &d.to_ascii_uppercase())
        }
    })
}

const FN_ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:upper";

fn lambda_dest(interval_secs: u32) -> S3Destination {
    let mut d = dest(5, interval_secs, Compression::Uncompressed);
    d.prefix = Some("data/".into());
    d.error_output_prefix = Some("errors/!{firehose:error-output-type}/".into());
    d.processor = Some(LambdaProcessor::new(FN_ARN));
    d
}

fn error_lines(env: &Env) -> Vec<serde_json::Value> {
    env.sink
        .objects()
        .into_iter()
        .filter(|(k, _)| k.starts_with("bucket/errors/processing-failed/"))
        .flat_map(|(_, (b, _))| {
            std::str::from_utf8(&b)
                .expect("utf8")
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn raw_of(line: &serde_json::Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(line["rawData"].as_str().expect("rawData"))
        .expect("base64")
}

fn data_bodies(env: &Env) -> Vec<Bytes> {
    env.sink
        .objects()
        .into_iter()
        .filter(|(k, _)| k.starts_with("bucket/data/"))
        .map(|(_, (b, _))| b)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_ok_dropped_failed_and_missing_records() {
    let env = env();
    let d = open(&env, Arc::new(SystemClock));
    let t = FakeTransformer::new(upper_script());
    d.set_transformer(t.clone());
    let mut x = lambda_dest(0);
    x.processor.as_mut().expect("p").role_arn = Some("arn:aws:iam::000000000000:role/invoker".into());
    d.create(&scope(), spec("lam", x)).await.expect("create");
    let ids = d
        .put_records(&scope(), "lam", recs(&[b"a;", b"drop;", b"b;", b"fail;", b"skip;"]))
        .await
        .expect("put");
    wait_until("data and error objects", || env.sink.keys().len() == 2).await;
    assert_eq!(data_bodies(&env), vec![Bytes::from_static(b"A;B;")]);
    let lines = error_lines(&env);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let failed = lines.iter().find(|l| raw_of(l) == b"fail;").expect("fail line");
    assert_eq!(failed["errorCode"], "Lambda.ProcessingFailedStatus");
    assert_eq!(failed["attemptsMade"], 1);
    assert_eq!(failed["lambdaArn"], FN_ARN);
    assert!(failed["arrivalTimestamp"].as_i64().is_some_and(|t| t > 0));
    assert!(failed["attemptEndingTimestamp"].as_i64().is_some_and(|t| t > 0));
    let missing = lines.iter().find(|l| raw_of(l) == b"skip;").expect("missing line");
    assert_eq!(missing["errorCode"], "Lambda.MissingRecordId");
    // One invocation with the Lambda event of the reference (DirectPut: no Kinesis parts).
    let calls = t.calls.lock().expect("lock").clone();
    assert_eq!(calls.len(), 1);
    let (function, role, req) = &calls[0];
    assert_eq!(function, FN_ARN);
    assert_eq!(role, "arn:aws:iam::000000000000:role/invoker");
    assert_eq!(
        req.delivery_stream_arn,
        "arn:aws:firehose:us-east-1:000000000000:deliverystream/lam"
    );
    assert_eq!(req.region, "us-east-1");
    assert_eq!(req.source_kinesis_stream_arn, None);
    let got: Vec<&str> = req.records.iter().map(|r| r.record_id.as_str()).collect();
    assert_eq!(
        got,
        ids.iter().map(String::as_str).collect::<Vec<_>>(),
        "recordId = RecordId"
    );
    assert!(
        req.records
            .iter()
            .all(|r| r.kinesis.is_none() && r.approximate_arrival_ms > 0)
    );
    // Records the function dropped are done: a second batch of only dropped records moves
    // the checkpoint, so a restart invokes nothing again.
    d.put_records(&scope(), "lam", recs(&[b"drop1;", b"drop2;"]))
        .await
        .expect("put");
    wait_until("second invocation", || t.count() == 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(d);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let d = open(&env, Arc::new(SystemClock));
    let t2 = FakeTransformer::new(upper_script());
    d.set_transformer(t2.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.flush_all().await.expect("flush");
    assert_eq!(t2.count(), 0, "nothing is transformed twice");
    assert_eq!(env.sink.keys().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_invocation_failures_are_retried_then_go_to_processing_failed() {
    let env = env();
    let d = open(&env, Arc::new(SystemClock));
    let t = FakeTransformer::new(upper_script());
    *t.fail.lock().expect("lock") = Some(PortError::AccessDenied("not allowed".into()));
    d.set_transformer(t.clone());
    let mut x = lambda_dest(0);
    x.processor.as_mut().expect("p").number_of_retries = 2;
    d.create(&scope(), spec("f", x)).await.expect("create");
    d.put_records(&scope(), "f", recs(&[b"a;", b"b;"])).await.expect("put");
    wait_until("error object", || !env.sink.keys().is_empty()).await;
    assert_eq!(t.count(), 3, "one attempt and NumberOfRetries retries");
    let lines = error_lines(&env);
    assert_eq!(lines.len(), 2);
    for (line, raw) in lines.iter().zip([b"a;", b"b;"]) {
        assert_eq!(line["errorCode"], "Lambda.InvokeAccessDenied");
        assert_eq!(line["attemptsMade"], 3);
        assert_eq!(line["lambdaArn"], FN_ARN);
        assert_eq!(raw_of(line), raw);
    }
    assert!(data_bodies(&env).is_empty());
    // A function error; then transient failures within the retries deliver normally.
    *t.fail.lock().expect("lock") = Some(PortError::Other("boom".into()));
    d.put_records(&scope(), "f", recs(&[b"c;"])).await.expect("put");
    wait_until("second error object", || env.sink.keys().len() == 2).await;
    let lines = error_lines(&env);
    let c = lines.iter().find(|l| raw_of(l) == b"c;").expect("c");
    assert_eq!(c["errorCode"], "Lambda.FunctionError");
    assert!(c["errorMessage"].as_str().is_some_and(|m| m.contains("boom")));
    *t.fail.lock().expect("lock") = None;
    t.fail_next.store(2, Ordering::SeqCst);
    d.put_records(&scope(), "f", recs(&[b"d;"])).await.expect("put");
    wait_until("data object", || !data_bodies(&env).is_empty()).await;
    assert_eq!(data_bodies(&env), vec![Bytes::from_static(b"D;")]);
    assert_eq!(error_lines(&env).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_transformer_records_go_to_processing_failed() {
    let env = env();
    let mut c = config(&env);
    c.transformer_wait_ms = 0;
    let d = Delivery::open(
        c,
        env.meta.clone(),
        Arc::new(SystemClock),
        env.sink.clone(),
        env.source.clone(),
    )
    .expect("open");
    let mut x = lambda_dest(0);
    x.processor.as_mut().expect("p").number_of_retries = 1;
    d.create(&scope(), spec("n", x)).await.expect("create");
    d.put_records(&scope(), "n", recs(&[b"x;"])).await.expect("put");
    wait_until("error object", || !env.sink.keys().is_empty()).await;
    let lines = error_lines(&env);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["errorCode"], "Lambda.FunctionError");
    assert_eq!(lines[0]["attemptsMade"], 2);
    assert_eq!(raw_of(&lines[0]), b"x;");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_keys_from_lambda_and_queries_shape_the_prefix() {
    let env = env();
    let clock = Arc::new(ManualClock::new(T0));
    let d = open(&env, clock.clone());
    // The function passes JSON through and returns its "t" member as partition key "t".
    let t = FakeTransformer::new(Arc::new(|r: &TransformInputRecord| {
        let v: serde_json::Value = serde_json::from_slice(&r.data).ok()?;
        let mut out = answer(r, TransformResult::Ok, &r.data)?;
        if let Some(tv) = v.get("t").and_then(|t| t.as_str()) {
            out.partition_keys.insert("t".into(), tv.to_string());
            out.partition_keys.insert("unused".into(), "z".into());
        }
        Some(out)
    }));
    d.set_transformer(t.clone());
    let mut x = dest(5, 60, Compression::Uncompressed);
    x.prefix = Some("t=!{partitionKeyFromLambda:t}/c=!{partitionKeyFromQuery:c}/".into());
    x.error_output_prefix = Some("errors/!{firehose:error-output-type}/".into());
    x.dynamic_partitioning = Some(DynamicPartitioning {
        queries: BTreeMap::from([("c".to_string(), ".c".to_string())]),
        retry_seconds: 300,
    });
    x.processor = Some(LambdaProcessor::new(FN_ARN));
    d.create(&scope(), spec("pk", x)).await.expect("create");
    d.put_records(
        &scope(),
        "pk",
        recs(&[
            br#"{"t":"x","c":1}"#,
            br#"{"t":"y","c":1}"#,
            br#"{"t":"x","c":2}"#,
            br#"{"c":3}"#,
            br#"{"t":"x"}"#,
            br#"{"t":"x","c":1}"#,
        ]),
    )
    .await
    .expect("put");
    wait_until("transformed", || t.count() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    clock.advance(60_000);
    wait_until("four objects", || env.sink.keys().len() == 4).await;
    let objs = env.sink.objects();
    let body = |p: &str| {
        objs.iter()
            .find(|(k, _)| k.starts_with(&format!("bucket/{p}pk-1-2024-05-01-13-22-10-")))
            .map(|(_, (b, _))| b.to_vec())
            .unwrap_or_else(|| panic!("no object under {p}: {:?}", objs.keys().collect::<Vec<_>>()))
    };
    assert_eq!(body("t=x/c=1/"), br#"{"t":"x","c":1}{"t":"x","c":1}"#);
    assert_eq!(body("t=y/c=1/"), br#"{"t":"y","c":1}"#);
    assert_eq!(body("t=x/c=2/"), br#"{"t":"x","c":2}"#);
    let lines = error_lines(&env);
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert_eq!(l["errorCode"], "DynamicPartitioning.MetadataExtractionFailed");
    }
    let no_key = lines.iter().find(|l| raw_of(l) == br#"{"c":3}"#).expect("no key");
    assert_eq!(no_key["lambdaArn"], FN_ARN);
    assert!(no_key["errorMessage"].as_str().is_some_and(|m| m.contains('t')));
    assert!(lines.iter().any(|l| raw_of(l) == br#"{"t":"x"}"#), "the query failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_are_bounded_by_the_processor_buffer_size() {
    let env = env();
    let d = open(&env, Arc::new(SystemClock));
    let t = FakeTransformer::new(upper_script());
    d.set_transformer(t.clone());
    let mut x = lambda_dest(0);
    x.processor.as_mut().expect("p").buffer_size_bytes = 209_715; // 0.2 MB
    d.create(&scope(), spec("big", x)).await.expect("create");
    let all: Vec<Vec<u8>> = (0..10u8).map(|i| vec![b'a' + i; 100 * 1024]).collect();
    d.put_records(&scope(), "big", all.iter().map(|r| Bytes::from(r.clone())).collect())
        .await
        .expect("put");
    wait_until("delivered", || {
        data_bodies(&env).iter().map(Bytes::len).sum::<usize>() == 10 * 100 * 1024
    })
    .await;
    let reqs = t.requests();
    assert_eq!(reqs.len(), 5, "two 100 KiB records per 0.2 MB invocation");
    for r in &reqs {
        assert!(r.records.iter().map(|x| x.data.len()).sum::<usize>() <= 209_715);
        assert!(r.to_event_json().to_string().len() <= MAX_LAMBDA_EVENT_BYTES);
    }
    let mut bodies = data_bodies(&env);
    bodies.sort_by_key(|b| b[0]);
    let upper: Vec<u8> = all.concat().to_ascii_uppercase();
    assert_eq!(bodies.concat(), upper, "every record once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_source_events_carry_kinesis_metadata() {
    let env = env();
    env.source.add_shard("shardId-000000000000", &[]);
    env.source.put("shardId-000000000000", b"one;");
    env.source.put("shardId-000000000000", b"two;");
    let mut cfg = config(&env);
    cfg.start_at_trim_horizon = true;
    let d = Delivery::open(
        cfg,
        env.meta.clone(),
        Arc::new(SystemClock),
        env.sink.clone(),
        env.source.clone(),
    )
    .expect("open");
    let t = FakeTransformer::new(upper_script());
    d.set_transformer(t.clone());
    let mut s = stream_spec("ks", 5, 0);
    s.destination.processor = Some(LambdaProcessor::new(FN_ARN));
    d.create(&scope(), s).await.expect("create");
    wait_until("delivered", || env.sink.concat() == b"ONE;TWO;").await;
    let reqs = t.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(
        req.source_kinesis_stream_arn.as_deref(),
        Some("arn:aws:kinesis:us-east-1:000000000000:stream/src")
    );
    assert_eq!(req.records.len(), 2);
    let k = req.records[0].kinesis.as_ref().expect("kinesis metadata");
    assert_eq!(k.shard_id, "shardId-000000000000");
    assert_eq!(k.partition_key, "pk");
    assert_eq!(k.sequence_number, "1000000");
    assert_eq!(k.subsequence_number, 0);
    assert_ne!(req.records[0].record_id, req.records[1].record_id);
    let event = req.to_event_json();
    assert!(event["records"][1]["kinesisRecordMetadata"]["sequenceNumber"] == "1000001");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_processor_flushes_the_open_buffers_first() {
    let env = env();
    let d = open(&env, Arc::new(SystemClock));
    let t = FakeTransformer::new(upper_script());
    d.set_transformer(t.clone());
    let mut x = lambda_dest(900);
    x.processor = None;
    d.create(&scope(), spec("u", x.clone())).await.expect("create");
    d.put_records(&scope(), "u", recs(&[b"old;"])).await.expect("put");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(env.sink.keys().is_empty(), "buffered");
    x.processor = Some(LambdaProcessor::new(FN_ARN));
    d.update_destination(&scope(), "u", 1, DESTINATION_ID, x)
        .await
        .expect("update");
    d.put_records(&scope(), "u", recs(&[b"new;"])).await.expect("put");
    wait_until("old buffer flushed", || env.sink.keys().len() == 1).await;
    d.flush_all().await.expect("flush");
    let mut bodies = data_bodies(&env);
    bodies.sort();
    assert_eq!(
        bodies,
        vec![Bytes::from_static(b"NEW;"), Bytes::from_static(b"old;")],
        "records buffered before the processor are not transformed; later ones are"
    );
    assert_eq!(t.count(), 1);
}

/// Runs `f` in a fresh multi-thread runtime that is then dropped (every task dies: a crash).
fn in_runtime(f: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(f);
}

#[test]
fn crash_with_a_lambda_processor_retransforms_into_the_same_keys() {
    let env = env();
    env.sink.hang_after_put.store(true, Ordering::SeqCst);
    in_runtime(async {
        let d = open(&env, Arc::new(SystemClock));
        d.set_transformer(FakeTransformer::new(upper_script()));
        d.create(&scope(), spec("c", lambda_dest(0))).await.expect("create");
        d.put_records(&scope(), "c", recs(&[b"a;", b"fail;", b"b;", b"drop;"]))
            .await
            .expect("put");
        wait_until("hung after put", || env.sink.hung.load(Ordering::SeqCst)).await;
        drop(d);
    });
    // The group (data + error objects) crashed after its first object was written.
    let first = env.sink.keys();
    assert_eq!(first.len(), 1);
    env.sink.hang_after_put.store(false, Ordering::SeqCst);
    let t2 = FakeTransformer::new(upper_script());
    in_runtime(async {
        let d = open(&env, Arc::new(SystemClock));
        d.set_transformer(t2.clone());
        wait_until("group redone", || env.sink.keys().len() == 2).await;
        d.flush_all().await.expect("flush");
        assert!(env.sink.keys().contains(&first[0]), "the intent's key is rewritten");
        assert_eq!(data_bodies(&env), vec![Bytes::from_static(b"A;B;")]);
        let lines = error_lines(&env);
        assert_eq!(lines.len(), 1);
        assert_eq!(raw_of(&lines[0]), b"fail;");
        assert_eq!(t2.count(), 1, "recovery transformed the group's span again");
    });
    // A third start redoes nothing.
    let puts = env.sink.puts.load(Ordering::SeqCst);
    let t3 = FakeTransformer::new(upper_script());
    in_runtime(async {
        let d = open(&env, Arc::new(SystemClock));
        d.set_transformer(t3.clone());
        tokio::time::sleep(Duration::from_millis(200)).await;
        d.flush_all().await.expect("flush");
    });
    assert_eq!(env.sink.puts.load(Ordering::SeqCst), puts);
    assert_eq!(t3.count(), 0);
}

#[test]
fn crash_with_a_nondeterministic_function_still_delivers_each_record_once() {
    let env = env();
    env.sink.hang_after_put.store(true, Ordering::SeqCst);
    in_runtime(async {
        let d = open(&env, Arc::new(SystemClock));
        d.set_transformer(FakeTransformer::new(upper_script()));
        d.create(&scope(), spec("n", lambda_dest(0))).await.expect("create");
        d.put_records(&scope(), "n", recs(&[b"a;", b"b;"])).await.expect("put");
        wait_until("hung after put", || env.sink.hung.load(Ordering::SeqCst)).await;
        drop(d);
    });
    let first = env.sink.keys();
    assert_eq!(first.len(), 1);
    assert_eq!(data_bodies(&env), vec![Bytes::from_static(b"A;B;")]);
    env.sink.hang_after_put.store(false, Ordering::SeqCst);
    // After the restart the function fails "b;": it moves to a partition (the error
    // output) that had no intent.
    let flaky: Script = Arc::new(|r: &TransformInputRecord| {
        if r.data.as_ref() == b"b;" {
            answer(r, TransformResult::ProcessingFailed, b"")
        } else {
            answer(r, TransformResult::Ok, &r.data.to_ascii_uppercase())
        }
    });
    in_runtime(async {
        let d = open(&env, Arc::new(SystemClock));
        d.set_transformer(FakeTransformer::new(flaky));
        wait_until("redone", || env.sink.keys().len() == 2).await;
        d.flush_all().await.expect("flush");
    });
    assert!(env.sink.keys().contains(&first[0]));
    assert_eq!(
        data_bodies(&env),
        vec![Bytes::from_static(b"A;")],
        "same key, new bytes"
    );
    let lines = error_lines(&env);
    assert_eq!(lines.len(), 1);
    assert_eq!(raw_of(&lines[0]), b"b;");
}
