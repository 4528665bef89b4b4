//! The one place interactions errors become gRPC statuses.

use std::time::Duration;

use tonic::Status;

use crate::app::AppError;

impl From<AppError> for Status {
    fn from(e: AppError) -> Status {
        match e {
            AppError::Invalid(v) => v.into_status(),
            AppError::NotFound(name) => retention_errors::resource_not_found(&name),
            AppError::EtagMismatch {
                name,
                sent,
                current,
            } => retention_errors::etag_mismatch(&name, &sent, &current),
            // The current state is in the PreconditionFailure, so callers can refresh.
            AppError::Illegal { name, source } => retention_errors::failed_precondition(
                "STATE",
                &name,
                &format!("{source} (current state: {})", source.current),
            ),
            AppError::Unschedulable { name, source } => {
                retention_errors::failed_precondition("CALENDAR", &name, &source.to_string())
            }
            AppError::Db(db) if retention_db::is_unavailable(&db) => {
                retention_errors::unavailable("the interactions database", Duration::from_secs(1))
            }
            AppError::Db(e) => retention_errors::internal(&e),
            AppError::Events(e) => retention_errors::internal(&e),
        }
    }
}
