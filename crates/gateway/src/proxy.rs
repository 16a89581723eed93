//! The Lambda proxy contract (payload format 1.0): the event a function receives (reference
//! §6.3) and how its answer becomes the HTTP response (§6.4).

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{Map, Value, json};

/// The caller's identity when the request was SigV4-signed (AWS_IAM methods).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The access key id that signed.
    pub access_key: String,
    /// The caller's account.
    pub account_id: String,
    /// The principal id (`AIDA…`, or `AROA…:session`).
    pub caller: String,
    /// `user` (same as the principal id).
    pub user: String,
    /// The principal's ARN.
    pub user_arn: String,
}

/// Everything the event is built from.
#[derive(Debug, Clone)]
pub struct EventInput<'a> {
    /// The resource path template (`/items/{id}`).
    pub resource: &'a str,
    /// The resource id.
    pub resource_id: &'a str,
    /// The request path without the stage, as sent.
    pub path: &'a str,
    /// The HTTP method.
    pub http_method: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The raw query string.
    pub query: Option<&'a str>,
    /// Path parameters bound by routing.
    pub path_params: &'a [(String, String)],
    /// The stage's variables.
    pub stage_variables: &'a BTreeMap<String, String>,
    /// The API owner's account.
    pub account_id: &'a str,
    /// The API id.
    pub api_id: &'a str,
    /// The stage name.
    pub stage: &'a str,
    /// The deployment serving the stage.
    pub deployment_id: &'a str,
    /// `HTTP/1.1`.
    pub protocol: &'a str,
    /// The request id (a UUID).
    pub request_id: &'a str,
    /// The `x-amz-apigw-id`.
    pub extended_request_id: &'a str,
    /// Request time, epoch milliseconds.
    pub time_ms: i64,
    /// The host the caller used.
    pub domain_name: &'a str,
    /// The caller's IP address.
    pub source_ip: &'a str,
    /// Set when the request was signed.
    pub caller: Option<&'a Caller>,
    /// The body.
    pub body: &'a [u8],
    /// Whether the body goes base64-encoded (binary media type or not UTF-8).
    pub body_is_binary: bool,
}

/// `Title-Case` of a lowercase header name (`content-type` → `Content-Type`), as most
/// clients send them (HTTP/1.1 servers see names lowercased).
pub fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        if upper {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        upper = c == '-';
    }
    out
}

/// The query string as `(decoded name, decoded value)` pairs, in order.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// `dd/Mon/yyyy:HH:mm:ss +0000`.
pub fn request_time(ms: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s) = kd_storage::civil::from_epoch_secs(ms.div_euclid(1000));
    let month = MONTHS
        .get(usize::try_from(mo - 1).unwrap_or(0))
        .copied()
        .unwrap_or("Jan");
    format!("{d:02}/{month}/{y:04}:{h:02}:{mi:02}:{s:02} +0000")
}

fn single_and_multi(pairs: impl Iterator<Item = (String, String)>) -> (Value, Value) {
    let mut single = Map::new();
    let mut multi: Map<String, Value> = Map::new();
    for (k, v) in pairs {
        single.insert(k.clone(), Value::String(v.clone()));
        match multi.get_mut(&k) {
            Some(Value::Array(a)) => a.push(Value::String(v)),
            _ => {
                multi.insert(k, Value::Array(vec![Value::String(v)]));
            }
        }
    }
    if single.is_empty() {
        (Value::Null, Value::Null)
    } else {
        (Value::Object(single), Value::Object(multi))
    }
}

/// The proxy event (payload format 1.0).
pub fn build_event(i: &EventInput<'_>) -> Value {
    let header_pairs = i.headers.iter().map(|(k, v)| {
        (
            title_case(k.as_str()),
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        )
    });
    let (headers, multi_headers) = single_and_multi(header_pairs);
    let (query, multi_query) = single_and_multi(query_pairs(i.query.unwrap_or_default()).into_iter());
    let path_params = if i.path_params.is_empty() {
        Value::Null
    } else {
        Value::Object(
            i.path_params
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    };
    let stage_variables = if i.stage_variables.is_empty() {
        Value::Null
    } else {
        Value::Object(
            i.stage_variables
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    };
    let user_agent = i
        .headers
        .get(http::header::USER_AGENT)
        .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .unwrap_or(Value::Null);
    let opt = |s: Option<&str>| s.map(|s| Value::String(s.to_owned())).unwrap_or(Value::Null);
    let identity = json!({
        "cognitoIdentityPoolId": null,
        "accountId": opt(i.caller.map(|c| c.account_id.as_str())),
        "cognitoIdentityId": null,
        "caller": opt(i.caller.map(|c| c.caller.as_str())),
        "sourceIp": i.source_ip,
        "principalOrgId": null,
        "accessKey": opt(i.caller.map(|c| c.access_key.as_str())),
        "cognitoAuthenticationType": null,
        "cognitoAuthenticationProvider": null,
        "userArn": opt(i.caller.map(|c| c.user_arn.as_str())),
        "userAgent": user_agent,
        "user": opt(i.caller.map(|c| c.user.as_str())),
        "apiKey": null,
        "apiKeyId": null,
        "clientCert": null,
    });
    let domain_prefix = i.domain_name.split('.').next().unwrap_or_default();
    let (body, b64) = if i.body.is_empty() {
        (Value::Null, false)
    } else if i.body_is_binary {
        (
            Value::String(base64::engine::general_purpose::STANDARD.encode(i.body)),
            true,
        )
    } else {
        (Value::String(String::from_utf8_lossy(i.body).into_owned()), false)
    };
    let stage_path = if i.path == "/" {
        format!("/{}/", i.stage)
    } else {
        format!("/{}{}", i.stage, i.path)
    };
    json!({
        "resource": i.resource,
        "path": i.path,
        "httpMethod": i.http_method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_params,
        "stageVariables": stage_variables,
        "requestContext": {
            "resourceId": i.resource_id,
            "resourcePath": i.resource,
            "httpMethod": i.http_method,
            "extendedRequestId": i.extended_request_id,
            "requestTime": request_time(i.time_ms),
            "path": stage_path,
            "accountId": i.account_id,
            "protocol": i.protocol,
            "stage": i.stage,
            "domainPrefix": domain_prefix,
            "requestTimeEpoch": i.time_ms,
            "requestId": i.request_id,
            "identity": identity,
            "domainName": i.domain_name,
            "deploymentId": i.deployment_id,
            "apiId": i.api_id,
        },
        "body": body,
        "isBase64Encoded": b64,
    })
}

/// Why a function's answer is not a valid proxy response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Execution failed due to configuration error: Malformed Lambda proxy response: {0}")]
pub struct Malformed(pub String);

fn header_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The HTTP response of a function's answer (§6.4): `statusCode` required, `body` a string
/// (or absent/null), `headers` and `multiValueHeaders` merged (multi-value wins for a name in
/// both), `isBase64Encoded` decodes the body. `Content-Type` defaults to `application/json`.
pub fn map_response(payload: &[u8]) -> Result<http::Response<Bytes>, Malformed> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| Malformed(format!("not JSON: {e}")))?;
    let Value::Object(o) = v else {
        return Err(Malformed("the response is not a JSON object".into()));
    };
    let status = match o.get("statusCode") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
    .and_then(|n| u16::try_from(n).ok())
    .and_then(|n| StatusCode::from_u16(n).ok())
    .ok_or_else(|| Malformed("statusCode is missing or not an HTTP status".into()))?;
    let b64 = match o.get("isBase64Encoded") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
        Some(_) => return Err(Malformed("isBase64Encoded is not a boolean".into())),
    };
    let body = match o.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) if b64 => base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map(Bytes::from)
            .map_err(|_| Malformed("body is not valid base64".into()))?,
        Some(Value::String(s)) => Bytes::from(s.clone()),
        Some(_) => return Err(Malformed("body is not a string".into())),
    };
    let mut headers = HeaderMap::new();
    match o.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (k, v) in h {
                let Some(v) = header_value(v) else {
                    if v.is_null() {
                        continue;
                    }
                    return Err(Malformed(format!("header {k} is not a string")));
                };
                let (Ok(name), Ok(value)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) else {
                    return Err(Malformed(format!("header {k} is not a valid HTTP header")));
                };
                headers.insert(name, value);
            }
        }
        Some(_) => return Err(Malformed("headers is not an object".into())),
    }
    match o.get("multiValueHeaders") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (k, vs) in h {
                let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else {
                    return Err(Malformed(format!("header {k} is not a valid HTTP header")));
                };
                let values = match vs {
                    Value::Array(a) => a.clone(),
                    Value::Null => continue,
                    other => vec![other.clone()],
                };
                headers.remove(&name);
                for v in &values {
                    let value = header_value(v)
                        .and_then(|s| HeaderValue::from_str(&s).ok())
                        .ok_or_else(|| Malformed(format!("header {k} has a value that is not a string")))?;
                    headers.append(name.clone(), value);
                }
            }
        }
        Some(_) => return Err(Malformed("multiValueHeaders is not an object".into())),
    }
    if !headers.contains_key(http::header::CONTENT_TYPE) {
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let mut r = http::Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    Ok(r)
}

/// A gateway response: `{"message": "<message>"}` with `x-amzn-ErrorType`.
pub fn gateway_response(status: u16, error_type: &str, message: &str) -> http::Response<Bytes> {
    let mut r = http::Response::new(Bytes::from(json!({ "message": message }).to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(error_type) {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(
        headers: &'a HeaderMap,
        vars: &'a BTreeMap<String, String>,
        params: &'a [(String, String)],
    ) -> EventInput<'a> {
        EventInput {
            resource: "/items/{id}",
            resource_id: "abcdef1234",
            path: "/items/42",
            http_method: "GET",
            headers,
            query: Some("q=x&q=y%20z&flag"),
            path_params: params,
            stage_variables: vars,
            account_id: "000000000000",
            api_id: "a1b2c3d4e5",
            stage: "prod",
            deployment_id: "d1e2f3g4h5",
            protocol: "HTTP/1.1",
            request_id: "rid",
            extended_request_id: "Ab1CdEfGhIjKlMn=",
            time_ms: 1_428_582_896_000,
            domain_name: "a1b2c3d4e5.execute-api.localhost:4566",
            source_ip: "127.0.0.1",
            caller: None,
            body: b"",
            body_is_binary: false,
        }
    }

    #[test]
    fn event_has_aws_shape() {
        let mut h = HeaderMap::new();
        h.insert("accept", HeaderValue::from_static("*/*"));
        h.append("x-multi", HeaderValue::from_static("1"));
        h.append("x-multi", HeaderValue::from_static("2"));
        h.insert("user-agent", HeaderValue::from_static("curl/8"));
        let vars = BTreeMap::new();
        let params = vec![("id".to_owned(), "42".to_owned())];
        let e = build_event(&input(&h, &vars, &params));
        assert_eq!(e["resource"], "/items/{id}");
        assert_eq!(e["path"], "/items/42");
        assert_eq!(e["httpMethod"], "GET");
        assert_eq!(e["headers"]["Accept"], "*/*");
        assert_eq!(e["headers"]["X-Multi"], "2");
        assert_eq!(e["multiValueHeaders"]["X-Multi"], json!(["1", "2"]));
        assert_eq!(e["queryStringParameters"], json!({"q": "y z", "flag": ""}));
        assert_eq!(e["multiValueQueryStringParameters"]["q"], json!(["x", "y z"]));
        assert_eq!(e["pathParameters"], json!({"id": "42"}));
        assert_eq!(e["stageVariables"], Value::Null);
        assert_eq!(e["body"], Value::Null);
        assert_eq!(e["isBase64Encoded"], false);
        let c = &e["requestContext"];
        assert_eq!(c["path"], "/prod/items/42");
        assert_eq!(c["stage"], "prod");
        assert_eq!(c["httpMethod"], "GET");
        assert_eq!(c["requestTime"], "09/Apr/2015:12:34:56 +0000");
        assert_eq!(c["requestTimeEpoch"], 1_428_582_896_000_i64);
        assert_eq!(c["domainPrefix"], "a1b2c3d4e5");
        assert_eq!(c["identity"]["sourceIp"], "127.0.0.1");
        assert_eq!(c["identity"]["userAgent"], "curl/8");
        assert_eq!(c["identity"]["user"], Value::Null);
        assert_eq!(c["identity"]["accessKey"], Value::Null);
    }

    #[test]
    fn binary_bodies_are_base64_and_absent_maps_null() {
        let h = HeaderMap::new();
        let vars: BTreeMap<String, String> = [("fn".to_owned(), "items".to_owned())].into();
        let mut i = input(&h, &vars, &[]);
        i.query = None;
        i.body = &[0xff, 0x00, 0x01];
        i.body_is_binary = true;
        let e = build_event(&i);
        assert_eq!(e["body"], "/wAB");
        assert_eq!(e["isBase64Encoded"], true);
        assert_eq!(e["headers"], Value::Null);
        assert_eq!(e["queryStringParameters"], Value::Null);
        assert_eq!(e["multiValueQueryStringParameters"], Value::Null);
        assert_eq!(e["pathParameters"], Value::Null);
        assert_eq!(e["stageVariables"], json!({"fn": "items"}));
    }

    #[test]
    fn response_headers_merge_and_base64_decodes() {
        let r = map_response(
            br#"{"statusCode":201,"headers":{"X-A":"1","Set-Cookie":"z=0"},"multiValueHeaders":{"Set-Cookie":["a=1","b=2"]},"body":"aGk=","isBase64Encoded":true}"#,
        )
        .expect("valid");
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["x-a"], "1");
        let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies, vec!["a=1", "b=2"]);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.body().as_ref(), b"hi");
        let r = map_response(br#"{"statusCode":204}"#).expect("valid");
        assert_eq!(r.status(), 204);
        assert!(r.body().is_empty());
    }

    #[test]
    fn malformed_responses_are_rejected() {
        for bad in [
            &b"not json"[..],
            b"[]",
            b"{}",
            br#"{"statusCode":"abc"}"#,
            br#"{"statusCode":99999}"#,
            br#"{"statusCode":200,"body":{"a":1}}"#,
            br#"{"statusCode":200,"headers":[]}"#,
            br#"{"statusCode":200,"body":"!!","isBase64Encoded":true}"#,
            br#"{"statusCode":200,"headers":{"bad name":"x"}}"#,
        ] {
            assert!(map_response(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(title_case("content-type"), "Content-Type");
        assert_eq!(title_case("x-amz-date"), "X-Amz-Date");
        assert_eq!(request_time(0), "01/Jan/1970:00:00:00 +0000");
        let g = gateway_response(
            403,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        );
        assert_eq!(g.status(), 403);
        assert_eq!(g.body().as_ref(), br#"{"message":"Missing Authentication Token"}"#);
    }
}
