//! Result files: `<id>.csv` as Athena writes them (a header row of column names, every
//! non-NULL value double-quoted with `""` escapes, NULL as an empty unquoted field) and the
//! reader GetQueryResults pages through (a page token is the byte offset of its first row).

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::Result;

/// How values become text (Athena's forms for dates and timestamps).
pub fn format_options() -> FormatOptions<'static> {
    FormatOptions::new()
        .with_null("")
        .with_date_format(Some("%Y-%m-%d"))
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.3f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.3f %Z"))
}

/// Appends one quoted field.
pub fn push_quoted(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for b in s.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// The header row.
pub fn header(names: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_quoted(&mut out, n);
    }
    out.push(b'\n');
    out
}

/// The CSV rows of `batch`.
pub fn rows(batch: &RecordBatch) -> Result<Vec<u8>> {
    let opts = format_options();
    let formatters: Vec<ArrayFormatter<'_>> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
        .collect::<std::result::Result<_, _>>()?;
    let mut out = Vec::with_capacity(batch.num_rows() * 16 * batch.num_columns().max(1));
    let mut s = String::new();
    for r in 0..batch.num_rows() {
        for (i, (f, c)) in formatters.iter().zip(batch.columns()).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if c.is_null(r) {
                continue;
            }
            s.clear();
            use std::fmt::Write as _;
            let _ = write!(s, "{}", f.value(r));
            push_quoted(&mut out, &s);
        }
        out.push(b'\n');
    }
    Ok(out)
}

/// One parsed row: `None` = NULL.
pub type Row = Vec<Option<String>>;

/// Parses complete CSV records from `buf`; returns the rows and the bytes consumed. Stops
/// after `max` rows or at the first incomplete record.
pub fn parse_rows(buf: &[u8], max: usize, at_eof: bool) -> (Vec<Row>, usize) {
    let mut rows = Vec::new();
    let mut pos = 0;
    while rows.len() < max && pos < buf.len() {
        let mut row: Row = Vec::new();
        let mut i = pos;
        let mut complete = false;
        loop {
            if i >= buf.len() {
                if at_eof {
                    complete = true;
                }
                break;
            }
            if buf[i] == b'"' {
                let mut v = Vec::new();
                i += 1;
                let mut closed = false;
                while i < buf.len() {
                    if buf[i] == b'"' {
                        if buf.get(i + 1) == Some(&b'"') {
                            v.push(b'"');
                            i += 2;
                            continue;
                        }
                        i += 1;
                        closed = true;
                        break;
                    }
                    v.push(buf[i]);
                    i += 1;
                }
                if !closed {
                    break;
                }
                row.push(Some(String::from_utf8_lossy(&v).into_owned()));
            } else {
                let start = i;
                while i < buf.len() && buf[i] != b',' && buf[i] != b'\n' {
                    i += 1;
                }
                let v = &buf[start..i];
                row.push(if v.is_empty() {
                    None
                } else {
                    Some(String::from_utf8_lossy(v).into_owned())
                });
            }
            match buf.get(i) {
                Some(b',') => i += 1,
                Some(b'\n') => {
                    i += 1;
                    complete = true;
                    break;
                }
                None => {
                    if at_eof {
                        complete = true;
                    }
                    break;
                }
                Some(_) => break,
            }
        }
        if !complete {
            break;
        }
        rows.push(row);
        pos = i;
    }
    (rows, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trip() {
        let mut b = header(&["a".into(), "b".into()]);
        b.extend_from_slice(b"\"x\"\"y\",\n,\"\"\n\"multi\nline\",\"1\"\n");
        let (rows, used) = parse_rows(&b, 10, true);
        assert_eq!(used, b.len());
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[1], vec![Some("x\"y".into()), None]);
        assert_eq!(rows[2], vec![None, Some(String::new())]);
        assert_eq!(rows[3][0].as_deref(), Some("multi\nline"));
        let (some, used2) = parse_rows(&b, 2, true);
        assert_eq!(some.len(), 2);
        let (rest, _) = parse_rows(&b[used2..], 10, true);
        assert_eq!(rest.len(), 2);
    }
}
