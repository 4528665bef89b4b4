//! `retention-cli report --html FILE`: the portfolio, the models and the campaigns
//! as one self-contained HTML page. This module gathers what the page shows from
//! the services' gRPC answers into plain structs; `charts` draws them (plotters,
//! SVG) and `page` assembles the file, embedding each section's struct as JSON so
//! a reader (or a test) can check every chart against the answers it came from.
//!
//! Only aggregated answers are read (the portfolio report, model parameters, a
//! backtest, campaign results), so the page is the same size for ten customers or
//! ten million.

mod charts;
mod data;
mod html;
mod page;
mod results;
#[cfg(test)]
mod tests;

use chrono::{SecondsFormat, Utc};
use retention_proto::segmentation as spb;
use retention_proto::winback as wpb;
use tonic::Code;

use super::client::{Clients, Endpoints};

pub use data::*;
pub use html::escape;
pub use page::render;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{call} failed: {status}")]
    Rpc {
        call: &'static str,
        #[source]
        status: tonic::Status,
    },
    #[error("cannot draw the {chart} chart: {message}")]
    Chart { chart: String, message: String },
    #[error("cannot encode the {section} data: {source}")]
    Json {
        section: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0} has no backtest report: not a backtest, or not finished")]
    NotABacktest(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, ReportError>;

fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> ReportError {
    move |status| ReportError::Rpc { call, status }
}

/// What the report reads besides the defaults.
#[derive(Debug, Clone, Default)]
pub struct HtmlOptions {
    /// Shown in the header: where the data was read.
    pub endpoints: Endpoints,
    /// A backtest run ("scoringRuns/{id}") to show; the API lists no runs, so
    /// the caller names it (the demo passes the one it ran).
    pub backtest: Option<String>,
    /// A cohort's size and survivors per period to project; without them the
    /// oldest cohort of the portfolio report with two periods is projected.
    pub survivors: Option<Vec<f64>>,
}

/// Every campaign, all pages, in the order the service lists them.
async fn all_campaigns(c: &Clients) -> Result<Vec<wpb::Campaign>> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .winback
            .clone()
            .list_campaigns(c.req(wpb::ListCampaignsRequest {
                page_size: 100,
                page_token: token,
                filter: String::new(),
            }))
            .await
            .map_err(rpc("ListCampaigns"))?
            .into_inner();
        out.extend(r.campaigns);
        if r.next_page_token.is_empty() {
            return Ok(out);
        }
        token = r.next_page_token;
    }
}

/// A deployment without the data an answer needs says so with one of these
/// codes; anything else is a failure of the report.
fn missing(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::NotFound | Code::FailedPrecondition | Code::InvalidArgument
    )
}

/// Reads everything the page shows.
pub async fn gather(c: &Clients, o: &HtmlOptions) -> Result<Report> {
    let read_at = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let portfolio = c
        .segmentation
        .clone()
        .get_portfolio_report(c.req(spb::GetPortfolioReportRequest::default()))
        .await
        .map_err(rpc("GetPortfolioReport"))?
        .into_inner();
    let model_parameters = match c
        .segmentation
        .clone()
        .get_model_parameters(c.req(spb::GetModelParametersRequest {}))
        .await
    {
        Ok(m) => Some(m.into_inner()),
        Err(s) if missing(&s) => None,
        Err(status) => {
            return Err(ReportError::Rpc {
                call: "GetModelParameters",
                status,
            });
        }
    };
    let backtest_run = match &o.backtest {
        Some(name) => Some(
            c.segmentation
                .clone()
                .get_scoring_run(c.req(spb::GetScoringRunRequest { name: name.clone() }))
                .await
                .map_err(rpc("GetScoringRun"))?
                .into_inner(),
        ),
        None => None,
    };
    // A run named for the page that has no report is a mistake to point out,
    // not "no backtest yet".
    let backtest = match &backtest_run {
        Some(run) => {
            Some(backtest(run).ok_or_else(|| ReportError::NotABacktest(run.name.clone()))?)
        }
        None => None,
    };
    let cohorts = Cohorts {
        cohorts: portfolio
            .cohorts
            .iter()
            .map(|r| Cohort {
                start: time(&r.cohort_start).unwrap_or_default(),
                size: r.size,
                retained: r.retained.clone(),
            })
            .collect(),
        rates: portfolio
            .rates
            .iter()
            .map(|r| Rate {
                start: time(&r.period_start).unwrap_or_default(),
                churn_rate: r.churn_rate,
                retention_rate: r.retention_rate,
            })
            .collect(),
    };
    let to_project = match &o.survivors {
        Some(s) => Some(("the cohort given with --survivors".to_string(), s.clone())),
        None => cohort_survivors(&cohorts.cohorts),
    };
    let (projection, projection_missing) = match to_project {
        None => (
            None,
            Some(
                "No cohort with two periods after its first purchase in the portfolio report's \
                 window. Record purchases over at least three periods, or give a cohort: \
                 retention-cli report --html FILE --survivors 1000,631,468 (ProjectRetention)."
                    .to_string(),
            ),
        ),
        Some((source, survivors)) => {
            let answer = c
                .segmentation
                .clone()
                .project_retention(c.req(spb::ProjectRetentionRequest {
                    cohorts: vec![spb::CohortSurvivors {
                        survivors: survivors.clone(),
                    }],
                    periods: 12,
                    discount_rate: 0.10,
                }))
                .await;
            match answer {
                Ok(p) => (Some(projection(source, survivors, &p.into_inner())), None),
                Err(s) if missing(&s) => (
                    None,
                    Some(format!(
                        "ProjectRetention could not fit {source}: {}",
                        s.message()
                    )),
                ),
                Err(status) => {
                    return Err(ReportError::Rpc {
                        call: "ProjectRetention",
                        status,
                    });
                }
            }
        }
    };
    let mut campaigns = Vec::new();
    for camp in all_campaigns(c).await? {
        let r = c
            .winback
            .clone()
            .get_campaign_results(c.req(wpb::GetCampaignResultsRequest {
                name: camp.name.clone(),
            }))
            .await
            .map_err(rpc("GetCampaignResults"))?
            .into_inner();
        campaigns.push(campaign(&camp, &r));
    }
    let strategies = c
        .winback
        .clone()
        .compare_strategies(c.req(wpb::CompareStrategiesRequest::default()))
        .await
        .map_err(rpc("CompareStrategies"))?
        .into_inner()
        .strategies
        .iter()
        .map(strategy)
        .collect();

    let value_tiers = levels(&portfolio.value_tiers);
    let e = &o.endpoints;
    Ok(Report {
        header: Header {
            read_at,
            report_time: time(&portfolio.report_time),
            endpoints: vec![
                EndpointRow {
                    service: "segmentation".into(),
                    url: e.segmentation.clone(),
                    calls: [
                        "GetPortfolioReport",
                        "GetModelParameters",
                        "GetScoringRun",
                        "ProjectRetention",
                    ]
                    .map(String::from)
                    .to_vec(),
                },
                EndpointRow {
                    service: "winback".into(),
                    url: e.winback.clone(),
                    calls: ["ListCampaigns", "GetCampaignResults", "CompareStrategies"]
                        .map(String::from)
                        .to_vec(),
                },
            ],
            scoring_run: model_parameters.as_ref().map(|m| m.scoring_run.clone()),
            model_fit_time: model_parameters.as_ref().and_then(|m| time(&m.fit_time)),
        },
        pareto: Pareto {
            pareto_share: portfolio.pareto_share,
            points: pareto_points(&portfolio.pareto_curve),
        },
        pyramid: Pyramid {
            value_tiers,
            management_tiers: levels(&portfolio.management_tiers),
        },
        lifecycle: Lifecycle {
            lifecycle_stages: levels(&portfolio.lifecycle_stages),
            churn_risks: levels(&portfolio.churn_risks),
        },
        cohorts,
        model: model_parameters.as_ref().map(model),
        backtest,
        projection,
        projection_missing,
        campaigns,
        strategies,
    })
}

/// Gathers, renders and writes the page to `path`; returns what it shows.
pub async fn write(c: &Clients, o: &HtmlOptions, path: &str) -> Result<Report> {
    let report = gather(c, o).await?;
    let html = render(&report)?;
    std::fs::write(path, html).map_err(|source| ReportError::Write {
        path: path.to_string(),
        source,
    })?;
    Ok(report)
}
