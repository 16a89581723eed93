//! The Amazon Athena adapter: awsJson1.1 requests with `X-Amz-Target:
//! AmazonAthena.<Operation>` become calls on [`kd_query::Query`], and its answers or errors
//! become the wire reply. It sits between the `edge` and the query engine; it checks the
//! modeled constraints (InvalidRequestException, as Athena answers them), asks IAM for
//! `athena:<Operation>` on `arn:aws:athena:<region>:<account>:workgroup/primary` (or
//! `datacatalog/AwsDataCatalog` for the metadata operations), and hands the engine the
//! caller's authoriser, since Athena reads tables and writes results as its caller.

use std::sync::Arc;

use bytes::Bytes;
use kd_query::{Access, ColumnDef, Error, Execution, PortError, Query, Scope, StartRequest, State, TableDef};
use kd_wire::json::{CborShape, Encoding, decode, error_response, ok_response};
use kd_wire::{Authorize, RequestContext, ServiceError};
use serde::Deserialize;
use serde_json::{Value, json};

/// The `X-Amz-Target` prefix of Athena.
pub const TARGET_PREFIX: &str = "AmazonAthena";

const SHAPE: CborShape = CborShape {
    blob_fields: &[],
    timestamp_fields: &[],
};

/// The adapter.
#[derive(Debug, Clone)]
pub struct AthenaApi {
    query: Arc<Query>,
}

type Reply = Result<http::Response<Bytes>, ServiceError>;

/// The caller's authoriser as the engine's [`Access`].
#[derive(Debug)]
struct Caller(Arc<dyn Authorize>);

impl Access for Caller {
    fn enforced(&self) -> bool {
        self.0.enforced()
    }

    fn authorize(&self, action: &str, resource: &str) -> Result<(), String> {
        if !self.0.enforced() {
            return Ok(());
        }
        self.0.authorize(action, resource)
    }
}

/// Maps every engine error to its Athena code.
pub fn to_service_error(e: Error) -> ServiceError {
    let msg = e.to_string();
    match e {
        Error::InvalidRequest(_) => ServiceError::client("InvalidRequestException", msg),
        Error::AccessDenied(_) => ServiceError::client("AccessDeniedException", msg),
        Error::Metadata(_) => ServiceError::client("MetadataException", msg),
        Error::Storage(inner) => {
            tracing::error!(error = %inner, "athena storage failure");
            internal()
        }
        Error::Internal(detail) => {
            tracing::error!(%detail, "internal error in the query engine");
            internal()
        }
    }
}

fn internal() -> ServiceError {
    ServiceError::with_status(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerException",
        "Internal error",
    )
}

fn invalid(msg: impl Into<String>) -> ServiceError {
    ServiceError::client("InvalidRequestException", msg)
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn port_error(e: PortError) -> ServiceError {
    match e {
        PortError::NotFound(m) => ServiceError::client("MetadataException", m),
        PortError::Other(m) if m.contains("not authorized") => ServiceError::client("AccessDeniedException", m),
        other => ServiceError::client("MetadataException", other.to_string()),
    }
}

fn execution_json(e: &Execution) -> Value {
    let mut status = json!({
        "State": e.state.as_str(),
        "SubmissionDateTime": secs(e.submitted_ms),
    });
    if let Some(c) = e.completed_ms {
        status["CompletionDateTime"] = json!(secs(c));
    }
    if let Some(r) = &e.reason {
        status["StateChangeReason"] = json!(r);
        if e.state == State::Failed {
            status["AthenaError"] = json!({
                "ErrorCategory": e.error_category.unwrap_or(2),
                "ErrorType": if e.error_category == Some(1) { 401 } else { 1000 },
                "Retryable": false,
                "ErrorMessage": r,
            });
        }
    }
    let engine_ms = match (e.started_ms, e.completed_ms) {
        (Some(s), Some(c)) => c - s,
        _ => 0,
    };
    let queue_ms = e.started_ms.map_or(0, |s| s - e.submitted_ms);
    let total = e.completed_ms.map_or(0, |c| c - e.submitted_ms);
    let mut ctx = json!({});
    if let Some(d) = &e.database {
        ctx["Database"] = json!(d);
    }
    ctx["Catalog"] = json!(e.catalog.clone().unwrap_or_else(|| "AwsDataCatalog".into()));
    json!({
        "QueryExecutionId": e.id,
        "Query": e.query,
        "StatementType": e.statement_type,
        "ResultConfiguration": {"OutputLocation": e.result_file},
        "ResultReuseConfiguration": {"ResultReuseByAgeConfiguration": {"Enabled": false}},
        "QueryExecutionContext": ctx,
        "Status": status,
        "Statistics": {
            "EngineExecutionTimeInMillis": engine_ms,
            "DataScannedInBytes": e.scanned_bytes,
            "TotalExecutionTimeInMillis": total,
            "QueryQueueTimeInMillis": queue_ms,
            "QueryPlanningTimeInMillis": 0,
            "ServiceProcessingTimeInMillis": 0,
            "ResultReuseInformation": {"ReusedPreviousResult": false},
        },
        "WorkGroup": e.workgroup,
        "EngineVersion": {"SelectedEngineVersion": "AUTO", "EffectiveEngineVersion": "Athena engine version 3"},
        "ExecutionParameters": e.parameters,
        "SubstatementType": if e.statement_type == "DML" { "SELECT" } else { "" },
    })
}

fn column_json(c: &ColumnDef) -> Value {
    let mut v = json!({"Name": c.name, "Type": c.type_name});
    if let Some(m) = &c.comment {
        v["Comment"] = json!(m);
    }
    v
}

fn table_json(t: &TableDef) -> Value {
    let mut params = t.parameters.clone();
    if let Some(l) = &t.location {
        params.insert("location".into(), l.clone());
    }
    if let Some(s) = &t.serde {
        params.insert("serde.serialization.lib".into(), s.clone());
    }
    json!({
        "Name": t.name,
        "CreateTime": secs(t.create_time_ms),
        "TableType": t.table_type.clone().unwrap_or_else(|| "EXTERNAL_TABLE".into()),
        "Columns": t.columns.iter().map(column_json).collect::<Vec<_>>(),
        "PartitionKeys": t.partition_keys.iter().map(column_json).collect::<Vec<_>>(),
        "Parameters": params,
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Req {
    query_string: Option<String>,
    client_request_token: Option<String>,
    query_execution_context: Option<QueryContext>,
    result_configuration: Option<ResultConfiguration>,
    work_group: Option<String>,
    execution_parameters: Option<Vec<String>>,
    query_execution_id: Option<String>,
    query_execution_ids: Option<Vec<String>>,
    next_token: Option<String>,
    max_results: Option<i64>,
    catalog_name: Option<String>,
    database_name: Option<String>,
    table_name: Option<String>,
    expression: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct QueryContext {
    database: Option<String>,
    catalog: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ResultConfiguration {
    output_location: Option<String>,
}

/// Pages a list by a numeric offset token.
fn page<T: Clone>(items: &[T], token: Option<&str>, max: usize) -> Result<(Vec<T>, Option<String>), ServiceError> {
    let start = match token {
        None | Some("") => 0,
        Some(t) => t.parse::<usize>().map_err(|_| invalid("The NextToken is not valid."))?,
    };
    let end = (start + max).min(items.len());
    let slice = items.get(start..end).map(<[T]>::to_vec).unwrap_or_default();
    Ok((slice, (end < items.len()).then(|| end.to_string())))
}

impl AthenaApi {
    /// An adapter over `query`.
    pub fn new(query: Arc<Query>) -> Self {
        Self { query }
    }

    /// Handles one request whose `X-Amz-Target` named `operation`.
    pub async fn handle(&self, ctx: &RequestContext, operation: &str, body: &[u8]) -> http::Response<Bytes> {
        let result = self.dispatch(ctx, operation, body).await;
        result.unwrap_or_else(|e| error_response(Encoding::Json, &e, &ctx.request_id))
    }

    async fn dispatch(&self, ctx: &RequestContext, op: &str, body: &[u8]) -> Reply {
        let r: Req = decode(Encoding::Json, body)?;
        let scope = Scope {
            account: ctx.account_id.clone(),
            region: ctx.region.clone(),
        };
        let access: Arc<dyn Access> = Arc::new(Caller(ctx.authz.clone()));
        let arn = |rest: &str| format!("arn:aws:athena:{}:{}:{rest}", scope.region, scope.account);
        let allow = |resource: String| -> Result<(), ServiceError> {
            if !ctx.authz.enforced() {
                return Ok(());
            }
            ctx.authz
                .authorize(&format!("athena:{op}"), &resource)
                .map_err(|m| ServiceError::client("AccessDeniedException", m))
        };
        let ok = |v: Value| -> Reply { Ok(ok_response(Encoding::Json, &SHAPE, &v, &ctx.request_id)) };
        let max = |default: i64, limit: i64| -> Result<usize, ServiceError> {
            match r.max_results {
                None => Ok(default as usize),
                Some(m) if (1..=limit).contains(&m) => Ok(m as usize),
                Some(m) => Err(invalid(format!(
                    "1 validation error detected: Value '{m}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to {limit}"
                ))),
            }
        };
        let workgroup = |w: &Option<String>| w.clone().unwrap_or_else(|| "primary".into());
        match op {
            "StartQueryExecution" => {
                let query = r.query_string.clone().ok_or_else(|| {
                    invalid("1 validation error detected: Value null at 'queryString' failed to satisfy constraint: Member must not be null")
                })?;
                if query.is_empty() || query.len() > kd_query::MAX_QUERY {
                    return Err(invalid(format!(
                        "1 validation error detected: Value at 'queryString' failed to satisfy constraint: Member must have length between 1 and {}",
                        kd_query::MAX_QUERY
                    )));
                }
                if let Some(t) = &r.client_request_token
                    && !(32..=128).contains(&t.len())
                {
                    return Err(invalid(
                        "1 validation error detected: Value at 'clientRequestToken' failed to satisfy constraint: Member must have length between 32 and 128",
                    ));
                }
                allow(arn(&format!("workgroup/{}", workgroup(&r.work_group))))?;
                let qc = r.query_execution_context.unwrap_or_default();
                let id = self
                    .query
                    .start(
                        &scope,
                        access,
                        StartRequest {
                            query,
                            database: qc.database,
                            catalog: qc.catalog,
                            output_location: r.result_configuration.and_then(|c| c.output_location),
                            workgroup: r.work_group,
                            token: r.client_request_token,
                            parameters: r.execution_parameters.unwrap_or_default(),
                        },
                    )
                    .await
                    .map_err(to_service_error)?;
                ok(json!({ "QueryExecutionId": id }))
            }
            "GetQueryExecution" => {
                let id = r.query_execution_id.clone().unwrap_or_default();
                let e = self.query.get(&scope, &id).map_err(to_service_error)?;
                allow(arn(&format!("workgroup/{}", e.workgroup)))?;
                ok(json!({ "QueryExecution": execution_json(&e) }))
            }
            "BatchGetQueryExecution" => {
                let ids = r.query_execution_ids.clone().unwrap_or_default();
                if ids.is_empty() || ids.len() > 50 {
                    return Err(invalid("QueryExecutionIds must have between 1 and 50 members"));
                }
                allow(arn("workgroup/primary"))?;
                let mut found = Vec::new();
                let mut missing = Vec::new();
                for id in ids {
                    match self.query.get(&scope, &id) {
                        Ok(e) => found.push(execution_json(&e)),
                        Err(e) => missing.push(json!({"QueryExecutionId": id, "ErrorCode": "INVALID_INPUT", "ErrorMessage": e.to_string()})),
                    }
                }
                ok(json!({"QueryExecutions": found, "UnprocessedQueryExecutionIds": missing}))
            }
            "ListQueryExecutions" => {
                let n = max(50, 50)?;
                allow(arn(&format!("workgroup/{}", workgroup(&r.work_group))))?;
                let ids = self
                    .query
                    .list(&scope, r.work_group.as_deref())
                    .map_err(to_service_error)?;
                let (items, next) = page(&ids, r.next_token.as_deref(), n)?;
                let mut v = json!({ "QueryExecutionIds": items });
                if let Some(t) = next {
                    v["NextToken"] = json!(t);
                }
                ok(v)
            }
            "StopQueryExecution" => {
                let id = r.query_execution_id.clone().unwrap_or_default();
                let e = self.query.get(&scope, &id).map_err(to_service_error)?;
                allow(arn(&format!("workgroup/{}", e.workgroup)))?;
                self.query.stop(&scope, &id).await.map_err(to_service_error)?;
                ok(json!({}))
            }
            "GetQueryResults" => {
                let n = max(1000, 1000)?;
                let id = r.query_execution_id.clone().unwrap_or_default();
                let e = self.query.get(&scope, &id).map_err(to_service_error)?;
                allow(arn(&format!("workgroup/{}", e.workgroup)))?;
                let (e, rows, next) = self
                    .query
                    .results(&scope, access.as_ref(), &id, r.next_token.as_deref(), n)
                    .await
                    .map_err(to_service_error)?;
                let rows: Vec<Value> = rows
                    .into_iter()
                    .map(|row| {
                        json!({"Data": row.into_iter().map(|d| match d {
                            Some(s) => json!({"VarCharValue": s}),
                            None => json!({}),
                        }).collect::<Vec<_>>()})
                    })
                    .collect();
                let cols: Vec<Value> = e
                    .columns
                    .iter()
                    .map(|c| {
                        json!({"CatalogName": "hive", "SchemaName": "", "TableName": "", "Name": c.name, "Label": c.name,
                            "Type": c.type_name, "Precision": c.precision, "Scale": c.scale, "Nullable": "UNKNOWN",
                            "CaseSensitive": c.type_name == "varchar"})
                    })
                    .collect();
                let mut v = json!({
                    "UpdateCount": 0,
                    "ResultSet": {"Rows": rows, "ResultSetMetadata": {"ColumnInfo": cols}},
                });
                if let Some(t) = next {
                    v["NextToken"] = json!(t);
                }
                ok(v)
            }
            "GetWorkGroup" => {
                let name = r.work_group.clone().unwrap_or_default();
                if name != "primary" {
                    return Err(invalid(format!("WorkGroup {name} is not found.")));
                }
                allow(arn("workgroup/primary"))?;
                let mut conf = json!({
                    "EnforceWorkGroupConfiguration": false,
                    "PublishCloudWatchMetricsEnabled": false,
                    "RequesterPaysEnabled": false,
                    "EngineVersion": {"SelectedEngineVersion": "AUTO", "EffectiveEngineVersion": "Athena engine version 3"},
                });
                if let Some(o) = &self.query.config().primary_output_location {
                    conf["ResultConfiguration"] = json!({"OutputLocation": o});
                }
                ok(
                    json!({"WorkGroup": {"Name": "primary", "State": "ENABLED", "Configuration": conf, "Description": "", "CreationTime": 0.0}}),
                )
            }
            "ListWorkGroups" => {
                allow(arn("workgroup/primary"))?;
                ok(
                    json!({"WorkGroups": [{"Name": "primary", "State": "ENABLED", "Description": "", "CreationTime": 0.0,
                    "EngineVersion": {"SelectedEngineVersion": "AUTO", "EffectiveEngineVersion": "Athena engine version 3"}}]}),
                )
            }
            "ListDataCatalogs" => {
                allow(arn("datacatalog/AwsDataCatalog"))?;
                ok(json!({"DataCatalogsSummary": [{"CatalogName": "AwsDataCatalog", "Type": "GLUE"}]}))
            }
            "GetDataCatalog" => {
                let name = r.name.clone().unwrap_or_default();
                if name != "AwsDataCatalog" {
                    return Err(invalid(format!("DataCatalog {name} was not found")));
                }
                allow(arn("datacatalog/AwsDataCatalog"))?;
                ok(
                    json!({"DataCatalog": {"Name": "AwsDataCatalog", "Type": "GLUE", "Parameters": {"catalog-id": scope.account}}}),
                )
            }
            "ListDatabases" | "GetDatabase" | "ListTableMetadata" | "GetTableMetadata" => {
                let cat = r.catalog_name.clone().unwrap_or_default();
                if cat != "AwsDataCatalog" {
                    return Err(ServiceError::client(
                        "MetadataException",
                        format!("Catalog {cat} is not found"),
                    ));
                }
                allow(arn("datacatalog/AwsDataCatalog"))?;
                let port = self.query.catalog();
                match op {
                    "ListDatabases" => {
                        let n = max(50, 50)?;
                        let dbs = port.databases(&scope, access.as_ref()).map_err(port_error)?;
                        let list: Vec<Value> = dbs
                            .iter()
                            .map(|d| json!({"Name": d.name, "Description": d.description, "Parameters": d.parameters}))
                            .collect();
                        let (items, next) = page(&list, r.next_token.as_deref(), n)?;
                        let mut v = json!({"DatabaseList": items});
                        if let Some(t) = next {
                            v["NextToken"] = json!(t);
                        }
                        ok(v)
                    }
                    "GetDatabase" => {
                        let name = r.database_name.clone().unwrap_or_default();
                        let d = port.database(&scope, access.as_ref(), &name).map_err(port_error)?;
                        ok(
                            json!({"Database": {"Name": d.name, "Description": d.description, "Parameters": d.parameters}}),
                        )
                    }
                    "ListTableMetadata" => {
                        let n = max(50, 50)?;
                        let db = r.database_name.clone().unwrap_or_default();
                        let tables = port.tables(&scope, access.as_ref(), &db).map_err(port_error)?;
                        let pattern = r.expression.clone();
                        let list: Vec<Value> = tables
                            .iter()
                            .filter(|t| pattern.as_deref().is_none_or(|p| simple_match(p, &t.name)))
                            .map(table_json)
                            .collect();
                        let (items, next) = page(&list, r.next_token.as_deref(), n)?;
                        let mut v = json!({"TableMetadataList": items});
                        if let Some(t) = next {
                            v["NextToken"] = json!(t);
                        }
                        ok(v)
                    }
                    _ => {
                        let db = r.database_name.clone().unwrap_or_default();
                        let name = r.table_name.clone().unwrap_or_default();
                        let t = port.table(&scope, access.as_ref(), &db, &name).map_err(port_error)?;
                        ok(json!({"TableMetadata": table_json(&t)}))
                    }
                }
            }
            other => Err(ServiceError::client(
                "UnknownOperationException",
                format!("Operation {other} is not supported by kinesis-data's Athena."),
            )),
        }
    }
}

/// `*` wildcards, `|` alternatives, case-insensitive (ListTableMetadata's Expression).
fn simple_match(pattern: &str, name: &str) -> bool {
    pattern
        .split('|')
        .any(|alt| glob(&alt.to_lowercase(), &name.to_lowercase()))
}

fn glob(p: &str, s: &str) -> bool {
    match p.split_once('*') {
        None => p == s,
        Some((head, rest)) => {
            if !s.starts_with(head) {
                return false;
            }
            let s = &s[head.len()..];
            (0..=s.len())
                .filter(|i| s.is_char_boundary(*i))
                .any(|i| glob(rest, &s[i..]))
        }
    }
}
