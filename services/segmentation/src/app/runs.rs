//! Scoring runs: a full recompute (fit over the population, then every customer
//! scored page by page) as an operation resource, one at a time in the whole
//! deployment (a unique index). The replica that starts a run fits the models
//! and writes the run's pages; every replica then claims pages (a lease each)
//! and scores them, each page's completion committed with its insights and
//! events, so that every customer is scored exactly once per run even when a
//! replica dies mid-page.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use retention_domain::now;
use retention_events::Written;
use sea_orm::{DbErr, TransactionTrait};

use super::{AppError, AppResult, SegmentationApp, new_id};
use crate::domain::backtest::Backtest;
use crate::domain::calibration::{Calibration, CalibrationRow, calibrate};
use crate::domain::features::Features;
use crate::domain::segments::*;
use crate::store::repo;

/// Purchases a backtest reads per query.
const BACKTEST_PAGE: u64 = 20_000;

/// Claims of one page before the run is failed: a page that fails this often
/// fails on every replica.
const MAX_PAGE_ATTEMPTS: i32 = 5;

/// Aborts the task when dropped: a coordinator that ends (or panics) stops
/// renewing its lease.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl SegmentationApp {
    /// Fails the runs whose coordinator stopped renewing its lease before their
    /// pages were written, and ends a run whose pages are all done; every replica
    /// calls it at start-up and every run lease. A live run is never touched.
    pub async fn sweep_runs(&self) -> AppResult<u64> {
        let failed = repo::sweep_runs(&self.db, now()).await?;
        if let Some(id) = repo::scoring_run_id(&self.db).await? {
            self.finish_if_done(&id).await?;
        }
        Ok(failed)
    }

    /// Starts a full recompute in the background and returns the run to poll;
    /// with an observation end, a backtest instead (see [`Self::execute_backtest`]).
    pub async fn start_run(
        &self,
        request_id: &str,
        observation_end: Option<DateTime<Utc>>,
    ) -> AppResult<ScoringRun> {
        Ok(self.begin_run(request_id, observation_end).await?.0)
    }

    /// Starts the scheduled run of the interval slot that contains now, once for
    /// the whole deployment: the slot's request id makes the replicas that tick in
    /// the same slot replay one run. The run, if this call started it.
    pub async fn start_scheduled_run(&self, every: Duration) -> AppResult<Option<ScoringRun>> {
        let secs = i64::try_from(every.as_secs().max(1)).unwrap_or(i64::MAX);
        let slot = now().timestamp().div_euclid(secs) * secs;
        let slot = DateTime::<Utc>::from_timestamp(slot, 0).unwrap_or_default();
        let request_id = format!(
            "scheduled-{}",
            slot.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let (run, started) = self.begin_run(&request_id, None).await?;
        Ok(started.then_some(run))
    }

    /// The run and whether this call started it (false: a replay).
    async fn begin_run(
        &self,
        request_id: &str,
        observation_end: Option<DateTime<Utc>>,
    ) -> AppResult<(ScoringRun, bool)> {
        if let Some(id) = self.outbox.replay("RunScoring", request_id).await? {
            return Ok((self.get_run(&id).await?, false));
        }
        // A run whose replica died before writing its pages would otherwise
        // refuse this one until the next periodic sweep.
        repo::sweep_runs(&self.db, now()).await?;
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
        let lease = now() + self.runs.run_lease;
        let written = self
            .outbox
            .write("RunScoring", request_id, &run.id, async |txn| {
                repo::insert_run(txn, &run, &self.replica, lease).await?;
                AppResult::Ok(((), Vec::new()))
            })
            .await;
        let written = match written {
            // The unique index on active runs: another replica's run got in
            // between the check above and this insert.
            Err(AppError::Db(e)) if retention_db::is_unique_violation(&e) => {
                let name = repo::active_run(&self.db)
                    .await?
                    .map_or_else(|| "a scoring run".into(), |r| r.name());
                return Err(AppError::RunInProgress(name));
            }
            other => other?,
        };
        if let Written::Replayed(id) = written {
            // A concurrent retry started it: answer with that run.
            return Ok((self.get_run(&id).await?, false));
        }
        let app = self.clone();
        let started = run.clone();
        tokio::spawn(async move { app.coordinate(started).await });
        Ok((run, true))
    }

    /// Runs `run` on this replica while renewing its lease on it.
    async fn coordinate(&self, mut run: ScoringRun) {
        let renew = {
            let app = self.clone();
            let id = run.id.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(app.runs.run_lease / 3).await;
                    let until = now() + app.runs.run_lease;
                    match repo::renew_run(&app.db, &id, &app.replica, until).await {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(e) => tracing::warn!(run = %id, error = %e, "run lease not renewed"),
                    }
                }
            })
        };
        let _renew = AbortOnDrop(renew.abort_handle());
        let clock = std::time::Instant::now();
        let done = match run.observation_end {
            Some(end) => self.execute_backtest(&mut run, end).await,
            None => self.execute_run(&mut run).await,
        };
        crate::metrics::run_finished(
            run.observation_end.is_some(),
            done.is_ok(),
            clock.elapsed(),
            u64::try_from(run.customers_scored).unwrap_or(0),
        );
        if let Err(e) = done {
            tracing::warn!(run = %run.id, error = %e, "scoring run failed");
            if let Err(e) = repo::fail_run(&self.db, &run.id, &e.to_string(), now()).await {
                tracing::error!(run = %run.id, error = %e, "could not record the failed run");
            }
        }
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

    async fn progress(
        &self,
        run: &mut ScoringRun,
        stage: &str,
        percent: i32,
    ) -> Result<(), RunFailure> {
        run.state = RunState::Running;
        run.stage = stage.into();
        run.percent_complete = percent;
        if repo::save_run(&self.db, run).await? {
            Ok(())
        } else {
            Err(RunFailure::Lost)
        }
    }

    /// Fit over the whole population and write the run's pages; then score pages
    /// beside the other replicas until every page is done.
    async fn execute_run(&self, run: &mut ScoringRun) -> Result<(), RunFailure> {
        let at = now();
        self.progress(run, "fitting", 0).await?;
        let mut rows = Vec::new();
        // The fitting pass reads every id in order anyway: it also cuts the
        // population into pages by their last id, the work items of the scoring
        // pass that any replica may claim.
        let page_size = self.runs.page_size;
        let mut bounds = Vec::new();
        let mut seen: u64 = 0;
        let mut after: Option<String> = None;
        loop {
            let page =
                repo::page_features(&self.db, after.as_deref(), None, Some(5 * page_size), false)
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
                if seen.is_multiple_of(page_size) {
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

        // (after, upto] ranges covering every id, including any added since the
        // fitting pass; the last one is open-ended.
        let mut ranges = Vec::with_capacity(bounds.len() + 1);
        let mut lower: Option<String> = None;
        for b in bounds {
            ranges.push((lower.replace(b.clone()), Some(b)));
        }
        ranges.push((lower, None));
        let txn = self.db.begin().await?;
        if !repo::write_pages(&txn, &run.id, &self.replica, 30, &ranges).await? {
            return Err(RunFailure::Lost);
        }
        txn.commit().await?;
        tracing::info!(run = %run.id, pages = ranges.len(), "scoring pages written");
        // From here the run belongs to every replica: this one scores pages like
        // the others and watches for the end, which any of them may record.
        // Errors here are this replica's: the run goes on elsewhere and a page
        // left unfinished is claimed again when its lease lapses.
        loop {
            if let Err(e) = self.work_pages().await {
                tracing::warn!(run = %run.id, error = %e, "scoring pages failed here");
            }
            let watched = match self.finish_if_done(&run.id).await {
                Ok(_) => self.get_run(&run.id).await,
                Err(e) => Err(e),
            };
            match watched {
                Ok(current) if current.state == RunState::Succeeded => {
                    *run = current;
                    return Ok(());
                }
                Ok(current) if current.state == RunState::Failed => {
                    *run = current;
                    return Err(RunFailure::Other(run.error.clone()));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(run = %run.id, error = %e, "scoring run not watched"),
            }
            tokio::time::sleep(self.runs.poll).await;
        }
    }

    /// Claims and scores pages of the running run until none is left to claim,
    /// on up to `scoring.workers` scorers of this replica at once; returns how many
    /// customers this call scored. Every replica runs it every
    /// `scoring.worker_poll_ms`; the coordinator also runs it.
    pub async fn work_pages(&self) -> AppResult<u64> {
        // One read when idle, rather than a claim per scorer.
        let Some(run_id) = repo::scoring_run_id(&self.db).await? else {
            return Ok(0);
        };
        let mut scorers = Vec::new();
        while let Ok(permit) = self.scorers.clone().try_acquire_owned() {
            scorers.push(async move {
                let _permit = permit;
                let mut scored = 0;
                while let Some(n) = self.score_next_page().await? {
                    scored += n;
                }
                AppResult::Ok(scored)
            });
        }
        if scorers.is_empty() {
            // All of this replica's scorers are busy already.
            return Ok(0);
        }
        let scored = futures::future::try_join_all(scorers).await?.iter().sum();
        if scored > 0 {
            self.finish_if_done(&run_id).await?;
        }
        Ok(scored)
    }

    /// Claims one page and scores it; None when there is none to claim.
    async fn score_next_page(&self) -> AppResult<Option<u64>> {
        let at = now();
        let claim_id = uuid::Uuid::new_v4().simple().to_string();
        // One owner per claim, not per replica: a scorer of this replica whose
        // claim lapsed and was taken again (even by this replica) cannot commit.
        let owner = format!("{}/{}", self.replica, &claim_id[..12]);
        let Some(claim) = repo::claim_page(&self.db, &owner, at + self.runs.page_lease, at).await?
        else {
            return Ok(None);
        };
        if claim.attempts > MAX_PAGE_ATTEMPTS {
            let error = format!(
                "page {} could not be scored in {MAX_PAGE_ATTEMPTS} attempts",
                claim.page
            );
            repo::fail_run(&self.db, &claim.run_id, &error, now()).await?;
            tracing::warn!(run = %claim.run_id, page = claim.page, "scoring run failed: a page failed every attempt");
            return Ok(Some(0));
        }
        let cal = self.calibration_of(&claim.run_id).await?;
        let txn = self.db.begin().await?;
        let page = repo::page_features(
            &txn,
            claim.after.as_deref(),
            claim.upto.as_deref(),
            None,
            true,
        )
        .await?;
        let ids: Vec<String> = page.iter().map(|(id, _)| id.clone()).collect();
        let at = cal.fit_time;
        let evs = self.rescore_with(&txn, page, cal, at).await?;
        // In the page's own transaction: the page is done exactly when its
        // insights and events commit, and only under this claim.
        if !repo::complete_page(&txn, &claim, &owner, ids.len() as u64, now()).await? {
            drop(txn);
            tracing::warn!(run = %claim.run_id, page = claim.page,
                "scoring page claim lapsed and was taken over: its work is discarded");
            return Ok(Some(0));
        }
        self.outbox.commit(txn, evs).await?;
        self.invalidate(&ids).await;
        if let Err(e) = self.report_progress(&claim.run_id).await {
            tracing::warn!(run = %claim.run_id, error = %e, "scoring run progress not recorded");
        }
        Ok(Some(ids.len() as u64))
    }

    /// The run's percentage from its pages done (fitting was the first 30).
    async fn report_progress(&self, run_id: &str) -> Result<(), DbErr> {
        let (done, total) = repo::page_counts(&self.db, run_id).await?;
        let percent = 30 + (70 * done / total.max(1)).min(69) as i32;
        repo::raise_percent(&self.db, run_id, percent).await
    }

    /// The calibration run `run_id` fitted, read once per run.
    async fn calibration_of(&self, run_id: &str) -> AppResult<Arc<Calibration>> {
        if let Some(cal) = self.calibration.lock().map_err(poisoned)?.as_ref()
            && cal.scoring_run == run_id
        {
            return Ok(cal.clone());
        }
        let cal = repo::load_calibration(&self.db, run_id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("calibrations/{run_id}")))?;
        let cal = Arc::new(cal);
        *self.calibration.lock().map_err(poisoned)? = Some(cal.clone());
        Ok(cal)
    }

    /// Ends the run if all its pages are done; true if this call ended it.
    async fn finish_if_done(&self, run_id: &str) -> AppResult<bool> {
        let ended = repo::finish_if_done(&self.db, run_id, now()).await?;
        if ended {
            tracing::info!(run = %run_id, replica = %self.replica, "scoring run finished");
        }
        Ok(ended)
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
        if !repo::save_run(&self.db, run).await? {
            return Err(RunFailure::Lost);
        }
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
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> AppError {
    AppError::Db(DbErr::Custom("calibration cache poisoned".into()))
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
    #[error("the run was ended elsewhere: this replica's lease on it lapsed")]
    Lost,
}
