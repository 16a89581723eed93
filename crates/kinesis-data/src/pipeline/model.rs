//! The pipeline file: its TOML shape, loading with line-numbered errors, and the checks that
//! every reference (a role, stream, bucket or function named elsewhere) resolves. The
//! fields are documented in `docs/pipeline.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// Largest pipeline file read.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// A whole pipeline.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// IAM roles.
    #[serde(default, rename = "role")]
    pub roles: Vec<Role>,
    /// Kinesis data streams.
    #[serde(default, rename = "stream")]
    pub streams: Vec<Stream>,
    /// S3 buckets.
    #[serde(default, rename = "bucket")]
    pub buckets: Vec<Bucket>,
    /// Lambda functions.
    #[serde(default, rename = "function")]
    pub functions: Vec<Function>,
    /// Firehose delivery streams.
    #[serde(default, rename = "delivery_stream")]
    pub delivery_streams: Vec<DeliveryStream>,
    /// Lambda event source mappings (Kinesis streams → functions).
    #[serde(default, rename = "event_source_mapping")]
    pub event_source_mappings: Vec<EventSourceMapping>,
    /// S3 Batch Operations jobs.
    #[serde(default, rename = "batch_job")]
    pub batch_jobs: Vec<BatchJob>,
    /// API Gateway REST APIs.
    #[serde(default, rename = "rest_api")]
    pub rest_apis: Vec<RestApi>,
    /// Glue databases.
    #[serde(default, rename = "glue_database")]
    pub glue_databases: Vec<GlueDatabase>,
    /// Glue tables.
    #[serde(default, rename = "glue_table")]
    pub glue_tables: Vec<GlueTable>,
    /// Where the file was read from (functions' relative code paths resolve against it).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[[role]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Role name.
    pub name: Spanned<String>,
    /// Service principals that may assume it (`lambda.amazonaws.com`, or just `lambda`).
    pub trust: Vec<String>,
    /// AWS managed policies by name (`AmazonS3FullAccess`) or ARN.
    #[serde(default)]
    pub managed_policies: Vec<String>,
    /// Inline policy statements (one inline policy named `pipeline`).
    #[serde(default, rename = "statement")]
    pub statements: Vec<Statement>,
}

/// `[[role.statement]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// `Allow` (default) or `Deny`.
    #[serde(default = "allow")]
    pub effect: String,
    /// Actions (`s3:GetObject`, `s3:*`).
    pub actions: Vec<String>,
    /// Resources (default `*`).
    #[serde(default = "star")]
    pub resources: Vec<String>,
}

fn allow() -> String {
    "Allow".into()
}

fn star() -> Vec<String> {
    vec!["*".into()]
}

/// `[[stream]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stream {
    /// Stream name.
    pub name: Spanned<String>,
    /// Open shards (default 1).
    #[serde(default = "one")]
    pub shards: u32,
    /// Retention in hours (default 24).
    #[serde(default = "day")]
    pub retention_hours: u32,
}

fn one() -> u32 {
    1
}

fn day() -> u32 {
    24
}

/// `[[bucket]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    /// Bucket name.
    pub name: Spanned<String>,
    /// Versioning enabled.
    #[serde(default)]
    pub versioning: bool,
    /// Object-created notifications into functions.
    #[serde(default, rename = "notification")]
    pub notifications: Vec<Notification>,
}

/// `[[bucket.notification]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    /// Function name (defined in this file).
    pub function: Spanned<String>,
    /// Events (default `s3:ObjectCreated:*`).
    #[serde(default = "created")]
    pub events: Vec<String>,
    /// Key prefix filter.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Key suffix filter.
    #[serde(default)]
    pub suffix: Option<String>,
}

fn created() -> Vec<String> {
    vec!["s3:ObjectCreated:*".into()]
}

/// `[[function]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Function {
    /// Function name.
    pub name: Spanned<String>,
    /// Runtime (default `provided.al2023`).
    #[serde(default = "provided")]
    pub runtime: String,
    /// Handler (default `bootstrap`).
    #[serde(default = "bootstrap")]
    pub handler: String,
    /// Execution role (defined in this file).
    pub role: Spanned<String>,
    /// The code.
    pub code: Code,
    /// Timeout, seconds (default 30).
    #[serde(default = "thirty")]
    pub timeout: u32,
    /// Memory, MB (default 128).
    #[serde(default = "memory")]
    pub memory: u32,
    /// Environment variables.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

fn provided() -> String {
    "provided.al2023".into()
}

fn bootstrap() -> String {
    "bootstrap".into()
}

fn thirty() -> u32 {
    30
}

fn memory() -> u32 {
    128
}

/// Where a function's code comes from: exactly one member.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Code {
    /// A workspace example under `examples/functions/` (a Rust `lambda_runtime` function,
    /// built with cargo and zipped as `bootstrap`).
    pub example: Option<String>,
    /// A directory (zipped as it is) or a single file (zipped under its own name).
    pub path: Option<PathBuf>,
    /// A ready zip file.
    pub zip: Option<PathBuf>,
}

/// `[[delivery_stream]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryStream {
    /// Delivery stream name.
    pub name: Spanned<String>,
    /// Source stream (defined in this file); absent: Direct PUT.
    #[serde(default)]
    pub source: Option<Spanned<String>>,
    /// The role Firehose acts as (defined in this file).
    pub role: Spanned<String>,
    /// Destination bucket (defined in this file).
    pub bucket: Spanned<String>,
    /// Key prefix (may use `!{timestamp:…}`, `!{partitionKeyFromQuery:…}`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Error output prefix.
    #[serde(default)]
    pub error_prefix: Option<String>,
    /// Buffer size, MiB (default 5).
    #[serde(default = "five")]
    pub buffer_mib: u32,
    /// Buffer interval, seconds (default 300).
    #[serde(default = "five_minutes")]
    pub buffer_seconds: u32,
    /// `UNCOMPRESSED` (default), `GZIP`, `ZIP`, `Snappy`, `HADOOP_SNAPPY`.
    #[serde(default = "uncompressed")]
    pub compression: String,
    /// Dynamic partitioning: JQ query of the partition keys (e.g. `{kind: .kind}`).
    #[serde(default)]
    pub partition_query: Option<String>,
    /// A Lambda processor (function defined in this file).
    #[serde(default)]
    pub processor: Option<Spanned<String>>,
}

fn five() -> u32 {
    5
}

fn five_minutes() -> u32 {
    300
}

fn uncompressed() -> String {
    "UNCOMPRESSED".into()
}

/// `[[event_source_mapping]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSourceMapping {
    /// Function (defined in this file).
    pub function: Spanned<String>,
    /// Source stream (defined in this file).
    pub stream: Spanned<String>,
    /// `TRIM_HORIZON` (default) or `LATEST`.
    #[serde(default = "trim_horizon")]
    pub starting_position: String,
    /// Records per batch (default 100).
    #[serde(default = "hundred")]
    pub batch_size: u32,
}

fn trim_horizon() -> String {
    "TRIM_HORIZON".into()
}

fn hundred() -> u32 {
    100
}

/// `[[batch_job]]`: created once per distinct definition (its ClientRequestToken is
/// derived from its name and contents).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchJob {
    /// Job name (the Description).
    pub name: Spanned<String>,
    /// The job's role (defined in this file).
    pub role: Spanned<String>,
    /// The manifest: its bucket and key (an existing CSV object), or the objects under
    /// `source_prefix` of `source_bucket` (the manifest is written to
    /// `<source_bucket>/manifests/<job name>.csv`).
    pub manifest_bucket: Option<String>,
    /// Manifest key.
    pub manifest_key: Option<String>,
    /// Source bucket to list.
    pub source_bucket: Option<String>,
    /// Prefix to list.
    #[serde(default)]
    pub source_prefix: String,
    /// The operation.
    pub operation: BatchOperation,
    /// Report bucket (none: no report).
    pub report_bucket: Option<String>,
    /// Report prefix.
    pub report_prefix: Option<String>,
    /// Priority (default 10).
    #[serde(default = "ten")]
    pub priority: i32,
}

fn ten() -> i32 {
    10
}

/// `[batch_job.operation]`: exactly one member.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchOperation {
    /// LambdaInvoke: a function defined in this file (schema 2.0).
    pub lambda: Option<Spanned<String>>,
    /// UserArguments of the invocation.
    #[serde(default)]
    pub user_arguments: BTreeMap<String, String>,
    /// S3PutObjectCopy to this bucket.
    pub copy_to: Option<String>,
    /// Target key prefix of the copy.
    pub copy_prefix: Option<String>,
}

/// `[[rest_api]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestApi {
    /// API name (unique among the file's APIs).
    pub name: Spanned<String>,
    /// Stage deployed to (default `prod`).
    #[serde(default = "prod")]
    pub stage: String,
    /// Methods.
    #[serde(default, rename = "method")]
    pub methods: Vec<Method>,
}

fn prod() -> String {
    "prod".into()
}

/// `[[rest_api.method]]`: an AWS_PROXY integration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Method {
    /// Resource path (`/`, `/{id}`, `/items/{proxy+}`).
    pub path: String,
    /// HTTP method (`GET`, `PUT`, `ANY`, …).
    pub method: String,
    /// Function (defined in this file).
    pub function: Spanned<String>,
}

/// `[[glue_database]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlueDatabase {
    /// Database name.
    pub name: Spanned<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
}

/// `[[glue_table]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlueTable {
    /// Database (defined in this file).
    pub database: Spanned<String>,
    /// Table name.
    pub name: Spanned<String>,
    /// `s3://bucket/prefix/`.
    pub location: String,
    /// `json` (OpenX JsonSerDe, default), `csv`, `parquet`.
    #[serde(default = "json")]
    pub format: String,
    /// Columns.
    pub columns: Vec<Column>,
    /// Partition keys.
    #[serde(default)]
    pub partition_keys: Vec<Column>,
    /// Table parameters (e.g. partition projection).
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

fn json() -> String {
    "json".into()
}

/// A column.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Glue type (`string`, `bigint`, `timestamp`, …).
    #[serde(rename = "type")]
    pub kind: String,
}

/// An error in a pipeline file: `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

impl std::error::Error for FileError {}

/// (line, column), 1-based, of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
        + 1;
    (line, column)
}

/// Reads and checks a pipeline file.
pub fn load(path: &Path) -> Result<Pipeline, FileError> {
    let file = path.display().to_string();
    let fail = |message: String| FileError {
        file: file.clone(),
        line: 1,
        column: 1,
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read the file: {e}")))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(fail(format!("the file is larger than {MAX_FILE_BYTES} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read the file: {e}")))?;
    let mut p = parse(&file, &text)?;
    p.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(p)
}

/// Parses and checks pipeline text named `file` (for messages).
pub fn parse(file: &str, text: &str) -> Result<Pipeline, FileError> {
    let p: Pipeline = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| position(text, s.start));
        FileError {
            file: file.to_owned(),
            line,
            column,
            message: e.message().to_owned(),
        }
    })?;
    check(&p).map_err(|(span, message)| {
        let (line, column) = position(text, span.start);
        FileError {
            file: file.to_owned(),
            line,
            column,
            message,
        }
    })?;
    Ok(p)
}

type Check = Result<(), (Range<usize>, String)>;

fn names<'a, T>(
    items: &'a [T],
    name: impl Fn(&'a T) -> &'a Spanned<String>,
    what: &str,
) -> Result<BTreeSet<&'a str>, (Range<usize>, String)> {
    let mut set = BTreeSet::new();
    for item in items {
        let n = name(item);
        if n.get_ref().is_empty() {
            return Err((n.span(), format!("{what} name must not be empty")));
        }
        if !set.insert(n.get_ref().as_str()) {
            return Err((n.span(), format!("{what} {:?} is defined twice", n.get_ref())));
        }
    }
    Ok(set)
}

fn refers(set: &BTreeSet<&str>, r: &Spanned<String>, what: &str) -> Check {
    if set.contains(r.get_ref().as_str()) {
        Ok(())
    } else {
        Err((r.span(), format!("no {what} named {:?} in this file", r.get_ref())))
    }
}

/// Every reference resolves; names are unique; one-of members have exactly one.
fn check(p: &Pipeline) -> Check {
    let roles = names(&p.roles, |r| &r.name, "role")?;
    let streams = names(&p.streams, |s| &s.name, "stream")?;
    let buckets = names(&p.buckets, |b| &b.name, "bucket")?;
    let functions = names(&p.functions, |f| &f.name, "function")?;
    names(&p.delivery_streams, |d| &d.name, "delivery stream")?;
    names(&p.batch_jobs, |j| &j.name, "batch job")?;
    names(&p.rest_apis, |a| &a.name, "REST API")?;
    let databases = names(&p.glue_databases, |d| &d.name, "Glue database")?;
    for r in &p.roles {
        if r.trust.is_empty() {
            return Err((r.name.span(), "a role needs at least one `trust` service".into()));
        }
    }
    for s in &p.streams {
        if s.shards == 0 || s.retention_hours < 24 {
            return Err((
                s.name.span(),
                "a stream needs `shards` ≥ 1 and `retention_hours` ≥ 24".into(),
            ));
        }
    }
    for b in &p.buckets {
        if kd_objects::validate_bucket_name(b.name.get_ref()).is_err() {
            return Err((
                b.name.span(),
                format!(
                    "{:?} is not a valid bucket name (3–63 characters: lower-case letters, digits, dots and hyphens)",
                    b.name.get_ref()
                ),
            ));
        }
        for n in &b.notifications {
            refers(&functions, &n.function, "function")?;
        }
    }
    for f in &p.functions {
        refers(&roles, &f.role, "role")?;
        let c = &f.code;
        let given = [c.example.is_some(), c.path.is_some(), c.zip.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if given != 1 {
            return Err((
                f.name.span(),
                "`code` needs exactly one of `example`, `path` or `zip`".into(),
            ));
        }
    }
    for d in &p.delivery_streams {
        refers(&roles, &d.role, "role")?;
        refers(&buckets, &d.bucket, "bucket")?;
        if let Some(s) = &d.source {
            refers(&streams, s, "stream")?;
        }
        if let Some(f) = &d.processor {
            refers(&functions, f, "function")?;
        }
    }
    for m in &p.event_source_mappings {
        refers(&functions, &m.function, "function")?;
        refers(&streams, &m.stream, "stream")?;
    }
    for j in &p.batch_jobs {
        refers(&roles, &j.role, "role")?;
        let manifest = j.manifest_bucket.is_some() && j.manifest_key.is_some();
        if manifest == j.source_bucket.is_some() {
            return Err((
                j.name.span(),
                "a batch job needs either `manifest_bucket` and `manifest_key`, or `source_bucket`".into(),
            ));
        }
        match (&j.operation.lambda, &j.operation.copy_to) {
            (Some(f), None) => refers(&functions, f, "function")?,
            (None, Some(_)) => {}
            _ => {
                return Err((
                    j.name.span(),
                    "`operation` needs exactly one of `lambda` or `copy_to`".into(),
                ));
            }
        }
    }
    for a in &p.rest_apis {
        for m in &a.methods {
            refers(&functions, &m.function, "function")?;
            if !m.path.starts_with('/') {
                return Err((m.function.span(), format!("method path {:?} must start with /", m.path)));
            }
        }
    }
    let mut tables = BTreeSet::new();
    for t in &p.glue_tables {
        refers(&databases, &t.database, "Glue database")?;
        if !tables.insert((t.database.get_ref(), t.name.get_ref())) {
            return Err((t.name.span(), format!("table {:?} is defined twice", t.name.get_ref())));
        }
        if !t.location.starts_with("s3://") {
            return Err((t.name.span(), "`location` must be an s3:// URL".into()));
        }
        if !matches!(t.format.as_str(), "json" | "csv" | "parquet") {
            return Err((t.name.span(), "`format` must be json, csv or parquet".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_line_and_field() {
        let text = "[[role]]\nname = \"r\"\ntrust = [\"lambda\"]\n\n[[function]]\nname = \"f\"\nrole = \"nope\"\ncode = { example = \"echo\" }\n";
        let e = parse("p.toml", text).expect_err("unknown role");
        assert_eq!((e.line, e.column), (7, 8), "{e}");
        assert!(e.message.contains("no role named \"nope\""), "{e}");
        let e = parse("p.toml", "[[stream]]\nname = \"s\"\nshard = 2\n").expect_err("unknown field");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("unknown field `shard`"), "{e}");
        let e = parse("p.toml", "[[bucket]]\nname = \"a\"\n[[bucket]]\nname = \"a\"\n").expect_err("twice");
        assert_eq!(e.line, 4, "{e}");
        assert!(parse("p.toml", "").is_ok());
    }

    #[test]
    fn the_embedded_pipeline_is_valid() {
        let p = parse("kinesis-data.toml", crate::pipeline::DEFAULT_PIPELINE).expect("valid");
        assert!(!p.streams.is_empty() && !p.functions.is_empty());
    }

    #[test]
    fn every_example_part_is_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        for n in 1..=6 {
            let path = dir.join(format!("part{n}.toml"));
            let text = std::fs::read_to_string(&path).expect("example file");
            if let Err(e) = parse(&path.display().to_string(), &text) {
                panic!("{e}");
            }
        }
    }
}
