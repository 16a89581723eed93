//! The intrinsic function evaluator: turns an expression of the long form into its value,
//! given what the phase knows (parameter values and the stack's pseudo parameters always;
//! condition values, created resources and imported values once they exist). `None` is
//! `AWS::NoValue`: the caller drops the property or list element that held it.
//!
//! The boolean functions have their own evaluators: [`Conditions`] for the Conditions
//! section (with `{"Condition": …}` references, each condition evaluated once) and
//! [`rule_holds`] for the assertions of the Rules section.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::params::scalar_string;
use crate::prepare::{Environment, ResourceResolver, StackContext};
use crate::refs::{self, AttrName, Section, SubPart, SubVar};
use crate::template::{Template, undefined_resource, unresolved_in};

/// What an evaluation can see.
pub(crate) struct Scope<'a> {
    pub template: &'a Template,
    pub context: &'a StackContext,
    /// What `Ref` gives for each parameter.
    pub params: &'a BTreeMap<String, Value>,
    /// Condition values (for `Fn::If`), once known.
    pub conditions: Option<&'a BTreeMap<String, bool>>,
    /// Created resources (for `Ref`/`Fn::GetAtt` of resources), once there are any.
    pub resources: Option<&'a dyn ResourceResolver>,
    /// Imported values (for `Fn::ImportValue`), once looked up.
    pub imports: Option<&'a BTreeMap<String, String>>,
    /// The environment (for `Fn::RefAll` in rules).
    pub env: Option<&'a dyn Environment>,
}

fn join_malformed() -> Error {
    Error::template(
        "every Fn::Join object requires two parameters, (1) a string delimiter and (2) a list \
         of strings to be joined or a function that returns a list of strings (such as \
         Fn::GetAZs) to be joined.",
    )
}

fn select_malformed() -> Error {
    Error::template(
        "every Fn::Select object requires two parameters, (1) an index and (2) a list of \
         items or a function that returns a list",
    )
}

fn split_malformed() -> Error {
    Error::template(
        "every Fn::Split object requires two parameters, (1) a string delimiter and (2) a \
         string to be split or a function that returns a string to be split.",
    )
}

fn find_in_map_malformed() -> Error {
    Error::template(
        "every Fn::FindInMap object requires three parameters, the map name, map key and the \
         attribute for return value",
    )
}

impl Scope<'_> {
    /// Evaluates `v`; `None` is `AWS::NoValue`.
    pub fn eval(&self, v: &Value) -> Result<Option<Value>> {
        if let Some((name, arg)) = refs::intrinsic(v, Section::Resources) {
            return self.function(name, arg);
        }
        Ok(Some(match v {
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, v) in m {
                    if let Some(v) = self.eval(v)? {
                        out.insert(k.clone(), v);
                    }
                }
                Value::Object(out)
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for v in items {
                    if let Some(v) = self.eval(v)? {
                        out.push(v);
                    }
                }
                Value::Array(out)
            }
            other => other.clone(),
        }))
    }

    /// Evaluates `v` where a value is required (`AWS::NoValue` is `err`).
    fn value(&self, v: &Value, err: fn() -> Error) -> Result<Value> {
        self.eval(v)?.ok_or_else(err)
    }

    /// Evaluates `v` to a string (numbers and booleans as CloudFormation writes them).
    fn string(&self, v: &Value, err: fn() -> Error) -> Result<String> {
        scalar_string(&self.value(v, err)?).ok_or_else(err)
    }

    /// Evaluates `v` to a list.
    fn list(&self, v: &Value, err: fn() -> Error) -> Result<Vec<Value>> {
        match self.value(v, err)? {
            Value::Array(items) => Ok(items),
            _ => Err(err()),
        }
    }

    fn function(&self, name: &str, arg: &Value) -> Result<Option<Value>> {
        match name {
            "Ref" => match arg {
                Value::String(target) => self.reference(target),
                _ => Err(Error::format("Every Ref object must have a single String value.")),
            },
            "Fn::GetAtt" => {
                let (res, attr) = refs::get_att_args(arg)?;
                let attr = match attr {
                    AttrName::Literal(a) => a.to_owned(),
                    AttrName::Expr(e) => self.string(e, || {
                        Error::template("every Fn::GetAtt object requires two non-empty parameters")
                    })?,
                };
                self.get_att(res, &attr).map(Some)
            }
            "Fn::Join" => {
                let Value::Array(args) = arg else {
                    return Err(join_malformed());
                };
                let [delim, items] = args.as_slice() else {
                    return Err(join_malformed());
                };
                let delim = self.string(delim, join_malformed)?;
                let parts = self
                    .list(items, join_malformed)?
                    .iter()
                    .map(|v| scalar_string(v).ok_or_else(join_malformed))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Some(Value::String(parts.join(&delim))))
            }
            "Fn::Sub" => self.sub(arg).map(|s| Some(Value::String(s))),
            "Fn::Select" => {
                let Value::Array(args) = arg else {
                    return Err(select_malformed());
                };
                let [index, items] = args.as_slice() else {
                    return Err(select_malformed());
                };
                let index = self.string(index, select_malformed)?;
                let items = self.list(items, select_malformed)?;
                let i: usize = index.trim().parse().map_err(|_| select_malformed())?;
                items
                    .get(i)
                    .cloned()
                    .map(Some)
                    .ok_or_else(|| Error::template(format!("Fn::Select cannot select nonexistent value at index {i}")))
            }
            "Fn::Split" => {
                let Value::Array(args) = arg else {
                    return Err(split_malformed());
                };
                let [delim, source] = args.as_slice() else {
                    return Err(split_malformed());
                };
                let delim = self.string(delim, split_malformed)?;
                let source = self.string(source, split_malformed)?;
                if delim.is_empty() {
                    return Err(split_malformed());
                }
                Ok(Some(Value::Array(
                    source.split(delim.as_str()).map(Value::from).collect(),
                )))
            }
            "Fn::FindInMap" => {
                let Value::Array(args) = arg else {
                    return Err(find_in_map_malformed());
                };
                let [map, top, second] = args.as_slice() else {
                    return Err(find_in_map_malformed());
                };
                let map = self.string(map, find_in_map_malformed)?;
                let top = self.string(top, find_in_map_malformed)?;
                let second = self.string(second, find_in_map_malformed)?;
                let Some(mapping) = self.template.mappings.get(&map) else {
                    return Err(Error::template(format!(
                        "Mapping named '{map}' is not present in the 'Mappings' section of template."
                    )));
                };
                mapping
                    .get(&top)
                    .and_then(|m| m.get(&second))
                    .cloned()
                    .map(Some)
                    .ok_or_else(|| Error::template(format!("Unable to get mapping for {map}::{top}::{second}")))
            }
            "Fn::Base64" => {
                let s = self.string(arg, || Error::template("Fn::Base64 requires a string"))?;
                Ok(Some(Value::String(
                    base64::engine::general_purpose::STANDARD.encode(s.as_bytes()),
                )))
            }
            "Fn::GetAZs" => {
                let region = self.string(arg, || {
                    Error::template("Fn::GetAZs requires a region name or an empty string")
                })?;
                let region = if region.is_empty() {
                    self.context.region.clone()
                } else {
                    region
                };
                Ok(Some(Value::Array(
                    ["a", "b", "c"]
                        .iter()
                        .map(|z| Value::String(format!("{region}{z}")))
                        .collect(),
                )))
            }
            "Fn::ImportValue" => {
                let name = self.string(arg, || {
                    Error::template("Fn::ImportValue requires the name of an export")
                })?;
                let Some(imports) = self.imports else {
                    return Err(Error::template("Fn::ImportValue cannot be used here"));
                };
                imports
                    .get(&name)
                    .map(|v| Some(Value::String(v.clone())))
                    .ok_or_else(|| {
                        Error::Internal(format!("export {name} was not looked up when the stack was prepared"))
                    })
            }
            "Fn::If" => {
                let (cond, a, b) = refs::if_args(arg)?;
                let Some(values) = self.conditions else {
                    return Err(Error::template("Fn::If cannot be used here"));
                };
                match values.get(cond) {
                    Some(true) => self.eval(a),
                    Some(false) => self.eval(b),
                    None => Err(refs::unresolved_condition(cond)),
                }
            }
            "Fn::RefAll" => {
                let (Some(env), Value::String(t)) = (self.env, arg) else {
                    return Err(Error::template("Fn::RefAll requires a parameter type"));
                };
                Ok(Some(Value::Array(
                    env.ref_all(t)?.into_iter().map(Value::from).collect(),
                )))
            }
            other => Err(Error::template(format!(
                "{other} cannot be used where a value is expected"
            ))),
        }
    }

    /// `Ref`: a pseudo parameter, a parameter, or a created resource.
    fn reference(&self, target: &str) -> Result<Option<Value>> {
        let ctx = self.context;
        let pseudo = match target {
            "AWS::NoValue" => return Ok(None),
            "AWS::AccountId" => Value::from(ctx.account_id.as_str()),
            "AWS::Region" => Value::from(ctx.region.as_str()),
            "AWS::StackName" => Value::from(ctx.stack_name.as_str()),
            "AWS::StackId" => Value::from(ctx.stack_id.as_str()),
            "AWS::Partition" => Value::from(ctx.partition()),
            "AWS::URLSuffix" => Value::from(ctx.url_suffix()),
            "AWS::NotificationARNs" => {
                Value::Array(ctx.notification_arns.iter().map(|a| Value::from(a.as_str())).collect())
            }
            _ => {
                if let Some(v) = self.params.get(target) {
                    return Ok(Some(v.clone()));
                }
                if !self.template.resources.contains_key(target) {
                    return Err(unresolved_in("Resources", &BTreeSet::from([target.to_owned()])));
                }
                let Some(resolver) = self.resources else {
                    return Err(Error::template(format!("Ref to resource {target} cannot be used here")));
                };
                return resolver
                    .ref_value(target)
                    .map(Some)
                    .ok_or_else(|| Error::Internal(format!("resource {target} has not been created")));
            }
        };
        Ok(Some(pseudo))
    }

    /// `Fn::GetAtt` of a created resource.
    fn get_att(&self, res: &str, attr: &str) -> Result<Value> {
        if !self.template.resources.contains_key(res) {
            return Err(undefined_resource(res));
        }
        let Some(resolver) = self.resources else {
            return Err(Error::template(format!(
                "Fn::GetAtt of resource {res} cannot be used here"
            )));
        };
        resolver.attribute(res, attr).ok_or_else(|| {
            Error::template(format!(
                "resource {res} does not support attribute type {attr} in Fn::GetAtt"
            ))
        })
    }

    /// `Fn::Sub` in either form.
    fn sub(&self, arg: &Value) -> Result<String> {
        let (s, vars) = refs::sub_args(arg)?;
        let mut out = String::with_capacity(s.len());
        for part in refs::sub_parts(s)? {
            match part {
                SubPart::Literal(text) => out.push_str(&text),
                SubPart::Var(var) => {
                    let not_a_string = || {
                        Error::template(format!(
                            "variable {var} in Fn::Sub expression does not resolve to a string"
                        ))
                    };
                    let value = match vars.and_then(|m| m.get(&var)) {
                        Some(expr) => self.eval(expr)?,
                        None => match refs::sub_var_target(&var) {
                            SubVar::Ref(r) => self.reference(r)?,
                            SubVar::GetAtt(r, a) => Some(self.get_att(r, a)?),
                        },
                    };
                    let text = value.as_ref().and_then(scalar_string).ok_or_else(not_a_string)?;
                    out.push_str(&text);
                }
            }
        }
        Ok(out)
    }
}

/// A value as `Fn::Equals` compares it: scalars as strings (so `5` equals `"5"`).
fn comparable(v: Option<Value>) -> Value {
    match v {
        None => Value::Null,
        Some(Value::Array(items)) => Value::Array(items.into_iter().map(|i| comparable(Some(i))).collect()),
        Some(v) => scalar_string(&v).map_or(v, Value::String),
    }
}

fn equals(scope: &Scope<'_>, arg: &Value) -> Result<bool> {
    match arg {
        Value::Array(items) => match items.as_slice() {
            [a, b] => Ok(comparable(scope.eval(a)?) == comparable(scope.eval(b)?)),
            _ => Err(Error::template("Fn::Equals requires a list of two values")),
        },
        _ => Err(Error::template("Fn::Equals requires a list of two values")),
    }
}

fn operands<'v>(name: &str, arg: &'v Value) -> Result<&'v [Value]> {
    let bad = || {
        Error::template(format!(
            "every {name} object requires a list of at least 2 and at most 10 boolean parameters."
        ))
    };
    match arg {
        Value::Array(items) if (2..=10).contains(&items.len()) => Ok(items),
        _ => Err(bad()),
    }
}

fn not_operand(arg: &Value) -> Result<&Value> {
    match arg {
        Value::Array(items) if items.len() == 1 => Ok(&items[0]),
        _ => Err(Error::template("Fn::Not requires a list argument with one element")),
    }
}

/// The Conditions section's evaluator: each condition is evaluated at most once.
pub(crate) struct Conditions<'a> {
    scope: &'a Scope<'a>,
    values: BTreeMap<String, bool>,
    visiting: BTreeSet<String>,
}

impl<'a> Conditions<'a> {
    /// Evaluates every condition of the template.
    pub fn evaluate_all(scope: &'a Scope<'a>) -> Result<BTreeMap<String, bool>> {
        let mut c = Conditions {
            scope,
            values: BTreeMap::new(),
            visiting: BTreeSet::new(),
        };
        for name in scope.template.conditions.keys() {
            c.named(name)?;
        }
        Ok(c.values)
    }

    fn named(&mut self, name: &str) -> Result<bool> {
        if let Some(v) = self.values.get(name) {
            return Ok(*v);
        }
        let Some(expr) = self.scope.template.conditions.get(name) else {
            return Err(Error::format(format!(
                "Unresolved condition dependency {name} in Conditions block"
            )));
        };
        if !self.visiting.insert(name.to_owned()) {
            return Err(Error::format(format!(
                "Circular condition dependency involving {name} in Conditions block"
            )));
        }
        let v = self.expr(expr)?;
        self.visiting.remove(name);
        self.values.insert(name.to_owned(), v);
        Ok(v)
    }

    fn expr(&mut self, expr: &Value) -> Result<bool> {
        match refs::intrinsic(expr, Section::Conditions) {
            Some(("Condition", Value::String(name))) => self.named(name),
            Some(("Fn::Equals", arg)) => equals(self.scope, arg),
            Some(("Fn::And", arg)) => {
                let mut all = true;
                for e in operands("Fn::And", arg)? {
                    all &= self.expr(e)?;
                }
                Ok(all)
            }
            Some(("Fn::Or", arg)) => {
                let mut any = false;
                for e in operands("Fn::Or", arg)? {
                    any |= self.expr(e)?;
                }
                Ok(any)
            }
            Some(("Fn::Not", arg)) => Ok(!self.expr(not_operand(arg)?)?),
            _ => Err(Error::format(
                "Conditions can only be boolean operations on parameters and other conditions",
            )),
        }
    }
}

fn string_list(scope: &Scope<'_>, v: &Value, func: &str) -> Result<Vec<String>> {
    let bad = || Error::template(format!("{func} requires a list of strings"));
    match scope.eval(v)? {
        Some(Value::Array(items)) => items.iter().map(|i| scalar_string(i).ok_or_else(bad)).collect(),
        _ => Err(bad()),
    }
}

fn two_args<'v>(arg: &'v Value, func: &str) -> Result<(&'v Value, &'v Value)> {
    match arg {
        Value::Array(items) => match items.as_slice() {
            [a, b] => Ok((a, b)),
            _ => Err(Error::template(format!("{func} requires a list of two parameters"))),
        },
        _ => Err(Error::template(format!("{func} requires a list of two parameters"))),
    }
}

/// Whether a rule expression (`RuleCondition` or `Assert`) holds.
pub(crate) fn rule_holds(scope: &Scope<'_>, expr: &Value) -> Result<bool> {
    match refs::intrinsic(expr, Section::Rules) {
        Some(("Fn::Equals", arg)) => equals(scope, arg),
        Some(("Fn::And", arg)) => {
            let mut all = true;
            for e in operands("Fn::And", arg)? {
                all &= rule_holds(scope, e)?;
            }
            Ok(all)
        }
        Some(("Fn::Or", arg)) => {
            let mut any = false;
            for e in operands("Fn::Or", arg)? {
                any |= rule_holds(scope, e)?;
            }
            Ok(any)
        }
        Some(("Fn::Not", arg)) => Ok(!rule_holds(scope, not_operand(arg)?)?),
        Some(("Fn::Contains", arg)) => {
            let (list, value) = two_args(arg, "Fn::Contains")?;
            let list = string_list(scope, list, "Fn::Contains")?;
            let value = comparable(scope.eval(value)?);
            Ok(list.iter().any(|i| value == i.as_str()))
        }
        Some(("Fn::EachMemberEquals", arg)) => {
            let (list, value) = two_args(arg, "Fn::EachMemberEquals")?;
            let list = string_list(scope, list, "Fn::EachMemberEquals")?;
            let value = comparable(scope.eval(value)?);
            Ok(list.iter().all(|i| value == i.as_str()))
        }
        Some(("Fn::EachMemberIn", arg)) => {
            let (members, allowed) = two_args(arg, "Fn::EachMemberIn")?;
            let members = string_list(scope, members, "Fn::EachMemberIn")?;
            let allowed = string_list(scope, allowed, "Fn::EachMemberIn")?;
            Ok(members.iter().all(|m| allowed.contains(m)))
        }
        _ => Err(Error::format(
            "Every Assert and RuleCondition must be a rule-specific intrinsic function",
        )),
    }
}
