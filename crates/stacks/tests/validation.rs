//! Template validation: what `Template::parse` refuses, with CloudFormation's messages.

use kd_stacks::Template;
use serde_json::{Value, json};

fn error(template: Value) -> String {
    let e = Template::from_value(template).unwrap_err();
    assert_eq!(e.code(), "ValidationError");
    e.to_string()
}

fn topic() -> Value {
    json!({"Type": "AWS::SNS::Topic"})
}

#[test]
fn structure() {
    assert_eq!(error(json!(["a"])), "Template format error: unsupported structure.");
    assert_eq!(
        error(json!({"Resources": {"A": topic()}, "Foo": 1, "Bar": 2})),
        "Template format error: Invalid template property or properties [Bar, Foo]"
    );
    assert!(
        error(json!({"AWSTemplateFormatVersion": "2010-09-10", "Resources": {"A": topic()}}))
            .starts_with("Template format error: Unsupported template version 2010-09-10")
    );
    assert!(
        Template::from_value(json!({"AWSTemplateFormatVersion": "2010-09-09", "Resources": {"A": topic()}})).is_ok()
    );
    assert!(
        error(json!({"Transform": "AWS::Serverless-2016-10-31", "Resources": {"A": topic()}}))
            .starts_with("Template format error: Transform AWS::Serverless-2016-10-31 is not supported")
    );
    assert_eq!(
        error(json!({"Description": 5, "Resources": {"A": topic()}})),
        "Template format error: Every Description member must be a string."
    );
}

#[test]
fn resources_required_and_well_formed() {
    for t in [json!({"Parameters": {}}), json!({"Resources": {}})] {
        assert_eq!(
            error(t),
            "Template format error: At least one Resources member must be defined."
        );
    }
    assert_eq!(
        error(json!({"Resources": {"A": {}}})),
        "Template format error: [/Resources/A] Every Resources object must contain a Type member."
    );
    assert_eq!(
        error(json!({"Resources": {"my-bucket": {"Type": "AWS::S3::Bucket"}}})),
        "Template format error: Resource name my-bucket is non alphanumeric."
    );
    assert_eq!(
        error(json!({"Resources": {"A": {"Type": "AWS::SNS::Topic", "Propertys": {}}}})),
        "Template format error: Invalid template resource property 'Propertys'"
    );
    assert!(
        error(json!({"Resources": {"A": {"Type": "AWS::SNS::Topic", "DeletionPolicy": "Keep"}}}))
            .contains("DeletionPolicy must be one of")
    );
    assert!(
        error(json!({"Resources": {"A": {"Type": "AWS::SNS::Topic", "UpdateReplacePolicy": "RetainExceptOnCreate"}}}))
            .contains("UpdateReplacePolicy must be one of")
    );
    let mut many = serde_json::Map::new();
    for i in 0..501 {
        many.insert(format!("T{i}"), topic());
    }
    assert_eq!(
        error(json!({"Resources": many})),
        "Template format error: Number of resources, 501, is greater than maximum allowed, 500"
    );
}

#[test]
fn unresolved_references() {
    assert_eq!(
        error(json!({"Resources": {"A": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": {"Ref": "Nope"}}}}})),
        "Template format error: Unresolved resource dependencies [Nope] in the Resources block of the template"
    );
    assert_eq!(
        error(json!({"Resources": {"A": {"Type": "AWS::SNS::Topic", "DependsOn": ["Zed", "B"]}, "B": topic()}})),
        "Template format error: Unresolved resource dependencies [Zed] in the Resources block of the template"
    );
    assert_eq!(
        error(json!({"Resources": {"A": {"Type": "AWS::SNS::Topic", "Properties": {
            "X": {"Fn::Sub": "${Missing1}-${AWS::Region}"}, "Y": {"Ref": "Missing2"}}}}})),
        "Template format error: Unresolved resource dependencies [Missing1, Missing2] in the Resources block of the template"
    );
    assert_eq!(
        error(json!({"Resources": {"A": {"Type": "AWS::SNS::Topic", "Properties": {
            "X": {"Fn::GetAtt": ["Ghost", "Arn"]}}}}})),
        "Template error: instance of Fn::GetAtt references undefined resource Ghost"
    );
    assert_eq!(
        error(json!({"Resources": {"A": {"Type": "AWS::SNS::Topic", "Properties": {
            "X": {"Fn::Sub": "${Ghost.Arn}"}}}}})),
        "Template error: instance of Fn::GetAtt references undefined resource Ghost"
    );
    assert_eq!(
        error(json!({"Resources": {"A": topic()}, "Outputs": {"O": {"Value": {"Ref": "Nope"}}}})),
        "Template format error: Unresolved resource dependencies [Nope] in the Outputs block of the template"
    );
    // A Sub variable defined in its own map is not a reference.
    assert!(
        Template::from_value(json!({"Resources": {"A": {"Type": "AWS::SNS::Topic", "Properties": {
        "X": {"Fn::Sub": ["${Local}", {"Local": "v"}]}}}}}))
        .is_ok()
    );
}

#[test]
fn circular_dependencies() {
    assert_eq!(
        error(json!({"Resources": {
            "A": {"Type": "AWS::SNS::Topic", "DependsOn": "B"},
            "B": {"Type": "AWS::SNS::Topic", "DependsOn": "A"}}})),
        "Circular dependency between resources: [A, B]"
    );
    assert_eq!(
        error(json!({"Resources": {
            "Role": {"Type": "AWS::IAM::Role", "Properties": {"Policies": [{"Resource": {"Fn::GetAtt": ["Fn", "Arn"]}}]}},
            "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Role": {"Fn::Sub": "${Role.Arn}"}}},
            "Other": {"Type": "AWS::SNS::Topic", "DependsOn": "Fn"}}})),
        "Circular dependency between resources: [Fn, Role]"
    );
}

#[test]
fn unsupported_functions() {
    let e = error(
        json!({"Resources": {"A": {"Type": "AWS::SNS::Topic", "Properties": {"X": {"Fn::Cidr": ["10.0.0.0/16", 2, 8]}}}}}),
    );
    assert!(
        e.starts_with(
            "Template format error: Encountered unsupported function: Fn::Cidr Supported functions are: [Fn::Base64,"
        ),
        "{e}"
    );
    let e = error(
        json!({"Resources": {"A": {"Type": "AWS::SNS::Topic", "Properties": {"X": {"Fn::Equals": ["a", "b"]}}}}}),
    );
    assert!(e.contains("unsupported function: Fn::Equals"), "{e}");
    let e = error(json!({"Conditions": {"C": {"Fn::If": ["C", true, false]}}, "Resources": {"A": topic()}}));
    assert!(e.contains("unsupported function: Fn::If"), "{e}");
}

#[test]
fn parameters_section() {
    assert_eq!(
        error(json!({"Parameters": {"P": {"Default": "x"}}, "Resources": {"A": topic()}})),
        "Template format error: Every Parameters object must contain a Type member."
    );
    assert_eq!(
        error(json!({"Parameters": {"P": {"Type": "Text"}}, "Resources": {"A": topic()}})),
        "Template format error: Unrecognized parameter type: Text"
    );
    assert_eq!(
        error(json!({"Parameters": {"p-1": {"Type": "String"}}, "Resources": {"A": topic()}})),
        "Template format error: Parameter name p-1 is non alphanumeric."
    );
}

#[test]
fn mappings_section() {
    assert_eq!(
        error(json!({"Mappings": {"M": {"k": {"a": {"nested": 1}}}}, "Resources": {"A": topic()}})),
        "Template format error: Every Mappings attribute must be a String or a List."
    );
    assert!(
        Template::from_value(json!({"Mappings": {"M": {"k": {"a": "x", "b": ["1", 2], "c": 3}}},
        "Resources": {"A": topic()}}))
        .is_ok()
    );
}

#[test]
fn conditions_section() {
    let t = |conditions: Value| {
        json!({"Parameters": {"Env": {"Type": "String"}}, "Conditions": conditions,
        "Resources": {"A": topic()}})
    };
    assert_eq!(
        error(t(json!({"C": {"Fn::Equals": [{"Ref": "A"}, "x"]}}))),
        "Template format error: Unresolved dependencies [A]. Cannot reference resources in the Conditions block of the template"
    );
    assert!(error(t(json!({"C": {"Condition": "Nope"}}))).contains("Unresolved condition dependency Nope"));
    assert_eq!(
        error(json!({"Resources": {"A": {"Type": "AWS::SNS::Topic", "Condition": "Nope"}}})),
        "Template format error: Unresolved condition dependency Nope in resource A"
    );
    assert_eq!(
        error(
            json!({"Resources": {"A": {"Type": "AWS::SNS::Topic", "Properties": {"X": {"Fn::If": ["Nope", 1, 2]}}}}})
        ),
        "Template error: unresolved condition dependency Nope in Fn::If"
    );
}

#[test]
fn outputs_section() {
    assert_eq!(
        error(json!({"Resources": {"A": topic()}, "Outputs": {"O": {"Description": "no value"}}})),
        "Template format error: Every Outputs member must contain a Value object"
    );
    assert_eq!(
        error(json!({"Resources": {"A": topic()}, "Outputs": {"O": {"Value": "v", "Export": {}}}})),
        "Template format error: Output O is malformed. The Name field of every Export member must be specified and consist only of alphanumeric characters, colons, or hyphens."
    );
}

#[test]
fn rules_section() {
    let e = error(json!({"Rules": {"R": {"Assertions": []}}, "Resources": {"A": topic()}}));
    assert!(e.contains("Rule R must contain a non-empty Assertions list"), "{e}");
    let e = error(
        json!({"Rules": {"R": {"Assertions": [{"Assert": {"Fn::Equals": [{"Ref": "A"}, "x"]}}]}},
        "Resources": {"A": topic()}}),
    );
    assert!(e.contains("Unresolved dependencies [A]"), "{e}");
}

#[test]
fn declarations_are_exposed() {
    let t = Template::parse(
        r#"{"Description": "d", "Parameters": {"P": {"Type": "Number", "Default": 1}},
            "Resources": {"B": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Snapshot", "Metadata": {"aws:cdk:path": "app/B"},
                "DependsOn": "C"},
              "C": {"Type": "AWS::SNS::Topic", "Condition": "Yes"}},
            "Conditions": {"Yes": {"Fn::Equals": ["a", "a"]}},
            "Outputs": {"O": {"Value": {"Ref": "B"}, "Description": "the bucket", "Condition": "Yes"}}}"#,
    )
    .unwrap();
    assert_eq!(t.description(), Some("d"));
    assert_eq!(t.parameters()[0].name, "P");
    let b = t.resource("B").unwrap();
    assert_eq!(b.resource_type, "AWS::S3::Bucket");
    assert_eq!(b.deletion_policy, Some(kd_stacks::Policy::Retain));
    assert_eq!(b.update_replace_policy, Some(kd_stacks::Policy::Snapshot));
    assert_eq!(b.depends_on, vec!["C"]);
    assert_eq!(b.properties, json!({}));
    assert_eq!(b.metadata, Some(json!({"aws:cdk:path": "app/B"})));
    assert_eq!(t.resource("C").unwrap().condition.as_deref(), Some("Yes"));
    assert_eq!(t.resources().count(), 2);
    let o = t.outputs().next().unwrap();
    assert_eq!((o.name.as_str(), o.description.as_deref()), ("O", Some("the bucket")));
    assert_eq!(t.dependency_graph().creation_order(), vec!["C", "B"]);
    assert_eq!(t.body()["Resources"]["B"]["Type"], json!("AWS::S3::Bucket"));
}

#[test]
fn capabilities() {
    let role = |props: Value| {
        Template::from_value(json!({"Resources": {"R": {"Type": "AWS::IAM::Role", "Properties": props}}})).unwrap()
    };
    let none: &[&str] = &[];
    let t = role(json!({}));
    assert_eq!(t.required_capability(), Some("CAPABILITY_IAM"));
    let e = t.check_capabilities(none).unwrap_err();
    assert_eq!(e.to_string(), "Requires capabilities : [CAPABILITY_IAM]");
    assert_eq!(e.code(), "InsufficientCapabilitiesException");
    assert!(t.check_capabilities(&["CAPABILITY_IAM"]).is_ok());
    assert!(t.check_capabilities(&["CAPABILITY_NAMED_IAM"]).is_ok());
    let t = role(json!({"RoleName": "fixed"}));
    assert_eq!(t.required_capability(), Some("CAPABILITY_NAMED_IAM"));
    assert_eq!(
        t.check_capabilities(&["CAPABILITY_IAM"]).unwrap_err().to_string(),
        "Requires capabilities : [CAPABILITY_NAMED_IAM]"
    );
    let t = Template::from_value(json!({"Resources": {"A": topic()}})).unwrap();
    assert_eq!(t.required_capability(), None);
    assert!(t.check_capabilities(none).is_ok());
}

#[test]
fn rules_without_a_service_behind_them_are_refused() {
    let e = error(json!({"Parameters": {"Vpc": {"Type": "AWS::EC2::VPC::Id"}},
        "Rules": {"R": {"Assertions": [{"Assert": {"Fn::Equals": [
            {"Fn::ValueOf": ["Vpc", "Tags.Env"]}, "prod"]}}]}},
        "Resources": {"A": topic()}}));
    assert!(
        e.starts_with("Template format error: Encountered unsupported function: Fn::ValueOf"),
        "{e}"
    );
}

#[test]
fn section_limits() {
    let many = |n: usize, v: Value| -> serde_json::Map<String, Value> {
        (0..n).map(|i| (format!("X{i}"), v.clone())).collect()
    };
    assert_eq!(
        error(json!({"Parameters": many(201, json!({"Type": "String"})), "Resources": {"A": topic()}})),
        "Template format error: Number of parameters, 201, is greater than maximum allowed, 200"
    );
    assert_eq!(
        error(json!({"Outputs": many(201, json!({"Value": "v"})), "Resources": {"A": topic()}})),
        "Template format error: Number of outputs, 201, is greater than maximum allowed, 200"
    );
    assert!(
        Template::from_value(json!({"Outputs": many(200, json!({"Value": "v"})), "Resources": {"A": topic()}})).is_ok()
    );
}
