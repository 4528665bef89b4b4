//! Segments and their memberships.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
};

use super::after_key;
use crate::domain::segments::Segment;
use crate::store::entities::{member, segment};

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
    Ok(
        after_key(segment::Entity::find(), segment::Column::Id, after)
            .limit(limit)
            .all(db)
            .await?
            .into_iter()
            .map(segment_from)
            .collect(),
    )
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
    let q = member::Entity::find()
        .select_only()
        .column(member::Column::CustomerId)
        .filter(member::Column::SegmentId.eq(segment_id));
    after_key(q, member::Column::CustomerId, after)
        .limit(limit)
        .into_tuple::<String>()
        .all(db)
        .await
}
