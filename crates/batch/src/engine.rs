//! The job registry, the scheduler, the task runner, the outcome writer and finalisation
//! (see the crate docs for the lifecycle, the durable layout and the recovery rule).

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use kd_storage::{Clock, MetaOp, MetaStore};
use md5::{Digest, Md5};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::generate::GENERATED_FORMAT;
use crate::lambda::{self, Verdict};
use crate::manifest::{self, TaskRow};
use crate::model::*;
use crate::ports::{BatchFunctions, BatchObjects, CopyOptions, PortError};
use crate::report;
use crate::store::*;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tasks running at once, across every job (default 8).
    pub parallelism: usize,
    /// Attempts of a task that keeps failing temporarily (a `TemporaryFailure` result, or a
    /// throttling / 5xx port error), and of a manifest read or report write that fails
    /// that way (default 3).
    pub max_attempts: u32,
    /// Pause before the first retry; it doubles per attempt, up to 5 s (ms, default 200).
    pub retry_base_ms: u64,
    /// Rows per completion-report results file (default 100,000).
    pub report_chunk_rows: usize,
    /// Largest manifest read (bytes, default 256 MiB); a larger one fails the job.
    pub max_manifest_bytes: u64,
    /// Most tasks a `ManifestGenerator` may select (default 10,000,000); more fails the job.
    pub max_generated_tasks: u64,
    /// Most jobs not yet terminal, in all accounts (default 1,000); CreateJob beyond it
    /// answers TooManyRequestsException.
    pub max_open_jobs: usize,
    /// Most task outcomes in one grouped metadata write (default 4,096).
    pub outcome_batch: usize,
    /// How long [`Batch::shutdown`] lets running tasks finish before it abandons them
    /// (they run again after a restart) (ms, default 10,000).
    pub shutdown_grace_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            parallelism: 8,
            max_attempts: 3,
            retry_base_ms: 200,
            report_chunk_rows: 100_000,
            max_manifest_bytes: 256 * 1024 * 1024,
            max_generated_tasks: 10_000_000,
            max_open_jobs: 1_000,
            outcome_batch: 4_096,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// After this many finished tasks the failure rate is checked.
pub const FAILURE_CHECK_MIN_TASKS: u64 = 1_000;
/// Most tags on a job.
pub const MAX_TAGS: usize = 50;
/// How long a job is kept after it reached a terminal status (90 days, as on AWS); older
/// jobs are deleted when the engine opens.
pub const JOB_RETENTION_MS: i64 = 90 * 24 * 3600 * 1000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn failure(code: &str, reason: String) -> JobFailure {
    JobFailure {
        code: truncate(code.to_owned(), 64),
        reason: truncate(reason, 256),
    }
}

/// The job's failure when more than half of at least [`FAILURE_CHECK_MIN_TASKS`] finished
/// tasks failed.
fn threshold_failure(succeeded: u64, failed: u64) -> Option<JobFailure> {
    let finished = succeeded + failed;
    (finished >= FAILURE_CHECK_MIN_TASKS && failed * 2 > finished).then(|| {
        failure(
            "TaskFailureThresholdExceeded",
            format!(
                "Job failed: the task failure rate exceeded 50% ({failed} of {finished} tasks failed; the threshold applies after {FAILURE_CHECK_MIN_TASKS} tasks)."
            ),
        )
    })
}

fn not_found() -> Error {
    Error::NotFound("The specified job does not exist".into())
}

/// A task scheduled but not finished: when it may run again and its next attempt.
struct Retry {
    due: Instant,
    index: usize,
    attempt: u32,
}

/// The running state of a prepared job (tasks in memory).
struct Run {
    op: Arc<Operation>,
    role: Arc<str>,
    tasks: Arc<Vec<TaskRow>>,
    /// Outcome known (recorded, maybe not yet durable).
    done: Vec<bool>,
    /// Every task before it is done or taken.
    cursor: usize,
    retries: Vec<Retry>,
    in_flight: usize,
    /// Outcomes sent to the writer and not yet committed.
    unflushed: usize,
    succeeded: u64,
    failed: u64,
}

impl Run {
    fn new(op: Operation, role: &str, tasks: Vec<TaskRow>) -> Run {
        let n = tasks.len();
        Run {
            op: Arc::new(op),
            role: Arc::from(role),
            tasks: Arc::new(tasks),
            done: vec![false; n],
            cursor: 0,
            retries: Vec::new(),
            in_flight: 0,
            unflushed: 0,
            succeeded: 0,
            failed: 0,
        }
    }

    fn skip_done(&mut self) {
        while self.cursor < self.done.len() && self.done[self.cursor] {
            self.cursor += 1;
        }
    }

    fn has_pending(&mut self) -> bool {
        self.skip_done();
        self.cursor < self.done.len() || !self.retries.is_empty()
    }
}

struct JobState {
    doc: JobDoc,
    run: Option<Run>,
    /// Finalisation started (never twice).
    finishing: bool,
}

struct Job {
    id: String,
    scope: Scope,
    state: Mutex<JobState>,
    removed: AtomicBool,
}

impl Job {
    fn state(&self) -> MutexGuard<'_, JobState> {
        lock(&self.state)
    }
}

/// What the runner reports for one attempt.
struct Attempt {
    outcome: OutcomeDoc,
    /// The failure is temporary: run the task again while attempts remain.
    retry: bool,
}

enum WriterMsg {
    Outcome { job: Arc<Job>, index: u64, doc: OutcomeDoc },
    Flush(oneshot::Sender<()>),
}

enum Pick {
    Task { job: Arc<Job>, index: usize, attempt: u32 },
    Idle(Option<Instant>),
}

struct Inner {
    config: Config,
    meta: Arc<MetaStore>,
    clock: Arc<dyn Clock>,
    objects: Arc<dyn BatchObjects>,
    functions: Arc<dyn BatchFunctions>,
    jobs: RwLock<HashMap<String, Arc<Job>>>,
    /// (account, region, token) → job id.
    tokens: Mutex<HashMap<(String, String, String), String>>,
    /// Jobs that are Ready or running (Active, Cancelling, Failing).
    runnable: Mutex<Vec<Arc<Job>>>,
    /// Serialises job-document writes (and idempotency checks).
    admin: tokio::sync::Mutex<()>,
    /// Writers of task chunks and outcomes hold it shared; `reset` exclusively.
    epoch: tokio::sync::RwLock<()>,
    wake: Notify,
    writer: mpsc::UnboundedSender<WriterMsg>,
    sem: Arc<Semaphore>,
    in_flight: AtomicUsize,
    idle: Notify,
    stopping: AtomicBool,
    closed: AtomicBool,
    abort: watch::Sender<bool>,
}

/// The S3 Batch Operations engine.
pub struct Batch {
    inner: Arc<Inner>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.abort.send_replace(true);
        for h in lock(&self.handles).drain(..) {
            h.abort();
        }
    }
}

fn fingerprint(spec: &JobSpec) -> Result<String> {
    let mut s = spec.clone();
    s.client_request_token.clear();
    Ok(report::hex(&Md5::digest(to_json(&s)?)))
}

/// Engine-level checks of a CreateJob request (the adapter checks the modeled constraints).
fn check_spec(spec: &JobSpec) -> Result<()> {
    let bad = |m: &str| Err(Error::BadRequest(m.to_owned()));
    if spec.priority < 0 {
        return bad("Priority must be between 0 and 2147483647.");
    }
    if let Some(g) = &spec.manifest_generator {
        if bucket_of_arn(&g.source_bucket).is_none() {
            return bad("ManifestGenerator.S3JobManifestGenerator.SourceBucket must be an S3 bucket ARN.");
        }
        if g.enable_manifest_output {
            let Some(out) = &g.output else {
                return bad("ManifestOutputLocation is required when EnableManifestOutput is true.");
            };
            if bucket_of_arn(&out.bucket).is_none() {
                return bad("ManifestOutputLocation.Bucket must be an S3 bucket ARN.");
            }
            if out.format != GENERATED_FORMAT {
                return Err(Error::BadRequest(format!(
                    "ManifestOutputLocation.ManifestFormat must be {GENERATED_FORMAT}."
                )));
            }
        }
    } else {
        if spec.manifest.format != "S3BatchOperations_CSV_20180820" {
            return Err(Error::BadRequest(format!(
                "Manifest format {} is not supported by kinesis-data; use S3BatchOperations_CSV_20180820.",
                spec.manifest.format
            )));
        }
        if let Some(f) = &spec.manifest.fields {
            manifest::check_fields(f).map_err(Error::BadRequest)?;
        }
        if object_of_arn(&spec.manifest.object_arn).is_none() {
            return bad("Manifest.Location.ObjectArn must be an S3 object ARN (arn:aws:s3:::bucket/key).");
        }
    }
    if spec.report.enabled {
        if spec.report.bucket.as_deref().and_then(bucket_of_arn).is_none() {
            return bad("Report.Bucket must be an S3 bucket ARN when the report is enabled.");
        }
        if spec.report.format.as_deref() != Some("Report_CSV_20180820") {
            return bad("Report.Format must be Report_CSV_20180820 when the report is enabled.");
        }
    }
    match &spec.operation {
        Operation::LambdaInvoke(l) => {
            if !matches!(l.invocation_schema_version.as_deref(), None | Some("1.0" | "2.0")) {
                return bad("InvocationSchemaVersion must be 1.0 or 2.0.");
            }
            if l.user_arguments.is_some() && !l.schema_2() {
                return bad("UserArguments requires InvocationSchemaVersion 2.0.");
            }
        }
        Operation::S3PutObjectCopy(c) => {
            if c.target_resource.as_deref().and_then(bucket_of_arn).is_none() {
                return bad("S3PutObjectCopy.TargetResource must be an S3 bucket ARN.");
            }
        }
        Operation::S3PutObjectTagging(_) | Operation::S3DeleteObjectTagging | Operation::S3ReplicateObject => {}
    }
    Ok(())
}

fn backoff(config: &Config, attempt: u32) -> Duration {
    let ms = config
        .retry_base_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(16))
        .min(5_000);
    Duration::from_millis(ms)
}

impl Batch {
    /// Opens the engine: loads every job, resumes the ones that were preparing or running
    /// (see the crate docs' recovery rule) and starts the scheduler and the outcome writer
    /// (`tokio::spawn`: call inside a runtime).
    pub fn open(
        config: Config,
        meta: Arc<MetaStore>,
        clock: Arc<dyn Clock>,
        objects: Arc<dyn BatchObjects>,
        functions: Arc<dyn BatchFunctions>,
    ) -> Result<Arc<Batch>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let parallelism = config.parallelism.max(1);
        let inner = Arc::new(Inner {
            config,
            meta,
            clock,
            objects,
            functions,
            jobs: RwLock::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            runnable: Mutex::new(Vec::new()),
            admin: tokio::sync::Mutex::new(()),
            epoch: tokio::sync::RwLock::new(()),
            wake: Notify::new(),
            writer: tx,
            sem: Arc::new(Semaphore::new(parallelism)),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            stopping: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            abort: watch::Sender::new(false),
        });
        let mut to_prepare = Vec::new();
        let mut to_check = Vec::new();
        let mut to_clean = Vec::new();
        let mut to_clean_ids = Vec::new();
        let now = inner.clock.now_ms();
        let mut expired = Vec::new();
        for (key, raw) in inner.meta.scan_prefix(T_JOBS, "")? {
            let mut doc: JobDoc = from_json("job", &raw)?;
            if doc.id != key {
                return Err(Error::Internal(format!("job document {key} names job {}", doc.id)));
            }
            if doc.status.is_terminal() && doc.terminated_ms.is_some_and(|t| now - t > JOB_RETENTION_MS) {
                expired.push(MetaOp::Delete {
                    table: T_JOBS.into(),
                    key,
                });
                to_clean_ids.push(doc.id);
                continue;
            }
            let scope = Scope {
                account: doc.account.clone(),
                region: doc.region.clone(),
            };
            lock(&inner.tokens).insert(
                (
                    doc.account.clone(),
                    doc.region.clone(),
                    doc.request.client_request_token.clone(),
                ),
                doc.id.clone(),
            );
            let mut run = None;
            let mut broken = false;
            match doc.status {
                s if s.is_terminal() => {}
                JobStatus::New | JobStatus::Preparing => {}
                _ => match inner.load_run(&doc) {
                    Ok(r) => {
                        if doc.active_since_ms.is_some() {
                            doc.active_since_ms = Some(now);
                        }
                        if matches!(
                            doc.status,
                            JobStatus::Paused | JobStatus::Pausing | JobStatus::Completing
                        ) {
                            doc.status = JobStatus::Active;
                        }
                        // A Failing status that was not yet written is found again.
                        if matches!(doc.status, JobStatus::Ready | JobStatus::Active)
                            && let Some(f) = threshold_failure(r.succeeded, r.failed)
                        {
                            doc.status = JobStatus::Failing;
                            doc.failure_reasons.push(f);
                        }
                        run = Some(r);
                    }
                    Err(e) => {
                        tracing::error!(job = %doc.id, error = %e, "cannot load a job's tasks; the job fails");
                        broken = true;
                        doc.status = JobStatus::Failed;
                        doc.terminated_ms = Some(now);
                        doc.active_since_ms = None;
                        doc.failure_reasons.push(failure(
                            "InternalError",
                            format!("The job's stored tasks are unreadable: {e}"),
                        ));
                    }
                },
            }
            let status = doc.status;
            let job = Arc::new(Job {
                id: doc.id.clone(),
                scope,
                state: Mutex::new(JobState {
                    doc,
                    run,
                    finishing: false,
                }),
                removed: AtomicBool::new(false),
            });
            inner
                .jobs
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(job.id.clone(), job.clone());
            match status {
                JobStatus::New | JobStatus::Preparing => to_prepare.push(job),
                JobStatus::Ready | JobStatus::Active | JobStatus::Cancelling | JobStatus::Failing => {
                    lock(&inner.runnable).push(job.clone());
                    to_check.push(job);
                }
                s if s.is_terminal() => {
                    if broken {
                        inner.spawn_persist(&job);
                    }
                    to_clean.push(job);
                }
                _ => {}
            }
        }
        inner.meta.write(expired)?;
        let writer = tokio::spawn(writer(inner.clone(), rx));
        let scheduler = tokio::spawn(scheduler(inner.clone()));
        for job in to_prepare {
            tokio::spawn(prepare(inner.clone(), job));
        }
        for job in to_check {
            inner.spawn_persist(&job);
            inner.maybe_finish(&job);
        }
        for id in to_clean.iter().map(|j| j.id.clone()).chain(to_clean_ids) {
            tokio::spawn(cleanup(inner.clone(), id));
        }
        Ok(Arc::new(Batch {
            inner,
            handles: Mutex::new(vec![writer, scheduler]),
        }))
    }

    fn get(&self, scope: &Scope, id: &str) -> Result<Arc<Job>> {
        self.inner.get(scope, id)
    }

    /// CreateJob: validates, records the job durably (status `New`) and starts preparing it.
    /// The same `ClientRequestToken` with the same request answers the same job id; with a
    /// different request, IdempotencyException.
    pub async fn create_job(&self, scope: &Scope, spec: JobSpec) -> Result<String> {
        check_spec(&spec)?;
        let inner = &self.inner;
        let print = fingerprint(&spec)?;
        let job = {
            let _admin = inner.admin.lock().await;
            let token_key = (
                scope.account.clone(),
                scope.region.clone(),
                spec.client_request_token.clone(),
            );
            let existing = lock(&inner.tokens).get(&token_key).cloned();
            if let Some(id) = existing
                && let Ok(job) = inner.get(scope, &id)
            {
                if job.state().doc.fingerprint == print {
                    return Ok(id);
                }
                return Err(Error::Idempotency(
                    "The ClientRequestToken was already used with a different request.".into(),
                ));
            }
            let open = inner
                .jobs
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .filter(|j| !j.state().doc.status.is_terminal())
                .count();
            if open >= inner.config.max_open_jobs {
                return Err(Error::TooManyRequests(format!(
                    "Too many jobs are not yet finished (the limit is {}); try again later.",
                    inner.config.max_open_jobs
                )));
            }
            let id = uuid::Uuid::new_v4().to_string();
            let doc = JobDoc {
                version: FORMAT_VERSION,
                id: id.clone(),
                account: scope.account.clone(),
                region: scope.region.clone(),
                fingerprint: print,
                priority: spec.priority,
                tags: spec.tags.clone(),
                request: spec,
                status: JobStatus::New,
                status_update_reason: None,
                failure_reasons: Vec::new(),
                created_ms: inner.clock.now_ms(),
                terminated_ms: None,
                suspended_ms: None,
                suspended_cause: None,
                total_tasks: 0,
                succeeded: 0,
                failed: 0,
                active_elapsed_ms: 0,
                active_since_ms: None,
                generated_manifest: None,
            };
            {
                let _epoch = inner.epoch.read().await;
                inner
                    .meta
                    .write_grouped(vec![MetaOp::Put {
                        table: T_JOBS.into(),
                        key: id.clone(),
                        value: to_json(&doc)?,
                    }])
                    .await?;
            }
            let job = Arc::new(Job {
                id: id.clone(),
                scope: scope.clone(),
                state: Mutex::new(JobState {
                    doc,
                    run: None,
                    finishing: false,
                }),
                removed: AtomicBool::new(false),
            });
            inner
                .jobs
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone(), job.clone());
            lock(&inner.tokens).insert(token_key, id);
            job
        };
        let id = job.id.clone();
        tokio::spawn(prepare(inner.clone(), job));
        Ok(id)
    }

    /// DescribeJob.
    pub fn describe_job(&self, scope: &Scope, id: &str) -> Result<JobInfo> {
        let job = self.get(scope, id)?;
        let now = self.inner.clock.now_ms();
        let st = job.state();
        let d = &st.doc;
        Ok(JobInfo {
            id: d.id.clone(),
            arn: job_arn(scope, &d.id),
            status: d.status,
            confirmation_required: d.request.confirmation_required,
            description: d.request.description.clone(),
            manifest: d.request.manifest.clone(),
            operation: d.request.operation.clone(),
            priority: d.priority,
            progress: progress(&st, now),
            status_update_reason: d.status_update_reason.clone(),
            failure_reasons: d.failure_reasons.clone(),
            report: d.request.report.clone(),
            creation_ms: d.created_ms,
            termination_ms: d.terminated_ms,
            role_arn: d.request.role_arn.clone(),
            suspended_ms: d.suspended_ms,
            suspended_cause: d.suspended_cause.clone(),
            manifest_generator: d.request.manifest_generator.clone(),
            generated_manifest: d.generated_manifest.clone(),
        })
    }

    /// ListJobs: the scope's jobs, newest first, optionally only those in `statuses`;
    /// `next_token` continues a previous page.
    pub fn list_jobs(
        &self,
        scope: &Scope,
        statuses: &[JobStatus],
        next_token: Option<&str>,
        max_results: usize,
    ) -> Result<JobPage> {
        let after = match next_token {
            None => None,
            Some(t) => Some(
                decode_token(t)
                    .ok_or_else(|| Error::InvalidNextToken("The continuation token provided is invalid.".into()))?,
            ),
        };
        let now = self.inner.clock.now_ms();
        let mut all: Vec<JobSummary> = self
            .inner
            .jobs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|j| j.scope == *scope)
            .filter_map(|j| {
                let st = j.state();
                let d = &st.doc;
                if !statuses.is_empty() && !statuses.contains(&d.status) {
                    return None;
                }
                Some(JobSummary {
                    id: d.id.clone(),
                    description: d.request.description.clone(),
                    operation: d.request.operation.name(),
                    priority: d.priority,
                    status: d.status,
                    creation_ms: d.created_ms,
                    termination_ms: d.terminated_ms,
                    progress: progress(&st, now),
                })
            })
            .collect();
        all.sort_by(|a, b| b.creation_ms.cmp(&a.creation_ms).then_with(|| a.id.cmp(&b.id)));
        // The first job strictly after the token in (creation desc, id asc) order.
        let start = match &after {
            None => 0,
            Some((ms, id)) => all
                .iter()
                .position(|j| j.creation_ms < *ms || (j.creation_ms == *ms && j.id.as_str() > id.as_str()))
                .unwrap_or(all.len()),
        };
        let rest: Vec<JobSummary> = all.into_iter().skip(start).collect();
        let more = rest.len() > max_results;
        let jobs: Vec<JobSummary> = rest.into_iter().take(max_results).collect();
        let next_token = match (more, jobs.last()) {
            (true, Some(last)) => Some(encode_token(last.creation_ms, &last.id)),
            _ => None,
        };
        Ok(JobPage { jobs, next_token })
    }

    /// UpdateJobPriority (any status). Returns the new priority.
    pub async fn update_priority(&self, scope: &Scope, id: &str, priority: i32) -> Result<i32> {
        if priority < 0 {
            return Err(Error::BadRequest("Priority must be between 0 and 2147483647.".into()));
        }
        let job = self.get(scope, id)?;
        self.inner
            .commit(
                &job,
                |d| {
                    d.priority = priority;
                    Ok(())
                },
                |_, _| {},
            )
            .await?;
        self.inner.wake.notify_one();
        Ok(priority)
    }

    /// UpdateJobStatus: `Ready` confirms a Suspended job; `Cancelled` cancels a job that is
    /// not terminal (a running one goes through Cancelling while its running tasks finish).
    pub async fn update_status(
        &self,
        scope: &Scope,
        id: &str,
        requested: RequestedStatus,
        reason: Option<String>,
    ) -> Result<StatusUpdate> {
        let inner = &self.inner;
        let job = self.get(scope, id)?;
        let now = inner.clock.now_ms();
        #[derive(Clone, Copy)]
        enum After {
            Nothing,
            Runnable,
            Finish,
            Clean,
        }
        let change = |d: &mut JobDoc| -> Result<After> {
            let from = d.status;
            let after = match (requested, from) {
                (RequestedStatus::Ready, JobStatus::Suspended) => {
                    d.status = JobStatus::Ready;
                    After::Runnable
                }
                (RequestedStatus::Ready, _) => {
                    return Err(Error::JobStatus(format!(
                        "Job {id} is in status {from}; only a Suspended job can be set to Ready."
                    )));
                }
                (RequestedStatus::Cancelled, JobStatus::New | JobStatus::Preparing | JobStatus::Suspended) => {
                    d.status = JobStatus::Cancelled;
                    d.terminated_ms = Some(now);
                    After::Clean
                }
                (
                    RequestedStatus::Cancelled,
                    JobStatus::Ready | JobStatus::Active | JobStatus::Paused | JobStatus::Pausing,
                ) => {
                    d.status = JobStatus::Cancelling;
                    After::Finish
                }
                (RequestedStatus::Cancelled, JobStatus::Cancelling) => After::Nothing,
                (RequestedStatus::Cancelled, _) => {
                    return Err(Error::JobStatus(format!(
                        "Job {id} is in status {from} and can no longer be cancelled."
                    )));
                }
            };
            if reason.is_some() {
                d.status_update_reason = reason.clone();
            }
            Ok(after)
        };
        let (after, status, reason) = inner
            .commit(&job, change, |st, after| match after {
                After::Clean => st.run = None,
                After::Finish => {
                    if let Some(run) = st.run.as_mut() {
                        run.retries.clear();
                    }
                }
                After::Nothing | After::Runnable => {}
            })
            .await
            .map(|after| {
                let st = job.state();
                (after, st.doc.status, st.doc.status_update_reason.clone())
            })?;
        match after {
            After::Nothing => {}
            After::Runnable => {
                lock(&inner.runnable).push(job.clone());
                inner.wake.notify_one();
            }
            After::Finish => {
                inner.maybe_finish(&job);
                inner.wake.notify_one();
            }
            After::Clean => {
                tokio::spawn(cleanup(inner.clone(), job.id.clone()));
            }
        }
        Ok(StatusUpdate {
            id: id.to_owned(),
            status,
            reason,
        })
    }

    /// GetJobTagging.
    pub fn get_tagging(&self, scope: &Scope, id: &str) -> Result<Vec<Tag>> {
        Ok(self.get(scope, id)?.state().doc.tags.clone())
    }

    /// PutJobTagging: replaces the job's tags (at most [`MAX_TAGS`]).
    pub async fn put_tagging(&self, scope: &Scope, id: &str, tags: Vec<Tag>) -> Result<()> {
        if tags.len() > MAX_TAGS {
            return Err(Error::TooManyTags(format!(
                "The number of tags exceeds the limit of {MAX_TAGS} tags."
            )));
        }
        let job = self.get(scope, id)?;
        self.inner
            .commit(
                &job,
                |d| {
                    d.tags = tags.clone();
                    Ok(())
                },
                |_, _| {},
            )
            .await
    }

    /// DeleteJobTagging: removes every tag.
    pub async fn delete_tagging(&self, scope: &Scope, id: &str) -> Result<()> {
        let job = self.get(scope, id)?;
        self.inner
            .commit(
                &job,
                |d| {
                    d.tags.clear();
                    Ok(())
                },
                |_, _| {},
            )
            .await
    }

    /// Deletes every job of every account (tests). Tasks still running are abandoned (their
    /// outcomes are dropped).
    pub async fn reset(&self) -> Result<()> {
        let inner = &self.inner;
        let _admin = inner.admin.lock().await;
        let _epoch = inner.epoch.write().await;
        let jobs: Vec<Arc<Job>> = inner
            .jobs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, j)| j)
            .collect();
        for j in &jobs {
            j.removed.store(true, Ordering::SeqCst);
        }
        lock(&inner.tokens).clear();
        lock(&inner.runnable).clear();
        for table in ALL_TABLES {
            let keys: Vec<String> = inner.meta.scan_prefix(table, "")?.into_iter().map(|(k, _)| k).collect();
            for chunk in keys.chunks(10_000) {
                let ops = chunk
                    .iter()
                    .map(|k| MetaOp::Delete {
                        table: table.into(),
                        key: k.clone(),
                    })
                    .collect();
                inner.meta.write_grouped(ops).await?;
            }
        }
        Ok(())
    }

    /// Graceful stop: no new task starts; running tasks get [`Config::shutdown_grace_ms`] to
    /// finish (then they are abandoned and run again after a restart); every recorded
    /// outcome is made durable; the background tasks stop.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.stopping.store(true, Ordering::SeqCst);
        inner.wake.notify_one();
        let deadline = Instant::now() + Duration::from_millis(inner.config.shutdown_grace_ms);
        while inner.in_flight.load(Ordering::SeqCst) > 0 {
            let idle = inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if inner.in_flight.load(Ordering::SeqCst) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                break;
            }
        }
        if inner.in_flight.load(Ordering::SeqCst) > 0 {
            inner.abort.send_replace(true);
            let until = Instant::now() + Duration::from_secs(5);
            while inner.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let (tx, rx) = oneshot::channel();
        if inner.writer.send(WriterMsg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
        for h in lock(&self.handles).drain(..) {
            h.abort();
        }
    }
}

fn progress(st: &JobState, now: i64) -> Progress {
    let d = &st.doc;
    let (succeeded, failed) = match &st.run {
        Some(r) => (r.succeeded, r.failed),
        None => (d.succeeded, d.failed),
    };
    let running = d.active_since_ms.map(|s| (now - s).max(0)).unwrap_or(0);
    Progress {
        total: d.total_tasks,
        succeeded,
        failed,
        elapsed_active_secs: u64::try_from((d.active_elapsed_ms + running) / 1000).unwrap_or(0),
    }
}

fn encode_token(ms: i64, id: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{ms}:{id}"))
}

fn decode_token(t: &str) -> Option<(i64, String)> {
    let raw = base64::engine::general_purpose::STANDARD.decode(t).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (ms, id) = s.split_once(':')?;
    Some((ms.parse().ok()?, id.to_owned()))
}

impl Inner {
    fn get(&self, scope: &Scope, id: &str) -> Result<Arc<Job>> {
        let jobs = self.jobs.read().unwrap_or_else(|e| e.into_inner());
        match jobs.get(id) {
            Some(j) if j.scope == *scope => Ok(j.clone()),
            _ => Err(not_found()),
        }
    }

    /// Writes the job's current document (the in-memory document is the newest; writes are
    /// serialised so the last one written is the newest).
    async fn persist(&self, job: &Arc<Job>) -> Result<()> {
        let _admin = self.admin.lock().await;
        let _epoch = self.epoch.read().await;
        if job.removed.load(Ordering::SeqCst) || self.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let value = to_json(&job.state().doc)?;
        self.meta
            .write_grouped(vec![MetaOp::Put {
                table: T_JOBS.into(),
                key: job.id.clone(),
                value,
            }])
            .await?;
        Ok(())
    }

    /// Changes a job's document durably before the change is visible: `change` is applied to
    /// a copy, the copy is committed, then `change` is applied to the live document (which may
    /// have moved on meanwhile only in ways that are persisted after this) and `live` makes the
    /// matching in-memory changes.
    async fn commit<R>(
        &self,
        job: &Arc<Job>,
        change: impl Fn(&mut JobDoc) -> Result<R>,
        live: impl FnOnce(&mut JobState, &R),
    ) -> Result<R> {
        let _admin = self.admin.lock().await;
        let _epoch = self.epoch.read().await;
        if job.removed.load(Ordering::SeqCst) {
            return Err(not_found());
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Internal("the batch engine is shut down".into()));
        }
        let (r, value) = {
            let mut doc = job.state().doc.clone();
            let r = change(&mut doc)?;
            (r, to_json(&doc)?)
        };
        self.meta
            .write_grouped(vec![MetaOp::Put {
                table: T_JOBS.into(),
                key: job.id.clone(),
                value,
            }])
            .await?;
        let mut st = job.state();
        if let Err(e) = change(&mut st.doc) {
            tracing::warn!(job = %job.id, error = %e, "a committed job change no longer applies in memory");
        }
        live(&mut st, &r);
        Ok(r)
    }

    fn spawn_persist(self: &Arc<Self>, job: &Arc<Job>) {
        let inner = self.clone();
        let job = job.clone();
        tokio::spawn(async move {
            if let Err(e) = inner.persist(&job).await {
                tracing::error!(job = %job.id, error = %e, "cannot record a job's status");
            }
        });
    }

    /// Reads a prepared job's tasks and the outcomes recorded so far.
    fn load_run(&self, doc: &JobDoc) -> Result<Run> {
        let mut tasks = Vec::new();
        let mut last: Option<Arc<str>> = None;
        for (key, raw) in self.meta.scan_prefix(T_TASKS, &format!("{}/", doc.id))? {
            let chunk: TaskChunk = from_json("task chunk", &raw)?;
            if chunk.first != tasks.len() as u64 {
                return Err(Error::Internal(format!("task chunk {key} starts at {}", chunk.first)));
            }
            for (bucket, key, version) in chunk.rows {
                let bucket = match &last {
                    Some(b) if **b == *bucket => b.clone(),
                    _ => {
                        let b: Arc<str> = Arc::from(bucket.as_str());
                        last = Some(b.clone());
                        b
                    }
                };
                tasks.push(TaskRow { bucket, key, version });
            }
        }
        if tasks.len() as u64 != doc.total_tasks {
            return Err(Error::Internal(format!(
                "{} stored tasks, {} expected",
                tasks.len(),
                doc.total_tasks
            )));
        }
        let mut run = Run::new(doc.request.operation.clone(), &doc.request.role_arn, tasks);
        for (key, raw) in self.meta.scan_prefix(T_OUTCOMES, &format!("{}/", doc.id))? {
            let o: OutcomeDoc = from_json("task outcome", &raw)?;
            let Some(i) = outcome_index(&key).and_then(|i| usize::try_from(i).ok()) else {
                continue;
            };
            if let Some(d) = run.done.get_mut(i)
                && !*d
            {
                *d = true;
                if o.ok {
                    run.succeeded += 1;
                } else {
                    run.failed += 1;
                }
            }
        }
        Ok(run)
    }

    /// Chooses the next task: the highest-priority job (then the oldest) with a task due.
    fn pick(self: &Arc<Self>) -> Pick {
        let now = Instant::now();
        let now_ms = self.clock.now_ms();
        let mut candidates: Vec<(i32, i64, Arc<Job>)> = lock(&self.runnable)
            .iter()
            .map(|j| {
                let st = j.state();
                (st.doc.priority, st.doc.created_ms, j.clone())
            })
            .collect();
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then_with(|| a.2.id.cmp(&b.2.id)));
        let mut next_due: Option<Instant> = None;
        let mut finish = Vec::new();
        let mut promoted = Vec::new();
        let mut picked = None;
        for (_, _, job) in candidates {
            let mut st = job.state();
            if st.finishing {
                continue;
            }
            let status = st.doc.status;
            if !matches!(status, JobStatus::Ready | JobStatus::Active) {
                if st.run.as_ref().is_some_and(|r| r.in_flight == 0 && r.unflushed == 0) {
                    finish.push(job.clone());
                }
                continue;
            }
            if status == JobStatus::Ready {
                st.doc.status = JobStatus::Active;
                st.doc.active_since_ms = Some(now_ms);
                promoted.push(job.clone());
            }
            let Some(run) = st.run.as_mut() else {
                continue;
            };
            if let Some(pos) = run.retries.iter().position(|r| r.due <= now) {
                let r = run.retries.swap_remove(pos);
                run.in_flight += 1;
                picked = Some((job.clone(), r.index, r.attempt));
                break;
            }
            run.skip_done();
            if run.cursor < run.tasks.len() {
                let index = run.cursor;
                run.cursor += 1;
                run.in_flight += 1;
                picked = Some((job.clone(), index, 1));
                break;
            }
            for r in &run.retries {
                next_due = Some(next_due.map_or(r.due, |d| d.min(r.due)));
            }
            if run.retries.is_empty() && run.in_flight == 0 && run.unflushed == 0 {
                finish.push(job.clone());
            }
        }
        for job in &promoted {
            self.spawn_persist(job);
        }
        for job in &finish {
            self.maybe_finish(job);
        }
        match picked {
            Some((job, index, attempt)) => {
                self.in_flight.fetch_add(1, Ordering::SeqCst);
                Pick::Task { job, index, attempt }
            }
            None => Pick::Idle(next_due),
        }
    }

    /// Records one finished task: counters, the failure-rate rule, and the durable write.
    fn record(self: &Arc<Self>, job: &Arc<Job>, index: usize, outcome: OutcomeDoc) {
        let mut failing = false;
        {
            let mut st = job.state();
            let Some(run) = st.run.as_mut() else {
                return;
            };
            run.in_flight = run.in_flight.saturating_sub(1);
            if run.done.get(index).copied().unwrap_or(true) {
                return;
            }
            run.done[index] = true;
            if outcome.ok {
                run.succeeded += 1;
            } else {
                run.failed += 1;
            }
            run.unflushed += 1;
            let (ok, bad) = (run.succeeded, run.failed);
            if st.doc.status == JobStatus::Active
                && let Some(f) = threshold_failure(ok, bad)
            {
                st.doc.status = JobStatus::Failing;
                st.doc.failure_reasons.push(f);
                if let Some(run) = st.run.as_mut() {
                    run.retries.clear();
                }
                failing = true;
            }
        }
        if failing {
            self.spawn_persist(job);
        }
        let msg = WriterMsg::Outcome {
            job: job.clone(),
            index: index as u64,
            doc: outcome,
        };
        if self.writer.send(msg).is_err() {
            tracing::warn!(job = %job.id, "the outcome writer has stopped; a task outcome is not recorded");
        }
    }

    /// A task ended without an outcome (a retry is due later, or it was abandoned).
    fn release(self: &Arc<Self>, job: &Arc<Job>, retry: Option<Retry>) {
        {
            let mut st = job.state();
            let active = st.doc.status == JobStatus::Active;
            if let Some(run) = st.run.as_mut() {
                run.in_flight = run.in_flight.saturating_sub(1);
                if let Some(r) = retry
                    && active
                {
                    run.retries.push(r);
                }
            }
        }
        self.maybe_finish(job);
    }

    /// Starts finalisation once nothing is running, pending or unwritten.
    fn maybe_finish(self: &Arc<Self>, job: &Arc<Job>) {
        let go = {
            let mut st = job.state();
            if st.finishing || job.removed.load(Ordering::SeqCst) || self.closed.load(Ordering::SeqCst) {
                false
            } else {
                let status = st.doc.status;
                match st.run.as_mut() {
                    None => false,
                    Some(run) if run.in_flight > 0 || run.unflushed > 0 => false,
                    Some(run) => match status {
                        JobStatus::Cancelling | JobStatus::Failing | JobStatus::Completing => true,
                        JobStatus::Active => !run.has_pending(),
                        _ => false,
                    },
                }
            }
        };
        if go {
            {
                let mut st = job.state();
                st.finishing = true;
                if st.doc.status == JobStatus::Active {
                    st.doc.status = JobStatus::Completing;
                }
            }
            tokio::spawn(finalize(self.clone(), job.clone()));
        }
    }

    async fn retry_port<T, F, Fut>(&self, mut call: F) -> std::result::Result<T, PortError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, PortError>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Err(e) if e.is_transient() && attempt < self.config.max_attempts.max(1) => {
                    tokio::time::sleep(backoff(&self.config, attempt)).await;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// Runs one attempt of one task through the ports.
    async fn execute(&self, job_id: &str, op: &Operation, role: &str, row: &TaskRow, index: usize) -> Attempt {
        let ok = |msg: String| Attempt {
            outcome: OutcomeDoc {
                v: FORMAT_VERSION,
                ok: true,
                http: 200,
                code: String::new(),
                msg: truncate(msg, crate::MAX_RESULT_MESSAGE),
            },
            retry: false,
        };
        let fail = |http: u16, code: &str, msg: String, retry: bool| Attempt {
            outcome: OutcomeDoc {
                v: FORMAT_VERSION,
                ok: false,
                http,
                code: code.to_owned(),
                msg: truncate(msg, crate::MAX_RESULT_MESSAGE),
            },
            retry,
        };
        let port = |r: std::result::Result<(), PortError>| match r {
            Ok(()) => ok("Successful".into()),
            Err(e) => {
                let retry = e.is_transient();
                fail(e.http_status, &e.code, e.message, retry)
            }
        };
        let version = row.version.as_deref();
        match op {
            Operation::LambdaInvoke(l) => {
                let task_id = lambda::task_id(job_id, index as u64);
                let payload = lambda::event(job_id, &lambda::invocation_id(), &task_id, l, row);
                match self.functions.invoke(role, &l.function_arn, payload).await {
                    Err(e) => {
                        let retry = e.is_transient();
                        fail(e.http_status, &e.code, e.message, retry)
                    }
                    Ok(out) => match lambda::verdict(&out, &task_id) {
                        Verdict::Succeeded(s) => ok(s),
                        Verdict::Temporary(s) => fail(200, "TemporaryFailure", s, true),
                        Verdict::Permanent(s) => fail(200, "PermanentFailure", s, false),
                    },
                }
            }
            Operation::S3PutObjectCopy(c) => {
                let dst_bucket = c.target_resource.as_deref().and_then(bucket_of_arn).unwrap_or_default();
                let key = row.decoded_key();
                let dst_key = match c.target_key_prefix.as_deref().filter(|p| !p.is_empty()) {
                    Some(p) if p.ends_with('/') => format!("{p}{key}"),
                    Some(p) => format!("{p}/{key}"),
                    None => key.clone(),
                };
                let opts = copy_options(c);
                port(
                    self.objects
                        .copy(role, &row.bucket, &key, version, dst_bucket, &dst_key, &opts)
                        .await,
                )
            }
            Operation::S3PutObjectTagging(t) => {
                let tags: Vec<(String, String)> = t
                    .tag_set
                    .iter()
                    .flatten()
                    .map(|t| (t.key.clone(), t.value.clone()))
                    .collect();
                port(
                    self.objects
                        .put_tagging(role, &row.bucket, &row.decoded_key(), version, &tags)
                        .await,
                )
            }
            Operation::S3DeleteObjectTagging => port(
                self.objects
                    .delete_tagging(role, &row.bucket, &row.decoded_key(), version)
                    .await,
            ),
            Operation::S3ReplicateObject => port(
                self.objects
                    .replicate(role, &row.bucket, &row.decoded_key(), version)
                    .await,
            ),
        }
    }
}

fn copy_options(c: &CopyObject) -> CopyOptions {
    let m = c.new_object_metadata.clone().unwrap_or_default();
    let tags: Vec<(String, String)> = c
        .new_object_tagging
        .iter()
        .flatten()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect();
    CopyOptions {
        metadata_directive: c.metadata_directive.clone(),
        new_metadata: m.user_metadata.unwrap_or_default(),
        content_type: m.content_type,
        cache_control: m.cache_control,
        content_disposition: m.content_disposition,
        content_encoding: m.content_encoding,
        content_language: m.content_language,
        storage_class: c.storage_class.clone(),
        tagging_directive: c.new_object_tagging.as_ref().map(|_| "REPLACE".to_owned()),
        new_tags: tags,
    }
}

async fn scheduler(inner: Arc<Inner>) {
    loop {
        let Ok(permit) = inner.sem.clone().acquire_owned().await else {
            return;
        };
        loop {
            if inner.stopping.load(Ordering::SeqCst) {
                return;
            }
            match inner.pick() {
                Pick::Task { job, index, attempt } => {
                    tokio::spawn(run_task(inner.clone(), job, index, attempt, permit));
                    break;
                }
                Pick::Idle(due) => {
                    let wait = due
                        .map(|d| d.saturating_duration_since(Instant::now()))
                        .unwrap_or(Duration::from_secs(3600));
                    tokio::select! {
                        _ = inner.wake.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

async fn run_task(
    inner: Arc<Inner>,
    job: Arc<Job>,
    index: usize,
    attempt: u32,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let prepared = {
        let st = job.state();
        st.run.as_ref().and_then(|r| {
            r.tasks
                .get(index)
                .map(|row| (r.op.clone(), r.role.clone(), row.clone()))
        })
    };
    let mut abort = inner.abort.subscribe();
    let result = match &prepared {
        None => None,
        Some((op, role, row)) => {
            tokio::select! {
                a = inner.execute(&job.id, op, role, row, index) => Some(a),
                _ = abort.wait_for(|v| *v) => None,
            }
        }
    };
    drop(permit);
    match result {
        None => inner.release(&job, None),
        Some(a) if a.retry && attempt < inner.config.max_attempts.max(1) => {
            let retry = Retry {
                due: Instant::now() + backoff(&inner.config, attempt),
                index,
                attempt: attempt + 1,
            };
            inner.release(&job, Some(retry));
        }
        Some(a) => inner.record(&job, index, a.outcome),
    }
    if inner.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
        inner.idle.notify_waiters();
    }
    inner.wake.notify_one();
}

/// Commits task outcomes in groups: everything queued while the previous commit ran goes
/// into the next one (at most [`Config::outcome_batch`]).
async fn writer(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<WriterMsg>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < inner.config.outcome_batch.max(1) {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let mut outcomes = Vec::new();
        let mut flushes = Vec::new();
        for m in batch {
            match m {
                WriterMsg::Outcome { job, index, doc } => outcomes.push((job, index, doc)),
                WriterMsg::Flush(tx) => flushes.push(tx),
            }
        }
        if !outcomes.is_empty() {
            let mut values = Vec::with_capacity(outcomes.len());
            for (job, index, doc) in &outcomes {
                match to_json(doc) {
                    Ok(v) => values.push((outcome_key(&job.id, *index), v)),
                    Err(e) => tracing::error!(job = %job.id, error = %e, "cannot encode a task outcome"),
                }
            }
            let mut delay = Duration::from_millis(100);
            loop {
                let _epoch = inner.epoch.read().await;
                if inner.closed.load(Ordering::SeqCst) {
                    return;
                }
                let ops: Vec<MetaOp> = outcomes
                    .iter()
                    .zip(&values)
                    .filter(|((job, _, _), _)| !job.removed.load(Ordering::SeqCst))
                    .map(|(_, (key, value))| MetaOp::Put {
                        table: T_OUTCOMES.into(),
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .collect();
                match inner.meta.write_grouped(ops).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot record task outcomes; retrying");
                        drop(_epoch);
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
            let mut touched: Vec<Arc<Job>> = Vec::new();
            for (job, _, _) in outcomes {
                if let Some(run) = job.state().run.as_mut() {
                    run.unflushed = run.unflushed.saturating_sub(1);
                }
                if !touched.iter().any(|j| Arc::ptr_eq(j, &job)) {
                    touched.push(job);
                }
            }
            for job in &touched {
                inner.maybe_finish(job);
            }
        }
        for tx in flushes {
            let _ = tx.send(());
        }
    }
}

/// New/Preparing → read and check the manifest → Suspended / Ready (or Failed).
/// The error `commit` closures use to say "the job moved on; do nothing".
fn moved_on() -> Error {
    Error::JobStatus("the job is no longer preparing".into())
}

async fn prepare(inner: Arc<Inner>, job: Arc<Job>) {
    let started = inner
        .commit(
            &job,
            |d| match d.status {
                JobStatus::New | JobStatus::Preparing => {
                    d.status = JobStatus::Preparing;
                    Ok(d.request.clone())
                }
                _ => Err(moved_on()),
            },
            |_, _| {},
        )
        .await;
    let spec = match started {
        Ok(spec) => spec,
        Err(Error::JobStatus(_)) => return,
        Err(e) => {
            tracing::error!(job = %job.id, error = %e, "cannot record a job's status; it is prepared after a restart");
            return;
        }
    };
    let read = match &spec.manifest_generator {
        Some(g) => {
            let max = inner.config.max_generated_tasks;
            crate::generate::generate(&inner.objects, &job.id, &spec.role_arn, g, inner.clock.now_ms(), max).await
        }
        None => read_manifest(&inner, &spec).await.map(|rows| (rows, None)),
    };
    let (rows, generated) = match read {
        Ok(x) => x,
        Err(f) => {
            let now = inner.clock.now_ms();
            let failed = inner
                .commit(
                    &job,
                    |d| {
                        if d.status != JobStatus::Preparing {
                            return Err(moved_on());
                        }
                        d.status = JobStatus::Failed;
                        d.terminated_ms = Some(now);
                        d.failure_reasons.push(f.clone());
                        Ok(())
                    },
                    |_, _| {},
                )
                .await;
            if let Err(e) = failed
                && !matches!(e, Error::JobStatus(_))
            {
                tracing::error!(job = %job.id, error = %e, "cannot record a job's failure");
            }
            return;
        }
    };
    if let Err(e) = write_tasks(&inner, &job, &rows).await {
        tracing::error!(job = %job.id, error = %e, "cannot record a job's tasks; it is prepared after a restart");
        return;
    }
    let now = inner.clock.now_ms();
    let total = rows.len() as u64;
    let mut run = (!rows.is_empty()).then(|| Run::new(spec.operation.clone(), &spec.role_arn, rows));
    let next = inner
        .commit(
            &job,
            |d| {
                if d.status != JobStatus::Preparing {
                    return Err(moved_on());
                }
                d.total_tasks = total;
                d.generated_manifest = generated.clone();
                if total == 0 {
                    d.status = JobStatus::Complete;
                    d.terminated_ms = Some(now);
                } else if spec.confirmation_required {
                    d.status = JobStatus::Suspended;
                    d.suspended_ms = Some(now);
                    d.suspended_cause = Some("The job requires confirmation before it runs.".into());
                } else {
                    d.status = JobStatus::Ready;
                }
                Ok(d.status)
            },
            |st, _| st.run = run.take(),
        )
        .await;
    match next {
        Ok(JobStatus::Ready) => {
            lock(&inner.runnable).push(job.clone());
            inner.wake.notify_one();
        }
        Ok(_) => {}
        Err(Error::JobStatus(_)) => cleanup(inner.clone(), job.id.clone()).await,
        Err(e) => {
            tracing::error!(job = %job.id, error = %e, "cannot record a job's status; it is prepared after a restart");
        }
    }
}

async fn read_manifest(inner: &Inner, spec: &JobSpec) -> std::result::Result<Vec<TaskRow>, JobFailure> {
    let m = &spec.manifest;
    let Some((bucket, key)) = object_of_arn(&m.object_arn) else {
        return Err(failure(
            "InvalidManifest",
            format!("The manifest ARN {} is not an S3 object ARN.", m.object_arn),
        ));
    };
    let limit = inner.config.max_manifest_bytes;
    let got = inner
        .retry_port(|| {
            inner
                .objects
                .get(&spec.role_arn, bucket, key, m.object_version_id.as_deref(), limit)
        })
        .await;
    let (body, etag) = match got {
        Ok(x) => x,
        Err(e) if e.http_status == 403 => {
            return Err(failure(
                &e.code,
                format!("Reading the manifest is forbidden: {}", e.code),
            ));
        }
        Err(e) => {
            return Err(failure(
                &e.code,
                format!("Reading the manifest failed: {}: {}", e.code, e.message),
            ));
        }
    };
    if body.len() as u64 > limit {
        return Err(failure(
            "ManifestTooLarge",
            format!("The manifest is larger than the limit of {limit} bytes."),
        ));
    }
    let want = m.etag.trim().trim_matches('"');
    let have = etag.trim().trim_matches('"');
    if !want.eq_ignore_ascii_case(have) {
        return Err(failure(
            "ManifestETagMismatch",
            format!(
                "Reading the manifest failed: the manifest's ETag {have} does not match the ETag {want} given in the job's manifest location."
            ),
        ));
    }
    let fields = match &m.fields {
        Some(f) => Some(manifest::check_fields(f).map_err(|e| failure("InvalidManifest", e))?),
        None => None,
    };
    manifest::parse(&body, fields.as_deref()).map_err(|e| failure(e.code, e.reason))
}

async fn write_tasks(inner: &Inner, job: &Job, rows: &[TaskRow]) -> Result<()> {
    let mut ops = Vec::new();
    for (n, chunk) in rows.chunks(TASK_CHUNK).enumerate() {
        let doc = TaskChunk {
            version: FORMAT_VERSION,
            first: (n * TASK_CHUNK) as u64,
            rows: chunk
                .iter()
                .map(|r| (r.bucket.to_string(), r.key.clone(), r.version.clone()))
                .collect(),
        };
        ops.push(MetaOp::Put {
            table: T_TASKS.into(),
            key: chunk_key(&job.id, n as u64),
            value: to_json(&doc)?,
        });
    }
    for group in ops.chunks(16) {
        let _epoch = inner.epoch.read().await;
        if job.removed.load(Ordering::SeqCst) || inner.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        inner.meta.write_grouped(group.to_vec()).await?;
    }
    Ok(())
}

/// Writes the report (if any task ran) and records the terminal status.
async fn finalize(inner: Arc<Inner>, job: Arc<Job>) {
    let (status, spec, tasks, ran) = {
        let st = job.state();
        let ran = st.run.as_ref().is_some_and(|r| r.succeeded + r.failed > 0);
        (
            st.doc.status,
            st.doc.request.clone(),
            st.run.as_ref().map(|r| r.tasks.clone()),
            ran,
        )
    };
    let mut target = match status {
        JobStatus::Cancelling => JobStatus::Cancelled,
        JobStatus::Failing => JobStatus::Failed,
        _ => JobStatus::Complete,
    };
    let mut report_failure = None;
    if ran
        && spec.report.enabled
        && let Some(tasks) = tasks
        && let Err(e) = write_report(&inner, &job, &spec, &tasks).await
    {
        if inner.closed.load(Ordering::SeqCst) || job.removed.load(Ordering::SeqCst) {
            return;
        }
        report_failure = Some(failure(
            &e.code,
            format!("Writing the completion report failed: {}: {}", e.code, e.message),
        ));
        target = JobStatus::Failed;
    }
    let now = inner.clock.now_ms();
    let (ok, bad) = job
        .state()
        .run
        .as_ref()
        .map(|r| (r.succeeded, r.failed))
        .unwrap_or_default();
    let done = inner
        .commit(
            &job,
            |d| {
                d.status = target;
                d.terminated_ms = Some(now);
                d.succeeded = ok;
                d.failed = bad;
                if let Some(since) = d.active_since_ms.take() {
                    d.active_elapsed_ms += (now - since).max(0);
                }
                if let Some(f) = &report_failure {
                    d.failure_reasons.push(f.clone());
                }
                Ok(())
            },
            |st, _| st.run = None,
        )
        .await;
    lock(&inner.runnable).retain(|j| !Arc::ptr_eq(j, &job));
    if let Err(e) = done {
        tracing::error!(job = %job.id, error = %e, "cannot record a job's terminal status; it finishes after a restart");
        return;
    }
    cleanup(inner, job.id.clone()).await;
}

async fn write_report(
    inner: &Inner,
    job: &Job,
    spec: &JobSpec,
    tasks: &[TaskRow],
) -> std::result::Result<(), PortError> {
    let bucket = spec
        .report
        .bucket
        .as_deref()
        .and_then(bucket_of_arn)
        .ok_or_else(|| PortError::new(400, "InvalidRequest", "the report bucket ARN is invalid"))?;
    let role = spec.role_arn.as_str();
    let failed_only = spec.report.report_scope.as_deref() == Some("FailedTasksOnly");
    let mut builder = report::Builder::new(
        &job.id,
        spec.report.prefix.as_deref(),
        inner.config.report_chunk_rows,
        failed_only,
    );
    let put = |key: String, body: Bytes, ct: &'static str| async move {
        inner
            .retry_port(|| inner.objects.put(role, bucket, &key, body.clone(), ct))
            .await
    };
    let prefix = format!("{}/", job.id);
    let end = format!("{}0", job.id);
    let mut start = prefix.clone();
    let mut first = true;
    loop {
        let page: Vec<(String, Vec<u8>)> = {
            let snap = inner
                .meta
                .snapshot()
                .map_err(|e| PortError::new(500, "InternalError", e.to_string()))?;
            let table = snap
                .table(T_OUTCOMES)
                .map_err(|e| PortError::new(500, "InternalError", e.to_string()))?;
            let lower = if first {
                Bound::Included(start.as_str())
            } else {
                Bound::Excluded(start.as_str())
            };
            let range = table
                .range(lower, Bound::Excluded(end.as_str()))
                .map_err(|e| PortError::new(500, "InternalError", e.to_string()))?;
            let mut page = Vec::new();
            for item in range.take(10_000) {
                page.push(item.map_err(|e| PortError::new(500, "InternalError", e.to_string()))?);
            }
            page
        };
        first = false;
        let Some((last, _)) = page.last() else {
            break;
        };
        start = last.clone();
        for (key, raw) in &page {
            let Ok(o) = serde_json::from_slice::<OutcomeDoc>(raw) else {
                continue;
            };
            let Some(row) = outcome_index(key)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| tasks.get(i))
            else {
                continue;
            };
            builder.push(&report::Row {
                bucket: &row.bucket,
                key: &row.key,
                version: row.version.as_deref(),
                ok: o.ok,
                http: o.http,
                code: &o.code,
                message: &o.msg,
            });
        }
        for f in builder.take() {
            put(f.key, f.body, "text/csv").await?;
        }
    }
    let manifest_key = builder.manifest_key();
    let (files, manifest) = builder.finish(bucket, inner.clock.now_ms());
    for f in files {
        put(f.key, f.body, "text/csv").await?;
    }
    put(manifest_key, manifest, "application/json").await
}

/// Deletes a finished job's tasks and outcomes (they are no longer needed: the counts are
/// in the job document and the report is written).
async fn cleanup(inner: Arc<Inner>, id: String) {
    for table in [T_TASKS, T_OUTCOMES] {
        let keys: Vec<String> = match inner.meta.scan_prefix(table, &format!("{id}/")) {
            Ok(entries) => entries.into_iter().map(|(k, _)| k).collect(),
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "cannot list a finished job's records");
                return;
            }
        };
        for chunk in keys.chunks(10_000) {
            let _epoch = inner.epoch.read().await;
            if inner.closed.load(Ordering::SeqCst) {
                return;
            }
            let ops = chunk
                .iter()
                .map(|k| MetaOp::Delete {
                    table: table.into(),
                    key: k.clone(),
                })
                .collect();
            if let Err(e) = inner.meta.write_grouped(ops).await {
                tracing::warn!(job = %id, error = %e, "cannot delete a finished job's records");
                return;
            }
        }
    }
}
