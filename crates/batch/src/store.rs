//! Durable documents of the batch engine (values in `MetaStore` tables).
//!
//! | table | key | value |
//! |---|---|---|
//! | `batch_jobs` | `<job id>` | [`JobDoc`] (JSON) |
//! | `batch_tasks` | `<job id>/<chunk:08>` | [`TaskChunk`] (JSON): the manifest rows `first..first+n` |
//! | `batch_outcomes` | `<job id>/<task index:010>` | [`OutcomeDoc`] (JSON): one finished task |
//!
//! Every value carries `version` (`v` in the small per-task records), the format version 1.
//! Job ids are UUIDs, so one key space serves every account; the document names its account
//! and region. Zero-padded indexes keep a job's chunks and outcomes in task order.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::model::{JobFailure, JobSpec, JobStatus, Tag};

pub(crate) const T_JOBS: &str = "batch_jobs";
pub(crate) const T_TASKS: &str = "batch_tasks";
pub(crate) const T_OUTCOMES: &str = "batch_outcomes";
pub(crate) const ALL_TABLES: [&str; 3] = [T_JOBS, T_TASKS, T_OUTCOMES];
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Manifest rows per `batch_tasks` value.
pub(crate) const TASK_CHUNK: usize = 10_000;

/// A job: its request, its mutable settings and where its lifecycle stands. Rewritten on
/// every status, priority or tag change (never per task).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JobDoc {
    pub version: u32,
    pub id: String,
    pub account: String,
    pub region: String,
    /// CreateJob's input as accepted (its `priority` and `tags` are the initial values).
    pub request: JobSpec,
    /// Hex MD5 of the request without its token (idempotency).
    pub fingerprint: String,
    pub priority: i32,
    pub tags: Vec<Tag>,
    pub status: JobStatus,
    pub status_update_reason: Option<String>,
    pub failure_reasons: Vec<JobFailure>,
    pub created_ms: i64,
    pub terminated_ms: Option<i64>,
    pub suspended_ms: Option<i64>,
    pub suspended_cause: Option<String>,
    /// Manifest rows (set with the transition out of Preparing).
    pub total_tasks: u64,
    /// Final counts (set with the terminal status; while running they come from
    /// `batch_outcomes`).
    pub succeeded: u64,
    pub failed: u64,
    /// Active time accumulated before `active_since_ms`.
    pub active_elapsed_ms: i64,
    /// When the job last became Active (`None` when not running).
    pub active_since_ms: Option<i64>,
    /// Where the generated manifest was written (jobs with a `ManifestGenerator` and
    /// `EnableManifestOutput`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_manifest: Option<crate::model::GeneratedManifest>,
}

/// One slice of the prepared manifest: `(bucket, key as in the manifest (URL-encoded),
/// version id)` for tasks `first..first + rows.len()`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TaskChunk {
    pub version: u32,
    pub first: u64,
    pub rows: Vec<(String, String, Option<String>)>,
}

/// One finished task (its final attempt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OutcomeDoc {
    /// Format version.
    pub v: u32,
    /// Succeeded (else failed).
    pub ok: bool,
    /// `HTTPStatusCode` of the report.
    pub http: u16,
    /// `ErrorCode` / result code of the report (empty for S3 successes).
    pub code: String,
    /// `ResultMessage` of the report.
    pub msg: String,
}

pub(crate) fn chunk_key(job: &str, chunk: u64) -> String {
    format!("{job}/{chunk:08}")
}

pub(crate) fn outcome_key(job: &str, index: u64) -> String {
    format!("{job}/{index:010}")
}

/// The task index of an outcome key.
pub(crate) fn outcome_index(key: &str) -> Option<u64> {
    key.rsplit_once('/').and_then(|(_, i)| i.parse().ok())
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(v).map_err(|e| Error::Internal(format!("encode: {e}")))
}

pub(crate) fn from_json<T: for<'de> Deserialize<'de>>(what: &str, b: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(b).map_err(|e| Error::Internal(format!("stored {what} is unreadable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_in_task_order() {
        assert!(outcome_key("j", 9) < outcome_key("j", 10));
        assert!(chunk_key("j", 9) < chunk_key("j", 10));
        assert_eq!(outcome_index(&outcome_key("j", 42)), Some(42));
    }
}
