//! The outbox and inbox tables. Every service's migrator starts with
//! [`EventsMigration`] (see [`crate::shared_migrations`]) so both live in the same database as the service's state — the point
//! of an outbox is sharing the state change's transaction.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

retention_db::migration!(
    /// Creates `outbox_events` and `processed_events` on PostgreSQL and SQLite alike
    /// (sea-query builders only, no backend-specific SQL).
    EventsMigration,
    "m20260101_000001_events_outbox"
);

#[derive(DeriveIden)]
pub(crate) enum OutboxEvents {
    Table,
    Seq,
    EventId,
    Stream,
    EventType,
    CustomerId,
    Envelope,
    CreatedAt,
    PublishedAt,
    Attempts,
}

#[derive(DeriveIden)]
pub(crate) enum ProcessedEvents {
    Table,
    Consumer,
    EventId,
    ProcessedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for EventsMigration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        retention_db::schema::create_table(
            m,
            Table::create()
                .table(OutboxEvents::Table)
                // Publication order; a 64-bit counter never wraps in practice.
                .col(
                    big_integer(OutboxEvents::Seq)
                        .auto_increment()
                        .primary_key(),
                )
                .col(string_len(OutboxEvents::EventId, 64).unique_key())
                .col(string_len(OutboxEvents::Stream, 255))
                .col(string_len(OutboxEvents::EventType, 255))
                .col(string_len_null(OutboxEvents::CustomerId, 128))
                .col(blob(OutboxEvents::Envelope))
                .col(timestamp_with_time_zone(OutboxEvents::CreatedAt))
                .col(timestamp_with_time_zone_null(OutboxEvents::PublishedAt))
                .col(integer(OutboxEvents::Attempts).default(0)),
        )
        .await?;
        // Partial index: the relay's "oldest unpublished first" scan stays small
        // however many published rows are retained.
        m.create_index(
            Index::create()
                .name("idx_outbox_events_unpublished")
                .table(OutboxEvents::Table)
                .col(OutboxEvents::Seq)
                .and_where(Expr::col(OutboxEvents::PublishedAt).is_null())
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        // For purging old published rows.
        retention_db::create_index(
            m,
            "idx_outbox_events_published_at",
            "outbox_events",
            &["published_at"],
        )
        .await?;
        retention_db::schema::create_table(
            m,
            Table::create()
                .table(ProcessedEvents::Table)
                .col(string_len(ProcessedEvents::Consumer, 128))
                .col(string_len(ProcessedEvents::EventId, 64))
                .col(timestamp_with_time_zone(ProcessedEvents::ProcessedAt))
                .primary_key(
                    Index::create()
                        .col(ProcessedEvents::Consumer)
                        .col(ProcessedEvents::EventId),
                ),
        )
        .await?;
        retention_db::create_index(
            m,
            "idx_processed_events_processed_at",
            "processed_events",
            &["processed_at"],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        retention_db::schema::drop_tables(m, &["processed_events", "outbox_events"]).await
    }
}
