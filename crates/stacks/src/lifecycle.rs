//! The stack lifecycle: stacks that really deploy. [`Stacks`] keeps every stack (and change
//! set) of every account and region in the metadata store (format and recovery rule:
//! [`crate::store`]), validates a call synchronously (template, capabilities, parameters,
//! the stack's state) and then runs the operation as a task: it walks the prepared
//! template's levels, asks the [`Provisioner`] port to create, update or delete each resource
//! (the resources of one level concurrently), records a status and an event for each step,
//! and rolls back on failure.
//!
//! - **Create**: `CREATE_IN_PROGRESS` → every resource, level by level → outputs →
//!   `CREATE_COMPLETE`. A failure (a resource, or an output that cannot be evaluated) waits for
//!   the resources of its level, then: with `DisableRollback` the stack is `CREATE_FAILED`;
//!   else `ROLLBACK_IN_PROGRESS`, every created resource deleted in reverse order (`Retain`
//!   kept), `ROLLBACK_COMPLETE` (or `ROLLBACK_FAILED` when a deletion fails).
//! - **Update**: each resource of the new template in creation order: new → created;
//!   properties equal to those it was made with → untouched (no event); changed → updated
//!   in place, or replaced when the provider says the change requires it (the new one is
//!   made first). Then `UPDATE_COMPLETE_CLEANUP_IN_PROGRESS`: replaced resources' old
//!   physical resources are deleted (`UpdateReplacePolicy`), removed resources deleted in
//!   the old template's deletion order (`DeletionPolicy`); `UPDATE_COMPLETE`. On failure:
//!   `UPDATE_ROLLBACK_IN_PROGRESS`, what was done is undone in reverse (updated resources
//!   updated back to their old properties, created ones deleted, replaced ones pointed back
//!   at the old physical resource and the new one deleted in
//!   `UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS`), `UPDATE_ROLLBACK_COMPLETE`.
//! - **Delete**: `DELETE_IN_PROGRESS` → resources in deletion order (`Retain` →
//!   `DELETE_SKIPPED`) → `DELETE_COMPLETE`; an export another stack imports refuses it
//!   (`DELETE_FAILED`, `Export X cannot be deleted as it is in use by Y`).
//! - **Change sets**: `CREATE` change sets make a `REVIEW_IN_PROGRESS` stack; executing one
//!   runs the create or update above.
//!
//! Writes are ordered: a change is queued with the metadata store's group committer while the
//! engine's lock is held, so the last queued document of a stack is its newest.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use futures_util::future::join_all;
use kd_storage::{Clock, GroupedWrite, MetaOp, MetaStore};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::prepare::{Environment, Prepared, ResolvedResources, StackContext, StaticEnvironment, stack_id};
use crate::store::{
    ChangeDoc, ChangeSetDoc, EventDoc, FORMAT_VERSION, OutputDoc, ParameterValue, ResourceDoc, ResourceStatus,
    StackDoc, StackStatus, StoredPolicy, T_CHANGE_SETS, T_EVENTS, T_STACKS, Tag, event_key, from_json, stack_uuid,
    to_json,
};
use crate::template::Template;

/// The resource type of a stack's own events.
pub const STACK_TYPE: &str = "AWS::CloudFormation::Stack";
/// The reason recorded for stacks a restart interrupted.
pub const INTERRUPTED: &str = "Stack was interrupted by a restart";
/// `StatusReason` of a change set without changes (what `aws cloudformation deploy` looks for).
pub const NO_CHANGES: &str =
    "The submitted information didn't contain changes. Submit different information to create a change set.";

/// The account and region a call acts in, and who calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// The account.
    pub account: String,
    /// The region.
    pub region: String,
    /// The caller's access key id: an operation it starts makes resources with its
    /// credentials (unless the stack has a service role). `None`: the provisioner's own.
    pub caller: Option<String>,
}

/// One resource a provisioner is asked to act on.
#[derive(Debug, Clone, Copy)]
pub struct ResourceRequest<'a> {
    /// The stack.
    pub stack: &'a StackContext,
    /// The logical id.
    pub logical_id: &'a str,
    /// The type (`AWS::S3::Bucket`).
    pub resource_type: &'a str,
    /// The properties, intrinsics evaluated (for `delete`: those it was last made with).
    pub properties: &'a Value,
}

/// What a provisioner made.
#[derive(Debug, Clone, PartialEq)]
pub struct Provisioned {
    /// The physical id.
    pub physical_id: String,
    /// What `Ref` gives (usually the physical id).
    pub ref_value: Value,
    /// What `Fn::GetAtt` gives.
    pub attributes: BTreeMap<String, Value>,
    /// The attributes are secret (a custom resource's `NoEcho`): outputs show them masked.
    pub no_echo: bool,
}

impl Provisioned {
    /// A resource whose `Ref` is its physical id.
    pub fn named(physical_id: impl Into<String>, attributes: impl IntoIterator<Item = (String, Value)>) -> Self {
        let physical_id = physical_id.into();
        Provisioned {
            ref_value: Value::String(physical_id.clone()),
            physical_id,
            attributes: attributes.into_iter().collect(),
            no_echo: false,
        }
    }
}

/// Why a provisioner failed; the message becomes the resource's `ResourceStatusReason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionError {
    /// No provider for the type (an honest refusal, not a placeholder).
    #[error("Resource type {0} is not supported by kinesis-data")]
    Unsupported(String),
    /// The service refused or failed, with its message.
    #[error("{0}")]
    Failed(String),
}

/// The port through which the lifecycle makes resources. The composition root implements it
/// over the services; tests use an in-memory fake.
///
/// Contract: `create` returns only once the resource is usable (a stream ACTIVE, a function
/// Active); `update` changes the resource in place to the new properties; `delete` of a
/// resource that is already gone succeeds. A failure leaves nothing half-made where the
/// service allows it: the lifecycle rolls back only what it recorded as made.
#[async_trait::async_trait]
pub trait Provisioner: Send + Sync {
    /// Whether changing the properties from `old` to `new` needs a new physical resource
    /// (e.g. a new `BucketName`).
    fn requires_replacement(&self, resource_type: &str, old: &Value, new: &Value) -> bool;

    /// Creates the resource.
    async fn create(&self, request: ResourceRequest<'_>) -> Result<Provisioned, ProvisionError>;

    /// Updates `physical_id` (made with `old`) to the request's properties.
    async fn update(
        &self,
        request: ResourceRequest<'_>,
        physical_id: &str,
        old: &Value,
    ) -> Result<Provisioned, ProvisionError>;

    /// Deletes `physical_id`.
    async fn delete(&self, request: ResourceRequest<'_>, physical_id: &str) -> Result<(), ProvisionError>;

    /// Whether the stack's service role `role_arn` (of `account`) may be used: it exists and
    /// trusts CloudFormation. `Err` is the ValidationError's message.
    fn check_role(&self, account: &str, role_arn: &str) -> Result<(), String> {
        let _ = (account, role_arn);
        Ok(())
    }
}

/// Where `AWS::SSM::Parameter::Value<…>` template parameters are read from: the composition
/// root implements it over the SSM parameter store ([`Stacks::set_parameter_source`]).
/// Without one, every such parameter is unknown.
pub trait ParameterSource: Send + Sync {
    /// The value of parameter store parameter `name` (or a `name:version` selector) in the
    /// scope; `None` when there is no such parameter.
    fn parameter(&self, scope: &Scope, name: &str) -> Option<String>;
}

/// The [`Environment`] of a stack operation: other stacks' exports (a snapshot) and the
/// parameter store.
struct LiveEnvironment {
    exports: StaticEnvironment,
    scope: Scope,
    parameters: Option<Arc<dyn ParameterSource>>,
}

impl Environment for LiveEnvironment {
    fn ssm_parameter(&self, name: &str) -> Result<Option<String>> {
        Ok(self.parameters.as_ref().and_then(|p| p.parameter(&self.scope, name)))
    }

    fn export(&self, name: &str) -> Result<Option<String>> {
        self.exports.export(name)
    }

    fn ref_all(&self, parameter_type: &str) -> Result<Vec<String>> {
        self.exports.ref_all(parameter_type)
    }
}

/// A parameter of a CreateStack / UpdateStack / CreateChangeSet call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterInput {
    /// `ParameterKey`.
    pub key: String,
    /// `ParameterValue`.
    pub value: Option<String>,
    /// `UsePreviousValue`.
    pub use_previous_value: bool,
}

/// What CreateStack, UpdateStack and CreateChangeSet share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StackInput {
    /// `StackName` (a name, or for updates also an id).
    pub stack_name: String,
    /// The template body (read from `TemplateURL` by the adapter).
    pub template_body: Option<String>,
    /// `UsePreviousTemplate`.
    pub use_previous_template: bool,
    /// `Parameters`.
    pub parameters: Vec<ParameterInput>,
    /// `Capabilities`.
    pub capabilities: Vec<String>,
    /// `Tags` (`None`: keep the stack's on update).
    pub tags: Option<Vec<Tag>>,
    /// `DisableRollback` (or `OnFailure=DO_NOTHING`).
    pub disable_rollback: bool,
    /// `RoleARN` (`None`: on update, keep the stack's).
    pub role_arn: Option<String>,
    /// Record resources of unsupported types as placeholders (sets the stack's
    /// [`StackDoc::allow_unsupported`]; `false` leaves it as it is).
    pub allow_unsupported: bool,
}

/// An export of a stack output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// `ExportingStackId`.
    pub exporting_stack_id: String,
    /// `Name`.
    pub name: String,
    /// `Value`.
    pub value: String,
}

/// What a stack becomes when an operation starts (create) or succeeds (update).
#[derive(Debug, Clone)]
struct Spec {
    template_body: String,
    given: BTreeMap<String, String>,
    capabilities: Vec<String>,
    tags: Vec<Tag>,
    change_set_id: Option<String>,
}

impl Spec {
    fn apply(&self, doc: &mut StackDoc, prepared: &Prepared) {
        doc.template_body = self.template_body.clone();
        doc.given_parameters = self.given.clone();
        doc.parameters = parameter_values(prepared);
        doc.capabilities = self.capabilities.clone();
        doc.tags = self.tags.clone();
        doc.description = prepared.template().description().map(str::to_owned);
        doc.imports = prepared.imports().keys().cloned().collect();
        if self.change_set_id.is_some() {
            doc.change_set_id = self.change_set_id.clone();
        }
    }
}

fn parameter_values(prepared: &Prepared) -> Vec<ParameterValue> {
    prepared
        .parameters()
        .iter()
        .map(|p| ParameterValue {
            key: p.name.clone(),
            value: p.value.clone(),
            resolved_value: p.resolved_value.clone(),
            no_echo: p.no_echo,
        })
        .collect()
}

/// Who runs an operation: the caller, and the service role given with the call (`None`
/// keeps the stack's).
#[derive(Debug, Clone)]
struct Actor {
    caller: Option<String>,
    role_arn: Option<String>,
}

impl Actor {
    fn apply(&self, doc: &mut StackDoc) {
        doc.operator = self.caller.clone();
        if self.role_arn.is_some() {
            doc.role_arn = self.role_arn.clone();
        }
    }
}

/// What an update did to one resource (undone in reverse on rollback).
#[derive(Debug, Clone)]
enum Touch {
    Created(String),
    Updated(ResourceDoc),
    Replaced(ResourceDoc),
}

#[derive(Debug, Default)]
struct Inner {
    /// By stack uuid: the working copy, changed when a change is queued.
    stacks: BTreeMap<String, StackDoc>,
    /// By stack uuid: what has been committed (what reads show).
    committed: BTreeMap<String, StackDoc>,
    /// By change-set uuid.
    change_sets: BTreeMap<String, ChangeSetDoc>,
}

impl Inner {
    fn exports(&self, scope: &Scope) -> Vec<Export> {
        let mut out = Vec::new();
        for s in self.stacks.values() {
            if !s.live() || s.account != scope.account || s.region != scope.region {
                continue;
            }
            for o in &s.outputs {
                if let Some(name) = &o.export_name {
                    out.push(Export {
                        exporting_stack_id: s.stack_id.clone(),
                        name: name.clone(),
                        value: o.value.clone(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The live stacks other than `except` importing `name`.
    fn importers(&self, scope: &Scope, name: &str, except: &str) -> Vec<String> {
        self.stacks
            .values()
            .filter(|s| {
                s.live()
                    && s.account == scope.account
                    && s.region == scope.region
                    && s.stack_id != except
                    && s.imports.iter().any(|i| i == name)
            })
            .map(|s| s.stack_name.clone())
            .collect()
    }

    fn find(&self, scope: &Scope, name_or_id: &str) -> Option<&StackDoc> {
        if name_or_id.starts_with("arn:") {
            self.stacks
                .get(stack_uuid(name_or_id))
                .filter(|s| s.stack_id == name_or_id && s.account == scope.account)
        } else {
            self.stacks.values().find(|s| {
                s.live() && s.stack_name == name_or_id && s.account == scope.account && s.region == scope.region
            })
        }
    }
}

/// The stack lifecycle engine. See the module documentation.
pub struct Stacks {
    meta: Arc<MetaStore>,
    clock: Arc<dyn Clock>,
    provisioner: Arc<dyn Provisioner>,
    parameters: OnceLock<Arc<dyn ParameterSource>>,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Stacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stacks")
    }
}

fn storage(e: kd_storage::Error) -> Error {
    Error::Storage(e.to_string())
}

fn check_stack_name(name: &str) -> Result<()> {
    let ok = name.len() <= 128
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::validation(format!(
            "1 validation error detected: Value '{name}' at 'stackName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*"
        )))
    }
}

impl Stacks {
    /// Opens the engine over `meta`: loads every stack and change set and applies the
    /// recovery rule of [`crate::store`] (interrupted operations are marked failed).
    pub fn open(meta: Arc<MetaStore>, clock: Arc<dyn Clock>, provisioner: Arc<dyn Provisioner>) -> Result<Arc<Stacks>> {
        let mut inner = Inner::default();
        for (_, v) in meta.scan_prefix(T_STACKS, "").map_err(storage)? {
            let doc: StackDoc = from_json("stack", &v)?;
            inner.stacks.insert(doc.uuid().to_owned(), doc);
        }
        for (_, v) in meta.scan_prefix(T_CHANGE_SETS, "").map_err(storage)? {
            let doc: ChangeSetDoc = from_json("change set", &v)?;
            inner.change_sets.insert(stack_uuid(&doc.id).to_owned(), doc);
        }
        let now = clock.now_ms();
        let mut ops = Vec::new();
        for doc in inner.stacks.values_mut() {
            let Some(failed) = doc.status.interrupted() else {
                continue;
            };
            tracing::warn!(stack = %doc.stack_id, status = doc.status.as_str(), "stack operation interrupted by a restart");
            let mut events = Vec::new();
            let ids: Vec<String> = doc.resources.keys().cloned().collect();
            for id in ids {
                let Some(status) = doc.resources.get(&id).and_then(|r| r.status.interrupted()) else {
                    continue;
                };
                set_resource(doc, &mut events, now, &id, status, Some(INTERRUPTED.to_owned()), false);
            }
            set_stack(doc, &mut events, now, failed, Some(INTERRUPTED.to_owned()));
            ops.push(put_stack(doc)?);
            for e in &events {
                ops.push(put_event(e)?);
            }
        }
        for cs in inner.change_sets.values_mut() {
            if cs.execution_status == "EXECUTE_IN_PROGRESS" {
                cs.execution_status = "EXECUTE_FAILED".to_owned();
                cs.status_reason = Some(INTERRUPTED.to_owned());
                ops.push(MetaOp::Put {
                    table: T_CHANGE_SETS.to_owned(),
                    key: stack_uuid(&cs.id).to_owned(),
                    value: to_json(cs)?,
                });
            }
        }
        meta.write(ops).map_err(storage)?;
        inner.committed = inner.stacks.clone();
        Ok(Arc::new(Stacks {
            meta,
            clock,
            provisioner,
            parameters: OnceLock::new(),
            inner: Mutex::new(inner),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes a committed stack document visible to reads (unless a newer one already is).
    fn publish(&self, doc: StackDoc) {
        let mut inner = self.lock();
        let newer = inner
            .committed
            .get(doc.uuid())
            .is_some_and(|c| c.event_seq > doc.event_seq);
        if !newer {
            inner.committed.insert(doc.uuid().to_owned(), doc);
        }
    }

    /// Queues `doc` and `events` (and optionally a change set) in one transaction and makes
    /// `doc` the working copy. Called with the lock held, so writes of a stack commit in
    /// order; the caller awaits the write, then [`Stacks::publish`]es the document.
    fn queue(
        &self,
        inner: &mut Inner,
        doc: StackDoc,
        events: &[EventDoc],
        cs: Option<&ChangeSetDoc>,
    ) -> Result<GroupedWrite> {
        let mut ops = vec![put_stack(&doc)?];
        for e in events {
            ops.push(put_event(e)?);
        }
        if let Some(cs) = cs {
            ops.push(put_change_set(cs)?);
            inner.change_sets.insert(stack_uuid(&cs.id).to_owned(), cs.clone());
        }
        let w = self.meta.write_grouped(ops);
        inner.stacks.insert(doc.uuid().to_owned(), doc);
        Ok(w)
    }

    /// Applies `f` to the stack `uuid` and commits the change with the events it produced.
    async fn change(&self, uuid: &str, f: impl FnOnce(&mut StackDoc, &mut Vec<EventDoc>, i64)) -> Result<()> {
        let (write, doc) = {
            let mut inner = self.lock();
            let Some(doc) = inner.stacks.get(uuid) else {
                return Err(Error::Internal(format!("stack {uuid} vanished")));
            };
            let mut doc = doc.clone();
            let mut events = Vec::new();
            f(&mut doc, &mut events, self.clock.now_ms());
            (self.queue(&mut inner, doc.clone(), &events, None)?, doc)
        };
        write.await.map_err(storage)?;
        self.publish(doc);
        Ok(())
    }

    async fn put_cs(&self, cs: ChangeSetDoc) -> Result<()> {
        let write = {
            let mut inner = self.lock();
            let w = self.meta.write_grouped(vec![put_change_set(&cs)?]);
            inner.change_sets.insert(stack_uuid(&cs.id).to_owned(), cs);
            w
        };
        write.await.map_err(storage)
    }

    /// Connects the parameter store `AWS::SSM::Parameter::Value<…>` parameters are read
    /// from (once; later calls are ignored).
    pub fn set_parameter_source(&self, source: Arc<dyn ParameterSource>) {
        let _ = self.parameters.set(source);
    }

    fn env(&self, scope: &Scope) -> LiveEnvironment {
        let exports = self
            .lock()
            .exports(scope)
            .into_iter()
            .map(|e| (e.name, e.value))
            .collect();
        LiveEnvironment {
            exports: StaticEnvironment {
                exports,
                ..StaticEnvironment::default()
            },
            scope: scope.clone(),
            parameters: self.parameters.get().cloned(),
        }
    }

    fn resolver(&self, uuid: &str) -> ResolvedResources {
        self.resolver_masked(uuid, false)
    }

    /// The created resources; with `mask`, the attributes of `NoEcho` resources are
    /// `*****` (what outputs show).
    fn resolver_masked(&self, uuid: &str, mask: bool) -> ResolvedResources {
        let mut out = ResolvedResources::default();
        if let Some(doc) = self.lock().stacks.get(uuid) {
            for r in doc.resources.values().filter(|r| r.physical_id.is_some()) {
                let attributes = if mask && r.no_echo {
                    r.attributes
                        .keys()
                        .map(|k| (k.clone(), Value::String("*****".to_owned())))
                        .collect()
                } else {
                    r.attributes.clone()
                };
                out.insert(r.logical_id.clone(), r.ref_value.clone(), attributes);
            }
        }
        out
    }

    fn snapshot(&self, uuid: &str) -> Option<StackDoc> {
        self.lock().stacks.get(uuid).cloned()
    }

    fn context(doc: &StackDoc) -> StackContext {
        let mut ctx = StackContext::new(&doc.account, &doc.region, &doc.stack_name, &doc.stack_id);
        ctx.role_arn = doc.role_arn.clone();
        ctx.caller = doc.operator.clone();
        ctx
    }

    /// Checks a `RoleARN` given with a call.
    fn check_role(&self, scope: &Scope, role_arn: Option<&str>) -> Result<()> {
        match role_arn {
            Some(role) => self
                .provisioner
                .check_role(&scope.account, role)
                .map_err(Error::validation),
            None => Ok(()),
        }
    }

    /// Empties the engine (every account and region): forgets every stack, event and change
    /// set without touching their resources (`/_kinesis-data/reset` empties the services
    /// too).
    pub async fn reset(&self) -> Result<()> {
        let mut ops = Vec::new();
        for table in [T_STACKS, T_EVENTS, T_CHANGE_SETS] {
            for (key, _) in self.meta.scan_prefix(table, "").map_err(storage)? {
                ops.push(MetaOp::Delete {
                    table: table.to_owned(),
                    key,
                });
            }
        }
        let write = {
            let mut inner = self.lock();
            *inner = Inner::default();
            self.meta.write_grouped(ops)
        };
        write.await.map_err(storage)
    }

    // ----------------------------------------------------------------- reads

    /// A stack by name (live stacks) or id (also deleted ones), as last committed.
    pub fn stack(&self, scope: &Scope, name_or_id: &str) -> Result<StackDoc> {
        let inner = self.lock();
        inner
            .find(scope, name_or_id)
            .and_then(|s| inner.committed.get(s.uuid()))
            .cloned()
            .ok_or_else(|| Error::StackNotFound(name_or_id.to_owned()))
    }

    /// Every live stack of the scope, newest first (DescribeStacks without a name).
    pub fn live_stacks(&self, scope: &Scope) -> Vec<StackDoc> {
        let mut v: Vec<StackDoc> = self
            .lock()
            .committed
            .values()
            .filter(|s| s.live() && s.account == scope.account && s.region == scope.region)
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            b.created_ms
                .cmp(&a.created_ms)
                .then_with(|| a.stack_name.cmp(&b.stack_name))
        });
        v
    }

    /// Every stack of the scope including deleted ones, newest first (ListStacks).
    pub fn all_stacks(&self, scope: &Scope) -> Vec<StackDoc> {
        let mut v: Vec<StackDoc> = self
            .lock()
            .committed
            .values()
            .filter(|s| s.account == scope.account && s.region == scope.region)
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            b.created_ms
                .cmp(&a.created_ms)
                .then_with(|| a.stack_name.cmp(&b.stack_name))
        });
        v
    }

    /// The stack's events, newest first.
    pub fn events(&self, scope: &Scope, name_or_id: &str) -> Result<Vec<EventDoc>> {
        let doc = self.stack(scope, name_or_id)?;
        let mut out = Vec::new();
        for (_, v) in self
            .meta
            .scan_prefix(T_EVENTS, &format!("{}/", doc.uuid()))
            .map_err(storage)?
        {
            out.push(from_json::<EventDoc>("event", &v)?);
        }
        out.reverse();
        Ok(out)
    }

    /// Every export of the scope, by name.
    pub fn exports(&self, scope: &Scope) -> Vec<Export> {
        self.lock().exports(scope)
    }

    // ----------------------------------------------------------------- create

    /// CreateStack: validates the call, records the stack `CREATE_IN_PROGRESS` and starts
    /// creating it. Returns the stack id.
    pub async fn create_stack(self: &Arc<Self>, scope: &Scope, input: StackInput) -> Result<String> {
        check_stack_name(&input.stack_name)?;
        let body = input
            .template_body
            .clone()
            .ok_or_else(|| Error::validation("Either Template URL or Template Body must be specified."))?;
        let template = Template::parse(&body)?;
        template.check_capabilities(&input.capabilities)?;
        if self.lock().find(scope, &input.stack_name).is_some() {
            return Err(Error::AlreadyExists(input.stack_name));
        }
        self.check_role(scope, input.role_arn.as_deref())?;
        let id = stack_id(
            &scope.region,
            &scope.account,
            &input.stack_name,
            &uuid::Uuid::new_v4().to_string(),
        );
        let given = given_parameters(&input.parameters, None)?;
        let ctx = StackContext::new(&scope.account, &scope.region, &input.stack_name, &id);
        let prepared = template.prepare(&given, &ctx, &self.env(scope))?;
        let spec = Spec {
            template_body: body,
            given,
            capabilities: input.capabilities.clone(),
            tags: input.tags.clone().unwrap_or_default(),
            change_set_id: None,
        };
        let now = self.clock.now_ms();
        let mut doc = new_stack(scope, &input.stack_name, &id, now, input.disable_rollback);
        spec.apply(&mut doc, &prepared);
        doc.role_arn = input.role_arn.clone();
        doc.allow_unsupported = input.allow_unsupported;
        let mut events = Vec::new();
        set_stack(
            &mut doc,
            &mut events,
            now,
            StackStatus::CreateInProgress,
            Some("User Initiated".into()),
        );
        let write = {
            let mut inner = self.lock();
            if inner.find(scope, &input.stack_name).is_some() {
                return Err(Error::AlreadyExists(input.stack_name));
            }
            self.queue(&mut inner, doc.clone(), &events, None)?
        };
        write.await.map_err(storage)?;
        self.publish(doc);
        let uuid = stack_uuid(&id).to_owned();
        tokio::spawn(self.clone().run_create(uuid, prepared, None));
        Ok(id)
    }

    async fn run_create(self: Arc<Self>, uuid: String, prepared: Prepared, change_set: Option<String>) {
        let outcome = self.create_all(&uuid, &prepared).await;
        let ok = match outcome {
            Ok(outputs) => {
                let r = self
                    .change(&uuid, |doc, ev, now| {
                        doc.outputs = outputs;
                        set_stack(doc, ev, now, StackStatus::CreateComplete, None);
                    })
                    .await;
                log_failure(&uuid, r);
                true
            }
            Err(reason) => {
                self.fail_create(&uuid, &prepared, reason).await;
                false
            }
        };
        if let Some(cs) = change_set {
            self.finish_change_set(&cs, ok).await;
        }
    }

    /// Creates every resource, then evaluates the outputs; `Err` is the stack's reason.
    async fn create_all(&self, uuid: &str, prepared: &Prepared) -> Result<Vec<OutputDoc>, String> {
        for level in prepared.creation_levels() {
            let results = join_all(level.iter().map(|id| self.create_one(uuid, prepared, id))).await;
            let failed: Vec<&str> = level
                .iter()
                .zip(&results)
                .filter(|(_, ok)| !**ok)
                .map(|(id, _)| id.as_str())
                .collect();
            if !failed.is_empty() {
                return Err(format!(
                    "The following resource(s) failed to create: [{}]. ",
                    failed.join(", ")
                ));
            }
        }
        self.outputs(uuid, prepared).map_err(|e| e.to_string())
    }

    /// The stack's outputs, refusing an export name another stack already exports.
    fn outputs(&self, uuid: &str, prepared: &Prepared) -> Result<Vec<OutputDoc>> {
        let outputs = prepared.outputs(&self.resolver_masked(uuid, true))?;
        let inner = self.lock();
        let doc = inner
            .stacks
            .get(uuid)
            .ok_or_else(|| Error::Internal(format!("stack {uuid} vanished")))?;
        let scope = Scope {
            account: doc.account.clone(),
            region: doc.region.clone(),
            caller: None,
        };
        let exports = inner.exports(&scope);
        for o in &outputs {
            if let Some(name) = &o.export_name
                && let Some(other) = exports
                    .iter()
                    .find(|e| &e.name == name && e.exporting_stack_id != doc.stack_id)
            {
                return Err(Error::validation(format!(
                    "Export with name {name} is already exported by stack {}",
                    inner
                        .stacks
                        .get(stack_uuid(&other.exporting_stack_id))
                        .map_or(other.exporting_stack_id.as_str(), |s| s.stack_name.as_str())
                )));
            }
        }
        Ok(outputs
            .into_iter()
            .map(|o| OutputDoc {
                key: o.key,
                value: o.value,
                description: o.description,
                export_name: o.export_name,
            })
            .collect())
    }

    /// Creates one resource; false when it failed (its status says why).
    async fn create_one(&self, uuid: &str, prepared: &Prepared, id: &str) -> bool {
        let Some(decl) = prepared.resource(id) else {
            return false;
        };
        let resolved = prepared.resolve_properties(id, &self.resolver(uuid));
        let props = resolved.as_ref().cloned().unwrap_or(Value::Null);
        let entry = ResourceDoc {
            logical_id: id.to_owned(),
            resource_type: decl.resource_type.clone(),
            physical_id: None,
            status: ResourceStatus::CreateInProgress,
            status_reason: None,
            updated_ms: 0,
            properties: props.clone(),
            ref_value: Value::Null,
            attributes: BTreeMap::new(),
            no_echo: false,
            deletion_policy: decl.deletion_policy.into(),
            update_replace_policy: decl.update_replace_policy.into(),
            metadata: decl.metadata.clone(),
        };
        let r = self
            .change(uuid, |doc, ev, now| {
                doc.resources.insert(id.to_owned(), entry);
                set_resource(doc, ev, now, id, ResourceStatus::CreateInProgress, None, true);
            })
            .await;
        if log_failure(uuid, r).is_none() {
            return false;
        }
        let props = match resolved {
            Ok(p) => p,
            Err(e) => {
                let reason = e.to_string();
                let r = self
                    .change(uuid, |doc, ev, now| {
                        set_resource(doc, ev, now, id, ResourceStatus::CreateFailed, Some(reason), false);
                    })
                    .await;
                log_failure(uuid, r);
                return false;
            }
        };
        let Some((ctx, allow_unsupported)) = self.snapshot(uuid).map(|d| (Self::context(&d), d.allow_unsupported))
        else {
            return false;
        };
        let made = self
            .provisioner
            .create(ResourceRequest {
                stack: &ctx,
                logical_id: id,
                resource_type: &decl.resource_type,
                properties: &props,
            })
            .await;
        let (made, warning) = placeholder_if_allowed(made, allow_unsupported, &ctx, id, None);
        let ok = made.is_ok();
        let r = self
            .change(uuid, |doc, ev, now| match made {
                Ok(p) => {
                    if let Some(r) = doc.resources.get_mut(id) {
                        r.physical_id = Some(p.physical_id);
                        r.ref_value = p.ref_value;
                        r.attributes = p.attributes;
                        r.no_echo = p.no_echo;
                    }
                    set_resource(doc, ev, now, id, ResourceStatus::CreateComplete, warning, false);
                }
                Err(e) => set_resource(
                    doc,
                    ev,
                    now,
                    id,
                    ResourceStatus::CreateFailed,
                    Some(e.to_string()),
                    false,
                ),
            })
            .await;
        ok && log_failure(uuid, r).is_some()
    }

    async fn fail_create(&self, uuid: &str, prepared: &Prepared, reason: String) {
        let disable = self.snapshot(uuid).is_some_and(|d| d.disable_rollback);
        if disable {
            let r = self
                .change(uuid, |doc, ev, now| {
                    set_stack(doc, ev, now, StackStatus::CreateFailed, Some(reason));
                })
                .await;
            log_failure(uuid, r);
            return;
        }
        let reason = format!("{reason}Rollback requested by user.");
        let r = self
            .change(uuid, |doc, ev, now| {
                set_stack(doc, ev, now, StackStatus::RollbackInProgress, Some(reason));
            })
            .await;
        log_failure(uuid, r);
        let failed = self
            .delete_levels(uuid, prepared.deletion_levels().to_vec(), true)
            .await;
        let r = self
            .change(uuid, |doc, ev, now| {
                if failed.is_empty() {
                    set_stack(doc, ev, now, StackStatus::RollbackComplete, None);
                } else {
                    let why = format!("The following resource(s) failed to delete: [{}]. ", failed.join(", "));
                    set_stack(doc, ev, now, StackStatus::RollbackFailed, Some(why));
                }
            })
            .await;
        log_failure(uuid, r);
    }

    // ----------------------------------------------------------------- delete

    /// Deletes the resources named in `levels` (and any other of the stack's, last), level by
    /// level; returns the logical ids that failed.
    async fn delete_levels(&self, uuid: &str, mut levels: Vec<Vec<String>>, rollback: bool) -> Vec<String> {
        let present: BTreeSet<String> = self
            .snapshot(uuid)
            .map(|d| d.resources.keys().cloned().collect())
            .unwrap_or_default();
        let listed: BTreeSet<String> = levels.iter().flatten().cloned().collect();
        let rest: Vec<String> = present.difference(&listed).cloned().collect();
        if !rest.is_empty() {
            levels.insert(0, rest);
        }
        let mut failed = Vec::new();
        for level in levels {
            let ids: Vec<&String> = level.iter().filter(|id| present.contains(*id)).collect();
            let results = join_all(ids.iter().map(|id| self.delete_one(uuid, id, rollback))).await;
            failed.extend(
                ids.iter()
                    .zip(results)
                    .filter(|(_, ok)| !ok)
                    .map(|(id, _)| (*id).clone()),
            );
            if !failed.is_empty() {
                break;
            }
        }
        failed
    }

    /// Deletes one resource (or skips it, for `Retain`) and forgets it; false on failure.
    async fn delete_one(&self, uuid: &str, id: &str, rollback: bool) -> bool {
        let Some(doc) = self.snapshot(uuid) else {
            return false;
        };
        let Some(r) = doc.resources.get(id).cloned() else {
            return true;
        };
        let retain = match r.deletion_policy {
            StoredPolicy::Retain => true,
            StoredPolicy::RetainExceptOnCreate => !rollback,
            StoredPolicy::Delete | StoredPolicy::Snapshot => false,
        };
        let Some(physical) = r.physical_id.clone().filter(|_| !retain) else {
            let status = if retain && r.physical_id.is_some() {
                ResourceStatus::DeleteSkipped
            } else {
                ResourceStatus::DeleteComplete
            };
            let x = self
                .change(uuid, |doc, ev, now| {
                    set_resource(doc, ev, now, id, status, None, false);
                    doc.resources.remove(id);
                })
                .await;
            return log_failure(uuid, x).is_some();
        };
        let x = self
            .change(uuid, |doc, ev, now| {
                set_resource(doc, ev, now, id, ResourceStatus::DeleteInProgress, None, false);
            })
            .await;
        if log_failure(uuid, x).is_none() {
            return false;
        }
        let ctx = Self::context(&doc);
        let gone = self
            .provisioner
            .delete(
                ResourceRequest {
                    stack: &ctx,
                    logical_id: id,
                    resource_type: &r.resource_type,
                    properties: &r.properties,
                },
                &physical,
            )
            .await;
        let ok = gone.is_ok();
        let x = self
            .change(uuid, |doc, ev, now| match gone {
                Ok(()) => {
                    set_resource(doc, ev, now, id, ResourceStatus::DeleteComplete, None, false);
                    doc.resources.remove(id);
                }
                Err(e) => set_resource(
                    doc,
                    ev,
                    now,
                    id,
                    ResourceStatus::DeleteFailed,
                    Some(e.to_string()),
                    false,
                ),
            })
            .await;
        ok && log_failure(uuid, x).is_some()
    }

    /// DeleteStack: starts deleting the stack. Deleting a stack that does not exist
    /// succeeds, as on AWS.
    pub async fn delete_stack(self: &Arc<Self>, scope: &Scope, name_or_id: &str) -> Result<()> {
        self.delete_stack_as(scope, name_or_id, None).await
    }

    /// DeleteStack with a `RoleARN`: the role (which then stays the stack's) deletes the
    /// resources.
    pub async fn delete_stack_as(
        self: &Arc<Self>,
        scope: &Scope,
        name_or_id: &str,
        role_arn: Option<String>,
    ) -> Result<()> {
        let Some(doc) = self.lock().find(scope, name_or_id).cloned() else {
            return Ok(());
        };
        match doc.status {
            StackStatus::DeleteComplete | StackStatus::DeleteInProgress => return Ok(()),
            s if s.in_progress() => {
                return Err(Error::validation(format!(
                    "Stack [{}] cannot be deleted while in status {}",
                    doc.stack_name,
                    s.as_str()
                )));
            }
            _ => {}
        }
        self.check_role(scope, role_arn.as_deref())?;
        let actor = Actor {
            caller: scope.caller.clone(),
            role_arn,
        };
        let uuid = doc.uuid().to_owned();
        self.change(&uuid, |doc, ev, now| {
            actor.apply(doc);
            set_stack(
                doc,
                ev,
                now,
                StackStatus::DeleteInProgress,
                Some("User Initiated".into()),
            );
        })
        .await?;
        tokio::spawn(self.clone().run_delete(uuid, scope.clone()));
        Ok(())
    }

    async fn run_delete(self: Arc<Self>, uuid: String, scope: Scope) {
        let Some(doc) = self.snapshot(&uuid) else {
            return;
        };
        let in_use = {
            let inner = self.lock();
            doc.outputs.iter().find_map(|o| {
                let name = o.export_name.as_ref()?;
                let users = inner.importers(&scope, name, &doc.stack_id);
                (!users.is_empty()).then(|| {
                    format!(
                        "Export {name} cannot be deleted as it is in use by {}",
                        users.join(", ")
                    )
                })
            })
        };
        if let Some(reason) = in_use {
            let r = self
                .change(&uuid, |doc, ev, now| {
                    set_stack(doc, ev, now, StackStatus::DeleteFailed, Some(reason));
                })
                .await;
            log_failure(&uuid, r);
            return;
        }
        let levels = Template::parse(&doc.template_body)
            .map(|t| t.dependency_graph().deletion_levels().to_vec())
            .unwrap_or_default();
        let failed = self.delete_levels(&uuid, levels, false).await;
        let r = self
            .change(&uuid, |doc, ev, now| {
                if failed.is_empty() {
                    doc.deleted_ms = Some(now);
                    set_stack(doc, ev, now, StackStatus::DeleteComplete, None);
                } else {
                    let why = format!("The following resource(s) failed to delete: [{}]. ", failed.join(", "));
                    set_stack(doc, ev, now, StackStatus::DeleteFailed, Some(why));
                }
            })
            .await;
        log_failure(&uuid, r);
    }

    // ----------------------------------------------------------------- update

    /// The template and parameters an update (or an UPDATE change set) would use; checks the
    /// stack's state. Returns the stack, the spec and the prepared template.
    fn prepare_update(&self, scope: &Scope, input: &StackInput) -> Result<(StackDoc, Spec, Prepared)> {
        let doc = self.stack(scope, &input.stack_name)?;
        if !doc.live() {
            return Err(Error::StackNotFound(input.stack_name.clone()));
        }
        if !matches!(
            doc.status,
            StackStatus::CreateComplete
                | StackStatus::UpdateComplete
                | StackStatus::UpdateRollbackComplete
                | StackStatus::UpdateFailed
        ) {
            return Err(Error::validation(format!(
                "Stack:{} is in {} state and can not be updated.",
                doc.stack_id,
                doc.status.as_str()
            )));
        }
        let body = match (&input.template_body, input.use_previous_template) {
            (Some(_), true) => {
                return Err(Error::validation(
                    "You cannot specify both usePreviousTemplate and Template Body/Template URL",
                ));
            }
            (Some(b), false) => b.clone(),
            (None, true) => doc.template_body.clone(),
            (None, false) => {
                return Err(Error::validation(
                    "Either Template URL or Template Body must be specified.",
                ));
            }
        };
        let template = Template::parse(&body)?;
        template.check_capabilities(&input.capabilities)?;
        let given = given_parameters(&input.parameters, Some(&doc.given_parameters))?;
        let prepared = template.prepare(&given, &Self::context(&doc), &self.env(scope))?;
        let changed_types: Vec<&str> = prepared
            .resources()
            .filter(|r| {
                doc.resources
                    .get(&r.logical_id)
                    .is_some_and(|old| old.resource_type != r.resource_type)
            })
            .map(|r| r.logical_id.as_str())
            .collect();
        if !changed_types.is_empty() {
            return Err(Error::validation(format!(
                "Update of resource type is not permitted. The new template modifies resource type of the following resources: [{}]",
                changed_types.join(", ")
            )));
        }
        let spec = Spec {
            template_body: body,
            given,
            capabilities: input.capabilities.clone(),
            tags: input.tags.clone().unwrap_or_else(|| doc.tags.clone()),
            change_set_id: None,
        };
        Ok((doc, spec, prepared))
    }

    /// UpdateStack: validates the call and starts updating. `No updates are to be
    /// performed.` when neither the template, the parameters nor the tags change.
    pub async fn update_stack(self: &Arc<Self>, scope: &Scope, input: StackInput) -> Result<String> {
        let (doc, spec, prepared) = self.prepare_update(scope, &input)?;
        if spec.template_body == doc.template_body && spec.given == doc.given_parameters && spec.tags == doc.tags {
            return Err(Error::validation("No updates are to be performed."));
        }
        self.check_role(scope, input.role_arn.as_deref())?;
        let actor = Actor {
            caller: scope.caller.clone(),
            role_arn: input.role_arn.clone(),
        };
        let mut doc = doc;
        doc.allow_unsupported |= input.allow_unsupported;
        self.start_update(doc, spec, prepared, None, actor).await
    }

    async fn start_update(
        self: &Arc<Self>,
        doc: StackDoc,
        spec: Spec,
        prepared: Prepared,
        change_set: Option<String>,
        actor: Actor,
    ) -> Result<String> {
        let uuid = doc.uuid().to_owned();
        let id = doc.stack_id.clone();
        let mut doc = doc;
        actor.apply(&mut doc);
        self.change(&uuid, |doc, ev, now| {
            actor.apply(doc);
            doc.updated_ms = Some(now);
            set_stack(
                doc,
                ev,
                now,
                StackStatus::UpdateInProgress,
                Some("User Initiated".into()),
            );
        })
        .await?;
        tokio::spawn(self.clone().run_update(uuid, doc, spec, prepared, change_set));
        Ok(id)
    }

    async fn run_update(
        self: Arc<Self>,
        uuid: String,
        old: StackDoc,
        spec: Spec,
        prepared: Prepared,
        change_set: Option<String>,
    ) {
        let mut touched = Vec::new();
        let mut failed_create = Vec::new();
        let mut failed_update = Vec::new();
        for level in prepared.creation_levels() {
            let results = join_all(
                level
                    .iter()
                    .map(|id| self.update_one(&uuid, &prepared, id, old.resources.get(id).cloned())),
            )
            .await;
            for (id, (touch, ok)) in level.iter().zip(results) {
                if !ok {
                    if matches!(touch, Some(Touch::Created(_))) {
                        failed_create.push(id.clone());
                    } else {
                        failed_update.push(id.clone());
                    }
                }
                touched.extend(touch);
            }
            if !failed_create.is_empty() || !failed_update.is_empty() {
                break;
            }
        }
        let mut reason = String::new();
        if !failed_create.is_empty() {
            reason.push_str(&format!(
                "The following resource(s) failed to create: [{}]. ",
                failed_create.join(", ")
            ));
        }
        if !failed_update.is_empty() {
            reason.push_str(&format!(
                "The following resource(s) failed to update: [{}]. ",
                failed_update.join(", ")
            ));
        }
        let outputs = if reason.is_empty() {
            match self.update_outputs(&uuid, &old, &prepared) {
                Ok(o) => Some(o),
                Err(e) => {
                    reason = e.to_string();
                    None
                }
            }
        } else {
            None
        };
        let ok = outputs.is_some();
        match outputs {
            Some(outputs) => {
                self.finish_update(&uuid, &old, &spec, &prepared, outputs, &touched)
                    .await
            }
            None => self.roll_back_update(&uuid, reason, touched).await,
        }
        if let Some(cs) = change_set {
            self.finish_change_set(&cs, ok).await;
        }
    }

    /// The new outputs, refusing to drop or change an export another stack imports.
    fn update_outputs(&self, uuid: &str, old: &StackDoc, prepared: &Prepared) -> Result<Vec<OutputDoc>> {
        let outputs = self.outputs(uuid, prepared)?;
        let scope = Scope {
            account: old.account.clone(),
            region: old.region.clone(),
            caller: None,
        };
        let inner = self.lock();
        for o in &old.outputs {
            let Some(name) = &o.export_name else { continue };
            let kept = outputs
                .iter()
                .any(|n| n.export_name.as_deref() == Some(name.as_str()) && n.value == o.value);
            let users = inner.importers(&scope, name, &old.stack_id);
            if !kept && !users.is_empty() {
                return Err(Error::validation(format!(
                    "Export {name} cannot be updated as it is in use by {}",
                    users.join(", ")
                )));
            }
        }
        Ok(outputs)
    }

    /// Creates, updates or replaces one resource of an update. Returns what was done (for
    /// the rollback) and whether it succeeded.
    async fn update_one(
        &self,
        uuid: &str,
        prepared: &Prepared,
        id: &str,
        old: Option<ResourceDoc>,
    ) -> (Option<Touch>, bool) {
        let Some(old) = old.filter(|o| o.physical_id.is_some()) else {
            let ok = self.create_one(uuid, prepared, id).await;
            return (Some(Touch::Created(id.to_owned())), ok);
        };
        let Some(decl) = prepared.resource(id) else {
            return (None, false);
        };
        let props = match prepared.resolve_properties(id, &self.resolver(uuid)) {
            Ok(p) => p,
            Err(e) => {
                let reason = e.to_string();
                let r = self
                    .change(uuid, |doc, ev, now| {
                        set_resource(doc, ev, now, id, ResourceStatus::UpdateFailed, Some(reason), false);
                    })
                    .await;
                log_failure(uuid, r);
                return (None, false);
            }
        };
        let policies = (
            StoredPolicy::from(decl.deletion_policy),
            StoredPolicy::from(decl.update_replace_policy),
        );
        if props == old.properties {
            if (old.deletion_policy, old.update_replace_policy) != policies {
                let r = self
                    .change(uuid, |doc, _, _| {
                        if let Some(r) = doc.resources.get_mut(id) {
                            (r.deletion_policy, r.update_replace_policy) = policies;
                        }
                    })
                    .await;
                log_failure(uuid, r);
            }
            return (None, true);
        }
        let Some((ctx, allow_unsupported)) = self.snapshot(uuid).map(|d| (Self::context(&d), d.allow_unsupported))
        else {
            return (None, false);
        };
        let physical = old.physical_id.clone().unwrap_or_default();
        let replace = self
            .provisioner
            .requires_replacement(&old.resource_type, &old.properties, &props);
        let start_reason = replace.then(|| {
            "Requested update requires the creation of a new physical resource; hence creating one.".to_owned()
        });
        let r = self
            .change(uuid, |doc, ev, now| {
                set_resource(doc, ev, now, id, ResourceStatus::UpdateInProgress, start_reason, true);
            })
            .await;
        if log_failure(uuid, r).is_none() {
            return (None, false);
        }
        let request = ResourceRequest {
            stack: &ctx,
            logical_id: id,
            resource_type: &old.resource_type,
            properties: &props,
        };
        let made = if replace {
            self.provisioner.create(request).await
        } else {
            self.provisioner.update(request, &physical, &old.properties).await
        };
        let kept = (!replace).then_some(physical.as_str());
        let (made, warning) = placeholder_if_allowed(made, allow_unsupported, &ctx, id, kept);
        let ok = made.is_ok();
        let r = self
            .change(uuid, |doc, ev, now| match made {
                Ok(p) => {
                    if let Some(r) = doc.resources.get_mut(id) {
                        r.physical_id = Some(p.physical_id);
                        r.ref_value = p.ref_value;
                        r.attributes = p.attributes;
                        r.no_echo = p.no_echo;
                        r.properties = props;
                        (r.deletion_policy, r.update_replace_policy) = policies;
                    }
                    set_resource(doc, ev, now, id, ResourceStatus::UpdateComplete, warning, false);
                }
                Err(e) => set_resource(
                    doc,
                    ev,
                    now,
                    id,
                    ResourceStatus::UpdateFailed,
                    Some(e.to_string()),
                    false,
                ),
            })
            .await;
        let touch = if replace {
            Touch::Replaced(old)
        } else {
            Touch::Updated(old)
        };
        (Some(touch), ok && log_failure(uuid, r).is_some())
    }

    async fn finish_update(
        &self,
        uuid: &str,
        old: &StackDoc,
        spec: &Spec,
        prepared: &Prepared,
        outputs: Vec<OutputDoc>,
        touched: &[Touch],
    ) {
        let r = self
            .change(uuid, |doc, ev, now| {
                spec.apply(doc, prepared);
                doc.outputs = outputs;
                set_stack(doc, ev, now, StackStatus::UpdateCompleteCleanupInProgress, None);
            })
            .await;
        log_failure(uuid, r);
        // The old physical resources of replaced resources.
        for t in touched {
            if let Touch::Replaced(old_r) = t {
                self.delete_replaced(uuid, old_r).await;
            }
        }
        // Resources the new template no longer has, in the old template's deletion order.
        let keep: BTreeSet<&str> = prepared.resources().map(|r| r.logical_id.as_str()).collect();
        let removed: BTreeSet<String> = old
            .resources
            .keys()
            .filter(|id| !keep.contains(id.as_str()))
            .cloned()
            .collect();
        if !removed.is_empty() {
            let levels: Vec<Vec<String>> = Template::parse(&old.template_body)
                .map(|t| t.dependency_graph().deletion_levels().to_vec())
                .unwrap_or_default()
                .into_iter()
                .map(|l| l.into_iter().filter(|id| removed.contains(id)).collect::<Vec<_>>())
                .filter(|l| !l.is_empty())
                .collect();
            let listed: BTreeSet<&String> = levels.iter().flatten().collect();
            let mut levels = levels.clone();
            let rest: Vec<String> = removed.iter().filter(|id| !listed.contains(id)).cloned().collect();
            if !rest.is_empty() {
                levels.push(rest);
            }
            for level in levels {
                // A failed cleanup deletion leaves the resource behind (DELETE_FAILED event);
                // the update itself has succeeded, as on AWS.
                join_all(level.iter().map(|id| self.delete_removed(uuid, id))).await;
            }
        }
        let r = self
            .change(uuid, |doc, ev, now| {
                set_stack(doc, ev, now, StackStatus::UpdateComplete, None);
            })
            .await;
        log_failure(uuid, r);
    }

    /// Deletes a resource an update removed from the template (its `DeletionPolicy` applies).
    async fn delete_removed(&self, uuid: &str, id: &str) {
        if !self.delete_one(uuid, id, false).await {
            // Forget it anyway: it is no longer part of the stack's template.
            let r = self
                .change(uuid, |doc, _, _| {
                    doc.resources.remove(id);
                })
                .await;
            log_failure(uuid, r);
        }
    }

    /// Deletes the old physical resource of a replaced resource (its `UpdateReplacePolicy`
    /// applies); the stack keeps the new one.
    async fn delete_replaced(&self, uuid: &str, old: &ResourceDoc) {
        let Some(physical) = old.physical_id.clone() else {
            return;
        };
        let id = old.logical_id.as_str();
        let event = |status: ResourceStatus, reason: Option<String>| {
            let physical = physical.clone();
            move |doc: &mut StackDoc, ev: &mut Vec<EventDoc>, now: i64| {
                ev.push(new_event(
                    doc,
                    now,
                    id,
                    Some(physical),
                    &old.resource_type,
                    status.as_str(),
                    reason,
                    None,
                ));
            }
        };
        if old.update_replace_policy == StoredPolicy::Retain {
            let r = self.change(uuid, event(ResourceStatus::DeleteSkipped, None)).await;
            log_failure(uuid, r);
            return;
        }
        let r = self.change(uuid, event(ResourceStatus::DeleteInProgress, None)).await;
        log_failure(uuid, r);
        let Some(ctx) = self.snapshot(uuid).map(|d| Self::context(&d)) else {
            return;
        };
        let gone = self
            .provisioner
            .delete(
                ResourceRequest {
                    stack: &ctx,
                    logical_id: id,
                    resource_type: &old.resource_type,
                    properties: &old.properties,
                },
                &physical,
            )
            .await;
        let r = match gone {
            Ok(()) => self.change(uuid, event(ResourceStatus::DeleteComplete, None)).await,
            Err(e) => {
                self.change(uuid, event(ResourceStatus::DeleteFailed, Some(e.to_string())))
                    .await
            }
        };
        log_failure(uuid, r);
    }

    async fn roll_back_update(&self, uuid: &str, reason: String, touched: Vec<Touch>) {
        let r = self
            .change(uuid, |doc, ev, now| {
                set_stack(doc, ev, now, StackStatus::UpdateRollbackInProgress, Some(reason));
            })
            .await;
        log_failure(uuid, r);
        let mut rollback_failed = Vec::new();
        let mut new_of_replaced = Vec::new();
        for t in touched.into_iter().rev() {
            match t {
                Touch::Created(id) => {
                    if !self.delete_one(uuid, &id, true).await {
                        rollback_failed.push(id);
                    }
                }
                Touch::Updated(old) => {
                    if !self.update_back(uuid, &old).await {
                        rollback_failed.push(old.logical_id.clone());
                    }
                }
                Touch::Replaced(old) => {
                    let id = old.logical_id.clone();
                    let mut current = None;
                    let r = self
                        .change(uuid, |doc, ev, now| {
                            current = doc.resources.insert(id.clone(), old);
                            set_resource(doc, ev, now, &id, ResourceStatus::UpdateComplete, None, false);
                        })
                        .await;
                    log_failure(uuid, r);
                    // The new physical resource, if one was made.
                    if let Some(new) = current.filter(|c| {
                        c.status == ResourceStatus::UpdateComplete || c.status == ResourceStatus::UpdateFailed
                    }) {
                        new_of_replaced.push(new);
                    }
                }
            }
        }
        if !new_of_replaced.is_empty() {
            let r = self
                .change(uuid, |doc, ev, now| {
                    set_stack(doc, ev, now, StackStatus::UpdateRollbackCompleteCleanupInProgress, None);
                })
                .await;
            log_failure(uuid, r);
            let current = self.snapshot(uuid);
            for new in new_of_replaced {
                // Only if the update had recorded a different physical resource.
                let old_physical = current
                    .as_ref()
                    .and_then(|d| d.resources.get(&new.logical_id))
                    .and_then(|r| r.physical_id.clone());
                if new.physical_id.is_some() && new.physical_id != old_physical {
                    let mut doomed = new;
                    doomed.update_replace_policy = StoredPolicy::Delete;
                    self.delete_replaced(uuid, &doomed).await;
                }
            }
        }
        let r = self
            .change(uuid, |doc, ev, now| {
                if rollback_failed.is_empty() {
                    set_stack(doc, ev, now, StackStatus::UpdateRollbackComplete, None);
                } else {
                    let why = format!(
                        "The following resource(s) failed to roll back: [{}]. ",
                        rollback_failed.join(", ")
                    );
                    set_stack(doc, ev, now, StackStatus::UpdateRollbackFailed, Some(why));
                }
            })
            .await;
        log_failure(uuid, r);
    }

    /// Updates a resource back to the properties it had before the update.
    async fn update_back(&self, uuid: &str, old: &ResourceDoc) -> bool {
        let Some(doc) = self.snapshot(uuid) else {
            return false;
        };
        let id = old.logical_id.as_str();
        let Some(current) = doc.resources.get(id).cloned() else {
            return false;
        };
        let r = self
            .change(uuid, |doc, ev, now| {
                set_resource(doc, ev, now, id, ResourceStatus::UpdateInProgress, None, false);
            })
            .await;
        log_failure(uuid, r);
        let ctx = Self::context(&doc);
        let back = self
            .provisioner
            .update(
                ResourceRequest {
                    stack: &ctx,
                    logical_id: id,
                    resource_type: &old.resource_type,
                    properties: &old.properties,
                },
                old.physical_id.as_deref().unwrap_or_default(),
                &current.properties,
            )
            .await;
        let ok = back.is_ok();
        let r = self
            .change(uuid, |doc, ev, now| match back {
                Ok(_) => {
                    doc.resources.insert(id.to_owned(), old.clone());
                    set_resource(doc, ev, now, id, ResourceStatus::UpdateComplete, None, false);
                }
                Err(e) => set_resource(
                    doc,
                    ev,
                    now,
                    id,
                    ResourceStatus::UpdateFailed,
                    Some(e.to_string()),
                    false,
                ),
            })
            .await;
        ok && log_failure(uuid, r).is_some()
    }

    // ----------------------------------------------------------------- change sets

    /// CreateChangeSet: `CREATE` makes a `REVIEW_IN_PROGRESS` stack (or reuses one),
    /// `UPDATE` (the default) needs a stack that can be updated. The changes are computed
    /// against the stack's recorded resources. Returns the change set's id and the stack id.
    pub async fn create_change_set(
        self: &Arc<Self>,
        scope: &Scope,
        input: StackInput,
        name: &str,
        change_set_type: &str,
        description: Option<String>,
    ) -> Result<(String, String)> {
        check_change_set_name(name)?;
        check_stack_name(&input.stack_name).or_else(|e| {
            if input.stack_name.starts_with("arn:") {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        let (stack, spec, prepared, changes) = match change_set_type {
            "CREATE" => {
                let body = input
                    .template_body
                    .clone()
                    .ok_or_else(|| Error::validation("Either Template URL or Template Body must be specified."))?;
                let template = Template::parse(&body)?;
                template.check_capabilities(&input.capabilities)?;
                let existing = self.lock().find(scope, &input.stack_name).cloned();
                let stack = match existing {
                    Some(s) if s.status == StackStatus::ReviewInProgress => s,
                    Some(s) => {
                        return Err(Error::validation(format!(
                            "Stack [{}] already exists and cannot be created again with the changeSet [{name}].",
                            s.stack_name
                        )));
                    }
                    None => {
                        let id = stack_id(
                            &scope.region,
                            &scope.account,
                            &input.stack_name,
                            &uuid::Uuid::new_v4().to_string(),
                        );
                        let mut doc = new_stack(
                            scope,
                            &input.stack_name,
                            &id,
                            self.clock.now_ms(),
                            input.disable_rollback,
                        );
                        doc.allow_unsupported = input.allow_unsupported;
                        doc
                    }
                };
                let given = given_parameters(&input.parameters, None)?;
                let prepared = template.prepare(&given, &Self::context(&stack), &self.env(scope))?;
                let changes = prepared
                    .resources()
                    .map(|r| ChangeDoc {
                        action: "Add".to_owned(),
                        logical_id: r.logical_id.clone(),
                        physical_id: None,
                        resource_type: r.resource_type.clone(),
                        replacement: None,
                    })
                    .collect();
                let spec = Spec {
                    template_body: body,
                    given,
                    capabilities: input.capabilities.clone(),
                    tags: input.tags.clone().unwrap_or_default(),
                    change_set_id: None,
                };
                (stack, spec, prepared, changes)
            }
            "UPDATE" => {
                let (stack, spec, prepared) = self.prepare_update(scope, &input)?;
                let changes = self.changes(&stack, &prepared);
                (stack, spec, prepared, changes)
            }
            other => {
                return Err(Error::validation(format!(
                    "ChangeSetType {other} is not supported by kinesis-data (CREATE and UPDATE are)"
                )));
            }
        };
        if self
            .lock()
            .change_sets
            .values()
            .any(|c| c.stack_id == stack.stack_id && c.name == name)
        {
            return Err(Error::validation(format!(
                "ChangeSet [{name}] already exists for stack [{}]",
                stack.stack_name
            )));
        }
        let no_change = change_set_type == "UPDATE"
            && changes.is_empty()
            && spec.template_body == stack.template_body
            && spec.given == stack.given_parameters
            && spec.tags == stack.tags;
        let cs = ChangeSetDoc {
            version: FORMAT_VERSION,
            id: format!(
                "arn:{}:cloudformation:{}:{}:changeSet/{name}/{}",
                crate::prepare::partition(&scope.region),
                scope.region,
                scope.account,
                uuid::Uuid::new_v4()
            ),
            name: name.to_owned(),
            stack_id: stack.stack_id.clone(),
            stack_name: stack.stack_name.clone(),
            change_set_type: change_set_type.to_owned(),
            description,
            template_body: spec.template_body.clone(),
            given_parameters: spec.given.clone(),
            parameters: parameter_values(&prepared),
            capabilities: spec.capabilities.clone(),
            tags: spec.tags.clone(),
            status: if no_change { "FAILED" } else { "CREATE_COMPLETE" }.to_owned(),
            status_reason: no_change.then(|| NO_CHANGES.to_owned()),
            execution_status: if no_change { "UNAVAILABLE" } else { "AVAILABLE" }.to_owned(),
            created_ms: self.clock.now_ms(),
            changes,
            role_arn: input.role_arn.clone(),
        };
        let ids = (cs.id.clone(), stack.stack_id.clone());
        let write = {
            let mut inner = self.lock();
            if change_set_type == "CREATE" && !inner.stacks.contains_key(stack.uuid()) {
                if inner.find(scope, &stack.stack_name).is_some() {
                    return Err(Error::AlreadyExists(stack.stack_name));
                }
                let mut doc = stack;
                doc.template_body = spec.template_body.clone();
                doc.description = prepared.template().description().map(str::to_owned);
                let mut events = Vec::new();
                let now = self.clock.now_ms();
                set_stack(
                    &mut doc,
                    &mut events,
                    now,
                    StackStatus::ReviewInProgress,
                    Some("User Initiated".into()),
                );
                (self.queue(&mut inner, doc.clone(), &events, Some(&cs))?, Some(doc))
            } else {
                let w = self.meta.write_grouped(vec![put_change_set(&cs)?]);
                inner.change_sets.insert(stack_uuid(&cs.id).to_owned(), cs);
                (w, None)
            }
        };
        write.0.await.map_err(storage)?;
        if let Some(doc) = write.1 {
            self.publish(doc);
        }
        Ok(ids)
    }

    /// The changes an update to `prepared` makes to `stack`.
    fn changes(&self, stack: &StackDoc, prepared: &Prepared) -> Vec<ChangeDoc> {
        let resolver = self.resolver(stack.uuid());
        let mut out = Vec::new();
        // Resources whose Ref/attributes may change (added or replaced): their dependents'
        // properties are known only when the change set runs.
        let mut moving: BTreeSet<&str> = BTreeSet::new();
        let ordered: Vec<&str> = prepared
            .creation_levels()
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        for r in ordered.iter().filter_map(|id| prepared.resource(id)) {
            let Some(old) = stack.resources.get(&r.logical_id).filter(|o| o.physical_id.is_some()) else {
                moving.insert(r.logical_id.as_str());
                out.push(ChangeDoc {
                    action: "Add".to_owned(),
                    logical_id: r.logical_id.clone(),
                    physical_id: None,
                    resource_type: r.resource_type.clone(),
                    replacement: None,
                });
                continue;
            };
            let upstream_moves = prepared.graph().dependencies(&r.logical_id).any(|d| moving.contains(d));
            let replacement = match prepared.resolve_properties(&r.logical_id, &resolver) {
                Ok(p) if p == old.properties && !upstream_moves => continue,
                Ok(p) if p == old.properties => "Conditional",
                Ok(p) => {
                    if self
                        .provisioner
                        .requires_replacement(&old.resource_type, &old.properties, &p)
                    {
                        "True"
                    } else {
                        "False"
                    }
                }
                // It refers to a resource the change set adds: known only when executed.
                Err(_) => "Conditional",
            };
            if replacement != "False" {
                moving.insert(r.logical_id.as_str());
            }
            out.push(ChangeDoc {
                action: "Modify".to_owned(),
                logical_id: r.logical_id.clone(),
                physical_id: old.physical_id.clone(),
                resource_type: r.resource_type.clone(),
                replacement: Some(replacement.to_owned()),
            });
        }
        let keep: BTreeSet<&str> = prepared.resources().map(|r| r.logical_id.as_str()).collect();
        for old in stack
            .resources
            .values()
            .filter(|r| !keep.contains(r.logical_id.as_str()))
        {
            out.push(ChangeDoc {
                action: "Remove".to_owned(),
                logical_id: old.logical_id.clone(),
                physical_id: old.physical_id.clone(),
                resource_type: old.resource_type.clone(),
                replacement: None,
            });
        }
        out
    }

    /// A change set by id, or by name within `stack` (name or id).
    pub fn change_set(&self, scope: &Scope, name_or_id: &str, stack: Option<&str>) -> Result<ChangeSetDoc> {
        let inner = self.lock();
        let found = if name_or_id.starts_with("arn:") {
            inner
                .change_sets
                .get(stack_uuid(name_or_id))
                .filter(|c| c.id == name_or_id)
        } else {
            let Some(stack) = stack else {
                return Err(Error::validation(
                    "StackName must be specified if ChangeSetName is not specified as an ARN.",
                ));
            };
            let Some(s) = inner.find(scope, stack) else {
                return Err(Error::ChangeSetNotFound(name_or_id.to_owned()));
            };
            inner
                .change_sets
                .values()
                .find(|c| c.stack_id == s.stack_id && c.name == name_or_id)
        };
        found
            .filter(|c| c.id.contains(&format!(":{}:", scope.account)))
            .cloned()
            .ok_or_else(|| Error::ChangeSetNotFound(name_or_id.to_owned()))
    }

    /// The change sets of a stack, newest first.
    pub fn change_sets(&self, scope: &Scope, stack: &str) -> Result<Vec<ChangeSetDoc>> {
        let doc = self.stack(scope, stack)?;
        let mut v: Vec<ChangeSetDoc> = self
            .lock()
            .change_sets
            .values()
            .filter(|c| c.stack_id == doc.stack_id)
            .cloned()
            .collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.created_ms));
        Ok(v)
    }

    /// DeleteChangeSet.
    pub async fn delete_change_set(&self, scope: &Scope, name_or_id: &str, stack: Option<&str>) -> Result<()> {
        let cs = self.change_set(scope, name_or_id, stack)?;
        if cs.execution_status == "EXECUTE_IN_PROGRESS" {
            return Err(Error::InvalidChangeSetStatus(format!(
                "Cannot delete ChangeSet {} in status {}",
                cs.id, cs.execution_status
            )));
        }
        let write = {
            let mut inner = self.lock();
            inner.change_sets.remove(stack_uuid(&cs.id));
            self.meta.write_grouped(vec![MetaOp::Delete {
                table: T_CHANGE_SETS.to_owned(),
                key: stack_uuid(&cs.id).to_owned(),
            }])
        };
        write.await.map_err(storage)
    }

    /// ExecuteChangeSet: runs the create or update the change set describes.
    pub async fn execute_change_set(
        self: &Arc<Self>,
        scope: &Scope,
        name_or_id: &str,
        stack: Option<&str>,
    ) -> Result<()> {
        let cs = self.change_set(scope, name_or_id, stack)?;
        if cs.execution_status != "AVAILABLE" {
            return Err(Error::InvalidChangeSetStatus(format!(
                "ChangeSet [{}] cannot be executed in its current status of [{}]",
                cs.id, cs.execution_status
            )));
        }
        let doc = self.stack(scope, &cs.stack_id)?;
        self.check_role(scope, cs.role_arn.as_deref())?;
        let actor = Actor {
            caller: scope.caller.clone(),
            role_arn: cs.role_arn.clone(),
        };
        let spec = Spec {
            template_body: cs.template_body.clone(),
            given: cs.given_parameters.clone(),
            capabilities: cs.capabilities.clone(),
            tags: cs.tags.clone(),
            change_set_id: Some(cs.id.clone()),
        };
        let template = Template::parse(&cs.template_body)?;
        let prepared = template.prepare(&spec.given, &Self::context(&doc), &self.env(scope))?;
        let cs_uuid = stack_uuid(&cs.id).to_owned();
        // Every other change set of the stack is now stale.
        let others: Vec<ChangeSetDoc> = self
            .lock()
            .change_sets
            .values()
            .filter(|c| c.stack_id == cs.stack_id && c.id != cs.id)
            .cloned()
            .collect();
        for mut o in others {
            o.execution_status = "OBSOLETE".to_owned();
            self.put_cs(o).await?;
        }
        let mut running = cs.clone();
        running.execution_status = "EXECUTE_IN_PROGRESS".to_owned();
        if cs.change_set_type == "CREATE" {
            if doc.status != StackStatus::ReviewInProgress {
                return Err(Error::InvalidChangeSetStatus(format!(
                    "ChangeSet [{}] cannot be executed in its current status of [{}]",
                    cs.id, cs.execution_status
                )));
            }
            self.put_cs(running).await?;
            let uuid = doc.uuid().to_owned();
            self.change(&uuid, |doc, ev, now| {
                spec.apply(doc, &prepared);
                actor.apply(doc);
                doc.created_ms = now;
                set_stack(
                    doc,
                    ev,
                    now,
                    StackStatus::CreateInProgress,
                    Some("User Initiated".into()),
                );
            })
            .await?;
            tokio::spawn(self.clone().run_create(uuid, prepared, Some(cs_uuid)));
        } else {
            let (doc, _, _) = self
                .prepare_update(
                    scope,
                    &StackInput {
                        stack_name: doc.stack_id.clone(),
                        template_body: Some(cs.template_body.clone()),
                        parameters: Vec::new(),
                        capabilities: cs.capabilities.clone(),
                        ..StackInput::default()
                    },
                )
                .or_else(|e| match e {
                    // Parameters are re-checked below with the change set's own values.
                    Error::Validation(m) if m.contains("must have values") => {
                        Ok((doc.clone(), spec.clone(), prepared.clone()))
                    }
                    other => Err(other),
                })?;
            self.put_cs(running).await?;
            self.start_update(doc, spec, prepared, Some(cs_uuid), actor).await?;
        }
        Ok(())
    }

    async fn finish_change_set(&self, cs_uuid: &str, ok: bool) {
        let cs = self.lock().change_sets.get(cs_uuid).cloned();
        if let Some(mut cs) = cs {
            cs.execution_status = if ok { "EXECUTE_COMPLETE" } else { "EXECUTE_FAILED" }.to_owned();
            if let Err(e) = self.put_cs(cs).await {
                tracing::error!(error = %e, "cannot record a change set's outcome");
            }
        }
    }
}

fn check_change_set_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::validation(format!(
            "1 validation error detected: Value '{name}' at 'changeSetName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*"
        )))
    }
}

/// Logs a failed commit of a running operation; `Some(())` when it committed.
fn log_failure(uuid: &str, r: Result<()>) -> Option<()> {
    match r {
        Ok(()) => Some(()),
        Err(e) => {
            tracing::error!(stack = uuid, error = %e, "cannot record a stack change");
            None
        }
    }
}

/// With the stack's `allow_unsupported`, an unsupported type's failure becomes a placeholder
/// (`physical`, on an update, else a generated `<stack>-<logical id>-<RANDOM>`; `Ref` gives
/// it, there are no attributes) and the warning its event carries.
fn placeholder_if_allowed(
    made: std::result::Result<Provisioned, ProvisionError>,
    allow: bool,
    ctx: &StackContext,
    logical_id: &str,
    physical: Option<&str>,
) -> (std::result::Result<Provisioned, ProvisionError>, Option<String>) {
    match made {
        Err(ProvisionError::Unsupported(t)) if allow => {
            let physical = physical.map(str::to_owned).unwrap_or_else(|| {
                let random: String = uuid::Uuid::new_v4()
                    .simple()
                    .to_string()
                    .to_ascii_uppercase()
                    .chars()
                    .take(12)
                    .collect();
                format!("{}-{logical_id}-{random}", ctx.stack_name)
            });
            let warning = format!(
                "Resource type {t} is not supported by kinesis-data: recorded as a placeholder (allow-unsupported); nothing was made"
            );
            (Ok(Provisioned::named(physical, [])), Some(warning))
        }
        other => (other, None),
    }
}

fn new_stack(scope: &Scope, name: &str, id: &str, now: i64, disable_rollback: bool) -> StackDoc {
    StackDoc {
        version: FORMAT_VERSION,
        stack_id: id.to_owned(),
        stack_name: name.to_owned(),
        account: scope.account.clone(),
        region: scope.region.clone(),
        status: StackStatus::ReviewInProgress,
        status_reason: None,
        created_ms: now,
        updated_ms: None,
        deleted_ms: None,
        description: None,
        template_body: String::new(),
        given_parameters: BTreeMap::new(),
        parameters: Vec::new(),
        capabilities: Vec::new(),
        tags: Vec::new(),
        disable_rollback,
        allow_unsupported: false,
        outputs: Vec::new(),
        resources: BTreeMap::new(),
        imports: Vec::new(),
        change_set_id: None,
        event_seq: 0,
        role_arn: None,
        operator: scope.caller.clone(),
    }
}

/// The parameter values of a call by name; `UsePreviousValue` takes the stack's.
fn given_parameters(
    input: &[ParameterInput],
    previous: Option<&BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for p in input {
        let value = match (&p.value, p.use_previous_value) {
            (Some(_), true) => {
                return Err(Error::validation(format!(
                    "Invalid input for parameter key {}. Cannot specify usePreviousValue as true and non empty value for a parameter",
                    p.key
                )));
            }
            (Some(v), false) => v.clone(),
            (None, true) => match previous.and_then(|m| m.get(&p.key)) {
                Some(v) => v.clone(),
                None if previous.is_none() => {
                    return Err(Error::validation(format!(
                        "Invalid input for parameter key {}. Cannot specify usePreviousValue as true for a new stack",
                        p.key
                    )));
                }
                // The previous value was the default: keep using it.
                None => continue,
            },
            (None, false) => {
                return Err(Error::validation(format!(
                    "Invalid input for parameter key {}. Need to specify either usePreviousValue as true or a value for the parameter",
                    p.key
                )));
            }
        };
        out.insert(p.key.clone(), value);
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn new_event(
    doc: &mut StackDoc,
    now: i64,
    logical_id: &str,
    physical_id: Option<String>,
    resource_type: &str,
    status: &str,
    reason: Option<String>,
    properties: Option<String>,
) -> EventDoc {
    doc.event_seq += 1;
    EventDoc {
        version: FORMAT_VERSION,
        event_id: uuid::Uuid::new_v4().to_string(),
        stack_id: doc.stack_id.clone(),
        stack_name: doc.stack_name.clone(),
        logical_id: logical_id.to_owned(),
        physical_id,
        resource_type: resource_type.to_owned(),
        timestamp_ms: now,
        status: status.to_owned(),
        status_reason: reason,
        properties,
        seq: doc.event_seq,
    }
}

/// Sets the stack's status and records its event.
fn set_stack(doc: &mut StackDoc, events: &mut Vec<EventDoc>, now: i64, status: StackStatus, reason: Option<String>) {
    doc.status = status;
    doc.status_reason.clone_from(&reason);
    let (name, id) = (doc.stack_name.clone(), doc.stack_id.clone());
    events.push(new_event(
        doc,
        now,
        &name,
        Some(id),
        STACK_TYPE,
        status.as_str(),
        reason,
        None,
    ));
}

/// Sets a resource's status and records its event (with its properties when `with_props`).
fn set_resource(
    doc: &mut StackDoc,
    events: &mut Vec<EventDoc>,
    now: i64,
    id: &str,
    status: ResourceStatus,
    reason: Option<String>,
    with_props: bool,
) {
    let Some(r) = doc.resources.get_mut(id) else {
        return;
    };
    r.status = status;
    r.status_reason.clone_from(&reason);
    r.updated_ms = now;
    let (physical, rtype) = (r.physical_id.clone(), r.resource_type.clone());
    let props = with_props.then(|| r.properties.to_string());
    events.push(new_event(
        doc,
        now,
        id,
        physical,
        &rtype,
        status.as_str(),
        reason,
        props,
    ));
}

fn put_stack(doc: &StackDoc) -> Result<MetaOp> {
    Ok(MetaOp::Put {
        table: T_STACKS.to_owned(),
        key: doc.uuid().to_owned(),
        value: to_json(doc)?,
    })
}

fn put_event(e: &EventDoc) -> Result<MetaOp> {
    Ok(MetaOp::Put {
        table: T_EVENTS.to_owned(),
        key: event_key(stack_uuid(&e.stack_id), e.seq),
        value: to_json(e)?,
    })
}

fn put_change_set(cs: &ChangeSetDoc) -> Result<MetaOp> {
    Ok(MetaOp::Put {
        table: T_CHANGE_SETS.to_owned(),
        key: stack_uuid(&cs.id).to_owned(),
        value: to_json(cs)?,
    })
}
