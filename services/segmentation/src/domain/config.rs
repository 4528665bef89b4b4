//! The scoring configuration: the models' time unit and horizon, the occasion
//! clock, and the cut-offs and weights of every classification (`scoring.*`).
//! Its own module so that calibration and scoring both use it, neither the other.

use super::classify::*;
use super::occasions::OccasionClock;
use super::value::*;

#[derive(Debug, Clone, PartialEq)]
pub struct ScoringConfig {
    /// Model time unit in days (7: weeks, as in the CDNOW study).
    pub unit_days: f64,
    /// What one purchase occasion is (`scoring.time_zone`, `occasion_period`).
    pub clock: OccasionClock,
    /// Horizon of `expected_purchases`, in model units.
    pub horizon_units: f64,
    pub clv: ClvConfig,
    pub risk: RiskConfig,
    pub pyramid: PyramidConfig,
    pub tiers: TierConfig,
    pub lifecycle: LifecycleConfig,
    pub matrix: MatrixConfig,
    pub partner_min_purchases: u32,
    pub partner_min_referrals: u32,
    /// Repeat purchases from which a customer counts as loyal in the order model.
    pub loyal_min_repeats: u32,
    /// Quarters of spend the lifecycle trend looks at.
    pub trend_quarters: u32,
    /// Most customers the model fits use: beyond it, a systematic sample (every
    /// k-th) is fitted; the standard errors at this size are far below the
    /// differences that change a classification.
    pub fit_sample: usize,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            unit_days: 7.0,
            clock: OccasionClock::default(),
            horizon_units: 52.0,
            clv: ClvConfig::default(),
            risk: RiskConfig::default(),
            pyramid: PyramidConfig::default(),
            tiers: TierConfig::default(),
            lifecycle: LifecycleConfig::default(),
            matrix: MatrixConfig::default(),
            partner_min_purchases: 10,
            partner_min_referrals: 3,
            loyal_min_repeats: 2,
            trend_quarters: 4,
            fit_sample: 250_000,
        }
    }
}

impl ScoringConfig {
    /// The configured cut-offs and weights (`scoring.*`, see retention-config).
    pub fn from_settings(s: &retention_config::ScoringSettings) -> ScoringConfig {
        let d = ScoringConfig::default();
        ScoringConfig {
            horizon_units: s.horizon_weeks * 7.0 / d.unit_days,
            // retention-config refuses other names before this runs.
            clock: OccasionClock::new(&s.time_zone, &s.occasion_period).unwrap_or_default(),
            fit_sample: s.fit_sample.max(1),
            clv: ClvConfig {
                annual_discount: s.annual_discount,
                horizon_months: s.clv_horizon_months,
                ..d.clv
            },
            risk: RiskConfig {
                low_min_p_alive: s.low_risk_min_p_alive,
                medium_min_p_alive: s.medium_risk_min_p_alive,
                high_min_p_alive: s.high_risk_min_p_alive,
            },
            pyramid: PyramidConfig {
                platinum_share: s.platinum_share,
                gold_share: s.gold_share,
                lead_max_profit: s.lead_max_margin_minor,
            },
            tiers: TierConfig {
                key_share: s.key_share,
                suitable_share: s.suitable_share,
                one_off_max_purchases: s.one_off_max_purchases,
            },
            matrix: MatrixConfig {
                profit_weight: s.matrix_profit_weight,
                growth_weight: s.matrix_growth_weight,
                size_weight: s.matrix_size_weight,
                wallet_weight: s.matrix_wallet_weight,
                loyalty_weight: s.matrix_loyalty_weight,
                threshold: s.matrix_threshold,
            },
            ..d
        }
    }
}
