//! API Gateway over the wire: the control plane with aws-sdk-apigateway (shapes, ids, error
//! codes and messages, patches, paging, restart), and the data plane over plain HTTP with MOCK
//! integrations (path-style and host-style URLs, 403 for unknown routes, CORS preflight,
//! AWS_IAM methods that need a SigV4 signature) and HTTP_PROXY integrations against a local
//! backend (forwarding, passthrough, 500/502/504).

use aws_sdk_apigateway::types::{IntegrationType, Op, PatchOperation};
use kd_test_support::{TestServer, sign_headers};

use crate::assert_aws_error;

type R = anyhow::Result<()>;

/// One HTTP/1.1 exchange with an explicit `Host` header. Returns status, lowercase headers, body.
pub use kd_test_support::raw_http_host as http;

/// The value of header `name` (lowercase).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn patch(op: Op, path: &str, value: &str) -> PatchOperation {
    PatchOperation::builder().op(op).path(path).value(value).build()
}

#[tokio::test]
async fn control_plane_round_trip_with_the_sdk() -> R {
    let mut server = TestServer::start().await?;
    let gw = server.apigateway();
    let api = gw
        .create_rest_api()
        .name("items")
        .description("seed part 5")
        .binary_media_types("image/png")
        .send()
        .await?;
    let id = api.id().unwrap_or_default().to_owned();
    assert_eq!(id.len(), 10);
    assert!(id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    assert!(api.created_date().is_some());
    let root = api.root_resource_id().unwrap_or_default().to_owned();
    assert_eq!(root.len(), 10);
    assert_eq!(api.binary_media_types(), ["image/png"]);

    let items = gw
        .create_resource()
        .rest_api_id(&id)
        .parent_id(&root)
        .path_part("items")
        .send()
        .await?;
    assert_eq!(items.path(), Some("/items"));
    let item = gw
        .create_resource()
        .rest_api_id(&id)
        .parent_id(items.id().unwrap_or_default())
        .path_part("{id}")
        .send()
        .await?;
    assert_eq!(item.path(), Some("/items/{id}"));
    assert_eq!(item.parent_id(), items.id());
    let item_id = item.id().unwrap_or_default().to_owned();
    assert_aws_error!(
        gw.create_resource()
            .rest_api_id(&id)
            .parent_id(&root)
            .path_part("items")
            .send()
            .await,
        "ConflictException",
        409
    );

    let m = gw
        .put_method()
        .rest_api_id(&id)
        .resource_id(&item_id)
        .http_method("GET")
        .authorization_type("NONE")
        .send()
        .await?;
    assert_eq!(m.http_method(), Some("GET"));
    assert_eq!(m.api_key_required(), Some(false));
    let fn_uri = "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:items-api/invocations";
    let integ = gw
        .put_integration()
        .rest_api_id(&id)
        .resource_id(&item_id)
        .http_method("GET")
        .r#type(IntegrationType::AwsProxy)
        .integration_http_method("POST")
        .uri(fn_uri)
        .send()
        .await?;
    assert_eq!(integ.r#type(), Some(&IntegrationType::AwsProxy));
    assert_eq!(integ.http_method(), Some("POST"));
    assert_eq!(integ.uri(), Some(fn_uri));
    assert_eq!(integ.timeout_in_millis(), 29_000);
    let got = gw
        .get_integration()
        .rest_api_id(&id)
        .resource_id(&item_id)
        .http_method("GET")
        .send()
        .await?;
    assert_eq!(got.uri(), Some(fn_uri));
    let msg = assert_aws_error!(
        gw.put_integration()
            .rest_api_id(&id)
            .resource_id(&item_id)
            .http_method("GET")
            .r#type(IntegrationType::AwsProxy)
            .send()
            .await,
        "BadRequestException",
        400
    );
    assert_eq!(msg, "Enumeration value for HttpMethod must be non-empty");
    gw.put_method_response()
        .rest_api_id(&id)
        .resource_id(&item_id)
        .http_method("GET")
        .status_code("200")
        .send()
        .await?;
    gw.put_integration_response()
        .rest_api_id(&id)
        .resource_id(&item_id)
        .http_method("GET")
        .status_code("200")
        .send()
        .await?;

    let res = gw.get_resources().rest_api_id(&id).embed("methods").send().await?;
    assert_eq!(res.items().len(), 3);
    let with_method = res
        .items()
        .iter()
        .find(|r| r.path() == Some("/items/{id}"))
        .ok_or_else(|| anyhow::anyhow!("no /items/{{id}}"))?;
    let get = with_method
        .resource_methods()
        .and_then(|m| m.get("GET"))
        .ok_or_else(|| anyhow::anyhow!("no GET"))?;
    assert_eq!(get.method_integration().and_then(|i| i.uri()), Some(fn_uri));
    // Paging.
    let page = gw.get_resources().rest_api_id(&id).limit(2).send().await?;
    assert_eq!(page.items().len(), 2);
    let rest = gw
        .get_resources()
        .rest_api_id(&id)
        .limit(2)
        .set_position(page.position().map(str::to_owned))
        .send()
        .await?;
    assert_eq!(rest.items().len(), 1);

    let d = gw
        .create_deployment()
        .rest_api_id(&id)
        .stage_name("prod")
        .variables("fn", "items-api")
        .send()
        .await?;
    let dep = d.id().unwrap_or_default().to_owned();
    assert_eq!(dep.len(), 10);
    let stage = gw.get_stage().rest_api_id(&id).stage_name("prod").send().await?;
    assert_eq!(stage.deployment_id(), Some(dep.as_str()));
    assert_eq!(
        stage.variables().and_then(|v| v.get("fn")).map(String::as_str),
        Some("items-api")
    );
    let updated = gw
        .update_stage()
        .rest_api_id(&id)
        .stage_name("prod")
        .patch_operations(patch(Op::Replace, "/variables/color", "blue"))
        .patch_operations(PatchOperation::builder().op(Op::Remove).path("/variables/fn").build())
        .send()
        .await?;
    assert_eq!(
        updated.variables().map(|v| v.len()),
        Some(1),
        "{:?}",
        updated.variables()
    );
    gw.create_stage()
        .rest_api_id(&id)
        .stage_name("dev")
        .deployment_id(&dep)
        .send()
        .await?;
    assert_aws_error!(
        gw.create_stage()
            .rest_api_id(&id)
            .stage_name("dev")
            .deployment_id(&dep)
            .send()
            .await,
        "ConflictException",
        409
    );
    let stages = gw.get_stages().rest_api_id(&id).send().await?;
    assert_eq!(stages.item().len(), 2);
    let deps = gw.get_deployments().rest_api_id(&id).send().await?;
    assert_eq!(deps.items().len(), 1);
    gw.delete_stage().rest_api_id(&id).stage_name("dev").send().await?;

    let renamed = gw
        .update_rest_api()
        .rest_api_id(&id)
        .patch_operations(patch(Op::Replace, "/name", "items-v2"))
        .patch_operations(patch(Op::Replace, "/description", "renamed"))
        .send()
        .await?;
    assert_eq!(renamed.name(), Some("items-v2"));
    assert_eq!(renamed.description(), Some("renamed"));

    // Errors.
    let msg = assert_aws_error!(
        gw.get_rest_api().rest_api_id("nosuchapi1").send().await,
        "NotFoundException",
        404
    );
    assert_eq!(msg, "Invalid API identifier specified 000000000000:nosuchapi1");
    let msg = assert_aws_error!(
        gw.get_resource()
            .rest_api_id(&id)
            .resource_id("nosuchres1")
            .send()
            .await,
        "NotFoundException",
        404
    );
    assert_eq!(msg, "Invalid Resource identifier specified");
    let msg = assert_aws_error!(
        gw.get_method()
            .rest_api_id(&id)
            .resource_id(&root)
            .http_method("GET")
            .send()
            .await,
        "NotFoundException",
        404
    );
    assert_eq!(msg, "Invalid Method identifier specified");
    assert_aws_error!(
        gw.get_stage().rest_api_id(&id).stage_name("nope").send().await,
        "NotFoundException",
        404
    );
    assert_aws_error!(
        gw.delete_deployment().rest_api_id(&id).deployment_id(&dep).send().await,
        "BadRequestException",
        400
    );

    // Everything survives a restart.
    server.restart().await?;
    let gw = server.apigateway();
    let api = gw.get_rest_api().rest_api_id(&id).send().await?;
    assert_eq!(api.name(), Some("items-v2"));
    let stage = gw.get_stage().rest_api_id(&id).stage_name("prod").send().await?;
    assert_eq!(stage.deployment_id(), Some(dep.as_str()));
    let apis = gw.get_rest_apis().send().await?;
    assert_eq!(apis.items().len(), 1);

    gw.delete_rest_api().rest_api_id(&id).send().await?;
    assert_aws_error!(
        gw.get_rest_api().rest_api_id(&id).send().await,
        "NotFoundException",
        404
    );
    server.stop().await
}

/// A REST API whose root answers `OPTIONS` (CORS preflight) and `GET` from MOCK integrations,
/// and `/secret` GET requires AWS_IAM. Returns the API id.
async fn mock_api(gw: &aws_sdk_apigateway::Client) -> anyhow::Result<String> {
    let api = gw.create_rest_api().name("mock").send().await?;
    let id = api.id().unwrap_or_default().to_owned();
    let root = api.root_resource_id().unwrap_or_default().to_owned();
    let secret = gw
        .create_resource()
        .rest_api_id(&id)
        .parent_id(&root)
        .path_part("secret")
        .send()
        .await?;
    let secret = secret.id().unwrap_or_default().to_owned();
    for (res, method, auth, status, body) in [
        (&root, "OPTIONS", "NONE", "200", ""),
        (&root, "GET", "NONE", "200", r#"{"hello":"world"}"#),
        (&secret, "GET", "AWS_IAM", "200", r#"{"secret":true}"#),
    ] {
        gw.put_method()
            .rest_api_id(&id)
            .resource_id(res)
            .http_method(method)
            .authorization_type(auth)
            .send()
            .await?;
        gw.put_integration()
            .rest_api_id(&id)
            .resource_id(res)
            .http_method(method)
            .r#type(IntegrationType::Mock)
            .request_templates("application/json", format!("{{\"statusCode\": {status}}}"))
            .send()
            .await?;
        gw.put_method_response()
            .rest_api_id(&id)
            .resource_id(res)
            .http_method(method)
            .status_code(status)
            .response_parameters("method.response.header.Access-Control-Allow-Origin", true)
            .send()
            .await?;
        let mut ir = gw
            .put_integration_response()
            .rest_api_id(&id)
            .resource_id(res)
            .http_method(method)
            .status_code(status)
            .response_parameters("method.response.header.Access-Control-Allow-Origin", "'*'");
        if method == "OPTIONS" {
            ir = ir
                .response_parameters(
                    "method.response.header.Access-Control-Allow-Methods",
                    "'GET,OPTIONS,PUT,DELETE'",
                )
                .response_parameters(
                    "method.response.header.Access-Control-Allow-Headers",
                    "'Content-Type,Authorization'",
                );
        } else {
            ir = ir.response_templates("application/json", body);
        }
        ir.send().await?;
    }
    gw.create_deployment()
        .rest_api_id(&id)
        .stage_name("test")
        .send()
        .await?;
    Ok(id)
}

#[tokio::test]
async fn data_plane_mock_routes_cors_and_iam() -> R {
    let server = TestServer::start().await?;
    let addr = server.inner().addr();
    let gw = server.apigateway();
    let id = mock_api(&gw).await?;
    let local = addr.to_string();

    // Path style.
    let (s, h, b) = http(
        addr,
        "GET",
        &local,
        &format!("/restapis/{id}/test/_user_request_/"),
        &[],
        b"",
    )
    .await?;
    assert_eq!(s, 200);
    assert_eq!(b, br#"{"hello":"world"}"#);
    assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
    assert!(header(&h, "x-amzn-requestid").is_some());
    let apigw_id = header(&h, "x-amz-apigw-id").unwrap_or_default();
    assert_eq!(apigw_id.len(), 16, "{apigw_id}");
    // Host style.
    let host = format!("{id}.execute-api.localhost:{}", addr.port());
    let (s, _, b) = http(addr, "GET", &host, "/test/", &[], b"").await?;
    assert_eq!(s, 200);
    assert_eq!(b, br#"{"hello":"world"}"#);
    // CORS preflight.
    let (s, h, _) = http(
        addr,
        "OPTIONS",
        &host,
        "/test",
        &[
            ("origin".into(), "http://example.com".into()),
            ("access-control-request-method".into(), "PUT".into()),
        ],
        b"",
    )
    .await?;
    assert_eq!(s, 200);
    assert_eq!(
        header(&h, "access-control-allow-methods"),
        Some("GET,OPTIONS,PUT,DELETE")
    );
    assert_eq!(
        header(&h, "access-control-allow-headers"),
        Some("Content-Type,Authorization")
    );
    // Unknown routes and methods.
    for (m, p) in [("GET", "/test/nope"), ("DELETE", "/test/"), ("POST", "/test/secret")] {
        let (s, h, b) = http(addr, m, &host, p, &[], b"").await?;
        assert_eq!(s, 403, "{m} {p}");
        assert_eq!(b, br#"{"message":"Missing Authentication Token"}"#);
        assert_eq!(
            header(&h, "x-amzn-errortype"),
            Some("MissingAuthenticationTokenException")
        );
    }
    // An unknown stage.
    let (s, _, _) = http(addr, "GET", &host, "/nostage/", &[], b"").await?;
    assert_eq!(s, 403);
    // AWS_IAM: unsigned is refused, signed (execute-api) passes.
    let (s, _, b) = http(addr, "GET", &host, "/test/secret", &[], b"").await?;
    assert_eq!(s, 403);
    assert_eq!(b, br#"{"message":"Missing Authentication Token"}"#);
    let url = format!("http://{host}/test/secret");
    let signed = sign_headers(
        "GET",
        &url,
        &[("host".into(), host.clone())],
        b"",
        "execute-api",
        "us-east-1",
    )?;
    let signed: Vec<(String, String)> = signed.into_iter().filter(|(k, _)| k != "host").collect();
    let (s, _, b) = http(addr, "GET", &host, "/test/secret", &signed, b"").await?;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(b, br#"{"secret":true}"#);
    server.stop().await
}

/// What the test backend saw: method, path and query, headers, body.
type Seen = (String, String, http::HeaderMap, bytes::Bytes);

/// A tiny HTTP backend on 127.0.0.1:0: records each request and answers 201 with the request
/// body echoed and `x-backend: yes`; `/base/huge` answers 10 MiB + 1 bytes.
async fn backend() -> anyhow::Result<(
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Seen>,
    tokio::task::JoinHandle<()>,
)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Seen>();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let tx = tx.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
            let path = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
            let _ = tx.send((parts.method.to_string(), path.clone(), parts.headers, body.clone()));
            let body = if path == "/base/huge" {
                bytes::Bytes::from(vec![b'x'; (10 << 20) + 1])
            } else {
                body
            };
            (
                http::StatusCode::CREATED,
                [("x-backend", "yes"), ("content-type", "text/plain")],
                body,
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, rx, task))
}

/// The backend's next request, waiting at most 10 s for it.
async fn next(seen: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>) -> anyhow::Result<Seen> {
    tokio::time::timeout(std::time::Duration::from_secs(10), seen.recv())
        .await
        .ok()
        .flatten()
        .ok_or_else(|| anyhow::anyhow!("the backend saw no request"))
}

/// A backend that accepts connections and never answers.
async fn silent_backend() -> anyhow::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    Ok((addr, task))
}

#[tokio::test]
async fn data_plane_http_proxy_forwards_to_a_backend() -> R {
    let server = TestServer::start().await?;
    let addr = server.inner().addr();
    let gw = server.apigateway();
    let (backend_addr, mut seen, backend_task) = backend().await?;
    let (silent_addr, silent_task) = silent_backend().await?;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };

    let api = gw.create_rest_api().name("http-proxy").send().await?;
    let id = api.id().unwrap_or_default().to_owned();
    let root = api.root_resource_id().unwrap_or_default().to_owned();
    let resource = |parent: String, part: &'static str| {
        let gw = gw.clone();
        let id = id.clone();
        async move {
            let r = gw
                .create_resource()
                .rest_api_id(&id)
                .parent_id(parent)
                .path_part(part)
                .send()
                .await?;
            anyhow::Ok(r.id().unwrap_or_default().to_owned())
        }
    };
    let proxy = resource(root.clone(), "{proxy+}").await?;
    let items = resource(root.clone(), "items").await?;
    let item = resource(items, "{id}").await?;
    let down = resource(root.clone(), "down").await?;
    let slow = resource(root.clone(), "slow").await?;
    let tls = resource(root.clone(), "tls").await?;
    let routes = vec![
        (
            &proxy,
            "ANY",
            "ANY",
            format!("http://{backend_addr}/base/{{proxy}}"),
            Some(("proxy", "integration.request.path.proxy")),
            None,
        ),
        (
            &item,
            "GET",
            "POST",
            "http://${stageVariables.backend}/things/{id}?fixed=1".to_owned(),
            Some(("id", "integration.request.path.id")),
            None,
        ),
        (&down, "GET", "GET", format!("http://{closed}/"), None, None),
        (&slow, "GET", "GET", format!("http://{silent_addr}/"), None, Some(200)),
        (&tls, "GET", "GET", format!("https://{backend_addr}/"), None, None),
    ];
    for (res, method, integration_method, uri, param, timeout) in routes {
        let mut m = gw
            .put_method()
            .rest_api_id(&id)
            .resource_id(res)
            .http_method(method)
            .authorization_type("NONE");
        if let Some((name, _)) = param {
            m = m.request_parameters(format!("method.request.path.{name}"), true);
        }
        m.send().await?;
        let mut i = gw
            .put_integration()
            .rest_api_id(&id)
            .resource_id(res)
            .http_method(method)
            .r#type(IntegrationType::HttpProxy)
            .integration_http_method(integration_method)
            .uri(uri);
        if let Some((name, target)) = param {
            i = i.request_parameters(target, format!("method.request.path.{name}"));
        }
        if let Some(t) = timeout {
            i = i.timeout_in_millis(t);
        }
        i.send().await?;
    }
    gw.create_deployment()
        .rest_api_id(&id)
        .stage_name("test")
        .variables("backend", backend_addr.to_string())
        .send()
        .await?;
    let host = format!("{id}.execute-api.localhost:{}", addr.port());

    // Greedy {proxy}, ANY: the client's method, path, query, headers and body go through;
    // the backend's status, headers and body come back.
    let (s, h, b) = http(
        addr,
        "PUT",
        &host,
        "/test/a/b%20c?x=1&y=two",
        &[
            ("x-custom".into(), "v1".into()),
            ("content-type".into(), "application/json".into()),
        ],
        br#"{"k":1}"#,
    )
    .await?;
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
    assert_eq!(b, br#"{"k":1}"#);
    assert_eq!(header(&h, "x-backend"), Some("yes"));
    assert_eq!(header(&h, "content-type"), Some("text/plain"));
    assert!(header(&h, "x-amzn-requestid").is_some());
    assert!(header(&h, "x-amz-apigw-id").is_some());
    let (method, path, headers, body) = next(&mut seen).await?;
    assert_eq!(method, "PUT");
    assert_eq!(path, "/base/a/b%20c?x=1&y=two");
    assert_eq!(body.as_ref(), br#"{"k":1}"#);
    let hv = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(hv("x-custom").as_deref(), Some("v1"));
    assert_eq!(hv("content-type").as_deref(), Some("application/json"));
    assert_eq!(hv("host"), Some(backend_addr.to_string()));
    assert_eq!(hv("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert!(hv("x-amzn-trace-id").is_some_and(|t| t.starts_with("Root=1-")));
    assert_eq!(hv("connection"), None);

    // A named variable, the integration's own method, a stage variable in the host, the
    // client's query after the URI's.
    let (s, _, _) = http(addr, "GET", &host, "/test/items/42?q=z", &[], b"").await?;
    assert_eq!(s, 201);
    let (method, path, _, _) = next(&mut seen).await?;
    assert_eq!(method, "POST");
    assert_eq!(path, "/things/42?fixed=1&q=z");

    // A backend answer over 10 MiB → 502.
    let (s, _, b) = http(addr, "GET", &host, "/test/huge", &[], b"").await?;
    assert_eq!(s, 502);
    assert_eq!(b, br#"{"message":"Internal server error"}"#);
    next(&mut seen).await?;

    // Nothing listening → 500.
    let (s, h, b) = http(addr, "GET", &host, "/test/down", &[], b"").await?;
    assert_eq!(s, 500);
    assert_eq!(b, br#"{"message":"Internal server error"}"#);
    assert!(header(&h, "x-amzn-requestid").is_some());

    // https:// to a plain-HTTP backend: the TLS handshake fails → 500.
    let (s, _, b) = http(addr, "GET", &host, "/test/tls", &[], b"").await?;
    assert_eq!(s, 500);
    assert_eq!(b, br#"{"message":"Internal server error"}"#);

    // A backend that never answers within timeoutInMillis (200 ms) → 504.
    let started = std::time::Instant::now();
    let (s, _, b) = http(addr, "GET", &host, "/test/slow", &[], b"").await?;
    assert_eq!(s, 504);
    assert_eq!(b, br#"{"message":"Endpoint request timed out"}"#);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    backend_task.abort();
    silent_task.abort();
    server.stop().await
}
