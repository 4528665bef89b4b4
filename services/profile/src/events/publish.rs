//! The events the profile service publishes on `retention.profile.events`, one
//! builder per change; the app writes them to the outbox in the change's
//! transaction. Payloads carry no PII: consumers that need contact data call
//! GetCustomer with `pii.read`.

use chrono::{DateTime, Utc};
use retention_events::OutboxEvent;
use retention_proto::profile as pb;

use super::STREAM;
use crate::convert;
use crate::domain::*;

pub fn facts(c: &Customer) -> pb::CustomerFacts {
    pb::CustomerFacts {
        customer_id: c.id.clone(),
        kind: convert::customer_kind(c.kind).into(),
        firmographics: Some(convert::firmographics(&c.firmographics)),
        acquisition: Some(convert::acquisition(&c.acquisition)),
        tags: c.tags.clone(),
        gender: convert::demographics(&c.demographics).gender,
        birth_year: c.demographics.birth_year,
        income_band: convert::demographics(&c.demographics).income_band,
        region: c.demographics.region.clone().unwrap_or_default(),
        create_time: Some(convert::ts(c.create_time)),
    }
}

pub fn customer_created(c: &Customer) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(&c.id),
        &pb::CustomerCreatedEvent {
            customer: Some(facts(c)),
        },
    )
}

pub fn customer_updated(c: &Customer, changed_paths: Vec<String>) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(&c.id),
        &pb::CustomerUpdatedEvent {
            customer: Some(facts(c)),
            changed_paths,
        },
    )
}

pub fn customer_merged(survivor: &str, merged: &str) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(survivor),
        &pb::CustomerMergedEvent {
            survivor_id: survivor.into(),
            merged_id: merged.into(),
        },
    )
}

pub fn customer_erased(id: &str, at: DateTime<Utc>) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(id),
        &pb::CustomerErasedEvent {
            customer_id: id.into(),
            erase_time: Some(convert::ts(at)),
        },
    )
}

pub fn consent_changed(id: &str, c: &Consent) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(id),
        &pb::ConsentChangedEvent {
            customer_id: id.into(),
            channel: convert::contact_channel(c.channel).into(),
            status: convert::consent_status(c.status).into(),
        },
    )
}

pub fn purchase_recorded(p: &Purchase) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(&p.customer_id),
        &pb::PurchaseRecordedEvent {
            customer_id: p.customer_id.clone(),
            purchase_id: p.id.clone(),
            order_id: p.order_id.clone(),
            occur_time: Some(convert::ts(p.occur_time)),
            amount: Some(convert::money(&p.amount)),
            gross_margin: Some(convert::money(&p.gross_margin)),
            discount: Some(convert::money(&p.discount)),
            product_category: p.product_category.clone().unwrap_or_default(),
            channel: p.channel.clone().unwrap_or_default(),
        },
    )
}

pub fn referral_recorded(r: &Referral) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(&r.referrer_id),
        &pb::ReferralRecordedEvent {
            referrer_id: r.referrer_id.clone(),
            referred_id: r.referred_id.clone(),
            occur_time: Some(convert::ts(r.occur_time)),
        },
    )
}

/// A backfill's replay of one customer, addressed to `group` alone: its current
/// state as the events that would have produced it. A live customer: created
/// (current facts), each customer merged into it, each consent, each purchase
/// (purchase ids as recorded, so consumers dedupe them like live ones), each
/// referral it gave. An erased one: its erasure.
pub fn replay(r: &ReplayedCustomer, group: &str) -> Vec<OutboxEvent> {
    let c = &r.customer;
    if c.erased {
        return vec![customer_erased(&c.id, c.update_time).for_group(group)];
    }
    let mut out = Vec::with_capacity(
        1 + c.merged_ids.len() + c.consents.len() + r.purchases.len() + r.referrals_given.len(),
    );
    out.push(customer_created(c));
    out.extend(c.merged_ids.iter().map(|m| customer_merged(&c.id, m)));
    out.extend(c.consents.iter().map(|x| consent_changed(&c.id, x)));
    out.extend(r.purchases.iter().map(purchase_recorded));
    out.extend(r.referrals_given.iter().map(referral_recorded));
    out.into_iter().map(|e| e.for_group(group)).collect()
}
