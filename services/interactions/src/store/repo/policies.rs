//! SLA policies, business calendars and the customer tiers policies are chosen by.

use super::*;

pub async fn upsert_policy<C: ConnectionTrait>(db: &C, p: &SlaPolicy) -> Result<(), DbErr> {
    sla_policy::Entity::insert(sla_policy::ActiveModel {
        priority: Set(p.priority.as_str().into()),
        customer_tier: Set(p.tier.as_str().into()),
        first_response_minutes: Set(p.targets.first_response.num_minutes() as i32),
        resolution_minutes: Set(p.targets.resolution.num_minutes() as i32),
        calendar_id: Set(p.calendar_id.clone()),
        next_response_minutes: Set(p
            .targets
            .next_response
            .map(|d| i32::try_from(d.num_minutes()).unwrap_or(i32::MAX))),
        at_risk_percent: Set(Some(p.targets.at_risk_percent)),
        escalate_at_risk: Set(p.targets.escalate_at_risk),
    })
    .on_conflict(
        OnConflict::columns([
            sla_policy::Column::Priority,
            sla_policy::Column::CustomerTier,
        ])
        .update_columns([
            sla_policy::Column::FirstResponseMinutes,
            sla_policy::Column::ResolutionMinutes,
            sla_policy::Column::CalendarId,
            sla_policy::Column::NextResponseMinutes,
            sla_policy::Column::AtRiskPercent,
            sla_policy::Column::EscalateAtRisk,
        ])
        .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

fn policy_from(p: sla_policy::Model) -> Result<SlaPolicy, DbErr> {
    Ok(SlaPolicy {
        priority: parse(&p.priority, Priority::parse)?,
        tier: parse(&p.customer_tier, CustomerTier::parse)?,
        targets: SlaTargets {
            first_response: chrono::Duration::minutes(p.first_response_minutes.into()),
            resolution: chrono::Duration::minutes(p.resolution_minutes.into()),
            next_response: p
                .next_response_minutes
                .filter(|n| *n > 0)
                .map(|n| chrono::Duration::minutes(n.into())),
            // Policies stored before warnings existed warn at the default share.
            at_risk_percent: p
                .at_risk_percent
                .filter(|n| *n > 0)
                .unwrap_or(DEFAULT_AT_RISK_PERCENT),
            escalate_at_risk: p.escalate_at_risk,
        },
        calendar_id: p.calendar_id,
    })
}

pub async fn list_policies<C: ConnectionTrait>(db: &C) -> Result<Vec<SlaPolicy>, DbErr> {
    sla_policy::Entity::find()
        .order_by_asc(sla_policy::Column::Priority)
        .order_by_asc(sla_policy::Column::CustomerTier)
        .all(db)
        .await?
        .into_iter()
        .map(policy_from)
        .collect()
}

/// The configured policy, else the built-in defaults on wall-clock time.
pub async fn policy_for<C: ConnectionTrait>(
    db: &C,
    priority: Priority,
    tier: CustomerTier,
) -> Result<SlaPolicy, DbErr> {
    let row =
        sla_policy::Entity::find_by_id((priority.as_str().to_string(), tier.as_str().to_string()))
            .one(db)
            .await?;
    row.map_or_else(
        || {
            Ok(SlaPolicy {
                priority,
                tier,
                targets: default_targets(priority, tier),
                calendar_id: None,
            })
        },
        policy_from,
    )
}

fn calendar_from(m: business_calendar::Model) -> Result<StoredCalendar, DbErr> {
    let definition: CalendarDefinition = serde_json::from_str(&m.definition)
        .map_err(|e| DbErr::Type(format!("calendar {}: {e}", m.id)))?;
    Ok(StoredCalendar {
        id: m.id,
        definition,
        version: m.version,
        create_time: m.create_time,
        update_time: m.update_time,
    })
}

fn definition_json(c: &StoredCalendar) -> Result<String, DbErr> {
    serde_json::to_string(&c.definition).map_err(|e| DbErr::Type(format!("calendar {}: {e}", c.id)))
}

pub async fn insert_calendar<C: ConnectionTrait>(db: &C, c: &StoredCalendar) -> Result<(), DbErr> {
    business_calendar::Entity::insert(business_calendar::ActiveModel {
        id: Set(c.id.clone()),
        definition: Set(definition_json(c)?),
        version: Set(c.version),
        create_time: Set(c.create_time),
        update_time: Set(c.update_time),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn load_calendar<C: ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<Option<StoredCalendar>, DbErr> {
    business_calendar::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(calendar_from)
        .transpose()
}

/// Writes `c` if the stored version is still `expected`; false on a lost race.
pub async fn update_calendar<C: ConnectionTrait>(
    db: &C,
    c: &StoredCalendar,
    expected: i64,
) -> Result<bool, DbErr> {
    let res = business_calendar::Entity::update_many()
        .set(business_calendar::ActiveModel {
            definition: Set(definition_json(c)?),
            version: Set(c.version),
            update_time: Set(c.update_time),
            ..Default::default()
        })
        .filter(business_calendar::Column::Id.eq(c.id.as_str()))
        .filter(business_calendar::Column::Version.eq(expected))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// In id order (UUIDv7: creation order), after the id `after`.
pub async fn list_calendars<C: ConnectionTrait>(
    db: &C,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<StoredCalendar>, DbErr> {
    let mut s = business_calendar::Entity::find();
    if let Some(a) = after {
        s = s.filter(business_calendar::Column::Id.gt(a));
    }
    s.order_by_asc(business_calendar::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(calendar_from)
        .collect()
}

/// Tier from the segmentation read model; "ordinary" until segmentation says otherwise.
pub async fn tier_of<C: ConnectionTrait>(db: &C, customer_id: &str) -> Result<CustomerTier, DbErr> {
    Ok(customer_tier::Entity::find_by_id(customer_id.to_string())
        .one(db)
        .await?
        .and_then(|t| CustomerTier::parse(&t.tier))
        .unwrap_or(CustomerTier::Ordinary))
}

pub async fn set_tier<C: ConnectionTrait>(
    db: &C,
    customer_id: &str,
    tier: CustomerTier,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    customer_tier::Entity::insert(customer_tier::ActiveModel {
        customer_id: Set(customer_id.into()),
        tier: Set(tier.as_str().into()),
        update_time: Set(now),
    })
    .on_conflict(
        OnConflict::column(customer_tier::Column::CustomerId)
            .update_columns([
                customer_tier::Column::Tier,
                customer_tier::Column::UpdateTime,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}
