//! A parsed, validated template: its sections read into typed declarations, every
//! reference checked, and the static dependency graph (every branch of every `Fn::If`)
//! checked for cycles. What can be known without parameter values is known here, with
//! CloudFormation's `Template format error: …` messages; the rest happens in
//! [`Template::prepare`](crate::Template::prepare).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::graph::DependencyGraph;
use crate::params::{self, ParameterDecl};
use crate::parse;
use crate::refs::{self, Refs, Section};

/// The only template format version.
pub const FORMAT_VERSION: &str = "2010-09-09";
/// Most resources in one template.
pub const MAX_RESOURCES: usize = 500;
/// Most parameters in one template.
pub const MAX_PARAMETERS: usize = 200;
/// Most outputs in one template.
pub const MAX_OUTPUTS: usize = 200;
/// Most mappings in one template.
pub const MAX_MAPPINGS: usize = 200;

/// The top-level sections a template may have.
const SECTIONS: &[&str] = &[
    "AWSTemplateFormatVersion",
    "Conditions",
    "Description",
    "Mappings",
    "Metadata",
    "Outputs",
    "Parameters",
    "Resources",
    "Rules",
    "Transform",
];

/// The attributes a resource may have.
const RESOURCE_ATTRIBUTES: &[&str] = &[
    "Condition",
    "CreationPolicy",
    "DeletionPolicy",
    "DependsOn",
    "Metadata",
    "Properties",
    "Type",
    "UpdatePolicy",
    "UpdateReplacePolicy",
];

/// The pseudo parameters (`Ref` targets every stack has).
pub const PSEUDO_PARAMETERS: &[&str] = &[
    "AWS::AccountId",
    "AWS::NoValue",
    "AWS::NotificationARNs",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
];

const RESOURCE_FUNCTIONS: &[&str] = &[
    "Fn::Base64",
    "Fn::FindInMap",
    "Fn::GetAZs",
    "Fn::GetAtt",
    "Fn::If",
    "Fn::ImportValue",
    "Fn::Join",
    "Fn::Select",
    "Fn::Split",
    "Fn::Sub",
    "Ref",
];

const CONDITION_FUNCTIONS: &[&str] = &[
    "Condition",
    "Fn::And",
    "Fn::Base64",
    "Fn::Equals",
    "Fn::FindInMap",
    "Fn::GetAZs",
    "Fn::Join",
    "Fn::Not",
    "Fn::Or",
    "Fn::Select",
    "Fn::Split",
    "Fn::Sub",
    "Ref",
];

const RULE_FUNCTIONS: &[&str] = &[
    "Fn::And",
    "Fn::Contains",
    "Fn::EachMemberEquals",
    "Fn::EachMemberIn",
    "Fn::Equals",
    "Fn::FindInMap",
    "Fn::Join",
    "Fn::Not",
    "Fn::Or",
    "Fn::RefAll",
    "Fn::Select",
    "Fn::Split",
    "Fn::Sub",
    "Ref",
];

/// What a resource's deletion (`DeletionPolicy`) or replacement (`UpdateReplacePolicy`)
/// does to the physical resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `Delete`: delete it.
    Delete,
    /// `Retain`: keep it, and forget it.
    Retain,
    /// `RetainExceptOnCreate` (DeletionPolicy only): keep it, unless the stack's creation
    /// is being rolled back.
    RetainExceptOnCreate,
    /// `Snapshot`: snapshot, then delete (for types that support snapshots).
    Snapshot,
}

/// One resource as declared.
#[derive(Debug, Clone)]
pub struct ResourceDecl {
    /// The logical id.
    pub logical_id: String,
    /// `Type`, e.g. `AWS::S3::Bucket`.
    pub resource_type: String,
    /// `Properties`, unevaluated (an empty object when absent).
    pub properties: Value,
    /// `DependsOn`, as written.
    pub depends_on: Vec<String>,
    /// `Condition`: the resource exists only when it is true.
    pub condition: Option<String>,
    /// `DeletionPolicy`; `None` is the type's default (`Delete` for the types we run).
    pub deletion_policy: Option<Policy>,
    /// `UpdateReplacePolicy`; `None` is the type's default.
    pub update_replace_policy: Option<Policy>,
    /// `Metadata`, unevaluated.
    pub metadata: Option<Value>,
    /// `CreationPolicy`, unevaluated.
    pub creation_policy: Option<Value>,
    /// `UpdatePolicy`, unevaluated.
    pub update_policy: Option<Value>,
}

/// One output as declared.
#[derive(Debug, Clone)]
pub struct OutputDecl {
    /// The output's logical id.
    pub name: String,
    /// `Value`, unevaluated.
    pub value: Value,
    /// `Description`.
    pub description: Option<String>,
    /// `Export.Name`, unevaluated.
    pub export_name: Option<Value>,
    /// `Condition`: the output exists only when it is true.
    pub condition: Option<String>,
}

/// One assertion of a rule.
#[derive(Debug, Clone)]
pub struct Assertion {
    /// `Assert`: a rule expression that must be true.
    pub assert: Value,
    /// `AssertDescription`: the error message when it is not.
    pub description: Option<String>,
}

/// One rule of the Rules section.
#[derive(Debug, Clone)]
pub struct RuleDecl {
    /// The rule's name.
    pub name: String,
    /// `RuleCondition`: the assertions apply only when it is true.
    pub condition: Option<Value>,
    /// `Assertions`.
    pub assertions: Vec<Assertion>,
}

/// A parsed and validated template.
#[derive(Debug, Clone)]
pub struct Template {
    pub(crate) body: Value,
    pub(crate) description: Option<String>,
    pub(crate) parameters: Vec<ParameterDecl>,
    pub(crate) mappings: Map<String, Value>,
    pub(crate) conditions: BTreeMap<String, Value>,
    pub(crate) rules: Vec<RuleDecl>,
    pub(crate) resources: BTreeMap<String, ResourceDecl>,
    pub(crate) outputs: BTreeMap<String, OutputDecl>,
    pub(crate) graph: DependencyGraph,
}

fn is_alphanumeric(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric())
}

fn section<'a>(top: &'a Map<String, Value>, name: &str) -> Result<Option<&'a Map<String, Value>>> {
    match top.get(name) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(Error::format(format!("{name} section must be a JSON object"))),
    }
}

fn too_many(what: &str, n: usize, max: usize) -> Error {
    Error::format(format!("Number of {what}, {n}, is greater than maximum allowed, {max}"))
}

fn check_functions(found: &BTreeSet<String>, allowed: &[&str]) -> Result<()> {
    match found.iter().find(|f| !allowed.contains(&f.as_str())) {
        None => Ok(()),
        Some(f) => Err(Error::format(format!(
            "Encountered unsupported function: {f} Supported functions are: [{}]",
            allowed.join(", ")
        ))),
    }
}

fn policy(id: &str, attr: &str, v: Option<&Value>) -> Result<Option<Policy>> {
    let Some(v) = v else { return Ok(None) };
    let p = match v.as_str() {
        Some("Delete") => Policy::Delete,
        Some("Retain") => Policy::Retain,
        Some("Snapshot") => Policy::Snapshot,
        Some("RetainExceptOnCreate") if attr == "DeletionPolicy" => Policy::RetainExceptOnCreate,
        _ => {
            let allowed = if attr == "DeletionPolicy" {
                "Delete, Retain, RetainExceptOnCreate, Snapshot"
            } else {
                "Delete, Retain, Snapshot"
            };
            return Err(Error::format(format!(
                "[/Resources/{id}/{attr}] {attr} must be one of [{allowed}]"
            )));
        }
    };
    Ok(Some(p))
}

impl Template {
    /// Parses a template body (JSON or YAML, at most [`parse::MAX_TEMPLATE_BYTES`]) and
    /// validates it.
    pub fn parse(body: &str) -> Result<Template> {
        Template::from_value(parse::parse_body(body)?)
    }

    /// Validates a template already in the long form (JSON).
    pub fn from_value(body: Value) -> Result<Template> {
        let Value::Object(top) = &body else {
            return Err(Error::format("unsupported structure."));
        };
        let unknown: Vec<&str> = top
            .keys()
            .map(String::as_str)
            .filter(|k| !SECTIONS.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(Error::format(format!(
                "Invalid template property or properties [{}]",
                unknown.join(", ")
            )));
        }
        if let Some(v) = top.get("AWSTemplateFormatVersion")
            && v.as_str() != Some(FORMAT_VERSION)
        {
            let shown = params::scalar_string(v).unwrap_or_else(|| v.to_string());
            return Err(Error::format(format!(
                "Unsupported template version {shown}; the only version is {FORMAT_VERSION}"
            )));
        }
        if let Some(t) = top.get("Transform") {
            return Err(Error::format(format!(
                "Transform {} is not supported: kinesis-data does not run template macros",
                params::scalar_string(t).unwrap_or_else(|| t.to_string())
            )));
        }
        let description = match top.get("Description") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(Error::format("Every Description member must be a string.")),
        };

        // Parameters.
        let param_section = section(top, "Parameters")?.cloned().unwrap_or_default();
        if param_section.len() > MAX_PARAMETERS {
            return Err(too_many("parameters", param_section.len(), MAX_PARAMETERS));
        }
        if let Some(bad) = param_section.keys().find(|k| !is_alphanumeric(k)) {
            return Err(Error::format(format!("Parameter name {bad} is non alphanumeric.")));
        }
        let parameters = params::parse_section(&param_section)?;
        let param_names: BTreeSet<&str> = param_section.keys().map(String::as_str).collect();

        // Mappings.
        let mappings = section(top, "Mappings")?.cloned().unwrap_or_default();
        if mappings.len() > MAX_MAPPINGS {
            return Err(too_many("mappings", mappings.len(), MAX_MAPPINGS));
        }
        for (name, map) in &mappings {
            if !is_alphanumeric(name) {
                return Err(Error::format(format!("Mapping name {name} is non alphanumeric.")));
            }
            let Value::Object(first) = map else {
                return Err(Error::format(format!("Every Mappings member {name} must be a map")));
            };
            for second in first.values() {
                let Value::Object(attrs) = second else {
                    return Err(Error::format(format!("Every Mappings member {name} must be a map")));
                };
                let scalar_or_list = |v: &Value| match v {
                    Value::Array(items) => items.iter().all(|i| params::scalar_string(i).is_some()),
                    other => params::scalar_string(other).is_some(),
                };
                if !attrs.values().all(scalar_or_list) {
                    return Err(Error::format("Every Mappings attribute must be a String or a List."));
                }
            }
        }

        let resource_section = match top.get("Resources") {
            Some(Value::Object(m)) if !m.is_empty() => m,
            Some(Value::Object(_)) | None => {
                return Err(Error::format("At least one Resources member must be defined."));
            }
            Some(_) => return Err(Error::format("Resources section must be a JSON object")),
        };
        let resource_names: BTreeSet<&str> = resource_section.keys().map(String::as_str).collect();

        // Conditions: parameters, pseudo parameters and other conditions only.
        let conditions: BTreeMap<String, Value> = section(top, "Conditions")?
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let condition_exists = |name: &str| conditions.contains_key(name);
        for (name, expr) in &conditions {
            if !is_alphanumeric(name) {
                return Err(Error::format(format!("Condition name {name} is non alphanumeric.")));
            }
            let mut r = Refs::default();
            refs::collect(expr, Section::Conditions, None, &mut r)?;
            check_functions(&r.functions, CONDITION_FUNCTIONS)?;
            let bad: Vec<&str> = r
                .refs
                .iter()
                .map(String::as_str)
                .filter(|t| !param_names.contains(t) && !PSEUDO_PARAMETERS.contains(t))
                .collect();
            if !bad.is_empty() {
                return Err(Error::format(format!(
                    "Unresolved dependencies [{}]. Cannot reference resources in the Conditions block of the template",
                    bad.join(", ")
                )));
            }
            if let Some(c) = r.conditions.iter().find(|c| !condition_exists(c)) {
                return Err(Error::format(format!(
                    "Unresolved condition dependency {c} in Conditions block"
                )));
            }
        }

        // Resources.
        if resource_section.len() > MAX_RESOURCES {
            return Err(too_many("resources", resource_section.len(), MAX_RESOURCES));
        }
        let is_ref_target =
            |t: &str| param_names.contains(t) || PSEUDO_PARAMETERS.contains(&t) || resource_names.contains(t);
        let mut resources = BTreeMap::new();
        let mut unresolved = BTreeSet::new();
        let mut undefined_get_att = None;
        let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (id, decl) in resource_section {
            if !is_alphanumeric(id) {
                return Err(Error::format(format!("Resource name {id} is non alphanumeric.")));
            }
            let Value::Object(attrs) = decl else {
                return Err(Error::format(format!(
                    "[/Resources/{id}] Every Resources object must contain a Type member."
                )));
            };
            let Some(Value::String(resource_type)) = attrs.get("Type") else {
                return Err(Error::format(format!(
                    "[/Resources/{id}] Every Resources object must contain a Type member."
                )));
            };
            if let Some(bad) = attrs.keys().find(|k| !RESOURCE_ATTRIBUTES.contains(&k.as_str())) {
                return Err(Error::format(format!("Invalid template resource property '{bad}'")));
            }
            let properties = match attrs.get("Properties") {
                None | Some(Value::Null) => Value::Object(Map::new()),
                Some(p @ Value::Object(_)) => p.clone(),
                Some(_) => {
                    return Err(Error::format(format!(
                        "[/Resources/{id}/Properties] Properties must be a JSON object"
                    )));
                }
            };
            let depends_on: Vec<String> = match attrs.get("DependsOn") {
                None => Vec::new(),
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                    items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect()
                }
                Some(_) => {
                    return Err(Error::format(format!(
                        "[/Resources/{id}/DependsOn] DependsOn must be a string or a list of strings"
                    )));
                }
            };
            let condition = match attrs.get("Condition") {
                None => None,
                Some(Value::String(c)) if condition_exists(c) => Some(c.clone()),
                Some(Value::String(c)) => {
                    return Err(Error::format(format!(
                        "Unresolved condition dependency {c} in resource {id}"
                    )));
                }
                Some(_) => return Err(Error::format("Every Condition member must be a string.")),
            };
            let mut r = Refs::default();
            refs::collect(&properties, Section::Resources, None, &mut r)?;
            check_functions(&r.functions, RESOURCE_FUNCTIONS)?;
            if let Some(c) = r.conditions.iter().find(|c| !condition_exists(c)) {
                return Err(refs::unresolved_condition(c));
            }
            unresolved.extend(r.refs.iter().filter(|t| !is_ref_target(t)).cloned());
            unresolved.extend(
                depends_on
                    .iter()
                    .filter(|d| !resource_names.contains(d.as_str()))
                    .cloned(),
            );
            if undefined_get_att.is_none() {
                undefined_get_att = r
                    .get_atts
                    .iter()
                    .find(|t| !resource_names.contains(t.as_str()))
                    .cloned();
            }
            let edges = deps.entry(id.clone()).or_default();
            edges.extend(
                r.refs
                    .iter()
                    .chain(&r.get_atts)
                    .chain(&depends_on)
                    .filter(|t| resource_names.contains(t.as_str()))
                    .cloned(),
            );
            resources.insert(
                id.clone(),
                ResourceDecl {
                    logical_id: id.clone(),
                    resource_type: resource_type.clone(),
                    properties,
                    depends_on,
                    condition,
                    deletion_policy: policy(id, "DeletionPolicy", attrs.get("DeletionPolicy"))?,
                    update_replace_policy: policy(id, "UpdateReplacePolicy", attrs.get("UpdateReplacePolicy"))?,
                    metadata: attrs.get("Metadata").cloned(),
                    creation_policy: attrs.get("CreationPolicy").cloned(),
                    update_policy: attrs.get("UpdatePolicy").cloned(),
                },
            );
        }
        if !unresolved.is_empty() {
            return Err(unresolved_in("Resources", &unresolved));
        }
        if let Some(t) = undefined_get_att {
            return Err(undefined_resource(&t));
        }

        // Outputs.
        let output_section = section(top, "Outputs")?.cloned().unwrap_or_default();
        if output_section.len() > MAX_OUTPUTS {
            return Err(too_many("outputs", output_section.len(), MAX_OUTPUTS));
        }
        let mut outputs = BTreeMap::new();
        let mut unresolved = BTreeSet::new();
        for (name, decl) in &output_section {
            if !is_alphanumeric(name) {
                return Err(Error::format(format!("Output name {name} is non alphanumeric.")));
            }
            let Some(value) = decl.get("Value") else {
                return Err(Error::format("Every Outputs member must contain a Value object"));
            };
            let description = match decl.get("Description") {
                None => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    return Err(Error::format(format!(
                        "Output {name} is malformed. The Description field must be a string."
                    )));
                }
            };
            let export_name = match decl.get("Export") {
                None => None,
                Some(e) => match e.get("Name") {
                    Some(n) if !n.is_null() => Some(n.clone()),
                    _ => {
                        return Err(Error::format(format!(
                            "Output {name} is malformed. The Name field of every Export member must be specified and consist only of alphanumeric characters, colons, or hyphens."
                        )));
                    }
                },
            };
            let condition = match decl.get("Condition") {
                None => None,
                Some(Value::String(c)) if condition_exists(c) => Some(c.clone()),
                Some(Value::String(c)) => {
                    return Err(Error::format(format!(
                        "Unresolved condition dependency {c} in output {name}"
                    )));
                }
                Some(_) => return Err(Error::format("Every Condition member must be a string.")),
            };
            let mut r = Refs::default();
            refs::collect(value, Section::Outputs, None, &mut r)?;
            if let Some(n) = &export_name {
                refs::collect(n, Section::Outputs, None, &mut r)?;
            }
            check_functions(&r.functions, RESOURCE_FUNCTIONS)?;
            if let Some(c) = r.conditions.iter().find(|c| !condition_exists(c)) {
                return Err(refs::unresolved_condition(c));
            }
            unresolved.extend(r.refs.iter().filter(|t| !is_ref_target(t)).cloned());
            if undefined_get_att.is_none() {
                undefined_get_att = r
                    .get_atts
                    .iter()
                    .find(|t| !resource_names.contains(t.as_str()))
                    .cloned();
            }
            outputs.insert(
                name.clone(),
                OutputDecl {
                    name: name.clone(),
                    value: value.clone(),
                    description,
                    export_name,
                    condition,
                },
            );
        }
        if !unresolved.is_empty() {
            return Err(unresolved_in("Outputs", &unresolved));
        }
        if let Some(t) = undefined_get_att {
            return Err(undefined_resource(&t));
        }

        // Rules: parameters and pseudo parameters only.
        let mut rules = Vec::new();
        for (name, decl) in section(top, "Rules")?.cloned().unwrap_or_default() {
            let assertions = match decl.get("Assertions") {
                Some(Value::Array(items)) if !items.is_empty() => items,
                _ => {
                    return Err(Error::format(format!(
                        "Rule {name} must contain a non-empty Assertions list"
                    )));
                }
            };
            let mut r = Refs::default();
            let condition = decl.get("RuleCondition").cloned();
            if let Some(c) = &condition {
                refs::collect(c, Section::Rules, None, &mut r)?;
            }
            let mut parsed = Vec::new();
            for a in assertions {
                let Some(assert) = a.get("Assert") else {
                    return Err(Error::format(format!(
                        "Every Assertions member of rule {name} must contain an Assert"
                    )));
                };
                refs::collect(assert, Section::Rules, None, &mut r)?;
                let description = match a.get("AssertDescription") {
                    None => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => {
                        return Err(Error::format(format!(
                            "AssertDescription of rule {name} must be a string"
                        )));
                    }
                };
                parsed.push(Assertion {
                    assert: assert.clone(),
                    description,
                });
            }
            check_functions(&r.functions, RULE_FUNCTIONS)?;
            let bad: Vec<&str> = r
                .refs
                .iter()
                .map(String::as_str)
                .filter(|t| !param_names.contains(t) && !PSEUDO_PARAMETERS.contains(t))
                .collect();
            if !bad.is_empty() {
                return Err(Error::format(format!(
                    "Unresolved dependencies [{}]. Cannot reference resources in the Rules block of the template",
                    bad.join(", ")
                )));
            }
            rules.push(RuleDecl {
                name,
                condition,
                assertions: parsed,
            });
        }

        let graph = DependencyGraph::new(deps)?;
        Ok(Template {
            description,
            parameters,
            mappings,
            conditions,
            rules,
            resources,
            outputs,
            graph,
            body,
        })
    }

    /// The template in the long form (JSON), as CloudFormation's "Processed" stage shows it.
    pub fn body(&self) -> &Value {
        &self.body
    }

    /// `Description`.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The declared parameters, sorted by name.
    pub fn parameters(&self) -> &[ParameterDecl] {
        &self.parameters
    }

    /// The declared resources, sorted by logical id.
    pub fn resources(&self) -> impl Iterator<Item = &ResourceDecl> {
        self.resources.values()
    }

    /// One declared resource.
    pub fn resource(&self, logical_id: &str) -> Option<&ResourceDecl> {
        self.resources.get(logical_id)
    }

    /// The declared outputs, sorted by name.
    pub fn outputs(&self) -> impl Iterator<Item = &OutputDecl> {
        self.outputs.values()
    }

    /// The declared rules, sorted by name.
    pub fn rules(&self) -> &[RuleDecl] {
        &self.rules
    }

    /// The dependency graph of every declared resource, counting references in both
    /// branches of every `Fn::If` (what deleting a stack whose parameters are gone can use).
    pub fn dependency_graph(&self) -> &DependencyGraph {
        &self.graph
    }

    /// The capabilities a stack of this template must be given: `CAPABILITY_NAMED_IAM`
    /// when it declares IAM resources with custom names, else `CAPABILITY_IAM` when it
    /// declares IAM resources, else none.
    pub fn required_capability(&self) -> Option<&'static str> {
        let mut iam = false;
        for r in self.resources.values() {
            let name_property = match r.resource_type.as_str() {
                "AWS::IAM::Role" => Some("RoleName"),
                "AWS::IAM::User" => Some("UserName"),
                "AWS::IAM::Group" => Some("GroupName"),
                "AWS::IAM::ManagedPolicy" => Some("ManagedPolicyName"),
                "AWS::IAM::InstanceProfile" => Some("InstanceProfileName"),
                "AWS::IAM::Policy" | "AWS::IAM::AccessKey" | "AWS::IAM::UserToGroupAddition" => None,
                _ => continue,
            };
            if name_property.is_some_and(|p| r.properties.get(p).is_some()) {
                return Some("CAPABILITY_NAMED_IAM");
            }
            iam = true;
        }
        iam.then_some("CAPABILITY_IAM")
    }

    /// Checks the capabilities a CreateStack/UpdateStack call acknowledged
    /// (`Requires capabilities : [CAPABILITY_NAMED_IAM]` when one is missing;
    /// `CAPABILITY_NAMED_IAM` also covers `CAPABILITY_IAM`).
    pub fn check_capabilities<S: AsRef<str>>(&self, given: &[S]) -> Result<()> {
        let has = |c: &str| given.iter().any(|g| g.as_ref() == c);
        match self.required_capability() {
            Some(c @ "CAPABILITY_NAMED_IAM") if !has(c) => Err(Error::InsufficientCapabilities(c.to_owned())),
            Some(c @ "CAPABILITY_IAM") if !has(c) && !has("CAPABILITY_NAMED_IAM") => {
                Err(Error::InsufficientCapabilities(c.to_owned()))
            }
            _ => Ok(()),
        }
    }
}

/// `Template error: instance of Fn::GetAtt references undefined resource X`.
pub(crate) fn undefined_resource(name: &str) -> Error {
    Error::template(format!("instance of Fn::GetAtt references undefined resource {name}"))
}

/// `Template format error: Unresolved resource dependencies [A, B] in the X block of the
/// template`.
pub(crate) fn unresolved_in(block: &str, names: &BTreeSet<String>) -> Error {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    Error::format(format!(
        "Unresolved resource dependencies [{}] in the {block} block of the template",
        names.join(", ")
    ))
}
