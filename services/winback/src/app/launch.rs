//! Launching: the target is read from segmentation first (outside any transaction),
//! then exclusions, the holdout split and the budget are applied and the targets,
//! the state change and every OfferDispatched event commit together. A launch
//! therefore either happens completely or not at all.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use retention_db::audit::AuditEntry;
use retention_domain::now;
use retention_events::OutboxEvent;
use sea_orm::{DatabaseTransaction, TransactionTrait};

use super::{AppError, AppResult, WinbackApp, concurrent, save, step};
use crate::clients::TargetInsight;
use crate::domain::campaign::{CampaignAction, CampaignState};
use crate::domain::records::{Campaign, Target, campaign_name};
use crate::domain::targeting::{Arm, Candidate, Selection, TargetingRules, select};
use crate::events::publish as events;
use crate::store::repo;

impl WinbackApp {
    /// LaunchCampaign. A draft whose schedule lies ahead becomes SCHEDULED (the
    /// scheduler launches it when due); a draft or a due scheduled campaign starts
    /// RUNNING with its targets; a paused one resumes. Whichever it is commits
    /// with `audit`.
    pub async fn launch(
        &self,
        id: &str,
        etag: &str,
        budget: Option<Duration>,
        audit: &AuditEntry,
    ) -> AppResult<Campaign> {
        let c = self.get_campaign(id).await?;
        if !etag.is_empty() && etag != c.etag() {
            return Err(AppError::EtagMismatch {
                name: campaign_name(id),
                sent: etag.into(),
                current: c.etag(),
            });
        }
        match c.state {
            CampaignState::Paused => {
                return self.act(id, CampaignAction::Resume, etag, audit).await;
            }
            CampaignState::Draft if c.schedule_time.is_some_and(|t| t > now()) => {
                return self.act(id, CampaignAction::Schedule, etag, audit).await;
            }
            CampaignState::Draft | CampaignState::Scheduled => {}
            from => {
                return Err(AppError::Illegal {
                    name: campaign_name(id),
                    source: crate::domain::campaign::IllegalTransition {
                        from,
                        action: CampaignAction::Launch,
                    },
                });
            }
        }
        let insights = self
            .segmentation
            .candidates(
                c.target_segment.as_deref(),
                c.target_filter.as_deref(),
                budget,
            )
            .await
            .map_err(|source| AppError::Peer {
                name: campaign_name(id),
                source,
            })?;
        self.launch_with(&c, insights, audit).await
    }

    async fn launch_with(
        &self,
        seen: &Campaign,
        insights: Vec<TargetInsight>,
        audit: &AuditEntry,
    ) -> AppResult<Campaign> {
        let at = now();
        let txn = self.db().begin().await?;
        let mut c = repo::load_campaign(&txn, &seen.id)
            .await?
            .ok_or_else(|| AppError::NotFound(campaign_name(&seen.id)))?;
        if c.version != seen.version {
            return Err(concurrent(&c.id, seen.version));
        }
        let expected = c.version;
        let committed_before = c.committed_minor;
        step(&mut c, CampaignAction::Launch, at)?;
        let mut seen_ids = HashSet::new();
        let insights: Vec<TargetInsight> = insights
            .into_iter()
            .filter(|i| seen_ids.insert(i.customer_id.clone()))
            .collect();
        let (targets, excluded) = self.enrol(&txn, &mut c, &insights, at).await?;
        save(&txn, &c, expected).await?;
        let treated = targets.iter().filter(|t| t.arm == Arm::Treated).count() as i64;
        let mut evs = vec![events::campaign_launched(
            &c,
            treated,
            targets.len() as i64 - treated,
        )];
        evs.extend(dispatched(&c, &targets));
        // Last: the audit append holds the chain's lock to the commit.
        retention_db::audit::append(&txn, audit).await?;
        self.outbox.commit(txn, evs).await?;
        crate::metrics::launched();
        crate::metrics::spent(&c.currency, c.committed_minor - committed_before);
        tracing::info!(
            campaign = %c.id,
            candidates = insights.len(),
            treated,
            control = targets.len() as i64 - treated,
            excluded,
            "campaign launched"
        );
        Ok(c)
    }

    /// Selects `c`'s targets among `insights` and writes them with the exclusions;
    /// their offer cost is committed to the campaign's budget. Returns the targets
    /// and how many customers were excluded.
    async fn enrol(
        &self,
        txn: &DatabaseTransaction,
        c: &mut Campaign,
        insights: &[TargetInsight],
        at: DateTime<Utc>,
    ) -> AppResult<(Vec<Target>, usize)> {
        let sel = self.select_targets(txn, c, insights, at).await?;
        let targets = build_targets(c, &sel, insights, at);
        c.committed_minor += sel.committed_minor;
        repo::insert_targets(txn, &targets).await?;
        repo::insert_exclusions(txn, &c.id, &sel.excluded).await?;
        Ok((targets, sel.excluded.len()))
    }

    /// Exclusions from this service's records, then the selection within what is
    /// left of the budget.
    async fn select_targets(
        &self,
        txn: &DatabaseTransaction,
        c: &Campaign,
        insights: &[TargetInsight],
        at: DateTime<Utc>,
    ) -> AppResult<Selection> {
        let ids: Vec<String> = insights.iter().map(|i| i.customer_id.clone()).collect();
        let churn = repo::churn_types(txn, &ids).await?;
        let consents = repo::consents(txn, &ids, c.channel).await?;
        let since = at - chrono::Duration::days(i64::from(c.cool_down_days));
        let (in_live, contacted) = repo::busy_customers(txn, &c.id, &ids, since).await?;
        let candidates: Vec<Candidate> = insights
            .iter()
            .map(|i| Candidate {
                customer_id: i.customer_id.clone(),
                predicted_clv_minor: i.predicted_clv_minor,
                retained_clv_minor: i.retained_clv_minor,
                churn_type: churn.get(&i.customer_id).copied(),
                consent: consents.get(&i.customer_id).copied(),
                recently_contacted: contacted.contains(&i.customer_id),
                in_live_campaign: in_live.contains(&i.customer_id),
            })
            .collect();
        Ok(select(
            &candidates,
            &TargetingRules {
                offer_cost_minor: c.offer_cost_minor,
                budget_minor: (c.budget_minor - c.committed_minor).max(0),
                max_cost_share_of_value: c.max_cost_share_of_value,
                value_basis: c.value_basis,
                holdout_share: c.holdout_share,
                seed: c.seed as u64,
                consent_policy: self.consent_policy(c.channel),
            },
        ))
    }

    /// The segments running triggered campaigns enrol from.
    pub async fn triggered_segments(&self) -> AppResult<HashSet<String>> {
        Ok(
            repo::campaigns_in_state(self.db(), &[CampaignState::Running])
                .await?
                .into_iter()
                .filter(|c| c.triggered)
                .filter_map(|c| c.target_segment)
                .collect(),
        )
    }

    /// A customer entered `segment_id`: running triggered campaigns on that segment
    /// enrol it (treated or control, exclusions and budget as at launch). The
    /// event's inbox entry commits with the enrolment, so a redelivery changes
    /// nothing; a segmentation failure leaves the event to be delivered again.
    pub async fn segment_entered(
        &self,
        event_id: &str,
        consumer: &str,
        segment_id: &str,
        customer_id: &str,
    ) -> AppResult<usize> {
        let campaigns: Vec<Campaign> =
            repo::campaigns_in_state(self.db(), &[CampaignState::Running])
                .await?
                .into_iter()
                .filter(|c| c.triggered && c.target_segment.as_deref() == Some(segment_id))
                .collect();
        let insight = if campaigns.is_empty() {
            None
        } else {
            self.segmentation
                .insight(customer_id, None)
                .await
                .map_err(|source| AppError::Peer {
                    name: format!("customers/{customer_id}"),
                    source,
                })?
        };
        let at = now();
        let txn = self.db().begin().await?;
        if !retention_events::first_delivery(&txn, consumer, event_id).await? {
            return Ok(0);
        }
        let mut enrolled = 0;
        let mut evs = Vec::new();
        let mut spent = Vec::new();
        for seen in campaigns {
            let Some(insight) = insight.clone() else {
                break;
            };
            let Some(mut c) = repo::load_campaign(&txn, &seen.id).await? else {
                continue;
            };
            if c.state != CampaignState::Running
                || repo::find_target(&txn, &c.id, customer_id).await?.is_some()
            {
                continue;
            }
            let expected = c.version;
            c.version += 1;
            c.update_time = at;
            let committed_before = c.committed_minor;
            let (targets, _) = self.enrol(&txn, &mut c, &[insight], at).await?;
            spent.push((c.currency.clone(), c.committed_minor - committed_before));
            if !targets.is_empty() {
                repo::clear_exclusion(&txn, &c.id, customer_id).await?;
            }
            save(&txn, &c, expected).await?;
            enrolled += targets.len();
            evs.extend(dispatched(&c, &targets));
        }
        self.outbox.commit(txn, evs).await?;
        for (currency, minor_units) in spent {
            crate::metrics::spent(&currency, minor_units);
        }
        Ok(enrolled)
    }

    /// Launches scheduled campaigns whose time has come; returns how many started.
    /// One that cannot start now (segmentation down) stays scheduled for the next
    /// check.
    pub async fn launch_due(&self, at: DateTime<Utc>) -> AppResult<usize> {
        let mut started = 0;
        for c in repo::campaigns_in_state(self.db(), &[CampaignState::Scheduled]).await? {
            if c.schedule_time.is_none_or(|t| t > at) {
                continue;
            }
            let audit = AuditEntry::new(SYSTEM, "campaign.launch", [campaign_name(&c.id)]);
            match self.launch(&c.id, "", None, &audit).await {
                Ok(_) => {
                    let named: Vec<&str> = audit.resources.iter().map(String::as_str).collect();
                    retention_telemetry::audit(SYSTEM, &audit.action, &named);
                    started += 1;
                }
                Err(e) => tracing::warn!(campaign = %c.id, error = %e, "scheduled launch deferred"),
            }
        }
        Ok(started)
    }
}

/// The actor of the scheduler's launches (the service itself).
const SYSTEM: &str = "system";

/// An OfferDispatched event for each treated target (the control group gets none).
fn dispatched<'a>(
    c: &'a Campaign,
    targets: &'a [Target],
) -> impl Iterator<Item = OutboxEvent> + 'a {
    targets
        .iter()
        .filter(|t| t.arm == Arm::Treated)
        .map(move |t| events::offer_dispatched(c, t))
}

fn build_targets(
    c: &Campaign,
    sel: &Selection,
    insights: &[TargetInsight],
    at: DateTime<Utc>,
) -> Vec<Target> {
    let by_id: HashMap<&str, &TargetInsight> = insights
        .iter()
        .map(|i| (i.customer_id.as_str(), i))
        .collect();
    let deadline = at + chrono::Duration::days(i64::from(c.win_window_days));
    sel.targets
        .iter()
        .map(|(customer, arm)| {
            let i = by_id.get(customer.as_str());
            Target {
                campaign_id: c.id.clone(),
                customer_id: customer.clone(),
                arm: *arm,
                predicted_clv_minor: i.map_or(0, |i| i.predicted_clv_minor),
                retained_clv_minor: i.and_then(|i| i.retained_clv_minor),
                currency: i
                    .map(|i| i.currency.clone())
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| c.currency.clone()),
                window_start: at,
                win_deadline: deadline,
                dispatch_time: (*arm == Arm::Treated).then_some(at),
                last_outcome: None,
                outcome_time: None,
                won_back_time: None,
                recovered_margin_minor: 0,
                repeat_purchases: 0,
            }
        })
        .collect()
}
