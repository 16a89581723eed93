//! The S3 operations: each turns an s3s typed input into one `objects` engine call and the
//! answer into an s3s typed output. Conditional requests, response-header overrides, the
//! bucket owner check and the error mapping live here; storage semantics are the engine's.

use std::collections::BTreeMap;

use base64::Engine as _;
use futures_util::StreamExt as _;
use kd_objects::{ByteRange, ChecksumAlgorithm, ChecksumRequest, Error as OErr, ObjectInfo, PutOptions, Versioning};
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use crate::S3Api;

/// Whether the rules are all V1 (`Prefix`) or all V2 (`Filter`), as S3 requires.
fn v1_or_v2_alone(rules: &[s3s::dto::ReplicationRule]) -> bool {
    rules.iter().all(|r| r.filter.is_some()) || rules.iter().all(|r| r.filter.is_none())
}

/// Maps every engine error to S3's code, status and message.
pub fn s3_err(e: OErr) -> S3Error {
    let msg = e.to_string();
    let code = match &e {
        OErr::NoSuchBucket { .. } => S3ErrorCode::NoSuchBucket,
        OErr::BucketAlreadyOwnedByYou { .. } => S3ErrorCode::BucketAlreadyOwnedByYou,
        OErr::BucketAlreadyExists { .. } => S3ErrorCode::BucketAlreadyExists,
        OErr::BucketNotEmpty { .. } => S3ErrorCode::BucketNotEmpty,
        OErr::InvalidBucketName { .. } => S3ErrorCode::InvalidBucketName,
        OErr::NoSuchKey { .. } => S3ErrorCode::NoSuchKey,
        OErr::NoSuchUpload { .. } => S3ErrorCode::NoSuchUpload,
        OErr::NoSuchVersion { .. } => S3ErrorCode::NoSuchVersion,
        OErr::DeleteMarker {
            version_id, by_version, ..
        } => {
            let code = if *by_version {
                S3ErrorCode::MethodNotAllowed
            } else {
                S3ErrorCode::NoSuchKey
            };
            let mut err = S3Error::with_message(code, msg);
            let mut headers = http::HeaderMap::new();
            headers.insert("x-amz-delete-marker", http::HeaderValue::from_static("true"));
            if let Ok(v) = http::HeaderValue::from_str(version_id) {
                headers.insert("x-amz-version-id", v);
            }
            if *by_version {
                headers.insert(http::header::ALLOW, http::HeaderValue::from_static("DELETE"));
            }
            err.set_headers(headers);
            return err;
        }
        OErr::InvalidPart { .. } => S3ErrorCode::InvalidPart,
        OErr::InvalidPartOrder => S3ErrorCode::InvalidPartOrder,
        OErr::EntityTooSmall { .. } => S3ErrorCode::EntityTooSmall,
        OErr::EntityTooLarge { .. } => S3ErrorCode::EntityTooLarge,
        OErr::InvalidRange { .. } => S3ErrorCode::InvalidRange,
        OErr::BadDigest { .. } => S3ErrorCode::BadDigest,
        OErr::InvalidDigest { .. } => S3ErrorCode::InvalidDigest,
        OErr::InvalidArgument(_) => S3ErrorCode::InvalidArgument,
        OErr::InvalidRequest(_) => S3ErrorCode::InvalidRequest,
        OErr::InvalidBucketState(_) => S3ErrorCode::InvalidBucketState,
        OErr::IncompleteBody(_) => S3ErrorCode::IncompleteBody,
        OErr::InvalidTag(_) => S3ErrorCode::InvalidTag,
        OErr::KeyTooLong { .. } => S3ErrorCode::KeyTooLongError,
        OErr::Storage(_) | OErr::Io { .. } | OErr::Internal(_) => {
            tracing::error!(error = %e, "S3 storage failure; the request is not acknowledged");
            return S3Error::with_message(
                S3ErrorCode::InternalError,
                "We encountered an internal error. Please try again.",
            );
        }
    };
    S3Error::with_message(code, msg)
}

fn ts(ms: i64) -> Timestamp {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map(Timestamp::from)
        .unwrap_or_default()
}

fn secs_of(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

fn etag(info_etag: &str) -> ETag {
    ETag::Strong(info_etag.to_owned())
}

fn etag_matches(cond: &ETagCondition, current: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value().trim_matches('"') == current,
    }
}

/// S3's conditional-request rules for GET/HEAD (and copy sources, with `copy = true`, where
/// a failed If-None-Match or If-Modified-Since is 412 rather than 304).
fn check_conditions(
    info: &ObjectInfo,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
    copy: bool,
) -> S3Result<()> {
    let modified = info.last_modified_ms.div_euclid(1000);
    if let Some(c) = if_match {
        if !etag_matches(c, &info.etag) {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
    } else if let Some(t) = if_unmodified_since
        && modified > secs_of(t)
    {
        return Err(s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        ));
    }
    let not_modified = || {
        if copy {
            s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            )
        } else {
            S3Error::new(S3ErrorCode::NotModified)
        }
    };
    if let Some(c) = if_none_match {
        if etag_matches(c, &info.etag) {
            return Err(not_modified());
        }
    } else if let Some(t) = if_modified_since
        && modified <= secs_of(t)
    {
        return Err(not_modified());
    }
    Ok(())
}

/// One `<Contents>` entry of a listing.
fn list_entry(o: ObjectInfo, owner: Option<Owner>, enc: &dyn Fn(String) -> String) -> Object {
    Object {
        e_tag: Some(etag(&o.etag)),
        key: Some(enc(o.key)),
        last_modified: Some(ts(o.last_modified_ms)),
        owner,
        size: i64::try_from(o.size).ok(),
        storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
        ..Default::default()
    }
}

fn parse_range(r: &Range) -> ByteRange {
    match *r {
        Range::Int {
            first,
            last: Some(last),
        } => ByteRange::FromTo(first, last),
        Range::Int { first, last: None } => ByteRange::From(first),
        Range::Suffix { length } => ByteRange::Suffix(length),
    }
}

fn parse_copy_range(s: &str) -> S3Result<ByteRange> {
    let r = Range::parse(s).map_err(|_| s3_error!(InvalidArgument, "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"))?;
    Ok(parse_range(&r))
}

fn parse_tagging_header(s: &str) -> S3Result<BTreeMap<String, String>> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(s).map_err(|_| s3_error!(InvalidArgument, "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without tag name duplicates."))?;
    let n = pairs.len();
    let map: BTreeMap<String, String> = pairs.into_iter().collect();
    if map.len() != n {
        return Err(s3_error!(InvalidTag, "Cannot provide multiple Tags with the same key"));
    }
    Ok(map)
}

fn tag_map(set: TagSet) -> S3Result<BTreeMap<String, String>> {
    let n = set.len();
    let map: BTreeMap<String, String> = set
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect();
    if map.len() != n {
        return Err(s3_error!(InvalidTag, "Cannot provide multiple Tags with the same key"));
    }
    Ok(map)
}

fn tag_set(map: BTreeMap<String, String>) -> TagSet {
    map.into_iter()
        .map(|(k, v)| Tag {
            key: Some(k),
            value: Some(v),
        })
        .collect()
}

/// The checksum a request asks for: the algorithm (from `x-amz-sdk-checksum-algorithm` or
/// the header carrying a value) and the value to verify, if one came as a header.
fn checksum_request(
    algorithm: Option<&s3s::dto::ChecksumAlgorithm>,
    crc32: Option<&String>,
    crc32c: Option<&String>,
    sha256: Option<&String>,
) -> Option<ChecksumRequest> {
    let with_value = [
        (ChecksumAlgorithm::Crc32, crc32),
        (ChecksumAlgorithm::Crc32c, crc32c),
        (ChecksumAlgorithm::Sha256, sha256),
    ]
    .into_iter()
    .find_map(|(a, v)| v.map(|v| (a, v.clone())));
    if let Some((algorithm, v)) = with_value {
        return Some(ChecksumRequest {
            algorithm,
            expected_b64: Some(v),
        });
    }
    algorithm
        .and_then(|a| ChecksumAlgorithm::parse(a.as_str()))
        .map(|algorithm| ChecksumRequest {
            algorithm,
            expected_b64: None,
        })
}

struct Checksums {
    crc32: Option<String>,
    crc32c: Option<String>,
    sha256: Option<String>,
}

fn checksums(c: &Option<(ChecksumAlgorithm, String)>) -> Checksums {
    let mut out = Checksums {
        crc32: None,
        crc32c: None,
        sha256: None,
    };
    if let Some((a, v)) = c {
        match a {
            ChecksumAlgorithm::Crc32 => out.crc32 = Some(v.clone()),
            ChecksumAlgorithm::Crc32c => out.crc32c = Some(v.clone()),
            ChecksumAlgorithm::Sha256 => out.sha256 = Some(v.clone()),
            _ => {}
        }
    }
    out
}

fn body_stream(
    body: Option<StreamingBlob>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Unpin + 'static {
    let s: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>> = match body
    {
        Some(b) => Box::pin(b.map(|r| r.map_err(std::io::Error::other))),
        None => Box::pin(futures_util::stream::empty()),
    };
    s
}

fn url_encode(s: &str) -> String {
    // S3's encoding-type=url: like URLEncoder, `/` kept readable is NOT what S3 does; S3
    // encodes everything but unreserved characters, and spaces as `+`.
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn put_options(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    cache_control: Option<String>,
    expires: Option<&Timestamp>,
    content_language: Option<String>,
    metadata: Option<Metadata>,
) -> PutOptions {
    PutOptions {
        content_type,
        content_encoding,
        content_disposition,
        cache_control,
        expires: expires.and_then(|t| {
            let mut buf = Vec::new();
            t.format(TimestampFormat::HttpDate, &mut buf).ok()?;
            String::from_utf8(buf).ok()
        }),
        content_language,
        user_metadata: metadata.map(|m| m.into_iter().collect()).unwrap_or_default(),
        ..PutOptions::default()
    }
}

fn parse_expires(s: &Option<String>) -> Option<Timestamp> {
    s.as_deref()
        .and_then(|v| Timestamp::parse(TimestampFormat::HttpDate, v).ok())
}

fn copy_source(src: &CopySource) -> S3Result<(String, String, Option<String>)> {
    match src {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => Ok((
            bucket.to_string(),
            key.to_string(),
            version_id.as_deref().map(str::to_owned),
        )),
        _ => Err(s3_error!(NotImplemented, "Access point copy sources are not supported")),
    }
}

impl S3Api {
    fn caller(&self, creds: Option<&s3s::auth::Credentials>) -> S3Result<String> {
        self.account_of(creds)
            .ok_or_else(|| s3_error!(AccessDenied, "Access Denied"))
    }

    /// The bucket, if the caller's account owns it (another account's bucket is 403).
    fn owned_bucket<T>(&self, req: &S3Request<T>, bucket: &str) -> S3Result<kd_objects::BucketInfo> {
        let account = self.caller(req.credentials.as_ref())?;
        let b = self.objects.bucket(bucket).map_err(s3_err)?;
        if b.owner_account != account {
            return Err(s3_error!(AccessDenied, "Access Denied"));
        }
        Ok(b)
    }
}

#[async_trait::async_trait]
impl S3 for S3Api {
    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let account = self.caller(req.credentials.as_ref())?;
        let request_region = req
            .region
            .as_ref()
            .map(|r| r.as_str().to_owned())
            .unwrap_or_else(|| "us-east-1".to_owned());
        let constraint = req
            .input
            .create_bucket_configuration
            .as_ref()
            .and_then(|c| c.location_constraint.as_ref())
            .map(|c| c.as_str().to_owned());
        let region = match constraint.as_deref() {
            None | Some("") if request_region == "us-east-1" => "us-east-1".to_owned(),
            None | Some("") => {
                return Err(s3_error!(
                    IllegalLocationConstraintException,
                    "The unspecified location constraint is incompatible for the region specific endpoint this request was sent to."
                ));
            }
            Some("EU") => "eu-west-1".to_owned(),
            Some(c) if c != request_region => {
                return Err(s3_error!(
                    IllegalLocationConstraintException,
                    "The {c} location constraint is incompatible for the region specific endpoint this request was sent to."
                ));
            }
            Some(c) => c.to_owned(),
        };
        let bucket = req.input.bucket.clone();
        let created = self
            .objects
            .create_bucket(&account, &region, &bucket)
            .await
            .map_err(s3_err);
        self.forget_policy(&bucket);
        created?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let deleted = self.objects.delete_bucket(&req.input.bucket).await.map_err(s3_err);
        self.forget_policy(&req.input.bucket);
        deleted?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let doc = kd_iam::policy::PolicyDocument::parse(&i.policy, kd_iam::policy::DocKind::Resource)
            .map_err(|e| s3s::S3Error::with_message(s3s::S3ErrorCode::MalformedPolicy, e.to_string()))?;
        // Every statement must be about this bucket or its objects.
        let value: serde_json::Value = serde_json::from_str(doc.json()).map_err(|_| malformed_policy())?;
        if !policy_resources_in_bucket(&value, &i.bucket) {
            return Err(s3s::S3Error::with_message(
                s3s::S3ErrorCode::MalformedPolicy,
                "Policy has invalid resource",
            ));
        }
        let stored = self
            .objects
            .put_bucket_policy(&i.bucket, Some(i.policy))
            .await
            .map_err(s3_err);
        self.forget_policy(&i.bucket);
        stored?;
        Ok(S3Response::new(PutBucketPolicyOutput {}))
    }

    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let policy = self.objects.get_bucket_policy(&req.input.bucket).map_err(s3_err)?;
        match policy {
            Some(policy) => Ok(S3Response::new(GetBucketPolicyOutput { policy: Some(policy) })),
            None => Err(s3_error!(NoSuchBucketPolicy, "The bucket policy does not exist")),
        }
    }

    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let stored = self
            .objects
            .put_bucket_policy(&req.input.bucket, None)
            .await
            .map_err(s3_err);
        self.forget_policy(&req.input.bucket);
        stored?;
        Ok(S3Response::new(DeleteBucketPolicyOutput {}))
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        let b = self.owned_bucket(&req, &req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(b.region),
            ..Default::default()
        }))
    }

    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let account = self.caller(req.credentials.as_ref())?;
        let prefix = req.input.prefix.clone().unwrap_or_default();
        let buckets = self
            .objects
            .list_buckets(&account)
            .map_err(s3_err)?
            .into_iter()
            .filter(|b| b.name.starts_with(&prefix))
            .map(|b| Bucket {
                bucket_region: Some(b.region),
                creation_date: Some(ts(b.created_ms)),
                name: Some(b.name),
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(Owner {
                display_name: Some(account.clone()),
                id: Some(account),
            }),
            prefix: req.input.prefix,
            continuation_token: None,
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let b = self.owned_bucket(&req, &req.input.bucket)?;
        let location_constraint = (b.region != "us-east-1").then(|| BucketLocationConstraint::from(b.region));
        Ok(S3Response::new(GetBucketLocationOutput { location_constraint }))
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let trailers = req.trailing_headers.clone();
        let i = req.input;
        let mut opts = put_options(
            i.content_type,
            i.content_encoding,
            i.content_disposition,
            i.cache_control,
            i.expires.as_ref(),
            i.content_language,
            i.metadata,
        );
        if let Some(t) = &i.tagging {
            opts.tags = parse_tagging_header(t)?;
        }
        opts.checksum = checksum_request(
            i.checksum_algorithm.as_ref(),
            i.checksum_crc32.as_ref(),
            i.checksum_crc32c.as_ref(),
            i.checksum_sha256.as_ref(),
        );
        opts.content_md5 = i.content_md5;
        let info = self
            .objects
            .put_object(&i.bucket, &i.key, body_stream(i.body), opts)
            .await
            .map_err(s3_err)?;
        self.verify_trailer(trailers, &info).await?;
        let c = checksums(&info.checksum);
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&info.etag)),
            checksum_crc32: c.crc32,
            checksum_crc32c: c.crc32c,
            checksum_sha256: c.sha256,
            size: i64::try_from(info.size).ok(),
            version_id: info.version_id,
            ..Default::default()
        }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let range = i.range.as_ref().map(parse_range);
        let conditions = |info: &ObjectInfo| {
            check_conditions(
                info,
                i.if_match.as_ref(),
                i.if_none_match.as_ref(),
                i.if_modified_since.as_ref(),
                i.if_unmodified_since.as_ref(),
                false,
            )
        };
        // One read serves the conditions and the body (the body stream is lazy). Conditions
        // are judged before the range, as S3 does, so an unsatisfiable range re-reads the head.
        let version = i.version_id.as_deref();
        let (info, content_range, body) = match self.objects.get_object_version(&i.bucket, &i.key, version, range).await
        {
            Ok(found) => found,
            Err(e @ OErr::InvalidRange { .. }) => {
                conditions(
                    &self
                        .objects
                        .head_object_version(&i.bucket, &i.key, version)
                        .map_err(s3_err)?,
                )?;
                return Err(s3_err(e));
            }
            Err(e) => return Err(s3_err(e)),
        };
        conditions(&info)?;
        let length = content_range.map_or(info.size, |(a, b)| b - a + 1);
        let want_checksum = i
            .checksum_mode
            .as_ref()
            .is_some_and(|m| m.as_str() == ChecksumMode::ENABLED)
            && range.is_none();
        let c = if want_checksum {
            checksums(&info.checksum)
        } else {
            checksums(&None)
        };
        let h = info.headers;
        Ok(S3Response::new(GetObjectOutput {
            accept_ranges: Some("bytes".to_owned()),
            body: Some(StreamingBlob::wrap(sync_wrapper::SyncStream::new(body))),
            cache_control: i.response_cache_control.or(h.cache_control),
            content_disposition: i.response_content_disposition.or(h.content_disposition),
            content_encoding: i.response_content_encoding.or(h.content_encoding),
            content_language: i.response_content_language.or(h.content_language),
            content_type: i.response_content_type.or(h.content_type),
            expires: i.response_expires.or_else(|| parse_expires(&h.expires)),
            content_length: i64::try_from(length).ok(),
            content_range: content_range.map(|(a, b)| format!("bytes {a}-{b}/{}", info.size)),
            e_tag: Some(etag(&info.etag)),
            last_modified: Some(ts(info.last_modified_ms)),
            metadata: (!h.user_metadata.is_empty()).then(|| h.user_metadata.into_iter().collect()),
            parts_count: info.parts_count.and_then(|n| i32::try_from(n).ok()),
            tag_count: (info.tag_count > 0).then_some(info.tag_count as i32),
            checksum_crc32: c.crc32,
            checksum_crc32c: c.crc32c,
            checksum_sha256: c.sha256,
            replication_status: info
                .replication_status
                .map(|r| ReplicationStatus::from(r.as_str().to_owned())),
            version_id: info.version_id,
            ..Default::default()
        }))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let info = self
            .objects
            .head_object_version(&i.bucket, &i.key, i.version_id.as_deref())
            .map_err(s3_err)?;
        check_conditions(
            &info,
            i.if_match.as_ref(),
            i.if_none_match.as_ref(),
            i.if_modified_since.as_ref(),
            i.if_unmodified_since.as_ref(),
            false,
        )?;
        let want_checksum = i
            .checksum_mode
            .as_ref()
            .is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
        let c = if want_checksum {
            checksums(&info.checksum)
        } else {
            checksums(&None)
        };
        let h = info.headers;
        Ok(S3Response::new(HeadObjectOutput {
            accept_ranges: Some("bytes".to_owned()),
            cache_control: i.response_cache_control.or(h.cache_control),
            content_disposition: i.response_content_disposition.or(h.content_disposition),
            content_encoding: i.response_content_encoding.or(h.content_encoding),
            content_language: i.response_content_language.or(h.content_language),
            content_type: i.response_content_type.or(h.content_type),
            expires: i.response_expires.or_else(|| parse_expires(&h.expires)),
            content_length: i64::try_from(info.size).ok(),
            e_tag: Some(etag(&info.etag)),
            last_modified: Some(ts(info.last_modified_ms)),
            metadata: (!h.user_metadata.is_empty()).then(|| h.user_metadata.into_iter().collect()),
            parts_count: info.parts_count.and_then(|n| i32::try_from(n).ok()),
            checksum_crc32: c.crc32,
            checksum_crc32c: c.crc32c,
            checksum_sha256: c.sha256,
            replication_status: info
                .replication_status
                .map(|r| ReplicationStatus::from(r.as_str().to_owned())),
            version_id: info.version_id,
            ..Default::default()
        }))
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let out = self
            .objects
            .delete_object_version(&i.bucket, &i.key, i.version_id.as_deref())
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(DeleteObjectOutput {
            delete_marker: out.delete_marker.then_some(true),
            version_id: out.version_id,
            ..Default::default()
        }))
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let quiet = req.input.delete.quiet.unwrap_or(false);
        if req.input.delete.objects.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ));
        }
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for o in req.input.delete.objects {
            match self
                .objects
                .delete_object_version(&req.input.bucket, &o.key, o.version_id.as_deref())
                .await
            {
                Ok(out) => {
                    if !quiet {
                        // A new delete marker: DeleteMarker + DeleteMarkerVersionId. A removed
                        // version: VersionId (+ DeleteMarker if it was a marker).
                        let (version_id, marker_id) = match (&o.version_id, out.delete_marker) {
                            (Some(_), true) => (out.version_id.clone(), out.version_id),
                            (Some(_), false) => (out.version_id, None),
                            (None, _) => (None, out.version_id),
                        };
                        deleted.push(DeletedObject {
                            key: Some(o.key),
                            version_id,
                            delete_marker: out.delete_marker.then_some(true),
                            delete_marker_version_id: if out.delete_marker { marker_id } else { None },
                        });
                    }
                }
                Err(e) => {
                    let err = s3_err(e);
                    errors.push(Error {
                        code: Some(err.code().as_str().to_owned()),
                        key: Some(o.key),
                        message: err.message().map(str::to_owned),
                        version_id: o.version_id,
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let (src_bucket, src_key, src_version) = copy_source(&i.copy_source)?;
        let src_b = self.objects.bucket(&src_bucket).map_err(s3_err)?;
        if Some(src_b.owner_account) != self.account_of(req.credentials.as_ref()) {
            return Err(s3_error!(AccessDenied, "Access Denied"));
        }
        let src = self
            .objects
            .head_object_version(&src_bucket, &src_key, src_version.as_deref())
            .map_err(s3_err)?;
        check_conditions(
            &src,
            i.copy_source_if_match.as_ref(),
            i.copy_source_if_none_match.as_ref(),
            i.copy_source_if_modified_since.as_ref(),
            i.copy_source_if_unmodified_since.as_ref(),
            true,
        )?;
        let replace = i
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if !replace && src_bucket == i.bucket && src_key == i.key && src_version.is_none() {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        let opts = replace.then(|| {
            put_options(
                i.content_type.clone(),
                i.content_encoding.clone(),
                i.content_disposition.clone(),
                i.cache_control.clone(),
                i.expires.as_ref(),
                i.content_language.clone(),
                i.metadata.clone(),
            )
        });
        let info = self
            .objects
            .copy_object_version_if(
                &src_bucket,
                &src_key,
                src_version.as_deref(),
                &i.bucket,
                &i.key,
                opts,
                None,
            )
            .await
            .map_err(s3_err)?
            .map_err(|failed| s3_error!(InternalError, "unconditional copy refused: {failed}"))?;
        // Tags follow the TaggingDirective: COPY (default) keeps the source's.
        let tags = if i
            .tagging_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == TaggingDirective::REPLACE)
        {
            i.tagging
                .as_deref()
                .map(parse_tagging_header)
                .transpose()?
                .unwrap_or_default()
        } else {
            self.objects
                .get_object_version_tags(&src_bucket, &src_key, src.version_id.as_deref())
                .map_err(s3_err)?
        };
        if !tags.is_empty() {
            self.objects
                .put_object_version_tags(&i.bucket, &i.key, info.version_id.as_deref(), tags)
                .await
                .map_err(s3_err)?;
        }
        let c = checksums(&info.checksum);
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&info.etag)),
                last_modified: Some(ts(info.last_modified_ms)),
                checksum_crc32: c.crc32,
                checksum_crc32c: c.crc32c,
                checksum_sha256: c.sha256,
                ..Default::default()
            }),
            version_id: info.version_id,
            copy_source_version_id: src.version_id,
            ..Default::default()
        }))
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let b = self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let max_keys = i.max_keys.unwrap_or(1000).clamp(0, 1000) as usize;
        let after = match &i.continuation_token {
            Some(t) => Some(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(t.as_bytes())
                    .ok()
                    .and_then(|v| String::from_utf8(v).ok())
                    .ok_or_else(|| s3_error!(InvalidArgument, "The continuation token provided is incorrect"))?,
            ),
            None => i.start_after.clone(),
        };
        let prefix = i.prefix.clone().unwrap_or_default();
        let page = self
            .objects
            .list_objects(&i.bucket, &prefix, i.delimiter.as_deref(), after.as_deref(), max_keys)
            .map_err(s3_err)?;
        let url = i
            .encoding_type
            .as_ref()
            .is_some_and(|e| e.as_str() == EncodingType::URL);
        let enc = |s: String| if url { url_encode(&s) } else { s };
        let owner = i.fetch_owner.unwrap_or(false).then(|| Owner {
            display_name: Some(b.owner_account.clone()),
            id: Some(b.owner_account.clone()),
        });
        let key_count = (page.objects.len() + page.common_prefixes.len()) as i32;
        let next = page
            .is_truncated
            .then(|| page.next_marker.clone())
            .flatten()
            .map(|m| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(m.as_bytes()));
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(i.bucket),
            prefix: Some(enc(prefix)),
            max_keys: Some(max_keys as i32),
            key_count: Some(key_count),
            continuation_token: i.continuation_token,
            is_truncated: Some(page.is_truncated),
            next_continuation_token: next,
            contents: Some(
                page.objects
                    .into_iter()
                    .map(|o| list_entry(o, owner.clone(), &enc))
                    .collect(),
            ),
            common_prefixes: Some(
                page.common_prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(enc(p)) })
                    .collect(),
            ),
            delimiter: i.delimiter.map(enc),
            encoding_type: i.encoding_type,
            start_after: i.start_after.map(enc),
            request_charged: None,
        }))
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let b = self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let max_keys = i.max_keys.unwrap_or(1000).clamp(0, 1000) as usize;
        let prefix = i.prefix.clone().unwrap_or_default();
        let page = self
            .objects
            .list_objects(
                &i.bucket,
                &prefix,
                i.delimiter.as_deref(),
                i.marker.as_deref(),
                max_keys,
            )
            .map_err(s3_err)?;
        let url = i
            .encoding_type
            .as_ref()
            .is_some_and(|e| e.as_str() == EncodingType::URL);
        let enc = |s: String| if url { url_encode(&s) } else { s };
        let owner = Owner {
            display_name: Some(b.owner_account.clone()),
            id: Some(b.owner_account),
        };
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(i.bucket),
            prefix: Some(enc(prefix)),
            marker: Some(i.marker.map(enc).unwrap_or_default()),
            max_keys: Some(max_keys as i32),
            is_truncated: Some(page.is_truncated),
            next_marker: page.is_truncated.then(|| page.next_marker.clone()).flatten().map(enc),
            contents: Some(
                page.objects
                    .into_iter()
                    .map(|o| list_entry(o, Some(owner.clone()), &enc))
                    .collect(),
            ),
            common_prefixes: Some(
                page.common_prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(enc(p)) })
                    .collect(),
            ),
            delimiter: i.delimiter.map(enc),
            encoding_type: i.encoding_type,
            request_charged: None,
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let mut opts = put_options(
            i.content_type,
            i.content_encoding,
            i.content_disposition,
            i.cache_control,
            i.expires.as_ref(),
            i.content_language,
            i.metadata,
        );
        if let Some(t) = &i.tagging {
            opts.tags = parse_tagging_header(t)?;
        }
        opts.checksum = checksum_request(i.checksum_algorithm.as_ref(), None, None, None);
        let upload_id = self
            .objects
            .create_multipart(&i.bucket, &i.key, opts)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(upload_id),
            checksum_algorithm: i.checksum_algorithm,
            ..Default::default()
        }))
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let part = u32::try_from(i.part_number).map_err(|_| {
            s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            )
        })?;
        let checksum = checksum_request(
            i.checksum_algorithm.as_ref(),
            i.checksum_crc32.as_ref(),
            i.checksum_crc32c.as_ref(),
            i.checksum_sha256.as_ref(),
        );
        let p = self
            .objects
            .upload_part(&i.bucket, &i.key, &i.upload_id, part, body_stream(i.body), checksum)
            .await
            .map_err(s3_err)?;
        let c = checksums(&p.checksum);
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(etag(&p.etag)),
            checksum_crc32: c.crc32,
            checksum_crc32c: c.crc32c,
            checksum_sha256: c.sha256,
            ..Default::default()
        }))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let (src_bucket, src_key, src_version) = copy_source(&i.copy_source)?;
        if src_version.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "UploadPartCopy from a specific source version is not supported"
            ));
        }
        let src = self.objects.head_object(&src_bucket, &src_key).map_err(s3_err)?;
        check_conditions(
            &src,
            i.copy_source_if_match.as_ref(),
            i.copy_source_if_none_match.as_ref(),
            i.copy_source_if_modified_since.as_ref(),
            i.copy_source_if_unmodified_since.as_ref(),
            true,
        )?;
        let part = u32::try_from(i.part_number).map_err(|_| {
            s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            )
        })?;
        let range = i.copy_source_range.as_deref().map(parse_copy_range).transpose()?;
        let p = self
            .objects
            .upload_part_copy(&i.bucket, &i.key, &i.upload_id, part, &src_bucket, &src_key, range)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(etag(&p.etag)),
                last_modified: Some(ts(p.last_modified_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let parts = i.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
        if parts.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ));
        }
        let mut list = Vec::with_capacity(parts.len());
        for p in parts {
            let n = p
                .part_number
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| s3_error!(InvalidPart, "One or more of the specified parts could not be found."))?;
            let e = p
                .e_tag
                .map(|e| e.value().trim_matches('"').to_owned())
                .unwrap_or_default();
            list.push((n, e));
        }
        let info = self
            .objects
            .complete_multipart(&i.bucket, &i.key, &i.upload_id, list)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(i.bucket.clone()),
            key: Some(i.key.clone()),
            e_tag: Some(etag(&info.etag)),
            location: Some(format!("/{}/{}", i.bucket, i.key)),
            version_id: info.version_id,
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        self.objects
            .abort_multipart(&i.bucket, &i.key, &i.upload_id)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let max = i.max_uploads.unwrap_or(1000).clamp(1, 1000) as usize;
        let (uploads, truncated) = self
            .objects
            .list_multipart_uploads(
                &i.bucket,
                i.prefix.as_deref().unwrap_or_default(),
                i.key_marker.as_deref(),
                i.upload_id_marker.as_deref(),
                max,
            )
            .map_err(s3_err)?;
        let last = uploads.last().map(|u| (u.key.clone(), u.upload_id.clone()));
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(i.bucket),
            is_truncated: Some(truncated),
            key_marker: i.key_marker,
            upload_id_marker: i.upload_id_marker,
            max_uploads: Some(max as i32),
            prefix: i.prefix,
            next_key_marker: truncated.then(|| last.as_ref().map(|l| l.0.clone())).flatten(),
            next_upload_id_marker: truncated.then(|| last.as_ref().map(|l| l.1.clone())).flatten(),
            uploads: Some(
                uploads
                    .into_iter()
                    .map(|u| MultipartUpload {
                        initiated: Some(ts(u.initiated_ms)),
                        key: Some(u.key),
                        upload_id: Some(u.upload_id),
                        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let max = i.max_parts.unwrap_or(1000).clamp(1, 1000) as usize;
        let marker = i.part_number_marker.and_then(|m| u32::try_from(m).ok());
        let (parts, truncated) = self
            .objects
            .list_parts(&i.bucket, &i.key, &i.upload_id, marker, max)
            .map_err(s3_err)?;
        let next = parts.last().and_then(|p| i32::try_from(p.part_number).ok());
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(i.upload_id),
            is_truncated: Some(truncated),
            max_parts: Some(max as i32),
            part_number_marker: i.part_number_marker,
            next_part_number_marker: if truncated { next } else { None },
            parts: Some(
                parts
                    .into_iter()
                    .map(|p| {
                        let c = checksums(&p.checksum);
                        Part {
                            e_tag: Some(etag(&p.etag)),
                            last_modified: Some(ts(p.last_modified_ms)),
                            part_number: i32::try_from(p.part_number).ok(),
                            size: i64::try_from(p.size).ok(),
                            checksum_crc32: c.crc32,
                            checksum_crc32c: c.crc32c,
                            checksum_sha256: c.sha256,
                            ..Default::default()
                        }
                    })
                    .collect(),
            ),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        }))
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let version = i.version_id.as_deref();
        let info = self
            .objects
            .head_object_version(&i.bucket, &i.key, version)
            .map_err(s3_err)?;
        let tags = self
            .objects
            .get_object_version_tags(&i.bucket, &i.key, info.version_id.as_deref().or(version))
            .map_err(s3_err)?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set: tag_set(tags),
            version_id: info.version_id,
        }))
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let tags = tag_map(i.tagging.tag_set)?;
        let version_id = self
            .objects
            .put_object_version_tags(&i.bucket, &i.key, i.version_id.as_deref(), tags)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(PutObjectTaggingOutput { version_id }))
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let version_id = self
            .objects
            .put_object_version_tags(&i.bucket, &i.key, i.version_id.as_deref(), BTreeMap::new())
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(DeleteObjectTaggingOutput { version_id }))
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let tags = self.objects.get_bucket_tags(&req.input.bucket).map_err(s3_err)?;
        if tags.is_empty() {
            return Err(s3_error!(NoSuchTagSet, "The TagSet does not exist"));
        }
        Ok(S3Response::new(GetBucketTaggingOutput { tag_set: tag_set(tags) }))
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let tags = tag_map(i.tagging.tag_set)?;
        self.objects.put_bucket_tags(&i.bucket, tags).await.map_err(s3_err)?;
        Ok(S3Response::new(PutBucketTaggingOutput {}))
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        self.objects
            .put_bucket_tags(&req.input.bucket, BTreeMap::new())
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(DeleteBucketTaggingOutput {}))
    }

    async fn put_bucket_notification_configuration(
        &self,
        req: S3Request<PutBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketNotificationConfigurationOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        crate::notify::validate(&i.notification_configuration)?;
        if let Some(check) = &self.destinations
            && i.skip_destination_validation != Some(true)
        {
            let owner = self.objects.bucket(&i.bucket).map_err(s3_err)?.owner_account;
            for c in i
                .notification_configuration
                .lambda_function_configurations
                .as_deref()
                .unwrap_or_default()
            {
                if let Err(reason) = check.check_function(&c.lambda_function_arn, &i.bucket, &owner) {
                    tracing::debug!(function = %c.lambda_function_arn, %reason, "notification destination refused");
                    return Err(s3_error!(
                        InvalidArgument,
                        "Unable to validate the following destination configurations"
                    ));
                }
            }
        }
        let json = serde_json::to_string(&i.notification_configuration)
            .map_err(|e| s3_error!(InternalError, "cannot store the configuration: {e}"))?;
        self.objects
            .put_bucket_notification(&i.bucket, json)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(PutBucketNotificationConfigurationOutput {}))
    }

    async fn get_bucket_notification_configuration(
        &self,
        req: S3Request<GetBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketNotificationConfigurationOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let cfg: NotificationConfiguration = match self
            .objects
            .get_bucket_notification(&req.input.bucket)
            .map_err(s3_err)?
        {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| s3_error!(InternalError, "stored configuration is unreadable: {e}"))?,
            None => NotificationConfiguration::default(),
        };
        Ok(S3Response::new(GetBucketNotificationConfigurationOutput {
            event_bridge_configuration: cfg.event_bridge_configuration,
            lambda_function_configurations: cfg.lambda_function_configurations,
            queue_configurations: cfg.queue_configurations,
            topic_configurations: cfg.topic_configurations,
        }))
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        self.put_bucket_versioning_impl(req).await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let state = self.objects.get_bucket_versioning(&req.input.bucket).map_err(s3_err)?;
        Ok(S3Response::new(GetBucketVersioningOutput {
            status: state.map(|s| BucketVersioningStatus::from_static(s.as_str())),
            mfa_delete: None,
        }))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        self.list_object_versions_impl(req).await
    }

    async fn put_bucket_replication(
        &self,
        req: S3Request<PutBucketReplicationInput>,
    ) -> S3Result<S3Response<PutBucketReplicationOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let enabled = |bucket: &str| -> S3Result<bool> {
            Ok(self.objects.get_bucket_versioning(bucket).map_err(s3_err)? == Some(Versioning::Enabled))
        };
        if !enabled(&i.bucket)? {
            return Err(s3_error!(
                InvalidRequest,
                "Versioning must be 'Enabled' on the bucket to apply a replication configuration"
            ));
        }
        let cfg = &i.replication_configuration;
        if !cfg.role.starts_with("arn:aws:iam::") {
            return Err(s3_error!(InvalidArgument, "Invalid ARN"));
        }
        if cfg.rules.is_empty() || cfg.rules.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ));
        }
        let mut rules = Vec::with_capacity(cfg.rules.len());
        let mut ids = std::collections::HashSet::new();
        let mut priorities = std::collections::HashSet::new();
        for (n, rule) in cfg.rules.iter().enumerate() {
            let dest = rule
                .destination
                .bucket
                .strip_prefix("arn:aws:s3:::")
                .ok_or_else(|| s3_error!(InvalidArgument, "Invalid bucket ARN"))?;
            if self.objects.bucket(dest).is_err() {
                return Err(s3_error!(InvalidRequest, "Destination bucket must exist."));
            }
            if !enabled(dest)? {
                return Err(s3_error!(
                    InvalidRequest,
                    "Destination bucket must have versioning enabled."
                ));
            }
            if dest == i.bucket {
                return Err(s3_error!(
                    InvalidRequest,
                    "Destination bucket cannot be the same as the source bucket."
                ));
            }
            let id = rule.id.clone().unwrap_or_else(|| format!("rule-{}", n + 1));
            if id.len() > 255 {
                return Err(s3_error!(InvalidArgument, "ID must be no longer than 255 characters"));
            }
            if !ids.insert(id.clone()) {
                return Err(s3_error!(InvalidRequest, "Rule Id must be unique."));
            }
            // V1 rules (a `Prefix` of their own) vs V2 rules (`Filter`, with `Priority` and
            // `DeleteMarkerReplication`).
            let (prefix, tags) = match (&rule.prefix, &rule.filter) {
                (Some(_), Some(_)) => {
                    return Err(s3_error!(
                        MalformedXML,
                        "The XML you provided was not well-formed or did not validate against our published schema"
                    ));
                }
                (p, None) => (p.clone().unwrap_or_default(), Vec::new()),
                (None, Some(f)) => {
                    let tag = |t: &s3s::dto::Tag| -> S3Result<(String, String)> {
                        match (&t.key, &t.value) {
                            (Some(k), Some(v)) => Ok((k.clone(), v.clone())),
                            _ => Err(s3_error!(InvalidArgument, "A tag must have a key and a value")),
                        }
                    };
                    match (&f.prefix, &f.tag, &f.and) {
                        (p, None, None) => (p.clone().unwrap_or_default(), Vec::new()),
                        (None, Some(t), None) => (String::new(), vec![tag(t)?]),
                        (None, None, Some(a)) => (
                            a.prefix.clone().unwrap_or_default(),
                            a.tags.iter().flatten().map(tag).collect::<S3Result<Vec<_>>>()?,
                        ),
                        _ => {
                            return Err(s3_error!(
                                MalformedXML,
                                "The XML you provided was not well-formed or did not validate against our published schema"
                            ));
                        }
                    }
                }
            };
            let v2 = rule.filter.is_some();
            if v2 && rule.delete_marker_replication.is_none() {
                return Err(s3_error!(
                    InvalidRequest,
                    "DeleteMarkerReplication must be specified for this version of Cross Region Replication configuration schema."
                ));
            }
            let delete_markers = rule
                .delete_marker_replication
                .as_ref()
                .and_then(|d| d.status.as_ref())
                .is_some_and(|s| s.as_str() == "Enabled");
            if delete_markers && !tags.is_empty() {
                return Err(s3_error!(
                    InvalidRequest,
                    "Delete marker replication is not supported if any Tag filter is specified."
                ));
            }
            let priority = rule.priority.unwrap_or(0);
            if v2 && !priorities.insert((dest.to_owned(), priority)) {
                return Err(s3_error!(
                    InvalidRequest,
                    "Found overlapping priority in rules for the same destination bucket."
                ));
            }
            rules.push(kd_objects::ReplicationRule {
                id,
                priority,
                enabled: rule.status.as_str() == "Enabled",
                prefix,
                tags,
                destination_bucket: dest.to_owned(),
                storage_class: rule.destination.storage_class.as_ref().map(|c| c.as_str().to_owned()),
                delete_marker_replication: delete_markers,
            });
        }
        if !v1_or_v2_alone(&cfg.rules) {
            return Err(s3_error!(
                InvalidRequest,
                "Rules of a replication configuration must all use Prefix, or all use Filter."
            ));
        }
        let json =
            serde_json::to_string(cfg).map_err(|e| s3_error!(InternalError, "cannot store the configuration: {e}"))?;
        let engine_cfg = kd_objects::ReplicationConfig {
            role: cfg.role.clone(),
            rules,
        };
        self.objects
            .set_bucket_replication(&i.bucket, Some((json, engine_cfg)))
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(PutBucketReplicationOutput {}))
    }

    async fn get_bucket_replication(
        &self,
        req: S3Request<GetBucketReplicationInput>,
    ) -> S3Result<S3Response<GetBucketReplicationOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let Some(json) = self.objects.get_bucket_replication(&req.input.bucket).map_err(s3_err)? else {
            return Err(s3_error!(
                ReplicationConfigurationNotFoundError,
                "The replication configuration was not found"
            ));
        };
        let cfg: ReplicationConfiguration = serde_json::from_str(&json)
            .map_err(|e| s3_error!(InternalError, "stored configuration is unreadable: {e}"))?;
        Ok(S3Response::new(GetBucketReplicationOutput {
            replication_configuration: Some(cfg),
        }))
    }

    async fn delete_bucket_replication(
        &self,
        req: S3Request<DeleteBucketReplicationInput>,
    ) -> S3Result<S3Response<DeleteBucketReplicationOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        self.objects
            .set_bucket_replication(&req.input.bucket, None)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(DeleteBucketReplicationOutput {}))
    }
}

impl S3Api {
    async fn put_bucket_versioning_impl(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let cfg = i.versioning_configuration;
        if i.mfa.is_some()
            || cfg
                .mfa_delete
                .as_ref()
                .is_some_and(|m| m.as_str() == MFADelete::ENABLED)
        {
            return Err(s3_error!(
                NotImplemented,
                "MFA Delete is not supported: configure versioning without MfaDelete (or with MfaDelete Disabled)"
            ));
        }
        let state = match cfg.status.as_ref().map(|s| s.as_str()) {
            Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
            Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
            _ => {
                return Err(s3_error!(
                    MalformedXML,
                    "The XML you provided was not well-formed or did not validate against our published schema"
                ));
            }
        };
        self.objects
            .put_bucket_versioning(&i.bucket, state)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(PutBucketVersioningOutput {}))
    }

    async fn list_object_versions_impl(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let b = self.owned_bucket(&req, &req.input.bucket)?;
        let i = req.input;
        let max_keys = i.max_keys.unwrap_or(1000).clamp(0, 1000) as usize;
        let prefix = i.prefix.clone().unwrap_or_default();
        // A version-id-marker needs a key-marker (S3: InvalidArgument).
        if i.version_id_marker.as_deref().is_some_and(|v| !v.is_empty()) && i.key_marker.is_none() {
            return Err(s3_error!(
                InvalidArgument,
                "A version-id marker cannot be specified without a key marker."
            ));
        }
        let page = self
            .objects
            .list_object_versions(
                &i.bucket,
                &prefix,
                i.delimiter.as_deref(),
                i.key_marker.as_deref(),
                i.version_id_marker.as_deref().filter(|v| !v.is_empty()),
                max_keys,
            )
            .map_err(s3_err)?;
        let url = i
            .encoding_type
            .as_ref()
            .is_some_and(|e| e.as_str() == EncodingType::URL);
        let enc = |s: String| if url { url_encode(&s) } else { s };
        let owner = Owner {
            display_name: Some(b.owner_account.clone()),
            id: Some(b.owner_account),
        };
        let mut versions = Vec::new();
        let mut markers = Vec::new();
        for v in page.versions {
            if v.delete_marker {
                markers.push(DeleteMarkerEntry {
                    is_latest: Some(v.is_latest),
                    key: Some(enc(v.info.key)),
                    last_modified: Some(ts(v.info.last_modified_ms)),
                    owner: Some(owner.clone()),
                    version_id: Some(v.version_id),
                });
            } else {
                versions.push(ObjectVersion {
                    e_tag: Some(etag(&v.info.etag)),
                    is_latest: Some(v.is_latest),
                    key: Some(enc(v.info.key)),
                    last_modified: Some(ts(v.info.last_modified_ms)),
                    owner: Some(owner.clone()),
                    size: i64::try_from(v.info.size).ok(),
                    storage_class: Some(ObjectVersionStorageClass::from_static(
                        ObjectVersionStorageClass::STANDARD,
                    )),
                    version_id: Some(v.version_id),
                    ..Default::default()
                });
            }
        }
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(i.bucket),
            prefix: Some(enc(prefix)),
            key_marker: Some(i.key_marker.map(enc).unwrap_or_default()),
            version_id_marker: Some(i.version_id_marker.unwrap_or_default()),
            max_keys: Some(max_keys as i32),
            is_truncated: Some(page.is_truncated),
            next_key_marker: page.next_key_marker.map(enc),
            next_version_id_marker: page.next_version_id_marker,
            versions: Some(versions),
            delete_markers: Some(markers),
            common_prefixes: Some(
                page.common_prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(enc(p)) })
                    .collect(),
            ),
            delimiter: i.delimiter.map(enc),
            encoding_type: i.encoding_type,
            request_charged: None,
        }))
    }

    /// With `STREAMING-UNSIGNED-PAYLOAD-TRAILER` the checksum arrives after the body: compare
    /// it with what was computed; on a mismatch the object is removed and BadDigest returned.
    async fn verify_trailer(&self, trailers: Option<s3s::TrailingHeaders>, info: &ObjectInfo) -> S3Result<()> {
        let Some(t) = trailers else { return Ok(()) };
        let Some(headers) = t.take() else { return Ok(()) };
        let Some((algo, value)) = &info.checksum else {
            return Ok(());
        };
        let name = format!("x-amz-checksum-{}", algo.as_str().to_ascii_lowercase());
        if let Some(sent) = headers.get(name.as_str()).and_then(|v| v.to_str().ok())
            && sent != value
        {
            // Remove exactly what was written: in a versioned bucket, that version.
            let _ = self
                .objects
                .delete_object_version(&info.bucket, &info.key, info.version_id.as_deref())
                .await;
            return Err(s3_error!(
                BadDigest,
                "The {} you specified did not match the calculated checksum.",
                algo.as_str()
            ));
        }
        Ok(())
    }
}

/// Base64 of raw digest bytes, as S3 prints checksums.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn malformed_policy() -> s3s::S3Error {
    s3s::S3Error::with_message(s3s::S3ErrorCode::MalformedPolicy, "Policies must be valid JSON")
}

/// Whether every `Resource` of a bucket policy is the bucket or inside it (S3's
/// `Policy has invalid resource` otherwise). `NotResource` statements are not checked.
fn policy_resources_in_bucket(doc: &serde_json::Value, bucket: &str) -> bool {
    let statements = match doc.get("Statement") {
        Some(serde_json::Value::Array(a)) => a.iter().collect::<Vec<_>>(),
        Some(one) => vec![one],
        None => return true,
    };
    let inside = |r: &str| {
        r.strip_prefix("arn:aws:s3:::")
            .is_some_and(|rest| rest == bucket || rest.starts_with(&format!("{bucket}/")))
    };
    statements.iter().all(|st| match st.get("Resource") {
        Some(serde_json::Value::String(r)) => inside(r),
        Some(serde_json::Value::Array(rs)) => rs.iter().all(|r| r.as_str().is_some_and(inside)),
        _ => true,
    })
}
