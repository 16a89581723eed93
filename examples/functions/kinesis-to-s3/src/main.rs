//! A Kinesis event source handler: writes each batch as one JSON Lines object
//! `batches/<shardId>/<first sequence number>.jsonl` into the bucket `TARGET_BUCKET`, one line
//! per record: `{"partitionKey": …, "sequenceNumber": …, "data": <the data as UTF-8 text>}`.
//!
//! Errors propagate, so Lambda retries the batch (the object key makes the retry idempotent).

use aws_config::BehaviorVersion;
use aws_lambda_events::kinesis::KinesisEvent;
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
    let bucket = std::env::var("TARGET_BUCKET").map_err(|_| "TARGET_BUCKET is not set")?;
    let s3 = s3_client().await;
    lambda_runtime::run(service_fn(|event: LambdaEvent<KinesisEvent>| {
        write_batch(&s3, &bucket, event.payload)
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

async fn write_batch(s3: &aws_sdk_s3::Client, bucket: &str, event: KinesisEvent) -> Result<Value, Error> {
    let Some(first) = event.records.first() else {
        return Ok(json!({ "records": 0 }));
    };
    let key = batch_key(first.event_id.as_deref(), &first.kinesis.sequence_number)?;
    let mut body = Vec::new();
    for record in &event.records {
        let line = json!({
            "partitionKey": record.kinesis.partition_key,
            "sequenceNumber": record.kinesis.sequence_number,
            "data": String::from_utf8_lossy(&record.kinesis.data.0),
        });
        serde_json::to_writer(&mut body, &line)?;
        body.push(b'\n');
    }
    tracing::info!(
        bucket,
        key,
        records = event.records.len(),
        size = body.len(),
        "writing batch"
    );
    s3.put_object()
        .bucket(bucket)
        .key(&key)
        .content_type("application/x-ndjson")
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|e| format!("writing s3://{bucket}/{key}: {}", describe(e)))?;
    Ok(json!({ "records": event.records.len() }))
}

/// An S3 error in one line: the error code and message S3 answered with, or else the whole
/// error chain (connection refused, timeouts).
fn describe<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(e: SdkError<E, R>) -> String {
    match e.code() {
        Some(code) => format!("{code}: {}", e.message().unwrap_or_default()),
        None => DisplayErrorContext(e).to_string(),
    }
}

/// `batches/<shardId>/<sequence number>.jsonl`. The shard id is the part of the record's
/// `eventID` (`shardId-000000000000:4954…`) before the colon.
fn batch_key(event_id: Option<&str>, sequence_number: &str) -> Result<String, Error> {
    let shard_id = event_id
        .and_then(|id| id.split_once(':'))
        .map(|(shard_id, _)| shard_id)
        .ok_or_else(|| format!("cannot read a shard id from the eventID {event_id:?}"))?;
    Ok(format!("batches/{shard_id}/{sequence_number}.jsonl"))
}

#[cfg(test)]
mod tests {
    use super::batch_key;

    #[test]
    fn key_from_the_event_id() {
        let key = batch_key(
            Some("shardId-000000000002:49590338271490256608559692538361571095921575989136588898"),
            "4959",
        )
        .unwrap();
        assert_eq!(key, "batches/shardId-000000000002/4959.jsonl");
        assert!(batch_key(None, "1").is_err());
        assert!(batch_key(Some("no-colon"), "1").is_err());
    }
}
