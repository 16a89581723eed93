//! Which service a request is for, decided from the request line and headers alone (the
//! body is not needed, except that a form-encoded `Action=` request is recognised by its
//! content type and SigV4 scope). The order follows the architecture: `X-Amz-Target` prefix,
//! path prefixes, IAM/STS query requests, the SigV4 scope's service name, else S3.

use kd_wire::Protocol;

/// Path prefixes of the Lambda API (its operations are dated by the API version that
/// added them).
const LAMBDA_PREFIXES: &[&str] = &[
    "/2015-03-31/functions",
    "/2015-03-31/event-source-mappings",
    "/2017-10-31/functions/",
    "/2019-09-30/functions/",
    "/2019-09-25/functions/",
    "/2017-03-31/tags/",
    "/2016-08-19/account-settings",
];

/// Every service kinesis-data will serve, as `/_kinesis-data/health` names them.
pub const ALL_SERVICES: &[&str] = &[
    "kinesis",
    "firehose",
    "s3",
    "s3control",
    "iam",
    "sts",
    "lambda",
    "apigateway",
    "glue",
    "athena",
    "cloudformation",
    "ssm",
    "logs",
];

/// The service a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    /// Kinesis Data Streams; the operation name from `X-Amz-Target`.
    Kinesis(String),
    /// Amazon Data Firehose; the operation name from `X-Amz-Target`.
    Firehose(String),
    /// AWS Glue.
    Glue,
    /// Amazon Athena.
    Athena,
    /// SSM Parameter Store.
    Ssm,
    /// CloudWatch Logs.
    Logs,
    /// An awsJson service we do not know.
    UnknownJson,
    /// AWS Lambda.
    Lambda,
    /// S3 Control (Batch Operations).
    S3Control,
    /// API Gateway control plane.
    ApiGateway,
    /// A deployed API's own traffic.
    ApiGatewayInvoke,
    /// IAM.
    Iam,
    /// STS.
    Sts,
    /// CloudFormation (query protocol, told apart by its SigV4 scope).
    CloudFormation,
    /// S3.
    S3,
}

impl Service {
    /// The wire protocol the service speaks (and renders errors in).
    pub fn protocol(&self) -> Protocol {
        match self {
            Service::Kinesis(_)
            | Service::Firehose(_)
            | Service::Glue
            | Service::Athena
            | Service::Ssm
            | Service::Logs
            | Service::UnknownJson => Protocol::AwsJson,
            Service::Lambda | Service::ApiGateway | Service::ApiGatewayInvoke => Protocol::RestJson,
            Service::S3Control | Service::S3 => Protocol::RestXml,
            Service::Iam | Service::Sts | Service::CloudFormation => Protocol::Query,
        }
    }

    /// A human name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Service::Kinesis(_) => "Kinesis",
            Service::Firehose(_) => "Firehose",
            Service::Glue => "Glue",
            Service::Athena => "Athena",
            Service::Ssm => "SSM",
            Service::Logs => "CloudWatch Logs",
            Service::UnknownJson => "This service",
            Service::Lambda => "Lambda",
            Service::S3Control => "S3 Control",
            Service::ApiGateway | Service::ApiGatewayInvoke => "API Gateway",
            Service::Iam => "IAM",
            Service::Sts => "STS",
            Service::CloudFormation => "CloudFormation",
            Service::S3 => "S3",
        }
    }
}

/// The API id of a host-style invoke request: `{apiId}.execute-api.<anything>[:port]`
/// (`a1b2c3d4e5.execute-api.localhost:4566`, or AWS's own
/// `….execute-api.us-east-1.amazonaws.com` behind a resolver override).
pub fn execute_api_host(parts: &http::request::Parts) -> Option<&str> {
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.host())?;
    let mut labels = host.split('.');
    let id = labels.next()?;
    (labels.next() == Some("execute-api")
        && !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
    .then_some(id)
}

/// Where an invoke request goes: which API, which stage, which path (as sent, starting with `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeTarget {
    /// The API id.
    pub api_id: String,
    /// The stage name.
    pub stage: String,
    /// The path after the stage.
    pub path: String,
}

/// The target of an invoke request, host style (`{id}.execute-api.localhost/{stage}/{path}`)
/// or path style (`/restapis/{id}/{stage}/_user_request_/{path}`).
pub fn invoke_target(parts: &http::request::Parts) -> Option<InvokeTarget> {
    let path = parts.uri.path();
    if let Some(id) = execute_api_host(parts) {
        let rest = path.strip_prefix('/')?;
        let (stage, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if stage.is_empty() {
            return None;
        }
        return Some(InvokeTarget {
            api_id: id.to_owned(),
            stage: stage.to_owned(),
            path: format!("/{tail}"),
        });
    }
    let rest = path.strip_prefix("/restapis/")?;
    let (head, tail) = rest.split_once("/_user_request_")?;
    let (id, stage) = head.split_once('/')?;
    if id.is_empty() || stage.is_empty() || stage.contains('/') {
        return None;
    }
    let tail = if tail.is_empty() { "/" } else { tail };
    Some(InvokeTarget {
        api_id: id.to_owned(),
        stage: stage.to_owned(),
        path: tail.to_owned(),
    })
}

/// Decides the service of a request.
pub fn route(parts: &http::request::Parts) -> Service {
    // A deployed API's host name wins over everything: its traffic is the API owner's,
    // whatever headers it carries.
    if execute_api_host(parts).is_some() {
        return Service::ApiGatewayInvoke;
    }
    if let Some(target) = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let prefix = target.split('.').next().unwrap_or_default();
        return match prefix {
            "Kinesis_20131202" => {
                Service::Kinesis(target.split_once('.').map(|(_, op)| op.to_owned()).unwrap_or_default())
            }
            "Firehose_20150804" => {
                Service::Firehose(target.split_once('.').map(|(_, op)| op.to_owned()).unwrap_or_default())
            }
            "AWSGlue" => Service::Glue,
            "AmazonAthena" => Service::Athena,
            "AmazonSSM" => Service::Ssm,
            "Logs_20140328" => Service::Logs,
            _ => Service::UnknownJson,
        };
    }
    let path = parts.uri.path();
    if LAMBDA_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return Service::Lambda;
    }
    if path.starts_with("/v20180820/") {
        return Service::S3Control;
    }
    if path == "/restapis" || path.starts_with("/restapis/") {
        return if path.contains("/_user_request_/") {
            Service::ApiGatewayInvoke
        } else {
            Service::ApiGateway
        };
    }
    let scope_service = crate::sigv4::credential_of(parts).ok().map(|c| c.service);
    let form = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    match scope_service.as_deref() {
        Some("iam") if form || parts.uri.query().is_some_and(|q| q.contains("Action=")) => Service::Iam,
        Some("sts") if form || parts.uri.query().is_some_and(|q| q.contains("Action=")) => Service::Sts,
        Some("iam") => Service::Iam,
        Some("cloudformation") => Service::CloudFormation,
        Some("kinesis") => Service::Kinesis(String::new()),
        Some("firehose") => Service::Firehose(String::new()),
        Some("glue") => Service::Glue,
        Some("athena") => Service::Athena,
        Some("ssm") => Service::Ssm,
        Some("logs") => Service::Logs,
        Some("lambda") => Service::Lambda,
        Some("apigateway") => Service::ApiGateway,
        Some("execute-api") => Service::ApiGatewayInvoke,
        _ => Service::S3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    #[test]
    fn routes_by_target_path_and_scope() {
        assert_eq!(
            route(&parts("POST", "/", &[("x-amz-target", "Kinesis_20131202.PutRecord")])),
            Service::Kinesis("PutRecord".into())
        );
        assert_eq!(
            route(&parts("POST", "/", &[("x-amz-target", "Firehose_20150804.PutRecord")])),
            Service::Firehose("PutRecord".into())
        );
        assert_eq!(
            route(&parts(
                "POST",
                "/",
                &[("x-amz-target", "AmazonAthena.StartQueryExecution")]
            )),
            Service::Athena
        );
        assert_eq!(
            route(&parts("POST", "/", &[("x-amz-target", "AmazonSSM.GetParameter")])),
            Service::Ssm
        );
        assert_eq!(
            route(&parts(
                "POST",
                "/",
                &[("x-amz-target", "Logs_20140328.FilterLogEvents")]
            )),
            Service::Logs
        );
        assert_eq!(route(&parts("GET", "/2015-03-31/functions/", &[])), Service::Lambda);
        assert_eq!(route(&parts("GET", "/v20180820/jobs", &[])), Service::S3Control);
        assert_eq!(route(&parts("GET", "/restapis", &[])), Service::ApiGateway);
        assert_eq!(
            route(&parts("GET", "/restapis/abc/prod/_user_request_/x", &[])),
            Service::ApiGatewayInvoke
        );
        let iam_auth =
            "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00";
        assert_eq!(
            route(&parts(
                "POST",
                "/",
                &[
                    ("authorization", iam_auth),
                    ("content-type", "application/x-www-form-urlencoded")
                ]
            )),
            Service::Iam
        );
        let cfn_auth = "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/cloudformation/aws4_request, SignedHeaders=host, Signature=00";
        assert_eq!(
            route(&parts(
                "POST",
                "/",
                &[
                    ("authorization", cfn_auth),
                    ("content-type", "application/x-www-form-urlencoded")
                ]
            )),
            Service::CloudFormation
        );
        assert_eq!(route(&parts("GET", "/bucket/key", &[])), Service::S3);
    }

    #[test]
    fn invoke_targets_host_and_path_style() {
        let host = parts(
            "GET",
            "/prod/items/42?x=1",
            &[("host", "a1b2c3d4e5.execute-api.localhost:4566")],
        );
        assert_eq!(route(&host), Service::ApiGatewayInvoke);
        assert_eq!(
            invoke_target(&host),
            Some(InvokeTarget {
                api_id: "a1b2c3d4e5".into(),
                stage: "prod".into(),
                path: "/items/42".into()
            })
        );
        let root = parts("GET", "/prod", &[("host", "a1b2c3d4e5.execute-api.localhost")]);
        assert_eq!(invoke_target(&root).map(|t| t.path), Some("/".to_owned()));
        let path = parts("POST", "/restapis/a1b2c3d4e5/prod/_user_request_/items", &[]);
        assert_eq!(
            invoke_target(&path),
            Some(InvokeTarget {
                api_id: "a1b2c3d4e5".into(),
                stage: "prod".into(),
                path: "/items".into()
            })
        );
        let root = parts("GET", "/restapis/a1b2c3d4e5/prod/_user_request_/", &[]);
        assert_eq!(invoke_target(&root).map(|t| t.path), Some("/".to_owned()));
        // Not invoke hosts.
        assert_eq!(
            route(&parts("GET", "/b/k", &[("host", "bucket.localhost")])),
            Service::S3
        );
        assert_eq!(
            route(&parts("GET", "/x", &[("host", "Bad.execute-api.localhost")])),
            Service::S3
        );
    }
}
