//! Use cases of the segmentation service. Every change to features, insights and
//! memberships commits in one transaction with its events (outbox) and, for
//! consumed events, with the inbox record that makes it exactly-once; the cache is
//! invalidated after the commit.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use retention_cache::Cache;
use retention_domain::now;
use retention_errors::FieldViolations;
use retention_events::{EventsError, Outbox, OutboxEvent, Written};
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};

mod changes;
mod report;
mod runs;

pub use crate::domain::portfolio::PortfolioReport;

use crate::domain::calibration::Calibration;
use crate::domain::filter::OrderBy;
use crate::domain::scoring::{Insight, ScoringConfig};
use crate::domain::segments::*;
use crate::events::publish;
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
    /// A consumed change that can never be folded (poison): refused for good.
    #[error(transparent)]
    Fold(#[from] crate::domain::features::FoldError),
}

pub type AppResult<T> = Result<T, AppError>;

/// Rows the report reads per query.
const RUN_PAGE: u64 = 1000;
/// How scoring runs are shared between replicas (`scoring.*`): page size, the
/// coordinator's lease on its run and each replica's lease on a claimed page.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Customers per page (one claim, one transaction).
    pub page_size: u64,
    pub run_lease: Duration,
    pub page_lease: Duration,
    /// How often replicas look for pages to claim.
    pub poll: Duration,
    /// Pages in flight at once in this replica (`scoring.workers`): while one
    /// page's writes run in PostgreSQL, the next is scored here.
    pub workers: usize,
}

impl RunOptions {
    pub fn from_settings(s: &retention_config::ScoringSettings) -> Self {
        RunOptions {
            page_size: s.page_size.max(1),
            run_lease: Duration::from_secs(s.run_lease_secs.max(1)),
            page_lease: Duration::from_secs(s.page_lease_secs.max(1)),
            poll: Duration::from_millis(s.worker_poll_ms.max(1)),
            workers: usize::try_from(s.workers.max(1)).unwrap_or(usize::MAX),
        }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self::from_settings(&retention_config::ScoringSettings::default())
    }
}

#[derive(Clone)]
pub struct SegmentationApp {
    pub db: DatabaseConnection,
    pub cache: Cache,
    pub cfg: Arc<ScoringConfig>,
    /// Commits changes with their events; keeps request ids (AIP-155).
    outbox: Outbox,
    runs: Arc<RunOptions>,
    /// This replica's name on the runs it coordinates and the pages it claims:
    /// the pod's host name where there is one (for operators), made unique.
    replica: Arc<str>,
    /// Page scorers of this replica: its coordinator and its worker job share
    /// them (SQLite has one connection, so one there).
    scorers: Arc<tokio::sync::Semaphore>,
    /// The calibration of the run being scored, read once per run.
    calibration: Arc<std::sync::Mutex<Option<Arc<Calibration>>>>,
}

/// The page scorers of a replica: `runs.workers` on PostgreSQL, one on SQLite
/// (one connection).
fn scorers_for(db: &DatabaseConnection, runs: &RunOptions) -> Arc<tokio::sync::Semaphore> {
    let n = if retention_db::is_postgres(db) {
        runs.workers
    } else {
        1
    };
    Arc::new(tokio::sync::Semaphore::new(n))
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn cache_key(customer_id: &str) -> String {
    format!("insight:{customer_id}")
}

/// The segment, locked for `txn`, if `etag` (when given) is still current.
async fn load_checked(txn: &DatabaseTransaction, id: &str, etag: &str) -> AppResult<Segment> {
    let s = repo::load_segment(txn, id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("segments/{id}")))?;
    if !etag.is_empty() && etag != s.etag() {
        return Err(AppError::EtagMismatch {
            name: s.name(),
            sent: etag.into(),
            current: s.etag(),
        });
    }
    Ok(s)
}

impl SegmentationApp {
    pub fn new(outbox: Outbox, cache: Cache, cfg: ScoringConfig) -> Self {
        let db = outbox.db().clone();
        let runs = RunOptions::default();
        let scorers = scorers_for(&db, &runs);
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let replica = match std::env::var("HOSTNAME") {
            // Bounded: the owner columns hold 100 characters with the claim id.
            Ok(host) if !host.is_empty() => {
                let host: String = host.chars().take(60).collect();
                format!("{host}/{}", &unique[..12])
            }
            _ => unique[..12].to_string(),
        };
        SegmentationApp {
            db,
            cache,
            cfg: Arc::new(cfg),
            outbox,
            scorers,
            runs: Arc::new(runs),
            replica: replica.into(),
            calibration: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// The same app with `runs` as its run options.
    pub fn with_runs(mut self, runs: RunOptions) -> Self {
        self.scorers = scorers_for(&self.db, &runs);
        self.runs = Arc::new(runs);
        self
    }

    /// This replica's name on runs and pages.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    async fn invalidate(&self, ids: &[String]) {
        let keys: Vec<String> = ids.iter().map(|id| cache_key(id)).collect();
        // One round trip and one wait for the replicas' acknowledgements for
        // the whole page, not one per key.
        self.cache.invalidate_many(&keys).await;
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
            .map(|(seg, c)| publish::membership_changed(seg, c, true, at))
            .chain(
                left.iter()
                    .map(|(seg, c)| publish::membership_changed(seg, c, false, at)),
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
        if let Some(id) = self.outbox.replay("CreateSegment", request_id).await? {
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
        let id = s.id.clone();
        let written = self
            .outbox
            .write("CreateSegment", request_id, &id, async |txn| {
                repo::insert_segment(txn, &s).await?;
                let evs = self.materialise(txn, &s, &expr, at).await?;
                let count = repo::member_count(txn, &s.id).await?;
                AppResult::Ok(((s, count), evs))
            })
            .await?;
        match written {
            Written::Done(created) => Ok(created),
            Written::Replayed(id) => self.get_segment(&id).await,
        }
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
        let mut s = load_checked(&txn, id, etag).await?;
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
        self.outbox.commit(txn, evs).await?;
        Ok((s, n))
    }

    /// Deletes the segment; its members leave it (published).
    pub async fn delete_segment(&self, id: &str, etag: &str) -> AppResult<()> {
        let txn = self.db.begin().await?;
        load_checked(&txn, id, etag).await?;
        let at = now();
        let mut members: Vec<String> = repo::members_of(&txn, id).await?.into_iter().collect();
        members.sort();
        repo::delete_segment(&txn, id).await?;
        let evs = members
            .iter()
            .map(|c| publish::membership_changed(id, c, false, at))
            .collect();
        Ok(self.outbox.commit(txn, evs).await?)
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
}
