//! The delivery engine's vocabulary and its ports. The adapter (`api-firehose`) speaks these
//! types; the binary's wiring implements the ports over the stream and objects engines.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The account and region a request acts in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scope {
    /// 12-digit account id.
    pub account: String,
    /// Region.
    pub region: String,
}

/// Where records come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// PutRecord/PutRecordBatch.
    DirectPut,
    /// A Kinesis stream read by the engine.
    KinesisStream {
        /// `arn:aws:kinesis:<region>:<acct>:stream/<name>`.
        stream_arn: String,
        /// The role the delivery stream reads with.
        role_arn: String,
    },
}

/// Output compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    /// `UNCOMPRESSED`.
    Uncompressed,
    /// `GZIP` (`.gz`).
    Gzip,
    /// `ZIP` (`.zip`, one entry).
    Zip,
    /// `Snappy` (framing format, `.snappy`).
    Snappy,
    /// `HADOOP_SNAPPY` (Hadoop block framing, `.snappy`).
    HadoopSnappy,
}

impl Compression {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Uncompressed => "UNCOMPRESSED",
            Compression::Gzip => "GZIP",
            Compression::Zip => "ZIP",
            Compression::Snappy => "Snappy",
            Compression::HadoopSnappy => "HADOOP_SNAPPY",
        }
    }

    /// Parses the wire name (case-sensitive, as AWS).
    pub fn parse(s: &str) -> Option<Compression> {
        Some(match s {
            "UNCOMPRESSED" => Compression::Uncompressed,
            "GZIP" => Compression::Gzip,
            "ZIP" => Compression::Zip,
            "Snappy" => Compression::Snappy,
            "HADOOP_SNAPPY" => Compression::HadoopSnappy,
            _ => return None,
        })
    }
}

/// A `DynamicPartitioningConfiguration` with its `MetadataExtraction` queries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamicPartitioning {
    /// Partition key name → JQ-style query (`.a`, `.a.b`).
    pub queries: BTreeMap<String, String>,
    /// `RetryOptions.DurationInSeconds`.
    pub retry_seconds: u32,
}

/// A Glue/Hive column type a record field converts to (`DataFormatConversionConfiguration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnType {
    /// `string` (also `varchar`, `char`): Arrow Utf8.
    String,
    /// `int` (`integer`): Arrow Int32.
    Int,
    /// `bigint`: Arrow Int64.
    Bigint,
    /// `double`: Arrow Float64.
    Double,
    /// `float`: Arrow Float32.
    Float,
    /// `boolean`: Arrow Boolean.
    Boolean,
    /// `timestamp`: Arrow Timestamp(ms, no time zone).
    Timestamp,
    /// `date`: Arrow Date32.
    Date,
}

impl ColumnType {
    /// The Hive name.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Int => "int",
            ColumnType::Bigint => "bigint",
            ColumnType::Double => "double",
            ColumnType::Float => "float",
            ColumnType::Boolean => "boolean",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Date => "date",
        }
    }

    /// Parses a Hive type name (case-insensitive; `varchar(n)`/`char(n)` are strings).
    pub fn parse(s: &str) -> Option<ColumnType> {
        let s = s.trim().to_ascii_lowercase();
        let base = s.split('(').next().unwrap_or_default().trim();
        Some(match base {
            "string" | "varchar" | "char" => ColumnType::String,
            "int" | "integer" => ColumnType::Int,
            "bigint" => ColumnType::Bigint,
            "double" => ColumnType::Double,
            "float" => ColumnType::Float,
            "boolean" => ColumnType::Boolean,
            "timestamp" => ColumnType::Timestamp,
            "date" => ColumnType::Date,
            _ => return None,
        })
    }
}

/// `ParquetSerDe.Compression`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParquetCompression {
    /// `SNAPPY` (AWS's default).
    #[default]
    Snappy,
    /// `GZIP`.
    Gzip,
    /// `UNCOMPRESSED`.
    Uncompressed,
}

impl ParquetCompression {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ParquetCompression::Snappy => "SNAPPY",
            ParquetCompression::Gzip => "GZIP",
            ParquetCompression::Uncompressed => "UNCOMPRESSED",
        }
    }

    /// Parses the wire name (case-sensitive, as AWS).
    pub fn parse(s: &str) -> Option<ParquetCompression> {
        Some(match s {
            "SNAPPY" => ParquetCompression::Snappy,
            "GZIP" => ParquetCompression::Gzip,
            "UNCOMPRESSED" => ParquetCompression::Uncompressed,
            _ => return None,
        })
    }
}

/// Record format conversion: JSON records to one Apache Parquet file per object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatConversion {
    /// The table's columns in order: name → type. JSON keys match names case-insensitively
    /// (OpenX JSON SerDe's default); missing keys and `null` become nulls.
    pub columns: Vec<(String, ColumnType)>,
    /// Parquet page compression.
    pub compression: ParquetCompression,
}

/// `NumberOfRetries` when not given.
pub const DEFAULT_LAMBDA_RETRIES: u32 = 3;
/// Most `NumberOfRetries`.
pub const MAX_LAMBDA_RETRIES: u32 = 300;
/// `BufferSizeInMBs` when not given (1 MB), in bytes.
pub const DEFAULT_LAMBDA_BUFFER_BYTES: u64 = 1024 * 1024;
/// `BufferIntervalInSeconds` when not given.
pub const DEFAULT_LAMBDA_BUFFER_SECS: u32 = 60;
/// The largest synchronous Lambda request (6 MB): no invocation event is larger.
pub const MAX_LAMBDA_EVENT_BYTES: usize = 6 * 1024 * 1024;

/// A `Lambda` processor of an enabled `ProcessingConfiguration`: every record is handed to
/// the function (through [`RecordTransformer`]) before it is buffered and partitioned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LambdaProcessor {
    /// `LambdaArn`: `arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`.
    pub lambda_arn: String,
    /// `NumberOfRetries` (0–300, default 3): invocation retries before the batch fails.
    pub number_of_retries: u32,
    /// `RoleArn`: the role the function is invoked with (`None`: the destination's role).
    pub role_arn: Option<String>,
    /// `BufferSizeInMBs` (0.2–3 MB, default 1 MB) in bytes: the most record data (before
    /// base64) one invocation carries. The event is also kept under 6 MB.
    pub buffer_size_bytes: u64,
    /// `BufferIntervalInSeconds` (default 60). Informational: the engine invokes the function
    /// as soon as records are read instead of waiting to fill the processor's buffer.
    pub buffer_interval_secs: u32,
}

impl LambdaProcessor {
    /// A processor with AWS's defaults for `lambda_arn`.
    pub fn new(lambda_arn: impl Into<String>) -> LambdaProcessor {
        LambdaProcessor {
            lambda_arn: lambda_arn.into(),
            number_of_retries: DEFAULT_LAMBDA_RETRIES,
            role_arn: None,
            buffer_size_bytes: DEFAULT_LAMBDA_BUFFER_BYTES,
            buffer_interval_secs: DEFAULT_LAMBDA_BUFFER_SECS,
        }
    }
}

/// The S3 destination (ExtendedS3 or the older S3 configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Destination {
    /// `RoleARN`.
    pub role_arn: String,
    /// `BucketARN` (`arn:aws:s3:::name`).
    pub bucket_arn: String,
    /// `Prefix` (may hold `!{…}` expressions).
    pub prefix: Option<String>,
    /// `ErrorOutputPrefix`.
    pub error_output_prefix: Option<String>,
    /// `BufferingHints.SizeInMBs` (1–128, default 5).
    pub size_mb: u32,
    /// `BufferingHints.IntervalInSeconds` (0–900, default 300).
    pub interval_secs: u32,
    /// `CompressionFormat`.
    pub compression: Compression,
    /// `FileExtension` (replaces the default extension).
    pub file_extension: Option<String>,
    /// `CustomTimeZone` (IANA name; UTC when absent).
    pub custom_time_zone: Option<String>,
    /// Dynamic partitioning, when enabled.
    pub dynamic_partitioning: Option<DynamicPartitioning>,
    /// Record format conversion to Parquet, when enabled (objects are then not compressed
    /// as a whole: `compression` is `Uncompressed`).
    #[serde(default)]
    pub format_conversion: Option<FormatConversion>,
    /// The Lambda record-transformation processor, when `ProcessingConfiguration` is enabled
    /// with one.
    #[serde(default)]
    pub processor: Option<LambdaProcessor>,
    /// The destination as the caller gave it (echoed by DescribeDeliveryStream).
    pub raw: serde_json::Value,
    /// `true` for ExtendedS3DestinationConfiguration, `false` for S3DestinationConfiguration.
    pub extended: bool,
}

/// CreateDeliveryStream's input, validated by the adapter.
#[derive(Debug, Clone)]
pub struct DeliveryStreamSpec {
    /// Name (1–64, `[a-zA-Z0-9_.-]+`).
    pub name: String,
    /// Source.
    pub source: Source,
    /// Destination.
    pub destination: S3Destination,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// Delivery stream status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Just created.
    Creating,
    /// Delivering.
    Active,
    /// Being deleted.
    Deleting,
}

/// The last delivery failure, as DescribeDeliveryStream shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureDescription {
    /// e.g. `S3_ACCESS_DENIED`, `S3_BUCKET_NOT_FOUND`, `UNKNOWN_ERROR`.
    pub kind: String,
    /// Details.
    pub details: String,
}

/// DescribeDeliveryStream's answer.
#[derive(Debug, Clone)]
pub struct DeliveryStreamInfo {
    /// Name.
    pub name: String,
    /// `arn:aws:firehose:<region>:<acct>:deliverystream/<name>`.
    pub arn: String,
    /// Status.
    pub status: Status,
    /// Source.
    pub source: Source,
    /// When a stream-sourced delivery began reading (epoch ms).
    pub delivery_start_ms: Option<i64>,
    /// Destination (one: `destinationId-000000000001`).
    pub destination: S3Destination,
    /// `VersionId` ("1", "2", …), bumped by UpdateDestination.
    pub version: u64,
    /// Creation time, epoch ms.
    pub created_ms: i64,
    /// Last UpdateDestination, epoch ms.
    pub updated_ms: Option<i64>,
    /// The last delivery failure, until a delivery succeeds.
    pub failure: Option<FailureDescription>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// Why a port call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The role may not do this (retry later: access may be granted).
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// The bucket or stream does not exist (retry later).
    #[error("not found: {0}")]
    NotFound(String),
    /// Anything else (retry later).
    #[error("{0}")]
    Other(String),
}

/// Writes delivered objects (implemented over the objects engine, acting with the role).
#[async_trait::async_trait]
pub trait ObjectSink: Send + Sync + 'static {
    /// Puts one whole object durably.
    async fn put_object(
        &self,
        account: &str,
        role_arn: &str,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_encoding: Option<&str>,
    ) -> Result<(), PortError>;
}

/// One shard of a source stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceShard {
    /// `shardId-…`.
    pub shard_id: String,
    /// Parents (must be read to their end first).
    pub parents: Vec<String>,
    /// Whether the shard is closed.
    pub closed: bool,
}

/// One record read from a source shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    /// Sequence number.
    pub sequence_number: String,
    /// Payload.
    pub data: Bytes,
    /// Partition key.
    pub partition_key: String,
    /// Arrival time, epoch ms.
    pub arrival_ms: i64,
}

/// A read from a source shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceBatch {
    /// Records after the requested position, ascending.
    pub records: Vec<SourceRecord>,
    /// A closed shard read to its end: its children may start.
    pub end_of_shard: bool,
}

/// Reads a Kinesis stream (implemented over the stream engine, acting with the role).
#[async_trait::async_trait]
pub trait StreamSource: Send + Sync + 'static {
    /// Every retained shard of the stream.
    async fn shards(&self, stream_arn: &str, role_arn: &str) -> Result<Vec<SourceShard>, PortError>;
    /// The sequence number after which LATEST begins (`None`: the shard is empty so far: read
    /// from its start).
    async fn latest(&self, stream_arn: &str, role_arn: &str, shard_id: &str) -> Result<Option<String>, PortError>;
    /// Up to `max_records` records strictly after `after` (from the shard's start when `None`).
    async fn read(
        &self,
        stream_arn: &str,
        role_arn: &str,
        shard_id: &str,
        after: Option<&str>,
        max_records: usize,
    ) -> Result<SourceBatch, PortError>;
}

// ------------------------------------------------------------ Lambda record transformation

/// Kinesis metadata of a record read from a source stream (`kinesisRecordMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisRecordMetadata {
    /// `shardId-…`.
    pub shard_id: String,
    /// Partition key.
    pub partition_key: String,
    /// Arrival time in the stream, epoch ms.
    pub approximate_arrival_ms: i64,
    /// Sequence number.
    pub sequence_number: String,
    /// Subsequence number (0 unless the record was aggregated).
    pub subsequence_number: i64,
}

/// One record handed to the transformation function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformInputRecord {
    /// The id the function must echo (unique within the invocation).
    pub record_id: String,
    /// Arrival time at the delivery stream, epoch ms.
    pub approximate_arrival_ms: i64,
    /// Payload (base64 in the event).
    pub data: Bytes,
    /// Present only for a Kinesis-stream source.
    pub kinesis: Option<KinesisRecordMetadata>,
}

/// One invocation of the transformation function (the Lambda event of reference §2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformRequest {
    /// A fresh id per invocation.
    pub invocation_id: String,
    /// `arn:aws:firehose:<region>:<acct>:deliverystream/<name>`.
    pub delivery_stream_arn: String,
    /// Present only for a Kinesis-stream source.
    pub source_kinesis_stream_arn: Option<String>,
    /// Region of the delivery stream.
    pub region: String,
    /// The records, in order.
    pub records: Vec<TransformInputRecord>,
}

impl TransformRequest {
    /// The Lambda event JSON: `{"invocationId","deliveryStreamArn","sourceKinesisStreamArn"?,
    /// "region","records":[{"recordId","approximateArrivalTimestamp","data",
    /// "kinesisRecordMetadata"?}]}`. Timestamps are numbers (epoch ms) and
    /// `subsequenceNumber` an integer (what the Rust `aws_lambda_events` types require).
    pub fn to_event_json(&self) -> serde_json::Value {
        use base64::Engine as _;
        let records: Vec<serde_json::Value> = self
            .records
            .iter()
            .map(|r| {
                let mut rec = serde_json::json!({
                    "recordId": r.record_id,
                    "approximateArrivalTimestamp": r.approximate_arrival_ms,
                    "data": base64::engine::general_purpose::STANDARD.encode(&r.data),
                });
                if let Some(k) = &r.kinesis {
                    rec["kinesisRecordMetadata"] = serde_json::json!({
                        "shardId": k.shard_id,
                        "partitionKey": k.partition_key,
                        "approximateArrivalTimestamp": k.approximate_arrival_ms,
                        "sequenceNumber": k.sequence_number,
                        "subsequenceNumber": k.subsequence_number,
                    });
                }
                rec
            })
            .collect();
        let mut event = serde_json::json!({
            "invocationId": self.invocation_id,
            "deliveryStreamArn": self.delivery_stream_arn,
        });
        if let Some(arn) = &self.source_kinesis_stream_arn {
            event["sourceKinesisStreamArn"] = serde_json::Value::String(arn.clone());
        }
        event["region"] = serde_json::Value::String(self.region.clone());
        event["records"] = serde_json::Value::Array(records);
        event
    }
}

/// What the function did with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransformResult {
    /// `Ok`: deliver `data` (a success).
    Ok,
    /// `Dropped`: deliberately not delivered (a success).
    Dropped,
    /// `ProcessingFailed`: goes to the error output (`processing-failed`).
    ProcessingFailed,
}

impl TransformResult {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TransformResult::Ok => "Ok",
            TransformResult::Dropped => "Dropped",
            TransformResult::ProcessingFailed => "ProcessingFailed",
        }
    }

    /// Parses the wire name (case-sensitive).
    pub fn parse(s: &str) -> Option<TransformResult> {
        Some(match s {
            "Ok" => TransformResult::Ok,
            "Dropped" => TransformResult::Dropped,
            "ProcessingFailed" => TransformResult::ProcessingFailed,
            _ => return None,
        })
    }
}

/// One record of the function's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformedRecord {
    /// The input record's id.
    pub record_id: String,
    /// Outcome.
    pub result: TransformResult,
    /// Transformed payload (empty when absent, as on `Dropped`/`ProcessingFailed`).
    pub data: Bytes,
    /// `metadata.partitionKeys` (for `!{partitionKeyFromLambda:…}`).
    pub partition_keys: BTreeMap<String, String>,
}

/// The function's answer: `{"records":[{"recordId","result","data"?,"metadata"?:{"partitionKeys"}}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransformResponse {
    /// One per input record.
    pub records: Vec<TransformedRecord>,
}

impl TransformResponse {
    /// Parses the function's response JSON leniently (`data` and `metadata` may be absent;
    /// they are on `Dropped`/`ProcessingFailed` from non-Rust code) but rejects a record
    /// without a `recordId` or with an unknown `result`, and bad base64. Matching the ids
    /// against the request is the caller's job (see [`RecordTransformer`]).
    pub fn from_json(body: &[u8]) -> Result<TransformResponse, String> {
        use base64::Engine as _;
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("the response is not JSON: {e}"))?;
        let records = v
            .get("records")
            .and_then(serde_json::Value::as_array)
            .ok_or("the response has no records array")?;
        let mut out = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let record_id = r
                .get("recordId")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| format!("record {i} has no recordId"))?
                .to_string();
            let result = r
                .get("result")
                .and_then(serde_json::Value::as_str)
                .and_then(TransformResult::parse)
                .ok_or_else(|| format!("record {record_id} has no valid result (Ok, Dropped or ProcessingFailed)"))?;
            let data = match r.get("data") {
                None | Some(serde_json::Value::Null) => Bytes::new(),
                Some(serde_json::Value::String(s)) => Bytes::from(
                    base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .map_err(|e| format!("record {record_id} has invalid base64 data: {e}"))?,
                ),
                Some(_) => return Err(format!("record {record_id} has non-string data")),
            };
            let mut partition_keys = BTreeMap::new();
            if let Some(keys) = r
                .get("metadata")
                .and_then(|m| m.get("partitionKeys"))
                .and_then(serde_json::Value::as_object)
            {
                for (k, v) in keys {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    partition_keys.insert(k.clone(), v);
                }
            }
            out.push(TransformedRecord {
                record_id,
                result,
                data,
                partition_keys,
            });
        }
        Ok(TransformResponse { records: out })
    }
}

/// Runs the delivery stream's Lambda processor (implemented over the functions engine,
/// invoking synchronously — `RequestResponse` — with the processor's role, by default the
/// destination's). Installed with [`crate::Delivery::set_transformer`].
///
/// Contract (reference §2.5), as the engine uses it:
/// * the request is at most 6 MB and carries at most `BufferSizeInMBs` of record data (the
///   engine splits batches); `recordId`s are unique within a request; the function's timeout
///   is at most 5 minutes;
/// * every input `recordId` must come back exactly once: a missing id fails that record
///   (`Lambda.MissingRecordId`), a duplicated id fails the records that carry it
///   (`Lambda.DuplicatedRecordId`), unknown ids are ignored;
/// * `Ok` and `Dropped` are successes (`Dropped` records are not delivered, but count as
///   processed); `ProcessingFailed` records (`Lambda.ProcessingFailedStatus`) go to the error
///   output with error-output-type `processing-failed` as error-record JSON lines
///   (`attemptsMade`, `arrivalTimestamp`, `errorCode`, `errorMessage`,
///   `attemptEndingTimestamp`, `rawData` (the ORIGINAL data), `lambdaArn`);
/// * an `Err` (invocation error, function error, timeout, throttle, a response that
///   [`TransformResponse::from_json`] rejects) is retried `NumberOfRetries` times (default
///   3, with backoff), then the whole batch goes to the error output with the error's code:
///   [`PortError::AccessDenied`] → `Lambda.InvokeAccessDenied`, [`PortError::NotFound`] →
///   `Lambda.ResourceNotFound`, [`PortError::Other`] → `Lambda.FunctionError`, unless its
///   message starts with an AWS code and a colon (`"Lambda.JsonProcessingException: …"`,
///   `"Lambda.InvokeLimitExceeded: …"`, `"Lambda.FunctionTimedOut: …"`): then that code and
///   the rest of the message are used (see [`lambda_error_code`]);
/// * `partition_keys` feed `!{partitionKeyFromLambda:<key>}` in the Prefix.
#[async_trait::async_trait]
pub trait RecordTransformer: Send + Sync + 'static {
    /// Invokes `function_arn` (acting as `role_arn`) with `event` and returns its parsed
    /// answer.
    async fn transform(
        &self,
        function_arn: &str,
        role_arn: &str,
        event: TransformRequest,
    ) -> Result<TransformResponse, PortError>;
}

/// The error-record `errorCode` and `errorMessage` of a failed invocation (see
/// [`RecordTransformer`]): a [`PortError::Other`] whose message starts with `Lambda.<Code>:`
/// gives that code.
pub fn lambda_error_code(e: &PortError) -> (String, String) {
    match e {
        PortError::AccessDenied(_) => (
            "Lambda.InvokeAccessDenied".into(),
            "Access was denied. Ensure that the access policy allows access to the Lambda function.".into(),
        ),
        PortError::NotFound(m) => (
            "Lambda.ResourceNotFound".into(),
            format!("The Lambda function was not found. {m}").trim_end().to_string(),
        ),
        PortError::Other(m) => {
            if let Some((code, rest)) = m.split_once(':')
                && let Some(name) = code.strip_prefix("Lambda.")
                && !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return (code.to_string(), rest.trim().to_string());
            }
            let msg = "The Lambda function was successfully invoked but it returned an error result.";
            if m.is_empty() {
                ("Lambda.FunctionError".into(), msg.into())
            } else {
                ("Lambda.FunctionError".into(), format!("{msg} {m}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_request_is_the_lambda_event_shape() {
        let req = TransformRequest {
            invocation_id: "inv-1".into(),
            delivery_stream_arn: "arn:aws:firehose:us-east-1:123456789012:deliverystream/s".into(),
            source_kinesis_stream_arn: Some("arn:aws:kinesis:us-east-1:123456789012:stream/x".into()),
            region: "us-east-1".into(),
            records: vec![TransformInputRecord {
                record_id: "r1".into(),
                approximate_arrival_ms: 1_507_217_624_302,
                data: Bytes::from_static(b"Hello"),
                kinesis: Some(KinesisRecordMetadata {
                    shard_id: "shardId-000000000000".into(),
                    partition_key: "k".into(),
                    approximate_arrival_ms: 1_507_217_624_302,
                    sequence_number: "4954".into(),
                    subsequence_number: 0,
                }),
            }],
        };
        let expected = serde_json::json!({
            "invocationId": "inv-1",
            "deliveryStreamArn": "arn:aws:firehose:us-east-1:123456789012:deliverystream/s",
            "sourceKinesisStreamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/x",
            "region": "us-east-1",
            "records": [{
                "recordId": "r1",
                "approximateArrivalTimestamp": 1_507_217_624_302_i64,
                "data": "SGVsbG8=",
                "kinesisRecordMetadata": {
                    "shardId": "shardId-000000000000",
                    "partitionKey": "k",
                    "approximateArrivalTimestamp": 1_507_217_624_302_i64,
                    "sequenceNumber": "4954",
                    "subsequenceNumber": 0
                }
            }]
        });
        let event = req.to_event_json();
        assert_eq!(event, expected);
        let rec = &event["records"][0];
        assert!(rec["approximateArrivalTimestamp"].is_i64());
        assert!(rec["kinesisRecordMetadata"]["approximateArrivalTimestamp"].is_i64());
        assert!(rec["kinesisRecordMetadata"]["subsequenceNumber"].is_i64());

        // DirectPut: no source ARN, no Kinesis metadata.
        let mut direct = req;
        direct.source_kinesis_stream_arn = None;
        direct.records[0].kinesis = None;
        let event = direct.to_event_json();
        assert!(event.get("sourceKinesisStreamArn").is_none());
        assert!(event["records"][0].get("kinesisRecordMetadata").is_none());
        assert_eq!(event["region"], "us-east-1");
    }

    #[test]
    fn invocation_errors_map_to_lambda_error_codes() {
        let code = |e: PortError| lambda_error_code(&e);
        assert_eq!(code(PortError::AccessDenied("x".into())).0, "Lambda.InvokeAccessDenied");
        assert_eq!(code(PortError::NotFound("f".into())).0, "Lambda.ResourceNotFound");
        let (c, m) = code(PortError::Other("Unhandled: boom".into()));
        assert_eq!(c, "Lambda.FunctionError");
        assert!(m.ends_with("Unhandled: boom"), "{m}");
        let (c, m) = code(PortError::Other("Lambda.JsonProcessingException: bad answer".into()));
        assert_eq!(
            (c.as_str(), m.as_str()),
            ("Lambda.JsonProcessingException", "bad answer")
        );
        assert_eq!(code(PortError::Other("Lambda.: x".into())).0, "Lambda.FunctionError");
        assert_eq!(code(PortError::Other(String::new())).0, "Lambda.FunctionError");
    }

    #[test]
    fn transform_response_parses_leniently_and_rejects_a_missing_record_id() {
        let body = br#"{"records":[
            {"recordId":"r1","result":"Ok","data":"SGk=","metadata":{"partitionKeys":{"customer":"7","n":3}}},
            {"recordId":"r2","result":"Dropped"},
            {"recordId":"r3","result":"ProcessingFailed","data":null}
        ]}"#;
        let resp = TransformResponse::from_json(body).expect("parse");
        assert_eq!(resp.records.len(), 3);
        assert_eq!(resp.records[0].record_id, "r1");
        assert_eq!(resp.records[0].result, TransformResult::Ok);
        assert_eq!(resp.records[0].data, Bytes::from_static(b"Hi"));
        assert_eq!(
            resp.records[0].partition_keys.get("customer").map(String::as_str),
            Some("7")
        );
        assert_eq!(resp.records[0].partition_keys.get("n").map(String::as_str), Some("3"));
        assert_eq!(resp.records[1].result, TransformResult::Dropped);
        assert!(resp.records[1].data.is_empty());
        assert_eq!(resp.records[2].result, TransformResult::ProcessingFailed);

        let missing = br#"{"records":[{"result":"Ok","data":"SGk="}]}"#;
        assert!(TransformResponse::from_json(missing).is_err_and(|e| e.contains("recordId")));
        assert!(TransformResponse::from_json(br#"{"records":[{"recordId":"r","result":"Maybe"}]}"#).is_err());
        assert!(TransformResponse::from_json(br#"{"records":[{"recordId":"r","result":"Ok","data":"!!"}]}"#).is_err());
        assert!(TransformResponse::from_json(b"{}").is_err());
        assert!(TransformResponse::from_json(b"not json").is_err());
    }
}
