//! `kinesis-data batch`: creates an S3 Batch Operations job on a running server and follows
//! it with a progress bar.
//!
//! The manifest comes from a local CSV (uploaded as is) or from listing a bucket prefix
//! (ListObjectsV2, every page; keys URL-encoded per path segment as AWS manifests expect),
//! and is uploaded with PutObject (path-style). Then `POST /v20180820/jobs` (CreateJob) and,
//! unless `--confirm` or `--no-follow`, `GET /v20180820/jobs/{id}` (DescribeJob) every
//! 200 ms until the job is Complete, Failed or Cancelled.
//!
//! No AWS SDK: requests are plain HTTP/1.1 (`Content-Length` bodies, `Connection: close`)
//! over a tokio `TcpStream`, signed here with SigV4 (service `s3`), and the XML answers are
//! read with the S3 Control adapter's bounded XML reader.
//!
//! Exit codes: 0 Complete without failed tasks, 1 Complete with failed tasks, 2 Failed or
//! Cancelled, 3 when a request or a local step fails (`error: <Code>: <Message>`).

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::{ArgGroup, Args, ValueEnum};
use kinesis_data::client::{ApiError, Client, Credentials, Node, parse_xml, uri_encode};

/// S3 Control's XML namespace.
const NAMESPACE: &str = "http://awss3control.amazonaws.com/doc/2018-08-20/";
/// How often DescribeJob is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Consecutive failed polls (transport errors, 5xx, throttling) tolerated while following.
const MAX_POLL_FAILURES: u32 = 25;
/// Width of the progress bar, in cells.
const BAR_WIDTH: usize = 24;

/// Complete, no failed task.
const EXIT_OK: i32 = 0;
/// Complete, some tasks failed.
const EXIT_TASKS_FAILED: i32 = 1;
/// The job Failed or was Cancelled.
const EXIT_JOB_FAILED: i32 = 2;
/// A request or a local step failed.
const EXIT_ERROR: i32 = 3;

// ------------------------------------------------------------------------------------- flags

/// The job's operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OperationKind {
    /// S3PutObjectCopy into --target-bucket (under --target-prefix).
    Copy,
    /// LambdaInvoke of --function-arn.
    Lambda,
    /// S3PutObjectTagging: replace each object's tags with --tag.
    Tag,
    /// S3DeleteObjectTagging: remove each object's tags.
    Untag,
}

/// `kinesis-data batch` flags.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("manifest_source").required(true).args(["manifest_file", "source_bucket"])))]
pub struct BatchArgs {
    /// The running server (http only).
    #[arg(long, default_value = "http://127.0.0.1:4566")]
    pub endpoint: String,
    /// The job's IAM role; it must trust batchoperations.s3.amazonaws.com.
    #[arg(long, value_name = "ARN")]
    pub role_arn: String,
    /// A local manifest CSV (`bucket,url-encoded-key[,versionId]` per line), uploaded as is.
    #[arg(long, value_name = "CSV")]
    pub manifest_file: Option<PathBuf>,
    /// Make the manifest from the objects of this bucket (under --prefix).
    #[arg(long, value_name = "BUCKET")]
    pub source_bucket: Option<String>,
    /// Key prefix listed in --source-bucket.
    #[arg(long, requires = "source_bucket")]
    pub prefix: Option<String>,
    /// Bucket the manifest is uploaded to.
    #[arg(long, value_name = "BUCKET")]
    pub manifest_bucket: String,
    /// Key of the uploaded manifest [default: manifests/<uuid>.csv].
    #[arg(long, value_name = "KEY")]
    pub manifest_key: Option<String>,
    /// What the job does to every object of the manifest.
    #[arg(long, value_enum)]
    pub operation: OperationKind,
    /// copy: the destination bucket.
    #[arg(long, value_name = "BUCKET", required_if_eq("operation", "copy"))]
    pub target_bucket: Option<String>,
    /// copy: prefix of the copies' keys.
    #[arg(long, value_name = "PREFIX")]
    pub target_prefix: Option<String>,
    /// lambda: the function (ARN or name).
    #[arg(long, value_name = "ARN", required_if_eq("operation", "lambda"))]
    pub function_arn: Option<String>,
    /// lambda: InvocationSchemaVersion [default: 2.0 with --user-arg, else 1.0].
    #[arg(long, value_parser = ["1.0", "2.0"])]
    pub schema: Option<String>,
    /// lambda: a UserArguments entry (schema 2.0; at most 10).
    #[arg(long = "user-arg", value_name = "KEY=VALUE", num_args = 1.., value_parser = key_value)]
    pub user_args: Vec<(String, String)>,
    /// tag: a tag of the new tag set.
    #[arg(long = "tag", value_name = "KEY=VALUE", num_args = 1.., value_parser = key_value,
          required_if_eq("operation", "tag"))]
    pub tags: Vec<(String, String)>,
    /// Write a completion report to this bucket.
    #[arg(long, value_name = "BUCKET")]
    pub report_bucket: Option<String>,
    /// Key prefix of the report (`<prefix>/job-<id>/…`).
    #[arg(long, value_name = "PREFIX", requires = "report_bucket")]
    pub report_prefix: Option<String>,
    /// Which tasks the report lists.
    #[arg(long, value_name = "SCOPE", value_parser = ["AllTasks", "FailedTasksOnly"], requires = "report_bucket")]
    pub report_scope: Option<String>,
    /// Job priority (higher runs first).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=2_147_483_647))]
    pub priority: u32,
    /// The job's description.
    #[arg(long)]
    pub description: Option<String>,
    /// Create the job suspended (ConfirmationRequired), print how to confirm it and exit.
    #[arg(long)]
    pub confirm: bool,
    /// Print the job id and exit instead of following the job.
    #[arg(long)]
    pub no_follow: bool,
    /// Account of the job (`x-amz-account-id`); the caller's own.
    #[arg(long, default_value = "000000000000")]
    pub account_id: String,
    /// Signing region.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Access key id [default: $AWS_ACCESS_KEY_ID, else test].
    #[arg(long, requires = "secret_access_key")]
    pub access_key_id: Option<String>,
    /// Secret access key [default: $AWS_SECRET_ACCESS_KEY, else test].
    #[arg(long, requires = "access_key_id")]
    pub secret_access_key: Option<String>,
    /// Session token [default: $AWS_SESSION_TOKEN when the keys come from the environment].
    #[arg(long, requires = "access_key_id")]
    pub session_token: Option<String>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

// --------------------------------------------------------------------------------- the job

#[derive(Debug, Clone, PartialEq, Eq)]
enum Operation {
    Copy {
        target_bucket: String,
        target_prefix: Option<String>,
    },
    Lambda {
        function_arn: String,
        schema: String,
        user_args: Vec<(String, String)>,
    },
    Tag(Vec<(String, String)>),
    Untag,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ReportPlan {
    bucket: String,
    prefix: Option<String>,
    scope: String,
}

/// What CreateJob is asked for, manifest aside.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JobPlan {
    operation: Operation,
    report: Option<ReportPlan>,
    priority: u32,
    confirmation_required: bool,
    role_arn: String,
    description: Option<String>,
}

/// Where the uploaded manifest is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ManifestLocation {
    bucket: String,
    key: String,
    etag: String,
    fields: &'static [&'static str],
}

impl JobPlan {
    /// The plan of the flags, or why they do not make a job.
    fn from_args(a: &BatchArgs) -> anyhow::Result<JobPlan> {
        let op = a.operation;
        let only = |present: bool, flag: &str, kind: &str| -> anyhow::Result<()> {
            if present {
                bail!("{flag} is only used with --operation {kind}");
            }
            Ok(())
        };
        if op != OperationKind::Copy {
            only(a.target_bucket.is_some(), "--target-bucket", "copy")?;
            only(a.target_prefix.is_some(), "--target-prefix", "copy")?;
        }
        if op != OperationKind::Lambda {
            only(a.function_arn.is_some(), "--function-arn", "lambda")?;
            only(a.schema.is_some(), "--schema", "lambda")?;
            only(!a.user_args.is_empty(), "--user-arg", "lambda")?;
        }
        if op != OperationKind::Tag {
            only(!a.tags.is_empty(), "--tag", "tag")?;
        }
        let operation = match op {
            OperationKind::Copy => Operation::Copy {
                target_bucket: a
                    .target_bucket
                    .clone()
                    .ok_or_else(|| anyhow!("--operation copy needs --target-bucket"))?,
                target_prefix: a.target_prefix.clone().filter(|p| !p.is_empty()),
            },
            OperationKind::Lambda => {
                let function_arn = a
                    .function_arn
                    .clone()
                    .ok_or_else(|| anyhow!("--operation lambda needs --function-arn"))?;
                let schema = match (a.schema.as_deref(), a.user_args.is_empty()) {
                    (Some("1.0"), false) => bail!("--user-arg needs --schema 2.0"),
                    (Some(s), _) => s.to_owned(),
                    (None, true) => "1.0".to_owned(),
                    (None, false) => "2.0".to_owned(),
                };
                if a.user_args.len() > 10 {
                    bail!("at most 10 --user-arg entries are allowed, got {}", a.user_args.len());
                }
                Operation::Lambda {
                    function_arn,
                    schema,
                    user_args: a.user_args.clone(),
                }
            }
            OperationKind::Tag => {
                if a.tags.is_empty() {
                    bail!("--operation tag needs at least one --tag KEY=VALUE (use --operation untag to remove tags)");
                }
                Operation::Tag(a.tags.clone())
            }
            OperationKind::Untag => Operation::Untag,
        };
        let report = a.report_bucket.as_ref().map(|b| ReportPlan {
            bucket: b.clone(),
            prefix: a
                .report_prefix
                .as_deref()
                .map(|p| p.trim_end_matches('/').to_owned())
                .filter(|p| !p.is_empty()),
            scope: a.report_scope.clone().unwrap_or_else(|| "AllTasks".to_owned()),
        });
        Ok(JobPlan {
            operation,
            report,
            priority: a.priority,
            confirmation_required: a.confirm,
            role_arn: a.role_arn.clone(),
            description: a.description.clone(),
        })
    }
}

/// Runs `kinesis-data batch`; returns the process exit code.
pub fn run(args: BatchArgs) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start tokio: {e}");
            return EXIT_ERROR;
        }
    };
    match rt.block_on(execute(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", error_text(&e));
            EXIT_ERROR
        }
    }
}

/// `error: <Code>: <Message>` for AWS errors (with what was being done on the next line),
/// `error: <chain>` otherwise.
fn error_text(e: &anyhow::Error) -> String {
    match e.downcast_ref::<ApiError>() {
        Some(api) => {
            let steps: Vec<String> = e
                .chain()
                .filter(|c| c.downcast_ref::<ApiError>().is_none())
                .map(ToString::to_string)
                .collect();
            let mut out = format!("error: {}: {}", api.code, api.message);
            let _ = write!(out, "\n  (");
            if !steps.is_empty() {
                let _ = write!(out, "while {}; ", steps.join(": "));
            }
            let _ = write!(out, "{} answered HTTP {})", api.request, api.status);
            out
        }
        None => format!("error: {e:#}"),
    }
}

async fn execute(args: BatchArgs) -> anyhow::Result<i32> {
    let plan = JobPlan::from_args(&args)?;
    if !(args.account_id.len() == 12 && args.account_id.bytes().all(|b| b.is_ascii_digit())) {
        bail!("--account-id must be 12 digits, got {:?}", args.account_id);
    }
    let creds = Credentials::resolve(
        args.access_key_id.clone(),
        args.secret_access_key.clone(),
        args.session_token.clone(),
    )?;
    let client = Client::new(&args.endpoint, &args.region, creds)?;
    let manifest_key = args
        .manifest_key
        .clone()
        .unwrap_or_else(|| format!("manifests/{}.csv", uuid::Uuid::new_v4()));
    let (body, fields, count) = match (&args.manifest_file, &args.source_bucket) {
        (Some(path), _) => {
            let body = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let (fields, count) = csv_fields(&body).with_context(|| format!("manifest {}", path.display()))?;
            (body, fields, count)
        }
        (None, Some(bucket)) => {
            let prefix = args.prefix.as_deref().unwrap_or_default();
            let keys = client
                .list_keys(bucket, prefix)
                .await
                .with_context(|| format!("listing s3://{bucket}/{prefix}"))?;
            if keys.is_empty() {
                bail!("there are no objects under s3://{bucket}/{prefix}: nothing to do");
            }
            (manifest_csv(bucket, &keys).into_bytes(), BUCKET_KEY, keys.len())
        }
        (None, None) => bail!("give --manifest-file or --source-bucket"),
    };
    let etag = client
        .put_object(&args.manifest_bucket, &manifest_key, &body, "text/csv")
        .await
        .with_context(|| format!("uploading the manifest to s3://{}/{manifest_key}", args.manifest_bucket))?;
    eprintln!(
        "manifest: s3://{}/{manifest_key} ({count} object{}, ETag {etag})",
        args.manifest_bucket,
        if count == 1 { "" } else { "s" }
    );
    let manifest = ManifestLocation {
        bucket: args.manifest_bucket.clone(),
        key: manifest_key,
        etag,
        fields,
    };
    let token = uuid::Uuid::new_v4().to_string();
    let request = create_job_xml(&plan, &manifest, &token);
    let job_id = create_job(&client, &args.account_id, &request)
        .await
        .context("creating the job")?;
    let mut out = std::io::stdout().lock();
    if args.confirm {
        writeln!(out, "JobId: {job_id}")?;
        writeln!(
            out,
            "The job waits for confirmation (Suspended once its manifest is read). Confirm it with:\n  \
             aws --endpoint-url {} --region {} s3control update-job-status --account-id {} --job-id {job_id} \
             --requested-job-status Ready",
            client.endpoint(),
            client.region(),
            args.account_id
        )?;
        out.flush()?;
        return Ok(EXIT_OK);
    }
    if args.no_follow {
        writeln!(out, "{job_id}")?;
        out.flush()?;
        return Ok(EXIT_OK);
    }
    drop(out);
    eprintln!("job: {job_id}");
    let started = Instant::now();
    let job = follow(&client, &args.account_id, &job_id, started).await?;
    let mut out = std::io::stdout().lock();
    out.write_all(summary(&job, started.elapsed()).as_bytes())?;
    out.flush()?;
    Ok(exit_code(&job))
}

/// `Bucket,Key`.
const BUCKET_KEY: &[&str] = &["Bucket", "Key"];
/// `Bucket,Key,VersionId`.
const BUCKET_KEY_VERSION: &[&str] = &["Bucket", "Key", "VersionId"];

/// The manifest fields of a local CSV (from its first line) and its number of lines.
fn csv_fields(body: &[u8]) -> anyhow::Result<(&'static [&'static str], usize)> {
    let text = std::str::from_utf8(body).map_err(|_| anyhow!("the manifest is not UTF-8"))?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let Some(first) = lines.next() else {
        bail!("the manifest is empty");
    };
    let fields = match first.split(',').count() {
        2 => BUCKET_KEY,
        3 => BUCKET_KEY_VERSION,
        n => bail!("the first line has {n} fields; manifest lines are bucket,url-encoded-key[,versionId]"),
    };
    Ok((fields, 1 + lines.count()))
}

/// The manifest of `keys` in `bucket`: one `bucket,<url-encoded key>` line each.
fn manifest_csv(bucket: &str, keys: &[String]) -> String {
    let mut out = String::with_capacity(keys.len() * (bucket.len() + 32));
    for k in keys {
        out.push_str(bucket);
        out.push(',');
        out.push_str(&uri_encode(k, true));
        out.push('\n');
    }
    out
}

/// The completion report's `manifest.json` (`s3://R/P/job-<id>/manifest.json`).
fn report_location(bucket: &str, prefix: Option<&str>, job_id: &str) -> String {
    match prefix.map(|p| p.trim_end_matches('/')).filter(|p| !p.is_empty()) {
        Some(p) => format!("s3://{bucket}/{p}/job-{job_id}/manifest.json"),
        None => format!("s3://{bucket}/job-{job_id}/manifest.json"),
    }
}

// ------------------------------------------------------------------------ XML out and in

fn leaf(out: &mut String, name: &str, text: &str) {
    let _ = write!(out, "<{name}>{}</{name}>", kd_wire::xml_escape(text));
}

fn write_pairs(out: &mut String, list: &str, item: &str, key: &str, value: &str, pairs: &[(String, String)]) {
    let _ = write!(out, "<{list}>");
    for (k, v) in pairs {
        let _ = write!(out, "<{item}>");
        leaf(out, key, k);
        leaf(out, value, v);
        let _ = write!(out, "</{item}>");
    }
    let _ = write!(out, "</{list}>");
}

/// The CreateJobRequest body.
fn create_job_xml(plan: &JobPlan, manifest: &ManifestLocation, token: &str) -> String {
    let mut x = String::with_capacity(1024);
    let _ = write!(
        x,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CreateJobRequest xmlns=\"{NAMESPACE}\">"
    );
    leaf(&mut x, "ConfirmationRequired", bool_text(plan.confirmation_required));
    x.push_str("<Operation>");
    match &plan.operation {
        Operation::Copy {
            target_bucket,
            target_prefix,
        } => {
            x.push_str("<S3PutObjectCopy>");
            leaf(&mut x, "TargetResource", &format!("arn:aws:s3:::{target_bucket}"));
            if let Some(p) = target_prefix {
                leaf(&mut x, "TargetKeyPrefix", p);
            }
            x.push_str("</S3PutObjectCopy>");
        }
        Operation::Lambda {
            function_arn,
            schema,
            user_args,
        } => {
            x.push_str("<LambdaInvoke>");
            leaf(&mut x, "FunctionArn", function_arn);
            leaf(&mut x, "InvocationSchemaVersion", schema);
            if !user_args.is_empty() {
                write_pairs(&mut x, "UserArguments", "entry", "key", "value", user_args);
            }
            x.push_str("</LambdaInvoke>");
        }
        Operation::Tag(tags) => {
            x.push_str("<S3PutObjectTagging>");
            write_pairs(&mut x, "TagSet", "member", "Key", "Value", tags);
            x.push_str("</S3PutObjectTagging>");
        }
        Operation::Untag => x.push_str("<S3DeleteObjectTagging></S3DeleteObjectTagging>"),
    }
    x.push_str("</Operation><Report>");
    match &plan.report {
        Some(r) => {
            leaf(&mut x, "Bucket", &format!("arn:aws:s3:::{}", r.bucket));
            leaf(&mut x, "Format", "Report_CSV_20180820");
            leaf(&mut x, "Enabled", "true");
            if let Some(p) = &r.prefix {
                leaf(&mut x, "Prefix", p);
            }
            leaf(&mut x, "ReportScope", &r.scope);
        }
        None => leaf(&mut x, "Enabled", "false"),
    }
    x.push_str("</Report>");
    leaf(&mut x, "ClientRequestToken", token);
    x.push_str("<Manifest><Spec>");
    leaf(&mut x, "Format", "S3BatchOperations_CSV_20180820");
    x.push_str("<Fields>");
    for f in manifest.fields {
        leaf(&mut x, "member", f);
    }
    x.push_str("</Fields></Spec><Location>");
    leaf(
        &mut x,
        "ObjectArn",
        &format!("arn:aws:s3:::{}/{}", manifest.bucket, manifest.key),
    );
    leaf(&mut x, "ETag", &manifest.etag);
    x.push_str("</Location></Manifest>");
    if let Some(d) = &plan.description {
        leaf(&mut x, "Description", d);
    }
    leaf(&mut x, "Priority", &plan.priority.to_string());
    leaf(&mut x, "RoleArn", &plan.role_arn);
    x.push_str("</CreateJobRequest>");
    x
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// What DescribeJob tells about a job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct JobView {
    id: String,
    status: String,
    total: u64,
    succeeded: u64,
    failed: u64,
    active_secs: u64,
    status_update_reason: Option<String>,
    failure_reasons: Vec<(String, String)>,
    /// Report bucket (name) and prefix, when the report is enabled.
    report: Option<(String, Option<String>)>,
}

impl JobView {
    fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "Complete" | "Failed" | "Cancelled")
    }
}

fn parse_describe(body: &[u8]) -> anyhow::Result<JobView> {
    let root = parse_xml(body).map_err(|e| anyhow!("unreadable DescribeJob answer: {e}"))?;
    let job = root
        .child("Job")
        .filter(|_| root.name == "DescribeJobResult")
        .ok_or_else(|| anyhow!("unexpected DescribeJob answer <{}>", root.name))?;
    let num = |p: Option<&Node>, name: &str| -> u64 {
        p.and_then(|p| p.text_of(name))
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    };
    let progress = job.child("ProgressSummary");
    let report = job
        .child("Report")
        .filter(|r| r.text_of("Enabled").map(str::trim) == Some("true"))
        .and_then(|r| {
            let arn = r.text_of("Bucket")?;
            let bucket = arn.rsplit_once(":::").map_or(arn, |(_, b)| b).to_owned();
            Some((bucket, r.text_of("Prefix").map(str::to_owned)))
        });
    Ok(JobView {
        id: job.text_of("JobId").unwrap_or_default().to_owned(),
        status: job
            .text_of("Status")
            .ok_or_else(|| anyhow!("DescribeJob answered without a Status"))?
            .trim()
            .to_owned(),
        total: num(progress, "TotalNumberOfTasks"),
        succeeded: num(progress, "NumberOfTasksSucceeded"),
        failed: num(progress, "NumberOfTasksFailed"),
        active_secs: num(progress.and_then(|p| p.child("Timers")), "ElapsedTimeInActiveSeconds"),
        status_update_reason: job.text_of("StatusUpdateReason").map(str::to_owned),
        failure_reasons: job
            .child("FailureReasons")
            .map(|f| {
                f.all("member")
                    .map(|m| {
                        (
                            m.text_of("FailureCode").unwrap_or_default().to_owned(),
                            m.text_of("FailureReason").unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        report,
    })
}

// --------------------------------------------------------------------------- S3 Control

/// CreateJob; returns the job id.
async fn create_job(client: &Client, account: &str, xml: &str) -> anyhow::Result<String> {
    let resp = client
        .request(
            "POST",
            "/v20180820/jobs",
            &[],
            &[("content-type", "application/xml"), ("x-amz-account-id", account)],
            xml.as_bytes(),
        )
        .await?;
    let root = parse_xml(&resp.body).map_err(|e| anyhow!("unreadable CreateJob answer: {e}"))?;
    root.text_of("JobId")
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("CreateJob answered without a JobId"))
}

async fn describe_job(client: &Client, account: &str, id: &str) -> anyhow::Result<JobView> {
    let path = format!("/v20180820/jobs/{}", uri_encode(id, false));
    let resp = client
        .request("GET", &path, &[], &[("x-amz-account-id", account)], &[])
        .await?;
    parse_describe(&resp.body)
}

// --------------------------------------------------------------------------- following

/// `status [####------]  done/total  ok N  failed N  R tasks/s  Es`.
fn progress_line(job: &JobView, elapsed: Duration) -> String {
    let done = job.succeeded + job.failed;
    let filled = (done.min(job.total) * BAR_WIDTH as u64)
        .checked_div(job.total)
        .map_or(0, |n| usize::try_from(n).unwrap_or(BAR_WIDTH));
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    format!(
        "{:<10} [{}{}] {done}/{}  ok {}  failed {}  {rate:.1} tasks/s  {secs:.1}s",
        job.status,
        "#".repeat(filled),
        "-".repeat(BAR_WIDTH - filled),
        job.total,
        job.succeeded,
        job.failed,
    )
}

/// The progress display on stderr: one line rewritten with `\r` on a terminal, a line per
/// status change otherwise.
struct Progress {
    tty: bool,
    last_status: String,
    drawn: bool,
}

impl Progress {
    fn update(&mut self, job: &JobView, elapsed: Duration) {
        let mut err = std::io::stderr().lock();
        let line = progress_line(job, elapsed);
        if self.tty {
            let _ = write!(err, "\r{line}\x1b[K");
            self.drawn = true;
        } else if job.status != self.last_status {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
        self.last_status.clone_from(&job.status);
    }

    fn finish(&mut self) {
        if self.drawn {
            let _ = writeln!(std::io::stderr());
            self.drawn = false;
        }
    }
}

async fn follow(client: &Client, account: &str, id: &str, started: Instant) -> anyhow::Result<JobView> {
    let mut progress = Progress {
        tty: std::io::stderr().is_terminal(),
        last_status: String::new(),
        drawn: false,
    };
    let mut failures = 0u32;
    loop {
        match describe_job(client, account, id).await {
            Ok(job) => {
                failures = 0;
                progress.update(&job, started.elapsed());
                if job.is_terminal() {
                    progress.finish();
                    return Ok(job);
                }
            }
            Err(e) => {
                let retry = e.downcast_ref::<ApiError>().is_none_or(ApiError::retryable);
                failures += 1;
                if !retry || failures > MAX_POLL_FAILURES {
                    progress.finish();
                    return Err(e.context(format!("following job {id}")));
                }
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The end-of-job summary (stdout).
fn summary(job: &JobView, elapsed: Duration) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "JobId:          {}", job.id);
    let _ = writeln!(s, "Status:         {}", job.status);
    let _ = writeln!(
        s,
        "Tasks:          {} total, {} succeeded, {} failed",
        job.total, job.succeeded, job.failed
    );
    let _ = writeln!(
        s,
        "Elapsed:        {:.1}s ({}s active)",
        elapsed.as_secs_f64(),
        job.active_secs
    );
    if let Some(r) = &job.status_update_reason {
        let _ = writeln!(s, "StatusUpdateReason: {r}");
    }
    if job.failure_reasons.is_empty() {
        let _ = writeln!(s, "FailureReasons: none");
    } else {
        let _ = writeln!(s, "FailureReasons:");
        for (code, reason) in &job.failure_reasons {
            let _ = writeln!(s, "  {code}: {reason}");
        }
    }
    match &job.report {
        Some((bucket, prefix)) => {
            let _ = writeln!(
                s,
                "Report:         {}",
                report_location(bucket, prefix.as_deref(), &job.id)
            );
        }
        None => {
            let _ = writeln!(s, "Report:         none (no --report-bucket)");
        }
    }
    s
}

fn exit_code(job: &JobView) -> i32 {
    match job.status.as_str() {
        "Complete" if job.failed == 0 => EXIT_OK,
        "Complete" => EXIT_TASKS_FAILED,
        _ => EXIT_JOB_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use kinesis_data::client::*;
    use std::time::UNIX_EPOCH;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        args: BatchArgs,
    }

    fn args(extra: &[&str]) -> Result<BatchArgs, clap::Error> {
        let base = ["t", "--role-arn", "arn:aws:iam::000000000000:role/r"];
        T::try_parse_from(base.iter().chain(extra)).map(|t| t.args)
    }

    fn creds(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".to_owned(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
            session_token: token.map(str::to_owned),
        }
    }

    /// Signs with aws-sigv4 (S3 settings: no path normalisation, single encoding,
    /// `x-amz-content-sha256`); returns the headers it adds, sorted.
    fn aws_sigv4_headers(
        c: &Credentials,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
        unix: u64,
    ) -> Vec<(String, String)> {
        use aws_sigv4::http_request::{
            PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
            UriPathNormalizationMode, sign,
        };
        use aws_sigv4::sign::v4;
        let identity = aws_credential_types::Credentials::new(
            &c.access_key_id,
            &c.secret_access_key,
            c.session_token.clone(),
            None,
            "test",
        )
        .into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("s3")
            .time(UNIX_EPOCH + Duration::from_secs(unix))
            .settings(settings)
            .build()
            .expect("params")
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .expect("signable");
        let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
        let mut out: Vec<(String, String)> = instructions
            .headers()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
            .collect();
        out.sort();
        out
    }

    fn ours(
        c: &Credentials,
        method: &str,
        path: &str,
        query: &str,
        headers: &[(String, String)],
        body: &[u8],
        unix: u64,
    ) -> Vec<(String, String)> {
        let input = SignInput {
            method,
            path,
            query,
            headers,
            body,
        };
        let mut out = sign(c, "us-east-1", "s3", &input, i64::try_from(unix).expect("time"));
        out.sort();
        out
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn batch_cli_sigv4_matches_aws_sigv4() {
        let t = 1_700_000_000; // 2023-11-14T22:13:20Z
        let host = "127.0.0.1:4566";
        // CreateJob: POST with a body and a session token.
        let c = creds(Some("FQoGZXIvYXdzEJr//token+/="));
        let body = b"<CreateJobRequest/>";
        let headers = h(&[
            ("host", host),
            ("content-type", "application/xml"),
            ("x-amz-account-id", "000000000000"),
        ]);
        let url = format!("http://{host}/v20180820/jobs");
        let mine = ours(&c, "POST", "/v20180820/jobs", "", &headers, body, t);
        assert_eq!(mine, aws_sigv4_headers(&c, "POST", &url, &headers, body, t));
        assert!(mine.iter().any(|(k, _)| k == "x-amz-security-token"));
        // ListObjectsV2: a query with characters to encode, no session token.
        let c = creds(None);
        let query = encode_query(&[
            ("list-type", "2"),
            ("prefix", "in/a b+c"),
            ("continuation-token", "YWJj+/=="),
        ]);
        assert_eq!(
            query,
            "continuation-token=YWJj%2B%2F%3D%3D&list-type=2&prefix=in%2Fa%20b%2Bc"
        );
        let headers = h(&[("host", host)]);
        let url = format!("http://{host}/bucket?{query}");
        assert_eq!(
            ours(&c, "GET", "/bucket", &query, &headers, b"", t),
            aws_sigv4_headers(&c, "GET", &url, &headers, b"", t)
        );
        // PutObject: an encoded path (sent and signed as is for S3).
        let path = format!("/bucket/{}", uri_encode("manifests/ä b+c.csv", true));
        assert_eq!(path, "/bucket/manifests/%C3%A4%20b%2Bc.csv");
        let headers = h(&[("host", host), ("content-type", "text/csv")]);
        let url = format!("http://{host}{path}");
        let body = b"bucket,key\n";
        let mine = ours(&c, "PUT", &path, "", &headers, body, t);
        assert_eq!(mine, aws_sigv4_headers(&c, "PUT", &url, &headers, body, t));
        let auth = &mine.iter().find(|(k, _)| k == "authorization").expect("auth").1;
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/s3/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, Signature="),
            "{auth}"
        );
    }

    #[test]
    fn batch_cli_sigv4_is_accepted_by_the_servers_verifier() {
        let c = creds(None);
        let t: i64 = 1_700_000_000;
        let query = encode_query(&[("list-type", "2"), ("prefix", "x y")]);
        let headers = h(&[("host", "localhost:4566"), ("x-amz-account-id", "000000000000")]);
        let input = SignInput {
            method: "GET",
            path: "/v20180820/jobs/abc-123",
            query: &query,
            headers: &headers,
            body: b"",
        };
        let signed = sign(&c, "us-east-1", "s3", &input, t);
        let mut b = http::Request::builder()
            .method("GET")
            .uri(format!("http://localhost:4566/v20180820/jobs/abc-123?{query}"));
        for (k, v) in headers.iter().chain(&signed) {
            b = b.header(k, v);
        }
        let (parts, ()) = b.body(()).expect("request").into_parts();
        let secret = |k: &str| (k == "AKIDEXAMPLE").then(|| c.secret_access_key.clone());
        let v = kd_edge::sigv4::verify(&parts, b"", &secret, t + 5).expect("verified");
        assert_eq!((v.service.as_str(), v.region.as_str()), ("s3", "us-east-1"));
        // A different body is refused (the payload hash is signed).
        assert!(kd_edge::sigv4::verify(&parts, b"x", &secret, t + 5).is_err());
    }

    #[test]
    fn batch_cli_amz_date() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_700_000_000), "20231114T221320Z");
    }

    #[test]
    fn batch_cli_manifest_encoding() {
        assert_eq!(uri_encode("a b/c+d&e,f~g_h-i.j", true), "a%20b/c%2Bd%26e%2Cf~g_h-i.j");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        let keys = vec![
            "in/plain.txt".to_owned(),
            "in/with space+plus.txt".to_owned(),
            "in/ünï/cödé,1.txt".to_owned(),
            "in//double/".to_owned(),
        ];
        let csv = manifest_csv("src", &keys);
        assert_eq!(
            csv,
            "src,in/plain.txt\nsrc,in/with%20space%2Bplus.txt\nsrc,in/%C3%BCn%C3%AF/c%C3%B6d%C3%A9%2C1.txt\nsrc,in//double/\n"
        );
        // The engine's manifest reader decodes them back.
        for (line, key) in csv.lines().zip(&keys) {
            let (_, enc) = line.split_once(',').expect("two fields");
            assert_eq!(kd_batch::manifest::decode_key(enc).as_deref(), Some(key.as_str()));
        }
        assert_eq!(csv_fields(csv.as_bytes()).expect("fields"), (BUCKET_KEY, 4));
        assert_eq!(
            csv_fields(b"\nb,k,v1\nb,k2,v2\n").expect("fields"),
            (BUCKET_KEY_VERSION, 2)
        );
        assert!(csv_fields(b"\n\n").is_err());
        assert!(csv_fields(b"just-a-bucket\n").is_err());
        assert_eq!(
            report_location("r", Some("batch/"), "id1"),
            "s3://r/batch/job-id1/manifest.json"
        );
        assert_eq!(report_location("r", None, "id1"), "s3://r/job-id1/manifest.json");
    }

    fn manifest() -> ManifestLocation {
        ManifestLocation {
            bucket: "m".to_owned(),
            key: "manifests/a b.csv".to_owned(),
            etag: "0123abcd".to_owned(),
            fields: BUCKET_KEY,
        }
    }

    /// The body, as the server's own parser reads it.
    fn server_reads(plan: &JobPlan) -> kd_batch::JobSpec {
        let xml = create_job_xml(plan, &manifest(), "token-1");
        let doc = kd_api_s3control::xml::parse(xml.as_bytes()).expect("well-formed");
        kd_api_s3control::shapes::create_job_request(&doc)
            .unwrap_or_else(|e| panic!("{}: {} in {xml}", e.code, e.message))
    }

    #[test]
    fn batch_cli_create_job_xml_is_what_the_server_expects() {
        let a = args(&[
            "--source-bucket",
            "src",
            "--manifest-bucket",
            "m",
            "--operation",
            "copy",
            "--target-bucket",
            "dst",
            "--target-prefix",
            "copied",
            "--report-bucket",
            "rep",
            "--report-prefix",
            "batch/",
            "--priority",
            "42",
            "--description",
            "a <copy> & more",
        ])
        .expect("flags");
        let plan = JobPlan::from_args(&a).expect("plan");
        let spec = server_reads(&plan);
        assert_eq!(spec.client_request_token, "token-1");
        assert_eq!(spec.priority, 42);
        assert!(!spec.confirmation_required);
        assert_eq!(spec.role_arn, "arn:aws:iam::000000000000:role/r");
        assert_eq!(spec.description.as_deref(), Some("a <copy> & more"));
        assert_eq!(spec.manifest.format, "S3BatchOperations_CSV_20180820");
        assert_eq!(spec.manifest.object_arn, "arn:aws:s3:::m/manifests/a b.csv");
        assert_eq!(spec.manifest.etag, "0123abcd");
        assert_eq!(spec.manifest.fields, Some(vec!["Bucket".to_owned(), "Key".to_owned()]));
        match &spec.operation {
            kd_batch::Operation::S3PutObjectCopy(c) => {
                assert_eq!(c.target_resource.as_deref(), Some("arn:aws:s3:::dst"));
                assert_eq!(c.target_key_prefix.as_deref(), Some("copied"));
            }
            other => panic!("{other:?}"),
        }
        assert!(spec.report.enabled);
        assert_eq!(spec.report.bucket.as_deref(), Some("arn:aws:s3:::rep"));
        assert_eq!(spec.report.prefix.as_deref(), Some("batch"));
        assert_eq!(spec.report.report_scope.as_deref(), Some("AllTasks"));
        assert_eq!(spec.report.format.as_deref(), Some("Report_CSV_20180820"));

        let lambda = |extra: &[&str]| {
            let mut v = vec![
                "--manifest-file",
                "m.csv",
                "--manifest-bucket",
                "m",
                "--operation",
                "lambda",
                "--function-arn",
                "arn:aws:lambda:us-east-1:000000000000:function:f",
                "--confirm",
            ];
            v.extend_from_slice(extra);
            JobPlan::from_args(&args(&v).expect("flags"))
        };
        let spec = server_reads(&lambda(&["--user-arg", "a=1", "b=x=y"]).expect("plan"));
        assert!(spec.confirmation_required);
        assert!(!spec.report.enabled);
        match &spec.operation {
            kd_batch::Operation::LambdaInvoke(l) => {
                assert_eq!(l.function_arn, "arn:aws:lambda:us-east-1:000000000000:function:f");
                assert_eq!(l.invocation_schema_version.as_deref(), Some("2.0"));
                let ua = l.user_arguments.clone().unwrap_or_default();
                assert_eq!(ua.get("a").map(String::as_str), Some("1"));
                assert_eq!(ua.get("b").map(String::as_str), Some("x=y"));
            }
            other => panic!("{other:?}"),
        }
        let spec = server_reads(&lambda(&[]).expect("plan"));
        match &spec.operation {
            kd_batch::Operation::LambdaInvoke(l) => {
                assert_eq!(l.invocation_schema_version.as_deref(), Some("1.0"));
                assert!(l.user_arguments.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert!(lambda(&["--schema", "1.0", "--user-arg", "a=1"]).is_err());

        let tag = args(&[
            "--source-bucket",
            "s",
            "--manifest-bucket",
            "m",
            "--operation",
            "tag",
            "--tag",
            "team=data",
            "--tag",
            "env=",
            "--report-bucket",
            "rep",
            "--report-scope",
            "FailedTasksOnly",
        ])
        .expect("flags");
        let spec = server_reads(&JobPlan::from_args(&tag).expect("plan"));
        match &spec.operation {
            kd_batch::Operation::S3PutObjectTagging(t) => {
                let tags: Vec<(String, String)> = t
                    .tag_set
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| (t.key, t.value))
                    .collect();
                assert_eq!(tags, h(&[("team", "data"), ("env", "")]));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(spec.report.report_scope.as_deref(), Some("FailedTasksOnly"));
        assert_eq!(spec.report.prefix, None);

        let untag = args(&["--source-bucket", "s", "--manifest-bucket", "m", "--operation", "untag"]).expect("flags");
        let spec = server_reads(&JobPlan::from_args(&untag).expect("plan"));
        assert!(matches!(spec.operation, kd_batch::Operation::S3DeleteObjectTagging));
    }

    #[test]
    fn batch_cli_flag_rules() {
        let m = ["--source-bucket", "s", "--manifest-bucket", "m"];
        let with = |extra: &[&str]| {
            let mut v = m.to_vec();
            v.extend_from_slice(extra);
            args(&v)
        };
        // Clap: one manifest source, operation-specific requirements.
        assert!(args(&["--manifest-bucket", "m", "--operation", "untag"]).is_err());
        assert!(
            args(&[
                "--manifest-file",
                "f",
                "--source-bucket",
                "s",
                "--manifest-bucket",
                "m",
                "--operation",
                "untag"
            ])
            .is_err()
        );
        assert!(with(&["--operation", "copy"]).is_err());
        assert!(with(&["--operation", "lambda"]).is_err());
        assert!(with(&["--operation", "tag"]).is_err());
        assert!(with(&["--operation", "tag", "--tag", "novalue"]).is_err());
        assert!(with(&["--operation", "untag", "--report-prefix", "p"]).is_err());
        assert!(with(&["--operation", "untag", "--report-bucket", "r", "--report-scope", "Some"]).is_err());
        assert!(with(&["--operation", "untag", "--priority", "-1"]).is_err());
        assert!(with(&["--operation", "lambda", "--function-arn", "f", "--schema", "3.0"]).is_err());
        // Flags of another operation.
        let plan = |extra: &[&str]| JobPlan::from_args(&with(extra).expect("flags"));
        assert!(plan(&["--operation", "untag", "--target-bucket", "t"]).is_err());
        assert!(plan(&["--operation", "copy", "--target-bucket", "t", "--tag", "a=b"]).is_err());
        assert!(plan(&["--operation", "tag", "--tag", "a=b", "--function-arn", "f"]).is_err());
        let many: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
        let mut v = vec!["--operation", "lambda", "--function-arn", "f", "--user-arg"];
        v.extend(many.iter().map(String::as_str));
        assert!(plan(&v).is_err());
        // Defaults.
        let a = with(&["--operation", "untag"]).expect("flags");
        assert_eq!(a.endpoint, "http://127.0.0.1:4566");
        assert_eq!(a.account_id, "000000000000");
        assert_eq!(a.region, "us-east-1");
        assert_eq!(a.priority, 10);
        assert!(!a.confirm && !a.no_follow);
        // Keys: flags, else the environment (with its token), else test/test.
        assert!(
            args(&[
                "--manifest-bucket",
                "m",
                "--source-bucket",
                "s",
                "--operation",
                "untag",
                "--access-key-id",
                "k"
            ])
            .is_err()
        );
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        let full = env(&[
            ("AWS_ACCESS_KEY_ID", "ek"),
            ("AWS_SECRET_ACCESS_KEY", "es"),
            ("AWS_SESSION_TOKEN", "et"),
        ]);
        let c = Credentials::pick(Some("k".into()), Some("s".into()), None, full).expect("creds");
        assert_eq!((c.access_key_id.as_str(), c.session_token), ("k", None));
        let c = Credentials::pick(None, None, None, full).expect("creds");
        assert_eq!(
            (
                c.access_key_id.as_str(),
                c.secret_access_key.as_str(),
                c.session_token.as_deref()
            ),
            ("ek", "es", Some("et"))
        );
        let c = Credentials::pick(None, None, None, env(&[])).expect("creds");
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str()),
            ("test", "test")
        );
        assert!(Credentials::pick(None, None, None, env(&[("AWS_ACCESS_KEY_ID", "ek")])).is_err());
    }

    #[test]
    fn batch_cli_endpoints() {
        let p = |e: &str| parse_endpoint(e).map_err(|e| e.to_string());
        assert_eq!(
            p("http://127.0.0.1:4566").expect("ok"),
            ("127.0.0.1:4566".to_owned(), "127.0.0.1:4566".to_owned())
        );
        assert_eq!(
            p("http://localhost/").expect("ok"),
            ("localhost".to_owned(), "localhost:80".to_owned())
        );
        assert_eq!(
            p("http://[::1]:4566").expect("ok"),
            ("[::1]:4566".to_owned(), "[::1]:4566".to_owned())
        );
        assert_eq!(p("http://[::1]").expect("ok").1, "[::1]:80");
        assert!(p("https://127.0.0.1:4566").expect_err("https").contains("only http://"));
        assert!(p("127.0.0.1:4566").is_err());
        assert!(p("http://h:1/path").is_err());
        assert!(p("http://").is_err());
    }

    #[test]
    fn batch_cli_parses_answers() {
        let list = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>src</Name><Prefix>in/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>in/a &amp; b.txt</Key><ETag>"x"</ETag><Size>1</Size></Contents><Contents><Key>in/&#x41;</Key></Contents>
<NextContinuationToken>tok+/=</NextContinuationToken></ListBucketResult>"#;
        let (keys, next) = parse_list_page(list).expect("page");
        assert_eq!(keys, vec!["in/a & b.txt".to_owned(), "in/A".to_owned()]);
        assert_eq!(next.as_deref(), Some("tok+/="));
        let last =
            b"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</Key></Contents></ListBucketResult>";
        assert_eq!(parse_list_page(last).expect("page"), (vec!["k".to_owned()], None));
        assert!(parse_list_page(b"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>").is_err());

        let describe = br#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeJobResult xmlns="http://awss3control.amazonaws.com/doc/2018-08-20/"><Job><JobId>j-1</JobId><ConfirmationRequired>false</ConfirmationRequired><JobArn>arn:aws:s3:us-east-1:000000000000:job/j-1</JobArn><Status>Complete</Status>
<Manifest><Spec><Format>S3BatchOperations_CSV_20180820</Format></Spec><Location><ObjectArn>arn:aws:s3:::m/k</ObjectArn><ETag>e</ETag></Location></Manifest>
<Operation><S3PutObjectCopy><TargetResource>arn:aws:s3:::dst</TargetResource></S3PutObjectCopy></Operation><Priority>10</Priority>
<ProgressSummary><TotalNumberOfTasks>20</TotalNumberOfTasks><NumberOfTasksSucceeded>18</NumberOfTasksSucceeded><NumberOfTasksFailed>2</NumberOfTasksFailed><Timers><ElapsedTimeInActiveSeconds>3</ElapsedTimeInActiveSeconds></Timers></ProgressSummary>
<FailureReasons><member><FailureCode>ManifestETagMismatch</FailureCode><FailureReason>bad &lt;etag&gt;</FailureReason></member></FailureReasons>
<Report><Bucket>arn:aws:s3:::rep</Bucket><Format>Report_CSV_20180820</Format><Enabled>true</Enabled><Prefix>batch</Prefix><ReportScope>AllTasks</ReportScope></Report>
<CreationTime>2024-01-01T00:00:00.000Z</CreationTime><RoleArn>arn:aws:iam::000000000000:role/r</RoleArn></Job></DescribeJobResult>"#;
        let job = parse_describe(describe).expect("job");
        assert_eq!(
            job,
            JobView {
                id: "j-1".into(),
                status: "Complete".into(),
                total: 20,
                succeeded: 18,
                failed: 2,
                active_secs: 3,
                status_update_reason: None,
                failure_reasons: vec![("ManifestETagMismatch".into(), "bad <etag>".into())],
                report: Some(("rep".into(), Some("batch".into()))),
            }
        );
        assert!(job.is_terminal());
        assert_eq!(exit_code(&job), EXIT_TASKS_FAILED);
        let text = summary(&job, Duration::from_millis(1500));
        assert!(text.contains("JobId:          j-1\n"), "{text}");
        assert!(
            text.contains("Tasks:          20 total, 18 succeeded, 2 failed\n"),
            "{text}"
        );
        assert!(text.contains("  ManifestETagMismatch: bad <etag>\n"), "{text}");
        assert!(
            text.contains("Report:         s3://rep/batch/job-j-1/manifest.json\n"),
            "{text}"
        );
        let ok = JobView {
            failed: 0,
            ..job.clone()
        };
        assert_eq!(exit_code(&ok), EXIT_OK);
        for s in ["Failed", "Cancelled"] {
            let j = JobView {
                status: s.into(),
                ..job.clone()
            };
            assert!(j.is_terminal());
            assert_eq!(exit_code(&j), EXIT_JOB_FAILED);
        }
        assert!(
            !JobView {
                status: "Active".into(),
                ..job
            }
            .is_terminal()
        );
        assert!(parse_describe(b"<Other/>").is_err());

        // Errors: S3 Control's envelope, S3's bare <Error>, and no XML at all.
        let e = ApiError::of(
            400,
            b"<ErrorResponse><Error><Code>BadRequestException</Code><Message>no &amp; no</Message></Error><RequestId>r</RequestId></ErrorResponse>",
            "POST /v20180820/jobs".into(),
        );
        assert_eq!(e.to_string(), "BadRequestException: no & no");
        assert!(!e.retryable());
        let e = ApiError::of(
            404,
            b"<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>b</BucketName></Error>",
            "PUT /b/k".into(),
        );
        assert_eq!(e.to_string(), "NoSuchBucket: The specified bucket does not exist");
        let e = ApiError::of(503, b"busy", "GET /".into());
        assert_eq!(e.to_string(), "HTTP503: busy");
        assert!(e.retryable());
        let text = error_text(
            &anyhow::Error::new(ApiError::of(
                404,
                b"<Error><Code>NoSuchBucket</Code><Message>gone</Message></Error>",
                "PUT /b/k".into(),
            ))
            .context("uploading the manifest"),
        );
        assert_eq!(
            text,
            "error: NoSuchBucket: gone\n  (while uploading the manifest; PUT /b/k answered HTTP 404)"
        );
        // Bounds.
        let deep = "<a>".repeat(64 + 1) + &"</a>".repeat(64 + 1);
        assert!(parse_xml(deep.as_bytes()).is_err());
        assert!(parse_xml(b"<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>").is_err());
        assert!(parse_xml(b"<a><b></a>").is_err());
    }

    #[test]
    fn batch_cli_http_answers() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nETag: \"abc\"\r\nContent-Length: 5\r\n\r\nhello").expect("ok");
        assert_eq!(
            (r.status, r.header("etag"), r.body.as_slice()),
            (200, Some("\"abc\""), &b"hello"[..])
        );
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .expect("ok");
        assert_eq!((r.status, r.body.as_slice()), (404, &b"abcde"[..]));
        let r = parse_response(b"HTTP/1.0 204 No Content\r\n\r\n").expect("ok");
        assert_eq!((r.status, r.body.len()), (204, 0));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn batch_cli_progress_line() {
        let job = JobView {
            status: "Active".into(),
            total: 20,
            succeeded: 9,
            failed: 1,
            ..JobView::default()
        };
        assert_eq!(
            progress_line(&job, Duration::from_secs(2)),
            "Active     [############------------] 10/20  ok 9  failed 1  5.0 tasks/s  2.0s"
        );
        let new = JobView {
            status: "Preparing".into(),
            ..JobView::default()
        };
        assert_eq!(
            progress_line(&new, Duration::ZERO),
            "Preparing  [------------------------] 0/0  ok 0  failed 0  0.0 tasks/s  0.0s"
        );
    }
}
