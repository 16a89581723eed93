//! The function registry and the invoke path.
//!
//! # Durability
//!
//! Each function is ONE JSON document in the `lambda_functions` table (key
//! `<account>/<region>/<name>`, see [`crate::model::FunctionDoc`]) holding `$LATEST`, the
//! published versions, the aliases, the resource policy, reserved concurrency, tags and
//! the asynchronous-invoke settings. Every change rewrites the document in one grouped,
//! fsynced `MetaStore` transaction before it is acknowledged; the documents are cached in
//! memory (loaded at open) so the invoke path reads no disk. Code packages are written and
//! fsynced by the [`CodeStore`] before the document naming them commits; at open, packages
//! no document names are removed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use kd_storage::{Clock, MetaOp, MetaStore};

use crate::code::{CodeStore, b64_of_hex};
use crate::error::{Error, Result};
use crate::host::{FunctionSpec, Host, HostConfig, HostError, Invocation, InvokeOutcome};
use crate::model::*;

pub(crate) const T_FUNCTIONS: &str = "lambda_functions";
pub(crate) const T_STATE: &str = "lambda_state";

/// Largest synchronous request and response payload (6 MB).
pub const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;
/// Largest asynchronous payload (1 MB, as the current model documents).
pub const MAX_ASYNC_PAYLOAD: usize = 1024 * 1024;
/// Largest decoded ClientContext.
pub const MAX_CLIENT_CONTEXT: usize = 3583;
/// Total size of a function's environment variables (4 KB).
pub const MAX_ENVIRONMENT_BYTES: usize = 4096;
/// Largest resource policy (20 KB).
pub const MAX_POLICY_BYTES: usize = 20 * 1024;
/// Account-wide code storage (75 GB on AWS).
pub const CODE_STORAGE_LIMIT: u64 = 75 * 1024 * 1024 * 1024;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `<data_dir>/lambda`.
    pub root: PathBuf,
    /// The function host's settings.
    pub host: HostConfig,
    /// How long a new or updated function stays `Pending` / `InProgress` (default 0: the
    /// first read after the write sees `Active`).
    pub activation_delay_ms: i64,
    /// Delay before each retry of a failed asynchronous invocation (AWS waits about 1 and
    /// 2 minutes; default 1 s and 2 s).
    pub async_retry_delays_ms: Vec<u64>,
    /// Asynchronous invocations running at once (all functions).
    pub async_concurrency: usize,
}

impl Config {
    /// Defaults under `root`, functions talking to `endpoint_url`.
    pub fn new(root: PathBuf, endpoint_url: String) -> Self {
        Self {
            host: HostConfig::new(root.join("run"), endpoint_url),
            root,
            activation_delay_ms: 0,
            async_retry_delays_ms: vec![1_000, 2_000],
            async_concurrency: 64,
        }
    }
}

/// An Invoke request.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    /// `FunctionName` as given (name, ARN, partial ARN, with or without qualifier).
    pub function_name: String,
    /// `Qualifier` query parameter.
    pub qualifier: Option<String>,
    /// `RequestResponse`, `Event` or `DryRun`.
    pub invocation_type: String,
    /// `X-Amz-Log-Type` is `Tail`.
    pub log_tail: bool,
    /// `X-Amz-Client-Context` (base64 JSON).
    pub client_context: Option<String>,
    /// The event.
    pub payload: Bytes,
}

/// What Invoke answers.
#[derive(Debug, Clone)]
pub struct InvokeResponse {
    /// 200, 202 or 204.
    pub status: u16,
    /// Result or error document (200 only).
    pub payload: Bytes,
    /// `X-Amz-Function-Error`.
    pub function_error: Option<String>,
    /// `X-Amz-Log-Result` (base64 of the tail).
    pub log_result: Option<String>,
    /// `X-Amz-Executed-Version`.
    pub executed_version: String,
    /// The request id given to the function.
    pub request_id: String,
}

/// A resolved function version, ready to run.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub doc: FunctionDoc,
    pub config: VersionConfig,
    /// The ARN the caller named, qualified if they qualified it.
    pub invoked_arn: String,
}

/// The Lambda engine.
pub struct Functions {
    pub(crate) config: Config,
    pub(crate) meta: Arc<MetaStore>,
    pub(crate) clock: Arc<dyn Clock>,
    roles: Arc<dyn Roles>,
    fetcher: Arc<dyn CodeFetcher>,
    code: CodeStore,
    pub(crate) host: Arc<Host>,
    docs: RwLock<HashMap<String, FunctionDoc>>,
    pub(crate) write_lock: tokio::sync::Mutex<()>,
    specs: Mutex<HashMap<String, (Arc<FunctionSpec>, i64)>>,
    pub(crate) queue: crate::queue::QueueState,
    pub(crate) mappings: crate::esm::MappingState,
}

impl std::fmt::Debug for Functions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Functions").field("root", &self.config.root).finish()
    }
}

fn doc_key(account: &str, region: &str, name: &str) -> String {
    format!("{account}/{region}/{name}")
}

fn not_found(arn: &str) -> Error {
    Error::ResourceNotFound(format!("Function not found: {arn}"))
}

/// How long a built [`FunctionSpec`] (with its role credentials) is reused.
const SPEC_TTL_MS: i64 = 30 * 60 * 1000;

impl Functions {
    /// Opens the engine: loads every function, removes orphaned code, stops processes a
    /// previous run left, recovers the asynchronous queue and starts its worker.
    pub fn open(
        config: Config,
        meta: Arc<MetaStore>,
        clock: Arc<dyn Clock>,
        roles: Arc<dyn Roles>,
        fetcher: Arc<dyn CodeFetcher>,
    ) -> Result<Arc<Functions>> {
        let code = CodeStore::open(&config.root)?;
        let host = Host::new(config.host.clone()).map_err(|e| Error::Service(e.to_string()))?;
        let mut docs = HashMap::new();
        let mut keep = BTreeSet::new();
        for (k, v) in meta.scan_prefix(T_FUNCTIONS, "")? {
            let doc: FunctionDoc = serde_json::from_slice(&v)
                .map_err(|e| Error::Service(format!("stored function {k} is unreadable: {e}")))?;
            keep.insert(doc.latest.code_sha256_hex.clone());
            for v in doc.published.values() {
                keep.insert(v.code_sha256_hex.clone());
            }
            docs.insert(k, doc);
        }
        let removed = code.retain(&keep)?;
        if removed > 0 {
            tracing::info!(removed, "removed unreferenced function code");
        }
        let queue = crate::queue::QueueState::load(&meta)?;
        let f = Arc::new(Functions {
            config,
            meta,
            clock,
            roles,
            fetcher,
            code,
            host,
            docs: RwLock::new(docs),
            write_lock: tokio::sync::Mutex::new(()),
            specs: Mutex::new(HashMap::new()),
            queue,
            mappings: crate::esm::MappingState::default(),
        });
        crate::queue::start(&f);
        Ok(f)
    }

    /// The function host.
    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// Ships every instance's output to CloudWatch Logs through `dest` (see
    /// [`crate::host::logs`]); call once, from within the tokio runtime.
    pub fn set_log_destination(&self, dest: Arc<dyn crate::host::LogDestination>) {
        self.host.set_log_destination(dest);
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    // ------------------------------------------------------------------ lookup

    fn read_docs(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, FunctionDoc>> {
        self.docs.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The function named by `name` (any form) in `scope`, and the qualifier the name or
    /// `qualifier` gives (they must agree).
    pub(crate) fn find(
        &self,
        scope: &Scope,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<(FunctionDoc, Option<String>)> {
        let r = FunctionRef::parse(name).ok_or_else(|| invalid_name(name))?;
        let unqualified = function_arn(scope, &r.name);
        if r.account.as_deref().is_some_and(|a| a != scope.account)
            || r.region.as_deref().is_some_and(|g| g != scope.region)
        {
            return Err(not_found(&unqualified));
        }
        let q = match (r.qualifier, qualifier) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::InvalidParameterValue(
                    "The derived qualifier from the function name does not match the specified qualifier.".into(),
                ));
            }
            (a, b) => a.or(b.map(str::to_owned)),
        };
        let doc = self
            .read_docs()
            .get(&doc_key(&scope.account, &scope.region, &r.name))
            .cloned()
            .ok_or_else(|| not_found(&unqualified))?;
        Ok((doc, q))
    }

    /// Resolves a qualifier (version, alias, `$LATEST`, none) to a version configuration.
    pub(crate) fn resolve(doc: &FunctionDoc, qualifier: Option<&str>) -> Result<(VersionConfig, String)> {
        match qualifier {
            None | Some("$LATEST") => Ok((doc.latest.clone(), doc.arn.clone())),
            Some(q) => {
                let qualified = format!("{}:{q}", doc.arn);
                let version = match doc.aliases.get(q) {
                    Some(a) => a.function_version.clone(),
                    None => q.to_owned(),
                };
                doc.version_config(&version)
                    .cloned()
                    .map(|c| (c, qualified.clone()))
                    .ok_or_else(|| not_found(&qualified))
            }
        }
    }

    pub(crate) fn resolve_invoke(&self, scope: &Scope, name: &str, qualifier: Option<&str>) -> Result<Resolved> {
        let (doc, q) = self.find(scope, name, qualifier)?;
        let (config, invoked_arn) = Self::resolve(&doc, q.as_deref())?;
        Ok(Resolved {
            doc,
            config,
            invoked_arn,
        })
    }

    /// A function by its unqualified or qualified ARN (any account), for the other engines.
    pub fn lookup_arn(&self, arn: &str) -> Option<(Scope, FunctionDoc, Option<String>)> {
        let r = FunctionRef::parse(arn)?;
        let scope = Scope {
            account: r.account?,
            region: r.region?,
        };
        let doc = self
            .read_docs()
            .get(&doc_key(&scope.account, &scope.region, &r.name))
            .cloned()?;
        Some((scope, doc, r.qualifier))
    }

    // ------------------------------------------------------------------ views

    fn state_of(&self, c: &VersionConfig) -> (&'static str, &'static str) {
        let pending = self.now_ms() < c.active_at_ms;
        match (pending, c.updated) {
            (true, false) => ("Pending", "Successful"),
            (true, true) => ("Active", "InProgress"),
            (false, _) => ("Active", "Successful"),
        }
    }

    /// The `FunctionConfiguration` of one version.
    pub fn view(&self, doc: &FunctionDoc, c: &VersionConfig) -> FunctionConfiguration {
        let (state, update) = self.state_of(c);
        let arn = if c.version == "$LATEST" {
            doc.arn.clone()
        } else {
            format!("{}:{}", doc.arn, c.version)
        };
        FunctionConfiguration {
            function_name: doc.name.clone(),
            function_arn: arn,
            runtime: c.runtime.clone(),
            role: c.role.clone(),
            handler: c.handler.clone(),
            code_size: c.code_size,
            description: c.description.clone(),
            timeout: c.timeout,
            memory_size: c.memory_size,
            last_modified: last_modified(c.last_modified_ms),
            code_sha256: b64_of_hex(&c.code_sha256_hex),
            version: c.version.clone(),
            environment: (!c.environment.is_empty()).then(|| serde_json::json!({ "Variables": c.environment })),
            tracing_config: serde_json::json!({"Mode": "PassThrough"}),
            revision_id: c.revision_id.clone(),
            state: state.to_owned(),
            state_reason: (state == "Pending").then(|| "The function is being created.".to_owned()),
            state_reason_code: (state == "Pending").then(|| "Creating".to_owned()),
            last_update_status: update.to_owned(),
            last_update_status_reason: (update == "InProgress").then(|| "The function is being updated.".to_owned()),
            last_update_status_reason_code: (update == "InProgress").then(|| "Updating".to_owned()),
            package_type: "Zip".to_owned(),
            architectures: vec![c.architecture.clone()],
            ephemeral_storage: serde_json::json!({"Size": c.ephemeral_storage}),
            snap_start: serde_json::json!({"ApplyOn": "None", "OptimizationStatus": "Off"}),
            logging_config: c.logging_config(&doc.name),
            dead_letter_config: c
                .dead_letter_target
                .as_ref()
                .map(|t| serde_json::json!({"TargetArn": t})),
            layers: c
                .layers
                .iter()
                .map(|l| serde_json::json!({"Arn": l, "CodeSize": 0}))
                .collect(),
            runtime_version_config: serde_json::json!({
                "RuntimeVersionArn": format!("arn:aws:lambda:{}::runtime:kinesis-data-local", doc.region)
            }),
        }
    }

    /// `$LATEST` seen by a create response: always `Pending`, as AWS answers.
    fn created_view(&self, doc: &FunctionDoc, c: &VersionConfig) -> FunctionConfiguration {
        let mut v = self.view(doc, c);
        v.state = "Pending".into();
        v.state_reason = Some("The function is being created.".into());
        v.state_reason_code = Some("Creating".into());
        v
    }

    // ------------------------------------------------------------------ writes

    async fn persist(&self, doc: &FunctionDoc) -> Result<()> {
        let value = serde_json::to_vec(doc).map_err(|e| Error::Service(e.to_string()))?;
        self.meta
            .write_grouped(vec![MetaOp::Put {
                table: T_FUNCTIONS.into(),
                key: doc_key(&doc.account, &doc.region, &doc.name),
                value,
            }])
            .await?;
        Ok(())
    }

    /// Applies `f` to the stored document of `name` and persists it.
    pub(crate) async fn mutate<T>(
        &self,
        scope: &Scope,
        name: &str,
        f: impl FnOnce(&mut FunctionDoc, i64) -> Result<T>,
    ) -> Result<T> {
        let _g = self.write_lock.lock().await;
        let (mut doc, _) = self.find(scope, name, None)?;
        let out = f(&mut doc, self.now_ms())?;
        self.persist(&doc).await?;
        self.host.retire(&doc.arn);
        self.docs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(doc_key(&doc.account, &doc.region, &doc.name), doc);
        Ok(out)
    }

    async fn store_code(&self, scope: &Scope, code: CodeInput) -> Result<crate::code::StoredCode> {
        let zip = match code {
            CodeInput::Zip(b) => b,
            CodeInput::S3 { bucket, key, version } => self
                .fetcher
                .fetch(
                    &scope.account,
                    &bucket,
                    &key,
                    version.as_deref(),
                    crate::code::MAX_ZIP_BYTES,
                )
                .await
                .map_err(Error::InvalidParameterValue)?,
        };
        if zip.is_empty() {
            return Err(Error::InvalidParameterValue(
                "Could not unzip uploaded file. Please check your file, then try to upload again.".into(),
            ));
        }
        let used: u64 = self
            .read_docs()
            .values()
            .filter(|d| d.account == scope.account)
            .flat_map(|d| std::iter::once(d.latest.code_size).chain(d.published.values().map(|v| v.code_size)))
            .sum();
        if used.saturating_add(zip.len() as u64) > CODE_STORAGE_LIMIT {
            return Err(Error::CodeStorageExceeded("Code storage limit exceeded.".into()));
        }
        let code = self.code.put(&zip)?;
        Ok(code)
    }

    /// CreateFunction.
    pub async fn create_function(
        &self,
        scope: &Scope,
        name: &str,
        input: FunctionInput,
        code: CodeInput,
        publish: bool,
        tags: BTreeMap<String, String>,
    ) -> Result<FunctionConfiguration> {
        if !valid_name(name) {
            return Err(invalid_name(name));
        }
        let role = input
            .role
            .clone()
            .ok_or_else(|| Error::InvalidParameterValue("Role is required".into()))?;
        let runtime = input
            .runtime
            .clone()
            .ok_or_else(|| Error::InvalidParameterValue("Runtime is required for a .zip deployment package.".into()))?;
        let handler = input.handler.clone().unwrap_or_default();
        if handler.is_empty() {
            return Err(Error::InvalidParameterValue(
                "Handler is required for a .zip deployment package.".into(),
            ));
        }
        validate(&input)?;
        if input.log_format.as_deref() != Some("JSON")
            && (input.application_log_level.is_some() || input.system_log_level.is_some())
        {
            return Err(levels_need_json());
        }
        check_runtime(&runtime)?;
        self.roles
            .check_lambda_trust(&role)
            .map_err(Error::InvalidParameterValue)?;
        let key = doc_key(&scope.account, &scope.region, name);
        let arn = function_arn(scope, name);
        if self.read_docs().contains_key(&key) {
            return Err(Error::ResourceConflict(format!("Function already exist: {name}")));
        }
        let stored = self.store_code(scope, code).await?;
        let _g = self.write_lock.lock().await;
        if self.read_docs().contains_key(&key) {
            return Err(Error::ResourceConflict(format!("Function already exist: {name}")));
        }
        let now = self.now_ms();
        let logging = Logging::of(&input);
        let mut latest = VersionConfig {
            version: "$LATEST".into(),
            runtime,
            handler,
            role,
            description: input.description.unwrap_or_default(),
            timeout: input.timeout.unwrap_or(3),
            memory_size: input.memory_size.unwrap_or(128),
            environment: input.environment.unwrap_or_default(),
            architecture: input
                .architectures
                .and_then(|a| a.into_iter().next())
                .unwrap_or_else(|| "x86_64".into()),
            ephemeral_storage: input.ephemeral_storage.unwrap_or(512),
            code_sha256_hex: stored.sha256_hex,
            code_size: stored.size,
            last_modified_ms: now,
            revision_id: uuid::Uuid::new_v4().to_string(),
            active_at_ms: now + self.config.activation_delay_ms,
            updated: false,
            dead_letter_target: input.dead_letter_target.filter(|t| !t.is_empty()),
            layers: input.layers.unwrap_or_default(),
            log_format: "Text".into(),
            log_group: None,
            application_log_level: None,
            system_log_level: None,
        };
        apply_logging(&mut latest, &logging)?;
        let mut doc = FunctionDoc {
            version: FORMAT_VERSION,
            account: scope.account.clone(),
            region: scope.region.clone(),
            name: name.to_owned(),
            arn,
            latest,
            published: BTreeMap::new(),
            next_version: 1,
            aliases: BTreeMap::new(),
            policy: Vec::new(),
            policy_revision: uuid::Uuid::new_v4().to_string(),
            reserved_concurrency: None,
            tags,
            event_invoke: None,
        };
        let shown = if publish {
            let mut v = doc.latest.clone();
            v.version = "1".into();
            doc.published.insert(1, v.clone());
            doc.next_version = 2;
            v
        } else {
            doc.latest.clone()
        };
        self.persist(&doc).await?;
        let view = self.created_view(&doc, &shown);
        self.docs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, doc);
        Ok(view)
    }

    /// GetFunction / GetFunctionConfiguration: the document and the version's view.
    pub fn get_function(
        &self,
        scope: &Scope,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<(FunctionDoc, FunctionConfiguration)> {
        let (doc, q) = self.find(scope, name, qualifier)?;
        let (c, _) = Self::resolve(&doc, q.as_deref())?;
        let view = self.view(&doc, &c);
        Ok((doc, view))
    }

    /// The deployment package of a version (GetFunction's `Code.Location` serves it).
    pub fn code_zip(&self, sha256_hex: &str) -> Result<Vec<u8>> {
        if sha256_hex.len() != 64 || !sha256_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::ResourceNotFound("No such code package".into()));
        }
        self.code
            .read_zip(sha256_hex)
            .map_err(|_| Error::ResourceNotFound("No such code package".into()))
    }

    /// ListFunctions: `$LATEST` of every function (or every version with `all_versions`),
    /// name order, paged by an opaque marker.
    pub fn list_functions(
        &self,
        scope: &Scope,
        marker: Option<&str>,
        max_items: usize,
        all_versions: bool,
    ) -> Result<(Vec<FunctionConfiguration>, Option<String>)> {
        let docs = self.read_docs();
        let mut rows: Vec<(String, FunctionConfiguration)> = Vec::new();
        let mut names: Vec<&FunctionDoc> = docs
            .values()
            .filter(|d| d.account == scope.account && d.region == scope.region)
            .collect();
        names.sort_by(|a, b| a.name.cmp(&b.name));
        for d in names {
            rows.push((format!("{}:$LATEST", d.name), self.view(d, &d.latest)));
            if all_versions {
                for (n, v) in &d.published {
                    rows.push((format!("{}:{n:020}", d.name), self.view(d, v)));
                }
            }
        }
        page(rows, marker, max_items)
    }

    /// UpdateFunctionCode.
    pub async fn update_code(
        &self,
        scope: &Scope,
        name: &str,
        code: CodeInput,
        publish: bool,
        revision_id: Option<String>,
    ) -> Result<FunctionConfiguration> {
        self.find(scope, name, None)?;
        let stored = self.store_code(scope, code).await?;
        let delay = self.config.activation_delay_ms;
        let (doc, shown) = self
            .mutate(scope, name, |doc, now| {
                check_revision(&doc.latest, revision_id.as_deref())?;
                let l = &mut doc.latest;
                l.code_sha256_hex = stored.sha256_hex;
                l.code_size = stored.size;
                touch(l, now, delay);
                let shown = if publish {
                    publish_version(doc, None, now)?
                } else {
                    doc.latest.clone()
                };
                Ok((doc.clone(), shown))
            })
            .await?;
        Ok(self.view(&doc, &shown))
    }

    /// UpdateFunctionConfiguration.
    pub async fn update_configuration(
        &self,
        scope: &Scope,
        name: &str,
        input: FunctionInput,
    ) -> Result<FunctionConfiguration> {
        validate(&input)?;
        if let Some(r) = &input.runtime {
            check_runtime(r)?;
        }
        if let Some(role) = &input.role {
            self.roles
                .check_lambda_trust(role)
                .map_err(Error::InvalidParameterValue)?;
        }
        let delay = self.config.activation_delay_ms;
        let logging = Logging::of(&input);
        let doc = self
            .mutate(scope, name, |doc, now| {
                check_revision(&doc.latest, input.revision_id.as_deref())?;
                let l = &mut doc.latest;
                if let Some(v) = input.runtime {
                    l.runtime = v;
                }
                if let Some(v) = input.handler {
                    l.handler = v;
                }
                if let Some(v) = input.role {
                    l.role = v;
                }
                if let Some(v) = input.description {
                    l.description = v;
                }
                if let Some(v) = input.timeout {
                    l.timeout = v;
                }
                if let Some(v) = input.memory_size {
                    l.memory_size = v;
                }
                if let Some(v) = input.environment {
                    l.environment = v;
                }
                if let Some(v) = input.ephemeral_storage {
                    l.ephemeral_storage = v;
                }
                if let Some(v) = input.dead_letter_target {
                    l.dead_letter_target = (!v.is_empty()).then_some(v);
                }
                if let Some(v) = input.layers {
                    l.layers = v;
                }
                apply_logging(l, &logging)?;
                touch(l, now, delay);
                Ok(doc.clone())
            })
            .await?;
        Ok(self.view(&doc, &doc.latest))
    }

    /// DeleteFunction (the whole function, or one published version).
    pub async fn delete_function(&self, scope: &Scope, name: &str, qualifier: Option<&str>) -> Result<()> {
        let (doc, q) = self.find(scope, name, qualifier)?;
        if let Some(q) = q.as_deref().filter(|q| *q != "$LATEST") {
            let n: u64 = q.parse().map_err(|_| {
                Error::InvalidParameterValue(format!(
                    "Deletion of aliases is not supported by DeleteFunction. Use DeleteAlias. Qualifier: {q}"
                ))
            })?;
            return self
                .mutate(scope, name, |doc, _| {
                    if !doc.published.contains_key(&n) {
                        return Err(not_found(&format!("{}:{n}", doc.arn)));
                    }
                    if let Some(a) = doc.aliases.values().find(|a| a.function_version == q) {
                        return Err(Error::ResourceConflict(format!(
                            "Unable to delete version because the following aliases reference it: [{}]",
                            a.name
                        )));
                    }
                    doc.published.remove(&n);
                    Ok(())
                })
                .await;
        }
        let _g = self.write_lock.lock().await;
        let key = doc_key(&doc.account, &doc.region, &doc.name);
        let mut ops = vec![MetaOp::Delete {
            table: T_FUNCTIONS.into(),
            key: key.clone(),
        }];
        ops.extend(self.mappings_delete_ops(&doc.arn)?);
        self.meta.write_grouped(ops).await?;
        self.docs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&key);
        self.host.retire(&doc.arn);
        Ok(())
    }

    // ------------------------------------------------------------------ versions, aliases

    /// PublishVersion.
    pub async fn publish_version(
        &self,
        scope: &Scope,
        name: &str,
        description: Option<String>,
        code_sha256: Option<String>,
        revision_id: Option<String>,
    ) -> Result<FunctionConfiguration> {
        let (doc, shown) = self
            .mutate(scope, name, |doc, now| {
                check_revision(&doc.latest, revision_id.as_deref())?;
                if let Some(sha) = code_sha256.as_deref()
                    && sha != b64_of_hex(&doc.latest.code_sha256_hex)
                {
                    return Err(Error::InvalidParameterValue(format!(
                        "CodeSHA256 ({sha}) is different from current CodeSHA256 in $LATEST ({}). Please try again with the CodeSHA256 in $LATEST.",
                        b64_of_hex(&doc.latest.code_sha256_hex)
                    )));
                }
                let v = publish_version(doc, description, now)?;
                Ok((doc.clone(), v))
            })
            .await?;
        Ok(self.view(&doc, &shown))
    }

    /// ListVersionsByFunction.
    pub fn list_versions(
        &self,
        scope: &Scope,
        name: &str,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<(Vec<FunctionConfiguration>, Option<String>)> {
        let (doc, _) = self.find(scope, name, None)?;
        let mut rows = vec![(format!("{:020}", 0), self.view(&doc, &doc.latest))];
        for (n, v) in &doc.published {
            rows.push((format!("{n:020}"), self.view(&doc, v)));
        }
        page(rows, marker, max_items)
    }

    /// CreateAlias / UpdateAlias (`create` decides which).
    #[allow(clippy::too_many_arguments)]
    pub async fn put_alias(
        &self,
        scope: &Scope,
        name: &str,
        alias: &str,
        function_version: Option<String>,
        description: Option<String>,
        create: bool,
        revision_id: Option<String>,
    ) -> Result<(FunctionDoc, AliasDoc)> {
        if !valid_alias_name(alias) {
            return Err(Error::InvalidParameterValue(format!(
                "1 validation error detected: Value '{alias}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)"
            )));
        }
        self.mutate(scope, name, |doc, _| {
            if let Some(v) = function_version.as_deref()
                && doc.version_config(v).is_none()
            {
                return Err(not_found(&format!("{}:{v}", doc.arn)));
            }
            let arn = format!("{}:{alias}", doc.arn);
            let a = match (doc.aliases.get(alias).cloned(), create) {
                (Some(_), true) => return Err(Error::ResourceConflict(format!("Alias already exists: {arn}"))),
                (None, false) => return Err(Error::ResourceNotFound(format!("Alias not found: {arn}"))),
                (None, true) => AliasDoc {
                    name: alias.to_owned(),
                    function_version: function_version
                        .ok_or_else(|| Error::InvalidParameterValue("FunctionVersion is required".into()))?,
                    description: description.unwrap_or_default(),
                    revision_id: uuid::Uuid::new_v4().to_string(),
                },
                (Some(mut a), false) => {
                    if revision_id.as_deref().is_some_and(|r| r != a.revision_id) {
                        return Err(Error::PreconditionFailed(
                            "The Revision Id provided does not match the latest Revision Id. Call the GetAlias API to retrieve the latest Revision Id".into(),
                        ));
                    }
                    if let Some(v) = function_version {
                        a.function_version = v;
                    }
                    if let Some(d) = description {
                        a.description = d;
                    }
                    a.revision_id = uuid::Uuid::new_v4().to_string();
                    a
                }
            };
            doc.aliases.insert(alias.to_owned(), a.clone());
            Ok((doc.clone(), a))
        })
        .await
    }

    /// GetAlias.
    pub fn get_alias(&self, scope: &Scope, name: &str, alias: &str) -> Result<(FunctionDoc, AliasDoc)> {
        let (doc, _) = self.find(scope, name, None)?;
        let a = doc
            .aliases
            .get(alias)
            .cloned()
            .ok_or_else(|| Error::ResourceNotFound(format!("Alias not found: {}:{alias}", doc.arn)))?;
        Ok((doc, a))
    }

    /// DeleteAlias (no error when absent, as AWS).
    pub async fn delete_alias(&self, scope: &Scope, name: &str, alias: &str) -> Result<()> {
        self.mutate(scope, name, |doc, _| {
            doc.aliases.remove(alias);
            Ok(())
        })
        .await
    }

    // ------------------------------------------------------------------ concurrency

    /// PutFunctionConcurrency.
    pub async fn put_concurrency(&self, scope: &Scope, name: &str, reserved: u32) -> Result<u32> {
        let max = self.config.host.max_concurrency;
        if reserved > max {
            return Err(Error::InvalidParameterValue(format!(
                "Specified ReservedConcurrentExecutions for function exceeds the per-function limit of {max}."
            )));
        }
        self.mutate(scope, name, |doc, _| {
            doc.reserved_concurrency = Some(reserved);
            Ok(reserved)
        })
        .await
    }

    /// DeleteFunctionConcurrency.
    pub async fn delete_concurrency(&self, scope: &Scope, name: &str) -> Result<()> {
        self.mutate(scope, name, |doc, _| {
            doc.reserved_concurrency = None;
            Ok(())
        })
        .await
    }

    // ------------------------------------------------------------------ tags

    /// TagResource / UntagResource on a function ARN.
    pub async fn tag(&self, scope: &Scope, arn: &str, add: BTreeMap<String, String>, remove: &[String]) -> Result<()> {
        self.mutate(scope, arn, |doc, _| {
            doc.tags.extend(add);
            for k in remove {
                doc.tags.remove(k);
            }
            if doc.tags.len() > 50 {
                return Err(Error::InvalidParameterValue(
                    "Number of tags exceeds resource tag limit.".into(),
                ));
            }
            Ok(())
        })
        .await
    }

    // ------------------------------------------------------------------ event invoke config

    /// PutFunctionEventInvokeConfig (`merge`: UpdateFunctionEventInvokeConfig).
    pub async fn put_event_invoke_config(
        &self,
        scope: &Scope,
        name: &str,
        mut cfg: EventInvokeConfig,
        merge: bool,
    ) -> Result<(FunctionDoc, EventInvokeConfig)> {
        if cfg.maximum_retry_attempts.is_some_and(|n| n > 2) {
            return Err(Error::InvalidParameterValue(
                "1 validation error detected: Value at 'maximumRetryAttempts' failed to satisfy constraint: Member must have value less than or equal to 2".into(),
            ));
        }
        if cfg
            .maximum_event_age_seconds
            .is_some_and(|n| !(60..=21_600).contains(&n))
        {
            return Err(Error::InvalidParameterValue(
                "1 validation error detected: Value at 'maximumEventAgeInSeconds' failed to satisfy constraint: Member must have value between 60 and 21600".into(),
            ));
        }
        for d in [&cfg.on_success, &cfg.on_failure].into_iter().flatten() {
            if FunctionRef::parse(d).is_none_or(|r| r.region.is_none()) {
                return Err(Error::InvalidParameterValue(format!(
                    "The destination ARN {d} is invalid: kinesis-data delivers asynchronous invocation records to Lambda functions only"
                )));
            }
        }
        self.mutate(scope, name, |doc, now| {
            cfg.last_modified_ms = now;
            if merge {
                let old = doc.event_invoke.clone().ok_or_else(|| {
                    Error::ResourceNotFound(format!("The function {} doesn't have an EventInvokeConfig", doc.arn))
                })?;
                cfg.maximum_retry_attempts = cfg.maximum_retry_attempts.or(old.maximum_retry_attempts);
                cfg.maximum_event_age_seconds = cfg.maximum_event_age_seconds.or(old.maximum_event_age_seconds);
                cfg.on_success = cfg.on_success.or(old.on_success);
                cfg.on_failure = cfg.on_failure.or(old.on_failure);
            }
            doc.event_invoke = Some(cfg.clone());
            Ok((doc.clone(), cfg))
        })
        .await
    }

    /// DeleteFunctionEventInvokeConfig.
    pub async fn delete_event_invoke_config(&self, scope: &Scope, name: &str) -> Result<()> {
        self.mutate(scope, name, |doc, _| {
            if doc.event_invoke.take().is_none() {
                return Err(Error::ResourceNotFound(format!(
                    "The function {} doesn't have an EventInvokeConfig",
                    doc.arn
                )));
            }
            Ok(())
        })
        .await
    }

    // ------------------------------------------------------------------ invoke

    /// The host spec of a resolved version (cached; rebuilt when the revision changes or
    /// the credentials age).
    pub(crate) fn spec(&self, r: &Resolved) -> Result<Arc<FunctionSpec>> {
        let key = format!("{}:{}:{}", r.doc.arn, r.config.version, r.config.revision_id);
        let now = self.now_ms();
        let reserved = r.doc.reserved_concurrency;
        {
            let specs = self.specs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((s, at)) = specs.get(&key)
                && now - at < SPEC_TTL_MS
                && s.concurrency_limit == reserved
            {
                return Ok(s.clone());
            }
        }
        let credentials = self
            .roles
            .credentials(&r.config.role, &r.doc.name)
            .map_err(|e| Error::Service(format!("cannot obtain credentials of role {}: {e}", r.config.role)))?;
        let code_dir = self.code.unpacked(&r.config.code_sha256_hex)?;
        let spec = Arc::new(FunctionSpec {
            name: r.doc.name.clone(),
            arn: r.doc.arn.clone(),
            version: r.config.version.clone(),
            runtime: r.config.runtime.clone(),
            handler: r.config.handler.clone(),
            code_dir,
            generation: r.config.revision_id.clone(),
            memory_mb: r.config.memory_size,
            timeout: Duration::from_secs(u64::from(r.config.timeout)),
            environment: r.config.environment.clone(),
            region: r.doc.region.clone(),
            credentials: Some(credentials),
            concurrency_limit: reserved,
            log_group: r.config.log_group_of(&r.doc.name),
        });
        let mut specs = self.specs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        specs.retain(|k, _| !k.starts_with(&format!("{}:{}:", r.doc.arn, r.config.version)));
        specs.insert(key, (spec.clone(), now));
        Ok(spec)
    }

    /// Invoke.
    pub async fn invoke(&self, scope: &Scope, req: InvokeRequest) -> Result<InvokeResponse> {
        let r = self.resolve_invoke(scope, &req.function_name, req.qualifier.as_deref())?;
        let payload = normalise_payload(req.payload)?;
        let request_id = uuid::Uuid::new_v4().to_string();
        let executed_version = r.config.version.clone();
        match req.invocation_type.as_str() {
            "DryRun" => {
                self.check_active(&r)?;
                Ok(InvokeResponse {
                    status: 204,
                    payload: Bytes::new(),
                    function_error: None,
                    log_result: None,
                    executed_version,
                    request_id,
                })
            }
            "Event" => {
                if payload.len() > MAX_ASYNC_PAYLOAD {
                    return Err(Error::RequestTooLarge(format!(
                        "Request must be smaller than {MAX_ASYNC_PAYLOAD} bytes for the InvokeAsync operation"
                    )));
                }
                self.check_active(&r)?;
                self.enqueue(&r.invoked_arn, &request_id, payload, Vec::new()).await?;
                Ok(InvokeResponse {
                    status: 202,
                    payload: Bytes::new(),
                    function_error: None,
                    log_result: None,
                    executed_version,
                    request_id,
                })
            }
            "RequestResponse" => {
                if payload.len() > MAX_SYNC_PAYLOAD {
                    return Err(Error::RequestTooLarge(format!(
                        "Request must be smaller than {MAX_SYNC_PAYLOAD} bytes for the InvokeFunction operation"
                    )));
                }
                let client_context = match &req.client_context {
                    None => None,
                    Some(b64) => Some(decode_client_context(b64)?),
                };
                let out = self
                    .run(&r, &request_id, payload, client_context, req.log_tail, None)
                    .await?;
                Ok(InvokeResponse {
                    status: 200,
                    log_result: out.log_tail.as_deref().map(|t| {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD.encode(t)
                    }),
                    payload: out.payload,
                    function_error: out.function_error,
                    executed_version,
                    request_id,
                })
            }
            other => Err(Error::InvalidParameterValue(format!(
                "1 validation error detected: Value '{other}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
            ))),
        }
    }

    fn check_active(&self, r: &Resolved) -> Result<()> {
        if self.now_ms() < r.config.active_at_ms && !r.config.updated {
            return Err(Error::ResourceConflict(
                "The operation cannot be performed at this time. The function is currently in the following state: Pending".into(),
            ));
        }
        Ok(())
    }

    /// Runs one invocation of a resolved version on the host.
    pub(crate) async fn run(
        &self,
        r: &Resolved,
        request_id: &str,
        payload: Bytes,
        client_context: Option<String>,
        log_tail: bool,
        wait: Option<Duration>,
    ) -> Result<InvokeOutcome> {
        self.check_active(r)?;
        let spec = self.spec(r)?;
        let inv = Invocation {
            request_id: request_id.to_owned(),
            invoked_arn: r.invoked_arn.clone(),
            payload,
            client_context,
            want_log_tail: log_tail,
            wait_for_instance: wait,
        };
        self.host.invoke(spec, inv).await.map_err(|e| match e {
            HostError::TooManyRequests => Error::TooManyRequests {
                message: "Rate Exceeded.".into(),
                reason: if r.doc.reserved_concurrency.is_some() {
                    "ReservedFunctionConcurrentInvocationLimitExceeded".into()
                } else {
                    "ConcurrentInvocationLimitExceeded".into()
                },
            },
            other => Error::Service(other.to_string()),
        })
    }

    /// Invokes `function_arn` synchronously on behalf of another engine (Firehose
    /// processors, S3 Batch, API Gateway): the caller has already been authorised.
    pub async fn invoke_arn(&self, function_arn: &str, payload: Bytes) -> Result<InvokeOutcome> {
        let (scope, doc, q) = self.lookup_arn(function_arn).ok_or_else(|| not_found(function_arn))?;
        let (config, invoked_arn) = Self::resolve(&doc, q.as_deref())?;
        let _ = scope;
        let r = Resolved {
            doc,
            config,
            invoked_arn,
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        self.run(&r, &request_id, payload, None, false, None).await
    }

    // ------------------------------------------------------------------ policy

    /// AddPermission: appends a statement; returns it.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_permission(
        &self,
        scope: &Scope,
        name: &str,
        qualifier: Option<&str>,
        statement_id: &str,
        action: &str,
        principal: &str,
        source_arn: Option<&str>,
        source_account: Option<&str>,
        principal_org_id: Option<&str>,
        function_url_auth_type: Option<&str>,
        revision_id: Option<&str>,
    ) -> Result<serde_json::Value> {
        if statement_id.is_empty()
            || statement_id.len() > 100
            || !statement_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::InvalidParameterValue(format!(
                "1 validation error detected: Value '{statement_id}' at 'statementId' failed to satisfy constraint: Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)"
            )));
        }
        if !(action.starts_with("lambda:") || action == "*") {
            return Err(Error::InvalidParameterValue(format!(
                "1 validation error detected: Value '{action}' at 'action' failed to satisfy constraint: Member must satisfy regular expression pattern: (lambda:[*]|lambda:[a-zA-Z]+|[*])"
            )));
        }
        let principal_json = if principal == "*" {
            serde_json::json!("*")
        } else if principal.ends_with(".amazonaws.com") || principal.ends_with(".amazonaws.com.cn") {
            serde_json::json!({ "Service": principal })
        } else if principal.len() == 12 && principal.bytes().all(|b| b.is_ascii_digit()) {
            serde_json::json!({ "AWS": format!("arn:aws:iam::{principal}:root") })
        } else if principal.starts_with("arn:aws:iam::") || principal.starts_with("arn:aws:sts::") {
            serde_json::json!({ "AWS": principal })
        } else {
            return Err(Error::InvalidParameterValue(format!(
                "The provided principal was invalid. Please check the principal and try again. Principal: {principal}"
            )));
        };
        let q = qualifier.map(str::to_owned);
        self.mutate(scope, name, move |doc, _| {
            if let Some(r) = revision_id
                && r != doc.policy_revision
            {
                return Err(Error::PreconditionFailed(
                    "The RevisionId provided does not match the latest RevisionId for the Lambda function or alias. Call the GetFunction or the GetAlias API to retrieve the latest RevisionId for your resource.".into(),
                ));
            }
            let resource = match &q {
                Some(q) => {
                    Self::resolve(doc, Some(q))?;
                    format!("{}:{q}", doc.arn)
                }
                None => doc.arn.clone(),
            };
            if doc.policy.iter().any(|s| s.get("Sid").and_then(|v| v.as_str()) == Some(statement_id)) {
                return Err(Error::ResourceConflict(format!(
                    "The statement id ({statement_id}) provided already exists. Please provide a new statement id, or remove the existing statement."
                )));
            }
            let mut condition = serde_json::Map::new();
            if let Some(a) = source_arn {
                condition.insert("ArnLike".into(), serde_json::json!({ "AWS:SourceArn": a }));
            }
            let mut equals = serde_json::Map::new();
            if let Some(a) = source_account {
                equals.insert("AWS:SourceAccount".into(), a.into());
            }
            if let Some(o) = principal_org_id {
                equals.insert("aws:PrincipalOrgID".into(), o.into());
            }
            if let Some(t) = function_url_auth_type {
                equals.insert("lambda:FunctionUrlAuthType".into(), t.into());
            }
            if !equals.is_empty() {
                condition.insert("StringEquals".into(), serde_json::Value::Object(equals));
            }
            let mut st = serde_json::json!({
                "Sid": statement_id,
                "Effect": "Allow",
                "Principal": principal_json,
                "Action": action,
                "Resource": resource,
            });
            if !condition.is_empty() {
                st["Condition"] = serde_json::Value::Object(condition);
            }
            doc.policy.push(st.clone());
            if policy_json(doc).len() > MAX_POLICY_BYTES {
                return Err(Error::PolicyLengthExceeded(
                    "The final policy size (bytes) is bigger than the limit.".into(),
                ));
            }
            doc.policy_revision = uuid::Uuid::new_v4().to_string();
            Ok(st)
        })
        .await
    }

    /// RemovePermission.
    pub async fn remove_permission(
        &self,
        scope: &Scope,
        name: &str,
        statement_id: &str,
        revision_id: Option<&str>,
    ) -> Result<()> {
        self.mutate(scope, name, |doc, _| {
            if let Some(r) = revision_id
                && r != doc.policy_revision
            {
                return Err(Error::PreconditionFailed(
                    "The RevisionId provided does not match the latest RevisionId for the Lambda function or alias. Call the GetFunction or the GetAlias API to retrieve the latest RevisionId for your resource.".into(),
                ));
            }
            let before = doc.policy.len();
            doc.policy
                .retain(|s| s.get("Sid").and_then(|v| v.as_str()) != Some(statement_id));
            if doc.policy.len() == before {
                return Err(Error::ResourceNotFound(format!(
                    "Statement {statement_id} is not found in resource policy."
                )));
            }
            doc.policy_revision = uuid::Uuid::new_v4().to_string();
            Ok(())
        })
        .await
    }

    /// GetPolicy: the policy JSON text and its revision id.
    pub fn get_policy(&self, scope: &Scope, name: &str) -> Result<(String, String)> {
        let (doc, _) = self.find(scope, name, None)?;
        if doc.policy.is_empty() {
            return Err(Error::ResourceNotFound(
                "The resource you requested does not exist.".into(),
            ));
        }
        Ok((policy_json(&doc), doc.policy_revision.clone()))
    }

    /// Whether the resource policy of `function_arn` lets `service` (e.g.
    /// `s3.amazonaws.com`) invoke it on behalf of `source_arn` in `source_account`.
    pub fn service_may_invoke(
        &self,
        function_arn: &str,
        service: &str,
        source_arn: &str,
        source_account: &str,
    ) -> bool {
        let Some((_, doc, q)) = self.lookup_arn(function_arn) else {
            return false;
        };
        let resource = match &q {
            Some(q) => format!("{}:{q}", doc.arn),
            None => doc.arn.clone(),
        };
        let Ok(policy) = kd_iam::policy::PolicyDocument::parse(&policy_json(&doc), kd_iam::policy::DocKind::Resource)
        else {
            return false;
        };
        let ctx = kd_iam::policy::ConditionContext::new()
            .source_arn(source_arn)
            .source_account(source_account);
        kd_iam::policy::principal_allowed(
            &policy,
            &kd_iam::policy::Principal::Service(service.to_owned()),
            "lambda:InvokeFunction",
            &resource,
            &ctx,
        ) == kd_iam::policy::Decision::Allow
    }

    // ------------------------------------------------------------------ reset / shutdown

    /// Deletes every function, mapping and queued event (test-suite reset).
    pub async fn reset(&self) -> Result<()> {
        let _g = self.write_lock.lock().await;
        self.stop_mappings();
        let snap = self.meta.snapshot()?;
        let mut ops = Vec::new();
        for table in crate::ALL_TABLES {
            for item in snap.table(table)?.range(Bound::Unbounded, Bound::Unbounded)? {
                ops.push(MetaOp::Delete {
                    table: (*table).into(),
                    key: item?.0,
                });
            }
        }
        drop(snap);
        self.meta.write_grouped(ops).await?;
        let arns: Vec<String> = self.read_docs().values().map(|d| d.arn.clone()).collect();
        for arn in arns {
            self.host.retire(&arn);
        }
        self.docs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.queue.clear();
        self.code.retain(&BTreeSet::new())?;
        Ok(())
    }

    /// Stops the queue worker, the mappings and every instance, then waits (up to 5 s) for
    /// the asynchronous attempts that were running to record their outcome.
    pub async fn shutdown(&self) {
        self.queue.stop();
        self.stop_mappings();
        self.host.shutdown().await;
        self.queue.wait_stopped(Duration::from_secs(5)).await;
    }
}

fn policy_json(doc: &FunctionDoc) -> String {
    serde_json::json!({"Version": "2012-10-17", "Id": "default", "Statement": doc.policy}).to_string()
}

fn invalid_name(name: &str) -> Error {
    Error::InvalidParameterValue(format!(
        "1 validation error detected: Value '{name}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{{2}}(-gov)?-[a-z]+-\\d{{1}}:)?(\\d{{12}}:)?(function:)?([a-zA-Z0-9-_\\.]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?"
    ))
}

fn check_runtime(runtime: &str) -> Result<()> {
    if RUNTIMES.contains(&runtime) {
        return Ok(());
    }
    Err(Error::InvalidParameterValue(format!(
        "Value {runtime} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [{}] or be a valid ARN",
        RUNTIMES.join(", ")
    )))
}

fn validate(input: &FunctionInput) -> Result<()> {
    if let Some(t) = input.timeout
        && !(1..=900).contains(&t)
    {
        return Err(Error::InvalidParameterValue(format!(
            "1 validation error detected: Value '{t}' at 'timeout' failed to satisfy constraint: Member must have value {} 900",
            if t < 1 {
                "greater than or equal to 1, less than or equal to"
            } else {
                "less than or equal to"
            }
        )));
    }
    if let Some(m) = input.memory_size
        && !(128..=10_240).contains(&m)
    {
        return Err(Error::InvalidParameterValue(format!(
            "1 validation error detected: Value '{m}' at 'memorySize' failed to satisfy constraint: Member must have value {}",
            if m < 128 {
                "greater than or equal to 128"
            } else {
                "less than or equal to 10240"
            }
        )));
    }
    if let Some(s) = input.ephemeral_storage
        && !(512..=10_240).contains(&s)
    {
        return Err(Error::InvalidParameterValue(format!(
            "1 validation error detected: Value '{s}' at 'ephemeralStorage.size' failed to satisfy constraint: Member must have value between 512 and 10240"
        )));
    }
    if let Some(a) = &input.architectures
        && (a.len() != 1 || !matches!(a[0].as_str(), "x86_64" | "arm64"))
    {
        return Err(Error::InvalidParameterValue(
            "1 validation error detected: Value at 'architectures' failed to satisfy constraint: Member must have length less than or equal to 1 and satisfy enum value set: [x86_64, arm64]".into(),
        ));
    }
    if let Some(h) = &input.handler
        && (h.len() > 128 || h.chars().any(char::is_whitespace))
    {
        return Err(Error::InvalidParameterValue(format!(
            "1 validation error detected: Value '{h}' at 'handler' failed to satisfy constraint: Member must satisfy regular expression pattern: [^\\s]+"
        )));
    }
    if let Some(d) = &input.description
        && d.chars().count() > 256
    {
        return Err(Error::InvalidParameterValue(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 256".into(),
        ));
    }
    if let Some(env) = &input.environment {
        let size: usize = env.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > MAX_ENVIRONMENT_BYTES {
            return Err(Error::InvalidParameterValue(format!(
                "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {size}"
            )));
        }
        for k in env.keys() {
            let valid = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(Error::InvalidParameterValue(format!(
                    "1 validation error detected: Value at 'environment.variables' failed to satisfy constraint: Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+] ({k})"
                )));
            }
            if RESERVED_ENV.contains(&k.as_str()) {
                return Err(Error::InvalidParameterValue(format!(
                    "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {k}"
                )));
            }
        }
    }
    if let Some(f) = &input.log_format
        && !matches!(f.as_str(), "Text" | "JSON")
    {
        return Err(Error::InvalidParameterValue(format!(
            "1 validation error detected: Value '{f}' at 'loggingConfig.logFormat' failed to satisfy constraint: Member must satisfy enum value set: [JSON, Text]"
        )));
    }
    if let Some(g) = &input.log_group {
        let pattern_ok = g
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b'#'));
        if g.is_empty() || g.len() > 512 || !pattern_ok {
            return Err(Error::InvalidParameterValue(format!(
                "1 validation error detected: Value '{}' at 'loggingConfig.logGroup' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+",
                g.chars().take(512).collect::<String>()
            )));
        }
    }
    for (field, value, allowed) in [
        (
            "applicationLogLevel",
            &input.application_log_level,
            &["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"][..],
        ),
        (
            "systemLogLevel",
            &input.system_log_level,
            &["DEBUG", "INFO", "WARN"][..],
        ),
    ] {
        if let Some(v) = value
            && !allowed.contains(&v.as_str())
        {
            return Err(Error::InvalidParameterValue(format!(
                "1 validation error detected: Value '{}' at 'loggingConfig.{field}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                v.chars().take(64).collect::<String>(),
                allowed.join(", ")
            )));
        }
    }
    if let Some(r) = &input.role
        && kd_role_arn(r).is_none()
    {
        return Err(Error::InvalidParameterValue(format!(
            "1 validation error detected: Value '{r}' at 'role' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{{12}}:role/?[a-zA-Z_0-9+=,.@\\-_/]+"
        )));
    }
    Ok(())
}

fn levels_need_json() -> Error {
    Error::InvalidParameterValue(
        "ApplicationLogLevel and SystemLogLevel can only be set for functions configured to use JSON log format."
            .into(),
    )
}

/// The `LoggingConfig` members of a create or update.
struct Logging {
    format: Option<String>,
    group: Option<String>,
    application: Option<String>,
    system: Option<String>,
}

impl Logging {
    fn of(input: &FunctionInput) -> Logging {
        Logging {
            format: input.log_format.clone(),
            group: input.log_group.clone(),
            application: input.application_log_level.clone(),
            system: input.system_log_level.clone(),
        }
    }
}

/// Applies `LoggingConfig` to `c`: the format, the group, and the levels, which only JSON
/// allows (switching to Text drops them).
fn apply_logging(c: &mut VersionConfig, input: &Logging) -> Result<()> {
    if let Some(f) = &input.format {
        c.log_format = f.clone();
    }
    if let Some(g) = &input.group {
        c.log_group = Some(g.clone());
    }
    let levels = input.application.is_some() || input.system.is_some();
    if c.log_format != "JSON" {
        if levels {
            return Err(levels_need_json());
        }
        c.application_log_level = None;
        c.system_log_level = None;
    }
    if let Some(v) = &input.application {
        c.application_log_level = Some(v.clone());
    }
    if let Some(v) = &input.system {
        c.system_log_level = Some(v.clone());
    }
    Ok(())
}

fn kd_role_arn(arn: &str) -> Option<()> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, role) = rest.split_once(":role/")?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && !role.is_empty()).then_some(())
}

/// Environment names a function may not set (AWS's reserved keys).
pub const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

fn check_revision(c: &VersionConfig, revision_id: Option<&str>) -> Result<()> {
    if revision_id.is_some_and(|r| r != c.revision_id) {
        return Err(Error::PreconditionFailed(
            "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id".into(),
        ));
    }
    Ok(())
}

fn touch(l: &mut VersionConfig, now: i64, delay: i64) {
    l.last_modified_ms = now;
    l.revision_id = uuid::Uuid::new_v4().to_string();
    l.active_at_ms = now + delay;
    l.updated = true;
}

/// Publishes `$LATEST` as the next version unless the newest version already has the same
/// code and configuration (AWS returns that one).
fn publish_version(doc: &mut FunctionDoc, description: Option<String>, now: i64) -> Result<VersionConfig> {
    let same = |v: &VersionConfig| {
        v.code_sha256_hex == doc.latest.code_sha256_hex
            && v.runtime == doc.latest.runtime
            && v.handler == doc.latest.handler
            && v.role == doc.latest.role
            && v.timeout == doc.latest.timeout
            && v.memory_size == doc.latest.memory_size
            && v.environment == doc.latest.environment
    };
    if let Some((_, v)) = doc.published.iter().next_back()
        && same(v)
    {
        return Ok(v.clone());
    }
    let n = doc.next_version;
    let mut v = doc.latest.clone();
    v.version = n.to_string();
    v.last_modified_ms = now;
    v.revision_id = uuid::Uuid::new_v4().to_string();
    if let Some(d) = description {
        v.description = d;
    }
    doc.published.insert(n, v.clone());
    doc.next_version = n + 1;
    Ok(v)
}

/// Pages sorted `(sort key, item)` rows after `marker` (the last key of the previous page).
fn page<T>(rows: Vec<(String, T)>, marker: Option<&str>, max_items: usize) -> Result<(Vec<T>, Option<String>)> {
    let max = max_items.clamp(1, 10_000);
    let mut out = Vec::new();
    let mut last = None;
    let mut more = false;
    for (k, v) in rows {
        if marker.is_some_and(|m| k.as_str() <= m) {
            continue;
        }
        if out.len() == max {
            more = true;
            break;
        }
        last = Some(k);
        out.push(v);
    }
    Ok((out, if more { last } else { None }))
}

/// Payloads must be JSON (an empty one is `{}`).
fn normalise_payload(payload: Bytes) -> Result<Bytes> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(Bytes::from_static(b"{}"));
    }
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
        return Err(Error::InvalidRequestContent(format!(
            "Could not parse request body into json: Could not parse payload into json: {e}"
        )));
    }
    Ok(payload)
}

fn decode_client_context(b64: &str) -> Result<String> {
    use base64::Engine as _;
    let bad = || Error::InvalidRequestContent("Client context must be a valid Base64-encoded JSON object.".into());
    if b64.len() > 4 * MAX_CLIENT_CONTEXT.div_ceil(3) + 4 {
        return Err(Error::InvalidRequestContent(format!(
            "Client context must be smaller than {MAX_CLIENT_CONTEXT} bytes."
        )));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| bad())?;
    if raw.len() > MAX_CLIENT_CONTEXT {
        return Err(Error::InvalidRequestContent(format!(
            "Client context must be smaller than {MAX_CLIENT_CONTEXT} bytes."
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if !v.is_object() {
        return Err(bad());
    }
    Ok(v.to_string())
}
