//! Helpers shared by the integration tests: a stack context, and a fake lifecycle that
//! "creates" resources in order and records made-up `Ref` values and attributes.

#![allow(dead_code)]

use std::collections::BTreeMap;

use kd_stacks::{Prepared, ResolvedResources, StackContext, StaticEnvironment, Template};
use serde_json::{Value, json};

pub const ACCOUNT: &str = "000000000000";

pub fn context(region: &str) -> StackContext {
    StackContext::new(
        ACCOUNT,
        region,
        "app",
        kd_stacks::stack_id(region, ACCOUNT, "app", "6b1c2a60-0000-4000-8000-000000000001"),
    )
}

pub fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Parses and prepares `template` in us-east-1 with `pairs` and `env`.
pub fn prepare(template: &Value, pairs: &[(&str, &str)], env: &StaticEnvironment) -> kd_stacks::Result<Prepared> {
    Template::from_value(template.clone())?.prepare(&params(pairs), &context("us-east-1"), env)
}

/// The made-up `Ref` value of a created resource.
pub fn physical_id(logical_id: &str) -> String {
    format!("app-{logical_id}-PHYS")
}

/// "Creates" every resource level by level, resolving each one's properties with the
/// resources created before it; returns the properties by logical id and the resolver.
pub fn deploy(p: &Prepared) -> kd_stacks::Result<(BTreeMap<String, Value>, ResolvedResources)> {
    let mut created = ResolvedResources::default();
    let mut props = BTreeMap::new();
    for level in p.creation_levels() {
        let mut made = Vec::new();
        for id in level {
            props.insert(id.clone(), p.resolve_properties(id, &created)?);
            made.push(id.clone());
        }
        // A level is created in parallel: its members only become visible afterwards.
        for id in made {
            let arn = format!("arn:aws:test:us-east-1:{ACCOUNT}:{id}");
            created.insert(
                id.clone(),
                physical_id(&id),
                [
                    ("Arn".to_string(), json!(arn)),
                    ("Outputs.Name".to_string(), json!(format!("{id}-name"))),
                ],
            );
        }
    }
    Ok((props, created))
}
