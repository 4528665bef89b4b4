//! `retention-cli retention`: contractual retention (the shifted-beta-geometric
//! model, ProjectRetention) of a cohort's survivors per period.

use retention_proto::segmentation as spb;

use super::client::Clients;
use super::show::{Out, pct, table};

/// Fits the cohorts and projects `periods` periods at `discount_rate`.
pub async fn project(
    c: &Clients,
    cohorts: Vec<Vec<f64>>,
    periods: i32,
    discount_rate: f64,
) -> anyhow::Result<spb::RetentionProjection> {
    Ok(c.segmentation
        .clone()
        .project_retention(
            c.req(spb::ProjectRetentionRequest {
                cohorts: cohorts
                    .into_iter()
                    .map(|survivors| spb::CohortSurvivors { survivors })
                    .collect(),
                periods,
                discount_rate,
            }),
        )
        .await?
        .into_inner())
}

/// The fit and the projection as tables.
pub fn print(p: &spb::RetentionProjection, cohorts: &[Vec<f64>], out: Out<'_>) {
    out(&format!(
        "Contractual retention (shifted-beta-geometric): alpha {:.3}, beta {:.3}, \
         log-likelihood {:.2}, {} cohort(s)\n",
        p.alpha,
        p.beta,
        p.log_likelihood,
        cohorts.len()
    ));
    let first = p.expected.first().map(|c| c.survivors.as_slice());
    let observed = cohorts.first().map(Vec::as_slice).unwrap_or_default();
    let rows: Vec<Vec<String>> = p
        .projection
        .iter()
        .map(|r| {
            let t = r.period as usize;
            vec![
                r.period.to_string(),
                pct(r.survival),
                pct(r.retention_rate),
                format!("{:.2}", r.discounted_expected_residual_lifetime),
                first
                    .and_then(|s| s.get(t))
                    .map(|v| format!("{v:.0}"))
                    .unwrap_or_default(),
                observed
                    .get(t)
                    .map(|v| format!("{v:.0}"))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    out(&table(
        &[
            "period",
            "survival",
            "retention rate",
            "DERL (periods)",
            "expected, 1st cohort",
            "observed",
        ],
        &rows,
    ));
}
