//! Purchases per customer (time and margin), the input of the BG/NBD fit and
//! of re-deriving purchase occasions.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::{after_key, keep_existing};
use crate::store::entities::purchase;

/// False when the purchase is already recorded.
pub async fn insert_purchase<C: ConnectionTrait>(
    db: &C,
    purchase_id: &str,
    customer_id: &str,
    at: DateTime<Utc>,
    margin_minor: i64,
) -> Result<bool, DbErr> {
    let n = purchase::Entity::insert(purchase::ActiveModel {
        purchase_id: Set(purchase_id.to_string()),
        customer_id: Set(customer_id.to_string()),
        occur_time: Set(at),
        margin_minor: Set(Some(margin_minor)),
    })
    .on_conflict(keep_existing(purchase::Column::PurchaseId))
    .exec_without_returning(db)
    .await?;
    Ok(n > 0)
}

/// [`insert_purchase`] for many: the purchase ids that were not recorded before.
pub async fn insert_purchases<C: ConnectionTrait>(
    db: &C,
    purchases: &[(&String, &String, DateTime<Utc>, i64)],
) -> Result<HashSet<String>, DbErr> {
    if purchases.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = purchases
        .iter()
        .map(|(pid, cid, at, margin)| purchase::ActiveModel {
            purchase_id: Set((*pid).clone()),
            customer_id: Set((*cid).clone()),
            occur_time: Set(*at),
            margin_minor: Set(Some(*margin)),
        });
    let inserted = purchase::Entity::insert_many(rows)
        .on_conflict(keep_existing(purchase::Column::PurchaseId))
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
    let q = after_key(
        purchase::Entity::find(),
        purchase::Column::CustomerId,
        after_customer,
    );
    Ok(q.order_by_asc(purchase::Column::OccurTime)
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

/// Each customer's orders (time, and margin where recorded: rows from before
/// margins were kept have none).
pub async fn orders_of<C: ConnectionTrait>(
    db: &C,
    customer_ids: &BTreeSet<String>,
) -> Result<HashMap<String, Vec<(DateTime<Utc>, Option<i64>)>>, DbErr> {
    let mut orders: HashMap<String, Vec<_>> = HashMap::new();
    if customer_ids.is_empty() {
        return Ok(orders);
    }
    let rows: Vec<(String, DateTime<Utc>, Option<i64>)> = purchase::Entity::find()
        .select_only()
        .column(purchase::Column::CustomerId)
        .column(purchase::Column::OccurTime)
        .column(purchase::Column::MarginMinor)
        .filter(purchase::Column::CustomerId.is_in(customer_ids.iter().cloned()))
        .into_tuple()
        .all(db)
        .await?;
    for (customer, at, margin) in rows {
        orders.entry(customer).or_default().push((at, margin));
    }
    Ok(orders)
}

/// One page of every purchase in (customer, purchase id) order, after the
/// given (customer, purchase id): customer, time and margin (none on rows
/// from before margins were kept).
pub async fn purchase_page<C: ConnectionTrait>(
    db: &C,
    after: Option<(&str, &str)>,
    limit: u64,
) -> Result<Vec<(String, String, DateTime<Utc>, Option<i64>)>, DbErr> {
    let mut q = purchase::Entity::find()
        .select_only()
        .column(purchase::Column::CustomerId)
        .column(purchase::Column::PurchaseId)
        .column(purchase::Column::OccurTime)
        .column(purchase::Column::MarginMinor);
    if let Some((customer, purchase_id)) = after {
        // (customer, purchase) > (after): the redundant `customer_id >=` makes
        // it an index range, not a filter over the index from its start.
        q = q.filter(purchase::Column::CustomerId.gte(customer)).filter(
            sea_orm::Condition::any()
                .add(purchase::Column::CustomerId.gt(customer))
                .add(purchase::Column::PurchaseId.gt(purchase_id)),
        );
    }
    q.order_by_asc(purchase::Column::CustomerId)
        .order_by_asc(purchase::Column::PurchaseId)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await
}
