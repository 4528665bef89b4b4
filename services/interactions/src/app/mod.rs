//! Use cases of the interactions service: each change and its events commit in one
//! transaction (outbox), complaints change only through the state machine, and the
//! SLA sweep records each breach exactly once even with several replicas.
//!
//! Contacts and surveys live here; complaints (`complaints`), their clocks and
//! the sweep (`clocks`), SLA policies and calendars (`calendars`) and the SLA
//! report (`report`) each have their own file.

mod calendars;
mod clocks;
mod complaints;
mod report;

pub use clocks::Swept;

use chrono::{DateTime, Utc};
use retention_errors::FieldViolations;
use retention_events::{EventsError, Outbox, OutboxEvent, ReplayCounts, Written};
use sea_orm::{DatabaseConnection, DbErr, TransactionTrait};

use crate::domain::calendar::{BusinessCalendar, CalendarDefinition, DeadlineBeyondHorizon};
use crate::domain::*;
use crate::events::publish as events;
use crate::store::repo::{self, ComplaintQuery, InteractionQuery};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid request")]
    Invalid(FieldViolations),
    #[error("{0} not found")]
    NotFound(String),
    #[error("etag mismatch on {name}")]
    EtagMismatch {
        name: String,
        sent: String,
        current: String,
    },
    #[error("{name}: {source}")]
    Illegal {
        name: String,
        source: IllegalTransition,
    },
    #[error("{name}: {source}")]
    Unschedulable {
        name: String,
        source: DeadlineBeyondHorizon,
    },
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error(transparent)]
    Events(#[from] EventsError),
}

pub type AppResult<T> = Result<T, AppError>;

/// A complaint as submitted.
#[derive(Debug, Clone)]
pub struct NewComplaint {
    pub customer_id: String,
    pub category: ComplaintCategory,
    pub severity: Severity,
    pub priority: Option<Priority>,
    pub channel: Option<Channel>,
    pub subject: String,
    pub description: String,
}

#[derive(Clone)]
pub struct InteractionsApp {
    pub db: DatabaseConnection,
    outbox: Outbox,
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn complaint_name(id: &str) -> String {
    format!("complaints/{id}")
}

/// A deadline `calendar_id`'s calendar cannot place (holidays past the horizon).
fn unschedulable(calendar_id: Option<&str>, source: DeadlineBeyondHorizon) -> AppError {
    AppError::Unschedulable {
        name: calendar_id.map(calendar_name).unwrap_or_default(),
        source,
    }
}

fn etag_of(version: i64) -> String {
    format!("\"{version}\"")
}

impl InteractionsApp {
    pub fn new(outbox: Outbox) -> Self {
        InteractionsApp {
            db: outbox.db().clone(),
            outbox,
        }
    }

    pub async fn log_interaction(
        &self,
        mut i: Interaction,
        request_id: &str,
    ) -> AppResult<Interaction> {
        if let Some(id) = self.outbox.replay("LogInteraction", request_id).await? {
            return self.find_interaction(id).await;
        }
        if let Some(cid) = &i.complaint_id {
            repo::load_complaint(&self.db, cid)
                .await?
                .ok_or_else(|| AppError::NotFound(complaint_name(cid)))?;
        }
        i.id = new_id();
        let written = self
            .outbox
            .write("LogInteraction", request_id, &i.id, async |txn| {
                repo::insert_interaction(txn, &i).await?;
                let mut evs = vec![events::interaction_logged(&i)];
                let (late, clock_evs) = self.complaint_clocks(txn, &i).await?;
                evs.extend(clock_evs);
                AppResult::Ok((late, evs))
            })
            .await?;
        match written {
            Written::Done(late) => {
                crate::metrics::sla_breached(&late);
                Ok(i)
            }
            Written::Replayed(id) => self.find_interaction(id).await,
        }
    }

    async fn find_interaction(&self, id: String) -> AppResult<Interaction> {
        repo::find_interaction(&self.db, &id)
            .await?
            .ok_or(AppError::NotFound(id))
    }

    pub async fn list_interactions(
        &self,
        q: &InteractionQuery,
        before: Option<(DateTime<Utc>, String)>,
        limit: u64,
    ) -> AppResult<Vec<Interaction>> {
        Ok(repo::list_interactions(&self.db, q, before, limit).await?)
    }

    pub async fn record_survey(&self, mut s: Survey, request_id: &str) -> AppResult<Survey> {
        if let Some(id) = self.outbox.replay("RecordSurvey", request_id).await? {
            return self.find_survey(id).await;
        }
        if let Some(cid) = &s.complaint_id {
            repo::load_complaint(&self.db, cid)
                .await?
                .ok_or_else(|| AppError::NotFound(complaint_name(cid)))?;
        }
        s.id = new_id();
        let written = self
            .outbox
            .write("RecordSurvey", request_id, &s.id, async |txn| {
                repo::insert_survey(txn, &s).await?;
                AppResult::Ok(((), vec![events::survey_recorded(&s)]))
            })
            .await?;
        match written {
            Written::Done(()) => Ok(s),
            Written::Replayed(id) => self.find_survey(id).await,
        }
    }

    async fn find_survey(&self, id: String) -> AppResult<Survey> {
        repo::find_survey(&self.db, &id)
            .await?
            .ok_or(AppError::NotFound(id))
    }

    pub async fn summary(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        category: Option<ComplaintCategory>,
    ) -> AppResult<SatisfactionSummary> {
        let complaints = repo::complaints_opened(&self.db, start, end, category).await?;
        let ids: Vec<String> = complaints.iter().map(|c| c.id.clone()).collect();
        let surveys =
            repo::surveys_between(&self.db, start, end, category.map(|_| ids.as_slice())).await?;
        Ok(summarize(&surveys, &complaints))
    }

    /// Replays the complaints and surveys of up to `limit` customers with ids in
    /// [`from`, `to`) after `after` as events for `group` alone, in one
    /// transaction through the outbox; the relay is woken once it commits.
    pub async fn backfill(
        &self,
        group: &str,
        from: Option<&str>,
        to: Option<&str>,
        after: Option<&str>,
        limit: u64,
        audit: &retention_db::audit::AuditEntry,
    ) -> AppResult<ReplayCounts> {
        let txn = self.db.begin().await?;
        let (page, more) = repo::customers_for_replay(&txn, from, to, after, limit).await?;
        let evs: Vec<OutboxEvent> = page.iter().flat_map(|r| events::replay(r, group)).collect();
        let counts = ReplayCounts::of(
            page.len(),
            &evs,
            page.last().filter(|_| more).map(|r| r.customer_id.clone()),
        );
        retention_db::audit::append(&txn, audit).await?;
        self.outbox.commit(txn, evs).await?;
        Ok(counts)
    }
}
