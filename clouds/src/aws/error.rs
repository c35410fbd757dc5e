//! Mapping of EC2 and Auto Scaling errors onto [`ErrorKind`]s.
//!
//! The mapping uses the documented error codes of the EC2 and Auto Scaling APIs; the SDK error is
//! kept only as the boxed private source of the [`CloudError`].

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

use crate::error::{CloudError, ErrorKind};
use crate::types::Operation;

/// Errors raised while building the AWS adapter (before any call is made).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The region is empty.
    #[error("aws region must not be empty")]
    EmptyRegion,
    /// The endpoint override is not an `http://` or `https://` URL.
    #[error("aws endpoint_url {url:?} must start with http:// or https://")]
    BadEndpoint {
        /// The endpoint as given.
        url: String,
    },
    /// The per-attempt timeout is zero.
    #[error("aws attempt timeout must be greater than zero")]
    ZeroTimeout,
    /// Static credentials have an empty access key id or secret.
    #[error("aws static credentials need a non-empty access key id and secret")]
    EmptyCredentials,
    /// A tagged group's id or settings are wrong.
    #[error("aws tagged group {group:?}: {reason}")]
    BadTaggedGroup {
        /// The group id as given.
        group: String,
        /// What is wrong.
        reason: String,
    },
}

/// The kind for an EC2 / Auto Scaling error code, falling back on the HTTP status.
pub(crate) fn kind_for_code(code: &str, status: u16) -> ErrorKind {
    match code {
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "TooManyRequests"
        | "SlowDown" => ErrorKind::Throttled,
        "InsufficientInstanceCapacity"
        | "InsufficientHostCapacity"
        | "InsufficientReservedInstanceCapacity"
        | "InsufficientCapacity"
        | "InsufficientCapacityOnHost" => ErrorKind::InsufficientCapacity,
        "InstanceLimitExceeded"
        | "VcpuLimitExceeded"
        | "MaxSpotInstanceCountExceeded"
        | "LimitExceeded"
        | "ResourceLimitExceeded" => ErrorKind::Quota,
        c if c.ends_with(".NotFound")
            || c.ends_with(".NotFoundException")
            || c == "InvalidInstanceID.Malformed"
            || c == "InvalidLaunchTemplateId.Malformed" =>
        {
            ErrorKind::NotFound
        }
        "IncorrectInstanceState"
        | "IncorrectState"
        | "ResourceInUse"
        | "ScalingActivityInProgress"
        | "ResourceContention" => ErrorKind::IncorrectState,
        "AuthFailure"
        | "UnauthorizedOperation"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "AccessDenied"
        | "AccessDeniedException"
        | "OptInRequired" => ErrorKind::Unauthorized,
        "IdempotentParameterMismatch"
        | "InvalidParameterValue"
        | "InvalidParameterCombination"
        | "InvalidParameter"
        | "MissingParameter"
        | "ValidationError"
        | "InvalidInstanceType"
        | "InvalidInstanceAttributeValue"
        | "UnsupportedHibernationConfiguration"
        | "UnsupportedOperation"
        | "Unsupported"
        | "InvalidAMIID.Malformed"
        | "InvalidAMIID.Unavailable" => ErrorKind::InvalidRequest,
        "InternalError" | "InternalFailure" | "ServiceUnavailable" | "Unavailable" => {
            ErrorKind::Unavailable
        }
        _ => match status {
            429 => ErrorKind::Throttled,
            500..=599 => ErrorKind::Unavailable,
            401 | 403 => ErrorKind::Unauthorized,
            404 => ErrorKind::NotFound,
            400..=499 => ErrorKind::InvalidRequest,
            _ => ErrorKind::Other,
        },
    }
}

/// Maps an SDK error of any EC2 or Auto Scaling operation onto a [`CloudError`].
///
/// The detail is the error code (never the message, which may echo request parameters).
pub(crate) fn map_sdk<E>(operation: Operation, err: SdkError<E, HttpResponse>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (kind, detail) = match &err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("").to_owned();
            let status = service.raw().status().as_u16();
            (
                kind_for_code(&code, status),
                Some(code).filter(|c| !c.is_empty()),
            )
        }
        SdkError::TimeoutError(_) => (ErrorKind::Timeout, None),
        SdkError::DispatchFailure(failure) => {
            if failure.is_timeout() {
                (ErrorKind::Timeout, None)
            } else {
                (
                    ErrorKind::Unavailable,
                    Some("request not delivered".to_owned()),
                )
            }
        }
        // The connection broke or the response could not be read: the call may have happened.
        SdkError::ResponseError(_) => (
            ErrorKind::Unavailable,
            Some("no readable response".to_owned()),
        ),
        SdkError::ConstructionFailure(_) => (ErrorKind::InvalidRequest, None),
        _ => (ErrorKind::Other, None),
    };
    let mut out = CloudError::new(operation, kind);
    if let Some(detail) = detail {
        out = out.with_detail(detail);
    }
    // A throttling answer may say how long to wait; the retry layer honours it.
    if let SdkError::ServiceError(service) = &err {
        if let Some(secs) = service
            .raw()
            .headers()
            .get("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            out = out.with_retry_after(std::time::Duration::from_secs(secs));
        }
    }
    out.with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_should_map_to_the_documented_kinds() {
        let table = [
            ("RequestLimitExceeded", 503, ErrorKind::Throttled),
            ("Throttling", 400, ErrorKind::Throttled),
            (
                "InsufficientInstanceCapacity",
                500,
                ErrorKind::InsufficientCapacity,
            ),
            ("InstanceLimitExceeded", 400, ErrorKind::Quota),
            ("VcpuLimitExceeded", 400, ErrorKind::Quota),
            ("LimitExceeded", 400, ErrorKind::Quota),
            ("InvalidInstanceID.NotFound", 400, ErrorKind::NotFound),
            ("InvalidInstanceID.Malformed", 400, ErrorKind::NotFound),
            (
                "InvalidLaunchTemplateName.NotFoundException",
                400,
                ErrorKind::NotFound,
            ),
            ("IncorrectInstanceState", 400, ErrorKind::IncorrectState),
            ("ScalingActivityInProgress", 400, ErrorKind::IncorrectState),
            (
                "IdempotentParameterMismatch",
                400,
                ErrorKind::InvalidRequest,
            ),
            ("ValidationError", 400, ErrorKind::InvalidRequest),
            ("InvalidInstanceType", 400, ErrorKind::InvalidRequest),
            ("UnauthorizedOperation", 403, ErrorKind::Unauthorized),
            ("InternalError", 500, ErrorKind::Unavailable),
            ("SomethingNew", 503, ErrorKind::Unavailable),
            ("SomethingNew", 429, ErrorKind::Throttled),
            ("SomethingNew", 400, ErrorKind::InvalidRequest),
            ("", 0, ErrorKind::Other),
        ];
        for (code, status, kind) in table {
            assert_eq!(kind_for_code(code, status), kind, "{code} {status}");
        }
    }
}
