//! `loadgen apigw`: requests/s and latency through API Gateway → a warm Rust function
//! (`items-api`) → S3 GET. Deploys the function and a REST API (`GET /{id}`, Lambda proxy)
//! through the control plane, fills the bucket, warms one instance per client, then runs
//! `clients` keep-alive HTTP/1.1 connections doing `GET /bench/item-<n>` for `seconds`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{Common, create_function, iam, lambda, percentile, s3, timed, zip_package};

const FUNCTION: &str = "loadgen-items-api";
const STAGE: &str = "bench";

fn apigateway(c: &Common) -> aws_sdk_apigateway::Client {
    sdk_client!(aws_sdk_apigateway, c)
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    async fn open(addr: &str) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(tcp),
        })
    }

    /// `GET path`; returns (status, body length).
    async fn get(&mut self, host: &str, path: &str) -> anyhow::Result<(u16, usize)> {
        let req = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\naccept: */*\r\n\r\n");
        self.stream.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("bad status line {line:?}"))?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                anyhow::bail!("connection closed");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse()?;
            }
        }
        anyhow::ensure!(length <= 16 * 1024 * 1024, "body too large");
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok((status, length))
    }
}

/// Deploys everything and runs the benchmark.
pub async fn run(
    common: Common,
    bootstrap: std::path::PathBuf,
    clients: usize,
    seconds: u64,
    keys: usize,
    object_bytes: usize,
) -> anyhow::Result<()> {
    let bucket = "loadgen-apigw";
    let s3 = s3(&common);
    if s3.head_bucket().bucket(bucket).send().await.is_err() {
        s3.create_bucket()
            .bucket(bucket)
            .send()
            .await
            .context("create bucket")?;
    }
    let body = "x".repeat(object_bytes);
    for i in 0..keys {
        s3.put_object()
            .bucket(bucket)
            .key(format!("item-{i}"))
            .content_type("text/plain")
            .body(body.clone().into_bytes().into())
            .send()
            .await
            .context("put object")?;
    }
    let bin = std::fs::read(&bootstrap)
        .with_context(|| format!("read {} (cargo build --release -p items-api)", bootstrap.display()))?;
    let zip = zip_package(&[("bootstrap", &bin, 0o755)])?;
    let function_arn = create_function(
        &common,
        FUNCTION,
        ("provided.al2023", "bootstrap", zip),
        &[("BUCKET", bucket)],
    )
    .await?;
    // The function's role reads the bucket.
    iam(&common)
        .put_role_policy()
        .role_name(super::LAMBDA_ROLE)
        .policy_name("loadgen-apigw-s3")
        .policy_document(format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"s3:*","Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"]}}]}}"#
        ))
        .send()
        .await
        .context("put role policy")?;
    let gw = apigateway(&common);
    let api = gw.create_rest_api().name("loadgen-items").send().await?;
    let api_id = api.id().unwrap_or_default().to_owned();
    let root = api.root_resource_id().unwrap_or_default().to_owned();
    let item = gw
        .create_resource()
        .rest_api_id(&api_id)
        .parent_id(&root)
        .path_part("{id}")
        .send()
        .await?;
    let item = item.id().unwrap_or_default().to_owned();
    gw.put_method()
        .rest_api_id(&api_id)
        .resource_id(&item)
        .http_method("GET")
        .authorization_type("NONE")
        .send()
        .await?;
    gw.put_integration()
        .rest_api_id(&api_id)
        .resource_id(&item)
        .http_method("GET")
        .r#type(aws_sdk_apigateway::types::IntegrationType::AwsProxy)
        .integration_http_method("POST")
        .uri(format!(
            "arn:aws:apigateway:{}:lambda:path/2015-03-31/functions/{function_arn}/invocations",
            common.region
        ))
        .send()
        .await?;
    gw.create_deployment()
        .rest_api_id(&api_id)
        .stage_name(STAGE)
        .send()
        .await?;
    lambda(&common)
        .add_permission()
        .function_name(FUNCTION)
        .statement_id("apigateway")
        .action("lambda:InvokeFunction")
        .principal("apigateway.amazonaws.com")
        .source_arn(format!("arn:aws:execute-api:{}:*:{api_id}/*", common.region))
        .send()
        .await
        .context("add permission")?;

    let addr = common
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let port = addr.rsplit(':').next().unwrap_or("4566").to_owned();
    let host = format!("{api_id}.execute-api.localhost:{port}");
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(tokio::sync::Mutex::new(Conn::open(&addr).await?));
    }
    let conns = Arc::new(conns);
    // Warm-up: every client at once, a few rounds, so that `clients` instances are warm.
    let warm_deadline = Instant::now() + Duration::from_secs(60);
    for round in 0..5 {
        let mut tasks = Vec::new();
        for w in 0..clients {
            let (conns, host) = (conns.clone(), host.clone());
            tasks.push(tokio::spawn(async move {
                let mut c = conns[w].lock().await;
                c.get(&host, &format!("/{STAGE}/item-{}", w % keys.max(1))).await
            }));
        }
        for t in tasks {
            let (status, _) = t.await??;
            if status != 200 {
                anyhow::ensure!(
                    Instant::now() < warm_deadline,
                    "warm-up request answered {status} (round {round})"
                );
            }
        }
    }
    let (st, el) = timed(clients, seconds, move |w, i| {
        let (conns, host) = (conns.clone(), host.clone());
        async move {
            let mut c = conns[w].lock().await;
            let key = (w * 7919 + i as usize) % keys.max(1);
            let (status, len) = c.get(&host, &format!("/{STAGE}/item-{key}")).await?;
            anyhow::ensure!(status == 200, "GET answered {status}");
            Ok(len as u64)
        }
    })
    .await?;
    let mut lat = st.latencies_us;
    lat.sort_unstable();
    let secs = el.as_secs_f64();
    println!(
        "API Gateway GET /{{id}} → Rust items-api (warm) → S3 GET ({object_bytes} B objects), {clients} clients: {} requests in {secs:.1} s = {:.0} req/s (failed {}); latency ms p50 {:.2} p99 {:.2} max {:.2}",
        st.records,
        st.records as f64 / secs,
        st.failed,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
    );
    gw.delete_rest_api().rest_api_id(&api_id).send().await.ok();
    Ok(())
}
