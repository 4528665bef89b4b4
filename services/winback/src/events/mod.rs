//! What the win-back service publishes on `retention.winback.events`, and the
//! events it consumes: profile's purchases (won-back attribution), consents,
//! merges and erasures; interactions' complaints (churn signals); segmentation's
//! membership changes (triggered campaigns). Each is applied exactly once in effect
//! through the inbox.

use std::sync::Arc;

use futures::future::BoxFuture;
use retention_domain::now;
use retention_events::{
    EventEnvelope, EventHandler, HandlerError, OutboxEvent, decode_payload, first_deliveries,
    first_delivery,
};
use retention_proto::interactions as ipb;
use retention_proto::profile as ppb;
use retention_proto::segmentation as spb;
use retention_proto::winback as pb;
use sea_orm::TransactionTrait;

use crate::app::{AppError, WinbackApp};
use crate::domain::records::{Campaign, ChurnRecord, ContactChannel, Target};
use crate::grpc::convert;
use crate::store::repo::{self, ComplaintFact};

pub const STREAM: &str = "retention.winback.events";
pub const SOURCE: &str = "winback";
pub const PROFILE_STREAM: &str = "retention.profile.events";
pub const INTERACTIONS_STREAM: &str = "retention.interactions.events";
pub const SEGMENTATION_STREAM: &str = "retention.segmentation.events";
/// Consumer group name of this service on other services' streams.
pub const CONSUMER: &str = "winback";

pub fn churn_recorded(r: &ChurnRecord) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(&r.customer_id),
        &pb::ChurnRecordedEvent {
            churn_record_id: r.id.clone(),
            customer_id: r.customer_id.clone(),
            churn_type: convert::churn_type(r.churn_type).into(),
            reason_codes: r
                .reason_codes
                .iter()
                .map(|c| convert::reason(*c).into())
                .collect(),
            churn_time: Some(convert::ts(r.churn_time)),
        },
    )
}

pub fn campaign_launched(c: &Campaign, treated: i64, control: i64) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        None,
        &pb::CampaignLaunchedEvent {
            campaign_id: c.id.clone(),
            kind: convert::kind(c.kind).into(),
            strategy: convert::strategy(c.strategy).into(),
            treated,
            control,
            launch_time: c.launch_time.map(convert::ts),
        },
    )
}

pub fn offer_dispatched(c: &Campaign, t: &Target) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(&t.customer_id),
        &pb::OfferDispatchedEvent {
            campaign_id: c.id.clone(),
            customer_id: t.customer_id.clone(),
            offer: Some(convert::offer(c)),
            channel: c.channel.as_str().into(),
            dispatch_time: t.dispatch_time.map(convert::ts),
            win_deadline: Some(convert::ts(t.win_deadline)),
        },
    )
}

pub fn customer_won_back(t: &Target) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(&t.customer_id),
        &pb::CustomerWonBackEvent {
            campaign_id: t.campaign_id.clone(),
            customer_id: t.customer_id.clone(),
            arm: convert::arm(t.arm).into(),
            recovered_margin: convert::money(&t.currency, t.recovered_margin_minor),
            won_back_time: t.won_back_time.map(convert::ts),
        },
    )
}

/// A failure of the use case, as the consumer sees it: a peer or the database
/// down is worth another delivery.
fn handler_error(e: AppError) -> HandlerError {
    match e {
        AppError::Invalid(_) | AppError::NotFound(_) => HandlerError::Permanent(e.to_string()),
        other => HandlerError::Retry(other.to_string()),
    }
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
        let txn = self.app.db.begin().await?;
        if !first_delivery(&txn, CONSUMER, &env.event_id).await? {
            return Ok(());
        }
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

impl EventHandler for ProfileEventsHandler {
    fn handle<'a>(
        &'a self,
        envelope: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(self.apply(envelope))
    }
}

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
            if e.escalation_level > 0 {
                out.push((e.complaint_id, e.customer_id, ComplaintFact::Escalated));
            }
        } else if let Some(e) = decode_payload::<ipb::ComplaintResolvedEvent>(env)? {
            out.push((e.complaint_id, e.customer_id, ComplaintFact::Resolved));
        } else if let Some(e) = decode_payload::<ipb::ComplaintSlaBreachedEvent>(env)? {
            out.push((e.complaint_id, e.customer_id, ComplaintFact::Breached));
        }
        Ok(out)
    }

    async fn apply(&self, env: &EventEnvelope) -> Result<(), HandlerError> {
        let facts = Self::facts(env)?;
        if facts.is_empty() {
            return Ok(());
        }
        let txn = self.app.db.begin().await?;
        if !first_delivery(&txn, CONSUMER, &env.event_id).await? {
            return Ok(());
        }
        for (complaint, customer, fact) in facts {
            repo::record_complaint(&txn, &complaint, &customer, fact, now()).await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

impl EventHandler for InteractionsEventsHandler {
    fn handle<'a>(
        &'a self,
        envelope: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(self.apply(envelope))
    }
}

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
            && let Err(e) = first_deliveries(&self.app.db, CONSUMER, &idle).await
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

impl EventHandler for SegmentationEventsHandler {
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
