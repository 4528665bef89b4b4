//! Portfolio figures (DOMAIN §3-§4, §8): how customers and profit spread over the
//! pyramid, tiers, lifecycle and risk levels, and how many customers each period
//! keeps. Streaming: the period figures use memory in the number of periods only,
//! so a million customers can be summarised in one pass.

use chrono::{DateTime, Duration, Utc};

/// The portfolio figures of GetPortfolioReport.
#[derive(Debug, Clone, PartialEq)]
pub struct PortfolioReport {
    pub value_tiers: Vec<LevelShare>,
    pub management_tiers: Vec<LevelShare>,
    pub lifecycle_stages: Vec<LevelShare>,
    pub churn_risks: Vec<LevelShare>,
    pub pareto_share: f64,
    /// (customer share, positive-profit share) at every 5 % of the customers.
    pub pareto_curve: Vec<(f64, f64)>,
    pub rates: Vec<PeriodRate>,
    pub cohorts: Vec<CohortRow>,
    pub report_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LevelShare {
    pub level: String,
    pub customers: u64,
    /// The level's net margin over the portfolio's net margin. Loss-making
    /// customers count negatively, so a "lead" level can show the profit it
    /// destroys, and the shares of all levels add up to 1.
    pub profit_share: f64,
}

/// Customers and profit share per level; every level in `levels` is listed (also
/// when empty), in that order. Rows with a level not listed are ignored (in the
/// counts and in the total). A portfolio without positive net margin has all
/// shares 0.
///
/// Why net rather than positive margins only: the point of the "lead" level
/// (DOMAIN §4) is that it destroys profit, which a positive-only total would show
/// as a share of 0; and net shares add up to 1, which the report promises. The
/// price: when losses are large a profitable level's share can exceed 1.
/// `classify::pareto_share` is a different figure (top 20% of positive profit).
pub fn level_shares<'a>(
    levels: &[&str],
    rows: impl IntoIterator<Item = (&'a str, i64)>,
) -> Vec<LevelShare> {
    let mut counts = vec![(0u64, 0i128); levels.len()];
    for (level, margin) in rows {
        if let Some(i) = levels.iter().position(|l| *l == level) {
            counts[i].0 += 1;
            counts[i].1 += i128::from(margin);
        }
    }
    let total: i128 = counts.iter().map(|c| c.1).sum();
    levels
        .iter()
        .zip(counts)
        .map(|(level, (customers, margin))| LevelShare {
            level: level.to_string(),
            customers,
            profit_share: if total > 0 {
                margin as f64 / total as f64
            } else {
                0.0
            },
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct PeriodRate {
    pub period_start: DateTime<Utc>,
    /// 1 - retention_rate (0 when nobody was active in the period before).
    pub churn_rate: f64,
    /// Share of the customers active in the previous period who bought again in
    /// this one.
    pub retention_rate: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CohortRow {
    /// Start of the period of the cohort's first purchase.
    pub cohort_start: DateTime<Utc>,
    pub size: u64,
    /// Share of the cohort active in each following period, up to the last.
    pub retained: Vec<f64>,
}

/// Accumulates purchase activity per period. Periods are `period_days` long and
/// end at `now`: period 0 (counting back) is (now - d, now], period 1 is
/// (now - 2d, now - d], ... so an instant on a boundary belongs to the earlier
/// period, and `now` itself to the last. A period's reported start is its
/// (exclusive) lower bound. One extra period before the window is tracked so the
/// first period of the window has a retention rate too.
///
/// Memory is O(periods²) (the cohort triangle), independent of the number of
/// customers; the caller bounds `periods` (the gRPC layer allows 1..=60).
/// `period_days` 0 counts as 1; no input panics.
#[derive(Debug, Clone)]
pub struct PeriodActivity {
    now: DateTime<Utc>,
    period: Duration,
    periods: usize,
    /// Customers active in period `b` (counting back), for b in 0..=periods.
    active: Vec<u64>,
    /// Customers active in both period b + 1 and period b.
    kept: Vec<u64>,
    /// Cohort sizes by first-purchase period, and `cohort_kept[f][j]`: members of
    /// cohort f active j periods after it.
    cohort_size: Vec<u64>,
    cohort_kept: Vec<Vec<u64>>,
    /// Scratch: periods the current customer is active in (reused, so adding a
    /// customer does not allocate).
    seen: Vec<bool>,
}

impl PeriodActivity {
    pub fn new(now: DateTime<Utc>, period_days: u32, periods: u32) -> PeriodActivity {
        let periods = periods as usize;
        PeriodActivity {
            now,
            period: Duration::days(i64::from(period_days.max(1))),
            periods,
            active: vec![0; periods + 1],
            kept: vec![0; periods],
            cohort_size: vec![0; periods],
            cohort_kept: (0..periods).map(|f| vec![0; f + 1]).collect(),
            seen: vec![false; periods + 1],
        }
    }

    /// Periods back from `now` that `t` falls in; None after `now`.
    fn back(&self, t: DateTime<Utc>) -> Option<usize> {
        if t > self.now {
            return None;
        }
        let gap = (self.now - t).num_seconds();
        let len = self.period.num_seconds();
        // (now - d, now] is period 0: a gap of exactly d is period 1.
        Some((gap / len) as usize)
    }

    /// One customer's purchase times (any order; purchases after `now` are
    /// ignored). A customer without purchases in the window changes nothing.
    pub fn add_customer(&mut self, purchases: &[DateTime<Utc>]) {
        let mut in_period = std::mem::take(&mut self.seen);
        in_period.fill(false);
        let mut first: Option<DateTime<Utc>> = None;
        for &t in purchases {
            if t > self.now {
                continue;
            }
            first = Some(first.map_or(t, |f| f.min(t)));
            if let Some(b) = self.back(t).filter(|b| *b <= self.periods) {
                in_period[b] = true;
            }
        }
        for (b, active) in in_period.iter().enumerate() {
            if *active {
                self.active[b] += 1;
            }
        }
        for b in 0..self.periods {
            if in_period[b + 1] && in_period[b] {
                self.kept[b] += 1;
            }
        }
        if let Some(f) = first
            .and_then(|t| self.back(t))
            .filter(|f| *f < self.periods)
        {
            self.cohort_size[f] += 1;
            for j in 1..=f {
                if in_period[f - j] {
                    self.cohort_kept[f][j] += 1;
                }
            }
        }
        self.seen = in_period;
    }

    /// Start of period `back`; saturates at the earliest representable instant
    /// for windows reaching beyond it (e.g. absurd `period_days`).
    fn start_of(&self, back: usize) -> DateTime<Utc> {
        i32::try_from(back + 1)
            .ok()
            .and_then(|n| self.period.checked_mul(n))
            .and_then(|span| self.now.checked_sub_signed(span))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Retention and churn per period, oldest first.
    pub fn rates(&self) -> Vec<PeriodRate> {
        (0..self.periods)
            .rev()
            .map(|b| {
                let base = self.active[b + 1];
                let retention_rate = if base == 0 {
                    0.0
                } else {
                    self.kept[b] as f64 / base as f64
                };
                PeriodRate {
                    period_start: self.start_of(b),
                    churn_rate: if base == 0 { 0.0 } else { 1.0 - retention_rate },
                    retention_rate,
                }
            })
            .collect()
    }

    /// Cohorts whose first purchase falls in the window, oldest first.
    pub fn cohorts(&self) -> Vec<CohortRow> {
        (0..self.periods)
            .rev()
            .map(|f| {
                let size = self.cohort_size[f];
                CohortRow {
                    cohort_start: self.start_of(f),
                    size,
                    retained: (1..=f)
                        .map(|j| {
                            if size == 0 {
                                0.0
                            } else {
                                self.cohort_kept[f][j] as f64 / size as f64
                            }
                        })
                        .collect(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap()
    }

    /// `days` before now.
    fn ago(days: i64) -> DateTime<Utc> {
        now() - Duration::days(days)
    }

    #[test]
    fn level_shares_count_every_level_and_net_margins() {
        let levels = ["PLATINUM", "GOLD", "IRON", "LEAD"];
        let rows = [
            ("PLATINUM", 600),
            ("GOLD", 300),
            ("GOLD", 200),
            ("LEAD", -100),
            ("UNKNOWN", 1_000),
        ];
        let s = level_shares(&levels, rows);
        // Net total 600 + 500 - 100 = 1000.
        assert_eq!(s[0].customers, 1);
        assert!((s[0].profit_share - 0.6).abs() < 1e-12);
        assert_eq!(s[1].customers, 2);
        assert!((s[1].profit_share - 0.5).abs() < 1e-12);
        assert_eq!(
            (s[2].customers, s[2].profit_share),
            (0, 0.0),
            "empty level listed"
        );
        assert!(
            (s[3].profit_share + 0.1).abs() < 1e-12,
            "losses count negatively"
        );
        let total: f64 = s.iter().map(|l| l.profit_share).sum();
        assert!((total - 1.0).abs() < 1e-12);
        let losing = level_shares(&levels, [("LEAD", -5)]);
        assert_eq!(losing[3].profit_share, 0.0, "no positive net: shares are 0");
    }

    #[test]
    fn level_shares_without_rows_or_margin() {
        let levels = ["KEY", "ORDINARY"];
        let empty = level_shares(&levels, std::iter::empty());
        assert_eq!(empty.len(), 2);
        assert!(
            empty
                .iter()
                .all(|l| l.customers == 0 && l.profit_share == 0.0)
        );
        let zero = level_shares(&levels, [("KEY", 0), ("ORDINARY", 0)]);
        assert_eq!(zero[0].customers, 1);
        assert_eq!(zero[0].profit_share, 0.0, "total 0: no division");
        // Large losses: net 100 - 60 = 40, so KEY holds 250% and ORDINARY -150%.
        let lossy = level_shares(&levels, [("KEY", 100), ("ORDINARY", -60)]);
        assert!((lossy[0].profit_share - 2.5).abs() < 1e-12);
        assert!((lossy[1].profit_share + 1.5).abs() < 1e-12);
        let extreme = level_shares(&levels, [("KEY", i64::MAX), ("KEY", i64::MAX)]);
        assert_eq!(extreme[0].profit_share, 1.0, "no overflow");
    }

    #[test]
    fn rates_follow_the_previous_periods_customers() {
        // 30-day periods, 3 in the window plus the one before it (back 3).
        // back:        3   2   1   0
        // a            x   x   .   x
        // b            x   x   x   .
        // c            .   x   x   x
        // d            .   .   .   x
        let mut p = PeriodActivity::new(now(), 30, 3);
        p.add_customer(&[ago(100), ago(70), ago(10)]);
        p.add_customer(&[ago(100), ago(70), ago(40)]);
        p.add_customer(&[ago(70), ago(40), ago(10)]);
        p.add_customer(&[ago(5)]);
        let r = p.rates();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].period_start, ago(90));
        // back 2: of {a, b} active in back 3, both stay.
        assert_eq!(r[0].retention_rate, 1.0);
        // back 1: of {a, b, c}, b and c stay.
        assert!((r[1].retention_rate - 2.0 / 3.0).abs() < 1e-12);
        assert!((r[1].churn_rate - 1.0 / 3.0).abs() < 1e-12);
        // back 0: of {b, c}, only c stays (a came back, but was not in back 1).
        assert_eq!(r[2].retention_rate, 0.5);
        assert_eq!(r[2].period_start, ago(30));
    }

    #[test]
    fn cohort_table_by_first_purchase_period() {
        let mut p = PeriodActivity::new(now(), 30, 3);
        p.add_customer(&[ago(80), ago(50)]); // cohort back 2, active back 1
        p.add_customer(&[ago(85), ago(5)]); // cohort back 2, active back 0
        p.add_customer(&[ago(40), ago(20)]); // cohort back 1, active back 0
        p.add_customer(&[ago(200), ago(10)]); // first purchase before the window
        let c = p.cohorts();
        assert_eq!(c.len(), 3);
        assert_eq!((c[0].cohort_start, c[0].size), (ago(90), 2));
        assert_eq!(c[0].retained, vec![0.5, 0.5]);
        assert_eq!((c[1].size, c[1].retained.clone()), (1, vec![1.0]));
        assert_eq!((c[2].size, c[2].retained.len()), (0, 0));
    }

    #[test]
    fn boundaries_belong_to_the_earlier_period_and_now_to_the_last() {
        let mut p = PeriodActivity::new(now(), 30, 2);
        p.add_customer(&[ago(30), now()]);
        // ago(30) is the end of back 1; now is in back 0: kept from 1 to 0.
        assert_eq!(p.rates()[1].retention_rate, 1.0);
        let mut q = PeriodActivity::new(now(), 30, 2);
        q.add_customer(&[now() + Duration::days(1)]);
        assert!(
            q.rates().iter().all(|r| r.retention_rate == 0.0),
            "the future is ignored"
        );
        assert_eq!(q.cohorts().iter().map(|c| c.size).sum::<u64>(), 0);
    }

    #[test]
    fn boundaries_are_exact_to_the_nanosecond() {
        let tick = Duration::nanoseconds(1);
        let mut p = PeriodActivity::new(now(), 30, 1);
        // Just inside back 0, and just outside it (in back 1, the extra period).
        p.add_customer(&[ago(30) + tick]);
        p.add_customer(&[ago(30) - tick]);
        let r = p.rates();
        assert_eq!(r[0].period_start, ago(30));
        assert_eq!(r[0].retention_rate, 0.0, "nobody in both periods");
        assert_eq!(r[0].churn_rate, 1.0, "the one in back 1 did not return");
        assert_eq!(p.cohorts()[0].size, 1, "only the first is a window cohort");
    }

    #[test]
    fn customers_without_purchases_in_the_window_change_nothing() {
        let mut p = PeriodActivity::new(now(), 30, 2);
        p.add_customer(&[]);
        p.add_customer(&[ago(400), ago(365)]); // before the extra period (back 2)
        p.add_customer(&[now() + Duration::seconds(1)]); // only in the future
        let silent = p.clone();
        assert!(
            silent
                .rates()
                .iter()
                .all(|r| (r.retention_rate, r.churn_rate) == (0.0, 0.0)),
            "nobody active before: both rates 0"
        );
        assert!(silent.cohorts().iter().all(|c| c.size == 0));
        assert_eq!(silent.cohorts()[0].retained, vec![0.0], "empty cohort: 0");
        // They do not dilute the real figures either: one customer, back 1 -> 0.
        p.add_customer(&[ago(35), ago(3)]);
        let r = p.rates();
        assert_eq!((r[1].retention_rate, r[1].churn_rate), (1.0, 0.0));
        assert_eq!(p.cohorts()[0].size, 1);
        assert_eq!(p.cohorts()[0].retained, vec![1.0]);
    }

    #[test]
    fn purchase_order_does_not_matter() {
        let mut sorted = PeriodActivity::new(now(), 30, 3);
        let mut shuffled = PeriodActivity::new(now(), 30, 3);
        sorted.add_customer(&[ago(200), ago(70), ago(10)]);
        shuffled.add_customer(&[ago(10), ago(200), ago(70)]);
        assert_eq!(sorted.rates(), shuffled.rates());
        assert_eq!(sorted.cohorts(), shuffled.cohorts());
        assert!(
            shuffled.cohorts().iter().all(|c| c.size == 0),
            "first is ago(200)"
        );
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let mut p = PeriodActivity::new(now(), 0, 2);
        p.add_customer(&[]);
        p.add_customer(&[ago(0), ago(1), ago(2)]);
        assert_eq!(p.rates().len(), 2);
        assert_eq!(
            p.rates()[1].retention_rate,
            1.0,
            "period 0 days counts as 1"
        );
        let empty = PeriodActivity::new(now(), 30, 0);
        assert!(empty.rates().is_empty() && empty.cohorts().is_empty());
        // A window reaching before the earliest representable instant saturates.
        let mut far = PeriodActivity::new(now(), 3_000_000, 60);
        far.add_customer(&[DateTime::<Utc>::MIN_UTC, ago(1), DateTime::<Utc>::MAX_UTC]);
        let r = far.rates();
        assert_eq!(r.len(), 60);
        assert_eq!(r[0].period_start, DateTime::<Utc>::MIN_UTC);
        assert_eq!(r[59].period_start, ago(3_000_000));
        assert_eq!(far.cohorts().len(), 60);
        // So does one whose span overflows the duration type itself.
        let mut huge = PeriodActivity::new(now(), u32::MAX, 60);
        huge.add_customer(&[ago(1)]);
        assert!(
            huge.rates()
                .iter()
                .all(|r| r.period_start == DateTime::<Utc>::MIN_UTC)
        );
        assert_eq!(huge.cohorts()[59].size, 1);
        let mut early = PeriodActivity::new(DateTime::<Utc>::MIN_UTC, 1, 3);
        early.add_customer(&[DateTime::<Utc>::MIN_UTC]);
        assert_eq!(early.rates()[2].period_start, DateTime::<Utc>::MIN_UTC);
    }
}
