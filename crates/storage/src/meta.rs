//! `MetaStore`: named tables of string keys and byte values in one redb database file.
//!
//! Every [`MetaStore::write`] is one durable redb transaction (committed with
//! `Durability::Immediate`), so a group of puts and deletes lands atomically or not at all.
//! Tables are created on first write; reading a table that was never written yields nothing.

use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition, TableError, TableHandle};

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
        Ok(MetaStore { db })
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
    fn store_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<MetaStore>();
    }
}
