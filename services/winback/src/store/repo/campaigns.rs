//! Campaigns and their optimistic-concurrency updates.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::SimpleExpr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

use super::{newest_first, parse};
use crate::domain::campaign::{CampaignKind, CampaignState, OfferKind, Strategy};
use crate::domain::records::{Campaign, ContactChannel};
use crate::domain::targeting::ValueBasis;
use crate::store::entities::campaign;

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
        value_basis: Set(c.value_basis.as_str().into()),
    }
}

fn campaign_from(m: campaign::Model) -> Result<Campaign, DbErr> {
    Ok(Campaign {
        kind: parse(&m.kind, CampaignKind::parse)?,
        strategy: parse(&m.strategy, Strategy::parse)?,
        offer: parse(&m.offer_kind, OfferKind::parse)?,
        channel: parse(&m.channel, ContactChannel::parse)?,
        state: parse(&m.state, CampaignState::parse)?,
        value_basis: parse(&m.value_basis, ValueBasis::parse)?,
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
    "value_basis",
];

/// Newest first; the cursor is the last (create_time, id) returned.
pub async fn list_campaigns<C: ConnectionTrait>(
    db: &C,
    filter: Option<SimpleExpr>,
    before: Option<(DateTime<Utc>, String)>,
    limit: u64,
) -> Result<Vec<Campaign>, DbErr> {
    newest_first::<campaign::Entity>(
        filter,
        before,
        campaign::Column::CreateTime,
        campaign::Column::Id,
        limit,
    )
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
