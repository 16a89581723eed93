//! Protocol plumbing shared by every service adapter: the request context an adapter receives
//! from the edge, the awsJson1.1 codec (JSON and its CBOR variant) and the error envelopes of
//! each AWS protocol. It sits between the `edge` (which authenticates and dispatches) and the
//! `api-*` crates (which translate a wire request into one engine call); it knows nothing of
//! any service's semantics.

pub mod cbor;
pub mod json;
pub mod validate;

/// What the edge learned about a request before handing it to an adapter.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request id echoed in `x-amzn-RequestId` and logs.
    pub request_id: String,
    /// The 12-digit account the caller acts in.
    pub account_id: String,
    /// The region from the SigV4 credential scope (or the default region).
    pub region: String,
    /// May the caller perform an action on a resource? Adapters ask before every engine call.
    pub authz: std::sync::Arc<dyn Authorize>,
}

impl RequestContext {
    /// Authorises `<service>:<operation>` on the resource `resource` names (built only when
    /// policies apply); a denial is the awsJson services' `AccessDeniedException` with AWS's
    /// message.
    pub fn allow(&self, service: &str, operation: &str, resource: impl FnOnce() -> String) -> Result<(), ServiceError> {
        if !self.authz.enforced() {
            return Ok(());
        }
        self.authz
            .authorize(&format!("{service}:{operation}"), &resource())
            .map_err(|m| ServiceError::client("AccessDeniedException", m))
    }
}

/// The authorisation decision for one caller, as adapters see it: the edge builds one per
/// request over the caller's identity policies (or [`AllowAll`] for root keys and
/// `--iam off`).
pub trait Authorize: Send + Sync + std::fmt::Debug {
    /// False when everything is allowed: adapters may then skip building resource ARNs.
    fn enforced(&self) -> bool;
    /// `Ok` when allowed; otherwise AWS's AccessDenied message naming the principal, the
    /// action and the resource.
    fn authorize(&self, action: &str, resource: &str) -> Result<(), String>;
}

/// Allows everything (root keys, authorisation switched off, tests of adapters).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authorize for AllowAll {
    fn enforced(&self) -> bool {
        false
    }

    fn authorize(&self, _action: &str, _resource: &str) -> Result<(), String> {
        Ok(())
    }
}

/// The wire protocols AWS services speak; each renders errors its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `POST /` with `X-Amz-Target`, JSON (or CBOR) bodies: Kinesis, Firehose, Glue, Athena.
    AwsJson,
    /// REST paths with JSON bodies: Lambda, API Gateway.
    RestJson,
    /// REST paths with XML bodies: S3, S3 Control.
    RestXml,
    /// Form-encoded `Action=` with XML replies: IAM, STS.
    Query,
}

/// An error ready to be rendered in any protocol's envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// The AWS error code (`ResourceNotFoundException`, `NoSuchBucket`, …).
    pub code: String,
    /// The human-readable message.
    pub message: String,
    /// The HTTP status.
    pub status: http::StatusCode,
}

impl ServiceError {
    /// A client fault (400) with this code and message.
    pub fn client(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            status: http::StatusCode::BAD_REQUEST,
        }
    }

    /// An error with an explicit status.
    pub fn with_status(status: http::StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            status,
        }
    }
}

/// Renders `err` in `protocol`'s error envelope.
pub fn render_error(protocol: Protocol, err: &ServiceError, request_id: &str) -> http::Response<bytes::Bytes> {
    match protocol {
        Protocol::AwsJson => json::error_response(json::Encoding::Json, err, request_id),
        Protocol::RestJson => {
            let body = serde_json::json!({ "message": err.message, "Message": err.message, "Type": "User" });
            let mut resp = http::Response::new(bytes::Bytes::from(body.to_string()));
            *resp.status_mut() = err.status;
            let h = resp.headers_mut();
            h.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            insert(h, "x-amzn-errortype", &err.code);
            insert(h, "x-amzn-requestid", request_id);
            resp
        }
        Protocol::RestXml => {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{}</RequestId></Error>",
                xml_escape(&err.code),
                xml_escape(&err.message),
                xml_escape(request_id)
            );
            xml_response(err.status, body, request_id)
        }
        Protocol::Query => {
            let body = format!(
                "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
                if err.status.is_server_error() {
                    "Receiver"
                } else {
                    "Sender"
                },
                xml_escape(&err.code),
                xml_escape(&err.message),
                xml_escape(request_id)
            );
            xml_response(err.status, body, request_id)
        }
    }
}

fn xml_response(status: http::StatusCode, body: String, request_id: &str) -> http::Response<bytes::Bytes> {
    let mut resp = http::Response::new(bytes::Bytes::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    insert(h, "x-amz-request-id", request_id);
    insert(h, "x-amzn-requestid", request_id);
    resp
}

/// Inserts a header whose value came from elsewhere; values that are not valid header text are skipped.
pub fn insert(headers: &mut http::HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = http::HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Escapes text for an XML element body or attribute.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_error_is_escaped() {
        let e = ServiceError::with_status(http::StatusCode::NOT_IMPLEMENTED, "NotImplemented", "a <b> & c");
        let r = render_error(Protocol::RestXml, &e, "rid");
        assert_eq!(r.status(), 501);
        let body = String::from_utf8_lossy(r.body()).into_owned();
        assert!(
            body.contains("<Code>NotImplemented</Code><Message>a &lt;b&gt; &amp; c</Message>"),
            "{body}"
        );
    }
}
