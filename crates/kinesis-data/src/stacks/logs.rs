//! `AWS::Logs::LogGroup` over the CloudWatch Logs API: CreateLogGroup (with `Tags` and
//! `KmsKeyId`, `LogGroupClass` recorded), PutRetentionPolicy for `RetentionInDays`; an update
//! changes the retention and the tags in place (a new `LogGroupName` is a new group); delete
//! is DeleteLogGroup (a group already gone is fine). Ref is the name; GetAtt `Arn` is
//! `arn:aws:logs:<region>:<account>:log-group:<name>:*`, as on AWS. CDK's default
//! `DeletionPolicy: Retain` keeps the group after the stack is deleted, as on AWS.

use kd_stacks::{ProvisionError, Provisioned, ResourceRequest, StackContext};
use serde_json::{Map, Value, json};

use super::{failed, generated_name, gone, number, s, tags};
use crate::client::Client;

/// The resource type.
pub(super) const LOG_GROUP: &str = "AWS::Logs::LogGroup";

/// Properties whose change needs a new group.
pub(super) fn replaces(old: &Value, new: &Value) -> bool {
    ["LogGroupName", "LogGroupClass"]
        .iter()
        .any(|k| old.get(*k) != new.get(*k))
}

fn provisioned(name: &str, stack: &StackContext) -> Provisioned {
    let arn = format!(
        "arn:{}:logs:{}:{}:log-group:{name}:*",
        stack.partition(),
        stack.region,
        stack.account_id
    );
    Provisioned::named(name, [("Arn".to_owned(), json!(arn))])
}

async fn call(c: &Client, op: &str, body: Value) -> Result<Value, ProvisionError> {
    c.json("logs", &format!("Logs_20140328.{op}"), &body)
        .await
        .map_err(failed)
}

async fn set_retention(c: &Client, name: &str, p: &Value) -> Result<(), ProvisionError> {
    match p.get("RetentionInDays").and_then(number) {
        Some(days) => call(
            c,
            "PutRetentionPolicy",
            json!({"logGroupName": name, "retentionInDays": days}),
        )
        .await
        .map(drop),
        None => call(c, "DeleteRetentionPolicy", json!({"logGroupName": name}))
            .await
            .map(drop),
    }
}

fn tag_map(p: &Value) -> Map<String, Value> {
    tags(p).into_iter().map(|(k, v)| (k, json!(v))).collect()
}

/// Creates the group (its name from `LogGroupName`, else generated), then its retention.
pub(super) async fn create(c: &Client, r: &ResourceRequest<'_>) -> Result<Provisioned, ProvisionError> {
    let p = r.properties;
    let name = s(p, "LogGroupName").unwrap_or_else(|| generated_name(&r.stack.stack_name, r.logical_id, 512, false));
    let mut body = json!({"logGroupName": name});
    let t = tag_map(p);
    if !t.is_empty() {
        body["tags"] = Value::Object(t);
    }
    for (prop, member) in [("KmsKeyId", "kmsKeyId"), ("LogGroupClass", "logGroupClass")] {
        if let Some(v) = s(p, prop) {
            body[member] = json!(v);
        }
    }
    call(c, "CreateLogGroup", body).await?;
    if p.get("RetentionInDays").is_some()
        && let Err(e) = set_retention(c, &name, p).await
    {
        // Leave nothing half-made.
        let _ = call(c, "DeleteLogGroup", json!({"logGroupName": name})).await;
        return Err(e);
    }
    Ok(provisioned(&name, r.stack))
}

/// Changes the retention and the tags of `physical` in place.
pub(super) async fn update(
    c: &Client,
    r: &ResourceRequest<'_>,
    physical: &str,
    old: &Value,
) -> Result<Provisioned, ProvisionError> {
    let p = r.properties;
    if p.get("RetentionInDays").and_then(number) != old.get("RetentionInDays").and_then(number) {
        set_retention(c, physical, p).await?;
    }
    let (new_tags, old_tags) = (tag_map(p), tag_map(old));
    if new_tags != old_tags {
        let arn = format!(
            "arn:{}:logs:{}:{}:log-group:{physical}",
            r.stack.partition(),
            r.stack.region,
            r.stack.account_id
        );
        let removed: Vec<&String> = old_tags.keys().filter(|k| !new_tags.contains_key(*k)).collect();
        if !removed.is_empty() {
            call(c, "UntagResource", json!({"resourceArn": arn, "tagKeys": removed})).await?;
        }
        if !new_tags.is_empty() {
            call(c, "TagResource", json!({"resourceArn": arn, "tags": new_tags})).await?;
        }
    }
    Ok(provisioned(physical, r.stack))
}

/// Deletes the group; one already gone is fine.
pub(super) async fn delete(c: &Client, physical: &str) -> Result<(), ProvisionError> {
    gone(
        c.json(
            "logs",
            "Logs_20140328.DeleteLogGroup",
            &json!({"logGroupName": physical}),
        )
        .await
        .map(drop),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_and_tags() {
        let old = json!({"LogGroupName": "a", "RetentionInDays": 7});
        assert!(!replaces(&old, &json!({"LogGroupName": "a", "RetentionInDays": 14})));
        assert!(replaces(&old, &json!({"LogGroupName": "b"})));
        let t = tag_map(&json!({"Tags": [{"Key": "k", "Value": "v"}]}));
        assert_eq!(Value::Object(t), json!({"k": "v"}));
    }
}
