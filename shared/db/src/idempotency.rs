//! AIP-155 request ids: the first result of a create-like call, keyed by method and
//! `request_id`, written in the same transaction as the call's effects so a retry
//! finds either nothing (and redoes the call) or the committed result.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{ConnectionTrait, DbErr};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Key,
    Resource,
    CreateTime,
}

crate::migration!(
    /// One of the shared tables every service's migrator starts with.
    IdempotencyMigration,
    "m20260101_000002_idempotency_keys"
);

#[async_trait::async_trait]
impl MigrationTrait for IdempotencyMigration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::schema::create_table(
            m,
            Table::create()
                .table(IdempotencyKeys::Table)
                .col(string_len(IdempotencyKeys::Key, 200).primary_key())
                .col(string_len(IdempotencyKeys::Resource, 200))
                .col(timestamp_with_time_zone(IdempotencyKeys::CreateTime)),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::schema::drop_tables(m, &["idempotency_keys"]).await
    }
}

/// For a method's `request_id` (AIP-155): the resource an earlier call with the
/// same id produced, if it committed. An empty id never matches.
pub async fn replay<C: ConnectionTrait>(
    db: &C,
    method: &str,
    request_id: &str,
) -> Result<Option<String>, DbErr> {
    if request_id.is_empty() {
        return Ok(None);
    }
    find(db, &format!("{method}:{request_id}")).await
}

/// Records `resource` for the method's `request_id` inside the caller's
/// transaction; false when a concurrent call with the same id committed first
/// (the caller then drops its transaction and replays). Empty ids are not kept.
pub async fn remember<C: ConnectionTrait>(
    db: &C,
    method: &str,
    request_id: &str,
    resource: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    if request_id.is_empty() {
        return Ok(true);
    }
    save(db, &format!("{method}:{request_id}"), resource, now).await
}

/// The resource a call with this key produced, if it committed.
pub async fn find<C: ConnectionTrait>(db: &C, key: &str) -> Result<Option<String>, DbErr> {
    let q = Query::select()
        .column(IdempotencyKeys::Resource)
        .from(IdempotencyKeys::Table)
        .and_where(Expr::col(IdempotencyKeys::Key).eq(key))
        .to_owned();
    match db.query_one(&q).await? {
        Some(row) => Ok(Some(row.try_get::<String>("", "resource")?)),
        None => Ok(None),
    }
}

/// Records the result; false when another call with the same key got there first.
pub async fn save<C: ConnectionTrait>(
    db: &C,
    key: &str,
    resource: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let q = Query::insert()
        .into_table(IdempotencyKeys::Table)
        .columns([
            IdempotencyKeys::Key,
            IdempotencyKeys::Resource,
            IdempotencyKeys::CreateTime,
        ])
        .values_panic([key.into(), resource.into(), now.into()])
        .on_conflict(
            OnConflict::column(IdempotencyKeys::Key)
                .do_nothing()
                .to_owned(),
        )
        .to_owned();
    Ok(db.execute(&q).await?.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_result_wins() {
        let db = crate::connect(&crate::DbOptions::new("sqlite::memory:"))
            .await
            .unwrap();
        let m = SchemaManager::new(&db);
        IdempotencyMigration.up(&m).await.unwrap();
        assert_eq!(find(&db, "Create:r1").await.unwrap(), None);
        assert!(save(&db, "Create:r1", "a", Utc::now()).await.unwrap());
        assert!(!save(&db, "Create:r1", "b", Utc::now()).await.unwrap());
        assert_eq!(find(&db, "Create:r1").await.unwrap().as_deref(), Some("a"));
    }
}
