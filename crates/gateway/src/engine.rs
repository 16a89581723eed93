//! The engine: control-plane operations over the durable documents, and the data plane
//! (routing a request to a deployed method and running its integration).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use kd_storage::{Clock, MetaOp, MetaStore};

use crate::error::{Error, Result};
use crate::http_proxy::{self, ProxyRequest};
use crate::model::*;
use crate::ports::{ForwardError, FunctionInvoker, HttpForwarder, InvokeError};
use crate::proxy::{self, Caller, EventInput};
use crate::routing::{PathPart, RouteTable, classify, valid_path_part};

pub(crate) const T_APIS: &str = "apigw_apis";
pub(crate) const T_DEPLOYMENTS: &str = "apigw_deployments";

/// The HTTP methods a resource may have.
pub const HTTP_METHODS: [&str; 8] = ["ANY", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"];
const AUTH_TYPES: [&str; 4] = ["NONE", "AWS_IAM", "CUSTOM", "COGNITO_USER_POOLS"];
const INTEGRATION_TYPES: [&str; 5] = ["HTTP", "AWS", "MOCK", "HTTP_PROXY", "AWS_PROXY"];
/// Largest page of a listing.
pub const MAX_LIMIT: usize = 500;
/// Most resources an API may have (AWS's default quota).
pub const MAX_RESOURCES: usize = 300;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `timeoutInMillis` of an integration put without one (AWS: 29,000).
    pub default_timeout_ms: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            default_timeout_ms: 29_000,
        }
    }
}

/// A deployment ready to serve: its snapshot and its route table.
#[derive(Debug)]
pub struct Deployed {
    /// The snapshot.
    pub doc: Deployment,
    /// Its routes.
    pub routes: RouteTable,
}

impl Deployed {
    fn new(doc: Deployment) -> Self {
        let routes = RouteTable::new(&doc.root_id, &doc.resources);
        Self { doc, routes }
    }
}

/// A data-plane request, as the adapter hands it over.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    /// The API id (from the host or the `/restapis/{id}/…` path).
    pub api_id: String,
    /// The stage name.
    pub stage: String,
    /// The path after the stage, as sent (starts with `/`).
    pub path: String,
    /// The HTTP method.
    pub method: String,
    /// The raw query string.
    pub query: Option<String>,
    /// The request headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The caller's IP address.
    pub source_ip: String,
    /// The host the caller used.
    pub domain_name: String,
    /// `HTTP/1.1`.
    pub protocol: String,
    /// The request id (UUID), answered in `x-amzn-RequestId`.
    pub request_id: String,
    /// The `x-amz-apigw-id`.
    pub extended_request_id: String,
    /// The signer, when the request was signed and verified.
    pub caller: Option<Caller>,
}

/// Where a data-plane request goes.
#[derive(Debug, Clone)]
pub struct Route {
    /// The API's account.
    pub account: String,
    /// The API's region.
    pub region: String,
    /// The API id.
    pub api_id: String,
    /// The stage.
    pub stage: String,
    /// The stage's variables.
    pub variables: BTreeMap<String, String>,
    /// The deployment serving the stage.
    pub deployed: Arc<Deployed>,
    /// The matched resource id.
    pub resource_id: String,
    /// The matched method's key (`GET`, …, or `ANY`).
    pub method_key: String,
    /// Path parameters.
    pub params: Vec<(String, String)>,
    /// The method's `authorizationType`.
    pub authorization_type: String,
}

impl Route {
    /// The matched resource.
    pub fn resource(&self) -> Option<&Resource> {
        self.deployed.doc.resources.get(&self.resource_id)
    }

    /// `arn:aws:execute-api:<region>:<account>:<api>/<stage>/<METHOD>/<path>` for `path`
    /// (without its leading `/`).
    pub fn execute_arn(&self, method: &str, path: &str) -> String {
        format!(
            "arn:aws:execute-api:{}:{}:{}/{}/{}/{}",
            self.region,
            self.account,
            self.api_id,
            self.stage,
            method,
            path.trim_start_matches('/')
        )
    }
}

/// In-memory state: every API document and every deployment.
#[derive(Default)]
struct State {
    apis: HashMap<String, Arc<RestApi>>,
    deployments: HashMap<String, Arc<Deployed>>,
}

fn dep_key(api: &str, dep: &str) -> String {
    format!("{api}/{dep}")
}

/// The API Gateway engine.
pub struct Gateway {
    meta: Arc<MetaStore>,
    clock: Arc<dyn Clock>,
    config: Config,
    invoker: Arc<dyn FunctionInvoker>,
    forwarder: Arc<dyn HttpForwarder>,
    state: RwLock<State>,
    writer: tokio::sync::Mutex<()>,
}

/// A fresh id: 10 lowercase alphanumerics.
pub fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(10)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// A fresh `x-amz-apigw-id`: 15 base64 characters and `=` (`Ab1CdEfGhIjKlMn=`).
pub fn new_apigw_id() -> String {
    let bytes = uuid::Uuid::new_v4();
    base64::engine::general_purpose::STANDARD.encode(&bytes.as_bytes()[..11])
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Internal(format!("encode: {e}")))
}

fn from_json<T: for<'de> serde::Deserialize<'de>>(what: &str, b: &[u8]) -> Result<T> {
    serde_json::from_slice(b).map_err(|e| Error::Internal(format!("stored {what} is unreadable: {e}")))
}

fn api_not_found(scope: &Scope, id: &str) -> Error {
    Error::NotFound(format!("Invalid API identifier specified {}:{id}", scope.account))
}

fn resource_not_found() -> Error {
    Error::NotFound("Invalid Resource identifier specified".into())
}

fn method_not_found() -> Error {
    Error::NotFound("Invalid Method identifier specified".into())
}

fn stage_not_found() -> Error {
    Error::NotFound("Invalid Stage identifier specified".into())
}

fn deployment_not_found() -> Error {
    Error::NotFound("Invalid Deployment identifier specified".into())
}

fn valid_stage_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

fn check_variables(vars: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in vars {
        if k.is_empty() || k.len() > 64 || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::BadRequest(format!(
                "Stage variable name {k} must be alphanumeric or underscore and at most 64 characters"
            )));
        }
        if v.len() > 512 {
            return Err(Error::BadRequest(format!(
                "Stage variable value for {k} must be at most 512 characters"
            )));
        }
    }
    Ok(())
}

/// Pages `items` (already sorted) by `key`, from `position` (a key) for `limit` items.
fn page<T: Clone>(
    items: &[T],
    key: impl Fn(&T) -> &str,
    position: Option<&str>,
    limit: Option<i64>,
) -> Result<Page<T>> {
    let limit = match limit {
        None => 25,
        Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => n as usize,
        Some(_) => {
            return Err(Error::BadRequest(format!(
                "1 validation error detected: Value at 'limit' failed to satisfy constraint: Member must have value less than or equal to {MAX_LIMIT}"
            )));
        }
    };
    let start = match position {
        None | Some("") => 0,
        Some(p) => items
            .iter()
            .position(|i| key(i) == p)
            .ok_or_else(|| Error::BadRequest("Invalid position parameter".into()))?,
    };
    let end = (start + limit).min(items.len());
    Ok(Page {
        items: items[start..end].to_vec(),
        position: items.get(end).map(|i| key(i).to_owned()),
    })
}

/// The function ARN of a Lambda integration URI
/// (`arn:aws:apigateway:<region>:lambda:path/2015-03-31/functions/<arn>/invocations`).
pub fn lambda_function_arn(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("arn:aws:apigateway:")?;
    let (_, rest) = rest.split_once(":lambda:path/")?;
    let rest = rest.split_once("/functions/")?.1;
    let arn = rest.strip_suffix("/invocations")?;
    (arn.starts_with("arn:aws:lambda:") || arn.starts_with("${stageVariables.")).then_some(arn)
}

/// Replaces `${stageVariables.<name>}` in `s`.
pub fn substitute_stage_variables(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${stageVariables.") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "${stageVariables.".len()..];
        match after.find('}') {
            Some(j) => {
                if let Some(v) = vars.get(&after[..j]) {
                    out.push_str(v);
                }
                rest = &after[j + 1..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_binary(content_type: Option<&str>, types: &[String]) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let ct = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    types.iter().any(|t| {
        let t = t.to_ascii_lowercase();
        t == ct
            || t == "*/*"
            || t.strip_suffix("/*")
                .is_some_and(|prefix| ct.split('/').next() == Some(prefix))
    })
}

impl Gateway {
    /// Opens the engine over `meta`, loading every API and deployment (see the crate docs
    /// for the tables and the recovery rule). `invoker` runs `AWS_PROXY` integrations,
    /// `forwarder` `HTTP_PROXY` ones.
    pub fn open(
        config: Config,
        meta: Arc<MetaStore>,
        clock: Arc<dyn Clock>,
        invoker: Arc<dyn FunctionInvoker>,
        forwarder: Arc<dyn HttpForwarder>,
    ) -> Result<Arc<Self>> {
        let mut state = State::default();
        for (k, v) in meta.scan_prefix(T_APIS, "")? {
            let api: RestApi = from_json("REST API", &v)?;
            if api.version != FORMAT_VERSION {
                return Err(Error::Internal(format!(
                    "REST API {k} has format version {} (this build reads {FORMAT_VERSION})",
                    api.version
                )));
            }
            state.apis.insert(api.id.clone(), Arc::new(api));
        }
        let mut orphans = Vec::new();
        for (k, v) in meta.scan_prefix(T_DEPLOYMENTS, "")? {
            let d: Deployment = from_json("deployment", &v)?;
            if d.version != FORMAT_VERSION {
                return Err(Error::Internal(format!(
                    "deployment {k} has format version {} (this build reads {FORMAT_VERSION})",
                    d.version
                )));
            }
            if !state.apis.contains_key(&d.api_id) {
                orphans.push(MetaOp::Delete {
                    table: T_DEPLOYMENTS.into(),
                    key: k,
                });
                continue;
            }
            state
                .deployments
                .insert(dep_key(&d.api_id, &d.id), Arc::new(Deployed::new(d)));
        }
        meta.write(orphans)?;
        Ok(Arc::new(Self {
            meta,
            clock,
            config,
            invoker,
            forwarder,
            state: RwLock::new(state),
            writer: tokio::sync::Mutex::new(()),
        }))
    }

    fn now_secs(&self) -> i64 {
        self.clock.now_ms().div_euclid(1000)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The API `id` of `scope`.
    pub fn get_rest_api(&self, scope: &Scope, id: &str) -> Result<Arc<RestApi>> {
        self.read()
            .apis
            .get(id)
            .filter(|a| a.account == scope.account && a.region == scope.region)
            .cloned()
            .ok_or_else(|| api_not_found(scope, id))
    }

    /// Commits the API document (and `extra` ops) in one transaction, then publishes it.
    async fn commit(&self, api: RestApi, extra: Vec<MetaOp>, deployed: Option<Deployed>) -> Result<Arc<RestApi>> {
        let mut ops = vec![MetaOp::Put {
            table: T_APIS.into(),
            key: api.id.clone(),
            value: to_json(&api)?,
        }];
        ops.extend(extra);
        self.meta.write_grouped(ops).await?;
        let api = Arc::new(api);
        let mut st = self.write();
        st.apis.insert(api.id.clone(), api.clone());
        if let Some(d) = deployed {
            st.deployments.insert(dep_key(&d.doc.api_id, &d.doc.id), Arc::new(d));
        }
        Ok(api)
    }

    /// Loads the API, applies `f` to a copy, commits it.
    async fn mutate<T>(&self, scope: &Scope, id: &str, f: impl FnOnce(&mut RestApi, i64) -> Result<T>) -> Result<T> {
        let _w = self.writer.lock().await;
        let mut api = (*self.get_rest_api(scope, id)?).clone();
        let out = f(&mut api, self.now_secs())?;
        self.commit(api, Vec::new(), None).await?;
        Ok(out)
    }

    // ------------------------------------------------------------------ REST APIs

    /// CreateRestApi.
    pub async fn create_rest_api(&self, scope: &Scope, input: CreateApiInput) -> Result<Arc<RestApi>> {
        if input.name.trim().is_empty() {
            return Err(Error::BadRequest("Invalid REST API name specified".into()));
        }
        let endpoint_types = input.endpoint_types.unwrap_or_else(|| vec!["EDGE".to_owned()]);
        if endpoint_types.len() != 1 || !matches!(endpoint_types[0].as_str(), "EDGE" | "REGIONAL" | "PRIVATE") {
            return Err(Error::BadRequest(
                "Invalid endpoint configuration: exactly one of EDGE, REGIONAL or PRIVATE".into(),
            ));
        }
        let api_key_source = input.api_key_source.unwrap_or_else(|| "HEADER".to_owned());
        if !matches!(api_key_source.as_str(), "HEADER" | "AUTHORIZER") {
            return Err(Error::BadRequest(format!("Invalid API Key source: {api_key_source}")));
        }
        let _w = self.writer.lock().await;
        let id = loop {
            let id = new_id();
            if !self.read().apis.contains_key(&id) {
                break id;
            }
        };
        let root_id = new_id();
        let root = Resource {
            id: root_id.clone(),
            parent_id: None,
            path_part: None,
            path: "/".into(),
            methods: BTreeMap::new(),
        };
        let api = RestApi {
            version: FORMAT_VERSION,
            id,
            account: scope.account.clone(),
            region: scope.region.clone(),
            name: input.name,
            description: input.description,
            api_version: input.api_version,
            created: self.now_secs(),
            binary_media_types: input.binary_media_types,
            endpoint_types,
            api_key_source,
            disable_execute_api_endpoint: input.disable_execute_api_endpoint,
            minimum_compression_size: input.minimum_compression_size,
            policy: input.policy,
            tags: input.tags,
            root_id: root_id.clone(),
            resources: [(root_id, root)].into(),
            stages: BTreeMap::new(),
        };
        self.commit(api, Vec::new(), None).await
    }

    /// GetRestApis: the scope's APIs, by id.
    pub fn get_rest_apis(
        &self,
        scope: &Scope,
        position: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Page<Arc<RestApi>>> {
        let mut apis: Vec<Arc<RestApi>> = self
            .read()
            .apis
            .values()
            .filter(|a| a.account == scope.account && a.region == scope.region)
            .cloned()
            .collect();
        apis.sort_by(|a, b| a.id.cmp(&b.id));
        page(&apis, |a| a.id.as_str(), position, limit)
    }

    /// UpdateRestApi: `replace` of `/name`, `/description`, `/version`,
    /// `/disableExecuteApiEndpoint`, `/apiKeySource`, `/minimumCompressionSize`, `/policy`;
    /// `add`/`remove` of `/binaryMediaTypes/<type>` (`~1` for `/`).
    pub async fn update_rest_api(&self, scope: &Scope, id: &str, patches: &[PatchOp]) -> Result<Arc<RestApi>> {
        self.mutate(scope, id, |api, _| {
            for p in patches {
                let value = p.value.clone();
                match (p.op.as_str(), p.path.as_str()) {
                    ("replace", "/name") => match value {
                        Some(v) if !v.trim().is_empty() => api.name = v,
                        _ => return Err(Error::BadRequest("Invalid REST API name specified".into())),
                    },
                    ("replace", "/description") => api.description = value.filter(|v| !v.is_empty()),
                    ("replace", "/version") => api.api_version = value.filter(|v| !v.is_empty()),
                    ("replace", "/policy") => api.policy = value.filter(|v| !v.is_empty()),
                    ("replace", "/apiKeySource") => match value.as_deref() {
                        Some(v @ ("HEADER" | "AUTHORIZER")) => api.api_key_source = v.to_owned(),
                        other => {
                            return Err(Error::BadRequest(format!(
                                "Invalid API Key source: {}",
                                other.unwrap_or_default()
                            )));
                        }
                    },
                    ("replace", "/disableExecuteApiEndpoint") => {
                        api.disable_execute_api_endpoint = match value.as_deref() {
                            Some("true") => true,
                            Some("false") => false,
                            _ => {
                                return Err(Error::BadRequest(
                                    "Invalid boolean value for disableExecuteApiEndpoint".into(),
                                ));
                            }
                        }
                    }
                    ("replace", "/minimumCompressionSize") => {
                        api.minimum_compression_size = match value.as_deref() {
                            None | Some("") => None,
                            Some(v) => Some(
                                v.parse::<i64>()
                                    .ok()
                                    .filter(|n| (0..=10_485_760).contains(n))
                                    .ok_or_else(|| {
                                        Error::BadRequest(
                                            "Invalid minimum compression size: must be between 0 and 10485760".into(),
                                        )
                                    })?,
                            ),
                        }
                    }
                    ("add" | "remove", path) if path.starts_with("/binaryMediaTypes/") => {
                        let t = path["/binaryMediaTypes/".len()..].replace("~1", "/").replace("~0", "~");
                        if p.op == "add" {
                            if !api.binary_media_types.contains(&t) {
                                api.binary_media_types.push(t);
                            }
                        } else {
                            api.binary_media_types.retain(|x| *x != t);
                        }
                    }
                    (op, path) => return Err(invalid_patch(op, path)),
                }
            }
            Ok(())
        })
        .await?;
        self.get_rest_api(scope, id)
    }

    /// DeleteRestApi: the API, its stages and every deployment, in one transaction.
    pub async fn delete_rest_api(&self, scope: &Scope, id: &str) -> Result<()> {
        let _w = self.writer.lock().await;
        self.get_rest_api(scope, id)?;
        let deps: Vec<String> = self
            .read()
            .deployments
            .keys()
            .filter(|k| k.split('/').next() == Some(id))
            .cloned()
            .collect();
        let mut ops = vec![MetaOp::Delete {
            table: T_APIS.into(),
            key: id.to_owned(),
        }];
        ops.extend(deps.iter().map(|k| MetaOp::Delete {
            table: T_DEPLOYMENTS.into(),
            key: k.clone(),
        }));
        self.meta.write_grouped(ops).await?;
        let mut st = self.write();
        st.apis.remove(id);
        for k in deps {
            st.deployments.remove(&k);
        }
        Ok(())
    }

    // ------------------------------------------------------------------ resources

    /// GetResources: the API's resources sorted by path.
    pub fn get_resources(
        &self,
        scope: &Scope,
        api_id: &str,
        position: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Page<Resource>> {
        let api = self.get_rest_api(scope, api_id)?;
        let mut all: Vec<Resource> = api.resources.values().cloned().collect();
        all.sort_by(|a, b| a.path.cmp(&b.path));
        page(&all, |r| r.id.as_str(), position, limit)
    }

    /// GetResource.
    pub fn get_resource(&self, scope: &Scope, api_id: &str, id: &str) -> Result<Resource> {
        let api = self.get_rest_api(scope, api_id)?;
        api.resources.get(id).cloned().ok_or_else(resource_not_found)
    }

    /// CreateResource under `parent_id`.
    pub async fn create_resource(
        &self,
        scope: &Scope,
        api_id: &str,
        parent_id: &str,
        path_part: &str,
    ) -> Result<Resource> {
        self.mutate(scope, api_id, |api, _| {
            let parent = api.resources.get(parent_id).cloned().ok_or_else(resource_not_found)?;
            if !valid_path_part(path_part) {
                return Err(Error::BadRequest(
                    "Resource's path part only allow a-zA-Z0-9._- and curly braces at the beginning and the end and an optional plus sign before the closing brace.".into(),
                ));
            }
            if parent
                .path_part
                .as_deref()
                .is_some_and(|p| matches!(classify(p), PathPart::Greedy(_)))
            {
                return Err(Error::BadRequest(format!(
                    "Cannot create a child of a resource with a greedy path variable: {}",
                    parent.path_part.as_deref().unwrap_or_default()
                )));
            }
            if api.resources.len() >= MAX_RESOURCES {
                return Err(Error::LimitExceeded(format!(
                    "Maximum number of Resources for this API has been reached: {MAX_RESOURCES}"
                )));
            }
            let new_kind = classify(path_part);
            for sibling in api.resources.values().filter(|r| r.parent_id.as_deref() == Some(parent_id)) {
                let Some(sp) = sibling.path_part.as_deref() else {
                    continue;
                };
                if sp == path_part {
                    return Err(Error::Conflict(format!(
                        "Another resource with the same parent already has this name: {path_part}"
                    )));
                }
                let sibling_var = !matches!(classify(sp), PathPart::Literal(_));
                if sibling_var && !matches!(new_kind, PathPart::Literal(_)) {
                    return Err(Error::BadRequest(format!(
                        "A sibling ({sp}) of this resource already has a variable path part -- only one is allowed"
                    )));
                }
            }
            let id = loop {
                let id = new_id();
                if !api.resources.contains_key(&id) {
                    break id;
                }
            };
            let path = if parent.path == "/" {
                format!("/{path_part}")
            } else {
                format!("{}/{path_part}", parent.path)
            };
            let r = Resource {
                id: id.clone(),
                parent_id: Some(parent_id.to_owned()),
                path_part: Some(path_part.to_owned()),
                path,
                methods: BTreeMap::new(),
            };
            api.resources.insert(id, r.clone());
            Ok(r)
        })
        .await
    }

    /// DeleteResource: the resource and everything below it (not the root).
    pub async fn delete_resource(&self, scope: &Scope, api_id: &str, id: &str) -> Result<()> {
        self.mutate(scope, api_id, |api, _| {
            if !api.resources.contains_key(id) {
                return Err(resource_not_found());
            }
            if id == api.root_id {
                return Err(Error::BadRequest("Cannot delete the root resource".into()));
            }
            let mut doomed = vec![id.to_owned()];
            let mut i = 0;
            while i < doomed.len() {
                let cur = doomed[i].clone();
                doomed.extend(
                    api.resources
                        .values()
                        .filter(|r| r.parent_id.as_deref() == Some(cur.as_str()))
                        .map(|r| r.id.clone()),
                );
                i += 1;
            }
            for d in doomed {
                api.resources.remove(&d);
            }
            Ok(())
        })
        .await
    }

    // ------------------------------------------------------------------ methods

    fn method_mut<'a>(api: &'a mut RestApi, resource: &str, method: &str) -> Result<&'a mut Method> {
        api.resources
            .get_mut(resource)
            .ok_or_else(resource_not_found)?
            .methods
            .get_mut(method)
            .ok_or_else(method_not_found)
    }

    /// PutMethod.
    pub async fn put_method(
        &self,
        scope: &Scope,
        api_id: &str,
        resource: &str,
        http_method: &str,
        input: MethodInput,
    ) -> Result<Method> {
        self.mutate(scope, api_id, |api, _| {
            let r = api.resources.get_mut(resource).ok_or_else(resource_not_found)?;
            if !HTTP_METHODS.contains(&http_method) {
                return Err(Error::BadRequest(
                    "Invalid HttpMethod specified. Valid options are ANY,DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT".into(),
                ));
            }
            if !AUTH_TYPES.contains(&input.authorization_type.as_str()) {
                return Err(Error::BadRequest(
                    "Invalid authorization type specified. Valid values are NONE, AWS_IAM, CUSTOM, COGNITO_USER_POOLS"
                        .into(),
                ));
            }
            if matches!(input.authorization_type.as_str(), "CUSTOM" | "COGNITO_USER_POOLS") && input.authorizer_id.is_none() {
                return Err(Error::BadRequest(format!(
                    "Invalid authorizer ID specified. Setting the authorization type to {} requires a valid authorizer.",
                    input.authorization_type
                )));
            }
            if r.methods.contains_key(http_method) {
                return Err(Error::Conflict("Method already exists for this resource".into()));
            }
            let m = Method {
                http_method: http_method.to_owned(),
                authorization_type: input.authorization_type,
                authorizer_id: input.authorizer_id,
                api_key_required: input.api_key_required,
                operation_name: input.operation_name,
                request_parameters: input.request_parameters,
                request_models: input.request_models,
                request_validator_id: input.request_validator_id,
                authorization_scopes: input.authorization_scopes,
                method_responses: BTreeMap::new(),
                integration: None,
            };
            r.methods.insert(http_method.to_owned(), m.clone());
            Ok(m)
        })
        .await
    }

    /// GetMethod.
    pub fn get_method(&self, scope: &Scope, api_id: &str, resource: &str, http_method: &str) -> Result<Method> {
        let api = self.get_rest_api(scope, api_id)?;
        api.resources
            .get(resource)
            .ok_or_else(resource_not_found)?
            .methods
            .get(http_method)
            .cloned()
            .ok_or_else(method_not_found)
    }

    /// DeleteMethod.
    pub async fn delete_method(&self, scope: &Scope, api_id: &str, resource: &str, http_method: &str) -> Result<()> {
        self.mutate(scope, api_id, |api, _| {
            let r = api.resources.get_mut(resource).ok_or_else(resource_not_found)?;
            r.methods.remove(http_method).map(|_| ()).ok_or_else(method_not_found)
        })
        .await
    }

    /// PutMethodResponse.
    pub async fn put_method_response(
        &self,
        scope: &Scope,
        api_id: &str,
        resource: &str,
        http_method: &str,
        response: MethodResponse,
    ) -> Result<MethodResponse> {
        check_status_code(&response.status_code)?;
        self.mutate(scope, api_id, |api, _| {
            let m = Self::method_mut(api, resource, http_method)?;
            if m.method_responses.contains_key(&response.status_code) {
                return Err(Error::Conflict("Response already exists for this resource".into()));
            }
            m.method_responses
                .insert(response.status_code.clone(), response.clone());
            Ok(response)
        })
        .await
    }

    /// GetMethodResponse.
    pub fn get_method_response(
        &self,
        scope: &Scope,
        api_id: &str,
        resource: &str,
        http_method: &str,
        status: &str,
    ) -> Result<MethodResponse> {
        self.get_method(scope, api_id, resource, http_method)?
            .method_responses
            .get(status)
            .cloned()
            .ok_or_else(|| Error::NotFound("Invalid Response status code specified".into()))
    }

    /// DeleteMethodResponse.
    pub async fn delete_method_response(
        &self,
        scope: &Scope,
        api_id: &str,
        resource: &str,
        http_method: &str,
        status: &str,
    ) -> Result<()> {
        self.mutate(scope, api_id, |api, _| {
            let m = Self::method_mut(api, resource, http_method)?;
            m.method_responses
                .remove(status)
                .map(|_| ())
                .ok_or_else(|| Error::NotFound("Invalid Response status code specified".into()))
        })
        .await
    }

    // ------------------------------------------------------------------ integrations

    /// PutIntegration (replaces any previous integration of the method).
    pub async fn put_integration(
        &self,
        scope: &Scope,
        api_id: &str,
        resource: &str,
        http_method: &str,
        input: IntegrationInput,
    ) -> Result<Integration> {
        let kind = input.kind.clone();
        if !INTEGRATION_TYPES.contains(&kind.as_str()) {
            return Err(Error::BadRequest(format!(
                "Invalid integration type specified: {kind}. Valid values are HTTP, AWS, MOCK, HTTP_PROXY, AWS_PROXY"
            )));
        }
        let needs_method = kind != "MOCK";
        let method = input.http_method.clone().filter(|m| !m.is_empty());
        if needs_method {
            match method.as_deref() {
                None => {
                    return Err(Error::BadRequest(
                        "Enumeration value for HttpMethod must be non-empty".into(),
                    ));
                }
                Some(m) if !HTTP_METHODS.contains(&m) => {
                    return Err(Error::BadRequest(format!(
                        "Invalid integration HTTP method specified: {m}"
                    )));
                }
                _ => {}
            }
        }
        match kind.as_str() {
            "AWS_PROXY" => {
                let uri = input.uri.as_deref().unwrap_or_default();
                if lambda_function_arn(uri).is_none() {
                    return Err(Error::BadRequest(
                        "Integrations of type 'AWS_PROXY' currently only supports Lambda function and Firehose stream invocations.".into(),
                    ));
                }
            }
            "AWS"
                if !input
                    .uri
                    .as_deref()
                    .unwrap_or_default()
                    .starts_with("arn:aws:apigateway:") =>
            {
                return Err(Error::BadRequest("Invalid ARN specified in the request".into()));
            }
            "HTTP" | "HTTP_PROXY" => {
                let uri = input.uri.as_deref().unwrap_or_default();
                if !(uri.starts_with("http://") || uri.starts_with("https://")) || uri.len() > 2048 {
                    return Err(Error::BadRequest("Invalid HTTP endpoint specified for URI".into()));
                }
            }
            _ => {}
        }
        let timeout = match input.timeout_ms {
            None => self.config.default_timeout_ms,
            Some(t) if (50..=29_000).contains(&t) => t as u32,
            Some(_) => {
                return Err(Error::BadRequest("Timeout should be between 50 ms and 29000 ms".into()));
            }
        };
        let passthrough = input
            .passthrough_behavior
            .clone()
            .unwrap_or_else(|| "WHEN_NO_MATCH".into());
        if !matches!(passthrough.as_str(), "WHEN_NO_MATCH" | "WHEN_NO_TEMPLATES" | "NEVER") {
            return Err(Error::BadRequest(format!(
                "Invalid passthrough behavior specified: {passthrough}"
            )));
        }
        self.mutate(scope, api_id, |api, _| {
            let m = Self::method_mut(api, resource, http_method)?;
            let responses = m.integration.take().map(|i| i.responses).unwrap_or_default();
            let i = Integration {
                kind,
                http_method: if needs_method { method } else { None },
                uri: input.uri,
                connection_type: input.connection_type.unwrap_or_else(|| "INTERNET".into()),
                connection_id: input.connection_id,
                credentials: input.credentials,
                request_parameters: input.request_parameters,
                request_templates: input.request_templates,
                passthrough_behavior: passthrough,
                content_handling: input.content_handling,
                timeout_ms: timeout,
                cache_namespace: input.cache_namespace.unwrap_or_else(|| resource.to_owned()),
                cache_key_parameters: input.cache_key_parameters,
                responses,
            };
            m.integration = Some(i.clone());
            Ok(i)
        })
        .await
    }

    /// GetIntegration.
    pub fn get_integration(
        &self,
        scope: &Scope,
        api_id: &str,
        resource: &str,
        http_method: &str,
    ) -> Result<Integration> {
        self.get_method(scope, api_id, resource, http_method)?
            .integration
            .ok_or_else(|| Error::NotFound("No integration defined for method".into()))
    }

    /// DeleteIntegration.
    pub async fn delete_integration(
        &self,
        scope: &Scope,
        api_id: &str,
        resource: &str,
        http_method: &str,
    ) -> Result<()> {
        self.mutate(scope, api_id, |api, _| {
            let m = Self::method_mut(api, resource, http_method)?;
            m.integration
                .take()
                .map(|_| ())
                .ok_or_else(|| Error::NotFound("No integration defined for method".into()))
        })
        .await
    }

    /// PutIntegrationResponse.
    pub async fn put_integration_response(
        &self,
        scope: &Scope,
        api_id: &str,
        resource: &str,
        http_method: &str,
        response: IntegrationResponse,
    ) -> Result<IntegrationResponse> {
        check_status_code(&response.status_code)?;
        if let Some(p) = response.selection_pattern.as_deref().filter(|p| !p.is_empty())
            && regex::Regex::new(p).is_err()
        {
            return Err(Error::BadRequest(format!("Invalid selection pattern specified: {p}")));
        }
        self.mutate(scope, api_id, |api, _| {
            let m = Self::method_mut(api, resource, http_method)?;
            let i = m
                .integration
                .as_mut()
                .ok_or_else(|| Error::NotFound("No integration defined for method".into()))?;
            i.responses.insert(response.status_code.clone(), response.clone());
            Ok(response)
        })
        .await
    }

    /// GetIntegrationResponse.
    pub fn get_integration_response(
        &self,
        scope: &Scope,
        api_id: &str,
        resource: &str,
        http_method: &str,
        status: &str,
    ) -> Result<IntegrationResponse> {
        self.get_integration(scope, api_id, resource, http_method)?
            .responses
            .get(status)
            .cloned()
            .ok_or_else(|| Error::NotFound("Invalid Response status code specified".into()))
    }

    /// DeleteIntegrationResponse.
    pub async fn delete_integration_response(
        &self,
        scope: &Scope,
        api_id: &str,
        resource: &str,
        http_method: &str,
        status: &str,
    ) -> Result<()> {
        self.mutate(scope, api_id, |api, _| {
            let m = Self::method_mut(api, resource, http_method)?;
            let i = m
                .integration
                .as_mut()
                .ok_or_else(|| Error::NotFound("No integration defined for method".into()))?;
            i.responses
                .remove(status)
                .map(|_| ())
                .ok_or_else(|| Error::NotFound("Invalid Response status code specified".into()))
        })
        .await
    }

    // ------------------------------------------------------------------ deployments

    /// CreateDeployment: snapshots the resource tree; with `stageName`, creates that stage
    /// (or points it at the new deployment), all in one transaction.
    pub async fn create_deployment(&self, scope: &Scope, api_id: &str, input: DeploymentInput) -> Result<Deployment> {
        if let Some(s) = &input.stage_name
            && !valid_stage_name(s)
        {
            return Err(Error::BadRequest("Stage name only allows a-zA-Z0-9_".into()));
        }
        check_variables(&input.variables)?;
        let _w = self.writer.lock().await;
        let mut api = (*self.get_rest_api(scope, api_id)?).clone();
        let methods: Vec<&Method> = api.resources.values().flat_map(|r| r.methods.values()).collect();
        if methods.is_empty() {
            return Err(Error::BadRequest("The REST API doesn't contain any methods".into()));
        }
        if methods.iter().any(|m| m.integration.is_none()) {
            return Err(Error::BadRequest("No integration defined for method".into()));
        }
        let now = self.now_secs();
        let id = loop {
            let id = new_id();
            if !self.read().deployments.contains_key(&dep_key(api_id, &id)) {
                break id;
            }
        };
        let dep = Deployment {
            version: FORMAT_VERSION,
            id: id.clone(),
            api_id: api_id.to_owned(),
            description: input.description,
            created: now,
            resources: api.resources.clone(),
            root_id: api.root_id.clone(),
            binary_media_types: api.binary_media_types.clone(),
        };
        if let Some(name) = input.stage_name.filter(|s| !s.is_empty()) {
            let stage = api.stages.entry(name.clone()).or_insert_with(|| Stage {
                name,
                deployment_id: id.clone(),
                description: None,
                variables: BTreeMap::new(),
                tracing_enabled: false,
                cache_cluster_enabled: false,
                tags: BTreeMap::new(),
                created: now,
                updated: now,
            });
            stage.deployment_id = id.clone();
            stage.updated = now;
            if input.stage_description.is_some() {
                stage.description = input.stage_description;
            }
            stage.variables.extend(input.variables);
            if let Some(t) = input.tracing_enabled {
                stage.tracing_enabled = t;
            }
        }
        let extra = vec![MetaOp::Put {
            table: T_DEPLOYMENTS.into(),
            key: dep_key(api_id, &id),
            value: to_json(&dep)?,
        }];
        self.commit(api, extra, Some(Deployed::new(dep.clone()))).await?;
        Ok(dep)
    }

    /// GetDeployments: by creation time.
    pub fn get_deployments(
        &self,
        scope: &Scope,
        api_id: &str,
        position: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Page<Deployment>> {
        self.get_rest_api(scope, api_id)?;
        let mut all: Vec<Deployment> = self
            .read()
            .deployments
            .values()
            .filter(|d| d.doc.api_id == api_id)
            .map(|d| d.doc.clone())
            .collect();
        all.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        page(&all, |d| d.id.as_str(), position, limit)
    }

    /// GetDeployment.
    pub fn get_deployment(&self, scope: &Scope, api_id: &str, id: &str) -> Result<Deployment> {
        self.get_rest_api(scope, api_id)?;
        self.read()
            .deployments
            .get(&dep_key(api_id, id))
            .map(|d| d.doc.clone())
            .ok_or_else(deployment_not_found)
    }

    /// DeleteDeployment (not while a stage points at it).
    pub async fn delete_deployment(&self, scope: &Scope, api_id: &str, id: &str) -> Result<()> {
        let _w = self.writer.lock().await;
        let api = self.get_rest_api(scope, api_id)?;
        if !self.read().deployments.contains_key(&dep_key(api_id, id)) {
            return Err(deployment_not_found());
        }
        if api.stages.values().any(|s| s.deployment_id == id) {
            return Err(Error::BadRequest(
                "Active stages pointing to this deployment must be moved or deleted".into(),
            ));
        }
        self.meta
            .write_grouped(vec![MetaOp::Delete {
                table: T_DEPLOYMENTS.into(),
                key: dep_key(api_id, id),
            }])
            .await?;
        self.write().deployments.remove(&dep_key(api_id, id));
        Ok(())
    }

    // ------------------------------------------------------------------ stages

    /// CreateStage.
    pub async fn create_stage(&self, scope: &Scope, api_id: &str, input: StageInput) -> Result<Stage> {
        if !valid_stage_name(&input.name) {
            return Err(Error::BadRequest("Stage name only allows a-zA-Z0-9_".into()));
        }
        check_variables(&input.variables)?;
        let exists = self
            .read()
            .deployments
            .contains_key(&dep_key(api_id, &input.deployment_id));
        self.mutate(scope, api_id, |api, now| {
            if !exists {
                return Err(deployment_not_found());
            }
            if api.stages.contains_key(&input.name) {
                return Err(Error::Conflict("Stage already exists".into()));
            }
            let s = Stage {
                name: input.name.clone(),
                deployment_id: input.deployment_id,
                description: input.description,
                variables: input.variables,
                tracing_enabled: input.tracing_enabled,
                cache_cluster_enabled: input.cache_cluster_enabled,
                tags: input.tags,
                created: now,
                updated: now,
            };
            api.stages.insert(input.name, s.clone());
            Ok(s)
        })
        .await
    }

    /// GetStage.
    pub fn get_stage(&self, scope: &Scope, api_id: &str, name: &str) -> Result<Stage> {
        self.get_rest_api(scope, api_id)?
            .stages
            .get(name)
            .cloned()
            .ok_or_else(stage_not_found)
    }

    /// GetStages (optionally only those of one deployment).
    pub fn get_stages(&self, scope: &Scope, api_id: &str, deployment_id: Option<&str>) -> Result<Vec<Stage>> {
        Ok(self
            .get_rest_api(scope, api_id)?
            .stages
            .values()
            .filter(|s| deployment_id.is_none_or(|d| s.deployment_id == d))
            .cloned()
            .collect())
    }

    /// UpdateStage: `/variables/<name>` (add, replace, remove), `/description`,
    /// `/deploymentId`, `/tracingEnabled`, `/cacheClusterEnabled` (replace).
    pub async fn update_stage(&self, scope: &Scope, api_id: &str, name: &str, patches: &[PatchOp]) -> Result<Stage> {
        let deployments: Vec<String> = self
            .read()
            .deployments
            .values()
            .filter(|d| d.doc.api_id == api_id)
            .map(|d| d.doc.id.clone())
            .collect();
        self.mutate(scope, api_id, |api, now| {
            let s = api.stages.get_mut(name).ok_or_else(stage_not_found)?;
            for p in patches {
                let value = p.value.clone();
                let bool_of = |v: Option<&str>| match v {
                    Some("true") => Ok(true),
                    Some("false") => Ok(false),
                    _ => Err(Error::BadRequest(format!("Invalid boolean value for {}", p.path))),
                };
                match (p.op.as_str(), p.path.as_str()) {
                    ("replace" | "add", path) if path.starts_with("/variables/") => {
                        let k = path["/variables/".len()..].replace("~1", "/").replace("~0", "~");
                        let v = value.unwrap_or_default();
                        check_variables(&[(k.clone(), v.clone())].into())?;
                        s.variables.insert(k, v);
                    }
                    ("remove", path) if path.starts_with("/variables/") => {
                        let k = path["/variables/".len()..].replace("~1", "/").replace("~0", "~");
                        s.variables.remove(&k);
                    }
                    ("replace", "/description") => s.description = value.filter(|v| !v.is_empty()),
                    ("replace", "/deploymentId") => {
                        let d = value.unwrap_or_default();
                        if !deployments.contains(&d) {
                            return Err(Error::BadRequest(format!("Deployment id does not exist: {d}")));
                        }
                        s.deployment_id = d;
                    }
                    ("replace", "/tracingEnabled") => s.tracing_enabled = bool_of(value.as_deref())?,
                    ("replace", "/cacheClusterEnabled") => s.cache_cluster_enabled = bool_of(value.as_deref())?,
                    (op, path) => return Err(invalid_patch(op, path)),
                }
            }
            s.updated = now;
            Ok(s.clone())
        })
        .await
    }

    /// DeleteStage.
    pub async fn delete_stage(&self, scope: &Scope, api_id: &str, name: &str) -> Result<()> {
        self.mutate(scope, api_id, |api, _| {
            api.stages.remove(name).map(|_| ()).ok_or_else(stage_not_found)
        })
        .await
    }

    /// Removes every API and deployment.
    pub async fn reset(&self) -> Result<()> {
        let _w = self.writer.lock().await;
        let mut ops = Vec::new();
        for table in [T_APIS, T_DEPLOYMENTS] {
            for (k, _) in self.meta.scan_prefix(table, "")? {
                ops.push(MetaOp::Delete {
                    table: table.into(),
                    key: k,
                });
            }
        }
        self.meta.write_grouped(ops).await?;
        *self.write() = State::default();
        Ok(())
    }

    // ------------------------------------------------------------------ data plane

    // The error is the finished gateway response, built once on the failure path.
    #[allow(clippy::result_large_err)]
    /// Routes a request to a deployed method. `Err` is the gateway response to answer with:
    /// 403 `Forbidden` for an unknown API or stage, 403 `Missing Authentication Token` when
    /// no resource or method matches.
    pub fn route(
        &self,
        api_id: &str,
        stage: &str,
        method: &str,
        path: &str,
    ) -> std::result::Result<Route, http::Response<Bytes>> {
        let forbidden = || proxy::gateway_response(403, "ForbiddenException", "Forbidden");
        let missing = || {
            proxy::gateway_response(
                403,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            )
        };
        let st = self.read();
        let api = st.apis.get(api_id).ok_or_else(forbidden)?;
        if api.disable_execute_api_endpoint {
            return Err(forbidden());
        }
        let s = api.stages.get(stage).ok_or_else(forbidden)?;
        let deployed = st
            .deployments
            .get(&dep_key(api_id, &s.deployment_id))
            .cloned()
            .ok_or_else(forbidden)?;
        let matched = deployed.routes.route(path).ok_or_else(missing)?;
        let resource = deployed.doc.resources.get(&matched.resource_id).ok_or_else(missing)?;
        let (key, m) = resource
            .methods
            .get_key_value(method)
            .or_else(|| resource.methods.get_key_value("ANY"))
            .ok_or_else(missing)?;
        Ok(Route {
            account: api.account.clone(),
            region: api.region.clone(),
            api_id: api_id.to_owned(),
            stage: stage.to_owned(),
            variables: s.variables.clone(),
            resource_id: matched.resource_id.clone(),
            method_key: key.clone(),
            params: matched.params,
            authorization_type: m.authorization_type.clone(),
            deployed: deployed.clone(),
        })
    }

    /// Runs the route's integration and answers (always with `x-amzn-RequestId` and
    /// `x-amz-apigw-id`).
    pub async fn execute(&self, route: &Route, req: InvokeRequest) -> http::Response<Bytes> {
        let mut resp = self.run_integration(route, &req).await;
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&req.request_id) {
            h.insert("x-amzn-requestid", v);
        }
        if let Ok(v) = HeaderValue::from_str(&req.extended_request_id) {
            h.insert("x-amz-apigw-id", v);
        }
        resp
    }

    async fn run_integration(&self, route: &Route, req: &InvokeRequest) -> http::Response<Bytes> {
        let internal = || proxy::gateway_response(500, "InternalServerErrorException", "Internal server error");
        let Some(resource) = route.resource() else {
            return internal();
        };
        let Some(integration) = resource
            .methods
            .get(&route.method_key)
            .and_then(|m| m.integration.as_ref())
        else {
            return internal();
        };
        match integration.kind.as_str() {
            "AWS_PROXY" => self.lambda_proxy(route, resource, integration, req).await,
            "MOCK" => mock(integration, &req.headers),
            "HTTP_PROXY" => self.http_proxy(route, resource, integration, req).await,
            other => {
                tracing::warn!(
                    api = %route.api_id,
                    integration = other,
                    "integration type not supported by kinesis-data's data plane"
                );
                internal()
            }
        }
    }

    async fn lambda_proxy(
        &self,
        route: &Route,
        resource: &Resource,
        integration: &Integration,
        req: &InvokeRequest,
    ) -> http::Response<Bytes> {
        let internal = || proxy::gateway_response(500, "InternalServerErrorException", "Internal server error");
        let bad_gateway = || proxy::gateway_response(502, "BadGatewayException", "Internal server error");
        let uri = substitute_stage_variables(integration.uri.as_deref().unwrap_or_default(), &route.variables);
        let Some(function_arn) = lambda_function_arn(&uri) else {
            tracing::warn!(api = %route.api_id, %uri, "integration URI names no Lambda function");
            return internal();
        };
        let content_type = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let body_is_binary =
            is_binary(content_type, &route.deployed.doc.binary_media_types) || std::str::from_utf8(&req.body).is_err();
        let event = proxy::build_event(&EventInput {
            resource: &resource.path,
            resource_id: &resource.id,
            path: &req.path,
            http_method: &req.method,
            headers: &req.headers,
            query: req.query.as_deref(),
            path_params: &route.params,
            stage_variables: &route.variables,
            account_id: &route.account,
            api_id: &route.api_id,
            stage: &route.stage,
            deployment_id: &route.deployed.doc.id,
            protocol: &req.protocol,
            request_id: &req.request_id,
            extended_request_id: &req.extended_request_id,
            time_ms: self.clock.now_ms(),
            domain_name: &req.domain_name,
            source_ip: &req.source_ip,
            caller: req.caller.as_ref(),
            body: &req.body,
            body_is_binary,
        });
        let source_arn = route.execute_arn(&req.method, &resource.path);
        let payload = Bytes::from(event.to_string());
        let timeout = Duration::from_millis(u64::from(integration.timeout_ms));
        let call = self.invoker.invoke(function_arn, &source_arn, &route.account, payload);
        match tokio::time::timeout(timeout, call).await {
            Err(_) => proxy::gateway_response(504, "IntegrationTimeoutException", "Endpoint request timed out"),
            Ok(Err(e @ (InvokeError::Denied(_) | InvokeError::NotFound(_) | InvokeError::Failed(_)))) => {
                tracing::warn!(api = %route.api_id, function = function_arn, error = %e, "integration failed");
                internal()
            }
            Ok(Err(e @ InvokeError::Throttled(_))) => {
                tracing::warn!(api = %route.api_id, function = function_arn, error = %e, "integration throttled");
                proxy::gateway_response(429, "ThrottlingException", "Too Many Requests")
            }
            Ok(Ok(out)) if out.function_error.is_some() => {
                tracing::info!(
                    api = %route.api_id,
                    function = function_arn,
                    "Lambda execution failed with status 200 due to customer function error"
                );
                bad_gateway()
            }
            Ok(Ok(out)) => match proxy::map_response(&out.payload) {
                Ok(r) => r,
                Err(e) => {
                    tracing::info!(api = %route.api_id, function = function_arn, error = %e, "malformed proxy response");
                    bad_gateway()
                }
            },
        }
    }
}

impl Gateway {
    /// An `HTTP_PROXY` integration: the client's request forwarded to the backend (see
    /// [`http_proxy`](crate::http_proxy) for the mapping), the backend's answer relayed.
    async fn http_proxy(
        &self,
        route: &Route,
        resource: &Resource,
        integration: &Integration,
        req: &InvokeRequest,
    ) -> http::Response<Bytes> {
        let internal = || proxy::gateway_response(500, "InternalServerErrorException", "Internal server error");
        if integration.connection_type == "VPC_LINK" {
            tracing::warn!(api = %route.api_id, "VPC_LINK integrations are not supported by kinesis-data");
            return internal();
        }
        let trace_id = http_proxy::new_trace_id(self.clock.now_ms());
        let built = http_proxy::build_request(&ProxyRequest {
            route,
            resource_path: &resource.path,
            integration,
            req,
            trace_id: &trace_id,
        });
        let out = match built {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(api = %route.api_id, error = %e, "Execution failed due to configuration error");
                return internal();
            }
        };
        let target = out.uri().clone();
        let timeout = Duration::from_millis(u64::from(integration.timeout_ms));
        match tokio::time::timeout(timeout, self.forwarder.forward(out)).await {
            Err(_) => proxy::gateway_response(504, "IntegrationTimeoutException", "Endpoint request timed out"),
            Ok(Ok(resp)) => http_proxy::map_response(resp, &req.method),
            Ok(Err(e @ ForwardError::TooLarge(_))) => {
                tracing::warn!(api = %route.api_id, %target, error = %e, "HTTP_PROXY answer too large");
                proxy::gateway_response(502, "BadGatewayException", "Internal server error")
            }
            Ok(Err(e)) => {
                tracing::warn!(api = %route.api_id, %target, error = %e, "HTTP_PROXY integration failed");
                internal()
            }
        }
    }
}

fn invalid_patch(op: &str, path: &str) -> Error {
    Error::BadRequest(format!("Invalid patch path '{path}' specified for op '{op}'"))
}

fn check_status_code(s: &str) -> Result<()> {
    if s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()) && (b'1'..=b'5').contains(&s.as_bytes()[0]) {
        Ok(())
    } else {
        Err(Error::BadRequest(format!("Invalid status code specified: {s}")))
    }
}

/// A MOCK integration: the request template's `statusCode` (200 without one) selects an
/// integration response (its `selectionPattern` matching the status, else the default one
/// without a pattern); its static `method.response.header.*` parameters (`'value'`) become
/// headers and its template (as text, VTL is not evaluated) the body.
fn mock(integration: &Integration, headers: &HeaderMap) -> http::Response<Bytes> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|c| c.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    let pick = |templates: &BTreeMap<String, String>| -> Option<String> {
        content_type
            .as_deref()
            .and_then(|c| templates.get(c))
            .or_else(|| templates.get("application/json"))
            .or_else(|| templates.values().next())
            .cloned()
    };
    let status = pick(&integration.request_templates)
        .and_then(|t| {
            let re = regex::Regex::new(r#""statusCode"\s*:\s*"?(\d{3})"#).ok()?;
            re.captures(&t).and_then(|c| c.get(1)).map(|m| m.as_str().to_owned())
        })
        .unwrap_or_else(|| "200".to_owned());
    let chosen = integration
        .responses
        .values()
        .find(|r| {
            r.selection_pattern
                .as_deref()
                .filter(|p| !p.is_empty())
                .is_some_and(|p| regex::Regex::new(&format!("^(?:{p})$")).is_ok_and(|re| re.is_match(&status)))
        })
        .or_else(|| {
            integration
                .responses
                .values()
                .find(|r| r.selection_pattern.as_deref().is_none_or(str::is_empty))
        });
    let Some(r) = chosen else {
        tracing::info!("MOCK integration: no match for output mapping and no default output mapping configured");
        return proxy::gateway_response(500, "InternalServerErrorException", "Internal server error");
    };
    let body = pick(&r.response_templates).unwrap_or_default();
    let mut resp = http::Response::new(Bytes::from(body));
    *resp.status_mut() = r
        .status_code
        .parse::<u16>()
        .ok()
        .and_then(|s| http::StatusCode::from_u16(s).ok())
        .unwrap_or(http::StatusCode::OK);
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (k, v) in &r.response_parameters {
        let Some(name) = k.strip_prefix("method.response.header.") else {
            continue;
        };
        let Some(value) = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            h.insert(n, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_aws_shapes() {
        let id = new_id();
        assert_eq!(id.len(), 10);
        assert!(id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        let g = new_apigw_id();
        assert_eq!(g.len(), 16);
        assert!(g.ends_with('='));
    }

    #[test]
    fn lambda_uris_and_stage_variables() {
        let uri = "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:f/invocations";
        assert_eq!(
            lambda_function_arn(uri),
            Some("arn:aws:lambda:us-east-1:000000000000:function:f")
        );
        assert_eq!(lambda_function_arn("arn:aws:apigateway:us-east-1:s3:path/x"), None);
        assert_eq!(lambda_function_arn("http://x"), None);
        let vars: BTreeMap<String, String> = [("fn".to_owned(), "items".to_owned())].into();
        assert_eq!(
            substitute_stage_variables("a:${stageVariables.fn}:b${stageVariables.none}${x", &vars),
            "a:items:b${x"
        );
    }

    #[test]
    fn binary_media_types_match_wildcards() {
        let types = vec!["image/*".to_owned(), "application/octet-stream".to_owned()];
        assert!(is_binary(Some("image/png"), &types));
        assert!(is_binary(Some("application/octet-stream; x=1"), &types));
        assert!(!is_binary(Some("application/json"), &types));
        assert!(!is_binary(None, &types));
        assert!(is_binary(Some("text/plain"), &["*/*".to_owned()]));
    }
}
