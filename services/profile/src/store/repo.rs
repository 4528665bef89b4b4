//! Queries and writes of the profile database. Functions take any connection so
//! the application layer decides the transaction boundaries.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};

use super::convert::*;
use super::entities::{alias, customer, identity, purchase, referral};
use super::filter_sql;
use super::pii::{PiiCipher, PiiError};
use crate::domain::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("identity {namespace}:{value} belongs to customer {owner}")]
    IdentityTaken {
        namespace: String,
        value: String,
        owner: String,
    },
    #[error("customer {id} changed concurrently")]
    VersionConflict { id: String },
    #[error(transparent)]
    Pii(#[from] PiiError),
}

/// The canonical id for `id`: itself if it is a live customer row, its survivor if
/// it was merged away, None if unknown.
pub async fn resolve_id<C: ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<Option<String>, StoreError> {
    if customer::Entity::find_by_id(id.to_string())
        .select_only()
        .column(customer::Column::Id)
        .into_tuple::<String>()
        .one(db)
        .await?
        .is_some()
    {
        return Ok(Some(id.to_string()));
    }
    Ok(alias::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(|a| a.survivor_id))
}

/// The row, its identities and the ids merged into it, in one round trip: a cache
/// miss holds a pooled connection for one query, not two. The customer columns
/// repeat on each identity or alias row (one row, links NULL, when it has none).
const LOAD_CUSTOMER: &str = "SELECT c.*, l.link_kind, l.link_a, l.link_b FROM customers c \
     LEFT JOIN (\
         SELECT customer_id AS link_owner, 1 AS link_kind, namespace AS link_a, value AS link_b \
         FROM customer_identities \
         UNION ALL \
         SELECT survivor_id, 2, alias_id, '' FROM customer_aliases\
     ) l ON l.link_owner = c.id \
     WHERE c.id = $1";

pub async fn load_customer<C: ConnectionTrait>(
    db: &C,
    pii: &PiiCipher,
    id: &str,
) -> Result<Option<Customer>, StoreError> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            LOAD_CUSTOMER,
            [id.into()],
        ))
        .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let row = customer::Model::from_query_result(first, "")?;
    let mut identities = Vec::new();
    let mut merged = Vec::new();
    for r in &rows {
        let a: Option<String> = r.try_get("", "link_a")?;
        match (r.try_get::<Option<i32>>("", "link_kind")?, a) {
            (Some(1), Some(namespace)) => identities.push(Identity {
                namespace,
                value: r.try_get("", "link_b")?,
            }),
            (Some(2), Some(alias)) => merged.push(alias),
            _ => {}
        }
    }
    identities.sort_by(|a, b| (&a.namespace, &a.value).cmp(&(&b.namespace, &b.value)));
    merged.sort();
    Ok(Some(customer_from_row(row, identities, merged, pii)?))
}

async fn insert_identities<C: ConnectionTrait>(db: &C, c: &Customer) -> Result<(), StoreError> {
    for id in &c.identities {
        let owner = identity::Entity::find_by_id((id.namespace.clone(), id.value.clone()))
            .one(db)
            .await?;
        if let Some(o) = owner.filter(|o| o.customer_id != c.id) {
            return Err(StoreError::IdentityTaken {
                namespace: id.namespace.clone(),
                value: id.value.clone(),
                owner: o.customer_id,
            });
        }
        let row = identity::ActiveModel {
            namespace: Set(id.namespace.clone()),
            value: Set(id.value.clone()),
            customer_id: Set(c.id.clone()),
        };
        identity::Entity::insert(row)
            .on_conflict_do_nothing()
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

pub async fn insert_customer<C: ConnectionTrait>(
    db: &C,
    pii: &PiiCipher,
    c: &Customer,
) -> Result<(), StoreError> {
    customer::Entity::insert(customer_to_active(c, pii))
        .exec_without_returning(db)
        .await?;
    insert_identities(db, c).await
}

/// Writes `c` if the stored version is still `expected_version`; bumps nothing
/// itself (the caller set `c.version`).
pub async fn update_customer<C: ConnectionTrait>(
    db: &C,
    pii: &PiiCipher,
    c: &Customer,
    expected_version: i64,
) -> Result<(), StoreError> {
    let res = customer::Entity::update_many()
        .set(customer_to_active(c, pii))
        .filter(customer::Column::Id.eq(c.id.as_str()))
        .filter(customer::Column::Version.eq(expected_version))
        .exec(db)
        .await?;
    if res.rows_affected == 0 {
        return Err(StoreError::VersionConflict { id: c.id.clone() });
    }
    identity::Entity::delete_many()
        .filter(identity::Column::CustomerId.eq(c.id.as_str()))
        .exec(db)
        .await?;
    insert_identities(db, c).await
}

/// What a customer listing selects besides its page position.
#[derive(Debug, Default, Clone, Copy)]
pub struct CustomerQuery<'a> {
    pub filter: Option<&'a retention_filter::Expr>,
    /// Only customers whose e-mail address has this lookup hash.
    pub email_hash: Option<&'a str>,
}

/// One page of live customers after `after_id`, in id order. Ids are UUIDv7 and
/// immutable, so keyset paging on them neither skips nor repeats rows while others
/// are inserted or updated.
pub async fn list_customers<C: ConnectionTrait>(
    db: &C,
    pii: &PiiCipher,
    query: CustomerQuery<'_>,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<Customer>, StoreError> {
    let mut q = customer::Entity::find().filter(customer::Column::Erased.eq(false));
    if let Some(hash) = query.email_hash {
        q = q.filter(customer::Column::EmailHash.eq(hash));
    }
    let filter = query.filter;
    if let Some(after) = after_id {
        q = q.filter(customer::Column::Id.gt(after));
    }
    if let Some(f) = filter {
        q = q.filter(retention_db::filter_sql::to_condition(
            f,
            db.get_database_backend(),
            &filter_sql::CustomerColumns,
        ));
    }
    let rows = q
        .order_by_asc(customer::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row.id.clone();
        let identities = identity::Entity::find()
            .filter(identity::Column::CustomerId.eq(id.as_str()))
            .all(db)
            .await?
            .into_iter()
            .map(|i| Identity {
                namespace: i.namespace,
                value: i.value,
            })
            .collect();
        out.push(customer_from_row(row, identities, Vec::new(), pii)?);
    }
    Ok(out)
}

/// Moves everything of `merged` to `survivor` and leaves an alias behind.
/// Returns the number of purchases moved.
pub async fn merge_into<C: ConnectionTrait>(
    db: &C,
    survivor: &str,
    merged: &str,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    identity::Entity::update_many()
        .col_expr(identity::Column::CustomerId, Expr::val(survivor))
        .filter(identity::Column::CustomerId.eq(merged))
        .exec(db)
        .await?;
    let moved = purchase::Entity::update_many()
        .col_expr(purchase::Column::CustomerId, Expr::val(survivor))
        .filter(purchase::Column::CustomerId.eq(merged))
        .exec(db)
        .await?
        .rows_affected;
    // Referrals: re-point both sides, dropping pairs that would duplicate an
    // existing one or become self-referrals.
    let either_side = referral::Column::ReferrerId
        .eq(merged)
        .or(referral::Column::ReferredId.eq(merged));
    let refs = referral::Entity::find()
        .filter(either_side.clone())
        .all(db)
        .await?;
    referral::Entity::delete_many()
        .filter(either_side)
        .exec(db)
        .await?;
    for r in refs {
        let referrer = if r.referrer_id == merged {
            survivor.to_string()
        } else {
            r.referrer_id
        };
        let referred = if r.referred_id == merged {
            survivor.to_string()
        } else {
            r.referred_id
        };
        if referrer != referred {
            insert_referral(
                db,
                &Referral {
                    referrer_id: referrer,
                    referred_id: referred,
                    occur_time: r.occur_time,
                },
            )
            .await?;
        }
    }
    // Earlier aliases of the merged customer now resolve to the survivor too.
    alias::Entity::update_many()
        .col_expr(alias::Column::SurvivorId, Expr::val(survivor))
        .filter(alias::Column::SurvivorId.eq(merged))
        .exec(db)
        .await?;
    alias::Entity::insert(alias::ActiveModel {
        alias_id: Set(merged.to_string()),
        survivor_id: Set(survivor.to_string()),
        merge_time: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    customer::Entity::delete_by_id(merged.to_string())
        .exec(db)
        .await?;
    Ok(moved)
}

/// The live canonical id of each of `ids` that names a customer, directly or
/// through a merge alias; erased and unknown ids are absent. Three queries for
/// any number of ids, where [`resolve_id`] takes one or two per id.
pub async fn live_owners<C: ConnectionTrait>(
    db: &C,
    ids: &[String],
) -> Result<HashMap<String, String>, StoreError> {
    let mut out = HashMap::new();
    let mut unresolved = Vec::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let rows: HashMap<String, bool> = customer::Entity::find()
            .select_only()
            .column(customer::Column::Id)
            .column(customer::Column::Erased)
            .filter(customer::Column::Id.is_in(chunk.iter().map(String::as_str)))
            .into_tuple::<(String, bool)>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        for id in chunk {
            match rows.get(id) {
                Some(false) => {
                    out.insert(id.clone(), id.clone());
                }
                Some(true) => {}
                None => unresolved.push(id.as_str()),
            }
        }
    }
    for chunk in unresolved.chunks(IN_CHUNK) {
        let aliases = alias::Entity::find()
            .filter(alias::Column::AliasId.is_in(chunk.iter().copied()))
            .all(db)
            .await?;
        let live: HashSet<String> = customer::Entity::find()
            .select_only()
            .column(customer::Column::Id)
            .filter(customer::Column::Id.is_in(aliases.iter().map(|a| a.survivor_id.as_str())))
            .filter(customer::Column::Erased.eq(false))
            .into_tuple::<String>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        for a in aliases {
            if live.contains(&a.survivor_id) {
                out.insert(a.alias_id, a.survivor_id);
            }
        }
    }
    Ok(out)
}

/// Ids per `IN (...)` list, well inside both backends' parameter limits.
const IN_CHUNK: usize = 1_000;

/// A purchase whose (origin customer, order id) pair is stored already is skipped.
fn known_order() -> OnConflict {
    OnConflict::columns([
        purchase::Column::OriginCustomerId,
        purchase::Column::OrderId,
    ])
    .do_nothing()
    .to_owned()
}

/// Inserts the purchases whose (origin customer, order id) pair is new, 500 rows
/// per statement; returns the ids of those inserted. A pair repeated within
/// `ps` is inserted once, as the first occurrence.
pub async fn insert_purchases<C: ConnectionTrait>(
    db: &C,
    ps: &[Purchase],
) -> Result<HashSet<String>, StoreError> {
    let mut inserted = HashSet::with_capacity(ps.len());
    // 12 columns: 500 rows stay below SQLite's parameter limit.
    for chunk in ps.chunks(500) {
        let keys = purchase::Entity::insert_many(chunk.iter().map(purchase_to_active))
            .on_conflict(known_order())
            .exec_with_returning_keys(db)
            .await?;
        inserted.extend(keys);
    }
    Ok(inserted)
}

/// Inserts unless the (origin customer, order id) pair exists; returns the stored
/// purchase and whether it was new.
pub async fn insert_purchase<C: ConnectionTrait>(
    db: &C,
    p: &Purchase,
) -> Result<(Purchase, bool), StoreError> {
    let inserted = purchase::Entity::insert(purchase_to_active(p))
        .on_conflict(known_order())
        .exec_without_returning(db)
        .await?;
    if inserted > 0 {
        return Ok((p.clone(), true));
    }
    let existing = purchase::Entity::find()
        .filter(purchase::Column::OriginCustomerId.eq(p.origin_customer_id.as_str()))
        .filter(purchase::Column::OrderId.eq(p.order_id.as_str()))
        .one(db)
        .await?
        .map(purchase_from_row)
        .ok_or_else(|| DbErr::RecordNotFound("purchase vanished after conflict".into()))?;
    Ok((existing, false))
}

/// Newest first; the cursor is the last (occur_time, id) seen.
pub async fn list_purchases<C: ConnectionTrait>(
    db: &C,
    customer_id: &str,
    before: Option<(DateTime<Utc>, String)>,
    limit: u64,
) -> Result<Vec<Purchase>, StoreError> {
    let mut q = purchase::Entity::find().filter(purchase::Column::CustomerId.eq(customer_id));
    if let Some((t, id)) = before {
        q = q.filter(
            purchase::Column::OccurTime
                .lt(t)
                .or(purchase::Column::OccurTime
                    .eq(t)
                    .and(purchase::Column::Id.lt(id))),
        );
    }
    Ok(q.order_by_desc(purchase::Column::OccurTime)
        .order_by_desc(purchase::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(purchase_from_row)
        .collect())
}

pub async fn count_purchases<C: ConnectionTrait>(
    db: &C,
    customer_id: &str,
) -> Result<u64, StoreError> {
    Ok(purchase::Entity::find()
        .filter(purchase::Column::CustomerId.eq(customer_id))
        .count(db)
        .await?)
}

/// True when the referral is new.
pub async fn insert_referral<C: ConnectionTrait>(db: &C, r: &Referral) -> Result<bool, StoreError> {
    let n = referral::Entity::insert(referral::ActiveModel {
        referrer_id: Set(r.referrer_id.clone()),
        referred_id: Set(r.referred_id.clone()),
        occur_time: Set(r.occur_time),
    })
    .on_conflict(
        OnConflict::columns([referral::Column::ReferrerId, referral::Column::ReferredId])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(n > 0)
}

pub async fn referrals_of<C: ConnectionTrait>(
    db: &C,
    customer_id: &str,
) -> Result<(Vec<Referral>, Vec<Referral>), StoreError> {
    let given = referrals_where(db, referral::Column::ReferrerId, customer_id).await?;
    let received = referrals_where(db, referral::Column::ReferredId, customer_id).await?;
    Ok((given, received))
}

/// The referrals whose `side` (referrer or referred) is `customer_id`.
async fn referrals_where<C: ConnectionTrait>(
    db: &C,
    side: referral::Column,
    customer_id: &str,
) -> Result<Vec<Referral>, StoreError> {
    Ok(referral::Entity::find()
        .filter(side.eq(customer_id))
        .all(db)
        .await?
        .into_iter()
        .map(referral_from_row)
        .collect())
}

fn referral_from_row(r: referral::Model) -> Referral {
    Referral {
        referrer_id: r.referrer_id,
        referred_id: r.referred_id,
        occur_time: r.occur_time,
    }
}

/// The customers (live and erased) with ids in [`from`, `to`) after `after`, at
/// most `limit` in id order, with what a replay needs of each: the ids merged
/// into it, its purchases in the order they were recorded (ids are UUIDv7) and
/// the referrals it gave; and whether more customers follow in the range.
/// Personal data is never opened: the events carry none, so a row sealed under a
/// key no longer held replays as well as any other.
pub async fn customers_for_replay<C: ConnectionTrait>(
    db: &C,
    pii: &PiiCipher,
    from: Option<&str>,
    to: Option<&str>,
    after: Option<&str>,
    limit: u64,
) -> Result<(Vec<ReplayedCustomer>, bool), StoreError> {
    let mut q = customer::Entity::find();
    if let Some(f) = from {
        q = q.filter(customer::Column::Id.gte(f));
    }
    if let Some(t) = to {
        q = q.filter(customer::Column::Id.lt(t));
    }
    if let Some(a) = after {
        q = q.filter(customer::Column::Id.gt(a));
    }
    let mut rows = q
        .order_by_asc(customer::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let live: Vec<&str> = rows
        .iter()
        .filter(|r| !r.erased)
        .map(|r| r.id.as_str())
        .collect();
    let mut merged: HashMap<String, Vec<String>> = HashMap::new();
    let mut purchases: HashMap<String, Vec<Purchase>> = HashMap::new();
    let mut referrals: HashMap<String, Vec<Referral>> = HashMap::new();
    for chunk in live.chunks(IN_CHUNK) {
        let ids = || chunk.iter().copied();
        for a in alias::Entity::find()
            .filter(alias::Column::SurvivorId.is_in(ids()))
            .order_by_asc(alias::Column::MergeTime)
            .order_by_asc(alias::Column::AliasId)
            .all(db)
            .await?
        {
            merged.entry(a.survivor_id).or_default().push(a.alias_id);
        }
        for p in purchase::Entity::find()
            .filter(purchase::Column::CustomerId.is_in(ids()))
            .order_by_asc(purchase::Column::Id)
            .all(db)
            .await?
        {
            purchases
                .entry(p.customer_id.clone())
                .or_default()
                .push(purchase_from_row(p));
        }
        for r in referral::Entity::find()
            .filter(referral::Column::ReferrerId.is_in(ids()))
            .order_by_asc(referral::Column::OccurTime)
            .order_by_asc(referral::Column::ReferredId)
            .all(db)
            .await?
        {
            referrals
                .entry(r.referrer_id.clone())
                .or_default()
                .push(referral_from_row(r));
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for mut row in rows {
        (row.display_name, row.email, row.phone) = (None, None, None);
        let id = row.id.clone();
        let merged_ids = merged.remove(&id).unwrap_or_default();
        out.push(ReplayedCustomer {
            customer: customer_from_row(row, Vec::new(), merged_ids, pii)?,
            purchases: purchases.remove(&id).unwrap_or_default(),
            referrals_given: referrals.remove(&id).unwrap_or_default(),
        });
    }
    Ok((out, more))
}
