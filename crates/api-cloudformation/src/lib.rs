//! The CloudFormation adapter: the AWS query protocol (`Action=<Op>&Version=2010-05-15&…`,
//! form-encoded POST bodies or URL queries; lists as `Name.member.N`) over the `kd-stacks`
//! lifecycle engine, answering `<OpResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">`
//! with `<OpResult>` and `<ResponseMetadata><RequestId>`, errors in the query envelope of
//! `kd_wire::render_error` with CloudFormation's codes (mapping: `error.rs`). It checks
//! `cloudformation:<Action>` with the caller's authoriser, reads a `TemplateURL` that names
//! one of our buckets (path style `http://localhost:4566/bucket/key`, or virtual-hosted
//! `bucket.s3.amazonaws.com/key` and its regional forms) through the [`TemplateSource`]
//! port, and hands the engine one call. Stacks run in the engine; this crate only translates.

mod error;
pub mod xml;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use kd_stacks::custom::CustomResponses;
use kd_stacks::{
    ChangeSetDoc, MAX_TEMPLATE_BODY_BYTES, MAX_TEMPLATE_BYTES, ParameterInput, Scope, StackDoc, StackInput,
    StackStatus, Stacks, Tag, Template,
};
use kd_wire::{Protocol, RequestContext, ServiceError, render_error};

pub use crate::error::to_service_error;
use crate::error::validation;
use crate::xml::{Xml, response, timestamp};

/// Largest request body the adapter accepts (a 51,200-byte template, form-encoded, fits).
pub const MAX_BODY: usize = 1024 * 1024;
/// Where custom resources' response URLs live on the edge.
pub const RESPONSE_PATH: &str = kd_stacks::custom::RESPONSE_PATH;
/// The API version.
pub const VERSION: &str = "2010-05-15";

/// Where `TemplateURL`s are read: the objects of our own S3.
#[async_trait::async_trait]
pub trait TemplateSource: Send + Sync {
    /// The object's text, read as `account`; `Err` is the message of the ValidationError
    /// CloudFormation answers (e.g. `S3 error: Access Denied`).
    async fn template(&self, account: &str, bucket: &str, key: &str, limit: usize) -> Result<String, String>;
}

/// The adapter. Cheap to clone.
#[derive(Clone)]
pub struct CloudFormationApi {
    stacks: Arc<Stacks>,
    templates: Arc<dyn TemplateSource>,
    responses: Option<Arc<CustomResponses>>,
    allow_unsupported: bool,
}

impl std::fmt::Debug for CloudFormationApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CloudFormationApi")
    }
}

/// The parameters of one request (the last value of a repeated name wins).
struct Params(HashMap<String, String>);

impl Params {
    fn parse(query: Option<&str>, body: &[u8]) -> Self {
        let mut map = HashMap::new();
        if let Some(q) = query {
            map.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        map.extend(form_urlencoded::parse(body).into_owned());
        Params(map)
    }

    fn opt(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    /// A required parameter; `member` is the camelCase name AWS reports.
    fn req(&self, name: &str, member: &str) -> Result<String, ServiceError> {
        self.opt(name).ok_or_else(|| {
            validation(format!(
                "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
            ))
        })
    }

    fn bool(&self, name: &str) -> Result<bool, ServiceError> {
        match self.0.get(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) if v == "true" => Ok(true),
            Some(v) if v == "false" => Ok(false),
            Some(v) => Err(validation(format!("Value '{v}' for {name} is not a boolean"))),
        }
    }

    /// `Name.member.1`, `Name.member.2`, … until one is missing.
    /// `RoleARN`, checked for its modeled length.
    fn role_arn(&self) -> Result<Option<String>, ServiceError> {
        match self.opt("RoleARN") {
            Some(r) if r.len() < 20 || r.len() > 2048 => Err(validation(format!(
                "1 validation error detected: Value '{r}' at 'roleARN' failed to satisfy constraint: Member must have length between 20 and 2048"
            ))),
            other => Ok(other),
        }
    }

    fn list(&self, name: &str) -> Vec<String> {
        (1..).map_while(|n| self.opt(&format!("{name}.member.{n}"))).collect()
    }

    fn tags(&self) -> Option<Vec<Tag>> {
        let tags: Vec<Tag> = (1..)
            .map_while(|n| {
                let key = self.opt(&format!("Tags.member.{n}.Key"))?;
                let value = self.opt(&format!("Tags.member.{n}.Value")).unwrap_or_default();
                Some(Tag { key, value })
            })
            .collect();
        (!tags.is_empty()).then_some(tags)
    }

    fn parameters(&self) -> Result<Vec<ParameterInput>, ServiceError> {
        let mut out = Vec::new();
        for n in 1.. {
            let prefix = format!("Parameters.member.{n}");
            let key = self.opt(&format!("{prefix}.ParameterKey"));
            let value = self.opt(&format!("{prefix}.ParameterValue"));
            let previous = self.opt(&format!("{prefix}.UsePreviousValue"));
            if key.is_none() && value.is_none() && previous.is_none() {
                break;
            }
            let Some(key) = key else {
                return Err(validation("ParameterKey must be specified for every parameter"));
            };
            out.push(ParameterInput {
                key,
                value,
                use_previous_value: self.bool(&format!("{prefix}.UsePreviousValue"))?,
            });
        }
        Ok(out)
    }
}

type Reply = Result<Option<String>, ServiceError>;

/// Items per page of the list and describe operations (AWS pages them; 100 is the page size
/// of ListStacks, ListStackResources and ListExports).
pub const PAGE_SIZE: usize = 100;
/// What a `NextToken` of this API starts with (the rest is the offset of the page).
const TOKEN_PREFIX: &str = "kd-page-";

/// The page of `items` that `token` (a `NextToken` this API gave) starts, and the token of
/// the page after it, if any.
fn page<T>(items: Vec<T>, token: Option<String>) -> Result<(Vec<T>, Option<String>), ServiceError> {
    let start = match token {
        None => 0,
        Some(t) => t
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| validation("Invalid NextToken"))?,
    };
    let end = (start + PAGE_SIZE).min(items.len());
    let next = (end < items.len()).then(|| format!("{TOKEN_PREFIX}{end}"));
    let items: Vec<T> = items.into_iter().skip(start).take(end - start).collect();
    Ok((items, next))
}

fn one(f: impl FnOnce(&mut Xml)) -> Reply {
    let mut x = Xml::default();
    f(&mut x);
    Ok(Some(x.finish()))
}

/// The bucket and key a `TemplateURL` names, for any of S3's URL styles.
pub fn parse_template_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once(':').map_or(authority, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            authority
        }
    });
    let host = host.to_ascii_lowercase();
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    let virtual_bucket = ["s3.", "s3-"]
        .iter()
        .filter_map(|m| host.find(&format!(".{m}")))
        .min()
        .map(|i| &host[..i])
        .or_else(|| host.strip_suffix(".localhost"))
        .filter(|b| !b.is_empty());
    let (bucket, key) = match virtual_bucket {
        Some(b) => (b.to_owned(), decode(path)?),
        None => {
            let (b, k) = path.split_once('/')?;
            (decode(b)?, decode(k)?)
        }
    };
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}

impl CloudFormationApi {
    /// The adapter over the engine, reading template URLs from `templates`.
    pub fn new(stacks: Arc<Stacks>, templates: Arc<dyn TemplateSource>) -> Self {
        Self {
            stacks,
            templates,
            responses: None,
            allow_unsupported: false,
        }
    }

    /// Every stack created or updated through this adapter records resources of unsupported
    /// types as placeholders (the server's `[cloudformation] allow_unsupported`).
    pub fn allow_unsupported(mut self, allow: bool) -> Self {
        self.allow_unsupported = allow;
        self
    }

    /// Serves custom resources' response URLs ([`CloudFormationApi::custom_resource_response`])
    /// from `responses`, the registry the provisioner waits on.
    pub fn with_responses(mut self, responses: Arc<CustomResponses>) -> Self {
        self.responses = Some(responses);
        self
    }

    /// A custom resource handler's `PUT` to its response URL (`<RESPONSE_PATH><token>`,
    /// any query, any or no Content-Type): 200 with an empty body as S3 answers a presigned
    /// PUT, or S3's 403 `AccessDenied` for a URL no request waits on.
    pub fn custom_resource_response(&self, method: &http::Method, path: &str, body: &[u8]) -> http::Response<Bytes> {
        let token = path.strip_prefix(kd_stacks::custom::RESPONSE_PATH).unwrap_or_default();
        let refused = |status: StatusCode, code: &str, message: &str| {
            let err = ServiceError::with_status(status, code, message);
            render_error(Protocol::RestXml, &err, "")
        };
        if method != http::Method::PUT {
            return refused(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.",
            );
        }
        let delivered = match &self.responses {
            Some(r) if !token.is_empty() => r.deliver(token, body),
            _ => Err(kd_stacks::custom::DeliverError::Expired),
        };
        match delivered {
            Ok(()) => {
                let mut r = http::Response::new(Bytes::new());
                r.headers_mut()
                    .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from_static("0"));
                r
            }
            Err(e) => refused(StatusCode::FORBIDDEN, "AccessDenied", &e.to_string()),
        }
    }

    /// The engine.
    pub fn stacks(&self) -> &Arc<Stacks> {
        &self.stacks
    }

    /// Handles one request (resources are made with the provisioner's own credentials).
    pub async fn handle(&self, ctx: &RequestContext, query: Option<&str>, body: &[u8]) -> http::Response<Bytes> {
        self.handle_as(ctx, None, query, body).await
    }

    /// Handles one request of the caller whose access key id is `caller`: operations it
    /// starts make resources with its credentials (or the stack's `RoleARN`).
    pub async fn handle_as(
        &self,
        ctx: &RequestContext,
        caller: Option<&str>,
        query: Option<&str>,
        body: &[u8],
    ) -> http::Response<Bytes> {
        let params = Params::parse(query, body);
        let Some(action) = params.opt("Action") else {
            let err = ServiceError::client("MissingAction", "Missing Action");
            return render_error(Protocol::Query, &err, &ctx.request_id);
        };
        if ctx.authz.enforced() {
            let resource = self.resource_arn(ctx, &params);
            if let Err(message) = ctx.authz.authorize(&format!("cloudformation:{action}"), &resource) {
                let err = ServiceError::with_status(StatusCode::FORBIDDEN, "AccessDenied", message);
                return render_error(Protocol::Query, &err, &ctx.request_id);
            }
        }
        if ctx.authz.enforced()
            && let Some(role) = params.opt("RoleARN")
            && matches!(
                action.as_str(),
                "CreateStack" | "UpdateStack" | "DeleteStack" | "CreateChangeSet"
            )
            && let Err(message) = ctx.authz.authorize("iam:PassRole", &role)
        {
            let err = ServiceError::with_status(StatusCode::FORBIDDEN, "AccessDenied", message);
            return render_error(Protocol::Query, &err, &ctx.request_id);
        }
        let scope = Scope {
            account: ctx.account_id.clone(),
            region: ctx.region.clone(),
            caller: caller.map(str::to_owned),
        };
        match self.dispatch(&action, &params, &scope).await {
            Ok(inner) => response(&action, inner.as_deref(), &ctx.request_id),
            Err(e) => render_error(Protocol::Query, &e, &ctx.request_id),
        }
    }

    /// The stack a request names, as the resource of its IAM check.
    fn resource_arn(&self, ctx: &RequestContext, p: &Params) -> String {
        match p.opt("StackName") {
            Some(id) if id.starts_with("arn:") => id,
            Some(name) => format!(
                "arn:{}:cloudformation:{}:{}:stack/{name}/*",
                kd_stacks::partition(&ctx.region),
                ctx.region,
                ctx.account_id
            ),
            None => "*".to_owned(),
        }
    }

    async fn dispatch(&self, action: &str, p: &Params, scope: &Scope) -> Reply {
        let e = |e: kd_stacks::Error| to_service_error(&e);
        match action {
            "CreateStack" => {
                let input = self.stack_input(p, scope, true).await?;
                let id = self.stacks.create_stack(scope, input).await.map_err(e)?;
                one(|x| x.el("StackId", &id))
            }
            "UpdateStack" => {
                let input = self.stack_input(p, scope, false).await?;
                let id = self.stacks.update_stack(scope, input).await.map_err(e)?;
                one(|x| x.el("StackId", &id))
            }
            "DeleteStack" => {
                let name = p.req("StackName", "stackName")?;
                let role = p.role_arn()?;
                self.stacks.delete_stack_as(scope, &name, role).await.map_err(e)?;
                Ok(None)
            }
            "DescribeStacks" => {
                let stacks = match p.opt("StackName") {
                    Some(name) => vec![self.stacks.stack(scope, &name).map_err(e)?],
                    None => self.stacks.live_stacks(scope),
                };
                let (stacks, next) = page(stacks, p.opt("NextToken"))?;
                one(|x| {
                    x.members("Stacks", &stacks, stack_xml);
                    x.opt("NextToken", next.as_deref());
                })
            }
            "DescribeStackEvents" => {
                let name = p.req("StackName", "stackName")?;
                let events = self.stacks.events(scope, &name).map_err(e)?;
                let (events, next) = page(events, p.opt("NextToken"))?;
                one(|x| {
                    x.members("StackEvents", &events, |x, ev| {
                        x.el("StackId", &ev.stack_id);
                        x.el("EventId", &ev.event_id);
                        x.el("StackName", &ev.stack_name);
                        x.el("LogicalResourceId", &ev.logical_id);
                        x.opt("PhysicalResourceId", ev.physical_id.as_deref());
                        x.el("ResourceType", &ev.resource_type);
                        x.el("Timestamp", &timestamp(ev.timestamp_ms));
                        x.el("ResourceStatus", &ev.status);
                        x.opt("ResourceStatusReason", ev.status_reason.as_deref());
                        x.opt("ResourceProperties", ev.properties.as_deref());
                    });
                    x.opt("NextToken", next.as_deref());
                })
            }
            "DescribeStackResource" => {
                let name = p.req("StackName", "stackName")?;
                let logical = p.req("LogicalResourceId", "logicalResourceId")?;
                let doc = self.stacks.stack(scope, &name).map_err(e)?;
                let r = doc
                    .resources
                    .get(&logical)
                    .ok_or_else(|| validation(format!("Resource {logical} does not exist for stack {name}")))?;
                one(|x| {
                    x.open("StackResourceDetail");
                    x.el("StackName", &doc.stack_name);
                    x.el("StackId", &doc.stack_id);
                    resource_xml(x, r, "LastUpdatedTimestamp");
                    x.opt("Metadata", r.metadata.as_ref().map(ToString::to_string).as_deref());
                    drift(x);
                    x.close("StackResourceDetail");
                })
            }
            "DescribeStackResources" => {
                let doc = match (p.opt("StackName"), p.opt("PhysicalResourceId")) {
                    (Some(name), _) => self.stacks.stack(scope, &name).map_err(e)?,
                    (None, Some(physical)) => self
                        .stacks
                        .live_stacks(scope)
                        .into_iter()
                        .find(|s| {
                            s.resources
                                .values()
                                .any(|r| r.physical_id.as_deref() == Some(&physical))
                        })
                        .ok_or_else(|| validation(format!("Stack for {physical} does not exist")))?,
                    (None, None) => {
                        return Err(validation("Either StackName or PhysicalResourceId must be specified."));
                    }
                };
                let logical = p.opt("LogicalResourceId");
                let resources: Vec<_> = doc
                    .resources
                    .values()
                    .filter(|r| logical.as_ref().is_none_or(|l| l == &r.logical_id))
                    .collect();
                one(|x| {
                    x.members("StackResources", resources, |x, r| {
                        x.el("StackName", &doc.stack_name);
                        x.el("StackId", &doc.stack_id);
                        resource_xml(x, r, "Timestamp");
                        drift(x);
                    });
                })
            }
            "ListStackResources" => {
                let name = p.req("StackName", "stackName")?;
                let doc = self.stacks.stack(scope, &name).map_err(e)?;
                let (resources, next) = page(doc.resources.values().collect(), p.opt("NextToken"))?;
                one(|x| {
                    x.members("StackResourceSummaries", resources, |x, r| {
                        resource_xml(x, r, "LastUpdatedTimestamp");
                        drift(x);
                    });
                    x.opt("NextToken", next.as_deref());
                })
            }
            "ListStacks" => {
                let filter: Vec<String> = p.list("StackStatusFilter");
                for f in &filter {
                    if StackStatus::parse(f).is_none() {
                        return Err(validation(format!(
                            "1 validation error detected: Value '[{f}]' at 'stackStatusFilter' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set]"
                        )));
                    }
                }
                let stacks: Vec<StackDoc> = self
                    .stacks
                    .all_stacks(scope)
                    .into_iter()
                    .filter(|s| filter.is_empty() || filter.iter().any(|f| f == s.status.as_str()))
                    .collect();
                let (stacks, next) = page(stacks, p.opt("NextToken"))?;
                one(|x| {
                    x.members("StackSummaries", &stacks, |x, s| {
                        x.el("StackId", &s.stack_id);
                        x.el("StackName", &s.stack_name);
                        x.opt("TemplateDescription", s.description.as_deref());
                        x.el("CreationTime", &timestamp(s.created_ms));
                        x.opt("LastUpdatedTime", s.updated_ms.map(timestamp).as_deref());
                        x.opt("DeletionTime", s.deleted_ms.map(timestamp).as_deref());
                        x.el("StackStatus", s.status.as_str());
                        x.opt("StackStatusReason", s.status_reason.as_deref());
                        drift(x);
                    });
                    x.opt("NextToken", next.as_deref());
                })
            }
            "GetTemplate" => {
                let body = match (p.opt("ChangeSetName"), p.opt("StackName")) {
                    (Some(cs), stack) => {
                        self.stacks
                            .change_set(scope, &cs, stack.as_deref())
                            .map_err(e)?
                            .template_body
                    }
                    (None, Some(name)) => self.stacks.stack(scope, &name).map_err(e)?.template_body,
                    (None, None) => return Err(validation("Either StackName or ChangeSetName must be specified.")),
                };
                one(|x| {
                    x.el("TemplateBody", &body);
                    x.members("StagesAvailable", ["Original", "Processed"], |x, s| x.out_text(s));
                })
            }
            "ValidateTemplate" => {
                let body = self
                    .template_body(p, scope)
                    .await?
                    .ok_or_else(|| validation("Either Template URL or Template Body must be specified."))?;
                let t = Template::parse(&body).map_err(e)?;
                one(|x| {
                    x.members("Parameters", t.parameters(), |x, decl| {
                        x.el("ParameterKey", &decl.name);
                        x.opt("DefaultValue", decl.default.as_deref());
                        x.el("NoEcho", if decl.no_echo { "true" } else { "false" });
                        x.opt("Description", decl.description.as_deref());
                    });
                    x.opt("Description", t.description());
                    if let Some(c) = t.required_capability() {
                        x.members("Capabilities", [c], |x, c| x.out_text(c));
                        x.el(
                            "CapabilitiesReason",
                            "The following resource(s) require capabilities: [AWS::IAM::Role]",
                        );
                    }
                    x.open("DeclaredTransforms");
                    x.close("DeclaredTransforms");
                })
            }
            "GetTemplateSummary" => {
                let body = match (self.template_body(p, scope).await?, p.opt("StackName")) {
                    (Some(_), Some(_)) => {
                        return Err(validation(
                            "Specify exactly one of TemplateBody, TemplateUrl, StackName or StackSetName.",
                        ));
                    }
                    (Some(body), None) => body,
                    (None, Some(name)) => self.stacks.stack(scope, &name).map_err(e)?.template_body,
                    (None, None) => {
                        return Err(validation(
                            "Either Template URL or Template Body or StackName or StackSetName must be specified.",
                        ));
                    }
                };
                let t = Template::parse(&body).map_err(e)?;
                one(|x| template_summary_xml(x, &t))
            }
            "ListExports" => {
                let (exports, next) = page(self.stacks.exports(scope), p.opt("NextToken"))?;
                one(|x| {
                    x.members("Exports", &exports, |x, ex| {
                        x.el("ExportingStackId", &ex.exporting_stack_id);
                        x.el("Name", &ex.name);
                        x.el("Value", &ex.value);
                    });
                    x.opt("NextToken", next.as_deref());
                })
            }
            "CreateChangeSet" => {
                let name = p.req("ChangeSetName", "changeSetName")?;
                let kind = p.opt("ChangeSetType").unwrap_or_else(|| "UPDATE".to_owned());
                let input = self.stack_input(p, scope, kind == "CREATE").await?;
                let (id, stack_id) = self
                    .stacks
                    .create_change_set(scope, input, &name, &kind, p.opt("Description"))
                    .await
                    .map_err(e)?;
                one(|x| {
                    x.el("Id", &id);
                    x.el("StackId", &stack_id);
                })
            }
            "DescribeChangeSet" => {
                let name = p.req("ChangeSetName", "changeSetName")?;
                let cs = self
                    .stacks
                    .change_set(scope, &name, p.opt("StackName").as_deref())
                    .map_err(e)?;
                one(|x| change_set_xml(x, &cs))
            }
            "ExecuteChangeSet" => {
                let name = p.req("ChangeSetName", "changeSetName")?;
                self.stacks
                    .execute_change_set(scope, &name, p.opt("StackName").as_deref())
                    .await
                    .map_err(e)?;
                Ok(Some(String::new()))
            }
            "DeleteChangeSet" => {
                let name = p.req("ChangeSetName", "changeSetName")?;
                self.stacks
                    .delete_change_set(scope, &name, p.opt("StackName").as_deref())
                    .await
                    .map_err(e)?;
                Ok(Some(String::new()))
            }
            "ListChangeSets" => {
                let stack = p.req("StackName", "stackName")?;
                let sets = self.stacks.change_sets(scope, &stack).map_err(e)?;
                let (sets, next) = page(sets, p.opt("NextToken"))?;
                one(|x| {
                    x.members("Summaries", &sets, |x, cs| {
                        x.el("StackId", &cs.stack_id);
                        x.el("StackName", &cs.stack_name);
                        x.el("ChangeSetId", &cs.id);
                        x.el("ChangeSetName", &cs.name);
                        x.el("ExecutionStatus", &cs.execution_status);
                        x.el("Status", &cs.status);
                        x.opt("StatusReason", cs.status_reason.as_deref());
                        x.el("CreationTime", &timestamp(cs.created_ms));
                        x.opt("Description", cs.description.as_deref());
                    });
                    x.opt("NextToken", next.as_deref());
                })
            }
            other => Err(ServiceError::client(
                "InvalidAction",
                format!("Could not find operation {other} for version {VERSION}"),
            )),
        }
    }

    /// `TemplateBody`, or the object `TemplateURL` names; `None` when neither is given.
    async fn template_body(&self, p: &Params, scope: &Scope) -> Result<Option<String>, ServiceError> {
        match (p.opt("TemplateBody"), p.opt("TemplateURL")) {
            (Some(_), Some(_)) => Err(validation("Specify exactly one of TemplateBody or TemplateUrl.")),
            (Some(body), None) => {
                if body.len() > MAX_TEMPLATE_BODY_BYTES {
                    return Err(validation(format!(
                        "1 validation error detected: Value '{}…' at 'templateBody' failed to satisfy constraint: Member must have length less than or equal to {MAX_TEMPLATE_BODY_BYTES}",
                        body.chars().take(32).collect::<String>()
                    )));
                }
                Ok(Some(body))
            }
            (None, Some(url)) => {
                let (bucket, key) =
                    parse_template_url(&url).ok_or_else(|| validation("TemplateURL must be a supported URL."))?;
                let text = self
                    .templates
                    .template(&scope.account, &bucket, &key, MAX_TEMPLATE_BYTES)
                    .await
                    .map_err(validation)?;
                Ok(Some(text))
            }
            (None, None) => Ok(None),
        }
    }

    async fn stack_input(&self, p: &Params, scope: &Scope, create: bool) -> Result<StackInput, ServiceError> {
        let stack_name = p.req("StackName", "stackName")?;
        let template_body = self.template_body(p, scope).await?;
        let use_previous_template = p.bool("UsePreviousTemplate")?;
        if create && template_body.is_none() {
            return Err(validation("Either Template URL or Template Body must be specified."));
        }
        let disable_rollback = p.bool("DisableRollback")?;
        let disable_rollback = match p.opt("OnFailure").as_deref() {
            None => disable_rollback,
            Some(_) if p.opt("DisableRollback").is_some() => {
                return Err(validation(
                    "You can specify either DisableRollback or OnFailure, but not both.",
                ));
            }
            Some("DO_NOTHING") => true,
            Some("ROLLBACK" | "DELETE") => false,
            Some(other) => {
                return Err(validation(format!(
                    "1 validation error detected: Value '{other}' at 'onFailure' failed to satisfy constraint: Member must satisfy enum value set: [DO_NOTHING, ROLLBACK, DELETE]"
                )));
            }
        };
        Ok(StackInput {
            stack_name,
            template_body,
            use_previous_template,
            parameters: p.parameters()?,
            capabilities: p.list("Capabilities"),
            tags: p.tags(),
            disable_rollback,
            role_arn: p.role_arn()?,
            // `AllowUnsupported=true` is our extension (what `kinesis-data deploy
            // --allow-unsupported` sends); the server's setting applies to every stack.
            allow_unsupported: self.allow_unsupported || p.bool("AllowUnsupported")?,
        })
    }
}

impl Xml {
    /// Text directly inside the current element (list members of plain strings).
    fn out_text(&mut self, text: &str) {
        self.raw(&kd_wire::xml_escape(text));
    }
}

/// GetTemplateSummary's result: parameters with their types and constraints, capabilities
/// (with the IAM resource types that need them), the resource types, the format version,
/// the description and metadata; no transforms (they are refused).
fn template_summary_xml(x: &mut Xml, t: &Template) {
    x.members("Parameters", t.parameters(), |x, decl| {
        x.el("ParameterKey", &decl.name);
        x.opt("DefaultValue", decl.default.as_deref());
        x.el("ParameterType", &decl.parameter_type.name);
        x.el("NoEcho", if decl.no_echo { "true" } else { "false" });
        x.opt("Description", decl.description.as_deref());
        x.open("ParameterConstraints");
        x.members("AllowedValues", &decl.allowed_values, |x, v| x.out_text(v));
        x.close("ParameterConstraints");
    });
    x.opt("Description", t.description());
    let mut types: Vec<&str> = t.resources().map(|r| r.resource_type.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    if let Some(c) = t.required_capability() {
        let iam: Vec<&str> = types.iter().copied().filter(|t| t.starts_with("AWS::IAM::")).collect();
        x.members("Capabilities", [c], |x, c| x.out_text(c));
        x.el(
            "CapabilitiesReason",
            &format!("The following resource(s) require capabilities: [{}]", iam.join(", ")),
        );
    }
    x.members("ResourceTypes", &types, |x, t| x.out_text(t));
    let version = t
        .body()
        .get("AWSTemplateFormatVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("2010-09-09");
    x.el("Version", version);
    if let Some(m) = t.body().get("Metadata") {
        x.el("Metadata", &m.to_string());
    }
    x.open("DeclaredTransforms");
    x.close("DeclaredTransforms");
}

fn drift(x: &mut Xml) {
    x.open("DriftInformation");
    x.el("StackResourceDriftStatus", "NOT_CHECKED");
    x.close("DriftInformation");
}

fn resource_xml(x: &mut Xml, r: &kd_stacks::ResourceDoc, time_name: &str) {
    x.el("LogicalResourceId", &r.logical_id);
    x.opt("PhysicalResourceId", r.physical_id.as_deref());
    x.el("ResourceType", &r.resource_type);
    x.el(time_name, &timestamp(r.updated_ms));
    x.el("ResourceStatus", r.status.as_str());
    x.opt("ResourceStatusReason", r.status_reason.as_deref());
}

fn parameters_xml(x: &mut Xml, params: &[kd_stacks::store::ParameterValue]) {
    x.members("Parameters", params, |x, p| {
        x.el("ParameterKey", &p.key);
        x.el("ParameterValue", if p.no_echo { "****" } else { &p.value });
        x.opt("ResolvedValue", p.resolved_value.as_deref());
    });
}

fn tags_xml(x: &mut Xml, tags: &[Tag]) {
    x.members("Tags", tags, |x, t| {
        x.el("Key", &t.key);
        x.el("Value", &t.value);
    });
}

fn stack_xml(x: &mut Xml, s: &StackDoc) {
    x.el("StackId", &s.stack_id);
    x.el("StackName", &s.stack_name);
    x.opt("ChangeSetId", s.change_set_id.as_deref());
    x.opt("Description", s.description.as_deref());
    parameters_xml(x, &s.parameters);
    x.el("CreationTime", &timestamp(s.created_ms));
    x.opt("DeletionTime", s.deleted_ms.map(timestamp).as_deref());
    x.opt("LastUpdatedTime", s.updated_ms.map(timestamp).as_deref());
    x.el("StackStatus", s.status.as_str());
    x.opt("StackStatusReason", s.status_reason.as_deref());
    x.el("DisableRollback", if s.disable_rollback { "true" } else { "false" });
    x.opt("RoleARN", s.role_arn.as_deref());
    x.members("NotificationARNs", Vec::<&str>::new(), |x, n| x.out_text(n));
    x.members("Capabilities", &s.capabilities, |x, c| x.out_text(c));
    x.members("Outputs", &s.outputs, |x, o| {
        x.el("OutputKey", &o.key);
        x.el("OutputValue", &o.value);
        x.opt("Description", o.description.as_deref());
        x.opt("ExportName", o.export_name.as_deref());
    });
    tags_xml(x, &s.tags);
    x.el("EnableTerminationProtection", "false");
    x.open("DriftInformation");
    x.el("StackDriftStatus", "NOT_CHECKED");
    x.close("DriftInformation");
}

fn change_set_xml(x: &mut Xml, cs: &ChangeSetDoc) {
    x.el("ChangeSetName", &cs.name);
    x.el("ChangeSetId", &cs.id);
    x.el("StackId", &cs.stack_id);
    x.el("StackName", &cs.stack_name);
    x.opt("Description", cs.description.as_deref());
    parameters_xml(x, &cs.parameters);
    x.el("CreationTime", &timestamp(cs.created_ms));
    x.el("ExecutionStatus", &cs.execution_status);
    x.el("Status", &cs.status);
    x.opt("StatusReason", cs.status_reason.as_deref());
    x.members("NotificationARNs", Vec::<&str>::new(), |x, n| x.out_text(n));
    x.members("Capabilities", &cs.capabilities, |x, c| x.out_text(c));
    tags_xml(x, &cs.tags);
    x.members("Changes", &cs.changes, |x, c| {
        x.el("Type", "Resource");
        x.open("ResourceChange");
        x.el("Action", &c.action);
        x.el("LogicalResourceId", &c.logical_id);
        x.opt("PhysicalResourceId", c.physical_id.as_deref());
        x.el("ResourceType", &c.resource_type);
        x.opt("Replacement", c.replacement.as_deref());
        x.members("Scope", Vec::<&str>::new(), |x, s| x.out_text(s));
        x.members("Details", Vec::<&str>::new(), |x, s| x.out_text(s));
        x.close("ResourceChange");
    });
    x.el("IncludeNestedStacks", "false");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_their_tokens_to_the_end() -> Result<(), ServiceError> {
        let items: Vec<usize> = (0..250).collect();
        let (first, t1) = page(items.clone(), None)?;
        assert_eq!((first.len(), first[0], t1.as_deref()), (100, 0, Some("kd-page-100")));
        let (second, t2) = page(items.clone(), t1)?;
        assert_eq!((second[0], second.len()), (100, 100));
        let (third, t3) = page(items.clone(), t2)?;
        assert_eq!((third[0], third.len(), t3), (200, 50, None));
        let (all, none) = page(vec![1, 2], None)?;
        assert_eq!((all, none), (vec![1, 2], None));
        for bad in ["kd-page-251", "100", "kd-page-x", ""] {
            assert!(page(items.clone(), Some(bad.to_owned())).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn template_urls_in_every_s3_style() {
        let want = Some(("cfn".to_owned(), "dir/t.yaml".to_owned()));
        for url in [
            "http://localhost:4566/cfn/dir/t.yaml",
            "http://127.0.0.1:4566/cfn/dir/t.yaml?versionId=null",
            "https://s3.amazonaws.com/cfn/dir/t.yaml",
            "https://s3.us-east-1.amazonaws.com/cfn/dir/t.yaml",
            "https://cfn.s3.amazonaws.com/dir/t.yaml",
            "https://cfn.s3.eu-west-1.amazonaws.com/dir/t.yaml",
            "https://cfn.s3-eu-west-1.amazonaws.com/dir/t.yaml",
            "http://cfn.s3.localhost:4566/dir/t.yaml",
            "http://cfn.localhost:4566/dir/t.yaml",
        ] {
            assert_eq!(parse_template_url(url), want, "{url}");
        }
        assert_eq!(
            parse_template_url("http://localhost:4566/cfn/a%20b.json"),
            Some(("cfn".to_owned(), "a b.json".to_owned()))
        );
        assert_eq!(parse_template_url("ftp://x/y/z"), None);
        assert_eq!(parse_template_url("http://localhost:4566/only-bucket"), None);
    }

    #[test]
    fn params_read_lists_tags_and_parameters() {
        let body = b"Action=CreateStack&Capabilities.member.1=CAPABILITY_IAM&Capabilities.member.2=CAPABILITY_NAMED_IAM&Tags.member.1.Key=team&Tags.member.1.Value=data&Parameters.member.1.ParameterKey=Env&Parameters.member.1.ParameterValue=prod&Parameters.member.2.ParameterKey=Old&Parameters.member.2.UsePreviousValue=true";
        let p = Params::parse(None, body);
        assert_eq!(p.list("Capabilities"), ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]);
        assert_eq!(
            p.tags(),
            Some(vec![Tag {
                key: "team".into(),
                value: "data".into()
            }])
        );
        let params = p.parameters().expect("parameters");
        assert_eq!(params.len(), 2);
        assert_eq!(params[0].value.as_deref(), Some("prod"));
        assert!(params[1].use_previous_value && params[1].value.is_none());
    }
}
