//! One consumed upstream event (profile, interactions) as a change to the
//! feature store, and how it folds into a customer's features. Pure data and
//! rules: decoding the events is `events::consume`'s, applying them the app's.

use chrono::{DateTime, Utc};

use crate::domain::features::{Features, FoldError};
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
    SlaAtRisk {
        customer_id: String,
        complaint_id: String,
        /// The SLA target about to be missed (its proto number).
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
            | Change::SlaAtRisk { customer_id, .. }
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
            | Change::SlaAtRisk { customer_id, .. }
            | Change::Survey { customer_id, .. } => *customer_id = survivor.to_string(),
            Change::Referral { referrer_id, .. } => *referrer_id = survivor.to_string(),
            Change::Merged { .. } | Change::Erased { .. } => {}
        }
        Some(c)
    }

    /// The change's single amounts within [`MAX_MINOR_UNITS`] either way; an
    /// amount beyond it is poison (no real order, revenue or discount is that
    /// large, and sums of in-bound amounts stay exact far longer).
    ///
    /// [`MAX_MINOR_UNITS`]: retention_domain::MAX_MINOR_UNITS
    pub fn check_bounds(&self) -> Result<(), FoldError> {
        let amounts: &[(&'static str, i64)] = match self {
            Change::Purchase {
                amount_minor,
                margin_minor,
                discount_minor,
                ..
            } => &[
                ("amount_minor", *amount_minor),
                ("margin_minor", *margin_minor),
                ("discount_minor", *discount_minor),
            ],
            Change::Facts {
                annual_revenue_minor: Some(revenue),
                ..
            } => &[("annual_revenue_minor", *revenue)],
            _ => &[],
        };
        match amounts
            .iter()
            .find(|(_, v)| !retention_domain::money_in_bounds(*v))
        {
            Some((field, value)) => Err(FoldError::OutOfBounds {
                customer: self.customer_id().to_string(),
                field,
                value: *value,
            }),
            None => Ok(()),
        }
    }

    /// Folds a single-customer change into that customer's features; false when
    /// its effect was there already (a replayed event), and nothing changed.
    /// Purchases are deduplicated before, by the purchases table. A change that
    /// cannot be folded exactly (a sum would overflow, or an amount is out of
    /// bounds) is an error, and then nothing changes.
    pub fn apply_to(&self, f: &mut Features, clock: &OccasionClock) -> Result<bool, FoldError> {
        self.check_bounds()?;
        let overflow = |e: crate::domain::features::Overflow| e.of(self.customer_id());
        Ok(match self {
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
                f.record_purchase(
                    *at,
                    *amount_minor,
                    *margin_minor,
                    *discount_minor,
                    category,
                    clock,
                )
                .map_err(overflow)?;
                if f.currency.is_empty() {
                    f.currency.clone_from(currency);
                }
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
            Change::SlaAtRisk {
                complaint_id,
                target,
                ..
            } => f.record_sla_at_risk(complaint_id, *target),
            Change::Survey {
                survey_id,
                csat,
                expectation_gap,
                ..
            } => f
                .record_survey(survey_id, *csat, *expectation_gap)
                .map_err(overflow)?,
            Change::Merged { .. } | Change::Erased { .. } => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const MAX: i64 = retention_domain::MAX_MINOR_UNITS;

    fn purchase(customer: &str, amount: i64, margin: i64, discount: i64) -> Change {
        Change::Purchase {
            customer_id: customer.into(),
            purchase_id: format!("p-{amount}-{margin}-{discount}"),
            at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            amount_minor: amount,
            margin_minor: margin,
            discount_minor: discount,
            currency: "CNY".into(),
            category: "tea".into(),
        }
    }

    #[test]
    fn amounts_beyond_the_bound_are_refused_naming_customer_and_field() {
        assert_eq!(purchase("c1", MAX, -MAX, MAX).check_bounds(), Ok(()));
        for (change, field, value) in [
            (purchase("c1", MAX + 1, 0, 0), "amount_minor", MAX + 1),
            (purchase("c1", 0, -MAX - 1, 0), "margin_minor", -MAX - 1),
            (purchase("c1", 0, 0, i64::MIN), "discount_minor", i64::MIN),
            (
                Change::Facts {
                    customer_id: "c1".into(),
                    credit_rating: None,
                    annual_revenue_minor: Some(1 << 62),
                    share_of_wallet: None,
                    create_time: None,
                },
                "annual_revenue_minor",
                1 << 62,
            ),
        ] {
            let err = change.check_bounds().unwrap_err();
            assert_eq!(
                err,
                FoldError::OutOfBounds {
                    customer: "c1".into(),
                    field,
                    value
                }
            );
            let reason = err.to_string();
            assert!(
                reason.contains("c1")
                    && reason.contains(field)
                    && reason.contains("MAX_MINOR_UNITS"),
                "{reason}"
            );
            let mut f = Features::default();
            assert_eq!(
                change.apply_to(&mut f, &OccasionClock::default()),
                Err(err),
                "never folded"
            );
            assert_eq!(f, Features::default());
        }
    }

    #[test]
    fn a_change_whose_fold_would_overflow_names_customer_and_field() {
        let clock = OccasionClock::default();
        let mut f = Features::default();
        for _ in 0..9_000 {
            assert_eq!(purchase("c1", MAX, 0, 0).apply_to(&mut f, &clock), Ok(true));
        }
        f.spend_minor = i64::MAX - MAX + 1;
        let before = f.clone();
        let err = purchase("c1", MAX, 0, 0)
            .apply_to(&mut f, &clock)
            .unwrap_err();
        assert_eq!(
            err,
            FoldError::Overflow {
                customer: "c1".into(),
                field: "spend_minor"
            }
        );
        assert!(
            err.to_string().contains("customer c1: spend_minor"),
            "{err}"
        );
        assert_eq!(f, before, "nothing folded, not even the currency");
        let survey = Change::Survey {
            customer_id: "c2".into(),
            survey_id: "s".into(),
            csat: Some(5),
            expectation_gap: None,
        };
        let mut g = Features {
            csat_sum: i64::MAX,
            ..Features::default()
        };
        assert_eq!(
            survey.apply_to(&mut g, &clock),
            Err(FoldError::Overflow {
                customer: "c2".into(),
                field: "csat_sum"
            })
        );
    }
}
