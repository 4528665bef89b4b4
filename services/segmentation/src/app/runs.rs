//! Scoring runs: a full recompute (fit over the population, then every customer
//! scored page by page) as an operation resource, one at a time.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use retention_domain::now;
use retention_events::Written;
use sea_orm::{DbErr, TransactionTrait};

use super::{AppError, AppResult, RUN_PAGE, RUN_WORKERS, SegmentationApp, new_id};
use crate::domain::backtest::Backtest;
use crate::domain::calibration::{Calibration, CalibrationRow, calibrate};
use crate::domain::features::Features;
use crate::domain::segments::*;
use crate::store::repo;

/// Purchases a backtest reads per query.
const BACKTEST_PAGE: u64 = 20_000;

impl SegmentationApp {
    /// Fails runs a previous process left unfinished; call once at start-up.
    pub async fn recover_runs(&self) -> AppResult<u64> {
        Ok(repo::fail_unfinished_runs(&self.db, now()).await?)
    }

    /// Starts a full recompute in the background and returns the run to poll;
    /// with an observation end, a backtest instead (see [`Self::execute_backtest`]).
    pub async fn start_run(
        &self,
        request_id: &str,
        observation_end: Option<DateTime<Utc>>,
    ) -> AppResult<ScoringRun> {
        if let Some(id) = self.outbox.replay("RunScoring", request_id).await? {
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
            observation_end,
            backtest: None,
        };
        let written = self
            .outbox
            .write("RunScoring", request_id, &run.id, async |txn| {
                repo::insert_run(txn, &run).await?;
                AppResult::Ok(((), Vec::new()))
            })
            .await?;
        if let Written::Replayed(id) = written {
            // A concurrent retry started it: answer with that run.
            drop(gate);
            return self.get_run(&id).await;
        }
        let app = self.clone();
        let started = run.clone();
        tokio::spawn(async move {
            let _gate = gate;
            let mut run = started;
            let clock = std::time::Instant::now();
            let done = match run.observation_end {
                Some(end) => app.execute_backtest(&mut run, end).await,
                None => app.execute_run(&mut run).await,
            };
            crate::metrics::run_finished(
                run.observation_end.is_some(),
                done.is_ok(),
                clock.elapsed(),
                u64::try_from(run.customers_scored).unwrap_or(0),
            );
            if let Err(e) = done {
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
        // The fitting pass reads every id in order anyway: it also cuts the
        // population into pages of RUN_PAGE by their last id, so that the scoring
        // pass can work on several disjoint pages at once.
        let mut bounds = Vec::new();
        let mut seen: u64 = 0;
        let mut after: Option<String> = None;
        loop {
            let page =
                repo::page_features(&self.db, after.as_deref(), None, Some(5 * RUN_PAGE), false)
                    .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let stale: BTreeSet<String> = page
                .iter()
                .filter(|(_, f)| !f.occasions_follow(&self.cfg.clock))
                .map(|(id, _)| id.clone())
                .collect();
            let rederived = self.rederive_occasions(&stale, at).await?;
            for (id, f) in &page {
                let f = rederived.get(id).unwrap_or(f);
                seen += 1;
                if seen.is_multiple_of(RUN_PAGE) {
                    bounds.push(id.clone());
                }
                rows.extend(CalibrationRow::of(f, at, &self.cfg));
            }
        }
        let cfg = self.cfg.clone();
        let run_id = run.id.clone();
        let cal = tokio::task::spawn_blocking(move || calibrate(&rows, &cfg, &run_id, at))
            .await
            .map_err(|e| RunFailure::Other(format!("fit task: {e}")))?
            .map_err(|e| RunFailure::Other(e.to_string()))?;
        repo::save_calibration(&self.db, &cal).await?;
        self.progress(run, "scoring", 30).await?;

        // (after, upto] ranges covering every id, including any added since the
        // fitting pass; the last one is open-ended.
        let mut ranges = Vec::with_capacity(bounds.len() + 1);
        let mut lower: Option<String> = None;
        for b in bounds {
            ranges.push((lower.replace(b.clone()), Some(b)));
        }
        ranges.push((lower, None));
        let cal = Arc::new(cal);
        // SQLite has one writer and one pooled connection: pages there queue for
        // it anyway, and a queued page could outwait the pool's acquire timeout.
        let workers = if retention_db::is_postgres(&self.db) {
            RUN_WORKERS
        } else {
            1
        };
        let mut pages = futures::stream::iter(ranges)
            .map(|(after, upto)| self.score_range(after, upto, cal.clone(), at))
            .buffer_unordered(workers);
        let mut scored: u64 = 0;
        while let Some(n) = pages.try_next().await? {
            scored += n;
            run.customers_scored = scored as i64;
            let percent = 30 + (70 * scored / total).min(69) as i32;
            self.progress(run, "scoring", percent).await?;
        }
        drop(pages);
        run.state = RunState::Succeeded;
        run.stage = "done".into();
        run.percent_complete = 100;
        run.end_time = Some(now());
        repo::save_run(&self.db, run).await?;
        tracing::info!(run = %run.id, customers = scored, "scoring run finished");
        Ok(())
    }

    /// A backtest: every customer's orders, read from the purchases table a
    /// page at a time, split at `observation_end`; the models fitted on the
    /// calibration part; each customer's prediction for the holdout compared
    /// with what happened. Only the run row is written: no calibration,
    /// insight, segment membership or event.
    async fn execute_backtest(
        &self,
        run: &mut ScoringRun,
        observation_end: DateTime<Utc>,
    ) -> Result<(), RunFailure> {
        let at = now();
        self.progress(run, "reading", 0).await?;
        let mut bt = Backtest::new(self.cfg.clock, self.cfg.unit_days, observation_end, at);
        let (mut after, mut customer): (Option<(String, String)>, Option<String>) = (None, None);
        let mut orders: Vec<(DateTime<Utc>, Option<i64>)> = Vec::new();
        let mut customers: i64 = 0;
        loop {
            let page = repo::purchase_page(
                &self.db,
                after.as_ref().map(|(c, p)| (c.as_str(), p.as_str())),
                BACKTEST_PAGE,
            )
            .await?;
            let Some((c, p, _, _)) = page.last() else {
                break;
            };
            after = Some((c.clone(), p.clone()));
            for (c, _, t, margin) in page {
                if customer.as_deref() != Some(c.as_str()) {
                    if !orders.is_empty() {
                        bt.add_customer(&orders);
                        customers += 1;
                    }
                    orders.clear();
                    customer = Some(c);
                }
                orders.push((t, margin));
            }
            run.customers_scored = customers;
            self.progress(run, "reading", 0).await?;
        }
        if !orders.is_empty() {
            bt.add_customer(&orders);
        }
        self.progress(run, "fitting", 60).await?;
        let fit_sample = self.cfg.fit_sample;
        let report = tokio::task::spawn_blocking(move || bt.finish(fit_sample))
            .await
            .map_err(|e| RunFailure::Other(format!("backtest task: {e}")))?
            .map_err(|e| RunFailure::Other(e.to_string()))?;
        run.customers_scored = report.customers as i64;
        run.backtest = Some(report);
        run.state = RunState::Succeeded;
        run.stage = "done".into();
        run.percent_complete = 100;
        run.end_time = Some(now());
        repo::save_run(&self.db, run).await?;
        tracing::info!(run = %run.id, customers = run.customers_scored, "backtest finished");
        Ok(())
    }

    /// Re-derives the purchase occasions of rows folded before occasions were
    /// kept, or numbered by another clock (`scoring.time_zone` or
    /// `occasion_period` changed), from the purchases table; under the rows'
    /// locks, so that a purchase applied meanwhile is not lost.
    async fn rederive_occasions(
        &self,
        ids: &BTreeSet<String>,
        at: DateTime<Utc>,
    ) -> Result<HashMap<String, Features>, DbErr> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let clock = &self.cfg.clock;
        let txn = self.db.begin().await?;
        let mut rows = repo::lock_features_many(&txn, ids, at).await?;
        let orders = repo::orders_of(&txn, ids).await?;
        let mut changed = Vec::new();
        for (id, f) in rows.iter_mut() {
            if !f.occasions_follow(clock) {
                match f.rederive_occasions(clock, orders.get(id).map_or(&[], Vec::as_slice)) {
                    Ok(()) => changed.push(id.clone()),
                    // Left as it is (scored by its orders), not failing the run.
                    Err(e) => tracing::warn!(customer = %id, error = %e.of(id),
                        "purchase occasions not re-derived"),
                }
            }
        }
        let save: Vec<(&String, &Features)> = changed
            .iter()
            .filter_map(|id| rows.get_key_value(id))
            .collect();
        repo::save_features_many(&txn, &save, at).await?;
        txn.commit().await?;
        tracing::info!(customers = changed.len(), clock = %clock, "purchase occasions re-derived");
        Ok(rows)
    }

    /// Scores the customers in (after, upto] in one transaction; returns how many.
    async fn score_range(
        &self,
        after: Option<String>,
        upto: Option<String>,
        cal: Arc<Calibration>,
        at: DateTime<Utc>,
    ) -> Result<u64, RunFailure> {
        let txn = self.db.begin().await?;
        let page = repo::page_features(&txn, after.as_deref(), upto.as_deref(), None, true).await?;
        let ids: Vec<String> = page.iter().map(|(id, _)| id.clone()).collect();
        let evs = self.rescore_with(&txn, page, cal, at).await?;
        self.outbox.commit(txn, evs).await.map_err(AppError::from)?;
        self.invalidate(&ids).await;
        Ok(ids.len() as u64)
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
