//! The IAM policy language: documents parsed and validated as IAM does, compiled into a
//! [`PolicySet`] that answers "may this principal do this action on this resource?" in a
//! few hash lookups and glob matches.
//!
//! Evaluation follows AWS's single-account logic (spec §8.3): an explicit `Deny` wins,
//! otherwise any matching `Allow` allows, otherwise the request is implicitly denied.
//!
//! - Actions (`service:Name`) match case-insensitively, with `*` and `?` anywhere.
//! - Resources match case-sensitively and ARN-aware: the first five colon-separated parts
//!   part-wise, the resource part as a whole (`*` there spans `/` and `:`). `"*"` matches
//!   everything, including the `*` resource of actions without resource-level permissions.
//! - Policy variables (`${aws:username}`, `${aws:userid}`, `${s3:prefix}`, ... and any other
//!   context key, with `${key, 'default'}` and the `${*}`/`${?}`/`${$}` escapes) are
//!   substituted from the request context in `Resource`/`NotResource` and in string/ARN
//!   condition values of `Version: 2012-10-17` documents. A variable without a (single)
//!   value makes that pattern match nothing. In `2008-10-17` documents `${...}` is literal.
//! - Case-insensitive comparisons (`StringEqualsIgnoreCase`, actions) fold ASCII letters.

mod condition;
mod glob;

use std::collections::HashMap;

pub use condition::ConditionContext;
use condition::{Clause, CondError};
use glob::{Glob, GlobSyntax, ReqResource, ResPat};
use serde_json::{Map, Value};

/// Largest accepted document, in bytes (IAM's quotas are smaller per entity; this is the
/// hard ceiling for any document the emulator will parse).
pub const MAX_POLICY_BYTES: usize = 131_072;

/// What a document is for, which decides whether it may (or must) name principals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocKind {
    /// Attached to a user, group or role: no `Principal`.
    Identity,
    /// A role's `AssumeRolePolicyDocument`: `Principal` required, no `Resource`, only
    /// `sts:` actions.
    Trust,
    /// A resource policy (bucket policy, Lambda function policy, ...): `Principal` required.
    Resource,
}

/// A document IAM would reject. The message is AWS's (`MalformedPolicyDocument`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `MalformedPolicyDocument` with AWS's message.
    #[error("{0}")]
    Malformed(String),
}

impl PolicyError {
    /// The message, as AWS words it.
    pub fn message(&self) -> &str {
        match self {
            PolicyError::Malformed(m) => m,
        }
    }
}

fn malformed(msg: impl Into<String>) -> PolicyError {
    PolicyError::Malformed(msg.into())
}

fn syntax() -> PolicyError {
    malformed("Syntax errors in policy.")
}

fn legacy() -> PolicyError {
    malformed("The policy failed legacy parsing")
}

/// The policy language version a document declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyVersion {
    /// `2012-10-17`: policy variables are substituted.
    V2012_10_17,
    /// `2008-10-17`, or no `Version` element: `${...}` is literal text.
    V2008_10_17,
}

impl PolicyVersion {
    /// The version string.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyVersion::V2012_10_17 => "2012-10-17",
            PolicyVersion::V2008_10_17 => "2008-10-17",
        }
    }
}

/// The outcome of evaluating policies for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// A statement allows the request and none denies it.
    Allow,
    /// A `Deny` statement matches: nothing else can allow the request.
    ExplicitDeny,
    /// No statement allows the request.
    ImplicitDeny,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }

    /// Combines decisions of policies evaluated together (identity + resource policy):
    /// an explicit deny wins, then an allow, else implicit deny.
    pub fn combine(self, other: Decision) -> Decision {
        use Decision::*;
        match (self, other) {
            (ExplicitDeny, _) | (_, ExplicitDeny) => ExplicitDeny,
            (Allow, _) | (_, Allow) => Allow,
            _ => ImplicitDeny,
        }
    }
}

/// One authorization question.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `service:Action`, e.g. `s3:GetObject`.
    pub action: &'a str,
    /// The resource ARN, or `*` for actions without resource-level permissions.
    pub resource: &'a str,
    /// Condition keys of the request (also the source of policy variables).
    pub context: &'a ConditionContext,
}

impl<'a> Request<'a> {
    /// A request.
    pub fn new(action: &'a str, resource: &'a str, context: &'a ConditionContext) -> Self {
        Self {
            action,
            resource,
            context,
        }
    }
}

/// Who is asking, for trust and resource policies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A service principal, e.g. `lambda.amazonaws.com`.
    Service(String),
    /// An IAM principal: an ARN (`arn:aws:iam::123456789012:role/x`,
    /// `arn:aws:sts::123456789012:assumed-role/x/session`, `...:root`) or a 12-digit account id.
    Aws(String),
    /// An unauthenticated caller (matched only by `"*"` / `{"AWS": "*"}`).
    Anonymous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

/// A compiled `Action` entry (lower-cased; compared ASCII-case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ActionPat {
    service: Glob,
    name: Glob,
}

impl ActionPat {
    fn compile(action: &str) -> ActionPat {
        let syntax = GlobSyntax {
            wildcards: true,
            variables: false,
        };
        let (service, name) = action.split_once(':').unwrap_or((action, "*"));
        ActionPat {
            service: Glob::compile(service, syntax, true),
            name: Glob::compile(name, syntax, true),
        }
    }

    fn matches(&self, service: &str, name: &str) -> bool {
        self.service.matches(service, true, None) && self.name.matches(name, true, None)
    }
}

/// `Principal` / `NotPrincipal`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct PrincipalSpec {
    not: bool,
    /// `"Principal": "*"`.
    any: bool,
    aws: Vec<String>,
    service: Vec<String>,
    federated: Vec<String>,
    canonical_user: Vec<String>,
}

/// A compiled statement.
#[derive(Debug, Clone, PartialEq)]
struct Statement {
    effect: Effect,
    /// `true` for `NotAction`.
    not_action: bool,
    actions: Vec<ActionPat>,
    /// `None`: no `Resource`/`NotResource` element (trust policies) — any resource.
    resources: Option<(bool, Vec<ResPat>)>,
    principal: Option<PrincipalSpec>,
    conditions: Vec<Clause>,
}

impl Statement {
    fn action_matches(&self, service: &str, name: &str) -> bool {
        self.actions.iter().any(|a| a.matches(service, name)) != self.not_action
    }

    /// Resource and conditions (the action is checked by the caller).
    fn rest_matches(&self, res: &ReqResource<'_>, ctx: &ConditionContext) -> bool {
        let resource_ok = match &self.resources {
            None => true,
            Some((not, pats)) => pats.iter().any(|p| p.matches(res, Some(ctx))) != *not,
        };
        resource_ok && self.conditions.iter().all(|c| c.eval(ctx))
    }
}

/// A parsed and validated policy document. Keeps the original JSON text.
#[derive(Debug, Clone)]
pub struct PolicyDocument {
    json: String,
    kind: DocKind,
    version: PolicyVersion,
    id: Option<String>,
    statements: Vec<Statement>,
}

impl PartialEq for PolicyDocument {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.json == other.json
    }
}

impl Eq for PolicyDocument {}

/// A string or an array of strings (`None`: some other JSON type).
fn string_list(v: &Value) -> Option<Vec<&str>> {
    match v {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

fn parse_principal(v: &Value, not: bool) -> Result<PrincipalSpec, PolicyError> {
    let mut spec = PrincipalSpec {
        not,
        ..PrincipalSpec::default()
    };
    match v {
        Value::String(s) if s == "*" => spec.any = true,
        Value::Object(map) => {
            for (k, vals) in map {
                let vals: Vec<String> = string_list(vals)
                    .ok_or_else(syntax)?
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                match k.as_str() {
                    "AWS" => spec.aws = vals,
                    "Service" => spec.service = vals,
                    "Federated" => spec.federated = vals,
                    "CanonicalUser" => spec.canonical_user = vals,
                    _ => return Err(syntax()),
                }
            }
        }
        _ => return Err(syntax()),
    }
    Ok(spec)
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn validate_aws_principal(p: &str) -> bool {
    if p == "*" || is_account_id(p) {
        return true;
    }
    let parts: Vec<&str> = p.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "iam" | "sts", "", account, rest]
        if partition.starts_with("aws") && is_account_id(account) && !rest.is_empty())
}

const STATEMENT_KEYS: [&str; 9] = [
    "Sid",
    "Effect",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
    "Principal",
    "NotPrincipal",
];

impl PolicyDocument {
    /// Parses and validates `json` as IAM does, checking in IAM's order and failing with
    /// its `MalformedPolicyDocument` messages:
    ///
    /// - not JSON / wrong shapes / unknown elements / unknown condition operators /
    ///   `Action` with `NotAction` (etc.) → `Syntax errors in policy.`
    /// - a `Version` other than `2012-10-17`/`2008-10-17` → `Syntax errors in policy.`
    ///   (resource policies: `The policy must contain a valid version string`); no
    ///   `Version` means `2008-10-17` (see [`PolicyDocument::require_current_version`])
    /// - `Effect` not exactly `Allow`/`Deny`, unparseable dates in `Date*` conditions →
    ///   `The policy failed legacy parsing`
    /// - identity documents naming a principal → `Policy document should not specify a principal.`;
    ///   trust/resource statements without one → `Missing required field Principal`
    /// - duplicate `Sid`s → `Statement IDs (SID) in a single policy must be unique.`
    /// - no (or empty) `Action`/`NotAction` → `Policy statement must contain actions.`
    /// - no `Resource`/`NotResource` (identity/resource) → `Policy statement must contain resources.`;
    ///   a `Resource` in a trust policy → `Has prohibited field Resource`
    /// - resources not `*` or an ARN → `Resource <r> must be in ARN format or "*".` (and the
    ///   partition / vendor messages)
    /// - actions without a vendor prefix or with two colons, bad vendors → IAM's messages
    /// - trust policies with non-STS actions → `AssumeRole policy may only specify STS AssumeRole actions.`
    /// - bad `AWS` principals → `Invalid principal in policy: "AWS":"<value>"`
    /// - more than [`MAX_POLICY_BYTES`] → `Cannot exceed quota for PolicySize: 131072`
    pub fn parse(json: &str, kind: DocKind) -> Result<PolicyDocument, PolicyError> {
        if json.len() > MAX_POLICY_BYTES {
            return Err(malformed(format!(
                "Cannot exceed quota for PolicySize: {MAX_POLICY_BYTES}"
            )));
        }
        let root: Value = serde_json::from_str(json).map_err(|_| syntax())?;
        let Value::Object(root) = root else {
            return Err(syntax());
        };
        if root
            .keys()
            .any(|k| !matches!(k.as_str(), "Version" | "Id" | "Statement"))
        {
            return Err(syntax());
        }
        let version = match root.get("Version") {
            None => PolicyVersion::V2008_10_17,
            Some(Value::String(v)) if v == "2012-10-17" => PolicyVersion::V2012_10_17,
            Some(Value::String(v)) if v == "2008-10-17" => PolicyVersion::V2008_10_17,
            Some(_) => {
                return Err(match kind {
                    DocKind::Resource => malformed("The policy must contain a valid version string"),
                    _ => syntax(),
                });
            }
        };
        let variables = version == PolicyVersion::V2012_10_17;
        let id = match root.get("Id") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(syntax()),
        };
        let raw: Vec<&Map<String, Value>> = match root.get("Statement") {
            Some(Value::Object(o)) => vec![o],
            Some(Value::Array(items)) => items
                .iter()
                .map(|s| s.as_object().ok_or_else(syntax))
                .collect::<Result<_, _>>()?,
            _ => return Err(syntax()),
        };
        if raw.is_empty() {
            return Err(syntax());
        }

        // 1. Syntax: shapes of every element; conditions compile here.
        let mut conditions = Vec::with_capacity(raw.len());
        let mut legacy_failure = false;
        for st in &raw {
            if st.keys().any(|k| !STATEMENT_KEYS.contains(&k.as_str())) {
                return Err(syntax());
            }
            let both = |a: &str, b: &str| st.contains_key(a) && st.contains_key(b);
            if both("Action", "NotAction") || both("Resource", "NotResource") || both("Principal", "NotPrincipal") {
                return Err(syntax());
            }
            match st.get("Effect").and_then(Value::as_str) {
                Some(e) if e.eq_ignore_ascii_case("allow") || e.eq_ignore_ascii_case("deny") => {
                    legacy_failure |= e != "Allow" && e != "Deny";
                }
                _ => return Err(syntax()),
            }
            for key in ["Action", "NotAction", "Resource", "NotResource"] {
                if st.get(key).is_some_and(|v| string_list(v).is_none()) {
                    return Err(syntax());
                }
            }
            if st.get("Sid").is_some_and(|v| !v.is_string()) {
                return Err(syntax());
            }
            for key in ["Principal", "NotPrincipal"] {
                if let Some(p) = st.get(key) {
                    parse_principal(p, false)?;
                }
            }
            let clauses = match st.get("Condition") {
                None => Vec::new(),
                Some(Value::Object(block)) => match condition::compile_block(block, variables) {
                    Ok(c) => c,
                    Err(CondError::Syntax) => return Err(syntax()),
                    Err(CondError::Legacy) => {
                        legacy_failure = true;
                        Vec::new()
                    }
                },
                Some(_) => return Err(syntax()),
            };
            conditions.push(clauses);
        }

        // 2. Legacy parsing: exact effects, dates, truncated ARNs with `::`.
        let resource_lists = |st: &Map<String, Value>| -> Vec<String> {
            ["Resource", "NotResource"]
                .iter()
                .filter_map(|k| st.get(*k).and_then(string_list))
                .flatten()
                .map(str::to_owned)
                .collect()
        };
        for st in &raw {
            for r in resource_lists(st) {
                if r != "*" && r.matches(':').count() < 5 && r.contains("::") {
                    legacy_failure = true;
                }
            }
        }
        if legacy_failure {
            return Err(legacy());
        }

        // 3. Principals by document kind.
        for st in &raw {
            let names_principal = st.contains_key("Principal") || st.contains_key("NotPrincipal");
            match kind {
                DocKind::Identity if names_principal => {
                    return Err(malformed("Policy document should not specify a principal."));
                }
                DocKind::Trust | DocKind::Resource if !names_principal => {
                    return Err(malformed("Missing required field Principal"));
                }
                _ => {}
            }
        }

        // 4. Unique Sids.
        let mut sids = std::collections::HashSet::new();
        for st in &raw {
            if let Some(sid) = st.get("Sid").and_then(Value::as_str)
                && !sid.is_empty()
                && !sids.insert(sid)
            {
                return Err(malformed("Statement IDs (SID) in a single policy must be unique."));
            }
        }

        // 5. Actions present.
        for st in &raw {
            let actions = st.get("Action").or_else(|| st.get("NotAction")).and_then(string_list);
            if actions.is_none_or(|a| a.is_empty()) {
                return Err(malformed("Policy statement must contain actions."));
            }
        }

        // 6. Resources present (or absent, for trust policies).
        for st in &raw {
            let has = st.contains_key("Resource") || st.contains_key("NotResource");
            match kind {
                DocKind::Trust if has => return Err(malformed("Has prohibited field Resource")),
                DocKind::Trust => {}
                _ => {
                    let resources = st
                        .get("Resource")
                        .or_else(|| st.get("NotResource"))
                        .and_then(string_list);
                    if resources.is_none_or(|r| r.is_empty()) {
                        return Err(malformed("Policy statement must contain resources."));
                    }
                }
            }
        }

        // 7. Resource formats.
        for st in &raw {
            for r in resource_lists(st) {
                check_resource_format(&r)?;
            }
        }

        // 8. Action formats (and STS-only actions in trust policies).
        for st in &raw {
            for key in ["Action", "NotAction"] {
                for a in st.get(key).and_then(string_list).unwrap_or_default() {
                    check_action_format(a)?;
                    if kind == DocKind::Trust && key == "Action" && !a.to_ascii_lowercase().starts_with("sts:") {
                        return Err(malformed("AssumeRole policy may only specify STS AssumeRole actions."));
                    }
                }
            }
        }

        // 9. Principal values.
        for st in &raw {
            for key in ["Principal", "NotPrincipal"] {
                let Some(p) = st.get(key) else { continue };
                let spec = parse_principal(p, false)?;
                if let Some(bad) = spec.aws.iter().find(|a| !validate_aws_principal(a)) {
                    return Err(malformed(format!("Invalid principal in policy: \"AWS\":\"{bad}\"")));
                }
                if let Some(bad) = spec
                    .service
                    .iter()
                    .find(|s| s.is_empty() || !s.contains('.') || s.contains(['*', '?', ' ']))
                {
                    return Err(malformed(format!("Invalid principal in policy: \"SERVICE\":\"{bad}\"")));
                }
            }
        }

        // Compile.
        let mut statements = Vec::with_capacity(raw.len());
        for (st, conditions) in raw.iter().zip(conditions) {
            let effect = match st.get("Effect").and_then(Value::as_str) {
                Some("Deny") => Effect::Deny,
                _ => Effect::Allow,
            };
            let (not_action, actions) = match (st.get("Action"), st.get("NotAction")) {
                (Some(a), _) => (false, a),
                (None, Some(a)) => (true, a),
                (None, None) => return Err(malformed("Policy statement must contain actions.")),
            };
            let actions = string_list(actions)
                .unwrap_or_default()
                .into_iter()
                .map(ActionPat::compile)
                .collect();
            let resources = match (st.get("Resource"), st.get("NotResource")) {
                (Some(r), _) => Some((false, r)),
                (None, Some(r)) => Some((true, r)),
                (None, None) => None,
            }
            .map(|(not, r)| {
                let pats = string_list(r)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| ResPat::compile(p, variables))
                    .collect();
                (not, pats)
            });
            let principal = match (st.get("Principal"), st.get("NotPrincipal")) {
                (Some(p), _) => Some(parse_principal(p, false)?),
                (None, Some(p)) => Some(parse_principal(p, true)?),
                (None, None) => None,
            };
            statements.push(Statement {
                effect,
                not_action,
                actions,
                resources,
                principal,
                conditions,
            });
        }
        Ok(PolicyDocument {
            json: json.to_owned(),
            kind,
            version,
            id,
            statements,
        })
    }

    /// The document as it was submitted.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// What the document was parsed as.
    pub fn kind(&self) -> DocKind {
        self.kind
    }

    /// The declared (or implied) language version.
    pub fn version(&self) -> PolicyVersion {
        self.version
    }

    /// The optional top-level `Id`.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Number of statements.
    pub fn statement_count(&self) -> usize {
        self.statements.len()
    }

    /// IAM's rule for *managed* policies (CreatePolicy / CreatePolicyVersion): they must
    /// declare `Version: 2012-10-17`. Inline and trust policies do not need this.
    pub fn require_current_version(&self) -> Result<(), PolicyError> {
        if self.version == PolicyVersion::V2012_10_17 {
            Ok(())
        } else {
            Err(malformed("Policy document must be version 2012-10-17 or greater."))
        }
    }

    /// Evaluates this document alone for an identity request (principals are ignored).
    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        let (service, name) = split_action(req.action);
        let res = ReqResource::new(req.resource);
        let mut allowed = false;
        for st in &self.statements {
            if st.action_matches(service, name) && st.rest_matches(&res, req.context) {
                match st.effect {
                    Effect::Deny => return Decision::ExplicitDeny,
                    Effect::Allow => allowed = true,
                }
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::ImplicitDeny
        }
    }
}

fn check_resource_format(r: &str) -> Result<(), PolicyError> {
    if r == "*" {
        return Ok(());
    }
    let Some(rest) = r.strip_prefix("arn:") else {
        return Err(malformed(format!("Resource {r} must be in ARN format or \"*\".")));
    };
    let mut parts = rest.splitn(3, ':');
    let partition = parts.next().unwrap_or_default();
    let service = parts.next();
    if !partition.starts_with("aws") || partition.contains(['*', '?']) {
        return Err(malformed(format!(
            "Partition \"{partition}\" is not valid for resource \"{r}\"."
        )));
    }
    match service {
        Some(s) if !s.is_empty() && !s.contains(['*', '?']) => Ok(()),
        _ => Err(malformed(
            "Resource vendor must be fully qualified and cannot contain regexes.",
        )),
    }
}

fn check_action_format(a: &str) -> Result<(), PolicyError> {
    let parts: Vec<&str> = a.split(':').collect();
    match parts.as_slice() {
        ["*"] => Ok(()),
        [_] => Err(malformed(
            "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
        )),
        [vendor, _] => {
            if *vendor != "*"
                && !vendor
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                Err(malformed(format!("Vendor {vendor} is not valid")))
            } else {
                Ok(())
            }
        }
        _ => Err(malformed("Actions/Condition can contain only one colon.")),
    }
}

/// `service:Name` → (`service`, `Name`); without a colon the whole text is the service.
fn split_action(action: &str) -> (&str, &str) {
    action.split_once(':').unwrap_or((action, ""))
}

/// A statement index and its action-name patterns for one service.
type ServiceEntry = (u32, Box<[Glob]>);

/// Statements of one effect, indexed by the (lower-case) service prefix of their actions.
#[derive(Debug, Clone, Default)]
struct Side {
    statements: Vec<Statement>,
    /// service → (statement index, that statement's action-name patterns for the service).
    by_service: HashMap<Box<str>, Vec<ServiceEntry>>,
    /// Statements whose service prefix is a wildcard, and `NotAction` statements.
    any_service: Vec<u32>,
}

impl Side {
    fn add(&mut self, st: &Statement) {
        let Ok(idx) = u32::try_from(self.statements.len()) else {
            return;
        };
        self.statements.push(st.clone());
        let literal_services = !st.not_action && st.actions.iter().all(|a| a.service.is_literal());
        if !literal_services {
            self.any_service.push(idx);
            return;
        }
        let mut per_service: Vec<(Box<str>, Vec<Glob>)> = Vec::new();
        for a in &st.actions {
            let Glob::Exact(service) = &a.service else { continue };
            match per_service.iter_mut().find(|(s, _)| s == service) {
                Some((_, names)) => names.push(a.name.clone()),
                None => per_service.push((service.clone(), vec![a.name.clone()])),
            }
        }
        for (service, mut names) in per_service {
            // A `*` name makes the other names redundant.
            if names.contains(&Glob::Any) {
                names = vec![Glob::Any];
            }
            self.by_service
                .entry(service)
                .or_default()
                .push((idx, names.into_boxed_slice()));
        }
    }

    fn matches(
        &self,
        service_lc: &str,
        service: &str,
        name: &str,
        res: &ReqResource<'_>,
        ctx: &ConditionContext,
    ) -> bool {
        if let Some(entries) = self.by_service.get(service_lc) {
            for (idx, names) in entries {
                if names.iter().any(|g| g.matches(name, true, None))
                    && self
                        .statements
                        .get(*idx as usize)
                        .is_some_and(|st| st.rest_matches(res, ctx))
                {
                    return true;
                }
            }
        }
        self.any_service.iter().any(|idx| {
            self.statements
                .get(*idx as usize)
                .is_some_and(|st| st.action_matches(service, name) && st.rest_matches(res, ctx))
        })
    }
}

/// Identity policies compiled for evaluation: statements split into deny and allow lists,
/// actions lower-cased and indexed by service prefix. Immutable, `Send + Sync`: share it
/// behind an `Arc` and rebuild it when the principal's policies change.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    deny: Side,
    allow: Side,
}

impl PolicySet {
    /// Compiles identity policies (any `Principal` elements are ignored).
    pub fn compile(docs: &[PolicyDocument]) -> PolicySet {
        let mut set = PolicySet::default();
        for st in docs.iter().flat_map(|d| d.statements.iter()) {
            match st.effect {
                Effect::Deny => set.deny.add(st),
                Effect::Allow => set.allow.add(st),
            }
        }
        set
    }

    /// Whether the set has no statements (everything is implicitly denied).
    pub fn is_empty(&self) -> bool {
        self.deny.statements.is_empty() && self.allow.statements.is_empty()
    }

    /// Explicit deny wins; otherwise any allow; otherwise implicit deny.
    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        let (service, name) = split_action(req.action);
        let mut buf = [0u8; 64];
        let lowered;
        let service_lc: &str = match buf.get_mut(..service.len()) {
            Some(dst) if service.is_ascii() => {
                dst.copy_from_slice(service.as_bytes());
                dst.make_ascii_lowercase();
                match std::str::from_utf8(dst) {
                    Ok(s) => s,
                    Err(_) => {
                        lowered = service.to_ascii_lowercase();
                        &lowered
                    }
                }
            }
            _ => {
                lowered = service.to_ascii_lowercase();
                &lowered
            }
        };
        let res = ReqResource::new(req.resource);
        if self.deny.matches(service_lc, service, name, &res, req.context) {
            Decision::ExplicitDeny
        } else if self.allow.matches(service_lc, service, name, &res, req.context) {
            Decision::Allow
        } else {
            Decision::ImplicitDeny
        }
    }
}

/// Account of a principal given as an account id or any ARN.
fn account_of(who: &str) -> Option<&str> {
    if is_account_id(who) {
        return Some(who);
    }
    let parts: Vec<&str> = who.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, _, _, account, _] if is_account_id(account) => Some(account),
        _ => None,
    }
}

/// Does the `AWS` principal entry `pattern` cover the caller `who`?
fn aws_principal_matches(pattern: &str, who: &str) -> bool {
    if pattern == "*" || pattern == who {
        return true;
    }
    // The account (id or `:root`) covers every principal of the account.
    let pattern_account = if is_account_id(pattern) {
        Some(pattern)
    } else {
        pattern
            .strip_suffix(":root")
            .and_then(|p| p.strip_prefix("arn:aws:iam::"))
            .filter(|a| is_account_id(a))
    };
    if let Some(account) = pattern_account {
        return account_of(who) == Some(account);
    }
    // A role covers its sessions: arn:aws:sts::A:assumed-role/R/S vs arn:aws:iam::A:role/[path/]R.
    let session: Vec<&str> = who.splitn(6, ':').collect();
    if let ["arn", _, "sts", "", account, rest] = session.as_slice()
        && let Some(role_session) = rest.strip_prefix("assumed-role/")
        && let Some((role, _session)) = role_session.split_once('/')
    {
        let role_arn: Vec<&str> = pattern.splitn(6, ':').collect();
        if let ["arn", _, "iam", "", p_account, p_rest] = role_arn.as_slice()
            && p_account == account
            && let Some(path_name) = p_rest.strip_prefix("role/")
        {
            return path_name.rsplit('/').next() == Some(role);
        }
    }
    false
}

fn principal_matches(spec: &PrincipalSpec, who: &Principal) -> bool {
    if spec.any || spec.aws.iter().any(|a| a == "*") {
        return true;
    }
    match who {
        Principal::Anonymous => false,
        Principal::Service(s) => spec.service.iter().any(|x| x.eq_ignore_ascii_case(s)),
        Principal::Aws(id) => spec.aws.iter().any(|a| aws_principal_matches(a, id)),
    }
}

/// Trust and resource policies: does `principal` get `action` on `resource`?
/// Statements without a `Principal`/`NotPrincipal` never apply (they cannot exist in trust or
/// resource documents). An explicit deny wins; otherwise a matching allow allows.
pub fn principal_allowed(
    doc: &PolicyDocument,
    principal: &Principal,
    action: &str,
    resource: &str,
    ctx: &ConditionContext,
) -> Decision {
    let (service, name) = split_action(action);
    let res = ReqResource::new(resource);
    let mut allowed = false;
    for st in &doc.statements {
        let Some(spec) = &st.principal else { continue };
        if principal_matches(spec, principal) == spec.not {
            continue;
        }
        if st.action_matches(service, name) && st.rest_matches(&res, ctx) {
            match st.effect {
                Effect::Deny => return Decision::ExplicitDeny,
                Effect::Allow => allowed = true,
            }
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

#[cfg(test)]
mod tests;
