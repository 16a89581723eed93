//! The AWS Glue Data Catalog adapter: awsJson1.1 requests with `X-Amz-Target:
//! AWSGlue.<Operation>` become one call on [`kd_catalog::Catalog`], and its answer or error
//! becomes the wire reply. It sits between the `edge` (which has authenticated the caller and
//! chosen this service) and the catalog engine. Modeled constraints (lengths, list sizes,
//! page sizes) are checked here and answered as Glue does, with InvalidInputException;
//! IAM is asked for `glue:<Operation>` on the most specific resource of the request
//! (`arn:aws:glue:<region>:<account>:catalog`, `…:database/<db>`, `…:table/<db>/<table>`).
//! Timestamps go out as epoch seconds.

use std::sync::Arc;

use bytes::Bytes;
use kd_catalog::{
    Catalog, Column, Database, DatabaseInput, Error, Partition, PartitionInput, Scope, Table, TableInput,
};
use kd_wire::json::{CborShape, Encoding, decode, error_response, ok_response};
use kd_wire::{RequestContext, ServiceError};
use serde::Deserialize;
use serde_json::{Value, json};

/// The `X-Amz-Target` prefix of Glue.
pub const TARGET_PREFIX: &str = "AWSGlue";

const SHAPE: CborShape = CborShape {
    blob_fields: &[],
    timestamp_fields: &[],
};

/// Largest BatchCreatePartition list.
pub const MAX_BATCH_CREATE: usize = 100;
/// Largest BatchDeletePartition list.
pub const MAX_BATCH_DELETE_PARTITIONS: usize = 25;
/// Largest BatchDeleteTable list.
pub const MAX_BATCH_DELETE_TABLES: usize = 100;
/// Largest BatchGetPartition list.
pub const MAX_BATCH_GET: usize = 1000;

/// The adapter.
#[derive(Debug, Clone)]
pub struct GlueApi {
    catalog: Arc<Catalog>,
}

type Reply = Result<http::Response<Bytes>, ServiceError>;

/// Maps every engine error to its Glue code and status.
pub fn to_service_error(e: Error) -> ServiceError {
    let msg = e.to_string();
    match e {
        Error::AlreadyExists(_) => ServiceError::client("AlreadyExistsException", msg),
        Error::EntityNotFound(_) => ServiceError::client("EntityNotFoundException", msg),
        Error::InvalidInput(_) => ServiceError::client("InvalidInputException", msg),
        Error::ConcurrentModification(_) => ServiceError::client("ConcurrentModificationException", msg),
        Error::ResourceNumberLimitExceeded(_) => ServiceError::client("ResourceNumberLimitExceededException", msg),
        Error::Storage(inner) => {
            tracing::error!(error = %inner, "catalog storage failure; the request is not acknowledged");
            internal()
        }
        Error::Internal(detail) => {
            tracing::error!(%detail, "internal error in the catalog engine");
            internal()
        }
    }
}

fn internal() -> ServiceError {
    ServiceError::with_status(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServiceException",
        "Internal service error",
    )
}

fn invalid(msg: impl Into<String>) -> ServiceError {
    ServiceError::client("InvalidInputException", msg)
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// Glue's single-line string pattern (names, catalog ids).
fn single_line(s: &str) -> bool {
    !s.chars()
        .any(|c| c == '\n' || c == '\r' || (c.is_control() && c != '\t'))
}

/// Modeled checks, reported as Glue reports them (InvalidInputException with the
/// `N validation errors detected` text).
#[derive(Default)]
struct Checks {
    v: kd_wire::validate::Validator,
}

impl Checks {
    fn name(&mut self, value: &Option<String>, field: &str) {
        self.v.required(value, field);
        self.v.length(value.as_deref(), field, 1, 255);
        self.v.pattern(
            value.as_deref(),
            field,
            single_line,
            "[\\u0020-\\uD7FF\\uE000-\\uFFFD\\uD800\\uDC00-\\uDBFF\\uDFFF\\t]*",
        );
    }

    fn max_results(&mut self, value: Option<i64>, field: &str, max: i64) {
        self.v.range(value, field, 1, max);
    }

    fn finish(self) -> Result<(), ServiceError> {
        self.v.finish().map_err(|e| invalid(e.message))
    }
}

fn check_column(c: &mut Checks, col: &Column) {
    c.name(&Some(col.name.clone()), "column.name");
    c.v.length(col.r#type.as_deref(), "column.type", 0, 131_072);
    c.v.length(col.comment.as_deref(), "column.comment", 0, 255);
}

fn check_partition(c: &mut Checks, p: &PartitionInput, field: &str) {
    for v in &p.values {
        c.v.length(Some(v), &format!("{field}.values"), 0, 1024);
    }
}

// ---------------------------------------------------------------- rendering

fn database_json(d: &Database) -> Value {
    let mut v = serde_json::to_value(&d.input).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("CreateTime".into(), json!(secs(d.create_time_ms)));
        m.insert("CatalogId".into(), json!(d.catalog_id));
        m.entry("CreateTableDefaultPermissions").or_insert_with(|| {
            json!([{"Principal": {"DataLakePrincipalIdentifier": "IAM_ALLOWED_PRINCIPALS"}, "Permissions": ["ALL"]}])
        });
    }
    v
}

fn table_json(t: &Table) -> Value {
    let mut v = serde_json::to_value(&t.input).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("DatabaseName".into(), json!(t.database));
        m.insert("CreateTime".into(), json!(secs(t.create_time_ms)));
        m.insert("UpdateTime".into(), json!(secs(t.update_time_ms)));
        m.insert("CatalogId".into(), json!(t.catalog_id));
        m.insert("VersionId".into(), json!(t.version_id));
        m.insert("IsRegisteredWithLakeFormation".into(), json!(false));
        m.entry("PartitionKeys").or_insert_with(|| json!([]));
        m.entry("CreatedBy")
            .or_insert_with(|| json!(format!("arn:aws:iam::{}:root", t.catalog_id)));
    }
    v
}

fn partition_json(p: &Partition, exclude_columns: bool) -> Value {
    let mut v = serde_json::to_value(&p.input).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("DatabaseName".into(), json!(p.database));
        m.insert("TableName".into(), json!(p.table));
        m.insert("CreationTime".into(), json!(secs(p.creation_time_ms)));
        m.insert("CatalogId".into(), json!(p.catalog_id));
        if exclude_columns && let Some(Value::Object(sd)) = m.get_mut("StorageDescriptor") {
            sd.remove("Columns");
        }
    }
    v
}

fn error_detail(e: Error) -> Value {
    let se = to_service_error(e);
    json!({"ErrorCode": se.code, "ErrorMessage": se.message})
}

// ---------------------------------------------------------------- requests

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateDatabaseReq {
    #[serde(default)]
    catalog_id: Option<String>,
    database_input: Option<DatabaseInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NameReq {
    #[serde(default)]
    catalog_id: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetDatabasesReq {
    #[serde(default)]
    catalog_id: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateDatabaseReq {
    #[serde(default)]
    catalog_id: Option<String>,
    name: Option<String>,
    database_input: Option<DatabaseInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TableInputReq {
    #[serde(default)]
    catalog_id: Option<String>,
    database_name: Option<String>,
    table_input: Option<TableInput>,
    #[serde(default)]
    skip_archive: Option<bool>,
    version_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TableNameReq {
    #[serde(default)]
    catalog_id: Option<String>,
    database_name: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetTablesReq {
    #[serde(default)]
    catalog_id: Option<String>,
    database_name: Option<String>,
    expression: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchDeleteTableReq {
    #[serde(default)]
    catalog_id: Option<String>,
    database_name: Option<String>,
    tables_to_delete: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetTableVersionsReq {
    #[serde(default)]
    catalog_id: Option<String>,
    database_name: Option<String>,
    table_name: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreatePartitionReq {
    #[serde(default)]
    catalog_id: Option<String>,
    database_name: Option<String>,
    table_name: Option<String>,
    partition_input: Option<PartitionInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchCreatePartitionReq {
    #[serde(default)]
    catalog_id: Option<String>,
    database_name: Option<String>,
    table_name: Option<String>,
    partition_input_list: Option<Vec<PartitionInput>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PartitionValuesReq {
    #[serde(default)]
    catalog_id: Option<String>,
    database_name: Option<String>,
    table_name: Option<String>,
    partition_values: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ValuesList {
    values: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchPartitionsReq {
    #[serde(default)]
    catalog_id: Option<String>,
    database_name: Option<String>,
    table_name: Option<String>,
    partitions_to_get: Option<Vec<ValuesList>>,
    partitions_to_delete: Option<Vec<ValuesList>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetPartitionsReq {
    #[serde(default)]
    catalog_id: Option<String>,
    database_name: Option<String>,
    table_name: Option<String>,
    expression: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
    #[serde(default)]
    exclude_column_schema: Option<bool>,
}

impl GlueApi {
    /// An adapter over `catalog`.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }

    /// Handles one request whose `X-Amz-Target` named `operation` (JSON body).
    pub async fn handle(&self, ctx: &RequestContext, operation: &str, body: &[u8]) -> http::Response<Bytes> {
        let scope = Scope {
            account: ctx.account_id.clone(),
            region: ctx.region.clone(),
        };
        let call = Call {
            catalog: &self.catalog,
            ctx,
            operation,
            scope: &scope,
            body,
        };
        let result = match operation {
            "CreateDatabase" => call.create_database().await,
            "GetDatabase" => call.get_database(),
            "GetDatabases" => call.get_databases(),
            "UpdateDatabase" => call.update_database().await,
            "DeleteDatabase" => call.delete_database().await,
            "CreateTable" => call.create_table().await,
            "GetTable" => call.get_table(),
            "GetTables" => call.get_tables(),
            "UpdateTable" => call.update_table().await,
            "DeleteTable" => call.delete_table().await,
            "BatchDeleteTable" => call.batch_delete_table().await,
            "GetTableVersions" => call.get_table_versions(),
            "CreatePartition" => call.create_partition().await,
            "BatchCreatePartition" => call.batch_create_partition().await,
            "GetPartition" => call.get_partition(),
            "GetPartitions" => call.get_partitions(),
            "BatchGetPartition" => call.batch_get_partition(),
            "DeletePartition" => call.delete_partition().await,
            "BatchDeletePartition" => call.batch_delete_partition().await,
            op => Err(ServiceError::client(
                "UnknownOperationException",
                format!("Operation {op} is not supported by kinesis-data's Glue."),
            )),
        };
        result.unwrap_or_else(|e| error_response(Encoding::Json, &e, &ctx.request_id))
    }
}

struct Call<'a> {
    catalog: &'a Catalog,
    ctx: &'a RequestContext,
    operation: &'a str,
    scope: &'a Scope,
    body: &'a [u8],
}

impl Call<'_> {
    fn input<T: serde::de::DeserializeOwned>(&self) -> Result<T, ServiceError> {
        decode(Encoding::Json, self.body)
    }

    async fn done(&self, f: impl std::future::Future<Output = kd_catalog::Result<()>>) -> Reply {
        f.await.map_err(to_service_error)?;
        self.ok(&json!({}))
    }

    fn ok(&self, v: &Value) -> Reply {
        Ok(ok_response(Encoding::Json, &SHAPE, v, &self.ctx.request_id))
    }

    /// Only this account's catalog exists here.
    fn check_catalog(&self, id: &Option<String>) -> Result<(), ServiceError> {
        match id {
            Some(id) if id != &self.scope.account => Err(ServiceError::client(
                "AccessDeniedException",
                format!("Cross account access to catalog {id} is not supported by kinesis-data."),
            )),
            _ => Ok(()),
        }
    }

    fn arn(&self, rest: &str) -> String {
        format!("arn:aws:glue:{}:{}:{rest}", self.scope.region, self.scope.account)
    }

    fn allow_on(&self, resource: impl FnOnce() -> String) -> Result<(), ServiceError> {
        self.ctx.allow("glue", self.operation, resource)
    }

    fn allow_catalog(&self) -> Result<(), ServiceError> {
        self.allow_on(|| self.arn("catalog"))
    }

    fn allow_db(&self, db: &str) -> Result<(), ServiceError> {
        self.allow_on(|| self.arn(&format!("database/{}", db.to_lowercase())))
    }

    fn allow_table(&self, db: &str, table: &str) -> Result<(), ServiceError> {
        self.allow_on(|| self.arn(&format!("table/{}/{}", db.to_lowercase(), table.to_lowercase())))
    }

    async fn create_database(&self) -> Reply {
        let r: CreateDatabaseReq = self.input()?;
        let mut c = Checks::default();
        c.v.required(&r.database_input, "databaseInput");
        if let Some(d) = &r.database_input {
            c.name(&Some(d.name.clone()), "databaseInput.name");
        }
        c.finish()?;
        self.check_catalog(&r.catalog_id)?;
        let input = r.database_input.unwrap_or_default();
        self.allow_db(&input.name)?;
        self.done(self.catalog.create_database(self.scope, input)).await
    }

    fn get_database(&self) -> Reply {
        let r: NameReq = self.input()?;
        let mut c = Checks::default();
        c.name(&r.name, "name");
        c.finish()?;
        self.check_catalog(&r.catalog_id)?;
        let name = r.name.unwrap_or_default();
        self.allow_db(&name)?;
        let d = self.catalog.get_database(self.scope, &name).map_err(to_service_error)?;
        self.ok(&json!({ "Database": database_json(&d) }))
    }

    fn get_databases(&self) -> Reply {
        let r: GetDatabasesReq = self.input()?;
        let mut c = Checks::default();
        c.max_results(r.max_results, "maxResults", 100);
        c.finish()?;
        self.check_catalog(&r.catalog_id)?;
        self.allow_catalog()?;
        let page = self
            .catalog
            .get_databases(self.scope, r.next_token.as_deref(), r.max_results.map(|m| m as usize))
            .map_err(to_service_error)?;
        let mut out = json!({ "DatabaseList": page.items.iter().map(database_json).collect::<Vec<_>>() });
        if let Some(t) = page.next_token {
            out["NextToken"] = json!(t);
        }
        self.ok(&out)
    }

    async fn update_database(&self) -> Reply {
        let r: UpdateDatabaseReq = self.input()?;
        let mut c = Checks::default();
        c.name(&r.name, "name");
        c.v.required(&r.database_input, "databaseInput");
        c.finish()?;
        self.check_catalog(&r.catalog_id)?;
        let name = r.name.unwrap_or_default();
        self.allow_db(&name)?;
        self.done(
            self.catalog
                .update_database(self.scope, &name, r.database_input.unwrap_or_default()),
        )
        .await
    }

    async fn delete_database(&self) -> Reply {
        let r: NameReq = self.input()?;
        let mut c = Checks::default();
        c.name(&r.name, "name");
        c.finish()?;
        self.check_catalog(&r.catalog_id)?;
        let name = r.name.unwrap_or_default();
        self.allow_db(&name)?;
        self.done(self.catalog.delete_database(self.scope, &name)).await
    }

    fn check_table_input(c: &mut Checks, t: &Option<TableInput>) {
        c.v.required(t, "tableInput");
        if let Some(t) = t {
            c.name(&Some(t.name.clone()), "tableInput.name");
            let cols = t.columns().iter().chain(t.partition_keys());
            for col in cols {
                check_column(c, col);
            }
        }
    }

    async fn create_table(&self) -> Reply {
        let r: TableInputReq = self.input()?;
        let mut c = Checks::default();
        c.name(&r.database_name, "databaseName");
        Self::check_table_input(&mut c, &r.table_input);
        c.finish()?;
        self.check_catalog(&r.catalog_id)?;
        let db = r.database_name.unwrap_or_default();
        let input = r.table_input.unwrap_or_default();
        self.allow_table(&db, &input.name)?;
        self.done(self.catalog.create_table(self.scope, &db, input)).await
    }

    fn get_table(&self) -> Reply {
        let r: TableNameReq = self.input()?;
        let mut c = Checks::default();
        c.name(&r.database_name, "databaseName");
        c.name(&r.name, "name");
        c.finish()?;
        self.check_catalog(&r.catalog_id)?;
        let (db, name) = (r.database_name.unwrap_or_default(), r.name.unwrap_or_default());
        self.allow_table(&db, &name)?;
        let t = self
            .catalog
            .get_table(self.scope, &db, &name)
            .map_err(to_service_error)?;
        self.ok(&json!({ "Table": table_json(&t) }))
    }

    fn get_tables(&self) -> Reply {
        let r: GetTablesReq = self.input()?;
        let mut c = Checks::default();
        c.name(&r.database_name, "databaseName");
        c.max_results(r.max_results, "maxResults", 100);
        c.v.length(r.expression.as_deref(), "expression", 0, 2048);
        c.finish()?;
        self.check_catalog(&r.catalog_id)?;
        let db = r.database_name.unwrap_or_default();
        self.allow_db(&db)?;
        let page = self
            .catalog
            .get_tables(
                self.scope,
                &db,
                r.expression.as_deref(),
                r.next_token.as_deref(),
                r.max_results.map(|m| m as usize),
            )
            .map_err(to_service_error)?;
        let mut out = json!({ "TableList": page.items.iter().map(table_json).collect::<Vec<_>>() });
        if let Some(t) = page.next_token {
            out["NextToken"] = json!(t);
        }
        self.ok(&out)
    }

    async fn update_table(&self) -> Reply {
        let r: TableInputReq = self.input()?;
        let mut c = Checks::default();
        c.name(&r.database_name, "databaseName");
        Self::check_table_input(&mut c, &r.table_input);
        c.finish()?;
        self.check_catalog(&r.catalog_id)?;
        let db = r.database_name.unwrap_or_default();
        let input = r.table_input.unwrap_or_default();
        self.allow_table(&db, &input.name)?;
        self.done(self.catalog.update_table(
            self.scope,
            &db,
            input,
            r.skip_archive.unwrap_or(false),
            r.version_id.as_deref(),
        ))
        .await
    }

    async fn delete_table(&self) -> Reply {
        let r: TableNameReq = self.input()?;
        let mut c = Checks::default();
        c.name(&r.database_name, "databaseName");
        c.name(&r.name, "name");
        c.finish()?;
        self.check_catalog(&r.catalog_id)?;
        let (db, name) = (r.database_name.unwrap_or_default(), r.name.unwrap_or_default());
        self.allow_table(&db, &name)?;
        self.done(self.catalog.delete_table(self.scope, &db, &name)).await
    }

    async fn batch_delete_table(&self) -> Reply {
        let r: BatchDeleteTableReq = self.input()?;
        let mut c = Checks::default();
        c.name(&r.database_name, "databaseName");
        c.v.required(&r.tables_to_delete, "tablesToDelete");
        if r.tables_to_delete
            .as_ref()
            .is_some_and(|t| t.len() > MAX_BATCH_DELETE_TABLES)
        {
            c.v.fail_no_value(
                "tablesToDelete",
                &format!("Member must have length less than or equal to {MAX_BATCH_DELETE_TABLES}"),
            );
        }
        c.finish()?;
        self.check_catalog(&r.catalog_id)?;
        let db = r.database_name.unwrap_or_default();
        let names = r.tables_to_delete.unwrap_or_default();
        for n in &names {
            self.allow_table(&db, n)?;
        }
        let errors = self
            .catalog
            .batch_delete_table(self.scope, &db, &names)
            .await
            .map_err(to_service_error)?;
        let errors: Vec<Value> = errors
            .into_iter()
            .map(|(n, e)| json!({"TableName": n, "ErrorDetail": error_detail(e)}))
            .collect();
        self.ok(&json!({ "Errors": errors }))
    }

    fn get_table_versions(&self) -> Reply {
        let r: GetTableVersionsReq = self.input()?;
        let mut c = Checks::default();
        c.name(&r.database_name, "databaseName");
        c.name(&r.table_name, "tableName");
        c.max_results(r.max_results, "maxResults", 100);
        c.finish()?;
        self.check_catalog(&r.catalog_id)?;
        let (db, table) = (r.database_name.unwrap_or_default(), r.table_name.unwrap_or_default());
        self.allow_table(&db, &table)?;
        let page = self
            .catalog
            .get_table_versions(
                self.scope,
                &db,
                &table,
                r.next_token.as_deref(),
                r.max_results.map(|m| m as usize),
            )
            .map_err(to_service_error)?;
        let versions: Vec<Value> = page
            .items
            .iter()
            .map(|v| json!({"Table": table_json(&v.table), "VersionId": v.version_id}))
            .collect();
        let mut out = json!({ "TableVersions": versions });
        if let Some(t) = page.next_token {
            out["NextToken"] = json!(t);
        }
        self.ok(&out)
    }

    async fn create_partition(&self) -> Reply {
        let r: CreatePartitionReq = self.input()?;
        let mut c = Checks::default();
        c.name(&r.database_name, "databaseName");
        c.name(&r.table_name, "tableName");
        c.v.required(&r.partition_input, "partitionInput");
        if let Some(p) = &r.partition_input {
            check_partition(&mut c, p, "partitionInput");
        }
        c.finish()?;
        self.check_catalog(&r.catalog_id)?;
        let (db, table) = (r.database_name.unwrap_or_default(), r.table_name.unwrap_or_default());
        self.allow_table(&db, &table)?;
        self.done(
            self.catalog
                .create_partition(self.scope, &db, &table, r.partition_input.unwrap_or_default()),
        )
        .await
    }

    async fn batch_create_partition(&self) -> Reply {
        let r: BatchCreatePartitionReq = self.input()?;
        let mut c = Checks::default();
        c.name(&r.database_name, "databaseName");
        c.name(&r.table_name, "tableName");
        c.v.required(&r.partition_input_list, "partitionInputList");
        if let Some(list) = &r.partition_input_list {
            if list.len() > MAX_BATCH_CREATE {
                c.v.fail_no_value(
                    "partitionInputList",
                    &format!("Member must have length less than or equal to {MAX_BATCH_CREATE}"),
                );
            }
            for (i, p) in list.iter().enumerate() {
                check_partition(&mut c, p, &format!("partitionInputList.{}.member", i + 1));
            }
        }
        c.finish()?;
        self.check_catalog(&r.catalog_id)?;
        let (db, table) = (r.database_name.unwrap_or_default(), r.table_name.unwrap_or_default());
        self.allow_table(&db, &table)?;
        let errors = self
            .catalog
            .batch_create_partition(self.scope, &db, &table, r.partition_input_list.unwrap_or_default())
            .await
            .map_err(to_service_error)?;
        let errors: Vec<Value> = errors
            .into_iter()
            .map(|(v, e)| json!({"PartitionValues": v, "ErrorDetail": error_detail(e)}))
            .collect();
        self.ok(&json!({ "Errors": errors }))
    }

    fn get_partition(&self) -> Reply {
        let r: PartitionValuesReq = self.input()?;
        let mut c = Checks::default();
        c.name(&r.database_name, "databaseName");
        c.name(&r.table_name, "tableName");
        c.v.required(&r.partition_values, "partitionValues");
        c.finish()?;
        self.check_catalog(&r.catalog_id)?;
        let (db, table) = (r.database_name.unwrap_or_default(), r.table_name.unwrap_or_default());
        self.allow_table(&db, &table)?;
        let p = self
            .catalog
            .get_partition(self.scope, &db, &table, &r.partition_values.unwrap_or_default())
            .map_err(to_service_error)?;
        self.ok(&json!({ "Partition": partition_json(&p, false) }))
    }

    fn get_partitions(&self) -> Reply {
        let r: GetPartitionsReq = self.input()?;
        let mut c = Checks::default();
        c.name(&r.database_name, "databaseName");
        c.name(&r.table_name, "tableName");
        c.max_results(r.max_results, "maxResults", 1000);
        c.v.length(r.expression.as_deref(), "expression", 0, 2048);
        c.finish()?;
        self.check_catalog(&r.catalog_id)?;
        let (db, table) = (r.database_name.unwrap_or_default(), r.table_name.unwrap_or_default());
        self.allow_table(&db, &table)?;
        let page = self
            .catalog
            .get_partitions(
                self.scope,
                &db,
                &table,
                r.expression.as_deref(),
                r.next_token.as_deref(),
                r.max_results.map(|m| m as usize),
            )
            .map_err(to_service_error)?;
        let exclude = r.exclude_column_schema.unwrap_or(false);
        let mut out =
            json!({ "Partitions": page.items.iter().map(|p| partition_json(p, exclude)).collect::<Vec<_>>() });
        if let Some(t) = page.next_token {
            out["NextToken"] = json!(t);
        }
        self.ok(&out)
    }

    fn batch_get_partition(&self) -> Reply {
        let r: BatchPartitionsReq = self.input()?;
        let mut c = Checks::default();
        c.name(&r.database_name, "databaseName");
        c.name(&r.table_name, "tableName");
        c.v.required(&r.partitions_to_get, "partitionsToGet");
        if r.partitions_to_get.as_ref().is_some_and(|l| l.len() > MAX_BATCH_GET) {
            c.v.fail_no_value(
                "partitionsToGet",
                &format!("Member must have length less than or equal to {MAX_BATCH_GET}"),
            );
        }
        c.finish()?;
        self.check_catalog(&r.catalog_id)?;
        let (db, table) = (r.database_name.unwrap_or_default(), r.table_name.unwrap_or_default());
        self.allow_table(&db, &table)?;
        let wanted: Vec<Vec<String>> = r
            .partitions_to_get
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.values.unwrap_or_default())
            .collect();
        let found = self
            .catalog
            .batch_get_partition(self.scope, &db, &table, &wanted)
            .map_err(to_service_error)?;
        self.ok(&json!({
            "Partitions": found.iter().map(|p| partition_json(p, false)).collect::<Vec<_>>(),
            "UnprocessedKeys": [],
        }))
    }

    async fn delete_partition(&self) -> Reply {
        let r: PartitionValuesReq = self.input()?;
        let mut c = Checks::default();
        c.name(&r.database_name, "databaseName");
        c.name(&r.table_name, "tableName");
        c.v.required(&r.partition_values, "partitionValues");
        c.finish()?;
        self.check_catalog(&r.catalog_id)?;
        let (db, table) = (r.database_name.unwrap_or_default(), r.table_name.unwrap_or_default());
        self.allow_table(&db, &table)?;
        self.done(
            self.catalog
                .delete_partition(self.scope, &db, &table, r.partition_values.unwrap_or_default()),
        )
        .await
    }

    async fn batch_delete_partition(&self) -> Reply {
        let r: BatchPartitionsReq = self.input()?;
        let mut c = Checks::default();
        c.name(&r.database_name, "databaseName");
        c.name(&r.table_name, "tableName");
        c.v.required(&r.partitions_to_delete, "partitionsToDelete");
        if r.partitions_to_delete
            .as_ref()
            .is_some_and(|l| l.len() > MAX_BATCH_DELETE_PARTITIONS)
        {
            c.v.fail_no_value(
                "partitionsToDelete",
                &format!("Member must have length less than or equal to {MAX_BATCH_DELETE_PARTITIONS}"),
            );
        }
        c.finish()?;
        self.check_catalog(&r.catalog_id)?;
        let (db, table) = (r.database_name.unwrap_or_default(), r.table_name.unwrap_or_default());
        self.allow_table(&db, &table)?;
        let list = r
            .partitions_to_delete
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.values.unwrap_or_default())
            .collect();
        let errors = self
            .catalog
            .batch_delete_partition(self.scope, &db, &table, list)
            .await
            .map_err(to_service_error)?;
        let errors: Vec<Value> = errors
            .into_iter()
            .map(|(v, e)| json!({"PartitionValues": v, "ErrorDetail": error_detail(e)}))
            .collect();
        self.ok(&json!({ "Errors": errors }))
    }
}
