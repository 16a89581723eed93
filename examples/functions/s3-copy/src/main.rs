//! S3 bucket A → Lambda → S3 bucket B: copies every object an S3 event notification names into
//! the bucket `TARGET_BUCKET` (under the optional `TARGET_PREFIX`), keeping its key.
//!
//! Errors propagate, so Lambda retries the event (asynchronous invokes retry twice).

use aws_config::BehaviorVersion;
use aws_lambda_events::s3::{S3Event, S3EventRecord};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use lambda_runtime::{Error, LambdaEvent, service_fn, tracing};
use serde_json::{Value, json};

// An instance handles one invocation at a time: a single-threaded runtime spares the
// cross-thread wake-ups of the multi-threaded one on every Runtime API call.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let target = Target {
        bucket: std::env::var("TARGET_BUCKET").map_err(|_| "TARGET_BUCKET is not set")?,
        prefix: std::env::var("TARGET_PREFIX").unwrap_or_default(),
    };
    let s3 = s3_client().await;
    lambda_runtime::run(service_fn(|event: LambdaEvent<S3Event>| {
        copy_all(&s3, &target, event.payload)
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
    aws_sdk_s3::Client::new(&config)
}

struct Target {
    bucket: String,
    prefix: String,
}

async fn copy_all(s3: &aws_sdk_s3::Client, target: &Target, event: S3Event) -> Result<Value, Error> {
    let mut copied = 0;
    for record in event.records {
        if copy(s3, target, &record).await? {
            copied += 1;
        }
    }
    Ok(json!({ "copied": copied }))
}

/// Copies the object of one record; false when the record is not about a new object.
async fn copy(s3: &aws_sdk_s3::Client, target: &Target, record: &S3EventRecord) -> Result<bool, Error> {
    let event_name = record.event_name.as_deref().unwrap_or_default();
    let (Some(bucket), Some(raw_key)) = (&record.s3.bucket.name, &record.s3.object.key) else {
        return Err(format!("{event_name} record without a bucket name or an object key").into());
    };
    if event_name.starts_with("ObjectRemoved") {
        tracing::info!(event_name, bucket, key = raw_key, "skipped");
        return Ok(false);
    }
    let key = decode_key(raw_key)?;
    let target_key = format!("{}{key}", target.prefix);
    tracing::info!(bucket, key, target_bucket = target.bucket, target_key, "copying");
    let failed = |e: &dyn std::fmt::Display| format!("copying s3://{bucket}/{key}: {e}");
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .map_err(|e| failed(&describe(e)))?;
    let content_type = object.content_type;
    let body = object.body.collect().await.map_err(|e| failed(&e))?.into_bytes();
    s3.put_object()
        .bucket(&target.bucket)
        .key(target_key)
        .set_content_type(content_type)
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|e| failed(&describe(e)))?;
    Ok(true)
}

/// An S3 error in one line: the error code and message S3 answered with, or else the whole
/// error chain (connection refused, timeouts).
fn describe<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(e: SdkError<E, R>) -> String {
    match e.code() {
        Some(code) => format!("{code}: {}", e.message().unwrap_or_default()),
        None => DisplayErrorContext(e).to_string(),
    }
}

/// Decodes an object key as S3 event notifications carry it: form-urlencoded, `+` for a space
/// and `%XX` for other bytes (`red+flower%281%29.jpg` is `red flower(1).jpg`).
fn decode_key(key: &str) -> Result<String, std::str::Utf8Error> {
    let spaced = key.replace('+', " ");
    Ok(percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()?
        .into_owned())
}

#[cfg(test)]
mod tests {
    use super::decode_key;

    #[test]
    fn decodes_form_urlencoded_keys() {
        assert_eq!(decode_key("red+flower%281%29.jpg").unwrap(), "red flower(1).jpg");
        assert_eq!(decode_key("a/b%2Bc").unwrap(), "a/b+c");
        assert_eq!(decode_key("plain/key.txt").unwrap(), "plain/key.txt");
        assert_eq!(decode_key("caf%C3%A9+%25").unwrap(), "café %");
        assert!(decode_key("bad%FF").is_err());
    }
}
