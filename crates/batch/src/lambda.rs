//! The `LambdaInvoke` contract: one task per synchronous invocation.
//!
//! Event (schema 1.0):
//! `{"invocationSchemaVersion":"1.0","invocationId":…,"job":{"id":…},"tasks":[{"taskId":…,
//! "s3Key":…,"s3VersionId":…|null,"s3BucketArn":"arn:aws:s3:::<bucket>"}]}`.
//! Schema 2.0: `job` also has `userArguments` (an object, `{}` when none were given) and the
//! task names the bucket as `"s3Bucket":"<bucket>"` instead of `s3BucketArn`. `s3Key` is the
//! key as written in the manifest (URL-encoded). `taskId` is the same for every attempt of a
//! task; `invocationId` is new for every invocation.
//!
//! Response: `{"invocationSchemaVersion":…,"treatMissingKeysAs":…,"invocationId":…,
//! "results":[{"taskId":…,"resultCode":"Succeeded|TemporaryFailure|PermanentFailure",
//! "resultString":…}]}`. The entry whose `taskId` matches decides; a task with no entry gets
//! `treatMissingKeysAs` (default PermanentFailure). A function error, or a response that is
//! not such a JSON object, fails the task with
//! `Lambda returned function error: <response body>`.

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::manifest::TaskRow;
use crate::model::LambdaInvoke;
use crate::ports::InvokeOutput;

/// Largest response payload parsed (Lambda's 6 MB synchronous limit).
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// The `taskId` of a task (opaque, stable across attempts).
pub(crate) fn task_id(job_id: &str, index: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{job_id}:{index}"))
}

/// A fresh `invocationId`.
pub(crate) fn invocation_id() -> String {
    base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().simple().to_string())
}

/// The event of one task.
pub(crate) fn event(job_id: &str, invocation_id: &str, task_id: &str, op: &LambdaInvoke, row: &TaskRow) -> Bytes {
    let v = if op.schema_2() {
        let args = op.user_arguments.clone().unwrap_or_default();
        json!({
            "invocationSchemaVersion": "2.0",
            "invocationId": invocation_id,
            "job": {"id": job_id, "userArguments": args},
            "tasks": [{
                "taskId": task_id,
                "s3Key": row.key,
                "s3VersionId": row.version,
                "s3Bucket": &*row.bucket,
            }]
        })
    } else {
        json!({
            "invocationSchemaVersion": "1.0",
            "invocationId": invocation_id,
            "job": {"id": job_id},
            "tasks": [{
                "taskId": task_id,
                "s3Key": row.key,
                "s3VersionId": row.version,
                "s3BucketArn": format!("arn:aws:s3:::{}", row.bucket),
            }]
        })
    };
    Bytes::from(v.to_string())
}

/// What one invocation decided for its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// `Succeeded` with its `resultString`.
    Succeeded(String),
    /// `TemporaryFailure`: run again (while attempts remain).
    Temporary(String),
    /// `PermanentFailure` (or an unusable response): the message.
    Permanent(String),
}

#[derive(Deserialize)]
struct Response {
    #[serde(rename = "treatMissingKeysAs")]
    treat_missing_keys_as: Option<String>,
    results: Option<Vec<ResultEntry>>,
}

#[derive(Deserialize)]
struct ResultEntry {
    #[serde(rename = "taskId")]
    task_id: Option<String>,
    #[serde(rename = "resultCode")]
    result_code: Option<String>,
    #[serde(rename = "resultString")]
    result_string: Option<Value>,
}

fn function_error(payload: &[u8]) -> Verdict {
    let shown = &payload[..payload.len().min(crate::MAX_RESULT_MESSAGE)];
    Verdict::Permanent(format!(
        "Lambda returned function error: {}",
        String::from_utf8_lossy(shown)
    ))
}

fn text(v: Option<Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    }
}

/// Reads an invocation's answer for `task_id`.
pub(crate) fn verdict(out: &InvokeOutput, task_id: &str) -> Verdict {
    if out.function_error.is_some() || out.payload.len() > MAX_RESPONSE_BYTES {
        return function_error(&out.payload);
    }
    let Ok(resp) = serde_json::from_slice::<Response>(&out.payload) else {
        return function_error(&out.payload);
    };
    let entry = resp
        .results
        .into_iter()
        .flatten()
        .find(|r| r.task_id.as_deref() == Some(task_id));
    match entry {
        Some(e) => {
            let s = text(e.result_string);
            match e.result_code.as_deref() {
                Some("Succeeded") => Verdict::Succeeded(s),
                Some("TemporaryFailure") => Verdict::Temporary(s),
                Some("PermanentFailure") => Verdict::Permanent(s),
                _ => function_error(&out.payload),
            }
        }
        None => {
            let msg = "The task was missing from the Lambda function's results".to_owned();
            match resp.treat_missing_keys_as.as_deref() {
                Some("Succeeded") => Verdict::Succeeded(String::new()),
                Some("TemporaryFailure") => Verdict::Temporary(msg),
                _ => Verdict::Permanent(msg),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn out(body: &str) -> InvokeOutput {
        InvokeOutput {
            payload: Bytes::from(body.to_owned()),
            function_error: None,
        }
    }

    #[test]
    fn event_shapes() {
        let row = TaskRow {
            bucket: Arc::from("bkt"),
            key: "a%20b".into(),
            version: None,
        };
        let op1 = LambdaInvoke {
            function_arn: "f".into(),
            invocation_schema_version: Some("1.0".into()),
            user_arguments: None,
        };
        let v: Value = serde_json::from_slice(&event("j", "inv", "t", &op1, &row)).expect("json");
        assert_eq!(v["tasks"][0]["s3BucketArn"], "arn:aws:s3:::bkt");
        assert_eq!(v["tasks"][0]["s3Key"], "a%20b");
        assert_eq!(v["tasks"][0]["s3VersionId"], Value::Null);
        assert!(v["job"].get("userArguments").is_none());
        let op2 = LambdaInvoke {
            invocation_schema_version: Some("2.0".into()),
            user_arguments: Some([("k".to_owned(), "v".to_owned())].into()),
            ..op1
        };
        let v: Value = serde_json::from_slice(&event("j", "inv", "t", &op2, &row)).expect("json");
        assert_eq!(v["tasks"][0]["s3Bucket"], "bkt");
        assert!(v["tasks"][0].get("s3BucketArn").is_none());
        assert_eq!(v["job"]["userArguments"]["k"], "v");
    }

    #[test]
    fn verdicts() {
        let ok = r#"{"results":[{"taskId":"t","resultCode":"Succeeded","resultString":"done"}]}"#;
        assert_eq!(verdict(&out(ok), "t"), Verdict::Succeeded("done".into()));
        let missing = r#"{"treatMissingKeysAs":"Succeeded","results":[]}"#;
        assert_eq!(verdict(&out(missing), "t"), Verdict::Succeeded(String::new()));
        assert!(matches!(verdict(&out(r#"{"results":[]}"#), "t"), Verdict::Permanent(_)));
        assert_eq!(
            verdict(&out("nope"), "t"),
            Verdict::Permanent("Lambda returned function error: nope".into())
        );
        let err = InvokeOutput {
            payload: Bytes::from_static(br#"{"errorMessage":"boom"}"#),
            function_error: Some("Unhandled".into()),
        };
        assert_eq!(
            verdict(&err, "t"),
            Verdict::Permanent(r#"Lambda returned function error: {"errorMessage":"boom"}"#.into())
        );
    }
}
