//! The engine's errors, one variant per API Gateway error code the control plane answers with.

/// A gateway engine error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// NotFoundException (404): no such API, resource, method, integration, deployment or stage.
    #[error("{0}")]
    NotFound(String),
    /// ConflictException (409): the thing exists already.
    #[error("{0}")]
    Conflict(String),
    /// BadRequestException (400): a request the engine cannot accept.
    #[error("{0}")]
    BadRequest(String),
    /// LimitExceededException (429): too many of something.
    #[error("{0}")]
    LimitExceeded(String),
    /// The metadata store failed (nothing was acknowledged).
    #[error("storage error: {0}")]
    Storage(#[from] kd_storage::Error),
    /// A bug or a corrupt stored document.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Engine result.
pub type Result<T> = std::result::Result<T, Error>;
