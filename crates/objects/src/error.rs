//! The S3 engine's error type: one variant per S3 error the engine can produce.

/// Everything the S3 engine can answer instead of a result. Adapters map every variant to
/// an S3 error code (no wildcard arm).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `NoSuchBucket` (404).
    #[error("The specified bucket does not exist: {bucket}")]
    NoSuchBucket {
        /// The bucket name.
        bucket: String,
    },
    /// `BucketAlreadyOwnedByYou` (409).
    #[error("Your previous request to create the named bucket succeeded and you already own it: {bucket}")]
    BucketAlreadyOwnedByYou {
        /// The bucket name.
        bucket: String,
    },
    /// `BucketAlreadyExists` (409): owned by another account.
    #[error("The requested bucket name is not available: {bucket}")]
    BucketAlreadyExists {
        /// The bucket name.
        bucket: String,
    },
    /// `BucketNotEmpty` (409): objects or in-progress multipart uploads remain.
    #[error("The bucket you tried to delete is not empty: {bucket}")]
    BucketNotEmpty {
        /// The bucket name.
        bucket: String,
    },
    /// `InvalidBucketName` (400).
    #[error("The specified bucket is not valid: {bucket}")]
    InvalidBucketName {
        /// The bucket name.
        bucket: String,
    },
    /// `NoSuchKey` (404).
    #[error("The specified key does not exist: {key}")]
    NoSuchKey {
        /// The object key.
        key: String,
    },
    /// `NoSuchVersion` (404): no version of the key has this id.
    #[error("The specified version does not exist: {key} version {version_id}")]
    NoSuchVersion {
        /// The object key.
        key: String,
        /// The version id asked for.
        version_id: String,
    },
    /// The addressed version is a delete marker: `MethodNotAllowed` (405) when it was
    /// addressed by version id, otherwise `NoSuchKey` (404, the key's current version is a
    /// delete marker). Both answers carry `x-amz-delete-marker: true` and its version id.
    #[error("{}", if *by_version { "The specified method is not allowed against this resource." } else { "The specified key does not exist." })]
    DeleteMarker {
        /// The object key.
        key: String,
        /// The delete marker's version id.
        version_id: String,
        /// It was addressed by version id.
        by_version: bool,
    },
    /// `NoSuchUpload` (404).
    #[error("The specified multipart upload does not exist: {upload_id}")]
    NoSuchUpload {
        /// The upload id.
        upload_id: String,
    },
    /// `InvalidPart` (400): a listed part is missing or its ETag does not match.
    #[error("One or more of the specified parts could not be found (part {part_number}, etag {etag})")]
    InvalidPart {
        /// The offending part number.
        part_number: u32,
        /// The ETag the caller listed.
        etag: String,
    },
    /// `InvalidPartOrder` (400): listed part numbers are not strictly ascending.
    #[error("The list of parts was not in ascending order")]
    InvalidPartOrder,
    /// `EntityTooSmall` (400): a part other than the last is below the minimum part size.
    #[error(
        "Your proposed upload is smaller than the minimum allowed size (part {part_number}: {size} bytes, minimum {min_size})"
    )]
    EntityTooSmall {
        /// The offending part.
        part_number: u32,
        /// Its size.
        size: u64,
        /// The configured minimum.
        min_size: u64,
    },
    /// `EntityTooLarge` (400): the body exceeds the maximum object/part size.
    #[error("Your proposed upload exceeds the maximum allowed size of {max_size} bytes")]
    EntityTooLarge {
        /// The limit.
        max_size: u64,
    },
    /// `InvalidRange` (416).
    #[error("The requested range is not satisfiable (object size {size})")]
    InvalidRange {
        /// The object's size (for `Content-Range: bytes */size`).
        size: u64,
    },
    /// `BadDigest` (400): a supplied Content-MD5 or checksum does not match the body.
    #[error(
        "The {algorithm} you specified did not match the calculated value (expected {expected}, calculated {calculated})"
    )]
    BadDigest {
        /// "Content-MD5", "CRC32", "CRC32C", "CRC64NVME", "SHA1" or "SHA256".
        algorithm: String,
        /// The value the caller supplied.
        expected: String,
        /// The value computed from the body.
        calculated: String,
    },
    /// `InvalidDigest` (400): a supplied Content-MD5 or checksum is not a well-formed value.
    #[error("The {algorithm} you specified is not valid: {value}")]
    InvalidDigest {
        /// Which digest header.
        algorithm: String,
        /// The value the caller supplied.
        value: String,
    },
    /// `InvalidArgument` (400).
    #[error("{0}")]
    InvalidArgument(String),
    /// `InvalidRequest` (400), e.g. copying an object onto itself without changing anything.
    #[error("{0}")]
    InvalidRequest(String),
    /// `InvalidBucketState` (409), e.g. suspending versioning while replication is configured.
    #[error("{0}")]
    InvalidBucketState(String),
    /// `InvalidTag` (400): tag count, key or value outside S3's limits.
    #[error("{0}")]
    InvalidTag(String),
    /// `KeyTooLongError` (400): key longer than 1024 bytes.
    #[error("Your key is too long ({len} bytes, maximum 1024)")]
    KeyTooLong {
        /// The key's length in bytes.
        len: usize,
    },
    /// `IncompleteBody` (400): the body stream failed or ended early.
    #[error("The request body could not be read: {0}")]
    IncompleteBody(String),
    /// The metadata store failed (`InternalError`, 500).
    #[error("metadata store: {0}")]
    Storage(#[from] kd_storage::Error),
    /// A file operation failed (`InternalError`, 500).
    #[error("i/o error while trying to {context}: {source}")]
    Io {
        /// What was being attempted.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An invariant broke, e.g. an undecodable metadata document (`InternalError`, 500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
