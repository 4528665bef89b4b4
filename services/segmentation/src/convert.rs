//! Domain <-> proto mapping of segmentation resources, shared by the gRPC layer
//! and the published events; it knows the domain and the protos only.

use retention_proto::common::Money;
use retention_proto::segmentation as pb;

use crate::domain::backtest::BacktestReport;
use crate::domain::calibration::Calibration;
use crate::domain::classify::*;
use crate::domain::models::bgnbd::{self, BgNbd};
use crate::domain::models::gamma_gamma::{self, GammaGamma};
use crate::domain::models::sbg::SbgFit;
use crate::domain::models::uncertainty::ParamEstimate;
use crate::domain::portfolio::{LevelShare, PortfolioReport};
use crate::domain::scoring::Insight;
use crate::domain::segments::{RunState, ScoringRun, Segment};
use crate::domain::value::ChurnRisk;

pub use retention_errors::time::{instant, timestamp as ts};

pub fn value_tier(t: ValueTier) -> pb::ValueTier {
    match t {
        ValueTier::Platinum => pb::ValueTier::Platinum,
        ValueTier::Gold => pb::ValueTier::Gold,
        ValueTier::Iron => pb::ValueTier::Iron,
        ValueTier::Lead => pb::ValueTier::Lead,
    }
}

pub fn management_tier(t: ManagementTier) -> pb::ManagementTier {
    match t {
        ManagementTier::Key => pb::ManagementTier::Key,
        ManagementTier::Suitable => pb::ManagementTier::Suitable,
        ManagementTier::Ordinary => pb::ManagementTier::Ordinary,
        ManagementTier::OneOff => pb::ManagementTier::OneOff,
    }
}

pub fn lifecycle(s: LifecycleStage) -> pb::LifecycleStage {
    match s {
        LifecycleStage::Exploration => pb::LifecycleStage::Exploration,
        LifecycleStage::Growth => pb::LifecycleStage::Growth,
        LifecycleStage::Stability => pb::LifecycleStage::Stability,
        LifecycleStage::Decline => pb::LifecycleStage::Decline,
        LifecycleStage::Terminated => pb::LifecycleStage::Terminated,
    }
}

pub fn loyalty(s: LoyaltyStage) -> pb::LoyaltyStage {
    match s {
        LoyaltyStage::Prospect => pb::LoyaltyStage::Prospect,
        LoyaltyStage::Customer => pb::LoyaltyStage::Customer,
        LoyaltyStage::Client => pb::LoyaltyStage::Client,
        LoyaltyStage::Advocate => pb::LoyaltyStage::Advocate,
        LoyaltyStage::Partner => pb::LoyaltyStage::Partner,
    }
}

pub fn quadrant(q: AccountQuadrant) -> pb::AccountQuadrant {
    match q {
        AccountQuadrant::Key => pb::AccountQuadrant::Key,
        AccountQuadrant::KeyDevelopment => pb::AccountQuadrant::KeyDevelopment,
        AccountQuadrant::Maintenance => pb::AccountQuadrant::Maintenance,
        AccountQuadrant::Opportunistic => pb::AccountQuadrant::Opportunistic,
    }
}

pub fn churn_risk(r: ChurnRisk) -> pb::ChurnRisk {
    match r {
        ChurnRisk::Low => pb::ChurnRisk::Low,
        ChurnRisk::Medium => pb::ChurnRisk::Medium,
        ChurnRisk::High => pb::ChurnRisk::High,
        ChurnRisk::Critical => pb::ChurnRisk::Critical,
    }
}

fn money(minor_units: i64, currency: &str) -> Money {
    Money {
        currency_code: currency.to_string(),
        minor_units,
    }
}

pub fn insight(i: &Insight) -> pb::CustomerInsight {
    pb::CustomerInsight {
        name: format!("insights/{}", i.customer_id),
        customer: format!("customers/{}", i.customer_id),
        rfm: i.rfm.map(|r| pb::RfmScores {
            recency: r.recency.into(),
            frequency: r.frequency.into(),
            monetary: r.monetary.into(),
            segment: r.segment.as_str().into(),
        }),
        value_tier: value_tier(i.value_tier).into(),
        management_tier: management_tier(i.management_tier).into(),
        lifecycle_stage: lifecycle(i.lifecycle_stage).into(),
        loyalty_stage: loyalty(i.loyalty_stage).into(),
        order_model: Some(pb::CustomerOrderModel {
            order_type: i.order_model.order_type.into(),
            loyalty_size_rank: i.order_model.loyalty_size_rank.into(),
            loyalty_credit_rank: i.order_model.loyalty_credit_rank.into(),
            size_tier: i.order_model.size_tier.as_str().into(),
            wallet_stability: i.order_model.wallet_stability.as_str().into(),
        }),
        account_quadrant: quadrant(i.account_quadrant).into(),
        p_alive: i.p_alive,
        expected_purchases: i.expected_purchases,
        churn_probability: i.churn_probability,
        churn_risk: churn_risk(i.churn_risk).into(),
        predicted_clv: Some(money(i.predicted_clv_minor, &i.currency)),
        retained_clv: i.retained_clv().map(|v| money(v, &i.currency)),
        historical_margin: Some(money(i.historical_margin_minor, &i.currency)),
        explanations: i
            .explanations
            .iter()
            .map(|e| pb::Explanation {
                field: e.field.clone(),
                reason: e.reason.clone(),
                inputs: e.inputs.clone().into_iter().collect(),
            })
            .collect(),
        score_time: Some(ts(i.score_time)),
        scoring_run: format!("scoringRuns/{}", i.scoring_run),
    }
}

pub fn segment(s: &Segment, member_count: u64) -> pb::Segment {
    pb::Segment {
        name: s.name(),
        display_name: s.display_name.clone(),
        description: s.description.clone(),
        filter: s.filter.clone(),
        member_count: member_count as i64,
        create_time: Some(ts(s.create_time)),
        update_time: Some(ts(s.update_time)),
        etag: s.etag(),
    }
}

pub fn run(r: &ScoringRun) -> pb::ScoringRun {
    pb::ScoringRun {
        name: r.name(),
        state: match r.state {
            RunState::Pending => pb::ScoringRunState::Pending,
            RunState::Running => pb::ScoringRunState::Running,
            RunState::Succeeded => pb::ScoringRunState::Succeeded,
            RunState::Failed => pb::ScoringRunState::Failed,
        }
        .into(),
        percent_complete: r.percent_complete,
        stage: r.stage.clone(),
        customers_scored: r.customers_scored,
        create_time: Some(ts(r.create_time)),
        end_time: r.end_time.map(ts),
        error: r.error.clone(),
        observation_end: r.observation_end.map(ts),
        backtest: r.backtest.as_ref().map(backtest),
    }
}

fn backtest(b: &BacktestReport) -> pb::BacktestReport {
    pb::BacktestReport {
        bg_nbd: Some(bg_nbd_params(&b.bg_nbd)),
        bg_nbd_log_likelihood: b.bg_nbd_log_likelihood,
        bg_nbd_estimates: bg_nbd_estimates(&b.bg_nbd, b.bg_nbd_standard_errors.as_deref()),
        gamma_gamma: b.gamma_gamma.as_ref().map(gamma_gamma_params),
        gamma_gamma_log_likelihood: b.gamma_gamma_log_likelihood,
        gamma_gamma_estimates: b
            .gamma_gamma
            .map(|g| gamma_gamma_estimates(&g, b.gamma_gamma_standard_errors.as_deref()))
            .unwrap_or_default(),
        customers: b.customers as i64,
        fitted_customers: b.fitted_customers as i64,
        holdout_end: Some(ts(b.holdout_end)),
        holdout_days: b.holdout_days,
        predicted_repeat_occasions: b.predicted_total,
        actual_repeat_occasions: b.actual_total as i64,
        mean_absolute_error: b.mean_absolute_error,
        root_mean_squared_error: b.root_mean_squared_error,
        by_frequency: b
            .by_frequency
            .iter()
            .map(|f| pb::FrequencyBucket {
                calibration_repeat_occasions: f.calibration_repeats as i32,
                and_more: f.and_more,
                customers: f.customers as i64,
                mean_actual: f.mean_actual,
                mean_predicted: f.mean_predicted,
            })
            .collect(),
        cumulative: b
            .cumulative
            .iter()
            .map(|p| pb::CumulativePoint {
                end_time: Some(ts(p.end)),
                actual: p.actual,
                predicted: p.predicted,
            })
            .collect(),
    }
}

pub fn parameters(c: &Calibration) -> pb::ModelParameters {
    pb::ModelParameters {
        bg_nbd: Some(bg_nbd_params(&c.bg_nbd)),
        bg_nbd_log_likelihood: c.bg_nbd_log_likelihood,
        gamma_gamma: Some(gamma_gamma_params(&c.gamma_gamma)),
        gamma_gamma_log_likelihood: c.gamma_gamma_log_likelihood,
        customers: c.customers as i64,
        fit_millis: c.fit_millis as i64,
        fit_time: Some(ts(c.fit_time)),
        scoring_run: format!("scoringRuns/{}", c.scoring_run),
        bg_nbd_estimates: bg_nbd_estimates(&c.bg_nbd, c.bg_nbd_standard_errors.as_deref()),
        gamma_gamma_estimates: gamma_gamma_estimates(
            &c.gamma_gamma,
            c.gamma_gamma_standard_errors.as_deref(),
        ),
    }
}

fn bg_nbd_params(m: &BgNbd) -> pb::BgNbdParameters {
    pb::BgNbdParameters {
        r: m.r,
        alpha: m.alpha,
        a: m.a,
        b: m.b,
    }
}

fn gamma_gamma_params(g: &GammaGamma) -> pb::GammaGammaParameters {
    pb::GammaGammaParameters {
        p: g.p,
        q: g.q,
        gamma: g.gamma,
    }
}

fn bg_nbd_estimates(m: &BgNbd, errors: Option<&[f64]>) -> Vec<pb::ParameterEstimate> {
    estimates(&bgnbd::PARAM_NAMES, &[m.r, m.alpha, m.a, m.b], errors)
}

fn gamma_gamma_estimates(g: &GammaGamma, errors: Option<&[f64]>) -> Vec<pb::ParameterEstimate> {
    estimates(&gamma_gamma::PARAM_NAMES, &[g.p, g.q, g.gamma], errors)
}

fn estimates(
    names: &[&'static str],
    values: &[f64],
    errors: Option<&[f64]>,
) -> Vec<pb::ParameterEstimate> {
    let Some(errors) = errors.filter(|e| e.len() == values.len()) else {
        return Vec::new();
    };
    names
        .iter()
        .zip(values)
        .zip(errors)
        .map(|((name, value), se)| {
            let e = ParamEstimate::new(name, *value, *se);
            pb::ParameterEstimate {
                name: e.name.to_string(),
                value: e.value,
                standard_error: e.standard_error,
                lower_95: e.lower_95,
                upper_95: e.upper_95,
            }
        })
        .collect()
}

fn shares(rows: &[LevelShare]) -> Vec<pb::LevelShare> {
    rows.iter()
        .map(|l| pb::LevelShare {
            level: l.level.clone(),
            customers: l.customers as i64,
            profit_share: l.profit_share,
        })
        .collect()
}

pub fn report(r: &PortfolioReport) -> pb::PortfolioReport {
    pb::PortfolioReport {
        value_tiers: shares(&r.value_tiers),
        management_tiers: shares(&r.management_tiers),
        lifecycle_stages: shares(&r.lifecycle_stages),
        churn_risks: shares(&r.churn_risks),
        pareto_share: r.pareto_share,
        pareto_curve: r
            .pareto_curve
            .iter()
            .map(|&(customer_share, profit_share)| pb::ParetoPoint {
                customer_share,
                profit_share,
            })
            .collect(),
        rates: r
            .rates
            .iter()
            .map(|p| pb::PeriodRate {
                period_start: Some(ts(p.period_start)),
                churn_rate: p.churn_rate,
                retention_rate: p.retention_rate,
            })
            .collect(),
        cohorts: r
            .cohorts
            .iter()
            .map(|c| pb::CohortRow {
                cohort_start: Some(ts(c.cohort_start)),
                size: c.size as i64,
                retained: c.retained.clone(),
            })
            .collect(),
        report_time: Some(ts(r.report_time)),
    }
}

/// An sBG fit's projection: survival, retention rate and DERL per period, and
/// each cohort's expected survivors.
pub fn retention(
    fit: &SbgFit,
    cohorts: &[Vec<f64>],
    periods: u32,
    discount: f64,
) -> pb::RetentionProjection {
    let m = fit.params;
    pb::RetentionProjection {
        alpha: m.alpha,
        beta: m.beta,
        log_likelihood: fit.log_likelihood,
        projection: m
            .project(periods)
            .into_iter()
            .zip(1..)
            .map(|((survival, retention_rate), t)| pb::RetentionPeriod {
                period: t as i32,
                survival,
                retention_rate,
                discounted_expected_residual_lifetime: m.derl(discount, t).unwrap_or(0.0),
            })
            .collect(),
        expected: cohorts
            .iter()
            .map(|c| pb::CohortSurvivors {
                survivors: m.expected_survivors(c[0], periods),
            })
            .collect(),
    }
}
