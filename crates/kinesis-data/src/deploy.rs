//! `kinesis-data deploy PATH` and `kinesis-data destroy`: CDK cloud assemblies (or single
//! templates) onto a running server, through its public APIs (the thin client of
//! [`crate::client`]), as `cdk deploy` / `cdk destroy` do it against AWS.
//!
//! For an assembly (`cdk.out/` with `manifest.json`): the `aws:cloudformation:stack`
//! artifacts are read with their `dependencies`, `templateFile`, `parameters`, `tags` and
//! stack names, and ordered so that a stack comes after the stacks it depends on; the
//! bootstrap resources the templates expect (the `cdk-hnb659fds-assets-<account>-<region>`
//! bucket, the `/cdk-bootstrap/hnb659fds/version` parameter, the four `cdk-hnb659fds-*-role`s)
//! are made if absent (an implicit `cdk bootstrap`, announced); the file assets of every
//! `cdk:asset-manifest` the stacks depend on are published (folders zipped deterministically,
//! objects already present skipped); then each stack is created or updated (a stack left
//! `ROLLBACK_COMPLETE` or `REVIEW_IN_PROGRESS` is deleted first, "No updates are to be
//! performed" is success) and followed through DescribeStackEvents with one line per event,
//! as `cdk deploy` prints them; its outputs follow. A stack that fails stops the deployment
//! with its reason.
//!
//! Not supported (refused with a message, nothing half-done): Docker image assets, assets
//! built by an `executable`, nested cloud assemblies (CDK Stages).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use serde_json::Value;

use crate::client::{Client, Credentials, error_code, uri_encode};
use crate::pipeline::apply::deterministic_zip;
use crate::tools::Target;

const CFN_VERSION: &str = "2010-05-15";
const IAM_VERSION: &str = "2010-05-08";
/// CDK's default bootstrap qualifier.
pub const QUALIFIER: &str = "hnb659fds";
/// The parameter CDK's `CheckBootstrapVersion` rule reads.
pub const BOOTSTRAP_VERSION_PARAMETER: &str = "/cdk-bootstrap/hnb659fds/version";
/// The version an implicit bootstrap records (templates of CDK v2 require at least 6).
pub const BOOTSTRAP_VERSION: u64 = 21;
/// Largest `TemplateBody`; larger templates go through the assets bucket as a `TemplateURL`.
const MAX_TEMPLATE_BODY: usize = 51_200;
/// How often a stack operation is polled.
const POLL: Duration = Duration::from_millis(100);
/// How long one stack operation may take.
const STACK_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What `kinesis-data deploy` was asked.
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// A cloud assembly directory or a template file.
    pub path: PathBuf,
    /// Deploy only these stacks (artifact ids or stack names); empty: all.
    pub stacks: Vec<String>,
    /// The stack name of a single template (default: the file name up to its first dot).
    pub stack_name: Option<String>,
    /// `Stack:Key=Value` or `Key=Value` (every stack declaring `Key`).
    pub parameters: Vec<String>,
    /// Record resources of unsupported types as placeholders (a warning in their event)
    /// instead of failing the stack: sent as `AllowUnsupported=true`, our extension of
    /// CreateStack / UpdateStack.
    pub allow_unsupported: bool,
}

/// One stack of an assembly (or the single template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackArtifact {
    /// The artifact id (CDK's construct path, e.g. `AppStack`).
    pub id: String,
    /// The CloudFormation stack name.
    pub stack_name: String,
    /// The template file.
    pub template_file: PathBuf,
    /// `stackTemplateAssetObjectUrl` (`s3://…`), for templates too large for a body.
    pub template_url: Option<String>,
    /// Parameters the assembly gives.
    pub parameters: BTreeMap<String, String>,
    /// Stack tags.
    pub tags: BTreeMap<String, String>,
    /// Stack artifacts this one depends on.
    pub depends_on: Vec<String>,
    /// Asset manifest files this stack's assets are listed in.
    pub asset_manifests: Vec<PathBuf>,
    /// `aws://account/region` account, when not `unknown-account`.
    pub account: Option<String>,
    /// Region, when not `unknown-region`.
    pub region: Option<String>,
}

/// A cloud assembly: its stacks in deployment order.
#[derive(Debug, Clone)]
pub struct Assembly {
    /// The directory.
    pub dir: PathBuf,
    /// Stacks, every one after those it depends on.
    pub stacks: Vec<StackArtifact>,
    /// The highest `requiresBootstrapStackVersion` (0: no bootstrap needed).
    pub bootstrap_version: u64,
}

fn str_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let s = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => return None,
                    };
                    Some((k.clone(), s))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads `dir/manifest.json`.
pub fn load_assembly(dir: &Path) -> anyhow::Result<Assembly> {
    let manifest_path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "cannot read {} (is {} a cloud assembly?)",
            manifest_path.display(),
            dir.display()
        )
    })?;
    let manifest: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", manifest_path.display()))?;
    let artifacts = manifest
        .get("artifacts")
        .and_then(Value::as_object)
        .ok_or_else(|| anyhow!("{} has no artifacts", manifest_path.display()))?;
    let mut manifests: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut nested = Vec::new();
    for (id, a) in artifacts {
        match a.get("type").and_then(Value::as_str) {
            Some("cdk:asset-manifest") => {
                let file = a
                    .pointer("/properties/file")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("asset manifest artifact {id} names no file"))?;
                manifests.insert(id.clone(), dir.join(file));
            }
            Some("cdk:cloud-assembly") => nested.push(id.clone()),
            _ => {}
        }
    }
    ensure!(
        nested.is_empty(),
        "nested cloud assemblies (CDK Stages: {}) are not supported by kinesis-data deploy",
        nested.join(", ")
    );
    let mut stacks = Vec::new();
    let mut bootstrap_version = 0;
    for (id, a) in artifacts {
        if a.get("type").and_then(Value::as_str) != Some("aws:cloudformation:stack") {
            continue;
        }
        let props = a.get("properties").cloned().unwrap_or(Value::Null);
        let template = props
            .get("templateFile")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("stack artifact {id} names no templateFile"))?;
        let deps: Vec<String> = a
            .get("dependencies")
            .and_then(Value::as_array)
            .map(|d| d.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        for key in ["requiresBootstrapStackVersion"] {
            if let Some(v) = props.get(key).and_then(Value::as_u64) {
                bootstrap_version = bootstrap_version.max(v);
            }
        }
        let (account, region) = match a.get("environment").and_then(Value::as_str) {
            Some(env) => {
                let rest = env.strip_prefix("aws://").unwrap_or(env);
                let (acct, region) = rest.split_once('/').unwrap_or((rest, ""));
                (
                    (!acct.is_empty() && acct != "unknown-account").then(|| acct.to_owned()),
                    (!region.is_empty() && region != "unknown-region").then(|| region.to_owned()),
                )
            }
            None => (None, None),
        };
        stacks.push(StackArtifact {
            id: id.clone(),
            stack_name: props.get("stackName").and_then(Value::as_str).unwrap_or(id).to_owned(),
            template_file: dir.join(template),
            template_url: props
                .get("stackTemplateAssetObjectUrl")
                .and_then(Value::as_str)
                .map(str::to_owned),
            parameters: str_map(props.get("parameters")),
            tags: str_map(props.get("tags")),
            depends_on: deps
                .iter()
                .filter(|d| artifact_is_stack(artifacts, d))
                .cloned()
                .collect(),
            asset_manifests: deps.iter().filter_map(|d| manifests.get(d).cloned()).collect(),
            account,
            region,
        });
    }
    ensure!(!stacks.is_empty(), "{} has no stacks", manifest_path.display());
    Ok(Assembly {
        dir: dir.to_path_buf(),
        stacks: order(stacks)?,
        bootstrap_version,
    })
}

fn artifact_is_stack(artifacts: &serde_json::Map<String, Value>, id: &str) -> bool {
    artifacts.get(id).and_then(|a| a.get("type")).and_then(Value::as_str) == Some("aws:cloudformation:stack")
}

/// Orders stacks so each comes after those it depends on (ties by artifact id).
fn order(stacks: Vec<StackArtifact>) -> anyhow::Result<Vec<StackArtifact>> {
    let mut pending: BTreeMap<String, StackArtifact> = stacks.into_iter().map(|s| (s.id.clone(), s)).collect();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    while !pending.is_empty() {
        let ready: Vec<String> = pending
            .values()
            .filter(|s| {
                s.depends_on
                    .iter()
                    .all(|d| done.contains(d) || !pending.contains_key(d))
            })
            .map(|s| s.id.clone())
            .collect();
        if ready.is_empty() {
            let ids: Vec<&str> = pending.keys().map(String::as_str).collect();
            bail!("the stacks depend on each other in a cycle: {}", ids.join(", "));
        }
        for id in ready {
            if let Some(s) = pending.remove(&id) {
                done.insert(id);
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// `${AWS::AccountId}`, `${AWS::Region}` and `${AWS::Partition}` of asset destinations.
fn substitute(s: &str, account: &str, region: &str) -> String {
    s.replace("${AWS::AccountId}", account)
        .replace("${AWS::Region}", region)
        .replace("${AWS::Partition}", kd_stacks::partition(region))
}

/// The bucket the bootstrap stack makes.
pub fn assets_bucket(account: &str, region: &str) -> String {
    format!("cdk-{QUALIFIER}-assets-{account}-{region}")
}

/// A folder as a zip: every file under it (sorted, `/`-separated relative names, the
/// executable bit kept), no timestamps, so the same folder always gives the same bytes.
pub fn zip_folder(dir: &Path) -> anyhow::Result<Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>, u32)>) -> anyhow::Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for p in entries {
            let meta = std::fs::metadata(&p).with_context(|| format!("cannot read {}", p.display()))?;
            if meta.is_dir() {
                walk(base, &p, out)?;
            } else {
                let rel = p
                    .strip_prefix(base)
                    .map_err(|_| anyhow!("{} is outside {}", p.display(), base.display()))?;
                let name = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                #[cfg(unix)]
                let mode = {
                    use std::os::unix::fs::PermissionsExt as _;
                    if meta.permissions().mode() & 0o111 != 0 {
                        0o755
                    } else {
                        0o644
                    }
                };
                #[cfg(not(unix))]
                let mode = 0o644;
                let bytes = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
                out.push((name, bytes, mode));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    deterministic_zip(&files)
}

/// One file asset destination.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Publish {
    asset: String,
    source: PathBuf,
    zip: bool,
    bucket: String,
    key: String,
    region: String,
}

/// The file assets of `manifest` (an `*.assets.json`), destinations substituted.
fn file_assets(manifest: &Path, account: &str, region: &str) -> anyhow::Result<Vec<Publish>> {
    let text = std::fs::read_to_string(manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", manifest.display()))?;
    let base = manifest.parent().unwrap_or(Path::new("."));
    if v.get("dockerImages")
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty())
    {
        bail!(
            "{} lists Docker image assets, which kinesis-data does not support (no container registry)",
            manifest.display()
        );
    }
    let mut out = Vec::new();
    for (id, asset) in v.get("files").and_then(Value::as_object).into_iter().flatten() {
        let source = asset.get("source").cloned().unwrap_or(Value::Null);
        if source.get("executable").is_some() {
            bail!("asset {id} is built by a command (source.executable), which kinesis-data deploy does not run");
        }
        let path = source
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("asset {id} in {} has no source.path", manifest.display()))?;
        let zip = match source.get("packaging").and_then(Value::as_str).unwrap_or("file") {
            "file" => false,
            "zip" => true,
            other => bail!("asset {id}: packaging {other} is not supported (file or zip)"),
        };
        let name = asset
            .get("displayName")
            .and_then(Value::as_str)
            .map_or_else(|| id.clone(), str::to_owned);
        for dest in asset
            .get("destinations")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(_, d)| d)
        {
            let field = |k: &str| {
                dest.get(k)
                    .and_then(Value::as_str)
                    .map(|s| substitute(s, account, region))
                    .ok_or_else(|| anyhow!("asset {id}: a destination has no {k}"))
            };
            out.push(Publish {
                asset: name.clone(),
                source: base.join(path),
                zip,
                bucket: field("bucketName")?,
                key: field("objectKey")?,
                region: dest
                    .get("region")
                    .and_then(Value::as_str)
                    .map_or_else(|| region.to_owned(), |r| substitute(r, account, region)),
            });
        }
    }
    Ok(out)
}

/// The bytes of an asset: the file, a folder zipped, or a `.zip`/`.jar` file as it is.
fn asset_bytes(p: &Publish) -> anyhow::Result<Vec<u8>> {
    let meta = std::fs::metadata(&p.source)
        .with_context(|| format!("asset {}: cannot read {}", p.asset, p.source.display()))?;
    if meta.is_dir() {
        ensure!(
            p.zip,
            "asset {}: {} is a folder but its packaging is file",
            p.asset,
            p.source.display()
        );
        return zip_folder(&p.source);
    }
    Ok(std::fs::read(&p.source)?)
}

fn line(out: &mut dyn Write, text: &str) -> anyhow::Result<()> {
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// The account the credentials act in (STS GetCallerIdentity).
async fn caller_account(c: &Client) -> anyhow::Result<String> {
    let who = c.query("sts", "2011-06-15", "GetCallerIdentity", &[]).await?;
    who.find("Account")
        .map(|a| a.text.clone())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| anyhow!("GetCallerIdentity answered without an account"))
}

/// Makes what `cdk bootstrap` would have made in the environment, if it is missing; returns
/// what was made.
async fn bootstrap(c: &Client, account: &str, region: &str, version: u64) -> anyhow::Result<Vec<String>> {
    let mut made = Vec::new();
    let bucket = assets_bucket(account, region);
    let path = format!("/{}", uri_encode(&bucket, false));
    match c.request("HEAD", &path, &[], &[], &[]).await {
        Ok(_) => {}
        Err(e) if matches!(error_code(&e), Some("HTTP404" | "NoSuchBucket" | "NotFound")) => {
            let body = if region == "us-east-1" {
                String::new()
            } else {
                format!(
                    r#"<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"#
                )
            };
            c.request("PUT", &path, &[], &[], body.as_bytes())
                .await
                .with_context(|| format!("creating the bootstrap bucket {bucket}"))?;
            made.push(format!("bucket {bucket}"));
        }
        Err(e) => return Err(e.context(format!("checking the bootstrap bucket {bucket}"))),
    }
    let have = match c
        .json(
            "ssm",
            "AmazonSSM.GetParameter",
            &serde_json::json!({"Name": BOOTSTRAP_VERSION_PARAMETER}),
        )
        .await
    {
        Ok(v) => v["Parameter"]["Value"]
            .as_str()
            .and_then(|s| s.trim().parse::<u64>().ok()),
        Err(e) if error_code(&e) == Some("ParameterNotFound") => None,
        Err(e) => return Err(e.context("reading the bootstrap version")),
    };
    if have.is_none_or(|h| h < version) {
        let want = BOOTSTRAP_VERSION.max(version);
        c.json(
            "ssm",
            "AmazonSSM.PutParameter",
            &serde_json::json!({"Name": BOOTSTRAP_VERSION_PARAMETER, "Type": "String", "Value": want.to_string(), "Overwrite": true}),
        )
        .await
        .context("recording the bootstrap version")?;
        made.push(format!("parameter {BOOTSTRAP_VERSION_PARAMETER} = {want}"));
    }
    let root = format!("arn:{}:iam::{account}:root", kd_stacks::partition(region));
    let trust = |principal: &str| {
        serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": principal_json(principal), "Action": "sts:AssumeRole"}]})
            .to_string()
    };
    fn principal_json(p: &str) -> Value {
        if p.starts_with("arn:") {
            serde_json::json!({ "AWS": p })
        } else {
            serde_json::json!({ "Service": p })
        }
    }
    let bucket_policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": ["s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:PutObject*", "s3:Abort*", "s3:DeleteObject*"],
        "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")]}]})
    .to_string();
    let lookup_policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": ["cloudformation:Describe*", "cloudformation:List*", "cloudformation:GetTemplate*",
                   "ssm:GetParameter*", "ssm:DescribeParameters", "s3:GetBucket*", "s3:List*",
                   "iam:Get*", "iam:List*", "kinesis:Describe*", "kinesis:List*", "lambda:Get*", "lambda:List*"],
        "Resource": "*"}]})
    .to_string();
    for (kind, principal, managed, inline) in [
        (
            "deploy",
            root.as_str(),
            Some("arn:aws:iam::aws:policy/AdministratorAccess"),
            None,
        ),
        (
            "cfn-exec",
            "cloudformation.amazonaws.com",
            Some("arn:aws:iam::aws:policy/AdministratorAccess"),
            None,
        ),
        ("file-publishing", root.as_str(), None, Some(bucket_policy.as_str())),
        ("lookup", root.as_str(), None, Some(lookup_policy.as_str())),
    ] {
        let name = format!("cdk-{QUALIFIER}-{kind}-role-{account}-{region}");
        match c.query("iam", IAM_VERSION, "GetRole", &[("RoleName", &name)]).await {
            Ok(_) => continue,
            Err(e) if error_code(&e) == Some("NoSuchEntity") => {}
            Err(e) => return Err(e.context(format!("checking role {name}"))),
        }
        c.query(
            "iam",
            IAM_VERSION,
            "CreateRole",
            &[("RoleName", &name), ("AssumeRolePolicyDocument", &trust(principal))],
        )
        .await
        .with_context(|| format!("creating role {name}"))?;
        if let Some(arn) = managed {
            c.query(
                "iam",
                IAM_VERSION,
                "AttachRolePolicy",
                &[("RoleName", &name), ("PolicyArn", arn)],
            )
            .await
            .with_context(|| format!("attaching {arn} to {name}"))?;
        }
        if let Some(doc) = inline {
            c.query(
                "iam",
                IAM_VERSION,
                "PutRolePolicy",
                &[("RoleName", &name), ("PolicyName", "default"), ("PolicyDocument", doc)],
            )
            .await
            .with_context(|| format!("giving {name} its policy"))?;
        }
        made.push(format!("role {name}"));
    }
    Ok(made)
}

/// A stack as DescribeStacks shows it.
#[derive(Debug, Clone, Default)]
struct StackState {
    id: String,
    status: String,
    reason: String,
    parameters: BTreeSet<String>,
    outputs: Vec<(String, String)>,
}

async fn describe(c: &Client, name: &str) -> anyhow::Result<Option<StackState>> {
    let got = match c
        .query("cloudformation", CFN_VERSION, "DescribeStacks", &[("StackName", name)])
        .await
    {
        Ok(x) => x,
        Err(e) if error_code(&e) == Some("ValidationError") => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(stack) = got.find("Stacks").and_then(|s| s.child("member")) else {
        return Ok(None);
    };
    let members = |list: &str| -> Vec<crate::client::Node> {
        stack
            .child(list)
            .map(|l| l.all("member").cloned().collect())
            .unwrap_or_default()
    };
    Ok(Some(StackState {
        id: stack.text_of("StackId").unwrap_or_default().to_owned(),
        status: stack.text_of("StackStatus").unwrap_or_default().to_owned(),
        reason: stack.text_of("StackStatusReason").unwrap_or_default().to_owned(),
        parameters: members("Parameters")
            .iter()
            .filter_map(|p| p.text_of("ParameterKey").map(str::to_owned))
            .collect(),
        outputs: members("Outputs")
            .iter()
            .map(|o| {
                (
                    o.text_of("OutputKey").unwrap_or_default().to_owned(),
                    o.text_of("OutputValue").unwrap_or_default().to_owned(),
                )
            })
            .collect(),
    }))
}

/// One stack event.
#[derive(Debug, Clone)]
struct Event {
    id: String,
    logical: String,
    resource_type: String,
    status: String,
    reason: String,
    timestamp: String,
}

async fn events(c: &Client, stack_id: &str) -> anyhow::Result<Vec<Event>> {
    let got = c
        .query(
            "cloudformation",
            CFN_VERSION,
            "DescribeStackEvents",
            &[("StackName", stack_id)],
        )
        .await?;
    let mut out: Vec<Event> = got
        .find("StackEvents")
        .map(|l| {
            l.all("member")
                .map(|e| Event {
                    id: e.text_of("EventId").unwrap_or_default().to_owned(),
                    logical: e.text_of("LogicalResourceId").unwrap_or_default().to_owned(),
                    resource_type: e.text_of("ResourceType").unwrap_or_default().to_owned(),
                    status: e.text_of("ResourceStatus").unwrap_or_default().to_owned(),
                    reason: e.text_of("ResourceStatusReason").unwrap_or_default().to_owned(),
                    timestamp: e.text_of("Timestamp").unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    out.reverse(); // oldest first
    Ok(out)
}

/// Follows a stack operation: prints each new event as `cdk deploy` does and returns the
/// final state, and the failure reasons of resources.
struct Follow<'a> {
    c: &'a Client,
    name: &'a str,
    total: usize,
    seen: BTreeSet<String>,
    done: usize,
}

impl Follow<'_> {
    async fn until_settled(
        &mut self,
        stack_id: &str,
        out: &mut dyn Write,
    ) -> anyhow::Result<(StackState, Vec<String>)> {
        let deadline = Instant::now() + STACK_TIMEOUT;
        let mut failures = Vec::new();
        loop {
            let state = describe(self.c, stack_id)
                .await?
                .ok_or_else(|| anyhow!("stack {} vanished", self.name))?;
            for e in events(self.c, stack_id).await? {
                if !self.seen.insert(e.id.clone()) {
                    continue;
                }
                let terminal = !e.status.ends_with("_IN_PROGRESS");
                if terminal {
                    self.done = (self.done + 1).min(self.total);
                }
                if e.status.ends_with("_FAILED") && !e.reason.is_empty() && !e.reason.contains("cancelled") {
                    failures.push(format!("{} ({}): {}", e.logical, e.resource_type, e.reason));
                }
                let time = e.timestamp.split('T').nth(1).unwrap_or(&e.timestamp);
                let time: String = time.chars().take(8).collect();
                let mut text = format!(
                    "{} | {:>w$}/{} | {time} | {:<28} | {:<32} | {}",
                    self.name,
                    self.done,
                    self.total,
                    e.status,
                    e.resource_type,
                    e.logical,
                    w = self.total.to_string().len()
                );
                // Failure reasons, and the warning of a placeholder (--allow-unsupported).
                if (e.status.ends_with("_FAILED") || e.status.ends_with("_COMPLETE")) && !e.reason.is_empty() {
                    text.push_str(&format!(" {}", e.reason));
                }
                line(out, &text)?;
            }
            if !state.status.ends_with("_IN_PROGRESS") {
                return Ok((state, failures));
            }
            ensure!(
                Instant::now() < deadline,
                "stack {} did not settle within {STACK_TIMEOUT:?}",
                self.name
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Deletes a stack and waits; `Ok(false)` if it did not exist.
async fn delete_stack(c: &Client, name: &str, out: &mut dyn Write) -> anyhow::Result<bool> {
    let Some(state) = describe(c, name).await? else {
        return Ok(false);
    };
    let seen: BTreeSet<String> = events(c, &state.id).await?.into_iter().map(|e| e.id).collect();
    c.query(
        "cloudformation",
        CFN_VERSION,
        "DeleteStack",
        &[("StackName", &state.id)],
    )
    .await?;
    let mut follow = Follow {
        c,
        name,
        total: resource_count(c, &state.id).await? + 1,
        seen,
        done: 0,
    };
    let (end, failures) = follow.until_settled(&state.id, out).await?;
    if end.status != "DELETE_COMPLETE" {
        bail!(
            "{name} could not be deleted: {} {}{}",
            end.status,
            end.reason,
            failure_list(&failures)
        );
    }
    Ok(true)
}

async fn resource_count(c: &Client, stack_id: &str) -> anyhow::Result<usize> {
    let got = c
        .query(
            "cloudformation",
            CFN_VERSION,
            "ListStackResources",
            &[("StackName", stack_id)],
        )
        .await?;
    Ok(got
        .find("StackResourceSummaries")
        .map(|l| l.all("member").count())
        .unwrap_or(0))
}

fn failure_list(failures: &[String]) -> String {
    failures.iter().map(|f| format!("\n  {f}")).collect()
}

/// A stack to deploy: the artifact with its template and parameters resolved.
struct Plan<'a> {
    artifact: &'a StackArtifact,
    body: String,
    template: kd_stacks::Template,
    parameters: BTreeMap<String, String>,
}

/// Parameter values by key.
type Values = BTreeMap<String, String>;

/// Splits `--parameters` into per-stack (`Stack:Key=Value`) and global (`Key=Value`) ones.
fn parse_parameters(given: &[String]) -> anyhow::Result<(BTreeMap<String, Values>, Values)> {
    let mut per_stack: BTreeMap<String, Values> = BTreeMap::new();
    let mut global = BTreeMap::new();
    for p in given {
        let (lhs, value) = p
            .split_once('=')
            .ok_or_else(|| anyhow!("--parameters {p:?} is not [Stack:]Key=Value"))?;
        match lhs.split_once(':') {
            Some((stack, key)) if !stack.is_empty() && !key.is_empty() => {
                per_stack
                    .entry(stack.to_owned())
                    .or_default()
                    .insert(key.to_owned(), value.to_owned());
            }
            None if !lhs.is_empty() => {
                global.insert(lhs.to_owned(), value.to_owned());
            }
            _ => bail!("--parameters {p:?} is not [Stack:]Key=Value"),
        }
    }
    Ok((per_stack, global))
}

/// What a deployment printed and made, for callers and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deployed {
    /// Stack names in the order deployed.
    pub stacks: Vec<String>,
    /// `(stack, key, value)` of every output.
    pub outputs: Vec<(String, String, String)>,
}

/// `kinesis-data deploy`.
/// `kinesis-data bootstrap`: makes what `cdk bootstrap` makes and `cdk deploy` uses (the
/// assets bucket, the `/cdk-bootstrap/hnb659fds/version` parameter, the deploy, cfn-exec,
/// file-publishing and lookup roles) in the caller's account and the target's region, where
/// missing, so that `cdk deploy` with `AWS_ENDPOINT_URL` pointing here finds a bootstrapped
/// environment (`cdk bootstrap`'s own template needs ECR and KMS, which we do not run).
/// Returns what was made.
pub async fn bootstrap_environment(target: &Target, out: &mut dyn Write) -> anyhow::Result<Vec<String>> {
    let creds = Credentials::resolve(None, None, None)?;
    let c = Client::new(&target.endpoint, &target.region, creds)?;
    let account = caller_account(&c).await?;
    let made = bootstrap(&c, &account, &target.region, 6).await?;
    let env = format!("aws://{account}/{}", target.region);
    if made.is_empty() {
        line(out, &format!(" ✅  Environment {env} is already bootstrapped"))?;
    } else {
        line(
            out,
            &format!(
                " ✅  Environment {env} bootstrapped (as `cdk bootstrap` would): created {}",
                made.join(", ")
            ),
        )?;
    }
    Ok(made)
}

pub async fn deploy(target: &Target, opts: &DeployOptions, out: &mut dyn Write) -> anyhow::Result<Deployed> {
    let started = Instant::now();
    let creds = Credentials::resolve(None, None, None)?;
    let c = Client::new(&target.endpoint, &target.region, creds.clone())?;
    let account = caller_account(&c).await?;
    let path = &opts.path;
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let assembly = if meta.is_dir() {
        load_assembly(path)?
    } else {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = file_name.split('.').next().unwrap_or_default().to_owned();
        let name = opts.stack_name.clone().unwrap_or(stem);
        ensure!(!name.is_empty(), "give the stack a name with --stack-name");
        Assembly {
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            stacks: vec![StackArtifact {
                id: name.clone(),
                stack_name: name,
                template_file: path.clone(),
                template_url: None,
                parameters: BTreeMap::new(),
                tags: BTreeMap::new(),
                depends_on: Vec::new(),
                asset_manifests: Vec::new(),
                account: None,
                region: None,
            }],
            bootstrap_version: 0,
        }
    };
    let selected: Vec<&StackArtifact> = if opts.stacks.is_empty() {
        assembly.stacks.iter().collect()
    } else {
        for want in &opts.stacks {
            ensure!(
                assembly.stacks.iter().any(|s| &s.id == want || &s.stack_name == want),
                "no stack {want} in {} (stacks: {})",
                path.display(),
                assembly
                    .stacks
                    .iter()
                    .map(|s| s.stack_name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        assembly
            .stacks
            .iter()
            .filter(|s| opts.stacks.iter().any(|w| w == &s.id || w == &s.stack_name))
            .collect()
    };
    let (per_stack, global) = parse_parameters(&opts.parameters)?;
    for stack in per_stack.keys() {
        ensure!(
            selected.iter().any(|s| &s.stack_name == stack || &s.id == stack),
            "--parameters names stack {stack}, which is not being deployed"
        );
    }

    // Read and check every template before changing anything.
    let mut plans = Vec::new();
    for s in &selected {
        if let Some(a) = &s.account {
            ensure!(
                a == &account,
                "stack {} is for account {a}, but the credentials act in account {account}",
                s.stack_name
            );
        }
        let body = std::fs::read_to_string(&s.template_file)
            .with_context(|| format!("cannot read {}", s.template_file.display()))?;
        let template = kd_stacks::Template::parse(&body).map_err(|e| anyhow!("{}: {e}", s.template_file.display()))?;
        let declared: BTreeSet<&str> = template.parameters().iter().map(|p| p.name.as_str()).collect();
        let mut parameters = s.parameters.clone();
        for (k, v) in &global {
            if declared.contains(k.as_str()) {
                parameters.insert(k.clone(), v.clone());
            }
        }
        for key in [&s.stack_name, &s.id] {
            if let Some(given) = per_stack.get(key) {
                parameters.extend(given.clone());
            }
        }
        plans.push(Plan {
            artifact: s,
            body,
            template,
            parameters,
        });
    }

    // Bootstrap and assets, per environment (region).
    let needs_bootstrap = assembly.bootstrap_version > 0
        || plans.iter().any(|p| {
            p.template
                .parameters()
                .iter()
                .any(|d| d.default.as_deref() == Some(BOOTSTRAP_VERSION_PARAMETER))
                || !p.artifact.asset_manifests.is_empty()
                || p.body.len() > MAX_TEMPLATE_BODY
        });
    let regions: BTreeSet<String> = plans
        .iter()
        .map(|p| p.artifact.region.clone().unwrap_or_else(|| target.region.clone()))
        .collect();
    if needs_bootstrap {
        for region in &regions {
            let rc = Client::new(&target.endpoint, region, creds.clone())?;
            let made = bootstrap(&rc, &account, region, assembly.bootstrap_version.max(6)).await?;
            if !made.is_empty() {
                line(
                    out,
                    &format!(
                        " ⏳  Bootstrapping environment aws://{account}/{region} (as `cdk bootstrap` would): created {}",
                        made.join(", ")
                    ),
                )?;
            }
        }
    }
    let mut publishes: Vec<Publish> = Vec::new();
    let mut manifests_seen = BTreeSet::new();
    for p in &plans {
        let region = p.artifact.region.clone().unwrap_or_else(|| target.region.clone());
        for m in &p.artifact.asset_manifests {
            if manifests_seen.insert((m.clone(), region.clone())) {
                publishes.extend(file_assets(m, &account, &region)?);
            }
        }
    }
    let mut published = 0;
    for p in &publishes {
        let rc = Client::new(&target.endpoint, &p.region, creds.clone())?;
        let path = format!("/{}/{}", uri_encode(&p.bucket, false), uri_encode(&p.key, true));
        match rc.request("HEAD", &path, &[], &[], &[]).await {
            Ok(_) => continue, // already published (keys are content hashes)
            Err(e) if matches!(error_code(&e), Some("HTTP404" | "NoSuchKey" | "NotFound")) => {}
            Err(e) => return Err(e.context(format!("checking s3://{}/{}", p.bucket, p.key))),
        }
        let bytes = asset_bytes(p)?;
        let content_type = if p.zip || p.key.ends_with(".zip") {
            "application/zip"
        } else if p.key.ends_with(".json") {
            "application/json"
        } else {
            "application/octet-stream"
        };
        rc.put_object(&p.bucket, &p.key, &bytes, content_type)
            .await
            .with_context(|| format!("publishing asset {} to s3://{}/{}", p.asset, p.bucket, p.key))?;
        published += 1;
        line(
            out,
            &format!(
                " 📦  {}: published to s3://{}/{} ({} bytes)",
                p.asset,
                p.bucket,
                p.key,
                bytes.len()
            ),
        )?;
    }
    if published > 0 || !publishes.is_empty() {
        line(
            out,
            &format!(
                " ✅  assets: {published} published, {} already present",
                publishes.len() - published
            ),
        )?;
    }

    let mut result = Deployed::default();
    for plan in &plans {
        let region = plan.artifact.region.clone().unwrap_or_else(|| target.region.clone());
        let rc = Client::new(&target.endpoint, &region, creds.clone())?;
        let outputs = deploy_stack(&rc, plan, &account, &region, opts.allow_unsupported, out).await?;
        result.stacks.push(plan.artifact.stack_name.clone());
        result.outputs.extend(
            outputs
                .into_iter()
                .map(|(k, v)| (plan.artifact.stack_name.clone(), k, v)),
        );
    }
    if !result.outputs.is_empty() {
        line(out, "\nOutputs:")?;
        for (s, k, v) in &result.outputs {
            line(out, &format!("{s}.{k} = {v}"))?;
        }
    }
    line(
        out,
        &format!(
            "\n✨  Deployed {} stack(s) in {:.2}s",
            result.stacks.len(),
            started.elapsed().as_secs_f64()
        ),
    )?;
    Ok(result)
}

/// Creates or updates one stack and follows it; its outputs.
async fn deploy_stack(
    c: &Client,
    plan: &Plan<'_>,
    account: &str,
    region: &str,
    allow_unsupported: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Vec<(String, String)>> {
    let name = plan.artifact.stack_name.as_str();
    let started = Instant::now();
    line(out, &format!("{name}: deploying..."))?;
    let mut existing = describe(c, name).await?;
    if let Some(s) = &existing
        && matches!(
            s.status.as_str(),
            "ROLLBACK_COMPLETE" | "ROLLBACK_FAILED" | "REVIEW_IN_PROGRESS"
        )
    {
        line(
            out,
            &format!(
                "{name}: the stack is {}; deleting it before creating it again",
                s.status
            ),
        )?;
        delete_stack(c, name, out).await?;
        existing = None;
    }
    let mut params: Vec<(String, String)> = Vec::new();
    if plan.body.len() > MAX_TEMPLATE_BODY {
        let url = template_url(c, plan, account, region).await?;
        params.push(("TemplateURL".to_owned(), url));
    } else {
        params.push(("TemplateBody".to_owned(), plan.body.clone()));
    }
    for (i, cap) in ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
        .iter()
        .enumerate()
    {
        params.push((format!("Capabilities.member.{}", i + 1), (*cap).to_owned()));
    }
    let mut n = 0;
    for (k, v) in &plan.parameters {
        n += 1;
        params.push((format!("Parameters.member.{n}.ParameterKey"), k.clone()));
        params.push((format!("Parameters.member.{n}.ParameterValue"), v.clone()));
    }
    if let Some(s) = &existing {
        // Keep the values given earlier for parameters without a default (as `cdk deploy`).
        for d in plan.template.parameters() {
            if d.default.is_none() && !plan.parameters.contains_key(&d.name) && s.parameters.contains(&d.name) {
                n += 1;
                params.push((format!("Parameters.member.{n}.ParameterKey"), d.name.clone()));
                params.push((format!("Parameters.member.{n}.UsePreviousValue"), "true".to_owned()));
            }
        }
    }
    for (i, (k, v)) in plan.artifact.tags.iter().enumerate() {
        params.push((format!("Tags.member.{}.Key", i + 1), k.clone()));
        params.push((format!("Tags.member.{}.Value", i + 1), v.clone()));
    }
    params.push(("StackName".to_owned(), name.to_owned()));
    if allow_unsupported {
        params.push(("AllowUnsupported".to_owned(), "true".to_owned()));
    }
    let form: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let seen: BTreeSet<String> = match &existing {
        Some(s) => events(c, &s.id).await?.into_iter().map(|e| e.id).collect(),
        None => BTreeSet::new(),
    };
    let action = if existing.is_some() {
        "UpdateStack"
    } else {
        "CreateStack"
    };
    let answer = match c.query("cloudformation", CFN_VERSION, action, &form).await {
        Ok(a) => a,
        Err(e)
            if error_code(&e) == Some("ValidationError")
                && e.to_string().contains("No updates are to be performed") =>
        {
            line(out, &format!(" ✅  {name} (no changes)"))?;
            let state = existing.unwrap_or_default();
            return Ok(state.outputs);
        }
        Err(e) => return Err(e.context(format!("{action} {name}"))),
    };
    let stack_id = answer
        .find("StackId")
        .map(|s| s.text.clone())
        .ok_or_else(|| anyhow!("{action} answered without a StackId"))?;
    let mut follow = Follow {
        c,
        name,
        total: plan.template.resources().count() + 1,
        seen,
        done: 0,
    };
    let (end, failures) = follow.until_settled(&stack_id, out).await?;
    if end.status != "CREATE_COMPLETE" && end.status != "UPDATE_COMPLETE" {
        bail!(
            "{name} failed: {} {}{}",
            end.status,
            end.reason,
            failure_list(&failures)
        );
    }
    line(
        out,
        &format!(
            " ✅  {name} ({:.2}s)\nStack ARN:\n{stack_id}",
            started.elapsed().as_secs_f64()
        ),
    )?;
    Ok(end.outputs)
}

/// A template too large for a body: the asset CDK published for it, else an upload to the
/// bootstrap bucket; its URL.
async fn template_url(c: &Client, plan: &Plan<'_>, account: &str, region: &str) -> anyhow::Result<String> {
    let (bucket, key) = match plan
        .artifact
        .template_url
        .as_deref()
        .map(|u| substitute(u, account, region))
        .and_then(|u| {
            u.strip_prefix("s3://")
                .and_then(|r| r.split_once('/'))
                .map(|(b, k)| (b.to_owned(), k.to_owned()))
        }) {
        Some((b, k)) => (b, k),
        None => {
            use sha2::Digest as _;
            let hash = crate::client::hex(&sha2::Sha256::digest(plan.body.as_bytes()));
            (assets_bucket(account, region), format!("{hash}.json"))
        }
    };
    let path = format!("/{}/{}", uri_encode(&bucket, false), uri_encode(&key, true));
    if c.request("HEAD", &path, &[], &[], &[]).await.is_err() {
        c.put_object(&bucket, &key, plan.body.as_bytes(), "application/json")
            .await
            .with_context(|| {
                format!(
                    "uploading the template of {} to s3://{bucket}/{key}",
                    plan.artifact.stack_name
                )
            })?;
    }
    Ok(format!("https://s3.{region}.amazonaws.com/{bucket}/{key}"))
}

/// `kinesis-data destroy`: deletes `names` (or, with `all`, every stack of `app`), each
/// after the stacks that depend on it, and waits for each.
pub async fn destroy(
    target: &Target,
    app: Option<&Path>,
    names: &[String],
    all: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Vec<String>> {
    let c = target.client()?;
    let order: Vec<String> = match app {
        Some(dir) => {
            let assembly = load_assembly(dir)?;
            for n in names {
                ensure!(
                    assembly.stacks.iter().any(|s| &s.id == n || &s.stack_name == n),
                    "no stack {n} in {}",
                    dir.display()
                );
            }
            assembly
                .stacks
                .iter()
                .rev()
                .filter(|s| all || names.iter().any(|n| n == &s.id || n == &s.stack_name))
                .map(|s| s.stack_name.clone())
                .collect()
        }
        None => {
            ensure!(!all, "--all needs --app PATH (the cloud assembly)");
            names.to_vec()
        }
    };
    ensure!(
        !order.is_empty(),
        "name the stacks to destroy, or give --app PATH --all"
    );
    let mut deleted = Vec::new();
    for name in &order {
        line(out, &format!("{name}: destroying..."))?;
        if delete_stack(&c, name, out).await? {
            line(out, &format!(" ✅  {name}: destroyed"))?;
            deleted.push(name.clone());
        } else {
            line(out, &format!(" ✅  {name}: does not exist (nothing to destroy)"))?;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, text).expect("write");
    }

    #[test]
    fn assemblies_are_read_and_ordered() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        write(
            dir.path(),
            "manifest.json",
            r#"{"version": "36.0.0", "artifacts": {
                "B.assets": {"type": "cdk:asset-manifest", "properties": {"file": "B.assets.json"}},
                "B": {"type": "aws:cloudformation:stack", "environment": "aws://unknown-account/unknown-region",
                      "properties": {"templateFile": "B.template.json", "requiresBootstrapStackVersion": 6,
                                     "parameters": {"P": "1"}, "stackName": "b-stack"},
                      "dependencies": ["A", "B.assets"]},
                "A": {"type": "aws:cloudformation:stack", "environment": "aws://000000000000/eu-west-1",
                      "properties": {"templateFile": "A.template.json"}},
                "Tree": {"type": "cdk:tree", "properties": {"file": "tree.json"}}}}"#,
        );
        let a = load_assembly(dir.path())?;
        let names: Vec<&str> = a.stacks.iter().map(|s| s.stack_name.as_str()).collect();
        assert_eq!(names, ["A", "b-stack"]);
        assert_eq!(a.bootstrap_version, 6);
        assert_eq!(a.stacks[1].depends_on, ["A"]);
        assert_eq!(a.stacks[1].asset_manifests, [dir.path().join("B.assets.json")]);
        assert_eq!(a.stacks[1].parameters.get("P").map(String::as_str), Some("1"));
        assert_eq!(a.stacks[0].region.as_deref(), Some("eu-west-1"));
        assert_eq!(a.stacks[1].region, None);

        let cyclic = vec![
            StackArtifact {
                id: "X".into(),
                stack_name: "X".into(),
                template_file: PathBuf::new(),
                template_url: None,
                parameters: BTreeMap::new(),
                tags: BTreeMap::new(),
                depends_on: vec!["Y".into()],
                asset_manifests: vec![],
                account: None,
                region: None,
            },
            StackArtifact {
                id: "Y".into(),
                stack_name: "Y".into(),
                template_file: PathBuf::new(),
                template_url: None,
                parameters: BTreeMap::new(),
                tags: BTreeMap::new(),
                depends_on: vec!["X".into()],
                asset_manifests: vec![],
                account: None,
                region: None,
            },
        ];
        assert!(order(cyclic).is_err());
        Ok(())
    }

    #[test]
    fn asset_manifests_substitute_and_folders_zip_deterministically() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        write(dir.path(), "asset.abc/index.py", "def handler(e, c):\n    return 1\n");
        write(dir.path(), "asset.abc/lib/util.py", "X = 1\n");
        write(
            dir.path(),
            "S.assets.json",
            r#"{"version": "36.0.0", "files": {"abc": {"source": {"path": "asset.abc", "packaging": "zip"},
               "destinations": {"current_account-current_region": {
                 "bucketName": "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}", "objectKey": "abc.zip"}}}},
               "dockerImages": {}}"#,
        );
        let assets = file_assets(&dir.path().join("S.assets.json"), "000000000000", "us-east-1")?;
        assert_eq!(assets.len(), 1);
        assert_eq!(assets[0].bucket, "cdk-hnb659fds-assets-000000000000-us-east-1");
        assert_eq!(assets[0].key, "abc.zip");
        let a = asset_bytes(&assets[0])?;
        assert_eq!(a, zip_folder(&dir.path().join("asset.abc"))?);
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(a))?;
        let names: Vec<String> = (0..z.len())
            .map(|i| z.by_index(i).map(|f| f.name().unwrap_or_default().to_string()))
            .collect::<Result<_, _>>()?;
        assert_eq!(names, ["index.py", "lib/util.py"]);
        write(
            dir.path(),
            "D.assets.json",
            r#"{"files": {}, "dockerImages": {"img": {"source": {"directory": "x"}, "destinations": {}}}}"#,
        );
        assert!(file_assets(&dir.path().join("D.assets.json"), "0", "r").is_err());
        Ok(())
    }

    #[test]
    fn parameters_split_by_stack() -> anyhow::Result<()> {
        let (per, global) = parse_parameters(&["A:Env=prod".into(), "Size=3".into(), "B:Url=http://x?a=b".into()])?;
        assert_eq!(per["A"]["Env"], "prod");
        assert_eq!(per["B"]["Url"], "http://x?a=b");
        assert_eq!(global["Size"], "3");
        assert!(parse_parameters(&["nothing".into()]).is_err());
        assert!(parse_parameters(&[":K=v".into()]).is_err());
        Ok(())
    }
}
