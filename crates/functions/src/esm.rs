//! Event source mappings: Kinesis streams polled on behalf of a function.
//!
//! # Storage
//!
//! Each mapping is one JSON document (`MappingDoc`) in the `lambda_mappings` table under
//! its UUID. Each shard a mapping has read has one JSON document (`PositionDoc`) in the
//! `lambda_mapping_positions` table under `<uuid>/<shard id>`: the last sequence number
//! handled (processed, or skipped after its retries) and, for a closed shard read to its
//! end, a `done` marker. Every create, update and delete is written in one grouped, fsynced
//! `MetaStore` transaction before it is acknowledged; deleting a mapping deletes its
//! positions in the same transaction. `LastProcessingResult` lives in memory only.
//!
//! # Delivery rule: at least once, in order per shard
//!
//! A poller reads a shard from its checkpoint, invokes the function synchronously with the
//! batch and checkpoints (an fsynced write) only after the invocation succeeded. A crash (or
//! a kill) between the invocation and the checkpoint therefore delivers that batch again
//! after the restart, as AWS does; nothing is lost. The same holds for a batch in flight
//! when the engine shuts down or is reset: its checkpoint is not written. A batch skipped
//! after its retries is checkpointed in the same transaction that queues its invocation
//! record for the on-failure destination, so that record is queued exactly once. Records of
//! one shard are delivered in sequence-number order with one batch in flight per shard; the
//! children of a resharded shard are read only after all their parents were read to the end.
//!
//! # Pollers
//!
//! [`Functions::set_stream_reader`] starts one poller per enabled mapping; create, update
//! and delete start, restart and stop them (a restarted poller first waits for the previous
//! one to finish its invocation). A poller lists the stream's shards (every
//! [`SHARD_REFRESH`], and at once when a shard is finished) and runs one task per readable
//! shard. A shard without a checkpoint starts at the mapping's `StartingPosition`:
//! `TRIM_HORIZON`, `AT_TIMESTAMP`, or for `LATEST` the first record that arrived at or after
//! the instant the mapping was created or last enabled (so records written after
//! CreateEventSourceMapping returns are never missed; one written in the same millisecond
//! just before may be delivered too); a child shard created after the mapping read its
//! parent starts at `TRIM_HORIZON`. Idle shards are polled every [`POLL_INTERVAL`]. With
//! `MaximumBatchingWindowInSeconds` 0 a batch is invoked as soon as any record is there;
//! otherwise the poller gathers records for up to the window or until `BatchSize` records
//! (or 6 MB of event) are there. The poller reads and invokes as the function's execution
//! role. `ParallelizationFactor` and `TumblingWindowInSeconds` are recorded, not applied.
//!
//! # Errors
//!
//! A function error (or timeout) retries the same batch with exponential backoff
//! ([`RETRY_BACKOFF_START`] doubling to [`RETRY_BACKOFF_MAX`]) until `MaximumRetryAttempts`
//! retries were made; `BisectBatchOnFunctionError` first splits a failing batch in two
//! (splits do not use up retries); with `ReportBatchItemFailures` the function's
//! `batchItemFailures` checkpoint the records before the lowest failed one and the rest is
//! retried. Throttles and other failures to invoke are retried without counting. Records
//! older than `MaximumRecordAgeInSeconds` are skipped without being invoked. Skipped
//! batches are reported to the on-failure destination (a function, through the durable
//! asynchronous queue) as AWS's Kinesis invocation record (`KinesisBatchInfo`). With the
//! defaults (-1, -1) a failing batch is retried until it succeeds: it blocks its shard, as
//! on AWS until the records expire.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use kd_storage::MetaOp;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::engine::{Functions, MAX_SYNC_PAYLOAD, Resolved};
use crate::error::{Error, Result};
use crate::host::InvokeOutcome;
use crate::model::{FORMAT_VERSION, FunctionRef, Scope, function_arn};

pub(crate) const T_MAPPINGS: &str = "lambda_mappings";
pub(crate) const T_POSITIONS: &str = "lambda_mapping_positions";

/// How often an idle shard is polled for new records.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often a poller lists the stream's shards (it also does when a shard ends).
pub const SHARD_REFRESH: Duration = Duration::from_secs(1);
/// First delay before a failed batch is retried; it doubles with every retry.
pub const RETRY_BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest delay between retries of a failed batch.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(10);

const RESULT_NONE: &str = "No records processed";
const RESULT_OK: &str = "OK";
const RESULT_FAILED: &str = "PROBLEM: Function call failed";
const REPORT_BATCH_ITEM_FAILURES: &str = "ReportBatchItemFailures";

/// A record read from a shard.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    /// Sequence number.
    pub sequence_number: String,
    /// Partition key.
    pub partition_key: String,
    /// Data.
    pub data: bytes::Bytes,
    /// Arrival time, ms since the epoch.
    pub arrival_ms: i64,
}

/// A shard of the source stream.
#[derive(Debug, Clone)]
pub struct StreamShard {
    /// Shard id.
    pub shard_id: String,
    /// Parent shard ids (read to their end first).
    pub parents: Vec<String>,
    /// Closed (has an ending sequence number).
    pub closed: bool,
}

/// Where to start reading a shard.
#[derive(Debug, Clone)]
pub enum ReadFrom {
    /// The oldest record.
    TrimHorizon,
    /// After the newest record now.
    Latest,
    /// The first record at or after this time (ms).
    AtTimestamp(i64),
    /// After this sequence number.
    After(String),
}

/// A batch read from a shard.
#[derive(Debug, Clone)]
pub struct StreamBatch {
    /// Records in order.
    pub records: Vec<StreamRecord>,
    /// The shard is closed and everything was read.
    pub end_of_shard: bool,
    /// Position to continue after when `records` is empty (e.g. the LATEST position), if any.
    pub position: Option<String>,
}

/// Reads Kinesis streams for the mappings, acting as the function's execution role.
#[async_trait::async_trait]
pub trait StreamReader: Send + Sync + 'static {
    /// Every shard of the stream.
    async fn shards(&self, stream_arn: &str, role_arn: &str) -> std::result::Result<Vec<StreamShard>, String>;
    /// Up to `max` records of `shard_id` from `from`.
    async fn read(
        &self,
        stream_arn: &str,
        role_arn: &str,
        shard_id: &str,
        from: ReadFrom,
        max: usize,
    ) -> std::result::Result<StreamBatch, String>;
}

/// CreateEventSourceMapping / UpdateEventSourceMapping input (absent = unchanged/default).
#[derive(Debug, Clone, Default)]
pub struct MappingInput {
    /// `EventSourceArn` (create only).
    pub event_source_arn: Option<String>,
    /// `FunctionName` (any form).
    pub function_name: Option<String>,
    /// `Enabled`.
    pub enabled: Option<bool>,
    /// `BatchSize` (1..=10000, default 100).
    pub batch_size: Option<u32>,
    /// `StartingPosition` (TRIM_HORIZON, LATEST, AT_TIMESTAMP; create only).
    pub starting_position: Option<String>,
    /// `StartingPositionTimestamp` (seconds).
    pub starting_position_timestamp: Option<f64>,
    /// `MaximumBatchingWindowInSeconds` (0..=300).
    pub maximum_batching_window_in_seconds: Option<u32>,
    /// `MaximumRetryAttempts` (-1..=10000, -1 = until the record expires).
    pub maximum_retry_attempts: Option<i32>,
    /// `MaximumRecordAgeInSeconds` (-1 or 60..=604800).
    pub maximum_record_age_in_seconds: Option<i32>,
    /// `BisectBatchOnFunctionError`.
    pub bisect_batch_on_function_error: Option<bool>,
    /// `ParallelizationFactor` (1..=10).
    pub parallelization_factor: Option<u32>,
    /// `FunctionResponseTypes` (`ReportBatchItemFailures`).
    pub function_response_types: Option<Vec<String>>,
    /// `DestinationConfig.OnFailure.Destination` (on update, `Some("")` removes it).
    pub on_failure_destination: Option<String>,
    /// `TumblingWindowInSeconds` (recorded).
    pub tumbling_window_in_seconds: Option<u32>,
}

// ---------------------------------------------------------------------------- stored documents

/// The stored document of one mapping (`lambda_mappings`, key = UUID).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MappingDoc {
    version: u32,
    uuid: String,
    account: String,
    region: String,
    /// The function's ARN, qualified if the mapping names a version or alias.
    function_arn: String,
    event_source_arn: String,
    enabled: bool,
    batch_size: u32,
    maximum_batching_window_in_seconds: u32,
    starting_position: String,
    #[serde(default)]
    starting_position_timestamp: Option<f64>,
    parallelization_factor: u32,
    maximum_retry_attempts: i32,
    maximum_record_age_in_seconds: i32,
    bisect_batch_on_function_error: bool,
    #[serde(default)]
    function_response_types: Vec<String>,
    #[serde(default)]
    on_failure_destination: Option<String>,
    #[serde(default)]
    tumbling_window_in_seconds: u32,
    last_modified_ms: i64,
    /// When the mapping was created or last enabled: `LATEST` starts a shard that has no
    /// checkpoint at the first record that arrived at or after this instant.
    latest_anchor_ms: i64,
}

impl MappingDoc {
    fn report_item_failures(&self) -> bool {
        self.function_response_types
            .iter()
            .any(|t| t == REPORT_BATCH_ITEM_FAILURES)
    }

    fn retries_exhausted(&self, retries: u32) -> bool {
        u32::try_from(self.maximum_retry_attempts).is_ok_and(|max| retries > max)
    }

    /// Where a shard without a checkpoint starts.
    fn start_from(&self, child_of_read_parent: bool) -> ReadFrom {
        if child_of_read_parent {
            return ReadFrom::TrimHorizon;
        }
        match self.starting_position.as_str() {
            "TRIM_HORIZON" => ReadFrom::TrimHorizon,
            "AT_TIMESTAMP" => ReadFrom::AtTimestamp(
                self.starting_position_timestamp
                    .map_or(0, |s| (s * 1000.0).round() as i64),
            ),
            _ => ReadFrom::AtTimestamp(self.latest_anchor_ms),
        }
    }
}

/// The stored position of one shard of one mapping (`lambda_mapping_positions`, key
/// `<uuid>/<shard id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PositionDoc {
    version: u32,
    /// The last sequence number handled; `None`: nothing yet (read from TRIM_HORIZON).
    sequence_number: Option<String>,
    /// The shard is closed and was read to its end.
    #[serde(default)]
    done: bool,
    /// The shard was closed and exhausted when the mapping first read it (its children
    /// existed before the mapping and start at its `StartingPosition`).
    #[serde(default)]
    ended_at_start: bool,
}

fn position_key(uuid: &str, shard_id: &str) -> String {
    format!("{uuid}/{shard_id}")
}

fn position_op(uuid: &str, shard_id: &str, doc: &PositionDoc) -> MetaOp {
    MetaOp::Put {
        table: T_POSITIONS.into(),
        key: position_key(uuid, shard_id),
        value: serde_json::to_vec(doc).unwrap_or_default(),
    }
}

fn checkpoint_doc(sequence_number: &str) -> PositionDoc {
    PositionDoc {
        version: FORMAT_VERSION,
        sequence_number: Some(sequence_number.to_owned()),
        done: false,
        ended_at_start: false,
    }
}

// ---------------------------------------------------------------------------- engine state

/// Invokes a resolved function synchronously with a batch (the seam tests replace).
#[async_trait::async_trait]
pub(crate) trait BatchInvoker: Send + Sync + 'static {
    /// Runs the function once with `payload`.
    async fn invoke(
        &self,
        functions: &Functions,
        target: &Resolved,
        request_id: &str,
        payload: Bytes,
    ) -> Result<InvokeOutcome>;
}

/// The real invoker: [`Functions::run`] on the function host.
struct HostInvoker;

#[async_trait::async_trait]
impl BatchInvoker for HostInvoker {
    async fn invoke(
        &self,
        functions: &Functions,
        target: &Resolved,
        request_id: &str,
        payload: Bytes,
    ) -> Result<InvokeOutcome> {
        functions.run(target, request_id, payload, None, false, None).await
    }
}

/// What a poller is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// Keep polling.
    Run,
    /// Stop after the invocation under way (its checkpoint is still written).
    Stop,
    /// Stop and write nothing more (the mapping is being deleted).
    Discard,
}

struct Poller {
    signal: watch::Sender<Signal>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The mappings' in-memory state: the stream reader, the running pollers and each
/// mapping's `LastProcessingResult`.
pub(crate) struct MappingState {
    owner: RwLock<Weak<Functions>>,
    reader: RwLock<Option<Arc<dyn StreamReader>>>,
    invoker: RwLock<Arc<dyn BatchInvoker>>,
    pollers: Mutex<HashMap<String, Poller>>,
    results: Mutex<HashMap<String, String>>,
}

impl Default for MappingState {
    fn default() -> Self {
        Self {
            owner: RwLock::new(Weak::new()),
            reader: RwLock::new(None),
            invoker: RwLock::new(Arc::new(HostInvoker)),
            pollers: Mutex::new(HashMap::new()),
            results: Mutex::new(HashMap::new()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MappingState {
    fn reader(&self) -> Option<Arc<dyn StreamReader>> {
        read(&self.reader).clone()
    }

    fn result(&self, uuid: &str) -> String {
        lock(&self.results)
            .get(uuid)
            .cloned()
            .unwrap_or_else(|| RESULT_NONE.to_owned())
    }

    fn set_result(&self, uuid: &str, result: &str) {
        let mut r = lock(&self.results);
        if r.get(uuid).is_none_or(|old| old != result) {
            r.insert(uuid.to_owned(), result.to_owned());
        }
    }

    /// Starts (or restarts, once the previous one has stopped) the poller of `doc`. Does
    /// nothing before a stream reader is installed.
    fn start(&self, doc: MappingDoc) {
        let Some(functions) = read(&self.owner).upgrade() else {
            return;
        };
        let Some(reader) = self.reader() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(uuid = %doc.uuid, "no tokio runtime: the event source mapping is not polled");
            return;
        };
        let (tx, rx) = watch::channel(Signal::Run);
        let uuid = doc.uuid.clone();
        let ctx = Arc::new(Ctx {
            functions: Arc::downgrade(&functions),
            reader,
            invoker: read(&self.invoker).clone(),
            doc,
            signal: rx,
        });
        drop(functions);
        let mut pollers = lock(&self.pollers);
        let previous = pollers.remove(&uuid).and_then(|mut p| {
            p.signal.send_replace(Signal::Stop);
            p.task.take()
        });
        let task = rt.spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            coordinate(ctx).await;
        });
        pollers.insert(
            uuid,
            Poller {
                signal: tx,
                task: Some(task),
            },
        );
    }

    /// Stops the poller of `uuid`. A poller told to [`Signal::Stop`] stays listed (stopped)
    /// so that a later [`MappingState::start`] waits for it to finish its invocation.
    fn stop(&self, uuid: &str, signal: Signal) {
        let mut pollers = lock(&self.pollers);
        if signal == Signal::Discard {
            if let Some(p) = pollers.remove(uuid) {
                p.signal.send_replace(signal);
            }
        } else if let Some(p) = pollers.get(uuid) {
            p.signal.send_replace(signal);
        }
    }

    fn stop_all(&self, signal: Signal) {
        for (_, p) in lock(&self.pollers).drain() {
            p.signal.send_replace(signal);
        }
    }
}

// ---------------------------------------------------------------------------- validation

fn validation(field: &str, value: impl std::fmt::Display, constraint: &str) -> Error {
    Error::InvalidParameterValue(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
    ))
}

fn null_value(field: &str) -> Error {
    Error::InvalidParameterValue(format!(
        "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
    ))
}

fn check_range(field: &str, value: Option<i64>, min: i64, max: i64) -> Result<()> {
    match value {
        Some(v) if v < min => Err(validation(
            field,
            v,
            &format!("Member must have value greater than or equal to {min}"),
        )),
        Some(v) if v > max => Err(validation(
            field,
            v,
            &format!("Member must have value less than or equal to {max}"),
        )),
        _ => Ok(()),
    }
}

const STARTING_POSITIONS: &[&str] = &["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"];

fn validate(input: &MappingInput) -> Result<()> {
    check_range("batchSize", input.batch_size.map(i64::from), 1, 10_000)?;
    check_range(
        "maximumBatchingWindowInSeconds",
        input.maximum_batching_window_in_seconds.map(i64::from),
        0,
        300,
    )?;
    check_range(
        "parallelizationFactor",
        input.parallelization_factor.map(i64::from),
        1,
        10,
    )?;
    check_range(
        "maximumRetryAttempts",
        input.maximum_retry_attempts.map(i64::from),
        -1,
        10_000,
    )?;
    check_range(
        "maximumRecordAgeInSeconds",
        input.maximum_record_age_in_seconds.map(i64::from),
        -1,
        604_800,
    )?;
    if let Some(age) = input.maximum_record_age_in_seconds
        && (0..60).contains(&age)
    {
        return Err(Error::InvalidParameterValue(format!(
            "MaximumRecordAgeInSeconds must be -1 (infinite) or between 60 and 604800 seconds: {age}"
        )));
    }
    check_range(
        "tumblingWindowInSeconds",
        input.tumbling_window_in_seconds.map(i64::from),
        0,
        900,
    )?;
    if let Some(types) = &input.function_response_types
        && (types.len() > 1 || types.iter().any(|t| t != REPORT_BATCH_ITEM_FAILURES))
    {
        return Err(validation(
            "functionResponseTypes",
            format!("[{}]", types.join(", ")),
            "Member must satisfy constraint: [Member must satisfy enum value set: [ReportBatchItemFailures]]",
        ));
    }
    if let Some(p) = &input.starting_position
        && !STARTING_POSITIONS.contains(&p.as_str())
    {
        return Err(validation(
            "startingPosition",
            p,
            "Member must satisfy enum value set: [TRIM_HORIZON, LATEST, AT_TIMESTAMP]",
        ));
    }
    if let Some(d) = input.on_failure_destination.as_deref().filter(|d| !d.is_empty())
        && (!d.starts_with("arn:") || FunctionRef::parse(d).is_none_or(|r| r.region.is_none()))
    {
        return Err(Error::InvalidParameterValue(format!(
            "The provided destination config DestinationConfig(onSuccess=null, onFailure=OnFailure(destination={d})) is invalid: kinesis-data delivers discarded batch records to Lambda functions only"
        )));
    }
    Ok(())
}

/// `(region, account)` of a Kinesis stream ARN `arn:aws:kinesis:<region>:<account>:stream/<name>`.
fn parse_stream_arn(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("arn:aws:kinesis:")?;
    let (region, rest) = rest.split_once(':')?;
    let (account, resource) = rest.split_once(':')?;
    let name = resource.strip_prefix("stream/")?;
    let valid = !region.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    valid.then_some((region, account))
}

fn check_source(scope: &Scope, arn: &str) -> Result<()> {
    let Some((region, _)) = parse_stream_arn(arn) else {
        return Err(Error::InvalidParameterValue(format!(
            "Unrecognized event source {arn}: kinesis-data maps Kinesis data streams (arn:aws:kinesis:<region>:<account>:stream/<name>) only."
        )));
    };
    if region != scope.region {
        return Err(Error::InvalidParameterValue(format!(
            "The event source {arn} is not in the function's region {}.",
            scope.region
        )));
    }
    Ok(())
}

/// The error CreateEventSourceMapping answers when the reader cannot list the stream.
fn stream_error(arn: &str, e: &str) -> Error {
    let lower = e.to_ascii_lowercase();
    if lower.contains("not found") || lower.contains("notfound") || lower.contains("does not exist") {
        Error::InvalidParameterValue(format!("Stream not found: {arn}"))
    } else {
        Error::InvalidParameterValue(format!(
            "Cannot access stream {arn}. Please ensure the role can perform the GetRecords, GetShardIterator, DescribeStream, and ListShards Actions on your stream in IAM. ({e})"
        ))
    }
}

fn not_found() -> Error {
    Error::ResourceNotFound("The resource you requested does not exist.".into())
}

fn duplicate(m: &MappingDoc) -> Error {
    let name = FunctionRef::parse(&m.function_arn).map_or_else(|| m.function_arn.clone(), |r| r.name);
    Error::ResourceConflict(format!(
        "The event source arn (\" {} \") and function (\" {name} \") provided mapping already exists. Please update or delete the existing mapping with UUID {}",
        m.event_source_arn, m.uuid
    ))
}

fn iso_ms(ms: i64) -> String {
    crate::model::last_modified(ms).replace("+0000", "Z")
}

// ---------------------------------------------------------------------------- API

impl Functions {
    /// Installs the stream reader and starts the enabled mappings.
    pub fn set_stream_reader(self: &Arc<Self>, reader: Arc<dyn StreamReader>) {
        *write(&self.mappings.reader) = Some(reader);
        *write(&self.mappings.owner) = Arc::downgrade(self);
        // Positions first, then mappings: positions of a mapping created in between are
        // never taken for orphans.
        let positions = self.meta.scan_prefix(T_POSITIONS, "");
        let mappings = match self.all_mappings() {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the event source mappings; none is polled");
                return;
            }
        };
        let live: HashSet<&str> = mappings.iter().map(|m| m.uuid.as_str()).collect();
        let orphans: Vec<MetaOp> = positions
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| !live.contains(k.split_once('/').map_or(k.as_str(), |(u, _)| u)))
            .map(|(key, _)| MetaOp::Delete {
                table: T_POSITIONS.into(),
                key,
            })
            .collect();
        if !orphans.is_empty() {
            // Queued now; dropping the future does not cancel the write.
            drop(self.meta.write_grouped(orphans));
        }
        for m in mappings.into_iter().filter(|m| m.enabled) {
            self.mappings.start(m);
        }
    }

    /// Replaces how pollers invoke functions (tests).
    #[cfg(test)]
    pub(crate) fn set_batch_invoker(&self, invoker: Arc<dyn BatchInvoker>) {
        *write(&self.mappings.invoker) = invoker;
    }

    fn all_mappings(&self) -> Result<Vec<MappingDoc>> {
        self.meta
            .scan_prefix(T_MAPPINGS, "")?
            .into_iter()
            .map(|(k, v)| {
                serde_json::from_slice(&v)
                    .map_err(|e| Error::Service(format!("stored event source mapping {k} is unreadable: {e}")))
            })
            .collect()
    }

    fn mapping_in_scope(&self, scope: &Scope, uuid: &str) -> Result<MappingDoc> {
        let raw = self.meta.get(T_MAPPINGS, uuid)?.ok_or_else(not_found)?;
        let doc: MappingDoc = serde_json::from_slice(&raw)
            .map_err(|e| Error::Service(format!("stored event source mapping {uuid} is unreadable: {e}")))?;
        if doc.account != scope.account || doc.region != scope.region {
            return Err(not_found());
        }
        Ok(doc)
    }

    fn mapping_ops_delete(&self, uuid: &str) -> Result<Vec<MetaOp>> {
        let mut ops = vec![MetaOp::Delete {
            table: T_MAPPINGS.into(),
            key: uuid.to_owned(),
        }];
        for (key, _) in self.meta.scan_prefix(T_POSITIONS, &format!("{uuid}/"))? {
            ops.push(MetaOp::Delete {
                table: T_POSITIONS.into(),
                key,
            });
        }
        Ok(ops)
    }

    async fn put_mapping(&self, doc: &MappingDoc) -> Result<()> {
        let value = serde_json::to_vec(doc).map_err(|e| Error::Service(e.to_string()))?;
        self.meta
            .write_grouped(vec![MetaOp::Put {
                table: T_MAPPINGS.into(),
                key: doc.uuid.clone(),
                value,
            }])
            .await?;
        Ok(())
    }

    fn mapping_view(&self, m: &MappingDoc, state: &str) -> serde_json::Value {
        let mut v = serde_json::json!({
            "UUID": m.uuid,
            "StartingPosition": m.starting_position,
            "BatchSize": m.batch_size,
            "MaximumBatchingWindowInSeconds": m.maximum_batching_window_in_seconds,
            "ParallelizationFactor": m.parallelization_factor,
            "EventSourceArn": m.event_source_arn,
            "FunctionArn": m.function_arn,
            "LastModified": m.last_modified_ms as f64 / 1000.0,
            "LastProcessingResult": self.mappings.result(&m.uuid),
            "State": state,
            "StateTransitionReason": "USER_INITIATED",
            "DestinationConfig": {
                "OnFailure": match &m.on_failure_destination {
                    Some(d) => serde_json::json!({ "Destination": d }),
                    None => serde_json::json!({}),
                }
            },
            "MaximumRecordAgeInSeconds": m.maximum_record_age_in_seconds,
            "BisectBatchOnFunctionError": m.bisect_batch_on_function_error,
            "MaximumRetryAttempts": m.maximum_retry_attempts,
            "TumblingWindowInSeconds": m.tumbling_window_in_seconds,
            "FunctionResponseTypes": m.function_response_types,
            "EventSourceMappingArn": format!("arn:aws:lambda:{}:{}:event-source-mapping:{}", m.region, m.account, m.uuid),
        });
        if let Some(ts) = m.starting_position_timestamp {
            v["StartingPositionTimestamp"] = serde_json::json!(ts);
        }
        v
    }

    fn check_duplicate(&self, source: &str, function_arn: &str, except: Option<&str>) -> Result<()> {
        match self
            .all_mappings()?
            .into_iter()
            .find(|m| m.event_source_arn == source && m.function_arn == function_arn && Some(m.uuid.as_str()) != except)
        {
            Some(m) => Err(duplicate(&m)),
            None => Ok(()),
        }
    }

    /// CreateEventSourceMapping: the `EventSourceMappingConfiguration` JSON.
    pub async fn create_mapping(&self, scope: &Scope, input: MappingInput) -> Result<serde_json::Value> {
        validate(&input)?;
        let source = input
            .event_source_arn
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| null_value("eventSourceArn"))?;
        check_source(scope, &source)?;
        let name = input
            .function_name
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| null_value("functionName"))?;
        let position = input
            .starting_position
            .clone()
            .ok_or_else(|| null_value("startingPosition"))?;
        match (position.as_str(), input.starting_position_timestamp) {
            ("AT_TIMESTAMP", None) => {
                return Err(Error::InvalidParameterValue(
                    "StartingPositionTimestamp must be specified when StartingPosition is AT_TIMESTAMP.".into(),
                ));
            }
            ("AT_TIMESTAMP", Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(Error::InvalidParameterValue(
                    "StartingPositionTimestamp can only be specified when StartingPosition is AT_TIMESTAMP.".into(),
                ));
            }
        }
        let (doc, q) = self.find(scope, &name, None)?;
        let (config, _) = Self::resolve(&doc, q.as_deref())?;
        if let Some(reader) = self.mappings.reader() {
            reader
                .shards(&source, &config.role)
                .await
                .map_err(|e| stream_error(&source, &e))?;
        }
        let guard = self.write_lock.lock().await;
        let (doc, q) = self.find(scope, &name, None)?;
        let (_, function_arn) = Self::resolve(&doc, q.as_deref())?;
        self.check_duplicate(&source, &function_arn, None)?;
        let now = self.now_ms();
        let m = MappingDoc {
            version: FORMAT_VERSION,
            uuid: uuid::Uuid::new_v4().to_string(),
            account: scope.account.clone(),
            region: scope.region.clone(),
            function_arn,
            event_source_arn: source,
            enabled: input.enabled.unwrap_or(true),
            batch_size: input.batch_size.unwrap_or(100),
            maximum_batching_window_in_seconds: input.maximum_batching_window_in_seconds.unwrap_or(0),
            starting_position: position,
            starting_position_timestamp: input.starting_position_timestamp,
            parallelization_factor: input.parallelization_factor.unwrap_or(1),
            maximum_retry_attempts: input.maximum_retry_attempts.unwrap_or(-1),
            maximum_record_age_in_seconds: input.maximum_record_age_in_seconds.unwrap_or(-1),
            bisect_batch_on_function_error: input.bisect_batch_on_function_error.unwrap_or(false),
            function_response_types: input.function_response_types.unwrap_or_default(),
            on_failure_destination: input.on_failure_destination.filter(|d| !d.is_empty()),
            tumbling_window_in_seconds: input.tumbling_window_in_seconds.unwrap_or(0),
            last_modified_ms: now,
            latest_anchor_ms: now,
        };
        self.put_mapping(&m).await?;
        drop(guard);
        if m.enabled {
            self.mappings.start(m.clone());
        }
        Ok(self.mapping_view(&m, "Creating"))
    }

    /// GetEventSourceMapping.
    pub fn get_mapping(&self, scope: &Scope, uuid: &str) -> Result<serde_json::Value> {
        let m = self.mapping_in_scope(scope, uuid)?;
        Ok(self.mapping_view(&m, if m.enabled { "Enabled" } else { "Disabled" }))
    }

    /// ListEventSourceMappings (filtered by source and/or function), paged.
    pub fn list_mappings(
        &self,
        scope: &Scope,
        event_source_arn: Option<&str>,
        function_name: Option<&str>,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<(Vec<serde_json::Value>, Option<String>)> {
        // (unqualified ARN, qualified ARN when the filter names a version or alias)
        let function = match function_name.filter(|n| !n.is_empty()) {
            None => None,
            Some(name) => {
                let r = FunctionRef::parse(name).ok_or_else(|| {
                    validation(
                        "functionName",
                        name,
                        "Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?",
                    )
                })?;
                let foreign = r.account.as_deref().is_some_and(|a| a != scope.account)
                    || r.region.as_deref().is_some_and(|g| g != scope.region);
                if foreign {
                    return Ok((Vec::new(), None));
                }
                let base = function_arn(scope, &r.name);
                let qualified = r.qualifier.filter(|q| q != "$LATEST").map(|q| format!("{base}:{q}"));
                Some((base, qualified))
            }
        };
        let max = max_items.clamp(1, 10_000);
        let mut out = Vec::new();
        let mut more = false;
        let mut last = None;
        for m in self.all_mappings()? {
            if m.account != scope.account || m.region != scope.region {
                continue;
            }
            if event_source_arn.is_some_and(|s| s != m.event_source_arn) {
                continue;
            }
            if let Some((base, qualified)) = &function {
                let matches = match qualified {
                    Some(q) => m.function_arn == *q,
                    None => m.function_arn == *base || m.function_arn.starts_with(&format!("{base}:")),
                };
                if !matches {
                    continue;
                }
            }
            if marker.is_some_and(|k| m.uuid.as_str() <= k) {
                continue;
            }
            if out.len() == max {
                more = true;
                break;
            }
            last = Some(m.uuid.clone());
            out.push(self.mapping_view(&m, if m.enabled { "Enabled" } else { "Disabled" }));
        }
        Ok((out, if more { last } else { None }))
    }

    /// UpdateEventSourceMapping.
    pub async fn update_mapping(&self, scope: &Scope, uuid: &str, input: MappingInput) -> Result<serde_json::Value> {
        validate(&input)?;
        let guard = self.write_lock.lock().await;
        let mut m = self.mapping_in_scope(scope, uuid)?;
        let was_enabled = m.enabled;
        if let Some(name) = input.function_name.as_deref().filter(|n| !n.is_empty()) {
            let (doc, q) = self.find(scope, name, None)?;
            let (_, arn) = Self::resolve(&doc, q.as_deref())?;
            if arn != m.function_arn {
                self.check_duplicate(&m.event_source_arn, &arn, Some(uuid))?;
                m.function_arn = arn;
            }
        }
        if let Some(v) = input.enabled {
            m.enabled = v;
        }
        if let Some(v) = input.batch_size {
            m.batch_size = v;
        }
        if let Some(v) = input.maximum_batching_window_in_seconds {
            m.maximum_batching_window_in_seconds = v;
        }
        if let Some(v) = input.maximum_retry_attempts {
            m.maximum_retry_attempts = v;
        }
        if let Some(v) = input.maximum_record_age_in_seconds {
            m.maximum_record_age_in_seconds = v;
        }
        if let Some(v) = input.bisect_batch_on_function_error {
            m.bisect_batch_on_function_error = v;
        }
        if let Some(v) = input.parallelization_factor {
            m.parallelization_factor = v;
        }
        if let Some(v) = input.function_response_types {
            m.function_response_types = v;
        }
        if let Some(v) = input.on_failure_destination {
            m.on_failure_destination = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = input.tumbling_window_in_seconds {
            m.tumbling_window_in_seconds = v;
        }
        let now = self.now_ms();
        if m.enabled && !was_enabled {
            m.latest_anchor_ms = now;
        }
        m.last_modified_ms = now;
        self.put_mapping(&m).await?;
        drop(guard);
        if m.enabled {
            self.mappings.start(m.clone());
        } else {
            self.mappings.stop(uuid, Signal::Stop);
        }
        let state = match (was_enabled, m.enabled) {
            (false, true) => "Enabling",
            (true, false) => "Disabling",
            _ => "Updating",
        };
        Ok(self.mapping_view(&m, state))
    }

    /// DeleteEventSourceMapping: the mapping in state `Deleting`.
    pub async fn delete_mapping(&self, scope: &Scope, uuid: &str) -> Result<serde_json::Value> {
        let _guard = self.write_lock.lock().await;
        let m = self.mapping_in_scope(scope, uuid)?;
        self.mappings.stop(&m.uuid, Signal::Discard);
        let ops = self.mapping_ops_delete(&m.uuid)?;
        self.meta.write_grouped(ops).await?;
        let view = self.mapping_view(&m, "Deleting");
        lock(&self.mappings.results).remove(&m.uuid);
        Ok(view)
    }

    /// Operations deleting every mapping of `function_arn` (with DeleteFunction).
    pub(crate) fn mappings_delete_ops(&self, function_arn: &str) -> Result<Vec<MetaOp>> {
        let prefix = format!("{function_arn}:");
        let mut ops = Vec::new();
        for m in self.all_mappings()? {
            if m.function_arn == function_arn || m.function_arn.starts_with(&prefix) {
                self.mappings.stop(&m.uuid, Signal::Discard);
                ops.extend(self.mapping_ops_delete(&m.uuid)?);
            }
        }
        Ok(ops)
    }

    /// Stops every mapping's poller.
    pub(crate) fn stop_mappings(&self) {
        self.mappings.stop_all(Signal::Discard);
    }
}

// ---------------------------------------------------------------------------- pollers

/// What one poller works with.
struct Ctx {
    functions: Weak<Functions>,
    reader: Arc<dyn StreamReader>,
    invoker: Arc<dyn BatchInvoker>,
    doc: MappingDoc,
    signal: watch::Receiver<Signal>,
}

/// Waits `d` unless the poller is told to stop; `false` when it is.
async fn pause(rx: &mut watch::Receiver<Signal>, d: Duration) -> bool {
    let slept = {
        let stop = async {
            let _ = rx.wait_for(|s| *s != Signal::Run).await;
        };
        tokio::select! {
            () = stop => false,
            () = tokio::time::sleep(d) => true,
        }
    };
    slept && *rx.borrow() == Signal::Run
}

fn grow(backoff: &mut Duration) {
    *backoff = (*backoff * 2).min(RETRY_BACKOFF_MAX);
}

fn resolve_arn(f: &Functions, arn: &str) -> Result<Resolved> {
    let (_, doc, q) = f
        .lookup_arn(arn)
        .ok_or_else(|| Error::ResourceNotFound(format!("Function not found: {arn}")))?;
    let (config, invoked_arn) = Functions::resolve(&doc, q.as_deref())?;
    Ok(Resolved {
        doc,
        config,
        invoked_arn,
    })
}

/// Which shards are finished or being read.
#[derive(Default)]
struct Book {
    /// Finished shards → whether they had ended before the mapping first read them.
    done: HashMap<String, bool>,
    running: HashSet<String>,
}

/// The poller of one mapping: lists shards and runs a task per readable shard.
async fn coordinate(ctx: Arc<Ctx>) {
    let mut rx = ctx.signal.clone();
    let uuid = ctx.doc.uuid.clone();
    let book = Arc::new(Mutex::new(Book::default()));
    let wake = Arc::new(tokio::sync::Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    // The shards this mapping has finished.
    loop {
        let Some(f) = ctx.functions.upgrade() else { return };
        match f.meta.scan_prefix(T_POSITIONS, &format!("{uuid}/")) {
            Ok(rows) => {
                let mut b = lock(&book);
                for (key, raw) in rows {
                    if let (Some((_, shard)), Ok(p)) =
                        (key.split_once('/'), serde_json::from_slice::<PositionDoc>(&raw))
                        && p.done
                    {
                        b.done.insert(shard.to_owned(), p.ended_at_start);
                    }
                }
                break;
            }
            Err(e) => {
                tracing::warn!(%uuid, error = %e, "cannot read the mapping's positions; retrying");
                drop(f);
                if !pause(&mut rx, SHARD_REFRESH).await {
                    return;
                }
            }
        }
    }
    let mut backoff = RETRY_BACKOFF_START;
    loop {
        if *rx.borrow() != Signal::Run {
            break;
        }
        let Some(f) = ctx.functions.upgrade() else { break };
        let mut wait = SHARD_REFRESH;
        let listed = match resolve_arn(&f, &ctx.doc.function_arn) {
            Ok(target) => ctx
                .reader
                .shards(&ctx.doc.event_source_arn, &target.config.role)
                .await
                .map_err(|e| format!("cannot list the shards of {}: {e}", ctx.doc.event_source_arn)),
            Err(e) => Err(e.to_string()),
        };
        match listed {
            Err(e) => {
                tracing::warn!(%uuid, error = %e, "event source mapping cannot poll");
                f.mappings.set_result(&uuid, &format!("PROBLEM: {e}"));
                wait = backoff;
                grow(&mut backoff);
            }
            Ok(shards) => {
                backoff = RETRY_BACKOFF_START;
                let listed: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
                let mut b = lock(&book);
                for s in &shards {
                    if b.done.contains_key(&s.shard_id) || b.running.contains(&s.shard_id) {
                        continue;
                    }
                    // Parents still listed must be finished first (expired ones are gone).
                    if s.parents
                        .iter()
                        .any(|p| listed.contains(p.as_str()) && !b.done.contains_key(p))
                    {
                        continue;
                    }
                    let child_of_read_parent = s.parents.iter().any(|p| b.done.get(p) == Some(&false));
                    b.running.insert(s.shard_id.clone());
                    let (ctx, book, wake, shard_id) = (ctx.clone(), book.clone(), wake.clone(), s.shard_id.clone());
                    tasks.spawn(async move {
                        let finished = read_shard(&ctx, &shard_id, child_of_read_parent).await;
                        {
                            let mut b = lock(&book);
                            b.running.remove(&shard_id);
                            if let Some(ended_at_start) = finished {
                                b.done.insert(shard_id, ended_at_start);
                            }
                        }
                        // A finished shard may let its children start now; a shard task
                        // that stopped early is restarted at the next refresh.
                        if finished.is_some() {
                            wake.notify_one();
                        }
                    });
                }
            }
        }
        drop(f);
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            _ = rx.wait_for(|s| *s != Signal::Run) => break,
            () = wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Reads one shard until it ends (`Some(ended at start)`, its `done` marker written) or the
/// poller stops (`None`).
async fn read_shard(ctx: &Ctx, shard_id: &str, child_of_read_parent: bool) -> Option<bool> {
    let mut rx = ctx.signal.clone();
    let uuid = ctx.doc.uuid.as_str();
    let stream = ctx.doc.event_source_arn.as_str();
    let max = usize::try_from(ctx.doc.batch_size).unwrap_or(100).max(1);
    let (mut from, mut have_position) = {
        let f = ctx.functions.upgrade()?;
        match f.meta.get(T_POSITIONS, &position_key(uuid, shard_id)) {
            Ok(Some(raw)) => match serde_json::from_slice::<PositionDoc>(&raw) {
                Ok(p) if p.done => return Some(p.ended_at_start),
                Ok(p) => (p.sequence_number.map_or(ReadFrom::TrimHorizon, ReadFrom::After), true),
                Err(e) => {
                    tracing::warn!(%uuid, shard_id, error = %e, "unreadable shard position; starting over");
                    (ctx.doc.start_from(child_of_read_parent), false)
                }
            },
            Ok(None) => (ctx.doc.start_from(child_of_read_parent), false),
            Err(e) => {
                tracing::warn!(%uuid, shard_id, error = %e, "cannot read the shard position");
                return None;
            }
        }
    };
    let mut backoff = RETRY_BACKOFF_START;
    loop {
        if *rx.borrow() != Signal::Run {
            return None;
        }
        let role = {
            let f = ctx.functions.upgrade()?;
            match resolve_arn(&f, &ctx.doc.function_arn) {
                Ok(t) => t.config.role,
                Err(e) => {
                    f.mappings.set_result(uuid, &format!("PROBLEM: {e}"));
                    drop(f);
                    if !pause(&mut rx, backoff).await {
                        return None;
                    }
                    grow(&mut backoff);
                    continue;
                }
            }
        };
        let batch = match ctx.reader.read(stream, &role, shard_id, from.clone(), max).await {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(%uuid, shard_id, error = %e, "cannot read the shard");
                if let Some(f) = ctx.functions.upgrade() {
                    f.mappings
                        .set_result(uuid, &format!("PROBLEM: cannot read {shard_id} of {stream}: {e}"));
                }
                // LATEST starts at the creation instant; should the stream refuse that
                // timestamp, start at its tip instead.
                if !have_position && ctx.doc.starting_position == "LATEST" && matches!(from, ReadFrom::AtTimestamp(_)) {
                    from = ReadFrom::Latest;
                }
                if !pause(&mut rx, backoff).await {
                    return None;
                }
                grow(&mut backoff);
                continue;
            }
        };
        backoff = RETRY_BACKOFF_START;
        let mut records = batch.records;
        let mut end = batch.end_of_shard;
        if records.is_empty() {
            if end {
                let doc = PositionDoc {
                    version: FORMAT_VERSION,
                    sequence_number: match &from {
                        ReadFrom::After(s) => Some(s.clone()),
                        _ => None,
                    },
                    done: true,
                    ended_at_start: !have_position,
                };
                let f = ctx.functions.upgrade()?;
                if *rx.borrow() == Signal::Discard {
                    return None;
                }
                if let Err(e) = f.meta.write_grouped(vec![position_op(uuid, shard_id, &doc)]).await {
                    tracing::warn!(%uuid, shard_id, error = %e, "cannot record the end of the shard");
                    return None;
                }
                return Some(doc.ended_at_start);
            }
            match batch.position {
                Some(p) if !matches!(&from, ReadFrom::After(q) if *q == p) => {
                    if !have_position && let Some(f) = ctx.functions.upgrade() {
                        // Where the starting position resolved to, so a restart goes on from it.
                        if *rx.borrow() == Signal::Discard {
                            return None;
                        }
                        match f
                            .meta
                            .write_grouped(vec![position_op(uuid, shard_id, &checkpoint_doc(&p))])
                            .await
                        {
                            Ok(()) => have_position = true,
                            Err(e) => tracing::warn!(%uuid, shard_id, error = %e, "cannot record the shard position"),
                        }
                    }
                    from = ReadFrom::After(p);
                }
                // An empty shard: everything written from now on is after LATEST.
                None if matches!(from, ReadFrom::Latest) => from = ReadFrom::TrimHorizon,
                _ => {}
            }
            if !pause(&mut rx, POLL_INTERVAL).await {
                return None;
            }
            continue;
        }
        // The batching window: gather up to `BatchSize` records for at most the window.
        let window = Duration::from_secs(u64::from(ctx.doc.maximum_batching_window_in_seconds));
        if !window.is_zero() {
            let deadline = tokio::time::Instant::now() + window;
            while records.len() < max && !end {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    break;
                }
                if !pause(&mut rx, POLL_INTERVAL.min(deadline - now)).await {
                    return None;
                }
                let after = ReadFrom::After(records.last()?.sequence_number.clone());
                match ctx
                    .reader
                    .read(stream, &role, shard_id, after, max - records.len())
                    .await
                {
                    Ok(b) => {
                        records.extend(b.records);
                        end = b.end_of_shard;
                    }
                    Err(_) => break,
                }
            }
        }
        records.truncate(max);
        fit_payload(
            &mut records,
            400 + shard_id.len() + stream.len() + role.len() + ctx.doc.region.len(),
        );
        let last = process(ctx, shard_id, records).await?;
        from = ReadFrom::After(last);
        have_position = true;
    }
}

/// Keeps the records whose event fits in a synchronous payload (at least one).
fn fit_payload(records: &mut Vec<StreamRecord>, overhead: usize) {
    let mut total = 16;
    let mut n = 0;
    for r in records.iter() {
        let size = overhead + r.data.len().div_ceil(3) * 4 + r.partition_key.len() * 6 + r.sequence_number.len() * 2;
        if n > 0 && total + size > MAX_SYNC_PAYLOAD {
            break;
        }
        total += size;
        n += 1;
    }
    records.truncate(n);
}

/// The event AWS gives a function for a batch of Kinesis records.
fn kinesis_event(records: &[StreamRecord], shard_id: &str, doc: &MappingDoc, role: &str) -> Bytes {
    use base64::Engine as _;
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": base64::engine::general_purpose::STANDARD.encode(&r.data),
                    "approximateArrivalTimestamp": r.arrival_ms as f64 / 1000.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{shard_id}:{}", r.sequence_number),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": role,
                "awsRegion": doc.region,
                "eventSourceARN": doc.event_source_arn,
            })
        })
        .collect();
    Bytes::from(serde_json::json!({ "Records": records }).to_string())
}

/// How an invocation that ran went.
enum Verdict {
    Success,
    /// `ReportBatchItemFailures`: the records from this index on are to be retried.
    FailedFrom(usize),
    Failure,
}

/// Reads a `ReportBatchItemFailures` answer (AWS's rules: no list, `null` or `[]` is
/// success; an empty, missing or unknown `itemIdentifier` fails the whole batch).
fn item_failures(payload: &[u8], records: &[StreamRecord]) -> Verdict {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return Verdict::Success;
    };
    let failures = match v.get("batchItemFailures") {
        None | Some(serde_json::Value::Null) => return Verdict::Success,
        Some(serde_json::Value::Array(a)) => a,
        Some(_) => return Verdict::Failure,
    };
    let mut lowest: Option<usize> = None;
    for item in failures {
        let id = item.get("itemIdentifier").and_then(serde_json::Value::as_str);
        let Some(idx) = id.and_then(|id| records.iter().position(|r| r.sequence_number == id)) else {
            return Verdict::Failure;
        };
        lowest = Some(lowest.map_or(idx, |l| l.min(idx)));
    }
    lowest.map_or(Verdict::Success, Verdict::FailedFrom)
}

/// The last invocation of a batch, for the on-failure record.
struct LastCall {
    request_id: String,
    version: String,
    function_error: Option<String>,
}

/// Part of a batch being worked on.
struct Pending {
    records: Vec<StreamRecord>,
    /// Function-error retries so far (bisecting does not count).
    retries: u32,
    /// Invocations of these records.
    invokes: u32,
    last: Option<LastCall>,
}

/// Invokes the function with `records` until every record is processed or skipped,
/// checkpointing as it goes; the last sequence number handled, `None` when stopped.
async fn process(ctx: &Ctx, shard_id: &str, records: Vec<StreamRecord>) -> Option<String> {
    let mut rx = ctx.signal.clone();
    let doc = &ctx.doc;
    let uuid = doc.uuid.as_str();
    let mut queue = VecDeque::from([Pending {
        records,
        retries: 0,
        invokes: 0,
        last: None,
    }]);
    let mut handled = None;
    let mut backoff = RETRY_BACKOFF_START;
    while let Some(mut cur) = queue.pop_front() {
        loop {
            if *rx.borrow() != Signal::Run {
                return None;
            }
            let f = ctx.functions.upgrade()?;
            if let Ok(age) = u32::try_from(doc.maximum_record_age_in_seconds) {
                let now = f.now_ms();
                let limit = i64::from(age) * 1000;
                let expired = cur.records.iter().take_while(|r| now - r.arrival_ms > limit).count();
                if expired > 0 {
                    let old: Vec<StreamRecord> = cur.records.drain(..expired).collect();
                    skip(ctx, &f, shard_id, &old, "RecordAgeExceeded", &cur).await;
                    handled = old.last().map(|r| r.sequence_number.clone());
                    if cur.records.is_empty() {
                        break;
                    }
                }
            }
            let target = match resolve_arn(&f, &doc.function_arn) {
                Ok(t) => t,
                Err(e) => {
                    f.mappings.set_result(uuid, &format!("PROBLEM: {e}"));
                    drop(f);
                    if !pause(&mut rx, backoff).await {
                        return None;
                    }
                    grow(&mut backoff);
                    continue;
                }
            };
            let request_id = uuid::Uuid::new_v4().to_string();
            let payload = kinesis_event(&cur.records, shard_id, doc, &target.config.role);
            let out = match ctx.invoker.invoke(&f, &target, &request_id, payload).await {
                Ok(out) => out,
                Err(e) => {
                    // Throttled or not started: retried until the records expire.
                    tracing::debug!(%uuid, shard_id, error = %e, "batch invocation failed to run; retrying");
                    f.mappings.set_result(uuid, RESULT_FAILED);
                    drop(f);
                    if !pause(&mut rx, backoff).await {
                        return None;
                    }
                    grow(&mut backoff);
                    continue;
                }
            };
            cur.invokes += 1;
            cur.last = Some(LastCall {
                request_id,
                version: target.config.version.clone(),
                function_error: out.function_error.clone(),
            });
            let verdict = if out.function_error.is_some() {
                Verdict::Failure
            } else if doc.report_item_failures() {
                item_failures(&out.payload, &cur.records)
            } else {
                Verdict::Success
            };
            match verdict {
                Verdict::Success => {
                    f.mappings.set_result(uuid, RESULT_OK);
                    let last = cur.records.last()?.sequence_number.clone();
                    checkpoint(ctx, &f, shard_id, &last).await;
                    handled = Some(last);
                    backoff = RETRY_BACKOFF_START;
                    break;
                }
                Verdict::FailedFrom(idx) => {
                    f.mappings.set_result(uuid, RESULT_FAILED);
                    if idx > 0 {
                        let last = cur.records[idx - 1].sequence_number.clone();
                        checkpoint(ctx, &f, shard_id, &last).await;
                        cur.records.drain(..idx);
                    }
                }
                Verdict::Failure => {
                    f.mappings.set_result(uuid, RESULT_FAILED);
                    if doc.bisect_batch_on_function_error && cur.records.len() > 1 {
                        let second = cur.records.split_off(cur.records.len() / 2);
                        queue.push_front(Pending {
                            records: second,
                            retries: cur.retries,
                            invokes: 0,
                            last: None,
                        });
                        cur.invokes = 0;
                        cur.last = None;
                        continue;
                    }
                }
            }
            cur.retries += 1;
            if doc.retries_exhausted(cur.retries) {
                skip(ctx, &f, shard_id, &cur.records, "RetryAttemptsExhausted", &cur).await;
                handled = cur.records.last().map(|r| r.sequence_number.clone());
                backoff = RETRY_BACKOFF_START;
                break;
            }
            drop(f);
            if !pause(&mut rx, backoff).await {
                return None;
            }
            grow(&mut backoff);
        }
    }
    handled
}

/// Checkpoints `sequence_number` (unless the mapping is being deleted).
async fn checkpoint(ctx: &Ctx, f: &Functions, shard_id: &str, sequence_number: &str) {
    if *ctx.signal.borrow() == Signal::Discard {
        return;
    }
    let op = position_op(&ctx.doc.uuid, shard_id, &checkpoint_doc(sequence_number));
    if let Err(e) = f.meta.write_grouped(vec![op]).await {
        // The batch is delivered again after a restart (at least once).
        tracing::warn!(uuid = %ctx.doc.uuid, shard_id, error = %e, "cannot checkpoint the shard");
    }
}

/// Skips `records` (checkpoints past them) and queues their invocation record for the
/// on-failure destination in the same transaction.
async fn skip(ctx: &Ctx, f: &Functions, shard_id: &str, records: &[StreamRecord], condition: &str, cur: &Pending) {
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return;
    };
    let doc = &ctx.doc;
    tracing::warn!(
        uuid = %doc.uuid, shard_id, condition, records = records.len(),
        first = %first.sequence_number, last = %last.sequence_number,
        "event source mapping discarded records"
    );
    if *ctx.signal.borrow() == Signal::Discard {
        return;
    }
    let op = position_op(&doc.uuid, shard_id, &checkpoint_doc(&last.sequence_number));
    let written = match &doc.on_failure_destination {
        None => f.meta.write_grouped(vec![op]).await.map_err(Error::from),
        Some(destination) => {
            let mut record = serde_json::json!({
                "requestContext": {
                    "requestId": cur.last.as_ref().map_or_else(|| uuid::Uuid::new_v4().to_string(), |c| c.request_id.clone()),
                    "functionArn": doc.function_arn,
                    "condition": condition,
                    "approximateInvokeCount": cur.invokes,
                },
                "version": "1.0",
                "timestamp": iso_ms(f.now_ms()),
                "KinesisBatchInfo": {
                    "shardId": shard_id,
                    "startSequenceNumber": first.sequence_number,
                    "endSequenceNumber": last.sequence_number,
                    "approximateArrivalOfFirstRecord": iso_ms(first.arrival_ms),
                    "approximateArrivalOfLastRecord": iso_ms(last.arrival_ms),
                    "batchSize": records.len(),
                    "streamArn": doc.event_source_arn,
                },
            });
            if let Some(call) = &cur.last {
                let mut response = serde_json::json!({ "statusCode": 200, "executedVersion": call.version });
                if let Some(e) = &call.function_error {
                    response["functionError"] = serde_json::json!(e);
                }
                record["responseContext"] = response;
            }
            let request_id = uuid::Uuid::new_v4().to_string();
            f.enqueue(destination, &request_id, Bytes::from(record.to_string()), vec![op])
                .await
                .map(|_| ())
        }
    };
    if let Err(e) = written {
        tracing::warn!(uuid = %doc.uuid, shard_id, error = %e, "cannot record the discarded records");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    use kd_storage::{MetaStore, SystemClock};

    use super::*;
    use crate::engine::Config;
    use crate::host::Credentials;
    use crate::model::{CodeFetcher, CodeInput, FunctionInput, Roles};
    use crate::queue::{AsyncEvent, T_ASYNC};

    const ACCOUNT: &str = "123456789012";
    const REGION: &str = "us-east-1";
    const ROLE: &str = "arn:aws:iam::123456789012:role/esm-role";
    const STREAM: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/s";
    const SHARD0: &str = "shardId-000000000000";
    const SHARD1: &str = "shardId-000000000001";
    const SHARD2: &str = "shardId-000000000002";
    const SHARD3: &str = "shardId-000000000003";

    fn scope() -> Scope {
        Scope {
            account: ACCOUNT.into(),
            region: REGION.into(),
        }
    }

    fn fn_arn(name: &str) -> String {
        format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}")
    }

    fn now_ms() -> i64 {
        use kd_storage::Clock as _;
        SystemClock.now_ms()
    }

    struct TestRoles;

    impl Roles for TestRoles {
        fn check_lambda_trust(&self, _role_arn: &str) -> std::result::Result<(), String> {
            Ok(())
        }

        fn credentials(&self, _role_arn: &str, _function_name: &str) -> std::result::Result<Credentials, String> {
            Ok(Credentials {
                access_key_id: "ASIATEST".into(),
                secret_access_key: "secret".into(),
                session_token: "token".into(),
            })
        }
    }

    struct NoFetch;

    #[async_trait::async_trait]
    impl CodeFetcher for NoFetch {
        async fn fetch(
            &self,
            _account: &str,
            _bucket: &str,
            _key: &str,
            _version: Option<&str>,
            _limit: u64,
        ) -> std::result::Result<Bytes, String> {
            Err("no S3 in these tests".into())
        }
    }

    // ------------------------------------------------------------------ fake stream

    struct FakeShard {
        id: String,
        parents: Vec<String>,
        closed: bool,
        records: Vec<StreamRecord>,
    }

    /// An in-memory stream; sequence numbers are 56 zero-padded digits (string order is
    /// numeric order), unique across shards.
    struct FakeStream {
        shards: Mutex<Vec<FakeShard>>,
        next: AtomicU64,
        roles: Mutex<HashSet<String>>,
    }

    impl FakeStream {
        fn new(shards: &[(&str, &[&str])]) -> Arc<FakeStream> {
            Arc::new(FakeStream {
                shards: Mutex::new(
                    shards
                        .iter()
                        .map(|(id, parents)| FakeShard {
                            id: (*id).to_owned(),
                            parents: parents.iter().map(|p| (*p).to_owned()).collect(),
                            closed: false,
                            records: Vec::new(),
                        })
                        .collect(),
                ),
                next: AtomicU64::new(49_000),
                roles: Mutex::new(HashSet::new()),
            })
        }

        fn put_at(&self, shard: &str, data: &str, arrival_ms: i64) -> String {
            let seq = format!("{:056}", self.next.fetch_add(1, Ordering::SeqCst));
            let mut g = lock(&self.shards);
            let s = g.iter_mut().find(|s| s.id == shard).expect("shard");
            assert!(!s.closed, "put to a closed shard");
            s.records.push(StreamRecord {
                sequence_number: seq.clone(),
                partition_key: format!("pk-{data}"),
                data: Bytes::from(data.to_owned()),
                arrival_ms,
            });
            seq
        }

        fn put(&self, shard: &str, data: &str) -> String {
            self.put_at(shard, data, now_ms())
        }

        fn close(&self, shard: &str) {
            lock(&self.shards)
                .iter_mut()
                .find(|s| s.id == shard)
                .expect("shard")
                .closed = true;
        }

        fn add_shard(&self, id: &str, parents: &[&str]) {
            lock(&self.shards).push(FakeShard {
                id: id.to_owned(),
                parents: parents.iter().map(|p| (*p).to_owned()).collect(),
                closed: false,
                records: Vec::new(),
            });
        }
    }

    #[async_trait::async_trait]
    impl StreamReader for FakeStream {
        async fn shards(&self, stream_arn: &str, role_arn: &str) -> std::result::Result<Vec<StreamShard>, String> {
            if stream_arn != STREAM {
                return Err(format!("Stream {stream_arn} under account {ACCOUNT} not found."));
            }
            lock(&self.roles).insert(role_arn.to_owned());
            Ok(lock(&self.shards)
                .iter()
                .map(|s| StreamShard {
                    shard_id: s.id.clone(),
                    parents: s.parents.clone(),
                    closed: s.closed,
                })
                .collect())
        }

        async fn read(
            &self,
            stream_arn: &str,
            role_arn: &str,
            shard_id: &str,
            from: ReadFrom,
            max: usize,
        ) -> std::result::Result<StreamBatch, String> {
            if stream_arn != STREAM {
                return Err("not found".into());
            }
            lock(&self.roles).insert(role_arn.to_owned());
            let g = lock(&self.shards);
            let s = g.iter().find(|s| s.id == shard_id).ok_or("no such shard")?;
            let latest = matches!(from, ReadFrom::Latest);
            let start = match from {
                ReadFrom::TrimHorizon => 0,
                ReadFrom::Latest => s.records.len(),
                ReadFrom::AtTimestamp(t) => s
                    .records
                    .iter()
                    .position(|r| r.arrival_ms >= t)
                    .unwrap_or(s.records.len()),
                ReadFrom::After(seq) => s.records.iter().filter(|r| r.sequence_number <= seq).count(),
            };
            let end = (start + max).min(s.records.len());
            let records = s.records[start..end].to_vec();
            Ok(StreamBatch {
                end_of_shard: s.closed && end == s.records.len(),
                position: (latest && start > 0).then(|| s.records[start - 1].sequence_number.clone()),
                records,
            })
        }
    }

    // ------------------------------------------------------------------ fake invoker

    #[derive(Debug, Clone)]
    struct Call {
        arn: String,
        event: serde_json::Value,
        at: Instant,
    }

    impl Call {
        fn records(&self) -> &Vec<serde_json::Value> {
            self.event["Records"].as_array().expect("Records")
        }

        fn seqs(&self) -> Vec<String> {
            self.records()
                .iter()
                .map(|r| r["kinesis"]["sequenceNumber"].as_str().expect("seq").to_owned())
                .collect()
        }

        fn datas(&self) -> Vec<String> {
            use base64::Engine as _;
            self.records()
                .iter()
                .map(|r| {
                    let b64 = r["kinesis"]["data"].as_str().expect("data");
                    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).expect("b64"))
                        .expect("utf8")
                })
                .collect()
        }

        fn shard(&self) -> String {
            let id = self.records()[0]["eventID"].as_str().expect("eventID");
            id.split_once(':').expect("shard:seq").0.to_owned()
        }
    }

    type Respond = Box<dyn Fn(&Call, usize) -> Result<InvokeOutcome> + Send + Sync>;

    struct FakeInvoker {
        calls: Mutex<Vec<Call>>,
        respond: Respond,
    }

    impl FakeInvoker {
        fn new(respond: impl Fn(&Call, usize) -> Result<InvokeOutcome> + Send + Sync + 'static) -> Arc<FakeInvoker> {
            Arc::new(FakeInvoker {
                calls: Mutex::new(Vec::new()),
                respond: Box::new(respond),
            })
        }

        fn ok() -> Arc<FakeInvoker> {
            Self::new(|_, _| Ok(outcome("null", None)))
        }

        fn calls(&self) -> Vec<Call> {
            lock(&self.calls).clone()
        }

        fn datas(&self) -> Vec<Vec<String>> {
            self.calls().iter().map(Call::datas).collect()
        }
    }

    #[async_trait::async_trait]
    impl BatchInvoker for FakeInvoker {
        async fn invoke(
            &self,
            _functions: &Functions,
            target: &Resolved,
            _request_id: &str,
            payload: Bytes,
        ) -> Result<InvokeOutcome> {
            let call = Call {
                arn: target.invoked_arn.clone(),
                event: serde_json::from_slice(&payload).expect("event JSON"),
                at: Instant::now(),
            };
            let n = {
                let mut calls = lock(&self.calls);
                calls.push(call.clone());
                calls.len() - 1
            };
            (self.respond)(&call, n)
        }
    }

    fn outcome(payload: &str, function_error: Option<&str>) -> InvokeOutcome {
        InvokeOutcome {
            payload: Bytes::from(payload.to_owned()),
            function_error: function_error.map(str::to_owned),
            error_type: None,
            log_tail: None,
            duration: Duration::ZERO,
            cold_start: false,
        }
    }

    fn unhandled() -> InvokeOutcome {
        outcome(r#"{"errorMessage":"boom","errorType":"Exception"}"#, Some("Unhandled"))
    }

    // ------------------------------------------------------------------ harness

    const HANDLER: &str = r#"import json, os, time

def handle(event, context):
    with open(os.environ["OUT"], "a") as f:
        for r in event["Records"]:
            k = r["kinesis"]
            f.write(json.dumps({"t": time.time(), "seq": k["sequenceNumber"], "data": k["data"],
                                "arrival": k["approximateArrivalTimestamp"], "pk": k["partitionKey"],
                                "schema": k["kinesisSchemaVersion"], "id": r["eventID"], "source": r["eventSource"],
                                "name": r["eventName"], "version": r["eventVersion"], "identity": r["invokeIdentityArn"],
                                "region": r["awsRegion"], "arn": r["eventSourceARN"]}) + "\n")
    return {"batchItemFailures": []}
"#;

    /// Opens the engine on `dir` (the asynchronous queue is stopped so queued destination
    /// records stay readable in the table).
    fn open_engine(dir: &Path) -> (Arc<Functions>, Weak<MetaStore>) {
        engine_on(dir, MetaStore::open(&dir.join("meta.redb")).expect("meta store"))
    }

    /// Opens the engine again on `dir` once the previous one (whose store is `previous`)
    /// has closed its store.
    async fn reopen_engine(dir: &Path, previous: Weak<MetaStore>) -> (Arc<Functions>, Weak<MetaStore>) {
        wait_for("the engine to drop its store", || {
            previous.upgrade().is_none().then_some(())
        })
        .await;
        // The last owner may still be closing the database file.
        let meta = wait_for("the store to reopen", || MetaStore::open(&dir.join("meta.redb")).ok()).await;
        engine_on(dir, meta)
    }

    fn engine_on(dir: &Path, meta: MetaStore) -> (Arc<Functions>, Weak<MetaStore>) {
        let meta = Arc::new(meta);
        let weak = Arc::downgrade(&meta);
        let config = Config::new(dir.join("lambda"), "http://127.0.0.1:9".into());
        let f = Functions::open(
            config,
            meta,
            Arc::new(SystemClock),
            Arc::new(TestRoles),
            Arc::new(NoFetch),
        )
        .expect("open the engine");
        f.queue.stop();
        (f, weak)
    }

    async fn create_fn(f: &Functions, name: &str, env: BTreeMap<String, String>) {
        let zip = crate::code::zip_files(&[("handler.py", HANDLER.as_bytes(), 0o644)]).expect("zip");
        f.create_function(
            &scope(),
            name,
            FunctionInput {
                runtime: Some("python3.12".into()),
                handler: Some("handler.handle".into()),
                role: Some(ROLE.into()),
                timeout: Some(10),
                environment: Some(env),
                ..Default::default()
            },
            CodeInput::Zip(Bytes::from(zip)),
            false,
            BTreeMap::new(),
        )
        .await
        .expect("create function");
    }

    struct Harness {
        dir: tempfile::TempDir,
        f: Arc<Functions>,
        meta: Weak<MetaStore>,
        stream: Arc<FakeStream>,
        invoker: Arc<FakeInvoker>,
    }

    /// An engine with functions `f` and `dest`, the fake `invoker` and `stream`.
    async fn harness(stream: Arc<FakeStream>, invoker: Arc<FakeInvoker>) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let (f, meta) = open_engine(dir.path());
        create_fn(&f, "f", BTreeMap::new()).await;
        create_fn(&f, "dest", BTreeMap::new()).await;
        f.set_batch_invoker(invoker.clone());
        f.set_stream_reader(stream.clone());
        Harness {
            dir,
            f,
            meta,
            stream,
            invoker,
        }
    }

    fn mapping(position: &str) -> MappingInput {
        MappingInput {
            event_source_arn: Some(STREAM.into()),
            function_name: Some("f".into()),
            starting_position: Some(position.into()),
            ..Default::default()
        }
    }

    async fn create(f: &Functions, input: MappingInput) -> String {
        let v = f.create_mapping(&scope(), input).await.expect("create mapping");
        v["UUID"].as_str().expect("UUID").to_owned()
    }

    /// Polls `probe` until it gives a value (20 s at most).
    async fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = probe() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn position(f: &Functions, uuid: &str, shard: &str) -> Option<PositionDoc> {
        f.meta
            .get(T_POSITIONS, &position_key(uuid, shard))
            .expect("meta")
            .map(|raw| serde_json::from_slice(&raw).expect("position doc"))
    }

    fn checkpoint_of(f: &Functions, uuid: &str, shard: &str) -> Option<String> {
        position(f, uuid, shard).and_then(|p| p.sequence_number)
    }

    fn queued(f: &Functions) -> Vec<AsyncEvent> {
        f.meta
            .scan_prefix(T_ASYNC, "")
            .expect("meta")
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).expect("async event"))
            .collect()
    }

    fn invalid(r: Result<serde_json::Value>) -> String {
        match r {
            Err(Error::InvalidParameterValue(m)) => m,
            other => panic!("expected InvalidParameterValue, got {other:?}"),
        }
    }

    // ------------------------------------------------------------------ pure helpers

    #[test]
    fn esm_stream_arns() {
        assert_eq!(parse_stream_arn(STREAM), Some((REGION, ACCOUNT)));
        assert!(parse_stream_arn("arn:aws:kinesis:us-east-1:123456789012:stream/a.b_c-1").is_some());
        assert!(parse_stream_arn("arn:aws:sqs:us-east-1:123456789012:q").is_none());
        assert!(parse_stream_arn("arn:aws:kinesis:us-east-1:123:stream/s").is_none());
        assert!(parse_stream_arn("arn:aws:kinesis:us-east-1:123456789012:stream/s/consumer/c:1").is_none());
    }

    #[test]
    fn esm_item_failure_rules() {
        let records: Vec<StreamRecord> = ["1", "2", "3"]
            .iter()
            .map(|s| StreamRecord {
                sequence_number: (*s).to_owned(),
                partition_key: "k".into(),
                data: Bytes::new(),
                arrival_ms: 0,
            })
            .collect();
        let v = |p: &str| item_failures(p.as_bytes(), &records);
        assert!(matches!(v(r#"{"batchItemFailures":[]}"#), Verdict::Success));
        assert!(matches!(v(r#"{"batchItemFailures":null}"#), Verdict::Success));
        assert!(matches!(v("{}"), Verdict::Success));
        assert!(matches!(v("null"), Verdict::Success));
        assert!(matches!(
            v(r#"{"batchItemFailures":[{"itemIdentifier":"3"},{"itemIdentifier":"2"}]}"#),
            Verdict::FailedFrom(1)
        ));
        assert!(matches!(
            v(r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#),
            Verdict::Failure
        ));
        assert!(matches!(
            v(r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#),
            Verdict::Failure
        ));
        assert!(matches!(v(r#"{"batchItemFailures":[{"id":"2"}]}"#), Verdict::Failure));
        assert!(matches!(
            v(r#"{"batchItemFailures":[{"itemIdentifier":"9"}]}"#),
            Verdict::Failure
        ));
    }

    // ------------------------------------------------------------------ API

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn esm_crud_validation_and_conflicts() {
        let h = harness(FakeStream::new(&[(SHARD0, &[])]), FakeInvoker::ok()).await;
        let f = &h.f;
        let s = scope();

        let mut no_position = mapping("LATEST");
        no_position.starting_position = None;
        assert!(invalid(f.create_mapping(&s, no_position).await).contains("'startingPosition'"));
        for (input, needle) in [
            (
                MappingInput {
                    batch_size: Some(0),
                    ..mapping("LATEST")
                },
                "'batchSize'",
            ),
            (
                MappingInput {
                    batch_size: Some(10_001),
                    ..mapping("LATEST")
                },
                "less than or equal to 10000",
            ),
            (
                MappingInput {
                    maximum_batching_window_in_seconds: Some(301),
                    ..mapping("LATEST")
                },
                "'maximumBatchingWindowInSeconds'",
            ),
            (
                MappingInput {
                    maximum_retry_attempts: Some(-2),
                    ..mapping("LATEST")
                },
                "'maximumRetryAttempts'",
            ),
            (
                MappingInput {
                    maximum_record_age_in_seconds: Some(30),
                    ..mapping("LATEST")
                },
                "MaximumRecordAgeInSeconds",
            ),
            (
                MappingInput {
                    parallelization_factor: Some(11),
                    ..mapping("LATEST")
                },
                "'parallelizationFactor'",
            ),
            (
                MappingInput {
                    function_response_types: Some(vec!["Everything".into()]),
                    ..mapping("LATEST")
                },
                "'functionResponseTypes'",
            ),
            (
                MappingInput {
                    on_failure_destination: Some("arn:aws:sqs:us-east-1:123456789012:q".into()),
                    ..mapping("LATEST")
                },
                "destination",
            ),
            (mapping("SOMETIME"), "'startingPosition'"),
            (mapping("AT_TIMESTAMP"), "StartingPositionTimestamp"),
            (
                MappingInput {
                    starting_position_timestamp: Some(1.0),
                    ..mapping("LATEST")
                },
                "StartingPositionTimestamp",
            ),
            (
                MappingInput {
                    event_source_arn: Some("arn:aws:sqs:us-east-1:123456789012:q".into()),
                    ..mapping("LATEST")
                },
                "Unrecognized event source",
            ),
            (
                MappingInput {
                    event_source_arn: None,
                    ..mapping("LATEST")
                },
                "'eventSourceArn'",
            ),
            (
                MappingInput {
                    event_source_arn: Some("arn:aws:kinesis:us-east-1:123456789012:stream/nope".into()),
                    ..mapping("LATEST")
                },
                "Stream not found: arn:aws:kinesis:us-east-1:123456789012:stream/nope",
            ),
        ] {
            let m = invalid(f.create_mapping(&s, input).await);
            assert!(m.contains(needle), "{m:?} lacks {needle:?}");
        }
        match f
            .create_mapping(
                &s,
                MappingInput {
                    function_name: Some("nope".into()),
                    ..mapping("LATEST")
                },
            )
            .await
        {
            Err(Error::ResourceNotFound(m)) => assert_eq!(m, format!("Function not found: {}", fn_arn("nope"))),
            other => panic!("expected ResourceNotFound, got {other:?}"),
        }

        // Create, then Get.
        let before = now_ms() as f64 / 1000.0 - 1.0;
        let created = f
            .create_mapping(
                &s,
                MappingInput {
                    function_name: Some(fn_arn("f")),
                    ..mapping("LATEST")
                },
            )
            .await
            .expect("create");
        let uuid = created["UUID"].as_str().expect("UUID").to_owned();
        assert_eq!(uuid.len(), 36);
        assert_eq!(created["State"], "Creating");
        assert_eq!(created["StateTransitionReason"], "USER_INITIATED");
        assert_eq!(created["BatchSize"], 100);
        assert_eq!(created["MaximumBatchingWindowInSeconds"], 0);
        assert_eq!(created["ParallelizationFactor"], 1);
        assert_eq!(created["MaximumRetryAttempts"], -1);
        assert_eq!(created["MaximumRecordAgeInSeconds"], -1);
        assert_eq!(created["BisectBatchOnFunctionError"], false);
        assert_eq!(created["TumblingWindowInSeconds"], 0);
        assert_eq!(created["FunctionResponseTypes"], serde_json::json!([]));
        assert_eq!(created["DestinationConfig"], serde_json::json!({"OnFailure": {}}));
        assert_eq!(created["StartingPosition"], "LATEST");
        assert_eq!(created["EventSourceArn"], STREAM);
        assert_eq!(created["FunctionArn"], fn_arn("f"));
        assert_eq!(created["LastProcessingResult"], "No records processed");
        assert_eq!(
            created["EventSourceMappingArn"],
            format!("arn:aws:lambda:{REGION}:{ACCOUNT}:event-source-mapping:{uuid}")
        );
        assert!(created["LastModified"].as_f64().expect("LastModified") > before);
        let got = f.get_mapping(&s, &uuid).expect("get");
        assert_eq!(got["State"], "Enabled");
        assert_eq!(got["UUID"], uuid.as_str());

        // The same function and source again, in any name form.
        match f.create_mapping(&s, mapping("TRIM_HORIZON")).await {
            Err(Error::ResourceConflict(m)) => {
                assert!(
                    m.contains(&uuid) && m.contains(STREAM) && m.contains("already exists"),
                    "{m}"
                );
            }
            other => panic!("expected ResourceConflict, got {other:?}"),
        }

        // A disabled mapping of another function, with every setting.
        create_fn(f, "g", BTreeMap::new()).await;
        let g = f
            .create_mapping(
                &s,
                MappingInput {
                    function_name: Some(format!("{ACCOUNT}:function:g")),
                    enabled: Some(false),
                    batch_size: Some(7),
                    maximum_batching_window_in_seconds: Some(2),
                    maximum_retry_attempts: Some(3),
                    maximum_record_age_in_seconds: Some(600),
                    bisect_batch_on_function_error: Some(true),
                    parallelization_factor: Some(4),
                    function_response_types: Some(vec!["ReportBatchItemFailures".into()]),
                    on_failure_destination: Some(fn_arn("dest")),
                    tumbling_window_in_seconds: Some(30),
                    starting_position_timestamp: Some(1_700_000_000.5),
                    ..mapping("AT_TIMESTAMP")
                },
            )
            .await
            .expect("create g");
        let g_uuid = g["UUID"].as_str().expect("UUID").to_owned();
        let got = f.get_mapping(&s, &g_uuid).expect("get g");
        assert_eq!(got["State"], "Disabled");
        assert_eq!(got["FunctionArn"], fn_arn("g"));
        assert_eq!(got["BatchSize"], 7);
        assert_eq!(got["MaximumBatchingWindowInSeconds"], 2);
        assert_eq!(got["MaximumRetryAttempts"], 3);
        assert_eq!(got["MaximumRecordAgeInSeconds"], 600);
        assert_eq!(got["BisectBatchOnFunctionError"], true);
        assert_eq!(got["ParallelizationFactor"], 4);
        assert_eq!(got["TumblingWindowInSeconds"], 30);
        assert_eq!(
            got["FunctionResponseTypes"],
            serde_json::json!(["ReportBatchItemFailures"])
        );
        assert_eq!(
            got["DestinationConfig"],
            serde_json::json!({"OnFailure": {"Destination": fn_arn("dest")}})
        );
        assert_eq!(got["StartingPosition"], "AT_TIMESTAMP");
        assert_eq!(got["StartingPositionTimestamp"], 1_700_000_000.5);

        // List: filters and paging.
        let (all, next) = f.list_mappings(&s, None, None, None, 100).expect("list");
        assert_eq!((all.len(), next), (2, None));
        let (by_source, _) = f.list_mappings(&s, Some(STREAM), None, None, 100).expect("list");
        assert_eq!(by_source.len(), 2);
        let (other_source, _) = f
            .list_mappings(
                &s,
                Some("arn:aws:kinesis:us-east-1:123456789012:stream/x"),
                None,
                None,
                100,
            )
            .expect("list");
        assert!(other_source.is_empty());
        for name in ["f", fn_arn("f").as_str(), "123456789012:function:f"] {
            let (by_fn, _) = f.list_mappings(&s, None, Some(name), None, 100).expect("list");
            assert_eq!(by_fn.len(), 1, "{name}");
            assert_eq!(by_fn[0]["UUID"], uuid.as_str());
        }
        let (by_both, _) = f.list_mappings(&s, Some(STREAM), Some("g"), None, 100).expect("list");
        assert_eq!(by_both[0]["UUID"], g_uuid.as_str());
        let (page1, marker) = f.list_mappings(&s, None, None, None, 1).expect("page 1");
        let marker = marker.expect("a marker");
        let (page2, end) = f.list_mappings(&s, None, None, Some(&marker), 1).expect("page 2");
        assert_eq!((page1.len(), page2.len(), end), (1, 1, None));
        assert_ne!(page1[0]["UUID"], page2[0]["UUID"]);
        let elsewhere = Scope {
            account: ACCOUNT.into(),
            region: "eu-west-1".into(),
        };
        assert!(
            f.list_mappings(&elsewhere, None, None, None, 100)
                .expect("list")
                .0
                .is_empty()
        );
        assert!(matches!(
            f.get_mapping(&elsewhere, &uuid),
            Err(Error::ResourceNotFound(_))
        ));

        // Update.
        let updated = f
            .update_mapping(
                &s,
                &uuid,
                MappingInput {
                    batch_size: Some(5),
                    on_failure_destination: Some(fn_arn("dest")),
                    ..Default::default()
                },
            )
            .await
            .expect("update");
        assert_eq!(updated["State"], "Updating");
        assert_eq!(updated["BatchSize"], 5);
        assert_eq!(f.get_mapping(&s, &uuid).expect("get")["BatchSize"], 5);
        let disabling = f
            .update_mapping(
                &s,
                &uuid,
                MappingInput {
                    enabled: Some(false),
                    on_failure_destination: Some(String::new()),
                    ..Default::default()
                },
            )
            .await
            .expect("disable");
        assert_eq!(disabling["State"], "Disabling");
        let got = f.get_mapping(&s, &uuid).expect("get");
        assert_eq!(got["State"], "Disabled");
        assert_eq!(got["DestinationConfig"], serde_json::json!({"OnFailure": {}}));
        let enabling = f
            .update_mapping(
                &s,
                &uuid,
                MappingInput {
                    enabled: Some(true),
                    ..Default::default()
                },
            )
            .await
            .expect("enable");
        assert_eq!(enabling["State"], "Enabling");
        assert_eq!(f.get_mapping(&s, &uuid).expect("get")["State"], "Enabled");
        assert!(matches!(
            f.update_mapping(
                &s,
                &uuid,
                MappingInput {
                    function_name: Some("g".into()),
                    ..Default::default()
                }
            )
            .await,
            Err(Error::ResourceConflict(_))
        ));
        assert!(matches!(
            f.update_mapping(
                &s,
                &uuid,
                MappingInput {
                    batch_size: Some(0),
                    ..Default::default()
                }
            )
            .await,
            Err(Error::InvalidParameterValue(_))
        ));
        assert!(matches!(
            f.update_mapping(&s, "00000000-0000-0000-0000-000000000000", MappingInput::default())
                .await,
            Err(Error::ResourceNotFound(_))
        ));

        // Delete.
        let deleted = f.delete_mapping(&s, &uuid).await.expect("delete");
        assert_eq!(deleted["State"], "Deleting");
        assert_eq!(deleted["UUID"], uuid.as_str());
        assert!(matches!(f.get_mapping(&s, &uuid), Err(Error::ResourceNotFound(_))));
        assert!(matches!(
            f.delete_mapping(&s, &uuid).await,
            Err(Error::ResourceNotFound(_))
        ));
        assert_eq!(f.list_mappings(&s, None, None, None, 100).expect("list").0.len(), 1);
        // Now the source and function are free again.
        create(f, mapping("TRIM_HORIZON")).await;
        assert!(lock(&h.stream.roles).iter().all(|r| r == ROLE));
    }

    // ------------------------------------------------------------------ polling

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn esm_batches_by_size_in_order_with_aws_event_shape() {
        let stream = FakeStream::new(&[(SHARD0, &[])]);
        let seqs: Vec<String> = (0..250).map(|i| stream.put(SHARD0, &format!("r{i}"))).collect();
        let h = harness(stream, FakeInvoker::ok()).await;
        let uuid = create(&h.f, mapping("TRIM_HORIZON")).await;
        wait_for("250 records", || {
            (h.invoker.calls().iter().map(|c| c.records().len()).sum::<usize>() >= 250).then_some(())
        })
        .await;
        let calls = h.invoker.calls();
        assert_eq!(
            calls.iter().map(|c| c.records().len()).collect::<Vec<_>>(),
            vec![100, 100, 50]
        );
        let delivered: Vec<String> = calls.iter().flat_map(Call::seqs).collect();
        assert_eq!(delivered, seqs);
        assert!(calls.iter().all(|c| c.arn == fn_arn("f")));
        wait_for("the checkpoint", || {
            (checkpoint_of(&h.f, &uuid, SHARD0).as_deref() == Some(seqs[249].as_str())).then_some(())
        })
        .await;
        assert_eq!(
            h.f.get_mapping(&scope(), &uuid).expect("get")["LastProcessingResult"],
            "OK"
        );
        assert!(lock(&h.stream.roles).iter().all(|r| r == ROLE));

        // The event, as AWS shapes it.
        let first = &calls[0].records()[0];
        let record = lock(&h.stream.shards)[0].records[0].clone();
        assert_eq!(
            *first,
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "pk-r0",
                    "sequenceNumber": seqs[0],
                    "data": "cjA=",
                    "approximateArrivalTimestamp": record.arrival_ms as f64 / 1000.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{SHARD0}:{}", seqs[0]),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": ROLE,
                "awsRegion": REGION,
                "eventSourceARN": STREAM,
            })
        );
        assert_eq!(calls[0].event.as_object().expect("object").len(), 1, "only Records");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn esm_batching_window_gathers_records() {
        let h = harness(FakeStream::new(&[(SHARD0, &[])]), FakeInvoker::ok()).await;
        create(
            &h.f,
            MappingInput {
                maximum_batching_window_in_seconds: Some(1),
                batch_size: Some(10),
                ..mapping("TRIM_HORIZON")
            },
        )
        .await;
        let put_at = Instant::now();
        h.stream.put(SHARD0, "a");
        // A second record well inside the window.
        tokio::time::sleep(Duration::from_millis(300)).await;
        h.stream.put(SHARD0, "b");
        let call = wait_for("a batch", || h.invoker.calls().first().cloned()).await;
        assert_eq!(call.datas(), vec!["a", "b"]);
        assert!(
            call.at.duration_since(put_at) >= Duration::from_millis(700),
            "invoked before the window closed: {:?}",
            call.at.duration_since(put_at)
        );
        // A full batch does not wait for the window.
        let put_at = Instant::now();
        for i in 0..10 {
            h.stream.put(SHARD0, &format!("x{i}"));
        }
        let call = wait_for("a full batch", || h.invoker.calls().get(1).cloned()).await;
        assert_eq!(call.datas().len(), 10);
        assert!(call.at.duration_since(put_at) < Duration::from_millis(900));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn esm_orders_records_per_shard() {
        let h = harness(FakeStream::new(&[(SHARD0, &[]), (SHARD1, &[])]), FakeInvoker::ok()).await;
        create(
            &h.f,
            MappingInput {
                batch_size: Some(3),
                ..mapping("LATEST")
            },
        )
        .await;
        let mut expected: HashMap<String, Vec<String>> = HashMap::new();
        for i in 0..40 {
            let shard = if i % 3 == 0 { SHARD1 } else { SHARD0 };
            let seq = h.stream.put(shard, &format!("r{i}"));
            expected.entry(shard.to_owned()).or_default().push(seq);
            if i % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        wait_for("40 records", || {
            (h.invoker.calls().iter().map(|c| c.records().len()).sum::<usize>() >= 40).then_some(())
        })
        .await;
        let mut seen: HashMap<String, Vec<String>> = HashMap::new();
        for c in h.invoker.calls() {
            assert!(c.records().len() <= 3);
            let shard = c.shard();
            for r in c.records() {
                assert!(
                    r["eventID"].as_str().expect("id").starts_with(&format!("{shard}:")),
                    "one shard per batch"
                );
            }
            seen.entry(shard).or_default().extend(c.seqs());
        }
        assert_eq!(seen, expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn esm_retries_a_failed_batch_then_succeeds() {
        let invoker = FakeInvoker::new(|_, n| Ok(if n < 2 { unhandled() } else { outcome("{}", None) }));
        let h = harness(FakeStream::new(&[(SHARD0, &[])]), invoker).await;
        let uuid = create(&h.f, mapping("TRIM_HORIZON")).await;
        let seqs: Vec<String> = ["a", "b", "c"].iter().map(|d| h.stream.put(SHARD0, d)).collect();
        wait_for("the checkpoint", || {
            (checkpoint_of(&h.f, &uuid, SHARD0).as_deref() == Some(seqs[2].as_str())).then_some(())
        })
        .await;
        let calls = h.invoker.calls();
        // The first poll may have caught only part of the three puts; whatever the first
        // batch held was retried unchanged until it succeeded.
        assert!(calls.len() >= 3);
        assert_eq!(calls[0].seqs(), calls[1].seqs());
        assert_eq!(calls[1].seqs(), calls[2].seqs());
        let gaps = (calls[1].at - calls[0].at, calls[2].at - calls[1].at);
        assert!(
            gaps.0 >= Duration::from_millis(190) && gaps.1 >= Duration::from_millis(390),
            "{gaps:?}"
        );
        let delivered: Vec<String> = calls[2..].iter().flat_map(Call::seqs).collect();
        assert_eq!(delivered, seqs);
        assert_eq!(
            h.f.get_mapping(&scope(), &uuid).expect("get")["LastProcessingResult"],
            "OK"
        );
        assert!(queued(&h.f).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn esm_skips_a_batch_after_its_retries_and_reports_it() {
        let invoker = FakeInvoker::new(|c, _| {
            Ok(if c.datas().iter().any(|d| d == "bad") {
                unhandled()
            } else {
                outcome("null", None)
            })
        });
        let h = harness(FakeStream::new(&[(SHARD0, &[])]), invoker).await;
        let bad = h.stream.put(SHARD0, "bad");
        let good = h.stream.put(SHARD0, "good");
        let uuid = create(
            &h.f,
            MappingInput {
                batch_size: Some(1),
                maximum_retry_attempts: Some(2),
                on_failure_destination: Some(fn_arn("dest")),
                ..mapping("TRIM_HORIZON")
            },
        )
        .await;
        wait_for("the good record", || {
            h.invoker.calls().iter().any(|c| c.datas() == ["good"]).then_some(())
        })
        .await;
        assert_eq!(
            h.invoker.datas(),
            vec![vec!["bad"], vec!["bad"], vec!["bad"], vec!["good"]]
        );
        wait_for("the checkpoint", || {
            (checkpoint_of(&h.f, &uuid, SHARD0).as_deref() == Some(good.as_str())).then_some(())
        })
        .await;
        let events = queued(&h.f);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].function_arn, fn_arn("dest"));
        let record: serde_json::Value = serde_json::from_str(&events[0].payload).expect("record");
        assert_eq!(record["version"], "1.0");
        assert!(record["timestamp"].as_str().expect("timestamp").ends_with('Z'));
        assert_eq!(record["requestContext"]["functionArn"], fn_arn("f"));
        assert_eq!(record["requestContext"]["condition"], "RetryAttemptsExhausted");
        assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(record["requestContext"]["requestId"].as_str().expect("id").len(), 36);
        assert_eq!(
            record["responseContext"],
            serde_json::json!({"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"})
        );
        let info = &record["KinesisBatchInfo"];
        assert_eq!(info["shardId"], SHARD0);
        assert_eq!(info["startSequenceNumber"], bad.as_str());
        assert_eq!(info["endSequenceNumber"], bad.as_str());
        assert_eq!(info["batchSize"], 1);
        assert_eq!(info["streamArn"], STREAM);
        assert!(
            info["approximateArrivalOfFirstRecord"]
                .as_str()
                .expect("time")
                .ends_with('Z')
        );
        assert_eq!(
            info["approximateArrivalOfFirstRecord"],
            info["approximateArrivalOfLastRecord"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn esm_bisects_a_failing_batch() {
        let invoker = FakeInvoker::new(|c, _| {
            Ok(if c.datas().iter().any(|d| d == "bad") {
                unhandled()
            } else {
                outcome("null", None)
            })
        });
        let stream = FakeStream::new(&[(SHARD0, &[])]);
        let seqs: Vec<String> = ["r0", "r1", "bad", "r3"]
            .iter()
            .map(|d| stream.put(SHARD0, d))
            .collect();
        let h = harness(stream, invoker).await;
        let uuid = create(
            &h.f,
            MappingInput {
                batch_size: Some(4),
                bisect_batch_on_function_error: Some(true),
                maximum_retry_attempts: Some(0),
                ..mapping("TRIM_HORIZON")
            },
        )
        .await;
        wait_for("the checkpoint", || {
            (checkpoint_of(&h.f, &uuid, SHARD0).as_deref() == Some(seqs[3].as_str())).then_some(())
        })
        .await;
        assert_eq!(
            h.invoker.datas(),
            vec![
                vec!["r0", "r1", "bad", "r3"],
                vec!["r0", "r1"],
                vec!["bad", "r3"],
                vec!["bad"],
                vec!["r3"],
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn esm_report_batch_item_failures_retries_from_the_lowest_failure() {
        let stream = FakeStream::new(&[(SHARD0, &[])]);
        let seqs: Vec<String> = (0..5).map(|i| stream.put(SHARD0, &format!("r{i}"))).collect();
        let (s2, s3) = (seqs[2].clone(), seqs[3].clone());
        let invoker = FakeInvoker::new(move |_, n| {
            Ok(match n {
                0 => outcome(
                    &format!(r#"{{"batchItemFailures":[{{"itemIdentifier":"{s3}"}},{{"itemIdentifier":"{s2}"}}]}}"#),
                    None,
                ),
                // An identifier that is not in the batch fails all of it.
                1 => outcome(r#"{"batchItemFailures":[{"itemIdentifier":"42"}]}"#, None),
                _ => outcome(r#"{"batchItemFailures":[]}"#, None),
            })
        });
        let h = harness(stream, invoker).await;
        let uuid = create(
            &h.f,
            MappingInput {
                batch_size: Some(5),
                function_response_types: Some(vec!["ReportBatchItemFailures".into()]),
                ..mapping("TRIM_HORIZON")
            },
        )
        .await;
        wait_for("the checkpoint", || {
            (checkpoint_of(&h.f, &uuid, SHARD0).as_deref() == Some(seqs[4].as_str())).then_some(())
        })
        .await;
        assert_eq!(
            h.invoker.datas(),
            vec![
                vec!["r0", "r1", "r2", "r3", "r4"],
                vec!["r2", "r3", "r4"],
                vec!["r2", "r3", "r4"],
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn esm_discards_records_older_than_the_maximum_age() {
        let stream = FakeStream::new(&[(SHARD0, &[])]);
        let old = now_ms() - 120_000;
        let first = stream.put_at(SHARD0, "old1", old);
        let second = stream.put_at(SHARD0, "old2", old + 1);
        stream.put(SHARD0, "new");
        let h = harness(stream, FakeInvoker::ok()).await;
        create(
            &h.f,
            MappingInput {
                maximum_record_age_in_seconds: Some(60),
                on_failure_destination: Some(fn_arn("dest")),
                ..mapping("TRIM_HORIZON")
            },
        )
        .await;
        wait_for("the new record", || (!h.invoker.calls().is_empty()).then_some(())).await;
        assert_eq!(h.invoker.datas(), vec![vec!["new"]]);
        let events = queued(&h.f);
        assert_eq!(events.len(), 1);
        let record: serde_json::Value = serde_json::from_str(&events[0].payload).expect("record");
        assert_eq!(record["requestContext"]["condition"], "RecordAgeExceeded");
        assert_eq!(record["requestContext"]["approximateInvokeCount"], 0);
        assert!(record.get("responseContext").is_none());
        assert_eq!(record["KinesisBatchInfo"]["batchSize"], 2);
        assert_eq!(record["KinesisBatchInfo"]["startSequenceNumber"], first.as_str());
        assert_eq!(record["KinesisBatchInfo"]["endSequenceNumber"], second.as_str());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn esm_checkpoint_survives_reopening_the_engine() {
        let stream = FakeStream::new(&[(SHARD0, &[])]);
        let seqs: Vec<String> = ["a", "b", "c"].iter().map(|d| stream.put(SHARD0, d)).collect();
        let Harness {
            dir,
            f,
            meta,
            stream,
            invoker,
        } = harness(stream, FakeInvoker::ok()).await;
        let uuid = create(&f, mapping("TRIM_HORIZON")).await;
        wait_for("the checkpoint", || {
            (checkpoint_of(&f, &uuid, SHARD0).as_deref() == Some(seqs[2].as_str())).then_some(())
        })
        .await;
        assert_eq!(invoker.calls().iter().flat_map(Call::seqs).collect::<Vec<_>>(), seqs);
        f.shutdown().await;
        drop(f);

        let later: Vec<String> = ["d", "e"].iter().map(|d| stream.put(SHARD0, d)).collect();
        let (f, _meta) = reopen_engine(dir.path(), meta).await;
        let invoker = FakeInvoker::ok();
        f.set_batch_invoker(invoker.clone());
        f.set_stream_reader(stream.clone());
        assert_eq!(f.get_mapping(&scope(), &uuid).expect("persisted")["State"], "Enabled");
        wait_for("the new records", || {
            (checkpoint_of(&f, &uuid, SHARD0).as_deref() == Some(later[1].as_str())).then_some(())
        })
        .await;
        assert_eq!(invoker.calls().iter().flat_map(Call::seqs).collect::<Vec<_>>(), later);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn esm_reads_children_after_their_parents() {
        // shard0 split into shard1 and shard2, which merged into shard3.
        let stream = FakeStream::new(&[
            (SHARD0, &[]),
            (SHARD1, &[SHARD0]),
            (SHARD2, &[SHARD0]),
            (SHARD3, &[SHARD1, SHARD2]),
        ]);
        stream.put(SHARD0, "p0");
        stream.put(SHARD0, "p1");
        stream.close(SHARD0);
        stream.put(SHARD1, "c1");
        stream.close(SHARD1);
        stream.put(SHARD2, "c2");
        stream.close(SHARD2);
        stream.put(SHARD3, "m");
        let h = harness(stream, FakeInvoker::ok()).await;
        let uuid = create(&h.f, mapping("TRIM_HORIZON")).await;
        wait_for("every record", || {
            (h.invoker.calls().iter().map(|c| c.records().len()).sum::<usize>() >= 5).then_some(())
        })
        .await;
        let order: Vec<String> = h.invoker.datas().into_iter().flatten().collect();
        let at = |d: &str| order.iter().position(|x| x == d).expect("delivered");
        assert_eq!(order.len(), 5);
        assert!(
            at("p0") < at("p1") && at("p1") < at("c1") && at("p1") < at("c2"),
            "{order:?}"
        );
        assert!(at("c1") < at("m") && at("c2") < at("m"), "{order:?}");
        for shard in [SHARD0, SHARD1, SHARD2] {
            let shard = shard.to_owned();
            wait_for("the done marker", || {
                position(&h.f, &uuid, &shard).is_some_and(|p| p.done).then_some(())
            })
            .await;
        }
        assert!(position(&h.f, &uuid, SHARD3).is_some_and(|p| !p.done));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn esm_latest_starts_at_creation_and_children_at_trim_horizon() {
        let stream = FakeStream::new(&[(SHARD0, &[])]);
        stream.put_at(SHARD0, "before", now_ms() - 10_000);
        let h = harness(stream, FakeInvoker::ok()).await;
        let uuid = create(&h.f, mapping("LATEST")).await;
        // Written right after CreateEventSourceMapping returned: delivered.
        h.stream.put(SHARD0, "after");
        wait_for("the record after creation", || {
            (!h.invoker.calls().is_empty()).then_some(())
        })
        .await;
        // A split: the child's first record (its clock behind ours) is still delivered,
        // because a child of a shard the mapping read starts at TRIM_HORIZON.
        h.stream.close(SHARD0);
        h.stream.add_shard(SHARD1, &[SHARD0]);
        h.stream.put_at(SHARD1, "child", now_ms() - 60_000);
        wait_for("the child's record", || {
            (h.invoker.calls().iter().map(|c| c.records().len()).sum::<usize>() >= 2).then_some(())
        })
        .await;
        assert_eq!(h.invoker.datas(), vec![vec!["after"], vec!["child"]]);
        assert!(position(&h.f, &uuid, SHARD0).is_some_and(|p| p.done && !p.ended_at_start));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn esm_delete_function_deletes_its_mappings() {
        let h = harness(FakeStream::new(&[(SHARD0, &[])]), FakeInvoker::ok()).await;
        let uuid = create(&h.f, mapping("TRIM_HORIZON")).await;
        h.stream.put(SHARD0, "a");
        wait_for("the checkpoint", || checkpoint_of(&h.f, &uuid, SHARD0)).await;
        h.f.delete_function(&scope(), "f", None).await.expect("delete function");
        assert!(
            h.f.list_mappings(&scope(), None, None, None, 100)
                .expect("list")
                .0
                .is_empty()
        );
        assert!(position(&h.f, &uuid, SHARD0).is_none());
        h.stream.put(SHARD0, "b");
        // Nothing polls any more: ten poll intervals later there is still one call.
        tokio::time::sleep(POLL_INTERVAL * 10).await;
        assert_eq!(h.invoker.datas(), vec![vec!["a"]]);
        assert!(h.meta.upgrade().is_some());
        let _ = &h.dir;
    }

    /// Records each call and holds it until the test lets it through.
    struct GateInvoker {
        calls: Mutex<Vec<Vec<String>>>,
        gate: tokio::sync::Semaphore,
    }

    #[async_trait::async_trait]
    impl BatchInvoker for GateInvoker {
        async fn invoke(
            &self,
            _functions: &Functions,
            _target: &Resolved,
            _request_id: &str,
            payload: Bytes,
        ) -> Result<InvokeOutcome> {
            let call = Call {
                arn: String::new(),
                event: serde_json::from_slice(&payload).expect("event JSON"),
                at: Instant::now(),
            };
            lock(&self.calls).push(call.datas());
            self.gate.acquire().await.expect("gate").forget();
            Ok(outcome("null", None))
        }
    }

    fn gate() -> Arc<GateInvoker> {
        Arc::new(GateInvoker {
            calls: Mutex::new(Vec::new()),
            gate: tokio::sync::Semaphore::new(0),
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn esm_batch_in_flight_at_shutdown_is_delivered_again() {
        let stream = FakeStream::new(&[(SHARD0, &[])]);
        stream.put(SHARD0, "a");
        stream.put(SHARD0, "b");
        let dir = tempfile::tempdir().expect("tempdir");
        let (f, meta) = open_engine(dir.path());
        create_fn(&f, "f", BTreeMap::new()).await;
        let held = gate();
        f.set_batch_invoker(held.clone());
        f.set_stream_reader(stream.clone());
        let uuid = create(&f, mapping("TRIM_HORIZON")).await;
        wait_for("the invocation", || (!lock(&held.calls).is_empty()).then_some(())).await;
        // The engine stops while the function runs; the invocation then succeeds, but its
        // checkpoint is never written: the batch comes again after the restart.
        f.shutdown().await;
        held.gate.add_permits(1);
        drop(f);
        let (f, _meta) = reopen_engine(dir.path(), meta).await;
        let again = FakeInvoker::ok();
        f.set_batch_invoker(again.clone());
        f.set_stream_reader(stream.clone());
        wait_for("the redelivery", || (!again.calls().is_empty()).then_some(())).await;
        assert_eq!(*lock(&held.calls), vec![vec!["a", "b"]]);
        assert_eq!(again.datas(), vec![vec!["a", "b"]]);
        wait_for("the checkpoint", || checkpoint_of(&f, &uuid, SHARD0)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn esm_disable_and_enable_during_a_batch_do_not_overlap() {
        let stream = FakeStream::new(&[(SHARD0, &[])]);
        let a = stream.put(SHARD0, "a");
        let held = gate();
        let h = harness(stream, FakeInvoker::ok()).await;
        h.f.set_batch_invoker(held.clone());
        let uuid = create(&h.f, mapping("TRIM_HORIZON")).await;
        wait_for("the invocation", || (!lock(&held.calls).is_empty()).then_some(())).await;
        let off = MappingInput {
            enabled: Some(false),
            ..Default::default()
        };
        h.f.update_mapping(&scope(), &uuid, off).await.expect("disable");
        let on = MappingInput {
            enabled: Some(true),
            ..Default::default()
        };
        h.f.update_mapping(&scope(), &uuid, on).await.expect("enable");
        h.stream.put(SHARD0, "b");
        // The first poller finishes its batch (and checkpoints it) before the next starts.
        held.gate.add_permits(10);
        wait_for("b", || (lock(&held.calls).len() >= 2).then_some(())).await;
        assert_eq!(*lock(&held.calls), vec![vec!["a"], vec!["b"]]);
        assert!(checkpoint_of(&h.f, &uuid, SHARD0) >= Some(a));
    }

    // ------------------------------------------------------------------ the real host

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn esm_python_handler_end_to_end() {
        let have_python = std::process::Command::new("python3")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !have_python {
            eprintln!("skipped: no python3");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.jsonl");
        let (f, _meta) = open_engine(dir.path());
        create_fn(
            &f,
            "py",
            BTreeMap::from([("OUT".to_owned(), out.to_string_lossy().into_owned())]),
        )
        .await;
        let stream = FakeStream::new(&[(SHARD0, &[])]);
        stream.put_at(SHARD0, "before", now_ms() - 10_000);
        f.set_stream_reader(stream.clone());
        let uuid = create(
            &f,
            MappingInput {
                function_name: Some("py".into()),
                ..mapping("LATEST")
            },
        )
        .await;
        let lines = |n: usize| -> Option<Vec<serde_json::Value>> {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            let v: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("line")).collect();
            (v.len() >= n).then_some(v)
        };
        let mut seqs = Vec::new();
        for i in 0..12 {
            seqs.push(stream.put(SHARD0, &format!("hello {i}")));
            wait_for("the handler", || lines(i + 1)).await;
        }
        let got = lines(12).expect("lines");
        assert_eq!(
            got.iter()
                .map(|l| l["seq"].as_str().expect("seq").to_owned())
                .collect::<Vec<_>>(),
            seqs
        );
        let first = &got[0];
        assert_eq!(first["data"], "aGVsbG8gMA==");
        assert_eq!(first["pk"], "pk-hello 0");
        assert_eq!(first["schema"], "1.0");
        assert_eq!(first["id"], format!("{SHARD0}:{}", seqs[0]));
        assert_eq!(first["source"], "aws:kinesis");
        assert_eq!(first["name"], "aws:kinesis:record");
        assert_eq!(first["version"], "1.0");
        assert_eq!(first["identity"], ROLE);
        assert_eq!(first["region"], REGION);
        assert_eq!(first["arn"], STREAM);
        // Put-to-handler latency (the first includes the interpreter's start).
        let mut latencies: Vec<f64> = got
            .iter()
            .map(|l| l["t"].as_f64().expect("t") - l["arrival"].as_f64().expect("arrival"))
            .collect();
        latencies.sort_by(f64::total_cmp);
        let p50 = latencies[latencies.len() / 2];
        eprintln!(
            "put → handler latency over {}: p50 {:.0} ms, max {:.0} ms",
            latencies.len(),
            p50 * 1000.0,
            latencies[latencies.len() - 1] * 1000.0
        );
        assert!(p50 < 1.0, "p50 {p50} s");
        assert_eq!(
            f.get_mapping(&scope(), &uuid).expect("get")["LastProcessingResult"],
            "OK"
        );
        f.shutdown().await;
    }
}
