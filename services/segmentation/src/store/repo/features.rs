//! The feature store: one row of folded features per customer, the erased
//! customers kept so late events about them are dropped, and the merged-away
//! ones kept so late events about them reach the survivor.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::{after_key, from_json, keep_existing, to_json};
use crate::domain::features::Features;
use crate::store::entities::{erased, feature, insight, member, merged, purchase};

/// The customer's features, locked for this transaction (PostgreSQL: the row is
/// created first so that two first events for one customer serialise on it).
pub async fn lock_features<C: ConnectionTrait>(
    db: &C,
    customer_id: &str,
    now: DateTime<Utc>,
) -> Result<Features, DbErr> {
    feature::Entity::insert(feature::ActiveModel {
        customer_id: Set(customer_id.to_string()),
        data: Set(to_json(&Features::default())?),
        update_time: Set(now),
    })
    .on_conflict_do_nothing()
    .exec_without_returning(db)
    .await?;
    let mut q = feature::Entity::find_by_id(customer_id.to_string());
    if retention_db::is_postgres(db) {
        q = q.lock_exclusive();
    }
    match q.one(db).await? {
        Some(m) => from_json(&m.data),
        None => Ok(Features::default()),
    }
}

/// [`lock_features`] for many customers: rows created where missing, then all
/// locked in id order (the order a scoring page and a merge lock in, so no two
/// transactions wait on each other in a cycle).
pub async fn lock_features_many<C: ConnectionTrait>(
    db: &C,
    customer_ids: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> Result<HashMap<String, Features>, DbErr> {
    if customer_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let empty = to_json(&Features::default())?;
    feature::Entity::insert_many(customer_ids.iter().map(|id| feature::ActiveModel {
        customer_id: Set(id.clone()),
        data: Set(empty.clone()),
        update_time: Set(now),
    }))
    .on_conflict_do_nothing()
    .exec_without_returning(db)
    .await?;
    let mut q = feature::Entity::find()
        .filter(feature::Column::CustomerId.is_in(customer_ids.iter().cloned()))
        .order_by_asc(feature::Column::CustomerId);
    if retention_db::is_postgres(db) {
        q = q.lock_exclusive();
    }
    let mut out: HashMap<String, Features> = q
        .all(db)
        .await?
        .into_iter()
        .map(|m| Ok((m.customer_id, from_json(&m.data)?)))
        .collect::<Result<_, DbErr>>()?;
    for id in customer_ids {
        out.entry(id.clone()).or_default();
    }
    Ok(out)
}

/// [`save_features`] for many customers in one statement.
pub async fn save_features_many<C: ConnectionTrait>(
    db: &C,
    features: &[(&String, &Features)],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if features.is_empty() {
        return Ok(());
    }
    let rows = features
        .iter()
        .map(|(id, f)| {
            Ok(feature::ActiveModel {
                customer_id: Set((*id).clone()),
                data: Set(to_json(f)?),
                update_time: Set(now),
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    feature::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(feature::Column::CustomerId)
                .update_columns([feature::Column::Data, feature::Column::UpdateTime])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn find_features<C: ConnectionTrait>(
    db: &C,
    customer_id: &str,
) -> Result<Option<Features>, DbErr> {
    feature::Entity::find_by_id(customer_id.to_string())
        .one(db)
        .await?
        .map(|m| from_json(&m.data))
        .transpose()
}

pub async fn save_features<C: ConnectionTrait>(
    db: &C,
    customer_id: &str,
    f: &Features,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    save_features_many(db, &[(&customer_id.to_string(), f)], now).await
}

/// Customers in id order after `after` and up to `upto` (inclusive), at most
/// `limit` of them; `lock` holds their rows (PostgreSQL) until the transaction
/// ends, so a scoring page and an event on the same customer cannot interleave.
pub async fn page_features<C: ConnectionTrait>(
    db: &C,
    after: Option<&str>,
    upto: Option<&str>,
    limit: Option<u64>,
    lock: bool,
) -> Result<Vec<(String, Features)>, DbErr> {
    let mut q = after_key(feature::Entity::find(), feature::Column::CustomerId, after);
    if let Some(u) = upto {
        q = q.filter(feature::Column::CustomerId.lte(u));
    }
    if let Some(n) = limit {
        q = q.limit(n);
    }
    if lock && retention_db::is_postgres(db) {
        q = q.lock_exclusive();
    }
    q.all(db)
        .await?
        .into_iter()
        .map(|m| Ok((m.customer_id, from_json(&m.data)?)))
        .collect()
}

pub async fn count_features<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    feature::Entity::find().count(db).await
}

/// Removes everything held about a customer; returns the segments they were in.
pub async fn delete_customer<C: ConnectionTrait>(
    db: &C,
    customer_id: &str,
) -> Result<Vec<String>, DbErr> {
    let segments: Vec<String> = member::Entity::find()
        .filter(member::Column::CustomerId.eq(customer_id))
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.segment_id)
        .collect();
    member::Entity::delete_many()
        .filter(member::Column::CustomerId.eq(customer_id))
        .exec(db)
        .await?;
    insight::Entity::delete_by_id(customer_id.to_string())
        .exec(db)
        .await?;
    purchase::Entity::delete_many()
        .filter(purchase::Column::CustomerId.eq(customer_id))
        .exec(db)
        .await?;
    feature::Entity::delete_by_id(customer_id.to_string())
        .exec(db)
        .await?;
    Ok(segments)
}

pub async fn mark_erased<C: ConnectionTrait>(
    db: &C,
    customer_id: &str,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    erased::Entity::insert(erased::ActiveModel {
        customer_id: Set(customer_id.to_string()),
        erase_time: Set(at),
    })
    .on_conflict(keep_existing(erased::Column::CustomerId))
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn is_erased<C: ConnectionTrait>(db: &C, customer_id: &str) -> Result<bool, DbErr> {
    Ok(erased::Entity::find_by_id(customer_id.to_string())
        .one(db)
        .await?
        .is_some())
}

/// The erased customers among `customer_ids`.
pub async fn erased_among<C: ConnectionTrait>(
    db: &C,
    customer_ids: &BTreeSet<String>,
) -> Result<HashSet<String>, DbErr> {
    if customer_ids.is_empty() {
        return Ok(HashSet::new());
    }
    Ok(erased::Entity::find()
        .filter(erased::Column::CustomerId.is_in(customer_ids.iter().cloned()))
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.customer_id)
        .collect())
}

/// Records that `merged_id` now lives on as `survivor_id`; customers merged into
/// `merged_id` before follow it, so one lookup always names the live record.
pub async fn mark_merged<C: ConnectionTrait>(
    db: &C,
    merged_id: &str,
    survivor_id: &str,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    merged::Entity::update_many()
        .col_expr(merged::Column::SurvivorId, Expr::value(survivor_id))
        .filter(merged::Column::SurvivorId.eq(merged_id))
        .exec(db)
        .await?;
    merged::Entity::insert(merged::ActiveModel {
        customer_id: Set(merged_id.to_string()),
        survivor_id: Set(survivor_id.to_string()),
        merge_time: Set(at),
    })
    .on_conflict(keep_existing(merged::Column::CustomerId))
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// The survivors of the merged-away customers among `customer_ids`.
pub async fn survivors_of<C: ConnectionTrait>(
    db: &C,
    customer_ids: &BTreeSet<String>,
) -> Result<HashMap<String, String>, DbErr> {
    if customer_ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(merged::Entity::find()
        .filter(merged::Column::CustomerId.is_in(customer_ids.iter().cloned()))
        .all(db)
        .await?
        .into_iter()
        .map(|m| (m.customer_id, m.survivor_id))
        .collect())
}
