//! Queries and writes of the interactions database; callers own transactions.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType, OnConflict};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::entities::{
    business_calendar, complaint, complaint_hold, customer_tier, interaction, sla_policy, survey,
};
use crate::domain::calendar::CalendarDefinition;
use crate::domain::*;

fn parse<T>(s: &str, f: fn(&str) -> Option<T>) -> Result<T, DbErr> {
    f(s).ok_or_else(|| DbErr::Type(format!("unknown stored value {s:?}")))
}

// ---- interactions -------------------------------------------------------------

pub async fn insert_interaction<C: ConnectionTrait>(db: &C, i: &Interaction) -> Result<(), DbErr> {
    interaction::Entity::insert(interaction::ActiveModel {
        id: Set(i.id.clone()),
        customer_id: Set(i.customer_id.clone()),
        channel: Set(i.channel.as_str().into()),
        direction: Set(i.direction.as_str().into()),
        kind: Set(i.kind.map(|k| k.as_str().into())),
        purchase_phase: Set(i.purchase_phase.map(|k| k.as_str().into())),
        agent: Set(i.agent.clone()),
        summary: Set(i.summary.clone()),
        occur_time: Set(i.occur_time),
        complaint_id: Set(i.complaint_id.clone()),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

fn interaction_from(m: interaction::Model) -> Result<Interaction, DbErr> {
    Ok(Interaction {
        channel: parse(&m.channel, Channel::parse)?,
        direction: parse(&m.direction, Direction::parse)?,
        kind: m.kind.as_deref().and_then(CommunicationKind::parse),
        purchase_phase: m.purchase_phase.as_deref().and_then(PurchasePhase::parse),
        id: m.id,
        customer_id: m.customer_id,
        agent: m.agent,
        summary: m.summary,
        occur_time: m.occur_time,
        complaint_id: m.complaint_id,
    })
}

pub async fn find_interaction<C: ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<Option<Interaction>, DbErr> {
    interaction::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(interaction_from)
        .transpose()
}

#[derive(Debug, Default, Clone)]
pub struct InteractionQuery {
    pub customer_id: String,
    pub channel: Option<Channel>,
    pub purchase_phase: Option<PurchasePhase>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// Newest first; the cursor is the last (occur_time, id) returned.
pub async fn list_interactions<C: ConnectionTrait>(
    db: &C,
    q: &InteractionQuery,
    before: Option<(DateTime<Utc>, String)>,
    limit: u64,
) -> Result<Vec<Interaction>, DbErr> {
    let mut s = interaction::Entity::find()
        .filter(interaction::Column::CustomerId.eq(q.customer_id.as_str()));
    if let Some(c) = q.channel {
        s = s.filter(interaction::Column::Channel.eq(c.as_str()));
    }
    if let Some(p) = q.purchase_phase {
        s = s.filter(interaction::Column::PurchasePhase.eq(p.as_str()));
    }
    if let Some(t) = q.start {
        s = s.filter(interaction::Column::OccurTime.gte(t));
    }
    if let Some(t) = q.end {
        s = s.filter(interaction::Column::OccurTime.lt(t));
    }
    if let Some((t, id)) = before {
        s = s.filter(
            Condition::any()
                .add(interaction::Column::OccurTime.lt(t))
                .add(
                    interaction::Column::OccurTime
                        .eq(t)
                        .and(interaction::Column::Id.lt(id)),
                ),
        );
    }
    s.order_by_desc(interaction::Column::OccurTime)
        .order_by_desc(interaction::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(interaction_from)
        .collect()
}

// ---- complaints ---------------------------------------------------------------

fn complaint_active(c: &Complaint) -> complaint::ActiveModel {
    let r = c.resolution.as_ref();
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
    }
}

fn complaint_from(m: complaint::Model) -> Result<Complaint, DbErr> {
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

/// Unresolved complaints past a due time not yet recorded as breached; a
/// complaint waiting on the customer is not among them (its clock stands still). On
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
                ),
        )
        .order_by_asc(complaint::Column::FirstResponseDue)
        .limit(limit);
    if retention_db::is_postgres(db) {
        s = s.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    s.all(db).await?.into_iter().map(complaint_from).collect()
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

// ---- SLA policies and tiers ---------------------------------------------------

pub async fn upsert_policy<C: ConnectionTrait>(db: &C, p: &SlaPolicy) -> Result<(), DbErr> {
    sla_policy::Entity::insert(sla_policy::ActiveModel {
        priority: Set(p.priority.as_str().into()),
        customer_tier: Set(p.tier.as_str().into()),
        first_response_minutes: Set(p.targets.first_response.num_minutes() as i32),
        resolution_minutes: Set(p.targets.resolution.num_minutes() as i32),
        calendar_id: Set(p.calendar_id.clone()),
        next_response_minutes: Set(p
            .targets
            .next_response
            .map(|d| i32::try_from(d.num_minutes()).unwrap_or(i32::MAX))),
    })
    .on_conflict(
        OnConflict::columns([
            sla_policy::Column::Priority,
            sla_policy::Column::CustomerTier,
        ])
        .update_columns([
            sla_policy::Column::FirstResponseMinutes,
            sla_policy::Column::ResolutionMinutes,
            sla_policy::Column::CalendarId,
            sla_policy::Column::NextResponseMinutes,
        ])
        .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

fn policy_from(p: sla_policy::Model) -> Result<SlaPolicy, DbErr> {
    Ok(SlaPolicy {
        priority: parse(&p.priority, Priority::parse)?,
        tier: parse(&p.customer_tier, CustomerTier::parse)?,
        targets: SlaTargets {
            first_response: chrono::Duration::minutes(p.first_response_minutes.into()),
            resolution: chrono::Duration::minutes(p.resolution_minutes.into()),
            next_response: p
                .next_response_minutes
                .filter(|n| *n > 0)
                .map(|n| chrono::Duration::minutes(n.into())),
        },
        calendar_id: p.calendar_id,
    })
}

pub async fn list_policies<C: ConnectionTrait>(db: &C) -> Result<Vec<SlaPolicy>, DbErr> {
    sla_policy::Entity::find()
        .order_by_asc(sla_policy::Column::Priority)
        .order_by_asc(sla_policy::Column::CustomerTier)
        .all(db)
        .await?
        .into_iter()
        .map(policy_from)
        .collect()
}

/// The configured policy, else the built-in defaults on wall-clock time.
pub async fn policy_for<C: ConnectionTrait>(
    db: &C,
    priority: Priority,
    tier: CustomerTier,
) -> Result<SlaPolicy, DbErr> {
    let row =
        sla_policy::Entity::find_by_id((priority.as_str().to_string(), tier.as_str().to_string()))
            .one(db)
            .await?;
    row.map_or_else(
        || {
            Ok(SlaPolicy {
                priority,
                tier,
                targets: default_targets(priority, tier),
                calendar_id: None,
            })
        },
        policy_from,
    )
}

// ---- business calendars -------------------------------------------------------

fn calendar_from(m: business_calendar::Model) -> Result<StoredCalendar, DbErr> {
    let definition: CalendarDefinition = serde_json::from_str(&m.definition)
        .map_err(|e| DbErr::Type(format!("calendar {}: {e}", m.id)))?;
    Ok(StoredCalendar {
        id: m.id,
        definition,
        version: m.version,
        create_time: m.create_time,
        update_time: m.update_time,
    })
}

fn definition_json(c: &StoredCalendar) -> Result<String, DbErr> {
    serde_json::to_string(&c.definition).map_err(|e| DbErr::Type(format!("calendar {}: {e}", c.id)))
}

pub async fn insert_calendar<C: ConnectionTrait>(db: &C, c: &StoredCalendar) -> Result<(), DbErr> {
    business_calendar::Entity::insert(business_calendar::ActiveModel {
        id: Set(c.id.clone()),
        definition: Set(definition_json(c)?),
        version: Set(c.version),
        create_time: Set(c.create_time),
        update_time: Set(c.update_time),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn load_calendar<C: ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<Option<StoredCalendar>, DbErr> {
    business_calendar::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(calendar_from)
        .transpose()
}

/// Writes `c` if the stored version is still `expected`; false on a lost race.
pub async fn update_calendar<C: ConnectionTrait>(
    db: &C,
    c: &StoredCalendar,
    expected: i64,
) -> Result<bool, DbErr> {
    let res = business_calendar::Entity::update_many()
        .set(business_calendar::ActiveModel {
            definition: Set(definition_json(c)?),
            version: Set(c.version),
            update_time: Set(c.update_time),
            ..Default::default()
        })
        .filter(business_calendar::Column::Id.eq(c.id.as_str()))
        .filter(business_calendar::Column::Version.eq(expected))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// In id order (UUIDv7: creation order), after the id `after`.
pub async fn list_calendars<C: ConnectionTrait>(
    db: &C,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<StoredCalendar>, DbErr> {
    let mut s = business_calendar::Entity::find();
    if let Some(a) = after {
        s = s.filter(business_calendar::Column::Id.gt(a));
    }
    s.order_by_asc(business_calendar::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(calendar_from)
        .collect()
}

/// Tier from the segmentation read model; "ordinary" until segmentation says otherwise.
pub async fn tier_of<C: ConnectionTrait>(db: &C, customer_id: &str) -> Result<CustomerTier, DbErr> {
    Ok(customer_tier::Entity::find_by_id(customer_id.to_string())
        .one(db)
        .await?
        .and_then(|t| CustomerTier::parse(&t.tier))
        .unwrap_or(CustomerTier::Ordinary))
}

pub async fn set_tier<C: ConnectionTrait>(
    db: &C,
    customer_id: &str,
    tier: CustomerTier,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    customer_tier::Entity::insert(customer_tier::ActiveModel {
        customer_id: Set(customer_id.into()),
        tier: Set(tier.as_str().into()),
        update_time: Set(now),
    })
    .on_conflict(
        OnConflict::column(customer_tier::Column::CustomerId)
            .update_columns([
                customer_tier::Column::Tier,
                customer_tier::Column::UpdateTime,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

// ---- surveys ------------------------------------------------------------------

pub async fn insert_survey<C: ConnectionTrait>(db: &C, s: &Survey) -> Result<(), DbErr> {
    survey::Entity::insert(survey::ActiveModel {
        id: Set(s.id.clone()),
        customer_id: Set(s.customer_id.clone()),
        complaint_id: Set(s.complaint_id.clone()),
        csat: Set(s.csat),
        nps: Set(s.nps),
        expectation: Set(s.expectation),
        perceived: Set(s.perceived),
        occur_time: Set(s.occur_time),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

fn survey_from(m: survey::Model) -> Survey {
    Survey {
        id: m.id,
        customer_id: m.customer_id,
        complaint_id: m.complaint_id,
        csat: m.csat,
        nps: m.nps,
        expectation: m.expectation,
        perceived: m.perceived,
        occur_time: m.occur_time,
    }
}

pub async fn find_survey<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<Survey>, DbErr> {
    Ok(survey::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(survey_from))
}

/// Surveys in [start, end); with `complaint_ids`, only those tied to them.
pub async fn surveys_between<C: ConnectionTrait>(
    db: &C,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    complaint_ids: Option<&[String]>,
) -> Result<Vec<Survey>, DbErr> {
    let mut s = survey::Entity::find()
        .filter(survey::Column::OccurTime.gte(start))
        .filter(survey::Column::OccurTime.lt(end));
    if let Some(ids) = complaint_ids {
        s = s.filter(survey::Column::ComplaintId.is_in(ids.iter().cloned()));
    }
    Ok(s.all(db).await?.into_iter().map(survey_from).collect())
}

// ---- profile events -----------------------------------------------------------

/// After a merge, the merged customer's history belongs to the survivor.
pub async fn repoint_customer<C: ConnectionTrait>(
    db: &C,
    from: &str,
    to: &str,
) -> Result<(), DbErr> {
    interaction::Entity::update_many()
        .col_expr(interaction::Column::CustomerId, Expr::val(to))
        .filter(interaction::Column::CustomerId.eq(from))
        .exec(db)
        .await?;
    complaint::Entity::update_many()
        .col_expr(complaint::Column::CustomerId, Expr::val(to))
        .filter(complaint::Column::CustomerId.eq(from))
        .exec(db)
        .await?;
    survey::Entity::update_many()
        .col_expr(survey::Column::CustomerId, Expr::val(to))
        .filter(survey::Column::CustomerId.eq(from))
        .exec(db)
        .await?;
    Ok(())
}

/// After an erasure, free text about the customer is removed; facts stay.
pub async fn redact_customer<C: ConnectionTrait>(db: &C, customer_id: &str) -> Result<(), DbErr> {
    interaction::Entity::update_many()
        .col_expr(interaction::Column::Summary, Expr::val(""))
        .col_expr(interaction::Column::Agent, Expr::val(""))
        .filter(interaction::Column::CustomerId.eq(customer_id))
        .exec(db)
        .await?;
    complaint::Entity::update_many()
        .col_expr(complaint::Column::Description, Expr::val(""))
        .col_expr(complaint::Column::Subject, Expr::val("[erased]"))
        .col_expr(
            complaint::Column::RootCause,
            Expr::val(Option::<String>::None),
        )
        .filter(complaint::Column::CustomerId.eq(customer_id))
        .exec(db)
        .await?;
    Ok(())
}

// ---- backfill -----------------------------------------------------------------

/// Ids per `IN (...)` list, well inside both backends' parameter limits.
const IN_CHUNK: usize = 1_000;

/// Up to `limit` distinct customer ids of `column` in [`from`, `to`) after `after`.
async fn customer_ids<C, E>(
    db: &C,
    column: E::Column,
    from: Option<&str>,
    to: Option<&str>,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<String>, DbErr>
where
    C: ConnectionTrait,
    E: EntityTrait,
{
    let mut q = E::find()
        .select_only()
        .column(column)
        .distinct()
        .order_by_asc(column)
        .limit(limit);
    if let Some(f) = from {
        q = q.filter(column.gte(f));
    }
    if let Some(t) = to {
        q = q.filter(column.lt(t));
    }
    if let Some(a) = after {
        q = q.filter(column.gt(a));
    }
    q.into_tuple::<String>().all(db).await
}

/// The customers with complaints or surveys whose ids are in [`from`, `to`)
/// after `after`, at most `limit` in id order, each with its complaints (oldest
/// first) and surveys (in the order they were recorded: ids are UUIDv7); and
/// whether more customers follow in the range.
pub async fn customers_for_replay<C: ConnectionTrait>(
    db: &C,
    from: Option<&str>,
    to: Option<&str>,
    after: Option<&str>,
    limit: u64,
) -> Result<(Vec<ReplayedCustomer>, bool), DbErr> {
    // The first limit + 1 of the union are among the first limit + 1 of each side.
    let mut ids = customer_ids::<_, complaint::Entity>(
        db,
        complaint::Column::CustomerId,
        from,
        to,
        after,
        limit + 1,
    )
    .await?;
    ids.extend(
        customer_ids::<_, survey::Entity>(
            db,
            survey::Column::CustomerId,
            from,
            to,
            after,
            limit + 1,
        )
        .await?,
    );
    ids.sort_unstable();
    ids.dedup();
    let more = ids.len() as u64 > limit;
    ids.truncate(limit as usize);
    let mut out: Vec<ReplayedCustomer> = ids
        .iter()
        .map(|id| ReplayedCustomer {
            customer_id: id.clone(),
            complaints: Vec::new(),
            surveys: Vec::new(),
        })
        .collect();
    let position = |id: &str| ids.binary_search_by(|x| x.as_str().cmp(id)).ok();
    for chunk in ids.chunks(IN_CHUNK) {
        for m in complaint::Entity::find()
            .filter(complaint::Column::CustomerId.is_in(chunk.iter().cloned()))
            .order_by_asc(complaint::Column::OpenTime)
            .order_by_asc(complaint::Column::Id)
            .all(db)
            .await?
        {
            if let Some(i) = position(&m.customer_id) {
                out[i].complaints.push(complaint_from(m)?);
            }
        }
        for m in survey::Entity::find()
            .filter(survey::Column::CustomerId.is_in(chunk.iter().cloned()))
            .order_by_asc(survey::Column::Id)
            .all(db)
            .await?
        {
            if let Some(i) = position(&m.customer_id) {
                out[i].surveys.push(survey_from(m));
            }
        }
    }
    Ok((out, more))
}
