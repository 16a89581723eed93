//! The asynchronous-invoke queue (InvocationType `Event`, S3 notifications, on-failure
//! destinations).
//!
//! # On-disk format and recovery rule
//!
//! Each queued invocation is one JSON document ([`AsyncEvent`]) in the `lambda_async` table
//! under its sequence number (20 digits). Enqueueing commits the document (together with
//! any extra operations of the caller, such as the S3 dispatcher's watermark) in one
//! fsynced transaction before the caller is answered. A finished invocation (success, or
//! failure handed to its destination or the dead-letter log) is deleted; a failed attempt
//! rewrites the document with its attempt count and next due time. At open every stored
//! document is due again at its recorded time, so a crash repeats at most the attempts that
//! were running (Lambda's own at-least-once delivery) and loses none.
//!
//! # Retry policy
//!
//! A function error is retried `MaximumRetryAttempts` times (default 2) after the delays of
//! [`crate::Config::async_retry_delays_ms`]; throttles and service errors are retried with
//! exponential backoff (1 s doubling to 5 min) until the event is older than
//! `MaximumEventAgeInSeconds` (default 6 h). Then the record goes to the on-failure
//! destination (a function) or, without one, to `<root>/dead-letter/<function>.jsonl`.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kd_storage::{MetaOp, MetaStore};
use serde::{Deserialize, Serialize};

use crate::engine::{Functions, Resolved, T_STATE};
use crate::error::{Error, Result};

pub(crate) const T_ASYNC: &str = "lambda_async";

/// One queued asynchronous invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AsyncEvent {
    /// Format version.
    pub version: u32,
    /// Queue sequence number.
    pub seq: u64,
    /// The ARN invoked (qualified if the caller qualified it).
    pub function_arn: String,
    /// The request id the function sees on every attempt.
    pub request_id: String,
    /// The event (JSON text).
    pub payload: String,
    /// Attempts that ran the function.
    pub attempts: u32,
    /// Throttled or failed-to-start attempts.
    pub throttles: u32,
    /// Enqueue time, ms since the epoch.
    pub enqueued_ms: i64,
    /// Next attempt time, ms since the epoch.
    pub due_ms: i64,
}

fn key(seq: u64) -> String {
    format!("{seq:020}")
}

/// In-memory index of the queue: (due, seq) of every stored event.
#[derive(Debug)]
pub(crate) struct QueueState {
    inner: Mutex<Inner>,
    notify: tokio::sync::Notify,
    stopped: AtomicBool,
    /// Attempt tasks alive (decremented after each has dropped its engine handle).
    inflight: Arc<std::sync::atomic::AtomicUsize>,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Inner {
    next_seq: u64,
    due: BTreeSet<(i64, u64)>,
    running: BTreeSet<u64>,
}

impl QueueState {
    pub(crate) fn load(meta: &MetaStore) -> Result<QueueState> {
        let mut due = BTreeSet::new();
        let mut next_seq = 1;
        for (k, v) in meta.scan_prefix(T_ASYNC, "")? {
            let ev: AsyncEvent = serde_json::from_slice(&v)
                .map_err(|e| Error::Service(format!("queued invocation {k} is unreadable: {e}")))?;
            next_seq = next_seq.max(ev.seq + 1);
            due.insert((ev.due_ms, ev.seq));
        }
        Ok(QueueState {
            inner: Mutex::new(Inner {
                next_seq,
                due,
                running: BTreeSet::new(),
            }),
            notify: tokio::sync::Notify::new(),
            stopped: AtomicBool::new(false),
            inflight: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            worker: Mutex::new(None),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn clear(&self) {
        self.lock().due.clear();
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// Stops the worker and waits (up to `limit`) for it and every running attempt to end
    /// and release the engine.
    pub(crate) async fn wait_stopped(&self, limit: Duration) {
        self.stop();
        let deadline = tokio::time::Instant::now() + limit;
        let worker = self
            .worker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(w) = worker {
            let _ = tokio::time::timeout_at(deadline, w).await;
        }
        while self.inflight.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Queued (not yet finished) invocations.
    pub(crate) fn len(&self) -> usize {
        let g = self.lock();
        g.due.len() + g.running.len()
    }
}

/// Starts the queue worker.
pub(crate) fn start(f: &Arc<Functions>) {
    let weak = Arc::downgrade(f);
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no tokio runtime: the asynchronous invoke queue is not running");
        return;
    };
    let handle = rt.spawn(async move {
        let permits = Arc::new(tokio::sync::Semaphore::new(
            weak.upgrade().map_or(1, |f| f.config.async_concurrency.max(1)),
        ));
        loop {
            let Some(f) = weak.upgrade() else { return };
            if f.queue.stopped.load(Ordering::SeqCst) {
                return;
            }
            let now = f.now_ms();
            let mut wait = Duration::from_secs(1);
            loop {
                let next = f.queue.lock().due.first().copied();
                let Some((due, seq)) = next else { break };
                if due > now {
                    // Poll at least every 100 ms so a test clock's jumps are seen.
                    wait = Duration::from_millis(u64::try_from(due - now).unwrap_or(0).min(100));
                    break;
                }
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    wait = Duration::from_millis(5);
                    break;
                };
                {
                    let mut g = f.queue.lock();
                    g.due.remove(&(due, seq));
                    g.running.insert(seq);
                }
                let f2 = f.clone();
                let inflight = f.queue.inflight.clone();
                inflight.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Err(e) = f2.attempt(seq).await {
                        tracing::warn!(seq, error = %e, "asynchronous invocation bookkeeping failed; retrying");
                        let mut g = f2.queue.lock();
                        g.due.insert((f2.now_ms() + 1000, seq));
                    }
                    f2.queue.lock().running.remove(&seq);
                    f2.queue.notify.notify_one();
                    drop(permit);
                    drop(f2);
                    inflight.fetch_sub(1, Ordering::SeqCst);
                });
            }
            let queue = f.clone();
            drop(f);
            tokio::select! {
                () = queue.queue.notify.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    });
    *f.queue.worker.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(handle);
}

impl Functions {
    /// Queues an asynchronous invocation of `invoked_arn`, committing `extra` in the same
    /// transaction.
    pub async fn enqueue(
        &self,
        invoked_arn: &str,
        request_id: &str,
        payload: Bytes,
        extra: Vec<MetaOp>,
    ) -> Result<u64> {
        let seqs = self
            .enqueue_many(vec![(invoked_arn.to_owned(), request_id.to_owned(), payload)], extra)
            .await?;
        Ok(seqs.first().copied().unwrap_or_default())
    }

    /// Queues several invocations (and `extra`) in one transaction.
    pub async fn enqueue_many(&self, items: Vec<(String, String, Bytes)>, extra: Vec<MetaOp>) -> Result<Vec<u64>> {
        let now = self.now_ms();
        let mut ops = extra;
        let mut entries = Vec::new();
        {
            let mut g = self.queue.lock();
            for (arn, request_id, payload) in items {
                let seq = g.next_seq;
                g.next_seq += 1;
                let ev = AsyncEvent {
                    version: crate::model::FORMAT_VERSION,
                    seq,
                    function_arn: arn,
                    request_id,
                    payload: String::from_utf8_lossy(&payload).into_owned(),
                    attempts: 0,
                    throttles: 0,
                    enqueued_ms: now,
                    due_ms: now,
                };
                ops.push(MetaOp::Put {
                    table: T_ASYNC.into(),
                    key: key(seq),
                    value: serde_json::to_vec(&ev).map_err(|e| Error::Service(e.to_string()))?,
                });
                entries.push((now, seq));
            }
        }
        self.meta.write_grouped(ops).await?;
        let seqs = entries.iter().map(|(_, s)| *s).collect();
        {
            let mut g = self.queue.lock();
            g.due.extend(entries);
        }
        self.queue.notify.notify_one();
        Ok(seqs)
    }

    /// A counter of the engine's state table (the S3 dispatcher's watermark).
    pub fn mark(&self, name: &str) -> Result<u64> {
        Ok(self
            .meta
            .get(T_STATE, name)?
            .and_then(|v| String::from_utf8_lossy(&v).parse().ok())
            .unwrap_or(0))
    }

    /// The operation that sets a counter of the engine's state table.
    pub fn mark_op(name: &str, value: u64) -> MetaOp {
        MetaOp::Put {
            table: T_STATE.into(),
            key: name.to_owned(),
            value: value.to_string().into_bytes(),
        }
    }

    /// Queued or running asynchronous invocations.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    async fn attempt(&self, seq: u64) -> Result<()> {
        let Some(raw) = self.meta.get(T_ASYNC, &key(seq))? else {
            return Ok(());
        };
        let mut ev: AsyncEvent =
            serde_json::from_slice(&raw).map_err(|e| Error::Service(format!("queued invocation {seq}: {e}")))?;
        let Some((_, doc, q)) = self.lookup_arn(&ev.function_arn) else {
            return self
                .finish(&ev, "FunctionNotFound", None, Some("the function no longer exists"))
                .await;
        };
        let settings = doc.event_invoke.clone();
        let max_age_ms = i64::from(
            settings
                .as_ref()
                .and_then(|s| s.maximum_event_age_seconds)
                .unwrap_or(21_600),
        ) * 1000;
        let max_retries = settings.as_ref().and_then(|s| s.maximum_retry_attempts).unwrap_or(2);
        let now = self.now_ms();
        if now - ev.enqueued_ms > max_age_ms {
            return self.finish(&ev, "EventAgeExceeded", None, None).await;
        }
        let (config, invoked_arn) = match Functions::resolve(&doc, q.as_deref()) {
            Ok(x) => x,
            Err(e) => return self.finish(&ev, "FunctionNotFound", None, Some(&e.to_string())).await,
        };
        let r = Resolved {
            doc,
            config,
            invoked_arn,
        };
        let payload = Bytes::from(ev.payload.clone());
        match self
            .run(&r, &ev.request_id, payload, None, false, Some(Duration::ZERO))
            .await
        {
            Ok(out) if out.function_error.is_none() => {
                ev.attempts += 1;
                self.finish(&ev, "Success", Some(&out), None).await
            }
            Ok(out) => {
                ev.attempts += 1;
                if ev.attempts > max_retries {
                    return self.finish(&ev, "RetriesExhausted", Some(&out), None).await;
                }
                let delays = &self.config.async_retry_delays_ms;
                let delay = delays
                    .get(ev.attempts as usize - 1)
                    .or(delays.last())
                    .copied()
                    .unwrap_or(1000);
                ev.due_ms = self.now_ms() + i64::try_from(delay).unwrap_or(i64::MAX / 2);
                self.reschedule(&ev).await
            }
            Err(e) => {
                if let Error::ResourceNotFound(m) = &e {
                    return self.finish(&ev, "FunctionNotFound", None, Some(m)).await;
                }
                ev.throttles += 1;
                let backoff = 1000i64.saturating_mul(1 << ev.throttles.min(9)).min(300_000);
                ev.due_ms = self.now_ms() + backoff;
                tracing::debug!(seq, error = %e, "asynchronous invocation throttled; backing off");
                self.reschedule(&ev).await
            }
        }
    }

    async fn reschedule(&self, ev: &AsyncEvent) -> Result<()> {
        self.meta
            .write_grouped(vec![MetaOp::Put {
                table: T_ASYNC.into(),
                key: key(ev.seq),
                value: serde_json::to_vec(ev).map_err(|e| Error::Service(e.to_string()))?,
            }])
            .await?;
        self.queue.lock().due.insert((ev.due_ms, ev.seq));
        Ok(())
    }

    /// Ends an event: on-success/on-failure destination or dead-letter log, then delete.
    async fn finish(
        &self,
        ev: &AsyncEvent,
        condition: &str,
        out: Option<&crate::host::InvokeOutcome>,
        reason: Option<&str>,
    ) -> Result<()> {
        let success = condition == "Success";
        let destination = self.lookup_arn(&ev.function_arn).and_then(|(_, d, _)| {
            d.event_invoke
                .and_then(|s| if success { s.on_success } else { s.on_failure })
        });
        let mut ops = vec![MetaOp::Delete {
            table: T_ASYNC.into(),
            key: key(ev.seq),
        }];
        if success && destination.is_none() {
            self.meta.write_grouped(ops).await?;
            return Ok(());
        }
        let response: serde_json::Value = out
            .and_then(|o| serde_json::from_slice(&o.payload).ok())
            .unwrap_or(serde_json::Value::Null);
        let record = serde_json::json!({
            "version": "1.0",
            "timestamp": crate::model::last_modified(self.now_ms()).replace("+0000", "Z"),
            "requestContext": {
                "requestId": ev.request_id,
                "functionArn": ev.function_arn,
                "condition": condition,
                "approximateInvokeCount": ev.attempts,
            },
            "requestPayload": serde_json::from_str::<serde_json::Value>(&ev.payload).unwrap_or(serde_json::Value::Null),
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": out.and_then(|o| o.function_error.clone()),
            },
            "responsePayload": response,
            "kinesisDataReason": reason,
        });
        match destination {
            Some(dest) if self.lookup_arn(&dest).is_some() => {
                // The destination's invocation is queued in the same transaction that ends
                // this event: handed over exactly once.
                let seqs = {
                    let mut g = self.queue.lock();
                    let seq = g.next_seq;
                    g.next_seq += 1;
                    seq
                };
                let now = self.now_ms();
                let next = AsyncEvent {
                    version: crate::model::FORMAT_VERSION,
                    seq: seqs,
                    function_arn: dest,
                    request_id: uuid::Uuid::new_v4().to_string(),
                    payload: record.to_string(),
                    attempts: 0,
                    throttles: 0,
                    enqueued_ms: now,
                    due_ms: now,
                };
                ops.push(MetaOp::Put {
                    table: T_ASYNC.into(),
                    key: key(seqs),
                    value: serde_json::to_vec(&next).map_err(|e| Error::Service(e.to_string()))?,
                });
                self.meta.write_grouped(ops).await?;
                self.queue.lock().due.insert((now, seqs));
                self.queue.notify.notify_one();
            }
            _ => {
                let name =
                    crate::model::FunctionRef::parse(&ev.function_arn).map_or_else(|| "unknown".to_owned(), |r| r.name);
                let dir = self.config.root.join("dead-letter");
                let line = format!("{record}\n");
                let path = dir.join(format!("{name}.jsonl"));
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    std::fs::create_dir_all(&dir)?;
                    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
                    f.write_all(line.as_bytes())?;
                    f.sync_data()
                })
                .await
                .map_err(|e| Error::Service(e.to_string()))?
                .map_err(|e| Error::Service(format!("dead-letter log: {e}")))?;
                tracing::warn!(function = %ev.function_arn, condition, "asynchronous invocation failed; recorded in the dead-letter log");
                self.meta.write_grouped(ops).await?;
            }
        }
        Ok(())
    }

    /// Records in the dead-letter log of `function_name` (newest last).
    pub fn dead_letters(&self, function_name: &str) -> Vec<serde_json::Value> {
        let path = self
            .config
            .root
            .join("dead-letter")
            .join(format!("{function_name}.jsonl"));
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}
