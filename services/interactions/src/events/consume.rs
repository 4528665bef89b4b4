//! The profile events the interactions service consumes (CustomerMerged re-points
//! history, CustomerErased removes free text) and segmentation's tier changes,
//! applied exactly once in effect through the inbox.

use std::sync::Arc;

use retention_events::{EventEnvelope, HandlerError, decode_payload, first_delivery};
use retention_proto::profile as profile_pb;
use retention_proto::segmentation as segmentation_pb;
use sea_orm::{DatabaseConnection, TransactionTrait};

use super::CONSUMER;
use crate::domain::*;
use crate::store::repo;

/// Applies profile's CustomerMerged and CustomerErased; other event types are skipped.
pub struct ProfileEventsHandler {
    pub db: DatabaseConnection,
}

impl ProfileEventsHandler {
    pub fn new(db: DatabaseConnection) -> Arc<Self> {
        Arc::new(ProfileEventsHandler { db })
    }

    async fn apply(&self, env: &EventEnvelope) -> Result<(), HandlerError> {
        let merged = decode_payload::<profile_pb::CustomerMergedEvent>(env)?;
        let erased = decode_payload::<profile_pb::CustomerErasedEvent>(env)?;
        if merged.is_none() && erased.is_none() {
            return Ok(());
        }
        let txn = self.db.begin().await?;
        if !first_delivery(&txn, CONSUMER, &env.event_id).await? {
            return Ok(());
        }
        if let Some(m) = merged {
            repo::repoint_customer(&txn, &m.merged_id, &m.survivor_id).await?;
        }
        if let Some(e) = erased {
            repo::redact_customer(&txn, &e.customer_id).await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

retention_events::event_handler!(ProfileEventsHandler);

/// Keeps the `customer_tiers` read model (SLA targets per tier) current from
/// segmentation's CustomerScored and ChurnRiskChanged, which both carry the
/// management tier.
pub struct SegmentationEventsHandler {
    pub db: DatabaseConnection,
}

fn tier_from(t: i32) -> Option<CustomerTier> {
    use segmentation_pb::ManagementTier as M;
    match M::try_from(t).ok()? {
        M::Key => Some(CustomerTier::Key),
        M::Suitable => Some(CustomerTier::Suitable),
        M::Ordinary => Some(CustomerTier::Ordinary),
        M::OneOff => Some(CustomerTier::OneOff),
        M::Unspecified => None,
    }
}

impl SegmentationEventsHandler {
    pub fn new(db: DatabaseConnection) -> Arc<Self> {
        Arc::new(SegmentationEventsHandler { db })
    }

    async fn apply(&self, env: &EventEnvelope) -> Result<(), HandlerError> {
        let scored = decode_payload::<segmentation_pb::CustomerScoredEvent>(env)?
            .map(|e| (e.customer_id, e.management_tier));
        let risk = decode_payload::<segmentation_pb::ChurnRiskChangedEvent>(env)?
            .map(|e| (e.customer_id, e.management_tier));
        let Some((customer_id, tier)) = scored.or(risk) else {
            return Ok(());
        };
        let Some(tier) = tier_from(tier) else {
            return Ok(());
        };
        let txn = self.db.begin().await?;
        if !first_delivery(&txn, CONSUMER, &env.event_id).await? {
            return Ok(());
        }
        repo::set_tier(&txn, &customer_id, tier, now()).await?;
        txn.commit().await?;
        Ok(())
    }
}

retention_events::event_handler!(SegmentationEventsHandler);
