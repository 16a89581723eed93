//! Engine tests without HTTP: the stream engine over real storage in a temp dir, driven by a
//! manual clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use kd_storage::{ManualClock, MetaStore};
use kd_stream::{Config, Engine, Error, IteratorStart, PutEntry, PutOutcome, Scope, StreamMode, StreamRef};
use proptest::prelude::*;

const T0: i64 = 1_800_000_000_000;

fn scope() -> Scope {
    Scope {
        account: "000000000000".into(),
        region: "us-east-1".into(),
    }
}

fn named(name: &str) -> StreamRef<'_> {
    StreamRef {
        name: Some(name),
        arn: None,
    }
}

fn open(dir: &std::path::Path, clock: Arc<ManualClock>) -> Engine {
    let meta = Arc::new(MetaStore::open(&dir.join("meta.redb")).expect("meta"));
    let mut cfg = Config::new(dir.join("streams"));
    cfg.create_delay_ms = 0;
    cfg.update_delay_ms = 0;
    Engine::open(cfg, meta, clock).expect("engine")
}

fn entry(pk: &str, data: &[u8]) -> PutEntry {
    PutEntry {
        partition_key: pk.into(),
        explicit_hash_key: None,
        data: data.to_vec(),
    }
}

async fn read_shard(e: &Engine, stream: &str, shard: &str) -> Vec<(String, Vec<u8>)> {
    let mut it = e
        .get_shard_iterator(&scope(), named(stream), shard, IteratorStart::TrimHorizon)
        .await
        .expect("iterator");
    let mut out = Vec::new();
    loop {
        let r = e.get_records(&scope(), &it, 3).await.expect("records");
        let n = r.records.len();
        out.extend(r.records.into_iter().map(|r| (r.sequence_number, r.data)));
        match r.next_iterator {
            Some(next) if n > 0 => it = next,
            _ => return out,
        }
    }
}

#[tokio::test]
async fn put_get_and_recover_without_http() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(T0));
    let e = open(dir.path(), clock.clone());
    e.create_stream(&scope(), "s", Some(2), StreamMode::Provisioned, BTreeMap::new())
        .await
        .expect("create");
    let out = e
        .put_records(
            &scope(),
            named("s"),
            (0..10).map(|i| entry(&format!("k{i}"), &[i as u8])).collect(),
        )
        .await
        .expect("put");
    assert_eq!(out.len(), 10);
    let mut written: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    for (i, o) in out.into_iter().enumerate() {
        let PutOutcome::Stored {
            shard_id,
            sequence_number,
        } = o
        else {
            panic!("throttled without limits")
        };
        written
            .entry(shard_id)
            .or_default()
            .push((sequence_number, vec![i as u8]));
    }
    for (shard, recs) in &written {
        assert_eq!(&read_shard(&e, "s", shard).await, recs);
    }
    drop(e);
    let e = open(dir.path(), clock);
    for (shard, recs) in &written {
        assert_eq!(&read_shard(&e, "s", shard).await, recs, "after reopen");
    }
    assert!(matches!(
        e.describe_stream(&scope(), named("nope"), 10, None).await,
        Err(Error::StreamNotFound { .. })
    ));
}

#[derive(Debug, Clone)]
enum Op {
    Split(usize, u8),
    Merge(usize),
    Scale(u32),
    Put(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..16, 1u8..255).prop_map(|(i, f)| Op::Split(i, f)),
        (0usize..16).prop_map(Op::Merge),
        (1u32..9).prop_map(Op::Scale),
        any::<u8>().prop_map(Op::Put),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any sequence of reshards keeps the open shards an exact partition of the hash space,
    /// every child's parents closed, and every acknowledged record in the shard it was put to.
    #[test]
    fn resharding_keeps_invariants(ops in proptest::collection::vec(op(), 1..14)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async {
            let dir = tempfile::tempdir().expect("tmp");
            let clock = Arc::new(ManualClock::new(T0));
            let e = open(dir.path(), clock.clone());
            e.create_stream(&scope(), "p", Some(2), StreamMode::Provisioned, BTreeMap::new()).await.expect("create");
            let mut acked: Vec<(String, String, Vec<u8>)> = Vec::new();
            for (n, op) in ops.into_iter().enumerate() {
                clock.advance(10);
                let d = e.describe_stream(&scope(), named("p"), 100, None).await.expect("describe");
                let mut open: Vec<_> = d.shards.iter().filter(|s| s.end_sequence.is_none()).cloned().collect();
                open.sort_by_key(|s| s.start_hash);
                match op {
                    Op::Split(i, f) => {
                        let s = &open[i % open.len()];
                        if s.end_hash > s.start_hash {
                            let span = s.end_hash - s.start_hash;
                            let key = s.start_hash + 1 + (span / 256) * u128::from(f);
                            let key = key.min(s.end_hash);
                            e.split_shard(&scope(), named("p"), &s.shard_id, key).await.expect("split");
                        }
                    }
                    Op::Merge(i) => {
                        if open.len() > 1 {
                            let i = i % (open.len() - 1);
                            e.merge_shards(&scope(), named("p"), &open[i].shard_id, &open[i + 1].shard_id).await.expect("merge");
                        }
                    }
                    Op::Scale(t) => {
                        let cur = open.len() as u32;
                        let t = t.clamp(cur.div_ceil(2), cur * 2).min(12);
                        if t * 2 >= cur {
                            e.update_shard_count(&scope(), named("p"), t).await.expect("scale");
                        }
                    }
                    Op::Put(b) => {
                        let data = vec![b, n as u8];
                        let out = e.put_records(&scope(), named("p"), vec![entry(&format!("k{b}-{n}"), &data)]).await.expect("put");
                        if let Some(PutOutcome::Stored { shard_id, sequence_number }) = out.into_iter().next() {
                            acked.push((shard_id, sequence_number, data));
                        }
                    }
                }
                // Invariants.
                let d = e.describe_stream(&scope(), named("p"), 100, None).await.expect("describe");
                let mut open: Vec<_> = d.shards.iter().filter(|s| s.end_sequence.is_none()).cloned().collect();
                open.sort_by_key(|s| s.start_hash);
                assert_eq!(open[0].start_hash, 0);
                assert_eq!(open[open.len() - 1].end_hash, u128::MAX);
                for w in open.windows(2) {
                    assert_eq!(w[0].end_hash + 1, w[1].start_hash, "open shards tile the hash space");
                }
                for s in &d.shards {
                    for p in s.parent.iter().chain(s.adjacent_parent.iter()) {
                        let parent = d.shards.iter().find(|x| &x.shard_id == p).expect("parent listed");
                        assert!(parent.end_sequence.is_some(), "parent {p} of {} is closed", s.shard_id);
                    }
                }
            }
            let mut by_shard: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
            for (shard, seq, data) in acked {
                by_shard.entry(shard).or_default().push((seq, data));
            }
            for (shard, recs) in by_shard {
                assert_eq!(read_shard(&e, "p", &shard).await, recs, "shard {shard}");
            }
        });
    }
}
