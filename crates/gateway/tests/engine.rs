//! Engine tests without HTTP: the control plane over a real MetaStore, the data plane over
//! the in-memory fake invoker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use kd_gateway::ports::testing::{FakeForwarder, FakeInvoker};
use kd_gateway::*;
use kd_storage::{MetaStore, SystemClock};

const FN: &str = "arn:aws:lambda:us-east-1:000000000000:function:items";

fn scope() -> Scope {
    Scope {
        account: "000000000000".into(),
        region: "us-east-1".into(),
    }
}

fn lambda_uri(f: &str) -> String {
    format!("arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{f}/invocations")
}

fn open(dir: &std::path::Path, invoker: Arc<dyn FunctionInvoker>) -> Arc<Gateway> {
    open_with(dir, invoker, Arc::new(FakeForwarder::unreachable()))
}

fn open_with(
    dir: &std::path::Path,
    invoker: Arc<dyn FunctionInvoker>,
    forwarder: Arc<dyn HttpForwarder>,
) -> Arc<Gateway> {
    let meta = Arc::new(MetaStore::open(&dir.join("meta.redb")).expect("meta"));
    Gateway::open(Config::default(), meta, Arc::new(SystemClock), invoker, forwarder).expect("open")
}

fn request(api: &str, stage: &str, method: &str, path: &str) -> InvokeRequest {
    InvokeRequest {
        api_id: api.into(),
        stage: stage.into(),
        path: path.into(),
        method: method.into(),
        query: None,
        headers: HeaderMap::new(),
        body: Bytes::new(),
        source_ip: "127.0.0.1".into(),
        domain_name: "localhost".into(),
        protocol: "HTTP/1.1".into(),
        request_id: "rid".into(),
        extended_request_id: new_apigw_id(),
        caller: None,
    }
}

async fn call(g: &Gateway, api: &str, stage: &str, method: &str, path: &str) -> http::Response<Bytes> {
    match g.route(api, stage, method, path) {
        Ok(route) => g.execute(&route, request(api, stage, method, path)).await,
        Err(r) => r,
    }
}

fn body(r: &http::Response<Bytes>) -> serde_json::Value {
    serde_json::from_slice(r.body()).unwrap_or(serde_json::Value::Null)
}

/// `/` GET and `/{id}` GET, both Lambda proxy; deployed to `prod`. Returns (api, root, id resource).
async fn items_api(g: &Gateway) -> (String, String, String) {
    let s = scope();
    let api = g
        .create_rest_api(
            &s,
            CreateApiInput {
                name: "items".into(),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    let id = g
        .create_resource(&s, &api.id, &api.root_id, "{id}")
        .await
        .expect("resource");
    for r in [&api.root_id, &id.id] {
        g.put_method(
            &s,
            &api.id,
            r,
            "GET",
            MethodInput {
                authorization_type: "NONE".into(),
                ..Default::default()
            },
        )
        .await
        .expect("method");
        g.put_integration(
            &s,
            &api.id,
            r,
            "GET",
            IntegrationInput {
                kind: "AWS_PROXY".into(),
                http_method: Some("POST".into()),
                uri: Some(lambda_uri(FN)),
                ..Default::default()
            },
        )
        .await
        .expect("integration");
    }
    g.create_deployment(
        &s,
        &api.id,
        DeploymentInput {
            stage_name: Some("prod".into()),
            variables: [("env".to_owned(), "test".to_owned())].into(),
            ..Default::default()
        },
    )
    .await
    .expect("deploy");
    (api.id.clone(), api.root_id.clone(), id.id)
}

#[tokio::test]
async fn proxy_event_reaches_the_function_and_its_answer_the_client() {
    let dir = tempfile::tempdir().expect("dir");
    let fake = Arc::new(FakeInvoker::echo());
    let g = open(dir.path(), fake.clone());
    let (api, _, id) = items_api(&g).await;
    let r = call(&g, &api, "prod", "GET", "/42").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-amz-apigw-id"));
    assert_eq!(r.headers()["x-amzn-requestid"], "rid");
    let event = body(&r);
    assert_eq!(event["resource"], "/{id}");
    assert_eq!(event["path"], "/42");
    assert_eq!(event["pathParameters"]["id"], "42");
    assert_eq!(event["stageVariables"]["env"], "test");
    assert_eq!(event["requestContext"]["path"], "/prod/42");
    assert_eq!(event["requestContext"]["resourceId"], id.as_str());
    assert_eq!(event["requestContext"]["apiId"], api.as_str());
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, FN);
    assert_eq!(
        calls[0].1,
        format!("arn:aws:execute-api:us-east-1:000000000000:{api}/prod/GET/{{id}}")
    );
    // Root.
    let r = call(&g, &api, "prod", "GET", "/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(body(&r)["pathParameters"], serde_json::Value::Null);
}

#[tokio::test]
async fn unknown_routes_methods_and_stages_are_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let g = open(dir.path(), Arc::new(FakeInvoker::echo()));
    let (api, _, _) = items_api(&g).await;
    for (m, p) in [("POST", "/42"), ("GET", "/a/b"), ("DELETE", "/")] {
        let r = call(&g, &api, "prod", m, p).await;
        assert_eq!(r.status(), 403, "{m} {p}");
        assert_eq!(body(&r)["message"], "Missing Authentication Token");
        assert_eq!(r.headers()["x-amzn-errortype"], "MissingAuthenticationTokenException");
    }
    assert_eq!(call(&g, &api, "nostage", "GET", "/").await.status(), 403);
    assert_eq!(call(&g, "nosuchapi0", "prod", "GET", "/").await.status(), 403);
}

#[tokio::test]
async fn only_deployed_state_serves_traffic() {
    let dir = tempfile::tempdir().expect("dir");
    let g = open(dir.path(), Arc::new(FakeInvoker::echo()));
    let s = scope();
    let (api, root, _) = items_api(&g).await;
    g.put_method(
        &s,
        &api,
        &root,
        "POST",
        MethodInput {
            authorization_type: "NONE".into(),
            ..Default::default()
        },
    )
    .await
    .expect("method");
    g.put_integration(
        &s,
        &api,
        &root,
        "POST",
        IntegrationInput {
            kind: "AWS_PROXY".into(),
            http_method: Some("POST".into()),
            uri: Some(lambda_uri(FN)),
            ..Default::default()
        },
    )
    .await
    .expect("integration");
    assert_eq!(call(&g, &api, "prod", "POST", "/").await.status(), 403);
    let d = g
        .create_deployment(
            &s,
            &api,
            DeploymentInput {
                stage_name: Some("prod".into()),
                ..Default::default()
            },
        )
        .await
        .expect("deploy");
    assert_eq!(call(&g, &api, "prod", "POST", "/").await.status(), 200);
    assert_eq!(g.get_stage(&s, &api, "prod").expect("stage").deployment_id, d.id);
    // The old deployment is still there; a stage on it does not serve POST.
    let deps = g.get_deployments(&s, &api, None, None).expect("deployments");
    assert_eq!(deps.items.len(), 2);
    let old = deps.items.iter().find(|x| x.id != d.id).expect("old").id.clone();
    g.create_stage(
        &s,
        &api,
        StageInput {
            name: "old".into(),
            deployment_id: old.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("stage");
    assert_eq!(call(&g, &api, "old", "POST", "/").await.status(), 403);
    assert_eq!(call(&g, &api, "old", "GET", "/").await.status(), 200);
    assert!(matches!(
        g.delete_deployment(&s, &api, &old).await,
        Err(Error::BadRequest(_))
    ));
    g.delete_stage(&s, &api, "old").await.expect("delete stage");
    g.delete_deployment(&s, &api, &old).await.expect("delete deployment");
}

#[tokio::test]
async fn function_errors_malformed_answers_denials_and_timeouts() {
    let dir = tempfile::tempdir().expect("dir");
    let fake = FakeInvoker::new(|_, event| {
        let id = event["pathParameters"]["id"].as_str().unwrap_or_default().to_owned();
        let payload = match id.as_str() {
            "error" => {
                return Ok(InvokeResult {
                    payload: Bytes::from_static(br#"{"errorMessage":"boom","errorType":"Error"}"#),
                    function_error: Some("Unhandled".into()),
                });
            }
            "denied" => return Err(InvokeError::Denied("no policy".into())),
            "malformed" => r#"{"statusCode":200,"body":{"not":"a string"}}"#.to_owned(),
            _ => r#"{"statusCode":200,"body":"ok"}"#.to_owned(),
        };
        Ok(InvokeResult {
            payload: Bytes::from(payload),
            function_error: None,
        })
    });
    let g = open(dir.path(), Arc::new(fake));
    let (api, _, _) = items_api(&g).await;
    let r = call(&g, &api, "prod", "GET", "/error").await;
    assert_eq!(r.status(), 502);
    assert_eq!(body(&r)["message"], "Internal server error");
    let r = call(&g, &api, "prod", "GET", "/malformed").await;
    assert_eq!(r.status(), 502);
    let r = call(&g, &api, "prod", "GET", "/denied").await;
    assert_eq!(r.status(), 500);
    assert_eq!(body(&r)["message"], "Internal server error");
    let r = call(&g, &api, "prod", "GET", "/fine").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.body().as_ref(), b"ok");

    // A slow function against a 100 ms integration timeout.
    let dir = tempfile::tempdir().expect("dir");
    let g = open(
        dir.path(),
        Arc::new(FakeInvoker::echo().with_delay(Duration::from_secs(5))),
    );
    let (api, root, _) = items_api(&g).await;
    let s = scope();
    g.put_integration(
        &s,
        &api,
        &root,
        "GET",
        IntegrationInput {
            kind: "AWS_PROXY".into(),
            http_method: Some("POST".into()),
            uri: Some(lambda_uri(FN)),
            timeout_ms: Some(100),
            ..Default::default()
        },
    )
    .await
    .expect("integration");
    g.create_deployment(
        &s,
        &api,
        DeploymentInput {
            stage_name: Some("prod".into()),
            ..Default::default()
        },
    )
    .await
    .expect("deploy");
    let started = std::time::Instant::now();
    let r = call(&g, &api, "prod", "GET", "/").await;
    assert_eq!(r.status(), 504);
    assert_eq!(body(&r)["message"], "Endpoint request timed out");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn mock_integrations_answer_their_templates() {
    let dir = tempfile::tempdir().expect("dir");
    let g = open(dir.path(), Arc::new(FakeInvoker::echo()));
    let s = scope();
    let (api, root, _) = items_api(&g).await;
    g.put_method(
        &s,
        &api,
        &root,
        "OPTIONS",
        MethodInput {
            authorization_type: "NONE".into(),
            ..Default::default()
        },
    )
    .await
    .expect("method");
    g.put_integration(
        &s,
        &api,
        &root,
        "OPTIONS",
        IntegrationInput {
            kind: "MOCK".into(),
            request_templates: [("application/json".to_owned(), r#"{"statusCode": 204}"#.to_owned())].into(),
            ..Default::default()
        },
    )
    .await
    .expect("integration");
    g.put_method_response(
        &s,
        &api,
        &root,
        "OPTIONS",
        MethodResponse {
            status_code: "204".into(),
            response_parameters: [("method.response.header.Access-Control-Allow-Origin".to_owned(), true)].into(),
            response_models: BTreeMap::new(),
        },
    )
    .await
    .expect("method response");
    g.put_integration_response(
        &s,
        &api,
        &root,
        "OPTIONS",
        IntegrationResponse {
            status_code: "204".into(),
            selection_pattern: None,
            response_parameters: [
                (
                    "method.response.header.Access-Control-Allow-Origin".to_owned(),
                    "'*'".to_owned(),
                ),
                (
                    "method.response.header.Access-Control-Allow-Methods".to_owned(),
                    "'GET,OPTIONS'".to_owned(),
                ),
            ]
            .into(),
            response_templates: BTreeMap::new(),
            content_handling: None,
        },
    )
    .await
    .expect("integration response");
    g.create_deployment(
        &s,
        &api,
        DeploymentInput {
            stage_name: Some("prod".into()),
            ..Default::default()
        },
    )
    .await
    .expect("deploy");
    let r = call(&g, &api, "prod", "OPTIONS", "/").await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.headers()["access-control-allow-methods"], "GET,OPTIONS");
}

#[tokio::test]
async fn control_plane_rules_and_errors() {
    let dir = tempfile::tempdir().expect("dir");
    let g = open(dir.path(), Arc::new(FakeInvoker::echo()));
    let s = scope();
    let api = g
        .create_rest_api(
            &s,
            CreateApiInput {
                name: "x".into(),
                ..Default::default()
            },
        )
        .await
        .expect("api");
    // Nothing to deploy yet.
    let e = g.create_deployment(&s, &api.id, DeploymentInput::default()).await;
    assert!(matches!(e, Err(Error::BadRequest(m)) if m == "The REST API doesn't contain any methods"));
    let items = g
        .create_resource(&s, &api.id, &api.root_id, "items")
        .await
        .expect("items");
    assert_eq!(items.path, "/items");
    let e = g.create_resource(&s, &api.id, &api.root_id, "items").await;
    assert!(matches!(e, Err(Error::Conflict(_))));
    let v = g.create_resource(&s, &api.id, &items.id, "{id}").await.expect("var");
    assert_eq!(v.path, "/items/{id}");
    let e = g.create_resource(&s, &api.id, &items.id, "{other}").await;
    assert!(matches!(e, Err(Error::BadRequest(_))));
    let e = g.create_resource(&s, &api.id, &items.id, "bad/part").await;
    assert!(matches!(e, Err(Error::BadRequest(_))));
    let p = g
        .create_resource(&s, &api.id, &api.root_id, "{proxy+}")
        .await
        .expect("greedy");
    let e = g.create_resource(&s, &api.id, &p.id, "x").await;
    assert!(matches!(e, Err(Error::BadRequest(_))));
    let e = g.create_resource(&s, &api.id, "nosuchres0", "x").await;
    assert!(matches!(e, Err(Error::NotFound(m)) if m == "Invalid Resource identifier specified"));
    let m = MethodInput {
        authorization_type: "NONE".into(),
        ..Default::default()
    };
    g.put_method(&s, &api.id, &v.id, "GET", m.clone())
        .await
        .expect("method");
    assert!(matches!(
        g.put_method(&s, &api.id, &v.id, "GET", m.clone()).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        g.put_method(&s, &api.id, &v.id, "FETCH", m.clone()).await,
        Err(Error::BadRequest(_))
    ));
    let e = g.create_deployment(&s, &api.id, DeploymentInput::default()).await;
    assert!(matches!(e, Err(Error::BadRequest(m)) if m == "No integration defined for method"));
    assert!(matches!(
        g.get_integration(&s, &api.id, &v.id, "GET"),
        Err(Error::NotFound(_))
    ));
    let bad = IntegrationInput {
        kind: "AWS_PROXY".into(),
        http_method: Some("POST".into()),
        uri: Some("arn:aws:s3:::bucket".into()),
        ..Default::default()
    };
    assert!(matches!(
        g.put_integration(&s, &api.id, &v.id, "GET", bad).await,
        Err(Error::BadRequest(_))
    ));
    // Deleting a resource removes its subtree.
    g.delete_resource(&s, &api.id, &items.id).await.expect("delete");
    assert!(matches!(g.get_resource(&s, &api.id, &v.id), Err(Error::NotFound(_))));
    assert!(matches!(
        g.delete_resource(&s, &api.id, &api.root_id).await,
        Err(Error::BadRequest(_))
    ));
    // Other accounts do not see the API.
    let other = Scope {
        account: "111111111111".into(),
        region: "us-east-1".into(),
    };
    assert!(matches!(g.get_rest_api(&other, &api.id), Err(Error::NotFound(_))));
    // Patches.
    let patched = g
        .update_rest_api(
            &s,
            &api.id,
            &[
                PatchOp {
                    op: "replace".into(),
                    path: "/name".into(),
                    value: Some("renamed".into()),
                    from: None,
                },
                PatchOp {
                    op: "add".into(),
                    path: "/binaryMediaTypes/image~1png".into(),
                    value: None,
                    from: None,
                },
            ],
        )
        .await
        .expect("patch");
    assert_eq!(patched.name, "renamed");
    assert_eq!(patched.binary_media_types, vec!["image/png".to_owned()]);
    let e = g
        .update_rest_api(
            &s,
            &api.id,
            &[PatchOp {
                op: "replace".into(),
                path: "/nope".into(),
                value: None,
                from: None,
            }],
        )
        .await;
    assert!(matches!(e, Err(Error::BadRequest(_))));
    // Paging.
    for i in 0..3 {
        g.create_rest_api(
            &s,
            CreateApiInput {
                name: format!("p{i}"),
                ..Default::default()
            },
        )
        .await
        .expect("api");
    }
    let p1 = g.get_rest_apis(&s, None, Some(3)).expect("page");
    assert_eq!(p1.items.len(), 3);
    let p2 = g.get_rest_apis(&s, p1.position.as_deref(), Some(3)).expect("page");
    assert_eq!(p2.items.len(), 1);
    assert!(p2.position.is_none());
    g.delete_rest_api(&s, &api.id).await.expect("delete api");
    assert!(matches!(g.get_rest_api(&s, &api.id), Err(Error::NotFound(_))));
}

#[tokio::test]
async fn apis_deployments_and_stages_survive_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let (api, id) = {
        let g = open(dir.path(), Arc::new(FakeInvoker::echo()));
        let (api, _, id) = items_api(&g).await;
        g.update_stage(
            &scope(),
            &api,
            "prod",
            &[PatchOp {
                op: "replace".into(),
                path: "/variables/fn".into(),
                value: Some("items".into()),
                from: None,
            }],
        )
        .await
        .expect("update stage");
        (api, id)
    };
    let g = open(dir.path(), Arc::new(FakeInvoker::echo()));
    let s = scope();
    assert_eq!(g.get_resource(&s, &api, &id).expect("resource").path, "/{id}");
    let stage = g.get_stage(&s, &api, "prod").expect("stage");
    assert_eq!(stage.variables.get("fn").map(String::as_str), Some("items"));
    let r = call(&g, &api, "prod", "GET", "/7").await;
    assert_eq!(r.status(), 200);
    assert_eq!(body(&r)["stageVariables"]["fn"], "items");
}

/// `/{proxy+}` ANY → `http://backend.example:8080/base/{proxy}` (the console's mapping of
/// `proxy`), `/items/{id}` GET → POST `http://${stageVariables.host}/things/{id}?fixed=1`
/// (an unmapped variable, header and query-string mappings); deployed to `prod` with
/// `host=backend.example`. `timeout_ms` applies to both. Returns the API id.
async fn http_proxy_api(g: &Gateway, timeout_ms: Option<i64>) -> String {
    let s = scope();
    let api = g
        .create_rest_api(
            &s,
            CreateApiInput {
                name: "http".into(),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    let proxy = g
        .create_resource(&s, &api.id, &api.root_id, "{proxy+}")
        .await
        .expect("resource");
    let items = g
        .create_resource(&s, &api.id, &api.root_id, "items")
        .await
        .expect("resource");
    let id = g
        .create_resource(&s, &api.id, &items.id, "{id}")
        .await
        .expect("resource");
    for (r, method, integration_method, uri, params) in [
        (
            &proxy.id,
            "ANY",
            "ANY",
            "http://backend.example:8080/base/{proxy}",
            vec![("integration.request.path.proxy", "method.request.path.proxy")],
        ),
        (
            &id.id,
            "GET",
            "POST",
            "http://${stageVariables.host}/things/{id}?fixed=1",
            vec![
                ("integration.request.header.x-stage", "stageVariables.host"),
                ("integration.request.header.x-static", "'yes'"),
                ("integration.request.querystring.src", "method.request.header.x-src"),
            ],
        ),
    ] {
        g.put_method(
            &s,
            &api.id,
            r,
            method,
            MethodInput {
                authorization_type: "NONE".into(),
                ..Default::default()
            },
        )
        .await
        .expect("method");
        g.put_integration(
            &s,
            &api.id,
            r,
            method,
            IntegrationInput {
                kind: "HTTP_PROXY".into(),
                http_method: Some(integration_method.into()),
                uri: Some(uri.into()),
                request_parameters: params.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
                timeout_ms,
                ..Default::default()
            },
        )
        .await
        .expect("integration");
    }
    g.create_deployment(
        &s,
        &api.id,
        DeploymentInput {
            stage_name: Some("prod".into()),
            variables: [("host".to_owned(), "backend.example".to_owned())].into(),
            ..Default::default()
        },
    )
    .await
    .expect("deploy");
    api.id.clone()
}

/// A backend answering 201 with a few headers (hop-by-hop ones among them), except for paths
/// naming a failure.
fn fake_backend() -> FakeForwarder {
    FakeForwarder::new(|req| match req.uri().path() {
        "/base/down" => Err(ForwardError::Unreachable("connection refused".into())),
        "/base/huge" => Err(ForwardError::TooLarge(11 << 20)),
        _ => {
            let mut r = http::Response::new(Bytes::from_static(b"backend body"));
            *r.status_mut() = http::StatusCode::CREATED;
            let h = r.headers_mut();
            h.insert("content-type", http::HeaderValue::from_static("text/plain"));
            h.insert("x-backend", http::HeaderValue::from_static("1"));
            h.insert("connection", http::HeaderValue::from_static("keep-alive, x-private"));
            h.insert("x-private", http::HeaderValue::from_static("hop"));
            h.insert("transfer-encoding", http::HeaderValue::from_static("chunked"));
            Ok(r)
        }
    })
}

async fn send(g: &Gateway, api: &str, req: InvokeRequest) -> http::Response<Bytes> {
    match g.route(api, "prod", &req.method, &req.path) {
        Ok(route) => g.execute(&route, req).await,
        Err(r) => r,
    }
}

#[tokio::test]
async fn http_proxy_forwards_the_request_and_relays_the_answer() {
    let dir = tempfile::tempdir().expect("dir");
    let fake = Arc::new(fake_backend());
    let g = open_with(dir.path(), Arc::new(FakeInvoker::echo()), fake.clone());
    let api = http_proxy_api(&g, None).await;

    // Greedy proxy, ANY: the client's method, path (re-encoded), query, headers and body.
    let mut req = request(&api, "prod", "PUT", "/a/b%20c/d");
    req.query = Some("x=1&y=a%20b".into());
    req.body = Bytes::from_static(b"{\"k\":1}");
    req.source_ip = "10.1.2.3".into();
    for (k, v) in [
        ("content-type", "application/json"),
        ("x-custom", "v"),
        ("host", "abc.execute-api.localhost"),
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "dropped"),
        ("te", "trailers"),
        ("x-forwarded-for", "192.0.2.9"),
    ] {
        req.headers.insert(k, http::HeaderValue::from_static(v));
    }
    let r = send(&g, &api, req).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.body().as_ref(), b"backend body");
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.headers()["x-backend"], "1");
    for hop in ["connection", "x-private", "transfer-encoding"] {
        assert!(!r.headers().contains_key(hop), "{hop}");
    }
    assert_eq!(r.headers()["x-amzn-requestid"], "rid");
    let calls = fake.calls();
    let sent = calls.last().expect("forwarded");
    assert_eq!(sent.method(), "PUT");
    assert_eq!(
        sent.uri().to_string(),
        "http://backend.example:8080/base/a/b%20c/d?x=1&y=a%20b"
    );
    let h = sent.headers();
    assert_eq!(h["host"], "backend.example:8080");
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["x-custom"], "v");
    assert_eq!(h["content-length"], "7");
    assert_eq!(h["x-forwarded-for"], "192.0.2.9, 10.1.2.3");
    assert_eq!(h["x-forwarded-proto"], "http");
    let trace = h["x-amzn-trace-id"].to_str().unwrap_or_default();
    assert!(trace.starts_with("Root=1-") && trace.len() == 7 + 8 + 1 + 24, "{trace}");
    for hop in ["connection", "x-hop", "te"] {
        assert!(!h.contains_key(hop), "{hop}");
    }
    assert_eq!(sent.body().as_ref(), b"{\"k\":1}");

    // A named variable without a mapping takes the path parameter of its name; the
    // integration's own method; stage variables in the host; header and query mappings.
    let mut req = request(&api, "prod", "GET", "/items/x%2Fy");
    req.headers.insert("x-src", http::HeaderValue::from_static("a&b"));
    let r = send(&g, &api, req).await;
    assert_eq!(r.status(), 201);
    let calls = fake.calls();
    let sent = calls.last().expect("forwarded");
    assert_eq!(sent.method(), "POST");
    assert_eq!(
        sent.uri().to_string(),
        "http://backend.example/things/x%2Fy?fixed=1&src=a%26b"
    );
    assert_eq!(sent.headers()["x-stage"], "backend.example");
    assert_eq!(sent.headers()["x-static"], "yes");
    assert_eq!(sent.headers()["x-forwarded-for"], "127.0.0.1");
    assert_eq!(sent.headers()["content-length"], "0");

    // Failures: unreachable → 500, too large → 502.
    let r = send(&g, &api, request(&api, "prod", "GET", "/down")).await;
    assert_eq!(r.status(), 500);
    assert_eq!(body(&r)["message"], "Internal server error");
    let r = send(&g, &api, request(&api, "prod", "GET", "/huge")).await;
    assert_eq!(r.status(), 502);
    assert_eq!(body(&r)["message"], "Internal server error");

    // A backend slower than the integration timeout → 504.
    let dir = tempfile::tempdir().expect("dir");
    let slow = Arc::new(fake_backend().with_delay(Duration::from_secs(5)));
    let g = open_with(dir.path(), Arc::new(FakeInvoker::echo()), slow);
    let api = http_proxy_api(&g, Some(100)).await;
    let started = std::time::Instant::now();
    let r = send(&g, &api, request(&api, "prod", "GET", "/anything")).await;
    assert_eq!(r.status(), 504);
    assert_eq!(body(&r)["message"], "Endpoint request timed out");
    assert!(started.elapsed() < Duration::from_secs(4));
}
