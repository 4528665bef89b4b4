//! Churn records: why customers left.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::SimpleExpr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use super::{CHUNK, newest_first, parse};
use crate::domain::churn::{ChurnType, ReasonCode};
use crate::domain::records::{ChurnRecord, Money};
use crate::store::entities::churn_record;

pub async fn insert_churn<C: ConnectionTrait>(db: &C, r: &ChurnRecord) -> Result<(), DbErr> {
    churn_record::Entity::insert(churn_record::ActiveModel {
        id: Set(r.id.clone()),
        customer_id: Set(r.customer_id.clone()),
        churn_type: Set(r.churn_type.as_str().into()),
        reason_codes: Set(r
            .reason_codes
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(",")),
        evidence: Set(r.evidence.clone()),
        churn_time: Set(r.churn_time),
        value_minor: Set(r.value_at_churn.as_ref().map(|m| m.minor_units)),
        value_currency: Set(r.value_at_churn.as_ref().map(|m| m.currency.clone())),
        create_time: Set(r.create_time),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

fn churn_from(m: churn_record::Model) -> Result<ChurnRecord, DbErr> {
    let reason_codes = m
        .reason_codes
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| parse(s, ReasonCode::parse))
        .collect::<Result<_, _>>()?;
    Ok(ChurnRecord {
        churn_type: parse(&m.churn_type, ChurnType::parse)?,
        reason_codes,
        value_at_churn: match (m.value_minor, m.value_currency) {
            (Some(minor_units), Some(currency)) => Some(Money {
                currency,
                minor_units,
            }),
            _ => None,
        },
        id: m.id,
        customer_id: m.customer_id,
        evidence: m.evidence,
        churn_time: m.churn_time,
        create_time: m.create_time,
    })
}

pub async fn find_churn<C: ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<Option<ChurnRecord>, DbErr> {
    churn_record::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(churn_from)
        .transpose()
}

/// Newest first by churn time; the cursor is the last (churn_time, id) returned.
pub async fn list_churn<C: ConnectionTrait>(
    db: &C,
    filter: Option<SimpleExpr>,
    before: Option<(DateTime<Utc>, String)>,
    limit: u64,
) -> Result<Vec<ChurnRecord>, DbErr> {
    newest_first::<churn_record::Entity>(
        filter,
        before,
        churn_record::Column::ChurnTime,
        churn_record::Column::Id,
        limit,
    )
    .all(db)
    .await?
    .into_iter()
    .map(churn_from)
    .collect()
}

/// The churn type that governs targeting, per customer: malicious if any record
/// says so (a later record never clears fraud), otherwise the latest.
pub async fn churn_types<C: ConnectionTrait>(
    db: &C,
    customers: &[String],
) -> Result<HashMap<String, ChurnType>, DbErr> {
    let mut out: HashMap<String, (ChurnType, DateTime<Utc>)> = HashMap::new();
    for chunk in customers.chunks(CHUNK) {
        let rows = churn_record::Entity::find()
            .filter(churn_record::Column::CustomerId.is_in(chunk.iter().cloned()))
            .all(db)
            .await?;
        for r in rows {
            let t = parse(&r.churn_type, ChurnType::parse)?;
            let e = out.entry(r.customer_id).or_insert((t, r.churn_time));
            if e.0 != ChurnType::Malicious && (t == ChurnType::Malicious || r.churn_time > e.1) {
                *e = (t, r.churn_time);
            }
        }
    }
    Ok(out.into_iter().map(|(k, (t, _))| (k, t)).collect())
}
