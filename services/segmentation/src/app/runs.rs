//! Scoring runs: a full recompute (fit over the population, then every customer
//! scored page by page) as an operation resource, one at a time.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use retention_domain::now;
use sea_orm::{DbErr, TransactionTrait};

use super::{AppError, AppResult, RUN_PAGE, SegmentationApp, new_id, scoring_events};
use crate::domain::scoring::{Calibration, CalibrationRow, calibrate, score};
use crate::domain::segments::*;
use crate::store::repo;

impl SegmentationApp {
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
