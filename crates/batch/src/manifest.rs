//! The CSV manifest (`S3BatchOperations_CSV_20180820`): one object per line,
//! `bucket,key` or `bucket,key,versionId` (or the columns `Spec.Fields` names), keys
//! URL-encoded, no header. Either every row has a version id or none does. Fields may be
//! quoted as in RFC 4180 (a quoted field cannot span lines). Blank lines are skipped.
//! The whole manifest is in memory: its size is bounded by [`crate::Config::max_manifest_bytes`].

use std::sync::Arc;

use percent_encoding::percent_decode;

/// A manifest column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `Ignore`.
    Ignore,
    /// `Bucket`.
    Bucket,
    /// `Key`.
    Key,
    /// `VersionId`.
    VersionId,
}

impl Field {
    /// The `JobManifestFieldName` of a string.
    pub fn parse(s: &str) -> Option<Field> {
        match s {
            "Ignore" => Some(Field::Ignore),
            "Bucket" => Some(Field::Bucket),
            "Key" => Some(Field::Key),
            "VersionId" => Some(Field::VersionId),
            _ => None,
        }
    }
}

/// Checks a `Fields` list: every name known, `Bucket` and `Key` exactly once, `VersionId` at
/// most once. Returns the columns or a message.
pub fn check_fields(fields: &[String]) -> Result<Vec<Field>, String> {
    let mut out = Vec::with_capacity(fields.len());
    for f in fields {
        out.push(Field::parse(f).ok_or_else(|| format!("Unknown manifest field {f}."))?);
    }
    let count = |x: Field| out.iter().filter(|f| **f == x).count();
    if count(Field::Bucket) != 1 || count(Field::Key) != 1 {
        return Err("Manifest fields must include Bucket and Key exactly once.".into());
    }
    if count(Field::VersionId) > 1 {
        return Err("Manifest fields may include VersionId at most once.".into());
    }
    Ok(out)
}

/// One task of a job: an object named by the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskRow {
    /// Bucket name (shared by consecutive rows of the same bucket).
    pub bucket: Arc<str>,
    /// The key as written in the manifest (URL-encoded).
    pub key: String,
    /// Version id, if the manifest has them.
    pub version: Option<String>,
}

impl TaskRow {
    /// The object key (URL-decoded; checked when the manifest was read).
    pub fn decoded_key(&self) -> String {
        decode_key(&self.key).unwrap_or_else(|| self.key.clone())
    }
}

/// Why a manifest was refused: the job's `FailureReasons` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManifestError {
    pub code: &'static str,
    pub reason: String,
}

fn malformed(line: usize, what: &str) -> ManifestError {
    ManifestError {
        code: "InvalidManifestContent",
        reason: format!("Malformed manifest: line {line}: {what}"),
    }
}

/// URL-decodes a manifest key (`+` is a space, as `unquote_plus`); `None` if the result is
/// not UTF-8.
pub fn decode_key(raw: &str) -> Option<String> {
    let plus: Vec<u8> = raw.bytes().map(|b| if b == b'+' { b' ' } else { b }).collect();
    percent_decode(&plus).decode_utf8().ok().map(|c| c.into_owned())
}

/// Splits one CSV line into fields (RFC 4180 quoting).
fn split_line(line: &str) -> Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted field"),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    out.push(field);
                    return Ok(out);
                }
                Some(',') => out.push(field),
                Some(_) => return Err("unexpected character after a quoted field"),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        out.push(field);
                        return Ok(out);
                    }
                    Some(',') => break,
                    Some('"') => return Err("quote inside an unquoted field"),
                    Some(c) => field.push(c),
                }
            }
            out.push(field);
        }
    }
}

/// Parses a whole manifest. `fields`: the job's `Spec.Fields` (checked), or `None` for
/// `bucket,key[,versionId]`.
pub(crate) fn parse(body: &[u8], fields: Option<&[Field]>) -> Result<Vec<TaskRow>, ManifestError> {
    let mut rows: Vec<TaskRow> = Vec::new();
    let mut with_version: Option<(bool, usize)> = None;
    let mut last_bucket: Option<Arc<str>> = None;
    for (n, raw) in body.split(|b| *b == b'\n').enumerate() {
        let line_no = n + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|_| malformed(line_no, "not UTF-8 text"))?;
        if line.trim().is_empty() {
            continue;
        }
        let cols = split_line(line).map_err(|e| malformed(line_no, e))?;
        let (bucket, key, version) = match fields {
            Some(fields) => {
                if cols.len() != fields.len() {
                    return Err(malformed(
                        line_no,
                        &format!("expected {} fields, found {}", fields.len(), cols.len()),
                    ));
                }
                let mut b = "";
                let mut k = "";
                let mut v = None;
                for (f, c) in fields.iter().zip(&cols) {
                    match f {
                        Field::Bucket => b = c,
                        Field::Key => k = c,
                        Field::VersionId => v = Some(c.as_str()),
                        Field::Ignore => {}
                    }
                }
                (b, k, v)
            }
            None => match cols.as_slice() {
                [b, k] => (b.as_str(), k.as_str(), None),
                [b, k, v] => (b.as_str(), k.as_str(), Some(v.as_str())),
                _ => {
                    return Err(malformed(
                        line_no,
                        &format!("expected 2 or 3 fields (bucket,key[,versionId]), found {}", cols.len()),
                    ));
                }
            },
        };
        if bucket.is_empty() {
            return Err(malformed(line_no, "empty bucket name"));
        }
        if key.is_empty() {
            return Err(malformed(line_no, "empty object key"));
        }
        if decode_key(key).is_none() {
            return Err(malformed(line_no, "the URL-decoded key is not UTF-8"));
        }
        let version = version.filter(|v| !v.is_empty()).map(str::to_owned);
        match with_version {
            None => with_version = Some((version.is_some(), line_no)),
            Some((first, first_line)) if first != version.is_some() => {
                return Err(ManifestError {
                    code: "InvalidManifestContent",
                    reason: format!(
                        "Malformed manifest: either all rows or none must have a version ID; line {first_line} has {} and line {line_no} has {}",
                        if first { "one" } else { "none" },
                        if first { "none" } else { "one" }
                    ),
                });
            }
            Some(_) => {}
        }
        let bucket = match &last_bucket {
            Some(b) if &**b == bucket => b.clone(),
            _ => {
                let b: Arc<str> = Arc::from(bucket);
                last_bucket = Some(b.clone());
                b
            }
        };
        rows.push(TaskRow {
            bucket,
            key: key.to_owned(),
            version,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(rows: &[TaskRow]) -> Vec<(String, String, Option<String>)> {
        rows.iter()
            .map(|r| (r.bucket.to_string(), r.decoded_key(), r.version.clone()))
            .collect()
    }

    #[test]
    fn parses_rows_versions_and_quotes() {
        let rows = parse(b"b,a%20key\r\nb,plus+sign\n\n\"b\",\"q,\"\"x\"\"\"\n", None).expect("valid");
        assert_eq!(
            keys(&rows),
            vec![
                ("b".into(), "a key".into(), None),
                ("b".into(), "plus sign".into(), None),
                ("b".into(), "q,\"x\"".into(), None)
            ]
        );
        assert_eq!(rows[0].key, "a%20key");
        let rows = parse(b"b,k1,v1\nb,k2,v2", None).expect("valid");
        assert_eq!(rows[1].version.as_deref(), Some("v2"));
        let f = check_fields(&["Ignore".into(), "Key".into(), "Bucket".into()]).expect("fields");
        let rows = parse(b"x,k,b\n", Some(&f)).expect("valid");
        assert_eq!(keys(&rows), vec![("b".into(), "k".into(), None)]);
    }

    #[test]
    fn refuses_bad_lines() {
        let e = parse(b"b,k\nb\n", None).expect_err("one column");
        assert!(e.reason.contains("line 2"), "{}", e.reason);
        let e = parse(b"b,k,v\nb,k2\n", None).expect_err("mixed");
        assert!(e.reason.contains("version ID"), "{}", e.reason);
        let e = parse(b"b,\"k\n", None).expect_err("quote");
        assert!(e.reason.contains("line 1"), "{}", e.reason);
        let e = parse(b"b,%FF\n", None).expect_err("utf8");
        assert!(e.reason.contains("UTF-8"), "{}", e.reason);
        assert!(check_fields(&["Bucket".into()]).is_err());
        assert!(check_fields(&["Bucket".into(), "Key".into(), "Nope".into()]).is_err());
    }
}
