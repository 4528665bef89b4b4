//! The events the win-back service consumes, applied through the use cases; each
//! is applied exactly once in effect through the inbox.

use std::sync::Arc;

use retention_domain::now;
use retention_events::{
    EventEnvelope, HandlerError, decode_payload, first_deliveries, first_delivery,
};
use retention_proto::interactions as ipb;
use retention_proto::profile as ppb;
use retention_proto::segmentation as spb;
use sea_orm::{DatabaseTransaction, TransactionTrait};

use super::CONSUMER;
use crate::app::{AppError, WinbackApp};
use crate::convert;
use crate::domain::records::ContactChannel;
use crate::store::repo::{self, ComplaintFact};

/// A failure of the use case, as the consumer sees it: a peer or the database
/// down is worth another delivery.
fn handler_error(e: AppError) -> HandlerError {
    match e {
        AppError::Invalid(_) | AppError::NotFound(_) => HandlerError::Permanent(e.to_string()),
        other => HandlerError::Retry(other.to_string()),
    }
}

/// A transaction holding `env`'s inbox entry; None when it was applied before.
async fn claim(
    app: &WinbackApp,
    env: &EventEnvelope,
) -> Result<Option<DatabaseTransaction>, HandlerError> {
    let txn = app.db().begin().await?;
    Ok(first_delivery(&txn, CONSUMER, &env.event_id)
        .await?
        .then_some(txn))
}

fn channel_from(v: i32) -> Option<ContactChannel> {
    let c = ppb::ContactChannel::try_from(v).ok()?;
    ContactChannel::parse(c.as_str_name().strip_prefix("CONTACT_CHANNEL_")?)
}

/// Profile's purchases, consents, merges and erasures.
pub struct ProfileEventsHandler {
    app: WinbackApp,
}

impl ProfileEventsHandler {
    pub fn new(app: WinbackApp) -> Arc<Self> {
        Arc::new(ProfileEventsHandler { app })
    }

    async fn apply(&self, env: &EventEnvelope) -> Result<(), HandlerError> {
        if let Some(p) = decode_payload::<ppb::PurchaseRecordedEvent>(env)? {
            let at = p
                .occur_time
                .as_ref()
                .and_then(convert::from_ts)
                .ok_or_else(|| HandlerError::Permanent("purchase without a time".into()))?;
            let margin = p.gross_margin.map_or(0, |m| m.minor_units);
            self.app
                .purchase_recorded(
                    &env.event_id,
                    CONSUMER,
                    &p.purchase_id,
                    &p.customer_id,
                    at,
                    margin,
                )
                .await
                .map_err(handler_error)?;
            return Ok(());
        }
        let consent = decode_payload::<ppb::ConsentChangedEvent>(env)?;
        let merged = decode_payload::<ppb::CustomerMergedEvent>(env)?;
        let erased = decode_payload::<ppb::CustomerErasedEvent>(env)?;
        if consent.is_none() && merged.is_none() && erased.is_none() {
            return Ok(());
        }
        let Some(txn) = claim(&self.app, env).await? else {
            return Ok(());
        };
        if let Some(c) = consent
            && let Some(channel) = channel_from(c.channel)
        {
            let granted = c.status != ppb::ConsentStatus::Withdrawn as i32;
            repo::set_consent(&txn, &c.customer_id, channel, granted).await?;
        }
        if let Some(m) = merged {
            repo::merge_customer(&txn, &m.merged_id, &m.survivor_id).await?;
        }
        if let Some(e) = erased {
            let pseudonym = format!("erased-{}", uuid::Uuid::new_v4().simple());
            repo::erase_customer(&txn, &e.customer_id, &pseudonym[..36.min(pseudonym.len())])
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

retention_events::event_handler!(ProfileEventsHandler);

/// Interactions' complaints, as the churn signals ClassifyChurn and the playbook
/// read.
pub struct InteractionsEventsHandler {
    app: WinbackApp,
}

impl InteractionsEventsHandler {
    pub fn new(app: WinbackApp) -> Arc<Self> {
        Arc::new(InteractionsEventsHandler { app })
    }

    fn facts(env: &EventEnvelope) -> Result<Vec<(String, String, ComplaintFact)>, HandlerError> {
        use ipb::ComplaintState as S;
        let mut out = Vec::new();
        if let Some(e) = decode_payload::<ipb::ComplaintOpenedEvent>(env)? {
            out.push((e.complaint_id, e.customer_id, ComplaintFact::Opened));
        } else if let Some(e) = decode_payload::<ipb::ComplaintStatusChangedEvent>(env)? {
            let settled = matches!(S::try_from(e.to_state), Ok(S::Resolved | S::Closed));
            let fact = if settled {
                ComplaintFact::Resolved
            } else {
                ComplaintFact::Unresolved
            };
            out.push((e.complaint_id.clone(), e.customer_id.clone(), fact));
            // Levels the SLA policy raised on its own say nothing of the customer.
            if e.escalation_level > e.policy_escalations {
                out.push((e.complaint_id, e.customer_id, ComplaintFact::Escalated));
            }
        } else if let Some(e) = decode_payload::<ipb::ComplaintResolvedEvent>(env)? {
            out.push((e.complaint_id, e.customer_id, ComplaintFact::Resolved));
        } else if let Some(e) = decode_payload::<ipb::ComplaintSlaBreachedEvent>(env)? {
            out.push((e.complaint_id, e.customer_id, ComplaintFact::Breached));
        } else if let Some(e) = decode_payload::<ipb::ComplaintSlaAtRiskEvent>(env)? {
            out.push((e.complaint_id, e.customer_id, ComplaintFact::AtRisk));
        }
        Ok(out)
    }

    async fn apply(&self, env: &EventEnvelope) -> Result<(), HandlerError> {
        let facts = Self::facts(env)?;
        if facts.is_empty() {
            return Ok(());
        }
        let Some(txn) = claim(&self.app, env).await? else {
            return Ok(());
        };
        for (complaint, customer, fact) in facts {
            repo::record_complaint(&txn, &complaint, &customer, fact, now()).await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

retention_events::event_handler!(InteractionsEventsHandler);

/// Segmentation's membership changes: entering a segment enrols the customer in
/// the running triggered campaigns on it.
pub struct SegmentationEventsHandler {
    app: WinbackApp,
}

impl SegmentationEventsHandler {
    pub fn new(app: WinbackApp) -> Arc<Self> {
        Arc::new(SegmentationEventsHandler { app })
    }

    /// The segment a customer entered, if the event says one was entered.
    fn entered(env: &EventEnvelope) -> Result<Option<(String, String)>, HandlerError> {
        Ok(decode_payload::<spb::SegmentMembershipChangedEvent>(env)?
            .filter(|e| e.entered)
            .map(|e| {
                let segment = e
                    .segment_id
                    .strip_prefix("segments/")
                    .unwrap_or(&e.segment_id);
                (segment.to_string(), e.customer_id)
            }))
    }

    async fn apply(&self, env: &EventEnvelope) -> Result<(), HandlerError> {
        let Some((segment, customer)) = Self::entered(env)? else {
            return Ok(());
        };
        let n = self
            .app
            .segment_entered(&env.event_id, CONSUMER, &segment, &customer)
            .await
            .map_err(handler_error)?;
        if n > 0 {
            tracing::info!(segment, customer, "enrolled in triggered campaigns");
        }
        Ok(())
    }

    async fn apply_each(&self, envs: &[EventEnvelope]) -> Vec<Result<(), HandlerError>> {
        let mut out = Vec::with_capacity(envs.len());
        for env in envs {
            out.push(self.apply(env).await);
        }
        out
    }

    /// Creating or rescoring a segment emits one entry per member, and most enter
    /// segments no triggered campaign watches: those are claimed in the inbox
    /// together, in one statement, and only the rest are applied one by one.
    async fn apply_batch(&self, envs: &[EventEnvelope]) -> Vec<Result<(), HandlerError>> {
        let Ok(watched) = self.app.triggered_segments().await else {
            return self.apply_each(envs).await;
        };
        let mut out: Vec<Option<Result<(), HandlerError>>> = Vec::with_capacity(envs.len());
        let mut idle = Vec::new();
        for env in envs {
            out.push(match Self::entered(env) {
                Err(e) => Some(Err(e)),
                Ok(Some((segment, _))) if watched.contains(&segment) => None,
                Ok(Some(_)) => {
                    idle.push(env.event_id.as_str());
                    Some(Ok(()))
                }
                Ok(None) => Some(Ok(())),
            });
        }
        if !idle.is_empty()
            && let Err(e) = first_deliveries(self.app.db(), CONSUMER, &idle).await
        {
            tracing::warn!(error = %e, "claiming a batch failed; applying it event by event");
            return self.apply_each(envs).await;
        }
        let mut done = Vec::with_capacity(envs.len());
        for (env, r) in envs.iter().zip(out) {
            done.push(match r {
                Some(r) => r,
                None => self.apply(env).await,
            });
        }
        done
    }
}

retention_events::event_handler!(SegmentationEventsHandler, batch);
