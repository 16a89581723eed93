//! The Lambda Runtime API one instance talks to (`AWS_LAMBDA_RUNTIME_API`), served on its own
//! loopback port: the paths carry no function name, so there is one listener per instance.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::logs::{LogSink, epoch_ms};
use super::{MAX_RESPONSE_BYTES, lock};

/// An invocation handed to the instance.
pub(super) struct Work {
    pub(super) request_id: String,
    pub(super) invoked_arn: String,
    pub(super) payload: Bytes,
    pub(super) client_context: Option<String>,
    pub(super) timeout: Duration,
}

/// What the instance did, in order, for the task running the invocation.
#[derive(Debug)]
pub(super) enum Event {
    /// `next` handed the invocation over.
    Delivered { id: String, at: Instant },
    /// `/response`.
    Response { id: String, body: Bytes },
    /// `/error` (body normalised to an error document).
    Error {
        id: String,
        body: Bytes,
        error_type: String,
    },
    /// `/response` with a body over the limit.
    TooLarge { id: String },
    /// `/init/error`.
    InitError { body: Bytes, error_type: String },
    /// The process exited (None: its status could not be read).
    Exited(Option<std::process::ExitStatus>),
}

#[derive(Default)]
struct Current {
    /// The invocation handed over last.
    id: Option<String>,
    answered: bool,
    /// Whether `next` ever handed something over (then `/init/error` is too late).
    fetched: bool,
}

/// Per-instance server state.
pub(super) struct ApiState {
    work: tokio::sync::Mutex<mpsc::Receiver<Work>>,
    current: Mutex<Current>,
    events: mpsc::UnboundedSender<Event>,
    log: Arc<LogSink>,
    version: String,
}

impl ApiState {
    pub(super) fn new(
        work: mpsc::Receiver<Work>,
        events: mpsc::UnboundedSender<Event>,
        log: Arc<LogSink>,
        version: String,
    ) -> Arc<ApiState> {
        Arc::new(ApiState {
            work: tokio::sync::Mutex::new(work),
            current: Mutex::new(Current::default()),
            events,
            log,
            version,
        })
    }

    /// Checks that `id` is the open invocation; with `claim`, marks it answered.
    fn check(&self, id: &str, claim: bool) -> Result<(), Refusal> {
        let mut current = lock(&self.current);
        if current.id.as_deref() != Some(id) {
            return Err(Refusal::UnknownId);
        }
        if current.answered {
            return Err(Refusal::Answered);
        }
        if claim {
            current.answered = true;
        }
        Ok(())
    }
}

/// Why an answer for an invocation was refused.
enum Refusal {
    UnknownId,
    Answered,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::UnknownId => json(
                StatusCode::BAD_REQUEST,
                r#"{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}"#,
            ),
            Refusal::Answered => json(
                StatusCode::FORBIDDEN,
                r#"{"errorMessage":"Invalid state transition: the invocation was already answered","errorType":"InvalidStateTransition"}"#,
            ),
        }
    }
}

pub(super) fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .fallback(not_found)
        .with_state(state)
}

fn json(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

fn accepted() -> Response {
    json(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}

fn too_large() -> Response {
    json(
        StatusCode::PAYLOAD_TOO_LARGE,
        r#"{"errorMessage":"Exceeded maximum allowed payload size (6291556 bytes).","errorType":"RequestEntityTooLarge"}"#,
    )
}

async fn not_found() -> Response {
    json(
        StatusCode::NOT_FOUND,
        r#"{"errorMessage":"Unknown Runtime API path","errorType":"NotFound"}"#,
    )
}

enum BodyError {
    TooLarge,
    Broken,
}

async fn read_body(body: Body) -> Result<Bytes, BodyError> {
    match Limited::new(body, MAX_RESPONSE_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Broken),
    }
}

fn random_hex(len: usize) -> String {
    let mut s = String::with_capacity(len + 32);
    while s.len() < len {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(len);
    s
}

/// `Root=1-<epoch secs hex>-<24 hex>;Parent=<16 hex>;Sampled=0`.
fn trace_id() -> String {
    let secs = epoch_ms(SystemTime::now()) / 1000;
    format!(
        "Root=1-{secs:08x}-{};Parent={};Sampled=0",
        random_hex(24),
        random_hex(16)
    )
}

async fn next(State(api): State<Arc<ApiState>>) -> Response {
    let work = api.work.lock().await.recv().await;
    let Some(work) = work else {
        return json(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"errorMessage":"the instance is stopping","errorType":"Runtime.Unknown"}"#,
        );
    };
    let deadline_ms = epoch_ms(SystemTime::now() + work.timeout);
    {
        let mut current = lock(&api.current);
        current.id = Some(work.request_id.clone());
        current.answered = false;
        current.fetched = true;
    }
    api.log.begin_capture();
    api.log.line(&format!(
        "START RequestId: {} Version: {}",
        work.request_id, api.version
    ));
    let _ = api.events.send(Event::Delivered {
        id: work.request_id.clone(),
        at: Instant::now(),
    });

    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut add = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    add("lambda-runtime-aws-request-id", &work.request_id);
    add("lambda-runtime-deadline-ms", &deadline_ms.to_string());
    add("lambda-runtime-invoked-function-arn", &work.invoked_arn);
    add("lambda-runtime-trace-id", &trace_id());
    if let Some(cc) = work.client_context.as_deref().filter(|cc| !cc.is_empty()) {
        add("lambda-runtime-client-context", cc);
    }
    (StatusCode::OK, headers, work.payload).into_response()
}

async fn response(State(api): State<Arc<ApiState>>, Path(id): Path<String>, body: Body) -> Response {
    if let Err(refusal) = api.check(&id, false) {
        return refusal.into_response();
    }
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            if api.check(&id, true).is_ok() {
                let _ = api.events.send(Event::TooLarge { id });
            }
            return too_large();
        }
        Err(BodyError::Broken) => {
            return json(
                StatusCode::BAD_REQUEST,
                r#"{"errorMessage":"Unreadable body","errorType":"InvalidRequest"}"#,
            );
        }
    };
    if let Err(refusal) = api.check(&id, true) {
        return refusal.into_response();
    }
    let _ = api.events.send(Event::Response { id, body });
    accepted()
}

/// The error document the invoker gets: the runtime's JSON as is, or its text wrapped.
pub(super) fn error_document(body: &[u8], header: Option<&str>) -> (Bytes, String) {
    let header = header.map(str::trim).filter(|h| !h.is_empty());
    if let Ok(serde_json::Value::Object(doc)) = serde_json::from_slice::<serde_json::Value>(body) {
        let error_type = doc
            .get("errorType")
            .and_then(|t| t.as_str())
            .or(header)
            .unwrap_or("Unhandled");
        return (Bytes::copy_from_slice(body), error_type.to_owned());
    }
    let error_type = header.unwrap_or("Unhandled").to_owned();
    let doc = serde_json::json!({
        "errorMessage": String::from_utf8_lossy(body),
        "errorType": error_type,
    });
    (Bytes::from(doc.to_string()), error_type)
}

fn error_type_header(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
}

async fn error(State(api): State<Arc<ApiState>>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    if let Err(refusal) = api.check(&id, false) {
        return refusal.into_response();
    }
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return too_large(),
        Err(BodyError::Broken) => {
            return json(
                StatusCode::BAD_REQUEST,
                r#"{"errorMessage":"Unreadable body","errorType":"InvalidRequest"}"#,
            );
        }
    };
    if let Err(refusal) = api.check(&id, true) {
        return refusal.into_response();
    }
    let (body, error_type) = error_document(&body, error_type_header(&headers));
    let _ = api.events.send(Event::Error { id, body, error_type });
    accepted()
}

async fn init_error(State(api): State<Arc<ApiState>>, headers: HeaderMap, body: Body) -> Response {
    if lock(&api.current).fetched {
        return json(
            StatusCode::FORBIDDEN,
            r#"{"errorMessage":"Invalid state transition: init already finished","errorType":"InvalidStateTransition"}"#,
        );
    }
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return too_large(),
        Err(BodyError::Broken) => {
            return json(
                StatusCode::BAD_REQUEST,
                r#"{"errorMessage":"Unreadable body","errorType":"InvalidRequest"}"#,
            );
        }
    };
    let (body, error_type) = error_document(&body, error_type_header(&headers));
    let _ = api.events.send(Event::InitError { body, error_type });
    accepted()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents() {
        let (body, t) = error_document(br#"{"errorMessage":"x","errorType":"ValueError"}"#, Some("Unhandled"));
        assert_eq!(t, "ValueError");
        assert_eq!(&body[..], br#"{"errorMessage":"x","errorType":"ValueError"}"#);
        let (body, t) = error_document(b"plain text", Some("Custom.Kind"));
        assert_eq!(t, "Custom.Kind");
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(doc["errorMessage"], "plain text");
        assert_eq!(doc["errorType"], "Custom.Kind");
        let (_, t) = error_document(b"", None);
        assert_eq!(t, "Unhandled");
    }

    #[test]
    fn trace_ids_have_the_aws_shape() {
        let t = trace_id();
        let parts: Vec<&str> = t.split(';').collect();
        assert_eq!(parts.len(), 3, "{t}");
        assert!(
            parts[0].starts_with("Root=1-") && parts[0].len() == "Root=1-".len() + 8 + 1 + 24,
            "{t}"
        );
        assert!(
            parts[1].starts_with("Parent=") && parts[1].len() == "Parent=".len() + 16,
            "{t}"
        );
        assert_eq!(parts[2], "Sampled=0");
    }
}
