//! Function logs: one append-only file per function, plus the per-invocation capture that
//! becomes the log tail, and the time formats the log lines use.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::lock;

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
}

impl LogSink {
    /// Opens (creates) the log file; if that fails the lines are only captured.
    pub(super) fn open(path: PathBuf) -> Arc<LogSink> {
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

    #[test]
    fn tail_keeps_last_bytes_on_a_char_boundary() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sink = LogSink::open(dir.path().join("f.log"));
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
