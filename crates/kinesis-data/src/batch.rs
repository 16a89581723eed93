//! The S3 Batch Operations engine's ports, implemented over the objects and functions
//! engines. Every call acts as the job's role: it is authorised for the session
//! `arn:aws:sts::<acct>:assumed-role/<role>/s3-batch-operations` with the role's identity
//! policies (the same check a request signed by that session gets), and failures carry the
//! HTTP status and error code S3 or Lambda would have answered, which the completion report
//! shows.

use std::sync::Arc;

use bytes::Bytes;
use kd_batch::{BatchFunctions, BatchObjects, CopyOptions, InvokeOutput, ListedVersion, PortError, VersionListing};
use kd_functions::Functions;
use kd_objects::{Objects, PutOptions};

use crate::ports::RoleActor;
use crate::replication::Replicator;

/// The session the jobs act as.
const SESSION: &str = "s3-batch-operations";

fn denied(e: kd_delivery::PortError) -> PortError {
    let message = match e {
        kd_delivery::PortError::AccessDenied(m) => m,
        other => other.to_string(),
    };
    PortError::new(403, "AccessDenied", message)
}

fn object_error(e: kd_objects::Error) -> PortError {
    let s3 = kd_api_s3::ops::s3_err(e);
    PortError::new(
        s3.status_code().map_or(500, |s| s.as_u16()),
        s3.code().as_str(),
        s3.message().unwrap_or_default(),
    )
}

/// The action S3 checks: the `…Version…` one when a version is addressed.
fn action(plain: &'static str, versioned: &'static str, version_id: Option<&str>) -> &'static str {
    if version_id.is_some() { versioned } else { plain }
}

/// [`BatchObjects`] over the objects engine.
pub struct BatchS3 {
    objects: Arc<Objects>,
    actor: RoleActor,
    replicator: Replicator,
}

impl BatchS3 {
    /// Over `objects`, acting as each job's role through `actor`.
    pub fn new(objects: Arc<Objects>, actor: RoleActor, replicator: Replicator) -> Self {
        Self {
            objects,
            actor: actor.with_session(SESSION),
            replicator,
        }
    }

    /// The role may act on `bucket` (no bucket policies yet: its own account's buckets only).
    fn check_owner(&self, role_arn: &str, bucket: &str) -> Result<(), PortError> {
        let info = self.objects.bucket(bucket).map_err(object_error)?;
        let account = kd_iam::store::parse_role_arn(role_arn)
            .map(|(a, _)| a)
            .unwrap_or_default();
        if info.owner_account != account {
            return Err(PortError::new(403, "AccessDenied", "Access Denied"));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl BatchObjects for BatchS3 {
    async fn list_versions(
        &self,
        role_arn: &str,
        bucket: &str,
        after: Option<(String, String)>,
        limit: usize,
        eligibility: bool,
    ) -> Result<VersionListing, PortError> {
        self.actor
            .allow(
                role_arn,
                &["s3:ListBucket", "s3:ListBucketVersions"],
                &format!("arn:aws:s3:::{bucket}"),
            )
            .map_err(denied)?;
        self.check_owner(role_arn, bucket)?;
        let (key_marker, version_marker) = after.unzip();
        let page = self
            .objects
            .list_object_versions(
                bucket,
                "",
                None,
                key_marker.as_deref(),
                version_marker.as_deref(),
                limit,
            )
            .map_err(object_error)?;
        let mut versions = Vec::with_capacity(page.versions.len());
        for v in page.versions.into_iter().filter(|v| !v.delete_marker) {
            let eligible = eligibility
                && self
                    .objects
                    .replication_tasks_for(bucket, &v.info.key, Some(&v.version_id))
                    .is_ok_and(|(_, tasks)| !tasks.is_empty());
            versions.push(ListedVersion {
                version_id: v.info.version_id.clone(),
                key: v.info.key,
                size: v.info.size,
                last_modified_ms: v.info.last_modified_ms,
                replication_status: v.info.replication_status.map(|s| s.as_str().to_owned()),
                eligible,
            });
        }
        let next = match (page.is_truncated, page.next_key_marker) {
            (true, Some(k)) => Some((k, page.next_version_id_marker.unwrap_or_default())),
            _ => None,
        };
        Ok(VersionListing { versions, next })
    }

    async fn replicate(
        &self,
        role_arn: &str,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(), PortError> {
        self.actor
            .allow(
                role_arn,
                &["s3:InitiateReplication"],
                &format!("arn:aws:s3:::{bucket}/{key}"),
            )
            .map_err(denied)?;
        self.check_owner(role_arn, bucket)?;
        let (cfg, tasks) = self
            .objects
            .replication_tasks_for(bucket, key, version_id)
            .map_err(object_error)?;
        if tasks.is_empty() {
            return Err(PortError::new(
                400,
                "InvalidRequest",
                format!("No enabled rule of the replication configuration of {bucket} applies to {key}"),
            ));
        }
        if let Some(first) = tasks.first() {
            self.objects
                .restart_replication(bucket, key, &first.version_id)
                .await
                .map_err(object_error)?;
        }
        for task in &tasks {
            self.replicator
                .replicate(&cfg.role, task)
                .await
                .map_err(|e| PortError::new(e.status, e.code, e.message))?;
        }
        Ok(())
    }

    async fn get(
        &self,
        role_arn: &str,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        limit: u64,
    ) -> Result<(Bytes, String), PortError> {
        use futures_util::StreamExt as _;
        self.actor
            .allow(
                role_arn,
                &[action("s3:GetObject", "s3:GetObjectVersion", version_id)],
                &format!("arn:aws:s3:::{bucket}/{key}"),
            )
            .map_err(denied)?;
        self.check_owner(role_arn, bucket)?;
        let (info, _, mut body) = self
            .objects
            .get_object_version(bucket, key, version_id, None)
            .await
            .map_err(object_error)?;
        if info.size > limit {
            return Err(PortError::new(
                400,
                "EntityTooLarge",
                format!("The object is {} bytes; at most {limit} are read", info.size),
            ));
        }
        let mut out = Vec::with_capacity(usize::try_from(info.size).unwrap_or(0));
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| PortError::new(500, "InternalError", e.to_string()))?;
            out.extend_from_slice(&chunk);
        }
        Ok((Bytes::from(out), info.etag))
    }

    async fn copy(
        &self,
        role_arn: &str,
        src_bucket: &str,
        src_key: &str,
        src_version: Option<&str>,
        dst_bucket: &str,
        dst_key: &str,
        opts: &CopyOptions,
    ) -> Result<(), PortError> {
        self.actor
            .allow(
                role_arn,
                &["s3:GetObject"],
                &format!("arn:aws:s3:::{src_bucket}/{src_key}"),
            )
            .map_err(denied)?;
        self.actor
            .allow(
                role_arn,
                &["s3:PutObject"],
                &format!("arn:aws:s3:::{dst_bucket}/{dst_key}"),
            )
            .map_err(denied)?;
        self.check_owner(role_arn, src_bucket)?;
        self.check_owner(role_arn, dst_bucket)?;
        let replace_meta = opts.metadata_directive.as_deref() == Some("REPLACE");
        let replace_tags = opts.tagging_directive.as_deref() == Some("REPLACE");
        let replace = if replace_meta || replace_tags {
            let src = self
                .objects
                .head_object_version(src_bucket, src_key, src_version)
                .map_err(object_error)?;
            let mut o = PutOptions::default();
            if replace_meta {
                o.content_type = opts.content_type.clone();
                o.cache_control = opts.cache_control.clone();
                o.content_disposition = opts.content_disposition.clone();
                o.content_encoding = opts.content_encoding.clone();
                o.content_language = opts.content_language.clone();
                o.user_metadata = opts.new_metadata.clone();
            } else {
                let h = src.headers;
                o.content_type = h.content_type;
                o.cache_control = h.cache_control;
                o.content_disposition = h.content_disposition;
                o.content_encoding = h.content_encoding;
                o.content_language = h.content_language;
                o.expires = h.expires;
                o.user_metadata = h.user_metadata;
            }
            o.tags = if replace_tags {
                opts.new_tags.iter().cloned().collect()
            } else {
                self.objects
                    .get_object_tags(src_bucket, src_key)
                    .map_err(object_error)?
            };
            Some(o)
        } else {
            None
        };
        let same = src_bucket == dst_bucket && src_key == dst_key;
        // A copy onto itself (a "touch" job rewriting metadata or storage class) is legal
        // in Batch Operations: keep everything as it is.
        let replace = match (replace, same) {
            (None, true) => {
                let src = self
                    .objects
                    .head_object_version(src_bucket, src_key, src_version)
                    .map_err(object_error)?;
                let h = src.headers;
                Some(PutOptions {
                    content_type: h.content_type,
                    cache_control: h.cache_control,
                    content_disposition: h.content_disposition,
                    content_encoding: h.content_encoding,
                    content_language: h.content_language,
                    expires: h.expires,
                    user_metadata: h.user_metadata,
                    tags: self
                        .objects
                        .get_object_tags(src_bucket, src_key)
                        .map_err(object_error)?,
                    ..PutOptions::default()
                })
            }
            (r, _) => r,
        };
        self.objects
            .copy_object_version_if(src_bucket, src_key, src_version, dst_bucket, dst_key, replace, None)
            .await
            .map_err(object_error)?
            .map(|_| ())
            .map_err(|_| {
                PortError::new(
                    412,
                    "PreconditionFailed",
                    "At least one of the preconditions you specified did not hold",
                )
            })
    }

    async fn put_tagging(
        &self,
        role_arn: &str,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        tags: &[(String, String)],
    ) -> Result<(), PortError> {
        self.actor
            .allow(
                role_arn,
                &["s3:PutObjectTagging"],
                &format!("arn:aws:s3:::{bucket}/{key}"),
            )
            .map_err(denied)?;
        self.check_owner(role_arn, bucket)?;
        self.objects
            .put_object_version_tags(bucket, key, version_id, tags.iter().cloned().collect())
            .await
            .map(|_| ())
            .map_err(object_error)
    }

    async fn delete_tagging(
        &self,
        role_arn: &str,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(), PortError> {
        self.actor
            .allow(
                role_arn,
                &["s3:DeleteObjectTagging"],
                &format!("arn:aws:s3:::{bucket}/{key}"),
            )
            .map_err(denied)?;
        self.check_owner(role_arn, bucket)?;
        // DeleteObjectTagging is an empty tag set on the (addressed) version.
        self.objects
            .put_object_version_tags(bucket, key, version_id, Default::default())
            .await
            .map(|_| ())
            .map_err(object_error)
    }

    async fn put(
        &self,
        role_arn: &str,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), PortError> {
        self.actor
            .allow(role_arn, &["s3:PutObject"], &format!("arn:aws:s3:::{bucket}/{key}"))
            .map_err(denied)?;
        self.check_owner(role_arn, bucket)?;
        let opts = PutOptions {
            content_type: Some(content_type.to_owned()),
            ..PutOptions::default()
        };
        let body = futures_util::stream::iter([Ok::<Bytes, std::io::Error>(body)]);
        self.objects
            .put_object(bucket, key, body, opts)
            .await
            .map(|_| ())
            .map_err(object_error)
    }
}

/// [`BatchFunctions`] over the functions engine.
pub struct BatchLambda {
    functions: Arc<Functions>,
    actor: RoleActor,
}

impl BatchLambda {
    /// Over `functions`, acting as each job's role through `actor`.
    pub fn new(functions: Arc<Functions>, actor: RoleActor) -> Self {
        Self {
            functions,
            actor: actor.with_session(SESSION),
        }
    }
}

#[async_trait::async_trait]
impl BatchFunctions for BatchLambda {
    async fn invoke(&self, role_arn: &str, function_arn: &str, payload: Bytes) -> Result<InvokeOutput, PortError> {
        self.actor
            .allow(role_arn, &["lambda:InvokeFunction"], function_arn)
            .map_err(denied)?;
        let out = self.functions.invoke_arn(function_arn, payload).await.map_err(|e| {
            let api = kd_api_lambda::service_error(&e);
            PortError::new(api.status.as_u16(), api.code, api.message)
        })?;
        Ok(InvokeOutput {
            payload: out.payload,
            function_error: out.function_error,
        })
    }
}
