//! Template parameters: their declarations (type and constraints, read when the template is
//! parsed) and the values a stack gives them (checked against the constraints with
//! CloudFormation's messages when a stack is prepared).
//!
//! Every value is a string, as on the wire. `Number` values are checked as numbers but `Ref`
//! returns the string; `List<Number>`, `CommaDelimitedList` and the list forms of the
//! AWS-specific types are split on commas and `Ref` returns the list. AWS-specific types
//! (`AWS::EC2::VPC::Id`, …) are accepted as strings without checking that the value exists
//! in the account. `AWS::SSM::Parameter::Value<…>` parameters take a parameter name and are
//! resolved through [`Environment::ssm_parameter`](crate::Environment::ssm_parameter).

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The AWS-specific parameter types accepted (as strings), alone or inside `List<…>`.
const AWS_SPECIFIC_TYPES: &[&str] = &[
    "AWS::EC2::AvailabilityZone::Name",
    "AWS::EC2::Image::Id",
    "AWS::EC2::Instance::Id",
    "AWS::EC2::KeyPair::KeyName",
    "AWS::EC2::SecurityGroup::GroupName",
    "AWS::EC2::SecurityGroup::Id",
    "AWS::EC2::Subnet::Id",
    "AWS::EC2::Volume::Id",
    "AWS::EC2::VPC::Id",
    "AWS::Route53::HostedZone::Id",
];

/// The shape of a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterShape {
    /// One string (`String`, the AWS-specific types, `AWS::SSM::Parameter::Name`).
    String,
    /// One number, kept as its string.
    Number,
    /// `List<Number>`: comma-separated numbers.
    NumberList,
    /// `CommaDelimitedList` and `List<AWS::…>`: comma-separated strings.
    StringList,
}

/// A parameter's declared type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterType {
    /// The type as written in the template.
    pub name: String,
    /// The shape of its value (for SSM types, of the parameter store value).
    pub shape: ParameterShape,
    /// `AWS::SSM::Parameter::Value<…>`: the given value is a parameter store name.
    pub ssm: bool,
}

impl ParameterType {
    /// Reads a type name; `None` if CloudFormation does not know it.
    pub fn parse(name: &str) -> Option<ParameterType> {
        let (shape, ssm) = if let Some(inner) = name
            .strip_prefix("AWS::SSM::Parameter::Value<")
            .and_then(|s| s.strip_suffix('>'))
        {
            let shape = match inner {
                "String" => ParameterShape::String,
                "List<String>" | "CommaDelimitedList" => ParameterShape::StringList,
                t if AWS_SPECIFIC_TYPES.contains(&t) => ParameterShape::String,
                t if list_of_aws_type(t) => ParameterShape::StringList,
                _ => return None,
            };
            (shape, true)
        } else {
            let shape = match name {
                "String" | "AWS::SSM::Parameter::Name" => ParameterShape::String,
                "Number" => ParameterShape::Number,
                "List<Number>" => ParameterShape::NumberList,
                "CommaDelimitedList" => ParameterShape::StringList,
                t if AWS_SPECIFIC_TYPES.contains(&t) => ParameterShape::String,
                t if list_of_aws_type(t) => ParameterShape::StringList,
                _ => return None,
            };
            (shape, false)
        };
        Some(ParameterType {
            name: name.to_owned(),
            shape,
            ssm,
        })
    }

    /// Whether `Ref` gives a list.
    pub fn is_list(&self) -> bool {
        matches!(self.shape, ParameterShape::NumberList | ParameterShape::StringList)
    }
}

fn list_of_aws_type(t: &str) -> bool {
    t.strip_prefix("List<")
        .and_then(|s| s.strip_suffix('>'))
        .is_some_and(|inner| AWS_SPECIFIC_TYPES.contains(&inner))
}

/// One declared parameter.
#[derive(Debug, Clone)]
pub struct ParameterDecl {
    /// The parameter's name (its key in the Parameters section).
    pub name: String,
    /// Its type.
    pub parameter_type: ParameterType,
    /// `Default`, as a string.
    pub default: Option<String>,
    /// `Description`.
    pub description: Option<String>,
    /// `NoEcho`: the value is shown as `****`.
    pub no_echo: bool,
    /// `AllowedValues`, as strings.
    pub allowed_values: Vec<String>,
    /// `AllowedPattern` as written, and compiled to match the whole value.
    pub allowed_pattern: Option<(String, regex::Regex)>,
    /// `MinLength`.
    pub min_length: Option<u64>,
    /// `MaxLength`.
    pub max_length: Option<u64>,
    /// `MinValue`.
    pub min_value: Option<f64>,
    /// `MaxValue`.
    pub max_value: Option<f64>,
    /// `ConstraintDescription`: replaces the reason when a constraint fails.
    pub constraint_description: Option<String>,
}

/// A scalar as CloudFormation stringifies it (`5` → `"5"`, `true` → `"true"`).
pub(crate) fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl ParameterDecl {
    /// Reads one entry of the Parameters section.
    pub(crate) fn parse(name: &str, decl: &Value) -> Result<ParameterDecl> {
        let Value::Object(m) = decl else {
            return Err(Error::format(format!("Parameter '{name}' is not a JSON object")));
        };
        let Some(type_name) = m.get("Type") else {
            return Err(Error::format("Every Parameters object must contain a Type member."));
        };
        let type_name = type_name.as_str().unwrap_or_default();
        let parameter_type = ParameterType::parse(type_name)
            .ok_or_else(|| Error::format(format!("Unrecognized parameter type: {type_name}")))?;
        let string_attr = |key: &str| -> Result<Option<String>> {
            match m.get(key) {
                None => Ok(None),
                Some(v) => scalar_string(v).map(Some).ok_or_else(|| {
                    Error::format(format!(
                        "Invalid value for {key} in parameter '{name}': must be a string"
                    ))
                }),
            }
        };
        let number_attr = |key: &str| -> Result<Option<f64>> {
            match string_attr(key)? {
                None => Ok(None),
                Some(s) => s.trim().parse::<f64>().map(Some).map_err(|_| {
                    Error::format(format!(
                        "Invalid value for {key} in parameter '{name}': must be a number"
                    ))
                }),
            }
        };
        let length_attr = |key: &str| -> Result<Option<u64>> {
            match string_attr(key)? {
                None => Ok(None),
                Some(s) => s.trim().parse::<u64>().map(Some).map_err(|_| {
                    Error::format(format!(
                        "Invalid value for {key} in parameter '{name}': must be a non-negative integer"
                    ))
                }),
            }
        };
        let allowed_values = match m.get("AllowedValues") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    scalar_string(v).ok_or_else(|| {
                        Error::format(format!(
                            "Every AllowedValues member of parameter '{name}' must be a string"
                        ))
                    })
                })
                .collect::<Result<_>>()?,
            Some(_) => {
                return Err(Error::format(format!(
                    "AllowedValues of parameter '{name}' must be a list"
                )));
            }
        };
        let allowed_pattern = match string_attr("AllowedPattern")? {
            None => None,
            Some(p) => {
                let re = regex::Regex::new(&format!("^(?:{p})$"))
                    .map_err(|_| Error::format(format!("Invalid AllowedPattern for parameter '{name}': {p}")))?;
                Some((p, re))
            }
        };
        let no_echo = match m.get("NoEcho") {
            None => false,
            Some(v) => scalar_string(v).is_some_and(|s| s.eq_ignore_ascii_case("true")),
        };
        Ok(ParameterDecl {
            name: name.to_owned(),
            parameter_type,
            default: string_attr("Default")?,
            description: string_attr("Description")?,
            no_echo,
            allowed_values,
            allowed_pattern,
            min_length: length_attr("MinLength")?,
            max_length: length_attr("MaxLength")?,
            min_value: number_attr("MinValue")?,
            max_value: number_attr("MaxValue")?,
            constraint_description: string_attr("ConstraintDescription")?,
        })
    }

    /// Checks a value (for SSM types: the parameter store value) against the constraints and
    /// returns what `Ref` gives: a string, or a list of strings for list types.
    pub(crate) fn check(&self, value: &str) -> Result<Value> {
        let members: Vec<&str> = if self.parameter_type.is_list() {
            value.split(',').collect()
        } else {
            vec![value]
        };
        let numeric = matches!(
            self.parameter_type.shape,
            ParameterShape::Number | ParameterShape::NumberList
        );
        for member in &members {
            if numeric {
                let n: f64 = member
                    .trim()
                    .parse()
                    .map_err(|_| self.failed(format!("Parameter '{}' must be a number", self.name)))?;
                if let Some(min) = self.min_value.filter(|min| n < *min) {
                    return Err(self.failed(format!(
                        "Parameter '{}' must be a number not less than {}",
                        self.name,
                        fmt_number(min)
                    )));
                }
                if let Some(max) = self.max_value.filter(|max| n > *max) {
                    return Err(self.failed(format!(
                        "Parameter '{}' must be a number not greater than {}",
                        self.name,
                        fmt_number(max)
                    )));
                }
            } else {
                let len = member.chars().count() as u64;
                if let Some(min) = self.min_length.filter(|min| len < *min) {
                    return Err(self.failed(format!(
                        "Parameter '{}' must contain at least {min} characters",
                        self.name
                    )));
                }
                if let Some(max) = self.max_length.filter(|max| len > *max) {
                    return Err(self.failed(format!(
                        "Parameter '{}' must contain at most {max} characters",
                        self.name
                    )));
                }
                if let Some((pattern, re)) = &self.allowed_pattern
                    && !re.is_match(member)
                {
                    return Err(self.failed(format!("Parameter '{}' must match pattern {pattern}", self.name)));
                }
            }
            if !self.allowed_values.is_empty() && !self.allowed_values.iter().any(|a| a == member) {
                return Err(self.failed(format!("Parameter '{}' must be one of AllowedValues", self.name)));
            }
        }
        Ok(if self.parameter_type.is_list() {
            Value::Array(members.into_iter().map(Value::from).collect())
        } else {
            Value::from(value)
        })
    }

    /// A failed constraint: CloudFormation's reason, or the `ConstraintDescription` instead.
    fn failed(&self, reason: String) -> Error {
        match &self.constraint_description {
            Some(desc) => Error::validation(format!("Parameter {} failed to satisfy constraint: {desc}", self.name)),
            None => Error::validation(reason),
        }
    }
}

/// `10` rather than `10.0` for whole bounds.
fn fmt_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{n:.0}")
    } else {
        n.to_string()
    }
}

/// Reads the Parameters section.
pub(crate) fn parse_section(section: &Map<String, Value>) -> Result<Vec<ParameterDecl>> {
    section
        .iter()
        .map(|(name, decl)| ParameterDecl::parse(name, decl))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decl(v: Value) -> ParameterDecl {
        ParameterDecl::parse("P", &v).unwrap()
    }

    #[test]
    fn types() {
        let t = |s: &str| ParameterType::parse(s);
        assert_eq!(t("String").unwrap().shape, ParameterShape::String);
        assert_eq!(t("Number").unwrap().shape, ParameterShape::Number);
        assert_eq!(t("List<Number>").unwrap().shape, ParameterShape::NumberList);
        assert_eq!(t("CommaDelimitedList").unwrap().shape, ParameterShape::StringList);
        assert_eq!(t("AWS::EC2::VPC::Id").unwrap().shape, ParameterShape::String);
        assert_eq!(
            t("List<AWS::EC2::Subnet::Id>").unwrap().shape,
            ParameterShape::StringList
        );
        let ssm = t("AWS::SSM::Parameter::Value<String>").unwrap();
        assert!(ssm.ssm && ssm.shape == ParameterShape::String);
        let ssm_list = t("AWS::SSM::Parameter::Value<List<String>>").unwrap();
        assert!(ssm_list.ssm && ssm_list.is_list());
        assert!(!t("AWS::SSM::Parameter::Name").unwrap().ssm);
        assert!(t("Strin").is_none());
        assert!(t("AWS::SSM::Parameter::Value<Foo>").is_none());
        assert!(t("List<String>").is_none());
    }

    #[test]
    fn declaration_errors() {
        let e = ParameterDecl::parse("P", &json!({"Default": "x"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Template format error: Every Parameters object must contain a Type member."
        );
        let e = ParameterDecl::parse("P", &json!({"Type": "Strng"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Template format error: Unrecognized parameter type: Strng"
        );
        assert!(ParameterDecl::parse("P", &json!({"Type": "String", "AllowedPattern": "("})).is_err());
        assert!(ParameterDecl::parse("P", &json!({"Type": "String", "MinLength": "x"})).is_err());
    }

    #[test]
    fn string_constraints() {
        let p = decl(json!({"Type": "String", "MinLength": 2, "MaxLength": "4",
            "AllowedPattern": "[a-z]+"}));
        assert_eq!(p.check("abc").unwrap(), json!("abc"));
        assert_eq!(
            p.check("a").unwrap_err().to_string(),
            "Parameter 'P' must contain at least 2 characters"
        );
        assert_eq!(
            p.check("abcde").unwrap_err().to_string(),
            "Parameter 'P' must contain at most 4 characters"
        );
        // The pattern must match the whole value.
        assert_eq!(
            p.check("ab1").unwrap_err().to_string(),
            "Parameter 'P' must match pattern [a-z]+"
        );
        let p = decl(json!({"Type": "String", "AllowedValues": ["dev", "prod"]}));
        assert!(p.check("dev").is_ok());
        let e = p.check("test").unwrap_err();
        assert_eq!(e.to_string(), "Parameter 'P' must be one of AllowedValues");
        assert_eq!(e.code(), "ValidationError");
    }

    #[test]
    fn constraint_description_replaces_the_reason() {
        let p = decl(json!({"Type": "String", "AllowedPattern": "\\w+",
            "ConstraintDescription": "must be word characters"}));
        assert_eq!(
            p.check("a b").unwrap_err().to_string(),
            "Parameter P failed to satisfy constraint: must be word characters"
        );
    }

    #[test]
    fn number_constraints() {
        let p = decl(json!({"Type": "Number", "MinValue": 1, "MaxValue": "10"}));
        assert_eq!(p.check("5").unwrap(), json!("5"));
        assert!(p.check("2.5").is_ok());
        assert_eq!(p.check("x").unwrap_err().to_string(), "Parameter 'P' must be a number");
        assert_eq!(
            p.check("0").unwrap_err().to_string(),
            "Parameter 'P' must be a number not less than 1"
        );
        assert_eq!(
            p.check("11").unwrap_err().to_string(),
            "Parameter 'P' must be a number not greater than 10"
        );
        let p = decl(json!({"Type": "Number", "MaxValue": 1.5}));
        assert_eq!(
            p.check("2").unwrap_err().to_string(),
            "Parameter 'P' must be a number not greater than 1.5"
        );
    }

    #[test]
    fn lists() {
        let p = decl(json!({"Type": "List<Number>", "MaxValue": 10}));
        assert_eq!(p.check("1,2,3").unwrap(), json!(["1", "2", "3"]));
        assert_eq!(
            p.check("1,x").unwrap_err().to_string(),
            "Parameter 'P' must be a number"
        );
        assert!(p.check("1,20").is_err());
        let p = decl(json!({"Type": "CommaDelimitedList", "AllowedValues": ["a", "b"]}));
        assert_eq!(p.check("a,b,a").unwrap(), json!(["a", "b", "a"]));
        assert!(p.check("a,c").is_err());
        let p = decl(json!({"Type": "CommaDelimitedList", "Default": ""}));
        assert_eq!(p.check("").unwrap(), json!([""]));
    }

    #[test]
    fn scalars_in_declarations_are_strings() {
        let p = decl(json!({"Type": "Number", "Default": 3, "NoEcho": true,
            "AllowedValues": [1, 3]}));
        assert_eq!(p.default.as_deref(), Some("3"));
        assert!(p.no_echo);
        assert_eq!(p.allowed_values, vec!["1", "3"]);
        assert!(p.check("3").is_ok());
    }
}
