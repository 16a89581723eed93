//! The error type shared by the log and the metadata store.

use std::path::PathBuf;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system level I/O operation failed.
    #[error("i/o error while trying to {context}: {source}")]
    Io {
        /// What was being attempted (e.g. "append to /data/x/00000000000000000000.log").
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// On-disk data failed validation in a way that recovery cannot repair by cutting a tail.
    #[error("corrupt data in {}: {detail}", path.display())]
    Corrupt {
        /// The offending file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The log refuses writes: an earlier write or sync failed and the automatic recovery
    /// (truncate the active segment to its last committed length and sync) failed as well.
    #[error("log is faulted and could not recover: {cause}")]
    Faulted {
        /// The original failure and the recovery failure.
        cause: String,
    },
    /// The log's writer has stopped (the log was dropped or destroyed).
    #[error("log is closed")]
    Closed,
    /// An input exceeds a hard format limit.
    #[error("{what} too large: {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Which input ("record key", "batch").
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The metadata database reported an error.
    #[error("metadata store error: {0}")]
    Meta(#[from] redb::Error),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A copy of this error for another waiter of the same failed operation (errors are not
    /// `Clone` because `std::io::Error` is not).
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Io { context, source } => Error::Io {
                context: context.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Corrupt { path, detail } => Error::Corrupt {
                path: path.clone(),
                detail: detail.clone(),
            },
            Error::Faulted { cause } => Error::Faulted { cause: cause.clone() },
            Error::Closed => Error::Closed,
            Error::TooLarge { what, size, limit } => Error::TooLarge {
                what,
                size: *size,
                limit: *limit,
            },
            Error::Meta(e) => Error::Faulted { cause: e.to_string() },
        }
    }
}
