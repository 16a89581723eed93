//! The parameter store's errors, one variant per SSM error code it answers with.

/// A parameter store error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// ValidationException: a name, value, filter or page size SSM refuses.
    #[error("{0}")]
    Validation(String),
    /// ParameterNotFound.
    #[error("{0}")]
    ParameterNotFound(String),
    /// ParameterVersionNotFound: `name:version` names a version that does not exist.
    #[error("{0}")]
    ParameterVersionNotFound(String),
    /// ParameterAlreadyExists: PutParameter without `Overwrite` on an existing name.
    #[error("{0}")]
    ParameterAlreadyExists(String),
    /// ParameterPatternMismatchException: the value does not match `AllowedPattern`.
    #[error("{0}")]
    PatternMismatch(String),
    /// HierarchyLevelLimitExceededException: more than 15 levels.
    #[error("{0}")]
    HierarchyLevelLimitExceeded(String),
    /// InvalidNextToken.
    #[error("{0}")]
    InvalidNextToken(String),
    /// InvalidFilterKey.
    #[error("{0}")]
    InvalidFilterKey(String),
    /// InvalidFilterOption.
    #[error("{0}")]
    InvalidFilterOption(String),
    /// InvalidFilterValue.
    #[error("{0}")]
    InvalidFilterValue(String),
    /// The metadata store failed (nothing was acknowledged).
    #[error("storage error: {0}")]
    Storage(#[from] kd_storage::Error),
    /// A bug or a corrupt stored document.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Parameter store result.
pub type Result<T> = std::result::Result<T, Error>;
