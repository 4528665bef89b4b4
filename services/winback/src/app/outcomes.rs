//! What campaigns achieve: contact outcomes, won-back attribution from purchases,
//! results against the holdout, the comparison across strategies, and the playbook
//! for one customer.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use retention_events::Written;
use sea_orm::TransactionTrait;

use super::{AppError, AppResult, WinbackApp};
use crate::domain::attribution::TargetWindow;
use crate::domain::campaign::{CampaignKind, Strategy};
use crate::domain::playbook::{Action, Situation, recommend};
use crate::domain::records::{Campaign, ContactOutcome, Target, target_name};
use crate::domain::results::{
    ArmResults, CampaignResults, StrategyOutcome, economics, incremental, uplift,
};
use crate::domain::targeting::Arm;
use crate::events::publish as events;
use crate::store::repo::{self, ArmRow};

/// What one arm's row says, as reported: rates and means from the counts.
fn arm_results(r: &ArmRow) -> ArmResults {
    let days = &r.days_to_win;
    ArmResults {
        targets: r.targets,
        contacted: r.contacted,
        won_back: r.won_back,
        win_back_rate: ratio(r.won_back, r.targets),
        recovered_margin_minor: r.recovered_margin_minor,
        recovered_value_minor: r.recovered_value_minor,
        mean_days_to_win_back: if days.is_empty() {
            0.0
        } else {
            days.iter().sum::<f64>() / days.len() as f64
        },
        repeat_rate: ratio(r.repeaters, r.won_back),
    }
}

fn ratio(a: i64, b: i64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Pools rows of several campaigns into one (counts and money add; the means are
/// recomputed from the pooled wins).
fn pool(rows: &[ArmRow]) -> ArmRow {
    let mut out = ArmRow::default();
    for r in rows {
        out.targets += r.targets;
        out.contacted += r.contacted;
        out.won_back += r.won_back;
        out.recovered_margin_minor += r.recovered_margin_minor;
        out.recovered_value_minor += r.recovered_value_minor;
        out.repeaters += r.repeaters;
        out.days_to_win.extend_from_slice(&r.days_to_win);
    }
    out
}

impl WinbackApp {
    /// RecordContactOutcome on a treated target (the control group is never
    /// contacted). The latest outcome by occurrence time is kept.
    /// Records what came of contacting a target; the latest outcome (by its time)
    /// wins. A retry with the same `request_id` answers the target as it is.
    pub async fn record_outcome(
        &self,
        campaign_id: &str,
        customer_id: &str,
        outcome: ContactOutcome,
        at: DateTime<Utc>,
        request_id: &str,
    ) -> AppResult<Target> {
        const METHOD: &str = "RecordContactOutcome";
        let name = target_name(campaign_id, customer_id);
        if self.outbox.replay(METHOD, request_id).await?.is_some() {
            return self.target(campaign_id, customer_id).await;
        }
        let written = self
            .outbox
            .write(METHOD, request_id, &name, async |txn| {
                let mut t = repo::find_target(txn, campaign_id, customer_id)
                    .await?
                    .ok_or_else(|| AppError::NotFound(name.clone()))?;
                if t.arm == Arm::Control {
                    return Err(AppError::Precondition {
                        name: name.clone(),
                        reason: "a control-group target receives no offer and cannot be contacted"
                            .into(),
                    });
                }
                if t.outcome_time.is_none_or(|prev| at >= prev) {
                    t.last_outcome = Some(outcome);
                    t.outcome_time = Some(at);
                    repo::update_target(txn, &t).await?;
                }
                AppResult::Ok((t, Vec::new()))
            })
            .await?;
        match written {
            Written::Done(t) => Ok(t),
            Written::Replayed(_) => self.target(campaign_id, customer_id).await,
        }
    }

    pub async fn target(&self, campaign_id: &str, customer_id: &str) -> AppResult<Target> {
        repo::find_target(self.db(), campaign_id, customer_id)
            .await?
            .ok_or_else(|| AppError::NotFound(target_name(campaign_id, customer_id)))
    }

    pub async fn list_targets(
        &self,
        campaign_id: &str,
        after: Option<String>,
        limit: u64,
    ) -> AppResult<Vec<Target>> {
        self.get_campaign(campaign_id).await?;
        Ok(repo::list_targets(self.db(), campaign_id, after, limit).await?)
    }

    /// A purchase by `customer_id` at `at`: the first purchase inside a target's
    /// win window wins it back (treated and control alike, CustomerWonBack); later
    /// purchases of a won-back target count as repeats. Applied once per event,
    /// and once per purchase: one attributed against targets is remembered, so a
    /// replay of it under another event id (a backfill) counts for nothing.
    pub async fn purchase_recorded(
        &self,
        event_id: &str,
        consumer: &str,
        purchase_id: &str,
        customer_id: &str,
        at: DateTime<Utc>,
        margin_minor: i64,
    ) -> AppResult<usize> {
        let txn = self.db().begin().await?;
        if !retention_events::first_delivery(&txn, consumer, event_id).await? {
            return Ok(0);
        }
        let targets = repo::targets_of_customer(&txn, customer_id, at).await?;
        if targets.is_empty()
            || (!purchase_id.is_empty()
                && !repo::claim_attribution(
                    &txn,
                    purchase_id,
                    customer_id,
                    retention_domain::now(),
                )
                .await?)
        {
            txn.commit().await?;
            return Ok(0);
        }
        let mut evs = Vec::new();
        for mut t in targets {
            let window = TargetWindow {
                arm: t.arm,
                start: t.window_start,
                win_window_days: (t.win_deadline - t.window_start).num_days().max(0) as u32,
                won_back_time: t.won_back_time,
            };
            if window.wins(at) {
                t.won_back_time = Some(at);
                t.recovered_margin_minor = margin_minor;
                evs.push(events::customer_won_back(&t));
            } else if t.won_back_time.is_some_and(|w| at > w) {
                t.repeat_purchases += 1;
            } else {
                continue;
            }
            repo::update_target(&txn, &t).await?;
        }
        let won = evs.len();
        self.outbox.commit(txn, evs).await?;
        Ok(won)
    }

    pub async fn results(&self, campaign_id: &str) -> AppResult<CampaignResults> {
        let campaign = self.get_campaign(campaign_id).await?;
        let rows = repo::arm_rows(self.db(), campaign_id, campaign.value_basis).await?;
        let arm = |a| rows.get(&a).map(arm_results).unwrap_or_default();
        let (treated, control) = (arm(Arm::Treated), arm(Arm::Control));
        let e = economics(
            &treated.outcome(),
            &control.outcome(),
            campaign.committed_minor,
        );
        let value = incremental(
            treated.recovered_value_minor,
            treated.targets.max(0) as u64,
            control.recovered_value_minor,
            control.targets.max(0) as u64,
        );
        Ok(CampaignResults {
            uplift: uplift(&treated.outcome(), &control.outcome()),
            spend_minor: campaign.committed_minor,
            incremental_margin_minor: e.incremental_margin_minor.round() as i64,
            roi: e.roi,
            incremental_value_minor: value.round() as i64,
            campaign,
            treated,
            control,
        })
    }

    /// Launched campaigns pooled per strategy, best uplift first.
    pub async fn compare_strategies(
        &self,
        kind: Option<CampaignKind>,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> AppResult<Vec<StrategyOutcome>> {
        let mut by_strategy: BTreeMap<&'static str, (Strategy, Vec<Campaign>)> = BTreeMap::new();
        for c in repo::launched_campaigns(self.db(), kind, start, end).await? {
            by_strategy
                .entry(c.strategy.as_str())
                .or_insert_with(|| (c.strategy, Vec::new()))
                .1
                .push(c);
        }
        let mut out = Vec::new();
        for (_, (strategy, campaigns)) in by_strategy {
            let (mut treated, mut control) = (Vec::new(), Vec::new());
            for c in &campaigns {
                let mut rows = repo::arm_rows(self.db(), &c.id, c.value_basis).await?;
                treated.extend(rows.remove(&Arm::Treated));
                control.extend(rows.remove(&Arm::Control));
            }
            let treated = arm_results(&pool(&treated));
            let control = arm_results(&pool(&control));
            let spend: i64 = campaigns.iter().map(|c| c.committed_minor).sum();
            let e = economics(&treated.outcome(), &control.outcome(), spend);
            out.push(StrategyOutcome {
                strategy,
                campaigns: campaigns.len() as i64,
                currency: campaigns
                    .first()
                    .map(|c| c.currency.clone())
                    .unwrap_or_default(),
                uplift: uplift(&treated.outcome(), &control.outcome()),
                spend_minor: spend,
                incremental_margin_minor: e.incremental_margin_minor.round() as i64,
                roi: e.roi,
                treated,
                control,
            });
        }
        out.sort_by(|a, b| {
            let u = |s: &StrategyOutcome| s.uplift.map_or(f64::NEG_INFINITY, |u| u.estimate);
            u(b).total_cmp(&u(a))
        });
        Ok(out)
    }

    /// The playbook for one customer: its stage, value tier and risk from
    /// segmentation, its complaints and churn type from this service's records.
    ///
    /// Before the first scoring run segmentation answers FAILED_PRECONDITION
    /// (NOT_SCORED) and so does this call, asking for a scoring run, rather than a
    /// playbook without the model: the value tier decides between actions, not
    /// only whether to add one (a poached PLATINUM customer gets a personal offer,
    /// an IRON one a price match; LEAD customers get no paid offers), so without it
    /// the answer would be wrong, not merely shorter, and an empty list for a
    /// customer without complaints or churn would read as "nothing to do".
    pub async fn recommend(
        &self,
        customer_id: &str,
        budget: Option<Duration>,
    ) -> AppResult<Vec<Action>> {
        let insight = self
            .segmentation
            .insight(customer_id, budget)
            .await
            .map_err(|source| AppError::Peer {
                name: format!("customers/{customer_id}"),
                source,
            })?;
        let unresolved = repo::complaint_counts(self.db(), customer_id)
            .await?
            .unresolved;
        let churn_type = repo::churn_types(self.db(), &[customer_id.to_string()])
            .await?
            .remove(customer_id);
        let situation = Situation {
            lifecycle_stage: insight
                .as_ref()
                .map(|i| i.lifecycle_stage.clone())
                .unwrap_or_default(),
            value_tier: insight
                .as_ref()
                .map(|i| i.value_tier.clone())
                .unwrap_or_default(),
            churn_risk: insight
                .as_ref()
                .map(|i| i.churn_risk.clone())
                .unwrap_or_default(),
            open_complaints: unresolved,
            churn_type,
        };
        Ok(recommend(&situation))
    }
}
