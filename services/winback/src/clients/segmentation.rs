//! The segmentation service as win-back sees it: campaign targets (a segment's
//! members or an insight filter) and one customer's insight.

use std::error::Error as _;
use std::time::Duration;

use retention_auth::TokenMinter;
use retention_errors::tonic_types::StatusExt;
use retention_proto::common::Money;
use retention_proto::segmentation as pb;
use tokio::time::Instant;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// What win-back needs of a customer's insight.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetInsight {
    pub customer_id: String,
    /// The expected value, weighted by P(alive).
    pub predicted_clv_minor: i64,
    /// The value if the customer stays or comes back; None from a segmentation
    /// that does not send it.
    pub retained_clv_minor: Option<i64>,
    pub currency: String,
    /// Names as segmentation publishes them ("DECLINE", "GOLD", "HIGH").
    pub lifecycle_stage: String,
    pub value_tier: String,
    pub churn_risk: String,
}

/// What went wrong with a call to segmentation, one variant per meaning for
/// win-back's caller (`grpc::error` says what each answers). Every gRPC code
/// segmentation can answer lands in exactly one; see [`PeerError::from_status`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PeerError {
    /// Down, restarting, or the call was dropped on the way (UNAVAILABLE, ABORTED,
    /// CANCELLED by the peer, a connection lost mid-call): worth retrying.
    #[error("the segmentation service is unavailable: {0}")]
    Unavailable(String),
    /// Segmentation throttled win-back (RESOURCE_EXHAUSTED), with the wait it asked
    /// for if it said one.
    #[error("the segmentation service is overloaded: {reason}")]
    Overloaded {
        reason: String,
        retry_after: Option<Duration>,
    },
    #[error("the segmentation service did not answer within the deadline")]
    DeadlineExceeded,
    #[error("segmentation refused {field}: {description}")]
    Invalid { field: String, description: String },
    #[error("{0} does not exist in segmentation")]
    NotFound(String),
    /// Segmentation cannot answer in its current state (FAILED_PRECONDITION), e.g.
    /// `NOT_SCORED` / `NOT_FITTED` before the first scoring run. `kind` is the
    /// peer's violation type ("" when it sent none), `reason` its description.
    #[error("segmentation cannot answer in its current state: {reason}")]
    Precondition { kind: String, reason: String },
    /// Segmentation did not accept win-back's service token (UNAUTHENTICATED): the
    /// shared auth settings differ.
    #[error("segmentation rejected win-back's service token: {0}")]
    Unauthenticated(String),
    /// Segmentation accepted the token but refused it the call (PERMISSION_DENIED).
    #[error("segmentation denied win-back the call: {0}")]
    PermissionDenied(String),
    #[error("the target holds more than {0} customers")]
    TooManyCandidates(usize),
    /// A bug here or in segmentation (INTERNAL, UNKNOWN, DATA_LOSS, UNIMPLEMENTED,
    /// or an answer a read cannot get: ALREADY_EXISTS, OUT_OF_RANGE).
    #[error("the segmentation service failed: {0}")]
    Failed(String),
}

/// Violation types segmentation uses when no scoring run has scored the customer.
const NOT_SCORED_KINDS: &[&str] = &["NOT_SCORED", "NOT_FITTED"];

impl PeerError {
    /// True when segmentation needs a scoring run before it can answer.
    pub fn needs_scoring_run(&self) -> bool {
        matches!(self, PeerError::Precondition { kind, .. } if NOT_SCORED_KINDS.contains(&kind.as_str()))
    }

    /// The meaning of every code segmentation (or tonic, for it) can answer. `what`
    /// names the resource asked for (`segments/x`, `customers/c1`).
    pub fn from_status(s: Status, what: &str) -> PeerError {
        let said = |s: &Status| format!("{:?}: {}", s.code(), s.message());
        match s.code() {
            Code::Unavailable | Code::Aborted => PeerError::Unavailable(s.message().to_string()),
            // Tonic reports its own expiry of the deadline win-back set as CANCELLED.
            Code::Cancelled if timed_out(&s) => PeerError::DeadlineExceeded,
            Code::Cancelled => PeerError::Unavailable(said(&s)),
            // Made by tonic from a transport failure (the connection went away
            // mid-call); segmentation itself never answers UNKNOWN on purpose.
            Code::Unknown if s.source().is_some() => PeerError::Unavailable(said(&s)),
            Code::ResourceExhausted => PeerError::Overloaded {
                reason: s.message().to_string(),
                retry_after: s.get_details_retry_info().and_then(|r| r.retry_delay),
            },
            Code::DeadlineExceeded => PeerError::DeadlineExceeded,
            Code::NotFound => PeerError::NotFound(what.to_string()),
            Code::InvalidArgument => {
                let v = retention_errors::field_violations(&s);
                let (field, description) = v
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| ("target".into(), s.message().to_string()));
                PeerError::Invalid { field, description }
            }
            Code::FailedPrecondition => {
                let (kind, reason) = s
                    .get_details_precondition_failure()
                    .and_then(|p| p.violations.into_iter().next())
                    .map(|v| (v.r#type, v.description))
                    .unwrap_or_else(|| (String::new(), s.message().to_string()));
                PeerError::Precondition { kind, reason }
            }
            Code::Unauthenticated => PeerError::Unauthenticated(s.message().to_string()),
            Code::PermissionDenied => PeerError::PermissionDenied(s.message().to_string()),
            Code::Ok => PeerError::Failed(format!("answered OK without a response for {what}")),
            Code::Internal
            | Code::Unknown
            | Code::DataLoss
            | Code::Unimplemented
            | Code::AlreadyExists
            | Code::OutOfRange => PeerError::Failed(said(&s)),
        }
    }
}

/// Whether tonic's own timer (the `grpc-timeout` win-back set) ended the call.
fn timed_out(s: &Status) -> bool {
    let mut e: Option<&(dyn std::error::Error + 'static)> = s.source();
    while let Some(err) = e {
        if err.is::<tonic::TimeoutExpired>() {
            return true;
        }
        e = err.source();
    }
    false
}

/// The fields of `CustomerInsight` that win-back reads, under the same tags.
/// Decoding whole insights spent half of a launch's CPU on the explanations (maps
/// of strings) win-back never looks at; prost skips the fields a message does not
/// declare, so this view reads the same wire format for a fraction of the cost.
/// `buf breaking` keeps the tags fixed and a unit test below checks them.
#[derive(Clone, PartialEq, prost::Message)]
struct InsightView {
    #[prost(string, tag = "2")]
    customer: String,
    #[prost(int32, tag = "4")]
    value_tier: i32,
    #[prost(int32, tag = "6")]
    lifecycle_stage: i32,
    #[prost(int32, tag = "13")]
    churn_risk: i32,
    #[prost(message, optional, tag = "14")]
    predicted_clv: Option<Money>,
    #[prost(message, optional, tag = "19")]
    retained_clv: Option<Money>,
}

/// `ListSegmentMembersResponse` and `ListCustomerInsightsResponse` share this shape.
#[derive(Clone, PartialEq, prost::Message)]
struct InsightPage {
    #[prost(message, repeated, tag = "1")]
    insights: Vec<InsightView>,
    #[prost(string, tag = "2")]
    next_page_token: String,
}

const SERVICE: &str = "/retention.segmentation.v1.SegmentationService/";

#[derive(Clone)]
pub struct SegmentationClient {
    grpc: tonic::client::Grpc<Channel>,
    minter: std::sync::Arc<TokenMinter>,
    call_timeout: Duration,
    max_candidates: usize,
}

const PAGE: i32 = 1000;
const SUBJECT: &str = "service:winback";
const SCOPES: &[&str] = &["segmentation.read"];

impl SegmentationClient {
    /// Connects lazily: the service starts (and answers what needs no peer) while
    /// segmentation is still coming up. An `https://` endpoint is called over TLS
    /// (`peer_tls`), presenting win-back's certificate if segmentation wants one.
    pub fn from_settings(s: &retention_config::Settings) -> Result<Self, PeerError> {
        let endpoint =
            retention_server::peer_endpoint(&s.winback.segmentation_endpoint, &s.peer_tls)
                .map_err(|e| PeerError::Failed(format!("segmentation endpoint: {e}")))?
                .connect_timeout(Duration::from_millis(s.winback.call_timeout_ms.min(2_000)))
                .tcp_nodelay(true);
        Ok(SegmentationClient {
            grpc: tonic::client::Grpc::new(endpoint.connect_lazy()),
            minter: std::sync::Arc::new(TokenMinter::hs256(
                s.auth.jwt_secret.as_bytes(),
                &s.auth.issuer,
                &s.auth.audience,
            )),
            call_timeout: Duration::from_millis(s.winback.call_timeout_ms),
            max_candidates: s.winback.max_candidates,
        })
    }

    /// A request bounded by `deadline` (and the configured cap), traced and signed.
    fn request<T>(&self, msg: T, deadline: Instant) -> Result<Request<T>, PeerError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(PeerError::DeadlineExceeded);
        }
        let mut req = Request::new(msg);
        req.set_timeout(left.min(self.call_timeout));
        let token = self.minter.mint(SUBJECT, SCOPES, Duration::from_secs(300));
        if let Ok(v) = format!("Bearer {token}").parse() {
            req.metadata_mut().insert("authorization", v);
        }
        retention_telemetry::inject_current(req.metadata_mut());
        Ok(req)
    }

    /// One unary call to segmentation, answered in the view type `Resp`.
    async fn call<Req, Resp>(&self, method: &str, req: Request<Req>) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let path = PathAndQuery::try_from(format!("{SERVICE}{method}"))
            .map_err(|e| Status::internal(format!("bad method path: {e}")))?;
        let mut grpc = self.grpc.clone();
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        grpc.unary(req, path, tonic_prost::ProstCodec::default())
            .await
            .map(|r| r.into_inner())
    }

    fn deadline(&self, budget: Option<Duration>) -> Instant {
        Instant::now() + budget.unwrap_or(self.call_timeout)
    }

    /// One customer's insight; None when segmentation has not scored it.
    pub async fn insight(
        &self,
        customer_id: &str,
        budget: Option<Duration>,
    ) -> Result<Option<TargetInsight>, PeerError> {
        let name = format!("customers/{customer_id}");
        let req = self.request(
            pb::GetCustomerInsightRequest { name: name.clone() },
            self.deadline(budget.map(|b| b.min(self.call_timeout))),
        )?;
        match self.call::<_, InsightView>("GetCustomerInsight", req).await {
            Ok(r) => Ok(Some(target_insight(r))),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(PeerError::from_status(s, &name)),
        }
    }

    /// Everyone the target selects, read page by page within `budget`. Either the
    /// whole target or an error: a launch never works on part of it.
    pub async fn candidates(
        &self,
        segment: Option<&str>,
        filter: Option<&str>,
        budget: Option<Duration>,
    ) -> Result<Vec<TargetInsight>, PeerError> {
        let deadline = self.deadline(budget);
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let InsightPage {
                insights: page,
                next_page_token: next,
            } = match segment {
                Some(id) => {
                    let name = format!("segments/{id}");
                    let req = self.request(
                        pb::ListSegmentMembersRequest {
                            segment: name.clone(),
                            page_size: PAGE,
                            page_token: token.clone(),
                        },
                        deadline,
                    )?;
                    self.call::<_, InsightPage>("ListSegmentMembers", req)
                        .await
                        .map_err(|s| PeerError::from_status(s, &name))?
                }
                None => {
                    let req = self.request(
                        pb::ListCustomerInsightsRequest {
                            page_size: PAGE,
                            page_token: token.clone(),
                            filter: filter.unwrap_or_default().to_string(),
                            order_by: String::new(),
                        },
                        deadline,
                    )?;
                    self.call::<_, InsightPage>("ListCustomerInsights", req)
                        .await
                        .map_err(|s| PeerError::from_status(s, "the target filter"))?
                }
            };
            out.extend(page.into_iter().map(target_insight));
            if out.len() > self.max_candidates {
                return Err(PeerError::TooManyCandidates(self.max_candidates));
            }
            if next.is_empty() {
                return Ok(out);
            }
            token = next;
        }
    }
}

fn enum_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_string()
}

fn target_insight(i: InsightView) -> TargetInsight {
    let clv = i.predicted_clv.unwrap_or_default();
    TargetInsight {
        customer_id: i
            .customer
            .strip_prefix("customers/")
            .unwrap_or(&i.customer)
            .to_string(),
        predicted_clv_minor: clv.minor_units,
        retained_clv_minor: i.retained_clv.map(|m| m.minor_units),
        currency: clv.currency_code,
        lifecycle_stage: enum_name(
            pb::LifecycleStage::try_from(i.lifecycle_stage)
                .unwrap_or_default()
                .as_str_name(),
            "LIFECYCLE_STAGE_",
        ),
        value_tier: enum_name(
            pb::ValueTier::try_from(i.value_tier)
                .unwrap_or_default()
                .as_str_name(),
            "VALUE_TIER_",
        ),
        churn_risk: enum_name(
            pb::ChurnRisk::try_from(i.churn_risk)
                .unwrap_or_default()
                .as_str_name(),
            "CHURN_RISK_",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_become_peer_errors_callers_can_act_on() {
        let e = |s: Status| PeerError::from_status(s, "segments/x");
        assert_eq!(
            e(Status::unavailable("connection refused")),
            PeerError::Unavailable("connection refused".into())
        );
        assert_eq!(
            e(Status::deadline_exceeded("slow")),
            PeerError::DeadlineExceeded
        );
        assert_eq!(
            e(Status::not_found("nope")),
            PeerError::NotFound("segments/x".into())
        );
        let bad = retention_errors::invalid_argument([("filter", "unknown field foo")]);
        assert_eq!(
            e(bad),
            PeerError::Invalid {
                field: "filter".into(),
                description: "unknown field foo".into()
            }
        );
        assert!(matches!(e(Status::internal("boom")), PeerError::Failed(_)));
    }

    #[test]
    fn every_code_has_a_peer_error_of_its_own_meaning() {
        let e = |s: Status| PeerError::from_status(s, "customers/c1");
        let not_scored = e(retention_errors::failed_precondition(
            "NOT_SCORED",
            "insights/c1",
            "no scoring run has fitted the models yet; call RunScoring",
        ));
        assert_eq!(
            not_scored,
            PeerError::Precondition {
                kind: "NOT_SCORED".into(),
                reason: "no scoring run has fitted the models yet; call RunScoring".into()
            }
        );
        assert!(not_scored.needs_scoring_run());
        let busy = e(Status::failed_precondition("one run at a time"));
        assert!(!busy.needs_scoring_run());
        assert_eq!(
            e(retention_errors::rate_limited(
                "slow down",
                Duration::from_secs(3)
            )),
            PeerError::Overloaded {
                reason: "slow down".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert!(matches!(e(Status::aborted("x")), PeerError::Unavailable(_)));
        assert!(matches!(
            e(Status::cancelled("x")),
            PeerError::Unavailable(_)
        ));
        assert_eq!(
            e(Status::from_error(Box::new(tonic::TimeoutExpired(())))),
            PeerError::DeadlineExceeded
        );
        assert_eq!(
            e(Status::unauthenticated("bad signature")),
            PeerError::Unauthenticated("bad signature".into())
        );
        assert_eq!(
            e(Status::permission_denied("no scope")),
            PeerError::PermissionDenied("no scope".into())
        );
        for bug in [
            Status::unknown("x"),
            Status::data_loss("x"),
            Status::unimplemented("x"),
            Status::already_exists("x"),
            Status::out_of_range("x"),
            Status::new(Code::Ok, ""),
        ] {
            assert!(matches!(e(bug), PeerError::Failed(_)));
        }
        // Error messages: lowercase, no trailing punctuation.
        for m in [not_scored.to_string(), busy.to_string()] {
            assert!(!m.ends_with('.'), "{m}");
            assert!(m.starts_with(char::is_lowercase), "{m}");
        }
    }

    /// The view decodes a full insight page to the same values as the generated
    /// types: the tags above match segmentation.proto.
    #[test]
    fn the_view_reads_what_the_full_message_holds_with_the_enum_names_the_playbook_reads() {
        let full = pb::CustomerInsight {
            name: "customers/c1/insight".into(),
            customer: "customers/c1".into(),
            value_tier: pb::ValueTier::Gold as i32,
            lifecycle_stage: pb::LifecycleStage::Decline as i32,
            churn_risk: pb::ChurnRisk::High as i32,
            predicted_clv: Some(Money {
                currency_code: "CNY".into(),
                minor_units: 123_456,
            }),
            retained_clv: Some(Money {
                currency_code: "CNY".into(),
                minor_units: 308_640,
            }),
            p_alive: 0.4,
            explanations: vec![pb::Explanation {
                field: "lifecycle_stage".into(),
                reason: "silent for 3.1 usual intervals".into(),
                inputs: [("days_since_last".to_string(), "62".to_string())].into(),
            }],
            scoring_run: "scoringRuns/r1".into(),
            ..Default::default()
        };
        let bytes = prost::Message::encode_to_vec(&pb::ListSegmentMembersResponse {
            members: vec![full],
            next_page_token: "next".into(),
        });
        let page = <InsightPage as prost::Message>::decode(bytes.as_slice()).unwrap();
        assert_eq!(page.next_page_token, "next");
        assert_eq!(
            target_insight(page.insights[0].clone()),
            TargetInsight {
                customer_id: "c1".into(),
                predicted_clv_minor: 123_456,
                retained_clv_minor: Some(308_640),
                currency: "CNY".into(),
                lifecycle_stage: "DECLINE".into(),
                value_tier: "GOLD".into(),
                churn_risk: "HIGH".into(),
            }
        );
        // A segmentation without the value if retained: none, not 0.
        let older = pb::CustomerInsight {
            customer: "customers/c2".into(),
            ..Default::default()
        };
        let bytes = prost::Message::encode_to_vec(&older);
        let view = <InsightView as prost::Message>::decode(bytes.as_slice()).unwrap();
        assert_eq!(target_insight(view).retained_clv_minor, None);
    }
}
