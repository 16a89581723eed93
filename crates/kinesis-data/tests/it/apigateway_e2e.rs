//! Seed part 5 end to end: a REST API (`GET /`, `GET|PUT|DELETE /{id}`) built through the
//! control plane, whose methods call the Rust `items-api` example function (built with
//! `lambda_runtime`), which reads and writes bucket A. Driven over plain HTTP: 404 from the
//! function, 403 Missing Authentication Token, the resource policy deciding whether API
//! Gateway may invoke, a MOCK resource, a failing function (502), and a restart.

use std::time::Duration;

use aws_sdk_apigateway::types::IntegrationType;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Environment, FunctionCode, Runtime};
use kd_test_support::{TestServer, wait_until};

use crate::apigateway_wire::{header, http};
use crate::lambda_e2e::{bootstrap_zip, example_binary, role};

type R = anyhow::Result<()>;

async fn create_function(
    server: &TestServer,
    name: &str,
    bucket: &str,
    role: &str,
    zip: &[u8],
) -> anyhow::Result<String> {
    let f = server
        .lambda()
        .create_function()
        .function_name(name)
        .runtime(Runtime::Providedal2023)
        .handler("bootstrap")
        .role(role)
        .timeout(30)
        .code(FunctionCode::builder().zip_file(Blob::new(zip.to_vec())).build())
        .environment(Environment::builder().variables("BUCKET", bucket).build())
        .send()
        .await?;
    Ok(f.function_arn().unwrap_or_default().to_owned())
}

fn lambda_uri(function_arn: &str) -> String {
    format!("arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{function_arn}/invocations")
}

async fn proxy_method(
    gw: &aws_sdk_apigateway::Client,
    api: &str,
    resource: &str,
    method: &str,
    function_arn: &str,
) -> anyhow::Result<()> {
    gw.put_method()
        .rest_api_id(api)
        .resource_id(resource)
        .http_method(method)
        .authorization_type("NONE")
        .send()
        .await?;
    gw.put_integration()
        .rest_api_id(api)
        .resource_id(resource)
        .http_method(method)
        .r#type(IntegrationType::AwsProxy)
        .integration_http_method("POST")
        .uri(lambda_uri(function_arn))
        .send()
        .await?;
    Ok(())
}

#[tokio::test]
async fn part_5_rest_api_over_the_rust_items_function() -> R {
    let mut server = TestServer::start().await?;
    let ep = server.endpoint();
    let s3 = server.s3();
    s3.create_bucket().bucket("bucket-a").send().await?;
    let role = role(&ep, "items-api-role").await?;
    let zip = bootstrap_zip(&example_binary("items-api")?)?;
    let items_fn = create_function(&server, "items-api", "bucket-a", &role, &zip).await?;
    let broken_fn = create_function(&server, "items-broken", "no-such-bucket", &role, &zip).await?;

    // The REST API: root.addMethod("GET"), root.addResource("{id}") with GET, PUT, DELETE.
    let gw = server.apigateway();
    let api = gw.create_rest_api().name("items").send().await?;
    let id = api.id().unwrap_or_default().to_owned();
    let root = api.root_resource_id().unwrap_or_default().to_owned();
    let item = gw
        .create_resource()
        .rest_api_id(&id)
        .parent_id(&root)
        .path_part("{id}")
        .send()
        .await?;
    let item = item.id().unwrap_or_default().to_owned();
    proxy_method(&gw, &id, &root, "GET", &items_fn).await?;
    for m in ["GET", "PUT", "DELETE"] {
        proxy_method(&gw, &id, &item, m, &items_fn).await?;
    }
    // A literal sibling of {id} calling a function whose bucket does not exist.
    let broken = gw
        .create_resource()
        .rest_api_id(&id)
        .parent_id(&root)
        .path_part("broken")
        .send()
        .await?;
    proxy_method(&gw, &id, broken.id().unwrap_or_default(), "ANY", &broken_fn).await?;
    // A MOCK health check.
    let health = gw
        .create_resource()
        .rest_api_id(&id)
        .parent_id(&root)
        .path_part("health")
        .send()
        .await?;
    let health = health.id().unwrap_or_default().to_owned();
    gw.put_method()
        .rest_api_id(&id)
        .resource_id(&health)
        .http_method("GET")
        .authorization_type("NONE")
        .send()
        .await?;
    gw.put_integration()
        .rest_api_id(&id)
        .resource_id(&health)
        .http_method("GET")
        .r#type(IntegrationType::Mock)
        .request_templates("application/json", r#"{"statusCode": 200}"#)
        .send()
        .await?;
    gw.put_method_response()
        .rest_api_id(&id)
        .resource_id(&health)
        .http_method("GET")
        .status_code("200")
        .send()
        .await?;
    gw.put_integration_response()
        .rest_api_id(&id)
        .resource_id(&health)
        .http_method("GET")
        .status_code("200")
        .response_templates("application/json", r#"{"healthy":true}"#)
        .send()
        .await?;
    gw.create_deployment()
        .rest_api_id(&id)
        .stage_name("prod")
        .send()
        .await?;

    let addr = server.inner().addr();
    let host = format!("{id}.execute-api.localhost:{}", addr.port());
    let get = |path: &str| {
        let (host, path) = (host.clone(), path.to_owned());
        async move { http(addr, "GET", &host, &path, &[], b"").await }
    };

    // No permission yet: API Gateway may not invoke the function.
    let (s, _, b) = get("/prod/").await?;
    assert_eq!(s, 500, "{}", String::from_utf8_lossy(&b));
    assert_eq!(b, br#"{"message":"Internal server error"}"#);

    let lambda = server.lambda();
    for f in ["items-api", "items-broken"] {
        lambda
            .add_permission()
            .function_name(f)
            .statement_id("apigateway")
            .action("lambda:InvokeFunction")
            .principal("apigateway.amazonaws.com")
            .source_arn(format!("arn:aws:execute-api:us-east-1:000000000000:{id}/*"))
            .send()
            .await?;
    }
    // The function becomes Active shortly after CreateFunction.
    let listed = wait_until(Duration::from_secs(60), "GET / answered by the function", || {
        let get = get("/prod/");
        async move {
            let (s, _, b) = get.await.ok()?;
            (s == 200).then_some(b)
        }
    })
    .await?;
    assert_eq!(listed, br#"{"items":[]}"#);

    // PUT, GET, list, DELETE, 404 — host style and path style.
    let (s, _, b) = http(
        addr,
        "PUT",
        &host,
        "/prod/apple",
        &[("content-type".into(), "text/plain".into())],
        b"red and round",
    )
    .await?;
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
    let put: serde_json::Value = serde_json::from_slice(&b)?;
    assert_eq!(put["id"], "apple");
    let got = s3.get_object().bucket("bucket-a").key("apple").send().await?;
    assert_eq!(got.body.collect().await?.into_bytes().as_ref(), b"red and round");
    let (s, h, b) = get("/prod/apple").await?;
    assert_eq!(s, 200);
    assert_eq!(b, b"red and round");
    assert_eq!(header(&h, "content-type"), Some("text/plain"));
    assert!(header(&h, "x-amzn-requestid").is_some());
    assert!(header(&h, "x-amz-apigw-id").is_some());
    let local = addr.to_string();
    let (s, _, b) = http(
        addr,
        "GET",
        &local,
        &format!("/restapis/{id}/prod/_user_request_/"),
        &[],
        b"",
    )
    .await?;
    assert_eq!(s, 200);
    assert_eq!(b, br#"{"items":["apple"]}"#);
    let (s, _, _) = http(addr, "DELETE", &host, "/prod/apple", &[], b"").await?;
    assert_eq!(s, 204);
    let (s, _, b) = get("/prod/apple").await?;
    assert_eq!(s, 404);
    assert_eq!(b, br#"{"message":"item apple not found"}"#);
    let (s, _, _) = http(addr, "DELETE", &host, "/prod/apple", &[], b"").await?;
    assert_eq!(s, 404);

    // No such route or method.
    for (m, p) in [("POST", "/prod/"), ("GET", "/prod/a/b"), ("PATCH", "/prod/apple")] {
        let (s, _, b) = http(addr, m, &host, p, &[], b"").await?;
        assert_eq!(s, 403, "{m} {p}");
        assert_eq!(b, br#"{"message":"Missing Authentication Token"}"#);
    }
    // MOCK.
    let (s, _, b) = get("/prod/health").await?;
    assert_eq!(s, 200);
    assert_eq!(b, br#"{"healthy":true}"#);
    // A function error (its bucket does not exist) is a 502.
    let (s, _, b) = get("/prod/broken").await?;
    assert_eq!(s, 502, "{}", String::from_utf8_lossy(&b));
    assert_eq!(b, br#"{"message":"Internal server error"}"#);

    // Removing the permission stops the traffic.
    lambda
        .remove_permission()
        .function_name("items-broken")
        .statement_id("apigateway")
        .send()
        .await?;
    let (s, _, _) = get("/prod/broken").await?;
    assert_eq!(s, 500);

    // The API, its deployment and stage survive a restart.
    http(addr, "PUT", &host, "/prod/pear", &[], b"green").await?;
    server.restart().await?;
    let addr = server.inner().addr();
    let host = format!("{id}.execute-api.localhost:{}", addr.port());
    let b = wait_until(Duration::from_secs(60), "GET /pear after the restart", || {
        let host = host.clone();
        async move {
            let (s, _, b) = http(addr, "GET", &host, "/prod/pear", &[], b"").await.ok()?;
            (s == 200).then_some(b)
        }
    })
    .await?;
    assert_eq!(b, b"green");
    server.stop().await
}
