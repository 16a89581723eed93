//! S3 authorisation: every S3 operation is mapped to its IAM action and resource ARN
//! (`arn:aws:s3:::bucket` or `arn:aws:s3:::bucket/key`) and checked against the caller's
//! identity policies and the bucket's policy before the operation runs (s3s calls
//! [`S3Access::check`] after the signature is verified and before the input is read). Copies
//! and multi-object deletes check their extra resources in the per-operation hooks.
//!
//! Bucket policies, as AWS evaluates them for a caller: an explicit `Deny` in either the
//! identity policies or the bucket policy refuses; otherwise a caller of the bucket owner's
//! account is allowed by either; a caller of another account needs both. Parsed bucket
//! policies are cached per bucket ([`BucketPolicies`]) and dropped by every write of one.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kd_iam::Iam;
use kd_iam::authz::Authorizer;
use kd_iam::policy::{Decision, DocKind, PolicyDocument};
use kd_objects::Objects;
use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::{CopyObjectInput, DeleteObjectsInput, UploadPartCopyInput};
use s3s::path::S3Path;
use s3s::{S3Request, S3Result, s3_error};

/// The IAM action of an S3 operation (s3s operation names are AWS's).
pub fn action_of(op: &str) -> String {
    let a = match op {
        "GetObject" | "HeadObject" => "GetObject",
        "PutObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "UploadPartCopy"
        | "CompleteMultipartUpload"
        | "CopyObject" => "PutObject",
        "DeleteObject" | "DeleteObjects" => "DeleteObject",
        "ListObjects" | "ListObjectsV2" | "HeadBucket" => "ListBucket",
        "ListObjectVersions" => "ListBucketVersions",
        "ListMultipartUploads" => "ListBucketMultipartUploads",
        "ListParts" => "ListMultipartUploadParts",
        "ListBuckets" => "ListAllMyBuckets",
        "DeleteBucketTagging" => "PutBucketTagging",
        "GetBucketNotificationConfiguration" => "GetBucketNotification",
        "PutBucketNotificationConfiguration" => "PutBucketNotification",
        "PutBucketReplication" | "DeleteBucketReplication" => "PutReplicationConfiguration",
        "GetBucketReplication" => "GetReplicationConfiguration",
        other => other,
    };
    format!("s3:{a}")
}

/// The IAM action of an S3 operation that addresses a specific object version (a
/// `versionId` was given), as AWS authorises it; other operations as [`action_of`].
pub fn action_of_version(op: &str) -> String {
    let a = match op {
        "GetObject" | "HeadObject" => "GetObjectVersion",
        "DeleteObject" => "DeleteObjectVersion",
        "GetObjectTagging" => "GetObjectVersionTagging",
        "PutObjectTagging" => "PutObjectVersionTagging",
        "DeleteObjectTagging" => "DeleteObjectVersionTagging",
        other => return action_of(other),
    };
    format!("s3:{a}")
}

/// The resource ARN of a path.
pub fn resource_of(path: &S3Path) -> String {
    match path {
        S3Path::Root => "*".to_owned(),
        S3Path::Bucket { bucket } => format!("arn:aws:s3:::{bucket}"),
        S3Path::Object { bucket, key } => format!("arn:aws:s3:::{bucket}/{key}"),
    }
}

/// A bucket's owner and its parsed policy, as the authoriser reads them.
#[derive(Debug, Clone)]
struct BucketAccess {
    owner_account: String,
    policy: Option<Arc<PolicyDocument>>,
}

/// Bucket policies for authorisation: read from the objects engine once per bucket and
/// cached until PutBucketPolicy, DeleteBucketPolicy, CreateBucket or DeleteBucket names the
/// bucket again ([`BucketPolicies::forget`]).
#[derive(Debug)]
pub struct BucketPolicies {
    objects: Arc<Objects>,
    cache: RwLock<HashMap<String, Option<BucketAccess>>>,
}

impl BucketPolicies {
    /// Policies of the buckets in `objects`.
    pub fn new(objects: Arc<Objects>) -> Self {
        Self {
            objects,
            cache: RwLock::new(HashMap::new()),
        }
    }

    fn get(&self, bucket: &str) -> Option<BucketAccess> {
        if let Some(hit) = self.cache.read().unwrap_or_else(|p| p.into_inner()).get(bucket) {
            return hit.clone();
        }
        let found = self.objects.bucket(bucket).ok().map(|info| BucketAccess {
            owner_account: info.owner_account,
            // Stored documents were validated when they were put.
            policy: self
                .objects
                .get_bucket_policy(bucket)
                .ok()
                .flatten()
                .and_then(|text| PolicyDocument::parse(&text, DocKind::Resource).ok())
                .map(Arc::new),
        });
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(bucket.to_owned(), found.clone());
        found
    }

    /// Drops what is cached for `bucket` (its policy or its existence changed).
    pub fn forget(&self, bucket: &str) {
        self.cache.write().unwrap_or_else(|p| p.into_inner()).remove(bucket);
    }
}

/// The bucket a resource ARN names.
fn bucket_of(resource: &str) -> Option<&str> {
    let rest = resource.strip_prefix("arn:aws:s3:::")?;
    let bucket = rest.split('/').next().unwrap_or(rest);
    (!bucket.is_empty()).then_some(bucket)
}

/// s3s access control over the shared authoriser.
#[derive(Debug, Clone)]
pub struct IamAccess {
    iam: Arc<Iam>,
    authz: Arc<Authorizer>,
    policies: Arc<BucketPolicies>,
}

impl IamAccess {
    /// Access control with `authz` over principals known to `iam` and the buckets' policies.
    pub fn new(iam: Arc<Iam>, authz: Arc<Authorizer>, policies: Arc<BucketPolicies>) -> Self {
        Self { iam, authz, policies }
    }

    fn allow(&self, access_key: Option<&str>, action: &str, resource: &str) -> S3Result<()> {
        let principal = access_key
            .and_then(|k| self.iam.principal(k))
            .ok_or_else(|| s3_error!(AccessDenied, "Access Denied"))?;
        let mut ctx = self.authz.context_for(&principal);
        let bucket = if self.authz.enabled() {
            bucket_of(resource).and_then(|b| self.policies.get(b))
        } else {
            None
        };
        if let Some(b) = &bucket {
            // The account owning the resource (CDK's bootstrap policies condition on it).
            ctx.insert("aws:ResourceAccount", b.owner_account.clone());
        }
        let identity = self
            .authz
            .check(&principal, action, resource, &ctx)
            .map_err(|d| s3s::S3Error::with_message(s3s::S3ErrorCode::AccessDenied, d.message));
        if !self.authz.enabled() {
            return identity;
        }
        let Some(bucket) = bucket else {
            return identity;
        };
        let Some(policy) = bucket.policy else {
            return identity;
        };
        let who = kd_iam::policy::Principal::Aws(principal.arn.clone());
        match kd_iam::policy::principal_allowed(&policy, &who, action, resource, &ctx) {
            Decision::ExplicitDeny => Err(s3s::S3Error::with_message(
                s3s::S3ErrorCode::AccessDenied,
                format!(
                    "User: {} is not authorized to perform: {action} on resource: {resource} with an explicit deny in a resource-based policy",
                    principal.arn
                ),
            )),
            Decision::Allow if principal.account_id == bucket.owner_account => Ok(()),
            _ => identity,
        }
    }

    /// Copies read their source: `s3:GetObject` on it (`s3:GetObjectVersion` for a given
    /// source version).
    fn allow_copy_source(&self, access_key: Option<&str>, source: &s3s::dto::CopySource) -> S3Result<()> {
        if let s3s::dto::CopySource::Bucket {
            bucket,
            key,
            version_id,
        } = source
        {
            let action = if version_id.is_some() {
                "s3:GetObjectVersion"
            } else {
                "s3:GetObject"
            };
            self.allow(access_key, action, &format!("arn:aws:s3:::{bucket}/{key}"))?;
        }
        Ok(())
    }

    fn key_of<T>(req: &S3Request<T>) -> Option<&str> {
        req.credentials.as_ref().map(|c| c.access_key.as_str())
    }
}

#[async_trait::async_trait]
impl S3Access for IamAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let key = cx.credentials().map(|c| c.access_key.clone());
        // Session keys must carry their token and be unexpired (s3s verified the signature only).
        if let Some(principal) = key.as_deref().and_then(|k| self.iam.principal(k)) {
            let token = cx
                .headers()
                .get("x-amz-security-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .or_else(|| query_param(cx.uri().query().unwrap_or_default(), "X-Amz-Security-Token"));
            self.iam
                .check_session(&principal, token.as_deref())
                .map_err(|e| match e {
                    kd_iam::TokenError::Expired => s3_error!(ExpiredToken, "The provided token has expired."),
                    kd_iam::TokenError::Invalid => {
                        s3_error!(InvalidToken, "The provided token is malformed or otherwise invalid.")
                    }
                })?;
        }
        let op = cx.s3_op().name();
        if op == "DeleteObjects" {
            // Checked per key in `delete_objects`; the caller must still be known.
            return self
                .iam
                .principal(key.as_deref().unwrap_or_default())
                .map(|_| ())
                .ok_or_else(|| s3_error!(AccessDenied, "Access Denied"));
        }
        let versioned = query_param(cx.uri().query().unwrap_or_default(), "versionId").is_some_and(|v| !v.is_empty());
        let action = if versioned {
            action_of_version(op)
        } else {
            action_of(op)
        };
        self.allow(key.as_deref(), &action, &resource_of(cx.s3_path()))
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        self.allow_copy_source(Self::key_of(req), &req.input.copy_source)
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        self.allow_copy_source(Self::key_of(req), &req.input.copy_source)
    }

    async fn delete_objects(&self, req: &mut S3Request<DeleteObjectsInput>) -> S3Result<()> {
        let bucket = req.input.bucket.clone();
        for o in &req.input.delete.objects {
            let action = if o.version_id.is_some() {
                "s3:DeleteObjectVersion"
            } else {
                "s3:DeleteObject"
            };
            self.allow(Self::key_of(req), action, &format!("arn:aws:s3:::{bucket}/{}", o.key))?;
        }
        Ok(())
    }
}

/// A query parameter's decoded value.
fn query_param(query: &str, name: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_of_resources() {
        assert_eq!(bucket_of("arn:aws:s3:::b"), Some("b"));
        assert_eq!(bucket_of("arn:aws:s3:::b/a/c"), Some("b"));
        assert_eq!(bucket_of("*"), None);
        assert_eq!(bucket_of("arn:aws:s3:::"), None);
    }

    #[test]
    fn actions_and_resources() {
        assert_eq!(action_of("HeadObject"), "s3:GetObject");
        assert_eq!(action_of("ListObjectsV2"), "s3:ListBucket");
        assert_eq!(action_of("UploadPart"), "s3:PutObject");
        assert_eq!(action_of("GetObjectTagging"), "s3:GetObjectTagging");
        assert_eq!(action_of("ListObjectVersions"), "s3:ListBucketVersions");
        assert_eq!(action_of("PutBucketVersioning"), "s3:PutBucketVersioning");
        assert_eq!(action_of("GetBucketVersioning"), "s3:GetBucketVersioning");
        assert_eq!(action_of_version("GetObject"), "s3:GetObjectVersion");
        assert_eq!(action_of_version("HeadObject"), "s3:GetObjectVersion");
        assert_eq!(action_of_version("DeleteObject"), "s3:DeleteObjectVersion");
        assert_eq!(action_of_version("GetObjectTagging"), "s3:GetObjectVersionTagging");
        assert_eq!(action_of_version("PutObjectTagging"), "s3:PutObjectVersionTagging");
        assert_eq!(
            action_of_version("DeleteObjectTagging"),
            "s3:DeleteObjectVersionTagging"
        );
        assert_eq!(action_of_version("PutObject"), "s3:PutObject");
        assert_eq!(resource_of(&S3Path::Root), "*");
        assert_eq!(
            resource_of(&S3Path::Object {
                bucket: "b".into(),
                key: "a/b".into()
            }),
            "arn:aws:s3:::b/a/b"
        );
    }
}
