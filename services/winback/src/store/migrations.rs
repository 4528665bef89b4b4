//! Schema of the win-back database (sea-query builders: PostgreSQL and SQLite).
//! Only the service's own tables: the shared ones (outbox, inbox, request ids)
//! come first from the host (`retention_server::host::Migrator`).

use retention_db::schema::{add_columns, create_index, create_table, drop_columns, drop_tables};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The service's own migrations, in the order they were added.
pub fn own() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(CreateWinbackTables),
        Box::new(CreateAttributedPurchases),
        Box::new(AddValueBasis),
        Box::new(AddComplaintAtRisk),
    ]
}

retention_db::migration!(
    /// The first schema (named after this file, as the derive it replaced did).
    CreateWinbackTables,
    "migrations"
);

#[async_trait::async_trait]
impl MigrationTrait for CreateWinbackTables {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        create_table(
            m,
            Table::create()
                .table("churn_records")
                .col(string_len("id", 36).primary_key())
                .col(string_len("customer_id", 36))
                .col(string_len("churn_type", 16))
                // Comma-separated reason codes, in the order given.
                .col(string("reason_codes"))
                .col(text("evidence"))
                .col(timestamp_with_time_zone("churn_time"))
                .col(big_integer_null("value_minor"))
                .col(string_len_null("value_currency", 3))
                .col(timestamp_with_time_zone("create_time")),
        )
        .await?;
        create_index(
            m,
            "idx_churn_records_customer",
            "churn_records",
            &["customer_id", "churn_time"],
        )
        .await?;
        create_index(
            m,
            "idx_churn_records_time",
            "churn_records",
            &["churn_time", "id"],
        )
        .await?;
        create_table(
            m,
            Table::create()
                .table("campaigns")
                .col(string_len("id", 36).primary_key())
                .col(string("display_name"))
                .col(string_len("kind", 16))
                .col(string_len("strategy", 32))
                .col(string_len("offer_kind", 32))
                .col(text("offer_description"))
                .col(big_integer("offer_cost_minor"))
                .col(string_len("currency", 3))
                .col(string_len("channel", 16))
                .col(string_len_null("target_segment", 36))
                .col(text_null("target_filter"))
                .col(big_integer("budget_minor"))
                .col(double("max_cost_share_of_value"))
                .col(double("holdout_share"))
                .col(big_integer("seed"))
                .col(integer("win_window_days"))
                .col(integer("cool_down_days"))
                .col(timestamp_with_time_zone_null("schedule_time"))
                .col(boolean("triggered"))
                .col(string_len("state", 16))
                // Offer cost committed to treated targets so far (the budget's use).
                .col(big_integer("committed_minor"))
                .col(timestamp_with_time_zone("create_time"))
                .col(timestamp_with_time_zone_null("launch_time"))
                .col(timestamp_with_time_zone_null("end_time"))
                .col(timestamp_with_time_zone("update_time"))
                .col(big_integer("version")),
        )
        .await?;
        create_index(
            m,
            "idx_campaigns_create",
            "campaigns",
            &["create_time", "id"],
        )
        .await?;
        create_index(
            m,
            "idx_campaigns_state",
            "campaigns",
            &["state", "schedule_time"],
        )
        .await?;
        create_table(
            m,
            Table::create()
                .table("campaign_targets")
                .col(string_len("campaign_id", 36))
                .col(string_len("customer_id", 36))
                .col(string_len("arm", 16))
                .col(big_integer("predicted_clv_minor"))
                .col(string_len("currency", 3))
                // The win window: opened by the dispatch (treated) or the enrolment
                // (control), closed at the deadline.
                .col(timestamp_with_time_zone("window_start"))
                .col(timestamp_with_time_zone("win_deadline"))
                .col(timestamp_with_time_zone_null("dispatch_time"))
                .col(string_len_null("last_outcome", 16))
                .col(timestamp_with_time_zone_null("outcome_time"))
                .col(timestamp_with_time_zone_null("won_back_time"))
                .col(big_integer("recovered_margin_minor"))
                .col(integer("repeat_purchases"))
                .primary_key(Index::create().col("campaign_id").col("customer_id")),
        )
        .await?;
        create_index(
            m,
            "idx_targets_customer",
            "campaign_targets",
            &["customer_id", "win_deadline"],
        )
        .await?;
        create_table(
            m,
            Table::create()
                .table("campaign_exclusions")
                .col(string_len("campaign_id", 36))
                .col(string_len("customer_id", 36))
                .col(string_len("reason", 32))
                .primary_key(Index::create().col("campaign_id").col("customer_id")),
        )
        .await?;
        // Read models of other services' facts, kept from their events.
        create_table(
            m,
            Table::create()
                .table("consents")
                .col(string_len("customer_id", 36))
                .col(string_len("channel", 16))
                .col(boolean("granted"))
                .primary_key(Index::create().col("customer_id").col("channel")),
        )
        .await?;
        create_table(
            m,
            Table::create()
                .table("complaint_signals")
                .col(string_len("complaint_id", 36).primary_key())
                .col(string_len("customer_id", 36))
                .col(boolean("unresolved"))
                .col(boolean("breached"))
                .col(boolean("escalated"))
                .col(timestamp_with_time_zone("update_time")),
        )
        .await?;
        create_index(
            m,
            "idx_complaint_signals_customer",
            "complaint_signals",
            &["customer_id"],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(
            m,
            &[
                "complaint_signals",
                "consents",
                "campaign_exclusions",
                "campaign_targets",
                "campaigns",
                "churn_records",
            ],
        )
        .await
    }
}

retention_db::migration!(
    /// Purchases already attributed against targets (a replay counts for nothing).
    CreateAttributedPurchases,
    "m20261202_000001_create_attributed_purchases"
);

#[async_trait::async_trait]
impl MigrationTrait for CreateAttributedPurchases {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        create_table(
            m,
            Table::create()
                .table("attributed_purchases")
                .col(string_len("purchase_id", 64).primary_key())
                .col(string_len("customer_id", 36))
                .col(timestamp_with_time_zone("record_time")),
        )
        .await?;
        create_index(
            m,
            "idx_attributed_purchases_customer",
            "attributed_purchases",
            &["customer_id"],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(m, &["attributed_purchases"]).await
    }
}

retention_db::migration!(
    /// A campaign's value basis (the value that ranks candidates and caps the offer
    /// cost) and each target's value if retained. Campaigns created before keep
    /// ranking by the expected value they were launched with; their targets hold no
    /// value if retained.
    AddValueBasis,
    "m20261203_000001_add_value_basis"
);

#[async_trait::async_trait]
impl MigrationTrait for AddValueBasis {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        add_columns(
            m,
            "campaigns",
            [string_len("value_basis", 16).default("EXPECTED").to_owned()],
        )
        .await?;
        add_columns(
            m,
            "campaign_targets",
            [big_integer_null("retained_clv_minor")],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        drop_columns(m, "campaign_targets", &["retained_clv_minor"]).await?;
        drop_columns(m, "campaigns", &["value_basis"]).await
    }
}

retention_db::migration!(
    /// Complaints whose SLA target was reported at risk of a breach
    /// (ComplaintSlaAtRisk).
    AddComplaintAtRisk,
    "m20261207_000001_add_complaint_at_risk"
);

#[async_trait::async_trait]
impl MigrationTrait for AddComplaintAtRisk {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        add_columns(
            m,
            "complaint_signals",
            [boolean("at_risk").default(false).to_owned()],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        drop_columns(m, "complaint_signals", &["at_risk"]).await
    }
}
