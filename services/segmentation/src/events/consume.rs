//! The profile and interactions events segmentation consumes, decoded into
//! feature changes and handed to the app (which applies each exactly once).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use retention_events::{EventEnvelope, HandlerError, decode_payload};
use retention_proto::interactions as ipb;
use retention_proto::profile as ppb;

use crate::app::{AppError, SegmentationApp};
use crate::convert;
use crate::domain::changes::Change;

fn time(t: Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.as_ref().and_then(convert::instant)
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
/// An amount beyond [`retention_domain::MAX_MINOR_UNITS`] is poison: refused for
/// good, the reason naming the event type, the customer and the field.
pub fn decode(env: &EventEnvelope) -> Result<Option<Change>, HandlerError> {
    let change = decode_change(env)?;
    if let Some(c) = &change {
        c.check_bounds()
            .map_err(|e| HandlerError::Permanent(format!("{}: {e}", env.event_type)))?;
    }
    Ok(change)
}

fn decode_change(env: &EventEnvelope) -> Result<Option<Change>, HandlerError> {
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
    if let Some(e) = decode_payload::<ipb::ComplaintSlaAtRiskEvent>(env)? {
        return Ok(Some(Change::SlaAtRisk {
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
        // Poison (a sum that would overflow): the reason names customer and field.
        AppError::Fold(e) => HandlerError::Permanent(e.to_string()),
        e => HandlerError::Permanent(e.to_string()),
    }
}

retention_events::event_handler!(UpstreamHandler, batch);
