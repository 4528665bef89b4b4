//! Queries and writes of the segmentation database; callers own transactions.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use retention_db::filter_sql::{FilterColumns, to_condition};
use retention_filter::FieldPath;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, SimpleExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, Order, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};

use super::entities::{
    calibration, erased, feature, insight, member, purchase, scoring_run, segment,
};
use crate::domain::features::Features;
use crate::domain::filter::{OrderBy, OrderField, insight_schema};
use crate::domain::scoring::{Calibration, Insight};
use crate::domain::segments::{RunState, ScoringRun, Segment};

fn json_err(e: serde_json::Error) -> DbErr {
    DbErr::Json(e.to_string())
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, DbErr> {
    serde_json::to_string(v).map_err(json_err)
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, DbErr> {
    serde_json::from_str(s).map_err(json_err)
}

// ---- features ------------------------------------------------------------------

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
    let mut q = feature::Entity::find();
    if let Some(a) = after {
        q = q.filter(feature::Column::CustomerId.gt(a));
    }
    if let Some(u) = upto {
        q = q.filter(feature::Column::CustomerId.lte(u));
    }
    q = q.order_by_asc(feature::Column::CustomerId);
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
    .on_conflict(
        OnConflict::column(erased::Column::CustomerId)
            .do_nothing()
            .to_owned(),
    )
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

// ---- purchases -----------------------------------------------------------------

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

// ---- insights ------------------------------------------------------------------

fn insight_active(i: &Insight) -> Result<insight::ActiveModel, DbErr> {
    let rfm = i.rfm.as_ref();
    Ok(insight::ActiveModel {
        customer_id: Set(i.customer_id.clone()),
        rfm_recency: Set(rfm.map(|r| r.recency.into())),
        rfm_frequency: Set(rfm.map(|r| r.frequency.into())),
        rfm_monetary: Set(rfm.map(|r| r.monetary.into())),
        rfm_segment: Set(rfm.map(|r| r.segment.as_str().into())),
        value_tier: Set(i.value_tier.as_str().into()),
        management_tier: Set(i.management_tier.as_str().into()),
        lifecycle_stage: Set(i.lifecycle_stage.as_str().into()),
        loyalty_stage: Set(i.loyalty_stage.as_str().into()),
        account_quadrant: Set(i.account_quadrant.as_str().into()),
        order_type: Set(i.order_model.order_type.into()),
        size_tier: Set(i.order_model.size_tier.as_str().into()),
        wallet_stability: Set(i.order_model.wallet_stability.as_str().into()),
        p_alive: Set(i.p_alive),
        churn_probability: Set(i.churn_probability),
        expected_purchases: Set(i.expected_purchases),
        churn_risk: Set(i.churn_risk.as_str().into()),
        predicted_clv: Set(i.predicted_clv_minor),
        historical_margin: Set(i.historical_margin_minor),
        purchases: Set(i.purchases as i32),
        complaints_open: Set(i.complaints_open as i32),
        complaints_breached: Set(i.complaints_breached as i32),
        mean_csat: Set(i.mean_csat),
        score_time: Set(i.score_time),
        scoring_run: Set(i.scoring_run.clone()),
        data: Set(to_json(i)?),
    })
}

pub async fn upsert_insights<C: ConnectionTrait>(db: &C, rows: &[Insight]) -> Result<(), DbErr> {
    use insight::Column as C;
    // 26 columns: 500 rows stay below SQLite's and PostgreSQL's parameter limits.
    for chunk in rows.chunks(500) {
        let models = chunk
            .iter()
            .map(insight_active)
            .collect::<Result<Vec<_>, _>>()?;
        insight::Entity::insert_many(models)
            .on_conflict(
                OnConflict::column(C::CustomerId)
                    .update_columns([
                        C::RfmRecency,
                        C::RfmFrequency,
                        C::RfmMonetary,
                        C::RfmSegment,
                        C::ValueTier,
                        C::ManagementTier,
                        C::LifecycleStage,
                        C::LoyaltyStage,
                        C::AccountQuadrant,
                        C::OrderType,
                        C::SizeTier,
                        C::WalletStability,
                        C::PAlive,
                        C::ChurnProbability,
                        C::ExpectedPurchases,
                        C::ChurnRisk,
                        C::PredictedClv,
                        C::HistoricalMargin,
                        C::Purchases,
                        C::ComplaintsOpen,
                        C::ComplaintsBreached,
                        C::MeanCsat,
                        C::ScoreTime,
                        C::ScoringRun,
                        C::Data,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

pub async fn find_insight<C: ConnectionTrait>(
    db: &C,
    customer_id: &str,
) -> Result<Option<Insight>, DbErr> {
    insight::Entity::find_by_id(customer_id.to_string())
        .one(db)
        .await?
        .map(|m| from_json(&m.data))
        .transpose()
}

pub async fn insights_of<C: ConnectionTrait>(
    db: &C,
    ids: &[String],
) -> Result<HashMap<String, Insight>, DbErr> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(1000) {
        for m in insight::Entity::find()
            .filter(insight::Column::CustomerId.is_in(chunk.iter().map(String::as_str)))
            .all(db)
            .await?
        {
            out.insert(m.customer_id.clone(), from_json(&m.data)?);
        }
    }
    Ok(out)
}

/// Insight columns carry the filter field names, so the mapping is the identity
/// over the declared schema (which keeps unknown names out).
pub struct InsightColumns;

impl FilterColumns for InsightColumns {
    fn target(&self, path: &FieldPath, _backend: DbBackend) -> Option<SimpleExpr> {
        match path.0.as_slice() {
            [field] if insight_schema().get(field).is_some() => Some(Expr::col(field.clone())),
            _ => None,
        }
    }
}

pub fn filter_condition(f: &retention_filter::Expr, backend: DbBackend) -> SimpleExpr {
    to_condition(f, backend, &InsightColumns)
}

/// The value a listing is ordered by, as kept in its page cursor.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum OrderValue {
    Int(i64),
    Float(f64),
    Text(String),
}

pub fn order_value(i: &Insight, field: OrderField) -> OrderValue {
    match field {
        OrderField::CustomerId => OrderValue::Text(i.customer_id.clone()),
        OrderField::PredictedClv => OrderValue::Int(i.predicted_clv_minor),
        OrderField::HistoricalMargin => OrderValue::Int(i.historical_margin_minor),
        OrderField::PAlive => OrderValue::Float(i.p_alive),
        OrderField::ChurnProbability => OrderValue::Float(i.churn_probability),
        OrderField::ExpectedPurchases => OrderValue::Float(i.expected_purchases),
    }
}

fn order_column(field: OrderField) -> insight::Column {
    match field {
        OrderField::CustomerId => insight::Column::CustomerId,
        OrderField::PredictedClv => insight::Column::PredictedClv,
        OrderField::HistoricalMargin => insight::Column::HistoricalMargin,
        OrderField::PAlive => insight::Column::PAlive,
        OrderField::ChurnProbability => insight::Column::ChurnProbability,
        OrderField::ExpectedPurchases => insight::Column::ExpectedPurchases,
    }
}

fn sea_value(v: &OrderValue) -> sea_orm::Value {
    match v {
        OrderValue::Int(i) => (*i).into(),
        OrderValue::Float(f) => (*f).into(),
        OrderValue::Text(s) => s.clone().into(),
    }
}

/// Keyset page: rows strictly after `(value, customer_id)` in the requested order,
/// customer id breaking ties (always ascending), so pages never skip or repeat.
pub async fn list_insights<C: ConnectionTrait>(
    db: &C,
    filter: Option<&retention_filter::Expr>,
    order: OrderBy,
    after: Option<(OrderValue, String)>,
    limit: u64,
) -> Result<Vec<Insight>, DbErr> {
    let mut q = insight::Entity::find();
    if let Some(f) = filter {
        q = q.filter(filter_condition(f, db.get_database_backend()));
    }
    let col = order_column(order.field);
    if let Some((value, id)) = after {
        let v = sea_value(&value);
        let beyond = if order.descending {
            col.lt(v.clone())
        } else {
            col.gt(v.clone())
        };
        q = q.filter(
            Condition::any()
                .add(beyond)
                .add(col.eq(v).and(insight::Column::CustomerId.gt(id))),
        );
    }
    if order.field != OrderField::CustomerId {
        q = q.order_by(
            col,
            if order.descending {
                Order::Desc
            } else {
                Order::Asc
            },
        );
    }
    q.order_by_asc(insight::Column::CustomerId)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(|m| from_json(&m.data))
        .collect()
}

/// Customers whose insight matches, in id order.
pub async fn matching_customers<C: ConnectionTrait>(
    db: &C,
    filter: &retention_filter::Expr,
) -> Result<Vec<String>, DbErr> {
    insight::Entity::find()
        .select_only()
        .column(insight::Column::CustomerId)
        .filter(filter_condition(filter, db.get_database_backend()))
        .order_by_asc(insight::Column::CustomerId)
        .into_tuple::<String>()
        .all(db)
        .await
}

/// The report's per-customer view: (value tier, management tier, lifecycle, churn
/// risk, historical margin), one page in id order.
pub type ReportRow = (String, String, String, String, String, i64);

pub async fn report_rows<C: ConnectionTrait>(
    db: &C,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<ReportRow>, DbErr> {
    use insight::Column as C;
    let mut q = insight::Entity::find()
        .select_only()
        .columns([
            C::CustomerId,
            C::ValueTier,
            C::ManagementTier,
            C::LifecycleStage,
            C::ChurnRisk,
            C::HistoricalMargin,
        ])
        .order_by_asc(C::CustomerId)
        .limit(limit);
    if let Some(a) = after {
        q = q.filter(C::CustomerId.gt(a));
    }
    q.into_tuple().all(db).await
}

// ---- segments and memberships --------------------------------------------------

fn segment_from(m: segment::Model) -> Segment {
    Segment {
        id: m.id,
        display_name: m.display_name,
        description: m.description,
        filter: m.filter,
        create_time: m.create_time,
        update_time: m.update_time,
        version: m.version,
    }
}

fn segment_active(s: &Segment) -> segment::ActiveModel {
    segment::ActiveModel {
        id: Set(s.id.clone()),
        display_name: Set(s.display_name.clone()),
        description: Set(s.description.clone()),
        filter: Set(s.filter.clone()),
        create_time: Set(s.create_time),
        update_time: Set(s.update_time),
        version: Set(s.version),
    }
}

pub async fn insert_segment<C: ConnectionTrait>(db: &C, s: &Segment) -> Result<(), DbErr> {
    segment::Entity::insert(segment_active(s))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// False when the stored version is no longer `expected`.
pub async fn update_segment<C: ConnectionTrait>(
    db: &C,
    s: &Segment,
    expected: i64,
) -> Result<bool, DbErr> {
    let r = segment::Entity::update_many()
        .set(segment_active(s))
        .filter(segment::Column::Id.eq(s.id.as_str()))
        .filter(segment::Column::Version.eq(expected))
        .exec(db)
        .await?;
    Ok(r.rows_affected == 1)
}

pub async fn load_segment<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<Segment>, DbErr> {
    let mut q = segment::Entity::find_by_id(id.to_string());
    if retention_db::is_postgres(db) {
        q = q.lock_exclusive();
    }
    Ok(q.one(db).await?.map(segment_from))
}

pub async fn delete_segment<C: ConnectionTrait>(db: &C, id: &str) -> Result<(), DbErr> {
    member::Entity::delete_many()
        .filter(member::Column::SegmentId.eq(id))
        .exec(db)
        .await?;
    segment::Entity::delete_by_id(id.to_string())
        .exec(db)
        .await?;
    Ok(())
}

pub async fn list_segments<C: ConnectionTrait>(
    db: &C,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Segment>, DbErr> {
    let mut q = segment::Entity::find();
    if let Some(a) = after {
        q = q.filter(segment::Column::Id.gt(a));
    }
    Ok(q.order_by_asc(segment::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(segment_from)
        .collect())
}

pub async fn all_segments<C: ConnectionTrait>(db: &C) -> Result<Vec<Segment>, DbErr> {
    list_segments(db, None, u64::MAX >> 1).await
}

pub async fn member_count<C: ConnectionTrait>(db: &C, segment_id: &str) -> Result<u64, DbErr> {
    member::Entity::find()
        .filter(member::Column::SegmentId.eq(segment_id))
        .count(db)
        .await
}

pub async fn members_of<C: ConnectionTrait>(
    db: &C,
    segment_id: &str,
) -> Result<HashSet<String>, DbErr> {
    Ok(member::Entity::find()
        .select_only()
        .column(member::Column::CustomerId)
        .filter(member::Column::SegmentId.eq(segment_id))
        .into_tuple::<String>()
        .all(db)
        .await?
        .into_iter()
        .collect())
}

/// (segment, customer) memberships of the given customers.
pub async fn memberships_of<C: ConnectionTrait>(
    db: &C,
    customers: &[String],
) -> Result<HashSet<(String, String)>, DbErr> {
    let mut out = HashSet::new();
    for chunk in customers.chunks(1000) {
        for m in member::Entity::find()
            .filter(member::Column::CustomerId.is_in(chunk.iter().map(String::as_str)))
            .all(db)
            .await?
        {
            out.insert((m.segment_id, m.customer_id));
        }
    }
    Ok(out)
}

pub async fn add_members<C: ConnectionTrait>(
    db: &C,
    rows: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    for chunk in rows.chunks(1000) {
        member::Entity::insert_many(chunk.iter().map(|(s, c)| member::ActiveModel {
            segment_id: Set(s.clone()),
            customer_id: Set(c.clone()),
            enter_time: Set(now),
        }))
        .on_conflict_do_nothing()
        .exec_without_returning(db)
        .await?;
    }
    Ok(())
}

pub async fn remove_members<C: ConnectionTrait>(
    db: &C,
    rows: &[(String, String)],
) -> Result<(), DbErr> {
    for (s, c) in rows {
        member::Entity::delete_many()
            .filter(member::Column::SegmentId.eq(s.as_str()))
            .filter(member::Column::CustomerId.eq(c.as_str()))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// One page of a segment's member ids, in id order.
pub async fn list_members<C: ConnectionTrait>(
    db: &C,
    segment_id: &str,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<String>, DbErr> {
    let mut q = member::Entity::find()
        .select_only()
        .column(member::Column::CustomerId)
        .filter(member::Column::SegmentId.eq(segment_id));
    if let Some(a) = after {
        q = q.filter(member::Column::CustomerId.gt(a));
    }
    q.order_by_asc(member::Column::CustomerId)
        .limit(limit)
        .into_tuple::<String>()
        .all(db)
        .await
}

// ---- scoring runs and calibrations ---------------------------------------------

fn run_from(m: scoring_run::Model) -> Result<ScoringRun, DbErr> {
    Ok(ScoringRun {
        state: RunState::parse(&m.state)
            .ok_or_else(|| DbErr::Type(format!("unknown run state {:?}", m.state)))?,
        id: m.id,
        percent_complete: m.percent_complete,
        stage: m.stage,
        customers_scored: m.customers_scored,
        create_time: m.create_time,
        end_time: m.end_time,
        error: m.error,
    })
}

fn run_active(r: &ScoringRun) -> scoring_run::ActiveModel {
    scoring_run::ActiveModel {
        id: Set(r.id.clone()),
        state: Set(r.state.as_str().into()),
        percent_complete: Set(r.percent_complete),
        stage: Set(r.stage.clone()),
        customers_scored: Set(r.customers_scored),
        create_time: Set(r.create_time),
        end_time: Set(r.end_time),
        error: Set(r.error.clone()),
    }
}

pub async fn insert_run<C: ConnectionTrait>(db: &C, r: &ScoringRun) -> Result<(), DbErr> {
    scoring_run::Entity::insert(run_active(r))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn save_run<C: ConnectionTrait>(db: &C, r: &ScoringRun) -> Result<(), DbErr> {
    scoring_run::Entity::update(run_active(r)).exec(db).await?;
    Ok(())
}

pub async fn load_run<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<ScoringRun>, DbErr> {
    scoring_run::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(run_from)
        .transpose()
}

/// The run in progress, if any.
pub async fn active_run<C: ConnectionTrait>(db: &C) -> Result<Option<ScoringRun>, DbErr> {
    scoring_run::Entity::find()
        .filter(
            scoring_run::Column::State
                .is_in([RunState::Pending.as_str(), RunState::Running.as_str()]),
        )
        .one(db)
        .await?
        .map(run_from)
        .transpose()
}

/// Runs a crashed process left unfinished are failed on start (one process runs
/// scoring at a time; see the app).
pub async fn fail_unfinished_runs<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let r = scoring_run::Entity::update_many()
        .col_expr(
            scoring_run::Column::State,
            Expr::val(RunState::Failed.as_str()),
        )
        .col_expr(scoring_run::Column::EndTime, Expr::val(now))
        .col_expr(
            scoring_run::Column::Error,
            Expr::val("interrupted: the service stopped during the run"),
        )
        .filter(
            scoring_run::Column::State
                .is_in([RunState::Pending.as_str(), RunState::Running.as_str()]),
        )
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}

pub async fn save_calibration<C: ConnectionTrait>(db: &C, c: &Calibration) -> Result<(), DbErr> {
    calibration::Entity::insert(calibration::ActiveModel {
        scoring_run: Set(c.scoring_run.clone()),
        fit_time: Set(c.fit_time),
        data: Set(to_json(c)?),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn latest_calibration<C: ConnectionTrait>(db: &C) -> Result<Option<Calibration>, DbErr> {
    calibration::Entity::find()
        .order_by_desc(calibration::Column::FitTime)
        .order_by_desc(calibration::Column::ScoringRun)
        .one(db)
        .await?
        .map(|m| from_json(&m.data))
        .transpose()
}
