//! What an expression refers to: the walk behind reference validation (every `Ref`,
//! `Fn::GetAtt` and `${…}` of `Fn::Sub` must name something declared), the dependency graph
//! (references to other resources are dependencies) and the imports a stack needs.
//!
//! With the stack's condition values the walk follows only the branch of each `Fn::If` that
//! is taken, which is how CloudFormation decides dependencies once conditions are known.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::error::{Error, Result};

/// The references found in one expression.
#[derive(Debug, Default)]
pub(crate) struct Refs {
    /// `Ref` targets and the plain `${Name}` variables of `Fn::Sub`.
    pub refs: BTreeSet<String>,
    /// `Fn::GetAtt` targets and the `${Resource.Attribute}` variables of `Fn::Sub`.
    pub get_atts: BTreeSet<String>,
    /// Conditions named by `Fn::If` (and by `{"Condition": …}` in the Conditions section).
    pub conditions: BTreeSet<String>,
    /// Every intrinsic function used (`Ref`, `Fn::…`, `Condition` in the Conditions section).
    pub functions: BTreeSet<String>,
    /// The argument of each `Fn::ImportValue`, unevaluated.
    pub imports: Vec<Value>,
}

/// Where a walk is: the Conditions section treats `{"Condition": name}` as a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Conditions,
    Rules,
    Resources,
    Outputs,
}

/// One piece of a `Fn::Sub` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubPart {
    Literal(String),
    Var(String),
}

/// Splits a `Fn::Sub` string into literals and `${…}` variables; `${!Literal}` stands for the
/// text `${Literal}`, and an unterminated `${` is text.
pub(crate) fn sub_parts(s: &str) -> Result<Vec<SubPart>> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        text.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        if let Some(lit) = after.strip_prefix('!') {
            text.push_str("${");
            rest = lit;
            continue;
        }
        let Some(end) = after.find('}') else {
            text.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let name = &after[..end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':'))
        {
            return Err(Error::template(
                "variable names in Fn::Sub syntax must contain only alphanumeric characters, \
                 underscores, periods, and colons",
            ));
        }
        if !text.is_empty() {
            parts.push(SubPart::Literal(std::mem::take(&mut text)));
        }
        parts.push(SubPart::Var(name.to_owned()));
        rest = &after[end + 1..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(SubPart::Literal(text));
    }
    Ok(parts)
}

/// `Fn::Sub`'s two forms: the string and its variable map (empty for the string form).
pub(crate) fn sub_args(arg: &Value) -> Result<(&str, Option<&serde_json::Map<String, Value>>)> {
    match arg {
        Value::String(s) => Ok((s, None)),
        Value::Array(items) => match items.as_slice() {
            [Value::String(s), Value::Object(vars)] => Ok((s, Some(vars))),
            _ => Err(sub_malformed()),
        },
        _ => Err(sub_malformed()),
    }
}

fn sub_malformed() -> Error {
    Error::template(
        "One or more Fn::Sub intrinsic functions don't specify expected arguments. Specify a \
         string as first argument, and an optional second argument to specify a mapping of \
         values to replace in the string",
    )
}

/// `Fn::GetAtt`'s two forms (`["Res", "Attr"]`, or `"Res.Attr"`): the target and the
/// attribute expression.
pub(crate) fn get_att_args(arg: &Value) -> Result<(&str, AttrName<'_>)> {
    match arg {
        Value::Array(items) => match items.as_slice() {
            [Value::String(res), Value::String(attr)] if !res.is_empty() && !attr.is_empty() => {
                Ok((res, AttrName::Literal(attr)))
            }
            [Value::String(res), expr @ Value::Object(_)] if !res.is_empty() => Ok((res, AttrName::Expr(expr))),
            _ => Err(get_att_malformed()),
        },
        Value::String(s) => match s.split_once('.') {
            Some((res, attr)) if !res.is_empty() && !attr.is_empty() => Ok((res, AttrName::Literal(attr))),
            _ => Err(get_att_malformed()),
        },
        _ => Err(get_att_malformed()),
    }
}

/// The attribute of a `Fn::GetAtt`: a name, or an expression (`{"Ref": "AttrParam"}`).
pub(crate) enum AttrName<'a> {
    Literal(&'a str),
    Expr(&'a Value),
}

fn get_att_malformed() -> Error {
    Error::template("every Fn::GetAtt object requires two non-empty parameters")
}

/// `Fn::If`'s three arguments.
pub(crate) fn if_args(arg: &Value) -> Result<(&str, &Value, &Value)> {
    match arg {
        Value::Array(items) => match items.as_slice() {
            [Value::String(c), a, b] => Ok((c, a, b)),
            _ => Err(if_malformed()),
        },
        _ => Err(if_malformed()),
    }
}

fn if_malformed() -> Error {
    Error::template("Fn::If requires a list argument with three elements")
}

/// The single key of an intrinsic function object, or `None` for plain data.
pub(crate) fn intrinsic(v: &Value, section: Section) -> Option<(&str, &Value)> {
    let Value::Object(m) = v else { return None };
    if m.len() != 1 {
        return None;
    }
    let (k, arg) = m.iter().next()?;
    let is_fn = k == "Ref" || k.starts_with("Fn::") || (k == "Condition" && matches!(section, Section::Conditions));
    is_fn.then_some((k.as_str(), arg))
}

/// Collects what `v` refers to. With `conditions`, only the taken branch of each `Fn::If` is
/// walked (an unknown condition is an error); without, both are.
pub(crate) fn collect(
    v: &Value,
    section: Section,
    conditions: Option<&BTreeMap<String, bool>>,
    out: &mut Refs,
) -> Result<()> {
    if let Some((name, arg)) = intrinsic(v, section) {
        out.functions.insert(name.to_owned());
        match name {
            "Ref" => match arg {
                Value::String(s) => {
                    out.refs.insert(s.clone());
                }
                _ => return Err(Error::format("Every Ref object must have a single String value.")),
            },
            "Condition" => match arg {
                Value::String(s) => {
                    out.conditions.insert(s.clone());
                }
                _ => return Err(Error::format("Every Condition member must be a string.")),
            },
            "Fn::GetAtt" => {
                let (res, attr) = get_att_args(arg)?;
                out.get_atts.insert(res.to_owned());
                if let AttrName::Expr(e) = attr {
                    collect(e, section, conditions, out)?;
                }
            }
            "Fn::Sub" => {
                let (s, vars) = sub_args(arg)?;
                for part in sub_parts(s)? {
                    let SubPart::Var(var) = part else { continue };
                    if vars.is_some_and(|m| m.contains_key(&var)) {
                        continue;
                    }
                    match sub_var_target(&var) {
                        SubVar::Ref(r) => out.refs.insert(r.to_owned()),
                        SubVar::GetAtt(r, _) => out.get_atts.insert(r.to_owned()),
                    };
                }
                for value in vars.into_iter().flat_map(|m| m.values()) {
                    collect(value, section, conditions, out)?;
                }
            }
            "Fn::If" => {
                let (cond, a, b) = if_args(arg)?;
                out.conditions.insert(cond.to_owned());
                match conditions {
                    Some(values) => match values.get(cond) {
                        Some(true) => collect(a, section, conditions, out)?,
                        Some(false) => collect(b, section, conditions, out)?,
                        None => return Err(unresolved_condition(cond)),
                    },
                    None => {
                        collect(a, section, conditions, out)?;
                        collect(b, section, conditions, out)?;
                    }
                }
            }
            "Fn::ImportValue" => {
                out.imports.push(arg.clone());
                collect(arg, section, conditions, out)?;
            }
            _ => collect(arg, section, conditions, out)?,
        }
        return Ok(());
    }
    match v {
        Value::Object(m) => {
            for value in m.values() {
                collect(value, section, conditions, out)?;
            }
        }
        Value::Array(items) => {
            for value in items {
                collect(value, section, conditions, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `Template error: unresolved condition dependency X in Fn::If`.
pub(crate) fn unresolved_condition(name: &str) -> Error {
    Error::template(format!("unresolved condition dependency {name} in Fn::If"))
}

/// What a `${Var}` of `Fn::Sub` (not in its variable map) stands for.
pub(crate) enum SubVar<'a> {
    Ref(&'a str),
    GetAtt(&'a str, &'a str),
}

/// `${AWS::Region}` and `${Param}` are `Ref`s; `${Res.Attr}` is a `Fn::GetAtt`.
pub(crate) fn sub_var_target(var: &str) -> SubVar<'_> {
    match var.split_once('.') {
        Some((res, attr)) => SubVar::GetAtt(res, attr),
        None => SubVar::Ref(var),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sub_parts_split_text_and_variables() {
        use SubPart::{Literal, Var};
        assert_eq!(
            sub_parts("arn:${AWS::Partition}:s3:::${B}/*").unwrap(),
            vec![
                Literal("arn:".into()),
                Var("AWS::Partition".into()),
                Literal(":s3:::".into()),
                Var("B".into()),
                Literal("/*".into()),
            ]
        );
        assert_eq!(
            sub_parts("${!Literal}-${X.Arn}").unwrap(),
            vec![Literal("${Literal}-".into()), Var("X.Arn".into())]
        );
        assert_eq!(sub_parts("no vars").unwrap(), vec![Literal("no vars".into())]);
        assert_eq!(sub_parts("open ${x").unwrap(), vec![Literal("open ${x".into())]);
        assert_eq!(sub_parts("").unwrap(), vec![]);
        let e = sub_parts("${bad name}").unwrap_err();
        assert!(e.to_string().starts_with("Template error: variable names in Fn::Sub"));
        assert!(sub_parts("${}").is_err());
    }

    #[test]
    fn collect_finds_every_kind_of_reference() {
        let v = json!({
            "A": {"Ref": "P"},
            "B": {"Fn::GetAtt": ["R1", "Arn"]},
            "C": {"Fn::GetAtt": "R2.Arn"},
            "D": {"Fn::Sub": "${AWS::Region}-${R3}-${R4.Name}-${!Skip}"},
            "E": {"Fn::Sub": ["${Local}-${R5}", {"Local": {"Ref": "R6"}}]},
            "F": [{"Fn::If": ["Cond", {"Ref": "R7"}, {"Ref": "R8"}]}],
            "G": {"Fn::ImportValue": {"Fn::Sub": "${P}-out"}},
            "H": {"Fn::GetAtt": ["R9", {"Ref": "AttrParam"}]},
            "Condition": {"StringEquals": {"k": "v"}}
        });
        let mut r = Refs::default();
        collect(&v, Section::Resources, None, &mut r).unwrap();
        let set = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            r.refs,
            set(&["AWS::Region", "AttrParam", "P", "R3", "R5", "R6", "R7", "R8"])
        );
        assert_eq!(r.get_atts, set(&["R1", "R2", "R4", "R9"]));
        assert_eq!(r.conditions, set(&["Cond"]));
        assert_eq!(r.imports, vec![json!({"Fn::Sub": "${P}-out"})]);
        assert!(r.functions.contains("Fn::ImportValue"));
        assert!(!r.functions.contains("Condition"));

        let conds = BTreeMap::from([("Cond".to_string(), false)]);
        let mut r = Refs::default();
        collect(&v, Section::Resources, Some(&conds), &mut r).unwrap();
        assert!(r.refs.contains("R8") && !r.refs.contains("R7"));

        let mut r = Refs::default();
        let e = collect(&v, Section::Resources, Some(&BTreeMap::new()), &mut r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Template error: unresolved condition dependency Cond in Fn::If"
        );
    }

    #[test]
    fn malformed_intrinsics() {
        let mut r = Refs::default();
        let e = collect(&json!({"Ref": ["x"]}), Section::Resources, None, &mut r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Template format error: Every Ref object must have a single String value."
        );
        let e = collect(&json!({"Fn::GetAtt": ["x"]}), Section::Resources, None, &mut r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Template error: every Fn::GetAtt object requires two non-empty parameters"
        );
        let e = collect(&json!({"Fn::Sub": 3}), Section::Resources, None, &mut r).unwrap_err();
        assert!(e.to_string().contains("Fn::Sub intrinsic functions"));
        let e = collect(&json!({"Fn::If": ["c", 1]}), Section::Resources, None, &mut r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Template error: Fn::If requires a list argument with three elements"
        );
    }
}
