//! The one place win-back errors become gRPC statuses.

use std::time::Duration;

use tonic::Status;

use crate::app::AppError;
use crate::clients::PeerError;

impl From<AppError> for Status {
    fn from(e: AppError) -> Status {
        match e {
            AppError::Invalid(v) => v.into_status(),
            AppError::NotFound(name) if name.contains("/targets/") => {
                retention_errors::not_found("campaignTarget", &name)
            }
            AppError::NotFound(name) => retention_errors::resource_not_found(&name),
            AppError::EtagMismatch {
                name,
                sent,
                current,
            } => retention_errors::etag_mismatch(&name, &sent, &current),
            AppError::Illegal { name, source } => retention_errors::failed_precondition(
                "STATE",
                &name,
                &format!("{source} (current state: {})", source.from),
            ),
            AppError::Precondition { name, reason } => {
                retention_errors::failed_precondition("RULE", &name, &reason)
            }
            AppError::Peer { name, source } => peer_status(&name, source),
            AppError::Db(db) if retention_db::is_unavailable(&db) => {
                retention_errors::unavailable("the win-back database", Duration::from_secs(1))
            }
            AppError::Db(e) => retention_errors::internal(&e),
            AppError::Events(e) => retention_errors::internal(&e),
        }
    }
}

/// A peer's failure, said so the caller knows nothing was done and what to fix.
fn peer_status(name: &str, e: PeerError) -> Status {
    match e {
        PeerError::Unavailable(_) => retention_errors::unavailable(
            &format!("the segmentation service (needed by {name}; nothing was changed)"),
            Duration::from_secs(2),
        ),
        PeerError::DeadlineExceeded => Status::deadline_exceeded(format!(
            "{name}: the segmentation service did not answer in time; nothing was changed"
        )),
        PeerError::Invalid { field, description } => {
            let field = match field.as_str() {
                "filter" => "campaign.target_filter".to_string(),
                "segment" => "campaign.target_segment".to_string(),
                other => format!("campaign.{other}"),
            };
            retention_errors::invalid_argument([(field, description)])
        }
        PeerError::NotFound(what) => retention_errors::failed_precondition(
            "TARGET",
            name,
            &format!("{what} does not exist in segmentation"),
        ),
        PeerError::TooManyCandidates(max) => retention_errors::failed_precondition(
            "TARGET",
            name,
            &format!("the target holds more than {max} customers (winback.max_candidates)"),
        ),
        PeerError::Failed(m) => retention_errors::internal(&format!("segmentation: {m}")),
    }
}
