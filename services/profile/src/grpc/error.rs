//! The one place profile errors become gRPC statuses.

use std::time::Duration;

use tonic::Status;

use crate::app::AppError;
use crate::store::StoreError;

impl From<AppError> for Status {
    fn from(e: AppError) -> Status {
        match e {
            AppError::Invalid(v) => v.into_status(),
            AppError::NotFound(name) => retention_errors::not_found("customer", &name),
            AppError::EtagMismatch {
                name,
                sent,
                current,
            } => retention_errors::etag_mismatch(&name, &sent, &current),
            AppError::IdentityTaken {
                namespace,
                value,
                owner,
            } => retention_errors::already_exists(
                "customer",
                &owner,
                &format!("identity {namespace}:{value} already belongs to this customer"),
            ),
            AppError::Precondition { subject, reason } => {
                retention_errors::failed_precondition("STATE", &subject, &reason)
            }
            AppError::Store(StoreError::Db(db)) if retention_db::is_unavailable(&db) => {
                retention_errors::unavailable("the profile database", Duration::from_secs(1))
            }
            // The commit of a change with its events (and audit record) fails
            // the same way when the database goes away mid-call.
            AppError::Events(retention_events::EventsError::Db(db))
                if retention_db::is_unavailable(&db) =>
            {
                retention_errors::unavailable("the profile database", Duration::from_secs(1))
            }
            AppError::Store(e) => retention_errors::internal(&e),
            AppError::Events(e) => retention_errors::internal(&e),
        }
    }
}
