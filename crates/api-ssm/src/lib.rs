//! The SSM Parameter Store adapter: awsJson1.1 requests with `X-Amz-Target:
//! AmazonSSM.<Operation>` become one call on [`kd_ssm::ParameterStore`], and its answer or
//! error becomes the wire reply. It sits between the `edge` (which has authenticated the
//! caller and chosen this service) and the engine. Modeled constraints (lengths, list sizes,
//! page sizes, enums) are checked here and answered with SSM's `ValidationException`; IAM is
//! asked for `ssm:<Operation>` on `arn:aws:ssm:<region>:<account>:parameter/<name>` (every
//! name of GetParameters / DeleteParameters; the path of GetParametersByPath; `*` for
//! DescribeParameters). Timestamps go out as epoch seconds.

use std::sync::Arc;

use bytes::Bytes;
use kd_ssm::{Error, Filter, ParameterStore, ParameterType, ParameterView, PutInput, Scope, parameter_arn};
use kd_wire::json::{CborShape, Encoding, decode, error_response, ok_response};
use kd_wire::{RequestContext, ServiceError};
use serde::Deserialize;
use serde_json::{Value, json};

/// The `X-Amz-Target` prefix of SSM.
pub const TARGET_PREFIX: &str = "AmazonSSM";

const SHAPE: CborShape = CborShape {
    blob_fields: &[],
    timestamp_fields: &[],
};

/// Most names in one GetParameters / DeleteParameters call.
pub const MAX_NAMES: usize = 10;

type Reply = Result<http::Response<Bytes>, ServiceError>;

/// Maps every engine error to its SSM code and status.
pub fn to_service_error(e: Error) -> ServiceError {
    let msg = e.to_string();
    match e {
        Error::Validation(_) => ServiceError::client("ValidationException", msg),
        Error::ParameterNotFound(_) => ServiceError::client("ParameterNotFound", msg),
        Error::ParameterVersionNotFound(_) => ServiceError::client("ParameterVersionNotFound", msg),
        Error::ParameterAlreadyExists(_) => ServiceError::client("ParameterAlreadyExists", msg),
        Error::PatternMismatch(_) => ServiceError::client("ParameterPatternMismatchException", msg),
        Error::HierarchyLevelLimitExceeded(_) => ServiceError::client("HierarchyLevelLimitExceededException", msg),
        Error::InvalidNextToken(_) => ServiceError::client("InvalidNextToken", msg),
        Error::InvalidFilterKey(_) => ServiceError::client("InvalidFilterKey", msg),
        Error::InvalidFilterOption(_) => ServiceError::client("InvalidFilterOption", msg),
        Error::InvalidFilterValue(_) => ServiceError::client("InvalidFilterValue", msg),
        Error::Storage(inner) => {
            tracing::error!(error = %inner, "parameter store storage failure; the request is not acknowledged");
            internal()
        }
        Error::Internal(detail) => {
            tracing::error!(%detail, "internal error in the parameter store");
            internal()
        }
    }
}

fn internal() -> ServiceError {
    ServiceError::with_status(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
        "Internal service error",
    )
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutReq {
    name: Option<String>,
    value: Option<String>,
    r#type: Option<String>,
    #[serde(default)]
    overwrite: Option<bool>,
    description: Option<String>,
    allowed_pattern: Option<String>,
    key_id: Option<String>,
    tier: Option<String>,
    data_type: Option<String>,
    #[serde(default)]
    tags: Option<Vec<Value>>,
    #[serde(default)]
    policies: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NameReq {
    name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    with_decryption: Option<bool>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NamesReq {
    names: Option<Vec<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    with_decryption: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct FilterReq {
    key: Option<String>,
    option: Option<String>,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PathReq {
    path: Option<String>,
    #[serde(default)]
    recursive: Option<bool>,
    #[serde(default)]
    parameter_filters: Vec<FilterReq>,
    #[serde(default)]
    #[allow(dead_code)]
    with_decryption: Option<bool>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeReq {
    #[serde(default)]
    filters: Vec<FilterReq>,
    #[serde(default)]
    parameter_filters: Vec<FilterReq>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

/// The adapter.
#[derive(Debug, Clone)]
pub struct SsmApi {
    store: Arc<ParameterStore>,
}

impl SsmApi {
    /// An adapter over `store`.
    pub fn new(store: Arc<ParameterStore>) -> Self {
        Self { store }
    }

    /// Handles one request whose `X-Amz-Target` named `operation` (JSON body).
    pub async fn handle(&self, ctx: &RequestContext, operation: &str, body: &[u8]) -> http::Response<Bytes> {
        let scope = Scope {
            account: ctx.account_id.clone(),
            region: ctx.region.clone(),
        };
        let call = Call {
            store: &self.store,
            ctx,
            operation,
            scope: &scope,
            body,
        };
        let result = match operation {
            "PutParameter" => call.put().await,
            "GetParameter" => call.get(),
            "GetParameters" => call.get_many(),
            "GetParametersByPath" => call.by_path(),
            "GetParameterHistory" => call.history(),
            "DeleteParameter" => call.delete().await,
            "DeleteParameters" => call.delete_many().await,
            "DescribeParameters" => call.describe(),
            op => Err(ServiceError::client(
                "UnknownOperationException",
                format!("Operation {op} is not supported by kinesis-data's SSM."),
            )),
        };
        result.unwrap_or_else(|e| error_response(Encoding::Json, &e, &ctx.request_id))
    }
}

struct Call<'a> {
    store: &'a ParameterStore,
    ctx: &'a RequestContext,
    operation: &'a str,
    scope: &'a Scope,
    body: &'a [u8],
}

fn check_name(v: &mut kd_wire::validate::Validator, name: &Option<String>, field: &str) {
    v.required(name, field);
    v.length(name.as_deref(), field, 1, 2048);
}

fn check_names(v: &mut kd_wire::validate::Validator, names: &Option<Vec<String>>) {
    v.required(names, "names");
    if let Some(n) = names {
        if n.is_empty() {
            v.fail_no_value("names", "Member must have length greater than or equal to 1");
        } else if n.len() > MAX_NAMES {
            v.fail_no_value(
                "names",
                &format!("Member must have length less than or equal to {MAX_NAMES}"),
            );
        }
        for name in n {
            v.length(Some(name), "names", 1, 2048);
        }
    }
}

fn filters(list: Vec<FilterReq>, v: &mut kd_wire::validate::Validator, field: &str) -> Vec<Filter> {
    list.into_iter()
        .map(|f| {
            v.required(&f.key, &format!("{field}.key"));
            v.length(f.key.as_deref(), &format!("{field}.key"), 1, 132);
            Filter {
                key: f.key.unwrap_or_default(),
                option: f.option,
                values: f.values,
            }
        })
        .collect()
}

fn parameter_json(scope: &Scope, p: &ParameterView) -> Value {
    let v = &p.version;
    let mut out = json!({
        "Name": p.name,
        "Type": v.parameter_type.as_str(),
        "Value": v.value,
        "Version": v.version,
        "LastModifiedDate": secs(v.last_modified_ms),
        "ARN": parameter_arn(scope, &p.name),
        "DataType": v.data_type,
    });
    if let Some(s) = &p.selector {
        out["Selector"] = json!(s);
    }
    out
}

fn metadata_json(scope: &Scope, p: &ParameterView, with_value: bool) -> Value {
    let v = &p.version;
    let mut out = json!({
        "Name": p.name,
        "ARN": parameter_arn(scope, &p.name),
        "Type": v.parameter_type.as_str(),
        "LastModifiedDate": secs(v.last_modified_ms),
        "LastModifiedUser": v.last_modified_user,
        "Version": v.version,
        "Tier": v.tier,
        "Policies": [],
        "DataType": v.data_type,
    });
    for (k, val) in [
        ("KeyId", &v.key_id),
        ("Description", &v.description),
        ("AllowedPattern", &v.allowed_pattern),
    ] {
        if let Some(val) = val {
            out[k] = json!(val);
        }
    }
    if with_value {
        out["Value"] = json!(v.value);
        out["Labels"] = json!([]);
    }
    out
}

impl Call<'_> {
    fn input<T: serde::de::DeserializeOwned>(&self) -> Result<T, ServiceError> {
        decode(Encoding::Json, self.body)
    }

    fn ok(&self, v: &Value) -> Reply {
        Ok(ok_response(Encoding::Json, &SHAPE, v, &self.ctx.request_id))
    }

    fn allow(&self, resource: impl FnOnce() -> String) -> Result<(), ServiceError> {
        self.ctx.allow("ssm", self.operation, resource)
    }

    /// The name part of a `name:selector`.
    fn allow_name(&self, selector: &str) -> Result<(), ServiceError> {
        let name = selector.rsplit_once(':').map_or(selector, |(n, _)| n);
        self.allow(|| parameter_arn(self.scope, name))
    }

    async fn put(&self) -> Reply {
        let r: PutReq = self.input()?;
        let mut v = kd_wire::validate::Validator::default();
        check_name(&mut v, &r.name, "name");
        v.required(&r.value, "value");
        v.length(r.value.as_deref(), "value", 1, usize::MAX);
        v.length(r.description.as_deref(), "description", 0, 1024);
        v.length(r.allowed_pattern.as_deref(), "allowedPattern", 0, 1024);
        v.length(r.key_id.as_deref(), "keyId", 1, 256);
        v.one_of(r.r#type.as_deref(), "type", &["String", "StringList", "SecureString"]);
        v.finish()?;
        if r.tags.as_ref().is_some_and(|t| !t.is_empty()) && r.overwrite == Some(true) {
            return Err(ServiceError::client(
                "ValidationException",
                "Invalid request: tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. To update tags for an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.",
            ));
        }
        if r.policies
            .as_ref()
            .is_some_and(|p| !p.trim().is_empty() && p.trim() != "[]")
        {
            return Err(ServiceError::client(
                "ValidationException",
                "Parameter policies are not supported by kinesis-data.",
            ));
        }
        let name = r.name.unwrap_or_default();
        self.allow(|| parameter_arn(self.scope, &name))?;
        let input = PutInput {
            name,
            value: r.value.unwrap_or_default(),
            parameter_type: r.r#type.as_deref().and_then(ParameterType::parse),
            overwrite: r.overwrite.unwrap_or(false),
            description: r.description,
            allowed_pattern: r.allowed_pattern,
            key_id: r.key_id,
            tier: r.tier,
            data_type: r.data_type,
            user: format!("arn:aws:iam::{}:root", self.scope.account),
        };
        let (version, tier) = self.store.put(self.scope, input).await.map_err(to_service_error)?;
        self.ok(&json!({"Version": version, "Tier": tier}))
    }

    fn get(&self) -> Reply {
        let r: NameReq = self.input()?;
        let mut v = kd_wire::validate::Validator::default();
        check_name(&mut v, &r.name, "name");
        v.finish()?;
        let name = r.name.unwrap_or_default();
        self.allow_name(&name)?;
        let p = self.store.get(self.scope, &name).map_err(to_service_error)?;
        self.ok(&json!({"Parameter": parameter_json(self.scope, &p)}))
    }

    fn get_many(&self) -> Reply {
        let r: NamesReq = self.input()?;
        let mut v = kd_wire::validate::Validator::default();
        check_names(&mut v, &r.names);
        v.finish()?;
        let names = r.names.unwrap_or_default();
        for n in &names {
            self.allow_name(n)?;
        }
        let (found, invalid) = self.store.get_many(self.scope, &names);
        self.ok(&json!({
            "Parameters": found.iter().map(|p| parameter_json(self.scope, p)).collect::<Vec<_>>(),
            "InvalidParameters": invalid,
        }))
    }

    fn by_path(&self) -> Reply {
        let r: PathReq = self.input()?;
        let mut v = kd_wire::validate::Validator::default();
        check_name(&mut v, &r.path, "path");
        v.range(r.max_results, "maxResults", 1, kd_ssm::MAX_PATH_PAGE as i64);
        let fs = filters(r.parameter_filters, &mut v, "parameterFilters");
        v.finish()?;
        let path = r.path.unwrap_or_default();
        self.allow(|| parameter_arn(self.scope, path.trim_end_matches('/')))?;
        let page = self
            .store
            .by_path(
                self.scope,
                &path,
                r.recursive.unwrap_or(false),
                &fs,
                r.next_token.as_deref(),
                r.max_results.map(|m| m as usize),
            )
            .map_err(to_service_error)?;
        let mut out = json!({
            "Parameters": page.items.iter().map(|p| parameter_json(self.scope, p)).collect::<Vec<_>>(),
        });
        if let Some(t) = page.next_token {
            out["NextToken"] = json!(t);
        }
        self.ok(&out)
    }

    fn history(&self) -> Reply {
        let r: NameReq = self.input()?;
        let mut v = kd_wire::validate::Validator::default();
        check_name(&mut v, &r.name, "name");
        v.range(r.max_results, "maxResults", 1, kd_ssm::MAX_HISTORY_PAGE as i64);
        v.finish()?;
        let name = r.name.unwrap_or_default();
        self.allow_name(&name)?;
        let page = self
            .store
            .history(
                self.scope,
                &name,
                r.next_token.as_deref(),
                r.max_results.map(|m| m as usize),
            )
            .map_err(to_service_error)?;
        let mut out = json!({
            "Parameters": page.items.iter().map(|p| metadata_json(self.scope, p, true)).collect::<Vec<_>>(),
        });
        if let Some(t) = page.next_token {
            out["NextToken"] = json!(t);
        }
        self.ok(&out)
    }

    async fn delete(&self) -> Reply {
        let r: NameReq = self.input()?;
        let mut v = kd_wire::validate::Validator::default();
        check_name(&mut v, &r.name, "name");
        v.finish()?;
        let name = r.name.unwrap_or_default();
        self.allow(|| parameter_arn(self.scope, &name))?;
        self.store.delete(self.scope, &name).await.map_err(to_service_error)?;
        self.ok(&json!({}))
    }

    async fn delete_many(&self) -> Reply {
        let r: NamesReq = self.input()?;
        let mut v = kd_wire::validate::Validator::default();
        check_names(&mut v, &r.names);
        v.finish()?;
        let names = r.names.unwrap_or_default();
        for n in &names {
            self.allow(|| parameter_arn(self.scope, n))?;
        }
        let (deleted, invalid) = self
            .store
            .delete_many(self.scope, &names)
            .await
            .map_err(to_service_error)?;
        self.ok(&json!({"DeletedParameters": deleted, "InvalidParameters": invalid}))
    }

    fn describe(&self) -> Reply {
        let r: DescribeReq = self.input()?;
        let mut v = kd_wire::validate::Validator::default();
        v.range(r.max_results, "maxResults", 1, kd_ssm::MAX_DESCRIBE_PAGE as i64);
        // The legacy `Filters` (Name, Type, KeyId) are the new ones with Name as BeginsWith.
        let legacy: Vec<FilterReq> = r
            .filters
            .into_iter()
            .map(|f| FilterReq {
                option: (f.key.as_deref() == Some("Name")).then(|| "BeginsWith".to_owned()),
                ..f
            })
            .collect();
        if !legacy.is_empty() && !r.parameter_filters.is_empty() {
            return Err(ServiceError::client(
                "ValidationException",
                "You can use either Filters or ParameterFilters in a single request.",
            ));
        }
        let mut fs = filters(legacy, &mut v, "filters");
        fs.extend(filters(r.parameter_filters, &mut v, "parameterFilters"));
        v.finish()?;
        self.allow(|| "*".to_owned())?;
        let page = self
            .store
            .describe(
                self.scope,
                &fs,
                r.next_token.as_deref(),
                r.max_results.map(|m| m as usize),
            )
            .map_err(to_service_error)?;
        let mut out = json!({
            "Parameters": page.items.iter().map(|p| metadata_json(self.scope, p, false)).collect::<Vec<_>>(),
        });
        if let Some(t) = page.next_token {
            out["NextToken"] = json!(t);
        }
        self.ok(&out)
    }
}
