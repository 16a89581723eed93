//! The ports the engine acts through: invoking a Lambda function for an `AWS_PROXY`
//! integration ([`FunctionInvoker`]) and sending an `HTTP_PROXY` integration's request to its
//! backend ([`HttpForwarder`]). The composition root implements them over the Lambda engine
//! (checking the function's resource policy for `apigateway.amazonaws.com` with the method's
//! source ARN) and over an HTTP/1.1 client; [`testing::FakeInvoker`] and
//! [`testing::FakeForwarder`] are the in-memory fakes for engine and adapter tests. The engine
//! itself opens no sockets.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

/// What a synchronous invocation answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeResult {
    /// The function's result document (or its error document with `function_error`).
    pub payload: Bytes,
    /// `X-Amz-Function-Error` (`Unhandled`) when the function failed.
    pub function_error: Option<String>,
}

/// Why a function could not be invoked at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The function's resource policy does not let API Gateway invoke it for this source ARN.
    #[error("Execution failed due to configuration error: Invalid permissions on Lambda function: {0}")]
    Denied(String),
    /// No such function.
    #[error("Execution failed due to configuration error: function not found: {0}")]
    NotFound(String),
    /// Lambda throttled the call.
    #[error("Lambda throttled the invocation: {0}")]
    Throttled(String),
    /// Anything else (Lambda service errors).
    #[error("Lambda invocation failed: {0}")]
    Failed(String),
}

/// The future an invoker returns (boxed, so the trait is usable as `dyn`).
pub type InvokeFuture<'a> = Pin<Box<dyn Future<Output = Result<InvokeResult, InvokeError>> + Send + 'a>>;

/// Synchronous Lambda invocation on behalf of API Gateway.
pub trait FunctionInvoker: Send + Sync + 'static {
    /// Invokes `function_arn` with `payload` (the proxy event) as `apigateway.amazonaws.com`
    /// for `source_arn` (`arn:aws:execute-api:<region>:<account>:<api>/<stage>/<METHOD>/<path>`)
    /// in `source_account`.
    fn invoke<'a>(
        &'a self,
        function_arn: &'a str,
        source_arn: &'a str,
        source_account: &'a str,
        payload: Bytes,
    ) -> InvokeFuture<'a>;
}

/// The largest backend answer an `HTTP_PROXY` integration relays: 10 MiB, API Gateway's
/// payload limit.
pub const MAX_FORWARD_RESPONSE_BYTES: usize = 10 * 1024 * 1024;

/// Why a forwarded request got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The backend could not be reached: name resolution, connection refused or reset, a TLS
    /// handshake that failed, a scheme the forwarder does not speak.
    #[error("Execution failed due to configuration error: {0}")]
    Unreachable(String),
    /// The backend answered with a body over [`MAX_FORWARD_RESPONSE_BYTES`].
    #[error("Integration response of reported length {0} is larger than allowed maximum of 10485760 bytes")]
    TooLarge(u64),
    /// The exchange broke after it started (a malformed answer, the connection closed early).
    #[error("Execution failed: {0}")]
    Failed(String),
}

/// The future a forwarder returns (boxed, so the trait is usable as `dyn`).
pub type ForwardFuture<'a> = Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, ForwardError>> + Send + 'a>>;

/// One HTTP exchange with an `HTTP_PROXY` integration's backend.
pub trait HttpForwarder: Send + Sync + 'static {
    /// Sends `req` (an absolute URI; `Host` and every other header already set by the engine,
    /// the body complete) and answers the backend's status, headers and whole body (at most
    /// [`MAX_FORWARD_RESPONSE_BYTES`]). The engine bounds the call with the integration's
    /// timeout; the forwarder need not.
    fn forward(&self, req: http::Request<Bytes>) -> ForwardFuture<'_>;
}

/// In-memory fakes for tests of the engine and the adapter.
pub mod testing {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    /// How the fake backend answers one request.
    pub type ForwardHandler =
        dyn Fn(&http::Request<Bytes>) -> Result<http::Response<Bytes>, ForwardError> + Send + Sync;

    /// A fake `HTTP_PROXY` backend: answers with a closure, records every request, optionally
    /// sleeps first.
    pub struct FakeForwarder {
        handler: Box<ForwardHandler>,
        delay: Duration,
        calls: Mutex<Vec<http::Request<Bytes>>>,
    }

    impl FakeForwarder {
        /// A fake answering with `handler`.
        pub fn new(
            handler: impl Fn(&http::Request<Bytes>) -> Result<http::Response<Bytes>, ForwardError> + Send + Sync + 'static,
        ) -> Self {
            Self {
                handler: Box::new(handler),
                delay: Duration::ZERO,
                calls: Mutex::new(Vec::new()),
            }
        }

        /// A fake whose backend is never reachable (for tests without `HTTP_PROXY` methods).
        pub fn unreachable() -> Self {
            Self::new(|_| Err(ForwardError::Unreachable("connection refused".into())))
        }

        /// The same fake, sleeping `delay` before answering.
        pub fn with_delay(mut self, delay: Duration) -> Self {
            self.delay = delay;
            self
        }

        /// Every request so far.
        pub fn calls(&self) -> Vec<http::Request<Bytes>> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
    }

    impl HttpForwarder for FakeForwarder {
        fn forward(&self, req: http::Request<Bytes>) -> ForwardFuture<'_> {
            Box::pin(async move {
                if !self.delay.is_zero() {
                    tokio::time::sleep(self.delay).await;
                }
                let out = (self.handler)(&req);
                if let Ok(mut c) = self.calls.lock() {
                    c.push(req);
                }
                out
            })
        }
    }

    /// How the fake answers one call: `(function_arn, event) → result`.
    pub type Handler = dyn Fn(&str, &serde_json::Value) -> Result<InvokeResult, InvokeError> + Send + Sync;

    /// A fake Lambda: answers with a closure, records every call, optionally sleeps first.
    pub struct FakeInvoker {
        handler: Box<Handler>,
        delay: Duration,
        calls: Mutex<Vec<(String, String, serde_json::Value)>>,
    }

    impl FakeInvoker {
        /// A fake answering with `handler`.
        pub fn new(
            handler: impl Fn(&str, &serde_json::Value) -> Result<InvokeResult, InvokeError> + Send + Sync + 'static,
        ) -> Self {
            Self {
                handler: Box::new(handler),
                delay: Duration::ZERO,
                calls: Mutex::new(Vec::new()),
            }
        }

        /// A fake that echoes the event back as a proxy response `{"statusCode":200,"body":<event>}`.
        pub fn echo() -> Self {
            Self::new(|_, event| {
                let out = serde_json::json!({
                    "statusCode": 200,
                    "headers": {"Content-Type": "application/json"},
                    "body": event.to_string(),
                });
                Ok(InvokeResult {
                    payload: Bytes::from(out.to_string()),
                    function_error: None,
                })
            })
        }

        /// The same fake, sleeping `delay` before answering.
        pub fn with_delay(mut self, delay: Duration) -> Self {
            self.delay = delay;
            self
        }

        /// Every call so far: `(function_arn, source_arn, event)`.
        pub fn calls(&self) -> Vec<(String, String, serde_json::Value)> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
    }

    impl FunctionInvoker for FakeInvoker {
        fn invoke<'a>(
            &'a self,
            function_arn: &'a str,
            source_arn: &'a str,
            _source_account: &'a str,
            payload: Bytes,
        ) -> InvokeFuture<'a> {
            Box::pin(async move {
                if !self.delay.is_zero() {
                    tokio::time::sleep(self.delay).await;
                }
                let event: serde_json::Value =
                    serde_json::from_slice(&payload).map_err(|e| InvokeError::Failed(e.to_string()))?;
                if let Ok(mut c) = self.calls.lock() {
                    c.push((function_arn.to_owned(), source_arn.to_owned(), event.clone()));
                }
                (self.handler)(function_arn, &event)
            })
        }
    }
}
