//! Purchase times per customer, the input of the BG/NBD fit.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::store::entities::purchase;

/// False when the purchase is already recorded.
pub async fn insert_purchase<C: ConnectionTrait>(
    db: &C,
    purchase_id: &str,
    customer_id: &str,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let n = purchase::Entity::insert(purchase::ActiveModel {
        purchase_id: Set(purchase_id.to_string()),
        customer_id: Set(customer_id.to_string()),
        occur_time: Set(at),
    })
    .on_conflict(
        OnConflict::column(purchase::Column::PurchaseId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(n > 0)
}

/// [`insert_purchase`] for many: the purchase ids that were not recorded before.
pub async fn insert_purchases<C: ConnectionTrait>(
    db: &C,
    purchases: &[(&String, &String, DateTime<Utc>)],
) -> Result<HashSet<String>, DbErr> {
    if purchases.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = purchases
        .iter()
        .map(|(pid, cid, at)| purchase::ActiveModel {
            purchase_id: Set((*pid).clone()),
            customer_id: Set((*cid).clone()),
            occur_time: Set(*at),
        });
    let inserted = purchase::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(purchase::Column::PurchaseId)
                .do_nothing()
                .to_owned(),
        )
        .exec_with_returning_keys(db)
        .await?;
    Ok(inserted.into_iter().collect())
}

pub async fn repoint_purchases<C: ConnectionTrait>(
    db: &C,
    from: &str,
    to: &str,
) -> Result<(), DbErr> {
    purchase::Entity::update_many()
        .col_expr(purchase::Column::CustomerId, Expr::val(to))
        .filter(purchase::Column::CustomerId.eq(from))
        .exec(db)
        .await?;
    Ok(())
}

/// Purchase times in (customer, time) order, one page of customers at a time.
pub async fn purchase_times<C: ConnectionTrait>(
    db: &C,
    after_customer: Option<&str>,
    limit_rows: u64,
) -> Result<Vec<(String, DateTime<Utc>)>, DbErr> {
    let mut q = purchase::Entity::find();
    if let Some(a) = after_customer {
        q = q.filter(purchase::Column::CustomerId.gt(a));
    }
    Ok(q.order_by_asc(purchase::Column::CustomerId)
        .order_by_asc(purchase::Column::OccurTime)
        .limit(limit_rows)
        .all(db)
        .await?
        .into_iter()
        .map(|p| (p.customer_id, p.occur_time))
        .collect())
}

pub async fn purchase_times_of<C: ConnectionTrait>(
    db: &C,
    customer_id: &str,
) -> Result<Vec<DateTime<Utc>>, DbErr> {
    purchase::Entity::find()
        .select_only()
        .column(purchase::Column::OccurTime)
        .filter(purchase::Column::CustomerId.eq(customer_id))
        .order_by_asc(purchase::Column::OccurTime)
        .into_tuple()
        .all(db)
        .await
}
