//! What the service holds per customer from other services' events (consent,
//! complaint signals), and profile's merges and erasures across every table.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

use super::CHUNK;
use crate::domain::records::ContactChannel;
use crate::domain::targeting::Consent;
use crate::store::entities::{
    attributed_purchase, churn_record, complaint_signal, consent, exclusion, target,
};

pub async fn set_consent<C: ConnectionTrait>(
    db: &C,
    customer_id: &str,
    channel: ContactChannel,
    granted: bool,
) -> Result<(), DbErr> {
    consent::Entity::insert(consent::ActiveModel {
        customer_id: Set(customer_id.into()),
        channel: Set(channel.as_str().into()),
        granted: Set(granted),
    })
    .on_conflict(
        OnConflict::columns([consent::Column::CustomerId, consent::Column::Channel])
            .update_column(consent::Column::Granted)
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Recorded consent for `channel` of those among `customers` who have a record
/// (granted or withdrawn); the channel's policy decides what no record means.
pub async fn consents<C: ConnectionTrait>(
    db: &C,
    customers: &[String],
    channel: ContactChannel,
) -> Result<HashMap<String, Consent>, DbErr> {
    let mut out = HashMap::new();
    for chunk in customers.chunks(CHUNK) {
        let rows: Vec<(String, bool)> = consent::Entity::find()
            .select_only()
            .column(consent::Column::CustomerId)
            .column(consent::Column::Granted)
            .filter(consent::Column::CustomerId.is_in(chunk.iter().cloned()))
            .filter(consent::Column::Channel.eq(channel.as_str()))
            .into_tuple()
            .all(db)
            .await?;
        out.extend(rows.into_iter().map(|(id, granted)| {
            let c = if granted {
                Consent::Granted
            } else {
                Consent::Withdrawn
            };
            (id, c)
        }));
    }
    Ok(out)
}

/// What one complaint event says about the complaint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComplaintFact {
    Opened,
    Unresolved,
    Resolved,
    Escalated,
    Breached,
    /// An SLA target is about to be missed.
    AtRisk,
}

pub async fn record_complaint<C: ConnectionTrait>(
    db: &C,
    complaint_id: &str,
    customer_id: &str,
    fact: ComplaintFact,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let known = complaint_signal::Entity::find_by_id(complaint_id.to_string())
        .one(db)
        .await?;
    if fact == ComplaintFact::Opened && known.is_some() {
        // Opened again: a backfill's replay. A reopening comes as a status change.
        return Ok(());
    }
    let mut row = known.unwrap_or(complaint_signal::Model {
        complaint_id: complaint_id.into(),
        customer_id: customer_id.into(),
        unresolved: true,
        breached: false,
        escalated: false,
        update_time: at,
        at_risk: false,
    });
    match fact {
        ComplaintFact::Opened | ComplaintFact::Unresolved => row.unresolved = true,
        ComplaintFact::Resolved => row.unresolved = false,
        ComplaintFact::Escalated => row.escalated = true,
        ComplaintFact::Breached => row.breached = true,
        ComplaintFact::AtRisk => row.at_risk = true,
    }
    row.update_time = at;
    complaint_signal::Entity::insert(complaint_signal::ActiveModel {
        complaint_id: Set(row.complaint_id),
        customer_id: Set(row.customer_id),
        unresolved: Set(row.unresolved),
        breached: Set(row.breached),
        escalated: Set(row.escalated),
        update_time: Set(row.update_time),
        at_risk: Set(row.at_risk),
    })
    .on_conflict(
        OnConflict::column(complaint_signal::Column::ComplaintId)
            .update_columns([
                complaint_signal::Column::Unresolved,
                complaint_signal::Column::Breached,
                complaint_signal::Column::Escalated,
                complaint_signal::Column::UpdateTime,
                complaint_signal::Column::AtRisk,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Records that purchase `purchase_id` of `customer_id` is attributed against
/// campaign targets; false when it was already (a replay: it must not count twice).
pub async fn claim_attribution<C: ConnectionTrait>(
    db: &C,
    purchase_id: &str,
    customer_id: &str,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let n = attributed_purchase::Entity::insert(attributed_purchase::ActiveModel {
        purchase_id: Set(purchase_id.into()),
        customer_id: Set(customer_id.into()),
        record_time: Set(at),
    })
    .on_conflict(
        OnConflict::column(attributed_purchase::Column::PurchaseId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(n > 0)
}

/// What the complaints of one customer say, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ComplaintCounts {
    pub unresolved: u32,
    pub breached: u32,
    pub escalated: u32,
    /// Unresolved, not breached, with a target at risk of a breach.
    pub at_risk: u32,
}

pub async fn complaint_counts<C: ConnectionTrait>(
    db: &C,
    customer_id: &str,
) -> Result<ComplaintCounts, DbErr> {
    let rows = complaint_signal::Entity::find()
        .filter(complaint_signal::Column::CustomerId.eq(customer_id))
        .all(db)
        .await?;
    let n = |f: fn(&complaint_signal::Model) -> bool| rows.iter().filter(|r| f(r)).count() as u32;
    Ok(ComplaintCounts {
        unresolved: n(|r| r.unresolved),
        breached: n(|r| r.breached),
        escalated: n(|r| r.escalated),
        at_risk: n(|r| r.unresolved && r.at_risk && !r.breached),
    })
}

/// Profile merged `merged` into `survivor`: its history becomes the survivor's.
/// A campaign holding both keeps the survivor's target and drops the other.
pub async fn merge_customer<C: ConnectionTrait>(
    db: &C,
    merged: &str,
    survivor: &str,
) -> Result<(), DbErr> {
    rename(db, churn_record::Column::CustomerId, merged, survivor).await?;
    rename(db, complaint_signal::Column::CustomerId, merged, survivor).await?;
    rename(
        db,
        attributed_purchase::Column::CustomerId,
        merged,
        survivor,
    )
    .await?;
    delete(db, consent::Column::CustomerId, merged).await?;
    let survivor_campaigns: HashSet<String> = target::Entity::find()
        .select_only()
        .column(target::Column::CampaignId)
        .filter(target::Column::CustomerId.eq(survivor))
        .into_tuple::<String>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    for t in target::Entity::find()
        .filter(target::Column::CustomerId.eq(merged))
        .all(db)
        .await?
    {
        let q = target::Entity::update_many()
            .filter(target::Column::CampaignId.eq(t.campaign_id.as_str()))
            .filter(target::Column::CustomerId.eq(merged));
        if survivor_campaigns.contains(&t.campaign_id) {
            target::Entity::delete_many()
                .filter(target::Column::CampaignId.eq(t.campaign_id.as_str()))
                .filter(target::Column::CustomerId.eq(merged))
                .exec(db)
                .await?;
        } else {
            q.col_expr(target::Column::CustomerId, Expr::val(survivor))
                .exec(db)
                .await?;
        }
    }
    delete(db, exclusion::Column::CustomerId, merged).await?;
    Ok(())
}

/// Profile erased the customer: personal records go; campaign targets stay under
/// an opaque pseudonym so campaign results keep their counts.
pub async fn erase_customer<C: ConnectionTrait>(
    db: &C,
    customer_id: &str,
    pseudonym: &str,
) -> Result<(), DbErr> {
    delete(db, churn_record::Column::CustomerId, customer_id).await?;
    delete(db, complaint_signal::Column::CustomerId, customer_id).await?;
    delete(db, attributed_purchase::Column::CustomerId, customer_id).await?;
    delete(db, consent::Column::CustomerId, customer_id).await?;
    delete(db, exclusion::Column::CustomerId, customer_id).await?;
    rename(db, target::Column::CustomerId, customer_id, pseudonym).await
}

/// Rows of `col`'s table whose `col` is `from` get `to` there.
async fn rename<Col, C>(db: &C, col: Col, from: &str, to: &str) -> Result<(), DbErr>
where
    Col: ColumnTrait,
    Col::EntityName: EntityTrait,
    C: ConnectionTrait,
{
    <Col::EntityName as EntityTrait>::update_many()
        .col_expr(col, Expr::val(to))
        .filter(col.eq(from))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes the rows of `col`'s table whose `col` is `value`.
async fn delete<Col, C>(db: &C, col: Col, value: &str) -> Result<(), DbErr>
where
    Col: ColumnTrait,
    Col::EntityName: EntityTrait,
    C: ConnectionTrait,
{
    <Col::EntityName as EntityTrait>::delete_many()
        .filter(col.eq(value))
        .exec(db)
        .await?;
    Ok(())
}
