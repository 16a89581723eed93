//! The `Condition` element: the request context it is evaluated against, the operators,
//! and the value types they compare (strings, ARNs, numbers, dates, booleans, IP ranges).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::glob::{Glob, GlobSyntax, ReqResource, ResPat};

use kd_storage::civil::{days_from_civil, format_iso8601};

/// The request context conditions are evaluated against: condition keys (compared
/// case-insensitively, as IAM does) to one or more values.
///
/// `aws:CurrentTime` and `aws:EpochTime` default to the wall clock when absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConditionContext {
    values: HashMap<String, Vec<String>>,
}

impl ConditionContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` to `key` (keys are case-insensitive; a key may hold several values).
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.insert(key, value);
        self
    }

    /// Adds all `values` to `key` (a multi-valued key such as `aws:TagKeys`).
    pub fn with_values<I, S>(mut self, key: &str, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let slot = self.values.entry(key.to_ascii_lowercase()).or_default();
        slot.extend(values.into_iter().map(Into::into));
        self
    }

    /// Adds `value` to `key`.
    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        self.values
            .entry(key.to_ascii_lowercase())
            .or_default()
            .push(value.into());
    }

    /// Replaces the values of `key`.
    pub fn set(&mut self, key: &str, values: Vec<String>) {
        self.values.insert(key.to_ascii_lowercase(), values);
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        self.values.remove(&key.to_ascii_lowercase());
    }

    /// The values of `key` (case-insensitive), if present.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        if key.bytes().any(|b| b.is_ascii_uppercase()) {
            self.get_lc(&key.to_ascii_lowercase())
        } else {
            self.get_lc(key)
        }
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Lookup with an already lower-cased key.
    pub(crate) fn get_lc(&self, key: &str) -> Option<&[String]> {
        self.values.get(key).map(Vec::as_slice)
    }

    /// `aws:SourceArn`: the resource that made a service call on a principal's behalf.
    pub fn source_arn(self, arn: &str) -> Self {
        self.with("aws:SourceArn", arn)
    }
    /// `aws:SourceAccount`.
    pub fn source_account(self, account: &str) -> Self {
        self.with("aws:SourceAccount", account)
    }
    /// `aws:SourceIp`.
    pub fn source_ip(self, ip: IpAddr) -> Self {
        self.with("aws:SourceIp", ip.to_string())
    }
    /// `aws:SecureTransport`.
    pub fn secure_transport(self, tls: bool) -> Self {
        self.with("aws:SecureTransport", if tls { "true" } else { "false" })
    }
    /// `aws:PrincipalArn`.
    pub fn principal_arn(self, arn: &str) -> Self {
        self.with("aws:PrincipalArn", arn)
    }
    /// `aws:PrincipalAccount`.
    pub fn principal_account(self, account: &str) -> Self {
        self.with("aws:PrincipalAccount", account)
    }
    /// `aws:username` (IAM users only; also the `${aws:username}` policy variable).
    pub fn username(self, name: &str) -> Self {
        self.with("aws:username", name)
    }
    /// `aws:userid` (also the `${aws:userid}` policy variable).
    pub fn userid(self, id: &str) -> Self {
        self.with("aws:userid", id)
    }
    /// `s3:prefix` (ListObjects).
    pub fn s3_prefix(self, prefix: &str) -> Self {
        self.with("s3:prefix", prefix)
    }
    /// `aws:CurrentTime` and `aws:EpochTime` pinned to `at` (instead of the wall clock).
    pub fn current_time(mut self, at: SystemTime) -> Self {
        let secs = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.set("aws:EpochTime", vec![secs.to_string()]);
        self.set("aws:CurrentTime", vec![format_iso8601(secs)]);
        self
    }
}

/// The comparison an operator performs (without `ForAnyValue:`/`ForAllValues:`/`IfExists`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    IpAddress,
    NotIpAddress,
    ArnEquals,
    ArnLike,
    ArnNotEquals,
    ArnNotLike,
    Null,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        use Op::*;
        Some(match s {
            "StringEquals" => StringEquals,
            "StringNotEquals" => StringNotEquals,
            "StringEqualsIgnoreCase" => StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => StringNotEqualsIgnoreCase,
            "StringLike" => StringLike,
            "StringNotLike" => StringNotLike,
            "NumericEquals" => NumericEquals,
            "NumericNotEquals" => NumericNotEquals,
            "NumericLessThan" => NumericLessThan,
            "NumericLessThanEquals" => NumericLessThanEquals,
            "NumericGreaterThan" => NumericGreaterThan,
            "NumericGreaterThanEquals" => NumericGreaterThanEquals,
            "DateEquals" => DateEquals,
            "DateNotEquals" => DateNotEquals,
            "DateLessThan" => DateLessThan,
            "DateLessThanEquals" => DateLessThanEquals,
            "DateGreaterThan" => DateGreaterThan,
            "DateGreaterThanEquals" => DateGreaterThanEquals,
            "Bool" => Bool,
            "BinaryEquals" => BinaryEquals,
            "IpAddress" => IpAddress,
            "NotIpAddress" => NotIpAddress,
            "ArnEquals" => ArnEquals,
            "ArnLike" => ArnLike,
            "ArnNotEquals" => ArnNotEquals,
            "ArnNotLike" => ArnNotLike,
            "Null" => Null,
            _ => return None,
        })
    }

    /// Negated operators match when no value matches (and when the key is absent).
    fn negated(self) -> bool {
        use Op::*;
        matches!(
            self,
            StringNotEquals
                | StringNotEqualsIgnoreCase
                | StringNotLike
                | NumericNotEquals
                | DateNotEquals
                | NotIpAddress
                | ArnNotEquals
                | ArnNotLike
        )
    }

    fn is_date(self) -> bool {
        use Op::*;
        matches!(
            self,
            DateEquals | DateNotEquals | DateLessThan | DateLessThanEquals | DateGreaterThan | DateGreaterThanEquals
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Single,
    AnyValue,
    AllValues,
}

/// The policy-side values of one key, pre-parsed for the operator.
#[derive(Debug, Clone, PartialEq)]
enum Values {
    /// String operators (literal or wildcard patterns, maybe with variables).
    Str {
        globs: Vec<Glob>,
        ci: bool,
    },
    Num(Vec<f64>),
    /// Milliseconds since the epoch.
    Date(Vec<i64>),
    Bool(Vec<bool>),
    Ip(Vec<Cidr>),
    Arn(Vec<ResPat>),
    /// `true`: the key must be absent; `false`: present.
    Null(Vec<bool>),
}

/// One `operator: { key: values }` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Clause {
    op: Op,
    set: SetOp,
    if_exists: bool,
    /// Lower-cased condition key.
    key: Box<str>,
    values: Values,
}

/// Why a condition block could not be compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CondError {
    /// Unknown operator with a non-empty block, or a value of the wrong JSON type.
    Syntax,
    /// A date that does not parse ("The policy failed legacy parsing").
    Legacy,
}

/// Compiles a `Condition` object. `variables`: policy variables are substituted.
pub(crate) fn compile_block(
    block: &serde_json::Map<String, serde_json::Value>,
    variables: bool,
) -> Result<Vec<Clause>, CondError> {
    let mut clauses = Vec::new();
    for (op_name, keys) in block {
        let keys = keys.as_object().ok_or(CondError::Syntax)?;
        let (set, rest) = if let Some(r) = op_name.strip_prefix("ForAnyValue:") {
            (SetOp::AnyValue, r)
        } else if let Some(r) = op_name.strip_prefix("ForAllValues:") {
            (SetOp::AllValues, r)
        } else {
            (SetOp::Single, op_name.as_str())
        };
        let (if_exists, base) = match rest.strip_suffix("IfExists") {
            Some(b) => (true, b),
            None => (false, rest),
        };
        let Some(op) = Op::parse(base) else {
            if keys.is_empty() {
                continue;
            }
            return Err(CondError::Syntax);
        };
        for (key, raw) in keys {
            let raw = scalar_list(raw).ok_or(CondError::Syntax)?;
            let values = compile_values(op, &raw, variables)?;
            clauses.push(Clause {
                op,
                set,
                if_exists,
                key: key.to_ascii_lowercase().into_boxed_str(),
                values,
            });
        }
    }
    Ok(clauses)
}

/// A condition value: a string, number or boolean, or an array of them.
fn scalar_list(v: &serde_json::Value) -> Option<Vec<String>> {
    fn scalar(v: &serde_json::Value) -> Option<String> {
        match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    match v {
        serde_json::Value::Array(items) => items.iter().map(scalar).collect(),
        other => scalar(other).map(|s| vec![s]),
    }
}

fn compile_values(op: Op, raw: &[String], variables: bool) -> Result<Values, CondError> {
    use Op::*;
    let str_globs = |wildcards: bool| -> Vec<Glob> {
        let syntax = GlobSyntax { wildcards, variables };
        raw.iter().map(|s| Glob::compile(s, syntax, false)).collect()
    };
    Ok(match op {
        StringEquals | StringNotEquals | BinaryEquals => Values::Str {
            globs: str_globs(false),
            ci: false,
        },
        StringEqualsIgnoreCase | StringNotEqualsIgnoreCase => Values::Str {
            globs: str_globs(false),
            ci: true,
        },
        StringLike | StringNotLike => Values::Str {
            globs: str_globs(true),
            ci: false,
        },
        NumericEquals
        | NumericNotEquals
        | NumericLessThan
        | NumericLessThanEquals
        | NumericGreaterThan
        | NumericGreaterThanEquals => Values::Num(raw.iter().filter_map(|s| s.trim().parse().ok()).collect()),
        DateEquals | DateNotEquals | DateLessThan | DateLessThanEquals | DateGreaterThan | DateGreaterThanEquals => {
            Values::Date(
                raw.iter()
                    .map(|s| parse_date(s).ok_or(CondError::Legacy))
                    .collect::<Result<_, _>>()?,
            )
        }
        Bool => Values::Bool(raw.iter().filter_map(|s| parse_bool(s)).collect()),
        IpAddress | NotIpAddress => Values::Ip(raw.iter().filter_map(|s| Cidr::parse(s)).collect()),
        ArnEquals | ArnLike | ArnNotEquals | ArnNotLike => {
            Values::Arn(raw.iter().map(|s| ResPat::compile(s, variables)).collect())
        }
        Null => Values::Null(raw.iter().filter_map(|s| parse_bool(s)).collect()),
    })
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

impl Clause {
    /// Evaluates the clause against `ctx`.
    pub(crate) fn eval(&self, ctx: &ConditionContext) -> bool {
        let present = ctx.get_lc(&self.key).filter(|v| !v.is_empty());
        if let Values::Null(wants) = &self.values {
            return wants.iter().any(|&want_absent| want_absent != present.is_some());
        }
        let present: Option<Cow<'_, [String]>> = match present {
            Some(v) => Some(Cow::Borrowed(v)),
            None if self.op.is_date() && (&*self.key == "aws:currenttime" || &*self.key == "aws:epochtime") => {
                Some(Cow::Owned(vec![now_millis().div_euclid(1000).to_string()]))
            }
            None => None,
        };
        let Some(values) = present else {
            return match self.set {
                SetOp::AllValues => true,
                SetOp::AnyValue => self.if_exists,
                SetOp::Single => self.if_exists || self.op.negated(),
            };
        };
        let negated = self.op.negated();
        let per_value = |cv: &String| self.any_positive(cv, ctx) != negated;
        match self.set {
            SetOp::Single if negated => values.iter().all(per_value),
            SetOp::Single | SetOp::AnyValue => values.iter().any(per_value),
            SetOp::AllValues => values.iter().all(per_value),
        }
    }

    /// Whether the context value matches any policy value under the operator's positive
    /// comparison (StringNotEquals compares as StringEquals, etc.).
    fn any_positive(&self, cv: &str, ctx: &ConditionContext) -> bool {
        use Op::*;
        match &self.values {
            Values::Str { globs, ci } => globs.iter().any(|g| g.matches(cv, *ci, Some(ctx))),
            Values::Num(nums) => {
                let Ok(x) = cv.trim().parse::<f64>() else { return false };
                nums.iter().any(|&n| match self.op {
                    NumericLessThan => x < n,
                    NumericLessThanEquals => x <= n,
                    NumericGreaterThan => x > n,
                    NumericGreaterThanEquals => x >= n,
                    _ => x == n,
                })
            }
            Values::Date(dates) => {
                let Some(x) = parse_date(cv) else { return false };
                dates.iter().any(|&d| match self.op {
                    DateLessThan => x < d,
                    DateLessThanEquals => x <= d,
                    DateGreaterThan => x > d,
                    DateGreaterThanEquals => x >= d,
                    _ => x == d,
                })
            }
            Values::Bool(bools) => parse_bool(cv).is_some_and(|b| bools.contains(&b)),
            Values::Ip(cidrs) => cv
                .trim()
                .parse::<IpAddr>()
                .is_ok_and(|ip| cidrs.iter().any(|c| c.contains(ip))),
            Values::Arn(pats) => {
                let req = ReqResource::new(cv);
                pats.iter().any(|p| p.matches(&req, Some(ctx)))
            }
            Values::Null(_) => false,
        }
    }
}

/// An IPv4 or IPv6 network (`10.0.0.0/8`, `2001:db8::/32`, or a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub(crate) fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V4(ip)) => {
                // An IPv4 caller against an IPv4-mapped IPv6 range.
                Cidr {
                    addr: IpAddr::V6(net),
                    prefix: self.prefix,
                }
                .contains(IpAddr::V6(ip.to_ipv6_mapped()))
            }
            (IpAddr::V4(_), IpAddr::V6(ip)) => ip.to_ipv4_mapped().is_some_and(|v4| self.contains(IpAddr::V4(v4))),
        }
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Parses an ISO 8601 date-time (`2024-01-02`, `2024-01-02T03:04:05Z`,
/// `2024-01-02T03:04:05.123+02:00`, ...) or epoch seconds, to epoch milliseconds.
pub(crate) fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().ok()?.checked_mul(1000);
    }
    let (date, time) = match s.find(['T', 't']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut dp = date.split('-');
    let year: i64 = num(dp.next()?, 4)?;
    let month: i64 = match dp.next() {
        Some(m) => num(m, 2)?,
        None => 1,
    };
    let day: i64 = match dp.next() {
        Some(d) => num(d, 2)?,
        None => 1,
    };
    if dp.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut millis = days_from_civil(year, month, day).checked_mul(86_400_000)?;
    if let Some(time) = time {
        // Split off the zone: `Z`, `+hh:mm`, `-hh:mm`, `+hhmm`, `+hh`.
        let (clock, offset_secs) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
            (c, 0)
        } else if let Some(i) = time.rfind(['+', '-']) {
            let (c, z) = time.split_at(i);
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let z = z.get(1..)?.replace(':', "");
            let (h, m) = match z.len() {
                2 => (num(&z, 2)?, 0),
                4 => (num(z.get(..2)?, 2)?, num(z.get(2..)?, 2)?),
                _ => return None,
            };
            (c, sign * (h * 3600 + m * 60))
        } else {
            (time, 0)
        };
        let mut cp = clock.split(':');
        let h: i64 = num(cp.next()?, 2)?;
        let m: i64 = match cp.next() {
            Some(m) => num(m, 2)?,
            None => 0,
        };
        let (sec, frac_ms) = match cp.next() {
            Some(sf) => {
                let (sec, frac) = sf.split_once('.').unwrap_or((sf, ""));
                let mut ms = 0i64;
                if !frac.is_empty() {
                    if !frac.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    let digits: String = frac.chars().chain("000".chars()).take(3).collect();
                    ms = digits.parse().ok()?;
                }
                (num(sec, 2)?, ms)
            }
            None => (0, 0),
        };
        if cp.next().is_some() || h > 23 || m > 59 || sec > 60 {
            return None;
        }
        millis = millis.checked_add(((h * 3600 + m * 60 + sec - offset_secs) * 1000) + frac_ms)?;
    }
    Some(millis)
}

/// A run of ASCII digits of exactly `width` characters (years: at least 4).
fn num(s: &str, width: usize) -> Option<i64> {
    let ok = if width == 4 { s.len() >= 4 } else { s.len() == width };
    if !ok || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse() {
        assert_eq!(parse_date("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_date("0"), Some(0));
        assert_eq!(parse_date("1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_date("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(parse_date("2023-11-14T23:13:20+01:00"), Some(1_700_000_000_000));
        assert_eq!(parse_date("2023-11-14T22:13:20.5Z"), Some(1_700_000_000_500));
        assert_eq!(parse_date("2023-11-14"), Some(1_699_920_000_000));
        assert_eq!(parse_date("2023-13-14"), None);
        assert_eq!(parse_date("yesterday"), None);
        assert_eq!(format_iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(parse_date(&format_iso8601(951_782_400)), Some(951_782_400_000));
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.1.0.0/16").expect("cidr");
        assert!(c.contains("10.1.200.3".parse().expect("ip")));
        assert!(!c.contains("10.2.0.1".parse().expect("ip")));
        let c = Cidr::parse("2001:db8::/32").expect("cidr");
        assert!(c.contains("2001:db8:1::1".parse().expect("ip")));
        assert!(!c.contains("2001:db9::1".parse().expect("ip")));
        assert!(!c.contains("10.0.0.1".parse().expect("ip")));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .expect("cidr")
                .contains("8.8.8.8".parse().expect("ip"))
        );
        assert!(
            Cidr::parse("1.2.3.4")
                .expect("ip")
                .contains("1.2.3.4".parse().expect("ip"))
        );
        assert!(Cidr::parse("1.2.3.4/33").is_none());
        assert!(Cidr::parse("nope").is_none());
    }
}
