//! Schema of the segmentation database (sea-query builders: PostgreSQL and SQLite).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(retention_events::EventsMigration),
            Box::new(retention_db::idempotency::IdempotencyMigration),
            Box::new(CreateSegmentationTables),
            Box::new(CreateErasedCustomers),
            Box::new(CreateMergedCustomers),
            Box::new(AddPurchaseMargins),
            Box::new(AddBacktests),
            Box::new(AddRetainedClv),
        ]
    }
}

#[derive(DeriveMigrationName)]
struct CreateSegmentationTables;

#[async_trait::async_trait]
impl MigrationTrait for CreateSegmentationTables {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("features")
                .if_not_exists()
                .col(string_len("customer_id", 36).primary_key())
                .col(text("data"))
                .col(timestamp_with_time_zone("update_time"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("purchases")
                .if_not_exists()
                .col(string_len("purchase_id", 64).primary_key())
                .col(string_len("customer_id", 36))
                .col(timestamp_with_time_zone("occur_time"))
                .to_owned(),
        )
        .await?;
        retention_db::create_index(
            m,
            "idx_purchases_customer",
            "purchases",
            &["customer_id", "occur_time"],
        )
        .await?;
        m.create_table(
            Table::create()
                .table("insights")
                .if_not_exists()
                .col(string_len("customer_id", 36).primary_key())
                .col(integer_null("rfm_recency"))
                .col(integer_null("rfm_frequency"))
                .col(integer_null("rfm_monetary"))
                .col(string_len_null("rfm_segment", 24))
                .col(string_len("value_tier", 16))
                .col(string_len("management_tier", 16))
                .col(string_len("lifecycle_stage", 16))
                .col(string_len("loyalty_stage", 16))
                .col(string_len("account_quadrant", 24))
                .col(integer("order_type"))
                .col(string_len("size_tier", 16))
                .col(string_len("wallet_stability", 24))
                .col(double("p_alive"))
                .col(double("churn_probability"))
                .col(double("expected_purchases"))
                .col(string_len("churn_risk", 16))
                .col(big_integer("predicted_clv"))
                .col(big_integer("historical_margin"))
                .col(integer("purchases"))
                .col(integer("complaints_open"))
                .col(integer("complaints_breached"))
                .col(double_null("mean_csat"))
                .col(timestamp_with_time_zone("score_time"))
                .col(string_len("scoring_run", 40))
                .col(text("data"))
                .to_owned(),
        )
        .await?;
        for col in [
            "predicted_clv",
            "historical_margin",
            "p_alive",
            "churn_probability",
            "expected_purchases",
        ] {
            retention_db::create_index(
                m,
                &format!("idx_insights_{col}"),
                "insights",
                &[col, "customer_id"],
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .table("segments")
                .if_not_exists()
                .col(string_len("id", 36).primary_key())
                .col(string("display_name"))
                .col(text("description"))
                .col(text("filter"))
                .col(timestamp_with_time_zone("create_time"))
                .col(timestamp_with_time_zone("update_time"))
                .col(big_integer("version"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("segment_members")
                .if_not_exists()
                .col(string_len("segment_id", 36))
                .col(string_len("customer_id", 36))
                .col(timestamp_with_time_zone("enter_time"))
                .primary_key(Index::create().col("segment_id").col("customer_id"))
                .to_owned(),
        )
        .await?;
        retention_db::create_index(
            m,
            "idx_segment_members_customer",
            "segment_members",
            &["customer_id"],
        )
        .await?;
        m.create_table(
            Table::create()
                .table("scoring_runs")
                .if_not_exists()
                .col(string_len("id", 36).primary_key())
                .col(string_len("state", 16))
                .col(integer("percent_complete"))
                .col(string_len("stage", 16))
                .col(big_integer("customers_scored"))
                .col(timestamp_with_time_zone("create_time"))
                .col(timestamp_with_time_zone_null("end_time"))
                .col(text("error"))
                .to_owned(),
        )
        .await?;
        retention_db::create_index(m, "idx_scoring_runs_state", "scoring_runs", &["state"]).await?;
        m.create_table(
            Table::create()
                .table("calibrations")
                .if_not_exists()
                .col(string_len("scoring_run", 36).primary_key())
                .col(timestamp_with_time_zone("fit_time"))
                .col(text("data"))
                .to_owned(),
        )
        .await?;
        retention_db::create_index(m, "idx_calibrations_time", "calibrations", &["fit_time"]).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "calibrations",
            "scoring_runs",
            "segment_members",
            "segments",
            "insights",
            "purchases",
            "features",
        ] {
            m.drop_table(Table::drop().table(Alias::new(t)).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Tombstones of erased customers: events that arrive after the erasure (a late
/// SLA breach, a redelivered purchase) must not bring the customer back.
struct CreateErasedCustomers;

/// Named explicitly: the derive names a migration after its file, and this file
/// already holds one.
impl MigrationName for CreateErasedCustomers {
    fn name(&self) -> &str {
        "m20261122_000001_create_erased_customers"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateErasedCustomers {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("erased_customers")
                .if_not_exists()
                .col(string_len("customer_id", 36).primary_key())
                .col(timestamp_with_time_zone("erase_time"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(Alias::new("erased_customers"))
                .if_exists()
                .to_owned(),
        )
        .await
    }
}

/// Where merged-away customers went: events about them that arrive after the
/// merge (a complaint published before interactions moved it, a redelivered
/// purchase) belong to the survivor and must not bring the merged record back.
struct CreateMergedCustomers;

impl MigrationName for CreateMergedCustomers {
    fn name(&self) -> &str {
        "m20261202_000001_create_merged_customers"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateMergedCustomers {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("merged_customers")
                .if_not_exists()
                .col(string_len("customer_id", 36).primary_key())
                .col(string_len("survivor_id", 36))
                .col(timestamp_with_time_zone("merge_time"))
                .to_owned(),
        )
        .await?;
        retention_db::create_index(
            m,
            "merged_customers_survivor",
            "merged_customers",
            &["survivor_id"],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(Alias::new("merged_customers"))
                .if_exists()
                .to_owned(),
        )
        .await
    }
}

/// Each purchase's margin, so that purchase occasions (the margin of all orders
/// of one day) can be re-derived from the purchases table.
struct AddPurchaseMargins;

impl MigrationName for AddPurchaseMargins {
    fn name(&self) -> &str {
        "m20261202_000002_add_purchase_margins"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddPurchaseMargins {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("purchases")
                .add_column(big_integer_null("margin_minor"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("purchases")
                .drop_column("margin_minor")
                .to_owned(),
        )
        .await
    }
}

/// Backtests are scoring runs with an observation end; their report is kept on
/// the run. Purchases are read in (customer, purchase) order by a backtest.
struct AddBacktests;

impl MigrationName for AddBacktests {
    fn name(&self) -> &str {
        "m20261202_000003_add_backtests"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddBacktests {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        m.alter_table(
            Table::alter()
                .table("scoring_runs")
                .add_column(timestamp_with_time_zone_null("observation_end"))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("scoring_runs")
                .add_column(text_null("backtest_report"))
                .to_owned(),
        )
        .await?;
        retention_db::create_index(
            m,
            "purchases_by_customer",
            "purchases",
            &["customer_id", "purchase_id"],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in ["observation_end", "backtest_report"] {
            m.alter_table(
                Table::alter()
                    .table("scoring_runs")
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

/// Each insight's value if the customer stays or is won back, filterable and
/// sortable like predicted_clv. Rows scored before it hold 0 until the next
/// scoring run rescores them.
struct AddRetainedClv;

impl MigrationName for AddRetainedClv {
    fn name(&self) -> &str {
        "m20261202_000004_add_retained_clv"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddRetainedClv {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("insights")
                .add_column(big_integer("retained_clv").default(0))
                .to_owned(),
        )
        .await?;
        retention_db::create_index(
            m,
            "idx_insights_retained_clv",
            "insights",
            &["retained_clv", "customer_id"],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("idx_insights_retained_clv")
                .table("insights")
                .if_exists()
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("insights")
                .drop_column("retained_clv")
                .to_owned(),
        )
        .await
    }
}
