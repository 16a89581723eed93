//! Durable documents of the delivery engine (JSON values in `MetaStore` tables).
//!
//! | table | key | value |
//! |---|---|---|
//! | `firehose_streams` | `<account>/<region>/<name>` | [`StreamDoc`] |
//! | `firehose_checkpoints` | `<uid>` | [`CheckpointDoc`] |
//! | `firehose_intents` | `<uid>/<partition id>` | [`IntentDoc`] |
//!
//! Every document carries `version` (the format version, 1).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Compression, FormatConversion, LambdaProcessor, S3Destination, Source};

pub(crate) const T_STREAMS: &str = "firehose_streams";
pub(crate) const T_CHECKPOINTS: &str = "firehose_checkpoints";
pub(crate) const T_INTENTS: &str = "firehose_intents";
pub(crate) const FORMAT_VERSION: u32 = 1;

/// A delivery stream's definition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StreamDoc {
    pub version: u32,
    pub uid: String,
    pub account: String,
    pub region: String,
    pub name: String,
    pub source: Source,
    pub destination: S3Destination,
    /// `VersionId`.
    pub stream_version: u64,
    pub created_ms: i64,
    pub updated_ms: Option<i64>,
    pub delivery_start_ms: Option<i64>,
    pub tags: BTreeMap<String, String>,
}

impl StreamDoc {
    pub fn meta_key(&self) -> String {
        stream_key(&self.account, &self.region, &self.name)
    }
}

pub(crate) fn stream_key(account: &str, region: &str, name: &str) -> String {
    format!("{account}/{region}/{name}")
}

/// Where a delivery stream has got to in each source unit (`log` for DirectPut, else a
/// shard id). Positions are decimal strings (log offsets or sequence numbers) compared
/// numerically with [`pos_cmp`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct CheckpointDoc {
    pub version: u32,
    /// Stream sources: the starting positions have been chosen.
    pub initialized: bool,
    pub units: BTreeMap<String, UnitCheckpoint>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct UnitCheckpoint {
    /// Every record at or before this position is delivered (`None`: nothing yet, read from
    /// the unit's start).
    pub after: Option<String>,
    /// A closed shard read to its end and fully delivered.
    pub done: bool,
    /// Partition id → the position through which that partition has delivered records
    /// beyond `after` (dynamic partitioning lets partitions deliver out of order).
    #[serde(default)]
    pub partitions: BTreeMap<String, String>,
    /// Parent shards (stream sources).
    #[serde(default)]
    pub parents: Vec<String>,
}

/// A flush that was decided but maybe not finished: redone on recovery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IntentDoc {
    pub version: u32,
    /// Partition id (`""` without dynamic partitioning, [`ERROR_PARTITION`] for the error
    /// output, else the JSON of the partition keys).
    pub partition: String,
    pub role_arn: String,
    pub bucket: String,
    pub key: String,
    pub compression: Compression,
    pub zip_entry: String,
    /// The dynamic-partitioning queries in force (records of the range are filtered by them).
    pub queries: Option<BTreeMap<String, String>>,
    /// For error objects: `attemptEndingTimestamp`.
    pub attempt_ending_ms: i64,
    /// Unit → (after exclusive, to inclusive).
    pub ranges: BTreeMap<String, (Option<String>, String)>,
    /// The format conversion in force (records of the range that do not convert belong to
    /// [`FORMAT_ERROR_PARTITION`]; data objects are Parquet).
    #[serde(default)]
    pub conversion: Option<FormatConversion>,
    /// Set once the retry window expired: the records go to the error output instead (this
    /// key, retried until written), so recovery writes the error object, not the data one.
    #[serde(default)]
    pub failed: Option<FailedDoc>,
    /// Set for the flushes of a delivery stream with a Lambda processor, which flush ALL open
    /// buffers as one *group*: per unit, the last position the group covers (it starts after
    /// the checkpoint's `after`). Every intent of a group has the same value; the group
    /// commits (checkpoint + deletion of all its intents) in one transaction. Recovery
    /// re-reads the span, re-transforms it with `processor` and routes every record again
    /// (see the crate docs).
    #[serde(default)]
    pub group_to: Option<BTreeMap<String, String>>,
    /// The Lambda processor the group's records were transformed with.
    #[serde(default)]
    pub processor: Option<LambdaProcessor>,
    /// The `!{partitionKeyFromLambda:…}` keys the group's records were partitioned by.
    #[serde(default)]
    pub lambda_key_names: Vec<String>,
    /// The partition's dynamic-partitioning query keys (group flushes).
    #[serde(default)]
    pub keys: Option<BTreeMap<String, String>>,
    /// The partition's Lambda partition keys (group flushes).
    #[serde(default)]
    pub lambda_keys: Option<BTreeMap<String, String>>,
}

/// A delivery that gave up on its data key: what the error-record lines say.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FailedDoc {
    /// The error object's key (same bucket, under the ErrorOutputPrefix).
    pub key: String,
    /// `S3.AccessDenied`, `S3.NoSuchBucket` or `S3.InternalError`.
    pub error_code: String,
    pub error_message: String,
    pub attempts: u32,
    pub attempt_ending_ms: i64,
}

/// The partition id of records whose partitioning failed.
pub(crate) const ERROR_PARTITION: &str = "!error";
/// The partition id of records that do not fit the format conversion's schema.
pub(crate) const FORMAT_ERROR_PARTITION: &str = "!format-error";

/// Whether a partition id is an error output.
pub(crate) fn is_error_partition(id: &str) -> bool {
    id == ERROR_PARTITION || id == FORMAT_ERROR_PARTITION
}

/// Numeric order of decimal position strings.
pub(crate) fn pos_cmp(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// `None` (before everything) is the smallest.
pub(crate) fn opt_pos_cmp(a: Option<&str>, b: Option<&str>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => pos_cmp(a, b),
    }
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, crate::Error> {
    serde_json::to_vec(v).map_err(|e| crate::Error::Internal(format!("encode: {e}")))
}

pub(crate) fn from_json<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, crate::Error> {
    serde_json::from_slice(b).map_err(|e| crate::Error::Internal(format!("decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_compare_numerically() {
        assert_eq!(pos_cmp("9", "10"), Ordering::Less);
        assert_eq!(
            pos_cmp(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692538361571095921575989136588899"
            ),
            Ordering::Less
        );
        assert_eq!(pos_cmp("10", "10"), Ordering::Equal);
        assert_eq!(opt_pos_cmp(None, Some("0")), Ordering::Less);
    }
}
