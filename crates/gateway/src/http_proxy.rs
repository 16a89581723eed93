//! The `HTTP_PROXY` contract: how a client's request becomes the request sent to the
//! integration's backend, and how the backend's answer becomes the client's response. The
//! exchange itself goes through the [`HttpForwarder`](crate::ports::HttpForwarder) port.
//!
//! The request: the integration `uri` after `${stageVariables.x}` substitution and `{name}`
//! path-variable substitution (from the integration's `integration.request.path.name`
//! parameter, else from the method's path parameter of the same name; the greedy `{proxy+}`
//! value keeps its `/`), the client's query string (plus mapped
//! `integration.request.querystring.*` parameters), the integration's `httpMethod` (`ANY` =
//! the client's method), the client's headers without hop-by-hop ones and `Host` (`Host` is
//! the backend's authority), with `X-Forwarded-For` (the client's address appended),
//! `X-Forwarded-Proto`, `X-Amzn-Trace-Id` (when the client sent none) and mapped
//! `integration.request.header.*` parameters, and the body as is. The answer is relayed
//! unchanged except for hop-by-hop headers.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::engine::{InvokeRequest, Route, substitute_stage_variables};
use crate::model::Integration;
use crate::proxy::query_pairs;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus those the
/// forwarder recomputes (`Host`, `Content-Length`) or cannot honour (`Expect`).
const HOP_BY_HOP: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "expect",
];

/// What a path segment must escape (RFC 3986 `pchar`): controls, space and
/// `"#%<>?[\]^`{|}`, and `/` unless the value is a greedy path (several segments).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b'/');
const GREEDY: &AsciiSet = &SEGMENT.remove(b'/');
/// Query names and values: everything but unreserved characters.
const QUERY: &AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Everything a backend request is built from.
pub struct ProxyRequest<'a> {
    /// The matched route (path parameters, stage variables, ids).
    pub route: &'a Route,
    /// The matched resource's path template (`/items/{proxy+}`).
    pub resource_path: &'a str,
    /// The method's integration.
    pub integration: &'a Integration,
    /// The client's request.
    pub req: &'a InvokeRequest,
    /// `X-Amzn-Trace-Id` to send when the client sent none.
    pub trace_id: &'a str,
}

/// `Root=1-<epoch seconds, 8 hex>-<24 hex>`, the X-Ray trace id format.
pub fn new_trace_id(now_ms: i64) -> String {
    let secs = u32::try_from(now_ms.div_euclid(1000)).unwrap_or_default();
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("Root=1-{secs:08x}-{}", &random[..24])
}

/// The value a `requestParameters` source expression names: `method.request.path.x`,
/// `method.request.querystring.x`, `method.request.header.x`, `stageVariables.x`, a few
/// `context.*` variables, or a static `'value'`.
fn source_value(p: &ProxyRequest<'_>, source: &str) -> Option<String> {
    if let Some(v) = source.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return Some(v.to_owned());
    }
    if let Some(name) = source.strip_prefix("method.request.path.") {
        return p.route.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    }
    if let Some(name) = source.strip_prefix("method.request.querystring.") {
        return query_pairs(p.req.query.as_deref().unwrap_or_default())
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v);
    }
    if let Some(name) = source.strip_prefix("method.request.header.") {
        return p.req.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    }
    if let Some(name) = source.strip_prefix("stageVariables.") {
        return p.route.variables.get(name).cloned();
    }
    let r = p.route;
    match source {
        "context.requestId" => Some(p.req.request_id.clone()),
        "context.extendedRequestId" => Some(p.req.extended_request_id.clone()),
        "context.apiId" => Some(r.api_id.clone()),
        "context.stage" => Some(r.stage.clone()),
        "context.httpMethod" => Some(p.req.method.clone()),
        "context.resourceId" => Some(r.resource_id.clone()),
        "context.resourcePath" => Some(p.resource_path.to_owned()),
        "context.accountId" => Some(r.account.clone()),
        "context.identity.sourceIp" => Some(p.req.source_ip.clone()),
        "context.domainName" => Some(p.req.domain_name.clone()),
        _ => None,
    }
}

/// The integration URI with stage variables and `{name}` path variables substituted.
pub fn expand_uri(p: &ProxyRequest<'_>) -> String {
    let uri = substitute_stage_variables(p.integration.uri.as_deref().unwrap_or_default(), &p.route.variables);
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri.as_str();
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find('}') else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let name = &after[..j];
        let greedy = p.resource_path.contains(&format!("{{{name}+}}"));
        let value = p
            .integration
            .request_parameters
            .get(&format!("integration.request.path.{name}"))
            .and_then(|src| source_value(p, src))
            .or_else(|| p.route.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()));
        match value {
            Some(v) => out.extend(utf8_percent_encode(&v, if greedy { GREEDY } else { SEGMENT })),
            None => tracing::debug!(variable = name, "HTTP_PROXY URI variable has no value"),
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    out
}

fn is_hop_by_hop(name: &HeaderName, connection_listed: &[String]) -> bool {
    let n = name.as_str();
    HOP_BY_HOP.contains(&n) || connection_listed.iter().any(|c| c == n)
}

/// The header names a `Connection` header lists (they are hop-by-hop too).
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The request to send to the backend. `Err` names why the URI is unusable.
pub fn build_request(p: &ProxyRequest<'_>) -> Result<http::Request<Bytes>, String> {
    let expanded = expand_uri(p);
    let mut query: Vec<String> = Vec::new();
    let (base, uri_query) = match expanded.split_once('?') {
        Some((b, q)) => (b.to_owned(), Some(q.to_owned())),
        None => (expanded.clone(), None),
    };
    query.extend(uri_query.filter(|q| !q.is_empty()));
    query.extend(p.req.query.clone().filter(|q| !q.is_empty()));
    for (k, src) in &p.integration.request_parameters {
        if let Some(name) = k.strip_prefix("integration.request.querystring.")
            && let Some(v) = source_value(p, src)
        {
            query.push(format!(
                "{}={}",
                utf8_percent_encode(name, QUERY),
                utf8_percent_encode(&v, QUERY)
            ));
        }
    }
    let full = if query.is_empty() {
        base
    } else {
        format!("{base}?{}", query.join("&"))
    };
    let uri: http::Uri = full
        .parse()
        .map_err(|e| format!("invalid endpoint address {full}: {e}"))?;
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .ok_or_else(|| format!("invalid endpoint address {full}: no host"))?;
    let method = match p.integration.http_method.as_deref() {
        None | Some("ANY") => p.req.method.as_str(),
        Some(m) => m,
    };
    let method = http::Method::from_bytes(method.as_bytes()).map_err(|e| format!("invalid method {method}: {e}"))?;

    let listed = connection_listed(&p.req.headers);
    let mut headers = HeaderMap::with_capacity(p.req.headers.len() + 4);
    for (k, v) in &p.req.headers {
        if !is_hop_by_hop(k, &listed) && k != "content-length" {
            headers.append(k.clone(), v.clone());
        }
    }
    let host = HeaderValue::from_str(&authority).map_err(|e| format!("invalid endpoint host {authority}: {e}"))?;
    headers.insert(http::header::HOST, host);
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {}", p.req.source_ip),
        _ => p.req.source_ip.clone(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if !headers.contains_key("x-amzn-trace-id")
        && let Ok(v) = HeaderValue::from_str(p.trace_id)
    {
        headers.insert("x-amzn-trace-id", v);
    }
    for (k, src) in &p.integration.request_parameters {
        if let Some(name) = k.strip_prefix("integration.request.header.")
            && let Some(v) = source_value(p, src)
            && let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&v))
        {
            headers.insert(n, v);
        }
    }
    if !p.req.body.is_empty() || matches!(method, http::Method::POST | http::Method::PUT | http::Method::PATCH) {
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(p.req.body.len()));
    }

    let mut out = http::Request::new(p.req.body.clone());
    *out.method_mut() = method;
    *out.uri_mut() = uri;
    *out.headers_mut() = headers;
    Ok(out)
}

/// The backend's answer as the client's response: status, headers and body unchanged but for
/// hop-by-hop headers (and `Content-Length`, which the server recomputes, except on `HEAD`).
pub fn map_response(resp: http::Response<Bytes>, client_method: &str) -> http::Response<Bytes> {
    let (mut parts, body) = resp.into_parts();
    let listed = connection_listed(&parts.headers);
    let keep_length = client_method == "HEAD";
    let names: Vec<HeaderName> = parts.headers.keys().cloned().collect();
    for n in names {
        if is_hop_by_hop(&n, &listed) || (n == http::header::CONTENT_LENGTH && !keep_length) {
            parts.headers.remove(&n);
        }
    }
    http::Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_have_the_x_ray_shape() {
        let t = new_trace_id(0x5f00_0000 * 1000);
        assert!(t.starts_with("Root=1-5f000000-"), "{t}");
        assert_eq!(t.len(), "Root=1-".len() + 8 + 1 + 24);
    }

    #[test]
    fn answers_lose_hop_by_hop_headers_and_keep_head_lengths() {
        let answer = || {
            let mut r = http::Response::new(Bytes::new());
            let h = r.headers_mut();
            h.insert("content-length", HeaderValue::from_static("42"));
            h.insert("connection", HeaderValue::from_static("close, x-conn"));
            h.insert("x-conn", HeaderValue::from_static("1"));
            h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
            h.append("set-cookie", HeaderValue::from_static("a=1"));
            h.append("set-cookie", HeaderValue::from_static("b=2"));
            r
        };
        let r = map_response(answer(), "GET");
        assert_eq!(
            r.headers().keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["set-cookie"]
        );
        assert_eq!(r.headers().get_all("set-cookie").iter().count(), 2);
        let r = map_response(answer(), "HEAD");
        assert_eq!(r.headers()["content-length"], "42");
    }
}
