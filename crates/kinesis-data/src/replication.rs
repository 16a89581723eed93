//! The S3 replicator: live replication of new object versions by their bucket's replication
//! rules, acting as the configuration's role, plus the replication step S3 Batch
//! Replication's `S3ReplicateObject` tasks share with it.
//!
//! The objects engine queues a durable task in the transaction that writes a version a
//! rule matches (see `kd_objects::engine`, "Replication"). This loop takes queued tasks,
//! checks that the configuration's role may be assumed by `s3.amazonaws.com` and that its
//! policies allow `s3:GetObjectVersionForReplication` on the source and
//! `s3:ReplicateObject` (`s3:ReplicateDelete` for delete markers) on the destination, writes
//! the replica and records `COMPLETED` or `FAILED` on the source version. A task interrupted
//! by a crash is still queued and runs again on the next start (writing a replica is
//! idempotent). Failures are not retried: like S3, a `FAILED` version waits for S3 Batch
//! Replication.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use kd_iam::store::IamStore;
use kd_objects::{Objects, ReplicationTask};

use crate::ports::RoleActor;

/// The session replication acts as.
const SESSION: &str = "s3-replication";
/// The service principal that assumes the replication role.
const SERVICE_PRINCIPAL: &str = "s3.amazonaws.com";
/// Tasks taken per round.
const BATCH: usize = 256;

/// Why a replication failed: the status, code and message S3 would give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicateError {
    /// HTTP status.
    pub status: u16,
    /// S3 error code.
    pub code: String,
    /// Message.
    pub message: String,
}

impl ReplicateError {
    fn denied(message: impl Into<String>) -> Self {
        Self {
            status: 403,
            code: "AccessDenied".into(),
            message: message.into(),
        }
    }

    fn object(e: kd_objects::Error) -> Self {
        let s3 = kd_api_s3::ops::s3_err(e);
        Self {
            status: s3.status_code().map_or(500, |s| s.as_u16()),
            code: s3.code().as_str().to_owned(),
            message: s3.message().unwrap_or_default().to_owned(),
        }
    }
}

impl std::fmt::Display for ReplicateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

/// Replicates versions, checking the configuration's role.
#[derive(Clone)]
pub struct Replicator {
    objects: Arc<Objects>,
    iam: Arc<IamStore>,
    actor: RoleActor,
    enforce: bool,
}

impl Replicator {
    /// Over the objects engine; `enforce` is whether IAM is on.
    pub fn new(objects: Arc<Objects>, iam: Arc<IamStore>, actor: RoleActor, enforce: bool) -> Self {
        Self {
            objects,
            iam,
            actor: actor.with_session(SESSION),
            enforce,
        }
    }

    /// Whether `role_arn` may replicate `task`: the role exists, `s3.amazonaws.com` may
    /// assume it, it owns both buckets' account, and its policies allow the actions.
    fn authorise(&self, role_arn: &str, task: &ReplicationTask) -> Result<(), ReplicateError> {
        let account = kd_iam::store::parse_role_arn(role_arn)
            .map(|(a, _)| a)
            .ok_or_else(|| ReplicateError::denied(format!("{role_arn} is not a role ARN")))?;
        for bucket in [&task.bucket, &task.destination_bucket] {
            let info = self.objects.bucket(bucket).map_err(ReplicateError::object)?;
            if info.owner_account != account {
                return Err(ReplicateError::denied(format!(
                    "Access Denied: bucket {bucket} belongs to another account"
                )));
            }
        }
        if !self.enforce {
            return Ok(());
        }
        let ctx = kd_iam::policy::ConditionContext::new().source_account(&account);
        if !self.iam.service_may_assume(role_arn, SERVICE_PRINCIPAL, &ctx) {
            return Err(ReplicateError::denied(format!(
                "The role {role_arn} cannot be assumed by S3: its trust policy must allow {SERVICE_PRINCIPAL} to call sts:AssumeRole"
            )));
        }
        self.actor
            .allow(
                role_arn,
                &["s3:GetObjectVersionForReplication"],
                &format!("arn:aws:s3:::{}/{}", task.bucket, task.key),
            )
            .map_err(|e| ReplicateError::denied(e.to_string()))?;
        let write = if task.delete_marker {
            "s3:ReplicateDelete"
        } else {
            "s3:ReplicateObject"
        };
        self.actor
            .allow(
                role_arn,
                &[write],
                &format!("arn:aws:s3:::{}/{}", task.destination_bucket, task.key),
            )
            .map_err(|e| ReplicateError::denied(e.to_string()))?;
        Ok(())
    }

    /// Replicates one version to one destination as `role_arn` and records the outcome on
    /// the source version. `Err` carries the reason the replication failed (already
    /// recorded as `FAILED`).
    pub async fn replicate(&self, role_arn: &str, task: &ReplicationTask) -> Result<(), ReplicateError> {
        let outcome = match self.authorise(role_arn, task) {
            Ok(()) => self
                .objects
                .replicate(task)
                .await
                .map(|_| ())
                .map_err(ReplicateError::object),
            Err(e) => Err(e),
        };
        if let Err(e) = self.objects.finish_replication(task, outcome.is_ok()).await {
            return Err(ReplicateError::object(e));
        }
        outcome
    }

    /// One queued task: the role is the source bucket's current configuration's.
    async fn run_queued(&self, task: ReplicationTask) {
        let role = match self.objects.get_bucket_replication_config(&task.bucket) {
            Ok(Some(cfg)) => cfg.role,
            Ok(None) | Err(_) => String::new(),
        };
        let result = if role.is_empty() {
            let reason = "the source bucket no longer has a replication configuration".to_owned();
            match self.objects.finish_replication(&task, false).await {
                Ok(()) => Err(reason),
                Err(e) => Err(format!("cannot record the replication status: {e}")),
            }
        } else {
            self.replicate(&role, &task).await.map_err(|e| e.to_string())
        };
        if let Err(reason) = result {
            tracing::warn!(
                bucket = %task.bucket,
                key = %task.key,
                version = %task.version_id,
                destination = %task.destination_bucket,
                %reason,
                "replication failed"
            );
        }
    }

    /// Replicates every queued task once; returns how many were taken.
    pub async fn run_once(&self, parallelism: usize) -> anyhow::Result<usize> {
        let tasks = self.objects.pending_replications(BATCH)?;
        let n = tasks.len();
        futures_util::stream::iter(tasks)
            .map(|t| self.run_queued(t))
            .buffer_unordered(parallelism.max(1))
            .collect::<Vec<()>>()
            .await;
        Ok(n)
    }

    /// Runs the replicator until aborted: a round whenever versions are queued.
    pub fn spawn(self, parallelism: usize) -> tokio::task::JoinHandle<()> {
        let notify = self.objects.replication_notify();
        tokio::spawn(async move {
            loop {
                match self.run_once(parallelism).await {
                    Ok(0) => {
                        // The permit of a notification sent meanwhile is kept, so none is
                        // missed; the timeout is only a safety net.
                        let _ = tokio::time::timeout(Duration::from_secs(5), notify.notified()).await;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "replicator cannot read its queue");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        })
    }
}
