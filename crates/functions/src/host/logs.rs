//! Function logs: one append-only file per function, plus the per-invocation capture that
//! becomes the log tail, the shipper that sends every line to CloudWatch Logs (the
//! [`LogDestination`] port), and the time formats the log lines use.
//!
//! # Shipping
//!
//! Each line an instance writes (its stdout and stderr lines and the host's `START`, `END`,
//! `REPORT` lines) is also queued, with its time, for the instance's log stream
//! `YYYY/MM/DD/[<version>]<instance id>` in the function's log group
//! (`LoggingConfig.LogGroup`, default `/aws/lambda/<name>`). The queue is bounded
//! ([`SHIP_QUEUE`] lines; a full queue drops lines with a warning rather than slow the
//! function) and drained by one task that hands the destination everything that arrived
//! within [`SHIP_EVERY`] (or [`SHIP_LINES`] lines, or [`SHIP_BYTES`]), grouped by stream, in
//! one call. Nothing on the invoke path waits for a durable write; lines reach CloudWatch
//! Logs about 100 ms after they were written. [`Host::shutdown`](super::Host::shutdown)
//! ships what is queued before it returns.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use super::lock;

/// Lines the shipping queue holds before it drops new ones.
pub const SHIP_QUEUE: usize = 65_536;
/// How long the shipper gathers lines before it hands them over.
pub const SHIP_EVERY: Duration = Duration::from_millis(100);
/// Most lines handed over at once.
pub const SHIP_LINES: usize = 5_000;
/// Most message bytes handed over at once.
pub const SHIP_BYTES: usize = 1024 * 1024;

/// Events for one log stream, as the host ships them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBatch {
    /// The function's account.
    pub account: String,
    /// The function's region.
    pub region: String,
    /// The log group (`LoggingConfig.LogGroup`).
    pub group: String,
    /// The instance's log stream.
    pub stream: String,
    /// `(timestamp ms, line)`, in the order written.
    pub events: Vec<(i64, String)>,
}

/// Where the host ships function output besides the per-function file: CloudWatch Logs
/// (the composition root implements it over the logs engine).
#[async_trait::async_trait]
pub trait LogDestination: Send + Sync + 'static {
    /// Appends each batch's events to its group and stream, creating both when missing (as
    /// Lambda does). The error is only logged.
    async fn put(&self, batches: Vec<LogBatch>) -> Result<(), String>;
}

/// The group and stream one instance's lines go to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct LogTarget {
    pub(super) account: String,
    pub(super) region: String,
    pub(super) group: String,
    pub(super) stream: String,
}

enum Shipped {
    Line(Arc<LogTarget>, i64, String),
    Flush(oneshot::Sender<()>),
    /// Ship what is queued, let go of the destination, then answer.
    Stop(oneshot::Sender<()>),
}

/// The queue to the shipping task.
pub(super) struct Shipper {
    tx: mpsc::Sender<Shipped>,
    dropped: AtomicU64,
    stopped: AtomicBool,
}

impl Shipper {
    /// Starts the shipping task (on the current tokio runtime) over `dest`.
    pub(super) fn start(dest: Arc<dyn LogDestination>) -> Option<Arc<Shipper>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = mpsc::channel(SHIP_QUEUE);
        handle.spawn(ship_loop(rx, dest));
        Some(Arc::new(Shipper {
            tx,
            dropped: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        }))
    }

    fn send(&self, target: &Arc<LogTarget>, ts: i64, line: String) {
        if self.tx.try_send(Shipped::Line(Arc::clone(target), ts, line)).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() && !self.stopped.load(Ordering::Relaxed) {
                tracing::warn!(
                    dropped = n + 1,
                    "function log lines dropped: the CloudWatch Logs queue is full"
                );
            }
        }
    }

    /// Ships everything queued so far (waits at most `limit`).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) async fn flush(&self, limit: Duration) {
        self.request(Shipped::Flush, limit).await;
    }

    /// Ships everything queued so far and ends the shipping task, which lets go of the
    /// destination (and so of the logs engine and its database) before this returns; lines
    /// written later are dropped. Waits at most `limit`.
    pub(super) async fn stop(&self, limit: Duration) {
        self.stopped.store(true, Ordering::Relaxed);
        self.request(Shipped::Stop, limit).await;
    }

    async fn request(&self, msg: fn(oneshot::Sender<()>) -> Shipped, limit: Duration) {
        let (ack, done) = oneshot::channel();
        let sent = tokio::time::timeout(limit, self.tx.send(msg(ack))).await;
        if matches!(sent, Ok(Ok(()))) {
            let _ = tokio::time::timeout(limit, done).await;
        }
    }
}

async fn ship_loop(mut rx: mpsc::Receiver<Shipped>, dest: Arc<dyn LogDestination>) {
    let stop = ship_until_stopped(&mut rx, &*dest).await;
    rx.close();
    drop(rx);
    drop(dest);
    if let Some(ack) = stop {
        let _ = ack.send(());
    }
}

/// Ships until the queue closes or a stop request arrives (returned, to be answered once
/// the destination is let go).
async fn ship_until_stopped(
    rx: &mut mpsc::Receiver<Shipped>,
    dest: &dyn LogDestination,
) -> Option<oneshot::Sender<()>> {
    let mut lines: Vec<(Arc<LogTarget>, i64, String)> = Vec::new();
    let mut acks = Vec::new();
    let mut stop = None;
    while let Some(first) = rx.recv().await {
        let mut bytes = 0;
        match first {
            Shipped::Line(t, ts, l) => {
                bytes += l.len();
                lines.push((t, ts, l));
            }
            Shipped::Flush(ack) => acks.push(ack),
            Shipped::Stop(ack) => stop = Some(ack),
        }
        let deadline = tokio::time::Instant::now() + SHIP_EVERY;
        while acks.is_empty() && stop.is_none() && lines.len() < SHIP_LINES && bytes < SHIP_BYTES {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Shipped::Line(t, ts, l))) => {
                    bytes += l.len();
                    lines.push((t, ts, l));
                }
                Ok(Some(Shipped::Flush(ack))) => acks.push(ack),
                Ok(Some(Shipped::Stop(ack))) => stop = Some(ack),
                Ok(None) | Err(_) => break,
            }
        }
        if !lines.is_empty() {
            let mut by_target: BTreeMap<Arc<LogTarget>, Vec<(i64, String)>> = BTreeMap::new();
            for (t, ts, l) in lines.drain(..) {
                by_target.entry(t).or_default().push((ts, l));
            }
            let batches = by_target
                .into_iter()
                .map(|(t, events)| LogBatch {
                    account: t.account.clone(),
                    region: t.region.clone(),
                    group: t.group.clone(),
                    stream: t.stream.clone(),
                    events,
                })
                .collect();
            if let Err(e) = dest.put(batches).await {
                tracing::warn!(error = %e, "function log lines could not be written to CloudWatch Logs");
            }
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
        if stop.is_some() {
            return stop;
        }
    }
    None
}

/// Bytes of log an invocation's tail keeps (AWS: the last 4 KB).
pub(super) const TAIL_BYTES: usize = 4096;

/// The log of one instance: lines go to the function's file (opened in append mode, one
/// `write` per line, so concurrent instances interleave whole lines) and, while an invocation
/// is being captured, to its tail buffer.
pub(super) struct LogSink {
    path: PathBuf,
    file: Mutex<Option<File>>,
    capture: Mutex<Option<Vec<u8>>>,
    warned: AtomicBool,
    ship: Option<(Arc<Shipper>, Arc<LogTarget>)>,
}

impl LogSink {
    /// Opens (creates) the log file; if that fails the lines are only captured (and shipped
    /// to `ship`'s target, if any).
    pub(super) fn open(path: PathBuf, ship: Option<(Arc<Shipper>, Arc<LogTarget>)>) -> Arc<LogSink> {
        let file = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| OpenOptions::new().create(true).append(true).open(&path));
        let file = match file {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open the function log");
                None
            }
        };
        Arc::new(LogSink {
            path,
            file: Mutex::new(file),
            capture: Mutex::new(None),
            warned: AtomicBool::new(false),
            ship,
        })
    }

    /// Appends one line (a newline is added).
    pub(super) fn line(&self, text: &str) {
        self.raw(text.as_bytes());
    }

    /// Appends one line of raw output bytes (a newline is added).
    pub(super) fn raw(&self, text: &[u8]) {
        let mut buf = Vec::with_capacity(text.len() + 1);
        buf.extend_from_slice(text);
        buf.push(b'\n');
        if let Some(file) = lock(&self.file).as_mut()
            && let Err(e) = file.write_all(&buf)
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the function log");
        }
        if let Some((shipper, target)) = &self.ship {
            let now = epoch_ms(SystemTime::now()) as i64;
            shipper.send(target, now, String::from_utf8_lossy(text).into_owned());
        }
        if let Some(capture) = lock(&self.capture).as_mut() {
            capture.extend_from_slice(&buf);
            if capture.len() > 16 * TAIL_BYTES {
                let cut = capture.len() - TAIL_BYTES;
                capture.drain(..cut);
            }
        }
    }

    /// Starts capturing lines for an invocation's tail (keeps an ongoing capture).
    pub(super) fn begin_capture(&self) {
        let mut capture = lock(&self.capture);
        if capture.is_none() {
            *capture = Some(Vec::new());
        }
    }

    /// Ends the capture and returns its last [`TAIL_BYTES`] (cut at a character boundary).
    pub(super) fn take_tail(&self) -> String {
        let bytes = lock(&self.capture).take().unwrap_or_default();
        let mut start = bytes.len().saturating_sub(TAIL_BYTES);
        while start < bytes.len() && bytes.get(start).is_some_and(|b| b & 0xC0 == 0x80) {
            start += 1;
        }
        String::from_utf8_lossy(bytes.get(start..).unwrap_or_default()).into_owned()
    }
}

/// Milliseconds since the epoch.
pub(super) fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// `(year, month, day, seconds of the day, milliseconds)` of a UTC time.
fn civil(t: SystemTime) -> (i64, u32, u32, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, secs % 86_400, d.subsec_millis())
}

/// `2026-01-31T12:34:56.789Z`.
pub(super) fn rfc3339(t: SystemTime) -> String {
    let (y, m, d, s, ms) = civil(t);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `2026/01/31` (the date part of a log stream name).
pub(super) fn date_path(t: SystemTime) -> String {
    let (y, m, d, _, _) = civil(t);
    format!("{y:04}/{m:02}/{d:02}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn formats_dates() {
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789); // 2024-02-29T12:34:56.789Z
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.789Z");
        assert_eq!(date_path(t), "2024/02/29");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    struct Collect(Mutex<Vec<LogBatch>>);

    #[async_trait::async_trait]
    impl LogDestination for Collect {
        async fn put(&self, batches: Vec<LogBatch>) -> Result<(), String> {
            lock(&self.0).extend(batches);
            Ok(())
        }
    }

    #[tokio::test]
    async fn lines_are_shipped_in_batches_per_stream() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dest = Arc::new(Collect(Mutex::new(Vec::new())));
        let shipper = Shipper::start(dest.clone()).unwrap_or_else(|| panic!("no runtime"));
        let target = |stream: &str| {
            Arc::new(LogTarget {
                account: "000000000000".into(),
                region: "us-east-1".into(),
                group: "/aws/lambda/f".into(),
                stream: stream.into(),
            })
        };
        let a = LogSink::open(dir.path().join("f.log"), Some((shipper.clone(), target("a"))));
        let b = LogSink::open(dir.path().join("f.log"), Some((shipper.clone(), target("b"))));
        a.line("one");
        b.line("two");
        a.line("three");
        shipper.flush(Duration::from_secs(5)).await;
        let got = lock(&dest.0).clone();
        let lines: Vec<(&str, Vec<&str>)> = got
            .iter()
            .map(|b| (b.stream.as_str(), b.events.iter().map(|(_, m)| m.as_str()).collect()))
            .collect();
        assert_eq!(lines, [("a", vec!["one", "three"]), ("b", vec!["two"])]);
        assert_eq!(got[0].group, "/aws/lambda/f");
        let file = std::fs::read_to_string(dir.path().join("f.log")).unwrap_or_default();
        assert_eq!(file, "one\ntwo\nthree\n");
    }

    #[test]
    fn tail_keeps_last_bytes_on_a_char_boundary() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sink = LogSink::open(dir.path().join("f.log"), None);
        sink.begin_capture();
        for _ in 0..2000 {
            sink.line("ééééé");
        }
        let tail = sink.take_tail();
        assert!(
            tail.len() <= TAIL_BYTES && tail.len() > TAIL_BYTES - 4,
            "{}",
            tail.len()
        );
        assert!(tail.ends_with("ééééé\n"));
        assert_eq!(sink.take_tail(), "");
    }
}
