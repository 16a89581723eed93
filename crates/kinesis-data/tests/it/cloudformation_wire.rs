//! CloudFormation with aws-sdk-cloudformation against the in-process server: a stack with a
//! role, a bucket notifying an inline Python function (and its permission), a second bucket
//! and a stream, created, used, described, updated and deleted; change sets; error cases.

use std::time::Duration;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::{Capability, Parameter, Stack, StackStatus};
use kd_test_support::{TestServer, wait_until};
use serde_json::json;

use crate::assert_aws_error;

const DEADLINE: Duration = Duration::from_secs(60);

/// Polls DescribeStacks until the stack's operation has ended.
async fn settled(cfn: &Client, stack: &str) -> anyhow::Result<Stack> {
    wait_until(DEADLINE, &format!("stack {stack} to settle"), || {
        let cfn = cfn.clone();
        let stack = stack.to_owned();
        async move {
            let out = cfn.describe_stacks().stack_name(stack).send().await.ok()?;
            let s = out.stacks().first()?.clone();
            let status = s.stack_status()?.as_str().to_owned();
            (!status.ends_with("_IN_PROGRESS")).then_some(s)
        }
    })
    .await
}

fn template(extra: bool, retention: u32) -> String {
    let copy = r#"
import os, boto3, urllib.parse
s3 = boto3.client("s3")
def handler(event, context):
    for r in event["Records"]:
        b = r["s3"]["bucket"]["name"]
        k = urllib.parse.unquote_plus(r["s3"]["object"]["key"])
        body = s3.get_object(Bucket=b, Key=k)["Body"].read()
        s3.put_object(Bucket=os.environ["DST"], Key=k, Body=body)
    return len(event["Records"])
"#;
    let mut t = json!({
        "Description": "seed parts 1-3 as a stack",
        "Parameters": {"SourceBucket": {"Type": "String"}},
        "Resources": {
            "CopyRole": {"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
                "Policies": [{"PolicyName": "s3", "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}}]
            }},
            "Dst": {"Type": "AWS::S3::Bucket"},
            "CopyFn": {"Type": "AWS::Lambda::Function", "Properties": {
                "Runtime": "python3.12", "Handler": "index.handler", "Timeout": 30,
                "Role": {"Fn::GetAtt": ["CopyRole", "Arn"]},
                "Environment": {"Variables": {"DST": {"Ref": "Dst"}}},
                "Code": {"ZipFile": copy}
            }},
            "S3Invoke": {"Type": "AWS::Lambda::Permission", "Properties": {
                "FunctionName": {"Ref": "CopyFn"}, "Action": "lambda:InvokeFunction",
                "Principal": "s3.amazonaws.com",
                "SourceArn": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${SourceBucket}"},
                "SourceAccount": {"Ref": "AWS::AccountId"}
            }},
            "Src": {"Type": "AWS::S3::Bucket", "DependsOn": "S3Invoke", "Properties": {
                "BucketName": {"Ref": "SourceBucket"},
                "NotificationConfiguration": {"LambdaConfigurations": [{
                    "Event": "s3:ObjectCreated:*", "Function": {"Fn::GetAtt": ["CopyFn", "Arn"]}}]}
            }},
            "Events": {"Type": "AWS::Kinesis::Stream", "Properties": {"ShardCount": 1, "RetentionPeriodHours": retention}}
        },
        "Outputs": {
            "DstName": {"Value": {"Ref": "Dst"}},
            "StreamArn": {"Value": {"Fn::GetAtt": ["Events", "Arn"]}, "Export": {"Name": "events-arn"}},
            "FnArn": {"Value": {"Fn::GetAtt": ["CopyFn", "Arn"]}, "Description": "the copy function"}
        }
    });
    if extra {
        t["Resources"]["Audit"] =
            json!({"Type": "AWS::Kinesis::Stream", "Properties": {"Name": "cfn-audit", "ShardCount": 2}});
    }
    t.to_string()
}

fn source_param() -> Parameter {
    Parameter::builder()
        .parameter_key("SourceBucket")
        .parameter_value("cfn-src")
        .build()
}

#[tokio::test]
async fn a_stack_deploys_works_updates_and_deletes() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let cfn = server.cloudformation();
    let s3 = server.s3();

    // IAM resources need the capability.
    let msg = assert_aws_error!(
        cfn.create_stack()
            .stack_name("app")
            .template_body(template(false, 24))
            .parameters(source_param())
            .send()
            .await,
        "InsufficientCapabilitiesException",
        400
    );
    assert_eq!(msg, "Requires capabilities : [CAPABILITY_IAM]");

    let created = cfn
        .create_stack()
        .stack_name("app")
        .template_body(template(false, 24))
        .parameters(source_param())
        .capabilities(Capability::CapabilityIam)
        .tags(
            aws_sdk_cloudformation::types::Tag::builder()
                .key("team")
                .value("data")
                .build(),
        )
        .send()
        .await?;
    let stack_id = created.stack_id().unwrap_or_default().to_owned();
    assert!(stack_id.starts_with("arn:aws:cloudformation:us-east-1:000000000000:stack/app/"));
    let stack = settled(&cfn, "app").await?;
    assert_eq!(
        stack.stack_status(),
        Some(&StackStatus::CreateComplete),
        "{:?}",
        stack.stack_status_reason()
    );
    assert_eq!(stack.description(), Some("seed parts 1-3 as a stack"));
    assert_eq!(stack.tags().len(), 1);
    assert_eq!(stack.parameters()[0].parameter_value(), Some("cfn-src"));
    let output = |s: &Stack, k: &str| {
        s.outputs()
            .iter()
            .find(|o| o.output_key() == Some(k))
            .and_then(|o| o.output_value())
            .unwrap_or_default()
            .to_owned()
    };
    let dst = output(&stack, "DstName");
    assert!(dst.starts_with("app-dst-"), "{dst}");
    assert_eq!(
        output(&stack, "StreamArn"),
        format!("arn:aws:kinesis:us-east-1:000000000000:stream/{}", {
            let r = cfn
                .describe_stack_resource()
                .stack_name("app")
                .logical_resource_id("Events")
                .send()
                .await?;
            r.stack_resource_detail()
                .and_then(|d| d.physical_resource_id())
                .unwrap_or_default()
                .to_owned()
        })
    );

    // The resources exist through their own APIs, and the notification runs the function.
    let kinesis = server.kinesis();
    let streams = kinesis.list_streams().send().await?;
    assert_eq!(streams.stream_names().len(), 1);
    let stream_name = streams.stream_names()[0].clone();
    let summary = kinesis
        .describe_stream_summary()
        .stream_name(&stream_name)
        .send()
        .await?;
    assert_eq!(
        summary.stream_description_summary().map(|s| s.retention_period_hours()),
        Some(24)
    );
    s3.put_object()
        .bucket("cfn-src")
        .key("hello.txt")
        .body(b"from a stack".to_vec().into())
        .send()
        .await?;
    wait_until(DEADLINE, "the copy in the stack's destination bucket", || {
        let s3 = s3.clone();
        let dst = dst.clone();
        async move { s3.get_object().bucket(dst).key("hello.txt").send().await.ok() }
    })
    .await?;

    // Events (newest first), resources, exports, the template.
    let events = cfn.describe_stack_events().stack_name("app").send().await?;
    let events = events.stack_events();
    assert_eq!(events[0].logical_resource_id(), Some("app"));
    assert_eq!(events[0].resource_status().map(|s| s.as_str()), Some("CREATE_COMPLETE"));
    let last = events.last().expect("events");
    assert_eq!(last.resource_status_reason(), Some("User Initiated"));
    assert!(events.iter().any(|e| e.logical_resource_id() == Some("CopyFn")
        && e.resource_status().map(|s| s.as_str()) == Some("CREATE_COMPLETE")
        && e.physical_resource_id().is_some_and(|p| p.starts_with("app-CopyFn-"))));
    let resources = cfn.describe_stack_resources().stack_name("app").send().await?;
    assert_eq!(resources.stack_resources().len(), 6);
    let summaries = cfn.list_stack_resources().stack_name(&stack_id).send().await?;
    let types: Vec<&str> = summaries
        .stack_resource_summaries()
        .iter()
        .filter_map(|r| r.resource_type())
        .collect();
    assert!(types.contains(&"AWS::Lambda::Permission"), "{types:?}");
    let exports = cfn.list_exports().send().await?;
    assert_eq!(exports.exports()[0].name(), Some("events-arn"));
    assert_eq!(exports.exports()[0].exporting_stack_id(), Some(stack_id.as_str()));
    let body = cfn.get_template().stack_name("app").send().await?;
    assert_eq!(body.template_body(), Some(template(false, 24).as_str()));

    // No change: refused. A changed property and a new resource: updated.
    let msg = assert_aws_error!(
        cfn.update_stack()
            .stack_name("app")
            .use_previous_template(true)
            .parameters(
                Parameter::builder()
                    .parameter_key("SourceBucket")
                    .use_previous_value(true)
                    .build()
            )
            .capabilities(Capability::CapabilityIam)
            .send()
            .await,
        "ValidationError",
        400
    );
    assert_eq!(msg, "No updates are to be performed.");
    cfn.update_stack()
        .stack_name("app")
        .template_body(template(true, 48))
        .parameters(
            Parameter::builder()
                .parameter_key("SourceBucket")
                .use_previous_value(true)
                .build(),
        )
        .capabilities(Capability::CapabilityIam)
        .send()
        .await?;
    let stack = settled(&cfn, "app").await?;
    assert_eq!(
        stack.stack_status(),
        Some(&StackStatus::UpdateComplete),
        "{:?}",
        stack.stack_status_reason()
    );
    let summary = kinesis
        .describe_stream_summary()
        .stream_name(&stream_name)
        .send()
        .await?;
    assert_eq!(
        summary.stream_description_summary().map(|s| s.retention_period_hours()),
        Some(48)
    );
    let audit = kinesis
        .describe_stream_summary()
        .stream_name("cfn-audit")
        .send()
        .await?;
    assert_eq!(
        audit.stream_description_summary().map(|s| s.open_shard_count()),
        Some(2)
    );
    let events = cfn.describe_stack_events().stack_name("app").send().await?;
    assert!(
        events
            .stack_events()
            .iter()
            .any(|e| e.logical_resource_id() == Some("Events")
                && e.resource_status().map(|s| s.as_str()) == Some("UPDATE_COMPLETE"))
    );

    // Buckets must be emptied before their stack is deleted, as on AWS.
    for (bucket, key) in [("cfn-src", "hello.txt"), (dst.as_str(), "hello.txt")] {
        s3.delete_object().bucket(bucket).key(key).send().await?;
    }
    cfn.delete_stack().stack_name("app").send().await?;
    let gone = settled(&cfn, &stack_id).await?;
    assert_eq!(
        gone.stack_status(),
        Some(&StackStatus::DeleteComplete),
        "{:?}",
        gone.stack_status_reason()
    );
    assert!(kinesis.list_streams().send().await?.stream_names().is_empty());
    assert!(s3.head_bucket().bucket("cfn-src").send().await.is_err());
    assert!(server.lambda().list_functions().send().await?.functions().is_empty());
    let msg = assert_aws_error!(
        cfn.describe_stacks().stack_name("app").send().await,
        "ValidationError",
        400
    );
    assert_eq!(msg, "Stack with id app does not exist");
    let listed = cfn
        .list_stacks()
        .stack_status_filter(StackStatus::DeleteComplete)
        .send()
        .await?;
    assert_eq!(listed.stack_summaries().len(), 1);
    Ok(())
}

#[tokio::test]
async fn errors_template_urls_and_change_sets() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let cfn = server.cloudformation();
    let s3 = server.s3();
    let small = json!({
        "Parameters": {"Shards": {"Type": "Number", "Default": "1"}},
        "Resources": {"S": {"Type": "AWS::Kinesis::Stream", "Properties": {"ShardCount": {"Ref": "Shards"}}}}
    })
    .to_string();

    let msg = assert_aws_error!(
        cfn.create_stack().stack_name("bad").template_body("{").send().await,
        "ValidationError",
        400
    );
    assert!(msg.starts_with("Template format error: JSON not well-formed."), "{msg}");
    let needs =
        json!({"Parameters": {"Need": {"Type": "String"}}, "Resources": {"S": {"Type": "AWS::Kinesis::Stream"}}});
    let msg = assert_aws_error!(
        cfn.create_stack()
            .stack_name("p")
            .template_body(needs.to_string())
            .send()
            .await,
        "ValidationError",
        400
    );
    assert_eq!(msg, "Parameters: [Need] must have values");

    // A template read from our own S3, by URL.
    s3.create_bucket().bucket("templates").send().await?;
    s3.put_object()
        .bucket("templates")
        .key("small.json")
        .body(small.clone().into_bytes().into())
        .send()
        .await?;
    let url = format!("{}/templates/small.json", server.endpoint());
    let validated = cfn.validate_template().template_url(&url).send().await?;
    assert_eq!(validated.parameters()[0].parameter_key(), Some("Shards"));
    assert_eq!(validated.parameters()[0].default_value(), Some("1"));
    let msg = assert_aws_error!(
        cfn.validate_template()
            .template_url(format!("{}/templates/missing.json", server.endpoint()))
            .send()
            .await,
        "ValidationError",
        400
    );
    assert_eq!(msg, "S3 error: The specified key does not exist.");
    cfn.create_stack().stack_name("one").template_url(&url).send().await?;
    assert_eq!(
        settled(&cfn, "one").await?.stack_status(),
        Some(&StackStatus::CreateComplete)
    );
    assert_aws_error!(
        cfn.create_stack().stack_name("one").template_body(&small).send().await,
        "AlreadyExistsException",
        400
    );

    // An unsupported type fails the stack and rolls it back.
    let queue = json!({"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}).to_string();
    cfn.create_stack().stack_name("q").template_body(queue).send().await?;
    let q = settled(&cfn, "q").await?;
    assert_eq!(q.stack_status(), Some(&StackStatus::RollbackComplete));
    let events = cfn.describe_stack_events().stack_name("q").send().await?;
    assert!(
        events
            .stack_events()
            .iter()
            .any(|e| e.resource_status_reason()
                == Some("Resource type AWS::SQS::Queue is not supported by kinesis-data"))
    );

    // `aws cloudformation deploy`'s path: a CREATE change set, described, executed.
    let cs = cfn
        .create_change_set()
        .stack_name("deployed")
        .change_set_name("c1")
        .change_set_type(aws_sdk_cloudformation::types::ChangeSetType::Create)
        .template_body(&small)
        .send()
        .await?;
    let cs_id = cs.id().unwrap_or_default().to_owned();
    let stack = cfn.describe_stacks().stack_name("deployed").send().await?;
    assert_eq!(stack.stacks()[0].stack_status(), Some(&StackStatus::ReviewInProgress));
    let described = cfn
        .describe_change_set()
        .change_set_name("c1")
        .stack_name("deployed")
        .send()
        .await?;
    assert_eq!(described.status().map(|s| s.as_str()), Some("CREATE_COMPLETE"));
    assert_eq!(described.execution_status().map(|s| s.as_str()), Some("AVAILABLE"));
    let change = described.changes()[0].resource_change().expect("resource change");
    assert_eq!(change.action().map(|a| a.as_str()), Some("Add"));
    assert_eq!(change.logical_resource_id(), Some("S"));
    cfn.execute_change_set().change_set_name(&cs_id).send().await?;
    assert_eq!(
        settled(&cfn, "deployed").await?.stack_status(),
        Some(&StackStatus::CreateComplete)
    );
    // An UPDATE change set: same template → FAILED with the "no changes" reason;
    // new parameter → Modify, executed.
    cfn.create_change_set()
        .stack_name("deployed")
        .change_set_name("same")
        .template_body(&small)
        .send()
        .await?;
    let same = cfn
        .describe_change_set()
        .change_set_name("same")
        .stack_name("deployed")
        .send()
        .await?;
    assert_eq!(same.status().map(|s| s.as_str()), Some("FAILED"));
    assert!(
        same.status_reason()
            .is_some_and(|r| r.starts_with("The submitted information didn't contain changes."))
    );
    cfn.delete_change_set()
        .change_set_name("same")
        .stack_name("deployed")
        .send()
        .await?;
    cfn.create_change_set()
        .stack_name("deployed")
        .change_set_name("two")
        .template_body(&small)
        .parameters(
            Parameter::builder()
                .parameter_key("Shards")
                .parameter_value("2")
                .build(),
        )
        .send()
        .await?;
    let listed = cfn.list_change_sets().stack_name("deployed").send().await?;
    assert_eq!(listed.summaries().len(), 2);
    cfn.execute_change_set()
        .change_set_name("two")
        .stack_name("deployed")
        .send()
        .await?;
    assert_eq!(
        settled(&cfn, "deployed").await?.stack_status(),
        Some(&StackStatus::UpdateComplete)
    );
    let physical = cfn
        .describe_stack_resource()
        .stack_name("deployed")
        .logical_resource_id("S")
        .send()
        .await?
        .stack_resource_detail()
        .and_then(|d| d.physical_resource_id())
        .unwrap_or_default()
        .to_owned();
    let summary = server
        .kinesis()
        .describe_stream_summary()
        .stream_name(physical)
        .send()
        .await?;
    assert_eq!(
        summary.stream_description_summary().map(|s| s.open_shard_count()),
        Some(2)
    );
    let msg = assert_aws_error!(
        cfn.describe_change_set()
            .change_set_name("nope")
            .stack_name("deployed")
            .send()
            .await,
        "ChangeSetNotFound",
        404
    );
    assert_eq!(msg, "ChangeSet [nope] does not exist");
    Ok(())
}
