//! The CloudWatch Logs adapter: awsJson1.1 requests with `X-Amz-Target:
//! Logs_20140328.<Operation>` become one call on [`kd_logs::Logs`], and its answer or error
//! becomes the wire reply. It sits between the `edge` (which has authenticated the caller and
//! chosen this service) and the engine. Modeled constraints (lengths, patterns, list sizes,
//! page sizes, enums) are checked here and answered, as CloudWatch Logs does, with
//! `InvalidParameterException`. IAM is asked for `logs:<Operation>` on the resource AWS
//! documents for it: a group's `arn:aws:logs:<region>:<account>:log-group:<name>:*` for most
//! operations, the stream's `…:log-group:<name>:log-stream:<stream>` for CreateLogStream,
//! DeleteLogStream, PutLogEvents and GetLogEvents, the group ARN without `:*` for the
//! `*Resource` tagging operations, and `…:log-group:*` for DescribeLogGroups. Timestamps are
//! epoch milliseconds on this wire.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kd_logs::{
    Error, FilterQuery, GetQuery, GroupView, InputEvent, Logs, Scope, StreamDoc, group_arn, group_arn_star, stream_arn,
};
use kd_wire::json::{CborShape, Encoding, decode, error_response, ok_response};
use kd_wire::validate::Validator;
use kd_wire::{RequestContext, ServiceError};
use serde::Deserialize;
use serde_json::{Value, json};

/// The `X-Amz-Target` prefix of CloudWatch Logs.
pub const TARGET_PREFIX: &str = "Logs_20140328";

const SHAPE: CborShape = CborShape {
    blob_fields: &[],
    timestamp_fields: &[],
};

type Reply = Result<http::Response<Bytes>, ServiceError>;

/// Maps every engine error to its CloudWatch Logs code and status.
pub fn to_service_error(e: Error) -> ServiceError {
    let msg = e.to_string();
    match e {
        Error::InvalidParameter(_) => ServiceError::client("InvalidParameterException", msg),
        Error::ResourceAlreadyExists(_) => ServiceError::client("ResourceAlreadyExistsException", msg),
        Error::ResourceNotFound(_) => ServiceError::client("ResourceNotFoundException", msg),
        Error::TooManyTags(_) => ServiceError::client("TooManyTagsException", msg),
        Error::Storage(inner) => {
            tracing::error!(error = %inner, "logs storage failure; the request is not acknowledged");
            unavailable()
        }
        Error::Internal(detail) => {
            tracing::error!(%detail, "internal error in the logs engine");
            unavailable()
        }
    }
}

fn unavailable() -> ServiceError {
    ServiceError::with_status(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "ServiceUnavailableException",
        "The service cannot complete the request.",
    )
}

/// Modeled violations are InvalidParameterException on CloudWatch Logs.
fn finish(v: Validator) -> Result<(), ServiceError> {
    v.finish().map_err(|mut e| {
        e.code = "InvalidParameterException".to_owned();
        e
    })
}

const IDENTIFIER_PATTERN: &str = "[\\w#+=/:,.@-]*";

fn group_name(v: &mut Validator, name: Option<&str>, field: &str) {
    if let Some(n) = name {
        v.length(Some(n), field, 1, kd_logs::MAX_NAME);
        if !n.is_empty() {
            v.pattern(Some(n), field, kd_logs::valid_group_name, kd_logs::GROUP_NAME_PATTERN);
        }
    }
}

fn stream_name(v: &mut Validator, name: Option<&str>, field: &str) {
    if let Some(n) = name {
        v.length(Some(n), field, 1, kd_logs::MAX_NAME);
        v.pattern(
            Some(n),
            field,
            |s| !s.contains([':', '*']),
            kd_logs::STREAM_NAME_PATTERN,
        );
    }
}

fn identifier(v: &mut Validator, id: Option<&str>) {
    if let Some(id) = id {
        v.length(Some(id), "logGroupIdentifier", 1, 2048);
        v.pattern(
            Some(id),
            "logGroupIdentifier",
            |s| {
                s.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || "#+=/:,.@-".contains(c))
            },
            IDENTIFIER_PATTERN,
        );
    }
}

fn token(v: &mut Validator, t: Option<&str>) {
    v.length(t, "nextToken", 1, 4096);
}

fn tags_ok(v: &mut Validator, tags: Option<&BTreeMap<String, String>>) {
    if let Some(t) = tags {
        if t.is_empty() || t.len() > kd_logs::MAX_TAGS {
            v.fail_no_value(
                "tags",
                &format!("Member must have length between 1 and {}", kd_logs::MAX_TAGS),
            );
        }
        for (k, val) in t {
            v.length(Some(k), "tags", 1, 128);
            v.length(Some(val), "tags", 0, 256);
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupReq {
    log_group_name: Option<String>,
    kms_key_id: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    log_group_class: Option<String>,
    retention_in_days: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeGroupsReq {
    log_group_name_prefix: Option<String>,
    log_group_name_pattern: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
    log_group_class: Option<String>,
    #[serde(default)]
    log_group_identifiers: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamReq {
    log_group_name: Option<String>,
    log_stream_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeStreamsReq {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_name_prefix: Option<String>,
    order_by: Option<String>,
    descending: Option<bool>,
    next_token: Option<String>,
    limit: Option<i64>,
}

#[derive(Deserialize)]
struct EventIn {
    timestamp: Option<i64>,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutEventsReq {
    log_group_name: Option<String>,
    log_stream_name: Option<String>,
    log_events: Option<Vec<EventIn>>,
    #[serde(default)]
    #[allow(dead_code)]
    sequence_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetEventsReq {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_name: Option<String>,
    start_time: Option<i64>,
    end_time: Option<i64>,
    next_token: Option<String>,
    limit: Option<i64>,
    start_from_head: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilterReq {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_names: Option<Vec<String>>,
    log_stream_name_prefix: Option<String>,
    start_time: Option<i64>,
    end_time: Option<i64>,
    filter_pattern: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceReq {
    resource_arn: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    tag_keys: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LegacyTagsReq {
    log_group_name: Option<String>,
    /// TagLogGroup: a map; UntagLogGroup: a list of keys.
    tags: Option<Value>,
}

/// The adapter.
#[derive(Debug, Clone)]
pub struct LogsApi {
    logs: Arc<Logs>,
}

impl LogsApi {
    /// An adapter over `logs`.
    pub fn new(logs: Arc<Logs>) -> Self {
        Self { logs }
    }

    /// Handles one request whose `X-Amz-Target` named `operation` (JSON body).
    pub async fn handle(&self, ctx: &RequestContext, operation: &str, body: &[u8]) -> http::Response<Bytes> {
        let scope = Scope {
            account: ctx.account_id.clone(),
            region: ctx.region.clone(),
        };
        let call = Call {
            logs: &self.logs,
            ctx,
            operation,
            scope: &scope,
            body,
        };
        let result = match operation {
            "CreateLogGroup" => call.create_group().await,
            "DeleteLogGroup" => call.delete_group().await,
            "DescribeLogGroups" => call.describe_groups(),
            "CreateLogStream" => call.create_stream().await,
            "DeleteLogStream" => call.delete_stream().await,
            "DescribeLogStreams" => call.describe_streams(),
            "PutLogEvents" => call.put_events().await,
            "GetLogEvents" => call.get_events(),
            "FilterLogEvents" => call.filter_events(),
            "PutRetentionPolicy" => call.retention(true).await,
            "DeleteRetentionPolicy" => call.retention(false).await,
            "TagResource" => call.tag_resource(true).await,
            "UntagResource" => call.tag_resource(false).await,
            "ListTagsForResource" => call.list_tags_for_resource(),
            "TagLogGroup" => call.tag_log_group(true).await,
            "UntagLogGroup" => call.tag_log_group(false).await,
            "ListTagsLogGroup" => call.list_tags_log_group(),
            op => Err(ServiceError::client(
                "UnknownOperationException",
                format!("Operation {op} is not supported by kinesis-data's CloudWatch Logs."),
            )),
        };
        result.unwrap_or_else(|e| error_response(Encoding::Json, &e, &ctx.request_id))
    }
}

struct Call<'a> {
    logs: &'a Arc<Logs>,
    ctx: &'a RequestContext,
    operation: &'a str,
    scope: &'a Scope,
    body: &'a [u8],
}

fn group_json(scope: &Scope, g: &GroupView) -> Value {
    let d = &g.doc;
    let mut out = json!({
        "logGroupName": d.name,
        "creationTime": d.created_ms,
        "metricFilterCount": 0,
        "arn": group_arn_star(scope, &d.name),
        "logGroupArn": group_arn(scope, &d.name),
        "storedBytes": g.stored_bytes,
        "logGroupClass": d.class,
    });
    if let Some(r) = d.retention_days {
        out["retentionInDays"] = json!(r);
    }
    if let Some(k) = &d.kms_key_id {
        out["kmsKeyId"] = json!(k);
    }
    out
}

fn stream_json(scope: &Scope, s: &StreamDoc) -> Value {
    let mut out = json!({
        "logStreamName": s.name,
        "creationTime": s.created_ms,
        "arn": stream_arn(scope, &s.group, &s.name),
        "uploadSequenceToken": format!("{:056}", s.next_seq),
        // Deprecated on AWS: always 0 for streams.
        "storedBytes": 0,
    });
    for (k, v) in [
        ("firstEventTimestamp", s.first_event_ms),
        ("lastEventTimestamp", s.last_event_ms),
        ("lastIngestionTime", s.last_ingestion_ms),
    ] {
        if let Some(v) = v {
            out[k] = json!(v);
        }
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
        self.ctx.allow("logs", self.operation, resource)
    }

    fn allow_group(&self, group: &str) -> Result<(), ServiceError> {
        self.allow(|| group_arn_star(self.scope, group))
    }

    fn allow_stream(&self, group: &str, stream: &str) -> Result<(), ServiceError> {
        self.allow(|| stream_arn(self.scope, group, stream))
    }

    /// The group named by `logGroupName` or `logGroupIdentifier` (a name or a group ARN of
    /// this account and region).
    fn resolve_group(&self, name: Option<String>, id: Option<String>) -> Result<String, ServiceError> {
        match (name, id) {
            (Some(_), Some(_)) => Err(ServiceError::client(
                "InvalidParameterException",
                "LogGroup name and LogGroup ARN are mutually exclusive parameters.",
            )),
            (Some(n), None) => Ok(n),
            (None, Some(id)) => {
                if !id.starts_with("arn:") {
                    return Ok(id);
                }
                let name = self.group_of_arn(&id)?;
                kd_logs::check_group_name(&name).map_err(to_service_error)?;
                Ok(name)
            }
            (None, None) => Err(ServiceError::client(
                "InvalidParameterException",
                "Should provide either name or ARN for the log group.",
            )),
        }
    }

    /// The group name of `arn:aws:logs:<region>:<account>:log-group:<name>` (a trailing `:*`
    /// is tolerated); another account's or region's group is not found.
    fn group_of_arn(&self, arn: &str) -> Result<String, ServiceError> {
        let parts: Vec<&str> = arn.splitn(7, ':').collect();
        let [_, partition, "logs", region, account, "log-group", rest] = parts.as_slice() else {
            return Err(ServiceError::client(
                "InvalidParameterException",
                format!("Invalid resource ARN: {arn}"),
            ));
        };
        if !partition.starts_with("aws") {
            return Err(ServiceError::client(
                "InvalidParameterException",
                format!("Invalid resource ARN: {arn}"),
            ));
        }
        let name = rest.strip_suffix(":*").unwrap_or(rest);
        if *region != self.scope.region || *account != self.scope.account {
            return Err(ServiceError::client(
                "ResourceNotFoundException",
                "The specified log group does not exist.",
            ));
        }
        Ok(name.to_owned())
    }

    async fn create_group(&self) -> Reply {
        let r: GroupReq = self.input()?;
        let mut v = Validator::default();
        v.required(&r.log_group_name, "logGroupName");
        group_name(&mut v, r.log_group_name.as_deref(), "logGroupName");
        v.length(r.kms_key_id.as_deref(), "kmsKeyId", 0, 256);
        tags_ok(&mut v, r.tags.as_ref());
        v.one_of(
            r.log_group_class.as_deref(),
            "logGroupClass",
            &["STANDARD", "INFREQUENT_ACCESS", "DELIVERY"],
        );
        finish(v)?;
        let name = r.log_group_name.unwrap_or_default();
        self.allow_group(&name)?;
        // Tags on create need logs:TagResource too, as on AWS.
        if r.tags.is_some() && self.ctx.authz.enforced() {
            self.ctx
                .authz
                .authorize("logs:TagResource", &group_arn(self.scope, &name))
                .map_err(|m| ServiceError::client("AccessDeniedException", m))?;
        }
        self.logs
            .create_group(
                self.scope,
                &name,
                r.tags.unwrap_or_default(),
                r.kms_key_id,
                r.log_group_class,
            )
            .await
            .map_err(to_service_error)?;
        self.ok(&json!({}))
    }

    async fn delete_group(&self) -> Reply {
        let r: GroupReq = self.input()?;
        let mut v = Validator::default();
        v.required(&r.log_group_name, "logGroupName");
        group_name(&mut v, r.log_group_name.as_deref(), "logGroupName");
        finish(v)?;
        let name = r.log_group_name.unwrap_or_default();
        self.allow_group(&name)?;
        self.logs
            .delete_group(self.scope, &name)
            .await
            .map_err(to_service_error)?;
        self.ok(&json!({}))
    }

    fn describe_groups(&self) -> Reply {
        let r: DescribeGroupsReq = self.input()?;
        let mut v = Validator::default();
        group_name(&mut v, r.log_group_name_prefix.as_deref(), "logGroupNamePrefix");
        if let Some(p) = r.log_group_name_pattern.as_deref() {
            v.length(Some(p), "logGroupNamePattern", 0, kd_logs::MAX_NAME);
            v.pattern(
                Some(p),
                "logGroupNamePattern",
                |s| s.is_empty() || kd_logs::valid_group_name(s),
                "[\\.\\-_/#A-Za-z0-9]*",
            );
        }
        token(&mut v, r.next_token.as_deref());
        v.range(r.limit, "limit", 1, kd_logs::MAX_DESCRIBE_PAGE as i64);
        v.one_of(
            r.log_group_class.as_deref(),
            "logGroupClass",
            &["STANDARD", "INFREQUENT_ACCESS", "DELIVERY"],
        );
        if r.log_group_identifiers.as_ref().is_some_and(|l| l.len() > 50) {
            v.fail_no_value(
                "logGroupIdentifiers",
                "Member must have length less than or equal to 50",
            );
        }
        finish(v)?;
        self.allow(|| group_arn(self.scope, "*"))?;
        let pattern = r.log_group_name_pattern.filter(|p| !p.is_empty());
        let page = self
            .logs
            .describe_groups(
                self.scope,
                r.log_group_name_prefix.as_deref(),
                pattern.as_deref(),
                r.next_token.as_deref(),
                r.limit.map(|l| l as usize),
            )
            .map_err(to_service_error)?;
        let wanted_ids: Option<Vec<String>> = match r.log_group_identifiers {
            None => None,
            Some(ids) => Some(
                ids.iter()
                    .map(|id| {
                        if id.starts_with("arn:") {
                            self.group_of_arn(id)
                        } else {
                            Ok(id.clone())
                        }
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        let groups: Vec<Value> = page
            .items
            .iter()
            .filter(|g| r.log_group_class.as_deref().is_none_or(|c| g.doc.class == c))
            .filter(|g| wanted_ids.as_ref().is_none_or(|ids| ids.contains(&g.doc.name)))
            .map(|g| group_json(self.scope, g))
            .collect();
        let mut out = json!({ "logGroups": groups });
        if let Some(t) = page.next_token {
            out["nextToken"] = json!(t);
        }
        self.ok(&out)
    }

    fn stream_input(&self) -> Result<(String, String), ServiceError> {
        let r: StreamReq = self.input()?;
        let mut v = Validator::default();
        v.required(&r.log_group_name, "logGroupName");
        v.required(&r.log_stream_name, "logStreamName");
        group_name(&mut v, r.log_group_name.as_deref(), "logGroupName");
        stream_name(&mut v, r.log_stream_name.as_deref(), "logStreamName");
        finish(v)?;
        Ok((
            r.log_group_name.unwrap_or_default(),
            r.log_stream_name.unwrap_or_default(),
        ))
    }

    async fn create_stream(&self) -> Reply {
        let (group, stream) = self.stream_input()?;
        self.allow_stream(&group, &stream)?;
        self.logs
            .create_stream(self.scope, &group, &stream)
            .await
            .map_err(to_service_error)?;
        self.ok(&json!({}))
    }

    async fn delete_stream(&self) -> Reply {
        let (group, stream) = self.stream_input()?;
        self.allow_stream(&group, &stream)?;
        self.logs
            .delete_stream(self.scope, &group, &stream)
            .await
            .map_err(to_service_error)?;
        self.ok(&json!({}))
    }

    fn describe_streams(&self) -> Reply {
        let r: DescribeStreamsReq = self.input()?;
        let mut v = Validator::default();
        group_name(&mut v, r.log_group_name.as_deref(), "logGroupName");
        identifier(&mut v, r.log_group_identifier.as_deref());
        stream_name(&mut v, r.log_stream_name_prefix.as_deref(), "logStreamNamePrefix");
        v.one_of(r.order_by.as_deref(), "orderBy", &["LogStreamName", "LastEventTime"]);
        token(&mut v, r.next_token.as_deref());
        v.range(r.limit, "limit", 1, kd_logs::MAX_DESCRIBE_PAGE as i64);
        finish(v)?;
        let group = self.resolve_group(r.log_group_name, r.log_group_identifier)?;
        self.allow_group(&group)?;
        let page = self
            .logs
            .describe_streams(
                self.scope,
                &group,
                r.log_stream_name_prefix.as_deref(),
                r.order_by.as_deref() == Some("LastEventTime"),
                r.descending.unwrap_or(false),
                r.next_token.as_deref(),
                r.limit.map(|l| l as usize),
            )
            .map_err(to_service_error)?;
        let mut out = json!({
            "logStreams": page.items.iter().map(|s| stream_json(self.scope, s)).collect::<Vec<_>>(),
        });
        if let Some(t) = page.next_token {
            out["nextToken"] = json!(t);
        }
        self.ok(&out)
    }

    async fn put_events(&self) -> Reply {
        let r: PutEventsReq = self.input()?;
        let mut v = Validator::default();
        v.required(&r.log_group_name, "logGroupName");
        v.required(&r.log_stream_name, "logStreamName");
        v.required(&r.log_events, "logEvents");
        group_name(&mut v, r.log_group_name.as_deref(), "logGroupName");
        stream_name(&mut v, r.log_stream_name.as_deref(), "logStreamName");
        if let Some(events) = &r.log_events {
            if events.is_empty() {
                v.fail_no_value("logEvents", "Member must have length greater than or equal to 1");
            }
            if events.len() > kd_logs::MAX_BATCH_EVENTS {
                v.fail_no_value(
                    "logEvents",
                    &format!(
                        "Member must have length less than or equal to {}",
                        kd_logs::MAX_BATCH_EVENTS
                    ),
                );
            }
            for (i, e) in events.iter().enumerate().take(kd_logs::MAX_BATCH_EVENTS) {
                v.required(&e.timestamp, &format!("logEvents.{}.member.timestamp", i + 1));
                v.required(&e.message, &format!("logEvents.{}.member.message", i + 1));
                v.range(
                    e.timestamp,
                    &format!("logEvents.{}.member.timestamp", i + 1),
                    0,
                    i64::MAX,
                );
                v.length(
                    e.message.as_deref(),
                    &format!("logEvents.{}.member.message", i + 1),
                    1,
                    usize::MAX,
                );
                if !v.is_ok() {
                    break;
                }
            }
        }
        finish(v)?;
        let group = r.log_group_name.unwrap_or_default();
        let stream = r.log_stream_name.unwrap_or_default();
        self.allow_stream(&group, &stream)?;
        let events: Vec<InputEvent> = r
            .log_events
            .unwrap_or_default()
            .into_iter()
            .map(|e| InputEvent {
                timestamp: e.timestamp.unwrap_or_default(),
                message: e.message.unwrap_or_default(),
            })
            .collect();
        let out = self
            .logs
            .put_events(self.scope, &group, &stream, &events)
            .await
            .map_err(to_service_error)?;
        let mut body = json!({ "nextSequenceToken": out.next_sequence_token });
        let mut rejected = json!({});
        if let Some(i) = out.too_new_start {
            rejected["tooNewLogEventStartIndex"] = json!(i);
        }
        if let Some(i) = out.too_old_end {
            rejected["tooOldLogEventEndIndex"] = json!(i);
        }
        if let Some(i) = out.expired_end {
            rejected["expiredLogEventEndIndex"] = json!(i);
        }
        if rejected.as_object().is_some_and(|o| !o.is_empty()) {
            body["rejectedLogEventsInfo"] = rejected;
        }
        self.ok(&body)
    }

    fn get_events(&self) -> Reply {
        let r: GetEventsReq = self.input()?;
        let mut v = Validator::default();
        v.required(&r.log_stream_name, "logStreamName");
        group_name(&mut v, r.log_group_name.as_deref(), "logGroupName");
        identifier(&mut v, r.log_group_identifier.as_deref());
        stream_name(&mut v, r.log_stream_name.as_deref(), "logStreamName");
        v.range(r.start_time, "startTime", 0, i64::MAX);
        v.range(r.end_time, "endTime", 0, i64::MAX);
        token(&mut v, r.next_token.as_deref());
        v.range(r.limit, "limit", 1, kd_logs::MAX_EVENTS_PAGE as i64);
        finish(v)?;
        let group = self.resolve_group(r.log_group_name, r.log_group_identifier)?;
        let stream = r.log_stream_name.unwrap_or_default();
        self.allow_stream(&group, &stream)?;
        let page = self
            .logs
            .get_events(
                self.scope,
                &group,
                &stream,
                &GetQuery {
                    start: r.start_time,
                    end: r.end_time,
                    token: r.next_token,
                    limit: r.limit.map(|l| l as usize),
                    start_from_head: r.start_from_head.unwrap_or(false),
                },
            )
            .map_err(to_service_error)?;
        let events: Vec<Value> = page
            .events
            .iter()
            .map(|e| json!({"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.ingestion_ms}))
            .collect();
        self.ok(&json!({
            "events": events,
            "nextForwardToken": page.forward_token,
            "nextBackwardToken": page.backward_token,
        }))
    }

    fn filter_events(&self) -> Reply {
        let r: FilterReq = self.input()?;
        let mut v = Validator::default();
        group_name(&mut v, r.log_group_name.as_deref(), "logGroupName");
        identifier(&mut v, r.log_group_identifier.as_deref());
        if let Some(names) = &r.log_stream_names {
            if names.is_empty() || names.len() > kd_logs::MAX_FILTER_STREAMS {
                v.fail_no_value(
                    "logStreamNames",
                    &format!("Member must have length between 1 and {}", kd_logs::MAX_FILTER_STREAMS),
                );
            }
            for n in names.iter().take(kd_logs::MAX_FILTER_STREAMS) {
                stream_name(&mut v, Some(n), "logStreamNames");
            }
        }
        stream_name(&mut v, r.log_stream_name_prefix.as_deref(), "logStreamNamePrefix");
        v.range(r.start_time, "startTime", 0, i64::MAX);
        v.range(r.end_time, "endTime", 0, i64::MAX);
        v.length(
            r.filter_pattern.as_deref(),
            "filterPattern",
            0,
            kd_logs::pattern::MAX_PATTERN,
        );
        token(&mut v, r.next_token.as_deref());
        v.range(r.limit, "limit", 1, kd_logs::MAX_EVENTS_PAGE as i64);
        finish(v)?;
        let group = self.resolve_group(r.log_group_name, r.log_group_identifier)?;
        self.allow_group(&group)?;
        let page = self
            .logs
            .filter_events(
                self.scope,
                &group,
                &FilterQuery {
                    stream_names: r.log_stream_names.unwrap_or_default(),
                    stream_prefix: r.log_stream_name_prefix,
                    start: r.start_time,
                    end: r.end_time,
                    pattern: r.filter_pattern.unwrap_or_default(),
                    token: r.next_token,
                    limit: r.limit.map(|l| l as usize),
                },
            )
            .map_err(to_service_error)?;
        let events: Vec<Value> = page
            .events
            .iter()
            .map(|e| {
                json!({
                    "logStreamName": e.stream,
                    "timestamp": e.timestamp,
                    "message": e.message,
                    "ingestionTime": e.ingestion_ms,
                    "eventId": e.event_id,
                })
            })
            .collect();
        let searched: Vec<Value> = page
            .searched
            .iter()
            .map(|n| json!({"logStreamName": n, "searchedCompletely": page.next_token.is_none()}))
            .collect();
        let mut out = json!({ "events": events, "searchedLogStreams": searched });
        if let Some(t) = page.next_token {
            out["nextToken"] = json!(t);
        }
        self.ok(&out)
    }

    async fn retention(&self, put: bool) -> Reply {
        let r: GroupReq = self.input()?;
        let mut v = Validator::default();
        v.required(&r.log_group_name, "logGroupName");
        group_name(&mut v, r.log_group_name.as_deref(), "logGroupName");
        if put {
            v.required(&r.retention_in_days, "retentionInDays");
        }
        finish(v)?;
        let days = match (put, r.retention_in_days) {
            (true, Some(d)) => Some(kd_logs::check_retention(d).map_err(to_service_error)?),
            _ => None,
        };
        let name = r.log_group_name.unwrap_or_default();
        self.allow_group(&name)?;
        self.logs
            .set_retention(self.scope, &name, days)
            .await
            .map_err(to_service_error)?;
        self.ok(&json!({}))
    }

    async fn tag_resource(&self, add: bool) -> Reply {
        let r: ResourceReq = self.input()?;
        let mut v = Validator::default();
        v.required(&r.resource_arn, "resourceArn");
        v.length(r.resource_arn.as_deref(), "resourceArn", 1, 1011);
        if add {
            v.required(&r.tags, "tags");
            tags_ok(&mut v, r.tags.as_ref());
        } else {
            v.required(&r.tag_keys, "tagKeys");
            if r.tag_keys.as_ref().is_some_and(|k| k.is_empty() || k.len() > 50) {
                v.fail_no_value("tagKeys", "Member must have length between 1 and 50");
            }
        }
        finish(v)?;
        let arn = r.resource_arn.unwrap_or_default();
        let group = self.group_of_arn(&arn)?;
        self.allow(|| group_arn(self.scope, &group))?;
        self.logs
            .tag_group(
                self.scope,
                &group,
                r.tags.unwrap_or_default(),
                &r.tag_keys.unwrap_or_default(),
            )
            .await
            .map_err(to_service_error)?;
        self.ok(&json!({}))
    }

    fn list_tags_for_resource(&self) -> Reply {
        let r: ResourceReq = self.input()?;
        let mut v = Validator::default();
        v.required(&r.resource_arn, "resourceArn");
        v.length(r.resource_arn.as_deref(), "resourceArn", 1, 1011);
        finish(v)?;
        let arn = r.resource_arn.unwrap_or_default();
        let group = self.group_of_arn(&arn)?;
        self.allow(|| group_arn(self.scope, &group))?;
        let tags = self.logs.group_tags(self.scope, &group).map_err(to_service_error)?;
        self.ok(&json!({ "tags": tags }))
    }

    async fn tag_log_group(&self, add: bool) -> Reply {
        let r: LegacyTagsReq = self.input()?;
        let mut v = Validator::default();
        v.required(&r.log_group_name, "logGroupName");
        v.required(&r.tags, "tags");
        group_name(&mut v, r.log_group_name.as_deref(), "logGroupName");
        let (tags, keys): (BTreeMap<String, String>, Vec<String>) = if add {
            let map: BTreeMap<String, String> = r
                .tags
                .clone()
                .map(serde_json::from_value)
                .transpose()
                .map_err(|_| ServiceError::client("SerializationException", "tags must be a map of strings"))?
                .unwrap_or_default();
            tags_ok(&mut v, Some(&map));
            (map, Vec::new())
        } else {
            let keys: Vec<String> = r
                .tags
                .clone()
                .map(serde_json::from_value)
                .transpose()
                .map_err(|_| ServiceError::client("SerializationException", "tags must be a list of strings"))?
                .unwrap_or_default();
            if keys.is_empty() || keys.len() > 50 {
                v.fail_no_value("tags", "Member must have length between 1 and 50");
            }
            (BTreeMap::new(), keys)
        };
        finish(v)?;
        let name = r.log_group_name.unwrap_or_default();
        self.allow_group(&name)?;
        self.logs
            .tag_group(self.scope, &name, tags, &keys)
            .await
            .map_err(to_service_error)?;
        self.ok(&json!({}))
    }

    fn list_tags_log_group(&self) -> Reply {
        let r: GroupReq = self.input()?;
        let mut v = Validator::default();
        v.required(&r.log_group_name, "logGroupName");
        group_name(&mut v, r.log_group_name.as_deref(), "logGroupName");
        finish(v)?;
        let name = r.log_group_name.unwrap_or_default();
        self.allow_group(&name)?;
        let tags = self.logs.group_tags(self.scope, &name).map_err(to_service_error)?;
        self.ok(&json!({ "tags": tags }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kd_storage::{ManualClock, MetaStore};
    use kd_wire::AllowAll;

    fn ctx() -> RequestContext {
        RequestContext {
            request_id: "r".into(),
            account_id: "000000000000".into(),
            region: "us-east-1".into(),
            authz: Arc::new(AllowAll),
        }
    }

    async fn call(api: &LogsApi, op: &str, body: Value) -> (u16, Value) {
        let resp = api.handle(&ctx(), op, body.to_string().as_bytes()).await;
        let status = resp.status().as_u16();
        let v = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
        (status, v)
    }

    #[tokio::test]
    async fn wire_shapes_and_error_codes() {
        let dir = tempfile::tempdir().expect("dir");
        let meta = Arc::new(MetaStore::open(&dir.path().join("m.redb")).expect("meta"));
        let logs = Logs::open(
            kd_logs::Config::default(),
            meta,
            Arc::new(ManualClock::new(1_767_225_600_000)),
        )
        .expect("logs");
        let api = LogsApi::new(logs);
        let (s, _) = call(&api, "CreateLogGroup", json!({"logGroupName": "/g"})).await;
        assert_eq!(s, 200);
        let (s, e) = call(&api, "CreateLogGroup", json!({"logGroupName": "/g"})).await;
        assert_eq!((s, e["__type"].as_str()), (400, Some("ResourceAlreadyExistsException")));
        let (_, e) = call(&api, "CreateLogGroup", json!({"logGroupName": "bad name"})).await;
        assert_eq!(e["__type"], "InvalidParameterException");
        assert!(
            e["message"]
                .as_str()
                .unwrap_or_default()
                .contains("regular expression pattern")
        );
        let (_, e) = call(
            &api,
            "CreateLogStream",
            json!({"logGroupName": "/g", "logStreamName": "a:b"}),
        )
        .await;
        assert_eq!(e["__type"], "InvalidParameterException");
        let (s, _) = call(
            &api,
            "CreateLogStream",
            json!({"logGroupName": "/g", "logStreamName": "s"}),
        )
        .await;
        assert_eq!(s, 200);
        let (s, out) = call(
            &api,
            "PutLogEvents",
            json!({"logGroupName": "/g", "logStreamName": "s",
                   "logEvents": [{"timestamp": 1_767_225_600_000i64, "message": "hello"}]}),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(out["nextSequenceToken"].as_str().map(str::len), Some(56));
        let (_, out) = call(
            &api,
            "GetLogEvents",
            json!({"logGroupIdentifier": "arn:aws:logs:us-east-1:000000000000:log-group:/g", "logStreamName": "s"}),
        )
        .await;
        assert_eq!(out["events"][0]["message"], "hello");
        assert!(out["nextForwardToken"].as_str().is_some_and(|t| t.starts_with("f/")));
        let (_, out) = call(&api, "DescribeLogGroups", json!({})).await;
        assert_eq!(
            out["logGroups"][0]["arn"],
            "arn:aws:logs:us-east-1:000000000000:log-group:/g:*"
        );
        assert_eq!(out["logGroups"][0]["storedBytes"], 31);
        let (_, e) = call(&api, "DescribeLogGroups", json!({"limit": 51})).await;
        assert_eq!(e["__type"], "InvalidParameterException");
        let (_, e) = call(
            &api,
            "PutRetentionPolicy",
            json!({"logGroupName": "/g", "retentionInDays": 2}),
        )
        .await;
        assert_eq!(e["__type"], "InvalidParameterException");
        let (_, e) = call(&api, "DeleteLogGroup", json!({"logGroupName": "/nope"})).await;
        assert_eq!(e["__type"], "ResourceNotFoundException");
        assert_eq!(e["message"], "The specified log group does not exist.");
        let (_, e) = call(
            &api,
            "FilterLogEvents",
            json!({"logGroupName": "/g", "filterPattern": "{ $.a = 1 }"}),
        )
        .await;
        assert_eq!(e["__type"], "InvalidParameterException");
        let (_, e) = call(&api, "StartLiveTail", json!({})).await;
        assert_eq!(e["__type"], "UnknownOperationException");
        let (s, _) = call(
            &api,
            "TagResource",
            json!({"resourceArn": "arn:aws:logs:us-east-1:000000000000:log-group:/g", "tags": {"a": "1"}}),
        )
        .await;
        assert_eq!(s, 200);
        let (_, out) = call(&api, "ListTagsLogGroup", json!({"logGroupName": "/g"})).await;
        assert_eq!(out["tags"], json!({"a": "1"}));
        let (s, _) = call(&api, "UntagLogGroup", json!({"logGroupName": "/g", "tags": ["a"]})).await;
        assert_eq!(s, 200);
        let (_, out) = call(
            &api,
            "ListTagsForResource",
            json!({"resourceArn": "arn:aws:logs:us-east-1:000000000000:log-group:/g"}),
        )
        .await;
        assert_eq!(out["tags"], json!({}));
    }
}
