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

/// How long a caller should wait before retrying after segmentation was down.
const PEER_RETRY: Duration = Duration::from_secs(2);

/// A peer's failure, said so the caller knows nothing was done and what to fix.
/// Only a bug (here or in segmentation) is INTERNAL; a peer that is down, busy or
/// slow is UNAVAILABLE / DEADLINE_EXCEEDED, one that cannot answer yet (no scoring
/// run) or that refuses win-back's credentials is FAILED_PRECONDITION.
/// deploy/OPERATIONS.md has the table per gRPC code.
pub(crate) fn peer_status(name: &str, e: PeerError) -> Status {
    let needs_run = e.needs_scoring_run();
    match e {
        PeerError::Unavailable(_) => retention_errors::unavailable(
            &format!("the segmentation service (needed by {name}; nothing was changed)"),
            PEER_RETRY,
        ),
        PeerError::Overloaded { retry_after, .. } => retention_errors::unavailable(
            &format!(
                "the segmentation service (overloaded; needed by {name}; nothing was changed)"
            ),
            retry_after.unwrap_or(PEER_RETRY),
        ),
        PeerError::DeadlineExceeded => Status::deadline_exceeded(format!(
            "{name}: the segmentation service did not answer in time; nothing was changed"
        )),
        PeerError::Invalid { field, description } => {
            let field = match field.as_str() {
                "filter" => "campaign.target_filter".to_string(),
                "segment" => "campaign.target_segment".to_string(),
                _ if name.starts_with("customers/") => "customer".to_string(),
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
        PeerError::Precondition { reason, .. } if needs_run => {
            retention_errors::failed_precondition(
                "PEER",
                name,
                &format!(
                    "segmentation has not scored customers yet; a scoring run is needed first \
                     (RunScoring on segmentation); nothing was changed (segmentation: {reason})"
                ),
            )
        }
        PeerError::Precondition { kind, reason } => {
            let kind = if kind.is_empty() {
                String::new()
            } else {
                format!(" ({kind})")
            };
            retention_errors::failed_precondition(
                "PEER",
                name,
                &format!(
                    "segmentation cannot answer in its current state{kind}: {reason}; \
                     nothing was changed"
                ),
            )
        }
        PeerError::Unauthenticated(m) => misconfigured(
            name,
            &m,
            "segmentation rejected win-back's service token: auth.jwt_secret, auth.issuer \
             and auth.audience must match segmentation's",
        ),
        PeerError::PermissionDenied(m) => misconfigured(
            name,
            &m,
            "segmentation denied win-back's service token the call: service:winback needs \
             the scope segmentation.read there",
        ),
        PeerError::Failed(m) => retention_errors::internal(&format!("segmentation: {m}")),
    }
}

/// Win-back's own configuration is wrong: no caller can fix it and a retry will
/// not help until an operator does, so it is logged as an error (not INTERNAL,
/// which pages) and the caller is told what is misconfigured.
fn misconfigured(name: &str, peer_said: &str, fix: &str) -> Status {
    tracing::error!(
        subject = %name,
        peer_said,
        "{fix}; win-back cannot call segmentation until its configuration is fixed"
    );
    retention_errors::failed_precondition(
        "PEER_CONFIG",
        name,
        &format!("{fix}; an operator must fix win-back's configuration; nothing was changed"),
    )
}

/// What win-back's caller gets for each code segmentation can answer (the table in
/// deploy/OPERATIONS.md); the service tests check the same over the wire.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use retention_errors::tonic_types::StatusExt;
    use tonic::{Code, Status};

    use super::peer_status;
    use crate::clients::PeerError;

    const NAME: &str = "customers/c1";

    fn caller_gets(s: Status) -> Status {
        peer_status(NAME, PeerError::from_status(s, NAME))
    }

    fn retry_after(s: &Status) -> Option<Duration> {
        s.get_details_retry_info().and_then(|r| r.retry_delay)
    }

    /// The first precondition violation's type and description.
    fn violation(s: &Status) -> (String, String) {
        let v = s
            .get_details_precondition_failure()
            .and_then(|p| p.violations.into_iter().next())
            .expect("a precondition violation");
        (v.r#type, v.description)
    }

    fn assert_retry_later(s: &Status) {
        assert_eq!(s.code(), Code::Unavailable, "{s:?}");
        assert!(s.message().contains("nothing was changed"), "{s:?}");
        assert!(retry_after(s).is_some(), "no RetryInfo: {s:?}");
    }

    fn assert_internal(s: &Status) {
        assert_eq!(s.code(), Code::Internal, "{s:?}");
        assert!(s.message().starts_with("internal error (id "), "{s:?}");
    }

    #[test]
    fn ok_without_an_answer_is_internal() {
        assert_internal(&caller_gets(Status::new(Code::Ok, "")));
    }

    #[test]
    fn cancelled_by_the_peer_is_unavailable_with_retry_info() {
        assert_retry_later(&caller_gets(Status::cancelled("server shutting down")));
    }

    #[test]
    fn cancelled_by_win_backs_own_deadline_is_deadline_exceeded() {
        // What tonic's client makes of the grpc-timeout win-back set running out.
        let s = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(s.code(), Code::Cancelled);
        let got = caller_gets(s);
        assert_eq!(got.code(), Code::DeadlineExceeded, "{got:?}");
        assert!(got.message().contains("nothing was changed"));
    }

    #[test]
    fn unknown_from_the_peer_is_internal() {
        assert_internal(&caller_gets(Status::unknown("who knows")));
    }

    #[test]
    fn unknown_from_a_connection_lost_mid_call_is_unavailable() {
        // Tonic's UNKNOWN for a transport failure carries the failure as its source.
        let s = Status::from_error(Box::new(std::io::Error::other("connection reset")));
        assert_eq!(s.code(), Code::Unknown);
        assert_retry_later(&caller_gets(s));
    }

    #[test]
    fn invalid_argument_names_the_callers_field() {
        let got = caller_gets(retention_errors::invalid_argument([(
            "name",
            "not a customer id",
        )]));
        assert_eq!(got.code(), Code::InvalidArgument);
        assert_eq!(
            retention_errors::field_violations(&got),
            vec![("customer".to_string(), "not a customer id".to_string())]
        );
        let launch = peer_status(
            "campaigns/k1",
            PeerError::from_status(
                retention_errors::invalid_argument([("filter", "unknown field foo")]),
                "the target filter",
            ),
        );
        assert_eq!(
            retention_errors::field_violations(&launch),
            vec![(
                "campaign.target_filter".to_string(),
                "unknown field foo".to_string()
            )]
        );
    }

    #[test]
    fn deadline_exceeded_is_deadline_exceeded() {
        let got = caller_gets(Status::deadline_exceeded("deadline of 2000 ms exceeded"));
        assert_eq!(got.code(), Code::DeadlineExceeded);
        assert!(got.message().contains("nothing was changed"));
    }

    #[test]
    fn not_found_of_a_target_is_failed_precondition() {
        let got = peer_status(
            "campaigns/k1",
            PeerError::from_status(Status::not_found("no such segment"), "segments/s1"),
        );
        assert_eq!(got.code(), Code::FailedPrecondition);
        let (kind, description) = violation(&got);
        assert_eq!(kind, "TARGET");
        assert!(
            description.contains("segments/s1 does not exist"),
            "{description}"
        );
    }

    #[test]
    fn already_exists_is_internal() {
        assert_internal(&caller_gets(Status::already_exists(
            "a read cannot conflict",
        )));
    }

    #[test]
    fn permission_denied_is_failed_precondition_naming_the_scope() {
        let got = caller_gets(Status::permission_denied("missing scope segmentation.read"));
        assert_eq!(got.code(), Code::FailedPrecondition, "{got:?}");
        let (kind, description) = violation(&got);
        assert_eq!(kind, "PEER_CONFIG");
        assert!(description.contains("segmentation.read"), "{description}");
        assert!(description.contains("nothing was changed"), "{description}");
    }

    #[test]
    fn resource_exhausted_is_unavailable_with_the_peers_retry_delay() {
        let got = caller_gets(retention_errors::rate_limited(
            "too many requests",
            Duration::from_secs(7),
        ));
        assert_retry_later(&got);
        assert_eq!(retry_after(&got), Some(Duration::from_secs(7)));
        // Without one: the default wait.
        let got = caller_gets(Status::resource_exhausted("ENHANCE_YOUR_CALM"));
        assert_eq!(retry_after(&got), Some(Duration::from_secs(2)));
    }

    #[test]
    fn failed_precondition_not_scored_asks_for_a_scoring_run() {
        // Exactly what segmentation answers before its first scoring run.
        let got = caller_gets(retention_errors::failed_precondition(
            "NOT_SCORED",
            "insights/c1",
            "no scoring run has fitted the models yet; call RunScoring",
        ));
        assert_eq!(got.code(), Code::FailedPrecondition, "{got:?}");
        let (kind, description) = violation(&got);
        assert_eq!(kind, "PEER");
        assert!(
            description.contains("a scoring run is needed"),
            "{description}"
        );
        assert!(description.contains("RunScoring"), "{description}");
        assert!(description.contains("no scoring run has fitted the models yet"));
        assert!(description.contains("nothing was changed"));
        assert!(got.message().starts_with("customers/c1: "), "{got:?}");
    }

    #[test]
    fn other_failed_precondition_passes_the_peers_reason_on() {
        let got = caller_gets(retention_errors::failed_precondition(
            "RUN_IN_PROGRESS",
            "scoringRuns/r1",
            "one scoring run at a time",
        ));
        assert_eq!(got.code(), Code::FailedPrecondition);
        let (kind, description) = violation(&got);
        assert_eq!(kind, "PEER");
        assert!(description.contains("(RUN_IN_PROGRESS): one scoring run at a time"));
        // A bare FAILED_PRECONDITION without details: its message is the reason.
        let got = caller_gets(Status::failed_precondition("not now"));
        assert_eq!(got.code(), Code::FailedPrecondition);
        assert!(violation(&got).1.contains("state: not now"), "{got:?}");
    }

    #[test]
    fn aborted_is_unavailable_with_retry_info() {
        assert_retry_later(&caller_gets(Status::aborted("conflict, retry")));
    }

    #[test]
    fn out_of_range_is_internal() {
        assert_internal(&caller_gets(Status::out_of_range("past the end")));
    }

    #[test]
    fn unimplemented_is_internal() {
        assert_internal(&caller_gets(Status::unimplemented("no such method")));
    }

    #[test]
    fn internal_is_internal() {
        assert_internal(&caller_gets(Status::internal("boom")));
    }

    #[test]
    fn unavailable_is_unavailable_with_retry_info() {
        assert_retry_later(&caller_gets(Status::unavailable("connection refused")));
    }

    #[test]
    fn data_loss_is_internal() {
        assert_internal(&caller_gets(Status::data_loss("corrupt row")));
    }

    #[test]
    fn unauthenticated_is_failed_precondition_naming_the_settings() {
        let got = caller_gets(Status::unauthenticated("bad signature"));
        assert_eq!(got.code(), Code::FailedPrecondition, "{got:?}");
        let (kind, description) = violation(&got);
        assert_eq!(kind, "PEER_CONFIG");
        assert!(description.contains("auth.jwt_secret"), "{description}");
    }
}
