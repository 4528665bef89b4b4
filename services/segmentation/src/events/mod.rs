//! What segmentation publishes on `retention.segmentation.events`, and how the
//! profile and interactions events it consumes become feature changes. Applying a
//! change (and the inbox record that makes it exactly-once) is the app's job.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use retention_events::{EventEnvelope, EventHandler, HandlerError, OutboxEvent, decode_payload};
use retention_proto::interactions as ipb;
use retention_proto::profile as ppb;
use retention_proto::segmentation as pb;

use crate::app::{AppError, SegmentationApp};
use crate::domain::features::Features;
use crate::domain::occasions::OccasionClock;
use crate::domain::scoring::Insight;
use crate::grpc::convert;

pub const STREAM: &str = "retention.segmentation.events";
pub const SOURCE: &str = "segmentation";
pub const PROFILE_STREAM: &str = "retention.profile.events";
pub const INTERACTIONS_STREAM: &str = "retention.interactions.events";
/// Consumer group name of this service on other services' streams.
pub const CONSUMER: &str = "segmentation";

pub fn membership_changed(
    segment_id: &str,
    customer_id: &str,
    entered: bool,
    at: DateTime<Utc>,
) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(customer_id),
        &pb::SegmentMembershipChangedEvent {
            segment_id: segment_id.to_string(),
            customer_id: customer_id.to_string(),
            entered,
            change_time: Some(convert::ts(at)),
        },
    )
}

pub fn churn_risk_changed(previous: &Insight, current: &Insight) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(&current.customer_id),
        &pb::ChurnRiskChangedEvent {
            customer_id: current.customer_id.clone(),
            previous: convert::churn_risk(previous.churn_risk).into(),
            current: convert::churn_risk(current.churn_risk).into(),
            p_alive: current.p_alive,
            management_tier: convert::management_tier(current.management_tier).into(),
            change_time: Some(convert::ts(current.score_time)),
        },
    )
}

pub fn customer_scored(i: &Insight) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(&i.customer_id),
        &pb::CustomerScoredEvent {
            customer_id: i.customer_id.clone(),
            value_tier: convert::value_tier(i.value_tier).into(),
            management_tier: convert::management_tier(i.management_tier).into(),
            lifecycle_stage: convert::lifecycle(i.lifecycle_stage).into(),
            churn_risk: convert::churn_risk(i.churn_risk).into(),
            scoring_run: i.scoring_run.clone(),
        },
    )
}

/// One consumed event, as a change to the feature store.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Created or updated in profile: firmographics and tenure.
    Facts {
        customer_id: String,
        credit_rating: Option<String>,
        annual_revenue_minor: Option<i64>,
        share_of_wallet: Option<f64>,
        create_time: Option<DateTime<Utc>>,
    },
    Purchase {
        customer_id: String,
        purchase_id: String,
        at: DateTime<Utc>,
        amount_minor: i64,
        margin_minor: i64,
        discount_minor: i64,
        currency: String,
        category: String,
    },
    Referral {
        referrer_id: String,
        referred_id: String,
    },
    Merged {
        survivor_id: String,
        merged_id: String,
    },
    Erased {
        customer_id: String,
    },
    ComplaintOpened {
        customer_id: String,
        complaint_id: String,
    },
    ComplaintResolved {
        customer_id: String,
        complaint_id: String,
    },
    ComplaintReopened {
        customer_id: String,
        complaint_id: String,
    },
    SlaBreached {
        customer_id: String,
        complaint_id: String,
        /// The SLA target missed (its proto number).
        target: i32,
    },
    Survey {
        customer_id: String,
        survey_id: String,
        csat: Option<i32>,
        expectation_gap: Option<i32>,
    },
}

impl Change {
    /// The customer whose features change (the survivor of a merge).
    pub fn customer_id(&self) -> &str {
        match self {
            Change::Facts { customer_id, .. }
            | Change::Purchase { customer_id, .. }
            | Change::Erased { customer_id }
            | Change::ComplaintOpened { customer_id, .. }
            | Change::ComplaintResolved { customer_id, .. }
            | Change::ComplaintReopened { customer_id, .. }
            | Change::SlaBreached { customer_id, .. }
            | Change::Survey { customer_id, .. } => customer_id,
            Change::Referral { referrer_id, .. } => referrer_id,
            Change::Merged { survivor_id, .. } => survivor_id,
        }
    }

    /// The same change about the survivor of a merge that took its customer away;
    /// none for profile facts, since the survivor's own ones win (as in
    /// [`Features::absorb`](crate::domain::features::Features::absorb)).
    pub fn redirected(self, survivor: &str) -> Option<Change> {
        let mut c = self;
        match &mut c {
            Change::Facts { .. } => return None,
            Change::Purchase { customer_id, .. }
            | Change::ComplaintOpened { customer_id, .. }
            | Change::ComplaintResolved { customer_id, .. }
            | Change::ComplaintReopened { customer_id, .. }
            | Change::SlaBreached { customer_id, .. }
            | Change::Survey { customer_id, .. } => *customer_id = survivor.to_string(),
            Change::Referral { referrer_id, .. } => *referrer_id = survivor.to_string(),
            Change::Merged { .. } | Change::Erased { .. } => {}
        }
        Some(c)
    }

    /// Folds a single-customer change into that customer's features; false when
    /// its effect was there already (a replayed event), and nothing changed.
    /// Purchases are deduplicated before, by the purchases table.
    pub fn apply_to(&self, f: &mut Features, clock: &OccasionClock) -> bool {
        match self {
            Change::Facts {
                credit_rating,
                annual_revenue_minor,
                share_of_wallet,
                create_time,
                ..
            } => {
                let before = (
                    f.credit_rating.clone(),
                    f.annual_revenue_minor,
                    f.share_of_wallet,
                    f.customer_since,
                );
                f.credit_rating = credit_rating.clone();
                f.annual_revenue_minor = *annual_revenue_minor;
                f.share_of_wallet = *share_of_wallet;
                if create_time.is_some() {
                    f.customer_since = *create_time;
                }
                before
                    != (
                        f.credit_rating.clone(),
                        f.annual_revenue_minor,
                        f.share_of_wallet,
                        f.customer_since,
                    )
            }
            Change::Purchase {
                at,
                amount_minor,
                margin_minor,
                discount_minor,
                currency,
                category,
                ..
            } => {
                if f.currency.is_empty() {
                    f.currency.clone_from(currency);
                }
                f.record_purchase(
                    *at,
                    *amount_minor,
                    *margin_minor,
                    *discount_minor,
                    category,
                    clock,
                );
                true
            }
            Change::Referral { referred_id, .. } => f.record_referral(referred_id),
            Change::ComplaintOpened { complaint_id, .. } => f.record_complaint_opened(complaint_id),
            Change::ComplaintResolved { complaint_id, .. } => {
                f.record_complaint_resolved(complaint_id)
            }
            Change::ComplaintReopened { complaint_id, .. } => {
                f.record_complaint_reopened(complaint_id)
            }
            Change::SlaBreached {
                complaint_id,
                target,
                ..
            } => f.record_sla_breach(complaint_id, *target),
            Change::Survey {
                survey_id,
                csat,
                expectation_gap,
                ..
            } => f.record_survey(survey_id, *csat, *expectation_gap),
            Change::Merged { .. } | Change::Erased { .. } => false,
        }
    }
}

fn time(t: Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.and_then(convert::time)
}

fn facts(c: ppb::CustomerFacts) -> Change {
    let firm = c.firmographics.unwrap_or_default();
    let rating = ppb::CreditRating::try_from(firm.credit_rating)
        .ok()
        .filter(|r| *r != ppb::CreditRating::Unspecified)
        .map(|r| {
            r.as_str_name()
                .trim_start_matches("CREDIT_RATING_")
                .to_string()
        });
    Change::Facts {
        customer_id: c.customer_id,
        credit_rating: rating,
        annual_revenue_minor: firm.annual_revenue.map(|m| m.minor_units),
        share_of_wallet: firm.share_of_wallet,
        create_time: time(c.create_time),
    }
}

/// The change an envelope carries; None for event types segmentation ignores.
pub fn decode(env: &EventEnvelope) -> Result<Option<Change>, HandlerError> {
    let money = |m: Option<retention_proto::common::Money>| m.map_or(0, |m| m.minor_units);
    if let Some(e) = decode_payload::<ppb::CustomerCreatedEvent>(env)? {
        return Ok(e.customer.map(facts));
    }
    if let Some(e) = decode_payload::<ppb::CustomerUpdatedEvent>(env)? {
        return Ok(e.customer.map(facts));
    }
    if let Some(e) = decode_payload::<ppb::PurchaseRecordedEvent>(env)? {
        let at = time(e.occur_time)
            .ok_or_else(|| HandlerError::Permanent("PurchaseRecorded without occur_time".into()))?;
        let currency = e
            .amount
            .as_ref()
            .map(|m| m.currency_code.clone())
            .unwrap_or_default();
        return Ok(Some(Change::Purchase {
            customer_id: e.customer_id,
            purchase_id: e.purchase_id,
            at,
            amount_minor: money(e.amount),
            margin_minor: money(e.gross_margin),
            discount_minor: money(e.discount),
            currency,
            category: e.product_category,
        }));
    }
    if let Some(e) = decode_payload::<ppb::ReferralRecordedEvent>(env)? {
        return Ok(Some(Change::Referral {
            referrer_id: e.referrer_id,
            referred_id: e.referred_id,
        }));
    }
    if let Some(e) = decode_payload::<ppb::CustomerMergedEvent>(env)? {
        return Ok(Some(Change::Merged {
            survivor_id: e.survivor_id,
            merged_id: e.merged_id,
        }));
    }
    if let Some(e) = decode_payload::<ppb::CustomerErasedEvent>(env)? {
        return Ok(Some(Change::Erased {
            customer_id: e.customer_id,
        }));
    }
    if let Some(e) = decode_payload::<ipb::ComplaintOpenedEvent>(env)? {
        return Ok(Some(Change::ComplaintOpened {
            customer_id: e.customer_id,
            complaint_id: e.complaint_id,
        }));
    }
    if let Some(e) = decode_payload::<ipb::ComplaintResolvedEvent>(env)? {
        return Ok(Some(Change::ComplaintResolved {
            customer_id: e.customer_id,
            complaint_id: e.complaint_id,
        }));
    }
    if let Some(e) = decode_payload::<ipb::ComplaintStatusChangedEvent>(env)? {
        // Resolution has its own event; only a reopen changes the open count here.
        let reopened = e.from_state == ipb::ComplaintState::Resolved as i32
            && e.to_state != ipb::ComplaintState::Closed as i32;
        return Ok(reopened.then_some(Change::ComplaintReopened {
            customer_id: e.customer_id,
            complaint_id: e.complaint_id,
        }));
    }
    if let Some(e) = decode_payload::<ipb::ComplaintSlaBreachedEvent>(env)? {
        return Ok(Some(Change::SlaBreached {
            customer_id: e.customer_id,
            complaint_id: e.complaint_id,
            target: e.target,
        }));
    }
    if let Some(e) = decode_payload::<ipb::SurveyRecordedEvent>(env)? {
        let gap = (e.expectation > 0 && e.perceived > 0).then(|| e.perceived - e.expectation);
        return Ok(Some(Change::Survey {
            customer_id: e.customer_id,
            survey_id: e.survey_id,
            csat: (e.csat > 0).then_some(e.csat),
            expectation_gap: gap,
        }));
    }
    Ok(None)
}

/// Consumes both upstream streams into the feature store.
pub struct UpstreamHandler {
    pub app: SegmentationApp,
}

impl UpstreamHandler {
    pub fn new(app: SegmentationApp) -> Arc<Self> {
        Arc::new(UpstreamHandler { app })
    }

    async fn apply(&self, env: &EventEnvelope) -> Result<(), HandlerError> {
        let Some(change) = decode(env)? else {
            return Ok(());
        };
        self.app
            .apply_change(&env.event_id, change)
            .await
            .map_err(handler_error)
    }

    /// Runs of single-customer changes go in one transaction each; a merge or
    /// an erasure is applied on its own, in its place in the order. A run that
    /// fails is applied again event by event, so one bad event does not hold
    /// back the others.
    async fn apply_batch(&self, envs: &[EventEnvelope]) -> Vec<Result<(), HandlerError>> {
        let mut results: Vec<Result<(), HandlerError>> = Vec::with_capacity(envs.len());
        let mut run: Vec<(usize, (String, Change))> = Vec::new();
        for (i, env) in envs.iter().enumerate() {
            match decode(env) {
                Err(e) => results.push(Err(e)),
                Ok(None) => results.push(Ok(())),
                Ok(Some(change @ (Change::Merged { .. } | Change::Erased { .. }))) => {
                    self.flush(envs, &mut run, &mut results).await;
                    results.push(
                        self.app
                            .apply_change(&env.event_id, change)
                            .await
                            .map_err(handler_error),
                    );
                }
                Ok(Some(change)) => {
                    results.push(Ok(()));
                    run.push((i, (env.event_id.clone(), change)));
                }
            }
        }
        self.flush(envs, &mut run, &mut results).await;
        results
    }

    async fn flush(
        &self,
        envs: &[EventEnvelope],
        run: &mut Vec<(usize, (String, Change))>,
        results: &mut [Result<(), HandlerError>],
    ) {
        if run.is_empty() {
            return;
        }
        let (positions, changes): (Vec<usize>, Vec<(String, Change)>) =
            std::mem::take(run).into_iter().unzip();
        if let Err(e) = self.app.apply_changes(&changes).await {
            tracing::warn!(events = changes.len(), error = %e,
                "batch of events failed; applying them one by one");
            for i in positions {
                results[i] = self.apply(&envs[i]).await;
            }
        }
    }
}

fn handler_error(e: AppError) -> HandlerError {
    match e {
        AppError::Db(e) => HandlerError::Retry(e.to_string()),
        AppError::Events(e) => e.into(),
        e => HandlerError::Permanent(e.to_string()),
    }
}

impl EventHandler for UpstreamHandler {
    fn handle<'a>(
        &'a self,
        envelope: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(self.apply(envelope))
    }

    fn handle_batch<'a>(
        &'a self,
        envelopes: &'a [EventEnvelope],
    ) -> BoxFuture<'a, Vec<Result<(), HandlerError>>> {
        Box::pin(self.apply_batch(envelopes))
    }
}
