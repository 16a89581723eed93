//! The stream engine: the registry of streams per account and region, the put and get paths,
//! resharding and retention.
//!
//! Concurrency: each stream has a `tokio::sync::RwLock` over its metadata. Puts hold the read
//! lock from routing until their records are durable, so resharding (which takes the write
//! lock) sees no write in flight: when it closes a shard at the log's next offset, no record
//! for that shard can get a larger offset.
//!
//! Durability: stream metadata is written to the metadata store in one transaction per
//! change, before the change is acknowledged; records go to the stream's log
//! (`kd_storage::log`), which acknowledges only durable appends. A stream's log directory is
//! created before its metadata commits and removed after its metadata is deleted; on start,
//! log directories no metadata names are removed (the crash window of both).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock as StdRwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kd_storage::{AppendBatch, Clock, FsyncPolicy, Log, LogConfig, MetaOp, MetaStore, Record};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::error::{Error, Result};
use crate::hash::{hash_key, uniform_ranges};
use crate::model::*;
use crate::seq::{ITERATOR_TTL_MS, IteratorToken, parse_sequence, parse_shard_id, shard_id, to_sequence};

/// Metadata table holding one JSON document per stream, keyed `account/region/name`.
const STREAMS_TABLE: &str = "kinesis_streams";
/// How long ListShards/ListStreams tokens live.
const TOKEN_TTL_MS: i64 = 300_000;
/// GetRecords' byte cap per call.
const MAX_GET_BYTES: usize = 10 * 1024 * 1024;
/// Per-shard write limits when enforced.
const SHARD_BYTES_PER_SEC: u64 = 1024 * 1024;
const SHARD_RECORDS_PER_SEC: u32 = 1000;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where stream logs live (`<dir>/<uid>/`).
    pub logs_dir: PathBuf,
    /// How long a new stream stays CREATING.
    pub create_delay_ms: i64,
    /// How long a resharded stream stays UPDATING.
    pub update_delay_ms: i64,
    /// Shards per account and region.
    pub shard_limit: u32,
    /// Shards of a new on-demand stream.
    pub on_demand_shards: u32,
    /// Answer ProvisionedThroughputExceededException past 1 MiB/s or 1,000 records/s per shard.
    pub enforce_write_limits: bool,
    /// Segment size of stream logs.
    pub segment_bytes: u64,
    /// When appends are synced to disk.
    pub fsync: FsyncPolicy,
}

impl Config {
    /// Defaults under `logs_dir`.
    pub fn new(logs_dir: impl Into<PathBuf>) -> Self {
        Self {
            logs_dir: logs_dir.into(),
            create_delay_ms: 100,
            update_delay_ms: 100,
            shard_limit: 500,
            on_demand_shards: 4,
            enforce_write_limits: false,
            segment_bytes: 64 * 1024 * 1024,
            fsync: FsyncPolicy::Always,
        }
    }
}

type StreamKey = (String, String, String);

struct Stream {
    key: StreamKey,
    uid: u128,
    arn: String,
    log: Arc<Log>,
    meta: RwLock<StreamMeta>,
    windows: Mutex<HashMap<u32, WriteWindow>>,
}

#[derive(Default, Clone, Copy)]
struct WriteWindow {
    second: i64,
    bytes: u64,
    records: u32,
}

#[derive(Default)]
struct Registry {
    by_key: BTreeMap<StreamKey, Arc<Stream>>,
    by_uid: HashMap<u128, Arc<Stream>>,
}

/// The Kinesis Data Streams engine.
pub struct Engine {
    config: Config,
    meta: Arc<MetaStore>,
    clock: Arc<dyn Clock>,
    registry: StdRwLock<Registry>,
    /// Serialises CreateStream so two racing creates of one name cannot both succeed.
    create_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn arn_of(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:kinesis:{region}:{account}:stream/{name}")
}

fn meta_key(account: &str, region: &str, name: &str) -> String {
    format!("{account}/{region}/{name}")
}

fn log_config(config: &Config) -> LogConfig {
    LogConfig {
        segment_bytes: config.segment_bytes,
        fsync: config.fsync,
    }
}

#[derive(Serialize, Deserialize)]
struct ShardsToken {
    #[serde(rename = "s")]
    stream: String,
    #[serde(rename = "a")]
    after: Option<u32>,
    #[serde(rename = "f")]
    filter: ShardFilter,
    #[serde(rename = "t")]
    issued_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct StreamsToken {
    #[serde(rename = "a")]
    after: String,
    #[serde(rename = "t")]
    issued_ms: i64,
}

fn encode_token<T: Serialize>(t: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(t).unwrap_or_default())
}

fn decode_token<T: for<'de> Deserialize<'de>>(s: &str) -> Option<T> {
    if s.len() > 1024 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(s.as_bytes()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl Engine {
    /// Opens the engine: loads every stream's metadata and recovers its log.
    pub fn open(config: Config, meta: Arc<MetaStore>, clock: Arc<dyn Clock>) -> Result<Self> {
        std::fs::create_dir_all(&config.logs_dir)
            .map_err(|e| Error::Internal(format!("cannot create {}: {e}", config.logs_dir.display())))?;
        let engine = Self {
            config,
            meta,
            clock,
            registry: StdRwLock::new(Registry::default()),
            create_lock: tokio::sync::Mutex::new(()),
        };
        let mut known = std::collections::HashSet::new();
        for (key, value) in engine.meta.scan_prefix(STREAMS_TABLE, "")? {
            let m: StreamMeta = serde_json::from_slice(&value)
                .map_err(|e| Error::Internal(format!("stream metadata {key} is unreadable: {e}")))?;
            let min_next = m
                .shards
                .iter()
                .map(|s| s.end_offset.map_or(s.start_offset, |e| e + 1))
                .max()
                .unwrap_or(0);
            let dir = engine.log_dir(m.uid);
            let log = Log::open(&dir, log_config(&engine.config), engine.clock.clone(), min_next)?;
            known.insert(format!("{:032x}", m.uid));
            engine.insert_stream(m, Arc::new(log));
        }
        // Remove logs of streams whose metadata never committed or was deleted.
        if let Ok(entries) = std::fs::read_dir(&engine.config.logs_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !known.contains(&name) && entry.path().is_dir() {
                    tracing::warn!(dir = %entry.path().display(), "removing stream log with no metadata");
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(engine)
    }

    fn log_dir(&self, uid: u128) -> PathBuf {
        self.config.logs_dir.join(format!("{uid:032x}"))
    }

    fn insert_stream(&self, m: StreamMeta, log: Arc<Log>) -> Arc<Stream> {
        let key = (m.account.clone(), m.region.clone(), m.name.clone());
        let stream = Arc::new(Stream {
            key: key.clone(),
            uid: m.uid,
            arn: arn_of(&m.region, &m.account, &m.name),
            log,
            meta: RwLock::new(m),
            windows: Mutex::new(HashMap::new()),
        });
        let mut reg = self.registry.write().unwrap_or_else(|p| p.into_inner());
        reg.by_uid.insert(stream.uid, stream.clone());
        reg.by_key.insert(key, stream.clone());
        stream
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn persist(&self, m: &StreamMeta) -> Result<()> {
        let value = serde_json::to_vec(m).map_err(|e| Error::Internal(e.to_string()))?;
        self.meta.write(vec![MetaOp::Put {
            table: STREAMS_TABLE.to_owned(),
            key: meta_key(&m.account, &m.region, &m.name),
            value,
        }])?;
        Ok(())
    }

    /// Finds a stream by name and/or ARN in the caller's scope.
    fn resolve(&self, scope: &Scope, r: StreamRef<'_>) -> Result<Arc<Stream>> {
        let name = match (r.name, r.arn) {
            (Some(n), None) => n.to_owned(),
            (name, Some(arn)) => {
                let (region, account, arn_name) = parse_stream_arn(arn)
                    .ok_or_else(|| Error::InvalidArgument(format!("StreamARN {arn} is invalid.")))?;
                if let Some(n) = name
                    && n != arn_name
                {
                    return Err(Error::InvalidArgument(format!(
                        "StreamName {n} does not match the stream name in StreamARN {arn}."
                    )));
                }
                if account != scope.account || region != scope.region {
                    return Err(Error::StreamNotFound {
                        stream: arn_name.to_owned(),
                        account: account.to_owned(),
                    });
                }
                arn_name.to_owned()
            }
            (None, None) => {
                return Err(Error::InvalidArgument(
                    "Either StreamName or StreamARN should be provided.".to_owned(),
                ));
            }
        };
        let key = (scope.account.clone(), scope.region.clone(), name);
        let reg = self.registry.read().unwrap_or_else(|p| p.into_inner());
        reg.by_key.get(&key).cloned().ok_or_else(|| Error::StreamNotFound {
            stream: key.2.clone(),
            account: scope.account.clone(),
        })
    }

    fn streams_in(&self, scope: &Scope) -> Vec<Arc<Stream>> {
        let reg = self.registry.read().unwrap_or_else(|p| p.into_inner());
        reg.by_key
            .range((scope.account.clone(), scope.region.clone(), String::new())..)
            .take_while(|(k, _)| k.0 == scope.account && k.1 == scope.region)
            .map(|(_, s)| s.clone())
            .collect()
    }

    fn all_streams(&self) -> Vec<Arc<Stream>> {
        let reg = self.registry.read().unwrap_or_else(|p| p.into_inner());
        reg.by_key.values().cloned().collect()
    }

    async fn open_shards_in(&self, scope: &Scope) -> u32 {
        let mut n = 0;
        for s in self.streams_in(scope) {
            n += s.meta.read().await.open_shards().count() as u32;
        }
        n
    }

    fn shard_limit_error(&self, scope: &Scope, current: u32, extra: u32) -> Error {
        Error::LimitExceeded(format!(
            "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: {}. Limit: {}. Number of additional shards that would have resulted from this request: {}. Refer to the AWS Service Limits page (https://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits.",
            scope.account, scope.region, current, self.config.shard_limit, extra
        ))
    }

    // ---------------------------------------------------------------- control plane

    /// CreateStream.
    pub async fn create_stream(
        &self,
        scope: &Scope,
        name: &str,
        shard_count: Option<u32>,
        mode: StreamMode,
        tags: BTreeMap<String, String>,
    ) -> Result<()> {
        let count = match (mode, shard_count) {
            (StreamMode::Provisioned, Some(n)) => n,
            (StreamMode::Provisioned, None) => {
                return Err(Error::InvalidArgument(
                    "ShardCount is required for PROVISIONED streams.".to_owned(),
                ));
            }
            (StreamMode::OnDemand, _) => self.config.on_demand_shards,
        };
        if count == 0 {
            return Err(Error::InvalidArgument("ShardCount must be at least 1.".to_owned()));
        }
        if tags.len() > 50 {
            return Err(Error::InvalidArgument(
                "A stream cannot have more than 50 tags.".to_owned(),
            ));
        }
        let _serial = self.create_lock.lock().await;
        let key = (scope.account.clone(), scope.region.clone(), name.to_owned());
        let exists = || Error::StreamExists {
            stream: name.to_owned(),
            account: scope.account.clone(),
        };
        if self
            .registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_key
            .contains_key(&key)
        {
            return Err(exists());
        }
        let current = self.open_shards_in(scope).await;
        if current + count > self.config.shard_limit {
            return Err(self.shard_limit_error(scope, current, count));
        }
        let now = self.now();
        let uid = uuid::Uuid::new_v4().as_u128();
        let shards = uniform_ranges(count)
            .into_iter()
            .enumerate()
            .map(|(i, (start, end))| ShardMeta {
                index: i as u32,
                parent: None,
                adjacent_parent: None,
                start_hash: start,
                end_hash: end,
                start_offset: 0,
                end_offset: None,
                created_ms: now,
                closed_ms: None,
            })
            .collect();
        let m = StreamMeta {
            version: META_VERSION,
            uid,
            name: name.to_owned(),
            account: scope.account.clone(),
            region: scope.region.clone(),
            created_ms: now,
            mode,
            retention_hours: 24,
            shards,
            tags,
            busy_until_ms: now + self.config.create_delay_ms,
            busy_status: StreamStatus::Creating,
            scaling_events_ms: Vec::new(),
            shard_level_metrics: Vec::new(),
        };
        let log = Log::open(&self.log_dir(uid), log_config(&self.config), self.clock.clone(), 0)?;
        if let Err(e) = self.persist(&m) {
            let _ = log.destroy();
            return Err(e);
        }
        let stream = self.insert_stream(m, Arc::new(log));
        tracing::info!(stream = %stream.arn, shards = count, "stream created");
        Ok(())
    }

    /// DeleteStream: gone at once (its records with it).
    pub async fn delete_stream(&self, scope: &Scope, r: StreamRef<'_>) -> Result<()> {
        let stream = self.resolve(scope, r)?;
        {
            let m = stream.meta.read().await;
            let status = m.status(self.now());
            if status == StreamStatus::Creating {
                return Err(not_active(&m, status));
            }
        }
        self.remove_stream(&stream)?;
        tracing::info!(stream = %stream.arn, "stream deleted");
        Ok(())
    }

    fn remove_stream(&self, stream: &Arc<Stream>) -> Result<()> {
        let (account, region, name) = &stream.key;
        self.meta.write(vec![MetaOp::Delete {
            table: STREAMS_TABLE.to_owned(),
            key: meta_key(account, region, name),
        }])?;
        {
            let mut reg = self.registry.write().unwrap_or_else(|p| p.into_inner());
            reg.by_key.remove(&stream.key);
            reg.by_uid.remove(&stream.uid);
        }
        // The log's files go once the last in-flight reader lets go of it; removing the
        // directory now is safe on Unix (open handles stay readable).
        if let Err(e) = std::fs::remove_dir_all(self.log_dir(stream.uid)) {
            tracing::warn!(error = %e, "could not remove a deleted stream's log directory");
        }
        Ok(())
    }

    /// Deletes every stream in every account (test-suite reset).
    pub async fn reset(&self) -> Result<()> {
        for s in self.all_streams() {
            // Wait for in-flight writes.
            let _guard = s.meta.write().await;
            self.remove_stream(&s)?;
        }
        Ok(())
    }

    /// Flushes every log to disk (shutdown).
    pub fn sync_all(&self) -> Result<()> {
        for s in self.all_streams() {
            s.log.sync()?;
        }
        Ok(())
    }

    fn description_summary(&self, stream: &Stream, m: &StreamMeta) -> StreamSummary {
        StreamSummary {
            name: m.name.clone(),
            arn: stream.arn.clone(),
            status: m.status(self.now()),
            mode: m.mode,
            created_ms: m.created_ms,
        }
    }

    /// DescribeStream (`limit` shards after `exclusive_start`), also DescribeStreamSummary.
    pub async fn describe_stream(
        &self,
        scope: &Scope,
        r: StreamRef<'_>,
        limit: usize,
        exclusive_start: Option<&str>,
    ) -> Result<StreamDescription> {
        let stream = self.resolve(scope, r)?;
        let m = stream.meta.read().await;
        let now = self.now();
        let after = match exclusive_start {
            Some(s) => Some(parse_shard_id(s).ok_or_else(|| Error::InvalidArgument(format!("Invalid ShardId {s}")))?),
            None => None,
        };
        let visible: Vec<&ShardMeta> = m
            .shards
            .iter()
            .filter(|s| !m.shard_expired(s, now))
            .filter(|s| after.is_none_or(|a| s.index > a))
            .collect();
        let has_more = visible.len() > limit;
        Ok(StreamDescription {
            summary: self.description_summary(&stream, &m),
            shards: visible.into_iter().take(limit).map(ShardMeta::info).collect(),
            has_more_shards: has_more,
            retention_hours: m.retention_hours,
            open_shard_count: m.open_shards().count() as u32,
            shard_level_metrics: m.shard_level_metrics.clone(),
        })
    }

    /// ListStreams.
    pub async fn list_streams(
        &self,
        scope: &Scope,
        limit: usize,
        exclusive_start: Option<&str>,
        next_token: Option<&str>,
    ) -> Result<StreamPage> {
        let after = match next_token {
            Some(t) => {
                let tok: StreamsToken =
                    decode_token(t).ok_or_else(|| Error::InvalidArgument(format!("Invalid NextToken: {t}")))?;
                if self.now() - tok.issued_ms > TOKEN_TTL_MS {
                    return Err(Error::ExpiredNextToken(format!("The NextToken {t} has expired.")));
                }
                Some(tok.after)
            }
            None => exclusive_start.map(str::to_owned),
        };
        let streams = self.streams_in(scope);
        let mut page = Vec::new();
        let mut has_more = false;
        for s in streams {
            if after.as_deref().is_some_and(|a| s.key.2.as_str() <= a) {
                continue;
            }
            if page.len() == limit {
                has_more = true;
                break;
            }
            let m = s.meta.read().await;
            page.push(self.description_summary(&s, &m));
        }
        let next_token = if has_more {
            page.last().map(|l| {
                encode_token(&StreamsToken {
                    after: l.name.clone(),
                    issued_ms: self.now(),
                })
            })
        } else {
            None
        };
        Ok(StreamPage {
            streams: page,
            has_more,
            next_token,
        })
    }

    /// ListShards. Either a stream (with optional start/filter) or a token from an earlier page.
    pub async fn list_shards(
        &self,
        scope: &Scope,
        r: StreamRef<'_>,
        next_token: Option<&str>,
        exclusive_start: Option<&str>,
        filter: Option<ShardFilter>,
        max_results: usize,
    ) -> Result<ShardPage> {
        let (stream, after, filter) = match next_token {
            Some(t) => {
                if r.name.is_some() {
                    return Err(Error::InvalidArgument(
                        "NextToken and StreamName cannot be provided together.".to_owned(),
                    ));
                }
                let tok: ShardsToken =
                    decode_token(t).ok_or_else(|| Error::InvalidArgument(format!("Invalid NextToken: {t}")))?;
                if self.now() - tok.issued_ms > TOKEN_TTL_MS {
                    return Err(Error::ExpiredNextToken(format!("The NextToken {t} has expired.")));
                }
                let stream = self.resolve(
                    scope,
                    StreamRef {
                        name: Some(&tok.stream),
                        arn: None,
                    },
                )?;
                (stream, tok.after, tok.filter)
            }
            None => {
                let stream = self.resolve(scope, r)?;
                let mut after = match exclusive_start {
                    Some(s) => {
                        Some(parse_shard_id(s).ok_or_else(|| Error::InvalidArgument(format!("Invalid ShardId {s}")))?)
                    }
                    None => None,
                };
                let filter = filter.unwrap_or(ShardFilter::FromTrimHorizon);
                if let ShardFilter::AfterShardId(id) = &filter {
                    let idx =
                        parse_shard_id(id).ok_or_else(|| Error::InvalidArgument(format!("Invalid ShardId {id}")))?;
                    after = Some(after.map_or(idx, |a| a.max(idx)));
                }
                (stream, after, filter)
            }
        };
        let m = stream.meta.read().await;
        let now = self.now();
        let horizon = m.horizon_ms(now);
        let open_at = |s: &ShardMeta, t: i64| s.created_ms <= t && s.closed_ms.is_none_or(|c| c > t);
        let selected: Vec<&ShardMeta> = m
            .shards
            .iter()
            .filter(|s| !m.shard_expired(s, now))
            .filter(|s| after.is_none_or(|a| s.index > a))
            .filter(|s| match &filter {
                ShardFilter::AfterShardId(_) | ShardFilter::FromTrimHorizon => true,
                ShardFilter::AtTrimHorizon => open_at(s, horizon.max(m.created_ms)),
                ShardFilter::AtLatest => s.is_open(),
                ShardFilter::AtTimestamp(t) => open_at(s, (*t).max(m.created_ms)),
                ShardFilter::FromTimestamp(t) => s.closed_ms.is_none_or(|c| c > *t),
            })
            .collect();
        let more = selected.len() > max_results;
        let shards: Vec<ShardInfo> = selected.into_iter().take(max_results).map(ShardMeta::info).collect();
        let next_token = if more {
            m.shards
                .iter()
                .find(|s| shard_id(s.index) == shards.last().map(|l| l.shard_id.clone()).unwrap_or_default())
                .map(|last| {
                    encode_token(&ShardsToken {
                        stream: m.name.clone(),
                        after: Some(last.index),
                        filter: filter.clone(),
                        issued_ms: now,
                    })
                })
        } else {
            None
        };
        Ok(ShardPage { shards, next_token })
    }

    /// Increase/DecreaseStreamRetentionPeriod.
    pub async fn set_retention(&self, scope: &Scope, r: StreamRef<'_>, hours: u32, increase: bool) -> Result<()> {
        let stream = self.resolve(scope, r)?;
        let mut m = stream.meta.write().await;
        if !(24..=8760).contains(&hours) {
            return Err(Error::InvalidArgument(format!(
                "Minimum allowed retention period is 24 hours. Maximum allowed retention period is 8760 hours. Requested retention period ({hours} hours) is out of range."
            )));
        }
        if increase && hours < m.retention_hours {
            return Err(Error::InvalidArgument(format!(
                "Requested retention period ({hours} hours) for stream {} can not be shorter than existing retention period ({} hours). Use DecreaseRetentionPeriod API.",
                m.name, m.retention_hours
            )));
        }
        if !increase && hours > m.retention_hours {
            return Err(Error::InvalidArgument(format!(
                "Requested retention period ({hours} hours) for stream {} can not be longer than existing retention period ({} hours). Use IncreaseRetentionPeriod API.",
                m.name, m.retention_hours
            )));
        }
        let mut next = m.clone();
        next.retention_hours = hours;
        self.persist(&next)?;
        *m = next;
        Ok(())
    }

    /// AddTagsToStream.
    pub async fn add_tags(&self, scope: &Scope, r: StreamRef<'_>, tags: BTreeMap<String, String>) -> Result<()> {
        let stream = self.resolve(scope, r)?;
        let mut m = stream.meta.write().await;
        let mut next = m.clone();
        next.tags.extend(tags);
        if next.tags.len() > 50 {
            return Err(Error::InvalidArgument(format!(
                "Failed to add tags to stream {} under account {} because a given stream cannot have more than 50 tags.",
                m.name, m.account
            )));
        }
        self.persist(&next)?;
        *m = next;
        Ok(())
    }

    /// RemoveTagsFromStream.
    pub async fn remove_tags(&self, scope: &Scope, r: StreamRef<'_>, keys: &[String]) -> Result<()> {
        let stream = self.resolve(scope, r)?;
        let mut m = stream.meta.write().await;
        let mut next = m.clone();
        for k in keys {
            next.tags.remove(k);
        }
        self.persist(&next)?;
        *m = next;
        Ok(())
    }

    /// ListTagsForStream: (tags, has_more).
    pub async fn list_tags(
        &self,
        scope: &Scope,
        r: StreamRef<'_>,
        exclusive_start: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<(String, String)>, bool)> {
        let stream = self.resolve(scope, r)?;
        let m = stream.meta.read().await;
        let all: Vec<(String, String)> = m
            .tags
            .iter()
            .filter(|(k, _)| exclusive_start.is_none_or(|s| k.as_str() > s))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let more = all.len() > limit;
        Ok((all.into_iter().take(limit).collect(), more))
    }

    /// DescribeLimits.
    pub async fn describe_limits(&self, scope: &Scope) -> Limits {
        let mut open = 0;
        let mut on_demand = 0;
        for s in self.streams_in(scope) {
            let m = s.meta.read().await;
            open += m.open_shards().count() as u32;
            on_demand += u32::from(m.mode == StreamMode::OnDemand);
        }
        Limits {
            shard_limit: self.config.shard_limit,
            open_shard_count: open,
            on_demand_stream_count: on_demand,
            on_demand_stream_count_limit: 50,
        }
    }

    // ---------------------------------------------------------------- resharding

    fn check_reshardable(m: &StreamMeta, now: i64) -> Result<()> {
        if m.mode == StreamMode::OnDemand {
            return Err(Error::Validation(format!(
                "Request is invalid. Stream {} under account {} is in On-Demand mode.",
                m.name, m.account
            )));
        }
        let status = m.status(now);
        if status != StreamStatus::Active {
            return Err(not_active(m, status));
        }
        Ok(())
    }

    fn open_shard<'m>(m: &'m StreamMeta, id: &str) -> Result<&'m ShardMeta> {
        let idx = parse_shard_id(id).and_then(|i| m.shard(i)).ok_or_else(|| {
            Error::ShardNotFound(format!(
                "Shard {id} in stream {} under account {} does not exist",
                m.name, m.account
            ))
        })?;
        if !idx.is_open() {
            return Err(Error::ShardNotFound(format!(
                "Shard {id} in stream {} under account {} has already been merged or split, and thus is not eligible for merging or splitting.",
                m.name, m.account
            )));
        }
        Ok(idx)
    }

    /// Closes `parents` and opens children with the given ranges, all at the log's next
    /// offset. Returns the new shards' indexes.
    fn reshard(
        m: &mut StreamMeta,
        boundary: u64,
        now: i64,
        closing: &[u32],
        children: &[(u128, u128, Option<u32>, Option<u32>)],
    ) -> Vec<u32> {
        for &p in closing {
            if let Some(s) = m.shards.get_mut(p as usize) {
                s.end_offset = Some(boundary.saturating_sub(1).max(s.start_offset));
                s.closed_ms = Some(now);
            }
        }
        let mut made = Vec::new();
        for &(start, end, parent, adjacent) in children {
            let index = m.shards.len() as u32;
            m.shards.push(ShardMeta {
                index,
                parent,
                adjacent_parent: adjacent,
                start_hash: start,
                end_hash: end,
                start_offset: boundary,
                end_offset: None,
                created_ms: now,
                closed_ms: None,
            });
            made.push(index);
        }
        made
    }

    /// SplitShard.
    pub async fn split_shard(&self, scope: &Scope, r: StreamRef<'_>, shard: &str, new_start: u128) -> Result<()> {
        let stream = self.resolve(scope, r)?;
        let current = self.open_shards_in(scope).await;
        let mut m = stream.meta.write().await;
        let now = self.now();
        Self::check_reshardable(&m, now)?;
        let parent = Self::open_shard(&m, shard)?.clone();
        if new_start <= parent.start_hash || new_start > parent.end_hash {
            return Err(Error::InvalidArgument(format!(
                "NewStartingHashKey {new_start} used in SplitShard() on shard {shard} in stream {} under account {} is not both greater than one plus the shard's StartingHashKey {} and less than the shard's EndingHashKey {}.",
                m.name, m.account, parent.start_hash, parent.end_hash
            )));
        }
        if current + 1 > self.config.shard_limit {
            return Err(self.shard_limit_error(scope, current, 1));
        }
        let mut next = m.clone();
        let boundary = stream.log.next_offset();
        Self::reshard(
            &mut next,
            boundary,
            now,
            &[parent.index],
            &[
                (parent.start_hash, new_start - 1, Some(parent.index), None),
                (new_start, parent.end_hash, Some(parent.index), None),
            ],
        );
        next.busy_until_ms = now + self.config.update_delay_ms;
        next.busy_status = StreamStatus::Updating;
        self.persist(&next)?;
        *m = next;
        Ok(())
    }

    /// MergeShards.
    pub async fn merge_shards(&self, scope: &Scope, r: StreamRef<'_>, shard: &str, adjacent: &str) -> Result<()> {
        let stream = self.resolve(scope, r)?;
        let mut m = stream.meta.write().await;
        let now = self.now();
        Self::check_reshardable(&m, now)?;
        let a = Self::open_shard(&m, shard)?.clone();
        let b = Self::open_shard(&m, adjacent)?.clone();
        let adjacent_pair =
            a.end_hash.checked_add(1) == Some(b.start_hash) || b.end_hash.checked_add(1) == Some(a.start_hash);
        if !adjacent_pair {
            return Err(Error::InvalidArgument(format!(
                "Shards {shard} and {adjacent} in stream {} under account {} are not an adjacent pair of shards eligible for merging",
                m.name, m.account
            )));
        }
        let mut next = m.clone();
        let boundary = stream.log.next_offset();
        Self::reshard(
            &mut next,
            boundary,
            now,
            &[a.index, b.index],
            &[(
                a.start_hash.min(b.start_hash),
                a.end_hash.max(b.end_hash),
                Some(a.index),
                Some(b.index),
            )],
        );
        next.busy_until_ms = now + self.config.update_delay_ms;
        next.busy_status = StreamStatus::Updating;
        self.persist(&next)?;
        *m = next;
        Ok(())
    }

    /// UpdateShardCount (UNIFORM_SCALING), done as AWS does it: split every open shard at the
    /// new uniform boundaries, then merge the pieces of each new range, so every shard has at
    /// most two parents and lineage stays exact. Intermediate shards open and close at once.
    pub async fn update_shard_count(&self, scope: &Scope, r: StreamRef<'_>, target: u32) -> Result<ShardCountUpdate> {
        let stream = self.resolve(scope, r)?;
        let others = self.open_shards_in(scope).await;
        let mut m = stream.meta.write().await;
        let now = self.now();
        Self::check_reshardable(&m, now)?;
        let mut open: Vec<ShardMeta> = m.open_shards().cloned().collect();
        open.sort_by_key(|s| s.start_hash);
        let current = open.len() as u32;
        if target == 0 || target > current.saturating_mul(2) {
            return Err(Error::InvalidArgument(format!(
                "UpdateShardCount cannot scale up over double your current open shard count. Current open shard count: {current} Target shard count: {target}"
            )));
        }
        if target.saturating_mul(2) < current {
            return Err(Error::InvalidArgument(format!(
                "UpdateShardCount cannot scale down below half your current open shard count. Current open shard count: {current} Target shard count: {target}"
            )));
        }
        let others = others - current;
        if others + target > self.config.shard_limit {
            return Err(self.shard_limit_error(scope, others + current, target.saturating_sub(current)));
        }
        let recent: Vec<i64> = m
            .scaling_events_ms
            .iter()
            .copied()
            .filter(|t| now - t < 86_400_000)
            .collect();
        if recent.len() >= 10 {
            return Err(Error::LimitExceeded(format!(
                "Exceeded the limit of 10 UpdateShardCount calls per rolling 24 hours for stream {} under account {}.",
                m.name, m.account
            )));
        }
        let mut next = m.clone();
        next.scaling_events_ms = recent;
        next.scaling_events_ms.push(now);
        if target != current
            || open
                .iter()
                .zip(uniform_ranges(target))
                .any(|(s, r)| (s.start_hash, s.end_hash) != r)
        {
            let boundary = stream.log.next_offset();
            for (start, end) in uniform_ranges(target) {
                // Pieces of the open shards that fall inside [start, end].
                let mut pieces: Vec<u32> = Vec::new();
                let overlapping: Vec<ShardMeta> = open
                    .iter()
                    .filter(|s| s.start_hash <= end && s.end_hash >= start)
                    .cloned()
                    .collect();
                if overlapping.len() == 1 && overlapping[0].start_hash == start && overlapping[0].end_hash == end {
                    continue; // already exactly this range
                }
                for s in overlapping {
                    let lo = s.start_hash.max(start);
                    let hi = s.end_hash.min(end);
                    if lo == s.start_hash && hi == s.end_hash {
                        pieces.push(s.index);
                        continue;
                    }
                    // Split `s` (possibly already split by a previous range) so [lo, hi] is a shard.
                    let current_holder = next
                        .open_shards()
                        .find(|x| x.start_hash <= lo && x.end_hash >= hi)
                        .cloned()
                        .ok_or_else(|| Error::Internal("lost track of a shard while rescaling".to_owned()))?;
                    let mut holder = current_holder;
                    if holder.start_hash < lo {
                        let made = Self::reshard(
                            &mut next,
                            boundary,
                            now,
                            &[holder.index],
                            &[
                                (holder.start_hash, lo - 1, Some(holder.index), None),
                                (lo, holder.end_hash, Some(holder.index), None),
                            ],
                        );
                        holder = next.shards[made[1] as usize].clone();
                    }
                    if holder.end_hash > hi {
                        let made = Self::reshard(
                            &mut next,
                            boundary,
                            now,
                            &[holder.index],
                            &[
                                (holder.start_hash, hi, Some(holder.index), None),
                                (hi + 1, holder.end_hash, Some(holder.index), None),
                            ],
                        );
                        holder = next.shards[made[0] as usize].clone();
                    }
                    pieces.push(holder.index);
                }
                // Merge the pieces left to right into one shard covering [start, end].
                let mut acc = pieces.first().copied();
                for &p in pieces.iter().skip(1) {
                    let Some(a) = acc else { break };
                    let (sa, sb) = (next.shards[a as usize].clone(), next.shards[p as usize].clone());
                    let made = Self::reshard(
                        &mut next,
                        boundary,
                        now,
                        &[a, p],
                        &[(sa.start_hash, sb.end_hash, Some(a), Some(p))],
                    );
                    acc = made.first().copied();
                }
            }
            next.busy_until_ms = now + self.config.update_delay_ms;
            next.busy_status = StreamStatus::Updating;
        }
        self.persist(&next)?;
        let name = next.name.clone();
        *m = next;
        Ok(ShardCountUpdate {
            name,
            arn: stream.arn.clone(),
            current,
            target,
        })
    }

    /// Enable/DisableEnhancedMonitoring: adds or removes shard-level metrics (`ALL` = every
    /// one). The metrics are recorded and reported; kinesis-data publishes no CloudWatch data.
    pub async fn set_enhanced_monitoring(
        &self,
        scope: &Scope,
        r: StreamRef<'_>,
        metrics: &[String],
        enable: bool,
    ) -> Result<MonitoringChange> {
        let stream = self.resolve(scope, r)?;
        let mut m = stream.meta.write().await;
        let named: Vec<&str> = if metrics.iter().any(|x| x == "ALL") {
            SHARD_LEVEL_METRICS.to_vec()
        } else {
            metrics.iter().map(String::as_str).collect()
        };
        let current = m.shard_level_metrics.clone();
        let desired: Vec<String> = SHARD_LEVEL_METRICS
            .iter()
            .filter(|x| {
                let wanted = named.contains(x);
                let has = current.iter().any(|c| c == *x);
                if enable { has || wanted } else { has && !wanted }
            })
            .map(|x| (*x).to_owned())
            .collect();
        let mut next = m.clone();
        next.shard_level_metrics = desired.clone();
        self.persist(&next)?;
        let name = next.name.clone();
        *m = next;
        Ok(MonitoringChange {
            name,
            arn: stream.arn.clone(),
            current,
            desired,
        })
    }

    /// UpdateStreamMode.
    pub async fn update_stream_mode(&self, scope: &Scope, r: StreamRef<'_>, mode: StreamMode) -> Result<()> {
        let stream = self.resolve(scope, r)?;
        let mut m = stream.meta.write().await;
        let now = self.now();
        let status = m.status(now);
        if status != StreamStatus::Active {
            return Err(not_active(&m, status));
        }
        let mut next = m.clone();
        next.mode = mode;
        self.persist(&next)?;
        *m = next;
        Ok(())
    }

    // ---------------------------------------------------------------- data plane

    /// Routes records to open shards (and applies write limits when on): per shard the
    /// input positions and records, plus outcomes already decided (throttled records).
    #[allow(clippy::type_complexity)]
    fn route(
        &self,
        stream: &Stream,
        m: &StreamMeta,
        now: i64,
        entries: Vec<PutEntry>,
    ) -> Result<(Vec<Option<PutOutcome>>, Vec<(u32, Vec<usize>, Vec<Record>)>)> {
        let mut routes: Vec<(u128, u128, u32)> = m.open_shards().map(|s| (s.start_hash, s.end_hash, s.index)).collect();
        routes.sort_unstable();
        let mut outcomes: Vec<Option<PutOutcome>> = vec![None; entries.len()];
        let mut by_shard: Vec<(u32, Vec<usize>, Vec<Record>)> = Vec::new();
        let mut windows = self
            .config
            .enforce_write_limits
            .then(|| stream.windows.lock().unwrap_or_else(|p| p.into_inner()));
        for (i, e) in entries.into_iter().enumerate() {
            let h = e.explicit_hash_key.unwrap_or_else(|| hash_key(&e.partition_key));
            let pos = routes.partition_point(|r| r.1 < h);
            let Some(&(_, _, shard)) = routes.get(pos).filter(|r| r.0 <= h) else {
                return Err(Error::Internal(format!(
                    "no open shard holds hash key {h} ({} open)",
                    routes.len()
                )));
            };
            if let Some(w) = windows.as_mut() {
                let size = (e.data.len() + e.partition_key.len()) as u64;
                let win = w.entry(shard).or_default();
                let second = now.div_euclid(1000);
                if win.second != second {
                    *win = WriteWindow {
                        second,
                        bytes: 0,
                        records: 0,
                    };
                }
                if win.records + 1 > SHARD_RECORDS_PER_SEC || win.bytes + size > SHARD_BYTES_PER_SEC {
                    outcomes[i] = Some(PutOutcome::Throttled {
                        message: format!(
                            "Rate exceeded for shard {} in stream {} under account {}.",
                            shard_id(shard),
                            m.name,
                            m.account
                        ),
                    });
                    continue;
                }
                win.records += 1;
                win.bytes += size;
            }
            let slot = match by_shard.iter().position(|(s, _, _)| *s == shard) {
                Some(k) => k,
                None => {
                    by_shard.push((shard, Vec::new(), Vec::new()));
                    by_shard.len() - 1
                }
            };
            by_shard[slot].1.push(i);
            by_shard[slot].2.push(Record {
                key: e.partition_key.into_bytes(),
                data: e.data,
            });
        }
        Ok((outcomes, by_shard))
    }

    /// PutRecord/PutRecords: routes each record to the open shard whose range holds its hash
    /// key and appends them durably; one outcome per record, in order.
    pub async fn put_records(
        &self,
        scope: &Scope,
        r: StreamRef<'_>,
        entries: Vec<PutEntry>,
    ) -> Result<Vec<PutOutcome>> {
        let stream = self.resolve(scope, r)?;
        let m = stream.meta.read().await;
        let now = self.now();
        match m.status(now) {
            StreamStatus::Active | StreamStatus::Updating => {}
            StreamStatus::Creating | StreamStatus::Deleting => {
                return Err(Error::StreamNotFound {
                    stream: m.name.clone(),
                    account: m.account.clone(),
                });
            }
        }
        let (mut outcomes, by_shard) = self.route(&stream, &m, now, entries)?;
        let mut positions = Vec::with_capacity(by_shard.len());
        let mut batches = Vec::with_capacity(by_shard.len());
        for (shard, pos, records) in by_shard {
            positions.push(pos);
            batches.push(AppendBatch {
                partition: shard,
                records,
            });
        }
        if !batches.is_empty() {
            let appended = stream.log.append(batches).await?;
            for (a, pos) in appended.iter().zip(positions) {
                for (k, i) in pos.into_iter().enumerate() {
                    outcomes[i] = Some(PutOutcome::Stored {
                        shard_id: shard_id(a.partition),
                        sequence_number: to_sequence(a.first_offset + k as u64),
                    });
                }
            }
        }
        drop(m);
        outcomes
            .into_iter()
            .map(|o| o.ok_or_else(|| Error::Internal("a record got no outcome".to_owned())))
            .collect()
    }

    /// GetShardIterator.
    pub async fn get_shard_iterator(
        &self,
        scope: &Scope,
        r: StreamRef<'_>,
        shard: &str,
        start: IteratorStart,
    ) -> Result<String> {
        let stream = self.resolve(scope, r)?;
        let m = stream.meta.read().await;
        let now = self.now();
        let s = parse_shard_id(shard)
            .and_then(|i| m.shard(i))
            .filter(|s| !m.shard_expired(s, now))
            .ok_or_else(|| {
                Error::ShardNotFound(format!(
                    "Shard {shard} in stream {} under account {} does not exist",
                    m.name, m.account
                ))
            })?;
        let tip_next = stream.log.partition_tip(s.index).map_or(s.start_offset, |(o, _)| o + 1);
        let in_shard = |seq: &str| -> Result<u64> {
            let off = parse_sequence(seq).filter(|o| *o >= s.start_offset && s.end_offset.is_none_or(|e| *o <= e));
            off.ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "Invalid StartingSequenceNumber. It encodes {}, while it was used in a call to a shard with {}",
                    seq,
                    shard_id(s.index)
                ))
            })
        };
        let offset = match start {
            IteratorStart::TrimHorizon => s.start_offset,
            IteratorStart::Latest => tip_next,
            IteratorStart::AtSequence(seq) => in_shard(&seq)?,
            IteratorStart::AfterSequence(seq) => in_shard(&seq)? + 1,
            IteratorStart::AtTimestamp(t) => {
                if t > now {
                    return Err(Error::InvalidArgument(format!(
                        "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: {t}, currentTimestampInMillis: {now}"
                    )));
                }
                stream
                    .log
                    .offset_at_time(s.index, t)
                    .map_or(tip_next, |o| o.max(s.start_offset))
            }
        };
        Ok(IteratorToken {
            stream_uid: stream.uid,
            shard: s.index,
            offset,
            issued_ms: now,
        }
        .encode())
    }

    /// GetRecords.
    pub async fn get_records(&self, scope: &Scope, iterator: &str, limit: usize) -> Result<GetRecordsOutput> {
        let tok = IteratorToken::decode(iterator)
            .ok_or_else(|| Error::InvalidArgument("Invalid ShardIterator.".to_owned()))?;
        let now = self.now();
        if now - tok.issued_ms > ITERATOR_TTL_MS {
            return Err(Error::ExpiredIterator(format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {} milliseconds.",
                tok.issued_ms, now, ITERATOR_TTL_MS
            )));
        }
        let stream = {
            let reg = self.registry.read().unwrap_or_else(|p| p.into_inner());
            reg.by_uid.get(&tok.stream_uid).cloned()
        };
        let stream = stream
            .filter(|s| s.key.0 == scope.account && s.key.1 == scope.region)
            .ok_or_else(|| Error::InvalidArgument("Invalid ShardIterator: its stream no longer exists.".to_owned()))?;
        let m = stream.meta.read().await;
        let shard = m
            .shard(tok.shard)
            .cloned()
            .ok_or_else(|| Error::InvalidArgument("Invalid ShardIterator.".to_owned()))?;
        let horizon = m.horizon_ms(now);
        let children: Vec<ChildShard> = m
            .shards
            .iter()
            .filter(|c| c.parent == Some(shard.index) || c.adjacent_parent == Some(shard.index))
            .map(|c| ChildShard {
                shard_id: shard_id(c.index),
                parent_shards: c.parent.into_iter().chain(c.adjacent_parent).map(shard_id).collect(),
                start_hash: c.start_hash,
                end_hash: c.end_hash,
            })
            .collect();
        drop(m);
        let log = stream.log.clone();
        let partition = tok.shard;
        let from = tok.offset;
        let read = tokio::task::spawn_blocking(move || log.read(partition, from, limit, MAX_GET_BYTES, horizon))
            .await
            .map_err(|e| Error::Internal(format!("read task failed: {e}")))??;
        let next_offset = read.next_offset.max(from);
        let tip = stream.log.partition_tip(partition);
        let caught_up = tip.is_none_or(|(o, _)| o < next_offset);
        let millis_behind = match (caught_up, read.records.last(), tip) {
            (true, _, _) => 0,
            (false, Some(last), Some((_, tip_ts))) => (tip_ts - last.timestamp_ms).max(0),
            (false, None, Some((_, tip_ts))) => (now - tip_ts).max(0),
            (false, _, None) => 0,
        };
        let at_end = !shard.is_open() && caught_up;
        let records = read
            .records
            .into_iter()
            .map(|r| RecordOut {
                sequence_number: to_sequence(r.offset),
                arrival_ms: r.timestamp_ms,
                data: r.data,
                partition_key: String::from_utf8(r.key)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            })
            .collect();
        Ok(GetRecordsOutput {
            records,
            next_iterator: (!at_end).then(|| {
                IteratorToken {
                    stream_uid: stream.uid,
                    shard: partition,
                    offset: next_offset,
                    issued_ms: now,
                }
                .encode()
            }),
            millis_behind_latest: millis_behind,
            child_shards: at_end.then_some(children),
        })
    }

    /// The ARN of the stream an iterator reads (for authorisation), if it is one of ours.
    pub fn stream_arn_of_iterator(&self, iterator: &str) -> Option<String> {
        let tok = IteratorToken::decode(iterator)?;
        let reg = self.registry.read().unwrap_or_else(|p| p.into_inner());
        reg.by_uid.get(&tok.stream_uid).map(|s| s.arn.clone())
    }

    /// Deletes log segments past every stream's retention. Run periodically.
    pub async fn enforce_retention(&self) -> Result<usize> {
        let now = self.now();
        let mut removed = 0;
        for s in self.all_streams() {
            let horizon = s.meta.read().await.horizon_ms(now);
            removed += s.log.trim_before(horizon)?;
        }
        Ok(removed)
    }

    /// The directory holding the stream's log (tests use it to inspect files).
    pub fn log_dir_of(&self, scope: &Scope, name: &str) -> Option<PathBuf> {
        let key = (scope.account.clone(), scope.region.clone(), name.to_owned());
        let reg = self.registry.read().unwrap_or_else(|p| p.into_inner());
        reg.by_key.get(&key).map(|s| self.log_dir(s.uid))
    }

    /// The log of a stream, for fault-injection in tests.
    pub fn log_of(&self, scope: &Scope, name: &str) -> Option<Arc<Log>> {
        let key = (scope.account.clone(), scope.region.clone(), name.to_owned());
        let reg = self.registry.read().unwrap_or_else(|p| p.into_inner());
        reg.by_key.get(&key).map(|s| s.log.clone())
    }

    /// The engine's root directory for logs.
    pub fn logs_dir(&self) -> &Path {
        &self.config.logs_dir
    }
}

fn not_active(m: &StreamMeta, status: StreamStatus) -> Error {
    Error::ResourceInUse(format!(
        "Stream {} under account {} not ACTIVE, instead in state {}",
        m.name,
        m.account,
        status.as_str()
    ))
}

/// `arn:aws:kinesis:<region>:<account>:stream/<name>` → (region, account, name).
pub fn parse_stream_arn(arn: &str) -> Option<(&str, &str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (arn_lit, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if arn_lit != "arn" || !partition.starts_with("aws") || service != "kinesis" {
        return None;
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let name = resource.strip_prefix("stream/")?;
    let name = name.split('/').next()?; // consumers: stream/<name>/consumer/...
    (!name.is_empty()).then_some((region, account, name))
}
