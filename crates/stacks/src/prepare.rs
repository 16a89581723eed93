//! A template made ready for one stack: [`Template::prepare`] resolves the parameters
//! (defaults, constraints, SSM parameter store values), checks the rules, evaluates the
//! conditions, drops the resources and outputs whose condition is false, computes the
//! dependency graph of what remains and looks up every `Fn::ImportValue`. The [`Prepared`]
//! stack then evaluates each resource's properties (once the resources it refers to exist,
//! through a [`ResourceResolver`]) and the outputs.
//!
//! Nothing here knows how resources are made: the lifecycle walks
//! [`Prepared::creation_levels`], asks a provider to create each resource with the
//! properties [`Prepared::resolve_properties`] gives, and records the resource's `Ref` value
//! and attributes (e.g. in a [`ResolvedResources`]) for the resources that follow.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::eval::{Conditions, Scope, rule_holds};
use crate::graph::DependencyGraph;
use crate::params::scalar_string;
use crate::refs::{self, Refs, Section};
use crate::template::{ResourceDecl, Template, unresolved_in};

/// The stack a template is prepared for: what the pseudo parameters give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackContext {
    /// `AWS::AccountId`.
    pub account_id: String,
    /// `AWS::Region`.
    pub region: String,
    /// `AWS::StackName`.
    pub stack_name: String,
    /// `AWS::StackId` (see [`stack_id`]).
    pub stack_id: String,
    /// `AWS::NotificationARNs`.
    pub notification_arns: Vec<String>,
    /// The stack's service role (`RoleARN`), if any: resources are made as a session of it.
    pub role_arn: Option<String>,
    /// The access key id of the caller running the operation (without a role, resources
    /// are made with its credentials); `None` outside an operation.
    pub caller: Option<String>,
}

impl StackContext {
    /// A context with no notification ARNs.
    pub fn new(
        account_id: impl Into<String>,
        region: impl Into<String>,
        stack_name: impl Into<String>,
        stack_id: impl Into<String>,
    ) -> StackContext {
        StackContext {
            account_id: account_id.into(),
            region: region.into(),
            stack_name: stack_name.into(),
            stack_id: stack_id.into(),
            notification_arns: Vec::new(),
            role_arn: None,
            caller: None,
        }
    }

    /// `AWS::Partition`: `aws-cn` for China regions, `aws-us-gov` for GovCloud, else `aws`.
    pub fn partition(&self) -> &'static str {
        partition(&self.region)
    }

    /// `AWS::URLSuffix`: `amazonaws.com.cn` in China regions, else `amazonaws.com`.
    pub fn url_suffix(&self) -> &'static str {
        if self.region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        }
    }
}

/// The partition of a region.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// A stack id as CloudFormation writes it:
/// `arn:aws:cloudformation:us-east-1:123456789012:stack/name/<uuid>`.
pub fn stack_id(region: &str, account_id: &str, stack_name: &str, uuid: &str) -> String {
    format!(
        "arn:{}:cloudformation:{region}:{account_id}:stack/{stack_name}/{uuid}",
        partition(region)
    )
}

/// What a stack's template can look up outside the stack. The composition root implements it
/// over the services (the SSM parameter store, the exports of other stacks).
pub trait Environment {
    /// The value of a parameter store parameter, for `AWS::SSM::Parameter::Value<…>`
    /// template parameters (`None` when there is no such parameter).
    fn ssm_parameter(&self, name: &str) -> Result<Option<String>>;

    /// The value another stack of this account and region exports under `name`, for
    /// `Fn::ImportValue` (`None` when nothing exports it).
    fn export(&self, name: &str) -> Result<Option<String>>;

    /// Every value of an AWS-specific parameter type in the account and region (e.g. all
    /// `AWS::EC2::VPC::Id`s), for `Fn::RefAll` in rules. Empty for a type whose service
    /// kinesis-data does not run.
    fn ref_all(&self, parameter_type: &str) -> Result<Vec<String>>;
}

/// An [`Environment`] over fixed maps (tests, and callers with nothing to look up).
#[derive(Debug, Clone, Default)]
pub struct StaticEnvironment {
    /// Parameter store parameters by name.
    pub ssm_parameters: BTreeMap<String, String>,
    /// Exports by name.
    pub exports: BTreeMap<String, String>,
    /// `Fn::RefAll` values by parameter type.
    pub values_by_type: BTreeMap<String, Vec<String>>,
}

impl Environment for StaticEnvironment {
    fn ssm_parameter(&self, name: &str) -> Result<Option<String>> {
        Ok(self.ssm_parameters.get(name).cloned())
    }

    fn export(&self, name: &str) -> Result<Option<String>> {
        Ok(self.exports.get(name).cloned())
    }

    fn ref_all(&self, parameter_type: &str) -> Result<Vec<String>> {
        Ok(self.values_by_type.get(parameter_type).cloned().unwrap_or_default())
    }
}

/// What the resources created so far give to `Ref` and `Fn::GetAtt`. The lifecycle
/// implements it over its record of the stack's resources (or fills a
/// [`ResolvedResources`]); it is only asked about resources the one being evaluated depends
/// on, which exist by then.
pub trait ResourceResolver {
    /// What `Ref` of the resource gives (usually its physical id); `None` if it has not been
    /// created.
    fn ref_value(&self, logical_id: &str) -> Option<Value>;

    /// An attribute for `Fn::GetAtt`; `None` if the resource's type has no such attribute.
    fn attribute(&self, logical_id: &str, attribute: &str) -> Option<Value>;
}

/// One created resource's `Ref` value and attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedResource {
    /// What `Ref` gives.
    pub ref_value: Value,
    /// What `Fn::GetAtt` gives, by attribute name.
    pub attributes: BTreeMap<String, Value>,
}

/// A [`ResourceResolver`] over a map of created resources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResolvedResources(pub BTreeMap<String, ResolvedResource>);

impl ResolvedResources {
    /// Records a created resource.
    pub fn insert(
        &mut self,
        logical_id: impl Into<String>,
        ref_value: impl Into<Value>,
        attributes: impl IntoIterator<Item = (String, Value)>,
    ) {
        self.0.insert(
            logical_id.into(),
            ResolvedResource {
                ref_value: ref_value.into(),
                attributes: attributes.into_iter().collect(),
            },
        );
    }
}

impl ResourceResolver for ResolvedResources {
    fn ref_value(&self, logical_id: &str) -> Option<Value> {
        self.0.get(logical_id).map(|r| r.ref_value.clone())
    }

    fn attribute(&self, logical_id: &str, attribute: &str) -> Option<Value> {
        self.0
            .get(logical_id)
            .and_then(|r| r.attributes.get(attribute).cloned())
    }
}

/// A parameter's value for one stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedParameter {
    /// The parameter's name.
    pub name: String,
    /// The value given, or the default (for SSM types: the parameter store name).
    pub value: String,
    /// For SSM types, the parameter store value (DescribeStacks' `ResolvedValue`).
    pub resolved_value: Option<String>,
    /// `NoEcho`.
    pub no_echo: bool,
    /// The value is the declared default.
    pub from_default: bool,
}

impl ResolvedParameter {
    /// The value as DescribeStacks shows it (`****` for `NoEcho` parameters).
    pub fn display_value(&self) -> &str {
        if self.no_echo { "****" } else { &self.value }
    }
}

/// An evaluated output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The output's logical id (`OutputKey`).
    pub key: String,
    /// Its value (a list is joined with commas).
    pub value: String,
    /// `Description`.
    pub description: Option<String>,
    /// The name it is exported under.
    pub export_name: Option<String>,
}

/// A template prepared for one stack. See the module documentation.
#[derive(Debug, Clone)]
pub struct Prepared {
    template: Template,
    context: StackContext,
    parameters: Vec<ResolvedParameter>,
    param_values: BTreeMap<String, Value>,
    conditions: BTreeMap<String, bool>,
    graph: DependencyGraph,
    imports: BTreeMap<String, String>,
}

impl Template {
    /// Prepares the template for a stack: `given` are the parameter values of the call (by
    /// name), `context` the stack, `env` what lies outside it. Fails with CloudFormation's
    /// messages: `Parameters: [X] do not exist in the template`, `Parameters: [X] must have
    /// values`, a parameter's constraint, a rule's `AssertDescription`, `Unresolved resource
    /// dependencies [X] in the Resources block of the template` (a resource referring to one
    /// whose condition is false), `No export named X found.`.
    pub fn prepare(
        &self,
        given: &BTreeMap<String, String>,
        context: &StackContext,
        env: &dyn Environment,
    ) -> Result<Prepared> {
        let declared: BTreeSet<&str> = self.parameters.iter().map(|p| p.name.as_str()).collect();
        let unknown: Vec<&str> = given
            .keys()
            .map(String::as_str)
            .filter(|k| !declared.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(Error::validation(format!(
                "Parameters: [{}] do not exist in the template",
                unknown.join(", ")
            )));
        }
        let missing: Vec<&str> = self
            .parameters
            .iter()
            .filter(|p| p.default.is_none() && !given.contains_key(&p.name))
            .map(|p| p.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(Error::validation(format!(
                "Parameters: [{}] must have values",
                missing.join(", ")
            )));
        }

        let mut parameters = Vec::new();
        let mut param_values = BTreeMap::new();
        for p in &self.parameters {
            let (value, from_default) = match (given.get(&p.name), &p.default) {
                (Some(v), _) => (v.clone(), false),
                (None, Some(d)) => (d.clone(), true),
                (None, None) => continue, // refused above
            };
            let resolved_value = if p.parameter_type.ssm {
                match env.ssm_parameter(&value)? {
                    Some(v) => Some(v),
                    None => {
                        return Err(Error::validation(format!(
                            "Unable to fetch parameters [{value}] from parameter store for this account."
                        )));
                    }
                }
            } else {
                None
            };
            let ref_value = p.check(resolved_value.as_deref().unwrap_or(&value))?;
            param_values.insert(p.name.clone(), ref_value);
            parameters.push(ResolvedParameter {
                name: p.name.clone(),
                value,
                resolved_value,
                no_echo: p.no_echo,
                from_default,
            });
        }

        let mut scope = Scope {
            template: self,
            context,
            params: &param_values,
            conditions: None,
            resources: None,
            imports: None,
            env: Some(env),
        };

        for rule in &self.rules {
            if let Some(c) = &rule.condition
                && !rule_holds(&scope, c)?
            {
                continue;
            }
            for a in &rule.assertions {
                if !rule_holds(&scope, &a.assert)? {
                    return Err(Error::validation(
                        a.description
                            .clone()
                            .unwrap_or_else(|| format!("Template assertion in rule {} failed", rule.name)),
                    ));
                }
            }
        }

        let conditions = Conditions::evaluate_all(&scope)?;
        let is_active = |c: &Option<String>| c.as_ref().is_none_or(|c| conditions.get(c) == Some(&true));
        let active: BTreeSet<&str> = self
            .resources
            .values()
            .filter(|r| is_active(&r.condition))
            .map(|r| r.logical_id.as_str())
            .collect();

        let mut deps = BTreeMap::new();
        let mut unresolved = BTreeSet::new();
        let mut import_exprs = Vec::new();
        for id in &active {
            let r = &self.resources[*id];
            let mut found = Refs::default();
            refs::collect(&r.properties, Section::Resources, Some(&conditions), &mut found)?;
            let mut edges = BTreeSet::new();
            for target in found.refs.iter().chain(&found.get_atts).chain(&r.depends_on) {
                if active.contains(target.as_str()) {
                    edges.insert(target.clone());
                } else if self.resources.contains_key(target) {
                    unresolved.insert(target.clone());
                }
            }
            deps.insert((*id).to_owned(), edges);
            import_exprs.extend(found.imports);
        }
        if !unresolved.is_empty() {
            return Err(unresolved_in("Resources", &unresolved));
        }
        let graph = DependencyGraph::new(deps)?;

        for o in self.outputs.values().filter(|o| is_active(&o.condition)) {
            let mut found = Refs::default();
            refs::collect(&o.value, Section::Outputs, Some(&conditions), &mut found)?;
            if let Some(n) = &o.export_name {
                refs::collect(n, Section::Outputs, Some(&conditions), &mut found)?;
            }
            unresolved.extend(
                found
                    .refs
                    .iter()
                    .chain(&found.get_atts)
                    .filter(|t| self.resources.contains_key(*t) && !active.contains(t.as_str()))
                    .cloned(),
            );
            import_exprs.extend(found.imports);
        }
        if !unresolved.is_empty() {
            return Err(unresolved_in("Outputs", &unresolved));
        }

        // Fn::ImportValue may not depend on resources: its names are known now.
        scope.conditions = Some(&conditions);
        let mut imports = BTreeMap::new();
        for expr in &import_exprs {
            let name = scope
                .eval(expr)?
                .as_ref()
                .and_then(scalar_string)
                .ok_or_else(|| Error::template("Fn::ImportValue requires the name of an export"))?;
            if imports.contains_key(&name) {
                continue;
            }
            let Some(value) = env.export(&name)? else {
                return Err(Error::validation(format!("No export named {name} found.")));
            };
            imports.insert(name, value);
        }

        Ok(Prepared {
            template: self.clone(),
            context: context.clone(),
            parameters,
            param_values,
            conditions,
            graph,
            imports,
        })
    }
}

impl Prepared {
    fn scope<'a>(&'a self, resources: Option<&'a dyn ResourceResolver>) -> Scope<'a> {
        Scope {
            template: &self.template,
            context: &self.context,
            params: &self.param_values,
            conditions: Some(&self.conditions),
            resources,
            imports: Some(&self.imports),
            env: None,
        }
    }

    /// The template.
    pub fn template(&self) -> &Template {
        &self.template
    }

    /// The stack.
    pub fn context(&self) -> &StackContext {
        &self.context
    }

    /// Every parameter's value, sorted by name.
    pub fn parameters(&self) -> &[ResolvedParameter] {
        &self.parameters
    }

    /// Every condition's value.
    pub fn conditions(&self) -> &BTreeMap<String, bool> {
        &self.conditions
    }

    /// The resources the stack has (those whose condition is true), sorted by logical id.
    pub fn resources(&self) -> impl Iterator<Item = &ResourceDecl> {
        self.graph.resources().filter_map(|id| self.template.resources.get(id))
    }

    /// One of the stack's resources (`None` if undeclared or its condition is false).
    pub fn resource(&self, logical_id: &str) -> Option<&ResourceDecl> {
        self.graph
            .resources()
            .any(|id| id == logical_id)
            .then(|| self.template.resources.get(logical_id))
            .flatten()
    }

    /// The dependency graph of the stack's resources.
    pub fn graph(&self) -> &DependencyGraph {
        &self.graph
    }

    /// Groups of resources to create in turn (see [`DependencyGraph::creation_levels`]).
    pub fn creation_levels(&self) -> &[Vec<String>] {
        self.graph.creation_levels()
    }

    /// Groups of resources to delete in turn (see [`DependencyGraph::deletion_levels`]).
    pub fn deletion_levels(&self) -> &[Vec<String>] {
        self.graph.deletion_levels()
    }

    /// The exports the stack imports, with their values.
    pub fn imports(&self) -> &BTreeMap<String, String> {
        &self.imports
    }

    /// A resource's properties with every intrinsic evaluated (`AWS::NoValue` properties
    /// and list elements removed). The resources it refers to must be in `resources`.
    pub fn resolve_properties(&self, logical_id: &str, resources: &dyn ResourceResolver) -> Result<Value> {
        let Some(r) = self.resource(logical_id) else {
            return Err(Error::Internal(format!(
                "resource {logical_id} is not part of the stack"
            )));
        };
        Ok(self
            .scope(Some(resources))
            .eval(&r.properties)?
            .unwrap_or_else(|| Value::Object(Map::new())))
    }

    /// The stack's outputs (those whose condition is true), sorted by key, once every
    /// resource exists.
    pub fn outputs(&self, resources: &dyn ResourceResolver) -> Result<Vec<Output>> {
        let scope = self.scope(Some(resources));
        let mut out = Vec::new();
        let mut exported = BTreeSet::new();
        for o in self.template.outputs.values() {
            if let Some(c) = &o.condition
                && self.conditions.get(c) != Some(&true)
            {
                continue;
            }
            let value = match scope.eval(&o.value)? {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| scalar_string(i).ok_or_else(|| output_not_string(&o.name)))
                    .collect::<Result<Vec<_>>>()?
                    .join(","),
                Some(v) => scalar_string(&v).ok_or_else(|| output_not_string(&o.name))?,
                None => return Err(output_not_string(&o.name)),
            };
            let export_name = match &o.export_name {
                None => None,
                Some(expr) => {
                    let name = scope
                        .eval(expr)?
                        .as_ref()
                        .and_then(scalar_string)
                        .filter(|n| !n.is_empty())
                        .ok_or_else(|| {
                            Error::format(format!(
                                "Output {} is malformed. The Name field of every Export member must be specified and consist only of alphanumeric characters, colons, or hyphens.",
                                o.name
                            ))
                        })?;
                    if !exported.insert(name.clone()) {
                        return Err(Error::format(format!(
                            "Duplicate Export names found in template: {name}"
                        )));
                    }
                    Some(name)
                }
            };
            out.push(Output {
                key: o.name.clone(),
                value,
                description: o.description.clone(),
                export_name,
            });
        }
        Ok(out)
    }
}

fn output_not_string(name: &str) -> Error {
    Error::format(format!(
        "Output {name} is malformed. The Value field of every Outputs member must evaluate to a String or a List of Strings."
    ))
}
