//! The Amazon Data Firehose adapter: awsJson1.1 requests with
//! `X-Amz-Target: Firehose_20150804.<Operation>` become one call on
//! [`kd_delivery::Delivery`], and its answer or error becomes the wire reply. It sits between
//! the `edge` (which has already authenticated the caller and chosen this service) and the
//! delivery engine. Modeled constraints are checked here (ValidationException), and so are
//! the destination rules AWS answers with InvalidArgumentException (one destination, buffering
//! hints, prefix expressions, processors) and the trust of the roles a delivery stream will
//! act with; delivery semantics are the engine's.
//!
//! # Processors
//!
//! An enabled `ProcessingConfiguration` may hold one `MetadataExtraction` processor (dynamic
//! partitioning queries) and one `Lambda` processor ([`kd_delivery::LambdaProcessor`]:
//! `LambdaArn` required, `NumberOfRetries` 0–300, `RoleArn` — which must trust Firehose like
//! the destination's role —, `BufferSizeInMBs` 0.2–3, `BufferIntervalInSeconds` 0–900);
//! other processor types are refused. `!{partitionKeyFromLambda:<key>}` needs dynamic
//! partitioning and the Lambda processor. DescribeDeliveryStream shows the Lambda
//! processor's defaulted parameters, as AWS does.
//!
//! # Record format conversion (JSON → Parquet) and the `kinesis-data:schema` tag
//!
//! `DataFormatConversionConfiguration` is supported with an `OpenXJsonSerDe` or
//! `HiveJsonSerDe` deserializer and a `ParquetSerDe` serializer (`Compression` `SNAPPY`, the
//! default, `GZIP` or `UNCOMPRESSED`); `OrcSerDe` is refused. As on AWS, `CompressionFormat`
//! must then be `UNCOMPRESSED`, and `BufferingHints.SizeInMBs` defaults to 128 and must be at
//! least 64. AWS reads the columns from the Glue table named by `SchemaConfiguration`; Glue
//! does not exist in kinesis-data yet, and the SDK shape has no room for columns, so the
//! columns come from a **kinesis-data extension**: the delivery stream tag
//! `kinesis-data:schema`, whose value lists the columns in order as `name:type,name:type`
//! (types `string`, `int`, `bigint`, `double`, `float`, `boolean`, `timestamp`, `date`;
//! e.g. `id:int,name:string,ts:timestamp`). AWS's tag key pattern has no `:`; this one key
//! is exempt from it here, and the value is bounded by the 256-character tag value limit. The tag is read when the destination is created
//! or updated (CreateDeliveryStream's `Tags`, or the stream's tags at UpdateDestination);
//! without it the request fails with InvalidArgumentException ("Glue table <db>.<table> not
//! found; …"). The converted objects are Parquet files with the extension `.parquet`
//! (`FileExtension` still overrides); records that do not fit the schema go to the error
//! output under `format-conversion-failed`. The conversion rules are in
//! `kd_delivery::convert`.

mod dto;
pub mod shapes;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kd_delivery::{
    ColumnType, Compression, DEFAULT_LAMBDA_BUFFER_SECS, Delivery, DeliveryStreamInfo, DeliveryStreamSpec,
    DynamicPartitioning, Error, FormatConversion, LambdaProcessor, MAX_LAMBDA_RETRIES, ParquetCompression,
    S3Destination, Scope, Source, Status,
};
use kd_iam::store::IamStore;
use kd_wire::json::{CborShape, Encoding, decode, error_response, ok_response};
use kd_wire::validate::Validator;
use kd_wire::{RequestContext, ServiceError};
use serde::Serialize;
use serde_json::{Value, json};

use crate::dto::*;
use crate::shapes::Expr;

/// The delivery stream tag that gives the columns of a format conversion (until Glue lands):
/// `name:type,name:type`.
pub const SCHEMA_TAG: &str = "kinesis-data:schema";

/// The `X-Amz-Target` prefix of Firehose.
pub const TARGET_PREFIX: &str = "Firehose_20150804";

/// Firehose speaks JSON only; no member changes form.
const SHAPE: CborShape = CborShape {
    blob_fields: &[],
    timestamp_fields: &[],
};

/// Largest record payload (1,000 KiB).
pub const MAX_RECORD_BYTES: usize = 1_024_000;
/// Largest PutRecordBatch payload (4 MiB).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// The one destination's id.
pub const DESTINATION_ID: &str = "destinationId-000000000001";

/// Operations AWS has that kinesis-data does not implement yet (answered clearly).
const UNSUPPORTED: &[&str] = &["StartDeliveryStreamEncryption", "StopDeliveryStreamEncryption"];

/// `ProcessorParameterName` values.
const PARAMETER_NAMES: &[&str] = &[
    "LambdaArn",
    "NumberOfRetries",
    "MetadataExtractionQuery",
    "JsonParsingEngine",
    "RoleArn",
    "BufferSizeInMBs",
    "BufferIntervalInSeconds",
    "SubRecordType",
    "Delimiter",
    "CompressionFormat",
    "DataMessageExtraction",
];

/// The parameters a `Lambda` processor takes.
const LAMBDA_PARAMETERS: &[&str] = &[
    "LambdaArn",
    "NumberOfRetries",
    "RoleArn",
    "BufferSizeInMBs",
    "BufferIntervalInSeconds",
];

/// Destination members other than S3 (create and update forms): not supported here.
const OTHER_DESTINATIONS: &[&str] = &[
    "Redshift",
    "Elasticsearch",
    "Amazonopensearchservice",
    "AmazonOpenSearchServerless",
    "Splunk",
    "HttpEndpoint",
    "Snowflake",
    "Iceberg",
];

/// The adapter.
#[derive(Debug, Clone)]
pub struct FirehoseApi {
    delivery: Arc<Delivery>,
    iam: Arc<IamStore>,
    enforce_trust: bool,
}

type Reply = Result<http::Response<Bytes>, ServiceError>;

impl FirehoseApi {
    /// An adapter over `delivery`. Roles named in CreateDeliveryStream/UpdateDestination must
    /// exist in `iam` and trust `firehose.amazonaws.com`, unless `enforce_trust` is off
    /// (`--iam off`).
    pub fn new(delivery: Arc<Delivery>, iam: Arc<IamStore>, enforce_trust: bool) -> Self {
        Self {
            delivery,
            iam,
            enforce_trust,
        }
    }

    /// Handles one request whose `X-Amz-Target` named `operation` (JSON body).
    pub async fn handle(&self, ctx: &RequestContext, operation: &str, body: &[u8]) -> http::Response<Bytes> {
        let scope = Scope {
            account: ctx.account_id.clone(),
            region: ctx.region.clone(),
        };
        let call = Call {
            api: self,
            ctx,
            operation,
            scope: &scope,
            body,
        };
        let result = match operation {
            "CreateDeliveryStream" => call.create().await,
            "DeleteDeliveryStream" => call.delete().await,
            "DescribeDeliveryStream" => call.describe(),
            "ListDeliveryStreams" => call.list(),
            "UpdateDestination" => call.update_destination().await,
            "PutRecord" => call.put_record().await,
            "PutRecordBatch" => call.put_record_batch().await,
            "TagDeliveryStream" => call.tag().await,
            "UntagDeliveryStream" => call.untag().await,
            "ListTagsForDeliveryStream" => call.list_tags(),
            op if UNSUPPORTED.contains(&op) => Err(ServiceError::client(
                "UnknownOperationException",
                format!("Operation {op} is not supported by kinesis-data yet."),
            )),
            _ => Err(ServiceError::client("UnknownOperationException", "")),
        };
        result.unwrap_or_else(|e| error_response(Encoding::Json, &e, &ctx.request_id))
    }
}

/// Maps every engine error to its AWS code and status.
pub fn to_service_error(e: Error) -> ServiceError {
    let msg = e.to_string();
    match e {
        Error::NotFound { .. } => ServiceError::client("ResourceNotFoundException", msg),
        Error::InUse(_) => ServiceError::client("ResourceInUseException", msg),
        Error::InvalidArgument(_) => ServiceError::client("InvalidArgumentException", msg),
        Error::LimitExceeded(_) => ServiceError::client("LimitExceededException", msg),
        Error::ConcurrentModification(_) => ServiceError::client("ConcurrentModificationException", msg),
        Error::Storage(inner) => {
            tracing::error!(error = %inner, "delivery storage failure; the request is not acknowledged");
            internal()
        }
        Error::Internal(detail) => {
            tracing::error!(%detail, "internal error in the delivery engine");
            internal()
        }
    }
}

fn internal() -> ServiceError {
    ServiceError::with_status(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "InternalFailure",
        "Internal Service Failure",
    )
}

fn invalid(msg: impl Into<String>) -> ServiceError {
    ServiceError::client("InvalidArgumentException", msg)
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn check_name(v: &mut Validator, name: &Option<String>, field: &str) {
    v.required(name, field);
    v.name(name.as_deref(), field, 1, 64);
}

fn check_tags(v: &mut Validator, tags: &[TagDto], field: &str) {
    if tags.is_empty() || tags.len() > 50 {
        v.fail_no_value(field, "Member must have length between 1 and 50");
    }
    for (i, t) in tags.iter().enumerate() {
        let f = format!("{field}.{}.member.key", i + 1);
        v.required(&t.key, &f);
        v.length(t.key.as_deref(), &f, 1, 128);
        // AWS's key pattern has no ':'; the kinesis-data extension key is let through.
        v.pattern(
            t.key.as_deref().filter(|k| *k != SCHEMA_TAG),
            &f,
            shapes::is_tag_key,
            "^(?!aws:)[\\p{L}\\p{Z}\\p{N}_.\\/=+\\-@%]*$",
        );
        v.length(t.value.as_deref(), &format!("{field}.{}.member.value", i + 1), 0, 256);
    }
}

fn tag_map(tags: Vec<TagDto>) -> BTreeMap<String, String> {
    tags.into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect()
}

/// Modeled checks of an S3 destination (create or update form) at `field`.
fn check_destination(v: &mut Validator, d: &S3DestinationDto, field: &str, required: bool) {
    let f = |m: &str| format!("{field}.{m}");
    if required {
        v.required(&d.role_arn, &f("roleARN"));
        v.required(&d.bucket_arn, &f("bucketARN"));
    }
    v.length(d.role_arn.as_deref(), &f("roleARN"), 1, 512);
    v.pattern(
        d.role_arn.as_deref(),
        &f("roleARN"),
        shapes::is_role_arn,
        shapes::ROLE_ARN_RE,
    );
    v.length(d.bucket_arn.as_deref(), &f("bucketARN"), 1, 2048);
    v.pattern(
        d.bucket_arn.as_deref(),
        &f("bucketARN"),
        |a| shapes::bucket_of(a).is_some(),
        shapes::BUCKET_ARN_RE,
    );
    v.length(d.prefix.as_deref(), &f("prefix"), 0, 1024);
    v.length(d.error_output_prefix.as_deref(), &f("errorOutputPrefix"), 0, 1024);
    if let Some(h) = &d.buffering_hints {
        v.range(h.size_in_mbs, &f("bufferingHints.sizeInMBs"), 1, 128);
        v.range(h.interval_in_seconds, &f("bufferingHints.intervalInSeconds"), 0, 900);
    }
    v.one_of(
        d.compression_format.as_deref(),
        &f("compressionFormat"),
        &["UNCOMPRESSED", "GZIP", "ZIP", "Snappy", "HADOOP_SNAPPY"],
    );
    v.length(d.file_extension.as_deref(), &f("fileExtension"), 0, 128);
    v.pattern(
        d.file_extension.as_deref(),
        &f("fileExtension"),
        shapes::is_file_extension,
        shapes::FILE_EXTENSION_RE,
    );
    v.length(d.custom_time_zone.as_deref(), &f("customTimeZone"), 0, 50);
    v.one_of(
        d.s3_backup_mode.as_deref(),
        &f("s3BackupMode"),
        &["Disabled", "Enabled"],
    );
    if let Some(r) = d
        .dynamic_partitioning_configuration
        .as_ref()
        .and_then(|p| p.retry_options.as_ref())
    {
        v.range(
            r.duration_in_seconds,
            &f("dynamicPartitioningConfiguration.retryOptions.durationInSeconds"),
            0,
            7200,
        );
    }
    if let Some(p) = &d.processing_configuration {
        for (i, proc) in p.processors.iter().flatten().enumerate() {
            let pf = f(&format!("processingConfiguration.processors.{}.member.type", i + 1));
            for (j, param) in proc.parameters.iter().flatten().enumerate() {
                let base = format!(
                    "processingConfiguration.processors.{}.member.parameters.{}.member",
                    i + 1,
                    j + 1
                );
                let nf = f(&format!("{base}.parameterName"));
                let vf = f(&format!("{base}.parameterValue"));
                v.required(&param.parameter_name, &nf);
                v.one_of(param.parameter_name.as_deref(), &nf, PARAMETER_NAMES);
                v.required(&param.parameter_value, &vf);
                v.length(param.parameter_value.as_deref(), &vf, 1, 5120);
                v.pattern(
                    param.parameter_value.as_deref(),
                    &vf,
                    |s| !s.trim().is_empty(),
                    "^(?!\\s*$).+",
                );
            }
            v.required(&proc.r#type, &pf);
            v.one_of(
                proc.r#type.as_deref(),
                &pf,
                &[
                    "RecordDeAggregation",
                    "Decompression",
                    "CloudWatchLogProcessing",
                    "Lambda",
                    "MetadataExtraction",
                    "AppendDelimiterToRecord",
                ],
            );
        }
    }
}

/// What an enabled `ProcessingConfiguration` asks for.
#[derive(Debug, Default)]
struct Processing {
    /// The `MetadataExtraction` processor's queries.
    queries: Option<BTreeMap<String, String>>,
    /// The `Lambda` processor.
    lambda: Option<LambdaProcessor>,
}

/// The processors of an enabled `ProcessingConfiguration`, refusing the ones kinesis-data
/// does not run.
fn processors(d: &S3DestinationDto) -> Result<Processing, ServiceError> {
    let mut out = Processing::default();
    let Some(p) = &d.processing_configuration else {
        return Ok(out);
    };
    if p.enabled != Some(true) {
        return Ok(out);
    }
    for proc in p.processors.iter().flatten() {
        let ty = proc.r#type.as_deref().unwrap_or_default();
        let mut params: BTreeMap<&str, &str> = BTreeMap::new();
        for p in proc.parameters.iter().flatten() {
            let (Some(name), Some(value)) = (p.parameter_name.as_deref(), p.parameter_value.as_deref()) else {
                continue;
            };
            if params.insert(name, value).is_some() {
                return Err(invalid(format!(
                    "Duplicate ParameterName {name} in the {ty} processor."
                )));
            }
        }
        match ty {
            "MetadataExtraction" => {
                if let Some(engine) = params.get("JsonParsingEngine")
                    && *engine != "JQ-1.6"
                {
                    return Err(invalid(format!(
                        "JsonParsingEngine {engine} is not supported; use JQ-1.6."
                    )));
                }
                let q = params.get("MetadataExtractionQuery").ok_or_else(|| {
                    invalid("MetadataExtraction processor requires the MetadataExtractionQuery parameter.")
                })?;
                out.queries = Some(shapes::metadata_queries(q).map_err(invalid)?);
            }
            "Lambda" => {
                if out.lambda.is_some() {
                    return Err(invalid("Only one Lambda processor is supported per destination."));
                }
                out.lambda = Some(lambda_processor(&params)?);
            }
            other => {
                return Err(invalid(format!(
                    "Processor type {other} is not supported by kinesis-data yet."
                )));
            }
        }
    }
    Ok(out)
}

/// A `Lambda` processor from its parameters, with AWS's defaults for the ones not given.
fn lambda_processor(params: &BTreeMap<&str, &str>) -> Result<LambdaProcessor, ServiceError> {
    if let Some(k) = params.keys().find(|k| !LAMBDA_PARAMETERS.contains(k)) {
        return Err(invalid(format!(
            "Parameter {k} is not valid for a processor of type Lambda; use LambdaArn, NumberOfRetries, RoleArn, BufferSizeInMBs or BufferIntervalInSeconds."
        )));
    }
    let arn = params
        .get("LambdaArn")
        .ok_or_else(|| invalid("Lambda processor requires the LambdaArn parameter."))?;
    if !shapes::is_lambda_arn(arn) {
        return Err(invalid(format!(
            "LambdaArn {arn} is not a valid Lambda function ARN (arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>])."
        )));
    }
    let mut p = LambdaProcessor::new(*arn);
    if let Some(v) = params.get("NumberOfRetries") {
        p.number_of_retries = v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= MAX_LAMBDA_RETRIES)
            .ok_or_else(|| {
                invalid(format!(
                    "NumberOfRetries {v} is not valid; use an integer from 0 to {MAX_LAMBDA_RETRIES}."
                ))
            })?;
    }
    if let Some(v) = params.get("RoleArn") {
        if !shapes::is_role_arn(v) {
            return Err(invalid(format!("RoleArn {v} is not a valid role ARN.")));
        }
        p.role_arn = Some((*v).to_owned());
    }
    if let Some(v) = params.get("BufferSizeInMBs") {
        let mb = v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|mb| mb.is_finite() && (0.2..=3.0).contains(mb))
            .ok_or_else(|| invalid(format!("BufferSizeInMBs {v} is not valid; use a number from 0.2 to 3.")))?;
        p.buffer_size_bytes = (mb * 1024.0 * 1024.0).round() as u64;
    }
    if let Some(v) = params.get("BufferIntervalInSeconds") {
        p.buffer_interval_secs = v.trim().parse::<u32>().ok().filter(|s| *s <= 900).ok_or_else(|| {
            invalid(format!(
                "BufferIntervalInSeconds {v} is not valid; use an integer from 0 to 900."
            ))
        })?;
    }
    Ok(p)
}

/// Parses the [`SCHEMA_TAG`] value: `name:type,name:type`.
fn parse_schema_tag(value: &str) -> Result<Vec<(String, ColumnType)>, ServiceError> {
    let mut columns: Vec<(String, ColumnType)> = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, ty)) = part.split_once(':') else {
            return Err(invalid(format!(
                "The {SCHEMA_TAG} tag entry '{part}' is not name:type."
            )));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(invalid(format!(
                "The {SCHEMA_TAG} tag entry '{part}' has no column name."
            )));
        }
        let ty = ColumnType::parse(ty).ok_or_else(|| {
            invalid(format!(
                "The {SCHEMA_TAG} tag entry '{part}' has an unsupported type; use string, int, bigint, double, float, boolean, timestamp or date."
            ))
        })?;
        if columns.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(invalid(format!("The {SCHEMA_TAG} tag names column '{name}' twice.")));
        }
        columns.push((name.to_owned(), ty));
    }
    if columns.is_empty() {
        return Err(invalid(format!("The {SCHEMA_TAG} tag lists no columns.")));
    }
    Ok(columns)
}

/// The enabled `DataFormatConversionConfiguration` as the engine's [`FormatConversion`]
/// (`None` when absent or disabled).
fn format_conversion(
    d: &S3DestinationDto,
    tags: &BTreeMap<String, String>,
) -> Result<Option<FormatConversion>, ServiceError> {
    let Some(c) = &d.data_format_conversion_configuration else {
        return Ok(None);
    };
    if c.enabled == Some(false) {
        return Ok(None);
    }
    let schema = c
        .schema_configuration
        .as_ref()
        .ok_or_else(|| invalid("SchemaConfiguration is required when DataFormatConversionConfiguration is enabled."))?;
    let (Some(db), Some(table)) = (
        schema.database_name.as_deref().filter(|s| !s.is_empty()),
        schema.table_name.as_deref().filter(|s| !s.is_empty()),
    ) else {
        return Err(invalid(
            "SchemaConfiguration must give DatabaseName and TableName when DataFormatConversionConfiguration is enabled.",
        ));
    };
    if schema.role_arn.as_deref().is_none_or(str::is_empty) {
        return Err(invalid(
            "SchemaConfiguration.RoleARN is required when DataFormatConversionConfiguration is enabled.",
        ));
    }
    let deserializer = c
        .input_format_configuration
        .as_ref()
        .and_then(|i| i.deserializer.as_ref())
        .ok_or_else(|| {
            invalid(
                "InputFormatConfiguration.Deserializer is required when DataFormatConversionConfiguration is enabled.",
            )
        })?;
    match (&deserializer.open_x_json_ser_de, &deserializer.hive_json_ser_de) {
        (Some(_), None) | (None, Some(_)) => {}
        _ => {
            return Err(invalid(
                "Deserializer must specify exactly one of OpenXJsonSerDe and HiveJsonSerDe.",
            ));
        }
    }
    let serializer = c
        .output_format_configuration
        .as_ref()
        .and_then(|o| o.serializer.as_ref())
        .ok_or_else(|| {
            invalid(
                "OutputFormatConfiguration.Serializer is required when DataFormatConversionConfiguration is enabled.",
            )
        })?;
    let parquet = match (&serializer.parquet_ser_de, &serializer.orc_ser_de) {
        (Some(p), None) => p,
        (None, Some(_)) => {
            return Err(invalid("OrcSerDe is not supported by kinesis-data; use ParquetSerDe."));
        }
        _ => {
            return Err(invalid(
                "Serializer must specify exactly one of ParquetSerDe and OrcSerDe.",
            ));
        }
    };
    let compression = match parquet.compression.as_deref() {
        None => ParquetCompression::Snappy,
        Some(c) => ParquetCompression::parse(c).ok_or_else(|| {
            invalid(format!(
                "ParquetSerDe Compression {c} is not valid; use SNAPPY, GZIP or UNCOMPRESSED."
            ))
        })?,
    };
    if d.compression_format.as_deref().is_some_and(|c| c != "UNCOMPRESSED") {
        return Err(invalid(
            "CompressionFormat must be UNCOMPRESSED when DataFormatConversionConfiguration is enabled.",
        ));
    }
    let Some(tag) = tags.get(SCHEMA_TAG) else {
        return Err(invalid(format!(
            "Glue table {db}.{table} not found; until Glue lands, give the schema in the {SCHEMA_TAG} tag"
        )));
    };
    Ok(Some(FormatConversion {
        columns: parse_schema_tag(tag)?,
        compression,
    }))
}

/// Turns a checked S3 destination configuration into the engine's [`S3Destination`],
/// applying the rules AWS answers with InvalidArgumentException. `tags` are the delivery
/// stream's (for the [`SCHEMA_TAG`]).
fn build_destination(
    raw: Value,
    extended: bool,
    tags: &BTreeMap<String, String>,
) -> Result<S3Destination, ServiceError> {
    let d: S3DestinationDto = serde_json::from_value(raw.clone())
        .map_err(|e| ServiceError::client("SerializationException", e.to_string()))?;
    let format_conversion = format_conversion(&d, tags)?;
    // With format conversion AWS buffers 128 MiB by default and at least 64 MiB.
    let default_mb = if format_conversion.is_some() { 128 } else { 5 };
    let (size_mb, interval_secs) = match &d.buffering_hints {
        None => (default_mb, 300),
        Some(h) => match (h.size_in_mbs, h.interval_in_seconds) {
            (Some(s), Some(i)) => (s as u32, i as u32),
            (None, None) => (default_mb, 300),
            _ => {
                return Err(invalid(
                    "BufferingHints: specify both SizeInMBs and IntervalInSeconds, or neither.",
                ));
            }
        },
    };
    let compression = match d.compression_format.as_deref() {
        None => Compression::Uncompressed,
        Some(c) => Compression::parse(c).ok_or_else(|| invalid(format!("CompressionFormat {c} is not valid.")))?,
    };
    if format_conversion.is_some() && size_mb < 64 {
        return Err(invalid(
            "BufferingHints.SizeInMBs must be at least 64 when DataFormatConversionConfiguration is enabled.",
        ));
    }
    if d.s3_backup_mode.as_deref() == Some("Enabled") {
        return Err(invalid("S3BackupMode Enabled is not supported by kinesis-data yet."));
    }
    let Processing { queries, lambda } = processors(&d)?;
    let dynamic_partitioning = match &d.dynamic_partitioning_configuration {
        Some(p) if p.enabled == Some(true) => Some(DynamicPartitioning {
            queries: queries.unwrap_or_default(),
            retry_seconds: p
                .retry_options
                .as_ref()
                .and_then(|r| r.duration_in_seconds)
                .unwrap_or(300) as u32,
        }),
        _ => {
            if queries.is_some() {
                return Err(invalid(
                    "MetadataExtraction processors require DynamicPartitioningConfiguration to be enabled.",
                ));
            }
            None
        }
    };
    let prefix = d.prefix.clone().filter(|p| !p.is_empty());
    let error_prefix = d.error_output_prefix.clone().filter(|p| !p.is_empty());
    let exprs = prefix
        .as_deref()
        .map(shapes::expressions)
        .transpose()
        .map_err(invalid)?;
    let exprs = exprs.unwrap_or_default();
    let mut keyed = false;
    for e in &exprs {
        match e {
            Expr::ErrorOutputType => {
                return Err(invalid(
                    "The expression !{firehose:error-output-type} is only allowed in ErrorOutputPrefix.",
                ));
            }
            Expr::FromLambda(_) => {
                if dynamic_partitioning.is_none() {
                    return Err(invalid(
                        "The partitionKeyFromLambda namespace can only be used when dynamic partitioning is enabled.",
                    ));
                }
                if lambda.is_none() {
                    return Err(invalid(
                        "The partitionKeyFromLambda namespace can only be used with an enabled Lambda processor in ProcessingConfiguration.",
                    ));
                }
                keyed = true;
            }
            Expr::FromQuery(k) => {
                let Some(dp) = &dynamic_partitioning else {
                    return Err(invalid(
                        "The partitionKeyFromQuery namespace can only be used when dynamic partitioning is enabled.",
                    ));
                };
                if !dp.queries.contains_key(k) {
                    return Err(invalid(format!(
                        "The partition key {k} in Prefix is not produced by the MetadataExtractionQuery."
                    )));
                }
                keyed = true;
            }
            Expr::Timestamp | Expr::RandomString => {}
        }
    }
    if dynamic_partitioning.is_some() && !keyed {
        return Err(invalid(
            "When dynamic partitioning is enabled, Prefix must contain at least one partitionKeyFromQuery or partitionKeyFromLambda expression.",
        ));
    }
    if !exprs.is_empty() && error_prefix.is_none() {
        return Err(invalid(
            "ErrorOutputPrefix cannot be null or empty when Prefix contains expressions.",
        ));
    }
    if let Some(ep) = &error_prefix {
        let e = shapes::expressions(ep).map_err(invalid)?;
        if e.iter().any(|x| matches!(x, Expr::FromQuery(_) | Expr::FromLambda(_))) {
            return Err(invalid(
                "Partition key expressions are not allowed in ErrorOutputPrefix.",
            ));
        }
        if !e.is_empty() && !e.contains(&Expr::ErrorOutputType) {
            return Err(invalid(
                "ErrorOutputPrefix contains expressions but not the !{firehose:error-output-type} expression.",
            ));
        }
    }
    Ok(S3Destination {
        role_arn: d.role_arn.clone().unwrap_or_default(),
        bucket_arn: d.bucket_arn.clone().unwrap_or_default(),
        prefix,
        error_output_prefix: error_prefix,
        size_mb,
        interval_secs,
        compression,
        file_extension: d.file_extension.clone().filter(|e| !e.is_empty()),
        custom_time_zone: d.custom_time_zone.clone().filter(|z| !z.is_empty()),
        dynamic_partitioning,
        format_conversion,
        processor: lambda,
        raw,
        extended,
    })
}

/// `update` merged over `base`: objects member by member, anything else replaced.
fn merge(base: &mut Value, update: Value) {
    match (base, update) {
        (Value::Object(b), Value::Object(u)) => {
            for (k, v) in u {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, u) => *b = u,
    }
}

fn status_str(s: Status) -> &'static str {
    match s {
        Status::Creating => "CREATING",
        Status::Active => "ACTIVE",
        Status::Deleting => "DELETING",
    }
}

/// The destination's description: what the caller configured, with AWS's defaults filled.
fn describe_destination(d: &S3Destination) -> Value {
    let mut full = match &d.raw {
        Value::Object(m) => Value::Object(m.clone()),
        _ => json!({}),
    };
    let filled = json!({
        "RoleARN": d.role_arn,
        "BucketARN": d.bucket_arn,
        "BufferingHints": {"SizeInMBs": d.size_mb, "IntervalInSeconds": d.interval_secs},
        "CompressionFormat": d.compression.as_str(),
    });
    merge(&mut full, filled);
    if let Value::Object(m) = &mut full {
        m.entry("EncryptionConfiguration")
            .or_insert_with(|| json!({"NoEncryptionConfig": "NoEncryption"}));
        m.entry("CloudWatchLoggingOptions")
            .or_insert_with(|| json!({"Enabled": false}));
        for (k, v) in [("Prefix", &d.prefix), ("ErrorOutputPrefix", &d.error_output_prefix)] {
            match v {
                Some(p) => {
                    m.insert(k.to_owned(), Value::from(p.clone()));
                }
                None => {
                    m.remove(k);
                }
            }
        }
    }
    let plain_keys = [
        "RoleARN",
        "BucketARN",
        "Prefix",
        "ErrorOutputPrefix",
        "BufferingHints",
        "CompressionFormat",
        "EncryptionConfiguration",
        "CloudWatchLoggingOptions",
    ];
    let plain: serde_json::Map<String, Value> = match &full {
        Value::Object(m) => m
            .iter()
            .filter(|(k, _)| plain_keys.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        _ => serde_json::Map::new(),
    };
    let mut out = json!({
        "DestinationId": DESTINATION_ID,
        "S3DestinationDescription": Value::Object(plain),
    });
    if d.extended
        && let (Value::Object(o), Value::Object(mut ext)) = (&mut out, full)
    {
        ext.entry("S3BackupMode").or_insert_with(|| Value::from("Disabled"));
        if let Some(dp) = &d.dynamic_partitioning {
            ext.insert(
                "DynamicPartitioningConfiguration".to_owned(),
                json!({"Enabled": true, "RetryOptions": {"DurationInSeconds": dp.retry_seconds}}),
            );
        }
        if let Some(p) = &d.processor
            && let Some(Value::Array(procs)) = ext
                .get_mut("ProcessingConfiguration")
                .and_then(|c| c.get_mut("Processors"))
        {
            // AWS answers with the Lambda processor's defaulted parameters filled in.
            let defaults = [
                ("NumberOfRetries", p.number_of_retries.to_string()),
                ("RoleArn", d.role_arn.clone()),
                ("BufferSizeInMBs", "1".to_owned()),
                ("BufferIntervalInSeconds", DEFAULT_LAMBDA_BUFFER_SECS.to_string()),
            ];
            for proc in procs
                .iter_mut()
                .filter(|x| x.get("Type").and_then(Value::as_str) == Some("Lambda"))
            {
                let Value::Object(o) = proc else { continue };
                let Value::Array(params) = o.entry("Parameters").or_insert_with(|| json!([])) else {
                    continue;
                };
                for (name, value) in &defaults {
                    if !params
                        .iter()
                        .any(|x| x.get("ParameterName").and_then(Value::as_str) == Some(name))
                    {
                        params.push(json!({"ParameterName": name, "ParameterValue": value}));
                    }
                }
            }
        }
        if let Some(fc) = &d.format_conversion
            && let Some(c) = ext.get_mut("DataFormatConversionConfiguration")
        {
            if let Value::Object(m) = c {
                m.insert("Enabled".to_owned(), Value::from(true));
            }
            if let Some(Value::Object(sc)) = c.get_mut("SchemaConfiguration") {
                sc.entry("VersionId").or_insert_with(|| Value::from("LATEST"));
            }
            if let Some(Value::Object(p)) = c.pointer_mut("/OutputFormatConfiguration/Serializer/ParquetSerDe") {
                p.entry("Compression")
                    .or_insert_with(|| Value::from(fc.compression.as_str()));
            }
        }
        o.insert("ExtendedS3DestinationDescription".to_owned(), Value::Object(ext));
    }
    out
}

fn describe_json(info: &DeliveryStreamInfo) -> Value {
    let mut d = json!({
        "DeliveryStreamName": info.name,
        "DeliveryStreamARN": info.arn,
        "DeliveryStreamStatus": status_str(info.status),
        "DeliveryStreamType": match info.source {
            Source::DirectPut => "DirectPut",
            Source::KinesisStream { .. } => "KinesisStreamAsSource",
        },
        "VersionId": info.version.to_string(),
        "CreateTimestamp": secs(info.created_ms),
        "DeliveryStreamEncryptionConfiguration": {"Status": "DISABLED"},
        "Destinations": [describe_destination(&info.destination)],
        "HasMoreDestinations": false,
    });
    if let Value::Object(m) = &mut d {
        if let Some(u) = info.updated_ms {
            m.insert("LastUpdateTimestamp".to_owned(), Value::from(secs(u)));
        }
        if let Source::KinesisStream { stream_arn, role_arn } = &info.source {
            let mut src = json!({"KinesisStreamARN": stream_arn, "RoleARN": role_arn});
            if let (Some(ms), Value::Object(s)) = (info.delivery_start_ms, &mut src) {
                s.insert("DeliveryStartTimestamp".to_owned(), Value::from(secs(ms)));
            }
            m.insert("Source".to_owned(), json!({"KinesisStreamSourceDescription": src}));
        }
        if let Some(f) = &info.failure {
            m.insert(
                "FailureDescription".to_owned(),
                json!({"Type": f.kind, "Details": f.details}),
            );
        }
    }
    json!({ "DeliveryStreamDescription": d })
}

struct Call<'a> {
    api: &'a FirehoseApi,
    ctx: &'a RequestContext,
    operation: &'a str,
    scope: &'a Scope,
    body: &'a [u8],
}

impl Call<'_> {
    fn input<T: serde::de::DeserializeOwned>(&self) -> Result<T, ServiceError> {
        decode(Encoding::Json, self.body)
    }

    fn ok<T: Serialize>(&self, v: &T) -> Reply {
        Ok(ok_response(Encoding::Json, &SHAPE, v, &self.ctx.request_id))
    }

    fn engine(&self) -> &Delivery {
        &self.api.delivery
    }

    fn arn(&self, name: &str) -> String {
        format!(
            "arn:aws:firehose:{}:{}:deliverystream/{name}",
            self.scope.region, self.scope.account
        )
    }

    /// Authorises `firehose:<Operation>` on `resource` (built only when policies apply).
    fn allow_on(&self, resource: impl FnOnce() -> String) -> Result<(), ServiceError> {
        self.ctx.allow("firehose", self.operation, resource)
    }

    /// Authorises the operation on the named delivery stream.
    fn allow(&self, name: &Option<String>) -> Result<(), ServiceError> {
        self.allow_on(|| self.arn(name.as_deref().unwrap_or_default()))
    }

    /// The role must exist and trust `firehose.amazonaws.com` (skipped with `--iam off`).
    fn check_trust(&self, role_arn: &str, stream_name: &str) -> Result<(), ServiceError> {
        if !self.api.enforce_trust {
            return Ok(());
        }
        let ctx = kd_iam::policy::ConditionContext::new()
            .source_account(&self.scope.account)
            .source_arn(&self.arn(stream_name))
            .with("sts:ExternalId", self.scope.account.clone());
        if self
            .api
            .iam
            .service_may_assume(role_arn, "firehose.amazonaws.com", &ctx)
        {
            return Ok(());
        }
        Err(invalid(format!(
            "Firehose is unable to assume role {role_arn}. Please check the role provided."
        )))
    }

    async fn create(&self) -> Reply {
        let i: CreateInput = self.input()?;
        let mut v = Validator::default();
        check_name(&mut v, &i.delivery_stream_name, "deliveryStreamName");
        v.one_of(
            i.delivery_stream_type.as_deref(),
            "deliveryStreamType",
            &["DirectPut", "KinesisStreamAsSource", "MSKAsSource", "DatabaseAsSource"],
        );
        if let Some(k) = &i.kinesis_stream_source_configuration {
            let f = "kinesisStreamSourceConfiguration";
            v.required(&k.kinesis_stream_arn, &format!("{f}.kinesisStreamARN"));
            v.length(
                k.kinesis_stream_arn.as_deref(),
                &format!("{f}.kinesisStreamARN"),
                1,
                512,
            );
            v.pattern(
                k.kinesis_stream_arn.as_deref(),
                &format!("{f}.kinesisStreamARN"),
                shapes::is_stream_arn,
                shapes::STREAM_ARN_RE,
            );
            v.required(&k.role_arn, &format!("{f}.roleARN"));
            v.length(k.role_arn.as_deref(), &format!("{f}.roleARN"), 1, 512);
            v.pattern(
                k.role_arn.as_deref(),
                &format!("{f}.roleARN"),
                shapes::is_role_arn,
                shapes::ROLE_ARN_RE,
            );
        }
        if let Some(t) = &i.tags {
            check_tags(&mut v, t, "tags");
        }
        let s3 = [
            (
                &i.extended_s3_destination_configuration,
                true,
                "extendedS3DestinationConfiguration",
            ),
            (&i.s3_destination_configuration, false, "s3DestinationConfiguration"),
        ];
        let mut typed = Vec::new();
        for (raw, extended, field) in s3 {
            if let Some(raw) = raw {
                let d: S3DestinationDto = serde_json::from_value(raw.clone())
                    .map_err(|e| ServiceError::client("SerializationException", e.to_string()))?;
                check_destination(&mut v, &d, field, true);
                typed.push((raw.clone(), extended));
            }
        }
        v.finish()?;
        let others = [
            &i.redshift_destination_configuration,
            &i.elasticsearch_destination_configuration,
            &i.amazonopensearchservice_destination_configuration,
            &i.amazon_open_search_serverless_destination_configuration,
            &i.splunk_destination_configuration,
            &i.http_endpoint_destination_configuration,
            &i.snowflake_destination_configuration,
            &i.iceberg_destination_configuration,
        ];
        let other_names: Vec<String> = others
            .iter()
            .zip(OTHER_DESTINATIONS)
            .filter(|(d, _)| d.is_some())
            .map(|(_, n)| format!("{n}DestinationConfiguration"))
            .collect();
        if typed.len() + other_names.len() != 1 {
            return Err(invalid(
                "Exactly one destination configuration is supported for a Firehose",
            ));
        }
        self.allow(&i.delivery_stream_name)?;
        if let Some(n) = other_names.first() {
            return Err(invalid(format!(
                "{n} is not supported by kinesis-data; use ExtendedS3DestinationConfiguration or S3DestinationConfiguration."
            )));
        }
        let name = i.delivery_stream_name.clone().unwrap_or_default();
        let source = match i.delivery_stream_type.as_deref().unwrap_or("DirectPut") {
            "KinesisStreamAsSource" => {
                let k = i.kinesis_stream_source_configuration.as_ref().ok_or_else(|| {
                    invalid("KinesisStreamSourceConfiguration is required when DeliveryStreamType is KinesisStreamAsSource.")
                })?;
                Source::KinesisStream {
                    stream_arn: k.kinesis_stream_arn.clone().unwrap_or_default(),
                    role_arn: k.role_arn.clone().unwrap_or_default(),
                }
            }
            "DirectPut" => {
                if i.kinesis_stream_source_configuration.is_some() {
                    return Err(invalid(
                        "KinesisStreamSourceConfiguration is only allowed when DeliveryStreamType is KinesisStreamAsSource.",
                    ));
                }
                Source::DirectPut
            }
            other => {
                return Err(invalid(format!(
                    "DeliveryStreamType {other} is not supported by kinesis-data."
                )));
            }
        };
        if i.msk_source_configuration.is_some() || i.database_source_configuration.is_some() {
            return Err(invalid(
                "MSKSourceConfiguration and DatabaseSourceConfiguration are not supported by kinesis-data.",
            ));
        }
        if i.delivery_stream_encryption_configuration_input
            .as_ref()
            .and_then(|e| e.get("KeyType"))
            .and_then(Value::as_str)
            == Some("CUSTOMER_MANAGED_CMK")
        {
            return Err(invalid("Customer-managed KMS keys are not supported by kinesis-data."));
        }
        let (raw, extended) = typed.into_iter().next().ok_or_else(internal)?;
        let tags = tag_map(i.tags.unwrap_or_default());
        let destination = build_destination(raw, extended, &tags)?;
        self.check_trust(&destination.role_arn, &name)?;
        if let Some(role) = destination.processor.as_ref().and_then(|p| p.role_arn.as_deref())
            && role != destination.role_arn
        {
            self.check_trust(role, &name)?;
        }
        if let Source::KinesisStream { role_arn, .. } = &source
            && role_arn != &destination.role_arn
        {
            self.check_trust(role_arn, &name)?;
        }
        let arn = self
            .engine()
            .create(
                self.scope,
                DeliveryStreamSpec {
                    name,
                    source,
                    destination,
                    tags,
                },
            )
            .await
            .map_err(to_service_error)?;
        self.ok(&CreateOutput {
            delivery_stream_arn: arn,
        })
    }

    async fn delete(&self) -> Reply {
        let i: DeleteInput = self.input()?;
        let mut v = Validator::default();
        check_name(&mut v, &i.delivery_stream_name, "deliveryStreamName");
        v.finish()?;
        let _ = i.allow_force_delete;
        self.allow(&i.delivery_stream_name)?;
        self.engine()
            .delete(self.scope, i.delivery_stream_name.as_deref().unwrap_or_default())
            .await
            .map_err(to_service_error)?;
        self.ok(&Empty {})
    }

    fn describe(&self) -> Reply {
        let i: DescribeInput = self.input()?;
        let mut v = Validator::default();
        check_name(&mut v, &i.delivery_stream_name, "deliveryStreamName");
        v.range(i.limit, "limit", 1, 10000);
        v.length(
            i.exclusive_start_destination_id.as_deref(),
            "exclusiveStartDestinationId",
            1,
            100,
        );
        v.finish()?;
        self.allow(&i.delivery_stream_name)?;
        let info = self
            .engine()
            .describe(self.scope, i.delivery_stream_name.as_deref().unwrap_or_default())
            .map_err(to_service_error)?;
        let mut out = describe_json(&info);
        if i.exclusive_start_destination_id.is_some()
            && let Some(d) = out.pointer_mut("/DeliveryStreamDescription/Destinations")
        {
            // There is one destination: nothing comes after it.
            *d = json!([]);
        }
        self.ok(&out)
    }

    fn list(&self) -> Reply {
        let i: ListInput = self.input()?;
        let mut v = Validator::default();
        v.range(i.limit, "limit", 1, 10000);
        v.one_of(
            i.delivery_stream_type.as_deref(),
            "deliveryStreamType",
            &["DirectPut", "KinesisStreamAsSource", "MSKAsSource", "DatabaseAsSource"],
        );
        v.name(
            i.exclusive_start_delivery_stream_name.as_deref(),
            "exclusiveStartDeliveryStreamName",
            1,
            64,
        );
        v.finish()?;
        self.allow_on(|| "*".to_owned())?;
        let (names, more) = self.engine().list(
            self.scope,
            i.delivery_stream_type.as_deref(),
            i.exclusive_start_delivery_stream_name.as_deref(),
            i.limit.unwrap_or(10) as usize,
        );
        self.ok(&ListOutput {
            delivery_stream_names: names,
            has_more_delivery_streams: more,
        })
    }

    async fn update_destination(&self) -> Reply {
        let i: UpdateInput = self.input()?;
        let mut v = Validator::default();
        check_name(&mut v, &i.delivery_stream_name, "deliveryStreamName");
        let vf = "currentDeliveryStreamVersionId";
        v.required(&i.current_delivery_stream_version_id, vf);
        v.length(i.current_delivery_stream_version_id.as_deref(), vf, 1, 50);
        v.pattern(
            i.current_delivery_stream_version_id.as_deref(),
            vf,
            |s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()),
            "[0-9]+",
        );
        v.required(&i.destination_id, "destinationId");
        v.length(i.destination_id.as_deref(), "destinationId", 1, 100);
        v.pattern(
            i.destination_id.as_deref(),
            "destinationId",
            |s| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "[a-zA-Z0-9-]+",
        );
        let s3 = [
            (&i.extended_s3_destination_update, true, "extendedS3DestinationUpdate"),
            (&i.s3_destination_update, false, "s3DestinationUpdate"),
        ];
        let mut updates = Vec::new();
        for (raw, extended, field) in s3 {
            if let Some(raw) = raw {
                let d: S3DestinationDto = serde_json::from_value(raw.clone())
                    .map_err(|e| ServiceError::client("SerializationException", e.to_string()))?;
                check_destination(&mut v, &d, field, false);
                updates.push((raw.clone(), extended));
            }
        }
        v.finish()?;
        self.allow(&i.delivery_stream_name)?;
        let others = [
            &i.redshift_destination_update,
            &i.elasticsearch_destination_update,
            &i.amazonopensearchservice_destination_update,
            &i.amazon_open_search_serverless_destination_update,
            &i.splunk_destination_update,
            &i.http_endpoint_destination_update,
            &i.snowflake_destination_update,
            &i.iceberg_destination_update,
        ];
        if let Some((_, n)) = others.iter().zip(OTHER_DESTINATIONS).find(|(d, _)| d.is_some()) {
            return Err(invalid(format!(
                "{n}DestinationUpdate is not supported by kinesis-data; the destination is S3."
            )));
        }
        if updates.len() != 1 {
            return Err(invalid("Exactly one destination update is supported for a Firehose"));
        }
        let name = i.delivery_stream_name.clone().unwrap_or_default();
        let version: u64 = i
            .current_delivery_stream_version_id
            .as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(|_| invalid("CurrentDeliveryStreamVersionId is not a valid version."))?;
        let destination_id = i.destination_id.clone().unwrap_or_default();
        let current = self.engine().describe(self.scope, &name).map_err(to_service_error)?;
        let (update, extended) = updates.into_iter().next().ok_or_else(internal)?;
        let mut merged = current.destination.raw.clone();
        if !merged.is_object() {
            merged = json!({});
        }
        merge(&mut merged, update);
        let destination = build_destination(merged, extended || current.destination.extended, &current.tags)?;
        match (
            &current.destination.dynamic_partitioning,
            &destination.dynamic_partitioning,
        ) {
            (Some(_), None) => {
                return Err(invalid("Dynamic partitioning cannot be disabled once enabled."));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "Dynamic partitioning can only be enabled when the delivery stream is created.",
                ));
            }
            _ => {}
        }
        if destination.role_arn != current.destination.role_arn {
            self.check_trust(&destination.role_arn, &name)?;
        }
        let processor_role = |d: &S3Destination| d.processor.as_ref().and_then(|p| p.role_arn.clone());
        if let Some(role) = processor_role(&destination)
            && Some(&role) != processor_role(&current.destination).as_ref()
            && role != destination.role_arn
        {
            self.check_trust(&role, &name)?;
        }
        self.engine()
            .update_destination(self.scope, &name, version, &destination_id, destination)
            .await
            .map_err(to_service_error)?;
        self.ok(&Empty {})
    }

    async fn put_record(&self) -> Reply {
        let i: PutRecordInput = self.input()?;
        let mut v = Validator::default();
        check_name(&mut v, &i.delivery_stream_name, "deliveryStreamName");
        v.required(&i.record, "record");
        if let Some(r) = &i.record {
            v.required(&r.data, "record.data");
            if r.data.as_ref().is_some_and(|d| d.len() > MAX_RECORD_BYTES) {
                v.fail_no_value(
                    "record.data",
                    &format!("Member must have length less than or equal to {MAX_RECORD_BYTES}"),
                );
            }
        }
        v.finish()?;
        self.allow(&i.delivery_stream_name)?;
        let data = i.record.and_then(|r| r.data).unwrap_or_default();
        let ids = self
            .engine()
            .put_records(
                self.scope,
                i.delivery_stream_name.as_deref().unwrap_or_default(),
                vec![Bytes::from(data)],
            )
            .await
            .map_err(to_service_error)?;
        let record_id = ids.into_iter().next().ok_or_else(internal)?;
        self.ok(&PutRecordOutput {
            record_id,
            encrypted: false,
        })
    }

    async fn put_record_batch(&self) -> Reply {
        let i: PutRecordBatchInput = self.input()?;
        let mut v = Validator::default();
        check_name(&mut v, &i.delivery_stream_name, "deliveryStreamName");
        v.required(&i.records, "records");
        if let Some(rs) = &i.records {
            if rs.is_empty() {
                v.fail_no_value("records", "Member must have length greater than or equal to 1");
            } else if rs.len() > 500 {
                v.fail_no_value("records", "Member must have length less than or equal to 500");
            }
            for (n, r) in rs.iter().enumerate() {
                let f = format!("records.{}.member.data", n + 1);
                v.required(&r.data, &f);
                if r.data.as_ref().is_some_and(|d| d.len() > MAX_RECORD_BYTES) {
                    v.fail_no_value(
                        &f,
                        &format!("Member must have length less than or equal to {MAX_RECORD_BYTES}"),
                    );
                }
            }
        }
        v.finish()?;
        self.allow(&i.delivery_stream_name)?;
        let records: Vec<Bytes> = i
            .records
            .unwrap_or_default()
            .into_iter()
            .map(|r| Bytes::from(r.data.unwrap_or_default()))
            .collect();
        let total: usize = records.iter().map(Bytes::len).sum();
        if total > MAX_BATCH_BYTES {
            return Err(invalid(format!(
                "Records size exceeds 4 MiB limit: the batch holds {total} bytes."
            )));
        }
        let ids = self
            .engine()
            .put_records(
                self.scope,
                i.delivery_stream_name.as_deref().unwrap_or_default(),
                records,
            )
            .await
            .map_err(to_service_error)?;
        self.ok(&PutRecordBatchOutput {
            failed_put_count: 0,
            encrypted: false,
            request_responses: ids.into_iter().map(|record_id| BatchEntryOut { record_id }).collect(),
        })
    }

    async fn tag(&self) -> Reply {
        let i: TagInput = self.input()?;
        let mut v = Validator::default();
        check_name(&mut v, &i.delivery_stream_name, "deliveryStreamName");
        v.required(&i.tags, "tags");
        if let Some(t) = &i.tags {
            check_tags(&mut v, t, "tags");
        }
        v.finish()?;
        self.allow(&i.delivery_stream_name)?;
        self.engine()
            .tag(
                self.scope,
                i.delivery_stream_name.as_deref().unwrap_or_default(),
                tag_map(i.tags.unwrap_or_default()),
            )
            .await
            .map_err(to_service_error)?;
        self.ok(&Empty {})
    }

    async fn untag(&self) -> Reply {
        let i: UntagInput = self.input()?;
        let mut v = Validator::default();
        check_name(&mut v, &i.delivery_stream_name, "deliveryStreamName");
        v.required(&i.tag_keys, "tagKeys");
        if let Some(k) = &i.tag_keys {
            if k.is_empty() || k.len() > 50 {
                v.fail_no_value("tagKeys", "Member must have length between 1 and 50");
            }
            for (n, key) in k.iter().enumerate() {
                v.length(Some(key), &format!("tagKeys.{}.member", n + 1), 1, 128);
            }
        }
        v.finish()?;
        self.allow(&i.delivery_stream_name)?;
        self.engine()
            .untag(
                self.scope,
                i.delivery_stream_name.as_deref().unwrap_or_default(),
                &i.tag_keys.unwrap_or_default(),
            )
            .await
            .map_err(to_service_error)?;
        self.ok(&Empty {})
    }

    fn list_tags(&self) -> Reply {
        let i: ListTagsInput = self.input()?;
        let mut v = Validator::default();
        check_name(&mut v, &i.delivery_stream_name, "deliveryStreamName");
        v.length(i.exclusive_start_tag_key.as_deref(), "exclusiveStartTagKey", 1, 128);
        v.range(i.limit, "limit", 1, 50);
        v.finish()?;
        self.allow(&i.delivery_stream_name)?;
        let tags = self
            .engine()
            .list_tags(self.scope, i.delivery_stream_name.as_deref().unwrap_or_default())
            .map_err(to_service_error)?;
        let limit = i.limit.unwrap_or(50) as usize;
        let after = i.exclusive_start_tag_key.as_deref();
        let mut rest = tags.into_iter().filter(|(k, _)| after.is_none_or(|a| k.as_str() > a));
        let page: Vec<TagOut> = rest
            .by_ref()
            .take(limit)
            .map(|(key, value)| TagOut { key, value })
            .collect();
        let has_more_tags = rest.next().is_some();
        self.ok(&ListTagsOutput {
            tags: page,
            has_more_tags,
        })
    }
}

#[allow(dead_code)]
fn _assert_send(api: &FirehoseApi, ctx: &RequestContext) {
    fn is_send<T: Send>(_: T) {}
    is_send(api.handle(ctx, "x", b""));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(v: Value) -> Result<S3Destination, ServiceError> {
        build_destination(v, true, &BTreeMap::new())
    }

    fn conversion(output: Value) -> Value {
        json!({
            "RoleARN": "arn:aws:iam::000000000000:role/r",
            "BucketARN": "arn:aws:s3:::b",
            "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60},
            "DataFormatConversionConfiguration": {
                "SchemaConfiguration": {"DatabaseName": "db", "TableName": "t", "RoleARN": "arn:aws:iam::000000000000:role/r"},
                "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
                "OutputFormatConfiguration": {"Serializer": output}
            }
        })
    }

    #[test]
    fn format_conversion_rules() {
        let tags = BTreeMap::from([(SCHEMA_TAG.to_owned(), "id:int, name:string,ts:TIMESTAMP".to_owned())]);
        let d = build_destination(
            conversion(json!({"ParquetSerDe": {"Compression": "GZIP"}})),
            true,
            &tags,
        )
        .expect("valid");
        let fc = d.format_conversion.expect("enabled");
        assert_eq!(fc.compression, ParquetCompression::Gzip);
        assert_eq!(
            fc.columns,
            vec![
                ("id".to_owned(), ColumnType::Int),
                ("name".to_owned(), ColumnType::String),
                ("ts".to_owned(), ColumnType::Timestamp)
            ]
        );
        let described = describe_destination(
            &build_destination(conversion(json!({"ParquetSerDe": {}})), true, &tags).expect("valid"),
        );
        assert_eq!(
            described.pointer("/ExtendedS3DestinationDescription/DataFormatConversionConfiguration/OutputFormatConfiguration/Serializer/ParquetSerDe/Compression"),
            Some(&json!("SNAPPY"))
        );
        let e =
            build_destination(conversion(json!({"ParquetSerDe": {}})), true, &BTreeMap::new()).expect_err("no schema");
        assert_eq!(e.code, "InvalidArgumentException");
        assert!(e.message.contains("Glue table db.t not found"), "{}", e.message);
        let e = build_destination(conversion(json!({"OrcSerDe": {}})), true, &tags).expect_err("orc");
        assert!(e.message.contains("OrcSerDe"), "{}", e.message);
        let e = build_destination(conversion(json!({"ParquetSerDe": {"Compression": "LZO"}})), true, &tags)
            .expect_err("lzo");
        assert!(e.message.contains("LZO"), "{}", e.message);
        let mut gz = conversion(json!({"ParquetSerDe": {}}));
        gz["CompressionFormat"] = json!("GZIP");
        let e = build_destination(gz, true, &tags).expect_err("outer compression");
        assert!(e.message.contains("UNCOMPRESSED"), "{}", e.message);
        let mut small = conversion(json!({"ParquetSerDe": {}}));
        small["BufferingHints"] = json!({"SizeInMBs": 5, "IntervalInSeconds": 60});
        let e = build_destination(small, true, &tags).expect_err("small buffer");
        assert!(e.message.contains("64"), "{}", e.message);
        let bad = BTreeMap::from([(SCHEMA_TAG.to_owned(), "id:uuid".to_owned())]);
        let e = build_destination(conversion(json!({"ParquetSerDe": {}})), true, &bad).expect_err("bad type");
        assert!(e.message.contains("unsupported type"), "{}", e.message);
        let mut off = conversion(json!({"OrcSerDe": {}}));
        off["DataFormatConversionConfiguration"]["Enabled"] = json!(false);
        assert!(
            build_destination(off, true, &BTreeMap::new())
                .expect("disabled")
                .format_conversion
                .is_none()
        );
    }

    #[test]
    fn destination_defaults_and_rules() {
        let d =
            dest(json!({"RoleARN": "arn:aws:iam::000000000000:role/r", "BucketARN": "arn:aws:s3:::b"})).expect("valid");
        assert_eq!((d.size_mb, d.interval_secs), (5, 300));
        assert_eq!(d.compression, Compression::Uncompressed);
        let e = dest(json!({"BufferingHints": {"SizeInMBs": 1}})).expect_err("half hints");
        assert_eq!(e.code, "InvalidArgumentException");
        let e = dest(json!({"Prefix": "a/!{timestamp:yyyy}/"})).expect_err("no error prefix");
        assert!(e.message.contains("ErrorOutputPrefix"), "{}", e.message);
        let e = dest(json!({"Prefix": "a/!{timestamp:yyyy}/", "ErrorOutputPrefix": "e/!{timestamp:yyyy}/"}))
            .expect_err("no error-output-type");
        assert!(e.message.contains("error-output-type"), "{}", e.message);
        dest(json!({"Prefix": "a/!{timestamp:yyyy}/", "ErrorOutputPrefix": "e/!{firehose:error-output-type}/"}))
            .expect("valid prefixes");
        let dp = dest(json!({
            "Prefix": "c=!{partitionKeyFromQuery:customer_id}/",
            "ErrorOutputPrefix": "errors/",
            "DynamicPartitioningConfiguration": {"Enabled": true},
            "ProcessingConfiguration": {"Enabled": true, "Processors": [{"Type": "MetadataExtraction", "Parameters": [
                {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{customer_id:.customer_id}"},
                {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]}]}
        }))
        .expect("dynamic partitioning");
        let q = dp.dynamic_partitioning.expect("enabled").queries;
        assert_eq!(q.get("customer_id").map(String::as_str), Some(".customer_id"));
        let e = dest(json!({"ProcessingConfiguration": {"Enabled": true, "Processors": [{"Type": "Lambda"}]}}))
            .expect_err("lambda without LambdaArn");
        assert!(e.message.contains("LambdaArn"), "{}", e.message);
        let e = dest(json!({"ProcessingConfiguration": {"Enabled": true, "Processors": [{"Type": "Decompression"}]}}))
            .expect_err("other processors");
        assert!(e.message.contains("Decompression"), "{}", e.message);
    }

    const FN: &str = "arn:aws:lambda:us-east-1:000000000000:function:f";

    fn lambda(params: Value) -> Value {
        json!({
            "RoleARN": "arn:aws:iam::000000000000:role/r",
            "BucketARN": "arn:aws:s3:::b",
            "ProcessingConfiguration": {"Enabled": true, "Processors": [{"Type": "Lambda", "Parameters": params}]}
        })
    }

    fn param(name: &str, value: &str) -> Value {
        json!({"ParameterName": name, "ParameterValue": value})
    }

    #[test]
    fn lambda_processor_parameters() {
        let d = dest(lambda(json!([param("LambdaArn", FN)]))).expect("defaults");
        assert_eq!(d.processor, Some(LambdaProcessor::new(FN)));
        let p = dest(lambda(json!([
            param("LambdaArn", &format!("{FN}:$LATEST")),
            param("NumberOfRetries", "0"),
            param("RoleArn", "arn:aws:iam::000000000000:role/invoker"),
            param("BufferSizeInMBs", "0.5"),
            param("BufferIntervalInSeconds", "120"),
        ])))
        .expect("all parameters")
        .processor
        .expect("processor");
        assert_eq!(p.lambda_arn, format!("{FN}:$LATEST"));
        assert_eq!(p.number_of_retries, 0);
        assert_eq!(p.role_arn.as_deref(), Some("arn:aws:iam::000000000000:role/invoker"));
        assert_eq!(p.buffer_size_bytes, 512 * 1024);
        assert_eq!(p.buffer_interval_secs, 120);
        assert_eq!(
            dest(lambda(json!([param("LambdaArn", FN), param("BufferSizeInMBs", "3")])))
                .expect("3 MB")
                .processor
                .map(|p| p.buffer_size_bytes),
            Some(3 * 1024 * 1024)
        );
        let bad = [
            (
                json!([param("LambdaArn", "arn:aws:lambda:us-east-1:0000:function:f")]),
                "LambdaArn",
            ),
            (json!([param("LambdaArn", "my-function")]), "LambdaArn"),
            (
                json!([param("LambdaArn", FN), param("NumberOfRetries", "301")]),
                "NumberOfRetries",
            ),
            (
                json!([param("LambdaArn", FN), param("NumberOfRetries", "-1")]),
                "NumberOfRetries",
            ),
            (
                json!([param("LambdaArn", FN), param("BufferSizeInMBs", "0.1")]),
                "BufferSizeInMBs",
            ),
            (
                json!([param("LambdaArn", FN), param("BufferSizeInMBs", "3.5")]),
                "BufferSizeInMBs",
            ),
            (
                json!([param("LambdaArn", FN), param("BufferSizeInMBs", "NaN")]),
                "BufferSizeInMBs",
            ),
            (
                json!([param("LambdaArn", FN), param("BufferIntervalInSeconds", "901")]),
                "BufferIntervalInSeconds",
            ),
            (
                json!([param("LambdaArn", FN), param("RoleArn", "arn:aws:iam::1:user/u")]),
                "RoleArn",
            ),
            (
                json!([param("LambdaArn", FN), param("MetadataExtractionQuery", "{a:.a}")]),
                "MetadataExtractionQuery",
            ),
            (json!([param("LambdaArn", FN), param("LambdaArn", FN)]), "Duplicate"),
        ];
        for (params, word) in bad {
            let e = dest(lambda(params.clone())).expect_err("invalid");
            assert_eq!(e.code, "InvalidArgumentException");
            assert!(e.message.contains(word), "{params}: {}", e.message);
        }
        let mut two = lambda(json!([param("LambdaArn", FN)]));
        let procs = two["ProcessingConfiguration"]["Processors"].clone();
        two["ProcessingConfiguration"]["Processors"] = json!([procs[0].clone(), procs[0].clone()]);
        assert!(dest(two).is_err(), "one Lambda processor");
        let mut off = lambda(json!([param("LambdaArn", FN)]));
        off["ProcessingConfiguration"]["Enabled"] = json!(false);
        assert_eq!(dest(off).expect("disabled").processor, None);
    }

    #[test]
    fn lambda_processor_parameters_are_modeled() {
        let check = |params: Value| {
            let mut v = Validator::default();
            let d: S3DestinationDto = serde_json::from_value(lambda(params)).expect("dto");
            check_destination(&mut v, &d, "extendedS3DestinationConfiguration", true);
            v.finish()
        };
        check(json!([param("LambdaArn", FN)])).expect("valid");
        for bad in [
            json!([param("Bogus", "x")]),
            json!([param("LambdaArn", "   ")]),
            json!([param("LambdaArn", "")]),
            json!([{"ParameterName": "LambdaArn"}]),
            json!([param("LambdaArn", &"a".repeat(5121))]),
        ] {
            let e = check(bad.clone()).expect_err("modeled");
            assert_eq!(e.code, "ValidationException", "{bad}");
            assert!(
                e.message
                    .contains("processingConfiguration.processors.1.member.parameters.1.member"),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn partition_keys_from_lambda() {
        let mut d = lambda(json!([param("LambdaArn", FN)]));
        d["Prefix"] = json!("t=!{partitionKeyFromLambda:t}/");
        d["ErrorOutputPrefix"] = json!("errors/!{firehose:error-output-type}/");
        d["DynamicPartitioningConfiguration"] = json!({"Enabled": true});
        let ok = dest(d.clone()).expect("lambda keys");
        assert!(ok.dynamic_partitioning.is_some_and(|p| p.queries.is_empty()));
        assert!(ok.processor.is_some());
        let mut no_dp = d.clone();
        no_dp
            .as_object_mut()
            .expect("obj")
            .remove("DynamicPartitioningConfiguration");
        let e = dest(no_dp).expect_err("needs dynamic partitioning");
        assert!(e.message.contains("dynamic partitioning"), "{}", e.message);
        let mut no_lambda = d.clone();
        no_lambda["ProcessingConfiguration"]["Enabled"] = json!(false);
        let e = dest(no_lambda).expect_err("needs the processor");
        assert!(e.message.contains("Lambda processor"), "{}", e.message);
        let mut in_error_prefix = d;
        in_error_prefix["ErrorOutputPrefix"] = json!("e/!{partitionKeyFromLambda:t}/!{firehose:error-output-type}/");
        assert!(dest(in_error_prefix).is_err());
    }

    #[test]
    fn described_lambda_processors_show_their_defaults() {
        let d = dest(lambda(json!([param("LambdaArn", FN), param("NumberOfRetries", "5")]))).expect("valid");
        let out = describe_destination(&d);
        let params = out
            .pointer("/ExtendedS3DestinationDescription/ProcessingConfiguration/Processors/0/Parameters")
            .expect("parameters");
        assert_eq!(
            params,
            &json!([
                param("LambdaArn", FN),
                param("NumberOfRetries", "5"),
                param("RoleArn", "arn:aws:iam::000000000000:role/r"),
                param("BufferSizeInMBs", "1"),
                param("BufferIntervalInSeconds", "60"),
            ])
        );
        assert_eq!(
            out.pointer("/ExtendedS3DestinationDescription/ProcessingConfiguration/Enabled"),
            Some(&json!(true))
        );
    }

    #[test]
    fn merge_is_deep() {
        let mut a = json!({"A": 1, "B": {"X": 1, "Y": 2}});
        merge(&mut a, json!({"B": {"Y": 3}, "C": "c"}));
        assert_eq!(a, json!({"A": 1, "B": {"X": 1, "Y": 3}, "C": "c"}));
    }
}
