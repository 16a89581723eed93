//! The single writer thread of a log: group commit, rolling, fault recovery.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Instant;

use tokio::sync::oneshot;

use super::codec::{self, BatchEntry, BatchHeader, SEGMENT_HEADER_LEN};
use super::recovery::{self, ActiveSegment};
use super::{AppendBatch, Appended, FsyncPolicy, Inner, LogConfig, SegmentHandle, lock};
use crate::clock::Clock;
use crate::error::Error;

/// Group buffers larger than this are released after use.
const MAX_IDLE_BUFFER: usize = 16 << 20;

type AppendReply = oneshot::Sender<Result<Vec<Appended>, Error>>;

pub(crate) enum Command {
    Append {
        batches: Vec<AppendBatch>,
        reply: AppendReply,
    },
    Sync {
        reply: SyncSender<Result<(), Error>>,
    },
}

pub(crate) struct Writer {
    inner: Arc<Inner>,
    rx: Receiver<Command>,
    config: LogConfig,
    clock: Arc<dyn Clock>,
    active: ActiveSegment,
    next_offset: u64,
    last_ts: i64,
    /// Set after a failed write/sync: why. Cleared by a successful recovery.
    fault: Option<String>,
    /// Written data that has not been synced yet.
    dirty: bool,
    last_sync: Instant,
    buf: Vec<u8>,
}

impl Writer {
    pub fn new(
        inner: Arc<Inner>,
        rx: Receiver<Command>,
        config: LogConfig,
        clock: Arc<dyn Clock>,
        active: ActiveSegment,
        next_offset: u64,
        last_ts: i64,
    ) -> Writer {
        Writer {
            inner,
            rx,
            config,
            clock,
            active,
            next_offset,
            last_ts,
            fault: None,
            dirty: false,
            last_sync: Instant::now(),
            buf: Vec::new(),
        }
    }

    pub fn run(mut self) {
        while let Some(first) = self.next_command() {
            let mut appends = Vec::new();
            let mut syncs = Vec::new();
            {
                let _gate = lock(&self.inner.group_gate);
                let mut push = |cmd| match cmd {
                    Command::Append { batches, reply } => appends.push((batches, reply)),
                    Command::Sync { reply } => syncs.push(reply),
                };
                push(first);
                while let Ok(cmd) = self.rx.try_recv() {
                    push(cmd);
                }
            }
            if !appends.is_empty() {
                self.commit_group(appends);
            }
            for reply in syncs {
                let _ = reply.send(self.explicit_sync());
            }
        }
        // Channel closed: every queued request has been answered. Leave the data durable,
        // and cut anything a failed group left behind the committed length.
        if self.fault.is_some()
            && let Err(e) = self.recover_if_faulted()
        {
            tracing::error!(error = %e, "log closed while faulted");
        }
        if self.dirty
            && self.fault.is_none()
            && let Err(e) = self.sync_data()
        {
            tracing::error!(segment = %self.active.path.display(), error = %e, "final sync of log failed");
        }
    }

    /// Waits for the next command, running interval syncs while waiting. `None` once the
    /// channel is closed and empty.
    fn next_command(&mut self) -> Option<Command> {
        if let FsyncPolicy::Interval(interval) = self.config.fsync {
            while self.dirty {
                let deadline = self.last_sync + interval;
                let now = Instant::now();
                if now >= deadline {
                    self.interval_sync();
                    continue;
                }
                match self.rx.recv_timeout(deadline - now) {
                    Ok(cmd) => return Some(cmd),
                    Err(RecvTimeoutError::Timeout) => self.interval_sync(),
                    Err(RecvTimeoutError::Disconnected) => return None,
                }
            }
        }
        self.rx.recv().ok()
    }

    fn interval_sync(&mut self) {
        if let Err(e) = self.sync_data() {
            tracing::error!(segment = %self.active.path.display(), error = %e, "interval sync of log failed");
            self.fault = Some(format!("interval sync failed: {e}"));
            // Recovery (on the next append or sync) retries the sync.
            self.dirty = false;
        }
    }

    /// `fdatasync` of the active segment.
    fn sync_data(&mut self) -> std::io::Result<()> {
        self.inner.faults.check_sync()?;
        self.active.file.sync_data()?;
        self.inner.sync_count.fetch_add(1, Ordering::SeqCst);
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn explicit_sync(&mut self) -> Result<(), Error> {
        if self.fault.is_some() {
            return self.recover_if_faulted();
        }
        if self.dirty {
            let path = self.active.path.display().to_string();
            if let Err(e) = self.sync_data() {
                self.fault = Some(format!("sync failed: {e}"));
                return Err(Error::io(format!("sync {path}"), e));
            }
        }
        Ok(())
    }

    /// Reopens the active segment, truncates it to the committed length and syncs it.
    fn recover_if_faulted(&mut self) -> Result<(), Error> {
        let Some(cause) = self.fault.clone() else {
            return Ok(());
        };
        let attempt = || -> std::io::Result<std::fs::File> {
            let file = OpenOptions::new().read(true).write(true).open(&self.active.path)?;
            file.set_len(self.active.len)?;
            self.inner.faults.check_sync()?;
            file.sync_data()?;
            Ok(file)
        };
        match attempt() {
            Ok(file) => {
                let file = Arc::new(file);
                self.active.file = file.clone();
                if let Some(seg) = self.inner.write_state().segments.get_mut(&self.active.base) {
                    seg.file = file;
                }
                self.inner.sync_count.fetch_add(1, Ordering::SeqCst);
                self.fault = None;
                self.dirty = false;
                self.last_sync = Instant::now();
                tracing::info!(segment = %self.active.path.display(), "log recovered from an earlier write failure");
                Ok(())
            }
            Err(e) => Err(Error::Faulted {
                cause: format!("{cause}; recovery failed: {e}"),
            }),
        }
    }

    /// Seals the active segment and starts a new one at the next offset.
    fn roll(&mut self) -> std::io::Result<()> {
        let dir = self.inner.dir.clone();
        self.sync_data()?;
        recovery::write_index(
            &dir,
            self.active.base,
            self.active.len,
            &self.active.entries,
            &self.inner.faults,
        )?;
        let base = self.next_offset;
        let path = super::segment_path(&dir, base);
        let created = recovery::create_segment(&path, base, &self.inner.faults)
            .and_then(|file| recovery::sync_dir(&dir).map(|()| file));
        let file = match created {
            Ok(file) => Arc::new(file),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        {
            let mut st = self.inner.write_state();
            st.segments.insert(
                base,
                SegmentHandle {
                    file: file.clone(),
                    path: path.clone(),
                    last_ts: None,
                },
            );
            st.active_base = base;
        }
        tracing::debug!(segment = %path.display(), "rolled to a new log segment");
        self.active = ActiveSegment {
            base,
            path,
            file,
            len: SEGMENT_HEADER_LEN,
            entries: Vec::new(),
        };
        Ok(())
    }

    /// Recovery and rolling that must happen before a group is written.
    fn prepare(&mut self) -> Result<(), Error> {
        self.recover_if_faulted()?;
        if self.active.len > self.config.segment_bytes && !self.active.entries.is_empty() {
            let path = self.active.path.display().to_string();
            if let Err(e) = self.roll() {
                self.fault = Some(format!("rolling segment {path} failed: {e}"));
                return Err(Error::io(format!("roll log segment {path}"), e));
            }
        }
        Ok(())
    }

    fn commit_group(&mut self, appends: Vec<(Vec<AppendBatch>, AppendReply)>) {
        if let Err(e) = self.prepare() {
            for (_, reply) in appends {
                let _ = reply.send(Err(e.duplicate()));
            }
            return;
        }
        let ts = self.last_ts.max(self.clock.now_ms());
        let start_pos = self.active.len;
        let mut next = self.next_offset;
        let mut entries = Vec::new();
        let mut results = Vec::with_capacity(appends.len());
        self.buf.clear();
        for (batches, _) in &appends {
            let mut res = Vec::with_capacity(batches.len());
            for batch in batches {
                let count = batch.records.len() as u32;
                res.push(Appended {
                    partition: batch.partition,
                    first_offset: next,
                    count,
                    timestamp_ms: ts,
                });
                if count == 0 {
                    continue;
                }
                let pos = start_pos + self.buf.len() as u64;
                let header = BatchHeader {
                    partition: batch.partition,
                    count,
                    first_offset: next,
                    timestamp_ms: ts,
                };
                let len = codec::encode_batch(&mut self.buf, &header, &batch.records);
                entries.push(BatchEntry {
                    partition: batch.partition,
                    count,
                    first_offset: next,
                    timestamp_ms: ts,
                    segment: self.active.base,
                    pos,
                    len: len as u32,
                });
                next += u64::from(count);
            }
            results.push(res);
        }

        if !self.buf.is_empty() {
            if let Err(e) = self.write_group(start_pos) {
                tracing::error!(segment = %self.active.path.display(), error = %e, "log write failed; faulting the log");
                self.fault = Some(format!("write or sync failed: {e}"));
                let err = Error::io(format!("append to {}", self.active.path.display()), e);
                for (_, reply) in appends {
                    let _ = reply.send(Err(err.duplicate()));
                }
                return;
            }
            self.publish(entries, next, ts, start_pos + self.buf.len() as u64);
        }
        for ((_, reply), res) in appends.into_iter().zip(results) {
            let _ = reply.send(Ok(res));
        }
        // Do not keep a burst-sized buffer around forever.
        if self.buf.capacity() > MAX_IDLE_BUFFER {
            self.buf = Vec::new();
        }
    }

    fn write_group(&mut self, pos: u64) -> std::io::Result<()> {
        self.inner.faults.check_write()?;
        self.active.file.write_all_at(&self.buf, pos)?;
        self.dirty = true;
        if self.config.fsync == FsyncPolicy::Always {
            self.sync_data()?;
        }
        Ok(())
    }

    fn publish(&mut self, entries: Vec<BatchEntry>, next: u64, ts: i64, new_len: u64) {
        {
            let mut st = self.inner.write_state();
            for e in &entries {
                st.partitions.entry(e.partition).or_default().push(*e);
            }
            st.committed_next = next;
            if let Some(seg) = st.segments.get_mut(&self.active.base) {
                seg.last_ts = Some(ts);
            }
        }
        self.active.len = new_len;
        self.active.entries.extend(entries);
        self.next_offset = next;
        self.last_ts = ts;
    }
}
