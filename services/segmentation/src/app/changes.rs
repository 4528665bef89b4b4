//! Consumed upstream events: each change applied exactly once with the inbox
//! record, and the customers it touches rescored in the same transaction.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use retention_domain::now;
use retention_events::{OutboxEvent, first_deliveries, first_delivery};
use sea_orm::{DatabaseTransaction, DbErr, TransactionTrait};

use super::{AppError, AppResult, SegmentationApp};
use crate::domain::calibration::Calibration;
use crate::domain::changes::Change;
use crate::domain::features::Features;
use crate::domain::scoring::{Classes, Insight, score};
use crate::domain::segments::*;
use crate::events::{self, publish};
use crate::store::repo;

/// Customers above which scoring runs on the blocking pool.
const BLOCKING_SCORE: usize = 64;

/// Events for a customer's rescoring: membership changes, a churn-risk move, and a
/// CustomerScored when a classification other services key on changed.
fn scoring_events(
    prev: Option<&Classes>,
    new: &Insight,
    entered: &[String],
    left: &[String],
    at: DateTime<Utc>,
) -> Vec<OutboxEvent> {
    let mut evs: Vec<OutboxEvent> = entered
        .iter()
        .map(|s| publish::membership_changed(s, &new.customer_id, true, at))
        .chain(
            left.iter()
                .map(|s| publish::membership_changed(s, &new.customer_id, false, at)),
        )
        .collect();
    if let Some(p) = prev
        && p.churn_risk != new.churn_risk
    {
        evs.push(publish::churn_risk_changed(p.churn_risk, new));
    }
    if prev.is_none_or(|p| *p != new.classes()) {
        evs.push(publish::customer_scored(new));
    }
    evs
}

impl SegmentationApp {
    /// Applies one upstream event exactly once and rescores the customer.
    pub async fn apply_change(&self, event_id: &str, change: Change) -> AppResult<()> {
        let at = now();
        let txn = self.db.begin().await?;
        if !first_delivery(&txn, events::CONSUMER, event_id).await? {
            return Ok(());
        }
        // A merged-away customer lives on in the survivor, whatever arrives late
        // about them.
        let change = if matches!(change, Change::Merged { .. } | Change::Erased { .. }) {
            change
        } else {
            let id = BTreeSet::from([change.customer_id().to_string()]);
            match repo::survivors_of(&txn, &id).await?.into_values().next() {
                None => change,
                Some(survivor) => match change.redirected(&survivor) {
                    Some(c) => c,
                    None => return Ok(txn.commit().await?),
                },
            }
        };
        let mut evs = Vec::new();
        let mut touched = vec![change.customer_id().to_string()];
        // An erased customer stays forgotten, whatever arrives late about them.
        if !matches!(change, Change::Erased { .. })
            && repo::is_erased(&txn, change.customer_id()).await?
        {
            return Ok(txn.commit().await?);
        }
        match &change {
            Change::Erased { customer_id } => {
                repo::mark_erased(&txn, customer_id, at).await?;
                for s in repo::delete_customer(&txn, customer_id).await? {
                    evs.push(publish::membership_changed(&s, customer_id, false, at));
                }
            }
            Change::Merged {
                survivor_id,
                merged_id,
            } => {
                // Both rows locked in id order, as a scoring page locks them, so a
                // merge and a concurrent run cannot deadlock.
                let mut pair = [survivor_id, merged_id];
                pair.sort();
                for id in pair {
                    repo::lock_features(&txn, id, at).await?;
                }
                let merged = repo::find_features(&txn, merged_id).await?;
                repo::repoint_purchases(&txn, merged_id, survivor_id).await?;
                for s in repo::delete_customer(&txn, merged_id).await? {
                    evs.push(publish::membership_changed(&s, merged_id, false, at));
                }
                repo::mark_merged(&txn, merged_id, survivor_id, at).await?;
                touched.push(merged_id.clone());
                let mut f = repo::lock_features(&txn, survivor_id, at).await?;
                if let Some(m) = merged {
                    f.absorb(&m).map_err(|e| e.of(survivor_id))?;
                }
                repo::save_features(&txn, survivor_id, &f, at).await?;
                evs.extend(self.rescore(&txn, survivor_id, &f, at).await?);
            }
            single => {
                let id = single.customer_id();
                if let Change::Purchase {
                    purchase_id,
                    customer_id,
                    at: occur,
                    margin_minor,
                    ..
                } = single
                    && !repo::insert_purchase(&txn, purchase_id, customer_id, *occur, *margin_minor)
                        .await?
                {
                    // Recorded under another event id (a republished purchase).
                    return Ok(txn.commit().await?);
                }
                let mut f = repo::lock_features(&txn, id, at).await?;
                if !single.apply_to(&mut f, &self.cfg.clock)? {
                    // Its effect is there already (a backfill's replay).
                    return Ok(txn.commit().await?);
                }
                repo::save_features(&txn, id, &f, at).await?;
                evs.extend(self.rescore(&txn, id, &f, at).await?);
            }
        }
        self.outbox.commit(txn, evs).await?;
        self.invalidate(&touched).await;
        Ok(())
    }

    /// Scores one customer against the latest calibration (none before the first
    /// scoring run: then only the features are kept).
    async fn rescore(
        &self,
        txn: &DatabaseTransaction,
        customer_id: &str,
        f: &Features,
        at: DateTime<Utc>,
    ) -> AppResult<Vec<OutboxEvent>> {
        self.rescore_many(txn, vec![(customer_id.to_string(), f.clone())], at)
            .await
    }

    /// Scores customers against the latest calibration and moves them between
    /// segments, with the events that follow.
    async fn rescore_many(
        &self,
        txn: &DatabaseTransaction,
        customers: Vec<(String, Features)>,
        at: DateTime<Utc>,
    ) -> AppResult<Vec<OutboxEvent>> {
        let Some(cal) = repo::latest_calibration(txn).await? else {
            return Ok(Vec::new());
        };
        self.rescore_with(txn, customers, Arc::new(cal), at).await
    }

    /// [`rescore_many`](Self::rescore_many) with a given calibration. Segments
    /// are read each time, so ones created or deleted meanwhile are followed.
    pub(super) async fn rescore_with(
        &self,
        txn: &DatabaseTransaction,
        customers: Vec<(String, Features)>,
        cal: Arc<Calibration>,
        at: DateTime<Utc>,
    ) -> AppResult<Vec<OutboxEvent>> {
        let segments: Vec<CompiledSegment> = repo::all_segments(txn)
            .await?
            .iter()
            .filter_map(CompiledSegment::compile)
            .collect();
        let ids: Vec<String> = customers.iter().map(|(id, _)| id.clone()).collect();
        let mut prev = repo::classes_of(txn, &ids).await?;
        let mut current: HashMap<String, BTreeSet<String>> = HashMap::new();
        for (s, c) in repo::memberships_of(txn, &ids).await? {
            current.entry(c).or_default().insert(s);
        }
        let cfg = self.cfg.clone();
        let score_all = move || {
            let empty = BTreeSet::new();
            customers
                .iter()
                .map(|(id, f)| {
                    let new = score(id, f, at, &cal, &cfg);
                    let (entered, left) =
                        membership_changes(&segments, &new, current.get(id).unwrap_or(&empty));
                    (new, entered, left)
                })
                .collect::<Vec<_>>()
        };
        // A run's page is milliseconds of arithmetic: off the async workers.
        let scored = if ids.len() > BLOCKING_SCORE {
            tokio::task::spawn_blocking(score_all)
                .await
                .map_err(|e| AppError::Db(DbErr::Custom(format!("scoring task: {e}"))))?
        } else {
            score_all()
        };
        let (mut evs, mut add, mut remove) = (Vec::new(), Vec::new(), Vec::new());
        let mut insights = Vec::with_capacity(scored.len());
        for (new, entered, left) in scored {
            let id = new.customer_id.clone();
            evs.extend(scoring_events(
                prev.remove(&id).as_ref(),
                &new,
                &entered,
                &left,
                at,
            ));
            add.extend(entered.into_iter().map(|s| (s, id.clone())));
            remove.extend(left.into_iter().map(|s| (s, id.clone())));
            insights.push(new);
        }
        repo::upsert_insights(txn, &insights).await?;
        repo::add_members(txn, &add, at).await?;
        repo::remove_members(txn, &remove).await?;
        Ok(evs)
    }

    /// Applies a batch of single-customer changes (not merges or erasures) in one
    /// transaction, each exactly once and in order, and rescores the customers
    /// they touch once. Events already applied, about erased customers,
    /// repeating a recorded purchase or replaying an effect already present
    /// change nothing.
    pub async fn apply_changes(&self, changes: &[(String, Change)]) -> AppResult<()> {
        debug_assert!(
            changes
                .iter()
                .all(|(_, c)| !matches!(c, Change::Merged { .. } | Change::Erased { .. }))
        );
        let at = now();
        let txn = self.db.begin().await?;
        let ids: Vec<&str> = changes.iter().map(|(id, _)| id.as_str()).collect();
        let mut fresh = first_deliveries(&txn, events::CONSUMER, &ids).await?;
        // An event delivered twice within the batch counts once.
        let firsts: Vec<&Change> = changes
            .iter()
            .filter(|(id, _)| fresh.remove(id))
            .map(|(_, c)| c)
            .collect();
        let named: BTreeSet<String> = firsts.iter().map(|c| c.customer_id().to_string()).collect();
        // Late events about a merged-away customer go to the survivor.
        let survivors = repo::survivors_of(&txn, &named).await?;
        let firsts: Vec<Change> = firsts
            .into_iter()
            .filter_map(|c| match survivors.get(c.customer_id()) {
                Some(s) => c.clone().redirected(s),
                None => Some(c.clone()),
            })
            .collect();
        let customers: BTreeSet<String> =
            firsts.iter().map(|c| c.customer_id().to_string()).collect();
        let erased = repo::erased_among(&txn, &customers).await?;
        let mut live: Vec<&Change> = firsts
            .iter()
            .filter(|c| !erased.contains(c.customer_id()))
            .collect();
        let purchases: Vec<_> = live
            .iter()
            .filter_map(|c| match c {
                Change::Purchase {
                    purchase_id,
                    customer_id,
                    at,
                    margin_minor,
                    ..
                } => Some((purchase_id, customer_id, *at, *margin_minor)),
                _ => None,
            })
            .collect();
        // A purchase already recorded (republished under another event id, or
        // twice in this batch) is applied once.
        let mut new_purchases = repo::insert_purchases(&txn, &purchases).await?;
        live.retain(|c| match c {
            Change::Purchase { purchase_id, .. } => new_purchases.remove(purchase_id),
            _ => true,
        });
        let touched: BTreeSet<String> = live.iter().map(|c| c.customer_id().to_string()).collect();
        let mut features = repo::lock_features_many(&txn, &touched, at).await?;
        // Customers whose features an event changed: a replayed event whose
        // effect is there already changes nothing, not even the row's time.
        let mut moved = BTreeSet::new();
        // A change that cannot be folded (poison) fails the batch, which the
        // consumer then applies event by event, refusing only that one.
        for c in &live {
            if let Some(f) = features.get_mut(c.customer_id())
                && c.apply_to(f, &self.cfg.clock)?
            {
                moved.insert(c.customer_id().to_string());
            }
        }
        let mut changed: Vec<(String, Features)> = features
            .into_iter()
            .filter(|(id, _)| moved.contains(id))
            .collect();
        changed.sort_by(|a, b| a.0.cmp(&b.0));
        let rows: Vec<(&String, &Features)> = changed.iter().map(|(id, f)| (id, f)).collect();
        repo::save_features_many(&txn, &rows, at).await?;
        let evs = self.rescore_many(&txn, changed, at).await?;
        self.outbox.commit(txn, evs).await?;
        self.invalidate(&moved.into_iter().collect::<Vec<_>>())
            .await;
        Ok(())
    }
}
