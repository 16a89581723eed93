//! Integration-style tests of the log against real files in temporary directories.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::clock::ManualClock;

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    }
}

fn config(segment_bytes: u64, fsync: FsyncPolicy) -> LogConfig {
    LogConfig { segment_bytes, fsync }
}

fn open(dir: &Path, clock: &Arc<ManualClock>, segment_bytes: u64, min_next: u64) -> Log {
    match Log::open(dir, config(segment_bytes, FsyncPolicy::Always), clock.clone(), min_next) {
        Ok(log) => log,
        Err(e) => panic!("open log: {e}"),
    }
}

fn rec(key: &str, data: &str) -> Record {
    Record {
        key: key.as_bytes().to_vec(),
        data: data.as_bytes().to_vec(),
    }
}

fn batch(partition: u32, records: Vec<Record>) -> AppendBatch {
    AppendBatch { partition, records }
}

fn read_all(log: &Log, partition: u32) -> Vec<StoredRecord> {
    match log.read(partition, 0, usize::MAX, usize::MAX, i64::MIN) {
        Ok(r) => r.records,
        Err(e) => panic!("read: {e}"),
    }
}

fn data_of(records: &[StoredRecord]) -> Vec<(u64, String)> {
    records
        .iter()
        .map(|r| (r.offset, String::from_utf8_lossy(&r.data).into_owned()))
        .collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

type TestResult = Result<(), Box<dyn std::error::Error>>;

// ---------------------------------------------------------------------------------------
// Model-based property test
// ---------------------------------------------------------------------------------------

/// `(partition, [(key, data)])`.
type RawBatch = (u32, Vec<(Vec<u8>, Vec<u8>)>);

#[derive(Debug, Clone)]
enum Action {
    Append(Vec<RawBatch>),
    Read {
        partition: u32,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        min_ts_back: Option<i64>,
    },
    Reopen {
        bump: u64,
    },
    Trim {
        back_ms: i64,
    },
    Advance(i64),
}

fn action() -> impl Strategy<Value = Action> {
    let record = (
        prop::collection::vec(any::<u8>(), 0..6),
        prop::collection::vec(any::<u8>(), 0..40),
    );
    let batch = (0u32..3, prop::collection::vec(record, 0..5));
    prop_oneof![
        6 => prop::collection::vec(batch, 1..4).prop_map(Action::Append),
        6 => (0u32..4, any::<u64>(), 0usize..8, 0usize..150, prop::option::of(0i64..300)).prop_map(
            |(partition, from, max_records, max_bytes, min_ts_back)| Action::Read {
                partition,
                from,
                max_records,
                max_bytes,
                min_ts_back,
            }
        ),
        1 => prop_oneof![4 => Just(0u64), 1 => 1u64..5].prop_map(|bump| Action::Reopen { bump }),
        1 => (0i64..300).prop_map(|back_ms| Action::Trim { back_ms }),
        3 => (0i64..60).prop_map(Action::Advance),
    ]
}

#[derive(Debug, Clone)]
struct ModelRecord {
    offset: u64,
    partition: u32,
    ts: i64,
    key: Vec<u8>,
    data: Vec<u8>,
}

#[derive(Debug, Default)]
struct Model {
    records: Vec<ModelRecord>,
    next: u64,
    last_ts: i64,
}

impl Model {
    fn read(&self, partition: u32, from: u64, max_records: usize, max_bytes: usize, min_ts: i64) -> ReadResult {
        let mut out: Vec<StoredRecord> = Vec::new();
        if max_records == 0 {
            return ReadResult {
                records: out,
                next_offset: from,
            };
        }
        let mut bytes = 0usize;
        for r in self
            .records
            .iter()
            .filter(|r| r.partition == partition && r.offset >= from && r.ts >= min_ts)
        {
            let size = r.key.len() + r.data.len();
            if out.len() >= max_records || (!out.is_empty() && bytes + size > max_bytes) {
                let next_offset = out.last().map_or(from, |r| r.offset + 1);
                return ReadResult {
                    records: out,
                    next_offset,
                };
            }
            bytes += size;
            out.push(StoredRecord {
                offset: r.offset,
                timestamp_ms: r.ts,
                key: r.key.clone(),
                data: r.data.clone(),
            });
        }
        ReadResult {
            records: out,
            next_offset: from.max(self.next),
        }
    }

    fn tip(&self, partition: u32) -> Option<(u64, i64)> {
        self.records
            .iter()
            .rev()
            .find(|r| r.partition == partition)
            .map(|r| (r.offset, r.ts))
    }

    fn offset_at_time(&self, partition: u32, t: i64) -> Option<u64> {
        self.records
            .iter()
            .find(|r| r.partition == partition && r.ts >= t)
            .map(|r| r.offset)
    }
}

fn run_model(actions: Vec<Action>, fsync: FsyncPolicy) -> Result<(), TestCaseError> {
    let rt = runtime();
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let clock = Arc::new(ManualClock::new(1_000_000));
    let cfg = config(300, fsync);
    let open_log = |min_next: u64| {
        Log::open(dir.path(), cfg.clone(), clock.clone(), min_next)
            .map_err(|e| TestCaseError::fail(format!("open: {e}")))
    };
    let mut log = Some(open_log(0)?);
    let mut model = Model {
        last_ts: i64::MIN,
        ..Model::default()
    };
    for action in actions {
        let Some(current) = log.as_ref() else {
            return Err(TestCaseError::fail("log missing"));
        };
        match action {
            Action::Append(batches) => {
                let input: Vec<AppendBatch> = batches
                    .iter()
                    .map(|(p, recs)| AppendBatch {
                        partition: *p,
                        records: recs
                            .iter()
                            .map(|(k, d)| Record {
                                key: k.clone(),
                                data: d.clone(),
                            })
                            .collect(),
                    })
                    .collect();
                let got = rt
                    .block_on(current.append(input))
                    .map_err(|e| TestCaseError::fail(format!("append: {e}")))?;
                let ts = model.last_ts.max(clock.now_ms());
                prop_assert_eq!(got.len(), batches.len());
                let mut wrote = false;
                for ((p, recs), a) in batches.iter().zip(&got) {
                    prop_assert_eq!(a.partition, *p);
                    prop_assert_eq!(a.first_offset, model.next);
                    prop_assert_eq!(a.count as usize, recs.len());
                    prop_assert_eq!(a.timestamp_ms, ts);
                    for (k, d) in recs {
                        model.records.push(ModelRecord {
                            offset: model.next,
                            partition: *p,
                            ts,
                            key: k.clone(),
                            data: d.clone(),
                        });
                        model.next += 1;
                        wrote = true;
                    }
                }
                if wrote {
                    model.last_ts = ts;
                }
            }
            Action::Read {
                partition,
                from,
                max_records,
                max_bytes,
                min_ts_back,
            } => {
                let from = from % (model.next + 3);
                let min_ts = min_ts_back.map_or(i64::MIN, |b| clock.now_ms() - b);
                let got = current
                    .read(partition, from, max_records, max_bytes, min_ts)
                    .map_err(|e| TestCaseError::fail(format!("read: {e}")))?;
                let want = model.read(partition, from, max_records, max_bytes, min_ts);
                prop_assert_eq!(got, want);
                prop_assert_eq!(
                    current.offset_at_time(partition, min_ts),
                    model.offset_at_time(partition, min_ts)
                );
            }
            Action::Reopen { bump } => {
                drop(log.take());
                let min_next = model.next + bump;
                log = Some(open_log(min_next)?);
                model.next = min_next;
            }
            Action::Trim { back_ms } => {
                let t = clock.now_ms() - back_ms;
                let before = current.segment_count();
                let removed = current
                    .trim_before(t)
                    .map_err(|e| TestCaseError::fail(format!("trim: {e}")))?;
                prop_assert_eq!(before - current.segment_count(), removed);
                let low = current.first_segment_base();
                for r in model.records.iter().filter(|r| r.offset < low) {
                    prop_assert!(r.ts < t, "trim removed a record newer than the cut-off");
                }
                model.records.retain(|r| r.offset >= low);
            }
            Action::Advance(ms) => clock.advance(ms),
        }
        let Some(current) = log.as_ref() else {
            return Err(TestCaseError::fail("log missing"));
        };
        prop_assert_eq!(current.next_offset(), model.next);
        for p in 0..4 {
            prop_assert_eq!(current.partition_tip(p), model.tip(p));
        }
    }
    // Everything must also survive a final reopen. (A bumped next offset with no record
    // after it is not persisted by the log itself; the caller passes it again.)
    drop(log.take());
    let log = open_log(model.next)?;
    for p in 0..4 {
        let got = log
            .read(p, 0, usize::MAX, usize::MAX, i64::MIN)
            .map_err(|e| TestCaseError::fail(format!("read: {e}")))?;
        prop_assert_eq!(got, model.read(p, 0, usize::MAX, usize::MAX, i64::MIN));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(
        actions in prop::collection::vec(action(), 1..80),
        never in any::<bool>(),
    ) {
        let fsync = if never { FsyncPolicy::Never } else { FsyncPolicy::Always };
        run_model(actions, fsync)?;
    }
}

// ---------------------------------------------------------------------------------------
// Targeted tests
// ---------------------------------------------------------------------------------------

#[test]
fn append_read_basics() -> TestResult {
    let rt = runtime();
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(500));
    let log = open(dir.path(), &clock, 1 << 20, 0);
    assert_eq!(log.next_offset(), 0);
    assert_eq!(log.partition_tip(0), None);
    let got = rt.block_on(log.append(vec![
        batch(0, vec![rec("k", "a"), rec("k", "b")]),
        batch(1, vec![rec("q", "c")]),
        batch(0, vec![]),
    ]))?;
    assert_eq!(
        got.iter()
            .map(|a| (a.first_offset, a.count, a.timestamp_ms))
            .collect::<Vec<_>>(),
        vec![(0, 2, 500), (2, 1, 500), (3, 0, 500)]
    );
    clock.advance(10);
    rt.block_on(log.append(vec![batch(0, vec![rec("k", "d")])]))?;
    // The clock going backwards never makes timestamps go backwards.
    clock.set(0);
    let back = rt.block_on(log.append(vec![batch(0, vec![rec("k", "e")])]))?;
    assert_eq!(back[0].timestamp_ms, 510);

    assert_eq!(log.next_offset(), 5);
    assert_eq!(
        data_of(&read_all(&log, 0)),
        vec![(0, "a".into()), (1, "b".into()), (3, "d".into()), (4, "e".into())]
    );
    assert_eq!(log.partition_tip(0), Some((4, 510)));
    assert_eq!(log.partition_tip(1), Some((2, 500)));
    assert_eq!(log.offset_at_time(0, 501), Some(3));
    assert_eq!(log.offset_at_time(0, 511), None);
    let r = log.read(0, 1, 2, usize::MAX, i64::MIN)?;
    assert_eq!(data_of(&r.records), vec![(1, "b".into()), (3, "d".into())]);
    assert_eq!(r.next_offset, 4);
    // A record larger than max_bytes is still returned alone.
    let r = log.read(0, 0, 10, 0, i64::MIN)?;
    assert_eq!(r.records.len(), 1);
    assert_eq!(r.next_offset, 1);
    let r = log.read(0, 4, 10, 100, i64::MIN)?;
    assert_eq!(r.next_offset, 5);
    let r = log.read(7, 0, 10, 100, i64::MIN)?;
    assert!(r.records.is_empty());
    assert_eq!(r.next_offset, 5);

    let too_big = Record {
        key: vec![0; 70_000],
        data: vec![],
    };
    assert!(matches!(
        rt.block_on(log.append(vec![batch(0, vec![too_big])])),
        Err(Error::TooLarge { .. })
    ));
    Ok(())
}

#[test]
fn torn_tail_is_cut_on_reopen() -> TestResult {
    let rt = runtime();
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(1));
    let mut lens = Vec::new();
    {
        let log = open(dir.path(), &clock, 1 << 20, 0);
        for i in 0..3 {
            rt.block_on(log.append(vec![batch(0, vec![rec("k", &format!("r{i}")); 2])]))?;
            lens.push(std::fs::metadata(&segment_files(dir.path())[0])?.len());
        }
    }
    let seg = segment_files(dir.path())[0].clone();

    // 1. Garbage after the last batch: everything survives, the garbage is cut.
    {
        let mut bytes = std::fs::read(&seg)?;
        bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        std::fs::write(&seg, &bytes)?;
        let log = open(dir.path(), &clock, 1 << 20, 0);
        assert_eq!(std::fs::metadata(&seg)?.len(), lens[2]);
        assert_eq!(read_all(&log, 0).len(), 6);
        assert_eq!(log.next_offset(), 6);
    }

    // 2. The last batch torn in the middle: it is cut, the others survive.
    {
        let f = std::fs::OpenOptions::new().write(true).open(&seg)?;
        f.set_len(lens[2] - 5)?;
        drop(f);
        let log = open(dir.path(), &clock, 1 << 20, 0);
        assert_eq!(std::fs::metadata(&seg)?.len(), lens[1]);
        assert_eq!(
            data_of(&read_all(&log, 0)),
            vec![(0, "r0".into()), (1, "r0".into()), (2, "r1".into()), (3, "r1".into())]
        );
        assert_eq!(log.next_offset(), 4);
        let got = rt.block_on(log.append(vec![batch(0, vec![rec("k", "new")])]))?;
        assert_eq!(got[0].first_offset, 4);
    }

    // 3. A flipped byte inside the second batch cuts it and everything after it.
    {
        let mut bytes = std::fs::read(&seg)?;
        let at = lens[0] as usize + 20;
        bytes[at] ^= 0x55;
        std::fs::write(&seg, &bytes)?;
        let log = open(dir.path(), &clock, 1 << 20, 0);
        assert_eq!(std::fs::metadata(&seg)?.len(), lens[0]);
        assert_eq!(data_of(&read_all(&log, 0)), vec![(0, "r0".into()), (1, "r0".into())]);
        assert_eq!(log.next_offset(), 2);
    }

    // 4. Only a torn header left: the segment is reset and the log works.
    {
        let f = std::fs::OpenOptions::new().write(true).open(&seg)?;
        f.set_len(10)?;
        drop(f);
        let log = open(dir.path(), &clock, 1 << 20, 0);
        assert!(read_all(&log, 0).is_empty());
        let got = rt.block_on(log.append(vec![batch(0, vec![rec("k", "again")])]))?;
        assert_eq!(got[0].first_offset, 0);
    }
    let log = open(dir.path(), &clock, 1 << 20, 0);
    assert_eq!(data_of(&read_all(&log, 0)), vec![(0, "again".into())]);
    Ok(())
}

#[test]
fn failed_sync_and_write_are_never_visible() -> TestResult {
    let rt = runtime();
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(1));
    {
        let log = open(dir.path(), &clock, 1 << 20, 0);
        rt.block_on(log.append(vec![batch(0, vec![rec("k", "ok1")])]))?;

        log.fault_injector().set_fail_syncs(true);
        let err = rt.block_on(log.append(vec![batch(0, vec![rec("k", "lost1")])]));
        assert!(matches!(err, Err(Error::Io { .. })), "{err:?}");
        // Still failing: recovery cannot sync, so the log stays faulted.
        let err = rt.block_on(log.append(vec![batch(0, vec![rec("k", "lost2")])]));
        assert!(matches!(err, Err(Error::Faulted { .. })), "{err:?}");
        assert!(log.sync().is_err());
        assert_eq!(log.next_offset(), 1);
        assert_eq!(data_of(&read_all(&log, 0)), vec![(0, "ok1".into())]);

        log.fault_injector().set_fail_syncs(false);
        let got = rt.block_on(log.append(vec![batch(0, vec![rec("k", "ok2")])]))?;
        assert_eq!(got[0].first_offset, 1);

        log.fault_injector().set_fail_writes(true);
        assert!(
            rt.block_on(log.append(vec![batch(1, vec![rec("k", "lost3")])]))
                .is_err()
        );
        log.fault_injector().set_fail_writes(false);
        let got = rt.block_on(log.append(vec![batch(0, vec![rec("k", "ok3")])]))?;
        assert_eq!(got[0].first_offset, 2);
        assert_eq!(
            data_of(&read_all(&log, 0)),
            vec![(0, "ok1".into()), (1, "ok2".into()), (2, "ok3".into())]
        );
        assert!(read_all(&log, 1).is_empty());

        // A failure right before shutdown: the unacknowledged data must not resurface.
        log.fault_injector().set_fail_syncs(true);
        assert!(
            rt.block_on(log.append(vec![batch(0, vec![rec("k", "lost4")])]))
                .is_err()
        );
        log.fault_injector().set_fail_syncs(false);
    }
    let log = open(dir.path(), &clock, 1 << 20, 0);
    assert_eq!(
        data_of(&read_all(&log, 0)),
        vec![(0, "ok1".into()), (1, "ok2".into()), (2, "ok3".into())]
    );
    assert_eq!(log.next_offset(), 3);
    Ok(())
}

#[test]
fn failed_roll_recovers() -> TestResult {
    let rt = runtime();
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(1));
    let log = open(dir.path(), &clock, 10, 0);
    rt.block_on(log.append(vec![batch(0, vec![rec("k", "a")])]))?;
    // The next append has to roll first; make the roll fail.
    log.fault_injector().set_fail_writes(true);
    assert!(rt.block_on(log.append(vec![batch(0, vec![rec("k", "x")])])).is_err());
    log.fault_injector().set_fail_writes(false);
    let got = rt.block_on(log.append(vec![batch(0, vec![rec("k", "b")])]))?;
    assert_eq!(got[0].first_offset, 1);
    assert_eq!(log.segment_count(), 2);
    drop(log);
    let log = open(dir.path(), &clock, 10, 0);
    assert_eq!(data_of(&read_all(&log, 0)), vec![(0, "a".into()), (1, "b".into())]);
    Ok(())
}

#[test]
fn concurrent_appends_share_one_sync() -> TestResult {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(1));
    let log = Arc::new(open(dir.path(), &clock, 1 << 20, 0));
    let syncs_before = log.sync_count();
    // Hold the writer at the start of its next group until all 16 requests are queued.
    let gate = super::lock(&log.inner().group_gate);
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let log = log.clone();
        tasks.push(rt.spawn(async move { log.append(vec![batch(i % 4, vec![rec("k", &format!("{i}")); 3])]).await }));
    }
    let mut waited = 0;
    while log.inner().requests_sent.load(Ordering::SeqCst) < 16 {
        std::thread::sleep(Duration::from_millis(1));
        waited += 1;
        assert!(waited < 10_000, "appends were never sent");
    }
    drop(gate);
    let mut offsets = Vec::new();
    for t in tasks {
        let appended = rt.block_on(t)??;
        assert_eq!(appended.len(), 1);
        assert_eq!(appended[0].count, 3);
        offsets.extend(appended[0].first_offset..appended[0].first_offset + 3);
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (0..48).collect::<Vec<_>>());
    assert_eq!(log.sync_count() - syncs_before, 1, "16 appends, one group, one sync");

    // Without the gate: many concurrent appenders, all correct.
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let log = log.clone();
        tasks.push(rt.spawn(async move {
            let mut got = Vec::new();
            for _ in 0..20 {
                got.extend(log.append(vec![batch(i, vec![rec("k", "v")])]).await?);
            }
            Ok::<_, Error>(got)
        }));
    }
    let mut offsets = Vec::new();
    for t in tasks {
        for a in rt.block_on(t)?? {
            offsets.push(a.first_offset);
        }
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (48..48 + 320).collect::<Vec<_>>());
    assert!(log.sync_count() - syncs_before <= 321);
    for p in 0..16 {
        assert_eq!(read_all(&log, p).len() as u64, 20 + if p < 4 { 12 } else { 0 });
    }
    Ok(())
}

#[test]
fn sealed_indexes_are_used_and_rebuilt() -> TestResult {
    let rt = runtime();
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(1));
    let mut expected = Vec::new();
    {
        let log = open(dir.path(), &clock, 200, 0);
        for i in 0..40 {
            clock.advance(1);
            rt.block_on(log.append(vec![batch(i % 2, vec![rec("key", &format!("v{i}"))])]))?;
        }
        expected.push(read_all(&log, 0));
        expected.push(read_all(&log, 1));
        assert!(log.segment_count() > 4);
    }
    let idx: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir.path())?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "idx"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(idx.len(), segment_files(dir.path()).len() - 1);
    // Corrupt one index, delete another, truncate a third.
    let mut bytes = std::fs::read(&idx[0])?;
    bytes[40] ^= 0xff;
    std::fs::write(&idx[0], &bytes)?;
    std::fs::remove_file(&idx[1])?;
    std::fs::write(&idx[2], b"short")?;
    std::fs::write(dir.path().join("00000000000000000001.idx.tmp"), b"leftover")?;
    {
        let log = open(dir.path(), &clock, 200, 0);
        assert_eq!(read_all(&log, 0), expected[0]);
        assert_eq!(read_all(&log, 1), expected[1]);
        assert_eq!(log.next_offset(), 40);
    }
    assert!(idx[1].exists(), "missing index is rewritten");
    assert!(!dir.path().join("00000000000000000001.idx.tmp").exists());
    let log = open(dir.path(), &clock, 200, 0);
    assert_eq!(read_all(&log, 0), expected[0]);

    // Trimming removes old sealed segments only.
    let removed = log.trim_before(clock.now_ms() - 10)?;
    assert!(removed > 0);
    let left = read_all(&log, 0);
    assert!(left.iter().all(|r| r.offset >= log.first_segment_base()));
    assert!(left.len() < expected[0].len());
    assert_eq!(left.last(), expected[0].last());
    let everything = log.trim_before(i64::MAX)?;
    assert!(everything > 0);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(segment_files(dir.path()).len(), 1);
    log.destroy()?;
    assert!(!dir.path().exists());
    Ok(())
}

#[test]
fn min_next_offset_and_interval_policy() -> TestResult {
    let rt = runtime();
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(1));
    let log = Log::open(
        dir.path(),
        config(1 << 20, FsyncPolicy::Interval(Duration::from_millis(5))),
        clock.clone(),
        100,
    )?;
    assert_eq!(log.next_offset(), 100);
    let got = rt.block_on(log.append(vec![batch(3, vec![rec("k", "v")])]))?;
    assert_eq!(got[0].first_offset, 100);
    let mut waited = 0;
    while log.sync_count() == 0 {
        std::thread::sleep(Duration::from_millis(1));
        waited += 1;
        assert!(waited < 5_000, "interval sync never happened");
    }
    log.sync()?;
    drop(log);
    let log = open(dir.path(), &clock, 1 << 20, 0);
    assert_eq!(log.next_offset(), 101);
    assert_eq!(data_of(&read_all(&log, 3)), vec![(100, "v".into())]);
    Ok(())
}

#[test]
fn log_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Log>();
}

fn startup_bench(appends: u32, records_per_batch: usize) -> TestResult {
    let rt = runtime();
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(1));
    {
        let log = Log::open(dir.path(), config(64 << 20, FsyncPolicy::Never), clock.clone(), 0)?;
        let record = Record {
            key: b"k".to_vec(),
            data: vec![7u8; 1000],
        };
        for i in 0..appends {
            let batches = (0..4)
                .map(|p| batch(p, vec![record.clone(); records_per_batch]))
                .collect();
            rt.block_on(log.append(batches))?;
            if i % 100 == 0 {
                clock.advance(1);
            }
        }
    }
    let start = std::time::Instant::now();
    let log = Log::open(dir.path(), LogConfig::default(), clock.clone(), 0)?;
    let took = start.elapsed();
    eprintln!(
        "reopened {} records in {} segments in {took:?}",
        log.next_offset(),
        log.segment_count()
    );
    // Release builds take ~50 ms for a million index entries, debug builds ~10x that.
    assert!(took < Duration::from_secs(1));
    Ok(())
}

/// Startup time with ~1 GB of data in big batches (few index entries).
/// Run with `cargo test -p kd-storage -- --ignored`.
#[test]
#[ignore]
fn startup_with_a_gigabyte_of_big_batches_is_fast() -> TestResult {
    startup_bench(1_000, 256)
}

/// Startup time with ~1 GB of data in one-record batches (a million index entries).
#[test]
#[ignore]
fn startup_with_a_gigabyte_of_small_batches_is_fast() -> TestResult {
    startup_bench(250_000, 1)
}
