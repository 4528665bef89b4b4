//! Queries and writes of the interactions database; callers own transactions.
//! Complaints (`complaints`) and policies with their calendars (`policies`) have
//! their own files.

mod complaints;
mod policies;

pub use complaints::*;
pub use policies::*;

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
