//! `CloudError`: what every [`CloudProvider`](crate::CloudProvider) method returns on failure.
//!
//! Callers branch on the [`ErrorKind`] through the `is_*` predicates, never on message text.
//! Adapters map their SDK's errors onto a kind and keep the SDK error only as a boxed private
//! [`source`](std::error::Error::source), so no SDK type appears in a public signature.

use std::fmt;
use std::time::Duration;

use crate::types::Operation;

/// `Result` with [`CloudError`] as the default error.
pub type Result<T, E = CloudError> = std::result::Result<T, E>;

/// What went wrong, in terms a controller can act on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The group or instance does not exist (or no longer exists).
    NotFound,
    /// The cloud rejected the call because of a request rate limit; retry after a backoff.
    Throttled,
    /// The cloud has no capacity for this instance type in this location right now.
    InsufficientCapacity,
    /// An account quota (vCPUs, instances) would be exceeded.
    Quota,
    /// The request is malformed or not allowed (unknown type, count above the group's max,
    /// idempotency token reused with different parameters).
    InvalidRequest,
    /// The resource is in a state that forbids the operation (resizing a running instance,
    /// starting a terminated one).
    IncorrectState,
    /// The call did not complete in time; it may or may not have taken effect.
    Timeout,
    /// The cloud answered with a server error (5xx) or the connection broke; the call may or may
    /// not have taken effect.
    Unavailable,
    /// The credentials were refused or lack a permission.
    Unauthorized,
    /// This cloud does not expose the operation (for example a price list).
    Unsupported,
    /// Anything the adapter could not classify.
    Other,
}

impl ErrorKind {
    /// Every kind, for tables and tests.
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::NotFound,
        ErrorKind::Throttled,
        ErrorKind::InsufficientCapacity,
        ErrorKind::Quota,
        ErrorKind::InvalidRequest,
        ErrorKind::IncorrectState,
        ErrorKind::Timeout,
        ErrorKind::Unavailable,
        ErrorKind::Unauthorized,
        ErrorKind::Unsupported,
        ErrorKind::Other,
    ];

    /// The kind as a short snake_case label (used in metrics and logs).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Throttled => "throttled",
            ErrorKind::InsufficientCapacity => "insufficient_capacity",
            ErrorKind::Quota => "quota",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::IncorrectState => "incorrect_state",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Other => "other",
        }
    }

    /// The usual meaning of an HTTP status from a cloud REST API (ARM, Compute Engine, EC2's
    /// query API): 404 not found, 429 throttled, 408/504 timeout, other 5xx unavailable,
    /// 401/403 unauthorized, 409/412 incorrect state, other 4xx invalid request.
    ///
    /// Adapters refine this with the cloud's error code where it says more (capacity, quota).
    pub fn from_http_status(status: u16) -> ErrorKind {
        match status {
            404 | 410 => ErrorKind::NotFound,
            429 => ErrorKind::Throttled,
            408 | 504 => ErrorKind::Timeout,
            401 | 403 => ErrorKind::Unauthorized,
            409 | 412 => ErrorKind::IncorrectState,
            500..=599 => ErrorKind::Unavailable,
            400..=499 => ErrorKind::InvalidRequest,
            _ => ErrorKind::Other,
        }
    }

    /// Whether sending the same request again may succeed: throttling, timeouts and server errors.
    ///
    /// Every port operation is idempotent (launch through its token), so retrying a call whose
    /// outcome is unknown is safe.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled | ErrorKind::Timeout | ErrorKind::Unavailable
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::Throttled => "throttled",
            ErrorKind::InsufficientCapacity => "insufficient capacity",
            ErrorKind::Quota => "quota exceeded",
            ErrorKind::InvalidRequest => "invalid request",
            ErrorKind::IncorrectState => "incorrect state",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Unavailable => "service unavailable",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Other => "failed",
        })
    }
}

/// A failed cloud call: which operation, what kind of failure, an optional detail, and the cause.
///
/// The detail is text the adapter chose to show (an id, a type name); it never carries
/// credentials. The cause is reachable through [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[error("{operation}: {kind}{}", detail_suffix(.detail.as_deref()))]
pub struct CloudError {
    kind: ErrorKind,
    operation: Operation,
    detail: Option<String>,
    retry_after: Option<Duration>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

fn detail_suffix(detail: Option<&str>) -> String {
    match detail {
        Some(d) => format!(": {d}"),
        None => String::new(),
    }
}

impl CloudError {
    /// A new error of `kind` for `operation`, without detail or cause.
    pub fn new(operation: Operation, kind: ErrorKind) -> Self {
        CloudError {
            kind,
            operation,
            detail: None,
            retry_after: None,
            source: None,
        }
    }

    /// Shorthand for a [`ErrorKind::NotFound`] error with a detail naming what was missing.
    pub fn not_found(operation: Operation, what: impl Into<String>) -> Self {
        Self::new(operation, ErrorKind::NotFound).with_detail(what)
    }

    /// Shorthand for an [`ErrorKind::InvalidRequest`] error with a detail saying what is wrong.
    pub fn invalid(operation: Operation, why: impl Into<String>) -> Self {
        Self::new(operation, ErrorKind::InvalidRequest).with_detail(why)
    }

    /// Adds a human-readable detail (must not contain secrets).
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Records the delay the cloud asked for before the next attempt (throttling).
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Attaches the underlying cause (an SDK or transport error), kept private behind `source()`.
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The operation that failed.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The detail text, if any.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The delay the cloud asked for before retrying, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The group or instance does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// The cloud throttled the call.
    pub fn is_throttled(&self) -> bool {
        self.kind == ErrorKind::Throttled
    }

    /// No capacity for the instance type in the location; try another type or location.
    pub fn is_insufficient_capacity(&self) -> bool {
        self.kind == ErrorKind::InsufficientCapacity
    }

    /// An account quota would be exceeded.
    pub fn is_quota(&self) -> bool {
        self.kind == ErrorKind::Quota
    }

    /// The request is invalid; retrying it unchanged cannot succeed.
    pub fn is_invalid_request(&self) -> bool {
        self.kind == ErrorKind::InvalidRequest
    }

    /// The resource's current state forbids the operation.
    pub fn is_incorrect_state(&self) -> bool {
        self.kind == ErrorKind::IncorrectState
    }

    /// The call timed out; its effect is unknown.
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }

    /// The same request may succeed if sent again (see [`ErrorKind::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn display_should_be_lowercase_and_not_repeat_the_source() {
        let io = std::io::Error::other("socket closed by peer");
        let err = CloudError::new(Operation::Launch, ErrorKind::Unavailable)
            .with_detail("token t-1")
            .with_source(io);
        let shown = err.to_string();
        assert_eq!(shown, "launch: service unavailable: token t-1");
        assert!(!shown.contains("socket"));
        assert_eq!(err.source().unwrap().to_string(), "socket closed by peer");
    }

    #[test]
    fn http_statuses_should_map_to_kinds() {
        let table = [
            (404, ErrorKind::NotFound),
            (429, ErrorKind::Throttled),
            (503, ErrorKind::Unavailable),
            (500, ErrorKind::Unavailable),
            (504, ErrorKind::Timeout),
            (403, ErrorKind::Unauthorized),
            (409, ErrorKind::IncorrectState),
            (400, ErrorKind::InvalidRequest),
            (302, ErrorKind::Other),
        ];
        for (status, kind) in table {
            assert_eq!(ErrorKind::from_http_status(status), kind, "{status}");
        }
    }

    #[test]
    fn predicates_should_follow_the_kind() {
        let table: [(ErrorKind, [bool; 6]); 4] = [
            (
                ErrorKind::NotFound,
                [true, false, false, false, false, false],
            ),
            (
                ErrorKind::Throttled,
                [false, true, false, false, false, true],
            ),
            (
                ErrorKind::InsufficientCapacity,
                [false, false, true, false, false, false],
            ),
            (ErrorKind::Quota, [false, false, false, true, false, false]),
        ];
        for (kind, [nf, th, ic, q, inv, retry]) in table {
            let e = CloudError::new(Operation::DescribeGroup, kind);
            assert_eq!(e.is_not_found(), nf, "{kind:?}");
            assert_eq!(e.is_throttled(), th, "{kind:?}");
            assert_eq!(e.is_insufficient_capacity(), ic, "{kind:?}");
            assert_eq!(e.is_quota(), q, "{kind:?}");
            assert_eq!(e.is_invalid_request(), inv, "{kind:?}");
            assert_eq!(e.is_retryable(), retry, "{kind:?}");
        }
        assert!(CloudError::invalid(Operation::ScaleGroup, "x").is_invalid_request());
        let retryable: Vec<_> = ErrorKind::ALL
            .into_iter()
            .filter(|k| k.is_retryable())
            .collect();
        assert_eq!(
            retryable,
            vec![
                ErrorKind::Throttled,
                ErrorKind::Timeout,
                ErrorKind::Unavailable
            ]
        );
    }
}
