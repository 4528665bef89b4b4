//! Lifetime value and churn risk from the fitted models (DOMAIN §3, §8).

use retention_domain::domain_enum;

use super::models::History;
use super::models::bgnbd::BgNbd;

domain_enum!(ChurnRisk { Low = "LOW", Medium = "MEDIUM", High = "HIGH", Critical = "CRITICAL" });

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClvConfig {
    /// Annual discount rate, e.g. 0.10.
    pub annual_discount: f64,
    pub horizon_months: u32,
    /// Model time units in a month (weeks: 4.345).
    pub units_per_month: f64,
}

impl Default for ClvConfig {
    fn default() -> Self {
        ClvConfig {
            annual_discount: 0.10,
            horizon_months: 36,
            units_per_month: 4.345,
        }
    }
}

/// Net present value of the expected future margin: month by month, the expected
/// transactions of that month times the expected margin per transaction, discounted.
/// This is the forward-looking part of lifetime profit (DOMAIN §3); costs already
/// spent (acquisition) are sunk and not subtracted.
pub fn discounted_clv(
    model: &BgNbd,
    h: &History,
    margin_per_transaction: f64,
    cfg: &ClvConfig,
) -> f64 {
    let monthly = (1.0 + cfg.annual_discount).powf(1.0 / 12.0) - 1.0;
    let mut previous = 0.0;
    let mut value = 0.0;
    for k in 1..=cfg.horizon_months {
        let cumulative = model.expected_purchases(h, f64::from(k) * cfg.units_per_month);
        value += (cumulative - previous) * margin_per_transaction / (1.0 + monthly).powi(k as i32);
        previous = cumulative;
    }
    value
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RiskConfig {
    /// P(alive) at or above: low; then medium; then high; below: critical.
    pub low_min_p_alive: f64,
    pub medium_min_p_alive: f64,
    pub high_min_p_alive: f64,
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            low_min_p_alive: 0.7,
            medium_min_p_alive: 0.4,
            high_min_p_alive: 0.2,
        }
    }
}

/// Risk from P(alive), raised one level for unresolved complaints and one more for a
/// breached one: complaints are where churn causes show first (DOMAIN §1, §8).
pub fn churn_risk(
    p_alive: f64,
    open_complaints: u32,
    breached_complaints: u32,
    cfg: &RiskConfig,
) -> ChurnRisk {
    let base: u8 = if p_alive >= cfg.low_min_p_alive {
        0
    } else if p_alive >= cfg.medium_min_p_alive {
        1
    } else if p_alive >= cfg.high_min_p_alive {
        2
    } else {
        3
    };
    let level = base + u8::from(open_complaints > 0) + u8::from(breached_complaints > 0);
    match level {
        0 => ChurnRisk::Low,
        1 => ChurnRisk::Medium,
        2 => ChurnRisk::High,
        _ => ChurnRisk::Critical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> BgNbd {
        BgNbd {
            r: 0.243,
            alpha: 4.414,
            a: 0.793,
            b: 2.426,
        }
    }

    #[test]
    fn undiscounted_clv_is_expected_purchases_times_margin() {
        let h = History {
            x: 2.0,
            t_x: 30.43,
            t: 38.86,
        };
        let cfg = ClvConfig {
            annual_discount: 0.0,
            horizon_months: 12,
            units_per_month: 4.345,
        };
        let expected = model().expected_purchases(&h, 12.0 * 4.345) * 25.0;
        assert!((discounted_clv(&model(), &h, 25.0, &cfg) - expected).abs() < 1e-9);
    }

    #[test]
    fn discounting_and_silence_lower_clv() {
        let h = History {
            x: 2.0,
            t_x: 30.43,
            t: 38.86,
        };
        let plain = ClvConfig {
            annual_discount: 0.0,
            ..ClvConfig::default()
        };
        let discounted = discounted_clv(&model(), &h, 25.0, &ClvConfig::default());
        assert!(discounted < discounted_clv(&model(), &h, 25.0, &plain));
        let silent = History {
            x: 2.0,
            t_x: 2.0,
            t: 38.86,
        };
        assert!(discounted_clv(&model(), &silent, 25.0, &ClvConfig::default()) < discounted);
    }

    #[test]
    fn risk_levels_and_complaint_escalation() {
        let c = RiskConfig::default();
        assert_eq!(churn_risk(0.7, 0, 0, &c), ChurnRisk::Low);
        assert_eq!(churn_risk(0.69, 0, 0, &c), ChurnRisk::Medium);
        assert_eq!(churn_risk(0.4, 0, 0, &c), ChurnRisk::Medium);
        assert_eq!(churn_risk(0.39, 0, 0, &c), ChurnRisk::High);
        assert_eq!(churn_risk(0.19, 0, 0, &c), ChurnRisk::Critical);
        assert_eq!(
            churn_risk(0.9, 1, 0, &c),
            ChurnRisk::Medium,
            "an open complaint raises the level"
        );
        assert_eq!(
            churn_risk(0.9, 1, 1, &c),
            ChurnRisk::High,
            "a breached one raises it again"
        );
        assert_eq!(churn_risk(0.1, 3, 3, &c), ChurnRisk::Critical, "capped");
    }
}
