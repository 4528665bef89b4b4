//! The outbox and inbox tables. Services list [`EventsMigration`] in their own
//! migrator so both live in the same database as the service's state — the point
//! of an outbox is sharing the state change's transaction.

use sea_orm_migration::prelude::*;

/// Creates `outbox_events` and `processed_events` on PostgreSQL and SQLite alike
/// (sea-query builders only, no backend-specific SQL).
pub struct EventsMigration;

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

impl MigrationName for EventsMigration {
    fn name(&self) -> &str {
        "m20260101_000001_events_outbox"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for EventsMigration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OutboxEvents::Table)
                    .if_not_exists()
                    // Publication order; a 64-bit counter never wraps in practice.
                    .col(
                        ColumnDef::new(OutboxEvents::Seq)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(OutboxEvents::EventId)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(OutboxEvents::Stream)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OutboxEvents::EventType)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OutboxEvents::CustomerId)
                            .string_len(128)
                            .null(),
                    )
                    .col(ColumnDef::new(OutboxEvents::Envelope).blob().not_null())
                    .col(
                        ColumnDef::new(OutboxEvents::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OutboxEvents::PublishedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(OutboxEvents::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        // Partial index: the relay's "oldest unpublished first" scan stays small
        // however many published rows are retained.
        manager
            .create_index(
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
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_events_published_at")
                    .table(OutboxEvents::Table)
                    .col(OutboxEvents::PublishedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProcessedEvents::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ProcessedEvents::Consumer)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProcessedEvents::EventId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProcessedEvents::ProcessedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ProcessedEvents::Consumer)
                            .col(ProcessedEvents::EventId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_processed_events_processed_at")
                    .table(ProcessedEvents::Table)
                    .col(ProcessedEvents::ProcessedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(ProcessedEvents::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(OutboxEvents::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
