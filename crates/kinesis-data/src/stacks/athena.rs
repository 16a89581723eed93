//! `AWS::Athena::WorkGroup` over the Athena API. Ref is the workgroup's name; GetAtt
//! `CreationTime` (UNIX seconds, as AWS documents it) and
//! `WorkGroupConfiguration.EngineVersion.EffectiveEngineVersion`. A new `Name` needs a new
//! workgroup; every other change goes through UpdateWorkGroup (a setting the new template
//! leaves out is removed or set back to its default, as CloudFormation's handler does) and
//! Tag/UntagResource. Deleting honours `RecursiveDeleteOption` (default false, so a workgroup
//! that ran queries refuses, as on AWS: `WorkGroup <name> is not empty`).

use std::collections::BTreeMap;

use kd_stacks::{ProvisionError, Provisioned, ResourceRequest};
use serde_json::{Map, Value, json};

use super::{code_of, coerce, failed, invalid, s, tags};
use crate::client::{ApiError, Client};

/// The type.
pub(super) const WORKGROUP: &str = "AWS::Athena::WorkGroup";

const INTS: &[&str] = &["BytesScannedCutoffPerQuery"];
const BOOLS: &[&str] = &[
    "EnforceWorkGroupConfiguration",
    "PublishCloudWatchMetricsEnabled",
    "RequesterPaysEnabled",
    "RemoveBytesScannedCutoffPerQuery",
    "RemoveOutputLocation",
    "RemoveEncryptionConfiguration",
    "RemoveExpectedBucketOwner",
    "RemoveAclConfiguration",
    "RecursiveDeleteOption",
];

/// Members of a ResultConfiguration, and the flag that removes each.
const RESULT_MEMBERS: &[(&str, &str)] = &[
    ("OutputLocation", "RemoveOutputLocation"),
    ("EncryptionConfiguration", "RemoveEncryptionConfiguration"),
    ("ExpectedBucketOwner", "RemoveExpectedBucketOwner"),
    ("AclConfiguration", "RemoveAclConfiguration"),
];

/// Whether the change needs a new workgroup ("Update requires: Replacement" for `Name`).
pub(super) fn replaces(old: &Value, new: &Value) -> bool {
    old.get("Name") != new.get("Name")
}

async fn call(c: &Client, op: &str, body: Value) -> Result<Value, ProvisionError> {
    c.json("athena", &format!("AmazonAthena.{op}"), &body)
        .await
        .map_err(failed)
}

fn name_of(p: &Value) -> Result<String, ProvisionError> {
    s(p, "Name").ok_or_else(|| invalid("Property Name cannot be empty."))
}

fn configuration(p: &Value) -> Value {
    p.get("WorkGroupConfiguration")
        .map(|c| coerce(c, INTS, BOOLS))
        .unwrap_or_else(|| json!({}))
}

fn tag_list(p: &Value) -> Value {
    Value::Array(
        tags(p)
            .into_iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect(),
    )
}

/// `WorkGroupConfigurationUpdates` (deprecated by AWS but accepted), coerced.
fn explicit_updates(p: &Value) -> Option<Value> {
    p.get("WorkGroupConfigurationUpdates").map(|c| coerce(c, INTS, BOOLS))
}

/// The ConfigurationUpdates that turn the `old` WorkGroupConfiguration into `new`: every
/// setting of `new`, the default for a setting `new` leaves out, a `Remove…` flag for an
/// optional one that only `old` had; then `explicit` (WorkGroupConfigurationUpdates) on top.
fn updates(old: &Value, new: &Value, explicit: Option<Value>) -> Value {
    let mut u = Map::new();
    for (k, default) in [
        ("EnforceWorkGroupConfiguration", json!(true)),
        ("PublishCloudWatchMetricsEnabled", json!(false)),
        ("RequesterPaysEnabled", json!(false)),
        ("EngineVersion", json!({"SelectedEngineVersion": "AUTO"})),
    ] {
        u.insert(k.to_owned(), new.get(k).cloned().unwrap_or(default));
    }
    match new.get("BytesScannedCutoffPerQuery") {
        Some(v) => {
            u.insert("BytesScannedCutoffPerQuery".to_owned(), v.clone());
        }
        None if old.get("BytesScannedCutoffPerQuery").is_some() => {
            u.insert("RemoveBytesScannedCutoffPerQuery".to_owned(), json!(true));
        }
        None => {}
    }
    let empty = json!({});
    let new_result = new.get("ResultConfiguration").unwrap_or(&empty);
    let old_result = old.get("ResultConfiguration").unwrap_or(&empty);
    let mut r = Map::new();
    for (member, remove) in RESULT_MEMBERS {
        match new_result.get(*member) {
            Some(v) => {
                r.insert((*member).to_owned(), v.clone());
            }
            None if old_result.get(*member).is_some() => {
                r.insert((*remove).to_owned(), json!(true));
            }
            None => {}
        }
    }
    if !r.is_empty() {
        u.insert("ResultConfigurationUpdates".to_owned(), Value::Object(r));
    }
    if let Some(Value::Object(extra)) = explicit {
        for (k, v) in extra {
            match (u.get_mut(&k), v) {
                (Some(Value::Object(mine)), Value::Object(theirs)) => mine.extend(theirs),
                (_, v) => {
                    u.insert(k, v);
                }
            }
        }
    }
    Value::Object(u)
}

/// The attributes, read back from GetWorkGroup.
async fn provisioned(c: &Client, name: &str) -> Result<Provisioned, ProvisionError> {
    let got = call(c, "GetWorkGroup", json!({"WorkGroup": name})).await?;
    let w = &got["WorkGroup"];
    let created = w["CreationTime"].as_f64().unwrap_or_default().floor() as i64;
    let effective = w["Configuration"]["EngineVersion"]["EffectiveEngineVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok(Provisioned::named(
        name,
        [
            ("CreationTime".to_owned(), json!(created.to_string())),
            (
                "WorkGroupConfiguration.EngineVersion.EffectiveEngineVersion".to_owned(),
                json!(effective),
            ),
        ],
    ))
}

fn state(p: &Value) -> Result<Option<String>, ProvisionError> {
    match s(p, "State") {
        None => Ok(None),
        Some(v) if v == "ENABLED" || v == "DISABLED" => Ok(Some(v)),
        Some(v) => Err(invalid(format!(
            "Properties validation failed for resource with message: #/State: {v} is not a valid enum value"
        ))),
    }
}

pub(super) async fn create(c: &Client, r: &ResourceRequest<'_>) -> Result<Provisioned, ProvisionError> {
    let p = r.properties;
    let name = name_of(p)?;
    let state = state(p)?;
    let mut body = json!({"Name": name, "Configuration": configuration(p)});
    if let Some(d) = s(p, "Description") {
        body["Description"] = json!(d);
    }
    let t = tag_list(p);
    if t.as_array().is_some_and(|a| !a.is_empty()) {
        body["Tags"] = t;
    }
    call(c, "CreateWorkGroup", body).await?;
    let explicit = explicit_updates(p);
    if state.as_deref() == Some("DISABLED") || explicit.is_some() {
        let mut u = json!({"WorkGroup": name});
        if let Some(st) = state {
            u["State"] = json!(st);
        }
        if let Some(e) = explicit {
            u["ConfigurationUpdates"] = e;
        }
        call(c, "UpdateWorkGroup", u).await?;
    }
    provisioned(c, &name).await
}

pub(super) async fn update(
    c: &Client,
    r: &ResourceRequest<'_>,
    name: &str,
    old: &Value,
) -> Result<Provisioned, ProvisionError> {
    let p = r.properties;
    let mut body = json!({
        "WorkGroup": name,
        "State": state(p)?.unwrap_or_else(|| "ENABLED".to_owned()),
        "ConfigurationUpdates": updates(&configuration(old), &configuration(p), explicit_updates(p)),
    });
    match s(p, "Description") {
        Some(d) => body["Description"] = json!(d),
        None if s(old, "Description").is_some() => body["Description"] = json!(""),
        None => {}
    }
    call(c, "UpdateWorkGroup", body).await?;
    // Tags: remove the keys that went away, put the new and changed ones.
    let arn = format!(
        "arn:{}:athena:{}:{}:workgroup/{name}",
        r.stack.partition(),
        r.stack.region,
        r.stack.account_id
    );
    let before: BTreeMap<String, String> = tags(old).into_iter().collect();
    let after: BTreeMap<String, String> = tags(p).into_iter().collect();
    let gone: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    if !gone.is_empty() {
        call(c, "UntagResource", json!({"ResourceARN": arn, "TagKeys": gone})).await?;
    }
    let changed: Vec<Value> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    if !changed.is_empty() {
        call(c, "TagResource", json!({"ResourceARN": arn, "Tags": changed})).await?;
    }
    provisioned(c, name).await
}

pub(super) async fn delete(c: &Client, p: &Value, name: &str) -> Result<(), ProvisionError> {
    let recursive = coerce(p, INTS, BOOLS)
        .get("RecursiveDeleteOption")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let res = c
        .json(
            "athena",
            "AmazonAthena.DeleteWorkGroup",
            &json!({"WorkGroup": name, "RecursiveDeleteOption": recursive}),
        )
        .await;
    match res {
        Ok(_) => Ok(()),
        // Already gone.
        Err(e)
            if code_of(&e) == Some("InvalidRequestException")
                && e.downcast_ref::<ApiError>()
                    .is_some_and(|a| a.message == format!("WorkGroup {name} is not found.")) =>
        {
            Ok(())
        }
        Err(e) => Err(failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_set_default_and_remove_what_the_template_dropped() {
        let old = json!({
            "BytesScannedCutoffPerQuery": 20000000,
            "EnforceWorkGroupConfiguration": false,
            "ResultConfiguration": {"OutputLocation": "s3://a/", "ExpectedBucketOwner": "123456789012"}
        });
        let new = json!({"ResultConfiguration": {"OutputLocation": "s3://b/"}});
        let u = updates(
            &old,
            &new,
            Some(json!({"ResultConfigurationUpdates": {"RemoveAclConfiguration": true}})),
        );
        assert_eq!(u["EnforceWorkGroupConfiguration"], json!(true));
        assert_eq!(u["RemoveBytesScannedCutoffPerQuery"], json!(true));
        assert_eq!(u["ResultConfigurationUpdates"]["OutputLocation"], json!("s3://b/"));
        assert_eq!(
            u["ResultConfigurationUpdates"]["RemoveExpectedBucketOwner"],
            json!(true)
        );
        assert_eq!(u["ResultConfigurationUpdates"]["RemoveAclConfiguration"], json!(true));
        assert!(u.get("BytesScannedCutoffPerQuery").is_none());
    }
}
