//! `aws cloudformation deploy` (the AWS CLI itself, v1 or v2, as CI installs it) against the
//! in-process server: a YAML template with a Kinesis stream, a bucket, a role and an inline
//! Python function subscribed to the stream is deployed through change sets (the CLI's
//! CreateChangeSet → DescribeChangeSet → ExecuteChangeSet → DescribeStacks path, and
//! GetTemplateSummary on updates), driven through the AWS APIs (a record put into the stream
//! is written to the bucket by the function), deployed again with a change (new parameter
//! values: the stream is resharded, the function's environment updated) and with none
//! (`No changes to deploy`, exit 0 with `--no-fail-on-empty-changeset`, 255 without), then
//! removed with `delete-stack` and `wait stack-delete-complete`.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use kd_test_support::{TestServer, wait_until};

type R = anyhow::Result<()>;

const DEADLINE: Duration = Duration::from_secs(60);

const TEMPLATE: &str = r#"AWSTemplateFormatVersion: '2010-09-09'
Description: aws cloudformation deploy end to end
Parameters:
  Shards:
    Type: Number
    Default: 1
  Greeting:
    Type: String
Resources:
  Stream:
    Type: AWS::Kinesis::Stream
    Properties:
      ShardCount: !Ref Shards
  Bucket:
    Type: AWS::S3::Bucket
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Version: '2012-10-17'
        Statement:
          - Effect: Allow
            Principal: {Service: lambda.amazonaws.com}
            Action: sts:AssumeRole
      Policies:
        - PolicyName: flow
          PolicyDocument:
            Version: '2012-10-17'
            Statement:
              - Effect: Allow
                Action: ['s3:PutObject', 's3:GetObject']
                Resource: !Sub '${Bucket.Arn}/*'
              - Effect: Allow
                Action: ['kinesis:GetRecords', 'kinesis:GetShardIterator', 'kinesis:DescribeStream', 'kinesis:DescribeStreamSummary', 'kinesis:ListShards', 'kinesis:ListStreams', 'kinesis:SubscribeToShard']
                Resource: !GetAtt Stream.Arn
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      Role: !GetAtt Role.Arn
      Environment:
        Variables:
          BUCKET: !Ref Bucket
          GREETING: !Ref Greeting
      Code:
        ZipFile: |
          import base64, os, boto3
          s3 = boto3.client("s3")
          def handler(event, context):
              for r in event.get("Records", []):
                  name = base64.b64decode(r["kinesis"]["data"]).decode()
                  body = os.environ["GREETING"] + " " + name
                  s3.put_object(Bucket=os.environ["BUCKET"], Key="out/" + name, Body=body.encode())
              return {"count": len(event.get("Records", []))}
  Mapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      FunctionName: !Ref Fn
      EventSourceArn: !GetAtt Stream.Arn
      StartingPosition: TRIM_HORIZON
      BatchSize: 10
Outputs:
  StreamName:
    Value: !Ref Stream
  BucketName:
    Value: !Ref Bucket
  FunctionName:
    Value: !Ref Fn
"#;

/// `aws --endpoint-url … ARGS` with the test keys; the CLI must be installed (CI installs it).
async fn aws(server: &TestServer, args: &[&str]) -> anyhow::Result<Output> {
    let mut cmd = tokio::process::Command::new("aws");
    cmd.arg("--endpoint-url")
        .arg(server.endpoint())
        .args(args)
        .env("AWS_ACCESS_KEY_ID", kd_test_support::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", kd_test_support::SECRET_KEY)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_PAGER", "")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await?
        .map_err(|e| anyhow::anyhow!("cannot run the AWS CLI (`aws`; `pip install awscli`): {e}"))?;
    Ok(out)
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn deploy(server: &TestServer, template: &Path, extra: &[&str]) -> anyhow::Result<Output> {
    let file = template.to_string_lossy().into_owned();
    let mut args = vec![
        "cloudformation",
        "deploy",
        "--template-file",
        &file,
        "--stack-name",
        "cli-stack",
        "--capabilities",
        "CAPABILITY_IAM",
    ];
    args.extend_from_slice(extra);
    aws(server, &args).await
}

/// The stack's outputs.
async fn output(cfn: &aws_sdk_cloudformation::Client, key: &str) -> anyhow::Result<String> {
    let out = cfn.describe_stacks().stack_name("cli-stack").send().await?;
    let stack = out.stacks().first().ok_or_else(|| anyhow::anyhow!("no stack"))?;
    stack
        .outputs()
        .iter()
        .find(|o| o.output_key() == Some(key))
        .and_then(|o| o.output_value())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no output {key}"))
}

/// Waits for the object `key` of `bucket` and returns its text.
async fn object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, want: &str) -> anyhow::Result<String> {
    wait_until(DEADLINE, &format!("s3://{bucket}/{key} to read {want:?}"), || async {
        let got = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
        let text = String::from_utf8(got.body.collect().await.ok()?.into_bytes().to_vec()).ok()?;
        (text == want).then_some(text)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_cloudformation_deploy_updates_and_deletes_a_stack() -> R {
    let server = TestServer::start().await?;
    let dir = tempfile::tempdir()?;
    let template = dir.path().join("stack.yaml");
    std::fs::write(&template, TEMPLATE)?;
    let cfn = server.cloudformation();
    let s3 = server.s3();
    let kinesis = server.kinesis();

    // Create: the CLI makes a CREATE change set, waits for it, executes it and waits.
    let out = deploy(&server, &template, &["--parameter-overrides", "Greeting=hello"]).await?;
    assert!(out.status.success(), "create: {}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Successfully created/updated stack - cli-stack"),
        "{}",
        show(&out)
    );
    let described = cfn.describe_stacks().stack_name("cli-stack").send().await?;
    let stack = described.stacks().first().ok_or_else(|| anyhow::anyhow!("no stack"))?;
    assert_eq!(stack.stack_status().map(|s| s.as_str()), Some("CREATE_COMPLETE"));
    let stream = output(&cfn, "StreamName").await?;
    let bucket = output(&cfn, "BucketName").await?;
    let function = output(&cfn, "FunctionName").await?;

    // The data flow: stream → event source mapping → function → bucket.
    kinesis
        .put_record()
        .stream_name(&stream)
        .partition_key("k")
        .data(Blob::new(b"alpha".to_vec()))
        .send()
        .await?;
    object(&s3, &bucket, "out/alpha", "hello alpha").await?;
    let shards = kinesis.list_shards().stream_name(&stream).send().await?;
    assert_eq!(shards.shards().len(), 1);

    // GetTemplateSummary, as the CLI reads it for the update.
    let summary = cfn.get_template_summary().stack_name("cli-stack").send().await?;
    let keys: Vec<&str> = summary.parameters().iter().filter_map(|p| p.parameter_key()).collect();
    assert_eq!(keys, ["Greeting", "Shards"]);
    assert_eq!(
        summary.capabilities().first().map(|c| c.as_str()),
        Some("CAPABILITY_IAM")
    );
    assert_eq!(summary.version(), Some("2010-09-09"));
    assert_eq!(summary.description(), Some("aws cloudformation deploy end to end"));
    assert!(
        summary
            .resource_types()
            .iter()
            .any(|t| t == "AWS::Lambda::EventSourceMapping"),
        "{:?}",
        summary.resource_types()
    );

    // Update through an UPDATE change set: resharded, the function's environment changed.
    let out = deploy(
        &server,
        &template,
        &["--parameter-overrides", "Greeting=hi", "Shards=2"],
    )
    .await?;
    assert!(out.status.success(), "update: {}", show(&out));
    let described = cfn.describe_stacks().stack_name("cli-stack").send().await?;
    let stack = described.stacks().first().ok_or_else(|| anyhow::anyhow!("no stack"))?;
    assert_eq!(stack.stack_status().map(|s| s.as_str()), Some("UPDATE_COMPLETE"));
    let open = kinesis.list_shards().stream_name(&stream).send().await?;
    let open = open
        .shards()
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_none()
        })
        .count();
    assert_eq!(open, 2, "the stream was not resharded");
    kinesis
        .put_record()
        .stream_name(&stream)
        .partition_key("k2")
        .data(Blob::new(b"beta".to_vec()))
        .send()
        .await?;
    object(&s3, &bucket, "out/beta", "hi beta").await?;

    // No change: the CLI's empty change set; exit 0 only with --no-fail-on-empty-changeset.
    let out = deploy(&server, &template, &["--no-fail-on-empty-changeset"]).await?;
    assert!(out.status.success(), "empty change set: {}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("No changes to deploy. Stack cli-stack is up to date"),
        "{}",
        show(&out)
    );
    // The CLI names its change sets after the current second and leaves the empty one
    // (FAILED) behind, so a second deploy within the same second would collide with it, on
    // AWS too: remove it first, as a user re-running deploy in a loop would have to.
    let sets = cfn.list_change_sets().stack_name("cli-stack").send().await?;
    for cs in sets.summaries() {
        if cs.status() == Some(&aws_sdk_cloudformation::types::ChangeSetStatus::Failed) {
            cfn.delete_change_set()
                .stack_name("cli-stack")
                .change_set_name(cs.change_set_id().unwrap_or_default())
                .send()
                .await?;
        }
    }
    let out = deploy(&server, &template, &[]).await?;
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No changes to deploy"),
        "{}",
        show(&out)
    );
    // The parameters kept their previous values (UsePreviousValue from the summary).
    let described = cfn.describe_stacks().stack_name("cli-stack").send().await?;
    let stack = described.stacks().first().ok_or_else(|| anyhow::anyhow!("no stack"))?;
    let greeting = stack
        .parameters()
        .iter()
        .find(|p| p.parameter_key() == Some("Greeting"))
        .and_then(|p| p.parameter_value());
    assert_eq!(greeting, Some("hi"));

    // Delete: the bucket must be empty first, as on AWS.
    for key in ["out/alpha", "out/beta"] {
        s3.delete_object().bucket(&bucket).key(key).send().await?;
    }
    let out = aws(
        &server,
        &["cloudformation", "delete-stack", "--stack-name", "cli-stack"],
    )
    .await?;
    assert!(out.status.success(), "delete-stack: {}", show(&out));
    let out = aws(
        &server,
        &[
            "cloudformation",
            "wait",
            "stack-delete-complete",
            "--stack-name",
            "cli-stack",
        ],
    )
    .await?;
    assert!(out.status.success(), "wait stack-delete-complete: {}", show(&out));
    assert!(
        kinesis
            .describe_stream_summary()
            .stream_name(&stream)
            .send()
            .await
            .is_err()
    );
    assert!(s3.head_bucket().bucket(&bucket).send().await.is_err());
    assert!(
        server
            .lambda()
            .get_function()
            .function_name(&function)
            .send()
            .await
            .is_err()
    );
    Ok(())
}
