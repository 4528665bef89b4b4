//! Scored insights: upserts, reads, filtered and ordered listings, reports.

use std::collections::HashMap;

use retention_db::filter_sql::{FilterColumns, to_condition};
use retention_filter::FieldPath;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, SimpleExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, Order, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};

use super::{after_key, from_json, to_json};
use crate::domain::classify::{LifecycleStage, ManagementTier, ValueTier};
use crate::domain::filter::{OrderBy, OrderField, insight_schema};
use crate::domain::scoring::{Classes, Insight};
use crate::domain::value::ChurnRisk;
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

/// The insight columns written by [`upsert_insights`], the key first.
const INSIGHT_COLUMNS: [&str; 27] = [
    "customer_id",
    "rfm_recency",
    "rfm_frequency",
    "rfm_monetary",
    "rfm_segment",
    "value_tier",
    "management_tier",
    "lifecycle_stage",
    "loyalty_stage",
    "account_quadrant",
    "order_type",
    "size_tier",
    "wallet_stability",
    "p_alive",
    "churn_probability",
    "expected_purchases",
    "churn_risk",
    "predicted_clv",
    "retained_clv",
    "historical_margin",
    "purchases",
    "complaints_open",
    "complaints_breached",
    "mean_csat",
    "score_time",
    "scoring_run",
    "data",
];

/// One insight row as a JSON object keyed by column (PostgreSQL's
/// `json_populate_recordset` reads it into the table's row type), `data`
/// spliced in by [`insight_rows_json`]. Same values as [`insight_active`].
#[derive(serde::Serialize)]
struct InsightRow<'a> {
    customer_id: &'a str,
    rfm_recency: Option<i32>,
    rfm_frequency: Option<i32>,
    rfm_monetary: Option<i32>,
    rfm_segment: Option<&'static str>,
    value_tier: &'static str,
    management_tier: &'static str,
    lifecycle_stage: &'static str,
    loyalty_stage: &'static str,
    account_quadrant: &'static str,
    order_type: i32,
    size_tier: &'static str,
    wallet_stability: &'static str,
    p_alive: f64,
    churn_probability: f64,
    expected_purchases: f64,
    churn_risk: &'static str,
    predicted_clv: i64,
    retained_clv: i64,
    historical_margin: i64,
    purchases: i32,
    complaints_open: i32,
    complaints_breached: i32,
    mean_csat: Option<f64>,
    score_time: chrono::DateTime<chrono::Utc>,
    scoring_run: &'a str,
}

fn insight_row(i: &Insight) -> Result<InsightRow<'_>, DbErr> {
    let rfm = i.rfm.as_ref();
    Ok(InsightRow {
        customer_id: &i.customer_id,
        rfm_recency: rfm.map(|r| r.recency.into()),
        rfm_frequency: rfm.map(|r| r.frequency.into()),
        rfm_monetary: rfm.map(|r| r.monetary.into()),
        rfm_segment: rfm.map(|r| r.segment.as_str()),
        value_tier: i.value_tier.as_str(),
        management_tier: i.management_tier.as_str(),
        lifecycle_stage: i.lifecycle_stage.as_str(),
        loyalty_stage: i.loyalty_stage.as_str(),
        account_quadrant: i.account_quadrant.as_str(),
        order_type: i.order_model.order_type.into(),
        size_tier: i.order_model.size_tier.as_str(),
        wallet_stability: i.order_model.wallet_stability.as_str(),
        p_alive: i.p_alive,
        churn_probability: i.churn_probability,
        expected_purchases: i.expected_purchases,
        churn_risk: i.churn_risk.as_str(),
        predicted_clv: i.predicted_clv_minor,
        retained_clv: i.retained_clv_minor,
        historical_margin: i.historical_margin_minor,
        purchases: i.purchases as i32,
        complaints_open: i.complaints_open as i32,
        complaints_breached: i.complaints_breached as i32,
        mean_csat: i.mean_csat,
        score_time: i.score_time,
        scoring_run: &i.scoring_run,
    })
}

/// The page as one JSON array of row objects, each insight's JSON (the `data`
/// column) spliced in as a nested value rather than an escaped string:
/// `json_populate_recordset` stores a nested value's text as it is, so the
/// column holds the same text as the bound path writes, without escaping here
/// or unescaping in the database.
fn insight_rows_json(rows: &[Insight]) -> Result<String, DbErr> {
    let mut out = String::with_capacity(rows.len() * 4096);
    out.push('[');
    for (n, i) in rows.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let columns = to_json(&insight_row(i)?)?;
        // `{...}` without its closing brace, then the data value.
        out.push_str(&columns[..columns.len() - 1]);
        out.push_str(",\"data\":");
        out.push_str(&to_json(i)?);
        out.push('}');
    }
    out.push(']');
    Ok(out)
}

/// JSON has no NaN or infinity: such an insight goes by the bound-values path,
/// which stores them as they are.
fn json_safe(i: &Insight) -> bool {
    [i.p_alive, i.churn_probability, i.expected_purchases]
        .into_iter()
        .chain(i.mean_csat)
        .all(f64::is_finite)
}

/// Rows per bulk statement on PostgreSQL (one JSON parameter each).
const BULK_ROWS: usize = 5000;

/// Inserts or replaces `rows`. On PostgreSQL one statement per
/// [`BULK_ROWS`]: the rows go as one JSON array read by
/// `json_populate_recordset` into the table's row type, so there is no
/// statement building or binding per value; elsewhere multi-row inserts of 500.
pub async fn upsert_insights<C: ConnectionTrait>(db: &C, rows: &[Insight]) -> Result<(), DbErr> {
    if db.get_database_backend() == DbBackend::Postgres && rows.iter().all(json_safe) {
        let cols = INSIGHT_COLUMNS.join(", ");
        let set = INSIGHT_COLUMNS[1..]
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO insights ({cols}) SELECT {cols} \
             FROM json_populate_recordset(NULL::insights, $1::json) \
             ON CONFLICT (customer_id) DO UPDATE SET {set}"
        );
        for chunk in rows.chunks(BULK_ROWS) {
            let json = insight_rows_json(chunk)?;
            db.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                &sql,
                [json.into()],
            ))
            .await?;
        }
        return Ok(());
    }
    upsert_insights_bound(db, rows).await
}

/// [`upsert_insights`] by multi-row inserts of bound values (SQLite, and any
/// page holding a value JSON cannot carry); public for the test that compares
/// the two paths' rows.
pub async fn upsert_insights_bound<C: ConnectionTrait>(
    db: &C,
    rows: &[Insight],
) -> Result<(), DbErr> {
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

/// The stored classes of the customers among `ids` that have an insight: the
/// four columns a rescoring compares, not the insight and its explanation.
pub async fn classes_of<C: ConnectionTrait>(
    db: &C,
    ids: &[String],
) -> Result<HashMap<String, Classes>, DbErr> {
    use insight::Column as C;
    fn parse<T>(v: Option<T>, what: &str, s: &str) -> Result<T, DbErr> {
        v.ok_or_else(|| DbErr::Custom(format!("insights.{what}: unknown value {s:?}")))
    }
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(5000) {
        let rows: Vec<(String, String, String, String, String)> = insight::Entity::find()
            .select_only()
            .columns([
                C::CustomerId,
                C::ValueTier,
                C::ManagementTier,
                C::LifecycleStage,
                C::ChurnRisk,
            ])
            .filter(C::CustomerId.is_in(chunk.iter().map(String::as_str)))
            .into_tuple()
            .all(db)
            .await?;
        for (id, value, management, lifecycle, risk) in rows {
            let classes = Classes {
                value_tier: parse(ValueTier::parse(&value), "value_tier", &value)?,
                management_tier: parse(
                    ManagementTier::parse(&management),
                    "management_tier",
                    &management,
                )?,
                lifecycle_stage: parse(
                    LifecycleStage::parse(&lifecycle),
                    "lifecycle_stage",
                    &lifecycle,
                )?,
                churn_risk: parse(ChurnRisk::parse(&risk), "churn_risk", &risk)?,
            };
            out.insert(id, classes);
        }
    }
    Ok(out)
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
