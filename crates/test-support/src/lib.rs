//! Test harness shared by the project's wire and end-to-end tests: start the real server
//! in-process on `127.0.0.1:0` over a temporary data directory, build aws-sdk-rust clients
//! pointed at it (plain HTTP, static keys), and wait for effects with a deadline instead of
//! sleeping. It sits outside the data flow: only tests and tools depend on it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::Arc;

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use kd_storage::{Clock, SystemClock};
use kinesis_data::{Config, Server};

/// The default test credentials (what the server accepts out of the box).
pub const ACCESS_KEY: &str = "test";
/// Secret of [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "test";
/// Account of [`ACCESS_KEY`].
pub const ACCOUNT: &str = "000000000000";

/// A server running in this process over its own temporary data directory.
pub struct TestServer {
    server: Option<Server>,
    config: Config,
    dir: tempfile::TempDir,
    clock: Arc<dyn Clock>,
}

impl TestServer {
    /// A server with defaults suited to tests (streams become ACTIVE at once).
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// A server with the test defaults adjusted by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        Self::start_with_clock(Arc::new(SystemClock), tweak).await
    }

    /// A server whose engines read time from `clock` (drive it to expire iterators or data).
    pub async fn start_with_clock(clock: Arc<dyn Clock>, tweak: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        config.listen = "127.0.0.1:0".parse()?;
        config.kinesis.create_delay_ms = 0;
        config.kinesis.update_delay_ms = 0;
        config.firehose.create_delay_ms = 0;
        config.firehose.poll_interval_ms = 50;
        tweak(&mut config);
        let server = Server::start_with_clock(config.clone(), clock.clone()).await?;
        Ok(Self {
            server: Some(server),
            config,
            dir,
            clock,
        })
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("server is running")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.server().endpoint()
    }

    /// The running server.
    pub fn inner(&self) -> &Server {
        self.server()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// The temporary directory holding the data directory.
    pub fn temp_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// A Kinesis client for us-east-1 with the default keys.
    pub fn kinesis(&self) -> aws_sdk_kinesis::Client {
        kinesis_client(&self.endpoint(), "us-east-1", ACCESS_KEY, SECRET_KEY)
    }

    /// A Firehose client for us-east-1 with the default keys.
    pub fn firehose(&self) -> aws_sdk_firehose::Client {
        firehose_client(&self.endpoint(), "us-east-1", ACCESS_KEY, SECRET_KEY)
    }

    /// A Lambda client for us-east-1 with the default keys.
    pub fn lambda(&self) -> aws_sdk_lambda::Client {
        lambda_client(&self.endpoint(), "us-east-1", ACCESS_KEY, SECRET_KEY)
    }

    /// An API Gateway client for us-east-1 with the default keys.
    pub fn apigateway(&self) -> aws_sdk_apigateway::Client {
        apigateway_client(&self.endpoint(), "us-east-1", ACCESS_KEY, SECRET_KEY)
    }

    /// An S3 Control client for us-east-1 with the default keys.
    pub fn s3control(&self) -> aws_sdk_s3control::Client {
        s3control_client(&self.endpoint(), "us-east-1", ACCESS_KEY, SECRET_KEY)
    }

    /// An S3 client for us-east-1 with the default keys (path-style).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        s3_client(&self.endpoint(), "us-east-1", ACCESS_KEY, SECRET_KEY)
    }

    /// An IAM client with the default keys.
    pub fn iam(&self) -> aws_sdk_iam::Client {
        iam_client(&self.endpoint(), ACCESS_KEY, SECRET_KEY, None)
    }

    /// An STS client for us-east-1 with the default keys.
    pub fn sts(&self) -> aws_sdk_sts::Client {
        sts_client(&self.endpoint(), ACCESS_KEY, SECRET_KEY, None)
    }

    /// An Athena client for us-east-1 with the default keys.
    pub fn athena(&self) -> aws_sdk_athena::Client {
        athena_client(&self.endpoint(), "us-east-1", ACCESS_KEY, SECRET_KEY)
    }

    /// A Glue client for us-east-1 with the default keys.
    pub fn glue(&self) -> aws_sdk_glue::Client {
        glue_client(&self.endpoint(), "us-east-1", ACCESS_KEY, SECRET_KEY)
    }

    /// A CloudFormation client for us-east-1 with the default keys.
    pub fn cloudformation(&self) -> aws_sdk_cloudformation::Client {
        cloudformation_client(&self.endpoint(), "us-east-1", ACCESS_KEY, SECRET_KEY)
    }

    /// An SSM client for us-east-1 with the default keys.
    pub fn ssm(&self) -> aws_sdk_ssm::Client {
        ssm_client(&self.endpoint(), "us-east-1", ACCESS_KEY, SECRET_KEY)
    }

    /// A CloudWatch Logs client for us-east-1 with the default keys.
    pub fn logs(&self) -> aws_sdk_cloudwatchlogs::Client {
        logs_client(&self.endpoint(), "us-east-1", ACCESS_KEY, SECRET_KEY)
    }

    /// Shuts down cleanly, then starts again on the same data directory (and a new port).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(s) = self.server.take() {
            s.shutdown().await?;
        }
        self.server = Some(Server::start_with_clock(self.config.clone(), self.clock.clone()).await?);
        Ok(())
    }

    /// Stops the server.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(s) = self.server.take() {
            s.shutdown().await?;
        }
        Ok(())
    }
}

/// A Firehose client for `endpoint` with static keys, plain HTTP and no retries.
pub fn firehose_client(endpoint: &str, region: &str, access_key: &str, secret: &str) -> aws_sdk_firehose::Client {
    let conf = aws_sdk_firehose::Config::builder()
        .behavior_version(aws_sdk_firehose::config::BehaviorVersion::latest())
        .region(aws_sdk_firehose::config::Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_firehose::config::Credentials::new(
            access_key,
            secret,
            None,
            None,
            "test-support",
        ))
        .retry_config(aws_sdk_firehose::config::retry::RetryConfig::disabled())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_firehose::Client::from_conf(conf)
}

/// S3 Control calls go to `<account>.<endpoint host>` (the SDK prefixes the account id to the
/// host), which does not resolve for 127.0.0.1. This interceptor runs after signing: it keeps
/// the signed `Host` (`000000000000.127.0.0.1:PORT`) as a header and connects to the endpoint
/// itself, which is what a DNS entry for the prefixed name would do.
#[derive(Debug)]
struct KeepHostConnectToEndpoint {
    authority: String,
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for KeepHostConnectToEndpoint {
    fn name(&self) -> &'static str {
        "KeepHostConnectToEndpoint"
    }

    fn modify_before_transmit(
        &self,
        context: &mut aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut<'_>,
        _rc: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let req = context.request_mut();
        let uri = req.uri().to_owned();
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Ok(());
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host != self.authority && host.ends_with(&format!(".{}", self.authority)) {
            req.headers_mut().insert("host", host.to_owned());
            req.set_uri(format!("{scheme}://{}/{path}", self.authority))?;
        }
        Ok(())
    }
}

/// An S3 Control client for `endpoint` with static keys, plain HTTP and no retries.
pub fn s3control_client(endpoint: &str, region: &str, access_key: &str, secret: &str) -> aws_sdk_s3control::Client {
    let authority = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, a)| a)
        .trim_end_matches('/');
    let conf = aws_sdk_s3control::Config::builder()
        .behavior_version(aws_sdk_s3control::config::BehaviorVersion::latest())
        .region(aws_sdk_s3control::config::Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_s3control::config::Credentials::new(
            access_key,
            secret,
            None,
            None,
            "test-support",
        ))
        .retry_config(aws_sdk_s3control::config::retry::RetryConfig::disabled())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .interceptor(KeepHostConnectToEndpoint {
            authority: authority.to_owned(),
        })
        .build();
    aws_sdk_s3control::Client::from_conf(conf)
}

/// An Athena client for `endpoint` with static keys, plain HTTP and no retries.
pub fn athena_client(endpoint: &str, region: &str, access_key: &str, secret: &str) -> aws_sdk_athena::Client {
    let conf = aws_sdk_athena::Config::builder()
        .behavior_version(aws_sdk_athena::config::BehaviorVersion::latest())
        .region(aws_sdk_athena::config::Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_athena::config::Credentials::new(
            access_key,
            secret,
            None,
            None,
            "test-support",
        ))
        .retry_config(aws_sdk_athena::config::retry::RetryConfig::disabled())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_athena::Client::from_conf(conf)
}

/// A Glue client for `endpoint` with static keys, plain HTTP and no retries.
pub fn glue_client(endpoint: &str, region: &str, access_key: &str, secret: &str) -> aws_sdk_glue::Client {
    let conf = aws_sdk_glue::Config::builder()
        .behavior_version(aws_sdk_glue::config::BehaviorVersion::latest())
        .region(aws_sdk_glue::config::Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_glue::config::Credentials::new(
            access_key,
            secret,
            None,
            None,
            "test-support",
        ))
        .retry_config(aws_sdk_glue::config::retry::RetryConfig::disabled())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_glue::Client::from_conf(conf)
}

/// An SSM client for `endpoint` with static keys, plain HTTP and no retries.
pub fn ssm_client(endpoint: &str, region: &str, access_key: &str, secret: &str) -> aws_sdk_ssm::Client {
    let conf = aws_sdk_ssm::Config::builder()
        .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
        .region(aws_sdk_ssm::config::Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ssm::config::Credentials::new(
            access_key,
            secret,
            None,
            None,
            "test-support",
        ))
        .retry_config(aws_sdk_ssm::config::retry::RetryConfig::disabled())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_ssm::Client::from_conf(conf)
}

/// A CloudWatch Logs client for `endpoint` with static keys, plain HTTP and no retries.
pub fn logs_client(endpoint: &str, region: &str, access_key: &str, secret: &str) -> aws_sdk_cloudwatchlogs::Client {
    let conf = aws_sdk_cloudwatchlogs::Config::builder()
        .behavior_version(aws_sdk_cloudwatchlogs::config::BehaviorVersion::latest())
        .region(aws_sdk_cloudwatchlogs::config::Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_cloudwatchlogs::config::Credentials::new(
            access_key,
            secret,
            None,
            None,
            "test-support",
        ))
        .retry_config(aws_sdk_cloudwatchlogs::config::retry::RetryConfig::disabled())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_cloudwatchlogs::Client::from_conf(conf)
}

/// A CloudFormation client for `endpoint` with static keys, plain HTTP and no retries.
pub fn cloudformation_client(
    endpoint: &str,
    region: &str,
    access_key: &str,
    secret: &str,
) -> aws_sdk_cloudformation::Client {
    let conf = aws_sdk_cloudformation::Config::builder()
        .behavior_version(aws_sdk_cloudformation::config::BehaviorVersion::latest())
        .region(aws_sdk_cloudformation::config::Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_cloudformation::config::Credentials::new(
            access_key,
            secret,
            None,
            None,
            "test-support",
        ))
        .retry_config(aws_sdk_cloudformation::config::retry::RetryConfig::disabled())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_cloudformation::Client::from_conf(conf)
}

/// A Lambda client for `endpoint` with static keys, plain HTTP and no retries.
pub fn lambda_client(endpoint: &str, region: &str, access_key: &str, secret: &str) -> aws_sdk_lambda::Client {
    let conf = aws_sdk_lambda::Config::builder()
        .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
        .region(aws_sdk_lambda::config::Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_lambda::config::Credentials::new(
            access_key,
            secret,
            None,
            None,
            "test-support",
        ))
        .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_lambda::Client::from_conf(conf)
}

/// An API Gateway client for `endpoint` with static keys, plain HTTP and no retries.
pub fn apigateway_client(endpoint: &str, region: &str, access_key: &str, secret: &str) -> aws_sdk_apigateway::Client {
    let conf = aws_sdk_apigateway::Config::builder()
        .behavior_version(aws_sdk_apigateway::config::BehaviorVersion::latest())
        .region(aws_sdk_apigateway::config::Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_apigateway::config::Credentials::new(
            access_key,
            secret,
            None,
            None,
            "test-support",
        ))
        .retry_config(aws_sdk_apigateway::config::retry::RetryConfig::disabled())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_apigateway::Client::from_conf(conf)
}

/// An S3 client for `endpoint` (path-style) with static keys, plain HTTP and no retries.
pub fn s3_client(endpoint: &str, region: &str, access_key: &str, secret: &str) -> aws_sdk_s3::Client {
    s3_session_client(endpoint, region, access_key, secret, None)
}

/// An S3 client with temporary (session) credentials.
pub fn s3_session_client(
    endpoint: &str,
    region: &str,
    access_key: &str,
    secret: &str,
    session_token: Option<&str>,
) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            access_key,
            secret,
            session_token.map(str::to_owned),
            None,
            "test-support",
        ))
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// An IAM client for `endpoint` (signing for us-east-1, as IAM is global) with static keys
/// (and a session token for temporary credentials), plain HTTP and no retries.
pub fn iam_client(endpoint: &str, access_key: &str, secret: &str, session_token: Option<&str>) -> aws_sdk_iam::Client {
    let conf = aws_sdk_iam::Config::builder()
        .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
        .region(aws_sdk_iam::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_iam::config::Credentials::new(
            access_key,
            secret,
            session_token.map(str::to_owned),
            None,
            "test-support",
        ))
        .retry_config(aws_sdk_iam::config::retry::RetryConfig::disabled())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_iam::Client::from_conf(conf)
}

/// An STS client for `endpoint` in us-east-1 with static keys (and a session token for
/// temporary credentials), plain HTTP and no retries.
pub fn sts_client(endpoint: &str, access_key: &str, secret: &str, session_token: Option<&str>) -> aws_sdk_sts::Client {
    let conf = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            access_key,
            secret,
            session_token.map(str::to_owned),
            None,
            "test-support",
        ))
        .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_sts::Client::from_conf(conf)
}

/// A Kinesis client for `endpoint` with static keys, plain HTTP and no retries (tests want
/// to see each error as it is).
pub fn kinesis_client(endpoint: &str, region: &str, access_key: &str, secret: &str) -> aws_sdk_kinesis::Client {
    kinesis_session_client(endpoint, region, access_key, secret, None)
}

/// A Kinesis client with temporary (session) credentials.
pub fn kinesis_session_client(
    endpoint: &str,
    region: &str,
    access_key: &str,
    secret: &str,
    session_token: Option<&str>,
) -> aws_sdk_kinesis::Client {
    let conf = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            access_key,
            secret,
            session_token.map(str::to_owned),
            None,
            "test-support",
        ))
        .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_kinesis::Client::from_conf(conf)
}

/// Polls `check` until it yields `Some`, or fails after `timeout` naming `what`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A raw HTTP/1.1 exchange on loopback, for requests an SDK will not send (malformed bodies,
/// CBOR, missing signatures). Returns status, lowercase headers and body.
pub async fn raw_http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> anyhow::Result<(u16, Vec<(String, String)>, Vec<u8>)> {
    raw_http_host(addr, method, &addr.to_string(), path, headers, body).await
}

/// [`raw_http`] with an explicit `Host` header (virtual-host routing: `{api}.execute-api.…`,
/// `{bucket}.s3.…`).
pub async fn raw_http_host(
    addr: std::net::SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> anyhow::Result<(u16, Vec<(String, String)>, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    s.write_all(body).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no header end"))?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let hdrs: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect();
    let mut body = buf[split + 4..].to_vec();
    if hdrs
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok((status, hdrs, body))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(p) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..p]).trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < p + 2 + size {
            break;
        }
        out.extend_from_slice(&b[p + 2..p + 2 + size]);
        b = &b[(p + 4 + size).min(b.len())..];
    }
    out
}

/// Signs a request with SigV4 using the default test keys (as an SDK would) and returns the
/// headers to send, including `authorization` and `x-amz-date`.
pub fn sign_headers(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    service: &str,
    region: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let (access_key, secret) = (ACCESS_KEY, SECRET_KEY);
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    let identity = Credentials::new(access_key, secret, None, None, "test-support").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()?
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )?;
    let (instructions, _) = sign(signable, &params)?.into_parts();
    let mut out = headers.to_vec();
    for (k, v) in instructions.headers() {
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}
