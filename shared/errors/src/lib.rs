//! gRPC error construction for the whole suite, so every service answers a given
//! failure the same way: the right `tonic::Code` plus `google.rpc` details
//! (BadRequest field violations, ResourceInfo, PreconditionFailure, RetryInfo).
//! Services keep one error enum per layer and convert it to `Status` in one place
//! using these builders.

pub mod money;
pub mod names;
pub mod time;

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

pub use tonic_types;

/// Collects every problem with a request before answering, so a caller fixes all
/// fields in one round trip instead of one per call.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FieldViolations {
    violations: Vec<(String, String)>,
}

impl FieldViolations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.violations.push((field.into(), description.into()));
    }

    /// Records a violation when `ok` is false.
    pub fn check(&mut self, ok: bool, field: impl Into<String>, description: impl Into<String>) {
        if !ok {
            self.add(field, description);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn len(&self) -> usize {
        self.violations.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.violations
            .iter()
            .map(|(f, d)| (f.as_str(), d.as_str()))
    }

    pub fn extend(&mut self, other: FieldViolations) {
        self.violations.extend(other.violations);
    }

    /// Ok when nothing was recorded, else the INVALID_ARGUMENT status.
    pub fn into_result(self) -> Result<(), Status> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.into_status())
        }
    }

    pub fn into_status(self) -> Status {
        invalid_argument(self.violations)
    }
}

/// INVALID_ARGUMENT with a BadRequest listing every offending field. The message
/// repeats the first violations so a human reading only the message can act.
pub fn invalid_argument<F, D>(violations: impl IntoIterator<Item = (F, D)>) -> Status
where
    F: Into<String>,
    D: Into<String>,
{
    let violations: Vec<FieldViolation> = violations
        .into_iter()
        .map(|(f, d)| FieldViolation::new(f, d))
        .collect();
    let summary = violations
        .iter()
        .take(3)
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ");
    let more = violations.len().saturating_sub(3);
    let message = if more > 0 {
        format!("invalid request: {summary} (and {more} more)")
    } else {
        format!("invalid request: {summary}")
    };
    Status::with_error_details(
        Code::InvalidArgument,
        message,
        ErrorDetails::with_bad_request(violations),
    )
}

/// NOT_FOUND naming the resource (ResourceInfo).
pub fn not_found(resource_type: &str, name: &str) -> Status {
    Status::with_error_details(
        Code::NotFound,
        format!("{resource_type} {name} not found"),
        ErrorDetails::with_resource_info(resource_type, name, "", "not found"),
    )
}

/// NOT_FOUND for the resource `name` (`"<collection>/<id>"`), its type the
/// collection in the singular (`complaints/…` is a `complaint`).
pub fn resource_not_found(name: &str) -> Status {
    let collection = name.split('/').next().unwrap_or("resource");
    not_found(collection.trim_end_matches('s'), name)
}

/// ALREADY_EXISTS naming the resource that holds the contested value.
pub fn already_exists(resource_type: &str, name: &str, description: &str) -> Status {
    Status::with_error_details(
        Code::AlreadyExists,
        format!("{resource_type} {name}: {description}"),
        ErrorDetails::with_resource_info(resource_type, name, "", description),
    )
}

/// ABORTED for an etag mismatch (AIP-134): the caller re-reads and retries.
pub fn etag_mismatch(name: &str, sent: &str, current: &str) -> Status {
    Status::with_error_details(
        Code::Aborted,
        format!(
            "etag {sent} does not match the current etag {current} of {name}; re-read and retry"
        ),
        ErrorDetails::with_precondition_failure_violation(
            "ETAG",
            name,
            format!("current etag is {current}"),
        ),
    )
}

/// FAILED_PRECONDITION with a typed violation, e.g. a state-machine conflict where
/// `violation_type` is "STATE" and the description names the current state.
pub fn failed_precondition(violation_type: &str, subject: &str, description: &str) -> Status {
    Status::with_error_details(
        Code::FailedPrecondition,
        format!("{subject}: {description}"),
        ErrorDetails::with_precondition_failure_violation(violation_type, subject, description),
    )
}

/// UNAVAILABLE with a retry hint: the dependency is down, the request may succeed later.
pub fn unavailable(what: &str, retry_after: Duration) -> Status {
    Status::with_error_details(
        Code::Unavailable,
        format!("{what} is unavailable; retry later"),
        ErrorDetails::with_retry_info(Some(retry_after)),
    )
}

/// RESOURCE_EXHAUSTED for a rate the caller exceeded, with when to retry.
pub fn rate_limited(what: &str, retry_after: Duration) -> Status {
    Status::with_error_details(
        Code::ResourceExhausted,
        what.to_string(),
        ErrorDetails::with_retry_info(Some(retry_after)),
    )
}

/// INTERNAL without leaking the cause to the caller; the cause is logged with an id
/// the caller can quote.
pub fn internal(cause: &dyn std::fmt::Display) -> Status {
    let id = format!("{:016x}", rand_id());
    tracing::error!(error_id = %id, error = %cause, "internal error");
    Status::new(Code::Internal, format!("internal error (id {id})"))
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// The field violations carried by a status (tests and clients use it).
pub fn field_violations(status: &Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|b| {
            b.field_violations
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_every_field() {
        let mut v = FieldViolations::new();
        v.add("customer.email", "not an email address");
        v.check(false, "customer.display_name", "must not be empty");
        v.check(true, "customer.phone", "never recorded");
        let status = v.into_result().unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            field_violations(&status),
            vec![
                (
                    "customer.email".to_string(),
                    "not an email address".to_string()
                ),
                (
                    "customer.display_name".to_string(),
                    "must not be empty".to_string()
                ),
            ]
        );
        assert!(status.message().contains("customer.email"));
    }

    #[test]
    fn empty_violations_are_ok() {
        assert!(FieldViolations::new().into_result().is_ok());
    }

    #[test]
    fn not_found_has_resource_info() {
        let s = not_found("customer", "customers/x");
        assert_eq!(s.code(), Code::NotFound);
        let info = s.get_details_resource_info().unwrap();
        assert_eq!(info.resource_name, "customers/x");
    }

    #[test]
    fn etag_mismatch_is_aborted_with_precondition_failure() {
        let s = etag_mismatch("customers/x", "\"1\"", "\"2\"");
        assert_eq!(s.code(), Code::Aborted);
        let pf = s.get_details_precondition_failure().unwrap();
        assert_eq!(pf.violations[0].r#type, "ETAG");
    }

    #[test]
    fn internal_hides_the_cause() {
        let s = internal(&"password=hunter2 leaked");
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("hunter2"));
    }
}
