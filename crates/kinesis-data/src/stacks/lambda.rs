//! `AWS::Lambda::EventSourceMapping` over the Lambda API (Kinesis stream sources, as the
//! functions engine polls them). Ref is the mapping's UUID; GetAtt `Id` and
//! `EventSourceMappingArn`. `EventSourceArn`, `StartingPosition` and
//! `StartingPositionTimestamp` need a new mapping (AWS's resource documentation); the rest
//! is updated in place.

use kd_stacks::{ProvisionError, Provisioned, ResourceRequest};
use serde_json::{Value, json};

use super::{coerce, failed, gone, invalid, poll_for};
use crate::client::{Client, uri_encode};

const MAPPINGS: &str = "/2015-03-31/event-source-mappings";
/// Members given to CreateEventSourceMapping as they are (after coercion).
const CREATE_FIELDS: &[&str] = &[
    "FunctionName",
    "EventSourceArn",
    "StartingPosition",
    "StartingPositionTimestamp",
    "BatchSize",
    "Enabled",
    "MaximumBatchingWindowInSeconds",
    "ParallelizationFactor",
    "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "FunctionResponseTypes",
    "DestinationConfig",
    "TumblingWindowInSeconds",
];
/// Members UpdateEventSourceMapping takes.
const UPDATE_FIELDS: &[&str] = &[
    "FunctionName",
    "BatchSize",
    "Enabled",
    "MaximumBatchingWindowInSeconds",
    "ParallelizationFactor",
    "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "FunctionResponseTypes",
    "DestinationConfig",
    "TumblingWindowInSeconds",
];
const INTS: &[&str] = &[
    "BatchSize",
    "MaximumBatchingWindowInSeconds",
    "ParallelizationFactor",
    "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds",
    "TumblingWindowInSeconds",
];
const BOOLS: &[&str] = &["Enabled", "BisectBatchOnFunctionError"];

/// Properties whose change needs a new mapping.
pub(super) fn replaces(old: &Value, new: &Value) -> bool {
    ["EventSourceArn", "StartingPosition", "StartingPositionTimestamp"]
        .iter()
        .any(|k| old.get(*k) != new.get(*k))
}

fn body(p: &Value, fields: &[&str]) -> Result<Value, ProvisionError> {
    for k in [
        "FilterCriteria",
        "SelfManagedEventSource",
        "AmazonManagedKafkaEventSourceConfig",
        "SourceAccessConfigurations",
        "Queues",
        "Topics",
        "ScalingConfig",
        "DocumentDBEventSourceConfig",
    ] {
        if p.get(k).is_some() {
            return Err(invalid(format!(
                "AWS::Lambda::EventSourceMapping {k} is not supported by kinesis-data"
            )));
        }
    }
    let p = coerce(p, INTS, BOOLS);
    let mut out = json!({});
    for k in fields {
        if let Some(v) = p.get(*k) {
            out[*k] = match (*k, v) {
                ("StartingPositionTimestamp", Value::String(t)) => {
                    t.trim().parse::<f64>().map_or_else(|_| v.clone(), |n| json!(n))
                }
                _ => v.clone(),
            };
        }
    }
    Ok(out)
}

/// Waits until the mapping is no longer changing (`Enabled` or `Disabled`).
async fn settled(c: &Client, uuid: &str) -> Result<Value, ProvisionError> {
    let path = format!("{MAPPINGS}/{}", uri_encode(uuid, false));
    poll_for(&format!("event source mapping {uuid}"), || async {
        let v = c.rest_json("lambda", "GET", &path, &[], None).await.map_err(failed)?;
        let settled = matches!(v["State"].as_str(), Some("Enabled" | "Disabled"));
        Ok(settled.then_some(v))
    })
    .await
}

fn provisioned(m: &Value, r: &ResourceRequest<'_>, uuid: &str) -> Provisioned {
    let arn = m["EventSourceMappingArn"].as_str().map_or_else(
        || {
            format!(
                "arn:{}:lambda:{}:{}:event-source-mapping:{uuid}",
                r.stack.partition(),
                r.stack.region,
                r.stack.account_id
            )
        },
        str::to_owned,
    );
    Provisioned::named(
        uuid,
        [
            ("Id".to_owned(), json!(uuid)),
            ("EventSourceMappingArn".to_owned(), json!(arn)),
        ],
    )
}

/// Creates the mapping and waits for it to settle.
pub(super) async fn create(c: &Client, r: &ResourceRequest<'_>) -> Result<Provisioned, ProvisionError> {
    let b = body(r.properties, CREATE_FIELDS)?;
    if b.get("FunctionName").is_none() {
        return Err(invalid("Property FunctionName cannot be empty."));
    }
    let made = c
        .rest_json("lambda", "POST", MAPPINGS, &[], Some(&b))
        .await
        .map_err(failed)?;
    let uuid = made["UUID"]
        .as_str()
        .ok_or_else(|| invalid("CreateEventSourceMapping answered without a UUID"))?
        .to_owned();
    match settled(c, &uuid).await {
        Ok(m) => Ok(provisioned(&m, r, &uuid)),
        Err(e) => {
            let _ = delete(c, &uuid).await;
            Err(e)
        }
    }
}

/// Updates the mapping in place.
pub(super) async fn update(c: &Client, r: &ResourceRequest<'_>, uuid: &str) -> Result<Provisioned, ProvisionError> {
    let b = body(r.properties, UPDATE_FIELDS)?;
    let path = format!("{MAPPINGS}/{}", uri_encode(uuid, false));
    c.rest_json("lambda", "PUT", &path, &[], Some(&b))
        .await
        .map_err(failed)?;
    let m = settled(c, uuid).await?;
    Ok(provisioned(&m, r, uuid))
}

/// Deletes the mapping.
pub(super) async fn delete(c: &Client, uuid: &str) -> Result<(), ProvisionError> {
    let path = format!("{MAPPINGS}/{}", uri_encode(uuid, false));
    gone(c.rest_json("lambda", "DELETE", &path, &[], None).await.map(drop))
}
