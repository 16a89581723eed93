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
    /// S3.
    S3,
}

impl Service {
    /// The wire protocol the service speaks (and renders errors in).
    pub fn protocol(&self) -> Protocol {
        match self {
            Service::Kinesis(_) | Service::Firehose(_) | Service::Glue | Service::Athena | Service::UnknownJson => {
                Protocol::AwsJson
            }
            Service::Lambda | Service::ApiGateway | Service::ApiGatewayInvoke => Protocol::RestJson,
            Service::S3Control | Service::S3 => Protocol::RestXml,
            Service::Iam | Service::Sts => Protocol::Query,
        }
    }

    /// A human name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Service::Kinesis(_) => "Kinesis",
            Service::Firehose(_) => "Firehose",
            Service::Glue => "Glue",
            Service::Athena => "Athena",
            Service::UnknownJson => "This service",
            Service::Lambda => "Lambda",
            Service::S3Control => "S3 Control",
            Service::ApiGateway | Service::ApiGatewayInvoke => "API Gateway",
            Service::Iam => "IAM",
            Service::Sts => "STS",
            Service::S3 => "S3",
        }
    }
}

/// Decides the service of a request.
pub fn route(parts: &http::request::Parts) -> Service {
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
        Some("kinesis") => Service::Kinesis(String::new()),
        Some("firehose") => Service::Firehose(String::new()),
        Some("glue") => Service::Glue,
        Some("athena") => Service::Athena,
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
        assert_eq!(route(&parts("GET", "/bucket/key", &[])), Service::S3);
    }
}
