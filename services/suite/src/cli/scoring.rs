//! Scoring runs, backtests and the fitted models, as the CLI and the demo show
//! them: start a run and follow it, print a backtest's report and the model
//! parameters with their intervals.

use std::time::Duration;

use chrono::{DateTime, Utc};
use retention_proto::segmentation as spb;

use super::client::Clients;
use super::show::{Out, Progress, table};
use super::synth::ts;

/// Starts a full scoring run and follows it to the end with a progress bar.
pub async fn score(c: &Clients, quiet: bool) -> anyhow::Result<spb::ScoringRun> {
    follow(c, None, quiet).await
}

/// Starts a backtest as of `observation_end` and follows it to the end.
pub async fn backtest(
    c: &Clients,
    observation_end: DateTime<Utc>,
    quiet: bool,
) -> anyhow::Result<spb::ScoringRun> {
    follow(c, Some(observation_end), quiet).await
}

async fn follow(
    c: &Clients,
    observation_end: Option<DateTime<Utc>>,
    quiet: bool,
) -> anyhow::Result<spb::ScoringRun> {
    let mut run = c
        .segmentation
        .clone()
        .run_scoring(c.req(spb::RunScoringRequest {
            request_id: String::new(),
            observation_end: observation_end.and_then(ts),
        }))
        .await?
        .into_inner();
    let label = if observation_end.is_some() {
        "backtest"
    } else {
        "scoring run"
    };
    let bar = Progress::new(label, 100, quiet);
    loop {
        bar.set(run.percent_complete.max(0) as u64);
        if run.state == spb::ScoringRunState::Succeeded as i32 {
            bar.finish();
            return Ok(run);
        }
        if run.state == spb::ScoringRunState::Failed as i32 {
            anyhow::bail!("scoring run {} failed: {}", run.name, run.error);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        run = c
            .segmentation
            .clone()
            .get_scoring_run(c.req(spb::GetScoringRunRequest {
                name: run.name.clone(),
            }))
            .await?
            .into_inner();
    }
}

fn estimate_rows(model: &str, estimates: &[spb::ParameterEstimate]) -> Vec<Vec<String>> {
    estimates
        .iter()
        .map(|e| {
            vec![
                model.to_string(),
                e.name.clone(),
                format!("{:.4}", e.value),
                format!("{:.4}", e.standard_error),
                format!("{:.4} .. {:.4}", e.lower_95, e.upper_95),
            ]
        })
        .collect()
}

const ESTIMATE_HEADERS: [&str; 5] = ["model", "parameter", "value", "std. error", "95 % interval"];

/// A backtest's report: the fit on the calibration period, predicted against
/// actual repeat purchase occasions in the holdout, by calibration frequency,
/// and cumulatively every four weeks.
pub fn print_backtest(run: &spb::ScoringRun, out: Out<'_>) {
    let Some(b) = &run.backtest else {
        out(&format!("{}: no backtest report\n", run.name));
        return;
    };
    let day = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .and_then(|t| DateTime::from_timestamp(t.seconds, 0))
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    };
    out(&format!(
        "Backtest {}: calibration to {}, holdout to {} ({:.0} days), {} customers ({} fitted)\n",
        run.name,
        day(&run.observation_end),
        day(&b.holdout_end),
        b.holdout_days,
        b.customers,
        b.fitted_customers
    ));
    let mut rows = estimate_rows("BG/NBD", &b.bg_nbd_estimates);
    rows.extend(estimate_rows("Gamma-Gamma", &b.gamma_gamma_estimates));
    out(&table(&ESTIMATE_HEADERS, &rows));
    out(&format!(
        "Holdout repeat purchase occasions: predicted {:.1}, actual {}; per customer MAE {:.3}, RMSE {:.3}\n",
        b.predicted_repeat_occasions,
        b.actual_repeat_occasions,
        b.mean_absolute_error,
        b.root_mean_squared_error
    ));
    let rows: Vec<Vec<String>> = b
        .by_frequency
        .iter()
        .map(|f| {
            vec![
                format!(
                    "{}{}",
                    f.calibration_repeat_occasions,
                    if f.and_more { "+" } else { "" }
                ),
                f.customers.to_string(),
                format!("{:.3}", f.mean_actual),
                format!("{:.3}", f.mean_predicted),
            ]
        })
        .collect();
    out(&table(
        &[
            "calibration repeats",
            "customers",
            "mean actual",
            "mean predicted",
        ],
        &rows,
    ));
    let points = b.cumulative.len();
    let rows: Vec<Vec<String>> = b
        .cumulative
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 == 3 || *i + 1 == points)
        .map(|(_, p)| {
            vec![
                day(&p.end_time),
                format!("{:.0}", p.actual),
                format!("{:.1}", p.predicted),
            ]
        })
        .collect();
    out(&table(
        &["before", "cumulative actual", "cumulative predicted"],
        &rows,
    ));
}

/// The fitted BG/NBD and Gamma-Gamma parameters with their standard errors and
/// 95 % intervals (GetModelParameters).
pub async fn model(c: &Clients, out: Out<'_>) -> anyhow::Result<spb::ModelParameters> {
    let m = c
        .segmentation
        .clone()
        .get_model_parameters(c.req(spb::GetModelParametersRequest {}))
        .await?
        .into_inner();
    let mut rows = estimate_rows("BG/NBD", &m.bg_nbd_estimates);
    rows.extend(estimate_rows("Gamma-Gamma", &m.gamma_gamma_estimates));
    out(&format!(
        "Model parameters of {} ({} customers; log-likelihood BG/NBD {:.2}, Gamma-Gamma {:.2}):\n",
        m.scoring_run, m.customers, m.bg_nbd_log_likelihood, m.gamma_gamma_log_likelihood
    ));
    if rows.is_empty() {
        out("no standard errors: the fit's log-likelihood is not curved at its optimum\n");
    } else {
        out(&table(&ESTIMATE_HEADERS, &rows));
    }
    Ok(m)
}
