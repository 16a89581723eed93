//! The engine's errors, one variant per AWS error code the Lambda API returns.

/// A Lambda engine error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// 404 ResourceNotFoundException.
    #[error("{0}")]
    ResourceNotFound(String),
    /// 409 ResourceConflictException.
    #[error("{0}")]
    ResourceConflict(String),
    /// 400 InvalidParameterValueException.
    #[error("{0}")]
    InvalidParameterValue(String),
    /// 400 InvalidRequestContentException.
    #[error("{0}")]
    InvalidRequestContent(String),
    /// 413 RequestTooLargeException.
    #[error("{0}")]
    RequestTooLarge(String),
    /// 429 TooManyRequestsException (with its `Reason`).
    #[error("{message}")]
    TooManyRequests {
        /// Message.
        message: String,
        /// `Reason` (`ReservedFunctionConcurrentInvocationLimitExceeded`, …).
        reason: String,
    },
    /// 412 PreconditionFailedException (RevisionId mismatch).
    #[error("{0}")]
    PreconditionFailed(String),
    /// 400 PolicyLengthExceededException.
    #[error("{0}")]
    PolicyLengthExceeded(String),
    /// 400 CodeStorageExceededException.
    #[error("{0}")]
    CodeStorageExceeded(String),
    /// 500 ServiceException (storage or host failure).
    #[error("{0}")]
    Service(String),
}

impl From<kd_storage::Error> for Error {
    fn from(e: kd_storage::Error) -> Self {
        Error::Service(format!("metadata store: {e}"))
    }
}

impl From<crate::code::CodeError> for Error {
    fn from(e: crate::code::CodeError) -> Self {
        match e {
            crate::code::CodeError::Invalid(m) => Error::InvalidParameterValue(m),
            crate::code::CodeError::Io(e) => Error::Service(format!("code store: {e}")),
        }
    }
}

/// Engine result.
pub type Result<T> = std::result::Result<T, Error>;
