//! Returns the event it got, with the invocation's context:
//! `{"event": …, "requestId": …, "functionName": …, "version": …, "memory": …, "invokedFunctionArn": …}`.
//!
//! `{"sleepMs": N}` in the event sleeps N ms first; `{"fail": "message"}` fails the invocation
//! with that message (error type `EchoFailure`). For tests and warm-invoke benchmarks.

use std::time::Duration;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn, tracing};
use serde_json::{Value, json};

// An instance handles one invocation at a time: a single-threaded runtime spares the
// cross-thread wake-ups of the multi-threaded one on every Runtime API call.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing::init_default_subscriber();
    lambda_runtime::run(service_fn(echo)).await
}

async fn echo(event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let (payload, context) = event.into_parts();
    if let Some(ms) = payload.get("sleepMs").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(message) = payload.get("fail") {
        let message = message.as_str().map_or_else(|| message.to_string(), str::to_owned);
        return Err(Diagnostic {
            error_type: "EchoFailure".to_owned(),
            error_message: message,
        });
    }
    Ok(json!({
        "event": payload,
        "requestId": context.request_id,
        "functionName": context.env_config.function_name,
        "version": context.env_config.version,
        "memory": context.env_config.memory,
        "invokedFunctionArn": context.invoked_function_arn,
    }))
}
