//! Applying a pipeline to a running server through its public APIs (the same calls a user's
//! AWS CLI makes, so the same checks apply), idempotently: every resource is described
//! first and only what is missing or different is created or changed. With `dry_run` the
//! same walk only records what it would do (`kinesis-data plan`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::model::*;
use crate::client::{Client, error_code, uri_encode};

/// How long a created resource may take to become ACTIVE.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// IAM's API version.
const IAM_VERSION: &str = "2010-05-08";

/// What applying did (or, dry, would do) to one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Created.
    Create(String),
    /// Changed: what.
    Update(String, String),
    /// Already as described.
    Unchanged(String),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Create(r) => write!(f, "+ {r}"),
            Change::Update(r, what) => write!(f, "~ {r}: {what}"),
            Change::Unchanged(r) => write!(f, "= {r}"),
        }
    }
}

/// Applies (or plans) a pipeline.
pub struct Applier<'a> {
    client: &'a Client,
    account: String,
    region: String,
    dry_run: bool,
    /// What happened, in order.
    pub changes: Vec<Change>,
    /// Where `code.example` functions are built (the workspace root), if known.
    workspace: Option<PathBuf>,
    /// When this applier was made (epoch seconds).
    started_secs: i64,
    /// Where `code.example` binaries are taken from instead of building them.
    examples_dir: Option<PathBuf>,
}

fn is_missing(e: &anyhow::Error) -> bool {
    matches!(
        error_code(e),
        Some(
            "NoSuchEntity"
                | "ResourceNotFoundException"
                | "NotFoundException"
                | "EntityNotFoundException"
                | "NoSuchBucket"
                | "HTTP404"
        )
    )
}

fn service_principal(s: &str) -> String {
    if s.ends_with(".amazonaws.com") || s.ends_with(".amazonaws.com.cn") {
        s.to_owned()
    } else {
        format!("{s}.amazonaws.com")
    }
}

fn trust_document(services: &[String]) -> Value {
    let principals: Vec<String> = services.iter().map(|s| service_principal(s)).collect();
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": if principals.len() == 1 { json!(principals[0]) } else { json!(principals) }},
        "Action": "sts:AssumeRole"
    }]})
}

fn policy_document(statements: &[Statement]) -> Value {
    let s: Vec<Value> = statements
        .iter()
        .map(|s| json!({"Effect": s.effect, "Action": s.actions, "Resource": s.resources}))
        .collect();
    json!({"Version": "2012-10-17", "Statement": s})
}

/// The managed policy's ARN of `name` (a bare name is an AWS managed policy).
fn managed_arn(name: &str) -> String {
    if name.starts_with("arn:") {
        name.to_owned()
    } else {
        format!("arn:aws:iam::aws:policy/{name}")
    }
}

/// A URL-encoded JSON document as IAM returns it, parsed.
fn decode_document(raw: &str) -> Option<Value> {
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8().ok()?;
    serde_json::from_str(&decoded).ok()
}

/// A zip holding `files` with fixed timestamps (the same input gives the same bytes, so
/// the same CodeSha256).
pub fn deterministic_zip(files: &[(String, Vec<u8>, u32)]) -> anyhow::Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes, mode) in files {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(*mode);
        w.start_file(name.as_str(), opts)?;
        w.write_all(bytes)?;
    }
    Ok(w.finish()?.into_inner())
}

/// The workspace root this binary was built from, if it is still there.
pub fn workspace_root() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.parent()?.to_path_buf();
    dir.join("examples/functions").is_dir().then_some(dir)
}

/// The release binary of workspace example `name`, built with cargo when missing.
pub fn example_binary(workspace: &Path, name: &str, quiet: bool) -> anyhow::Result<PathBuf> {
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("example name {name:?} is not a crate name");
    }
    if !workspace.join("examples/functions").join(name).is_dir() {
        bail!(
            "there is no example function {name:?} under {}",
            workspace.join("examples/functions").display()
        );
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let bin = target.join("release").join(name);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    if !quiet {
        eprintln!("building the example function {name} (cargo build --release -p {name})");
    }
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", name])
        .current_dir(workspace)
        .status()
        .with_context(|| format!("cannot run cargo to build the example {name}"))?;
    if !status.success() || !bin.is_file() {
        bail!("building the example {name} failed ({status})");
    }
    Ok(bin)
}

impl<'a> Applier<'a> {
    /// An applier acting through `client` for `account` in `region`.
    pub fn new(client: &'a Client, account: &str, region: &str, dry_run: bool) -> Self {
        Self {
            client,
            account: account.to_owned(),
            region: region.to_owned(),
            dry_run,
            changes: Vec::new(),
            workspace: workspace_root(),
            started_secs: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            examples_dir: None,
        }
    }

    /// Takes `code.example` binaries from `dir` (`<dir>/<name>`) instead of building them.
    pub fn with_examples_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.examples_dir = dir;
        self
    }

    /// Applies every resource, in dependency order.
    pub async fn apply(&mut self, p: &Pipeline) -> anyhow::Result<()> {
        for r in &p.roles {
            self.role(r)
                .await
                .with_context(|| format!("role {}", r.name.get_ref()))?;
        }
        for s in &p.streams {
            self.stream(s)
                .await
                .with_context(|| format!("stream {}", s.name.get_ref()))?;
        }
        for b in &p.buckets {
            self.bucket(b)
                .await
                .with_context(|| format!("bucket {}", b.name.get_ref()))?;
        }
        for f in &p.functions {
            self.function(p, f)
                .await
                .with_context(|| format!("function {}", f.name.get_ref()))?;
        }
        for b in &p.buckets {
            self.notifications(b)
                .await
                .with_context(|| format!("bucket {} notifications", b.name.get_ref()))?;
        }
        for d in &p.delivery_streams {
            self.delivery_stream(d)
                .await
                .with_context(|| format!("delivery stream {}", d.name.get_ref()))?;
        }
        for m in &p.event_source_mappings {
            self.mapping(m)
                .await
                .with_context(|| format!("event source mapping {} → {}", m.stream.get_ref(), m.function.get_ref()))?;
        }
        for d in &p.glue_databases {
            self.glue_database(d)
                .await
                .with_context(|| format!("Glue database {}", d.name.get_ref()))?;
        }
        for t in &p.glue_tables {
            self.glue_table(t)
                .await
                .with_context(|| format!("Glue table {}.{}", t.database.get_ref(), t.name.get_ref()))?;
        }
        for a in &p.rest_apis {
            self.rest_api(a)
                .await
                .with_context(|| format!("REST API {}", a.name.get_ref()))?;
        }
        for j in &p.batch_jobs {
            self.batch_job(j)
                .await
                .with_context(|| format!("batch job {}", j.name.get_ref()))?;
        }
        Ok(())
    }

    fn note(&mut self, c: Change) {
        self.changes.push(c);
    }

    fn role_arn(&self, name: &str) -> String {
        format!("arn:aws:iam::{}:role/{name}", self.account)
    }

    fn function_arn(&self, name: &str) -> String {
        format!("arn:aws:lambda:{}:{}:function:{name}", self.region, self.account)
    }

    fn stream_arn(&self, name: &str) -> String {
        format!("arn:aws:kinesis:{}:{}:stream/{name}", self.region, self.account)
    }

    async fn iam(&self, action: &str, params: &[(&str, &str)]) -> anyhow::Result<crate::client::Node> {
        self.client.query("iam", IAM_VERSION, action, params).await
    }

    // ------------------------------------------------------------------ IAM

    async fn role(&mut self, r: &Role) -> anyhow::Result<()> {
        let name = r.name.get_ref().as_str();
        let what = format!("role {name}");
        let trust = trust_document(&r.trust);
        let existing = match self.iam("GetRole", &[("RoleName", name)]).await {
            Ok(x) => Some(x),
            Err(e) if is_missing(&e) => None,
            Err(e) => return Err(e),
        };
        let mut changed = Vec::new();
        match &existing {
            None => {
                if !self.dry_run {
                    self.iam(
                        "CreateRole",
                        &[("RoleName", name), ("AssumeRolePolicyDocument", &trust.to_string())],
                    )
                    .await?;
                }
            }
            Some(doc) => {
                let current = doc
                    .find("AssumeRolePolicyDocument")
                    .map(|d| d.text.as_str())
                    .and_then(decode_document);
                if current.as_ref() != Some(&trust) {
                    changed.push("trust policy");
                    if !self.dry_run {
                        self.iam(
                            "UpdateAssumeRolePolicy",
                            &[("RoleName", name), ("PolicyDocument", &trust.to_string())],
                        )
                        .await?;
                    }
                }
            }
        }
        // Managed policies.
        let want: BTreeSet<String> = r.managed_policies.iter().map(|p| managed_arn(p)).collect();
        let have: BTreeSet<String> = if existing.is_some() {
            let list = self.iam("ListAttachedRolePolicies", &[("RoleName", name)]).await?;
            list.find("AttachedPolicies")
                .map(|a| {
                    a.all("member")
                        .filter_map(|m| m.text_of("PolicyArn"))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        } else {
            BTreeSet::new()
        };
        for arn in want.difference(&have) {
            changed.push("managed policies");
            if !self.dry_run {
                self.iam("AttachRolePolicy", &[("RoleName", name), ("PolicyArn", arn)])
                    .await?;
            }
        }
        for arn in have.difference(&want) {
            changed.push("managed policies");
            if !self.dry_run {
                self.iam("DetachRolePolicy", &[("RoleName", name), ("PolicyArn", arn)])
                    .await?;
            }
        }
        // The inline policy.
        if !r.statements.is_empty() {
            let doc = policy_document(&r.statements);
            let current = if existing.is_some() {
                match self
                    .iam("GetRolePolicy", &[("RoleName", name), ("PolicyName", "pipeline")])
                    .await
                {
                    Ok(x) => x
                        .find("PolicyDocument")
                        .map(|d| d.text.as_str())
                        .and_then(decode_document),
                    Err(e) if is_missing(&e) => None,
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            if current.as_ref() != Some(&doc) {
                changed.push("inline policy");
                if !self.dry_run {
                    self.iam(
                        "PutRolePolicy",
                        &[
                            ("RoleName", name),
                            ("PolicyName", "pipeline"),
                            ("PolicyDocument", &doc.to_string()),
                        ],
                    )
                    .await?;
                }
            }
        }
        changed.dedup();
        self.note(match (existing, changed.is_empty()) {
            (None, _) => Change::Create(what),
            (Some(_), true) => Change::Unchanged(what),
            (Some(_), false) => Change::Update(what, changed.join(", ")),
        });
        Ok(())
    }

    // ------------------------------------------------------------------ Kinesis

    async fn kinesis(&self, op: &str, body: Value) -> anyhow::Result<Value> {
        self.client
            .json("kinesis", &format!("Kinesis_20131202.{op}"), &body)
            .await
    }

    async fn stream(&mut self, s: &Stream) -> anyhow::Result<()> {
        let name = s.name.get_ref().as_str();
        let what = format!("stream {name}");
        let summary = match self.kinesis("DescribeStreamSummary", json!({"StreamName": name})).await {
            Ok(v) => Some(v["StreamDescriptionSummary"].clone()),
            Err(e) if is_missing(&e) => None,
            Err(e) => return Err(e),
        };
        let Some(summary) = summary else {
            if !self.dry_run {
                self.kinesis("CreateStream", json!({"StreamName": name, "ShardCount": s.shards}))
                    .await?;
                self.wait_stream(name).await?;
                if s.retention_hours != 24 {
                    self.kinesis(
                        "IncreaseStreamRetentionPeriod",
                        json!({"StreamName": name, "RetentionPeriodHours": s.retention_hours}),
                    )
                    .await?;
                    self.wait_stream(name).await?;
                }
            }
            self.note(Change::Create(what));
            return Ok(());
        };
        let mut changed = Vec::new();
        let shards = summary["OpenShardCount"].as_u64().unwrap_or(0);
        if shards != u64::from(s.shards) {
            changed.push(format!("shards {shards} → {}", s.shards));
            if !self.dry_run {
                self.kinesis(
                    "UpdateShardCount",
                    json!({"StreamName": name, "TargetShardCount": s.shards, "ScalingType": "UNIFORM_SCALING"}),
                )
                .await?;
                self.wait_stream(name).await?;
            }
        }
        let hours = summary["RetentionPeriodHours"].as_u64().unwrap_or(24);
        if hours != u64::from(s.retention_hours) {
            changed.push(format!("retention {hours} h → {} h", s.retention_hours));
            if !self.dry_run {
                let op = if u64::from(s.retention_hours) > hours {
                    "IncreaseStreamRetentionPeriod"
                } else {
                    "DecreaseStreamRetentionPeriod"
                };
                self.kinesis(
                    op,
                    json!({"StreamName": name, "RetentionPeriodHours": s.retention_hours}),
                )
                .await?;
                self.wait_stream(name).await?;
            }
        }
        self.note(if changed.is_empty() {
            Change::Unchanged(what)
        } else {
            Change::Update(what, changed.join(", "))
        });
        Ok(())
    }

    async fn wait_stream(&self, name: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let v = self
                .kinesis("DescribeStreamSummary", json!({"StreamName": name}))
                .await?;
            if v["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE" {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("stream {name} did not become ACTIVE within {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // ------------------------------------------------------------------ S3

    async fn bucket(&mut self, b: &Bucket) -> anyhow::Result<()> {
        let name = b.name.get_ref().as_str();
        let what = format!("bucket {name}");
        let path = format!("/{}", uri_encode(name, false));
        let exists = match self.client.request("HEAD", &path, &[], &[], &[]).await {
            Ok(_) => true,
            Err(e) if is_missing(&e) => false,
            Err(e) => return Err(e),
        };
        if !exists {
            if !self.dry_run {
                self.client.request("PUT", &path, &[], &[], &[]).await?;
                if b.versioning {
                    self.put_versioning(&path).await?;
                }
            }
            self.note(Change::Create(what));
            return Ok(());
        }
        let mut changed = Vec::new();
        if b.versioning {
            let v = self
                .client
                .request("GET", &path, &[("versioning", "")], &[], &[])
                .await?;
            let enabled = String::from_utf8_lossy(&v.body).contains("<Status>Enabled</Status>");
            if !enabled {
                changed.push("versioning enabled".to_owned());
                if !self.dry_run {
                    self.put_versioning(&path).await?;
                }
            }
        }
        self.note(if changed.is_empty() {
            Change::Unchanged(what)
        } else {
            Change::Update(what, changed.join(", "))
        });
        Ok(())
    }

    async fn put_versioning(&self, path: &str) -> anyhow::Result<()> {
        let body = r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#;
        self.client
            .request(
                "PUT",
                path,
                &[("versioning", "")],
                &[("content-type", "application/xml")],
                body.as_bytes(),
            )
            .await?;
        Ok(())
    }

    async fn notifications(&mut self, b: &Bucket) -> anyhow::Result<()> {
        if b.notifications.is_empty() {
            return Ok(());
        }
        let name = b.name.get_ref().as_str();
        let what = format!("bucket {name} notifications");
        let mut xml = String::from(r#"<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#);
        for (i, n) in b.notifications.iter().enumerate() {
            let f = n.function.get_ref();
            xml.push_str(&format!(
                "<CloudFunctionConfiguration><Id>pipeline-{i}</Id><CloudFunction>{}</CloudFunction>",
                self.function_arn(f)
            ));
            for e in &n.events {
                xml.push_str(&format!("<Event>{}</Event>", xml_escape(e)));
            }
            if n.prefix.is_some() || n.suffix.is_some() {
                xml.push_str("<Filter><S3Key>");
                if let Some(p) = &n.prefix {
                    xml.push_str(&format!(
                        "<FilterRule><Name>prefix</Name><Value>{}</Value></FilterRule>",
                        xml_escape(p)
                    ));
                }
                if let Some(s) = &n.suffix {
                    xml.push_str(&format!(
                        "<FilterRule><Name>suffix</Name><Value>{}</Value></FilterRule>",
                        xml_escape(s)
                    ));
                }
                xml.push_str("</S3Key></Filter>");
            }
            xml.push_str("</CloudFunctionConfiguration>");
        }
        xml.push_str("</NotificationConfiguration>");
        let path = format!("/{}", uri_encode(name, false));
        let current = self
            .client
            .request("GET", &path, &[("notification", "")], &[], &[])
            .await;
        let same = match &current {
            Ok(r) => {
                b.notifications.iter().all(|n| {
                    let body = String::from_utf8_lossy(&r.body);
                    body.contains(&self.function_arn(n.function.get_ref()))
                }) && String::from_utf8_lossy(&r.body)
                    .matches("<CloudFunctionConfiguration>")
                    .count()
                    + String::from_utf8_lossy(&r.body)
                        .matches("<LambdaFunctionConfiguration>")
                        .count()
                    == b.notifications.len()
            }
            Err(e) if self.dry_run && is_missing(e) => false,
            Err(_) => false,
        };
        if same {
            self.note(Change::Unchanged(what));
            return Ok(());
        }
        if !self.dry_run {
            // S3 may invoke each function for this bucket.
            for n in &b.notifications {
                self.permission(
                    n.function.get_ref(),
                    &format!("pipeline-s3-{name}"),
                    "s3.amazonaws.com",
                    Some(&format!("arn:aws:s3:::{name}")),
                )
                .await?;
            }
            self.client
                .request(
                    "PUT",
                    &path,
                    &[("notification", "")],
                    &[("content-type", "application/xml")],
                    xml.as_bytes(),
                )
                .await?;
        }
        let had_any = current.as_ref().is_ok_and(|r| {
            let body = String::from_utf8_lossy(&r.body);
            body.contains("FunctionConfiguration>")
        });
        self.note(if had_any {
            Change::Update(what, "notification configuration".into())
        } else {
            Change::Create(what)
        });
        Ok(())
    }

    // ------------------------------------------------------------------ Lambda

    async fn lambda(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        self.client.rest_json("lambda", method, path, query, body).await
    }

    /// AddPermission, already present being fine.
    async fn permission(
        &self,
        function: &str,
        sid: &str,
        principal: &str,
        source_arn: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut body = json!({"StatementId": sid, "Action": "lambda:InvokeFunction", "Principal": principal});
        if let Some(s) = source_arn {
            body["SourceArn"] = json!(s);
        }
        let path = format!("/2015-03-31/functions/{}/policy", uri_encode(function, false));
        match self.lambda("POST", &path, &[], Some(&body)).await {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("ResourceConflictException") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The zip of a function's code.
    fn code_zip(&self, p: &Pipeline, f: &Function) -> anyhow::Result<Vec<u8>> {
        let c = &f.code;
        if let Some(example) = &c.example {
            if let Some(dir) = &self.examples_dir {
                let bin = dir.join(example);
                let bytes = std::fs::read(&bin).with_context(|| format!("cannot read {}", bin.display()))?;
                return deterministic_zip(&[("bootstrap".into(), bytes, 0o755)]);
            }
            let ws = self.workspace.as_deref().ok_or_else(|| {
                anyhow!("the workspace this binary was built from is gone; use `code.zip` or `code.path`")
            })?;
            let bin = example_binary(ws, example, false)?;
            let bytes = std::fs::read(&bin).with_context(|| format!("cannot read {}", bin.display()))?;
            return deterministic_zip(&[("bootstrap".into(), bytes, 0o755)]);
        }
        if let Some(zip) = &c.zip {
            let path = p.base_dir.join(zip);
            return std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()));
        }
        let Some(rel) = &c.path else {
            bail!("the function has no code");
        };
        let path = p.base_dir.join(rel);
        let mut files = Vec::new();
        if path.is_dir() {
            collect(&path, &path, &mut files)?;
        } else {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| anyhow!("{} is not a file name", path.display()))?;
            let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            files.push((name, bytes, 0o755));
        }
        deterministic_zip(&files)
    }

    async fn function(&mut self, p: &Pipeline, f: &Function) -> anyhow::Result<()> {
        let name = f.name.get_ref().as_str();
        let what = format!("function {name}");
        let path = format!("/2015-03-31/functions/{}", uri_encode(name, false));
        let existing = match self.lambda("GET", &path, &[], None).await {
            Ok(v) => Some(v),
            Err(e) if is_missing(&e) => None,
            Err(e) => return Err(e),
        };
        let zip = self.code_zip(p, f)?;
        let sha = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&zip));
        let zip_b64 = base64::engine::general_purpose::STANDARD.encode(&zip);
        let config = json!({
            "Runtime": f.runtime,
            "Handler": f.handler,
            "Role": self.role_arn(f.role.get_ref()),
            "Timeout": f.timeout,
            "MemorySize": f.memory,
            "Environment": {"Variables": f.environment},
        });
        let Some(existing) = existing else {
            if !self.dry_run {
                let mut body = config.clone();
                body["FunctionName"] = json!(name);
                body["Code"] = json!({"ZipFile": zip_b64});
                self.lambda("POST", "/2015-03-31/functions", &[], Some(&body)).await?;
                self.wait_function(&path).await?;
            }
            self.note(Change::Create(what));
            return Ok(());
        };
        let c = &existing["Configuration"];
        let mut changed = Vec::new();
        if c["CodeSha256"].as_str() != Some(sha.as_str()) {
            changed.push("code".to_owned());
            if !self.dry_run {
                self.lambda("PUT", &format!("{path}/code"), &[], Some(&json!({"ZipFile": zip_b64})))
                    .await?;
                self.wait_function(&path).await?;
            }
        }
        let env_now: BTreeMap<String, String> =
            serde_json::from_value(c["Environment"]["Variables"].clone()).unwrap_or_default();
        let differs = c["Runtime"] != config["Runtime"]
            || c["Handler"] != config["Handler"]
            || c["Role"] != config["Role"]
            || c["Timeout"] != config["Timeout"]
            || c["MemorySize"] != config["MemorySize"]
            || env_now != f.environment;
        if differs {
            changed.push("configuration".to_owned());
            if !self.dry_run {
                self.lambda("PUT", &format!("{path}/configuration"), &[], Some(&config))
                    .await?;
                self.wait_function(&path).await?;
            }
        }
        self.note(if changed.is_empty() {
            Change::Unchanged(what)
        } else {
            Change::Update(what, changed.join(", "))
        });
        Ok(())
    }

    async fn wait_function(&self, path: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let v = self.lambda("GET", path, &[], None).await?;
            let c = &v["Configuration"];
            if c["State"] == "Active" && c["LastUpdateStatus"] != "InProgress" {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the function did not become Active within {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn mapping(&mut self, m: &EventSourceMapping) -> anyhow::Result<()> {
        let function = m.function.get_ref().as_str();
        let stream_arn = self.stream_arn(m.stream.get_ref());
        let what = format!("event source mapping {} → {function}", m.stream.get_ref());
        let list = self
            .lambda(
                "GET",
                "/2015-03-31/event-source-mappings",
                &[("FunctionName", function), ("EventSourceArn", &stream_arn)],
                None,
            )
            .await?;
        let existing = list["EventSourceMappings"].as_array().and_then(|a| a.first()).cloned();
        match existing {
            None => {
                if !self.dry_run {
                    let body = json!({
                        "FunctionName": function,
                        "EventSourceArn": stream_arn,
                        "StartingPosition": m.starting_position,
                        "BatchSize": m.batch_size,
                    });
                    self.lambda("POST", "/2015-03-31/event-source-mappings", &[], Some(&body))
                        .await?;
                }
                self.note(Change::Create(what));
            }
            Some(e) if e["BatchSize"].as_u64() != Some(u64::from(m.batch_size)) => {
                if !self.dry_run {
                    let uuid = e["UUID"].as_str().unwrap_or_default();
                    self.lambda(
                        "PUT",
                        &format!("/2015-03-31/event-source-mappings/{}", uri_encode(uuid, false)),
                        &[],
                        Some(&json!({"BatchSize": m.batch_size})),
                    )
                    .await?;
                }
                self.note(Change::Update(what, format!("batch size → {}", m.batch_size)));
            }
            Some(_) => self.note(Change::Unchanged(what)),
        }
        Ok(())
    }

    // ------------------------------------------------------------------ Firehose

    async fn firehose(&self, op: &str, body: Value) -> anyhow::Result<Value> {
        self.client
            .json("firehose", &format!("Firehose_20150804.{op}"), &body)
            .await
    }

    fn destination(&self, d: &DeliveryStream) -> Value {
        let role = self.role_arn(d.role.get_ref());
        let mut dest = json!({
            "RoleARN": role,
            "BucketARN": format!("arn:aws:s3:::{}", d.bucket.get_ref()),
            "BufferingHints": {"SizeInMBs": d.buffer_mib, "IntervalInSeconds": d.buffer_seconds},
            "CompressionFormat": d.compression,
        });
        if let Some(p) = &d.prefix {
            dest["Prefix"] = json!(p);
        }
        if let Some(p) = &d.error_prefix {
            dest["ErrorOutputPrefix"] = json!(p);
        }
        if let Some(q) = &d.partition_query {
            dest["DynamicPartitioningConfiguration"] = json!({"Enabled": true});
            dest["ProcessingConfiguration"] = json!({"Enabled": true, "Processors": [{
                "Type": "MetadataExtraction",
                "Parameters": [
                    {"ParameterName": "MetadataExtractionQuery", "ParameterValue": q},
                    {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}
                ]
            }]});
        }
        if let Some(f) = &d.processor {
            let lambda = json!({
                "Type": "Lambda",
                "Parameters": [{"ParameterName": "LambdaArn", "ParameterValue": self.function_arn(f.get_ref())}]
            });
            match dest["ProcessingConfiguration"]["Processors"].as_array_mut() {
                Some(list) => list.push(lambda),
                None => dest["ProcessingConfiguration"] = json!({"Enabled": true, "Processors": [lambda]}),
            }
        }
        dest
    }

    async fn delivery_stream(&mut self, d: &DeliveryStream) -> anyhow::Result<()> {
        let name = d.name.get_ref().as_str();
        let what = format!("delivery stream {name}");
        let existing = match self
            .firehose("DescribeDeliveryStream", json!({"DeliveryStreamName": name}))
            .await
        {
            Ok(v) => Some(v["DeliveryStreamDescription"].clone()),
            Err(e) if is_missing(&e) => None,
            Err(e) => return Err(e),
        };
        let dest = self.destination(d);
        let Some(existing) = existing else {
            if !self.dry_run {
                let mut body = json!({"DeliveryStreamName": name, "ExtendedS3DestinationConfiguration": dest});
                match &d.source {
                    Some(s) => {
                        body["DeliveryStreamType"] = json!("KinesisStreamAsSource");
                        body["KinesisStreamSourceConfiguration"] = json!({
                            "KinesisStreamARN": self.stream_arn(s.get_ref()),
                            "RoleARN": self.role_arn(d.role.get_ref()),
                        });
                    }
                    None => body["DeliveryStreamType"] = json!("DirectPut"),
                }
                self.firehose("CreateDeliveryStream", body).await?;
                let deadline = Instant::now() + READY_TIMEOUT;
                loop {
                    let v = self
                        .firehose("DescribeDeliveryStream", json!({"DeliveryStreamName": name}))
                        .await?;
                    if v["DeliveryStreamDescription"]["DeliveryStreamStatus"] == "ACTIVE" {
                        break;
                    }
                    if Instant::now() > deadline {
                        bail!("the delivery stream did not become ACTIVE within {READY_TIMEOUT:?}");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            self.note(Change::Create(what));
            return Ok(());
        };
        let current = &existing["Destinations"][0]["ExtendedS3DestinationDescription"];
        let mut changed = Vec::new();
        for (field, want) in [
            ("BufferingHints", &dest["BufferingHints"]),
            ("CompressionFormat", &dest["CompressionFormat"]),
            ("Prefix", &dest["Prefix"]),
            ("ErrorOutputPrefix", &dest["ErrorOutputPrefix"]),
            ("BucketARN", &dest["BucketARN"]),
        ] {
            let have = &current[field];
            let same = have == want || (want.is_null() && have.as_str() == Some(""));
            if !same {
                changed.push(field);
            }
        }
        let source_now = existing["Source"]["KinesisStreamSourceDescription"]["KinesisStreamARN"]
            .as_str()
            .map(str::to_owned);
        let source_want = d.source.as_ref().map(|s| self.stream_arn(s.get_ref()));
        if source_now != source_want {
            bail!(
                "its source differs from the running delivery stream's ({}); a source cannot be changed: delete the delivery stream first",
                source_now.as_deref().unwrap_or("Direct PUT")
            );
        }
        if !changed.is_empty() && !self.dry_run {
            let mut update = json!({"BufferingHints": dest["BufferingHints"], "CompressionFormat": dest["CompressionFormat"], "BucketARN": dest["BucketARN"], "RoleARN": dest["RoleARN"]});
            if let Some(p) = dest.get("Prefix") {
                update["Prefix"] = p.clone();
            }
            if let Some(p) = dest.get("ErrorOutputPrefix") {
                update["ErrorOutputPrefix"] = p.clone();
            }
            self.firehose(
                "UpdateDestination",
                json!({
                    "DeliveryStreamName": name,
                    "CurrentDeliveryStreamVersionId": existing["VersionId"],
                    "DestinationId": existing["Destinations"][0]["DestinationId"],
                    "ExtendedS3DestinationUpdate": update,
                }),
            )
            .await?;
        }
        self.note(if changed.is_empty() {
            Change::Unchanged(what)
        } else {
            Change::Update(what, changed.join(", "))
        });
        Ok(())
    }

    // ------------------------------------------------------------------ Glue

    async fn glue(&self, op: &str, body: Value) -> anyhow::Result<Value> {
        self.client.json("glue", &format!("AWSGlue.{op}"), &body).await
    }

    async fn glue_database(&mut self, d: &GlueDatabase) -> anyhow::Result<()> {
        let name = d.name.get_ref().as_str();
        let what = format!("Glue database {name}");
        match self.glue("GetDatabase", json!({"Name": name})).await {
            Ok(_) => self.note(Change::Unchanged(what)),
            Err(e) if is_missing(&e) => {
                if !self.dry_run {
                    let mut input = json!({"Name": name});
                    if let Some(desc) = &d.description {
                        input["Description"] = json!(desc);
                    }
                    self.glue("CreateDatabase", json!({"DatabaseInput": input})).await?;
                }
                self.note(Change::Create(what));
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn table_input(t: &GlueTable) -> Value {
        let cols = |c: &[Column]| -> Vec<Value> { c.iter().map(|c| json!({"Name": c.name, "Type": c.kind})).collect() };
        let (serde, input, output) = match t.format.as_str() {
            "parquet" => (
                "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            ),
            "csv" => (
                "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe",
                "org.apache.hadoop.mapred.TextInputFormat",
                "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
            ),
            _ => (
                "org.openx.data.jsonserde.JsonSerDe",
                "org.apache.hadoop.mapred.TextInputFormat",
                "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
            ),
        };
        let mut serde_params = json!({});
        if t.format == "csv" {
            serde_params = json!({"field.delim": ","});
        }
        json!({
            "Name": t.name.get_ref(),
            "TableType": "EXTERNAL_TABLE",
            "Parameters": t.parameters,
            "PartitionKeys": cols(&t.partition_keys),
            "StorageDescriptor": {
                "Columns": cols(&t.columns),
                "Location": t.location,
                "InputFormat": input,
                "OutputFormat": output,
                "SerdeInfo": {"SerializationLibrary": serde, "Parameters": serde_params},
            },
        })
    }

    async fn glue_table(&mut self, t: &GlueTable) -> anyhow::Result<()> {
        let db = t.database.get_ref().as_str();
        let name = t.name.get_ref().as_str();
        let what = format!("Glue table {db}.{name}");
        let input = Self::table_input(t);
        let existing = match self.glue("GetTable", json!({"DatabaseName": db, "Name": name})).await {
            Ok(v) => Some(v["Table"].clone()),
            Err(e) if is_missing(&e) => None,
            Err(e) => return Err(e),
        };
        match existing {
            None => {
                if !self.dry_run {
                    self.glue("CreateTable", json!({"DatabaseName": db, "TableInput": input}))
                        .await?;
                }
                self.note(Change::Create(what));
            }
            Some(have) => {
                let same = have["StorageDescriptor"]["Columns"] == input["StorageDescriptor"]["Columns"]
                    && have["StorageDescriptor"]["Location"] == input["StorageDescriptor"]["Location"]
                    && have["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
                        == input["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
                    && have["PartitionKeys"].as_array().map_or(0, Vec::len)
                        == input["PartitionKeys"].as_array().map_or(0, Vec::len)
                    && t.parameters
                        .iter()
                        .all(|(k, v)| have["Parameters"][k].as_str() == Some(v.as_str()));
                if same {
                    self.note(Change::Unchanged(what));
                } else {
                    if !self.dry_run {
                        self.glue("UpdateTable", json!({"DatabaseName": db, "TableInput": input}))
                            .await?;
                    }
                    self.note(Change::Update(what, "table definition".into()));
                }
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ API Gateway

    async fn apigw(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        self.client.rest_json("apigateway", method, path, &[], body).await
    }

    async fn rest_api(&mut self, a: &RestApi) -> anyhow::Result<()> {
        let name = a.name.get_ref().as_str();
        let what = format!("REST API {name}");
        let list = self
            .client
            .rest_json("apigateway", "GET", "/restapis", &[("limit", "500")], None)
            .await?;
        let items = list["item"]
            .as_array()
            .or_else(|| list["items"].as_array())
            .cloned()
            .unwrap_or_default();
        let existing = items
            .iter()
            .find(|i| i["name"] == name)
            .and_then(|i| i["id"].as_str())
            .map(str::to_owned);
        let created = existing.is_none();
        if self.dry_run && created {
            self.note(Change::Create(what));
            return Ok(());
        }
        let api = match existing {
            Some(id) => id,
            None => self.apigw("POST", "/restapis", Some(&json!({"name": name}))).await?["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("CreateRestApi answered without an id"))?,
        };
        let mut changed = Vec::new();
        let mut resources = self.resources(&api).await?;
        for m in &a.methods {
            let mut rid = resources
                .get("/")
                .cloned()
                .ok_or_else(|| anyhow!("the API has no root resource"))?;
            let mut path = String::new();
            for part in m.path.split('/').filter(|p| !p.is_empty()) {
                path.push('/');
                path.push_str(part);
                rid = match resources.get(&path) {
                    Some(id) => id.clone(),
                    None => {
                        changed.push(format!("resource {path}"));
                        if self.dry_run {
                            format!("(new {path})")
                        } else {
                            let r = self
                                .apigw(
                                    "POST",
                                    &format!("/restapis/{api}/resources/{rid}"),
                                    Some(&json!({"pathPart": part})),
                                )
                                .await?;
                            let id = r["id"]
                                .as_str()
                                .map(str::to_owned)
                                .ok_or_else(|| anyhow!("CreateResource answered without an id"))?;
                            resources.insert(path.clone(), id.clone());
                            id
                        }
                    }
                };
            }
            let method = m.method.to_ascii_uppercase();
            let uri = format!(
                "arn:aws:apigateway:{}:lambda:path/2015-03-31/functions/{}/invocations",
                self.region,
                self.function_arn(m.function.get_ref())
            );
            let integration_path = format!("/restapis/{api}/resources/{rid}/methods/{method}/integration");
            let current = if rid.starts_with("(new") {
                None
            } else {
                self.apigw("GET", &integration_path, None).await.ok()
            };
            if current.as_ref().and_then(|c| c["uri"].as_str()) == Some(uri.as_str()) {
                continue;
            }
            changed.push(format!("{method} {}", m.path));
            if !self.dry_run {
                self.apigw(
                    "PUT",
                    &format!("/restapis/{api}/resources/{rid}/methods/{method}"),
                    Some(&json!({"authorizationType": "NONE"})),
                )
                .await?;
                self.apigw(
                    "PUT",
                    &integration_path,
                    Some(&json!({"type": "AWS_PROXY", "integrationHttpMethod": "POST", "uri": uri})),
                )
                .await?;
                self.permission(
                    m.function.get_ref(),
                    &format!("pipeline-apigw-{api}"),
                    "apigateway.amazonaws.com",
                    Some(&format!(
                        "arn:aws:execute-api:{}:{}:{api}/*/*/*",
                        self.region, self.account
                    )),
                )
                .await?;
            }
        }
        let stage_exists = self
            .apigw(
                "GET",
                &format!("/restapis/{api}/stages/{}", uri_encode(&a.stage, false)),
                None,
            )
            .await
            .is_ok();
        if !changed.is_empty() || !stage_exists {
            if !stage_exists {
                changed.push(format!("stage {}", a.stage));
            }
            if !self.dry_run {
                self.apigw(
                    "POST",
                    &format!("/restapis/{api}/deployments"),
                    Some(&json!({"stageName": a.stage, "description": "kinesis-data pipeline"})),
                )
                .await?;
            }
        }
        self.note(if created {
            Change::Create(format!("{what} ({api})"))
        } else if changed.is_empty() {
            Change::Unchanged(format!("{what} ({api})"))
        } else {
            Change::Update(format!("{what} ({api})"), changed.join(", "))
        });
        Ok(())
    }

    /// path → resource id.
    async fn resources(&self, api: &str) -> anyhow::Result<BTreeMap<String, String>> {
        let v = self
            .client
            .rest_json(
                "apigateway",
                "GET",
                &format!("/restapis/{api}/resources"),
                &[("limit", "500")],
                None,
            )
            .await?;
        let items = v["item"]
            .as_array()
            .or_else(|| v["items"].as_array())
            .cloned()
            .unwrap_or_default();
        Ok(items
            .iter()
            .filter_map(|i| Some((i["path"].as_str()?.to_owned(), i["id"].as_str()?.to_owned())))
            .collect())
    }

    /// The id of REST API `name`, if it exists.
    pub async fn rest_api_id(&self, name: &str) -> anyhow::Result<Option<String>> {
        let list = self
            .client
            .rest_json("apigateway", "GET", "/restapis", &[("limit", "500")], None)
            .await?;
        let items = list["item"]
            .as_array()
            .or_else(|| list["items"].as_array())
            .cloned()
            .unwrap_or_default();
        Ok(items
            .iter()
            .find(|i| i["name"] == name)
            .and_then(|i| i["id"].as_str())
            .map(str::to_owned))
    }

    // ------------------------------------------------------------------ S3 Batch

    async fn batch_job(&mut self, j: &BatchJob) -> anyhow::Result<()> {
        let name = j.name.get_ref().as_str();
        let (bucket, key) = match (&j.manifest_bucket, &j.manifest_key, &j.source_bucket) {
            (Some(b), Some(k), _) => (b.clone(), k.clone()),
            (_, _, Some(src)) => (src.clone(), format!("manifests/{name}.csv")),
            _ => bail!("the job has no manifest"),
        };
        // The token names the definition: the same job is created once. Its description
        // carries the token's start, so a plan can find the job.
        let fingerprint = format!(
            "{name}|{}|{bucket}|{key}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}",
            j.role.get_ref(),
            j.source_prefix,
            j.operation.lambda.as_ref().map(|f| f.get_ref()),
            j.operation.user_arguments,
            j.operation.copy_to,
            j.operation.copy_prefix,
            j.report_bucket,
            j.report_prefix,
            j.priority,
        );
        let digest = crate::client::hex(&Sha256::digest(fingerprint.as_bytes()));
        let token = format!("pipeline-{}", &digest[..40]);
        let description = format!("{name} (pipeline {})", &digest[..12]);
        let what = format!("batch job {name}");
        if self.dry_run {
            let listed = self
                .client
                .request(
                    "GET",
                    "/v20180820/jobs",
                    &[("maxResults", "1000")],
                    &[("x-amz-account-id", &self.account)],
                    &[],
                )
                .await?;
            let exists = String::from_utf8_lossy(&listed.body)
                .contains(&format!("<Description>{}</Description>", xml_escape(&description)));
            self.note(if exists {
                Change::Unchanged(what)
            } else {
                Change::Create(what)
            });
            return Ok(());
        }
        let etag = match &j.source_bucket {
            Some(src) => {
                let keys = self.client.list_keys(src, &j.source_prefix).await?;
                let csv: String = keys
                    .iter()
                    .filter(|k| !k.starts_with("manifests/"))
                    .map(|k| format!("{src},{}\n", manifest_key(k)))
                    .collect();
                self.client
                    .put_object(&bucket, &key, csv.as_bytes(), "text/csv")
                    .await?
            }
            None => {
                let path = format!("/{}/{}", uri_encode(&bucket, false), uri_encode(&key, true));
                let head = self.client.request("HEAD", &path, &[], &[], &[]).await?;
                head.header("etag").unwrap_or_default().trim_matches('"').to_owned()
            }
        };
        let op = match (&j.operation.lambda, &j.operation.copy_to) {
            (Some(f), _) => {
                let mut args = String::new();
                if !j.operation.user_arguments.is_empty() {
                    args.push_str("<UserArguments>");
                    for (k, v) in &j.operation.user_arguments {
                        args.push_str(&format!(
                            "<entry><key>{}</key><value>{}</value></entry>",
                            xml_escape(k),
                            xml_escape(v)
                        ));
                    }
                    args.push_str("</UserArguments>");
                }
                format!(
                    "<LambdaInvoke><FunctionArn>{}</FunctionArn><InvocationSchemaVersion>2.0</InvocationSchemaVersion>{args}</LambdaInvoke>",
                    self.function_arn(f.get_ref())
                )
            }
            (None, Some(dst)) => format!(
                "<S3PutObjectCopy><TargetResource>arn:aws:s3:::{}</TargetResource>{}</S3PutObjectCopy>",
                xml_escape(dst),
                j.operation
                    .copy_prefix
                    .as_ref()
                    .map(|p| format!("<TargetKeyPrefix>{}</TargetKeyPrefix>", xml_escape(p)))
                    .unwrap_or_default()
            ),
            (None, None) => bail!("the job has no operation"),
        };
        let report = match &j.report_bucket {
            Some(b) => format!(
                "<Report><Bucket>arn:aws:s3:::{}</Bucket><Format>Report_CSV_20180820</Format><Enabled>true</Enabled>{}<ReportScope>AllTasks</ReportScope></Report>",
                xml_escape(b),
                j.report_prefix
                    .as_ref()
                    .map(|p| format!("<Prefix>{}</Prefix>", xml_escape(p)))
                    .unwrap_or_default()
            ),
            None => "<Report><Enabled>false</Enabled></Report>".to_owned(),
        };
        let xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><CreateJobRequest xmlns="http://awss3control.amazonaws.com/doc/2018-08-20/"><ConfirmationRequired>false</ConfirmationRequired><Operation>{op}</Operation>{report}<ClientRequestToken>{token}</ClientRequestToken><Manifest><Spec><Format>S3BatchOperations_CSV_20180820</Format><Fields><member>Bucket</member><member>Key</member></Fields></Spec><Location><ObjectArn>arn:aws:s3:::{}/{}</ObjectArn><ETag>{etag}</ETag></Location></Manifest><Description>{}</Description><Priority>{}</Priority><RoleArn>{}</RoleArn></CreateJobRequest>"#,
            xml_escape(&bucket),
            xml_escape(&key),
            xml_escape(&description),
            j.priority,
            self.role_arn(j.role.get_ref()),
        );
        let resp = self
            .client
            .request(
                "POST",
                "/v20180820/jobs",
                &[],
                &[("content-type", "application/xml"), ("x-amz-account-id", &self.account)],
                xml.as_bytes(),
            )
            .await;
        match resp {
            Ok(r) => {
                let text = |body: &[u8], tag: &str| {
                    let body = String::from_utf8_lossy(body);
                    body.split(&format!("<{tag}>"))
                        .nth(1)
                        .and_then(|r| r.split(&format!("</{tag}>")).next())
                        .unwrap_or_default()
                        .to_owned()
                };
                let id = text(&r.body, "JobId");
                // The same definition answers the job an earlier run created.
                let described = self
                    .client
                    .request(
                        "GET",
                        &format!("/v20180820/jobs/{}", uri_encode(&id, false)),
                        &[],
                        &[("x-amz-account-id", &self.account)],
                        &[],
                    )
                    .await?;
                let created = text(&described.body, "CreationTime");
                let created_secs = created
                    .split('.')
                    .next()
                    .and_then(|s| kd_storage::civil::parse_iso8601(&format!("{}Z", s.trim_end_matches('Z'))));
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                if created_secs.is_some_and(|t| t < self.started_secs.min(now) - 1) {
                    self.note(Change::Unchanged(format!("{what} (JobId {id})")));
                } else {
                    self.note(Change::Create(format!("{what} (JobId {id})")));
                }
                Ok(())
            }
            // The same token with another manifest ETag: an earlier run's job.
            Err(e) if error_code(&e) == Some("IdempotencyException") => {
                self.note(Change::Unchanged(what));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// A manifest key: URL-encoded (`+` for spaces is not used; `/` kept).
fn manifest_key(k: &str) -> String {
    uri_encode(k, true)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// Every file under `dir`, with its path relative to `root`.
fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>, u32)>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let path = e.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else {
            let rel = path
                .strip_prefix(root)
                .map_err(|_| anyhow!("{} is outside {}", path.display(), root.display()))?
                .to_string_lossy()
                .replace('\\', "/");
            let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            out.push((rel, bytes, 0o755));
        }
    }
    Ok(())
}
