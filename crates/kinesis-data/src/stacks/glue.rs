//! `AWS::Glue::Database` and `AWS::Glue::Table` over the Glue API. Ref is the database's
//! name, and the table's name (as AWS documents them). A new `CatalogId`, database
//! (`DatabaseName`) or name needs a new resource; other changes go through
//! UpdateDatabase / UpdateTable.

use kd_stacks::{ProvisionError, Provisioned, ResourceRequest};
use serde_json::{Value, json};

use super::{coerce, failed, generated_name, gone, invalid, s};
use crate::client::Client;

const INTS: &[&str] = &["Retention", "NumberOfBuckets", "SortOrder"];
const BOOLS: &[&str] = &["Compressed", "StoredAsSubDirectories", "IsRegisteredWithLakeFormation"];

async fn call(c: &Client, op: &str, body: Value) -> Result<Value, ProvisionError> {
    c.json("glue", &format!("AWSGlue.{op}"), &body).await.map_err(failed)
}

fn name_in(p: &Value, input: &str) -> Option<String> {
    p.get(input).and_then(|i| s(i, "Name"))
}

/// Properties whose change needs a new database or table.
pub(super) fn replaces(resource_type: &str, old: &Value, new: &Value) -> bool {
    let differs = |k: &str| old.get(k) != new.get(k);
    match resource_type {
        "AWS::Glue::Database" => {
            differs("CatalogId")
                || differs("DatabaseName")
                || name_in(old, "DatabaseInput") != name_in(new, "DatabaseInput")
        }
        _ => {
            differs("CatalogId") || differs("DatabaseName") || name_in(old, "TableInput") != name_in(new, "TableInput")
        }
    }
}

/// `Parameters` maps hold strings in Glue.
fn string_parameters(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = if k == "Parameters" {
                        kd_stacks::custom::stringify(x)
                    } else {
                        string_parameters(x)
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(string_parameters).collect()),
        other => other.clone(),
    }
}

fn database_input(r: &ResourceRequest<'_>) -> Result<(String, Value), ProvisionError> {
    let p = r.properties;
    let mut input = p
        .get("DatabaseInput")
        .cloned()
        .ok_or_else(|| invalid("Property DatabaseInput cannot be empty."))?;
    let name = s(&input, "Name")
        .or_else(|| s(p, "DatabaseName"))
        .unwrap_or_else(|| generated_name(&r.stack.stack_name, r.logical_id, 255, true).replace('-', "_"));
    input["Name"] = json!(name);
    Ok((name, string_parameters(&input)))
}

pub(super) async fn create_database(c: &Client, r: &ResourceRequest<'_>) -> Result<Provisioned, ProvisionError> {
    let (name, input) = database_input(r)?;
    let mut body = json!({"DatabaseInput": input});
    if let Some(id) = s(r.properties, "CatalogId") {
        body["CatalogId"] = json!(id);
    }
    call(c, "CreateDatabase", body).await?;
    Ok(Provisioned::named(name, []))
}

pub(super) async fn update_database(
    c: &Client,
    r: &ResourceRequest<'_>,
    name: &str,
) -> Result<Provisioned, ProvisionError> {
    let (_, mut input) = database_input(r)?;
    input["Name"] = json!(name);
    call(c, "UpdateDatabase", json!({"Name": name, "DatabaseInput": input})).await?;
    Ok(Provisioned::named(name, []))
}

pub(super) async fn delete_database(c: &Client, name: &str) -> Result<(), ProvisionError> {
    gone(
        c.json("glue", "AWSGlue.DeleteDatabase", &json!({"Name": name}))
            .await
            .map(drop),
    )
}

fn table_input(r: &ResourceRequest<'_>) -> Result<(String, String, Value), ProvisionError> {
    let p = r.properties;
    let db = s(p, "DatabaseName").ok_or_else(|| invalid("Property DatabaseName cannot be empty."))?;
    let input = p
        .get("TableInput")
        .ok_or_else(|| invalid("Property TableInput cannot be empty."))?;
    let mut input = string_parameters(&coerce(input, INTS, BOOLS));
    let name = s(&input, "Name")
        .unwrap_or_else(|| generated_name(&r.stack.stack_name, r.logical_id, 255, true).replace('-', "_"));
    input["Name"] = json!(name);
    Ok((db, name, input))
}

pub(super) async fn create_table(c: &Client, r: &ResourceRequest<'_>) -> Result<Provisioned, ProvisionError> {
    let (db, name, input) = table_input(r)?;
    let mut body = json!({"DatabaseName": db, "TableInput": input});
    if let Some(id) = s(r.properties, "CatalogId") {
        body["CatalogId"] = json!(id);
    }
    call(c, "CreateTable", body).await?;
    Ok(Provisioned::named(name, []))
}

pub(super) async fn update_table(
    c: &Client,
    r: &ResourceRequest<'_>,
    name: &str,
) -> Result<Provisioned, ProvisionError> {
    let (db, _, mut input) = table_input(r)?;
    input["Name"] = json!(name);
    call(c, "UpdateTable", json!({"DatabaseName": db, "TableInput": input})).await?;
    Ok(Provisioned::named(name, []))
}

pub(super) async fn delete_table(c: &Client, p: &Value, name: &str) -> Result<(), ProvisionError> {
    let db = s(p, "DatabaseName").unwrap_or_default();
    gone(
        c.json(
            "glue",
            "AWSGlue.DeleteTable",
            &json!({"DatabaseName": db, "Name": name}),
        )
        .await
        .map(drop),
    )
}
