//! `AWS::KinesisFirehose::DeliveryStream` over the Firehose API: a Direct PUT or
//! Kinesis-sourced delivery stream to an S3 (extended) destination, complete when ACTIVE.
//! Ref is the name; GetAtt `Arn`. The name, type and source need a new delivery stream (as
//! AWS's resource documentation says); destination changes go through `UpdateDestination`,
//! tags through Tag/UntagDeliveryStream.

use std::collections::BTreeSet;

use kd_stacks::{ProvisionError, Provisioned, ResourceRequest};
use serde_json::{Map, Value, json};

use super::{coerce, failed, generated_name, gone, invalid, is_missing, poll_for, s, tags, wait_for};
use crate::client::Client;

/// Destination members that are numbers or booleans in the API.
const INTS: &[&str] = &["IntervalInSeconds", "SizeInMBs", "DurationInSeconds"];
const BOOLS: &[&str] = &["Enabled"];

/// Properties whose change needs a new delivery stream.
pub(super) fn replaces(old: &Value, new: &Value) -> bool {
    [
        "DeliveryStreamName",
        "DeliveryStreamType",
        "KinesisStreamSourceConfiguration",
        "DeliveryStreamEncryptionConfigurationInput",
    ]
    .iter()
    .any(|k| old.get(*k) != new.get(*k))
        || destination_kind(old).map(|(k, _)| k) != destination_kind(new).map(|(k, _)| k)
}

async fn call(c: &Client, op: &str, body: Value) -> Result<Value, ProvisionError> {
    c.json("firehose", &format!("Firehose_20150804.{op}"), &body)
        .await
        .map_err(failed)
}

/// The destination property a template uses, and its value (numbers coerced).
fn destination_kind(p: &Value) -> Option<(&'static str, Value)> {
    for (prop, api) in [
        (
            "ExtendedS3DestinationConfiguration",
            "ExtendedS3DestinationConfiguration",
        ),
        ("S3DestinationConfiguration", "S3DestinationConfiguration"),
    ] {
        if let Some(v) = p.get(prop) {
            return Some((api, coerce(v, INTS, BOOLS)));
        }
    }
    None
}

fn unsupported_destinations(p: &Value) -> Result<(), ProvisionError> {
    for k in [
        "RedshiftDestinationConfiguration",
        "ElasticsearchDestinationConfiguration",
        "AmazonopensearchserviceDestinationConfiguration",
        "AmazonOpenSearchServerlessDestinationConfiguration",
        "SplunkDestinationConfiguration",
        "HttpEndpointDestinationConfiguration",
        "SnowflakeDestinationConfiguration",
        "IcebergDestinationConfiguration",
        "MSKSourceConfiguration",
    ] {
        if p.get(k).is_some() {
            return Err(invalid(format!(
                "AWS::KinesisFirehose::DeliveryStream {k} is not supported by kinesis-data (S3 destinations are)"
            )));
        }
    }
    Ok(())
}

async fn wait_active(c: &Client, name: &str) -> Result<String, ProvisionError> {
    poll_for(&format!("delivery stream {name}"), || async {
        let v = call(c, "DescribeDeliveryStream", json!({"DeliveryStreamName": name})).await?;
        let d = &v["DeliveryStreamDescription"];
        if d["DeliveryStreamStatus"] == "CREATING_FAILED" {
            return Err(invalid(format!("delivery stream {name} failed to create")));
        }
        let arn = d["DeliveryStreamARN"].as_str().unwrap_or_default().to_owned();
        Ok((d["DeliveryStreamStatus"] == "ACTIVE").then_some(arn))
    })
    .await
}

fn provisioned(name: &str, arn: String) -> Provisioned {
    Provisioned::named(name, [("Arn".to_owned(), json!(arn))])
}

/// Creates the delivery stream and waits for ACTIVE.
pub(super) async fn create(c: &Client, r: &ResourceRequest<'_>) -> Result<Provisioned, ProvisionError> {
    let p = r.properties;
    unsupported_destinations(p)?;
    let name =
        s(p, "DeliveryStreamName").unwrap_or_else(|| generated_name(&r.stack.stack_name, r.logical_id, 64, false));
    let (dest_key, dest) = destination_kind(p).ok_or_else(|| {
        invalid("AWS::KinesisFirehose::DeliveryStream needs an ExtendedS3DestinationConfiguration or S3DestinationConfiguration")
    })?;
    let source = p.get("KinesisStreamSourceConfiguration").cloned();
    let kind = s(p, "DeliveryStreamType").unwrap_or_else(|| {
        if source.is_some() {
            "KinesisStreamAsSource".to_owned()
        } else {
            "DirectPut".to_owned()
        }
    });
    let mut body = json!({"DeliveryStreamName": name, "DeliveryStreamType": kind});
    body[dest_key] = dest;
    if let Some(src) = source {
        body["KinesisStreamSourceConfiguration"] = src;
    }
    let t: Vec<Value> = tags(p)
        .into_iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    if !t.is_empty() {
        body["Tags"] = Value::Array(t);
    }
    call(c, "CreateDeliveryStream", body).await?;
    match wait_active(c, &name).await {
        Ok(arn) => Ok(provisioned(&name, arn)),
        Err(e) => {
            let _ = call(c, "DeleteDeliveryStream", json!({"DeliveryStreamName": name})).await;
            Err(e)
        }
    }
}

/// Updates the destination and tags in place.
pub(super) async fn update(c: &Client, name: &str, p: &Value, old: &Value) -> Result<Provisioned, ProvisionError> {
    unsupported_destinations(p)?;
    let described = call(c, "DescribeDeliveryStream", json!({"DeliveryStreamName": name})).await?;
    let d = &described["DeliveryStreamDescription"];
    if destination_kind(p) != destination_kind(old)
        && let Some((key, dest)) = destination_kind(p)
    {
        let update_key = match key {
            "ExtendedS3DestinationConfiguration" => "ExtendedS3DestinationUpdate",
            _ => "S3DestinationUpdate",
        };
        let mut update = dest;
        // The update shape names the backup configuration differently.
        if let Some(obj) = update.as_object_mut()
            && let Some(backup) = obj.remove("S3BackupConfiguration")
        {
            obj.insert("S3BackupUpdate".to_owned(), backup);
        }
        call(
            c,
            "UpdateDestination",
            json!({
                "DeliveryStreamName": name,
                "CurrentDeliveryStreamVersionId": d["VersionId"],
                "DestinationId": d["Destinations"][0]["DestinationId"],
                update_key: update,
            }),
        )
        .await?;
    }
    if p.get("Tags") != old.get("Tags") {
        let want: Map<String, Value> = tags(p).into_iter().map(|(k, v)| (k, json!(v))).collect();
        if !want.is_empty() {
            let list: Vec<Value> = want.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect();
            call(
                c,
                "TagDeliveryStream",
                json!({"DeliveryStreamName": name, "Tags": list}),
            )
            .await?;
        }
        let keep: BTreeSet<&String> = want.keys().collect();
        let gone_keys: Vec<String> = tags(old)
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| !keep.contains(k))
            .collect();
        if !gone_keys.is_empty() {
            call(
                c,
                "UntagDeliveryStream",
                json!({"DeliveryStreamName": name, "TagKeys": gone_keys}),
            )
            .await?;
        }
    }
    let arn = wait_active(c, name).await?;
    Ok(provisioned(name, arn))
}

/// Deletes the delivery stream and waits until it is gone.
pub(super) async fn delete(c: &Client, name: &str) -> Result<(), ProvisionError> {
    gone(
        c.json(
            "firehose",
            "Firehose_20150804.DeleteDeliveryStream",
            &json!({"DeliveryStreamName": name}),
        )
        .await
        .map(drop),
    )?;
    wait_for(&format!("deletion of delivery stream {name}"), || async {
        match c
            .json(
                "firehose",
                "Firehose_20150804.DescribeDeliveryStream",
                &json!({"DeliveryStreamName": name}),
            )
            .await
        {
            Ok(_) => Ok(false),
            Err(e) if is_missing(&e) => Ok(true),
            Err(e) => Err(failed(e)),
        }
    })
    .await
}
