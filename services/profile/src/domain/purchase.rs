//! Purchases and referrals: the behavioural facts segmentation models on.

use chrono::{DateTime, Utc};
use retention_errors::FieldViolations;

use super::money::Money;
use super::validate::*;

#[derive(Debug, Clone, PartialEq)]
pub struct Purchase {
    pub id: String,
    /// The current owner (the survivor after merges).
    pub customer_id: String,
    /// The customer the order was recorded for; order ids are unique per origin so
    /// two merged customers' identical order numbers stay distinct and re-sends
    /// after a merge are still recognised.
    pub origin_customer_id: String,
    pub order_id: String,
    pub occur_time: DateTime<Utc>,
    pub amount: Money,
    pub gross_margin: Money,
    pub discount: Money,
    pub product_category: Option<String>,
    pub channel: Option<String>,
    pub create_time: DateTime<Utc>,
}

/// A purchase as submitted, before it has an id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PurchaseInput {
    pub order_id: String,
    pub occur_time: Option<DateTime<Utc>>,
    pub amount: Option<Money>,
    pub gross_margin: Option<Money>,
    pub discount: Option<Money>,
    pub product_category: Option<String>,
    pub channel: Option<String>,
}

impl PurchaseInput {
    pub fn validate(&self, prefix: &str, now: DateTime<Utc>) -> FieldViolations {
        let mut v = FieldViolations::new();
        let f = |n: &str| format!("{prefix}.{n}");
        check_len(&mut v, &f("order_id"), &self.order_id, 1, 128);
        if self.order_id.contains('/') || self.order_id.chars().any(char::is_control) {
            v.add(f("order_id"), "must not contain '/' or control characters");
        }
        match self.occur_time {
            None => v.add(f("occur_time"), "is required"),
            Some(t) if t > now + chrono::Duration::days(1) => {
                v.add(f("occur_time"), "must not be in the future")
            }
            Some(_) => {}
        }
        match &self.amount {
            None => v.add(f("amount"), "is required"),
            Some(m) => check_money(&mut v, &f("amount"), m, false),
        }
        let currency = self.amount.as_ref().map(|m| m.currency.as_str());
        // A loss-making sale has a negative margin, so only the discount is bounded at 0.
        for (name, money, allow_negative) in [
            ("gross_margin", &self.gross_margin, true),
            ("discount", &self.discount, false),
        ] {
            if let Some(m) = money {
                check_money(&mut v, &f(name), m, allow_negative);
                if currency.is_some_and(|c| c != m.currency) {
                    v.add(
                        format!("{}.currency_code", f(name)),
                        "must equal amount.currency_code",
                    );
                }
            }
        }
        if let Some(c) = &self.product_category {
            check_len(&mut v, &f("product_category"), c, 1, 64);
        }
        if let Some(c) = &self.channel {
            check_token(&mut v, &f("channel"), c, 64);
        }
        v
    }

    /// Builds the purchase; call only after `validate` passed.
    pub fn into_purchase(self, id: String, customer_id: &str, now: DateTime<Utc>) -> Purchase {
        let amount = self.amount.unwrap_or(Money {
            currency: "XXX".into(),
            minor_units: 0,
        });
        let zero = Money {
            currency: amount.currency.clone(),
            minor_units: 0,
        };
        Purchase {
            id,
            customer_id: customer_id.to_string(),
            origin_customer_id: customer_id.to_string(),
            order_id: self.order_id,
            occur_time: self.occur_time.unwrap_or(now),
            gross_margin: self.gross_margin.unwrap_or_else(|| zero.clone()),
            discount: self.discount.unwrap_or(zero),
            amount,
            product_category: self.product_category.filter(|s| !s.is_empty()),
            channel: self.channel.filter(|s| !s.is_empty()),
            create_time: now,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referral {
    pub referrer_id: String,
    pub referred_id: String,
    pub occur_time: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields `p`'s validation names.
    fn violated_fields(p: &PurchaseInput) -> Vec<String> {
        p.validate("purchase", Utc::now())
            .iter()
            .map(|(f, _)| f.to_string())
            .collect()
    }

    fn eur(n: i64) -> Option<Money> {
        Some(Money {
            currency: "EUR".into(),
            minor_units: n,
        })
    }

    #[test]
    fn a_complete_purchase_is_valid() {
        let p = PurchaseInput {
            order_id: "A-1".into(),
            occur_time: Some(Utc::now()),
            amount: eur(1999),
            gross_margin: eur(-100),
            discount: eur(200),
            ..Default::default()
        };
        assert!(p.validate("purchase", Utc::now()).is_empty());
    }

    #[test]
    fn negative_amounts_mixed_currencies_and_missing_fields_are_reported() {
        let p = PurchaseInput {
            order_id: String::new(),
            amount: eur(-5),
            discount: Some(Money {
                currency: "USD".into(),
                minor_units: 1,
            }),
            ..Default::default()
        };
        let fields = violated_fields(&p);
        for f in [
            "purchase.order_id",
            "purchase.occur_time",
            "purchase.amount.minor_units",
            "purchase.discount.currency_code",
        ] {
            assert!(fields.contains(&f.to_string()), "{f} missing in {fields:?}");
        }
    }

    #[test]
    fn amounts_beyond_max_minor_units_are_reported_per_field() {
        let p = PurchaseInput {
            order_id: "A-1".into(),
            occur_time: Some(Utc::now()),
            amount: eur(1 << 62),
            gross_margin: eur(i64::MAX),
            discount: eur(retention_domain::MAX_MINOR_UNITS + 1),
            ..Default::default()
        };
        let fields = violated_fields(&p);
        assert_eq!(
            fields,
            [
                "purchase.amount.minor_units",
                "purchase.gross_margin.minor_units",
                "purchase.discount.minor_units"
            ]
        );
        let at_bound = PurchaseInput {
            amount: eur(retention_domain::MAX_MINOR_UNITS),
            gross_margin: eur(-retention_domain::MAX_MINOR_UNITS),
            discount: eur(retention_domain::MAX_MINOR_UNITS),
            ..p
        };
        assert!(at_bound.validate("purchase", Utc::now()).is_empty());
    }

    #[test]
    fn defaults_fill_margin_and_discount_in_the_amount_currency() {
        let p = PurchaseInput {
            order_id: "A".into(),
            occur_time: Some(Utc::now()),
            amount: eur(10),
            ..Default::default()
        }
        .into_purchase("p".into(), "c", Utc::now());
        assert_eq!(
            p.discount,
            Money {
                currency: "EUR".into(),
                minor_units: 0
            }
        );
        assert_eq!(p.origin_customer_id, "c");
    }
}
