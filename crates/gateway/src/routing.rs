//! Routing a request path to a deployed resource (AWS's rules, reference §6.2): a literal
//! path part beats a `{name}` variable, which beats a greedy `{name+}`; `{name}` matches
//! exactly one segment, `{name+}` one or more (the rest of the path). When a literal branch
//! leads nowhere the variable branch is tried, then the greedy one. Empty segments (`//`, a
//! trailing `/`) are ignored; segments are percent-decoded before matching.

use std::collections::{BTreeMap, HashMap};

use crate::model::Resource;

/// The children of one resource, by kind of path part.
#[derive(Debug, Default, Clone)]
struct Children {
    literal: HashMap<String, String>,
    variable: Option<(String, String)>,
    greedy: Option<(String, String)>,
}

/// A deployment's resource tree, indexed for matching.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    root: String,
    children: HashMap<String, Children>,
}

/// A matched resource and the path parameters it bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// The resource id.
    pub resource_id: String,
    /// `(name, decoded value)` in path order.
    pub params: Vec<(String, String)>,
}

/// The kind of a path part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPart<'a> {
    /// A literal segment.
    Literal(&'a str),
    /// `{name}`.
    Variable(&'a str),
    /// `{name+}`.
    Greedy(&'a str),
}

/// Classifies a path part (already validated).
pub fn classify(part: &str) -> PathPart<'_> {
    match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
        Some(inner) => match inner.strip_suffix('+') {
            Some(name) => PathPart::Greedy(name),
            None => PathPart::Variable(inner),
        },
        None => PathPart::Literal(part),
    }
}

/// Whether `part` is a valid `pathPart`: a literal of `a-zA-Z0-9._-:` (and `~`, `@`), or
/// `{name}` / `{name+}` with a name of `a-zA-Z0-9._-`.
pub fn valid_path_part(part: &str) -> bool {
    if part.is_empty() || part.len() > 1024 {
        return false;
    }
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    match classify(part) {
        PathPart::Literal(l) => l
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '~' | '@' | '$' | '!' | '\'')),
        PathPart::Variable(n) | PathPart::Greedy(n) => name_ok(n),
    }
}

impl RouteTable {
    /// Indexes `resources` (rooted at `root`).
    pub fn new(root: &str, resources: &BTreeMap<String, Resource>) -> Self {
        let mut children: HashMap<String, Children> = HashMap::new();
        for r in resources.values() {
            let (Some(parent), Some(part)) = (&r.parent_id, &r.path_part) else {
                continue;
            };
            let c = children.entry(parent.clone()).or_default();
            match classify(part) {
                PathPart::Literal(l) => {
                    c.literal.insert(l.to_owned(), r.id.clone());
                }
                PathPart::Variable(n) => c.variable = Some((n.to_owned(), r.id.clone())),
                PathPart::Greedy(n) => c.greedy = Some((n.to_owned(), r.id.clone())),
            }
        }
        Self {
            root: root.to_owned(),
            children,
        }
    }

    /// The resource `path` (as sent, percent-encoded) routes to.
    pub fn route(&self, path: &str) -> Option<Matched> {
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        let mut params = Vec::new();
        let id = self.walk(&self.root, &segments, &mut params)?;
        Some(Matched {
            resource_id: id.to_owned(),
            params,
        })
    }

    fn walk<'s>(&'s self, id: &'s str, segs: &[String], params: &mut Vec<(String, String)>) -> Option<&'s str> {
        let Some((seg, rest)) = segs.split_first() else {
            return Some(id);
        };
        let c = self.children.get(id)?;
        if let Some(child) = c.literal.get(seg.as_str())
            && let Some(found) = self.walk(child, rest, params)
        {
            return Some(found);
        }
        if let Some((name, child)) = &c.variable {
            params.push((name.clone(), seg.clone()));
            if let Some(found) = self.walk(child, rest, params) {
                return Some(found);
            }
            params.pop();
        }
        if let Some((name, child)) = &c.greedy {
            params.push((name.clone(), segs.join("/")));
            return Some(child);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(id: &str, parent: Option<&str>, part: Option<&str>) -> Resource {
        Resource {
            id: id.into(),
            parent_id: parent.map(Into::into),
            path_part: part.map(Into::into),
            path: String::new(),
            methods: BTreeMap::new(),
        }
    }

    fn table() -> RouteTable {
        let mut m = BTreeMap::new();
        for r in [
            res("root", None, None),
            res("items", Some("root"), Some("items")),
            res("id", Some("items"), Some("{id}")),
            res("special", Some("items"), Some("special")),
            res("sub", Some("id"), Some("sub")),
            res("proxy", Some("root"), Some("{proxy+}")),
            res("any", Some("root"), Some("{name}")),
        ] {
            m.insert(r.id.clone(), r);
        }
        RouteTable::new("root", &m)
    }

    #[test]
    fn literal_beats_variable_beats_greedy() {
        let t = table();
        assert_eq!(t.route("/").map(|m| m.resource_id), Some("root".into()));
        assert_eq!(t.route("/items").map(|m| m.resource_id), Some("items".into()));
        assert_eq!(t.route("/items/").map(|m| m.resource_id), Some("items".into()));
        assert_eq!(t.route("/items/special").map(|m| m.resource_id), Some("special".into()));
        let m = t.route("/items/42").expect("match");
        assert_eq!(m.resource_id, "id");
        assert_eq!(m.params, vec![("id".to_owned(), "42".to_owned())]);
        let m = t.route("/items/a%20b/sub").expect("match");
        assert_eq!(m.resource_id, "sub");
        assert_eq!(m.params, vec![("id".to_owned(), "a b".to_owned())]);
        // A single segment goes to the variable, several to the greedy resource.
        assert_eq!(t.route("/other").map(|m| m.resource_id), Some("any".into()));
        let m = t.route("/other/x/y").expect("match");
        assert_eq!(m.resource_id, "proxy");
        assert_eq!(m.params, vec![("proxy".to_owned(), "other/x/y".to_owned())]);
        // The literal branch leads nowhere: backtrack to the greedy one.
        let m = t.route("/items/42/nope/deeper").expect("match");
        assert_eq!(m.resource_id, "proxy");
        assert_eq!(m.params, vec![("proxy".to_owned(), "items/42/nope/deeper".to_owned())]);
    }

    #[test]
    fn no_route_without_a_matching_resource() {
        let mut m = BTreeMap::new();
        m.insert("root".into(), res("root", None, None));
        m.insert("a".into(), res("a", Some("root"), Some("a")));
        let t = RouteTable::new("root", &m);
        assert!(t.route("/b").is_none());
        assert!(t.route("/a/b").is_none());
    }

    #[test]
    fn path_parts_are_validated() {
        for ok in ["items", "{id}", "{proxy+}", "v1.2", "a-b_c", "{a.b}"] {
            assert!(valid_path_part(ok), "{ok}");
        }
        for bad in ["", "a/b", "{}", "{+}", "{a b}", "a b", "{id", "a?"] {
            assert!(!valid_path_part(bad), "{bad}");
        }
    }
}
