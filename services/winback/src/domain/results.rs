//! What a campaign achieved, measured against its holdout: win-back rates of the
//! treated and control groups, the uplift with a 95% confidence interval, and the
//! money (DOMAIN §9: strategies are compared on measured outcomes).

use super::campaign::Strategy;
use super::records::Campaign;

/// Counts and money of one arm.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ArmOutcome {
    pub targets: u64,
    pub won_back: u64,
    /// Margin of the purchases that won customers back (minor units).
    pub recovered_margin_minor: i64,
}

impl ArmOutcome {
    pub fn rate(&self) -> f64 {
        if self.targets == 0 {
            0.0
        } else {
            self.won_back as f64 / self.targets as f64
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Uplift {
    /// Treated rate minus control rate.
    pub estimate: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// Difference of two proportions with the Wald interval (normal approximation,
/// unpooled variance). None without both arms: no control, no proof.
pub fn uplift(treated: &ArmOutcome, control: &ArmOutcome) -> Option<Uplift> {
    if treated.targets == 0 || control.targets == 0 {
        return None;
    }
    let (pt, pc) = (treated.rate(), control.rate());
    let se = (pt * (1.0 - pt) / treated.targets as f64 + pc * (1.0 - pc) / control.targets as f64)
        .sqrt();
    let estimate = pt - pc;
    Some(Uplift {
        estimate,
        ci_low: estimate - Z95 * se,
        ci_high: estimate + Z95 * se,
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Economics {
    /// Recovered margin of the treated beyond what the control rate predicts.
    pub incremental_margin_minor: f64,
    pub spend_minor: i64,
    /// (incremental margin − spend) / spend; None when nothing was spent.
    pub roi: Option<f64>,
}

pub fn economics(treated: &ArmOutcome, control: &ArmOutcome, spend_minor: i64) -> Economics {
    let incremental = incremental(
        treated.recovered_margin_minor,
        treated.targets,
        control.recovered_margin_minor,
        control.targets,
    );
    Economics {
        incremental_margin_minor: incremental,
        spend_minor,
        roi: (spend_minor > 0).then(|| (incremental - spend_minor as f64) / spend_minor as f64),
    }
}

/// What the treated arm recovered (margin, or value on the campaign's basis)
/// beyond what the control group's amount per target predicts for as many
/// targets: `treated − control / control targets × treated targets` (no control
/// group: the whole treated amount).
pub fn incremental(treated: i64, treated_targets: u64, control: i64, control_targets: u64) -> f64 {
    let baseline = if control_targets == 0 {
        0.0
    } else {
        control as f64 / control_targets as f64 * treated_targets as f64
    };
    treated as f64 - baseline
}

/// What one arm of a campaign (or of several, pooled) achieved, as reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArmResults {
    pub targets: i64,
    pub contacted: i64,
    pub won_back: i64,
    pub win_back_rate: f64,
    pub recovered_margin_minor: i64,
    /// The won-back targets' value on the campaign's basis.
    pub recovered_value_minor: i64,
    pub mean_days_to_win_back: f64,
    pub repeat_rate: f64,
}

impl ArmResults {
    /// The counts and money the statistics read.
    pub fn outcome(&self) -> ArmOutcome {
        ArmOutcome {
            targets: self.targets.max(0) as u64,
            won_back: self.won_back.max(0) as u64,
            recovered_margin_minor: self.recovered_margin_minor,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CampaignResults {
    pub campaign: Campaign,
    pub treated: ArmResults,
    pub control: ArmResults,
    /// None without both arms: no control group, no proof.
    pub uplift: Option<Uplift>,
    pub spend_minor: i64,
    pub incremental_margin_minor: i64,
    pub roi: Option<f64>,
    /// The treated arm's recovered value beyond the control rate, on the
    /// campaign's value basis.
    pub incremental_value_minor: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StrategyOutcome {
    pub strategy: Strategy,
    pub campaigns: i64,
    pub currency: String,
    pub treated: ArmResults,
    pub control: ArmResults,
    pub uplift: Option<Uplift>,
    pub spend_minor: i64,
    pub incremental_margin_minor: i64,
    pub roi: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uplift_and_interval_on_a_hand_computed_fixture() {
        // Treated 80 / 400 = 0.20, control 10 / 100 = 0.10.
        // se = sqrt(0.2·0.8/400 + 0.1·0.9/100) = sqrt(0.0013) = 0.036055513
        // 95% CI = 0.1 ± 1.959964 · 0.036055513 = [0.029332, 0.170668]
        let t = ArmOutcome {
            targets: 400,
            won_back: 80,
            recovered_margin_minor: 800_000,
        };
        let c = ArmOutcome {
            targets: 100,
            won_back: 10,
            recovered_margin_minor: 50_000,
        };
        let u = uplift(&t, &c).unwrap();
        assert!((u.estimate - 0.1).abs() < 1e-12);
        assert!((u.ci_low - 0.029_332).abs() < 1e-6, "{u:?}");
        assert!((u.ci_high - 0.170_668).abs() < 1e-6, "{u:?}");
        // Baseline: 50,000 / 100 · 400 = 200,000; incremental 600,000.
        let e = economics(&t, &c, 200_000);
        assert_eq!(e.incremental_margin_minor, 600_000.0);
        assert_eq!(e.roi, Some(2.0));
        // The same baseline for recovered value: 3,000,000 beyond 500,000 / 100 · 400.
        assert_eq!(incremental(5_000_000, 400, 500_000, 100), 3_000_000.0);
        assert_eq!(incremental(7, 10, 0, 0), 7.0, "no control: all of it");
    }

    #[test]
    fn no_control_no_uplift_and_no_spend_no_roi() {
        let t = ArmOutcome {
            targets: 10,
            won_back: 3,
            recovered_margin_minor: 100,
        };
        assert_eq!(uplift(&t, &ArmOutcome::default()), None);
        assert_eq!(economics(&t, &ArmOutcome::default(), 0).roi, None);
        assert_eq!(ArmOutcome::default().rate(), 0.0);
        let same = uplift(&t, &t).unwrap();
        assert_eq!(same.estimate, 0.0);
        assert!(
            same.ci_low < 0.0 && same.ci_high > 0.0,
            "no difference: the interval spans 0"
        );
    }
}
