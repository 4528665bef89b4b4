//! Calibration: what a full scoring run learns from the whole population before
//! it scores anyone. The BG/NBD and Gamma-Gamma fits (on a systematic sample,
//! with standard errors), the RFM quintile cut-offs and the profit-rank
//! thresholds of the value pyramid and management tiers. Backtests share the
//! model fits.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::classify::*;
use super::config::ScoringConfig;
use super::features::Features;
use super::models::bgnbd::{self, BgNbd, BgNbdFit};
use super::models::gamma_gamma::{self, GammaGamma, GammaGammaFit};
use super::models::uncertainty::ParamEstimate;
use super::models::{FitError, History};

/// Quintile cut-offs: the least value that earns each score from 2 to 5 (None when
/// no one in the population earned it). Derived from [`quintiles`], so scoring the
/// calibration population against them gives exactly its quintile scores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cuts(pub [Option<f64>; 4]);

impl Cuts {
    /// Higher values score higher.
    pub fn from_population(values: &[f64]) -> Cuts {
        let scores = quintiles(values, true);
        let mut cuts = [None; 4];
        for (v, s) in values.iter().zip(&scores) {
            for (k, cut) in cuts.iter_mut().enumerate() {
                if usize::from(*s) >= k + 2 && cut.is_none_or(|c: f64| *v < c) {
                    *cut = Some(*v);
                }
            }
        }
        Cuts(cuts)
    }

    pub fn score(&self, v: f64) -> u8 {
        1 + self.0.iter().filter(|c| c.is_some_and(|c| v >= c)).count() as u8
    }
}

/// The least profit whose rank share (customers strictly more profitable, over the
/// population) is below `share`; None when nobody qualifies.
fn rank_cut(sorted_desc: &[i64], share: f64) -> Option<i64> {
    let n = sorted_desc.len() as f64;
    let mut cut = None;
    let mut i = 0;
    while i < sorted_desc.len() {
        if (i as f64) / n >= share {
            break;
        }
        cut = Some(sorted_desc[i]);
        let v = sorted_desc[i];
        while i < sorted_desc.len() && sorted_desc[i] == v {
            i += 1;
        }
    }
    cut
}

/// What one customer contributes to a calibration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationRow {
    pub history: History,
    pub days_since_last: f64,
    pub purchases: u32,
    pub spend_minor: i64,
    pub margin_minor: i64,
    pub mean_repeat_margin: Option<f64>,
}

impl CalibrationRow {
    /// None for a customer without purchases (not part of the population fits).
    pub fn of(f: &Features, now: DateTime<Utc>, cfg: &ScoringConfig) -> Option<CalibrationRow> {
        let unit_days = cfg.unit_days;
        let h = f.history(now, unit_days, &cfg.clock)?;
        // Whole days: identical histories group in the fit, and sub-day noise
        // carries no information at a weekly time unit.
        let day = 1.0 / unit_days;
        let round = |v: f64| (v / day).round() * day;
        let mut history = History {
            x: h.x,
            t_x: round(h.t_x),
            t: round(h.t),
        };
        history.t = history.t.max(history.t_x).max(day);
        Some(CalibrationRow {
            history,
            days_since_last: days_between(f.last_purchase?, now),
            purchases: f.purchases,
            spend_minor: f.spend_minor,
            margin_minor: f.margin_minor,
            mean_repeat_margin: f.mean_repeat_margin(&cfg.clock),
        })
    }
}

pub(super) fn days_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    ((b - a).num_seconds() as f64 / 86_400.0).max(0.0)
}

/// Population results a scoring run produces and incremental rescoring reuses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub scoring_run: String,
    pub bg_nbd: BgNbd,
    pub bg_nbd_log_likelihood: f64,
    pub gamma_gamma: GammaGamma,
    pub gamma_gamma_log_likelihood: f64,
    /// Standard errors of r, α, a, b and of p, q, γ (none when a fit's
    /// information matrix is not positive definite, or on calibrations stored
    /// before they were kept).
    #[serde(default)]
    pub bg_nbd_standard_errors: Option<Vec<f64>>,
    #[serde(default)]
    pub gamma_gamma_standard_errors: Option<Vec<f64>>,
    /// Customers the fits used (all with a purchase, up to `fit_sample`).
    pub customers: u64,
    pub fit_millis: u64,
    pub fit_time: DateTime<Utc>,
    /// Recency is scored on minus the days since the last purchase.
    pub recency: Cuts,
    pub frequency: Cuts,
    pub monetary: Cuts,
    pub platinum_min: Option<i64>,
    pub gold_min: Option<i64>,
    pub key_min: Option<i64>,
    pub suitable_min: Option<i64>,
    /// Margin at each percentile 0..=100, for the key-account matrix.
    pub margin_percentiles: Vec<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("no customer has a purchase yet: nothing to fit")]
    NoPurchases,
    #[error("the BG/NBD fit failed: {0}")]
    BgNbd(FitError),
    #[error("the Gamma-Gamma fit needs customers with repeat purchases and positive margin: {0}")]
    GammaGamma(FitError),
}

/// The model fits on a systematic sample (every k-th) of at most `fit_sample`
/// customers, with the parameters' standard errors where the log-likelihood is
/// curved at the optimum. Gamma-Gamma sees the customers with repeat
/// occasions and a positive mean margin; its failure is the caller's to judge.
pub struct ModelFits {
    pub bg_nbd: BgNbdFit,
    pub bg_nbd_standard_errors: Option<Vec<f64>>,
    pub gamma_gamma: Result<GammaGammaFit, FitError>,
    pub gamma_gamma_standard_errors: Option<Vec<f64>>,
    /// Customers in the sample.
    pub customers: u64,
}

pub fn fit_models(
    rows: impl ExactSizeIterator<Item = (History, Option<f64>)>,
    fit_sample: usize,
) -> Result<ModelFits, CalibrationError> {
    let step = rows.len().div_ceil(fit_sample.max(1)).max(1);
    let sample: Vec<(History, Option<f64>)> = rows.step_by(step).collect();
    let histories: Vec<History> = sample.iter().map(|(h, _)| *h).collect();
    let bg = bgnbd::fit(&histories).map_err(CalibrationError::BgNbd)?;
    let errors = |e: Vec<ParamEstimate>| e.iter().map(|p| p.standard_error).collect();
    let bg_nbd_standard_errors = bgnbd::standard_errors(&histories, &bg.params)
        .ok()
        .map(errors);
    let spends: Vec<(f64, f64)> = sample
        .iter()
        .filter_map(|(h, m)| m.filter(|m| *m > 0.0).map(|m| (h.x, m)))
        .collect();
    let gg = gamma_gamma::fit(&spends);
    let gamma_gamma_standard_errors = gg.as_ref().ok().and_then(|g| {
        gamma_gamma::standard_errors(&spends, &g.params)
            .ok()
            .map(errors)
    });
    Ok(ModelFits {
        bg_nbd: bg,
        bg_nbd_standard_errors,
        gamma_gamma: gg,
        gamma_gamma_standard_errors,
        customers: sample.len() as u64,
    })
}

pub fn calibrate(
    rows: &[CalibrationRow],
    cfg: &ScoringConfig,
    scoring_run: &str,
    now: DateTime<Utc>,
) -> Result<Calibration, CalibrationError> {
    if rows.is_empty() {
        return Err(CalibrationError::NoPurchases);
    }
    let started = std::time::Instant::now();
    let fits = fit_models(
        rows.iter().map(|r| (r.history, r.mean_repeat_margin)),
        cfg.fit_sample,
    )?;
    let gg = fits.gamma_gamma.map_err(CalibrationError::GammaGamma)?;
    let bg = fits.bg_nbd;
    let fit_millis = started.elapsed().as_millis() as u64;

    let recency: Vec<f64> = rows.iter().map(|r| -r.days_since_last).collect();
    let frequency: Vec<f64> = rows.iter().map(|r| f64::from(r.purchases)).collect();
    let monetary: Vec<f64> = rows.iter().map(|r| r.spend_minor as f64).collect();
    let mut margins: Vec<i64> = rows.iter().map(|r| r.margin_minor).collect();
    margins.sort_unstable_by(|a, b| b.cmp(a));
    let above_lead = |cut: Option<i64>| cut.filter(|c| *c > cfg.pyramid.lead_max_profit);
    let last = margins.len() - 1;
    let margin_percentiles = (0..=100)
        .map(|p| margins[last - (last * p + 50) / 100])
        .collect();
    Ok(Calibration {
        scoring_run: scoring_run.to_string(),
        bg_nbd: bg.params,
        bg_nbd_log_likelihood: bg.log_likelihood,
        gamma_gamma: gg.params,
        gamma_gamma_log_likelihood: gg.log_likelihood,
        bg_nbd_standard_errors: fits.bg_nbd_standard_errors,
        gamma_gamma_standard_errors: fits.gamma_gamma_standard_errors,
        customers: fits.customers,
        fit_millis,
        fit_time: now,
        recency: Cuts::from_population(&recency),
        frequency: Cuts::from_population(&frequency),
        monetary: Cuts::from_population(&monetary),
        platinum_min: above_lead(rank_cut(&margins, cfg.pyramid.platinum_share)),
        gold_min: above_lead(rank_cut(
            &margins,
            cfg.pyramid.platinum_share + cfg.pyramid.gold_share,
        )),
        key_min: rank_cut(&margins, cfg.tiers.key_share),
        suitable_min: rank_cut(&margins, cfg.tiers.key_share + cfg.tiers.suitable_share),
        margin_percentiles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_reproduce_population_quintiles_and_score_new_values() {
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        let cuts = Cuts::from_population(&values);
        let expected = quintiles(&values, true);
        for (v, q) in values.iter().zip(expected) {
            assert_eq!(cuts.score(*v), q, "value {v}");
        }
        assert_eq!(cuts.score(0.0), 1);
        assert_eq!(cuts.score(100.0), 5);
        assert_eq!(
            cuts.score(8.5),
            cuts.score(8.0),
            "between cuts: the lower score"
        );
        let flat = Cuts::from_population(&[3.0; 4]);
        assert_eq!(flat.score(3.0), quintiles(&[3.0; 4], true)[0]);
    }

    #[test]
    fn rank_cut_is_the_least_profit_inside_the_share() {
        // 10 customers; top 20% = ranks 0 and 1.
        let desc = [100, 90, 90, 50, 40, 30, 20, 10, 5, 0];
        assert_eq!(rank_cut(&desc, 0.2), Some(90), "ties share the better rank");
        assert_eq!(rank_cut(&desc, 0.1), Some(100));
        assert_eq!(rank_cut(&desc, 0.0), None);
        assert_eq!(rank_cut(&[7, 7, 7], 0.05), Some(7), "a tie at the top");
    }
}
