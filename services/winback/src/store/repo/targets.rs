//! Campaign targets and exclusions: who was reached, in which arm, and what
//! came of it.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::{CHUNK, campaigns_in_state, parse};
use crate::domain::campaign::CampaignState;
use crate::domain::records::{ContactOutcome, Target};
use crate::domain::targeting::{Arm, Exclusion, ValueBasis};
use crate::store::entities::{exclusion, target};

fn target_active(t: &Target) -> target::ActiveModel {
    target::ActiveModel {
        campaign_id: Set(t.campaign_id.clone()),
        customer_id: Set(t.customer_id.clone()),
        arm: Set(t.arm.as_str().into()),
        predicted_clv_minor: Set(t.predicted_clv_minor),
        currency: Set(t.currency.clone()),
        window_start: Set(t.window_start),
        win_deadline: Set(t.win_deadline),
        dispatch_time: Set(t.dispatch_time),
        last_outcome: Set(t.last_outcome.map(|o| o.as_str().into())),
        outcome_time: Set(t.outcome_time),
        won_back_time: Set(t.won_back_time),
        recovered_margin_minor: Set(t.recovered_margin_minor),
        repeat_purchases: Set(t.repeat_purchases),
        retained_clv_minor: Set(t.retained_clv_minor),
    }
}

fn target_from(m: target::Model) -> Result<Target, DbErr> {
    Ok(Target {
        arm: parse(&m.arm, Arm::parse)?,
        last_outcome: m.last_outcome.as_deref().and_then(ContactOutcome::parse),
        campaign_id: m.campaign_id,
        customer_id: m.customer_id,
        predicted_clv_minor: m.predicted_clv_minor,
        retained_clv_minor: m.retained_clv_minor,
        currency: m.currency,
        window_start: m.window_start,
        win_deadline: m.win_deadline,
        dispatch_time: m.dispatch_time,
        outcome_time: m.outcome_time,
        won_back_time: m.won_back_time,
        recovered_margin_minor: m.recovered_margin_minor,
        repeat_purchases: m.repeat_purchases,
    })
}

pub async fn insert_targets<C: ConnectionTrait>(db: &C, ts: &[Target]) -> Result<(), DbErr> {
    for chunk in ts.chunks(CHUNK / 4) {
        target::Entity::insert_many(chunk.iter().map(target_active))
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

pub async fn insert_exclusions<C: ConnectionTrait>(
    db: &C,
    campaign_id: &str,
    excluded: &BTreeMap<String, Exclusion>,
) -> Result<(), DbErr> {
    let rows: Vec<exclusion::ActiveModel> = excluded
        .iter()
        .map(|(customer, reason)| exclusion::ActiveModel {
            campaign_id: Set(campaign_id.to_string()),
            customer_id: Set(customer.clone()),
            reason: Set(reason.as_str().into()),
        })
        .collect();
    for chunk in rows.chunks(CHUNK / 2) {
        exclusion::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([exclusion::Column::CampaignId, exclusion::Column::CustomerId])
                    .update_column(exclusion::Column::Reason)
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// A customer once excluded and now enrolled (it re-entered a triggered
/// campaign's segment) is no longer excluded.
pub async fn clear_exclusion<C: ConnectionTrait>(
    db: &C,
    campaign_id: &str,
    customer_id: &str,
) -> Result<(), DbErr> {
    exclusion::Entity::delete_many()
        .filter(exclusion::Column::CampaignId.eq(campaign_id))
        .filter(exclusion::Column::CustomerId.eq(customer_id))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn find_target<C: ConnectionTrait>(
    db: &C,
    campaign_id: &str,
    customer_id: &str,
) -> Result<Option<Target>, DbErr> {
    target::Entity::find_by_id((campaign_id.to_string(), customer_id.to_string()))
        .one(db)
        .await?
        .map(target_from)
        .transpose()
}

pub async fn update_target<C: ConnectionTrait>(db: &C, t: &Target) -> Result<(), DbErr> {
    target::Entity::update(target_active(t)).exec(db).await?;
    Ok(())
}

/// A campaign's targets in customer id order after `after`.
pub async fn list_targets<C: ConnectionTrait>(
    db: &C,
    campaign_id: &str,
    after: Option<String>,
    limit: u64,
) -> Result<Vec<Target>, DbErr> {
    let mut q = target::Entity::find().filter(target::Column::CampaignId.eq(campaign_id));
    if let Some(a) = after {
        q = q.filter(target::Column::CustomerId.gt(a));
    }
    q.order_by_asc(target::Column::CustomerId)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(target_from)
        .collect()
}

/// Every target of `customer_id` whose window opened before `at`: the ones a
/// purchase at `at` may win back or count as a repeat for.
pub async fn targets_of_customer<C: ConnectionTrait>(
    db: &C,
    customer_id: &str,
    at: DateTime<Utc>,
) -> Result<Vec<Target>, DbErr> {
    target::Entity::find()
        .filter(target::Column::CustomerId.eq(customer_id))
        .filter(target::Column::WindowStart.lt(at))
        .all(db)
        .await?
        .into_iter()
        .map(target_from)
        .collect()
}

/// For each of `customers`: whether another live campaign holds it, and whether
/// another campaign contacted it since `contacted_since`.
pub async fn busy_customers<C: ConnectionTrait>(
    db: &C,
    campaign_id: &str,
    customers: &[String],
    contacted_since: DateTime<Utc>,
) -> Result<(HashSet<String>, HashSet<String>), DbErr> {
    let live: HashSet<String> =
        campaigns_in_state(db, &[CampaignState::Running, CampaignState::Paused])
            .await?
            .into_iter()
            .map(|c| c.id)
            .filter(|id| id != campaign_id)
            .collect();
    let (mut in_live, mut contacted) = (HashSet::new(), HashSet::new());
    for chunk in customers.chunks(CHUNK) {
        let rows = target::Entity::find()
            .filter(target::Column::CustomerId.is_in(chunk.iter().cloned()))
            .filter(target::Column::CampaignId.ne(campaign_id))
            .all(db)
            .await?;
        for r in rows {
            if live.contains(&r.campaign_id) {
                in_live.insert(r.customer_id.clone());
            }
            if r.dispatch_time.is_some_and(|t| t >= contacted_since) {
                contacted.insert(r.customer_id);
            }
        }
    }
    Ok((in_live, contacted))
}

/// Per arm of one campaign: targets, contacted, won back, recovered margin, the
/// won-back targets' value on the campaign's basis, the won-back customers who
/// bought again, and the days each win took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArmRow {
    pub targets: i64,
    pub contacted: i64,
    pub won_back: i64,
    pub recovered_margin_minor: i64,
    pub recovered_value_minor: i64,
    pub repeaters: i64,
    pub days_to_win: Vec<f64>,
}

pub async fn arm_rows<C: ConnectionTrait>(
    db: &C,
    campaign_id: &str,
    basis: ValueBasis,
) -> Result<HashMap<Arm, ArmRow>, DbErr> {
    let counts: Vec<(String, i64, i64, i64, i64, i64)> = target::Entity::find()
        .select_only()
        .column(target::Column::Arm)
        .column_as(Expr::cust("COUNT(*)"), "n")
        .column_as(
            Expr::cust("CAST(SUM(CASE WHEN last_outcome IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT)"),
            "contacted",
        )
        .column_as(Expr::cust("COUNT(won_back_time)"), "won")
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(recovered_margin_minor), 0) AS BIGINT)"),
            "margin",
        )
        .column_as(
            Expr::cust(
                "CAST(SUM(CASE WHEN won_back_time IS NOT NULL AND repeat_purchases > 0 THEN 1 ELSE 0 END) AS BIGINT)",
            ),
            "repeaters",
        )
        .filter(target::Column::CampaignId.eq(campaign_id))
        .group_by(target::Column::Arm)
        .into_tuple()
        .all(db)
        .await?;
    let mut out = HashMap::new();
    for (arm, targets, contacted, won_back, margin, repeaters) in counts {
        out.insert(
            parse(&arm, Arm::parse)?,
            ArmRow {
                targets,
                contacted,
                won_back,
                recovered_margin_minor: margin,
                recovered_value_minor: 0,
                repeaters,
                days_to_win: Vec::new(),
            },
        );
    }
    type Won = (
        String,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        i64,
        Option<i64>,
    );
    let won: Vec<Won> = target::Entity::find()
        .select_only()
        .column(target::Column::Arm)
        .column(target::Column::WindowStart)
        .column(target::Column::WonBackTime)
        .column(target::Column::PredictedClvMinor)
        .column(target::Column::RetainedClvMinor)
        .filter(target::Column::CampaignId.eq(campaign_id))
        .filter(target::Column::WonBackTime.is_not_null())
        .into_tuple()
        .all(db)
        .await?;
    for (arm, start, at, predicted, retained) in won {
        if let (Some(row), Some(at)) = (out.get_mut(&parse(&arm, Arm::parse)?), at) {
            row.days_to_win
                .push((at - start).num_seconds() as f64 / 86_400.0);
            row.recovered_value_minor += basis.value_of(predicted, retained);
        }
    }
    Ok(out)
}
