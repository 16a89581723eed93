//! Custom resources' protocol, as CloudFormation speaks it: the request event a handler
//! receives ([`request_event`], properties with every scalar stringified as CloudFormation
//! sends them), the response object it PUTs to the `ResponseURL` ([`CustomResponse`], with
//! CloudFormation's checks), and the registry of requests waiting for their answer
//! ([`CustomResponses`]): the provisioner registers a request and awaits it, the
//! CloudFormation adapter delivers what arrives at the URL. No HTTP here.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

/// The path under the edge where response URLs live: `<RESPONSE_PATH><token>`.
pub const RESPONSE_PATH: &str = "/_kinesis-data/cfn-response/";
/// The largest response object CloudFormation accepts.
pub const MAX_RESPONSE_BYTES: usize = 4096;

/// Every value of a property tree with scalars as strings (numbers, booleans; `null` stays),
/// as CloudFormation hands properties to custom resource handlers.
pub fn stringify(v: &Value) -> Value {
    match v {
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Array(items) => Value::Array(items.iter().map(stringify).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), stringify(v))).collect()),
        other => other.clone(),
    }
}

/// What one custom resource request says.
#[derive(Debug, Clone)]
pub struct CustomRequest<'a> {
    /// `Create`, `Update` or `Delete`.
    pub request_type: &'a str,
    /// `ServiceToken`.
    pub service_token: &'a str,
    /// `ResponseURL`.
    pub response_url: &'a str,
    /// `StackId`.
    pub stack_id: &'a str,
    /// `RequestId`.
    pub request_id: &'a str,
    /// `ResourceType` (`Custom::X` or `AWS::CloudFormation::CustomResource`).
    pub resource_type: &'a str,
    /// `LogicalResourceId`.
    pub logical_id: &'a str,
    /// `PhysicalResourceId` (Update and Delete).
    pub physical_id: Option<&'a str>,
    /// The properties (evaluated; stringified here).
    pub properties: &'a Value,
    /// The previous properties (Update).
    pub old_properties: Option<&'a Value>,
}

/// The event CloudFormation sends a custom resource's function.
pub fn request_event(r: &CustomRequest<'_>) -> Value {
    let mut event = json!({
        "RequestType": r.request_type,
        "ServiceToken": r.service_token,
        "ResponseURL": r.response_url,
        "StackId": r.stack_id,
        "RequestId": r.request_id,
        "LogicalResourceId": r.logical_id,
        "ResourceType": r.resource_type,
        "ResourceProperties": stringify(r.properties),
    });
    if let Some(p) = r.physical_id {
        event["PhysicalResourceId"] = json!(p);
    }
    if let Some(old) = r.old_properties {
        event["OldResourceProperties"] = stringify(old);
    }
    event
}

/// A handler's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomResponse {
    /// `Status` was `SUCCESS`.
    pub success: bool,
    /// `Reason`.
    pub reason: Option<String>,
    /// `PhysicalResourceId`.
    pub physical_id: Option<String>,
    /// `Data` (what `Fn::GetAtt` reads).
    pub data: Map<String, Value>,
    /// `NoEcho`.
    pub no_echo: bool,
}

/// The ids a response must repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// `StackId`.
    pub stack_id: String,
    /// `RequestId`.
    pub request_id: String,
    /// `LogicalResourceId`.
    pub logical_id: String,
}

impl CustomResponse {
    /// Reads a response object, checking it as CloudFormation does; `Err` is the resource's
    /// failure reason.
    pub fn parse(body: &[u8], expected: &Expected) -> Result<CustomResponse, String> {
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(format!(
                "Response object is too long. The response object must not exceed {MAX_RESPONSE_BYTES} bytes."
            ));
        }
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("Invalid response object: {e}"))?;
        let Some(obj) = v.as_object() else {
            return Err("Invalid response object: not a JSON object".to_owned());
        };
        let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
        let success = match text("Status").as_deref() {
            Some("SUCCESS") => true,
            Some("FAILED") => false,
            other => {
                return Err(format!(
                    "Invalid response object: Status must be SUCCESS or FAILED, not {}",
                    other.unwrap_or("(missing)")
                ));
            }
        };
        for (key, want) in [
            ("StackId", &expected.stack_id),
            ("RequestId", &expected.request_id),
            ("LogicalResourceId", &expected.logical_id),
        ] {
            if text(key).as_deref() != Some(want.as_str()) {
                return Err(format!(
                    "Invalid response object: {key} does not match the request's ({want})"
                ));
            }
        }
        let physical_id = text("PhysicalResourceId").filter(|p| !p.is_empty());
        if success && physical_id.is_none() {
            return Err("Invalid PhysicalResourceId".to_owned());
        }
        let data = match obj.get("Data") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err("Invalid response object: Data must be a JSON object".to_owned()),
        };
        let no_echo = match obj.get("NoEcho") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        };
        Ok(CustomResponse {
            success,
            reason: text("Reason"),
            physical_id,
            data,
            no_echo,
        })
    }
}

/// What arrived at a response URL: the parsed answer, or why it is not one.
pub type Outcome = Result<CustomResponse, String>;

struct Pending {
    expected: Expected,
    sender: oneshot::Sender<Outcome>,
}

/// Why a PUT to a response URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    /// No request waits under the token (never issued, answered, or timed out): S3 would
    /// refuse an expired presigned URL.
    #[error("Request has expired")]
    Expired,
}

/// Requests waiting for their handler's answer, by the token in their response URL.
#[derive(Default)]
pub struct CustomResponses {
    pending: Mutex<HashMap<String, Pending>>,
}

impl std::fmt::Debug for CustomResponses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomResponses")
    }
}

impl CustomResponses {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a request; returns its token (unguessable: 128 random bits) and the
    /// receiver of its answer. The caller [`CustomResponses::forget`]s it on timeout.
    pub fn register(&self, expected: Expected) -> (String, oneshot::Receiver<Outcome>) {
        let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let (sender, receiver) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.clone(), Pending { expected, sender });
        (token, receiver)
    }

    /// Drops a request nobody answered.
    pub fn forget(&self, token: &str) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
    }

    /// Delivers what was PUT to the token's URL. The first answer counts (a response URL
    /// takes one object); a malformed one fails the resource with its reason.
    pub fn deliver(&self, token: &str, body: &[u8]) -> Result<(), DeliverError> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token)
            .ok_or(DeliverError::Expired)?;
        let outcome = CustomResponse::parse(body, &pending.expected);
        // The waiter may have just timed out; the answer is then moot.
        let _ = pending.sender.send(outcome);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected() -> Expected {
        Expected {
            stack_id: "arn:aws:cloudformation:us-east-1:000000000000:stack/s/1".into(),
            request_id: "r1".into(),
            logical_id: "Res".into(),
        }
    }

    fn body(extra: Value) -> Vec<u8> {
        let mut v = json!({
            "StackId": "arn:aws:cloudformation:us-east-1:000000000000:stack/s/1",
            "RequestId": "r1",
            "LogicalResourceId": "Res",
        });
        if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
            m.extend(e);
        }
        serde_json::to_vec(&v).unwrap_or_default()
    }

    #[test]
    fn properties_are_stringified_deeply() {
        let p = json!({"A": 1, "B": [true, {"C": 2.5}], "D": "x", "E": null});
        assert_eq!(
            stringify(&p),
            json!({"A": "1", "B": ["true", {"C": "2.5"}], "D": "x", "E": null})
        );
    }

    #[test]
    fn events_carry_what_each_request_type_needs() {
        let props = json!({"ServiceToken": "arn:aws:lambda:us-east-1:000000000000:function:f", "N": 3});
        let old = json!({"N": 2});
        let e = request_event(&CustomRequest {
            request_type: "Update",
            service_token: "arn:aws:lambda:us-east-1:000000000000:function:f",
            response_url: "http://x/y",
            stack_id: "sid",
            request_id: "rid",
            resource_type: "Custom::Thing",
            logical_id: "Res",
            physical_id: Some("phys"),
            properties: &props,
            old_properties: Some(&old),
        });
        assert_eq!(e["ResourceProperties"]["N"], "3");
        assert_eq!(e["OldResourceProperties"]["N"], "2");
        assert_eq!(e["PhysicalResourceId"], "phys");
        assert_eq!(e["RequestType"], "Update");
    }

    #[test]
    fn responses_are_checked() {
        let ok = CustomResponse::parse(
            &body(json!({"Status": "SUCCESS", "PhysicalResourceId": "p", "Data": {"K": "v"}, "NoEcho": true})),
            &expected(),
        )
        .expect("valid");
        assert!(ok.success && ok.no_echo);
        assert_eq!(ok.data.get("K"), Some(&json!("v")));
        let failed = CustomResponse::parse(&body(json!({"Status": "FAILED", "Reason": "boom"})), &expected())
            .expect("a FAILED answer needs no physical id");
        assert_eq!(failed.reason.as_deref(), Some("boom"));
        assert!(!failed.success);
        let missing = CustomResponse::parse(&body(json!({"Status": "SUCCESS"})), &expected());
        assert_eq!(missing, Err("Invalid PhysicalResourceId".to_owned()));
        let wrong = CustomResponse::parse(
            &body(json!({"Status": "SUCCESS", "PhysicalResourceId": "p", "RequestId": "other"})),
            &expected(),
        );
        assert!(wrong.is_err_and(|e| e.contains("RequestId")));
        assert!(CustomResponse::parse(b"not json", &expected()).is_err());
        let long = body(json!({"Status": "SUCCESS", "PhysicalResourceId": "p", "Reason": "x".repeat(5000)}));
        assert!(CustomResponse::parse(&long, &expected()).is_err_and(|e| e.contains("too long")));
    }

    #[tokio::test]
    async fn the_first_answer_is_delivered_once() {
        let reg = CustomResponses::new();
        let (token, rx) = reg.register(expected());
        let answer = body(json!({"Status": "SUCCESS", "PhysicalResourceId": "p"}));
        assert_eq!(reg.deliver(&token, &answer), Ok(()));
        assert_eq!(reg.deliver(&token, &answer), Err(DeliverError::Expired));
        let got = rx.await.expect("delivered").expect("valid");
        assert_eq!(got.physical_id.as_deref(), Some("p"));
        assert_eq!(reg.deliver("nope", &answer), Err(DeliverError::Expired));
    }
}
