//! Custom resources (`AWS::CloudFormation::CustomResource`, `Custom::*`) backed by a Lambda
//! `ServiceToken`, with CloudFormation's protocol (`kd_stacks::custom`): the function is
//! invoked asynchronously (an `Event` invoke through the Lambda API, as the acting
//! principal, so the functions engine runs it with its role and retry policy) with the
//! request event; its `ResponseURL` is a presigned-looking URL on our edge, which the
//! CloudFormation adapter serves; the answer's Status, PhysicalResourceId, Data (GetAtt),
//! Reason and NoEcho are honoured; no answer within the timeout fails the resource.

use std::time::{SystemTime, UNIX_EPOCH};

use kd_stacks::custom::{CustomRequest, CustomResponse, Expected, RESPONSE_PATH, request_event};
use kd_stacks::{ProvisionError, Provisioned, ResourceRequest};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{ServiceProvisioner, failed, invalid, s};
use crate::client::{Client, amz_date, hex, uri_encode};

/// Whether the type is a custom resource.
pub(super) fn is_custom(resource_type: &str) -> bool {
    resource_type == "AWS::CloudFormation::CustomResource" || resource_type.starts_with("Custom::")
}

/// The function a `ServiceToken` names (a Lambda ARN); SNS topics are refused.
fn function_of(token: &str) -> Result<&str, ProvisionError> {
    let mut parts = token.splitn(7, ':');
    let (arn, _, service) = (parts.next(), parts.next(), parts.next());
    if arn == Some("arn") && service == Some("lambda") {
        return Ok(token);
    }
    if arn == Some("arn") && service == Some("sns") {
        return Err(invalid(
            "SNS-backed custom resources are not supported by kinesis-data (Lambda ServiceTokens are)",
        ));
    }
    Err(invalid(format!(
        "Invalid ServiceToken: {token} is not a Lambda function ARN"
    )))
}

/// What a request needs beyond the properties.
pub(super) struct Call<'a> {
    pub request_type: &'a str,
    pub physical_id: Option<&'a str>,
    pub old_properties: Option<&'a Value>,
}

impl ServiceProvisioner {
    /// A response URL under our edge that looks like a presigned S3 URL (the token is the
    /// secret; the query is decoration, as handlers pass the URL on untouched).
    fn response_url(&self, token: &str, region: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let date = amz_date(now);
        let day = date.get(..8).unwrap_or_default();
        // A fixed key id: the URL must not reveal the server's keys.
        let credential = format!("AKIAKINESISDATACFN00/{day}/{region}/s3/aws4_request");
        let expires = self.custom_timeout.as_secs().max(1).to_string();
        let signature = hex(&Sha256::digest(format!("{token}{date}").as_bytes()));
        format!(
            "{}{RESPONSE_PATH}{token}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={}&X-Amz-Date={date}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host&X-Amz-Signature={signature}",
            self.endpoint,
            uri_encode(&credential, false)
        )
    }

    /// Sends one request to the custom resource's function and waits for its answer.
    pub(super) async fn custom(
        &self,
        c: &Client,
        r: &ResourceRequest<'_>,
        call: Call<'_>,
    ) -> Result<CustomResponse, ProvisionError> {
        let p = r.properties;
        let token_arn = s(p, "ServiceToken").ok_or_else(|| invalid("Property ServiceToken cannot be empty."))?;
        let function = function_of(&token_arn)?;
        let request_id = uuid::Uuid::new_v4().to_string();
        let (token, answer) = self.responses.register(Expected {
            stack_id: r.stack.stack_id.clone(),
            request_id: request_id.clone(),
            logical_id: r.logical_id.to_owned(),
        });
        let url = self.response_url(&token, &r.stack.region);
        let event = request_event(&CustomRequest {
            request_type: call.request_type,
            service_token: &token_arn,
            response_url: &url,
            stack_id: &r.stack.stack_id,
            request_id: &request_id,
            resource_type: r.resource_type,
            logical_id: r.logical_id,
            physical_id: call.physical_id,
            properties: p,
            old_properties: call.old_properties,
        });
        let body = serde_json::to_vec(&event).map_err(|e| invalid(e.to_string()))?;
        let path = format!("/2015-03-31/functions/{}/invocations", uri_encode(function, false));
        let invoked = c
            .request_as(
                "lambda",
                "POST",
                &path,
                &[],
                &[("content-type", "application/json"), ("x-amz-invocation-type", "Event")],
                &body,
            )
            .await;
        if let Err(e) = invoked {
            self.responses.forget(&token);
            return Err(failed(e));
        }
        let outcome = match tokio::time::timeout(self.custom_timeout, answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) | Err(_) => {
                self.responses.forget(&token);
                return Err(invalid(format!(
                    "CloudFormation did not receive a response from your Custom Resource. Please check your logs for requestId [{request_id}]. If you are using the Python cfn-response module, you may need to update your Lambda function code so that CloudFormation can attach the updated version."
                )));
            }
        };
        let response = outcome.map_err(invalid)?;
        if !response.success {
            return Err(invalid(format!(
                "Received response status [FAILED] from custom resource. Message returned: {} (RequestId: {request_id})",
                response.reason.as_deref().unwrap_or("")
            )));
        }
        Ok(response)
    }
}

/// What a successful answer makes of the resource: Ref is its physical id, GetAtt reads
/// `Data`.
pub(super) fn provisioned(response: CustomResponse, fallback_id: &str) -> Provisioned {
    let id = response.physical_id.unwrap_or_else(|| fallback_id.to_owned());
    let mut p = Provisioned::named(id, response.data);
    p.no_echo = response.no_echo;
    p
}
