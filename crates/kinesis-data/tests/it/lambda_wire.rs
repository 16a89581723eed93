//! Lambda through aws-sdk-lambda against the in-process server: the control plane, Invoke
//! on real Python and Node processes, AWS's error codes, resource policies, S3
//! notifications into functions (part 3 with boto3 inside the function) and async invokes.

use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{FunctionCode, InvocationType, LogType, Runtime};
use kd_test_support::{TestServer, wait_until};

use crate::assert_aws_error;

pub const PY_HANDLER: &str = r#"
import json, os, time

def handler(event, context):
    return {
        "event": event,
        "functionName": context.function_name,
        "requestId": context.aws_request_id,
        "arn": context.invoked_function_arn,
        "memory": int(context.memory_limit_in_mb),
        "remaining": context.get_remaining_time_in_millis(),
        "logGroup": context.log_group_name,
        "greeting": os.environ.get("GREETING"),
        "region": os.environ.get("AWS_REGION"),
        "pid": os.getpid(),
    }

def boom(event, context):
    print("about to fail")
    raise ValueError("bad thing happened")

def slow(event, context):
    time.sleep(event.get("sleep", 5))
    return "done"
"#;

/// A role trusting Lambda with S3 rights; returns its ARN.
pub async fn lambda_role(server: &TestServer, name: &str) -> anyhow::Result<String> {
    crate::lambda_e2e::role(&server.endpoint(), name).await
}

pub fn zip(files: &[(&str, &str)]) -> Vec<u8> {
    let entries: Vec<(&str, &[u8], u32)> = files.iter().map(|(n, b)| (*n, b.as_bytes(), 0o644)).collect();
    kd_functions::code::zip_files(&entries).expect("zip")
}

pub async fn create_python(
    server: &TestServer,
    name: &str,
    handler: &str,
    role: &str,
    code: &str,
) -> Result<
    aws_sdk_lambda::operation::create_function::CreateFunctionOutput,
    aws_sdk_lambda::error::SdkError<
        aws_sdk_lambda::operation::create_function::CreateFunctionError,
        aws_sdk_lambda::config::http::HttpResponse,
    >,
> {
    server
        .lambda()
        .create_function()
        .function_name(name)
        .runtime(Runtime::Python312)
        .role(role)
        .handler(handler)
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(zip(&[("app.py", code)])))
                .build(),
        )
        .environment(
            aws_sdk_lambda::types::Environment::builder()
                .variables("GREETING", "hello")
                .build(),
        )
        .send()
        .await
}

fn json(b: Option<&Blob>) -> serde_json::Value {
    b.and_then(|b| serde_json::from_slice(b.as_ref()).ok())
        .unwrap_or(serde_json::Value::Null)
}

#[tokio::test]
async fn control_plane_and_python_invoke() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let lambda = server.lambda();
    let role = lambda_role(&server, "fn-role").await?;
    let created = create_python(&server, "py-fn", "app.handler", &role, PY_HANDLER).await?;
    assert_eq!(created.state().map(|s| s.as_str()), Some("Pending"));
    assert_eq!(
        created.function_arn(),
        Some("arn:aws:lambda:us-east-1:000000000000:function:py-fn")
    );
    assert_eq!(created.timeout(), Some(3));
    assert_eq!(created.memory_size(), Some(128));
    assert_eq!(created.version(), Some("$LATEST"));
    assert!(created.code_sha256().is_some_and(|s| s.len() == 44));

    // The SDK's waiter sees it Active.
    let got = lambda.get_function().function_name("py-fn").send().await?;
    let cfg = got.configuration().expect("configuration");
    assert_eq!(cfg.state().map(|s| s.as_str()), Some("Active"));
    assert_eq!(cfg.last_update_status().map(|s| s.as_str()), Some("Successful"));
    let location = got.code().and_then(|c| c.location()).expect("location").to_owned();
    let zip_bytes = reqwest_get(&location).await?;
    assert_eq!(&zip_bytes[..2], b"PK", "Code.Location serves the package");

    let out = lambda
        .invoke()
        .function_name("py-fn")
        .payload(Blob::new(r#"{"hello":"world"}"#))
        .log_type(LogType::Tail)
        .send()
        .await?;
    assert_eq!(out.status_code(), 200);
    assert_eq!(out.function_error(), None);
    assert_eq!(out.executed_version(), Some("$LATEST"));
    let v = json(out.payload());
    assert_eq!(v["event"]["hello"], "world");
    assert_eq!(v["functionName"], "py-fn");
    assert_eq!(v["memory"], 128);
    assert_eq!(v["greeting"], "hello");
    assert_eq!(v["region"], "us-east-1");
    assert_eq!(v["logGroup"], "/aws/lambda/py-fn");
    assert!(v["remaining"].as_i64().is_some_and(|r| r > 0 && r <= 3000), "{v}");
    use base64::Engine as _;
    let tail = base64::engine::general_purpose::STANDARD.decode(out.log_result().expect("log tail"))?;
    let tail = String::from_utf8_lossy(&tail);
    assert!(
        tail.contains("START RequestId:") && tail.contains("REPORT RequestId:"),
        "{tail}"
    );

    // Warm: the same process answers again.
    let again = lambda.invoke().function_name("py-fn").send().await?;
    assert_eq!(json(again.payload())["pid"], v["pid"], "warm instance reused");
    assert_eq!(json(again.payload())["event"], serde_json::json!({}));

    // A function error is a 200 with X-Amz-Function-Error.
    lambda
        .update_function_configuration()
        .function_name("py-fn")
        .handler("app.boom")
        .timeout(10)
        .send()
        .await?;
    let failed = lambda.invoke().function_name("py-fn").send().await?;
    assert_eq!(failed.status_code(), 200);
    assert_eq!(failed.function_error(), Some("Unhandled"));
    let e = json(failed.payload());
    assert_eq!(e["errorType"], "ValueError");
    assert_eq!(e["errorMessage"], "bad thing happened");

    // The new configuration is what ListFunctions and GetFunctionConfiguration show.
    let list = lambda.list_functions().send().await?;
    assert_eq!(list.functions().len(), 1);
    assert_eq!(list.functions()[0].handler(), Some("app.boom"));
    assert_eq!(list.functions()[0].timeout(), Some(10));

    // UpdateFunctionCode replaces the package; PublishVersion freezes it.
    lambda
        .update_function_code()
        .function_name("py-fn")
        .zip_file(Blob::new(zip(&[("app.py", "def boom(e, c):\n    return 'v2'\n")])))
        .send()
        .await?;
    let v2 = lambda.invoke().function_name("py-fn").send().await?;
    assert_eq!(json(v2.payload()), "v2");
    let published = lambda.publish_version().function_name("py-fn").send().await?;
    assert_eq!(published.version(), Some("1"));
    lambda
        .create_alias()
        .function_name("py-fn")
        .name("live")
        .function_version("1")
        .send()
        .await?;
    let via_alias = lambda.invoke().function_name("py-fn").qualifier("live").send().await?;
    assert_eq!(via_alias.executed_version(), Some("1"));
    assert_eq!(json(via_alias.payload()), "v2");
    let versions = lambda.list_versions_by_function().function_name("py-fn").send().await?;
    assert_eq!(versions.versions().len(), 2);

    // DryRun and Event.
    let dry = lambda
        .invoke()
        .function_name("py-fn")
        .invocation_type(InvocationType::DryRun)
        .send()
        .await?;
    assert_eq!(dry.status_code(), 204);
    let queued = lambda
        .invoke()
        .function_name("py-fn")
        .invocation_type(InvocationType::Event)
        .payload(Blob::new("{}"))
        .send()
        .await?;
    assert_eq!(queued.status_code(), 202);

    // Everything survives a restart.
    let mut server = server;
    server.restart().await?;
    let lambda = server.lambda();
    let after = lambda.invoke().function_name("py-fn:live").send().await?;
    assert_eq!(json(after.payload()), "v2");
    lambda.delete_function().function_name("py-fn").send().await?;
    assert_aws_error!(
        lambda.get_function().function_name("py-fn").send().await,
        "ResourceNotFoundException",
        404
    );
    Ok(())
}

async fn reqwest_get(url: &str) -> anyhow::Result<Vec<u8>> {
    let url = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("not http: {url}"))?;
    let (host, path) = url.split_once('/').ok_or_else(|| anyhow::anyhow!("no path"))?;
    let addr: std::net::SocketAddr = host.parse()?;
    let (status, _, body) = kd_test_support::raw_http(addr, "GET", &format!("/{path}"), &[], b"").await?;
    anyhow::ensure!(status == 200, "GET {url}: {status}");
    Ok(body)
}

#[tokio::test]
async fn lambda_errors_have_aws_codes() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let lambda = server.lambda();
    let role = lambda_role(&server, "fn-role").await?;
    create_python(&server, "f", "app.handler", &role, PY_HANDLER).await?;

    assert_aws_error!(
        create_python(&server, "f", "app.handler", &role, PY_HANDLER).await,
        "ResourceConflictException",
        409
    );
    assert_aws_error!(
        lambda.get_function().function_name("nope").send().await,
        "ResourceNotFoundException",
        404
    );
    assert_aws_error!(
        lambda.invoke().function_name("nope").send().await,
        "ResourceNotFoundException",
        404
    );
    let m = assert_aws_error!(
        lambda
            .invoke()
            .function_name("f")
            .payload(Blob::new("not json"))
            .send()
            .await,
        "InvalidRequestContentException",
        400
    );
    assert!(m.contains("Could not parse request body into json"), "{m}");
    assert_aws_error!(
        lambda
            .invoke()
            .function_name("f")
            .payload(Blob::new(format!("\"{}\"", "x".repeat(6 * 1024 * 1024 + 1))))
            .send()
            .await,
        "RequestTooLargeException",
        413
    );
    assert_aws_error!(
        lambda
            .update_function_configuration()
            .function_name("f")
            .timeout(901)
            .send()
            .await,
        "InvalidParameterValueException",
        400
    );
    assert_aws_error!(
        lambda
            .create_function()
            .function_name("g")
            .runtime(Runtime::from("cobol85"))
            .role(&role)
            .handler("x.y")
            .code(FunctionCode::builder().zip_file(Blob::new(zip(&[("a", "b")]))).build())
            .send()
            .await,
        "InvalidParameterValueException",
        400
    );
    assert_aws_error!(
        lambda
            .create_function()
            .function_name("g")
            .runtime(Runtime::Python312)
            .role(&role)
            .handler("x.y")
            .code(FunctionCode::builder().zip_file(Blob::new("not a zip")).build())
            .send()
            .await,
        "InvalidParameterValueException",
        400
    );
    // A role that does not trust Lambda cannot be used.
    let iam = server.iam();
    let other = iam
        .create_role()
        .role_name("ec2-role")
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await?;
    let m = assert_aws_error!(
        create_python(
            &server,
            "g",
            "app.handler",
            &other.role.map(|r| r.arn).unwrap_or_default(),
            PY_HANDLER
        )
        .await,
        "InvalidParameterValueException",
        400
    );
    assert_eq!(m, "The role defined for the function cannot be assumed by Lambda.");
    // Reserved concurrency 0 throttles.
    lambda
        .put_function_concurrency()
        .function_name("f")
        .reserved_concurrent_executions(0)
        .send()
        .await?;
    assert_aws_error!(
        lambda.invoke().function_name("f").send().await,
        "TooManyRequestsException",
        429
    );
    lambda.delete_function_concurrency().function_name("f").send().await?;
    lambda.invoke().function_name("f").send().await?;
    // Timeouts answer AWS's error and kill the instance.
    lambda
        .update_function_configuration()
        .function_name("f")
        .handler("app.slow")
        .timeout(1)
        .send()
        .await?;
    let t = lambda.invoke().function_name("f").send().await?;
    assert_eq!(t.function_error(), Some("Unhandled"));
    let body = json(t.payload());
    assert!(
        body["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("Task timed out after 1.00 seconds")),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn resource_policy_and_s3_notifications_run_a_python_copy() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let lambda = server.lambda();
    let s3 = server.s3();
    let role = lambda_role(&server, "copy-role").await?;
    s3.create_bucket().bucket("src").send().await?;
    s3.create_bucket().bucket("dst").send().await?;
    // A Python copy function using the runtime's boto3 and the role's credentials.
    let code = r#"
import boto3, urllib.parse
s3 = boto3.client("s3")
def handler(event, context):
    for r in event["Records"]:
        b = r["s3"]["bucket"]["name"]
        k = urllib.parse.unquote_plus(r["s3"]["object"]["key"])
        body = s3.get_object(Bucket=b, Key=k)["Body"].read()
        s3.put_object(Bucket="dst", Key=k, Body=body)
    return len(event["Records"])
"#;
    create_python(&server, "copy", "app.handler", &role, code).await?;
    let arn = "arn:aws:lambda:us-east-1:000000000000:function:copy";
    let notification = aws_sdk_s3::types::NotificationConfiguration::builder()
        .lambda_function_configurations(
            aws_sdk_s3::types::LambdaFunctionConfiguration::builder()
                .id("copy-new")
                .lambda_function_arn(arn)
                .events(aws_sdk_s3::types::Event::from("s3:ObjectCreated:*"))
                .build()?,
        )
        .build();
    // Without a permission for S3, the destination does not validate.
    let err = s3
        .put_bucket_notification_configuration()
        .bucket("src")
        .notification_configuration(notification.clone())
        .send()
        .await
        .expect_err("no permission yet");
    assert_eq!(
        aws_sdk_s3::error::ProvideErrorMetadata::code(&err),
        Some("InvalidArgument")
    );
    let st = lambda
        .add_permission()
        .function_name("copy")
        .statement_id("s3-invoke")
        .action("lambda:InvokeFunction")
        .principal("s3.amazonaws.com")
        .source_arn("arn:aws:s3:::src")
        .source_account("000000000000")
        .send()
        .await?;
    let st: serde_json::Value = serde_json::from_str(st.statement().unwrap_or_default())?;
    assert_eq!(st["Principal"]["Service"], "s3.amazonaws.com");
    assert_eq!(st["Condition"]["ArnLike"]["AWS:SourceArn"], "arn:aws:s3:::src");
    let policy = lambda.get_policy().function_name("copy").send().await?;
    assert!(policy.policy().unwrap_or_default().contains("s3-invoke"));
    assert_aws_error!(
        lambda
            .add_permission()
            .function_name("copy")
            .statement_id("s3-invoke")
            .action("lambda:InvokeFunction")
            .principal("s3.amazonaws.com")
            .send()
            .await,
        "ResourceConflictException",
        409
    );
    s3.put_bucket_notification_configuration()
        .bucket("src")
        .notification_configuration(notification)
        .send()
        .await?;

    for i in 0..5 {
        s3.put_object()
            .bucket("src")
            .key(format!("in/file {i}(x).txt"))
            .body(format!("body {i}").into_bytes().into())
            .send()
            .await?;
    }
    let copied = wait_until(Duration::from_secs(30), "five copies in dst", || {
        let s3 = s3.clone();
        async move {
            let l = s3.list_objects_v2().bucket("dst").send().await.ok()?;
            (l.contents().len() == 5).then_some(l)
        }
    })
    .await?;
    assert_eq!(copied.contents()[0].key(), Some("in/file 0(x).txt"));
    let got = s3.get_object().bucket("dst").key("in/file 3(x).txt").send().await?;
    assert_eq!(got.body.collect().await?.into_bytes().as_ref(), b"body 3");

    lambda
        .remove_permission()
        .function_name("copy")
        .statement_id("s3-invoke")
        .send()
        .await?;
    assert_aws_error!(
        lambda.get_policy().function_name("copy").send().await,
        "ResourceNotFoundException",
        404
    );
    Ok(())
}

#[tokio::test]
async fn async_invokes_retry_then_reach_the_failure_destination() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| c.lambda.async_retry_delays_ms = vec![10, 10]).await?;
    let lambda = server.lambda();
    let role = lambda_role(&server, "fn-role").await?;
    let counter = server.data_dir().join("attempts.txt");
    let failing = format!(
        "def handler(event, context):\n    open({:?}, 'a').write(context.aws_request_id + '\\n')\n    raise RuntimeError('always')\n",
        counter.display().to_string()
    );
    create_python(&server, "flaky", "app.handler", &role, &failing).await?;
    let sink_file = server.data_dir().join("sink.jsonl");
    let sink = format!(
        "import json\ndef handler(event, context):\n    open({:?}, 'a').write(json.dumps(event) + '\\n')\n",
        sink_file.display().to_string()
    );
    create_python(&server, "sink", "app.handler", &role, &sink).await?;
    lambda
        .put_function_event_invoke_config()
        .function_name("flaky")
        .maximum_retry_attempts(2)
        .destination_config(
            aws_sdk_lambda::types::DestinationConfig::builder()
                .on_failure(
                    aws_sdk_lambda::types::OnFailure::builder()
                        .destination("arn:aws:lambda:us-east-1:000000000000:function:sink")
                        .build(),
                )
                .build(),
        )
        .send()
        .await?;
    lambda
        .invoke()
        .function_name("flaky")
        .invocation_type(InvocationType::Event)
        .payload(Blob::new(r#"{"n":1}"#))
        .send()
        .await?;
    let record = wait_until(Duration::from_secs(30), "the failure record", || {
        let f = sink_file.clone();
        async move {
            let text = std::fs::read_to_string(f).ok()?;
            serde_json::from_str::<serde_json::Value>(text.lines().next()?).ok()
        }
    })
    .await?;
    assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(record["requestPayload"]["n"], 1);
    assert_eq!(record["responsePayload"]["errorType"], "RuntimeError");
    let attempts = std::fs::read_to_string(&counter)?;
    let ids: Vec<&str> = attempts.lines().collect();
    assert_eq!(ids.len(), 3, "one try and two retries");
    assert!(ids.iter().all(|i| *i == ids[0]), "the same request id on every attempt");
    Ok(())
}

#[tokio::test]
async fn firehose_lambda_processor_runs_a_real_function() -> anyhow::Result<()> {
    use aws_sdk_firehose::types::{
        BufferingHints, ExtendedS3DestinationConfiguration, ProcessingConfiguration, Processor, ProcessorParameter,
        ProcessorParameterName, ProcessorType, Record,
    };
    let server = TestServer::start().await?;
    let s3 = server.s3();
    s3.create_bucket().bucket("lake").send().await?;
    let fn_role = lambda_role(&server, "transform-role").await?;
    let code = r#"
import base64
def handler(event, context):
    out = []
    for r in event["records"]:
        data = base64.b64decode(r["data"]).decode()
        if "drop" in data:
            out.append({"recordId": r["recordId"], "result": "Dropped"})
        elif "fail" in data:
            out.append({"recordId": r["recordId"], "result": "ProcessingFailed", "data": r["data"]})
        else:
            out.append({"recordId": r["recordId"], "result": "Ok",
                        "data": base64.b64encode(data.upper().encode()).decode()})
    return {"records": out}
"#;
    create_python(&server, "upper", "app.handler", &fn_role, code).await?;
    let role = crate::firehose_wire::firehose_role(
        &server,
        "fh-role",
        &["AmazonS3FullAccess", "service-role/AWSLambdaRole"],
    )
    .await?;
    let firehose = server.firehose();
    firehose
        .create_delivery_stream()
        .delivery_stream_name("transformed")
        .extended_s3_destination_configuration(
            ExtendedS3DestinationConfiguration::builder()
                .role_arn(&role)
                .bucket_arn("arn:aws:s3:::lake")
                .prefix("ok/")
                .error_output_prefix("err/!{firehose:error-output-type}/")
                .buffering_hints(BufferingHints::builder().size_in_mbs(1).interval_in_seconds(1).build())
                .processing_configuration(
                    ProcessingConfiguration::builder()
                        .enabled(true)
                        .processors(
                            Processor::builder()
                                .r#type(ProcessorType::Lambda)
                                .parameters(
                                    ProcessorParameter::builder()
                                        .parameter_name(ProcessorParameterName::LambdaArn)
                                        .parameter_value("arn:aws:lambda:us-east-1:000000000000:function:upper")
                                        .build()?,
                                )
                                .build()?,
                        )
                        .build(),
                )
                .build()?,
        )
        .send()
        .await?;
    crate::firehose_wire::wait_active(&firehose, "transformed").await?;
    let records: Vec<Record> = ["a\n", "drop me\n", "b\n", "fail me\n"]
        .iter()
        .map(|d| {
            Record::builder()
                .data(aws_sdk_firehose::primitives::Blob::new(d.as_bytes().to_vec()))
                .build()
        })
        .collect::<Result<_, _>>()?;
    firehose
        .put_record_batch()
        .delivery_stream_name("transformed")
        .set_records(Some(records))
        .send()
        .await?;
    let objs = wait_until(Duration::from_secs(30), "delivered and failed objects", || {
        let s3 = s3.clone();
        async move {
            let o = crate::firehose_wire::objects(&s3, "lake").await;
            let ok = o.iter().any(|(k, _)| k.starts_with("ok/"));
            let err = o.iter().any(|(k, _)| k.starts_with("err/processing-failed/"));
            (ok && err).then_some(o)
        }
    })
    .await?;
    let delivered: String = objs
        .iter()
        .filter(|(k, _)| k.starts_with("ok/"))
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(delivered, "A\nB\n");
    let failed: Vec<serde_json::Value> = objs
        .iter()
        .filter(|(k, _)| k.starts_with("err/"))
        .flat_map(|(_, b)| {
            String::from_utf8_lossy(b)
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD.decode(failed[0]["rawData"].as_str().unwrap_or_default())?,
        b"fail me\n"
    );
    Ok(())
}
