//! The exhaustive mapping from the engine's errors to CloudFormation's codes and statuses
//! (no wildcard arm: a new engine variant forces a decision here).

use http::StatusCode;
use kd_stacks::Error;
use kd_wire::ServiceError;

/// What CloudFormation answers for an internal failure (the cause is logged, not sent).
const INTERNAL: &str = "An internal error occurred.";

/// The wire error of an engine error.
pub fn to_service_error(e: &Error) -> ServiceError {
    let (status, code) = match e {
        Error::Validation(_) | Error::StackNotFound(_) => (StatusCode::BAD_REQUEST, "ValidationError"),
        Error::InsufficientCapabilities(_) => (StatusCode::BAD_REQUEST, "InsufficientCapabilitiesException"),
        Error::AlreadyExists(_) => (StatusCode::BAD_REQUEST, "AlreadyExistsException"),
        Error::ChangeSetNotFound(_) => (StatusCode::NOT_FOUND, "ChangeSetNotFound"),
        Error::InvalidChangeSetStatus(_) => (StatusCode::BAD_REQUEST, "InvalidChangeSetStatus"),
        Error::Storage(_) | Error::Internal(_) => {
            tracing::error!(error = %e, "CloudFormation request failed");
            return ServiceError::with_status(StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure", INTERNAL);
        }
    };
    ServiceError::with_status(status, code, e.to_string())
}

/// A `ValidationError` with this message.
pub fn validation(msg: impl Into<String>) -> ServiceError {
    ServiceError::client("ValidationError", msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_cloudformation() {
        let e = to_service_error(&Error::StackNotFound("s".into()));
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("ValidationError", "Stack with id s does not exist")
        );
        let e = to_service_error(&Error::AlreadyExists("s".into()));
        assert_eq!(
            (e.code.as_str(), e.status),
            ("AlreadyExistsException", StatusCode::BAD_REQUEST)
        );
        let e = to_service_error(&Error::ChangeSetNotFound("c".into()));
        assert_eq!(
            (e.code.as_str(), e.status),
            ("ChangeSetNotFound", StatusCode::NOT_FOUND)
        );
        let e = to_service_error(&Error::Storage("disk on fire".into()));
        assert_eq!((e.code.as_str(), e.message.as_str()), ("InternalFailure", INTERNAL));
    }
}
