//! The Kinesis Data Streams adapter: awsJson1.1 (and its CBOR variant) requests with
//! `X-Amz-Target: Kinesis_20131202.<Operation>` become one call on [`kd_stream::Engine`], and
//! its answer or error becomes the wire reply. It sits between the `edge` (which has already
//! authenticated the caller and chosen this service) and the stream engine. Modeled
//! constraints are checked here (ValidationException); semantics are the engine's.

mod dto;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kd_stream::{Engine, Error, IteratorStart, PutEntry, PutOutcome, Scope, ShardFilter, StreamMode, StreamRef};
use kd_wire::json::{CborShape, Encoding, decode, error_response, ok_response};
use kd_wire::{RequestContext, ServiceError};
use serde::Serialize;

use crate::dto::*;
use crate::validate::{KinesisChecks as _, Validator};

/// The `X-Amz-Target` prefix of Kinesis.
pub const TARGET_PREFIX: &str = "Kinesis_20131202";

/// Which members change form between JSON and CBOR.
const CBOR_SHAPE: CborShape = CborShape {
    blob_fields: &["Data"],
    timestamp_fields: &["ApproximateArrivalTimestamp", "StreamCreationTimestamp", "Timestamp"],
};

/// Largest record payload (classic limit).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Largest PutRecords request payload (data + partition keys).
pub const MAX_PUT_RECORDS_BYTES: usize = 5 * 1024 * 1024;

/// Operations AWS has that kinesis-data does not implement yet (answered clearly, not as unknown).
const UNSUPPORTED: &[&str] = &[
    "RegisterStreamConsumer",
    "DeregisterStreamConsumer",
    "DescribeStreamConsumer",
    "ListStreamConsumers",
    "SubscribeToShard",
    "StartStreamEncryption",
    "StopStreamEncryption",
    "PutResourcePolicy",
    "GetResourcePolicy",
    "DeleteResourcePolicy",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
    "DescribeAccountSettings",
    "UpdateAccountSettings",
    "UpdateMaxRecordSize",
    "UpdateStreamWarmThroughput",
];

/// The adapter.
#[derive(Debug, Clone)]
pub struct KinesisApi {
    engine: Arc<Engine>,
}

type Reply = Result<http::Response<Bytes>, ServiceError>;

impl KinesisApi {
    /// An adapter over `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    /// Handles one request whose `X-Amz-Target` named `operation`.
    pub async fn handle(
        &self,
        ctx: &RequestContext,
        operation: &str,
        encoding: Encoding,
        body: &[u8],
    ) -> http::Response<Bytes> {
        let scope = Scope {
            account: ctx.account_id.clone(),
            region: ctx.region.clone(),
        };
        let call = Call {
            api: self,
            ctx,
            operation,
            scope: &scope,
            encoding,
            body,
            request_id: &ctx.request_id,
        };
        let result = match operation {
            "CreateStream" => call.create_stream().await,
            "DeleteStream" => call.delete_stream().await,
            "DescribeStream" => call.describe_stream().await,
            "DescribeStreamSummary" => call.describe_stream_summary().await,
            "ListStreams" => call.list_streams().await,
            "ListShards" => call.list_shards().await,
            "PutRecord" => call.put_record().await,
            "PutRecords" => call.put_records().await,
            "GetShardIterator" => call.get_shard_iterator().await,
            "GetRecords" => call.get_records().await,
            "SplitShard" => call.split_shard().await,
            "MergeShards" => call.merge_shards().await,
            "UpdateShardCount" => call.update_shard_count().await,
            "IncreaseStreamRetentionPeriod" => call.retention(true).await,
            "DecreaseStreamRetentionPeriod" => call.retention(false).await,
            "AddTagsToStream" => call.add_tags().await,
            "RemoveTagsFromStream" => call.remove_tags().await,
            "ListTagsForStream" => call.list_tags().await,
            "DescribeLimits" => call.describe_limits().await,
            "UpdateStreamMode" => call.update_stream_mode().await,
            "EnableEnhancedMonitoring" => call.enhanced_monitoring(true).await,
            "DisableEnhancedMonitoring" => call.enhanced_monitoring(false).await,
            op if UNSUPPORTED.contains(&op) => Err(ServiceError::client(
                "UnknownOperationException",
                format!("Operation {op} is not supported by kinesis-data yet (see docs/compat/kinesis.md)."),
            )),
            _ => Err(ServiceError::client("UnknownOperationException", "")),
        };
        result.unwrap_or_else(|e| error_response(encoding, &e, &ctx.request_id))
    }
}

/// Maps every engine error to its AWS code and status.
pub fn to_service_error(e: Error) -> ServiceError {
    let msg = e.to_string();
    match e {
        Error::StreamNotFound { .. } | Error::ShardNotFound(_) => {
            ServiceError::client("ResourceNotFoundException", msg)
        }
        Error::StreamExists { .. } | Error::ResourceInUse(_) => ServiceError::client("ResourceInUseException", msg),
        Error::InvalidArgument(_) => ServiceError::client("InvalidArgumentException", msg),
        Error::Validation(_) => ServiceError::client("ValidationException", msg),
        Error::LimitExceeded(_) => ServiceError::client("LimitExceededException", msg),
        Error::ExpiredIterator(_) => ServiceError::client("ExpiredIteratorException", msg),
        Error::ExpiredNextToken(_) => ServiceError::client("ExpiredNextTokenException", msg),
        Error::Storage(inner) => {
            tracing::error!(error = %inner, "stream storage failure; the request is not acknowledged");
            ServiceError::with_status(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                "Internal Service Failure",
            )
        }
        Error::Internal(detail) => {
            tracing::error!(%detail, "internal error in the stream engine");
            ServiceError::with_status(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                "Internal Service Failure",
            )
        }
    }
}

struct Call<'a> {
    api: &'a KinesisApi,
    ctx: &'a RequestContext,
    operation: &'a str,
    scope: &'a Scope,
    encoding: Encoding,
    body: &'a [u8],
    request_id: &'a str,
}

fn sref<'a>(name: &'a Option<String>, arn: &'a Option<String>) -> StreamRef<'a> {
    StreamRef {
        name: name.as_deref(),
        arn: arn.as_deref(),
    }
}

fn check_stream(v: &mut Validator, name: &Option<String>, arn: &Option<String>) {
    v.stream_name(name.as_deref(), "streamName");
    v.stream_arn(arn.as_deref(), "streamARN");
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn ms_of(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

fn tag_pairs(v: &mut Validator, tags: &BTreeMap<String, String>) {
    for (k, val) in tags {
        v.length(Some(k), "tags.key", 1, 128);
        v.length(Some(val), "tags.value", 0, 256);
    }
}

impl Call<'_> {
    fn input<T: serde::de::DeserializeOwned>(&self) -> Result<T, ServiceError> {
        decode(self.encoding, self.body)
    }

    fn ok<T: Serialize>(&self, v: &T) -> Reply {
        Ok(ok_response(self.encoding, &CBOR_SHAPE, v, self.request_id))
    }

    fn engine(&self) -> &Engine {
        &self.api.engine
    }

    /// Authorises `kinesis:<Operation>` on `resource` (built only when policies apply).
    fn allow_on(&self, resource: impl FnOnce() -> String) -> Result<(), ServiceError> {
        self.ctx.allow("kinesis", self.operation, resource)
    }

    /// Authorises the operation on the stream named by `name` or `arn`.
    fn allow(&self, name: &Option<String>, arn: &Option<String>) -> Result<(), ServiceError> {
        self.allow_on(|| match (arn, name) {
            (Some(arn), _) => arn.clone(),
            (None, Some(name)) => format!(
                "arn:aws:kinesis:{}:{}:stream/{name}",
                self.scope.region, self.scope.account
            ),
            (None, None) => "*".to_owned(),
        })
    }

    async fn create_stream(&self) -> Reply {
        let i: CreateStreamInput = self.input()?;
        let mut v = Validator::default();
        v.required(&i.stream_name, "streamName");
        v.stream_name(i.stream_name.as_deref(), "streamName");
        v.range(i.shard_count, "shardCount", 1, 1_000_000);
        let mode_name = i.stream_mode_details.as_ref().and_then(|d| d.stream_mode.as_deref());
        v.one_of(mode_name, "streamModeDetails.streamMode", &["PROVISIONED", "ON_DEMAND"]);
        if let Some(t) = &i.tags {
            tag_pairs(&mut v, t);
        }
        v.finish()?;
        self.allow(&i.stream_name, &None)?;
        let mode = match (mode_name, i.shard_count) {
            (Some("ON_DEMAND"), _) => StreamMode::OnDemand,
            (Some(_), _) => StreamMode::Provisioned,
            (None, Some(_)) => StreamMode::Provisioned,
            (None, None) => StreamMode::OnDemand,
        };
        let name = i.stream_name.unwrap_or_default();
        let count = i.shard_count.map(|n| n as u32);
        self.engine()
            .create_stream(self.scope, &name, count, mode, i.tags.unwrap_or_default())
            .await
            .map_err(to_service_error)?;
        self.ok(&Empty {})
    }

    async fn delete_stream(&self) -> Reply {
        let i: StreamInput = self.input()?;
        let mut v = Validator::default();
        check_stream(&mut v, &i.stream_name, &i.stream_arn);
        v.finish()?;
        self.allow(&i.stream_name, &i.stream_arn)?;
        self.engine()
            .delete_stream(self.scope, sref(&i.stream_name, &i.stream_arn))
            .await
            .map_err(to_service_error)?;
        self.ok(&Empty {})
    }

    async fn describe_stream(&self) -> Reply {
        let i: DescribeStreamInput = self.input()?;
        let mut v = Validator::default();
        check_stream(&mut v, &i.stream_name, &i.stream_arn);
        v.range(i.limit, "limit", 1, 10000);
        v.shard_id(i.exclusive_start_shard_id.as_deref(), "exclusiveStartShardId");
        v.finish()?;
        self.allow(&i.stream_name, &i.stream_arn)?;
        let limit = i.limit.unwrap_or(100).min(100) as usize;
        let d = self
            .engine()
            .describe_stream(
                self.scope,
                sref(&i.stream_name, &i.stream_arn),
                limit,
                i.exclusive_start_shard_id.as_deref(),
            )
            .await
            .map_err(to_service_error)?;
        self.ok(&DescribeStreamOutput {
            stream_description: StreamDescriptionDto {
                stream_name: d.summary.name,
                stream_arn: d.summary.arn,
                stream_status: d.summary.status.as_str(),
                stream_mode_details: ModeDto {
                    stream_mode: d.summary.mode.as_str().to_owned(),
                },
                shards: d.shards.into_iter().map(ShardDto::from).collect(),
                has_more_shards: d.has_more_shards,
                retention_period_hours: d.retention_hours,
                stream_creation_timestamp: secs(d.summary.created_ms),
                enhanced_monitoring: vec![EnhancedMetricsDto {
                    shard_level_metrics: d.shard_level_metrics.clone(),
                }],
                encryption_type: "NONE",
            },
        })
    }

    async fn describe_stream_summary(&self) -> Reply {
        let i: StreamInput = self.input()?;
        let mut v = Validator::default();
        check_stream(&mut v, &i.stream_name, &i.stream_arn);
        v.finish()?;
        self.allow(&i.stream_name, &i.stream_arn)?;
        let d = self
            .engine()
            .describe_stream(self.scope, sref(&i.stream_name, &i.stream_arn), 0, None)
            .await
            .map_err(to_service_error)?;
        self.ok(&DescribeStreamSummaryOutput {
            stream_description_summary: StreamSummaryDto {
                stream_name: d.summary.name,
                stream_arn: d.summary.arn,
                stream_status: d.summary.status.as_str(),
                stream_mode_details: ModeDto {
                    stream_mode: d.summary.mode.as_str().to_owned(),
                },
                retention_period_hours: d.retention_hours,
                stream_creation_timestamp: secs(d.summary.created_ms),
                enhanced_monitoring: vec![EnhancedMetricsDto {
                    shard_level_metrics: d.shard_level_metrics.clone(),
                }],
                encryption_type: "NONE",
                open_shard_count: d.open_shard_count,
                consumer_count: 0,
            },
        })
    }

    async fn list_streams(&self) -> Reply {
        let i: ListStreamsInput = self.input()?;
        let mut v = Validator::default();
        v.range(i.limit, "limit", 1, 10000);
        v.stream_name(i.exclusive_start_stream_name.as_deref(), "exclusiveStartStreamName");
        v.length(i.next_token.as_deref(), "nextToken", 1, 1048576);
        v.finish()?;
        self.allow_on(|| "*".to_owned())?;
        if i.next_token.is_some() && i.exclusive_start_stream_name.is_some() {
            return Err(ServiceError::client(
                "InvalidArgumentException",
                "NextToken and ExclusiveStartStreamName cannot be provided together.",
            ));
        }
        let limit = i.limit.unwrap_or(100).min(100) as usize;
        let page = self
            .engine()
            .list_streams(
                self.scope,
                limit,
                i.exclusive_start_stream_name.as_deref(),
                i.next_token.as_deref(),
            )
            .await
            .map_err(to_service_error)?;
        self.ok(&ListStreamsOutput {
            stream_names: page.streams.iter().map(|s| s.name.clone()).collect(),
            has_more_streams: page.has_more,
            next_token: page.next_token,
            stream_summaries: page
                .streams
                .into_iter()
                .map(|s| StreamSummaryEntry {
                    stream_name: s.name,
                    stream_arn: s.arn,
                    stream_status: s.status.as_str(),
                    stream_mode_details: ModeDto {
                        stream_mode: s.mode.as_str().to_owned(),
                    },
                    stream_creation_timestamp: secs(s.created_ms),
                })
                .collect(),
        })
    }

    async fn list_shards(&self) -> Reply {
        let i: ListShardsInput = self.input()?;
        let mut v = Validator::default();
        check_stream(&mut v, &i.stream_name, &i.stream_arn);
        v.range(i.max_results, "maxResults", 1, 10000);
        v.shard_id(i.exclusive_start_shard_id.as_deref(), "exclusiveStartShardId");
        v.length(i.next_token.as_deref(), "nextToken", 1, 1048576);
        let ftype = i.shard_filter.as_ref().and_then(|f| f.r#type.as_deref());
        if i.shard_filter.is_some() {
            v.required(&ftype, "shardFilter.type");
        }
        v.one_of(
            ftype,
            "shardFilter.type",
            &[
                "AFTER_SHARD_ID",
                "AT_TRIM_HORIZON",
                "FROM_TRIM_HORIZON",
                "AT_LATEST",
                "AT_TIMESTAMP",
                "FROM_TIMESTAMP",
            ],
        );
        v.finish()?;
        self.allow(&i.stream_name, &i.stream_arn)?;
        if i.next_token.is_none() && i.stream_name.is_none() && i.stream_arn.is_none() {
            return Err(ServiceError::client(
                "InvalidArgumentException",
                "Either NextToken or StreamName or StreamARN should be provided.",
            ));
        }
        if i.next_token.is_some() && (i.exclusive_start_shard_id.is_some() || i.stream_creation_timestamp.is_some()) {
            return Err(ServiceError::client(
                "InvalidArgumentException",
                "NextToken cannot be provided together with ExclusiveStartShardId or StreamCreationTimestamp.",
            ));
        }
        let filter = match i.shard_filter {
            None => None,
            Some(f) => {
                let need_ts = |f: &ShardFilterDto| {
                    f.timestamp.map(ms_of).ok_or_else(|| {
                        ServiceError::client(
                            "InvalidArgumentException",
                            "Timestamp is required for this ShardFilter type.",
                        )
                    })
                };
                Some(match f.r#type.as_deref().unwrap_or_default() {
                    "AFTER_SHARD_ID" => ShardFilter::AfterShardId(f.shard_id.clone().ok_or_else(|| {
                        ServiceError::client(
                            "InvalidArgumentException",
                            "ShardId is required for the AFTER_SHARD_ID filter.",
                        )
                    })?),
                    "AT_TRIM_HORIZON" => ShardFilter::AtTrimHorizon,
                    "AT_LATEST" => ShardFilter::AtLatest,
                    "AT_TIMESTAMP" => ShardFilter::AtTimestamp(need_ts(&f)?),
                    "FROM_TIMESTAMP" => ShardFilter::FromTimestamp(need_ts(&f)?),
                    _ => ShardFilter::FromTrimHorizon,
                })
            }
        };
        let max = i.max_results.unwrap_or(1000).min(1000) as usize;
        let page = self
            .engine()
            .list_shards(
                self.scope,
                sref(&i.stream_name, &i.stream_arn),
                i.next_token.as_deref(),
                i.exclusive_start_shard_id.as_deref(),
                filter,
                max,
            )
            .await
            .map_err(to_service_error)?;
        self.ok(&ListShardsOutput {
            shards: page.shards.into_iter().map(ShardDto::from).collect(),
            next_token: page.next_token,
        })
    }

    fn check_record(
        v: &mut Validator,
        prefix: &str,
        pk: &Option<String>,
        data: &Option<Vec<u8>>,
        ehk: &Option<String>,
    ) {
        let f = |s: &str| {
            if prefix.is_empty() {
                s.to_owned()
            } else {
                format!("{prefix}.{s}")
            }
        };
        v.required(data, &f("data"));
        v.required(pk, &f("partitionKey"));
        v.length(pk.as_deref(), &f("partitionKey"), 1, 256);
        v.hash_key_pattern(ehk.as_deref(), &f("explicitHashKey"));
        if let Some(d) = data
            && d.len() > MAX_RECORD_BYTES
        {
            v.fail_no_value(
                &f("data"),
                &format!("Member must have length less than or equal to {MAX_RECORD_BYTES}"),
            );
        }
    }

    fn explicit_hash(ehk: &Option<String>) -> Result<Option<u128>, ServiceError> {
        match ehk {
            None => Ok(None),
            Some(s) => kd_stream::hash::parse_hash_key(s).map(Some).ok_or_else(|| {
                ServiceError::client(
                    "InvalidArgumentException",
                    format!("Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {s}"),
                )
            }),
        }
    }

    async fn put_record(&self) -> Reply {
        let i: PutRecordInput = self.input()?;
        let mut v = Validator::default();
        check_stream(&mut v, &i.stream_name, &i.stream_arn);
        Self::check_record(&mut v, "", &i.partition_key, &i.data, &i.explicit_hash_key);
        v.sequence_pattern(i.sequence_number_for_ordering.as_deref(), "sequenceNumberForOrdering");
        v.finish()?;
        self.allow(&i.stream_name, &i.stream_arn)?;
        let entry = PutEntry {
            explicit_hash_key: Self::explicit_hash(&i.explicit_hash_key)?,
            partition_key: i.partition_key.unwrap_or_default(),
            data: i.data.unwrap_or_default(),
        };
        let mut out = self
            .engine()
            .put_records(self.scope, sref(&i.stream_name, &i.stream_arn), vec![entry])
            .await
            .map_err(to_service_error)?;
        match out.pop() {
            Some(PutOutcome::Stored {
                shard_id,
                sequence_number,
            }) => self.ok(&PutRecordOutput {
                shard_id,
                sequence_number,
                encryption_type: "NONE",
            }),
            Some(PutOutcome::Throttled { message }) => {
                Err(ServiceError::client("ProvisionedThroughputExceededException", message))
            }
            None => Err(to_service_error(Error::Internal(
                "PutRecord produced no outcome".to_owned(),
            ))),
        }
    }

    async fn put_records(&self) -> Reply {
        let i: PutRecordsInput = self.input()?;
        let mut v = Validator::default();
        check_stream(&mut v, &i.stream_name, &i.stream_arn);
        v.required(&i.records, "records");
        let records = i.records.unwrap_or_default();
        if records.is_empty() {
            v.fail_no_value("records", "Member must have length greater than or equal to 1");
        }
        if records.len() > 500 {
            v.fail_no_value("records", "Member must have length less than or equal to 500");
        }
        for (n, r) in records.iter().enumerate() {
            Self::check_record(
                &mut v,
                &format!("records.{}.member", n + 1),
                &r.partition_key,
                &r.data,
                &r.explicit_hash_key,
            );
        }
        v.finish()?;
        self.allow(&i.stream_name, &i.stream_arn)?;
        let total: usize = records
            .iter()
            .map(|r| r.data.as_ref().map_or(0, Vec::len) + r.partition_key.as_ref().map_or(0, String::len))
            .sum();
        if total > MAX_PUT_RECORDS_BYTES {
            return Err(ServiceError::client(
                "InvalidArgumentException",
                "Records size exceeds 5 MB limit",
            ));
        }
        let mut entries = Vec::with_capacity(records.len());
        for r in records {
            entries.push(PutEntry {
                explicit_hash_key: Self::explicit_hash(&r.explicit_hash_key)?,
                partition_key: r.partition_key.unwrap_or_default(),
                data: r.data.unwrap_or_default(),
            });
        }
        let out = self
            .engine()
            .put_records(self.scope, sref(&i.stream_name, &i.stream_arn), entries)
            .await
            .map_err(to_service_error)?;
        let failed = out.iter().filter(|o| matches!(o, PutOutcome::Throttled { .. })).count();
        self.ok(&PutRecordsOutput {
            failed_record_count: failed,
            records: out
                .into_iter()
                .map(|o| match o {
                    PutOutcome::Stored {
                        shard_id,
                        sequence_number,
                    } => PutRecordsResultEntry {
                        sequence_number: Some(sequence_number),
                        shard_id: Some(shard_id),
                        error_code: None,
                        error_message: None,
                    },
                    PutOutcome::Throttled { message } => PutRecordsResultEntry {
                        sequence_number: None,
                        shard_id: None,
                        error_code: Some("ProvisionedThroughputExceededException"),
                        error_message: Some(message),
                    },
                })
                .collect(),
            encryption_type: "NONE",
        })
    }

    async fn get_shard_iterator(&self) -> Reply {
        let i: GetShardIteratorInput = self.input()?;
        let mut v = Validator::default();
        check_stream(&mut v, &i.stream_name, &i.stream_arn);
        v.required(&i.shard_id, "shardId");
        v.shard_id(i.shard_id.as_deref(), "shardId");
        v.required(&i.shard_iterator_type, "shardIteratorType");
        v.one_of(
            i.shard_iterator_type.as_deref(),
            "shardIteratorType",
            &[
                "AT_SEQUENCE_NUMBER",
                "AFTER_SEQUENCE_NUMBER",
                "TRIM_HORIZON",
                "LATEST",
                "AT_TIMESTAMP",
            ],
        );
        v.sequence_pattern(i.starting_sequence_number.as_deref(), "startingSequenceNumber");
        v.finish()?;
        self.allow(&i.stream_name, &i.stream_arn)?;
        let kind = i.shard_iterator_type.as_deref().unwrap_or_default();
        let seq = || {
            i.starting_sequence_number.clone().ok_or_else(|| {
                ServiceError::client(
                    "InvalidArgumentException",
                    format!("StartingSequenceNumber must be specified for shardIteratorType {kind}"),
                )
            })
        };
        let no_seq = || {
            if i.starting_sequence_number.is_some() {
                Err(ServiceError::client(
                    "InvalidArgumentException",
                    format!("Request should not have StartingSequenceNumber if ShardIteratorType is {kind}"),
                ))
            } else {
                Ok(())
            }
        };
        let start = match kind {
            "TRIM_HORIZON" => {
                no_seq()?;
                IteratorStart::TrimHorizon
            }
            "LATEST" => {
                no_seq()?;
                IteratorStart::Latest
            }
            "AT_SEQUENCE_NUMBER" => IteratorStart::AtSequence(seq()?),
            "AFTER_SEQUENCE_NUMBER" => IteratorStart::AfterSequence(seq()?),
            _ => {
                no_seq()?;
                let ts = i.timestamp.ok_or_else(|| {
                    ServiceError::client(
                        "InvalidArgumentException",
                        "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.",
                    )
                })?;
                IteratorStart::AtTimestamp(ms_of(ts))
            }
        };
        let it = self
            .engine()
            .get_shard_iterator(
                self.scope,
                sref(&i.stream_name, &i.stream_arn),
                i.shard_id.as_deref().unwrap_or_default(),
                start,
            )
            .await
            .map_err(to_service_error)?;
        self.ok(&GetShardIteratorOutput { shard_iterator: it })
    }

    async fn get_records(&self) -> Reply {
        let i: GetRecordsInput = self.input()?;
        let mut v = Validator::default();
        v.required(&i.shard_iterator, "shardIterator");
        v.length(i.shard_iterator.as_deref(), "shardIterator", 1, 512);
        v.range(i.limit, "limit", 1, 10000);
        v.stream_arn(i.stream_arn.as_deref(), "streamARN");
        v.finish()?;
        self.allow_on(|| {
            i.stream_arn
                .clone()
                .or_else(|| {
                    self.engine()
                        .stream_arn_of_iterator(i.shard_iterator.as_deref().unwrap_or_default())
                })
                .unwrap_or_else(|| "*".to_owned())
        })?;
        let limit = i.limit.unwrap_or(10000) as usize;
        let out = self
            .engine()
            .get_records(self.scope, i.shard_iterator.as_deref().unwrap_or_default(), limit)
            .await
            .map_err(to_service_error)?;
        self.ok(&GetRecordsOutputDto {
            records: out
                .records
                .into_iter()
                .map(|r| RecordDto {
                    sequence_number: r.sequence_number,
                    approximate_arrival_timestamp: secs(r.arrival_ms),
                    data: r.data,
                    partition_key: r.partition_key,
                })
                .collect(),
            next_shard_iterator: out.next_iterator,
            millis_behind_latest: out.millis_behind_latest,
            child_shards: out.child_shards.map(|c| {
                c.into_iter()
                    .map(|c| ChildShardDto {
                        shard_id: c.shard_id,
                        parent_shards: c.parent_shards,
                        hash_key_range: HashKeyRangeDto {
                            starting_hash_key: c.start_hash.to_string(),
                            ending_hash_key: c.end_hash.to_string(),
                        },
                    })
                    .collect()
            }),
        })
    }

    async fn split_shard(&self) -> Reply {
        let i: SplitShardInput = self.input()?;
        let mut v = Validator::default();
        check_stream(&mut v, &i.stream_name, &i.stream_arn);
        v.required(&i.shard_to_split, "shardToSplit");
        v.shard_id(i.shard_to_split.as_deref(), "shardToSplit");
        v.required(&i.new_starting_hash_key, "newStartingHashKey");
        v.hash_key_pattern(i.new_starting_hash_key.as_deref(), "newStartingHashKey");
        v.finish()?;
        self.allow(&i.stream_name, &i.stream_arn)?;
        let key = Self::explicit_hash(&i.new_starting_hash_key)?.unwrap_or_default();
        self.engine()
            .split_shard(
                self.scope,
                sref(&i.stream_name, &i.stream_arn),
                i.shard_to_split.as_deref().unwrap_or_default(),
                key,
            )
            .await
            .map_err(to_service_error)?;
        self.ok(&Empty {})
    }

    async fn merge_shards(&self) -> Reply {
        let i: MergeShardsInput = self.input()?;
        let mut v = Validator::default();
        check_stream(&mut v, &i.stream_name, &i.stream_arn);
        v.required(&i.shard_to_merge, "shardToMerge");
        v.shard_id(i.shard_to_merge.as_deref(), "shardToMerge");
        v.required(&i.adjacent_shard_to_merge, "adjacentShardToMerge");
        v.shard_id(i.adjacent_shard_to_merge.as_deref(), "adjacentShardToMerge");
        v.finish()?;
        self.allow(&i.stream_name, &i.stream_arn)?;
        self.engine()
            .merge_shards(
                self.scope,
                sref(&i.stream_name, &i.stream_arn),
                i.shard_to_merge.as_deref().unwrap_or_default(),
                i.adjacent_shard_to_merge.as_deref().unwrap_or_default(),
            )
            .await
            .map_err(to_service_error)?;
        self.ok(&Empty {})
    }

    async fn update_shard_count(&self) -> Reply {
        let i: UpdateShardCountInput = self.input()?;
        let mut v = Validator::default();
        check_stream(&mut v, &i.stream_name, &i.stream_arn);
        v.required(&i.target_shard_count, "targetShardCount");
        v.range(i.target_shard_count, "targetShardCount", 1, 1_000_000);
        v.required(&i.scaling_type, "scalingType");
        v.one_of(i.scaling_type.as_deref(), "scalingType", &["UNIFORM_SCALING"]);
        v.finish()?;
        self.allow(&i.stream_name, &i.stream_arn)?;
        let target = i.target_shard_count.unwrap_or(1) as u32;
        let u = self
            .engine()
            .update_shard_count(self.scope, sref(&i.stream_name, &i.stream_arn), target)
            .await
            .map_err(to_service_error)?;
        self.ok(&UpdateShardCountOutput {
            stream_name: u.name,
            stream_arn: u.arn,
            current_shard_count: u.current,
            target_shard_count: u.target,
        })
    }

    async fn retention(&self, increase: bool) -> Reply {
        let i: RetentionInput = self.input()?;
        let mut v = Validator::default();
        check_stream(&mut v, &i.stream_name, &i.stream_arn);
        v.required(&i.retention_period_hours, "retentionPeriodHours");
        v.range(i.retention_period_hours, "retentionPeriodHours", 1, 100_000);
        v.finish()?;
        self.allow(&i.stream_name, &i.stream_arn)?;
        let hours = i.retention_period_hours.unwrap_or(24) as u32;
        self.engine()
            .set_retention(self.scope, sref(&i.stream_name, &i.stream_arn), hours, increase)
            .await
            .map_err(to_service_error)?;
        self.ok(&Empty {})
    }

    async fn add_tags(&self) -> Reply {
        let i: AddTagsInput = self.input()?;
        let mut v = Validator::default();
        check_stream(&mut v, &i.stream_name, &i.stream_arn);
        v.required(&i.tags, "tags");
        if let Some(t) = &i.tags {
            tag_pairs(&mut v, t);
            if t.is_empty() || t.len() > 50 {
                v.fail_no_value("tags", "Member must have length between 1 and 50");
            }
        }
        v.finish()?;
        self.allow(&i.stream_name, &i.stream_arn)?;
        self.engine()
            .add_tags(
                self.scope,
                sref(&i.stream_name, &i.stream_arn),
                i.tags.unwrap_or_default(),
            )
            .await
            .map_err(to_service_error)?;
        self.ok(&Empty {})
    }

    async fn remove_tags(&self) -> Reply {
        let i: RemoveTagsInput = self.input()?;
        let mut v = Validator::default();
        check_stream(&mut v, &i.stream_name, &i.stream_arn);
        v.required(&i.tag_keys, "tagKeys");
        if let Some(k) = &i.tag_keys {
            if k.is_empty() || k.len() > 50 {
                v.fail_no_value("tagKeys", "Member must have length between 1 and 50");
            }
            for key in k {
                v.length(Some(key), "tagKeys.member", 1, 128);
            }
        }
        v.finish()?;
        self.allow(&i.stream_name, &i.stream_arn)?;
        self.engine()
            .remove_tags(
                self.scope,
                sref(&i.stream_name, &i.stream_arn),
                &i.tag_keys.unwrap_or_default(),
            )
            .await
            .map_err(to_service_error)?;
        self.ok(&Empty {})
    }

    async fn list_tags(&self) -> Reply {
        let i: ListTagsInput = self.input()?;
        let mut v = Validator::default();
        check_stream(&mut v, &i.stream_name, &i.stream_arn);
        v.length(i.exclusive_start_tag_key.as_deref(), "exclusiveStartTagKey", 1, 128);
        v.range(i.limit, "limit", 1, 50);
        v.finish()?;
        self.allow(&i.stream_name, &i.stream_arn)?;
        let (tags, more) = self
            .engine()
            .list_tags(
                self.scope,
                sref(&i.stream_name, &i.stream_arn),
                i.exclusive_start_tag_key.as_deref(),
                i.limit.unwrap_or(50) as usize,
            )
            .await
            .map_err(to_service_error)?;
        self.ok(&ListTagsOutput {
            tags: tags.into_iter().map(|(key, value)| TagDto { key, value }).collect(),
            has_more_tags: more,
        })
    }

    async fn describe_limits(&self) -> Reply {
        let _: Empty = self.input()?;
        self.allow_on(|| "*".to_owned())?;
        let l = self.engine().describe_limits(self.scope).await;
        self.ok(&DescribeLimitsOutput {
            shard_limit: l.shard_limit,
            open_shard_count: l.open_shard_count,
            on_demand_stream_count: l.on_demand_stream_count,
            on_demand_stream_count_limit: l.on_demand_stream_count_limit,
        })
    }

    async fn enhanced_monitoring(&self, enable: bool) -> Reply {
        let i: MonitoringInput = self.input()?;
        let mut v = Validator::default();
        check_stream(&mut v, &i.stream_name, &i.stream_arn);
        v.required(&i.shard_level_metrics, "shardLevelMetrics");
        let metrics = i.shard_level_metrics.clone().unwrap_or_default();
        if i.shard_level_metrics.is_some() && (metrics.is_empty() || metrics.len() > 7) {
            v.fail_no_value("shardLevelMetrics", "Member must have length between 1 and 7");
        }
        let mut allowed: Vec<&str> = kd_stream::SHARD_LEVEL_METRICS.to_vec();
        allowed.push("ALL");
        for (n, m) in metrics.iter().enumerate() {
            v.one_of(Some(m), &format!("shardLevelMetrics.{}.member", n + 1), &allowed);
        }
        v.finish()?;
        self.allow(&i.stream_name, &i.stream_arn)?;
        let out = self
            .engine()
            .set_enhanced_monitoring(self.scope, sref(&i.stream_name, &i.stream_arn), &metrics, enable)
            .await
            .map_err(to_service_error)?;
        self.ok(&MonitoringOutput {
            stream_name: out.name,
            stream_arn: out.arn,
            current_shard_level_metrics: out.current,
            desired_shard_level_metrics: out.desired,
        })
    }

    async fn update_stream_mode(&self) -> Reply {
        let i: UpdateStreamModeInput = self.input()?;
        let mut v = Validator::default();
        v.required(&i.stream_arn, "streamARN");
        v.stream_arn(i.stream_arn.as_deref(), "streamARN");
        let mode = i.stream_mode_details.as_ref().and_then(|d| d.stream_mode.as_deref());
        v.required(&mode, "streamModeDetails.streamMode");
        v.one_of(mode, "streamModeDetails.streamMode", &["PROVISIONED", "ON_DEMAND"]);
        v.finish()?;
        self.allow(&None, &i.stream_arn)?;
        let mode = if mode == Some("ON_DEMAND") {
            StreamMode::OnDemand
        } else {
            StreamMode::Provisioned
        };
        self.engine()
            .update_stream_mode(
                self.scope,
                StreamRef {
                    name: None,
                    arn: i.stream_arn.as_deref(),
                },
                mode,
            )
            .await
            .map_err(to_service_error)?;
        self.ok(&Empty {})
    }
}

#[allow(dead_code)]
fn _assert_send(api: &KinesisApi, ctx: &RequestContext, scope: &Scope) {
    fn is_send<T: Send>(_: T) {}
    is_send(api.handle(ctx, "x", Encoding::Json, b""));
    is_send(api.engine.put_records(scope, StreamRef::default(), vec![]));
    is_send(api.engine.get_records(scope, "", 1));
    is_send(
        api.engine
            .create_stream(scope, "", None, StreamMode::OnDemand, BTreeMap::new()),
    );
}
