//! `MetaStore`: named tables of string keys and byte values in one redb database file.
//!
//! Every [`MetaStore::write`] is one durable redb transaction (committed with
//! `Durability::Immediate`), so a group of puts and deletes lands atomically or not at all.
//! Tables are created on first write; reading a table that was never written yields nothing.
//!
//! [`MetaStore::write_grouped`] is the group-commit path: callers on any thread enqueue their
//! op lists with a committer thread (started on first use), which drains every pending list,
//! applies them in arrival order in ONE redb write transaction, commits once and answers
//! every caller with the same outcome. One durable commit thus serves many concurrent
//! writers. Either the whole group is committed or none of it; a failed group fails every
//! caller in it. There is nothing extra on disk: recovery is redb's own.
//!
//! [`MetaStore::snapshot`] opens a consistent read view for range scans (seek from a key,
//! iterate forward or backward) without loading a table.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Bound;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};

use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, TableDefinition, TableError, TableHandle,
    WriteTransaction,
};
use tokio::sync::oneshot;

use crate::error::Error;

/// One operation of a [`MetaStore::write`] transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaOp {
    /// Insert or replace `key` in `table`.
    Put {
        /// Table name.
        table: String,
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove `key` from `table` (no-op if absent).
    Delete {
        /// Table name.
        table: String,
        /// Key.
        key: String,
    },
}

/// A small transactional metadata store. `Send + Sync`; share it as `Arc<MetaStore>`.
#[derive(Debug)]
pub struct MetaStore {
    db: Database,
    /// Queue of the group-commit thread, started by the first [`MetaStore::write_grouped`].
    grouped: OnceLock<mpsc::Sender<GroupRequest>>,
    /// Transactions committed by the group-commit thread (observability and tests).
    group_commits: AtomicU64,
}

/// One caller's op list waiting for the group-commit thread.
#[derive(Debug)]
struct GroupRequest {
    ops: Vec<MetaOp>,
    reply: oneshot::Sender<Result<(), Error>>,
}

/// The pending outcome of a [`MetaStore::write_grouped`] call. The ops were queued when the
/// call was made; dropping this future does not cancel them, it only discards the answer.
#[derive(Debug)]
pub struct GroupedWrite {
    state: GroupedState,
}

#[derive(Debug)]
enum GroupedState {
    Waiting(oneshot::Receiver<Result<(), Error>>),
    Ready(Option<Result<(), Error>>),
}

impl Future for GroupedWrite {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            GroupedState::Waiting(rx) => match Pin::new(rx).poll(cx) {
                Poll::Ready(Ok(r)) => Poll::Ready(r),
                Poll::Ready(Err(_)) => Poll::Ready(Err(Error::Closed)),
                Poll::Pending => Poll::Pending,
            },
            GroupedState::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(Error::Closed))),
        }
    }
}

/// A consistent read-only view of the whole store (one redb read transaction).
pub struct Snapshot {
    txn: ReadTransaction,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Snapshot")
    }
}

/// One table of a [`Snapshot`]; a table that was never written reads as empty.
pub struct TableSnapshot {
    table: Option<ReadOnlyTable<&'static str, &'static [u8]>>,
}

impl std::fmt::Debug for TableSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TableSnapshot")
    }
}

/// Entries of a [`TableSnapshot::range`], in key order (or reverse with `next_back`).
pub struct SnapshotRange {
    inner: Option<redb::Range<'static, &'static str, &'static [u8]>>,
}

impl std::fmt::Debug for SnapshotRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotRange")
    }
}

type Entry = Result<(String, Vec<u8>), Error>;

fn entry(
    item: Result<
        (
            redb::AccessGuard<'static, &'static str>,
            redb::AccessGuard<'static, &'static [u8]>,
        ),
        redb::StorageError,
    >,
) -> Entry {
    let (k, v) = item.map_err(meta_err)?;
    Ok((k.value().to_string(), v.value().to_vec()))
}

impl Iterator for SnapshotRange {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        self.inner.as_mut()?.next().map(entry)
    }
}

impl DoubleEndedIterator for SnapshotRange {
    fn next_back(&mut self) -> Option<Entry> {
        self.inner.as_mut()?.next_back().map(entry)
    }
}

impl Snapshot {
    /// The named table as of this snapshot.
    pub fn table(&self, name: &str) -> Result<TableSnapshot, Error> {
        match self.txn.open_table(table_def(name)) {
            Ok(t) => Ok(TableSnapshot { table: Some(t) }),
            Err(TableError::TableDoesNotExist(_)) => Ok(TableSnapshot { table: None }),
            Err(e) => Err(meta_err(e)),
        }
    }
}

impl TableSnapshot {
    /// The value of `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        match &self.table {
            None => Ok(None),
            Some(t) => Ok(t.get(key).map_err(meta_err)?.map(|v| v.value().to_vec())),
        }
    }

    /// Entries with keys between `start` and `end`, in key order (reverse with `.rev()`).
    pub fn range(&self, start: Bound<&str>, end: Bound<&str>) -> Result<SnapshotRange, Error> {
        match &self.table {
            None => Ok(SnapshotRange { inner: None }),
            Some(t) => Ok(SnapshotRange {
                inner: Some(t.range::<&str>((start, end)).map_err(meta_err)?),
            }),
        }
    }
}

/// Applies `ops` in order inside `txn`, opening each table once.
fn apply_ops<'a>(txn: &WriteTransaction, ops: impl Iterator<Item = &'a MetaOp>) -> Result<(), Error> {
    let mut tables = HashMap::new();
    for op in ops {
        let (MetaOp::Put { table, .. } | MetaOp::Delete { table, .. }) = op;
        if !tables.contains_key(table.as_str()) {
            let t = txn.open_table(table_def(table)).map_err(meta_err)?;
            tables.insert(table.as_str(), t);
        }
        let Some(t) = tables.get_mut(table.as_str()) else {
            return Err(Error::Faulted {
                cause: "table vanished".into(),
            });
        };
        match op {
            MetaOp::Put { key, value, .. } => {
                t.insert(key.as_str(), value.as_slice()).map_err(meta_err)?;
            }
            MetaOp::Delete { key, .. } => {
                t.remove(key.as_str()).map_err(meta_err)?;
            }
        }
    }
    Ok(())
}

/// The group-commit thread: drains every queued request, commits them as one transaction,
/// answers all. Holds only a weak reference so dropping the last `Arc<MetaStore>` closes
/// the database (and the queue, which ends this thread).
fn committer(store: Weak<MetaStore>, rx: mpsc::Receiver<GroupRequest>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        let result = match store.upgrade() {
            Some(store) => store.commit_group(&group),
            None => Err(Error::Closed),
        };
        for req in group {
            let answer = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(e.duplicate()),
            };
            // A caller that dropped its future no longer wants the answer.
            let _ = req.reply.send(answer);
        }
    }
}

fn meta_err(e: impl Into<redb::Error>) -> Error {
    Error::Meta(e.into())
}

fn table_def(name: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(name)
}

impl MetaStore {
    /// Opens the database file at `path`, creating it (and its parent directory) if missing.
    pub fn open(path: &Path) -> Result<MetaStore, Error> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
        }
        let db = Database::create(path).map_err(meta_err)?;
        Ok(MetaStore {
            db,
            grouped: OnceLock::new(),
            group_commits: AtomicU64::new(0),
        })
    }

    /// Queues `ops` for the group-commit thread and returns a future of the outcome.
    ///
    /// Concurrent callers are batched into ONE durable redb write transaction; every caller
    /// of a group gets the same outcome. The ops are queued when this is called (not when
    /// the future is first polled), so calls made in order commit in that order; dropping
    /// the returned future does not cancel the write.
    pub fn write_grouped(self: &Arc<Self>, ops: Vec<MetaOp>) -> GroupedWrite {
        if ops.is_empty() {
            return GroupedWrite {
                state: GroupedState::Ready(Some(Ok(()))),
            };
        }
        let sender = self.grouped.get_or_init(|| {
            let (tx, rx) = mpsc::channel();
            let weak = Arc::downgrade(self);
            let spawned = std::thread::Builder::new()
                .name("meta-commit".into())
                .spawn(move || committer(weak, rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the metadata group-commit thread");
            }
            tx
        });
        let (reply, rx) = oneshot::channel();
        match sender.send(GroupRequest { ops, reply }) {
            Ok(()) => GroupedWrite {
                state: GroupedState::Waiting(rx),
            },
            Err(_) => GroupedWrite {
                state: GroupedState::Ready(Some(Err(Error::Closed))),
            },
        }
    }

    fn commit_group(&self, group: &[GroupRequest]) -> Result<(), Error> {
        let txn = self.db.begin_write().map_err(meta_err)?;
        apply_ops(&txn, group.iter().flat_map(|r| r.ops.iter()))?;
        txn.commit().map_err(meta_err)?;
        self.group_commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// How many transactions the group-commit thread has committed so far.
    pub fn group_commit_count(&self) -> u64 {
        self.group_commits.load(Ordering::Relaxed)
    }

    /// A consistent read view of every table.
    pub fn snapshot(&self) -> Result<Snapshot, Error> {
        Ok(Snapshot {
            txn: self.db.begin_read().map_err(meta_err)?,
        })
    }

    /// The value of `key` in `table`, if any.
    pub fn get(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let txn = self.db.begin_read().map_err(meta_err)?;
        let t = match txn.open_table(table_def(table)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(meta_err(e)),
        };
        Ok(t.get(key).map_err(meta_err)?.map(|v| v.value().to_vec()))
    }

    /// All entries of `table` whose key starts with `prefix`, sorted by key.
    pub fn scan_prefix(&self, table: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let txn = self.db.begin_read().map_err(meta_err)?;
        let t = match txn.open_table(table_def(table)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(meta_err(e)),
        };
        let mut out = Vec::new();
        for item in t.range(prefix..).map_err(meta_err)? {
            let (k, v) = item.map_err(meta_err)?;
            let k = k.value();
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Applies `ops` in order as ONE durable transaction.
    pub fn write(&self, ops: Vec<MetaOp>) -> Result<(), Error> {
        if ops.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(meta_err)?;
        for op in &ops {
            match op {
                MetaOp::Put { table, key, value } => {
                    let mut t = txn.open_table(table_def(table)).map_err(meta_err)?;
                    t.insert(key.as_str(), value.as_slice()).map_err(meta_err)?;
                }
                MetaOp::Delete { table, key } => {
                    let mut t = txn.open_table(table_def(table)).map_err(meta_err)?;
                    t.remove(key.as_str()).map_err(meta_err)?;
                }
            }
        }
        txn.commit().map_err(meta_err)
    }

    /// Empties every table (used to reset state between test suites).
    pub fn clear_all(&self) -> Result<(), Error> {
        let txn = self.db.begin_write().map_err(meta_err)?;
        let names: Vec<String> = txn
            .list_tables()
            .map_err(meta_err)?
            .map(|h| h.name().to_string())
            .collect();
        for name in &names {
            txn.delete_table(table_def(name)).map_err(meta_err)?;
        }
        txn.commit().map_err(meta_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(table: &str, key: &str, value: &[u8]) -> MetaOp {
        MetaOp::Put {
            table: table.into(),
            key: key.into(),
            value: value.to_vec(),
        }
    }

    #[test]
    fn put_get_scan_delete_clear_and_reopen() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("sub").join("meta.redb");
        {
            let store = MetaStore::open(&path)?;
            assert_eq!(store.get("streams", "a")?, None);
            assert!(store.scan_prefix("streams", "")?.is_empty());
            store.write(vec![
                put("streams", "s/b", b"2"),
                put("streams", "s/a", b"1"),
                put("streams", "t/x", b"9"),
                put("shards", "s/a/0", b"shard"),
            ])?;
            assert_eq!(store.get("streams", "s/a")?, Some(b"1".to_vec()));
            assert_eq!(store.get("shards", "s/a")?, None);
            assert_eq!(
                store.scan_prefix("streams", "s/")?,
                vec![("s/a".to_string(), b"1".to_vec()), ("s/b".to_string(), b"2".to_vec())]
            );
            assert_eq!(store.scan_prefix("streams", "")?.len(), 3);
            assert!(store.scan_prefix("streams", "u")?.is_empty());
            store.write(vec![
                MetaOp::Delete {
                    table: "streams".into(),
                    key: "s/b".into(),
                },
                put("streams", "s/a", b"1bis"),
                MetaOp::Delete {
                    table: "nothing".into(),
                    key: "zz".into(),
                },
            ])?;
            assert_eq!(store.get("streams", "s/b")?, None);
            assert_eq!(store.get("streams", "s/a")?, Some(b"1bis".to_vec()));
        }
        {
            let store = MetaStore::open(&path)?;
            assert_eq!(store.get("streams", "s/a")?, Some(b"1bis".to_vec()));
            assert_eq!(store.get("shards", "s/a/0")?, Some(b"shard".to_vec()));
            assert_eq!(store.get("streams", "t/x")?, Some(b"9".to_vec()));
            store.clear_all()?;
            assert_eq!(store.get("streams", "s/a")?, None);
            assert!(store.scan_prefix("shards", "")?.is_empty());
            store.write(vec![put("streams", "new", b"n")])?;
        }
        let store = MetaStore::open(&path)?;
        assert_eq!(
            store.scan_prefix("streams", "")?,
            vec![("new".to_string(), b"n".to_vec())]
        );
        assert_eq!(store.get("shards", "s/a/0")?, None);
        Ok(())
    }

    #[test]
    fn grouped_writes_from_16_callers_are_batched_and_durable() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("meta.redb");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .map_err(|e| Error::io("runtime", e))?;
        {
            let store = Arc::new(MetaStore::open(&path)?);
            rt.block_on(async {
                let mut tasks = Vec::new();
                for i in 0..16 {
                    let store = store.clone();
                    tasks.push(tokio::spawn(async move {
                        store
                            .write_grouped(vec![
                                put("grouped", &format!("k{i:02}"), format!("v{i}").as_bytes()),
                                put("other", &format!("o{i:02}"), b"x"),
                            ])
                            .await
                    }));
                }
                for t in tasks {
                    t.await.map_err(|e| Error::Faulted { cause: e.to_string() })??;
                }
                Ok::<(), Error>(())
            })?;
            // Empty op lists complete at once.
            rt.block_on(store.write_grouped(Vec::new()))?;
            assert_eq!(store.scan_prefix("grouped", "k")?.len(), 16);
            let snap = store.snapshot()?;
            let t = snap.table("grouped")?;
            assert_eq!(t.get("k03")?, Some(b"v3".to_vec()));
            let from: Vec<String> = t
                .range(Bound::Excluded("k13"), Bound::Unbounded)?
                .map(|e| e.map(|(k, _)| k))
                .collect::<Result<_, _>>()?;
            assert_eq!(from, vec!["k14", "k15"]);
            let last = t.range(Bound::Unbounded, Bound::Unbounded)?.next_back().transpose()?;
            assert_eq!(last.map(|(k, _)| k), Some("k15".to_string()));
            assert!(
                snap.table("never")?
                    .range(Bound::Unbounded, Bound::Unbounded)?
                    .next()
                    .is_none()
            );
            // A fire-and-forget write still commits.
            drop(store.write_grouped(vec![put("grouped", "late", b"l")]));
            rt.block_on(store.write_grouped(vec![put("grouped", "later", b"l")]))?;
        }
        // The last Arc is gone, so the database is closed and can be reopened at once.
        let store = MetaStore::open(&path)?;
        assert_eq!(store.scan_prefix("grouped", "k")?.len(), 16);
        assert_eq!(store.scan_prefix("other", "")?.len(), 16);
        assert_eq!(store.get("grouped", "late")?, Some(b"l".to_vec()));
        Ok(())
    }

    #[test]
    fn grouped_commit_serves_many_writers_with_few_transactions() -> Result<(), Error> {
        // 64 callers queue before anyone awaits: they need far fewer than 64 commits.
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let store = Arc::new(MetaStore::open(&dir.path().join("m.redb"))?);
        let futures: Vec<GroupedWrite> = (0..64)
            .map(|i| store.write_grouped(vec![put("t", &format!("{i:03}"), b"v")]))
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| Error::io("runtime", e))?;
        for f in futures {
            rt.block_on(f)?;
        }
        assert_eq!(store.scan_prefix("t", "")?.len(), 64);
        let commits = store.group_commit_count();
        assert!((1..32).contains(&commits), "{commits} commits for 64 writers");
        Ok(())
    }

    #[test]
    fn store_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<MetaStore>();
    }
}
