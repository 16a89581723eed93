//! S3 Control's job shapes on the wire: CreateJobRequest / PutJobTaggingRequest bodies in,
//! job descriptors out. Modeled constraints (lengths, patterns, enums, ranges) are collected
//! in a [`Validator`] (answered as `InvalidRequest`); requests the engine cannot run are
//! `BadRequestException`.

use std::collections::BTreeMap;

use kd_batch::{
    CopyObject, GeneratorFilter, JobInfo, JobSpec, JobSummary, LambdaInvoke, Manifest, ManifestGenerator,
    ManifestOutput, ObjectMetadata, Operation, Progress, PutTagging, Report, Tag,
};
use kd_wire::ServiceError;
use kd_wire::validate::Validator;

use crate::xml::{Element, Writer};

/// `S3StorageClass`.
const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "GLACIER",
    "INTELLIGENT_TIERING",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
];
/// `S3CannedAccessControlList`.
const CANNED_ACLS: &[&str] = &[
    "private",
    "public-read",
    "public-read-write",
    "aws-exec-read",
    "authenticated-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
];
/// `S3ChecksumAlgorithm`.
const CHECKSUM_ALGORITHMS: &[&str] = &[
    "CRC32",
    "CRC32C",
    "SHA1",
    "SHA256",
    "CRC64NVME",
    "SHA512",
    "MD5",
    "XXHASH64",
    "XXHASH3",
    "XXHASH128",
];
/// `JobOperation` members kinesis-data does not run.
const UNSUPPORTED_OPERATIONS: &[&str] = &[
    "S3PutObjectAcl",
    "S3InitiateRestoreObject",
    "S3PutObjectLegalHold",
    "S3PutObjectRetention",
    "S3ComputeObjectChecksum",
    "S3UpdateObjectEncryption",
];
/// `S3CopyObjectOperation` members kinesis-data cannot honour.
const UNSUPPORTED_COPY_MEMBERS: &[&str] = &[
    "AccessControlGrants",
    "ModifiedSinceConstraint",
    "UnModifiedSinceConstraint",
    "RedirectLocation",
    "SSEAwsKmsKeyId",
    "ObjectLockLegalHoldStatus",
    "ObjectLockMode",
    "ObjectLockRetainUntilDate",
];

/// A BadRequestException.
pub fn bad_request(msg: impl Into<String>) -> ServiceError {
    ServiceError::client("BadRequestException", msg)
}

/// `^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$`.
pub fn is_tag_text(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_alphanumeric() || c == ' ' || c.is_whitespace() || "_.:/=+-@".contains(c))
}

/// `arn:[^:]+:iam::\d{12}:role/.*`.
pub fn is_role_arn(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("arn:") else {
        return false;
    };
    let Some((partition, rest)) = rest.split_once(':') else {
        return false;
    };
    let Some(rest) = rest.strip_prefix("iam::") else {
        return false;
    };
    let Some((account, rest)) = rest.split_once(':') else {
        return false;
    };
    !partition.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && rest.starts_with("role/")
}

/// `arn:[^:]+:s3:.*` (`s3express` too when `express`).
pub fn is_s3_arn(s: &str, express: bool) -> bool {
    let Some(rest) = s.strip_prefix("arn:") else {
        return false;
    };
    let Some((partition, rest)) = rest.split_once(':') else {
        return false;
    };
    !partition.is_empty() && (rest.starts_with("s3:") || (express && rest.starts_with("s3express:")))
}

fn is_function_arn(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'$' | b'.'))
}

fn text(el: &Element, name: &str) -> Option<String> {
    el.text_of(name).map(str::to_owned)
}

fn boolean(v: &mut Validator, el: &Element, name: &str, field: &str) -> Option<bool> {
    match el.text_of(name).map(str::trim) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            v.fail(other, field, "Member must be a boolean (true or false)");
            None
        }
    }
}

fn integer(v: &mut Validator, el: &Element, name: &str, field: &str) -> Option<i64> {
    let t = el.text_of(name)?.trim();
    match t.parse::<i64>() {
        Ok(n) => Some(n),
        Err(_) => {
            v.fail(t, field, "Member must be an integer");
            None
        }
    }
}

/// An `S3TagSet` (`<member><Key/><Value/></member>…`).
pub fn tag_set(v: &mut Validator, el: &Element, field: &str) -> Vec<Tag> {
    let mut out = Vec::new();
    for (i, m) in el.all("member").enumerate() {
        let f = format!("{field}.{}", i + 1);
        let key = text(m, "Key");
        let value = text(m, "Value");
        v.required(&key, &format!("{f}.Key"));
        v.required(&value, &format!("{f}.Value"));
        v.length(key.as_deref(), &format!("{f}.Key"), 1, 128);
        v.pattern(
            key.as_deref(),
            &format!("{f}.Key"),
            is_tag_text,
            "^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)$",
        );
        v.length(value.as_deref(), &format!("{f}.Value"), 0, 256);
        v.pattern(
            value.as_deref(),
            &format!("{f}.Value"),
            is_tag_text,
            "^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)$",
        );
        out.push(Tag {
            key: key.unwrap_or_default(),
            value: value.unwrap_or_default(),
        });
    }
    out
}

/// A map (`<entry><key/><value/></entry>…`).
fn map(
    v: &mut Validator,
    el: &Element,
    field: &str,
    key_len: (usize, usize),
    value_max: usize,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in el.all("entry") {
        let key = text(e, "key");
        let value = text(e, "value");
        v.required(&key, &format!("{field}.key"));
        v.length(key.as_deref(), &format!("{field}.key"), key_len.0, key_len.1);
        v.length(value.as_deref(), &format!("{field}.value"), 0, value_max);
        out.insert(key.unwrap_or_default(), value.unwrap_or_default());
    }
    out
}

fn lambda(v: &mut Validator, el: &Element) -> Result<LambdaInvoke, ServiceError> {
    let f = "Operation.LambdaInvoke";
    let function_arn = text(el, "FunctionArn");
    v.required(&function_arn, &format!("{f}.FunctionArn"));
    v.length(function_arn.as_deref(), &format!("{f}.FunctionArn"), 1, 1024);
    v.pattern(
        function_arn.as_deref(),
        &format!("{f}.FunctionArn"),
        is_function_arn,
        "(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?",
    );
    let version = text(el, "InvocationSchemaVersion");
    v.length(version.as_deref(), &format!("{f}.InvocationSchemaVersion"), 1, 64);
    let user_arguments = match el.child("UserArguments") {
        None => None,
        Some(a) => {
            let m = map(v, a, &format!("{f}.UserArguments"), (1, 64), 1024);
            let n = a.all("entry").count();
            if !(1..=10).contains(&n) {
                v.fail_no_value(
                    &format!("{f}.UserArguments"),
                    "Member must have length between 1 and 10",
                );
            }
            Some(m)
        }
    };
    if let Some(ver) = version.as_deref()
        && ver != "1.0"
        && ver != "2.0"
    {
        return Err(bad_request(format!(
            "InvocationSchemaVersion {ver} is not supported; use 1.0 or 2.0."
        )));
    }
    if user_arguments.is_some() && version.as_deref() != Some("2.0") {
        return Err(bad_request("UserArguments requires InvocationSchemaVersion 2.0."));
    }
    Ok(LambdaInvoke {
        function_arn: function_arn.unwrap_or_default(),
        invocation_schema_version: version,
        user_arguments,
    })
}

fn metadata(v: &mut Validator, el: &Element, f: &str) -> ObjectMetadata {
    let s = |v: &mut Validator, name: &str| {
        let t = text(el, name);
        v.length(t.as_deref(), &format!("{f}.{name}"), 1, 1024);
        t
    };
    let m = ObjectMetadata {
        cache_control: s(v, "CacheControl"),
        content_disposition: s(v, "ContentDisposition"),
        content_encoding: s(v, "ContentEncoding"),
        content_language: s(v, "ContentLanguage"),
        content_type: s(v, "ContentType"),
        content_md5: s(v, "ContentMD5"),
        user_metadata: el
            .child("UserMetadata")
            .map(|u| map(v, u, &format!("{f}.UserMetadata"), (1, 1024), 1024)),
        content_length: integer(v, el, "ContentLength", &format!("{f}.ContentLength")),
        http_expires_date: text(el, "HttpExpiresDate"),
        requester_charged: boolean(v, el, "RequesterCharged", &format!("{f}.RequesterCharged")),
        sse_algorithm: text(el, "SSEAlgorithm"),
    };
    v.range(m.content_length, &format!("{f}.ContentLength"), 0, i64::MAX);
    v.one_of(
        m.sse_algorithm.as_deref(),
        &format!("{f}.SSEAlgorithm"),
        &["AES256", "KMS"],
    );
    if m.user_metadata.as_ref().is_some_and(|u| u.len() > 8192) {
        v.fail_no_value(
            &format!("{f}.UserMetadata"),
            "Member must have length less than or equal to 8192",
        );
    }
    m
}

fn copy(v: &mut Validator, el: &Element) -> Result<CopyObject, ServiceError> {
    let f = "Operation.S3PutObjectCopy";
    if let Some(m) = UNSUPPORTED_COPY_MEMBERS.iter().find(|m| el.child(m).is_some()) {
        return Err(bad_request(format!(
            "S3PutObjectCopy.{m} is not supported by kinesis-data."
        )));
    }
    let c = CopyObject {
        target_resource: text(el, "TargetResource"),
        target_key_prefix: text(el, "TargetKeyPrefix"),
        metadata_directive: text(el, "MetadataDirective"),
        new_object_metadata: el
            .child("NewObjectMetadata")
            .map(|m| metadata(v, m, &format!("{f}.NewObjectMetadata"))),
        new_object_tagging: el
            .child("NewObjectTagging")
            .map(|t| tag_set(v, t, &format!("{f}.NewObjectTagging"))),
        storage_class: text(el, "StorageClass"),
        canned_access_control_list: text(el, "CannedAccessControlList"),
        requester_pays: boolean(v, el, "RequesterPays", &format!("{f}.RequesterPays")),
        bucket_key_enabled: boolean(v, el, "BucketKeyEnabled", &format!("{f}.BucketKeyEnabled")),
        checksum_algorithm: text(el, "ChecksumAlgorithm"),
    };
    v.length(c.target_resource.as_deref(), &format!("{f}.TargetResource"), 1, 128);
    v.pattern(
        c.target_resource.as_deref(),
        &format!("{f}.TargetResource"),
        |s| is_s3_arn(s, true),
        "arn:[^:]+:(s3|s3express):.*",
    );
    v.length(c.target_key_prefix.as_deref(), &format!("{f}.TargetKeyPrefix"), 1, 1024);
    v.one_of(
        c.metadata_directive.as_deref(),
        &format!("{f}.MetadataDirective"),
        &["COPY", "REPLACE"],
    );
    v.one_of(
        c.storage_class.as_deref(),
        &format!("{f}.StorageClass"),
        STORAGE_CLASSES,
    );
    v.one_of(
        c.canned_access_control_list.as_deref(),
        &format!("{f}.CannedAccessControlList"),
        CANNED_ACLS,
    );
    v.one_of(
        c.checksum_algorithm.as_deref(),
        &format!("{f}.ChecksumAlgorithm"),
        CHECKSUM_ALGORITHMS,
    );
    if c.target_resource.is_none() {
        return Err(bad_request(
            "S3PutObjectCopy requires TargetResource (the destination bucket's ARN).",
        ));
    }
    Ok(c)
}

fn operation(v: &mut Validator, el: &Element) -> Result<Operation, ServiceError> {
    let [op] = el.children.as_slice() else {
        return Err(bad_request(
            "Exactly one operation must be specified in the job's Operation.",
        ));
    };
    match op.name.as_str() {
        "LambdaInvoke" => Ok(Operation::LambdaInvoke(lambda(v, op)?)),
        "S3PutObjectCopy" => Ok(Operation::S3PutObjectCopy(Box::new(copy(v, op)?))),
        "S3PutObjectTagging" => Ok(Operation::S3PutObjectTagging(PutTagging {
            tag_set: op
                .child("TagSet")
                .map(|t| tag_set(v, t, "Operation.S3PutObjectTagging.TagSet")),
        })),
        "S3DeleteObjectTagging" => Ok(Operation::S3DeleteObjectTagging),
        "S3ReplicateObject" => Ok(Operation::S3ReplicateObject),
        name if UNSUPPORTED_OPERATIONS.contains(&name) => Err(bad_request(format!(
            "The operation {name} is not supported by kinesis-data yet."
        ))),
        name => Err(bad_request(format!("Unknown operation {name}."))),
    }
}

/// A timestamp member (`2024-01-31T12:00:00Z`, fractions allowed) in ms.
fn timestamp(v: &mut Validator, el: &Element, name: &str, field: &str) -> Option<i64> {
    let t = el.text_of(name)?.trim();
    let (whole, frac) = match t.strip_suffix('Z').and_then(|x| x.split_once('.')) {
        Some((w, f)) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => (format!("{w}Z"), f),
        _ => (t.to_owned(), ""),
    };
    match kd_storage::civil::parse_iso8601(&whole) {
        Some(secs) => {
            let ms: i64 = format!("{frac:0<3}").get(..3).and_then(|x| x.parse().ok()).unwrap_or(0);
            Some(secs * 1000 + ms)
        }
        None => {
            v.fail(t, field, "Member must be a timestamp (yyyy-MM-ddTHH:mm:ssZ)");
            None
        }
    }
}

/// A list of strings (`<member>…</member>…`).
fn strings(el: &Element, name: &str) -> Option<Vec<String>> {
    el.child(name)
        .map(|l| l.all("member").map(|m| m.text.clone()).collect())
}

/// `JobManifestGenerator` (its `S3JobManifestGenerator`).
fn manifest_generator(v: &mut Validator, el: &Element) -> Result<ManifestGenerator, ServiceError> {
    let Some(g) = el.child("S3JobManifestGenerator") else {
        return Err(bad_request("ManifestGenerator must contain S3JobManifestGenerator."));
    };
    let f = "ManifestGenerator.S3JobManifestGenerator";
    let source_bucket = text(g, "SourceBucket");
    v.required(&source_bucket, &format!("{f}.SourceBucket"));
    v.pattern(
        source_bucket.as_deref(),
        &format!("{f}.SourceBucket"),
        |s| is_s3_arn(s, false),
        "arn:[^:]+:s3:.*",
    );
    let enable = boolean(v, g, "EnableManifestOutput", &format!("{f}.EnableManifestOutput"));
    if g.child("EnableManifestOutput").is_none() {
        v.required::<bool>(&None, &format!("{f}.EnableManifestOutput"));
    }
    let expected_bucket_owner = text(g, "ExpectedBucketOwner");
    let output = g.child("ManifestOutputLocation").map(|o| {
        let of = format!("{f}.ManifestOutputLocation");
        let out = ManifestOutput {
            bucket: text(o, "Bucket").unwrap_or_default(),
            prefix: text(o, "ManifestPrefix"),
            format: text(o, "ManifestFormat").unwrap_or_default(),
            expected_owner: text(o, "ExpectedManifestBucketOwner"),
            encryption: o.child("ManifestEncryption").and_then(|e| {
                if e.child("SSEKMS").is_some() {
                    Some("SSEKMS".to_owned())
                } else if e.child("SSES3").is_some() {
                    Some("SSES3".to_owned())
                } else {
                    None
                }
            }),
            kms_key_id: o
                .child("ManifestEncryption")
                .and_then(|e| e.child("SSEKMS"))
                .and_then(|k| text(k, "KeyId")),
        };
        if o.child("Bucket").is_none() {
            v.required::<()>(&None, &format!("{of}.Bucket"));
        }
        if o.child("ManifestFormat").is_none() {
            v.required::<()>(&None, &format!("{of}.ManifestFormat"));
        }
        v.one_of(
            Some(out.format.as_str()).filter(|s| !s.is_empty()),
            &format!("{of}.ManifestFormat"),
            &[kd_batch::GENERATED_FORMAT],
        );
        v.length(out.prefix.as_deref(), &format!("{of}.ManifestPrefix"), 1, 512);
        out
    });
    let filter = g.child("Filter").map(|x| {
        let ff = format!("{f}.Filter");
        let keys = x.child("KeyNameConstraint");
        let filter = GeneratorFilter {
            eligible_for_replication: boolean(v, x, "EligibleForReplication", &format!("{ff}.EligibleForReplication")),
            created_after_ms: timestamp(v, x, "CreatedAfter", &format!("{ff}.CreatedAfter")),
            created_before_ms: timestamp(v, x, "CreatedBefore", &format!("{ff}.CreatedBefore")),
            object_replication_statuses: strings(x, "ObjectReplicationStatuses"),
            match_any_prefix: keys.and_then(|k| strings(k, "MatchAnyPrefix")),
            match_any_suffix: keys.and_then(|k| strings(k, "MatchAnySuffix")),
            match_any_substring: keys.and_then(|k| strings(k, "MatchAnySubstring")),
            size_greater_than: integer(
                v,
                x,
                "ObjectSizeGreaterThanBytes",
                &format!("{ff}.ObjectSizeGreaterThanBytes"),
            ),
            size_less_than: integer(
                v,
                x,
                "ObjectSizeLessThanBytes",
                &format!("{ff}.ObjectSizeLessThanBytes"),
            ),
            match_any_storage_class: strings(x, "MatchAnyStorageClass"),
        };
        for (i, st) in filter.object_replication_statuses.iter().flatten().enumerate() {
            v.one_of(
                Some(st.as_str()),
                &format!("{ff}.ObjectReplicationStatuses.{}", i + 1),
                &["COMPLETED", "FAILED", "REPLICA", "NONE"],
            );
        }
        for (i, c) in filter.match_any_storage_class.iter().flatten().enumerate() {
            v.one_of(
                Some(c.as_str()),
                &format!("{ff}.MatchAnyStorageClass.{}", i + 1),
                STORAGE_CLASSES,
            );
        }
        filter
    });
    if g.child("Filter")
        .and_then(|x| x.child("MatchAnyObjectEncryption"))
        .is_some()
    {
        return Err(bad_request(
            "ManifestGenerator.S3JobManifestGenerator.Filter.MatchAnyObjectEncryption is not supported by kinesis-data.",
        ));
    }
    let enable = enable.unwrap_or(false);
    if enable && output.is_none() {
        return Err(bad_request(
            "ManifestOutputLocation is required when EnableManifestOutput is true.",
        ));
    }
    Ok(ManifestGenerator {
        source_bucket: source_bucket.unwrap_or_default(),
        expected_bucket_owner,
        enable_manifest_output: enable,
        output,
        filter,
    })
}

fn report(v: &mut Validator, el: &Element) -> Report {
    let f = "Report";
    let enabled = boolean(v, el, "Enabled", "Report.Enabled");
    if el.child("Enabled").is_none() {
        v.required::<bool>(&None, "Report.Enabled");
    }
    let r = Report {
        enabled: enabled.unwrap_or(false),
        bucket: text(el, "Bucket"),
        format: text(el, "Format"),
        prefix: text(el, "Prefix"),
        report_scope: text(el, "ReportScope"),
        expected_bucket_owner: text(el, "ExpectedBucketOwner"),
    };
    v.length(r.bucket.as_deref(), &format!("{f}.Bucket"), 1, 128);
    v.pattern(
        r.bucket.as_deref(),
        &format!("{f}.Bucket"),
        |s| is_s3_arn(s, false),
        "arn:[^:]+:s3:.*",
    );
    v.one_of(r.format.as_deref(), &format!("{f}.Format"), &["Report_CSV_20180820"]);
    v.length(r.prefix.as_deref(), &format!("{f}.Prefix"), 1, 512);
    v.one_of(
        r.report_scope.as_deref(),
        &format!("{f}.ReportScope"),
        &["AllTasks", "FailedTasksOnly"],
    );
    v.pattern(
        r.expected_bucket_owner.as_deref(),
        &format!("{f}.ExpectedBucketOwner"),
        |s| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()),
        "^\\d{12}$",
    );
    if r.enabled {
        v.required(&r.bucket, "Report.Bucket");
        v.required(&r.format, "Report.Format");
    }
    r
}

fn manifest(v: &mut Validator, el: &Element) -> Manifest {
    let spec = el.child("Spec");
    let loc = el.child("Location");
    if spec.is_none() {
        v.required::<()>(&None, "Manifest.Spec");
    }
    if loc.is_none() {
        v.required::<()>(&None, "Manifest.Location");
    }
    let format = spec.and_then(|s| text(s, "Format"));
    let fields: Option<Vec<String>> = spec
        .and_then(|s| s.child("Fields"))
        .map(|f| f.all("member").map(|m| m.text.clone()).collect());
    let object_arn = loc.and_then(|l| text(l, "ObjectArn"));
    let version = loc.and_then(|l| text(l, "ObjectVersionId"));
    let etag = loc.and_then(|l| text(l, "ETag"));
    if spec.is_some() {
        v.required(&format, "Manifest.Spec.Format");
    }
    v.one_of(
        format.as_deref(),
        "Manifest.Spec.Format",
        &["S3BatchOperations_CSV_20180820", "S3InventoryReport_CSV_20161130"],
    );
    for (i, f) in fields.iter().flatten().enumerate() {
        v.one_of(
            Some(f),
            &format!("Manifest.Spec.Fields.{}", i + 1),
            &["Ignore", "Bucket", "Key", "VersionId"],
        );
    }
    if loc.is_some() {
        v.required(&object_arn, "Manifest.Location.ObjectArn");
        v.required(&etag, "Manifest.Location.ETag");
    }
    v.length(object_arn.as_deref(), "Manifest.Location.ObjectArn", 1, 2000);
    v.pattern(
        object_arn.as_deref(),
        "Manifest.Location.ObjectArn",
        |s| is_s3_arn(s, false),
        "arn:[^:]+:s3:.*",
    );
    v.length(version.as_deref(), "Manifest.Location.ObjectVersionId", 1, 2000);
    v.length(etag.as_deref(), "Manifest.Location.ETag", 1, 1024);
    Manifest {
        format: format.unwrap_or_default(),
        fields,
        object_arn: object_arn.unwrap_or_default(),
        object_version_id: version,
        etag: etag.unwrap_or_default(),
    }
}

/// A `CreateJobRequest` body: the spec, or the error to answer.
pub fn create_job_request(root: &Element) -> Result<JobSpec, ServiceError> {
    if root.name != "CreateJobRequest" {
        return Err(malformed());
    }
    let mut v = Validator::default();
    let token = text(root, "ClientRequestToken");
    v.required(&token, "ClientRequestToken");
    v.length(token.as_deref(), "ClientRequestToken", 1, 64);
    let confirmation = boolean(&mut v, root, "ConfirmationRequired", "ConfirmationRequired");
    let priority = integer(&mut v, root, "Priority", "Priority");
    if root.child("Priority").is_none() {
        v.required::<i64>(&None, "Priority");
    }
    v.range(priority, "Priority", 0, 2_147_483_647);
    let role_arn = text(root, "RoleArn");
    v.required(&role_arn, "RoleArn");
    v.length(role_arn.as_deref(), "RoleArn", 1, 2048);
    v.pattern(
        role_arn.as_deref(),
        "RoleArn",
        is_role_arn,
        "arn:[^:]+:iam::\\d{12}:role/.*",
    );
    let description = text(root, "Description");
    v.length(description.as_deref(), "Description", 1, 256);
    let tags = root
        .child("Tags")
        .map(|t| tag_set(&mut v, t, "Tags"))
        .unwrap_or_default();
    if tags.len() > 50 {
        v.fail_no_value("Tags", "Member must have length less than or equal to 50");
    }
    let report = match root.child("Report") {
        Some(r) => report(&mut v, r),
        None => {
            v.required::<()>(&None, "Report");
            Report::default()
        }
    };
    let manifest = root.child("Manifest").map(|m| manifest(&mut v, m));
    let generator = root.child("ManifestGenerator").map(|g| manifest_generator(&mut v, g));
    let op_el = root.child("Operation");
    if op_el.is_none() {
        v.required::<()>(&None, "Operation");
    }
    let operation = op_el.map(|o| operation(&mut v, o));
    v.finish().map_err(invalid_request)?;
    let operation = match operation {
        Some(op) => op?,
        None => return Err(bad_request("Operation is required.")),
    };
    let generator = generator.transpose()?;
    let (manifest, generator) = match (manifest, generator) {
        (Some(_), Some(_)) => {
            return Err(bad_request(
                "A job takes either a Manifest or a ManifestGenerator, not both.",
            ));
        }
        (None, None) => return Err(bad_request("A Manifest or a ManifestGenerator is required.")),
        (None, Some(g)) => (None, Some(g)),
        (Some(m), None) => (Some(m), None),
    };
    let Some(manifest) = manifest else {
        if report.enabled && report.bucket.as_deref().and_then(kd_batch::bucket_of_arn).is_none() {
            return Err(bad_request(
                "Report.Bucket must be an S3 bucket ARN (arn:aws:s3:::bucket).",
            ));
        }
        return Ok(JobSpec {
            client_request_token: token.unwrap_or_default(),
            confirmation_required: confirmation.unwrap_or(false),
            operation,
            report,
            manifest: Manifest::default(),
            manifest_generator: generator,
            description,
            priority: priority.and_then(|p| i32::try_from(p).ok()).unwrap_or_default(),
            role_arn: role_arn.unwrap_or_default(),
            tags,
        });
    };
    if manifest.format != "S3BatchOperations_CSV_20180820" {
        return Err(bad_request(format!(
            "Manifest format {} is not supported by kinesis-data; use S3BatchOperations_CSV_20180820.",
            manifest.format
        )));
    }
    if let Some(f) = &manifest.fields {
        kd_batch::manifest::check_fields(f).map_err(bad_request)?;
    }
    if kd_batch::object_of_arn(&manifest.object_arn).is_none() {
        return Err(bad_request(format!(
            "Manifest.Location.ObjectArn {} is not an S3 object ARN (arn:aws:s3:::bucket/key).",
            manifest.object_arn
        )));
    }
    if report.enabled && report.bucket.as_deref().and_then(kd_batch::bucket_of_arn).is_none() {
        return Err(bad_request(
            "Report.Bucket must be an S3 bucket ARN (arn:aws:s3:::bucket).",
        ));
    }
    Ok(JobSpec {
        client_request_token: token.unwrap_or_default(),
        confirmation_required: confirmation.unwrap_or(false),
        operation,
        report,
        manifest,
        manifest_generator: None,
        description,
        priority: priority.and_then(|p| i32::try_from(p).ok()).unwrap_or_default(),
        role_arn: role_arn.unwrap_or_default(),
        tags,
    })
}

/// A `PutJobTaggingRequest` body: the tags.
pub fn put_job_tagging_request(root: &Element) -> Result<Vec<Tag>, ServiceError> {
    if root.name != "PutJobTaggingRequest" {
        return Err(malformed());
    }
    let mut v = Validator::default();
    let Some(t) = root.child("Tags") else {
        v.required::<()>(&None, "Tags");
        v.finish().map_err(invalid_request)?;
        return Ok(Vec::new());
    };
    let tags = tag_set(&mut v, t, "Tags");
    v.finish().map_err(invalid_request)?;
    Ok(tags)
}

/// A collected validation failure as S3 Control's `InvalidRequest`.
pub fn invalid_request(e: ServiceError) -> ServiceError {
    ServiceError::client("InvalidRequest", e.message)
}

/// The body is not the XML the operation takes.
pub fn malformed() -> ServiceError {
    ServiceError::client(
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published schema",
    )
}

// ---------------------------------------------------------------- rendering

fn iso(ms: i64) -> String {
    kd_batch::report::iso8601_ms(ms)
}

fn write_tags(w: &mut Writer, name: &str, tags: &[Tag]) {
    w.open(name);
    for t in tags {
        w.open("member")
            .leaf("Key", &t.key)
            .leaf("Value", &t.value)
            .close("member");
    }
    w.close(name);
}

fn write_map(w: &mut Writer, name: &str, m: &BTreeMap<String, String>) {
    w.open(name);
    for (k, v) in m {
        w.open("entry").leaf("key", k).leaf("value", v).close("entry");
    }
    w.close(name);
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// `JobOperation`.
pub fn write_operation(w: &mut Writer, op: &Operation) {
    w.open("Operation");
    match op {
        Operation::LambdaInvoke(l) => {
            w.open("LambdaInvoke")
                .leaf("FunctionArn", &l.function_arn)
                .opt("InvocationSchemaVersion", l.invocation_schema_version.as_deref());
            if let Some(a) = &l.user_arguments {
                write_map(w, "UserArguments", a);
            }
            w.close("LambdaInvoke");
        }
        Operation::S3PutObjectCopy(c) => {
            w.open("S3PutObjectCopy")
                .opt("TargetResource", c.target_resource.as_deref())
                .opt("CannedAccessControlList", c.canned_access_control_list.as_deref())
                .opt("MetadataDirective", c.metadata_directive.as_deref());
            if let Some(m) = &c.new_object_metadata {
                w.open("NewObjectMetadata")
                    .opt("CacheControl", m.cache_control.as_deref())
                    .opt("ContentDisposition", m.content_disposition.as_deref())
                    .opt("ContentEncoding", m.content_encoding.as_deref())
                    .opt("ContentLanguage", m.content_language.as_deref());
                if let Some(u) = &m.user_metadata {
                    write_map(w, "UserMetadata", u);
                }
                w.opt("ContentLength", m.content_length.map(|n| n.to_string()).as_deref())
                    .opt("ContentMD5", m.content_md5.as_deref())
                    .opt("ContentType", m.content_type.as_deref())
                    .opt("HttpExpiresDate", m.http_expires_date.as_deref())
                    .opt("RequesterCharged", m.requester_charged.map(bool_text))
                    .opt("SSEAlgorithm", m.sse_algorithm.as_deref())
                    .close("NewObjectMetadata");
            }
            if let Some(t) = &c.new_object_tagging {
                write_tags(w, "NewObjectTagging", t);
            }
            w.opt("RequesterPays", c.requester_pays.map(bool_text))
                .opt("StorageClass", c.storage_class.as_deref())
                .opt("TargetKeyPrefix", c.target_key_prefix.as_deref())
                .opt("BucketKeyEnabled", c.bucket_key_enabled.map(bool_text))
                .opt("ChecksumAlgorithm", c.checksum_algorithm.as_deref())
                .close("S3PutObjectCopy");
        }
        Operation::S3PutObjectTagging(t) => {
            w.open("S3PutObjectTagging");
            if let Some(tags) = &t.tag_set {
                write_tags(w, "TagSet", tags);
            }
            w.close("S3PutObjectTagging");
        }
        Operation::S3DeleteObjectTagging => {
            w.open("S3DeleteObjectTagging").close("S3DeleteObjectTagging");
        }
        Operation::S3ReplicateObject => {
            w.open("S3ReplicateObject").close("S3ReplicateObject");
        }
    }
    w.close("Operation");
}

fn write_progress(w: &mut Writer, p: &Progress) {
    w.open("ProgressSummary")
        .leaf("TotalNumberOfTasks", &p.total.to_string())
        .leaf("NumberOfTasksSucceeded", &p.succeeded.to_string())
        .leaf("NumberOfTasksFailed", &p.failed.to_string())
        .open("Timers")
        .leaf("ElapsedTimeInActiveSeconds", &p.elapsed_active_secs.to_string())
        .close("Timers")
        .close("ProgressSummary");
}

fn write_report(w: &mut Writer, r: &Report) {
    w.open("Report")
        .opt("Bucket", r.bucket.as_deref())
        .opt("Format", r.format.as_deref())
        .leaf("Enabled", bool_text(r.enabled))
        .opt("Prefix", r.prefix.as_deref())
        .opt("ReportScope", r.report_scope.as_deref())
        .opt("ExpectedBucketOwner", r.expected_bucket_owner.as_deref())
        .close("Report");
}

fn write_manifest(w: &mut Writer, m: &Manifest) {
    w.open("Manifest").open("Spec").leaf("Format", &m.format);
    if let Some(fields) = &m.fields {
        w.open("Fields");
        for f in fields {
            w.leaf("member", f);
        }
        w.close("Fields");
    }
    w.close("Spec")
        .open("Location")
        .leaf("ObjectArn", &m.object_arn)
        .opt("ObjectVersionId", m.object_version_id.as_deref())
        .leaf("ETag", &m.etag)
        .close("Location")
        .close("Manifest");
}

fn write_strings(w: &mut Writer, name: &str, list: Option<&Vec<String>>) {
    if let Some(list) = list {
        w.open(name);
        for s in list {
            w.leaf("member", s);
        }
        w.close(name);
    }
}

fn write_generator(w: &mut Writer, g: &ManifestGenerator) {
    w.open("ManifestGenerator")
        .open("S3JobManifestGenerator")
        .opt("ExpectedBucketOwner", g.expected_bucket_owner.as_deref())
        .leaf("SourceBucket", &g.source_bucket);
    if let Some(o) = &g.output {
        w.open("ManifestOutputLocation")
            .opt("ExpectedManifestBucketOwner", o.expected_owner.as_deref())
            .leaf("Bucket", &o.bucket)
            .opt("ManifestPrefix", o.prefix.as_deref());
        if let Some(e) = &o.encryption {
            w.open("ManifestEncryption").open(e);
            w.opt("KeyId", o.kms_key_id.as_deref());
            w.close(e).close("ManifestEncryption");
        }
        w.leaf("ManifestFormat", &o.format).close("ManifestOutputLocation");
    }
    if let Some(f) = &g.filter {
        w.open("Filter")
            .opt("EligibleForReplication", f.eligible_for_replication.map(bool_text))
            .opt("CreatedAfter", f.created_after_ms.map(iso).as_deref())
            .opt("CreatedBefore", f.created_before_ms.map(iso).as_deref());
        write_strings(w, "ObjectReplicationStatuses", f.object_replication_statuses.as_ref());
        if f.match_any_prefix.is_some() || f.match_any_suffix.is_some() || f.match_any_substring.is_some() {
            w.open("KeyNameConstraint");
            write_strings(w, "MatchAnyPrefix", f.match_any_prefix.as_ref());
            write_strings(w, "MatchAnySuffix", f.match_any_suffix.as_ref());
            write_strings(w, "MatchAnySubstring", f.match_any_substring.as_ref());
            w.close("KeyNameConstraint");
        }
        w.opt(
            "ObjectSizeGreaterThanBytes",
            f.size_greater_than.map(|n| n.to_string()).as_deref(),
        )
        .opt(
            "ObjectSizeLessThanBytes",
            f.size_less_than.map(|n| n.to_string()).as_deref(),
        );
        write_strings(w, "MatchAnyStorageClass", f.match_any_storage_class.as_ref());
        w.close("Filter");
    }
    w.leaf("EnableManifestOutput", bool_text(g.enable_manifest_output))
        .close("S3JobManifestGenerator")
        .close("ManifestGenerator");
}

/// `<DescribeJobResult><Job>…</Job></DescribeJobResult>`.
pub fn describe_job_result(j: &JobInfo) -> String {
    let mut w = Writer::new("DescribeJobResult");
    w.open("Job")
        .leaf("JobId", &j.id)
        .leaf("ConfirmationRequired", bool_text(j.confirmation_required))
        .opt("Description", j.description.as_deref())
        .leaf("JobArn", &j.arn)
        .leaf("Status", j.status.as_str());
    if j.manifest_generator.is_none() {
        write_manifest(&mut w, &j.manifest);
    }
    write_operation(&mut w, &j.operation);
    w.leaf("Priority", &j.priority.to_string());
    write_progress(&mut w, &j.progress);
    w.opt("StatusUpdateReason", j.status_update_reason.as_deref());
    if !j.failure_reasons.is_empty() {
        w.open("FailureReasons");
        for f in &j.failure_reasons {
            w.open("member")
                .leaf("FailureCode", &f.code)
                .leaf("FailureReason", &f.reason)
                .close("member");
        }
        w.close("FailureReasons");
    }
    write_report(&mut w, &j.report);
    w.leaf("CreationTime", &iso(j.creation_ms))
        .opt("TerminationDate", j.termination_ms.map(iso).as_deref())
        .leaf("RoleArn", &j.role_arn)
        .opt("SuspendedDate", j.suspended_ms.map(iso).as_deref())
        .opt("SuspendedCause", j.suspended_cause.as_deref());
    if let Some(g) = &j.manifest_generator {
        write_generator(&mut w, g);
    }
    if let Some(m) = &j.generated_manifest {
        w.open("GeneratedManifestDescriptor")
            .leaf("Format", &m.format)
            .open("Location")
            .leaf("ObjectArn", &m.object_arn)
            .leaf("ETag", &m.etag)
            .close("Location")
            .close("GeneratedManifestDescriptor");
    }
    w.close("Job");
    w.finish("DescribeJobResult")
}

/// `<ListJobsResult>`.
pub fn list_jobs_result(jobs: &[JobSummary], next_token: Option<&str>) -> String {
    let mut w = Writer::new("ListJobsResult");
    w.opt("NextToken", next_token).open("Jobs");
    for j in jobs {
        w.open("member")
            .leaf("JobId", &j.id)
            .opt("Description", j.description.as_deref())
            .leaf("Operation", j.operation)
            .leaf("Priority", &j.priority.to_string())
            .leaf("Status", j.status.as_str())
            .leaf("CreationTime", &iso(j.creation_ms))
            .opt("TerminationDate", j.termination_ms.map(iso).as_deref());
        write_progress(&mut w, &j.progress);
        w.close("member");
    }
    w.close("Jobs");
    w.finish("ListJobsResult")
}

/// `<GetJobTaggingResult>`.
pub fn get_job_tagging_result(tags: &[Tag]) -> String {
    let mut w = Writer::new("GetJobTaggingResult");
    write_tags(&mut w, "Tags", tags);
    w.finish("GetJobTaggingResult")
}
