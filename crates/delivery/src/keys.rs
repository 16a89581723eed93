//! Prefix expressions and object key rendering.
//!
//! An object key is `<evaluated prefix><name>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid v4><ext>`,
//! the time being the arrival of the oldest record in the object, in the destination's
//! time zone.
//!
//! Prefix expressions:
//!
//! * `!{timestamp:<pattern>}`: a subset of Java's `DateTimeFormatter`: `yyyy` (also `y`,
//!   `yyy`: the full year), `yy`, `MM`/`M`, `dd`/`d`, `HH`/`H`, `mm`/`m`, `ss`/`s`, text in
//!   single quotes is literal (`''` is a quote); any other character is copied as is. All
//!   occurrences in one prefix use the same instant.
//! * `!{firehose:random-string}`: 11 lowercase hex characters with one `-` (the first 11
//!   characters of a hyphenated v4 UUID, like AWS's `046b6c7f-0b`), fresh per occurrence.
//! * `!{firehose:error-output-type}`: the error output type (ErrorOutputPrefix only).
//! * `!{partitionKeyFromQuery:<key>}`: the value of a dynamic-partitioning key.
//! * `!{partitionKeyFromLambda:<key>}`: the value of a key of the Lambda processor's
//!   `metadata.partitionKeys`.
//!
//! A Prefix without a timestamp expression gets `yyyy/MM/dd/HH/` appended literally (no `/`
//! is inserted), except a dynamic-partitioning prefix (one with `!{partitionKeyFrom…}`),
//! which is used as written. Errors go to ErrorOutputPrefix (same rule) or, when it is absent, to
//! `<Prefix><error-output-type>/yyyy/MM/dd/HH/`.
//!
//! Time zones ([`TimeZone::parse`]): `UTC`/`GMT`/`Etc/UTC`, fixed offsets (`+09:00`,
//! `-0530`, `UTC+9`, `Etc/GMT-9` with its inverted POSIX sign), and a table of IANA zones
//! that have no daylight saving time (e.g. `Asia/Tokyo`, `Asia/Kolkata`, `America/Phoenix`).
//! IANA zones with daylight saving time (e.g. `America/New_York`) are not supported.

use std::collections::BTreeMap;

/// A fixed UTC offset (seconds east of UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeZone {
    /// Seconds east of UTC.
    pub offset_secs: i32,
}

/// IANA zones without daylight saving time, with their offset in minutes.
const FIXED_ZONES: &[(&str, i32)] = &[
    ("Africa/Abidjan", 0),
    ("Africa/Accra", 0),
    ("Africa/Johannesburg", 120),
    ("Africa/Lagos", 60),
    ("Africa/Nairobi", 180),
    ("America/Argentina/Buenos_Aires", -180),
    ("America/Bogota", -300),
    ("America/Lima", -300),
    ("America/Phoenix", -420),
    ("America/Sao_Paulo", -180),
    ("Asia/Bangkok", 420),
    ("Asia/Calcutta", 330),
    ("Asia/Dhaka", 360),
    ("Asia/Dubai", 240),
    ("Asia/Ho_Chi_Minh", 420),
    ("Asia/Hong_Kong", 480),
    ("Asia/Jakarta", 420),
    ("Asia/Karachi", 300),
    ("Asia/Kathmandu", 345),
    ("Asia/Kolkata", 330),
    ("Asia/Kuala_Lumpur", 480),
    ("Asia/Manila", 480),
    ("Asia/Riyadh", 180),
    ("Asia/Seoul", 540),
    ("Asia/Shanghai", 480),
    ("Asia/Singapore", 480),
    ("Asia/Taipei", 480),
    ("Asia/Tokyo", 540),
    ("Australia/Brisbane", 600),
    ("Australia/Perth", 480),
    ("Europe/Istanbul", 180),
    ("Europe/Moscow", 180),
    ("Pacific/Honolulu", -600),
];

impl TimeZone {
    /// UTC.
    pub const UTC: TimeZone = TimeZone { offset_secs: 0 };

    /// Parses a `CustomTimeZone` (see the module docs for what is supported).
    pub fn parse(s: &str) -> Option<TimeZone> {
        let s = s.trim();
        if matches!(
            s,
            "" | "UTC" | "GMT" | "Z" | "Etc/UTC" | "Etc/GMT" | "Etc/Universal" | "Universal"
        ) {
            return Some(TimeZone::UTC);
        }
        if let Some((_, minutes)) = FIXED_ZONES.iter().find(|(name, _)| *name == s) {
            return Some(TimeZone {
                offset_secs: minutes * 60,
            });
        }
        if let Some(rest) = s.strip_prefix("Etc/GMT") {
            // POSIX style: Etc/GMT-9 is nine hours EAST of UTC.
            let off = parse_offset(rest)?;
            return Some(TimeZone { offset_secs: -off });
        }
        let rest = s.strip_prefix("UTC").or_else(|| s.strip_prefix("GMT")).unwrap_or(s);
        parse_offset(rest).map(|offset_secs| TimeZone { offset_secs })
    }
}

/// `+9`, `-05:30`, `+0530` → seconds.
fn parse_offset(s: &str) -> Option<i32> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit() || b == b':') {
        return None;
    }
    let (h, m) = if let Some((h, m)) = rest.split_once(':') {
        (h.parse::<i32>().ok()?, m.parse::<i32>().ok()?)
    } else if rest.len() == 4 {
        (rest[..2].parse::<i32>().ok()?, rest[2..].parse::<i32>().ok()?)
    } else {
        (rest.parse::<i32>().ok()?, 0)
    };
    if h > 18 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// A broken-down civil time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    /// Year.
    pub year: i64,
    /// Month 1–12.
    pub month: u32,
    /// Day 1–31.
    pub day: u32,
    /// Hour 0–23.
    pub hour: u32,
    /// Minute.
    pub minute: u32,
    /// Second.
    pub second: u32,
}

/// `epoch_ms` in `tz`.
pub fn civil(epoch_ms: i64, tz: TimeZone) -> CivilTime {
    let secs = epoch_ms.div_euclid(1000) + i64::from(tz.offset_secs);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    CivilTime {
        year,
        month,
        day,
        hour: (sod / 3600) as u32,
        minute: ((sod % 3600) / 60) as u32,
        second: (sod % 60) as u32,
    }
}

/// Formats `t` with the supported `DateTimeFormatter` subset.
pub fn format_time(pattern: &str, t: &CivilTime) -> String {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        out.push('\'');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                out.push(chars[i]);
                i += 1;
            }
            continue;
        }
        let mut n = 1;
        while chars.get(i + n) == Some(&c) {
            n += 1;
        }
        let pad = |v: u32, n: usize| format!("{v:0width$}", width = n.max(1));
        match c {
            'y' | 'u' => {
                if n == 2 {
                    out.push_str(&format!("{:02}", t.year.rem_euclid(100)));
                } else {
                    out.push_str(&format!("{:0width$}", t.year, width = n.max(4)));
                }
            }
            'M' => out.push_str(&pad(t.month, n)),
            'd' => out.push_str(&pad(t.day, n)),
            'H' => out.push_str(&pad(t.hour, n)),
            'm' => out.push_str(&pad(t.minute, n)),
            's' => out.push_str(&pad(t.second, n)),
            _ => {
                for _ in 0..n {
                    out.push(c);
                }
            }
        }
        i += n;
    }
    out
}

/// What a prefix is evaluated with.
#[derive(Debug, Clone, Copy)]
pub struct KeyContext<'a> {
    /// The instant of `!{timestamp:…}` (epoch ms).
    pub time_ms: i64,
    /// The time zone.
    pub tz: TimeZone,
    /// Dynamic-partitioning keys, when enabled.
    pub partition: Option<&'a BTreeMap<String, String>>,
    /// Partition keys returned by the Lambda processor, when the prefix uses them.
    pub lambda_partition: Option<&'a BTreeMap<String, String>>,
    /// The error output type, when evaluating an error prefix.
    pub error_output_type: Option<&'a str>,
}

/// Whether `prefix` holds a `!{timestamp:…}` expression.
pub fn has_timestamp(prefix: &str) -> bool {
    prefix.contains("!{timestamp:")
}

/// An 11-character random string like AWS's (`046b6c7f-0b`).
pub fn random_string() -> String {
    let mut s = uuid::Uuid::new_v4().hyphenated().to_string();
    s.truncate(11);
    s
}

/// Evaluates every `!{…}` expression in `prefix`.
pub fn evaluate(prefix: &str, ctx: &KeyContext<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(prefix.len() + 16);
    let mut rest = prefix;
    while let Some(start) = rest.find("!{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unterminated expression in prefix {prefix:?}"));
        };
        let expr = &after[..end];
        if let Some(pattern) = expr.strip_prefix("timestamp:") {
            out.push_str(&format_time(pattern, &civil(ctx.time_ms, ctx.tz)));
        } else if expr == "firehose:random-string" {
            out.push_str(&random_string());
        } else if expr == "firehose:error-output-type" {
            let Some(t) = ctx.error_output_type else {
                return Err("!{firehose:error-output-type} is only allowed in ErrorOutputPrefix".into());
            };
            out.push_str(t);
        } else if let Some(key) = expr.strip_prefix("partitionKeyFromQuery:") {
            let value = ctx.partition.and_then(|p| p.get(key));
            match value {
                Some(v) => out.push_str(v),
                None => return Err(format!("no partition key {key:?} for prefix {prefix:?}")),
            }
        } else if let Some(key) = expr.strip_prefix("partitionKeyFromLambda:") {
            match ctx.lambda_partition.and_then(|p| p.get(key)) {
                Some(v) => out.push_str(v),
                None => return Err(format!("no Lambda partition key {key:?} for prefix {prefix:?}")),
            }
        } else {
            return Err(format!("unsupported expression !{{{expr}}} in prefix {prefix:?}"));
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The keys of the `!{partitionKeyFromLambda:<key>}` expressions of `prefix`, sorted and
/// without repeats.
pub fn lambda_keys(prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = prefix;
    while let Some(start) = rest.find("!{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            break;
        };
        if let Some(key) = after[..end].strip_prefix("partitionKeyFromLambda:")
            && !out.iter().any(|k| k == key)
        {
            out.push(key.to_string());
        }
        rest = &after[end + 1..];
    }
    out.sort();
    out
}

const DATE_FOLDERS: &str = "yyyy/MM/dd/HH/";

/// The evaluated data prefix: `Prefix` (with `yyyy/MM/dd/HH/` appended when it has no
/// timestamp expression).
pub fn data_prefix(prefix: Option<&str>, ctx: &KeyContext<'_>) -> Result<String, String> {
    let prefix = prefix.unwrap_or("");
    let mut out = evaluate(prefix, ctx)?;
    if !has_timestamp(prefix) && !prefix.contains("!{partitionKeyFrom") {
        out.push_str(&format_time(DATE_FOLDERS, &civil(ctx.time_ms, ctx.tz)));
    }
    Ok(out)
}

/// The evaluated error prefix for `error_output_type`.
pub fn error_prefix(
    prefix: Option<&str>,
    error_output_prefix: Option<&str>,
    error_output_type: &str,
    ctx: &KeyContext<'_>,
) -> Result<String, String> {
    let ctx = KeyContext {
        error_output_type: Some(error_output_type),
        ..*ctx
    };
    let template = match error_output_prefix {
        Some(p) if !p.is_empty() => p.to_string(),
        // Expressions of Prefix that need a record (partition keys) cannot apply here.
        _ => format!(
            "{}{}/",
            prefix.filter(|p| !p.contains("!{")).unwrap_or(""),
            error_output_type
        ),
    };
    let mut out = evaluate(&template, &ctx)?;
    if !has_timestamp(&template) {
        out.push_str(&format_time(DATE_FOLDERS, &civil(ctx.time_ms, ctx.tz)));
    }
    Ok(out)
}

/// `<prefix><name>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid><extension>`.
pub fn object_key(
    evaluated_prefix: &str,
    name: &str,
    version: u64,
    time_ms: i64,
    tz: TimeZone,
    extension: &str,
) -> String {
    let t = civil(time_ms, tz);
    format!(
        "{evaluated_prefix}{name}-{version}-{}-{}",
        format_time("yyyy-MM-dd-HH-mm-ss", &t),
        uuid::Uuid::new_v4().hyphenated(),
    ) + extension
}

/// Evaluates dynamic-partitioning queries (`.a`, `.a.b`, `.a["b"]` is not supported) over
/// a JSON record. Strings give their content, numbers and booleans their JSON text; a
/// missing key, `null`, an object or an array is a failure.
pub fn partition_keys(queries: &BTreeMap<String, String>, data: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let doc: serde_json::Value = serde_json::from_slice(data).map_err(|e| format!("Non JSON record provided: {e}"))?;
    let mut out = BTreeMap::new();
    for (key, query) in queries {
        let q = query.trim();
        let Some(path) = q.strip_prefix('.') else {
            return Err(format!("unsupported query {q:?}"));
        };
        let mut v = &doc;
        if !path.is_empty() {
            for part in path.split('.') {
                v = v.get(part).ok_or_else(|| format!("query {q:?} found no value"))?;
            }
        }
        let s = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => return Err(format!("query {q:?} did not give a scalar value")),
        };
        out.insert(key.clone(), s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_714_569_730_000; // 2024-05-01T13:22:10Z

    fn ctx() -> KeyContext<'static> {
        KeyContext {
            time_ms: T,
            tz: TimeZone::UTC,
            partition: None,
            lambda_partition: None,
            error_output_type: None,
        }
    }

    #[test]
    fn civil_time_matches_known_dates() {
        let t = civil(T, TimeZone::UTC);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (2024, 5, 1, 13, 22, 10)
        );
        let t = civil(0, TimeZone::UTC);
        assert_eq!((t.year, t.month, t.day), (1970, 1, 1));
        let t = civil(951_782_400_000, TimeZone::UTC); // 2000-02-29
        assert_eq!((t.year, t.month, t.day), (2000, 2, 29));
        let t = civil(T, TimeZone::parse("Asia/Tokyo").expect("tz"));
        assert_eq!((t.day, t.hour), (1, 22));
        let t = civil(T, TimeZone::parse("-05:30").expect("tz"));
        assert_eq!((t.hour, t.minute), (7, 52));
        assert_eq!(TimeZone::parse("Etc/GMT-9"), TimeZone::parse("+09:00"));
        assert_eq!(TimeZone::parse("America/New_York"), None);
    }

    #[test]
    fn default_prefix_appends_date_folders_literally() {
        assert_eq!(data_prefix(None, &ctx()).expect("p"), "2024/05/01/13/");
        assert_eq!(data_prefix(Some("logs/"), &ctx()).expect("p"), "logs/2024/05/01/13/");
        assert_eq!(data_prefix(Some("legacy"), &ctx()).expect("p"), "legacy2024/05/01/13/");
    }

    #[test]
    fn timestamp_expressions_and_literals() {
        let p = data_prefix(
            Some("y=!{timestamp:yyyy}/m=!{timestamp:MM}/!{timestamp:yy'-'dd'h'HH}/"),
            &ctx(),
        );
        assert_eq!(p.expect("p"), "y=2024/m=05/24-01h13/");
        assert_eq!(
            format_time("yyyy-MM-dd'T'HH:mm:ss''", &civil(T, TimeZone::UTC)),
            "2024-05-01T13:22:10'"
        );
    }

    #[test]
    fn random_strings_are_fresh_per_occurrence() {
        let p = evaluate("a/!{firehose:random-string}/!{firehose:random-string}/", &ctx()).expect("p");
        let parts: Vec<&str> = p.split('/').collect();
        assert_eq!(parts[1].len(), 11);
        assert_ne!(parts[1], parts[2]);
        assert!(
            parts[1]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase() || c == '-')
        );
    }

    #[test]
    fn error_prefixes() {
        let e = error_prefix(Some("logs/"), None, "processing-failed", &ctx()).expect("p");
        assert_eq!(e, "logs/processing-failed/2024/05/01/13/");
        let e = error_prefix(
            None,
            Some("err/!{firehose:error-output-type}/!{timestamp:yyyy}/"),
            "processing-failed",
            &ctx(),
        );
        assert_eq!(e.expect("p"), "err/processing-failed/2024/");
        assert!(evaluate("!{firehose:error-output-type}", &ctx()).is_err());
    }

    #[test]
    fn object_keys() {
        let k = object_key("2024/05/01/13/", "s", 2, T, TimeZone::UTC, ".gz");
        assert!(k.starts_with("2024/05/01/13/s-2-2024-05-01-13-22-10-"), "{k}");
        assert!(k.ends_with(".gz"));
        assert_eq!(k.len(), "2024/05/01/13/s-2-2024-05-01-13-22-10-".len() + 36 + 3);
    }

    #[test]
    fn partition_queries() {
        let mut q = BTreeMap::new();
        q.insert("customer_id".to_string(), ".customer_id".to_string());
        q.insert("region".to_string(), ".meta.region".to_string());
        let keys = partition_keys(&q, br#"{"customer_id":42,"meta":{"region":"eu"}}"#).expect("keys");
        assert_eq!(keys["customer_id"], "42");
        assert_eq!(keys["region"], "eu");
        assert!(partition_keys(&q, br#"{"customer_id":1}"#).is_err());
        assert!(partition_keys(&q, b"not json").is_err());
        let c = KeyContext {
            partition: Some(&keys),
            ..ctx()
        };
        assert_eq!(
            evaluate("c=!{partitionKeyFromQuery:customer_id}/", &c).expect("p"),
            "c=42/"
        );
    }

    #[test]
    fn lambda_partition_keys() {
        let lk = BTreeMap::from([("t".to_string(), "7".to_string())]);
        let c = KeyContext {
            lambda_partition: Some(&lk),
            ..ctx()
        };
        assert_eq!(evaluate("t=!{partitionKeyFromLambda:t}/", &c).expect("p"), "t=7/");
        assert!(evaluate("u=!{partitionKeyFromLambda:u}/", &c).is_err());
        assert_eq!(
            data_prefix(Some("t=!{partitionKeyFromLambda:t}/"), &c).expect("p"),
            "t=7/",
            "a partitioned prefix gets no date folders"
        );
        assert_eq!(
            lambda_keys(
                "a=!{partitionKeyFromLambda:b}/!{partitionKeyFromQuery:c}/!{partitionKeyFromLambda:a}/!{partitionKeyFromLambda:b}"
            ),
            vec!["a".to_string(), "b".to_string()]
        );
        assert!(lambda_keys("plain/!{timestamp:yyyy}").is_empty());
    }
}
