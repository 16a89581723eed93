//! CloudFormation providers beyond the first milestone, with aws-sdk-cloudformation against
//! the in-process server: stacks made as the caller or as the stack's service role; Firehose,
//! event source mappings, API Gateway, Glue, managed and user policies and log groups made,
//! updated and deleted; bucket policies stored and enforced; custom resources answering through their
//! ResponseURL (success, update, failure, timeout).

use std::time::Duration;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::{Capability, Stack, StackStatus};
use kd_test_support::{TestServer, cloudformation_client, raw_http, s3_client, wait_until};
use serde_json::json;

use crate::assert_aws_error;

const DEADLINE: Duration = Duration::from_secs(90);

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

/// Every failure reason of the stack's events (for assertion messages).
async fn failures(cfn: &Client, stack: &str) -> String {
    let Ok(events) = cfn.describe_stack_events().stack_name(stack).send().await else {
        return String::new();
    };
    events
        .stack_events()
        .iter()
        .filter(|e| e.resource_status().is_some_and(|s| s.as_str().ends_with("FAILED")))
        .map(|e| {
            format!(
                "{}: {}",
                e.logical_resource_id().unwrap_or_default(),
                e.resource_status_reason().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn output(s: &Stack, key: &str) -> String {
    s.outputs()
        .iter()
        .find(|o| o.output_key() == Some(key))
        .and_then(|o| o.output_value())
        .unwrap_or_default()
        .to_owned()
}

/// The reason of the resource's event with `status`.
async fn reason(cfn: &Client, stack: &str, logical: &str, status: &str) -> anyhow::Result<String> {
    let events = cfn.describe_stack_events().stack_name(stack).send().await?;
    Ok(events
        .stack_events()
        .iter()
        .find(|e| e.logical_resource_id() == Some(logical) && e.resource_status().map(|s| s.as_str()) == Some(status))
        .and_then(|e| e.resource_status_reason())
        .unwrap_or_default()
        .to_owned())
}

fn trust(service: &str) -> String {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]})
    .to_string()
}

fn allow(actions: &[&str]) -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}).to_string()
}

#[tokio::test]
async fn stacks_act_as_the_caller_or_as_their_service_role() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let iam = server.iam();
    let s3 = server.s3();
    iam.create_user().user_name("deployer").send().await?;
    iam.put_user_policy()
        .user_name("deployer")
        .policy_name("cfn")
        .policy_document(allow(&["cloudformation:*"]))
        .send()
        .await?;
    let key = iam.create_access_key().user_name("deployer").send().await?;
    let key = key.access_key().ok_or_else(|| anyhow::anyhow!("no key"))?;
    let cfn = cloudformation_client(
        &server.endpoint(),
        "us-east-1",
        key.access_key_id(),
        key.secret_access_key(),
    );
    let template =
        json!({"Resources": {"Data": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "as-caller"}}}})
            .to_string();

    // The user may call CloudFormation but not s3:CreateBucket: the bucket fails as the user.
    cfn.create_stack()
        .stack_name("mine")
        .template_body(&template)
        .send()
        .await?;
    let s = settled(&cfn, "mine").await?;
    assert_eq!(s.stack_status(), Some(&StackStatus::RollbackComplete));
    let why = reason(&cfn, "mine", "Data", "CREATE_FAILED").await?;
    assert!(why.contains("AccessDenied"), "{why}");
    assert!(s3.head_bucket().bucket("as-caller").send().await.is_err());
    cfn.delete_stack().stack_name("mine").send().await?;

    // A service role: the caller must be allowed to pass it, and it must trust CloudFormation.
    let role = iam
        .create_role()
        .role_name("cfn-exec")
        .assume_role_policy_document(trust("cloudformation.amazonaws.com"))
        .send()
        .await?;
    let role_arn = role.role().map(|r| r.arn().to_owned()).unwrap_or_default();
    iam.put_role_policy()
        .role_name("cfn-exec")
        .policy_name("s3")
        .policy_document(allow(&["s3:*"]))
        .send()
        .await?;
    let lambda_role = iam
        .create_role()
        .role_name("lambda-only")
        .assume_role_policy_document(trust("lambda.amazonaws.com"))
        .send()
        .await?;
    let lambda_role_arn = lambda_role.role().map(|r| r.arn().to_owned()).unwrap_or_default();
    let msg = assert_aws_error!(
        cfn.create_stack()
            .stack_name("viarole")
            .template_body(&template)
            .role_arn(&role_arn)
            .send()
            .await,
        "AccessDenied",
        403
    );
    assert!(msg.contains("iam:PassRole"), "{msg}");
    iam.put_user_policy()
        .user_name("deployer")
        .policy_name("cfn")
        .policy_document(allow(&["cloudformation:*", "iam:PassRole"]))
        .send()
        .await?;
    let msg = assert_aws_error!(
        cfn.create_stack()
            .stack_name("viarole")
            .template_body(&template)
            .role_arn(&lambda_role_arn)
            .send()
            .await,
        "ValidationError",
        400
    );
    assert_eq!(msg, format!("Role {lambda_role_arn} is invalid or cannot be assumed"));

    cfn.create_stack()
        .stack_name("viarole")
        .template_body(&template)
        .role_arn(&role_arn)
        .send()
        .await?;
    let s = settled(&cfn, "viarole").await?;
    assert_eq!(
        s.stack_status(),
        Some(&StackStatus::CreateComplete),
        "{}",
        failures(&cfn, s.stack_id().unwrap_or_default()).await
    );
    assert_eq!(s.role_arn(), Some(role_arn.as_str()));
    s3.head_bucket().bucket("as-caller").send().await?;

    // The stored role deletes too (the user may not delete buckets).
    cfn.delete_stack().stack_name("viarole").send().await?;
    wait_until(DEADLINE, "the role's stack to be deleted", || {
        let s3 = s3.clone();
        async move { s3.head_bucket().bucket("as-caller").send().await.is_err().then_some(()) }
    })
    .await?;
    Ok(())
}

fn providers_template(interval: u32, description: &str) -> String {
    json!({
        "Resources": {
            "Events": {"Type": "AWS::Kinesis::Stream", "Properties": {"ShardCount": 1}},
            "Lake": {"Type": "AWS::S3::Bucket"},
            "DeliveryRole": {"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": "firehose.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
                "ManagedPolicyArns": [{"Ref": "ReadWrite"}]
            }},
            "ReadWrite": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
                "Description": "firehose access",
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Action": ["s3:*", "kinesis:*"], "Resource": "*"}]}
            }},
            "Delivery": {"Type": "AWS::KinesisFirehose::DeliveryStream", "Properties": {
                "DeliveryStreamType": "KinesisStreamAsSource",
                "KinesisStreamSourceConfiguration": {
                    "KinesisStreamARN": {"Fn::GetAtt": ["Events", "Arn"]},
                    "RoleARN": {"Fn::GetAtt": ["DeliveryRole", "Arn"]}
                },
                "ExtendedS3DestinationConfiguration": {
                    "BucketARN": {"Fn::GetAtt": ["Lake", "Arn"]},
                    "RoleARN": {"Fn::GetAtt": ["DeliveryRole", "Arn"]},
                    "BufferingHints": {"IntervalInSeconds": interval, "SizeInMBs": "1"},
                    "CompressionFormat": "GZIP",
                    "Prefix": "raw/",
                    "ErrorOutputPrefix": "errors/"
                }
            }},
            "FnRole": {"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
                "ManagedPolicyArns": [{"Ref": "ReadWrite"}]
            }},
            "Consumer": {"Type": "AWS::Lambda::Function", "Properties": {
                "Runtime": "python3.12", "Handler": "index.handler",
                "Role": {"Fn::GetAtt": ["FnRole", "Arn"]},
                "Code": {"ZipFile": "def handler(e, c):\n    return len(e.get('Records', []))\n"}
            }},
            "Mapping": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
                "FunctionName": {"Ref": "Consumer"},
                "EventSourceArn": {"Fn::GetAtt": ["Events", "Arn"]},
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": 10
            }},
            "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "cfn-api", "Description": description}},
            "Items": {"Type": "AWS::ApiGateway::Resource", "Properties": {
                "RestApiId": {"Ref": "Api"}, "ParentId": {"Fn::GetAtt": ["Api", "RootResourceId"]}, "PathPart": "items"
            }},
            "GetItems": {"Type": "AWS::ApiGateway::Method", "Properties": {
                "RestApiId": {"Ref": "Api"}, "ResourceId": {"Ref": "Items"}, "HttpMethod": "GET",
                "AuthorizationType": "NONE",
                "Integration": {
                    "Type": "MOCK",
                    "RequestTemplates": {"application/json": "{\"statusCode\": 200}"},
                    "IntegrationResponses": [{"StatusCode": "200", "ResponseTemplates": {"application/json": "{\"items\": []}"}}]
                },
                "MethodResponses": [{"StatusCode": "200"}]
            }},
            "Deployment": {"Type": "AWS::ApiGateway::Deployment", "DependsOn": "GetItems", "Properties": {
                "RestApiId": {"Ref": "Api"}, "StageName": "v1"
            }},
            "Prod": {"Type": "AWS::ApiGateway::Stage", "Properties": {
                "RestApiId": {"Ref": "Api"}, "DeploymentId": {"Ref": "Deployment"}, "StageName": "prod",
                "Description": description
            }},
            "Db": {"Type": "AWS::Glue::Database", "Properties": {
                "CatalogId": {"Ref": "AWS::AccountId"}, "DatabaseInput": {"Name": "cfn_db", "Description": description}
            }},
            "Tbl": {"Type": "AWS::Glue::Table", "Properties": {
                "CatalogId": {"Ref": "AWS::AccountId"}, "DatabaseName": {"Ref": "Db"},
                "TableInput": {
                    "Name": "events", "TableType": "EXTERNAL_TABLE",
                    "Parameters": {"classification": "json", "has_encrypted_data": false},
                    "StorageDescriptor": {
                        "Columns": [{"Name": "id", "Type": "string"}],
                        "Location": {"Fn::Sub": "s3://${Lake}/raw/"},
                        "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
                        "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                        "SerdeInfo": {"SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe"}
                    }
                }
            }},
            "Ops": {"Type": "AWS::IAM::User"},
            "Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": "/aws/lambda/consumer", "RetentionInDays": 7}}
        },
        "Outputs": {
            "Delivery": {"Value": {"Ref": "Delivery"}},
            "DeliveryArn": {"Value": {"Fn::GetAtt": ["Delivery", "Arn"]}},
            "Mapping": {"Value": {"Ref": "Mapping"}},
            "Api": {"Value": {"Ref": "Api"}},
            "Root": {"Value": {"Fn::GetAtt": ["Api", "RootResourceId"]}},
            "Policy": {"Value": {"Ref": "ReadWrite"}},
            "LogArn": {"Value": {"Fn::GetAtt": ["Logs", "Arn"]}},
            "Stage": {"Value": {"Ref": "Prod"}}
        }
    })
    .to_string()
}

/// `providers_template` without the `AWS::IAM::User` (we have no user provider): the user
/// policy is tested on a user made through IAM.
fn without_user(t: &str) -> anyhow::Result<String> {
    let mut v: serde_json::Value = serde_json::from_str(t)?;
    if let Some(r) = v["Resources"].as_object_mut() {
        r.remove("Ops");
        r.insert(
            "OpsPolicy".to_owned(),
            json!({"Type": "AWS::IAM::Policy", "Properties": {
                "PolicyName": "ops", "Users": ["ops"],
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Action": "glue:GetTable", "Resource": "*"}]}
            }}),
        );
    }
    Ok(v.to_string())
}

#[tokio::test]
async fn firehose_mappings_api_gateway_glue_and_policies_deploy_update_and_delete() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let cfn = server.cloudformation();
    let iam = server.iam();
    iam.create_user().user_name("ops").send().await?;
    cfn.create_stack()
        .stack_name("lake")
        .template_body(without_user(&providers_template(60, "first"))?)
        .capabilities(Capability::CapabilityIam)
        .send()
        .await?;
    let s = settled(&cfn, "lake").await?;
    assert_eq!(
        s.stack_status(),
        Some(&StackStatus::CreateComplete),
        "{}",
        failures(&cfn, s.stack_id().unwrap_or_default()).await
    );

    // Firehose: ACTIVE, from the stream to the bucket with the buffering asked for.
    let firehose = server.firehose();
    let name = output(&s, "Delivery");
    assert!(name.starts_with("lake-Delivery-"), "{name}");
    assert_eq!(
        output(&s, "DeliveryArn"),
        format!("arn:aws:firehose:us-east-1:000000000000:deliverystream/{name}")
    );
    let d = firehose
        .describe_delivery_stream()
        .delivery_stream_name(&name)
        .send()
        .await?;
    let desc = d
        .delivery_stream_description()
        .ok_or_else(|| anyhow::anyhow!("no description"))?;
    assert_eq!(desc.delivery_stream_status().as_str(), "ACTIVE");
    let dest = desc.destinations()[0]
        .extended_s3_destination_description()
        .ok_or_else(|| anyhow::anyhow!("no S3 destination"))?;
    assert_eq!(dest.prefix(), Some("raw/"));
    assert_eq!(dest.compression_format().as_str(), "GZIP");
    assert_eq!(dest.buffering_hints().and_then(|b| b.interval_in_seconds()), Some(60));

    // The mapping polls the stream for the function.
    let lambda = server.lambda();
    let m = lambda
        .get_event_source_mapping()
        .uuid(output(&s, "Mapping"))
        .send()
        .await?;
    assert_eq!(m.batch_size(), Some(10));
    assert_eq!(m.state(), Some("Enabled"));

    // The API answers at its stage (MOCK integration).
    let api = output(&s, "Api");
    let addr = server.inner().addr();
    for stage in ["v1", "prod"] {
        let (status, _, body) = raw_http(
            addr,
            "GET",
            &format!("/restapis/{api}/{stage}/_user_request_/items"),
            &[],
            b"",
        )
        .await?;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(body, br#"{"items": []}"#);
    }
    let gw = server.apigateway();
    let root = gw.get_resources().rest_api_id(&api).send().await?;
    let root_id = root
        .items()
        .iter()
        .find(|r| r.path() == Some("/"))
        .and_then(|r| r.id())
        .unwrap_or_default();
    assert_eq!(output(&s, "Root"), root_id);
    assert_eq!(output(&s, "Stage"), "prod");

    // Glue, policies and the recorded log group.
    let glue = server.glue();
    let t = glue.get_table().database_name("cfn_db").name("events").send().await?;
    let table = t.table().ok_or_else(|| anyhow::anyhow!("no table"))?;
    assert_eq!(
        table
            .parameters()
            .and_then(|p| p.get("has_encrypted_data"))
            .map(String::as_str),
        Some("false")
    );
    let policy_arn = output(&s, "Policy");
    assert!(
        policy_arn.starts_with("arn:aws:iam::000000000000:policy/lake-ReadWrite-"),
        "{policy_arn}"
    );
    let attached = iam.list_attached_role_policies().role_name(
        cfn.describe_stack_resource()
            .stack_name("lake")
            .logical_resource_id("FnRole")
            .send()
            .await?
            .stack_resource_detail()
            .and_then(|d| d.physical_resource_id())
            .unwrap_or_default(),
    );
    assert_eq!(attached.send().await?.attached_policies().len(), 1);
    iam.get_user_policy().user_name("ops").policy_name("ops").send().await?;
    assert_eq!(
        output(&s, "LogArn"),
        "arn:aws:logs:us-east-1:000000000000:log-group:/aws/lambda/consumer:*"
    );

    // An update in place: the same delivery stream and API, new settings.
    cfn.update_stack()
        .stack_name("lake")
        .template_body(without_user(&providers_template(120, "second"))?)
        .capabilities(Capability::CapabilityIam)
        .send()
        .await?;
    let s = settled(&cfn, "lake").await?;
    assert_eq!(
        s.stack_status(),
        Some(&StackStatus::UpdateComplete),
        "{}",
        failures(&cfn, s.stack_id().unwrap_or_default()).await
    );
    assert_eq!(output(&s, "Delivery"), name);
    assert_eq!(output(&s, "Api"), api);
    let d = firehose
        .describe_delivery_stream()
        .delivery_stream_name(&name)
        .send()
        .await?;
    let interval = d
        .delivery_stream_description()
        .and_then(|d| d.destinations().first())
        .and_then(|d| d.extended_s3_destination_description())
        .and_then(|d| d.buffering_hints())
        .and_then(|b| b.interval_in_seconds());
    assert_eq!(interval, Some(120));
    let a = gw.get_rest_api().rest_api_id(&api).send().await?;
    assert_eq!(a.description(), Some("second"));
    let stage = gw.get_stage().rest_api_id(&api).stage_name("prod").send().await?;
    assert_eq!(stage.description(), Some("second"));
    let db = glue.get_database().name("cfn_db").send().await?;
    assert_eq!(db.database().and_then(|d| d.description()), Some("second"));

    // Delete: everything goes.
    cfn.delete_stack().stack_name("lake").send().await?;
    let s = settled(&cfn, s.stack_id().unwrap_or_default()).await?;
    assert_eq!(
        s.stack_status(),
        Some(&StackStatus::DeleteComplete),
        "{}",
        failures(&cfn, s.stack_id().unwrap_or_default()).await
    );
    assert!(
        firehose
            .describe_delivery_stream()
            .delivery_stream_name(&name)
            .send()
            .await
            .is_err()
    );
    assert!(gw.get_rest_api().rest_api_id(&api).send().await.is_err());
    assert!(glue.get_database().name("cfn_db").send().await.is_err());
    assert!(iam.get_policy().policy_arn(&policy_arn).send().await.is_err());
    assert!(
        iam.get_user_policy()
            .user_name("ops")
            .policy_name("ops")
            .send()
            .await
            .is_err()
    );
    assert!(
        lambda
            .list_event_source_mappings()
            .send()
            .await?
            .event_source_mappings()
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn bucket_policies_are_stored_enforced_and_removed() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let cfn = server.cloudformation();
    let iam = server.iam();
    // A user with no identity policy at all: only the bucket policy can let it read.
    iam.create_user().user_name("reader").send().await?;
    let key = iam.create_access_key().user_name("reader").send().await?;
    let key = key.access_key().ok_or_else(|| anyhow::anyhow!("no key"))?;
    let reader = s3_client(
        &server.endpoint(),
        "us-east-1",
        key.access_key_id(),
        key.secret_access_key(),
    );
    let template = |with_policy: bool| {
        let mut resources = json!({"B": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "bp-data"}}});
        if with_policy {
            resources["P"] = json!({"Type": "AWS::S3::BucketPolicy", "Properties": {"Bucket": {"Ref": "B"},
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/reader"},
                     "Action": ["s3:GetObject", "s3:List*"],
                     "Resource": [{"Fn::GetAtt": ["B", "Arn"]}, {"Fn::Join": ["", [{"Fn::GetAtt": ["B", "Arn"]}, "/*"]]}]},
                    {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObjectTagging",
                     "Resource": {"Fn::Join": ["", [{"Fn::GetAtt": ["B", "Arn"]}, "/*"]]}}]}}});
        }
        json!({"Resources": resources}).to_string()
    };
    cfn.create_stack()
        .stack_name("bp")
        .template_body(template(true))
        .send()
        .await?;
    let s = settled(&cfn, "bp").await?;
    assert_eq!(s.stack_status(), Some(&StackStatus::CreateComplete), "{s:?}");
    let root = server.s3();
    root.put_object()
        .bucket("bp-data")
        .key("a.txt")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"hello"))
        .send()
        .await?;
    let stored = root.get_bucket_policy().bucket("bp-data").send().await?;
    assert!(
        stored.policy().unwrap_or_default().contains("user/reader"),
        "{stored:?}"
    );
    // The bucket policy allows the reader what no identity policy does ...
    let got = reader.get_object().bucket("bp-data").key("a.txt").send().await?;
    assert_eq!(&got.body.collect().await?.into_bytes()[..], b"hello");
    assert_eq!(
        reader
            .list_objects_v2()
            .bucket("bp-data")
            .send()
            .await?
            .contents()
            .len(),
        1
    );
    // ... and nothing more,
    assert_aws_error!(
        reader.delete_object().bucket("bp-data").key("a.txt").send().await,
        "AccessDenied",
        403
    );
    // while its Deny binds even the account's root keys.
    let tagging = aws_sdk_s3::types::Tagging::builder()
        .tag_set(aws_sdk_s3::types::Tag::builder().key("k").value("v").build()?)
        .build()?;
    assert_aws_error!(
        root.put_object_tagging()
            .bucket("bp-data")
            .key("a.txt")
            .tagging(tagging)
            .send()
            .await,
        "AccessDenied",
        403
    );
    // Removing the resource deletes the policy: the reader is refused again.
    cfn.update_stack()
        .stack_name("bp")
        .template_body(template(false))
        .send()
        .await?;
    let s = settled(&cfn, "bp").await?;
    assert_eq!(s.stack_status(), Some(&StackStatus::UpdateComplete), "{s:?}");
    assert_aws_error!(
        root.get_bucket_policy().bucket("bp-data").send().await,
        "NoSuchBucketPolicy",
        404
    );
    assert_aws_error!(
        reader.get_object().bucket("bp-data").key("a.txt").send().await,
        "AccessDenied",
        403
    );
    // A policy about another bucket is refused, as S3 refuses it.
    assert_aws_error!(
        root.put_bucket_policy()
            .bucket("bp-data")
            .policy(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::elsewhere/*"}]}"#)
            .send()
            .await,
        "MalformedPolicy",
        400
    );
    Ok(())
}

const ECHO_HANDLER: &str = r#"
import json, urllib.request

def handler(event, context):
    props = event["ResourceProperties"]
    if props.get("Silent") == "yes" and event["RequestType"] != "Delete":
        return "no answer"
    failed = props.get("Fail") == "yes" and event["RequestType"] != "Delete"
    answer = {
        "Status": "FAILED" if failed else "SUCCESS",
        "Reason": "asked to fail" if failed else "ok",
        "PhysicalResourceId": event.get("PhysicalResourceId") or "echo-" + props["Name"],
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "Data": {
            "Echo": props["Name"],
            "CountType": type(props["Count"]).__name__,
            "Nested": props["Nested"]["Flag"],
            "RequestType": event["RequestType"],
            "Old": (event.get("OldResourceProperties") or {}).get("Name", "-"),
        },
    }
    body = json.dumps(answer).encode()
    req = urllib.request.Request(event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": ""})
    urllib.request.urlopen(req).read()
    return "answered"
"#;

fn custom_template(name: &str, fail: bool, silent: bool) -> String {
    json!({
        "Resources": {
            "HandlerRole": {"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
            }},
            "Handler": {"Type": "AWS::Lambda::Function", "Properties": {
                "Runtime": "python3.12", "Handler": "index.handler", "Timeout": 30,
                "Role": {"Fn::GetAtt": ["HandlerRole", "Arn"]},
                "Code": {"ZipFile": ECHO_HANDLER}
            }},
            "Echo": {"Type": "Custom::Echo", "Properties": {
                "ServiceToken": {"Fn::GetAtt": ["Handler", "Arn"]},
                "Name": name, "Count": 3, "Nested": {"Flag": true},
                "Fail": if fail { "yes" } else { "no" },
                "Silent": if silent { "yes" } else { "no" }
            }}
        },
        "Outputs": {
            "Echo": {"Value": {"Fn::GetAtt": ["Echo", "Echo"]}},
            "CountType": {"Value": {"Fn::GetAtt": ["Echo", "CountType"]}},
            "Nested": {"Value": {"Fn::GetAtt": ["Echo", "Nested"]}},
            "RequestType": {"Value": {"Fn::GetAtt": ["Echo", "RequestType"]}},
            "Old": {"Value": {"Fn::GetAtt": ["Echo", "Old"]}},
            "Physical": {"Value": {"Ref": "Echo"}}
        }
    })
    .to_string()
}

/// A Node handler answering as CDK's provider framework does: `https.request({hostname,
/// path})`, which drops the port and assumes HTTPS (AWS's response URLs are S3 presigned
/// HTTPS URLs). The Node runtime routes such requests for response URLs to the endpoint;
/// any other HTTPS request is untouched (here: refused by a closed port).
const NODE_HTTPS_HANDLER: &str = r#"
const https = require('https');
const url = require('url');

function put(options, body) {
  return new Promise((resolve, reject) => {
    const req = https.request(options, (res) => {
      res.resume();
      if (!res.statusCode || res.statusCode >= 400) reject(new Error('status ' + res.statusCode));
      else resolve();
    });
    req.on('error', reject);
    req.write(body);
    req.end();
  });
}

exports.handler = async (event) => {
  let other = 'reached';
  try {
    await put({ hostname: '127.0.0.1', port: 1, path: '/elsewhere', method: 'PUT' }, '');
  } catch (e) {
    other = e.code || String(e);
  }
  const u = url.parse(event.ResponseURL);
  const body = JSON.stringify({
    Status: 'SUCCESS',
    Reason: 'ok',
    PhysicalResourceId: 'node-' + event.ResourceProperties.Name,
    StackId: event.StackId,
    RequestId: event.RequestId,
    LogicalResourceId: event.LogicalResourceId,
    Data: { Other: other },
  });
  await put(
    { hostname: u.hostname, path: u.path, method: 'PUT', headers: { 'content-type': '', 'content-length': Buffer.byteLength(body) } },
    body,
  );
};
"#;

#[tokio::test]
async fn node_handlers_answer_with_https_as_cdk_does() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let cfn = server.cloudformation();
    let t = json!({
        "Resources": {
            "HandlerRole": {"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
            }},
            "Handler": {"Type": "AWS::Lambda::Function", "Properties": {
                "Runtime": "nodejs20.x", "Handler": "index.handler", "Timeout": 30,
                "Role": {"Fn::GetAtt": ["HandlerRole", "Arn"]},
                "Code": {"ZipFile": NODE_HTTPS_HANDLER}
            }},
            "Thing": {"Type": "Custom::Thing", "Properties": {
                "ServiceToken": {"Fn::GetAtt": ["Handler", "Arn"]}, "Name": "n1"
            }}
        },
        "Outputs": {
            "Physical": {"Value": {"Ref": "Thing"}},
            "Other": {"Value": {"Fn::GetAtt": ["Thing", "Other"]}}
        }
    });
    cfn.create_stack()
        .stack_name("node-custom")
        .template_body(t.to_string())
        .capabilities(Capability::CapabilityIam)
        .send()
        .await?;
    let s = settled(&cfn, "node-custom").await?;
    assert_eq!(
        s.stack_status(),
        Some(&StackStatus::CreateComplete),
        "{}",
        failures(&cfn, s.stack_id().unwrap_or_default()).await
    );
    assert_eq!(output(&s, "Physical"), "node-n1");
    assert_eq!(output(&s, "Other"), "ECONNREFUSED");
    cfn.delete_stack().stack_name("node-custom").send().await?;
    let s = settled(&cfn, s.stack_id().unwrap_or_default()).await?;
    assert_eq!(s.stack_status(), Some(&StackStatus::DeleteComplete));
    Ok(())
}

#[tokio::test]
async fn custom_resources_answer_through_their_response_url() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| c.cloudformation.custom_resource_timeout_secs = 8).await?;
    let cfn = server.cloudformation();

    let custom_id = cfn
        .create_stack()
        .stack_name("custom")
        .template_body(custom_template("hello", false, false))
        .capabilities(Capability::CapabilityIam)
        .send()
        .await?
        .stack_id()
        .unwrap_or_default()
        .to_owned();
    let s = settled(&cfn, "custom").await?;
    assert_eq!(
        s.stack_status(),
        Some(&StackStatus::CreateComplete),
        "{}",
        failures(&cfn, s.stack_id().unwrap_or_default()).await
    );
    assert_eq!(output(&s, "Echo"), "hello");
    // Scalars reach the handler as strings, as CloudFormation sends them.
    assert_eq!(output(&s, "CountType"), "str");
    assert_eq!(output(&s, "Nested"), "true");
    assert_eq!(output(&s, "RequestType"), "Create");
    assert_eq!(output(&s, "Physical"), "echo-hello");

    // Update: the handler sees the old properties and keeps its physical id.
    cfn.update_stack()
        .stack_name("custom")
        .template_body(custom_template("world", false, false))
        .capabilities(Capability::CapabilityIam)
        .send()
        .await?;
    let s = settled(&cfn, "custom").await?;
    assert_eq!(
        s.stack_status(),
        Some(&StackStatus::UpdateComplete),
        "{}",
        failures(&cfn, s.stack_id().unwrap_or_default()).await
    );
    assert_eq!(output(&s, "Echo"), "world");
    assert_eq!(output(&s, "RequestType"), "Update");
    assert_eq!(output(&s, "Old"), "hello");
    assert_eq!(output(&s, "Physical"), "echo-hello");

    // A FAILED answer rolls the stack back with the handler's reason.
    cfn.create_stack()
        .stack_name("custom-fails")
        .template_body(custom_template("x", true, false))
        .capabilities(Capability::CapabilityIam)
        .send()
        .await?;
    let s = settled(&cfn, "custom-fails").await?;
    assert_eq!(s.stack_status(), Some(&StackStatus::RollbackComplete));
    let why = reason(&cfn, "custom-fails", "Echo", "CREATE_FAILED").await?;
    assert!(
        why.starts_with("Received response status [FAILED] from custom resource. Message returned: asked to fail"),
        "{why}"
    );

    // No answer within the timeout fails the resource.
    cfn.create_stack()
        .stack_name("custom-silent")
        .template_body(custom_template("y", false, true))
        .capabilities(Capability::CapabilityIam)
        .send()
        .await?;
    let s = settled(&cfn, "custom-silent").await?;
    assert_eq!(s.stack_status(), Some(&StackStatus::RollbackComplete));
    let why = reason(&cfn, "custom-silent", "Echo", "CREATE_FAILED").await?;
    assert!(
        why.starts_with("CloudFormation did not receive a response from your Custom Resource."),
        "{why}"
    );

    // A response URL nobody waits on is refused as an expired presigned URL.
    let (status, _, body) = raw_http(
        server.inner().addr(),
        "PUT",
        "/_kinesis-data/cfn-response/nope?X-Amz-Expires=60",
        &[],
        b"{}",
    )
    .await?;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("AccessDenied"));

    // Delete: the handler gets its Delete and answers; the stack goes.
    cfn.delete_stack().stack_name(&custom_id).send().await?;
    let s = settled(&cfn, &custom_id).await?;
    assert_eq!(
        s.stack_status(),
        Some(&StackStatus::DeleteComplete),
        "{}",
        failures(&cfn, s.stack_id().unwrap_or_default()).await
    );
    Ok(())
}

/// `cdk bootstrap`'s ECR repository and (with `--bootstrap-customer-key`) KMS key and alias
/// are recorded without a service: their `Ref` and `Fn::GetAtt` values are AWS's.
#[tokio::test]
async fn ecr_repositories_and_kms_keys_are_recorded_with_their_attributes() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let cfn = server.cloudformation();
    let template = |alias: &str| {
        json!({"Resources": {
            "Repo": {"Type": "AWS::ECR::Repository", "Properties": {"ImageTagMutability": "IMMUTABLE"}},
            "Named": {"Type": "AWS::ECR::Repository", "Properties": {"RepositoryName": "cdk-assets/images"}},
            "Key": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": {"Version": "2012-10-17", "Statement": []}}},
            "Alias": {"Type": "AWS::KMS::Alias", "Properties": {"AliasName": alias, "TargetKeyId": {"Ref": "Key"}}}},
         "Outputs": {
            "RepoName": {"Value": {"Ref": "Repo"}},
            "RepoArn": {"Value": {"Fn::GetAtt": ["Named", "Arn"]}},
            "RepoUri": {"Value": {"Fn::GetAtt": ["Named", "RepositoryUri"]}},
            "KeyRef": {"Value": {"Ref": "Key"}},
            "KeyArn": {"Value": {"Fn::GetAtt": ["Key", "Arn"]}},
            "KeyId": {"Value": {"Fn::GetAtt": ["Key", "KeyId"]}},
            "AliasName": {"Value": {"Ref": "Alias"}}}})
        .to_string()
    };
    cfn.create_stack()
        .stack_name("rec")
        .template_body(template("alias/one"))
        .send()
        .await?;
    let s = settled(&cfn, "rec").await?;
    assert_eq!(
        s.stack_status(),
        Some(&StackStatus::CreateComplete),
        "{}",
        failures(&cfn, "rec").await
    );
    let repo = output(&s, "RepoName");
    assert!(repo.starts_with("rec-repo-"), "{repo}");
    assert_eq!(repo, repo.to_ascii_lowercase());
    assert_eq!(
        output(&s, "RepoArn"),
        "arn:aws:ecr:us-east-1:000000000000:repository/cdk-assets/images"
    );
    assert_eq!(
        output(&s, "RepoUri"),
        "000000000000.dkr.ecr.us-east-1.amazonaws.com/cdk-assets/images"
    );
    let key = output(&s, "KeyRef");
    assert_eq!(key.len(), 36, "{key}");
    assert_eq!(output(&s, "KeyId"), key);
    assert_eq!(
        output(&s, "KeyArn"),
        format!("arn:aws:kms:us-east-1:000000000000:key/{key}")
    );
    assert_eq!(output(&s, "AliasName"), "alias/one");

    // A new alias name replaces the alias; the key keeps its id.
    cfn.update_stack()
        .stack_name("rec")
        .template_body(template("alias/two"))
        .send()
        .await?;
    let s = settled(&cfn, "rec").await?;
    assert_eq!(s.stack_status(), Some(&StackStatus::UpdateComplete));
    assert_eq!(output(&s, "AliasName"), "alias/two");
    assert_eq!(output(&s, "KeyRef"), key);

    // A bad alias fails the resource with the service's rule.
    cfn.create_stack()
        .stack_name("rec-bad")
        .template_body(template("alias/aws/mine"))
        .send()
        .await?;
    let s = settled(&cfn, "rec-bad").await?;
    assert_eq!(s.stack_status(), Some(&StackStatus::RollbackComplete));
    assert!(
        reason(&cfn, "rec-bad", "Alias", "CREATE_FAILED")
            .await?
            .contains("alias/aws/"),
        "{}",
        failures(&cfn, "rec-bad").await
    );

    cfn.delete_stack().stack_name("rec").send().await?;
    let gone = wait_until(DEADLINE, "rec deleted", || {
        let cfn = cfn.clone();
        async move {
            match cfn.describe_stacks().stack_name("rec").send().await {
                Err(_) => Some(()),
                Ok(_) => None,
            }
        }
    })
    .await;
    gone?;
    Ok(())
}

fn workgroup_template(description: &str, cutoff: Option<&str>) -> String {
    let mut config = json!({
        "EnforceWorkGroupConfiguration": true,
        "PublishCloudWatchMetricsEnabled": "true",
        "RequesterPaysEnabled": false,
        "ResultConfiguration": {"OutputLocation": {"Fn::Sub": "s3://${Results}/enforced/"}},
        "EngineVersion": {"SelectedEngineVersion": "AUTO"}
    });
    if let Some(c) = cutoff {
        config["BytesScannedCutoffPerQuery"] = json!(c);
    }
    json!({
        "Resources": {
            "Results": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "wg-results"}},
            "Wg": {"Type": "AWS::Athena::WorkGroup", "Properties": {
                "Name": "cfn-wg",
                "Description": description,
                "State": "ENABLED",
                "RecursiveDeleteOption": true,
                "Tags": [{"Key": "team", "Value": "data"}],
                "WorkGroupConfiguration": config
            }}
        },
        "Outputs": {
            "Name": {"Value": {"Ref": "Wg"}},
            "Created": {"Value": {"Fn::GetAtt": ["Wg", "CreationTime"]}},
            "Engine": {"Value": {"Fn::GetAtt": ["Wg", "WorkGroupConfiguration.EngineVersion.EffectiveEngineVersion"]}}
        }
    })
    .to_string()
}

#[tokio::test]
async fn athena_workgroup_enforces_its_location_updates_and_deletes() -> anyhow::Result<()> {
    use aws_sdk_athena::types::{QueryExecutionState, ResultConfiguration};

    let server = TestServer::start().await?;
    let cfn = server.cloudformation();
    cfn.create_stack()
        .stack_name("wg")
        .template_body(workgroup_template("first", Some("20000000")))
        .send()
        .await?;
    let s = settled(&cfn, "wg").await?;
    assert_eq!(
        s.stack_status(),
        Some(&StackStatus::CreateComplete),
        "{}",
        failures(&cfn, s.stack_id().unwrap_or_default()).await
    );
    assert_eq!(output(&s, "Name"), "cfn-wg");
    assert_eq!(output(&s, "Engine"), "Athena engine version 3");
    assert!(
        output(&s, "Created").parse::<i64>().is_ok_and(|t| t > 1_600_000_000),
        "{}",
        output(&s, "Created")
    );

    let athena = server.athena();
    let got = athena.get_work_group().work_group("cfn-wg").send().await?;
    let c = got
        .work_group()
        .and_then(|w| w.configuration())
        .ok_or_else(|| anyhow::anyhow!("no configuration"))?;
    assert_eq!(c.bytes_scanned_cutoff_per_query(), Some(20_000_000));
    assert_eq!(c.publish_cloud_watch_metrics_enabled(), Some(true));
    let tags = athena
        .list_tags_for_resource()
        .resource_arn("arn:aws:athena:us-east-1:000000000000:workgroup/cfn-wg")
        .send()
        .await?;
    assert_eq!(tags.tags().first().and_then(|t| t.key()), Some("team"));

    // A query asking for another location: the workgroup's enforced one wins.
    let s3 = server.s3();
    s3.create_bucket().bucket("elsewhere").send().await?;
    let id = athena
        .start_query_execution()
        .query_string("SELECT 42 AS answer")
        .work_group("cfn-wg")
        .result_configuration(
            ResultConfiguration::builder()
                .output_location("s3://elsewhere/q/")
                .build(),
        )
        .send()
        .await?
        .query_execution_id()
        .unwrap_or_default()
        .to_owned();
    let state = wait_until(DEADLINE, "the query to end", || {
        let (athena, id) = (athena.clone(), id.clone());
        async move {
            let q = athena.get_query_execution().query_execution_id(&id).send().await.ok()?;
            let state = q.query_execution()?.status()?.state()?.clone();
            matches!(
                state,
                QueryExecutionState::Succeeded | QueryExecutionState::Failed | QueryExecutionState::Cancelled
            )
            .then_some(state)
        }
    })
    .await?;
    assert_eq!(state, QueryExecutionState::Succeeded);
    let body = s3
        .get_object()
        .bucket("wg-results")
        .key(format!("enforced/{id}.csv"))
        .send()
        .await?
        .body
        .collect()
        .await?
        .into_bytes();
    assert_eq!(&body[..], b"\"answer\"\n\"42\"\n");
    let elsewhere = s3.list_objects_v2().bucket("elsewhere").send().await?;
    assert!(elsewhere.contents().is_empty(), "nothing under the request's location");

    // An update in place: new description, the cutoff dropped.
    cfn.update_stack()
        .stack_name("wg")
        .template_body(workgroup_template("second", None))
        .send()
        .await?;
    let s = settled(&cfn, "wg").await?;
    assert_eq!(
        s.stack_status(),
        Some(&StackStatus::UpdateComplete),
        "{}",
        failures(&cfn, s.stack_id().unwrap_or_default()).await
    );
    let got = athena.get_work_group().work_group("cfn-wg").send().await?;
    let w = got.work_group().ok_or_else(|| anyhow::anyhow!("no workgroup"))?;
    assert_eq!(w.description(), Some("second"));
    assert_eq!(w.configuration().and_then(|c| c.bytes_scanned_cutoff_per_query()), None);

    // Delete: the workgroup (which ran a query: RecursiveDeleteOption) goes.
    s3.delete_object()
        .bucket("wg-results")
        .key(format!("enforced/{id}.csv"))
        .send()
        .await?;
    s3.delete_object()
        .bucket("wg-results")
        .key(format!("enforced/{id}.csv.metadata"))
        .send()
        .await?;
    cfn.delete_stack().stack_name("wg").send().await?;
    let s = settled(&cfn, s.stack_id().unwrap_or_default()).await?;
    assert_eq!(
        s.stack_status(),
        Some(&StackStatus::DeleteComplete),
        "{}",
        failures(&cfn, s.stack_id().unwrap_or_default()).await
    );
    let msg = assert_aws_error!(
        athena.get_work_group().work_group("cfn-wg").send().await,
        "InvalidRequestException",
        400
    );
    assert_eq!(msg, "WorkGroup cfn-wg is not found.");
    server.stop().await
}
