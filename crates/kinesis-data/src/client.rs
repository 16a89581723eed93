//! A thin AWS client of our own, for the commands that talk to a running server
//! (`kinesis-data batch`, `plan`, `demo`, `put`, `tail`, `ls`, `query`, `deploy`,
//! `destroy`) and for applying pipeline files: plain HTTP/1.1 over a tokio `TcpStream`
//! (`Content-Length` bodies, `Connection: close`), signed with SigV4, with bounded answers.
//! It speaks the four wire protocols the server does: awsJson (`X-Amz-Target`), restJson,
//! query (IAM/STS) and restXml (S3, S3 Control). No AWS SDK: the binary stays small and
//! fast to build.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Deadline of one HTTP exchange.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest response accepted (head and body).
pub const MAX_RESPONSE: usize = 64 << 20;
/// Deepest element nesting accepted in an XML answer.
const MAX_XML_DEPTH: usize = 64;
/// Most elements accepted in one XML answer.
const MAX_XML_ELEMENTS: usize = 500_000;

/// An element of an answer (the S3 Control adapter's bounded XML reader).
pub type Node = kd_api_s3control::xml::Element;

/// Parses a whole answer (bounded in size, depth and element count; no DTDs).
pub fn parse_xml(body: &[u8]) -> Result<Node, String> {
    kd_api_s3control::xml::parse_with(
        body,
        kd_api_s3control::xml::Limits {
            max_body: MAX_RESPONSE,
            max_depth: MAX_XML_DEPTH,
            max_elements: MAX_XML_ELEMENTS,
        },
    )
}

/// One page of ListObjectsV2: keys, and the next continuation token when truncated.
pub fn parse_list_page(body: &[u8]) -> anyhow::Result<(Vec<String>, Option<String>)> {
    let root = parse_xml(body).map_err(|e| anyhow!("unreadable ListObjectsV2 answer: {e}"))?;
    if root.name != "ListBucketResult" {
        bail!("unexpected ListObjectsV2 answer <{}>", root.name);
    }
    let keys = root
        .all("Contents")
        .filter_map(|c| c.text_of("Key"))
        .map(str::to_owned)
        .collect();
    let truncated = root.text_of("IsTruncated").map(str::trim) == Some("true");
    let next = root
        .text_of("NextContinuationToken")
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    match (truncated, next) {
        (false, _) => Ok((keys, None)),
        (true, Some(t)) => Ok((keys, Some(t))),
        (true, None) => bail!("ListObjectsV2 answered IsTruncated without a NextContinuationToken"),
    }
}

// --------------------------------------------------------------------------- errors

/// An AWS error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// AWS error code.
    pub code: String,
    /// Message.
    pub message: String,
    /// `METHOD /path`.
    pub request: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// The error of a non-2xx answer: `<Error><Code/><Message/>` (bare, as S3, or inside
    /// `<ErrorResponse>`, as S3 Control), else the status and the start of the body.
    pub fn of(status: u16, body: &[u8], request: String) -> ApiError {
        if let Some(e) = Self::of_json(status, body, &request) {
            return e;
        }
        let parsed = parse_xml(body).ok();
        let err = parsed.as_ref().and_then(|r| r.find("Error"));
        let code = err.and_then(|e| e.text_of("Code")).filter(|c| !c.is_empty());
        let message = err.and_then(|e| e.text_of("Message"));
        let fallback = || {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "(no error body)".to_owned()
            } else {
                text.chars().take(300).collect()
            }
        };
        ApiError {
            status,
            code: code.map_or_else(|| format!("HTTP{status}"), str::to_owned),
            message: match (code, message) {
                (_, Some(m)) => m.to_owned(),
                (Some(_), None) => String::new(),
                (None, None) => fallback(),
            },
            request,
        }
    }

    /// The error of a JSON answer (`__type` / `code` and `message` / `Message`).
    fn of_json(status: u16, body: &[u8], request: &str) -> Option<ApiError> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let raw = v
            .get("__type")
            .or_else(|| v.get("code"))
            .or_else(|| v.get("Code"))
            .and_then(|t| t.as_str())?;
        // `com.amazonaws.kinesis#ResourceNotFoundException` → the name after `#`.
        let code = raw.rsplit('#').next().unwrap_or(raw).split(':').next().unwrap_or(raw);
        let message = v
            .get("message")
            .or_else(|| v.get("Message"))
            .and_then(|m| m.as_str())
            .unwrap_or_default();
        Some(ApiError {
            status,
            code: code.to_owned(),
            message: message.to_owned(),
            request: request.to_owned(),
        })
    }

    /// Worth another poll: throttling and server-side failures.
    pub fn retryable(&self) -> bool {
        self.status == 429 || self.status >= 500 || self.code.contains("TooManyRequests")
    }
}

// ------------------------------------------------------------------------------ HTTP

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers (names lower-case).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a whole HTTP/1.1 answer (the connection was closed after it): `Content-Length`,
/// chunked or read-to-close bodies.
pub fn parse_response(raw: &[u8]) -> anyhow::Result<Response> {
    parse_answer(raw, false)
}

/// [`parse_response`]; an answer to HEAD (`head`) has no body whatever its headers say.
pub fn parse_answer(raw: &[u8], no_body: bool) -> anyhow::Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("the server closed the connection before a complete HTTP answer"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| anyhow!("the HTTP answer's head is not text"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("not an HTTP/1.x answer: {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    resp.body = if no_body {
        Vec::new()
    } else if resp
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        dechunk(rest)?
    } else if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().map_err(|_| anyhow!("bad Content-Length {len:?}"))?;
        rest.get(..len)
            .ok_or_else(|| anyhow!("the answer ended after {} of {len} bytes", rest.len()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(resp)
}

pub fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let p = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("truncated chunked body"))?;
        let line = std::str::from_utf8(&b[..p]).map_err(|_| anyhow!("bad chunk size line"))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| anyhow!("bad chunk size {size_text:?}"))?;
        if size == 0 {
            return Ok(out);
        }
        let data = b
            .get(p + 2..p + 2 + size)
            .ok_or_else(|| anyhow!("truncated chunked body"))?;
        out.extend_from_slice(data);
        b = b.get(p + 4 + size..).ok_or_else(|| anyhow!("truncated chunked body"))?;
    }
}

/// `uri_encode` of every name and value, sorted: both the query sent and the canonical one.
pub fn encode_query(pairs: &[(&str, &str)]) -> String {
    let mut enc: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    enc.sort();
    enc.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986 percent-encoding: everything but `A-Z a-z 0-9 - _ . ~` (and `/` when
/// `keep_slash`) as `%XX`.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A signing HTTP client of one endpoint.
pub struct Client {
    /// `http://authority`, as given (without a trailing slash).
    endpoint: String,
    /// The `Host` header.
    authority: String,
    /// `host:port` to connect to.
    connect_to: String,
    region: String,
    creds: Credentials,
}

/// The authority of an `http://host[:port][/]` endpoint and the address to connect to.
pub fn parse_endpoint(endpoint: &str) -> anyhow::Result<(String, String)> {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        if endpoint.starts_with("https://") {
            bail!("--endpoint {endpoint}: only http:// endpoints are supported");
        }
        bail!("--endpoint {endpoint:?} is not http://host[:port]");
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) || authority.chars().any(char::is_control)
    {
        bail!("--endpoint {endpoint:?} is not http://host[:port] (no path)");
    }
    let has_port = match authority.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => authority.contains(':'),
    };
    let connect_to = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((authority.to_owned(), connect_to))
}

impl Client {
    /// A client of `endpoint` (`http://host[:port]`) signing for `region`.
    pub fn new(endpoint: &str, region: &str, creds: Credentials) -> anyhow::Result<Client> {
        let (authority, connect_to) = parse_endpoint(endpoint)?;
        Ok(Client {
            endpoint: format!("http://{authority}"),
            authority,
            connect_to,
            region: region.to_owned(),
            creds,
        })
    }

    /// One signed exchange; non-2xx answers are [`ApiError`]s.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Response> {
        self.request_as("s3", method, path, query, headers, body).await
    }

    /// One exchange signed for `service` (the SigV4 scope's service name); non-2xx answers
    /// are [`ApiError`]s.
    pub async fn request_as(
        &self,
        service: &str,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Response> {
        let query = encode_query(query);
        let mut hs: Vec<(String, String)> = vec![("host".to_owned(), self.authority.clone())];
        for (k, v) in headers {
            if v.chars().any(char::is_control) {
                bail!("the {k} header value {v:?} has control characters");
            }
            hs.push((k.to_ascii_lowercase(), (*v).to_owned()));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_secs();
        // Services other than S3 sign the path encoded once more (`%3A` → `%253A`).
        let canonical_path = if service == "s3" {
            path.to_owned()
        } else {
            uri_encode(path, true)
        };
        let signed = sign(
            &self.creds,
            &self.region,
            service,
            &SignInput {
                method,
                path: &canonical_path,
                query: &query,
                headers: &hs,
                body,
            },
            i64::try_from(now).unwrap_or(i64::MAX),
        );
        hs.extend(signed);
        let target = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        };
        let mut head = format!("{method} {target} HTTP/1.1\r\n");
        for (k, v) in &hs {
            let _ = write!(head, "{k}: {v}\r\n");
        }
        let _ = write!(
            head,
            "content-length: {}\r\nconnection: close\r\nuser-agent: kinesis-data/{}\r\n\r\n",
            body.len(),
            env!("CARGO_PKG_VERSION")
        );
        let raw = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(head.as_bytes(), body))
            .await
            .map_err(|_| {
                anyhow!(
                    "{method} {path}: no answer from {} within {REQUEST_TIMEOUT:?}",
                    self.endpoint
                )
            })??;
        let resp = parse_answer(&raw, method == "HEAD").with_context(|| format!("{method} {path}"))?;
        if (200..300).contains(&resp.status) {
            Ok(resp)
        } else {
            let mut e = ApiError::of(resp.status, &resp.body, format!("{method} {path}"));
            // restJson services name the error in a header (`Code:http://…` or `Code`).
            if let Some(t) = resp.header("x-amzn-errortype") {
                let code = t.split(':').next().unwrap_or(t).trim();
                if !code.is_empty() {
                    e.code = code.to_owned();
                }
            }
            Err(e.into())
        }
    }

    /// An unsigned exchange (API Gateway invoke traffic, as curl sends it); any status is
    /// returned as is.
    pub async fn plain(&self, method: &str, target: &str, body: &[u8]) -> anyhow::Result<Response> {
        if target.chars().any(char::is_control) || !target.starts_with('/') {
            bail!("bad request target {target:?}");
        }
        let head = format!(
            "{method} {target} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\nconnection: close\r\nuser-agent: kinesis-data/{}\r\n\r\n",
            self.authority,
            body.len(),
            env!("CARGO_PKG_VERSION")
        );
        let raw = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(head.as_bytes(), body))
            .await
            .map_err(|_| anyhow!("{method} {target}: no answer within {REQUEST_TIMEOUT:?}"))??;
        parse_answer(&raw, method == "HEAD")
    }

    async fn exchange(&self, head: &[u8], body: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut s = tokio::net::TcpStream::connect(&self.connect_to)
            .await
            .with_context(|| format!("cannot connect to {} (is `kinesis-data serve` running?)", self.endpoint))?;
        s.write_all(head).await?;
        s.write_all(body).await?;
        s.flush().await?;
        let mut raw = Vec::new();
        let limit = u64::try_from(MAX_RESPONSE).unwrap_or(u64::MAX) + 1;
        (&mut s).take(limit).read_to_end(&mut raw).await?;
        if raw.len() > MAX_RESPONSE {
            bail!("the answer exceeds {MAX_RESPONSE} bytes");
        }
        Ok(raw)
    }

    /// PutObject; returns the ETag (unquoted).
    pub async fn put_object(&self, bucket: &str, key: &str, body: &[u8], content_type: &str) -> anyhow::Result<String> {
        let path = format!("/{}/{}", uri_encode(bucket, false), uri_encode(key, true));
        let resp = self
            .request("PUT", &path, &[], &[("content-type", content_type)], body)
            .await?;
        let etag = resp
            .header("etag")
            .map(|e| e.trim().trim_matches('"').to_owned())
            .filter(|e| !e.is_empty())
            .ok_or_else(|| anyhow!("PutObject answered without an ETag"))?;
        Ok(etag)
    }

    /// Every key under `prefix` (ListObjectsV2, all pages).
    pub async fn list_keys(&self, bucket: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
        let path = format!("/{}", uri_encode(bucket, false));
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q: Vec<(&str, &str)> = vec![("list-type", "2")];
            if !prefix.is_empty() {
                q.push(("prefix", prefix));
            }
            if let Some(t) = &token {
                q.push(("continuation-token", t));
            }
            let resp = self.request("GET", &path, &q, &[], &[]).await?;
            let (page, next) = parse_list_page(&resp.body)?;
            keys.extend(page);
            match next {
                None => return Ok(keys),
                Some(t) if token.as_deref() == Some(t.as_str()) => {
                    bail!("ListObjectsV2 answered the same continuation token twice")
                }
                Some(t) => token = Some(t),
            }
        }
    }
}

/// The AWS error code of `e`, when it is an [`ApiError`].
pub fn error_code(e: &anyhow::Error) -> Option<&str> {
    e.downcast_ref::<ApiError>().map(|a| a.code.as_str())
}

impl Client {
    /// The endpoint (`http://host:port`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// An awsJson 1.1 call: `POST /` with `X-Amz-Target: <target>`; the answer's JSON.
    pub async fn json(
        &self,
        service: &str,
        target: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let bytes = serde_json::to_vec(body)?;
        let resp = self
            .request_as(
                service,
                "POST",
                "/",
                &[],
                &[("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target)],
                &bytes,
            )
            .await?;
        if resp.body.is_empty() {
            return Ok(serde_json::Value::Object(serde_json::Map::new()));
        }
        serde_json::from_slice(&resp.body).with_context(|| format!("{target}: the answer is not JSON"))
    }

    /// A restJson call; the answer's JSON (`{}` for an empty body).
    pub async fn rest_json(
        &self,
        service: &str,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let bytes = match body {
            Some(b) => serde_json::to_vec(b)?,
            None => Vec::new(),
        };
        let headers: &[(&str, &str)] = if body.is_some() {
            &[("content-type", "application/json")]
        } else {
            &[]
        };
        let resp = self.request_as(service, method, path, query, headers, &bytes).await?;
        if resp.body.is_empty() {
            return Ok(serde_json::Value::Object(serde_json::Map::new()));
        }
        serde_json::from_slice(&resp.body).with_context(|| format!("{method} {path}: the answer is not JSON"))
    }

    /// A query-protocol call (IAM, STS): form-encoded `Action=…&Version=…`; the XML answer.
    pub async fn query(
        &self,
        service: &str,
        version: &str,
        action: &str,
        params: &[(&str, &str)],
    ) -> anyhow::Result<Node> {
        // The serializer is not `Send`: it must be gone before the first await.
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("Action", action).append_pair("Version", version);
            for (k, v) in params {
                form.append_pair(k, v);
            }
            form.finish()
        };
        let resp = self
            .request_as(
                service,
                "POST",
                "/",
                &[],
                &[("content-type", "application/x-www-form-urlencoded; charset=utf-8")],
                body.as_bytes(),
            )
            .await?;
        parse_xml(&resp.body).map_err(|e| anyhow!("{action}: unreadable answer: {e}"))
    }
}

// ------------------------------------------------------------------------------ SigV4

/// Signing keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret.
    pub secret_access_key: String,
    /// Session token.
    pub session_token: Option<String>,
}

impl Credentials {
    /// The flags' keys, else the environment's (with its session token), else test/test.
    pub fn resolve(key: Option<String>, secret: Option<String>, token: Option<String>) -> anyhow::Result<Credentials> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self::pick(key, secret, token, env)
    }

    pub fn pick(
        key: Option<String>,
        secret: Option<String>,
        token: Option<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Credentials> {
        if let Some(access_key_id) = key {
            let secret_access_key = secret.ok_or_else(|| anyhow!("--access-key-id needs --secret-access-key"))?;
            return Ok(Credentials {
                access_key_id,
                secret_access_key,
                session_token: token,
            });
        }
        if let Some(access_key_id) = env("AWS_ACCESS_KEY_ID") {
            let secret_access_key = env("AWS_SECRET_ACCESS_KEY")
                .ok_or_else(|| anyhow!("AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY"))?;
            return Ok(Credentials {
                access_key_id,
                secret_access_key,
                session_token: env("AWS_SESSION_TOKEN"),
            });
        }
        Ok(Credentials {
            access_key_id: "test".to_owned(),
            secret_access_key: "test".to_owned(),
            session_token: None,
        })
    }
}

/// A request to sign. `path` is sent as is (S3: the canonical URI is the path as sent);
/// `query` is already canonical ([`encode_query`]); `headers` (including `host`) are all
/// signed.
pub struct SignInput<'a> {
    /// Method.
    pub method: &'a str,
    /// Path as sent.
    pub path: &'a str,
    /// Canonical query.
    pub query: &'a str,
    /// Headers to sign.
    pub headers: &'a [(String, String)],
    /// Body.
    pub body: &'a [u8],
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `yyyymmddTHHMMSSZ`.
pub fn amz_date(unix: i64) -> String {
    let (y, m, d, hh, mm, ss) = kd_storage::civil::from_epoch_secs(unix);
    format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z")
}

/// Trimmed, inner whitespace runs collapsed to one space.
pub fn header_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// SigV4 (header form) at `unix`: the headers to add — `x-amz-date`, `x-amz-content-sha256`
/// (hex SHA-256 of the body), `x-amz-security-token` with a session token, `authorization`.
pub fn sign(creds: &Credentials, region: &str, service: &str, req: &SignInput<'_>, unix: i64) -> Vec<(String, String)> {
    let date_time = amz_date(unix);
    let date = &date_time[..8];
    let mut added = vec![
        ("x-amz-date".to_owned(), date_time.clone()),
        ("x-amz-content-sha256".to_owned(), hex(&Sha256::digest(req.body))),
    ];
    if let Some(t) = &creds.session_token {
        added.push(("x-amz-security-token".to_owned(), t.clone()));
    }
    let mut all: Vec<(String, String)> = req
        .headers
        .iter()
        .chain(&added)
        .map(|(k, v)| (k.to_ascii_lowercase(), header_value(v)))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let mut canonical_headers = String::new();
    let mut names: Vec<&str> = Vec::new();
    for (name, value) in &all {
        if names.last() == Some(&name.as_str()) {
            canonical_headers.pop();
            let _ = writeln!(canonical_headers, ",{value}");
        } else {
            names.push(name);
            let _ = writeln!(canonical_headers, "{name}:{value}");
        }
    }
    let signed_headers = names.join(";");
    let payload_hash = &added[1].1;
    let path = if req.path.is_empty() { "/" } else { req.path };
    let canonical_request = format!(
        "{}\n{path}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        req.method, req.query
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date_time}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac_sha256(format!("AWS4{}", creds.secret_access_key).as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    let signature = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));
    added.push((
        "authorization".to_owned(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            creds.access_key_id
        ),
    ));
    added
}
