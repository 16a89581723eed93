//! The CBOR variant of awsJson1.1 (`application/x-amz-cbor-1.1`), as AWS's Java SDKs send it
//! to Kinesis: the same operation shapes, written as one CBOR data item (RFC 8949).
//!
//! Handlers speak JSON, so the edge converts: [`decode_to_json`] turns a request body into a
//! [`serde_json::Value`] (byte strings become base64 text, exactly what the JSON protocol
//! carries for blobs; `tag 1` timestamps become epoch seconds), and [`encode_from_json`] turns
//! a reply back into CBOR, writing the named blob and timestamp members in their CBOR forms.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Number, Value};

/// Deepest nesting of arrays, maps and tags accepted by [`decode_to_json`].
pub const MAX_DEPTH: usize = 64;

/// Why a CBOR body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    /// The input ended in the middle of a data item.
    #[error("CBOR input ended in the middle of a data item")]
    Truncated,
    /// The input is not well-formed CBOR, or uses something JSON cannot carry.
    #[error("invalid CBOR: {0}")]
    Invalid(String),
    /// Arrays, maps and tags are nested deeper than [`MAX_DEPTH`].
    #[error("CBOR nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A declared length or element count is larger than the rest of the input can hold.
    #[error("CBOR length {0} exceeds the remaining input")]
    TooLarge(u64),
    /// Bytes follow the first complete data item.
    #[error("{0} bytes follow the CBOR data item")]
    TrailingBytes(usize),
}

/// Decode one CBOR data item into JSON.
///
/// Maps become objects (text keys only; a repeated key keeps its last value), arrays arrays,
/// text strings strings, integers numbers, floats (half, single, double) numbers (NaN and the
/// infinities become the strings `"NaN"`, `"Infinity"`, `"-Infinity"` as in awsJson), `true`
/// and `false` booleans, `null` and `undefined` null. Byte strings (also indefinite-length
/// ones) become standard, padded base64 strings. Tag 1 (epoch time) around a number of epoch
/// **milliseconds** (AWS's convention) becomes epoch seconds (`ms / 1000.0`); any other tag is
/// transparent. The whole input must be one data item.
pub fn decode_to_json(input: &[u8]) -> Result<Value, CborError> {
    let mut decoder = Decoder { input, pos: 0 };
    let value = decoder.item(0)?;
    match input.len() - decoder.pos {
        0 => Ok(value),
        n => Err(CborError::TrailingBytes(n)),
    }
}

/// Encode JSON as CBOR.
///
/// Object members named in `blob_fields` whose value is a string are base64-decoded and
/// written as byte strings (a string that is not valid base64 stays a text string); members
/// named in `timestamp_fields` whose value is a number (epoch seconds, possibly fractional)
/// are written as tag 1 around integer epoch milliseconds. Integers are CBOR integers, other
/// numbers doubles; all lengths are definite.
pub fn encode_from_json(value: &Value, blob_fields: &[&str], timestamp_fields: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let encoder = Encoder {
        blob_fields,
        timestamp_fields,
    };
    encoder.value(&mut out, value);
    out
}

// ---------------------------------------------------------------------------------------------
// Decoding

const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_NEGATIVE: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;
const MAJOR_SIMPLE: u8 = 7;
const BREAK: u8 = 0xff;
const INDEFINITE: u8 = 31;

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

/// The head of a data item: major type, additional information and its argument
/// (`None` for the indefinite-length marker).
struct Head {
    major: u8,
    info: u8,
    arg: Option<u64>,
}

impl Decoder<'_> {
    fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&[u8], CborError> {
        if n > self.remaining() {
            return Err(CborError::Truncated);
        }
        let start = self.pos;
        self.pos += n;
        Ok(&self.input[start..self.pos])
    }

    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self.input.get(self.pos).ok_or(CborError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn peek(&self) -> Result<u8, CborError> {
        self.input.get(self.pos).copied().ok_or(CborError::Truncated)
    }

    fn uint(&mut self, n: usize) -> Result<u64, CborError> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
    }

    fn head(&mut self) -> Result<Head, CborError> {
        let initial = self.byte()?;
        let major = initial >> 5;
        let info = initial & 0x1f;
        let arg = match info {
            0..=23 => Some(u64::from(info)),
            24 => Some(self.uint(1)?),
            25 => Some(self.uint(2)?),
            26 => Some(self.uint(4)?),
            27 => Some(self.uint(8)?),
            28..=30 => {
                return Err(CborError::Invalid(format!(
                    "reserved additional information {info} in initial byte {initial:#04x}"
                )));
            }
            _ => None,
        };
        Ok(Head { major, info, arg })
    }

    /// A declared length, checked against the remaining input (each unit needing at least
    /// `min_bytes_each` bytes) before anything is allocated for it.
    fn length(&self, declared: u64, min_bytes_each: u64) -> Result<usize, CborError> {
        let needed = declared.checked_mul(min_bytes_each);
        match (needed, usize::try_from(declared)) {
            (Some(needed), Ok(len)) if needed <= self.remaining() as u64 => Ok(len),
            _ => Err(CborError::TooLarge(declared)),
        }
    }

    fn item(&mut self, depth: usize) -> Result<Value, CborError> {
        let head = self.head()?;
        match (head.major, head.arg) {
            (MAJOR_UNSIGNED, Some(n)) => Ok(Value::Number(Number::from(n))),
            (MAJOR_NEGATIVE, Some(n)) => Ok(negative(n)),
            (MAJOR_BYTES, _) => {
                let bytes = self.string_bytes(MAJOR_BYTES, head.arg)?;
                Ok(Value::String(BASE64.encode(bytes)))
            }
            (MAJOR_TEXT, _) => Ok(Value::String(self.text(head.arg)?)),
            (MAJOR_ARRAY, arg) => {
                let depth = enter(depth)?;
                let mut items = match arg {
                    Some(n) => Vec::with_capacity(self.length(n, 1)?),
                    None => Vec::new(),
                };
                match arg {
                    Some(n) => {
                        for _ in 0..n {
                            items.push(self.item(depth)?);
                        }
                    }
                    None => {
                        while self.peek()? != BREAK {
                            items.push(self.item(depth)?);
                        }
                        self.pos += 1;
                    }
                }
                Ok(Value::Array(items))
            }
            (MAJOR_MAP, arg) => {
                let depth = enter(depth)?;
                let mut map = Map::new();
                match arg {
                    Some(n) => {
                        self.length(n, 2)?;
                        for _ in 0..n {
                            self.entry(&mut map, depth)?;
                        }
                    }
                    None => {
                        while self.peek()? != BREAK {
                            self.entry(&mut map, depth)?;
                        }
                        self.pos += 1;
                    }
                }
                Ok(Value::Object(map))
            }
            (MAJOR_TAG, Some(tag)) => {
                let depth = enter(depth)?;
                let inner = self.item(depth)?;
                Ok(if tag == 1 {
                    epoch_millis_to_seconds(inner)
                } else {
                    inner
                })
            }
            (MAJOR_SIMPLE, _) => self.simple(head),
            (major, _) => Err(CborError::Invalid(format!(
                "indefinite length is not allowed for major type {major}"
            ))),
        }
    }

    fn entry(&mut self, map: &mut Map<String, Value>, depth: usize) -> Result<(), CborError> {
        let head = self.head()?;
        if head.major != MAJOR_TEXT {
            return Err(CborError::Invalid(format!(
                "map keys must be text strings, found major type {}",
                head.major
            )));
        }
        let key = self.text(head.arg)?;
        let value = self.item(depth)?;
        map.insert(key, value);
        Ok(())
    }

    fn text(&mut self, arg: Option<u64>) -> Result<String, CborError> {
        let bytes = self.string_bytes(MAJOR_TEXT, arg)?;
        String::from_utf8(bytes).map_err(|_| CborError::Invalid("text string is not valid UTF-8".to_owned()))
    }

    /// The content of a byte or text string; an indefinite-length one is the concatenation
    /// of its definite-length chunks of the same major type.
    fn string_bytes(&mut self, major: u8, arg: Option<u64>) -> Result<Vec<u8>, CborError> {
        if let Some(n) = arg {
            let len = self.length(n, 1)?;
            return Ok(self.take(len)?.to_vec());
        }
        let mut out = Vec::new();
        loop {
            if self.peek()? == BREAK {
                self.pos += 1;
                return Ok(out);
            }
            let chunk = self.head()?;
            let len = match (chunk.major == major, chunk.arg) {
                (true, Some(n)) => self.length(n, 1)?,
                _ => {
                    return Err(CborError::Invalid(
                        "indefinite-length string chunks must be definite-length strings \
                         of the same type"
                            .to_owned(),
                    ));
                }
            };
            out.extend_from_slice(self.take(len)?);
        }
    }

    fn simple(&mut self, head: Head) -> Result<Value, CborError> {
        match (head.info, head.arg) {
            (20, _) => Ok(Value::Bool(false)),
            (21, _) => Ok(Value::Bool(true)),
            (22 | 23, _) => Ok(Value::Null),
            (25, Some(bits)) => Ok(float(f16_to_f64(bits as u16))),
            (26, Some(bits)) => Ok(float(f64::from(f32::from_bits(bits as u32)))),
            (27, Some(bits)) => Ok(float(f64::from_bits(bits))),
            (INDEFINITE, _) => Err(CborError::Invalid("unexpected break".to_owned())),
            (_, arg) => Err(CborError::Invalid(format!(
                "unsupported simple value {}",
                arg.unwrap_or(u64::from(head.info))
            ))),
        }
    }
}

fn enter(depth: usize) -> Result<usize, CborError> {
    if depth >= MAX_DEPTH {
        Err(CborError::TooDeep)
    } else {
        Ok(depth + 1)
    }
}

/// Major type 1: the value `-1 - n`. Beyond `i64` it can only be approximated as a double.
fn negative(n: u64) -> Value {
    match i64::try_from(n) {
        Ok(n) => Value::Number(Number::from(-1 - n)),
        Err(_) => float(-1.0 - n as f64),
    }
}

/// A JSON number, or awsJson's strings for the values JSON has no number for.
fn float(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".to_owned()),
        None if f > 0.0 => Value::String("Infinity".to_owned()),
        None => Value::String("-Infinity".to_owned()),
    }
}

/// Tag 1 content: epoch milliseconds as AWS writes them; the result is epoch seconds.
fn epoch_millis_to_seconds(inner: Value) -> Value {
    match &inner {
        Value::Number(n) => match n.as_f64() {
            Some(ms) => float(ms / 1000.0),
            None => inner,
        },
        _ => inner,
    }
}

/// IEEE 754 half precision to double.
fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f64::from(bits & 0x3ff);
    let magnitude = match exponent {
        0 => mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1024.0 + mantissa) * 2f64.powi(e - 25),
    };
    sign * magnitude
}

// ---------------------------------------------------------------------------------------------
// Encoding

struct Encoder<'a> {
    blob_fields: &'a [&'a str],
    timestamp_fields: &'a [&'a str],
}

fn head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let major = major << 5;
    if arg < 24 {
        out.push(major | arg as u8);
    } else if let Ok(a) = u8::try_from(arg) {
        out.extend_from_slice(&[major | 24, a]);
    } else if let Ok(a) = u16::try_from(arg) {
        out.push(major | 25);
        out.extend_from_slice(&a.to_be_bytes());
    } else if let Ok(a) = u32::try_from(arg) {
        out.push(major | 26);
        out.extend_from_slice(&a.to_be_bytes());
    } else {
        out.push(major | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

fn write_i128(out: &mut Vec<u8>, n: i128) -> bool {
    if let Ok(u) = u64::try_from(n) {
        head(out, MAJOR_UNSIGNED, u);
        true
    } else if let Ok(u) = u64::try_from(-1 - n) {
        head(out, MAJOR_NEGATIVE, u);
        true
    } else {
        false
    }
}

fn write_f64(out: &mut Vec<u8>, f: f64) {
    out.push(MAJOR_SIMPLE << 5 | 27);
    out.extend_from_slice(&f.to_bits().to_be_bytes());
}

fn write_text(out: &mut Vec<u8>, s: &str) {
    head(out, MAJOR_TEXT, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

impl Encoder<'_> {
    fn value(&self, out: &mut Vec<u8>, value: &Value) {
        match value {
            Value::Null => out.push(0xf6),
            Value::Bool(false) => out.push(0xf4),
            Value::Bool(true) => out.push(0xf5),
            Value::Number(n) => number(out, n),
            Value::String(s) => write_text(out, s),
            Value::Array(items) => {
                head(out, MAJOR_ARRAY, items.len() as u64);
                for item in items {
                    self.value(out, item);
                }
            }
            Value::Object(map) => {
                head(out, MAJOR_MAP, map.len() as u64);
                for (name, member) in map {
                    write_text(out, name);
                    self.member(out, name, member);
                }
            }
        }
    }

    fn member(&self, out: &mut Vec<u8>, name: &str, value: &Value) {
        match value {
            Value::String(s) if self.blob_fields.contains(&name) => match BASE64.decode(s) {
                Ok(bytes) => {
                    head(out, MAJOR_BYTES, bytes.len() as u64);
                    out.extend_from_slice(&bytes);
                }
                Err(_) => write_text(out, s),
            },
            Value::Number(n) if self.timestamp_fields.contains(&name) => {
                let millis = match (n.as_i64(), n.as_u64()) {
                    (Some(secs), _) => Some(i128::from(secs) * 1000),
                    (None, Some(secs)) => Some(i128::from(secs) * 1000),
                    _ => n
                        .as_f64()
                        .map(|secs| (secs * 1000.0).round())
                        .filter(|ms| ms.is_finite() && ms.abs() < 1.8e19)
                        .map(|ms| ms as i128),
                };
                let start = out.len();
                head(out, MAJOR_TAG, 1);
                if !millis.is_some_and(|ms| write_i128(out, ms)) {
                    out.truncate(start);
                    number(out, n);
                }
            }
            _ => self.value(out, value),
        }
    }
}

fn number(out: &mut Vec<u8>, n: &Number) {
    if let Some(u) = n.as_u64() {
        head(out, MAJOR_UNSIGNED, u);
    } else if let Some(i) = n.as_i64() {
        // Negative: -1 - i is non-negative and fits.
        head(out, MAJOR_NEGATIVE, (-1 - i) as u64);
    } else {
        write_f64(out, n.as_f64().unwrap_or(f64::NAN));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test hex"))
            .collect()
    }

    fn dec(s: &str) -> Result<Value, CborError> {
        decode_to_json(&hex(s))
    }

    #[test]
    fn rfc8949_appendix_a() {
        let cases: &[(&str, Value)] = &[
            ("00", json!(0)),
            ("01", json!(1)),
            ("0a", json!(10)),
            ("17", json!(23)),
            ("1818", json!(24)),
            ("1819", json!(25)),
            ("1864", json!(100)),
            ("1903e8", json!(1000)),
            ("1a000f4240", json!(1_000_000)),
            ("1b000000e8d4a51000", json!(1_000_000_000_000u64)),
            ("1bffffffffffffffff", json!(18_446_744_073_709_551_615u64)),
            ("20", json!(-1)),
            ("29", json!(-10)),
            ("3863", json!(-100)),
            ("3903e7", json!(-1000)),
            ("f90000", json!(0.0)),
            ("f98000", json!(-0.0)),
            ("f93c00", json!(1.0)),
            ("fb3ff199999999999a", json!(1.1)),
            ("f93e00", json!(1.5)),
            ("f97bff", json!(65504.0)),
            ("fa47c35000", json!(100000.0)),
            ("fa7f7fffff", json!(3.4028234663852886e+38)),
            ("fb7e37e43c8800759c", json!(1.0e+300)),
            ("f90001", json!(5.960464477539063e-8)),
            ("f90400", json!(0.00006103515625)),
            ("f9c400", json!(-4.0)),
            ("fbc010666666666666", json!(-4.1)),
            ("f97c00", json!("Infinity")),
            ("f97e00", json!("NaN")),
            ("f9fc00", json!("-Infinity")),
            ("fb7ff0000000000000", json!("Infinity")),
            ("f4", json!(false)),
            ("f5", json!(true)),
            ("f6", Value::Null),
            ("f7", Value::Null),
            (
                "c074323031332d30332d32315432303a30343a30305a",
                json!("2013-03-21T20:04:00Z"),
            ),
            ("d74401020304", json!("AQIDBA==")),
            ("40", json!("")),
            ("4401020304", json!("AQIDBA==")),
            ("60", json!("")),
            ("6161", json!("a")),
            ("6449455446", json!("IETF")),
            ("62225c", json!("\"\\")),
            ("62c3bc", json!("\u{00fc}")),
            ("63e6b0b4", json!("\u{6c34}")),
            ("64f0908591", json!("\u{10151}")),
            ("80", json!([])),
            ("83010203", json!([1, 2, 3])),
            ("8301820203820405", json!([1, [2, 3], [4, 5]])),
            (
                "98190102030405060708090a0b0c0d0e0f101112131415161718181819",
                json!([
                    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25
                ]),
            ),
            ("a0", json!({})),
            ("a26161016162820203", json!({"a": 1, "b": [2, 3]})),
            ("826161a161626163", json!(["a", {"b": "c"}])),
            (
                "a56161614161626142616361436164614461656145",
                json!({"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}),
            ),
            ("5f42010243030405ff", json!("AQIDBAU=")),
            ("7f657374726561646d696e67ff", json!("streaming")),
            ("9fff", json!([])),
            ("9f018202039f0405ffff", json!([1, [2, 3], [4, 5]])),
            ("9f01820203820405ff", json!([1, [2, 3], [4, 5]])),
            ("83018202039f0405ff", json!([1, [2, 3], [4, 5]])),
            ("83019f0203ff820405", json!([1, [2, 3], [4, 5]])),
            (
                "9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff",
                json!([
                    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25
                ]),
            ),
            ("bf61610161629f0203ffff", json!({"a": 1, "b": [2, 3]})),
            ("826161bf61626163ff", json!(["a", {"b": "c"}])),
            ("bf6346756ef563416d7421ff", json!({"Fun": true, "Amt": -2})),
        ];
        for (input, expected) in cases {
            let got = dec(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(&got, expected, "{input}");
            if let (Some(g), Some(e)) = (got.as_f64(), expected.as_f64()) {
                assert_eq!(g.to_bits(), e.to_bits(), "{input}: sign/bits");
            }
        }
    }

    #[test]
    fn malformed_input_is_rejected() {
        assert_eq!(dec(""), Err(CborError::Truncated));
        assert_eq!(dec("18"), Err(CborError::Truncated));
        assert_eq!(dec("1a0000"), Err(CborError::Truncated));
        assert_eq!(dec("62"), Err(CborError::TooLarge(2)));
        assert_eq!(dec("5b00000000ffffffff00"), Err(CborError::TooLarge(0xffff_ffff)));
        assert_eq!(dec("9b7fffffffffffffff"), Err(CborError::TooLarge(i64::MAX as u64)));
        assert_eq!(dec("a2616101"), Err(CborError::TooLarge(2)));
        assert_eq!(dec("8301"), Err(CborError::TooLarge(3)));
        assert_eq!(dec("82011a"), Err(CborError::Truncated));
        assert_eq!(dec("9f01"), Err(CborError::Truncated));
        assert_eq!(dec("0001"), Err(CborError::TrailingBytes(1)));
        assert!(matches!(dec("ff"), Err(CborError::Invalid(_))));
        assert!(matches!(dec("1c"), Err(CborError::Invalid(_))));
        assert!(matches!(dec("1f"), Err(CborError::Invalid(_))));
        assert!(matches!(dec("a10101"), Err(CborError::Invalid(_)))); // int key
        assert!(matches!(dec("62c328"), Err(CborError::Invalid(_)))); // bad UTF-8
        assert!(matches!(dec("5f6161ff"), Err(CborError::Invalid(_)))); // text chunk in bytes
        assert!(matches!(dec("5f5f4101ffff"), Err(CborError::Invalid(_)))); // nested indefinite
        assert!(matches!(dec("f0"), Err(CborError::Invalid(_)))); // simple(16)
        assert!(matches!(dec("f820"), Err(CborError::Invalid(_)))); // simple(32)
        let deep = "81".repeat(MAX_DEPTH) + "00";
        assert!(dec(&deep).is_ok());
        let too_deep = "81".repeat(MAX_DEPTH + 1) + "00";
        assert_eq!(dec(&too_deep), Err(CborError::TooDeep));
        let deep_tags = "c6".repeat(100_000) + "00";
        assert_eq!(dec(&deep_tags), Err(CborError::TooDeep));
        // A huge negative integer is approximated.
        assert_eq!(dec("3bffffffffffffffff"), Ok(json!(-18_446_744_073_709_551_616.0)));
    }

    #[test]
    fn byte_strings_become_base64() {
        assert_eq!(dec("43666f6f"), Ok(json!("Zm9v")));
        assert_eq!(dec("a1644461746141ff"), Ok(json!({"Data": "/w=="})));
        let blob = encode_from_json(&json!({"Data": "/w==", "Other": "/w=="}), &["Data"], &[]);
        assert_eq!(blob, hex("a2644461746141ff654f74686572642f773d3d"));
        // Not base64: kept as text.
        let text = encode_from_json(&json!({"Data": "!"}), &["Data"], &[]);
        assert_eq!(text, hex("a164446174616121"));
    }

    #[test]
    fn timestamps_are_tag_1_milliseconds() {
        // tag 1 around 1_440_938_160_123 ms.
        let ms = "c11b0000014f7e9b6ffb";
        assert_eq!(dec(ms), Ok(json!(1_440_938_160.123)));
        assert_eq!(dec("c11a3b9aca00"), Ok(json!(1_000_000.0)));
        assert_eq!(dec("c1fb40c3880000000000"), Ok(json!(10.0))); // 10000.0 ms
        assert_eq!(dec("c16161"), Ok(json!("a"))); // not a number: transparent
        let v = json!({"ApproximateArrivalTimestamp": 1_440_938_160.123, "N": 1.5});
        let bytes = encode_from_json(&v, &[], &["ApproximateArrivalTimestamp"]);
        let mut expected = hex("a2781b");
        expected.extend_from_slice(b"ApproximateArrivalTimestamp");
        expected.extend_from_slice(&hex(ms));
        expected.extend_from_slice(&hex("614efb3ff8000000000000"));
        assert_eq!(bytes, expected);
        assert_eq!(decode_to_json(&bytes), Ok(v));
        let ints = encode_from_json(&json!({"T": 2, "U": -2}), &[], &["T", "U"]);
        assert_eq!(ints, hex("a26154c11907d06155c13907cf"));
        assert_eq!(decode_to_json(&ints), Ok(json!({"T": 2.0, "U": -2.0})));
    }

    #[test]
    fn round_trips() {
        let v = json!({
            "StreamName": "s",
            "Records": [{"Data": "AAEC", "PartitionKey": "pk", "ExplicitHashKey": null}],
            "Limit": 10_000,
            "Neg": -123_456_789_012i64,
            "Big": u64::MAX,
            "F": 0.25,
            "Nested": {"a": [true, false, [], {}]},
        });
        let plain = encode_from_json(&v, &[], &[]);
        assert_eq!(decode_to_json(&plain), Ok(v.clone()));
        let blobbed = encode_from_json(&v, &["Data"], &[]);
        assert_ne!(plain, blobbed);
        assert_eq!(decode_to_json(&blobbed), Ok(v));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| Value::Number(n.into())),
                any::<u64>().prop_map(|n| Value::Number(n.into())),
                ".*".prop_map(Value::String),
            ];
            leaf.prop_recursive(6, 64, 8, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                    prop::collection::btree_map(".*", inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                let _ = decode_to_json(&bytes);
            }

            #[test]
            fn mutated_valid_input_never_panics(
                v in json_value(),
                flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            ) {
                let mut bytes = encode_from_json(&v, &[], &[]);
                for (i, b) in flips {
                    if !bytes.is_empty() {
                        let i = i.index(bytes.len());
                        bytes[i] = b;
                    }
                }
                let _ = decode_to_json(&bytes);
            }

            #[test]
            fn encode_decode_is_identity(v in json_value()) {
                let bytes = encode_from_json(&v, &[], &[]);
                prop_assert_eq!(decode_to_json(&bytes), Ok(v));
            }
        }
    }
}
