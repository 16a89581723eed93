//! The CloudFormation engine. Its pure half reads templates (JSON, or YAML with the
//! short-form tags), validates them as CloudFormation does (with its `Template format
//! error: …` messages), resolves parameters (constraints, `AWS::SSM::Parameter::Value<…>`),
//! checks rules, evaluates conditions and intrinsic functions, and orders resources by their
//! dependencies: [`Template::parse`], then [`Template::prepare`] for a stack, then
//! [`Prepared::creation_levels`], [`Prepared::resolve_properties`] for each resource with
//! the resources created so far, and [`Prepared::outputs`]. What lies outside a stack (SSM
//! parameters, other stacks' exports) comes through the [`Environment`] port, and created
//! resources' `Ref`/`Fn::GetAtt` values through [`ResourceResolver`].
//!
//! Its stateful half, [`lifecycle`], runs stacks: durable stack documents in the metadata
//! store ([`store`]: the on-disk format and the restart recovery rule), create / update /
//! delete with rollback, events, outputs and exports, change sets. It never knows how a
//! resource is made: the [`Provisioner`] port does (the composition root implements it over
//! the services; the engine tests use a fake). The `api-cloudformation` adapter sits above
//! it.
//!
//! Modules: [`parse`] (bodies to the long form), [`template`] (sections, declarations,
//! static validation), [`params`] (parameter types and constraints), [`graph`]
//! (dependency graph and orders), [`prepare`] (a template prepared for one stack),
//! [`lifecycle`] (the engine and its port), [`store`] (durable documents), [`custom`]
//! (custom resources' request and response protocol).

#![warn(missing_docs)]

pub mod custom;
mod error;
mod eval;
pub mod graph;
pub mod lifecycle;
pub mod params;
pub mod parse;
pub mod prepare;
mod refs;
pub mod store;
pub mod template;

pub use error::{Error, Result};
pub use graph::DependencyGraph;
pub use lifecycle::{
    Export, ParameterInput, ParameterSource, ProvisionError, Provisioned, Provisioner, ResourceRequest, Scope,
    StackInput, Stacks,
};
pub use params::{ParameterDecl, ParameterShape, ParameterType};
pub use parse::{MAX_TEMPLATE_BODY_BYTES, MAX_TEMPLATE_BYTES};
pub use prepare::{
    Environment, Output, Prepared, ResolvedParameter, ResolvedResource, ResolvedResources, ResourceResolver,
    StackContext, StaticEnvironment, partition, stack_id,
};
pub use store::{ChangeSetDoc, EventDoc, OutputDoc, ResourceDoc, ResourceStatus, StackDoc, StackStatus, Tag};
pub use template::{Assertion, OutputDecl, Policy, ResourceDecl, RuleDecl, Template};
