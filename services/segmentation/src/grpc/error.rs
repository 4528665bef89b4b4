//! The one place segmentation errors become gRPC statuses.

use std::time::Duration;

use tonic::Status;

use crate::app::AppError;

impl From<AppError> for Status {
    fn from(e: AppError) -> Status {
        match e {
            AppError::Invalid(v) => v.into_status(),
            AppError::NotFound(name) => retention_errors::resource_not_found(&name),
            AppError::NotScored { name, reason } => {
                retention_errors::failed_precondition("NOT_SCORED", &name, &reason)
            }
            AppError::EtagMismatch {
                name,
                sent,
                current,
            } => retention_errors::etag_mismatch(&name, &sent, &current),
            AppError::RunInProgress(name) => retention_errors::failed_precondition(
                "RUN_IN_PROGRESS",
                &name,
                "one scoring run at a time; poll GetScoringRun until it ends",
            ),
            AppError::NotFitted => retention_errors::failed_precondition(
                "NOT_FITTED",
                "modelParameters",
                "no scoring run has fitted the models yet; call RunScoring",
            ),
            AppError::Db(db) if retention_db::is_unavailable(&db) => {
                retention_errors::unavailable("the segmentation database", Duration::from_secs(1))
            }
            AppError::Db(e) => retention_errors::internal(&e),
            AppError::Events(e) => retention_errors::internal(&e),
            AppError::Fold(e) => retention_errors::internal(&e),
        }
    }
}
