//! One function instance: its process (own process group), its Runtime API listener, its
//! output readers and its waiter; and one invocation on it, from hand-over to `REPORT`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::api::{self, ApiState, Event, Work};
use super::logs::{LogSink, rfc3339};
use super::registry::{self, INSTANCE_VAR};
use super::{FunctionSpec, INIT_LIMIT, Invocation, InvokeOutcome, MAX_RESPONSE_BYTES, Shared, lock};

/// Why an instance could not be started.
pub(super) enum StartError {
    /// The function's fault (no bootstrap, no interpreter, unsupported runtime): the
    /// invocation fails with this error.
    Failed {
        error_type: &'static str,
        message: String,
    },
    ShuttingDown,
    Io(io::Error),
}

/// How an invocation on an instance ended.
pub(super) enum RunEnd {
    /// A warm instance had died before it took the event: try another one.
    NotTaken,
    /// The invocation finished, well or not.
    Done {
        outcome: InvokeOutcome,
        reusable: bool,
        crashed: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Custom,
    Python,
    Node,
}

pub(super) struct Instance {
    pub(super) id: String,
    pub(super) arn: String,
    pub(super) generation: String,
    pid: i32,
    spawned: Instant,
    work: mpsc::Sender<Work>,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Event>>,
    log: Arc<LogSink>,
    /// One per output reader: send it an ack channel to have it drain its pipe.
    flushers: Vec<mpsc::UnboundedSender<oneshot::Sender<()>>>,
    server: AbortHandle,
    exited: AtomicBool,
    retired: AtomicBool,
    /// Peak memory (MB) last read from `/proc`, and when: REPORT's Max Memory Used. Peak
    /// memory only grows, so a value up to [`MEMORY_PROBE_EVERY`] old is a true lower bound,
    /// and warm invokes skip a `/proc` read each.
    memory: std::sync::Mutex<(Option<u64>, Option<Instant>)>,
}

/// How often an instance's peak memory is read again.
const MEMORY_PROBE_EVERY: Duration = Duration::from_secs(1);

impl Instance {
    /// Peak memory in MB, read from `/proc` at most once per [`MEMORY_PROBE_EVERY`] (always
    /// after a failure, when the instance is about to be discarded).
    fn peak_memory_mb(&self, fresh: bool) -> Option<u64> {
        let mut m = self.memory.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let stale = m.1.is_none_or(|at| at.elapsed() >= MEMORY_PROBE_EVERY);
        if fresh || stale {
            *m = (max_memory_mb(self.pid).or(m.0), Some(Instant::now()));
        }
        m.0
    }

    pub(super) fn exited(&self) -> bool {
        self.exited.load(Ordering::SeqCst)
    }

    pub(super) fn retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    pub(super) fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    /// Kills the instance's whole process group (the waiter does the rest).
    pub(super) fn kill(&self) {
        // pid 0 would mean our own group: never signal that.
        if self.pid > 0 && !self.exited() {
            let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
    }

    /// Waits until the output readers have written everything the process wrote so far.
    async fn flush_output(&self) {
        let mut acks = Vec::with_capacity(self.flushers.len());
        for flusher in &self.flushers {
            let (tx, rx) = oneshot::channel();
            if flusher.send(tx).is_ok() {
                acks.push(rx);
            }
        }
        for ack in acks {
            let _ = tokio::time::timeout(Duration::from_millis(500), ack).await;
        }
    }

    /// Runs one invocation: hands the event over and waits for the answer, the exit, or the
    /// deadline; writes the closing log lines.
    pub(super) async fn run(&self, spec: &FunctionSpec, inv: &Invocation, cold: bool, may_retry: bool) -> RunEnd {
        let rid = inv.request_id.as_str();
        let mut events = self.events.lock().await;
        if !cold {
            // Nothing is pending between invocations but, possibly, the news of an exit.
            while let Ok(event) = events.try_recv() {
                if let Event::Exited(_) = event {
                    self.exited.store(true, Ordering::SeqCst);
                }
            }
            if self.exited() && may_retry {
                return RunEnd::NotTaken;
            }
        }
        let work = Work {
            request_id: rid.to_owned(),
            invoked_arn: inv.invoked_arn.clone(),
            payload: inv.payload.clone(),
            client_context: inv.client_context.clone(),
            timeout: spec.timeout,
        };
        let handed = self.work.try_send(work).is_ok();
        if !handed && !cold && may_retry {
            return RunEnd::NotTaken;
        }
        let started = Instant::now();
        let before_delivery = if cold { INIT_LIMIT + spec.timeout } else { spec.timeout };
        let mut delivered: Option<Instant> = None;
        let end = loop {
            if !handed {
                break End::Exited(None);
            }
            let deadline = delivered.map_or(started + before_delivery, |at| at + spec.timeout);
            let event = tokio::select! {
                event = events.recv() => event,
                () = tokio::time::sleep_until(deadline) => break End::Timeout,
            };
            match event {
                None => break End::Exited(None),
                Some(Event::Delivered { id, at }) if id == rid => delivered = Some(at),
                Some(Event::Response { id, body }) if id == rid => break End::Response(body),
                Some(Event::Error { id, body, error_type }) if id == rid => break End::Error(body, error_type),
                Some(Event::TooLarge { id }) if id == rid => break End::TooLarge,
                Some(Event::InitError { body, error_type }) => break End::InitError(body, error_type),
                Some(Event::Exited(status)) => {
                    self.exited.store(true, Ordering::SeqCst);
                    if delivered.is_none() && !cold && may_retry {
                        return RunEnd::NotTaken;
                    }
                    break End::Exited(status);
                }
                Some(_) => {} // about an earlier request id
            }
        };
        let answered = Instant::now();
        let memory = self.peak_memory_mb(!matches!(end, End::Response(_) | End::Error(..)));
        match end {
            End::Timeout | End::InitError(..) => {
                self.kill();
                // Reap it before answering, so no process of a failed instance lingers.
                let until = Instant::now() + Duration::from_secs(2);
                while !self.exited() {
                    match tokio::time::timeout_at(until, events.recv()).await {
                        Ok(Some(Event::Exited(_))) | Ok(None) | Err(_) => break,
                        Ok(Some(_)) => {}
                    }
                }
            }
            _ => {}
        }
        drop(events);
        self.flush_output().await;

        let log = &self.log;
        if delivered.is_none() {
            log.begin_capture();
            log.line(&format!("START RequestId: {rid} Version: {}", spec.version));
        }
        let timeout_text = format!("Task timed out after {:.2} seconds", spec.timeout.as_secs_f64());
        let (payload, error_type, reusable, crashed) = match end {
            End::Response(body) => (body, None, true, false),
            End::Error(body, error_type) => (body, Some(error_type), true, false),
            End::TooLarge => {
                let message = format!(
                    "Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
                );
                log.line(&format!("RequestId: {rid} Error: {message}"));
                (
                    error_json("Function.ResponseSizeTooLarge", &message),
                    Some("Function.ResponseSizeTooLarge".to_owned()),
                    true,
                    false,
                )
            }
            End::InitError(body, error_type) => (body, Some(error_type), false, false),
            End::Timeout => {
                log.line(&format!("{} {rid} {timeout_text}", rfc3339(SystemTime::now())));
                let message = format!("RequestId: {rid} Error: {timeout_text}");
                (
                    error_json("Sandbox.Timedout", &message),
                    Some("Sandbox.Timedout".to_owned()),
                    false,
                    false,
                )
            }
            End::Exited(status) => {
                let message = format!(
                    "RequestId: {rid} Error: Runtime exited with error: {}",
                    exit_text(status)
                );
                log.line(&message);
                log.line("Runtime.ExitError");
                (
                    error_json("Runtime.ExitError", &message),
                    Some("Runtime.ExitError".to_owned()),
                    false,
                    true,
                )
            }
        };
        let duration = delivered.map_or(Duration::ZERO, |at| answered.saturating_duration_since(at));
        let init = cold.then(|| delivered.unwrap_or(answered).saturating_duration_since(self.spawned));
        log.line(&format!("END RequestId: {rid}"));
        log.line(&report_line(rid, duration, spec.memory_mb, memory, init));
        let tail = log.take_tail();
        let outcome = InvokeOutcome {
            payload,
            function_error: error_type.as_ref().map(|_| "Unhandled".to_owned()),
            error_type,
            log_tail: inv.want_log_tail.then_some(tail),
            duration,
            cold_start: cold,
        };
        RunEnd::Done {
            outcome,
            reusable: reusable && !self.exited(),
            crashed,
        }
    }
}

enum End {
    Response(Bytes),
    Error(Bytes, String),
    TooLarge,
    InitError(Bytes, String),
    Timeout,
    Exited(Option<ExitStatus>),
}

/// `{"errorType":…,"errorMessage":…}` (AWS's key order).
fn error_json(error_type: &str, message: &str) -> Bytes {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned());
    Bytes::from(format!(
        "{{\"errorType\":{},\"errorMessage\":{}}}",
        quote(error_type),
        quote(message)
    ))
}

/// Go's wording, as AWS reports it: `exit status 1`, `signal: 9 (SIGKILL)`.
fn exit_text(status: Option<ExitStatus>) -> String {
    let Some(status) = status else {
        return "unknown exit status".to_owned();
    };
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    match status.signal() {
        Some(sig) => match Signal::try_from(sig) {
            Ok(name) => format!("signal: {sig} ({})", name.as_str()),
            Err(_) => format!("signal: {sig}"),
        },
        None => status.to_string(),
    }
}

fn report_line(rid: &str, duration: Duration, memory_size: u32, used: Option<u64>, init: Option<Duration>) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    let billed = (ms.ceil() as u64).max(1);
    let mut line = format!(
        "REPORT RequestId: {rid}\tDuration: {ms:.2} ms\tBilled Duration: {billed} ms\tMemory Size: {memory_size} MB"
    );
    if let Some(used) = used {
        let _ = write!(line, "\tMax Memory Used: {used} MB");
    }
    if let Some(init) = init {
        let _ = write!(line, "\tInit Duration: {:.2} ms", init.as_secs_f64() * 1000.0);
    }
    line
}

/// Peak resident memory (`VmHWM`) of a process, in MB.
fn max_memory_mb(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb.div_ceil(1024))
}

/// The outcome (and log lines) of an invocation whose instance could not be started.
pub(super) fn failed_start(
    log: &LogSink,
    spec: &FunctionSpec,
    inv: &Invocation,
    error_type: &'static str,
    message: &str,
) -> InvokeOutcome {
    let rid = &inv.request_id;
    log.line(&format!("START RequestId: {rid} Version: {}", spec.version));
    log.line(message);
    log.line(error_type);
    log.line(&format!("END RequestId: {rid}"));
    log.line(&report_line(rid, Duration::ZERO, spec.memory_mb, None, None));
    let tail = log.take_tail();
    InvokeOutcome {
        payload: error_json(error_type, message),
        function_error: Some("Unhandled".to_owned()),
        error_type: Some(error_type.to_owned()),
        log_tail: inv.want_log_tail.then_some(tail),
        duration: Duration::ZERO,
        cold_start: true,
    }
}

fn invalid_entrypoint(message: String) -> StartError {
    StartError::Failed {
        error_type: "Runtime.InvalidEntrypoint",
        message,
    }
}

/// What to run for `spec`: kind, program, arguments.
fn launch(shared: &Shared, spec: &FunctionSpec, rid: &str) -> Result<(Kind, String, Vec<OsString>), StartError> {
    let runtime = spec.runtime.as_str();
    let configured = shared.config.interpreters.get(runtime).cloned();
    if runtime.starts_with("provided") {
        let bootstrap = spec.code_dir.join("bootstrap");
        if !bootstrap.is_file() {
            return Err(invalid_entrypoint(format!(
                "RequestId: {rid} Error: Couldn't find valid bootstrap(s): [{}]",
                bootstrap.display()
            )));
        }
        return Ok((Kind::Custom, bootstrap.to_string_lossy().into_owned(), Vec::new()));
    }
    let (kind, default, script) = if runtime.starts_with("python") {
        (Kind::Python, &shared.config.python, "python_bootstrap.py")
    } else if runtime.starts_with("nodejs") {
        (Kind::Node, &shared.config.node, "node_bootstrap.js")
    } else {
        return Err(StartError::Failed {
            error_type: "Runtime.InvalidRuntime",
            message: format!(
                "kinesis-data: runtime {runtime} is not supported (use provided.al2023, provided.al2, python3.x or nodejs*.x)"
            ),
        });
    };
    let program = configured.unwrap_or_else(|| default.clone());
    Ok((kind, program, vec![shared.runtime_dir.join(script).into_os_string()]))
}

/// The version an interpreter reports (`3.11.7`, `20.20.2`), probed once per interpreter.
async fn interpreter_version(shared: &Shared, program: &str) -> Option<String> {
    let mut versions = shared.versions.lock().await;
    if let Some(version) = versions.get(program) {
        return version.clone();
    }
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg("--version")
        .env_clear()
        .envs(inherited())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let version = match tokio::time::timeout(Duration::from_secs(10), cmd.output()).await {
        Ok(Ok(out)) if out.status.success() => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            text.split_whitespace()
                .map(|w| w.trim_start_matches('v'))
                .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
                .map(str::to_owned)
        }
        _ => None,
    };
    versions.insert(program.to_owned(), version.clone());
    version
}

/// The version a runtime name asks for: `python3.12` → `3.12`, `nodejs20.x` → `20`.
fn wanted_version(runtime: &str) -> Option<&str> {
    let v = runtime
        .strip_prefix("python")
        .or_else(|| runtime.strip_prefix("nodejs").map(|v| v.trim_end_matches(".x")))?;
    (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')).then_some(v)
}

/// The parts of the server's environment an instance inherits.
fn inherited() -> Vec<(String, String)> {
    ["PATH", "HOME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect()
}

fn join_paths(paths: impl IntoIterator<Item = PathBuf>) -> String {
    paths
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// The instance's environment: defaults, then the function's variables, then the reserved ones.
fn environment(
    shared: &Shared,
    spec: &FunctionSpec,
    kind: Kind,
    (id, stream): (&str, &str),
    port: u16,
    tmp: &std::path::Path,
) -> BTreeMap<String, String> {
    let config = &shared.config;
    let mut env: BTreeMap<String, String> = inherited().into_iter().collect();
    env.insert("LANG".into(), "en_US.UTF-8".into());
    env.insert("TZ".into(), "UTC".into());
    env.insert("AWS_ENDPOINT_URL".into(), config.endpoint_url.clone());
    match kind {
        Kind::Python => {
            env.insert("PYTHONUNBUFFERED".into(), "1".into());
            let paths = std::iter::once(spec.code_dir.clone()).chain(config.python_path.iter().cloned());
            env.insert("PYTHONPATH".into(), join_paths(paths));
        }
        Kind::Node => {
            let paths = config
                .node_path
                .iter()
                .cloned()
                .chain([spec.code_dir.join("node_modules")]);
            env.insert("NODE_PATH".into(), join_paths(paths));
        }
        Kind::Custom => {}
    }
    env.extend(spec.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut set = |k: &str, v: String| {
        env.insert(k.to_owned(), v);
    };
    set("_HANDLER", spec.handler.clone());
    set("AWS_REGION", spec.region.clone());
    set("AWS_DEFAULT_REGION", spec.region.clone());
    if kind != Kind::Custom {
        set("AWS_EXECUTION_ENV", format!("AWS_Lambda_{}", spec.runtime));
    }
    set("AWS_LAMBDA_FUNCTION_NAME", spec.name.clone());
    set("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", spec.memory_mb.to_string());
    set("AWS_LAMBDA_FUNCTION_VERSION", spec.version.clone());
    set("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into());
    set("AWS_LAMBDA_LOG_GROUP_NAME", spec.log_group.clone());
    set("AWS_LAMBDA_LOG_STREAM_NAME", stream.to_owned());
    if let Some(c) = &spec.credentials {
        set("AWS_ACCESS_KEY_ID", c.access_key_id.clone());
        set("AWS_SECRET_ACCESS_KEY", c.secret_access_key.clone());
        // Root keys (IAM off, no such role) carry no token: SDKs would send an empty one.
        if !c.session_token.is_empty() {
            set("AWS_SESSION_TOKEN", c.session_token.clone());
        }
    }
    set("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"));
    set("LAMBDA_TASK_ROOT", spec.code_dir.to_string_lossy().into_owned());
    set("LAMBDA_RUNTIME_DIR", shared.runtime_dir.to_string_lossy().into_owned());
    set("TMPDIR", tmp.to_string_lossy().into_owned());
    set(INSTANCE_VAR, id.to_owned());
    env
}

/// Starts an instance `id` of `spec` (its log stream named `stream`): listener, process,
/// readers, waiter; registers it as live.
pub(super) async fn start(
    shared: &Arc<Shared>,
    spec: &FunctionSpec,
    log: &Arc<LogSink>,
    rid: &str,
    id: &str,
    stream: &str,
) -> Result<Arc<Instance>, StartError> {
    let (kind, program, args) = launch(shared, spec, rid)?;
    if !spec.code_dir.is_dir() {
        return Err(invalid_entrypoint(format!(
            "RequestId: {rid} Error: the function's code directory {} does not exist",
            spec.code_dir.display()
        )));
    }
    if kind != Kind::Custom
        && let (Some(have), Some(want)) = (
            interpreter_version(shared, &program).await,
            wanted_version(&spec.runtime),
        )
        && have != want
        && !have.starts_with(&format!("{want}."))
    {
        log.line(&format!(
            "kinesis-data: runtime {} asks for version {want} but \"{program}\" is version {have}; running it anyway \
             (set [lambda.interpreters] in the config)",
            spec.runtime
        ));
    }

    let id = id.to_owned();
    let tmp = shared.config.root.join("tmp").join(&id);
    std::fs::create_dir_all(&tmp).map_err(StartError::Io)?;
    let cleanup_tmp = |tmp: &PathBuf| {
        let _ = std::fs::remove_dir_all(tmp);
    };
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
        Ok(l) => l,
        Err(e) => {
            cleanup_tmp(&tmp);
            return Err(StartError::Io(e));
        }
    };
    let port = match listener.local_addr() {
        Ok(addr) => addr.port(),
        Err(e) => {
            cleanup_tmp(&tmp);
            return Err(StartError::Io(e));
        }
    };
    let (work_tx, work_rx) = mpsc::channel(1);
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let state = ApiState::new(work_rx, events_tx.clone(), Arc::clone(log), spec.version.clone());
    let app = api::router(state);
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "runtime API listener failed");
        }
    });

    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&args)
        .current_dir(&spec.code_dir)
        .env_clear()
        .envs(environment(shared, spec, kind, (&id, stream), port, &tmp))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let spawned = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            server.abort();
            cleanup_tmp(&tmp);
            let message = match (kind, e.kind()) {
                (Kind::Custom, _) => format!("RequestId: {rid} Error: fork/exec {program}: {e}"),
                (_, io::ErrorKind::NotFound) => format!(
                    "kinesis-data: runtime {} needs the interpreter \"{program}\", which was not found on PATH \
                     (set [lambda.interpreters] in the config)",
                    spec.runtime
                ),
                _ => format!(
                    "kinesis-data: cannot start the interpreter \"{program}\" for runtime {}: {e}",
                    spec.runtime
                ),
            };
            return Err(invalid_entrypoint(message));
        }
    };
    let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    if let Err(e) = registry::record(&shared.pids_dir(), &id, pid, &spec.arn, &spec.version) {
        tracing::warn!(error = %e, "cannot record the instance in the pid registry");
    }

    let mut flushers = Vec::with_capacity(2);
    let pipes: [Option<io::Result<OwnedFd>>; 2] = [
        child.stdout.take().map(|s| s.into_owned_fd()),
        child.stderr.take().map(|s| s.into_owned_fd()),
    ];
    for fd in pipes.into_iter().flatten() {
        match fd.and_then(pipe::Receiver::from_owned_fd) {
            Ok(rx) => {
                let (tx, flush_rx) = mpsc::unbounded_channel();
                flushers.push(tx);
                tokio::spawn(read_output(rx, Arc::clone(log), flush_rx));
            }
            Err(e) => tracing::warn!(error = %e, "cannot read an instance's output"),
        }
    }

    let inst = Arc::new(Instance {
        id: id.clone(),
        arn: spec.arn.clone(),
        generation: spec.generation.clone(),
        pid,
        spawned,
        work: work_tx,
        events: tokio::sync::Mutex::new(events_rx),
        log: Arc::clone(log),
        flushers,
        server: server.abort_handle(),
        exited: AtomicBool::new(false),
        retired: AtomicBool::new(false),
        memory: std::sync::Mutex::new((None, None)),
    });

    let waiter_inst = Arc::clone(&inst);
    let waiter_shared = Arc::clone(shared);
    tokio::spawn(async move {
        let status = child.wait().await.ok();
        // Whatever the runtime left behind in its group goes with it.
        if pid > 0 {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        waiter_inst.exited.store(true, Ordering::SeqCst);
        let _ = events_tx.send(Event::Exited(status));
        waiter_inst.server.abort();
        registry::remove(&waiter_shared.pids_dir(), &waiter_inst.id);
        let _ = tokio::fs::remove_dir_all(&tmp).await;
        waiter_shared.forget(&waiter_inst.id);
    });

    let shutting_down = {
        let mut pool = lock(&shared.pool);
        if !pool.shutting_down {
            pool.live.insert(id, Arc::clone(&inst));
        }
        pool.shutting_down
    };
    if shutting_down {
        inst.kill();
        return Err(StartError::ShuttingDown);
    }
    Ok(inst)
}

/// Most bytes kept for one line without a newline before it is written anyway.
const MAX_LINE: usize = 256 * 1024;

/// Copies one output pipe into the log, line by line. On a flush request it drains what is
/// already in the pipe (non-blocking), writes any partial line, and acks.
async fn read_output(rx: pipe::Receiver, log: Arc<LogSink>, mut flush: mpsc::UnboundedReceiver<oneshot::Sender<()>>) {
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut flush_open = true;
    loop {
        tokio::select! {
            biased;
            request = flush.recv(), if flush_open => {
                flush_open = request.is_some();
                let eof = drain(&rx, &mut buf, &mut pending, &log);
                if !pending.is_empty() {
                    log.raw(&std::mem::take(&mut pending));
                }
                if let Some(ack) = request {
                    let _ = ack.send(());
                }
                if eof {
                    break;
                }
            }
            ready = rx.readable() => {
                let eof = ready.is_err() || drain(&rx, &mut buf, &mut pending, &log);
                if eof {
                    if !pending.is_empty() {
                        log.raw(&pending);
                    }
                    break;
                }
            }
        }
    }
}

/// Reads everything available now; writes complete lines. True at end of file (or error).
fn drain(rx: &pipe::Receiver, buf: &mut [u8], pending: &mut Vec<u8>, log: &LogSink) -> bool {
    loop {
        match rx.try_read(buf) {
            Ok(0) => return true,
            Ok(n) => {
                pending.extend_from_slice(buf.get(..n).unwrap_or_default());
                let mut start = 0;
                while let Some(pos) = pending
                    .get(start..)
                    .and_then(|rest| rest.iter().position(|b| *b == b'\n'))
                {
                    let line = pending.get(start..start + pos).unwrap_or_default();
                    log.raw(line.strip_suffix(b"\r").unwrap_or(line));
                    start += pos + 1;
                }
                pending.drain(..start);
                if pending.len() > MAX_LINE {
                    log.raw(&std::mem::take(pending));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_versions() {
        assert_eq!(wanted_version("python3.12"), Some("3.12"));
        assert_eq!(wanted_version("nodejs20.x"), Some("20"));
        assert_eq!(wanted_version("provided.al2023"), None);
    }

    #[test]
    fn exit_texts() {
        assert_eq!(exit_text(Some(ExitStatus::from_raw(1 << 8))), "exit status 1");
        assert_eq!(exit_text(Some(ExitStatus::from_raw(9))), "signal: 9 (SIGKILL)");
    }

    #[test]
    fn report_lines() {
        let line = report_line(
            "r",
            Duration::from_micros(1234),
            128,
            Some(40),
            Some(Duration::from_millis(5)),
        );
        assert_eq!(
            line,
            "REPORT RequestId: r\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 40 MB\tInit Duration: 5.00 ms"
        );
    }
}
