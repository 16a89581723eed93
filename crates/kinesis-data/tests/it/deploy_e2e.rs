//! `kinesis-data deploy` and `destroy` (the built binary) against the in-process server, on a
//! hand-written CDK cloud assembly shaped as `cdk synth` writes one: a storage stack
//! exporting its bucket's name, and a compute stack depending on it whose Python function
//! (a folder asset, zipped and published to the bootstrap bucket, referenced by
//! `Code.S3Bucket` `Fn::Sub cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}` and the
//! asset hash key) imports that name; both with CDK's BootstrapVersion parameter and
//! CheckBootstrapVersion rule. Deployed on a fresh server (implicit bootstrap), used,
//! deployed again (no changes), destroyed in reverse order; and a failing single YAML
//! template, rolled back and reported with its reason.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use kd_test_support::TestServer;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::assert_aws_error;

type R = anyhow::Result<()>;

const HANDLER: &str = r#"import json, os, boto3

s3 = boto3.client("s3")

def handler(event, context):
    name = event.get("name", "world")
    body = "hello " + name
    s3.put_object(Bucket=os.environ["BUCKET"], Key="greetings/" + name + ".txt", Body=body.encode())
    return {"bucket": os.environ["BUCKET"], "greeting": body}
"#;

fn write(dir: &Path, rel: &str, text: &str) -> anyhow::Result<()> {
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(p, text)?;
    Ok(())
}

fn sha(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// CDK's per-stack boilerplate: the bootstrap version parameter and its rule.
fn cdk_stack(resources: Value, outputs: Value) -> Value {
    json!({
        "Parameters": {"BootstrapVersion": {
            "Type": "AWS::SSM::Parameter::Value<String>",
            "Default": "/cdk-bootstrap/hnb659fds/version",
            "Description": "Version of the CDK Bootstrap resources in this environment, automatically retrieved from SSM Parameter Store. [cdk:skip]"}},
        "Rules": {"CheckBootstrapVersion": {"Assertions": [{
            "Assert": {"Fn::Not": [{"Fn::Contains": [["1", "2", "3", "4", "5"], {"Ref": "BootstrapVersion"}]}]},
            "AssertDescription": "CDK bootstrap stack version 6 required. Please run 'cdk bootstrap' with a recent version of the CDK CLI."}]}},
        "Resources": resources,
        "Outputs": outputs
    })
}

/// A stack artifact and its asset manifest as `cdk synth` writes them; `files` are extra
/// file assets (id → (source path, packaging, object key)). Returns the artifacts.
fn artifacts(
    dir: &Path,
    stack: &str,
    template: &Value,
    depends_on: &[&str],
    mut files: serde_json::Map<String, Value>,
) -> anyhow::Result<Vec<(String, Value)>> {
    let text = serde_json::to_string_pretty(template)?;
    let template_hash = sha(&text);
    write(dir, &format!("{stack}.template.json"), &text)?;
    let dest = |key: String| {
        json!({"current_account-current_region": {
            "bucketName": "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}",
            "objectKey": key,
            "assumeRoleArn": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-hnb659fds-file-publishing-role-${AWS::AccountId}-${AWS::Region}"}})
    };
    files.insert(
        template_hash.clone(),
        json!({"displayName": format!("{stack} Template"),
               "source": {"path": format!("{stack}.template.json"), "packaging": "file"},
               "destinations": dest(format!("{template_hash}.json"))}),
    );
    for f in files.values_mut() {
        if f.get("destinations").is_none() {
            let key = f["key"].as_str().unwrap_or_default().to_owned();
            f["destinations"] = dest(key);
            if let Some(m) = f.as_object_mut() {
                m.remove("key");
            }
        }
    }
    write(
        dir,
        &format!("{stack}.assets.json"),
        &serde_json::to_string_pretty(&json!({"version": "36.0.0", "files": files, "dockerImages": {}}))?,
    )?;
    let mut deps: Vec<Value> = depends_on.iter().map(|d| json!(d)).collect();
    deps.push(json!(format!("{stack}.assets")));
    Ok(vec![
        (
            format!("{stack}.assets"),
            json!({"type": "cdk:asset-manifest", "properties": {
                "file": format!("{stack}.assets.json"),
                "requiresBootstrapStackVersion": 6,
                "bootstrapStackVersionSsmParameter": "/cdk-bootstrap/hnb659fds/version"}}),
        ),
        (
            stack.to_owned(),
            json!({"type": "aws:cloudformation:stack",
                "environment": "aws://unknown-account/unknown-region",
                "properties": {
                    "templateFile": format!("{stack}.template.json"),
                    "terminationProtection": false,
                    "validateOnSynth": false,
                    "assumeRoleArn": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-hnb659fds-deploy-role-${AWS::AccountId}-${AWS::Region}",
                    "cloudFormationExecutionRoleArn": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-hnb659fds-cfn-exec-role-${AWS::AccountId}-${AWS::Region}",
                    "stackTemplateAssetObjectUrl": format!("s3://cdk-hnb659fds-assets-${{AWS::AccountId}}-${{AWS::Region}}/{template_hash}.json"),
                    "requiresBootstrapStackVersion": 6,
                    "bootstrapStackVersionSsmParameter": "/cdk-bootstrap/hnb659fds/version",
                    "additionalDependencies": [format!("{stack}.assets")]},
                "dependencies": deps,
                "displayName": stack}),
        ),
    ])
}

/// Writes an assembly of `pairs` storage/compute stack pairs (`Storage{i}` exports its
/// bucket's name; `Compute{i}` depends on it, imports the name and runs the handler asset).
pub fn write_assembly(dir: &Path, pairs: usize) -> anyhow::Result<()> {
    let asset_hash = sha(HANDLER);
    write(dir, &format!("asset.{asset_hash}/index.py"), HANDLER)?;
    let mut all: Vec<(String, Value)> = Vec::new();
    for i in 0..pairs {
        let storage = format!("Storage{i}");
        let compute = format!("Compute{i}");
        let export = format!("{storage}:BucketName");
        let st = cdk_stack(
            json!({
                "Bucket": {"Type": "AWS::S3::Bucket", "UpdateReplacePolicy": "Retain", "DeletionPolicy": "Delete"},
                "CDKMetadata": {"Type": "AWS::CDK::Metadata", "Properties": {"Analytics": "v2:deflate64:H4sIAAAAAAAA"}}
            }),
            json!({"BucketName": {"Value": {"Ref": "Bucket"}, "Export": {"Name": export}}}),
        );
        all.extend(artifacts(dir, &storage, &st, &[], serde_json::Map::new())?);
        let ct = cdk_stack(
            json!({
                "HandlerServiceRole": {"Type": "AWS::IAM::Role", "Properties": {
                    "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                        "Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}]},
                    "ManagedPolicyArns": [{"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"},
                        ":iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]]}]}},
                "HandlerServiceRoleDefaultPolicy": {"Type": "AWS::IAM::Policy", "Properties": {
                    "PolicyName": "HandlerServiceRoleDefaultPolicy",
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                        "Action": ["s3:PutObject", "s3:GetObject"], "Effect": "Allow",
                        "Resource": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::",
                            {"Fn::ImportValue": export}, "/*"]]}}]},
                    "Roles": [{"Ref": "HandlerServiceRole"}]}},
                "Handler": {"Type": "AWS::Lambda::Function",
                    "DependsOn": ["HandlerServiceRoleDefaultPolicy", "HandlerServiceRole"],
                    "Properties": {
                        "Code": {"S3Bucket": {"Fn::Sub": "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}"},
                                 "S3Key": format!("{asset_hash}.zip")},
                        "Environment": {"Variables": {"BUCKET": {"Fn::ImportValue": export}}},
                        "Handler": "index.handler",
                        "Role": {"Fn::GetAtt": ["HandlerServiceRole", "Arn"]},
                        "Runtime": "python3.12",
                        "Timeout": 30},
                    "Metadata": {"aws:asset:path": format!("asset.{asset_hash}"), "aws:asset:is-bundled": false,
                                 "aws:asset:property": "Code"}}
            }),
            json!({"FunctionName": {"Value": {"Ref": "Handler"}}}),
        );
        let mut files = serde_json::Map::new();
        files.insert(
            asset_hash.clone(),
            json!({"displayName": format!("{compute}/Handler/Code"),
                   "source": {"path": format!("asset.{asset_hash}"), "packaging": "zip"},
                   "key": format!("{asset_hash}.zip")}),
        );
        all.extend(artifacts(dir, &compute, &ct, &[&storage], files)?);
    }
    let mut artifacts = serde_json::Map::new();
    for (k, v) in all {
        artifacts.insert(k, v);
    }
    artifacts.insert(
        "Tree".into(),
        json!({"type": "cdk:tree", "properties": {"file": "tree.json"}}),
    );
    write(
        dir,
        "tree.json",
        r#"{"version": "tree-0.1", "tree": {"id": "App", "path": ""}}"#,
    )?;
    write(
        dir,
        "manifest.json",
        &serde_json::to_string_pretty(&json!({"version": "36.0.0", "artifacts": artifacts}))?,
    )?;
    Ok(())
}

/// Runs the built binary with `args` against `server` (default keys, us-east-1).
pub(crate) async fn cli(server: &TestServer, args: &[&str]) -> anyhow::Result<Output> {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kinesis-data"));
    cmd.args(args)
        .arg("--endpoint-url")
        .arg(server.endpoint())
        .arg("--region")
        .arg("us-east-1")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .kill_on_drop(true);
    Ok(tokio::time::timeout(Duration::from_secs(300), cmd.output()).await??)
}

/// The command's stdout and stderr.
pub(crate) fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of the `Stack.Key = value` output line `key`.
pub(crate) fn output_value<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_publishes_assets_creates_stacks_in_order_and_destroys() -> R {
    let server = TestServer::start().await?;
    let dir = tempfile::tempdir()?;
    write_assembly(dir.path(), 1)?;
    let app = dir.path().to_string_lossy().into_owned();

    let out = cli(&server, &["deploy", &app]).await?;
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let account_region = "000000000000-us-east-1";
    assert!(
        stdout.contains("Bootstrapping environment aws://000000000000/us-east-1"),
        "{stdout}"
    );
    for made in [
        format!("bucket cdk-hnb659fds-assets-{account_region}"),
        "parameter /cdk-bootstrap/hnb659fds/version".to_owned(),
        format!("role cdk-hnb659fds-deploy-role-{account_region}"),
        format!("role cdk-hnb659fds-cfn-exec-role-{account_region}"),
        format!("role cdk-hnb659fds-file-publishing-role-{account_region}"),
        format!("role cdk-hnb659fds-lookup-role-{account_region}"),
    ] {
        assert!(stdout.contains(&made), "{made} missing from:\n{stdout}");
    }
    let asset_key = format!("{}.zip", sha(HANDLER));
    assert!(
        stdout.contains(&format!(
            "Compute0/Handler/Code: published to s3://cdk-hnb659fds-assets-{account_region}/{asset_key}"
        )),
        "{stdout}"
    );
    // Progress as `cdk deploy` prints it, the storage stack entirely before the compute one.
    let line_of = |pred: &dyn Fn(&str) -> bool| stdout.lines().position(pred);
    let bucket_done = line_of(&|l| {
        l.starts_with("Storage0 | ")
            && l.contains("| CREATE_COMPLETE ")
            && l.contains("| AWS::S3::Bucket ")
            && l.ends_with("| Bucket")
    })
    .ok_or_else(|| anyhow::anyhow!("no progress line for the bucket:\n{stdout}"))?;
    assert!(
        line_of(&|l| l.starts_with("Storage0 | 3/3 | ") && l.contains("AWS::CloudFormation::Stack")).is_some(),
        "{stdout}"
    );
    assert!(
        line_of(&|l| l.starts_with("Compute0 | 4/4 | ")
            && l.contains("| CREATE_COMPLETE ")
            && l.contains("AWS::CloudFormation::Stack"))
        .is_some(),
        "{stdout}"
    );
    let compute_start = line_of(&|l| l.starts_with("Compute0: deploying")).unwrap_or(0);
    let storage_end = line_of(&|l| l.contains("✅  Storage0")).unwrap_or(usize::MAX);
    assert!(bucket_done < compute_start && storage_end < compute_start, "{stdout}");
    assert!(stdout.contains("\nOutputs:\n"), "{stdout}");
    let bucket = output_value(&stdout, "Storage0.BucketName").to_owned();
    let function = output_value(&stdout, "Compute0.FunctionName").to_owned();
    assert!(bucket.starts_with("storage0-bucket-"), "{stdout}");
    assert!(function.starts_with("Compute0-Handler-"), "{stdout}");

    // The published asset is the handler folder, zipped.
    let s3 = server.s3();
    let zipped = s3
        .get_object()
        .bucket(format!("cdk-hnb659fds-assets-{account_region}"))
        .key(&asset_key)
        .send()
        .await?
        .body
        .collect()
        .await?
        .into_bytes();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zipped.to_vec()))?;
    let mut index = String::new();
    std::io::Read::read_to_string(&mut archive.by_name("index.py")?, &mut index)?;
    assert_eq!(index, HANDLER);

    // The function works: it runs the asset's code with the imported bucket name.
    let invoked = server
        .lambda()
        .invoke()
        .function_name(&function)
        .payload(Blob::new(br#"{"name": "cdk"}"#.to_vec()))
        .send()
        .await?;
    assert_eq!(invoked.function_error(), None, "{:?}", invoked.payload());
    let answer: Value = serde_json::from_slice(invoked.payload().map(|p| p.as_ref()).unwrap_or_default())?;
    assert_eq!(answer, json!({"bucket": bucket, "greeting": "hello cdk"}));
    let written = s3
        .get_object()
        .bucket(&bucket)
        .key("greetings/cdk.txt")
        .send()
        .await?
        .body
        .collect()
        .await?
        .into_bytes();
    assert_eq!(&written[..], b"hello cdk");

    // Deploying again changes nothing and publishes nothing.
    let out = cli(&server, &["deploy", &app]).await?;
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("✅  Storage0 (no changes)"), "{stdout}");
    assert!(stdout.contains("✅  Compute0 (no changes)"), "{stdout}");
    assert!(stdout.contains("assets: 0 published, 3 already present"), "{stdout}");
    assert!(!stdout.contains("Bootstrapping"), "{stdout}");
    assert_eq!(output_value(&stdout, "Compute0.FunctionName"), function);

    // The bucket is not empty: as on AWS, it would not be deleted. Empty it, then destroy.
    s3.delete_object()
        .bucket(&bucket)
        .key("greetings/cdk.txt")
        .send()
        .await?;
    let out = cli(&server, &["destroy", "--app", &app, "--all"]).await?;
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let compute_gone = stdout.find("✅  Compute0: destroyed");
    let storage_gone = stdout.find("✅  Storage0: destroyed");
    assert!(
        compute_gone.is_some() && storage_gone.is_some() && compute_gone < storage_gone,
        "{stdout}"
    );
    assert!(stdout.contains("| DELETE_COMPLETE"), "{stdout}");
    let cfn = server.cloudformation();
    for stack in ["Storage0", "Compute0"] {
        assert_aws_error!(
            cfn.describe_stacks().stack_name(stack).send().await,
            "ValidationError",
            400
        );
    }
    assert_aws_error!(
        server.lambda().get_function().function_name(&function).send().await,
        "ResourceNotFoundException",
        404
    );
    assert!(s3.head_bucket().bucket(&bucket).send().await.is_err());
    // Destroying what is gone is fine.
    let out = cli(&server, &["destroy", "Storage0"]).await?;
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("Storage0: does not exist"), "{stdout}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_template_rolls_back_and_exits_non_zero() -> R {
    let server = TestServer::start().await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("broken.template.yaml");
    std::fs::write(
        &path,
        "Parameters:\n  Greeting:\n    Type: String\nResources:\n  Fine:\n    Type: AWS::SSM::Parameter\n    Properties:\n      Name: /broken/fine\n      Type: String\n      Value: !Ref Greeting\n  Secret:\n    Type: AWS::SSM::Parameter\n    DependsOn: Fine\n    Properties:\n      Type: SecureString\n      Value: hidden\n",
    )?;
    let file = path.to_string_lossy().into_owned();
    let out = cli(&server, &["deploy", &file, "--parameters", "Greeting=hi"]).await?;
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("error: broken failed: ROLLBACK_COMPLETE"), "{stderr}");
    assert!(
        stderr.contains("Secret (AWS::SSM::Parameter): Type SecureString is not supported"),
        "{stderr}"
    );
    assert!(stdout.contains("broken | "), "{stdout}");
    assert!(stdout.contains("| CREATE_FAILED"), "{stdout}");
    // Rolled back: the parameter made first is gone again.
    assert_aws_error!(
        server.ssm().get_parameter().name("/broken/fine").send().await,
        "ParameterNotFound",
        400
    );
    // Fixed, the same file deploys over the rolled-back stack.
    std::fs::write(
        &path,
        "Parameters:\n  Greeting:\n    Type: String\nResources:\n  Fine:\n    Type: AWS::SSM::Parameter\n    Properties:\n      Name: /broken/fine\n      Type: String\n      Value: !Ref Greeting\nOutputs:\n  Said:\n    Value: !GetAtt Fine.Value\n",
    )?;
    let out = cli(&server, &["deploy", &file, "--parameters", "broken:Greeting=hello"]).await?;
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("the stack is ROLLBACK_COMPLETE; deleting it"),
        "{stdout}"
    );
    assert_eq!(output_value(&stdout, "broken.Said"), "hello");
    server.stop().await
}

/// `--allow-unsupported`: a type no provider supports is recorded as a placeholder with a
/// warning instead of failing the stack; without it the stack rolls back naming the type.
/// The same for every stack with the server's `[cloudformation] allow_unsupported`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_unsupported_records_placeholders_with_a_warning() -> R {
    let server = TestServer::start().await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("mixed.template.yaml");
    let template = |retention: u32| {
        format!(
            "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n    Properties:\n      MessageRetentionPeriod: {retention}\n  Param:\n    Type: AWS::SSM::Parameter\n    Properties:\n      Name: /mixed/queue\n      Type: String\n      Value: !Ref Queue\nOutputs:\n  QueueRef:\n    Value: !Ref Queue\n"
        )
    };
    std::fs::write(&path, template(60))?;
    let file = path.to_string_lossy().into_owned();
    let unsupported = "Resource type AWS::SQS::Queue is not supported by kinesis-data";

    // Without the flag: the stack fails on the type.
    let out = cli(&server, &["deploy", &file]).await?;
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains(unsupported), "{stderr}");

    // With it: a placeholder, the warning in the progress and in the event.
    let out = cli(&server, &["deploy", &file, "--allow-unsupported"]).await?;
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("| CREATE_COMPLETE") && stdout.contains("recorded as a placeholder"),
        "{stdout}"
    );
    let placeholder = output_value(&stdout, "mixed.QueueRef").to_owned();
    assert!(placeholder.starts_with("mixed-Queue-"), "{stdout}");
    // Resources depending on it get its Ref.
    let param = server.ssm().get_parameter().name("/mixed/queue").send().await?;
    assert_eq!(param.parameter().and_then(|p| p.value()), Some(placeholder.as_str()));
    let cfn = server.cloudformation();
    let events = cfn.describe_stack_events().stack_name("mixed").send().await?;
    let warning = events
        .stack_events()
        .iter()
        .find(|e| {
            e.logical_resource_id() == Some("Queue")
                && e.resource_status().map(|s| s.as_str()) == Some("CREATE_COMPLETE")
        })
        .and_then(|e| e.resource_status_reason())
        .unwrap_or_default()
        .to_owned();
    assert!(warning.starts_with(unsupported), "{warning}");

    // A change to the placeholder: updated in place (the stack keeps the setting), same id.
    std::fs::write(&path, template(120))?;
    let out = cli(&server, &["deploy", &file]).await?;
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("| UPDATE_COMPLETE"), "{stdout}");
    assert_eq!(output_value(&stdout, "mixed.QueueRef"), placeholder);

    let out = cli(&server, &["destroy", "mixed"]).await?;
    assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
    assert_aws_error!(
        server.ssm().get_parameter().name("/mixed/queue").send().await,
        "ParameterNotFound",
        400
    );
    server.stop().await?;

    // The server's setting: every stack, through the plain CloudFormation API.
    let server = TestServer::start_with(|c| c.cloudformation.allow_unsupported = true).await?;
    let cfn = server.cloudformation();
    cfn.create_stack()
        .stack_name("api")
        .template_body(template(60))
        .send()
        .await?;
    let stack = kd_test_support::wait_until(Duration::from_secs(30), "api stack to settle", || {
        let cfn = cfn.clone();
        async move {
            let out = cfn.describe_stacks().stack_name("api").send().await.ok()?;
            let status = out.stacks().first()?.stack_status()?.as_str().to_owned();
            (!status.ends_with("_IN_PROGRESS")).then_some(status)
        }
    })
    .await?;
    assert_eq!(stack, "CREATE_COMPLETE");
    server.stop().await
}

/// The deploy benchmark's fixture: `KD_DEPLOY_FIXTURE=<dir> cargo test … write_bench_fixture
/// -- --ignored` writes a six-stack assembly (three storage/compute pairs) there.
#[test]
#[ignore = "writes the benchmark fixture where KD_DEPLOY_FIXTURE says"]
fn write_bench_fixture() -> R {
    let dir = std::env::var("KD_DEPLOY_FIXTURE").map_err(|_| anyhow::anyhow!("set KD_DEPLOY_FIXTURE"))?;
    std::fs::create_dir_all(&dir)?;
    write_assembly(Path::new(&dir), 3)
}
