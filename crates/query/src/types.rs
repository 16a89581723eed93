//! Glue (Hive) type names ↔ Arrow types, and Arrow types → Athena's result type names.
//!
//! | Glue | Arrow |
//! |---|---|
//! | `string`, `varchar(n)`, `char(n)` | Utf8 |
//! | `tinyint` `smallint` `int`/`integer` `bigint` | Int8 Int16 Int32 Int64 |
//! | `float`/`real`, `double` | Float32, Float64 |
//! | `decimal(p,s)` (`decimal` = `decimal(10,0)`) | Decimal128(p, s) |
//! | `boolean` | Boolean |
//! | `date` | Date32 |
//! | `timestamp` | Timestamp(ms) |
//! | `binary` | Binary |
//! | `array<T>` | List(T) |
//! | `map<K,V>` | Map(entries{key,value}) |
//! | `struct<a:T,…>` | Struct |

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};

/// Deepest nesting accepted in a type name.
const MAX_DEPTH: usize = 32;

/// Parses a Hive type name.
pub fn parse_hive_type(s: &str) -> Result<DataType, String> {
    let mut p = TypeParser {
        s: s.as_bytes(),
        pos: 0,
        depth: 0,
    };
    let t = p.parse()?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(format!("Unknown type '{s}'"));
    }
    Ok(t)
}

struct TypeParser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
}

impl TypeParser<'_> {
    fn ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn word(&mut self) -> String {
        self.ws();
        let start = self.pos;
        while self.pos < self.s.len() && (self.s[self.pos].is_ascii_alphanumeric() || self.s[self.pos] == b'_') {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).to_ascii_lowercase()
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}' in type", c as char))
        }
    }

    fn number(&mut self) -> Result<u32, String> {
        let w = self.word();
        w.parse().map_err(|_| format!("expected a number in type, found '{w}'"))
    }

    fn field_name(&mut self) -> String {
        self.ws();
        if self.eat(b'`') {
            let start = self.pos;
            while self.pos < self.s.len() && self.s[self.pos] != b'`' {
                self.pos += 1;
            }
            let n = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
            self.pos += 1;
            return n.to_ascii_lowercase();
        }
        let start = self.pos;
        while self.pos < self.s.len() && !matches!(self.s[self.pos], b':' | b',' | b'>') {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos])
            .trim()
            .to_ascii_lowercase()
    }

    fn parse(&mut self) -> Result<DataType, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("type nested too deeply".into());
        }
        let w = self.word();
        let t = match w.as_str() {
            "string" => DataType::Utf8,
            "varchar" | "char" => {
                if self.eat(b'(') {
                    self.number()?;
                    self.expect(b')')?;
                }
                DataType::Utf8
            }
            "tinyint" => DataType::Int8,
            "smallint" => DataType::Int16,
            "int" | "integer" => DataType::Int32,
            "bigint" => DataType::Int64,
            "float" | "real" => DataType::Float32,
            "double" => DataType::Float64,
            "boolean" => DataType::Boolean,
            "date" => DataType::Date32,
            "timestamp" => DataType::Timestamp(TimeUnit::Millisecond, None),
            "binary" | "varbinary" => DataType::Binary,
            "decimal" | "numeric" => {
                let (mut p, mut s) = (10u32, 0u32);
                if self.eat(b'(') {
                    p = self.number()?;
                    if self.eat(b',') {
                        s = self.number()?;
                    }
                    self.expect(b')')?;
                }
                if p == 0 || p > 38 || s > p {
                    return Err(format!("invalid decimal({p},{s})"));
                }
                DataType::Decimal128(p as u8, s as i8)
            }
            "array" => {
                self.expect(b'<')?;
                let inner = self.parse()?;
                self.expect(b'>')?;
                DataType::List(Arc::new(Field::new("item", inner, true)))
            }
            "map" => {
                self.expect(b'<')?;
                let k = self.parse()?;
                self.expect(b',')?;
                let v = self.parse()?;
                self.expect(b'>')?;
                map_type(k, v)
            }
            "struct" | "row" => {
                self.expect(b'<')?;
                let mut fields = Vec::new();
                if !self.eat(b'>') {
                    loop {
                        let name = self.field_name();
                        self.expect(b':')?;
                        let t = self.parse()?;
                        fields.push(Field::new(name, t, true));
                        if self.eat(b'>') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                DataType::Struct(Fields::from(fields))
            }
            other => return Err(format!("Unknown type '{other}'")),
        };
        self.depth -= 1;
        Ok(t)
    }
}

/// The Arrow map type with Hive's entry names.
pub fn map_type(k: DataType, v: DataType) -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("key", k, false),
                Field::new("value", v, true),
            ])),
            false,
        )),
        false,
    )
}

/// Athena's name of a result column type, with precision and scale.
pub fn athena_type(t: &DataType) -> (&'static str, i32, i32) {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ("varchar", 2147483647, 0),
        DataType::Int8 => ("tinyint", 3, 0),
        DataType::Int16 => ("smallint", 5, 0),
        DataType::Int32 | DataType::UInt8 | DataType::UInt16 => ("integer", 10, 0),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => ("bigint", 19, 0),
        DataType::Float16 | DataType::Float32 => ("real", 17, 0),
        DataType::Float64 => ("double", 17, 0),
        DataType::Boolean => ("boolean", 0, 0),
        DataType::Date32 | DataType::Date64 => ("date", 0, 0),
        DataType::Timestamp(_, Some(_)) => ("timestamp with time zone", 3, 0),
        DataType::Timestamp(_, None) => ("timestamp", 3, 0),
        DataType::Time32(_) | DataType::Time64(_) => ("time", 3, 0),
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => ("decimal", *p as i32, *s as i32),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            ("varbinary", 1073741824, 0)
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) | DataType::ListView(_) => {
            ("array", 0, 0)
        }
        DataType::Map(..) => ("map", 0, 0),
        DataType::Struct(_) => ("row", 0, 0),
        DataType::Interval(_) | DataType::Duration(_) => ("interval day to second", 0, 0),
        DataType::Null => ("unknown", 0, 0),
        DataType::Dictionary(_, v) => athena_type(v),
        _ => ("varchar", 2147483647, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_hive_types() {
        assert_eq!(parse_hive_type("STRING"), Ok(DataType::Utf8));
        assert_eq!(parse_hive_type("decimal(12, 2)"), Ok(DataType::Decimal128(12, 2)));
        assert!(matches!(
            parse_hive_type("array<struct<a:int,b:map<string,array<bigint>>>>"),
            Ok(DataType::List(_))
        ));
        assert!(parse_hive_type("array<int").is_err());
        assert!(parse_hive_type("wat").is_err());
        assert!(parse_hive_type(&format!("{}int{}", "array<".repeat(100), ">".repeat(100))).is_err());
        assert_eq!(athena_type(&DataType::Int64).0, "bigint");
    }
}
