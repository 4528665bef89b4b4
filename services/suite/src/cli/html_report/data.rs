//! The report's data: plain structs of what each section shows, made from the
//! gRPC answers. They are embedded in the page as JSON, so a reader of the file
//! (or a test) can check every chart against the answers.

use chrono::{DateTime, SecondsFormat};
use retention_proto::segmentation as spb;
use retention_proto::winback as wpb;
use serde::{Deserialize, Serialize};

/// The page's header: when and where the data was read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub read_at: String,
    pub report_time: Option<String>,
    pub endpoints: Vec<EndpointRow>,
    /// The scoring run behind the insights and the model, when there is one.
    pub scoring_run: Option<String>,
    pub model_fit_time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointRow {
    pub service: String,
    pub url: String,
    pub calls: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub level: String,
    pub customers: i64,
    pub margin_share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pyramid {
    pub value_tiers: Vec<Level>,
    pub management_tiers: Vec<Level>,
}

/// The Pareto curve of the portfolio report: the positive-margin share of the
/// most profitable customers at every 5 % of them (20 points however many
/// customers there are), from the origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pareto {
    /// Margin share of the top 20 % of customers, as the report computes it.
    pub pareto_share: f64,
    pub points: Vec<ParetoPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParetoPoint {
    pub customer_share: f64,
    pub margin_share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub lifecycle_stages: Vec<Level>,
    pub churn_risks: Vec<Level>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cohorts {
    pub cohorts: Vec<Cohort>,
    pub rates: Vec<Rate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cohort {
    pub start: String,
    pub size: i64,
    /// Share active 1, 2, ... periods after the first purchase.
    pub retained: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub start: String,
    pub churn_rate: f64,
    pub retention_rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub scoring_run: String,
    pub customers: i64,
    pub bg_nbd_log_likelihood: f64,
    pub gamma_gamma_log_likelihood: f64,
    pub estimates: Vec<Estimate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub model: String,
    pub name: String,
    pub value: f64,
    pub standard_error: f64,
    pub lower_95: f64,
    pub upper_95: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backtest {
    pub run: String,
    pub observation_end: Option<String>,
    pub holdout_end: Option<String>,
    pub customers: i64,
    pub predicted_repeat_occasions: f64,
    pub actual_repeat_occasions: i64,
    pub estimates: Vec<Estimate>,
    pub by_frequency: Vec<Bucket>,
    pub cumulative: Vec<CumulativePoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub calibration_repeat_occasions: i32,
    pub and_more: bool,
    pub customers: i64,
    pub mean_actual: f64,
    pub mean_predicted: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CumulativePoint {
    pub end_time: Option<String>,
    pub actual: f64,
    pub predicted: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    /// Where the survivors come from, in words.
    pub source: String,
    pub survivors: Vec<f64>,
    pub alpha: f64,
    pub beta: f64,
    pub log_likelihood: f64,
    pub periods: Vec<ProjectedPeriod>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectedPeriod {
    pub period: i32,
    pub survival: f64,
    pub retention_rate: f64,
    pub discounted_expected_residual_lifetime: f64,
}

/// One arm's win-back rate with its 95 % Wilson interval (computed here from
/// the counts: the API gives the interval of the uplift only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    pub targets: i64,
    pub won_back: i64,
    pub win_back_rate: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub recovered_margin: i64,
    pub repeat_rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignRow {
    pub name: String,
    pub display_name: String,
    pub strategy: String,
    pub state: String,
    pub treated: Arm,
    pub control: Arm,
    pub uplift: f64,
    pub uplift_ci_low: f64,
    pub uplift_ci_high: f64,
    pub spend: i64,
    pub incremental_margin: i64,
    pub roi: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyRow {
    pub strategy: String,
    pub campaigns: i64,
    pub treated: Arm,
    pub control: Arm,
    pub uplift: f64,
    pub uplift_ci_low: f64,
    pub uplift_ci_high: f64,
    pub spend: i64,
    pub incremental_margin: i64,
    pub roi: f64,
}

/// Everything the page shows; `None` or empty where the deployment has no data
/// yet (the page says which call fills it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub header: Header,
    pub pyramid: Pyramid,
    pub pareto: Pareto,
    pub lifecycle: Lifecycle,
    pub cohorts: Cohorts,
    pub model: Option<Model>,
    pub backtest: Option<Backtest>,
    pub projection: Option<Projection>,
    /// Why there is no projection, when there is none.
    pub projection_missing: Option<String>,
    pub campaigns: Vec<CampaignRow>,
    pub strategies: Vec<StrategyRow>,
}

pub fn time(t: &Option<prost_types::Timestamp>) -> Option<String> {
    t.as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

pub fn levels(rows: &[spb::LevelShare]) -> Vec<Level> {
    rows.iter()
        .map(|l| Level {
            level: l.level.clone(),
            customers: l.customers,
            margin_share: l.profit_share,
        })
        .collect()
}

/// The report's Pareto curve from the origin; only the origin without customers.
pub fn pareto_points(curve: &[spb::ParetoPoint]) -> Vec<ParetoPoint> {
    let origin = ParetoPoint {
        customer_share: 0.0,
        margin_share: 0.0,
    };
    std::iter::once(origin)
        .chain(curve.iter().map(|p| ParetoPoint {
            customer_share: p.customer_share,
            margin_share: p.profit_share,
        }))
        .collect()
}

fn estimates(model: &str, rows: &[spb::ParameterEstimate]) -> Vec<Estimate> {
    rows.iter()
        .map(|e| Estimate {
            model: model.into(),
            name: e.name.clone(),
            value: e.value,
            standard_error: e.standard_error,
            lower_95: e.lower_95,
            upper_95: e.upper_95,
        })
        .collect()
}

pub fn model(m: &spb::ModelParameters) -> Model {
    let mut all = estimates("BG/NBD", &m.bg_nbd_estimates);
    all.extend(estimates("Gamma-Gamma", &m.gamma_gamma_estimates));
    Model {
        scoring_run: m.scoring_run.clone(),
        customers: m.customers,
        bg_nbd_log_likelihood: m.bg_nbd_log_likelihood,
        gamma_gamma_log_likelihood: m.gamma_gamma_log_likelihood,
        estimates: all,
    }
}

/// A backtest run's report; None for a run without one (not a backtest, or
/// not finished).
pub fn backtest(run: &spb::ScoringRun) -> Option<Backtest> {
    let b = run.backtest.as_ref()?;
    let mut all = estimates("BG/NBD", &b.bg_nbd_estimates);
    all.extend(estimates("Gamma-Gamma", &b.gamma_gamma_estimates));
    Some(Backtest {
        run: run.name.clone(),
        observation_end: time(&run.observation_end),
        holdout_end: time(&b.holdout_end),
        customers: b.customers,
        predicted_repeat_occasions: b.predicted_repeat_occasions,
        actual_repeat_occasions: b.actual_repeat_occasions,
        estimates: all,
        by_frequency: b
            .by_frequency
            .iter()
            .map(|f| Bucket {
                calibration_repeat_occasions: f.calibration_repeat_occasions,
                and_more: f.and_more,
                customers: f.customers,
                mean_actual: f.mean_actual,
                mean_predicted: f.mean_predicted,
            })
            .collect(),
        cumulative: b
            .cumulative
            .iter()
            .map(|p| CumulativePoint {
                end_time: time(&p.end_time),
                actual: p.actual,
                predicted: p.predicted,
            })
            .collect(),
    })
}

/// The survivors to project from the portfolio's cohorts: the oldest cohort
/// with two periods after its first purchase. The sBG model wants survivors
/// that only fall, while "still buying" can rise again after a quiet period,
/// so each period keeps the lowest share seen so far.
pub fn cohort_survivors(cohorts: &[Cohort]) -> Option<(String, Vec<f64>)> {
    let c = cohorts
        .iter()
        .find(|c| c.size > 0 && c.retained.len() >= 2)?;
    let size = c.size as f64;
    let mut low = 1.0f64;
    let mut survivors = vec![size];
    for r in &c.retained {
        low = low.min(*r);
        survivors.push((size * low).round());
    }
    Some((
        format!(
            "the cohort of {} ({} customers); survivors are its lowest share still buying so far",
            c.start.get(..10).unwrap_or(&c.start),
            c.size
        ),
        survivors,
    ))
}

pub fn projection(source: String, survivors: Vec<f64>, p: &spb::RetentionProjection) -> Projection {
    Projection {
        source,
        survivors,
        alpha: p.alpha,
        beta: p.beta,
        log_likelihood: p.log_likelihood,
        periods: p
            .projection
            .iter()
            .map(|r| ProjectedPeriod {
                period: r.period,
                survival: r.survival,
                retention_rate: r.retention_rate,
                discounted_expected_residual_lifetime: r.discounted_expected_residual_lifetime,
            })
            .collect(),
    }
}

/// The 95 % Wilson score interval of `won` successes in `n` trials: unlike the
/// normal approximation it stays within [0, 1] for small arms and rates near 0.
pub fn wilson(won: i64, n: i64) -> (f64, f64) {
    if n <= 0 {
        return (0.0, 0.0);
    }
    let (n, p, z) = (n as f64, won as f64 / n as f64, 1.96f64);
    let centre = p + z * z / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    let denom = 1.0 + z * z / n;
    (
        ((centre - spread) / denom).max(0.0),
        ((centre + spread) / denom).min(1.0),
    )
}

fn minor(m: &Option<retention_proto::common::Money>) -> i64 {
    m.as_ref().map_or(0, |m| m.minor_units)
}

pub fn arm(a: &Option<wpb::ArmResults>) -> Arm {
    let a = a.clone().unwrap_or_default();
    let (ci_low, ci_high) = wilson(a.won_back, a.targets);
    Arm {
        targets: a.targets,
        won_back: a.won_back,
        win_back_rate: a.win_back_rate,
        ci_low,
        ci_high,
        recovered_margin: minor(&a.recovered_margin),
        repeat_rate: a.repeat_rate,
    }
}

/// "STRATEGY_PRICE_PROMOTION" -> "PRICE_PROMOTION".
pub fn strategy_name(s: i32) -> String {
    let full = wpb::Strategy::try_from(s).unwrap_or_default().as_str_name();
    full.strip_prefix("STRATEGY_").unwrap_or(full).to_string()
}

pub fn campaign(c: &wpb::Campaign, r: &wpb::CampaignResults) -> CampaignRow {
    let state = wpb::CampaignState::try_from(c.state)
        .unwrap_or_default()
        .as_str_name();
    CampaignRow {
        name: c.name.clone(),
        display_name: c.display_name.clone(),
        strategy: strategy_name(r.strategy),
        state: state
            .strip_prefix("CAMPAIGN_STATE_")
            .unwrap_or(state)
            .into(),
        treated: arm(&r.treated),
        control: arm(&r.control),
        uplift: r.uplift,
        uplift_ci_low: r.uplift_ci_low,
        uplift_ci_high: r.uplift_ci_high,
        spend: minor(&r.spend),
        incremental_margin: minor(&r.incremental_margin),
        roi: r.roi,
    }
}

pub fn strategy(s: &wpb::StrategyOutcome) -> StrategyRow {
    StrategyRow {
        strategy: strategy_name(s.strategy),
        campaigns: s.campaigns,
        treated: arm(&s.treated),
        control: arm(&s.control),
        uplift: s.uplift,
        uplift_ci_low: s.uplift_ci_low,
        uplift_ci_high: s.uplift_ci_high,
        spend: minor(&s.spend),
        incremental_margin: minor(&s.incremental_margin),
        roi: s.roi,
    }
}
