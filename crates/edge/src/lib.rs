//! The HTTP edge of kinesis-data: one listener for every service. For each request it assigns
//! a request id, bounds the body, picks the service (X-Amz-Target prefix, then path prefixes,
//! then form `Action=` with the IAM/STS scope, then the SigV4 scope's service (e.g.
//! `cloudformation`, the other query-protocol service), else S3),
//! verifies the SigV4 signature against the access keys `kd-iam` holds, and hands the request
//! to that service's adapter (`api-*`), or answers in that protocol's error envelope. It also
//! serves the `/_kinesis-data/*` endpoints (health, reset). Everything below it (adapters,
//! engines, storage) is reached only through the adapters.

pub mod dispatch;
pub mod sigv4;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use kd_api_apigateway::ApiGatewayApi;
use kd_api_athena::AthenaApi;
use kd_api_cloudformation::CloudFormationApi;
use kd_api_firehose::FirehoseApi;
use kd_api_glue::GlueApi;
use kd_api_iam::{Endpoint, IamApi};
use kd_api_kinesis::KinesisApi;
use kd_api_lambda::LambdaApi;
use kd_api_logs::LogsApi;
use kd_api_s3control::S3ControlApi;
use kd_api_ssm::SsmApi;
use kd_iam::authz::Authorizer;
use kd_iam::{Iam, Principal, TokenError};
use kd_wire::json::Encoding;
use kd_wire::{Protocol, RequestContext, ServiceError, render_error};

use crate::dispatch::{Service, route};
use crate::sigv4::AuthError;

/// Largest request body the edge reads for the JSON protocols (PutRecords is at most 5 MiB
/// of data, about 7 MiB as base64 JSON).
pub const MAX_JSON_BODY: usize = 16 * 1024 * 1024;
/// Largest body of any other request until its service streams bodies itself.
pub const MAX_OTHER_BODY: usize = 16 * 1024 * 1024;

/// A hook that empties every service (for `POST /_kinesis-data/reset`).
pub type ResetHook = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Edge settings.
#[derive(Clone)]
pub struct EdgeConfig {
    /// Region used when a request carries no credential scope.
    pub default_region: String,
    /// Whether `POST /_kinesis-data/reset` is served.
    pub allow_reset: bool,
}

/// The service adapters the edge dispatches to.
pub struct Services {
    /// Kinesis Data Streams.
    pub kinesis: KinesisApi,
    /// Amazon Data Firehose.
    pub firehose: FirehoseApi,
    /// IAM and STS.
    pub iam: IamApi,
    /// S3 (s3s over the objects engine).
    pub s3: s3s::service::S3Service,
    /// AWS Lambda.
    pub lambda: LambdaApi,
    /// S3 Control (Batch Operations jobs).
    pub s3control: S3ControlApi,
    /// API Gateway (control plane and invoke traffic).
    pub apigateway: ApiGatewayApi,
    /// AWS Glue Data Catalog.
    pub glue: GlueApi,
    /// Amazon Athena.
    pub athena: AthenaApi,
    /// AWS CloudFormation.
    pub cloudformation: CloudFormationApi,
    /// SSM Parameter Store.
    pub ssm: SsmApi,
    /// CloudWatch Logs.
    pub logs: LogsApi,
}

/// The services the edge dispatches to.
#[derive(Clone)]
pub struct Edge {
    config: EdgeConfig,
    iam: Arc<Iam>,
    authz: Arc<Authorizer>,
    kinesis: KinesisApi,
    firehose: FirehoseApi,
    iam_api: IamApi,
    s3: s3s::service::S3Service,
    lambda: LambdaApi,
    s3control: S3ControlApi,
    apigateway: ApiGatewayApi,
    glue: GlueApi,
    athena: AthenaApi,
    cloudformation: CloudFormationApi,
    ssm: SsmApi,
    logs: LogsApi,
    reset: ResetHook,
}

impl Edge {
    /// An edge over these adapters.
    pub fn new(
        config: EdgeConfig,
        iam: Arc<Iam>,
        authz: Arc<Authorizer>,
        services: Services,
        reset: ResetHook,
    ) -> Self {
        Self {
            config,
            iam,
            authz,
            kinesis: services.kinesis,
            firehose: services.firehose,
            iam_api: services.iam,
            s3: services.s3,
            lambda: services.lambda,
            s3control: services.s3control,
            apigateway: services.apigateway,
            glue: services.glue,
            athena: services.athena,
            cloudformation: services.cloudformation,
            ssm: services.ssm,
            logs: services.logs,
            reset,
        }
    }

    /// The axum router serving every request.
    pub fn router(self) -> axum::Router {
        let edge = Arc::new(self);
        axum::Router::new().fallback(move |req: Request<Body>| {
            let edge = edge.clone();
            async move { edge.handle(req).await }
        })
    }

    /// Handles one request.
    pub async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let (parts, body) = req.into_parts();
        if parts.uri.path().starts_with(kd_api_cloudformation::RESPONSE_PATH) {
            // A custom resource's answer to its (presigned-looking) response URL.
            return match read_body(body, kd_api_cloudformation::MAX_BODY).await {
                Ok(b) => into_body(
                    self.cloudformation
                        .custom_resource_response(&parts.method, parts.uri.path(), &b),
                ),
                Err(status) => {
                    let err = ServiceError::with_status(
                        status,
                        "EntityTooLarge",
                        "Your proposed upload exceeds the maximum allowed size",
                    );
                    into_body(render_error(Protocol::RestXml, &err, &request_id))
                }
            };
        }
        if let Some(resp) = self.internal(&parts, &request_id).await {
            return resp;
        }
        let service = route(&parts);
        if service == Service::S3 {
            return self.s3(Request::from_parts(parts, body), &request_id).await;
        }
        if service == Service::ApiGatewayInvoke {
            return self.apigateway_invoke(parts, body, &request_id).await;
        }
        let protocol = service.protocol();
        let limit = match service {
            Service::Iam | Service::Sts => kd_api_iam::MAX_BODY,
            Service::CloudFormation => kd_api_cloudformation::MAX_BODY,
            Service::Lambda => kd_api_lambda::MAX_BODY,
            Service::ApiGateway => kd_api_apigateway::MAX_BODY,
            _ if protocol == Protocol::AwsJson => MAX_JSON_BODY,
            _ => MAX_OTHER_BODY,
        };
        let body = match read_body(body, limit).await {
            Ok(b) => b,
            Err(status) => {
                let err = ServiceError::with_status(
                    status,
                    if status == StatusCode::PAYLOAD_TOO_LARGE {
                        "RequestEntityTooLargeException"
                    } else {
                        "SerializationException"
                    },
                    format!("Request body could not be read or exceeds {limit} bytes"),
                );
                return into_body(render_error(protocol, &err, &request_id));
            }
        };
        let (ctx, principal) = match self.authenticate(&parts, &body, &request_id) {
            Ok(authenticated) => authenticated,
            Err(e) => {
                tracing::debug!(%request_id, error = %e, "authentication failed");
                return into_body(render_error(protocol, &auth_error(protocol, &e), &request_id));
            }
        };
        let resp = match service {
            Service::Kinesis(op) => {
                let encoding = Encoding::from_content_type(
                    parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok()),
                );
                self.kinesis.handle(&ctx, &op, encoding, &body).await
            }
            Service::Firehose(op) => self.firehose.handle(&ctx, &op, &body).await,
            Service::Glue => {
                let target = parts
                    .headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let op = kd_wire::json::operation(target, kd_api_glue::TARGET_PREFIX).unwrap_or_default();
                self.glue.handle(&ctx, op, &body).await
            }
            Service::Athena => {
                let target = parts
                    .headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let op = kd_wire::json::operation(target, kd_api_athena::TARGET_PREFIX).unwrap_or_default();
                self.athena.handle(&ctx, op, &body).await
            }
            Service::Ssm => {
                let target = parts
                    .headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let op = kd_wire::json::operation(target, kd_api_ssm::TARGET_PREFIX).unwrap_or_default();
                self.ssm.handle(&ctx, op, &body).await
            }
            Service::Logs => {
                let target = parts
                    .headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let op = kd_wire::json::operation(target, kd_api_logs::TARGET_PREFIX).unwrap_or_default();
                self.logs.handle(&ctx, op, &body).await
            }
            Service::S3Control => {
                self.s3control
                    .handle(
                        &ctx,
                        &parts.method,
                        parts.uri.path(),
                        parts.uri.query(),
                        &parts.headers,
                        &body,
                    )
                    .await
            }
            Service::Lambda => {
                let host = parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("127.0.0.1");
                let endpoint = format!("http://{host}");
                self.lambda
                    .handle(
                        &ctx,
                        &parts.method,
                        parts.uri.path(),
                        parts.uri.query(),
                        &parts.headers,
                        &body,
                        &endpoint,
                    )
                    .await
            }
            Service::ApiGateway => {
                self.apigateway
                    .handle(&ctx, &parts.method, parts.uri.path(), parts.uri.query(), &body)
                    .await
            }
            Service::CloudFormation => {
                self.cloudformation
                    .handle_as(&ctx, Some(&principal.access_key_id), parts.uri.query(), &body)
                    .await
            }
            Service::Iam | Service::Sts => {
                let endpoint = if service == Service::Iam {
                    Endpoint::Iam
                } else {
                    Endpoint::Sts
                };
                self.iam_api
                    .handle(&ctx, &principal, endpoint, parts.uri.query(), &body)
                    .await
            }
            other => render_error(
                protocol,
                &ServiceError::with_status(
                    StatusCode::NOT_IMPLEMENTED,
                    "NotImplemented",
                    format!("{} is not implemented by kinesis-data yet", other.name()),
                ),
                &request_id,
            ),
        };
        tracing::debug!(%request_id, status = resp.status().as_u16(), "request done");
        into_body(resp)
    }

    /// A deployed API's own traffic: unsigned requests pass (the method's authorization type
    /// decides whether that is enough); a signature, when present, is verified and its caller
    /// handed on.
    async fn apigateway_invoke(&self, parts: http::request::Parts, body: Body, request_id: &str) -> Response<Body> {
        use kd_api_apigateway::{Invocation, InvokeCaller};
        let gateway = |status: u16, kind: &str, message: &str| {
            let mut r = kd_api_apigateway::gateway_response(status, kind, message);
            kd_wire::insert(r.headers_mut(), "x-amzn-requestid", request_id);
            kd_wire::insert(r.headers_mut(), "x-amz-apigw-id", &kd_api_apigateway::new_apigw_id());
            into_body(r)
        };
        let Some(target) = dispatch::invoke_target(&parts) else {
            return gateway(
                403,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            );
        };
        let body = match read_body(body, kd_api_apigateway::MAX_BODY).await {
            Ok(b) => b,
            Err(StatusCode::PAYLOAD_TOO_LARGE) => {
                return gateway(413, "RequestTooLargeException", "Request Too Long");
            }
            Err(_) => return gateway(400, "BadRequestException", "Bad Request"),
        };
        let caller = match self.authenticate(&parts, &body, request_id) {
            Ok((ctx, principal)) => InvokeCaller::Signed {
                authz: ctx.authz,
                caller: kd_api_apigateway::Caller {
                    access_key: principal.access_key_id.clone(),
                    account_id: principal.account_id.clone(),
                    caller: principal.user_id.clone(),
                    user: principal.user_id.clone(),
                    user_arn: principal.arn.clone(),
                },
            },
            Err(AuthError::Missing) => InvokeCaller::Anonymous,
            Err(e) => InvokeCaller::Invalid(auth_error(Protocol::RestJson, &e).message),
        };
        let source_ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "127.0.0.1".to_owned());
        let domain_name = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_owned();
        let resp = self
            .apigateway
            .invoke(Invocation {
                api_id: target.api_id,
                stage: target.stage,
                path: target.path,
                method: parts.method.clone(),
                query: parts.uri.query().map(str::to_owned),
                headers: parts.headers,
                body,
                source_ip,
                domain_name,
                request_id: request_id.to_owned(),
                caller,
            })
            .await;
        tracing::debug!(%request_id, status = resp.status().as_u16(), "API Gateway invoke done");
        into_body(resp)
    }

    /// S3 streams its bodies and verifies its own signatures (s3s, against the same keys).
    async fn s3(&self, req: Request<Body>, request_id: &str) -> Response<Body> {
        use tower::ServiceExt as _;
        match self.s3.clone().oneshot(req).await {
            Ok(resp) => {
                let mut resp = resp.map(Body::new);
                if !resp.headers().contains_key("x-amz-request-id") {
                    kd_wire::insert(resp.headers_mut(), "x-amz-request-id", request_id);
                }
                resp
            }
            Err(e) => {
                tracing::error!(%request_id, error = ?e, "S3 request failed");
                let err = ServiceError::with_status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                );
                into_body(render_error(Protocol::RestXml, &err, request_id))
            }
        }
    }

    async fn internal(&self, parts: &http::request::Parts, request_id: &str) -> Option<Response<Body>> {
        let path = parts.uri.path();
        if !path.starts_with("/_kinesis-data/") {
            return None;
        }
        let json = |status: StatusCode, v: serde_json::Value| {
            let mut r = Response::new(Body::from(v.to_string()));
            *r.status_mut() = status;
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        };
        if parts.method == http::Method::GET
            && let Some(file) = path.strip_prefix(kd_api_lambda::CODE_PATH)
        {
            // GetFunction's Code.Location: the package, by its SHA-256 (an unguessable name,
            // as AWS's presigned URL).
            let sha = file.strip_suffix(".zip").unwrap_or(file);
            return Some(match self.lambda.engine().code_zip(sha) {
                Ok(zip) => {
                    let mut r = Response::new(Body::from(zip));
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/zip"),
                    );
                    r
                }
                Err(_) => json(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({ "error": "no such code package", "requestId": request_id }),
                ),
            });
        }
        Some(match (parts.method.as_str(), path) {
            ("GET", "/_kinesis-data/health") => json(StatusCode::OK, health()),
            ("POST", "/_kinesis-data/reset") if self.config.allow_reset => match (self.reset)().await {
                Ok(()) => json(StatusCode::OK, serde_json::json!({ "reset": true })),
                Err(e) => {
                    tracing::error!(error = %e, "reset failed");
                    json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        serde_json::json!({ "reset": false, "error": e }),
                    )
                }
            },
            ("POST", "/_kinesis-data/reset") => json(
                StatusCode::FORBIDDEN,
                serde_json::json!({ "reset": false, "error": "reset is disabled (--no-reset)" }),
            ),
            _ => json(
                StatusCode::NOT_FOUND,
                serde_json::json!({ "error": format!("no such endpoint {path}"), "requestId": request_id }),
            ),
        })
    }

    fn authenticate(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        request_id: &str,
    ) -> Result<(RequestContext, Principal), AuthError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let iam = &self.iam;
        let verified = sigv4::verify(parts, body, &|ak: &str| iam.secret_for(ak), now)?;
        let principal = iam
            .principal(&verified.access_key)
            .ok_or(AuthError::UnknownAccessKey(verified.access_key.clone()))?;
        // Session keys (ASIA…) must carry their own token and be unexpired.
        iam.check_session(&principal, verified.session_token.as_deref())
            .map_err(|e| match e {
                TokenError::Expired => AuthError::ExpiredToken,
                TokenError::Invalid => AuthError::InvalidToken,
            })?;
        let region = if verified.region.is_empty() {
            self.config.default_region.clone()
        } else {
            verified.region
        };
        let authz: Arc<dyn kd_wire::Authorize> =
            if !self.authz.enabled() || matches!(principal.kind, kd_iam::PrincipalKind::Root) {
                Arc::new(kd_wire::AllowAll)
            } else {
                let mut context = self.authz.context_for(&principal).secure_transport(false);
                if let Some(axum::extract::ConnectInfo(peer)) =
                    parts.extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
                {
                    context = context.source_ip(peer.ip());
                }
                Arc::new(CallerAuthz {
                    context,
                    authz: self.authz.clone(),
                    principal: principal.clone(),
                })
            };
        let ctx = RequestContext {
            request_id: request_id.to_owned(),
            account_id: principal.account_id.clone(),
            region,
            authz,
        };
        Ok((ctx, principal))
    }
}

/// One caller's authoriser: the shared policy cache plus who is asking.
#[derive(Debug)]
struct CallerAuthz {
    authz: Arc<Authorizer>,
    principal: kd_iam::Principal,
    context: kd_iam::policy::ConditionContext,
}

impl kd_wire::Authorize for CallerAuthz {
    fn enforced(&self) -> bool {
        true
    }

    fn authorize(&self, action: &str, resource: &str) -> Result<(), String> {
        self.authz
            .check(&self.principal, action, resource, &self.context)
            .map_err(|d| d.message)
    }
}

/// Health document: every service and its state.
pub fn health() -> serde_json::Value {
    let mut services = serde_json::Map::new();
    for s in dispatch::ALL_SERVICES {
        services.insert(
            (*s).to_owned(),
            serde_json::Value::from(
                if matches!(
                    *s,
                    "kinesis" | "firehose" | "iam" | "sts" | "s3" | "lambda" | "s3control" | "apigateway"
                ) {
                    "running"
                } else {
                    "not_implemented"
                },
            ),
        );
    }
    serde_json::json!({ "status": "ready", "version": env!("CARGO_PKG_VERSION"), "services": services })
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, StatusCode> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(StatusCode::PAYLOAD_TOO_LARGE),
        Err(_) => Err(StatusCode::BAD_REQUEST),
    }
}

fn into_body(resp: Response<Bytes>) -> Response<Body> {
    resp.map(Body::from)
}

/// The error a failed authentication gets, in the protocol's own words.
pub fn auth_error(protocol: Protocol, e: &AuthError) -> ServiceError {
    let msg = e.to_string();
    let s400 = StatusCode::BAD_REQUEST;
    let s403 = StatusCode::FORBIDDEN;
    let (status, code) = match (protocol, e) {
        (Protocol::AwsJson, AuthError::Missing) => (s400, "MissingAuthenticationTokenException"),
        (Protocol::AwsJson, AuthError::UnknownAccessKey(_)) => (s400, "UnrecognizedClientException"),
        (Protocol::AwsJson, AuthError::SignatureMismatch | AuthError::Expired { .. }) => {
            (s400, "InvalidSignatureException")
        }
        (Protocol::AwsJson, AuthError::Incomplete(_) | AuthError::UnsupportedAlgorithm(_)) => {
            (s400, "IncompleteSignatureException")
        }
        (Protocol::AwsJson, AuthError::ExpiredToken) => (s400, "ExpiredTokenException"),
        (Protocol::AwsJson, AuthError::InvalidToken) => (s400, "UnrecognizedClientException"),
        (Protocol::RestJson, AuthError::Missing) => (s403, "MissingAuthenticationTokenException"),
        (Protocol::RestJson, AuthError::UnknownAccessKey(_)) => (s403, "UnrecognizedClientException"),
        (Protocol::RestJson, AuthError::SignatureMismatch | AuthError::Expired { .. }) => {
            (s403, "InvalidSignatureException")
        }
        (Protocol::RestJson, AuthError::Incomplete(_) | AuthError::UnsupportedAlgorithm(_)) => {
            (s400, "IncompleteSignatureException")
        }
        (Protocol::RestJson, AuthError::ExpiredToken) => (s403, "ExpiredTokenException"),
        (Protocol::RestJson, AuthError::InvalidToken) => (s403, "UnrecognizedClientException"),
        (Protocol::RestXml, AuthError::Missing) => (s403, "AccessDenied"),
        (Protocol::RestXml, AuthError::UnknownAccessKey(_)) => (s403, "InvalidAccessKeyId"),
        (Protocol::RestXml, AuthError::SignatureMismatch) => (s403, "SignatureDoesNotMatch"),
        (Protocol::RestXml, AuthError::Expired { expires: Some(_), .. }) => (s403, "AccessDenied"),
        (Protocol::RestXml, AuthError::Expired { expires: None, .. }) => (s403, "RequestTimeTooSkewed"),
        (Protocol::RestXml, AuthError::Incomplete(_) | AuthError::UnsupportedAlgorithm(_)) => {
            (s400, "AuthorizationHeaderMalformed")
        }
        (Protocol::RestXml, AuthError::ExpiredToken) => (s400, "ExpiredToken"),
        (Protocol::RestXml, AuthError::InvalidToken) => (s400, "InvalidToken"),
        (Protocol::Query, AuthError::Missing) => (s403, "MissingAuthenticationToken"),
        (Protocol::Query, AuthError::UnknownAccessKey(_)) => (s403, "InvalidClientTokenId"),
        (Protocol::Query, AuthError::SignatureMismatch | AuthError::Expired { .. }) => (s403, "SignatureDoesNotMatch"),
        (Protocol::Query, AuthError::Incomplete(_) | AuthError::UnsupportedAlgorithm(_)) => {
            (s400, "IncompleteSignature")
        }
        (Protocol::Query, AuthError::ExpiredToken) => (s403, "ExpiredToken"),
        (Protocol::Query, AuthError::InvalidToken) => (s403, "InvalidClientTokenId"),
    };
    let msg = match (protocol, e) {
        (Protocol::AwsJson | Protocol::RestJson | Protocol::Query, AuthError::UnknownAccessKey(_)) => {
            "The security token included in the request is invalid.".to_owned()
        }
        (Protocol::AwsJson | Protocol::RestJson, AuthError::Missing) => "Missing Authentication Token".to_owned(),
        (Protocol::RestXml, AuthError::Missing) => "Access Denied".to_owned(),
        (Protocol::RestXml, AuthError::UnknownAccessKey(_)) => {
            "The AWS Access Key Id you provided does not exist in our records.".to_owned()
        }
        (Protocol::RestXml, AuthError::SignatureMismatch) => {
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.".to_owned()
        }
        (Protocol::RestXml, AuthError::ExpiredToken) => "The provided token has expired.".to_owned(),
        (Protocol::RestXml, AuthError::InvalidToken) => {
            "The provided token is malformed or otherwise invalid.".to_owned()
        }
        _ => msg,
    };
    ServiceError::with_status(status, code, msg)
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    // No Nagle: a reply's head and body go out at once, not 40 ms apart (delayed ACKs).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}
