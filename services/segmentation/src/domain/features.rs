//! Per-customer features, folded from profile and interactions events. The fold is
//! pure; exactly-once application is the consumer's job (inbox), so every method
//! here assumes each event arrives once.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use super::models::History;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Features {
    pub first_purchase: Option<DateTime<Utc>>,
    pub last_purchase: Option<DateTime<Utc>>,
    pub purchases: u32,
    /// Distinct product categories bought (cross-purchase, DOMAIN §5).
    pub categories: BTreeSet<String>,
    pub spend_minor: i64,
    pub margin_minor: i64,
    /// Margin of the first purchase: Gamma-Gamma models repeat purchases only.
    pub first_margin_minor: i64,
    pub discount_minor: i64,
    pub referrals_given: u32,
    pub complaints_total: u32,
    pub complaints_open: u32,
    pub complaints_breached: u32,
    pub csat_sum: i64,
    pub csat_count: u32,
    pub expectation_gap_sum: i64,
    pub expectation_gap_count: u32,
    /// Spend per calendar month (`year * 12 + month0`), for the lifecycle trend.
    pub monthly_spend: BTreeMap<i32, i64>,
    /// Currency of the first purchase: amounts are summed as recorded.
    pub currency: String,
    /// Firmographics from profile (credit rating name, e.g. "GOOD").
    pub credit_rating: Option<String>,
    pub annual_revenue_minor: Option<i64>,
    pub share_of_wallet: Option<f64>,
    /// When the customer was created in profile (tenure).
    pub customer_since: Option<DateTime<Utc>>,
}

fn month_index(t: DateTime<Utc>) -> i32 {
    t.year() * 12 + t.month0() as i32
}

const DAY_SECONDS: f64 = 86_400.0;

impl Features {
    pub fn record_purchase(
        &mut self,
        at: DateTime<Utc>,
        amount: i64,
        margin: i64,
        discount: i64,
        category: &str,
    ) {
        if self.first_purchase.is_none_or(|t| at < t) {
            self.first_margin_minor = margin;
        }
        self.first_purchase = Some(self.first_purchase.map_or(at, |t| t.min(at)));
        self.last_purchase = Some(self.last_purchase.map_or(at, |t| t.max(at)));
        self.purchases += 1;
        if !category.is_empty() {
            self.categories.insert(category.to_string());
        }
        self.spend_minor += amount;
        self.margin_minor += margin;
        self.discount_minor += discount;
        *self.monthly_spend.entry(month_index(at)).or_default() += amount;
    }

    /// Spend in the `periods` complete windows of `months_per_period` calendar
    /// months before the month of `now`, oldest first. The running month is left
    /// out: a half-month would read as a decline.
    pub fn spend_by_period(
        &self,
        now: DateTime<Utc>,
        periods: u32,
        months_per_period: u32,
    ) -> Vec<f64> {
        let width = months_per_period.max(1) as i32;
        let end = month_index(now);
        (0..periods as i32)
            .rev()
            .map(|k| {
                let hi = end - k * width;
                self.monthly_spend
                    .range(hi - width..hi)
                    .fold(0.0, |acc, (_, v)| acc + *v as f64)
            })
            .collect()
    }

    pub fn record_complaint_opened(&mut self) {
        self.complaints_total += 1;
        self.complaints_open += 1;
    }

    pub fn record_complaint_resolved(&mut self) {
        self.complaints_open = self.complaints_open.saturating_sub(1);
    }

    pub fn record_complaint_reopened(&mut self) {
        self.complaints_open += 1;
    }

    pub fn record_sla_breach(&mut self) {
        self.complaints_breached += 1;
    }

    pub fn record_survey(&mut self, csat: Option<i32>, expectation_gap: Option<i32>) {
        if let Some(c) = csat {
            self.csat_sum += i64::from(c);
            self.csat_count += 1;
        }
        if let Some(g) = expectation_gap {
            self.expectation_gap_sum += i64::from(g);
            self.expectation_gap_count += 1;
        }
    }

    /// Folds a merged-away customer's features into the survivor's.
    pub fn absorb(&mut self, other: &Features) {
        if other
            .first_purchase
            .is_some_and(|o| self.first_purchase.is_none_or(|t| o < t))
        {
            self.first_margin_minor = other.first_margin_minor;
        }
        self.first_purchase = match (self.first_purchase, other.first_purchase) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_purchase = match (self.last_purchase, other.last_purchase) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.purchases += other.purchases;
        self.categories.extend(other.categories.iter().cloned());
        self.spend_minor += other.spend_minor;
        self.margin_minor += other.margin_minor;
        self.discount_minor += other.discount_minor;
        self.referrals_given += other.referrals_given;
        self.complaints_total += other.complaints_total;
        self.complaints_open += other.complaints_open;
        self.complaints_breached += other.complaints_breached;
        self.csat_sum += other.csat_sum;
        self.csat_count += other.csat_count;
        self.expectation_gap_sum += other.expectation_gap_sum;
        self.expectation_gap_count += other.expectation_gap_count;
        for (m, v) in &other.monthly_spend {
            *self.monthly_spend.entry(*m).or_default() += v;
        }
        if self.currency.is_empty() {
            self.currency.clone_from(&other.currency);
        }
        // The survivor's own firmographics win; the merged record fills gaps.
        self.credit_rating = self.credit_rating.take().or(other.credit_rating.clone());
        self.annual_revenue_minor = self.annual_revenue_minor.or(other.annual_revenue_minor);
        self.share_of_wallet = self.share_of_wallet.or(other.share_of_wallet);
        self.customer_since = match (self.customer_since, other.customer_since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// Purchases after the first (the models count repeats).
    pub fn repeat_purchases(&self) -> u32 {
        self.purchases.saturating_sub(1)
    }

    /// Share of list price given away as discounts: price sensitivity (DOMAIN §5).
    pub fn discount_share(&self) -> f64 {
        let list = self.spend_minor + self.discount_minor;
        if list <= 0 {
            0.0
        } else {
            self.discount_minor as f64 / list as f64
        }
    }

    /// The customer's own usual gap between purchases, in days.
    pub fn usual_interval_days(&self) -> Option<f64> {
        let (first, last) = (self.first_purchase?, self.last_purchase?);
        (self.purchases >= 2).then(|| {
            (last - first).num_seconds() as f64 / DAY_SECONDS / f64::from(self.purchases - 1)
        })
    }

    pub fn mean_csat(&self) -> Option<f64> {
        (self.csat_count > 0).then(|| self.csat_sum as f64 / f64::from(self.csat_count))
    }

    pub fn mean_expectation_gap(&self) -> Option<f64> {
        (self.expectation_gap_count > 0)
            .then(|| self.expectation_gap_sum as f64 / f64::from(self.expectation_gap_count))
    }

    /// The BG/NBD view at `now`, time in `unit_days` (7 for weeks).
    pub fn history(&self, now: DateTime<Utc>, unit_days: f64) -> Option<History> {
        let (first, last) = (self.first_purchase?, self.last_purchase?);
        let units = |d: chrono::TimeDelta| d.num_seconds() as f64 / DAY_SECONDS / unit_days;
        Some(History {
            x: f64::from(self.repeat_purchases()),
            t_x: units(last - first),
            t: units(now - first).max(units(last - first)),
        })
    }

    /// Mean margin per repeat purchase, the Gamma-Gamma input (None without repeats).
    pub fn mean_repeat_margin(&self) -> Option<f64> {
        let repeats = self.repeat_purchases();
        (repeats > 0)
            .then(|| (self.margin_minor - self.first_margin_minor) as f64 / f64::from(repeats))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn day(d: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::days(d)
    }

    #[test]
    fn purchases_fold_into_recency_frequency_and_value() {
        let mut f = Features::default();
        f.record_purchase(day(14), 1000, 300, 0, "tea");
        f.record_purchase(day(0), 2000, 500, 500, "tea");
        f.record_purchase(day(28), 1000, 200, 0, "cups");
        assert_eq!(
            f.first_purchase,
            Some(day(0)),
            "events may arrive out of order"
        );
        assert_eq!(f.last_purchase, Some(day(28)));
        assert_eq!((f.purchases, f.repeat_purchases()), (3, 2));
        assert_eq!(f.categories.len(), 2);
        assert_eq!(f.usual_interval_days(), Some(14.0));
        assert!((f.discount_share() - 500.0 / 4500.0).abs() < 1e-12);
        assert_eq!(
            f.first_margin_minor, 500,
            "the earliest purchase, though it arrived second"
        );
        assert_eq!(f.mean_repeat_margin(), Some(250.0));
        let h = f.history(day(35), 7.0).unwrap();
        assert_eq!((h.x, h.t_x, h.t), (2.0, 4.0, 5.0));
    }

    #[test]
    fn complaints_surveys_and_merges() {
        let mut a = Features::default();
        a.record_complaint_opened();
        a.record_sla_breach();
        a.record_complaint_resolved();
        a.record_complaint_resolved();
        assert_eq!(
            (a.complaints_total, a.complaints_open, a.complaints_breached),
            (1, 0, 1),
            "never below zero"
        );
        a.record_survey(Some(4), Some(-2));
        let mut b = Features::default();
        b.record_purchase(day(3), 100, 10, 0, "tea");
        b.record_survey(Some(2), None);
        b.record_complaint_opened();
        a.absorb(&b);
        assert_eq!(a.mean_csat(), Some(3.0));
        assert_eq!(a.mean_expectation_gap(), Some(-2.0));
        assert_eq!(
            (a.purchases, a.complaints_total, a.complaints_open),
            (1, 2, 1)
        );
        assert_eq!(a.first_purchase, Some(day(3)));
        assert_eq!(a.first_margin_minor, 10);
        assert!(
            Features::default().history(day(1), 7.0).is_none(),
            "no purchase, no history"
        );
    }

    #[test]
    fn spend_by_period_uses_complete_months_before_now() {
        let mut f = Features::default();
        let at = |m: u32, d: u32| Utc.with_ymd_and_hms(2026, m, d, 12, 0, 0).unwrap();
        f.record_purchase(at(1, 31), 100, 0, 0, "");
        f.record_purchase(at(2, 1), 200, 0, 0, "");
        f.record_purchase(at(3, 15), 400, 0, 0, "");
        f.record_purchase(at(4, 2), 800, 0, 0, "running month");
        // Now in April: periods of two months are [Dec, Jan] and [Feb, Mar].
        assert_eq!(f.spend_by_period(at(4, 20), 2, 2), vec![100.0, 600.0]);
        assert_eq!(
            f.spend_by_period(at(4, 20), 1, 0),
            vec![400.0],
            "width 0 is 1"
        );
        let mut g = Features::default();
        g.record_purchase(at(3, 1), 50, 0, 0, "");
        g.annual_revenue_minor = Some(7);
        f.annual_revenue_minor = None;
        f.credit_rating = Some("GOOD".into());
        f.absorb(&g);
        assert_eq!(f.spend_by_period(at(4, 20), 1, 1), vec![450.0]);
        assert_eq!(
            (f.credit_rating.as_deref(), f.annual_revenue_minor),
            (Some("GOOD"), Some(7)),
            "the survivor's facts win, gaps are filled"
        );
    }
}
