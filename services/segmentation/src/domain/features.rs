//! Per-customer features, folded from profile and interactions events. The fold is
//! pure. The inbox makes each event id apply once; a backfill replays the owners'
//! state under new event ids, so the counters are kept idempotent here: complaints,
//! surveys and referrals are counted by their ids (purchases by theirs, in the
//! purchases table), and an event whose effect is already present changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use super::models::History;
use super::occasions::OccasionClock;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Features {
    pub first_purchase: Option<DateTime<Utc>>,
    pub last_purchase: Option<DateTime<Utc>>,
    /// Orders (RFM frequency and the order-count rules keep counting these).
    pub purchases: u32,
    /// Purchase occasions: the periods of `occasion_clock` with an order, by
    /// index (see [`OccasionClock::index`]). The models count these.
    pub occasions: BTreeSet<i32>,
    /// Margin of the first occasion (all its orders): Gamma-Gamma models the
    /// margin of repeat occasions only.
    pub first_occasion_margin_minor: i64,
    /// The clock `occasions` are numbered by (e.g. `day@UTC`); empty on rows
    /// folded before occasions were kept, which a scoring run re-derives.
    pub occasion_clock: String,
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
    /// The complaints counted above, by id.
    pub complaint_marks: BTreeMap<String, ComplaintMark>,
    /// The surveys counted above, by id.
    pub survey_ids: BTreeSet<String>,
    /// The customers this one referred (counted in `referrals_given`).
    pub referred_ids: BTreeSet<String>,
    /// The counters include events folded before ids were kept (an older
    /// version): a complaint event without a mark may then be about one counted
    /// already. Rows created since keep every id (false), and always say so.
    #[serde(default = "folded_without_ids")]
    pub counted_without_ids: bool,
}

/// A row stored without `counted_without_ids` predates the ids.
fn folded_without_ids() -> bool {
    true
}

/// What the counters hold of one complaint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ComplaintMark {
    /// Counted in `complaints_open`.
    pub open: bool,
    /// The SLA targets counted in `complaints_breached` (bits of [`sla_bit`]).
    pub breaches: u8,
    /// The SLA targets reported at risk of a breach (bits of [`sla_bit`]).
    pub at_risk: u8,
}

/// The bit of an SLA target (its proto number) in [`ComplaintMark::breaches`].
pub fn sla_bit(target: i32) -> u8 {
    1 << target.clamp(0, 7)
}

fn month_index(t: DateTime<Utc>) -> i32 {
    t.year() * 12 + t.month0() as i32
}

const DAY_SECONDS: f64 = 86_400.0;

/// A sum of the fold would leave its integer type: the change cannot be folded
/// exactly, and nothing of it is (the features are left as they were).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow {
    /// The feature whose sum would overflow (e.g. `margin_minor`).
    pub field: &'static str,
}

impl Overflow {
    /// The error of folding into `customer`'s features.
    pub fn of(self, customer: &str) -> FoldError {
        FoldError::Overflow {
            customer: customer.to_string(),
            field: self.field,
        }
    }
}

/// Why a change cannot be folded into a customer's features: it never can be
/// (poison), so the event carrying it is refused with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    #[error(
        "customer {customer}: {field} would overflow a 64-bit sum of minor units; the event is not applied"
    )]
    Overflow {
        customer: String,
        field: &'static str,
    },
    #[error(
        "customer {customer}: {field} of {value} minor units is beyond the bound of \
         {max} either way (retention_domain::MAX_MINOR_UNITS)",
        max = retention_domain::MAX_MINOR_UNITS
    )]
    OutOfBounds {
        customer: String,
        field: &'static str,
        value: i64,
    },
}

/// `sum + v`, or the overflow of `field`.
fn add(sum: i64, v: i64, field: &'static str) -> Result<i64, Overflow> {
    sum.checked_add(v).ok_or(Overflow { field })
}

/// `count + n`, or the overflow of `field`.
fn add_count(count: u32, n: u32, field: &'static str) -> Result<u32, Overflow> {
    count.checked_add(n).ok_or(Overflow { field })
}

impl Features {
    /// Folds one order in. Every sum is exact: one that would overflow is an
    /// error, and then nothing changes.
    pub fn record_purchase(
        &mut self,
        at: DateTime<Utc>,
        amount: i64,
        margin: i64,
        discount: i64,
        category: &str,
        clock: &OccasionClock,
    ) -> Result<(), Overflow> {
        // All sums first, so that an overflow leaves the features as they were.
        let purchases = add_count(self.purchases, 1, "purchases")?;
        let spend = add(self.spend_minor, amount, "spend_minor")?;
        let margin_sum = add(self.margin_minor, margin, "margin_minor")?;
        let discount_sum = add(self.discount_minor, discount, "discount_minor")?;
        let month = month_index(at);
        let month_spend = add(
            self.monthly_spend.get(&month).copied().unwrap_or(0),
            amount,
            "monthly_spend",
        )?;
        // Occasions numbered by another clock are re-derived by the next run
        // from the purchases table; adding to them would mix two calendars.
        let occasion = if self.occasions_follow(clock) {
            let period = clock.index(at);
            let first_margin = match self.occasions.first() {
                Some(first) if period == *first => add(
                    self.first_occasion_margin_minor,
                    margin,
                    "first_occasion_margin_minor",
                )?,
                Some(first) if period > *first => self.first_occasion_margin_minor,
                _ => margin,
            };
            Some((period, first_margin))
        } else {
            None
        };

        if self.purchases == 0 {
            self.occasion_clock = clock.to_string();
        }
        if let Some((period, first_margin)) = occasion {
            self.first_occasion_margin_minor = first_margin;
            self.occasions.insert(period);
        }
        if self.first_purchase.is_none_or(|t| at < t) {
            self.first_margin_minor = margin;
        }
        self.first_purchase = Some(self.first_purchase.map_or(at, |t| t.min(at)));
        self.last_purchase = Some(self.last_purchase.map_or(at, |t| t.max(at)));
        self.purchases = purchases;
        if !category.is_empty() {
            self.categories.insert(category.to_string());
        }
        self.spend_minor = spend;
        self.margin_minor = margin_sum;
        self.discount_minor = discount_sum;
        self.monthly_spend.insert(month, month_spend);
        Ok(())
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

    /// A complaint opened; false (and nothing changes) if it is counted already.
    pub fn record_complaint_opened(&mut self, complaint_id: &str) -> bool {
        if self.complaint_marks.contains_key(complaint_id) {
            return false;
        }
        self.complaint_marks.insert(
            complaint_id.to_string(),
            ComplaintMark {
                open: true,
                ..ComplaintMark::default()
            },
        );
        self.complaints_total = self.complaints_total.saturating_add(1);
        self.complaints_open = self.complaints_open.saturating_add(1);
        true
    }

    /// The mark of a complaint an event is about. One never seen was opened
    /// while its opening did not reach this model (a lost event): counted now, as
    /// open or not. On a row folded before ids were kept it was counted then, so
    /// only the mark is added and `legacy` adjusts the counters as before.
    fn mark(&mut self, complaint_id: &str, open: bool, legacy: impl FnOnce(&mut Self)) -> bool {
        if self.complaint_marks.contains_key(complaint_id) {
            return false;
        }
        if self.counted_without_ids {
            legacy(self);
        } else {
            self.complaints_total = self.complaints_total.saturating_add(1);
            self.complaints_open = self.complaints_open.saturating_add(u32::from(open));
        }
        self.complaint_marks.insert(
            complaint_id.to_string(),
            ComplaintMark {
                open,
                ..ComplaintMark::default()
            },
        );
        true
    }

    /// A complaint resolved; false if it is counted as resolved already.
    pub fn record_complaint_resolved(&mut self, complaint_id: &str) -> bool {
        if self.mark(complaint_id, false, |f| {
            f.complaints_open = f.complaints_open.saturating_sub(1)
        }) {
            return true;
        }
        match self.complaint_marks.get_mut(complaint_id) {
            Some(m) if m.open => {
                m.open = false;
                self.complaints_open = self.complaints_open.saturating_sub(1);
                true
            }
            _ => false,
        }
    }

    /// A resolved complaint reopened; false if it is counted as open already.
    pub fn record_complaint_reopened(&mut self, complaint_id: &str) -> bool {
        if self.mark(complaint_id, true, |f| {
            f.complaints_open = f.complaints_open.saturating_add(1)
        }) {
            return true;
        }
        match self.complaint_marks.get_mut(complaint_id) {
            Some(m) if !m.open => {
                m.open = true;
                self.complaints_open = self.complaints_open.saturating_add(1);
                true
            }
            _ => false,
        }
    }

    /// A complaint missed the SLA target `target` (its proto number); false if
    /// that breach is counted already. Only unresolved complaints (or one being
    /// resolved late) breach, so an unseen one counts as open.
    pub fn record_sla_breach(&mut self, complaint_id: &str, target: i32) -> bool {
        self.mark(complaint_id, true, |_| {});
        let bit = sla_bit(target);
        match self.complaint_marks.get_mut(complaint_id) {
            Some(m) if m.breaches & bit == 0 => {
                m.breaches |= bit;
                self.complaints_breached = self.complaints_breached.saturating_add(1);
                true
            }
            _ => false,
        }
    }

    /// A complaint's SLA target `target` (its proto number) is at risk of a
    /// breach; false if that warning is counted already. An unseen complaint
    /// counts as open, as for a breach.
    pub fn record_sla_at_risk(&mut self, complaint_id: &str, target: i32) -> bool {
        self.mark(complaint_id, true, |_| {});
        let bit = sla_bit(target);
        match self.complaint_marks.get_mut(complaint_id) {
            Some(m) if m.at_risk & bit == 0 => {
                m.at_risk |= bit;
                true
            }
            _ => false,
        }
    }

    /// Unresolved complaints with a target at risk of a breach.
    pub fn complaints_at_risk(&self) -> u32 {
        let n = self
            .complaint_marks
            .values()
            .filter(|m| m.open && m.at_risk != 0)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// A survey; false if it is counted already. Its sums are exact: one that
    /// would overflow is an error, and then nothing changes.
    pub fn record_survey(
        &mut self,
        survey_id: &str,
        csat: Option<i32>,
        expectation_gap: Option<i32>,
    ) -> Result<bool, Overflow> {
        if self.survey_ids.contains(survey_id) {
            return Ok(false);
        }
        let csat = match csat {
            Some(c) => Some((
                add(self.csat_sum, i64::from(c), "csat_sum")?,
                add_count(self.csat_count, 1, "csat_count")?,
            )),
            None => None,
        };
        let gap = match expectation_gap {
            Some(g) => Some((
                add(
                    self.expectation_gap_sum,
                    i64::from(g),
                    "expectation_gap_sum",
                )?,
                add_count(self.expectation_gap_count, 1, "expectation_gap_count")?,
            )),
            None => None,
        };
        self.survey_ids.insert(survey_id.to_string());
        if let Some((sum, count)) = csat {
            (self.csat_sum, self.csat_count) = (sum, count);
        }
        if let Some((sum, count)) = gap {
            (self.expectation_gap_sum, self.expectation_gap_count) = (sum, count);
        }
        Ok(true)
    }

    /// This customer referred `referred_id`; false if that referral is counted already.
    pub fn record_referral(&mut self, referred_id: &str) -> bool {
        if !self.referred_ids.insert(referred_id.to_string()) {
            return false;
        }
        self.referrals_given = self.referrals_given.saturating_add(1);
        true
    }

    /// Whether `occasions` are numbered by `clock` (true before any purchase).
    pub fn occasions_follow(&self, clock: &OccasionClock) -> bool {
        self.purchases == 0 || self.occasion_clock == clock.to_string()
    }

    /// Re-derives the occasions by `clock` from the customer's orders (time and
    /// margin, when recorded): for rows folded before occasions were kept, or by
    /// another clock. The first occasion's margin is the first order's (always
    /// kept) plus those recorded of the other orders in its period. A sum that
    /// would overflow is an error, and then nothing changes.
    pub fn rederive_occasions(
        &mut self,
        clock: &OccasionClock,
        orders: &[(DateTime<Utc>, Option<i64>)],
    ) -> Result<(), Overflow> {
        let occasions: BTreeSet<i32> = orders.iter().map(|(t, _)| clock.index(*t)).collect();
        let first_occasion_margin = match occasions.first().copied() {
            None => 0,
            Some(first) => {
                let earliest = orders.iter().map(|(t, _)| *t).min();
                let mut earliest_seen = false;
                orders
                    .iter()
                    .filter(|(t, _)| clock.index(*t) == first)
                    .filter(|(t, _)| {
                        let is_earliest = Some(*t) == earliest && !earliest_seen;
                        earliest_seen |= is_earliest;
                        !is_earliest
                    })
                    .filter_map(|(_, m)| *m)
                    .try_fold(self.first_margin_minor, |sum, m| {
                        add(sum, m, "first_occasion_margin_minor")
                    })?
            }
        };
        self.occasions = occasions;
        self.occasion_clock = clock.to_string();
        self.first_occasion_margin_minor = first_occasion_margin;
        Ok(())
    }

    /// Purchase occasions after the first (the models count repeats); the
    /// repeat orders on a row whose occasions are not derived yet.
    pub fn repeat_occasions(&self, clock: &OccasionClock) -> u32 {
        if self.occasions_follow(clock) {
            (self.occasions.len() as u32).saturating_sub(1)
        } else {
            self.repeat_purchases()
        }
    }

    /// Folds a merged-away customer's features into the survivor's. Every sum is
    /// exact: one that would overflow is an error, and then nothing changes.
    pub fn absorb(&mut self, other: &Features) -> Result<(), Overflow> {
        let mut monthly_spend = self.monthly_spend.clone();
        for (m, v) in &other.monthly_spend {
            let sum = monthly_spend.entry(*m).or_default();
            *sum = add(*sum, *v, "monthly_spend")?;
        }
        let spend = add(self.spend_minor, other.spend_minor, "spend_minor")?;
        let margin = add(self.margin_minor, other.margin_minor, "margin_minor")?;
        let discount = add(self.discount_minor, other.discount_minor, "discount_minor")?;
        let csat_sum = add(self.csat_sum, other.csat_sum, "csat_sum")?;
        let gap_sum = add(
            self.expectation_gap_sum,
            other.expectation_gap_sum,
            "expectation_gap_sum",
        )?;
        let counts = [
            add_count(self.purchases, other.purchases, "purchases")?,
            add_count(
                self.referrals_given,
                other.referrals_given,
                "referrals_given",
            )?,
            add_count(
                self.complaints_total,
                other.complaints_total,
                "complaints_total",
            )?,
            add_count(
                self.complaints_open,
                other.complaints_open,
                "complaints_open",
            )?,
            add_count(
                self.complaints_breached,
                other.complaints_breached,
                "complaints_breached",
            )?,
            add_count(self.csat_count, other.csat_count, "csat_count")?,
            add_count(
                self.expectation_gap_count,
                other.expectation_gap_count,
                "expectation_gap_count",
            )?,
        ];
        let same_calendar = self.purchases == 0 || self.occasion_clock == other.occasion_clock;
        let first_occasion_margin = if other.purchases > 0 && same_calendar {
            let (mine, theirs) = (self.occasions.first(), other.occasions.first());
            match (mine, theirs) {
                (Some(a), Some(b)) if a == b => add(
                    self.first_occasion_margin_minor,
                    other.first_occasion_margin_minor,
                    "first_occasion_margin_minor",
                )?,
                (Some(a), Some(b)) if a < b => self.first_occasion_margin_minor,
                _ => other.first_occasion_margin_minor,
            }
        } else {
            self.first_occasion_margin_minor
        };

        if other.purchases > 0 {
            if same_calendar {
                self.first_occasion_margin_minor = first_occasion_margin;
                self.occasions.extend(other.occasions.iter().copied());
                self.occasion_clock.clone_from(&other.occasion_clock);
            } else {
                // Two calendars: the next scoring run re-derives them.
                self.occasion_clock.clear();
            }
        }
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
        [
            self.purchases,
            self.referrals_given,
            self.complaints_total,
            self.complaints_open,
            self.complaints_breached,
            self.csat_count,
            self.expectation_gap_count,
        ] = counts;
        self.categories.extend(other.categories.iter().cloned());
        self.spend_minor = spend;
        self.margin_minor = margin;
        self.discount_minor = discount;
        self.csat_sum = csat_sum;
        self.expectation_gap_sum = gap_sum;
        self.monthly_spend = monthly_spend;
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
        for (id, m) in &other.complaint_marks {
            self.complaint_marks.entry(id.clone()).or_insert(*m);
        }
        self.survey_ids.extend(other.survey_ids.iter().cloned());
        self.referred_ids.extend(other.referred_ids.iter().cloned());
        self.counted_without_ids |= other.counted_without_ids;
        Ok(())
    }

    /// Purchases after the first (the models count repeats).
    pub fn repeat_purchases(&self) -> u32 {
        self.purchases.saturating_sub(1)
    }

    /// Share of list price given away as discounts: price sensitivity (DOMAIN §5).
    pub fn discount_share(&self) -> f64 {
        // A statistic: summed in 128 bits, exact whatever the two amounts.
        let list = i128::from(self.spend_minor) + i128::from(self.discount_minor);
        if list <= 0 {
            0.0
        } else {
            self.discount_minor as f64 / list as f64
        }
    }

    /// The customer's own usual gap between purchase occasions, in days.
    pub fn usual_interval_days(&self, clock: &OccasionClock) -> Option<f64> {
        let (first, last) = (self.first_purchase?, self.last_purchase?);
        let repeats = self.repeat_occasions(clock);
        (repeats >= 1)
            .then(|| (last - first).num_seconds() as f64 / DAY_SECONDS / f64::from(repeats))
    }

    pub fn mean_csat(&self) -> Option<f64> {
        (self.csat_count > 0).then(|| self.csat_sum as f64 / f64::from(self.csat_count))
    }

    pub fn mean_expectation_gap(&self) -> Option<f64> {
        (self.expectation_gap_count > 0)
            .then(|| self.expectation_gap_sum as f64 / f64::from(self.expectation_gap_count))
    }

    /// The BG/NBD view at `now`, time in `unit_days` (7 for weeks): repeat
    /// occasions, and times in whole periods of the clock, as `lifetimes`
    /// counts them (the period of `now` is the last one observed). A row whose
    /// occasions are not derived yet counts orders at their exact times.
    pub fn history(
        &self,
        now: DateTime<Utc>,
        unit_days: f64,
        clock: &OccasionClock,
    ) -> Option<History> {
        let (first, last) = (self.first_purchase?, self.last_purchase?);
        if self.occasions_follow(clock)
            && let (Some(a), Some(b)) = (self.occasions.first(), self.occasions.last())
        {
            let units = |periods: i32| f64::from(periods) * clock.period_days() / unit_days;
            let t_x = units(b - a);
            return Some(History {
                x: f64::from(self.repeat_occasions(clock)),
                t_x,
                t: units(clock.index(now) - a).max(t_x),
            });
        }
        let units = |d: chrono::TimeDelta| d.num_seconds() as f64 / DAY_SECONDS / unit_days;
        Some(History {
            x: f64::from(self.repeat_purchases()),
            t_x: units(last - first),
            t: units(now - first).max(units(last - first)),
        })
    }

    /// Mean margin per repeat occasion, the Gamma-Gamma input (None without repeats).
    pub fn mean_repeat_margin(&self, clock: &OccasionClock) -> Option<f64> {
        let repeats = self.repeat_occasions(clock);
        let first = if self.occasions_follow(clock) {
            self.first_occasion_margin_minor
        } else {
            self.first_margin_minor
        };
        // A statistic: the difference in 128 bits, exact whatever the two margins.
        (repeats > 0).then(|| {
            (i128::from(self.margin_minor) - i128::from(first)) as f64 / f64::from(repeats)
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    const UTC: OccasionClock = OccasionClock {
        time_zone: chrono_tz::Tz::UTC,
        period: crate::domain::occasions::OccasionPeriod::Day,
    };

    fn day(d: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::days(d)
    }

    #[test]
    fn purchases_fold_into_recency_frequency_and_value() {
        let mut f = Features::default();
        f.record_purchase(day(14), 1000, 300, 0, "tea", &UTC)
            .unwrap();
        f.record_purchase(day(0), 2000, 500, 500, "tea", &UTC)
            .unwrap();
        f.record_purchase(day(28), 1000, 200, 0, "cups", &UTC)
            .unwrap();
        assert_eq!(
            f.first_purchase,
            Some(day(0)),
            "events may arrive out of order"
        );
        assert_eq!(f.last_purchase, Some(day(28)));
        assert_eq!((f.purchases, f.repeat_purchases()), (3, 2));
        assert_eq!(f.categories.len(), 2);
        assert_eq!(f.usual_interval_days(&UTC), Some(14.0));
        assert!((f.discount_share() - 500.0 / 4500.0).abs() < 1e-12);
        assert_eq!(
            f.first_margin_minor, 500,
            "the earliest purchase, though it arrived second"
        );
        assert_eq!(f.mean_repeat_margin(&UTC), Some(250.0));
        let h = f.history(day(35), 7.0, &UTC).unwrap();
        assert_eq!((h.x, h.t_x, h.t), (2.0, 4.0, 5.0));
    }

    #[test]
    fn orders_of_one_day_are_one_occasion() {
        let hours = |d: i64, h: i64| day(d) + Duration::hours(h);
        let mut f = Features::default();
        f.record_purchase(hours(7, 9), 1000, 100, 0, "tea", &UTC)
            .unwrap();
        f.record_purchase(hours(0, 10), 500, 40, 0, "tea", &UTC)
            .unwrap();
        f.record_purchase(hours(7, 18), 3000, 300, 0, "cups", &UTC)
            .unwrap();
        f.record_purchase(hours(0, 23), 700, 60, 0, "tea", &UTC)
            .unwrap();
        f.record_purchase(hours(21, 1), 800, 80, 0, "tea", &UTC)
            .unwrap();
        assert_eq!((f.purchases, f.occasions.len()), (5, 3));
        assert_eq!(f.repeat_occasions(&UTC), 2);
        assert_eq!(
            f.first_occasion_margin_minor, 100,
            "both orders of day 0, the later one arriving last"
        );
        assert_eq!(
            f.mean_repeat_margin(&UTC),
            Some((400.0 + 80.0) / 2.0),
            "day 7's two orders are one repeat occasion of margin 400"
        );
        let h = f.history(hours(28, 5), 7.0, &UTC).unwrap();
        assert_eq!((h.x, h.t_x, h.t), (2.0, 3.0, 4.0), "whole days in weeks");
        assert_eq!(
            f.usual_interval_days(&UTC),
            Some((hours(21, 1) - hours(0, 10)).num_seconds() as f64 / 86_400.0 / 2.0)
        );

        let shanghai = OccasionClock::new("Asia/Shanghai", "day").unwrap();
        let mut g = Features::default();
        // 15:00 and 17:00 UTC: one day in UTC, two in Shanghai.
        g.record_purchase(hours(0, 15), 100, 10, 0, "", &shanghai)
            .unwrap();
        g.record_purchase(hours(0, 17), 100, 10, 0, "", &shanghai)
            .unwrap();
        assert_eq!(g.repeat_occasions(&shanghai), 1);
        assert!(!g.occasions_follow(&UTC));
        assert_eq!(
            g.repeat_occasions(&UTC),
            1,
            "numbered by another clock: orders until re-derived"
        );
        let orders = [(hours(0, 15), Some(10)), (hours(0, 17), Some(10))];
        g.rederive_occasions(&UTC, &orders).unwrap();
        assert_eq!(
            (g.repeat_occasions(&UTC), g.first_occasion_margin_minor),
            (0, 20)
        );
    }

    #[test]
    fn rows_from_before_occasions_are_rederived_from_their_orders() {
        // An older row: orders folded, no occasions, the first order's margin kept.
        let mut f: Features = serde_json::from_str(
            r#"{"first_purchase":"2026-01-01T10:00:00Z","last_purchase":"2026-01-08T10:00:00Z",
                "purchases":3,"margin_minor":600,"first_margin_minor":100}"#,
        )
        .unwrap();
        assert!(!f.occasions_follow(&UTC));
        assert_eq!(f.mean_repeat_margin(&UTC), Some(250.0), "orders meanwhile");
        // The purchases table knows each order's time; older rows lack margins.
        let orders = [
            (day(0) + Duration::hours(10), None),
            (day(0) + Duration::hours(12), Some(200)),
            (day(7) + Duration::hours(10), None),
        ];
        f.rederive_occasions(&UTC, &orders).unwrap();
        assert!(f.occasions_follow(&UTC));
        assert_eq!(f.repeat_occasions(&UTC), 1);
        assert_eq!(f.first_occasion_margin_minor, 300);
        assert_eq!(f.mean_repeat_margin(&UTC), Some(300.0));
    }

    #[test]
    fn merged_occasions_of_one_day_are_one() {
        let mut a = Features::default();
        a.record_purchase(day(2), 100, 10, 0, "", &UTC).unwrap();
        a.record_purchase(day(9), 100, 30, 0, "", &UTC).unwrap();
        let mut b = Features::default();
        b.record_purchase(day(2), 100, 5, 0, "", &UTC).unwrap();
        b.record_purchase(day(5), 100, 7, 0, "", &UTC).unwrap();
        a.absorb(&b).unwrap();
        assert_eq!(a.occasions.len(), 3);
        assert_eq!(a.first_occasion_margin_minor, 15);
        assert_eq!(a.mean_repeat_margin(&UTC), Some((30.0 + 7.0) / 2.0));
    }

    #[test]
    fn complaints_surveys_and_merges() {
        let mut a = Features::default();
        a.record_complaint_opened("c1");
        a.record_sla_breach("c1", 2);
        a.record_complaint_resolved("c1");
        a.record_complaint_resolved("c1");
        assert_eq!(
            (a.complaints_total, a.complaints_open, a.complaints_breached),
            (1, 0, 1),
            "a second resolution of one complaint changes nothing"
        );
        a.record_survey("s1", Some(4), Some(-2)).unwrap();
        let mut b = Features::default();
        b.record_purchase(day(3), 100, 10, 0, "tea", &UTC).unwrap();
        b.record_survey("s2", Some(2), None).unwrap();
        b.record_complaint_opened("c2");
        a.absorb(&b).unwrap();
        assert_eq!(a.mean_csat(), Some(3.0));
        assert_eq!(a.mean_expectation_gap(), Some(-2.0));
        assert_eq!(
            (a.purchases, a.complaints_total, a.complaints_open),
            (1, 2, 1)
        );
        assert_eq!(a.first_purchase, Some(day(3)));
        assert_eq!(a.first_margin_minor, 10);
        assert!(
            !a.record_complaint_opened("c2"),
            "the merged customer's complaints are known to the survivor"
        );
        assert!(
            Features::default().history(day(1), 7.0, &UTC).is_none(),
            "no purchase, no history"
        );
    }

    /// Everything a customer's complaints, surveys and referrals fold into.
    fn counters(f: &Features) -> [i64; 8] {
        [
            f.complaints_total.into(),
            f.complaints_open.into(),
            f.complaints_breached.into(),
            f.csat_sum,
            f.csat_count.into(),
            f.expectation_gap_sum,
            f.expectation_gap_count.into(),
            f.referrals_given.into(),
        ]
    }

    /// The live history of one customer: a complaint resolved late, reopened and
    /// resolved again; one escalated and open; one closed; two surveys; two referrals.
    fn live(f: &mut Features) {
        f.record_complaint_opened("a");
        f.record_sla_breach("a", 2);
        f.record_complaint_resolved("a");
        f.record_complaint_reopened("a");
        f.record_complaint_resolved("a");
        f.record_complaint_opened("b");
        f.record_sla_breach("b", 1);
        f.record_complaint_opened("c");
        f.record_complaint_resolved("c");
        f.record_survey("s1", Some(5), Some(1)).unwrap();
        f.record_survey("s2", Some(2), None).unwrap();
        f.record_referral("r1");
        f.record_referral("r2");
    }

    /// The same customer as interactions and profile replay it (their current
    /// state): opened, breaches, resolution, a status change; each survey; each
    /// referral. A closed complaint's status change (RESOLVED -> CLOSED) and an
    /// escalation (OPEN -> IN_PROGRESS) fold into nothing here.
    fn replay(f: &mut Features) -> bool {
        let mut changed = false;
        changed |= f.record_complaint_opened("a");
        changed |= f.record_sla_breach("a", 2);
        changed |= f.record_complaint_resolved("a");
        changed |= f.record_complaint_opened("b");
        changed |= f.record_sla_breach("b", 1);
        changed |= f.record_complaint_opened("c");
        changed |= f.record_complaint_resolved("c");
        changed |= f.record_survey("s1", Some(5), Some(1)).unwrap();
        changed |= f.record_survey("s2", Some(2), None).unwrap();
        changed |= f.record_referral("r1");
        changed |= f.record_referral("r2");
        changed
    }

    #[test]
    fn a_replay_rebuilds_an_empty_model_and_changes_nothing_in_a_full_one() {
        let mut fed_live = Features::default();
        live(&mut fed_live);
        assert_eq!(counters(&fed_live), [3, 1, 2, 7, 2, 1, 1, 2]);

        let mut rebuilt = Features::default();
        assert!(replay(&mut rebuilt));
        assert_eq!(rebuilt, fed_live, "the replay of an emptied model");

        let before = fed_live.clone();
        assert!(!replay(&mut fed_live), "every effect is present already");
        assert_eq!(fed_live, before);
    }

    #[test]
    fn a_replay_fills_in_what_lost_events_left_out() {
        // Live, the opening of "a" and the resolution of "c" were lost, and so
        // was survey s2.
        let mut f = Features::default();
        f.record_sla_breach("a", 2);
        f.record_complaint_resolved("a");
        f.record_complaint_reopened("a");
        f.record_complaint_resolved("a");
        f.record_complaint_opened("b");
        f.record_sla_breach("b", 1);
        f.record_complaint_opened("c");
        f.record_survey("s1", Some(5), Some(1)).unwrap();
        f.record_referral("r1");
        f.record_referral("r2");
        assert!(replay(&mut f));
        let mut fed_live = Features::default();
        live(&mut fed_live);
        assert_eq!(f, fed_live);
    }

    #[test]
    fn rows_folded_before_ids_were_kept_count_as_they_did() {
        // Stored by an older version: counters, no ids, no flag.
        let mut old: Features = serde_json::from_str(
            r#"{"complaints_total":2,"complaints_open":2,"complaints_breached":0}"#,
        )
        .unwrap();
        assert!(old.counted_without_ids);
        assert!(old.record_complaint_resolved("old-1"));
        assert!(old.record_sla_breach("old-2", 1));
        assert_eq!(
            (
                old.complaints_total,
                old.complaints_open,
                old.complaints_breached
            ),
            (2, 1, 1),
            "events about complaints counted before ids adjust the counters as before"
        );
        assert!(!old.record_complaint_resolved("old-1"));
        let json = serde_json::to_string(&Features::default()).unwrap();
        assert!(json.contains(r#""counted_without_ids":false"#), "{json}");
        let new: Features = serde_json::from_str(&json).unwrap();
        assert!(!new.counted_without_ids);
    }

    #[test]
    fn spend_by_period_uses_complete_months_before_now() {
        let mut f = Features::default();
        let at = |m: u32, d: u32| Utc.with_ymd_and_hms(2026, m, d, 12, 0, 0).unwrap();
        f.record_purchase(at(1, 31), 100, 0, 0, "", &UTC).unwrap();
        f.record_purchase(at(2, 1), 200, 0, 0, "", &UTC).unwrap();
        f.record_purchase(at(3, 15), 400, 0, 0, "", &UTC).unwrap();
        f.record_purchase(at(4, 2), 800, 0, 0, "running month", &UTC)
            .unwrap();
        // Now in April: periods of two months are [Dec, Jan] and [Feb, Mar].
        assert_eq!(f.spend_by_period(at(4, 20), 2, 2), vec![100.0, 600.0]);
        assert_eq!(
            f.spend_by_period(at(4, 20), 1, 0),
            vec![400.0],
            "width 0 is 1"
        );
        let mut g = Features::default();
        g.record_purchase(at(3, 1), 50, 0, 0, "", &UTC).unwrap();
        g.annual_revenue_minor = Some(7);
        f.annual_revenue_minor = None;
        f.credit_rating = Some("GOOD".into());
        f.absorb(&g).unwrap();
        assert_eq!(f.spend_by_period(at(4, 20), 1, 1), vec![450.0]);
        assert_eq!(
            (f.credit_rating.as_deref(), f.annual_revenue_minor),
            (Some("GOOD"), Some(7)),
            "the survivor's facts win, gaps are filled"
        );
    }

    const MAX: i64 = retention_domain::MAX_MINOR_UNITS;

    #[test]
    fn a_sum_that_would_overflow_is_an_error_and_changes_nothing() {
        // Three orders of 2^62 minor units: the second would take the spend past
        // i64::MAX (a panic in a debug build, a silent wrap in a release one).
        let big = 1i64 << 62;
        let mut f = Features::default();
        f.record_purchase(day(0), big, big, 0, "tea", &UTC).unwrap();
        let before = f.clone();
        for d in [1, 2] {
            assert_eq!(
                f.record_purchase(day(d), big, big, 0, "tea", &UTC),
                Err(Overflow {
                    field: "spend_minor"
                })
            );
            assert_eq!(f, before, "nothing of the refused order is folded");
        }
        // A margin that would overflow while the spend would not.
        assert_eq!(
            f.record_purchase(day(1), 0, big, 0, "", &UTC),
            Err(Overflow {
                field: "margin_minor"
            })
        );
        // Negative margins overflow downwards just as well.
        let mut g = Features::default();
        g.record_purchase(day(0), 0, i64::MIN + 1, 0, "", &UTC)
            .unwrap();
        assert_eq!(
            g.record_purchase(day(0), 0, -2, 0, "", &UTC),
            Err(Overflow {
                field: "margin_minor"
            })
        );
        assert_eq!(g.purchases, 1);
        // The month's spend and the first occasion's margin are sums too.
        let mut h = Features::default();
        h.monthly_spend.insert(month_index(day(0)), i64::MAX);
        assert_eq!(
            h.record_purchase(day(0), 1, 0, 0, "", &UTC),
            Err(Overflow {
                field: "monthly_spend"
            })
        );
        let mut o = Features::default();
        o.record_purchase(day(0), 0, 1, 0, "", &UTC).unwrap();
        o.margin_minor = 0;
        o.first_occasion_margin_minor = i64::MAX;
        assert_eq!(
            o.record_purchase(day(0), 0, 1, 0, "", &UTC),
            Err(Overflow {
                field: "first_occasion_margin_minor"
            })
        );
        assert_eq!(
            Overflow {
                field: "spend_minor"
            }
            .of("c-42")
            .to_string(),
            "customer c-42: spend_minor would overflow a 64-bit sum of minor units; \
             the event is not applied"
        );
    }

    #[test]
    fn amounts_at_the_bound_fold_exactly() {
        // 9,000 orders of the largest amount one money field may carry: 9 * 10^18,
        // just inside an i64, exact.
        let mut f = Features::default();
        for k in 0..9_000 {
            f.record_purchase(day(k % 3), MAX, MAX, MAX, "tea", &UTC)
                .unwrap();
        }
        assert_eq!(f.purchases, 9_000);
        assert_eq!(f.spend_minor, 9_000 * MAX);
        assert_eq!(f.margin_minor, 9_000 * MAX);
        assert_eq!(f.discount_minor, 9_000 * MAX);
        assert_eq!(f.first_occasion_margin_minor, 3_000 * MAX);
        assert_eq!(f.monthly_spend.values().sum::<i64>(), 9_000 * MAX);
        // The statistics made of them are exact too (128-bit intermediates).
        assert_eq!(f.discount_share(), 0.5);
        assert_eq!(f.mean_repeat_margin(&UTC), Some(6_000.0 * MAX as f64 / 2.0));
        // 223 more fit (i64::MAX is 9,223.37... times the bound); the next one
        // would leave the i64: refused, not wrapped.
        let refused = loop {
            if let Err(e) = f.record_purchase(day(3), MAX, 0, 0, "", &UTC) {
                break e;
            }
        };
        assert_eq!(refused.field, "spend_minor");
        assert_eq!((f.purchases, f.spend_minor), (9_223, 9_223 * MAX));
        // Losses at the bound fold exactly as well.
        let mut l = Features::default();
        for k in 0..9_000 {
            l.record_purchase(day(k), MAX, -MAX, 0, "", &UTC).unwrap();
        }
        assert_eq!(l.margin_minor, -9_000 * MAX);
        assert_eq!(l.first_margin_minor, -MAX);
        assert_eq!(l.mean_repeat_margin(&UTC), Some(-(MAX as f64)));
    }

    #[test]
    fn merges_rederivations_and_surveys_refuse_an_overflow_and_change_nothing() {
        let big = 1i64 << 62;
        let mut a = Features::default();
        a.record_purchase(day(0), big, 1, 0, "tea", &UTC).unwrap();
        let mut b = Features::default();
        b.record_purchase(day(1), big, 1, 0, "cups", &UTC).unwrap();
        let before = a.clone();
        assert_eq!(
            a.absorb(&b),
            Err(Overflow {
                field: "monthly_spend"
            })
        );
        assert_eq!(a, before, "a merge that cannot be folded changes nothing");
        b.monthly_spend.clear();
        assert_eq!(
            a.absorb(&b),
            Err(Overflow {
                field: "spend_minor"
            })
        );
        assert_eq!(a, before);
        b.spend_minor = MAX;
        a.absorb(&b).unwrap();
        assert_eq!((a.spend_minor, a.purchases), (big + MAX, 2));

        // Rows folded before occasions: the first occasion's margins re-summed.
        let mut r = Features {
            first_margin_minor: i64::MAX,
            ..Features::default()
        };
        let orders = [(day(0), Some(1)), (day(0), Some(1))];
        let before = r.clone();
        assert_eq!(
            r.rederive_occasions(&UTC, &orders),
            Err(Overflow {
                field: "first_occasion_margin_minor"
            })
        );
        assert_eq!(r, before);

        let mut s = Features {
            csat_sum: i64::MAX - 1,
            ..Features::default()
        };
        let before = s.clone();
        assert_eq!(
            s.record_survey("s1", Some(5), Some(1)),
            Err(Overflow { field: "csat_sum" })
        );
        assert_eq!(s, before, "not even the survey id is kept");
        assert_eq!(s.record_survey("s1", Some(1), None), Ok(true));
        assert_eq!(s.csat_sum, i64::MAX);
    }
}
