//! Opening complaints and moving them through the state machine.

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseTransaction, TransactionTrait};

use super::*;

/// What a caller asks of a complaint; pausing and resuming need the complaint's
/// clock, which only the app can read.
enum Step {
    Act(Action),
    Pause,
    Resume,
}

impl InteractionsApp {
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
    pub(super) async fn new_complaint(
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
        let unplaceable = |source| unschedulable(policy.calendar_id.as_deref(), source);
        let (first_response_due, resolution_due) = policy
            .targets
            .due_times(t, calendar.as_ref())
            .map_err(unplaceable)?;
        let warnings =
            SlaWarnings::at_open(&policy.targets, t, calendar.as_ref()).map_err(unplaceable)?;
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
            team: None,
            warnings,
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
                resolution_warn: None,
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
}
