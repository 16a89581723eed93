//! The Lambda engine's ports and the S3 → Lambda notification dispatcher, implemented over
//! the other engines:
//!
//! * [`LambdaRoles`]: execution roles (the role must trust `lambda.amazonaws.com`; each
//!   function gets a 12-hour session of its role, so calls its code makes are signed by
//!   `arn:aws:sts::<acct>:assumed-role/<role>/<function>` and IAM enforces the role's rights);
//! * [`S3CodeFetcher`]: `Code.S3Bucket`/`S3Key` packages read from our S3;
//! * [`KinesisReader`]: event source mappings read streams acting as the function's role;
//! * [`LambdaTransformer`]: Firehose's Lambda processor;
//! * [`FunctionDestinations`]: S3's check that a notification's function exists and lets S3
//!   invoke it;
//! * [`dispatch_s3_events`]: drains the objects engine's durable event outbox into the
//!   functions engine's durable async queue.
//!
//! # Exactly-once hand-over of S3 events
//!
//! The dispatcher reads outbox events in order, builds the S3 event JSON for every matching
//! function configuration, and queues the invocations in ONE transaction of the functions
//! engine together with the watermark `s3_dispatched = <last seq>`; only then does it ack
//! the outbox up to that seq. After a crash between the two, events at or below the
//! watermark are acked without being queued again: no event is lost and none is queued
//! twice.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kd_delivery::{PortError, RecordTransformer, TransformRequest, TransformResponse};
use kd_functions::esm::{ReadFrom, StreamBatch, StreamReader, StreamRecord, StreamShard};
use kd_functions::host::Credentials;
use kd_functions::{CodeFetcher, Functions, Roles};
use kd_iam::store::IamStore;
use kd_objects::Objects;
use kd_stream::{Engine, IteratorStart};

use crate::ports::{KinesisSource, RoleActor, scope_of};

/// How long a function's role session lasts.
const SESSION_MS: i64 = 12 * 3600 * 1000;

/// Execution roles over the IAM store.
pub struct LambdaRoles {
    store: Arc<IamStore>,
    enforce: bool,
    fallback: Credentials,
}

impl LambdaRoles {
    /// Over `store`; `enforce` is whether IAM is on; `fallback` (the root keys) signs for
    /// functions whose role does not exist when IAM is off.
    pub fn new(store: Arc<IamStore>, enforce: bool, fallback: Credentials) -> Self {
        Self {
            store,
            enforce,
            fallback,
        }
    }
}

const CANNOT_ASSUME: &str = "The role defined for the function cannot be assumed by Lambda.";

impl Roles for LambdaRoles {
    fn check_lambda_trust(&self, role_arn: &str) -> Result<(), String> {
        if !self.enforce {
            return Ok(());
        }
        let ctx = kd_iam::policy::ConditionContext::new();
        if self.store.service_may_assume(role_arn, "lambda.amazonaws.com", &ctx) {
            return Ok(());
        }
        Err(CANNOT_ASSUME.to_owned())
    }

    fn credentials(&self, role_arn: &str, function_name: &str) -> Result<Credentials, String> {
        let session: String = function_name.chars().take(64).collect();
        match self.store.service_session(role_arn, &session, SESSION_MS) {
            Ok(s) => Ok(Credentials {
                access_key_id: s.access_key_id,
                secret_access_key: s.secret_access_key,
                session_token: s.session_token,
            }),
            Err(_) if !self.enforce => Ok(self.fallback.clone()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Deployment packages from our S3.
pub struct S3CodeFetcher {
    objects: Arc<Objects>,
}

impl S3CodeFetcher {
    /// Over the objects engine.
    pub fn new(objects: Arc<Objects>) -> Self {
        Self { objects }
    }
}

#[async_trait::async_trait]
impl CodeFetcher for S3CodeFetcher {
    async fn fetch(
        &self,
        account: &str,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        limit: u64,
    ) -> Result<Bytes, String> {
        use futures_util::StreamExt as _;
        let missing = || {
            "Error occurred while GetObject. S3 Error Code: NoSuchKey. S3 Error Message: The specified key does not exist.".to_owned()
        };
        let info = self.objects.bucket(bucket).map_err(|_| {
            "Error occurred while GetObject. S3 Error Code: NoSuchBucket. S3 Error Message: The specified bucket does not exist".to_owned()
        })?;
        if info.owner_account != account {
            return Err(
                "Error occurred while GetObject. S3 Error Code: AccessDenied. S3 Error Message: Access Denied".into(),
            );
        }
        if version.is_some_and(|v| v != "null") {
            return Err(missing());
        }
        let (obj, _, mut body) = self
            .objects
            .get_object(bucket, key, None)
            .await
            .map_err(|_| missing())?;
        if obj.size > limit {
            return Err(format!("Unzipped size must be smaller than {limit} bytes"));
        }
        let mut out = Vec::with_capacity(usize::try_from(obj.size).unwrap_or(0));
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| format!("Error occurred while GetObject: {e}"))?;
            out.extend_from_slice(&chunk);
            if out.len() as u64 > limit {
                return Err(format!("Unzipped size must be smaller than {limit} bytes"));
            }
        }
        Ok(Bytes::from(out))
    }
}

/// Streams for event source mappings, read as the function's role (the same stream access
/// as Firehose's, as the session `lambda`).
pub struct KinesisReader {
    engine: Arc<Engine>,
    source: KinesisSource,
    actor: RoleActor,
}

impl KinesisReader {
    /// Over the stream engine.
    pub fn new(engine: Arc<Engine>, actor: RoleActor) -> Self {
        let actor = actor.with_session("lambda");
        Self {
            source: KinesisSource::new(engine.clone(), actor.clone()),
            engine,
            actor,
        }
    }
}

#[async_trait::async_trait]
impl StreamReader for KinesisReader {
    async fn shards(&self, stream_arn: &str, role_arn: &str) -> Result<Vec<StreamShard>, String> {
        self.actor
            .allow(role_arn, &["kinesis:ListShards", "kinesis:DescribeStream"], stream_arn)
            .map_err(|e| e.to_string())?;
        let scope = scope_of(stream_arn).map_err(|e| e.to_string())?;
        Ok(self
            .source
            .all_shards(&scope, stream_arn)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|s| StreamShard {
                closed: s.end_sequence.is_some(),
                parents: s.parent.into_iter().chain(s.adjacent_parent).collect(),
                shard_id: s.shard_id,
            })
            .collect())
    }

    async fn read(
        &self,
        stream_arn: &str,
        role_arn: &str,
        shard_id: &str,
        from: ReadFrom,
        max: usize,
    ) -> Result<StreamBatch, String> {
        self.actor
            .allow(
                role_arn,
                &["kinesis:GetShardIterator", "kinesis:GetRecords"],
                stream_arn,
            )
            .map_err(|e| e.to_string())?;
        let scope = scope_of(stream_arn).map_err(|e| e.to_string())?;
        let latest = matches!(from, ReadFrom::Latest);
        let start = match from {
            ReadFrom::TrimHorizon => IteratorStart::TrimHorizon,
            ReadFrom::Latest => IteratorStart::Latest,
            ReadFrom::AtTimestamp(ms) => IteratorStart::AtTimestamp(ms),
            ReadFrom::After(seq) => IteratorStart::AfterSequence(seq),
        };
        let it = self
            .source
            .iterator(&scope, stream_arn, shard_id, start)
            .await
            .map_err(|e| e.to_string())?;
        let position = if latest {
            kd_stream::seq::IteratorToken::decode(&it)
                .filter(|t| t.offset > 0)
                .map(|t| kd_stream::seq::to_sequence(t.offset - 1))
        } else {
            None
        };
        let out = self
            .engine
            .get_records(&scope, &it, max.clamp(1, 10_000))
            .await
            .map_err(|e| e.to_string())?;
        Ok(StreamBatch {
            end_of_shard: out.next_iterator.is_none(),
            position,
            records: out
                .records
                .into_iter()
                .map(|r| StreamRecord {
                    sequence_number: r.sequence_number,
                    partition_key: r.partition_key,
                    data: Bytes::from(r.data),
                    arrival_ms: r.arrival_ms,
                })
                .collect(),
        })
    }
}

/// Firehose's Lambda processor over the functions engine.
pub struct LambdaTransformer {
    functions: Arc<Functions>,
    actor: RoleActor,
}

impl LambdaTransformer {
    /// Over the functions engine; the delivery stream's role must be allowed
    /// `lambda:InvokeFunction` on the processor's function.
    pub fn new(functions: Arc<Functions>, actor: RoleActor) -> Self {
        Self { functions, actor }
    }
}

#[async_trait::async_trait]
impl RecordTransformer for LambdaTransformer {
    async fn transform(
        &self,
        function_arn: &str,
        role_arn: &str,
        event: TransformRequest,
    ) -> Result<TransformResponse, PortError> {
        self.actor.allow(role_arn, &["lambda:InvokeFunction"], function_arn)?;
        let payload = Bytes::from(event.to_event_json().to_string());
        let out = self
            .functions
            .invoke_arn(function_arn, payload)
            .await
            .map_err(|e| match e {
                kd_functions::Error::ResourceNotFound(m) => PortError::NotFound(m),
                kd_functions::Error::TooManyRequests { message, .. } => {
                    PortError::Other(format!("Lambda.InvokeLimitExceeded: {message}"))
                }
                other => PortError::Other(other.to_string()),
            })?;
        if let Some(kind) = out.function_error {
            return Err(PortError::Other(format!(
                "The Lambda function failed ({kind}): {}",
                String::from_utf8_lossy(&out.payload)
            )));
        }
        TransformResponse::from_json(&out.payload)
            .map_err(|e| PortError::Other(format!("Lambda.JsonProcessingException: {e}")))
    }
}

/// S3's destination check over the functions engine.
pub struct FunctionDestinations {
    functions: Arc<Functions>,
}

impl FunctionDestinations {
    /// Over the functions engine.
    pub fn new(functions: Arc<Functions>) -> Self {
        Self { functions }
    }
}

impl kd_api_s3::notify::DestinationCheck for FunctionDestinations {
    fn check_function(&self, function_arn: &str, bucket: &str, bucket_owner: &str) -> Result<(), String> {
        if self.functions.lookup_arn(function_arn).is_none() {
            return Err(format!("function {function_arn} does not exist"));
        }
        if !self.functions.service_may_invoke(
            function_arn,
            "s3.amazonaws.com",
            &format!("arn:aws:s3:::{bucket}"),
            bucket_owner,
        ) {
            return Err(format!(
                "the resource policy of {function_arn} does not let s3.amazonaws.com invoke it for bucket {bucket}"
            ));
        }
        Ok(())
    }
}

/// Whether `name` is a valid function name (the `logs` command checks it before building a
/// path from it).
pub fn valid_function_name(name: &str) -> bool {
    kd_functions::valid_name(name)
}

/// Watermark of the S3 events already queued (see the module docs).
const S3_MARK: &str = "s3_dispatched";

/// `application/x-www-form-urlencoded` encoding of a key, `/` left as is (S3's event keys).
pub fn event_key(key: &str) -> String {
    key.split('/')
        .map(|seg| form_urlencoded::byte_serialize(seg.as_bytes()).collect::<String>())
        .collect::<Vec<_>>()
        .join("/")
}

/// The S3 event message of one outbox event for one configuration.
pub fn s3_event_json(ev: &kd_objects::ObjectEvent, config_id: &str, region: &str, owner: &str) -> serde_json::Value {
    let secs = ev.time_ms.div_euclid(1000);
    let time = format!(
        "{}.{:03}Z",
        kd_storage::civil::format_iso8601(secs).trim_end_matches('Z'),
        ev.time_ms.rem_euclid(1000)
    );
    let mut object = serde_json::json!({ "key": event_key(&ev.key), "sequencer": ev.sequencer });
    if ev.event_name.starts_with("ObjectCreated") {
        object["size"] = ev.size.into();
        object["eTag"] = ev.etag.clone().into();
    }
    // Only versioned buckets' events carry a version id (`null` for a suspended bucket's).
    if let Some(v) = &ev.version_id {
        object["versionId"] = v.clone().into();
    }
    let request_id = format!("{:016X}", ev.seq);
    serde_json::json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": time,
        "eventName": ev.event_name,
        "userIdentity": { "principalId": format!("AWS:{owner}") },
        "requestParameters": { "sourceIPAddress": "127.0.0.1" },
        "responseElements": { "x-amz-request-id": request_id, "x-amz-id-2": format!("kinesis-data/{request_id}") },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": config_id,
            "bucket": {
                "name": ev.bucket,
                "ownerIdentity": { "principalId": owner },
                "arn": format!("arn:aws:s3:::{}", ev.bucket),
            },
            "object": object,
        },
    }]})
}

/// One pass: queues the invocations of up to `limit` outbox events; returns how many
/// events it consumed.
pub async fn dispatch_once(objects: &Objects, functions: &Functions, limit: usize) -> anyhow::Result<usize> {
    let events = objects.pending_events(limit)?;
    let Some(last) = events.last().map(|e| e.seq) else {
        return Ok(0);
    };
    let mark = functions.mark(S3_MARK)?;
    let mut items = Vec::new();
    for ev in events.iter().filter(|e| e.seq > mark) {
        let Ok(Some(cfg)) = objects.get_bucket_notification(&ev.bucket) else {
            continue;
        };
        let owner = objects.bucket(&ev.bucket).map(|b| b.owner_account).unwrap_or_default();
        for t in kd_api_s3::notify::lambda_targets(&cfg) {
            if !t.matches(&ev.event_name, &ev.key) {
                continue;
            }
            let source = format!("arn:aws:s3:::{}", ev.bucket);
            if !functions.service_may_invoke(&t.function_arn, "s3.amazonaws.com", &source, &owner) {
                tracing::warn!(function = %t.function_arn, bucket = %ev.bucket, "S3 may not invoke the function (missing or no permission); event dropped");
                continue;
            }
            let region = kd_functions::FunctionRef::parse(&t.function_arn)
                .and_then(|r| r.region)
                .unwrap_or_default();
            let body = s3_event_json(ev, &t.id, &region, &owner);
            items.push((
                t.function_arn.clone(),
                uuid::Uuid::new_v4().to_string(),
                Bytes::from(body.to_string()),
            ));
        }
    }
    // Without invocations there is nothing to hand over twice: skip the watermark write, so
    // buckets without notifications cost one outbox ack per pass and nothing more.
    if last > mark && !items.is_empty() {
        functions
            .enqueue_many(items, vec![Functions::mark_op(S3_MARK, last)])
            .await?;
    }
    objects.ack_events(last).await?;
    Ok(events.len())
}

/// Runs the dispatcher until the task is aborted.
pub fn dispatch_s3_events(objects: Arc<Objects>, functions: Arc<Functions>) -> tokio::task::JoinHandle<()> {
    let notify = objects.events_notify();
    tokio::spawn(async move {
        loop {
            match dispatch_once(&objects, &functions, 256).await {
                Ok(0) => {
                    // Woken by the next commit that writes events (or a periodic re-check).
                    let _ = tokio::time::timeout(Duration::from_secs(1), notify.notified()).await;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "S3 notification dispatch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_are_form_encoded_with_slashes_kept() {
        assert_eq!(event_key("raw/red flower(1).jpg"), "raw/red+flower%281%29.jpg");
        assert_eq!(event_key("a/b+c%d"), "a/b%2Bc%25d");
    }

    #[test]
    fn s3_event_shape() {
        let ev = kd_objects::ObjectEvent {
            version: 1,
            seq: 7,
            event_name: "ObjectCreated:Put".into(),
            bucket: "b".into(),
            key: "k 1".into(),
            size: 3,
            etag: "abc".into(),
            sequencer: "0000000000000007".into(),
            time_ms: 1_714_569_730_123,
            version_id: None,
        };
        let v = s3_event_json(&ev, "cfg", "us-east-1", "000000000000");
        let r = &v["Records"][0];
        assert_eq!(r["eventTime"], "2024-05-01T13:22:10.123Z");
        assert_eq!(r["s3"]["object"]["key"], "k+1");
        assert_eq!(r["s3"]["object"]["size"], 3);
        assert_eq!(r["s3"]["configurationId"], "cfg");
        let removed = kd_objects::ObjectEvent {
            event_name: "ObjectRemoved:Delete".into(),
            ..ev
        };
        let v = s3_event_json(&removed, "cfg", "us-east-1", "000000000000");
        assert!(v["Records"][0]["s3"]["object"].get("size").is_none());
        assert!(v["Records"][0]["s3"]["object"].get("versionId").is_none());
        let marker = kd_objects::ObjectEvent {
            event_name: "ObjectRemoved:DeleteMarkerCreated".into(),
            version_id: Some("0000000000000007abc".into()),
            ..removed
        };
        let v = s3_event_json(&marker, "cfg", "us-east-1", "000000000000");
        assert_eq!(v["Records"][0]["s3"]["object"]["versionId"], "0000000000000007abc");
    }
}
