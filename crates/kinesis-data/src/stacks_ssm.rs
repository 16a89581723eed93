//! CloudFormation and the SSM Parameter Store: the `kd_stacks::ParameterSource` port over the
//! parameter store engine (so `AWS::SSM::Parameter::Value<String>` template parameters, e.g.
//! CDK's `/cdk-bootstrap/hnb659fds/version`, resolve against what PutParameter stored), and
//! the `AWS::SSM::Parameter` resource provider, which calls the server's own SSM API through
//! the thin client as the other providers in `stacks.rs` do.
//!
//! `AWS::SSM::Parameter`: `Name` (or `CFN-<LogicalId>-<RANDOM>`, as CloudFormation generates
//! it), `Type` (`String` or `StringList`; CloudFormation cannot create SecureStrings either),
//! `Value`, `Description`, `AllowedPattern`, `Tier`, `DataType`. `Ref` is the name;
//! `Fn::GetAtt` gives `Type` and `Value`. A new `Name` replaces the parameter; any other change
//! overwrites it (a new version). `Tags` and `Policies` are accepted and not recorded.

use std::sync::Arc;

use kd_stacks::{ProvisionError, Provisioned, ResourceRequest, Scope};
use serde_json::{Value, json};

use crate::client::{ApiError, Client};

/// The CloudFormation resource type this module provides.
pub const SSM_PARAMETER: &str = "AWS::SSM::Parameter";

/// `AWS::SSM::Parameter::Value<…>` lookups over the parameter store engine.
pub struct StoreParameters {
    store: Arc<kd_ssm::ParameterStore>,
}

impl StoreParameters {
    /// Over the engine.
    pub fn new(store: Arc<kd_ssm::ParameterStore>) -> Self {
        Self { store }
    }
}

impl kd_stacks::ParameterSource for StoreParameters {
    fn parameter(&self, scope: &Scope, name: &str) -> Option<String> {
        let scope = kd_ssm::Scope {
            account: scope.account.clone(),
            region: scope.region.clone(),
        };
        self.store.value(&scope, name)
    }
}

fn failed(e: anyhow::Error) -> ProvisionError {
    match e.downcast_ref::<ApiError>() {
        Some(a) => ProvisionError::Failed(format!(
            "{} (Service: {}, Status Code: {}, Error Code: {})",
            a.message, a.request, a.status, a.code
        )),
        None => ProvisionError::Failed(format!("{e:#}")),
    }
}

fn text(p: &Value, key: &str) -> Option<String> {
    match p.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `CFN-<LogicalId>-<12 random upper-case characters>`, cut to SSM's 2048 characters.
fn generated_name(logical_id: &str) -> String {
    let random: String = uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .to_ascii_uppercase()
        .chars()
        .take(12)
        .collect();
    let logical: String = logical_id.chars().take(2000).collect();
    format!("CFN-{logical}-{random}")
}

/// Whether a change from `old` to `new` needs a new parameter.
pub fn requires_replacement(old: &Value, new: &Value) -> bool {
    old.get("Name") != new.get("Name")
}

async fn put(c: &Client, name: &str, p: &Value, overwrite: bool) -> Result<Provisioned, ProvisionError> {
    let kind = text(p, "Type").ok_or_else(|| ProvisionError::Failed("Property Type cannot be empty.".to_owned()))?;
    if kind != "String" && kind != "StringList" {
        return Err(ProvisionError::Failed(format!(
            "Type {kind} is not supported for AWS::SSM::Parameter (String or StringList)"
        )));
    }
    let value = match p.get("Value") {
        // A list value (CloudFormation accepts one for StringList) is joined with commas.
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| text(&json!({ "v": i }), "v").unwrap_or_default())
            .collect::<Vec<_>>()
            .join(","),
        _ => text(p, "Value").ok_or_else(|| ProvisionError::Failed("Property Value cannot be empty.".to_owned()))?,
    };
    let mut body = json!({"Name": name, "Type": kind, "Value": value, "Overwrite": overwrite});
    for k in ["Description", "AllowedPattern", "Tier", "DataType"] {
        if let Some(v) = text(p, k) {
            body[k] = json!(v);
        }
    }
    c.json("ssm", "AmazonSSM.PutParameter", &body).await.map_err(failed)?;
    Ok(Provisioned::named(
        name,
        [("Type".to_owned(), json!(kind)), ("Value".to_owned(), json!(value))],
    ))
}

/// Creates the parameter (refused if the name exists, as on AWS).
pub async fn create(c: &Client, r: &ResourceRequest<'_>) -> Result<Provisioned, ProvisionError> {
    let name = text(r.properties, "Name").unwrap_or_else(|| generated_name(r.logical_id));
    put(c, &name, r.properties, false).await
}

/// Overwrites the parameter `physical` with the new properties (a new version).
pub async fn update(c: &Client, r: &ResourceRequest<'_>, physical: &str) -> Result<Provisioned, ProvisionError> {
    put(c, physical, r.properties, true).await
}

/// Deletes the parameter; one already gone is fine.
pub async fn delete(c: &Client, physical: &str) -> Result<(), ProvisionError> {
    match c
        .json("ssm", "AmazonSSM.DeleteParameter", &json!({"Name": physical}))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if crate::client::error_code(&e) == Some("ParameterNotFound") => Ok(()),
        Err(e) => Err(failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_replacement() {
        let n = generated_name("Version");
        assert!(
            n.starts_with("CFN-Version-") && n.len() == "CFN-Version-".len() + 12,
            "{n}"
        );
        assert!(requires_replacement(&json!({"Name": "a"}), &json!({"Name": "b"})));
        assert!(!requires_replacement(
            &json!({"Name": "a", "Value": "1"}),
            &json!({"Name": "a", "Value": "2"})
        ));
    }
}
