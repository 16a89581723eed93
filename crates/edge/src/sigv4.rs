//! AWS Signature Version 4 verification, server side.
//!
//! Two forms are understood:
//!
//! * the header form, `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`
//!   with the request time in `X-Amz-Date` (or `Date`, in the same `yyyymmddTHHMMSSZ` form);
//! * the presigned (query string) form with `X-Amz-Algorithm`, `X-Amz-Credential`,
//!   `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders` and `X-Amz-Signature`.
//!
//! The canonical request is rebuilt from what arrived on the wire. For every service but S3
//! the path is normalised (empty, `.` and `..` segments removed) and percent-encoded once
//! more, as the AWS SDKs do when they sign (aws-sigv4's defaults,
//! `UriPathNormalizationMode::Enabled` and `PercentEncodingMode::Double`). For S3 the path is
//! used exactly as sent.

use std::fmt::Write as _;

use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use http::request::Parts;
use kd_storage::civil::{civil_from_days, days_from_civil};
use sha2::{Digest, Sha256};

/// The only signing algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Largest clock difference accepted between the request time and now (header form).
pub const MAX_SKEW_SECS: i64 = 15 * 60;
/// Largest `X-Amz-Expires` of a presigned request: seven days.
pub const MAX_EXPIRES_SECS: i64 = 604_800;
/// Payload hash value of requests whose body is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

const SCOPE_TERMINATOR: &str = "aws4_request";
const QUERY_PARAMS_MESSAGE: &str = "AWS query-string parameters must include 'X-Amz-Algorithm', \
     'X-Amz-Credential', 'X-Amz-Signature', 'X-Amz-Date', 'X-Amz-SignedHeaders', \
     'X-Amz-Expires'. Re-examine the query-string parameters.";

/// The credential scope a request claims: `AKID/yyyymmdd/region/service/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The access key id.
    pub access_key: String,
    /// The scope date, `yyyymmdd`.
    pub date: String,
    /// The scope region.
    pub region: String,
    /// The scope service (signing name), e.g. `kinesis`.
    pub service: String,
}

/// What a successfully verified request was signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key id that signed the request.
    pub access_key: String,
    /// The region of the credential scope.
    pub region: String,
    /// The service of the credential scope.
    pub service: String,
    /// `X-Amz-Security-Token`, from the header (header form) or the query (presigned form).
    pub session_token: Option<String>,
}

/// Why a request was not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Neither an `Authorization` header nor `X-Amz-Signature`/`X-Amz-Credential` query
    /// parameters: AWS answers `MissingAuthenticationToken`.
    #[error("Missing Authentication Token")]
    Missing,
    /// The signature information is malformed or incomplete; the message reads like AWS's
    /// `IncompleteSignatureException`.
    #[error("{0}")]
    Incomplete(String),
    /// The access key id is not known.
    #[error("The security token included in the request is invalid: unknown access key {0:?}")]
    UnknownAccessKey(String),
    /// The signature computed here differs from the one in the request.
    #[error(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. Consult the service \
         documentation for details."
    )]
    SignatureMismatch,
    /// The request time is too far from now (header form) or the presigned request's
    /// lifetime has elapsed (or has not begun yet).
    #[error("{}", expired_message(*.request_time, *.server_time, *.expires))]
    Expired {
        /// The request time (`X-Amz-Date`), unix seconds.
        request_time: i64,
        /// The server's time when verifying, unix seconds.
        server_time: i64,
        /// `X-Amz-Expires` of a presigned request; `None` for the header form.
        expires: Option<i64>,
    },
    /// An algorithm other than `AWS4-HMAC-SHA256` (e.g. SigV2 or SigV4a).
    #[error("Unsupported signing algorithm {0:?}; only AWS4-HMAC-SHA256 is supported")]
    UnsupportedAlgorithm(String),
    /// The signing key belongs to an STS session that has expired.
    #[error("The security token included in the request is expired")]
    ExpiredToken,
    /// The signing key belongs to an STS session and `X-Amz-Security-Token` is missing or
    /// is not that session's token.
    #[error("The security token included in the request is invalid.")]
    InvalidToken,
}

fn expired_message(request_time: i64, server_time: i64, expires: Option<i64>) -> String {
    let req = format_amz_date(request_time);
    let now = format_amz_date(server_time);
    match expires {
        Some(_) if request_time > server_time => {
            format!("Request is not valid yet: {req} is later than {now}")
        }
        Some(expires) => format!("Request has expired: signed at {req}, valid for {expires} seconds, now {now}"),
        None if request_time < server_time => format!(
            "Signature expired: {req} is now earlier than {} ({now} - 15 min.)",
            format_amz_date(server_time.saturating_sub(MAX_SKEW_SECS))
        ),
        None => format!(
            "Signature not yet current: {req} is still later than {} ({now} + 15 min.)",
            format_amz_date(server_time.saturating_add(MAX_SKEW_SECS))
        ),
    }
}

/// Which credential a request claims, without verifying anything else.
pub fn credential_of(parts: &Parts) -> Result<Credential, AuthError> {
    match locate(parts)? {
        Located::Header(value) => Ok(parse_authorization(&value)?.credential),
        Located::Query(query) => {
            let credential = query_param(&query, "X-Amz-Credential")
                .ok_or_else(|| AuthError::Incomplete(QUERY_PARAMS_MESSAGE.to_owned()))?;
            parse_credential(&credential)
        }
    }
}

/// Verify the SigV4 signature of a request.
///
/// `secret_for(access_key)` returns the secret access key of a known access key id;
/// `now_unix` is the current time in seconds since the epoch. `body` is the full request body:
/// without an `x-amz-content-sha256` header the payload hash is `sha256(body)`; with one, its
/// value is used as the payload hash (`UNSIGNED-PAYLOAD` and `STREAMING-*` literally; a
/// 64-digit hex value must also be the hash of `body`).
pub fn verify(
    parts: &Parts,
    body: &[u8],
    secret_for: &dyn Fn(&str) -> Option<String>,
    now_unix: i64,
) -> Result<Verified, AuthError> {
    let claim = match locate(parts)? {
        Located::Header(value) => header_claim(parts, &value, body)?,
        Located::Query(query) => query_claim(parts, &query, body)?,
    };

    let request_time = claim.request_time;
    match claim.expires {
        None => {
            if now_unix.saturating_sub(request_time).saturating_abs() > MAX_SKEW_SECS {
                return Err(AuthError::Expired {
                    request_time,
                    server_time: now_unix,
                    expires: None,
                });
            }
        }
        Some(expires) => {
            if now_unix > request_time + expires || request_time > now_unix.saturating_add(MAX_SKEW_SECS) {
                return Err(AuthError::Expired {
                    request_time,
                    server_time: now_unix,
                    expires: Some(expires),
                });
            }
        }
    }

    let credential = claim.credential;
    let secret =
        secret_for(&credential.access_key).ok_or_else(|| AuthError::UnknownAccessKey(credential.access_key.clone()))?;
    let key = signing_key(&secret, &credential.date, &credential.region, &credential.service);
    let scope = format!(
        "{}/{}/{}/{SCOPE_TERMINATOR}",
        credential.date, credential.region, credential.service
    );

    let path = canonical_uri(parts.uri.path(), &credential.service);
    let query = canonical_query(parts.uri.query().unwrap_or(""), claim.presigned);
    let headers = canonical_headers(parts, &claim.signed_headers)?;
    let signed_headers = claim.signed_headers.join(";");

    let mut matched = false;
    for payload_hash in &claim.payload_hashes {
        let mut creq = Vec::with_capacity(256 + headers.len());
        creq.extend_from_slice(parts.method.as_str().as_bytes());
        creq.push(b'\n');
        creq.extend_from_slice(path.as_bytes());
        creq.push(b'\n');
        creq.extend_from_slice(query.as_bytes());
        creq.push(b'\n');
        creq.extend_from_slice(&headers);
        creq.push(b'\n');
        creq.extend_from_slice(signed_headers.as_bytes());
        creq.push(b'\n');
        creq.extend_from_slice(payload_hash.as_bytes());

        let string_to_sign = format!(
            "{ALGORITHM}\n{}\n{scope}\n{}",
            claim.amz_date,
            hex(&Sha256::digest(&creq))
        );
        let expected = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));
        // Evaluate every candidate so the time taken does not depend on which one matched.
        matched |= constant_time_eq(expected.as_bytes(), claim.signature.as_bytes());
    }
    if !matched {
        return Err(AuthError::SignatureMismatch);
    }

    Ok(Verified {
        access_key: credential.access_key,
        region: credential.region,
        service: credential.service,
        session_token: claim.session_token,
    })
}

// ---------------------------------------------------------------------------------------------
// Locating and parsing the signature information

enum Located {
    Header(String),
    Query(String),
}

fn locate(parts: &Parts) -> Result<Located, AuthError> {
    let query = parts.uri.query().unwrap_or("");
    let query_auth = query_param_present(query, "X-Amz-Signature")
        || query_param_present(query, "X-Amz-Credential")
        || query_param_present(query, "X-Amz-Algorithm");
    match parts.headers.get(http::header::AUTHORIZATION) {
        Some(value) => {
            if query_auth {
                return Err(AuthError::Incomplete(
                    "Only one auth mechanism allowed; only the X-Amz-Algorithm query \
                     parameter, Signature query string parameter or the Authorization header \
                     should be specified"
                        .to_owned(),
                ));
            }
            let value = value
                .to_str()
                .map_err(|_| AuthError::Incomplete("Authorization header is not valid text".to_owned()))?;
            Ok(Located::Header(value.to_owned()))
        }
        None if query_auth => Ok(Located::Query(query.to_owned())),
        None => Err(AuthError::Missing),
    }
}

struct AuthorizationHeader {
    credential: Credential,
    signed_headers: Vec<String>,
    signature: String,
}

fn parse_authorization(value: &str) -> Result<AuthorizationHeader, AuthError> {
    let value = value.trim();
    let (algorithm, rest) = match value.find([' ', '\t']) {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    if algorithm != ALGORITHM {
        return Err(AuthError::UnsupportedAlgorithm(algorithm.to_owned()));
    }

    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for component in rest.split([',', ' ', '\t']) {
        let component = component.trim();
        if component.is_empty() {
            continue;
        }
        let Some((name, val)) = component.split_once('=') else {
            return Err(AuthError::Incomplete(format!(
                "Authorization header requires each component to be of the form key=value, \
                 got '{component}'. Authorization={value}"
            )));
        };
        let slot = match name.trim() {
            n if n.eq_ignore_ascii_case("Credential") => &mut credential,
            n if n.eq_ignore_ascii_case("SignedHeaders") => &mut signed_headers,
            n if n.eq_ignore_ascii_case("Signature") => &mut signature,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(val.trim());
        }
    }

    let mut missing = String::new();
    for (name, present) in [
        ("Credential", credential.is_some()),
        ("Signature", signature.is_some()),
        ("SignedHeaders", signed_headers.is_some()),
    ] {
        if !present {
            let _ = write!(missing, "Authorization header requires '{name}' parameter. ");
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) = (credential, signed_headers, signature) else {
        return Err(AuthError::Incomplete(format!("{missing}Authorization={value}")));
    };

    Ok(AuthorizationHeader {
        credential: parse_credential(credential)?,
        signed_headers: parse_signed_headers(signed_headers)?,
        signature: signature.to_owned(),
    })
}

fn parse_credential(value: &str) -> Result<Credential, AuthError> {
    let fields: Vec<&str> = value.split('/').collect();
    let malformed = || {
        AuthError::Incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. \
             keyid/date/region/service/term, got '{value}'"
        ))
    };
    let [access_key, date, region, service, terminator] = fields.as_slice() else {
        return Err(malformed());
    };
    if access_key.is_empty() || region.is_empty() || service.is_empty() {
        return Err(malformed());
    }
    if *terminator != SCOPE_TERMINATOR {
        return Err(AuthError::Incomplete(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not \
             '{terminator}'."
        )));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::Incomplete(format!(
            "Invalid credential date \"{date}\". This date is not the expected format."
        )));
    }
    Ok(Credential {
        access_key: (*access_key).to_owned(),
        date: (*date).to_owned(),
        region: (*region).to_owned(),
        service: (*service).to_owned(),
    })
}

/// Lowercase, sort and deduplicate the signed header names; `host` must be among them.
fn parse_signed_headers(value: &str) -> Result<Vec<String>, AuthError> {
    let mut names: Vec<String> = value
        .split(';')
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    if !names.iter().any(|n| n == "host") {
        return Err(AuthError::Incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".to_owned(),
        ));
    }
    Ok(names)
}

/// Everything needed to recompute the signature, whichever form it came in.
struct Claim {
    credential: Credential,
    signed_headers: Vec<String>,
    signature: String,
    amz_date: String,
    request_time: i64,
    /// `Some` for presigned requests.
    expires: Option<i64>,
    presigned: bool,
    session_token: Option<String>,
    /// Payload hashes to try, in order.
    payload_hashes: Vec<String>,
}

fn header_claim(parts: &Parts, authorization: &str, body: &[u8]) -> Result<Claim, AuthError> {
    let auth = parse_authorization(authorization)?;
    let amz_date = match header_str(&parts.headers, "x-amz-date").or_else(|| header_str(&parts.headers, "date")) {
        Some(d) => d.trim().to_owned(),
        None => {
            return Err(AuthError::Incomplete(format!(
                "Authorization header requires existence of either a 'X-Amz-Date' or a \
                 'Date' header. Authorization={authorization}"
            )));
        }
    };
    let request_time = parse_amz_date(&amz_date).ok_or_else(|| bad_date(&amz_date))?;
    check_scope_date(&auth.credential, &amz_date)?;

    let payload_hash = match header_str(&parts.headers, "x-amz-content-sha256") {
        Some(h) => checked_content_sha256(h.trim(), body)?,
        None => hex(&Sha256::digest(body)),
    };
    Ok(Claim {
        credential: auth.credential,
        signed_headers: auth.signed_headers,
        signature: auth.signature,
        amz_date,
        request_time,
        expires: None,
        presigned: false,
        session_token: header_str(&parts.headers, "x-amz-security-token").map(str::to_owned),
        payload_hashes: vec![payload_hash],
    })
}

fn query_claim(parts: &Parts, query: &str, body: &[u8]) -> Result<Claim, AuthError> {
    let incomplete = || AuthError::Incomplete(QUERY_PARAMS_MESSAGE.to_owned());
    let algorithm = query_param(query, "X-Amz-Algorithm").ok_or_else(incomplete)?;
    if algorithm != ALGORITHM {
        return Err(AuthError::UnsupportedAlgorithm(algorithm));
    }
    let credential = query_param(query, "X-Amz-Credential").ok_or_else(incomplete)?;
    let signature = query_param(query, "X-Amz-Signature").ok_or_else(incomplete)?;
    let amz_date = query_param(query, "X-Amz-Date").ok_or_else(incomplete)?;
    let signed_headers = query_param(query, "X-Amz-SignedHeaders").ok_or_else(incomplete)?;
    let expires = query_param(query, "X-Amz-Expires").ok_or_else(incomplete)?;

    let credential = parse_credential(&credential)?;
    let signed_headers = parse_signed_headers(&signed_headers)?;
    let request_time = parse_amz_date(&amz_date).ok_or_else(|| bad_date(&amz_date))?;
    check_scope_date(&credential, &amz_date)?;
    let expires = match expires.parse::<i64>() {
        Ok(e) if (1..=MAX_EXPIRES_SECS).contains(&e) => e,
        Ok(e) if e > MAX_EXPIRES_SECS => {
            return Err(AuthError::Incomplete(
                "X-Amz-Expires must be less than a week (in seconds) that is 604800".to_owned(),
            ));
        }
        _ => {
            return Err(AuthError::Incomplete(format!(
                "X-Amz-Expires should be a number between 1 and 604800, got '{expires}'"
            )));
        }
    };

    let content_sha256 = query_param(query, "X-Amz-Content-Sha256")
        .or_else(|| header_str(&parts.headers, "x-amz-content-sha256").map(str::to_owned));
    let payload_hashes = match content_sha256 {
        Some(h) => vec![checked_content_sha256(h.trim(), body)?],
        // Presigned URLs are normally signed with UNSIGNED-PAYLOAD (S3 and most SDK
        // presigners); generic signers (aws-sigv4 with a byte body) use the body's hash.
        None => vec![UNSIGNED_PAYLOAD.to_owned(), hex(&Sha256::digest(body))],
    };
    Ok(Claim {
        credential,
        signed_headers,
        signature,
        amz_date,
        request_time,
        expires: Some(expires),
        presigned: true,
        session_token: query_param(query, "X-Amz-Security-Token"),
        payload_hashes,
    })
}

fn bad_date(value: &str) -> AuthError {
    AuthError::Incomplete(format!(
        "Date must be in ISO-8601 'basic format'. Got '{value}'. See \
         http://en.wikipedia.org/wiki/ISO_8601"
    ))
}

/// The credential scope date must be the date part of the request time.
fn check_scope_date(credential: &Credential, amz_date: &str) -> Result<(), AuthError> {
    if amz_date.get(..8) == Some(credential.date.as_str()) {
        Ok(())
    } else {
        // AWS answers InvalidSignatureException ("Date in Credential scope does not match
        // YYYYMMDD from ISO-8601 version of date from HTTP").
        Err(AuthError::SignatureMismatch)
    }
}

/// The value of `x-amz-content-sha256` to use as the payload hash. A hex SHA-256 value must
/// be the hash of the body received, or the body would not be covered by the signature.
fn checked_content_sha256(value: &str, body: &[u8]) -> Result<String, AuthError> {
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        let actual = hex(&Sha256::digest(body));
        if !actual.eq_ignore_ascii_case(value) {
            return Err(AuthError::SignatureMismatch);
        }
    }
    Ok(value.to_owned())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

// ---------------------------------------------------------------------------------------------
// Canonical request pieces

/// The canonical URI. S3: the path exactly as sent. Others: normalised, then every byte other
/// than the unreserved characters and `/` percent-encoded (the path as sent is encoded again).
fn canonical_uri(path: &str, service: &str) -> String {
    if service == "s3" {
        return if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        };
    }
    let normalized = normalize_path(path);
    let mut out = String::with_capacity(normalized.len() + 16);
    percent_encode_into(&mut out, normalized.as_bytes(), true);
    out
}

/// RFC 3986 §5.2.4 dot-segment removal as the AWS SDKs apply it for signing: empty and `.`
/// segments are dropped, `..` removes the previous segment, and a trailing slash is kept.
fn normalize_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    if !path.contains('.') && !path.contains("//") && path.starts_with('/') {
        return path.to_owned();
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    let trailing = ["/", "/.", "/..", "/./", "/../"].iter().any(|t| path.ends_with(t));
    if out.is_empty() || (trailing && !out.ends_with('/')) {
        out.push('/');
    }
    out
}

/// The canonical query string: every parameter (but `X-Amz-Signature` when presigned)
/// decoded, encoded again with the unreserved set, sorted by encoded name then value.
fn canonical_query(query: &str, presigned: bool) -> String {
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = form_decode(name);
            if presigned && name == "X-Amz-Signature" {
                return None;
            }
            let mut enc_name = String::with_capacity(name.len());
            percent_encode_into(&mut enc_name, name.as_bytes(), false);
            let mut enc_value = String::with_capacity(value.len());
            percent_encode_into(&mut enc_value, form_decode(value).as_bytes(), false);
            Some((enc_name, enc_value))
        })
        .collect();
    params.sort();
    let mut out = String::with_capacity(query.len() + 16);
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XY` a byte, anything
/// else (including a `%` not followed by two hex digits) itself; invalid UTF-8 is replaced.
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| hex_value(*b));
                let lo = bytes.get(i + 2).and_then(|b| hex_value(*b));
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn query_param_present(query: &str, name: &str) -> bool {
    query_param(query, name).is_some()
}

/// The decoded value of the first query parameter with this (decoded) name.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(n) == name).then(|| form_decode(v))
    })
}

/// Percent-encode every byte but `A-Z a-z 0-9 - _ . ~` (and `/` when `keep_slash`).
fn percent_encode_into(out: &mut String, bytes: &[u8], keep_slash: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// `name:value\n` for every signed header, in the (sorted) signed-header order. Repeated
/// headers are joined with `,`; values are trimmed and runs of spaces collapsed. `host`
/// falls back to the URI authority (HTTP/2 `:authority`).
fn canonical_headers(parts: &Parts, signed: &[String]) -> Result<Vec<u8>, AuthError> {
    let mut out = Vec::with_capacity(64 * signed.len());
    for name in signed {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let mut values = parts.headers.get_all(name.as_str()).iter().peekable();
        if values.peek().is_none() && name == "host" {
            let authority = parts
                .uri
                .authority()
                .ok_or_else(|| AuthError::Incomplete("The request has no Host header and no authority".into()))?;
            out.extend_from_slice(host_from_authority(&parts.uri, authority).as_bytes());
        }
        let mut first = true;
        for value in values {
            if !first {
                out.push(b',');
            }
            first = false;
            push_trimmed(&mut out, value.as_bytes());
        }
        out.push(b'\n');
    }
    Ok(out)
}

/// The authority without a port that is the scheme's default (as the SDKs sign it).
fn host_from_authority(uri: &http::Uri, authority: &http::uri::Authority) -> String {
    let default_port = matches!(
        (uri.scheme_str(), authority.port_u16()),
        (Some("http"), Some(80)) | (Some("https"), Some(443))
    );
    if default_port {
        authority.host().to_owned()
    } else {
        authority.as_str().to_owned()
    }
}

fn push_trimmed(out: &mut Vec<u8>, value: &[u8]) {
    let is_ws = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ws(b)).unwrap_or(value.len());
    let end = value.iter().rposition(|b| !is_ws(b)).map_or(start, |e| e + 1);
    let mut previous_space = false;
    for &b in &value[start..end] {
        if b == b' ' {
            if !previous_space {
                out.push(b);
            }
            previous_space = true;
        } else {
            out.push(b);
            previous_space = false;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Crypto helpers

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length");
    mac.update(data);
    let out = mac.finalize().into_bytes();
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&out);
    bytes
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, SCOPE_TERMINATOR.as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

/// Compare without an early exit. The given signature is compared case-insensitively (hex).
fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    if expected.len() != given.len() {
        return false;
    }
    expected
        .iter()
        .zip(given)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b.to_ascii_lowercase()))
        == 0
}

// ---------------------------------------------------------------------------------------------
// Dates

/// Parse `yyyymmddTHHMMSSZ` (UTC) to unix seconds; `None` unless it is a valid date and time.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        b[range].iter().try_fold(0i64, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    let year = num(0..4)?;
    let month = num(4..6)?;
    let day = num(6..8)?;
    let hour = num(9..11)?;
    let minute = num(11..13)?;
    let second = num(13..15)?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Format unix seconds as `yyyymmddTHHMMSSZ`.
/// Times outside years 0000–9999 are clamped.
pub fn format_amz_date(unix: i64) -> String {
    let unix = unix.clamp(-62_167_219_200, 253_402_300_799);
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("20000229T235959Z"), Some(951_868_799));
        assert_eq!(parse_amz_date("19000229T000000Z"), None);
        assert_eq!(parse_amz_date("20150230T000000Z"), None);
        assert_eq!(parse_amz_date("20151301T000000Z"), None);
        assert_eq!(parse_amz_date("20150830T240000Z"), None);
        assert_eq!(parse_amz_date("20150830T126000Z"), None);
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
        assert_eq!(parse_amz_date("20150830T123600"), None);
        assert_eq!(parse_amz_date("2015083+T123600Z"), None);
        for t in [0, 1, 951_868_799, 1_440_938_160, 4_102_444_800, -86_401] {
            assert_eq!(parse_amz_date(&format_amz_date(t)), Some(t), "{t}");
        }
        assert_eq!(format_amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(format_amz_date(i64::MIN), "00000101T000000Z");
        assert_eq!(format_amz_date(i64::MAX), "99991231T235959Z");
    }

    #[test]
    fn path_normalisation() {
        assert_eq!(normalize_path(""), "/");
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path("//"), "/");
        assert_eq!(normalize_path("/./"), "/");
        assert_eq!(normalize_path("/example/.."), "/");
        assert_eq!(normalize_path("/a/b/../.."), "/");
        assert_eq!(normalize_path("/../a"), "/a");
        assert_eq!(normalize_path("//example//"), "/example/");
        assert_eq!(normalize_path("/a/./b/."), "/a/b/");
        assert_eq!(normalize_path("/a.b/c"), "/a.b/c");
        assert_eq!(canonical_uri("/a b%2F/c", "kinesis"), "/a%20b%252F/c");
        assert_eq!(canonical_uri("/a%20b/../c", "s3"), "/a%20b/../c");
    }

    #[test]
    fn query_canonicalisation() {
        assert_eq!(canonical_query("", false), "");
        assert_eq!(canonical_query("b=2&a&A=1", false), "A=1&a=&b=2");
        assert_eq!(canonical_query("a=x+y&a=%41&c=%zz", false), "a=A&a=x%20y&c=%25zz");
        assert_eq!(canonical_query("X-Amz-Signature=abc&k=v", true), "k=v");
    }

    #[test]
    fn header_trimming() {
        let mut out = Vec::new();
        push_trimmed(&mut out, b"  a   b\tc  ");
        assert_eq!(out, b"a b\tc");
    }
}
