//! The SSM Parameter Store engine: parameters per account and region, each with its
//! versions (the newest is the current value), hierarchical names (`/a/b/c`), lookups by
//! name, by `name:version` selector and by path, and the filters of DescribeParameters. It
//! sits below `api-ssm` (the awsJson1.1 adapter, `AmazonSSM.*`) and above `storage`; the
//! CloudFormation engine reads it through its `Environment` port (the composition root
//! implements it over [`ParameterStore::value`]), so an `AWS::SSM::Parameter::Value<String>`
//! template parameter resolves against what PutParameter stored.
//!
//! `SecureString` values are stored as given: there is no KMS, and `KeyId` is recorded
//! (default `alias/aws/ssm`) without encrypting anything.
//!
//! # Durability (format)
//!
//! One document per parameter in the shared redb `MetaStore`, table `ssm_parameters`, key
//! `<account>/<region>/<name>` (components escaped: `%` → `%25`, `/` → `%2F`), value a JSON
//! [`ParameterDoc`] carrying `format` 1 and every kept version (at most
//! [`MAX_VERSIONS`], oldest dropped first). A mutation commits the one document it changes
//! before it answers and only then changes the in-memory copy (mutations are serialised).
//! DeleteParameters deletes its documents in one transaction. **Recovery rule**
//! ([`ParameterStore::open`]): load every document; no change spans two transactions.

mod error;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use kd_storage::{Clock, MetaOp, MetaStore};
use serde::{Deserialize, Serialize};

pub use error::{Error, Result};

const T_PARAMETERS: &str = "ssm_parameters";
const FORMAT_VERSION: u32 = 1;

/// Versions kept per parameter (SSM keeps 100).
pub const MAX_VERSIONS: usize = 100;
/// Deepest hierarchy (`/1/2/…/15`).
pub const MAX_LEVELS: usize = 15;
/// Longest value of a Standard parameter.
pub const MAX_STANDARD_VALUE: usize = 4096;
/// Longest value of an Advanced parameter.
pub const MAX_ADVANCED_VALUE: usize = 8192;
/// Largest page (and default) of GetParametersByPath.
pub const MAX_PATH_PAGE: usize = 10;
/// Largest page (and default) of DescribeParameters.
pub const MAX_DESCRIBE_PAGE: usize = 50;
/// Largest page (and default) of GetParameterHistory.
pub const MAX_HISTORY_PAGE: usize = 50;
/// The key SecureStrings are recorded with when none is given.
pub const DEFAULT_KEY_ID: &str = "alias/aws/ssm";

/// An account and region: each has its own parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    /// The account.
    pub account: String,
    /// The region.
    pub region: String,
}

/// A parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParameterType {
    /// `String`.
    String,
    /// `StringList` (comma-separated).
    StringList,
    /// `SecureString` (stored as given here).
    SecureString,
}

impl ParameterType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterType::String => "String",
            ParameterType::StringList => "StringList",
            ParameterType::SecureString => "SecureString",
        }
    }

    /// From the wire name.
    pub fn parse(s: &str) -> Option<ParameterType> {
        match s {
            "String" => Some(ParameterType::String),
            "StringList" => Some(ParameterType::StringList),
            "SecureString" => Some(ParameterType::SecureString),
            _ => None,
        }
    }
}

/// One version of a parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The version number (1, 2, …).
    pub version: u64,
    /// The value.
    pub value: String,
    /// The type.
    pub parameter_type: ParameterType,
    /// `Description`.
    pub description: Option<String>,
    /// `AllowedPattern`.
    pub allowed_pattern: Option<String>,
    /// `KeyId` (SecureString only).
    pub key_id: Option<String>,
    /// `Standard` or `Advanced`.
    pub tier: String,
    /// `text`, `aws:ec2:image` or `aws:ssm:integration`.
    pub data_type: String,
    /// When it was written.
    pub last_modified_ms: i64,
    /// Who wrote it (an ARN).
    pub last_modified_user: String,
}

/// A parameter: its name and kept versions, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    /// The name as stored.
    pub name: String,
    /// Kept versions, oldest first; the last is the current one.
    pub versions: Vec<Version>,
}

impl Parameter {
    /// The current version.
    pub fn current(&self) -> Option<&Version> {
        self.versions.last()
    }
}

/// A parameter at one version, as the read operations answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterView {
    /// The name.
    pub name: String,
    /// The version shown.
    pub version: Version,
    /// The selector the caller used (`:3`), if any.
    pub selector: Option<String>,
}

/// The durable document of a parameter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParameterDoc {
    /// Format version (1).
    pub format: u32,
    /// Account.
    pub account: String,
    /// Region.
    pub region: String,
    /// The parameter.
    pub parameter: Parameter,
}

/// What PutParameter asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutInput {
    /// `Name`.
    pub name: String,
    /// `Value`.
    pub value: String,
    /// `Type` (default: the existing parameter's, else `String`).
    pub parameter_type: Option<ParameterType>,
    /// `Overwrite`.
    pub overwrite: bool,
    /// `Description`.
    pub description: Option<String>,
    /// `AllowedPattern`.
    pub allowed_pattern: Option<String>,
    /// `KeyId`.
    pub key_id: Option<String>,
    /// `Tier` (`Standard`, `Advanced`, `Intelligent-Tiering`).
    pub tier: Option<String>,
    /// `DataType`.
    pub data_type: Option<String>,
    /// The caller, recorded as `LastModifiedUser`.
    pub user: String,
}

/// A filter of DescribeParameters / GetParametersByPath (`ParameterStringFilter`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `Key`: `Name`, `Type`, `KeyId`, `Path`, `Tier`, `DataType` (`Label` refused: labels
    /// are not supported).
    pub key: String,
    /// `Option`: `Equals` (default), `BeginsWith`, `Contains` (Name); `Recursive`,
    /// `OneLevel` (Path).
    pub option: Option<String>,
    /// `Values` (any may match).
    pub values: Vec<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The next page's token.
    pub next_token: Option<String>,
}

/// The ARN of a parameter: `arn:aws:ssm:<region>:<account>:parameter/<name>` (a leading
/// `/` of the name is not doubled).
pub fn parameter_arn(scope: &Scope, name: &str) -> String {
    let partition = if scope.region.starts_with("cn-") {
        "aws-cn"
    } else if scope.region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    };
    format!(
        "arn:{partition}:ssm:{}:{}:parameter/{}",
        scope.region,
        scope.account,
        name.strip_prefix('/').unwrap_or(name)
    )
}

const NAME_RULES: &str = "Parameter name: can't be prefixed with \"aws\" or \"ssm\" (case-insensitive). If formed as a path, it can consist of sub-paths divided by slash symbol; each sub-path can be formed as a mix of letters, numbers and the following 3 symbols .-_";

/// Checks a parameter name as SSM does.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::Validation(NAME_RULES.to_owned()));
    }
    if name.contains('/') && !name.starts_with('/') {
        return Err(Error::Validation(
            "Parameter name must be a fully qualified name.".to_owned(),
        ));
    }
    let segments: Vec<&str> = name.strip_prefix('/').unwrap_or(name).split('/').collect();
    let lower = segments[0].to_ascii_lowercase();
    let bad_chars = !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/'));
    if bad_chars || segments.iter().any(|s| s.is_empty()) || lower.starts_with("aws") || lower.starts_with("ssm") {
        return Err(Error::Validation(NAME_RULES.to_owned()));
    }
    if segments.len() > MAX_LEVELS {
        return Err(Error::HierarchyLevelLimitExceeded(format!(
            "A hierarchy can have a maximum of {MAX_LEVELS} levels. Parameter name: {name}"
        )));
    }
    Ok(())
}

/// Splits a `name[:version]` selector. Labels (`name:label`) are not supported: a
/// non-numeric selector finds nothing.
fn split_selector(selector: &str) -> (&str, Option<&str>) {
    match selector.rsplit_once(':') {
        Some((name, sel)) => (name, Some(sel)),
        None => (selector, None),
    }
}

fn esc(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

fn key(scope: &Scope, name: &str) -> String {
    format!("{}/{}/{}", esc(&scope.account), esc(&scope.region), esc(name))
}

fn not_found(name: &str) -> Error {
    Error::ParameterNotFound(format!("Parameter {name} not found."))
}

fn encode_token(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn decode_token(t: Option<&str>) -> Result<Option<String>> {
    match t {
        None | Some("") => Ok(None),
        Some(t) => base64::engine::general_purpose::STANDARD
            .decode(t.as_bytes())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(Some)
            .ok_or_else(|| Error::InvalidNextToken("The specified token isn't valid.".to_owned())),
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Internal(format!("encode: {e}")))
}

/// Whether `name` lies under `path` (`/a` or `/a/`): directly, or at any depth when
/// `recursive`.
fn under_path(name: &str, path: &str, recursive: bool) -> bool {
    let base = path.trim_end_matches('/');
    let Some(rest) = name.strip_prefix(base).and_then(|r| r.strip_prefix('/')) else {
        return false;
    };
    !rest.is_empty() && (recursive || !rest.contains('/'))
}

fn check_path(path: &str) -> Result<()> {
    let ok = path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/'))
        && !path.trim_end_matches('/').contains("//");
    if ok {
        Ok(())
    } else {
        Err(Error::Validation(format!(
            "The parameter path {path} is not valid. A path must begin with a forward slash (/) and can contain letters, numbers and the symbols .-_/"
        )))
    }
}

/// Which filters a listing accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Listing {
    Describe,
    ByPath,
}

/// A checked filter.
struct Matcher<'a> {
    filter: &'a Filter,
    option: &'a str,
}

impl<'a> Matcher<'a> {
    fn new(filter: &'a Filter, listing: Listing) -> Result<Matcher<'a>> {
        let keys: &[&str] = match listing {
            Listing::Describe => &["Name", "Type", "KeyId", "Path", "Tier", "DataType"],
            Listing::ByPath => &["Type", "KeyId"],
        };
        if !keys.contains(&filter.key.as_str()) {
            return Err(Error::InvalidFilterKey(format!(
                "The following filter key is not valid: {}. Valid filter keys include: [{}].",
                filter.key,
                keys.join(", ")
            )));
        }
        let options: &[&str] = match filter.key.as_str() {
            "Name" => &["Equals", "BeginsWith", "Contains"],
            "Path" => &["Recursive", "OneLevel"],
            "Type" | "KeyId" | "Tier" | "DataType" => &["Equals", "BeginsWith"],
            _ => &["Equals"],
        };
        let option = filter.option.as_deref().unwrap_or(options[0]);
        if !options.contains(&option) {
            return Err(Error::InvalidFilterOption(format!(
                "The following filter option is not valid: {option}. Valid options include: [{}].",
                options.join(", ")
            )));
        }
        if filter.values.is_empty() && filter.key != "Path" {
            return Err(Error::InvalidFilterValue(format!(
                "The following filter values are missing : null for filter key {}.",
                filter.key
            )));
        }
        if filter.key == "Type" {
            for v in &filter.values {
                if ParameterType::parse(v).is_none() {
                    return Err(Error::InvalidFilterValue(format!(
                        "The following filter value is not valid: {v}. Valid values include: [String, StringList, SecureString]."
                    )));
                }
            }
        }
        if filter.key == "Path" {
            for v in &filter.values {
                check_path(v)?;
            }
        }
        Ok(Matcher { filter, option })
    }

    fn matches(&self, name: &str, v: &Version) -> bool {
        let field: &str = match self.filter.key.as_str() {
            "Name" => name,
            "Type" => v.parameter_type.as_str(),
            "KeyId" => v.key_id.as_deref().unwrap_or_default(),
            "Tier" => &v.tier,
            "DataType" => &v.data_type,
            "Path" => {
                let recursive = self.option == "Recursive";
                return self.filter.values.iter().any(|p| under_path(name, p, recursive));
            }
            _ => return false,
        };
        self.filter.values.iter().any(|want| match self.option {
            "BeginsWith" => {
                // Names are matched with or without their leading slash, as SSM does.
                field.starts_with(want.as_str())
                    || (self.filter.key == "Name"
                        && field.strip_prefix('/').is_some_and(|f| f.starts_with(want.as_str())))
            }
            "Contains" => field.contains(want.as_str()),
            _ => {
                field == want
                    || (self.filter.key == "Name" && field.strip_prefix('/') == Some(want.trim_start_matches('/')))
            }
        })
    }
}

/// The parameter store engine. `Send + Sync`; share it as `Arc<ParameterStore>`.
pub struct ParameterStore {
    meta: Arc<MetaStore>,
    clock: Arc<dyn Clock>,
    state: RwLock<HashMap<Scope, BTreeMap<String, Parameter>>>,
    /// Serialises mutations (check, commit, apply).
    writer: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ParameterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ParameterStore")
    }
}

impl ParameterStore {
    /// Opens the store over `meta`, loading every parameter document.
    pub fn open(meta: Arc<MetaStore>, clock: Arc<dyn Clock>) -> Result<Arc<ParameterStore>> {
        let mut state: HashMap<Scope, BTreeMap<String, Parameter>> = HashMap::new();
        for (k, v) in meta.scan_prefix(T_PARAMETERS, "")? {
            let doc: ParameterDoc = serde_json::from_slice(&v)
                .map_err(|e| Error::Internal(format!("stored parameter {k} is unreadable: {e}")))?;
            if doc.format != FORMAT_VERSION {
                return Err(Error::Internal(format!(
                    "stored parameter {k} has format {}, this build reads {FORMAT_VERSION}",
                    doc.format
                )));
            }
            let scope = Scope {
                account: doc.account,
                region: doc.region,
            };
            state
                .entry(scope)
                .or_default()
                .insert(doc.parameter.name.clone(), doc.parameter);
        }
        Ok(Arc::new(ParameterStore {
            meta,
            clock,
            state: RwLock::new(state),
            writer: tokio::sync::Mutex::new(()),
        }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Scope, BTreeMap<String, Parameter>>> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Scope, BTreeMap<String, Parameter>>> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// PutParameter: returns the new version and the tier.
    pub async fn put(&self, scope: &Scope, input: PutInput) -> Result<(u64, String)> {
        check_name(&input.name)?;
        let tier = match input.tier.as_deref() {
            None | Some("Standard") | Some("Intelligent-Tiering") => None,
            Some("Advanced") => Some("Advanced"),
            Some(other) => {
                return Err(Error::Validation(format!(
                    "1 validation error detected: Value '{other}' at 'tier' failed to satisfy constraint: Member must satisfy enum value set: [Advanced, Intelligent-Tiering, Standard]"
                )));
            }
        };
        let data_type = input.data_type.clone().unwrap_or_else(|| "text".to_owned());
        if !matches!(data_type.as_str(), "text" | "aws:ec2:image" | "aws:ssm:integration") {
            return Err(Error::Validation(format!(
                "The following data type is not supported: {data_type} (Data type names are all lowercase.)"
            )));
        }
        if let Some(p) = &input.allowed_pattern {
            let re = regex::RegexBuilder::new(&format!("^(?:{p})$"))
                .size_limit(1 << 20)
                .build()
                .map_err(|_| Error::Validation(format!("Parameter allowedPattern {p} is not a valid regex.")))?;
            if !re.is_match(&input.value) {
                return Err(Error::PatternMismatch(format!(
                    "Parameter value, cannot be validated against allowedPattern: {p}"
                )));
            }
        }
        let _w = self.writer.lock().await;
        let existing = self.read().get(scope).and_then(|m| m.get(&input.name)).cloned();
        if existing.is_some() && !input.overwrite {
            return Err(Error::ParameterAlreadyExists(
                "The parameter already exists. To overwrite this value, set the overwrite option in the request to true."
                    .to_owned(),
            ));
        }
        let previous = existing.as_ref().and_then(Parameter::current);
        // The tier never goes down by itself: an Advanced parameter stays Advanced.
        let tier = tier
            .map(str::to_owned)
            .or_else(|| previous.map(|p| p.tier.clone()))
            .unwrap_or_else(|| "Standard".to_owned());
        let max = if tier == "Advanced" {
            MAX_ADVANCED_VALUE
        } else {
            MAX_STANDARD_VALUE
        };
        if input.value.chars().count() > max {
            return Err(Error::Validation(format!(
                "{tier} tier parameters support a maximum parameter value of {max} characters. To create a larger parameter value, upgrade the parameter to use the advanced-parameter tier."
            )));
        }
        let parameter_type = input
            .parameter_type
            .or_else(|| previous.map(|p| p.parameter_type))
            .unwrap_or(ParameterType::String);
        let key_id = (parameter_type == ParameterType::SecureString).then(|| {
            input
                .key_id
                .clone()
                .or_else(|| previous.and_then(|p| p.key_id.clone()))
                .unwrap_or_else(|| DEFAULT_KEY_ID.to_owned())
        });
        let version = previous.map_or(1, |p| p.version + 1);
        let v = Version {
            version,
            value: input.value,
            parameter_type,
            description: input
                .description
                .or_else(|| previous.and_then(|p| p.description.clone())),
            allowed_pattern: input
                .allowed_pattern
                .or_else(|| previous.and_then(|p| p.allowed_pattern.clone())),
            key_id,
            tier: tier.clone(),
            data_type,
            last_modified_ms: self.clock.now_ms(),
            last_modified_user: input.user,
        };
        let mut parameter = existing.unwrap_or(Parameter {
            name: input.name.clone(),
            versions: Vec::new(),
        });
        parameter.versions.push(v);
        if parameter.versions.len() > MAX_VERSIONS {
            let extra = parameter.versions.len() - MAX_VERSIONS;
            parameter.versions.drain(..extra);
        }
        let doc = ParameterDoc {
            format: FORMAT_VERSION,
            account: scope.account.clone(),
            region: scope.region.clone(),
            parameter: parameter.clone(),
        };
        self.meta
            .write_grouped(vec![MetaOp::Put {
                table: T_PARAMETERS.to_owned(),
                key: key(scope, &input.name),
                value: to_json(&doc)?,
            }])
            .await?;
        self.write_state()
            .entry(scope.clone())
            .or_default()
            .insert(input.name, parameter);
        Ok((version, tier))
    }

    /// GetParameter: `selector` is `name` or `name:version`.
    pub fn get(&self, scope: &Scope, selector: &str) -> Result<ParameterView> {
        let (name, sel) = split_selector(selector);
        let state = self.read();
        let p = state
            .get(scope)
            .and_then(|m| m.get(name))
            .ok_or_else(|| not_found(selector))?;
        let version = match sel {
            None => p.current().cloned().ok_or_else(|| not_found(selector))?,
            Some(s) => match s.parse::<u64>() {
                Ok(n) => p.versions.iter().find(|v| v.version == n).cloned().ok_or_else(|| {
                    Error::ParameterVersionNotFound(format!(
                        "Systems Manager could not find version {n} of {name}. Verify the version and try again."
                    ))
                })?,
                // Labels are not supported: no label exists.
                Err(_) => return Err(not_found(selector)),
            },
        };
        Ok(ParameterView {
            name: p.name.clone(),
            version,
            selector: sel.map(|s| format!(":{s}")),
        })
    }

    /// The current value of a parameter (or a `name:version` selector), for CloudFormation's
    /// `AWS::SSM::Parameter::Value<…>` parameters; `None` when there is no such parameter.
    pub fn value(&self, scope: &Scope, selector: &str) -> Option<String> {
        self.get(scope, selector).ok().map(|v| v.version.value)
    }

    /// GetParameters: the parameters found, and the selectors that found nothing.
    pub fn get_many(&self, scope: &Scope, selectors: &[String]) -> (Vec<ParameterView>, Vec<String>) {
        let mut found = Vec::new();
        let mut invalid = Vec::new();
        for s in selectors {
            match self.get(scope, s) {
                Ok(v) => {
                    if !found
                        .iter()
                        .any(|f: &ParameterView| f.name == v.name && f.selector == v.selector)
                    {
                        found.push(v);
                    }
                }
                Err(_) => {
                    if !invalid.contains(s) {
                        invalid.push(s.clone());
                    }
                }
            }
        }
        (found, invalid)
    }

    fn list(
        &self,
        scope: &Scope,
        token: Option<&str>,
        max: usize,
        keep: impl Fn(&str, &Version) -> bool,
    ) -> Result<Page<ParameterView>> {
        let after = decode_token(token)?;
        let state = self.read();
        let mut items = Vec::new();
        let mut next_token = None;
        let Some(params) = state.get(scope) else {
            return Ok(Page { items, next_token });
        };
        let start = match &after {
            Some(a) => std::ops::Bound::Excluded(a.as_str()),
            None => std::ops::Bound::Unbounded,
        };
        let mut last = String::new();
        for (name, p) in params.range::<str, _>((start, std::ops::Bound::Unbounded)) {
            let Some(v) = p.current() else { continue };
            if !keep(name, v) {
                continue;
            }
            if items.len() == max {
                next_token = Some(encode_token(&last));
                break;
            }
            last = name.clone();
            items.push(ParameterView {
                name: name.clone(),
                version: v.clone(),
                selector: None,
            });
        }
        Ok(Page { items, next_token })
    }

    /// GetParametersByPath.
    pub fn by_path(
        &self,
        scope: &Scope,
        path: &str,
        recursive: bool,
        filters: &[Filter],
        token: Option<&str>,
        max: Option<usize>,
    ) -> Result<Page<ParameterView>> {
        check_path(path)?;
        let matchers = filters
            .iter()
            .map(|f| Matcher::new(f, Listing::ByPath))
            .collect::<Result<Vec<_>>>()?;
        let max = max.unwrap_or(MAX_PATH_PAGE).clamp(1, MAX_PATH_PAGE);
        self.list(scope, token, max, |name, v| {
            under_path(name, path, recursive) && matchers.iter().all(|m| m.matches(name, v))
        })
    }

    /// DescribeParameters (every filter must match).
    pub fn describe(
        &self,
        scope: &Scope,
        filters: &[Filter],
        token: Option<&str>,
        max: Option<usize>,
    ) -> Result<Page<ParameterView>> {
        let matchers = filters
            .iter()
            .map(|f| Matcher::new(f, Listing::Describe))
            .collect::<Result<Vec<_>>>()?;
        let max = max.unwrap_or(MAX_DESCRIBE_PAGE).clamp(1, MAX_DESCRIBE_PAGE);
        self.list(scope, token, max, |name, v| matchers.iter().all(|m| m.matches(name, v)))
    }

    /// GetParameterHistory: every kept version, oldest first.
    pub fn history(
        &self,
        scope: &Scope,
        name: &str,
        token: Option<&str>,
        max: Option<usize>,
    ) -> Result<Page<ParameterView>> {
        let after = match decode_token(token)? {
            None => 0,
            Some(t) => t
                .parse::<u64>()
                .map_err(|_| Error::InvalidNextToken("The specified token isn't valid.".to_owned()))?,
        };
        let max = max.unwrap_or(MAX_HISTORY_PAGE).clamp(1, MAX_HISTORY_PAGE);
        let state = self.read();
        let p = state
            .get(scope)
            .and_then(|m| m.get(name))
            .ok_or_else(|| not_found(name))?;
        let rest: Vec<&Version> = p.versions.iter().filter(|v| v.version > after).collect();
        let items: Vec<ParameterView> = rest
            .iter()
            .take(max)
            .map(|v| ParameterView {
                name: p.name.clone(),
                version: (*v).clone(),
                selector: None,
            })
            .collect();
        let next_token = (rest.len() > max)
            .then(|| items.last().map(|v| encode_token(&v.version.version.to_string())))
            .flatten();
        Ok(Page { items, next_token })
    }

    /// DeleteParameter.
    pub async fn delete(&self, scope: &Scope, name: &str) -> Result<()> {
        let (deleted, _) = self.delete_many(scope, &[name.to_owned()]).await?;
        if deleted.is_empty() {
            return Err(not_found(name));
        }
        Ok(())
    }

    /// DeleteParameters: the names deleted and those that did not exist (one transaction).
    pub async fn delete_many(&self, scope: &Scope, names: &[String]) -> Result<(Vec<String>, Vec<String>)> {
        let _w = self.writer.lock().await;
        let (mut deleted, mut invalid) = (Vec::new(), Vec::new());
        {
            let state = self.read();
            let params = state.get(scope);
            for n in names {
                if params.is_some_and(|m| m.contains_key(n)) {
                    if !deleted.contains(n) {
                        deleted.push(n.clone());
                    }
                } else if !invalid.contains(n) {
                    invalid.push(n.clone());
                }
            }
        }
        if !deleted.is_empty() {
            let ops = deleted
                .iter()
                .map(|n| MetaOp::Delete {
                    table: T_PARAMETERS.to_owned(),
                    key: key(scope, n),
                })
                .collect();
            self.meta.write_grouped(ops).await?;
            let mut state = self.write_state();
            if let Some(m) = state.get_mut(scope) {
                for n in &deleted {
                    m.remove(n);
                }
            }
        }
        Ok((deleted, invalid))
    }

    /// Empties the store (every account and region), for `/_kinesis-data/reset`.
    pub async fn reset(&self) -> Result<()> {
        let _w = self.writer.lock().await;
        let keys: Vec<String> = self
            .meta
            .scan_prefix(T_PARAMETERS, "")?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for chunk in keys.chunks(10_000) {
            let ops = chunk
                .iter()
                .map(|k| MetaOp::Delete {
                    table: T_PARAMETERS.to_owned(),
                    key: k.clone(),
                })
                .collect();
            self.meta.write_grouped(ops).await?;
        }
        self.write_state().clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kd_storage::ManualClock;

    fn scope() -> Scope {
        Scope {
            account: "000000000000".into(),
            region: "us-east-1".into(),
        }
    }

    fn put(name: &str, value: &str) -> PutInput {
        PutInput {
            name: name.into(),
            value: value.into(),
            user: "arn:aws:iam::000000000000:root".into(),
            ..PutInput::default()
        }
    }

    fn open(dir: &std::path::Path) -> Arc<ParameterStore> {
        let meta = Arc::new(MetaStore::open(&dir.join("meta.redb")).expect("meta"));
        ParameterStore::open(meta, Arc::new(ManualClock::new(1_000))).expect("open")
    }

    #[test]
    fn names_follow_ssm_rules() {
        for ok in ["a", "/a/b.c-d_e", "cdk-bootstrap", "/cdk-bootstrap/hnb659fds/version"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "/a//b", "/a/", "/aws/x", "SSM-x", "a b", "a:1"] {
            assert!(matches!(check_name(bad), Err(Error::Validation(_))), "{bad}");
        }
        let deep = "/l".repeat(16);
        assert!(matches!(check_name(&deep), Err(Error::HierarchyLevelLimitExceeded(_))));
        assert_eq!(
            parameter_arn(&scope(), "/a/b"),
            "arn:aws:ssm:us-east-1:000000000000:parameter/a/b"
        );
        assert!(under_path("/a/b", "/a", false));
        assert!(under_path("/a/b", "/a/", false));
        assert!(!under_path("/a/b/c", "/a", false));
        assert!(under_path("/a/b/c", "/a", true));
        assert!(!under_path("/ab", "/a", true));
    }

    #[tokio::test]
    async fn versions_overwrite_and_survive_reopen() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Internal(e.to_string()))?;
        let s = scope();
        {
            let store = open(dir.path());
            assert_eq!(store.put(&s, put("/app/db", "one")).await?.0, 1);
            assert!(matches!(
                store.put(&s, put("/app/db", "two")).await,
                Err(Error::ParameterAlreadyExists(_))
            ));
            let mut again = put("/app/db", "two");
            again.overwrite = true;
            again.parameter_type = Some(ParameterType::SecureString);
            assert_eq!(store.put(&s, again).await?, (2, "Standard".to_owned()));
        }
        let store = open(dir.path());
        let cur = store.get(&s, "/app/db")?;
        assert_eq!((cur.version.version, cur.version.value.as_str()), (2, "two"));
        assert_eq!(cur.version.key_id.as_deref(), Some(DEFAULT_KEY_ID));
        assert_eq!(store.get(&s, "/app/db:1")?.version.value, "one");
        assert!(matches!(
            store.get(&s, "/app/db:9"),
            Err(Error::ParameterVersionNotFound(_))
        ));
        assert_eq!(store.value(&s, "/app/db"), Some("two".to_owned()));
        assert_eq!(store.history(&s, "/app/db", None, None)?.items.len(), 2);
        store.delete(&s, "/app/db").await?;
        assert!(matches!(store.get(&s, "/app/db"), Err(Error::ParameterNotFound(_))));
        assert!(matches!(
            store.delete(&s, "/app/db").await,
            Err(Error::ParameterNotFound(_))
        ));
        Ok(())
    }

    #[tokio::test]
    async fn paths_pages_filters_and_patterns() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Internal(e.to_string()))?;
        let store = open(dir.path());
        let s = scope();
        for i in 0..13 {
            store.put(&s, put(&format!("/p/k{i:02}"), "v")).await?;
        }
        store.put(&s, put("/p/deep/x", "v")).await?;
        let mut list = put("/q/list", "a,b");
        list.parameter_type = Some(ParameterType::StringList);
        store.put(&s, list).await?;
        let first = store.by_path(&s, "/p", false, &[], None, None)?;
        assert_eq!(first.items.len(), 10);
        let second = store.by_path(&s, "/p", false, &[], first.next_token.as_deref(), None)?;
        assert_eq!(second.items.len(), 3);
        assert!(second.next_token.is_none());
        let all = store.by_path(&s, "/p/", true, &[], None, Some(10))?;
        assert_eq!(all.items.len(), 10);
        let deep = store.by_path(&s, "/p/deep", false, &[], None, None)?;
        assert_eq!(deep.items[0].name, "/p/deep/x");
        let lists = store.describe(
            &s,
            &[Filter {
                key: "Type".into(),
                option: None,
                values: vec!["StringList".into()],
            }],
            None,
            None,
        )?;
        assert_eq!(lists.items.len(), 1);
        let begins = store.describe(
            &s,
            &[Filter {
                key: "Name".into(),
                option: Some("BeginsWith".into()),
                values: vec!["p/k1".into()],
            }],
            None,
            None,
        )?;
        assert_eq!(begins.items.len(), 3);
        assert!(matches!(
            store.describe(
                &s,
                &[Filter {
                    key: "Nope".into(),
                    option: None,
                    values: vec!["x".into()]
                }],
                None,
                None
            ),
            Err(Error::InvalidFilterKey(_))
        ));
        assert!(matches!(
            store.by_path(&s, "/p", false, &[], Some("!!"), None),
            Err(Error::InvalidNextToken(_))
        ));
        let mut pat = put("/n", "abc");
        pat.allowed_pattern = Some("[0-9]+".into());
        assert!(matches!(store.put(&s, pat).await, Err(Error::PatternMismatch(_))));
        let (found, invalid) = store.get_many(&s, &["/q/list".into(), "/missing".into()]);
        assert_eq!((found.len(), invalid), (1, vec!["/missing".to_owned()]));
        let (deleted, invalid) = store.delete_many(&s, &["/p/k00".into(), "/nothing".into()]).await?;
        assert_eq!(
            (deleted, invalid),
            (vec!["/p/k00".to_owned()], vec!["/nothing".to_owned()])
        );
        Ok(())
    }
}
