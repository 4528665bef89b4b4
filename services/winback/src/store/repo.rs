//! Queries and writes of the win-back database; callers own transactions.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use retention_db::filter_sql::{FilterColumns, to_condition};
use retention_filter::FieldPath;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, SimpleExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::entities::{campaign, churn_record, complaint_signal, consent, exclusion, target};
use crate::domain::campaign::{CampaignKind, CampaignState, OfferKind, Strategy};
use crate::domain::churn::{ChurnType, ReasonCode};
use crate::domain::records::*;
use crate::domain::targeting::{Arm, Exclusion};

/// Rows per statement when a list of customers goes into `IN (...)` or a bulk
/// insert: well under SQLite's bound-parameter limit.
const CHUNK: usize = 500;

fn parse<T>(s: &str, f: fn(&str) -> Option<T>) -> Result<T, DbErr> {
    f(s).ok_or_else(|| DbErr::Type(format!("unknown stored value {s:?}")))
}

/// Filter fields map one-to-one onto columns of the listed table.
pub struct Columns(pub &'static [&'static str]);

impl FilterColumns for Columns {
    fn target(&self, path: &FieldPath, _backend: DbBackend) -> Option<SimpleExpr> {
        match path.0.as_slice() {
            [field] if self.0.contains(&field.as_str()) => Some(Expr::col(field.clone())),
            _ => None,
        }
    }
}

pub fn condition(
    f: &retention_filter::Expr,
    backend: DbBackend,
    cols: &'static [&'static str],
) -> SimpleExpr {
    to_condition(f, backend, &Columns(cols))
}

// ---- churn records ------------------------------------------------------------

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
    let mut q = churn_record::Entity::find();
    if let Some(f) = filter {
        q = q.filter(f);
    }
    if let Some((t, id)) = before {
        q = q.filter(
            Condition::any()
                .add(churn_record::Column::ChurnTime.lt(t))
                .add(
                    churn_record::Column::ChurnTime
                        .eq(t)
                        .and(churn_record::Column::Id.lt(id)),
                ),
        );
    }
    q.order_by_desc(churn_record::Column::ChurnTime)
        .order_by_desc(churn_record::Column::Id)
        .limit(limit)
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

// ---- campaigns ----------------------------------------------------------------

fn campaign_active(c: &Campaign) -> campaign::ActiveModel {
    campaign::ActiveModel {
        id: Set(c.id.clone()),
        display_name: Set(c.display_name.clone()),
        kind: Set(c.kind.as_str().into()),
        strategy: Set(c.strategy.as_str().into()),
        offer_kind: Set(c.offer.as_str().into()),
        offer_description: Set(c.offer_description.clone()),
        offer_cost_minor: Set(c.offer_cost_minor),
        currency: Set(c.currency.clone()),
        channel: Set(c.channel.as_str().into()),
        target_segment: Set(c.target_segment.clone()),
        target_filter: Set(c.target_filter.clone()),
        budget_minor: Set(c.budget_minor),
        max_cost_share_of_value: Set(c.max_cost_share_of_value),
        holdout_share: Set(c.holdout_share),
        seed: Set(c.seed),
        win_window_days: Set(c.win_window_days),
        cool_down_days: Set(c.cool_down_days),
        schedule_time: Set(c.schedule_time),
        triggered: Set(c.triggered),
        state: Set(c.state.as_str().into()),
        committed_minor: Set(c.committed_minor),
        create_time: Set(c.create_time),
        launch_time: Set(c.launch_time),
        end_time: Set(c.end_time),
        update_time: Set(c.update_time),
        version: Set(c.version),
    }
}

fn campaign_from(m: campaign::Model) -> Result<Campaign, DbErr> {
    Ok(Campaign {
        kind: parse(&m.kind, CampaignKind::parse)?,
        strategy: parse(&m.strategy, Strategy::parse)?,
        offer: parse(&m.offer_kind, OfferKind::parse)?,
        channel: parse(&m.channel, ContactChannel::parse)?,
        state: parse(&m.state, CampaignState::parse)?,
        id: m.id,
        display_name: m.display_name,
        offer_description: m.offer_description,
        offer_cost_minor: m.offer_cost_minor,
        currency: m.currency,
        target_segment: m.target_segment,
        target_filter: m.target_filter,
        budget_minor: m.budget_minor,
        max_cost_share_of_value: m.max_cost_share_of_value,
        holdout_share: m.holdout_share,
        seed: m.seed,
        win_window_days: m.win_window_days,
        cool_down_days: m.cool_down_days,
        schedule_time: m.schedule_time,
        triggered: m.triggered,
        committed_minor: m.committed_minor,
        create_time: m.create_time,
        launch_time: m.launch_time,
        end_time: m.end_time,
        update_time: m.update_time,
        version: m.version,
    })
}

pub async fn insert_campaign<C: ConnectionTrait>(db: &C, c: &Campaign) -> Result<(), DbErr> {
    campaign::Entity::insert(campaign_active(c))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn load_campaign<C: ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<Option<Campaign>, DbErr> {
    campaign::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(campaign_from)
        .transpose()
}

/// Writes `c` if the stored version is still `expected` (optimistic concurrency);
/// false when another writer got there first.
pub async fn update_campaign<C: ConnectionTrait>(
    db: &C,
    c: &Campaign,
    expected: i64,
) -> Result<bool, DbErr> {
    let r = campaign::Entity::update_many()
        .set(campaign_active(c))
        .filter(campaign::Column::Id.eq(c.id.as_str()))
        .filter(campaign::Column::Version.eq(expected))
        .exec(db)
        .await?;
    Ok(r.rows_affected == 1)
}

pub const CAMPAIGN_FILTER_FIELDS: &[&str] = &[
    "display_name",
    "kind",
    "strategy",
    "offer_kind",
    "channel",
    "state",
    "triggered",
    "create_time",
    "launch_time",
];

/// Newest first; the cursor is the last (create_time, id) returned.
pub async fn list_campaigns<C: ConnectionTrait>(
    db: &C,
    filter: Option<SimpleExpr>,
    before: Option<(DateTime<Utc>, String)>,
    limit: u64,
) -> Result<Vec<Campaign>, DbErr> {
    let mut q = campaign::Entity::find();
    if let Some(f) = filter {
        q = q.filter(f);
    }
    if let Some((t, id)) = before {
        q = q.filter(
            Condition::any()
                .add(campaign::Column::CreateTime.lt(t))
                .add(
                    campaign::Column::CreateTime
                        .eq(t)
                        .and(campaign::Column::Id.lt(id)),
                ),
        );
    }
    q.order_by_desc(campaign::Column::CreateTime)
        .order_by_desc(campaign::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(campaign_from)
        .collect()
}

pub async fn campaigns_in_state<C: ConnectionTrait>(
    db: &C,
    states: &[CampaignState],
) -> Result<Vec<Campaign>, DbErr> {
    campaign::Entity::find()
        .filter(campaign::Column::State.is_in(states.iter().map(|s| s.as_str())))
        .order_by_asc(campaign::Column::CreateTime)
        .all(db)
        .await?
        .into_iter()
        .map(campaign_from)
        .collect()
}

/// Launched campaigns (running, paused or completed) for the strategy comparison.
pub async fn launched_campaigns<C: ConnectionTrait>(
    db: &C,
    kind: Option<CampaignKind>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
) -> Result<Vec<Campaign>, DbErr> {
    let mut q = campaign::Entity::find()
        .filter(campaign::Column::LaunchTime.is_not_null())
        .filter(campaign::Column::State.ne(CampaignState::Cancelled.as_str()));
    if let Some(k) = kind {
        q = q.filter(campaign::Column::Kind.eq(k.as_str()));
    }
    if let Some(t) = start {
        q = q.filter(campaign::Column::LaunchTime.gte(t));
    }
    if let Some(t) = end {
        q = q.filter(campaign::Column::LaunchTime.lt(t));
    }
    q.all(db).await?.into_iter().map(campaign_from).collect()
}

// ---- targets ------------------------------------------------------------------

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
    }
}

fn target_from(m: target::Model) -> Result<Target, DbErr> {
    Ok(Target {
        arm: parse(&m.arm, Arm::parse)?,
        last_outcome: m.last_outcome.as_deref().and_then(ContactOutcome::parse),
        campaign_id: m.campaign_id,
        customer_id: m.customer_id,
        predicted_clv_minor: m.predicted_clv_minor,
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
/// won-back customers who bought again, and the days each win took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArmRow {
    pub targets: i64,
    pub contacted: i64,
    pub won_back: i64,
    pub recovered_margin_minor: i64,
    pub repeaters: i64,
    pub days_to_win: Vec<f64>,
}

pub async fn arm_rows<C: ConnectionTrait>(
    db: &C,
    campaign_id: &str,
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
                repeaters,
                days_to_win: Vec::new(),
            },
        );
    }
    let won: Vec<(String, DateTime<Utc>, Option<DateTime<Utc>>)> = target::Entity::find()
        .select_only()
        .column(target::Column::Arm)
        .column(target::Column::WindowStart)
        .column(target::Column::WonBackTime)
        .filter(target::Column::CampaignId.eq(campaign_id))
        .filter(target::Column::WonBackTime.is_not_null())
        .into_tuple()
        .all(db)
        .await?;
    for (arm, start, at) in won {
        if let (Some(row), Some(at)) = (out.get_mut(&parse(&arm, Arm::parse)?), at) {
            row.days_to_win
                .push((at - start).num_seconds() as f64 / 86_400.0);
        }
    }
    Ok(out)
}

// ---- read models --------------------------------------------------------------

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

/// Customers among `customers` who withdrew consent for `channel`.
pub async fn opted_out<C: ConnectionTrait>(
    db: &C,
    customers: &[String],
    channel: ContactChannel,
) -> Result<HashSet<String>, DbErr> {
    let mut out = HashSet::new();
    for chunk in customers.chunks(CHUNK) {
        let rows: Vec<String> = consent::Entity::find()
            .select_only()
            .column(consent::Column::CustomerId)
            .filter(consent::Column::CustomerId.is_in(chunk.iter().cloned()))
            .filter(consent::Column::Channel.eq(channel.as_str()))
            .filter(consent::Column::Granted.eq(false))
            .into_tuple()
            .all(db)
            .await?;
        out.extend(rows);
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
}

pub async fn record_complaint<C: ConnectionTrait>(
    db: &C,
    complaint_id: &str,
    customer_id: &str,
    fact: ComplaintFact,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let mut row = complaint_signal::Entity::find_by_id(complaint_id.to_string())
        .one(db)
        .await?
        .unwrap_or(complaint_signal::Model {
            complaint_id: complaint_id.into(),
            customer_id: customer_id.into(),
            unresolved: true,
            breached: false,
            escalated: false,
            update_time: at,
        });
    match fact {
        ComplaintFact::Opened | ComplaintFact::Unresolved => row.unresolved = true,
        ComplaintFact::Resolved => row.unresolved = false,
        ComplaintFact::Escalated => row.escalated = true,
        ComplaintFact::Breached => row.breached = true,
    }
    row.update_time = at;
    complaint_signal::Entity::insert(complaint_signal::ActiveModel {
        complaint_id: Set(row.complaint_id),
        customer_id: Set(row.customer_id),
        unresolved: Set(row.unresolved),
        breached: Set(row.breached),
        escalated: Set(row.escalated),
        update_time: Set(row.update_time),
    })
    .on_conflict(
        OnConflict::column(complaint_signal::Column::ComplaintId)
            .update_columns([
                complaint_signal::Column::Unresolved,
                complaint_signal::Column::Breached,
                complaint_signal::Column::Escalated,
                complaint_signal::Column::UpdateTime,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// (unresolved, breached, escalated) complaint counts of a customer.
pub async fn complaint_counts<C: ConnectionTrait>(
    db: &C,
    customer_id: &str,
) -> Result<(u32, u32, u32), DbErr> {
    let rows = complaint_signal::Entity::find()
        .filter(complaint_signal::Column::CustomerId.eq(customer_id))
        .all(db)
        .await?;
    let n = |f: fn(&complaint_signal::Model) -> bool| rows.iter().filter(|r| f(r)).count() as u32;
    Ok((n(|r| r.unresolved), n(|r| r.breached), n(|r| r.escalated)))
}

/// Profile merged `merged` into `survivor`: its history becomes the survivor's.
/// A campaign holding both keeps the survivor's target and drops the other.
pub async fn merge_customer<C: ConnectionTrait>(
    db: &C,
    merged: &str,
    survivor: &str,
) -> Result<(), DbErr> {
    churn_record::Entity::update_many()
        .col_expr(churn_record::Column::CustomerId, Expr::val(survivor))
        .filter(churn_record::Column::CustomerId.eq(merged))
        .exec(db)
        .await?;
    complaint_signal::Entity::update_many()
        .col_expr(complaint_signal::Column::CustomerId, Expr::val(survivor))
        .filter(complaint_signal::Column::CustomerId.eq(merged))
        .exec(db)
        .await?;
    consent::Entity::delete_many()
        .filter(consent::Column::CustomerId.eq(merged))
        .exec(db)
        .await?;
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
    exclusion::Entity::delete_many()
        .filter(exclusion::Column::CustomerId.eq(merged))
        .exec(db)
        .await?;
    Ok(())
}

/// Profile erased the customer: personal records go; campaign targets stay under
/// an opaque pseudonym so campaign results keep their counts.
pub async fn erase_customer<C: ConnectionTrait>(
    db: &C,
    customer_id: &str,
    pseudonym: &str,
) -> Result<(), DbErr> {
    churn_record::Entity::delete_many()
        .filter(churn_record::Column::CustomerId.eq(customer_id))
        .exec(db)
        .await?;
    complaint_signal::Entity::delete_many()
        .filter(complaint_signal::Column::CustomerId.eq(customer_id))
        .exec(db)
        .await?;
    consent::Entity::delete_many()
        .filter(consent::Column::CustomerId.eq(customer_id))
        .exec(db)
        .await?;
    exclusion::Entity::delete_many()
        .filter(exclusion::Column::CustomerId.eq(customer_id))
        .exec(db)
        .await?;
    target::Entity::update_many()
        .col_expr(target::Column::CustomerId, Expr::val(pseudonym))
        .filter(target::Column::CustomerId.eq(customer_id))
        .exec(db)
        .await?;
    Ok(())
}
