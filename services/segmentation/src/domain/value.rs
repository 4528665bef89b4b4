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
/// spent (acquisition) are sunk and not subtracted. The expected transactions are
/// BG/NBD's unconditional ones, so the value is weighted by P(alive): a customer
/// who has probably left is worth little here.
pub fn discounted_clv(
    model: &BgNbd,
    h: &History,
    margin_per_transaction: f64,
    cfg: &ClvConfig,
) -> f64 {
    discounted(
        |horizon| model.expected_purchases(h, horizon),
        margin_per_transaction,
        cfg,
    )
}

/// The same net present value given that the customer is alive: staying, or won
/// back. Month by month the expected transactions of a living customer
/// ([`BgNbd::expected_purchases_if_alive`]) times the same margin per transaction,
/// discounted the same way. Every month's expected transactions in
/// [`discounted_clv`] are these times P(alive), so
/// `discounted_clv = P(alive) × discounted_retained_clv`: the value at stake
/// when a lapsed customer is won back, which P(alive) no longer discounts.
pub fn discounted_retained_clv(
    model: &BgNbd,
    h: &History,
    margin_per_transaction: f64,
    cfg: &ClvConfig,
) -> f64 {
    discounted(
        |horizon| model.expected_purchases_if_alive(h, horizon),
        margin_per_transaction,
        cfg,
    )
}

/// Σ over the horizon's months of (cumulative(k) − cumulative(k − 1)) × margin,
/// discounted monthly at the annual rate; `cumulative` takes model time units.
fn discounted(
    cumulative: impl Fn(f64) -> f64,
    margin_per_transaction: f64,
    cfg: &ClvConfig,
) -> f64 {
    let monthly = (1.0 + cfg.annual_discount).powf(1.0 / 12.0) - 1.0;
    let mut previous = 0.0;
    let mut value = 0.0;
    for k in 1..=cfg.horizon_months {
        let cumulative = cumulative(f64::from(k) * cfg.units_per_month);
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
/// breached one, or one about to be (an unresolved complaint whose SLA target is at
/// risk): complaints are where churn causes show first (DOMAIN §1, §8).
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

    /// E[X(t) | alive] by numerical integration over the posterior, independent of
    /// the closed form: given λ and p a living customer's purchases until t average
    /// (1 − e^(−λpt)) / p; over λ ~ Gamma(r + x, α + T) that is
    /// (1 − ((α + T) / (α + T + pt))^(r + x)) / p, left to integrate over
    /// p ~ Beta(a, b + x) (Simpson's rule on p = s^(1/a), which removes the
    /// density's singularity at 0).
    fn if_alive_by_quadrature(m: &BgNbd, h: &History, t: f64) -> f64 {
        use crate::domain::models::special::ln_gamma;
        let (r, al, a, b) = (m.r + h.x, m.alpha + h.t, m.a, m.b + h.x);
        let ln_beta = ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b);
        let f = |s: f64| {
            let p = s.powf(1.0 / a);
            let given_p = if p == 0.0 {
                r * t / al
            } else {
                (1.0 - (al / (al + p * t)).powf(r)) / p
            };
            given_p * (1.0 - p).powf(b - 1.0) / a / ln_beta.exp()
        };
        let n = 20_000;
        let step = 1.0 / f64::from(n);
        let mut sum = f(0.0) + f(1.0);
        for i in 1..n {
            sum += f(f64::from(i) * step) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        sum * step / 3.0
    }

    #[test]
    fn purchases_if_alive_are_the_posterior_expectation() {
        let m = model();
        let horizon = 36.0 * 4.345;
        // E[X(t)] / P(alive) from Python lifetimes 0.11.3 (BetaGeoFitter's
        // conditional_expected_number_of_purchases_up_to_time over
        // conditional_probability_alive) at these parameters.
        for (x, t_x, t, lifetimes) in [
            (2.0, 30.43, 38.86, 4.897_520_377_105_912),
            (10.0, 38.0, 39.0, 19.645_515_826_502_336),
            (1.0, 1.0, 100.0, 1.470_468_987_373_052_8),
        ] {
            let h = History { x, t_x, t };
            let closed = m.expected_purchases_if_alive(&h, horizon);
            let integrated = if_alive_by_quadrature(&m, &h, horizon);
            assert!(
                (closed - integrated).abs() < 1e-6 * closed,
                "{h:?}: {closed} vs {integrated}"
            );
            assert!(
                (closed - lifetimes).abs() < 1e-9 * lifetimes,
                "{h:?}: {closed}"
            );
            let weighted = m.p_alive(&h) * closed;
            assert!((weighted - m.expected_purchases(&h, horizon)).abs() < 1e-12);
        }
        // Given alive, when the last purchase was does not matter.
        let (recent, long_ago) = (
            History {
                x: 2.0,
                t_x: 38.0,
                t: 38.86,
            },
            History {
                x: 2.0,
                t_x: 2.0,
                t: 38.86,
            },
        );
        assert_eq!(
            m.expected_purchases_if_alive(&recent, horizon),
            m.expected_purchases_if_alive(&long_ago, horizon)
        );
    }

    #[test]
    fn retained_value_is_the_clv_without_the_p_alive_weight() {
        let m = model();
        let cfg = ClvConfig::default();
        let value = |h: &History| {
            (
                discounted_clv(&m, h, 2_500.0, &cfg),
                discounted_retained_clv(&m, h, 2_500.0, &cfg),
            )
        };
        for h in [
            History {
                x: 0.0,
                t_x: 0.0,
                t: 20.0,
            },
            History {
                x: 2.0,
                t_x: 30.43,
                t: 38.86,
            },
            History {
                x: 5.0,
                t_x: 10.0,
                t: 60.0,
            },
        ] {
            let (predicted, retained) = value(&h);
            assert!(
                (predicted - m.p_alive(&h) * retained).abs() < 1e-9 * retained,
                "{h:?}: the discounting weights every month alike"
            );
        }
        // Lapsed: a regular buyer silent for most of their history.
        let lapsed = History {
            x: 8.0,
            t_x: 12.0,
            t: 80.0,
        };
        let (predicted, retained) = value(&lapsed);
        assert!(m.p_alive(&lapsed) < 0.01, "{}", m.p_alive(&lapsed));
        assert!(retained > 100.0 * predicted, "{retained} vs {predicted}");
        assert!(
            retained > 10_000.0,
            "a living regular buyer is worth a lot: {retained}"
        );
        // Very active: 20 repeats, the last one today. P(alive) is 0.96 (BG/NBD's
        // chance of dropping out right after a purchase): nearly the same value.
        let active = History {
            x: 20.0,
            t_x: 80.0,
            t: 80.0,
        };
        let (predicted, retained) = value(&active);
        assert!(
            predicted <= retained && predicted > 0.95 * retained,
            "{predicted} vs {retained}"
        );
        // A one-off buyer is alive by the model's definition: the same value.
        let one_off = History {
            x: 0.0,
            t_x: 0.0,
            t: 80.0,
        };
        let (predicted, retained) = value(&one_off);
        assert_eq!(predicted, retained);
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
