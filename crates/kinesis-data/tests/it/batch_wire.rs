//! S3 Batch Operations through aws-sdk-s3control against the in-process server: seed part 4
//! with the Rust `batch-copy` example (a missing key fails alone and shows in the report),
//! an S3PutObjectCopy job that waits for confirmation, and the job API's errors.

use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{FunctionCode, Runtime};
use aws_sdk_s3control::types::{
    JobManifest, JobManifestFieldName, JobManifestFormat, JobManifestLocation, JobManifestSpec, JobOperation,
    JobReport, JobReportFormat, JobReportScope, JobStatus, LambdaInvokeOperation, RequestedJobStatus,
    S3CopyObjectOperation,
};
use kd_test_support::{ACCOUNT, TestServer, wait_until};

use crate::lambda_e2e::{bootstrap_zip, example_binary};

type R = anyhow::Result<()>;

const TRUST_BATCH: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"batchoperations.s3.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

async fn batch_role(server: &TestServer, name: &str) -> anyhow::Result<String> {
    let iam = server.iam();
    let r = iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(TRUST_BATCH)
        .send()
        .await?;
    for p in ["AmazonS3FullAccess", "service-role/AWSLambdaRole"] {
        iam.attach_role_policy()
            .role_name(name)
            .policy_arn(format!("arn:aws:iam::aws:policy/{p}"))
            .send()
            .await?;
    }
    Ok(r.role.map(|r| r.arn).unwrap_or_default())
}

/// Puts the manifest and returns its location (ARN + ETag).
async fn manifest(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, lines: &[String]) -> anyhow::Result<JobManifest> {
    let body = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    let put = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into_bytes().into())
        .send()
        .await?;
    let etag = put.e_tag().unwrap_or_default().trim_matches('"').to_owned();
    Ok(JobManifest::builder()
        .spec(
            JobManifestSpec::builder()
                .format(JobManifestFormat::S3BatchOperationsCsv20180820)
                .fields(JobManifestFieldName::Bucket)
                .fields(JobManifestFieldName::Key)
                .build()?,
        )
        .location(
            JobManifestLocation::builder()
                .object_arn(format!("arn:aws:s3:::{bucket}/{key}"))
                .e_tag(etag)
                .build()?,
        )
        .build())
}

async fn wait_status(
    c: &aws_sdk_s3control::Client,
    id: &str,
    want: JobStatus,
) -> anyhow::Result<aws_sdk_s3control::types::JobDescriptor> {
    wait_until(Duration::from_secs(60), &format!("job {id} {want:?}"), || {
        let c = c.clone();
        let want = want.clone();
        async move {
            let d = c.describe_job().account_id(ACCOUNT).job_id(id).send().await.ok()?;
            let job = d.job?;
            (job.status() == Some(&want)).then_some(job)
        }
    })
    .await
}

async fn read(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> anyhow::Result<String> {
    let got = s3.get_object().bucket(bucket).key(key).send().await?;
    Ok(String::from_utf8_lossy(&got.body.collect().await?.into_bytes()).into_owned())
}

#[tokio::test]
async fn part_4_lambda_invoke_job_with_the_rust_batch_copy_function() -> R {
    let server = TestServer::start().await?;
    let s3 = server.s3();
    let ctl = server.s3control();
    for b in ["bucket-a", "bucket-b", "reports"] {
        s3.create_bucket().bucket(b).send().await?;
    }
    let keys: Vec<String> = (0..10)
        .map(|i| format!("in/f{i}.txt"))
        .chain(["in/with space+plus.txt".to_owned()])
        .collect();
    for k in &keys {
        s3.put_object()
            .bucket("bucket-a")
            .key(k)
            .body(format!("body of {k}").into_bytes().into())
            .send()
            .await?;
    }
    let fn_role = crate::lambda_wire::lambda_role(&server, "batch-fn-role").await?;
    let zip = bootstrap_zip(&example_binary("batch-copy")?)?;
    let created = server
        .lambda()
        .create_function()
        .function_name("batch-copy")
        .runtime(Runtime::Providedal2023)
        .handler("bootstrap")
        .role(&fn_role)
        .timeout(30)
        .code(FunctionCode::builder().zip_file(Blob::new(zip)).build())
        .send()
        .await?;
    let function_arn = created.function_arn().unwrap_or_default().to_owned();
    // Manifest keys are URL-encoded; one key does not exist.
    let mut lines: Vec<String> = keys
        .iter()
        .map(|k| {
            let enc: String = k
                .split('/')
                .map(|seg| percent_encoding::utf8_percent_encode(seg, percent_encoding::NON_ALPHANUMERIC).to_string())
                .collect::<Vec<_>>()
                .join("/");
            format!("bucket-a,{enc}")
        })
        .collect();
    lines.push("bucket-a,in/missing.txt".to_owned());
    let m = manifest(&s3, "bucket-a", "manifest.csv", &lines).await?;
    let role = batch_role(&server, "batch-role").await?;
    let job = ctl
        .create_job()
        .account_id(ACCOUNT)
        .confirmation_required(false)
        .priority(10)
        .role_arn(&role)
        .client_request_token("part-4")
        .description("copy bucket A to bucket B")
        .operation(
            JobOperation::builder()
                .lambda_invoke(
                    LambdaInvokeOperation::builder()
                        .function_arn(&function_arn)
                        .invocation_schema_version("2.0")
                        .user_arguments("targetBucket", "bucket-b")
                        .build(),
                )
                .build(),
        )
        .manifest(m.clone())
        .report(
            JobReport::builder()
                .enabled(true)
                .bucket("arn:aws:s3:::reports")
                .prefix("batch")
                .format(JobReportFormat::ReportCsv20180820)
                .report_scope(JobReportScope::AllTasks)
                .build(),
        )
        .send()
        .await?;
    let id = job.job_id().unwrap_or_default().to_owned();
    let done = wait_status(&ctl, &id, JobStatus::Complete).await?;
    let p = done.progress_summary().expect("progress");
    assert_eq!(p.total_number_of_tasks(), Some(12));
    assert_eq!(p.number_of_tasks_succeeded(), Some(11));
    assert_eq!(p.number_of_tasks_failed(), Some(1));
    for k in &keys {
        assert_eq!(read(&s3, "bucket-b", k).await?, format!("body of {k}"));
    }
    // The completion report.
    let manifest_json: serde_json::Value =
        serde_json::from_str(&read(&s3, "reports", &format!("batch/job-{id}/manifest.json")).await?)?;
    assert_eq!(manifest_json["Format"], "Report_CSV_20180820");
    let results = manifest_json["Results"].as_array().cloned().unwrap_or_default();
    assert!(!results.is_empty());
    let mut rows = String::new();
    for r in &results {
        rows.push_str(&read(&s3, "reports", r["Key"].as_str().unwrap_or_default()).await?);
    }
    let failed: Vec<&str> = rows.lines().filter(|l| l.contains(",failed,")).collect();
    assert_eq!(failed.len(), 1, "{rows}");
    assert!(
        failed[0].starts_with("bucket-a,in/missing.txt,,failed,"),
        "{}",
        failed[0]
    );
    assert!(
        failed[0].contains("PermanentFailure") && failed[0].contains("NoSuchKey"),
        "{}",
        failed[0]
    );
    assert_eq!(rows.lines().filter(|l| l.contains(",succeeded,")).count(), 11, "{rows}");

    // The same token and request: the same job. Another request with it: IdempotencyException.
    let again = ctl
        .create_job()
        .account_id(ACCOUNT)
        .confirmation_required(false)
        .priority(10)
        .role_arn(&role)
        .client_request_token("part-4")
        .description("copy bucket A to bucket B")
        .operation(
            JobOperation::builder()
                .lambda_invoke(
                    LambdaInvokeOperation::builder()
                        .function_arn(&function_arn)
                        .invocation_schema_version("2.0")
                        .user_arguments("targetBucket", "bucket-b")
                        .build(),
                )
                .build(),
        )
        .manifest(m)
        .report(
            JobReport::builder()
                .enabled(true)
                .bucket("arn:aws:s3:::reports")
                .prefix("batch")
                .format(JobReportFormat::ReportCsv20180820)
                .report_scope(JobReportScope::AllTasks)
                .build(),
        )
        .send()
        .await?;
    assert_eq!(again.job_id(), Some(id.as_str()));
    let listed = ctl
        .list_jobs()
        .account_id(ACCOUNT)
        .job_statuses(JobStatus::Complete)
        .send()
        .await?;
    assert_eq!(listed.jobs().len(), 1);
    Ok(())
}

#[tokio::test]
async fn copy_job_waits_for_confirmation_and_errors_have_aws_codes() -> R {
    let server = TestServer::start().await?;
    let s3 = server.s3();
    let ctl = server.s3control();
    for b in ["src", "dst"] {
        s3.create_bucket().bucket(b).send().await?;
    }
    let mut lines = Vec::new();
    for i in 0..50 {
        s3.put_object()
            .bucket("src")
            .key(format!("k{i}"))
            .body(vec![b'x'; 4096].into())
            .send()
            .await?;
        lines.push(format!("src,k{i}"));
    }
    let m = manifest(&s3, "src", "m.csv", &lines).await?;
    let role = batch_role(&server, "copy-role").await?;
    let op = JobOperation::builder()
        .s3_put_object_copy(
            S3CopyObjectOperation::builder()
                .target_resource("arn:aws:s3:::dst")
                .target_key_prefix("copied")
                .build(),
        )
        .build();
    let report_off = JobReport::builder().enabled(false).build();
    let job = ctl
        .create_job()
        .account_id(ACCOUNT)
        .confirmation_required(true)
        .priority(1)
        .role_arn(&role)
        .client_request_token("copy-1")
        .operation(op.clone())
        .manifest(m.clone())
        .report(report_off.clone())
        .send()
        .await?;
    let id = job.job_id().unwrap_or_default().to_owned();
    wait_status(&ctl, &id, JobStatus::Suspended).await?;
    ctl.update_job_priority()
        .account_id(ACCOUNT)
        .job_id(&id)
        .priority(5)
        .send()
        .await?;
    ctl.update_job_status()
        .account_id(ACCOUNT)
        .job_id(&id)
        .requested_job_status(RequestedJobStatus::Ready)
        .send()
        .await?;
    let done = wait_status(&ctl, &id, JobStatus::Complete).await?;
    assert_eq!(done.priority(), 5);
    assert_eq!(
        done.progress_summary().and_then(|p| p.number_of_tasks_succeeded()),
        Some(50)
    );
    assert_eq!(read(&s3, "dst", "copied/k7").await?.len(), 4096);
    // A finished job cannot be moved.
    let err = ctl
        .update_job_status()
        .account_id(ACCOUNT)
        .job_id(&id)
        .requested_job_status(RequestedJobStatus::Cancelled)
        .send()
        .await
        .expect_err("terminal job");
    assert_eq!(
        aws_sdk_s3control::error::ProvideErrorMetadata::code(&err),
        Some("JobStatusException")
    );
    let err = ctl
        .describe_job()
        .account_id(ACCOUNT)
        .job_id("00000000-0000-0000-0000-000000000000")
        .send()
        .await
        .expect_err("no such job");
    assert_eq!(
        aws_sdk_s3control::error::ProvideErrorMetadata::code(&err),
        Some("NotFoundException")
    );
    // A manifest whose ETag does not match fails the job with a reason.
    let mut bad = m;
    bad.location = Some(
        JobManifestLocation::builder()
            .object_arn("arn:aws:s3:::src/m.csv")
            .e_tag("0123456789abcdef0123456789abcdef")
            .build()?,
    );
    let job = ctl
        .create_job()
        .account_id(ACCOUNT)
        .confirmation_required(false)
        .priority(1)
        .role_arn(&role)
        .client_request_token("copy-2")
        .operation(op)
        .manifest(bad)
        .report(report_off)
        .send()
        .await?;
    let failed = wait_status(&ctl, job.job_id().unwrap_or_default(), JobStatus::Failed).await?;
    assert!(!failed.failure_reasons().is_empty());
    Ok(())
}
