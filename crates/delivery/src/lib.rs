//! Firehose engine: delivery streams (DirectPut or reading a Kinesis stream through the
//! [`StreamSource`] port), per-partition buffering, compression, S3 key layout and
//! exactly-once delivery to the [`ObjectSink`] port.
//!
//! # Durability
//!
//! * Definitions, checkpoints and flush intents are JSON documents in `MetaStore` tables
//!   prefixed `firehose_` (layout in `store.rs`), each with a `version` field.
//! * A DirectPut delivery stream owns a [`kd_storage::Log`] (partition 0) under
//!   `<data_dir>/<uid>/`. `put_records` appends all records as ONE batch and returns the
//!   RecordIds only once the append is durable (group commit). The worker reads the log from
//!   its checkpoint in chunks (memory is bounded by the open buffers, not by the backlog),
//!   and deletes sealed segments that hold only delivered records.
//! * A stream-sourced delivery stream keeps, per shard, the last delivered sequence number.
//!   It starts at LATEST when the delivery stream becomes ACTIVE (or TRIM_HORIZON with
//!   [`Config::start_at_trim_horizon`]); shards created later (children) start at their
//!   beginning and are read only after all their parents were read to their end.
//!
//! # Exactly once: the flush protocol and the recovery rule
//!
//! Each source *unit* (the log, or one shard) has a checkpoint `after` (every record at or
//! before it is delivered) plus, for dynamic partitioning where partitions flush out of
//! order, a per-partition position through which that partition has delivered.
//! A flush of one buffer is:
//!
//! 1. record the *intent* durably: `{object key, bucket, partition id, per unit the range
//!    (after exclusive, to inclusive) the object covers, compression}`;
//! 2. `ObjectSink::put_object` (retried with the same key while it fails);
//! 3. in ONE `MetaStore` transaction: advance the checkpoint (the partition's delivered
//!    position, and `after` up to the oldest record still buffered) and delete the intent.
//!
//! **Recovery rule** (on [`Delivery::open`], before reading anything new): every pending
//! intent is redone by re-reading exactly its ranges, keeping the records of its partition,
//! and writing the SAME key (an overwrite with the same bytes is idempotent), then step 3.
//! Reading then resumes after `after`, skipping records at or before their partition's
//! delivered position. A crash before 1 loses nothing (the records are re-read); between 1
//! and 3 the object is rewritten under the same key; after 3 nothing is redone. So every
//! record lands in exactly one object.
//!
//! # Lambda processor (record transformation)
//!
//! A destination with an enabled `Lambda` processor ([`LambdaProcessor`]) hands every record
//! read to the function through the [`RecordTransformer`] port
//! ([`Delivery::set_transformer`]) BEFORE buffering: each read chunk is split into
//! invocations of at most `BufferSizeInMBs` of record data and a 6 MB event
//! ([`TransformRequest`]: `recordId` unique per record — for DirectPut the RecordId PutRecord
//! returned —, Kinesis metadata and `sourceKinesisStreamArn` for stream sources). `Ok`
//! records are buffered as transformed (then partitioned — by queries over the transformed
//! data and by `!{partitionKeyFromLambda:…}` keys —, format-converted and compressed as
//! usual); `Dropped` records are done; `ProcessingFailed`, missing or duplicated ids, and a
//! batch whose invocation still fails after `NumberOfRetries` retries (with backoff) go with
//! their ORIGINAL data to the error output (`processing-failed`, with `attemptsMade`,
//! `errorCode` e.g. `Lambda.ProcessingFailedStatus`, `Lambda.MissingRecordId`,
//! `Lambda.InvokeAccessDenied`, `Lambda.FunctionError`, and `lambdaArn`). A shutdown flush
//! ([`Delivery::flush_all`]) makes one attempt: records whose invocation fails then stay
//! durable and are transformed after the restart.
//!
//! **Group flushes.** Recovery must re-derive which object each record went to, and with a
//! processor that is the function's answer, so a delivery stream with a processor never
//! lets one partition's checkpoint run ahead of another's: when any buffer is due, ALL
//! open buffers flush as one group — their intents are recorded in one transaction with the
//! group's span (per unit, everything read so far), the objects are written, and ONE
//! transaction advances the checkpoint over the span and deletes every intent of the group.
//! Recovery of a group re-reads the span from the checkpoint, transforms it again with the
//! processor recorded in the intents, routes every record again and rewrites every intent's
//! key. A deterministic function gives the same bytes under the same keys. A
//! non-deterministic one may give different bytes under the same key, may leave an intent's
//! key empty (it is rewritten as an empty object, replacing what the first attempt wrote)
//! or route a record to a partition that had no intent (a new intent joins the group before
//! anything is written): every record still ends up in exactly one object. When records
//! were all dropped and no buffer is open, the checkpoint moves up to the read cursor.
//! Adding, removing or changing the processor (UpdateDestination) first flushes the open
//! buffers with the configuration they were filled with.
//!
//! # Failures
//!
//! A sink error keeps the buffer (and stops reading: backpressure), shows a
//! [`FailureDescription`] in `describe` until the next success, and retries with exponential
//! backoff (1 s doubling to 30 s) for up to [`Config::retry_max_secs`]; after that the
//! intent is marked failed (durably, so recovery does the same) and the buffer's records are
//! written under the ErrorOutputPrefix (error-output-type `processing-failed`) as AWS
//! error-record JSON lines (`errorCode` `S3.AccessDenied` / `S3.NoSuchBucket` /
//! `S3.InternalError`); if that write fails too it is retried with backoff until it succeeds
//! (records are never dropped), then checkpointed as a delivery. A record whose
//! dynamic-partitioning query fails goes to the error output (`processing-failed`) as an AWS
//! error-record JSON line (`errorCode` `DynamicPartitioning.MetadataExtractionFailed`).

pub mod compress;
pub mod convert;
pub mod keys;
pub mod model;
mod store;
mod worker;

pub use model::*;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use kd_storage::{AppendBatch, Clock, Log, LogConfig, MetaOp, MetaStore, Record};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use store::{
    CheckpointDoc, FORMAT_VERSION, StreamDoc, T_CHECKPOINTS, T_INTENTS, T_STREAMS, UnitCheckpoint, from_json, to_json,
};
use worker::{Cmd, LOG_UNIT, Worker};

/// Engine configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory holding one log directory per DirectPut delivery stream.
    pub data_dir: PathBuf,
    /// How long a new delivery stream stays CREATING (ms; 0 in tests, 200 by default).
    pub create_delay_ms: i64,
    /// GZIP level (default 1).
    pub gzip_level: u32,
    /// How often a worker polls its source (ms, default 200).
    pub poll_interval_ms: u64,
    /// How long a failing delivery is retried before going to the error output (s, default 86400).
    pub retry_max_secs: u64,
    /// Stream sources start at TRIM_HORIZON instead of LATEST (default false).
    pub start_at_trim_horizon: bool,
    /// How long after [`Delivery::open`] a delivery stream with a Lambda processor waits for
    /// [`Delivery::set_transformer`] before it runs without one (its invocations then fail)
    /// (ms, default 10000).
    pub transformer_wait_ms: u64,
    /// The first pause between retries of a failed Lambda invocation; it doubles up to 10 s
    /// (ms, default 500).
    pub transform_retry_ms: u64,
}

impl Config {
    /// Defaults with `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            create_delay_ms: 200,
            gzip_level: 1,
            poll_interval_ms: 200,
            retry_max_secs: 86_400,
            start_at_trim_horizon: false,
            transformer_wait_ms: 10_000,
            transform_retry_ms: 500,
        }
    }
}

/// Engine errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such delivery stream.
    #[error("Firehose {name} under account {account} not found.")]
    NotFound {
        /// Name.
        name: String,
        /// Account.
        account: String,
    },
    /// Exists already / wrong state.
    #[error("{0}")]
    InUse(String),
    /// Bad input.
    #[error("{0}")]
    InvalidArgument(String),
    /// A limit was hit.
    #[error("{0}")]
    LimitExceeded(String),
    /// Version mismatch.
    #[error("{0}")]
    ConcurrentModification(String),
    /// Storage failure.
    #[error("storage error: {0}")]
    Storage(#[from] kd_storage::Error),
    /// Anything else.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The destination id of the (only) destination.
pub const DESTINATION_ID: &str = "destinationId-000000000001";
/// Most tags on one delivery stream.
pub const MAX_TAGS: usize = 50;

/// What every worker shares.
pub(crate) struct Shared {
    pub config: Config,
    pub meta: Arc<MetaStore>,
    pub clock: Arc<dyn Clock>,
    pub sink: Arc<dyn ObjectSink>,
    pub source: Arc<dyn StreamSource>,
    /// The Lambda processor's port, once installed.
    pub transformer: RwLock<Option<Arc<dyn RecordTransformer>>>,
    /// When the engine was opened (the grace period of [`Config::transformer_wait_ms`]).
    pub opened: std::time::Instant,
}

impl Shared {
    /// The installed transformer.
    pub(crate) fn transformer(&self) -> Option<Arc<dyn RecordTransformer>> {
        self.transformer.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether a stream with a Lambda processor may run now: a transformer is installed, or
    /// the grace period after open is over.
    pub(crate) fn transformer_ready(&self) -> bool {
        self.transformer().is_some()
            || self.opened.elapsed() >= std::time::Duration::from_millis(self.config.transformer_wait_ms)
    }
}

/// One delivery stream in memory.
pub(crate) struct StreamHandle {
    pub uid: String,
    doc: Mutex<StreamDoc>,
    pub log: Option<Arc<Log>>,
    failure: Mutex<Option<FailureDescription>>,
    pub notify: Notify,
    /// Set by `flush_all`: a retrying flush gives up at once (woken by `retry_wake`).
    pub flush_requested: std::sync::atomic::AtomicBool,
    pub retry_wake: Notify,
    cmds: mpsc::UnboundedSender<Cmd>,
    task: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StreamHandle {
    pub(crate) fn doc(&self) -> StreamDoc {
        lock(&self.doc).clone()
    }

    pub(crate) fn name(&self) -> String {
        lock(&self.doc).name.clone()
    }

    pub(crate) fn size_mb(&self) -> u32 {
        lock(&self.doc).destination.size_mb
    }

    pub(crate) fn source_arn_role(&self) -> (String, String) {
        match &lock(&self.doc).source {
            Source::KinesisStream { stream_arn, role_arn } => (stream_arn.clone(), role_arn.clone()),
            Source::DirectPut => (String::new(), String::new()),
        }
    }

    pub(crate) fn set_failure(&self, f: Option<FailureDescription>) {
        *lock(&self.failure) = f;
    }

    pub(crate) fn set_delivery_start(&self, ms: i64) {
        lock(&self.doc).delivery_start_ms = Some(ms);
    }

    fn abort(&self) -> Option<JoinHandle<()>> {
        let t = lock(&self.task).take();
        if let Some(t) = &t {
            t.abort();
        }
        t
    }
}

type StreamKey = (String, String, String);

/// The Firehose engine.
pub struct Delivery {
    shared: Arc<Shared>,
    streams: RwLock<BTreeMap<StreamKey, Arc<StreamHandle>>>,
    /// Serialises metadata changes (create/delete/update/tag).
    admin: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").finish_non_exhaustive()
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        let streams = self.streams.read().unwrap_or_else(|e| e.into_inner());
        for h in streams.values() {
            h.abort();
        }
    }
}

fn arn(scope: &Scope, name: &str) -> String {
    format!(
        "arn:aws:firehose:{}:{}:deliverystream/{}",
        scope.region, scope.account, name
    )
}

fn key_of(scope: &Scope, name: &str) -> StreamKey {
    (scope.account.clone(), scope.region.clone(), name.to_string())
}

impl Delivery {
    /// Opens (recovers) every delivery stream and starts its background worker
    /// (`tokio::spawn`: call inside a runtime). Pending flush intents are redone by the
    /// workers before they read anything new.
    pub fn open(
        config: Config,
        meta: Arc<MetaStore>,
        clock: Arc<dyn Clock>,
        sink: Arc<dyn ObjectSink>,
        source: Arc<dyn StreamSource>,
    ) -> Result<Arc<Delivery>, Error> {
        let shared = Arc::new(Shared {
            config,
            meta,
            clock,
            sink,
            source,
            transformer: RwLock::new(None),
            opened: std::time::Instant::now(),
        });
        let delivery = Arc::new(Delivery {
            shared,
            streams: RwLock::new(BTreeMap::new()),
            admin: tokio::sync::Mutex::new(()),
        });
        for (_, raw) in delivery.shared.meta.scan_prefix(T_STREAMS, "")? {
            let doc: StreamDoc = from_json(&raw)?;
            let ckpt = match delivery.shared.meta.get(T_CHECKPOINTS, &doc.uid)? {
                Some(raw) => from_json(&raw)?,
                None => CheckpointDoc::default(),
            };
            delivery.start(doc, ckpt)?;
        }
        Ok(delivery)
    }

    /// Installs the port that runs Lambda processors (the functions engine). Until it is
    /// installed, delivery streams with a Lambda processor wait (at most
    /// [`Config::transformer_wait_ms`] after [`Delivery::open`]); after that, an invocation
    /// without a transformer fails like a failed invocation: retried `NumberOfRetries`
    /// times, then the records go to the error output (`processing-failed`), never lost.
    /// Installing again replaces the transformer.
    pub fn set_transformer(&self, t: Arc<dyn RecordTransformer>) {
        *self.shared.transformer.write().unwrap_or_else(|e| e.into_inner()) = Some(t);
        for h in self.streams.read().unwrap_or_else(|e| e.into_inner()).values() {
            h.notify.notify_one();
        }
    }

    fn start(&self, doc: StreamDoc, ckpt: CheckpointDoc) -> Result<Arc<StreamHandle>, Error> {
        let log = match doc.source {
            Source::DirectPut => Some(Arc::new(Log::open(
                &self.shared.config.data_dir.join(&doc.uid),
                LogConfig::default(),
                self.shared.clock.clone(),
                0,
            )?)),
            Source::KinesisStream { .. } => None,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let key = (doc.account.clone(), doc.region.clone(), doc.name.clone());
        let handle = Arc::new(StreamHandle {
            uid: doc.uid.clone(),
            doc: Mutex::new(doc),
            log,
            failure: Mutex::new(None),
            notify: Notify::new(),
            flush_requested: std::sync::atomic::AtomicBool::new(false),
            retry_wake: Notify::new(),
            cmds: tx,
            task: Mutex::new(None),
        });
        let worker = Worker::new(self.shared.clone(), handle.clone(), ckpt, rx);
        *lock(&handle.task) = Some(tokio::spawn(worker.run()));
        self.streams
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, handle.clone());
        Ok(handle)
    }

    fn get(&self, scope: &Scope, name: &str) -> Result<Arc<StreamHandle>, Error> {
        self.streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key_of(scope, name))
            .cloned()
            .ok_or_else(|| Error::NotFound {
                name: name.to_string(),
                account: scope.account.clone(),
            })
    }

    fn status(&self, doc: &StreamDoc) -> Status {
        if self.shared.clock.now_ms() < doc.created_ms + self.shared.config.create_delay_ms {
            Status::Creating
        } else {
            Status::Active
        }
    }

    fn validate_destination(d: &S3Destination) -> Result<(), Error> {
        if let Some(tz) = d.custom_time_zone.as_deref()
            && keys::TimeZone::parse(tz).is_none()
        {
            return Err(Error::InvalidArgument(format!(
                "CustomTimeZone {tz} is not supported (UTC, fixed offsets and IANA zones without daylight saving time are)."
            )));
        }
        if let Some(p) = &d.processor {
            if p.lambda_arn.is_empty() {
                return Err(Error::InvalidArgument("The Lambda processor needs a LambdaArn.".into()));
            }
            if p.buffer_size_bytes == 0 || p.number_of_retries > MAX_LAMBDA_RETRIES {
                return Err(Error::InvalidArgument(
                    "The Lambda processor's BufferSizeInMBs or NumberOfRetries is out of range.".into(),
                ));
            }
        }
        let prefix = d.prefix.as_deref().unwrap_or_default();
        if !keys::lambda_keys(prefix).is_empty() && (d.processor.is_none() || d.dynamic_partitioning.is_none()) {
            return Err(Error::InvalidArgument(
                "partitionKeyFromLambda expressions need dynamic partitioning and a Lambda processor.".into(),
            ));
        }
        Ok(())
    }

    /// CreateDeliveryStream. Returns the ARN.
    pub async fn create(&self, scope: &Scope, spec: DeliveryStreamSpec) -> Result<String, Error> {
        let _admin = self.admin.lock().await;
        if self.get(scope, &spec.name).is_ok() {
            return Err(Error::InUse(format!(
                "Firehose {} under account {} already exists.",
                spec.name, scope.account
            )));
        }
        Self::validate_destination(&spec.destination)?;
        if spec.tags.len() > MAX_TAGS {
            return Err(Error::LimitExceeded(format!(
                "Number of tags exceeds the limit of {MAX_TAGS}."
            )));
        }
        let doc = StreamDoc {
            version: FORMAT_VERSION,
            uid: uuid::Uuid::new_v4().simple().to_string(),
            account: scope.account.clone(),
            region: scope.region.clone(),
            name: spec.name.clone(),
            source: spec.source,
            destination: spec.destination,
            stream_version: 1,
            created_ms: self.shared.clock.now_ms(),
            updated_ms: None,
            delivery_start_ms: None,
            tags: spec.tags,
        };
        let mut ckpt = CheckpointDoc {
            version: FORMAT_VERSION,
            ..CheckpointDoc::default()
        };
        if doc.source == Source::DirectPut {
            ckpt.initialized = true;
            ckpt.units.insert(LOG_UNIT.to_string(), UnitCheckpoint::default());
        }
        self.shared
            .meta
            .write_grouped(vec![
                MetaOp::Put {
                    table: T_STREAMS.into(),
                    key: doc.meta_key(),
                    value: to_json(&doc)?,
                },
                MetaOp::Put {
                    table: T_CHECKPOINTS.into(),
                    key: doc.uid.clone(),
                    value: to_json(&ckpt)?,
                },
            ])
            .await?;
        // A leftover directory of the same uid cannot exist (fresh uuid).
        self.start(doc, ckpt)?;
        Ok(arn(scope, &spec.name))
    }

    async fn remove(&self, handle: Arc<StreamHandle>) -> Result<(), Error> {
        let doc = handle.doc();
        self.streams.write().unwrap_or_else(|e| e.into_inner()).remove(&(
            doc.account.clone(),
            doc.region.clone(),
            doc.name.clone(),
        ));
        if let Some(task) = handle.abort() {
            let _ = task.await;
        }
        let mut ops = vec![
            MetaOp::Delete {
                table: T_STREAMS.into(),
                key: doc.meta_key(),
            },
            MetaOp::Delete {
                table: T_CHECKPOINTS.into(),
                key: doc.uid.clone(),
            },
        ];
        for (k, _) in self.shared.meta.scan_prefix(T_INTENTS, &format!("{}/", doc.uid))? {
            ops.push(MetaOp::Delete {
                table: T_INTENTS.into(),
                key: k,
            });
        }
        self.shared.meta.write_grouped(ops).await?;
        if handle.log.is_some() {
            let dir = self.shared.config.data_dir.join(&doc.uid);
            // Stop the log's writer (the last reference is ours once the worker is gone).
            match Arc::try_unwrap(handle) {
                Ok(h) => {
                    if let Some(log) = h.log {
                        match Arc::try_unwrap(log) {
                            Ok(log) => log.destroy()?,
                            Err(log) => {
                                drop(log);
                                remove_dir(&dir);
                            }
                        }
                    }
                }
                Err(h) => {
                    drop(h);
                    remove_dir(&dir);
                }
            }
        }
        Ok(())
    }

    /// DeleteDeliveryStream (removes at once; buffered data is not delivered).
    pub async fn delete(&self, scope: &Scope, name: &str) -> Result<(), Error> {
        let _admin = self.admin.lock().await;
        let handle = self.get(scope, name)?;
        if self.status(&handle.doc()) == Status::Creating {
            return Err(Error::InUse(format!(
                "Firehose {name} under account {} is in CREATING state and cannot be deleted.",
                scope.account
            )));
        }
        self.remove(handle).await
    }

    /// DescribeDeliveryStream.
    pub fn describe(&self, scope: &Scope, name: &str) -> Result<DeliveryStreamInfo, Error> {
        let handle = self.get(scope, name)?;
        let doc = handle.doc();
        Ok(DeliveryStreamInfo {
            arn: arn(scope, &doc.name),
            status: self.status(&doc),
            name: doc.name,
            source: doc.source,
            delivery_start_ms: doc.delivery_start_ms,
            destination: doc.destination,
            version: doc.stream_version,
            created_ms: doc.created_ms,
            updated_ms: doc.updated_ms,
            failure: lock(&handle.failure).clone(),
            tags: doc.tags,
        })
    }

    /// ListDeliveryStreams: names in alphabetical order after `exclusive_start`, at most
    /// `limit`, and whether more follow. `source_type`: `DirectPut` or
    /// `KinesisStreamAsSource` (other values match nothing).
    pub fn list(
        &self,
        scope: &Scope,
        source_type: Option<&str>,
        exclusive_start: Option<&str>,
        limit: usize,
    ) -> (Vec<String>, bool) {
        let streams = self.streams.read().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = streams
            .iter()
            .filter(|((a, r, _), _)| *a == scope.account && *r == scope.region)
            .filter(|(_, h)| {
                let src = &lock(&h.doc).source;
                match source_type {
                    None => true,
                    Some("DirectPut") => *src == Source::DirectPut,
                    Some("KinesisStreamAsSource") => matches!(src, Source::KinesisStream { .. }),
                    Some(_) => false,
                }
            })
            .map(|((_, _, n), _)| n.clone())
            .filter(|n| exclusive_start.is_none_or(|s| n.as_str() > s))
            .collect();
        let more = names.len() > limit;
        names.truncate(limit);
        (names, more)
    }

    async fn save(&self, handle: &StreamHandle, doc: StreamDoc) -> Result<(), Error> {
        self.shared
            .meta
            .write_grouped(vec![MetaOp::Put {
                table: T_STREAMS.into(),
                key: doc.meta_key(),
                value: to_json(&doc)?,
            }])
            .await?;
        *lock(&handle.doc) = doc;
        Ok(())
    }

    /// UpdateDestination: checks the version and the destination id, bumps the version;
    /// objects flushed from now on use the new destination and version.
    pub async fn update_destination(
        &self,
        scope: &Scope,
        name: &str,
        current_version: u64,
        destination_id: &str,
        destination: S3Destination,
    ) -> Result<(), Error> {
        let _admin = self.admin.lock().await;
        let handle = self.get(scope, name)?;
        let mut doc = handle.doc();
        if current_version != doc.stream_version {
            return Err(Error::ConcurrentModification(format!(
                "Cannot update firehose: {name} since the current version id: {} and specified version id: {current_version} do not match",
                doc.stream_version
            )));
        }
        if destination_id != DESTINATION_ID {
            return Err(Error::InvalidArgument(format!(
                "Destination Id {destination_id} not found for Firehose {name}."
            )));
        }
        Self::validate_destination(&destination)?;
        doc.destination = destination;
        doc.stream_version += 1;
        doc.updated_ms = Some(self.shared.clock.now_ms());
        self.save(&handle, doc).await
    }

    /// PutRecord / PutRecordBatch: appends all records as one durable batch and returns
    /// their RecordIds (in order) once it is on disk.
    pub async fn put_records(&self, scope: &Scope, name: &str, records: Vec<Bytes>) -> Result<Vec<String>, Error> {
        let handle = self.get(scope, name)?;
        let Some(log) = handle.log.clone() else {
            return Err(Error::InvalidArgument(format!(
                "This operation is not permitted on KinesisStreamAsSource delivery stream type. (Firehose {name} under account {})",
                scope.account
            )));
        };
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let batch = AppendBatch {
            partition: 0,
            records: records
                .into_iter()
                .map(|d| Record {
                    key: Vec::new(),
                    data: d.to_vec(),
                })
                .collect(),
        };
        let appended = log.append(vec![batch]).await?;
        let Some(a) = appended.first() else {
            return Err(Error::Internal("the log acknowledged no batch".into()));
        };
        handle.notify.notify_one();
        Ok((0..u64::from(a.count))
            .map(|i| format!("{}{:020}", handle.uid, a.first_offset + i))
            .collect())
    }

    /// TagDeliveryStream (at most [`MAX_TAGS`] tags in all).
    pub async fn tag(&self, scope: &Scope, name: &str, tags: BTreeMap<String, String>) -> Result<(), Error> {
        let _admin = self.admin.lock().await;
        let handle = self.get(scope, name)?;
        let mut doc = handle.doc();
        doc.tags.extend(tags);
        if doc.tags.len() > MAX_TAGS {
            return Err(Error::LimitExceeded(format!(
                "Number of tags exceeds the limit of {MAX_TAGS}."
            )));
        }
        self.save(&handle, doc).await
    }

    /// UntagDeliveryStream.
    pub async fn untag(&self, scope: &Scope, name: &str, keys: &[String]) -> Result<(), Error> {
        let _admin = self.admin.lock().await;
        let handle = self.get(scope, name)?;
        let mut doc = handle.doc();
        for k in keys {
            doc.tags.remove(k);
        }
        self.save(&handle, doc).await
    }

    /// ListTagsForDeliveryStream.
    pub fn list_tags(&self, scope: &Scope, name: &str) -> Result<BTreeMap<String, String>, Error> {
        Ok(self.get(scope, name)?.doc().tags)
    }

    /// Graceful shutdown: every worker reads what is available and delivers its open
    /// buffers (one attempt each; what fails stays durable and is delivered after restart).
    pub async fn flush_all(&self) -> Result<(), Error> {
        let handles: Vec<Arc<StreamHandle>> = self
            .streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut waits = Vec::new();
        for h in handles {
            h.flush_requested.store(true, std::sync::atomic::Ordering::SeqCst);
            h.retry_wake.notify_one();
            let (tx, rx) = oneshot::channel();
            if h.cmds.send(Cmd::Flush(tx)).is_ok() {
                waits.push(rx);
            }
        }
        for w in waits {
            let _ = w.await;
        }
        Ok(())
    }

    /// Deletes every delivery stream of every account (tests).
    pub async fn reset(&self) -> Result<(), Error> {
        let _admin = self.admin.lock().await;
        let handles: Vec<Arc<StreamHandle>> = self
            .streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for h in handles {
            self.remove(h).await?;
        }
        Ok(())
    }
}

fn remove_dir(dir: &std::path::Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot delete a delivery stream's log");
    }
}
