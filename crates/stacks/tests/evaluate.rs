//! Preparing stacks and evaluating intrinsics: parameters, pseudo parameters, mappings,
//! conditions, rules, every intrinsic function, dependencies and outputs.

mod common;

use std::collections::BTreeMap;

use common::{deploy, physical_id, prepare};
use kd_stacks::{ResolvedResources, StaticEnvironment, Template};
use serde_json::{Value, json};

/// A template with one resource `R` holding `props`, plus `extra` sections.
fn with_props(props: Value, extra: Value) -> Value {
    let mut t = json!({"Resources": {"R": {"Type": "AWS::SNS::Topic", "Properties": props}}});
    if let (Some(t), Value::Object(extra)) = (t.as_object_mut(), extra) {
        for (k, v) in extra {
            if k == "Resources" {
                for (id, r) in v.as_object().unwrap() {
                    t["Resources"].as_object_mut().unwrap().insert(id.clone(), r.clone());
                }
            } else {
                t.insert(k, v);
            }
        }
    }
    t
}

/// R's properties once everything it refers to is "created".
fn resolve(props: Value, extra: Value, pairs: &[(&str, &str)]) -> kd_stacks::Result<Value> {
    let p = prepare(&with_props(props, extra), pairs, &StaticEnvironment::default())?;
    let (mut all, _) = deploy(&p)?;
    Ok(all.remove("R").unwrap())
}

#[test]
fn pseudo_parameters() {
    let v = resolve(
        json!({"A": {"Ref": "AWS::AccountId"}, "B": {"Ref": "AWS::Region"},
            "C": {"Ref": "AWS::StackName"}, "D": {"Ref": "AWS::StackId"},
            "E": {"Ref": "AWS::Partition"}, "F": {"Ref": "AWS::URLSuffix"},
            "G": {"Ref": "AWS::NotificationARNs"}, "H": {"Ref": "AWS::NoValue"}}),
        json!({}),
        &[],
    )
    .unwrap();
    assert_eq!(
        v,
        json!({"A": "000000000000", "B": "us-east-1", "C": "app",
            "D": "arn:aws:cloudformation:us-east-1:000000000000:stack/app/6b1c2a60-0000-4000-8000-000000000001",
            "E": "aws", "F": "amazonaws.com", "G": []})
    );
    let cn = kd_stacks::StackContext::new("1", "cn-north-1", "s", "id");
    assert_eq!((cn.partition(), cn.url_suffix()), ("aws-cn", "amazonaws.com.cn"));
    assert_eq!(kd_stacks::partition("us-gov-west-1"), "aws-us-gov");
    let mut ctx = common::context("eu-west-1");
    ctx.notification_arns = vec!["arn:aws:sns:eu-west-1:000000000000:t".into()];
    let t = Template::from_value(with_props(json!({"N": {"Ref": "AWS::NotificationARNs"}}), json!({}))).unwrap();
    let p = t
        .prepare(&BTreeMap::new(), &ctx, &StaticEnvironment::default())
        .unwrap();
    assert_eq!(
        p.resolve_properties("R", &ResolvedResources::default()).unwrap(),
        json!({"N": ["arn:aws:sns:eu-west-1:000000000000:t"]})
    );
}

#[test]
fn parameters_defaults_and_lists() {
    let extra = json!({"Parameters": {
        "Name": {"Type": "String", "Default": "dflt"},
        "Count": {"Type": "Number"},
        "Zones": {"Type": "CommaDelimitedList", "Default": "a,b"},
        "Sizes": {"Type": "List<Number>", "Default": "1,2"},
        "Vpc": {"Type": "AWS::EC2::VPC::Id", "Default": "vpc-1"},
        "Secret": {"Type": "String", "NoEcho": "true", "Default": "hunter2"}}});
    let v = resolve(
        json!({"N": {"Ref": "Name"}, "C": {"Ref": "Count"}, "Z": {"Ref": "Zones"},
            "S": {"Ref": "Sizes"}, "V": {"Ref": "Vpc"}, "Second": {"Fn::Select": [1, {"Ref": "Zones"}]}}),
        extra.clone(),
        &[("Count", "3")],
    )
    .unwrap();
    assert_eq!(
        v,
        json!({"N": "dflt", "C": "3", "Z": ["a", "b"], "S": ["1", "2"], "V": "vpc-1", "Second": "b"})
    );
    let p = prepare(
        &with_props(json!({}), extra.clone()),
        &[("Count", "3"), ("Name", "given")],
        &StaticEnvironment::default(),
    )
    .unwrap();
    let shown: Vec<(&str, &str, bool)> = p
        .parameters()
        .iter()
        .map(|r| (r.name.as_str(), r.display_value(), r.from_default))
        .collect();
    assert_eq!(
        shown,
        vec![
            ("Count", "3", false),
            ("Name", "given", false),
            ("Secret", "****", true),
            ("Sizes", "1,2", true),
            ("Vpc", "vpc-1", true),
            ("Zones", "a,b", true)
        ]
    );
    let env = StaticEnvironment::default();
    let t = with_props(json!({}), extra);
    assert_eq!(
        prepare(&t, &[], &env).unwrap_err().to_string(),
        "Parameters: [Count] must have values"
    );
    assert_eq!(
        prepare(&t, &[("Count", "1"), ("Zed", "1"), ("Abc", "2")], &env)
            .unwrap_err()
            .to_string(),
        "Parameters: [Abc, Zed] do not exist in the template"
    );
    assert_eq!(
        prepare(&t, &[("Count", "many")], &env).unwrap_err().to_string(),
        "Parameter 'Count' must be a number"
    );
    let two_missing = json!({"Parameters": {"B": {"Type": "String"}, "A": {"Type": "String"}},
        "Resources": {"R": {"Type": "AWS::SNS::Topic"}}});
    assert_eq!(
        prepare(&two_missing, &[], &env).unwrap_err().to_string(),
        "Parameters: [A, B] must have values"
    );
}

#[test]
fn parameter_constraints_apply_to_given_values_and_defaults() {
    let t = with_props(
        json!({}),
        json!({"Parameters": {
        "Env": {"Type": "String", "AllowedValues": ["dev", "prod"], "Default": "dev"},
        "Name": {"Type": "String", "AllowedPattern": "[a-z][a-z0-9-]*", "MinLength": 3, "MaxLength": 8, "Default": "abc"},
        "Shards": {"Type": "Number", "MinValue": 1, "MaxValue": 4, "Default": 1}}}),
    );
    let env = StaticEnvironment::default();
    assert!(prepare(&t, &[], &env).is_ok());
    let err = |pairs: &[(&str, &str)]| prepare(&t, pairs, &env).unwrap_err().to_string();
    assert_eq!(err(&[("Env", "test")]), "Parameter 'Env' must be one of AllowedValues");
    assert_eq!(
        err(&[("Name", "Abc")]),
        "Parameter 'Name' must match pattern [a-z][a-z0-9-]*"
    );
    assert_eq!(
        err(&[("Name", "ab")]),
        "Parameter 'Name' must contain at least 3 characters"
    );
    assert_eq!(
        err(&[("Name", "abcdefghi")]),
        "Parameter 'Name' must contain at most 8 characters"
    );
    assert_eq!(
        err(&[("Shards", "0")]),
        "Parameter 'Shards' must be a number not less than 1"
    );
    assert_eq!(
        err(&[("Shards", "5")]),
        "Parameter 'Shards' must be a number not greater than 4"
    );
    let bad_default = with_props(
        json!({}),
        json!({"Parameters": {"E": {"Type": "String", "AllowedValues": ["a"], "Default": "b"}}}),
    );
    assert_eq!(
        prepare(&bad_default, &[], &env).unwrap_err().to_string(),
        "Parameter 'E' must be one of AllowedValues"
    );
}

#[test]
fn ssm_parameters_resolve_through_the_environment() {
    let t = with_props(
        json!({"V": {"Ref": "Latest"}, "L": {"Ref": "Subnets"}}),
        json!({"Parameters": {
            "Latest": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/app/version"},
            "Subnets": {"Type": "AWS::SSM::Parameter::Value<List<String>>", "Default": "/app/subnets"}}}),
    );
    let mut env = StaticEnvironment::default();
    env.ssm_parameters.insert("/app/version".into(), "42".into());
    env.ssm_parameters.insert("/app/subnets".into(), "s-1,s-2".into());
    env.ssm_parameters.insert("/other".into(), "7".into());
    let p = prepare(&t, &[], &env).unwrap();
    assert_eq!(
        p.resolve_properties("R", &ResolvedResources::default()).unwrap(),
        json!({"V": "42", "L": ["s-1", "s-2"]})
    );
    let latest = &p.parameters()[0];
    assert_eq!(
        (latest.value.as_str(), latest.resolved_value.as_deref()),
        ("/app/version", Some("42"))
    );
    let p = prepare(&t, &[("Latest", "/other")], &env).unwrap();
    assert_eq!(p.parameters()[0].resolved_value.as_deref(), Some("7"));
    assert_eq!(
        prepare(&t, &[("Latest", "/missing")], &env).unwrap_err().to_string(),
        "Unable to fetch parameters [/missing] from parameter store for this account."
    );
}

#[test]
fn join_sub_select_split_base64_getazs() {
    let extra = json!({"Parameters": {"Env": {"Type": "String", "Default": "dev"},
        "Port": {"Type": "Number", "Default": 8080}},
        "Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}}});
    let v = resolve(
        json!({
            "Join": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::", {"Ref": "Bucket"}, "/*"]]},
            "JoinMixed": {"Fn::Join": ["-", ["a", 1, true, {"Ref": "AWS::NoValue"}]]},
            "JoinList": {"Fn::Join": [",", {"Fn::GetAZs": ""}]},
            "Sub": {"Fn::Sub": "${AWS::StackName}-${Env}-${Bucket}-${Bucket.Arn}-${!Literal}-${Port}"},
            "SubMap": {"Fn::Sub": ["${Name}.${AWS::URLSuffix}", {"Name": {"Fn::Join": ["-", ["x", {"Ref": "Env"}]]}}]},
            "Select": {"Fn::Select": ["2", {"Fn::Split": ["/", "a/b/c"]}]},
            "SelectAz": {"Fn::Select": [0, {"Fn::GetAZs": {"Ref": "AWS::Region"}}]},
            "Split": {"Fn::Split": [",", {"Fn::Sub": "${Env},x"}]},
            "Base64": {"Fn::Base64": {"Fn::Sub": "#!/bin/bash\necho ${Env}"}},
            "AZs": {"Fn::GetAZs": "eu-west-1"},
            "GetAttList": {"Fn::GetAtt": "Bucket.Arn"},
            "Nested": [{"Ref": "AWS::NoValue"}, {"K": {"Ref": "AWS::NoValue"}, "L": 1}]
        }),
        extra,
        &[],
    )
    .unwrap();
    let bucket = physical_id("Bucket");
    assert_eq!(v["Join"], json!(format!("arn:aws:s3:::{bucket}/*")));
    assert_eq!(v["JoinMixed"], json!("a-1-true"));
    assert_eq!(v["JoinList"], json!("us-east-1a,us-east-1b,us-east-1c"));
    assert_eq!(
        v["Sub"],
        json!(format!(
            "app-dev-{bucket}-arn:aws:test:us-east-1:000000000000:Bucket-${{Literal}}-8080"
        ))
    );
    assert_eq!(v["SubMap"], json!("x-dev.amazonaws.com"));
    assert_eq!(v["Select"], json!("c"));
    assert_eq!(v["SelectAz"], json!("us-east-1a"));
    assert_eq!(v["Split"], json!(["dev", "x"]));
    assert_eq!(v["Base64"], json!("IyEvYmluL2Jhc2gKZWNobyBkZXY="));
    assert_eq!(v["AZs"], json!(["eu-west-1a", "eu-west-1b", "eu-west-1c"]));
    assert_eq!(v["GetAttList"], json!("arn:aws:test:us-east-1:000000000000:Bucket"));
    assert_eq!(v["Nested"], json!([{"L": 1}]));
}

#[test]
fn intrinsic_errors() {
    let err = |props: Value| resolve(props, json!({}), &[]).unwrap_err().to_string();
    assert_eq!(
        err(json!({"X": {"Fn::Select": [3, ["a", "b"]]}})),
        "Template error: Fn::Select cannot select nonexistent value at index 3"
    );
    assert!(
        err(json!({"X": {"Fn::Select": ["x", ["a"]]}}))
            .starts_with("Template error: every Fn::Select object requires two parameters")
    );
    assert!(
        err(json!({"X": {"Fn::Join": ["", "notalist"]}}))
            .starts_with("Template error: every Fn::Join object requires two parameters")
    );
    assert!(err(json!({"X": {"Fn::Join": ["", [["nested"]]]}})).starts_with("Template error: every Fn::Join object"));
    assert!(err(json!({"X": {"Fn::Split": [",", ["a"]]}})).starts_with("Template error: every Fn::Split object"));
    assert_eq!(
        err(json!({"X": {"Fn::Sub": "${AWS::NotificationARNs}"}})),
        "Template error: variable AWS::NotificationARNs in Fn::Sub expression does not resolve to a string"
    );
    assert_eq!(
        err(json!({"X": {"Fn::GetAtt": ["R2", "Nope"]}, "Y": {"Ref": "R2"}})),
        "Template format error: Unresolved resource dependencies [R2] in the Resources block of the template"
    );
}

#[test]
fn get_att_of_an_unknown_attribute() {
    let t = with_props(
        json!({"X": {"Fn::GetAtt": ["Other", "Nope"]}}),
        json!({"Resources": {"Other": {"Type": "AWS::SNS::Topic"}}}),
    );
    let e = prepare(&t, &[], &StaticEnvironment::default())
        .and_then(|p| deploy(&p))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Template error: resource Other does not support attribute type Nope in Fn::GetAtt"
    );
    // Resolving before a dependency exists is the lifecycle's bug, not the user's.
    let t = with_props(
        json!({"X": {"Ref": "Other"}}),
        json!({"Resources": {"Other": {"Type": "AWS::SNS::Topic"}}}),
    );
    let p = prepare(&t, &[], &StaticEnvironment::default()).unwrap();
    let e = p.resolve_properties("R", &ResolvedResources::default()).unwrap_err();
    assert_eq!(e.code(), "InternalFailure");
    // The attribute name may itself be an expression.
    let t = with_props(
        json!({"X": {"Fn::GetAtt": ["Other", {"Ref": "Attr"}]}}),
        json!({"Resources": {"Other": {"Type": "AWS::SNS::Topic"}}, "Parameters": {"Attr": {"Type": "String", "Default": "Arn"}}}),
    );
    let (props, _) = deploy(&prepare(&t, &[], &StaticEnvironment::default()).unwrap()).unwrap();
    assert_eq!(props["R"]["X"], json!("arn:aws:test:us-east-1:000000000000:Other"));
}

#[test]
fn mappings_and_find_in_map() {
    let extra = json!({"Mappings": {"RegionMap": {
        "us-east-1": {"Ami": "ami-1", "Zones": ["a", "b"], "Size": 3},
        "eu-west-1": {"Ami": "ami-2"}}},
        "Parameters": {"Key": {"Type": "String", "Default": "Ami"}}});
    let v = resolve(
        json!({"A": {"Fn::FindInMap": ["RegionMap", {"Ref": "AWS::Region"}, {"Ref": "Key"}]},
            "Z": {"Fn::FindInMap": ["RegionMap", "us-east-1", "Zones"]},
            "S": {"Fn::FindInMap": ["RegionMap", "us-east-1", "Size"]}}),
        extra.clone(),
        &[],
    )
    .unwrap();
    assert_eq!(v, json!({"A": "ami-1", "Z": ["a", "b"], "S": 3}));
    let err = |props: Value| resolve(props, extra.clone(), &[]).unwrap_err().to_string();
    assert_eq!(
        err(json!({"A": {"Fn::FindInMap": ["RegionMap", "ap-south-1", "Ami"]}})),
        "Template error: Unable to get mapping for RegionMap::ap-south-1::Ami"
    );
    assert_eq!(
        err(json!({"A": {"Fn::FindInMap": ["Nope", "a", "b"]}})),
        "Template error: Mapping named 'Nope' is not present in the 'Mappings' section of template."
    );
    assert!(
        err(json!({"A": {"Fn::FindInMap": ["RegionMap", "a"]}}))
            .starts_with("Template error: every Fn::FindInMap object requires three parameters")
    );
}

fn conditional_template() -> Value {
    json!({
        "Parameters": {"Env": {"Type": "String", "AllowedValues": ["dev", "prod"], "Default": "dev"},
            "Count": {"Type": "Number", "Default": 2}},
        "Conditions": {
            "IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
            "IsDev": {"Fn::Not": [{"Condition": "IsProd"}]},
            "TwoShards": {"Fn::Equals": [{"Ref": "Count"}, 2]},
            "ProdAndTwo": {"Fn::And": [{"Condition": "IsProd"}, {"Condition": "TwoShards"}]},
            "ProdOrEast": {"Fn::Or": [{"Condition": "IsProd"}, {"Fn::Equals": ["us-east-1", {"Ref": "AWS::Region"}]}]}
        },
        "Resources": {
            "Stream": {"Type": "AWS::Kinesis::Stream", "Properties": {
                "ShardCount": {"Fn::If": ["IsProd", 4, 1]},
                "RetentionPeriodHours": {"Fn::If": ["IsProd", 168, {"Ref": "AWS::NoValue"}]},
                "Tags": [{"Key": "env", "Value": {"Ref": "Env"}},
                         {"Fn::If": ["IsProd", {"Key": "tier", "Value": "gold"}, {"Ref": "AWS::NoValue"}]}]}},
            "Alarm": {"Type": "AWS::CloudWatch::Alarm", "Condition": "IsProd",
                "Properties": {"Stream": {"Ref": "Stream"}}},
            "Consumer": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
                "EventSourceArn": {"Fn::GetAtt": ["Stream", "Arn"]},
                "Note": {"Fn::If": ["IsProd", {"Ref": "Alarm"}, "no alarm"]}}}
        },
        "Outputs": {
            "AlarmName": {"Condition": "IsProd", "Value": {"Ref": "Alarm"}},
            "StreamArn": {"Value": {"Fn::GetAtt": ["Stream", "Arn"]},
                "Export": {"Name": {"Fn::Sub": "${AWS::StackName}-stream"}}, "Description": "arn"}
        }
    })
}

#[test]
fn conditions_skip_resources_properties_and_outputs() {
    let env = StaticEnvironment::default();
    let dev = prepare(&conditional_template(), &[], &env).unwrap();
    assert_eq!(
        dev.conditions(),
        &BTreeMap::from([
            ("IsDev".to_string(), true),
            ("IsProd".into(), false),
            ("ProdAndTwo".into(), false),
            ("ProdOrEast".into(), true),
            ("TwoShards".into(), true)
        ])
    );
    assert_eq!(
        dev.resources().map(|r| r.logical_id.as_str()).collect::<Vec<_>>(),
        vec!["Consumer", "Stream"]
    );
    assert!(dev.resource("Alarm").is_none());
    let (props, created) = deploy(&dev).unwrap();
    assert_eq!(
        props["Stream"],
        json!({"ShardCount": 1, "Tags": [{"Key": "env", "Value": "dev"}]})
    );
    assert_eq!(props["Consumer"]["Note"], json!("no alarm"));
    let outputs = dev.outputs(&created).unwrap();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].key, "StreamArn");
    assert_eq!(outputs[0].export_name.as_deref(), Some("app-stream"));
    assert_eq!(outputs[0].description.as_deref(), Some("arn"));

    let prod = prepare(&conditional_template(), &[("Env", "prod")], &env).unwrap();
    assert_eq!(
        prod.creation_levels(),
        &[
            vec!["Stream".to_string()],
            vec!["Alarm".to_string()],
            vec!["Consumer".to_string()]
        ]
    );
    let (props, created) = deploy(&prod).unwrap();
    assert_eq!(
        props["Stream"],
        json!({"ShardCount": 4, "RetentionPeriodHours": 168,
            "Tags": [{"Key": "env", "Value": "prod"}, {"Key": "tier", "Value": "gold"}]})
    );
    assert_eq!(props["Consumer"]["Note"], json!(physical_id("Alarm")));
    let outputs = prod.outputs(&created).unwrap();
    assert_eq!(
        outputs.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
        vec!["AlarmName", "StreamArn"]
    );
    assert_eq!(outputs[0].value, physical_id("Alarm"));
}

#[test]
fn a_reference_to_a_resource_whose_condition_is_false() {
    let t = json!({
        "Conditions": {"Never": {"Fn::Equals": ["a", "b"]}},
        "Resources": {"A": {"Type": "AWS::SNS::Topic", "Condition": "Never"},
            "B": {"Type": "AWS::SNS::Topic", "Properties": {"X": {"Ref": "A"}}}}});
    assert_eq!(
        prepare(&t, &[], &StaticEnvironment::default()).unwrap_err().to_string(),
        "Template format error: Unresolved resource dependencies [A] in the Resources block of the template"
    );
    let t = json!({
        "Conditions": {"Never": {"Fn::Equals": ["a", "b"]}},
        "Resources": {"A": {"Type": "AWS::SNS::Topic", "Condition": "Never"}, "B": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"O": {"Value": {"Fn::GetAtt": ["A", "Arn"]}}}});
    assert_eq!(
        prepare(&t, &[], &StaticEnvironment::default()).unwrap_err().to_string(),
        "Template format error: Unresolved resource dependencies [A] in the Outputs block of the template"
    );
}

#[test]
fn condition_errors() {
    let t = |c: Value| json!({"Conditions": c, "Resources": {"A": {"Type": "AWS::SNS::Topic"}}});
    let env = StaticEnvironment::default();
    let e = prepare(&t(json!({"A": {"Condition": "B"}, "B": {"Condition": "A"}})), &[], &env).unwrap_err();
    assert!(e.to_string().contains("Circular condition dependency"), "{e}");
    let e = prepare(
        &t(json!({"A": {"Fn::And": [{"Condition": "B"}]}, "B": {"Fn::Equals": [1, 1]}})),
        &[],
        &env,
    )
    .unwrap_err();
    assert!(e.to_string().contains("at least 2 and at most 10"), "{e}");
    let e = prepare(&t(json!({"A": "yes"})), &[], &env).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Template format error: Conditions can only be boolean operations on parameters and other conditions"
    );
}

#[test]
fn rules_and_assertions() {
    let t = |rules: Value| {
        json!({
        "Parameters": {"Env": {"Type": "String", "Default": "dev"},
            "Subnets": {"Type": "CommaDelimitedList", "Default": "s-1,s-2"},
            "Vpcs": {"Type": "List<AWS::EC2::VPC::Id>", "Default": "vpc-1"}},
        "Rules": rules,
        "Resources": {"A": {"Type": "AWS::SNS::Topic"}}})
    };
    let mut env = StaticEnvironment::default();
    env.values_by_type
        .insert("AWS::EC2::VPC::Id".into(), vec!["vpc-1".into(), "vpc-2".into()]);
    let ok = |rules: Value, pairs: &[(&str, &str)]| prepare(&t(rules), pairs, &env).map(|_| ());
    let rule = json!({"ProdOnly": {
        "RuleCondition": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
        "Assertions": [{"Assert": {"Fn::Contains": [["s-1", "s-2", "s-3"], {"Fn::Select": [0, {"Ref": "Subnets"}]}]},
            "AssertDescription": "first subnet must be a known one"},
            {"Assert": {"Fn::EachMemberIn": [{"Ref": "Subnets"}, ["s-1", "s-2", "s-3"]]},
            "AssertDescription": "every subnet must be known"}]}});
    assert!(ok(rule.clone(), &[]).is_ok(), "condition false: assertions skipped");
    assert!(ok(rule.clone(), &[("Env", "prod")]).is_ok());
    assert_eq!(
        ok(rule.clone(), &[("Env", "prod"), ("Subnets", "s-9,s-1")])
            .unwrap_err()
            .to_string(),
        "first subnet must be a known one"
    );
    assert_eq!(
        ok(rule, &[("Env", "prod"), ("Subnets", "s-1,s-9")])
            .unwrap_err()
            .to_string(),
        "every subnet must be known"
    );
    let each = json!({"Same": {"Assertions": [{"Assert": {"Fn::EachMemberEquals": [{"Ref": "Subnets"}, "s-1"]}}]}});
    assert!(ok(each.clone(), &[("Subnets", "s-1,s-1")]).is_ok());
    let e = ok(each, &[]).unwrap_err();
    assert_eq!(e.code(), "ValidationError");
    assert_eq!(e.to_string(), "Template assertion in rule Same failed");
    let refall = json!({"Known": {"Assertions": [{"Assert": {"Fn::EachMemberIn": [{"Ref": "Vpcs"}, {"Fn::RefAll": "AWS::EC2::VPC::Id"}]},
        "AssertDescription": "unknown VPC"}]}});
    assert!(ok(refall.clone(), &[]).is_ok());
    assert_eq!(
        ok(refall, &[("Vpcs", "vpc-1,vpc-3")]).unwrap_err().to_string(),
        "unknown VPC"
    );
    let logic = json!({"L": {"Assertions": [{"Assert": {"Fn::And": [
        {"Fn::Or": [{"Fn::Equals": [{"Ref": "Env"}, "x"]}, {"Fn::Not": [{"Fn::Equals": [{"Ref": "Env"}, "y"]}]}]},
        {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}]}}]}});
    assert!(ok(logic, &[]).is_ok());
}

#[test]
fn imports_resolve_through_the_environment() {
    let t = with_props(
        json!({"Topic": {"Fn::ImportValue": {"Fn::Sub": "${Shared}-TopicArn"}},
            "Skipped": {"Fn::If": ["Never", {"Fn::ImportValue": "nope"}, "fine"]}}),
        json!({"Parameters": {"Shared": {"Type": "String", "Default": "base"}},
            "Conditions": {"Never": {"Fn::Equals": [1, 2]}},
            "Outputs": {"O": {"Value": {"Fn::ImportValue": "base-Other"}}}}),
    );
    let mut env = StaticEnvironment::default();
    env.exports
        .insert("base-TopicArn".into(), "arn:aws:sns:us-east-1:000000000000:t".into());
    assert_eq!(
        prepare(&t, &[], &env).unwrap_err().to_string(),
        "No export named base-Other found."
    );
    env.exports.insert("base-Other".into(), "other".into());
    let p = prepare(&t, &[], &env).unwrap();
    assert_eq!(
        p.imports(),
        &BTreeMap::from([
            ("base-Other".to_string(), "other".to_string()),
            (
                "base-TopicArn".to_string(),
                "arn:aws:sns:us-east-1:000000000000:t".to_string()
            )
        ])
    );
    let (props, created) = deploy(&p).unwrap();
    assert_eq!(
        props["R"],
        json!({"Topic": "arn:aws:sns:us-east-1:000000000000:t", "Skipped": "fine"})
    );
    assert_eq!(p.outputs(&created).unwrap()[0].value, "other");
}

#[test]
fn outputs_are_strings() {
    let t = json!({"Parameters": {"L": {"Type": "CommaDelimitedList", "Default": "a,b"}},
        "Resources": {"A": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"List": {"Value": {"Ref": "L"}}, "Num": {"Value": 5},
            "Dup1": {"Value": "x", "Export": {"Name": "same"}}}});
    let p = prepare(&t, &[], &StaticEnvironment::default()).unwrap();
    let (_, created) = deploy(&p).unwrap();
    let out = p.outputs(&created).unwrap();
    let values: Vec<(&str, &str)> = out.iter().map(|o| (o.key.as_str(), o.value.as_str())).collect();
    assert_eq!(values, vec![("Dup1", "x"), ("List", "a,b"), ("Num", "5")]);
    let t = json!({"Resources": {"A": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"M": {"Value": {"k": "v"}}}});
    let p = prepare(&t, &[], &StaticEnvironment::default()).unwrap();
    let e = p.outputs(&ResolvedResources::default()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Template format error: Output M is malformed."),
        "{e}"
    );
    let t = json!({"Resources": {"A": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"A1": {"Value": "1", "Export": {"Name": "same"}}, "A2": {"Value": "2", "Export": {"Name": "same"}}}});
    let p = prepare(&t, &[], &StaticEnvironment::default()).unwrap();
    assert!(
        p.outputs(&ResolvedResources::default())
            .unwrap_err()
            .to_string()
            .contains("Duplicate Export names")
    );
}

#[test]
fn dependencies_follow_taken_branches_and_depends_on() {
    let t = json!({
        "Parameters": {"UseB": {"Type": "String", "Default": "no"}},
        "Conditions": {"B": {"Fn::Equals": [{"Ref": "UseB"}, "yes"]}},
        "Resources": {
            "A": {"Type": "AWS::SNS::Topic"},
            "B": {"Type": "AWS::SNS::Topic"},
            "C": {"Type": "AWS::SNS::Topic", "Properties": {"X": {"Fn::If": ["B", {"Ref": "B"}, {"Fn::Sub": "${A.Arn}"}]}}},
            "D": {"Type": "AWS::SNS::Topic", "DependsOn": ["C"]}}});
    let env = StaticEnvironment::default();
    let p = prepare(&t, &[], &env).unwrap();
    assert_eq!(
        p.creation_levels(),
        &[
            vec!["A".to_string(), "B".into()],
            vec!["C".to_string()],
            vec!["D".to_string()]
        ]
    );
    assert_eq!(
        p.deletion_levels(),
        &[
            vec!["B".to_string(), "D".into()],
            vec!["C".to_string()],
            vec!["A".to_string()]
        ]
    );
    assert_eq!(p.graph().dependencies("C").collect::<Vec<_>>(), vec!["A"]);
    let p = prepare(&t, &[("UseB", "yes")], &env).unwrap();
    assert_eq!(p.graph().dependencies("C").collect::<Vec<_>>(), vec!["B"]);
    // The static graph counts both branches.
    let template = Template::from_value(t).unwrap();
    assert_eq!(
        template.dependency_graph().dependencies("C").collect::<Vec<_>>(),
        vec!["A", "B"]
    );
}
