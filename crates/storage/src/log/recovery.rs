//! Opening a log directory: load index files of sealed segments, scan the active segment,
//! cut a torn tail. The rule is documented in the module docs of [`super`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::codec::{self, BatchEntry, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::{SegmentHandle, index_path, segment_path};
use crate::error::Error;

/// The active segment as the writer owns it.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    pub base: u64,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// Committed length of the file.
    pub len: u64,
    /// Batches in this segment (for its index file when it is sealed).
    pub entries: Vec<BatchEntry>,
}

pub(crate) struct Recovered {
    pub segments: BTreeMap<u64, SegmentHandle>,
    pub partitions: HashMap<u32, Vec<BatchEntry>>,
    pub active: ActiveSegment,
    pub next_offset: u64,
    pub last_ts: i64,
}

/// Result of scanning a segment's batches.
struct Scan {
    entries: Vec<BatchEntry>,
    /// End of the last whole valid batch.
    valid_len: u64,
    /// Why scanning stopped before the end of the file, if it did.
    problem: Option<String>,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("{what} {}", path.display()), e)
}

/// Parses `NNNNNNNNNNNNNNNNNNNN.<ext>` into the base offset.
fn parse_name(name: &str, ext: &str) -> Option<u64> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates (or resets) a segment file holding only its header, synced.
pub(crate) fn create_segment(path: &Path, base: u64, faults: &super::FaultInjector) -> std::io::Result<File> {
    faults.check_write()?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(&codec::encode_segment_header(base))?;
    faults.check_sync()?;
    file.sync_data()?;
    Ok(file)
}

/// Writes a sealed segment's index file atomically (tmp file, fsync, rename).
pub(crate) fn write_index(
    dir: &Path,
    base: u64,
    segment_len: u64,
    entries: &[BatchEntry],
    faults: &super::FaultInjector,
) -> std::io::Result<()> {
    let path = index_path(dir, base);
    let tmp = path.with_extension("idx.tmp");
    let result = (|| {
        faults.check_write()?;
        let mut f = File::create(&tmp)?;
        f.write_all(&codec::encode_index(base, segment_len, entries))?;
        faults.check_sync()?;
        f.sync_data()?;
        std::fs::rename(&tmp, &path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Scans the batches of a segment from its header to `file_len`, stopping at the first
/// torn or invalid one. `min_offset` is the lowest acceptable first offset.
fn scan_segment(file: &File, base: u64, file_len: u64, min_offset: u64) -> std::io::Result<Scan> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    reader.seek(SeekFrom::Start(SEGMENT_HEADER_LEN))?;
    let mut pos = SEGMENT_HEADER_LEN;
    let mut expected = min_offset.max(base);
    let mut entries = Vec::new();
    let mut body = Vec::new();
    let problem = loop {
        let remaining = file_len - pos;
        if remaining == 0 {
            break None;
        }
        if remaining < FRAME_HEADER_LEN as u64 {
            break Some("torn batch header".to_string());
        }
        let mut head = [0u8; FRAME_HEADER_LEN];
        reader.read_exact(&mut head)?;
        let (len, crc) = match codec::decode_frame_header(head) {
            Ok(v) => v,
            Err(e) => break Some(e.to_string()),
        };
        if len as u64 > remaining - FRAME_HEADER_LEN as u64 {
            break Some("torn batch body".to_string());
        }
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
        if crc32fast::hash(&body) != crc {
            break Some("batch crc mismatch".to_string());
        }
        let header = match codec::validate_body(&body) {
            Ok(h) => h,
            Err(e) => break Some(e.to_string()),
        };
        if header.first_offset < expected {
            break Some("batch offset goes backwards".to_string());
        }
        let frame_len = (FRAME_HEADER_LEN + len) as u64;
        let entry = BatchEntry {
            partition: header.partition,
            count: header.count,
            first_offset: header.first_offset,
            timestamp_ms: header.timestamp_ms,
            segment: base,
            pos,
            len: frame_len as u32,
        };
        expected = entry.end_offset();
        entries.push(entry);
        pos += frame_len;
    };
    Ok(Scan {
        entries,
        valid_len: pos,
        problem,
    })
}

/// Cuts a segment file at the end of its last valid batch, syncs it and logs how much was lost.
fn cut_tail(file: &File, path: &Path, file_len: u64, scan: &Scan) -> Result<(), Error> {
    if scan.valid_len >= file_len {
        return Ok(());
    }
    tracing::warn!(
        segment = %path.display(),
        cut_bytes = file_len - scan.valid_len,
        kept_bytes = scan.valid_len,
        reason = scan.problem.as_deref().unwrap_or("unknown"),
        "cutting torn or corrupt tail of log segment"
    );
    file.set_len(scan.valid_len).map_err(|e| io_err("truncate", path, e))?;
    file.sync_data().map_err(|e| io_err("sync", path, e))
}

/// Reads a sealed segment's index file if it is valid for the segment as it is on disk.
fn load_index(dir: &Path, base: u64, file_len: u64, min_offset: u64) -> Option<Vec<BatchEntry>> {
    let path = index_path(dir, base);
    let meta = std::fs::metadata(&path).ok()?;
    if meta.len() > codec::max_index_len(file_len) {
        tracing::warn!(index = %path.display(), "index file too large; rebuilding");
        return None;
    }
    let bytes = std::fs::read(&path).ok()?;
    match codec::decode_index(&bytes, base, file_len, min_offset) {
        Ok(entries) => Some(entries),
        Err(e) => {
            tracing::warn!(index = %path.display(), error = %e, "invalid index file; rebuilding");
            None
        }
    }
}

pub(crate) fn recover(dir: &Path, min_next_offset: u64) -> Result<Recovered, Error> {
    std::fs::create_dir_all(dir).map_err(|e| io_err("create", dir, e))?;
    let mut bases = Vec::new();
    let mut indexes = HashSet::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err("list", dir, e))? {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        } else if let Some(base) = parse_name(name, "log") {
            bases.push(base);
        } else if let Some(base) = parse_name(name, "idx") {
            indexes.insert(base);
        }
    }
    bases.sort_unstable();
    for base in &indexes {
        if bases.binary_search(base).is_err() {
            let _ = std::fs::remove_file(index_path(dir, *base));
        }
    }

    let mut segments = BTreeMap::new();
    let mut partitions: HashMap<u32, Vec<BatchEntry>> = HashMap::new();
    let mut next = 0u64;
    let mut last_ts = i64::MIN;
    let mut active = None;

    for (i, &base) in bases.iter().enumerate() {
        let is_active = i + 1 == bases.len();
        let path = segment_path(dir, base);
        if base < next {
            return Err(Error::Corrupt {
                path,
                detail: format!("segment starts at offset {base}, before the end ({next}) of the previous one"),
            });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err("open", &path, e))?;
        let mut file_len = file.metadata().map_err(|e| io_err("stat", &path, e))?.len();
        let header_ok = {
            let mut head = [0u8; SEGMENT_HEADER_LEN as usize];
            if file_len >= SEGMENT_HEADER_LEN {
                use std::os::unix::fs::FileExt;
                file.read_exact_at(&mut head, 0).map_err(|e| io_err("read", &path, e))?;
                codec::decode_segment_header(&head).map(|b| b == base).unwrap_or(false)
            } else {
                false
            }
        };
        let (file, entries) = if !header_ok {
            if !is_active {
                return Err(Error::Corrupt {
                    path,
                    detail: "bad segment header".into(),
                });
            }
            tracing::warn!(segment = %path.display(), bytes = file_len, "resetting active log segment with a torn or invalid header");
            let _ = std::fs::remove_file(index_path(dir, base));
            let file =
                create_segment(&path, base, &super::FaultInjector::default()).map_err(|e| io_err("reset", &path, e))?;
            file_len = SEGMENT_HEADER_LEN;
            (file, Vec::new())
        } else if is_active {
            if indexes.contains(&base) {
                let _ = std::fs::remove_file(index_path(dir, base));
            }
            let scan = scan_segment(&file, base, file_len, next).map_err(|e| io_err("scan", &path, e))?;
            cut_tail(&file, &path, file_len, &scan)?;
            file_len = scan.valid_len;
            (file, scan.entries)
        } else if let Some(entries) = indexes
            .contains(&base)
            .then(|| load_index(dir, base, file_len, next))
            .flatten()
        {
            (file, entries)
        } else {
            let scan = scan_segment(&file, base, file_len, next).map_err(|e| io_err("scan", &path, e))?;
            cut_tail(&file, &path, file_len, &scan)?;
            file_len = scan.valid_len;
            if let Err(e) = write_index(dir, base, file_len, &scan.entries, &super::FaultInjector::default()) {
                tracing::warn!(segment = %path.display(), error = %e, "could not rewrite index file");
            }
            (file, scan.entries)
        };

        let seg_last_ts = entries.last().map(|e| e.timestamp_ms);
        if let Some(last) = entries.last() {
            next = last.end_offset();
            last_ts = last_ts.max(last.timestamp_ms);
        }
        next = next.max(base);
        for e in &entries {
            partitions.entry(e.partition).or_default().push(*e);
        }
        let file = Arc::new(file);
        segments.insert(
            base,
            SegmentHandle {
                file: file.clone(),
                path: path.clone(),
                last_ts: seg_last_ts,
            },
        );
        if is_active {
            active = Some(ActiveSegment {
                base,
                path,
                file,
                len: file_len,
                entries,
            });
        }
    }

    let active = match active {
        Some(a) => a,
        None => {
            let base = min_next_offset;
            let path = segment_path(dir, base);
            let file = create_segment(&path, base, &super::FaultInjector::default())
                .map_err(|e| io_err("create", &path, e))?;
            sync_dir(dir).map_err(|e| io_err("sync", dir, e))?;
            let file = Arc::new(file);
            segments.insert(
                base,
                SegmentHandle {
                    file: file.clone(),
                    path: path.clone(),
                    last_ts: None,
                },
            );
            ActiveSegment {
                base,
                path,
                file,
                len: SEGMENT_HEADER_LEN,
                entries: Vec::new(),
            }
        }
    };
    Ok(Recovered {
        segments,
        partitions,
        next_offset: next.max(active.base).max(min_next_offset),
        active,
        last_ts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_name("00000000000000000042.log", "log"), Some(42));
        assert_eq!(parse_name("00000000000000000042.idx", "log"), None);
        assert_eq!(parse_name("0000000000000000042.log", "log"), None);
        assert_eq!(parse_name("0000000000000000004x.log", "log"), None);
        assert_eq!(parse_name("99999999999999999999.log", "log"), None); // overflows u64
        assert_eq!(
            segment_path(Path::new("/d"), 7),
            PathBuf::from("/d/00000000000000000007.log")
        );
    }
}
