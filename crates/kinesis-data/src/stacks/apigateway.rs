//! `AWS::ApiGateway::{RestApi, Resource, Method, Deployment, Stage}` over the API Gateway
//! control plane (`/restapis…`), and `AWS::ApiGateway::Account` recorded (we write no
//! CloudWatch logs; its role must exist, as API Gateway checks). Ref and GetAtt as AWS documents them: a RestApi's Ref is
//! its id (GetAtt `RestApiId`, `RootResourceId`), a Resource's its id (`ResourceId`), a
//! Method's a generated id, a Deployment's its id (`DeploymentId`), a Stage's its name.
//! Replacement follows AWS's resource documentation: a Resource, and a Method's API,
//! resource and HTTP method, a Deployment's API, a Stage's API and name, need new ones; the
//! rest is updated in place (a Method by putting it again).

use kd_stacks::{ProvisionError, Provisioned, ResourceRequest};
use serde_json::{Value, json};

use super::{coerce, failed, generated_name, gone, invalid, s, tags};
use crate::client::{Client, uri_encode};

/// Properties whose change needs a new resource, per type.
pub(super) fn replaces(resource_type: &str, old: &Value, new: &Value) -> bool {
    let differs = |keys: &[&str]| keys.iter().any(|k| old.get(*k) != new.get(*k));
    match resource_type {
        "AWS::ApiGateway::RestApi" => false,
        "AWS::ApiGateway::Resource" => differs(&["RestApiId", "ParentId", "PathPart"]),
        "AWS::ApiGateway::Method" => differs(&["RestApiId", "ResourceId", "HttpMethod"]),
        // Only the description can be changed on a deployment; a new StageName needs a new
        // deployment here (CDK makes a new logical id for every change anyway).
        "AWS::ApiGateway::Deployment" => {
            differs(&["RestApiId", "StageName", "StageDescription", "DeploymentCanarySettings"])
        }
        "AWS::ApiGateway::Stage" => differs(&["RestApiId", "StageName"]),
        _ => false,
    }
}

/// `AWS::ApiGateway::Account`: its `CloudWatchRoleArn`, when given, must name a role of the
/// account (API Gateway's `The role ARN does not have required permissions set to API
/// Gateway` otherwise). Nothing else is kept: there are no execution logs to write.
pub(super) async fn check_account(c: &Client, p: &Value) -> Result<(), ProvisionError> {
    let Some(arn) = s(p, "CloudWatchRoleArn") else {
        return Ok(());
    };
    let refused = || invalid("The role ARN does not have required permissions set to API Gateway");
    let name = arn
        .split_once(":role/")
        .map(|(_, path_name)| path_name.rsplit('/').next().unwrap_or(path_name).to_owned())
        .ok_or_else(refused)?;
    c.query("iam", super::IAM_VERSION, "GetRole", &[("RoleName", name.as_str())])
        .await
        .map_err(|_| refused())?;
    Ok(())
}

async fn call(c: &Client, method: &str, path: &str, body: Option<&Value>) -> Result<Value, ProvisionError> {
    c.rest_json("apigateway", method, path, &[], body).await.map_err(failed)
}

fn req(p: &Value, key: &str) -> Result<String, ProvisionError> {
    s(p, key).ok_or_else(|| invalid(format!("Property {key} cannot be empty.")))
}

fn seg(v: &str) -> String {
    uri_encode(v, false)
}

fn id_of(v: &Value, what: &str) -> Result<String, ProvisionError> {
    v["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| invalid(format!("{what} answered without an id")))
}

// ---------------------------------------------------------------------- RestApi

async fn root_resource(c: &Client, api: &str) -> Result<String, ProvisionError> {
    let v = c
        .rest_json(
            "apigateway",
            "GET",
            &format!("/restapis/{}/resources", seg(api)),
            &[("limit", "500")],
            None,
        )
        .await
        .map_err(failed)?;
    let items = v["item"]
        .as_array()
        .or_else(|| v["items"].as_array())
        .cloned()
        .unwrap_or_default();
    items
        .iter()
        .find(|i| i["path"] == "/")
        .and_then(|i| i["id"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| invalid(format!("REST API {api} has no root resource")))
}

async fn rest_api_provisioned(c: &Client, api: &str) -> Result<Provisioned, ProvisionError> {
    let root = root_resource(c, api).await?;
    Ok(Provisioned::named(
        api,
        [
            ("RestApiId".to_owned(), json!(api)),
            ("RootResourceId".to_owned(), json!(root)),
        ],
    ))
}

pub(super) async fn create_rest_api(c: &Client, r: &ResourceRequest<'_>) -> Result<Provisioned, ProvisionError> {
    let p = r.properties;
    for k in ["Body", "BodyS3Location", "CloneFrom"] {
        if p.get(k).is_some() {
            return Err(invalid(format!(
                "AWS::ApiGateway::RestApi {k} (OpenAPI import / cloning) is not supported by kinesis-data"
            )));
        }
    }
    let name = req(p, "Name")?;
    let mut body = json!({"name": name});
    for (prop, api) in [
        ("Description", "description"),
        ("BinaryMediaTypes", "binaryMediaTypes"),
        ("ApiKeySourceType", "apiKeySource"),
        ("DisableExecuteApiEndpoint", "disableExecuteApiEndpoint"),
        ("MinimumCompressionSize", "minimumCompressionSize"),
    ] {
        if let Some(v) = p.get(prop) {
            body[api] = coerce(
                &json!({prop: v}),
                &["MinimumCompressionSize"],
                &["DisableExecuteApiEndpoint"],
            )[prop]
                .clone();
        }
    }
    if let Some(types) = p.get("EndpointConfiguration").and_then(|e| e.get("Types")) {
        body["endpointConfiguration"] = json!({"types": types});
    }
    if let Some(policy) = p.get("Policy") {
        body["policy"] = json!(match policy {
            Value::String(t) => t.clone(),
            other => other.to_string(),
        });
    }
    let t: serde_json::Map<String, Value> = tags(p).into_iter().map(|(k, v)| (k, json!(v))).collect();
    if !t.is_empty() {
        body["tags"] = Value::Object(t);
    }
    let made = call(c, "POST", "/restapis", Some(&body)).await?;
    let api = id_of(&made, "CreateRestApi")?;
    match rest_api_provisioned(c, &api).await {
        Ok(p) => Ok(p),
        Err(e) => {
            let _ = call(c, "DELETE", &format!("/restapis/{}", seg(&api)), None).await;
            Err(e)
        }
    }
}

pub(super) async fn update_rest_api(
    c: &Client,
    api: &str,
    p: &Value,
    old: &Value,
) -> Result<Provisioned, ProvisionError> {
    let mut ops = Vec::new();
    for (prop, path) in [("Name", "/name"), ("Description", "/description")] {
        if p.get(prop) != old.get(prop) {
            ops.push(json!({"op": "replace", "path": path, "value": s(p, prop).unwrap_or_default()}));
        }
    }
    if !ops.is_empty() {
        call(
            c,
            "PATCH",
            &format!("/restapis/{}", seg(api)),
            Some(&json!({"patchOperations": ops})),
        )
        .await?;
    }
    rest_api_provisioned(c, api).await
}

pub(super) async fn delete_rest_api(c: &Client, api: &str) -> Result<(), ProvisionError> {
    gone(
        c.rest_json("apigateway", "DELETE", &format!("/restapis/{}", seg(api)), &[], None)
            .await
            .map(drop),
    )
}

// ---------------------------------------------------------------------- Resource

pub(super) async fn create_resource(c: &Client, r: &ResourceRequest<'_>) -> Result<Provisioned, ProvisionError> {
    let p = r.properties;
    let (api, parent, part) = (req(p, "RestApiId")?, req(p, "ParentId")?, req(p, "PathPart")?);
    let made = call(
        c,
        "POST",
        &format!("/restapis/{}/resources/{}", seg(&api), seg(&parent)),
        Some(&json!({"pathPart": part})),
    )
    .await?;
    let id = id_of(&made, "CreateResource")?;
    Ok(Provisioned::named(id.clone(), [("ResourceId".to_owned(), json!(id))]))
}

pub(super) async fn delete_resource(c: &Client, p: &Value, id: &str) -> Result<(), ProvisionError> {
    let api = s(p, "RestApiId").unwrap_or_default();
    gone(
        c.rest_json(
            "apigateway",
            "DELETE",
            &format!("/restapis/{}/resources/{}", seg(&api), seg(id)),
            &[],
            None,
        )
        .await
        .map(drop),
    )
}

// ---------------------------------------------------------------------- Method

fn method_path(p: &Value) -> Result<String, ProvisionError> {
    Ok(format!(
        "/restapis/{}/resources/{}/methods/{}",
        seg(&req(p, "RestApiId")?),
        seg(&req(p, "ResourceId")?),
        seg(&req(p, "HttpMethod")?.to_ascii_uppercase())
    ))
}

/// The method, its integration, and their responses.
async fn put_method(c: &Client, p: &Value) -> Result<(), ProvisionError> {
    let path = method_path(p)?;
    let mut m = json!({"authorizationType": s(p, "AuthorizationType").unwrap_or_else(|| "NONE".to_owned())});
    for (prop, api) in [
        ("AuthorizerId", "authorizerId"),
        ("ApiKeyRequired", "apiKeyRequired"),
        ("OperationName", "operationName"),
        ("RequestParameters", "requestParameters"),
        ("RequestModels", "requestModels"),
        ("RequestValidatorId", "requestValidatorId"),
        ("AuthorizationScopes", "authorizationScopes"),
    ] {
        if let Some(v) = p.get(prop) {
            m[api] = coerce(&json!({prop: v}), &[], &["ApiKeyRequired"])[prop].clone();
        }
    }
    if let Some(params) = m.get_mut("requestParameters") {
        *params = bool_map(params);
    }
    call(c, "PUT", &path, Some(&m)).await?;
    for resp in super::list(p, "MethodResponses") {
        let code = s(&resp, "StatusCode").ok_or_else(|| invalid("MethodResponses need a StatusCode"))?;
        let mut b = json!({});
        if let Some(v) = resp.get("ResponseParameters") {
            b["responseParameters"] = bool_map(v);
        }
        if let Some(v) = resp.get("ResponseModels") {
            b["responseModels"] = v.clone();
        }
        call(c, "PUT", &format!("{path}/responses/{}", seg(&code)), Some(&b)).await?;
    }
    let Some(i) = p.get("Integration") else {
        return Ok(());
    };
    let i = coerce(i, &["TimeoutInMillis"], &[]);
    let mut b = json!({"type": s(&i, "Type").ok_or_else(|| invalid("Integration needs a Type"))?});
    for (prop, api) in [
        ("IntegrationHttpMethod", "httpMethod"),
        ("Uri", "uri"),
        ("ConnectionType", "connectionType"),
        ("ConnectionId", "connectionId"),
        ("Credentials", "credentials"),
        ("RequestParameters", "requestParameters"),
        ("RequestTemplates", "requestTemplates"),
        ("PassthroughBehavior", "passthroughBehavior"),
        ("ContentHandling", "contentHandling"),
        ("TimeoutInMillis", "timeoutInMillis"),
        ("CacheNamespace", "cacheNamespace"),
        ("CacheKeyParameters", "cacheKeyParameters"),
    ] {
        if let Some(v) = i.get(prop) {
            b[api] = v.clone();
        }
    }
    call(c, "PUT", &format!("{path}/integration"), Some(&b)).await?;
    for resp in super::list(&i, "IntegrationResponses") {
        let code = s(&resp, "StatusCode").ok_or_else(|| invalid("IntegrationResponses need a StatusCode"))?;
        let mut b = json!({});
        for (prop, api) in [
            ("SelectionPattern", "selectionPattern"),
            ("ResponseParameters", "responseParameters"),
            ("ResponseTemplates", "responseTemplates"),
            ("ContentHandling", "contentHandling"),
        ] {
            if let Some(v) = resp.get(prop) {
                b[api] = v.clone();
            }
        }
        call(
            c,
            "PUT",
            &format!("{path}/integration/responses/{}", seg(&code)),
            Some(&b),
        )
        .await?;
    }
    Ok(())
}

/// A `{name: bool}` map (request / response parameters) with `"true"` / `"false"` as
/// booleans.
fn bool_map(v: &Value) -> Value {
    match v.as_object() {
        Some(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = match x.as_str() {
                        Some("true") => json!(true),
                        Some("false") => json!(false),
                        _ => x.clone(),
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        None => v.clone(),
    }
}

pub(super) async fn create_method(c: &Client, r: &ResourceRequest<'_>) -> Result<Provisioned, ProvisionError> {
    if let Err(e) = put_method(c, r.properties).await {
        let _ = delete_method(c, r.properties).await;
        return Err(e);
    }
    Ok(Provisioned::named(
        generated_name(&r.stack.stack_name, r.logical_id, 64, false),
        [],
    ))
}

pub(super) async fn update_method(c: &Client, physical: &str, p: &Value) -> Result<Provisioned, ProvisionError> {
    delete_method(c, p).await?;
    put_method(c, p).await?;
    Ok(Provisioned::named(physical, []))
}

pub(super) async fn delete_method(c: &Client, p: &Value) -> Result<(), ProvisionError> {
    let path = method_path(p)?;
    gone(c.rest_json("apigateway", "DELETE", &path, &[], None).await.map(drop))
}

// ---------------------------------------------------------------------- Deployment

pub(super) async fn create_deployment(c: &Client, r: &ResourceRequest<'_>) -> Result<Provisioned, ProvisionError> {
    let p = r.properties;
    let api = req(p, "RestApiId")?;
    let mut b = json!({});
    if let Some(v) = s(p, "StageName") {
        b["stageName"] = json!(v);
    }
    if let Some(v) = s(p, "Description") {
        b["description"] = json!(v);
    }
    if let Some(d) = p.get("StageDescription") {
        if let Some(v) = s(d, "Description") {
            b["stageDescription"] = json!(v);
        }
        if let Some(v) = d.get("Variables") {
            b["variables"] = v.clone();
        }
    }
    let made = call(c, "POST", &format!("/restapis/{}/deployments", seg(&api)), Some(&b)).await?;
    let id = id_of(&made, "CreateDeployment")?;
    Ok(Provisioned::named(id.clone(), [("DeploymentId".to_owned(), json!(id))]))
}

pub(super) async fn update_deployment(c: &Client, id: &str, p: &Value) -> Result<Provisioned, ProvisionError> {
    let api = req(p, "RestApiId")?;
    call(
        c,
        "PATCH",
        &format!("/restapis/{}/deployments/{}", seg(&api), seg(id)),
        Some(&json!({"patchOperations": [{"op": "replace", "path": "/description", "value": s(p, "Description").unwrap_or_default()}]})),
    )
    .await?;
    Ok(Provisioned::named(id, [("DeploymentId".to_owned(), json!(id))]))
}

/// Deletes the stage the deployment made (if it still points at it), then the deployment.
pub(super) async fn delete_deployment(c: &Client, id: &str, p: &Value) -> Result<(), ProvisionError> {
    let api = s(p, "RestApiId").unwrap_or_default();
    if let Some(stage) = s(p, "StageName") {
        let path = format!("/restapis/{}/stages/{}", seg(&api), seg(&stage));
        if let Ok(v) = c.rest_json("apigateway", "GET", &path, &[], None).await
            && v["deploymentId"] == id
        {
            gone(c.rest_json("apigateway", "DELETE", &path, &[], None).await.map(drop))?;
        }
    }
    gone(
        c.rest_json(
            "apigateway",
            "DELETE",
            &format!("/restapis/{}/deployments/{}", seg(&api), seg(id)),
            &[],
            None,
        )
        .await
        .map(drop),
    )
}

// ---------------------------------------------------------------------- Stage

pub(super) async fn create_stage(c: &Client, r: &ResourceRequest<'_>) -> Result<Provisioned, ProvisionError> {
    let p = r.properties;
    let api = req(p, "RestApiId")?;
    let name = req(p, "StageName")?;
    let mut b = json!({"stageName": name, "deploymentId": req(p, "DeploymentId")?});
    for (prop, key) in [
        ("Description", "description"),
        ("Variables", "variables"),
        ("TracingEnabled", "tracingEnabled"),
        ("CacheClusterEnabled", "cacheClusterEnabled"),
    ] {
        if let Some(v) = p.get(prop) {
            b[key] = coerce(&json!({prop: v}), &[], &["TracingEnabled", "CacheClusterEnabled"])[prop].clone();
        }
    }
    let t: serde_json::Map<String, Value> = tags(p).into_iter().map(|(k, v)| (k, json!(v))).collect();
    if !t.is_empty() {
        b["tags"] = Value::Object(t);
    }
    call(c, "POST", &format!("/restapis/{}/stages", seg(&api)), Some(&b)).await?;
    Ok(Provisioned::named(name, []))
}

pub(super) async fn update_stage(
    c: &Client,
    name: &str,
    p: &Value,
    old: &Value,
) -> Result<Provisioned, ProvisionError> {
    let api = req(p, "RestApiId")?;
    let mut ops = Vec::new();
    for (prop, path) in [("DeploymentId", "/deploymentId"), ("Description", "/description")] {
        if p.get(prop) != old.get(prop) {
            ops.push(json!({"op": "replace", "path": path, "value": s(p, prop).unwrap_or_default()}));
        }
    }
    let vars = |v: &Value| -> serde_json::Map<String, Value> {
        v.get("Variables")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (want, had) = (vars(p), vars(old));
    for (k, v) in &want {
        if had.get(k) != Some(v) {
            let value = match v {
                Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            ops.push(json!({"op": "replace", "path": format!("/variables/{k}"), "value": value}));
        }
    }
    for k in had.keys().filter(|k| !want.contains_key(*k)) {
        ops.push(json!({"op": "remove", "path": format!("/variables/{k}")}));
    }
    if !ops.is_empty() {
        call(
            c,
            "PATCH",
            &format!("/restapis/{}/stages/{}", seg(&api), seg(name)),
            Some(&json!({"patchOperations": ops})),
        )
        .await?;
    }
    Ok(Provisioned::named(name, []))
}

pub(super) async fn delete_stage(c: &Client, name: &str, p: &Value) -> Result<(), ProvisionError> {
    let api = s(p, "RestApiId").unwrap_or_default();
    gone(
        c.rest_json(
            "apigateway",
            "DELETE",
            &format!("/restapis/{}/stages/{}", seg(&api), seg(name)),
            &[],
            None,
        )
        .await
        .map(drop),
    )
}
