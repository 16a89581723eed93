//! Adapter tests: requests shaped as aws-sdk-s3control / boto3 send them, over the batch
//! engine with in-memory fake ports.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use kd_api_s3control::S3ControlApi;
use kd_api_s3control::xml::{self, Element};
use kd_batch::{Batch, BatchFunctions, BatchObjects, Config, CopyOptions, InvokeOutput, PortError};
use kd_iam::store::{IamStore, NewRole};
use kd_storage::{MetaStore, SystemClock};
use kd_wire::{AllowAll, Authorize, RequestContext};

const ACCOUNT: &str = "123456789012";

// ---------------------------------------------------------------- fakes

#[derive(Default)]
struct Objects {
    store: Mutex<BTreeMap<(String, String), Bytes>>,
}

#[async_trait::async_trait]
impl BatchObjects for Objects {
    async fn get(
        &self,
        _role: &str,
        bucket: &str,
        key: &str,
        _version: Option<&str>,
        _limit: u64,
    ) -> Result<(Bytes, String), PortError> {
        match self
            .store
            .lock()
            .expect("lock")
            .get(&(bucket.to_owned(), key.to_owned()))
        {
            Some(b) => Ok((b.clone(), "etag1".into())),
            None => Err(PortError::new(404, "NoSuchKey", "The specified key does not exist.")),
        }
    }
    async fn copy(
        &self,
        _role: &str,
        _src_bucket: &str,
        _src_key: &str,
        _src_version: Option<&str>,
        _dst_bucket: &str,
        _dst_key: &str,
        _opts: &CopyOptions,
    ) -> Result<(), PortError> {
        Ok(())
    }
    async fn put_tagging(
        &self,
        _role: &str,
        _bucket: &str,
        _key: &str,
        _version: Option<&str>,
        _tags: &[(String, String)],
    ) -> Result<(), PortError> {
        Ok(())
    }
    async fn delete_tagging(
        &self,
        _role: &str,
        _bucket: &str,
        _key: &str,
        _version: Option<&str>,
    ) -> Result<(), PortError> {
        Ok(())
    }
    async fn put(&self, _role: &str, bucket: &str, key: &str, body: Bytes, _ct: &str) -> Result<(), PortError> {
        self.store
            .lock()
            .expect("lock")
            .insert((bucket.into(), key.into()), body);
        Ok(())
    }
}

struct Functions;

#[async_trait::async_trait]
impl BatchFunctions for Functions {
    async fn invoke(&self, _role: &str, _function_arn: &str, payload: Bytes) -> Result<InvokeOutput, PortError> {
        let ev: serde_json::Value =
            serde_json::from_slice(&payload).map_err(|e| PortError::new(400, "x", e.to_string()))?;
        let body = serde_json::json!({"results": [{"taskId": ev["tasks"][0]["taskId"], "resultCode": "Succeeded", "resultString": "ok"}]});
        Ok(InvokeOutput {
            payload: Bytes::from(body.to_string()),
            function_error: None,
        })
    }
}

/// Denies the listed actions and records every question.
#[derive(Debug)]
struct Deny(Vec<&'static str>, Mutex<Vec<(String, String)>>);

impl Authorize for Deny {
    fn enforced(&self) -> bool {
        true
    }
    fn authorize(&self, action: &str, resource: &str) -> Result<(), String> {
        self.1
            .lock()
            .expect("lock")
            .push((action.to_owned(), resource.to_owned()));
        if self.0.contains(&action) {
            Err(format!(
                "User: arn:aws:iam::{ACCOUNT}:user/u is not authorized to perform: {action} on resource: {resource}"
            ))
        } else {
            Ok(())
        }
    }
}

struct Env {
    _dir: tempfile::TempDir,
    api: S3ControlApi,
    objects: Arc<Objects>,
    batch: Arc<Batch>,
}

fn env(enforce_trust: bool) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = Arc::new(MetaStore::open(&dir.path().join("meta.redb")).expect("meta"));
    let iam = Arc::new(IamStore::open(meta.clone(), Arc::new(SystemClock)).expect("iam"));
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"batchoperations.s3.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    iam.create_role(
        ACCOUNT,
        NewRole {
            name: "batch".into(),
            assume_role_policy_document: trust.into(),
            ..NewRole::default()
        },
    )
    .expect("role");
    let other = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    iam.create_role(
        ACCOUNT,
        NewRole {
            name: "lambda-only".into(),
            assume_role_policy_document: other.into(),
            ..NewRole::default()
        },
    )
    .expect("role");
    let objects = Arc::new(Objects::default());
    objects.store.lock().expect("lock").insert(
        ("mb".into(), "dir/manifest.csv".into()),
        Bytes::from_static(b"src,a%20b\nsrc,c\n"),
    );
    let batch = Batch::open(
        Config::default(),
        meta,
        Arc::new(SystemClock),
        objects.clone(),
        Arc::new(Functions),
    )
    .expect("batch");
    Env {
        _dir: dir,
        api: S3ControlApi::new(batch.clone(), iam, enforce_trust),
        objects,
        batch,
    }
}

fn ctx(authz: Arc<dyn Authorize>) -> RequestContext {
    RequestContext {
        request_id: "req-1".into(),
        account_id: ACCOUNT.into(),
        region: "us-east-1".into(),
        authz,
    }
}

fn headers(account: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(a) = account {
        h.insert("x-amz-account-id", HeaderValue::from_str(a).expect("header"));
    }
    h.insert("content-type", HeaderValue::from_static("application/xml"));
    h
}

struct Resp {
    status: StatusCode,
    doc: Option<Element>,
    raw: String,
}

impl Resp {
    fn code(&self) -> String {
        let doc = self.doc.as_ref().expect("error body");
        assert_eq!(doc.name, "ErrorResponse", "{}", self.raw);
        doc.child("Error")
            .and_then(|e| e.text_of("Code"))
            .unwrap_or_default()
            .to_owned()
    }
    fn message(&self) -> String {
        self.doc
            .as_ref()
            .and_then(|d| d.child("Error"))
            .and_then(|e| e.text_of("Message"))
            .unwrap_or_default()
            .to_owned()
    }
    fn at(&self, path: &[&str]) -> Option<String> {
        let mut el = self.doc.as_ref()?;
        for p in path {
            el = el.child(p)?;
        }
        Some(el.text.clone())
    }
}

async fn call_with(
    e: &Env,
    authz: Arc<dyn Authorize>,
    method: Method,
    path_and_query: &str,
    account: Option<&str>,
    body: &str,
) -> Resp {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let r = e
        .api
        .handle(
            &ctx(authz),
            &method,
            path,
            query,
            &headers(account),
            &Bytes::from(body.to_owned()),
        )
        .await;
    let raw = String::from_utf8_lossy(r.body()).into_owned();
    Resp {
        status: r.status(),
        doc: if raw.is_empty() {
            None
        } else {
            xml::parse(raw.as_bytes()).ok()
        },
        raw,
    }
}

async fn call(e: &Env, method: Method, path_and_query: &str, body: &str) -> Resp {
    call_with(e, Arc::new(AllowAll), method, path_and_query, Some(ACCOUNT), body).await
}

/// A CreateJob body as aws-sdk-s3control serialises it (member order of the SDK, lists as
/// `member`, maps as `entry`/`key`/`value`).
fn create_body(token: &str, priority: &str, operation: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><CreateJobRequest xmlns="http://awss3control.amazonaws.com/doc/2018-08-20/"><ClientRequestToken>{token}</ClientRequestToken><ConfirmationRequired>true</ConfirmationRequired><Description>Invoke &amp; report</Description><Manifest><Spec><Format>S3BatchOperations_CSV_20180820</Format><Fields><member>Bucket</member><member>Key</member></Fields></Spec><Location><ObjectArn>arn:aws:s3:::mb/dir/manifest.csv</ObjectArn><ETag>"etag1"</ETag></Location></Manifest><Operation>{operation}</Operation><Priority>{priority}</Priority><Report><Bucket>arn:aws:s3:::reports</Bucket><Format>Report_CSV_20180820</Format><Enabled>true</Enabled><Prefix>batch</Prefix><ReportScope>AllTasks</ReportScope></Report><RoleArn>arn:aws:iam::{ACCOUNT}:role/batch</RoleArn><Tags><member><Key>team</Key><Value>data</Value></member></Tags></CreateJobRequest>"#
    )
}

const LAMBDA_V2: &str = "<LambdaInvoke><FunctionArn>arn:aws:lambda:us-east-1:123456789012:function:f</FunctionArn><InvocationSchemaVersion>2.0</InvocationSchemaVersion><UserArguments><entry><key>mode</key><value>fast</value></entry></UserArguments></LambdaInvoke>";

async fn wait_status(e: &Env, id: &str, status: &str) -> Resp {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = call(e, Method::GET, &format!("/v20180820/jobs/{id}"), "").await;
        if r.at(&["Job", "Status"]).as_deref() == Some(status) {
            return r;
        }
        assert!(Instant::now() < deadline, "job not {status}: {}", r.raw);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_describe_confirm_and_complete_an_sdk_shaped_job() {
    let e = env(true);
    let r = call(
        &e,
        Method::POST,
        "/v20180820/jobs",
        &create_body("tok-1", "10", LAMBDA_V2),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(r.doc.as_ref().map(|d| d.name.as_str()), Some("CreateJobResult"));
    assert!(
        r.raw
            .contains("xmlns=\"http://awss3control.amazonaws.com/doc/2018-08-20/\"")
    );
    let id = r.at(&["JobId"]).expect("JobId");
    assert_eq!(id.len(), 36);

    let d = wait_status(&e, &id, "Suspended").await;
    assert_eq!(d.doc.as_ref().map(|d| d.name.as_str()), Some("DescribeJobResult"));
    assert_eq!(d.at(&["Job", "JobId"]), Some(id.clone()));
    assert_eq!(
        d.at(&["Job", "JobArn"]),
        Some(format!("arn:aws:s3:us-east-1:{ACCOUNT}:job/{id}"))
    );
    assert_eq!(d.at(&["Job", "ConfirmationRequired"]).as_deref(), Some("true"));
    assert_eq!(d.at(&["Job", "Description"]).as_deref(), Some("Invoke & report"));
    assert_eq!(d.at(&["Job", "Priority"]).as_deref(), Some("10"));
    assert_eq!(
        d.at(&["Job", "Operation", "LambdaInvoke", "InvocationSchemaVersion"])
            .as_deref(),
        Some("2.0")
    );
    let job = d.doc.as_ref().and_then(|x| x.child("Job")).expect("job");
    let args = job
        .child("Operation")
        .and_then(|o| o.child("LambdaInvoke"))
        .and_then(|l| l.child("UserArguments"))
        .expect("args");
    let entry = args.child("entry").expect("entry");
    assert_eq!(
        (entry.text_of("key"), entry.text_of("value")),
        (Some("mode"), Some("fast"))
    );
    let fields: Vec<&str> = job
        .child("Manifest")
        .and_then(|m| m.child("Spec"))
        .and_then(|s| s.child("Fields"))
        .map(|f| f.all("member").map(|m| m.text.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(fields, vec!["Bucket", "Key"]);
    assert_eq!(
        d.at(&["Job", "Manifest", "Location", "ETag"]).as_deref(),
        Some("\"etag1\"")
    );
    assert_eq!(
        d.at(&["Job", "ProgressSummary", "TotalNumberOfTasks"]).as_deref(),
        Some("2")
    );
    assert_eq!(
        d.at(&["Job", "ProgressSummary", "Timers", "ElapsedTimeInActiveSeconds"])
            .as_deref(),
        Some("0")
    );
    assert_eq!(d.at(&["Job", "Report", "ReportScope"]).as_deref(), Some("AllTasks"));
    assert_eq!(
        d.at(&["Job", "RoleArn"]),
        Some(format!("arn:aws:iam::{ACCOUNT}:role/batch"))
    );
    let created = d.at(&["Job", "CreationTime"]).expect("time");
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");
    assert!(d.at(&["Job", "SuspendedDate"]).is_some());

    let t = call(&e, Method::GET, &format!("/v20180820/jobs/{id}/tagging"), "").await;
    assert_eq!(t.doc.as_ref().map(|d| d.name.as_str()), Some("GetJobTaggingResult"));
    assert_eq!(t.at(&["Tags", "member", "Key"]).as_deref(), Some("team"));

    let u = call(
        &e,
        Method::POST,
        &format!("/v20180820/jobs/{id}/status?requestedJobStatus=Ready&statusUpdateReason=confirmed%20by%20me"),
        "",
    )
    .await;
    assert_eq!(u.status, StatusCode::OK, "{}", u.raw);
    assert_eq!(u.doc.as_ref().map(|d| d.name.as_str()), Some("UpdateJobStatusResult"));
    assert_eq!(u.at(&["StatusUpdateReason"]).as_deref(), Some("confirmed by me"));
    let done = wait_status(&e, &id, "Complete").await;
    assert_eq!(
        done.at(&["Job", "ProgressSummary", "NumberOfTasksSucceeded"])
            .as_deref(),
        Some("2")
    );
    assert!(done.at(&["Job", "TerminationDate"]).is_some());
    let report = e
        .objects
        .store
        .lock()
        .expect("lock")
        .keys()
        .any(|(b, k)| b == "reports" && k == &format!("batch/job-{id}/manifest.json"));
    assert!(report, "the report is written under the prefix");

    // A completed job cannot be confirmed again.
    let u = call(
        &e,
        Method::POST,
        &format!("/v20180820/jobs/{id}/status?requestedJobStatus=Ready"),
        "",
    )
    .await;
    assert_eq!(
        (u.status, u.code()),
        (StatusCode::BAD_REQUEST, "JobStatusException".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_same_token() {
    let e = env(false);
    let a = call(
        &e,
        Method::POST,
        "/v20180820/jobs",
        &create_body("same", "5", LAMBDA_V2),
    )
    .await;
    let b = call(
        &e,
        Method::POST,
        "/v20180820/jobs",
        &create_body("same", "5", LAMBDA_V2),
    )
    .await;
    assert_eq!(a.at(&["JobId"]), b.at(&["JobId"]));
    let c = call(
        &e,
        Method::POST,
        "/v20180820/jobs",
        &create_body("same", "6", LAMBDA_V2),
    )
    .await;
    assert_eq!(
        (c.status, c.code()),
        (StatusCode::BAD_REQUEST, "IdempotencyException".to_owned())
    );
    let d = call(
        &e,
        Method::POST,
        "/v20180820/jobs",
        &create_body("other", "5", LAMBDA_V2),
    )
    .await;
    assert_ne!(a.at(&["JobId"]), d.at(&["JobId"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_aws_codes() {
    let e = env(false);
    // Account header.
    let r = call_with(&e, Arc::new(AllowAll), Method::GET, "/v20180820/jobs", None, "").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "InvalidRequest".to_owned())
    );
    let r = call_with(
        &e,
        Arc::new(AllowAll),
        Method::GET,
        "/v20180820/jobs",
        Some("210987654321"),
        "",
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "AccessDenied".to_owned()));
    assert_eq!(r.at(&["RequestId"]).as_deref(), Some("req-1"));
    // Unknown job.
    let r = call(
        &e,
        Method::GET,
        "/v20180820/jobs/00000000-0000-0000-0000-000000000000",
        "",
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "NotFoundException".to_owned())
    );
    assert_eq!(r.message(), "The specified job does not exist");
    let r = call(&e, Method::GET, "/v20180820/jobs/a!b", "").await;
    assert_eq!(r.code(), "InvalidRequest");
    // Bodies.
    let r = call(&e, Method::POST, "/v20180820/jobs", "<CreateJobRequest><Priority>").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "MalformedXML".to_owned())
    );
    let big = format!("<CreateJobRequest>{}</CreateJobRequest>", " ".repeat(xml::MAX_BODY));
    let r = call(&e, Method::POST, "/v20180820/jobs", &big).await;
    assert_eq!(r.code(), "MaxMessageLengthExceeded");
    let long_token = "t".repeat(65);
    let r = call(
        &e,
        Method::POST,
        "/v20180820/jobs",
        &create_body(&long_token, "-1", LAMBDA_V2),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "InvalidRequest".to_owned())
    );
    assert!(
        r.message().starts_with("2 validation errors detected"),
        "{}",
        r.message()
    );
    assert!(r.message().contains("ClientRequestToken"), "{}", r.message());
    assert!(r.message().contains("greater than or equal to 0"), "{}", r.message());
    let r = call(
        &e,
        Method::POST,
        "/v20180820/jobs",
        &create_body("t", "2147483648", LAMBDA_V2),
    )
    .await;
    assert_eq!(r.code(), "InvalidRequest");
    // Operations.
    let two = format!("{LAMBDA_V2}<S3DeleteObjectTagging/>");
    let r = call(&e, Method::POST, "/v20180820/jobs", &create_body("t", "1", &two)).await;
    assert_eq!(r.code(), "BadRequestException");
    let v1_args = LAMBDA_V2.replace("<InvocationSchemaVersion>2.0", "<InvocationSchemaVersion>1.0");
    let r = call(&e, Method::POST, "/v20180820/jobs", &create_body("t", "1", &v1_args)).await;
    assert_eq!(r.code(), "BadRequestException");
    assert!(r.message().contains("2.0"), "{}", r.message());
    let eleven: String = (0..11)
        .map(|i| format!("<entry><key>k{i}</key><value>v</value></entry>"))
        .collect();
    let many = format!(
        "<LambdaInvoke><FunctionArn>f</FunctionArn><InvocationSchemaVersion>2.0</InvocationSchemaVersion><UserArguments>{eleven}</UserArguments></LambdaInvoke>"
    );
    let r = call(&e, Method::POST, "/v20180820/jobs", &create_body("t", "1", &many)).await;
    assert_eq!(r.code(), "InvalidRequest");
    let acl = "<S3PutObjectAcl><AccessControlPolicy><CannedAccessControlList>private</CannedAccessControlList></AccessControlPolicy></S3PutObjectAcl>";
    let r = call(&e, Method::POST, "/v20180820/jobs", &create_body("t", "1", acl)).await;
    assert_eq!(r.code(), "BadRequestException");
    assert!(r.message().contains("not supported"), "{}", r.message());
    let copy_bad = "<S3PutObjectCopy><TargetResource>arn:aws:s3:::dst</TargetResource><StorageClass>FAST</StorageClass></S3PutObjectCopy>";
    let r = call(&e, Method::POST, "/v20180820/jobs", &create_body("t", "1", copy_bad)).await;
    assert_eq!(r.code(), "InvalidRequest");
    assert!(r.message().contains("StorageClass"), "{}", r.message());
    // Report fields when enabled.
    let no_bucket = create_body("t", "1", LAMBDA_V2).replace("<Bucket>arn:aws:s3:::reports</Bucket>", "");
    let r = call(&e, Method::POST, "/v20180820/jobs", &no_bucket).await;
    assert_eq!(r.code(), "InvalidRequest");
    assert!(r.message().contains("Report.Bucket"), "{}", r.message());
    // Bad manifest ARN, fields and format.
    let bad_arn = create_body("t", "1", LAMBDA_V2).replace("arn:aws:s3:::mb/dir/manifest.csv", "arn:aws:s3:::mb");
    assert_eq!(
        call(&e, Method::POST, "/v20180820/jobs", &bad_arn).await.code(),
        "BadRequestException"
    );
    let bad_fields = create_body("t", "1", LAMBDA_V2).replace("<member>Key</member>", "<member>Nope</member>");
    assert_eq!(
        call(&e, Method::POST, "/v20180820/jobs", &bad_fields).await.code(),
        "InvalidRequest"
    );
    let inventory =
        create_body("t", "1", LAMBDA_V2).replace("S3BatchOperations_CSV_20180820", "S3InventoryReport_CSV_20161130");
    assert_eq!(
        call(&e, Method::POST, "/v20180820/jobs", &inventory).await.code(),
        "BadRequestException"
    );
    // Query parameters.
    let r = call(&e, Method::GET, "/v20180820/jobs?maxResults=1001", "").await;
    assert_eq!(r.code(), "InvalidRequest");
    let r = call(&e, Method::GET, "/v20180820/jobs?jobStatuses=Done", "").await;
    assert_eq!(r.code(), "InvalidRequest");
    let r = call(&e, Method::GET, "/v20180820/jobs?nextToken=zzzz", "").await;
    assert_eq!(r.code(), "InvalidNextTokenException");
    let r = call(
        &e,
        Method::POST,
        "/v20180820/jobs/abcdefgh/status?requestedJobStatus=Paused",
        "",
    )
    .await;
    assert_eq!(r.code(), "InvalidRequest");
    let r = call(&e, Method::POST, "/v20180820/jobs/abcdefgh/priority", "").await;
    assert_eq!(r.code(), "InvalidRequest");
    // Other S3 Control operations.
    let r = call(&e, Method::GET, "/v20180820/accesspoint", "").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_IMPLEMENTED, "NotImplemented".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_permissions_and_role_trust() {
    let e = env(true);
    let deny = Arc::new(Deny(vec!["iam:PassRole"], Mutex::new(Vec::new())));
    let r = call_with(
        &e,
        deny.clone(),
        Method::POST,
        "/v20180820/jobs",
        Some(ACCOUNT),
        &create_body("t1", "1", LAMBDA_V2),
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "AccessDenied".to_owned()));
    assert!(r.message().contains("iam:PassRole"), "{}", r.message());
    let asked = deny.1.lock().expect("lock").clone();
    assert_eq!(asked[0], ("s3:CreateJob".to_owned(), "*".to_owned()));
    assert_eq!(
        asked[1],
        ("iam:PassRole".to_owned(), format!("arn:aws:iam::{ACCOUNT}:role/batch"))
    );
    // A role that does not trust S3 Batch Operations, and one that does not exist.
    for role in ["lambda-only", "missing"] {
        let body = create_body("t2", "1", LAMBDA_V2).replace("role/batch", &format!("role/{role}"));
        let r = call(&e, Method::POST, "/v20180820/jobs", &body).await;
        assert_eq!(r.code(), "BadRequestException", "{role}");
        assert!(
            r.message().contains("cannot be assumed by S3 Batch Operations"),
            "{}",
            r.message()
        );
    }
    let ok = call(&e, Method::POST, "/v20180820/jobs", &create_body("t3", "1", LAMBDA_V2)).await;
    let id = ok.at(&["JobId"]).expect("created");
    let deny = Arc::new(Deny(vec!["s3:DescribeJob", "s3:PutJobTagging"], Mutex::new(Vec::new())));
    let r = call_with(
        &e,
        deny.clone(),
        Method::GET,
        &format!("/v20180820/jobs/{id}"),
        Some(ACCOUNT),
        "",
    )
    .await;
    assert_eq!(r.code(), "AccessDenied");
    let tags = "<PutJobTaggingRequest xmlns=\"http://awss3control.amazonaws.com/doc/2018-08-20/\"><Tags/></PutJobTaggingRequest>";
    let r = call_with(
        &e,
        deny.clone(),
        Method::PUT,
        &format!("/v20180820/jobs/{id}/tagging"),
        Some(ACCOUNT),
        tags,
    )
    .await;
    assert_eq!(r.code(), "AccessDenied");
    let r = call_with(&e, deny.clone(), Method::GET, "/v20180820/jobs", Some(ACCOUNT), "").await;
    assert_eq!(r.status, StatusCode::OK);
    let asked = deny.1.lock().expect("lock").clone();
    assert_eq!(
        asked[0],
        (
            "s3:DescribeJob".to_owned(),
            format!("arn:aws:s3:us-east-1:{ACCOUNT}:job/{id}")
        )
    );
    assert_eq!(asked[2], ("s3:ListJobs".to_owned(), "*".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_priority_and_tagging() {
    let e = env(false);
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = call(
            &e,
            Method::POST,
            "/v20180820/jobs",
            &create_body(&format!("l{i}"), "1", LAMBDA_V2),
        )
        .await;
        ids.push(r.at(&["JobId"]).expect("id"));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    for id in &ids {
        wait_status(&e, id, "Suspended").await;
    }
    let r = call(
        &e,
        Method::GET,
        "/v20180820/jobs?jobStatuses=Suspended&maxResults=2",
        "",
    )
    .await;
    assert_eq!(r.doc.as_ref().map(|d| d.name.as_str()), Some("ListJobsResult"));
    let jobs = r.doc.as_ref().and_then(|d| d.child("Jobs")).expect("jobs");
    let first: Vec<String> = jobs
        .all("member")
        .filter_map(|m| m.text_of("JobId").map(str::to_owned))
        .collect();
    assert_eq!(first, vec![ids[2].clone(), ids[1].clone()]);
    let member = jobs.child("member").expect("member");
    assert_eq!(member.text_of("Operation"), Some("LambdaInvoke"));
    assert_eq!(member.text_of("Status"), Some("Suspended"));
    assert!(member.child("ProgressSummary").is_some());
    let token = r.at(&["NextToken"]).expect("token");
    let enc: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
    let r = call(
        &e,
        Method::GET,
        &format!("/v20180820/jobs?jobStatuses=Suspended&maxResults=2&nextToken={enc}"),
        "",
    )
    .await;
    assert_eq!(r.at(&["Jobs", "member", "JobId"]), Some(ids[0].clone()));
    assert!(r.at(&["NextToken"]).is_none());
    let r = call(
        &e,
        Method::GET,
        "/v20180820/jobs?jobStatuses=Complete&jobStatuses=Failed",
        "",
    )
    .await;
    assert_eq!(
        r.doc.as_ref().and_then(|d| d.child("Jobs")).map(|j| j.children.len()),
        Some(0)
    );

    let p = call(
        &e,
        Method::POST,
        &format!("/v20180820/jobs/{}/priority?priority=77", ids[0]),
        "",
    )
    .await;
    assert_eq!(p.doc.as_ref().map(|d| d.name.as_str()), Some("UpdateJobPriorityResult"));
    assert_eq!(p.at(&["Priority"]).as_deref(), Some("77"));
    assert_eq!(p.at(&["JobId"]), Some(ids[0].clone()));

    let tags = "<PutJobTaggingRequest xmlns=\"http://awss3control.amazonaws.com/doc/2018-08-20/\"><Tags><member><Key>a</Key><Value>1</Value></member><member><Key>b</Key><Value></Value></member></Tags></PutJobTaggingRequest>";
    let r = call(&e, Method::PUT, &format!("/v20180820/jobs/{}/tagging", ids[0]), tags).await;
    assert_eq!((r.status, r.raw.as_str()), (StatusCode::OK, ""));
    let t = call(&e, Method::GET, &format!("/v20180820/jobs/{}/tagging", ids[0]), "").await;
    assert_eq!(
        t.doc.as_ref().and_then(|d| d.child("Tags")).map(|x| x.children.len()),
        Some(2)
    );
    let many: String = (0..51)
        .map(|i| format!("<member><Key>k{i}</Key><Value>v</Value></member>"))
        .collect();
    let body = format!("<PutJobTaggingRequest><Tags>{many}</Tags></PutJobTaggingRequest>");
    let r = call(&e, Method::PUT, &format!("/v20180820/jobs/{}/tagging", ids[0]), &body).await;
    assert_eq!(r.code(), "TooManyTagsException");
    let r = call(&e, Method::DELETE, &format!("/v20180820/jobs/{}/tagging", ids[0]), "").await;
    assert_eq!(r.status, StatusCode::OK);
    let t = call(&e, Method::GET, &format!("/v20180820/jobs/{}/tagging", ids[0]), "").await;
    assert_eq!(
        t.doc.as_ref().and_then(|d| d.child("Tags")).map(|x| x.children.len()),
        Some(0)
    );

    // Cancel a suspended job.
    let r = call(
        &e,
        Method::POST,
        &format!("/v20180820/jobs/{}/status?requestedJobStatus=Cancelled", ids[1]),
        "",
    )
    .await;
    assert_eq!(r.at(&["Status"]).as_deref(), Some("Cancelled"));
    e.batch.reset().await.expect("reset");
}
