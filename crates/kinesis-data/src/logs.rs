//! The functions engine's `LogDestination` port over the CloudWatch Logs engine: the host's
//! batches of function output become one [`kd_logs::Logs::ingest`] call (one transaction),
//! which makes the log group and stream when missing, as Lambda does. The execution role's
//! `logs:*` permissions are not consulted (the Lambda service writes here, not the function).

use std::sync::Arc;

use kd_functions::host::{LogBatch, LogDestination};
use kd_logs::{IngestBatch, Logs, Scope};

/// Function output into CloudWatch Logs.
pub struct FunctionLogs {
    logs: Arc<Logs>,
}

impl FunctionLogs {
    /// A destination over `logs`.
    pub fn new(logs: Arc<Logs>) -> Self {
        Self { logs }
    }
}

#[async_trait::async_trait]
impl LogDestination for FunctionLogs {
    async fn put(&self, batches: Vec<LogBatch>) -> Result<(), String> {
        let batches = batches
            .into_iter()
            .map(|b| IngestBatch {
                scope: Scope {
                    account: b.account,
                    region: b.region,
                },
                group: b.group,
                stream: b.stream,
                events: b.events,
            })
            .collect();
        self.logs.ingest(batches).await.map_err(|e| e.to_string())
    }
}
