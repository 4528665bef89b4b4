//! Complaints and their holds: writes under a version check, listing, the
//! sweep's claim.

use super::*;

fn complaint_active(c: &Complaint) -> complaint::ActiveModel {
    let r = c.resolution.as_ref();
    let w = &c.warnings;
    complaint::ActiveModel {
        id: Set(c.id.clone()),
        customer_id: Set(c.customer_id.clone()),
        category: Set(c.category.as_str().into()),
        severity: Set(c.severity.as_str().into()),
        priority: Set(c.priority.as_str().into()),
        channel: Set(c.channel.map(|x| x.as_str().into())),
        subject: Set(c.subject.clone()),
        description: Set(c.description.clone()),
        state: Set(c.state.as_str().into()),
        assignee: Set(c.assignee.clone()),
        escalation_level: Set(c.escalation_level),
        customer_tier: Set(c.customer_tier.as_str().into()),
        open_time: Set(c.open_time),
        first_response_time: Set(c.first_response_time),
        first_response_due: Set(c.first_response_due),
        resolution_due: Set(c.resolution_due),
        first_response_breached: Set(c.first_response_breached),
        resolution_breached: Set(c.resolution_breached),
        resolution_outcome: Set(r.map(|r| r.outcome.as_str().into())),
        compensation_minor: Set(r
            .and_then(|r| r.compensation.as_ref())
            .map(|m| m.minor_units)),
        compensation_currency: Set(r
            .and_then(|r| r.compensation.as_ref())
            .map(|m| m.currency.clone())),
        root_cause: Set(r.map(|r| r.root_cause.clone())),
        service_gap: Set(r.and_then(|r| r.service_gap).map(|g| g.as_str().into())),
        resolve_time: Set(r.map(|r| r.resolve_time)),
        reopen_count: Set(c.reopen_count),
        close_time: Set(c.close_time),
        update_time: Set(c.update_time),
        version: Set(c.version),
        calendar_id: Set(c.calendar_id.clone()),
        resolution_remaining_ms: Set(c.resolution_remaining.map(|d| d.num_milliseconds())),
        next_response_minutes: Set(c
            .next_response_target
            .map(|d| i32::try_from(d.num_minutes()).unwrap_or(i32::MAX))),
        next_response_due: Set(c.next_response_due),
        next_response_breached: Set(c.next_response_breached),
        team: Set(c.team.clone()),
        at_risk_percent: Set(w.percent),
        escalate_at_risk: Set(w.escalate),
        resolution_minutes: Set(w
            .resolution_target
            .map(|d| i32::try_from(d.num_minutes()).unwrap_or(i32::MAX))),
        first_response_warn: Set(w.first_response_time),
        resolution_warn: Set(w.resolution_time),
        next_response_warn: Set(w.next_response_time),
        first_response_at_risk: Set(w.first_response_at_risk),
        resolution_at_risk: Set(w.resolution_at_risk),
        next_response_at_risk: Set(w.next_response_at_risk),
        policy_escalations: Set(w.policy_escalations),
    }
}

pub(super) fn complaint_from(m: complaint::Model) -> Result<Complaint, DbErr> {
    let resolution = match (m.resolution_outcome.as_deref(), m.resolve_time) {
        (Some(o), Some(t)) => Some(Resolution {
            outcome: parse(o, ResolutionOutcome::parse)?,
            compensation: match (m.compensation_minor, m.compensation_currency.clone()) {
                (Some(minor_units), Some(currency)) => Some(Money {
                    currency,
                    minor_units,
                }),
                _ => None,
            },
            root_cause: m.root_cause.clone().unwrap_or_default(),
            service_gap: m.service_gap.as_deref().and_then(ServiceGap::parse),
            resolve_time: t,
        }),
        _ => None,
    };
    Ok(Complaint {
        category: parse(&m.category, ComplaintCategory::parse)?,
        severity: parse(&m.severity, Severity::parse)?,
        priority: parse(&m.priority, Priority::parse)?,
        channel: m.channel.as_deref().and_then(Channel::parse),
        state: parse(&m.state, ComplaintState::parse)?,
        customer_tier: parse(&m.customer_tier, CustomerTier::parse)?,
        id: m.id,
        customer_id: m.customer_id,
        subject: m.subject,
        description: m.description,
        assignee: m.assignee,
        escalation_level: m.escalation_level,
        open_time: m.open_time,
        first_response_time: m.first_response_time,
        first_response_due: m.first_response_due,
        resolution_due: m.resolution_due,
        first_response_breached: m.first_response_breached,
        resolution_breached: m.resolution_breached,
        resolution,
        reopen_count: m.reopen_count,
        close_time: m.close_time,
        update_time: m.update_time,
        version: m.version,
        calendar_id: m.calendar_id,
        resolution_remaining: m
            .resolution_remaining_ms
            .map(chrono::Duration::milliseconds),
        holds: Vec::new(),
        next_response_target: m
            .next_response_minutes
            .map(|n| chrono::Duration::minutes(n.into())),
        next_response_due: m.next_response_due,
        next_response_breached: m.next_response_breached,
        team: m.team,
        warnings: SlaWarnings {
            percent: m.at_risk_percent,
            escalate: m.escalate_at_risk,
            resolution_target: m
                .resolution_minutes
                .map(|n| chrono::Duration::minutes(n.into())),
            first_response_time: m.first_response_warn,
            resolution_time: m.resolution_warn,
            next_response_time: m.next_response_warn,
            first_response_at_risk: m.first_response_at_risk,
            resolution_at_risk: m.resolution_at_risk,
            next_response_at_risk: m.next_response_at_risk,
            policy_escalations: m.policy_escalations,
        },
    })
}

pub async fn insert_complaint<C: ConnectionTrait>(db: &C, c: &Complaint) -> Result<(), DbErr> {
    complaint::Entity::insert(complaint_active(c))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// The complaint with its holds.
pub async fn load_complaint<C: ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<Option<Complaint>, DbErr> {
    let Some(m) = complaint::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let mut c = complaint_from(m)?;
    with_holds(db, std::slice::from_mut(&mut c)).await?;
    Ok(Some(c))
}

/// Fills in the holds of `complaints`, one query per chunk of ids.
async fn with_holds<C: ConnectionTrait>(db: &C, complaints: &mut [Complaint]) -> Result<(), DbErr> {
    let ids: Vec<String> = complaints.iter().map(|c| c.id.clone()).collect();
    for chunk in ids.chunks(IN_CHUNK) {
        for h in complaint_hold::Entity::find()
            .filter(complaint_hold::Column::ComplaintId.is_in(chunk.iter().cloned()))
            .order_by_asc(complaint_hold::Column::ComplaintId)
            .order_by_asc(complaint_hold::Column::Seq)
            .all(db)
            .await?
        {
            if let Some(c) = complaints.iter_mut().find(|c| c.id == h.complaint_id) {
                c.holds.push(Hold {
                    start_time: h.start_time,
                    end_time: h.end_time,
                    resumed_by: h.resumed_by,
                });
            }
        }
    }
    Ok(())
}

/// Writes the latest hold of `c` (started or ended by the change being saved).
pub async fn save_last_hold<C: ConnectionTrait>(db: &C, c: &Complaint) -> Result<(), DbErr> {
    let Some(h) = c.holds.last() else {
        return Ok(());
    };
    let seq = i32::try_from(c.holds.len() - 1)
        .map_err(|_| DbErr::Custom(format!("too many holds on complaint {}", c.id)))?;
    complaint_hold::Entity::insert(complaint_hold::ActiveModel {
        complaint_id: Set(c.id.clone()),
        seq: Set(seq),
        start_time: Set(h.start_time),
        end_time: Set(h.end_time),
        resumed_by: Set(h.resumed_by.clone()),
    })
    .on_conflict(
        OnConflict::columns([
            complaint_hold::Column::ComplaintId,
            complaint_hold::Column::Seq,
        ])
        .update_columns([
            complaint_hold::Column::EndTime,
            complaint_hold::Column::ResumedBy,
        ])
        .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Writes `c` if the stored version is still `expected`; false on a lost race.
pub async fn update_complaint<C: ConnectionTrait>(
    db: &C,
    c: &Complaint,
    expected: i64,
) -> Result<bool, DbErr> {
    let res = complaint::Entity::update_many()
        .set(complaint_active(c))
        .filter(complaint::Column::Id.eq(c.id.as_str()))
        .filter(complaint::Column::Version.eq(expected))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

#[derive(Debug, Default, Clone)]
pub struct ComplaintQuery {
    pub customer_id: Option<String>,
    pub state: Option<ComplaintState>,
    pub category: Option<ComplaintCategory>,
    pub breached_only: bool,
}

/// Newest first by (open_time, id).
pub async fn list_complaints<C: ConnectionTrait>(
    db: &C,
    q: &ComplaintQuery,
    before: Option<(DateTime<Utc>, String)>,
    limit: u64,
) -> Result<Vec<Complaint>, DbErr> {
    let mut s = complaint::Entity::find();
    if let Some(c) = &q.customer_id {
        s = s.filter(complaint::Column::CustomerId.eq(c.as_str()));
    }
    if let Some(st) = q.state {
        s = s.filter(complaint::Column::State.eq(st.as_str()));
    }
    if let Some(cat) = q.category {
        s = s.filter(complaint::Column::Category.eq(cat.as_str()));
    }
    if q.breached_only {
        s = s.filter(
            Condition::any()
                .add(complaint::Column::FirstResponseBreached.eq(true))
                .add(complaint::Column::ResolutionBreached.eq(true)),
        );
    }
    if let Some((t, id)) = before {
        s = s.filter(
            Condition::any().add(complaint::Column::OpenTime.lt(t)).add(
                complaint::Column::OpenTime
                    .eq(t)
                    .and(complaint::Column::Id.lt(id)),
            ),
        );
    }
    let mut page = s
        .order_by_desc(complaint::Column::OpenTime)
        .order_by_desc(complaint::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(complaint_from)
        .collect::<Result<Vec<_>, _>>()?;
    with_holds(db, &mut page).await?;
    Ok(page)
}

/// Unresolved complaints past a due time not yet recorded as breached, or past
/// the moment a target becomes at risk not yet recorded as such; a complaint
/// waiting on the customer is not among them (its clock stands still). On
/// PostgreSQL the rows are locked with SKIP LOCKED, so concurrent sweepers (other
/// replicas) each take different complaints and none is reported twice.
pub async fn due_for_sweep<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Complaint>, DbErr> {
    let unresolved = [
        ComplaintState::Open,
        ComplaintState::Acknowledged,
        ComplaintState::InProgress,
    ]
    .map(|s| s.as_str());
    let mut s = complaint::Entity::find()
        .filter(complaint::Column::State.is_in(unresolved))
        .filter(
            Condition::any()
                .add(
                    complaint::Column::FirstResponseBreached
                        .eq(false)
                        .and(complaint::Column::FirstResponseDue.lt(now))
                        .and(complaint::Column::FirstResponseTime.is_null()),
                )
                .add(
                    complaint::Column::ResolutionBreached
                        .eq(false)
                        .and(complaint::Column::ResolutionDue.lt(now)),
                )
                .add(
                    complaint::Column::NextResponseBreached
                        .eq(false)
                        .and(complaint::Column::NextResponseDue.lt(now)),
                )
                // A target past its due time is claimed by its breach clause.
                .add(
                    complaint::Column::FirstResponseAtRisk
                        .eq(false)
                        .and(complaint::Column::FirstResponseWarn.lte(now))
                        .and(complaint::Column::FirstResponseDue.gte(now))
                        .and(complaint::Column::FirstResponseTime.is_null()),
                )
                .add(
                    complaint::Column::ResolutionAtRisk
                        .eq(false)
                        .and(complaint::Column::ResolutionWarn.lte(now))
                        .and(complaint::Column::ResolutionDue.gte(now)),
                )
                .add(
                    complaint::Column::NextResponseAtRisk
                        .eq(false)
                        .and(complaint::Column::NextResponseWarn.lte(now))
                        .and(complaint::Column::NextResponseDue.gte(now)),
                ),
        )
        .order_by_asc(complaint::Column::FirstResponseDue)
        .limit(limit);
    if retention_db::is_postgres(db) {
        s = s.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    s.all(db).await?.into_iter().map(complaint_from).collect()
}

/// Up to `limit` complaints opened in [start, end) after the cursor `after`
/// (open_time, id), oldest first, with their holds: a period of any size is read
/// page by page.
pub async fn complaints_opened_page<C: ConnectionTrait>(
    db: &C,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    after: Option<(DateTime<Utc>, String)>,
    limit: u64,
) -> Result<Vec<Complaint>, DbErr> {
    let mut s = complaint::Entity::find()
        .filter(complaint::Column::OpenTime.lt(end))
        .filter(complaint::Column::OpenTime.gte(start));
    if let Some((t, id)) = after {
        // The first condition repeats the bound so the index range starts at t.
        s = s.filter(complaint::Column::OpenTime.gte(t)).filter(
            Condition::any().add(complaint::Column::OpenTime.gt(t)).add(
                complaint::Column::OpenTime
                    .eq(t)
                    .and(complaint::Column::Id.gt(id)),
            ),
        );
    }
    let mut page = s
        .order_by_asc(complaint::Column::OpenTime)
        .order_by_asc(complaint::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(complaint_from)
        .collect::<Result<Vec<_>, _>>()?;
    with_holds(db, &mut page).await?;
    Ok(page)
}

/// Complaints opened in [start, end), optionally of one category.
pub async fn complaints_opened<C: ConnectionTrait>(
    db: &C,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    category: Option<ComplaintCategory>,
) -> Result<Vec<Complaint>, DbErr> {
    let mut s = complaint::Entity::find()
        .filter(complaint::Column::OpenTime.gte(start))
        .filter(complaint::Column::OpenTime.lt(end));
    if let Some(c) = category {
        s = s.filter(complaint::Column::Category.eq(c.as_str()));
    }
    s.all(db).await?.into_iter().map(complaint_from).collect()
}
