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
