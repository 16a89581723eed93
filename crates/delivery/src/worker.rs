//! One background worker per delivery stream: read the source, buffer, flush objects with
//! the intent → put → checkpoint protocol (see the crate docs for the recovery rule).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use kd_storage::MetaOp;
use tokio::sync::{mpsc, oneshot};

use crate::keys::{self, KeyContext, TimeZone};
use crate::model::{Compression, FailureDescription, FormatConversion, PortError, Source};
use crate::store::{
    CheckpointDoc, ERROR_PARTITION, FORMAT_ERROR_PARTITION, FORMAT_VERSION, FailedDoc, IntentDoc, T_CHECKPOINTS,
    T_INTENTS, T_STREAMS, UnitCheckpoint, is_error_partition, opt_pos_cmp, pos_cmp, to_json,
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
    /// Every record's payload, back to back (boundaries in `records`). Pre-sized from the
    /// size hint and never grown past it by doubling: one large allocation (mmapped by the
    /// allocator, returned to the OS when freed) instead of one small allocation per record.
    data: Payload,
    /// The size hint (bytes): capacity grows up to it, then only exactly as needed.
    hint: usize,
    records: Vec<BufRecord>,
    /// Error messages of records bound for an error output: (record index, message).
    errors: Vec<(usize, String)>,
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
        }
    }

    fn push(&mut self, item: &Item, error: Option<String>) {
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
        let need = v.len() + item.data.len();
        if need > v.capacity() {
            // Double up to the hint, never past it; beyond the hint grow exactly.
            let target = need.max(v.capacity().saturating_mul(2).min(self.hint));
            v.reserve_exact(target - v.len());
        }
        v.extend_from_slice(&item.data);
        self.bytes += item.data.len();
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
    fn iter(&self) -> impl Iterator<Item = (&[u8], i64, Option<&str>)> {
        let data = self.data.as_slice();
        let mut errors = self.errors.iter().peekable();
        let mut start = 0;
        self.records.iter().enumerate().map(move |(i, r)| {
            let slice = &data[start..r.end];
            start = r.end;
            let err = match errors.peek() {
                Some((j, e)) if *j == i => {
                    errors.next();
                    Some(e.as_str())
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
        Worker {
            shared,
            handle,
            ckpt,
            units,
            buffers: BTreeMap::new(),
            cmds,
            recovered: false,
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
        let (created_ms, is_stream) = {
            let doc = self.handle.doc();
            (doc.created_ms, matches!(doc.source, Source::KinesisStream { .. }))
        };
        if self.now() < created_ms + self.shared.config.create_delay_ms {
            return Ok(());
        }
        if !self.recovered {
            self.recover().await?;
            self.recovered = true;
        }
        // Buffers with a recorded intent are closed: deliver them before reading more.
        let pending: Vec<String> = self
            .buffers
            .iter()
            .filter(|(_, b)| b.intent.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for id in pending {
            if !self.flush(&id, mode).await? {
                return Ok(());
            }
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
            for item in items {
                if !self.dispatch(item, mode).await? {
                    return Ok(());
                }
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

    /// Rebuilds the buffers of pending intents by re-reading exactly their ranges.
    async fn recover(&mut self) -> Result<(), Error> {
        let uid = self.handle.uid.clone();
        let intents = self.shared.meta.scan_prefix(T_INTENTS, &format!("{uid}/"))?;
        let doc = self.handle.doc();
        let is_stream = matches!(doc.source, Source::KinesisStream { .. });
        let hint = size_hint(doc.destination.size_mb);
        for (_, raw) in intents {
            let intent: IntentDoc = crate::store::from_json(&raw)?;
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
                    let items = if is_stream {
                        self.read_shard(unit, cursor.as_deref()).await?.0
                    } else {
                        self.read_log(cursor.as_deref())?
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
                            buf.push(&item, err);
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
        Ok(())
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
        let mut prev = after.map(str::to_string);
        let mut out = Vec::with_capacity(batch.records.len());
        for r in batch.records {
            out.push(Item {
                unit: shard.to_string(),
                prev: prev.replace(r.sequence_number.clone()),
                pos: r.sequence_number,
                data: r.data,
                arrival_ms: r.arrival_ms,
            });
        }
        Ok((out, batch.end_of_shard))
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

    /// Puts one record into its buffer; flushes by size. `Ok(false)`: a flush could not
    /// complete (stop reading for now).
    async fn dispatch(&mut self, item: Item, mode: Mode) -> Result<bool, Error> {
        let (queries, conversion, size_limit) = {
            let doc = self.handle.doc();
            (
                doc.destination.dynamic_partitioning.as_ref().map(|d| d.queries.clone()),
                doc.destination.format_conversion,
                size_hint(doc.destination.size_mb) as u64,
            )
        };
        let (pid, keys, err) = partition_of(queries.as_ref(), conversion.as_ref(), &item.data);
        self.units
            .entry(item.unit.clone())
            .or_insert_with(|| UnitRt {
                after: None,
                ended: false,
                parents: Vec::new(),
            })
            .after = Some(item.pos.clone());
        if let Some(done) = self.ckpt.units.get(&item.unit).and_then(|u| u.partitions.get(&pid))
            && pos_cmp(&item.pos, done) != Ordering::Greater
        {
            return Ok(true); // delivered before a restart
        }
        if !self.buffers.contains_key(&pid) && self.buffers.len() >= MAX_PARTITIONS {
            // (The cursor already covers this item, which is pushed below in any case.)
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
        let now = self.now();
        let buf = self.buffers.entry(pid.clone()).or_insert_with(|| {
            let presize = queries.is_none() && !is_error_partition(&pid);
            Buffer::new(pid.clone(), keys, now, size_limit as usize, presize)
        });
        buf.push(&item, err);
        if buf.bytes as u64 >= size_limit {
            return self.flush(&pid, mode).await;
        }
        Ok(true)
    }

    async fn flush_due(&mut self, mode: Mode, everything: bool) -> Result<bool, Error> {
        let interval_ms = i64::from(self.handle.doc().destination.interval_secs) * 1000;
        let now = self.now();
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

    /// Intent → put → checkpoint. `Ok(true)` when the buffer was delivered (or dropped after
    /// the retry window), `Ok(false)` when it is still pending.
    async fn flush(&mut self, id: &str, mode: Mode) -> Result<bool, Error> {
        let Some(buf) = self.buffers.get(id) else {
            return Ok(true);
        };
        let doc = self.handle.doc();
        let intent = match &buf.intent {
            Some(i) => i.clone(),
            None => {
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
                // With format conversion the objects are Parquet files (and error objects
                // JSON lines), never compressed as a whole.
                let compression = if dest.format_conversion.is_some() {
                    Compression::Uncompressed
                } else {
                    dest.compression
                };
                let ext = dest.file_extension.clone().unwrap_or_else(|| {
                    if dest.format_conversion.is_some() && !is_error_partition(&buf.id) {
                        convert::PARQUET_EXTENSION.to_string()
                    } else {
                        compress::extension(compression).to_string()
                    }
                });
                let key = keys::object_key(&prefix, &doc.name, doc.stream_version, time_ms, tz, &ext);
                let file = key.rsplit('/').next().unwrap_or(&key);
                let zip_entry = file.strip_suffix(ext.as_str()).unwrap_or(file).to_string();
                let intent = IntentDoc {
                    version: FORMAT_VERSION,
                    partition: buf.id.clone(),
                    role_arn: dest.role_arn.clone(),
                    bucket: bucket_name(&dest.bucket_arn),
                    key,
                    compression,
                    zip_entry,
                    queries: dest.dynamic_partitioning.as_ref().map(|d| d.queries.clone()),
                    attempt_ending_ms: self.now(),
                    ranges: buf.ranges.clone(),
                    conversion: dest.format_conversion.clone(),
                    failed: None,
                };
                self.shared
                    .meta
                    .write_grouped(vec![MetaOp::Put {
                        table: T_INTENTS.into(),
                        key: self.intent_key(&buf.id),
                        value: to_json(&intent)?,
                    }])
                    .await?;
                if let Some(b) = self.buffers.get_mut(id) {
                    b.intent = Some(intent.clone());
                    b.seal();
                }
                intent
            }
        };
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
        self.commit(id).await?;
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
    fn error_key(&self, doc: &crate::store::StreamDoc, buf: &Buffer, compression: Compression) -> String {
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
    /// error-record JSON lines, retrying (with backoff, never dropping) until written; then
    /// checkpoints as for a delivery.
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
        self.commit(id).await?;
        Ok(true)
    }

    async fn render(&self, buf: &Buffer, intent: &IntentDoc) -> Result<Bytes, Error> {
        let mut raw = Vec::new();
        if buf.id == ERROR_PARTITION {
            for (data, arrival_ms, error) in buf.iter() {
                let line = serde_json::json!({
                    "attemptsMade": 1,
                    "arrivalTimestamp": arrival_ms,
                    "errorCode": PARTITION_ERROR_CODE,
                    "errorMessage": error.unwrap_or_default(),
                    "attemptEndingTimestamp": intent.attempt_ending_ms,
                    "rawData": base64::engine::general_purpose::STANDARD.encode(data),
                });
                raw.extend_from_slice(line.to_string().as_bytes());
                raw.push(b'\n');
            }
        } else if buf.id == FORMAT_ERROR_PARTITION {
            for (data, arrival_ms, error) in buf.iter() {
                let line = serde_json::json!({
                    "attemptsMade": 1,
                    "arrivalTimestamp": arrival_ms,
                    "lastErrorCode": convert::MALFORMED_DATA,
                    "lastErrorMessage": error.unwrap_or_default(),
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
        Ok(())
    }
}
