//! Whole templates: a trimmed CDK-synthesized stack (bootstrap version rule, SSM
//! parameter, CDK's region conditions, `Fn::Join` with `AWS::Partition`, the asset bucket as
//! `Fn::Sub`) and a hand-written YAML stack that imports its export, each prepared and
//! "deployed" level by level as the lifecycle will.

mod common;

use std::collections::BTreeMap;

use common::{ACCOUNT, deploy, physical_id};
use kd_stacks::{StaticEnvironment, Template};
use serde_json::json;

const CDK: &str = include_str!("fixtures/cdk-pipeline.template.json");
const YAML: &str = include_str!("fixtures/consumer.template.yaml");

fn bootstrapped(version: &str) -> StaticEnvironment {
    let mut env = StaticEnvironment::default();
    env.ssm_parameters
        .insert("/cdk-bootstrap/hnb659fds/version".into(), version.into());
    env
}

#[test]
fn cdk_stack_deploys_in_dependency_order() {
    let t = Template::parse(CDK).unwrap();
    assert_eq!(t.required_capability(), Some("CAPABILITY_IAM"));
    assert!(t.check_capabilities(&["CAPABILITY_IAM"]).is_ok());
    let p = t
        .prepare(&BTreeMap::new(), &common::context("us-east-1"), &bootstrapped("21"))
        .unwrap();

    let bs = &p.parameters()[0];
    assert_eq!(bs.name, "BootstrapVersion");
    assert_eq!(bs.value, "/cdk-bootstrap/hnb659fds/version");
    assert_eq!(bs.resolved_value.as_deref(), Some("21"));
    assert!(p.conditions()["CDKMetadataAvailable"]);
    assert!(!p.conditions()["AwsCdkKinesisEncryptedStreamsUnsupportedRegions"]);

    assert_eq!(
        p.creation_levels(),
        &[
            vec![
                "CDKMetadata".to_string(),
                "HandlerServiceRoleFCDC14AE".into(),
                "RawBucket0C3EE094".into(),
                "Stream790BDEE4".into()
            ],
            vec!["HandlerServiceRoleDefaultPolicyCBD0CC91".to_string()],
            vec!["Handler886CB40B".to_string()],
            vec!["HandlerKinesisEventSourcePipelineStackStream8C8E1A3F".to_string()],
        ]
    );
    assert_eq!(
        p.deletion_levels().first().unwrap(),
        &vec![
            "CDKMetadata".to_string(),
            "HandlerKinesisEventSourcePipelineStackStream8C8E1A3F".into()
        ]
    );

    let (props, created) = deploy(&p).unwrap();
    let function = &props["Handler886CB40B"];
    assert_eq!(
        function["Code"],
        json!({"S3Bucket": format!("cdk-hnb659fds-assets-{ACCOUNT}-us-east-1"),
            "S3Key": "5f2c8a1e0b9d4c7a6e3f1b2d8c9a0e4f7b6d5c3a2e1f0d9c8b7a6e5f4d3c2b1a.zip"})
    );
    assert_eq!(
        function["Role"],
        json!(format!("arn:aws:test:us-east-1:{ACCOUNT}:HandlerServiceRoleFCDC14AE"))
    );
    assert_eq!(
        function["Environment"]["Variables"]["BUCKET"],
        json!(physical_id("RawBucket0C3EE094"))
    );
    assert_eq!(
        props["HandlerServiceRoleFCDC14AE"]["ManagedPolicyArns"],
        json!(["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"])
    );
    assert_eq!(
        props["HandlerServiceRoleDefaultPolicyCBD0CC91"]["PolicyDocument"]["Statement"][1]["Resource"],
        json!([
            format!("arn:aws:test:us-east-1:{ACCOUNT}:RawBucket0C3EE094"),
            format!("arn:aws:test:us-east-1:{ACCOUNT}:RawBucket0C3EE094/*")
        ])
    );
    assert_eq!(
        props["Stream790BDEE4"]["StreamEncryption"],
        json!({"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"})
    );
    assert_eq!(
        props["HandlerKinesisEventSourcePipelineStackStream8C8E1A3F"]["FunctionName"],
        json!(physical_id("Handler886CB40B"))
    );

    let outputs = p.outputs(&created).unwrap();
    let by_key: BTreeMap<&str, &kd_stacks::Output> = outputs.iter().map(|o| (o.key.as_str(), o)).collect();
    assert_eq!(by_key["StreamName"].value, physical_id("Stream790BDEE4"));
    assert_eq!(
        by_key["BucketArn"].value,
        format!("arn:aws:s3:::{}", physical_id("RawBucket0C3EE094"))
    );
    assert_eq!(
        by_key["BucketArn"].description.as_deref(),
        Some("where the handler writes")
    );
    let export = by_key["ExportsOutputFnGetAttStream790BDEE4Arn2C1B4C8A"];
    assert_eq!(
        export.export_name.as_deref(),
        Some("PipelineStack:ExportsOutputFnGetAttStream790BDEE4Arn2C1B4C8A")
    );
    assert_eq!(export.value, format!("arn:aws:test:us-east-1:{ACCOUNT}:Stream790BDEE4"));
}

#[test]
fn cdk_stack_in_a_china_region() {
    let t = Template::parse(CDK).unwrap();
    let p = t
        .prepare(&BTreeMap::new(), &common::context("cn-north-1"), &bootstrapped("21"))
        .unwrap();
    let (props, _) = deploy(&p).unwrap();
    assert!(props["Stream790BDEE4"].get("StreamEncryption").is_none());
    assert_eq!(
        props["HandlerServiceRoleFCDC14AE"]["ManagedPolicyArns"],
        json!(["arn:aws-cn:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"])
    );
    // A region outside CDK's list has no CDKMetadata resource.
    let p = t
        .prepare(&BTreeMap::new(), &common::context("xx-test-1"), &bootstrapped("21"))
        .unwrap();
    assert!(p.resource("CDKMetadata").is_none());
    assert!(p.resources().all(|r| r.logical_id != "CDKMetadata"));
}

#[test]
fn cdk_bootstrap_version_check() {
    let t = Template::parse(CDK).unwrap();
    let ctx = common::context("us-east-1");
    let e = t.prepare(&BTreeMap::new(), &ctx, &bootstrapped("5")).unwrap_err();
    assert_eq!(e.code(), "ValidationError");
    assert_eq!(
        e.to_string(),
        "CDK bootstrap stack version 6 required. Please run 'cdk bootstrap' with a recent version of the CDK CLI."
    );
    let e = t
        .prepare(&BTreeMap::new(), &ctx, &StaticEnvironment::default())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Unable to fetch parameters [/cdk-bootstrap/hnb659fds/version] from parameter store for this account."
    );
    assert!(t.prepare(&BTreeMap::new(), &ctx, &bootstrapped("6")).is_ok());
}

#[test]
fn yaml_stack_with_short_forms() {
    let t = Template::parse(YAML).unwrap();
    assert!(t.description().unwrap().starts_with("A hand-written consumer stack"));
    assert_eq!(t.required_capability(), Some("CAPABILITY_NAMED_IAM"));
    let mut env = StaticEnvironment::default();
    let ctx = common::context("eu-west-1");
    let e = t.prepare(&BTreeMap::new(), &ctx, &env).unwrap_err();
    assert_eq!(
        e.to_string(),
        "No export named PipelineStack:ExportsOutputFnGetAttStream790BDEE4Arn2C1B4C8A found."
    );
    env.exports.insert(
        "PipelineStack:ExportsOutputFnGetAttStream790BDEE4Arn2C1B4C8A".into(),
        "arn:aws:kinesis:eu-west-1:000000000000:stream/s".into(),
    );
    let e = t
        .prepare(&common::params(&[("Prefix", "Bad_Prefix")]), &ctx, &env)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Parameter Prefix failed to satisfy constraint: lower-case letters, digits and hyphens"
    );

    let dev = t.prepare(&BTreeMap::new(), &ctx, &env).unwrap();
    assert_eq!(
        dev.creation_levels(),
        &[
            vec!["Archive".to_string()],
            vec!["DeliveryRole".to_string()],
            vec!["Delivery".to_string()]
        ]
    );
    assert_eq!(
        dev.template().resource("Archive").unwrap().deletion_policy,
        Some(kd_stacks::Policy::Retain)
    );
    let (props, created) = deploy(&dev).unwrap();
    assert_eq!(
        props["Archive"]["BucketName"],
        json!("data-000000000000-eu-west-1-archive")
    );
    assert_eq!(props["DeliveryRole"]["RoleName"], json!("app-delivery"));
    assert_eq!(
        props["DeliveryRole"]["Policies"][0]["PolicyDocument"]["Statement"][0]["Resource"],
        json!("arn:aws:test:us-east-1:000000000000:Archive/*")
    );
    let source = &props["Delivery"]["KinesisStreamSourceConfiguration"];
    assert_eq!(
        source["KinesisStreamARN"],
        json!("arn:aws:kinesis:eu-west-1:000000000000:stream/s")
    );
    let dest = &props["Delivery"]["ExtendedS3DestinationConfiguration"];
    assert_eq!(dest["Prefix"], json!("dev/year=!{timestamp:yyyy}/"));
    assert_eq!(dest["BufferingHints"]["IntervalInSeconds"], json!(60));
    assert_eq!(dest["RoleARN"], source["RoleARN"]);
    let outputs = dev.outputs(&created).unwrap();
    let values: Vec<(&str, &str, Option<&str>)> = outputs
        .iter()
        .map(|o| (o.key.as_str(), o.value.as_str(), o.export_name.as_deref()))
        .collect();
    assert_eq!(
        values,
        vec![
            ("ArchiveBucket", "app-Archive-PHYS", Some("app-ArchiveBucket")),
            ("FirstZone", "eu-west-1a", None)
        ]
    );

    let prod = t.prepare(&common::params(&[("Stage", "prod")]), &ctx, &env).unwrap();
    let (props, created) = deploy(&prod).unwrap();
    assert_eq!(
        props["Extra"],
        json!({"ShardCount": 4, "RetentionPeriodHours": 168, "Name": "data"})
    );
    assert_eq!(
        props["Delivery"]["ExtendedS3DestinationConfiguration"]["BufferingHints"]["IntervalInSeconds"],
        json!(300)
    );
    assert_eq!(prod.outputs(&created).unwrap().len(), 3);
}
