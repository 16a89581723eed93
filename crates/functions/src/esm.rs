//! Event source mappings: Kinesis streams polled on behalf of a function.
//!
//! INTERFACE STUB: the signatures below are the contract `api-lambda` and the composition
//! root code against; the bodies are being implemented.

use std::sync::Arc;

use kd_storage::MetaOp;

use crate::engine::Functions;
use crate::error::{Error, Result};
use crate::model::Scope;

pub(crate) const T_MAPPINGS: &str = "lambda_mappings";
pub(crate) const T_POSITIONS: &str = "lambda_mapping_positions";

/// A record read from a shard.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    /// Sequence number.
    pub sequence_number: String,
    /// Partition key.
    pub partition_key: String,
    /// Data.
    pub data: bytes::Bytes,
    /// Arrival time, ms since the epoch.
    pub arrival_ms: i64,
}

/// A shard of the source stream.
#[derive(Debug, Clone)]
pub struct StreamShard {
    /// Shard id.
    pub shard_id: String,
    /// Parent shard ids (read to their end first).
    pub parents: Vec<String>,
    /// Closed (has an ending sequence number).
    pub closed: bool,
}

/// Where to start reading a shard.
#[derive(Debug, Clone)]
pub enum ReadFrom {
    /// The oldest record.
    TrimHorizon,
    /// After the newest record now.
    Latest,
    /// The first record at or after this time (ms).
    AtTimestamp(i64),
    /// After this sequence number.
    After(String),
}

/// A batch read from a shard.
#[derive(Debug, Clone)]
pub struct StreamBatch {
    /// Records in order.
    pub records: Vec<StreamRecord>,
    /// The shard is closed and everything was read.
    pub end_of_shard: bool,
    /// Position to continue after when `records` is empty (e.g. the LATEST position), if any.
    pub position: Option<String>,
}

/// Reads Kinesis streams for the mappings, acting as the function's execution role.
#[async_trait::async_trait]
pub trait StreamReader: Send + Sync + 'static {
    /// Every shard of the stream.
    async fn shards(&self, stream_arn: &str, role_arn: &str) -> std::result::Result<Vec<StreamShard>, String>;
    /// Up to `max` records of `shard_id` from `from`.
    async fn read(
        &self,
        stream_arn: &str,
        role_arn: &str,
        shard_id: &str,
        from: ReadFrom,
        max: usize,
    ) -> std::result::Result<StreamBatch, String>;
}

/// CreateEventSourceMapping / UpdateEventSourceMapping input (absent = unchanged/default).
#[derive(Debug, Clone, Default)]
pub struct MappingInput {
    /// `EventSourceArn` (create only).
    pub event_source_arn: Option<String>,
    /// `FunctionName` (any form).
    pub function_name: Option<String>,
    /// `Enabled`.
    pub enabled: Option<bool>,
    /// `BatchSize` (1..=10000, default 100).
    pub batch_size: Option<u32>,
    /// `StartingPosition` (TRIM_HORIZON, LATEST, AT_TIMESTAMP; create only).
    pub starting_position: Option<String>,
    /// `StartingPositionTimestamp` (seconds).
    pub starting_position_timestamp: Option<f64>,
    /// `MaximumBatchingWindowInSeconds` (0..=300).
    pub maximum_batching_window_in_seconds: Option<u32>,
    /// `MaximumRetryAttempts` (-1..=10000, -1 = until the record expires).
    pub maximum_retry_attempts: Option<i32>,
    /// `MaximumRecordAgeInSeconds` (-1 or 60..=604800).
    pub maximum_record_age_in_seconds: Option<i32>,
    /// `BisectBatchOnFunctionError`.
    pub bisect_batch_on_function_error: Option<bool>,
    /// `ParallelizationFactor` (1..=10).
    pub parallelization_factor: Option<u32>,
    /// `FunctionResponseTypes` (`ReportBatchItemFailures`).
    pub function_response_types: Option<Vec<String>>,
    /// `DestinationConfig.OnFailure.Destination`.
    pub on_failure_destination: Option<String>,
    /// `TumblingWindowInSeconds` (recorded).
    pub tumbling_window_in_seconds: Option<u32>,
}

impl Functions {
    /// Installs the stream reader and starts the enabled mappings.
    pub fn set_stream_reader(self: &Arc<Self>, reader: Arc<dyn StreamReader>) {
        let _ = reader;
    }

    /// CreateEventSourceMapping: the `EventSourceMappingConfiguration` JSON.
    pub async fn create_mapping(&self, scope: &Scope, input: MappingInput) -> Result<serde_json::Value> {
        let _ = (scope, input);
        Err(Error::InvalidParameterValue("event source mappings are not implemented yet".into()))
    }

    /// GetEventSourceMapping.
    pub fn get_mapping(&self, scope: &Scope, uuid: &str) -> Result<serde_json::Value> {
        let _ = scope;
        Err(Error::ResourceNotFound(format!("The resource you requested does not exist. (Service: Lambda, Status Code: 404, Request ID: {uuid})")))
    }

    /// ListEventSourceMappings (filtered by source and/or function), paged.
    pub fn list_mappings(
        &self,
        scope: &Scope,
        event_source_arn: Option<&str>,
        function_name: Option<&str>,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<(Vec<serde_json::Value>, Option<String>)> {
        let _ = (scope, event_source_arn, function_name, marker, max_items);
        Ok((Vec::new(), None))
    }

    /// UpdateEventSourceMapping.
    pub async fn update_mapping(&self, scope: &Scope, uuid: &str, input: MappingInput) -> Result<serde_json::Value> {
        let _ = input;
        self.get_mapping(scope, uuid)
    }

    /// DeleteEventSourceMapping: the mapping in state `Deleting`.
    pub async fn delete_mapping(&self, scope: &Scope, uuid: &str) -> Result<serde_json::Value> {
        self.get_mapping(scope, uuid)
    }

    /// Operations deleting every mapping of `function_arn` (with DeleteFunction).
    pub(crate) fn mappings_delete_ops(&self, function_arn: &str) -> Result<Vec<MetaOp>> {
        let _ = function_arn;
        Ok(Vec::new())
    }

    /// Stops every mapping's poller.
    pub(crate) fn stop_mappings(&self) {}
}
