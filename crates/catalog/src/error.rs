//! The catalog's errors, one variant per Glue error code it answers with.

/// A catalog error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// AlreadyExistsException.
    #[error("{0}")]
    AlreadyExists(String),
    /// EntityNotFoundException.
    #[error("{0}")]
    EntityNotFound(String),
    /// InvalidInputException.
    #[error("{0}")]
    InvalidInput(String),
    /// ConcurrentModificationException: UpdateTable's `VersionId` is not the current one.
    #[error("{0}")]
    ConcurrentModification(String),
    /// ResourceNumberLimitExceededException.
    #[error("{0}")]
    ResourceNumberLimitExceeded(String),
    /// The metadata store failed (nothing was acknowledged).
    #[error("storage error: {0}")]
    Storage(#[from] kd_storage::Error),
    /// A bug or a corrupt stored document.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The Glue error code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::AlreadyExists(_) => "AlreadyExistsException",
            Error::EntityNotFound(_) => "EntityNotFoundException",
            Error::InvalidInput(_) => "InvalidInputException",
            Error::ConcurrentModification(_) => "ConcurrentModificationException",
            Error::ResourceNumberLimitExceeded(_) => "ResourceNumberLimitExceededException",
            Error::Storage(_) | Error::Internal(_) => "InternalServiceException",
        }
    }
}

/// Catalog result.
pub type Result<T> = std::result::Result<T, Error>;
