use super::*;
use std::time::{Duration, UNIX_EPOCH};

fn err(json: &str, kind: DocKind) -> String {
    match PolicyDocument::parse(json, kind) {
        Ok(_) => panic!("accepted: {json}"),
        Err(e) => e.message().to_owned(),
    }
}

fn identity(json: &str) -> PolicyDocument {
    PolicyDocument::parse(json, DocKind::Identity).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// One Allow statement with this condition block.
fn cond_doc(condition: &str) -> PolicySet {
    let json = format!(
        r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{condition}}}}}"#
    );
    PolicySet::compile(&[identity(&json)])
}

fn allowed(set: &PolicySet, ctx: &ConditionContext) -> bool {
    set.evaluate(&Request::new("s3:GetObject", "arn:aws:s3:::b/k", ctx)) == Decision::Allow
}

fn ctx1(key: &str, value: &str) -> ConditionContext {
    ConditionContext::new().with(key, value)
}

#[test]
fn parse_errors_carry_aws_messages() {
    use DocKind::*;
    let stmt = r#""Effect":"Allow","Action":"s3:GetObject","Resource":"*""#;
    let doc = |s: &str| format!(r#"{{"Version":"2012-10-17","Statement":[{{{s}}}]}}"#);
    const SYNTAX: &str = "Syntax errors in policy.";
    assert_eq!(err("not json", Identity), SYNTAX);
    assert_eq!(err("[]", Identity), SYNTAX);
    assert_eq!(err(r#"{"Version":"2012-10-17"}"#, Identity), SYNTAX);
    assert_eq!(err(r#"{"Version":"2012-10-17","Statement":[]}"#, Identity), SYNTAX);
    assert_eq!(err(r#"{"Version":"2012-10-17","Statement":"x"}"#, Identity), SYNTAX);
    assert_eq!(
        err(
            &format!(r#"{{"Version":"2012-10-17","Bogus":1,"Statement":{{{stmt}}}}}"#),
            Identity
        ),
        SYNTAX
    );
    assert_eq!(err(&doc(&format!(r#"{stmt},"Extra":"x""#)), Identity), SYNTAX);
    assert_eq!(
        err(&doc(r#""Effect":"Maybe","Action":"s3:*","Resource":"*""#), Identity),
        SYNTAX
    );
    assert_eq!(err(&doc(r#""Action":"s3:*","Resource":"*""#), Identity), SYNTAX);
    assert_eq!(
        err(
            &doc(r#""Effect":"Allow","Action":"s3:*","NotAction":"s3:Get*","Resource":"*""#),
            Identity
        ),
        SYNTAX
    );
    assert_eq!(
        err(
            &doc(r#""Effect":"Allow","Action":"s3:*","Resource":"*","NotResource":"*""#),
            Identity
        ),
        SYNTAX
    );
    assert_eq!(
        err(&doc(r#""Effect":"Allow","Action":7,"Resource":"*""#), Identity),
        SYNTAX
    );
    assert_eq!(
        err(&doc(r#""Effect":"Allow","Action":"s3:*","Resource":[1]"#), Identity),
        SYNTAX
    );
    assert_eq!(
        err(
            &doc(&format!(r#"{stmt},"Condition":{{"StringWhatever":{{"k":"v"}}}}"#)),
            Identity
        ),
        SYNTAX
    );
    assert_eq!(
        err(&doc(&format!(r#"{stmt},"Condition":{{"StringEquals":"v"}}"#)), Identity),
        SYNTAX
    );
    assert_eq!(
        err(
            &doc(&format!(r#"{stmt},"Condition":{{"StringEquals":{{"k":{{"a":1}}}}}}"#)),
            Identity
        ),
        SYNTAX
    );
    // An unknown operator with an empty block is tolerated, as IAM does.
    assert!(
        PolicyDocument::parse(
            &doc(&format!(r#"{stmt},"Condition":{{"StringWhatever":{{}}}}"#)),
            Identity
        )
        .is_ok()
    );
    // Versions.
    assert_eq!(
        err(
            &format!(r#"{{"Version":"2012-10-18","Statement":{{{stmt}}}}}"#),
            Identity
        ),
        SYNTAX
    );
    assert_eq!(
        err(
            &format!(r#"{{"Version":"2099-01-01","Statement":{{"Principal":"*",{stmt}}}}}"#),
            Resource
        ),
        "The policy must contain a valid version string"
    );
    let old = identity(&format!(r#"{{"Version":"2008-10-17","Statement":{{{stmt}}}}}"#));
    assert_eq!(old.version(), PolicyVersion::V2008_10_17);
    assert_eq!(
        old.require_current_version().map_err(|e| e.message().to_owned()),
        Err("Policy document must be version 2012-10-17 or greater.".to_owned())
    );
    let none = identity(&format!(r#"{{"Statement":{{{stmt}}}}}"#));
    assert_eq!(none.version(), PolicyVersion::V2008_10_17);
    // Legacy parsing.
    const LEGACY: &str = "The policy failed legacy parsing";
    assert_eq!(
        err(&doc(r#""Effect":"allow","Action":"s3:*","Resource":"*""#), Identity),
        LEGACY
    );
    assert_eq!(
        err(
            &doc(&format!(
                r#"{stmt},"Condition":{{"DateLessThan":{{"aws:CurrentTime":"soon"}}}}"#
            )),
            Identity
        ),
        LEGACY
    );
    assert_eq!(
        err(
            &doc(r#""Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3::b""#),
            Identity
        ),
        LEGACY
    );
    // Principals.
    assert_eq!(
        err(&doc(&format!(r#"{stmt},"Principal":"*""#)), Identity),
        "Policy document should not specify a principal."
    );
    assert_eq!(
        err(
            &doc(&format!(r#"{stmt},"NotPrincipal":{{"AWS":"123456789012"}}"#)),
            Identity
        ),
        "Policy document should not specify a principal."
    );
    assert_eq!(err(&doc(stmt), Resource), "Missing required field Principal");
    assert_eq!(
        err(&doc(r#""Effect":"Allow","Action":"sts:AssumeRole""#), Trust),
        "Missing required field Principal"
    );
    assert_eq!(
        err(
            &doc(r#""Effect":"Allow","Principal":{"Bogus":"x"},"Action":"sts:AssumeRole""#),
            Trust
        ),
        SYNTAX
    );
    // Sids.
    assert_eq!(
        err(
            &format!(r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"A",{stmt}}},{{"Sid":"A",{stmt}}}]}}"#),
            Identity
        ),
        "Statement IDs (SID) in a single policy must be unique."
    );
    assert!(
        PolicyDocument::parse(
            &format!(r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"A",{stmt}}},{{"Sid":"B",{stmt}}}]}}"#),
            Identity
        )
        .is_ok()
    );
    // Actions and resources.
    assert_eq!(
        err(&doc(r#""Effect":"Allow","Resource":"*""#), Identity),
        "Policy statement must contain actions."
    );
    assert_eq!(
        err(&doc(r#""Effect":"Allow","Action":[],"Resource":"*""#), Identity),
        "Policy statement must contain actions."
    );
    assert_eq!(
        err(&doc(r#""Effect":"Allow","Action":"s3:*""#), Identity),
        "Policy statement must contain resources."
    );
    assert_eq!(
        err(&doc(r#""Effect":"Allow","Action":"s3:*","Resource":[]"#), Identity),
        "Policy statement must contain resources."
    );
    assert_eq!(
        err(
            &doc(
                r#""Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole","Resource":"*""#
            ),
            Trust
        ),
        "Has prohibited field Resource"
    );
    assert_eq!(
        err(
            &doc(r#""Effect":"Allow","Action":"s3:*","Resource":"bucket""#),
            Identity
        ),
        r#"Resource bucket must be in ARN format or "*"."#
    );
    assert_eq!(
        err(
            &doc(r#""Effect":"Allow","Action":"s3:*","Resource":"arn:foo:s3:::b""#),
            Identity
        ),
        r#"Partition "foo" is not valid for resource "arn:foo:s3:::b"."#
    );
    assert_eq!(
        err(
            &doc(r#""Effect":"Allow","Action":"s3:*","Resource":"arn:aws:*:::b""#),
            Identity
        ),
        "Resource vendor must be fully qualified and cannot contain regexes."
    );
    assert_eq!(
        err(
            &doc(r#""Effect":"Allow","Action":"GetObject","Resource":"*""#),
            Identity
        ),
        "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."
    );
    assert_eq!(
        err(
            &doc(r#""Effect":"Allow","Action":"s3:Get:Object","Resource":"*""#),
            Identity
        ),
        "Actions/Condition can contain only one colon."
    );
    assert_eq!(
        err(&doc(r#""Effect":"Allow","Action":"s 3:Get","Resource":"*""#), Identity),
        "Vendor s 3 is not valid"
    );
    assert_eq!(
        err(&doc(r#""Effect":"Allow","Action":"s3*:Get","Resource":"*""#), Identity),
        "Vendor s3* is not valid"
    );
    assert_eq!(
        err(
            &doc(r#""Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"s3:GetObject""#),
            Trust
        ),
        "AssumeRole policy may only specify STS AssumeRole actions."
    );
    assert_eq!(
        err(
            &doc(r#""Effect":"Allow","Principal":{"AWS":"bob"},"Action":"sts:AssumeRole""#),
            Trust
        ),
        r#"Invalid principal in policy: "AWS":"bob""#
    );
    assert_eq!(
        err(
            &doc(r#""Effect":"Allow","Principal":{"Service":"lambda"},"Action":"sts:AssumeRole""#),
            Trust
        ),
        r#"Invalid principal in policy: "SERVICE":"lambda""#
    );
    // Size.
    let big = format!(
        r#"{{"Version":"2012-10-17","Statement":{{"Sid":"{}",{stmt}}}}}"#,
        "x".repeat(MAX_POLICY_BYTES)
    );
    assert_eq!(err(&big, Identity), "Cannot exceed quota for PolicySize: 131072");
}

#[test]
fn documents_keep_their_text_and_accept_the_usual_shapes() {
    let json = r#"{"Version":"2012-10-17","Id":"x",
      "Statement":{"Sid":"Read","Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],
        "Resource":["arn:aws:s3:::raw-bucket","arn:aws:s3:::raw-bucket/*"],
        "Condition":{"StringLike":{"s3:prefix":["raw/*"]},"Bool":{"aws:SecureTransport":true},
                     "NumericLessThan":{"s3:max-keys":10}}}}"#;
    let doc = identity(json);
    assert_eq!(doc.json(), json);
    assert_eq!(doc.id(), Some("x"));
    assert_eq!(doc.kind(), DocKind::Identity);
    assert_eq!(doc.statement_count(), 1);
    let ctx = ConditionContext::new()
        .s3_prefix("raw/2024")
        .secure_transport(true)
        .with("s3:max-keys", "5");
    let req = Request::new("s3:ListBucket", "arn:aws:s3:::raw-bucket", &ctx);
    assert_eq!(doc.evaluate(&req), Decision::Allow);
    assert_eq!(PolicySet::compile(&[doc]).evaluate(&req), Decision::Allow);
}

#[test]
fn action_matching_is_case_insensitive_with_wildcards() {
    let set = PolicySet::compile(&[identity(
        r#"{"Version":"2012-10-17","Statement":[
          {"Effect":"Allow","Action":["s3:Get*","kinesis:Describe?tream","iam:*AccessKey*"],"Resource":"*"},
          {"Effect":"Allow","Action":"*:ListStreams","Resource":"*"}]}"#,
    )]);
    let ctx = ConditionContext::new();
    let d = |a: &str| set.evaluate(&Request::new(a, "*", &ctx));
    assert_eq!(d("s3:GetObject"), Decision::Allow);
    assert_eq!(d("S3:getobject"), Decision::Allow);
    assert_eq!(d("s3:Get"), Decision::Allow);
    assert_eq!(d("s3:PutObject"), Decision::ImplicitDeny);
    assert_eq!(d("s3-object-lambda:GetObject"), Decision::ImplicitDeny);
    assert_eq!(d("kinesis:DescribeStream"), Decision::Allow);
    assert_eq!(d("KINESIS:describestream"), Decision::Allow);
    assert_eq!(d("kinesis:DescribeStreamSummary"), Decision::ImplicitDeny);
    assert_eq!(d("iam:CreateAccessKey"), Decision::Allow);
    assert_eq!(d("iam:ListAccessKeys"), Decision::Allow);
    assert_eq!(d("iam:CreateRole"), Decision::ImplicitDeny);
    assert_eq!(d("kinesis:ListStreams"), Decision::Allow);
    assert_eq!(d("firehose:liststreams"), Decision::Allow);
    assert_eq!(d("noservice"), Decision::ImplicitDeny);
    assert_eq!(d(""), Decision::ImplicitDeny);
}

#[test]
fn resource_matching() {
    let set = PolicySet::compile(&[identity(
        r#"{"Version":"2012-10-17","Statement":[
          {"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::data/*"},
          {"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::data"},
          {"Effect":"Allow","Action":"kinesis:PutRecord","Resource":"arn:aws:kinesis:*:123456789012:stream/in-?"}]}"#,
    )]);
    let ctx = ConditionContext::new();
    let d = |a: &str, r: &str| set.evaluate(&Request::new(a, r, &ctx));
    assert_eq!(d("s3:GetObject", "arn:aws:s3:::data/a/b.json"), Decision::Allow);
    assert_eq!(d("s3:GetObject", "arn:aws:s3:::data"), Decision::ImplicitDeny);
    assert_eq!(d("s3:GetObject", "arn:aws:s3:::Data/a"), Decision::ImplicitDeny);
    assert_eq!(d("s3:GetObject", "arn:aws:s3:::database/a"), Decision::ImplicitDeny);
    assert_eq!(d("s3:ListBucket", "arn:aws:s3:::data"), Decision::Allow);
    assert_eq!(d("s3:ListBucket", "arn:aws:s3:::data/x"), Decision::ImplicitDeny);
    assert_eq!(
        d(
            "kinesis:PutRecord",
            "arn:aws:kinesis:eu-west-1:123456789012:stream/in-1"
        ),
        Decision::Allow
    );
    assert_eq!(
        d(
            "kinesis:PutRecord",
            "arn:aws:kinesis:eu-west-1:123456789012:stream/in-12"
        ),
        Decision::ImplicitDeny
    );
    assert_eq!(
        d(
            "kinesis:PutRecord",
            "arn:aws:kinesis:eu-west-1:999999999999:stream/in-1"
        ),
        Decision::ImplicitDeny
    );
    assert_eq!(d("kinesis:PutRecord", "*"), Decision::ImplicitDeny);
}

#[test]
fn not_action_and_not_resource_invert() {
    let set = PolicySet::compile(&[identity(
        r#"{"Version":"2012-10-17","Statement":[
          {"Effect":"Allow","NotAction":["iam:*","s3:Delete*"],"Resource":"*"},
          {"Effect":"Deny","Action":"s3:GetObject","NotResource":["arn:aws:s3:::public/*","arn:aws:s3:::shared/*"]}]}"#,
    )]);
    let ctx = ConditionContext::new();
    let d = |a: &str, r: &str| set.evaluate(&Request::new(a, r, &ctx));
    assert_eq!(d("kinesis:PutRecord", "arn:aws:kinesis:r:1:stream/s"), Decision::Allow);
    assert_eq!(d("iam:CreateUser", "*"), Decision::ImplicitDeny);
    assert_eq!(d("IAM:CreateUser", "*"), Decision::ImplicitDeny);
    assert_eq!(d("s3:DeleteObject", "arn:aws:s3:::public/x"), Decision::ImplicitDeny);
    assert_eq!(d("s3:GetObject", "arn:aws:s3:::public/x"), Decision::Allow);
    assert_eq!(d("s3:GetObject", "arn:aws:s3:::shared/x"), Decision::Allow);
    assert_eq!(d("s3:GetObject", "arn:aws:s3:::private/x"), Decision::ExplicitDeny);
}

#[test]
fn explicit_deny_wins_across_documents() {
    let allow = identity(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#);
    let deny = identity(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"s3:DeleteObject","Resource":"arn:aws:s3:::prod/*"}}"#,
    );
    let set = PolicySet::compile(&[allow.clone(), deny.clone()]);
    let ctx = ConditionContext::new();
    let d = |a: &str, r: &str| set.evaluate(&Request::new(a, r, &ctx));
    assert_eq!(d("s3:DeleteObject", "arn:aws:s3:::prod/x"), Decision::ExplicitDeny);
    assert_eq!(d("s3:DeleteObject", "arn:aws:s3:::dev/x"), Decision::Allow);
    assert_eq!(d("s3:PutObject", "arn:aws:s3:::prod/x"), Decision::Allow);
    assert_eq!(
        PolicySet::compile(&[deny]).evaluate(&Request::new("s3:PutObject", "arn:aws:s3:::prod/x", &ctx)),
        Decision::ImplicitDeny
    );
    assert_eq!(
        PolicySet::default().evaluate(&Request::new("s3:GetObject", "*", &ctx)),
        Decision::ImplicitDeny
    );
    assert!(PolicySet::default().is_empty());
    assert_eq!(Decision::Allow.combine(Decision::ExplicitDeny), Decision::ExplicitDeny);
    assert_eq!(Decision::ImplicitDeny.combine(Decision::Allow), Decision::Allow);
    assert_eq!(
        Decision::ImplicitDeny.combine(Decision::ImplicitDeny),
        Decision::ImplicitDeny
    );
}

#[test]
fn policy_variables_in_resources() {
    let set = PolicySet::compile(&[identity(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::home/${aws:username}/*"}}"#,
    )]);
    let bob = ConditionContext::new().username("bob");
    assert_eq!(
        set.evaluate(&Request::new("s3:GetObject", "arn:aws:s3:::home/bob/f", &bob)),
        Decision::Allow
    );
    assert_eq!(
        set.evaluate(&Request::new("s3:GetObject", "arn:aws:s3:::home/eve/f", &bob)),
        Decision::ImplicitDeny
    );
    let nobody = ConditionContext::new();
    assert_eq!(
        set.evaluate(&Request::new("s3:GetObject", "arn:aws:s3:::home/bob/f", &nobody)),
        Decision::ImplicitDeny
    );
    // Version 2008-10-17: the text is literal.
    let old = PolicySet::compile(&[identity(
        r#"{"Version":"2008-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::home/${aws:username}/*"}}"#,
    )]);
    assert_eq!(
        old.evaluate(&Request::new("s3:GetObject", "arn:aws:s3:::home/bob/f", &bob)),
        Decision::ImplicitDeny
    );
    assert_eq!(
        old.evaluate(&Request::new(
            "s3:GetObject",
            "arn:aws:s3:::home/${aws:username}/f",
            &bob
        )),
        Decision::Allow
    );
    // In condition values too.
    let set = cond_doc(r#"{"StringLike":{"s3:prefix":"${aws:username}/*"}}"#);
    assert!(allowed(&set, &bob.clone().s3_prefix("bob/x")));
    assert!(!allowed(&set, &bob.s3_prefix("eve/x")));
}

#[test]
fn string_operators() {
    let s = cond_doc(r#"{"StringEquals":{"aws:SourceAccount":["111111111111","222222222222"]}}"#);
    assert!(allowed(&s, &ctx1("aws:SourceAccount", "222222222222")));
    assert!(
        allowed(&s, &ctx1("AWS:SOURCEACCOUNT", "111111111111")),
        "keys are case-insensitive"
    );
    assert!(!allowed(&s, &ctx1("aws:SourceAccount", "333333333333")));
    assert!(!allowed(&s, &ConditionContext::new()), "missing key fails");

    let s = cond_doc(r#"{"StringEquals":{"k":"a*"}}"#);
    assert!(allowed(&s, &ctx1("k", "a*")));
    assert!(!allowed(&s, &ctx1("k", "abc")), "no wildcards in StringEquals");

    let s = cond_doc(r#"{"StringNotEquals":{"k":["x","y"]}}"#);
    assert!(allowed(&s, &ctx1("k", "z")));
    assert!(!allowed(&s, &ctx1("k", "x")));
    assert!(
        allowed(&s, &ConditionContext::new()),
        "negated operators match a missing key"
    );

    let s = cond_doc(r#"{"StringEqualsIgnoreCase":{"k":"Hello"}}"#);
    assert!(allowed(&s, &ctx1("k", "hELLO")));
    assert!(!allowed(&s, &ctx1("k", "hell")));
    let s = cond_doc(r#"{"StringNotEqualsIgnoreCase":{"k":"Hello"}}"#);
    assert!(!allowed(&s, &ctx1("k", "HELLO")));
    assert!(allowed(&s, &ctx1("k", "bye")));

    let s = cond_doc(r#"{"StringLike":{"k":["logs/*","tmp/??"]}}"#);
    assert!(allowed(&s, &ctx1("k", "logs/a/b")));
    assert!(allowed(&s, &ctx1("k", "tmp/ab")));
    assert!(!allowed(&s, &ctx1("k", "tmp/abc")));
    assert!(!allowed(&s, &ctx1("k", "Logs/a")));
    let s = cond_doc(r#"{"StringNotLike":{"k":"logs/*"}}"#);
    assert!(!allowed(&s, &ctx1("k", "logs/x")));
    assert!(allowed(&s, &ctx1("k", "data/x")));

    let s = cond_doc(r#"{"BinaryEquals":{"k":"QmluYXJ5"}}"#);
    assert!(allowed(&s, &ctx1("k", "QmluYXJ5")));
    assert!(!allowed(&s, &ctx1("k", "qmluyxj5")));
}

#[test]
fn keys_and_operators_combine() {
    // Keys AND, values OR, operators AND.
    let s = cond_doc(r#"{"StringEquals":{"a":["1","2"],"b":"x"},"Bool":{"aws:SecureTransport":"true"}}"#);
    let base = ConditionContext::new().with("a", "2").with("b", "x");
    assert!(!allowed(&s, &base));
    assert!(allowed(&s, &base.clone().secure_transport(true)));
    assert!(!allowed(&s, &base.clone().secure_transport(false)));
    assert!(!allowed(
        &s,
        &ConditionContext::new()
            .with("a", "3")
            .with("b", "x")
            .secure_transport(true)
    ));
    assert!(!allowed(
        &s,
        &ConditionContext::new().with("a", "1").secure_transport(true)
    ));
}

#[test]
fn arn_operators() {
    let s = cond_doc(r#"{"ArnLike":{"aws:SourceArn":"arn:aws:s3:::bucket-*"}}"#);
    assert!(allowed(
        &s,
        &ConditionContext::new().source_arn("arn:aws:s3:::bucket-1")
    ));
    assert!(!allowed(&s, &ConditionContext::new().source_arn("arn:aws:s3:::other")));
    assert!(!allowed(&s, &ConditionContext::new().source_arn("not-an-arn")));
    let s = cond_doc(r#"{"ArnEquals":{"aws:SourceArn":"arn:aws:lambda:us-east-1:123456789012:function:f"}}"#);
    assert!(allowed(
        &s,
        &ctx1("aws:SourceArn", "arn:aws:lambda:us-east-1:123456789012:function:f")
    ));
    assert!(!allowed(
        &s,
        &ctx1("aws:SourceArn", "arn:aws:lambda:us-east-1:123456789012:function:f:1")
    ));
    let s = cond_doc(r#"{"ArnNotEquals":{"aws:SourceArn":"arn:aws:s3:::b"}}"#);
    assert!(!allowed(&s, &ctx1("aws:SourceArn", "arn:aws:s3:::b")));
    assert!(allowed(&s, &ctx1("aws:SourceArn", "arn:aws:s3:::c")));
    let s = cond_doc(r#"{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/admin-*"}}"#);
    assert!(!allowed(
        &s,
        &ConditionContext::new().principal_arn("arn:aws:iam::123456789012:role/admin-x")
    ));
    assert!(allowed(
        &s,
        &ConditionContext::new().principal_arn("arn:aws:iam::123456789012:role/dev")
    ));
}

#[test]
fn bool_and_numeric_operators() {
    let s = cond_doc(r#"{"Bool":{"aws:SecureTransport":"false"}}"#);
    assert!(allowed(&s, &ConditionContext::new().secure_transport(false)));
    assert!(!allowed(&s, &ConditionContext::new().secure_transport(true)));
    assert!(!allowed(&s, &ConditionContext::new()));
    assert!(!allowed(&s, &ctx1("aws:SecureTransport", "maybe")));

    let n = |op: &str, v: &str| cond_doc(&format!(r#"{{"{op}":{{"n":"{v}"}}}}"#));
    let c = |v: &str| ctx1("n", v);
    assert!(allowed(&n("NumericEquals", "10"), &c("10")));
    assert!(allowed(&n("NumericEquals", "10"), &c("10.0")));
    assert!(!allowed(&n("NumericEquals", "10"), &c("11")));
    assert!(!allowed(&n("NumericEquals", "10"), &c("ten")));
    assert!(allowed(&n("NumericNotEquals", "10"), &c("11")));
    assert!(!allowed(&n("NumericNotEquals", "10"), &c("10")));
    assert!(allowed(&n("NumericLessThan", "10"), &c("9.5")));
    assert!(!allowed(&n("NumericLessThan", "10"), &c("10")));
    assert!(allowed(&n("NumericLessThanEquals", "10"), &c("10")));
    assert!(!allowed(&n("NumericLessThanEquals", "10"), &c("11")));
    assert!(allowed(&n("NumericGreaterThan", "10"), &c("11")));
    assert!(!allowed(&n("NumericGreaterThan", "10"), &c("10")));
    assert!(allowed(&n("NumericGreaterThanEquals", "10"), &c("10")));
    assert!(!allowed(&n("NumericGreaterThanEquals", "10"), &c("-1")));
    assert!(!allowed(&n("NumericLessThan", "10"), &ConditionContext::new()));
}

#[test]
fn date_operators() {
    let at = |secs: u64| ConditionContext::new().current_time(UNIX_EPOCH + Duration::from_secs(secs));
    // 2023-11-14T22:13:20Z = 1700000000.
    let lt = cond_doc(r#"{"DateLessThan":{"aws:CurrentTime":"2023-11-14T22:13:20Z"}}"#);
    assert!(allowed(&lt, &at(1_699_999_999)));
    assert!(!allowed(&lt, &at(1_700_000_000)));
    let gt = cond_doc(r#"{"DateGreaterThan":{"aws:CurrentTime":"1700000000"}}"#);
    assert!(allowed(&gt, &at(1_700_000_001)));
    assert!(!allowed(&gt, &at(1_700_000_000)));
    let eq = cond_doc(r#"{"DateEquals":{"aws:EpochTime":"2023-11-14T23:13:20+01:00"}}"#);
    assert!(allowed(&eq, &at(1_700_000_000)));
    assert!(!allowed(&eq, &at(1_700_000_001)));
    let ne = cond_doc(r#"{"DateNotEquals":{"d":"2023-11-14"}}"#);
    assert!(allowed(&ne, &ctx1("d", "2023-11-15")));
    assert!(!allowed(&ne, &ctx1("d", "2023-11-14T00:00:00Z")));
    let le = cond_doc(r#"{"DateLessThanEquals":{"d":"2023-11-14"},"DateGreaterThanEquals":{"d":"2023-11-13"}}"#);
    assert!(allowed(&le, &ctx1("d", "2023-11-14")));
    assert!(allowed(&le, &ctx1("d", "2023-11-13T12:00:00Z")));
    assert!(!allowed(&le, &ctx1("d", "2023-11-14T00:00:01Z")));
    // Without a pinned time, aws:CurrentTime is the wall clock.
    let past = cond_doc(r#"{"DateGreaterThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}"#);
    assert!(allowed(&past, &ConditionContext::new()));
    let future = cond_doc(r#"{"DateGreaterThan":{"aws:CurrentTime":"2999-01-01T00:00:00Z"}}"#);
    assert!(!allowed(&future, &ConditionContext::new()));
}

#[test]
fn ip_address_operators() {
    let s = cond_doc(r#"{"IpAddress":{"aws:SourceIp":["192.0.2.0/24","2001:db8::/32","203.0.113.7"]}}"#);
    let ip = |a: &str| ConditionContext::new().source_ip(a.parse().expect("ip"));
    assert!(allowed(&s, &ip("192.0.2.77")));
    assert!(!allowed(&s, &ip("192.0.3.1")));
    assert!(allowed(&s, &ip("2001:db8:abcd::1")));
    assert!(!allowed(&s, &ip("2001:db9::1")));
    assert!(allowed(&s, &ip("203.0.113.7")));
    assert!(!allowed(&s, &ip("203.0.113.8")));
    assert!(!allowed(&s, &ConditionContext::new()));
    assert!(!allowed(&s, &ctx1("aws:SourceIp", "garbage")));
    let n = cond_doc(r#"{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#);
    assert!(allowed(&n, &ip("192.0.2.1")));
    assert!(!allowed(&n, &ip("10.9.8.7")));
    let v6 = cond_doc(r#"{"IpAddress":{"aws:SourceIp":"::1/128"}}"#);
    assert!(allowed(&v6, &ip("::1")));
    assert!(!allowed(&v6, &ip("127.0.0.1")));
}

#[test]
fn if_exists_and_null() {
    let s = cond_doc(r#"{"StringEqualsIfExists":{"aws:SourceAccount":"111111111111"}}"#);
    assert!(allowed(&s, &ConditionContext::new()));
    assert!(allowed(&s, &ConditionContext::new().source_account("111111111111")));
    assert!(!allowed(&s, &ConditionContext::new().source_account("222222222222")));
    let s = cond_doc(r#"{"ArnLikeIfExists":{"aws:SourceArn":"arn:aws:s3:::b"}}"#);
    assert!(allowed(&s, &ConditionContext::new()));
    assert!(!allowed(&s, &ConditionContext::new().source_arn("arn:aws:s3:::c")));
    let s = cond_doc(r#"{"NumericLessThanIfExists":{"n":"3"}}"#);
    assert!(allowed(&s, &ConditionContext::new()));
    assert!(!allowed(&s, &ctx1("n", "4")));

    let absent = cond_doc(r#"{"Null":{"aws:TokenIssueTime":"true"}}"#);
    assert!(allowed(&absent, &ConditionContext::new()));
    assert!(!allowed(&absent, &ctx1("aws:TokenIssueTime", "x")));
    let present = cond_doc(r#"{"Null":{"aws:TokenIssueTime":false}}"#);
    assert!(!allowed(&present, &ConditionContext::new()));
    assert!(allowed(&present, &ctx1("aws:TokenIssueTime", "x")));
}

#[test]
fn set_operators() {
    let tags = |v: &[&str]| ConditionContext::new().with_values("aws:TagKeys", v.iter().copied());
    let any = cond_doc(r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["env","team"]}}"#);
    assert!(allowed(&any, &tags(&["env", "other"])));
    assert!(!allowed(&any, &tags(&["other"])));
    assert!(
        !allowed(&any, &ConditionContext::new()),
        "ForAnyValue with no values is false"
    );
    let all = cond_doc(r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["env","team"]}}"#);
    assert!(allowed(&all, &tags(&["env", "team"])));
    assert!(allowed(&all, &tags(&["env"])));
    assert!(!allowed(&all, &tags(&["env", "other"])));
    assert!(
        allowed(&all, &ConditionContext::new()),
        "ForAllValues with no values is true"
    );
    let any_like = cond_doc(r#"{"ForAnyValue:StringLike":{"aws:TagKeys":"aws-glue-*"}}"#);
    assert!(allowed(&any_like, &tags(&["x", "aws-glue-service-resource"])));
    let all_not = cond_doc(r#"{"ForAllValues:StringNotEquals":{"aws:TagKeys":["secret"]}}"#);
    assert!(allowed(&all_not, &tags(&["a", "b"])));
    assert!(!allowed(&all_not, &tags(&["a", "secret"])));
    let any_not = cond_doc(r#"{"ForAnyValue:StringNotEquals":{"aws:TagKeys":["secret"]}}"#);
    assert!(allowed(&any_not, &tags(&["a", "secret"])));
    assert!(!allowed(&any_not, &tags(&["secret"])));
    let any_if = cond_doc(r#"{"ForAnyValue:StringEqualsIfExists":{"aws:TagKeys":"env"}}"#);
    assert!(allowed(&any_if, &ConditionContext::new()));
    // Without a set operator, a multi-valued key matches if any value matches.
    let single = cond_doc(r#"{"StringEquals":{"aws:TagKeys":"env"}}"#);
    assert!(allowed(&single, &tags(&["x", "env"])));
}

#[test]
fn trust_policy_with_service_principal() {
    let doc = PolicyDocument::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
          "Principal":{"Service":["lambda.amazonaws.com","firehose.amazonaws.com"]},"Action":"sts:AssumeRole"}]}"#,
        DocKind::Trust,
    )
    .expect("valid trust policy");
    let ctx = ConditionContext::new();
    let role = "arn:aws:iam::123456789012:role/r";
    let svc = |s: &str| Principal::Service(s.to_owned());
    assert_eq!(
        principal_allowed(&doc, &svc("lambda.amazonaws.com"), "sts:AssumeRole", role, &ctx),
        Decision::Allow
    );
    assert_eq!(
        principal_allowed(&doc, &svc("firehose.amazonaws.com"), "sts:assumerole", role, &ctx),
        Decision::Allow
    );
    assert_eq!(
        principal_allowed(&doc, &svc("glue.amazonaws.com"), "sts:AssumeRole", role, &ctx),
        Decision::ImplicitDeny
    );
    assert_eq!(
        principal_allowed(&doc, &svc("lambda.amazonaws.com"), "sts:TagSession", role, &ctx),
        Decision::ImplicitDeny
    );
    let acct = Principal::Aws("123456789012".to_owned());
    assert_eq!(
        principal_allowed(&doc, &acct, "sts:AssumeRole", role, &ctx),
        Decision::ImplicitDeny
    );
    assert_eq!(
        principal_allowed(&doc, &Principal::Anonymous, "sts:AssumeRole", role, &ctx),
        Decision::ImplicitDeny
    );
}

#[test]
fn trust_policy_with_account_principal_and_conditions() {
    let doc = PolicyDocument::parse(
        r#"{"Version":"2012-10-17","Statement":[
          {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:root"},"Action":"sts:AssumeRole"},
          {"Effect":"Allow","Principal":{"AWS":["222222222222","arn:aws:iam::333333333333:role/ci/deployer"]},
           "Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"xyz"}}},
          {"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::111111111111:user/mallory"},"Action":"sts:*"}]}"#,
        DocKind::Trust,
    )
    .expect("valid trust policy");
    let role = "arn:aws:iam::999999999999:role/target";
    let none = ConditionContext::new();
    let ext = ConditionContext::new().with("sts:ExternalId", "xyz");
    let aws = |s: &str| Principal::Aws(s.to_owned());
    let d = |p: &Principal, ctx: &ConditionContext| principal_allowed(&doc, p, "sts:AssumeRole", role, ctx);
    assert_eq!(d(&aws("111111111111"), &none), Decision::Allow);
    assert_eq!(d(&aws("arn:aws:iam::111111111111:user/alice"), &none), Decision::Allow);
    assert_eq!(
        d(&aws("arn:aws:iam::111111111111:user/mallory"), &none),
        Decision::ExplicitDeny
    );
    assert_eq!(
        d(&aws("arn:aws:iam::444444444444:user/alice"), &none),
        Decision::ImplicitDeny
    );
    assert_eq!(
        d(&aws("arn:aws:iam::222222222222:role/x"), &none),
        Decision::ImplicitDeny
    );
    assert_eq!(d(&aws("arn:aws:iam::222222222222:role/x"), &ext), Decision::Allow);
    assert_eq!(
        d(&aws("arn:aws:iam::333333333333:role/ci/deployer"), &ext),
        Decision::Allow
    );
    assert_eq!(
        d(&aws("arn:aws:sts::333333333333:assumed-role/deployer/s1"), &ext),
        Decision::Allow
    );
    assert_eq!(
        d(&aws("arn:aws:sts::333333333333:assumed-role/other/s1"), &ext),
        Decision::ImplicitDeny
    );
    assert_eq!(
        d(&aws("arn:aws:iam::333333333333:role/other"), &ext),
        Decision::ImplicitDeny
    );
    assert_eq!(
        d(&Principal::Service("lambda.amazonaws.com".into()), &ext),
        Decision::ImplicitDeny
    );
}

#[test]
fn resource_policy_principals() {
    // A Lambda function policy letting S3 invoke it for one bucket, and a public-read bucket policy.
    let lambda = PolicyDocument::parse(
        r#"{"Version":"2012-10-17","Id":"default","Statement":[{"Sid":"s3","Effect":"Allow",
          "Principal":{"Service":"s3.amazonaws.com"},"Action":"lambda:InvokeFunction",
          "Resource":"arn:aws:lambda:us-east-1:123456789012:function:f",
          "Condition":{"StringEquals":{"AWS:SourceAccount":"123456789012"},
                       "ArnLike":{"AWS:SourceArn":"arn:aws:s3:::uploads"}}}]}"#,
        DocKind::Resource,
    )
    .expect("valid function policy");
    let f = "arn:aws:lambda:us-east-1:123456789012:function:f";
    let s3 = Principal::Service("s3.amazonaws.com".into());
    let good = ConditionContext::new()
        .source_account("123456789012")
        .source_arn("arn:aws:s3:::uploads");
    let bad = ConditionContext::new()
        .source_account("123456789012")
        .source_arn("arn:aws:s3:::elsewhere");
    assert_eq!(
        principal_allowed(&lambda, &s3, "lambda:InvokeFunction", f, &good),
        Decision::Allow
    );
    assert_eq!(
        principal_allowed(&lambda, &s3, "lambda:InvokeFunction", f, &bad),
        Decision::ImplicitDeny
    );
    assert_eq!(
        principal_allowed(&lambda, &s3, "lambda:InvokeFunction", &format!("{f}:2"), &good),
        Decision::ImplicitDeny
    );

    let bucket = PolicyDocument::parse(
        r#"{"Version":"2012-10-17","Statement":[
          {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::pub/*"},
          {"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"s3:PutObject","Resource":"arn:aws:s3:::pub/*"}]}"#,
        DocKind::Resource,
    )
    .expect("valid bucket policy");
    let ctx = ConditionContext::new();
    let obj = "arn:aws:s3:::pub/index.html";
    assert_eq!(
        principal_allowed(&bucket, &Principal::Anonymous, "s3:GetObject", obj, &ctx),
        Decision::Allow
    );
    assert_eq!(
        principal_allowed(&bucket, &Principal::Anonymous, "s3:PutObject", obj, &ctx),
        Decision::ExplicitDeny
    );
    let insider = Principal::Aws("arn:aws:iam::123456789012:user/u".into());
    assert_eq!(
        principal_allowed(&bucket, &insider, "s3:PutObject", obj, &ctx),
        Decision::ImplicitDeny
    );
}

#[test]
fn policy_set_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PolicySet>();
    assert_send_sync::<PolicyDocument>();
    assert_send_sync::<ConditionContext>();
}

mod props {
    use super::super::glob::{Glob, GlobSyntax, ReqResource, ResPat};
    use super::*;
    use proptest::prelude::*;

    const SYNTAX: GlobSyntax = GlobSyntax {
        wildcards: true,
        variables: true,
    };

    fn naive(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => naive(&p[1..], t) || (!t.is_empty() && naive(p, &t[1..])),
            (Some('?'), Some(_)) => naive(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => naive(&p[1..], &t[1..]),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn glob_never_panics(pattern in "[a*?:/${}é]{0,24}", text in "[a:/é*?]{0,32}") {
            let g = Glob::compile(&pattern, SYNTAX, false);
            let _ = g.matches(&text, false, None);
            let _ = g.matches(&text, true, Some(&ConditionContext::new().username("a")));
            let r = ResPat::compile(&pattern, true);
            let _ = r.matches(&ReqResource::new(&text), None);
            let r = ResPat::compile(&format!("arn:{pattern}"), true);
            let _ = r.matches(&ReqResource::new(&format!("arn:{text}")), None);
        }

        #[test]
        fn glob_agrees_with_a_naive_matcher(pattern in "[ab*?é]{0,10}", text in "[abé]{0,12}") {
            let syntax = GlobSyntax { wildcards: true, variables: false };
            let p: Vec<char> = pattern.chars().collect();
            let t: Vec<char> = text.chars().collect();
            prop_assert_eq!(Glob::compile(&pattern, syntax, false).matches(&text, false, None), naive(&p, &t));
        }

        #[test]
        fn evaluation_never_panics(action in "[a-zA-Z0-9:*?-]{0,20}", resource in "[a-z0-9:/*?${}-]{0,40}") {
            let set = PolicySet::compile(&[identity(
                r#"{"Version":"2012-10-17","Statement":[
                  {"Effect":"Allow","Action":["s3:Get*","*:List?","kinesis:*"],"Resource":["arn:aws:s3:::b/*","arn:aws:kinesis:*:*:*"]},
                  {"Effect":"Deny","NotAction":"s3:*","NotResource":"arn:aws:s3:::${aws:username}/*"}]}"#,
            )]);
            let ctx = ConditionContext::new().username("u");
            let _ = set.evaluate(&Request::new(&action, &resource, &ctx));
        }
    }
}

/// Timing: `cargo test -p kd-iam --release -- --ignored --nocapture decision_latency`.
#[test]
#[ignore = "timing; run in release"]
fn decision_latency() {
    let docs: Vec<PolicyDocument> = (0..5)
        .map(|i| {
            identity(&format!(
                r#"{{"Version":"2012-10-17","Statement":[
              {{"Sid":"Read","Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],
                "Resource":["arn:aws:s3:::bucket-{i}","arn:aws:s3:::bucket-{i}/*"],
                "Condition":{{"StringLike":{{"s3:prefix":["raw/*"]}}}}}},
              {{"Sid":"Write","Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::bucket-{i}/out/*"}},
              {{"Sid":"Stream","Effect":"Allow","Action":["kinesis:Get*","kinesis:DescribeStream*","kinesis:ListShards"],
                "Resource":"arn:aws:kinesis:us-east-1:123456789012:stream/s-{i}"}},
              {{"Sid":"Logs","Effect":"Allow","Action":["logs:CreateLogStream","logs:PutLogEvents"],"Resource":"*"}},
              {{"Sid":"NoDelete","Effect":"Deny","Action":"s3:Delete*","Resource":"*",
                "Condition":{{"Bool":{{"aws:SecureTransport":"false"}}}}}}]}}"#
            ))
        })
        .collect();
    let set = std::sync::Arc::new(PolicySet::compile(&docs));
    let ctx = ConditionContext::new()
        .s3_prefix("raw/2024/01")
        .secure_transport(true)
        .principal_arn("arn:aws:iam::123456789012:role/pipeline");
    let cases = [
        (
            "s3:GetObject",
            "arn:aws:s3:::bucket-3/raw/2024/01/part-0000.json",
            Decision::Allow,
        ),
        ("s3:PutObject", "arn:aws:s3:::bucket-4/in/x", Decision::ImplicitDeny),
        (
            "kinesis:GetRecords",
            "arn:aws:kinesis:us-east-1:123456789012:stream/s-2",
            Decision::Allow,
        ),
        ("s3:DeleteObject", "arn:aws:s3:::bucket-1/raw/x", Decision::ImplicitDeny),
    ];
    for (a, r, want) in cases {
        assert_eq!(set.evaluate(&Request::new(a, r, &ctx)), want, "{a} {r}");
    }
    let n = 200_000u32;
    let start = std::time::Instant::now();
    let mut allows = 0u32;
    for i in 0..n {
        let (a, r, _) = cases[(i % 4) as usize];
        if set.evaluate(&Request::new(a, r, &ctx)).is_allowed() {
            allows += 1;
        }
    }
    let per = start.elapsed() / n;
    println!("PolicySet::evaluate: {per:?} per decision (5 policies x 5 statements; {allows} allows)");
    assert!(per < Duration::from_micros(2), "{per:?} per decision");
}
