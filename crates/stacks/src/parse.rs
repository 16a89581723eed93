//! Template bodies to the long form: JSON is read as is; YAML is read with `serde_norway`
//! and its short-form tags (`!Ref`, `!GetAtt a.b`, `!Sub`, `!If`, …) are expanded to the
//! long form (`{"Ref": …}`, `{"Fn::GetAtt": ["a", "b"]}`, `{"Fn::Sub": …}`, …), so the rest
//! of the engine sees one shape: a `serde_json::Value`, as CloudFormation's "Processed"
//! template is JSON.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The largest template CloudFormation accepts from S3 (`TemplateURL`), in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 1_000_000;

/// The largest `TemplateBody` a CreateStack, UpdateStack, CreateChangeSet or ValidateTemplate
/// request may carry (a modeled constraint: the API adapter rejects longer bodies with the
/// usual `1 validation error detected: … Member must have length less than or equal to
/// 51200` before the engine sees them).
pub const MAX_TEMPLATE_BODY_BYTES: usize = 51_200;

/// Reads a template body (JSON when its first non-blank character is `{`, else YAML) into the
/// long form.
pub(crate) fn parse_body(body: &str) -> Result<Value> {
    if body.len() > MAX_TEMPLATE_BYTES {
        return Err(Error::validation(format!(
            "Template may not exceed {MAX_TEMPLATE_BYTES} bytes in size."
        )));
    }
    if body.trim_start().starts_with('{') {
        return serde_json::from_str(body).map_err(|e| {
            Error::format(format!(
                "JSON not well-formed. (line {}, column {})",
                e.line(),
                e.column()
            ))
        });
    }
    let yaml: serde_norway::Value = serde_norway::from_str(body).map_err(|e| match e.location() {
        Some(at) => Error::format(format!(
            "YAML not well-formed. (line {}, column {})",
            at.line(),
            at.column()
        )),
        None => Error::format("YAML not well-formed."),
    })?;
    yaml_to_json(yaml)
}

fn yaml_to_json(v: serde_norway::Value) -> Result<Value> {
    use serde_norway::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => number(&n),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect::<Result<Vec<_>>>()?),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    Y::Null => "null".to_owned(),
                    Y::Sequence(_) | Y::Mapping(_) | Y::Tagged(_) => {
                        return Err(Error::format("YAML not well-formed."));
                    }
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!').to_owned();
            short_form(&name, yaml_to_json(tagged.value)?)
        }
    })
}

/// A YAML number as JSON: integers stay integers; a float JSON cannot hold (`.inf`, `.nan`)
/// keeps its YAML spelling as a string.
fn number(n: &serde_norway::Number) -> Value {
    if let Some(i) = n.as_i64() {
        Value::from(i)
    } else if let Some(u) = n.as_u64() {
        Value::from(u)
    } else {
        n.as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(n.to_string()), Value::Number)
    }
}

/// `!Name value` in the long form.
fn short_form(name: &str, value: Value) -> Value {
    let (key, arg) = match name {
        "Ref" => ("Ref".to_owned(), value),
        "Condition" => ("Condition".to_owned(), value),
        "GetAtt" => {
            let arg = match value {
                // `!GetAtt Resource.Attribute.With.Dots`: the logical id has no dots.
                Value::String(s) => match s.split_once('.') {
                    Some((res, attr)) => Value::Array(vec![Value::from(res), Value::from(attr)]),
                    None => Value::String(s),
                },
                other => other,
            };
            ("Fn::GetAtt".to_owned(), arg)
        }
        other => (format!("Fn::{other}"), value),
    };
    let mut m = Map::new();
    m.insert(key, arg);
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_is_read_as_is() {
        let v = parse_body(r#" {"Resources": {"A": {"Type": "AWS::SNS::Topic"}}}"#).unwrap();
        assert_eq!(v, json!({"Resources": {"A": {"Type": "AWS::SNS::Topic"}}}));
    }

    #[test]
    fn bad_json_says_where() {
        let e = parse_body("{bad").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Template format error: JSON not well-formed. (line 1, column 2)"
        );
    }

    #[test]
    fn bad_yaml_says_where() {
        let e = parse_body("Resources:\n  A: [unclosed\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("Template format error: YAML not well-formed. (line "),
            "{msg}"
        );
    }

    #[test]
    fn size_limit() {
        let body = format!("{{\"Description\": \"{}\"}}", "x".repeat(MAX_TEMPLATE_BYTES));
        let e = parse_body(&body).unwrap_err();
        assert_eq!(e.to_string(), "Template may not exceed 1000000 bytes in size.");
        assert_eq!(e.code(), "ValidationError");
    }

    #[test]
    fn yaml_short_forms_expand_to_long_form() {
        let body = r#"
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Q:
    Type: AWS::SQS::Queue
    Properties:
      A: !Ref P
      B: !GetAtt Res.Arn
      C: !GetAtt Stack.Outputs.Name
      D: !GetAtt [Res, Arn]
      E: !Sub "arn:${AWS::Partition}:s3:::${Bucket}"
      F: !Sub
        - "${X}-y"
        - X: !Ref P
      G: !Join ["", [a, !Ref P]]
      H: !Select [0, !GetAZs ""]
      I: !Split [",", "a,b"]
      J: !If [IsProd, !Ref P, !Ref AWS::NoValue]
      K: !FindInMap [M, !Ref "AWS::Region", Key]
      L: !Base64 "hi"
      M: !ImportValue Shared
      N: !Equals [a, b]
      O: !And [!Condition C1, !Not [!Condition C2]]
      R: !Or [!Condition C1, !Condition C2]
      S: 5
      T: 1.5
      U: true
      V: ~
      7: seven
"#;
        let v = parse_body(body).unwrap();
        let p = &v["Resources"]["Q"]["Properties"];
        assert_eq!(v["AWSTemplateFormatVersion"], json!("2010-09-09"));
        assert_eq!(p["A"], json!({"Ref": "P"}));
        assert_eq!(p["B"], json!({"Fn::GetAtt": ["Res", "Arn"]}));
        assert_eq!(p["C"], json!({"Fn::GetAtt": ["Stack", "Outputs.Name"]}));
        assert_eq!(p["D"], json!({"Fn::GetAtt": ["Res", "Arn"]}));
        assert_eq!(p["E"], json!({"Fn::Sub": "arn:${AWS::Partition}:s3:::${Bucket}"}));
        assert_eq!(p["F"], json!({"Fn::Sub": ["${X}-y", {"X": {"Ref": "P"}}]}));
        assert_eq!(p["G"], json!({"Fn::Join": ["", ["a", {"Ref": "P"}]]}));
        assert_eq!(p["H"], json!({"Fn::Select": [0, {"Fn::GetAZs": ""}]}));
        assert_eq!(p["I"], json!({"Fn::Split": [",", "a,b"]}));
        assert_eq!(
            p["J"],
            json!({"Fn::If": ["IsProd", {"Ref": "P"}, {"Ref": "AWS::NoValue"}]})
        );
        assert_eq!(p["K"], json!({"Fn::FindInMap": ["M", {"Ref": "AWS::Region"}, "Key"]}));
        assert_eq!(p["L"], json!({"Fn::Base64": "hi"}));
        assert_eq!(p["M"], json!({"Fn::ImportValue": "Shared"}));
        assert_eq!(p["N"], json!({"Fn::Equals": ["a", "b"]}));
        assert_eq!(
            p["O"],
            json!({"Fn::And": [{"Condition": "C1"}, {"Fn::Not": [{"Condition": "C2"}]}]})
        );
        assert_eq!(p["R"], json!({"Fn::Or": [{"Condition": "C1"}, {"Condition": "C2"}]}));
        assert_eq!(p["S"], json!(5));
        assert_eq!(p["T"], json!(1.5));
        assert_eq!(p["U"], json!(true));
        assert_eq!(p["V"], Value::Null);
        assert_eq!(p["7"], json!("seven"));
    }

    #[test]
    fn yaml_non_mapping_is_not_json() {
        assert_eq!(parse_body("- a\n- b\n").unwrap(), json!(["a", "b"]));
    }
}
