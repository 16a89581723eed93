//! Oracle tests: requests signed by the AWS SDK's own signer (`aws-sigv4`) must verify, and
//! any change to them must not.
//!
//! Needs the dev-dependency `aws-credential-types = "1"` (aws-sigv4 takes its signing identity
//! as an `Identity`, which is only built from `aws_credential_types::Credentials`).

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use http::request::Parts;
use kd_edge::sigv4::{AuthError, verify};
use proptest::prelude::*;

const AKID: &str = "AKIAKINESISDATA01";
const SECRET: &str = "kinesis/data+secret/KEY0123456789abcdefXYZ";
/// 2023-11-14T22:13:20Z
const NOW: i64 = 1_700_000_000;

fn secret_for(key: &str) -> Option<String> {
    (key == AKID).then(|| SECRET.to_owned())
}

fn s3_settings() -> SigningSettings {
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings
}

struct Signing<'a> {
    access_key: &'a str,
    service: &'a str,
    region: &'a str,
    token: Option<&'a str>,
    settings: SigningSettings,
    /// Sign with `UNSIGNED-PAYLOAD` instead of the body's hash.
    unsigned_payload: bool,
    at: i64,
}

impl Default for Signing<'_> {
    fn default() -> Self {
        Signing {
            access_key: AKID,
            service: "kinesis",
            region: "us-east-1",
            token: None,
            settings: SigningSettings::default(),
            unsigned_payload: false,
            at: NOW,
        }
    }
}

/// Sign `req` with aws-sigv4 and apply the signature to it.
fn signed(mut req: http::Request<Vec<u8>>, s: Signing<'_>) -> (Parts, Vec<u8>) {
    let credentials =
        aws_credential_types::Credentials::new(s.access_key, SECRET, s.token.map(str::to_owned), None, "test");
    let identity = credentials.into();
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(s.at).expect("positive time"));
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(s.region)
        .name(s.service)
        .time(time)
        .settings(s.settings)
        .build()
        .expect("signing params")
        .into();
    let body = req.body().clone();
    let signable_body = if s.unsigned_payload {
        SignableBody::UnsignedPayload
    } else {
        SignableBody::Bytes(&body)
    };
    let uri = req.uri().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().expect("ascii header").to_owned()))
        .collect();
    let signable = SignableRequest::new(
        req.method().as_str(),
        uri,
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        signable_body,
    )
    .expect("signable request");
    let (instructions, _signature) = sign(signable, &params).expect("sign").into_parts();
    instructions.apply_to_request_http1x(&mut req);
    let (parts, body) = req.into_parts();
    (parts, body)
}

fn kinesis_request(body: &[u8]) -> http::Request<Vec<u8>> {
    http::Request::builder()
        .method("POST")
        .uri("http://localhost:4567/")
        .header("host", "localhost:4567")
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "Kinesis_20131202.PutRecord")
        .header("user-agent", "aws-sdk-rust/1.0 os/linux")
        .header("x-amz-user-agent", "aws-sdk-rust/1.0  api/kinesis")
        .body(body.to_vec())
        .expect("request")
}

const PUT_RECORD: &[u8] = br#"{"StreamName":"s1","Data":"aGVsbG8=","PartitionKey":"pk"}"#;

fn expect_mismatch(result: Result<kd_edge::sigv4::Verified, AuthError>, what: &str) {
    match result {
        Err(AuthError::SignatureMismatch) => {}
        other => panic!("{what}: expected SignatureMismatch, got {other:?}"),
    }
}

#[test]
fn kinesis_post_verifies_and_tampering_is_detected() {
    let (parts, body) = signed(kinesis_request(PUT_RECORD), Signing::default());
    let verified = verify(&parts, &body, &secret_for, NOW).expect("verifies");
    assert_eq!(verified.access_key, AKID);
    assert_eq!(verified.region, "us-east-1");
    assert_eq!(verified.service, "kinesis");
    assert_eq!(verified.session_token, None);
    assert_eq!(
        kd_edge::sigv4::credential_of(&parts).expect("credential").service,
        "kinesis"
    );

    // Every byte of the body is covered.
    for i in 0..body.len() {
        let mut tampered = body.clone();
        tampered[i] ^= 0x01;
        expect_mismatch(verify(&parts, &tampered, &secret_for, NOW), &format!("body byte {i}"));
    }

    // A signed header changed.
    let mut p = parts.clone();
    p.headers.insert(
        "x-amz-target",
        http::HeaderValue::from_static("Kinesis_20131202.PutRecorc"),
    );
    expect_mismatch(verify(&p, &body, &secret_for, NOW), "x-amz-target");
    let mut p = parts.clone();
    p.headers
        .insert("host", http::HeaderValue::from_static("localhost:4568"));
    expect_mismatch(verify(&p, &body, &secret_for, NOW), "host");
    let mut p = parts.clone();
    p.method = http::Method::PUT;
    expect_mismatch(verify(&p, &body, &secret_for, NOW), "method");
    let mut p = parts.clone();
    p.uri = "http://localhost:4567/?a=b".parse().expect("uri");
    expect_mismatch(verify(&p, &body, &secret_for, NOW), "query");

    // An unsigned header may change (user-agent is excluded from signing by aws-sigv4).
    let mut p = parts.clone();
    p.headers
        .insert("user-agent", http::HeaderValue::from_static("something else"));
    verify(&p, &body, &secret_for, NOW).expect("unsigned header changed");

    // One character of the signature changed.
    let auth = parts
        .headers
        .get("authorization")
        .expect("authorization")
        .to_str()
        .expect("text")
        .to_owned();
    let last = auth.chars().last().expect("non-empty");
    let flipped = format!("{}{}", &auth[..auth.len() - 1], if last == '0' { '1' } else { '0' });
    let mut p = parts.clone();
    p.headers
        .insert("authorization", http::HeaderValue::from_str(&flipped).expect("header"));
    expect_mismatch(verify(&p, &body, &secret_for, NOW), "signature");

    // Wrong secret for the key.
    expect_mismatch(
        verify(&parts, &body, &|_: &str| Some("other".to_owned()), NOW),
        "secret",
    );

    // Clock skew.
    assert!(verify(&parts, &body, &secret_for, NOW + 14 * 60).is_ok());
    assert!(verify(&parts, &body, &secret_for, NOW - 14 * 60).is_ok());
    for now in [NOW + 20 * 60, NOW - 20 * 60] {
        match verify(&parts, &body, &secret_for, now) {
            Err(AuthError::Expired {
                request_time: NOW,
                server_time,
                expires: None,
            }) => assert_eq!(server_time, now),
            other => panic!("expected Expired, got {other:?}"),
        }
    }
}

#[test]
fn unknown_access_key() {
    let (parts, body) = signed(
        kinesis_request(PUT_RECORD),
        Signing {
            access_key: "AKIAUNKNOWN000000",
            ..Default::default()
        },
    );
    match verify(&parts, &body, &secret_for, NOW) {
        Err(AuthError::UnknownAccessKey(k)) => assert_eq!(k, "AKIAUNKNOWN000000"),
        other => panic!("expected UnknownAccessKey, got {other:?}"),
    }
}

#[test]
fn session_token_is_reported() {
    let (parts, body) = signed(
        kinesis_request(PUT_RECORD),
        Signing {
            token: Some("FwoGZXIvYXdzEJr//////////token=="),
            ..Default::default()
        },
    );
    let verified = verify(&parts, &body, &secret_for, NOW).expect("verifies");
    assert_eq!(
        verified.session_token.as_deref(),
        Some("FwoGZXIvYXdzEJr//////////token==")
    );
    let mut p = parts.clone();
    p.headers
        .insert("x-amz-security-token", http::HeaderValue::from_static("other"));
    expect_mismatch(verify(&p, &body, &secret_for, NOW), "token");
}

#[test]
fn non_s3_paths_are_normalised_and_double_encoded() {
    for path in [
        "/test/@connections/JBDvjfGEIAMCERw%3D",
        "/a/./b/../c//d/",
        "/%E2%9C%93/x%2Fy/a+b/~user/!$'()*,;=:@",
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Af/invocations",
    ] {
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://localhost:4567{path}?b=2&a=1&a=0&c=%2B+x&d"))
            .header("host", "localhost:4567")
            .header("content-type", "application/json")
            .header("x-custom", "  several   spaces  inside  ")
            .body(b"{}".to_vec())
            .expect("request");
        let (parts, body) = signed(
            req,
            Signing {
                service: "lambda",
                ..Default::default()
            },
        );
        verify(&parts, &body, &secret_for, NOW).unwrap_or_else(|e| panic!("{path}: {e:?}"));
    }
}

#[test]
fn s3_get_with_odd_characters() {
    for (path, query) in [
        (
            "/bucket/key%20with%20spaces/%E2%9C%93/a+b%2Bc=d",
            "prefix=a%2Fb&list-type=2&empty&x=%20+&y=%25",
        ),
        (
            "/bucket/a/./b/../c//d",
            "versionId=3%2F4&response-content-type=text%2Fplain%3B%20charset%3Dutf-8",
        ),
        ("/bucket/%21%27%28%29%2A/~tilde/!'()*", "acl"),
    ] {
        let req = http::Request::builder()
            .method("GET")
            .uri(format!("http://s3.localhost:4567{path}?{query}"))
            .header("host", "s3.localhost:4567")
            .header("range", "bytes=0-9")
            .body(Vec::new())
            .expect("request");
        let (parts, body) = signed(
            req,
            Signing {
                service: "s3",
                settings: s3_settings(),
                ..Default::default()
            },
        );
        let verified = verify(&parts, &body, &secret_for, NOW).unwrap_or_else(|e| panic!("{path}: {e:?}"));
        assert_eq!(verified.service, "s3");

        let mut p = parts.clone();
        p.headers.insert("range", http::HeaderValue::from_static("bytes=0-10"));
        expect_mismatch(verify(&p, &body, &secret_for, NOW), "range");
    }

    // UNSIGNED-PAYLOAD: the body is not covered.
    let req = http::Request::builder()
        .method("PUT")
        .uri("http://localhost:4567/bucket/obj%3Dkey")
        .header("host", "localhost:4567")
        .body(b"payload".to_vec())
        .expect("request");
    let (parts, _) = signed(
        req,
        Signing {
            service: "s3",
            settings: s3_settings(),
            unsigned_payload: true,
            ..Default::default()
        },
    );
    assert_eq!(
        parts.headers.get("x-amz-content-sha256").map(|v| v.as_bytes()),
        Some(&b"UNSIGNED-PAYLOAD"[..])
    );
    verify(&parts, b"any body at all", &secret_for, NOW).expect("unsigned payload");
}

#[test]
fn presigned_get_verifies_until_it_expires() {
    let mut settings = s3_settings();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(900));
    let req = http::Request::builder()
        .method("GET")
        .uri("http://localhost:4567/bucket/some%20key/%E2%9C%93?versionId=a%2Fb&x-id=GetObject")
        .header("host", "localhost:4567")
        .body(Vec::new())
        .expect("request");
    let (parts, body) = signed(
        req,
        Signing {
            service: "s3",
            settings,
            unsigned_payload: true,
            token: Some("session/token+="),
            ..Default::default()
        },
    );
    assert!(
        parts.uri.query().is_some_and(|q| q.contains("X-Amz-Signature=")),
        "{}",
        parts.uri
    );
    assert!(parts.headers.get("authorization").is_none());

    let verified = verify(&parts, &body, &secret_for, NOW + 60).expect("presigned verifies");
    assert_eq!(verified.session_token.as_deref(), Some("session/token+="));
    assert!(verify(&parts, &body, &secret_for, NOW + 900).is_ok());
    match verify(&parts, &body, &secret_for, NOW + 901) {
        Err(AuthError::Expired { expires: Some(900), .. }) => {}
        other => panic!("expected Expired, got {other:?}"),
    }

    // Changing a query parameter breaks it.
    let mut p = parts.clone();
    let tampered = parts.uri.to_string().replace("versionId=a%2Fb", "versionId=a%2Fc");
    p.uri = tampered.parse().expect("uri");
    expect_mismatch(verify(&p, &body, &secret_for, NOW), "presigned query");

    // Presigned with default (non-S3) settings and a signed empty body.
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(3600));
    let req = http::Request::builder()
        .method("GET")
        .uri("http://localhost:4567/a/../b?Action=List&Version=2010-05-08")
        .header("host", "localhost:4567")
        .body(Vec::new())
        .expect("request");
    let (parts, body) = signed(
        req,
        Signing {
            service: "iam",
            settings,
            ..Default::default()
        },
    );
    verify(&parts, &body, &secret_for, NOW + 3600).expect("generic presigned");
    assert!(matches!(
        verify(&parts, &body, &secret_for, NOW + 3601),
        Err(AuthError::Expired { .. })
    ));
}

/// Percent-encode everything but the unreserved characters (what SDKs do to a label).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn aws_sigv4_signed_requests_verify(
        segments in prop::collection::vec("\\PC{0,8}", 0..4),
        raw_segment in "[A-Za-z0-9!$&'()*+,;=:@._~-]{0,10}",
        params in prop::collection::vec(("\\PC{0,6}", "\\PC{0,6}"), 0..4),
        header in "[ -~]{0,30}",
        body in prop::collection::vec(any::<u8>(), 0..64),
        s3 in any::<bool>(),
    ) {
        let mut path = String::new();
        for s in &segments {
            path.push('/');
            path.push_str(&encode(s));
        }
        path.push('/');
        path.push_str(&raw_segment);
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
        let uri = format!("http://localhost:4567{path}?{}", query.join("&"));
        let mut builder = http::Request::builder().method("POST").uri(uri.as_str()).header("host", "localhost:4567");
        let header = header.trim_matches(' ');
        if !header.is_empty() {
            builder = builder.header("x-amz-meta-custom", header);
        }
        let req = builder.body(body.clone()).expect("request");
        let (service, settings) = if s3 { ("s3", s3_settings()) } else { ("kinesis", SigningSettings::default()) };
        let (parts, body) = signed(req, Signing { service, settings, ..Default::default() });
        let result = verify(&parts, &body, &secret_for, NOW);
        prop_assert!(result.is_ok(), "{uri}: {result:?}");
    }
}
