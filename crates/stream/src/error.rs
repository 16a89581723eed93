//! The engine's errors: domain facts, mapped to AWS codes by `api-kinesis`.

/// Everything a stream operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such stream in the caller's account and region (or it is not ACTIVE/UPDATING for I/O).
    #[error("Stream {stream} under account {account} not found.")]
    StreamNotFound {
        /// Stream name.
        stream: String,
        /// Account id.
        account: String,
    },
    /// CreateStream on a name that exists.
    #[error("Stream {stream} under account {account} already exists.")]
    StreamExists {
        /// Stream name.
        stream: String,
        /// Account id.
        account: String,
    },
    /// The stream is in a state that forbids the operation (`ResourceInUseException`).
    #[error("{0}")]
    ResourceInUse(String),
    /// No such shard in the stream.
    #[error("{0}")]
    ShardNotFound(String),
    /// A request member is semantically invalid (`InvalidArgumentException`).
    #[error("{0}")]
    InvalidArgument(String),
    /// A request is invalid in a way AWS reports as `ValidationException`.
    #[error("{0}")]
    Validation(String),
    /// A quota would be exceeded (`LimitExceededException`).
    #[error("{0}")]
    LimitExceeded(String),
    /// A shard iterator is older than five minutes.
    #[error("{0}")]
    ExpiredIterator(String),
    /// A ListShards/ListStreams token is older than five minutes.
    #[error("{0}")]
    ExpiredNextToken(String),
    /// The log could not write or read (disk full, I/O error): never acknowledged.
    #[error("storage failure: {0}")]
    Storage(#[from] kd_storage::Error),
    /// A bug or an impossible state.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Engine result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
