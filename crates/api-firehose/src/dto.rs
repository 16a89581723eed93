//! Wire shapes of the Firehose operations (botocore `firehose/2015-08-04`), member names as AWS
//! spells them. Every input member is optional here so that a missing required member is
//! reported as AWS does (ValidationException), not as a parse error. Destination
//! configurations are kept as JSON too (`raw`), so DescribeDeliveryStream can echo them.

use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Default)]
pub struct Empty {}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct TagDto {
    pub key: Option<String>,
    pub value: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagOut {
    pub key: String,
    pub value: String,
}

#[derive(Deserialize)]
pub struct KinesisSourceDto {
    #[serde(rename = "KinesisStreamARN")]
    pub kinesis_stream_arn: Option<String>,
    #[serde(rename = "RoleARN")]
    pub role_arn: Option<String>,
}

/// The destinations AWS models on CreateDeliveryStream; only the S3 ones are typed.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateInput {
    pub delivery_stream_name: Option<String>,
    pub delivery_stream_type: Option<String>,
    pub kinesis_stream_source_configuration: Option<KinesisSourceDto>,
    #[serde(rename = "MSKSourceConfiguration")]
    pub msk_source_configuration: Option<serde_json::Value>,
    pub database_source_configuration: Option<serde_json::Value>,
    pub delivery_stream_encryption_configuration_input: Option<serde_json::Value>,
    pub extended_s3_destination_configuration: Option<serde_json::Value>,
    pub s3_destination_configuration: Option<serde_json::Value>,
    pub redshift_destination_configuration: Option<serde_json::Value>,
    pub elasticsearch_destination_configuration: Option<serde_json::Value>,
    pub amazonopensearchservice_destination_configuration: Option<serde_json::Value>,
    pub amazon_open_search_serverless_destination_configuration: Option<serde_json::Value>,
    pub splunk_destination_configuration: Option<serde_json::Value>,
    pub http_endpoint_destination_configuration: Option<serde_json::Value>,
    pub snowflake_destination_configuration: Option<serde_json::Value>,
    pub iceberg_destination_configuration: Option<serde_json::Value>,
    pub tags: Option<Vec<TagDto>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct BufferingHintsDto {
    #[serde(rename = "SizeInMBs")]
    pub size_in_mbs: Option<i64>,
    pub interval_in_seconds: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessorParameterDto {
    pub parameter_name: Option<String>,
    pub parameter_value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessorDto {
    pub r#type: Option<String>,
    pub parameters: Option<Vec<ProcessorParameterDto>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessingDto {
    pub enabled: Option<bool>,
    pub processors: Option<Vec<ProcessorDto>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RetryOptionsDto {
    pub duration_in_seconds: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DynamicPartitioningDto {
    pub enabled: Option<bool>,
    pub retry_options: Option<RetryOptionsDto>,
}

/// `ExtendedS3DestinationConfiguration` / `S3DestinationConfiguration` (and their `…Update`
/// forms, which have the same members, all optional).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct S3DestinationDto {
    #[serde(rename = "RoleARN")]
    pub role_arn: Option<String>,
    #[serde(rename = "BucketARN")]
    pub bucket_arn: Option<String>,
    pub prefix: Option<String>,
    pub error_output_prefix: Option<String>,
    pub buffering_hints: Option<BufferingHintsDto>,
    pub compression_format: Option<String>,
    pub processing_configuration: Option<ProcessingDto>,
    pub dynamic_partitioning_configuration: Option<DynamicPartitioningDto>,
    pub data_format_conversion_configuration: Option<DataFormatConversionDto>,
    pub s3_backup_mode: Option<String>,
    pub file_extension: Option<String>,
    pub custom_time_zone: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteInput {
    pub delivery_stream_name: Option<String>,
    pub allow_force_delete: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInput {
    pub delivery_stream_name: Option<String>,
    pub limit: Option<i64>,
    pub exclusive_start_destination_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListInput {
    pub limit: Option<i64>,
    pub delivery_stream_type: Option<String>,
    pub exclusive_start_delivery_stream_name: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListOutput {
    pub delivery_stream_names: Vec<String>,
    pub has_more_delivery_streams: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateOutput {
    #[serde(rename = "DeliveryStreamARN")]
    pub delivery_stream_arn: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateInput {
    pub delivery_stream_name: Option<String>,
    pub current_delivery_stream_version_id: Option<String>,
    pub destination_id: Option<String>,
    pub extended_s3_destination_update: Option<serde_json::Value>,
    pub s3_destination_update: Option<serde_json::Value>,
    pub redshift_destination_update: Option<serde_json::Value>,
    pub elasticsearch_destination_update: Option<serde_json::Value>,
    pub amazonopensearchservice_destination_update: Option<serde_json::Value>,
    pub amazon_open_search_serverless_destination_update: Option<serde_json::Value>,
    pub splunk_destination_update: Option<serde_json::Value>,
    pub http_endpoint_destination_update: Option<serde_json::Value>,
    pub snowflake_destination_update: Option<serde_json::Value>,
    pub iceberg_destination_update: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecordDto {
    #[serde(default, with = "kd_wire::json::opt_base64_bytes")]
    pub data: Option<Vec<u8>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordInput {
    pub delivery_stream_name: Option<String>,
    pub record: Option<RecordDto>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordBatchInput {
    pub delivery_stream_name: Option<String>,
    pub records: Option<Vec<RecordDto>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordOutput {
    pub record_id: String,
    pub encrypted: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchEntryOut {
    pub record_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordBatchOutput {
    pub failed_put_count: usize,
    pub encrypted: bool,
    pub request_responses: Vec<BatchEntryOut>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagInput {
    pub delivery_stream_name: Option<String>,
    pub tags: Option<Vec<TagDto>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntagInput {
    pub delivery_stream_name: Option<String>,
    pub tag_keys: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsInput {
    pub delivery_stream_name: Option<String>,
    pub exclusive_start_tag_key: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsOutput {
    pub tags: Vec<TagOut>,
    pub has_more_tags: bool,
}

/// `DataFormatConversionConfiguration`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DataFormatConversionDto {
    pub enabled: Option<bool>,
    pub schema_configuration: Option<SchemaConfigurationDto>,
    pub input_format_configuration: Option<InputFormatDto>,
    pub output_format_configuration: Option<OutputFormatDto>,
}

/// `SchemaConfiguration` (a Glue table; `CatalogId`, `Region` and `VersionId` are only
/// echoed).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SchemaConfigurationDto {
    #[serde(rename = "RoleARN")]
    pub role_arn: Option<String>,
    pub database_name: Option<String>,
    pub table_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InputFormatDto {
    pub deserializer: Option<DeserializerDto>,
}

#[derive(Deserialize)]
pub struct DeserializerDto {
    #[serde(rename = "OpenXJsonSerDe")]
    pub open_x_json_ser_de: Option<serde_json::Value>,
    #[serde(rename = "HiveJsonSerDe")]
    pub hive_json_ser_de: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OutputFormatDto {
    pub serializer: Option<SerializerDto>,
}

#[derive(Deserialize)]
pub struct SerializerDto {
    #[serde(rename = "ParquetSerDe")]
    pub parquet_ser_de: Option<ParquetSerDeDto>,
    #[serde(rename = "OrcSerDe")]
    pub orc_ser_de: Option<serde_json::Value>,
}

/// `ParquetSerDe` (only `Compression` changes the output; the page/block sizes and writer
/// version are accepted and echoed).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ParquetSerDeDto {
    pub compression: Option<String>,
}
