//! SSM Parameter Store with aws-sdk-ssm against the in-process server: versions, selectors,
//! paths and paging, DescribeParameters filters, deletes, AWS's error codes, durability
//! across a restart, IAM checks on parameter ARNs; and CloudFormation reading and making
//! parameters (`AWS::SSM::Parameter::Value<String>` with CDK's bootstrap check, and the
//! `AWS::SSM::Parameter` resource).

use std::time::Duration;

use aws_sdk_ssm::types::{ParameterStringFilter, ParameterType};
use kd_test_support::{TestServer, ssm_client, wait_until};
use serde_json::json;

use crate::assert_aws_error;
use crate::common::user_with;

type R = anyhow::Result<()>;

#[tokio::test]
async fn parameters_version_list_page_delete_and_survive_a_restart() -> R {
    let mut server = TestServer::start().await?;
    let ssm = server.ssm();

    let put = ssm
        .put_parameter()
        .name("/app/db/url")
        .value("postgres://one")
        .r#type(ParameterType::String)
        .description("the database")
        .send()
        .await?;
    assert_eq!(put.version(), 1);
    assert_eq!(put.tier().map(|t| t.as_str()), Some("Standard"));
    assert_aws_error!(
        ssm.put_parameter()
            .name("/app/db/url")
            .value("x")
            .r#type(ParameterType::String)
            .send()
            .await,
        "ParameterAlreadyExists",
        400
    );
    let put = ssm
        .put_parameter()
        .name("/app/db/url")
        .value("postgres://two")
        .overwrite(true)
        .send()
        .await?;
    assert_eq!(put.version(), 2);

    let got = ssm.get_parameter().name("/app/db/url").send().await?;
    let p = got.parameter().ok_or_else(|| anyhow::anyhow!("no parameter"))?;
    assert_eq!(p.value(), Some("postgres://two"));
    assert_eq!(p.version(), 2);
    assert_eq!(p.r#type(), Some(&ParameterType::String));
    assert_eq!(p.arn(), Some("arn:aws:ssm:us-east-1:000000000000:parameter/app/db/url"));
    assert!(p.last_modified_date().is_some());
    let old = ssm.get_parameter().name("/app/db/url:1").send().await?;
    let old = old.parameter().ok_or_else(|| anyhow::anyhow!("no parameter"))?;
    assert_eq!((old.value(), old.selector()), (Some("postgres://one"), Some(":1")));
    assert_aws_error!(
        ssm.get_parameter().name("/app/db/url:7").send().await,
        "ParameterVersionNotFound",
        400
    );
    assert_aws_error!(ssm.get_parameter().name("/nope").send().await, "ParameterNotFound", 400);
    let msg = assert_aws_error!(
        ssm.put_parameter().name("app/relative").value("v").send().await,
        "ValidationException",
        400
    );
    assert_eq!(msg, "Parameter name must be a fully qualified name.");
    assert_aws_error!(
        ssm.put_parameter().name("/aws/reserved").value("v").send().await,
        "ValidationException",
        400
    );
    assert_aws_error!(
        ssm.put_parameter()
            .name("/digits")
            .value("abc")
            .allowed_pattern("^[0-9]+$")
            .send()
            .await,
        "ParameterPatternMismatchException",
        400
    );

    ssm.put_parameter()
        .name("/app/secret")
        .value("hunter2")
        .r#type(ParameterType::SecureString)
        .send()
        .await?;
    ssm.put_parameter()
        .name("/app/hosts")
        .value("a,b,c")
        .r#type(ParameterType::StringList)
        .send()
        .await?;
    for i in 0..5 {
        ssm.put_parameter()
            .name(format!("/app/workers/w{i}"))
            .value(i.to_string())
            .send()
            .await?;
    }
    let secret = ssm
        .get_parameter()
        .name("/app/secret")
        .with_decryption(true)
        .send()
        .await?;
    assert_eq!(secret.parameter().and_then(|p| p.value()), Some("hunter2"));

    let many = ssm
        .get_parameters()
        .names("/app/hosts")
        .names("/app/missing")
        .names("/app/db/url:1")
        .send()
        .await?;
    assert_eq!(many.parameters().len(), 2);
    assert_eq!(many.invalid_parameters(), ["/app/missing"]);

    // One level: /app/hosts, /app/secret (not db/url, not workers/*).
    let one = ssm.get_parameters_by_path().path("/app").send().await?;
    let names: Vec<&str> = one.parameters().iter().filter_map(|p| p.name()).collect();
    assert_eq!(names, ["/app/hosts", "/app/secret"]);
    // Recursive, paged by 3: 8 parameters.
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let page = ssm
            .get_parameters_by_path()
            .path("/app/")
            .recursive(true)
            .max_results(3)
            .set_next_token(token.clone())
            .send()
            .await?;
        assert!(page.parameters().len() <= 3);
        all.extend(page.parameters().iter().filter_map(|p| p.name()).map(str::to_owned));
        match page.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(all.len(), 8, "{all:?}");
    assert_aws_error!(
        ssm.get_parameters_by_path().path("/app").max_results(11).send().await,
        "ValidationException",
        400
    );

    let lists = ssm
        .describe_parameters()
        .parameter_filters(
            ParameterStringFilter::builder()
                .key("Type")
                .values("StringList")
                .build()?,
        )
        .send()
        .await?;
    assert_eq!(lists.parameters().len(), 1);
    assert_eq!(lists.parameters()[0].name(), Some("/app/hosts"));
    let workers = ssm
        .describe_parameters()
        .parameter_filters(
            ParameterStringFilter::builder()
                .key("Path")
                .option("OneLevel")
                .values("/app/workers")
                .build()?,
        )
        .max_results(2)
        .send()
        .await?;
    assert_eq!(workers.parameters().len(), 2);
    assert!(workers.next_token().is_some());
    let described = ssm
        .describe_parameters()
        .parameter_filters(
            ParameterStringFilter::builder()
                .key("Name")
                .values("/app/db/url")
                .build()?,
        )
        .send()
        .await?;
    let d = &described.parameters()[0];
    assert_eq!((d.version(), d.description()), (2, Some("the database")));
    assert_aws_error!(
        ssm.describe_parameters()
            .parameter_filters(ParameterStringFilter::builder().key("Colour").values("x").build()?)
            .send()
            .await,
        "InvalidFilterKey",
        400
    );

    ssm.delete_parameter().name("/app/workers/w0").send().await?;
    assert_aws_error!(
        ssm.delete_parameter().name("/app/workers/w0").send().await,
        "ParameterNotFound",
        400
    );
    let deleted = ssm
        .delete_parameters()
        .names("/app/workers/w1")
        .names("/app/workers/none")
        .send()
        .await?;
    assert_eq!(deleted.deleted_parameters(), ["/app/workers/w1"]);
    assert_eq!(deleted.invalid_parameters(), ["/app/workers/none"]);

    server.restart().await?;
    let ssm = server.ssm();
    let got = ssm.get_parameter().name("/app/db/url:1").send().await?;
    assert_eq!(got.parameter().and_then(|p| p.value()), Some("postgres://one"));
    let history = ssm.get_parameter_history().name("/app/db/url").send().await?;
    assert_eq!(history.parameters().len(), 2);
    assert_aws_error!(
        ssm.get_parameter().name("/app/workers/w1").send().await,
        "ParameterNotFound",
        400
    );
    server.stop().await
}

#[tokio::test]
async fn iam_decides_per_parameter_arn() -> R {
    let server = TestServer::start().await?;
    server
        .ssm()
        .put_parameter()
        .name("/team/a/key")
        .value("a")
        .send()
        .await?;
    server
        .ssm()
        .put_parameter()
        .name("/team/b/key")
        .value("b")
        .send()
        .await?;
    let (id, secret) = user_with(
        &server,
        "reader",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ssm:GetParameter*"],
            "Resource":"arn:aws:ssm:us-east-1:000000000000:parameter/team/a/*"}]}"#,
    )
    .await?;
    let reader = ssm_client(&server.endpoint(), "us-east-1", &id, &secret);
    let got = reader.get_parameter().name("/team/a/key").send().await?;
    assert_eq!(got.parameter().and_then(|p| p.value()), Some("a"));
    let msg = assert_aws_error!(
        reader.get_parameter().name("/team/b/key").send().await,
        "AccessDeniedException",
        400
    );
    assert!(msg.contains("ssm:GetParameter"), "{msg}");
    assert_aws_error!(
        reader
            .put_parameter()
            .name("/team/a/key")
            .value("x")
            .overwrite(true)
            .send()
            .await,
        "AccessDeniedException",
        400
    );
    // One denied name refuses the whole call.
    assert_aws_error!(
        reader
            .get_parameters()
            .names("/team/a/key")
            .names("/team/b/key")
            .send()
            .await,
        "AccessDeniedException",
        400
    );
    let unchanged = server.ssm().get_parameter().name("/team/a/key").send().await?;
    assert_eq!(unchanged.parameter().map(|p| p.version()), Some(1));
    server.stop().await
}

/// What `cdk synth` emits in every stack: the bootstrap version parameter and its rule.
fn cdk_template(resources: serde_json::Value, outputs: serde_json::Value) -> String {
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
    .to_string()
}

#[tokio::test]
async fn cloudformation_reads_and_makes_parameters() -> R {
    let server = TestServer::start().await?;
    let cfn = server.cloudformation();
    let ssm = server.ssm();
    let resources = json!({
        "Named": {"Type": "AWS::SSM::Parameter", "Properties": {
            "Name": "/stack/bootstrap-seen", "Type": "String", "Value": {"Ref": "BootstrapVersion"},
            "Description": "copied from the bootstrap version"}},
        "Generated": {"Type": "AWS::SSM::Parameter", "Properties": {
            "Type": "StringList", "Value": "a,b"}}
    });
    let outputs = json!({
        "NamedRef": {"Value": {"Ref": "Named"}},
        "NamedValue": {"Value": {"Fn::GetAtt": ["Named", "Value"]}},
        "GeneratedName": {"Value": {"Ref": "Generated"}},
        "GeneratedType": {"Value": {"Fn::GetAtt": ["Generated", "Type"]}}
    });

    // Not bootstrapped: the parameter cannot be fetched.
    let msg = assert_aws_error!(
        cfn.create_stack()
            .stack_name("params")
            .template_body(cdk_template(resources.clone(), outputs.clone()))
            .send()
            .await,
        "ValidationError",
        400
    );
    assert_eq!(
        msg,
        "Unable to fetch parameters [/cdk-bootstrap/hnb659fds/version] from parameter store for this account."
    );
    // Bootstrapped too long ago: the rule refuses.
    ssm.put_parameter()
        .name("/cdk-bootstrap/hnb659fds/version")
        .value("5")
        .send()
        .await?;
    let msg = assert_aws_error!(
        cfn.create_stack()
            .stack_name("params")
            .template_body(cdk_template(resources.clone(), outputs.clone()))
            .send()
            .await,
        "ValidationError",
        400
    );
    assert!(msg.starts_with("CDK bootstrap stack version 6 required."), "{msg}");
    ssm.put_parameter()
        .name("/cdk-bootstrap/hnb659fds/version")
        .value("21")
        .overwrite(true)
        .send()
        .await?;
    cfn.create_stack()
        .stack_name("params")
        .template_body(cdk_template(resources, outputs))
        .send()
        .await?;
    let stack = wait_until(Duration::from_secs(60), "stack params to settle", || {
        let cfn = cfn.clone();
        async move {
            let out = cfn.describe_stacks().stack_name("params").send().await.ok()?;
            let s = out.stacks().first()?.clone();
            let status = s.stack_status()?.as_str().to_owned();
            (!status.ends_with("_IN_PROGRESS")).then_some(s)
        }
    })
    .await?;
    assert_eq!(
        stack.stack_status().map(|s| s.as_str()),
        Some("CREATE_COMPLETE"),
        "{:?}",
        stack.stack_status_reason()
    );
    let bootstrap = stack
        .parameters()
        .iter()
        .find(|p| p.parameter_key() == Some("BootstrapVersion"))
        .ok_or_else(|| anyhow::anyhow!("no BootstrapVersion parameter"))?;
    assert_eq!(bootstrap.resolved_value(), Some("21"));
    let output = |k: &str| {
        stack
            .outputs()
            .iter()
            .find(|o| o.output_key() == Some(k))
            .and_then(|o| o.output_value())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(output("NamedRef"), "/stack/bootstrap-seen");
    assert_eq!(output("NamedValue"), "21");
    assert_eq!(output("GeneratedType"), "StringList");
    let generated = output("GeneratedName");
    assert!(generated.starts_with("CFN-Generated-"), "{generated}");
    let made = ssm.get_parameter().name(&generated).send().await?;
    assert_eq!(made.parameter().and_then(|p| p.value()), Some("a,b"));
    let named = ssm.get_parameter().name("/stack/bootstrap-seen").send().await?;
    assert_eq!(named.parameter().and_then(|p| p.value()), Some("21"));

    cfn.delete_stack().stack_name("params").send().await?;
    let ssm2 = ssm.clone();
    wait_until(Duration::from_secs(60), "the stack's parameters to go", || {
        let ssm = ssm2.clone();
        async move {
            ssm.get_parameter()
                .name("/stack/bootstrap-seen")
                .send()
                .await
                .is_err()
                .then_some(())
        }
    })
    .await?;
    assert_aws_error!(
        ssm.get_parameter().name(&generated).send().await,
        "ParameterNotFound",
        400
    );
    server.stop().await
}
