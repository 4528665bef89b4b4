//! A complaint's clocks: what logged interactions do to them, pausing and
//! resuming, and the sweep that records breaches exactly once.

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseTransaction, DbErr, TransactionTrait};

use super::*;

/// What a sweep reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// SLA targets recorded as breached (ComplaintSlaBreached events).
    pub breaches: usize,
    /// SLA targets recorded as at risk (ComplaintSlaAtRisk events).
    pub warnings: usize,
}

impl InteractionsApp {
    /// What an interaction logged for a complaint does to its clocks. The
    /// customer's inbound message resumes a complaint waiting on them (as of the
    /// message; one from before the wait began does not) and starts the
    /// next-response clock; an outbound message answers and stops it. Only
    /// interactions logged for the complaint count: help desks thread a reply to
    /// its ticket, and a customer may have several complaints.
    pub(super) async fn complaint_clocks(
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
                    let unplaceable = |source| unschedulable(c.calendar_id.as_deref(), source);
                    let due = due.map_err(unplaceable)?;
                    let warn = c
                        .next_response_target
                        .and_then(|target| {
                            c.warnings
                                .next_response_time_for(at, target, calendar.as_ref())
                        })
                        .transpose()
                        .map_err(unplaceable)?;
                    c.start_next_response(due, warn, t);
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
    pub(super) async fn complaint_calendar(
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
    pub(super) async fn resume_action(
        &self,
        txn: &DatabaseTransaction,
        c: &Complaint,
        at: DateTime<Utc>,
        by: Option<String>,
    ) -> AppResult<Action> {
        let calendar = self.complaint_calendar(txn, c).await?;
        let unplaceable = |source| unschedulable(c.calendar_id.as_deref(), source);
        let resolution_due = c
            .resumed_resolution_due(at, calendar.as_ref())
            .map_err(unplaceable)?;
        let remaining = c
            .resolution_remaining
            .unwrap_or_else(chrono::Duration::zero);
        let resolution_warn = c
            .warnings
            .resumed_resolution_time(at, remaining, calendar.as_ref())
            .transpose()
            .map_err(unplaceable)?;
        Ok(Action::Resume {
            resolution_due,
            resolution_warn,
            by,
        })
    }

    /// Records the SLA breaches due by `at` and the warnings of targets at risk
    /// by then. Each complaint's flags and their events commit together, and
    /// PostgreSQL rows are claimed with SKIP LOCKED, so every breach and warning is
    /// reported once across restarts and replicas.
    pub async fn sweep(&self, at: DateTime<Utc>) -> AppResult<Swept> {
        let mut swept = Swept::default();
        let mut busy_retries = 0;
        loop {
            match self.sweep_batch(at).await {
                Ok((0, _)) => return Ok(swept),
                Ok((_, batch)) => {
                    swept.breaches += batch.breaches;
                    swept.warnings += batch.warnings;
                }
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

    /// One claimed batch: how many complaints it changed (0 when nothing is
    /// due) and what it reported.
    async fn sweep_batch(&self, at: DateTime<Utc>) -> AppResult<(usize, Swept)> {
        let txn = self.db.begin().await?;
        let mut recorded = Vec::new();
        let mut evs = Vec::new();
        let mut warned = Vec::new();
        let mut claimed = 0;
        for mut c in repo::due_for_sweep(&txn, at, 100).await? {
            let expected = c.version;
            let from = c.state;
            let at_risk = c.detect_at_risk(at);
            let breaches = c.detect_breaches(at);
            if c.version == expected || !repo::update_complaint(&txn, &c, expected).await? {
                continue;
            }
            claimed += 1;
            warned.extend(at_risk.targets.iter().map(|w| (*w, c.priority)));
            evs.extend(
                at_risk
                    .targets
                    .iter()
                    .map(|w| events::sla_at_risk(&c, *w, at_risk.escalated)),
            );
            if at_risk.escalated {
                evs.push(events::status_changed(&c, from));
            }
            recorded.extend(breaches.iter().map(|b| (*b, c.priority)));
            evs.extend(breaches.into_iter().map(|b| events::sla_breached(&c, b)));
        }
        self.outbox.commit(txn, evs).await?;
        crate::metrics::sla_breached(&recorded);
        crate::metrics::sla_at_risk(&warned);
        let swept = Swept {
            breaches: recorded.len(),
            warnings: warned.len(),
        };
        Ok((claimed, swept))
    }
}

fn is_sqlite_busy(e: &DbErr) -> bool {
    e.to_string().contains("database is locked")
}
