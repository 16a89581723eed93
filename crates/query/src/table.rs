//! Glue tables as DataFusion [`TableProvider`]s: the schema from the Glue columns (then the
//! partition keys, then `"$path"` when the query names it), partitions from Glue or from
//! partition projection, pruning by the query's filters on partition columns **before any
//! object is listed or read**, one listing per selected partition (or one listing of the
//! table prefix when many are selected), and a scan by DataFusion's Parquet reader or by the
//! text SerDes ([`crate::serde`]).
//!
//! Partition projection (`projection.enabled = true`): per column `projection.<col>.type` =
//! `enum` (`.values`), `integer` (`.range`, `.interval`, `.digits`), `date` (`.range` with
//! dates in `.format` or `NOW[±N UNIT]`, `.format` a Java DateTimeFormatter pattern,
//! `.interval`, `.interval.unit`), `injected` (the WHERE clause must give the value with `=`
//! or `IN`); locations from `storage.location.template` (`${col}` placeholders) or
//! `<location>/<col>=<value>/`. Candidate values of each column are first filtered by the
//! filters on that column alone, then combined, then filtered by the others; at most
//! [`MAX_PROJECTED`] combinations.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Utc};
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::config::TableParquetOptions;
use datafusion::common::stats::Precision;
use datafusion::common::{DFSchema, DataFusionError, Result, ScalarValue, Statistics};
use datafusion::datasource::TableProvider;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, FileSource, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;
use futures_util::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;

use crate::counting::CountingStore;
use crate::parquet_meta::CountedReaderFactory;
pub use crate::parquet_meta::ParquetMetaCaches;
use crate::ports::{Access, Catalogs, ObjectsPort, PartitionDef, Scope, TableDef, split_s3};
use crate::serde::{SerdeSource, TextFormat, TextSpec};
use crate::types::parse_hive_type;

/// Most partition combinations a projection may produce for one query.
pub const MAX_PROJECTED: usize = 1_000_000;
/// Above this many selected partitions, the table prefix is listed once instead.
const LIST_EACH_MAX: usize = 32;
/// The pseudo-column with each row's object.
pub const PATH_COLUMN: &str = "$path";

/// What one query's tables share.
#[derive(Debug, Clone)]
pub struct QueryEnv {
    /// Account and region.
    pub scope: Scope,
    /// The caller.
    pub access: Arc<dyn Access>,
    /// The catalog.
    pub catalog: Catalogs,
    /// Object stores.
    pub objects: Arc<dyn ObjectsPort>,
    /// Whether the query names `"$path"`.
    pub with_path: bool,
    /// Bytes read so far.
    pub scanned: Arc<AtomicU64>,
    /// Parallel file groups.
    pub target_partitions: usize,
    /// Parquet footers of earlier queries.
    pub parquet_meta: ParquetMetaCaches,
}

impl QueryEnv {
    /// The counted store of `bucket`.
    pub fn store(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>> {
        let inner = self
            .objects
            .store(bucket)
            .map_err(|e| DataFusionError::Execution(format!("HIVE_CANNOT_OPEN_SPLIT: {e}")))?;
        Ok(Arc::new(CountingStore::new(inner, self.scanned.clone())))
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Parquet,
    Text(TextSpec),
}

/// A Glue table.
#[derive(Debug)]
pub struct GlueTable {
    def: TableDef,
    env: QueryEnv,
    schema: SchemaRef,
    file_schema: SchemaRef,
    partition_fields: Vec<FieldRef>,
    kind: Kind,
}

fn user_err(msg: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(msg.into())
}

fn lower_map(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect()
}

fn unescape_delim(s: &str) -> Vec<u8> {
    match s {
        "\\t" => b"\t".to_vec(),
        "\\001" | "\\u0001" => vec![1],
        s if s.len() > 1 && s.starts_with('\\') && s[1..].chars().all(|c| c.is_ascii_digit()) => {
            vec![s[1..].parse::<u8>().unwrap_or(1)]
        }
        s => s.as_bytes().to_vec(),
    }
}

impl GlueTable {
    /// Builds the provider of `def`.
    pub fn try_new(def: TableDef, env: QueryEnv) -> Result<GlueTable> {
        if def.table_type.as_deref() == Some("VIRTUAL_VIEW") {
            return Err(DataFusionError::NotImplemented(
                "NOT_SUPPORTED: views are not supported by kinesis-data".into(),
            ));
        }
        let kind = Self::kind(&def)?;
        let mut fields = Vec::new();
        for c in &def.columns {
            let mut t = parse_hive_type(&c.type_name)
                .map_err(|e| user_err(format!("HIVE_INVALID_METADATA: column {}: {e}", c.name)))?;
            // `string` columns as Utf8View: the Parquet reader's own type (no copy of every
            // string into a Utf8 array); short strings are inline, so comparisons, hashing
            // (GROUP BY, JOIN keys) and filters on them are cheaper, and a join's output
            // takes views instead of copying each string (a dimension table's names).
            if t == DataType::Utf8 {
                t = DataType::Utf8View;
            }
            fields.push(Field::new(c.name.to_ascii_lowercase(), t, true));
        }
        let file_schema = Arc::new(Schema::new(fields.clone()));
        let mut partition_fields: Vec<FieldRef> = Vec::new();
        for c in &def.partition_keys {
            let t = parse_hive_type(&c.type_name)
                .map_err(|e| user_err(format!("HIVE_INVALID_METADATA: partition key {}: {e}", c.name)))?;
            partition_fields.push(Arc::new(Field::new(c.name.to_ascii_lowercase(), t, false)));
        }
        if env.with_path {
            partition_fields.push(Arc::new(Field::new(PATH_COLUMN, DataType::Utf8, false)));
        }
        let mut all: Vec<FieldRef> = fields.into_iter().map(Arc::new).collect();
        all.extend(partition_fields.iter().cloned());
        let schema = Arc::new(Schema::new(all));
        Ok(GlueTable {
            def,
            env,
            schema,
            file_schema,
            partition_fields,
            kind,
        })
    }

    fn kind(def: &TableDef) -> Result<Kind> {
        let serde = def.serde.clone().unwrap_or_default().to_ascii_lowercase();
        let input = def.input_format.clone().unwrap_or_default().to_ascii_lowercase();
        let params = lower_map(&def.serde_parameters);
        let skip_header = def
            .parameters
            .get("skip.header.line.count")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if serde.contains("parquet") || input.contains("parquet") {
            return Ok(Kind::Parquet);
        }
        if serde.contains("orc") || input.contains("orc") {
            return Err(DataFusionError::NotImplemented(
                "NOT_SUPPORTED: ORC tables are not supported by kinesis-data".into(),
            ));
        }
        let format = if serde.contains("json") || def.parameters.get("classification").is_some_and(|c| c == "json") {
            let mapping = params
                .iter()
                .filter_map(|(k, v)| k.strip_prefix("mapping.").map(|c| (c.to_string(), v.clone())))
                .collect();
            TextFormat::Json {
                case_insensitive: params
                    .get("case.insensitive")
                    .is_none_or(|v| !v.eq_ignore_ascii_case("false")),
                ignore_malformed: params
                    .get("ignore.malformed.json")
                    .is_some_and(|v| v.eq_ignore_ascii_case("true")),
                mapping,
            }
        } else if serde.contains("opencsv") {
            let ch = |k: &str, d: u8| {
                def.serde_parameters
                    .get(k)
                    .and_then(|v| v.as_bytes().first().copied())
                    .unwrap_or(d)
            };
            TextFormat::Csv {
                sep: ch("separatorChar", b','),
                quote: ch("quoteChar", b'"'),
                escape: ch("escapeChar", b'\\'),
            }
        } else {
            let delim = params
                .get("field.delim")
                .or_else(|| params.get("serialization.format"))
                .map(|s| unescape_delim(s))
                .unwrap_or_else(|| vec![1]);
            TextFormat::Delimited {
                delim,
                null: params
                    .get("serialization.null.format")
                    .map(|s| s.as_bytes().to_vec())
                    .unwrap_or_else(|| b"\\N".to_vec()),
            }
        };
        Ok(Kind::Text(TextSpec { format, skip_header }))
    }

    fn key_types(&self) -> Vec<DataType> {
        self.partition_fields
            .iter()
            .take(self.def.partition_keys.len())
            .map(|f| f.data_type().clone())
            .collect()
    }

    /// The partitions the filters may select (values and location).
    fn candidate_partitions(&self, state: &dyn Session, filters: &[Expr]) -> Result<Vec<PartitionDef>> {
        let keys: Vec<String> = self
            .def
            .partition_keys
            .iter()
            .map(|k| k.name.to_ascii_lowercase())
            .collect();
        let location = self.def.location.clone().unwrap_or_default();
        if keys.is_empty() {
            return Ok(vec![PartitionDef {
                values: vec![],
                location: Some(location),
            }]);
        }
        let projected = self
            .def
            .parameters
            .get("projection.enabled")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let parts = if projected {
            self.projected_partitions(state, filters, &keys, &location)?
        } else {
            self.env
                .catalog
                .partitions(
                    &self.env.scope,
                    self.env.access.as_ref(),
                    &self.def.database,
                    &self.def.name,
                )
                .map_err(|e| user_err(format!("HIVE_METASTORE_ERROR: {e}")))?
        };
        self.prune(state, filters, &keys, parts)
    }

    /// Keeps the partitions that satisfy every filter on partition columns only.
    fn prune(
        &self,
        state: &dyn Session,
        filters: &[Expr],
        keys: &[String],
        parts: Vec<PartitionDef>,
    ) -> Result<Vec<PartitionDef>> {
        let types = self.key_types();
        let mask = eval_partition_filters(
            state,
            filters,
            keys,
            &types,
            &parts.iter().map(|p| p.values.clone()).collect::<Vec<_>>(),
        )?;
        Ok(parts
            .into_iter()
            .zip(mask)
            .filter(|(_, keep)| *keep)
            .map(|(p, _)| p)
            .collect())
    }

    fn projected_partitions(
        &self,
        state: &dyn Session,
        filters: &[Expr],
        keys: &[String],
        location: &str,
    ) -> Result<Vec<PartitionDef>> {
        let params = &self.def.parameters;
        let types = self.key_types();
        let mut per_key: Vec<Vec<String>> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let p = |s: &str| {
                params
                    .get(&format!("projection.{key}.{s}"))
                    .map(|v| v.trim().to_string())
            };
            let kind = p("type").unwrap_or_default().to_ascii_lowercase();
            let values = match kind.as_str() {
                "enum" => p("values")
                    .unwrap_or_default()
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect(),
                "integer" => integer_values(&p("range").unwrap_or_default(), p("interval"), p("digits"))?,
                "date" => date_values(
                    &p("range").unwrap_or_default(),
                    &p("format").unwrap_or_else(|| "yyyy-MM-dd".into()),
                    p("interval"),
                    p("interval.unit"),
                )?,
                "injected" => injected_values(filters, key).ok_or_else(|| {
                    user_err(format!(
                        "CONSTRAINT_VIOLATION: For the injected projected partition column {key}, the WHERE clause must contain only static equality conditions, and at least one such condition must be present."
                    ))
                })?,
                other => {
                    return Err(user_err(format!(
                        "HIVE_METASTORE_ERROR: Table {}.{}: projection.{key}.type is '{other}', expected enum, integer, date or injected",
                        self.def.database, self.def.name
                    )));
                }
            };
            // Filters on this column alone.
            let single: Vec<Vec<String>> = values.iter().map(|v| vec![v.clone()]).collect();
            let mask = eval_partition_filters(state, filters, &keys[i..=i], &types[i..=i], &single)?;
            per_key.push(
                values
                    .into_iter()
                    .zip(mask)
                    .filter(|(_, k)| *k)
                    .map(|(v, _)| v)
                    .collect(),
            );
        }
        let total = per_key.iter().map(Vec::len).try_fold(1usize, |a, n| a.checked_mul(n));
        if total.is_none_or(|t| t > MAX_PROJECTED) {
            return Err(user_err(format!(
                "HIVE_EXCEEDED_PARTITION_LIMIT: the partition projection of {}.{} selects more than {MAX_PROJECTED} partitions; add filters on the partition columns",
                self.def.database, self.def.name
            )));
        }
        let template = params.get("storage.location.template").cloned();
        let mut out = Vec::new();
        let mut combo = vec![0usize; keys.len()];
        if per_key.iter().any(Vec::is_empty) {
            return Ok(out);
        }
        loop {
            let values: Vec<String> = combo.iter().enumerate().map(|(k, i)| per_key[k][*i].clone()).collect();
            let loc = match &template {
                Some(t) => {
                    let mut l = t.clone();
                    for (k, v) in keys.iter().zip(&values) {
                        l = l.replace(&format!("${{{k}}}"), v);
                    }
                    l
                }
                None => {
                    let mut l = location.trim_end_matches('/').to_string();
                    for (k, v) in keys.iter().zip(&values) {
                        l.push_str(&format!("/{k}={v}"));
                    }
                    l.push('/');
                    l
                }
            };
            out.push(PartitionDef {
                values,
                location: Some(loc),
            });
            let mut k = keys.len();
            loop {
                if k == 0 {
                    return Ok(out);
                }
                k -= 1;
                combo[k] += 1;
                if combo[k] < per_key[k].len() {
                    break;
                }
                combo[k] = 0;
            }
        }
    }

    /// Lists the objects of the selected partitions: (bucket, object, partition index).
    async fn list(&self, parts: &[PartitionDef]) -> Result<Vec<(String, object_store::ObjectMeta, usize)>> {
        let mut prefixes: Vec<(String, String, usize)> = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let loc = p
                .location
                .clone()
                .or_else(|| self.def.location.clone())
                .unwrap_or_default();
            let Some((bucket, key)) = split_s3(&loc) else {
                return Err(user_err(format!(
                    "HIVE_METASTORE_ERROR: Table {}.{} has no valid S3 location ('{loc}')",
                    self.def.database, self.def.name
                )));
            };
            let key = if key.is_empty() || key.ends_with('/') {
                key
            } else {
                format!("{key}/")
            };
            prefixes.push((bucket, key, i));
        }
        let mut out = Vec::new();
        let mut by_bucket: BTreeMap<String, Vec<(String, usize)>> = BTreeMap::new();
        for (b, k, i) in prefixes {
            by_bucket.entry(b).or_default().push((k, i));
        }
        for (bucket, mut list) in by_bucket {
            let bucket_arn = format!("arn:aws:s3:::{bucket}");
            self.env
                .access
                .authorize("s3:ListBucket", &bucket_arn)
                .map_err(|m| DataFusionError::Execution(format!("PERMISSION_DENIED: {m}")))?;
            let store = self.env.store(&bucket)?;
            list.sort();
            let mut found = Vec::new();
            if list.len() <= LIST_EACH_MAX {
                for (prefix, i) in &list {
                    let path = Path::from(prefix.as_str());
                    let mut s = store.list(if prefix.is_empty() { None } else { Some(&path) });
                    while let Some(m) = s.try_next().await? {
                        if m.location.as_ref().starts_with(prefix.as_str()) {
                            found.push((m, *i));
                        }
                    }
                }
            } else {
                let common = common_prefix(list.iter().map(|(p, _)| p.as_str()));
                let common = &common[..common.rfind('/').map_or(0, |i| i + 1)];
                let map: BTreeMap<&str, usize> = list.iter().map(|(p, i)| (p.as_str(), *i)).collect();
                let path = Path::from(common);
                let mut s = store.list(if common.is_empty() { None } else { Some(&path) });
                while let Some(m) = s.try_next().await? {
                    let key = m.location.as_ref();
                    if let Some((p, i)) = map.range(..=key).next_back()
                        && key.starts_with(p)
                    {
                        let i = *i;
                        found.push((m, i));
                    }
                }
            }
            for (m, i) in found {
                let key = m.location.as_ref();
                let base = key.rsplit('/').next().unwrap_or_default();
                if base.starts_with('_') || base.starts_with('.') || key.ends_with("$folder$") {
                    continue;
                }
                if self.env.access.enforced() {
                    self.env
                        .access
                        .authorize("s3:GetObject", &format!("arn:aws:s3:::{bucket}/{key}"))
                        .map_err(|m| DataFusionError::Execution(format!("PERMISSION_DENIED: {m}")))?;
                }
                out.push((bucket.clone(), m, i));
            }
        }
        Ok(out)
    }
}

fn common_prefix<'a>(mut it: impl Iterator<Item = &'a str>) -> String {
    let Some(first) = it.next() else {
        return String::new();
    };
    let mut p = first.to_string();
    for s in it {
        let n = p.bytes().zip(s.bytes()).take_while(|(a, b)| a == b).count();
        p.truncate(n);
    }
    while !p.is_char_boundary(p.len()) {
        p.pop();
    }
    p
}

/// Evaluates the filters that reference only `keys` over the candidate values; true = keep.
fn eval_partition_filters(
    state: &dyn Session,
    filters: &[Expr],
    keys: &[String],
    types: &[DataType],
    values: &[Vec<String>],
) -> Result<Vec<bool>> {
    let mut keep = vec![true; values.len()];
    let applicable: Vec<Expr> = filters
        .iter()
        .filter(|f| {
            let refs = f.column_refs();
            !refs.is_empty() && refs.iter().all(|c| keys.iter().any(|k| k == c.name()))
        })
        .cloned()
        .collect();
    let Some(expr) = conjunction(applicable) else {
        return Ok(keep);
    };
    if values.is_empty() {
        return Ok(keep);
    }
    let fields: Vec<Field> = keys
        .iter()
        .zip(types)
        .map(|(k, t)| Field::new(k, t.clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (i, t) in types.iter().enumerate() {
        let s: ArrayRef = Arc::new(StringArray::from(
            values.iter().map(|v| v.get(i).cloned()).collect::<Vec<_>>(),
        ));
        cols.push(if t == &DataType::Utf8 { s } else { cast(&s, t)? });
    }
    let batch = RecordBatch::try_new(schema.clone(), cols)?;
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let physical = state.create_physical_expr(expr, &df_schema)?;
    let result = physical.evaluate(&batch)?.into_array(batch.num_rows())?;
    let Some(b) = result.as_any().downcast_ref::<BooleanArray>() else {
        return Ok(keep);
    };
    for (i, k) in keep.iter_mut().enumerate() {
        *k = b.is_valid(i) && b.value(i);
    }
    Ok(keep)
}

/// `col = 'v'` or `col IN ('a', 'b')` values of an injected column; also ORs of these
/// (DataFusion rewrites a short IN list to `col = 'a' OR col = 'b'`), nested to any depth.
/// Each value appears once, in the order written.
fn injected_values(filters: &[Expr], key: &str) -> Option<Vec<String>> {
    fn lit(e: &Expr) -> Option<String> {
        match e {
            Expr::Literal(v, _) if !v.is_null() => Some(match v {
                ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
                    s.clone()
                }
                other => other.to_string(),
            }),
            Expr::Cast(c) => lit(&c.expr),
            Expr::TryCast(c) => lit(&c.expr),
            _ => None,
        }
    }
    fn is_key(e: &Expr, key: &str) -> bool {
        match e {
            Expr::Column(c) => c.name == key,
            Expr::Cast(c) => is_key(&c.expr, key),
            Expr::TryCast(c) => is_key(&c.expr, key),
            _ => false,
        }
    }
    /// The values `e` restricts the key to, if it is made only of equalities on the key.
    fn values(e: &Expr, key: &str) -> Option<Vec<String>> {
        match e {
            Expr::BinaryExpr(b) if b.op == Operator::Eq => {
                if is_key(&b.left, key)
                    && let Some(v) = lit(&b.right)
                {
                    return Some(vec![v]);
                }
                if is_key(&b.right, key)
                    && let Some(v) = lit(&b.left)
                {
                    return Some(vec![v]);
                }
                None
            }
            // Every branch of an OR must pin the key, or some rows escape the list.
            Expr::BinaryExpr(b) if b.op == Operator::Or => {
                let mut vals = values(&b.left, key)?;
                vals.extend(values(&b.right, key)?);
                Some(vals)
            }
            // Either side of an AND narrows the key (the filters prune the rest).
            Expr::BinaryExpr(b) if b.op == Operator::And => values(&b.left, key).or_else(|| values(&b.right, key)),
            Expr::InList(l) if !l.negated && is_key(&l.expr, key) => l.list.iter().map(lit).collect(),
            _ => None,
        }
    }
    let mut vals = filters.iter().find_map(|f| values(f, key))?;
    let mut seen = std::collections::HashSet::new();
    vals.retain(|v| seen.insert(v.clone()));
    Some(vals)
}

fn integer_values(range: &str, interval: Option<String>, digits: Option<String>) -> Result<Vec<String>> {
    let (a, b) = range.split_once(',').ok_or_else(|| {
        user_err(format!(
            "HIVE_METASTORE_ERROR: invalid integer projection range '{range}'"
        ))
    })?;
    let parse = |s: &str| {
        s.trim().parse::<i64>().map_err(|_| {
            user_err(format!(
                "HIVE_METASTORE_ERROR: invalid integer projection range '{range}'"
            ))
        })
    };
    let (a, b) = (parse(a)?, parse(b)?);
    let step = interval.and_then(|s| s.parse::<i64>().ok()).unwrap_or(1).max(1);
    let width = digits.and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
    if (b - a) / step > MAX_PROJECTED as i64 {
        return Err(user_err(
            "HIVE_EXCEEDED_PARTITION_LIMIT: integer projection range too large",
        ));
    }
    let mut out = Vec::new();
    let mut v = a;
    while v <= b {
        out.push(format!("{v:0width$}"));
        v += step;
    }
    Ok(out)
}

/// Java DateTimeFormatter pattern → chrono format.
pub fn java_to_chrono(p: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                out.push(chars[i]);
                i += 1;
            }
            i += 1;
            continue;
        }
        let mut n = 1;
        while i + n < chars.len() && chars[i + n] == c {
            n += 1;
        }
        let f = match (c, n) {
            ('y' | 'u', 2) => "%y",
            ('y' | 'u', _) => "%Y",
            ('M', 1 | 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', _) => "%d",
            ('H', _) => "%H",
            ('h', _) => "%I",
            ('m', _) => "%M",
            ('s', _) => "%S",
            ('S', _) => "%3f",
            ('a', _) => "%p",
            ('D', _) => "%j",
            ('%', _) => "%%",
            _ => {
                for _ in 0..n {
                    out.push(c);
                }
                i += n;
                continue;
            }
        };
        out.push_str(f);
        i += n;
    }
    out
}

fn parse_date_bound(s: &str, fmt: &str, now: NaiveDateTime) -> Result<NaiveDateTime> {
    let t = s.trim();
    let upper = t.to_ascii_uppercase();
    if let Some(rest) = upper.strip_prefix("NOW") {
        let rest = rest.trim();
        if rest.is_empty() {
            return Ok(now);
        }
        let (sign, num) = match rest.chars().next() {
            Some('-') => (-1i64, &rest[1..]),
            Some('+') => (1, &rest[1..]),
            _ => {
                return Err(user_err(format!(
                    "HIVE_METASTORE_ERROR: invalid date projection bound '{s}'"
                )));
            }
        };
        let digits: String = num.chars().take_while(char::is_ascii_digit).collect();
        let n: i64 = digits.parse().unwrap_or(0) * sign;
        let unit = num[digits.len()..].trim();
        return Ok(add_unit(now, n, unit).unwrap_or(now));
    }
    if let Ok(d) = NaiveDateTime::parse_from_str(t, fmt) {
        return Ok(d);
    }
    // Formats without minutes or seconds (yyyy/MM/dd/HH): complete them.
    for (suffix, f2) in [(":00", ":%M"), (":00:00", ":%M:%S")] {
        if let Ok(d) = NaiveDateTime::parse_from_str(&format!("{t}{suffix}"), &format!("{fmt}{f2}")) {
            return Ok(d);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, fmt) {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default());
    }
    // Formats without a day (yyyy/MM, yyyy): complete with the first day.
    for (suffix, f2) in [("-01", "-%d"), ("-01-01", "-%m-%d")] {
        if let Ok(d) = NaiveDate::parse_from_str(&format!("{t}{suffix}"), &format!("{fmt}{f2}")) {
            return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default());
        }
    }
    Err(user_err(format!(
        "HIVE_METASTORE_ERROR: date projection bound '{s}' does not match its format"
    )))
}

fn add_unit(t: NaiveDateTime, n: i64, unit: &str) -> Option<NaiveDateTime> {
    let u = unit.to_ascii_uppercase();
    let u = u.trim_end_matches('S');
    Some(match u {
        "YEAR" => t.with_year(t.year() + n as i32)?,
        "MONTH" => {
            let m = t.year() as i64 * 12 + t.month0() as i64 + n;
            t.with_day(1)?
                .with_year((m.div_euclid(12)) as i32)?
                .with_month0(m.rem_euclid(12) as u32)?
        }
        "WEEK" => t + Duration::weeks(n),
        "DAY" => t + Duration::days(n),
        "HOUR" => t + Duration::hours(n),
        "MINUTE" => t + Duration::minutes(n),
        "SECOND" => t + Duration::seconds(n),
        "MILLISECOND" => t + Duration::milliseconds(n),
        _ => return None,
    })
}

fn date_values(range: &str, format: &str, interval: Option<String>, unit: Option<String>) -> Result<Vec<String>> {
    let fmt = java_to_chrono(format);
    let (a, b) = range
        .split_once(',')
        .ok_or_else(|| user_err(format!("HIVE_METASTORE_ERROR: invalid date projection range '{range}'")))?;
    let now = Utc::now().naive_utc();
    let (start, end) = (parse_date_bound(a, &fmt, now)?, parse_date_bound(b, &fmt, now)?);
    let step = interval.and_then(|s| s.parse::<i64>().ok()).unwrap_or(1).max(1);
    let unit = unit.unwrap_or_else(|| {
        if fmt.contains("%S") {
            "SECONDS"
        } else if fmt.contains("%M") {
            "MINUTES"
        } else if fmt.contains("%H") || fmt.contains("%I") {
            "HOURS"
        } else if fmt.contains("%d") || fmt.contains("%j") {
            "DAYS"
        } else if fmt.contains("%m") || fmt.contains("%b") {
            "MONTHS"
        } else {
            "YEARS"
        }
        .to_string()
    });
    let mut out = Vec::new();
    let mut t = start;
    while t <= end {
        out.push(t.format(&fmt).to_string());
        if out.len() > MAX_PROJECTED {
            return Err(user_err(
                "HIVE_EXCEEDED_PARTITION_LIMIT: date projection range too large",
            ));
        }
        t = add_unit(t, step, &unit)
            .ok_or_else(|| user_err(format!("HIVE_METASTORE_ERROR: invalid interval unit '{unit}'")))?;
    }
    Ok(out)
}

#[async_trait]
impl TableProvider for GlueTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let parts = self.candidate_partitions(state, filters)?;
        let objects = self.list(&parts).await?;
        let types = self.key_types();
        let table_schema = TableSchema::builder(self.file_schema.clone())
            .with_table_partition_cols(self.partition_fields.clone())
            .build();
        let mut by_bucket: BTreeMap<String, Vec<PartitionedFile>> = BTreeMap::new();
        for (bucket, meta, i) in objects {
            let mut values = Vec::new();
            for (v, t) in parts[i].values.iter().zip(&types) {
                let s = ScalarValue::Utf8(Some(v.clone()));
                values.push(s.cast_to(t).unwrap_or(ScalarValue::try_from(t)?));
            }
            if self.env.with_path {
                values.push(ScalarValue::Utf8(Some(format!("s3://{bucket}/{}", meta.location))));
            }
            let mut f = PartitionedFile::from(meta);
            f.partition_values = values;
            by_bucket.entry(bucket).or_default().push(f);
        }
        let n = self.env.target_partitions.max(1);
        let mut plans: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        let data_filters: Vec<Expr> = filters
            .iter()
            .filter(|f| {
                f.column_refs()
                    .iter()
                    .all(|c| self.file_schema.field_with_name(c.name()).is_ok())
            })
            .cloned()
            .collect();
        for (bucket, mut files) in by_bucket {
            files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
            // The objects' stored size as the scan's (inexact) size: lets the optimiser put a
            // small table on the build side of a join and broadcast it (CollectLeft) instead
            // of hashing and repartitioning both sides.
            let bytes: u64 = files.iter().map(|f| f.object_meta.size).sum();
            let statistics = Statistics::new_unknown(&self.schema)
                .with_total_byte_size(Precision::Inexact(usize::try_from(bytes).unwrap_or(usize::MAX)));
            let mut groups: Vec<(u64, Vec<PartitionedFile>)> =
                (0..n.min(files.len()).max(1)).map(|_| (0, Vec::new())).collect();
            for f in files {
                if let Some(g) = groups.iter_mut().min_by_key(|g| g.0) {
                    g.0 += f.object_meta.size;
                    g.1.push(f);
                }
            }
            let source: Arc<dyn FileSource> = match &self.kind {
                Kind::Parquet => {
                    // The session's Parquet options (filter pushdown into the decoder: see
                    // `engine::session`), which a source built by hand does not pick up.
                    let options = TableParquetOptions {
                        global: state.config_options().execution.parquet.clone(),
                        ..TableParquetOptions::default()
                    };
                    let pushdown = options.global.pushdown_filters;
                    // Footers from earlier queries (`parquet_meta`), read through the
                    // counted store of the bucket.
                    let factory = CountedReaderFactory::new(
                        self.env.store(&bucket)?,
                        self.env.parquet_meta.bucket(&bucket),
                        self.env.scanned.clone(),
                    );
                    let mut s = ParquetSource::new(table_schema.clone())
                        .with_table_parquet_options(options)
                        .with_parquet_file_reader_factory(Arc::new(factory));
                    // With pushdown on, DataFusion's physical optimiser pushes the query's
                    // filters into this source itself (for pruning and row filtering); a
                    // predicate given here too would be evaluated twice per row.
                    if !pushdown && let Some(pred) = conjunction(data_filters.clone()) {
                        let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
                        if let Ok(p) = state.create_physical_expr(pred, &df_schema) {
                            s = s.with_predicate(p);
                        }
                    }
                    Arc::new(s)
                }
                Kind::Text(spec) => Arc::new(SerdeSource::new(table_schema.clone(), spec.clone())),
            };
            let url = ObjectStoreUrl::parse(format!("s3://{bucket}"))?;
            let config = FileScanConfigBuilder::new(url, source)
                .with_file_groups(groups.into_iter().map(|g| FileGroup::new(g.1)).collect())
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .with_statistics(statistics)
                .build();
            plans.push(DataSourceExec::from_data_source(config));
        }
        if plans.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(datafusion::physical_plan::empty::EmptyExec::new(projected)));
        }
        if plans.len() == 1 {
            return Ok(plans.remove(0));
        }
        UnionExec::try_new(plans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projections_generate_values() -> Result<()> {
        assert_eq!(integer_values("1,3", None, Some("2".into()))?, vec!["01", "02", "03"]);
        let v = date_values("2024/01/01/22,2024/01/02/01", "yyyy/MM/dd/HH", None, None)?;
        assert_eq!(
            v,
            vec!["2024/01/01/22", "2024/01/01/23", "2024/01/02/00", "2024/01/02/01"]
        );
        let d = date_values("2024-01-30,2024-02-02", "yyyy-MM-dd", None, Some("DAYS".into()))?;
        assert_eq!(d.len(), 4);
        assert_eq!(java_to_chrono("yyyy/MM/dd/HH"), "%Y/%m/%d/%H");
        assert!(date_values("NOW-1DAYS,NOW", "yyyy-MM-dd-HH", None, None)?.len() >= 24);
        Ok(())
    }

    #[test]
    fn injected_values_read_equalities_in_lists_and_ors() {
        use datafusion::prelude::{col, in_list, lit};
        let t = || col("tenant");
        let got = |filters: &[Expr]| injected_values(filters, "tenant");
        let strs = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(got(&[t().eq(lit("acme"))]), strs(&["acme"]));
        assert_eq!(got(&[lit("acme").eq(t())]), strs(&["acme"]));
        assert_eq!(
            got(&[in_list(t(), vec![lit("acme"), lit("globex"), lit("acme")], false)]),
            strs(&["acme", "globex"])
        );
        // The OR form of a short IN list, nested ORs, and an AND beside another column.
        assert_eq!(
            got(&[t().eq(lit("acme")).or(t().eq(lit("globex")))]),
            strs(&["acme", "globex"])
        );
        assert_eq!(
            got(&[t()
                .eq(lit("a"))
                .or(lit("b").eq(t()).or(in_list(t(), vec![lit("c"), lit("a")], false)))]),
            strs(&["a", "b", "c"])
        );
        assert_eq!(
            got(&[col("v").gt(lit(1)), col("v").gt(lit(1)).and(t().eq(lit("x")))]),
            strs(&["x"])
        );
        // Not static equalities on the key: refused.
        assert_eq!(got(&[]), None);
        assert_eq!(got(&[t().eq(lit("a")).or(col("v").eq(lit(1)))]), None);
        assert_eq!(got(&[in_list(t(), vec![lit("a")], true)]), None);
        assert_eq!(got(&[in_list(t(), vec![lit("a"), col("v")], false)]), None);
        assert_eq!(got(&[t().not_eq(lit("a"))]), None);
        assert_eq!(got(&[col("other").eq(lit("a"))]), None);
    }
}
