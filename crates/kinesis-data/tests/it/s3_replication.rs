//! S3 replication through aws-sdk-s3 / aws-sdk-s3control against the in-process server:
//! live replication by V2 rules (prefix and tag filters, several destinations, delete
//! markers, replica metadata and `x-amz-replication-status`), a role that may not replicate
//! (FAILED), the configuration's errors, and S3 Batch Replication over a generated manifest
//! (objects that never replicated or failed) and over a CSV manifest.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, DeleteMarkerReplication, DeleteMarkerReplicationStatus, Destination,
    ReplicationConfiguration, ReplicationRule, ReplicationRuleAndOperator, ReplicationRuleFilter,
    ReplicationRuleStatus, ReplicationStatus, Tag, VersioningConfiguration,
};
use aws_sdk_s3control::types::{
    JobManifestGenerator, JobManifestGeneratorFilter, JobOperation, JobReport, JobReportFormat, JobReportScope,
    JobStatus, S3JobManifestGenerator, S3ManifestOutputLocation, S3ReplicateObjectOperation,
};
use kd_test_support::{ACCOUNT, TestServer, wait_until};

type R = anyhow::Result<()>;

const TRUST_S3: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
const TRUST_BATCH: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"batchoperations.s3.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
const READ_ONLY_REPLICATION: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObjectVersionForReplication","s3:GetReplicationConfiguration"],"Resource":"*"}]}"#;

async fn role(server: &TestServer, name: &str, trust: &str, full_access: bool) -> anyhow::Result<String> {
    let iam = server.iam();
    let r = iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust)
        .send()
        .await?;
    if full_access {
        iam.attach_role_policy()
            .role_name(name)
            .policy_arn("arn:aws:iam::aws:policy/AmazonS3FullAccess")
            .send()
            .await?;
    } else {
        iam.put_role_policy()
            .role_name(name)
            .policy_name("read-only")
            .policy_document(READ_ONLY_REPLICATION)
            .send()
            .await?;
    }
    Ok(r.role.map(|r| r.arn).unwrap_or_default())
}

async fn versioned(c: &aws_sdk_s3::Client, bucket: &str) -> R {
    c.create_bucket().bucket(bucket).send().await?;
    c.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await?;
    Ok(())
}

fn rule(
    id: &str,
    priority: i32,
    filter: ReplicationRuleFilter,
    dest: &str,
    markers: bool,
) -> anyhow::Result<ReplicationRule> {
    let status = if markers {
        DeleteMarkerReplicationStatus::Enabled
    } else {
        DeleteMarkerReplicationStatus::Disabled
    };
    Ok(ReplicationRule::builder()
        .id(id)
        .priority(priority)
        .status(ReplicationRuleStatus::Enabled)
        .filter(filter)
        .delete_marker_replication(DeleteMarkerReplication::builder().status(status).build())
        .destination(
            Destination::builder()
                .bucket(format!("arn:aws:s3:::{dest}"))
                .storage_class(aws_sdk_s3::types::StorageClass::StandardIa)
                .build()?,
        )
        .build()?)
}

async fn put_replication(c: &aws_sdk_s3::Client, bucket: &str, role: &str, rules: Vec<ReplicationRule>) -> R {
    c.put_bucket_replication()
        .bucket(bucket)
        .replication_configuration(
            ReplicationConfiguration::builder()
                .role(role)
                .set_rules(Some(rules))
                .build()?,
        )
        .send()
        .await?;
    Ok(())
}

async fn put(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: &str,
    tagging: Option<&str>,
) -> anyhow::Result<String> {
    Ok(c.put_object()
        .bucket(bucket)
        .key(key)
        .metadata("origin", "test")
        .content_type("text/plain")
        .set_tagging(tagging.map(str::to_owned))
        .body(ByteStream::from(body.as_bytes().to_vec()))
        .send()
        .await?
        .version_id
        .unwrap_or_default())
}

/// Waits until `bucket/key`'s current version has `status`; returns (version id, etag).
async fn wait_status(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    status: ReplicationStatus,
) -> anyhow::Result<(String, String)> {
    wait_until(Duration::from_secs(30), &format!("{bucket}/{key} {status:?}"), || {
        let c = c.clone();
        let status = status.clone();
        async move {
            let h = c.head_object().bucket(bucket).key(key).send().await.ok()?;
            (h.replication_status() == Some(&status)).then(|| {
                (
                    h.version_id().unwrap_or_default().to_owned(),
                    h.e_tag().unwrap_or_default().to_owned(),
                )
            })
        }
    })
    .await
}

async fn read(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> anyhow::Result<String> {
    let got = c.get_object().bucket(bucket).key(key).send().await?;
    Ok(String::from_utf8_lossy(&got.body.collect().await?.into_bytes()).into_owned())
}

#[tokio::test]
async fn live_replication_follows_rules_and_records_status() -> R {
    let mut server = TestServer::start().await?;
    let s3 = server.s3();
    for b in ["src", "dst", "red"] {
        versioned(&s3, b).await?;
    }
    s3.create_bucket().bucket("plain").send().await?;
    let role_arn = role(&server, "replicator", TRUST_S3, true).await?;

    // Configuration errors.
    let err = s3
        .put_bucket_replication()
        .bucket("src")
        .replication_configuration(
            ReplicationConfiguration::builder()
                .role(&role_arn)
                .rules(rule(
                    "r",
                    1,
                    ReplicationRuleFilter::builder().prefix("").build(),
                    "plain",
                    true,
                )?)
                .build()?,
        )
        .send()
        .await
        .expect_err("unversioned destination");
    assert_eq!(crate::common::code_of(&err), ("InvalidRequest".to_owned(), 400));
    let err = s3
        .get_bucket_replication()
        .bucket("src")
        .send()
        .await
        .expect_err("none yet");
    assert_eq!(
        crate::common::code_of(&err),
        ("ReplicationConfigurationNotFoundError".to_owned(), 404)
    );

    let tags = ReplicationRuleFilter::builder()
        .and(
            ReplicationRuleAndOperator::builder()
                .prefix("")
                .tags(Tag::builder().key("team").value("red").build()?)
                .build(),
        )
        .build();
    put_replication(
        &s3,
        "src",
        &role_arn,
        vec![
            rule(
                "logs",
                1,
                ReplicationRuleFilter::builder().prefix("logs/").build(),
                "dst",
                true,
            )?,
            rule("red", 2, tags, "red", false)?,
        ],
    )
    .await?;
    let got = s3.get_bucket_replication().bucket("src").send().await?;
    let cfg = got.replication_configuration().expect("configuration");
    assert_eq!(cfg.role(), role_arn);
    assert_eq!(cfg.rules().len(), 2);

    // Versioning cannot be suspended while replication is configured.
    let err = s3
        .put_bucket_versioning()
        .bucket("src")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await
        .expect_err("replication present");
    assert_eq!(crate::common::code_of(&err), ("InvalidBucketState".to_owned(), 409));

    let v_other = put(&s3, "src", "misc/b", "not replicated", None).await?;
    let v_logs = put(&s3, "src", "logs/a", "hello", None).await?;
    let v_red = put(&s3, "src", "tagged/c", "red one", Some("team=red")).await?;

    let (replica_version, replica_etag) = wait_status(&s3, "dst", "logs/a", ReplicationStatus::Replica).await?;
    assert_eq!(replica_version, v_logs, "a replica keeps its version id");
    let (src_version, src_etag) = wait_status(&s3, "src", "logs/a", ReplicationStatus::Completed).await?;
    assert_eq!(
        (src_version.as_str(), src_etag.as_str()),
        (v_logs.as_str(), replica_etag.as_str())
    );
    assert_eq!(read(&s3, "dst", "logs/a").await?, "hello");
    let h = s3.head_object().bucket("dst").key("logs/a").send().await?;
    assert_eq!(
        h.metadata().and_then(|m| m.get("origin")).map(String::as_str),
        Some("test")
    );
    assert_eq!(h.content_type(), Some("text/plain"));

    let (red_version, _) = wait_status(&s3, "red", "tagged/c", ReplicationStatus::Replica).await?;
    assert_eq!(red_version, v_red);
    wait_status(&s3, "src", "tagged/c", ReplicationStatus::Completed).await?;
    let tagging = s3.get_object_tagging().bucket("red").key("tagged/c").send().await?;
    assert_eq!(
        tagging.tag_set().first().map(|t| (t.key(), t.value())),
        Some(("team", "red"))
    );
    // Rules that do not match: no status, no replica.
    let h = s3.head_object().bucket("src").key("misc/b").send().await?;
    assert_eq!((h.version_id(), h.replication_status()), (Some(v_other.as_str()), None));
    for (bucket, key) in [("dst", "misc/b"), ("dst", "tagged/c"), ("red", "logs/a")] {
        assert!(
            s3.head_object().bucket(bucket).key(key).send().await.is_err(),
            "{bucket}/{key}"
        );
    }

    // A delete marker follows the rule that enables delete-marker replication.
    let marker = s3.delete_object().bucket("src").key("logs/a").send().await?;
    let marker_version = marker.version_id().unwrap_or_default().to_owned();
    wait_until(Duration::from_secs(30), "replicated delete marker", || {
        let s3 = s3.clone();
        let marker_version = marker_version.clone();
        async move {
            let l = s3
                .list_object_versions()
                .bucket("dst")
                .prefix("logs/a")
                .send()
                .await
                .ok()?;
            l.delete_markers()
                .iter()
                .any(|m| m.version_id() == Some(marker_version.as_str()) && m.is_latest() == Some(true))
                .then_some(())
        }
    })
    .await?;
    assert!(s3.get_object().bucket("dst").key("logs/a").send().await.is_err());
    // The older version is still there, by id.
    let old = s3
        .get_object()
        .bucket("dst")
        .key("logs/a")
        .version_id(&v_logs)
        .send()
        .await?;
    assert_eq!(old.replication_status(), Some(&ReplicationStatus::Replica));

    // A role that may read but not write replicas: the version is FAILED.
    for b in ["src2", "dst2"] {
        versioned(&s3, b).await?;
    }
    let weak = role(&server, "weak-replicator", TRUST_S3, false).await?;
    put_replication(
        &s3,
        "src2",
        &weak,
        vec![rule(
            "all",
            1,
            ReplicationRuleFilter::builder().prefix("").build(),
            "dst2",
            false,
        )?],
    )
    .await?;
    put(&s3, "src2", "k", "x", None).await?;
    wait_status(&s3, "src2", "k", ReplicationStatus::Failed).await?;
    assert!(s3.head_object().bucket("dst2").key("k").send().await.is_err());

    // Pending work survives a restart: the status is settled after it.
    server.restart().await?;
    let s3 = server.s3();
    wait_status(&s3, "src", "tagged/c", ReplicationStatus::Completed).await?;
    s3.delete_bucket_replication().bucket("src").send().await?;
    put(&s3, "src", "logs/after", "late", None).await?;
    let h = s3.head_object().bucket("src").key("logs/after").send().await?;
    assert_eq!(h.replication_status(), None);
    Ok(())
}

async fn wait_job(c: &aws_sdk_s3control::Client, id: &str) -> anyhow::Result<aws_sdk_s3control::types::JobDescriptor> {
    wait_until(Duration::from_secs(60), &format!("job {id} done"), || {
        let c = c.clone();
        async move {
            let d = c.describe_job().account_id(ACCOUNT).job_id(id).send().await.ok()?;
            let job = d.job?;
            matches!(
                job.status(),
                Some(JobStatus::Complete | JobStatus::Failed | JobStatus::Cancelled)
            )
            .then_some(job)
        }
    })
    .await
}

#[tokio::test]
async fn batch_replication_copies_existing_and_failed_objects() -> R {
    let server = TestServer::start().await?;
    let s3 = server.s3();
    let ctl = server.s3control();
    for b in ["src", "dst"] {
        versioned(&s3, b).await?;
    }
    s3.create_bucket().bucket("reports").send().await?;
    // Objects that predate the configuration: never replicated.
    let mut before = Vec::new();
    for i in 0..5 {
        before.push(put(&s3, "src", &format!("old/{i} x"), &format!("old {i}"), None).await?);
    }
    let weak = role(&server, "weak", TRUST_S3, false).await?;
    let all = || {
        rule(
            "all",
            1,
            ReplicationRuleFilter::builder().prefix("").build(),
            "dst",
            false,
        )
    };
    put_replication(&s3, "src", &weak, vec![all()?]).await?;
    put(&s3, "src", "failed", "f", None).await?;
    wait_status(&s3, "src", "failed", ReplicationStatus::Failed).await?;
    // Fix the role; new objects replicate live.
    let good = role(&server, "good", TRUST_S3, true).await?;
    put_replication(&s3, "src", &good, vec![all()?]).await?;
    put(&s3, "src", "live", "l", None).await?;
    wait_status(&s3, "src", "live", ReplicationStatus::Completed).await?;

    let batch_role = role(&server, "batch", TRUST_BATCH, true).await?;
    let generator = S3JobManifestGenerator::builder()
        .source_bucket("arn:aws:s3:::src")
        .enable_manifest_output(true)
        .manifest_output_location(
            S3ManifestOutputLocation::builder()
                .bucket("arn:aws:s3:::reports")
                .manifest_prefix("generated")
                .manifest_format(aws_sdk_s3control::types::GeneratedManifestFormat::S3InventoryReportCsv20211130)
                .build()?,
        )
        .filter(
            JobManifestGeneratorFilter::builder()
                .eligible_for_replication(true)
                .object_replication_statuses(aws_sdk_s3control::types::ReplicationStatus::None)
                .object_replication_statuses(aws_sdk_s3control::types::ReplicationStatus::Failed)
                .build(),
        )
        .build()?;
    let report = JobReport::builder()
        .enabled(true)
        .bucket("arn:aws:s3:::reports")
        .prefix("batch")
        .format(JobReportFormat::ReportCsv20180820)
        .report_scope(JobReportScope::AllTasks)
        .build();
    let job = ctl
        .create_job()
        .account_id(ACCOUNT)
        .confirmation_required(false)
        .priority(10)
        .role_arn(&batch_role)
        .client_request_token("replicate-1")
        .operation(
            JobOperation::builder()
                .s3_replicate_object(S3ReplicateObjectOperation::builder().build())
                .build(),
        )
        .manifest_generator(JobManifestGenerator::S3JobManifestGenerator(generator))
        .report(report.clone())
        .send()
        .await?;
    let id = job.job_id().unwrap_or_default().to_owned();
    let done = wait_job(&ctl, &id).await?;
    assert_eq!(done.status(), Some(&JobStatus::Complete), "{done:?}");
    let p = done.progress_summary().expect("progress");
    assert_eq!(
        (p.total_number_of_tasks(), p.number_of_tasks_succeeded()),
        (Some(6), Some(6))
    );
    assert!(done.operation().and_then(|o| o.s3_replicate_object()).is_some());
    // The generated manifest: manifest.json naming one CSV of the six versions.
    let generated = done
        .generated_manifest_descriptor()
        .and_then(|g| g.location())
        .expect("generated manifest");
    let key = generated
        .object_arn()
        .strip_prefix("arn:aws:s3:::reports/")
        .unwrap_or_default()
        .to_owned();
    assert_eq!(key, format!("generated/job-{id}/manifest.json"));
    let m: serde_json::Value = serde_json::from_str(&read(&s3, "reports", &key).await?)?;
    let csv_key = m["files"][0]["key"].as_str().unwrap_or_default().to_owned();
    let csv = read(&s3, "reports", &csv_key).await?;
    assert_eq!(csv.lines().count(), 6, "{csv}");
    assert!(
        csv.contains(&format!("src,old/0+x,{}", before[0])) || csv.contains(&format!("src,old/0%20x,{}", before[0])),
        "{csv}"
    );
    assert!(!csv.contains("live"), "{csv}");
    for (i, v) in before.iter().enumerate() {
        let key = format!("old/{i} x");
        let (rv, _) = wait_status(&s3, "dst", &key, ReplicationStatus::Replica).await?;
        assert_eq!(&rv, v);
        assert_eq!(read(&s3, "dst", &key).await?, format!("old {i}"));
        wait_status(&s3, "src", &key, ReplicationStatus::Completed).await?;
    }
    wait_status(&s3, "src", "failed", ReplicationStatus::Completed).await?;
    let report_json = read(&s3, "reports", &format!("batch/job-{id}/manifest.json")).await?;
    assert!(
        report_json.contains("\"TaskExecutionStatus\":\"succeeded\""),
        "{report_json}"
    );

    // A CSV manifest: a missing key fails alone.
    let live_version = s3
        .head_object()
        .bucket("src")
        .key("live")
        .send()
        .await?
        .version_id()
        .unwrap_or_default()
        .to_owned();
    let lines = format!("src,live,{live_version}\nsrc,missing,{}\n", before[0]);
    let put_manifest = s3
        .put_object()
        .bucket("reports")
        .key("m.csv")
        .body(lines.into_bytes().into())
        .send()
        .await?;
    let manifest = aws_sdk_s3control::types::JobManifest::builder()
        .spec(
            aws_sdk_s3control::types::JobManifestSpec::builder()
                .format(aws_sdk_s3control::types::JobManifestFormat::S3BatchOperationsCsv20180820)
                .fields(aws_sdk_s3control::types::JobManifestFieldName::Bucket)
                .fields(aws_sdk_s3control::types::JobManifestFieldName::Key)
                .fields(aws_sdk_s3control::types::JobManifestFieldName::VersionId)
                .build()?,
        )
        .location(
            aws_sdk_s3control::types::JobManifestLocation::builder()
                .object_arn("arn:aws:s3:::reports/m.csv")
                .e_tag(put_manifest.e_tag().unwrap_or_default().trim_matches('"'))
                .build()?,
        )
        .build();
    let job = ctl
        .create_job()
        .account_id(ACCOUNT)
        .confirmation_required(false)
        .priority(10)
        .role_arn(&batch_role)
        .client_request_token("replicate-2")
        .operation(
            JobOperation::builder()
                .s3_replicate_object(S3ReplicateObjectOperation::builder().build())
                .build(),
        )
        .manifest(manifest)
        .report(report)
        .send()
        .await?;
    let id = job.job_id().unwrap_or_default().to_owned();
    let done = wait_job(&ctl, &id).await?;
    let p = done.progress_summary().expect("progress");
    assert_eq!(
        (p.number_of_tasks_succeeded(), p.number_of_tasks_failed()),
        (Some(1), Some(1))
    );
    let listed = s3
        .list_objects_v2()
        .bucket("reports")
        .prefix(format!("batch/job-{id}/results/"))
        .send()
        .await?;
    // Succeeded and failed tasks go to separate results files.
    let mut results = String::new();
    for o in listed.contents() {
        results.push_str(&read(&s3, "reports", o.key().unwrap_or_default()).await?);
    }
    assert!(
        results.contains("src,missing,") && results.contains("failed,404,NoSuchKey")
            || results.contains("NoSuchVersion"),
        "{results}"
    );
    Ok(())
}
