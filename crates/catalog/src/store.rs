//! Durable documents of the catalog (values in `MetaStore` tables).
//!
//! | table | key | value |
//! |---|---|---|
//! | `glue_databases` | `<account>/<region>/<db>` | [`DatabaseDoc`] (JSON) |
//! | `glue_tables` | `<account>/<region>/<db>/<table>` | [`TableDoc`] (JSON): the current version |
//! | `glue_table_versions` | `<account>/<region>/<db>/<table>/<version:010>` | [`TableDoc`]: an archived version |
//! | `glue_partitions` | `<account>/<region>/<db>/<table>/<v1>/<v2>…` | [`PartitionDoc`] (JSON) |
//!
//! Every value carries `version`, the format version 1. Key components are escaped (`%` →
//! `%25`, `/` → `%2F`) so a `/` inside a name or a partition value cannot shift the key's
//! fields; a partition's values are in partition-key order.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Database, Partition, Scope, Table};

pub(crate) const T_DATABASES: &str = "glue_databases";
pub(crate) const T_TABLES: &str = "glue_tables";
pub(crate) const T_VERSIONS: &str = "glue_table_versions";
pub(crate) const T_PARTITIONS: &str = "glue_partitions";
pub(crate) const ALL_TABLES: [&str; 4] = [T_DATABASES, T_TABLES, T_VERSIONS, T_PARTITIONS];
pub(crate) const FORMAT_VERSION: u32 = 1;

/// A database document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DatabaseDoc {
    pub version: u32,
    pub account: String,
    pub region: String,
    pub database: Database,
}

/// A table document (current or archived version).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TableDoc {
    pub version: u32,
    pub account: String,
    pub region: String,
    pub table: Table,
}

/// A partition document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PartitionDoc {
    pub version: u32,
    pub account: String,
    pub region: String,
    pub partition: Partition,
}

pub(crate) fn esc(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

pub(crate) fn db_key(scope: &Scope, db: &str) -> String {
    format!("{}/{}/{}", esc(&scope.account), esc(&scope.region), esc(db))
}

pub(crate) fn table_key(scope: &Scope, db: &str, table: &str) -> String {
    format!("{}/{}", db_key(scope, db), esc(table))
}

pub(crate) fn version_key(scope: &Scope, db: &str, table: &str, version: u64) -> String {
    format!("{}/{version:010}", table_key(scope, db, table))
}

pub(crate) fn partition_key(scope: &Scope, db: &str, table: &str, values: &[String]) -> String {
    let mut k = table_key(scope, db, table);
    for v in values {
        k.push('/');
        k.push_str(&esc(v));
    }
    k
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Internal(format!("encode: {e}")))
}

pub(crate) fn from_json<T: for<'de> Deserialize<'de>>(what: &str, b: &[u8]) -> Result<T> {
    serde_json::from_slice(b).map_err(|e| Error::Internal(format!("stored {what} is unreadable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_escape_separators() {
        let s = Scope {
            account: "1".into(),
            region: "r".into(),
        };
        assert_eq!(
            partition_key(&s, "d", "t", &["a/b".into(), "50%".into()]),
            "1/r/d/t/a%2Fb/50%25"
        );
        assert!(version_key(&s, "d", "t", 9) < version_key(&s, "d", "t", 10));
    }
}
