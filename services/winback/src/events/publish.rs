//! The events the win-back service publishes on [`STREAM`], built by the app
//! inside the transaction of the change they report.

use retention_events::OutboxEvent;
use retention_proto::winback as pb;

use super::STREAM;
use crate::convert;
use crate::domain::records::{Campaign, ChurnRecord, Target};

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
