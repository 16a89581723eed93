//! GetPartitions' `Expression`: a SQL-like predicate over the partition keys.
//!
//! Grammar (keywords case-insensitive):
//!
//! ```text
//! expr    := or
//! or      := and ( OR and )*
//! and     := not ( AND not )*
//! not     := NOT not | primary
//! primary := '(' expr ')'
//!          | key op literal                      op: = <> != < <= > >=
//!          | key [NOT] IN '(' literal (',' literal)* ')'
//!          | key [NOT] BETWEEN literal AND literal
//!          | key [NOT] LIKE 'pattern'            % and _ wildcards
//!          | key IS [NOT] NULL
//! literal := 'string' ('' escapes a quote) | number
//! key     := name | `name` | "name"
//! ```
//!
//! Comparisons are numeric when the key's type is an integer or decimal type (`tinyint`,
//! `smallint`, `int`, `integer`, `bigint`, `decimal…`, `float`, `double`) and both sides parse
//! as numbers, else they compare strings (so `date` and `string` keys compare as text, which
//! orders ISO dates correctly). An unknown key is an InvalidInputException, as on AWS.
//! Limits: [`MAX_EXPRESSION_LEN`] characters and [`MAX_DEPTH`] nested levels.

use crate::error::{Error, Result};
use crate::model::Column;

/// Longest expression accepted (Glue's model limit).
pub const MAX_EXPRESSION_LEN: usize = 2048;
/// Deepest nesting of parentheses and NOTs.
pub const MAX_DEPTH: usize = 64;

/// A parsed predicate.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Both.
    And(Box<Expr>, Box<Expr>),
    /// Either.
    Or(Box<Expr>, Box<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// `key op literal`.
    Cmp(usize, Op, String),
    /// `key IN (…)`.
    In(usize, Vec<String>),
    /// `key BETWEEN a AND b`.
    Between(usize, String, String),
    /// `key LIKE pattern`.
    Like(usize, String),
    /// `key IS NULL` (never true: partition values are never null).
    IsNull(usize),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `<>` or `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Op(Op),
    LParen,
    RParen,
    Comma,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidInput(msg.into())
}

fn tokenize(s: &str) -> Result<Vec<Tok>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '=' => {
                out.push(Tok::Op(Op::Eq));
                i += 1;
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Op(Op::Ne));
                i += 2;
            }
            '<' => match chars.get(i + 1) {
                Some('>') => {
                    out.push(Tok::Op(Op::Ne));
                    i += 2;
                }
                Some('=') => {
                    out.push(Tok::Op(Op::Le));
                    i += 2;
                }
                _ => {
                    out.push(Tok::Op(Op::Lt));
                    i += 1;
                }
            },
            '>' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Tok::Op(Op::Ge));
                    i += 2;
                } else {
                    out.push(Tok::Op(Op::Gt));
                    i += 1;
                }
            }
            '\'' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(invalid("Unsupported expression: unterminated string literal")),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            v.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            v.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(v));
            }
            '`' | '"' => {
                let close = c;
                let mut v = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(invalid("Unsupported expression: unterminated quoted name")),
                        Some(ch) if *ch == close => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            v.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Ident(v));
            }
            c if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                out.push(Tok::Num(chars[start..i].iter().collect()));
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$') {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => {
                return Err(invalid(format!(
                    "Unsupported expression: unexpected character '{other}'"
                )));
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    keys: &'a [Column],
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw))
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<()> {
        if self.keyword(kw) {
            self.pos += 1;
            Ok(())
        } else {
            Err(invalid(format!("Unsupported expression: expected {kw}")))
        }
    }

    fn or(&mut self) -> Result<Expr> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr> {
        let mut left = self.not()?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.not()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(invalid("Unsupported expression: nested too deeply"));
        }
        Ok(())
    }

    fn not(&mut self) -> Result<Expr> {
        if self.keyword("not") {
            self.pos += 1;
            self.enter()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn literal(&mut self) -> Result<String> {
        match self.next() {
            Some(Tok::Str(s)) | Some(Tok::Num(s)) => Ok(s),
            _ => Err(invalid("Unsupported expression: expected a literal")),
        }
    }

    fn primary(&mut self) -> Result<Expr> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            self.enter()?;
            let e = self.or()?;
            self.depth -= 1;
            if self.next() != Some(Tok::RParen) {
                return Err(invalid("Unsupported expression: expected )"));
            }
            return Ok(e);
        }
        let name = match self.next() {
            Some(Tok::Ident(n)) => n,
            _ => return Err(invalid("Unsupported expression: expected a partition key")),
        };
        let Some(key) = self.keys.iter().position(|k| k.name.eq_ignore_ascii_case(&name)) else {
            return Err(invalid(format!("Unknown column '{name}' in the partition expression")));
        };
        if let Some(Tok::Op(op)) = self.peek().cloned() {
            self.pos += 1;
            let v = self.literal()?;
            return Ok(Expr::Cmp(key, op, v));
        }
        let negated = if self.keyword("not") {
            self.pos += 1;
            true
        } else {
            false
        };
        let e = if self.keyword("in") {
            self.pos += 1;
            if self.next() != Some(Tok::LParen) {
                return Err(invalid("Unsupported expression: expected ( after IN"));
            }
            let mut values = vec![self.literal()?];
            loop {
                match self.next() {
                    Some(Tok::Comma) => values.push(self.literal()?),
                    Some(Tok::RParen) => break,
                    _ => return Err(invalid("Unsupported expression: expected , or ) in IN list")),
                }
            }
            Expr::In(key, values)
        } else if self.keyword("between") {
            self.pos += 1;
            let lo = self.literal()?;
            self.expect_keyword("and")?;
            let hi = self.literal()?;
            Expr::Between(key, lo, hi)
        } else if self.keyword("like") {
            self.pos += 1;
            Expr::Like(key, self.literal()?)
        } else if self.keyword("is") && !negated {
            self.pos += 1;
            let not_null = if self.keyword("not") {
                self.pos += 1;
                true
            } else {
                false
            };
            self.expect_keyword("null")?;
            let e = Expr::IsNull(key);
            return Ok(if not_null { Expr::Not(Box::new(e)) } else { e });
        } else {
            return Err(invalid(format!(
                "Unsupported expression: expected an operator after '{name}'"
            )));
        };
        Ok(if negated { Expr::Not(Box::new(e)) } else { e })
    }
}

/// Parses `expression` against the table's partition keys.
pub fn parse(expression: &str, keys: &[Column]) -> Result<Expr> {
    if expression.chars().count() > MAX_EXPRESSION_LEN {
        return Err(invalid(format!(
            "Expression is longer than {MAX_EXPRESSION_LEN} characters"
        )));
    }
    let toks = tokenize(expression)?;
    let mut p = Parser {
        toks,
        pos: 0,
        keys,
        depth: 0,
    };
    let e = p.or()?;
    if p.pos != p.toks.len() {
        return Err(invalid("Unsupported expression: unexpected trailing input"));
    }
    Ok(e)
}

fn numeric_type(t: &str) -> bool {
    let t = t.trim().to_ascii_lowercase();
    ["tinyint", "smallint", "int", "integer", "bigint", "float", "double"].contains(&t.as_str())
        || t.starts_with("decimal")
}

fn compare(key: &Column, value: &str, literal: &str) -> std::cmp::Ordering {
    if numeric_type(key.type_name())
        && let (Ok(a), Ok(b)) = (value.trim().parse::<f64>(), literal.trim().parse::<f64>())
    {
        return a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal);
    }
    value.cmp(literal)
}

/// SQL LIKE with `%` and `_`.
pub fn like(value: &str, pattern: &str) -> bool {
    let v: Vec<char> = value.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    // Iterative matcher with backtracking to the last `%`.
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < v.len() {
        if j < p.len() && (p[j] == '_' || p[j] == v[i]) {
            i += 1;
            j += 1;
        } else if j < p.len() && p[j] == '%' {
            star = Some((j, i));
            j += 1;
        } else if let Some((sj, si)) = star {
            j = sj + 1;
            i = si + 1;
            star = Some((sj, si + 1));
        } else {
            return false;
        }
    }
    while j < p.len() && p[j] == '%' {
        j += 1;
    }
    j == p.len()
}

impl Expr {
    /// Whether a partition with these values (one per key) satisfies the predicate.
    pub fn matches(&self, keys: &[Column], values: &[String]) -> bool {
        use std::cmp::Ordering::*;
        let val = |k: usize| values.get(k).map(String::as_str).unwrap_or_default();
        let key = |k: usize| keys.get(k).cloned().unwrap_or_default();
        match self {
            Expr::And(a, b) => a.matches(keys, values) && b.matches(keys, values),
            Expr::Or(a, b) => a.matches(keys, values) || b.matches(keys, values),
            Expr::Not(a) => !a.matches(keys, values),
            Expr::Cmp(k, op, lit) => {
                let o = compare(&key(*k), val(*k), lit);
                match op {
                    Op::Eq => o == Equal,
                    Op::Ne => o != Equal,
                    Op::Lt => o == Less,
                    Op::Le => o != Greater,
                    Op::Gt => o == Greater,
                    Op::Ge => o != Less,
                }
            }
            Expr::In(k, list) => list.iter().any(|l| compare(&key(*k), val(*k), l) == Equal),
            Expr::Between(k, lo, hi) => {
                compare(&key(*k), val(*k), lo) != Less && compare(&key(*k), val(*k), hi) != Greater
            }
            Expr::Like(k, pat) => like(val(*k), pat),
            Expr::IsNull(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<Column> {
        vec![
            Column {
                name: "year".into(),
                r#type: Some("int".into()),
                ..Column::default()
            },
            Column {
                name: "dt".into(),
                r#type: Some("string".into()),
                ..Column::default()
            },
        ]
    }

    fn m(e: &str, y: &str, dt: &str) -> bool {
        match parse(e, &keys()) {
            Ok(x) => x.matches(&keys(), &[y.to_string(), dt.to_string()]),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn evaluates_the_grammar() {
        assert!(m("year = 2024", "2024", "x"));
        assert!(m("year > 9", "10", "x"), "numeric for int keys");
        assert!(!m("dt > '9'", "", "10"), "text for string keys");
        assert!(m("year >= 2020 AND dt = '2024-01-02'", "2021", "2024-01-02"));
        assert!(m(
            "year = 1 or (dt like '2024-%' and not year in (3, 4))",
            "5",
            "2024-12"
        ));
        assert!(!m("year in (3,4)", "5", ""));
        assert!(m("year not in (3,4)", "5", ""));
        assert!(m("dt between '2024-01-01' and '2024-01-31'", "0", "2024-01-15"));
        assert!(m("dt is not null", "0", "a"));
        assert!(!m("dt is null", "0", "a"));
        assert!(m("`dt` <> 'a''b'", "0", "a"));
        assert!(m("DT LIKE '_b%'", "0", "abc"));
    }

    #[test]
    fn rejects_bad_expressions_without_panicking() {
        for bad in [
            "year",
            "year = ",
            "nope = 1",
            "(year = 1",
            "year = 1 extra",
            "'x",
            "year in (1,",
            "year ~ 1",
        ] {
            assert!(matches!(parse(bad, &keys()), Err(Error::InvalidInput(_))), "{bad}");
        }
        let deep = format!("{}year = 1{}", "(".repeat(100), ")".repeat(100));
        assert!(matches!(parse(&deep, &keys()), Err(Error::InvalidInput(_))));
        assert!(parse(&"x".repeat(3000), &keys()).is_err());
    }

    #[test]
    fn like_patterns() {
        assert!(like("abc", "a%"));
        assert!(like("abc", "%c"));
        assert!(like("abc", "a_c"));
        assert!(!like("abc", "a_"));
        assert!(like("", "%"));
        assert!(like("aXbXc", "a%b%c"));
    }
}
