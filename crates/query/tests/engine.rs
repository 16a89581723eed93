//! Engine tests of the Athena engine (no HTTP): the query engine over a real Glue catalog
//! engine (kd-catalog on a temporary metadata store, behind a `CatalogPort` like the
//! server's) and in-memory buckets (an `ObjectsPort` whose stores count reads and can hold
//! them), driven as the Athena adapter drives it: start, poll the execution, read results.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use kd_catalog::{Catalog, Column, DatabaseInput, PartitionInput, SerDeInfo, StorageDescriptor, TableInput};
use kd_query::{
    Access, AllowAll, CatalogPort, ColumnDef, Config, ConfigUpdate, DatabaseDef, Encryption, Execution, NewWorkGroup,
    ObjectsPort, PartitionDef, PortError, Query, Scope, StartRequest, State, TableDef, WorkGroup, WorkGroupConfig,
    WorkGroupState, WorkGroupUpdate,
};
use kd_storage::{MetaStore, SystemClock};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

type R = Result<(), Box<dyn std::error::Error>>;
type Rows = Vec<Vec<Option<String>>>;
/// The store, the catalog and the query engine over it.
type Opened = (Arc<MetaStore>, Arc<Catalog>, Query);

const OUT: &str = "s3://results/athena/";

fn scope() -> Scope {
    Scope {
        account: "123456789012".into(),
        region: "us-east-1".into(),
    }
}

fn cscope(s: &Scope) -> kd_catalog::Scope {
    kd_catalog::Scope {
        account: s.account.clone(),
        region: s.region.clone(),
    }
}

// ---------------------------------------------------------------------------- ports

/// `CatalogPort` over the Glue engine (as the server's, without IAM).
#[derive(Debug)]
struct Glue(Arc<Catalog>);

fn perr(e: kd_catalog::Error) -> PortError {
    match e {
        kd_catalog::Error::EntityNotFound(m) => PortError::NotFound(m),
        kd_catalog::Error::AlreadyExists(m) => PortError::AlreadyExists(m),
        kd_catalog::Error::InvalidInput(m) => PortError::Invalid(m),
        other => PortError::Other(other.to_string()),
    }
}

fn col_def(c: &Column) -> ColumnDef {
    ColumnDef {
        name: c.name.clone(),
        type_name: c.type_name().to_string(),
        comment: c.comment.clone(),
    }
}

fn to_column(c: &ColumnDef) -> Column {
    Column {
        name: c.name.clone(),
        r#type: Some(c.type_name.clone()),
        comment: c.comment.clone(),
        parameters: None,
    }
}

fn db_def(d: kd_catalog::Database) -> DatabaseDef {
    DatabaseDef {
        name: d.input.name,
        description: d.input.description,
        location: d.input.location_uri,
        parameters: d.input.parameters.unwrap_or_default(),
    }
}

fn table_def(t: kd_catalog::Table) -> TableDef {
    let sd = t.input.storage_descriptor.clone().unwrap_or_default();
    let serde = sd.serde_info.clone().unwrap_or_default();
    TableDef {
        database: t.database.clone(),
        name: t.input.name.clone(),
        columns: t.input.columns().iter().map(col_def).collect(),
        partition_keys: t.input.partition_keys().iter().map(col_def).collect(),
        location: sd.location.clone(),
        input_format: sd.input_format.clone(),
        output_format: sd.output_format.clone(),
        serde: serde.serialization_library.clone(),
        serde_parameters: serde.parameters.clone().unwrap_or_default(),
        parameters: t.input.parameters.clone().unwrap_or_default(),
        table_type: t.input.table_type.clone(),
        description: t.input.description.clone(),
        create_time_ms: t.create_time_ms,
    }
}

#[async_trait]
impl CatalogPort for Glue {
    fn databases(&self, s: &Scope, _: &dyn Access) -> Result<Vec<DatabaseDef>, PortError> {
        let page = self.0.get_databases(&cscope(s), None, Some(100)).map_err(perr)?;
        Ok(page.items.into_iter().map(db_def).collect())
    }

    fn database(&self, s: &Scope, _: &dyn Access, name: &str) -> Result<DatabaseDef, PortError> {
        self.0.get_database(&cscope(s), name).map(db_def).map_err(perr)
    }

    fn tables(&self, s: &Scope, _: &dyn Access, db: &str) -> Result<Vec<TableDef>, PortError> {
        let page = self.0.get_tables(&cscope(s), db, None, None, Some(100)).map_err(perr)?;
        Ok(page.items.into_iter().map(table_def).collect())
    }

    fn table(&self, s: &Scope, _: &dyn Access, db: &str, name: &str) -> Result<TableDef, PortError> {
        self.0.get_table(&cscope(s), db, name).map(table_def).map_err(perr)
    }

    fn partitions(&self, s: &Scope, _: &dyn Access, db: &str, table: &str) -> Result<Vec<PartitionDef>, PortError> {
        Ok(self
            .0
            .all_partitions(&cscope(s), db, table)
            .map_err(perr)?
            .into_iter()
            .map(|p| PartitionDef {
                location: p.location().map(str::to_owned),
                values: p.input.values,
            })
            .collect())
    }

    async fn create_database(&self, s: &Scope, _: &dyn Access, db: DatabaseDef) -> Result<(), PortError> {
        let input = DatabaseInput {
            name: db.name,
            description: db.description,
            location_uri: db.location,
            parameters: (!db.parameters.is_empty()).then_some(db.parameters),
            ..DatabaseInput::default()
        };
        self.0.create_database(&cscope(s), input).await.map_err(perr)
    }

    async fn drop_database(&self, s: &Scope, _: &dyn Access, name: &str) -> Result<(), PortError> {
        self.0.delete_database(&cscope(s), name).await.map_err(perr)
    }

    async fn create_table(&self, s: &Scope, _: &dyn Access, t: TableDef) -> Result<(), PortError> {
        let input = TableInput {
            name: t.name.clone(),
            description: t.description.clone(),
            table_type: t.table_type.clone(),
            parameters: Some(t.parameters.clone()),
            partition_keys: Some(t.partition_keys.iter().map(to_column).collect()),
            storage_descriptor: Some(StorageDescriptor {
                columns: Some(t.columns.iter().map(to_column).collect()),
                location: t.location.clone(),
                input_format: t.input_format.clone(),
                output_format: t.output_format.clone(),
                serde_info: Some(SerDeInfo {
                    name: None,
                    serialization_library: t.serde.clone(),
                    parameters: Some(t.serde_parameters.clone()),
                }),
                ..StorageDescriptor::default()
            }),
            ..TableInput::default()
        };
        self.0.create_table(&cscope(s), &t.database, input).await.map_err(perr)
    }

    async fn drop_table(&self, s: &Scope, _: &dyn Access, db: &str, name: &str) -> Result<(), PortError> {
        self.0.delete_table(&cscope(s), db, name).await.map_err(perr)
    }

    async fn add_partitions(
        &self,
        s: &Scope,
        _: &dyn Access,
        db: &str,
        table: &str,
        partitions: Vec<PartitionDef>,
    ) -> Result<usize, PortError> {
        let n = partitions.len();
        let inputs = partitions
            .into_iter()
            .map(|p| PartitionInput {
                values: p.values,
                storage_descriptor: Some(StorageDescriptor {
                    location: p.location,
                    ..StorageDescriptor::default()
                }),
                ..PartitionInput::default()
            })
            .collect();
        let errors = self
            .0
            .batch_create_partition(&cscope(s), db, table, inputs)
            .await
            .map_err(perr)?;
        if let Some((_, e)) = errors
            .iter()
            .find(|(_, e)| !matches!(e, kd_catalog::Error::AlreadyExists(_)))
        {
            return Err(PortError::Invalid(e.to_string()));
        }
        Ok(n - errors.len())
    }

    async fn drop_partitions(
        &self,
        s: &Scope,
        _: &dyn Access,
        db: &str,
        table: &str,
        values: Vec<Vec<String>>,
    ) -> Result<usize, PortError> {
        let n = values.len();
        let errors = self
            .0
            .batch_delete_partition(&cscope(s), db, table, values)
            .await
            .map_err(perr)?;
        Ok(n - errors.len())
    }
}

/// Marks a held read as abandoned when its future is dropped before the gate opened.
struct Abandon<'a> {
    counter: &'a AtomicUsize,
    armed: bool,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.counter.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// An in-memory bucket that counts GETs and can hold them until its gate opens.
#[derive(Debug)]
struct Probe {
    inner: InMemory,
    gets: AtomicUsize,
    read: Mutex<Vec<String>>,
    /// `true` while reads are held.
    gate: tokio::sync::watch::Sender<bool>,
    held: AtomicUsize,
    abandoned: AtomicUsize,
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Probe")
    }
}

impl Probe {
    fn new() -> Probe {
        Probe {
            inner: InMemory::new(),
            gets: AtomicUsize::new(0),
            read: Mutex::new(Vec::new()),
            gate: tokio::sync::watch::channel(false).0,
            held: AtomicUsize::new(0),
            abandoned: AtomicUsize::new(0),
        }
    }

    fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    fn hold(&self, on: bool) {
        self.gate.send_replace(on);
    }
}

#[async_trait]
impl ObjectStore for Probe {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        if !options.head {
            self.gets.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut r) = self.read.lock() {
                r.push(location.to_string());
            }
        }
        let mut rx = self.gate.subscribe();
        if *rx.borrow() {
            self.held.fetch_add(1, Ordering::SeqCst);
            let mut guard = Abandon {
                counter: &self.abandoned,
                armed: true,
            };
            let _ = rx.wait_for(|held| !held).await;
            guard.armed = false;
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[std::ops::Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// `ObjectsPort` over named in-memory buckets.
#[derive(Debug, Default)]
struct Buckets(Mutex<HashMap<String, Arc<Probe>>>);

impl Buckets {
    fn with(names: &[&str]) -> Arc<Buckets> {
        let b = Buckets::default();
        if let Ok(mut m) = b.0.lock() {
            for n in names {
                m.insert(n.to_string(), Arc::new(Probe::new()));
            }
        }
        Arc::new(b)
    }

    fn bucket(&self, name: &str) -> Arc<Probe> {
        match self.0.lock().ok().and_then(|m| m.get(name).cloned()) {
            Some(p) => p,
            None => panic!("no bucket {name}"),
        }
    }
}

impl ObjectsPort for Buckets {
    fn store(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, PortError> {
        match self.0.lock().ok().and_then(|m| m.get(bucket).cloned()) {
            Some(p) => Ok(p),
            None => Err(PortError::NotFound(format!(
                "The specified bucket does not exist: {bucket}"
            ))),
        }
    }
}

// ---------------------------------------------------------------------------- harness

struct Env {
    _dir: tempfile::TempDir,
    path: PathBuf,
    meta: Arc<MetaStore>,
    catalog: Arc<Catalog>,
    buckets: Arc<Buckets>,
    query: Query,
}

fn config() -> Config {
    Config {
        target_partitions: 1,
        primary_output_location: None,
    }
}

fn open_engine(path: &FsPath, buckets: Arc<Buckets>) -> Result<Opened, Box<dyn std::error::Error>> {
    open_engine_with(path, buckets, config())
}

fn open_engine_with(
    path: &FsPath,
    buckets: Arc<Buckets>,
    config: Config,
) -> Result<Opened, Box<dyn std::error::Error>> {
    let meta = Arc::new(MetaStore::open(path)?);
    let catalog = Catalog::open(meta.clone(), Arc::new(SystemClock))?;
    let query = Query::open(
        meta.clone(),
        Arc::new(SystemClock),
        Arc::new(Glue(catalog.clone())),
        buckets,
        config,
    )?;
    Ok((meta, catalog, query))
}

impl Env {
    /// Stops the engine (aborting its queries), closes the store and opens both again with
    /// `config`, as a restart of the process does.
    async fn reopen(self, config: Config) -> Result<Env, Box<dyn std::error::Error>> {
        self.query.shutdown();
        let Env {
            _dir,
            path,
            meta,
            catalog,
            buckets,
            query,
        } = self;
        drop(query);
        drop(catalog);
        poll("the engine to release the store", || Arc::strong_count(&meta) == 1).await?;
        drop(meta);
        let (meta, catalog, query) = open_engine_with(&path, buckets.clone(), config)?;
        Ok(Env {
            _dir,
            path,
            meta,
            catalog,
            buckets,
            query,
        })
    }

    fn new() -> Result<Env, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("meta.redb");
        let buckets = Buckets::with(&["lake", "results", "slow"]);
        let (meta, catalog, query) = open_engine(&path, buckets.clone())?;
        Ok(Env {
            _dir: dir,
            path,
            meta,
            catalog,
            buckets,
            query,
        })
    }

    async fn put(&self, bucket: &str, key: &str, body: impl Into<Bytes>) -> Result<u64, Box<dyn std::error::Error>> {
        let body: Bytes = body.into();
        let n = body.len() as u64;
        self.buckets
            .bucket(bucket)
            .put(&Path::from(key), PutPayload::from(body))
            .await?;
        Ok(n)
    }

    async fn object(&self, bucket: &str, key: &str) -> Result<Bytes, Box<dyn std::error::Error>> {
        Ok(self
            .buckets
            .bucket(bucket)
            .inner
            .get(&Path::from(key))
            .await?
            .bytes()
            .await?)
    }

    async fn start(&self, db: &str, sql: &str) -> Result<String, kd_query::Error> {
        self.query
            .start(
                &scope(),
                Arc::new(AllowAll),
                StartRequest {
                    query: sql.into(),
                    database: Some(db.into()),
                    output_location: Some(OUT.into()),
                    ..StartRequest::default()
                },
            )
            .await
    }

    /// Polls the execution until it ends (deadline 60 s).
    async fn wait(&self, id: &str) -> Result<Execution, Box<dyn std::error::Error>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let e = self.query.get(&scope(), id)?;
            if matches!(e.state, State::Succeeded | State::Failed | State::Cancelled) {
                return Ok(e);
            }
            if Instant::now() > deadline {
                return Err(format!("{id} still {:?} after 60 s", e.state).into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn run(&self, db: &str, sql: &str) -> Result<Execution, Box<dyn std::error::Error>> {
        let id = self.start(db, sql).await?;
        self.wait(&id).await
    }

    /// Every row of GetQueryResults (header row first for DML).
    async fn rows(&self, id: &str) -> Result<Rows, Box<dyn std::error::Error>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (_, rows, next) = self
                .query
                .results(&scope(), &AllowAll, id, token.as_deref(), 1000)
                .await?;
            out.extend(rows);
            token = next;
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Runs `sql`, which must succeed, and returns its rows.
    async fn ok(&self, db: &str, sql: &str) -> Result<Rows, Box<dyn std::error::Error>> {
        let e = self.run(db, sql).await?;
        if e.state != State::Succeeded {
            return Err(format!("{sql}: {:?} {:?}", e.state, e.reason).into());
        }
        self.rows(&e.id).await
    }

    /// Runs `sql`, which must fail, and returns the reason.
    async fn fail(&self, db: &str, sql: &str) -> Result<String, Box<dyn std::error::Error>> {
        let e = self.run(db, sql).await?;
        if e.state != State::Failed {
            return Err(format!("{sql}: expected FAILED, got {:?}", e.state).into());
        }
        assert_eq!(e.error_category, Some(2), "{sql}: a user error");
        Ok(e.reason.unwrap_or_default())
    }
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn row(v: &[&str]) -> Vec<Option<String>> {
    v.iter().map(|x| s(x)).collect()
}

fn lines(v: &[&str]) -> Rows {
    v.iter().map(|x| vec![s(x)]).collect()
}

fn gzip(b: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b)?;
    e.finish()
}

async fn poll(what: &str, mut f: impl FnMut() -> bool) -> R {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------- DDL

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_runs_as_glue_calls_and_utilities_list_the_catalog() -> R {
    let env = Env::new()?;
    let e = env.run("default", "CREATE DATABASE Lake COMMENT 'the lake'").await?;
    assert_eq!((e.state, e.statement_type.as_str()), (State::Succeeded, "DDL"));
    assert!(
        e.result_file.starts_with(OUT) && e.result_file.ends_with(".txt"),
        "{}",
        e.result_file
    );
    assert!(!e.has_header);
    assert_eq!(env.rows(&e.id).await?, Rows::new());
    let d = env.catalog.get_database(&cscope(&scope()), "lake")?;
    assert_eq!(d.input.description.as_deref(), Some("the lake"));
    env.ok("default", "CREATE DATABASE IF NOT EXISTS lake").await?;
    assert_eq!(
        env.fail("default", "CREATE DATABASE lake").await?,
        "FAILED: Execution Error, return code 1 from org.apache.hadoop.hive.ql.exec.DDLTask. Database lake already exists"
    );
    env.ok("default", "CREATE SCHEMA other").await?;

    env.ok(
        "lake",
        "CREATE EXTERNAL TABLE Events (id bigint COMMENT 'the id', body string)
         PARTITIONED BY (dt string)
         ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' WITH SERDEPROPERTIES ('ignore.malformed.json'='true')
         LOCATION 's3://lake/events/'
         TBLPROPERTIES ('projection.enabled'='false')",
    )
    .await?;
    // The table is a Glue table.
    let t = env.catalog.get_table(&cscope(&scope()), "lake", "events")?;
    assert_eq!(t.input.name, "events");
    assert_eq!(t.input.table_type.as_deref(), Some("EXTERNAL_TABLE"));
    assert_eq!(t.input.parameter("EXTERNAL"), Some("TRUE"));
    assert_eq!(t.input.parameter("classification"), Some("json"));
    assert_eq!(t.input.parameter("projection.enabled"), Some("false"));
    let cols: Vec<(String, String)> = t
        .input
        .columns()
        .iter()
        .map(|c| (c.name.clone(), c.type_name().to_string()))
        .collect();
    assert_eq!(
        cols,
        vec![("id".into(), "bigint".into()), ("body".into(), "string".into())]
    );
    assert_eq!(t.input.partition_keys()[0].name, "dt");
    let sd = t.input.storage_descriptor.clone().unwrap_or_default();
    assert_eq!(sd.location.as_deref(), Some("s3://lake/events/"));
    let serde = sd.serde_info.unwrap_or_default();
    assert_eq!(
        serde.serialization_library.as_deref(),
        Some("org.openx.data.jsonserde.JsonSerDe")
    );
    assert_eq!(
        serde
            .parameters
            .unwrap_or_default()
            .get("ignore.malformed.json")
            .map(String::as_str),
        Some("true")
    );
    env.ok(
        "lake",
        "CREATE EXTERNAL TABLE IF NOT EXISTS events (x int) LOCATION 's3://lake/x/'",
    )
    .await?;
    assert!(
        env.fail("lake", "CREATE EXTERNAL TABLE events (x int) LOCATION 's3://lake/x/'")
            .await?
            .contains("AlreadyExistsException(message:Table events already exists)")
    );
    env.ok(
        "lake",
        "CREATE EXTERNAL TABLE lake.pairs (a string, b string) ROW FORMAT DELIMITED FIELDS TERMINATED BY ','
         LOCATION 's3://lake/pairs/'",
    )
    .await?;
    env.ok(
        "other",
        "CREATE EXTERNAL TABLE solo (a int) STORED AS PARQUET LOCATION 's3://lake/solo/'",
    )
    .await?;

    let e = env.run("lake", "SHOW TABLES").await?;
    assert_eq!(e.statement_type, "UTILITY");
    assert_eq!(env.rows(&e.id).await?, lines(&["events", "pairs"]));
    assert_eq!(env.ok("default", "SHOW TABLES IN other").await?, lines(&["solo"]));
    assert_eq!(env.ok("lake", "SHOW TABLES 'ev*'").await?, lines(&["events"]));
    assert_eq!(env.ok("default", "SHOW DATABASES").await?, lines(&["lake", "other"]));
    assert_eq!(env.ok("default", "SHOW SCHEMAS LIKE 'l%'").await?, lines(&["lake"]));
    assert_eq!(
        env.fail("default", "SHOW TABLES IN nowhere").await?,
        "SCHEMA_NOT_FOUND: line 1:1: Schema 'nowhere' does not exist"
    );
    assert_eq!(
        env.ok("lake", "DESCRIBE events").await?,
        lines(&[
            &format!("{:<20}\t{:<20}\tthe id", "id", "bigint"),
            &format!("{:<20}\t{:<20}\t", "body", "string"),
            "",
            "# Partition Information",
            &format!("{:<20}\t{:<20}\tcomment", "# col_name", "data_type"),
            "",
            &format!("{:<20}\t{:<20}\t", "dt", "string"),
        ])
    );
    assert_eq!(
        env.fail("lake", "DESCRIBE nope").await?,
        "TABLE_NOT_FOUND: line 1:1: Table 'awsdatacatalog.lake.nope' does not exist"
    );

    // DROP TABLE removes the Glue table.
    env.ok("lake", "DROP TABLE pairs").await?;
    assert!(matches!(
        env.catalog.get_table(&cscope(&scope()), "lake", "pairs"),
        Err(kd_catalog::Error::EntityNotFound(_))
    ));
    assert_eq!(
        env.fail("lake", "DROP TABLE pairs").await?,
        "TABLE_NOT_FOUND: line 1:1: Table 'awsdatacatalog.lake.pairs' does not exist"
    );
    env.ok("lake", "DROP TABLE IF EXISTS pairs").await?;
    // DROP DATABASE: refused while tables exist, unless CASCADE.
    assert!(
        env.fail("default", "DROP DATABASE other")
            .await?
            .contains("Database other is not empty. One or more tables exist.")
    );
    env.ok("default", "DROP DATABASE other CASCADE").await?;
    env.ok("default", "DROP DATABASE IF EXISTS other").await?;
    assert_eq!(env.ok("default", "SHOW DATABASES").await?, lines(&["lake"]));
    assert!(
        env.fail("lake", "CREATE EXTERNAL TABLE bad (a wat) LOCATION 's3://lake/bad/'")
            .await?
            .starts_with("INVALID_TABLE_PROPERTY: column a:")
    );
    assert!(
        env.fail("lake", "CREATE TABLE copy AS SELECT 1")
            .await?
            .starts_with("NOT_SUPPORTED: CREATE TABLE AS SELECT")
    );
    Ok(())
}

// ---------------------------------------------------------------------------- formats

const PEOPLE: &str = "CREATE EXTERNAL TABLE people (id bigint, name string, user_id string, tags array<string>)
     ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
     WITH SERDEPROPERTIES ('ignore.malformed.json'='true', 'mapping.user_id'='UID')
     LOCATION 's3://lake/people/'";

/// Puts the `people` objects; returns the bytes of the two data objects.
async fn people(env: &Env) -> Result<u64, Box<dyn std::error::Error>> {
    let gz = gzip(
        b"{\"id\":1,\"Name\":\"ann\",\"UID\":\"u1\",\"tags\":[\"a\",\"b\"]}\n\
          {\"id\":2,\"name\":\"bob \\\"the\\\" builder, jr\",\"uid\":\"u2\",\"tags\":[]}\n\
          not json\n",
    )?;
    let a = env.put("lake", "people/2024/part-1.json.gz", gz).await?;
    let b = env
        .put(
            "lake",
            "people/2025/01/part-2.json",
            &b"{\"id\":3,\"name\":null,\"UID\":\"u3\",\"tags\":[\"c\"]}\n"[..],
        )
        .await?;
    env.put("lake", "people/_SUCCESS", &b"ignored"[..]).await?;
    env.put("lake", "people/2025/.hidden", &b"{\"id\":99}\n"[..]).await?;
    env.ok("default", "CREATE DATABASE lake").await?;
    env.ok("lake", PEOPLE).await?;
    Ok(a + b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_tables_read_gzip_and_plain_objects_in_subfolders() -> R {
    let env = Env::new()?;
    let data_bytes = people(&env).await?;
    let e = env
        .run(
            "lake",
            "SELECT id, name, user_id, cardinality(tags) AS n FROM people ORDER BY id",
        )
        .await?;
    assert_eq!(e.state, State::Succeeded, "{:?}", e.reason);
    assert_eq!(e.statement_type, "DML");
    assert_eq!(e.rows, 4);
    assert_eq!(e.scanned_bytes, data_bytes, "both data objects, nothing else");
    assert_eq!(
        e.columns.iter().map(|c| c.type_name.as_str()).collect::<Vec<_>>(),
        vec!["bigint", "varchar", "varchar", "bigint"]
    );
    assert_eq!(
        env.rows(&e.id).await?,
        vec![
            row(&["id", "name", "user_id", "n"]),
            row(&["1", "ann", "u1", "2"]),
            row(&["2", "bob \"the\" builder, jr", "u2", "0"]),
            vec![s("3"), None, s("u3"), s("1")],
            vec![None, None, None, None],
        ],
        "keys are case-insensitive, mapping.user_id reads UID, the malformed line is a row of NULLs"
    );
    // The result file as Athena writes it.
    let key = e.result_file.trim_start_matches("s3://results/");
    assert_eq!(key, format!("athena/{}.csv", e.id));
    assert_eq!(
        std::str::from_utf8(&env.object("results", key).await?)?,
        "\"id\",\"name\",\"user_id\",\"n\"\n\
         \"1\",\"ann\",\"u1\",\"2\"\n\
         \"2\",\"bob \"\"the\"\" builder, jr\",\"u2\",\"0\"\n\
         \"3\",,\"u3\",\"1\"\n\
         ,,,\n"
    );
    let meta: serde_json::Value = serde_json::from_slice(&env.object("results", &format!("{key}.metadata")).await?)?;
    assert_eq!(meta["QueryExecutionId"], e.id.as_str());
    assert_eq!(meta["ColumnInfo"][1]["Name"], "name");
    assert_eq!(meta["ColumnInfo"][1]["Type"], "varchar");
    assert_eq!(meta["ColumnInfo"][0]["Type"], "bigint");

    // "$path": the object of each row.
    assert_eq!(
        env.ok(
            "lake",
            "SELECT id, \"$path\" FROM people WHERE id IS NOT NULL ORDER BY id"
        )
        .await?,
        vec![
            row(&["id", "$path"]),
            row(&["1", "s3://lake/people/2024/part-1.json.gz"]),
            row(&["2", "s3://lake/people/2024/part-1.json.gz"]),
            row(&["3", "s3://lake/people/2025/01/part-2.json"]),
        ]
    );
    assert_eq!(
        env.ok("lake", "SELECT count(*) AS c, count(id) AS i FROM people")
            .await?[1],
        row(&["4", "3"])
    );
    // Without ignore.malformed.json the bad line fails the query.
    env.ok(
        "lake",
        "CREATE EXTERNAL TABLE strict (id bigint) ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
         LOCATION 's3://lake/people/'",
    )
    .await?;
    let reason = env.fail("lake", "SELECT sum(id) FROM strict").await?;
    assert!(
        reason.starts_with("HIVE_BAD_DATA: Row is not a valid JSON Object"),
        "{reason}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delimited_opencsv_and_parquet_tables() -> R {
    let env = Env::new()?;
    env.ok("default", "CREATE DATABASE lake").await?;
    // LazySimpleSerDe: a field delimiter, \N for NULL, a header line skipped per object.
    env.put("lake", "sales/a.txt", &b"id|item|price\n1|apple|1.5\n2|\\N|2.25\n"[..])
        .await?;
    env.put("lake", "sales/more/b.txt.gz", gzip(b"id|item|price\n3|pear|0.75\n")?)
        .await?;
    env.ok(
        "lake",
        "CREATE EXTERNAL TABLE sales (id int, item string, price double)
         ROW FORMAT DELIMITED FIELDS TERMINATED BY '|'
         LOCATION 's3://lake/sales/' TBLPROPERTIES ('skip.header.line.count'='1')",
    )
    .await?;
    assert_eq!(
        env.ok("lake", "SELECT id, item, price FROM sales ORDER BY id").await?,
        vec![
            row(&["id", "item", "price"]),
            row(&["1", "apple", "1.5"]),
            vec![s("2"), None, s("2.25")],
            row(&["3", "pear", "0.75"]),
        ]
    );
    // LazySimpleSerDe by name, tab-delimited through SERDEPROPERTIES.
    env.put("lake", "tsv/t.tsv", &b"x\t10\ny\t20\n"[..]).await?;
    env.ok(
        "lake",
        "CREATE EXTERNAL TABLE tsv (k string, v int)
         ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe'
         WITH SERDEPROPERTIES ('field.delim'='\\t')
         LOCATION 's3://lake/tsv/'",
    )
    .await?;
    assert_eq!(
        env.ok("lake", "SELECT sum(v) AS s, max(k) AS k FROM tsv").await?,
        vec![row(&["s", "k"]), row(&["30", "y"])]
    );
    // OpenCSVSerde: quoted fields with the separator inside.
    env.put(
        "lake",
        "cities/c.csv",
        &b"city,pop\n\"Paris, FR\",2100000\nOslo,700000\n"[..],
    )
    .await?;
    env.put("lake", "cities/eu/d.csv", &b"city,pop\n\"Rome\",2800000\n"[..])
        .await?;
    env.ok(
        "lake",
        "CREATE EXTERNAL TABLE cities (city string, pop bigint)
         ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.OpenCSVSerde'
         LOCATION 's3://lake/cities/' TBLPROPERTIES ('skip.header.line.count'='1')",
    )
    .await?;
    assert_eq!(
        env.ok("lake", "SELECT city, pop FROM cities ORDER BY pop DESC").await?,
        vec![
            row(&["city", "pop"]),
            row(&["Rome", "2800000"]),
            row(&["Paris, FR", "2100000"]),
            row(&["Oslo", "700000"]),
        ]
    );

    // Parquet.
    use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from((0..100).collect::<Vec<i64>>())),
            Arc::new(StringArray::from((0..100).map(|i| format!("n{i}")).collect::<Vec<_>>())),
            Arc::new(Float64Array::from((0..100).map(|i| i as f64 / 2.0).collect::<Vec<_>>())),
        ],
    )?;
    let mut buf = Vec::new();
    let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None)?;
    w.write(&batch)?;
    w.close()?;
    let size = env.put("lake", "pq/part-0.parquet", buf).await?;
    env.ok(
        "lake",
        "CREATE EXTERNAL TABLE pq (id bigint, name string, amount double) STORED AS PARQUET LOCATION 's3://lake/pq/'",
    )
    .await?;
    let t = env.catalog.get_table(&cscope(&scope()), "lake", "pq")?;
    assert_eq!(t.input.parameter("classification"), Some("parquet"));
    let e = env
        .run(
            "lake",
            "SELECT count(*) AS c, sum(id) AS s, max(name) AS m, sum(amount) AS a FROM pq",
        )
        .await?;
    assert_eq!(e.state, State::Succeeded, "{:?}", e.reason);
    assert_eq!(
        env.rows(&e.id).await?,
        vec![row(&["c", "s", "m", "a"]), row(&["100", "4950", "n99", "2475.0"])]
    );
    assert!(
        e.scanned_bytes > 0 && e.scanned_bytes <= size,
        "{} of {size}",
        e.scanned_bytes
    );
    assert_eq!(
        env.ok("lake", "SELECT name, amount FROM pq WHERE id = 42").await?,
        vec![row(&["name", "amount"]), row(&["n42", "21.0"])]
    );

    // The footer is cached now: a count reads no column data, and is charged the footer
    // bytes (so DataScannedInBytes still names the objects a query touched).
    let counted = env.run("lake", "SELECT count(*) FROM pq").await?;
    assert_eq!(env.rows(&counted.id).await?[1], row(&["100"]));
    assert!(
        counted.scanned_bytes > 0 && counted.scanned_bytes < size / 2,
        "{} of {size}",
        counted.scanned_bytes
    );
    // EXPLAIN is a UTILITY statement answered in plain lines, as Athena does.
    let explained = env.run("lake", "EXPLAIN SELECT count(*) FROM pq").await?;
    assert_eq!(explained.state, State::Succeeded, "{:?}", explained.reason);
    assert_eq!(explained.statement_type, "UTILITY");
    let columns: Vec<String> = explained.columns.iter().map(|c| c.name.clone()).collect();
    assert_eq!(columns, ["Query Plan"]);
    let lines = env.rows(&explained.id).await?;
    for heading in ["logical_plan:", "physical_plan:"] {
        assert!(lines.contains(&row(&[heading])), "{lines:?}");
    }
    assert!(lines.iter().flatten().flatten().all(|l| !l.contains('"')), "{lines:?}");
    assert!(
        lines.iter().flatten().flatten().any(|l| l.contains("DataSourceExec")),
        "{lines:?}"
    );
    // A filter on a string and a number: the scan evaluates the number first
    // (`filter_order`), and the answer is the same.
    let sql = "SELECT count(*), sum(amount) FROM pq WHERE name = 'n42' AND amount > 1";
    let explained = env.run("lake", &format!("EXPLAIN {sql}")).await?;
    let plan: Vec<String> = env.rows(&explained.id).await?.into_iter().flatten().flatten().collect();
    assert!(
        plan.iter()
            .any(|l| l.contains("predicate=amount@") && l.contains("> 1 AND name@")),
        "{plan:?}"
    );
    assert_eq!(env.ok("lake", sql).await?[1], row(&["1", "21.0"]));
    // Overwriting the object (another size) is seen at once: the cached footer no longer
    // matches it.
    let batch = RecordBatch::try_new(
        batch.schema(),
        vec![
            Arc::new(Int64Array::from((0..300).collect::<Vec<i64>>())),
            Arc::new(StringArray::from((0..300).map(|i| format!("m{i}")).collect::<Vec<_>>())),
            Arc::new(Float64Array::from((0..300).map(f64::from).collect::<Vec<_>>())),
        ],
    )?;
    let mut buf = Vec::new();
    let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None)?;
    w.write(&batch)?;
    w.close()?;
    env.put("lake", "pq/part-0.parquet", buf).await?;
    assert_eq!(
        env.ok("lake", "SELECT count(*) AS c, max(id) AS m FROM pq").await?,
        vec![row(&["c", "m"]), row(&["300", "299"])]
    );
    Ok(())
}

// ---------------------------------------------------------------------------- partitions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_projection_prunes_before_reading() -> R {
    let env = Env::new()?;
    env.ok("default", "CREATE DATABASE lake").await?;
    // date projection over a Firehose-like layout.
    let mut day = HashMap::new();
    for (d, n) in [("01", 1), ("02", 2), ("03", 3)] {
        let body: String = (0..n).map(|i| format!("{{\"v\":{i}}}\n")).collect();
        day.insert(d, env.put("lake", &format!("fh/2024/01/{d}/data.json"), body).await?);
    }
    env.ok(
        "lake",
        "CREATE EXTERNAL TABLE fh (v int) PARTITIONED BY (dt string)
         ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' LOCATION 's3://lake/fh/'
         TBLPROPERTIES ('projection.enabled'='true', 'projection.dt.type'='date',
           'projection.dt.format'='yyyy/MM/dd', 'projection.dt.range'='2024/01/01,2024/01/05',
           'projection.dt.interval'='1', 'projection.dt.interval.unit'='DAYS',
           'storage.location.template'='s3://lake/fh/${dt}/')",
    )
    .await?;
    let e = env.run("lake", "SELECT count(*) FROM fh").await?;
    assert_eq!(env.rows(&e.id).await?[1], row(&["6"]));
    assert_eq!(e.scanned_bytes, day["01"] + day["02"] + day["03"]);
    let e = env
        .run("lake", "SELECT count(*) FROM fh WHERE dt >= '2024/01/02'")
        .await?;
    assert_eq!(env.rows(&e.id).await?[1], row(&["5"]));
    assert_eq!(e.scanned_bytes, day["02"] + day["03"], "01 is pruned before reading");
    let e = env
        .run(
            "lake",
            "SELECT dt, count(*) AS c FROM fh WHERE dt = '2024/01/02' GROUP BY dt",
        )
        .await?;
    assert_eq!(
        env.rows(&e.id).await?,
        vec![row(&["dt", "c"]), row(&["2024/01/02", "2"])]
    );
    assert_eq!(e.scanned_bytes, day["02"]);
    let e = env
        .run("lake", "SELECT count(*) FROM fh WHERE dt = '2024/02/01'")
        .await?;
    assert_eq!(env.rows(&e.id).await?[1], row(&["0"]), "outside the projected range");
    assert_eq!(e.scanned_bytes, 0);

    // enum × integer projection, default locations `<location>/k=v/`.
    let a = env
        .put("lake", "en/region=eu/shard=00/a.json", &b"{\"v\":1}\n"[..])
        .await?;
    let b = env
        .put("lake", "en/region=eu/shard=01/a.json", &b"{\"v\":2}\n{\"v\":3}\n"[..])
        .await?;
    let c = env
        .put("lake", "en/region=us/shard=03/a.json", &b"{\"v\":4}\n"[..])
        .await?;
    env.put("lake", "en/region=ap/shard=00/a.json", &b"{\"v\":100}\n"[..])
        .await?;
    env.ok(
        "lake",
        "CREATE EXTERNAL TABLE en (v int) PARTITIONED BY (region string, shard int)
         ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' LOCATION 's3://lake/en/'
         TBLPROPERTIES ('projection.enabled'='true',
           'projection.region.type'='enum', 'projection.region.values'='eu,us',
           'projection.shard.type'='integer', 'projection.shard.range'='0,3', 'projection.shard.digits'='2')",
    )
    .await?;
    let e = env
        .run(
            "lake",
            "SELECT region, shard, sum(v) AS s FROM en GROUP BY region, shard ORDER BY region, shard",
        )
        .await?;
    assert_eq!(
        env.rows(&e.id).await?,
        vec![
            row(&["region", "shard", "s"]),
            row(&["eu", "0", "1"]),
            row(&["eu", "1", "5"]),
            row(&["us", "3", "4"]),
        ],
        "region ap is not in the enum"
    );
    assert_eq!(e.scanned_bytes, a + b + c);
    let e = env
        .run("lake", "SELECT sum(v) FROM en WHERE region = 'eu' AND shard = 1")
        .await?;
    assert_eq!(env.rows(&e.id).await?[1], row(&["5"]));
    assert_eq!(e.scanned_bytes, b);
    let e = env.run("lake", "SELECT sum(v) FROM en WHERE shard IN (0, 3)").await?;
    assert_eq!(env.rows(&e.id).await?[1], row(&["5"]));
    assert_eq!(e.scanned_bytes, a + c);

    // injected projection: the WHERE clause names the values.
    let acme = env.put("lake", "inj/acme/x.json", &b"{\"v\":7}\n"[..]).await?;
    let globex = env
        .put("lake", "inj/globex/x.json", &b"{\"v\":8}\n{\"v\":9}\n"[..])
        .await?;
    env.ok(
        "lake",
        "CREATE EXTERNAL TABLE inj (v int) PARTITIONED BY (tenant string)
         ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' LOCATION 's3://lake/inj/'
         TBLPROPERTIES ('projection.enabled'='true', 'projection.tenant.type'='injected',
           'storage.location.template'='s3://lake/inj/${tenant}/')",
    )
    .await?;
    let e = env
        .run(
            "lake",
            "SELECT tenant, sum(v) AS s FROM inj WHERE tenant = 'acme' GROUP BY tenant",
        )
        .await?;
    assert_eq!(env.rows(&e.id).await?, vec![row(&["tenant", "s"]), row(&["acme", "7"])]);
    assert_eq!(e.scanned_bytes, acme);
    let e = env
        .run("lake", "SELECT sum(v) FROM inj WHERE tenant = 'globex'")
        .await?;
    assert_eq!(env.rows(&e.id).await?[1], row(&["17"]));
    assert_eq!(e.scanned_bytes, globex);
    let reason = env.fail("lake", "SELECT count(*) FROM inj").await?;
    assert!(
        reason.starts_with("CONSTRAINT_VIOLATION: For the injected projected partition column tenant"),
        "{reason}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glue_partitions_msck_repair_and_alter_table() -> R {
    let env = Env::new()?;
    env.ok("default", "CREATE DATABASE lake").await?;
    let mut size = HashMap::new();
    for (y, m, n) in [("2024", "01", 3), ("2024", "02", 2), ("2025", "01", 1)] {
        let body: String = (0..n).map(|i| format!("{{\"v\":{i}}}\n")).collect();
        size.insert(
            (y, m),
            env.put("lake", &format!("hive/year={y}/month={m}/data.json"), body)
                .await?,
        );
    }
    env.put("lake", "hive/notapartition/x.json", &b"{\"v\":50}\n"[..])
        .await?;
    env.put("lake", "hive/year=2026/x.json", &b"{\"v\":60}\n"[..]).await?;
    env.ok(
        "lake",
        "CREATE EXTERNAL TABLE hive (v int) PARTITIONED BY (year int, month string)
         ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' LOCATION 's3://lake/hive/'",
    )
    .await?;
    assert_eq!(
        env.ok("lake", "SELECT count(*) FROM hive").await?[1],
        row(&["0"]),
        "no partitions yet"
    );
    assert_eq!(
        env.ok("lake", "MSCK REPAIR TABLE hive").await?,
        lines(&[
            "Partitions not in metastore:\thive:year=2024/month=01\thive:year=2024/month=02\thive:year=2025/month=01",
            "Repair: Added partition to metastore hive:year=2024/month=01",
            "Repair: Added partition to metastore hive:year=2024/month=02",
            "Repair: Added partition to metastore hive:year=2025/month=01",
        ])
    );
    let p = env
        .catalog
        .get_partition(&cscope(&scope()), "lake", "hive", &["2024".into(), "02".into()])?;
    assert_eq!(p.location(), Some("s3://lake/hive/year=2024/month=02/"));
    assert_eq!(
        env.ok("lake", "MSCK REPAIR TABLE hive").await?,
        Rows::new(),
        "nothing new"
    );
    assert_eq!(
        env.ok("lake", "SHOW PARTITIONS hive").await?,
        lines(&["year=2024/month=01", "year=2024/month=02", "year=2025/month=01"])
    );
    let e = env
        .run("lake", "SELECT count(*) FROM hive WHERE year = 2024 AND month = '02'")
        .await?;
    assert_eq!(env.rows(&e.id).await?[1], row(&["2"]));
    assert_eq!(e.scanned_bytes, size[&("2024", "02")], "one partition read");
    let e = env.run("lake", "SELECT count(*) FROM hive WHERE year > 2024").await?;
    assert_eq!(env.rows(&e.id).await?[1], row(&["1"]));
    assert_eq!(e.scanned_bytes, size[&("2025", "01")]);

    // ALTER TABLE … DROP / ADD PARTITION.
    env.ok("lake", "ALTER TABLE hive DROP PARTITION (year=2025, month='01')")
        .await?;
    assert_eq!(
        env.fail("lake", "ALTER TABLE hive DROP PARTITION (year=2025, month='01')")
            .await?,
        "FAILED: SemanticException [Error 10006]: Partition not found"
    );
    env.ok(
        "lake",
        "ALTER TABLE hive DROP IF EXISTS PARTITION (year=2025, month='01')",
    )
    .await?;
    env.put(
        "lake",
        "elsewhere/e.json",
        &b"{\"v\":1}\n{\"v\":1}\n{\"v\":1}\n{\"v\":1}\n"[..],
    )
    .await?;
    env.ok(
        "lake",
        "ALTER TABLE hive ADD PARTITION (year=2030, month='12') LOCATION 's3://lake/elsewhere/'
         PARTITION (year=2031, month='01')",
    )
    .await?;
    env.ok(
        "lake",
        "ALTER TABLE hive ADD IF NOT EXISTS PARTITION (year=2030, month='12')",
    )
    .await?;
    let p = env
        .catalog
        .get_partition(&cscope(&scope()), "lake", "hive", &["2031".into(), "01".into()])?;
    assert_eq!(p.location(), Some("s3://lake/hive/year=2031/month=01/"));
    assert_eq!(
        env.ok(
            "lake",
            "SELECT year, month, count(*) AS c FROM hive GROUP BY year, month ORDER BY year, month"
        )
        .await?,
        vec![
            row(&["year", "month", "c"]),
            row(&["2024", "01", "3"]),
            row(&["2024", "02", "2"]),
            row(&["2030", "12", "4"]),
        ]
    );
    assert_eq!(
        env.fail("lake", "ALTER TABLE hive ADD PARTITION (year=2032)").await?,
        "FAILED: SemanticException partition spec is missing partition column month"
    );
    // A partition made through the Glue API is the same catalog.
    env.catalog
        .create_partition(
            &cscope(&scope()),
            "lake",
            "hive",
            PartitionInput {
                values: vec!["2025".into(), "01".into()],
                storage_descriptor: Some(StorageDescriptor {
                    location: Some("s3://lake/hive/year=2025/month=01/".into()),
                    ..StorageDescriptor::default()
                }),
                ..PartitionInput::default()
            },
        )
        .await?;
    assert_eq!(
        env.ok("lake", "SELECT count(*) FROM hive WHERE year = 2025").await?[1],
        row(&["1"])
    );
    assert_eq!(
        env.ok("lake", "SHOW PARTITIONS hive").await?,
        lines(&[
            "year=2024/month=01",
            "year=2024/month=02",
            "year=2025/month=01",
            "year=2030/month=12",
            "year=2031/month=01"
        ])
    );
    Ok(())
}

// ---------------------------------------------------------------------------- results, errors

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_quoted_paged_and_typed_as_athena_writes_them() -> R {
    let env = Env::new()?;
    let e = env
        .run(
            "default",
            "SELECT * FROM (VALUES (1, 'a,b', CAST(NULL AS varchar)), (2, 'say \"hi\"', '')) AS t(n, s, e) ORDER BY n",
        )
        .await?;
    assert_eq!(e.state, State::Succeeded, "{:?}", e.reason);
    let key = format!("athena/{}.csv", e.id);
    assert_eq!(
        std::str::from_utf8(&env.object("results", &key).await?)?,
        "\"n\",\"s\",\"e\"\n\"1\",\"a,b\",\n\"2\",\"say \"\"hi\"\"\",\"\"\n"
    );
    assert_eq!(
        env.rows(&e.id).await?,
        vec![
            row(&["n", "s", "e"]),
            vec![s("1"), s("a,b"), None],
            vec![s("2"), s("say \"hi\""), s("")],
        ],
        "NULL is absent, the empty string is a value"
    );
    let e = env
        .run(
            "default",
            "SELECT TIMESTAMP '2024-01-02 03:04:05' AS ts, DATE '2024-01-02' AS d, true AS b, 1.5 AS x, CAST(7 AS integer) AS i",
        )
        .await?;
    assert_eq!(
        env.rows(&e.id).await?[1],
        row(&["2024-01-02 03:04:05.000", "2024-01-02", "true", "1.5", "7"])
    );
    assert_eq!(
        e.columns.iter().map(|c| c.type_name.as_str()).collect::<Vec<_>>(),
        vec!["timestamp", "date", "boolean", "double", "integer"]
    );

    // Paging: the header row only on the first page, tokens until the end.
    let e = env
        .run(
            "default",
            "SELECT * FROM (VALUES (1), (2), (3), (4), (5)) AS t(x) ORDER BY x",
        )
        .await?;
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let (_, rows, next) = env
            .query
            .results(&scope(), &AllowAll, &e.id, token.as_deref(), 2)
            .await?;
        pages.push(rows);
        token = next;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(
        pages,
        vec![
            vec![row(&["x"]), row(&["1"])],
            vec![row(&["2"]), row(&["3"])],
            vec![row(&["4"]), row(&["5"])],
        ]
    );
    match env.query.results(&scope(), &AllowAll, &e.id, Some("bogus"), 2).await {
        Err(kd_query::Error::InvalidRequest(m)) => assert_eq!(m, "The NextToken is not valid."),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    let failed = env.run("default", "SELEKT 1").await?;
    match env.query.results(&scope(), &AllowAll, &failed.id, None, 10).await {
        Err(kd_query::Error::InvalidRequest(m)) => assert_eq!(Some(m), failed.reason),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    match env.query.get(&scope(), "nope") {
        Err(kd_query::Error::InvalidRequest(m)) => assert_eq!(m, "QueryExecution nope was not found"),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    let other = Scope {
        region: "eu-west-1".into(),
        ..scope()
    };
    assert!(env.query.get(&other, &e.id).is_err(), "executions are per region");
    let listed = env.query.list(&scope(), None)?;
    assert_eq!(listed.len(), 4);
    assert!(listed.contains(&e.id) && listed.contains(&failed.id));

    // Requests refused before running.
    for (req, msg) in [
        (
            StartRequest {
                query: "SELECT 1".into(),
                ..StartRequest::default()
            },
            "No output location provided. An output location is required either through the Workgroup result configuration setting or as an API input.",
        ),
        (
            StartRequest {
                query: "SELECT 1".into(),
                output_location: Some(OUT.into()),
                workgroup: Some("analysts".into()),
                ..StartRequest::default()
            },
            "WorkGroup analysts is not found.",
        ),
        (
            StartRequest {
                query: "SELECT 1".into(),
                output_location: Some(OUT.into()),
                catalog: Some("hive".into()),
                ..StartRequest::default()
            },
            "Catalog hive is not found.",
        ),
    ] {
        match env.query.start(&scope(), Arc::new(AllowAll), req).await {
            Err(kd_query::Error::InvalidRequest(m)) => assert_eq!(m, msg),
            other => panic!("expected InvalidRequest {msg}, got {other:?}"),
        }
    }
    // Idempotency by ClientRequestToken.
    let req = |q: &str| StartRequest {
        query: q.into(),
        output_location: Some(OUT.into()),
        token: Some("0123456789abcdef0123456789abcdef".into()),
        ..StartRequest::default()
    };
    let first = env.query.start(&scope(), Arc::new(AllowAll), req("SELECT 1")).await?;
    let again = env.query.start(&scope(), Arc::new(AllowAll), req("SELECT 1")).await?;
    assert_eq!(first, again);
    match env.query.start(&scope(), Arc::new(AllowAll), req("SELECT 2")).await {
        Err(kd_query::Error::InvalidRequest(m)) => assert!(m.starts_with("Idempotent parameters do not match"), "{m}"),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    assert_eq!(env.wait(&first).await?.state, State::Succeeded);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_athena_categories() -> R {
    let env = Env::new()?;
    people(&env).await?;
    let reason = env.fail("lake", "SELEKT 1").await?;
    assert!(reason.starts_with("SYNTAX_ERROR: line 1:1: "), "{reason}");
    assert_eq!(
        env.fail("lake", "SELECT nope FROM people").await?,
        "COLUMN_NOT_FOUND: line 1:8: Column 'nope' cannot be resolved or requester is not authorized to access requested resources"
    );
    let reason = env.fail("lake", "SELECT *\nFROM missing_table").await?;
    assert!(
        reason.starts_with("TABLE_NOT_FOUND: line 2:6: Table '") && reason.ends_with("missing_table' does not exist"),
        "{reason}"
    );
    let reason = env.fail("lake", "SELECT no_such_function(1)").await?;
    assert!(reason.starts_with("FUNCTION_NOT_FOUND: "), "{reason}");
    // A user error is category 2 (checked by `fail`), with its start and end recorded.
    let e = env.run("lake", "SELECT nope FROM people").await?;
    assert_eq!((e.state, e.error_category), (State::Failed, Some(2)));
    assert!(e.completed_ms.is_some() && e.started_ms.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_parameters_bind_the_placeholders() -> R {
    let env = Env::new()?;
    people(&env).await?;
    let id = env
        .query
        .start(
            &scope(),
            Arc::new(AllowAll),
            StartRequest {
                query: "SELECT id, '?' AS q FROM people WHERE name = ? OR id = ? ORDER BY id".into(),
                database: Some("lake".into()),
                output_location: Some(OUT.into()),
                parameters: vec!["'bob \"the\" builder, jr'".into(), "3".into()],
                ..StartRequest::default()
            },
        )
        .await?;
    let e = env.wait(&id).await?;
    assert_eq!(e.state, State::Succeeded, "{:?}", e.reason);
    assert_eq!(
        e.query,
        "SELECT id, '?' AS q FROM people WHERE name = ? OR id = ? ORDER BY id"
    );
    assert_eq!(e.parameters.len(), 2);
    assert_eq!(
        env.rows(&id).await?,
        vec![row(&["id", "q"]), row(&["2", "?"]), row(&["3", "?"])]
    );
    let req = |q: &str, p: Vec<String>| StartRequest {
        query: q.into(),
        output_location: Some(OUT.into()),
        parameters: p,
        ..StartRequest::default()
    };
    let sc = scope();
    let start = |r: StartRequest| env.query.start(&sc, Arc::new(AllowAll), r);
    match start(req("SELECT ?, ?", vec!["1".into()])).await {
        Err(kd_query::Error::InvalidRequest(m)) => {
            assert_eq!(
                m,
                "Query has 2 placeholder(s) but only 1 ExecutionParameters were given"
            )
        }
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    match start(req("SELECT 1", vec!["1".into()])).await {
        Err(kd_query::Error::InvalidRequest(m)) => {
            assert_eq!(m, "1 ExecutionParameters were given but the query has 0 placeholder(s)")
        }
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------- stop, restart

/// A table over 20 objects in the `slow` bucket, whose reads can be held.
async fn slow_table(env: &Env) -> R {
    for i in 0..20 {
        env.put("slow", &format!("t/part-{i:02}.json"), format!("{{\"v\":{i}}}\n"))
            .await?;
    }
    env.ok("default", "CREATE DATABASE IF NOT EXISTS lake").await?;
    env.ok(
        "lake",
        "CREATE EXTERNAL TABLE slow (v int) ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
         LOCATION 's3://slow/t/'",
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_query_execution_cancels_and_stops_reading() -> R {
    let env = Env::new()?;
    slow_table(&env).await?;
    let slow = env.buckets.bucket("slow");
    // Unheld, the query reads all 20 objects.
    assert_eq!(env.ok("lake", "SELECT sum(v) FROM slow").await?[1], row(&["190"]));
    assert_eq!(slow.gets(), 20);

    slow.hold(true);
    let before = slow.gets();
    let id = env.start("lake", "SELECT sum(v) FROM slow").await?;
    poll("the first held read", || slow.held.load(Ordering::SeqCst) >= 1).await?;
    assert_eq!(env.query.get(&scope(), &id)?.state, State::Running);
    match env.query.results(&scope(), &AllowAll, &id, None, 10).await {
        Err(kd_query::Error::InvalidRequest(m)) => {
            assert_eq!(m, "Query has not yet finished. Current state: RUNNING")
        }
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    env.query.stop(&scope(), &id).await?;
    let e = env.query.get(&scope(), &id)?;
    assert_eq!(e.state, State::Cancelled);
    assert_eq!(e.reason.as_deref(), Some("Query cancelled by user"));
    assert!(e.completed_ms.is_some());
    // The held reads are dropped with the aborted task ...
    poll("the held reads to be abandoned", || {
        slow.abandoned.load(Ordering::SeqCst) == slow.held.load(Ordering::SeqCst)
    })
    .await?;
    slow.hold(false);
    let started = slow.gets() - before;
    assert!(
        (1..=2).contains(&started),
        "only the reads in flight were started ({started}), not the 20 objects"
    );
    // ... and nothing reads afterwards: another query runs to completion meanwhile.
    env.put("lake", "other/o.json", &b"{\"v\":1}\n"[..]).await?;
    env.ok(
        "lake",
        "CREATE EXTERNAL TABLE other (v int) ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
         LOCATION 's3://lake/other/'",
    )
    .await?;
    assert_eq!(env.ok("lake", "SELECT sum(v) FROM other").await?[1], row(&["1"]));
    assert_eq!(
        slow.gets() - before,
        started,
        "no object of the cancelled query read after the stop"
    );
    assert_eq!(env.query.get(&scope(), &id)?.state, State::Cancelled, "stays cancelled");
    assert!(
        env.object("results", &format!("athena/{id}.csv")).await.is_err(),
        "no result file"
    );
    // Stopping a finished query changes nothing.
    env.query.stop(&scope(), &id).await?;
    assert_eq!(env.query.get(&scope(), &id)?.state, State::Cancelled);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_interrupted_by_a_restart_is_failed_after_reopening() -> R {
    let env = Env::new()?;
    slow_table(&env).await?;
    let done = env.run("lake", "SELECT count(*) AS c FROM slow").await?;
    assert_eq!(done.state, State::Succeeded);
    let slow = env.buckets.bucket("slow");
    slow.hold(true);
    let cancelled = env.start("lake", "SELECT v FROM slow").await?;
    poll("a held read", || slow.held.load(Ordering::SeqCst) >= 1).await?;
    env.query.stop(&scope(), &cancelled).await?;
    let running = env.start("lake", "SELECT sum(v) FROM slow").await?;
    poll("the second query's held read", || slow.held.load(Ordering::SeqCst) >= 2).await?;
    assert_eq!(env.query.get(&scope(), &running)?.state, State::Running);

    // Stop the process: abort the queries (the held read is released only after), close
    // the store and open it again.
    env.query.shutdown();
    slow.hold(false);
    let env = env.reopen(config()).await?;

    let e = env.query.get(&scope(), &running)?;
    assert_eq!(e.state, State::Failed);
    assert_eq!(
        e.reason.as_deref(),
        Some("INTERNAL_ERROR_QUERY_ENGINE: kinesis-data stopped while the query was running; run it again")
    );
    assert_eq!(e.error_category, Some(1), "a system error");
    assert!(e.completed_ms.is_some());
    assert_eq!(env.query.get(&scope(), &cancelled)?.state, State::Cancelled);
    let d = env.query.get(&scope(), &done.id)?;
    assert_eq!((d.state, d.rows), (State::Succeeded, 1));
    assert_eq!(env.rows(&done.id).await?, vec![row(&["c"]), row(&["20"])]);
    // The catalog came back too, and the engine runs queries again.
    assert_eq!(env.ok("lake", "SELECT sum(v) FROM slow").await?[1], row(&["190"]));
    assert_eq!(env.query.list(&scope(), None)?.len(), 6);
    Ok(())
}

// ---------------------------------------------------------------------------- known bugs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_projection_accepts_in_lists() -> R {
    let env = Env::new()?;
    env.ok("default", "CREATE DATABASE lake").await?;
    let acme = env.put("lake", "inj/acme/x.json", &b"{\"v\":7}\n"[..]).await?;
    let globex = env
        .put("lake", "inj/globex/x.json", &b"{\"v\":8}\n{\"v\":9}\n"[..])
        .await?;
    env.put("lake", "inj/initech/x.json", &b"{\"v\":100}\n"[..]).await?;
    env.ok(
        "lake",
        "CREATE EXTERNAL TABLE inj (v int) PARTITIONED BY (tenant string)
         ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' LOCATION 's3://lake/inj/'
         TBLPROPERTIES ('projection.enabled'='true', 'projection.tenant.type'='injected',
           'storage.location.template'='s3://lake/inj/${tenant}/')",
    )
    .await?;
    let e = env
        .run("lake", "SELECT sum(v) FROM inj WHERE tenant IN ('acme', 'globex')")
        .await?;
    assert_eq!(e.state, State::Succeeded, "{:?}", e.reason);
    assert_eq!(env.rows(&e.id).await?[1], row(&["24"]));
    assert_eq!(e.scanned_bytes, acme + globex);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_from_a_missing_database_is_schema_not_found() -> R {
    let env = Env::new()?;
    env.ok("default", "CREATE DATABASE lake").await?;
    assert_eq!(
        env.fail("lake", "SELECT * FROM nodb.events").await?,
        "SCHEMA_NOT_FOUND: line 1:15: Schema 'nodb' does not exist"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_errors_point_at_the_name() -> R {
    let env = Env::new()?;
    people(&env).await?;
    assert_eq!(
        env.fail("lake", "SELECT * FROM t").await?,
        "TABLE_NOT_FOUND: line 1:15: Table 'awsdatacatalog.lake.t' does not exist"
    );
    assert_eq!(
        env.fail("lake", "SELECT e FROM people").await?,
        "COLUMN_NOT_FOUND: line 1:8: Column 'e' cannot be resolved or requester is not authorized to access requested resources"
    );
    Ok(())
}

// ---------------------------------------------------------------------------- workgroups

/// The message of an InvalidRequest error, or a failure.
fn refused<T: std::fmt::Debug>(r: Result<T, kd_query::Error>) -> Result<String, Box<dyn std::error::Error>> {
    match r {
        Err(kd_query::Error::InvalidRequest(m)) => Ok(m),
        other => Err(format!("expected InvalidRequest, got {other:?}").into()),
    }
}

fn new_workgroup(name: &str, output: Option<&str>, enforce: bool) -> NewWorkGroup {
    let mut config = WorkGroupConfig::created_default();
    config.enforce = enforce;
    config.result.output_location = output.map(str::to_owned);
    NewWorkGroup {
        name: name.into(),
        description: None,
        config,
        tags: Vec::new(),
    }
}

impl Env {
    /// Starts `sql` in `workgroup` with `output` as the request's OutputLocation.
    async fn start_in(&self, workgroup: &str, output: Option<&str>, sql: &str) -> Result<String, kd_query::Error> {
        self.query
            .start(
                &scope(),
                Arc::new(AllowAll),
                StartRequest {
                    query: sql.into(),
                    database: Some("default".into()),
                    output_location: output.map(str::to_owned),
                    workgroup: Some(workgroup.into()),
                    ..StartRequest::default()
                },
            )
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workgroups_are_created_listed_updated_deleted_and_durable() -> R {
    let env = Env::new()?;
    let s = scope();
    // primary exists from the start (and is listed) and cannot be deleted.
    let primary = env.query.get_workgroup(&s, "primary").await?;
    assert_eq!(primary.state, WorkGroupState::Enabled);
    assert!(!primary.config.enforce);
    assert_eq!(
        refused(env.query.delete_workgroup(&s, "primary", true).await)?,
        "The primary workgroup cannot be deleted."
    );

    let mut new = new_workgroup("analytics", Some("s3://results/analytics/"), true);
    new.description = Some("team queries".into());
    new.config.bytes_cutoff = Some(20_000_000);
    new.config.result.encryption = Some(Encryption {
        option: "SSE_KMS".into(),
        kms_key: Some("alias/results".into()),
    });
    new.config.result.acl = Some("BUCKET_OWNER_FULL_CONTROL".into());
    new.tags = vec![("team".into(), "data".into())];
    let made = env.query.create_workgroup(&s, new.clone()).await?;
    assert_eq!(made.config.engine_version, "AUTO");
    assert_eq!(made.config.effective_engine_version(), "Athena engine version 3");
    assert_eq!(
        refused(env.query.create_workgroup(&s, new).await)?,
        "WorkGroup is already created"
    );
    // Modeled constraints.
    assert!(
        refused(env.query.create_workgroup(&s, new_workgroup("a/b", None, true)).await)?
            .contains("Member must satisfy regular expression pattern: [a-zA-Z0-9._-]{1,128}")
    );
    let mut low = new_workgroup("low", None, true);
    low.config.bytes_cutoff = Some(9_999_999);
    assert!(refused(env.query.create_workgroup(&s, low).await)?.contains("greater than or equal to 10000000"));
    let mut long = new_workgroup("long", None, true);
    long.description = Some("d".repeat(1025));
    assert!(refused(env.query.create_workgroup(&s, long).await)?.contains("1024"));
    assert_eq!(
        refused(env.query.get_workgroup(&s, "nope").await)?,
        "WorkGroup nope is not found."
    );
    // Another account or region does not see it.
    let other = Scope {
        account: "210987654321".into(),
        region: s.region.clone(),
    };
    assert!(env.query.get_workgroup(&other, "analytics").await.is_err());

    for n in ["b-team", "c.team", "zeta"] {
        env.query.create_workgroup(&s, new_workgroup(n, None, true)).await?;
    }
    // Sorted by name, paged by name.
    let names = |v: &[WorkGroup]| v.iter().map(|w| w.name.clone()).collect::<Vec<_>>();
    let (page1, next) = env.query.list_workgroups(&s, None, 2).await?;
    assert_eq!(names(&page1), ["analytics", "b-team"]);
    let (page2, next) = env.query.list_workgroups(&s, next.as_deref(), 2).await?;
    assert_eq!(names(&page2), ["c.team", "primary"]);
    let (page3, next) = env.query.list_workgroups(&s, next.as_deref(), 2).await?;
    assert_eq!((names(&page3), next), (vec!["zeta".to_owned()], None));

    // Updates: removals win, other settings stay.
    let updated = env
        .query
        .update_workgroup(
            &s,
            "analytics",
            WorkGroupUpdate {
                description: Some("renamed".into()),
                state: Some(WorkGroupState::Disabled),
                config: Some(ConfigUpdate {
                    remove_bytes_cutoff: true,
                    bytes_cutoff: Some(30_000_000),
                    remove_encryption: true,
                    output_location: Some("s3://results/analytics-2/".into()),
                    publish_metrics: Some(true),
                    engine_version: Some("Athena engine version 3".into()),
                    ..ConfigUpdate::default()
                }),
            },
        )
        .await?;
    assert_eq!(updated.description.as_deref(), Some("renamed"));
    assert_eq!(updated.state, WorkGroupState::Disabled);
    assert_eq!(updated.config.bytes_cutoff, None);
    assert_eq!(updated.config.result.encryption, None);
    assert_eq!(updated.config.result.acl.as_deref(), Some("BUCKET_OWNER_FULL_CONTROL"));
    assert_eq!(
        updated.config.result.output_location.as_deref(),
        Some("s3://results/analytics-2/")
    );
    assert!(updated.config.publish_metrics && updated.config.enforce);
    assert_eq!(updated.created_ms, made.created_ms);
    let bad = ConfigUpdate {
        bytes_cutoff: Some(1),
        ..ConfigUpdate::default()
    };
    assert!(
        refused(
            env.query
                .update_workgroup(
                    &s,
                    "analytics",
                    WorkGroupUpdate {
                        config: Some(bad),
                        ..WorkGroupUpdate::default()
                    }
                )
                .await
        )?
        .contains("bytesScannedCutoffPerQuery")
    );
    assert_eq!(
        refused(env.query.update_workgroup(&s, "nope", WorkGroupUpdate::default()).await)?,
        "WorkGroup nope is not found."
    );

    // Tags.
    let arn = "arn:aws:athena:us-east-1:123456789012:workgroup/analytics";
    env.query
        .tag_workgroup(
            &s,
            arn,
            vec![("env".into(), "test".into()), ("team".into(), "bi".into())],
        )
        .await?;
    env.query.untag_workgroup(&s, arn, vec!["env".into()]).await?;
    assert_eq!(
        env.query.workgroup_tags(&s, arn, None, 100).await?.0,
        vec![("team".to_owned(), "bi".to_owned())]
    );
    assert!(matches!(
        env.query
            .workgroup_tags(&s, "arn:aws:athena:us-east-1:123456789012:workgroup/nope", None, 100)
            .await,
        Err(kd_query::Error::ResourceNotFound(_))
    ));

    // Delete one; a missing one is not found.
    env.query.delete_workgroup(&s, "zeta", false).await?;
    assert_eq!(
        refused(env.query.delete_workgroup(&s, "zeta", false).await)?,
        "WorkGroup zeta is not found."
    );

    // Everything survives a restart.
    let before = env.query.get_workgroup(&s, "analytics").await?;
    let primary_before = env.query.get_workgroup(&s, "primary").await?;
    let env = env.reopen(config()).await?;
    assert_eq!(env.query.get_workgroup(&s, "analytics").await?, before);
    assert_eq!(env.query.get_workgroup(&s, "primary").await?, primary_before);
    let (all, _) = env.query.list_workgroups(&s, None, 50).await?;
    assert_eq!(names(&all), ["analytics", "b-team", "c.team", "primary"]);
    assert!(env.query.get_workgroup(&s, "zeta").await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_takes_the_configured_location_until_it_is_changed() -> R {
    let with = |l: &str| Config {
        primary_output_location: Some(l.into()),
        ..config()
    };
    let env = Env::new()?.reopen(with("s3://results/one/")).await?;
    let s = scope();
    let p = env.query.get_workgroup(&s, "primary").await?;
    assert_eq!(p.config.result.output_location.as_deref(), Some("s3://results/one/"));
    let id = env.start_in("primary", None, "SELECT 1").await?;
    assert_eq!(env.wait(&id).await?.result_file, format!("s3://results/one/{id}.csv"));
    // The setting changed between runs: an untouched primary follows it.
    let env = env.reopen(with("s3://results/two/")).await?;
    let p2 = env.query.get_workgroup(&s, "primary").await?;
    assert_eq!(p2.config.result.output_location.as_deref(), Some("s3://results/two/"));
    assert_eq!(p2.created_ms, p.created_ms, "the same primary");
    // Once changed through the API, it keeps its own.
    env.query
        .update_workgroup(
            &s,
            "primary",
            WorkGroupUpdate {
                config: Some(ConfigUpdate {
                    output_location: Some("s3://results/mine/".into()),
                    ..ConfigUpdate::default()
                }),
                ..WorkGroupUpdate::default()
            },
        )
        .await?;
    let env = env.reopen(with("s3://results/three/")).await?;
    let p3 = env.query.get_workgroup(&s, "primary").await?;
    assert_eq!(p3.config.result.output_location.as_deref(), Some("s3://results/mine/"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_run_in_their_workgroup_with_its_location() -> R {
    let env = Env::new()?;
    let s = scope();
    env.query
        .create_workgroup(&s, new_workgroup("enforced", Some("s3://results/enforced/"), true))
        .await?;
    env.query
        .create_workgroup(&s, new_workgroup("loose", Some("s3://results/loose"), false))
        .await?;
    env.query
        .create_workgroup(&s, new_workgroup("bare", None, true))
        .await?;

    // Enforced: the workgroup's location wins over the request's.
    let id = env.start_in("enforced", Some(OUT), "SELECT 1 AS x").await?;
    let e = env.wait(&id).await?;
    assert_eq!((e.state, e.workgroup.as_str()), (State::Succeeded, "enforced"));
    assert_eq!(e.result_file, format!("s3://results/enforced/{id}.csv"));
    assert_eq!(
        &env.object("results", &format!("enforced/{id}.csv")).await?[..],
        b"\"x\"\n\"1\"\n"
    );
    // Not enforced: the request's first, then the workgroup's.
    let id = env.start_in("loose", Some(OUT), "SELECT 1").await?;
    assert_eq!(env.wait(&id).await?.result_file, format!("{OUT}{id}.csv"));
    let id = env.start_in("loose", None, "SELECT 1").await?;
    assert_eq!(env.wait(&id).await?.result_file, format!("s3://results/loose/{id}.csv"));
    // Enforced without a location of its own: the request's.
    let bare = env.start_in("bare", Some(OUT), "SELECT 1").await?;
    assert_eq!(env.wait(&bare).await?.result_file, format!("{OUT}{bare}.csv"));
    assert!(refused(env.start_in("bare", None, "SELECT 1").await)?.starts_with("No output location provided."));

    // Unknown and disabled workgroups refuse queries.
    assert_eq!(
        refused(env.start_in("nope", Some(OUT), "SELECT 1").await)?,
        "WorkGroup nope is not found."
    );
    env.query
        .update_workgroup(
            &s,
            "loose",
            WorkGroupUpdate {
                state: Some(WorkGroupState::Disabled),
                ..WorkGroupUpdate::default()
            },
        )
        .await?;
    assert_eq!(
        refused(env.start_in("loose", Some(OUT), "SELECT 1").await)?,
        "WorkGroup loose is disabled."
    );

    // ListQueryExecutions per workgroup (primary's without one).
    let in_primary = env.start_in("primary", Some(OUT), "SELECT 1").await?;
    env.wait(&in_primary).await?;
    assert_eq!(env.query.list(&s, Some("enforced"))?.len(), 1);
    assert_eq!(env.query.list(&s, Some("loose"))?.len(), 2);
    assert_eq!(env.query.list(&s, None)?, vec![in_primary.clone()]);
    assert_eq!(
        refused(env.query.list(&s, Some("nope")))?,
        "WorkGroup nope is not found."
    );

    // A workgroup with executions is deleted only recursively, and its executions with it.
    assert_eq!(
        refused(env.query.delete_workgroup(&s, "loose", false).await)?,
        "WorkGroup loose is not empty"
    );
    let loose_ids = env.query.list(&s, Some("loose"))?;
    env.query.delete_workgroup(&s, "loose", true).await?;
    for id in &loose_ids {
        assert!(env.query.get(&s, id).is_err(), "{id} deleted with its workgroup");
    }
    // The others are untouched, also after a restart.
    let env = env.reopen(config()).await?;
    assert_eq!(env.query.list(&s, Some("bare"))?, vec![bare]);
    assert!(env.query.get(&s, &in_primary).is_ok());
    for id in &loose_ids {
        assert!(env.query.get(&s, id).is_err(), "{id} stays deleted");
    }
    assert!(env.query.get_workgroup(&s, "loose").await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_the_bytes_scanned_cutoff_is_cancelled() -> R {
    let env = Env::new()?;
    let s = scope();
    // 12 MB of text in four objects.
    let line = format!("{}\n", "x".repeat(99));
    let body = line.repeat(30_000);
    for i in 0..4 {
        env.put("lake", &format!("big/part-{i}.txt"), body.clone()).await?;
    }
    env.put("lake", "small/s.txt", &b"a\nb\n"[..]).await?;
    env.ok("default", "CREATE DATABASE lake").await?;
    for (t, dir) in [("big", "big"), ("small", "small")] {
        env.ok(
            "lake",
            &format!(
                "CREATE EXTERNAL TABLE {t} (line string) ROW FORMAT DELIMITED FIELDS TERMINATED BY ','
                 LOCATION 's3://lake/{dir}/'"
            ),
        )
        .await?;
    }
    let mut capped = new_workgroup("capped", Some("s3://results/capped/"), true);
    capped.config.bytes_cutoff = Some(10_000_000);
    env.query.create_workgroup(&s, capped).await?;

    let small = env.start_in("capped", None, "SELECT count(*) FROM lake.small").await?;
    let e = env.wait(&small).await?;
    assert_eq!(e.state, State::Succeeded, "{:?}", e.reason);
    let big = env.start_in("capped", None, "SELECT count(*) FROM lake.big").await?;
    let e = env.wait(&big).await?;
    assert_eq!(e.state, State::Cancelled);
    assert_eq!(e.reason.as_deref(), Some("Bytes scanned limit was exceeded"));
    assert!(e.scanned_bytes > 10_000_000, "{}", e.scanned_bytes);
    assert!(
        env.object("results", &format!("capped/{big}.csv")).await.is_err(),
        "no result file"
    );
    // Without the cutoff the same query reads everything.
    env.query
        .update_workgroup(
            &s,
            "capped",
            WorkGroupUpdate {
                config: Some(ConfigUpdate {
                    remove_bytes_cutoff: true,
                    ..ConfigUpdate::default()
                }),
                ..WorkGroupUpdate::default()
            },
        )
        .await?;
    let id = env.start_in("capped", None, "SELECT count(*) FROM lake.big").await?;
    let e = env.wait(&id).await?;
    assert_eq!(e.state, State::Succeeded, "{:?}", e.reason);
    assert_eq!(env.rows(&id).await?[1], row(&["120000"]));
    assert_eq!(e.scanned_bytes, 4 * body.len() as u64);
    Ok(())
}
