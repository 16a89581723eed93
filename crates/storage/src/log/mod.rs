//! A durable, segmented, append-only record log with group commit.
//!
//! # Model
//!
//! A [`Log`] stores records (an opaque key of at most 65535 bytes plus a payload) in numbered
//! *partitions*. Offsets are log-wide `u64`s assigned consecutively by one writer thread in
//! commit order; the records of one [`AppendBatch`] get consecutive offsets. Every written
//! batch gets one timestamp from the [`Clock`], made monotonic non-decreasing across the
//! whole log (`max(previous, now)`, also across restarts). Because offsets and timestamps
//! both grow with commit order, each partition's records are sorted by both, which lets the
//! in-memory index answer "from offset" and "at time" queries with binary searches.
//!
//! # Group commit
//!
//! [`Log::append`] sends its batches over a channel to the log's writer thread and awaits a
//! `tokio::sync::oneshot` reply. The writer takes *all* requests that are pending, encodes
//! one on-disk batch per [`AppendBatch`] into one buffer, writes it with a single positional
//! write, and then, under [`FsyncPolicy::Always`], issues ONE `fdatasync` for the whole group.
//! Only then does it publish the new index entries (making the records readable) and answer
//! every request. Concurrent appenders therefore share syncs. Under
//! [`FsyncPolicy::Interval`] the writer syncs on a timer and acknowledges (and publishes)
//! after the write; under [`FsyncPolicy::Never`] it never syncs on its own (rolls and
//! [`Log::sync`] still do).
//!
//! # Faults
//!
//! If a write or sync fails, every request of that group gets an error and nothing of it is
//! published or acknowledged. The log is then *faulted*: before the next group the writer
//! reopens the active segment, truncates it to its last committed length and syncs it. If
//! that fails the requests fail with [`Error::Faulted`]; if it succeeds writing resumes.
//! Committed data is never rewritten. [`FaultInjector`] lets tests make writes and syncs fail.
//!
//! # Readers
//!
//! Readers never talk to the writer. They take a short read lock on the shared state, copy
//! the index entries and `Arc<File>` handles they need, release the lock and read the
//! batches with positional reads (`read_exact_at`), verifying each batch's crc. The writer
//! holds the write lock only to publish entries, never across a write or a sync.
//!
//! # On-disk format (version 1, all integers little-endian)
//!
//! A log directory holds segment files `NNNNNNNNNNNNNNNNNNNN.log`, named by their base offset
//! (20 zero-padded decimal digits), and for sealed segments index files
//! `NNNNNNNNNNNNNNNNNNNN.idx`.
//!
//! Segment file:
//!
//! ```text
//! header : magic "KDLOGSEG" (8) | version u32 = 1 | reserved u32 = 0 | base_offset u64
//! batch* : len u32 | crc32 u32 | partition u32 | count u32 | first_offset u64
//!          | timestamp_ms i64 | record{count}
//! record : key_len u16 | key | data_len u32 | data
//! ```
//!
//! `len` is the number of bytes after the crc field (the *body*), `crc32` (crc32fast) covers
//! exactly those bytes. A body must be at least 24 and at most 1 GiB long, must hold
//! `count >= 1` records that fill it exactly, and `first_offset` must not go backwards.
//!
//! Index file (written when a segment is sealed; write to `.tmp`, fsync, rename):
//!
//! ```text
//! magic "KDLOGIDX" (8) | version u32 = 1 | reserved u32 = 0 | base_offset u64
//! | segment_len u64 | entry_count u32
//! | entry{entry_count}: partition u32 | count u32 | first_offset u64 | timestamp_ms i64
//!                       | pos u64 | len u32          (pos/len of the whole batch frame)
//! | crc32 u32 over everything before it
//! ```
//!
//! # Segments and rolling
//!
//! The last segment (highest base offset) is the *active* one; all others are sealed and
//! never written again. Before writing a group, if the active segment is longer than
//! [`LogConfig::segment_bytes`] and holds at least one batch, the writer *rolls*: it syncs
//! the segment, writes its index file, creates the next segment (base = next offset) with its
//! header, syncs it and the directory. A segment may thus exceed `segment_bytes` by one group.
//! [`Log::trim_before`] deletes whole sealed segments (oldest first) whose newest record is
//! older than a cut-off time.
//!
//! # Recovery rule (on [`Log::open`])
//!
//! * Leftover `*.tmp` files and index files without a segment are deleted.
//! * Each sealed segment is loaded from its index file if the index is valid and describes
//!   exactly the current segment file (base, length, contiguous frames, ascending offsets).
//!   Otherwise the segment is scanned and the index rewritten. Startup therefore reads only
//!   index files plus the active segment.
//! * The active segment is always scanned batch by batch (lengths, crc, structure, offsets).
//!   At the first torn or invalid batch the file is cut (truncated and synced) to the end of
//!   the last whole valid batch, and a warning states how many bytes were cut. A stale index
//!   of the active segment is deleted. An active segment whose header is torn is reset to an
//!   empty segment; a sealed one with a bad header, or segments whose offsets overlap, make
//!   `open` fail with [`Error::Corrupt`].
//! * The next offset is `max(end of the last recovered batch, base of the active segment,
//!   min_next_offset)`; the last timestamp is that of the last recovered batch.

mod codec;
mod recovery;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::error::Error;
use codec::{BatchEntry, MAX_BODY_LEN, MAX_KEY_LEN};
use writer::Command;

/// When the writer makes written data durable with `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Sync every group before acknowledging it (group commit).
    #[default]
    Always,
    /// Acknowledge after the write; sync at most this long after unsynced data was written.
    Interval(Duration),
    /// Never sync on our own; the OS flushes eventually.
    Never,
}

/// Tuning of a [`Log`].
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Roll to a new segment once the active one is larger than this (default 64 MiB).
    pub segment_bytes: u64,
    /// Durability policy (default [`FsyncPolicy::Always`]).
    pub fsync: FsyncPolicy,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 64 * 1024 * 1024,
            fsync: FsyncPolicy::Always,
        }
    }
}

/// One record to append.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Opaque key (partition key), at most 65535 bytes.
    pub key: Vec<u8>,
    /// Payload.
    pub data: Vec<u8>,
}

/// Records for one partition that receive consecutive offsets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppendBatch {
    /// Target partition.
    pub partition: u32,
    /// The records, in order.
    pub records: Vec<Record>,
}

/// Where an [`AppendBatch`] landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The batch's partition.
    pub partition: u32,
    /// Offset of the first record (for an empty batch: the next offset at commit time).
    pub first_offset: u64,
    /// Number of records.
    pub count: u32,
    /// Timestamp given to every record of the batch.
    pub timestamp_ms: i64,
}

/// A committed record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Log-wide offset.
    pub offset: u64,
    /// Commit timestamp (ms since the epoch, from the log's clock).
    pub timestamp_ms: i64,
    /// Key as appended.
    pub key: Vec<u8>,
    /// Payload as appended.
    pub data: Vec<u8>,
}

/// Answer of [`Log::read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Matching records in ascending offset order.
    pub records: Vec<StoredRecord>,
    /// Offset to continue reading this partition from: one past the last returned record if a
    /// limit stopped the read, otherwise the log's committed next offset (or `from_offset` if
    /// that is larger).
    pub next_offset: u64,
}

/// Switches that make the writer's I/O fail, to simulate a full or broken disk. Checked by
/// the writer before every write and every sync (including recovery syncs).
#[derive(Debug, Default)]
pub struct FaultInjector {
    /// When set, writes fail with an I/O error.
    pub fail_writes: AtomicBool,
    /// When set, syncs fail with an I/O error.
    pub fail_syncs: AtomicBool,
}

impl FaultInjector {
    /// Make writes fail (or stop failing).
    pub fn set_fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// Make syncs fail (or stop failing).
    pub fn set_fail_syncs(&self, fail: bool) {
        self.fail_syncs.store(fail, Ordering::SeqCst);
    }

    pub(crate) fn check_write(&self) -> std::io::Result<()> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected write failure"));
        }
        Ok(())
    }

    pub(crate) fn check_sync(&self) -> std::io::Result<()> {
        if self.fail_syncs.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected sync failure"));
        }
        Ok(())
    }
}

/// A segment file as readers see it.
#[derive(Debug, Clone)]
pub(crate) struct SegmentHandle {
    pub file: Arc<File>,
    pub path: PathBuf,
    /// Timestamp of the newest batch in the segment, if any.
    pub last_ts: Option<i64>,
}

/// State shared between the writer (publishes) and readers/trim.
#[derive(Debug)]
pub(crate) struct State {
    /// All live segments by base offset.
    pub segments: BTreeMap<u64, SegmentHandle>,
    /// Base offset of the active segment (never trimmed).
    pub active_base: u64,
    /// Committed batches per partition, ascending by offset (and timestamp).
    pub partitions: HashMap<u32, Vec<BatchEntry>>,
    /// One past the last committed offset (or the log's starting offset).
    pub committed_next: u64,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub dir: PathBuf,
    pub state: RwLock<State>,
    pub sync_count: AtomicU64,
    pub faults: FaultInjector,
    /// Held by the writer while it collects a group; tests hold it to force grouping.
    pub group_gate: Mutex<()>,
    /// Number of append requests handed to the writer's channel.
    pub requests_sent: AtomicU64,
}

impl Inner {
    pub fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

pub(crate) fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.idx"))
}

/// A durable, segmented, append-only record log. See the [module docs](self).
///
/// `Log` is `Send + Sync`; share it as `Arc<Log>`. Dropping it stops the writer thread after
/// it has answered every request already sent.
pub struct Log {
    inner: Arc<Inner>,
    tx: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.inner.dir)
            .field("next_offset", &self.next_offset())
            .finish_non_exhaustive()
    }
}

impl Log {
    /// Opens (creating `dir` if missing) and recovers the log in `dir`, then starts its writer
    /// thread. The next assigned offset is `max(recovered next offset, min_next_offset)`.
    pub fn open(dir: &Path, config: LogConfig, clock: Arc<dyn Clock>, min_next_offset: u64) -> Result<Log, Error> {
        let recovered = recovery::recover(dir, min_next_offset)?;
        let next_offset = recovered.next_offset;
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            state: RwLock::new(State {
                segments: recovered.segments,
                active_base: recovered.active.base,
                partitions: recovered.partitions,
                committed_next: next_offset,
            }),
            sync_count: AtomicU64::new(0),
            faults: FaultInjector::default(),
            group_gate: Mutex::new(()),
            requests_sent: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel();
        let writer = writer::Writer::new(
            inner.clone(),
            rx,
            config,
            clock,
            recovered.active,
            next_offset,
            recovered.last_ts,
        );
        let thread = std::thread::Builder::new()
            .name("kd-log-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::io("spawn the log writer thread", e))?;
        Ok(Log {
            inner,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Appends the batches as one unit of the next group commit. Returns one [`Appended`] per
    /// input batch, in input order, once the data is durable per the [`FsyncPolicy`].
    ///
    /// If the future is dropped after the request was sent, the records may still be
    /// committed.
    pub async fn append(&self, batches: Vec<AppendBatch>) -> Result<Vec<Appended>, Error> {
        for batch in &batches {
            validate_batch(batch)?;
        }
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Command::Append { batches, reply }).map_err(|_| Error::Closed)?;
        self.inner.requests_sent.fetch_add(1, Ordering::SeqCst);
        rx.await.map_err(|_| Error::Closed)?
    }

    /// The next offset that will be assigned (one past the last committed record, or the
    /// starting offset of an empty log).
    pub fn next_offset(&self) -> u64 {
        self.inner.read_state().committed_next
    }

    /// Reads committed records of `partition` with `offset >= from_offset` and
    /// `timestamp_ms >= min_timestamp_ms`, ascending. Stops before exceeding `max_records`
    /// records or `max_bytes` of key + data bytes, but returns at least one record if any
    /// matches (unless `max_records` is 0).
    pub fn read(
        &self,
        partition: u32,
        from_offset: u64,
        max_records: usize,
        max_bytes: usize,
        min_timestamp_ms: i64,
    ) -> Result<ReadResult, Error> {
        let mut records: Vec<StoredRecord> = Vec::new();
        let mut bytes = 0usize;
        if max_records == 0 {
            return Ok(ReadResult {
                records,
                next_offset: from_offset,
            });
        }
        let mut cursor = from_offset;
        loop {
            // Plan a chunk of batches under the lock; read them without it.
            let (plan, exhausted, committed_next) = {
                let st = self.inner.read_state();
                let committed_next = st.committed_next;
                let Some(entries) = st.partitions.get(&partition) else {
                    return Ok(finish(records, from_offset, committed_next));
                };
                let by_offset = entries.partition_point(|e| e.end_offset() <= cursor);
                let by_time = entries.partition_point(|e| e.timestamp_ms < min_timestamp_ms);
                let start = by_offset.max(by_time);
                let mut plan = Vec::new();
                let mut est_records = records.len();
                let mut est_bytes = bytes;
                let mut idx = start;
                while idx < entries.len() {
                    let e = entries[idx];
                    let Some(seg) = st.segments.get(&e.segment) else {
                        return Err(Error::Corrupt {
                            path: self.inner.dir.clone(),
                            detail: format!("index refers to missing segment {}", e.segment),
                        });
                    };
                    plan.push((e, seg.file.clone(), seg.path.clone()));
                    idx += 1;
                    // Include one batch beyond the estimated limits so a limit is detected
                    // without another round trip in the common case.
                    if est_records >= max_records || est_bytes >= max_bytes {
                        break;
                    }
                    est_records = est_records.saturating_add(e.count as usize);
                    est_bytes = est_bytes.saturating_add(payload_len(&e));
                }
                (plan, idx >= entries.len(), committed_next)
            };
            let mut frame = Vec::new();
            for (entry, file, path) in plan {
                frame.resize(entry.len as usize, 0);
                file.read_exact_at(&mut frame, entry.pos)
                    .map_err(|e| Error::io(format!("read batch from {}", path.display()), e))?;
                let batch = codec::decode_frame(&frame).map_err(|e| Error::Corrupt {
                    path: path.clone(),
                    detail: format!("batch at byte {}: {e}", entry.pos),
                })?;
                let h = batch.header;
                if h.partition != entry.partition || h.first_offset != entry.first_offset || h.count != entry.count {
                    return Err(Error::Corrupt {
                        path,
                        detail: format!("batch at byte {} does not match the index", entry.pos),
                    });
                }
                for (i, (key, data)) in batch.records.into_iter().enumerate() {
                    let offset = h.first_offset + i as u64;
                    if offset < cursor {
                        continue;
                    }
                    let size = key.len() + data.len();
                    if records.len() >= max_records || (!records.is_empty() && bytes.saturating_add(size) > max_bytes) {
                        let next_offset = records.last().map_or(from_offset, |r| r.offset + 1);
                        return Ok(ReadResult { records, next_offset });
                    }
                    bytes += size;
                    records.push(StoredRecord {
                        offset,
                        timestamp_ms: h.timestamp_ms,
                        key: key.to_vec(),
                        data: data.to_vec(),
                    });
                }
                cursor = entry.end_offset();
            }
            if exhausted {
                return Ok(finish(records, from_offset, committed_next));
            }
        }
    }

    /// Offset of the first committed record of `partition` with `timestamp_ms >= t`.
    pub fn offset_at_time(&self, partition: u32, timestamp_ms: i64) -> Option<u64> {
        let st = self.inner.read_state();
        let entries = st.partitions.get(&partition)?;
        let i = entries.partition_point(|e| e.timestamp_ms < timestamp_ms);
        entries.get(i).map(|e| e.first_offset)
    }

    /// `(offset, timestamp)` of the last committed record of `partition`.
    pub fn partition_tip(&self, partition: u32) -> Option<(u64, i64)> {
        let st = self.inner.read_state();
        let last = st.partitions.get(&partition)?.last()?;
        Some((last.end_offset() - 1, last.timestamp_ms))
    }

    /// Deletes whole sealed segments, oldest first, whose newest record is older than
    /// `timestamp_ms`. Returns how many segments were removed.
    pub fn trim_before(&self, timestamp_ms: i64) -> Result<usize, Error> {
        let removed: Vec<(u64, PathBuf)> = {
            let mut st = self.inner.write_state();
            let active = st.active_base;
            let victims: Vec<u64> = st
                .segments
                .iter()
                .take_while(|(base, seg)| **base < active && seg.last_ts.is_none_or(|ts| ts < timestamp_ms))
                .map(|(base, _)| *base)
                .collect();
            let Some(&last_victim) = victims.last() else {
                return Ok(0);
            };
            for entries in st.partitions.values_mut() {
                let n = entries.partition_point(|e| e.segment <= last_victim);
                entries.drain(..n);
            }
            st.partitions.retain(|_, entries| !entries.is_empty());
            victims
                .into_iter()
                .filter_map(|base| st.segments.remove(&base).map(|s| (base, s.path)))
                .collect()
        };
        // Readers that planned a read before the removal keep their `Arc<File>`s, which stay
        // valid after unlinking.
        let mut first_error = None;
        for (base, path) in &removed {
            for p in [path.clone(), index_path(&self.inner.dir, *base)] {
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        first_error.get_or_insert_with(|| Error::io(format!("delete {}", p.display()), e));
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(removed.len()),
        }
    }

    /// Makes everything written so far durable (waits for the writer). Blocks the calling
    /// thread; from async code call it at shutdown or via `spawn_blocking`.
    pub fn sync(&self) -> Result<(), Error> {
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        let (reply, rx) = mpsc::sync_channel(1);
        tx.send(Command::Sync { reply }).map_err(|_| Error::Closed)?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    /// Stops the writer and deletes the log's directory with everything in it.
    pub fn destroy(mut self) -> Result<(), Error> {
        self.shutdown();
        match std::fs::remove_dir_all(&self.inner.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("delete {}", self.inner.dir.display()), e)),
        }
    }

    /// Switches to simulate I/O failures.
    pub fn fault_injector(&self) -> &FaultInjector {
        &self.inner.faults
    }

    /// Number of data syncs (`fdatasync` of segment files) performed so far.
    pub fn sync_count(&self) -> u64 {
        self.inner.sync_count.load(Ordering::SeqCst)
    }

    /// Lowest base offset of a live segment: everything below it has been trimmed.
    #[cfg(test)]
    pub(crate) fn first_segment_base(&self) -> u64 {
        let st = self.inner.read_state();
        st.segments.keys().next().copied().unwrap_or(st.active_base)
    }

    #[cfg(test)]
    pub(crate) fn segment_count(&self) -> usize {
        self.inner.read_state().segments.len()
    }

    #[cfg(test)]
    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    fn shutdown(&mut self) {
        // Closing the channel makes the writer drain what is queued and exit.
        self.tx = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(dir = %self.inner.dir.display(), "log writer thread panicked");
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn finish(records: Vec<StoredRecord>, from_offset: u64, committed_next: u64) -> ReadResult {
    ReadResult {
        records,
        next_offset: from_offset.max(committed_next),
    }
}

/// Exact key + data bytes of a batch, derived from its frame length.
fn payload_len(e: &BatchEntry) -> usize {
    (e.len as usize)
        .saturating_sub(codec::FRAME_HEADER_LEN + codec::BODY_HEADER_LEN + codec::RECORD_OVERHEAD * e.count as usize)
}

fn validate_batch(batch: &AppendBatch) -> Result<(), Error> {
    if batch.records.len() > u32::MAX as usize {
        return Err(Error::TooLarge {
            what: "batch record count",
            size: batch.records.len(),
            limit: u32::MAX as usize,
        });
    }
    for r in &batch.records {
        if r.key.len() > MAX_KEY_LEN {
            return Err(Error::TooLarge {
                what: "record key",
                size: r.key.len(),
                limit: MAX_KEY_LEN,
            });
        }
    }
    match codec::body_len(&batch.records) {
        Some(len) if len <= MAX_BODY_LEN => Ok(()),
        len => Err(Error::TooLarge {
            what: "batch",
            size: len.unwrap_or(usize::MAX),
            limit: MAX_BODY_LEN,
        }),
    }
}
