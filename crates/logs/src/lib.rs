//! The CloudWatch Logs engine: log groups per account and region, their log streams and the
//! streams' events, with retention and bounded storage. It sits below `api-logs` (the
//! awsJson1.1 adapter, `Logs_20140328.*`) and above `storage`; the function host ships every
//! instance's output into it through the composition root's `LogDestination` port
//! ([`Logs::ingest`], which creates the group and stream on first use, as Lambda does), and
//! CloudFormation's `AWS::Logs::LogGroup` is made through the adapter like any API call. So
//! `aws logs filter-log-events` (and `aws logs tail`) read what functions printed.
//!
//! Events are ordered by timestamp within a stream (then by arrival), whatever order they were
//! put in; GetLogEvents pages through one stream with `f/…` and `b/…` tokens, and
//! FilterLogEvents merges the chosen streams by (timestamp, stream name, arrival) and matches
//! the unstructured filter patterns of [`pattern`].
//!
//! # Durability (format)
//!
//! Four tables in the shared redb `MetaStore`; names are escaped in keys (`%` → `%25`,
//! `/` → `%2F`):
//!
//! * `logs_groups`: key `<account>/<region>/<group>`, value a JSON [`GroupDoc`] (`format` 1):
//!   creation time, retention, KMS key, class, tags.
//! * `logs_streams`: key `<account>/<region>/<group>/<stream>`, value a JSON [`StreamDoc`]
//!   (`format` 1): the stream's `uid` (32 hex digits, names its events), creation time,
//!   first/last event and last ingestion times, event count, stored bytes, next arrival number.
//! * `logs_events`: key `<uid>/<timestamp:020>/<seq:020>` (timestamp in ms ≥ 0, `seq` the
//!   stream's arrival number), value the ingestion time (8 bytes, big-endian ms) followed by
//!   the message's UTF-8 bytes. Key order is the stream's event order, so reads are range
//!   scans of a snapshot.
//! * `logs_trash`: key `<uid>` of a deleted stream whose events are still being removed.
//!
//! A PutLogEvents commits its events, any events it trims, and the stream's new document in
//! ONE transaction before it answers (mutations are serialised by one writer lock, then the
//! in-memory copy of the documents changes). Deleting a stream or group commits the documents'
//! removal together with a trash entry per stream; the events are then removed in transactions
//! of at most 10,000 keys, and the trash entry last. **Recovery rule** ([`Logs::open`]): load
//! every group and stream document; trash entries left by a crash are finished by the next
//! sweep ([`Logs::sweep`]); events whose stream document is gone are only ever reached through
//! trash, so none is visible. No change spans two transactions except trash removal, which is
//! idempotent.
//!
//! # Bounds
//!
//! Each stream keeps at most [`Config::max_stream_bytes`] (default 64 MiB, counted as AWS
//! counts: message bytes + 26 per event) and [`Config::max_stream_events`] (default 1,000,000):
//! a write that goes over drops the stream's oldest events in its own transaction. The sweep
//! (run every minute by the server) deletes events older than the group's retention (reads
//! already skip them) and, when a group's streams together hold more than
//! [`Config::max_group_bytes`] (default 1 GiB), empties its least recently written streams
//! until it is under. Without a retention policy events otherwise never expire, as on AWS.

mod error;
pub mod pattern;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use kd_storage::{Clock, MetaOp, MetaStore};
use serde::{Deserialize, Serialize};

pub use error::{Error, Result};
pub use pattern::Pattern;

const T_GROUPS: &str = "logs_groups";
const T_STREAMS: &str = "logs_streams";
const T_EVENTS: &str = "logs_events";
const T_TRASH: &str = "logs_trash";
const ALL_TABLES: [&str; 4] = [T_GROUPS, T_STREAMS, T_EVENTS, T_TRASH];
const FORMAT_VERSION: u32 = 1;

/// Longest group or stream name.
pub const MAX_NAME: usize = 512;
/// Bytes CloudWatch Logs adds to each event's message when it sizes a batch.
pub const EVENT_OVERHEAD: usize = 26;
/// Largest event (message bytes + [`EVENT_OVERHEAD`]).
pub const MAX_EVENT_BYTES: usize = 262_144;
/// Most events in one PutLogEvents.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Largest PutLogEvents batch (message bytes + [`EVENT_OVERHEAD`] per event).
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// Largest (and default) page of DescribeLogGroups / DescribeLogStreams.
pub const MAX_DESCRIBE_PAGE: usize = 50;
/// Largest (and default) number of events GetLogEvents / FilterLogEvents answer with.
pub const MAX_EVENTS_PAGE: usize = 10_000;
/// Most message bytes one GetLogEvents / FilterLogEvents answer carries.
pub const MAX_PAGE_BYTES: usize = 1_048_576;
/// Most tags on a log group.
pub const MAX_TAGS: usize = 50;
/// Most stream names one FilterLogEvents names.
pub const MAX_FILTER_STREAMS: usize = 100;
/// The values `RetentionInDays` may take.
pub const RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
];

const DAY_MS: i64 = 86_400_000;
/// Events older than this are refused (`tooOldLogEventEndIndex`).
const TOO_OLD_MS: i64 = 14 * DAY_MS;
/// Events further in the future than this are refused (`tooNewLogEventStartIndex`).
const TOO_NEW_MS: i64 = 2 * 3_600_000;
/// Widest time span of one batch.
const MAX_SPAN_MS: i64 = DAY_MS;
/// Most events one FilterLogEvents examines before it answers with what it found and a token.
const MAX_SCAN: usize = 200_000;
/// Most keys deleted in one transaction by the sweep and stream deletion.
const DELETE_CHUNK: usize = 10_000;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most bytes (messages + 26 per event) one stream keeps; older events are dropped.
    pub max_stream_bytes: u64,
    /// Most events one stream keeps; older events are dropped.
    pub max_stream_events: u64,
    /// Most bytes one group's streams keep together (enforced by the sweep).
    pub max_group_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_stream_bytes: 64 * 1024 * 1024,
            max_stream_events: 1_000_000,
            max_group_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// An account and region: each has its own log groups.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    /// The account.
    pub account: String,
    /// The region.
    pub region: String,
}

/// The durable document of a log group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDoc {
    /// Format version (1).
    pub format: u32,
    /// Account.
    pub account: String,
    /// Region.
    pub region: String,
    /// The group's name.
    pub name: String,
    /// Creation time (ms).
    pub created_ms: i64,
    /// `retentionInDays` (None: never expire).
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// `kmsKeyId` (recorded; nothing is encrypted).
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// `logGroupClass` (recorded).
    #[serde(default = "standard")]
    pub class: String,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn standard() -> String {
    "STANDARD".to_owned()
}

/// The durable document of a log stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamDoc {
    /// Format version (1).
    pub format: u32,
    /// Account.
    pub account: String,
    /// Region.
    pub region: String,
    /// The group's name.
    pub group: String,
    /// The stream's name.
    pub name: String,
    /// Names the stream's events (32 hex digits, new for every stream made).
    pub uid: String,
    /// Creation time (ms).
    pub created_ms: i64,
    /// Oldest kept event's timestamp.
    #[serde(default)]
    pub first_event_ms: Option<i64>,
    /// Newest event's timestamp.
    #[serde(default)]
    pub last_event_ms: Option<i64>,
    /// When events last arrived.
    #[serde(default)]
    pub last_ingestion_ms: Option<i64>,
    /// Kept events.
    #[serde(default)]
    pub events: u64,
    /// Kept bytes (messages + 26 per event).
    #[serde(default)]
    pub stored_bytes: u64,
    /// The next arrival number.
    pub next_seq: u64,
}

/// A log group as the describe operations show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// The group's document.
    pub doc: GroupDoc,
    /// Bytes its streams keep.
    pub stored_bytes: u64,
}

/// One event to put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputEvent {
    /// ms since the epoch.
    pub timestamp: i64,
    /// The message.
    pub message: String,
}

/// What PutLogEvents refused (`rejectedLogEventsInfo`), as indexes into the batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOutcome {
    /// Events accepted.
    pub accepted: usize,
    /// The first too-new event (inclusive).
    pub too_new_start: Option<usize>,
    /// The end of the too-old events (exclusive).
    pub too_old_end: Option<usize>,
    /// The end of the events older than the retention (exclusive).
    pub expired_end: Option<usize>,
    /// `nextSequenceToken` (ignored on input, as AWS now does).
    pub next_sequence_token: String,
}

/// A stored event as reads answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The stream it is in.
    pub stream: String,
    /// ms since the epoch.
    pub timestamp: i64,
    /// When it arrived (ms).
    pub ingestion_ms: i64,
    /// The message.
    pub message: String,
    /// `eventId` (unique within the group).
    pub event_id: String,
}

/// A GetLogEvents query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetQuery {
    /// `startTime` (inclusive).
    pub start: Option<i64>,
    /// `endTime` (exclusive).
    pub end: Option<i64>,
    /// `nextToken` (`f/…` or `b/…`).
    pub token: Option<String>,
    /// `limit` (default and most [`MAX_EVENTS_PAGE`]).
    pub limit: Option<usize>,
    /// `startFromHead`.
    pub start_from_head: bool,
}

/// A GetLogEvents answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsPage {
    /// Events, oldest first.
    pub events: Vec<Event>,
    /// `nextForwardToken`.
    pub forward_token: String,
    /// `nextBackwardToken`.
    pub backward_token: String,
}

/// A FilterLogEvents query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterQuery {
    /// `logStreamNames` (empty: every stream).
    pub stream_names: Vec<String>,
    /// `logStreamNamePrefix`.
    pub stream_prefix: Option<String>,
    /// `startTime` (inclusive).
    pub start: Option<i64>,
    /// `endTime` (inclusive).
    pub end: Option<i64>,
    /// `filterPattern`.
    pub pattern: String,
    /// `nextToken`.
    pub token: Option<String>,
    /// `limit` (default and most [`MAX_EVENTS_PAGE`]).
    pub limit: Option<usize>,
}

/// A FilterLogEvents answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterPage {
    /// Matching events by (timestamp, stream, arrival).
    pub events: Vec<Event>,
    /// The streams searched.
    pub searched: Vec<String>,
    /// `nextToken`, when there may be more.
    pub next_token: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The next page's token.
    pub next_token: Option<String>,
}

/// Events for one stream, put by the server itself (function output): the group and the
/// stream are created when missing, and no age limit applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestBatch {
    /// Where.
    pub scope: Scope,
    /// The group (made on first use).
    pub group: String,
    /// The stream (made on first use).
    pub stream: String,
    /// `(timestamp ms, message)`; messages longer than an event may be are cut, empty ones
    /// skipped.
    pub events: Vec<(i64, String)>,
}

fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// `arn:aws:logs:<region>:<account>:log-group:<name>` (AWS's `logGroupArn`, the form the
/// tagging operations and `logGroupIdentifier` use).
pub fn group_arn(scope: &Scope, name: &str) -> String {
    format!(
        "arn:{}:logs:{}:{}:log-group:{name}",
        partition(&scope.region),
        scope.region,
        scope.account
    )
}

/// `arn:aws:logs:<region>:<account>:log-group:<name>:*` (AWS's `arn` of a group, the form
/// most IAM checks use).
pub fn group_arn_star(scope: &Scope, name: &str) -> String {
    format!("{}:*", group_arn(scope, name))
}

/// `arn:aws:logs:<region>:<account>:log-group:<group>:log-stream:<stream>`.
pub fn stream_arn(scope: &Scope, group: &str, stream: &str) -> String {
    format!("{}:log-stream:{stream}", group_arn(scope, group))
}

/// The regular expression AWS models for group names.
pub const GROUP_NAME_PATTERN: &str = "[\\.\\-_/#A-Za-z0-9]+";
/// The regular expression AWS models for stream names.
pub const STREAM_NAME_PATTERN: &str = "[^:*]*";

/// Whether `name` is a valid group name (1–512 of `[.\-_/#A-Za-z0-9]`).
pub fn valid_group_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b'#'))
}

/// Whether `name` is a valid stream name (1–512 characters, no `:` or `*`).
pub fn valid_stream_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= MAX_NAME && !name.contains([':', '*'])
}

fn invalid_value(value: &str, field: &str, constraint: &str) -> Error {
    let shown: String = value.chars().take(256).collect();
    Error::InvalidParameter(format!(
        "1 validation error detected: Value '{shown}' at '{field}' failed to satisfy constraint: {constraint}"
    ))
}

fn length_error(name: &str, len: usize, field: &str) -> Option<Error> {
    if len == 0 {
        Some(invalid_value(
            name,
            field,
            "Member must have length greater than or equal to 1",
        ))
    } else if len > MAX_NAME {
        Some(invalid_value(
            name,
            field,
            &format!("Member must have length less than or equal to {MAX_NAME}"),
        ))
    } else {
        None
    }
}

/// Checks a group name as CloudWatch Logs does.
pub fn check_group_name(name: &str) -> Result<()> {
    if let Some(e) = length_error(name, name.len(), "logGroupName") {
        return Err(e);
    }
    if !valid_group_name(name) {
        return Err(invalid_value(
            name,
            "logGroupName",
            &format!("Member must satisfy regular expression pattern: {GROUP_NAME_PATTERN}"),
        ));
    }
    Ok(())
}

/// Checks a stream name as CloudWatch Logs does.
pub fn check_stream_name(name: &str) -> Result<()> {
    if let Some(e) = length_error(name, name.chars().count(), "logStreamName") {
        return Err(e);
    }
    if !valid_stream_name(name) {
        return Err(invalid_value(
            name,
            "logStreamName",
            &format!("Member must satisfy regular expression pattern: {STREAM_NAME_PATTERN}"),
        ));
    }
    Ok(())
}

/// Checks `retentionInDays`.
pub fn check_retention(days: i64) -> Result<u32> {
    u32::try_from(days)
        .ok()
        .filter(|d| RETENTION_DAYS.contains(d))
        .ok_or_else(|| {
            let set: Vec<String> = RETENTION_DAYS.iter().map(u32::to_string).collect();
            invalid_value(
                &days.to_string(),
                "retentionInDays",
                &format!("Member must satisfy enum value set: [{}]", set.join(", ")),
            )
        })
}

/// Checks a tag map (at most [`MAX_TAGS`], keys 1–128, values 0–256 characters, no `aws:` keys).
pub fn check_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::TooManyTags(format!(
            "A resource can have no more than {MAX_TAGS} tags."
        )));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(invalid_value(
                k,
                "tags",
                "Map keys must satisfy constraint: [Member must have length between 1 and 128]",
            ));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(Error::InvalidParameter(
                "Tag keys beginning with 'aws:' are reserved.".to_owned(),
            ));
        }
        if v.chars().count() > 256 {
            return Err(invalid_value(
                v,
                "tags",
                "Map value must satisfy constraint: [Member must have length less than or equal to 256]",
            ));
        }
    }
    Ok(())
}

fn group_missing() -> Error {
    Error::ResourceNotFound("The specified log group does not exist.".to_owned())
}

fn stream_missing() -> Error {
    Error::ResourceNotFound("The specified log stream does not exist.".to_owned())
}

fn bad_token() -> Error {
    Error::InvalidParameter("The specified nextToken is invalid.".to_owned())
}

fn esc(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

fn group_key(scope: &Scope, name: &str) -> String {
    format!("{}/{}/{}", esc(&scope.account), esc(&scope.region), esc(name))
}

fn stream_key(scope: &Scope, group: &str, stream: &str) -> String {
    format!("{}/{}", group_key(scope, group), esc(stream))
}

fn event_key(uid: &str, ts: i64, seq: u64) -> String {
    format!("{uid}/{:020}/{seq:020}", ts.max(0))
}

/// The smallest key of a stream (all its keys are greater).
fn stream_low(uid: &str) -> String {
    format!("{uid}/")
}

/// A key greater than every key of the stream (`0` sorts right after `/`).
fn stream_high(uid: &str) -> String {
    format!("{uid}0")
}

/// The (timestamp, seq) of an event key.
fn parse_key(key: &str) -> Option<(i64, u64)> {
    let mut parts = key.rsplitn(3, '/');
    let seq = parts.next()?.parse().ok()?;
    let ts = parts.next()?.parse().ok()?;
    Some((ts, seq))
}

fn event_value(ingestion_ms: i64, message: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + message.len());
    v.extend_from_slice(&ingestion_ms.to_be_bytes());
    v.extend_from_slice(message.as_bytes());
    v
}

fn parse_value(value: &[u8]) -> (i64, String) {
    let mut ms = [0u8; 8];
    if let Some(head) = value.get(..8) {
        ms.copy_from_slice(head);
    }
    let message = String::from_utf8_lossy(value.get(8..).unwrap_or_default()).into_owned();
    (i64::from_be_bytes(ms), message)
}

/// Bytes an event counts for.
fn event_size(message_len: usize) -> u64 {
    (message_len + EVENT_OVERHEAD) as u64
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Internal(format!("encode: {e}")))
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
            .ok_or_else(bad_token),
    }
}

/// A position in a stream: `f/P` reads keys after it, `b/P` keys before it.
fn position_token(dir: char, ts: i64, seq: u64) -> String {
    format!("{dir}/{:020}{seq:036}", ts.max(0))
}

fn parse_position(token: &str) -> Result<(char, i64, u64)> {
    let (dir, digits) = if let Some(d) = token.strip_prefix("f/") {
        ('f', d)
    } else if let Some(d) = token.strip_prefix("b/") {
        ('b', d)
    } else {
        return Err(bad_token());
    };
    if digits.len() != 56 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_token());
    }
    let ts = digits.get(..20).and_then(|d| d.parse().ok()).ok_or_else(bad_token)?;
    let seq = digits.get(20..).and_then(|d| d.parse().ok()).ok_or_else(bad_token)?;
    Ok((dir, ts, seq))
}

fn event_id(uid: &str, ts: i64, seq: u64) -> String {
    let stream = u64::from_str_radix(uid.get(..14).unwrap_or("0"), 16).unwrap_or(0);
    format!("{:020}{stream:018}{seq:018}", ts.max(0))
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while end > 0 && !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// One page of `items` (sorted ascending by their key) after `token`, `descending` reversing.
fn page_sorted<T>(mut items: Vec<(String, T)>, descending: bool, token: Option<&str>, limit: usize) -> Result<Page<T>> {
    let after = decode_token(token)?;
    if descending {
        items.reverse();
    }
    let mut rest = items
        .into_iter()
        .filter(|(k, _)| match &after {
            None => true,
            Some(a) if descending => k < a,
            Some(a) => k > a,
        })
        .peekable();
    let mut page = Vec::new();
    let mut last = None;
    while page.len() < limit {
        let Some((k, v)) = rest.next() else { break };
        last = Some(k);
        page.push(v);
    }
    let next_token = if rest.peek().is_some() {
        last.map(|k| encode_token(&k))
    } else {
        None
    };
    Ok(Page {
        items: page,
        next_token,
    })
}

struct Group {
    doc: GroupDoc,
    streams: BTreeMap<String, StreamDoc>,
}

type State = HashMap<Scope, BTreeMap<String, Group>>;

/// The logs engine. `Send + Sync`; share it as `Arc<Logs>`.
pub struct Logs {
    config: Config,
    meta: Arc<MetaStore>,
    clock: Arc<dyn Clock>,
    state: RwLock<State>,
    /// Serialises mutations (check, commit, apply).
    writer: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Logs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Logs")
    }
}

/// One stream's part of a FilterLogEvents merge.
struct Cursor {
    name: String,
    uid: String,
    range: kd_storage::SnapshotRange,
}

impl Logs {
    /// Opens the engine over `meta`, loading every group and stream document.
    pub fn open(config: Config, meta: Arc<MetaStore>, clock: Arc<dyn Clock>) -> Result<Arc<Logs>> {
        let mut state: State = HashMap::new();
        for (k, v) in meta.scan_prefix(T_GROUPS, "")? {
            let doc: GroupDoc = serde_json::from_slice(&v)
                .map_err(|e| Error::Internal(format!("stored log group {k} is unreadable: {e}")))?;
            let scope = Scope {
                account: doc.account.clone(),
                region: doc.region.clone(),
            };
            state.entry(scope).or_default().insert(
                doc.name.clone(),
                Group {
                    doc,
                    streams: BTreeMap::new(),
                },
            );
        }
        for (k, v) in meta.scan_prefix(T_STREAMS, "")? {
            let doc: StreamDoc = serde_json::from_slice(&v)
                .map_err(|e| Error::Internal(format!("stored log stream {k} is unreadable: {e}")))?;
            let scope = Scope {
                account: doc.account.clone(),
                region: doc.region.clone(),
            };
            match state.get_mut(&scope).and_then(|g| g.get_mut(&doc.group)) {
                Some(group) => {
                    group.streams.insert(doc.name.clone(), doc);
                }
                None => tracing::warn!(key = %k, "log stream without its group ignored"),
            }
        }
        Ok(Arc::new(Logs {
            config,
            meta,
            clock,
            state: RwLock::new(state),
            writer: tokio::sync::Mutex::new(()),
        }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The oldest timestamp a group's retention keeps (0 without retention).
    fn cutoff(&self, retention_days: Option<u32>) -> i64 {
        retention_days.map_or(0, |d| self.now().saturating_sub(i64::from(d) * DAY_MS).max(0))
    }

    fn new_group(&self, scope: &Scope, name: &str) -> GroupDoc {
        GroupDoc {
            format: FORMAT_VERSION,
            account: scope.account.clone(),
            region: scope.region.clone(),
            name: name.to_owned(),
            created_ms: self.now(),
            retention_days: None,
            kms_key_id: None,
            class: standard(),
            tags: BTreeMap::new(),
        }
    }

    fn new_stream(&self, scope: &Scope, group: &str, name: &str) -> StreamDoc {
        StreamDoc {
            format: FORMAT_VERSION,
            account: scope.account.clone(),
            region: scope.region.clone(),
            group: group.to_owned(),
            name: name.to_owned(),
            uid: uuid::Uuid::new_v4().simple().to_string(),
            created_ms: self.now(),
            first_event_ms: None,
            last_event_ms: None,
            last_ingestion_ms: None,
            events: 0,
            stored_bytes: 0,
            next_seq: 1,
        }
    }

    fn group_doc(&self, scope: &Scope, name: &str) -> Result<GroupDoc> {
        self.read()
            .get(scope)
            .and_then(|m| m.get(name))
            .map(|g| g.doc.clone())
            .ok_or_else(group_missing)
    }

    fn stream_doc(&self, scope: &Scope, group: &str, stream: &str) -> Result<(GroupDoc, StreamDoc)> {
        let state = self.read();
        let g = state.get(scope).and_then(|m| m.get(group)).ok_or_else(group_missing)?;
        let s = g.streams.get(stream).ok_or_else(stream_missing)?;
        Ok((g.doc.clone(), s.clone()))
    }

    async fn put_group_doc(&self, doc: GroupDoc) -> Result<()> {
        let scope = Scope {
            account: doc.account.clone(),
            region: doc.region.clone(),
        };
        self.meta
            .write_grouped(vec![MetaOp::Put {
                table: T_GROUPS.to_owned(),
                key: group_key(&scope, &doc.name),
                value: to_json(&doc)?,
            }])
            .await?;
        if let Some(g) = self.write_state().get_mut(&scope).and_then(|m| m.get_mut(&doc.name)) {
            g.doc = doc;
        }
        Ok(())
    }

    // ------------------------------------------------------------------ groups

    /// CreateLogGroup.
    pub async fn create_group(
        &self,
        scope: &Scope,
        name: &str,
        tags: BTreeMap<String, String>,
        kms_key_id: Option<String>,
        class: Option<String>,
    ) -> Result<()> {
        check_group_name(name)?;
        check_tags(&tags)?;
        let _w = self.writer.lock().await;
        if self.read().get(scope).is_some_and(|m| m.contains_key(name)) {
            return Err(Error::ResourceAlreadyExists(
                "The specified log group already exists".to_owned(),
            ));
        }
        let mut doc = self.new_group(scope, name);
        doc.tags = tags;
        doc.kms_key_id = kms_key_id;
        if let Some(c) = class {
            doc.class = c;
        }
        self.meta
            .write_grouped(vec![MetaOp::Put {
                table: T_GROUPS.to_owned(),
                key: group_key(scope, name),
                value: to_json(&doc)?,
            }])
            .await?;
        self.write_state().entry(scope.clone()).or_default().insert(
            name.to_owned(),
            Group {
                doc,
                streams: BTreeMap::new(),
            },
        );
        Ok(())
    }

    /// DeleteLogGroup: the group and its streams at once; their events soon after.
    pub async fn delete_group(self: &Arc<Self>, scope: &Scope, name: &str) -> Result<()> {
        {
            let _w = self.writer.lock().await;
            let uids: Vec<(String, String)> = {
                let state = self.read();
                let g = state.get(scope).and_then(|m| m.get(name)).ok_or_else(group_missing)?;
                g.streams.values().map(|s| (s.name.clone(), s.uid.clone())).collect()
            };
            let mut ops = vec![MetaOp::Delete {
                table: T_GROUPS.to_owned(),
                key: group_key(scope, name),
            }];
            for (stream, uid) in &uids {
                ops.push(MetaOp::Delete {
                    table: T_STREAMS.to_owned(),
                    key: stream_key(scope, name, stream),
                });
                ops.push(MetaOp::Put {
                    table: T_TRASH.to_owned(),
                    key: uid.clone(),
                    value: Vec::new(),
                });
            }
            self.meta.write_grouped(ops).await?;
            if let Some(m) = self.write_state().get_mut(scope) {
                m.remove(name);
            }
        }
        self.purge_later();
        Ok(())
    }

    /// Removes trashed events in the background.
    fn purge_later(self: &Arc<Self>) {
        let me = Arc::clone(self);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = me.purge_trash().await {
                    tracing::warn!(error = %e, "cannot remove the events of deleted log streams yet");
                }
            });
        }
    }

    /// DescribeLogGroups: by name, after an optional prefix or substring.
    pub fn describe_groups(
        &self,
        scope: &Scope,
        prefix: Option<&str>,
        pattern: Option<&str>,
        token: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Page<GroupView>> {
        if prefix.is_some() && pattern.is_some() {
            return Err(Error::InvalidParameter(
                "LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters.".to_owned(),
            ));
        }
        let limit = limit.unwrap_or(MAX_DESCRIBE_PAGE).clamp(1, MAX_DESCRIBE_PAGE);
        let state = self.read();
        let items: Vec<(String, GroupView)> = state
            .get(scope)
            .map(|m| {
                m.iter()
                    .filter(|(n, _)| prefix.is_none_or(|p| n.starts_with(p)))
                    .filter(|(n, _)| pattern.is_none_or(|p| n.contains(p)))
                    .map(|(n, g)| {
                        (
                            n.clone(),
                            GroupView {
                                doc: g.doc.clone(),
                                stored_bytes: g.streams.values().map(|s| s.stored_bytes).sum(),
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        page_sorted(items, false, token, limit)
    }

    /// One group (None when missing).
    pub fn group(&self, scope: &Scope, name: &str) -> Option<GroupView> {
        let state = self.read();
        let g = state.get(scope)?.get(name)?;
        Some(GroupView {
            doc: g.doc.clone(),
            stored_bytes: g.streams.values().map(|s| s.stored_bytes).sum(),
        })
    }

    /// PutRetentionPolicy (`None`: DeleteRetentionPolicy).
    pub async fn set_retention(&self, scope: &Scope, name: &str, days: Option<u32>) -> Result<()> {
        if let Some(d) = days {
            check_retention(i64::from(d))?;
        }
        let _w = self.writer.lock().await;
        let mut doc = self.group_doc(scope, name)?;
        doc.retention_days = days;
        self.put_group_doc(doc).await
    }

    /// TagResource / TagLogGroup (`add`) and UntagResource / UntagLogGroup (`remove`).
    pub async fn tag_group(
        &self,
        scope: &Scope,
        name: &str,
        add: BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        let _w = self.writer.lock().await;
        let mut doc = self.group_doc(scope, name)?;
        doc.tags.extend(add);
        for k in remove {
            doc.tags.remove(k);
        }
        check_tags(&doc.tags)?;
        self.put_group_doc(doc).await
    }

    /// ListTagsForResource / ListTagsLogGroup.
    pub fn group_tags(&self, scope: &Scope, name: &str) -> Result<BTreeMap<String, String>> {
        Ok(self.group_doc(scope, name)?.tags)
    }

    // ------------------------------------------------------------------ streams

    /// CreateLogStream.
    pub async fn create_stream(&self, scope: &Scope, group: &str, name: &str) -> Result<()> {
        check_stream_name(name)?;
        let _w = self.writer.lock().await;
        {
            let state = self.read();
            let g = state.get(scope).and_then(|m| m.get(group)).ok_or_else(group_missing)?;
            if g.streams.contains_key(name) {
                return Err(Error::ResourceAlreadyExists(
                    "The specified log stream already exists".to_owned(),
                ));
            }
        }
        let doc = self.new_stream(scope, group, name);
        self.meta
            .write_grouped(vec![MetaOp::Put {
                table: T_STREAMS.to_owned(),
                key: stream_key(scope, group, name),
                value: to_json(&doc)?,
            }])
            .await?;
        self.apply_stream(doc);
        Ok(())
    }

    fn apply_stream(&self, doc: StreamDoc) {
        let scope = Scope {
            account: doc.account.clone(),
            region: doc.region.clone(),
        };
        if let Some(g) = self.write_state().get_mut(&scope).and_then(|m| m.get_mut(&doc.group)) {
            g.streams.insert(doc.name.clone(), doc);
        }
    }

    /// DeleteLogStream: the stream at once, its events soon after.
    pub async fn delete_stream(self: &Arc<Self>, scope: &Scope, group: &str, name: &str) -> Result<()> {
        {
            let _w = self.writer.lock().await;
            let (_, doc) = self.stream_doc(scope, group, name)?;
            self.meta
                .write_grouped(vec![
                    MetaOp::Delete {
                        table: T_STREAMS.to_owned(),
                        key: stream_key(scope, group, name),
                    },
                    MetaOp::Put {
                        table: T_TRASH.to_owned(),
                        key: doc.uid.clone(),
                        value: Vec::new(),
                    },
                ])
                .await?;
            if let Some(g) = self.write_state().get_mut(scope).and_then(|m| m.get_mut(group)) {
                g.streams.remove(name);
            }
        }
        self.purge_later();
        Ok(())
    }

    /// DescribeLogStreams: by name (optionally after a prefix) or by last event time.
    #[allow(clippy::too_many_arguments)]
    pub fn describe_streams(
        &self,
        scope: &Scope,
        group: &str,
        prefix: Option<&str>,
        by_last_event: bool,
        descending: bool,
        token: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Page<StreamDoc>> {
        if by_last_event && prefix.is_some() {
            return Err(Error::InvalidParameter(
                "Cannot order by LastEventTime with a logStreamNamePrefix.".to_owned(),
            ));
        }
        let limit = limit.unwrap_or(MAX_DESCRIBE_PAGE).clamp(1, MAX_DESCRIBE_PAGE);
        let state = self.read();
        let g = state.get(scope).and_then(|m| m.get(group)).ok_or_else(group_missing)?;
        let mut items: Vec<(String, StreamDoc)> = g
            .streams
            .values()
            .filter(|s| prefix.is_none_or(|p| s.name.starts_with(p)))
            .map(|s| {
                let key = if by_last_event {
                    format!("{:020}/{}", s.last_event_ms.unwrap_or(0).max(0), s.name)
                } else {
                    s.name.clone()
                };
                (key, s.clone())
            })
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        page_sorted(items, descending, token, limit)
    }

    // ------------------------------------------------------------------ events

    /// PutLogEvents: checks the batch as CloudWatch Logs does, keeps what is not too old,
    /// too new or expired, and commits before answering.
    pub async fn put_events(
        &self,
        scope: &Scope,
        group: &str,
        stream: &str,
        events: &[InputEvent],
    ) -> Result<PutOutcome> {
        check_batch(events)?;
        let _w = self.writer.lock().await;
        let now = self.now();
        let (gdoc, sdoc) = self.stream_doc(scope, group, stream)?;
        let retention_cutoff = gdoc.retention_days.map(|_| self.cutoff(gdoc.retention_days));
        let too_old = events
            .iter()
            .take_while(|e| e.timestamp < now.saturating_sub(TOO_OLD_MS))
            .count();
        let expired = retention_cutoff.map_or(0, |c| events.iter().take_while(|e| e.timestamp < c).count());
        let too_new = events.iter().position(|e| e.timestamp > now.saturating_add(TOO_NEW_MS));
        let from = too_old.max(expired);
        let to = too_new.unwrap_or(events.len()).max(from);
        let kept: Vec<(i64, &str)> = events
            .get(from..to)
            .unwrap_or_default()
            .iter()
            .map(|e| (e.timestamp, e.message.as_str()))
            .collect();
        // The span is that of the events kept (too old and too new ones are only reported).
        if let (Some(first), Some(last)) = (kept.first(), kept.last())
            && last.0 - first.0 > MAX_SPAN_MS
        {
            return Err(Error::InvalidParameter(
                "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.".to_owned(),
            ));
        }
        let (ops, doc) = self.append(sdoc, &kept, now)?;
        let next_seq = doc.next_seq;
        self.meta.write_grouped(ops).await?;
        self.apply_stream(doc);
        Ok(PutOutcome {
            accepted: kept.len(),
            too_new_start: too_new,
            too_old_end: (too_old > 0).then_some(too_old),
            expired_end: (expired > 0).then_some(expired),
            next_sequence_token: format!("{next_seq:056}"),
        })
    }

    /// The writes that append `events` to the stream `doc` (and trim it to the caps), and
    /// the stream's new document (the last write).
    fn append(&self, mut doc: StreamDoc, events: &[(i64, &str)], now: i64) -> Result<(Vec<MetaOp>, StreamDoc)> {
        let mut ops = Vec::with_capacity(events.len() + 1);
        let mut batch_min: Option<i64> = None;
        for &(ts, message) in events {
            let ts = ts.max(0);
            let seq = doc.next_seq;
            doc.next_seq += 1;
            ops.push(MetaOp::Put {
                table: T_EVENTS.to_owned(),
                key: event_key(&doc.uid, ts, seq),
                value: event_value(now, message),
            });
            doc.events += 1;
            doc.stored_bytes += event_size(message.len());
            batch_min = Some(batch_min.map_or(ts, |m| m.min(ts)));
            doc.last_event_ms = Some(doc.last_event_ms.map_or(ts, |m| m.max(ts)));
        }
        if let Some(min) = batch_min {
            doc.first_event_ms = Some(doc.first_event_ms.map_or(min, |m| m.min(min)));
            doc.last_ingestion_ms = Some(now);
        }
        if doc.stored_bytes > self.config.max_stream_bytes || doc.events > self.config.max_stream_events {
            let snap = self.meta.snapshot()?;
            let table = snap.table(T_EVENTS)?;
            let low = stream_low(&doc.uid);
            let high = stream_high(&doc.uid);
            let mut range = table.range(Bound::Excluded(low.as_str()), Bound::Excluded(high.as_str()))?;
            let mut next_first = None;
            for item in range.by_ref() {
                let (k, v) = item?;
                if doc.stored_bytes <= self.config.max_stream_bytes && doc.events <= self.config.max_stream_events {
                    next_first = parse_key(&k).map(|(ts, _)| ts);
                    break;
                }
                doc.events = doc.events.saturating_sub(1);
                doc.stored_bytes = doc.stored_bytes.saturating_sub(event_size(v.len().saturating_sub(8)));
                ops.push(MetaOp::Delete {
                    table: T_EVENTS.to_owned(),
                    key: k,
                });
            }
            doc.first_event_ms = match (next_first, batch_min) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        ops.push(MetaOp::Put {
            table: T_STREAMS.to_owned(),
            key: stream_key(
                &Scope {
                    account: doc.account.clone(),
                    region: doc.region.clone(),
                },
                &doc.group,
                &doc.name,
            ),
            value: to_json(&doc)?,
        });
        Ok((ops, doc))
    }

    /// Appends the server's own events (function output): groups and streams are made when
    /// missing; timestamps are not checked against the clock; everything commits in one
    /// transaction. Batches naming an invalid group or stream are dropped with a warning.
    pub async fn ingest(&self, batches: Vec<IngestBatch>) -> Result<()> {
        let mut merged: BTreeMap<(Scope, String, String), Vec<(i64, String)>> = BTreeMap::new();
        for b in batches {
            if !valid_group_name(&b.group) || !valid_stream_name(&b.stream) {
                tracing::warn!(group = %b.group, stream = %b.stream, "function log events for an invalid log group or stream dropped");
                continue;
            }
            merged.entry((b.scope, b.group, b.stream)).or_default().extend(b.events);
        }
        if merged.is_empty() {
            return Ok(());
        }
        let _w = self.writer.lock().await;
        let now = self.now();
        let mut ops = Vec::new();
        let mut new_groups = Vec::new();
        let mut docs = Vec::new();
        for ((scope, group, stream), mut events) in merged {
            let (group_exists, existing) = {
                let state = self.read();
                let g = state.get(&scope).and_then(|m| m.get(&group));
                (g.is_some(), g.and_then(|g| g.streams.get(&stream)).cloned())
            };
            if !group_exists {
                let doc = self.new_group(&scope, &group);
                ops.push(MetaOp::Put {
                    table: T_GROUPS.to_owned(),
                    key: group_key(&scope, &group),
                    value: to_json(&doc)?,
                });
                new_groups.push((scope.clone(), doc));
            }
            let sdoc = existing.unwrap_or_else(|| self.new_stream(&scope, &group, &stream));
            events.retain(|(_, m)| !m.is_empty());
            for (_, m) in &mut events {
                cut(m, MAX_EVENT_BYTES - EVENT_OVERHEAD);
            }
            events.sort_by_key(|(ts, _)| *ts);
            let refs: Vec<(i64, &str)> = events.iter().map(|(ts, m)| (*ts, m.as_str())).collect();
            let (more, doc) = self.append(sdoc, &refs, now)?;
            ops.extend(more);
            docs.push(doc);
        }
        self.meta.write_grouped(ops).await?;
        {
            let mut state = self.write_state();
            for (scope, doc) in new_groups {
                state.entry(scope).or_default().insert(
                    doc.name.clone(),
                    Group {
                        doc,
                        streams: BTreeMap::new(),
                    },
                );
            }
        }
        for doc in docs {
            self.apply_stream(doc);
        }
        Ok(())
    }

    /// GetLogEvents: one stream's events, oldest first, from the head, from the tail, or
    /// from a token.
    pub fn get_events(&self, scope: &Scope, group: &str, stream: &str, q: &GetQuery) -> Result<EventsPage> {
        let (gdoc, sdoc) = self.stream_doc(scope, group, stream)?;
        let limit = q.limit.unwrap_or(MAX_EVENTS_PAGE).clamp(1, MAX_EVENTS_PAGE);
        let token = q
            .token
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(parse_position)
            .transpose()?;
        let uid = &sdoc.uid;
        let low_ts = q.start.unwrap_or(0).max(self.cutoff(gdoc.retention_days)).max(0);
        let mut low = event_key(uid, low_ts, 0);
        let mut high = match q.end {
            Some(end) if end <= 0 => event_key(uid, 0, 0),
            Some(end) => event_key(uid, end, 0),
            None => stream_high(uid),
        };
        let forward = match token {
            Some(('f', ts, seq)) => {
                low = low.max(event_key(uid, ts, seq.saturating_add(1)));
                true
            }
            Some((_, ts, seq)) => {
                high = high.min(event_key(uid, ts, seq));
                false
            }
            None => q.start_from_head,
        };
        let mut events = Vec::new();
        let mut bytes = 0usize;
        if low < high {
            let snap = self.meta.snapshot()?;
            let table = snap.table(T_EVENTS)?;
            let range = table.range(Bound::Included(low.as_str()), Bound::Excluded(high.as_str()))?;
            let mut take = |item: std::result::Result<(String, Vec<u8>), kd_storage::Error>| -> Result<bool> {
                let (k, v) = item?;
                let (ts, seq) = parse_key(&k).ok_or_else(|| Error::Internal(format!("bad event key {k}")))?;
                let (ingestion_ms, message) = parse_value(&v);
                if !events.is_empty() && bytes + message.len() > MAX_PAGE_BYTES {
                    return Ok(false);
                }
                bytes += message.len();
                events.push((
                    seq,
                    Event {
                        stream: sdoc.name.clone(),
                        timestamp: ts,
                        ingestion_ms,
                        message,
                        event_id: event_id(uid, ts, seq),
                    },
                ));
                Ok(events.len() < limit)
            };
            if forward {
                for item in range {
                    if !take(item)? {
                        break;
                    }
                }
            } else {
                for item in range.rev() {
                    if !take(item)? {
                        break;
                    }
                }
                events.reverse();
            }
        }
        let (forward_token, backward_token) = match (events.first(), events.last(), token) {
            (Some((fs, first)), Some((ls, last)), _) => (
                position_token('f', last.timestamp, *ls),
                position_token('b', first.timestamp, *fs),
            ),
            (_, _, Some(('f', ts, seq))) => (
                position_token('f', ts, seq),
                position_token('b', ts, seq.saturating_add(1)),
            ),
            (_, _, Some((_, ts, seq))) => {
                let (pts, pseq) = if seq > 0 { (ts, seq - 1) } else { (ts - 1, u64::MAX) };
                (position_token('f', pts.max(0), pseq), position_token('b', ts, seq))
            }
            _ => (position_token('f', 0, 0), position_token('b', 0, 0)),
        };
        Ok(EventsPage {
            events: events.into_iter().map(|(_, e)| e).collect(),
            forward_token,
            backward_token,
        })
    }

    /// FilterLogEvents: the matching events of the chosen streams, merged by (timestamp,
    /// stream name, arrival). Examines at most 200,000 events per call; a token follows when
    /// there may be more.
    pub fn filter_events(&self, scope: &Scope, group: &str, q: &FilterQuery) -> Result<FilterPage> {
        let pattern = Pattern::parse(&q.pattern)?;
        if !q.stream_names.is_empty() && q.stream_prefix.is_some() {
            return Err(Error::InvalidParameter(
                "Cannot specify both logStreamNames and logStreamNamePrefix.".to_owned(),
            ));
        }
        if q.stream_names.len() > MAX_FILTER_STREAMS {
            return Err(Error::InvalidParameter(format!(
                "1 validation error detected: Value at 'logStreamNames' failed to satisfy constraint: Member must have length less than or equal to {MAX_FILTER_STREAMS}"
            )));
        }
        let limit = q.limit.unwrap_or(MAX_EVENTS_PAGE).clamp(1, MAX_EVENTS_PAGE);
        let after = match decode_token(q.token.as_deref())? {
            None => None,
            Some(t) => {
                let mut parts = t.splitn(3, '/');
                let ts: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad_token)?;
                let seq: u64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad_token)?;
                let stream = parts.next().ok_or_else(bad_token)?.to_owned();
                Some((ts, stream, seq))
            }
        };
        let (gdoc, streams): (GroupDoc, Vec<(String, String)>) = {
            let state = self.read();
            let g = state.get(scope).and_then(|m| m.get(group)).ok_or_else(group_missing)?;
            let chosen = g
                .streams
                .values()
                .filter(|s| q.stream_names.is_empty() || q.stream_names.contains(&s.name))
                .filter(|s| q.stream_prefix.as_deref().is_none_or(|p| s.name.starts_with(p)))
                .map(|s| (s.name.clone(), s.uid.clone()))
                .collect();
            (g.doc.clone(), chosen)
        };
        let low_ts = q.start.unwrap_or(0).max(self.cutoff(gdoc.retention_days)).max(0);
        let end = q.end.unwrap_or(i64::MAX);
        let snap = self.meta.snapshot()?;
        let table = snap.table(T_EVENTS)?;
        let mut cursors = Vec::with_capacity(streams.len());
        let mut heap = BinaryHeap::new();
        for (name, uid) in &streams {
            let mut low = event_key(uid, low_ts, 0);
            if let Some((ts, tok_stream, seq)) = &after {
                let from = match name.cmp(tok_stream) {
                    std::cmp::Ordering::Less => event_key(uid, ts.saturating_add(1), 0),
                    std::cmp::Ordering::Equal => event_key(uid, *ts, seq.saturating_add(1)),
                    std::cmp::Ordering::Greater => event_key(uid, *ts, 0),
                };
                low = low.max(from);
            }
            let high = stream_high(uid);
            let range = table.range(Bound::Included(low.as_str()), Bound::Excluded(high.as_str()))?;
            cursors.push(Cursor {
                name: name.clone(),
                uid: uid.clone(),
                range,
            });
        }
        // Heads: (timestamp, stream index, seq) with the entry; the heap is a min-heap.
        let mut heads: Vec<Option<(String, Vec<u8>)>> = Vec::with_capacity(cursors.len());
        for (i, c) in cursors.iter_mut().enumerate() {
            let head = c.range.next().transpose()?;
            if let Some((k, _)) = &head
                && let Some((ts, seq)) = parse_key(k)
            {
                heap.push(Reverse((ts, i, seq)));
            }
            heads.push(head);
        }
        let mut events = Vec::new();
        let mut bytes = 0usize;
        let mut examined = 0usize;
        let mut last: Option<(i64, usize, u64)> = None;
        let mut more = false;
        while let Some(Reverse((ts, i, seq))) = heap.pop() {
            if ts > end {
                continue;
            }
            if events.len() == limit || examined == MAX_SCAN {
                more = true;
                break;
            }
            let Some((_, value)) = heads.get_mut(i).and_then(Option::take) else {
                continue;
            };
            let (ingestion_ms, message) = parse_value(&value);
            if pattern.matches(&message) {
                if !events.is_empty() && bytes + message.len() > MAX_PAGE_BYTES {
                    more = true;
                    break;
                }
                bytes += message.len();
                let (name, uid) = cursors
                    .get(i)
                    .map(|c| (c.name.clone(), c.uid.clone()))
                    .unwrap_or_default();
                events.push(Event {
                    stream: name,
                    timestamp: ts,
                    ingestion_ms,
                    message,
                    event_id: event_id(&uid, ts, seq),
                });
            }
            examined += 1;
            last = Some((ts, i, seq));
            if let Some(c) = cursors.get_mut(i) {
                let next = c.range.next().transpose()?;
                if let Some((k, _)) = &next
                    && let Some((nts, nseq)) = parse_key(k)
                {
                    heap.push(Reverse((nts, i, nseq)));
                }
                if let Some(slot) = heads.get_mut(i) {
                    *slot = next;
                }
            }
        }
        let next_token = match (more, last) {
            (true, Some((ts, i, seq))) => {
                let name = cursors.get(i).map(|c| c.name.as_str()).unwrap_or_default();
                Some(encode_token(&format!("{ts}/{seq}/{name}")))
            }
            (true, None) => q.token.clone(),
            _ => None,
        };
        Ok(FilterPage {
            events,
            searched: streams.into_iter().map(|(n, _)| n).collect(),
            next_token,
        })
    }

    // ------------------------------------------------------------------ sweep

    /// Deletes a stream's events with timestamps before `cutoff` (all with `i64::MAX`), in
    /// transactions of at most 10,000 keys. Returns how many went.
    async fn trim_before(&self, scope: &Scope, group: &str, stream: &str, cutoff: i64) -> Result<u64> {
        let mut removed = 0;
        loop {
            let _w = self.writer.lock().await;
            let Ok((_, mut doc)) = self.stream_doc(scope, group, stream) else {
                return Ok(removed);
            };
            let low = stream_low(&doc.uid);
            let high = if cutoff == i64::MAX {
                stream_high(&doc.uid)
            } else {
                event_key(&doc.uid, cutoff, 0)
            };
            let snap = self.meta.snapshot()?;
            let table = snap.table(T_EVENTS)?;
            let mut ops = Vec::new();
            for item in table.range(Bound::Excluded(low.as_str()), Bound::Excluded(high.as_str()))? {
                let (k, v) = item?;
                doc.events = doc.events.saturating_sub(1);
                doc.stored_bytes = doc.stored_bytes.saturating_sub(event_size(v.len().saturating_sub(8)));
                ops.push(MetaOp::Delete {
                    table: T_EVENTS.to_owned(),
                    key: k,
                });
                if ops.len() == DELETE_CHUNK {
                    break;
                }
            }
            if ops.is_empty() {
                return Ok(removed);
            }
            let last_deleted = match ops.last() {
                Some(MetaOp::Delete { key, .. }) => key.clone(),
                _ => low.clone(),
            };
            let next = table
                .range(
                    Bound::Excluded(last_deleted.as_str()),
                    Bound::Excluded(stream_high(&doc.uid).as_str()),
                )?
                .next()
                .transpose()?;
            doc.first_event_ms = next.and_then(|(k, _)| parse_key(&k)).map(|(ts, _)| ts);
            if doc.first_event_ms.is_none() {
                doc.events = 0;
                doc.stored_bytes = 0;
            }
            removed += ops.len() as u64;
            ops.push(MetaOp::Put {
                table: T_STREAMS.to_owned(),
                key: stream_key(scope, group, stream),
                value: to_json(&doc)?,
            });
            drop(table);
            drop(snap);
            self.meta.write_grouped(ops).await?;
            self.apply_stream(doc);
        }
    }

    /// Removes the events of deleted streams (trash), 10,000 keys per transaction.
    pub async fn purge_trash(&self) -> Result<u64> {
        let mut removed = 0;
        for (uid, _) in self.meta.scan_prefix(T_TRASH, "")? {
            loop {
                let _w = self.writer.lock().await;
                let keys: Vec<String> = {
                    let snap = self.meta.snapshot()?;
                    let table = snap.table(T_EVENTS)?;
                    let low = stream_low(&uid);
                    let high = stream_high(&uid);
                    let mut keys = Vec::new();
                    for item in table.range(Bound::Excluded(low.as_str()), Bound::Excluded(high.as_str()))? {
                        keys.push(item?.0);
                        if keys.len() == DELETE_CHUNK {
                            break;
                        }
                    }
                    keys
                };
                let done = keys.len() < DELETE_CHUNK;
                removed += keys.len() as u64;
                let mut ops: Vec<MetaOp> = keys
                    .into_iter()
                    .map(|key| MetaOp::Delete {
                        table: T_EVENTS.to_owned(),
                        key,
                    })
                    .collect();
                if done {
                    ops.push(MetaOp::Delete {
                        table: T_TRASH.to_owned(),
                        key: uid.clone(),
                    });
                }
                self.meta.write_grouped(ops).await?;
                if done {
                    break;
                }
            }
        }
        Ok(removed)
    }

    /// The periodic sweep: finishes deleted streams, deletes events older than each group's
    /// retention, and empties the least recently written streams of a group over
    /// [`Config::max_group_bytes`]. Returns the number of events removed.
    pub async fn sweep(&self) -> Result<u64> {
        let mut removed = self.purge_trash().await?;
        let groups: Vec<(Scope, String, Option<u32>)> = self
            .read()
            .iter()
            .flat_map(|(scope, m)| {
                m.values()
                    .map(|g| (scope.clone(), g.doc.name.clone(), g.doc.retention_days))
            })
            .collect();
        for (scope, group, retention) in groups {
            if retention.is_some() {
                let cutoff = self.cutoff(retention);
                let old: Vec<String> = self
                    .read()
                    .get(&scope)
                    .and_then(|m| m.get(&group))
                    .map(|g| {
                        g.streams
                            .values()
                            .filter(|s| s.first_event_ms.is_some_and(|f| f < cutoff))
                            .map(|s| s.name.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                for stream in old {
                    removed += self.trim_before(&scope, &group, &stream, cutoff).await?;
                }
            }
            loop {
                let victim = {
                    let state = self.read();
                    let Some(g) = state.get(&scope).and_then(|m| m.get(&group)) else {
                        break;
                    };
                    let total: u64 = g.streams.values().map(|s| s.stored_bytes).sum();
                    if total <= self.config.max_group_bytes {
                        break;
                    }
                    g.streams
                        .values()
                        .filter(|s| s.events > 0)
                        .min_by_key(|s| (s.last_ingestion_ms.unwrap_or(0), s.name.clone()))
                        .map(|s| s.name.clone())
                };
                let Some(stream) = victim else { break };
                let n = self.trim_before(&scope, &group, &stream, i64::MAX).await?;
                if n == 0 {
                    break;
                }
                removed += n;
            }
        }
        Ok(removed)
    }

    /// Empties the engine (every account and region), for `/_kinesis-data/reset`.
    pub async fn reset(&self) -> Result<()> {
        let _w = self.writer.lock().await;
        for table in ALL_TABLES {
            loop {
                let keys: Vec<String> = {
                    let snap = self.meta.snapshot()?;
                    let t = snap.table(table)?;
                    let mut keys = Vec::new();
                    for item in t.range(Bound::Unbounded, Bound::Unbounded)? {
                        keys.push(item?.0);
                        if keys.len() == DELETE_CHUNK {
                            break;
                        }
                    }
                    keys
                };
                if keys.is_empty() {
                    break;
                }
                let ops = keys
                    .into_iter()
                    .map(|key| MetaOp::Delete {
                        table: table.to_owned(),
                        key,
                    })
                    .collect();
                self.meta.write_grouped(ops).await?;
            }
        }
        self.write_state().clear();
        Ok(())
    }
}

/// Checks a PutLogEvents batch: size and count limits, each event's size and chronological
/// order (the 24-hour span is checked on the events kept).
pub fn check_batch(events: &[InputEvent]) -> Result<()> {
    if events.is_empty() {
        return Err(Error::InvalidParameter(
            "1 validation error detected: Value '[]' at 'logEvents' failed to satisfy constraint: Member must have length greater than or equal to 1".to_owned(),
        ));
    }
    if events.len() > MAX_BATCH_EVENTS {
        return Err(Error::InvalidParameter(format!(
            "1 validation error detected: Value at 'logEvents' failed to satisfy constraint: Member must have length less than or equal to {MAX_BATCH_EVENTS}"
        )));
    }
    let mut total = 0usize;
    for e in events {
        let size = e.message.len() + EVENT_OVERHEAD;
        if e.message.is_empty() {
            return Err(Error::InvalidParameter(
                "1 validation error detected: Value '' at 'logEvents.1.member.message' failed to satisfy constraint: Member must have length greater than or equal to 1".to_owned(),
            ));
        }
        if size > MAX_EVENT_BYTES {
            return Err(Error::InvalidParameter(format!(
                "Log event too large: {size} bytes exceeds limit of {MAX_EVENT_BYTES}"
            )));
        }
        if e.timestamp < 0 {
            return Err(Error::InvalidParameter(format!(
                "1 validation error detected: Value '{}' at 'logEvents.1.member.timestamp' failed to satisfy constraint: Member must have value greater than or equal to 0",
                e.timestamp
            )));
        }
        total += size;
    }
    if total > MAX_BATCH_BYTES {
        return Err(Error::InvalidParameter(format!(
            "Upload too large: {total} bytes exceeds limit of {MAX_BATCH_BYTES}"
        )));
    }
    if events
        .windows(2)
        .any(|w| matches!(w, [a, b] if b.timestamp < a.timestamp))
    {
        return Err(Error::InvalidParameter(
            "Log events in a single PutLogEvents request must be in chronological order.".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
