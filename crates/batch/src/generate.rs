//! `ManifestGenerator` (S3JobManifestGenerator): the job's tasks are the source bucket's
//! object versions its filter selects, read page by page through the
//! [`BatchObjects::list_versions`] port while the job is `Preparing`. Delete markers are
//! never listed. With `EnableManifestOutput` the generated manifest is written, before the
//! job leaves `Preparing`, as
//!
//! - `<ManifestPrefix>/job-<id>/data/<uuid>.csv`: `bucket,key,versionId` lines (keys
//!   URL-encoded, RFC 4180 quoting), the rows of the job in order;
//! - `<ManifestPrefix>/job-<id>/manifest.json`: an inventory-style manifest
//!   (`sourceBucket`, `destinationBucket`, `version`, `creationTimestamp`, `fileFormat`,
//!   `fileSchema`, `files[{key, size, MD5checksum}]`), which DescribeJob's
//!   `GeneratedManifestDescriptor` names with its ETag.
//!
//! A prepared job stores its rows like a manifest job's, so a restart never generates twice
//! once the job left `Preparing`; a restart during `Preparing` generates again (the output
//! objects are overwritten with the same content for an unchanged bucket).

use std::sync::Arc;

use bytes::Bytes;
use md5::{Digest as _, Md5};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::manifest::TaskRow;
use crate::model::{GeneratedManifest, GeneratorFilter, JobFailure, ManifestGenerator, bucket_of_arn};
use crate::ports::{BatchObjects, ListedVersion, PortError};
use crate::report::{csv_field, hex};

/// The only generated manifest format.
pub const GENERATED_FORMAT: &str = "S3InventoryReport_CSV_20211130";
/// Versions listed per port call.
const PAGE: usize = 1_000;

/// Characters kept as they are in an encoded key (as `urllib.parse.quote_plus` keeps them,
/// except that `/` stays too, which decoders accept either way).
const KEY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

fn failure(code: &str, reason: String) -> JobFailure {
    JobFailure {
        code: code.chars().take(64).collect(),
        reason: reason.chars().take(256).collect(),
    }
}

/// Whether `v` passes every member of `f` that is given.
pub(crate) fn selects(f: &GeneratorFilter, v: &ListedVersion) -> bool {
    if f.eligible_for_replication == Some(true) && !v.eligible {
        return false;
    }
    if f.created_after_ms.is_some_and(|t| v.last_modified_ms <= t) {
        return false;
    }
    if f.created_before_ms.is_some_and(|t| v.last_modified_ms >= t) {
        return false;
    }
    if let Some(statuses) = &f.object_replication_statuses {
        let status = v.replication_status.as_deref().unwrap_or("NONE");
        if !statuses.iter().any(|s| s == status) {
            return false;
        }
    }
    let any = |list: &Option<Vec<String>>, test: &dyn Fn(&str) -> bool| {
        list.as_ref().is_none_or(|l| l.iter().any(|s| test(s)))
    };
    if !any(&f.match_any_prefix, &|p| v.key.starts_with(p))
        || !any(&f.match_any_suffix, &|p| v.key.ends_with(p))
        || !any(&f.match_any_substring, &|p| v.key.contains(p))
        || !any(&f.match_any_storage_class, &|c| c == "STANDARD")
    {
        return false;
    }
    let size = i64::try_from(v.size).unwrap_or(i64::MAX);
    if f.size_greater_than.is_some_and(|n| size <= n) || f.size_less_than.is_some_and(|n| size >= n) {
        return false;
    }
    true
}

/// Lists and filters the source bucket into task rows; writes the generated manifest when
/// asked. `Err` is the job's failure reason.
pub(crate) async fn generate(
    objects: &Arc<dyn BatchObjects>,
    job_id: &str,
    role_arn: &str,
    g: &ManifestGenerator,
    now_ms: i64,
    max_tasks: u64,
) -> Result<(Vec<TaskRow>, Option<GeneratedManifest>), JobFailure> {
    let Some(bucket) = bucket_of_arn(&g.source_bucket) else {
        return Err(failure(
            "InvalidManifestGenerator",
            format!("The source bucket ARN {} is not an S3 bucket ARN.", g.source_bucket),
        ));
    };
    let filter = g.filter.clone().unwrap_or_default();
    let eligibility = filter.eligible_for_replication == Some(true);
    let shared: Arc<str> = Arc::from(bucket);
    let mut rows = Vec::new();
    let mut after = None;
    let port_failure = |e: PortError| {
        failure(
            &e.code,
            format!(
                "Generating the manifest failed: listing {bucket}: {}: {}",
                e.code, e.message
            ),
        )
    };
    loop {
        let page = objects
            .list_versions(role_arn, bucket, after.take(), PAGE, eligibility)
            .await
            .map_err(port_failure)?;
        for v in page.versions.iter().filter(|v| selects(&filter, v)) {
            rows.push(TaskRow {
                bucket: shared.clone(),
                key: utf8_percent_encode(&v.key, KEY_SET).to_string(),
                version: v.version_id.clone(),
            });
            if rows.len() as u64 > max_tasks {
                return Err(failure(
                    "ManifestTooLarge",
                    format!("The generated manifest has more than {max_tasks} objects."),
                ));
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if !g.enable_manifest_output {
        return Ok((rows, None));
    }
    let Some(out) = &g.output else {
        return Err(failure(
            "InvalidManifestGenerator",
            "ManifestOutputLocation is required when EnableManifestOutput is true.".into(),
        ));
    };
    let Some(out_bucket) = bucket_of_arn(&out.bucket) else {
        return Err(failure(
            "InvalidManifestGenerator",
            format!("The manifest output bucket ARN {} is not an S3 bucket ARN.", out.bucket),
        ));
    };
    let dir = match out
        .prefix
        .as_deref()
        .map(|p| p.trim_end_matches('/'))
        .filter(|p| !p.is_empty())
    {
        Some(p) => format!("{p}/job-{job_id}"),
        None => format!("job-{job_id}"),
    };
    let mut csv = String::new();
    for r in &rows {
        csv_field(&mut csv, &r.bucket);
        csv.push(',');
        csv_field(&mut csv, &r.key);
        csv.push(',');
        if let Some(v) = &r.version {
            csv_field(&mut csv, v);
        }
        csv.push('\n');
    }
    let data_key = format!("{dir}/data/{}.csv", uuid::Uuid::new_v4());
    let data_md5 = hex(&Md5::digest(csv.as_bytes()));
    let data_size = csv.len();
    let write_failure = |e: PortError| {
        failure(
            &e.code,
            format!(
                "Writing the generated manifest to {out_bucket} failed: {}: {}",
                e.code, e.message
            ),
        )
    };
    objects
        .put(role_arn, out_bucket, &data_key, Bytes::from(csv), "text/csv")
        .await
        .map_err(write_failure)?;
    let manifest = serde_json::json!({
        "sourceBucket": bucket,
        "destinationBucket": out.bucket,
        "version": "2021-11-30",
        "creationTimestamp": now_ms.to_string(),
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, VersionId",
        "files": [{"key": data_key, "size": data_size, "MD5checksum": data_md5}],
    });
    let body = serde_json::to_vec_pretty(&manifest).map_err(|e| failure("InternalError", e.to_string()))?;
    let etag = hex(&Md5::digest(&body));
    let manifest_key = format!("{dir}/manifest.json");
    objects
        .put(
            role_arn,
            out_bucket,
            &manifest_key,
            Bytes::from(body),
            "application/json",
        )
        .await
        .map_err(write_failure)?;
    Ok((
        rows,
        Some(GeneratedManifest {
            format: GENERATED_FORMAT.into(),
            object_arn: format!("arn:aws:s3:::{out_bucket}/{manifest_key}"),
            etag,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(key: &str, size: u64, status: Option<&str>, eligible: bool) -> ListedVersion {
        ListedVersion {
            key: key.into(),
            version_id: Some("v".into()),
            size,
            last_modified_ms: 1_000,
            replication_status: status.map(str::to_owned),
            eligible,
        }
    }

    #[test]
    fn filter_members_all_apply() {
        let none = GeneratorFilter::default();
        assert!(selects(&none, &v("a", 1, None, false)));
        let repl = GeneratorFilter {
            eligible_for_replication: Some(true),
            object_replication_statuses: Some(vec!["NONE".into(), "FAILED".into()]),
            ..GeneratorFilter::default()
        };
        assert!(selects(&repl, &v("a", 1, None, true)));
        assert!(selects(&repl, &v("a", 1, Some("FAILED"), true)));
        assert!(!selects(&repl, &v("a", 1, Some("COMPLETED"), true)));
        assert!(!selects(&repl, &v("a", 1, None, false)));
        let keys = GeneratorFilter {
            match_any_prefix: Some(vec!["logs/".into()]),
            match_any_suffix: Some(vec![".gz".into(), ".json".into()]),
            size_greater_than: Some(10),
            size_less_than: Some(100),
            created_after_ms: Some(500),
            created_before_ms: Some(2_000),
            ..GeneratorFilter::default()
        };
        assert!(selects(&keys, &v("logs/a.json", 50, None, false)));
        assert!(!selects(&keys, &v("logs/a.txt", 50, None, false)));
        assert!(!selects(&keys, &v("data/a.json", 50, None, false)));
        assert!(!selects(&keys, &v("logs/a.json", 10, None, false)));
        assert!(!selects(&keys, &v("logs/a.json", 100, None, false)));
        let later = GeneratorFilter {
            created_after_ms: Some(1_000),
            ..GeneratorFilter::default()
        };
        assert!(!selects(&later, &v("a", 1, None, false)));
        let glacier = GeneratorFilter {
            match_any_storage_class: Some(vec!["GLACIER".into()]),
            ..GeneratorFilter::default()
        };
        assert!(!selects(&glacier, &v("a", 1, None, false)));
    }

    #[test]
    fn encoded_keys_decode_back() {
        for key in ["a b/c+d.txt", "ünï/%2F", "x,y\"z"] {
            let enc = utf8_percent_encode(key, KEY_SET).to_string();
            assert!(!enc.contains(',') && !enc.contains(' ') && !enc.contains('+'));
            assert_eq!(crate::manifest::decode_key(&enc).as_deref(), Some(key));
        }
    }
}
