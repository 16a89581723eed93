//! CloudFormation's resource providers: the `kd_stacks::Provisioner` port implemented by
//! calling the server's own public APIs through the thin SigV4 client (`client.rs`), exactly
//! as the pipeline applier does. So a stack's resources are made by the same code paths
//! (validation, authorisation, durability, notifications) as API calls, and a resource is
//! complete only when its service says it is usable (a stream or delivery stream ACTIVE, a
//! function Active). Also the `TemplateSource` port of the CloudFormation adapter, over the
//! objects engine.
//!
//! Who acts, as on AWS: a session of the stack's service role (`RoleARN`, which must trust
//! `cloudformation.amazonaws.com`; session name `AWSCloudFormation`), else the credentials
//! of the principal whose CreateStack / UpdateStack / DeleteStack / ExecuteChangeSet runs
//! the operation (looked up by its access key id in the key store), else (engine-internal
//! operations) the server's root keys.
//!
//! Types: `AWS::S3::Bucket`, `AWS::IAM::Role`, `AWS::IAM::Policy`, `AWS::IAM::ManagedPolicy`,
//! `AWS::S3::BucketPolicy`, `AWS::Kinesis::Stream`, `AWS::KinesisFirehose::DeliveryStream`,
//! `AWS::Lambda::Function`, `AWS::Lambda::Permission`, `AWS::Lambda::EventSourceMapping`,
//! `AWS::ApiGateway::{RestApi, Resource, Method, Deployment, Stage}`, `AWS::Glue::{Database,
//! Table}`, `AWS::Athena::WorkGroup`, `AWS::Logs::LogGroup` (`logs.rs`), custom resources
//! (`custom.rs`), and, recorded without a service, `AWS::CDK::Metadata` (none on AWS either),
//! `AWS::ApiGateway::Account` (its CloudWatch role is checked to exist; no API Gateway access
//! logs are written with it) and `AWS::ECR::Repository`, `AWS::KMS::Key`, `AWS::KMS::Alias`
//! (`recorded.rs`: no registry, no KMS); any other type fails with `Resource type X is not supported by
//! kinesis-data`.

mod apigateway;
mod athena;
mod custom;
mod firehose;
mod glue;
mod iam;
mod lambda;
mod logs;
mod recorded;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use kd_stacks::{ProvisionError, Provisioned, Provisioner, ResourceRequest, StackContext};
use serde_json::{Map, Value, json};

use crate::client::{ApiError, Client, Credentials, uri_encode};
use crate::pipeline::apply::deterministic_zip;

const IAM_VERSION: &str = "2010-05-08";
/// How long a resource may take to become usable.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// CloudFormation's service principal (what a stack's service role must trust).
const CLOUDFORMATION_PRINCIPAL: &str = "cloudformation.amazonaws.com";
/// Lifetime of a stack role's session.
const ROLE_SESSION_MS: i64 = 3_600_000;
/// A cached role session is renewed when it has less than this left.
const ROLE_SESSION_MARGIN_MS: i64 = 600_000;

/// The provisioner over the server's own APIs.
pub struct ServiceProvisioner {
    endpoint: String,
    /// The server's root keys: for operations no caller runs.
    credentials: Credentials,
    iam: Arc<kd_iam::Iam>,
    enforce: bool,
    responses: Arc<kd_stacks::custom::CustomResponses>,
    custom_timeout: Duration,
    /// Stack roles' sessions, by role ARN, with their expiry (ms, the IAM store's clock).
    sessions: Mutex<HashMap<String, (Credentials, i64)>>,
}

impl ServiceProvisioner {
    /// Calls the server at `endpoint` as each operation's caller (keys from `iam`), or as a
    /// session of the stack's role; `credentials` (the root keys) for anything else.
    /// `enforce`: whether IAM is enforced (else a role need not exist or trust
    /// CloudFormation). Custom resources' answers arrive through `responses` within
    /// `custom_timeout`.
    pub fn new(
        endpoint: String,
        credentials: Credentials,
        iam: Arc<kd_iam::Iam>,
        enforce: bool,
        responses: Arc<kd_stacks::custom::CustomResponses>,
        custom_timeout: Duration,
    ) -> Self {
        Self {
            endpoint,
            credentials,
            iam,
            enforce,
            responses,
            custom_timeout,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn cannot_assume(role_arn: &str) -> String {
        format!("Role {role_arn} is invalid or cannot be assumed")
    }

    /// A session of the stack's role (cached until near its expiry).
    fn role_session(&self, role_arn: &str) -> Result<Credentials, ProvisionError> {
        let store = self.iam.store().ok_or_else(|| invalid(Self::cannot_assume(role_arn)))?;
        let now = store.now_ms();
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((creds, expiry)) = sessions.get(role_arn)
            && *expiry - now > ROLE_SESSION_MARGIN_MS
        {
            return Ok(creds.clone());
        }
        let ctx = kd_iam::policy::ConditionContext::new();
        if self.enforce && !store.service_may_assume(role_arn, CLOUDFORMATION_PRINCIPAL, &ctx) {
            return Err(invalid(Self::cannot_assume(role_arn)));
        }
        match store.service_session(role_arn, "AWSCloudFormation", ROLE_SESSION_MS) {
            Ok(session) => {
                let creds = Credentials {
                    access_key_id: session.access_key_id,
                    secret_access_key: session.secret_access_key,
                    session_token: Some(session.session_token),
                };
                sessions.insert(role_arn.to_owned(), (creds.clone(), session.expiration_ms));
                Ok(creds)
            }
            Err(_) if !self.enforce => Ok(self.credentials.clone()),
            Err(_) => Err(invalid(Self::cannot_assume(role_arn))),
        }
    }

    /// The credentials an operation on `stack` acts with.
    fn acting(&self, stack: &StackContext) -> Result<Credentials, ProvisionError> {
        if let Some(role) = &stack.role_arn {
            return self.role_session(role);
        }
        let Some(key) = &stack.caller else {
            return Ok(self.credentials.clone());
        };
        let secret = self.iam.secret_for(key).ok_or_else(|| {
            invalid("The security token included in the request is invalid (the caller's access key no longer exists)")
        })?;
        let session_token = self.iam.principal(key).and_then(|p| p.session_token);
        Ok(Credentials {
            access_key_id: key.clone(),
            secret_access_key: secret,
            session_token,
        })
    }

    fn client(&self, stack: &StackContext) -> Result<Client, ProvisionError> {
        Client::new(&self.endpoint, &stack.region, self.acting(stack)?).map_err(failed)
    }
}

/// A service's refusal as a resource's status reason.
pub(crate) fn failed(e: anyhow::Error) -> ProvisionError {
    match e.downcast_ref::<ApiError>() {
        Some(a) => ProvisionError::Failed(format!(
            "{} (Service: {}, Status Code: {}, Error Code: {})",
            a.message, a.request, a.status, a.code
        )),
        None => ProvisionError::Failed(format!("{e:#}")),
    }
}

pub(crate) fn code_of(e: &anyhow::Error) -> Option<&str> {
    e.downcast_ref::<ApiError>().map(|a| a.code.as_str())
}

pub(crate) fn is_missing(e: &anyhow::Error) -> bool {
    matches!(
        code_of(e),
        Some(
            "NoSuchEntity"
                | "ResourceNotFoundException"
                | "NoSuchBucket"
                | "HTTP404"
                | "EntityNotFoundException"
                | "NotFoundException"
        )
    )
}

pub(crate) fn invalid(msg: impl Into<String>) -> ProvisionError {
    ProvisionError::Failed(msg.into())
}

/// A name as CloudFormation generates one: `<stack>-<LogicalId>-<RANDOM>`, cut to `max`
/// characters (lower-cased for buckets).
pub fn generated_name(stack: &str, logical_id: &str, max: usize, lowercase: bool) -> String {
    let random: String = uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .to_ascii_uppercase()
        .chars()
        .take(12)
        .collect();
    let budget = max.saturating_sub(random.len() + 2);
    let logical: String = logical_id.chars().take(budget / 2).collect();
    let stack: String = stack.chars().take(budget - logical.len()).collect();
    let name = format!("{stack}-{logical}-{random}");
    if lowercase { name.to_ascii_lowercase() } else { name }
}

pub(crate) fn s(props: &Value, key: &str) -> Option<String> {
    match props.get(key)? {
        Value::String(v) => Some(v.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(crate) fn list(props: &Value, key: &str) -> Vec<Value> {
    props.get(key).and_then(Value::as_array).cloned().unwrap_or_default()
}

pub(crate) fn strings(props: &Value, key: &str) -> Vec<String> {
    list(props, key)
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// A policy document property (an object, or JSON text) as JSON text.
pub(crate) fn document(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

pub(crate) fn tags(props: &Value) -> Vec<(String, String)> {
    list(props, "Tags")
        .iter()
        .filter_map(|t| Some((s(t, "Key")?, s(t, "Value").unwrap_or_default())))
        .collect()
}

fn xml_escape(s: &str) -> String {
    kd_wire::xml_escape(s)
}

/// Numbers, and booleans, where a template may give them as strings (a `Ref` to a
/// parameter): every member named in `ints` becomes a number and in `bools` a boolean, at
/// any depth.
pub(crate) fn coerce(v: &Value, ints: &[&str], bools: &[&str]) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = match x {
                        Value::String(t) if ints.contains(&k.as_str()) => {
                            t.trim().parse::<i64>().map_or_else(|_| x.clone(), |n| json!(n))
                        }
                        Value::String(t) if bools.contains(&k.as_str()) => match t.as_str() {
                            "true" => json!(true),
                            "false" => json!(false),
                            _ => x.clone(),
                        },
                        other => coerce(other, ints, bools),
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| coerce(x, ints, bools)).collect()),
        other => other.clone(),
    }
}

/// `Ok` for a deletion whose target is already gone.
pub(crate) fn gone(res: anyhow::Result<()>) -> Result<(), ProvisionError> {
    match res {
        Ok(()) => Ok(()),
        Err(e) if is_missing(&e) => Ok(()),
        Err(e) => Err(failed(e)),
    }
}

/// Polls `check` until it gives a value, for at most the readiness timeout.
pub(crate) async fn poll_for<T, F, Fut>(what: &str, mut check: F) -> Result<T, ProvisionError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, ProvisionError>>,
{
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(invalid(format!(
                "{what} did not become usable within {READY_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn wait_for<F, Fut>(what: &str, mut check: F) -> Result<(), ProvisionError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, ProvisionError>>,
{
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(invalid(format!(
                "{what} did not become usable within {READY_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[async_trait::async_trait]
impl Provisioner for ServiceProvisioner {
    fn requires_replacement(&self, resource_type: &str, old: &Value, new: &Value) -> bool {
        let differs = |k: &str| old.get(k) != new.get(k);
        match resource_type {
            "AWS::S3::Bucket" => differs("BucketName"),
            "AWS::IAM::Role" => differs("RoleName") || differs("Path"),
            "AWS::Kinesis::Stream" => differs("Name"),
            "AWS::Lambda::Function" => differs("FunctionName") || differs("PackageType"),
            // Every property of a permission needs a new statement.
            "AWS::Lambda::Permission" => old != new,
            "AWS::Lambda::EventSourceMapping" => lambda::replaces(old, new),
            "AWS::KinesisFirehose::DeliveryStream" => firehose::replaces(old, new),
            "AWS::IAM::ManagedPolicy" => iam::managed_replaces(old, new),
            logs::LOG_GROUP => logs::replaces(old, new),
            "AWS::S3::BucketPolicy" => false,
            t if recorded::is_recorded(t) => recorded::replaces(t, old, new),
            t if t.starts_with("AWS::ApiGateway::") => apigateway::replaces(t, old, new),
            t @ ("AWS::Glue::Database" | "AWS::Glue::Table") => glue::replaces(t, old, new),
            athena::WORKGROUP => athena::replaces(old, new),
            // Changing the service token is refused on AWS; here it makes a new resource.
            t if custom::is_custom(t) => differs("ServiceToken"),
            crate::stacks_ssm::SSM_PARAMETER => crate::stacks_ssm::requires_replacement(old, new),
            _ => false,
        }
    }

    fn check_role(&self, _account: &str, role_arn: &str) -> Result<(), String> {
        if !self.enforce {
            return Ok(());
        }
        let ctx = kd_iam::policy::ConditionContext::new();
        match self.iam.store() {
            Some(store) if store.service_may_assume(role_arn, CLOUDFORMATION_PRINCIPAL, &ctx) => Ok(()),
            _ => Err(Self::cannot_assume(role_arn)),
        }
    }

    async fn create(&self, r: ResourceRequest<'_>) -> Result<Provisioned, ProvisionError> {
        let c = self.client(r.stack)?;
        let p = r.properties;
        match r.resource_type {
            "AWS::S3::Bucket" => {
                let name =
                    s(p, "BucketName").unwrap_or_else(|| generated_name(&r.stack.stack_name, r.logical_id, 63, true));
                let path = format!("/{}", uri_encode(&name, false));
                c.request("PUT", &path, &[], &[], &[]).await.map_err(failed)?;
                let configured = async {
                    bucket_configure(&c, &name, p, None).await?;
                    Ok::<_, ProvisionError>(())
                }
                .await;
                if let Err(e) = configured {
                    // Leave nothing half-made.
                    let _ = c.request("DELETE", &path, &[], &[], &[]).await;
                    return Err(e);
                }
                Ok(bucket_provisioned(&name, &r.stack.region))
            }
            "AWS::IAM::Role" => {
                let name =
                    s(p, "RoleName").unwrap_or_else(|| generated_name(&r.stack.stack_name, r.logical_id, 64, false));
                let trust = document(p.get("AssumeRolePolicyDocument"))
                    .ok_or_else(|| invalid("Property AssumeRolePolicyDocument cannot be empty."))?;
                let mut params = vec![("RoleName", name.clone()), ("AssumeRolePolicyDocument", trust)];
                for (k, v) in [
                    ("Path", s(p, "Path")),
                    ("Description", s(p, "Description")),
                    ("MaxSessionDuration", s(p, "MaxSessionDuration")),
                ] {
                    if let Some(v) = v {
                        params.push((k, v));
                    }
                }
                let mut tag_params = Vec::new();
                for (i, (k, v)) in tags(p).into_iter().enumerate() {
                    tag_params.push((format!("Tags.member.{}.Key", i + 1), k));
                    tag_params.push((format!("Tags.member.{}.Value", i + 1), v));
                }
                let mut all: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
                all.extend(tag_params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                let made = c.query("iam", IAM_VERSION, "CreateRole", &all).await.map_err(failed)?;
                let role = made.find("Role");
                let arn = role.and_then(|x| x.text_of("Arn")).unwrap_or_default().to_owned();
                let id = role.and_then(|x| x.text_of("RoleId")).unwrap_or_default().to_owned();
                if let Err(e) = iam::role_policies(&c, &name, p, &Value::Null).await {
                    let _ = iam::delete_role(&c, &name).await;
                    return Err(e);
                }
                Ok(Provisioned::named(
                    name,
                    [("Arn".to_owned(), json!(arn)), ("RoleId".to_owned(), json!(id))],
                ))
            }
            "AWS::IAM::Policy" => {
                iam::check_policy_targets(p)?;
                let physical = generated_name(&r.stack.stack_name, r.logical_id, 128, false);
                iam::put_policy(&c, p, &Value::Null).await?;
                Ok(Provisioned::named(physical, []))
            }
            "AWS::Kinesis::Stream" => {
                let name =
                    s(p, "Name").unwrap_or_else(|| generated_name(&r.stack.stack_name, r.logical_id, 128, false));
                let mode = p
                    .get("StreamModeDetails")
                    .and_then(|m| s(m, "StreamMode"))
                    .unwrap_or_else(|| "PROVISIONED".to_owned());
                let mut body = json!({"StreamName": name, "StreamModeDetails": {"StreamMode": mode}});
                if mode == "PROVISIONED" {
                    let shards = p.get("ShardCount").and_then(number).unwrap_or(1);
                    body["ShardCount"] = json!(shards);
                }
                kinesis(&c, "CreateStream", body).await?;
                wait_stream(&c, &name).await?;
                stream_configure(&c, &name, p, &Value::Null).await?;
                let arn = format!(
                    "arn:{}:kinesis:{}:{}:stream/{name}",
                    r.stack.partition(),
                    r.stack.region,
                    r.stack.account_id
                );
                Ok(Provisioned::named(name, [("Arn".to_owned(), json!(arn))]))
            }
            "AWS::Lambda::Function" => {
                let name = s(p, "FunctionName")
                    .unwrap_or_else(|| generated_name(&r.stack.stack_name, r.logical_id, 64, false));
                let mut body = function_config(p);
                body["FunctionName"] = json!(name);
                body["Code"] = function_code(p)?;
                let t: Map<String, Value> = tags(p).into_iter().map(|(k, v)| (k, json!(v))).collect();
                if !t.is_empty() {
                    body["Tags"] = Value::Object(t);
                }
                let made = c
                    .rest_json("lambda", "POST", "/2015-03-31/functions", &[], Some(&body))
                    .await
                    .map_err(failed)?;
                wait_function(&c, &name).await?;
                let arn = made["FunctionArn"].as_str().unwrap_or_default().to_owned();
                Ok(Provisioned::named(name, [("Arn".to_owned(), json!(arn))]))
            }
            "AWS::Lambda::Permission" => {
                let function = s(p, "FunctionName").ok_or_else(|| invalid("Property FunctionName cannot be empty."))?;
                let sid = generated_name(&r.stack.stack_name, r.logical_id, 100, false);
                let mut body = json!({"StatementId": sid});
                for k in [
                    "Action",
                    "Principal",
                    "SourceArn",
                    "SourceAccount",
                    "EventSourceToken",
                    "PrincipalOrgID",
                ] {
                    if let Some(v) = s(p, k) {
                        body[k] = json!(v);
                    }
                }
                let path = format!("/2015-03-31/functions/{}/policy", uri_encode(&function, false));
                c.rest_json("lambda", "POST", &path, &[], Some(&body))
                    .await
                    .map_err(failed)?;
                Ok(Provisioned::named(sid, []))
            }
            "AWS::CDK::Metadata" => Ok(Provisioned::named(
                generated_name(&r.stack.stack_name, r.logical_id, 128, false),
                [],
            )),
            t if recorded::is_recorded(t) => recorded::provision(&r, None),
            crate::stacks_ssm::SSM_PARAMETER => crate::stacks_ssm::create(&c, &r).await,
            "AWS::IAM::ManagedPolicy" => iam::create_managed(&c, &r).await,
            "AWS::KinesisFirehose::DeliveryStream" => firehose::create(&c, &r).await,
            "AWS::Lambda::EventSourceMapping" => lambda::create(&c, &r).await,
            "AWS::ApiGateway::RestApi" => apigateway::create_rest_api(&c, &r).await,
            "AWS::ApiGateway::Resource" => apigateway::create_resource(&c, &r).await,
            "AWS::ApiGateway::Method" => apigateway::create_method(&c, &r).await,
            "AWS::ApiGateway::Deployment" => apigateway::create_deployment(&c, &r).await,
            "AWS::ApiGateway::Stage" => apigateway::create_stage(&c, &r).await,
            "AWS::Glue::Database" => glue::create_database(&c, &r).await,
            "AWS::Glue::Table" => glue::create_table(&c, &r).await,
            athena::WORKGROUP => athena::create(&c, &r).await,
            logs::LOG_GROUP => logs::create(&c, &r).await,
            "AWS::S3::BucketPolicy" => {
                bucket_policy_put(&c, p, None).await?;
                Ok(Provisioned::named(
                    generated_name(&r.stack.stack_name, r.logical_id, 128, false),
                    [],
                ))
            }
            "AWS::ApiGateway::Account" => {
                apigateway::check_account(&c, p).await?;
                Ok(Provisioned::named(
                    generated_name(&r.stack.stack_name, r.logical_id, 128, false),
                    [],
                ))
            }
            t if custom::is_custom(t) => {
                let fallback = generated_name(&r.stack.stack_name, r.logical_id, 128, false);
                let call = custom::Call {
                    request_type: "Create",
                    physical_id: None,
                    old_properties: None,
                };
                let answer = self.custom(&c, &r, call).await?;
                Ok(custom::provisioned(answer, &fallback))
            }
            other => Err(ProvisionError::Unsupported(other.to_owned())),
        }
    }

    async fn update(&self, r: ResourceRequest<'_>, physical: &str, old: &Value) -> Result<Provisioned, ProvisionError> {
        let c = self.client(r.stack)?;
        let p = r.properties;
        match r.resource_type {
            "AWS::S3::Bucket" => {
                bucket_configure(&c, physical, p, Some(old)).await?;
                Ok(bucket_provisioned(physical, &r.stack.region))
            }
            "AWS::IAM::Role" => {
                let trust = document(p.get("AssumeRolePolicyDocument"))
                    .ok_or_else(|| invalid("Property AssumeRolePolicyDocument cannot be empty."))?;
                if p.get("AssumeRolePolicyDocument") != old.get("AssumeRolePolicyDocument") {
                    c.query(
                        "iam",
                        IAM_VERSION,
                        "UpdateAssumeRolePolicy",
                        &[("RoleName", physical), ("PolicyDocument", &trust)],
                    )
                    .await
                    .map_err(failed)?;
                }
                iam::role_policies(&c, physical, p, old).await?;
                let got = c
                    .query("iam", IAM_VERSION, "GetRole", &[("RoleName", physical)])
                    .await
                    .map_err(failed)?;
                let role = got.find("Role");
                let arn = role.and_then(|x| x.text_of("Arn")).unwrap_or_default().to_owned();
                let id = role.and_then(|x| x.text_of("RoleId")).unwrap_or_default().to_owned();
                Ok(Provisioned::named(
                    physical,
                    [("Arn".to_owned(), json!(arn)), ("RoleId".to_owned(), json!(id))],
                ))
            }
            "AWS::IAM::Policy" => {
                iam::check_policy_targets(p)?;
                iam::put_policy(&c, p, old).await?;
                Ok(Provisioned::named(physical, []))
            }
            "AWS::Kinesis::Stream" => {
                stream_configure(&c, physical, p, old).await?;
                let arn = format!(
                    "arn:{}:kinesis:{}:{}:stream/{physical}",
                    r.stack.partition(),
                    r.stack.region,
                    r.stack.account_id
                );
                Ok(Provisioned::named(physical, [("Arn".to_owned(), json!(arn))]))
            }
            "AWS::Lambda::Function" => {
                let path = format!("/2015-03-31/functions/{}", uri_encode(physical, false));
                if p.get("Code") != old.get("Code") {
                    let code = function_code(p)?;
                    c.rest_json("lambda", "PUT", &format!("{path}/code"), &[], Some(&code))
                        .await
                        .map_err(failed)?;
                    wait_function(&c, physical).await?;
                }
                let config = function_config(p);
                if config != function_config(old) {
                    c.rest_json("lambda", "PUT", &format!("{path}/configuration"), &[], Some(&config))
                        .await
                        .map_err(failed)?;
                    wait_function(&c, physical).await?;
                }
                let got = c.rest_json("lambda", "GET", &path, &[], None).await.map_err(failed)?;
                let arn = got["Configuration"]["FunctionArn"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                Ok(Provisioned::named(physical, [("Arn".to_owned(), json!(arn))]))
            }
            "AWS::CDK::Metadata" => Ok(Provisioned::named(physical, [])),
            t if recorded::is_recorded(t) => recorded::provision(&r, Some(physical)),
            crate::stacks_ssm::SSM_PARAMETER => crate::stacks_ssm::update(&c, &r, physical).await,
            "AWS::IAM::ManagedPolicy" => iam::update_managed(&c, physical, p, old).await,
            "AWS::KinesisFirehose::DeliveryStream" => firehose::update(&c, physical, p, old).await,
            "AWS::Lambda::EventSourceMapping" => lambda::update(&c, &r, physical).await,
            "AWS::ApiGateway::RestApi" => apigateway::update_rest_api(&c, physical, p, old).await,
            // Every property of a resource needs a new one.
            "AWS::ApiGateway::Resource" => Ok(Provisioned::named(
                physical,
                [("ResourceId".to_owned(), json!(physical))],
            )),
            "AWS::ApiGateway::Method" => apigateway::update_method(&c, physical, p).await,
            "AWS::ApiGateway::Deployment" => apigateway::update_deployment(&c, physical, p).await,
            "AWS::ApiGateway::Stage" => apigateway::update_stage(&c, physical, p, old).await,
            "AWS::Glue::Database" => glue::update_database(&c, &r, physical).await,
            "AWS::Glue::Table" => glue::update_table(&c, &r, physical).await,
            athena::WORKGROUP => athena::update(&c, &r, physical, old).await,
            logs::LOG_GROUP => logs::update(&c, &r, physical, old).await,
            "AWS::S3::BucketPolicy" => {
                bucket_policy_put(&c, p, Some(old)).await?;
                Ok(Provisioned::named(physical, []))
            }
            "AWS::ApiGateway::Account" => {
                apigateway::check_account(&c, p).await?;
                Ok(Provisioned::named(physical, []))
            }
            t if custom::is_custom(t) => {
                let call = custom::Call {
                    request_type: "Update",
                    physical_id: Some(physical),
                    old_properties: Some(old),
                };
                let answer = self.custom(&c, &r, call).await?;
                let made = custom::provisioned(answer, physical);
                if made.physical_id != physical {
                    // A new physical id means the handler replaced the resource: the old one
                    // gets its Delete (AWS sends it in the cleanup phase).
                    let call = custom::Call {
                        request_type: "Delete",
                        physical_id: Some(physical),
                        old_properties: None,
                    };
                    let old_request = ResourceRequest { properties: old, ..r };
                    self.custom(&c, &old_request, call).await?;
                }
                Ok(made)
            }
            // Every supported type is updated above (a permission is always replaced): what is
            // left are placeholders of unsupported types (`allow_unsupported`).
            other => Err(ProvisionError::Unsupported(other.to_owned())),
        }
    }

    async fn delete(&self, r: ResourceRequest<'_>, physical: &str) -> Result<(), ProvisionError> {
        let c = self.client(r.stack)?;
        let p = r.properties;
        match r.resource_type {
            "AWS::S3::Bucket" => {
                let path = format!("/{}", uri_encode(physical, false));
                gone(c.request("DELETE", &path, &[], &[], &[]).await.map(drop))
            }
            "AWS::IAM::Role" => gone(iam::delete_role(&c, physical).await),
            "AWS::IAM::Policy" => iam::delete_policy(&c, p).await,
            "AWS::IAM::ManagedPolicy" => iam::delete_managed(&c, physical, p).await,
            "AWS::KinesisFirehose::DeliveryStream" => firehose::delete(&c, physical).await,
            "AWS::Lambda::EventSourceMapping" => lambda::delete(&c, physical).await,
            "AWS::ApiGateway::RestApi" => apigateway::delete_rest_api(&c, physical).await,
            "AWS::ApiGateway::Resource" => apigateway::delete_resource(&c, p, physical).await,
            "AWS::ApiGateway::Method" => apigateway::delete_method(&c, p).await,
            "AWS::ApiGateway::Deployment" => apigateway::delete_deployment(&c, physical, p).await,
            "AWS::ApiGateway::Stage" => apigateway::delete_stage(&c, physical, p).await,
            "AWS::Glue::Database" => glue::delete_database(&c, physical).await,
            "AWS::Glue::Table" => glue::delete_table(&c, p, physical).await,
            athena::WORKGROUP => athena::delete(&c, p, physical).await,
            logs::LOG_GROUP => logs::delete(&c, physical).await,
            "AWS::ApiGateway::Account" => Ok(()),
            t if recorded::is_recorded(t) => Ok(()),
            "AWS::S3::BucketPolicy" => {
                let bucket = s(p, "Bucket").unwrap_or_default();
                let path = format!("/{}", uri_encode(&bucket, false));
                gone(c.request("DELETE", &path, &[("policy", "")], &[], &[]).await.map(drop))
            }
            t if custom::is_custom(t) => {
                let call = custom::Call {
                    request_type: "Delete",
                    physical_id: Some(physical),
                    old_properties: None,
                };
                self.custom(&c, &r, call).await.map(drop)
            }
            "AWS::Kinesis::Stream" => gone(
                c.json(
                    "kinesis",
                    "Kinesis_20131202.DeleteStream",
                    &json!({"StreamName": physical, "EnforceConsumerDeletion": true}),
                )
                .await
                .map(drop),
            ),
            "AWS::Lambda::Function" => {
                let path = format!("/2015-03-31/functions/{}", uri_encode(physical, false));
                gone(c.rest_json("lambda", "DELETE", &path, &[], None).await.map(drop))
            }
            "AWS::Lambda::Permission" => {
                let function = s(p, "FunctionName").unwrap_or_default();
                let path = format!(
                    "/2015-03-31/functions/{}/policy/{}",
                    uri_encode(&function, false),
                    uri_encode(physical, false)
                );
                gone(c.rest_json("lambda", "DELETE", &path, &[], None).await.map(drop))
            }
            "AWS::CDK::Metadata" => Ok(()),
            crate::stacks_ssm::SSM_PARAMETER => crate::stacks_ssm::delete(&c, physical).await,
            // Nothing of an unsupported type was ever made.
            _ => Ok(()),
        }
    }
}

/// `AWS::S3::BucketPolicy`: PutBucketPolicy with the document on `Bucket` (a new bucket
/// moves the policy: the old bucket's is deleted).
async fn bucket_policy_put(c: &Client, p: &Value, old: Option<&Value>) -> Result<(), ProvisionError> {
    let bucket = s(p, "Bucket").ok_or_else(|| invalid("Property Bucket cannot be empty."))?;
    let policy =
        document(p.get("PolicyDocument")).ok_or_else(|| invalid("Property PolicyDocument cannot be empty."))?;
    let path = format!("/{}", uri_encode(&bucket, false));
    c.request("PUT", &path, &[("policy", "")], &[], policy.as_bytes())
        .await
        .map_err(failed)?;
    if let Some(previous) = old.and_then(|o| s(o, "Bucket")).filter(|b| *b != bucket) {
        let path = format!("/{}", uri_encode(&previous, false));
        gone(c.request("DELETE", &path, &[("policy", "")], &[], &[]).await.map(drop))?;
    }
    Ok(())
}

pub(crate) fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

// ---------------------------------------------------------------------- S3

fn bucket_provisioned(name: &str, region: &str) -> Provisioned {
    Provisioned::named(
        name,
        [
            ("Arn".to_owned(), json!(format!("arn:aws:s3:::{name}"))),
            ("DomainName".to_owned(), json!(format!("{name}.s3.amazonaws.com"))),
            (
                "RegionalDomainName".to_owned(),
                json!(format!("{name}.s3.{region}.amazonaws.com")),
            ),
            (
                "DualStackDomainName".to_owned(),
                json!(format!("{name}.s3.dualstack.{region}.amazonaws.com")),
            ),
            (
                "WebsiteURL".to_owned(),
                json!(format!("http://{name}.s3-website-{region}.amazonaws.com")),
            ),
        ],
    )
}

/// Versioning, tags and Lambda notifications of a bucket (`old`: what it had).
async fn bucket_configure(c: &Client, name: &str, p: &Value, old: Option<&Value>) -> Result<(), ProvisionError> {
    let path = format!("/{}", uri_encode(name, false));
    let changed = |k: &str| old.is_none_or(|o| o.get(k) != p.get(k));
    if let Some(n) = p.get("NotificationConfiguration") {
        for unsupported in ["QueueConfigurations", "TopicConfigurations", "EventBridgeConfiguration"] {
            if n.get(unsupported).is_some() {
                return Err(invalid(format!(
                    "NotificationConfiguration.{unsupported} is not supported by kinesis-data"
                )));
            }
        }
    }
    if changed("VersioningConfiguration")
        && let Some(status) = p.get("VersioningConfiguration").and_then(|v| s(v, "Status"))
    {
        let body = format!(
            r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>{}</Status></VersioningConfiguration>"#,
            xml_escape(&status)
        );
        c.request(
            "PUT",
            &path,
            &[("versioning", "")],
            &[("content-type", "application/xml")],
            body.as_bytes(),
        )
        .await
        .map_err(failed)?;
    }
    if changed("Tags") {
        let t = tags(p);
        if t.is_empty() {
            if old.is_some() {
                c.request("DELETE", &path, &[("tagging", "")], &[], &[])
                    .await
                    .map_err(failed)?;
            }
        } else {
            let mut body = String::from("<Tagging><TagSet>");
            for (k, v) in t {
                body.push_str(&format!(
                    "<Tag><Key>{}</Key><Value>{}</Value></Tag>",
                    xml_escape(&k),
                    xml_escape(&v)
                ));
            }
            body.push_str("</TagSet></Tagging>");
            c.request(
                "PUT",
                &path,
                &[("tagging", "")],
                &[("content-type", "application/xml")],
                body.as_bytes(),
            )
            .await
            .map_err(failed)?;
        }
    }
    if changed("NotificationConfiguration") {
        let mut xml = String::from(r#"<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#);
        let configs = p
            .get("NotificationConfiguration")
            .map(|n| list(n, "LambdaConfigurations"))
            .unwrap_or_default();
        for (i, l) in configs.iter().enumerate() {
            let function = s(l, "Function").ok_or_else(|| invalid("LambdaConfigurations need a Function"))?;
            let event = s(l, "Event").ok_or_else(|| invalid("LambdaConfigurations need an Event"))?;
            xml.push_str(&format!(
                "<CloudFunctionConfiguration><Id>cfn-{i}</Id><CloudFunction>{}</CloudFunction><Event>{}</Event>",
                xml_escape(&function),
                xml_escape(&event)
            ));
            let rules = l
                .get("Filter")
                .and_then(|f| f.get("S3Key"))
                .map(|k| list(k, "Rules"))
                .unwrap_or_default();
            if !rules.is_empty() {
                xml.push_str("<Filter><S3Key>");
                for rule in rules {
                    xml.push_str(&format!(
                        "<FilterRule><Name>{}</Name><Value>{}</Value></FilterRule>",
                        xml_escape(&s(&rule, "Name").unwrap_or_default()),
                        xml_escape(&s(&rule, "Value").unwrap_or_default())
                    ));
                }
                xml.push_str("</S3Key></Filter>");
            }
            xml.push_str("</CloudFunctionConfiguration>");
        }
        xml.push_str("</NotificationConfiguration>");
        if !configs.is_empty() || old.is_some() {
            c.request(
                "PUT",
                &path,
                &[("notification", "")],
                &[("content-type", "application/xml")],
                xml.as_bytes(),
            )
            .await
            .map_err(failed)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------- Kinesis

async fn kinesis(c: &Client, op: &str, body: Value) -> Result<Value, ProvisionError> {
    c.json("kinesis", &format!("Kinesis_20131202.{op}"), &body)
        .await
        .map_err(failed)
}

async fn wait_stream(c: &Client, name: &str) -> Result<(), ProvisionError> {
    wait_for(&format!("stream {name}"), || async {
        let v = kinesis(c, "DescribeStreamSummary", json!({"StreamName": name})).await?;
        Ok(v["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE")
    })
    .await
}

/// Shard count, retention and tags of a stream, from `old` to `p`.
async fn stream_configure(c: &Client, name: &str, p: &Value, old: &Value) -> Result<(), ProvisionError> {
    let summary = kinesis(c, "DescribeStreamSummary", json!({"StreamName": name})).await?;
    let summary = &summary["StreamDescriptionSummary"];
    let mode = p
        .get("StreamModeDetails")
        .and_then(|m| s(m, "StreamMode"))
        .unwrap_or_else(|| "PROVISIONED".to_owned());
    let mode_now = summary["StreamModeDetails"]["StreamMode"]
        .as_str()
        .unwrap_or("PROVISIONED")
        .to_owned();
    if mode != mode_now {
        let arn = summary["StreamARN"].as_str().unwrap_or_default();
        kinesis(
            c,
            "UpdateStreamMode",
            json!({"StreamARN": arn, "StreamModeDetails": {"StreamMode": mode}}),
        )
        .await?;
        wait_stream(c, name).await?;
    }
    if mode == "PROVISIONED" {
        let want = p.get("ShardCount").and_then(number).unwrap_or(1);
        let have = summary["OpenShardCount"].as_u64().unwrap_or(want);
        if want != have {
            kinesis(
                c,
                "UpdateShardCount",
                json!({"StreamName": name, "TargetShardCount": want, "ScalingType": "UNIFORM_SCALING"}),
            )
            .await?;
            wait_stream(c, name).await?;
        }
    }
    let want = p.get("RetentionPeriodHours").and_then(number).unwrap_or(24);
    let have = summary["RetentionPeriodHours"].as_u64().unwrap_or(24);
    if want != have {
        let op = if want > have {
            "IncreaseStreamRetentionPeriod"
        } else {
            "DecreaseStreamRetentionPeriod"
        };
        kinesis(c, op, json!({"StreamName": name, "RetentionPeriodHours": want})).await?;
        wait_stream(c, name).await?;
    }
    if p.get("Tags") != old.get("Tags") {
        let t: Map<String, Value> = tags(p).into_iter().map(|(k, v)| (k, json!(v))).collect();
        if !t.is_empty() {
            kinesis(c, "AddTagsToStream", json!({"StreamName": name, "Tags": t})).await?;
        }
        let keep: BTreeSet<String> = t.keys().cloned().collect();
        let gone: Vec<String> = tags(old)
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| !keep.contains(k))
            .collect();
        if !gone.is_empty() {
            kinesis(c, "RemoveTagsFromStream", json!({"StreamName": name, "TagKeys": gone})).await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------- Lambda

/// The configuration part of CreateFunction / UpdateFunctionConfiguration.
fn function_config(p: &Value) -> Value {
    let mut body = json!({});
    for k in [
        "Runtime",
        "Role",
        "Handler",
        "Description",
        "Timeout",
        "MemorySize",
        "Environment",
        "Architectures",
        "Layers",
        "EphemeralStorage",
        "LoggingConfig",
    ] {
        if let Some(v) = p.get(k) {
            body[k] = match (k, v) {
                ("Timeout" | "MemorySize", v) => number(v).map_or(v.clone(), |n| json!(n)),
                _ => v.clone(),
            };
        }
    }
    body
}

/// `Code`: inline `ZipFile` source zipped as `index.py` / `index.js` (as CloudFormation
/// does), or the `S3Bucket`/`S3Key` object.
fn function_code(p: &Value) -> Result<Value, ProvisionError> {
    let code = p.get("Code").ok_or_else(|| invalid("Property Code cannot be empty."))?;
    if let Some(source) = s(code, "ZipFile") {
        let runtime = s(p, "Runtime").unwrap_or_default();
        let file = if runtime.starts_with("python") {
            "index.py"
        } else if runtime.starts_with("nodejs") {
            "index.js"
        } else {
            return Err(invalid(format!(
                "ZipFile can only be used when Runtime is set to either of nodejs or python (not {runtime})"
            )));
        };
        let zip = deterministic_zip(&[(file.to_owned(), source.into_bytes(), 0o644)]).map_err(failed)?;
        return Ok(json!({"ZipFile": base64::engine::general_purpose::STANDARD.encode(zip)}));
    }
    if code.get("ImageUri").is_some() {
        return Err(invalid(
            "Container image functions (Code.ImageUri) are not supported by kinesis-data",
        ));
    }
    let mut out = json!({});
    for k in ["S3Bucket", "S3Key", "S3ObjectVersion"] {
        if let Some(v) = s(code, k) {
            out[k] = json!(v);
        }
    }
    if out.get("S3Bucket").is_none() || out.get("S3Key").is_none() {
        return Err(invalid("Code needs ZipFile, or S3Bucket and S3Key"));
    }
    Ok(out)
}

async fn wait_function(c: &Client, name: &str) -> Result<(), ProvisionError> {
    let path = format!("/2015-03-31/functions/{}", uri_encode(name, false));
    wait_for(&format!("function {name}"), || async {
        let v = c.rest_json("lambda", "GET", &path, &[], None).await.map_err(failed)?;
        let conf = &v["Configuration"];
        if conf["State"] == "Failed" {
            return Err(invalid(format!(
                "function {name} failed: {}",
                conf["StateReason"].as_str().unwrap_or_default()
            )));
        }
        Ok(conf["State"] == "Active" && conf["LastUpdateStatus"] != "InProgress")
    })
    .await
}

// ---------------------------------------------------------------------- templates

/// `TemplateURL`s read from the objects engine, as the caller's account.
pub struct BucketTemplates {
    objects: Arc<kd_objects::Objects>,
}

impl BucketTemplates {
    /// Over the objects engine.
    pub fn new(objects: Arc<kd_objects::Objects>) -> Self {
        Self { objects }
    }
}

#[async_trait::async_trait]
impl kd_api_cloudformation::TemplateSource for BucketTemplates {
    async fn template(&self, account: &str, bucket: &str, key: &str, limit: usize) -> Result<String, String> {
        use futures_util::StreamExt as _;
        let info = self
            .objects
            .bucket(bucket)
            .map_err(|_| "S3 error: The specified bucket does not exist".to_owned())?;
        if info.owner_account != account {
            return Err("S3 error: Access Denied".to_owned());
        }
        let (obj, _, mut body) = self
            .objects
            .get_object(bucket, key, None)
            .await
            .map_err(|_| "S3 error: The specified key does not exist.".to_owned())?;
        let too_big = || format!("Template may not exceed {limit} bytes in size.");
        if obj.size > limit as u64 {
            return Err(too_big());
        }
        let mut out = Vec::with_capacity(usize::try_from(obj.size).unwrap_or(0));
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| format!("S3 error: {e}"))?;
            out.extend_from_slice(&chunk);
            if out.len() > limit {
                return Err(too_big());
            }
        }
        String::from_utf8(out).map_err(|_| "Template format error: the template is not UTF-8 text".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_fit_and_differ() {
        let a = generated_name("my-stack", "DataBucket", 63, true);
        assert!(a.starts_with("my-stack-databucket-"), "{a}");
        assert!(a.len() <= 63);
        assert_ne!(a, generated_name("my-stack", "DataBucket", 63, true));
        let long = generated_name(&"s".repeat(100), &"L".repeat(100), 64, false);
        assert_eq!(long.len(), 64);
    }

    #[test]
    fn inline_code_is_zipped_by_runtime() {
        let p = json!({"Runtime": "python3.12", "Code": {"ZipFile": "def handler(e, c): return 1"}});
        let code = function_code(&p).expect("code");
        let zip = base64::engine::general_purpose::STANDARD
            .decode(code["ZipFile"].as_str().unwrap_or_default())
            .expect("base64");
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("zip");
        assert_eq!(archive.by_index(0).expect("entry").name().expect("name"), "index.py");
        let bad = json!({"Runtime": "java21", "Code": {"ZipFile": "x"}});
        assert!(function_code(&bad).is_err());
        let s3 = json!({"Code": {"S3Bucket": "b", "S3Key": "k.zip"}});
        assert_eq!(
            function_code(&s3).expect("s3"),
            json!({"S3Bucket": "b", "S3Key": "k.zip"})
        );
    }
}
