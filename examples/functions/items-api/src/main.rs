//! A REST API's function (API Gateway Lambda proxy integration, payload format 1.0) over one
//! S3 bucket, `BUCKET`:
//!
//! * `GET /` lists the bucket's keys: `{"items": ["a", "b"]}`;
//! * `GET /{id}` answers object `{id}` (its content type kept), 404 when it does not exist;
//! * `PUT /{id}` (or `POST`) writes the request body to object `{id}` and answers 201
//!   `{"id": …, "etag": …}`;
//! * `DELETE /{id}` deletes it (204), 404 when it does not exist.
//!
//! Anything else answers 405. S3 failures other than "not found" fail the invocation, so
//! API Gateway answers 502.

use aws_config::BehaviorVersion;
use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue, Method};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use base64::Engine as _;
use lambda_runtime::{Error, LambdaEvent, service_fn, tracing};
use serde_json::json;

// An instance handles one invocation at a time: a single-threaded runtime spares the
// cross-thread wake-ups of the multi-threaded one on every Runtime API call.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let bucket = std::env::var("BUCKET").map_err(|_| "BUCKET is not set")?;
    let s3 = s3_client().await;
    lambda_runtime::run(service_fn(|event: LambdaEvent<ApiGatewayProxyRequest>| {
        handle(&s3, &bucket, event.payload)
    }))
    .await
}

/// The S3 client, configured from the environment (credentials incl. `AWS_SESSION_TOKEN`,
/// `AWS_REGION`, `AWS_ENDPOINT_URL`), over HTTP or HTTPS (rustls with ring).
async fn s3_client() -> aws_sdk_s3::Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await;
    // Path-style addressing: `bucket.localhost` does not resolve everywhere.
    let s3_config = aws_sdk_s3::config::Builder::from(&config)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

fn respond(status: i64, content_type: &str, body: Option<Body>) -> ApiGatewayProxyResponse {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert("content-type", v);
    }
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status;
    r.headers = headers;
    r.is_base64_encoded = matches!(body, Some(Body::Binary(_)));
    r.body = body.map(|b| match b {
        Body::Binary(bytes) => Body::Text(base64::engine::general_purpose::STANDARD.encode(bytes)),
        other => other,
    });
    r
}

fn json_response(status: i64, v: &serde_json::Value) -> ApiGatewayProxyResponse {
    respond(status, "application/json", Some(Body::Text(v.to_string())))
}

fn not_found(id: &str) -> ApiGatewayProxyResponse {
    json_response(404, &json!({ "message": format!("item {id} not found") }))
}

async fn handle(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    req: ApiGatewayProxyRequest,
) -> Result<ApiGatewayProxyResponse, Error> {
    let id = req.path_parameters.get("id").cloned();
    match (req.http_method.clone(), id) {
        (Method::GET, None) => list(s3, bucket).await,
        (Method::GET, Some(id)) => get(s3, bucket, &id).await,
        (Method::PUT | Method::POST, Some(id)) => put(s3, bucket, &id, &req).await,
        (Method::DELETE, Some(id)) => delete(s3, bucket, &id).await,
        (m, _) => Ok(json_response(
            405,
            &json!({ "message": format!("{m} is not allowed here") }),
        )),
    }
}

async fn list(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<ApiGatewayProxyResponse, Error> {
    let mut items = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(describe)?;
        items.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
            _ => break,
        }
    }
    Ok(json_response(200, &json!({ "items": items })))
}

async fn get(s3: &aws_sdk_s3::Client, bucket: &str, id: &str) -> Result<ApiGatewayProxyResponse, Error> {
    let object = match s3.get_object().bucket(bucket).key(id).send().await {
        Ok(o) => o,
        Err(e) if e.code() == Some("NoSuchKey") => return Ok(not_found(id)),
        Err(e) => return Err(describe(e)),
    };
    let content_type = object.content_type().unwrap_or("application/octet-stream").to_owned();
    let bytes = object.body.collect().await?.into_bytes();
    let body = match String::from_utf8(bytes.to_vec()) {
        Ok(text) => Body::Text(text),
        Err(_) => Body::Binary(bytes.to_vec()),
    };
    Ok(respond(200, &content_type, Some(body)))
}

async fn put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    id: &str,
    req: &ApiGatewayProxyRequest,
) -> Result<ApiGatewayProxyResponse, Error> {
    let body = match req.body.as_deref() {
        None => Vec::new(),
        Some(b) if req.is_base64_encoded => base64::engine::general_purpose::STANDARD.decode(b)?,
        Some(b) => b.as_bytes().to_vec(),
    };
    let content_type = req
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let out = s3
        .put_object()
        .bucket(bucket)
        .key(id)
        .content_type(content_type)
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(describe)?;
    Ok(json_response(
        201,
        &json!({ "id": id, "etag": out.e_tag().unwrap_or_default().trim_matches('"') }),
    ))
}

async fn delete(s3: &aws_sdk_s3::Client, bucket: &str, id: &str) -> Result<ApiGatewayProxyResponse, Error> {
    // S3's DeleteObject succeeds for a missing key: ask first, to answer 404 as the API promises.
    match s3.head_object().bucket(bucket).key(id).send().await {
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {
            return Ok(not_found(id));
        }
        Err(e) => return Err(describe(e)),
    }
    s3.delete_object()
        .bucket(bucket)
        .key(id)
        .send()
        .await
        .map_err(describe)?;
    Ok(respond(204, "application/json", None))
}

/// An S3 error as a function error: the error code and message S3 answered with, or else
/// the whole error chain (connection refused, timeouts).
fn describe<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static, R: std::fmt::Debug>(
    e: SdkError<E, R>,
) -> Error {
    match e.code() {
        Some(code) => format!("{code}: {}", e.message().unwrap_or_default()).into(),
        None => DisplayErrorContext(e).to_string().into(),
    }
}
