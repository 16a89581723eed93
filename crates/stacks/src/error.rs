//! The engine's errors, each with the CloudFormation error code and HTTP status it is
//! answered with ([`Error::code`], [`Error::status`]; exhaustive, no wildcard arm).
//!
//! The template engine raises `ValidationError`s (a bad template, parameter or rule, with
//! CloudFormation's message), `InsufficientCapabilitiesException` and, for a broken invariant,
//! `InternalFailure`. The lifecycle ([`crate::lifecycle`]) adds stack and change-set
//! facts (a missing stack, a duplicate name, a change set in the wrong state) and the
//! metadata store's failures.

/// What can go wrong in a CloudFormation call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `ValidationError` (400): a bad template, parameter, name or state, with AWS's message.
    #[error("{0}")]
    Validation(String),
    /// `InsufficientCapabilitiesException` (400): IAM resources without the capability.
    #[error("Requires capabilities : [{0}]")]
    InsufficientCapabilities(String),
    /// `AlreadyExistsException` (400): a live stack already has this name.
    #[error("Stack [{0}] already exists")]
    AlreadyExists(String),
    /// `ValidationError` (400): no stack has this name (or id): `Stack with id X does not exist`.
    #[error("Stack with id {0} does not exist")]
    StackNotFound(String),
    /// `ChangeSetNotFound` (404): no such change set.
    #[error("ChangeSet [{0}] does not exist")]
    ChangeSetNotFound(String),
    /// `InvalidChangeSetStatus` (400): the change set cannot be executed (or deleted) now.
    #[error("{0}")]
    InvalidChangeSetStatus(String),
    /// `InternalFailure` (500): the metadata store failed.
    #[error("metadata store: {0}")]
    Storage(String),
    /// `InternalFailure` (500): an invariant broke (e.g. a resolver asked for a resource the
    /// lifecycle has not created yet).
    #[error("{0}")]
    Internal(String),
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A `ValidationError` with this message.
    pub fn validation(msg: impl Into<String>) -> Error {
        Error::Validation(msg.into())
    }

    /// `Template format error: …` (what CloudFormation says of a malformed template).
    pub fn format(msg: impl AsRef<str>) -> Error {
        Error::Validation(format!("Template format error: {}", msg.as_ref()))
    }

    /// `Template error: …` (what CloudFormation says when evaluating intrinsics).
    pub fn template(msg: impl AsRef<str>) -> Error {
        Error::Validation(format!("Template error: {}", msg.as_ref()))
    }

    /// The CloudFormation error code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Validation(_) => "ValidationError",
            Error::InsufficientCapabilities(_) => "InsufficientCapabilitiesException",
            Error::AlreadyExists(_) => "AlreadyExistsException",
            Error::StackNotFound(_) => "ValidationError",
            Error::ChangeSetNotFound(_) => "ChangeSetNotFound",
            Error::InvalidChangeSetStatus(_) => "InvalidChangeSetStatus",
            Error::Storage(_) | Error::Internal(_) => "InternalFailure",
        }
    }

    /// The HTTP status of the error answer.
    pub fn status(&self) -> u16 {
        match self {
            Error::Validation(_)
            | Error::InsufficientCapabilities(_)
            | Error::AlreadyExists(_)
            | Error::StackNotFound(_)
            | Error::InvalidChangeSetStatus(_) => 400,
            Error::ChangeSetNotFound(_) => 404,
            Error::Storage(_) | Error::Internal(_) => 500,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses() {
        let v = Error::format("At least one Resources member must be defined.");
        assert_eq!(v.code(), "ValidationError");
        assert_eq!(v.status(), 400);
        assert_eq!(
            v.to_string(),
            "Template format error: At least one Resources member must be defined."
        );
        assert_eq!(Error::template("x").to_string(), "Template error: x");
        let c = Error::InsufficientCapabilities("CAPABILITY_IAM".into());
        assert_eq!(c.code(), "InsufficientCapabilitiesException");
        assert_eq!(c.status(), 400);
        assert_eq!(c.to_string(), "Requires capabilities : [CAPABILITY_IAM]");
        let i = Error::Internal("boom".into());
        assert_eq!((i.code(), i.status()), ("InternalFailure", 500));
    }
}
