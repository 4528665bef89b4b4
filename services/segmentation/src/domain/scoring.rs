//! From features to an insight: every customer is scored against the latest
//! [`Calibration`] (see [`super::calibration`]), in a full run and whenever an
//! event rescores them, so an incremental score and a full run's score of the
//! same features agree.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::calibration::Calibration;
use super::calibration::days_between;
use super::classify::*;
use super::features::Features;
use super::models::History;
use super::value::*;

pub use super::config::ScoringConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub field: String,
    pub reason: String,
    pub inputs: BTreeMap<String, String>,
}

fn explain(field: &str, reason: String, inputs: &[(&str, String)]) -> Explanation {
    Explanation {
        field: field.into(),
        reason,
        inputs: inputs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rfm {
    pub recency: u8,
    pub frequency: u8,
    pub monetary: u8,
    pub segment: RfmSegment,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OrderModel {
    pub order_type: u8,
    pub loyalty_size_rank: u8,
    pub loyalty_credit_rank: u8,
    pub size_tier: SizeTier,
    pub wallet_stability: WalletStability,
}

/// Everything the models concluded about one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Insight {
    pub customer_id: String,
    /// None before the first purchase.
    pub rfm: Option<Rfm>,
    pub value_tier: ValueTier,
    pub management_tier: ManagementTier,
    pub lifecycle_stage: LifecycleStage,
    pub loyalty_stage: LoyaltyStage,
    pub order_model: OrderModel,
    pub account_quadrant: AccountQuadrant,
    pub p_alive: f64,
    pub expected_purchases: f64,
    pub churn_probability: f64,
    pub churn_risk: ChurnRisk,
    /// Discounted expected future margin, weighted by P(alive).
    pub predicted_clv_minor: i64,
    /// The same value given that the customer is alive (stays, or is won back):
    /// `predicted_clv ≈ p_alive × retained_clv`. 0 on insights stored before it
    /// existed, until the next scoring run (the API leaves it unset for them).
    #[serde(default)]
    pub retained_clv_minor: i64,
    pub historical_margin_minor: i64,
    pub currency: String,
    pub purchases: u32,
    pub complaints_open: u32,
    pub complaints_breached: u32,
    pub mean_csat: Option<f64>,
    pub explanations: Vec<Explanation>,
    pub score_time: DateTime<Utc>,
    pub scoring_run: String,
}

/// The classifications other services key on, which decide a rescoring's
/// change events (CustomerScored, ChurnRiskChanged): all that is read of the
/// previous insight when rescoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classes {
    pub value_tier: ValueTier,
    pub management_tier: ManagementTier,
    pub lifecycle_stage: LifecycleStage,
    pub churn_risk: ChurnRisk,
}

impl Insight {
    pub fn classes(&self) -> Classes {
        Classes {
            value_tier: self.value_tier,
            management_tier: self.management_tier,
            lifecycle_stage: self.lifecycle_stage,
            churn_risk: self.churn_risk,
        }
    }

    /// The value if retained; None on an insight stored before it was computed
    /// (0 beside a non-zero predicted value, which a computed one, whose P(alive)
    /// multiple the predicted value is, never is).
    pub fn retained_clv(&self) -> Option<i64> {
        (self.retained_clv_minor != 0 || self.predicted_clv_minor == 0)
            .then_some(self.retained_clv_minor)
    }
}

fn f2(v: f64) -> String {
    format!("{v:.2}")
}

fn credit_is_high(rating: Option<&str>) -> bool {
    matches!(rating, Some("BEST" | "GOOD"))
}

fn size_weight(s: SizeTier) -> f64 {
    match s {
        SizeTier::Large => 1.0,
        SizeTier::Medium => 2.0 / 3.0,
        SizeTier::Small => 1.0 / 3.0,
        SizeTier::Sporadic => 0.0,
    }
}

fn ladder_weight(s: LoyaltyStage) -> f64 {
    LoyaltyStage::ALL.iter().position(|x| *x == s).unwrap_or(0) as f64
        / (LoyaltyStage::ALL.len() - 1) as f64
}

/// Share of the calibration population at or below `margin`.
fn margin_percentile(cal: &Calibration, margin: i64) -> f64 {
    let below = cal
        .margin_percentiles
        .iter()
        .filter(|p| **p <= margin)
        .count();
    (below as f64 / cal.margin_percentiles.len().max(1) as f64).clamp(0.0, 1.0)
}

pub fn score(
    customer_id: &str,
    f: &Features,
    now: DateTime<Utc>,
    cal: &Calibration,
    cfg: &ScoringConfig,
) -> Insight {
    let mut why = Vec::new();
    let margin = f.margin_minor;
    let days_since_last = f.last_purchase.map(|t| days_between(t, now));

    // RFM against the calibration's quintile cut-offs.
    let rfm = days_since_last.map(|days| {
        let (r, fr, m) = (
            cal.recency.score(-days),
            cal.frequency.score(f64::from(f.purchases)),
            cal.monetary.score(f.spend_minor as f64),
        );
        let segment = rfm_segment(r, fr);
        why.push(explain(
            "rfm",
            format!("R{r} F{fr} M{m}: {segment}"),
            &[
                ("days_since_last", f2(days)),
                ("purchases", f.purchases.to_string()),
                ("spend_minor", f.spend_minor.to_string()),
            ],
        ));
        Rfm {
            recency: r,
            frequency: fr,
            monetary: m,
            segment,
        }
    });

    // Pyramid and management tier by profit rank (the run's cut-offs).
    let value_tier = if margin <= cfg.pyramid.lead_max_profit {
        ValueTier::Lead
    } else if cal.platinum_min.is_some_and(|c| margin >= c) {
        ValueTier::Platinum
    } else if cal.gold_min.is_some_and(|c| margin >= c) {
        ValueTier::Gold
    } else {
        ValueTier::Iron
    };
    why.push(explain(
        "value_tier",
        format!("lifetime margin {margin} against the pyramid cut-offs: {value_tier}"),
        &[
            ("historical_margin_minor", margin.to_string()),
            ("platinum_min", format!("{:?}", cal.platinum_min)),
            ("gold_min", format!("{:?}", cal.gold_min)),
            ("lead_max_profit", cfg.pyramid.lead_max_profit.to_string()),
        ],
    ));
    let management_tier = if f.purchases <= cfg.tiers.one_off_max_purchases {
        ManagementTier::OneOff
    } else if cal.key_min.is_some_and(|c| margin >= c) {
        ManagementTier::Key
    } else if cal.suitable_min.is_some_and(|c| margin >= c) {
        ManagementTier::Suitable
    } else {
        ManagementTier::Ordinary
    };
    why.push(explain(
        "management_tier",
        format!(
            "{} purchases, margin rank against the tier cut-offs: {management_tier}",
            f.purchases
        ),
        &[
            ("purchases", f.purchases.to_string()),
            ("key_min", format!("{:?}", cal.key_min)),
            ("suitable_min", format!("{:?}", cal.suitable_min)),
        ],
    ));

    // Lifecycle: silence against the customer's own rhythm, then the spend trend.
    let periods = f.spend_by_period(now, cfg.trend_quarters, 3);
    let trend = spend_trend(&periods);
    let interval = f.usual_interval_days(&cfg.clock);
    let lifecycle_stage = lifecycle_stage(
        f.purchases,
        days_since_last.unwrap_or(0.0),
        interval,
        &periods,
        &cfg.lifecycle,
    );
    let silence = match (days_since_last, interval) {
        (Some(d), Some(i)) if i > 0.0 => format!("silent for {:.1} usual intervals", d / i),
        _ => "no usual interval yet".to_string(),
    };
    why.push(explain(
        "lifecycle_stage",
        format!("{silence}, spend trend {trend:+.2} per quarter: {lifecycle_stage}"),
        &[
            ("purchases", f.purchases.to_string()),
            (
                "days_since_last",
                days_since_last.map(f2).unwrap_or_default(),
            ),
            ("usual_interval_days", interval.map(f2).unwrap_or_default()),
            ("quarterly_spend_minor", format!("{periods:?}")),
        ],
    ));

    let loyalty_stage = loyalty_stage(
        f.purchases,
        f.referrals_given,
        cfg.partner_min_purchases,
        cfg.partner_min_referrals,
    );
    why.push(explain(
        "loyalty_stage",
        format!(
            "{} purchases and {} referrals given: {loyalty_stage}",
            f.purchases, f.referrals_given
        ),
        &[
            ("purchases", f.purchases.to_string()),
            ("referrals_given", f.referrals_given.to_string()),
        ],
    ));

    // Order model: size from the customer's revenue, else their annualised spend.
    let tenure_years = f
        .first_purchase
        .map(|t| (days_between(t, now) / 365.25).max(1.0))
        .unwrap_or(1.0);
    let (revenue, revenue_source) = match f.annual_revenue_minor {
        Some(r) => (r as f64 / 100.0, "annual revenue"),
        None => (
            f.spend_minor as f64 / 100.0 / tenure_years,
            "annualised spend (revenue unknown)",
        ),
    };
    let size = size_tier(revenue);
    let wallet = f.share_of_wallet.unwrap_or(0.5);
    let stability = wallet_stability(wallet);
    let inputs = OrderInputs {
        high_credit: credit_is_high(f.credit_rating.as_deref()),
        big: matches!(size, SizeTier::Large | SizeTier::Medium),
        loyal: f.repeat_occasions(&cfg.clock) >= cfg.loyal_min_repeats
            && matches!(
                stability,
                WalletStability::Stable | WalletStability::BasicallyStable
            ),
    };
    let order_model = OrderModel {
        order_type: order_type(inputs),
        loyalty_size_rank: loyalty_size_rank(inputs),
        loyalty_credit_rank: loyalty_credit_rank(inputs),
        size_tier: size,
        wallet_stability: stability,
    };
    why.push(explain(
        "order_model",
        format!(
            "credit {}, size {size} by {revenue_source}, {}: type {}",
            if inputs.high_credit { "high" } else { "low" },
            if inputs.loyal { "loyal" } else { "not loyal" },
            order_model.order_type
        ),
        &[
            ("credit_rating", f.credit_rating.clone().unwrap_or_default()),
            ("revenue", f2(revenue)),
            (
                "share_of_wallet",
                f.share_of_wallet.map(f2).unwrap_or("unknown (0.50)".into()),
            ),
            (
                "repeat_occasions",
                f.repeat_occasions(&cfg.clock).to_string(),
            ),
        ],
    ));

    let matrix = MatrixInputs {
        profit: margin_percentile(cal, margin),
        growth: ((trend + 1.0) / 2.0).clamp(0.0, 1.0),
        size: size_weight(size),
        share_of_wallet: wallet,
        loyalty: ladder_weight(loyalty_stage),
    };
    let account_quadrant = account_quadrant(&matrix, &cfg.matrix);
    why.push(explain(
        "account_quadrant",
        format!("weighted attractiveness and relative strength: {account_quadrant}"),
        &[
            ("profit_percentile", f2(matrix.profit)),
            ("growth", f2(matrix.growth)),
            ("size", f2(matrix.size)),
            ("share_of_wallet", f2(matrix.share_of_wallet)),
            ("loyalty", f2(matrix.loyalty)),
        ],
    ));

    // BG/NBD and Gamma-Gamma. A customer without purchases is, in the model, a new
    // customer at time zero: alive, with the population's expected purchases.
    let h = f
        .history(now, cfg.unit_days, &cfg.clock)
        .unwrap_or(History {
            x: 0.0,
            t_x: 0.0,
            t: 0.0,
        });
    let p_alive = cal.bg_nbd.p_alive(&h).clamp(0.0, 1.0);
    let expected_purchases = cal
        .bg_nbd
        .expected_purchases(&h, cfg.horizon_units)
        .max(0.0);
    // A complaint about to miss its SLA weighs like one that missed it: the
    // customer is being let down now, and scoring should not wait for the breach.
    let at_risk = f.complaints_at_risk();
    let churn_risk = churn_risk(
        p_alive,
        f.complaints_open,
        f.complaints_breached.saturating_add(at_risk),
        &cfg.risk,
    );
    why.push(explain(
        "churn_risk",
        format!(
            "P(alive) {p_alive:.3}, {} open, {} breached and {at_risk} at-risk complaints: {churn_risk}",
            f.complaints_open, f.complaints_breached
        ),
        &[
            ("x", f2(h.x)),
            ("t_x", f2(h.t_x)),
            ("T", f2(h.t)),
            ("open_complaints", f.complaints_open.to_string()),
            ("breached_complaints", f.complaints_breached.to_string()),
            ("at_risk_complaints", at_risk.to_string()),
        ],
    ));
    let own_mean = f.mean_repeat_margin(&cfg.clock);
    let per_transaction = match own_mean {
        Some(m) if m > 0.0 => cal.gamma_gamma.expected_spend(h.x, m),
        // A loss-making customer: the spend model (positive values) does not apply.
        Some(m) => m,
        None => cal.gamma_gamma.expected_spend(0.0, 0.0),
    };
    let minor = |v: f64| if v.is_finite() { v.round() as i64 } else { 0 };
    let predicted_clv_minor = minor(discounted_clv(&cal.bg_nbd, &h, per_transaction, &cfg.clv));
    let retained_clv_minor = minor(discounted_retained_clv(
        &cal.bg_nbd,
        &h,
        per_transaction,
        &cfg.clv,
    ));
    why.push(explain(
        "predicted_clv",
        format!(
            "expected margin {per_transaction:.0} per purchase occasion over {} months at {:.0}% a year",
            cfg.clv.horizon_months,
            cfg.clv.annual_discount * 100.0
        ),
        &[
            ("mean_repeat_margin", own_mean.map(f2).unwrap_or_default()),
            ("expected_purchases", f2(expected_purchases)),
        ],
    ));
    let expected_if_alive = cal
        .bg_nbd
        .expected_purchases_if_alive(&h, cfg.horizon_units)
        .max(0.0);
    why.push(explain(
        "retained_clv",
        format!(
            "if the customer stays or comes back: expected margin {per_transaction:.0} per purchase occasion over {} months at {:.0}% a year, not weighted by P(alive) {p_alive:.3}",
            cfg.clv.horizon_months,
            cfg.clv.annual_discount * 100.0
        ),
        &[
            ("mean_repeat_margin", own_mean.map(f2).unwrap_or_default()),
            ("expected_purchases_if_alive", f2(expected_if_alive)),
            ("p_alive", format!("{p_alive:.3}")),
        ],
    ));

    Insight {
        customer_id: customer_id.to_string(),
        rfm,
        value_tier,
        management_tier,
        lifecycle_stage,
        loyalty_stage,
        order_model,
        account_quadrant,
        p_alive,
        expected_purchases,
        churn_probability: 1.0 - p_alive,
        churn_risk,
        predicted_clv_minor,
        retained_clv_minor,
        historical_margin_minor: margin,
        currency: f.currency.clone(),
        purchases: f.purchases,
        complaints_open: f.complaints_open,
        complaints_breached: f.complaints_breached,
        mean_csat: f.mean_csat(),
        explanations: why,
        score_time: now,
        scoring_run: cal.scoring_run.clone(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::domain::calibration::*;
    use crate::domain::occasions::OccasionClock;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn population() -> Vec<(String, Features)> {
        // 60 customers with varied rhythms and margins, generated deterministically.
        (0..60)
            .map(|i| {
                let mut f = Features::default();
                let n = 1 + i % 7;
                let gap = 5 + (i * 13) % 40;
                for k in 0..n {
                    let at = t0() + Duration::days((i % 11) as i64 + (k * gap) as i64);
                    let amount = 1_000 + 250 * ((i * 7 + k) % 9) as i64;
                    f.record_purchase(at, amount, amount / 3, 0, "tea", &OccasionClock::default())
                        .unwrap();
                }
                (format!("c{i}"), f)
            })
            .collect()
    }

    fn calibrated(now: DateTime<Utc>) -> (Vec<(String, Features)>, Calibration) {
        let pop = population();
        let rows: Vec<CalibrationRow> = pop
            .iter()
            .filter_map(|(_, f)| CalibrationRow::of(f, now, &ScoringConfig::default()))
            .collect();
        let cal = calibrate(&rows, &ScoringConfig::default(), "run-1", now).unwrap();
        (pop, cal)
    }

    #[test]
    fn default_settings_give_the_default_config() {
        let from = ScoringConfig::from_settings(&retention_config::ScoringSettings::default());
        assert_eq!(from, ScoringConfig::default());
    }

    #[test]
    fn calibration_scores_the_population_by_profit_rank() {
        let now = t0() + Duration::days(400);
        let (pop, cal) = calibrated(now);
        let cfg = ScoringConfig::default();
        let insights: Vec<Insight> = pop
            .iter()
            .map(|(id, f)| score(id, f, now, &cal, &cfg))
            .collect();
        let margins: Vec<i64> = pop.iter().map(|(_, f)| f.margin_minor).collect();
        let expected = value_tiers(&margins, &cfg.pyramid);
        let got: Vec<ValueTier> = insights.iter().map(|i| i.value_tier).collect();
        assert_eq!(
            got, expected,
            "the cut-offs reproduce the rank-based pyramid"
        );
        let purchases: Vec<u32> = pop.iter().map(|(_, f)| f.purchases).collect();
        let tiers = management_tiers(&margins, &purchases, &cfg.tiers);
        let got: Vec<ManagementTier> = insights.iter().map(|i| i.management_tier).collect();
        assert_eq!(got, tiers);
        for i in &insights {
            assert!((0.0..=1.0).contains(&i.p_alive));
            assert!((i.churn_probability + i.p_alive - 1.0).abs() < 1e-12);
            assert!(i.expected_purchases >= 0.0);
            assert_eq!(i.scoring_run, "run-1");
            for field in [
                "rfm",
                "value_tier",
                "lifecycle_stage",
                "churn_risk",
                "predicted_clv",
            ] {
                assert!(
                    i.explanations.iter().any(|e| e.field == field),
                    "{field} is explained"
                );
            }
        }
        assert_eq!(cal.customers, 60);
        assert_eq!(cal.margin_percentiles.len(), 101);
        assert!(cal.margin_percentiles.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn a_customer_without_purchases_is_a_prospect_alive_by_definition() {
        let now = t0() + Duration::days(400);
        let (_, cal) = calibrated(now);
        let i = score(
            "new",
            &Features::default(),
            now,
            &cal,
            &ScoringConfig::default(),
        );
        assert_eq!(i.rfm, None);
        assert_eq!(i.loyalty_stage, LoyaltyStage::Prospect);
        assert_eq!(i.value_tier, ValueTier::Lead);
        assert_eq!(i.p_alive, 1.0);
        assert!(i.expected_purchases > 0.0, "the population's expectation");
        assert_eq!(i.churn_risk, ChurnRisk::Low);
    }

    #[test]
    fn silence_and_complaints_raise_churn_risk() {
        let now = t0() + Duration::days(400);
        let (_, cal) = calibrated(now);
        let cfg = ScoringConfig::default();
        let mut f = Features::default();
        for k in 0..6 {
            f.record_purchase(
                t0() + Duration::days(399 - 7 * k),
                2_000,
                700,
                0,
                "tea",
                &OccasionClock::default(),
            )
            .unwrap();
        }
        let active = score("a", &f, now, &cal, &cfg);
        let level = |r: ChurnRisk| ChurnRisk::ALL.iter().position(|x| *x == r).unwrap();
        assert!(level(active.churn_risk) <= 1, "{active:?}");
        f.record_complaint_opened("c");
        f.record_sla_breach("c", 2);
        let upset = score("a", &f, now, &cal, &cfg);
        assert_eq!(
            level(upset.churn_risk),
            level(active.churn_risk) + 2,
            "an open and a breached complaint each raise the level"
        );
        let mut warned = Features::default();
        warned.clone_from(&f);
        warned.complaint_marks.clear();
        warned.complaints_breached = 0;
        warned.complaints_open = 0;
        warned.complaints_total = 0;
        warned.record_sla_at_risk("d", 2);
        let at_risk = score("a", &warned, now, &cal, &cfg);
        assert_eq!(
            level(at_risk.churn_risk),
            level(active.churn_risk) + 2,
            "a complaint about to breach raises the level as a breached one does"
        );
        warned.record_complaint_resolved("d");
        let settled = score("a", &warned, now, &cal, &cfg);
        assert_eq!(
            settled.churn_risk, active.churn_risk,
            "resolved, its warning no longer counts"
        );
        let later = score("a", &f, now + Duration::days(300), &cal, &cfg);
        assert!(later.p_alive < active.p_alive);
        assert_eq!(later.lifecycle_stage, LifecycleStage::Terminated);
        assert_eq!(later.churn_risk, ChurnRisk::Critical);
    }

    #[test]
    fn the_value_if_retained_is_not_discounted_by_silence() {
        let now = t0() + Duration::days(400);
        let (_, cal) = calibrated(now);
        let cfg = ScoringConfig::default();
        // A weekly buyer for 20 weeks, the last purchase yesterday.
        let mut f = Features::default();
        for k in 0..20 {
            f.record_purchase(
                t0() + Duration::days(399 - 7 * k),
                20_000,
                7_000,
                0,
                "tea",
                &OccasionClock::default(),
            )
            .unwrap();
        }
        let active = score("a", &f, now, &cal, &cfg);
        let lapsed = score("a", &f, now + Duration::days(300), &cal, &cfg);
        for i in [&active, &lapsed] {
            let weighted = i.p_alive * i.retained_clv_minor as f64;
            assert!(
                (i.predicted_clv_minor as f64 - weighted).abs() <= 1.0,
                "predicted = P(alive) × retained, up to rounding: {i:?}"
            );
            assert!(i.explanations.iter().any(|e| e.field == "retained_clv"));
        }
        // This small fixture's fit drops ~29 % of customers after every purchase,
        // so even the most active one is alive with P 0.69 here (the CDNOW
        // parameters in `value` give 0.96 and nearly equal values).
        assert!(active.predicted_clv_minor > 0);
        assert!(
            active.predicted_clv_minor as f64 > 0.6 * active.retained_clv_minor as f64,
            "active: close to the same value ({} vs {})",
            active.predicted_clv_minor,
            active.retained_clv_minor
        );
        assert_eq!(active.retained_clv(), Some(active.retained_clv_minor));
        // An insight stored before the value if retained existed reads as unknown.
        let mut json = serde_json::to_value(&active).unwrap();
        json.as_object_mut().unwrap().remove("retained_clv_minor");
        let stored: Insight = serde_json::from_value(json).unwrap();
        assert_eq!(stored.retained_clv_minor, 0);
        assert_eq!(stored.retained_clv(), None);
        assert!(lapsed.p_alive < 0.2, "{}", lapsed.p_alive);
        assert!(
            lapsed.retained_clv_minor > 5 * lapsed.predicted_clv_minor.max(1),
            "lapsed: worth far more if won back ({} vs {})",
            lapsed.retained_clv_minor,
            lapsed.predicted_clv_minor
        );
    }

    #[test]
    fn large_populations_are_fitted_on_a_systematic_sample() {
        let now = t0() + Duration::days(400);
        let rows: Vec<CalibrationRow> = population()
            .iter()
            .filter_map(|(_, f)| CalibrationRow::of(f, now, &ScoringConfig::default()))
            .collect();
        let cfg = ScoringConfig {
            fit_sample: 25,
            ..ScoringConfig::default()
        };
        let cal = calibrate(&rows, &cfg, "r", now).unwrap();
        assert_eq!(cal.customers, 20, "every third of 60");
        let full = calibrate(&rows, &ScoringConfig::default(), "r", now).unwrap();
        assert_eq!(cal.monetary, full.monetary, "cut-offs use everyone");
        assert_eq!(cal.platinum_min, full.platinum_min);
    }

    #[test]
    fn an_empty_population_cannot_be_calibrated() {
        assert!(matches!(
            calibrate(&[], &ScoringConfig::default(), "r", t0()),
            Err(CalibrationError::NoPurchases)
        ));
    }
}
