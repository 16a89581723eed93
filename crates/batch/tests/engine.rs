//! Engine tests with in-memory fake ports (no HTTP).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kd_batch::*;
use kd_storage::{ManualClock, MetaStore, SystemClock};
use serde_json::{Value, json};
use std::result::Result;
use tokio::sync::watch;

// ---------------------------------------------------------------- fakes

type FailRule = Box<dyn Fn(&str) -> Option<PortError> + Send + Sync>;
/// (bucket, key, version) → the tag set (`None`: deleted).
type TagStore = BTreeMap<(String, String, Option<String>), Option<Vec<(String, String)>>>;
/// (src bucket, src key, src version, dst bucket, dst key, options).
type CopyCall = (String, String, Option<String>, String, String, CopyOptions);
/// Which keys wait, and the gate they wait on.
type Gate = (Box<dyn Fn(&str) -> bool + Send + Sync>, watch::Receiver<bool>);

#[derive(Default)]
struct Objects {
    store: Mutex<BTreeMap<(String, String), (Bytes, String)>>,
    tags: Mutex<TagStore>,
    copies: Mutex<Vec<CopyCall>>,
    /// Task keys in the order they started.
    order: Mutex<Vec<String>>,
    started: Mutex<HashMap<String, usize>>,
    completed: Mutex<HashMap<String, usize>>,
    fail: Mutex<Option<FailRule>>,
    /// Keys for which tasks wait until the gate opens.
    gate: Mutex<Option<Gate>>,
    /// Report writes fail with this.
    put_error: Mutex<Option<PortError>>,
}

fn md5_hex(b: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

impl Objects {
    fn put_object(&self, bucket: &str, key: &str, body: &str) -> String {
        let etag = md5_hex(body.as_bytes());
        self.store.lock().expect("lock").insert(
            (bucket.into(), key.into()),
            (Bytes::from(body.to_owned()), etag.clone()),
        );
        etag
    }

    fn object(&self, bucket: &str, key: &str) -> Option<Bytes> {
        self.store
            .lock()
            .expect("lock")
            .get(&(bucket.to_owned(), key.to_owned()))
            .map(|(b, _)| b.clone())
    }

    fn keys_under(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.store
            .lock()
            .expect("lock")
            .keys()
            .filter(|(b, k)| b == bucket && k.starts_with(prefix))
            .map(|(_, k)| k.clone())
            .collect()
    }

    fn set_fail(&self, f: impl Fn(&str) -> Option<PortError> + Send + Sync + 'static) {
        *self.fail.lock().expect("lock") = Some(Box::new(f));
    }

    fn set_gate(&self, which: impl Fn(&str) -> bool + Send + Sync + 'static) -> watch::Sender<bool> {
        let (tx, rx) = watch::channel(false);
        *self.gate.lock().expect("lock") = Some((Box::new(which), rx));
        tx
    }

    async fn task(&self, key: &str) -> Result<(), PortError> {
        self.order.lock().expect("lock").push(key.to_owned());
        *self.started.lock().expect("lock").entry(key.to_owned()).or_default() += 1;
        let gate = {
            let g = self.gate.lock().expect("lock");
            g.as_ref().filter(|(which, _)| which(key)).map(|(_, rx)| rx.clone())
        };
        if let Some(mut rx) = gate {
            let _ = rx.wait_for(|open| *open).await;
        }
        if let Some(e) = self.fail.lock().expect("lock").as_ref().and_then(|f| f(key)) {
            return Err(e);
        }
        *self.completed.lock().expect("lock").entry(key.to_owned()).or_default() += 1;
        Ok(())
    }

    fn started(&self, key: &str) -> usize {
        self.started.lock().expect("lock").get(key).copied().unwrap_or(0)
    }

    fn completed(&self, key: &str) -> usize {
        self.completed.lock().expect("lock").get(key).copied().unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl BatchObjects for Objects {
    async fn get(
        &self,
        _role: &str,
        bucket: &str,
        key: &str,
        _version: Option<&str>,
        limit: u64,
    ) -> Result<(Bytes, String), PortError> {
        match self
            .store
            .lock()
            .expect("lock")
            .get(&(bucket.to_owned(), key.to_owned()))
        {
            None => Err(PortError::new(404, "NoSuchKey", "The specified key does not exist.")),
            Some((b, _)) if b.len() as u64 > limit => Err(PortError::new(400, "EntityTooLarge", "too large")),
            Some((b, e)) => Ok((b.clone(), e.clone())),
        }
    }

    async fn copy(
        &self,
        _role: &str,
        src_bucket: &str,
        src_key: &str,
        src_version: Option<&str>,
        dst_bucket: &str,
        dst_key: &str,
        opts: &CopyOptions,
    ) -> Result<(), PortError> {
        self.task(src_key).await?;
        self.copies.lock().expect("lock").push((
            src_bucket.into(),
            src_key.into(),
            src_version.map(str::to_owned),
            dst_bucket.into(),
            dst_key.into(),
            opts.clone(),
        ));
        Ok(())
    }

    async fn put_tagging(
        &self,
        _role: &str,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        tags: &[(String, String)],
    ) -> Result<(), PortError> {
        self.task(key).await?;
        self.tags.lock().expect("lock").insert(
            (bucket.into(), key.into(), version.map(str::to_owned)),
            Some(tags.to_vec()),
        );
        Ok(())
    }

    async fn delete_tagging(
        &self,
        _role: &str,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<(), PortError> {
        self.task(key).await?;
        self.tags
            .lock()
            .expect("lock")
            .insert((bucket.into(), key.into(), version.map(str::to_owned)), None);
        Ok(())
    }

    /// Every stored object is one version `v-<key>`; keys starting with `norule` are not
    /// eligible for replication and `done/…` keys are COMPLETED. Pages hold two versions.
    async fn list_versions(
        &self,
        _role: &str,
        bucket: &str,
        after: Option<(String, String)>,
        limit: usize,
        eligibility: bool,
    ) -> Result<VersionListing, PortError> {
        let keys: Vec<String> = self
            .keys_under(bucket, "")
            .into_iter()
            .filter(|k| after.as_ref().is_none_or(|(a, _)| k > a))
            .collect();
        let page = limit.min(2);
        let versions = keys
            .iter()
            .take(page)
            .map(|k| ListedVersion {
                key: k.clone(),
                version_id: Some(format!("v-{k}")),
                size: 1,
                last_modified_ms: 0,
                replication_status: k.starts_with("done/").then(|| "COMPLETED".to_owned()),
                eligible: eligibility && !k.starts_with("norule"),
            })
            .collect::<Vec<_>>();
        let next = (keys.len() > page).then(|| {
            let last = &versions[page - 1];
            (last.key.clone(), last.version_id.clone().unwrap_or_default())
        });
        Ok(VersionListing { versions, next })
    }

    async fn replicate(&self, _role: &str, _bucket: &str, key: &str, version: Option<&str>) -> Result<(), PortError> {
        assert_eq!(version, Some(format!("v-{key}").as_str()));
        self.task(key).await
    }

    async fn put(&self, _role: &str, bucket: &str, key: &str, body: Bytes, _ct: &str) -> Result<(), PortError> {
        if let Some(e) = self.put_error.lock().expect("lock").clone() {
            return Err(e);
        }
        let etag = md5_hex(&body);
        self.store
            .lock()
            .expect("lock")
            .insert((bucket.into(), key.into()), (body, etag));
        Ok(())
    }
}

type Handler = Box<dyn Fn(&Value, usize) -> Result<InvokeOutput, PortError> + Send + Sync>;

struct Functions {
    handler: Handler,
    events: Mutex<Vec<Value>>,
    calls: Mutex<HashMap<String, usize>>,
}

impl Functions {
    fn new(h: impl Fn(&Value, usize) -> Result<InvokeOutput, PortError> + Send + Sync + 'static) -> Arc<Functions> {
        Arc::new(Functions {
            handler: Box::new(h),
            events: Mutex::new(Vec::new()),
            calls: Mutex::new(HashMap::new()),
        })
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().expect("lock").clone()
    }
}

#[async_trait::async_trait]
impl BatchFunctions for Functions {
    async fn invoke(&self, _role: &str, _function_arn: &str, payload: Bytes) -> Result<InvokeOutput, PortError> {
        let event: Value = serde_json::from_slice(&payload).map_err(|e| PortError::new(400, "Bad", e.to_string()))?;
        let key = event["tasks"][0]["s3Key"].as_str().unwrap_or_default().to_owned();
        let n = {
            let mut calls = self.calls.lock().expect("lock");
            let c = calls.entry(key).or_default();
            *c += 1;
            *c
        };
        self.events.lock().expect("lock").push(event.clone());
        (self.handler)(&event, n)
    }
}

fn answer(event: &Value, code: &str, result: &str) -> Result<InvokeOutput, PortError> {
    let body = json!({
        "invocationSchemaVersion": "1.0",
        "treatMissingKeysAs": "PermanentFailure",
        "invocationId": event["invocationId"],
        "results": [{"taskId": event["tasks"][0]["taskId"], "resultCode": code, "resultString": result}]
    });
    Ok(InvokeOutput {
        payload: Bytes::from(body.to_string()),
        function_error: None,
    })
}

// ---------------------------------------------------------------- harness

struct Env {
    _dir: tempfile::TempDir,
    meta: Arc<MetaStore>,
    objects: Arc<Objects>,
    functions: Arc<Functions>,
    batch: Arc<Batch>,
    config: Config,
}

fn scope() -> Scope {
    Scope {
        account: "123456789012".into(),
        region: "us-east-1".into(),
    }
}

fn test_config() -> Config {
    Config {
        parallelism: 8,
        retry_base_ms: 1,
        shutdown_grace_ms: 200,
        ..Config::default()
    }
}

fn env_with(config: Config, functions: Arc<Functions>) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = Arc::new(MetaStore::open(&dir.path().join("meta.redb")).expect("meta"));
    let objects = Arc::new(Objects::default());
    let batch = Batch::open(
        config.clone(),
        meta.clone(),
        Arc::new(SystemClock),
        objects.clone(),
        functions.clone(),
    )
    .expect("open");
    Env {
        _dir: dir,
        meta,
        objects,
        functions,
        batch,
        config,
    }
}

fn env() -> Env {
    env_with(test_config(), Functions::new(|e, _| answer(e, "Succeeded", "ok")))
}

impl Env {
    fn reopen(&mut self) {
        self.batch = Batch::open(
            self.config.clone(),
            self.meta.clone(),
            Arc::new(SystemClock),
            self.objects.clone(),
            self.functions.clone(),
        )
        .expect("reopen");
    }

    async fn wait(&self, id: &str, status: JobStatus) -> JobInfo {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info = self.batch.describe_job(&scope(), id).expect("describe");
            if info.status == status {
                return info;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} is {} (wanted {status}): {info:?}",
                info.status
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn wait_until(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stores a manifest at `mb/manifest-<n>.csv` and returns a spec for it.
    fn spec(&self, manifest: &str, operation: Operation) -> JobSpec {
        let key = format!("manifest-{}.csv", uuid());
        let etag = self.objects.put_object("mb", &key, manifest);
        JobSpec {
            client_request_token: uuid(),
            confirmation_required: false,
            operation,
            report: Report {
                enabled: true,
                bucket: Some("arn:aws:s3:::rep".into()),
                format: Some("Report_CSV_20180820".into()),
                prefix: Some("reports".into()),
                report_scope: Some("AllTasks".into()),
                expected_bucket_owner: None,
            },
            manifest: Manifest {
                format: "S3BatchOperations_CSV_20180820".into(),
                fields: None,
                object_arn: format!("arn:aws:s3:::mb/{key}"),
                object_version_id: None,
                etag: format!("\"{etag}\""),
            },
            manifest_generator: None,
            description: Some("test job".into()),
            priority: 10,
            role_arn: "arn:aws:iam::123456789012:role/batch".into(),
            tags: vec![],
        }
    }

    /// The report's manifest.json and every results CSV row (failed files after succeeded).
    fn report(&self, id: &str) -> (Value, Vec<String>) {
        let m = self
            .objects
            .object("rep", &format!("reports/job-{id}/manifest.json"))
            .expect("manifest.json written");
        let m: Value = serde_json::from_slice(&m).expect("json");
        let mut rows = Vec::new();
        for r in m["Results"].as_array().expect("results") {
            let key = r["Key"].as_str().expect("key");
            let body = self.objects.object("rep", key).expect("results file");
            assert_eq!(r["MD5Checksum"].as_str(), Some(md5_hex(&body).as_str()));
            assert_eq!(r["Bucket"], "rep");
            rows.extend(String::from_utf8_lossy(&body).lines().map(str::to_owned));
        }
        (m, rows)
    }
}

fn uuid() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}

fn copy_op(prefix: Option<&str>) -> Operation {
    Operation::S3PutObjectCopy(Box::new(CopyObject {
        target_resource: Some("arn:aws:s3:::dst".into()),
        target_key_prefix: prefix.map(str::to_owned),
        ..CopyObject::default()
    }))
}

fn lambda_op(schema: &str, args: Option<BTreeMap<String, String>>) -> Operation {
    Operation::LambdaInvoke(LambdaInvoke {
        function_arn: "arn:aws:lambda:us-east-1:123456789012:function:f".into(),
        invocation_schema_version: Some(schema.into()),
        user_arguments: args,
    })
}

fn manifest_of(n: usize) -> String {
    (0..n).map(|i| format!("src,k{i:05}\n")).collect()
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_job_runs_to_complete_with_prefix_decoded_keys_and_report() {
    let e = env();
    let mut spec = e.spec("src,a%20b\nsrc,c+d\nsrc,plain\n", copy_op(Some("pre")));
    if let Operation::S3PutObjectCopy(c) = &mut spec.operation {
        c.metadata_directive = Some("REPLACE".into());
        c.storage_class = Some("STANDARD_IA".into());
        c.new_object_metadata = Some(ObjectMetadata {
            content_type: Some("text/plain".into()),
            user_metadata: Some([("k".to_owned(), "v".to_owned())].into()),
            ..ObjectMetadata::default()
        });
        c.new_object_tagging = Some(vec![Tag {
            key: "t".into(),
            value: "1".into(),
        }]);
    }
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    let info = e.wait(&id, JobStatus::Complete).await;
    assert_eq!(
        info.progress,
        Progress {
            total: 3,
            succeeded: 3,
            failed: 0,
            elapsed_active_secs: info.progress.elapsed_active_secs
        }
    );
    assert!(info.termination_ms.is_some());
    assert_eq!(info.arn, format!("arn:aws:s3:us-east-1:123456789012:job/{id}"));
    let mut copies = e.objects.copies.lock().expect("lock").clone();
    copies.sort_by(|a, b| a.1.cmp(&b.1));
    let dst: Vec<(String, String, String)> = copies.iter().map(|c| (c.1.clone(), c.3.clone(), c.4.clone())).collect();
    assert_eq!(
        dst,
        vec![
            ("a b".into(), "dst".into(), "pre/a b".into()),
            ("c d".into(), "dst".into(), "pre/c d".into()),
            ("plain".into(), "dst".into(), "pre/plain".into())
        ]
    );
    let opts = &copies[0].5;
    assert_eq!(opts.metadata_directive.as_deref(), Some("REPLACE"));
    assert_eq!(opts.content_type.as_deref(), Some("text/plain"));
    assert_eq!(opts.storage_class.as_deref(), Some("STANDARD_IA"));
    assert_eq!(opts.new_metadata.get("k").map(String::as_str), Some("v"));
    assert_eq!(opts.tagging_directive.as_deref(), Some("REPLACE"));
    assert_eq!(opts.new_tags, vec![("t".to_owned(), "1".to_owned())]);
    let (m, rows) = e.report(&id);
    assert_eq!(m["Format"], "Report_CSV_20180820");
    assert_eq!(
        m["ReportSchema"],
        "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"
    );
    assert_eq!(m["Results"][0]["TaskExecutionStatus"], "succeeded");
    assert_eq!(
        rows,
        vec![
            "src,a%20b,,succeeded,200,,Successful",
            "src,c+d,,succeeded,200,,Successful",
            "src,plain,,succeeded,200,,Successful"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmation_required_waits_suspended_until_ready() {
    let e = env();
    let mut spec = e.spec("src,a\n", copy_op(None));
    spec.confirmation_required = true;
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    let info = e.wait(&id, JobStatus::Suspended).await;
    assert!(info.confirmation_required);
    assert!(info.suspended_ms.is_some());
    assert_eq!(info.progress.total, 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(e.objects.started("a"), 0, "a suspended job runs nothing");
    let up = e
        .batch
        .update_status(&scope(), &id, RequestedStatus::Ready, Some("go".into()))
        .await
        .expect("ready");
    assert_eq!(up.reason.as_deref(), Some("go"));
    assert!(matches!(
        up.status,
        JobStatus::Ready | JobStatus::Active | JobStatus::Complete
    ));
    let info = e.wait(&id, JobStatus::Complete).await;
    assert_eq!(info.status_update_reason.as_deref(), Some("go"));
    assert_eq!(e.objects.copies.lock().expect("lock")[0].4, "a");
    let err = e
        .batch
        .update_status(&scope(), &id, RequestedStatus::Ready, None)
        .await
        .expect_err("complete job");
    assert!(matches!(err, Error::JobStatus(_)), "{err:?}");
    let err = e
        .batch
        .update_status(&scope(), &id, RequestedStatus::Cancelled, None)
        .await
        .expect_err("complete job");
    assert!(matches!(err, Error::JobStatus(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_suspended_and_running_jobs() {
    let e = env();
    let mut spec = e.spec("src,a\n", copy_op(None));
    spec.confirmation_required = true;
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    e.wait(&id, JobStatus::Suspended).await;
    let up = e
        .batch
        .update_status(&scope(), &id, RequestedStatus::Cancelled, None)
        .await
        .expect("cancel");
    assert_eq!(up.status, JobStatus::Cancelled);
    assert!(e.objects.keys_under("rep", "").is_empty(), "no task ran: no report");

    // A running job: every task blocks; cancel while 8 run; they finish; the rest never run.
    let gate = e.objects.set_gate(|_| true);
    let spec = e.spec(&manifest_of(200), copy_op(None));
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    e.wait_until("8 tasks running", || e.objects.order.lock().expect("lock").len() == 8)
        .await;
    let up = e
        .batch
        .update_status(&scope(), &id, RequestedStatus::Cancelled, Some("stop".into()))
        .await
        .expect("cancel");
    assert_eq!(up.status, JobStatus::Cancelling);
    assert_eq!(
        e.batch.describe_job(&scope(), &id).expect("describe").status,
        JobStatus::Cancelling
    );
    gate.send_replace(true);
    let info = e.wait(&id, JobStatus::Cancelled).await;
    assert_eq!((info.progress.succeeded, info.progress.failed), (8, 0), "{info:?}");
    assert_eq!(
        e.objects.order.lock().expect("lock").len(),
        8,
        "nothing started after the cancel"
    );
    let (_, rows) = e.report(&id);
    assert_eq!(rows.len() as u64, info.progress.succeeded);
    assert!(rows.iter().any(|r| r.starts_with("src,k00000,")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_errors_fail_the_job() {
    let e = env();
    // Missing manifest.
    let mut spec = e.spec("src,a\n", copy_op(None));
    spec.manifest.object_arn = "arn:aws:s3:::mb/nope.csv".into();
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    let info = e.wait(&id, JobStatus::Failed).await;
    assert_eq!(info.failure_reasons[0].code, "NoSuchKey");
    assert!(
        info.failure_reasons[0].reason.contains("Reading the manifest failed"),
        "{info:?}"
    );
    // ETag mismatch.
    let mut spec = e.spec("src,a\n", copy_op(None));
    spec.manifest.etag = "\"0123\"".into();
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    let info = e.wait(&id, JobStatus::Failed).await;
    assert!(info.failure_reasons[0].reason.contains("ETag"), "{info:?}");
    // Malformed line.
    let spec = e.spec("src,a\nsrc\n", copy_op(None));
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    let info = e.wait(&id, JobStatus::Failed).await;
    assert!(info.failure_reasons[0].reason.contains("line 2"), "{info:?}");
    assert!(info.failure_reasons[0].reason.len() <= 256);
    // Mixed version columns.
    let spec = e.spec("src,a,v1\nsrc,b\n", copy_op(None));
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    let info = e.wait(&id, JobStatus::Failed).await;
    assert!(info.failure_reasons[0].reason.contains("version ID"), "{info:?}");
    assert_eq!(info.progress.total, 0);
    assert!(e.objects.started("a") == 0, "no task ran");
    assert!(e.objects.keys_under("rep", "").is_empty(), "no report without tasks");
    // Fields naming the columns.
    let mut spec = e.spec("x,k1,src\n", copy_op(None));
    spec.manifest.fields = Some(vec!["Ignore".into(), "Key".into(), "Bucket".into()]);
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    e.wait(&id, JobStatus::Complete).await;
    assert_eq!(e.objects.completed("k1"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_schema_1_event() {
    let e = env_with(
        test_config(),
        Functions::new(|ev, _| answer(ev, "Succeeded", "result, with \"quotes\"")),
    );
    let spec = e.spec("src,my%20key,ver1\n", lambda_op("1.0", None));
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    e.wait(&id, JobStatus::Complete).await;
    let ev = &e.functions.events()[0];
    assert_eq!(ev["invocationSchemaVersion"], "1.0");
    assert_eq!(ev["job"], json!({"id": id}));
    assert!(ev["invocationId"].as_str().is_some_and(|s| !s.is_empty()));
    let t = &ev["tasks"][0];
    assert_eq!(t["s3BucketArn"], "arn:aws:s3:::src");
    assert_eq!(t["s3Key"], "my%20key");
    assert_eq!(t["s3VersionId"], "ver1");
    assert!(t.get("s3Bucket").is_none());
    assert!(t["taskId"].as_str().is_some_and(|s| !s.is_empty()));
    let (_, rows) = e.report(&id);
    assert_eq!(
        rows,
        vec!["src,my%20key,ver1,succeeded,200,,\"result, with \"\"quotes\"\"\""]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_schema_2_event_has_bucket_name_and_user_arguments() {
    let e = env();
    let args: BTreeMap<String, String> = [("mode".to_owned(), "fast".to_owned())].into();
    let spec = e.spec("src,k\n", lambda_op("2.0", Some(args)));
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    e.wait(&id, JobStatus::Complete).await;
    let ev = &e.functions.events()[0];
    assert_eq!(ev["invocationSchemaVersion"], "2.0");
    assert_eq!(ev["job"]["id"], id.as_str());
    assert_eq!(ev["job"]["userArguments"], json!({"mode": "fast"}));
    let t = &ev["tasks"][0];
    assert_eq!(t["s3Bucket"], "src");
    assert!(t.get("s3BucketArn").is_none());
    assert_eq!(t["s3VersionId"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_results_are_handled() {
    let functions = Functions::new(|ev, n| {
        let key = ev["tasks"][0]["s3Key"].as_str().unwrap_or_default();
        match key {
            "ok" => answer(ev, "Succeeded", "fine"),
            "temp" if n == 1 => answer(ev, "TemporaryFailure", "later"),
            "temp" => answer(ev, "Succeeded", "second time"),
            "alwaystemp" => answer(ev, "TemporaryFailure", format!("try {n}").as_str()),
            "perm" => answer(ev, "PermanentFailure", "nope"),
            "missing" => Ok(InvokeOutput {
                payload: Bytes::from_static(br#"{"invocationSchemaVersion":"1.0","results":[]}"#),
                function_error: None,
            }),
            "missingok" => Ok(InvokeOutput {
                payload: Bytes::from_static(br#"{"treatMissingKeysAs":"Succeeded","results":[]}"#),
                function_error: None,
            }),
            "err" => Ok(InvokeOutput {
                payload: Bytes::from_static(br#"{"errorMessage":"Task timed out after 3.00 seconds"}"#),
                function_error: Some("Unhandled".into()),
            }),
            "denied" => Err(PortError::new(403, "AccessDeniedException", "not allowed")),
            _ => Ok(InvokeOutput {
                payload: Bytes::from_static(b"not json"),
                function_error: None,
            }),
        }
    });
    let e = env_with(test_config(), functions);
    let keys = [
        "ok",
        "temp",
        "alwaystemp",
        "perm",
        "missing",
        "missingok",
        "err",
        "denied",
        "bad",
    ];
    let manifest: String = keys.iter().map(|k| format!("src,{k}\n")).collect();
    let spec = e.spec(&manifest, lambda_op("1.0", None));
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    let info = e.wait(&id, JobStatus::Complete).await;
    assert_eq!((info.progress.succeeded, info.progress.failed), (3, 6), "{info:?}");
    let calls = e.functions.calls.lock().expect("lock").clone();
    assert_eq!(calls.get("temp"), Some(&2));
    assert_eq!(calls.get("alwaystemp"), Some(&3), "max_attempts");
    let (m, rows) = e.report(&id);
    assert_eq!(m["Results"].as_array().map(Vec::len), Some(2));
    let row = |k: &str| {
        rows.iter()
            .find(|r| r.starts_with(&format!("src,{k},")))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(row("ok"), "src,ok,,succeeded,200,,fine");
    assert_eq!(row("temp"), "src,temp,,succeeded,200,,second time");
    assert_eq!(row("missingok"), "src,missingok,,succeeded,200,,");
    assert_eq!(row("alwaystemp"), "src,alwaystemp,,failed,200,TemporaryFailure,try 3");
    assert_eq!(row("perm"), "src,perm,,failed,200,PermanentFailure,nope");
    assert!(
        row("missing").starts_with("src,missing,,failed,200,PermanentFailure,"),
        "{rows:?}"
    );
    assert_eq!(
        row("err"),
        "src,err,,failed,200,PermanentFailure,\"Lambda returned function error: {\"\"errorMessage\"\":\"\"Task timed out after 3.00 seconds\"\"}\""
    );
    assert_eq!(
        row("denied"),
        "src,denied,,failed,403,AccessDeniedException,not allowed"
    );
    assert_eq!(
        row("bad"),
        "src,bad,,failed,200,PermanentFailure,Lambda returned function error: not json"
    );
    // Succeeded files come first in manifest.json.
    assert_eq!(m["Results"][0]["TaskExecutionStatus"], "succeeded");
    assert_eq!(m["Results"][1]["TaskExecutionStatus"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tagging_operations_and_failed_only_report() {
    let e = env();
    e.objects
        .set_fail(|k| (k == "gone").then(|| PortError::new(404, "NoSuchKey", "The specified key does not exist.")));
    let mut spec = e.spec(
        "src,a,v1\nsrc,gone,v2\n",
        Operation::S3PutObjectTagging(PutTagging {
            tag_set: Some(vec![Tag {
                key: "color".into(),
                value: "blue".into(),
            }]),
        }),
    );
    spec.report.report_scope = Some("FailedTasksOnly".into());
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    let info = e.wait(&id, JobStatus::Complete).await;
    assert_eq!((info.progress.succeeded, info.progress.failed), (1, 1));
    let tags = e.objects.tags.lock().expect("lock").clone();
    assert_eq!(
        tags.get(&("src".to_owned(), "a".to_owned(), Some("v1".to_owned()))),
        Some(&Some(vec![("color".to_owned(), "blue".to_owned())]))
    );
    let (m, rows) = e.report(&id);
    assert_eq!(m["Results"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        rows,
        vec!["src,gone,v2,failed,404,NoSuchKey,The specified key does not exist."]
    );

    let spec = e.spec("src,a,v1\n", Operation::S3DeleteObjectTagging);
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    e.wait(&id, JobStatus::Complete).await;
    let tags = e.objects.tags.lock().expect("lock").clone();
    assert_eq!(
        tags.get(&("src".to_owned(), "a".to_owned(), Some("v1".to_owned()))),
        Some(&None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_half_failed_after_1000_tasks_fails_the_job() {
    let e = env();
    e.objects.set_fail(|k| {
        let i: usize = k.trim_start_matches('k').parse().unwrap_or(0);
        (!i.is_multiple_of(5)).then(|| PortError::new(403, "AccessDenied", "Access Denied"))
    });
    let spec = e.spec(&manifest_of(3_000), copy_op(None));
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    let info = e.wait(&id, JobStatus::Failed).await;
    assert_eq!(info.failure_reasons.len(), 1, "{info:?}");
    assert_eq!(info.failure_reasons[0].code, "TaskFailureThresholdExceeded");
    assert!(info.failure_reasons[0].reason.contains("50%"));
    let done = info.progress.succeeded + info.progress.failed;
    assert!((1_000..3_000).contains(&done), "{info:?}");
    let (_, rows) = e.report(&id);
    assert_eq!(rows.len() as u64, done, "the report covers the tasks that ran");

    // 40% failing: the job completes.
    let e = env();
    e.objects.set_fail(|k| {
        let i: usize = k.trim_start_matches('k').parse().unwrap_or(0);
        (i % 5 < 2).then(|| PortError::new(403, "AccessDenied", "Access Denied"))
    });
    let spec = e.spec(&manifest_of(1_500), copy_op(None));
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    let info = e.wait(&id, JobStatus::Complete).await;
    assert_eq!((info.progress.succeeded, info.progress.failed), (900, 600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_tasks_run_first() {
    let config = Config {
        parallelism: 1,
        ..test_config()
    };
    let e = env_with(config, Functions::new(|ev, _| answer(ev, "Succeeded", "ok")));
    let gate = e.objects.set_gate(|k| k == "blocker");
    let spec = e.spec("src,blocker\n", copy_op(None));
    let blocker = e.batch.create_job(&scope(), spec).await.expect("create");
    e.wait_until("blocker running", || e.objects.started("blocker") == 1)
        .await;
    let mut low = e.spec("src,low1\nsrc,low2\nsrc,low3\n", copy_op(None));
    low.priority = 1;
    let low = e.batch.create_job(&scope(), low).await.expect("create");
    let mut high = e.spec("src,high1\nsrc,high2\nsrc,high3\n", copy_op(None));
    high.priority = 5;
    let high = e.batch.create_job(&scope(), high).await.expect("create");
    e.wait(&low, JobStatus::Ready).await;
    e.wait(&high, JobStatus::Ready).await;
    // Raising the low job above the high one reorders them.
    assert_eq!(
        e.batch.update_priority(&scope(), &low, 100).await.expect("priority"),
        100
    );
    gate.send_replace(true);
    e.wait(&blocker, JobStatus::Complete).await;
    e.wait(&high, JobStatus::Complete).await;
    e.wait(&low, JobStatus::Complete).await;
    let order = e.objects.order.lock().expect("lock").clone();
    assert_eq!(
        order,
        vec!["blocker", "low1", "low2", "low3", "high1", "high2", "high3"]
    );
    assert_eq!(e.batch.describe_job(&scope(), &low).expect("describe").priority, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_without_rerunning_completed_tasks() {
    let mut e = env();
    let n = 300;
    // Tasks from k00100 on block until the gate opens (it never does in the first run).
    let _gate = e.objects.set_gate(|k| k >= "k00100");
    let spec = e.spec(&manifest_of(n), copy_op(Some("out")));
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    e.wait_until("the first 100 tasks done and 8 blocked", || {
        let info = e.batch.describe_job(&scope(), &id).expect("describe");
        info.progress.succeeded == 100 && e.objects.order.lock().expect("lock").len() == 108
    })
    .await;
    e.batch.shutdown().await;
    *e.objects.gate.lock().expect("lock") = None;
    let before: Vec<String> = (0..n)
        .map(|i| format!("k{i:05}"))
        .filter(|k| e.objects.completed(k) == 1)
        .collect();
    assert_eq!(before.len(), 100);
    e.reopen();
    let info = e.wait(&id, JobStatus::Complete).await;
    assert_eq!((info.progress.total, info.progress.succeeded), (n as u64, n as u64));
    for i in 0..n {
        let k = format!("k{i:05}");
        assert_eq!(e.objects.completed(&k), 1, "{k} completed exactly once");
        // k00100..k00107 were running at shutdown: they ran again; nothing else did.
        let expected_starts = if (100..108).contains(&i) { 2 } else { 1 };
        assert_eq!(e.objects.started(&k), expected_starts, "{k}");
    }
    let (_, rows) = e.report(&id);
    assert_eq!(rows.len(), n);
    assert!(rows.iter().all(|r| r.ends_with(",succeeded,200,,Successful")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_job_resumes_without_rerunning_recorded_tasks() {
    let mut e = env();
    let n = 200;
    let gate = e.objects.set_gate(|k| k >= "k00050");
    let spec = e.spec(&manifest_of(n), copy_op(None));
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    e.wait_until("the first 50 tasks done and 8 blocked", || {
        let info = e.batch.describe_job(&scope(), &id).expect("describe");
        info.progress.succeeded == 50 && e.objects.order.lock().expect("lock").len() == 58
    })
    .await;
    // Let the outcome writer commit, then "crash": drop the engine without shutdown.
    tokio::time::sleep(Duration::from_millis(500)).await;
    e.reopen();
    // The old engine's blocked tasks are abandoned while the gate is still shut; then the
    // new engine's tasks may pass.
    tokio::time::sleep(Duration::from_millis(100)).await;
    gate.send_replace(true);
    // The reopened engine found the blocked tasks unfinished; nothing ran twice to completion.
    let info = e.wait(&id, JobStatus::Complete).await;
    assert_eq!(info.progress.succeeded, n as u64);
    for i in 0..n {
        let k = format!("k{i:05}");
        assert_eq!(e.objects.completed(&k), 1, "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_of_a_suspended_job_keeps_its_tasks() {
    let mut e = env();
    let mut spec = e.spec("src,a\nsrc,b\n", copy_op(None));
    spec.confirmation_required = true;
    let manifest_key = spec
        .manifest
        .object_arn
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    e.wait(&id, JobStatus::Suspended).await;
    e.batch.shutdown().await;
    // The manifest changes after preparing: the stored tasks are used, not the object.
    e.objects.put_object("mb", &manifest_key, "src,zzz\n");
    e.reopen();
    e.batch
        .update_status(&scope(), &id, RequestedStatus::Ready, None)
        .await
        .expect("ready");
    let info = e.wait(&id, JobStatus::Complete).await;
    assert_eq!(info.progress.succeeded, 2);
    assert_eq!(e.objects.completed("zzz"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_tags_list_and_scope() {
    let e = env();
    let mut spec = e.spec("src,a\n", copy_op(None));
    spec.confirmation_required = true;
    spec.client_request_token = "token-1".into();
    spec.tags = vec![Tag {
        key: "team".into(),
        value: "data".into(),
    }];
    let id = e.batch.create_job(&scope(), spec.clone()).await.expect("create");
    let again = e.batch.create_job(&scope(), spec.clone()).await.expect("same request");
    assert_eq!(id, again);
    let mut other = spec.clone();
    other.priority = 99;
    let err = e
        .batch
        .create_job(&scope(), other)
        .await
        .expect_err("different request");
    assert!(matches!(err, Error::Idempotency(_)), "{err:?}");
    // The token is per account.
    let elsewhere = Scope {
        account: "210987654321".into(),
        region: "us-east-1".into(),
    };
    let other_id = e
        .batch
        .create_job(&elsewhere, spec.clone())
        .await
        .expect("other account");
    assert_ne!(other_id, id);
    assert!(matches!(
        e.batch.describe_job(&elsewhere, &id).expect_err("not visible"),
        Error::NotFound(_)
    ));

    assert_eq!(e.batch.get_tagging(&scope(), &id).expect("tags"), spec.tags);
    let tags: Vec<Tag> = (0..51)
        .map(|i| Tag {
            key: format!("k{i}"),
            value: String::new(),
        })
        .collect();
    assert!(matches!(
        e.batch.put_tagging(&scope(), &id, tags).await.expect_err("51"),
        Error::TooManyTags(_)
    ));
    e.batch
        .put_tagging(
            &scope(),
            &id,
            vec![Tag {
                key: "x".into(),
                value: "y".into(),
            }],
        )
        .await
        .expect("put");
    assert_eq!(e.batch.get_tagging(&scope(), &id).expect("tags")[0].key, "x");
    e.batch.delete_tagging(&scope(), &id).await.expect("delete");
    assert!(e.batch.get_tagging(&scope(), &id).expect("tags").is_empty());

    for _ in 0..4 {
        let mut s = e.spec("src,b\n", copy_op(None));
        s.confirmation_required = true;
        e.batch.create_job(&scope(), s).await.expect("create");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    e.wait(&id, JobStatus::Suspended).await;
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = e.batch.list_jobs(&scope(), &[], token.as_deref(), 2).expect("list");
        assert!(page.jobs.len() <= 2);
        seen.extend(page.jobs.iter().map(|j| j.id.clone()));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.last(), Some(&id), "newest first");
    let page = e
        .batch
        .list_jobs(&scope(), &[JobStatus::Complete], None, 100)
        .expect("list");
    assert!(page.jobs.is_empty());
    assert!(matches!(
        e.batch.list_jobs(&scope(), &[], Some("!!"), 10).expect_err("token"),
        Error::InvalidNextToken(_)
    ));
    let summary = &e
        .batch
        .list_jobs(&scope(), &[JobStatus::Suspended], None, 100)
        .expect("list")
        .jobs[0];
    assert_eq!(summary.operation, "S3PutObjectCopy");

    e.batch.reset().await.expect("reset");
    assert!(matches!(
        e.batch.describe_job(&scope(), &id).expect_err("gone"),
        Error::NotFound(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_cannot_be_written_fails_the_job() {
    let e = env();
    *e.objects.put_error.lock().expect("lock") = Some(PortError::new(403, "AccessDenied", "Access Denied"));
    let spec = e.spec("src,a\n", copy_op(None));
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    let info = e.wait(&id, JobStatus::Failed).await;
    assert_eq!(info.progress.succeeded, 1);
    assert_eq!(info.failure_reasons[0].code, "AccessDenied");
    assert!(
        info.failure_reasons[0]
            .reason
            .starts_with("Writing the completion report failed"),
        "{info:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_jobs_expire_after_90_days() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = Arc::new(MetaStore::open(&dir.path().join("meta.redb")).expect("meta"));
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let objects = Arc::new(Objects::default());
    let functions = Functions::new(|ev, _| answer(ev, "Succeeded", "ok"));
    let open = || {
        Batch::open(
            test_config(),
            meta.clone(),
            clock.clone(),
            objects.clone(),
            functions.clone(),
        )
        .expect("open")
    };
    let batch = open();
    let etag = objects.put_object("mb", "m.csv", "src,a\n");
    let spec = JobSpec {
        client_request_token: "t".into(),
        confirmation_required: false,
        operation: Operation::S3DeleteObjectTagging,
        report: Report::default(),
        manifest: Manifest {
            format: "S3BatchOperations_CSV_20180820".into(),
            fields: None,
            object_arn: "arn:aws:s3:::mb/m.csv".into(),
            object_version_id: None,
            etag,
        },
        manifest_generator: None,
        description: None,
        priority: 0,
        role_arn: "arn:aws:iam::123456789012:role/batch".into(),
        tags: vec![],
    };
    let id = batch.create_job(&scope(), spec).await.expect("create");
    let deadline = Instant::now() + Duration::from_secs(20);
    while batch.describe_job(&scope(), &id).expect("describe").status != JobStatus::Complete {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    batch.shutdown().await;
    drop(batch);
    clock.advance(89 * 24 * 3600 * 1000);
    let batch = open();
    assert!(batch.describe_job(&scope(), &id).is_ok(), "kept for 90 days");
    batch.shutdown().await;
    drop(batch);
    clock.advance(2 * 24 * 3600 * 1000);
    let batch = open();
    assert!(matches!(
        batch.describe_job(&scope(), &id).expect_err("expired"),
        Error::NotFound(_)
    ));
}

/// Engine overhead with instant fake ports: a 10,000-task copy job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_of_a_10000_task_copy_job() {
    let e = env();
    let spec = e.spec(&manifest_of(10_000), copy_op(Some("out")));
    let started = Instant::now();
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    let info = e.wait(&id, JobStatus::Complete).await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(info.progress.succeeded, 10_000);
    let rate = 10_000.0 / secs;
    println!("10,000-task S3PutObjectCopy job with fake ports: {secs:.2} s, {rate:.0} tasks/s");
    assert!(rate > 1_000.0, "{rate:.0} tasks/s");

    let spec = e.spec(&manifest_of(10_000), lambda_op("1.0", None));
    let started = Instant::now();
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    let info = e.wait(&id, JobStatus::Complete).await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(info.progress.succeeded, 10_000);
    let rate = 10_000.0 / secs;
    println!("10,000-task LambdaInvoke job with fake ports: {secs:.2} s, {rate:.0} tasks/s");
    assert!(rate > 1_000.0, "{rate:.0} tasks/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_manifest_replicates_the_selected_versions_and_is_written_out() {
    let e = env();
    for k in ["a b", "done/x", "norule", "p/1", "p/2"] {
        e.objects.put_object("gen", k, "x");
    }
    let mut spec = e.spec("", Operation::S3ReplicateObject);
    spec.manifest = Manifest::default();
    spec.manifest_generator = Some(ManifestGenerator {
        source_bucket: "arn:aws:s3:::gen".into(),
        enable_manifest_output: true,
        output: Some(ManifestOutput {
            bucket: "arn:aws:s3:::rep".into(),
            prefix: Some("out/".into()),
            format: GENERATED_FORMAT.into(),
            ..ManifestOutput::default()
        }),
        filter: Some(GeneratorFilter {
            eligible_for_replication: Some(true),
            object_replication_statuses: Some(vec!["NONE".into(), "FAILED".into()]),
            ..GeneratorFilter::default()
        }),
        ..ManifestGenerator::default()
    });
    let id = e.batch.create_job(&scope(), spec).await.expect("create");
    let info = e.wait(&id, JobStatus::Complete).await;
    assert_eq!((info.progress.total, info.progress.succeeded), (3, 3));
    for k in ["a b", "p/1", "p/2"] {
        assert_eq!(e.objects.completed(k), 1, "{k}");
    }
    assert_eq!(e.objects.started("norule") + e.objects.started("done/x"), 0);
    let g = info.generated_manifest.expect("descriptor");
    assert_eq!(g.object_arn, format!("arn:aws:s3:::rep/out/job-{id}/manifest.json"));
    let m = e
        .objects
        .object("rep", &format!("out/job-{id}/manifest.json"))
        .expect("manifest.json");
    assert_eq!(g.etag, md5_hex(&m));
    let m: Value = serde_json::from_slice(&m).expect("json");
    let csv = e
        .objects
        .object("rep", m["files"][0]["key"].as_str().expect("data key"))
        .expect("data file");
    assert_eq!(
        String::from_utf8_lossy(&csv),
        "gen,a%20b,v-a b\ngen,p/1,v-p/1\ngen,p/2,v-p/2\n"
    );
    // The report names the decoded keys' versions.
    let (_, rows) = e.report(&id);
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.contains(",succeeded,200,")), "{rows:?}");
    // A job with neither a valid source nor output fails at creation.
    let mut bad = e.spec("", Operation::S3ReplicateObject);
    bad.manifest_generator = Some(ManifestGenerator {
        source_bucket: "not-an-arn".into(),
        ..ManifestGenerator::default()
    });
    assert!(matches!(
        e.batch.create_job(&scope(), bad).await,
        Err(Error::BadRequest(_))
    ));
}
