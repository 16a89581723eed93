//! The API Gateway engine's ports. [`GatewayLambda`], over the Lambda engine, invokes an
//! `AWS_PROXY` integration's function synchronously, but only after checking that the
//! function's resource policy lets `apigateway.amazonaws.com` invoke it for the method's source
//! ARN (`arn:aws:execute-api:<region>:<account>:<api>/<stage>/<METHOD>/<path>`) and the API
//! owner's account, as AddPermission grants it. Without that permission the call fails with
//! [`InvokeError::Denied`], which the gateway answers with 500 `{"message": "Internal server
//! error"}`, as AWS does. [`GatewayHttp`] sends an `HTTP_PROXY` integration's request to its
//! backend: one HTTP/1.1 exchange on a fresh connection (`http://`, or `https://` through
//! rustls with the platform's root certificates), the answer read whole up to 10 MiB.

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kd_functions::Functions;
use kd_gateway::{
    ForwardError, ForwardFuture, FunctionInvoker, HttpForwarder, InvokeError, InvokeFuture, InvokeResult,
    MAX_FORWARD_RESPONSE_BYTES,
};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;

/// The service principal API Gateway invokes functions as.
const APIGATEWAY: &str = "apigateway.amazonaws.com";

/// Lambda invocations for API Gateway.
pub struct GatewayLambda {
    functions: Arc<Functions>,
}

impl GatewayLambda {
    /// Over the functions engine.
    pub fn new(functions: Arc<Functions>) -> Self {
        Self { functions }
    }
}

impl FunctionInvoker for GatewayLambda {
    fn invoke<'a>(
        &'a self,
        function_arn: &'a str,
        source_arn: &'a str,
        source_account: &'a str,
        payload: Bytes,
    ) -> InvokeFuture<'a> {
        Box::pin(async move {
            if self.functions.lookup_arn(function_arn).is_none() {
                return Err(InvokeError::NotFound(function_arn.to_owned()));
            }
            if !self
                .functions
                .service_may_invoke(function_arn, APIGATEWAY, source_arn, source_account)
            {
                return Err(InvokeError::Denied(format!(
                    "the resource policy of {function_arn} does not let {APIGATEWAY} invoke it from {source_arn}"
                )));
            }
            match self.functions.invoke_arn(function_arn, payload).await {
                Ok(out) => Ok(InvokeResult {
                    payload: out.payload,
                    function_error: out.function_error,
                }),
                Err(e @ kd_functions::Error::TooManyRequests { .. }) => Err(InvokeError::Throttled(e.to_string())),
                Err(e @ kd_functions::Error::ResourceNotFound(_)) => Err(InvokeError::NotFound(e.to_string())),
                Err(e) => Err(InvokeError::Failed(e.to_string())),
            }
        })
    }
}

/// `HTTP_PROXY` backends over HTTP/1.1: a new connection per request (API Gateway keeps no
/// affinity either), closed once the answer is read or the engine's timeout drops the call.
#[derive(Default)]
pub struct GatewayHttp {
    /// Built on the first `https://` request: loading the platform's roots costs milliseconds.
    tls: OnceLock<Result<TlsConnector, String>>,
}

impl GatewayHttp {
    /// A forwarder without connections.
    pub fn new() -> Self {
        Self::default()
    }

    fn tls(&self) -> Result<TlsConnector, ForwardError> {
        self.tls
            .get_or_init(|| {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = rustls::RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    tracing::warn!("no root certificates found: https:// HTTP_PROXY backends will fail");
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let mut config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("TLS configuration: {e}"))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Ok(TlsConnector::from(Arc::new(config)))
            })
            .clone()
            .map_err(ForwardError::Unreachable)
    }
}

/// Aborts the connection task when the exchange ends or is dropped (the engine's timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One request and its whole answer over `io`.
async fn exchange<T>(io: T, req: http::Request<Full<Bytes>>) -> Result<http::Response<Bytes>, ForwardError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| ForwardError::Unreachable(format!("HTTP handshake: {e}")))?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "HTTP_PROXY backend connection ended");
        }
    }));
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ForwardError::Failed(format!("no answer from the endpoint: {e}")))?;
    let (parts, mut body) = resp.into_parts();
    let announced = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = announced.filter(|n| *n > MAX_FORWARD_RESPONSE_BYTES as u64) {
        return Err(ForwardError::TooLarge(n));
    }
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ForwardError::Failed(format!("reading the endpoint's answer: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_FORWARD_RESPONSE_BYTES {
                return Err(ForwardError::TooLarge((buf.len() + data.len()) as u64));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(http::Response::from_parts(parts, buf.freeze()))
}

impl HttpForwarder for GatewayHttp {
    fn forward(&self, req: http::Request<Bytes>) -> ForwardFuture<'_> {
        Box::pin(async move {
            let uri = req.uri().clone();
            let unreachable = |what: String| ForwardError::Unreachable(format!("{what} ({uri})"));
            let https = match uri.scheme_str() {
                Some("http") => false,
                Some("https") => true,
                _ => return Err(unreachable("unsupported scheme".into())),
            };
            let host = uri
                .host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
                .filter(|h| !h.is_empty())
                .ok_or_else(|| unreachable("no host".into()))?;
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| unreachable(format!("cannot connect: {e}")))?;
            let _ = tcp.set_nodelay(true);
            // HTTP/1.1 origin form: the path and query only (the engine set `Host`).
            let (mut parts, body) = req.into_parts();
            parts.uri = uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .parse()
                .map_err(|e| unreachable(format!("invalid path: {e}")))?;
            let req = http::Request::from_parts(parts, Full::new(body));
            if https {
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| unreachable(format!("invalid TLS server name: {e}")))?;
                let tls = self
                    .tls()?
                    .connect(name, tcp)
                    .await
                    .map_err(|e| unreachable(format!("TLS handshake: {e}")))?;
                exchange(TokioIo::new(tls), req).await
            } else {
                exchange(TokioIo::new(tcp), req).await
            }
        })
    }
}
