//! Trino functions Athena users reach for that DataFusion lacks (or names differently):
//! `json_extract_scalar`, `json_extract` (JSONPath subset: `$`, `.key`, `["key"]`, `[n]`),
//! `from_iso8601_timestamp`, `from_iso8601_date`, `date_parse` and `date_format` (MySQL
//! format specifiers), and `element_at` for arrays (1-based, negative from the end) and maps.
//! `approx_distinct` and `cardinality` are DataFusion's own.

use std::fmt::Write;
use std::sync::Arc;

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Date32Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};
use datafusion::prelude::SessionContext;

/// Longest JSON document a JSON function parses (longer ones give NULL).
const MAX_JSON: usize = 16 * 1024 * 1024;

/// Registers every function of this module.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(string_fn("json_extract_scalar", |doc, path| {
        json_path(doc, path?).and_then(|v| match v {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
    }));
    ctx.register_udf(string_fn("json_extract", |doc, path| {
        json_path(doc, path?).map(|v| v.to_string())
    }));
    ctx.register_udf(create_udf(
        "from_iso8601_timestamp",
        vec![DataType::Utf8],
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let n = rows(args);
            let a = strings(&args[0], n)?;
            let out: TimestampMillisecondArray = a.iter().map(|s| s.and_then(parse_iso_ts)).collect();
            Ok(ColumnarValue::Array(Arc::new(out.with_timezone("UTC"))))
        }),
    ));
    ctx.register_udf(create_udf(
        "from_iso8601_date",
        vec![DataType::Utf8],
        DataType::Date32,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let n = rows(args);
            let a = strings(&args[0], n)?;
            let out: Date32Array = a
                .iter()
                .map(|s| {
                    s.and_then(|s| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok())
                        .and_then(|d| i32::try_from((d - DateTime::UNIX_EPOCH.date_naive()).num_days()).ok())
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    ));
    ctx.register_udf(create_udf(
        "date_parse",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Timestamp(TimeUnit::Millisecond, None),
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let n = rows(args);
            let a = strings(&args[0], n)?;
            let f = Formats::new(&args[1], n)?;
            let out: TimestampMillisecondArray =
                a.iter().enumerate().map(|(i, s)| parse_mysql(s?, f.get(i)?)).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    ));
    ctx.register_udf(ScalarUDF::from(DateFormat::new()));
    ctx.register_udf(ScalarUDF::from(ElementAt::new()));
}

/// The batch's row count: the length of the first array argument; 1 when every argument is
/// a scalar (DataFusion turns a one-row answer to all-scalar arguments back into a scalar).
fn rows(args: &[ColumnarValue]) -> usize {
    args.iter()
        .find_map(|a| match a {
            ColumnarValue::Array(a) => Some(a.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1)
}

/// An argument as `n` strings (a scalar is repeated `n` times).
fn strings(v: &ColumnarValue, n: usize) -> Result<StringArray> {
    let a = cast(&v.to_array(n)?, &DataType::Utf8)?;
    Ok(a.as_string::<i32>().clone())
}

/// Format items parsed from a MySQL format text (None: NULL, or a format chrono rejects).
type Items = Option<Vec<Item<'static>>>;

/// MySQL format arguments translated and parsed: once for a literal, per row for a column.
enum Formats {
    One(Items),
    Each(Vec<Items>),
}

impl Formats {
    fn new(v: &ColumnarValue, n: usize) -> Result<Self> {
        let items = |f: Option<&str>| f.and_then(|f| StrftimeItems::new(&mysql_to_chrono(f)).parse_to_owned().ok());
        Ok(match v {
            ColumnarValue::Scalar(_) => Self::One(items(strings(v, 1)?.iter().next().flatten())),
            ColumnarValue::Array(_) => Self::Each(strings(v, n)?.iter().map(items).collect()),
        })
    }

    fn get(&self, i: usize) -> Option<&[Item<'static>]> {
        match self {
            Self::One(f) => f.as_deref(),
            Self::Each(v) => v.get(i).and_then(|f| f.as_deref()),
        }
    }
}

/// Trino's `date_parse`: fields the format leaves out default to the start of their unit
/// (`%Y/%m/%d/%H` gives the hour, `%Y-%m-%d` midnight); text that does not match is NULL.
fn parse_mysql(s: &str, items: &[Item<'_>]) -> Option<i64> {
    let mut p = Parsed::new();
    chrono::format::parse(&mut p, s, items.iter()).ok()?;
    if p.hour_div_12().is_none() && p.hour_mod_12().is_none() {
        p.set_hour(0).ok()?;
    }
    if p.minute().is_none() {
        p.set_minute(0).ok()?;
    }
    if p.second().is_none() {
        p.set_second(0).ok()?;
    }
    let t = p.to_naive_date().ok()?.and_time(p.to_naive_time().ok()?);
    Some(t.and_utc().timestamp_millis())
}

/// A (string, string) → string function; scalars are broadcast.
fn string_fn(name: &str, f: fn(&str, Option<&str>) -> Option<String>) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let n = rows(args);
            let a = strings(&args[0], n)?;
            let b = strings(&args[1], n)?;
            let out: StringArray = a.iter().zip(b.iter()).map(|(a, b)| a.and_then(|a| f(a, b))).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// Evaluates a JSONPath subset on a JSON text.
pub fn json_path(doc: &str, path: &str) -> Option<serde_json::Value> {
    if doc.len() > MAX_JSON {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(doc).ok()?;
    let p = path.trim();
    let mut rest = p.strip_prefix('$')?;
    let mut cur = &v;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            cur = cur.get(&r[..end])?;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = r[..end].trim();
            if let Some(key) = inner
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
            {
                cur = cur.get(key)?;
            } else {
                cur = cur.get(inner.parse::<usize>().ok()?)?;
            }
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(cur.clone())
}

fn parse_iso_ts(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(t.timestamp_millis());
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

/// MySQL date format (Trino's `date_parse`/`date_format`) → chrono.
pub fn mysql_to_chrono(f: &str) -> String {
    let mut out = String::new();
    let mut it = f.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(d) = it.next() else {
            out.push_str("%%");
            break;
        };
        out.push_str(match d {
            'Y' => "%Y",
            'y' => "%y",
            'm' => "%m",
            'c' => "%-m",
            'd' => "%d",
            'e' => "%-d",
            'H' | 'k' => "%H",
            'h' | 'I' => "%I",
            'l' => "%-I",
            'i' => "%M",
            's' | 'S' => "%S",
            'f' => "%6f",
            'p' => "%p",
            'T' => "%H:%M:%S",
            'r' => "%I:%M:%S %p",
            'j' => "%j",
            'a' => "%a",
            'W' => "%A",
            'b' => "%b",
            'M' => "%B",
            'v' => "%V",
            'x' => "%G",
            '%' => "%%",
            other => {
                out.push(other);
                continue;
            }
        });
    }
    out
}

/// `date_format(timestamp, format)`: any timestamp (with or without a time zone: Trino's
/// `from_iso8601_timestamp` gives one with), a date, or text that casts to a timestamp.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DateFormat {
    signature: Signature,
}

impl DateFormat {
    fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for DateFormat {
    fn name(&self) -> &str {
        "date_format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let ok = |t: &DataType| {
            matches!(
                t,
                DataType::Null
                    | DataType::Timestamp(..)
                    | DataType::Date32
                    | DataType::Date64
                    | DataType::Utf8
                    | DataType::Utf8View
                    | DataType::LargeUtf8
            )
        };
        match arg_types {
            [t, f]
                if ok(t)
                    && matches!(
                        f,
                        DataType::Null | DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
                    ) =>
            {
                Ok(DataType::Utf8)
            }
            _ => Err(DataFusionError::Plan(format!(
                "FUNCTION_NOT_FOUND: date_format expects (timestamp, varchar), not {arg_types:?}"
            ))),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let t = cast(
            &args.args[0].to_array(n)?,
            &DataType::Timestamp(TimeUnit::Millisecond, None),
        )?;
        let t = t.as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>();
        let f = Formats::new(&args.args[1], n)?;
        let out: StringArray = t
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let dt = DateTime::from_timestamp_millis(t?)?.naive_utc();
                let mut out = String::new();
                write!(out, "{}", dt.format_with_items(f.get(i)?.iter())).ok()?;
                Some(out)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `element_at(array, index)` / `element_at(map, key)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ElementAt {
    signature: Signature,
}

impl ElementAt {
    fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ElementAt {
    fn name(&self) -> &str {
        "element_at"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)) => {
                Ok(f.data_type().clone())
            }
            Some(DataType::Map(entries, _)) => match entries.data_type() {
                DataType::Struct(fields) if fields.len() == 2 => Ok(fields[1].data_type().clone()),
                _ => Err(DataFusionError::Plan("element_at: malformed map".into())),
            },
            other => Err(DataFusionError::Plan(format!(
                "FUNCTION_NOT_FOUND: element_at expects an array or a map, not {other:?}"
            ))),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let base = args.args[0].to_array(n)?;
        let idx = args.args[1].to_array(n)?;
        let out: ArrayRef = match base.data_type() {
            DataType::List(_) => {
                let list = base.as_list::<i32>();
                let idx = cast(&idx, &DataType::Int64)?;
                let idx = idx.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                let mut picks: Vec<Option<(usize, usize)>> = Vec::with_capacity(n);
                for i in 0..n {
                    if list.is_null(i) || idx.is_null(i) {
                        picks.push(None);
                        continue;
                    }
                    let (start, end) = (list.value_offsets()[i] as i64, list.value_offsets()[i + 1] as i64);
                    let len = end - start;
                    let k = idx.value(i);
                    let pos = if k > 0 { k - 1 } else { len + k };
                    picks.push((k != 0 && pos >= 0 && pos < len).then(|| (i, (start + pos) as usize)));
                }
                take_values(list.values(), &picks)?
            }
            DataType::Map(..) => {
                let map = base.as_map();
                let keys = cast(map.keys(), &DataType::Utf8)?;
                let keys = keys.as_string::<i32>();
                let wanted = cast(&idx, &DataType::Utf8)?;
                let wanted = wanted.as_string::<i32>();
                let mut picks = Vec::with_capacity(n);
                for i in 0..n {
                    if map.is_null(i) || wanted.is_null(i) {
                        picks.push(None);
                        continue;
                    }
                    let (s, e) = (map.value_offsets()[i] as usize, map.value_offsets()[i + 1] as usize);
                    picks.push(
                        (s..e)
                            .find(|j| keys.is_valid(*j) && keys.value(*j) == wanted.value(i))
                            .map(|j| (i, j)),
                    );
                }
                take_values(map.values(), &picks)?
            }
            other => {
                return Err(DataFusionError::Execution(format!(
                    "element_at expects an array or a map, not {other}"
                )));
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

fn take_values(values: &ArrayRef, picks: &[Option<(usize, usize)>]) -> Result<ArrayRef> {
    let idx: datafusion::arrow::array::UInt64Array = picks.iter().map(|p| p.map(|(_, j)| j as u64)).collect();
    Ok(datafusion::arrow::compute::take(values.as_ref(), &idx, None)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths() {
        let d = r#"{"a":{"b":[1,{"c":"x"}]},"k y":true}"#;
        assert_eq!(json_path(d, "$.a.b[1].c"), Some(serde_json::json!("x")));
        assert_eq!(json_path(d, "$[\"k y\"]"), Some(serde_json::json!(true)));
        assert_eq!(json_path(d, "$.nope"), None);
        assert_eq!(json_path("not json", "$.a"), None);
        assert_eq!(mysql_to_chrono("%Y-%m-%d %H:%i:%s"), "%Y-%m-%d %H:%M:%S");
        assert!(parse_iso_ts("2024-01-02T03:04:05Z").is_some());
    }
}
