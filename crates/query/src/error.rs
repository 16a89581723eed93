//! The engine's errors, one variant per Athena error code its API answers with.

/// An Athena engine error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// InvalidRequestException.
    #[error("{0}")]
    InvalidRequest(String),
    /// AccessDeniedException.
    #[error("{0}")]
    AccessDenied(String),
    /// ResourceNotFoundException (the tagging operations).
    #[error("{0}")]
    ResourceNotFound(String),
    /// MetadataException (catalog lookups of ListDatabases and friends).
    #[error("{0}")]
    Metadata(String),
    /// The metadata store failed.
    #[error("storage error: {0}")]
    Storage(#[from] kd_storage::Error),
    /// A bug or a corrupt stored document.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Engine result.
pub type Result<T> = std::result::Result<T, Error>;
