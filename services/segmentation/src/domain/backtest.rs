//! Backtests: fit the models on the purchases up to an observation end only, and
//! compare each customer's predicted repeat purchase occasions after it with the
//! ones that happened, as Fader, Hardie & Lee (2005) validate BG/NBD on CDNOW
//! (their Figures 2 and 4) and `lifetimes` does with
//! `calibration_and_holdout_data` and
//! `conditional_expected_number_of_purchases_up_to_time`. Pure: the service feeds
//! each customer's orders in and stores the report.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::calibration::{CalibrationError, fit_models};
use super::models::History;
use super::models::bgnbd::BgNbd;
use super::models::gamma_gamma::GammaGamma;
use super::occasions::OccasionClock;

/// Calibration frequencies the report tabulates one by one; the last bucket
/// holds this many and more (the paper's Figure 4: 0..6 and 7+).
pub const FREQUENCY_BUCKETS: u32 = 7;

/// One customer in a backtest: the calibration history in model units, the
/// mean margin of their calibration repeat occasions (when every margin is
/// known), and the repeat occasions they had in the holdout period.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Row {
    history: History,
    mean_repeat_margin: Option<f64>,
    holdout: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrequencyBucket {
    /// Repeat occasions in the calibration period; the last bucket: this many or more.
    pub calibration_repeats: u32,
    pub and_more: bool,
    pub customers: u64,
    pub mean_actual: f64,
    pub mean_predicted: f64,
}

/// Cumulative repeat occasions of the whole population up to `end` (exclusive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CumulativePoint {
    pub end: DateTime<Utc>,
    pub actual: f64,
    pub predicted: f64,
}

/// What a backtest found; stored with its run and returned on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestReport {
    pub observation_end: DateTime<Utc>,
    pub holdout_end: DateTime<Utc>,
    pub bg_nbd: BgNbd,
    pub bg_nbd_log_likelihood: f64,
    pub bg_nbd_standard_errors: Option<Vec<f64>>,
    pub gamma_gamma: Option<GammaGamma>,
    pub gamma_gamma_log_likelihood: f64,
    pub gamma_gamma_standard_errors: Option<Vec<f64>>,
    /// Customers with a purchase by the observation end (the fits use up to
    /// `fit_sample` of them, the comparison all).
    pub customers: u64,
    pub fitted_customers: u64,
    /// Length of the holdout period in days.
    pub holdout_days: f64,
    pub predicted_total: f64,
    pub actual_total: u64,
    pub mean_absolute_error: f64,
    pub root_mean_squared_error: f64,
    pub by_frequency: Vec<FrequencyBucket>,
    /// Week by week from the first purchase, through calibration and holdout.
    pub cumulative: Vec<CumulativePoint>,
}

/// Collects customers one at a time (each customer's orders at once), then fits
/// and compares. Memory is a few numbers per customer, so a million customers
/// fit comfortably.
#[derive(Debug)]
pub struct Backtest {
    clock: OccasionClock,
    unit_days: f64,
    observation_end: DateTime<Utc>,
    holdout_end: DateTime<Utc>,
    /// Periods of the clock: the last of the calibration, the last of the holdout.
    end_period: i32,
    holdout_period: i32,
    rows: Vec<Row>,
    /// Customers by the period of their first purchase (the population's cohorts).
    first_periods: BTreeMap<i32, u64>,
    /// Repeat occasions by period, calibration and holdout.
    repeat_periods: BTreeMap<i32, u64>,
}

impl Backtest {
    /// A backtest of the calibration period up to `observation_end` and the
    /// holdout period after it up to `holdout_end` (the run's time), both
    /// inclusive of the periods they fall in.
    pub fn new(
        clock: OccasionClock,
        unit_days: f64,
        observation_end: DateTime<Utc>,
        holdout_end: DateTime<Utc>,
    ) -> Backtest {
        Backtest {
            clock,
            unit_days,
            observation_end,
            holdout_end,
            end_period: clock.index(observation_end),
            holdout_period: clock.index(holdout_end),
            rows: Vec::new(),
            first_periods: BTreeMap::new(),
            repeat_periods: BTreeMap::new(),
        }
    }

    fn units(&self, periods: i32) -> f64 {
        f64::from(periods) * self.clock.period_days() / self.unit_days
    }

    /// One customer's orders (time, margin where recorded), in any order. A
    /// customer whose first order is after the observation end is not part of
    /// the calibration population, as in the paper.
    pub fn add_customer(&mut self, orders: &[(DateTime<Utc>, Option<i64>)]) {
        // Period -> summed margin (None once an order's margin is unknown).
        // Margins summed in 128 bits: only a statistic (the mean) is made of
        // them, exact whatever the amounts.
        let mut occasions: BTreeMap<i32, Option<i128>> = BTreeMap::new();
        for (t, margin) in orders {
            let p = self.clock.index(*t);
            if p > self.holdout_period {
                continue;
            }
            let sum = occasions.entry(p).or_insert(Some(0));
            *sum = sum.zip(*margin).map(|(a, b)| a + i128::from(b));
        }
        let Some((&first, _)) = occasions.first_key_value() else {
            return;
        };
        if first > self.end_period {
            return;
        }
        let calibration: Vec<(i32, Option<i128>)> = occasions
            .range(..=self.end_period)
            .map(|(p, m)| (*p, *m))
            .collect();
        let holdout = occasions.range(self.end_period + 1..).count() as u32;
        let last = calibration.last().map_or(first, |(p, _)| *p);
        let repeats = &calibration[1..];
        let mean_repeat_margin = if repeats.is_empty() {
            None
        } else {
            repeats
                .iter()
                .map(|(_, m)| *m)
                .sum::<Option<i128>>()
                .map(|s| s as f64 / repeats.len() as f64)
        };
        *self.first_periods.entry(first).or_default() += 1;
        for p in occasions.keys().skip(1) {
            *self.repeat_periods.entry(*p).or_default() += 1;
        }
        // A customer first seen on the last day observed is observed for a day,
        // as in a live run (the models need T > 0).
        let day = 1.0 / self.unit_days;
        self.rows.push(Row {
            history: History {
                x: repeats.len() as f64,
                t_x: self.units(last - first),
                t: self.units(self.end_period - first).max(day),
            },
            mean_repeat_margin,
            holdout,
        });
    }

    /// Fits BG/NBD (and Gamma-Gamma, when enough repeat customers have known
    /// margins) on a systematic sample of at most `fit_sample` customers and
    /// compares every customer's prediction with what happened.
    pub fn finish(self, fit_sample: usize) -> Result<BacktestReport, CalibrationError> {
        if self.rows.is_empty() {
            return Err(CalibrationError::NoPurchases);
        }
        let fits = fit_models(
            self.rows.iter().map(|r| (r.history, r.mean_repeat_margin)),
            fit_sample,
        )?;
        let gg = fits.gamma_gamma.ok();
        let horizon = self.units(self.holdout_period - self.end_period);
        let m = fits.bg_nbd.params;
        let mut buckets = vec![(0u64, 0.0f64, 0.0f64); FREQUENCY_BUCKETS as usize + 1];
        let (mut predicted_total, mut actual_total) = (0.0, 0u64);
        let (mut abs, mut sq) = (0.0, 0.0);
        for r in &self.rows {
            let predicted = m.expected_purchases(&r.history, horizon).max(0.0);
            let actual = f64::from(r.holdout);
            let b = &mut buckets[(r.history.x as usize).min(FREQUENCY_BUCKETS as usize)];
            b.0 += 1;
            b.1 += actual;
            b.2 += predicted;
            predicted_total += predicted;
            actual_total += u64::from(r.holdout);
            abs += (predicted - actual).abs();
            sq += (predicted - actual).powi(2);
        }
        let n = self.rows.len() as f64;
        let by_frequency = buckets
            .iter()
            .enumerate()
            .map(|(k, (count, actual, predicted))| FrequencyBucket {
                calibration_repeats: k as u32,
                and_more: k == FREQUENCY_BUCKETS as usize,
                customers: *count,
                mean_actual: if *count > 0 {
                    actual / *count as f64
                } else {
                    0.0
                },
                mean_predicted: if *count > 0 {
                    predicted / *count as f64
                } else {
                    0.0
                },
            })
            .collect();
        let cumulative = self.cumulative(&m);
        Ok(BacktestReport {
            observation_end: self.observation_end,
            holdout_end: self.holdout_end,
            bg_nbd: m,
            bg_nbd_log_likelihood: fits.bg_nbd.log_likelihood,
            bg_nbd_standard_errors: fits.bg_nbd_standard_errors,
            gamma_gamma: gg.as_ref().map(|g| g.params),
            gamma_gamma_log_likelihood: gg.as_ref().map_or(0.0, |g| g.log_likelihood),
            gamma_gamma_standard_errors: fits.gamma_gamma_standard_errors,
            customers: self.rows.len() as u64,
            fitted_customers: fits.customers,
            holdout_days: f64::from(self.holdout_period - self.end_period)
                * self.clock.period_days(),
            predicted_total,
            actual_total,
            mean_absolute_error: abs / n,
            root_mean_squared_error: (sq / n).sqrt(),
            by_frequency,
            cumulative,
        })
    }

    /// The paper's Figure 2: cumulative repeat occasions week by week from the
    /// first purchase in the data, actual against what the model expects of each
    /// first-purchase cohort since its first purchase (the unconditional
    /// E[X(t)], which is the conditional expectation at x = t_x = T = 0).
    fn cumulative(&self, m: &BgNbd) -> Vec<CumulativePoint> {
        let Some((&start, _)) = self.first_periods.first_key_value() else {
            return Vec::new();
        };
        let step = (7 / self.clock.period.days()).max(1);
        let fresh = History {
            x: 0.0,
            t_x: 0.0,
            t: 0.0,
        };
        let mut points = Vec::new();
        let mut end = start + step;
        loop {
            let end_clamped = end.min(self.holdout_period + 1);
            let actual: u64 = self
                .repeat_periods
                .range(..end_clamped)
                .map(|(_, n)| n)
                .sum();
            let predicted: f64 = self
                .first_periods
                .range(..end_clamped)
                .map(|(first, n)| {
                    *n as f64 * m.expected_purchases(&fresh, self.units(end_clamped - first))
                })
                .sum();
            points.push(CumulativePoint {
                end: self.clock.period_start(end_clamped),
                actual: actual as f64,
                predicted,
            });
            if end_clamped > self.holdout_period {
                return points;
            }
            end += step;
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn day(d: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap() + Duration::days(d)
    }

    #[test]
    fn orders_split_into_calibration_occasions_and_holdout_ones() {
        let mut b = Backtest::new(OccasionClock::default(), 7.0, day(70), day(140));
        b.add_customer(&[
            (day(0), Some(10)),
            (day(0), Some(5)),
            (day(14), Some(30)),
            (day(14), Some(10)),
            (day(70), Some(20)),
            (day(71), None),
            (day(71), Some(1)),
            (day(100), Some(1)),
            (day(141), Some(1)),
        ]);
        // First after the observation end: not in the calibration population.
        b.add_customer(&[(day(80), Some(10))]);
        assert_eq!(b.rows.len(), 1);
        let r = b.rows[0];
        assert_eq!(r.history.x, 2.0, "days 14 and 70 are the repeats");
        assert_eq!((r.history.t_x, r.history.t), (10.0, 10.0));
        assert_eq!(r.mean_repeat_margin, Some(30.0), "(40 + 20) / 2");
        assert_eq!(r.holdout, 2, "days 71 and 100; 141 is after the run");
        assert_eq!(b.repeat_periods.values().sum::<u64>(), 4);
    }

    #[test]
    fn margins_beyond_an_i64_sum_are_averaged_exactly() {
        let mut b = Backtest::new(OccasionClock::default(), 7.0, day(70), day(140));
        let max = Some(i64::MAX);
        b.add_customer(&[(day(0), max), (day(0), max), (day(7), max), (day(7), max)]);
        assert_eq!(
            b.rows[0].mean_repeat_margin,
            Some(2.0 * i64::MAX as f64),
            "one repeat occasion of two orders, summed without overflow"
        );
    }

    #[test]
    fn a_customer_first_seen_on_the_observation_end_is_observed_for_a_day() {
        let mut b = Backtest::new(OccasionClock::default(), 7.0, day(70), day(140));
        b.add_customer(&[(day(0), Some(1)), (day(30), Some(1))]);
        b.add_customer(&[(day(70), Some(10)), (day(90), Some(10))]);
        let r = b.rows[1];
        assert_eq!(
            (r.history.x, r.history.t_x, r.history.t),
            (0.0, 0.0, 1.0 / 7.0)
        );
        assert_eq!(r.holdout, 1);
        assert!(b.finish(100).is_ok(), "the fit takes them");
    }

    #[test]
    fn an_unknown_margin_leaves_the_customer_out_of_the_spend_model_only() {
        let mut b = Backtest::new(OccasionClock::default(), 7.0, day(70), day(140));
        b.add_customer(&[(day(0), Some(10)), (day(7), None), (day(9), Some(3))]);
        assert_eq!(b.rows[0].mean_repeat_margin, None);
        assert_eq!(b.rows[0].history.x, 2.0);
    }

    #[test]
    fn a_backtest_of_the_model_itself_predicts_what_happens() {
        // A population simulated from known BG/NBD parameters (weeks): the
        // backtest predicts the holdout it did not see.
        use retention_domain::sim::Rng;
        let (r, alpha, a, b) = (0.8, 5.0, 0.6, 2.5);
        let mut rng = Rng::new(17);
        let mut bt = Backtest::new(OccasionClock::default(), 7.0, day(273), day(546));
        for i in 0..4_000 {
            let lambda = rng.gamma(r) / alpha / 7.0; // per day
            let p = rng.beta(a, b);
            let mut t = (i % 84) as f64;
            let mut orders = vec![(day(t as i64), Some(100))];
            while !rng.chance(p) {
                t += rng.exponential(lambda);
                if t > 546.0 {
                    break;
                }
                orders.push((day(t as i64), Some(100)));
            }
            bt.add_customer(&orders);
        }
        let calibration_repeats: f64 = bt.rows.iter().map(|r| r.history.x).sum();
        let report = bt.finish(250_000).unwrap();
        let ratio = report.predicted_total / report.actual_total as f64;
        assert!((0.9..1.1).contains(&ratio), "predicted/actual {ratio}");
        assert_eq!(report.by_frequency.len(), 8);
        assert_eq!(
            report.by_frequency.iter().map(|b| b.customers).sum::<u64>(),
            4_000
        );
        let last = report.cumulative.last().unwrap();
        assert_eq!(
            last.actual,
            calibration_repeats + report.actual_total as f64,
            "every repeat occasion by the end of the holdout"
        );
        assert!(
            (last.predicted / last.actual - 1.0).abs() < 0.1,
            "cumulative {} vs {}",
            last.predicted,
            last.actual
        );
        assert!(report.mean_absolute_error > 0.0);
        assert!(report.root_mean_squared_error >= report.mean_absolute_error);
    }
}
