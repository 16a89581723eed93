//! The dependency graph between a stack's resources: an edge for each `Ref`, `Fn::GetAtt`,
//! `${…}` of `Fn::Sub` naming another resource and each `DependsOn`. It gives the creation
//! order (dependencies first), the deletion order (dependents first) and the same orders
//! grouped into levels whose members do not depend on each other and can be worked on in
//! parallel. Everything is ordered: levels are sorted by logical id, so one template always
//! gives the same plan.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};

/// Resources and what each depends on, with the orders derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyGraph {
    deps: BTreeMap<String, BTreeSet<String>>,
    dependents: BTreeMap<String, BTreeSet<String>>,
    creation_levels: Vec<Vec<String>>,
    deletion_levels: Vec<Vec<String>>,
}

impl DependencyGraph {
    /// Builds the graph of `deps` (each resource to the resources it depends on; every
    /// resource a key, every dependency a resource). A cycle is CloudFormation's
    /// `Circular dependency between resources: [A, B]`, naming every resource on one.
    pub fn new(deps: BTreeMap<String, BTreeSet<String>>) -> Result<DependencyGraph> {
        let mut dependents: BTreeMap<String, BTreeSet<String>> =
            deps.keys().map(|k| (k.clone(), BTreeSet::new())).collect();
        for (id, ds) in &deps {
            for d in ds {
                let Some(set) = dependents.get_mut(d) else {
                    return Err(Error::Internal(format!(
                        "resource {id} depends on {d}, which is not in the graph"
                    )));
                };
                set.insert(id.clone());
            }
        }
        let cyclic = cyclic_nodes(&deps);
        if !cyclic.is_empty() {
            let names: Vec<&str> = cyclic.iter().map(String::as_str).collect();
            return Err(Error::validation(format!(
                "Circular dependency between resources: [{}]",
                names.join(", ")
            )));
        }
        let creation_levels = levels(&deps);
        let deletion_levels = levels(&dependents);
        Ok(DependencyGraph {
            deps,
            dependents,
            creation_levels,
            deletion_levels,
        })
    }

    /// The resources in the graph, sorted.
    pub fn resources(&self) -> impl Iterator<Item = &str> {
        self.deps.keys().map(String::as_str)
    }

    /// What `id` depends on (empty for an unknown id).
    pub fn dependencies(&self, id: &str) -> impl Iterator<Item = &str> {
        self.deps.get(id).into_iter().flatten().map(String::as_str)
    }

    /// What depends on `id` (empty for an unknown id).
    pub fn dependents(&self, id: &str) -> impl Iterator<Item = &str> {
        self.dependents.get(id).into_iter().flatten().map(String::as_str)
    }

    /// Groups of resources to create in turn; each resource's dependencies are in earlier
    /// groups, so a group's members can be created in parallel.
    pub fn creation_levels(&self) -> &[Vec<String>] {
        &self.creation_levels
    }

    /// Groups of resources to delete in turn; each resource's dependents are in earlier
    /// groups.
    pub fn deletion_levels(&self) -> &[Vec<String>] {
        &self.deletion_levels
    }

    /// One creation order: the creation levels, one after the other.
    pub fn creation_order(&self) -> Vec<&str> {
        self.creation_levels.iter().flatten().map(String::as_str).collect()
    }

    /// One deletion order: the deletion levels, one after the other.
    pub fn deletion_order(&self) -> Vec<&str> {
        self.deletion_levels.iter().flatten().map(String::as_str).collect()
    }
}

/// Longest-path levels of an acyclic graph (`edges`: node → what must come before it).
fn levels(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut level: BTreeMap<&str, usize> = BTreeMap::new();
    let mut remaining: Vec<&String> = edges.keys().collect();
    // Kahn-style rounds: a node gets its level once every predecessor has one.
    while !remaining.is_empty() {
        let mut next = Vec::new();
        let mut placed = Vec::new();
        for id in remaining {
            let preds = &edges[id];
            if preds.iter().all(|p| level.contains_key(p.as_str())) {
                let l = preds.iter().map(|p| level[p.as_str()] + 1).max().unwrap_or(0);
                placed.push((id.as_str(), l));
            } else {
                next.push(id);
            }
        }
        if placed.is_empty() {
            // Only reachable with a cycle, which `new` has already refused.
            break;
        }
        level.extend(placed);
        remaining = next;
    }
    let depth = level.values().max().map_or(0, |m| m + 1);
    let mut out = vec![Vec::new(); depth];
    for (id, l) in level {
        out[l].push(id.to_owned());
    }
    out
}

/// The nodes on some cycle (members of a strongly connected component of more than one
/// node, or with an edge to themselves), sorted. Tarjan's algorithm.
fn cyclic_nodes(edges: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: BTreeSet<String>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.edges.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low[v];
                    self.low.insert(v, lv.min(lw));
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low[v];
                    self.low.insert(v, lv.min(iw));
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                let self_loop = self.edges.get(v).is_some_and(|d| d.contains(v));
                if component.len() > 1 || self_loop {
                    self.out.extend(component.into_iter().map(str::to_owned));
                }
            }
        }
    }
    let mut t = Tarjan {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: BTreeSet::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> Result<DependencyGraph> {
        DependencyGraph::new(
            edges
                .iter()
                .map(|(k, ds)| (k.to_string(), ds.iter().map(|d| d.to_string()).collect()))
                .collect(),
        )
    }

    #[test]
    fn levels_and_orders() {
        // Role <- Function <- Permission; Bucket <- Permission; Bucket <- Notifications <- Function
        let g = graph(&[
            ("Bucket", &[]),
            ("Role", &[]),
            ("Function", &["Role"]),
            ("Permission", &["Function", "Bucket"]),
            ("Notifications", &["Bucket", "Permission"]),
            ("Topic", &[]),
        ])
        .unwrap();
        assert_eq!(
            g.creation_levels(),
            &[
                vec!["Bucket".to_string(), "Role".into(), "Topic".into()],
                vec!["Function".to_string()],
                vec!["Permission".to_string()],
                vec!["Notifications".to_string()],
            ]
        );
        assert_eq!(
            g.creation_order(),
            vec!["Bucket", "Role", "Topic", "Function", "Permission", "Notifications"]
        );
        assert_eq!(
            g.deletion_levels(),
            &[
                vec!["Notifications".to_string(), "Topic".into()],
                vec!["Permission".to_string()],
                vec!["Bucket".to_string(), "Function".into()],
                vec!["Role".to_string()],
            ]
        );
        // Every resource is deleted before what it depends on.
        let order = g.deletion_order();
        let pos = |x: &str| order.iter().position(|o| *o == x).unwrap();
        for id in g.resources() {
            for d in g.dependencies(id) {
                assert!(pos(id) < pos(d), "{id} before {d}");
            }
        }
        assert_eq!(
            g.dependents("Bucket").collect::<Vec<_>>(),
            vec!["Notifications", "Permission"]
        );
        assert_eq!(g.dependencies("Nope").count(), 0);
    }

    #[test]
    fn cycles_name_every_resource_on_them() {
        let e = graph(&[("A", &["B"]), ("B", &["A"]), ("C", &["A"])]).unwrap_err();
        assert_eq!(e.to_string(), "Circular dependency between resources: [A, B]");
        assert_eq!(e.code(), "ValidationError");
        let e = graph(&[("A", &["A"])]).unwrap_err();
        assert_eq!(e.to_string(), "Circular dependency between resources: [A]");
        let e = graph(&[("A", &["B"]), ("B", &["C"]), ("C", &["A"]), ("D", &["D"])]).unwrap_err();
        assert_eq!(e.to_string(), "Circular dependency between resources: [A, B, C, D]");
    }

    #[test]
    fn unknown_dependency_is_an_internal_error() {
        let e = graph(&[("A", &["Z"])]).unwrap_err();
        assert_eq!(e.code(), "InternalFailure");
    }

    #[test]
    fn empty_graph() {
        let g = graph(&[]).unwrap();
        assert!(g.creation_levels().is_empty());
        assert!(g.deletion_order().is_empty());
    }
}
