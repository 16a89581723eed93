//! Record format conversion (`DataFormatConversionConfiguration`): JSON records to one
//! Apache Parquet file per delivered object.
//!
//! Each record holds one JSON object, or several concatenated (whitespace between them,
//! newline-terminated or not); every object becomes one row. A record is converted whole or
//! not at all: anything that does not fit the schema sends the entire record to the error
//! output (`format-conversion-failed`, error code [`MALFORMED_DATA`]), as AWS does.
//!
//! Field rules (a superset of OpenX JSON SerDe's defaults):
//!
//! * keys match column names case-insensitively (an exact match wins); keys that are not
//!   columns are ignored; a missing key or `null` is a null;
//! * `string`: strings as is; numbers and booleans as their JSON text; objects and arrays as
//!   their JSON text;
//! * `int`/`bigint`: integral numbers in range, or strings holding one;
//! * `double`/`float`: numbers, or strings holding one;
//! * `boolean`: `true`/`false`, or the strings `"true"`/`"false"` (any case);
//! * `timestamp`: strings such as `2024-05-01 12:00:00[.fff]` or RFC 3339
//!   (`2024-05-01T12:00:00Z`), or integers as epoch milliseconds;
//! * `date`: `yyyy-mm-dd` strings.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::compute::kernels::cast_utils::{Parser, string_to_timestamp_nanos};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as PqCompression, GzipLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use crate::model::{ColumnType, FormatConversion, ParquetCompression};

/// `errorCode` of records that do not fit the schema.
pub const MALFORMED_DATA: &str = "DataFormatConversion.MalformedData";

/// The default object key extension of converted objects.
pub const PARQUET_EXTENSION: &str = ".parquet";

/// One converted field value.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Str(String),
    I32(i32),
    I64(i64),
    F64(f64),
    F32(f32),
    Bool(bool),
    /// Epoch milliseconds.
    Ts(i64),
    /// Days since the epoch.
    Date(i32),
}

fn mismatch(col: &str, ty: ColumnType, v: &Value) -> String {
    let mut shown = v.to_string();
    if shown.len() > 100 {
        let mut cut = 100;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push('…');
    }
    format!(
        "The value {shown} of column '{col}' cannot be converted to {}.",
        ty.as_str()
    )
}

fn cell(col: &str, ty: ColumnType, v: &Value) -> Result<Cell, String> {
    if v.is_null() {
        return Ok(Cell::Null);
    }
    let bad = || mismatch(col, ty, v);
    let s = v.as_str().map(str::trim);
    Ok(match ty {
        ColumnType::String => Cell::Str(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
        ColumnType::Int => {
            let n = match s {
                Some(s) => s.parse::<i64>().ok(),
                None => v.as_i64(),
            };
            Cell::I32(n.and_then(|n| i32::try_from(n).ok()).ok_or_else(bad)?)
        }
        ColumnType::Bigint => Cell::I64(
            match s {
                Some(s) => s.parse::<i64>().ok(),
                None => v.as_i64(),
            }
            .ok_or_else(bad)?,
        ),
        ColumnType::Double => Cell::F64(
            match s {
                Some(s) => s.parse::<f64>().ok(),
                None => v.as_f64(),
            }
            .ok_or_else(bad)?,
        ),
        ColumnType::Float => Cell::F32(
            match s {
                Some(s) => s.parse::<f32>().ok(),
                None => v.as_f64().map(|f| f as f32),
            }
            .ok_or_else(bad)?,
        ),
        ColumnType::Boolean => Cell::Bool(match (v, s) {
            (Value::Bool(b), _) => *b,
            (_, Some(s)) if s.eq_ignore_ascii_case("true") => true,
            (_, Some(s)) if s.eq_ignore_ascii_case("false") => false,
            _ => return Err(bad()),
        }),
        ColumnType::Timestamp => Cell::Ts(match s {
            Some(s) => string_to_timestamp_nanos(s)
                .map(|n| n.div_euclid(1_000_000))
                .map_err(|_| bad())?,
            None => v.as_i64().ok_or_else(bad)?,
        }),
        ColumnType::Date => Cell::Date(s.and_then(Date32Type::parse).ok_or_else(bad)?),
    })
}

/// The rows of one record (`Err`: why the record does not fit the schema).
fn rows(conv: &FormatConversion, data: &[u8]) -> Result<Vec<Vec<Cell>>, String> {
    let mut out = Vec::new();
    for value in serde_json::Deserializer::from_slice(data).into_iter::<Value>() {
        let value = value.map_err(|e| format!("The record is not valid JSON: {e}"))?;
        let Value::Object(obj) = value else {
            return Err("The record is not a JSON object.".into());
        };
        let mut row = Vec::with_capacity(conv.columns.len());
        for (name, ty) in &conv.columns {
            let v = obj
                .get(name)
                .or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v));
            row.push(match v {
                None => Cell::Null,
                Some(v) => cell(name, *ty, v)?,
            });
        }
        out.push(row);
    }
    if out.is_empty() {
        return Err("The record holds no JSON object.".into());
    }
    Ok(out)
}

/// Checks that a record converts (`Err`: the error message for the error output).
pub fn check(conv: &FormatConversion, data: &[u8]) -> Result<(), String> {
    rows(conv, data).map(|_| ())
}

/// The Arrow schema of a conversion.
pub fn schema(conv: &FormatConversion) -> Schema {
    Schema::new(
        conv.columns
            .iter()
            .map(|(name, ty)| {
                let dt = match ty {
                    ColumnType::String => DataType::Utf8,
                    ColumnType::Int => DataType::Int32,
                    ColumnType::Bigint => DataType::Int64,
                    ColumnType::Double => DataType::Float64,
                    ColumnType::Float => DataType::Float32,
                    ColumnType::Boolean => DataType::Boolean,
                    ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
                    ColumnType::Date => DataType::Date32,
                };
                Field::new(name, dt, true)
            })
            .collect::<Vec<_>>(),
    )
}

enum Col {
    Str(StringBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
    F64(Float64Builder),
    F32(Float32Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMillisecondBuilder),
    Date(Date32Builder),
}

impl Col {
    fn new(ty: ColumnType) -> Col {
        match ty {
            ColumnType::String => Col::Str(StringBuilder::new()),
            ColumnType::Int => Col::I32(Int32Builder::new()),
            ColumnType::Bigint => Col::I64(Int64Builder::new()),
            ColumnType::Double => Col::F64(Float64Builder::new()),
            ColumnType::Float => Col::F32(Float32Builder::new()),
            ColumnType::Boolean => Col::Bool(BooleanBuilder::new()),
            ColumnType::Timestamp => Col::Ts(TimestampMillisecondBuilder::new()),
            ColumnType::Date => Col::Date(Date32Builder::new()),
        }
    }

    fn push(&mut self, c: Cell) {
        match (self, c) {
            (Col::Str(b), Cell::Str(v)) => b.append_value(v),
            (Col::I32(b), Cell::I32(v)) => b.append_value(v),
            (Col::I64(b), Cell::I64(v)) => b.append_value(v),
            (Col::F64(b), Cell::F64(v)) => b.append_value(v),
            (Col::F32(b), Cell::F32(v)) => b.append_value(v),
            (Col::Bool(b), Cell::Bool(v)) => b.append_value(v),
            (Col::Ts(b), Cell::Ts(v)) => b.append_value(v),
            (Col::Date(b), Cell::Date(v)) => b.append_value(v),
            (Col::Str(b), _) => b.append_null(),
            (Col::I32(b), _) => b.append_null(),
            (Col::I64(b), _) => b.append_null(),
            (Col::F64(b), _) => b.append_null(),
            (Col::F32(b), _) => b.append_null(),
            (Col::Bool(b), _) => b.append_null(),
            (Col::Ts(b), _) => b.append_null(),
            (Col::Date(b), _) => b.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Col::Str(mut b) => Arc::new(b.finish()),
            Col::I32(mut b) => Arc::new(b.finish()),
            Col::I64(mut b) => Arc::new(b.finish()),
            Col::F64(mut b) => Arc::new(b.finish()),
            Col::F32(mut b) => Arc::new(b.finish()),
            Col::Bool(mut b) => Arc::new(b.finish()),
            Col::Ts(mut b) => Arc::new(b.finish()),
            Col::Date(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Rows per record batch (and at most per row group written at once).
const BATCH_ROWS: usize = 8192;

/// Converts records to one Parquet file. Records that do not convert are skipped and
/// counted (the worker routes them to the error output before they get here; this only
/// happens if the schema changed in between). Returns the file and the skipped count.
pub fn to_parquet<'a>(
    conv: &FormatConversion,
    records: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(Vec<u8>, usize), String> {
    let schema = Arc::new(schema(conv));
    let compression = match conv.compression {
        ParquetCompression::Snappy => PqCompression::SNAPPY,
        ParquetCompression::Gzip => PqCompression::GZIP(GzipLevel::default()),
        ParquetCompression::Uncompressed => PqCompression::UNCOMPRESSED,
    };
    let props = WriterProperties::builder().set_compression(compression).build();
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, Arc::clone(&schema), Some(props)).map_err(|e| format!("parquet: {e}"))?;
    let new_cols = || conv.columns.iter().map(|(_, t)| Col::new(*t)).collect::<Vec<_>>();
    let mut cols = new_cols();
    let mut pending = 0usize;
    let mut skipped = 0usize;
    let write = |cols: Vec<Col>, writer: &mut ArrowWriter<&mut Vec<u8>>| -> Result<(), String> {
        let arrays: Vec<ArrayRef> = cols.into_iter().map(Col::finish).collect();
        let batch = RecordBatch::try_new(Arc::clone(&schema), arrays).map_err(|e| format!("arrow: {e}"))?;
        writer.write(&batch).map_err(|e| format!("parquet: {e}"))
    };
    for data in records {
        let Ok(rows) = rows(conv, data) else {
            skipped += 1;
            continue;
        };
        for row in rows {
            for (col, c) in cols.iter_mut().zip(row) {
                col.push(c);
            }
            pending += 1;
            if pending >= BATCH_ROWS {
                write(std::mem::replace(&mut cols, new_cols()), &mut writer)?;
                pending = 0;
            }
        }
    }
    if pending > 0 {
        write(cols, &mut writer)?;
    }
    writer.close().map_err(|e| format!("parquet: {e}"))?;
    Ok((out, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv() -> FormatConversion {
        FormatConversion {
            columns: vec![
                ("id".into(), ColumnType::Int),
                ("name".into(), ColumnType::String),
                ("ts".into(), ColumnType::Timestamp),
                ("d".into(), ColumnType::Date),
                ("ok".into(), ColumnType::Boolean),
            ],
            compression: ParquetCompression::Snappy,
        }
    }

    #[test]
    fn cells_follow_the_rules() {
        let c = conv();
        let r = rows(
            &c,
            br#"{"ID": "7", "name": 5, "ts": "2024-05-01 12:00:00.5", "d": "2024-05-02", "ok": "TRUE"}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            vec![vec![
                Cell::I32(7),
                Cell::Str("5".into()),
                Cell::Ts(1_714_564_800_500),
                Cell::Date(19_845),
                Cell::Bool(true)
            ]]
        );
        let r = rows(&c, b"{\"id\":1}\n{\"id\":2}  {\"ts\": 1000}\n").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[2][2], Cell::Ts(1000));
        assert_eq!(r[0][1], Cell::Null);
        assert!(check(&c, br#"{"id": "abc"}"#).is_err());
        assert!(check(&c, br#"{"id": 3000000000}"#).is_err());
        assert!(check(&c, br#"{"id": 1.5}"#).is_err());
        assert!(check(&c, b"[1]").is_err());
        assert!(check(&c, b"{\"id\":").is_err());
        assert!(check(&c, b"  \n").is_err());
    }
}
