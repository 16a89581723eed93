//! The Amazon Athena adapter: awsJson1.1 requests with `X-Amz-Target:
//! AmazonAthena.<Operation>` become calls on [`kd_query::Query`], and its answers or errors
//! become the wire reply. It sits between the `edge` and the query engine; it checks the
//! modeled constraints (InvalidRequestException, as Athena answers them), asks IAM for
//! `athena:<Operation>` on `arn:aws:athena:<region>:<account>:workgroup/<name>` (the
//! workgroup the operation or execution belongs to; the ARN given for the tagging operations;
//! `datacatalog/AwsDataCatalog` for the metadata operations), and hands the engine the
//! caller's authoriser, since Athena reads tables and writes results as its caller.

use std::sync::Arc;

use bytes::Bytes;
use kd_query::{
    Access, ColumnDef, ConfigUpdate, Encryption, Error, Execution, NewWorkGroup, PortError, Query, ResultSettings,
    Scope, StartRequest, State, TableDef, WorkGroup, WorkGroupConfig, WorkGroupState, WorkGroupUpdate,
};
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
        Error::ResourceNotFound(_) => ServiceError::client("ResourceNotFoundException", msg),
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

fn engine_version_json(c: &WorkGroupConfig) -> Value {
    json!({"SelectedEngineVersion": c.engine_version, "EffectiveEngineVersion": c.effective_engine_version()})
}

/// GetWorkGroup's `WorkGroup`.
fn workgroup_json(w: &WorkGroup) -> Value {
    let c = &w.config;
    let mut rc = json!({});
    if let Some(l) = &c.result.output_location {
        rc["OutputLocation"] = json!(l);
    }
    if let Some(e) = &c.result.encryption {
        rc["EncryptionConfiguration"] = json!({"EncryptionOption": e.option});
        if let Some(k) = &e.kms_key {
            rc["EncryptionConfiguration"]["KmsKey"] = json!(k);
        }
    }
    if let Some(o) = &c.result.expected_bucket_owner {
        rc["ExpectedBucketOwner"] = json!(o);
    }
    if let Some(a) = &c.result.acl {
        rc["AclConfiguration"] = json!({"S3AclOption": a});
    }
    let mut conf = json!({
        "ResultConfiguration": rc,
        "EnforceWorkGroupConfiguration": c.enforce,
        "PublishCloudWatchMetricsEnabled": c.publish_metrics,
        "RequesterPaysEnabled": c.requester_pays,
        "EngineVersion": engine_version_json(c),
    });
    if let Some(b) = c.bytes_cutoff {
        conf["BytesScannedCutoffPerQuery"] = json!(b);
    }
    let mut v = json!({
        "Name": w.name,
        "State": w.state.as_str(),
        "Configuration": conf,
        "CreationTime": secs(w.created_ms),
    });
    if let Some(d) = &w.description {
        v["Description"] = json!(d);
    }
    v
}

/// ListWorkGroups' `WorkGroupSummary`.
fn workgroup_summary_json(w: &WorkGroup) -> Value {
    let mut v = json!({
        "Name": w.name,
        "State": w.state.as_str(),
        "CreationTime": secs(w.created_ms),
        "EngineVersion": engine_version_json(&w.config),
    });
    if let Some(d) = &w.description {
        v["Description"] = json!(d);
    }
    v
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
    description: Option<String>,
    configuration: Option<ConfigurationIn>,
    configuration_updates: Option<ConfigurationUpdatesIn>,
    state: Option<String>,
    tags: Option<Vec<TagIn>>,
    recursive_delete_option: Option<bool>,
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
    tag_keys: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct TagIn {
    key: Option<String>,
    value: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct EncryptionIn {
    encryption_option: Option<String>,
    kms_key: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct AclIn {
    s3_acl_option: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct EngineVersionIn {
    selected_engine_version: Option<String>,
}

/// A workgroup's ResultConfiguration as CreateWorkGroup takes it.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ResultConfigurationIn {
    output_location: Option<String>,
    encryption_configuration: Option<EncryptionIn>,
    expected_bucket_owner: Option<String>,
    acl_configuration: Option<AclIn>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ConfigurationIn {
    result_configuration: Option<ResultConfigurationIn>,
    enforce_work_group_configuration: Option<bool>,
    publish_cloud_watch_metrics_enabled: Option<bool>,
    bytes_scanned_cutoff_per_query: Option<i64>,
    requester_pays_enabled: Option<bool>,
    engine_version: Option<EngineVersionIn>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ResultConfigurationUpdatesIn {
    output_location: Option<String>,
    remove_output_location: Option<bool>,
    encryption_configuration: Option<EncryptionIn>,
    remove_encryption_configuration: Option<bool>,
    expected_bucket_owner: Option<String>,
    remove_expected_bucket_owner: Option<bool>,
    acl_configuration: Option<AclIn>,
    remove_acl_configuration: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ConfigurationUpdatesIn {
    enforce_work_group_configuration: Option<bool>,
    result_configuration_updates: Option<ResultConfigurationUpdatesIn>,
    publish_cloud_watch_metrics_enabled: Option<bool>,
    bytes_scanned_cutoff_per_query: Option<i64>,
    remove_bytes_scanned_cutoff_per_query: Option<bool>,
    requester_pays_enabled: Option<bool>,
    engine_version: Option<EngineVersionIn>,
}

fn null(at: &str) -> ServiceError {
    invalid(format!(
        "1 validation error detected: Value null at '{at}' failed to satisfy constraint: Member must not be null"
    ))
}

fn encryption(e: EncryptionIn, at: &str) -> Result<Encryption, ServiceError> {
    Ok(Encryption {
        option: e
            .encryption_option
            .ok_or_else(|| null(&format!("{at}.encryptionConfiguration.encryptionOption")))?,
        kms_key: e.kms_key,
    })
}

fn acl(a: AclIn, at: &str) -> Result<String, ServiceError> {
    a.s3_acl_option
        .ok_or_else(|| null(&format!("{at}.aclConfiguration.s3AclOption")))
}

/// A cutoff as a number of bytes (the engine checks the minimum).
fn cutoff(v: Option<i64>) -> Result<Option<u64>, ServiceError> {
    v.map(|n| {
        u64::try_from(n).map_err(|_| {
            invalid(format!(
                "1 validation error detected: Value '{n}' at 'configuration.bytesScannedCutoffPerQuery' failed to satisfy constraint: Member must have value greater than or equal to {}",
                kd_query::workgroups::MIN_BYTES_SCANNED_CUTOFF
            ))
        })
    })
    .transpose()
}

/// CreateWorkGroup's Configuration, with AWS's defaults for what it leaves out.
fn new_config(c: Option<ConfigurationIn>) -> Result<WorkGroupConfig, ServiceError> {
    let mut out = WorkGroupConfig::created_default();
    let Some(c) = c else {
        return Ok(out);
    };
    if let Some(r) = c.result_configuration {
        let at = "configuration.resultConfiguration";
        out.result = ResultSettings {
            output_location: r.output_location,
            encryption: r.encryption_configuration.map(|e| encryption(e, at)).transpose()?,
            expected_bucket_owner: r.expected_bucket_owner,
            acl: r.acl_configuration.map(|a| acl(a, at)).transpose()?,
        };
    }
    if let Some(v) = c.enforce_work_group_configuration {
        out.enforce = v;
    }
    if let Some(v) = c.publish_cloud_watch_metrics_enabled {
        out.publish_metrics = v;
    }
    if let Some(v) = c.requester_pays_enabled {
        out.requester_pays = v;
    }
    out.bytes_cutoff = cutoff(c.bytes_scanned_cutoff_per_query)?;
    if let Some(v) = c.engine_version.and_then(|e| e.selected_engine_version) {
        out.engine_version = v;
    }
    Ok(out)
}

/// UpdateWorkGroup's ConfigurationUpdates.
fn config_update(c: ConfigurationUpdatesIn) -> Result<ConfigUpdate, ServiceError> {
    let mut out = ConfigUpdate {
        enforce: c.enforce_work_group_configuration,
        publish_metrics: c.publish_cloud_watch_metrics_enabled,
        bytes_cutoff: cutoff(c.bytes_scanned_cutoff_per_query)?,
        remove_bytes_cutoff: c.remove_bytes_scanned_cutoff_per_query.unwrap_or(false),
        requester_pays: c.requester_pays_enabled,
        engine_version: c.engine_version.and_then(|e| e.selected_engine_version),
        ..ConfigUpdate::default()
    };
    if let Some(r) = c.result_configuration_updates {
        let at = "configurationUpdates.resultConfigurationUpdates";
        out.output_location = r.output_location;
        out.remove_output_location = r.remove_output_location.unwrap_or(false);
        out.encryption = r.encryption_configuration.map(|e| encryption(e, at)).transpose()?;
        out.remove_encryption = r.remove_encryption_configuration.unwrap_or(false);
        out.expected_bucket_owner = r.expected_bucket_owner;
        out.remove_expected_bucket_owner = r.remove_expected_bucket_owner.unwrap_or(false);
        out.acl = r.acl_configuration.map(|a| acl(a, at)).transpose()?;
        out.remove_acl = r.remove_acl_configuration.unwrap_or(false);
    }
    Ok(out)
}

fn tags_in(tags: Option<Vec<TagIn>>) -> Result<Vec<(String, String)>, ServiceError> {
    tags.unwrap_or_default()
        .into_iter()
        .map(|t| {
            Ok((
                t.key.ok_or_else(|| null("tags.member.key"))?,
                t.value.unwrap_or_default(),
            ))
        })
        .collect()
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
                let mut found = Vec::new();
                let mut missing = Vec::new();
                let mut allowed = std::collections::BTreeSet::new();
                for id in ids {
                    match self.query.get(&scope, &id) {
                        Ok(e) => {
                            if allowed.insert(e.workgroup.clone()) {
                                allow(arn(&format!("workgroup/{}", e.workgroup)))?;
                            }
                            found.push(execution_json(&e));
                        }
                        Err(e) => missing.push(json!({"QueryExecutionId": id, "ErrorCode": "INVALID_INPUT", "ErrorMessage": e.to_string()})),
                    }
                }
                if allowed.is_empty() {
                    allow(arn("workgroup/primary"))?;
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
            "CreateWorkGroup" => {
                let name = r.name.clone().ok_or_else(|| null("name"))?;
                kd_query::workgroups::check_name(&name, "name").map_err(to_service_error)?;
                allow(arn(&format!("workgroup/{name}")))?;
                let new = NewWorkGroup {
                    name,
                    description: r.description,
                    config: new_config(r.configuration)?,
                    tags: tags_in(r.tags)?,
                };
                self.query
                    .create_workgroup(&scope, new)
                    .await
                    .map_err(to_service_error)?;
                ok(json!({}))
            }
            "GetWorkGroup" => {
                let name = r.work_group.clone().ok_or_else(|| null("workGroup"))?;
                kd_query::workgroups::check_name(&name, "workGroup").map_err(to_service_error)?;
                allow(arn(&format!("workgroup/{name}")))?;
                let w = self
                    .query
                    .get_workgroup(&scope, &name)
                    .await
                    .map_err(to_service_error)?;
                ok(json!({ "WorkGroup": workgroup_json(&w) }))
            }
            "ListWorkGroups" => {
                let n = max(50, 50)?;
                allow(arn("workgroup/primary"))?;
                let token = r.next_token.as_deref().filter(|t| !t.is_empty());
                let (items, next) = self
                    .query
                    .list_workgroups(&scope, token, n)
                    .await
                    .map_err(to_service_error)?;
                let mut v = json!({ "WorkGroups": items.iter().map(workgroup_summary_json).collect::<Vec<_>>() });
                if let Some(t) = next {
                    v["NextToken"] = json!(t);
                }
                ok(v)
            }
            "UpdateWorkGroup" => {
                let name = r.work_group.clone().ok_or_else(|| null("workGroup"))?;
                kd_query::workgroups::check_name(&name, "workGroup").map_err(to_service_error)?;
                allow(arn(&format!("workgroup/{name}")))?;
                let update = WorkGroupUpdate {
                    description: r.description,
                    state: r
                        .state
                        .as_deref()
                        .map(WorkGroupState::parse)
                        .transpose()
                        .map_err(to_service_error)?,
                    config: r.configuration_updates.map(config_update).transpose()?,
                };
                self.query
                    .update_workgroup(&scope, &name, update)
                    .await
                    .map_err(to_service_error)?;
                ok(json!({}))
            }
            "DeleteWorkGroup" => {
                let name = r.work_group.clone().ok_or_else(|| null("workGroup"))?;
                kd_query::workgroups::check_name(&name, "workGroup").map_err(to_service_error)?;
                allow(arn(&format!("workgroup/{name}")))?;
                self.query
                    .delete_workgroup(&scope, &name, r.recursive_delete_option.unwrap_or(false))
                    .await
                    .map_err(to_service_error)?;
                ok(json!({}))
            }
            "TagResource" | "UntagResource" | "ListTagsForResource" => {
                let resource = r.resource_arn.clone().ok_or_else(|| null("resourceARN"))?;
                if resource.len() > 1011 {
                    return Err(invalid(
                        "1 validation error detected: Value at 'resourceARN' failed to satisfy constraint: Member must have length less than or equal to 1011",
                    ));
                }
                allow(resource.clone())?;
                match op {
                    "TagResource" => {
                        let tags = r.tags.ok_or_else(|| null("tags"))?;
                        self.query
                            .tag_workgroup(&scope, &resource, tags_in(Some(tags))?)
                            .await
                            .map_err(to_service_error)?;
                        ok(json!({}))
                    }
                    "UntagResource" => {
                        let keys = r.tag_keys.clone().ok_or_else(|| null("tagKeys"))?;
                        if keys.len() > kd_query::workgroups::MAX_TAGS {
                            return Err(invalid(format!(
                                "1 validation error detected: Value at 'tagKeys' failed to satisfy constraint: Member must have length less than or equal to {}",
                                kd_query::workgroups::MAX_TAGS
                            )));
                        }
                        self.query
                            .untag_workgroup(&scope, &resource, keys)
                            .await
                            .map_err(to_service_error)?;
                        ok(json!({}))
                    }
                    _ => {
                        let n = match r.max_results {
                            None => usize::MAX,
                            Some(m) if m >= 75 => usize::try_from(m).unwrap_or(usize::MAX),
                            Some(m) => {
                                return Err(invalid(format!(
                                    "1 validation error detected: Value '{m}' at 'maxResults' failed to satisfy constraint: Member must have value greater than or equal to 75"
                                )));
                            }
                        };
                        let token = r.next_token.as_deref().filter(|t| !t.is_empty());
                        let (tags, next) = self
                            .query
                            .workgroup_tags(&scope, &resource, token, n)
                            .await
                            .map_err(to_service_error)?;
                        let mut v = json!({
                            "Tags": tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>(),
                        });
                        if let Some(t) = next {
                            v["NextToken"] = json!(t);
                        }
                        ok(v)
                    }
                }
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
