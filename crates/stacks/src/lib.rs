//! The CloudFormation template engine: it reads templates (JSON, or YAML with the short-form
//! tags), validates them as CloudFormation does (with its `Template format error: …`
//! messages), resolves parameters (constraints, `AWS::SSM::Parameter::Value<…>`), checks
//! rules, evaluates conditions and intrinsic functions, and orders resources by their
//! dependencies. It is pure: no HTTP, no storage, no services. The stack lifecycle above it
//! (later milestones: the CloudFormation API adapter and the resource providers) calls
//! [`Template::parse`], then [`Template::prepare`] for a stack, then walks
//! [`Prepared::creation_levels`], asking [`Prepared::resolve_properties`] for each
//! resource's properties with the resources created so far, and finally
//! [`Prepared::outputs`]. What lies outside a stack (SSM parameters, other stacks' exports)
//! comes through the [`Environment`] port, and created resources' `Ref`/`Fn::GetAtt` values
//! through [`ResourceResolver`], so the engine never knows how a resource is made.
//!
//! Modules: [`parse`] (bodies to the long form), [`template`] (sections, declarations,
//! static validation), [`params`] (parameter types and constraints), [`graph`]
//! (dependency graph and orders), [`prepare`] (a template prepared for one stack).

#![warn(missing_docs)]

mod error;
mod eval;
pub mod graph;
pub mod params;
pub mod parse;
pub mod prepare;
mod refs;
pub mod template;

pub use error::{Error, Result};
pub use graph::DependencyGraph;
pub use params::{ParameterDecl, ParameterShape, ParameterType};
pub use parse::{MAX_TEMPLATE_BODY_BYTES, MAX_TEMPLATE_BYTES};
pub use prepare::{
    Environment, Output, Prepared, ResolvedParameter, ResolvedResource, ResolvedResources, ResourceResolver,
    StackContext, StaticEnvironment, partition, stack_id,
};
pub use template::{Assertion, OutputDecl, Policy, ResourceDecl, RuleDecl, Template};
