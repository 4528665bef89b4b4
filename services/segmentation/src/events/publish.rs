//! The events segmentation publishes on [`STREAM`]: built by the app inside the
//! transaction that makes the change (outbox).

use chrono::{DateTime, Utc};
use retention_events::OutboxEvent;
use retention_proto::segmentation as pb;

use super::STREAM;
use crate::convert;
use crate::domain::scoring::Insight;
use crate::domain::value::ChurnRisk;

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

pub fn churn_risk_changed(previous: ChurnRisk, current: &Insight) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(&current.customer_id),
        &pb::ChurnRiskChangedEvent {
            customer_id: current.customer_id.clone(),
            previous: convert::churn_risk(previous).into(),
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
