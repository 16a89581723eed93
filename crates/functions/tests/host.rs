//! The function host against real processes: Python and Node handlers through the host's own
//! bootstraps, custom runtimes (`bootstrap` scripts speaking the Runtime API), timeouts,
//! crashes, pooling, concurrency limits, logs and the sweep of a previous run's processes.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kd_functions::host::{Credentials, FunctionSpec, Host, HostConfig, HostError, Invocation, InvokeOutcome};
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Whether `program` runs. CI sets `KINESIS_DATA_REQUIRE_RUNTIMES=1` (it installs python3,
/// node and curl), so there a missing one fails the test instead of skipping it.
fn have(program: &str) -> bool {
    let ok = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok || std::env::var_os("KINESIS_DATA_REQUIRE_RUNTIMES").is_none(),
        "{program} is required (KINESIS_DATA_REQUIRE_RUNTIMES is set)"
    );
    ok
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn write_executable(path: &Path, text: &str) {
    write(path, text);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("chmod: {e}"));
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    code: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let root = dir.path().join("host");
    let code = dir.path().join("code");
    std::fs::create_dir_all(&code).unwrap_or_else(|e| panic!("mkdir: {e}"));
    Fixture { _dir: dir, root, code }
}

fn config(root: &Path) -> HostConfig {
    HostConfig::new(root.to_path_buf(), "http://127.0.0.1:4566".to_owned())
}

fn spec(name: &str, runtime: &str, handler: &str, code: &Path) -> FunctionSpec {
    FunctionSpec {
        name: name.to_owned(),
        arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
        version: "$LATEST".to_owned(),
        runtime: runtime.to_owned(),
        handler: handler.to_owned(),
        code_dir: code.to_path_buf(),
        generation: "g1".to_owned(),
        memory_mb: 128,
        timeout: Duration::from_secs(10),
        environment: BTreeMap::from([("MY_VAR".to_owned(), "my value".to_owned())]),
        region: "us-east-1".to_owned(),
        credentials: Some(Credentials {
            access_key_id: "ASIAEXAMPLE".to_owned(),
            secret_access_key: "secret".to_owned(),
            session_token: "token".to_owned(),
        }),
        concurrency_limit: None,
        log_group: format!("/aws/lambda/{name}"),
    }
}

fn invocation(spec: &FunctionSpec, payload: &str) -> Invocation {
    Invocation {
        request_id: uuid::Uuid::new_v4().to_string(),
        invoked_arn: spec.arn.clone(),
        payload: Bytes::from(payload.to_owned()),
        client_context: None,
        want_log_tail: true,
        wait_for_instance: None,
    }
}

fn json(outcome: &InvokeOutcome) -> Value {
    serde_json::from_slice(&outcome.payload).unwrap_or_else(|e| {
        panic!(
            "payload is not JSON ({e}): {}",
            String::from_utf8_lossy(&outcome.payload)
        )
    })
}

/// Whether a process exists and is not a zombie.
fn alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn read_pid(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

const PY_CONTEXT: &str = r#"
import os, time
print("module loaded")

def handler(event, context):
    print("handling", event.get("n"))
    if event.get("crash"):
        os._exit(1)
    if event.get("sleep"):
        with open(os.environ["PID_FILE"], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(event["sleep"])
    tmp = os.environ.get("TMPDIR")
    with open(os.path.join(tmp, "scratch"), "w") as f:
        f.write("x")
    return {
        "event": event,
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "client_custom": context.client_context.custom if context.client_context else None,
        "identity": context.identity.cognito_identity_id,
        "env": dict(os.environ),
    }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_handler_returns_json_with_context() -> TestResult {
    if !have("python3") {
        eprintln!("skipped: no python3");
        return Ok(());
    }
    let fx = fixture();
    write(&fx.code.join("app/handler.py"), PY_CONTEXT);
    write(&fx.code.join("app/__init__.py"), "");
    let host = Host::new(config(&fx.root))?;
    let spec = Arc::new(spec("ctx", "python3.12", "app.handler.handler", &fx.code));
    let mut inv = invocation(&spec, r#"{"n":1}"#);
    inv.invoked_arn = format!("{}:live", spec.arn);
    inv.client_context = Some(r#"{"custom":{"k":"v"},"client":{"app_title":"t"}}"#.to_owned());
    let out = host.invoke(Arc::clone(&spec), inv.clone()).await?;
    assert_eq!(out.function_error, None, "{}", String::from_utf8_lossy(&out.payload));
    assert!(out.cold_start);
    let v = json(&out);
    assert_eq!(v["event"]["n"], 1);
    assert_eq!(v["function_name"], "ctx");
    assert_eq!(v["function_version"], "$LATEST");
    assert_eq!(v["invoked_function_arn"], inv.invoked_arn.as_str());
    assert_eq!(v["memory_limit_in_mb"], "128");
    assert_eq!(v["aws_request_id"], inv.request_id.as_str());
    assert_eq!(v["log_group_name"], "/aws/lambda/ctx");
    let stream = v["log_stream_name"].as_str().unwrap_or_default();
    assert!(
        stream.len() == "2026/01/01/[$LATEST]".len() + 32 && stream.contains("/[$LATEST]"),
        "{stream}"
    );
    let remaining = v["remaining"].as_i64().unwrap_or_default();
    assert!(remaining > 5_000 && remaining <= 10_000, "{remaining}");
    assert_eq!(v["client_custom"]["k"], "v");
    assert_eq!(v["identity"], Value::Null);
    assert_eq!(v["cwd"], fx.code.to_string_lossy().as_ref());

    let env = &v["env"];
    for (k, want) in [
        ("_HANDLER", "app.handler.handler"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_python3.12"),
        ("AWS_LAMBDA_FUNCTION_NAME", "ctx"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/ctx"),
        ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_SESSION_TOKEN", "token"),
        ("LANG", "en_US.UTF-8"),
        ("TZ", "UTC"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ("PYTHONUNBUFFERED", "1"),
        ("MY_VAR", "my value"),
    ] {
        assert_eq!(env[k], want, "{k}");
    }
    assert_eq!(env["LAMBDA_TASK_ROOT"], fx.code.to_string_lossy().as_ref());
    assert!(
        env["AWS_LAMBDA_RUNTIME_API"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );
    assert!(
        env["LAMBDA_RUNTIME_DIR"]
            .as_str()
            .is_some_and(|d| Path::new(d).join("python_bootstrap.py").is_file())
    );
    assert!(
        env["PYTHONPATH"]
            .as_str()
            .is_some_and(|p| p.starts_with(fx.code.to_string_lossy().as_ref()))
    );
    assert!(
        env["_X_AMZN_TRACE_ID"]
            .as_str()
            .is_some_and(|t| t.starts_with("Root=1-"))
    );
    let tmp = env["TMPDIR"].as_str().unwrap_or_default().to_owned();
    assert!(tmp.starts_with(fx.root.join("tmp").to_string_lossy().as_ref()), "{tmp}");
    assert!(Path::new(&tmp).join("scratch").is_file());
    // Nothing else of the server's environment leaks in.
    assert_eq!(env.get("CARGO_MANIFEST_DIR"), None);
    assert_eq!(env.get("CARGO_PKG_NAME"), None);

    // The version probe: python3.12 was asked for; say so if python3 is another version.
    let local = Command::new("python3").arg("--version").output()?;
    let local = String::from_utf8_lossy(&local.stdout).trim().to_owned();
    let log = std::fs::read_to_string(host.log_path("ctx"))?;
    assert_eq!(
        log.contains("asks for version 3.12"),
        !local.starts_with("Python 3.12"),
        "{local}: {log}"
    );

    host.shutdown().await;
    wait_until("TMPDIR removed", Duration::from_secs(5), || !Path::new(&tmp).exists()).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_warm_reuse_logs_and_latency() -> TestResult {
    if !have("python3") {
        eprintln!("skipped: no python3");
        return Ok(());
    }
    let fx = fixture();
    write(&fx.code.join("handler.py"), PY_CONTEXT);
    let host = Host::new(config(&fx.root))?;
    let spec = Arc::new(spec("warm", "python3.11", "handler.handler", &fx.code));
    let inv1 = invocation(&spec, r#"{"n":1}"#);
    let first = host.invoke(Arc::clone(&spec), inv1.clone()).await?;
    assert_eq!(
        first.function_error,
        None,
        "{}",
        String::from_utf8_lossy(&first.payload)
    );
    assert!(first.cold_start);
    assert_eq!(host.instances(&spec.arn), (0, 1));
    let inv2 = invocation(&spec, r#"{"n":2}"#);
    let second = host.invoke(Arc::clone(&spec), inv2.clone()).await?;
    assert!(!second.cold_start);
    assert_eq!(json(&first)["pid"], json(&second)["pid"], "warm instance reused");

    // The tail: this invocation's lines, START through REPORT, including the handler's print.
    let tail = second.log_tail.clone().unwrap_or_default();
    let rid = &inv2.request_id;
    assert!(
        tail.starts_with(&format!("START RequestId: {rid} Version: $LATEST\n")),
        "{tail}"
    );
    assert!(tail.contains("handling 2\n"), "{tail}");
    assert!(tail.contains(&format!("END RequestId: {rid}\n")), "{tail}");
    let report = tail.lines().last().unwrap_or_default();
    assert!(
        report.starts_with(&format!("REPORT RequestId: {rid}\tDuration: ")),
        "{report}"
    );
    assert!(
        report.contains("\tBilled Duration: ") && report.contains("\tMemory Size: 128 MB"),
        "{report}"
    );
    assert!(
        report.contains("\tMax Memory Used: ") && !report.contains("Init Duration"),
        "{report}"
    );
    // The cold one has the init output and the init duration.
    let first_tail = first.log_tail.clone().unwrap_or_default();
    assert!(
        first_tail.contains("module loaded\n") && first_tail.contains("handling 1\n"),
        "{first_tail}"
    );
    assert!(
        first_tail
            .lines()
            .last()
            .is_some_and(|l| l.contains("\tInit Duration: ")),
        "{first_tail}"
    );

    let log = std::fs::read_to_string(host.log_path("warm"))?;
    for rid in [&inv1.request_id, &inv2.request_id] {
        let start = log.find(&format!("START RequestId: {rid}")).unwrap_or(usize::MAX);
        let end = log.find(&format!("END RequestId: {rid}")).unwrap_or(0);
        let report = log.find(&format!("REPORT RequestId: {rid}")).unwrap_or(0);
        assert!(start < end && end < report, "{log}");
    }

    // Without LogType Tail there is no tail.
    let mut quiet = invocation(&spec, r#"{"n":3}"#);
    quiet.want_log_tail = false;
    assert!(host.invoke(Arc::clone(&spec), quiet).await?.log_tail.is_none());

    // Warm latency, for the report.
    let n = 50;
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let mut inv = invocation(&spec, &format!(r#"{{"n":{i}}}"#));
        inv.want_log_tail = i % 2 == 0;
        let t = Instant::now();
        let out = host.invoke(Arc::clone(&spec), inv).await?;
        times.push(t.elapsed());
        assert_eq!(out.function_error, None);
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / n as u32;
    println!(
        "warm python invoke latency over {n}: mean {:.2} ms, p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        mean.as_secs_f64() * 1e3,
        times[n / 2].as_secs_f64() * 1e3,
        times[n * 9 / 10].as_secs_f64() * 1e3,
        times[n - 1].as_secs_f64() * 1e3
    );
    host.shutdown().await;
    assert_eq!(host.instances(&spec.arn), (0, 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_handler_error_is_unhandled() -> TestResult {
    if !have("python3") {
        eprintln!("skipped: no python3");
        return Ok(());
    }
    let fx = fixture();
    write(
        &fx.code.join("lambda_function.py"),
        "def lambda_handler(event, context):\n    print('about to fail')\n    raise ValueError('bad input: ' + str(event['x']))\n",
    );
    let host = Host::new(config(&fx.root))?;
    let spec = Arc::new(spec("err", "python3.11", "lambda_function.lambda_handler", &fx.code));
    let inv = invocation(&spec, r#"{"x": 42}"#);
    let out = host.invoke(Arc::clone(&spec), inv.clone()).await?;
    assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(out.error_type.as_deref(), Some("ValueError"));
    let v = json(&out);
    assert_eq!(v["errorMessage"], "bad input: 42");
    assert_eq!(v["errorType"], "ValueError");
    assert_eq!(v["requestId"], inv.request_id.as_str());
    let trace = v["stackTrace"].as_array().cloned().unwrap_or_default();
    assert!(
        !trace.is_empty() && trace[0].as_str().is_some_and(|f| f.contains("lambda_function.py")),
        "{v}"
    );
    let tail = out.log_tail.unwrap_or_default();
    assert!(tail.contains("[ERROR] ValueError: bad input: 42"), "{tail}");
    // The instance survives its function's errors.
    assert_eq!(host.instances(&spec.arn), (0, 1));

    // A handler the module does not have.
    let spec2 = Arc::new(self::spec("nohandler", "python3.11", "lambda_function.nope", &fx.code));
    let out = host.invoke(Arc::clone(&spec2), invocation(&spec2, "{}")).await?;
    assert_eq!(out.error_type.as_deref(), Some("Runtime.HandlerNotFound"));
    assert_eq!(
        json(&out)["errorMessage"],
        "Handler 'nope' missing on module 'lambda_function'"
    );
    host.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_import_error_fails_init() -> TestResult {
    if !have("python3") {
        eprintln!("skipped: no python3");
        return Ok(());
    }
    let fx = fixture();
    write(
        &fx.code.join("broken.py"),
        "import does_not_exist_anywhere\n\ndef h(e, c):\n    return 1\n",
    );
    let host = Host::new(config(&fx.root))?;
    let spec = Arc::new(spec("imp", "python3.11", "broken.h", &fx.code));
    let out = host.invoke(Arc::clone(&spec), invocation(&spec, "{}")).await?;
    assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(out.error_type.as_deref(), Some("Runtime.ImportModuleError"));
    let v = json(&out);
    assert_eq!(
        v["errorMessage"],
        "Unable to import module 'broken': No module named 'does_not_exist_anywhere'"
    );
    assert!(
        out.log_tail
            .unwrap_or_default()
            .contains("[ERROR] Runtime.ImportModuleError")
    );
    // The failed instance is discarded.
    wait_until("instance gone", Duration::from_secs(5), || {
        host.instances(&spec.arn) == (0, 0)
    })
    .await;
    host.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_async_callback_and_esm_handlers() -> TestResult {
    if !have("node") {
        eprintln!("skipped: no node");
        return Ok(());
    }
    let fx = fixture();
    write(
        &fx.code.join("index.js"),
        r#"
exports.handler = async (event, context) => {
  console.log('async handling', event.n);
  await new Promise((r) => setTimeout(r, 5));
  return {
    n: event.n, pid: process.pid, name: context.functionName, version: context.functionVersion,
    arn: context.invokedFunctionArn, mem: context.memoryLimitInMB, id: context.awsRequestId,
    group: context.logGroupName, stream: context.logStreamName, remaining: context.getRemainingTimeInMillis(),
    waits: context.callbackWaitsForEmptyEventLoop, cc: context.clientContext,
    exec: process.env.AWS_EXECUTION_ENV, nodePath: process.env.NODE_PATH,
  };
};
exports.failing = async () => { throw new TypeError('nope'); };
"#,
    );
    write(
        &fx.code.join("cb.js"),
        r#"
module.exports.handler = (event, context, callback) => {
  setTimeout(() => callback(null, { callback: true, doubled: event.n * 2 }), 5);
};
module.exports.fails = (event, context, callback) => callback(new Error('from callback'));
"#,
    );
    write(
        &fx.code.join("esm.mjs"),
        "export const handler = async (event) => ({ esm: true, n: event.n });\n",
    );
    let host = Host::new(config(&fx.root))?;

    let spec1 = Arc::new(spec("nodeasync", "nodejs20.x", "index.handler", &fx.code));
    let mut inv = invocation(&spec1, r#"{"n":7}"#);
    inv.client_context = Some(r#"{"custom":{"a":1}}"#.to_owned());
    let out = host.invoke(Arc::clone(&spec1), inv.clone()).await?;
    assert_eq!(out.function_error, None, "{}", String::from_utf8_lossy(&out.payload));
    let v = json(&out);
    assert_eq!(v["n"], 7);
    assert_eq!(v["name"], "nodeasync");
    assert_eq!(v["version"], "$LATEST");
    assert_eq!(v["arn"], spec1.arn.as_str());
    assert_eq!(v["mem"], "128");
    assert_eq!(v["id"], inv.request_id.as_str());
    assert_eq!(v["group"], "/aws/lambda/nodeasync");
    assert!(v["stream"].as_str().is_some_and(|s| s.contains("/[$LATEST]")));
    assert!(v["remaining"].as_i64().is_some_and(|r| r > 5_000));
    assert_eq!(v["waits"], true);
    assert_eq!(v["cc"]["custom"]["a"], 1);
    assert_eq!(v["exec"], "AWS_Lambda_nodejs20.x");
    assert!(v["nodePath"].as_str().is_some_and(|p| p.ends_with("node_modules")));
    let tail = out.log_tail.unwrap_or_default();
    assert!(
        tail.contains(&format!("\t{}\tINFO\tasync handling 7\n", inv.request_id)),
        "{tail}"
    );
    let again = host
        .invoke(Arc::clone(&spec1), invocation(&spec1, r#"{"n":8}"#))
        .await?;
    assert_eq!(json(&again)["pid"], v["pid"]);

    let spec2 = Arc::new(spec("nodefail", "nodejs20.x", "index.failing", &fx.code));
    let out = host.invoke(Arc::clone(&spec2), invocation(&spec2, "{}")).await?;
    assert_eq!(out.error_type.as_deref(), Some("TypeError"));
    assert_eq!(json(&out)["errorMessage"], "nope");

    let spec3 = Arc::new(spec("nodecb", "nodejs20.x", "cb.handler", &fx.code));
    let out = host
        .invoke(Arc::clone(&spec3), invocation(&spec3, r#"{"n":21}"#))
        .await?;
    assert_eq!(out.function_error, None, "{}", String::from_utf8_lossy(&out.payload));
    assert_eq!(json(&out), serde_json::json!({"callback": true, "doubled": 42}));

    let spec4 = Arc::new(spec("nodecbfail", "nodejs20.x", "cb.fails", &fx.code));
    let out = host.invoke(Arc::clone(&spec4), invocation(&spec4, "{}")).await?;
    assert_eq!(out.error_type.as_deref(), Some("Error"));
    assert_eq!(json(&out)["errorMessage"], "from callback");

    let spec5 = Arc::new(spec("nodeesm", "nodejs20.x", "esm.handler", &fx.code));
    let out = host
        .invoke(Arc::clone(&spec5), invocation(&spec5, r#"{"n":5}"#))
        .await?;
    assert_eq!(json(&out), serde_json::json!({"esm": true, "n": 5}));

    let spec6 = Arc::new(spec("nodemissing", "nodejs20.x", "nothere.handler", &fx.code));
    let out = host.invoke(Arc::clone(&spec6), invocation(&spec6, "{}")).await?;
    assert_eq!(out.error_type.as_deref(), Some("Runtime.ImportModuleError"));
    host.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_runtime_shell_bootstrap() -> TestResult {
    let fx = fixture();
    if have("curl") {
        write_executable(
            &fx.code.join("bootstrap"),
            r#"#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
echo "custom runtime starting"
while true; do
  HEADERS="$(mktemp)"
  EVENT="$(curl -sS -D "$HEADERS" "$API/invocation/next")"
  ID="$(grep -i '^Lambda-Runtime-Aws-Request-Id:' "$HEADERS" | tr -d '\r' | cut -d' ' -f2)"
  DEADLINE="$(grep -ci '^Lambda-Runtime-Deadline-Ms:' "$HEADERS")"
  rm -f "$HEADERS"
  echo "got $ID"
  curl -sS -o /dev/null -X POST "$API/invocation/$ID/response" \
    -d "{\"echo\":$EVENT,\"handler\":\"$_HANDLER\",\"deadline_header\":$DEADLINE}"
done
"#,
        );
    } else {
        write_executable(
            &fx.code.join("bootstrap"),
            r#"#!/usr/bin/env python3
import json, os, urllib.request
api = "http://%s/2018-06-01/runtime" % os.environ["AWS_LAMBDA_RUNTIME_API"]
print("custom runtime starting", flush=True)
while True:
    with urllib.request.urlopen(api + "/invocation/next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        deadline = 1 if r.headers.get("Lambda-Runtime-Deadline-Ms") else 0
        event = json.loads(r.read())
    print("got", rid, flush=True)
    body = json.dumps({"echo": event, "handler": os.environ["_HANDLER"], "deadline_header": deadline}).encode()
    urllib.request.urlopen(urllib.request.Request(api + "/invocation/%s/response" % rid, data=body, method="POST")).read()
"#,
        );
    }
    let host = Host::new(config(&fx.root))?;
    let spec = Arc::new(spec("custom", "provided.al2023", "my.handler", &fx.code));
    let inv = invocation(&spec, r#"{"hello":"world"}"#);
    let t = Instant::now();
    let out = host.invoke(Arc::clone(&spec), inv.clone()).await?;
    println!(
        "custom runtime cold invoke (spawn sh, curl next, curl response): {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(out.function_error, None, "{}", String::from_utf8_lossy(&out.payload));
    assert_eq!(
        json(&out),
        serde_json::json!({"echo": {"hello": "world"}, "handler": "my.handler", "deadline_header": 1})
    );
    let tail = out.log_tail.unwrap_or_default();
    assert!(
        tail.contains("custom runtime starting\n") && tail.contains(&format!("got {}\n", inv.request_id)),
        "{tail}"
    );
    let out = host.invoke(Arc::clone(&spec), invocation(&spec, "[1,2]")).await?;
    assert!(!out.cold_start);
    assert_eq!(json(&out)["echo"], serde_json::json!([1, 2]));
    host.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_api_rejects_bad_ids_double_answers_and_huge_responses() -> TestResult {
    if !have("python3") {
        eprintln!("skipped: no python3");
        return Ok(());
    }
    let fx = fixture();
    // Invocation 1: probe the API's refusals, then answer too big. Invocation 2: report.
    write_executable(
        &fx.code.join("bootstrap"),
        r#"#!/usr/bin/env python3
import http.client, json, os
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
def call(method, path, body=None):
    c = http.client.HTTPConnection(host, int(port))
    c.request(method, "/2018-06-01/runtime" + path, body=body)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.headers, data
seen = {}
while True:
    _, headers, _ = call("GET", "/invocation/next")
    rid = headers["Lambda-Runtime-Aws-Request-Id"]
    if not seen:
        seen["bogus"] = call("POST", "/invocation/not-a-request/response", b"{}")[0]
        seen["unknown_path"] = call("GET", "/restore/next")[0]
        seen["init_late"] = call("POST", "/init/error", b"{}")[0]
        status, _, body = call("POST", "/invocation/%s/response" % rid, b"x" * (6291556 + 1))
        seen["too_large"] = status
        seen["too_large_body"] = json.loads(body)
        seen["again"] = call("POST", "/invocation/%s/response" % rid, b"{}")[0]
    else:
        call("POST", "/invocation/%s/response" % rid, json.dumps(seen).encode())
"#,
    );
    let host = Host::new(config(&fx.root))?;
    let spec = Arc::new(spec("api", "provided.al2", "x", &fx.code));
    let out = host.invoke(Arc::clone(&spec), invocation(&spec, "{}")).await?;
    assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(out.error_type.as_deref(), Some("Function.ResponseSizeTooLarge"));
    let out = host.invoke(Arc::clone(&spec), invocation(&spec, "{}")).await?;
    assert_eq!(out.function_error, None, "{}", String::from_utf8_lossy(&out.payload));
    let v = json(&out);
    assert_eq!(v["bogus"], 400);
    assert_eq!(v["unknown_path"], 404);
    assert_eq!(v["init_late"], 403);
    assert_eq!(v["too_large"], 413);
    assert_eq!(v["too_large_body"]["errorType"], "RequestEntityTooLarge");
    assert_eq!(
        v["too_large_body"]["errorMessage"],
        "Exceeded maximum allowed payload size (6291556 bytes)."
    );
    assert_eq!(v["again"], 403);
    host.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bootstrap_unknown_runtime_and_missing_interpreter() -> TestResult {
    let fx = fixture();
    let mut cfg = config(&fx.root);
    cfg.python = "python-does-not-exist".to_owned();
    let host = Host::new(cfg)?;

    let custom = Arc::new(spec("nobootstrap", "provided.al2023", "x", &fx.code));
    let inv = invocation(&custom, "{}");
    let out = host.invoke(Arc::clone(&custom), inv.clone()).await?;
    assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(out.error_type.as_deref(), Some("Runtime.InvalidEntrypoint"));
    let message = json(&out)["errorMessage"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.starts_with(&format!(
            "RequestId: {} Error: Couldn't find valid bootstrap(s): [",
            inv.request_id
        )),
        "{message}"
    );

    let py = Arc::new(spec("nopython", "python3.12", "h.h", &fx.code));
    let out = host.invoke(Arc::clone(&py), invocation(&py, "{}")).await?;
    assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(out.error_type.as_deref(), Some("Runtime.InvalidEntrypoint"));
    assert_eq!(
        json(&out)["errorMessage"],
        "kinesis-data: runtime python3.12 needs the interpreter \"python-does-not-exist\", which was not found on PATH \
         (set [lambda.interpreters] in the config)"
    );
    assert!(out.log_tail.unwrap_or_default().contains("which was not found on PATH"));

    let java = Arc::new(spec("java", "java21", "x", &fx.code));
    let out = host.invoke(Arc::clone(&java), invocation(&java, "{}")).await?;
    assert_eq!(out.error_type.as_deref(), Some("Runtime.InvalidRuntime"));
    for arn in [&custom.arn, &py.arn, &java.arn] {
        assert_eq!(host.instances(arn), (0, 0));
    }
    host.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_instance() -> TestResult {
    if !have("python3") {
        eprintln!("skipped: no python3");
        return Ok(());
    }
    let fx = fixture();
    write(&fx.code.join("handler.py"), PY_CONTEXT);
    let host = Host::new(config(&fx.root))?;
    let mut s = spec("slow", "python3.11", "handler.handler", &fx.code);
    s.timeout = Duration::from_secs(1);
    let pid_file = fx.root.join("slow.pid");
    s.environment
        .insert("PID_FILE".to_owned(), pid_file.to_string_lossy().into_owned());
    let spec = Arc::new(s);
    let inv = invocation(&spec, r#"{"sleep": 30}"#);
    let t = Instant::now();
    let out = host.invoke(Arc::clone(&spec), inv.clone()).await?;
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(out.error_type.as_deref(), Some("Sandbox.Timedout"));
    assert_eq!(
        json(&out),
        serde_json::json!({
            "errorType": "Sandbox.Timedout",
            "errorMessage": format!("RequestId: {} Error: Task timed out after 1.00 seconds", inv.request_id),
        })
    );
    let tail = out.log_tail.unwrap_or_default();
    assert!(
        tail.contains(&format!("Z {} Task timed out after 1.00 seconds\n", inv.request_id)),
        "{tail}"
    );
    let pid = read_pid(&pid_file).ok_or("no pid file")?;
    wait_until("the timed-out process to die", Duration::from_secs(5), || !alive(pid)).await;
    wait_until("the instance to go", Duration::from_secs(5), || {
        host.instances(&spec.arn) == (0, 0)
    })
    .await;
    // The next invocation gets a fresh instance.
    let out = host.invoke(Arc::clone(&spec), invocation(&spec, r#"{"n":1}"#)).await?;
    assert!(out.cold_start && out.function_error.is_none());
    host.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_is_exit_error_then_recovers() -> TestResult {
    if !have("python3") {
        eprintln!("skipped: no python3");
        return Ok(());
    }
    let fx = fixture();
    write(&fx.code.join("handler.py"), PY_CONTEXT);
    let host = Host::new(config(&fx.root))?;
    let spec = Arc::new(spec("crashy", "python3.11", "handler.handler", &fx.code));
    let first = host.invoke(Arc::clone(&spec), invocation(&spec, r#"{"n":1}"#)).await?;
    let pid1 = json(&first)["pid"].clone();
    let inv = invocation(&spec, r#"{"crash": true}"#);
    let out = host.invoke(Arc::clone(&spec), inv.clone()).await?;
    assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(out.error_type.as_deref(), Some("Runtime.ExitError"));
    assert_eq!(
        json(&out),
        serde_json::json!({
            "errorType": "Runtime.ExitError",
            "errorMessage": format!("RequestId: {} Error: Runtime exited with error: exit status 1", inv.request_id),
        })
    );
    let out = host.invoke(Arc::clone(&spec), invocation(&spec, r#"{"n":3}"#)).await?;
    assert_eq!(out.function_error, None);
    assert!(out.cold_start);
    assert_ne!(json(&out)["pid"], pid1);

    // An instance that dies while idle is just replaced.
    let pid = json(&out)["pid"].as_i64().unwrap_or_default();
    Command::new("kill").arg("-9").arg(pid.to_string()).status()?;
    wait_until("idle instance removed", Duration::from_secs(5), || {
        host.instances(&spec.arn) == (0, 0)
    })
    .await;
    let out = host.invoke(Arc::clone(&spec), invocation(&spec, r#"{"n":4}"#)).await?;
    assert_eq!(out.function_error, None);
    assert!(out.cold_start);
    host.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_throttles() -> TestResult {
    if !have("python3") {
        eprintln!("skipped: no python3");
        return Ok(());
    }
    let fx = fixture();
    write(&fx.code.join("handler.py"), PY_CONTEXT);
    let host = Host::new(config(&fx.root))?;
    let mut s = spec("limited", "python3.11", "handler.handler", &fx.code);
    s.concurrency_limit = Some(1);
    s.environment.insert(
        "PID_FILE".to_owned(),
        fx.root.join("limited.pid").to_string_lossy().into_owned(),
    );
    let spec = Arc::new(s);
    let busy = {
        let host = Arc::clone(&host);
        let spec = Arc::clone(&spec);
        tokio::spawn(async move {
            host.invoke(Arc::clone(&spec), invocation(&spec, r#"{"sleep": 1}"#))
                .await
        })
    };
    wait_until("one busy instance", Duration::from_secs(10), || {
        host.instances(&spec.arn) == (1, 0)
    })
    .await;
    let mut inv = invocation(&spec, "{}");
    inv.wait_for_instance = Some(Duration::ZERO);
    let t = Instant::now();
    assert!(matches!(
        host.invoke(Arc::clone(&spec), inv).await,
        Err(HostError::TooManyRequests)
    ));
    assert!(t.elapsed() < Duration::from_millis(500));
    // Waiting long enough gets the instance once it is free.
    let mut inv = invocation(&spec, r#"{"n":2}"#);
    inv.wait_for_instance = Some(Duration::from_secs(20));
    let waited = host.invoke(Arc::clone(&spec), inv).await?;
    assert_eq!(waited.function_error, None);
    assert!(!waited.cold_start);
    let first = busy.await??;
    assert_eq!(first.function_error, None);

    // Reserved concurrency 0: throttled at once.
    let mut zero = spec.as_ref().clone();
    zero.arn.push_str("-zero");
    zero.concurrency_limit = Some(0);
    let zero = Arc::new(zero);
    let mut inv = invocation(&zero, "{}");
    inv.wait_for_instance = Some(Duration::from_secs(5));
    let t = Instant::now();
    assert!(matches!(
        host.invoke(Arc::clone(&zero), inv).await,
        Err(HostError::TooManyRequests)
    ));
    assert!(t.elapsed() < Duration::from_millis(500));
    host.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_retire_reaper_and_shutdown() -> TestResult {
    if !have("python3") {
        eprintln!("skipped: no python3");
        return Ok(());
    }
    let fx = fixture();
    write(&fx.code.join("handler.py"), PY_CONTEXT);
    let mut cfg = config(&fx.root);
    cfg.idle_timeout = Duration::from_millis(400);
    let host = Host::new(cfg)?;
    let spec1 = Arc::new(spec("gens", "python3.11", "handler.handler", &fx.code));
    let a = json(&host.invoke(Arc::clone(&spec1), invocation(&spec1, "{}")).await?)["pid"]
        .as_u64()
        .unwrap_or(0);
    // A new generation never reuses the old instance, and stops it.
    let mut s2 = spec1.as_ref().clone();
    s2.generation = "g2".to_owned();
    let spec2 = Arc::new(s2);
    let out = host.invoke(Arc::clone(&spec2), invocation(&spec2, "{}")).await?;
    assert!(out.cold_start);
    let b = json(&out)["pid"].as_u64().unwrap_or(0);
    assert_ne!(a, b);
    wait_until("old generation stopped", Duration::from_secs(5), || !alive(a)).await;
    assert_eq!(host.instances(&spec1.arn), (0, 1));
    // Retire stops the idle one.
    host.retire(&spec1.arn);
    wait_until("retired instance stopped", Duration::from_secs(5), || !alive(b)).await;
    assert_eq!(host.instances(&spec1.arn), (0, 0));
    // The reaper stops instances idle for longer than the idle timeout.
    let c = json(&host.invoke(Arc::clone(&spec2), invocation(&spec2, "{}")).await?)["pid"]
        .as_u64()
        .unwrap_or(0);
    assert!(alive(c));
    wait_until("idle instance reaped", Duration::from_secs(10), || !alive(c)).await;
    assert_eq!(host.instances(&spec1.arn), (0, 0));
    // Shutdown kills everything and refuses new work.
    let d = json(&host.invoke(Arc::clone(&spec2), invocation(&spec2, "{}")).await?)["pid"]
        .as_u64()
        .unwrap_or(0);
    host.shutdown().await;
    assert!(!alive(d));
    assert!(
        std::fs::read_dir(fx.root.join("pids"))?.next().is_none(),
        "registry emptied"
    );
    assert!(matches!(
        host.invoke(Arc::clone(&spec2), invocation(&spec2, "{}")).await,
        Err(HostError::ShuttingDown)
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_host_sweeps_a_previous_runs_processes() -> TestResult {
    if !have("python3") {
        eprintln!("skipped: no python3");
        return Ok(());
    }
    let fx = fixture();
    write(&fx.code.join("handler.py"), PY_CONTEXT);
    // "Previous run": a host whose instance is busy (sleeping) when the next run starts.
    let old = Host::new(config(&fx.root))?;
    let mut s = spec("sweep", "python3.11", "handler.handler", &fx.code);
    let pid_file = fx.root.join("sweep.pid");
    s.environment
        .insert("PID_FILE".to_owned(), pid_file.to_string_lossy().into_owned());
    let spec = Arc::new(s);
    let busy = {
        let old = Arc::clone(&old);
        let spec = Arc::clone(&spec);
        tokio::spawn(async move {
            old.invoke(Arc::clone(&spec), invocation(&spec, r#"{"sleep": 60}"#))
                .await
        })
    };
    wait_until("the sleeping handler", Duration::from_secs(10), || {
        read_pid(&pid_file).is_some()
    })
    .await;
    let pid = read_pid(&pid_file).ok_or("no pid")?;
    assert!(alive(pid));
    let registry: Vec<_> = std::fs::read_dir(fx.root.join("pids"))?.flatten().collect();
    assert_eq!(registry.len(), 1);
    let text = std::fs::read_to_string(registry[0].path())?;
    assert!(text.starts_with(&format!("pid {pid}\npgid {pid}\n")), "{text}");

    // Also a process of an even older run that only the registry knows about.
    let stray_id = "0123456789abcdef0123456789abcdef";
    let stray = Command::new("sleep")
        .arg("60")
        .env("KINESIS_DATA_INSTANCE", stray_id)
        .stdin(std::process::Stdio::null())
        .spawn()?;
    std::fs::write(
        fx.root.join("pids").join(stray_id),
        format!("pid {0}\npgid {0}\n", stray.id()),
    )?;
    // And an unrelated process the registry names by a recycled pid: left alone.
    let mut bystander = Command::new("sleep").arg("60").spawn()?;
    let other_id = "fedcba9876543210fedcba9876543210";
    std::fs::write(
        fx.root.join("pids").join(other_id),
        format!("pid {0}\npgid {0}\n", bystander.id()),
    )?;

    let new = Host::new(config(&fx.root))?;
    wait_until("the previous run's instance killed", Duration::from_secs(5), || {
        !alive(pid)
    })
    .await;
    let mut stray = stray;
    let status = stray.wait()?;
    assert!(!status.success());
    assert!(alive(u64::from(bystander.id())), "an unrelated process must survive");
    bystander.kill()?;
    let _ = bystander.wait();
    let outcome = busy.await??;
    assert_eq!(outcome.error_type.as_deref(), Some("Runtime.ExitError"));
    assert!(
        json(&outcome)["errorMessage"]
            .as_str()
            .is_some_and(|m| m.ends_with("signal: 9 (SIGKILL)"))
    );
    new.shutdown().await;
    old.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awslambdaric_under_provided_runtime() -> TestResult {
    let ok = Command::new("python3")
        .args(["-c", "import awslambdaric"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("KINESIS_DATA_REQUIRE_RUNTIMES").is_none(),
            "awslambdaric is required (KINESIS_DATA_REQUIRE_RUNTIMES is set)"
        );
        eprintln!("skipped: python3 -c 'import awslambdaric' fails");
        return Ok(());
    }
    let fx = fixture();
    write(
        &fx.code.join("handler.py"),
        "def fn(event, context):\n    return {'ric': True, 'id': context.aws_request_id}\n",
    );
    write_executable(
        &fx.code.join("bootstrap"),
        "#!/bin/sh\nexec python3 -m awslambdaric handler.fn\n",
    );
    let host = Host::new(config(&fx.root))?;
    let spec = Arc::new(spec("ric", "provided.al2023", "handler.fn", &fx.code));
    let inv = invocation(&spec, "{}");
    let out = host.invoke(Arc::clone(&spec), inv.clone()).await?;
    assert_eq!(out.function_error, None, "{}", String::from_utf8_lossy(&out.payload));
    assert_eq!(json(&out), serde_json::json!({"ric": true, "id": inv.request_id}));
    host.shutdown().await;
    Ok(())
}
