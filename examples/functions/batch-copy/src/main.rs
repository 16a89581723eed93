//! S3 bucket A → S3 Batch Operations + Lambda → S3 bucket B: the function a `LambdaInvoke` job
//! calls for each manifest line. It copies the task's object into the bucket named by the job's
//! `UserArguments.targetBucket` (schema 2.0) or else the env `TARGET_BUCKET`, keeping its key
//! (under the optional `TARGET_PREFIX`), and answers each task with S3 Batch Operations'
//! result codes: `Succeeded`, `PermanentFailure` (the object or bucket does not exist, access
//! is denied) or `TemporaryFailure` (anything else; the job retries it).
//!
//! Handles invocation schema 1.0 (`s3BucketArn`) and 2.0 (`s3Bucket`, `userArguments`).

use aws_config::BehaviorVersion;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use lambda_runtime::{Error, LambdaEvent, service_fn, tracing};
use serde::Deserialize;
use serde_json::{Value, json};

/// The job event (both schemas).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchEvent {
    invocation_schema_version: String,
    invocation_id: String,
    #[serde(default)]
    job: Job,
    tasks: Vec<Task>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Job {
    #[serde(default)]
    id: String,
    #[serde(default)]
    user_arguments: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Task {
    task_id: String,
    s3_key: String,
    #[serde(default)]
    s3_version_id: Option<String>,
    /// Schema 1.0.
    #[serde(default)]
    s3_bucket_arn: Option<String>,
    /// Schema 2.0.
    #[serde(default)]
    s3_bucket: Option<String>,
}

// An instance handles one invocation at a time: a single-threaded runtime spares the
// cross-thread wake-ups of the multi-threaded one on every Runtime API call.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let s3 = s3_client().await;
    lambda_runtime::run(service_fn(|event: LambdaEvent<BatchEvent>| handle(&s3, event.payload))).await
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

async fn handle(s3: &aws_sdk_s3::Client, event: BatchEvent) -> Result<Value, Error> {
    let target = event
        .job
        .user_arguments
        .as_ref()
        .and_then(|a| a.get("targetBucket"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| std::env::var("TARGET_BUCKET").ok())
        .ok_or("no target bucket: set UserArguments.targetBucket or TARGET_BUCKET")?;
    let prefix = std::env::var("TARGET_PREFIX").unwrap_or_default();
    tracing::info!(
        job = event.job.id,
        tasks = event.tasks.len(),
        target,
        "batch invocation"
    );
    let mut results = Vec::with_capacity(event.tasks.len());
    for task in &event.tasks {
        let (code, message) = match copy(s3, task, &target, &prefix).await {
            Ok(m) => ("Succeeded", m),
            Err((code, m)) => (code, m),
        };
        results.push(json!({ "taskId": task.task_id, "resultCode": code, "resultString": message }));
    }
    Ok(json!({
        "invocationSchemaVersion": event.invocation_schema_version,
        "treatMissingKeysAs": "PermanentFailure",
        "invocationId": event.invocation_id,
        "results": results,
    }))
}

/// Copies one task's object; the error is (result code, message).
async fn copy(
    s3: &aws_sdk_s3::Client,
    task: &Task,
    target: &str,
    prefix: &str,
) -> Result<String, (&'static str, String)> {
    let bucket = bucket_of(task).ok_or(("PermanentFailure", "the task names no bucket".to_owned()))?;
    let key = decode_key(&task.s3_key).map_err(|e| ("PermanentFailure", format!("bad key {}: {e}", task.s3_key)))?;
    let source = match &task.s3_version_id {
        Some(v) => format!("{bucket}/{}?versionId={v}", encode_path(&key)),
        None => format!("{bucket}/{}", encode_path(&key)),
    };
    let target_key = format!("{prefix}{key}");
    s3.copy_object()
        .bucket(target)
        .key(&target_key)
        .copy_source(source)
        .send()
        .await
        .map_err(|e| classify(&key, e))?;
    Ok(format!("copied to s3://{target}/{target_key}"))
}

/// The bucket of a task: `s3Bucket` (2.0) or the name after the last `:` of `s3BucketArn` (1.0).
fn bucket_of(task: &Task) -> Option<String> {
    task.s3_bucket.clone().or_else(|| {
        task.s3_bucket_arn
            .as_deref()
            .and_then(|arn| arn.rsplit(':').next())
            .map(|b| b.trim_start_matches("bucket/").to_owned())
    })
}

/// Missing objects and buckets and denied access will not get better by retrying.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    key: &str,
    e: SdkError<E, R>,
) -> (&'static str, String) {
    match e.code() {
        Some(code @ ("NoSuchKey" | "NoSuchBucket" | "AccessDenied" | "InvalidObjectState")) => (
            "PermanentFailure",
            format!("{code}: {} ({key})", e.message().unwrap_or_default()),
        ),
        Some(code) => (
            "TemporaryFailure",
            format!("{code}: {} ({key})", e.message().unwrap_or_default()),
        ),
        None => ("TemporaryFailure", DisplayErrorContext(e).to_string()),
    }
}

/// Manifest keys are URL-encoded (`+` or `%20` for a space).
fn decode_key(key: &str) -> Result<String, std::str::Utf8Error> {
    let spaced = key.replace('+', " ");
    Ok(percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()?
        .into_owned())
}

/// `x-amz-copy-source` wants the key URL-encoded, `/` kept.
fn encode_path(key: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(key, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_keys_and_events() {
        let v1: BatchEvent = serde_json::from_value(json!({
            "invocationSchemaVersion": "1.0", "invocationId": "i",
            "job": {"id": "j"},
            "tasks": [{"taskId": "t", "s3Key": "a%20b+c.txt", "s3VersionId": null, "s3BucketArn": "arn:aws:s3:::src"}]
        }))
        .unwrap();
        assert_eq!(bucket_of(&v1.tasks[0]).as_deref(), Some("src"));
        assert_eq!(decode_key(&v1.tasks[0].s3_key).unwrap(), "a b c.txt");
        let v2: BatchEvent = serde_json::from_value(json!({
            "invocationSchemaVersion": "2.0", "invocationId": "i",
            "job": {"id": "j", "userArguments": {"targetBucket": "dst"}},
            "tasks": [{"taskId": "t", "s3Key": "k", "s3VersionId": null, "s3Bucket": "src2"}]
        }))
        .unwrap();
        assert_eq!(bucket_of(&v2.tasks[0]).as_deref(), Some("src2"));
        assert_eq!(
            v2.job
                .user_arguments
                .unwrap()
                .get("targetBucket")
                .and_then(Value::as_str),
            Some("dst")
        );
        assert_eq!(encode_path("dir/a b+c.txt"), "dir/a%20b%2Bc.txt");
    }
}
