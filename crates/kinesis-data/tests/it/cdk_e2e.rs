//! A real AWS CDK app onto kinesis-data: `examples/cdk/` (plain JavaScript, aws-cdk-lib 2.x
//! from npm) is synthesized with `npx cdk synth`, and the cloud assembly is deployed with the
//! built binary's `deploy` against the in-process server, unchanged. Then every part is
//! driven through the AWS APIs: a PUT under `uploads/` runs the Python function that CDK's
//! own `Custom::S3BucketNotifications` handler subscribed; records put into the stream reach
//! the bucket through the Firehose delivery stream; the REST API answers `GET /`,
//! `GET /{id}` and `POST /` (which puts into the stream). `destroy --all` removes every
//! stack, and CDK's Node `Custom::S3AutoDeleteObjects` handler empties the bucket first, as
//! on AWS. And the same assembly with the `cdk` CLI itself (`cdk deploy`, `cdk destroy` with
//! `AWS_ENDPOINT_URL`) after `kinesis-data bootstrap`.
//!
//! Needs node with `npm ci --prefix examples/cdk` done, and the AWS SDK for JavaScript v3 where
//! the Node runtime finds it (`npm install --prefix ~/.cache/kinesis-data/node
//! @aws-sdk/client-s3`). Without `examples/cdk/node_modules` the test is skipped with a
//! message, unless `KINESIS_DATA_REQUIRE_CDK` is set (CI sets it): then it fails.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_s3::primitives::ByteStream;
use kd_test_support::{TestServer, raw_http, wait_until};
use serde_json::Value;

use crate::assert_aws_error;
use crate::deploy_e2e::{cli, output_value, texts};
use crate::lambda_e2e::example_binary;

type R = anyhow::Result<()>;

const DEADLINE: Duration = Duration::from_secs(60);

/// The example's stacks, in deployment order.
const STACKS: [&str; 4] = ["KdStorage", "KdPipeline", "KdApi", "KdAnalytics"];

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/cdk")
}

/// Whether the CDK toolchain is there; `Ok(false)` means skip (not required and absent).
fn cdk_available(dir: &Path) -> anyhow::Result<bool> {
    let required = std::env::var_os("KINESIS_DATA_REQUIRE_CDK").is_some();
    if !dir.join("node_modules").is_dir() {
        if required {
            anyhow::bail!(
                "KINESIS_DATA_REQUIRE_CDK is set but {} has no node_modules: run `npm ci --prefix examples/cdk`",
                dir.display()
            );
        }
        println!(
            "SKIPPED: {} has no node_modules (run `npm ci --prefix examples/cdk`, or set KINESIS_DATA_REQUIRE_CDK=1 to make this a failure)",
            dir.display()
        );
        return Ok(false);
    }
    // CDK's auto-delete handler imports @aws-sdk/client-s3, which AWS's Node runtime provides
    // and ours finds through NODE_PATH.
    let sdk = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/kinesis-data/node/node_modules/@aws-sdk/client-s3"));
    if !sdk.as_ref().is_some_and(|p| p.is_dir()) {
        anyhow::bail!(
            "the AWS SDK for JavaScript v3 is missing for the Node runtime: run `npm install --prefix ~/.cache/kinesis-data/node @aws-sdk/client-s3`"
        );
    }
    Ok(true)
}

/// `npx cdk synth` into `out`.
async fn synth(dir: &Path, out: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new("npx");
    cmd.current_dir(dir)
        .args(["cdk", "synth", "--quiet", "--no-notices", "-o"])
        .arg(out)
        .env("CDK_DEFAULT_ACCOUNT", "000000000000")
        .env("CDK_DEFAULT_REGION", "us-east-1")
        .env("CDK_DISABLE_VERSION_CHECK", "true")
        .env("CDK_DISABLE_CLI_TELEMETRY", "true")
        // KdAnalytics' Rust function: the `echo` example as its `bootstrap`.
        .env("KD_RUST_BOOTSTRAP", example_binary("echo")?)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(180), cmd.output()).await??;
    anyhow::ensure!(
        output.status.success(),
        "cdk synth failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(started.elapsed())
}

/// The keys of `bucket` under `prefix`.
async fn keys(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    match s3.list_objects_v2().bucket(bucket).prefix(prefix).send().await {
        Ok(listed) => listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn body(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> anyhow::Result<Vec<u8>> {
    let got = s3.get_object().bucket(bucket).key(key).send().await?;
    Ok(got.body.collect().await?.into_bytes().to_vec())
}

/// Waits until some object under `prefix` of `bucket` contains `needle`.
async fn delivered(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str, needle: &str) -> anyhow::Result<String> {
    wait_until(DEADLINE, &format!("{needle} under {prefix}"), || async {
        for key in keys(s3, bucket, prefix).await {
            if let Ok(bytes) = body(s3, bucket, &key).await
                && String::from_utf8_lossy(&bytes).contains(needle)
            {
                return Some(key);
            }
        }
        None
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdk_app_synthesizes_deploys_works_and_destroys() -> R {
    let dir = example_dir();
    if !cdk_available(&dir)? {
        return Ok(());
    }
    let out = tempfile::tempdir()?;
    let assembly = out.path().join("cdk.out");
    let synth_time = synth(&dir, &assembly).await?;
    println!("cdk synth: {synth_time:?}");
    for stack in STACKS {
        assert!(
            assembly.join(format!("{stack}.template.json")).is_file(),
            "no template for {stack}"
        );
    }

    let server = TestServer::start().await?;
    let app = assembly.to_string_lossy().into_owned();
    let started = Instant::now();
    let deployed = cli(&server, &["deploy", &app]).await?;
    let deploy_time = started.elapsed();
    let (stdout, stderr) = texts(&deployed);
    assert_eq!(deployed.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    println!("kinesis-data deploy (4 stacks): {deploy_time:?}");
    // CDK's own custom resources ran through the response-URL protocol.
    for line in [
        "| CREATE_COMPLETE              | Custom::S3AutoDeleteObjects",
        "| CREATE_COMPLETE              | Custom::S3BucketNotifications",
        "| CREATE_COMPLETE              | AWS::S3::BucketPolicy",
        "| CREATE_COMPLETE              | AWS::ApiGateway::Account",
        "✨  Deployed 4 stack(s)",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
    let bucket = output_value(&stdout, "KdStorage.BucketName").to_owned();
    let on_upload = output_value(&stdout, "KdStorage.OnUploadFunction").to_owned();
    let stream = output_value(&stdout, "KdPipeline.StreamName").to_owned();
    let api = output_value(&stdout, "KdApi.RestApiId").to_owned();
    assert!(
        !bucket.is_empty() && !on_upload.is_empty() && !stream.is_empty() && !api.is_empty(),
        "{stdout}"
    );

    // The notification CDK's Python handler configured is the bucket's.
    let s3 = server.s3();
    let notification = s3
        .get_bucket_notification_configuration()
        .bucket(&bucket)
        .send()
        .await?;
    let configs = notification.lambda_function_configurations();
    assert_eq!(configs.len(), 1, "{notification:?}");
    assert!(
        configs[0]
            .lambda_function_arn()
            .ends_with(&format!(":function:{on_upload}"))
    );

    // A PUT under uploads/ runs the function, which writes its summary.
    s3.put_object()
        .bucket(&bucket)
        .key("uploads/report.csv")
        .body(ByteStream::from_static(b"id,value\n1,42\n"))
        .send()
        .await?;
    let summary = wait_until(DEADLINE, "processed/report.csv.json", || async {
        body(&s3, &bucket, "processed/report.csv.json").await.ok()
    })
    .await?;
    let summary: Value = serde_json::from_slice(&summary)?;
    assert_eq!(summary["key"], "uploads/report.csv");
    assert_eq!(summary["size"], 14);
    assert_eq!(summary["event"], "ObjectCreated:Put");

    // Records put into the stream reach the bucket through Firehose.
    let kinesis = server.kinesis();
    kinesis
        .put_record()
        .stream_name(&stream)
        .partition_key("sensor-1")
        .data(Blob::new(b"{\"sensor\":\"s1\",\"reading\":7}\n".to_vec()))
        .send()
        .await?;
    delivered(&s3, &bucket, "events/", r#""reading":7"#).await?;

    // Athena over the Glue table CDK declared, in CDK's workgroup: its enforced result
    // location wins over the one the request gives.
    let database = output_value(&stdout, "KdAnalytics.DatabaseName").to_owned();
    let table = output_value(&stdout, "KdAnalytics.TableName").to_owned();
    let workgroup = output_value(&stdout, "KdAnalytics.WorkGroupName").to_owned();
    assert_eq!((database.as_str(), workgroup.as_str()), ("kd_events", "kd-analytics"));
    assert_eq!(table, "events");
    let (rows, location) = athena_rows(
        &server.athena(),
        &database,
        &workgroup,
        &format!("s3://{bucket}/elsewhere/"),
        "SELECT sensor, reading FROM events WHERE sensor = 's1'",
    )
    .await?;
    assert_eq!(rows, [vec!["sensor", "reading"], vec!["s1", "7"]]);
    assert!(
        location.starts_with(&format!("s3://{bucket}/athena-results/")),
        "{location}"
    );

    // The Rust (provided.al2023) function from a CDK asset answers.
    let rust_fn = output_value(&stdout, "KdAnalytics.RustFunction").to_owned();
    let lambda = server.lambda();
    let invoked = lambda
        .invoke()
        .function_name(&rust_fn)
        .payload(Blob::new(br#"{"hello":"cdk"}"#.to_vec()))
        .send()
        .await?;
    assert_eq!(invoked.function_error(), None);
    let answer: Value = serde_json::from_slice(invoked.payload().map(Blob::as_ref).unwrap_or_default())?;
    assert_eq!(answer["event"]["hello"], "cdk", "{answer}");
    assert_eq!(answer["functionName"], rust_fn.as_str(), "{answer}");
    let config = lambda
        .get_function_configuration()
        .function_name(&rust_fn)
        .send()
        .await?;
    assert_eq!(config.runtime().map(|r| r.as_str()), Some("provided.al2023"));
    // Its output goes to the log group CDK gave it (LoggingConfig.LogGroup).
    let log_group = output_value(&stdout, "KdAnalytics.RustFunctionLogGroup").to_owned();
    assert_eq!(
        config.logging_config().and_then(|l| l.log_group()),
        Some(log_group.as_str())
    );
    let logs = server.logs();
    wait_until(DEADLINE, "the Rust function's REPORT line in its log group", || async {
        let found = logs
            .filter_log_events()
            .log_group_name(&log_group)
            .filter_pattern("REPORT")
            .send()
            .await
            .ok()?;
        (!found.events().is_empty()).then_some(())
    })
    .await?;

    // The REST API: GET /, GET /{id}, and POST / into the stream (and on to the bucket).
    let addr = server.inner().addr();
    let stage = format!("/restapis/{api}/prod/_user_request_");
    let (status, _, answer) = raw_http(addr, "GET", &format!("{stage}/"), &[], b"").await?;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let answer: Value = serde_json::from_slice(&answer)?;
    assert_eq!(answer["stream"], stream.as_str());
    let (status, _, answer) = raw_http(addr, "GET", &format!("{stage}/item-17"), &[], b"").await?;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(serde_json::from_slice::<Value>(&answer)?["id"], "item-17");
    let (status, _, answer) = raw_http(
        addr,
        "POST",
        &format!("{stage}/"),
        &[("content-type".to_owned(), "application/json".to_owned())],
        b"{\"via\":\"api\",\"n\":3}\n",
    )
    .await?;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&answer));
    let answer: Value = serde_json::from_slice(&answer)?;
    assert!(
        answer["shard"].as_str().is_some_and(|s| s.starts_with("shardId-")),
        "{answer}"
    );
    delivered(&s3, &bucket, "events/", r#""via":"api""#).await?;

    // Deploying again changes nothing.
    let again = cli(&server, &["deploy", &app]).await?;
    let (stdout, stderr) = texts(&again);
    assert_eq!(again.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for stack in STACKS {
        assert!(stdout.contains(&format!("✅  {stack} (no changes)")), "{stdout}");
    }

    // Destroy: the bucket still holds objects; CDK's auto-delete handler empties it.
    assert!(!keys(&s3, &bucket, "").await.is_empty());
    let destroyed = cli(&server, &["destroy", "--app", &app, "--all"]).await?;
    let (stdout, stderr) = texts(&destroyed);
    assert_eq!(destroyed.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for stack in STACKS.iter().rev() {
        assert!(stdout.contains(&format!("✅  {stack}: destroyed")), "{stdout}");
    }
    assert!(
        stdout.contains("| DELETE_COMPLETE              | Custom::S3AutoDeleteObjects"),
        "{stdout}"
    );
    assert!(s3.head_bucket().bucket(&bucket).send().await.is_err());
    assert_aws_error!(
        kinesis.describe_stream_summary().stream_name(&stream).send().await,
        "ResourceNotFoundException",
        400
    );
    assert_aws_error!(
        lambda.get_function().function_name(&on_upload).send().await,
        "ResourceNotFoundException",
        404
    );
    assert!(
        server
            .apigateway()
            .get_rest_api()
            .rest_api_id(&api)
            .send()
            .await
            .is_err()
    );
    assert_aws_error!(
        lambda.get_function().function_name(&rust_fn).send().await,
        "ResourceNotFoundException",
        404
    );
    assert_aws_error!(
        server.glue().get_database().name(&database).send().await,
        "EntityNotFoundException",
        400
    );
    assert_aws_error!(
        server.athena().get_work_group().work_group(&workgroup).send().await,
        "InvalidRequestException",
        400
    );
    let cfn = server.cloudformation();
    for stack in STACKS {
        assert_aws_error!(
            cfn.describe_stacks().stack_name(stack).send().await,
            "ValidationError",
            400
        );
    }
    server.stop().await
}

/// Runs `sql` in `workgroup` with `output` as the request's result location, waits for
/// success, and returns the rows (header first) and where the results went.
async fn athena_rows(
    athena: &aws_sdk_athena::Client,
    database: &str,
    workgroup: &str,
    output: &str,
    sql: &str,
) -> anyhow::Result<(Vec<Vec<String>>, String)> {
    use aws_sdk_athena::types::{QueryExecutionContext, QueryExecutionState, ResultConfiguration};
    let id = athena
        .start_query_execution()
        .query_string(sql)
        .work_group(workgroup)
        .query_execution_context(QueryExecutionContext::builder().database(database).build())
        .result_configuration(ResultConfiguration::builder().output_location(output).build())
        .send()
        .await?
        .query_execution_id()
        .unwrap_or_default()
        .to_owned();
    let execution = wait_until(DEADLINE, "the query ends", || async {
        let q = athena.get_query_execution().query_execution_id(&id).send().await.ok()?;
        let q = q.query_execution()?.clone();
        let state = q.status()?.state()?.clone();
        (state != QueryExecutionState::Queued && state != QueryExecutionState::Running).then_some(q)
    })
    .await?;
    let status = execution.status();
    anyhow::ensure!(
        status.and_then(|s| s.state()) == Some(&QueryExecutionState::Succeeded),
        "{sql}: {status:?}"
    );
    let location = execution
        .result_configuration()
        .and_then(|r| r.output_location())
        .unwrap_or_default()
        .to_owned();
    let results = athena.get_query_results().query_execution_id(&id).send().await?;
    let rows = results
        .result_set()
        .map(|r| r.rows())
        .unwrap_or_default()
        .iter()
        .map(|row| {
            row.data()
                .iter()
                .map(|d| d.var_char_value().unwrap_or_default().to_owned())
                .collect()
        })
        .collect();
    Ok((rows, location))
}

/// Runs the example's `cdk` CLI (`npx cdk …`) on the assembly `app` against `server`, with the
/// environment a user gives it: the endpoint, the keys, the region.
async fn cdk(server: &TestServer, dir: &Path, app: &Path, args: &[&str]) -> anyhow::Result<(bool, String)> {
    let mut cmd = tokio::process::Command::new("npx");
    cmd.current_dir(dir)
        .arg("cdk")
        .args(args)
        .arg("--app")
        .arg(app)
        .args(["--no-notices", "--ci"])
        .env("AWS_ENDPOINT_URL", server.endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_REGION", "us-east-1")
        .env("CDK_DISABLE_VERSION_CHECK", "true")
        .env("CDK_DISABLE_CLI_TELEMETRY", "true")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(240), cmd.output()).await??;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdk_deploy_itself_works_after_kinesis_data_bootstrap() -> R {
    let dir = example_dir();
    if !cdk_available(&dir)? {
        return Ok(());
    }
    let out = tempfile::tempdir()?;
    let assembly = out.path().join("cdk.out");
    synth(&dir, &assembly).await?;
    let server = TestServer::start().await?;

    // Not bootstrapped: cdk deploy says so, as on AWS.
    let (ok, text) = cdk(
        &server,
        &dir,
        &assembly,
        &["deploy", "KdStorage", "--require-approval", "never"],
    )
    .await?;
    assert!(!ok, "{text}");
    assert!(text.contains("/cdk-bootstrap/hnb659fds/version"), "{text}");

    let bootstrapped = cli(&server, &["bootstrap"]).await?;
    let (stdout, stderr) = texts(&bootstrapped);
    assert_eq!(
        bootstrapped.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("Environment aws://000000000000/us-east-1 bootstrapped"),
        "{stdout}"
    );
    let again = cli(&server, &["bootstrap"]).await?;
    assert!(texts(&again).0.contains("is already bootstrapped"));

    // cdk deploy: assets published by the CLI, change sets created and executed.
    let started = Instant::now();
    let (ok, text) = cdk(
        &server,
        &dir,
        &assembly,
        &["deploy", "--all", "--require-approval", "never"],
    )
    .await?;
    assert!(ok, "{text}");
    println!("cdk deploy --all (4 stacks): {:?}", started.elapsed());
    for stack in STACKS {
        assert!(text.contains(&format!("✅  {stack}")), "{text}");
    }
    let bucket = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("KdStorage.BucketName = "))
        .unwrap_or_default()
        .to_owned();
    assert!(!bucket.is_empty(), "{text}");
    let cfn = server.cloudformation();
    for stack in STACKS {
        let described = cfn.describe_stacks().stack_name(stack).send().await?;
        let status = described
            .stacks()
            .first()
            .and_then(|s| s.stack_status())
            .map(|s| s.as_str().to_owned());
        assert_eq!(status.as_deref(), Some("CREATE_COMPLETE"), "{stack}");
    }

    // The deployed system works: a PUT under uploads/ runs the function.
    let s3 = server.s3();
    s3.put_object()
        .bucket(&bucket)
        .key("uploads/via-cdk.txt")
        .body(ByteStream::from_static(b"cdk deploy"))
        .send()
        .await?;
    let summary = wait_until(DEADLINE, "processed/via-cdk.txt.json", || async {
        body(&s3, &bucket, "processed/via-cdk.txt.json").await.ok()
    })
    .await?;
    assert_eq!(serde_json::from_slice::<Value>(&summary)?["size"], 10);

    // cdk destroy: the auto-delete handler empties the bucket, every stack goes.
    let (ok, text) = cdk(&server, &dir, &assembly, &["destroy", "--all", "--force"]).await?;
    assert!(ok, "{text}");
    assert!(s3.head_bucket().bucket(&bucket).send().await.is_err());
    for stack in STACKS {
        assert_aws_error!(
            cfn.describe_stacks().stack_name(stack).send().await,
            "ValidationError",
            400
        );
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdk_bootstrap_itself_then_cdk_deploy_all() -> R {
    let dir = example_dir();
    if !cdk_available(&dir)? {
        return Ok(());
    }
    let out = tempfile::tempdir()?;
    let assembly = out.path().join("cdk.out");
    synth(&dir, &assembly).await?;
    let server = TestServer::start().await?;

    // cdk bootstrap's own template: the CDKToolkit stack with its ECR repository (recorded),
    // bucket, bucket policy, roles (the lookup role with AWS's ReadOnlyAccess) and parameter.
    let (ok, text) = cdk(&server, &dir, &assembly, &["bootstrap", "aws://000000000000/us-east-1"]).await?;
    assert!(ok, "{text}");
    assert!(
        text.contains("Environment aws://000000000000/us-east-1 bootstrapped"),
        "{text}"
    );
    let cfn = server.cloudformation();
    let toolkit = cfn.describe_stacks().stack_name("CDKToolkit").send().await?;
    let toolkit = toolkit
        .stacks()
        .first()
        .ok_or_else(|| anyhow::anyhow!("no CDKToolkit"))?;
    assert_eq!(toolkit.stack_status().map(|s| s.as_str()), Some("CREATE_COMPLETE"));
    let out_of = |key: &str| {
        toolkit
            .outputs()
            .iter()
            .find(|o| o.output_key() == Some(key))
            .and_then(|o| o.output_value())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(out_of("BucketName"), "cdk-hnb659fds-assets-000000000000-us-east-1");
    assert_eq!(
        out_of("ImageRepositoryName"),
        "cdk-hnb659fds-container-assets-000000000000-us-east-1"
    );
    let version = server
        .ssm()
        .get_parameter()
        .name("/cdk-bootstrap/hnb659fds/version")
        .send()
        .await?;
    assert_eq!(
        version.parameter().and_then(|p| p.value()),
        Some(out_of("BootstrapVersion").as_str())
    );
    let iam = server.iam();
    let lookup = iam
        .list_attached_role_policies()
        .role_name("cdk-hnb659fds-lookup-role-000000000000-us-east-1")
        .send()
        .await?;
    let arns: Vec<&str> = lookup
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn())
        .collect();
    assert_eq!(arns, ["arn:aws:iam::aws:policy/ReadOnlyAccess"]);

    // cdk deploy --all on that bootstrap, no `kinesis-data bootstrap`.
    let (ok, text) = cdk(
        &server,
        &dir,
        &assembly,
        &["deploy", "--all", "--require-approval", "never"],
    )
    .await?;
    assert!(ok, "{text}");
    for stack in STACKS {
        assert!(text.contains(&format!("✅  {stack}")), "{text}");
    }
    let stream = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("KdPipeline.StreamName = "))
        .unwrap_or_default()
        .to_owned();
    let bucket = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("KdStorage.BucketName = "))
        .unwrap_or_default()
        .to_owned();
    assert!(!stream.is_empty() && !bucket.is_empty(), "{text}");

    // The pipeline works: stream → Firehose → bucket.
    server
        .kinesis()
        .put_record()
        .stream_name(&stream)
        .partition_key("p")
        .data(Blob::new(b"{\"via\": \"cdk-bootstrap\"}\n".to_vec()))
        .send()
        .await?;
    let s3 = server.s3();
    delivered(&s3, &bucket, "events/", "cdk-bootstrap").await?;

    let (ok, text) = cdk(&server, &dir, &assembly, &["destroy", "--all", "--force"]).await?;
    assert!(ok, "{text}");
    assert!(s3.head_bucket().bucket(&bucket).send().await.is_err());
    server.stop().await
}
