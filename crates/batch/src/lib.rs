//! S3 Batch Operations engine: jobs that run one operation (`LambdaInvoke`,
//! `S3PutObjectCopy`, `S3PutObjectTagging`, `S3DeleteObjectTagging`) on every object a CSV
//! manifest lists, with priorities, confirmation, cancellation, progress counters, the
//! failure-rate rule and a completion report. It sits below `api-s3control` (the restXml job
//! API) and above `storage`; it reaches objects and functions only through its ports
//! ([`BatchObjects`], [`BatchFunctions`]), which the composition root implements over the S3
//! and Lambda engines acting as the job's role.
//!
//! # Lifecycle
//!
//! `New` → `Preparing` (the manifest is read through [`BatchObjects::get`], its ETag checked
//! against `Manifest.Location.ETag`, parsed — see [`manifest`] — and stored) → `Suspended`
//! when `ConfirmationRequired` (UpdateJobStatus `Ready` moves it on) → `Ready` → `Active`
//! (when the scheduler gives it its first task) → `Completing` → `Complete`. A missing or
//! unreadable manifest, an ETag mismatch or a malformed line fails the job in `Preparing`
//! (`FailureReasons` name the cause or the line; no task runs). UpdateJobStatus `Cancelled`
//! ends a job that has not started at once (`Cancelled`); a running one goes `Cancelling`
//! while its running tasks finish. Once at least [`FAILURE_CHECK_MIN_TASKS`] tasks have
//! finished, a failure rate above 50% makes the job `Failing`. Running jobs end by writing
//! the report (when at least one task ran and the report is enabled — see [`report`]) and
//! recording the terminal status; if the report cannot be written the job is `Failed`.
//! `Paused`/`Pausing` are never used: a lower-priority job stays `Active` while
//! higher-priority jobs take the task slots.
//!
//! # Scheduling
//!
//! One scheduler task hands out [`Config::parallelism`] task slots across all jobs: each slot
//! goes to the job with the highest `Priority` (then the oldest) that has a task due. A task
//! that fails temporarily (`TemporaryFailure`, or a throttling / 5xx port error) is retried
//! after a backoff, up to [`Config::max_attempts`] attempts; its last answer is reported.
//!
//! # Durability (on-disk format: `store.rs`)
//!
//! * `batch_jobs/<id>`: the job document (request, status, priority, tags, failure reasons,
//!   timestamps, final counts), rewritten on every status / priority / tag change — never
//!   per task. CreateJob answers after it is committed; every other change is committed
//!   before DescribeJob can show it, except two that recovery re-derives: `Ready` → `Active`
//!   (a recovered `Ready` job is promoted again) and `Failing` (the failure-rate rule is
//!   checked again on the recovered counts).
//! * `batch_tasks/<id>/<chunk>`: the parsed manifest, 10,000 rows per value, written before
//!   the job leaves `Preparing`, so the manifest object is read once.
//! * `batch_outcomes/<id>/<task index>`: the final outcome of each finished task (status,
//!   HTTP status, result code, message). Outcomes are queued to one writer task that commits
//!   everything queued meanwhile in ONE grouped `MetaStore` transaction (at most
//!   [`Config::outcome_batch`]), so the fsync cost is shared by many tasks; a task's slot is
//!   free as soon as its outcome is queued. A job finishes only after all its outcomes are
//!   committed; its report is built from this table.
//! * When a job reaches a terminal status its tasks and outcomes are deleted (the counts are
//!   in the document, the report is written).
//!
//! **Recovery rule** ([`Batch::open`]): a job in `New`/`Preparing` is prepared again from the
//! manifest (its chunks are rewritten under the same keys). A prepared job reloads its tasks
//! and marks every task with a committed outcome done, with its counts: **a task whose
//! outcome was committed never runs again**; tasks that were running, waiting for a retry or
//! whose outcome was not yet committed run again (so a task may run more than once, never a
//! completed one). `Ready`/`Active` jobs continue; `Cancelling`/`Failing`/`Completing` ones
//! write their report (again, under the same keys) and finish. Active time counts from the
//! restart (the downtime is not counted). Terminal jobs older than [`JOB_RETENTION_MS`]
//! (90 days) are deleted when the engine opens.

mod engine;
mod error;
mod generate;
pub mod lambda;
pub mod manifest;
pub mod model;
pub mod ports;
pub mod report;
mod store;

pub use engine::*;
pub use error::{Error, Result};
pub use generate::GENERATED_FORMAT;
pub use model::*;
pub use ports::*;

/// Longest `ResultMessage` kept per task (bytes; longer messages are cut).
pub const MAX_RESULT_MESSAGE: usize = 16 * 1024;
