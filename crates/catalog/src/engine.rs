//! The catalog engine: an in-memory copy of every document, rebuilt from the metadata store
//! at open, and mutations that commit their documents before they change the copy.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use kd_storage::{Clock, MetaOp, MetaStore};
use tokio::sync::Mutex;

use crate::error::{Error, Result};
use crate::expr;
use crate::model::*;
use crate::store::*;

/// Largest page of GetDatabases / GetTables / GetTableVersions.
pub const MAX_PAGE: usize = 100;
/// Largest page of GetPartitions.
pub const MAX_PARTITION_PAGE: usize = 1000;
/// Longest GetTables expression.
pub const MAX_TABLE_EXPRESSION: usize = 2048;

#[derive(Debug, Clone)]
struct TableEntry {
    table: Table,
    /// Archived versions by number.
    versions: BTreeMap<u64, Table>,
    partitions: BTreeMap<Vec<String>, Partition>,
}

#[derive(Debug, Clone)]
struct DbEntry {
    db: Database,
    tables: BTreeMap<String, TableEntry>,
}

#[derive(Debug, Default)]
struct State {
    catalogs: HashMap<Scope, BTreeMap<String, DbEntry>>,
}

/// The Glue Data Catalog engine. `Send + Sync`; share it as `Arc<Catalog>`.
pub struct Catalog {
    meta: Arc<MetaStore>,
    clock: Arc<dyn Clock>,
    state: RwLock<State>,
    /// Serialises mutations (check, commit, apply).
    writer: Mutex<()>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Catalog")
    }
}

fn db_not_found(name: &str) -> Error {
    Error::EntityNotFound(format!("Database {name} not found."))
}

fn table_not_found(name: &str) -> Error {
    Error::EntityNotFound(format!("Table {name} not found."))
}

fn put(table: &str, key: String, value: Vec<u8>) -> MetaOp {
    MetaOp::Put {
        table: table.into(),
        key,
        value,
    }
}

fn del(table: &str, key: String) -> MetaOp {
    MetaOp::Delete {
        table: table.into(),
        key,
    }
}

/// Longest NextToken accepted (a token is outside data). The tokens this engine hands out
/// are far shorter: a name, a version number, or a partition's values (at most 1024
/// characters each, as the adapter checks).
const MAX_TOKEN_LEN: usize = 1024 * 1024;

fn invalid_token() -> Error {
    Error::InvalidInput("Invalid NextToken".into())
}

fn encode_token(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn decode_token(t: Option<&str>) -> Result<Option<String>> {
    match t {
        None | Some("") => Ok(None),
        Some(t) if t.len() > MAX_TOKEN_LEN => Err(invalid_token()),
        Some(t) => base64::engine::general_purpose::STANDARD
            .decode(t.as_bytes())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(Some)
            .ok_or_else(invalid_token),
    }
}

/// The token of the page after the partition whose values are `values`: the values
/// themselves (a JSON array), so the next page resumes in the order the partitions are
/// walked (value lists, as the partition map orders them).
fn encode_values_token(values: &[String]) -> String {
    encode_token(&serde_json::Value::from(values.to_vec()).to_string())
}

/// Reads a partition token: a JSON array of exactly `arity` strings.
fn decode_values_token(t: Option<&str>, arity: usize) -> Result<Option<Vec<String>>> {
    let Some(json) = decode_token(t)? else {
        return Ok(None);
    };
    match serde_json::from_str::<Vec<String>>(&json) {
        Ok(values) if values.len() == arity => Ok(Some(values)),
        _ => Err(invalid_token()),
    }
}

/// Pages `items` (sorted by key) after the key `after`; the next token encodes the last key
/// returned.
fn page_after<K: Ord, T>(
    items: impl Iterator<Item = (K, T)>,
    after: Option<&K>,
    max: usize,
    encode: impl Fn(&K) -> String,
) -> Page<T> {
    let mut out = Vec::new();
    let mut last = None;
    let mut more = false;
    for (k, v) in items {
        if after.is_some_and(|a| k <= *a) {
            continue;
        }
        if out.len() == max {
            more = true;
            break;
        }
        last = Some(k);
        out.push(v);
    }
    Page {
        items: out,
        next_token: if more { last.as_ref().map(encode) } else { None },
    }
}

/// Pages `items` (sorted by `key`) after the token's key.
fn page<T: Clone>(items: impl Iterator<Item = (String, T)>, token: Option<&str>, max: usize) -> Result<Page<T>> {
    let after = decode_token(token)?;
    Ok(page_after(items, after.as_ref(), max, |k| encode_token(k)))
}

/// Checks a name as Glue does (1–255 characters on one line).
fn check_name(what: &str, name: &str) -> Result<()> {
    let n = name.chars().count();
    if n == 0 || n > 255 {
        return Err(Error::InvalidInput(format!(
            "1 validation error detected: Value '{name}' at '{what}' failed to satisfy constraint: Member must have length between 1 and 255"
        )));
    }
    if name
        .chars()
        .any(|c| c == '\n' || c == '\r' || (c.is_control() && c != '\t'))
    {
        return Err(Error::InvalidInput(format!(
            "1 validation error detected: Value '{name}' at '{what}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\u0020-\\uD7FF\\uE000-\\uFFFD\\uD800\\uDC00-\\uDBFF\\uDFFF\\t]*"
        )));
    }
    Ok(())
}

/// Turns GetTables' `Expression` into an anchored regex (`*` alone means any run, as in Hive
/// patterns; otherwise the expression is a regular expression).
fn table_regex(expression: &str) -> Result<regex::Regex> {
    if expression.chars().count() > MAX_TABLE_EXPRESSION {
        return Err(Error::InvalidInput(format!(
            "Expression is longer than {MAX_TABLE_EXPRESSION} characters"
        )));
    }
    let mut pattern = String::with_capacity(expression.len() + 8);
    let mut prev = '\0';
    for c in expression.chars() {
        if c == '*' && prev != '.' && prev != ')' && prev != ']' && prev != '\\' {
            pattern.push_str(".*");
        } else {
            pattern.push(c);
        }
        prev = c;
    }
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .case_insensitive(true)
        .size_limit(1 << 20)
        .nest_limit(64)
        .build()
        .map_err(|e| Error::InvalidInput(format!("Invalid Expression: {e}")))
}

impl Catalog {
    /// Opens the catalog over `meta`, loading every document. Nothing needs repair: every
    /// change was one committed transaction. Archived versions and partitions whose table is
    /// gone (never written that way, but tolerated) are skipped with a warning.
    pub fn open(meta: Arc<MetaStore>, clock: Arc<dyn Clock>) -> Result<Arc<Catalog>> {
        let mut state = State::default();
        for (_, v) in meta.scan_prefix(T_DATABASES, "")? {
            let doc: DatabaseDoc = from_json("database", &v)?;
            let scope = Scope {
                account: doc.account,
                region: doc.region,
            };
            state.catalogs.entry(scope).or_default().insert(
                doc.database.input.name.clone(),
                DbEntry {
                    db: doc.database,
                    tables: BTreeMap::new(),
                },
            );
        }
        for (_, v) in meta.scan_prefix(T_TABLES, "")? {
            let doc: TableDoc = from_json("table", &v)?;
            let scope = Scope {
                account: doc.account,
                region: doc.region,
            };
            match state
                .catalogs
                .get_mut(&scope)
                .and_then(|c| c.get_mut(&doc.table.database))
            {
                Some(db) => {
                    db.tables.insert(
                        doc.table.input.name.clone(),
                        TableEntry {
                            table: doc.table,
                            versions: BTreeMap::new(),
                            partitions: BTreeMap::new(),
                        },
                    );
                }
                None => tracing::warn!(table = %doc.table.input.name, "Glue table without its database skipped"),
            }
        }
        for (_, v) in meta.scan_prefix(T_VERSIONS, "")? {
            let doc: TableDoc = from_json("table version", &v)?;
            let scope = Scope {
                account: doc.account,
                region: doc.region,
            };
            let Ok(n) = doc.table.version_id.parse::<u64>() else {
                continue;
            };
            if let Some(t) = state
                .catalogs
                .get_mut(&scope)
                .and_then(|c| c.get_mut(&doc.table.database))
                .and_then(|d| d.tables.get_mut(&doc.table.input.name))
            {
                t.versions.insert(n, doc.table);
            }
        }
        for (_, v) in meta.scan_prefix(T_PARTITIONS, "")? {
            let doc: PartitionDoc = from_json("partition", &v)?;
            let scope = Scope {
                account: doc.account,
                region: doc.region,
            };
            if let Some(t) = state
                .catalogs
                .get_mut(&scope)
                .and_then(|c| c.get_mut(&doc.partition.database))
                .and_then(|d| d.tables.get_mut(&doc.partition.table))
            {
                t.partitions.insert(doc.partition.input.values.clone(), doc.partition);
            }
        }
        Ok(Arc::new(Catalog {
            meta,
            clock,
            state: RwLock::new(state),
            writer: Mutex::new(()),
        }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn with_db<T>(&self, scope: &Scope, db: &str, f: impl FnOnce(&DbEntry) -> Result<T>) -> Result<T> {
        let db = db.to_lowercase();
        let state = self.read();
        let entry = state
            .catalogs
            .get(scope)
            .and_then(|c| c.get(&db))
            .ok_or_else(|| db_not_found(&db))?;
        f(entry)
    }

    fn with_table<T>(
        &self,
        scope: &Scope,
        db: &str,
        table: &str,
        f: impl FnOnce(&TableEntry) -> Result<T>,
    ) -> Result<T> {
        let table = table.to_lowercase();
        self.with_db(scope, db, |d| {
            let t = d.tables.get(&table).ok_or_else(|| table_not_found(&table))?;
            f(t)
        })
    }

    async fn commit(&self, ops: Vec<MetaOp>) -> Result<()> {
        self.meta.write_grouped(ops).await?;
        Ok(())
    }

    // ------------------------------------------------------------------ databases

    /// CreateDatabase.
    pub async fn create_database(&self, scope: &Scope, mut input: DatabaseInput) -> Result<()> {
        check_name("databaseInput.name", &input.name)?;
        input.name = input.name.to_lowercase();
        let _w = self.writer.lock().await;
        if self
            .read()
            .catalogs
            .get(scope)
            .is_some_and(|c| c.contains_key(&input.name))
        {
            return Err(Error::AlreadyExists("Database already exists.".into()));
        }
        let db = Database {
            input,
            create_time_ms: self.clock.now_ms(),
            catalog_id: scope.account.clone(),
        };
        let doc = DatabaseDoc {
            version: FORMAT_VERSION,
            account: scope.account.clone(),
            region: scope.region.clone(),
            database: db.clone(),
        };
        self.commit(vec![put(T_DATABASES, db_key(scope, &db.input.name), to_json(&doc)?)])
            .await?;
        self.write_state().catalogs.entry(scope.clone()).or_default().insert(
            db.input.name.clone(),
            DbEntry {
                db,
                tables: BTreeMap::new(),
            },
        );
        Ok(())
    }

    /// GetDatabase.
    pub fn get_database(&self, scope: &Scope, name: &str) -> Result<Database> {
        self.with_db(scope, name, |d| Ok(d.db.clone()))
    }

    /// GetDatabases (sorted by name).
    pub fn get_databases(&self, scope: &Scope, token: Option<&str>, max: Option<usize>) -> Result<Page<Database>> {
        let state = self.read();
        let empty = BTreeMap::new();
        let dbs = state.catalogs.get(scope).unwrap_or(&empty);
        page(
            dbs.iter().map(|(k, v)| (k.clone(), v.db.clone())),
            token,
            max.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE),
        )
    }

    /// UpdateDatabase: replaces the definition (the name stays).
    pub async fn update_database(&self, scope: &Scope, name: &str, mut input: DatabaseInput) -> Result<()> {
        let name = name.to_lowercase();
        let _w = self.writer.lock().await;
        let mut db = self.get_database(scope, &name)?;
        input.name = name.clone();
        db.input = input;
        let doc = DatabaseDoc {
            version: FORMAT_VERSION,
            account: scope.account.clone(),
            region: scope.region.clone(),
            database: db.clone(),
        };
        self.commit(vec![put(T_DATABASES, db_key(scope, &name), to_json(&doc)?)])
            .await?;
        if let Some(e) = self
            .write_state()
            .catalogs
            .get_mut(scope)
            .and_then(|c| c.get_mut(&name))
        {
            e.db = db;
        }
        Ok(())
    }

    /// DeleteDatabase: the database and every table (with versions and partitions) in it.
    pub async fn delete_database(&self, scope: &Scope, name: &str) -> Result<()> {
        let name = name.to_lowercase();
        let _w = self.writer.lock().await;
        let mut ops = vec![del(T_DATABASES, db_key(scope, &name))];
        self.with_db(scope, &name, |d| {
            for t in d.tables.values() {
                ops.extend(Self::table_delete_ops(scope, t));
            }
            Ok(())
        })?;
        self.commit(ops).await?;
        if let Some(c) = self.write_state().catalogs.get_mut(scope) {
            c.remove(&name);
        }
        Ok(())
    }

    fn table_delete_ops(scope: &Scope, t: &TableEntry) -> Vec<MetaOp> {
        let (db, name) = (&t.table.database, &t.table.input.name);
        let mut ops = vec![del(T_TABLES, table_key(scope, db, name))];
        ops.extend(
            t.versions
                .keys()
                .map(|v| del(T_VERSIONS, version_key(scope, db, name, *v))),
        );
        ops.extend(
            t.partitions
                .keys()
                .map(|values| del(T_PARTITIONS, partition_key(scope, db, name, values))),
        );
        ops
    }

    // ------------------------------------------------------------------ tables

    fn table_doc(scope: &Scope, table: &Table) -> Result<Vec<u8>> {
        to_json(&TableDoc {
            version: FORMAT_VERSION,
            account: scope.account.clone(),
            region: scope.region.clone(),
            table: table.clone(),
        })
    }

    /// CreateTable.
    pub async fn create_table(&self, scope: &Scope, db: &str, mut input: TableInput) -> Result<()> {
        check_name("tableInput.name", &input.name)?;
        input.name = input.name.to_lowercase();
        let db = db.to_lowercase();
        let _w = self.writer.lock().await;
        self.with_db(scope, &db, |d| {
            if d.tables.contains_key(&input.name) {
                Err(Error::AlreadyExists("Table already exists.".into()))
            } else {
                Ok(())
            }
        })?;
        let now = self.clock.now_ms();
        let table = Table {
            input,
            database: db.clone(),
            create_time_ms: now,
            update_time_ms: now,
            catalog_id: scope.account.clone(),
            version_id: "0".into(),
        };
        self.commit(vec![put(
            T_TABLES,
            table_key(scope, &db, &table.input.name),
            Self::table_doc(scope, &table)?,
        )])
        .await?;
        if let Some(d) = self.write_state().catalogs.get_mut(scope).and_then(|c| c.get_mut(&db)) {
            d.tables.insert(
                table.input.name.clone(),
                TableEntry {
                    table,
                    versions: BTreeMap::new(),
                    partitions: BTreeMap::new(),
                },
            );
        }
        Ok(())
    }

    /// GetTable.
    pub fn get_table(&self, scope: &Scope, db: &str, name: &str) -> Result<Table> {
        self.with_table(scope, db, name, |t| Ok(t.table.clone()))
    }

    /// GetTables: tables whose name matches `expression` (see [`table_regex`]), by name.
    pub fn get_tables(
        &self,
        scope: &Scope,
        db: &str,
        expression: Option<&str>,
        token: Option<&str>,
        max: Option<usize>,
    ) -> Result<Page<Table>> {
        let re = expression.filter(|e| !e.is_empty()).map(table_regex).transpose()?;
        self.with_db(scope, db, |d| {
            page(
                d.tables
                    .iter()
                    .filter(|(k, _)| re.as_ref().is_none_or(|re| re.is_match(k)))
                    .map(|(k, v)| (k.clone(), v.table.clone())),
                token,
                max.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE),
            )
        })
    }

    /// UpdateTable: a new version (the previous one is archived unless `skip_archive`).
    /// `version_id`, when given, must be the current version.
    pub async fn update_table(
        &self,
        scope: &Scope,
        db: &str,
        mut input: TableInput,
        skip_archive: bool,
        version_id: Option<&str>,
    ) -> Result<()> {
        check_name("tableInput.name", &input.name)?;
        input.name = input.name.to_lowercase();
        let db = db.to_lowercase();
        let _w = self.writer.lock().await;
        let old = self.get_table(scope, &db, &input.name)?;
        if let Some(v) = version_id
            && v != old.version_id
        {
            return Err(Error::ConcurrentModification(format!(
                "Update table failed due to concurrent modifications. Table version {v} is not the current version {}.",
                old.version_id
            )));
        }
        let old_n: u64 = old.version_id.parse().unwrap_or(0);
        let table = Table {
            input,
            database: db.clone(),
            create_time_ms: old.create_time_ms,
            update_time_ms: self.clock.now_ms(),
            catalog_id: old.catalog_id.clone(),
            version_id: (old_n + 1).to_string(),
        };
        let mut ops = vec![put(
            T_TABLES,
            table_key(scope, &db, &table.input.name),
            Self::table_doc(scope, &table)?,
        )];
        if !skip_archive {
            ops.push(put(
                T_VERSIONS,
                version_key(scope, &db, &table.input.name, old_n),
                Self::table_doc(scope, &old)?,
            ));
        }
        self.commit(ops).await?;
        if let Some(t) = self
            .write_state()
            .catalogs
            .get_mut(scope)
            .and_then(|c| c.get_mut(&db))
            .and_then(|d| d.tables.get_mut(&table.input.name))
        {
            if !skip_archive {
                t.versions.insert(old_n, old);
            }
            t.table = table;
        }
        Ok(())
    }

    /// DeleteTable: the table, its versions and its partitions.
    pub async fn delete_table(&self, scope: &Scope, db: &str, name: &str) -> Result<()> {
        let errors = self.batch_delete_table(scope, db, &[name.to_string()]).await?;
        match errors.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// BatchDeleteTable: deletes what exists; the others come back with their error.
    pub async fn batch_delete_table(&self, scope: &Scope, db: &str, names: &[String]) -> Result<Vec<(String, Error)>> {
        let db = db.to_lowercase();
        let _w = self.writer.lock().await;
        let mut ops = Vec::new();
        let mut errors = Vec::new();
        let mut gone = Vec::new();
        self.with_db(scope, &db, |d| {
            for n in names {
                let lower = n.to_lowercase();
                match d.tables.get(&lower) {
                    Some(t) if !gone.contains(&lower) => {
                        ops.extend(Self::table_delete_ops(scope, t));
                        gone.push(lower);
                    }
                    _ => errors.push((n.clone(), table_not_found(&lower))),
                }
            }
            Ok(())
        })?;
        self.commit(ops).await?;
        if let Some(d) = self.write_state().catalogs.get_mut(scope).and_then(|c| c.get_mut(&db)) {
            for n in &gone {
                d.tables.remove(n);
            }
        }
        Ok(errors)
    }

    /// GetTableVersions: the current version and the archived ones, newest first.
    pub fn get_table_versions(
        &self,
        scope: &Scope,
        db: &str,
        table: &str,
        token: Option<&str>,
        max: Option<usize>,
    ) -> Result<Page<TableVersion>> {
        self.with_table(scope, db, table, |t| {
            let mut all = vec![(t.table.version_id.parse::<u64>().unwrap_or(0), t.table.clone())];
            all.extend(t.versions.iter().rev().map(|(n, v)| (*n, v.clone())));
            all.sort_by_key(|v| std::cmp::Reverse(v.0));
            page(
                all.into_iter().map(|(n, table)| {
                    // Descending order sorts ascending under the complement.
                    (
                        format!("{:020}", u64::MAX - n),
                        TableVersion {
                            version_id: table.version_id.clone(),
                            table,
                        },
                    )
                }),
                token,
                max.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE),
            )
        })
    }

    // ------------------------------------------------------------------ partitions

    fn check_values(t: &Table, values: &[String]) -> Result<()> {
        if values.len() != t.input.partition_keys().len() {
            return Err(Error::InvalidInput(
                "The number of partition keys do not match the number of partition values".into(),
            ));
        }
        Ok(())
    }

    /// CreatePartition.
    pub async fn create_partition(&self, scope: &Scope, db: &str, table: &str, input: PartitionInput) -> Result<()> {
        let errors = self.batch_create_partition(scope, db, table, vec![input]).await?;
        match errors.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// BatchCreatePartition: creates what it can; the others come back with their error.
    pub async fn batch_create_partition(
        &self,
        scope: &Scope,
        db: &str,
        table: &str,
        inputs: Vec<PartitionInput>,
    ) -> Result<Vec<(Vec<String>, Error)>> {
        let (db, table) = (db.to_lowercase(), table.to_lowercase());
        let _w = self.writer.lock().await;
        let now = self.clock.now_ms();
        let mut errors = Vec::new();
        let mut created: Vec<Partition> = Vec::new();
        let mut ops = Vec::new();
        self.with_table(scope, &db, &table, |t| {
            for input in inputs {
                if let Err(e) = Self::check_values(&t.table, &input.values) {
                    errors.push((input.values, e));
                    continue;
                }
                if t.partitions.contains_key(&input.values) || created.iter().any(|p| p.input.values == input.values) {
                    errors.push((input.values, Error::AlreadyExists("Partition already exists.".into())));
                    continue;
                }
                let p = Partition {
                    input,
                    database: db.clone(),
                    table: table.clone(),
                    creation_time_ms: now,
                    catalog_id: scope.account.clone(),
                };
                ops.push(put(
                    T_PARTITIONS,
                    partition_key(scope, &db, &table, &p.input.values),
                    to_json(&PartitionDoc {
                        version: FORMAT_VERSION,
                        account: scope.account.clone(),
                        region: scope.region.clone(),
                        partition: p.clone(),
                    })?,
                ));
                created.push(p);
            }
            Ok(())
        })?;
        self.commit(ops).await?;
        if let Some(t) = self
            .write_state()
            .catalogs
            .get_mut(scope)
            .and_then(|c| c.get_mut(&db))
            .and_then(|d| d.tables.get_mut(&table))
        {
            for p in created {
                t.partitions.insert(p.input.values.clone(), p);
            }
        }
        Ok(errors)
    }

    /// GetPartition.
    pub fn get_partition(&self, scope: &Scope, db: &str, table: &str, values: &[String]) -> Result<Partition> {
        self.with_table(scope, db, table, |t| {
            t.partitions
                .get(values)
                .cloned()
                .ok_or_else(|| Error::EntityNotFound("Cannot find partition.".into()))
        })
    }

    /// GetPartitions: the partitions matching `expression` (see [`crate::expr`]), in value
    /// order.
    pub fn get_partitions(
        &self,
        scope: &Scope,
        db: &str,
        table: &str,
        expression: Option<&str>,
        token: Option<&str>,
        max: Option<usize>,
    ) -> Result<Page<Partition>> {
        self.with_table(scope, db, table, |t| {
            let keys = t.table.input.partition_keys();
            let filter = expression
                .filter(|e| !e.trim().is_empty())
                .map(|e| expr::parse(e, keys))
                .transpose()?;
            // Resume after the token's values in the map's own order (a BTreeMap of value
            // lists); comparing any other rendering of the values (joined by `/`, say) skips
            // partitions whose values extend others (`us` then `us-east`).
            let after = decode_values_token(token, keys.len())?;
            let from = after.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
            Ok(page_after(
                t.partitions
                    .range::<Vec<String>, _>((from, Bound::Unbounded))
                    .filter(|(v, _)| filter.as_ref().is_none_or(|f| f.matches(keys, v)))
                    .map(|(v, p)| (v, p.clone())),
                None,
                max.unwrap_or(MAX_PARTITION_PAGE).clamp(1, MAX_PARTITION_PAGE),
                |v| encode_values_token(v),
            ))
        })
    }

    /// Every partition of a table (the query engine prunes them itself).
    pub fn all_partitions(&self, scope: &Scope, db: &str, table: &str) -> Result<Vec<Partition>> {
        self.with_table(scope, db, table, |t| Ok(t.partitions.values().cloned().collect()))
    }

    /// BatchGetPartition: the partitions that exist (missing ones are left out, as on AWS).
    pub fn batch_get_partition(
        &self,
        scope: &Scope,
        db: &str,
        table: &str,
        wanted: &[Vec<String>],
    ) -> Result<Vec<Partition>> {
        self.with_table(scope, db, table, |t| {
            Ok(wanted.iter().filter_map(|v| t.partitions.get(v).cloned()).collect())
        })
    }

    /// DeletePartition.
    pub async fn delete_partition(&self, scope: &Scope, db: &str, table: &str, values: Vec<String>) -> Result<()> {
        let errors = self.batch_delete_partition(scope, db, table, vec![values]).await?;
        match errors.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// BatchDeletePartition: deletes what exists; the others come back with their error.
    pub async fn batch_delete_partition(
        &self,
        scope: &Scope,
        db: &str,
        table: &str,
        list: Vec<Vec<String>>,
    ) -> Result<Vec<(Vec<String>, Error)>> {
        let (db, table) = (db.to_lowercase(), table.to_lowercase());
        let _w = self.writer.lock().await;
        let mut errors = Vec::new();
        let mut gone: Vec<Vec<String>> = Vec::new();
        self.with_table(scope, &db, &table, |t| {
            for values in list {
                if t.partitions.contains_key(&values) && !gone.contains(&values) {
                    gone.push(values);
                } else {
                    errors.push((values, Error::EntityNotFound("Partition not found.".into())));
                }
            }
            Ok(())
        })?;
        let ops = gone
            .iter()
            .map(|v| del(T_PARTITIONS, partition_key(scope, &db, &table, v)))
            .collect();
        self.commit(ops).await?;
        if let Some(t) = self
            .write_state()
            .catalogs
            .get_mut(scope)
            .and_then(|c| c.get_mut(&db))
            .and_then(|d| d.tables.get_mut(&table))
        {
            for v in &gone {
                t.partitions.remove(v);
            }
        }
        Ok(errors)
    }

    /// Empties the catalog (every account and region).
    pub async fn reset(&self) -> Result<()> {
        let _w = self.writer.lock().await;
        for table in ALL_TABLES {
            let keys: Vec<String> = self.meta.scan_prefix(table, "")?.into_iter().map(|(k, _)| k).collect();
            for chunk in keys.chunks(10_000) {
                self.commit(chunk.iter().map(|k| del(table, k.clone())).collect())
                    .await?;
            }
        }
        self.write_state().catalogs.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kd_storage::ManualClock;

    fn scope() -> Scope {
        Scope {
            account: "000000000000".into(),
            region: "us-east-1".into(),
        }
    }

    fn col(name: &str, t: &str) -> Column {
        Column {
            name: name.into(),
            r#type: Some(t.into()),
            ..Column::default()
        }
    }

    fn table(name: &str) -> TableInput {
        TableInput {
            name: name.into(),
            storage_descriptor: Some(StorageDescriptor {
                columns: Some(vec![col("id", "bigint")]),
                location: Some("s3://b/t/".into()),
                ..StorageDescriptor::default()
            }),
            partition_keys: Some(vec![col("year", "int"), col("dt", "string")]),
            ..TableInput::default()
        }
    }

    fn part(y: &str, dt: &str) -> PartitionInput {
        PartitionInput {
            values: vec![y.into(), dt.into()],
            ..PartitionInput::default()
        }
    }

    #[tokio::test]
    async fn lifecycle_survives_reopen() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Internal(e.to_string()))?;
        let path = dir.path().join("m.redb");
        let s = scope();
        {
            let meta = Arc::new(MetaStore::open(&path)?);
            let c = Catalog::open(meta, Arc::new(ManualClock::new(1_000)))?;
            c.create_database(
                &s,
                DatabaseInput {
                    name: "Sales".into(),
                    ..DatabaseInput::default()
                },
            )
            .await?;
            assert!(matches!(
                c.create_database(
                    &s,
                    DatabaseInput {
                        name: "sales".into(),
                        ..DatabaseInput::default()
                    }
                )
                .await,
                Err(Error::AlreadyExists(_))
            ));
            c.create_table(&s, "sales", table("Orders")).await?;
            c.create_table(&s, "sales", table("other")).await?;
            assert!(matches!(
                c.create_table(&s, "nope", table("x")).await,
                Err(Error::EntityNotFound(m)) if m == "Database nope not found."
            ));
            let errs = c
                .batch_create_partition(
                    &s,
                    "sales",
                    "orders",
                    vec![
                        part("2024", "a"),
                        part("2025", "b"),
                        part("2024", "a"),
                        PartitionInput::default(),
                    ],
                )
                .await?;
            assert_eq!(errs.len(), 2);
            let mut t = table("orders");
            t.description = Some("v1".into());
            c.update_table(&s, "sales", t, false, Some("0")).await?;
            assert!(matches!(
                c.update_table(&s, "sales", table("orders"), false, Some("0")).await,
                Err(Error::ConcurrentModification(_))
            ));
            let got = c.get_partitions(&s, "sales", "orders", Some("year > 2024"), None, None)?;
            assert_eq!(got.items.len(), 1);
            assert_eq!(got.items[0].input.values, vec!["2025", "b"]);
            c.delete_table(&s, "sales", "other").await?;
        }
        let meta = Arc::new(MetaStore::open(&path)?);
        let c = Catalog::open(meta, Arc::new(ManualClock::new(2_000)))?;
        let t = c.get_table(&s, "SALES", "ORDERS")?;
        assert_eq!(t.version_id, "1");
        assert_eq!(t.input.description.as_deref(), Some("v1"));
        let versions = c.get_table_versions(&s, "sales", "orders", None, None)?;
        assert_eq!(
            versions.items.iter().map(|v| v.version_id.as_str()).collect::<Vec<_>>(),
            vec!["1", "0"]
        );
        assert_eq!(c.all_partitions(&s, "sales", "orders")?.len(), 2);
        assert!(matches!(
            c.get_table(&s, "sales", "other"),
            Err(Error::EntityNotFound(_))
        ));
        assert!(matches!(
            c.get_partition(&s, "sales", "orders", &["1".into(), "x".into()]),
            Err(Error::EntityNotFound(_))
        ));
        let errs = c
            .batch_delete_partition(
                &s,
                "sales",
                "orders",
                vec![vec!["2024".into(), "a".into()], vec!["9".into(), "z".into()]],
            )
            .await?;
        assert_eq!(errs.len(), 1);
        c.delete_database(&s, "sales").await?;
        assert!(c.get_databases(&s, None, None)?.items.is_empty());
        // Another region is another catalog.
        let other = Scope {
            region: "eu-west-1".into(),
            ..s.clone()
        };
        assert!(c.get_database(&other, "sales").is_err());
        Ok(())
    }

    #[tokio::test]
    async fn paging_and_table_expressions() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Internal(e.to_string()))?;
        let meta = Arc::new(MetaStore::open(&dir.path().join("m.redb"))?);
        let c = Catalog::open(meta, Arc::new(ManualClock::new(0)))?;
        let s = scope();
        c.create_database(
            &s,
            DatabaseInput {
                name: "d".into(),
                ..DatabaseInput::default()
            },
        )
        .await?;
        for i in 0..5 {
            c.create_table(&s, "d", table(&format!("t{i}"))).await?;
        }
        c.create_table(&s, "d", table("events")).await?;
        let p1 = c.get_tables(&s, "d", None, None, Some(4))?;
        assert_eq!(p1.items.len(), 4);
        let p2 = c.get_tables(&s, "d", None, p1.next_token.as_deref(), Some(4))?;
        assert_eq!(p2.items.len(), 2);
        assert!(p2.next_token.is_none());
        assert_eq!(c.get_tables(&s, "d", Some("t*"), None, None)?.items.len(), 5);
        assert_eq!(c.get_tables(&s, "d", Some("^ev.*"), None, None)?.items.len(), 1);
        assert_eq!(c.get_tables(&s, "d", Some("t1|events"), None, None)?.items.len(), 2);
        assert!(matches!(
            c.get_tables(&s, "d", Some("("), None, None),
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            c.get_tables(&s, "d", None, Some("!!"), None),
            Err(Error::InvalidInput(_))
        ));
        let inputs = (0..30).map(|i| part(&i.to_string(), "x")).collect();
        assert!(c.batch_create_partition(&s, "d", "t0", inputs).await?.is_empty());
        let mut token = None;
        let mut n = 0;
        loop {
            let p = c.get_partitions(&s, "d", "t0", Some("year >= 10"), token.as_deref(), Some(7))?;
            n += p.items.len();
            token = p.next_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(n, 20);
        c.reset().await?;
        assert!(c.get_database(&s, "d").is_err());
        Ok(())
    }

    #[test]
    fn partition_tokens_round_trip_and_reject_bad_input() -> Result<()> {
        let values = vec!["us-east".to_string(), "a/b%\"\u{e9}".to_string()];
        let t = encode_values_token(&values);
        assert_eq!(decode_values_token(Some(&t), 2)?, Some(values));
        assert_eq!(decode_values_token(None, 2)?, None);
        assert_eq!(decode_values_token(Some(""), 2)?, None);
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let bad = [
            "%%%".to_string(),
            // Another arity, not an array of strings, not JSON, not UTF-8.
            b64(r#"["us"]"#),
            b64(r#"["us", 1]"#),
            b64(r#"{"a": "b"}"#),
            b64("us/1"),
            base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe]),
            // Over the size limit, even though well formed.
            b64(&format!(r#"["{}", "1"]"#, "x".repeat(MAX_TOKEN_LEN))),
        ];
        for t in bad {
            match decode_values_token(Some(&t), 2) {
                Err(Error::InvalidInput(m)) => assert_eq!(m, "Invalid NextToken"),
                other => panic!("token {t:.40}: expected InvalidInput, got {other:?}"),
            }
        }
        Ok(())
    }

    #[tokio::test]
    async fn partition_paging_follows_value_list_order() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Internal(e.to_string()))?;
        let meta = Arc::new(MetaStore::open(&dir.path().join("m.redb"))?);
        let c = Catalog::open(meta, Arc::new(ManualClock::new(0)))?;
        let s = scope();
        c.create_database(
            &s,
            DatabaseInput {
                name: "d".into(),
                ..DatabaseInput::default()
            },
        )
        .await?;
        c.create_table(&s, "d", table("t")).await?;
        // Joined by `/`, `us-east/1`, `us.west/1` and `us 1/1` sort before `us/1`; as value
        // lists they sort after `[us, 1]` and `[us, 2]`.
        let inputs = ["us", "us-east", "us.west", "us 1", "us/x", "u"]
            .iter()
            .flat_map(|r| [part(r, "1"), part(r, "2")])
            .collect();
        assert!(c.batch_create_partition(&s, "d", "t", inputs).await?.is_empty());
        let all = c.get_partitions(&s, "d", "t", None, None, None)?.items;
        assert_eq!(all.len(), 12);
        for max in 1..=5 {
            let mut token: Option<String> = None;
            let mut seen = Vec::new();
            loop {
                let p = c.get_partitions(&s, "d", "t", None, token.as_deref(), Some(max))?;
                seen.extend(p.items);
                token = p.next_token;
                if token.is_none() {
                    break;
                }
            }
            assert_eq!(seen, all, "pages of {max}");
        }
        Ok(())
    }
}
