//! The engine's errors, one variant per S3 Control error code the job API answers with.

/// A batch engine error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// NotFoundException: no such job in this account and region.
    #[error("{0}")]
    NotFound(String),
    /// BadRequestException: a request the engine cannot accept.
    #[error("{0}")]
    BadRequest(String),
    /// IdempotencyException: a ClientRequestToken reused with a different request.
    #[error("{0}")]
    Idempotency(String),
    /// JobStatusException: the requested status change is not allowed now.
    #[error("{0}")]
    JobStatus(String),
    /// TooManyTagsException.
    #[error("{0}")]
    TooManyTags(String),
    /// InvalidNextTokenException.
    #[error("{0}")]
    InvalidNextToken(String),
    /// TooManyRequestsException: too many jobs not yet terminal.
    #[error("{0}")]
    TooManyRequests(String),
    /// The metadata store failed (nothing was acknowledged).
    #[error("storage error: {0}")]
    Storage(#[from] kd_storage::Error),
    /// A bug or a corrupt stored document.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Engine result.
pub type Result<T> = std::result::Result<T, Error>;
