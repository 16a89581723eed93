//! The completion report (`Report_CSV_20180820`), written through
//! [`crate::BatchObjects::put`] as the job's role under `<Prefix>/job-<id>/`:
//!
//! * `results/<40 hex>.csv`: one file per [`crate::Config::report_chunk_rows`] rows, separate
//!   files for succeeded and failed tasks (only failed ones with `FailedTasksOnly`), in task
//!   order. Rows have no header and are quoted as RFC 4180 says (only fields holding `,`,
//!   `"`, CR or LF are quoted; quotes are doubled):
//!   `bucket,key,versionId,TaskStatus,HTTPStatusCode,ErrorCode,ResultMessage` — AWS's
//!   samples put the HTTP status before the result code, although `ReportSchema` lists them
//!   the other way round; the samples are followed. Keys appear as in the manifest.
//! * `manifest.json`, written last: format, creation date, every results file with its
//!   status and MD5, and the schema line.
//!
//! File names are derived from (job id, status, file number), so writing a report again
//! after a crash replaces the same objects.

use bytes::Bytes;
use md5::{Digest, Md5};

/// The `ReportSchema` line of `manifest.json`.
pub const REPORT_SCHEMA: &str = "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage";

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// `YYYY-MM-DDThh:mm:ss.sssZ` of epoch milliseconds.
pub fn iso8601_ms(ms: i64) -> String {
    let base = kd_storage::civil::format_iso8601(ms.div_euclid(1000));
    let frac = ms.rem_euclid(1000);
    match base.strip_suffix('Z') {
        Some(b) => format!("{b}.{frac:03}Z"),
        None => base,
    }
}

/// Appends `s` as one CSV field.
pub(crate) fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// One report row.
pub(crate) struct Row<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub version: Option<&'a str>,
    pub ok: bool,
    pub http: u16,
    pub code: &'a str,
    pub message: &'a str,
}

fn push_row(out: &mut String, r: &Row<'_>) {
    csv_field(out, r.bucket);
    out.push(',');
    csv_field(out, r.key);
    out.push(',');
    csv_field(out, r.version.unwrap_or_default());
    out.push(',');
    out.push_str(if r.ok { "succeeded" } else { "failed" });
    out.push(',');
    out.push_str(&r.http.to_string());
    out.push(',');
    csv_field(out, r.code);
    out.push(',');
    csv_field(out, r.message);
    out.push('\n');
}

/// A finished results file.
#[derive(Debug, Clone)]
pub(crate) struct ResultsFile {
    pub key: String,
    pub body: Bytes,
}

struct Part {
    succeeded: bool,
    buf: String,
    rows: usize,
    files: u64,
}

/// Builds the results files row by row; full files are taken out with [`Builder::take`] so
/// memory stays bounded by two files.
pub(crate) struct Builder {
    job_id: String,
    base: String,
    rows_per_file: usize,
    failed_only: bool,
    parts: [Part; 2],
    ready: Vec<ResultsFile>,
    listed: Vec<(bool, String, String)>,
}

impl Builder {
    /// A report of `job_id` under `prefix` (`None`: the bucket's root).
    pub fn new(job_id: &str, prefix: Option<&str>, rows_per_file: usize, failed_only: bool) -> Builder {
        let base = match prefix.map(|p| p.trim_end_matches('/')).filter(|p| !p.is_empty()) {
            Some(p) => format!("{p}/job-{job_id}/"),
            None => format!("job-{job_id}/"),
        };
        let part = |succeeded| Part {
            succeeded,
            buf: String::new(),
            rows: 0,
            files: 0,
        };
        Builder {
            job_id: job_id.to_owned(),
            base,
            rows_per_file: rows_per_file.max(1),
            failed_only,
            parts: [part(true), part(false)],
            ready: Vec::new(),
            listed: Vec::new(),
        }
    }

    /// `<prefix>/job-<id>/manifest.json`.
    pub fn manifest_key(&self) -> String {
        format!("{}manifest.json", self.base)
    }

    /// Adds one task's row.
    pub fn push(&mut self, row: &Row<'_>) {
        if self.failed_only && row.ok {
            return;
        }
        let i = usize::from(!row.ok);
        push_row(&mut self.parts[i].buf, row);
        self.parts[i].rows += 1;
        if self.parts[i].rows >= self.rows_per_file {
            self.seal(i);
        }
    }

    fn seal(&mut self, i: usize) {
        let part = &mut self.parts[i];
        if part.rows == 0 {
            return;
        }
        let status = if part.succeeded { "succeeded" } else { "failed" };
        let name = {
            let mut h = sha1::Sha1::new();
            sha1::Digest::update(&mut h, format!("{}/{status}/{}", self.job_id, part.files).as_bytes());
            hex(&sha1::Digest::finalize(h))
        };
        part.files += 1;
        part.rows = 0;
        let body = Bytes::from(std::mem::take(&mut part.buf));
        let md5_hex = hex(&Md5::digest(&body));
        let key = format!("{}results/{name}.csv", self.base);
        self.listed.push((part.succeeded, key.clone(), md5_hex));
        self.ready.push(ResultsFile { key, body });
    }

    /// The files completed so far (to write now).
    pub fn take(&mut self) -> Vec<ResultsFile> {
        std::mem::take(&mut self.ready)
    }

    /// Seals the open files; returns them (to write) and the `manifest.json` body naming
    /// every file, succeeded ones first.
    pub fn finish(mut self, bucket: &str, now_ms: i64) -> (Vec<ResultsFile>, Bytes) {
        self.seal(0);
        self.seal(1);
        let mut listed = std::mem::take(&mut self.listed);
        listed.sort_by_key(|(ok, _, _)| !*ok);
        let q = |s: &str| serde_json::Value::from(s).to_string();
        let results: Vec<String> = listed
            .iter()
            .map(|(ok, key, md5)| {
                format!(
                    "{{\"TaskExecutionStatus\":{},\"Bucket\":{},\"MD5Checksum\":{},\"Key\":{}}}",
                    q(if *ok { "succeeded" } else { "failed" }),
                    q(bucket),
                    q(md5),
                    q(key)
                )
            })
            .collect();
        let manifest = format!(
            "{{\"Format\":\"Report_CSV_20180820\",\"ReportCreationDate\":{},\"Results\":[{}],\"ReportSchema\":{}}}",
            q(&iso8601_ms(now_ms)),
            results.join(","),
            q(REPORT_SCHEMA)
        );
        (self.take(), Bytes::from(manifest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_quoted_as_rfc4180() {
        let mut s = String::new();
        push_row(
            &mut s,
            &Row {
                bucket: "b",
                key: "k%2Cx",
                version: None,
                ok: false,
                http: 200,
                code: "PermanentFailure",
                message: "Lambda returned function error: {\"errorMessage\":\"a, b\"}",
            },
        );
        assert_eq!(
            s,
            "b,k%2Cx,,failed,200,PermanentFailure,\"Lambda returned function error: {\"\"errorMessage\"\":\"\"a, b\"\"}\"\n"
        );
        assert_eq!(iso8601_ms(1_554_486_519_725), "2019-04-05T17:48:39.725Z");
    }

    #[test]
    fn files_split_by_status_and_size() {
        let mut b = Builder::new("j", Some("pre/"), 2, false);
        for i in 0..5 {
            let key = format!("k{i}");
            b.push(&Row {
                bucket: "b",
                key: &key,
                version: Some("v"),
                ok: i != 1,
                http: 200,
                code: "",
                message: "Successful",
            });
        }
        let early = b.take();
        assert_eq!(early.len(), 2, "two full files of succeeded rows");
        assert!(early[0].key.starts_with("pre/job-j/results/"));
        let name = early[0].key.rsplit('/').next().unwrap_or_default();
        assert_eq!(name.len(), 44);
        let (rest, manifest) = b.finish("reports", 0);
        assert_eq!(rest.len(), 1, "the open file of failed rows");
        let m: serde_json::Value = serde_json::from_slice(&manifest).expect("json");
        assert_eq!(m["Results"].as_array().map(Vec::len), Some(3));
        assert_eq!(m["Results"][2]["TaskExecutionStatus"], "failed");
        assert_eq!(m["ReportSchema"], REPORT_SCHEMA);
    }
}
