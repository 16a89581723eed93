//! The S3 Control adapter for S3 Batch Operations: restXml requests under `/v20180820/jobs`
//! (CreateJob, DescribeJob, ListJobs, UpdateJobPriority, UpdateJobStatus, Get/Put/
//! DeleteJobTagging) become one call on [`kd_batch::Batch`], and its answer or error becomes
//! the XML reply. It sits between the `edge` (which has authenticated the caller and routes
//! every `/v20180820/` path here, whatever the Host) and the batch engine. Here: the
//! `x-amz-account-id` header (it must be the caller's account), body limits and XML parsing
//! ([`xml`]), the model's constraints ([`shapes`]; `InvalidRequest`), the caller's IAM
//! permission for each operation (`s3:CreateJob` … on the job ARN
//! `arn:aws:s3:<region>:<account>:job/<id>`, `*` for CreateJob and ListJobs), `iam:PassRole`
//! on the job's role, and that role's trust of `batchoperations.s3.amazonaws.com`. Errors are
//! S3 Control's wrapped envelope:
//! `<ErrorResponse><Error><Code/><Message/></Error><RequestId/></ErrorResponse>`.
//! Other S3 Control operations answer 501 NotImplemented.

pub mod shapes;
pub mod xml;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use kd_batch::{Batch, Error, JobStatus, RequestedStatus, Scope};
use kd_iam::store::IamStore;
use kd_wire::validate::Validator;
use kd_wire::{RequestContext, ServiceError, xml_escape};

use crate::shapes::{bad_request, invalid_request};
use crate::xml::Writer;

/// The path prefix of every S3 Control operation.
pub const PATH_PREFIX: &str = "/v20180820/";
/// The service principal S3 Batch Operations assumes job roles as.
pub const SERVICE_PRINCIPAL: &str = "batchoperations.s3.amazonaws.com";

/// The S3 Control job API over the batch engine.
#[derive(Clone)]
pub struct S3ControlApi {
    engine: Arc<Batch>,
    iam: Arc<IamStore>,
    enforce_trust: bool,
}

impl std::fmt::Debug for S3ControlApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3ControlApi")
            .field("enforce_trust", &self.enforce_trust)
            .finish_non_exhaustive()
    }
}

type Reply = Result<Response<Bytes>, ServiceError>;

/// The AWS error of every engine error.
pub fn service_error(e: &Error) -> ServiceError {
    let msg = e.to_string();
    match e {
        Error::NotFound(_) => ServiceError::with_status(StatusCode::NOT_FOUND, "NotFoundException", msg),
        Error::BadRequest(_) => ServiceError::client("BadRequestException", msg),
        Error::Idempotency(_) => ServiceError::client("IdempotencyException", msg),
        Error::JobStatus(_) => ServiceError::client("JobStatusException", msg),
        Error::TooManyTags(_) => ServiceError::client("TooManyTagsException", msg),
        Error::InvalidNextToken(_) => ServiceError::client("InvalidNextTokenException", msg),
        Error::TooManyRequests(_) => {
            ServiceError::with_status(StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException", msg)
        }
        Error::Storage(inner) => {
            tracing::error!(error = %inner, "batch storage failure; the request is not acknowledged");
            internal()
        }
        Error::Internal(detail) => {
            tracing::error!(%detail, "internal error in the batch engine");
            internal()
        }
    }
}

fn internal() -> ServiceError {
    ServiceError::with_status(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServiceException",
        "We encountered an internal error. Please try again.",
    )
}

fn access_denied(msg: impl Into<String>) -> ServiceError {
    ServiceError::with_status(StatusCode::FORBIDDEN, "AccessDenied", msg)
}

fn with_headers(status: StatusCode, body: Bytes, request_id: &str, xml: bool) -> Response<Bytes> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    if xml {
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/xml"),
        );
    }
    kd_wire::insert(h, "x-amz-request-id", request_id);
    kd_wire::insert(h, "x-amzn-requestid", request_id);
    r
}

/// Renders `err` in S3 Control's error envelope.
pub fn error_response(err: &ServiceError, request_id: &str) -> Response<Bytes> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse><Error><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        xml_escape(&err.code),
        xml_escape(&err.message),
        xml_escape(request_id)
    );
    with_headers(err.status, Bytes::from(body), request_id, true)
}

fn query_map(query: Option<&str>) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        m.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    m
}

fn q1<'a>(q: &'a BTreeMap<String, Vec<String>>, k: &str) -> Option<&'a str> {
    q.get(k).and_then(|v| v.first()).map(String::as_str)
}

fn is_job_id(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

struct Call<'a> {
    ctx: &'a RequestContext,
    scope: Scope,
    query: BTreeMap<String, Vec<String>>,
    body: &'a Bytes,
}

impl Call<'_> {
    fn rid(&self) -> &str {
        &self.ctx.request_id
    }

    fn job_arn(&self, id: &str) -> String {
        kd_batch::job_arn(&self.scope, id)
    }

    /// IAM check of `action` on `resource` (built only when policies apply).
    fn allow(&self, action: &str, resource: impl FnOnce() -> String) -> Result<(), ServiceError> {
        if !self.ctx.authz.enforced() {
            return Ok(());
        }
        self.ctx.authz.authorize(action, &resource()).map_err(access_denied)
    }

    fn xml(&self, body: String) -> Reply {
        Ok(with_headers(StatusCode::OK, Bytes::from(body), self.rid(), true))
    }

    fn empty(&self) -> Reply {
        Ok(with_headers(StatusCode::OK, Bytes::new(), self.rid(), false))
    }

    fn document(&self) -> Result<xml::Element, ServiceError> {
        if self.body.len() > xml::MAX_BODY {
            return Err(ServiceError::client(
                "MaxMessageLengthExceeded",
                format!("Your request was too big (the limit is {} bytes).", xml::MAX_BODY),
            ));
        }
        xml::parse(self.body).map_err(|detail| {
            tracing::debug!(%detail, "malformed S3 Control request body");
            shapes::malformed()
        })
    }
}

fn check_job_id(id: &str) -> Result<(), ServiceError> {
    let mut v = Validator::default();
    v.length(Some(id), "id", 5, 36);
    v.pattern(Some(id), "id", is_job_id, "[a-zA-Z0-9\\-\\_]+");
    v.finish().map_err(invalid_request)
}

impl S3ControlApi {
    /// An adapter over `engine`. Job roles must exist in `iam` and trust
    /// `batchoperations.s3.amazonaws.com`, unless `enforce_trust` is off (`--iam off`).
    pub fn new(engine: Arc<Batch>, iam: Arc<IamStore>, enforce_trust: bool) -> Self {
        Self {
            engine,
            iam,
            enforce_trust,
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Batch> {
        &self.engine
    }

    /// Handles one authenticated request whose path starts with `/v20180820/`.
    pub async fn handle(
        &self,
        ctx: &RequestContext,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Response<Bytes> {
        match self.dispatch(ctx, method, path, query, headers, body).await {
            Ok(r) => r,
            Err(e) => error_response(&e, &ctx.request_id),
        }
    }

    async fn dispatch(
        &self,
        ctx: &RequestContext,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Reply {
        let path = path.split('?').next().unwrap_or_default();
        let rest = path.strip_prefix(PATH_PREFIX).unwrap_or_default();
        let segs: Vec<String> = rest
            .trim_end_matches('/')
            .split('/')
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        enum Op<'a> {
            Create,
            List,
            Describe(&'a str),
            Priority(&'a str),
            Status(&'a str),
            GetTags(&'a str),
            PutTags(&'a str),
            DeleteTags(&'a str),
        }
        let op = match (method.as_str(), segs.as_slice()) {
            ("POST", ["jobs"]) => Op::Create,
            ("GET", ["jobs"]) => Op::List,
            ("GET", ["jobs", id]) => Op::Describe(id),
            ("POST", ["jobs", id, "priority"]) => Op::Priority(id),
            ("POST", ["jobs", id, "status"]) => Op::Status(id),
            ("GET", ["jobs", id, "tagging"]) => Op::GetTags(id),
            ("PUT", ["jobs", id, "tagging"]) => Op::PutTags(id),
            ("DELETE", ["jobs", id, "tagging"]) => Op::DeleteTags(id),
            _ => {
                return Err(ServiceError::with_status(
                    StatusCode::NOT_IMPLEMENTED,
                    "NotImplemented",
                    format!("kinesis-data does not implement the S3 Control operation {method} {path}."),
                ));
            }
        };
        let account = headers
            .get("x-amz-account-id")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ServiceError::client(
                    "InvalidRequest",
                    "Missing required header for this request: x-amz-account-id",
                )
            })?;
        let mut v = Validator::default();
        v.pattern(
            Some(account),
            "AccountId",
            |s| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()),
            "^\\d{12}$",
        );
        v.finish().map_err(invalid_request)?;
        if account != ctx.account_id {
            return Err(access_denied("Access Denied"));
        }
        let call = Call {
            ctx,
            scope: Scope {
                account: ctx.account_id.clone(),
                region: ctx.region.clone(),
            },
            query: query_map(query),
            body,
        };
        match op {
            Op::Create => self.create(&call).await,
            Op::List => self.list(&call),
            Op::Describe(id) => self.describe(&call, id),
            Op::Priority(id) => self.priority(&call, id).await,
            Op::Status(id) => self.status(&call, id).await,
            Op::GetTags(id) => self.get_tags(&call, id),
            Op::PutTags(id) => self.put_tags(&call, id).await,
            Op::DeleteTags(id) => self.delete_tags(&call, id).await,
        }
    }

    /// The role must exist and trust S3 Batch Operations (skipped with `--iam off`).
    fn check_trust(&self, account: &str, role_arn: &str) -> Result<(), ServiceError> {
        if !self.enforce_trust {
            return Ok(());
        }
        let ctx = kd_iam::policy::ConditionContext::new().source_account(account);
        if self.iam.service_may_assume(role_arn, SERVICE_PRINCIPAL, &ctx) {
            return Ok(());
        }
        Err(bad_request(format!(
            "The role {role_arn} cannot be assumed by S3 Batch Operations: it must exist and its trust policy must allow {SERVICE_PRINCIPAL} to call sts:AssumeRole."
        )))
    }

    async fn create(&self, call: &Call<'_>) -> Reply {
        let doc = call.document()?;
        let spec = shapes::create_job_request(&doc)?;
        call.allow("s3:CreateJob", || "*".to_owned())?;
        call.allow("iam:PassRole", || spec.role_arn.clone())?;
        self.check_trust(&call.scope.account, &spec.role_arn)?;
        let id = self
            .engine
            .create_job(&call.scope, spec)
            .await
            .map_err(|e| service_error(&e))?;
        let mut w = Writer::new("CreateJobResult");
        w.leaf("JobId", &id);
        call.xml(w.finish("CreateJobResult"))
    }

    fn list(&self, call: &Call<'_>) -> Reply {
        let mut v = Validator::default();
        let mut statuses = Vec::new();
        let names: Vec<&str> = call
            .query
            .get("jobStatuses")
            .into_iter()
            .flatten()
            .flat_map(|s| s.split(','))
            .filter(|s| !s.is_empty())
            .collect();
        let allowed: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
        for s in names {
            match JobStatus::parse(s) {
                Some(st) => statuses.push(st),
                None => v.one_of(Some(s), "jobStatuses", &allowed),
            }
        }
        let max = match q1(&call.query, "maxResults") {
            None => Some(1000),
            Some(t) => match t.parse::<i64>() {
                Ok(n) => {
                    v.range(Some(n), "maxResults", 0, 1000);
                    Some(n)
                }
                Err(_) => {
                    v.fail(t, "maxResults", "Member must be an integer");
                    None
                }
            },
        };
        let token = q1(&call.query, "nextToken");
        v.length(token, "nextToken", 1, 1024);
        v.finish().map_err(invalid_request)?;
        call.allow("s3:ListJobs", || "*".to_owned())?;
        let max = usize::try_from(max.unwrap_or(1000)).unwrap_or(1000);
        let page = self
            .engine
            .list_jobs(&call.scope, &statuses, token, max)
            .map_err(|e| service_error(&e))?;
        call.xml(shapes::list_jobs_result(&page.jobs, page.next_token.as_deref()))
    }

    fn describe(&self, call: &Call<'_>, id: &str) -> Reply {
        check_job_id(id)?;
        call.allow("s3:DescribeJob", || call.job_arn(id))?;
        let job = self
            .engine
            .describe_job(&call.scope, id)
            .map_err(|e| service_error(&e))?;
        call.xml(shapes::describe_job_result(&job))
    }

    async fn priority(&self, call: &Call<'_>, id: &str) -> Reply {
        check_job_id(id)?;
        let mut v = Validator::default();
        let raw = q1(&call.query, "priority");
        if raw.is_none() {
            v.required::<()>(&None, "priority");
        }
        let priority = match raw.map(|p| p.parse::<i64>()) {
            None => None,
            Some(Ok(n)) => {
                v.range(Some(n), "priority", 0, 2_147_483_647);
                Some(n)
            }
            Some(Err(_)) => {
                v.fail(raw.unwrap_or_default(), "priority", "Member must be an integer");
                None
            }
        };
        v.finish().map_err(invalid_request)?;
        let priority = priority.and_then(|p| i32::try_from(p).ok()).unwrap_or_default();
        call.allow("s3:UpdateJobPriority", || call.job_arn(id))?;
        let p = self
            .engine
            .update_priority(&call.scope, id, priority)
            .await
            .map_err(|e| service_error(&e))?;
        let mut w = Writer::new("UpdateJobPriorityResult");
        w.leaf("JobId", id).leaf("Priority", &p.to_string());
        call.xml(w.finish("UpdateJobPriorityResult"))
    }

    async fn status(&self, call: &Call<'_>, id: &str) -> Reply {
        check_job_id(id)?;
        let mut v = Validator::default();
        let requested = q1(&call.query, "requestedJobStatus");
        if requested.is_none() {
            v.required::<()>(&None, "requestedJobStatus");
        }
        v.one_of(requested, "requestedJobStatus", &["Cancelled", "Ready"]);
        let reason = q1(&call.query, "statusUpdateReason");
        v.length(reason, "statusUpdateReason", 1, 256);
        v.finish().map_err(invalid_request)?;
        let requested = match requested {
            Some("Ready") => RequestedStatus::Ready,
            _ => RequestedStatus::Cancelled,
        };
        call.allow("s3:UpdateJobStatus", || call.job_arn(id))?;
        let up = self
            .engine
            .update_status(&call.scope, id, requested, reason.map(str::to_owned))
            .await
            .map_err(|e| service_error(&e))?;
        let mut w = Writer::new("UpdateJobStatusResult");
        w.leaf("JobId", &up.id)
            .leaf("Status", up.status.as_str())
            .opt("StatusUpdateReason", up.reason.as_deref());
        call.xml(w.finish("UpdateJobStatusResult"))
    }

    fn get_tags(&self, call: &Call<'_>, id: &str) -> Reply {
        check_job_id(id)?;
        call.allow("s3:GetJobTagging", || call.job_arn(id))?;
        let tags = self
            .engine
            .get_tagging(&call.scope, id)
            .map_err(|e| service_error(&e))?;
        call.xml(shapes::get_job_tagging_result(&tags))
    }

    async fn put_tags(&self, call: &Call<'_>, id: &str) -> Reply {
        check_job_id(id)?;
        let doc = call.document()?;
        let tags = shapes::put_job_tagging_request(&doc)?;
        call.allow("s3:PutJobTagging", || call.job_arn(id))?;
        self.engine
            .put_tagging(&call.scope, id, tags)
            .await
            .map_err(|e| service_error(&e))?;
        call.empty()
    }

    async fn delete_tags(&self, call: &Call<'_>, id: &str) -> Reply {
        check_job_id(id)?;
        call.allow("s3:DeleteJobTagging", || call.job_arn(id))?;
        self.engine
            .delete_tagging(&call.scope, id)
            .await
            .map_err(|e| service_error(&e))?;
        call.empty()
    }
}
