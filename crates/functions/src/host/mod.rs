//! The function host: runs function instances as local child processes, each with its own
//! Lambda Runtime API listener on 127.0.0.1, and invokes them.
//!
//! # Instance lifecycle
//!
//! 1. **Acquire.** [`Host::invoke`] takes an idle instance of the same (ARN, version,
//!    generation) if there is one (warm), else reserves a slot for a new one (cold) when fewer
//!    than `min(spec.concurrency_limit, config.max_concurrency)` instances of that
//!    (ARN, version) are busy or starting; otherwise it waits for a slot to free (up to
//!    `inv.wait_for_instance`, else [`HostConfig::wait_for_instance`]) and then fails with
//!    [`HostError::TooManyRequests`]. Idle instances of another generation are stopped.
//! 2. **Start** (cold only). The host binds a Runtime API listener on `127.0.0.1:0`, spawns
//!    the runtime (`<code_dir>/bootstrap`, or the interpreter running the host's own
//!    `python_bootstrap.py` / `node_bootstrap.js` from `<root>/runtime/`) in its own process
//!    group with a cleared environment (the Lambda variables, `PATH`, `HOME`, the function's
//!    variables, `TMPDIR=<root>/tmp/<instance id>` and `KINESIS_DATA_INSTANCE=<instance id>`),
//!    records it in the pid registry and reads its stdout and stderr line by line into the
//!    function's log. Nothing polls: the invocation is queued for the instance, and its first
//!    `GET /runtime/invocation/next` takes it.
//! 3. **Invoke.** `next` hands over the event (and writes `START`); the host waits for
//!    `/response`, `/error`, `/init/error`, the process's exit, or the deadline (timeout
//!    counted from the hand-over; a warm instance that does not ask for work within the timeout,
//!    or a cold one that does not within 10 s plus the timeout, is treated as timed out). After
//!    the answer it drains whatever the instance already wrote to its pipes (non-blocking reads,
//!    no sleeping), writes `END` and `REPORT`, and cuts the log tail.
//! 4. **Release.** An instance that answered goes back to the idle list (most recently used is
//!    reused first), unless it was retired, belongs to an older generation or the host is
//!    shutting down. A timed-out instance, an instance that crashed or failed its init, is
//!    killed (whole process group) and discarded; the next invocation starts a fresh one.
//! 5. **Stop.** The reaper stops instances idle for longer than [`HostConfig::idle_timeout`];
//!    [`Host::retire`], [`Host::shutdown`] and dropping the [`Host`] kill process groups. Each
//!    instance's waiter task reaps the process, kills what is left of its group, stops its
//!    listener, deletes its registry file and its `TMPDIR`, and removes it from the pool. An
//!    instance that exits while idle is just removed.
//!
//! The bootstraps exit as soon as the Runtime API connection fails, so instances do not
//! outlive a server that died.
//!
//! # Pid registry
//!
//! `<root>/pids/<instance id>` (32 hex digits), one file per live instance, written to
//! `<instance id>.tmp` and renamed into place, removed when the instance has been reaped.
//! Content: `key value` lines:
//!
//! ```text
//! pid 12345
//! pgid 12345
//! function arn:aws:lambda:us-east-1:123456789012:function:f
//! version $LATEST
//! started_ms 1767225600000
//! ```
//!
//! **Recovery rule** ([`Host::new`]): for every registered instance id, each process whose
//! `/proc/<pid>/environ` contains `KINESIS_DATA_INSTANCE=<that id>` is ours: its process group
//! and the process itself get `SIGKILL`. Other processes are never touched (a recycled pid does
//! not carry the variable). Then the registry and `<root>/tmp/` are cleared.
//!
//! # Logs
//!
//! `<root>/logs/<function name>.log` receives every stdout/stderr line of every instance of the
//! function, and the host's own `START`, `END`, `REPORT` and timeout lines, in AWS's format.
//! Once [`Host::set_log_destination`] is called, the same lines also go, batched, to the
//! instance's CloudWatch Logs stream `YYYY/MM/DD/[<version>]<instance id>` in the function's
//! log group ([`FunctionSpec::log_group`]); see [`logs`] for how they are shipped.

mod api;
mod instance;
pub mod logs;
mod registry;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use instance::{Instance, RunEnd};
pub use logs::{LogBatch, LogDestination};
use logs::{LogSink, LogTarget, Shipper, date_path};

/// The Python runtime interface client the host runs for `python3.x` functions.
const PYTHON_BOOTSTRAP: &str = include_str!("../bootstrap/python_bootstrap.py");
/// The Node.js runtime interface client the host runs for `nodejs*` functions.
const NODE_BOOTSTRAP: &str = include_str!("../bootstrap/node_bootstrap.js");

/// Largest response a runtime may post (AWS: 6 MiB + 100 bytes).
pub const MAX_RESPONSE_BYTES: usize = 6_291_556;

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
    /// The CloudWatch Logs group the output goes to (`LoggingConfig.LogGroup`, by default
    /// `/aws/lambda/<name>`); also `AWS_LAMBDA_LOG_GROUP_NAME`.
    pub log_group: String,
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

/// How long a new instance may take to ask for its first event, on top of the timeout.
const INIT_LIMIT: Duration = Duration::from_secs(10);
/// How often a warm instance that died before taking the event is replaced within one invoke.
const MAX_RETRIES: u32 = 3;

/// The function host.
pub struct Host {
    config: HostConfig,
    shared: Arc<Shared>,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// State shared by the host, its invocation tasks, the instances' waiter tasks and the reaper.
struct Shared {
    config: HostConfig,
    /// `<root>/runtime`: the bootstraps (`LAMBDA_RUNTIME_DIR`).
    runtime_dir: PathBuf,
    pool: Mutex<Pool>,
    /// Signalled whenever a slot or an instance frees up or an instance goes away.
    changed: Notify,
    /// `<interpreter> --version` per interpreter command (None: it could not tell).
    versions: tokio::sync::Mutex<HashMap<String, Option<String>>>,
    reaper_started: AtomicBool,
    /// Ships output to CloudWatch Logs once a destination is set.
    shipper: OnceLock<Arc<Shipper>>,
}

#[derive(Default)]
struct Pool {
    shutting_down: bool,
    /// Per (ARN, version).
    groups: HashMap<(String, String), Group>,
    /// Every instance not yet reaped, by id.
    live: HashMap<String, Arc<Instance>>,
}

#[derive(Default)]
struct Group {
    /// The newest generation asked for; idle instances of others are stopped.
    generation: String,
    /// Instances busy or starting (the concurrency count).
    busy: usize,
    /// Idle instances with the time they became idle, oldest first.
    idle: Vec<(Arc<Instance>, Instant)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Host {
    /// A host under `config.root`; stops every process a previous run left behind.
    pub fn new(config: HostConfig) -> Result<Arc<Host>, HostError> {
        let root = &config.root;
        for dir in ["logs", "pids", "tmp", "runtime"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        let killed = registry::sweep(&root.join("pids"));
        if killed > 0 {
            tracing::info!(killed, "stopped function processes left by a previous run");
        }
        if let Ok(entries) = std::fs::read_dir(root.join("tmp")) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let runtime_dir = root.join("runtime");
        write_atomically(&runtime_dir.join("python_bootstrap.py"), PYTHON_BOOTSTRAP)?;
        write_atomically(&runtime_dir.join("node_bootstrap.js"), NODE_BOOTSTRAP)?;
        let shared = Arc::new(Shared {
            config: config.clone(),
            runtime_dir,
            pool: Mutex::new(Pool::default()),
            changed: Notify::new(),
            versions: tokio::sync::Mutex::new(HashMap::new()),
            reaper_started: AtomicBool::new(false),
            shipper: OnceLock::new(),
        });
        Ok(Arc::new(Host { config, shared }))
    }

    /// Runs one invocation on a warm instance of `spec` (or a new one) and waits for it.
    pub async fn invoke(&self, spec: Arc<FunctionSpec>, inv: Invocation) -> Result<InvokeOutcome, HostError> {
        Arc::clone(&self.shared).start_reaper();
        // A task of its own: the instance is released properly even if the caller goes away.
        let shared = Arc::clone(&self.shared);
        match tokio::spawn(shared.invoke(spec, inv)).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => Err(HostError::Io(std::io::Error::other(
                "function host invocation task panicked",
            ))),
            Err(_) => Err(HostError::ShuttingDown),
        }
    }

    /// Stops the idle instances of the function `arn` (every version); busy ones stop
    /// after their current invocation.
    pub fn retire(&self, arn: &str) {
        let mut stop = Vec::new();
        {
            let mut pool = lock(&self.shared.pool);
            for ((group_arn, _), group) in pool.groups.iter_mut() {
                if group_arn == arn {
                    stop.extend(group.idle.drain(..).map(|(inst, _)| inst));
                }
            }
            for inst in pool.live.values() {
                if inst.arn == arn {
                    inst.retire();
                }
            }
        }
        for inst in stop {
            inst.kill();
        }
    }

    /// Sends every instance's output (and the host's START/END/REPORT lines) to `dest` as
    /// well, batched (see [`logs`]). Call once, from within the tokio runtime; later calls
    /// are ignored.
    pub fn set_log_destination(&self, dest: Arc<dyn LogDestination>) {
        if self.shared.shipper.get().is_some() {
            return;
        }
        match Shipper::start(dest) {
            Some(shipper) => {
                let _ = self.shared.shipper.set(shipper);
            }
            None => tracing::warn!("no tokio runtime: function output is not shipped to CloudWatch Logs"),
        }
    }

    /// The function's log file.
    pub fn log_path(&self, function_name: &str) -> PathBuf {
        self.config.root.join("logs").join(format!("{function_name}.log"))
    }

    /// (busy, idle) instances of the function `arn`.
    pub fn instances(&self, arn: &str) -> (usize, usize) {
        let pool = lock(&self.shared.pool);
        pool.groups
            .iter()
            .filter(|((group_arn, _), _)| group_arn == arn)
            .fold((0, 0), |(busy, idle), (_, g)| (busy + g.busy, idle + g.idle.len()))
    }

    /// Stops every instance, then ships the output still queued for CloudWatch Logs and ends
    /// the shipping (lines written afterwards are dropped).
    pub async fn shutdown(&self) {
        self.shared.kill_all();
        let flush_at_end = self.shared.shipper.get().cloned();
        // Wait (bounded) for the waiters to reap them, so no process outlives this call.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if lock(&self.shared.pool).live.is_empty() {
                break;
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!("function instances still running after shutdown");
                    break;
                }
            }
        }
        if let Some(shipper) = flush_at_end {
            shipper.stop(Duration::from_secs(5)).await;
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.shared.kill_all();
    }
}

/// A claim on one concurrency slot of (ARN, version), with the instance using it. Dropping it
/// without [`Lease::finish`] frees the slot and kills the instance.
struct Lease {
    shared: Arc<Shared>,
    key: (String, String),
    instance: Option<Arc<Instance>>,
    done: bool,
}

impl Lease {
    fn finish(mut self, reusable: bool) {
        self.done = true;
        self.shared.release(&self.key, self.instance.take(), reusable);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.done {
            self.shared.release(&self.key, self.instance.take(), false);
        }
    }
}

impl Shared {
    fn log_path(&self, function_name: &str) -> PathBuf {
        self.config.root.join("logs").join(format!("{function_name}.log"))
    }

    /// Where an instance's lines are shipped, when shipping is on.
    fn log_target(&self, spec: &FunctionSpec, stream: &str) -> Option<(Arc<Shipper>, Arc<LogTarget>)> {
        let shipper = self.shipper.get()?;
        // arn:aws:lambda:<region>:<account>:function:<name>
        let account = spec.arn.split(':').nth(4).unwrap_or_default().to_owned();
        Some((
            Arc::clone(shipper),
            Arc::new(LogTarget {
                account,
                region: spec.region.clone(),
                group: spec.log_group.clone(),
                stream: stream.to_owned(),
            }),
        ))
    }

    fn pids_dir(&self) -> PathBuf {
        self.config.root.join("pids")
    }

    fn is_shutting_down(&self) -> bool {
        lock(&self.pool).shutting_down
    }

    async fn invoke(self: Arc<Self>, spec: Arc<FunctionSpec>, inv: Invocation) -> Result<InvokeOutcome, HostError> {
        let wait = inv.wait_for_instance.unwrap_or(self.config.wait_for_instance);
        let mut retries = 0;
        loop {
            let lease = self.acquire(&spec, wait).await?;
            match self.run(&spec, &inv, lease, retries < MAX_RETRIES).await? {
                Some(outcome) => return Ok(outcome),
                None => retries += 1,
            }
        }
    }

    /// Takes an idle instance or a slot for a new one, waiting up to `wait` for either.
    async fn acquire(self: &Arc<Self>, spec: &FunctionSpec, wait: Duration) -> Result<Lease, HostError> {
        let deadline = Instant::now() + wait;
        let key = (spec.arn.clone(), spec.version.clone());
        let limit = spec
            .concurrency_limit
            .unwrap_or(u32::MAX)
            .min(self.config.max_concurrency) as usize;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut stale = Vec::new();
            let got = {
                let mut pool = lock(&self.pool);
                if pool.shutting_down {
                    return Err(HostError::ShuttingDown);
                }
                let group = pool.groups.entry(key.clone()).or_default();
                if group.generation != spec.generation {
                    group.generation = spec.generation.clone();
                }
                let (keep, old): (Vec<_>, Vec<_>) = group
                    .idle
                    .drain(..)
                    .partition(|(inst, _)| inst.generation == spec.generation);
                group.idle = keep;
                stale.extend(old.into_iter().map(|(inst, _)| inst));
                let mut got = None;
                while let Some((inst, _)) = group.idle.pop() {
                    if !inst.exited() {
                        group.busy += 1;
                        got = Some(Some(inst));
                        break;
                    }
                }
                if got.is_none() && group.busy < limit {
                    group.busy += 1;
                    got = Some(None);
                }
                got
            };
            for inst in stale {
                inst.kill();
            }
            if let Some(instance) = got {
                return Ok(Lease {
                    shared: Arc::clone(self),
                    key,
                    instance,
                    done: false,
                });
            }
            if limit == 0 || Instant::now() >= deadline {
                return Err(HostError::TooManyRequests);
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Gives a slot back; a reusable instance becomes idle, any other one is killed.
    fn release(&self, key: &(String, String), inst: Option<Arc<Instance>>, reusable: bool) {
        let mut stop = None;
        {
            let mut pool = lock(&self.pool);
            let shutting_down = pool.shutting_down;
            match pool.groups.get_mut(key) {
                Some(group) => {
                    group.busy = group.busy.saturating_sub(1);
                    if let Some(inst) = inst {
                        if reusable
                            && !shutting_down
                            && !inst.retired()
                            && !inst.exited()
                            && inst.generation == group.generation
                        {
                            group.idle.push((inst, Instant::now()));
                        } else {
                            stop = Some(inst);
                        }
                    }
                }
                None => stop = inst,
            }
        }
        if let Some(inst) = stop {
            inst.kill();
        }
        self.changed.notify_waiters();
    }

    /// One attempt: `Ok(None)` when a warm instance turned out dead before taking the event.
    async fn run(
        self: &Arc<Self>,
        spec: &Arc<FunctionSpec>,
        inv: &Invocation,
        mut lease: Lease,
        may_retry: bool,
    ) -> Result<Option<InvokeOutcome>, HostError> {
        let (inst, cold) = match lease.instance.clone() {
            Some(inst) => (inst, false),
            None => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                let stream = format!("{}/[{}]{id}", date_path(SystemTime::now()), spec.version);
                let log = LogSink::open(self.log_path(&spec.name), self.log_target(spec, &stream));
                log.begin_capture();
                match instance::start(self, spec, &log, &inv.request_id, &id, &stream).await {
                    Ok(inst) => {
                        lease.instance = Some(Arc::clone(&inst));
                        (inst, true)
                    }
                    Err(instance::StartError::Failed { error_type, message }) => {
                        lease.finish(false);
                        return Ok(Some(instance::failed_start(&log, spec, inv, error_type, &message)));
                    }
                    Err(instance::StartError::ShuttingDown) => return Err(HostError::ShuttingDown),
                    Err(instance::StartError::Io(e)) => return Err(HostError::Io(e)),
                }
            }
        };
        match inst.run(spec, inv, cold, may_retry).await {
            RunEnd::NotTaken => {
                lease.finish(false);
                Ok(None)
            }
            RunEnd::Done {
                outcome,
                reusable,
                crashed,
            } => {
                lease.finish(reusable);
                if crashed && self.is_shutting_down() {
                    return Err(HostError::ShuttingDown);
                }
                Ok(Some(outcome))
            }
        }
    }

    /// Removes a reaped instance from the pool.
    fn forget(&self, id: &str) {
        {
            let mut pool = lock(&self.pool);
            pool.live.remove(id);
            for group in pool.groups.values_mut() {
                group.idle.retain(|(inst, _)| inst.id != id);
            }
        }
        self.changed.notify_waiters();
    }

    fn kill_all(&self) {
        let all: Vec<Arc<Instance>> = {
            let mut pool = lock(&self.pool);
            pool.shutting_down = true;
            for group in pool.groups.values_mut() {
                group.idle.clear();
            }
            pool.live.values().cloned().collect()
        };
        for inst in all {
            inst.kill();
        }
        self.changed.notify_waiters();
    }

    fn start_reaper(self: Arc<Self>) {
        if self.reaper_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let every = (self.config.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(15));
        let weak: Weak<Shared> = Arc::downgrade(&self);
        drop(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(shared) = weak.upgrade() else { break };
                if !shared.reap() {
                    break;
                }
            }
        });
    }

    /// Stops instances idle for longer than the idle timeout; false once shutting down.
    fn reap(&self) -> bool {
        let now = Instant::now();
        let mut stop = Vec::new();
        {
            let mut pool = lock(&self.pool);
            if pool.shutting_down {
                return false;
            }
            let idle_timeout = self.config.idle_timeout;
            for group in pool.groups.values_mut() {
                let (old, keep): (Vec<_>, Vec<_>) = group
                    .idle
                    .drain(..)
                    .partition(|(_, since)| now.saturating_duration_since(*since) >= idle_timeout);
                group.idle = keep;
                stop.extend(old.into_iter().map(|(inst, _)| inst));
            }
            pool.groups.retain(|_, g| g.busy > 0 || !g.idle.is_empty());
        }
        for inst in stop {
            inst.kill();
        }
        true
    }
}

fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
