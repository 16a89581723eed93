//! The function host: runs function instances as local child processes, each with its own
//! Lambda Runtime API listener on 127.0.0.1, and invokes them.
//!
//! INTERFACE STUB: the types and signatures below are the contract the rest of the engine
//! codes against; the bodies are being implemented.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

/// Host settings.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Root of the host's files: instance working dirs, the pid registry, per-function logs
    /// (`<root>/logs/<function>.log`).
    pub root: PathBuf,
    /// `AWS_ENDPOINT_URL` given to every instance (the edge, e.g. `http://127.0.0.1:4566`).
    pub endpoint_url: String,
    /// Interpreter command per runtime name (`"python3.12" → "/usr/bin/python3.12"`);
    /// runtimes not listed use [`HostConfig::python`] or [`HostConfig::node`].
    pub interpreters: BTreeMap<String, String>,
    /// Interpreter for every `python3.x` runtime not in `interpreters` (default `python3`).
    pub python: String,
    /// Interpreter for every `nodejs*` runtime not in `interpreters` (default `node`).
    pub node: String,
    /// Extra `PYTHONPATH` entries (where the runtime-provided boto3 lives).
    pub python_path: Vec<PathBuf>,
    /// Extra `NODE_PATH` entries (where the runtime-provided AWS SDK for JavaScript v3 lives).
    pub node_path: Vec<PathBuf>,
    /// Most instances of one function at once (default 32).
    pub max_concurrency: u32,
    /// An idle instance is stopped after this long (default 300 s).
    pub idle_timeout: Duration,
    /// How long an invocation that finds every allowed instance busy waits for one before
    /// [`HostError::TooManyRequests`] (default 2 s; callers may pass their own).
    pub wait_for_instance: Duration,
}

impl HostConfig {
    /// Defaults under `root`.
    pub fn new(root: PathBuf, endpoint_url: String) -> Self {
        Self {
            root,
            endpoint_url,
            interpreters: BTreeMap::new(),
            python: "python3".to_owned(),
            node: "node".to_owned(),
            python_path: Vec::new(),
            node_path: Vec::new(),
            max_concurrency: 32,
            idle_timeout: Duration::from_secs(300),
            wait_for_instance: Duration::from_secs(2),
        }
    }
}

/// Temporary credentials of the function's execution role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`.
    pub session_token: String,
}

/// Everything needed to start an instance of one function version.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// Function name.
    pub name: String,
    /// Unqualified function ARN.
    pub arn: String,
    /// `$LATEST` or a published version number.
    pub version: String,
    /// `provided.al2023`, `provided.al2`, `python3.x`, `nodejs<N>.x`.
    pub runtime: String,
    /// `module.function` (Python), `file.function` (Node), anything for custom runtimes.
    pub handler: String,
    /// The unpacked code (`LAMBDA_TASK_ROOT`); read-only, shared by the instances.
    pub code_dir: PathBuf,
    /// Identifies this configuration and code: idle instances of another generation of the
    /// same ARN are never reused.
    pub generation: String,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`.
    pub memory_mb: u32,
    /// The invocation deadline.
    pub timeout: Duration,
    /// The function's own environment variables.
    pub environment: BTreeMap<String, String>,
    /// `AWS_REGION`.
    pub region: String,
    /// The execution role's credentials.
    pub credentials: Option<Credentials>,
    /// Reserved concurrency: at most this many instances (None: the host's maximum).
    pub concurrency_limit: Option<u32>,
}

/// One invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// `Lambda-Runtime-Aws-Request-Id`.
    pub request_id: String,
    /// `Lambda-Runtime-Invoked-Function-Arn` (qualified when the caller qualified it).
    pub invoked_arn: String,
    /// The event.
    pub payload: Bytes,
    /// `Lambda-Runtime-Client-Context` (JSON text), sync invokes only.
    pub client_context: Option<String>,
    /// Whether the caller wants the log tail (`LogType: Tail`).
    pub want_log_tail: bool,
    /// How long to wait for a free instance (None: [`HostConfig::wait_for_instance`]).
    pub wait_for_instance: Option<Duration>,
}

/// What an invocation produced.
#[derive(Debug, Clone)]
pub struct InvokeOutcome {
    /// The function's result, or the error document when `function_error` is set.
    pub payload: Bytes,
    /// `Some("Unhandled")` when the function or its runtime failed (error, timeout, crash).
    pub function_error: Option<String>,
    /// The error's type when it failed (`Sandbox.Timedout`, `Runtime.ExitError`, the
    /// function's `errorType`).
    pub error_type: Option<String>,
    /// The last 4 KB of this invocation's log (START … REPORT), when asked for.
    pub log_tail: Option<String>,
    /// Time from handing the event to the instance to its answer.
    pub duration: Duration,
    /// Whether a new instance was started for this invocation.
    pub cold_start: bool,
}

/// Why the host could not run an invocation at all.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Every allowed instance stayed busy for the wait period.
    #[error("Rate Exceeded.")]
    TooManyRequests,
    /// The host is shutting down.
    #[error("the function host is shutting down")]
    ShuttingDown,
    /// A local I/O failure (working dir, listener).
    #[error("function host I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// The function host.
#[derive(Debug)]
pub struct Host {
    config: HostConfig,
}

impl Host {
    /// A host under `config.root`; stops every process a previous run left behind.
    pub fn new(config: HostConfig) -> Result<Arc<Host>, HostError> {
        Ok(Arc::new(Host { config }))
    }

    /// Runs one invocation on a warm instance of `spec` (or a new one) and waits for it.
    pub async fn invoke(&self, spec: Arc<FunctionSpec>, inv: Invocation) -> Result<InvokeOutcome, HostError> {
        let _ = (spec, inv);
        unimplemented!("host::invoke")
    }

    /// Stops the idle instances of the function `arn` (every version); busy ones stop
    /// after their current invocation.
    pub fn retire(&self, arn: &str) {
        let _ = arn;
    }

    /// The function's log file.
    pub fn log_path(&self, function_name: &str) -> PathBuf {
        self.config.root.join("logs").join(format!("{function_name}.log"))
    }

    /// (busy, idle) instances of the function `arn`.
    pub fn instances(&self, arn: &str) -> (usize, usize) {
        let _ = arn;
        (0, 0)
    }

    /// Stops every instance.
    pub async fn shutdown(&self) {}
}
