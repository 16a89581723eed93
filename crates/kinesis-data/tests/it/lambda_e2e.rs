//! Lambda end to end against the built binary: seed part 3 (bucket A → the Rust `s3-copy`
//! example built with `lambda_runtime` → bucket B), and `kill -9` of the server with a
//! function instance running: no instance outlives it and the queued invocation runs
//! again after the restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{FunctionCode, InvocationType, Runtime};
use kd_test_support::{ACCESS_KEY, SECRET_KEY, iam_client, lambda_client, s3_client, wait_until};

use crate::e2e::{start, terminate};

type R = anyhow::Result<()>;

const TRUST_LAMBDA: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
const S3_ALL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;

/// The workspace's build of an example function (built on demand when missing).
pub fn example_binary(name: &str) -> anyhow::Result<PathBuf> {
    // <target>/debug/deps/it-<hash> → <target>/debug/<name>
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow::anyhow!("unexpected test binary path {}", exe.display()))?;
    let bin = dir.join(name);
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = std::process::Command::new(cargo)
            .args(["build", "--locked", "-p", name])
            .status()?;
        anyhow::ensure!(status.success(), "cargo build -p {name} failed");
    }
    anyhow::ensure!(bin.exists(), "{} was not built", bin.display());
    Ok(bin)
}

/// A deployment package holding `binary` as an executable `bootstrap` (what `cargo lambda
/// build --output-format zip` makes).
pub fn bootstrap_zip(binary: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(binary)?;
    Ok(kd_functions::code::zip_files(&[("bootstrap", &bytes, 0o755)])?)
}

/// A role trusting Lambda with S3 rights (inline policy); returns its ARN.
pub async fn role(endpoint: &str, name: &str) -> anyhow::Result<String> {
    let iam = iam_client(endpoint, ACCESS_KEY, SECRET_KEY, None);
    let r = iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(TRUST_LAMBDA)
        .send()
        .await?;
    iam.put_role_policy()
        .role_name(name)
        .policy_name("s3")
        .policy_document(S3_ALL)
        .send()
        .await?;
    Ok(r.role.map(|r| r.arn).unwrap_or_default())
}

#[tokio::test]
async fn part_3_rust_s3_copy_function_copies_every_new_object() -> R {
    let dir = tempfile::tempdir()?;
    let mut server = start(dir.path(), &[])?;
    let ep = server.endpoint.clone();
    let s3 = s3_client(&ep, "us-east-1", ACCESS_KEY, SECRET_KEY);
    let lambda = lambda_client(&ep, "us-east-1", ACCESS_KEY, SECRET_KEY);
    s3.create_bucket().bucket("bucket-a").send().await?;
    s3.create_bucket().bucket("bucket-b").send().await?;
    let role = role(&ep, "s3-copy-role").await?;
    let zip = bootstrap_zip(&example_binary("s3-copy")?)?;
    lambda
        .create_function()
        .function_name("s3-copy")
        .runtime(Runtime::Providedal2023)
        .handler("bootstrap")
        .role(&role)
        .timeout(30)
        .code(FunctionCode::builder().zip_file(Blob::new(zip)).build())
        .environment(
            aws_sdk_lambda::types::Environment::builder()
                .variables("TARGET_BUCKET", "bucket-b")
                .build(),
        )
        .send()
        .await?;
    lambda
        .add_permission()
        .function_name("s3-copy")
        .statement_id("s3")
        .action("lambda:InvokeFunction")
        .principal("s3.amazonaws.com")
        .source_arn("arn:aws:s3:::bucket-a")
        .send()
        .await?;
    s3.put_bucket_notification_configuration()
        .bucket("bucket-a")
        .notification_configuration(
            aws_sdk_s3::types::NotificationConfiguration::builder()
                .lambda_function_configurations(
                    aws_sdk_s3::types::LambdaFunctionConfiguration::builder()
                        .lambda_function_arn("arn:aws:lambda:us-east-1:000000000000:function:s3-copy")
                        .events(aws_sdk_s3::types::Event::from("s3:ObjectCreated:*"))
                        .build()?,
                )
                .build(),
        )
        .send()
        .await?;
    let keys: Vec<String> = (0..20).map(|i| format!("raw/2026/item {i}+(v1).json")).collect();
    for (i, k) in keys.iter().enumerate() {
        s3.put_object()
            .bucket("bucket-a")
            .key(k)
            .body(format!("{{\"n\":{i}}}").into_bytes().into())
            .send()
            .await?;
    }
    wait_until(Duration::from_secs(60), "20 copies in bucket-b", || {
        let s3 = s3.clone();
        async move {
            let l = s3.list_objects_v2().bucket("bucket-b").send().await.ok()?;
            (l.contents().len() == 20).then_some(())
        }
    })
    .await?;
    for (i, k) in keys.iter().enumerate() {
        let got = s3.get_object().bucket("bucket-b").key(k).send().await?;
        assert_eq!(
            got.body.collect().await?.into_bytes().as_ref(),
            format!("{{\"n\":{i}}}").as_bytes()
        );
    }
    // A direct invoke of the same function with a hand-made event works too.
    let out = lambda
        .invoke()
        .function_name("s3-copy")
        .payload(Blob::new(r#"{"Records":[]}"#))
        .send()
        .await?;
    assert_eq!(out.function_error(), None);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(out.payload().map(|p| p.as_ref()).unwrap_or_default())?["copied"],
        0
    );
    // `kinesis-data logs` prints the function's log.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kinesis-data"))
        .args(["logs", "s3-copy", "--no-follow", "--data-dir"])
        .arg(dir.path())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "logs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("START RequestId:") && log.contains("REPORT RequestId:"),
        "{log}"
    );
    terminate(&mut server)?;
    Ok(())
}

fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

#[tokio::test]
async fn kill_9_leaves_no_function_process_and_the_queued_invoke_runs_again() -> R {
    let dir = tempfile::tempdir()?;
    let mut server = start(dir.path(), &[])?;
    let ep = server.endpoint.clone();
    let lambda = lambda_client(&ep, "us-east-1", ACCESS_KEY, SECRET_KEY);
    let role = role(&ep, "r").await?;
    let marks = dir.path().join("marks.txt");
    // The first attempt records its pid and hangs; later attempts finish at once.
    let code = format!(
        r#"
import os, time
def handler(event, context):
    path = {marks:?}
    first = not os.path.exists(path)
    with open(path, "a") as f:
        f.write(("hang " if first else "done ") + str(os.getpid()) + "\n")
    if first:
        time.sleep(600)
    return "ok"
"#,
        marks = marks.display().to_string()
    );
    let zip = kd_functions::code::zip_files(&[("app.py", code.as_bytes(), 0o644)])?;
    lambda
        .create_function()
        .function_name("hang")
        .runtime(Runtime::Python312)
        .handler("app.handler")
        .role(&role)
        .timeout(900)
        .code(FunctionCode::builder().zip_file(Blob::new(zip)).build())
        .send()
        .await?;
    lambda
        .invoke()
        .function_name("hang")
        .invocation_type(InvocationType::Event)
        .payload(Blob::new("{}"))
        .send()
        .await?;
    let pid: i32 = wait_until(Duration::from_secs(30), "the instance to start", || {
        let m = marks.clone();
        async move {
            let text = std::fs::read_to_string(m).ok()?;
            text.lines().next()?.strip_prefix("hang ")?.trim().parse().ok()
        }
    })
    .await?;
    assert!(pid_alive(pid));
    server.child.kill()?; // SIGKILL: the server gets no chance to stop its children
    server.child.wait()?;
    let mut server = start(dir.path(), &[])?;
    wait_until(Duration::from_secs(10), "the old instance to be gone", || async move {
        (!pid_alive(pid)).then_some(())
    })
    .await?;
    // The acknowledged async invoke was not lost: it runs again after the restart.
    wait_until(Duration::from_secs(30), "the retried invocation", || {
        let m = marks.clone();
        async move {
            let text = std::fs::read_to_string(m).ok()?;
            text.lines().any(|l| l.starts_with("done ")).then_some(())
        }
    })
    .await?;
    terminate(&mut server)?;
    Ok(())
}

#[tokio::test]
async fn kinesis_event_source_mapping_feeds_the_rust_kinesis_to_s3_function() -> R {
    use aws_sdk_lambda::types::EventSourcePosition;
    let server = kd_test_support::TestServer::start().await?;
    let ep = server.endpoint();
    let kinesis = server.kinesis();
    let s3 = server.s3();
    let lambda = server.lambda();
    kinesis
        .create_stream()
        .stream_name("clicks")
        .shard_count(2)
        .send()
        .await?;
    wait_until(Duration::from_secs(10), "stream ACTIVE", || {
        let k = kinesis.clone();
        async move {
            let d = k.describe_stream_summary().stream_name("clicks").send().await.ok()?;
            (d.stream_description_summary()?.stream_status().as_str() == "ACTIVE").then_some(())
        }
    })
    .await?;
    s3.create_bucket().bucket("batches").send().await?;
    let role = role(&ep, "esm-role").await?;
    iam_client(&ep, ACCESS_KEY, SECRET_KEY, None)
        .attach_role_policy()
        .role_name("esm-role")
        .policy_arn("arn:aws:iam::aws:policy/service-role/AWSLambdaKinesisExecutionRole")
        .send()
        .await?;
    let zip = bootstrap_zip(&example_binary("kinesis-to-s3")?)?;
    lambda
        .create_function()
        .function_name("k2s3")
        .runtime(Runtime::Providedal2023)
        .handler("bootstrap")
        .role(&role)
        .timeout(30)
        .code(FunctionCode::builder().zip_file(Blob::new(zip)).build())
        .environment(
            aws_sdk_lambda::types::Environment::builder()
                .variables("TARGET_BUCKET", "batches")
                .build(),
        )
        .send()
        .await?;
    let stream_arn = "arn:aws:kinesis:us-east-1:000000000000:stream/clicks";
    // Records written before the mapping: TRIM_HORIZON reads them too.
    for i in 0..10 {
        kinesis
            .put_record()
            .stream_name("clicks")
            .partition_key(format!("user-{i}"))
            .data(aws_sdk_kinesis::primitives::Blob::new(format!("click {i}")))
            .send()
            .await?;
    }
    let created = lambda
        .create_event_source_mapping()
        .function_name("k2s3")
        .event_source_arn(stream_arn)
        .starting_position(EventSourcePosition::TrimHorizon)
        .batch_size(7)
        .send()
        .await?;
    assert_eq!(created.state(), Some("Creating"));
    let uuid = created.uuid().unwrap_or_default().to_owned();
    for i in 10..30 {
        kinesis
            .put_record()
            .stream_name("clicks")
            .partition_key(format!("user-{i}"))
            .data(aws_sdk_kinesis::primitives::Blob::new(format!("click {i}")))
            .send()
            .await?;
    }
    let lines = wait_until(Duration::from_secs(60), "30 records in batch objects", || {
        let s3 = s3.clone();
        async move {
            let objs = crate::firehose_wire::objects(&s3, "batches").await;
            let lines: Vec<serde_json::Value> = objs
                .iter()
                .flat_map(|(_, b)| {
                    String::from_utf8_lossy(b)
                        .lines()
                        .filter_map(|l| serde_json::from_str(l).ok())
                        .collect::<Vec<_>>()
                })
                .collect();
            (lines.len() >= 30).then_some(lines)
        }
    })
    .await?;
    let mut data: Vec<String> = lines
        .iter()
        .filter_map(|l| l["data"].as_str().map(str::to_owned))
        .collect();
    data.sort_by_key(|d| d.trim_start_matches("click ").parse::<u32>().unwrap_or(0));
    let want: Vec<String> = (0..30).map(|i| format!("click {i}")).collect();
    assert_eq!(data, want, "every record exactly once");
    let got = lambda.get_event_source_mapping().uuid(&uuid).send().await?;
    assert_eq!(got.state(), Some("Enabled"));
    assert_eq!(got.batch_size(), Some(7));
    let listed = lambda.list_event_source_mappings().function_name("k2s3").send().await?;
    assert_eq!(listed.event_source_mappings().len(), 1);
    let deleted = lambda.delete_event_source_mapping().uuid(&uuid).send().await?;
    assert_eq!(deleted.state(), Some("Deleting"));
    crate::assert_aws_error!(
        lambda.get_event_source_mapping().uuid(&uuid).send().await,
        "ResourceNotFoundException",
        404
    );
    Ok(())
}
