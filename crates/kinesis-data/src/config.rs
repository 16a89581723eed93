//! The configuration tree (`--config FILE`, TOML). Every field has a default, so an empty
//! file (or none) is a working setup; command-line flags override the file.
//!
//! ```toml
//! listen = "127.0.0.1:4566"          # address of the one port every service answers on
//! data_dir = "/var/lib/kinesis-data"  # default: $XDG_DATA_HOME/kinesis-data or ~/.local/share/kinesis-data
//! region = "us-east-1"                # region of requests without a credential scope
//! account_id = "000000000000"         # account of the default access key
//! access_key_id = "test"
//! secret_access_key = "test"
//! allow_reset = true                  # serve POST /_kinesis-data/reset
//! iam = "on"                          # "off": no authorisation (authentication stays on)
//!
//! [[extra_access_keys]]               # more keys, possibly in other accounts
//! access_key_id = "AKIDOTHER"
//! secret_access_key = "other"
//! account_id = "111111111111"
//!
//! [kinesis]
//! create_delay_ms = 100               # CREATING → ACTIVE
//! update_delay_ms = 100               # UPDATING → ACTIVE after resharding
//! shard_limit = 500                   # shards per account and region
//! enforce_write_limits = false        # 1 MiB/s and 1,000 records/s per shard
//! segment_mib = 64                    # log segment size
//! fsync = "always"                    # "always" | "interval" | "never"
//! fsync_interval_ms = 100             # with fsync = "interval"
//! retention_check_secs = 60           # how often expired segments (and expired CloudWatch Logs events) are deleted
//!
//! [s3]
//! base_domains = ["localhost"]        # <bucket>.localhost:4566 is a virtual-hosted bucket
//! min_part_size = 5242880             # smallest multipart part but the last
//! inline_max = 65536                  # objects up to this size live in the metadata store
//! replication_parallelism = 8         # live replications run at once
//!
//! [firehose]
//! create_delay_ms = 200               # CREATING → ACTIVE
//! gzip_level = 1                      # GZIP/ZIP compression level (0–9)
//! poll_interval_ms = 200              # how often stream-sourced delivery streams read their stream
//! start_at_trim_horizon = false       # stream sources start at TRIM_HORIZON instead of LATEST
//!
//! [apigateway]
//! integration_timeout_ms = 29000      # default timeoutInMillis of an integration (504 after it)
//!
//! [athena]
//! output_location = "s3://athena-results/"  # the `primary` workgroup's OutputLocation until
//!                                           # UpdateWorkGroup changes it (default: none, so
//!                                           # StartQueryExecution must name one)
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Default region.
    pub region: String,
    /// Account of the default key.
    pub account_id: String,
    /// Default access key id.
    pub access_key_id: String,
    /// Default secret key.
    pub secret_access_key: String,
    /// Whether `/_kinesis-data/reset` is served.
    pub allow_reset: bool,
    /// `on`: every non-root principal may do only what its policies allow; `off`: every
    /// authenticated request is allowed (authentication stays on).
    pub iam: String,
    /// More keys.
    pub extra_access_keys: Vec<KeyConfig>,
    /// Kinesis settings.
    pub kinesis: KinesisConfig,
    /// S3 settings.
    pub s3: S3Config,
    /// Firehose settings.
    pub firehose: FirehoseConfig,
    /// Lambda settings.
    pub lambda: LambdaConfig,
    /// S3 Batch Operations settings.
    pub batch: BatchConfig,
    /// API Gateway settings.
    pub apigateway: ApiGatewayConfig,
    /// Athena settings.
    pub athena: AthenaConfig,
    /// CloudFormation settings.
    pub cloudformation: CloudFormationConfig,
}

/// CloudFormation settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudFormationConfig {
    /// How long a custom resource's function has to answer at its ResponseURL before the
    /// resource fails (AWS: one hour).
    pub custom_resource_timeout_secs: u64,
    /// Every stack records resources of unsupported types as placeholders, with a warning
    /// in their event, instead of failing (what `kinesis-data deploy --allow-unsupported`
    /// asks for one stack).
    pub allow_unsupported: bool,
}

impl Default for CloudFormationConfig {
    fn default() -> Self {
        Self {
            custom_resource_timeout_secs: 3600,
            allow_unsupported: false,
        }
    }
}

/// Athena settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AthenaConfig {
    /// The `primary` workgroup's result location (`s3://bucket/path/`), used by queries whose
    /// StartQueryExecution names no `ResultConfiguration.OutputLocation`, until an
    /// UpdateWorkGroup of `primary` gives it settings of its own. None: such
    /// queries are refused with InvalidRequestException, as on AWS.
    pub output_location: Option<String>,
}

/// API Gateway settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiGatewayConfig {
    /// `timeoutInMillis` of an integration put without one (50 to 29,000; AWS: 29,000). A
    /// function answering later gets 504 `Endpoint request timed out`.
    pub integration_timeout_ms: u32,
}

impl Default for ApiGatewayConfig {
    fn default() -> Self {
        Self {
            integration_timeout_ms: 29_000,
        }
    }
}

/// S3 Batch Operations settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Tasks running at once, across all jobs (higher-priority jobs' tasks first).
    pub parallelism: usize,
    /// Attempts of a task that fails with a temporary error.
    pub max_attempts: u32,
    /// Largest manifest read.
    pub max_manifest_mib: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            parallelism: 8,
            max_attempts: 3,
            max_manifest_mib: 256,
        }
    }
}

/// Lambda engine settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LambdaConfig {
    /// Interpreter per runtime name (`"python3.12" = "/usr/bin/python3.12"`).
    pub interpreters: std::collections::BTreeMap<String, String>,
    /// Interpreter of every other `python3.x` runtime.
    pub python: String,
    /// Interpreter of every other `nodejs*` runtime.
    pub node: String,
    /// Extra `PYTHONPATH` entries (where the runtime-provided boto3 lives).
    pub python_path: Vec<PathBuf>,
    /// Extra `NODE_PATH` entries (where the runtime-provided AWS SDK for JavaScript lives).
    pub node_path: Vec<PathBuf>,
    /// Most instances of one function at once.
    pub max_concurrency: u32,
    /// An idle instance stops after this many seconds.
    pub idle_timeout_secs: u64,
    /// How long a synchronous invoke waits for a free instance before TooManyRequests.
    pub wait_for_instance_ms: u64,
    /// Delays before the retries of a failed asynchronous invocation (AWS: about 60 000
    /// and 120 000).
    pub async_retry_delays_ms: Vec<u64>,
    /// How long a new or updated function reports `Pending` / `InProgress`.
    pub activation_delay_ms: u64,
}

impl Default for LambdaConfig {
    fn default() -> Self {
        Self {
            interpreters: std::collections::BTreeMap::new(),
            python: "python3".to_owned(),
            node: "node".to_owned(),
            python_path: Vec::new(),
            node_path: default_node_path(),
            max_concurrency: 32,
            idle_timeout_secs: 300,
            wait_for_instance_ms: 2000,
            async_retry_delays_ms: vec![1000, 2000],
            activation_delay_ms: 0,
        }
    }
}

/// `~/.cache/kinesis-data/node/node_modules`, where the setup installs the AWS SDK for
/// JavaScript v3 that Node handlers get from the runtime, when it exists.
fn default_node_path() -> Vec<PathBuf> {
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/kinesis-data/node/node_modules"))
        .filter(|p| p.is_dir())
        .into_iter()
        .collect()
}

/// Firehose engine settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FirehoseConfig {
    /// CREATING → ACTIVE delay.
    pub create_delay_ms: u64,
    /// GZIP/ZIP compression level (0–9).
    pub gzip_level: u32,
    /// How often stream-sourced delivery streams poll their stream.
    pub poll_interval_ms: u64,
    /// Stream sources start at TRIM_HORIZON instead of LATEST.
    pub start_at_trim_horizon: bool,
}

impl Default for FirehoseConfig {
    fn default() -> Self {
        Self {
            create_delay_ms: 200,
            gzip_level: 1,
            poll_interval_ms: 200,
            start_at_trim_horizon: false,
        }
    }
}

/// S3 engine settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Domains under which `<bucket>.<domain>` is a virtual-hosted bucket.
    pub base_domains: Vec<String>,
    /// Smallest multipart part but the last (5 MiB on AWS).
    pub min_part_size: u64,
    /// Objects up to this size are stored inline in the metadata store (one grouped commit
    /// per PUT instead of a file, a file sync and a directory sync); 0 turns it off.
    pub inline_max: u64,
    /// Replications (live, by bucket replication rules) run at once.
    pub replication_parallelism: usize,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            base_domains: vec!["localhost".to_owned()],
            min_part_size: 5 * 1024 * 1024,
            inline_max: kd_objects::DEFAULT_INLINE_MAX,
            replication_parallelism: 8,
        }
    }
}

/// An extra access key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Key id.
    pub access_key_id: String,
    /// Secret.
    pub secret_access_key: String,
    /// Account.
    pub account_id: String,
}

/// Kinesis engine settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KinesisConfig {
    /// CREATING → ACTIVE delay.
    pub create_delay_ms: u64,
    /// UPDATING → ACTIVE delay.
    pub update_delay_ms: u64,
    /// Shards per account and region.
    pub shard_limit: u32,
    /// Enforce per-shard write limits.
    pub enforce_write_limits: bool,
    /// Segment size in MiB.
    pub segment_mib: u64,
    /// `always`, `interval` or `never`.
    pub fsync: String,
    /// Interval for `fsync = "interval"`.
    pub fsync_interval_ms: u64,
    /// Retention sweep period.
    pub retention_check_secs: u64,
}

impl Default for KinesisConfig {
    fn default() -> Self {
        Self {
            create_delay_ms: 100,
            update_delay_ms: 100,
            shard_limit: 500,
            enforce_write_limits: false,
            segment_mib: 64,
            fsync: "always".to_owned(),
            fsync_interval_ms: 100,
            retention_check_secs: 60,
        }
    }
}

/// The default data directory: `$XDG_DATA_HOME/kinesis-data`, else
/// `$HOME/.local/share/kinesis-data`, else `./kinesis-data-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("kinesis-data");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/share/kinesis-data");
    }
    PathBuf::from("kinesis-data-data")
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4566)),
            data_dir: default_data_dir(),
            region: "us-east-1".to_owned(),
            account_id: "000000000000".to_owned(),
            access_key_id: "test".to_owned(),
            secret_access_key: "test".to_owned(),
            allow_reset: true,
            iam: "on".to_owned(),
            extra_access_keys: Vec::new(),
            kinesis: KinesisConfig::default(),
            s3: S3Config::default(),
            firehose: FirehoseConfig::default(),
            lambda: LambdaConfig::default(),
            batch: BatchConfig::default(),
            apigateway: ApiGatewayConfig::default(),
            athena: AthenaConfig::default(),
            cloudformation: CloudFormationConfig::default(),
        }
    }
}

impl Config {
    /// Reads a TOML file.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))
    }

    /// Whether IAM policies are enforced.
    pub fn iam_enforced(&self) -> anyhow::Result<bool> {
        match self.iam.as_str() {
            "on" => Ok(true),
            "off" => Ok(false),
            other => anyhow::bail!("iam must be on or off, not {other:?}"),
        }
    }

    /// The `primary` workgroup's output location, checked to be an `s3://bucket/...` URL.
    pub fn athena_output_location(&self) -> anyhow::Result<Option<String>> {
        match &self.athena.output_location {
            None => Ok(None),
            Some(l)
                if l.strip_prefix("s3://")
                    .is_some_and(|b| !b.is_empty() && !b.starts_with('/')) =>
            {
                Ok(Some(l.clone()))
            }
            Some(l) => anyhow::bail!("athena.output_location must be an s3://bucket/path/ URL, not {l:?}"),
        }
    }

    /// The log fsync policy.
    pub fn fsync_policy(&self) -> anyhow::Result<kd_storage::FsyncPolicy> {
        Ok(match self.kinesis.fsync.as_str() {
            "always" => kd_storage::FsyncPolicy::Always,
            "never" => kd_storage::FsyncPolicy::Never,
            "interval" => kd_storage::FsyncPolicy::Interval(std::time::Duration::from_millis(
                self.kinesis.fsync_interval_ms.max(1),
            )),
            other => anyhow::bail!("kinesis.fsync must be always, interval or never, not {other:?}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_defaults_and_unknown_keys_are_refused() {
        let c: Config = toml::from_str("").expect("empty config");
        assert_eq!(c.listen.port(), 4566);
        assert_eq!(c.region, "us-east-1");
        let c: Config = toml::from_str("[kinesis]\nfsync = \"never\"\n").expect("config");
        assert!(matches!(c.fsync_policy(), Ok(kd_storage::FsyncPolicy::Never)));
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
        let c: Config = toml::from_str("[firehose]\ngzip_level = 6\n").expect("config");
        assert_eq!((c.firehose.gzip_level, c.firehose.poll_interval_ms), (6, 200));
        assert!(matches!(c.athena_output_location(), Ok(None)));
        let c: Config = toml::from_str("[athena]\noutput_location = \"s3://r/q/\"\n").expect("config");
        assert_eq!(c.athena_output_location().ok().flatten().as_deref(), Some("s3://r/q/"));
        let c: Config = toml::from_str("[athena]\noutput_location = \"/tmp/q\"\n").expect("config");
        assert!(c.athena_output_location().is_err());
    }
}
