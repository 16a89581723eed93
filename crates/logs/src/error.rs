//! The logs engine's errors, one variant per CloudWatch Logs error code it answers with.

/// A logs engine error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// InvalidParameterException: a name, batch, token, pattern or value CloudWatch Logs
    /// refuses.
    #[error("{0}")]
    InvalidParameter(String),
    /// ResourceAlreadyExistsException.
    #[error("{0}")]
    ResourceAlreadyExists(String),
    /// ResourceNotFoundException.
    #[error("{0}")]
    ResourceNotFound(String),
    /// TooManyTagsException: more than 50 tags on a log group.
    #[error("{0}")]
    TooManyTags(String),
    /// The metadata store failed (nothing was acknowledged).
    #[error("storage error: {0}")]
    Storage(#[from] kd_storage::Error),
    /// A bug or a corrupt stored document.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Logs engine result.
pub type Result<T> = std::result::Result<T, Error>;
