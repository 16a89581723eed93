//! One background worker per delivery stream: read the source, buffer, flush objects with
//! the intent → put → checkpoint protocol (see the crate docs for the recovery rule).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use kd_storage::MetaOp;
use tokio::sync::{mpsc, oneshot};

use crate::keys::{self, KeyContext, TimeZone};
use crate::model::{
    Compression, FailureDescription, FormatConversion, KinesisRecordMetadata, LambdaProcessor, MAX_LAMBDA_EVENT_BYTES,
    PortError, Source, TransformInputRecord, TransformRequest, TransformResponse, TransformResult, lambda_error_code,
};
use crate::store::{
    CheckpointDoc, ERROR_PARTITION, FORMAT_ERROR_PARTITION, FORMAT_VERSION, FailedDoc, IntentDoc, StreamDoc,
    T_CHECKPOINTS, T_INTENTS, T_STREAMS, UnitCheckpoint, is_error_partition, opt_pos_cmp, pos_cmp, to_json,
};
use crate::{Error, Shared, StreamHandle, compress, convert};

/// The source unit of DirectPut streams.
pub(crate) const LOG_UNIT: &str = "log";
/// At most this many partitions buffer at once (dynamic partitioning).
pub(crate) const MAX_PARTITIONS: usize = 500;
const READ_RECORDS: usize = 1000;
const READ_BYTES: usize = 4 * 1024 * 1024;
const PARTITION_ERROR_CODE: &str = "DynamicPartitioning.MetadataExtractionFailed";
const ERROR_OUTPUT_TYPE: &str = "processing-failed";
/// Where records go whose S3 delivery failed for longer than the retry window. The
/// reference (§2.4) lists no S3-specific error-output-type (`processing-failed`,
/// `AmazonOpenSearchService-failed`, `splunk-failed`, `format-conversion-failed`,
/// `http-endpoint-failed`), so this uses `processing-failed`, as the error records of the
/// other S3-destination failures do.
const DELIVERY_FAILED_OUTPUT_TYPE: &str = "processing-failed";
const FORMAT_ERROR_OUTPUT_TYPE: &str = "format-conversion-failed";
/// The error-record member naming the function. AWS documents `lambdaArn` (and so does the
/// reference, §2.5); objects captured from AWS have been reported with `lambdaARN`.
const LAMBDA_ARN_FIELD: &str = "lambdaArn";
/// `errorCode` of a record the function answered with `ProcessingFailed` (as captured from AWS).
const PROCESSING_FAILED_CODE: &str = "Lambda.ProcessingFailedStatus";
const PROCESSING_FAILED_MESSAGE: &str = "ProcessingFailed status set for record";
const MISSING_ID_CODE: &str = "Lambda.MissingRecordId";
const MISSING_ID_MESSAGE: &str =
    "One or more record IDs were not returned. Ensure that the Lambda function returns all received record IDs.";
const DUPLICATED_ID_CODE: &str = "Lambda.DuplicatedRecordId";
const DUPLICATED_ID_MESSAGE: &str = "Multiple records were returned with the same record ID. Ensure that the Lambda function returns unique record IDs for each record.";
/// Longest pause between retries of a failed invocation.
const MAX_TRANSFORM_BACKOFF: Duration = Duration::from_secs(10);
/// The invocation event's bytes besides its records (ids, ARNs, region, JSON syntax).
const EVENT_ENVELOPE_BYTES: usize = 1024;

/// Commands to a worker.
pub(crate) enum Cmd {
    /// Read what is available and deliver every open buffer (one attempt each), then reply.
    Flush(oneshot::Sender<()>),
}

/// A record read from a source unit.
struct Item {
    unit: String,
    prev: Option<String>,
    pos: String,
    data: Bytes,
    arrival_ms: i64,
    /// The source record's partition key (stream sources; empty for DirectPut).
    partition_key: String,
}

/// Why a record goes to an error output, as its error-record line says.
#[derive(Debug, Clone)]
struct RecError {
    /// `errorCode` (`None`: the error partition's own code).
    code: Option<String>,
    message: String,
    /// `attemptsMade`.
    attempts: u32,
    /// `attemptEndingTimestamp` (`None`: when the flush was decided).
    ending_ms: Option<i64>,
    /// The `lambdaArn` of a record the Lambda processor failed.
    lambda_arn: Option<String>,
}

impl RecError {
    fn plain(message: String) -> RecError {
        RecError {
            code: None,
            message,
            attempts: 1,
            ending_ms: None,
            lambda_arn: None,
        }
    }
}

/// What the Lambda processor made of one record.
#[derive(Debug, Clone)]
enum Outcome {
    /// `Ok`: deliver `data`.
    Ok {
        data: Bytes,
        keys: BTreeMap<String, String>,
    },
    /// `Dropped`: processed, nothing to deliver.
    Dropped,
    /// The record goes to the error output (`processing-failed`) with its original data.
    Failed(RecError),
}

/// Where a record goes: the buffer of partition `pid` (records dropped by the function go
/// nowhere: `None` from [`route`]).
struct Routed {
    pid: String,
    keys: Option<BTreeMap<String, String>>,
    lambda_keys: Option<BTreeMap<String, String>>,
    data: Bytes,
    error: Option<RecError>,
}

/// How records are routed to partitions: the configuration in force for the open buffers.
/// With a Lambda processor, buffers flush as one group (see [`Worker::flush_group`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Routing {
    queries: Option<BTreeMap<String, String>>,
    conversion: Option<FormatConversion>,
    processor: Option<LambdaProcessor>,
    /// The `!{partitionKeyFromLambda:…}` keys of the prefix (dynamic partitioning only).
    lambda_key_names: Vec<String>,
}

impl Routing {
    fn of(doc: &StreamDoc) -> Routing {
        let dest = &doc.destination;
        let processor = dest.processor.clone();
        let queries = dest.dynamic_partitioning.as_ref().map(|d| d.queries.clone());
        let (queries, lambda_key_names) = if processor.is_some() {
            // Dynamic partitioning by Lambda keys alone has no queries to run.
            let names = match &dest.dynamic_partitioning {
                Some(_) => keys::lambda_keys(dest.prefix.as_deref().unwrap_or_default()),
                None => Vec::new(),
            };
            (queries.filter(|q| !q.is_empty()), names)
        } else {
            (queries, Vec::new())
        };
        Routing {
            queries,
            conversion: dest.format_conversion.clone(),
            processor,
            lambda_key_names,
        }
    }

    /// The routing a group intent was made with.
    fn of_intent(intent: &IntentDoc) -> Routing {
        Routing {
            queries: intent.queries.clone().filter(|q| !q.is_empty()),
            conversion: intent.conversion.clone(),
            processor: intent.processor.clone(),
            lambda_key_names: intent.lambda_key_names.clone(),
        }
    }

    /// Whether buffers flush as one group (a Lambda processor is in force).
    fn grouped(&self) -> bool {
        self.processor.is_some()
    }
}

/// Per-record metadata of a buffer (the payload lives in the buffer's one allocation).
#[derive(Clone, Copy)]
struct BufRecord {
    /// End offset of the record's payload in [`Buffer::data`] (it starts where the previous
    /// record ends).
    end: usize,
    arrival_ms: i64,
}

/// A buffer's payload bytes: ONE contiguous allocation while it fills, then frozen (shared,
/// no copy) once its flush intent is recorded, so renders and retries do not copy it.
enum Payload {
    Open(Vec<u8>),
    Sealed(Bytes),
}

impl Payload {
    fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Open(v) => v,
            Payload::Sealed(b) => b,
        }
    }
}

struct Buffer {
    id: String,
    keys: Option<BTreeMap<String, String>>,
    /// The Lambda partition keys of the partition (`!{partitionKeyFromLambda:…}`).
    lambda_keys: Option<BTreeMap<String, String>>,
    /// Every record's payload, back to back (boundaries in `records`). Pre-sized from the
    /// size hint and never grown past it by doubling: one large allocation (mmapped by the
    /// allocator, returned to the OS when freed) instead of one small allocation per record.
    data: Payload,
    /// The size hint (bytes): capacity grows up to it, then only exactly as needed.
    hint: usize,
    records: Vec<BufRecord>,
    /// Errors of records bound for an error output: (record index, error).
    errors: Vec<(usize, RecError)>,
    bytes: usize,
    first_buffered_ms: i64,
    oldest_arrival_ms: i64,
    /// Unit → (after exclusive, to inclusive).
    ranges: BTreeMap<String, (Option<String>, String)>,
    /// Set once the flush intent is recorded: the buffer is then closed and retried as is.
    intent: Option<IntentDoc>,
    /// When the current run of failed deliveries began (the retry window's start).
    failing_since_ms: Option<i64>,
    /// Delivery attempts made so far.
    attempts: u32,
    /// Group flushes: the object is written (the group commits once all are).
    delivered: bool,
}

/// Initial capacity of a buffer among several (dynamic partitioning): most partitions stay
/// small, so they start here and double up to the hint.
const PARTITION_INITIAL_CAPACITY: usize = 1024 * 1024;

impl Buffer {
    /// `hint`: the flush size; `presize`: reserve all of it at once (the single buffer of a
    /// stream without dynamic partitioning).
    fn new(id: String, keys: Option<BTreeMap<String, String>>, now: i64, hint: usize, presize: bool) -> Buffer {
        let initial = if presize {
            hint
        } else {
            hint.min(PARTITION_INITIAL_CAPACITY)
        };
        Buffer {
            id,
            keys,
            lambda_keys: None,
            data: Payload::Open(Vec::with_capacity(initial)),
            hint,
            records: Vec::new(),
            errors: Vec::new(),
            bytes: 0,
            first_buffered_ms: now,
            oldest_arrival_ms: i64::MAX,
            ranges: BTreeMap::new(),
            intent: None,
            failing_since_ms: None,
            attempts: 0,
            delivered: false,
        }
    }

    /// Appends `data` (the record's payload: `item.data`, or what the Lambda processor made
    /// of it) and covers the item's position.
    fn push(&mut self, item: &Item, data: &[u8], error: Option<RecError>) {
        let v = match &mut self.data {
            Payload::Open(v) => v,
            Payload::Sealed(b) => {
                // Not reached: a sealed buffer (intent recorded) takes no more records.
                self.data = Payload::Open(b.to_vec());
                match &mut self.data {
                    Payload::Open(v) => v,
                    Payload::Sealed(_) => unreachable!("just reopened"),
                }
            }
        };
        let need = v.len() + data.len();
        if need > v.capacity() {
            // Double up to the hint, never past it; beyond the hint grow exactly.
            let target = need.max(v.capacity().saturating_mul(2).min(self.hint));
            v.reserve_exact(target - v.len());
        }
        v.extend_from_slice(data);
        self.bytes += data.len();
        self.oldest_arrival_ms = self.oldest_arrival_ms.min(item.arrival_ms);
        match self.ranges.get_mut(&item.unit) {
            Some(r) => r.1.clone_from(&item.pos),
            None => {
                self.ranges
                    .insert(item.unit.clone(), (item.prev.clone(), item.pos.clone()));
            }
        }
        if let Some(e) = error {
            self.errors.push((self.records.len(), e));
        }
        self.records.push(BufRecord {
            end: v.len(),
            arrival_ms: item.arrival_ms,
        });
    }

    /// Freezes the payload (no copy) so renders share it.
    fn seal(&mut self) {
        if let Payload::Open(v) = &mut self.data {
            self.data = Payload::Sealed(Bytes::from(std::mem::take(v)));
        }
    }

    /// The payload as shared bytes (a copy only if not sealed).
    fn payload(&self) -> Bytes {
        match &self.data {
            Payload::Sealed(b) => b.clone(),
            Payload::Open(v) => Bytes::copy_from_slice(v),
        }
    }

    /// Record boundaries: the end offset of each record.
    fn ends(&self) -> Vec<usize> {
        self.records.iter().map(|r| r.end).collect()
    }

    /// `(payload, arrival_ms, error)` of every record.
    fn iter(&self) -> impl Iterator<Item = (&[u8], i64, Option<&RecError>)> {
        let data = self.data.as_slice();
        let mut errors = self.errors.iter().peekable();
        let mut start = 0;
        self.records.iter().enumerate().map(move |(i, r)| {
            let slice = &data[start..r.end];
            start = r.end;
            let err = match errors.peek() {
                Some((j, e)) if *j == i => {
                    errors.next();
                    Some(e)
                }
                _ => None,
            };
            (slice, r.arrival_ms, err)
        })
    }
}

/// The records of a sealed payload, split at `ends`.
fn split<'a>(data: &'a [u8], ends: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + Clone {
    let mut start = 0;
    ends.iter().map(move |&end| {
        let s = &data[start..end];
        start = end;
        s
    })
}

struct UnitRt {
    after: Option<String>,
    ended: bool,
    parents: Vec<String>,
}

/// How a flush treats sink failures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Retry with backoff up to `retry_max_secs`.
    Retry,
    /// One attempt (shutdown).
    Once,
}

pub(crate) struct Worker {
    shared: Arc<Shared>,
    handle: Arc<StreamHandle>,
    ckpt: CheckpointDoc,
    units: BTreeMap<String, UnitRt>,
    buffers: BTreeMap<String, Buffer>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    recovered: bool,
    /// How the open buffers' records were routed (changes only when no buffer is open).
    routing: Routing,
}

/// Partition id and keys of a record, and the error message of a record bound for an error
/// output (partitioning failed, or the record does not fit the format conversion's schema).
fn partition_of(
    queries: Option<&BTreeMap<String, String>>,
    conversion: Option<&FormatConversion>,
    data: &[u8],
) -> (String, Option<BTreeMap<String, String>>, Option<String>) {
    let (id, keys, err) = partition_by_queries(queries, data);
    if err.is_none()
        && let Some(conv) = conversion
        && let Err(e) = convert::check(conv, data)
    {
        return (FORMAT_ERROR_PARTITION.to_string(), None, Some(e));
    }
    (id, keys, err)
}

/// Where a record goes: by its Lambda `outcome` when a processor is in force, else by
/// [`partition_of`]. Records the processor failed keep their ORIGINAL data (`rawData`); a
/// missing Lambda partition key or a failed query sends the original data to the
/// `processing-failed` output too; a transformed record that does not fit the format
/// conversion goes to `format-conversion-failed` as transformed.
fn route(routing: &Routing, item: &Item, outcome: Option<Outcome>) -> Option<Routed> {
    let failed = |error: RecError| {
        Some(Routed {
            pid: ERROR_PARTITION.to_string(),
            keys: None,
            lambda_keys: None,
            data: item.data.clone(),
            error: Some(error),
        })
    };
    let (data, lambda_keys) = match outcome {
        None => {
            let (pid, keys, err) = partition_of(routing.queries.as_ref(), routing.conversion.as_ref(), &item.data);
            return Some(Routed {
                pid,
                keys,
                lambda_keys: None,
                data: item.data.clone(),
                error: err.map(RecError::plain),
            });
        }
        Some(Outcome::Dropped) => return None,
        Some(Outcome::Failed(e)) => return failed(e),
        Some(Outcome::Ok { data, keys }) => {
            if routing.lambda_key_names.is_empty() {
                (data, None)
            } else {
                let missing: Vec<&str> = routing
                    .lambda_key_names
                    .iter()
                    .filter(|k| !keys.contains_key(k.as_str()))
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() {
                    return failed(RecError {
                        code: Some(PARTITION_ERROR_CODE.to_string()),
                        message: format!(
                            "The Lambda function returned no partition key {} in metadata.partitionKeys.",
                            missing.join(", ")
                        ),
                        attempts: 1,
                        ending_ms: None,
                        lambda_arn: routing.processor.as_ref().map(|p| p.lambda_arn.clone()),
                    });
                }
                let used = routing
                    .lambda_key_names
                    .iter()
                    .filter_map(|k| keys.get(k).map(|v| (k.clone(), v.clone())))
                    .collect();
                (data, Some(used))
            }
        }
    };
    let (qid, qkeys, qerr) = partition_by_queries(routing.queries.as_ref(), &data);
    if let Some(e) = qerr {
        return failed(RecError::plain(e));
    }
    if let Some(conv) = &routing.conversion
        && let Err(e) = convert::check(conv, &data)
    {
        return Some(Routed {
            pid: FORMAT_ERROR_PARTITION.to_string(),
            keys: None,
            lambda_keys: None,
            data,
            error: Some(RecError::plain(e)),
        });
    }
    let pid = match &lambda_keys {
        None => qid,
        Some(l) => serde_json::to_string(&(qkeys.as_ref(), l)).unwrap_or_default(),
    };
    Some(Routed {
        pid,
        keys: qkeys,
        lambda_keys,
        data,
        error: None,
    })
}

/// An upper bound of what one record adds to the invocation event (base64 data, id,
/// timestamps, Kinesis metadata with JSON escaping).
fn event_bytes(item: &Item, kinesis: bool) -> usize {
    let data = item.data.len().div_ceil(3) * 4;
    let base = 128 + 2 * item.pos.len() + item.unit.len() + 32;
    let meta = if kinesis {
        192 + item.unit.len() + 6 * item.partition_key.len() + item.pos.len()
    } else {
        0
    };
    data + base + meta
}

/// What invoking the function for one batch came to.
enum Invoked {
    /// An answer, after this many attempts.
    Answer(TransformResponse, u32),
    /// Every attempt failed (the last error, attempts made).
    Failed(PortError, u32),
    /// Given up for now (shutdown flush): nothing is decided for the batch.
    Interrupted,
}

fn partition_by_queries(
    queries: Option<&BTreeMap<String, String>>,
    data: &[u8],
) -> (String, Option<BTreeMap<String, String>>, Option<String>) {
    match queries {
        None => (String::new(), None, None),
        Some(q) => match keys::partition_keys(q, data) {
            Ok(k) => {
                let id = serde_json::to_string(&k).unwrap_or_default();
                (id, Some(k), None)
            }
            Err(e) => (ERROR_PARTITION.to_string(), None, Some(e)),
        },
    }
}

/// The flush size of a destination (bytes), also the capacity hint of its buffers.
fn size_hint(size_mb: u32) -> usize {
    usize::try_from(size_mb.max(1)).unwrap_or(128) * 1024 * 1024
}

fn bucket_name(bucket_arn: &str) -> String {
    match bucket_arn.split_once(":::") {
        Some((_, b)) if bucket_arn.starts_with("arn:") => b.to_string(),
        _ => bucket_arn.to_string(),
    }
}

/// The error-record `errorCode` and `errorMessage` of a failed S3 delivery.
fn error_code_of(e: &PortError) -> (&'static str, String) {
    match e {
        PortError::AccessDenied(m) => ("S3.AccessDenied", format!("Access was denied. {m}")),
        PortError::NotFound(m) => ("S3.NoSuchBucket", format!("The specified bucket does not exist. {m}")),
        PortError::Other(m) => ("S3.InternalError", m.clone()),
    }
}

fn failure_of(e: &PortError) -> FailureDescription {
    match e {
        PortError::AccessDenied(m) => FailureDescription {
            kind: "S3_ACCESS_DENIED".into(),
            details: format!(
                "Access was denied. Ensure that the trust policy for the provided IAM role allows Firehose to assume the role, and the access policy allows access to the S3 bucket. ({m})"
            ),
        },
        PortError::NotFound(m) => FailureDescription {
            kind: "S3_BUCKET_NOT_FOUND".into(),
            details: format!("The specified bucket does not exist. ({m})"),
        },
        PortError::Other(m) => FailureDescription {
            kind: "UNKNOWN_ERROR".into(),
            details: m.clone(),
        },
    }
}

impl Worker {
    pub(crate) fn new(
        shared: Arc<Shared>,
        handle: Arc<StreamHandle>,
        ckpt: CheckpointDoc,
        cmds: mpsc::UnboundedReceiver<Cmd>,
    ) -> Worker {
        let units = ckpt
            .units
            .iter()
            .map(|(u, c)| {
                (
                    u.clone(),
                    UnitRt {
                        after: c.after.clone(),
                        ended: c.done,
                        parents: c.parents.clone(),
                    },
                )
            })
            .collect();
        let routing = Routing::of(&handle.doc());
        Worker {
            shared,
            handle,
            ckpt,
            units,
            buffers: BTreeMap::new(),
            cmds,
            recovered: false,
            routing,
        }
    }

    fn now(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    pub(crate) async fn run(mut self) {
        let poll = Duration::from_millis(self.shared.config.poll_interval_ms.max(1));
        loop {
            let mut flush_reply = None;
            match self.cmds.try_recv() {
                Ok(Cmd::Flush(reply)) => flush_reply = Some(reply),
                Err(mpsc::error::TryRecvError::Empty) => {}
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
            if flush_reply.is_some() {
                self.handle
                    .flush_requested
                    .store(false, std::sync::atomic::Ordering::SeqCst);
            }
            let mode = if flush_reply.is_some() { Mode::Once } else { Mode::Retry };
            if let Err(e) = self.tick(mode, flush_reply.is_some()).await {
                tracing::warn!(stream = %self.handle.name(), error = %e, "delivery worker step failed");
            }
            if let Some(reply) = flush_reply {
                let _ = reply.send(());
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = self.handle.notify.notified() => {}
                cmd = self.cmds.recv() => match cmd {
                    Some(Cmd::Flush(reply)) => {
                        self.handle.flush_requested.store(false, std::sync::atomic::Ordering::SeqCst);
                        if let Err(e) = self.tick(Mode::Once, true).await {
                            tracing::warn!(stream = %self.handle.name(), error = %e, "delivery flush failed");
                        }
                        let _ = reply.send(());
                    }
                    None => return,
                },
            }
        }
    }

    async fn tick(&mut self, mode: Mode, flush_everything: bool) -> Result<(), Error> {
        let (created_ms, is_stream, has_processor) = {
            let doc = self.handle.doc();
            (
                doc.created_ms,
                matches!(doc.source, Source::KinesisStream { .. }),
                doc.destination.processor.is_some(),
            )
        };
        if self.now() < created_ms + self.shared.config.create_delay_ms {
            return Ok(());
        }
        // A Lambda processor waits (briefly, after open) for its port to be installed.
        if has_processor && !self.shared.transformer_ready() {
            return Ok(());
        }
        if !self.recovered {
            if !self.recover(mode).await? {
                return Ok(());
            }
            self.recovered = true;
        }
        // Buffers with a recorded intent are closed: deliver them before reading more.
        if !self.flush_pending(mode).await? {
            return Ok(());
        }
        if is_stream {
            if !self.ckpt.initialized {
                self.init_stream_positions().await?;
            }
            self.refresh_shards().await;
        }
        loop {
            let (items, ended) = self.read_chunk(is_stream).await?;
            if items.is_empty() && ended.is_empty() {
                break;
            }
            if !self.switch_routing(mode).await? {
                return Ok(());
            }
            // With a Lambda processor, records are transformed before they are buffered.
            let (outcomes, interrupted) = match self.routing.processor.clone() {
                Some(p) if !items.is_empty() => {
                    let (o, i) = self.transform(&items, &p, mode).await;
                    (Some(o), i)
                }
                _ => (None, false),
            };
            let n = outcomes.as_ref().map_or(items.len(), Vec::len);
            let mut outcomes = outcomes.map(Vec::into_iter);
            for item in items.into_iter().take(n) {
                let outcome = outcomes.as_mut().and_then(Iterator::next);
                if !self.dispatch(item, outcome, mode).await? {
                    return Ok(());
                }
            }
            if interrupted {
                // The rest of the chunk is read again later.
                return Ok(());
            }
            // A shard ends only once every record read from it is buffered.
            for unit in ended {
                if let Some(u) = self.units.get_mut(&unit) {
                    u.ended = true;
                }
            }
            if !self.flush_due(mode, false).await? {
                return Ok(());
            }
        }
        self.flush_due(mode, flush_everything).await?;
        Ok(())
    }

    /// Delivers the buffers whose intent is recorded (single flushes one by one, then a
    /// group). `Ok(false)`: not all could be delivered.
    async fn flush_pending(&mut self, mode: Mode) -> Result<bool, Error> {
        let single: Vec<String> = self
            .buffers
            .iter()
            .filter(|(_, b)| b.intent.as_ref().is_some_and(|i| i.group_to.is_none()))
            .map(|(k, _)| k.clone())
            .collect();
        for id in single {
            if !self.flush(&id, mode).await? {
                return Ok(false);
            }
        }
        if self
            .buffers
            .values()
            .any(|b| b.intent.as_ref().is_some_and(|i| i.group_to.is_some()))
        {
            return self.flush_group(mode).await;
        }
        Ok(true)
    }

    /// Adopts the destination's current routing. When a Lambda processor is added, removed
    /// or changed while buffers are open, those buffers are flushed first (with the routing
    /// they were filled with). `Ok(false)`: they could not be flushed yet.
    async fn switch_routing(&mut self, mode: Mode) -> Result<bool, Error> {
        let routing = Routing::of(&self.handle.doc());
        if routing == self.routing {
            return Ok(true);
        }
        if !self.buffers.is_empty() && (routing.grouped() || self.routing.grouped()) {
            if self.routing.grouped() {
                if !self.flush_group(mode).await? {
                    return Ok(false);
                }
            } else {
                let ids: Vec<String> = self.buffers.keys().cloned().collect();
                for id in ids {
                    if !self.flush(&id, mode).await? {
                        return Ok(false);
                    }
                }
            }
        }
        self.routing = routing;
        Ok(true)
    }

    /// Reads a unit after `after` for recovery: `Err` when the source could not be read now
    /// (unlike the normal reads, which treat that as "nothing yet"); a shard that no longer
    /// exists has nothing left to read.
    async fn read_unit(&self, is_stream: bool, unit: &str, after: Option<&str>) -> Result<Vec<Item>, Error> {
        if !is_stream {
            return self.read_log(after);
        }
        let (arn, role) = self.handle.source_arn_role();
        match self.shared.source.read(&arn, &role, unit, after, READ_RECORDS).await {
            Ok(batch) => Ok(Self::shard_items(unit, after, batch.records)),
            Err(PortError::NotFound(m)) => {
                tracing::warn!(stream = %self.handle.name(), shard = unit, error = %m,
                    "a shard to recover no longer exists: its records are gone");
                Ok(Vec::new())
            }
            Err(e) => Err(Error::Internal(format!("cannot read source shard {unit}: {e}"))),
        }
    }

    /// Rebuilds the buffers of pending intents by re-reading exactly their ranges (and, for
    /// a group, re-transforming them). `Ok(false)`: not possible yet (try again later).
    async fn recover(&mut self, mode: Mode) -> Result<bool, Error> {
        let uid = self.handle.uid.clone();
        let intents = self.shared.meta.scan_prefix(T_INTENTS, &format!("{uid}/"))?;
        let doc = self.handle.doc();
        let is_stream = matches!(doc.source, Source::KinesisStream { .. });
        let hint = size_hint(doc.destination.size_mb);
        let mut group = Vec::new();
        for (_, raw) in intents {
            let intent: IntentDoc = crate::store::from_json(&raw)?;
            if intent.group_to.is_some() {
                group.push(intent);
                continue;
            }
            let keys: Option<BTreeMap<String, String>> =
                if intent.queries.is_some() && !is_error_partition(&intent.partition) {
                    serde_json::from_str(&intent.partition).ok()
                } else {
                    None
                };
            let presize = intent.queries.is_none() && !is_error_partition(&intent.partition);
            let mut buf = Buffer::new(intent.partition.clone(), keys, self.now(), hint, presize);
            for (unit, (after, to)) in &intent.ranges {
                let mut cursor = after.clone();
                loop {
                    let items = match self.read_unit(is_stream, unit, cursor.as_deref()).await {
                        Ok(items) => items,
                        Err(e) => {
                            tracing::warn!(stream = %doc.name, error = %e, "recovery cannot read the source yet");
                            self.buffers.clear();
                            return Ok(false);
                        }
                    };
                    if items.is_empty() {
                        break;
                    }
                    let mut reached = false;
                    for item in items {
                        cursor = Some(item.pos.clone());
                        if pos_cmp(&item.pos, to) == Ordering::Greater {
                            reached = true;
                            break;
                        }
                        let (pid, _, err) =
                            partition_of(intent.queries.as_ref(), intent.conversion.as_ref(), &item.data);
                        if pid == intent.partition {
                            buf.push(&item, &item.data, err.map(RecError::plain));
                        }
                        if pos_cmp(&item.pos, to) != Ordering::Less {
                            reached = true;
                            break;
                        }
                    }
                    if reached {
                        break;
                    }
                }
            }
            // The intent's ranges are authoritative (even if retention trimmed records).
            buf.ranges = intent.ranges.clone();
            buf.intent = Some(intent);
            buf.seal();
            self.buffers.insert(buf.id.clone(), buf);
        }
        if !group.is_empty() && !self.recover_group(group, is_stream, mode).await? {
            self.buffers.clear();
            return Ok(false);
        }
        Ok(true)
    }

    /// Rebuilds a group: re-reads every unit from the checkpoint to the group's end,
    /// transforms the records again with the group's processor and routes each one again.
    /// A deterministic function gives the same objects; a record routed to a partition
    /// without an intent (a non-deterministic function) gets a new intent in the group
    /// (recorded before anything is written), and an intent left without records is
    /// rewritten empty, so every record still lands in exactly one object.
    async fn recover_group(&mut self, intents: Vec<IntentDoc>, is_stream: bool, mode: Mode) -> Result<bool, Error> {
        let Some(first) = intents.first() else {
            return Ok(true);
        };
        if first.processor.is_some() && !self.shared.transformer_ready() {
            return Ok(false);
        }
        let routing = Routing::of_intent(first);
        let group_to = first.group_to.clone().unwrap_or_default();
        let doc = self.handle.doc();
        let hint = size_hint(doc.destination.size_mb);
        let now = self.now();
        let mut bufs: BTreeMap<String, Buffer> = BTreeMap::new();
        for intent in intents {
            let mut b = Buffer::new(intent.partition.clone(), intent.keys.clone(), now, hint, false);
            b.lambda_keys = intent.lambda_keys.clone();
            b.ranges = intent.ranges.clone();
            b.intent = Some(intent);
            bufs.insert(b.id.clone(), b);
        }
        for (unit, to) in &group_to {
            let mut cursor = self.ckpt.units.get(unit).and_then(|c| c.after.clone());
            while opt_pos_cmp(cursor.as_deref(), Some(to)) == Ordering::Less {
                let items = match self.read_unit(is_stream, unit, cursor.as_deref()).await {
                    Ok(items) => items,
                    Err(e) => {
                        tracing::warn!(stream = %doc.name, error = %e, "recovery cannot read the source yet");
                        return Ok(false);
                    }
                };
                let items: Vec<Item> = items
                    .into_iter()
                    .take_while(|i| pos_cmp(&i.pos, to) != Ordering::Greater)
                    .collect();
                let Some(last) = items.last() else {
                    break; // trimmed by retention: the group's span stays authoritative
                };
                cursor = Some(last.pos.clone());
                let outcomes = match &routing.processor {
                    Some(p) => {
                        let (o, interrupted) = self.transform(&items, p, mode).await;
                        if interrupted {
                            return Ok(false);
                        }
                        Some(o)
                    }
                    None => None,
                };
                let mut outcomes = outcomes.map(Vec::into_iter);
                for item in &items {
                    let outcome = outcomes.as_mut().and_then(Iterator::next);
                    let Some(Routed {
                        pid,
                        keys,
                        lambda_keys,
                        data,
                        error,
                    }) = route(&routing, item, outcome)
                    else {
                        continue;
                    };
                    let b = bufs.entry(pid.clone()).or_insert_with(|| {
                        let mut b = Buffer::new(pid, keys, now, hint, false);
                        b.lambda_keys = lambda_keys;
                        b
                    });
                    b.push(item, &data, error);
                }
            }
        }
        // Partitions the records were not routed to before: their intents join the group.
        let mut ops = Vec::new();
        let mut made = Vec::new();
        for b in bufs.values().filter(|b| b.intent.is_none()) {
            let intent = self.make_intent(b, &doc, Some((&routing, &group_to)));
            ops.push(MetaOp::Put {
                table: T_INTENTS.into(),
                key: self.intent_key(&b.id),
                value: to_json(&intent)?,
            });
            made.push((b.id.clone(), intent));
        }
        if !ops.is_empty() {
            tracing::warn!(stream = %doc.name, partitions = made.len(),
                "recovery routed records to new partitions (a non-deterministic transformation)");
            self.shared.meta.write_grouped(ops).await?;
        }
        for (id, intent) in made {
            if let Some(b) = bufs.get_mut(&id) {
                b.intent = Some(intent);
            }
        }
        for (id, mut b) in bufs {
            b.seal();
            self.buffers.insert(id, b);
        }
        self.routing = routing;
        Ok(true)
    }

    /// Hands `items` to the Lambda processor in batches (at most `BufferSizeInMBs` of data
    /// and a 6 MB event each) and returns one outcome per item, in order, for a prefix of
    /// `items` (all of them unless interrupted), and whether it was interrupted (a shutdown
    /// flush, or a flush requested while retrying: the rest is transformed later).
    async fn transform(&self, items: &[Item], processor: &LambdaProcessor, mode: Mode) -> (Vec<Outcome>, bool) {
        let doc = self.handle.doc();
        let stream_arn = format!(
            "arn:aws:firehose:{}:{}:deliverystream/{}",
            doc.region, doc.account, doc.name
        );
        let source_arn = match &doc.source {
            Source::KinesisStream { stream_arn, .. } => Some(stream_arn.clone()),
            Source::DirectPut => None,
        };
        let kinesis = source_arn.is_some();
        let role = processor
            .role_arn
            .clone()
            .unwrap_or_else(|| doc.destination.role_arn.clone());
        let limit = processor.buffer_size_bytes.max(1);
        let envelope = EVENT_ENVELOPE_BYTES + stream_arn.len() + source_arn.as_ref().map_or(0, String::len);
        let mut out = Vec::with_capacity(items.len());
        let mut start = 0;
        while start < items.len() {
            let (mut end, mut bytes, mut event) = (start, 0u64, envelope);
            while let Some(it) = items.get(end) {
                let len = it.data.len() as u64;
                let cost = event_bytes(it, kinesis);
                if end > start && (bytes + len > limit || event + cost > MAX_LAMBDA_EVENT_BYTES) {
                    break;
                }
                bytes += len;
                event += cost;
                end += 1;
            }
            let batch = &items[start..end];
            let mut used = HashSet::new();
            let records: Vec<TransformInputRecord> = batch
                .iter()
                .map(|it| TransformInputRecord {
                    record_id: self.record_id(it, &mut used),
                    approximate_arrival_ms: it.arrival_ms,
                    data: it.data.clone(),
                    kinesis: kinesis.then(|| KinesisRecordMetadata {
                        shard_id: it.unit.clone(),
                        partition_key: it.partition_key.clone(),
                        approximate_arrival_ms: it.arrival_ms,
                        sequence_number: it.pos.clone(),
                        subsequence_number: 0,
                    }),
                })
                .collect();
            let ids: Vec<String> = records.iter().map(|r| r.record_id.clone()).collect();
            let request = TransformRequest {
                invocation_id: String::new(),
                delivery_stream_arn: stream_arn.clone(),
                source_kinesis_stream_arn: source_arn.clone(),
                region: doc.region.clone(),
                records,
            };
            let failure = |code: &str, message: &str, attempts: u32, ending_ms: Option<i64>| {
                Outcome::Failed(RecError {
                    code: Some(code.to_string()),
                    message: message.to_string(),
                    attempts,
                    ending_ms,
                    lambda_arn: Some(processor.lambda_arn.clone()),
                })
            };
            match self.invoke(processor, &role, request, mode).await {
                Invoked::Interrupted => return (out, true),
                Invoked::Failed(e, attempts) => {
                    let (code, message) = lambda_error_code(&e);
                    tracing::warn!(stream = %doc.name, function = %processor.lambda_arn, records = batch.len(), %code,
                        "the Lambda processor failed: the records go to the error output");
                    let now = self.now();
                    out.extend(batch.iter().map(|_| failure(&code, &message, attempts, Some(now))));
                }
                Invoked::Answer(resp, attempts) => {
                    let now = self.now();
                    let mut by_id: HashMap<&str, (usize, usize)> = HashMap::with_capacity(resp.records.len());
                    for (i, r) in resp.records.iter().enumerate() {
                        by_id.entry(r.record_id.as_str()).or_insert((0, i)).0 += 1;
                    }
                    let missing = ids.iter().filter(|id| !by_id.contains_key(id.as_str())).count();
                    if missing > 0 {
                        tracing::warn!(stream = %doc.name, function = %processor.lambda_arn, missing,
                            "the Lambda processor's answer lacks record ids");
                    }
                    for id in &ids {
                        out.push(match by_id.get(id.as_str()) {
                            None => failure(MISSING_ID_CODE, MISSING_ID_MESSAGE, attempts, Some(now)),
                            Some((n, _)) if *n > 1 => {
                                failure(DUPLICATED_ID_CODE, DUPLICATED_ID_MESSAGE, attempts, Some(now))
                            }
                            Some((_, i)) => {
                                let r = &resp.records[*i];
                                match r.result {
                                    TransformResult::Ok => Outcome::Ok {
                                        data: r.data.clone(),
                                        keys: r.partition_keys.clone(),
                                    },
                                    TransformResult::Dropped => Outcome::Dropped,
                                    TransformResult::ProcessingFailed => {
                                        failure(PROCESSING_FAILED_CODE, PROCESSING_FAILED_MESSAGE, attempts, Some(now))
                                    }
                                }
                            }
                        });
                    }
                }
            }
            start = end;
        }
        (out, false)
    }

    /// The `recordId` of an item: for DirectPut the RecordId PutRecord returned, for a
    /// stream the sequence number and a subsequence of zeros (unique within `used`).
    fn record_id(&self, item: &Item, used: &mut HashSet<String>) -> String {
        let id = if item.unit == LOG_UNIT {
            format!("{}{:0>20}", self.handle.uid, item.pos)
        } else {
            format!("{}000000", item.pos)
        };
        if used.insert(id.clone()) {
            return id;
        }
        let id = format!("{id}-{}", item.unit);
        used.insert(id.clone());
        id
    }

    /// Invokes the function with one batch: up to `NumberOfRetries` retries with backoff.
    async fn invoke(
        &self,
        processor: &LambdaProcessor,
        role: &str,
        mut request: TransformRequest,
        mode: Mode,
    ) -> Invoked {
        let transformer = self.shared.transformer();
        let max = processor.number_of_retries.saturating_add(1);
        let mut backoff = Duration::from_millis(self.shared.config.transform_retry_ms.max(1));
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            request.invocation_id = uuid::Uuid::new_v4().hyphenated().to_string();
            let res = match &transformer {
                Some(t) => t.transform(&processor.lambda_arn, role, request.clone()).await,
                None => Err(PortError::Other(
                    "no Lambda engine is installed to run the processor".to_string(),
                )),
            };
            let e = match res {
                Ok(resp) => return Invoked::Answer(resp, attempts),
                Err(e) => e,
            };
            if attempts == 1 {
                tracing::warn!(stream = %self.handle.name(), function = %processor.lambda_arn, error = %e,
                    retries = processor.number_of_retries, "Lambda processor invocation failed");
            } else {
                tracing::debug!(stream = %self.handle.name(), function = %processor.lambda_arn, attempt = attempts,
                    error = %e, "Lambda processor invocation failed again");
            }
            if mode == Mode::Once {
                // A shutdown flush makes one attempt; the records stay durable for later.
                return Invoked::Interrupted;
            }
            if attempts >= max {
                return Invoked::Failed(e, attempts);
            }
            if self.handle.flush_requested.load(std::sync::atomic::Ordering::SeqCst) {
                return Invoked::Interrupted;
            }
            if transformer.is_some() {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = self.handle.retry_wake.notified() => {}
                }
                if self.handle.flush_requested.load(std::sync::atomic::Ordering::SeqCst) {
                    return Invoked::Interrupted;
                }
                backoff = (backoff * 2).min(MAX_TRANSFORM_BACKOFF);
            }
        }
    }

    async fn init_stream_positions(&mut self) -> Result<(), Error> {
        let (arn, role) = self.handle.source_arn_role();
        let shards = match self.shared.source.shards(&arn, &role).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(stream = %self.handle.name(), error = %e, "cannot list the source stream's shards");
                return Ok(());
            }
        };
        let mut units = BTreeMap::new();
        for s in &shards {
            let after = if self.shared.config.start_at_trim_horizon {
                None
            } else {
                match self.shared.source.latest(&arn, &role, &s.shard_id).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(stream = %self.handle.name(), error = %e, "cannot find the source's LATEST position");
                        return Ok(());
                    }
                }
            };
            units.insert(
                s.shard_id.clone(),
                UnitCheckpoint {
                    after,
                    done: false,
                    partitions: BTreeMap::new(),
                    parents: s.parents.clone(),
                },
            );
        }
        let mut ckpt = self.ckpt.clone();
        ckpt.initialized = true;
        ckpt.units = units;
        let now = self.now();
        let mut doc = self.handle.doc();
        doc.delivery_start_ms = Some(now);
        self.shared
            .meta
            .write_grouped(vec![
                MetaOp::Put {
                    table: T_CHECKPOINTS.into(),
                    key: self.handle.uid.clone(),
                    value: to_json(&ckpt)?,
                },
                MetaOp::Put {
                    table: T_STREAMS.into(),
                    key: doc.meta_key(),
                    value: to_json(&doc)?,
                },
            ])
            .await?;
        self.handle.set_delivery_start(now);
        for (u, c) in &ckpt.units {
            self.units.insert(
                u.clone(),
                UnitRt {
                    after: c.after.clone(),
                    ended: false,
                    parents: c.parents.clone(),
                },
            );
        }
        self.ckpt = ckpt;
        Ok(())
    }

    async fn refresh_shards(&mut self) {
        if !self.ckpt.initialized {
            return;
        }
        let (arn, role) = self.handle.source_arn_role();
        match self.shared.source.shards(&arn, &role).await {
            Ok(shards) => {
                for s in shards {
                    if !self.units.contains_key(&s.shard_id) {
                        // New shards (children of a reshard) are read from their start.
                        self.units.insert(
                            s.shard_id.clone(),
                            UnitRt {
                                after: None,
                                ended: false,
                                parents: s.parents.clone(),
                            },
                        );
                        self.ckpt.units.insert(
                            s.shard_id.clone(),
                            UnitCheckpoint {
                                parents: s.parents,
                                ..UnitCheckpoint::default()
                            },
                        );
                    }
                }
            }
            Err(e) => {
                tracing::warn!(stream = %self.handle.name(), error = %e, "cannot list the source stream's shards")
            }
        }
    }

    fn read_log(&self, after: Option<&str>) -> Result<Vec<Item>, Error> {
        let Some(log) = self.handle.log.as_ref() else {
            return Ok(Vec::new());
        };
        let from = match after {
            None => 0,
            Some(a) => a
                .parse::<u64>()
                .map_err(|_| Error::Internal(format!("bad log position {a:?}")))?
                .saturating_add(1),
        };
        let res = log.read(0, from, READ_RECORDS, READ_BYTES, i64::MIN)?;
        let mut prev = after.map(str::to_string);
        let mut out = Vec::with_capacity(res.records.len());
        for r in res.records {
            let pos = r.offset.to_string();
            out.push(Item {
                unit: LOG_UNIT.to_string(),
                prev: prev.replace(pos.clone()),
                pos,
                data: Bytes::from(r.data),
                arrival_ms: r.timestamp_ms,
                partition_key: String::new(),
            });
        }
        Ok(out)
    }

    async fn read_shard(&self, shard: &str, after: Option<&str>) -> Result<(Vec<Item>, bool), Error> {
        let (arn, role) = self.handle.source_arn_role();
        let batch = match self.shared.source.read(&arn, &role, shard, after, READ_RECORDS).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(stream = %self.handle.name(), shard, error = %e, "cannot read the source shard");
                return Ok((Vec::new(), false));
            }
        };
        Ok((Self::shard_items(shard, after, batch.records), batch.end_of_shard))
    }

    fn shard_items(shard: &str, after: Option<&str>, records: Vec<crate::model::SourceRecord>) -> Vec<Item> {
        let mut prev = after.map(str::to_string);
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            out.push(Item {
                unit: shard.to_string(),
                prev: prev.replace(r.sequence_number.clone()),
                pos: r.sequence_number,
                data: r.data,
                arrival_ms: r.arrival_ms,
                partition_key: r.partition_key,
            });
        }
        out
    }

    fn readable_units(&self) -> Vec<String> {
        self.units
            .iter()
            .filter(|(_, u)| !u.ended)
            .filter(|(_, u)| u.parents.iter().all(|p| self.units.get(p).is_none_or(|pu| pu.ended)))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Reads the next records of every readable unit (the cursors move as records are
    /// dispatched). Also returns the units read to their end.
    async fn read_chunk(&mut self, is_stream: bool) -> Result<(Vec<Item>, Vec<String>), Error> {
        if !is_stream {
            let after = self.units.get(LOG_UNIT).and_then(|u| u.after.clone());
            return Ok((self.read_log(after.as_deref())?, Vec::new()));
        }
        let mut all = Vec::new();
        let mut ended = Vec::new();
        for unit in self.readable_units() {
            let after = self.units.get(&unit).and_then(|u| u.after.clone());
            let (items, end) = self.read_shard(&unit, after.as_deref()).await?;
            // Only a read that reached the end (no more records) ends the shard.
            if end && items.len() < READ_RECORDS {
                ended.push(unit);
            }
            all.extend(items);
        }
        Ok((all, ended))
    }

    /// Puts one record into its buffer (`outcome`: what the Lambda processor made of it);
    /// flushes by size. `Ok(false)`: a flush could not complete (stop reading for now; the
    /// item is covered by the cursor only once it is buffered).
    async fn dispatch(&mut self, item: Item, outcome: Option<Outcome>, mode: Mode) -> Result<bool, Error> {
        let size_limit = size_hint(self.handle.size_mb()) as u64;
        let routed = route(&self.routing, &item, outcome);
        if let Some(Routed { pid, .. }) = &routed
            && !self.buffers.contains_key(pid)
            && self.buffers.len() >= MAX_PARTITIONS
        {
            if self.routing.grouped() {
                if !self.flush_group(mode).await? {
                    return Ok(false);
                }
            } else {
                let oldest = self
                    .buffers
                    .values()
                    .min_by_key(|b| b.first_buffered_ms)
                    .map(|b| b.id.clone());
                if let Some(id) = oldest
                    && !self.flush(&id, mode).await?
                {
                    return Ok(false);
                }
            }
        }
        self.units
            .entry(item.unit.clone())
            .or_insert_with(|| UnitRt {
                after: None,
                ended: false,
                parents: Vec::new(),
            })
            .after = Some(item.pos.clone());
        let Some(Routed {
            pid,
            keys,
            lambda_keys,
            data,
            error,
        }) = routed
        else {
            return Ok(true); // dropped by the function: processed, nothing to deliver
        };
        if let Some(done) = self.ckpt.units.get(&item.unit).and_then(|u| u.partitions.get(&pid))
            && pos_cmp(&item.pos, done) != Ordering::Greater
        {
            return Ok(true); // delivered before a restart
        }
        let now = self.now();
        let buf = self.buffers.entry(pid.clone()).or_insert_with(|| {
            // The single buffer of a stream without partitions is sized at once.
            let presize = pid.is_empty();
            let mut b = Buffer::new(pid.clone(), keys, now, size_limit as usize, presize);
            b.lambda_keys = lambda_keys;
            b
        });
        buf.push(&item, &data, error);
        if buf.bytes as u64 >= size_limit {
            if self.routing.grouped() {
                return self.flush_group(mode).await;
            }
            return self.flush(&pid, mode).await;
        }
        Ok(true)
    }

    async fn flush_due(&mut self, mode: Mode, everything: bool) -> Result<bool, Error> {
        let interval_ms = i64::from(self.handle.doc().destination.interval_secs) * 1000;
        let now = self.now();
        if self.routing.grouped() {
            // One buffer due flushes the whole group.
            let due = self.buffers.values().any(|b| {
                b.intent.is_some() || everything || interval_ms == 0 || now - b.first_buffered_ms >= interval_ms
            });
            if due && !self.flush_group(mode).await? {
                return Ok(false);
            }
            if self.buffers.is_empty() {
                self.advance_idle().await?;
            }
            return Ok(true);
        }
        let due: Vec<String> = self
            .buffers
            .values()
            .filter(|b| !b.records.is_empty() || b.intent.is_some())
            .filter(|b| everything || interval_ms == 0 || now - b.first_buffered_ms >= interval_ms)
            .map(|b| b.id.clone())
            .collect();
        for id in due {
            if !self.flush(&id, mode).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The flush intent of a buffer. `group`: the routing and span of a group flush (else
    /// the destination's queries and conversion, as single flushes always did).
    fn make_intent(
        &self,
        buf: &Buffer,
        doc: &StreamDoc,
        group: Option<(&Routing, &BTreeMap<String, String>)>,
    ) -> IntentDoc {
        let dest = &doc.destination;
        let tz = dest
            .custom_time_zone
            .as_deref()
            .and_then(TimeZone::parse)
            .unwrap_or(TimeZone::UTC);
        let time_ms = if buf.oldest_arrival_ms == i64::MAX {
            self.now()
        } else {
            buf.oldest_arrival_ms
        };
        let ctx = KeyContext {
            time_ms,
            tz,
            partition: buf.keys.as_ref(),
            lambda_partition: buf.lambda_keys.as_ref(),
            error_output_type: None,
        };
        let prefix = if is_error_partition(&buf.id) {
            let output_type = if buf.id == FORMAT_ERROR_PARTITION {
                FORMAT_ERROR_OUTPUT_TYPE
            } else {
                ERROR_OUTPUT_TYPE
            };
            keys::error_prefix(
                dest.prefix.as_deref(),
                dest.error_output_prefix.as_deref(),
                output_type,
                &ctx,
            )
        } else {
            keys::data_prefix(dest.prefix.as_deref(), &ctx)
        };
        let prefix = prefix.unwrap_or_else(|e| {
            tracing::warn!(stream = %doc.name, error = %e, "prefix evaluation failed; using the prefix as is");
            dest.prefix.clone().unwrap_or_default()
        });
        let (queries, conversion) = match group {
            Some((r, _)) => (r.queries.clone(), r.conversion.clone()),
            None => (
                dest.dynamic_partitioning.as_ref().map(|d| d.queries.clone()),
                dest.format_conversion.clone(),
            ),
        };
        // With format conversion the objects are Parquet files (and error objects JSON
        // lines), never compressed as a whole.
        let compression = if conversion.is_some() {
            Compression::Uncompressed
        } else {
            dest.compression
        };
        let ext = dest.file_extension.clone().unwrap_or_else(|| {
            if conversion.is_some() && !is_error_partition(&buf.id) {
                convert::PARQUET_EXTENSION.to_string()
            } else {
                compress::extension(compression).to_string()
            }
        });
        let key = keys::object_key(&prefix, &doc.name, doc.stream_version, time_ms, tz, &ext);
        let file = key.rsplit('/').next().unwrap_or(&key);
        let zip_entry = file.strip_suffix(ext.as_str()).unwrap_or(file).to_string();
        IntentDoc {
            version: FORMAT_VERSION,
            partition: buf.id.clone(),
            role_arn: dest.role_arn.clone(),
            bucket: bucket_name(&dest.bucket_arn),
            key,
            compression,
            zip_entry,
            queries,
            attempt_ending_ms: self.now(),
            ranges: buf.ranges.clone(),
            conversion,
            failed: None,
            group_to: group.map(|(_, to)| to.clone()),
            processor: group.and_then(|(r, _)| r.processor.clone()),
            lambda_key_names: group.map(|(r, _)| r.lambda_key_names.clone()).unwrap_or_default(),
            keys: group.and(buf.keys.clone()),
            lambda_keys: group.and(buf.lambda_keys.clone()),
        }
    }

    /// Intent → put → checkpoint. `Ok(true)` when the buffer was delivered (or went to the
    /// error output after the retry window), `Ok(false)` when it is still pending.
    async fn flush(&mut self, id: &str, mode: Mode) -> Result<bool, Error> {
        let Some(buf) = self.buffers.get(id) else {
            return Ok(true);
        };
        if buf.intent.is_none() {
            let doc = self.handle.doc();
            let intent = self.make_intent(buf, &doc, None);
            self.shared
                .meta
                .write_grouped(vec![MetaOp::Put {
                    table: T_INTENTS.into(),
                    key: self.intent_key(id),
                    value: to_json(&intent)?,
                }])
                .await?;
            if let Some(b) = self.buffers.get_mut(id) {
                b.intent = Some(intent);
                b.seal();
            }
        }
        if !self.deliver(id, mode).await? {
            return Ok(false);
        }
        self.commit(id).await?;
        Ok(true)
    }

    /// A group flush (a Lambda processor is in force): EVERY open buffer gets its intent in
    /// one transaction (with the group's span: per unit, everything read so far), each
    /// object is written, then ONE transaction advances the checkpoint over the whole span
    /// and deletes every intent of the group. The checkpoint thus never has partitions
    /// delivered ahead of it, which recovery could not tell apart once records are routed
    /// by a function's answers. `Ok(false)`: not all delivered yet (the group stays
    /// pending, objects already written are not written again).
    async fn flush_group(&mut self, mode: Mode) -> Result<bool, Error> {
        if self.buffers.is_empty() {
            return Ok(true);
        }
        let group_to = self
            .buffers
            .values()
            .find_map(|b| b.intent.as_ref().and_then(|i| i.group_to.clone()))
            .unwrap_or_else(|| {
                self.units
                    .iter()
                    .filter_map(|(u, rt)| rt.after.clone().map(|a| (u.clone(), a)))
                    .collect()
            });
        let doc = self.handle.doc();
        let routing = self.routing.clone();
        let mut ops = Vec::new();
        let mut made = Vec::new();
        for b in self.buffers.values().filter(|b| b.intent.is_none()) {
            let intent = self.make_intent(b, &doc, Some((&routing, &group_to)));
            ops.push(MetaOp::Put {
                table: T_INTENTS.into(),
                key: self.intent_key(&b.id),
                value: to_json(&intent)?,
            });
            made.push((b.id.clone(), intent));
        }
        if !ops.is_empty() {
            self.shared.meta.write_grouped(ops).await?;
        }
        for (id, intent) in made {
            if let Some(b) = self.buffers.get_mut(&id) {
                b.intent = Some(intent);
                b.seal();
            }
        }
        let ids: Vec<String> = self.buffers.keys().cloned().collect();
        for id in ids {
            if self.buffers.get(&id).is_none_or(|b| b.delivered) {
                continue;
            }
            if !self.deliver(&id, mode).await? {
                return Ok(false);
            }
            if let Some(b) = self.buffers.get_mut(&id) {
                b.delivered = true;
            }
        }
        self.commit_group(&group_to).await?;
        Ok(true)
    }

    /// Writes a buffer whose intent is recorded: its object (retried with backoff), or after
    /// the retry window its records to the error output. `Ok(true)` once written.
    async fn deliver(&mut self, id: &str, mode: Mode) -> Result<bool, Error> {
        let Some(intent) = self.buffers.get(id).and_then(|b| b.intent.clone()) else {
            return Ok(true);
        };
        let doc = self.handle.doc();
        if intent.failed.is_some() {
            return self.deliver_failed(id, intent, mode).await;
        }
        let Some(buf) = self.buffers.get(id) else {
            return Ok(true);
        };
        let body = self.render(buf, &intent).await?;
        let content_encoding = compress::content_encoding(intent.compression);
        let mut backoff = Duration::from_secs(1);
        loop {
            let res = self
                .shared
                .sink
                .put_object(
                    &doc.account,
                    &intent.role_arn,
                    &intent.bucket,
                    &intent.key,
                    body.clone(),
                    content_encoding,
                )
                .await;
            let e = match res {
                Ok(()) => {
                    self.handle.set_failure(None);
                    break;
                }
                Err(e) => e,
            };
            tracing::warn!(stream = %doc.name, key = %intent.key, error = %e, "delivery to S3 failed");
            self.handle.set_failure(Some(failure_of(&e)));
            let now = self.now();
            let (attempts, started) = match self.buffers.get_mut(id) {
                Some(buf) => {
                    buf.attempts = buf.attempts.saturating_add(1);
                    (buf.attempts, *buf.failing_since_ms.get_or_insert(now))
                }
                None => return Ok(true),
            };
            if mode == Mode::Once {
                return Ok(false);
            }
            let window_ms = i64::try_from(self.shared.config.retry_max_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
            // Error objects have nowhere else to go: they are retried until written.
            if now - started >= window_ms
                && !is_error_partition(id)
                && let Some(buf) = self.buffers.get(id)
            {
                let (error_code, error_message) = error_code_of(&e);
                let failed = FailedDoc {
                    key: self.error_key(&doc, buf, intent.compression),
                    error_code: error_code.to_string(),
                    error_message,
                    attempts,
                    attempt_ending_ms: now,
                };
                tracing::error!(stream = %doc.name, key = %intent.key, error_key = %failed.key, records = buf.records.len(),
                    "retry window expired: the records go to the error output");
                let mut intent = intent;
                intent.failed = Some(failed);
                self.shared
                    .meta
                    .write_grouped(vec![MetaOp::Put {
                        table: T_INTENTS.into(),
                        key: self.intent_key(id),
                        value: to_json(&intent)?,
                    }])
                    .await?;
                if let Some(b) = self.buffers.get_mut(id) {
                    b.intent = Some(intent.clone());
                }
                return self.deliver_failed(id, intent, mode).await;
            }
            if !self.backoff(&mut backoff).await {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Sleeps `backoff` (doubling it up to 30 s); `false` when a flush was requested meanwhile
    /// (give up for now).
    async fn backoff(&self, backoff: &mut Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(*backoff) => {}
            _ = self.handle.retry_wake.notified() => {}
        }
        if self.handle.flush_requested.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        *backoff = (*backoff * 2).min(Duration::from_secs(30));
        true
    }

    /// The key of the error object of a buffer whose delivery gave up (same layout as the
    /// other error objects: ErrorOutputPrefix with `DELIVERY_FAILED_OUTPUT_TYPE`).
    fn error_key(&self, doc: &StreamDoc, buf: &Buffer, compression: Compression) -> String {
        let dest = &doc.destination;
        let tz = dest
            .custom_time_zone
            .as_deref()
            .and_then(TimeZone::parse)
            .unwrap_or(TimeZone::UTC);
        let time_ms = if buf.oldest_arrival_ms == i64::MAX {
            self.now()
        } else {
            buf.oldest_arrival_ms
        };
        let ctx = KeyContext {
            time_ms,
            tz,
            partition: buf.keys.as_ref(),
            lambda_partition: buf.lambda_keys.as_ref(),
            error_output_type: None,
        };
        let prefix = keys::error_prefix(
            dest.prefix.as_deref(),
            dest.error_output_prefix.as_deref(),
            DELIVERY_FAILED_OUTPUT_TYPE,
            &ctx,
        )
        .unwrap_or_else(|e| {
            tracing::warn!(stream = %doc.name, error = %e, "error prefix evaluation failed; using the default layout");
            format!("{DELIVERY_FAILED_OUTPUT_TYPE}/")
        });
        let ext = dest
            .file_extension
            .clone()
            .unwrap_or_else(|| compress::extension(compression).to_string());
        keys::object_key(&prefix, &doc.name, doc.stream_version, time_ms, tz, &ext)
    }

    /// Writes the records of a buffer whose delivery gave up to the error output as AWS
    /// error-record JSON lines, retrying (with backoff, never dropping) until written (the
    /// caller then checkpoints as for a delivery).
    async fn deliver_failed(&mut self, id: &str, intent: IntentDoc, mode: Mode) -> Result<bool, Error> {
        let Some(failed) = intent.failed.clone() else {
            return Ok(false);
        };
        let Some(buf) = self.buffers.get(id) else {
            return Ok(true);
        };
        let mut raw = Vec::new();
        for (data, arrival_ms, _) in buf.iter() {
            let line = serde_json::json!({
                "attemptsMade": failed.attempts,
                "arrivalTimestamp": arrival_ms,
                "errorCode": failed.error_code,
                "errorMessage": failed.error_message,
                "attemptEndingTimestamp": failed.attempt_ending_ms,
                "rawData": base64::engine::general_purpose::STANDARD.encode(data),
            });
            raw.extend_from_slice(line.to_string().as_bytes());
            raw.push(b'\n');
        }
        let format = intent.compression;
        let level = self.shared.config.gzip_level;
        let entry = failed
            .key
            .rsplit('/')
            .next()
            .map(|f| f.split('.').next().unwrap_or(f).to_string())
            .unwrap_or_default();
        let body = tokio::task::spawn_blocking(move || compress::compress_named(format, level, &raw, &entry))
            .await
            .map_err(|e| Error::Internal(format!("compression task: {e}")))?
            .map_err(|e| Error::Internal(format!("compression: {e}")))?;
        let body = Bytes::from(body);
        let account = self.handle.doc().account;
        let mut backoff = Duration::from_secs(1);
        loop {
            let res = self
                .shared
                .sink
                .put_object(
                    &account,
                    &intent.role_arn,
                    &intent.bucket,
                    &failed.key,
                    body.clone(),
                    compress::content_encoding(format),
                )
                .await;
            match res {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(stream = %self.handle.name(), key = %failed.key, error = %e, "writing the error output failed");
                    self.handle.set_failure(Some(failure_of(&e)));
                    if mode == Mode::Once || !self.backoff(&mut backoff).await {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    async fn render(&self, buf: &Buffer, intent: &IntentDoc) -> Result<Bytes, Error> {
        let mut raw = Vec::new();
        if buf.id == ERROR_PARTITION {
            for (data, arrival_ms, error) in buf.iter() {
                let mut line = serde_json::json!({
                    "attemptsMade": error.map_or(1, |e| e.attempts),
                    "arrivalTimestamp": arrival_ms,
                    "errorCode": error.and_then(|e| e.code.as_deref()).unwrap_or(PARTITION_ERROR_CODE),
                    "errorMessage": error.map_or("", |e| e.message.as_str()),
                    "attemptEndingTimestamp": error.and_then(|e| e.ending_ms).unwrap_or(intent.attempt_ending_ms),
                    "rawData": base64::engine::general_purpose::STANDARD.encode(data),
                });
                if let Some(arn) = error.and_then(|e| e.lambda_arn.as_deref()) {
                    line[LAMBDA_ARN_FIELD] = serde_json::Value::String(arn.to_string());
                }
                raw.extend_from_slice(line.to_string().as_bytes());
                raw.push(b'\n');
            }
        } else if buf.id == FORMAT_ERROR_PARTITION {
            for (data, arrival_ms, error) in buf.iter() {
                let line = serde_json::json!({
                    "attemptsMade": 1,
                    "arrivalTimestamp": arrival_ms,
                    "lastErrorCode": convert::MALFORMED_DATA,
                    "lastErrorMessage": error.map_or("", |e| e.message.as_str()),
                    "attemptEndingTimestamp": intent.attempt_ending_ms,
                    "rawData": base64::engine::general_purpose::STANDARD.encode(data),
                });
                raw.extend_from_slice(line.to_string().as_bytes());
                raw.push(b'\n');
            }
        } else if let Some(conv) = intent.conversion.clone() {
            let (data, ends) = (buf.payload(), buf.ends());
            let (file, skipped) = tokio::task::spawn_blocking(move || convert::to_parquet(&conv, split(&data, &ends)))
                .await
                .map_err(|e| Error::Internal(format!("conversion task: {e}")))?
                .map_err(|e| Error::Internal(format!("format conversion: {e}")))?;
            if skipped > 0 {
                tracing::warn!(stream = %self.handle.name(), key = %intent.key, skipped, "records that no longer fit the schema were dropped");
            }
            raw = file;
        } else {
            // Plain records: the buffer's one payload allocation is the object (shared, not
            // copied), or is compressed straight from it.
            let format = intent.compression;
            let data = buf.payload();
            if format == Compression::Uncompressed {
                return Ok(data);
            }
            let level = self.shared.config.gzip_level;
            let entry = intent.zip_entry.clone();
            let body = tokio::task::spawn_blocking(move || compress::compress_named(format, level, &data, &entry))
                .await
                .map_err(|e| Error::Internal(format!("compression task: {e}")))?
                .map_err(|e| Error::Internal(format!("compression: {e}")))?;
            return Ok(Bytes::from(body));
        }
        let format = intent.compression;
        let level = self.shared.config.gzip_level;
        let entry = intent.zip_entry.clone();
        let body = tokio::task::spawn_blocking(move || compress::compress_named(format, level, &raw, &entry))
            .await
            .map_err(|e| Error::Internal(format!("compression task: {e}")))?
            .map_err(|e| Error::Internal(format!("compression: {e}")))?;
        Ok(Bytes::from(body))
    }

    fn intent_key(&self, partition: &str) -> String {
        format!("{}/{}", self.handle.uid, partition)
    }

    /// Advances the checkpoint past a delivered buffer and deletes its intent, in ONE
    /// transaction; then removes the buffer.
    async fn commit(&mut self, id: &str) -> Result<(), Error> {
        let Some(buf) = self.buffers.get(id) else {
            return Ok(());
        };
        let mut ckpt = self.ckpt.clone();
        for (unit, (_, to)) in &buf.ranges {
            let u = ckpt.units.entry(unit.clone()).or_default();
            let entry = u.partitions.entry(id.to_string()).or_insert_with(|| to.clone());
            if pos_cmp(to, entry) == Ordering::Greater {
                *entry = to.clone();
            }
        }
        // The base of each unit: before the oldest record still buffered, else all read.
        for (unit, c) in ckpt.units.iter_mut() {
            let mut base = self.units.get(unit).and_then(|u| u.after.clone());
            let mut in_buffers = false;
            for b in self.buffers.values().filter(|b| b.id != id) {
                if let Some((after, _)) = b.ranges.get(unit) {
                    in_buffers = true;
                    if opt_pos_cmp(after.as_deref(), base.as_deref()) == Ordering::Less {
                        base = after.clone();
                    }
                }
            }
            if opt_pos_cmp(base.as_deref(), c.after.as_deref()) == Ordering::Greater {
                c.after = base;
            }
            if let Some(after) = c.after.clone() {
                c.partitions.retain(|_, p| pos_cmp(p, &after) == Ordering::Greater);
            }
            c.done = !in_buffers && self.units.get(unit).is_some_and(|u| u.ended);
        }
        self.shared
            .meta
            .write_grouped(vec![
                MetaOp::Put {
                    table: T_CHECKPOINTS.into(),
                    key: self.handle.uid.clone(),
                    value: to_json(&ckpt)?,
                },
                MetaOp::Delete {
                    table: T_INTENTS.into(),
                    key: self.intent_key(id),
                },
            ])
            .await?;
        self.ckpt = ckpt;
        self.buffers.remove(id);
        self.trim_log();
        Ok(())
    }

    /// Commits a group flush: ONE transaction advances every unit's checkpoint over the
    /// group's span (`group_to`) and deletes all the group's intents; then the buffers go.
    async fn commit_group(&mut self, group_to: &BTreeMap<String, String>) -> Result<(), Error> {
        let mut ckpt = self.ckpt.clone();
        for (unit, to) in group_to {
            let rt = self.units.entry(unit.clone()).or_insert_with(|| UnitRt {
                after: None,
                ended: false,
                parents: Vec::new(),
            });
            if opt_pos_cmp(Some(to), rt.after.as_deref()) == Ordering::Greater {
                rt.after = Some(to.clone());
            }
            let c = ckpt.units.entry(unit.clone()).or_insert_with(|| UnitCheckpoint {
                parents: rt.parents.clone(),
                ..UnitCheckpoint::default()
            });
            if opt_pos_cmp(Some(to), c.after.as_deref()) == Ordering::Greater {
                c.after = Some(to.clone());
            }
        }
        for (unit, c) in ckpt.units.iter_mut() {
            c.partitions.clear();
            c.done = self
                .units
                .get(unit)
                .is_some_and(|u| u.ended && opt_pos_cmp(u.after.as_deref(), c.after.as_deref()) != Ordering::Greater);
        }
        let mut ops = vec![MetaOp::Put {
            table: T_CHECKPOINTS.into(),
            key: self.handle.uid.clone(),
            value: to_json(&ckpt)?,
        }];
        for id in self.buffers.keys() {
            ops.push(MetaOp::Delete {
                table: T_INTENTS.into(),
                key: self.intent_key(id),
            });
        }
        self.shared.meta.write_grouped(ops).await?;
        self.ckpt = ckpt;
        self.buffers.clear();
        self.trim_log();
        Ok(())
    }

    /// With a Lambda processor, records the function dropped are buffered nowhere: when no
    /// buffer is open, everything read is processed, so the checkpoint moves up to the read
    /// cursor (and delivered log segments can be deleted).
    async fn advance_idle(&mut self) -> Result<(), Error> {
        if !self.buffers.is_empty() {
            return Ok(());
        }
        let mut ckpt = self.ckpt.clone();
        let mut changed = false;
        for (unit, u) in &self.units {
            let c = ckpt.units.entry(unit.clone()).or_insert_with(|| UnitCheckpoint {
                parents: u.parents.clone(),
                ..UnitCheckpoint::default()
            });
            if opt_pos_cmp(u.after.as_deref(), c.after.as_deref()) == Ordering::Greater {
                c.after = u.after.clone();
                changed = true;
            }
            if c.done != u.ended {
                c.done = u.ended;
                changed = true;
            }
            if !c.partitions.is_empty() {
                c.partitions.clear();
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        self.shared
            .meta
            .write_grouped(vec![MetaOp::Put {
                table: T_CHECKPOINTS.into(),
                key: self.handle.uid.clone(),
                value: to_json(&ckpt)?,
            }])
            .await?;
        self.ckpt = ckpt;
        self.trim_log();
        Ok(())
    }

    /// Deletes sealed log segments that hold only delivered records (DirectPut).
    fn trim_log(&self) {
        if let Some(log) = self.handle.log.as_ref()
            && let Some(c) = self.ckpt.units.get(LOG_UNIT)
        {
            // Delete sealed segments that hold only delivered records.
            let base_next = c
                .after
                .as_deref()
                .and_then(|a| a.parse::<u64>().ok())
                .map_or(0, |a| a + 1);
            let cut = if base_next >= log.next_offset() {
                log.partition_tip(0).map(|(_, ts)| ts)
            } else {
                log.read(0, base_next, 1, 1, i64::MIN)
                    .ok()
                    .and_then(|r| r.records.first().map(|r| r.timestamp_ms - 1))
            };
            if let Some(cut) = cut
                && let Err(e) = log.trim_before(cut)
            {
                tracing::warn!(stream = %self.handle.name(), error = %e, "cannot trim delivered log segments");
            }
        }
    }
}
