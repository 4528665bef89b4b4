//! GetPortfolioReport: level shares, Pareto share, period retention and cohorts.

use chrono::{DateTime, Utc};
use retention_domain::now;

use super::{AppResult, RUN_PAGE, SegmentationApp};
use crate::domain::portfolio::{PeriodActivity, PortfolioReport, level_shares};
use crate::store::repo;

/// Points of the report's Pareto curve: every 5 % of the customers.
const PARETO_STEPS: usize = 20;

impl SegmentationApp {
    /// Streams the insights and the purchase ledger once each; memory grows with
    /// the number of customers only for the Pareto margins (8 bytes each).
    pub async fn portfolio_report(
        &self,
        period_days: u32,
        periods: u32,
    ) -> AppResult<PortfolioReport> {
        use crate::domain::classify::{
            LifecycleStage, ManagementTier, ValueTier, pareto_curve, pareto_share,
        };
        use crate::domain::value::ChurnRisk;
        let at = now();
        let mut rows = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = repo::report_rows(&self.db, after.as_deref(), 5 * RUN_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.0.clone());
            rows.extend(page);
        }
        let names = |all: Vec<String>| all;
        let shares = |levels: Vec<String>, pick: fn(&repo::ReportRow) -> &str| {
            let refs: Vec<&str> = levels.iter().map(String::as_str).collect();
            level_shares(&refs, rows.iter().map(|r| (pick(r), r.5)))
        };
        let margins: Vec<i64> = rows.iter().map(|r| r.5).collect();

        let mut activity = PeriodActivity::new(at, period_days, periods);
        let mut after: Option<String> = None;
        const ROWS: u64 = 10 * RUN_PAGE;
        loop {
            let mut page = repo::purchase_times(&self.db, after.as_deref(), ROWS).await?;
            let Some((last_customer, _)) = page.last().cloned() else {
                break;
            };
            // A full page may end inside a customer: leave that one to the next page.
            if page.len() as u64 == ROWS {
                page.retain(|(c, _)| *c != last_customer);
                if page.is_empty() {
                    // One customer with more purchases than a page: read them alone.
                    let times = repo::purchase_times_of(&self.db, &last_customer).await?;
                    activity.add_customer(&times);
                    after = Some(last_customer);
                    continue;
                }
            }
            for group in page.chunk_by(|a, b| a.0 == b.0) {
                let times: Vec<DateTime<Utc>> = group.iter().map(|(_, t)| *t).collect();
                activity.add_customer(&times);
            }
            after = page.last().map(|(c, _)| c.clone());
        }
        Ok(PortfolioReport {
            value_tiers: shares(names(ValueTier::names()), |r| &r.1),
            management_tiers: shares(names(ManagementTier::names()), |r| &r.2),
            lifecycle_stages: shares(names(LifecycleStage::names()), |r| &r.3),
            churn_risks: shares(names(ChurnRisk::names()), |r| &r.4),
            pareto_share: pareto_share(&margins),
            pareto_curve: pareto_curve(&margins, PARETO_STEPS),
            rates: activity.rates(),
            cohorts: activity.cohorts(),
            report_time: at,
        })
    }
}
