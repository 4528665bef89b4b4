//! Use cases of the segmentation service. Every change to features, insights and
//! memberships commits in one transaction with its events (outbox) and, for
//! consumed events, with the inbox record that makes it exactly-once; the cache is
//! invalidated after the commit.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use retention_cache::Cache;
use retention_domain::now;
use retention_errors::FieldViolations;
use retention_events::{EventsError, OutboxEvent, first_delivery};
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};
use tokio::sync::Notify;

use crate::domain::features::Features;
use crate::domain::filter::OrderBy;
use crate::domain::portfolio::{CohortRow, LevelShare, PeriodActivity, PeriodRate, level_shares};
use crate::domain::scoring::{
    Calibration, CalibrationRow, Insight, ScoringConfig, calibrate, score,
};
use crate::domain::segments::*;
use crate::events::{self, Change};
use crate::store::repo::{self, OrderValue};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid request")]
    Invalid(FieldViolations),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{name} is not scored yet: {reason}")]
    NotScored { name: String, reason: String },
    #[error("etag mismatch on {name}")]
    EtagMismatch {
        name: String,
        sent: String,
        current: String,
    },
    #[error("{0} is in progress")]
    RunInProgress(String),
    #[error("no model has been fitted yet")]
    NotFitted,
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error(transparent)]
    Events(#[from] EventsError),
}

pub type AppResult<T> = Result<T, AppError>;

/// Customers scored per transaction in a full run.
const RUN_PAGE: u64 = 1000;

#[derive(Clone)]
pub struct SegmentationApp {
    pub db: DatabaseConnection,
    pub cache: Cache,
    pub cfg: Arc<ScoringConfig>,
    relay_wakeup: Arc<Notify>,
    /// One scoring run at a time in this process.
    run_gate: Arc<tokio::sync::Mutex<()>>,
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn cache_key(customer_id: &str) -> String {
    format!("insight:{customer_id}")
}

/// Events for a customer's rescoring: membership changes, a churn-risk move, and a
/// CustomerScored when a classification other services key on changed.
fn scoring_events(
    prev: Option<&Insight>,
    new: &Insight,
    entered: &[String],
    left: &[String],
    at: DateTime<Utc>,
) -> Vec<OutboxEvent> {
    let mut evs: Vec<OutboxEvent> = entered
        .iter()
        .map(|s| events::membership_changed(s, &new.customer_id, true, at))
        .chain(
            left.iter()
                .map(|s| events::membership_changed(s, &new.customer_id, false, at)),
        )
        .collect();
    if let Some(p) = prev
        && p.churn_risk != new.churn_risk
    {
        evs.push(events::churn_risk_changed(p, new));
    }
    let changed = prev.is_none_or(|p| {
        (
            p.value_tier,
            p.management_tier,
            p.lifecycle_stage,
            p.churn_risk,
        ) != (
            new.value_tier,
            new.management_tier,
            new.lifecycle_stage,
            new.churn_risk,
        )
    });
    if changed {
        evs.push(events::customer_scored(new));
    }
    evs
}

impl SegmentationApp {
    pub fn new(
        db: DatabaseConnection,
        cache: Cache,
        cfg: ScoringConfig,
        relay_wakeup: Arc<Notify>,
    ) -> Self {
        SegmentationApp {
            db,
            cache,
            cfg: Arc::new(cfg),
            relay_wakeup,
            run_gate: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    async fn commit(&self, txn: DatabaseTransaction, evs: Vec<OutboxEvent>) -> AppResult<()> {
        let wake = !evs.is_empty();
        retention_events::enqueue_all(&txn, events::SOURCE, evs).await?;
        txn.commit().await?;
        if wake {
            self.relay_wakeup.notify_one();
        }
        Ok(())
    }

    async fn invalidate(&self, ids: &[String]) {
        let keys: Vec<String> = ids.iter().map(|id| cache_key(id)).collect();
        futures::future::join_all(keys.iter().map(|k| self.cache.invalidate(k))).await;
    }

    // ---- consumed events -----------------------------------------------------------

    /// Applies one upstream event exactly once and rescores the customer.
    pub async fn apply_change(&self, event_id: &str, change: Change) -> AppResult<()> {
        let at = now();
        let txn = self.db.begin().await?;
        if !first_delivery(&txn, events::CONSUMER, event_id).await? {
            return Ok(());
        }
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
                    evs.push(events::membership_changed(&s, customer_id, false, at));
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
                    evs.push(events::membership_changed(&s, merged_id, false, at));
                }
                touched.push(merged_id.clone());
                let mut f = repo::lock_features(&txn, survivor_id, at).await?;
                if let Some(m) = merged {
                    f.absorb(&m);
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
                    ..
                } = single
                    && !repo::insert_purchase(&txn, purchase_id, customer_id, *occur).await?
                {
                    // Recorded under another event id (a republished purchase).
                    return Ok(txn.commit().await?);
                }
                let mut f = repo::lock_features(&txn, id, at).await?;
                single.apply_to(&mut f);
                repo::save_features(&txn, id, &f, at).await?;
                evs.extend(self.rescore(&txn, id, &f, at).await?);
            }
        }
        self.commit(txn, evs).await?;
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
        let Some(cal) = repo::latest_calibration(txn).await? else {
            return Ok(Vec::new());
        };
        let segments: Vec<CompiledSegment> = repo::all_segments(txn)
            .await?
            .iter()
            .filter_map(CompiledSegment::compile)
            .collect();
        let ids = [customer_id.to_string()];
        let prev = repo::insights_of(txn, &ids).await?.remove(customer_id);
        let new = score(customer_id, f, at, &cal, &self.cfg);
        let current: BTreeSet<String> = repo::memberships_of(txn, &ids)
            .await?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let (entered, left) = membership_changes(&segments, &new, &current);
        repo::upsert_insights(txn, std::slice::from_ref(&new)).await?;
        let pair = |s: &String| (s.clone(), customer_id.to_string());
        repo::add_members(txn, &entered.iter().map(pair).collect::<Vec<_>>(), at).await?;
        repo::remove_members(txn, &left.iter().map(pair).collect::<Vec<_>>()).await?;
        Ok(scoring_events(prev.as_ref(), &new, &entered, &left, at))
    }

    // ---- insights ------------------------------------------------------------------

    pub async fn get_insight(&self, customer_id: &str) -> AppResult<Insight> {
        let db = self.db.clone();
        let id = customer_id.to_string();
        let cached = self
            .cache
            .get_or_load(
                &cache_key(customer_id),
                // The configured default (`cache.ttl_secs`).
                None,
                move || async move {
                    let found = repo::find_insight(&db, &id)
                        .await
                        .map_err(|e| e.to_string())?;
                    found
                        .map(|i| serde_json::to_vec(&i).map_err(|e| e.to_string()))
                        .transpose()
                },
            )
            .await
            .map_err(|e| AppError::Db(DbErr::Custom(e)))?;
        if let Some(bytes) = cached {
            return serde_json::from_slice(&bytes)
                .map_err(|e| AppError::Db(DbErr::Json(e.to_string())));
        }
        let name = format!("insights/{customer_id}");
        if repo::find_features(&self.db, customer_id).await?.is_some() {
            return Err(AppError::NotScored {
                name,
                reason: "no scoring run has fitted the models yet; call RunScoring".into(),
            });
        }
        Err(AppError::NotFound(name))
    }

    pub async fn list_insights(
        &self,
        filter: Option<&retention_filter::Expr>,
        order: OrderBy,
        after: Option<(OrderValue, String)>,
        limit: u64,
    ) -> AppResult<Vec<Insight>> {
        Ok(repo::list_insights(&self.db, filter, order, after, limit).await?)
    }

    // ---- segments ------------------------------------------------------------------

    async fn replay(&self, method: &str, request_id: &str) -> AppResult<Option<String>> {
        Ok(retention_db::idempotency::replay(&self.db, method, request_id).await?)
    }

    /// Records the request id in `txn`; false if a concurrent retry committed first.
    async fn remember(
        &self,
        txn: &DatabaseTransaction,
        method: &str,
        request_id: &str,
        id: &str,
    ) -> AppResult<bool> {
        Ok(retention_db::idempotency::remember(txn, method, request_id, id, now()).await?)
    }

    /// Brings a segment's members in line with its filter; returns the events.
    async fn materialise(
        &self,
        txn: &DatabaseTransaction,
        s: &Segment,
        filter: &retention_filter::Expr,
        at: DateTime<Utc>,
    ) -> AppResult<Vec<OutboxEvent>> {
        let want: HashSet<String> = repo::matching_customers(txn, filter)
            .await?
            .into_iter()
            .collect();
        let have = repo::members_of(txn, &s.id).await?;
        let mut entered: Vec<(String, String)> = want
            .difference(&have)
            .map(|c| (s.id.clone(), c.clone()))
            .collect();
        let mut left: Vec<(String, String)> = have
            .difference(&want)
            .map(|c| (s.id.clone(), c.clone()))
            .collect();
        entered.sort();
        left.sort();
        repo::add_members(txn, &entered, at).await?;
        repo::remove_members(txn, &left).await?;
        Ok(entered
            .iter()
            .map(|(seg, c)| events::membership_changed(seg, c, true, at))
            .chain(
                left.iter()
                    .map(|(seg, c)| events::membership_changed(seg, c, false, at)),
            )
            .collect())
    }

    pub async fn create_segment(
        &self,
        display_name: String,
        description: String,
        filter: String,
        request_id: &str,
    ) -> AppResult<(Segment, u64)> {
        let mut v = FieldViolations::default();
        let expr = validate_segment(&display_name, &description, &filter, "segment.", &mut v);
        let Some(expr) = expr.filter(|_| v.is_empty()) else {
            return Err(AppError::Invalid(v));
        };
        if let Some(id) = self.replay("CreateSegment", request_id).await? {
            return self.get_segment(&id).await;
        }
        let at = now();
        let s = Segment {
            id: new_id(),
            display_name,
            description,
            filter,
            create_time: at,
            update_time: at,
            version: 1,
        };
        let txn = self.db.begin().await?;
        if !self
            .remember(&txn, "CreateSegment", request_id, &s.id)
            .await?
        {
            drop(txn);
            return match self.replay("CreateSegment", request_id).await? {
                Some(id) => self.get_segment(&id).await,
                None => Err(AppError::NotFound(request_id.into())),
            };
        }
        repo::insert_segment(&txn, &s).await?;
        let evs = self.materialise(&txn, &s, &expr, at).await?;
        let count = repo::member_count(&txn, &s.id).await?;
        self.commit(txn, evs).await?;
        Ok((s, count))
    }

    pub async fn get_segment(&self, id: &str) -> AppResult<(Segment, u64)> {
        let s = repo::load_segment(&self.db, id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("segments/{id}")))?;
        let n = repo::member_count(&self.db, id).await?;
        Ok((s, n))
    }

    /// Applies the masked fields; a changed filter re-materialises the members.
    pub async fn update_segment(
        &self,
        id: &str,
        etag: &str,
        display_name: Option<String>,
        description: Option<String>,
        filter: Option<String>,
    ) -> AppResult<(Segment, u64)> {
        let txn = self.db.begin().await?;
        let mut s = repo::load_segment(&txn, id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("segments/{id}")))?;
        if !etag.is_empty() && etag != s.etag() {
            return Err(AppError::EtagMismatch {
                name: s.name(),
                sent: etag.into(),
                current: s.etag(),
            });
        }
        let filter_changed = filter.as_ref().is_some_and(|f| *f != s.filter);
        if let Some(d) = display_name {
            s.display_name = d;
        }
        if let Some(d) = description {
            s.description = d;
        }
        if let Some(f) = filter {
            s.filter = f;
        }
        let mut v = FieldViolations::default();
        let expr = validate_segment(
            &s.display_name,
            &s.description,
            &s.filter,
            "segment.",
            &mut v,
        );
        let Some(expr) = expr.filter(|_| v.is_empty()) else {
            return Err(AppError::Invalid(v));
        };
        let expected = s.version;
        let at = now();
        s.version += 1;
        s.update_time = at;
        if !repo::update_segment(&txn, &s, expected).await? {
            return Err(AppError::EtagMismatch {
                name: s.name(),
                sent: format!("\"{expected}\""),
                current: "(changed concurrently)".into(),
            });
        }
        let evs = if filter_changed {
            self.materialise(&txn, &s, &expr, at).await?
        } else {
            Vec::new()
        };
        let n = repo::member_count(&txn, id).await?;
        self.commit(txn, evs).await?;
        Ok((s, n))
    }

    /// Deletes the segment; its members leave it (published).
    pub async fn delete_segment(&self, id: &str, etag: &str) -> AppResult<()> {
        let txn = self.db.begin().await?;
        let s = repo::load_segment(&txn, id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("segments/{id}")))?;
        if !etag.is_empty() && etag != s.etag() {
            return Err(AppError::EtagMismatch {
                name: s.name(),
                sent: etag.into(),
                current: s.etag(),
            });
        }
        let at = now();
        let mut members: Vec<String> = repo::members_of(&txn, id).await?.into_iter().collect();
        members.sort();
        repo::delete_segment(&txn, id).await?;
        let evs = members
            .iter()
            .map(|c| events::membership_changed(id, c, false, at))
            .collect();
        self.commit(txn, evs).await
    }

    pub async fn list_segments(
        &self,
        after: Option<&str>,
        limit: u64,
    ) -> AppResult<Vec<(Segment, u64)>> {
        let mut out = Vec::new();
        for s in repo::list_segments(&self.db, after, limit).await? {
            let n = repo::member_count(&self.db, &s.id).await?;
            out.push((s, n));
        }
        Ok(out)
    }

    pub async fn list_members(
        &self,
        segment_id: &str,
        after: Option<&str>,
        limit: u64,
    ) -> AppResult<Vec<Insight>> {
        repo::load_segment(&self.db, segment_id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("segments/{segment_id}")))?;
        let ids = repo::list_members(&self.db, segment_id, after, limit).await?;
        let mut found = repo::insights_of(&self.db, &ids).await?;
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    // ---- scoring runs --------------------------------------------------------------

    /// Fails runs a previous process left unfinished; call once at start-up.
    pub async fn recover_runs(&self) -> AppResult<u64> {
        Ok(repo::fail_unfinished_runs(&self.db, now()).await?)
    }

    /// Starts a full recompute in the background and returns the run to poll.
    pub async fn start_run(&self, request_id: &str) -> AppResult<ScoringRun> {
        if let Some(id) = self.replay("RunScoring", request_id).await? {
            return self.get_run(&id).await;
        }
        let gate = self
            .run_gate
            .clone()
            .try_lock_owned()
            .map_err(|_| AppError::RunInProgress("a scoring run".into()))?;
        if let Some(active) = repo::active_run(&self.db).await? {
            return Err(AppError::RunInProgress(active.name()));
        }
        let run = ScoringRun {
            id: new_id(),
            state: RunState::Pending,
            percent_complete: 0,
            stage: "pending".into(),
            customers_scored: 0,
            create_time: now(),
            end_time: None,
            error: String::new(),
        };
        let txn = self.db.begin().await?;
        if !self
            .remember(&txn, "RunScoring", request_id, &run.id)
            .await?
        {
            drop(txn);
            drop(gate);
            return Box::pin(self.start_run(request_id)).await;
        }
        repo::insert_run(&txn, &run).await?;
        txn.commit().await?;
        let app = self.clone();
        let started = run.clone();
        tokio::spawn(async move {
            let _gate = gate;
            let mut run = started;
            if let Err(e) = app.execute_run(&mut run).await {
                tracing::warn!(run = %run.id, error = %e, "scoring run failed");
                run.state = RunState::Failed;
                run.error = e.to_string();
                run.end_time = Some(now());
                if let Err(e) = repo::save_run(&app.db, &run).await {
                    tracing::error!(run = %run.id, error = %e, "could not record the failed run");
                }
            }
        });
        Ok(run)
    }

    pub async fn get_run(&self, id: &str) -> AppResult<ScoringRun> {
        repo::load_run(&self.db, id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("scoringRuns/{id}")))
    }

    pub async fn latest_calibration(&self) -> AppResult<Calibration> {
        repo::latest_calibration(&self.db)
            .await?
            .ok_or(AppError::NotFitted)
    }

    async fn progress(&self, run: &mut ScoringRun, stage: &str, percent: i32) -> AppResult<()> {
        run.state = RunState::Running;
        run.stage = stage.into();
        run.percent_complete = percent;
        Ok(repo::save_run(&self.db, run).await?)
    }

    /// Fit over the whole population, then score every customer page by page.
    async fn execute_run(&self, run: &mut ScoringRun) -> Result<(), RunFailure> {
        let at = now();
        self.progress(run, "fitting", 0).await?;
        let total = repo::count_features(&self.db).await?.max(1);
        let mut rows = Vec::new();
        let mut after: Option<String> = None;
        let unit_days = self.cfg.unit_days;
        loop {
            let page = repo::page_features(&self.db, after.as_deref(), 5 * RUN_PAGE, false).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            rows.extend(
                page.iter()
                    .filter_map(|(_, f)| CalibrationRow::of(f, at, unit_days)),
            );
        }
        let cfg = self.cfg.clone();
        let run_id = run.id.clone();
        let cal = tokio::task::spawn_blocking(move || calibrate(&rows, &cfg, &run_id, at))
            .await
            .map_err(|e| RunFailure::Other(format!("fit task: {e}")))?
            .map_err(|e| RunFailure::Other(e.to_string()))?;
        repo::save_calibration(&self.db, &cal).await?;
        self.progress(run, "scoring", 30).await?;

        let cal = Arc::new(cal);
        let mut after: Option<String> = None;
        let mut scored: u64 = 0;
        loop {
            let txn = self.db.begin().await?;
            let page = repo::page_features(&txn, after.as_deref(), RUN_PAGE, true).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let ids: Vec<String> = page.iter().map(|(id, _)| id.clone()).collect();
            // Per page, so segments created or deleted during the run are followed.
            let segments: Vec<CompiledSegment> = repo::all_segments(&txn)
                .await?
                .iter()
                .filter_map(CompiledSegment::compile)
                .collect();
            let mut prev = repo::insights_of(&txn, &ids).await?;
            let mut current: HashMap<String, BTreeSet<String>> = HashMap::new();
            for (s, c) in repo::memberships_of(&txn, &ids).await? {
                current.entry(c).or_default().insert(s);
            }
            let (cfg, cal2, segs) = (self.cfg.clone(), cal.clone(), segments);
            let scored_page = tokio::task::spawn_blocking(move || {
                let empty = BTreeSet::new();
                page.iter()
                    .map(|(id, f)| {
                        let new = score(id, f, at, &cal2, &cfg);
                        let (entered, left) =
                            membership_changes(&segs, &new, current.get(id).unwrap_or(&empty));
                        (new, entered, left)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| RunFailure::Other(format!("scoring task: {e}")))?;
            let mut evs = Vec::new();
            let (mut add, mut remove) = (Vec::new(), Vec::new());
            let mut insights = Vec::with_capacity(scored_page.len());
            for (new, entered, left) in scored_page {
                let p = prev.remove(&new.customer_id);
                evs.extend(scoring_events(p.as_ref(), &new, &entered, &left, at));
                add.extend(entered.into_iter().map(|s| (s, new.customer_id.clone())));
                remove.extend(left.into_iter().map(|s| (s, new.customer_id.clone())));
                insights.push(new);
            }
            repo::upsert_insights(&txn, &insights).await?;
            repo::add_members(&txn, &add, at).await?;
            repo::remove_members(&txn, &remove).await?;
            self.commit(txn, evs).await?;
            self.invalidate(&ids).await;
            scored += ids.len() as u64;
            run.customers_scored = scored as i64;
            let percent = 30 + (70 * scored / total).min(69) as i32;
            self.progress(run, "scoring", percent).await?;
        }
        run.state = RunState::Succeeded;
        run.stage = "done".into();
        run.percent_complete = 100;
        run.end_time = Some(now());
        repo::save_run(&self.db, run).await?;
        tracing::info!(run = %run.id, customers = scored, "scoring run finished");
        Ok(())
    }
}

/// The portfolio figures of GetPortfolioReport.
#[derive(Debug, Clone, PartialEq)]
pub struct PortfolioReport {
    pub value_tiers: Vec<LevelShare>,
    pub management_tiers: Vec<LevelShare>,
    pub lifecycle_stages: Vec<LevelShare>,
    pub churn_risks: Vec<LevelShare>,
    pub pareto_share: f64,
    pub rates: Vec<PeriodRate>,
    pub cohorts: Vec<CohortRow>,
    pub report_time: DateTime<Utc>,
}

impl SegmentationApp {
    /// Streams the insights and the purchase ledger once each; memory grows with
    /// the number of customers only for the Pareto margins (8 bytes each).
    pub async fn portfolio_report(
        &self,
        period_days: u32,
        periods: u32,
    ) -> AppResult<PortfolioReport> {
        use crate::domain::classify::{LifecycleStage, ManagementTier, ValueTier, pareto_share};
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
            rates: activity.rates(),
            cohorts: activity.cohorts(),
            report_time: at,
        })
    }
}

/// Why a run failed; recorded on the run resource.
#[derive(Debug, thiserror::Error)]
enum RunFailure {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("{0}")]
    Other(String),
}
