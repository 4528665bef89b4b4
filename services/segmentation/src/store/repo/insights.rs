//! Scored insights: upserts, reads, filtered and ordered listings, reports.

use std::collections::HashMap;

use retention_db::filter_sql::{FilterColumns, to_condition};
use retention_filter::FieldPath;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, SimpleExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, Order, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::{after_key, from_json, to_json};
use crate::domain::filter::{OrderBy, OrderField, insight_schema};
use crate::domain::scoring::Insight;
use crate::store::entities::insight;

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
        retained_clv: Set(i.retained_clv_minor),
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
    // 27 columns: 500 rows stay below SQLite's and PostgreSQL's parameter limits.
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
                        C::RetainedClv,
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
        OrderField::RetainedClv => OrderValue::Int(i.retained_clv_minor),
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
        OrderField::RetainedClv => insight::Column::RetainedClv,
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
    let q = insight::Entity::find().select_only().columns([
        C::CustomerId,
        C::ValueTier,
        C::ManagementTier,
        C::LifecycleStage,
        C::ChurnRisk,
        C::HistoricalMargin,
    ]);
    after_key(q, C::CustomerId, after)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await
}
