//! One consumed upstream event (profile, interactions) as a change to the
//! feature store, and how it folds into a customer's features. Pure data and
//! rules: decoding the events is `events::consume`'s, applying them the app's.

use chrono::{DateTime, Utc};

use crate::domain::features::Features;
use crate::domain::occasions::OccasionClock;

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
