//! Use cases of the interactions service: each change and its events commit in one
//! transaction (outbox), complaints change only through the state machine, and the
//! SLA sweep records each breach exactly once even with several replicas.

use chrono::{DateTime, Utc};
use retention_errors::FieldViolations;
use retention_events::{EventsError, Outbox, OutboxEvent, ReplayCounts, Written};
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};

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

/// What a caller asks of a complaint; pausing and resuming need the complaint's
/// clock, which only the app can read.
enum Step {
    Act(Action),
    Pause,
    Resume,
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

    /// What an interaction logged for a complaint does to its clocks. The
    /// customer's inbound message resumes a complaint waiting on them (as of the
    /// message; one from before the wait began does not) and starts the
    /// next-response clock; an outbound message answers and stops it. Only
    /// interactions logged for the complaint count: help desks thread a reply to
    /// its ticket, and a customer may have several complaints.
    async fn complaint_clocks(
        &self,
        txn: &DatabaseTransaction,
        i: &Interaction,
    ) -> AppResult<(Vec<(SlaTarget, Priority)>, Vec<OutboxEvent>)> {
        let Some(cid) = &i.complaint_id else {
            return Ok(Default::default());
        };
        let Some(mut c) = repo::load_complaint(txn, cid).await? else {
            return Ok(Default::default());
        };
        let expected = c.version;
        let t = now();
        let at = i.occur_time;
        let mut evs = Vec::new();
        let mut breaches = Vec::new();
        let mut resumed = false;
        match i.direction {
            Direction::Inbound => {
                let waiting_since = match (c.state, c.holds.last()) {
                    (ComplaintState::WaitingOnCustomer, Some(h)) => Some(h.start_time),
                    _ => None,
                };
                if waiting_since.is_some_and(|since| i.occur_time >= since) {
                    let resume = self.resume_action(txn, &c, at, Some(i.id.clone())).await?;
                    c.apply(resume, at).map_err(|source| AppError::Illegal {
                        name: complaint_name(cid),
                        source,
                    })?;
                    c.update_time = t;
                    resumed = true;
                    evs.push(events::status_changed(
                        &c,
                        ComplaintState::WaitingOnCustomer,
                    ));
                }
                let calendar = match c.next_response_target {
                    Some(_) => self.complaint_calendar(txn, &c).await?,
                    None => None,
                };
                if let Some(due) = c.next_response_due_for(at, calendar.as_ref()) {
                    let due =
                        due.map_err(|source| unschedulable(c.calendar_id.as_deref(), source))?;
                    c.start_next_response(due, t);
                }
            }
            Direction::Outbound => {
                if let Some(due) = c.stop_next_response(at, t) {
                    breaches.push(SlaTarget::NextResponse);
                    evs.push(events::sla_breached_at(
                        &c,
                        SlaTarget::NextResponse,
                        Some(due),
                    ));
                }
            }
        }
        if c.version == expected {
            return Ok((Vec::new(), evs));
        }
        if !repo::update_complaint(txn, &c, expected).await? {
            return Err(AppError::EtagMismatch {
                name: complaint_name(cid),
                sent: etag_of(expected),
                current: "(changed concurrently)".into(),
            });
        }
        if resumed {
            repo::save_last_hold(txn, &c).await?;
        }
        let breaches = breaches.into_iter().map(|b| (b, c.priority)).collect();
        Ok((breaches, evs))
    }

    /// The calendar a complaint's clock counts in (the one its policy named when
    /// it was opened), if any.
    async fn complaint_calendar(
        &self,
        txn: &DatabaseTransaction,
        c: &Complaint,
    ) -> AppResult<Option<BusinessCalendar>> {
        match &c.calendar_id {
            Some(id) => Ok(Some(self.business_calendar(txn, id).await?)),
            None => Ok(None),
        }
    }

    /// Resuming `c` at `at`: the resolution is due the time it had left when it
    /// began to wait, counted from `at`.
    async fn resume_action(
        &self,
        txn: &DatabaseTransaction,
        c: &Complaint,
        at: DateTime<Utc>,
        by: Option<String>,
    ) -> AppResult<Action> {
        let calendar = self.complaint_calendar(txn, c).await?;
        let resolution_due = c
            .resumed_resolution_due(at, calendar.as_ref())
            .map_err(|source| unschedulable(c.calendar_id.as_deref(), source))?;
        Ok(Action::Resume { resolution_due, by })
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

    pub async fn open_complaint(&self, n: NewComplaint, request_id: &str) -> AppResult<Complaint> {
        self.open_complaint_at(n, request_id, now()).await
    }

    /// [`Self::open_complaint`] as if opened at `t` (tests choose the moment).
    pub async fn open_complaint_at(
        &self,
        n: NewComplaint,
        request_id: &str,
        t: DateTime<Utc>,
    ) -> AppResult<Complaint> {
        if let Some(id) = self.outbox.replay("OpenComplaint", request_id).await? {
            return self.get_complaint(&id).await;
        }
        let id = new_id();
        let written = self
            .outbox
            .write("OpenComplaint", request_id, &id, async |txn| {
                let c = self.new_complaint(txn, id.clone(), n, t).await?;
                repo::insert_complaint(txn, &c).await?;
                let evs = vec![events::complaint_opened(&c)];
                AppResult::Ok((c, evs))
            })
            .await?;
        match written {
            Written::Done(c) => Ok(c),
            Written::Replayed(id) => self.get_complaint(&id).await,
        }
    }

    /// A complaint as opened at `t`: priority from its severity unless given, SLA
    /// targets of the priority and the customer's tier, counted in the policy's
    /// calendar when it names one. The due times are fixed here: a later change of
    /// the policy or its calendar leaves them as they are.
    async fn new_complaint(
        &self,
        txn: &DatabaseTransaction,
        id: String,
        n: NewComplaint,
        t: DateTime<Utc>,
    ) -> AppResult<Complaint> {
        let tier = repo::tier_of(txn, &n.customer_id).await?;
        let priority = n.priority.unwrap_or_else(|| default_priority(n.severity));
        let policy = repo::policy_for(txn, priority, tier).await?;
        let calendar = match &policy.calendar_id {
            Some(cid) => Some(self.business_calendar(txn, cid).await?),
            None => None,
        };
        let (first_response_due, resolution_due) =
            policy
                .targets
                .due_times(t, calendar.as_ref())
                .map_err(|source| unschedulable(policy.calendar_id.as_deref(), source))?;
        Ok(Complaint {
            id,
            customer_id: n.customer_id.clone(),
            category: n.category,
            severity: n.severity,
            priority,
            channel: n.channel,
            subject: n.subject.clone(),
            description: n.description.clone(),
            state: ComplaintState::Open,
            assignee: None,
            escalation_level: 0,
            customer_tier: tier,
            open_time: t,
            first_response_time: None,
            first_response_due,
            resolution_due,
            first_response_breached: false,
            resolution_breached: false,
            resolution: None,
            reopen_count: 0,
            close_time: None,
            update_time: t,
            version: 1,
            calendar_id: policy.calendar_id.clone(),
            resolution_remaining: None,
            holds: Vec::new(),
            next_response_target: policy.targets.next_response,
            next_response_due: None,
            next_response_breached: false,
        })
    }

    pub async fn get_complaint(&self, id: &str) -> AppResult<Complaint> {
        repo::load_complaint(&self.db, id)
            .await?
            .ok_or_else(|| AppError::NotFound(complaint_name(id)))
    }

    pub async fn list_complaints(
        &self,
        q: &ComplaintQuery,
        before: Option<(DateTime<Utc>, String)>,
        limit: u64,
    ) -> AppResult<Vec<Complaint>> {
        Ok(repo::list_complaints(&self.db, q, before, limit).await?)
    }

    /// One state-machine step, guarded by the etag when given. Resolving a
    /// complaint that waits on the customer resumes it first.
    pub async fn act(&self, id: &str, action: Action, etag: &str) -> AppResult<Complaint> {
        self.act_at(id, action, etag, now()).await
    }

    /// [`Self::act`] as if at `t` (tests choose the moment).
    pub async fn act_at(
        &self,
        id: &str,
        action: Action,
        etag: &str,
        t: DateTime<Utc>,
    ) -> AppResult<Complaint> {
        self.step(id, Step::Act(action), etag, t).await
    }

    /// Stops the resolution clock of complaint `id`: it waits on the customer.
    pub async fn pause_complaint(&self, id: &str, etag: &str) -> AppResult<Complaint> {
        self.pause_complaint_at(id, etag, now()).await
    }

    /// [`Self::pause_complaint`] as if paused at `t` (tests choose the moment).
    pub async fn pause_complaint_at(
        &self,
        id: &str,
        etag: &str,
        t: DateTime<Utc>,
    ) -> AppResult<Complaint> {
        self.step(id, Step::Pause, etag, t).await
    }

    /// Runs the resolution clock of complaint `id` again.
    pub async fn resume_complaint(&self, id: &str, etag: &str) -> AppResult<Complaint> {
        self.resume_complaint_at(id, etag, now()).await
    }

    /// [`Self::resume_complaint`] as if resumed at `t` (tests choose the moment).
    pub async fn resume_complaint_at(
        &self,
        id: &str,
        etag: &str,
        t: DateTime<Utc>,
    ) -> AppResult<Complaint> {
        self.step(id, Step::Resume, etag, t).await
    }

    async fn step(
        &self,
        id: &str,
        step: Step,
        etag: &str,
        at: DateTime<Utc>,
    ) -> AppResult<Complaint> {
        let txn = self.db.begin().await?;
        let mut c = repo::load_complaint(&txn, id)
            .await?
            .ok_or_else(|| AppError::NotFound(complaint_name(id)))?;
        let current = etag_of(c.version);
        if !etag.is_empty() && etag != current {
            return Err(AppError::EtagMismatch {
                name: complaint_name(id),
                sent: etag.into(),
                current,
            });
        }
        let expected = c.version;
        let waiting = c.state == ComplaintState::WaitingOnCustomer;
        let actions = match step {
            Step::Pause => {
                let calendar = self.complaint_calendar(&txn, &c).await?;
                let remaining = c.remaining_resolution_time(at, calendar.as_ref());
                vec![Action::Pause { remaining }]
            }
            Step::Resume if waiting => vec![self.resume_action(&txn, &c, at, None).await?],
            // Not waiting: the state machine refuses it.
            Step::Resume => vec![Action::Resume {
                resolution_due: c.resolution_due,
                by: None,
            }],
            Step::Act(resolve @ Action::Resolve(_)) if waiting => {
                vec![self.resume_action(&txn, &c, at, None).await?, resolve]
            }
            Step::Act(action) => vec![action],
        };
        let holds_before = c.holds.clone();
        let mut evs = Vec::new();
        // Asking the customer and resolving both answer them.
        let answers = actions
            .iter()
            .any(|a| matches!(a, Action::Pause { .. } | Action::Resolve(_)));
        let mut late: Vec<(SlaTarget, Option<DateTime<Utc>>)> = Vec::new();
        if answers && let Some(due) = c.stop_next_response(at, at) {
            late.push((SlaTarget::NextResponse, Some(due)));
        }
        for action in actions {
            let from = c.state;
            c.apply(action, at).map_err(|source| AppError::Illegal {
                name: complaint_name(id),
                source,
            })?;
            evs.push(events::status_changed(&c, from));
        }
        // A response or resolution after its due time is a breach the sweep may not
        // have seen yet: record it with this change.
        late.extend(
            c.detect_breaches(at)
                .into_iter()
                .map(|target| (target, None)),
        );
        if !repo::update_complaint(&txn, &c, expected).await? {
            return Err(AppError::EtagMismatch {
                name: complaint_name(id),
                sent: etag_of(expected),
                current: "(changed concurrently)".into(),
            });
        }
        if c.holds != holds_before {
            repo::save_last_hold(&txn, &c).await?;
        }
        evs.extend(late.iter().map(|(b, due)| match due {
            Some(due) => events::sla_breached_at(&c, *b, Some(*due)),
            None => events::sla_breached(&c, *b),
        }));
        if let (ComplaintState::Resolved, Some(r)) = (c.state, c.resolution.as_ref()) {
            evs.push(events::complaint_resolved(&c, r));
        }
        self.outbox.commit(txn, evs).await?;
        let late: Vec<_> = late.into_iter().map(|(b, _)| (b, c.priority)).collect();
        crate::metrics::sla_breached(&late);
        Ok(c)
    }

    async fn business_calendar(
        &self,
        txn: &DatabaseTransaction,
        id: &str,
    ) -> AppResult<BusinessCalendar> {
        let stored = repo::load_calendar(txn, id)
            .await?
            .ok_or_else(|| AppError::NotFound(calendar_name(id)))?;
        // Stored definitions were validated on the way in; failing here means the
        // row was changed behind the service's back.
        BusinessCalendar::new(stored.definition)
            .map_err(|e| AppError::Db(DbErr::Type(format!("{}: {e}", calendar_name(id)))))
    }

    /// Replaces the policy of its priority and tier; a calendar it names must exist.
    pub async fn create_policy(&self, p: &SlaPolicy) -> AppResult<()> {
        let txn = self.db.begin().await?;
        if let Some(cid) = &p.calendar_id
            && repo::load_calendar(&txn, cid).await?.is_none()
        {
            let mut v = FieldViolations::new();
            v.add(
                "policy.calendar",
                format!("no calendar {}", calendar_name(cid)),
            );
            return Err(AppError::Invalid(v));
        }
        repo::upsert_policy(&txn, p).await?;
        txn.commit().await?;
        Ok(())
    }

    pub async fn list_policies(&self) -> AppResult<Vec<SlaPolicy>> {
        Ok(repo::list_policies(&self.db).await?)
    }

    /// Stores a calendar the caller validated. Idempotent on `request_id`.
    pub async fn create_calendar(
        &self,
        definition: CalendarDefinition,
        request_id: &str,
    ) -> AppResult<StoredCalendar> {
        if let Some(id) = self
            .outbox
            .replay("CreateBusinessCalendar", request_id)
            .await?
        {
            return self.get_calendar(&id).await;
        }
        let t = now();
        let c = StoredCalendar {
            id: new_id(),
            definition,
            version: 1,
            create_time: t,
            update_time: t,
        };
        let written = self
            .outbox
            .write("CreateBusinessCalendar", request_id, &c.id, async |txn| {
                repo::insert_calendar(txn, &c).await?;
                AppResult::Ok(((), Vec::new()))
            })
            .await?;
        match written {
            Written::Done(()) => Ok(c),
            Written::Replayed(id) => self.get_calendar(&id).await,
        }
    }

    pub async fn get_calendar(&self, id: &str) -> AppResult<StoredCalendar> {
        repo::load_calendar(&self.db, id)
            .await?
            .ok_or_else(|| AppError::NotFound(calendar_name(id)))
    }

    pub async fn list_calendars(
        &self,
        after: Option<&str>,
        limit: u64,
    ) -> AppResult<Vec<StoredCalendar>> {
        Ok(repo::list_calendars(&self.db, after, limit).await?)
    }

    /// Replaces the definition of calendar `id` (validated by the caller), guarded
    /// by the etag when given. Complaints already open keep the due times computed
    /// when they were opened: a complaint's promise to the customer does not move
    /// because the office changed its hours afterwards.
    pub async fn update_calendar(
        &self,
        id: &str,
        definition: CalendarDefinition,
        etag: &str,
    ) -> AppResult<StoredCalendar> {
        let txn = self.db.begin().await?;
        let mut c = repo::load_calendar(&txn, id)
            .await?
            .ok_or_else(|| AppError::NotFound(calendar_name(id)))?;
        let current = etag_of(c.version);
        if !etag.is_empty() && etag != current {
            return Err(AppError::EtagMismatch {
                name: calendar_name(id),
                sent: etag.into(),
                current,
            });
        }
        let expected = c.version;
        c.definition = definition;
        c.version += 1;
        c.update_time = now();
        if !repo::update_calendar(&txn, &c, expected).await? {
            return Err(AppError::EtagMismatch {
                name: calendar_name(id),
                sent: etag_of(expected),
                current: "(changed concurrently)".into(),
            });
        }
        txn.commit().await?;
        Ok(c)
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

    /// Records SLA breaches due by `at`; returns how many were recorded. Each
    /// complaint's breach flag and its event commit together, and PostgreSQL rows are
    /// claimed with SKIP LOCKED, so every breach is reported once across restarts
    /// and replicas.
    pub async fn sweep(&self, at: DateTime<Utc>) -> AppResult<usize> {
        let mut recorded = 0;
        let mut busy_retries = 0;
        loop {
            match self.sweep_batch(at).await {
                Ok(0) => return Ok(recorded),
                Ok(n) => recorded += n,
                // SQLite shared by two processes: a concurrent writer makes this
                // transaction's snapshot stale (SQLITE_BUSY_SNAPSHOT); start it again.
                Err(AppError::Db(e)) if is_sqlite_busy(&e) && busy_retries < 50 => {
                    busy_retries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(5 * busy_retries)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One claimed batch; returns the breaches it recorded (0 when nothing is due).
    async fn sweep_batch(&self, at: DateTime<Utc>) -> AppResult<usize> {
        let txn = self.db.begin().await?;
        let mut recorded = Vec::new();
        let mut evs = Vec::new();
        for mut c in repo::due_for_sweep(&txn, at, 100).await? {
            let expected = c.version;
            let breaches = c.detect_breaches(at);
            if !breaches.is_empty() && repo::update_complaint(&txn, &c, expected).await? {
                recorded.extend(breaches.iter().map(|b| (*b, c.priority)));
                evs.extend(breaches.into_iter().map(|b| events::sla_breached(&c, b)));
            }
        }
        self.outbox.commit(txn, evs).await?;
        crate::metrics::sla_breached(&recorded);
        Ok(recorded.len())
    }
}

fn is_sqlite_busy(e: &DbErr) -> bool {
    e.to_string().contains("database is locked")
}
