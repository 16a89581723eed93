//! Wildcard patterns of the policy language: `*` (any run of characters, including none)
//! and `?` (exactly one character), optional policy variables `${key}`, and the ARN-aware
//! resource patterns built from them.

use std::borrow::Cow;

use super::condition::ConditionContext;

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// Literal text.
    Lit(Box<str>),
    /// `*`: any run of characters.
    Star,
    /// `?`: exactly one character.
    One,
    /// `${key}` or `${key, 'default'}`; the key is lower-cased.
    Var { key: Box<str>, default: Option<Box<str>> },
}

/// A compiled pattern, with fast paths for the common shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Glob {
    /// `*`: matches everything.
    Any,
    /// No wildcard and no variable: plain comparison.
    Exact(Box<str>),
    /// `literal*`: a prefix test.
    Prefix(Box<str>),
    /// Anything else.
    Toks(Box<[Tok]>),
}

/// How to read a pattern's text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GlobSyntax {
    /// `*` and `?` are wildcards (else literal).
    pub wildcards: bool,
    /// `${...}` are policy variables (Version 2012-10-17 only).
    pub variables: bool,
}

impl Glob {
    /// Compiles `pattern`. With `lowercase`, literal text is ASCII-lower-cased (action names).
    pub(crate) fn compile(pattern: &str, syntax: GlobSyntax, lowercase: bool) -> Glob {
        let toks = tokenize(pattern, syntax, lowercase);
        match toks.as_slice() {
            [Tok::Star] => Glob::Any,
            [] => Glob::Exact("".into()),
            [Tok::Lit(l)] => Glob::Exact(l.clone()),
            [Tok::Lit(l), Tok::Star] => Glob::Prefix(l.clone()),
            _ => Glob::Toks(toks.into_boxed_slice()),
        }
    }

    /// Whether the pattern has a `*` or `?` or a variable (i.e. is not a plain literal).
    pub(crate) fn is_literal(&self) -> bool {
        matches!(self, Glob::Exact(_))
    }

    /// Matches `text`. `ci`: compare ASCII letters case-insensitively. Variables are resolved
    /// from `ctx`; a variable with no (single) value and no default never matches.
    pub(crate) fn matches(&self, text: &str, ci: bool, ctx: Option<&ConditionContext>) -> bool {
        match self {
            Glob::Any => true,
            Glob::Exact(l) => eq_bytes(text.as_bytes(), l.as_bytes(), ci),
            Glob::Prefix(p) => text
                .as_bytes()
                .get(..p.len())
                .is_some_and(|head| eq_bytes(head, p.as_bytes(), ci)),
            Glob::Toks(toks) => match resolve(toks, ctx) {
                Some(toks) => match_toks(&toks, text.as_bytes(), ci),
                None => false,
            },
        }
    }
}

fn tokenize(pattern: &str, syntax: GlobSyntax, lowercase: bool) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut lit = String::new();
    let flush = |lit: &mut String, toks: &mut Vec<Tok>| {
        if !lit.is_empty() {
            let text = std::mem::take(lit);
            let text = if lowercase { text.to_ascii_lowercase() } else { text };
            toks.push(Tok::Lit(text.into_boxed_str()));
        }
    };
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        if syntax.variables
            && rest.starts_with("${")
            && let Some(end) = rest.find('}')
        {
            let inner = &rest[2..end];
            rest = &rest[end + 1..];
            match inner {
                "*" | "?" | "$" => lit.push_str(inner),
                _ => {
                    flush(&mut lit, &mut toks);
                    toks.push(parse_var(inner));
                }
            }
            continue;
        }
        rest = &rest[c.len_utf8()..];
        match c {
            '*' if syntax.wildcards => {
                flush(&mut lit, &mut toks);
                // Consecutive stars are one star.
                if toks.last() != Some(&Tok::Star) {
                    toks.push(Tok::Star);
                }
            }
            '?' if syntax.wildcards => {
                flush(&mut lit, &mut toks);
                toks.push(Tok::One);
            }
            _ => lit.push(c),
        }
    }
    flush(&mut lit, &mut toks);
    toks
}

/// `aws:username` or `aws:username, 'default'`.
fn parse_var(inner: &str) -> Tok {
    let (key, default) = match inner.split_once(',') {
        Some((key, default)) => {
            let d = default.trim();
            let d = d.strip_prefix('\'').and_then(|d| d.strip_suffix('\'')).unwrap_or(d);
            (key, Some(Box::from(d)))
        }
        None => (inner, None),
    };
    Tok::Var {
        key: key.trim().to_ascii_lowercase().into_boxed_str(),
        default,
    }
}

/// Replaces variables by their values (as literal text). `None`: a variable has no value.
fn resolve<'a>(toks: &'a [Tok], ctx: Option<&ConditionContext>) -> Option<Cow<'a, [Tok]>> {
    if !toks.iter().any(|t| matches!(t, Tok::Var { .. })) {
        return Some(Cow::Borrowed(toks));
    }
    let mut out = Vec::with_capacity(toks.len());
    for t in toks {
        match t {
            Tok::Var { key, default } => {
                let value = match ctx.and_then(|c| c.get_lc(key)) {
                    Some([one]) => one.as_str(),
                    _ => default.as_deref()?,
                };
                out.push(Tok::Lit(value.into()));
            }
            other => out.push(other.clone()),
        }
    }
    Some(Cow::Owned(out))
}

fn eq_bytes(a: &[u8], b: &[u8], ci: bool) -> bool {
    if ci { a.eq_ignore_ascii_case(b) } else { a == b }
}

/// Width of the UTF-8 character starting at `i` (1 past the end, never beyond it).
fn char_width(t: &[u8], i: usize) -> usize {
    let w = match t.get(i) {
        Some(&b) if b < 0x80 => 1,
        Some(&b) if b >= 0xF0 => 4,
        Some(&b) if b >= 0xE0 => 3,
        Some(&b) if b >= 0xC0 => 2,
        _ => 1,
    };
    w.min(t.len().saturating_sub(i)).max(1)
}

/// Classic wildcard matching, backtracking only to the last `*` (linear in practice,
/// O(n·m) worst case, never recursive).
fn match_toks(toks: &[Tok], t: &[u8], ci: bool) -> bool {
    let (mut ti, mut si) = (0usize, 0usize);
    let mut back: Option<(usize, usize)> = None;
    loop {
        if let Some(tok) = toks.get(ti) {
            match tok {
                Tok::Star => {
                    if ti + 1 == toks.len() {
                        return true;
                    }
                    back = Some((ti + 1, si));
                    ti += 1;
                    continue;
                }
                Tok::One => {
                    if si < t.len() {
                        si += char_width(t, si);
                        ti += 1;
                        continue;
                    }
                }
                Tok::Lit(l) => {
                    let l = l.as_bytes();
                    if t.get(si..si + l.len()).is_some_and(|seg| eq_bytes(seg, l, ci)) {
                        si += l.len();
                        ti += 1;
                        continue;
                    }
                }
                Tok::Var { .. } => {}
            }
        } else if si == t.len() {
            return true;
        }
        match back {
            Some((bti, bsi)) if bsi < t.len() => {
                let next = bsi + char_width(t, bsi);
                back = Some((bti, next));
                ti = bti;
                si = next;
            }
            _ => return false,
        }
    }
}

/// Splits an ARN into its six parts on the first five colons (`arn:partition:service:
/// region:account:resource`). Missing trailing parts are `None`. With `var_aware`, colons
/// inside `${...}` do not split.
pub(crate) fn split_arn(s: &str, var_aware: bool) -> Option<[Option<&str>; 6]> {
    if !s.starts_with("arn:") {
        return None;
    }
    let mut parts: [Option<&str>; 6] = [None; 6];
    let mut start = 0usize;
    let mut n = 0usize;
    let mut in_var = false;
    let b = s.as_bytes();
    let mut i = 0usize;
    while i < b.len() && n < 5 {
        match b[i] {
            b'$' if var_aware && b.get(i + 1) == Some(&b'{') => {
                in_var = true;
                i += 1;
            }
            b'}' if in_var => in_var = false,
            b':' if !in_var => {
                parts[n] = s.get(start..i);
                n += 1;
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts[n] = s.get(start..);
    Some(parts)
}

/// A request resource, split once per evaluation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReqResource<'a> {
    pub full: &'a str,
    pub arn: Option<[&'a str; 6]>,
}

impl<'a> ReqResource<'a> {
    pub(crate) fn new(full: &'a str) -> Self {
        let arn = split_arn(full, false).and_then(|p| Some([p[0]?, p[1]?, p[2]?, p[3]?, p[4]?, p[5]?]));
        Self { full, arn }
    }
}

/// A `Resource` (or `ArnLike`) pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResPat {
    /// `*`.
    Any,
    /// An ARN pattern: the first five parts match part-wise, the resource part as a whole
    /// (so `*` there may span `/` and `:`). Missing trailing parts are `*`.
    Arn(Box<[Glob; 6]>),
    /// Not an ARN: a plain glob over the whole text.
    Plain(Glob),
}

impl ResPat {
    pub(crate) fn compile(pattern: &str, variables: bool) -> ResPat {
        let syntax = GlobSyntax {
            wildcards: true,
            variables,
        };
        if pattern == "*" {
            return ResPat::Any;
        }
        match split_arn(pattern, variables) {
            Some(parts) => {
                let g = |p: Option<&str>| Glob::compile(p.unwrap_or("*"), syntax, false);
                ResPat::Arn(Box::new([
                    g(parts[0]),
                    g(parts[1]),
                    g(parts[2]),
                    g(parts[3]),
                    g(parts[4]),
                    g(parts[5]),
                ]))
            }
            None => ResPat::Plain(Glob::compile(pattern, syntax, false)),
        }
    }

    pub(crate) fn matches(&self, req: &ReqResource<'_>, ctx: Option<&ConditionContext>) -> bool {
        match self {
            ResPat::Any => true,
            ResPat::Plain(g) => g.matches(req.full, false, ctx),
            ResPat::Arn(globs) => match &req.arn {
                Some(parts) => globs.iter().zip(parts.iter()).all(|(g, p)| g.matches(p, false, ctx)),
                None => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: GlobSyntax = GlobSyntax {
        wildcards: true,
        variables: true,
    };

    fn m(p: &str, t: &str) -> bool {
        Glob::compile(p, W, false).matches(t, false, None)
    }

    #[test]
    fn wildcards() {
        assert!(m("*", ""));
        assert!(m("*", "anything/at:all"));
        assert!(m("a*", "abc"));
        assert!(m("a*", "a"));
        assert!(!m("a*", "ba"));
        assert!(m("*c", "abc"));
        assert!(m("a*c", "abbbc"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("a?c", "aéc"));
        assert!(m("??", "éé"));
        assert!(!m("???", "éé"));
        assert!(m("*?", "é"));
        assert!(m("abc", "abc"));
        assert!(!m("abc", "ABC"));
        assert!(Glob::compile("s3:get*", W, true).matches("S3:GetObject", true, None));
        assert!(m("a**b", "ab"));
        assert!(m("*a*a*a*", "aaa"));
        assert!(!m("*a*a*a*a", "aaa"));
    }

    #[test]
    fn escapes_and_variables() {
        let ctx = ConditionContext::new().with("aws:username", "bob");
        let g = Glob::compile("home/${aws:username}/*", W, false);
        assert!(g.matches("home/bob/x", false, Some(&ctx)));
        assert!(!g.matches("home/alice/x", false, Some(&ctx)));
        assert!(!g.matches("home/bob/x", false, None));
        let g = Glob::compile("a${*}b", W, false);
        assert!(g.matches("a*b", false, None));
        assert!(!g.matches("axb", false, None));
        let g = Glob::compile("${aws:username, 'nobody'}", W, false);
        assert!(g.matches("nobody", false, None));
        let no_vars = GlobSyntax {
            wildcards: true,
            variables: false,
        };
        assert!(Glob::compile("${aws:username}", no_vars, false).matches("${aws:username}", false, None));
        let literal = GlobSyntax {
            wildcards: false,
            variables: false,
        };
        assert!(!Glob::compile("a*", literal, false).matches("abc", false, None));
        assert!(Glob::compile("a*", literal, false).matches("a*", false, None));
    }

    #[test]
    fn arn_patterns() {
        let r = |p: &str, t: &str| ResPat::compile(p, true).matches(&ReqResource::new(t), None);
        assert!(r("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b:c"));
        assert!(!r("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket"));
        assert!(r("arn:aws:s3:::bucket", "arn:aws:s3:::bucket"));
        assert!(!r("arn:aws:lambda:r:1:function:f", "arn:aws:lambda:r:1:function:f:1"));
        assert!(r("arn:aws:lambda:r:1:function:f:*", "arn:aws:lambda:r:1:function:f:1"));
        assert!(r("arn:aws:lambda:r:1:function:f*", "arn:aws:lambda:r:1:function:f:1"));
        // `*` in the account part does not span into the region part.
        assert!(!r("arn:aws:kinesis:*:stream/x", "arn:aws:kinesis:us-east-1:1:stream/x"));
        assert!(r(
            "arn:aws:kinesis:*:*:stream/x",
            "arn:aws:kinesis:us-east-1:1:stream/x"
        ));
        // Missing trailing parts are wildcards.
        assert!(r("arn:aws:s3", "arn:aws:s3:::b/k"));
        assert!(r("*", "whatever"));
        assert!(!r("arn:aws:s3:::*", "*"));
        let ctx = ConditionContext::new().with("aws:username", "bob");
        let p = ResPat::compile("arn:aws:s3:::b/${aws:username}/*", true);
        assert!(p.matches(&ReqResource::new("arn:aws:s3:::b/bob/k"), Some(&ctx)));
        assert!(!p.matches(&ReqResource::new("arn:aws:s3:::b/eve/k"), Some(&ctx)));
    }
}
