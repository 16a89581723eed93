//! The API Gateway engine's port, implemented over the Lambda engine: [`GatewayLambda`]
//! invokes an `AWS_PROXY` integration's function synchronously, but only after checking
//! that the function's resource policy lets `apigateway.amazonaws.com` invoke it for the
//! method's source ARN (`arn:aws:execute-api:<region>:<account>:<api>/<stage>/<METHOD>/<path>`)
//! and the API owner's account, as AddPermission grants it. Without that permission the call
//! fails with [`InvokeError::Denied`], which the gateway answers with 500
//! `{"message": "Internal server error"}`, as AWS does.

use std::sync::Arc;

use bytes::Bytes;
use kd_functions::Functions;
use kd_gateway::{FunctionInvoker, InvokeError, InvokeFuture, InvokeResult};

/// The service principal API Gateway invokes functions as.
const APIGATEWAY: &str = "apigateway.amazonaws.com";

/// Lambda invocations for API Gateway.
pub struct GatewayLambda {
    functions: Arc<Functions>,
}

impl GatewayLambda {
    /// Over the functions engine.
    pub fn new(functions: Arc<Functions>) -> Self {
        Self { functions }
    }
}

impl FunctionInvoker for GatewayLambda {
    fn invoke<'a>(
        &'a self,
        function_arn: &'a str,
        source_arn: &'a str,
        source_account: &'a str,
        payload: Bytes,
    ) -> InvokeFuture<'a> {
        Box::pin(async move {
            if self.functions.lookup_arn(function_arn).is_none() {
                return Err(InvokeError::NotFound(function_arn.to_owned()));
            }
            if !self
                .functions
                .service_may_invoke(function_arn, APIGATEWAY, source_arn, source_account)
            {
                return Err(InvokeError::Denied(format!(
                    "the resource policy of {function_arn} does not let {APIGATEWAY} invoke it from {source_arn}"
                )));
            }
            match self.functions.invoke_arn(function_arn, payload).await {
                Ok(out) => Ok(InvokeResult {
                    payload: out.payload,
                    function_error: out.function_error,
                }),
                Err(e @ kd_functions::Error::TooManyRequests { .. }) => Err(InvokeError::Throttled(e.to_string())),
                Err(e @ kd_functions::Error::ResourceNotFound(_)) => Err(InvokeError::NotFound(e.to_string())),
                Err(e) => Err(InvokeError::Failed(e.to_string())),
            }
        })
    }
}
