//! Query executions: submission (idempotent by token), the run task (DDL or DataFusion SQL),
//! the result files, cancellation, paging through results, and the durable documents.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::common::DataFusionError;
use datafusion::datasource::TableProvider;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::parser::ParserError;
use futures_util::StreamExt;
use kd_storage::{Clock, MetaOp, MetaStore};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use url::Url;

use crate::ddl::{self, Ddl};
use crate::error::{Error, Result};
use crate::ports::*;
use crate::results;
use crate::table::{GlueTable, QueryEnv};
use crate::types::athena_type;
use crate::workgroups::{self, BYTES_SCANNED_LIMIT_EXCEEDED, WorkGroup};

pub(crate) const T_EXECUTIONS: &str = "athena_executions";
const FORMAT_VERSION: u32 = 1;
/// The workgroup every account and region has (and the default of StartQueryExecution).
pub const PRIMARY: &str = "primary";
/// The one data catalog.
pub const CATALOG: &str = "AwsDataCatalog";
/// Longest query text.
pub const MAX_QUERY: usize = 262_144;
/// Executions kept (oldest terminal ones are forgotten beyond this).
pub const MAX_EXECUTIONS: usize = 10_000;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Parallel file groups per scan.
    pub target_partitions: usize,
    /// The `primary` workgroup's initial output location, if any (see [`crate::workgroups`]).
    pub primary_output_location: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            target_partitions: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            primary_output_location: None,
        }
    }
}

/// Execution states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Accepted.
    Queued,
    /// Running.
    Running,
    /// Done.
    Succeeded,
    /// Failed.
    Failed,
    /// Stopped.
    Cancelled,
}

impl State {
    /// Athena's name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "QUEUED",
            State::Running => "RUNNING",
            State::Succeeded => "SUCCEEDED",
            State::Failed => "FAILED",
            State::Cancelled => "CANCELLED",
        }
    }

    fn terminal(self) -> bool {
        matches!(self, State::Succeeded | State::Failed | State::Cancelled)
    }
}

/// A result column (Athena's ColumnInfo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnInfo {
    /// Name.
    pub name: String,
    /// Athena type name.
    pub type_name: String,
    /// Precision.
    pub precision: i32,
    /// Scale.
    pub scale: i32,
}

/// One execution (its durable document).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Execution {
    /// Format version.
    pub version: u32,
    /// UUID.
    pub id: String,
    /// Account.
    pub account: String,
    /// Region.
    pub region: String,
    /// The query text as submitted.
    pub query: String,
    /// `DDL`, `DML` or `UTILITY`.
    pub statement_type: String,
    /// Workgroup.
    pub workgroup: String,
    /// QueryExecutionContext.Database.
    pub database: Option<String>,
    /// QueryExecutionContext.Catalog.
    pub catalog: Option<String>,
    /// The output location as given (a folder).
    pub output_location: String,
    /// The result file (`s3://…/<id>.csv` or `.txt`).
    pub result_file: String,
    /// State.
    pub state: State,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// 1 system, 2 user.
    pub error_category: Option<i32>,
    /// Submission (ms).
    pub submitted_ms: i64,
    /// Start of running (ms).
    pub started_ms: Option<i64>,
    /// End (ms).
    pub completed_ms: Option<i64>,
    /// Bytes read.
    pub scanned_bytes: u64,
    /// Result columns.
    pub columns: Vec<ColumnInfo>,
    /// Whether the result file begins with a header row.
    pub has_header: bool,
    /// ClientRequestToken.
    pub token: Option<String>,
    /// ExecutionParameters.
    pub parameters: Vec<String>,
    /// Rows written.
    pub rows: u64,
}

/// StartQueryExecution's input.
#[derive(Debug, Clone, Default)]
pub struct StartRequest {
    /// The SQL.
    pub query: String,
    /// Database.
    pub database: Option<String>,
    /// Catalog.
    pub catalog: Option<String>,
    /// Output folder.
    pub output_location: Option<String>,
    /// Workgroup.
    pub workgroup: Option<String>,
    /// Idempotency token.
    pub token: Option<String>,
    /// Values for `?`.
    pub parameters: Vec<String>,
}

pub(crate) struct Running {
    pub(crate) abort: Option<tokio::task::AbortHandle>,
}

/// The Athena engine. `Send + Sync`; share it as `Arc<Query>`.
pub struct Query {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) meta: Arc<MetaStore>,
    pub(crate) clock: Arc<dyn Clock>,
    catalog: Catalogs,
    objects: Arc<dyn ObjectsPort>,
    pub(crate) config: Config,
    pub(crate) execs: Mutex<HashMap<String, Execution>>,
    pub(crate) running: Mutex<HashMap<String, Running>>,
    /// Workgroups by `<account>/<region>/<name>` (their store key).
    pub(crate) workgroups: Mutex<BTreeMap<String, WorkGroup>>,
    /// Held for writing by every workgroup change, for reading by StartQueryExecution from
    /// its workgroup lookup to the commit of its execution (so a recursive delete never
    /// misses an execution being started in the workgroup).
    pub(crate) wg_lock: tokio::sync::RwLock<()>,
    /// Parquet footers read by earlier queries, per bucket.
    parquet_meta: crate::table::ParquetMetaCaches,
}

impl std::fmt::Debug for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Query")
    }
}

/// Environment variable with DataFusion options for every query, `key=value` pairs separated
/// by `;` (for example `datafusion.optimizer.enable_join_dynamic_filter_pushdown=false`):
/// a tuning knob for benchmarks and unusual data, read once.
pub const DF_OPTIONS_ENV: &str = "KINESIS_DATA_DATAFUSION_OPTIONS";

fn datafusion_overrides() -> &'static [(String, String)] {
    static OVERRIDES: std::sync::LazyLock<Vec<(String, String)>> = std::sync::LazyLock::new(|| {
        std::env::var(DF_OPTIONS_ENV)
            .unwrap_or_default()
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .filter(|(k, _)| !k.is_empty())
            .collect()
    });
    &OVERRIDES
}

/// The lines of an EXPLAIN's (plan_type, plan) rows: each plan type, then its plan indented.
fn explain_lines(batches: &[datafusion::arrow::array::RecordBatch]) -> Vec<String> {
    use datafusion::arrow::array::Array;
    let mut lines = Vec::new();
    for b in batches {
        let text = |i: usize| -> Option<datafusion::arrow::array::ArrayRef> {
            let c = b.columns().get(i)?;
            datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Utf8).ok()
        };
        let (Some(kinds), Some(plans)) = (text(0), text(1)) else {
            continue;
        };
        let (Some(kinds), Some(plans)) = (
            kinds.as_any().downcast_ref::<datafusion::arrow::array::StringArray>(),
            plans.as_any().downcast_ref::<datafusion::arrow::array::StringArray>(),
        ) else {
            continue;
        };
        for row in 0..b.num_rows() {
            if kinds.is_valid(row) {
                lines.push(format!("{}:", kinds.value(row)));
            }
            if plans.is_valid(row) {
                lines.extend(plans.value(row).lines().map(|l| format!("  {l}")));
            }
        }
    }
    lines
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn doc(e: &Execution) -> Result<MetaOp> {
    Ok(MetaOp::Put {
        table: T_EXECUTIONS.into(),
        key: e.id.clone(),
        value: serde_json::to_vec(e).map_err(|e| Error::Internal(e.to_string()))?,
    })
}

/// Substitutes `?` placeholders (outside quotes) by the parameters, in order.
pub fn bind_parameters(sql: &str, params: &[String]) -> Result<String> {
    let mut out = String::with_capacity(sql.len());
    let mut it = params.iter();
    let mut quote: Option<char> = None;
    let mut used = 0;
    for c in sql.chars() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                out.push(c);
            }
            Some(_) => out.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '?' => match it.next() {
                Some(p) => {
                    out.push_str(p);
                    used += 1;
                }
                None => {
                    return Err(Error::InvalidRequest(format!(
                        "Query has {} placeholder(s) but only {} ExecutionParameters were given",
                        used + 1,
                        params.len()
                    )));
                }
            },
            None => out.push(c),
        }
    }
    if used < params.len() {
        return Err(Error::InvalidRequest(format!(
            "{} ExecutionParameters were given but the query has {used} placeholder(s)",
            params.len()
        )));
    }
    Ok(out)
}

impl Query {
    /// Opens the engine: loads every execution; those that were QUEUED or RUNNING when the
    /// process stopped are marked FAILED (committed before this returns).
    pub fn open(
        meta: Arc<MetaStore>,
        clock: Arc<dyn Clock>,
        catalog: Catalogs,
        objects: Arc<dyn ObjectsPort>,
        config: Config,
    ) -> Result<Query> {
        let mut execs = HashMap::new();
        let mut ops = Vec::new();
        let now = clock.now_ms();
        for (_, v) in meta.scan_prefix(T_EXECUTIONS, "")? {
            let mut e: Execution =
                serde_json::from_slice(&v).map_err(|e| Error::Internal(format!("stored execution unreadable: {e}")))?;
            if !e.state.terminal() {
                e.state = State::Failed;
                e.reason = Some(
                    "INTERNAL_ERROR_QUERY_ENGINE: kinesis-data stopped while the query was running; run it again"
                        .into(),
                );
                e.error_category = Some(1);
                e.completed_ms = Some(now);
                ops.push(doc(&e)?);
            }
            execs.insert(e.id.clone(), e);
        }
        meta.write(ops)?;
        let workgroups = workgroups::load(&meta, &config.primary_output_location)?;
        Ok(Query {
            inner: Arc::new(Inner {
                meta,
                clock,
                catalog,
                objects,
                config,
                execs: Mutex::new(execs),
                running: Mutex::new(HashMap::new()),
                workgroups: Mutex::new(workgroups),
                wg_lock: tokio::sync::RwLock::new(()),
                parquet_meta: crate::table::ParquetMetaCaches::default(),
            }),
        })
    }

    /// The engine's settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The catalog port (ListDatabases and friends read it as the caller).
    pub fn catalog(&self) -> &Catalogs {
        &self.inner.catalog
    }

    /// StartQueryExecution.
    pub async fn start(&self, scope: &Scope, access: Arc<dyn Access>, req: StartRequest) -> Result<String> {
        let workgroup = req.workgroup.clone().unwrap_or_else(|| PRIMARY.into());
        workgroups::check_name(&workgroup, "workGroup")?;
        // `primary` is committed (first use) before the read lock is taken.
        if workgroup == PRIMARY {
            self.inner.ensure_primary(scope).await?;
        }
        // Held until the execution is committed: a recursive DeleteWorkGroup waits for it.
        let _wg = self.inner.wg_lock.read().await;
        let wg = self.inner.workgroup_for_query(scope, &workgroup)?;
        if let Some(c) = &req.catalog
            && !c.eq_ignore_ascii_case(CATALOG)
        {
            return Err(Error::InvalidRequest(format!("Catalog {c} is not found.")));
        }
        // An enforced workgroup location wins over the request's; otherwise the request's
        // comes first.
        let wg_output = wg.config.result.output_location.clone();
        let output = if wg.config.enforce && wg_output.is_some() {
            wg_output
        } else {
            req.output_location.clone().or(wg_output)
        };
        let cutoff = wg.config.bytes_cutoff;
        let output = output
            .ok_or_else(|| {
                Error::InvalidRequest(
                    "No output location provided. An output location is required either through the Workgroup result configuration setting or as an API input.".into(),
                )
            })?;
        let Some((bucket, _)) = split_s3(&output) else {
            return Err(Error::InvalidRequest(format!(
                "outputLocation {output} is not a valid S3 location (s3://bucket/path/)"
            )));
        };
        // Idempotency.
        if let Some(t) = &req.token {
            let execs = lock(&self.inner.execs);
            if let Some(e) = execs
                .values()
                .find(|e| e.token.as_deref() == Some(t.as_str()) && e.account == scope.account)
            {
                if e.query == req.query && e.parameters == req.parameters && e.database == req.database {
                    return Ok(e.id.clone());
                }
                return Err(Error::InvalidRequest(
                    "Idempotent parameters do not match: ClientRequestToken was used with a different request.".into(),
                ));
            }
        }
        let sql = bind_parameters(&req.query, &req.parameters)?;
        let parsed = ddl::parse(&sql);
        let statement_type = match &parsed {
            Some(Ok(Ddl::ShowDatabases(_) | Ddl::ShowTables(..) | Ddl::ShowPartitions(..) | Ddl::Describe(..))) => {
                "UTILITY"
            }
            Some(_) => "DDL",
            None if sql.trim_start().to_ascii_lowercase().starts_with("explain") => "UTILITY",
            None => "DML",
        };
        let id = uuid::Uuid::new_v4().to_string();
        let ext = if statement_type == "DML" { "csv" } else { "txt" };
        let folder = if output.ends_with('/') {
            output.clone()
        } else {
            format!("{output}/")
        };
        let e = Execution {
            version: FORMAT_VERSION,
            id: id.clone(),
            account: scope.account.clone(),
            region: scope.region.clone(),
            query: req.query.clone(),
            statement_type: statement_type.into(),
            workgroup,
            database: req.database.clone(),
            catalog: req.catalog.clone(),
            output_location: output.clone(),
            result_file: format!("{folder}{id}.{ext}"),
            state: State::Queued,
            reason: None,
            error_category: None,
            submitted_ms: self.inner.clock.now_ms(),
            started_ms: None,
            completed_ms: None,
            scanned_bytes: 0,
            columns: Vec::new(),
            has_header: statement_type == "DML",
            token: req.token.clone(),
            parameters: req.parameters.clone(),
            rows: 0,
        };
        let _ = bucket;
        self.inner.meta.write_grouped(vec![doc(&e)?]).await?;
        lock(&self.inner.execs).insert(id.clone(), e);
        let inner = self.inner.clone();
        let scope = scope.clone();
        let run_id = id.clone();
        // The task waits for its handle to be registered, so a Stop always finds it.
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let _ = ready_rx.await;
            inner.run(&run_id, &scope, access, sql, parsed, cutoff).await;
        });
        lock(&self.inner.running).insert(
            id.clone(),
            Running {
                abort: Some(handle.abort_handle()),
            },
        );
        let _ = ready_tx.send(());
        Ok(id)
    }

    /// GetQueryExecution.
    pub fn get(&self, scope: &Scope, id: &str) -> Result<Execution> {
        lock(&self.inner.execs)
            .get(id)
            .filter(|e| e.account == scope.account && e.region == scope.region)
            .cloned()
            .ok_or_else(|| Error::InvalidRequest(format!("QueryExecution {id} was not found")))
    }

    /// ListQueryExecutions: ids of the workgroup's executions (`primary`'s when none is
    /// named, as AWS), newest first.
    pub fn list(&self, scope: &Scope, workgroup: Option<&str>) -> Result<Vec<String>> {
        let w = workgroup.unwrap_or(PRIMARY);
        workgroups::check_name(w, "workGroup")?;
        if !self.inner.workgroup_exists(scope, w) {
            return Err(Error::InvalidRequest(format!("WorkGroup {w} is not found.")));
        }
        let execs = lock(&self.inner.execs);
        let mut v: Vec<&Execution> = execs
            .values()
            .filter(|e| e.account == scope.account && e.region == scope.region && e.workgroup == w)
            .collect();
        v.sort_by(|a, b| b.submitted_ms.cmp(&a.submitted_ms).then(b.id.cmp(&a.id)));
        Ok(v.into_iter().map(|e| e.id.clone()).collect())
    }

    /// StopQueryExecution: cancels a running query (its task is aborted, so DataFusion stops
    /// reading) and records CANCELLED; a finished one is left as it is.
    pub async fn stop(&self, scope: &Scope, id: &str) -> Result<()> {
        let e = self.get(scope, id)?;
        if e.state.terminal() {
            return Ok(());
        }
        if let Some(r) = lock(&self.inner.running).remove(id)
            && let Some(a) = r.abort
        {
            a.abort();
        }
        let now = self.inner.clock.now_ms();
        let updated = {
            let mut execs = lock(&self.inner.execs);
            let Some(e) = execs.get_mut(id) else {
                return Ok(());
            };
            if e.state.terminal() {
                return Ok(());
            }
            e.state = State::Cancelled;
            e.reason = Some("Query cancelled by user".into());
            e.completed_ms = Some(now);
            e.clone()
        };
        self.inner.meta.write_grouped(vec![doc(&updated)?]).await?;
        self.inner.remove_results(&updated).await;
        Ok(())
    }

    /// GetQueryResults: `max` rows from `token` (a byte offset in the result file); the
    /// header row comes first on the first page of a DML result.
    pub async fn results(
        &self,
        scope: &Scope,
        access: &dyn Access,
        id: &str,
        token: Option<&str>,
        max: usize,
    ) -> Result<(Execution, Vec<results::Row>, Option<String>)> {
        let e = self.get(scope, id)?;
        match e.state {
            State::Succeeded => {}
            State::Failed => {
                return Err(Error::InvalidRequest(
                    e.reason.clone().unwrap_or_else(|| "Query failed".into()),
                ));
            }
            s => {
                return Err(Error::InvalidRequest(format!(
                    "Query has not yet finished. Current state: {}",
                    s.as_str()
                )));
            }
        }
        let offset: u64 = match token {
            None => 0,
            Some(t) => t
                .strip_prefix("o")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| Error::InvalidRequest("The NextToken is not valid.".into()))?,
        };
        let (bucket, key) = split_s3(&e.result_file).ok_or_else(|| Error::Internal("bad result file".into()))?;
        access
            .authorize("s3:GetObject", &format!("arn:aws:s3:::{bucket}/{key}"))
            .map_err(Error::AccessDenied)?;
        let store = self
            .inner
            .objects
            .store(&bucket)
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let path = Path::from(key.as_str());
        match store.head(&path).await {
            Ok(m) if offset >= m.size => return Ok((e, Vec::new(), None)),
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::InvalidRequest(format!(
                    "Query results of {id} are no longer available"
                )));
            }
            Err(err) => return Err(Error::Internal(err.to_string())),
        }
        let opts = object_store::GetOptions {
            range: Some(object_store::GetRange::Offset(offset)),
            ..Default::default()
        };
        let got = match store.get_opts(&path, opts).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::InvalidRequest(format!(
                    "Query results of {id} are no longer available"
                )));
            }
            Err(err) if offset > 0 => {
                tracing::debug!(error = %err, "result read past the end");
                return Ok((e, Vec::new(), None));
            }
            Err(err) => return Err(Error::Internal(err.to_string())),
        };
        let size = got.meta.size;
        let mut stream = got.into_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut rows = Vec::new();
        let mut consumed = 0usize;
        let mut eof = false;
        while rows.len() < max {
            if !eof {
                match stream.next().await {
                    Some(chunk) => buf.extend_from_slice(&chunk.map_err(|e| Error::Internal(e.to_string()))?),
                    None => eof = true,
                }
            }
            let (mut more, used) = if e.statement_type == "DML" {
                results::parse_rows(&buf[consumed..], max - rows.len(), eof)
            } else {
                text_rows(&buf[consumed..], max - rows.len(), eof)
            };
            consumed += used;
            let done = more.is_empty() && eof;
            rows.append(&mut more);
            if done {
                break;
            }
            if buf.len() > 256 * 1024 * 1024 {
                return Err(Error::Internal("a result row is too large to page".into()));
            }
        }
        let next = offset + consumed as u64;
        let token = (next < size).then(|| format!("o{next}"));
        Ok((e, rows, token))
    }

    /// Empties the engine.
    pub async fn reset(&self) -> Result<()> {
        let ids: Vec<String> = lock(&self.inner.running).drain().map(|(k, _)| k).collect();
        let _ = ids;
        let keys: Vec<String> = lock(&self.inner.execs).drain().map(|(k, _)| k).collect();
        for chunk in keys.chunks(10_000) {
            self.inner
                .meta
                .write_grouped(
                    chunk
                        .iter()
                        .map(|k| MetaOp::Delete {
                            table: T_EXECUTIONS.into(),
                            key: k.clone(),
                        })
                        .collect(),
                )
                .await?;
        }
        let _w = self.inner.wg_lock.write().await;
        let keys: Vec<String> = std::mem::take(&mut *lock(&self.inner.workgroups)).into_keys().collect();
        for chunk in keys.chunks(10_000) {
            self.inner
                .meta
                .write_grouped(
                    chunk
                        .iter()
                        .map(|k| MetaOp::Delete {
                            table: workgroups::T_WORKGROUPS.into(),
                            key: k.clone(),
                        })
                        .collect(),
                )
                .await?;
        }
        Ok(())
    }

    /// Aborts every running query (shutdown); they are marked FAILED at the next start.
    pub fn shutdown(&self) {
        for (_, r) in lock(&self.inner.running).drain() {
            if let Some(a) = r.abort {
                a.abort();
            }
        }
    }
}

fn text_rows(buf: &[u8], max: usize, eof: bool) -> (Vec<results::Row>, usize) {
    let mut rows = Vec::new();
    let mut pos = 0;
    while rows.len() < max && pos < buf.len() {
        match buf[pos..].iter().position(|b| *b == b'\n') {
            Some(i) => {
                rows.push(vec![Some(String::from_utf8_lossy(&buf[pos..pos + i]).into_owned())]);
                pos += i + 1;
            }
            None if eof => {
                rows.push(vec![Some(String::from_utf8_lossy(&buf[pos..]).into_owned())]);
                pos = buf.len();
            }
            None => break,
        }
    }
    (rows, pos)
}

/// What a statement produced.
struct Outcome {
    columns: Vec<ColumnInfo>,
    rows: u64,
}

impl Inner {
    /// Removes a cancelled execution's partial result file and its metadata file.
    async fn remove_results(&self, e: &Execution) {
        if let Some((bucket, key)) = split_s3(&e.result_file)
            && let Ok(store) = self.objects.store(&bucket)
        {
            let _ = store.delete(&Path::from(key.as_str())).await;
            let _ = store.delete(&Path::from(format!("{key}.metadata").as_str())).await;
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Execution)) -> Option<Execution> {
        let mut execs = lock(&self.execs);
        let e = execs.get_mut(id)?;
        if e.state.terminal() {
            return None;
        }
        f(e);
        Some(e.clone())
    }

    async fn run(
        self: &Arc<Self>,
        id: &str,
        scope: &Scope,
        access: Arc<dyn Access>,
        sql: String,
        parsed: Option<std::result::Result<Ddl, String>>,
        cutoff: Option<u64>,
    ) {
        let now = self.clock.now_ms();
        let Some(e) = self.update(id, |e| {
            e.state = State::Running;
            e.started_ms = Some(now);
        }) else {
            return;
        };
        let scanned = Arc::new(AtomicU64::new(0));
        let env = QueryEnv {
            scope: scope.clone(),
            access: access.clone(),
            catalog: self.catalog.clone(),
            objects: self.objects.clone(),
            with_path: sql.contains("$path"),
            scanned: scanned.clone(),
            target_partitions: self.config.target_partitions.max(1),
            parquet_meta: self.parquet_meta.clone(),
        };
        let work = async {
            match parsed {
                Some(Ok(ddl)) => self.run_ddl(&e, &env, ddl).await,
                Some(Err(msg)) => Err(syntax(msg)),
                None => self.run_sql(&e, &env, &sql).await,
            }
        };
        // The workgroup's BytesScannedCutoffPerQuery: as on AWS, a query that reads more is
        // cancelled (its task stops reading at once; the counter is watched while it runs).
        let outcome = match cutoff {
            None => Some(work.await),
            Some(limit) => {
                let watch = async {
                    while scanned.load(Ordering::Relaxed) <= limit {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                };
                match futures_util::future::select(std::pin::pin!(work), std::pin::pin!(watch)).await {
                    futures_util::future::Either::Left((o, _)) => {
                        Some(o).filter(|_| scanned.load(Ordering::Relaxed) <= limit)
                    }
                    futures_util::future::Either::Right(((), _)) => None,
                }
            }
        };
        let done = self.clock.now_ms();
        let updated = self.update(id, |x| {
            x.completed_ms = Some(done);
            x.scanned_bytes = scanned.load(Ordering::Relaxed);
            let Some(outcome) = outcome else {
                x.state = State::Cancelled;
                x.reason = Some(BYTES_SCANNED_LIMIT_EXCEEDED.into());
                return;
            };
            match outcome {
                Ok(o) => {
                    x.state = State::Succeeded;
                    x.columns = o.columns;
                    x.rows = o.rows;
                }
                Err(r) => {
                    x.state = State::Failed;
                    x.error_category = Some(if r.starts_with("GENERIC_INTERNAL_ERROR") { 1 } else { 2 });
                    x.reason = Some(r);
                }
            }
        });
        lock(&self.running).remove(id);
        if let Some(u) = &updated
            && u.state == State::Cancelled
        {
            self.remove_results(u).await;
        }
        if let Some(u) = updated {
            match doc(&u) {
                Ok(op) => {
                    if let Err(err) = self.meta.write_grouped(vec![op]).await {
                        tracing::error!(error = %err, id, "cannot record the end of a query");
                    }
                }
                Err(err) => tracing::error!(error = %err, "cannot encode an execution"),
            }
        }
    }

    fn session(&self, e: &Execution, env: &QueryEnv) -> std::result::Result<SessionContext, String> {
        let registry = Arc::new(PortRegistry { env: env.clone() });
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(registry)
            .build_arc()
            .map_err(|e| internal(e.to_string()))?;
        let db = e.database.clone().unwrap_or_else(|| "default".into()).to_lowercase();
        let mut config = SessionConfig::new()
            .with_target_partitions(env.target_partitions)
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema("awsdatacatalog", db)
            .with_information_schema(false);
        // Parquet: evaluate filters inside the decoder (rows that fail the most selective
        // predicate are never decoded for the other columns), as Athena's and DuckDB's
        // readers do.
        let parquet = &mut config.options_mut().execution.parquet;
        parquet.pushdown_filters = true;
        parquet.reorder_filters = true;
        // The page index would be read again from every object by every query (the footer
        // cache holds the footer without it), for page-level pruning that arrival-ordered
        // data rarely allows: row groups are still pruned by their statistics.
        parquet.enable_page_index = false;
        // A hash join's build-side keys pushed into the probe scan as a per-row filter cost
        // more than they save unless the join is selective: with a small dimension table
        // matching every row, they made the join ~75 % slower. Re-enable with
        // `KINESIS_DATA_DATAFUSION_OPTIONS=datafusion.optimizer.enable_join_dynamic_filter_pushdown=true`.
        config.options_mut().optimizer.enable_join_dynamic_filter_pushdown = false;
        for (k, v) in datafusion_overrides() {
            if let Err(err) = config.options_mut().set(k, v) {
                tracing::warn!(key = %k, error = %err, "ignoring a DataFusion option from {DF_OPTIONS_ENV}");
            }
        }
        // After DataFusion's physical optimiser: the order of each Parquet scan's filters
        // (`filter_order`).
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(crate::filter_order::OrderParquetFilters))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let provider: Arc<dyn CatalogProvider> = Arc::new(GlueCatalog { env: env.clone() });
        ctx.register_catalog("awsdatacatalog", provider.clone());
        ctx.register_catalog(CATALOG, provider);
        crate::udf::register(&ctx);
        Ok(ctx)
    }

    async fn run_sql(&self, e: &Execution, env: &QueryEnv, sql: &str) -> std::result::Result<Outcome, String> {
        let ctx = self.session(e, env)?;
        let opts = datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = ctx.sql_with_options(sql, opts).await.map_err(|err| {
            let schema_exists = |db: &str| {
                !matches!(
                    env.catalog
                        .database(&env.scope, env.access.as_ref(), &db.to_lowercase()),
                    Err(PortError::NotFound(_))
                )
            };
            athena_error_in(&err, e, &schema_exists)
        })?;
        if e.statement_type == "UTILITY" {
            // EXPLAIN [ANALYZE]: Athena answers plain text, a row per line of the plan.
            let batches = df.collect().await.map_err(|err| athena_error(&err, e))?;
            return self.write_lines(env, e, &explain_lines(&batches), "Query Plan").await;
        }
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let columns: Vec<ColumnInfo> = schema
            .fields()
            .iter()
            .map(|f| {
                let (t, p, s) = athena_type(f.data_type());
                ColumnInfo {
                    name: f.name().clone(),
                    type_name: t.into(),
                    precision: p,
                    scale: s,
                }
            })
            .collect();
        let mut stream = df.execute_stream().await.map_err(|err| athena_error(&err, e))?;
        let mut writer = self.writer(env, &e.result_file)?;
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        writer
            .write_all(&results::header(&names))
            .await
            .map_err(|err| internal(err.to_string()))?;
        let mut rows = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = match batch {
                Ok(b) => b,
                Err(err) => {
                    let _ = writer.abort().await;
                    return Err(athena_error(&err, e));
                }
            };
            rows += batch.num_rows() as u64;
            let bytes = results::rows(&batch).map_err(|err| athena_error(&err, e))?;
            writer
                .write_all(&bytes)
                .await
                .map_err(|err| internal(err.to_string()))?;
        }
        writer.shutdown().await.map_err(|err| internal(err.to_string()))?;
        self.write_metadata(env, e, &columns).await?;
        Ok(Outcome { columns, rows })
    }

    fn writer(&self, env: &QueryEnv, file: &str) -> std::result::Result<object_store::buffered::BufWriter, String> {
        let (bucket, key) = split_s3(file).ok_or_else(|| internal("bad output location".into()))?;
        env.access
            .authorize("s3:PutObject", &format!("arn:aws:s3:::{bucket}/{key}"))
            .map_err(|m| format!("PERMISSION_DENIED: {m}"))?;
        let store = self
            .objects
            .store(&bucket)
            .map_err(|err| format!("HIVE_PATH_ALREADY_EXISTS: cannot write the results to {file}: {err}"))?;
        Ok(object_store::buffered::BufWriter::new(store, Path::from(key.as_str())))
    }

    async fn write_metadata(
        &self,
        env: &QueryEnv,
        e: &Execution,
        columns: &[ColumnInfo],
    ) -> std::result::Result<(), String> {
        let meta = serde_json::json!({
            "QueryExecutionId": e.id,
            "ColumnInfo": columns.iter().map(|c| serde_json::json!({
                "CatalogName": "hive", "SchemaName": "", "TableName": "", "Name": c.name, "Label": c.name,
                "Type": c.type_name, "Precision": c.precision, "Scale": c.scale, "Nullable": "UNKNOWN", "CaseSensitive": c.type_name == "varchar",
            })).collect::<Vec<_>>(),
        });
        let mut w = self.writer(env, &format!("{}.metadata", e.result_file))?;
        w.write_all(meta.to_string().as_bytes())
            .await
            .map_err(|err| internal(err.to_string()))?;
        w.shutdown().await.map_err(|err| internal(err.to_string()))
    }

    async fn write_text(
        &self,
        env: &QueryEnv,
        e: &Execution,
        lines: &[String],
    ) -> std::result::Result<Outcome, String> {
        self.write_lines(env, e, lines, "result").await
    }

    /// A `.txt` result: one row per line, in one varchar column named `column` (EXPLAIN's is
    /// `Query Plan`, as Athena names it).
    async fn write_lines(
        &self,
        env: &QueryEnv,
        e: &Execution,
        lines: &[String],
        column: &str,
    ) -> std::result::Result<Outcome, String> {
        let mut w = self.writer(env, &e.result_file)?;
        let mut body = String::new();
        for l in lines {
            body.push_str(l);
            body.push('\n');
        }
        w.write_all(body.as_bytes())
            .await
            .map_err(|err| internal(err.to_string()))?;
        w.shutdown().await.map_err(|err| internal(err.to_string()))?;
        let columns = vec![ColumnInfo {
            name: column.into(),
            type_name: "varchar".into(),
            precision: 2147483647,
            scale: 0,
        }];
        self.write_metadata(env, e, &columns).await?;
        Ok(Outcome {
            columns,
            rows: lines.len() as u64,
        })
    }

    async fn run_ddl(&self, e: &Execution, env: &QueryEnv, ddl: Ddl) -> std::result::Result<Outcome, String> {
        let cat = &self.catalog;
        let (scope, access) = (&env.scope, env.access.as_ref());
        let current = e.database.clone().unwrap_or_else(|| "default".into()).to_lowercase();
        let db_of = |d: String| if d.is_empty() { current.clone() } else { d };
        let port = |err: PortError| match err {
            PortError::NotFound(m) => format!("SCHEMA_NOT_FOUND: {m}"),
            PortError::AlreadyExists(m) => format!("ALREADY_EXISTS: {m}"),
            PortError::Invalid(m) => format!("INVALID_INPUT: {m}"),
            PortError::Other(m) if m.contains("AccessDenied") || m.contains("not authorized") => {
                format!("PERMISSION_DENIED: {m}")
            }
            PortError::Other(m) => format!("GENERIC_INTERNAL_ERROR: {m}"),
        };
        let table_missing =
            |db: &str, t: &str| format!("TABLE_NOT_FOUND: line 1:1: Table 'awsdatacatalog.{db}.{t}' does not exist");
        let lines: Vec<String> = match ddl {
            Ddl::CreateDatabase {
                name,
                if_not_exists,
                comment,
                location,
                properties,
            } => {
                let r = cat
                    .create_database(
                        scope,
                        access,
                        DatabaseDef {
                            name: name.clone(),
                            description: comment,
                            location,
                            parameters: properties,
                        },
                    )
                    .await;
                match r {
                    Ok(()) => {}
                    Err(PortError::AlreadyExists(_)) if if_not_exists => {}
                    Err(PortError::AlreadyExists(_)) => {
                        return Err(format!(
                            "FAILED: Execution Error, return code 1 from org.apache.hadoop.hive.ql.exec.DDLTask. Database {name} already exists"
                        ));
                    }
                    Err(err) => return Err(port(err)),
                }
                vec![]
            }
            Ddl::DropDatabase {
                name,
                if_exists,
                cascade,
            } => {
                match cat.tables(scope, access, &name) {
                    Ok(t) if !t.is_empty() && !cascade => {
                        return Err(format!(
                            "FAILED: Execution Error, return code 1 from org.apache.hadoop.hive.ql.exec.DDLTask. InvalidOperationException(message:Database {name} is not empty. One or more tables exist.)"
                        ));
                    }
                    Err(PortError::NotFound(_)) if if_exists => return self.write_text(env, e, &[]).await,
                    Err(err) => return Err(port(err)),
                    Ok(_) => {}
                }
                cat.drop_database(scope, access, &name).await.map_err(port)?;
                vec![]
            }
            Ddl::CreateTable {
                mut table,
                if_not_exists,
            } => {
                table.database = db_of(table.database);
                // Types must be readable.
                for c in table.columns.iter().chain(&table.partition_keys) {
                    crate::types::parse_hive_type(&c.type_name)
                        .map_err(|m| format!("INVALID_TABLE_PROPERTY: column {}: {m}", c.name))?;
                }
                match cat.create_table(scope, access, table.clone()).await {
                    Ok(()) => {}
                    Err(PortError::AlreadyExists(_)) if if_not_exists => {}
                    Err(PortError::AlreadyExists(_)) => {
                        return Err(format!(
                            "FAILED: Execution Error, return code 1 from org.apache.hadoop.hive.ql.exec.DDLTask. AlreadyExistsException(message:Table {} already exists)",
                            table.name
                        ));
                    }
                    Err(err) => return Err(port(err)),
                }
                vec![]
            }
            Ddl::DropTable { db, name, if_exists } => {
                let db = db_of(db);
                match cat.drop_table(scope, access, &db, &name).await {
                    Ok(()) => {}
                    Err(PortError::NotFound(_)) if if_exists => {}
                    Err(PortError::NotFound(_)) => return Err(table_missing(&db, &name)),
                    Err(err) => return Err(port(err)),
                }
                vec![]
            }
            Ddl::ShowDatabases(like) => {
                let re = like.as_deref().map(like_to_regex);
                cat.databases(scope, access)
                    .map_err(port)?
                    .into_iter()
                    .map(|d| d.name)
                    .filter(|n| re.as_ref().is_none_or(|r| r.is_match(n)))
                    .collect()
            }
            Ddl::ShowTables(db, pattern) => {
                let db = db.unwrap_or_else(|| current.clone());
                let re = pattern.as_deref().map(like_to_regex);
                let mut names: Vec<String> = cat
                    .tables(scope, access, &db)
                    .map_err(|err| match err {
                        PortError::NotFound(_) => format!("SCHEMA_NOT_FOUND: line 1:1: Schema '{db}' does not exist"),
                        other => port(other),
                    })?
                    .into_iter()
                    .map(|t| t.name)
                    .filter(|n| re.as_ref().is_none_or(|r| r.is_match(n)))
                    .collect();
                names.sort();
                names
            }
            Ddl::ShowPartitions(db, name) => {
                let db = db_of(db);
                let t = cat
                    .table(scope, access, &db, &name)
                    .map_err(|_| table_missing(&db, &name))?;
                let mut parts: Vec<String> = cat
                    .partitions(scope, access, &db, &name)
                    .map_err(port)?
                    .into_iter()
                    .map(|p| {
                        t.partition_keys
                            .iter()
                            .zip(&p.values)
                            .map(|(k, v)| format!("{}={v}", k.name))
                            .collect::<Vec<_>>()
                            .join("/")
                    })
                    .collect();
                parts.sort();
                parts
            }
            Ddl::Describe(db, name) => {
                let db = db_of(db);
                let t = cat
                    .table(scope, access, &db, &name)
                    .map_err(|_| table_missing(&db, &name))?;
                let line = |c: &ColumnDef| {
                    format!(
                        "{:<20}\t{:<20}\t{}",
                        c.name,
                        c.type_name,
                        c.comment.clone().unwrap_or_default()
                    )
                };
                let mut out: Vec<String> = t.columns.iter().map(line).collect();
                if !t.partition_keys.is_empty() {
                    out.push(String::new());
                    out.push("# Partition Information".into());
                    out.push(format!("{:<20}\t{:<20}\t{}", "# col_name", "data_type", "comment"));
                    out.push(String::new());
                    out.extend(t.partition_keys.iter().map(line));
                }
                out
            }
            Ddl::Repair(db, name) => {
                let db = db_of(db);
                let t = cat
                    .table(scope, access, &db, &name)
                    .map_err(|_| table_missing(&db, &name))?;
                self.repair(env, &t).await?
            }
            Ddl::AddPartitions { db, name, parts } => {
                let db = db_of(db);
                let t = cat
                    .table(scope, access, &db, &name)
                    .map_err(|_| table_missing(&db, &name))?;
                let mut defs = Vec::new();
                for (spec, loc) in parts {
                    let values = spec_values(&t, &spec)?;
                    let location = loc.or_else(|| {
                        t.location.as_ref().map(|l| {
                            let mut s = l.trim_end_matches('/').to_string();
                            for (k, v) in t.partition_keys.iter().zip(&values) {
                                s.push_str(&format!("/{}={v}", k.name));
                            }
                            s.push('/');
                            s
                        })
                    });
                    defs.push(PartitionDef { values, location });
                }
                cat.add_partitions(scope, access, &db, &name, defs)
                    .await
                    .map_err(port)?;
                vec![]
            }
            Ddl::DropPartitions {
                db,
                name,
                if_exists,
                parts,
            } => {
                let db = db_of(db);
                let t = cat
                    .table(scope, access, &db, &name)
                    .map_err(|_| table_missing(&db, &name))?;
                let values: Vec<Vec<String>> = parts
                    .iter()
                    .map(|s| spec_values(&t, s))
                    .collect::<std::result::Result<_, _>>()?;
                let n = values.len();
                let dropped = cat
                    .drop_partitions(scope, access, &db, &name, values)
                    .await
                    .map_err(port)?;
                if dropped < n && !if_exists {
                    return Err("FAILED: SemanticException [Error 10006]: Partition not found".into());
                }
                vec![]
            }
        };
        self.write_text(env, e, &lines).await
    }

    /// MSCK REPAIR TABLE: adds the Hive-style `k=v/` folders under the table's location that
    /// are not partitions yet.
    async fn repair(&self, env: &QueryEnv, t: &TableDef) -> std::result::Result<Vec<String>, String> {
        let loc = t.location.clone().unwrap_or_default();
        let (bucket, prefix) = split_s3(&loc).ok_or_else(|| format!("HIVE_METASTORE_ERROR: bad location {loc}"))?;
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix
        } else {
            format!("{prefix}/")
        };
        env.access
            .authorize("s3:ListBucket", &format!("arn:aws:s3:::{bucket}"))
            .map_err(|m| format!("PERMISSION_DENIED: {m}"))?;
        let store = env.store(&bucket).map_err(|e| e.to_string())?;
        let keys: Vec<String> = t.partition_keys.iter().map(|k| k.name.to_lowercase()).collect();
        if keys.is_empty() {
            return Ok(vec![]);
        }
        let existing: std::collections::HashSet<Vec<String>> = self
            .catalog
            .partitions(&env.scope, env.access.as_ref(), &t.database, &t.name)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|p| p.values)
            .collect();
        let mut found: std::collections::BTreeMap<Vec<String>, String> = std::collections::BTreeMap::new();
        let path = Path::from(prefix.as_str());
        let mut s = store.list(if prefix.is_empty() { None } else { Some(&path) });
        while let Some(m) = s.next().await {
            let m = m.map_err(|e| e.to_string())?;
            let key = m.location.as_ref();
            let Some(rest) = key.strip_prefix(prefix.as_str()) else {
                continue;
            };
            let segs: Vec<&str> = rest.split('/').collect();
            if segs.len() <= keys.len() {
                continue;
            }
            let mut values = Vec::new();
            for (seg, k) in segs.iter().zip(&keys) {
                match seg.split_once('=') {
                    Some((sk, v)) if sk.eq_ignore_ascii_case(k) => values.push(v.to_string()),
                    _ => break,
                }
            }
            if values.len() == keys.len() && !existing.contains(&values) {
                let loc = format!("s3://{bucket}/{prefix}{}/", segs[..keys.len()].join("/"));
                found.insert(values, loc);
            }
        }
        let mut lines = Vec::new();
        if !found.is_empty() {
            let names: Vec<String> = found
                .keys()
                .map(|v| {
                    format!(
                        "{}:{}",
                        t.name,
                        keys.iter()
                            .zip(v)
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join("/")
                    )
                })
                .collect();
            lines.push(format!("Partitions not in metastore:\t{}", names.join("\t")));
            for n in &names {
                lines.push(format!("Repair: Added partition to metastore {n}"));
            }
            let defs = found
                .into_iter()
                .map(|(values, location)| PartitionDef {
                    values,
                    location: Some(location),
                })
                .collect();
            self.catalog
                .add_partitions(&env.scope, env.access.as_ref(), &t.database, &t.name, defs)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(lines)
    }
}

fn spec_values(t: &TableDef, spec: &[(String, String)]) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    for k in &t.partition_keys {
        let v = spec
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&k.name))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                format!(
                    "FAILED: SemanticException partition spec is missing partition column {}",
                    k.name
                )
            })?;
        out.push(v);
    }
    if spec.len() != t.partition_keys.len() {
        return Err("FAILED: SemanticException partition spec does not match the partition keys".into());
    }
    Ok(out)
}

fn like_to_regex(p: &str) -> regex::Regex {
    let mut r = String::from("^(?:");
    for c in p.chars() {
        match c {
            '*' | '%' => r.push_str(".*"),
            '_' => r.push('.'),
            '|' => r.push('|'),
            c => r.push_str(&regex::escape(&c.to_string())),
        }
    }
    r.push_str(")$");
    regex::RegexBuilder::new(&r)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
        .unwrap_or_else(|_| regex::Regex::new("^$").unwrap_or_else(|_| unreachable_regex()))
}

fn unreachable_regex() -> regex::Regex {
    // "^$" always compiles; this keeps the fallback total without panicking paths.
    regex::Regex::new("a^").unwrap_or_else(|_| std::process::abort())
}

fn internal(m: String) -> String {
    format!("GENERIC_INTERNAL_ERROR: {m}")
}

fn syntax(m: String) -> String {
    if m.starts_with("NOT_SUPPORTED") || m.starts_with("SYNTAX_ERROR") {
        m
    } else {
        format!("SYNTAX_ERROR: {m}")
    }
}

/// Athena's error text for a DataFusion error (`CATEGORY: line L:C: message`).
pub fn athena_error(err: &DataFusionError, e: &Execution) -> String {
    athena_error_in(err, e, &|_| true)
}

/// [`athena_error`] for a planning error, where `schema_exists(db)` tells a missing table of
/// the catalog from a table of a missing database: DataFusion reports both as `table '…' not
/// found` (its `SessionState::statement_to_plan` drops the error of the schema lookup).
pub fn athena_error_in(err: &DataFusionError, e: &Execution, schema_exists: &dyn Fn(&str) -> bool) -> String {
    let root = err.find_root();
    let msg = root.to_string();
    let plain = strip_df_prefix(&msg);
    for prefix in [
        "HIVE_",
        "PERMISSION_DENIED",
        "NOT_SUPPORTED",
        "CONSTRAINT_VIOLATION",
        "FUNCTION_NOT_FOUND",
        "INVALID_",
    ] {
        if let Some(i) = plain.find(prefix) {
            return plain[i..].to_string();
        }
    }
    match root {
        DataFusionError::SQL(pe, _) => {
            let text = match pe.as_ref() {
                ParserError::ParserError(s) | ParserError::TokenizerError(s) => s.clone(),
                ParserError::RecursionLimitExceeded => "statement is too deeply nested".into(),
            };
            let pos = position(&text);
            format!("SYNTAX_ERROR: line {pos}: {text}")
        }
        DataFusionError::SchemaError(se, _) => {
            let s = se.to_string();
            if let datafusion::common::SchemaError::FieldNotFound { field, .. } = se.as_ref() {
                let col = &field.name;
                return format!(
                    "COLUMN_NOT_FOUND: line {}: Column '{col}' cannot be resolved or requester is not authorized to access requested resources",
                    locate(&e.query, col)
                );
            }
            format!("SYNTAX_ERROR: line 1:1: {s}")
        }
        DataFusionError::NotImplemented(m) => format!("NOT_SUPPORTED: {}", strip_df_prefix(m)),
        DataFusionError::Plan(m) => {
            let m = strip_df_prefix(m);
            if let Some(rest) = m.strip_prefix("table '").and_then(|r| r.split_once("' not found")) {
                let name = rest.0;
                // `catalog.schema.table`, as DataFusion resolved it.
                let mut parts = name.splitn(3, '.');
                let (catalog, db, table) = match (parts.next(), parts.next(), parts.next()) {
                    (Some(c), Some(d), Some(t)) => (c, Some(d), t),
                    _ => ("", None, name.rsplit('.').next().unwrap_or(name)),
                };
                let ours = catalog == "awsdatacatalog" || catalog == CATALOG;
                if let Some(db) = db
                    && ours
                    && !schema_exists(db)
                {
                    return format!(
                        "SCHEMA_NOT_FOUND: line {}: Schema '{db}' does not exist",
                        locate_table(&e.query, Some(db), table)
                    );
                }
                return format!(
                    "TABLE_NOT_FOUND: line {}: Table '{name}' does not exist",
                    locate_table(&e.query, db, table)
                );
            }
            if m.contains("Invalid function") || m.contains("Unknown function") {
                return format!("FUNCTION_NOT_FOUND: line 1:1: {m}");
            }
            if m.contains("failed to resolve schema") {
                let db = m.rsplit(':').next().unwrap_or_default().trim();
                return format!("SCHEMA_NOT_FOUND: line 1:1: Schema '{db}' does not exist");
            }
            if m.contains("type") || m.contains("coerce") || m.contains("Cannot") {
                return format!("TYPE_MISMATCH: line 1:1: {m}");
            }
            format!("SYNTAX_ERROR: line 1:1: {m}")
        }
        DataFusionError::ArrowError(a, _) => format!("GENERIC_USER_ERROR: {a}"),
        DataFusionError::Execution(m) => format!("GENERIC_USER_ERROR: {}", strip_df_prefix(m)),
        DataFusionError::ResourcesExhausted(m) => format!("EXCEEDED_LOCAL_MEMORY_LIMIT: {m}"),
        _ => format!("GENERIC_INTERNAL_ERROR: {plain}"),
    }
}

fn strip_df_prefix(m: &str) -> &str {
    let mut s = m;
    for p in [
        "Error during planning: ",
        "Execution error: ",
        "This feature is not implemented: ",
        "External error: ",
        "Arrow error: ",
    ] {
        while let Some(r) = s.strip_prefix(p) {
            s = r;
        }
    }
    s
}

/// `L:C` of sqlparser's "at Line: L, Column: C".
fn position(text: &str) -> String {
    let line = text
        .split("Line: ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap_or("1");
    let col = text
        .split("Column: ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap_or("1");
    format!("{line}:{col}")
}

/// A token of a query, as [`locate`] needs them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TokKind {
    /// An identifier or keyword (also a number), or a quoted identifier.
    Word,
    /// `.`
    Dot,
    /// `,`
    Comma,
    /// A string literal or any other character.
    Other,
}

#[derive(Debug)]
struct Tok<'a> {
    kind: TokKind,
    /// The identifier's name (without the quotes of a quoted one).
    text: std::borrow::Cow<'a, str>,
    /// 1-based line and column (in characters), as Trino reports positions.
    line: usize,
    col: usize,
}

/// Splits a query into the tokens [`locate`] needs, skipping comments and string literals.
fn tokens(query: &str) -> Vec<Tok<'_>> {
    let mut out = Vec::new();
    let mut it = query.char_indices().peekable();
    let (mut line, mut col) = (1usize, 1usize);
    // Advances past one character, keeping the line and column.
    let step = |c: char, line: &mut usize, col: &mut usize| {
        if c == '\n' {
            *line += 1;
            *col = 1;
        } else {
            *col += 1;
        }
    };
    while let Some((i, c)) = it.next() {
        let (tl, tc) = (line, col);
        step(c, &mut line, &mut col);
        let next = it.peek().map(|(_, n)| *n);
        let mut push = |kind, text| {
            out.push(Tok {
                kind,
                text,
                line: tl,
                col: tc,
            })
        };
        match c {
            c if c.is_whitespace() => {}
            '-' if next == Some('-') => {
                while let Some((_, n)) = it.next_if(|(_, n)| *n != '\n') {
                    step(n, &mut line, &mut col);
                }
            }
            '/' if next == Some('*') => {
                let mut prev = ' ';
                if let Some((_, n)) = it.next() {
                    step(n, &mut line, &mut col);
                }
                for (_, n) in it.by_ref() {
                    step(n, &mut line, &mut col);
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
            }
            '\'' | '"' | '`' => {
                // A doubled quote stands for itself.
                let mut text = String::new();
                while let Some((_, n)) = it.next() {
                    step(n, &mut line, &mut col);
                    if n == c {
                        match it.next_if(|(_, m)| *m == c) {
                            Some((_, m)) => step(m, &mut line, &mut col),
                            None => break,
                        }
                    }
                    text.push(n);
                }
                let kind = if c == '\'' { TokKind::Other } else { TokKind::Word };
                push(kind, text.into());
            }
            '.' => push(TokKind::Dot, ".".into()),
            ',' => push(TokKind::Comma, ",".into()),
            c if c.is_alphanumeric() || c == '_' => {
                let mut end = i + c.len_utf8();
                while let Some((j, n)) = it.next_if(|(_, n)| n.is_alphanumeric() || *n == '_') {
                    step(n, &mut line, &mut col);
                    end = j + n.len_utf8();
                }
                push(TokKind::Word, query.get(i..end).unwrap_or_default().into());
            }
            _ => push(TokKind::Other, "".into()),
        }
    }
    out
}

/// The qualified names of a query (`a`, `db.t`, `c.db.t`): the index of their first token
/// and their parts.
fn qualified_names<'t>(toks: &'t [Tok<'_>]) -> Vec<(usize, Vec<&'t str>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if toks[i].kind != TokKind::Word || (i > 0 && toks[i - 1].kind == TokKind::Dot) {
            i += 1;
            continue;
        }
        let start = i;
        let mut parts = vec![toks[i].text.as_ref()];
        while i + 2 < toks.len() && toks[i + 1].kind == TokKind::Dot && toks[i + 2].kind == TokKind::Word {
            parts.push(toks[i + 2].text.as_ref());
            i += 2;
        }
        out.push((start, parts));
        i += 1;
    }
    out
}

fn pos(t: &Tok<'_>) -> String {
    format!("{}:{}", t.line, t.col)
}

/// `L:C` of the reference to table `table` (of database `db`, if it is qualified) in the
/// query: the start of the qualified name, preferably right after FROM or JOIN, else after a
/// comma (a FROM list), else anywhere; `1:1` if the query never names it.
fn locate_table(query: &str, db: Option<&str>, table: &str) -> String {
    let toks = tokens(query);
    let names = qualified_names(&toks);
    let matches = |parts: &[&str]| match parts {
        [.., d, t] => t.eq_ignore_ascii_case(table) && db.is_none_or(|db| d.eq_ignore_ascii_case(db)),
        [t] => t.eq_ignore_ascii_case(table),
        [] => false,
    };
    let found: Vec<usize> = names.iter().filter(|(_, p)| matches(p)).map(|(s, _)| *s).collect();
    let prev = |start: usize| start.checked_sub(1).and_then(|i| toks.get(i));
    let after_keyword = |start: &&usize| {
        prev(**start).is_some_and(|t| {
            t.kind == TokKind::Word && (t.text.eq_ignore_ascii_case("from") || t.text.eq_ignore_ascii_case("join"))
        })
    };
    let after_comma = |start: &&usize| prev(**start).is_some_and(|t| t.kind == TokKind::Comma);
    found
        .iter()
        .find(after_keyword)
        .or_else(|| found.iter().find(after_comma))
        .or_else(|| found.first())
        .and_then(|start| toks.get(*start))
        .map_or_else(|| "1:1".into(), pos)
}

/// `L:C` (1-based) of the first identifier `word` in the query, as a whole token outside
/// string literals and comments (the start of its qualified name, as in `p.word`), else
/// `1:1`.
fn locate(query: &str, word: &str) -> String {
    let toks = tokens(query);
    let names = qualified_names(&toks);
    let last = |parts: &[&str]| parts.last().is_some_and(|p| p.eq_ignore_ascii_case(word));
    names
        .iter()
        .find(|(_, parts)| last(parts))
        .or_else(|| {
            names
                .iter()
                .find(|(_, parts)| parts.iter().any(|p| p.eq_ignore_ascii_case(word)))
        })
        .and_then(|(start, _)| toks.get(*start))
        .map_or_else(|| "1:1".into(), pos)
}

/// Object stores for DataFusion, resolved per bucket through the port and counted.
#[derive(Debug)]
struct PortRegistry {
    env: QueryEnv,
}

impl ObjectStoreRegistry for PortRegistry {
    fn register_store(&self, _url: &Url, _store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        None
    }

    fn get_store(&self, url: &Url) -> datafusion::common::Result<Arc<dyn ObjectStore>> {
        let bucket = url.host_str().unwrap_or_default();
        self.env.store(bucket)
    }
}

#[derive(Debug)]
struct GlueCatalog {
    env: QueryEnv,
}

impl CatalogProvider for GlueCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.env
            .catalog
            .databases(&self.env.scope, self.env.access.as_ref())
            .map(|d| d.into_iter().map(|d| d.name).collect())
            .unwrap_or_default()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let name = name.to_lowercase();
        self.env
            .catalog
            .database(&self.env.scope, self.env.access.as_ref(), &name)
            .ok()
            .map(|_| {
                Arc::new(GlueSchema {
                    env: self.env.clone(),
                    db: name,
                }) as Arc<dyn SchemaProvider>
            })
    }
}

#[derive(Debug)]
struct GlueSchema {
    env: QueryEnv,
    db: String,
}

#[async_trait::async_trait]
impl SchemaProvider for GlueSchema {
    fn table_names(&self) -> Vec<String> {
        self.env
            .catalog
            .tables(&self.env.scope, self.env.access.as_ref(), &self.db)
            .map(|t| t.into_iter().map(|t| t.name).collect())
            .unwrap_or_default()
    }

    async fn table(&self, name: &str) -> datafusion::common::Result<Option<Arc<dyn TableProvider>>> {
        match self.env.catalog.table(
            &self.env.scope,
            self.env.access.as_ref(),
            &self.db,
            &name.to_lowercase(),
        ) {
            Ok(def) => Ok(Some(Arc::new(GlueTable::try_new(def, self.env.clone())?))),
            Err(PortError::NotFound(_)) => Ok(None),
            Err(e) => Err(DataFusionError::Plan(format!("PERMISSION_DENIED: {e}"))),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.env
            .catalog
            .table(
                &self.env.scope,
                self.env.access.as_ref(),
                &self.db,
                &name.to_lowercase(),
            )
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_bind_outside_quotes() -> Result<()> {
        assert_eq!(
            bind_parameters("select ? , '?' from t where a = ?", &["1".into(), "'x'".into()])?,
            "select 1 , '?' from t where a = 'x'"
        );
        assert!(bind_parameters("select ?", &[]).is_err());
        assert!(bind_parameters("select 1", &["1".into()]).is_err());
        assert_eq!(locate("select\n  nope from t", "nope"), "2:3");
        Ok(())
    }

    #[test]
    fn locate_finds_whole_identifiers() {
        // Not a substring of another word, a string literal, a comment or a quoted name.
        assert_eq!(locate("SELECT e FROM people", "e"), "1:8");
        assert_eq!(locate("SELECT 'e', \"e x\", -- e\n  ee, E FROM t", "e"), "2:7");
        assert_eq!(locate("SELECT /* e */ \"E\" FROM t", "e"), "1:16");
        assert_eq!(locate("SELECT 'it''s e' AS x, e FROM t", "e"), "1:24");
        // A qualified reference points at its start; columns count characters, not bytes.
        assert_eq!(locate("SELECT 'é', p.e FROM people p", "e"), "1:13");
        assert_eq!(locate("SELECT 1", "e"), "1:1");
    }

    #[test]
    fn locate_table_finds_the_reference_after_from_or_join() {
        assert_eq!(locate_table("SELECT * FROM t", Some("lake"), "t"), "1:15");
        assert_eq!(locate_table("SELECT t.x FROM u JOIN t ON u.a = t.a", None, "t"), "1:24");
        assert_eq!(locate_table("SELECT *\nFROM a,\n  lake.t", Some("lake"), "t"), "3:3");
        assert_eq!(
            locate_table("SELECT * FROM nodb.events", Some("nodb"), "events"),
            "1:15"
        );
        assert_eq!(
            locate_table("SELECT * FROM awsdatacatalog.nodb.events", Some("nodb"), "events"),
            "1:15"
        );
        // Another database's table of the same name is not the one reported.
        assert_eq!(locate_table("SELECT * FROM a.t, b.t", Some("b"), "t"), "1:20");
        assert_eq!(locate_table("SELECT * FROM \"T\"", None, "t"), "1:15");
        assert_eq!(locate_table("SELECT 'from t' FROM x", None, "t"), "1:1");
    }
}
