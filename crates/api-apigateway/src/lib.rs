//! API Gateway adapter. Two doors onto the gateway engine (`kd-gateway`):
//!
//! * the **control plane**, AWS's restJson1 `/restapis…` API (CreateRestApi, resources,
//!   methods, integrations, method/integration responses, deployments, stages): it parses
//!   the request, checks the caller's IAM permission (`apigateway:<HTTP method>` on
//!   `arn:aws:apigateway:<region>::<path>`), makes one engine call and renders the result in
//!   AWS's camelCase shapes, or the error as `NotFoundException` / `ConflictException` /
//!   `BadRequestException` with AWS's messages;
//! * the **data plane**, a deployed API's own traffic (`/restapis/{id}/{stage}/_user_request_/…`
//!   or `{id}.execute-api.localhost/{stage}/…`, which the edge recognises): unsigned unless the
//!   method's `authorizationType` is `AWS_IAM`, in which case the edge's verified caller must be
//!   allowed `execute-api:Invoke` on `arn:aws:execute-api:<region>:<account>:<id>/<stage>/<METHOD>/<path>`.
//!
//! It sits between the edge (authentication, dispatch) and the engine; it holds no state.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method as HttpMethod, Response, StatusCode};
use kd_gateway::{
    CreateApiInput, Deployment, DeploymentInput, Error, Gateway, Integration, IntegrationInput, IntegrationResponse,
    InvokeRequest, Method, MethodInput, MethodResponse, Page, PatchOp, Resource, RestApi, Scope, Stage, StageInput,
};
use kd_wire::{Authorize, RequestContext, ServiceError, render_error};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub use kd_gateway::proxy::gateway_response;
pub use kd_gateway::{Caller, new_apigw_id};

/// Largest request body either plane accepts (API Gateway's 10 MB payload limit).
pub const MAX_BODY: usize = 10 * 1024 * 1024;

type Resp = Response<Bytes>;

/// The API Gateway adapter over the gateway engine.
#[derive(Clone)]
pub struct ApiGatewayApi {
    engine: Arc<Gateway>,
}

/// The AWS error of an engine error.
pub fn service_error(e: &Error) -> ServiceError {
    let (status, code) = match e {
        Error::NotFound(_) => (StatusCode::NOT_FOUND, "NotFoundException"),
        Error::Conflict(_) => (StatusCode::CONFLICT, "ConflictException"),
        Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequestException"),
        Error::LimitExceeded(_) => (StatusCode::TOO_MANY_REQUESTS, "LimitExceededException"),
        Error::Storage(_) | Error::Internal(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableException"),
    };
    ServiceError::with_status(status, code, e.to_string())
}

fn error(e: &Error, request_id: &str) -> Resp {
    if matches!(e, Error::Storage(_) | Error::Internal(_)) {
        tracing::error!(%request_id, error = %e, "API Gateway service error");
    }
    render_error(kd_wire::Protocol::RestJson, &service_error(e), request_id)
}

fn bad_request(message: impl Into<String>, request_id: &str) -> Resp {
    error(&Error::BadRequest(message.into()), request_id)
}

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

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Error> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("Could not parse request body into json: {e}")))
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

fn limit_of(q: &BTreeMap<String, Vec<String>>) -> Result<Option<i64>, Error> {
    q1(q, "limit")
        .map(|l| {
            l.parse::<i64>()
                .map_err(|_| Error::BadRequest(format!("Invalid limit parameter: {l}")))
        })
        .transpose()
}

fn embeds_methods(q: &BTreeMap<String, Vec<String>>) -> bool {
    q.get("embed")
        .is_some_and(|v| v.iter().flat_map(|e| e.split(',')).any(|e| e.trim() == "methods"))
}

fn decode_segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn str_map(m: &BTreeMap<String, String>) -> Value {
    Value::Object(m.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
}

fn bool_map(m: &BTreeMap<String, bool>) -> Value {
    Value::Object(m.iter().map(|(k, v)| (k.clone(), Value::Bool(*v))).collect())
}

fn put_opt(o: &mut Map<String, Value>, k: &str, v: &Option<String>) {
    if let Some(v) = v {
        o.insert(k.to_owned(), Value::String(v.clone()));
    }
}

// ------------------------------------------------------------------ shapes (AWS camelCase)

/// `RestApi`.
pub fn rest_api_json(a: &RestApi) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(a.id));
    o.insert("name".into(), json!(a.name));
    put_opt(&mut o, "description", &a.description);
    put_opt(&mut o, "version", &a.api_version);
    o.insert("createdDate".into(), json!(a.created));
    if !a.binary_media_types.is_empty() {
        o.insert("binaryMediaTypes".into(), json!(a.binary_media_types));
    }
    if let Some(n) = a.minimum_compression_size {
        o.insert("minimumCompressionSize".into(), json!(n));
    }
    o.insert("apiKeySource".into(), json!(a.api_key_source));
    o.insert(
        "endpointConfiguration".into(),
        json!({ "types": a.endpoint_types, "ipAddressType": "ipv4" }),
    );
    put_opt(&mut o, "policy", &a.policy);
    if !a.tags.is_empty() {
        o.insert("tags".into(), str_map(&a.tags));
    }
    o.insert(
        "disableExecuteApiEndpoint".into(),
        json!(a.disable_execute_api_endpoint),
    );
    o.insert("rootResourceId".into(), json!(a.root_id));
    Value::Object(o)
}

/// `Resource`; `embed` renders each method whole, else as `{}` (as AWS does without `embed`).
pub fn resource_json(r: &Resource, embed: bool) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(r.id));
    put_opt(&mut o, "parentId", &r.parent_id);
    put_opt(&mut o, "pathPart", &r.path_part);
    o.insert("path".into(), json!(r.path));
    if !r.methods.is_empty() {
        let methods: Map<String, Value> = r
            .methods
            .iter()
            .map(|(k, m)| (k.clone(), if embed { method_json(m) } else { json!({}) }))
            .collect();
        o.insert("resourceMethods".into(), Value::Object(methods));
    }
    Value::Object(o)
}

/// `Method`.
pub fn method_json(m: &Method) -> Value {
    let mut o = Map::new();
    o.insert("httpMethod".into(), json!(m.http_method));
    o.insert("authorizationType".into(), json!(m.authorization_type));
    put_opt(&mut o, "authorizerId", &m.authorizer_id);
    o.insert("apiKeyRequired".into(), json!(m.api_key_required));
    put_opt(&mut o, "operationName", &m.operation_name);
    put_opt(&mut o, "requestValidatorId", &m.request_validator_id);
    if !m.request_parameters.is_empty() {
        o.insert("requestParameters".into(), bool_map(&m.request_parameters));
    }
    if !m.request_models.is_empty() {
        o.insert("requestModels".into(), str_map(&m.request_models));
    }
    if !m.authorization_scopes.is_empty() {
        o.insert("authorizationScopes".into(), json!(m.authorization_scopes));
    }
    if !m.method_responses.is_empty() {
        let r: Map<String, Value> = m
            .method_responses
            .iter()
            .map(|(k, v)| (k.clone(), method_response_json(v)))
            .collect();
        o.insert("methodResponses".into(), Value::Object(r));
    }
    if let Some(i) = &m.integration {
        o.insert("methodIntegration".into(), integration_json(i));
    }
    Value::Object(o)
}

/// `MethodResponse`.
pub fn method_response_json(r: &MethodResponse) -> Value {
    let mut o = Map::new();
    o.insert("statusCode".into(), json!(r.status_code));
    if !r.response_parameters.is_empty() {
        o.insert("responseParameters".into(), bool_map(&r.response_parameters));
    }
    if !r.response_models.is_empty() {
        o.insert("responseModels".into(), str_map(&r.response_models));
    }
    Value::Object(o)
}

/// `Integration`.
pub fn integration_json(i: &Integration) -> Value {
    let mut o = Map::new();
    o.insert("type".into(), json!(i.kind));
    put_opt(&mut o, "httpMethod", &i.http_method);
    put_opt(&mut o, "uri", &i.uri);
    o.insert("connectionType".into(), json!(i.connection_type));
    put_opt(&mut o, "connectionId", &i.connection_id);
    put_opt(&mut o, "credentials", &i.credentials);
    if !i.request_parameters.is_empty() {
        o.insert("requestParameters".into(), str_map(&i.request_parameters));
    }
    if !i.request_templates.is_empty() {
        o.insert("requestTemplates".into(), str_map(&i.request_templates));
    }
    o.insert("passthroughBehavior".into(), json!(i.passthrough_behavior));
    put_opt(&mut o, "contentHandling", &i.content_handling);
    o.insert("timeoutInMillis".into(), json!(i.timeout_ms));
    o.insert("cacheNamespace".into(), json!(i.cache_namespace));
    o.insert("cacheKeyParameters".into(), json!(i.cache_key_parameters));
    if !i.responses.is_empty() {
        let r: Map<String, Value> = i
            .responses
            .iter()
            .map(|(k, v)| (k.clone(), integration_response_json(v)))
            .collect();
        o.insert("integrationResponses".into(), Value::Object(r));
    }
    Value::Object(o)
}

/// `IntegrationResponse`.
pub fn integration_response_json(r: &IntegrationResponse) -> Value {
    let mut o = Map::new();
    o.insert("statusCode".into(), json!(r.status_code));
    put_opt(&mut o, "selectionPattern", &r.selection_pattern);
    if !r.response_parameters.is_empty() {
        o.insert("responseParameters".into(), str_map(&r.response_parameters));
    }
    if !r.response_templates.is_empty() {
        o.insert("responseTemplates".into(), str_map(&r.response_templates));
    }
    put_opt(&mut o, "contentHandling", &r.content_handling);
    Value::Object(o)
}

/// `Deployment`; `embed` adds `apiSummary` (path → method → {authorizationType, apiKeyRequired}).
pub fn deployment_json(d: &Deployment, embed: bool) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(d.id));
    put_opt(&mut o, "description", &d.description);
    o.insert("createdDate".into(), json!(d.created));
    if embed {
        let mut summary = Map::new();
        for r in d.resources.values().filter(|r| !r.methods.is_empty()) {
            let methods: Map<String, Value> = r
                .methods
                .iter()
                .map(|(k, m)| {
                    (
                        k.clone(),
                        json!({"authorizationType": m.authorization_type, "apiKeyRequired": m.api_key_required}),
                    )
                })
                .collect();
            summary.insert(r.path.clone(), Value::Object(methods));
        }
        o.insert("apiSummary".into(), Value::Object(summary));
    }
    Value::Object(o)
}

/// `Stage`.
pub fn stage_json(s: &Stage) -> Value {
    let mut o = Map::new();
    o.insert("deploymentId".into(), json!(s.deployment_id));
    o.insert("stageName".into(), json!(s.name));
    put_opt(&mut o, "description", &s.description);
    o.insert("cacheClusterEnabled".into(), json!(s.cache_cluster_enabled));
    o.insert("cacheClusterStatus".into(), json!("NOT_AVAILABLE"));
    o.insert("methodSettings".into(), json!({}));
    if !s.variables.is_empty() {
        o.insert("variables".into(), str_map(&s.variables));
    }
    o.insert("tracingEnabled".into(), json!(s.tracing_enabled));
    if !s.tags.is_empty() {
        o.insert("tags".into(), str_map(&s.tags));
    }
    o.insert("createdDate".into(), json!(s.created));
    o.insert("lastUpdatedDate".into(), json!(s.updated));
    Value::Object(o)
}

fn page_json<T>(p: &Page<T>, render: impl Fn(&T) -> Value) -> Value {
    let mut o = Map::new();
    o.insert("item".into(), Value::Array(p.items.iter().map(render).collect()));
    if let Some(pos) = &p.position {
        o.insert("position".into(), json!(pos));
    }
    Value::Object(o)
}

// ------------------------------------------------------------------ request bodies

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndpointConfigIn {
    types: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateApiIn {
    name: Option<String>,
    description: Option<String>,
    version: Option<String>,
    clone_from: Option<String>,
    binary_media_types: Option<Vec<String>>,
    minimum_compression_size: Option<i64>,
    api_key_source: Option<String>,
    endpoint_configuration: Option<EndpointConfigIn>,
    policy: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    disable_execute_api_endpoint: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PatchIn {
    op: Option<String>,
    path: Option<String>,
    value: Option<String>,
    from: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PatchesIn {
    patch_operations: Option<Vec<PatchIn>>,
}

impl PatchesIn {
    fn ops(self) -> Result<Vec<PatchOp>, Error> {
        self.patch_operations
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let op = p.op.unwrap_or_default();
                if !matches!(op.as_str(), "add" | "remove" | "replace" | "move" | "copy" | "test") {
                    return Err(Error::BadRequest(format!(
                        "Invalid patch operation specified. Must be one of: [add, remove, replace, move, copy, test]: {op}"
                    )));
                }
                Ok(PatchOp {
                    op,
                    path: p.path.unwrap_or_default(),
                    value: p.value,
                    from: p.from,
                })
            })
            .collect()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceIn {
    path_part: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MethodIn {
    authorization_type: Option<String>,
    authorizer_id: Option<String>,
    api_key_required: Option<bool>,
    operation_name: Option<String>,
    request_parameters: Option<BTreeMap<String, bool>>,
    request_models: Option<BTreeMap<String, String>>,
    request_validator_id: Option<String>,
    authorization_scopes: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IntegrationIn {
    #[serde(rename = "type")]
    kind: Option<String>,
    integration_http_method: Option<String>,
    /// The SDKs send `httpMethod` (the model's locationName for integrationHttpMethod).
    http_method: Option<String>,
    uri: Option<String>,
    connection_type: Option<String>,
    connection_id: Option<String>,
    credentials: Option<String>,
    request_parameters: Option<BTreeMap<String, String>>,
    request_templates: Option<BTreeMap<String, String>>,
    passthrough_behavior: Option<String>,
    cache_namespace: Option<String>,
    cache_key_parameters: Option<Vec<String>>,
    content_handling: Option<String>,
    timeout_in_millis: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MethodResponseIn {
    response_parameters: Option<BTreeMap<String, bool>>,
    response_models: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IntegrationResponseIn {
    selection_pattern: Option<String>,
    response_parameters: Option<BTreeMap<String, String>>,
    response_templates: Option<BTreeMap<String, String>>,
    content_handling: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentIn {
    stage_name: Option<String>,
    stage_description: Option<String>,
    description: Option<String>,
    variables: Option<BTreeMap<String, String>>,
    tracing_enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StageIn {
    stage_name: Option<String>,
    deployment_id: Option<String>,
    description: Option<String>,
    variables: Option<BTreeMap<String, String>>,
    tracing_enabled: Option<bool>,
    cache_cluster_enabled: Option<bool>,
    tags: Option<BTreeMap<String, String>>,
}

// ------------------------------------------------------------------ data plane input

/// Who sent a data-plane request, as the edge found out.
#[derive(Debug, Clone)]
pub enum InvokeCaller {
    /// No signature.
    Anonymous,
    /// A verified SigV4 signature: the caller's authoriser and identity.
    Signed {
        /// May the caller `execute-api:Invoke` the method?
        authz: Arc<dyn Authorize>,
        /// The identity for the event's `requestContext.identity`.
        caller: Caller,
    },
    /// A signature that did not verify (the message says why).
    Invalid(String),
}

/// A data-plane request.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The API id.
    pub api_id: String,
    /// The stage.
    pub stage: String,
    /// The path after the stage (starts with `/`).
    pub path: String,
    /// The HTTP method.
    pub method: HttpMethod,
    /// The raw query string.
    pub query: Option<String>,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The caller's IP address.
    pub source_ip: String,
    /// The host the caller used.
    pub domain_name: String,
    /// The request id.
    pub request_id: String,
    /// The signer, if any.
    pub caller: InvokeCaller,
}

impl ApiGatewayApi {
    /// The adapter over `engine`.
    pub fn new(engine: Arc<Gateway>) -> Self {
        Self { engine }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Gateway> {
        &self.engine
    }

    /// Serves one data-plane request.
    pub async fn invoke(&self, inv: Invocation) -> Resp {
        let apigw_id = kd_gateway::new_apigw_id();
        let finish = |mut r: Resp| {
            kd_wire::insert(r.headers_mut(), "x-amzn-requestid", &inv.request_id);
            kd_wire::insert(r.headers_mut(), "x-amz-apigw-id", &apigw_id);
            r
        };
        let method = inv.method.as_str().to_owned();
        let route = match self.engine.route(&inv.api_id, &inv.stage, &method, &inv.path) {
            Ok(r) => r,
            Err(r) => return finish(r),
        };
        let caller = match route.authorization_type.as_str() {
            "NONE" => None,
            "AWS_IAM" => match &inv.caller {
                InvokeCaller::Anonymous => {
                    return finish(kd_gateway::proxy::gateway_response(
                        403,
                        "MissingAuthenticationTokenException",
                        "Missing Authentication Token",
                    ));
                }
                InvokeCaller::Invalid(m) => {
                    return finish(kd_gateway::proxy::gateway_response(403, "InvalidSignatureException", m));
                }
                InvokeCaller::Signed { authz, caller } => {
                    if authz.enforced() {
                        let arn = route.execute_arn(&method, &inv.path);
                        if let Err(m) = authz.authorize("execute-api:Invoke", &arn) {
                            let mut r = kd_gateway::proxy::gateway_response(403, "AccessDeniedException", "");
                            *r.body_mut() = Bytes::from(json!({ "Message": m }).to_string());
                            return finish(r);
                        }
                    }
                    Some(caller.clone())
                }
            },
            // Lambda (CUSTOM) and Cognito authorizers are not run by kinesis-data.
            _ => {
                return finish(kd_gateway::proxy::gateway_response(
                    401,
                    "UnauthorizedException",
                    "Unauthorized",
                ));
            }
        };
        let req = InvokeRequest {
            api_id: inv.api_id.clone(),
            stage: inv.stage.clone(),
            path: inv.path.clone(),
            method,
            query: inv.query.clone(),
            headers: inv.headers.clone(),
            body: inv.body.clone(),
            source_ip: inv.source_ip.clone(),
            domain_name: inv.domain_name.clone(),
            protocol: "HTTP/1.1".into(),
            request_id: inv.request_id.clone(),
            extended_request_id: apigw_id.clone(),
            caller,
        };
        finish(self.engine.execute(&route, req).await)
    }

    /// Handles one authenticated control-plane request (`/restapis…`).
    pub async fn handle(
        &self,
        ctx: &RequestContext,
        method: &HttpMethod,
        path: &str,
        query: Option<&str>,
        body: &Bytes,
    ) -> Resp {
        let rid = ctx.request_id.as_str();
        let m = method.as_str();
        if ctx.authz.enforced() {
            let action = format!("apigateway:{m}");
            let resource = format!("arn:aws:apigateway:{}::{}", ctx.region, path.trim_end_matches('/'));
            if let Err(msg) = ctx.authz.authorize(&action, &resource) {
                return render_error(
                    kd_wire::Protocol::RestJson,
                    &ServiceError::with_status(StatusCode::FORBIDDEN, "AccessDeniedException", msg),
                    rid,
                );
            }
        }
        let scope = Scope {
            account: ctx.account_id.clone(),
            region: ctx.region.clone(),
        };
        let q = query_map(query);
        let segs: Vec<String> = path
            .trim_start_matches('/')
            .trim_end_matches('/')
            .split('/')
            .map(decode_segment)
            .collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let Some(("restapis", rest)) = segs.split_first().map(|(a, b)| (*a, b)) else {
            return bad_request("Invalid request path", rid);
        };
        let out = match (m, rest) {
            ("POST", []) => self.create_rest_api(&scope, body, rid).await,
            ("GET", []) => self.get_rest_apis(&scope, &q, rid),
            ("GET", [api]) => self
                .engine
                .get_rest_api(&scope, api)
                .map(|a| json_response(StatusCode::OK, &rest_api_json(&a), rid)),
            ("PATCH", [api]) => self.update_rest_api(&scope, api, body, rid).await,
            ("DELETE", [api]) => self
                .engine
                .delete_rest_api(&scope, api)
                .await
                .map(|()| empty(StatusCode::ACCEPTED, rid)),
            ("GET", [api, "resources"]) => self.get_resources(&scope, api, &q, rid),
            ("GET", [api, "resources", res]) => self
                .engine
                .get_resource(&scope, api, res)
                .map(|r| json_response(StatusCode::OK, &resource_json(&r, embeds_methods(&q)), rid)),
            ("POST", [api, "resources", parent]) => self.create_resource(&scope, api, parent, body, rid).await,
            ("DELETE", [api, "resources", res]) => self
                .engine
                .delete_resource(&scope, api, res)
                .await
                .map(|()| empty(StatusCode::ACCEPTED, rid)),
            ("PUT", [api, "resources", res, "methods", hm]) => self.put_method(&scope, api, res, hm, body, rid).await,
            ("GET", [api, "resources", res, "methods", hm]) => self
                .engine
                .get_method(&scope, api, res, hm)
                .map(|x| json_response(StatusCode::OK, &method_json(&x), rid)),
            ("DELETE", [api, "resources", res, "methods", hm]) => self
                .engine
                .delete_method(&scope, api, res, hm)
                .await
                .map(|()| empty(StatusCode::NO_CONTENT, rid)),
            ("PUT", [api, "resources", res, "methods", hm, "responses", code]) => {
                self.put_method_response(&scope, api, res, hm, code, body, rid).await
            }
            ("GET", [api, "resources", res, "methods", hm, "responses", code]) => self
                .engine
                .get_method_response(&scope, api, res, hm, code)
                .map(|x| json_response(StatusCode::OK, &method_response_json(&x), rid)),
            ("DELETE", [api, "resources", res, "methods", hm, "responses", code]) => self
                .engine
                .delete_method_response(&scope, api, res, hm, code)
                .await
                .map(|()| empty(StatusCode::NO_CONTENT, rid)),
            ("PUT", [api, "resources", res, "methods", hm, "integration"]) => {
                self.put_integration(&scope, api, res, hm, body, rid).await
            }
            ("GET", [api, "resources", res, "methods", hm, "integration"]) => self
                .engine
                .get_integration(&scope, api, res, hm)
                .map(|x| json_response(StatusCode::OK, &integration_json(&x), rid)),
            ("DELETE", [api, "resources", res, "methods", hm, "integration"]) => self
                .engine
                .delete_integration(&scope, api, res, hm)
                .await
                .map(|()| empty(StatusCode::NO_CONTENT, rid)),
            ("PUT", [api, "resources", res, "methods", hm, "integration", "responses", code]) => {
                self.put_integration_response(&scope, api, res, hm, code, body, rid)
                    .await
            }
            ("GET", [api, "resources", res, "methods", hm, "integration", "responses", code]) => self
                .engine
                .get_integration_response(&scope, api, res, hm, code)
                .map(|x| json_response(StatusCode::OK, &integration_response_json(&x), rid)),
            ("DELETE", [api, "resources", res, "methods", hm, "integration", "responses", code]) => self
                .engine
                .delete_integration_response(&scope, api, res, hm, code)
                .await
                .map(|()| empty(StatusCode::NO_CONTENT, rid)),
            ("POST", [api, "deployments"]) => self.create_deployment(&scope, api, body, rid).await,
            ("GET", [api, "deployments"]) => limit_of(&q).and_then(|limit| {
                self.engine
                    .get_deployments(&scope, api, q1(&q, "position"), limit)
                    .map(|p| json_response(StatusCode::OK, &page_json(&p, |d| deployment_json(d, false)), rid))
            }),
            ("GET", [api, "deployments", id]) => self.engine.get_deployment(&scope, api, id).map(|d| {
                let embed = q
                    .get("embed")
                    .is_some_and(|v| v.iter().any(|e| e.split(',').any(|e| e.trim() == "apisummary")));
                json_response(StatusCode::OK, &deployment_json(&d, embed), rid)
            }),
            ("DELETE", [api, "deployments", id]) => self
                .engine
                .delete_deployment(&scope, api, id)
                .await
                .map(|()| empty(StatusCode::ACCEPTED, rid)),
            ("POST", [api, "stages"]) => self.create_stage(&scope, api, body, rid).await,
            ("GET", [api, "stages"]) => self.engine.get_stages(&scope, api, q1(&q, "deploymentId")).map(|s| {
                json_response(
                    StatusCode::OK,
                    &json!({ "item": s.iter().map(stage_json).collect::<Vec<_>>() }),
                    rid,
                )
            }),
            ("GET", [api, "stages", name]) => self
                .engine
                .get_stage(&scope, api, name)
                .map(|s| json_response(StatusCode::OK, &stage_json(&s), rid)),
            ("PATCH", [api, "stages", name]) => self.update_stage(&scope, api, name, body, rid).await,
            ("DELETE", [api, "stages", name]) => self
                .engine
                .delete_stage(&scope, api, name)
                .await
                .map(|()| empty(StatusCode::ACCEPTED, rid)),
            _ => {
                return render_error(
                    kd_wire::Protocol::RestJson,
                    &ServiceError::with_status(
                        StatusCode::NOT_IMPLEMENTED,
                        "NotImplemented",
                        format!("{m} {path} is not implemented by kinesis-data's API Gateway"),
                    ),
                    rid,
                );
            }
        };
        match out {
            Ok(r) => r,
            Err(e) => error(&e, rid),
        }
    }

    async fn create_rest_api(&self, scope: &Scope, body: &Bytes, rid: &str) -> Result<Resp, Error> {
        let i: CreateApiIn = parse(body)?;
        if i.clone_from.is_some() {
            return Err(Error::BadRequest("cloneFrom is not supported by kinesis-data".into()));
        }
        let api = self
            .engine
            .create_rest_api(
                scope,
                CreateApiInput {
                    name: i.name.unwrap_or_default(),
                    description: i.description,
                    api_version: i.version,
                    binary_media_types: i.binary_media_types.unwrap_or_default(),
                    endpoint_types: i.endpoint_configuration.and_then(|e| e.types),
                    api_key_source: i.api_key_source,
                    disable_execute_api_endpoint: i.disable_execute_api_endpoint.unwrap_or(false),
                    minimum_compression_size: i.minimum_compression_size,
                    policy: i.policy,
                    tags: i.tags.unwrap_or_default(),
                },
            )
            .await?;
        Ok(json_response(StatusCode::CREATED, &rest_api_json(&api), rid))
    }

    fn get_rest_apis(&self, scope: &Scope, q: &BTreeMap<String, Vec<String>>, rid: &str) -> Result<Resp, Error> {
        let p = self.engine.get_rest_apis(scope, q1(q, "position"), limit_of(q)?)?;
        Ok(json_response(StatusCode::OK, &page_json(&p, |a| rest_api_json(a)), rid))
    }

    async fn update_rest_api(&self, scope: &Scope, api: &str, body: &Bytes, rid: &str) -> Result<Resp, Error> {
        let ops = parse::<PatchesIn>(body)?.ops()?;
        let a = self.engine.update_rest_api(scope, api, &ops).await?;
        Ok(json_response(StatusCode::OK, &rest_api_json(&a), rid))
    }

    fn get_resources(
        &self,
        scope: &Scope,
        api: &str,
        q: &BTreeMap<String, Vec<String>>,
        rid: &str,
    ) -> Result<Resp, Error> {
        let embed = embeds_methods(q);
        let p = self.engine.get_resources(scope, api, q1(q, "position"), limit_of(q)?)?;
        Ok(json_response(
            StatusCode::OK,
            &page_json(&p, |r| resource_json(r, embed)),
            rid,
        ))
    }

    async fn create_resource(
        &self,
        scope: &Scope,
        api: &str,
        parent: &str,
        body: &Bytes,
        rid: &str,
    ) -> Result<Resp, Error> {
        let i: ResourceIn = parse(body)?;
        let r = self
            .engine
            .create_resource(scope, api, parent, i.path_part.as_deref().unwrap_or_default())
            .await?;
        Ok(json_response(StatusCode::CREATED, &resource_json(&r, false), rid))
    }

    async fn put_method(
        &self,
        scope: &Scope,
        api: &str,
        res: &str,
        hm: &str,
        body: &Bytes,
        rid: &str,
    ) -> Result<Resp, Error> {
        let i: MethodIn = parse(body)?;
        let m = self
            .engine
            .put_method(
                scope,
                api,
                res,
                hm,
                MethodInput {
                    authorization_type: i.authorization_type.unwrap_or_default(),
                    authorizer_id: i.authorizer_id,
                    api_key_required: i.api_key_required.unwrap_or(false),
                    operation_name: i.operation_name,
                    request_parameters: i.request_parameters.unwrap_or_default(),
                    request_models: i.request_models.unwrap_or_default(),
                    request_validator_id: i.request_validator_id,
                    authorization_scopes: i.authorization_scopes.unwrap_or_default(),
                },
            )
            .await?;
        Ok(json_response(StatusCode::CREATED, &method_json(&m), rid))
    }

    #[allow(clippy::too_many_arguments)]
    async fn put_method_response(
        &self,
        scope: &Scope,
        api: &str,
        res: &str,
        hm: &str,
        code: &str,
        body: &Bytes,
        rid: &str,
    ) -> Result<Resp, Error> {
        let i: MethodResponseIn = parse(body)?;
        let r = self
            .engine
            .put_method_response(
                scope,
                api,
                res,
                hm,
                MethodResponse {
                    status_code: code.to_owned(),
                    response_parameters: i.response_parameters.unwrap_or_default(),
                    response_models: i.response_models.unwrap_or_default(),
                },
            )
            .await?;
        Ok(json_response(StatusCode::CREATED, &method_response_json(&r), rid))
    }

    async fn put_integration(
        &self,
        scope: &Scope,
        api: &str,
        res: &str,
        hm: &str,
        body: &Bytes,
        rid: &str,
    ) -> Result<Resp, Error> {
        let i: IntegrationIn = parse(body)?;
        let out = self
            .engine
            .put_integration(
                scope,
                api,
                res,
                hm,
                IntegrationInput {
                    kind: i.kind.unwrap_or_default(),
                    http_method: i.http_method.or(i.integration_http_method),
                    uri: i.uri,
                    connection_type: i.connection_type,
                    connection_id: i.connection_id,
                    credentials: i.credentials,
                    request_parameters: i.request_parameters.unwrap_or_default(),
                    request_templates: i.request_templates.unwrap_or_default(),
                    passthrough_behavior: i.passthrough_behavior,
                    content_handling: i.content_handling,
                    timeout_ms: i.timeout_in_millis,
                    cache_namespace: i.cache_namespace,
                    cache_key_parameters: i.cache_key_parameters.unwrap_or_default(),
                },
            )
            .await?;
        Ok(json_response(StatusCode::CREATED, &integration_json(&out), rid))
    }

    #[allow(clippy::too_many_arguments)]
    async fn put_integration_response(
        &self,
        scope: &Scope,
        api: &str,
        res: &str,
        hm: &str,
        code: &str,
        body: &Bytes,
        rid: &str,
    ) -> Result<Resp, Error> {
        let i: IntegrationResponseIn = parse(body)?;
        let r = self
            .engine
            .put_integration_response(
                scope,
                api,
                res,
                hm,
                IntegrationResponse {
                    status_code: code.to_owned(),
                    selection_pattern: i.selection_pattern,
                    response_parameters: i.response_parameters.unwrap_or_default(),
                    response_templates: i.response_templates.unwrap_or_default(),
                    content_handling: i.content_handling,
                },
            )
            .await?;
        Ok(json_response(StatusCode::CREATED, &integration_response_json(&r), rid))
    }

    async fn create_deployment(&self, scope: &Scope, api: &str, body: &Bytes, rid: &str) -> Result<Resp, Error> {
        let i: DeploymentIn = parse(body)?;
        let d = self
            .engine
            .create_deployment(
                scope,
                api,
                DeploymentInput {
                    stage_name: i.stage_name,
                    stage_description: i.stage_description,
                    description: i.description,
                    variables: i.variables.unwrap_or_default(),
                    tracing_enabled: i.tracing_enabled,
                },
            )
            .await?;
        Ok(json_response(StatusCode::CREATED, &deployment_json(&d, false), rid))
    }

    async fn create_stage(&self, scope: &Scope, api: &str, body: &Bytes, rid: &str) -> Result<Resp, Error> {
        let i: StageIn = parse(body)?;
        let (Some(name), Some(deployment_id)) = (i.stage_name, i.deployment_id) else {
            return Err(Error::BadRequest("stageName and deploymentId are required".into()));
        };
        let s = self
            .engine
            .create_stage(
                scope,
                api,
                StageInput {
                    name,
                    deployment_id,
                    description: i.description,
                    variables: i.variables.unwrap_or_default(),
                    tracing_enabled: i.tracing_enabled.unwrap_or(false),
                    cache_cluster_enabled: i.cache_cluster_enabled.unwrap_or(false),
                    tags: i.tags.unwrap_or_default(),
                },
            )
            .await?;
        Ok(json_response(StatusCode::CREATED, &stage_json(&s), rid))
    }

    async fn update_stage(&self, scope: &Scope, api: &str, name: &str, body: &Bytes, rid: &str) -> Result<Resp, Error> {
        let ops = parse::<PatchesIn>(body)?.ops()?;
        let s = self.engine.update_stage(scope, api, name, &ops).await?;
        Ok(json_response(StatusCode::OK, &stage_json(&s), rid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kd_gateway::ports::testing::FakeInvoker;

    fn api(dir: &std::path::Path) -> ApiGatewayApi {
        let meta = Arc::new(kd_storage::MetaStore::open(&dir.join("m.redb")).expect("meta"));
        let g = Gateway::open(
            kd_gateway::Config::default(),
            meta,
            Arc::new(kd_storage::SystemClock),
            Arc::new(FakeInvoker::echo()),
            Arc::new(kd_gateway::ports::testing::FakeForwarder::unreachable()),
        )
        .expect("open");
        ApiGatewayApi::new(g)
    }

    fn ctx() -> RequestContext {
        RequestContext {
            request_id: "rid".into(),
            account_id: "000000000000".into(),
            region: "us-east-1".into(),
            authz: Arc::new(kd_wire::AllowAll),
        }
    }

    async fn call(a: &ApiGatewayApi, m: &str, path: &str, body: &str) -> (u16, Value) {
        let r = a
            .handle(
                &ctx(),
                &HttpMethod::from_bytes(m.as_bytes()).expect("method"),
                path.split('?').next().unwrap_or_default(),
                path.split_once('?').map(|(_, q)| q),
                &Bytes::from(body.to_owned()),
            )
            .await;
        let v = serde_json::from_slice(r.body()).unwrap_or(Value::Null);
        (r.status().as_u16(), v)
    }

    #[tokio::test]
    async fn control_plane_shapes_and_errors() {
        let dir = tempfile::tempdir().expect("dir");
        let a = api(dir.path());
        let (s, v) = call(&a, "POST", "/restapis", r#"{"name":"items","description":"d"}"#).await;
        assert_eq!(s, 201);
        let id = v["id"].as_str().expect("id").to_owned();
        let root = v["rootResourceId"].as_str().expect("root").to_owned();
        assert!(v["createdDate"].is_i64());
        assert_eq!(v["endpointConfiguration"]["types"], json!(["EDGE"]));
        let (s, v) = call(
            &a,
            "POST",
            &format!("/restapis/{id}/resources/{root}"),
            r#"{"pathPart":"{id}"}"#,
        )
        .await;
        assert_eq!(s, 201);
        assert_eq!(v["path"], "/{id}");
        let res = v["id"].as_str().expect("id").to_owned();
        let (s, _) = call(
            &a,
            "PUT",
            &format!("/restapis/{id}/resources/{res}/methods/GET"),
            r#"{"authorizationType":"NONE"}"#,
        )
        .await;
        assert_eq!(s, 201);
        let (s, v) = call(
            &a,
            "PUT",
            &format!("/restapis/{id}/resources/{res}/methods/GET/integration"),
            r#"{"type":"MOCK","requestTemplates":{"application/json":"{\"statusCode\": 200}"}}"#,
        )
        .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["timeoutInMillis"], 29000);
        let (s, v) = call(&a, "GET", &format!("/restapis/{id}/resources?embed=methods"), "").await;
        assert_eq!(s, 200);
        let items = v["item"].as_array().expect("items");
        assert_eq!(items.len(), 2);
        assert_eq!(items[1]["resourceMethods"]["GET"]["methodIntegration"]["type"], "MOCK");
        let (_, v) = call(&a, "GET", &format!("/restapis/{id}/resources"), "").await;
        assert_eq!(v["item"][1]["resourceMethods"]["GET"], json!({}));
        let (s, v) = call(&a, "GET", "/restapis/nosuchapi0", "").await;
        assert_eq!(s, 404);
        assert_eq!(v["message"], "Invalid API identifier specified 000000000000:nosuchapi0");
        let (s, _) = call(
            &a,
            "POST",
            &format!("/restapis/{id}/resources/{root}"),
            r#"{"pathPart":"{id}"}"#,
        )
        .await;
        assert_eq!(s, 409);
        let (s, _) = call(&a, "POST", "/restapis", "{not json").await;
        assert_eq!(s, 400);
        let (s, v) = call(
            &a,
            "POST",
            &format!("/restapis/{id}/deployments"),
            r#"{"stageName":"prod","variables":{"a":"1"}}"#,
        )
        .await;
        assert_eq!(s, 201, "{v}");
        let (s, v) = call(
            &a,
            "PATCH",
            &format!("/restapis/{id}/stages/prod"),
            r#"{"patchOperations":[{"op":"replace","path":"/variables/b","value":"2"}]}"#,
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(v["variables"], json!({"a": "1", "b": "2"}));
        let (s, v) = call(&a, "GET", &format!("/restapis/{id}/stages"), "").await;
        assert_eq!(s, 200);
        assert_eq!(v["item"][0]["stageName"], "prod");
        let (s, _) = call(&a, "DELETE", &format!("/restapis/{id}"), "").await;
        assert_eq!(s, 202);
        let (s, _) = call(&a, "GET", &format!("/restapis/{id}/authorizers"), "").await;
        assert_eq!(s, 501);
    }

    #[tokio::test]
    async fn aws_iam_methods_need_a_signature() {
        let dir = tempfile::tempdir().expect("dir");
        let a = api(dir.path());
        let (_, v) = call(&a, "POST", "/restapis", r#"{"name":"x"}"#).await;
        let id = v["id"].as_str().expect("id").to_owned();
        let root = v["rootResourceId"].as_str().expect("root").to_owned();
        call(
            &a,
            "PUT",
            &format!("/restapis/{id}/resources/{root}/methods/ANY"),
            r#"{"authorizationType":"AWS_IAM"}"#,
        )
        .await;
        let uri = "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:f/invocations";
        call(
            &a,
            "PUT",
            &format!("/restapis/{id}/resources/{root}/methods/ANY/integration"),
            &json!({"type":"AWS_PROXY","httpMethod":"POST","uri":uri}).to_string(),
        )
        .await;
        call(
            &a,
            "POST",
            &format!("/restapis/{id}/deployments"),
            r#"{"stageName":"prod"}"#,
        )
        .await;
        let inv = |caller: InvokeCaller| Invocation {
            api_id: id.clone(),
            stage: "prod".into(),
            path: "/".into(),
            method: HttpMethod::POST,
            query: None,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            source_ip: "127.0.0.1".into(),
            domain_name: "localhost".into(),
            request_id: "rid".into(),
            caller,
        };
        let r = a.invoke(inv(InvokeCaller::Anonymous)).await;
        assert_eq!(r.status(), 403);
        assert_eq!(r.body().as_ref(), br#"{"message":"Missing Authentication Token"}"#);
        assert!(r.headers().contains_key("x-amz-apigw-id"));
        let caller = Caller {
            access_key: "AKIA".into(),
            account_id: "000000000000".into(),
            caller: "AIDA".into(),
            user: "AIDA".into(),
            user_arn: "arn:aws:iam::000000000000:user/u".into(),
        };
        let r = a
            .invoke(inv(InvokeCaller::Signed {
                authz: Arc::new(kd_wire::AllowAll),
                caller,
            }))
            .await;
        assert_eq!(r.status(), 200);
        let event: Value = serde_json::from_slice(r.body()).expect("event");
        assert_eq!(
            event["requestContext"]["identity"]["userArn"],
            "arn:aws:iam::000000000000:user/u"
        );
        assert_eq!(event["httpMethod"], "POST");
    }
}
