//! Lambda restJson1 adapter: maps the `/2015-03-31/functions…`, `/2015-03-31/event-source-mappings…`
//! and related paths of AWS's Lambda API onto the functions engine (`kd-functions`), checks
//! the caller's IAM permission for each operation, and renders results and errors in AWS's
//! shapes (HTTP status, `X-Amzn-ErrorType`, JSON `message`). It sits between the edge
//! (authentication, dispatch) and the engine; it holds no state of its own.

// Handlers return `Result<Response, Response>`: the error is the rendered AWS error, built
// once on the failure path; boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use kd_functions::esm::MappingInput;
use kd_functions::{CodeInput, Error, EventInvokeConfig, FunctionInput, Functions, InvokeRequest, Scope};
use kd_wire::{RequestContext, ServiceError, render_error};
use serde::Deserialize;
use serde_json::{Value, json};

/// Largest request body the adapter accepts (a 50 MB zip as base64 JSON, as AWS's
/// 70,167,211-byte limit).
pub const MAX_BODY: usize = 70_167_211;

/// Where GetFunction's `Code.Location` points (the edge serves it).
pub const CODE_PATH: &str = "/_kinesis-data/lambda-code/";

/// The Lambda API over the functions engine.
#[derive(Clone)]
pub struct LambdaApi {
    engine: Arc<Functions>,
}

type Resp = Response<Bytes>;

fn json_response(status: StatusCode, v: &Value, request_id: &str) -> Resp {
    let mut r = Response::new(Bytes::from(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    kd_wire::insert(r.headers_mut(), "x-amzn-requestid", request_id);
    r
}

fn empty(status: StatusCode, request_id: &str) -> Resp {
    let mut r = Response::new(Bytes::new());
    *r.status_mut() = status;
    kd_wire::insert(r.headers_mut(), "x-amzn-requestid", request_id);
    r
}

/// The AWS error of an engine error.
pub fn service_error(e: &Error) -> ServiceError {
    let (status, code) = match e {
        Error::ResourceNotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFoundException"),
        Error::ResourceConflict(_) => (StatusCode::CONFLICT, "ResourceConflictException"),
        Error::InvalidParameterValue(_) => (StatusCode::BAD_REQUEST, "InvalidParameterValueException"),
        Error::InvalidRequestContent(_) => (StatusCode::BAD_REQUEST, "InvalidRequestContentException"),
        Error::RequestTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "RequestTooLargeException"),
        Error::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException"),
        Error::PreconditionFailed(_) => (StatusCode::PRECONDITION_FAILED, "PreconditionFailedException"),
        Error::PolicyLengthExceeded(_) => (StatusCode::BAD_REQUEST, "PolicyLengthExceededException"),
        Error::CodeStorageExceeded(_) => (StatusCode::BAD_REQUEST, "CodeStorageExceededException"),
        Error::Service(_) => (StatusCode::INTERNAL_SERVER_ERROR, "ServiceException"),
    };
    ServiceError::with_status(status, code, e.to_string())
}

fn error(e: &Error, request_id: &str) -> Resp {
    if let Error::Service(m) = e {
        tracing::error!(%request_id, error = %m, "Lambda service error");
    }
    let mut r = render_error(kd_wire::Protocol::RestJson, &service_error(e), request_id);
    if let Error::TooManyRequests { message, reason } = e {
        let body =
            json!({"message": message, "Message": message, "Type": "User", "Reason": reason, "retryAfterSeconds": "1"});
        *r.body_mut() = Bytes::from(body.to_string());
        kd_wire::insert(r.headers_mut(), "retry-after", "1");
    }
    r
}

fn client(code: &str, message: impl Into<String>, request_id: &str) -> Resp {
    render_error(
        kd_wire::Protocol::RestJson,
        &ServiceError::client(code, message),
        request_id,
    )
}

fn denied(message: String, request_id: &str) -> Resp {
    render_error(
        kd_wire::Protocol::RestJson,
        &ServiceError::with_status(StatusCode::FORBIDDEN, "AccessDeniedException", message),
        request_id,
    )
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Error> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| Error::InvalidRequestContent(format!("Could not parse request body into json: {e}")))
}

fn query_map(query: Option<&str>) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        m.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    m
}

fn q1<'a>(q: &'a BTreeMap<String, Vec<String>>, k: &str) -> Option<&'a str> {
    q.get(k).and_then(|v| v.first()).map(String::as_str)
}

fn max_items(q: &BTreeMap<String, Vec<String>>) -> Result<usize, Error> {
    match q1(q, "MaxItems") {
        None => Ok(50),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => Ok(n),
            _ => Err(Error::InvalidParameterValue(format!(
                "1 validation error detected: Value '{v}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 10000"
            ))),
        },
    }
}

fn decode_segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnvironmentIn {
    variables: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeadLetterIn {
    target_arn: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EphemeralIn {
    size: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LoggingIn {
    log_format: Option<String>,
    log_group: Option<String>,
    application_log_level: Option<String>,
    system_log_level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CodeIn {
    zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    s3_bucket: Option<String>,
    #[serde(rename = "S3Key")]
    s3_key: Option<String>,
    #[serde(rename = "S3ObjectVersion")]
    s3_object_version: Option<String>,
    image_uri: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FunctionIn {
    function_name: Option<String>,
    runtime: Option<String>,
    role: Option<String>,
    handler: Option<String>,
    description: Option<String>,
    timeout: Option<u32>,
    memory_size: Option<u32>,
    environment: Option<EnvironmentIn>,
    architectures: Option<Vec<String>>,
    ephemeral_storage: Option<EphemeralIn>,
    dead_letter_config: Option<DeadLetterIn>,
    layers: Option<Vec<String>>,
    logging_config: Option<LoggingIn>,
    revision_id: Option<String>,
    package_type: Option<String>,
    code: Option<CodeIn>,
    publish: Option<bool>,
    tags: Option<BTreeMap<String, String>>,
    #[serde(rename = "VpcConfig")]
    _vpc_config: Option<Value>,
    #[serde(rename = "TracingConfig")]
    _tracing_config: Option<Value>,
    #[serde(rename = "KMSKeyArn")]
    _kms_key_arn: Option<String>,
}

impl FunctionIn {
    fn input(&self) -> FunctionInput {
        FunctionInput {
            runtime: self.runtime.clone(),
            handler: self.handler.clone(),
            role: self.role.clone(),
            description: self.description.clone(),
            timeout: self.timeout,
            memory_size: self.memory_size,
            environment: self
                .environment
                .as_ref()
                .map(|e| e.variables.clone().unwrap_or_default()),
            architectures: self.architectures.clone(),
            ephemeral_storage: self.ephemeral_storage.as_ref().and_then(|e| e.size),
            dead_letter_target: self
                .dead_letter_config
                .as_ref()
                .map(|d| d.target_arn.clone().unwrap_or_default()),
            layers: self.layers.clone(),
            log_format: self.logging_config.as_ref().and_then(|l| l.log_format.clone()),
            log_group: self.logging_config.as_ref().and_then(|l| l.log_group.clone()),
            application_log_level: self
                .logging_config
                .as_ref()
                .and_then(|l| l.application_log_level.clone()),
            system_log_level: self.logging_config.as_ref().and_then(|l| l.system_log_level.clone()),
            revision_id: self.revision_id.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateCodeIn {
    zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    s3_bucket: Option<String>,
    #[serde(rename = "S3Key")]
    s3_key: Option<String>,
    #[serde(rename = "S3ObjectVersion")]
    s3_object_version: Option<String>,
    image_uri: Option<String>,
    publish: Option<bool>,
    revision_id: Option<String>,
    architectures: Option<Vec<String>>,
    dry_run: Option<bool>,
}

fn code_input(
    zip_file: Option<&str>,
    bucket: Option<&str>,
    key: Option<&str>,
    version: Option<&str>,
    image: Option<&str>,
) -> Result<CodeInput, Error> {
    use base64::Engine as _;
    if image.is_some() {
        return Err(Error::InvalidParameterValue(
            "kinesis-data runs .zip deployment packages only; container images (ImageUri) are not supported".into(),
        ));
    }
    match (zip_file, bucket, key) {
        (Some(z), None, None) => base64::engine::general_purpose::STANDARD
            .decode(z.trim())
            .map(|b| CodeInput::Zip(Bytes::from(b)))
            .map_err(|_| {
                Error::InvalidParameterValue(
                    "Could not unzip uploaded file. Please check your file, then try to upload again.".into(),
                )
            }),
        (None, Some(b), Some(k)) => Ok(CodeInput::S3 {
            bucket: b.to_owned(),
            key: k.to_owned(),
            version: version.map(str::to_owned),
        }),
        (None, None, None) => Err(Error::InvalidParameterValue(
            "Please provide a source for function code.".into(),
        )),
        _ => Err(Error::InvalidParameterValue(
            "Please do not provide other FunctionCode parameters when providing a ZipFile; S3Bucket and S3Key go together.".into(),
        )),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PermissionIn {
    statement_id: Option<String>,
    action: Option<String>,
    principal: Option<String>,
    source_arn: Option<String>,
    source_account: Option<String>,
    principal_org_i_d: Option<String>,
    function_url_auth_type: Option<String>,
    revision_id: Option<String>,
    #[serde(rename = "EventSourceToken")]
    _event_source_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliasIn {
    name: Option<String>,
    function_version: Option<String>,
    description: Option<String>,
    revision_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublishIn {
    code_sha256: Option<String>,
    description: Option<String>,
    revision_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConcurrencyIn {
    reserved_concurrent_executions: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DestinationIn {
    destination: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DestinationConfigIn {
    on_success: Option<DestinationIn>,
    on_failure: Option<DestinationIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EventInvokeIn {
    maximum_retry_attempts: Option<u32>,
    maximum_event_age_in_seconds: Option<u32>,
    destination_config: Option<DestinationConfigIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MappingIn {
    event_source_arn: Option<String>,
    function_name: Option<String>,
    enabled: Option<bool>,
    batch_size: Option<u32>,
    starting_position: Option<String>,
    starting_position_timestamp: Option<f64>,
    maximum_batching_window_in_seconds: Option<u32>,
    maximum_retry_attempts: Option<i32>,
    maximum_record_age_in_seconds: Option<i32>,
    bisect_batch_on_function_error: Option<bool>,
    parallelization_factor: Option<u32>,
    function_response_types: Option<Vec<String>>,
    destination_config: Option<DestinationConfigIn>,
    tumbling_window_in_seconds: Option<u32>,
}

impl MappingIn {
    fn input(self) -> MappingInput {
        MappingInput {
            event_source_arn: self.event_source_arn,
            function_name: self.function_name,
            enabled: self.enabled,
            batch_size: self.batch_size,
            starting_position: self.starting_position,
            starting_position_timestamp: self.starting_position_timestamp,
            maximum_batching_window_in_seconds: self.maximum_batching_window_in_seconds,
            maximum_retry_attempts: self.maximum_retry_attempts,
            maximum_record_age_in_seconds: self.maximum_record_age_in_seconds,
            bisect_batch_on_function_error: self.bisect_batch_on_function_error,
            parallelization_factor: self.parallelization_factor,
            function_response_types: self.function_response_types,
            on_failure_destination: self
                .destination_config
                .and_then(|d| d.on_failure)
                .and_then(|d| d.destination),
            tumbling_window_in_seconds: self.tumbling_window_in_seconds,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagsIn {
    tags: Option<BTreeMap<String, String>>,
}

/// One request, split into what the routes need.
struct Call<'a> {
    ctx: &'a RequestContext,
    scope: Scope,
    query: BTreeMap<String, Vec<String>>,
    headers: &'a HeaderMap,
    body: &'a Bytes,
    endpoint: &'a str,
}

impl Call<'_> {
    fn rid(&self) -> &str {
        &self.ctx.request_id
    }

    fn arn(&self, name: &str) -> String {
        match kd_functions::FunctionRef::parse(name) {
            Some(r) => {
                let base = kd_functions::function_arn(&self.scope, &r.name);
                match r.qualifier {
                    Some(q) => format!("{base}:{q}"),
                    None => base,
                }
            }
            None => kd_functions::function_arn(&self.scope, name),
        }
    }

    /// IAM check of `action` on `resource`.
    fn allow(&self, action: &str, resource: &str) -> Result<(), Resp> {
        if !self.ctx.authz.enforced() {
            return Ok(());
        }
        self.ctx
            .authz
            .authorize(action, resource)
            .map_err(|m| denied(m, self.rid()))
    }
}

impl LambdaApi {
    /// The adapter over `engine`.
    pub fn new(engine: Arc<Functions>) -> Self {
        Self { engine }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Functions> {
        &self.engine
    }

    /// Handles one authenticated Lambda request. `endpoint` is the URL base the caller used
    /// (for `Code.Location`).
    #[allow(clippy::too_many_arguments)]
    pub async fn handle(
        &self,
        ctx: &RequestContext,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &Bytes,
        endpoint: &str,
    ) -> Resp {
        let call = Call {
            ctx,
            scope: Scope {
                account: ctx.account_id.clone(),
                region: ctx.region.clone(),
            },
            query: query_map(query),
            headers,
            body,
            endpoint,
        };
        let segs: Vec<String> = path.trim_start_matches('/').split('/').map(decode_segment).collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let m = method.as_str();
        let out = match (m, segs.as_slice()) {
            ("POST", ["2015-03-31", "functions"] | ["2015-03-31", "functions", ""]) => {
                self.create_function(&call).await
            }
            ("GET", ["2015-03-31", "functions"] | ["2015-03-31", "functions", ""]) => self.list_functions(&call),
            ("GET", ["2015-03-31", "functions", f]) => self.get_function(&call, f, true),
            ("DELETE", ["2015-03-31", "functions", f]) => self.delete_function(&call, f).await,
            ("GET", ["2015-03-31", "functions", f, "configuration"]) => self.get_function(&call, f, false),
            ("PUT", ["2015-03-31", "functions", f, "configuration"]) => self.update_configuration(&call, f).await,
            ("PUT", ["2015-03-31", "functions", f, "code"]) => self.update_code(&call, f).await,
            ("POST", ["2015-03-31", "functions", f, "invocations"]) => self.invoke(&call, f).await,
            ("POST", ["2015-03-31", "functions", f, "policy"]) => self.add_permission(&call, f).await,
            ("GET", ["2015-03-31", "functions", f, "policy"]) => self.get_policy(&call, f),
            ("DELETE", ["2015-03-31", "functions", f, "policy", sid]) => self.remove_permission(&call, f, sid).await,
            ("POST", ["2015-03-31", "functions", f, "versions"]) => self.publish_version(&call, f).await,
            ("GET", ["2015-03-31", "functions", f, "versions"]) => self.list_versions(&call, f),
            ("POST", ["2015-03-31", "functions", f, "aliases"]) => self.put_alias(&call, f, None).await,
            ("GET", ["2015-03-31", "functions", f, "aliases"]) => self.list_aliases(&call, f),
            ("GET", ["2015-03-31", "functions", f, "aliases", a]) => self.get_alias(&call, f, a),
            ("PUT", ["2015-03-31", "functions", f, "aliases", a]) => self.put_alias(&call, f, Some(a)).await,
            ("DELETE", ["2015-03-31", "functions", f, "aliases", a]) => self.delete_alias(&call, f, a).await,
            ("PUT", ["2017-10-31", "functions", f, "concurrency"]) => self.put_concurrency(&call, f).await,
            ("DELETE", ["2017-10-31", "functions", f, "concurrency"]) => self.delete_concurrency(&call, f).await,
            ("GET", ["2019-09-30", "functions", f, "concurrency"]) => self.get_concurrency(&call, f),
            ("PUT", ["2019-09-25", "functions", f, "event-invoke-config"]) => {
                self.put_event_invoke(&call, f, false).await
            }
            ("POST", ["2019-09-25", "functions", f, "event-invoke-config"]) => {
                self.put_event_invoke(&call, f, true).await
            }
            ("GET", ["2019-09-25", "functions", f, "event-invoke-config"]) => self.get_event_invoke(&call, f),
            ("DELETE", ["2019-09-25", "functions", f, "event-invoke-config"]) => {
                self.delete_event_invoke(&call, f).await
            }
            ("POST", ["2015-03-31", "event-source-mappings"] | ["2015-03-31", "event-source-mappings", ""]) => {
                self.create_mapping(&call).await
            }
            ("GET", ["2015-03-31", "event-source-mappings"] | ["2015-03-31", "event-source-mappings", ""]) => {
                self.list_mappings(&call)
            }
            ("GET", ["2015-03-31", "event-source-mappings", id]) => self.get_mapping(&call, id),
            ("PUT", ["2015-03-31", "event-source-mappings", id]) => self.update_mapping(&call, id).await,
            ("DELETE", ["2015-03-31", "event-source-mappings", id]) => self.delete_mapping(&call, id).await,
            ("POST", ["2017-03-31", "tags", arn]) => self.tag(&call, arn).await,
            ("GET", ["2017-03-31", "tags", arn]) => self.list_tags(&call, arn),
            ("DELETE", ["2017-03-31", "tags", arn]) => self.untag(&call, arn).await,
            ("GET", ["2016-08-19", "account-settings"] | ["2016-08-19", "account-settings", ""]) => {
                Ok(self.account_settings(&call))
            }
            _ => Ok(client(
                "UnknownOperationException",
                format!("Unknown operation {m} {path}"),
                call.rid(),
            )),
        };
        match out {
            Ok(r) => r,
            Err(r) => r,
        }
    }

    fn fail(&self, call: &Call<'_>, e: Error) -> Resp {
        error(&e, call.rid())
    }

    async fn create_function(&self, call: &Call<'_>) -> Result<Resp, Resp> {
        let input: FunctionIn = parse(call.body).map_err(|e| self.fail(call, e))?;
        let Some(name) = input.function_name.clone() else {
            return Err(client(
                "InvalidParameterValueException",
                "FunctionName is required",
                call.rid(),
            ));
        };
        call.allow("lambda:CreateFunction", &call.arn(&name))?;
        if let Some(role) = &input.role {
            call.allow("iam:PassRole", role)?;
        }
        if input.package_type.as_deref().is_some_and(|p| p != "Zip") {
            return Err(self.fail(
                call,
                Error::InvalidParameterValue(
                    "kinesis-data runs .zip deployment packages only (PackageType Zip)".into(),
                ),
            ));
        }
        let c = input
            .code
            .as_ref()
            .ok_or_else(|| self.fail(call, Error::InvalidParameterValue("Code is required".into())))?;
        let code = code_input(
            c.zip_file.as_deref(),
            c.s3_bucket.as_deref(),
            c.s3_key.as_deref(),
            c.s3_object_version.as_deref(),
            c.image_uri.as_deref(),
        )
        .map_err(|e| self.fail(call, e))?;
        let view = self
            .engine
            .create_function(
                &call.scope,
                &name,
                input.input(),
                code,
                input.publish.unwrap_or(false),
                input.tags.clone().unwrap_or_default(),
            )
            .await
            .map_err(|e| self.fail(call, e))?;
        Ok(json_response(StatusCode::CREATED, &to_value(&view), call.rid()))
    }

    fn list_functions(&self, call: &Call<'_>) -> Result<Resp, Resp> {
        call.allow("lambda:ListFunctions", "*")?;
        let max = max_items(&call.query).map_err(|e| self.fail(call, e))?;
        let all = q1(&call.query, "FunctionVersion") == Some("ALL");
        let (items, next) = self
            .engine
            .list_functions(&call.scope, q1(&call.query, "Marker"), max, all)
            .map_err(|e| self.fail(call, e))?;
        let mut v = json!({ "Functions": items });
        if let Some(n) = next {
            v["NextMarker"] = Value::from(n);
        }
        Ok(json_response(StatusCode::OK, &v, call.rid()))
    }

    fn get_function(&self, call: &Call<'_>, f: &str, whole: bool) -> Result<Resp, Resp> {
        let action = if whole {
            "lambda:GetFunction"
        } else {
            "lambda:GetFunctionConfiguration"
        };
        call.allow(action, &call.arn(f))?;
        let (doc, view) = self
            .engine
            .get_function(&call.scope, f, q1(&call.query, "Qualifier"))
            .map_err(|e| self.fail(call, e))?;
        if !whole {
            return Ok(json_response(StatusCode::OK, &to_value(&view), call.rid()));
        }
        let sha = doc
            .version_config(&view.version)
            .map(|c| c.code_sha256_hex.clone())
            .unwrap_or_default();
        let mut v = json!({
            "Configuration": to_value(&view),
            "Code": {
                "RepositoryType": "S3",
                "Location": format!("{}{CODE_PATH}{sha}.zip", call.endpoint),
            },
        });
        if !doc.tags.is_empty() {
            v["Tags"] = json!(doc.tags);
        }
        if let Some(n) = doc.reserved_concurrency {
            v["Concurrency"] = json!({ "ReservedConcurrentExecutions": n });
        }
        Ok(json_response(StatusCode::OK, &v, call.rid()))
    }

    async fn delete_function(&self, call: &Call<'_>, f: &str) -> Result<Resp, Resp> {
        call.allow("lambda:DeleteFunction", &call.arn(f))?;
        self.engine
            .delete_function(&call.scope, f, q1(&call.query, "Qualifier"))
            .await
            .map_err(|e| self.fail(call, e))?;
        Ok(empty(StatusCode::NO_CONTENT, call.rid()))
    }

    async fn update_configuration(&self, call: &Call<'_>, f: &str) -> Result<Resp, Resp> {
        call.allow("lambda:UpdateFunctionConfiguration", &call.arn(f))?;
        let input: FunctionIn = parse(call.body).map_err(|e| self.fail(call, e))?;
        if let Some(role) = &input.role {
            call.allow("iam:PassRole", role)?;
        }
        let view = self
            .engine
            .update_configuration(&call.scope, f, input.input())
            .await
            .map_err(|e| self.fail(call, e))?;
        Ok(json_response(StatusCode::OK, &to_value(&view), call.rid()))
    }

    async fn update_code(&self, call: &Call<'_>, f: &str) -> Result<Resp, Resp> {
        call.allow("lambda:UpdateFunctionCode", &call.arn(f))?;
        let input: UpdateCodeIn = parse(call.body).map_err(|e| self.fail(call, e))?;
        let code = code_input(
            input.zip_file.as_deref(),
            input.s3_bucket.as_deref(),
            input.s3_key.as_deref(),
            input.s3_object_version.as_deref(),
            input.image_uri.as_deref(),
        )
        .map_err(|e| self.fail(call, e))?;
        if let Some(a) = &input.architectures
            && (a.len() != 1 || !matches!(a[0].as_str(), "x86_64" | "arm64"))
        {
            return Err(self.fail(
                call,
                Error::InvalidParameterValue("Architectures must hold exactly one of x86_64, arm64".into()),
            ));
        }
        if input.dry_run == Some(true) {
            let (_, view) = self
                .engine
                .get_function(&call.scope, f, None)
                .map_err(|e| self.fail(call, e))?;
            return Ok(json_response(StatusCode::OK, &to_value(&view), call.rid()));
        }
        let view = self
            .engine
            .update_code(&call.scope, f, code, input.publish.unwrap_or(false), input.revision_id)
            .await
            .map_err(|e| self.fail(call, e))?;
        Ok(json_response(StatusCode::OK, &to_value(&view), call.rid()))
    }

    async fn invoke(&self, call: &Call<'_>, f: &str) -> Result<Resp, Resp> {
        let qualifier = q1(&call.query, "Qualifier");
        let resource = match qualifier {
            Some(q) => format!("{}:{q}", call.arn(f)),
            None => call.arn(f),
        };
        call.allow("lambda:InvokeFunction", &resource)?;
        let header = |n: &str| call.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let log_type = header("x-amz-log-type").unwrap_or_else(|| "None".into());
        if !matches!(log_type.as_str(), "None" | "Tail") {
            return Err(self.fail(
                call,
                Error::InvalidParameterValue(format!(
                    "1 validation error detected: Value '{log_type}' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [Tail, None]"
                )),
            ));
        }
        let req = InvokeRequest {
            function_name: f.to_owned(),
            qualifier: qualifier.map(str::to_owned),
            invocation_type: header("x-amz-invocation-type").unwrap_or_else(|| "RequestResponse".into()),
            log_tail: log_type == "Tail",
            client_context: header("x-amz-client-context"),
            payload: call.body.clone(),
        };
        let out = self
            .engine
            .invoke(&call.scope, req)
            .await
            .map_err(|e| self.fail(call, e))?;
        let mut r = Response::new(out.payload);
        *r.status_mut() = StatusCode::from_u16(out.status).unwrap_or(StatusCode::OK);
        let h = r.headers_mut();
        if out.status == 200 {
            h.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            kd_wire::insert(h, "x-amz-executed-version", &out.executed_version);
        }
        kd_wire::insert(h, "x-amzn-requestid", &out.request_id);
        kd_wire::insert(
            h,
            "x-amzn-trace-id",
            &format!("root=1-{}", &out.request_id.replace('-', "")[..24]),
        );
        if let Some(e) = &out.function_error {
            kd_wire::insert(h, "x-amz-function-error", e);
        }
        if let Some(l) = &out.log_result {
            kd_wire::insert(h, "x-amz-log-result", l);
        }
        Ok(r)
    }

    async fn add_permission(&self, call: &Call<'_>, f: &str) -> Result<Resp, Resp> {
        call.allow("lambda:AddPermission", &call.arn(f))?;
        let p: PermissionIn = parse(call.body).map_err(|e| self.fail(call, e))?;
        let (Some(sid), Some(action), Some(principal)) = (&p.statement_id, &p.action, &p.principal) else {
            return Err(self.fail(
                call,
                Error::InvalidParameterValue("StatementId, Action and Principal are required".into()),
            ));
        };
        let st = self
            .engine
            .add_permission(
                &call.scope,
                f,
                q1(&call.query, "Qualifier"),
                sid,
                action,
                principal,
                p.source_arn.as_deref(),
                p.source_account.as_deref(),
                p.principal_org_i_d.as_deref(),
                p.function_url_auth_type.as_deref(),
                p.revision_id.as_deref(),
            )
            .await
            .map_err(|e| self.fail(call, e))?;
        Ok(json_response(
            StatusCode::CREATED,
            &json!({ "Statement": st.to_string() }),
            call.rid(),
        ))
    }

    fn get_policy(&self, call: &Call<'_>, f: &str) -> Result<Resp, Resp> {
        call.allow("lambda:GetPolicy", &call.arn(f))?;
        let (policy, rev) = self.engine.get_policy(&call.scope, f).map_err(|e| self.fail(call, e))?;
        Ok(json_response(
            StatusCode::OK,
            &json!({ "Policy": policy, "RevisionId": rev }),
            call.rid(),
        ))
    }

    async fn remove_permission(&self, call: &Call<'_>, f: &str, sid: &str) -> Result<Resp, Resp> {
        call.allow("lambda:RemovePermission", &call.arn(f))?;
        self.engine
            .remove_permission(&call.scope, f, sid, q1(&call.query, "RevisionId"))
            .await
            .map_err(|e| self.fail(call, e))?;
        Ok(empty(StatusCode::NO_CONTENT, call.rid()))
    }

    async fn publish_version(&self, call: &Call<'_>, f: &str) -> Result<Resp, Resp> {
        call.allow("lambda:PublishVersion", &call.arn(f))?;
        let p: PublishIn = parse(call.body).map_err(|e| self.fail(call, e))?;
        let view = self
            .engine
            .publish_version(&call.scope, f, p.description, p.code_sha256, p.revision_id)
            .await
            .map_err(|e| self.fail(call, e))?;
        Ok(json_response(StatusCode::CREATED, &to_value(&view), call.rid()))
    }

    fn list_versions(&self, call: &Call<'_>, f: &str) -> Result<Resp, Resp> {
        call.allow("lambda:ListVersionsByFunction", &call.arn(f))?;
        let max = max_items(&call.query).map_err(|e| self.fail(call, e))?;
        let (items, next) = self
            .engine
            .list_versions(&call.scope, f, q1(&call.query, "Marker"), max)
            .map_err(|e| self.fail(call, e))?;
        let mut v = json!({ "Versions": items });
        if let Some(n) = next {
            v["NextMarker"] = Value::from(n);
        }
        Ok(json_response(StatusCode::OK, &v, call.rid()))
    }

    fn alias_view(doc: &kd_functions::FunctionDoc, a: &kd_functions::AliasDoc) -> Value {
        json!({
            "AliasArn": format!("{}:{}", doc.arn, a.name),
            "Name": a.name,
            "FunctionVersion": a.function_version,
            "Description": a.description,
            "RevisionId": a.revision_id,
        })
    }

    async fn put_alias(&self, call: &Call<'_>, f: &str, alias: Option<&str>) -> Result<Resp, Resp> {
        let action = if alias.is_some() {
            "lambda:UpdateAlias"
        } else {
            "lambda:CreateAlias"
        };
        call.allow(action, &call.arn(f))?;
        let a: AliasIn = parse(call.body).map_err(|e| self.fail(call, e))?;
        let name = match alias {
            Some(n) => n.to_owned(),
            None => a
                .name
                .clone()
                .ok_or_else(|| self.fail(call, Error::InvalidParameterValue("Name is required".into())))?,
        };
        let (doc, al) = self
            .engine
            .put_alias(
                &call.scope,
                f,
                &name,
                a.function_version,
                a.description,
                alias.is_none(),
                a.revision_id,
            )
            .await
            .map_err(|e| self.fail(call, e))?;
        let status = if alias.is_none() {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok(json_response(status, &Self::alias_view(&doc, &al), call.rid()))
    }

    fn list_aliases(&self, call: &Call<'_>, f: &str) -> Result<Resp, Resp> {
        call.allow("lambda:ListAliases", &call.arn(f))?;
        let (doc, _) = self
            .engine
            .get_function(&call.scope, f, None)
            .map_err(|e| self.fail(call, e))?;
        let version = q1(&call.query, "FunctionVersion");
        let items: Vec<Value> = doc
            .aliases
            .values()
            .filter(|a| version.is_none_or(|v| v == a.function_version))
            .map(|a| Self::alias_view(&doc, a))
            .collect();
        Ok(json_response(StatusCode::OK, &json!({ "Aliases": items }), call.rid()))
    }

    fn get_alias(&self, call: &Call<'_>, f: &str, a: &str) -> Result<Resp, Resp> {
        call.allow("lambda:GetAlias", &call.arn(f))?;
        let (doc, al) = self
            .engine
            .get_alias(&call.scope, f, a)
            .map_err(|e| self.fail(call, e))?;
        Ok(json_response(StatusCode::OK, &Self::alias_view(&doc, &al), call.rid()))
    }

    async fn delete_alias(&self, call: &Call<'_>, f: &str, a: &str) -> Result<Resp, Resp> {
        call.allow("lambda:DeleteAlias", &call.arn(f))?;
        self.engine
            .delete_alias(&call.scope, f, a)
            .await
            .map_err(|e| self.fail(call, e))?;
        Ok(empty(StatusCode::NO_CONTENT, call.rid()))
    }

    async fn put_concurrency(&self, call: &Call<'_>, f: &str) -> Result<Resp, Resp> {
        call.allow("lambda:PutFunctionConcurrency", &call.arn(f))?;
        let c: ConcurrencyIn = parse(call.body).map_err(|e| self.fail(call, e))?;
        let n = c
            .reserved_concurrent_executions
            .filter(|n| *n >= 0)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                self.fail(
                    call,
                    Error::InvalidParameterValue(
                        "1 validation error detected: Value at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 0".into(),
                    ),
                )
            })?;
        let n = self
            .engine
            .put_concurrency(&call.scope, f, n)
            .await
            .map_err(|e| self.fail(call, e))?;
        Ok(json_response(
            StatusCode::OK,
            &json!({ "ReservedConcurrentExecutions": n }),
            call.rid(),
        ))
    }

    async fn delete_concurrency(&self, call: &Call<'_>, f: &str) -> Result<Resp, Resp> {
        call.allow("lambda:DeleteFunctionConcurrency", &call.arn(f))?;
        self.engine
            .delete_concurrency(&call.scope, f)
            .await
            .map_err(|e| self.fail(call, e))?;
        Ok(empty(StatusCode::NO_CONTENT, call.rid()))
    }

    fn get_concurrency(&self, call: &Call<'_>, f: &str) -> Result<Resp, Resp> {
        call.allow("lambda:GetFunctionConcurrency", &call.arn(f))?;
        let (doc, _) = self
            .engine
            .get_function(&call.scope, f, None)
            .map_err(|e| self.fail(call, e))?;
        let v = match doc.reserved_concurrency {
            Some(n) => json!({ "ReservedConcurrentExecutions": n }),
            None => json!({}),
        };
        Ok(json_response(StatusCode::OK, &v, call.rid()))
    }

    fn event_invoke_view(doc: &kd_functions::FunctionDoc, c: &EventInvokeConfig) -> Value {
        let dest = |d: &Option<String>| match d {
            Some(d) => json!({ "Destination": d }),
            None => json!({}),
        };
        json!({
            "FunctionArn": format!("{}:$LATEST", doc.arn),
            "LastModified": c.last_modified_ms as f64 / 1000.0,
            "MaximumRetryAttempts": c.maximum_retry_attempts.unwrap_or(2),
            "MaximumEventAgeInSeconds": c.maximum_event_age_seconds.unwrap_or(21_600),
            "DestinationConfig": { "OnSuccess": dest(&c.on_success), "OnFailure": dest(&c.on_failure) },
        })
    }

    async fn put_event_invoke(&self, call: &Call<'_>, f: &str, merge: bool) -> Result<Resp, Resp> {
        let action = if merge {
            "lambda:UpdateFunctionEventInvokeConfig"
        } else {
            "lambda:PutFunctionEventInvokeConfig"
        };
        call.allow(action, &call.arn(f))?;
        let e: EventInvokeIn = parse(call.body).map_err(|e| self.fail(call, e))?;
        let (on_success, on_failure) = match e.destination_config {
            Some(d) => (
                d.on_success.and_then(|d| d.destination),
                d.on_failure.and_then(|d| d.destination),
            ),
            None => (None, None),
        };
        let cfg = EventInvokeConfig {
            maximum_retry_attempts: e.maximum_retry_attempts,
            maximum_event_age_seconds: e.maximum_event_age_in_seconds,
            on_success,
            on_failure,
            last_modified_ms: 0,
        };
        let (doc, c) = self
            .engine
            .put_event_invoke_config(&call.scope, f, cfg, merge)
            .await
            .map_err(|e| self.fail(call, e))?;
        Ok(json_response(
            StatusCode::OK,
            &Self::event_invoke_view(&doc, &c),
            call.rid(),
        ))
    }

    fn get_event_invoke(&self, call: &Call<'_>, f: &str) -> Result<Resp, Resp> {
        call.allow("lambda:GetFunctionEventInvokeConfig", &call.arn(f))?;
        let (doc, _) = self
            .engine
            .get_function(&call.scope, f, None)
            .map_err(|e| self.fail(call, e))?;
        let c = doc.event_invoke.clone().ok_or_else(|| {
            self.fail(
                call,
                Error::ResourceNotFound(format!("The function {} doesn't have an EventInvokeConfig", doc.arn)),
            )
        })?;
        Ok(json_response(
            StatusCode::OK,
            &Self::event_invoke_view(&doc, &c),
            call.rid(),
        ))
    }

    async fn delete_event_invoke(&self, call: &Call<'_>, f: &str) -> Result<Resp, Resp> {
        call.allow("lambda:DeleteFunctionEventInvokeConfig", &call.arn(f))?;
        self.engine
            .delete_event_invoke_config(&call.scope, f)
            .await
            .map_err(|e| self.fail(call, e))?;
        Ok(empty(StatusCode::NO_CONTENT, call.rid()))
    }

    fn mapping_arn(call: &Call<'_>, id: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:event-source-mapping:{id}",
            call.scope.region, call.scope.account
        )
    }

    async fn create_mapping(&self, call: &Call<'_>) -> Result<Resp, Resp> {
        let m: MappingIn = parse(call.body).map_err(|e| self.fail(call, e))?;
        call.allow("lambda:CreateEventSourceMapping", "*")?;
        let v = self
            .engine
            .create_mapping(&call.scope, m.input())
            .await
            .map_err(|e| self.fail(call, e))?;
        Ok(json_response(StatusCode::ACCEPTED, &v, call.rid()))
    }

    fn list_mappings(&self, call: &Call<'_>) -> Result<Resp, Resp> {
        call.allow("lambda:ListEventSourceMappings", "*")?;
        let max = max_items(&call.query).map_err(|e| self.fail(call, e))?;
        let (items, next) = self
            .engine
            .list_mappings(
                &call.scope,
                q1(&call.query, "EventSourceArn"),
                q1(&call.query, "FunctionName"),
                q1(&call.query, "Marker"),
                max,
            )
            .map_err(|e| self.fail(call, e))?;
        let mut v = json!({ "EventSourceMappings": items });
        if let Some(n) = next {
            v["NextMarker"] = Value::from(n);
        }
        Ok(json_response(StatusCode::OK, &v, call.rid()))
    }

    fn get_mapping(&self, call: &Call<'_>, id: &str) -> Result<Resp, Resp> {
        call.allow("lambda:GetEventSourceMapping", &Self::mapping_arn(call, id))?;
        let v = self
            .engine
            .get_mapping(&call.scope, id)
            .map_err(|e| self.fail(call, e))?;
        Ok(json_response(StatusCode::OK, &v, call.rid()))
    }

    async fn update_mapping(&self, call: &Call<'_>, id: &str) -> Result<Resp, Resp> {
        call.allow("lambda:UpdateEventSourceMapping", &Self::mapping_arn(call, id))?;
        let m: MappingIn = parse(call.body).map_err(|e| self.fail(call, e))?;
        let v = self
            .engine
            .update_mapping(&call.scope, id, m.input())
            .await
            .map_err(|e| self.fail(call, e))?;
        Ok(json_response(StatusCode::ACCEPTED, &v, call.rid()))
    }

    async fn delete_mapping(&self, call: &Call<'_>, id: &str) -> Result<Resp, Resp> {
        call.allow("lambda:DeleteEventSourceMapping", &Self::mapping_arn(call, id))?;
        let v = self
            .engine
            .delete_mapping(&call.scope, id)
            .await
            .map_err(|e| self.fail(call, e))?;
        Ok(json_response(StatusCode::ACCEPTED, &v, call.rid()))
    }

    async fn tag(&self, call: &Call<'_>, arn: &str) -> Result<Resp, Resp> {
        call.allow("lambda:TagResource", arn)?;
        let t: TagsIn = parse(call.body).map_err(|e| self.fail(call, e))?;
        self.engine
            .tag(&call.scope, arn, t.tags.unwrap_or_default(), &[])
            .await
            .map_err(|e| self.fail(call, e))?;
        Ok(empty(StatusCode::NO_CONTENT, call.rid()))
    }

    async fn untag(&self, call: &Call<'_>, arn: &str) -> Result<Resp, Resp> {
        call.allow("lambda:UntagResource", arn)?;
        let keys = call.query.get("tagKeys").cloned().unwrap_or_default();
        self.engine
            .tag(&call.scope, arn, BTreeMap::new(), &keys)
            .await
            .map_err(|e| self.fail(call, e))?;
        Ok(empty(StatusCode::NO_CONTENT, call.rid()))
    }

    fn list_tags(&self, call: &Call<'_>, arn: &str) -> Result<Resp, Resp> {
        call.allow("lambda:ListTags", arn)?;
        let (doc, _) = self
            .engine
            .get_function(&call.scope, arn, None)
            .map_err(|e| self.fail(call, e))?;
        Ok(json_response(StatusCode::OK, &json!({ "Tags": doc.tags }), call.rid()))
    }

    fn account_settings(&self, call: &Call<'_>) -> Resp {
        let (count, size) = self
            .engine
            .list_functions(&call.scope, None, 10_000, true)
            .map(|(f, _)| (f.len(), f.iter().map(|c| c.code_size).sum::<u64>()))
            .unwrap_or_default();
        json_response(
            StatusCode::OK,
            &json!({
                "AccountLimit": {
                    "TotalCodeSize": kd_functions::CODE_STORAGE_LIMIT,
                    "CodeSizeUnzipped": kd_functions::code::MAX_UNZIPPED_BYTES,
                    "CodeSizeZipped": kd_functions::code::MAX_ZIP_BYTES,
                    "ConcurrentExecutions": 1000,
                    "UnreservedConcurrentExecutions": 1000,
                },
                "AccountUsage": { "TotalCodeSize": size, "FunctionCount": count },
            }),
            call.rid(),
        )
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
