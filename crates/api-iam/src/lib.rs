//! The IAM and STS adapter: the AWS query protocol over `kd_iam::store::IamStore`.
//!
//! A request is `Action=<Op>&Version=…&Param=…` (form-encoded POST body, or the URL query of
//! a GET); lists are `Name.member.N`, tags `Tags.member.N.Key` / `.Value`. A reply is
//! `<OpResponse xmlns=…><OpResult>…</OpResult><ResponseMetadata><RequestId>…` in the
//! service's namespace, with lists as `<member>` elements, ISO 8601 timestamps
//! (`2026-11-26T14:00:00Z`) and policy documents URL-encoded as IAM returns them. Errors use
//! the query envelope of `kd_wire::render_error`. IAM is global: entities belong to the
//! caller's account whatever the request's region. Every store call that writes runs on the
//! blocking pool (it commits durably before answering).

mod xml;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use kd_iam::store::{Holder, IamStore, NewPolicy, NewRole, PolicyScope, StoreError, Tag};
use kd_iam::{Principal, PrincipalKind};
use kd_wire::{Protocol, RequestContext, ServiceError, render_error};

use crate::xml::{Xml, iso8601, url_encode};

/// Largest request body the adapter accepts (IAM's own limit is far below it).
pub const MAX_BODY: usize = 1024 * 1024;

/// The IAM XML namespace.
pub const IAM_NS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";
/// The STS XML namespace.
pub const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// Which query service a request was routed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// IAM (`2010-05-08`).
    Iam,
    /// STS (`2011-06-15`).
    Sts,
}

impl Endpoint {
    fn namespace(self) -> &'static str {
        match self {
            Endpoint::Iam => IAM_NS,
            Endpoint::Sts => STS_NS,
        }
    }

    fn version(self) -> &'static str {
        match self {
            Endpoint::Iam => "2010-05-08",
            Endpoint::Sts => "2011-06-15",
        }
    }
}

/// The adapter. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IamApi {
    store: Arc<IamStore>,
    /// Whether AssumeRole checks the role's trust policy (off with `--iam off`).
    enforce_trust: bool,
}

/// The parameters of one request (the last value of a repeated name wins).
struct Params(HashMap<String, String>);

type Reply = Result<Option<String>, ServiceError>;

fn store_error(e: StoreError) -> ServiceError {
    let (status, code) = match &e {
        StoreError::EntityAlreadyExists(_) => (StatusCode::CONFLICT, "EntityAlreadyExists"),
        StoreError::NoSuchEntity(_) => (StatusCode::NOT_FOUND, "NoSuchEntity"),
        StoreError::MalformedPolicyDocument(_) => (StatusCode::BAD_REQUEST, "MalformedPolicyDocument"),
        StoreError::DeleteConflict(_) => (StatusCode::CONFLICT, "DeleteConflict"),
        StoreError::LimitExceeded(_) => (StatusCode::CONFLICT, "LimitExceeded"),
        StoreError::ValidationError(_) => (StatusCode::BAD_REQUEST, "ValidationError"),
        StoreError::InvalidInput(_) => (StatusCode::BAD_REQUEST, "InvalidInput"),
        StoreError::AccessDenied(_) => (StatusCode::FORBIDDEN, "AccessDenied"),
        StoreError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "ServiceFailure"),
    };
    if let StoreError::Storage(cause) = &e {
        tracing::error!(%cause, "IAM storage failed");
        return ServiceError::with_status(
            status,
            code,
            "The request processing has failed because of an unknown error, exception or failure.",
        );
    }
    ServiceError::with_status(status, code, e.to_string())
}

fn validation(msg: impl Into<String>) -> ServiceError {
    ServiceError::client("ValidationError", msg)
}

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

    fn int(&self, name: &str, member: &str) -> Result<Option<i32>, ServiceError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(v) => v.trim().parse::<i32>().map(Some).map_err(|_| {
                validation(format!(
                    "1 validation error detected: Value '{v}' at '{member}' failed to satisfy constraint: Member must be a number"
                ))
            }),
        }
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ServiceError> {
        match self.0.get(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(None),
            Some(v) if v == "true" => Ok(Some(true)),
            Some(v) if v == "false" => Ok(Some(false)),
            Some(v) => Err(validation(format!("Value '{v}' for {name} is not a boolean"))),
        }
    }

    fn tags(&self) -> Vec<Tag> {
        let mut out = Vec::new();
        for n in 1.. {
            let Some(key) = self.opt(&format!("Tags.member.{n}.Key")) else {
                break;
            };
            let value = self.opt(&format!("Tags.member.{n}.Value")).unwrap_or_default();
            out.push(Tag { key, value });
        }
        out
    }

    fn path_prefix(&self) -> String {
        self.opt("PathPrefix").unwrap_or_else(|| "/".to_owned())
    }
}

/// One page of `items` after `Marker` (an index), at most `MaxItems` (default 100).
/// Returns the page, and the marker of the next page if truncated.
fn page<T>(items: Vec<T>, p: &Params) -> Result<(Vec<T>, Option<String>), ServiceError> {
    let max = p.int("MaxItems", "maxItems")?.unwrap_or(100);
    if !(1..=1000).contains(&max) {
        return Err(validation(format!(
            "1 validation error detected: Value '{max}' at 'maxItems' failed to satisfy constraint: Member must have value {}",
            if max < 1 {
                "greater than or equal to 1"
            } else {
                "less than or equal to 1000"
            }
        )));
    }
    let start = match p.opt("Marker") {
        None => 0,
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| validation(format!("Invalid Marker: {m}")))?,
    };
    let max = usize::try_from(max).unwrap_or(100);
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(max).collect();
    let next = start.saturating_add(max);
    Ok((page, (next < total).then(|| next.to_string())))
}

fn paging(x: &mut Xml, next: Option<String>) {
    x.el("IsTruncated", if next.is_some() { "true" } else { "false" });
    if let Some(m) = next {
        x.el("Marker", &m);
    }
}

fn role_xml(x: &mut Xml, r: &kd_iam::store::Role) {
    x.el("Path", &r.path);
    x.el("RoleName", &r.name);
    x.el("RoleId", &r.id);
    x.el("Arn", &r.arn);
    x.el("CreateDate", &iso8601(r.create_date_ms));
    x.el("AssumeRolePolicyDocument", &url_encode(&r.assume_role_policy_document));
    if let Some(d) = &r.description {
        x.el("Description", d);
    }
    x.el("MaxSessionDuration", &r.max_session_duration.to_string());
    tags_xml(x, &r.tags);
}

fn user_xml(x: &mut Xml, u: &kd_iam::store::User) {
    x.el("Path", &u.path);
    x.el("UserName", &u.name);
    x.el("UserId", &u.id);
    x.el("Arn", &u.arn);
    x.el("CreateDate", &iso8601(u.create_date_ms));
    tags_xml(x, &u.tags);
}

fn tags_xml(x: &mut Xml, tags: &[Tag]) {
    if tags.is_empty() {
        return;
    }
    x.open("Tags");
    for t in tags {
        x.open("member");
        x.el("Key", &t.key);
        x.el("Value", &t.value);
        x.close("member");
    }
    x.close("Tags");
}

fn policy_xml(x: &mut Xml, p: &kd_iam::store::PolicyInfo, with_description: bool) {
    x.el("PolicyName", &p.name);
    x.el("PolicyId", &p.id);
    x.el("Arn", &p.arn);
    x.el("Path", &p.path);
    x.el("DefaultVersionId", &p.default_version_id);
    x.el("AttachmentCount", &p.attachment_count.to_string());
    x.el("PermissionsBoundaryUsageCount", "0");
    x.el("IsAttachable", "true");
    if with_description && let Some(d) = &p.description {
        x.el("Description", d);
    }
    x.el("CreateDate", &iso8601(p.create_date_ms));
    x.el("UpdateDate", &iso8601(p.update_date_ms));
    tags_xml(x, &p.tags);
}

fn version_xml(x: &mut Xml, v: &kd_iam::store::PolicyVersionInfo, with_document: bool) {
    if with_document {
        x.el("Document", &url_encode(&v.document));
    }
    x.el("VersionId", &v.version_id);
    x.el("IsDefaultVersion", if v.is_default { "true" } else { "false" });
    x.el("CreateDate", &iso8601(v.create_date_ms));
}

fn names_xml(x: &mut Xml, wrapper: &str, names: &[String]) {
    x.open(wrapper);
    for n in names {
        x.el("member", n);
    }
    x.close(wrapper);
}

fn attached_xml(x: &mut Xml, items: &[(String, String)]) {
    x.open("AttachedPolicies");
    for (name, arn) in items {
        x.open("member");
        x.el("PolicyName", name);
        x.el("PolicyArn", arn);
        x.close("member");
    }
    x.close("AttachedPolicies");
}

fn one(f: impl FnOnce(&mut Xml)) -> Reply {
    let mut x = Xml::default();
    f(&mut x);
    Ok(Some(x.finish()))
}

/// The user name of a call that may omit it (the caller's own user).
fn user_or_caller(p: &Params, principal: &Principal) -> Result<String, ServiceError> {
    if let Some(u) = p.opt("UserName") {
        return Ok(u);
    }
    match &principal.kind {
        PrincipalKind::User { user_name } => Ok(user_name.clone()),
        _ => Err(validation(
            "Must specify userName when calling with non-User credentials",
        )),
    }
}

fn holder_name(holder: Holder) -> (&'static str, &'static str) {
    match holder {
        Holder::User => ("UserName", "userName"),
        Holder::Role => ("RoleName", "roleName"),
    }
}

impl IamApi {
    /// An adapter over `store`.
    pub fn new(store: Arc<IamStore>, enforce_trust: bool) -> Self {
        Self { store, enforce_trust }
    }

    /// The IAM action and resource ARN an IAM/STS request needs, or `None` when none is
    /// needed (GetCallerIdentity).
    fn permission(
        endpoint: Endpoint,
        action: &str,
        p: &Params,
        account: &str,
        caller: &str,
    ) -> Option<(String, String)> {
        match endpoint {
            Endpoint::Sts if action == "GetCallerIdentity" => None,
            Endpoint::Sts => Some((
                format!("sts:{action}"),
                p.opt("RoleArn").unwrap_or_else(|| "*".to_owned()),
            )),
            Endpoint::Iam => {
                let resource = if let Some(arn) = p.opt("PolicyArn") {
                    arn
                } else if let Some(role) = p.opt("RoleName") {
                    format!("arn:aws:iam::{account}:role/{role}")
                } else if let Some(user) = p.opt("UserName") {
                    format!("arn:aws:iam::{account}:user/{user}")
                } else if let (Some(name), "CreatePolicy") = (p.opt("PolicyName"), action) {
                    format!("arn:aws:iam::{account}:policy/{name}")
                } else if matches!(action, "GetUser" | "ListAccessKeys" | "CreateAccessKey") {
                    caller.to_owned() // these act on the caller when no user is named
                } else {
                    "*".to_owned()
                };
                Some((format!("iam:{action}"), resource))
            }
        }
    }

    /// AssumeRole: the role's trust policy must allow the caller (as on AWS, for root keys too
    /// when the trust policy names the account).
    fn check_trust(&self, principal: &Principal, role_arn: &str) -> Result<(), ServiceError> {
        if !self.enforce_trust {
            return Ok(());
        }
        let denied = || {
            ServiceError::with_status(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                format!(
                    "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                    principal.arn
                ),
            )
        };
        let Some((account, name)) = kd_iam::store::parse_role_arn(role_arn) else {
            return Err(denied());
        };
        let role = self.store.get_role(&account, &name).map_err(|_| denied())?;
        let doc =
            kd_iam::policy::PolicyDocument::parse(&role.assume_role_policy_document, kd_iam::policy::DocKind::Trust)
                .map_err(|_| denied())?;
        let ctx = kd_iam::policy::ConditionContext::new()
            .principal_arn(&principal.arn)
            .principal_account(&principal.account_id);
        let who = kd_iam::policy::Principal::Aws(principal.arn.clone());
        match kd_iam::policy::principal_allowed(&doc, &who, "sts:AssumeRole", role_arn, &ctx) {
            kd_iam::policy::Decision::Allow => Ok(()),
            _ => Err(denied()),
        }
    }

    /// The store behind the adapter.
    pub fn store(&self) -> &Arc<IamStore> {
        &self.store
    }

    /// Handles one authenticated query request for `endpoint`; `query` is the URL query
    /// and `body` the (form) body.
    pub async fn handle(
        &self,
        ctx: &RequestContext,
        principal: &Principal,
        endpoint: Endpoint,
        query: Option<&str>,
        body: &[u8],
    ) -> http::Response<Bytes> {
        let params = Params::parse(query, body);
        let Some(action) = params.opt("Action") else {
            let err = ServiceError::client("MissingAction", "Missing Action");
            return render_error(Protocol::Query, &err, &ctx.request_id);
        };
        if ctx.authz.enforced()
            && let Some((iam_action, resource)) =
                Self::permission(endpoint, &action, &params, &ctx.account_id, &principal.arn)
            && let Err(message) = ctx.authz.authorize(&iam_action, &resource)
        {
            let err = ServiceError::with_status(StatusCode::FORBIDDEN, "AccessDenied", message);
            return render_error(Protocol::Query, &err, &ctx.request_id);
        }
        let this = self.clone();
        let (account, principal_c, action_c) = (ctx.account_id.clone(), principal.clone(), action.clone());
        let joined =
            tokio::task::spawn_blocking(move || this.dispatch(endpoint, &action_c, &params, &account, &principal_c))
                .await;
        let result = match joined {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "IAM request task failed");
                Err(ServiceError::with_status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ServiceFailure",
                    "The request processing has failed because of an unknown error, exception or failure.",
                ))
            }
        };
        match result {
            Ok(inner) => xml::response(endpoint.namespace(), &action, inner.as_deref(), &ctx.request_id),
            Err(e) => render_error(Protocol::Query, &e, &ctx.request_id),
        }
    }

    fn dispatch(&self, endpoint: Endpoint, action: &str, p: &Params, account: &str, principal: &Principal) -> Reply {
        match endpoint {
            Endpoint::Sts => self.sts(action, p, principal),
            Endpoint::Iam => self.iam(action, p, account, principal),
        }
        .unwrap_or_else(|| {
            Err(ServiceError::client(
                "InvalidAction",
                format!("Could not find operation {action} for version {}", endpoint.version()),
            ))
        })
    }

    fn sts(&self, action: &str, p: &Params, principal: &Principal) -> Option<Reply> {
        Some(match action {
            "GetCallerIdentity" => one(|x| {
                x.el("Arn", &principal.arn);
                x.el("UserId", &principal.user_id);
                x.el("Account", &principal.account_id);
            }),
            "AssumeRole" => (|| {
                let arn = p.req("RoleArn", "roleArn")?;
                let session_name = p.req("RoleSessionName", "roleSessionName")?;
                let duration = p.int("DurationSeconds", "durationSeconds")?;
                self.check_trust(principal, &arn)?;
                let s = self
                    .store
                    .assume_role(&arn, &session_name, duration)
                    .map_err(store_error)?;
                one(|x| {
                    x.open("Credentials");
                    x.el("AccessKeyId", &s.access_key_id);
                    x.el("SecretAccessKey", &s.secret_access_key);
                    x.el("SessionToken", &s.session_token);
                    x.el("Expiration", &iso8601(s.expiration_ms));
                    x.close("Credentials");
                    x.open("AssumedRoleUser");
                    x.el("AssumedRoleId", &s.assumed_role_id());
                    x.el("Arn", &s.arn);
                    x.close("AssumedRoleUser");
                })
            })(),
            _ => return None,
        })
    }

    fn iam(&self, action: &str, p: &Params, acct: &str, principal: &Principal) -> Option<Reply> {
        let s = &self.store;
        let e = store_error;
        Some(match action {
            // ----- roles -----
            "CreateRole" => (|| {
                let r = s
                    .create_role(
                        acct,
                        NewRole {
                            name: p.req("RoleName", "roleName")?,
                            path: p.opt("Path"),
                            assume_role_policy_document: p
                                .req("AssumeRolePolicyDocument", "assumeRolePolicyDocument")?,
                            description: p.opt("Description"),
                            max_session_duration: p.int("MaxSessionDuration", "maxSessionDuration")?,
                            tags: p.tags(),
                        },
                    )
                    .map_err(e)?;
                one(|x| {
                    x.open("Role");
                    role_xml(x, &r);
                    x.close("Role");
                })
            })(),
            "GetRole" => (|| {
                let r = s.get_role(acct, &p.req("RoleName", "roleName")?).map_err(e)?;
                one(|x| {
                    x.open("Role");
                    role_xml(x, &r);
                    x.close("Role");
                })
            })(),
            "ListRoles" => (|| {
                let (roles, next) = page(s.list_roles(acct, &p.path_prefix()), p)?;
                one(|x| {
                    x.open("Roles");
                    for r in &roles {
                        x.open("member");
                        role_xml(x, r);
                        x.close("member");
                    }
                    x.close("Roles");
                    paging(x, next);
                })
            })(),
            "UpdateRole" => (|| {
                s.update_role(
                    acct,
                    &p.req("RoleName", "roleName")?,
                    p.opt("Description"),
                    p.int("MaxSessionDuration", "maxSessionDuration")?,
                )
                .map_err(e)?;
                one(|_| {})
            })(),
            "UpdateAssumeRolePolicy" => (|| {
                s.update_assume_role_policy(
                    acct,
                    &p.req("RoleName", "roleName")?,
                    p.req("PolicyDocument", "policyDocument")?,
                )
                .map_err(e)?;
                Ok(None)
            })(),
            "DeleteRole" => (|| {
                s.delete_role(acct, &p.req("RoleName", "roleName")?).map_err(e)?;
                Ok(None)
            })(),
            // ----- users -----
            "CreateUser" => (|| {
                let u = s
                    .create_user(acct, &p.req("UserName", "userName")?, p.opt("Path"), p.tags())
                    .map_err(e)?;
                one(|x| {
                    x.open("User");
                    user_xml(x, &u);
                    x.close("User");
                })
            })(),
            "GetUser" => (|| match (p.opt("UserName"), &principal.kind) {
                (None, PrincipalKind::Root) => one(|x| {
                    x.open("User");
                    x.el("UserId", &principal.user_id);
                    x.el("Arn", &principal.arn);
                    x.el("CreateDate", &iso8601(0));
                    x.close("User");
                }),
                _ => {
                    let u = s.get_user(acct, &user_or_caller(p, principal)?).map_err(e)?;
                    one(|x| {
                        x.open("User");
                        user_xml(x, &u);
                        x.close("User");
                    })
                }
            })(),
            "ListUsers" => (|| {
                let (users, next) = page(s.list_users(acct, &p.path_prefix()), p)?;
                one(|x| {
                    x.open("Users");
                    for u in &users {
                        x.open("member");
                        user_xml(x, u);
                        x.close("member");
                    }
                    x.close("Users");
                    paging(x, next);
                })
            })(),
            "DeleteUser" => (|| {
                s.delete_user(acct, &p.req("UserName", "userName")?).map_err(e)?;
                Ok(None)
            })(),
            // ----- access keys -----
            "CreateAccessKey" => (|| {
                let k = s.create_access_key(acct, &user_or_caller(p, principal)?).map_err(e)?;
                one(|x| {
                    x.open("AccessKey");
                    x.el("UserName", &k.user_name);
                    x.el("AccessKeyId", &k.access_key_id);
                    x.el("Status", if k.active { "Active" } else { "Inactive" });
                    x.el("SecretAccessKey", &k.secret_access_key);
                    x.el("CreateDate", &iso8601(k.create_date_ms));
                    x.close("AccessKey");
                })
            })(),
            "ListAccessKeys" => (|| {
                let user = user_or_caller(p, principal)?;
                let (keys, next) = page(s.list_access_keys(acct, &user).map_err(e)?, p)?;
                one(|x| {
                    x.open("AccessKeyMetadata");
                    for k in &keys {
                        x.open("member");
                        x.el("UserName", &k.user_name);
                        x.el("AccessKeyId", &k.access_key_id);
                        x.el("Status", if k.active { "Active" } else { "Inactive" });
                        x.el("CreateDate", &iso8601(k.create_date_ms));
                        x.close("member");
                    }
                    x.close("AccessKeyMetadata");
                    paging(x, next);
                })
            })(),
            "UpdateAccessKey" => (|| {
                let user = user_or_caller(p, principal)?;
                let id = p.req("AccessKeyId", "accessKeyId")?;
                let active = match p.req("Status", "status")?.as_str() {
                    "Active" => true,
                    "Inactive" => false,
                    other => {
                        return Err(validation(format!(
                            "1 validation error detected: Value '{other}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]"
                        )));
                    }
                };
                s.update_access_key(acct, &user, &id, active).map_err(e)?;
                Ok(None)
            })(),
            "DeleteAccessKey" => (|| {
                let user = user_or_caller(p, principal)?;
                s.delete_access_key(acct, &user, &p.req("AccessKeyId", "accessKeyId")?)
                    .map_err(e)?;
                Ok(None)
            })(),
            // ----- inline policies -----
            "PutRolePolicy" => self.put_inline(p, acct, Holder::Role),
            "PutUserPolicy" => self.put_inline(p, acct, Holder::User),
            "GetRolePolicy" => self.get_inline(p, acct, Holder::Role),
            "GetUserPolicy" => self.get_inline(p, acct, Holder::User),
            "ListRolePolicies" => self.list_inline(p, acct, Holder::Role),
            "ListUserPolicies" => self.list_inline(p, acct, Holder::User),
            "DeleteRolePolicy" => self.delete_inline(p, acct, Holder::Role),
            "DeleteUserPolicy" => self.delete_inline(p, acct, Holder::User),
            // ----- attachments -----
            "AttachRolePolicy" => self.attach(p, acct, Holder::Role, true),
            "AttachUserPolicy" => self.attach(p, acct, Holder::User, true),
            "DetachRolePolicy" => self.attach(p, acct, Holder::Role, false),
            "DetachUserPolicy" => self.attach(p, acct, Holder::User, false),
            "ListAttachedRolePolicies" => self.list_attached(p, acct, Holder::Role),
            "ListAttachedUserPolicies" => self.list_attached(p, acct, Holder::User),
            // ----- managed policies -----
            "CreatePolicy" => (|| {
                let info = s
                    .create_policy(
                        acct,
                        NewPolicy {
                            name: p.req("PolicyName", "policyName")?,
                            path: p.opt("Path"),
                            document: p.req("PolicyDocument", "policyDocument")?,
                            description: p.opt("Description"),
                            tags: p.tags(),
                        },
                    )
                    .map_err(e)?;
                one(|x| {
                    x.open("Policy");
                    policy_xml(x, &info, true);
                    x.close("Policy");
                })
            })(),
            "GetPolicy" => (|| {
                let info = s.get_policy(acct, &p.req("PolicyArn", "policyArn")?).map_err(e)?;
                one(|x| {
                    x.open("Policy");
                    policy_xml(x, &info, true);
                    x.close("Policy");
                })
            })(),
            "ListPolicies" => (|| {
                let scope = match p.opt("Scope").as_deref() {
                    None | Some("All") => PolicyScope::All,
                    Some("AWS") => PolicyScope::Aws,
                    Some("Local") => PolicyScope::Local,
                    Some(other) => {
                        return Err(validation(format!(
                            "1 validation error detected: Value '{other}' at 'scope' failed to satisfy constraint: Member must satisfy enum value set: [All, AWS, Local]"
                        )));
                    }
                };
                let only_attached = p.bool("OnlyAttached")?.unwrap_or(false);
                let (policies, next) = page(s.list_policies(acct, scope, only_attached, &p.path_prefix()), p)?;
                one(|x| {
                    x.open("Policies");
                    for pol in &policies {
                        x.open("member");
                        policy_xml(x, pol, false);
                        x.close("member");
                    }
                    x.close("Policies");
                    paging(x, next);
                })
            })(),
            "DeletePolicy" => (|| {
                s.delete_policy(acct, &p.req("PolicyArn", "policyArn")?).map_err(e)?;
                Ok(None)
            })(),
            "GetPolicyVersion" => (|| {
                let v = s
                    .get_policy_version(
                        acct,
                        &p.req("PolicyArn", "policyArn")?,
                        &p.req("VersionId", "versionId")?,
                    )
                    .map_err(e)?;
                one(|x| {
                    x.open("PolicyVersion");
                    version_xml(x, &v, true);
                    x.close("PolicyVersion");
                })
            })(),
            "CreatePolicyVersion" => (|| {
                let v = s
                    .create_policy_version(
                        acct,
                        &p.req("PolicyArn", "policyArn")?,
                        p.req("PolicyDocument", "policyDocument")?,
                        p.bool("SetAsDefault")?.unwrap_or(false),
                    )
                    .map_err(e)?;
                one(|x| {
                    x.open("PolicyVersion");
                    version_xml(x, &v, false);
                    x.close("PolicyVersion");
                })
            })(),
            "ListPolicyVersions" => (|| {
                let (versions, next) = page(
                    s.list_policy_versions(acct, &p.req("PolicyArn", "policyArn")?)
                        .map_err(e)?,
                    p,
                )?;
                one(|x| {
                    x.open("Versions");
                    for v in &versions {
                        x.open("member");
                        version_xml(x, v, false);
                        x.close("member");
                    }
                    x.close("Versions");
                    paging(x, next);
                })
            })(),
            "SetDefaultPolicyVersion" => (|| {
                s.set_default_policy_version(
                    acct,
                    &p.req("PolicyArn", "policyArn")?,
                    &p.req("VersionId", "versionId")?,
                )
                .map_err(e)?;
                Ok(None)
            })(),
            "DeletePolicyVersion" => (|| {
                s.delete_policy_version(
                    acct,
                    &p.req("PolicyArn", "policyArn")?,
                    &p.req("VersionId", "versionId")?,
                )
                .map_err(e)?;
                Ok(None)
            })(),
            _ => return None,
        })
    }

    fn put_inline(&self, p: &Params, acct: &str, holder: Holder) -> Reply {
        let (param, member) = holder_name(holder);
        self.store
            .put_inline_policy(
                acct,
                holder,
                &p.req(param, member)?,
                &p.req("PolicyName", "policyName")?,
                p.req("PolicyDocument", "policyDocument")?,
            )
            .map_err(store_error)?;
        Ok(None)
    }

    fn get_inline(&self, p: &Params, acct: &str, holder: Holder) -> Reply {
        let (param, member) = holder_name(holder);
        let name = p.req(param, member)?;
        let policy = p.req("PolicyName", "policyName")?;
        let doc = self
            .store
            .get_inline_policy(acct, holder, &name, &policy)
            .map_err(store_error)?;
        one(|x| {
            x.el(param, &name);
            x.el("PolicyName", &policy);
            x.el("PolicyDocument", &url_encode(&doc));
        })
    }

    fn list_inline(&self, p: &Params, acct: &str, holder: Holder) -> Reply {
        let (param, member) = holder_name(holder);
        let names = self
            .store
            .list_inline_policies(acct, holder, &p.req(param, member)?)
            .map_err(store_error)?;
        let (names, next) = page(names, p)?;
        one(|x| {
            names_xml(x, "PolicyNames", &names);
            paging(x, next);
        })
    }

    fn delete_inline(&self, p: &Params, acct: &str, holder: Holder) -> Reply {
        let (param, member) = holder_name(holder);
        self.store
            .delete_inline_policy(
                acct,
                holder,
                &p.req(param, member)?,
                &p.req("PolicyName", "policyName")?,
            )
            .map_err(store_error)?;
        Ok(None)
    }

    fn attach(&self, p: &Params, acct: &str, holder: Holder, attach: bool) -> Reply {
        let (param, member) = holder_name(holder);
        let name = p.req(param, member)?;
        let arn = p.req("PolicyArn", "policyArn")?;
        if attach {
            self.store.attach_policy(acct, holder, &name, &arn)
        } else {
            self.store.detach_policy(acct, holder, &name, &arn)
        }
        .map_err(store_error)?;
        Ok(None)
    }

    fn list_attached(&self, p: &Params, acct: &str, holder: Holder) -> Reply {
        let (param, member) = holder_name(holder);
        let items = self
            .store
            .list_attached_policies(acct, holder, &p.req(param, member)?, &p.path_prefix())
            .map_err(store_error)?;
        let (items, next) = page(items, p)?;
        one(|x| {
            attached_xml(x, &items);
            paging(x, next);
        })
    }
}
