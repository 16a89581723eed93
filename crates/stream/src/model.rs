//! The engine's vocabulary: what callers pass in and get back, and the stream metadata kept
//! in the metadata store (one JSON document per stream, written in one transaction per change).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::seq::{shard_id, to_sequence};

/// The account and region a request acts in: streams live per account and region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    /// 12-digit account id.
    pub account: String,
    /// Region name, e.g. `us-east-1`.
    pub region: String,
}

/// How a request names a stream: by name, by ARN, or both (they must agree).
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamRef<'a> {
    /// `StreamName`.
    pub name: Option<&'a str>,
    /// `StreamARN`.
    pub arn: Option<&'a str>,
}

/// Capacity mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamMode {
    /// Shards are managed by the user.
    Provisioned,
    /// Shards are managed by the service (four, here).
    OnDemand,
}

impl StreamMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamMode::Provisioned => "PROVISIONED",
            StreamMode::OnDemand => "ON_DEMAND",
        }
    }
}

/// Stream status as DescribeStream reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamStatus {
    /// Just created; becomes ACTIVE after the configured delay.
    Creating,
    /// Being deleted.
    Deleting,
    /// Ready.
    Active,
    /// Resharding or changing mode; I/O continues.
    Updating,
}

impl StreamStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Creating => "CREATING",
            StreamStatus::Deleting => "DELETING",
            StreamStatus::Active => "ACTIVE",
            StreamStatus::Updating => "UPDATING",
        }
    }
}

/// One shard as persisted. Its log partition is its index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    /// `shardId-<index>`.
    pub index: u32,
    /// The shard split or merged into this one.
    pub parent: Option<u32>,
    /// The other parent of a merge.
    pub adjacent_parent: Option<u32>,
    /// First hash key, inclusive (decimal text in JSON: u128 does not fit a JSON number).
    #[serde(with = "u128_text")]
    pub start_hash: u128,
    /// Last hash key, inclusive.
    #[serde(with = "u128_text")]
    pub end_hash: u128,
    /// Log offset of the first sequence number this shard may hold.
    pub start_offset: u64,
    /// Last sequence number's offset once closed.
    pub end_offset: Option<u64>,
    /// When the shard opened, epoch ms.
    pub created_ms: i64,
    /// When the shard closed, epoch ms.
    pub closed_ms: Option<i64>,
}

impl ShardMeta {
    /// Whether records may still be written to it.
    pub fn is_open(&self) -> bool {
        self.end_offset.is_none()
    }

    /// The wire view.
    pub fn info(&self) -> ShardInfo {
        ShardInfo {
            shard_id: shard_id(self.index),
            parent: self.parent.map(shard_id),
            adjacent_parent: self.adjacent_parent.map(shard_id),
            start_hash: self.start_hash,
            end_hash: self.end_hash,
            start_sequence: to_sequence(self.start_offset),
            end_sequence: self.end_offset.map(to_sequence),
        }
    }
}

/// The persisted state of one stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamMeta {
    /// Format version of this document.
    pub version: u32,
    /// Unique id; names the log directory, so a re-created stream never sees old data.
    #[serde(with = "u128_text")]
    pub uid: u128,
    /// Stream name.
    pub name: String,
    /// Owning account.
    pub account: String,
    /// Region.
    pub region: String,
    /// Creation time, epoch ms.
    pub created_ms: i64,
    /// Capacity mode.
    pub mode: StreamMode,
    /// Retention in hours (24..=8760).
    pub retention_hours: u32,
    /// Every shard, open and closed, by index.
    pub shards: Vec<ShardMeta>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Until when the stream reports `busy_status` instead of ACTIVE.
    pub busy_until_ms: i64,
    /// CREATING or UPDATING while busy.
    pub busy_status: StreamStatus,
    /// Times of recent UpdateShardCount calls (rolling 24 h quota).
    pub scaling_events_ms: Vec<i64>,
    /// Enhanced (shard-level) monitoring metrics enabled on the stream.
    #[serde(default)]
    pub shard_level_metrics: Vec<String>,
}

/// The shard-level metrics Kinesis knows, in AWS's order (`ALL` stands for every one).
pub const SHARD_LEVEL_METRICS: &[&str] = &[
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
];

/// Enable/DisableEnhancedMonitoring's answer.
#[derive(Debug, Clone)]
pub struct MonitoringChange {
    /// Stream name.
    pub name: String,
    /// Stream ARN.
    pub arn: String,
    /// Metrics before the change.
    pub current: Vec<String>,
    /// Metrics after the change.
    pub desired: Vec<String>,
}

/// Current metadata document version.
pub const META_VERSION: u32 = 1;

impl StreamMeta {
    /// The status at `now`.
    pub fn status(&self, now_ms: i64) -> StreamStatus {
        if now_ms < self.busy_until_ms {
            self.busy_status
        } else {
            StreamStatus::Active
        }
    }

    /// Open shards sorted by starting hash key.
    pub fn open_shards(&self) -> impl Iterator<Item = &ShardMeta> {
        self.shards.iter().filter(|s| s.is_open())
    }

    /// The shard with this index.
    pub fn shard(&self, index: u32) -> Option<&ShardMeta> {
        self.shards.get(index as usize).filter(|s| s.index == index)
    }

    /// The retention horizon at `now`: records older than this are gone.
    pub fn horizon_ms(&self, now_ms: i64) -> i64 {
        now_ms - i64::from(self.retention_hours) * 3_600_000
    }

    /// Whether a closed shard has passed out of retention (no longer listed).
    pub fn shard_expired(&self, shard: &ShardMeta, now_ms: i64) -> bool {
        shard.closed_ms.is_some_and(|c| c < self.horizon_ms(now_ms))
    }
}

/// A shard as DescribeStream/ListShards show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// `shardId-…`.
    pub shard_id: String,
    /// Parent shard id.
    pub parent: Option<String>,
    /// Adjacent parent shard id (merges).
    pub adjacent_parent: Option<String>,
    /// First hash key.
    pub start_hash: u128,
    /// Last hash key.
    pub end_hash: u128,
    /// First sequence number.
    pub start_sequence: String,
    /// Last sequence number, once closed.
    pub end_sequence: Option<String>,
}

/// DescribeStream's answer.
#[derive(Debug, Clone)]
pub struct StreamDescription {
    /// Summary fields.
    pub summary: StreamSummary,
    /// One page of shards.
    pub shards: Vec<ShardInfo>,
    /// More shards after this page.
    pub has_more_shards: bool,
    /// Retention hours.
    pub retention_hours: u32,
    /// Open shard count (DescribeStreamSummary).
    pub open_shard_count: u32,
    /// Enabled shard-level metrics.
    pub shard_level_metrics: Vec<String>,
}

/// ListStreams' per-stream summary.
#[derive(Debug, Clone)]
pub struct StreamSummary {
    /// Name.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// Status.
    pub status: StreamStatus,
    /// Mode.
    pub mode: StreamMode,
    /// Creation time, epoch ms.
    pub created_ms: i64,
}

/// One record to put.
#[derive(Debug, Clone)]
pub struct PutEntry {
    /// Partition key (hashed with MD5 unless an explicit hash key is given).
    pub partition_key: String,
    /// Explicit hash key, already parsed.
    pub explicit_hash_key: Option<u128>,
    /// Payload.
    pub data: Vec<u8>,
}

/// The outcome of one record of a put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// Stored durably.
    Stored {
        /// Shard id.
        shard_id: String,
        /// Sequence number.
        sequence_number: String,
    },
    /// The shard's write limit was exceeded (only when limits are on).
    Throttled {
        /// AWS's message.
        message: String,
    },
}

/// Where a new iterator starts.
#[derive(Debug, Clone)]
pub enum IteratorStart {
    /// The oldest record still retained.
    TrimHorizon,
    /// Just after the newest record.
    Latest,
    /// At this sequence number.
    AtSequence(String),
    /// Just after this sequence number.
    AfterSequence(String),
    /// At the first record that arrived at or after this time (epoch ms).
    AtTimestamp(i64),
}

/// One record read back.
#[derive(Debug, Clone)]
pub struct RecordOut {
    /// Sequence number.
    pub sequence_number: String,
    /// Arrival time, epoch ms.
    pub arrival_ms: i64,
    /// Payload.
    pub data: Vec<u8>,
    /// Partition key.
    pub partition_key: String,
}

/// A child of a closed shard (GetRecords' `ChildShards`).
#[derive(Debug, Clone)]
pub struct ChildShard {
    /// Child shard id.
    pub shard_id: String,
    /// Its parents.
    pub parent_shards: Vec<String>,
    /// Its hash range.
    pub start_hash: u128,
    /// Its hash range end.
    pub end_hash: u128,
}

/// GetRecords' answer.
#[derive(Debug, Clone)]
pub struct GetRecordsOutput {
    /// The records, ascending.
    pub records: Vec<RecordOut>,
    /// Where to continue; `None` once a closed shard is read to its end.
    pub next_iterator: Option<String>,
    /// How far behind the tip the iterator is.
    pub millis_behind_latest: i64,
    /// Children, once a closed shard is read to its end.
    pub child_shards: Option<Vec<ChildShard>>,
}

/// ListShards' filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardFilter {
    /// Shards with a larger index than this one.
    AfterShardId(String),
    /// Shards open at the trim horizon.
    AtTrimHorizon,
    /// Every retained shard (the default).
    FromTrimHorizon,
    /// Open shards.
    AtLatest,
    /// Shards open at this time.
    AtTimestamp(i64),
    /// Shards open at or after this time.
    FromTimestamp(i64),
}

/// A page of ListShards.
#[derive(Debug, Clone)]
pub struct ShardPage {
    /// Shards.
    pub shards: Vec<ShardInfo>,
    /// Token for the next page.
    pub next_token: Option<String>,
}

/// A page of ListStreams.
#[derive(Debug, Clone)]
pub struct StreamPage {
    /// Summaries.
    pub streams: Vec<StreamSummary>,
    /// More after this page.
    pub has_more: bool,
    /// Token for the next page.
    pub next_token: Option<String>,
}

/// UpdateShardCount's answer.
#[derive(Debug, Clone)]
pub struct ShardCountUpdate {
    /// Stream name.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// Open shards before.
    pub current: u32,
    /// Open shards after.
    pub target: u32,
}

/// DescribeLimits' answer.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Shard quota per account and region.
    pub shard_limit: u32,
    /// Open shards in the account and region.
    pub open_shard_count: u32,
    /// On-demand streams.
    pub on_demand_stream_count: u32,
    /// On-demand stream quota.
    pub on_demand_stream_count_limit: u32,
}

mod u128_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
