//! Schema of the segmentation database (sea-query builders: PostgreSQL and SQLite):
//! the service's own tables; the shared ones (outbox, inbox, request ids) are the
//! host's (`retention_server::host::Migrator`).

use retention_db::schema::{
    add_columns, create_index, create_table, drop_columns, drop_index, drop_tables,
};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The service's own migrations, in the order they were added.
pub fn own() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(CreateSegmentationTables),
        Box::new(CreateErasedCustomers),
        Box::new(CreateMergedCustomers),
        Box::new(AddPurchaseMargins),
        Box::new(AddBacktests),
        Box::new(AddRetainedClv),
        Box::new(AddScoringLeases),
        Box::new(InsightDataLz4),
    ]
}

retention_db::migration!(
    /// Features, purchases, insights, segments and members, runs, calibrations.
    /// Named "migrations" (after this file) by the derive it was first declared with.
    CreateSegmentationTables,
    "migrations"
);

#[async_trait::async_trait]
impl MigrationTrait for CreateSegmentationTables {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        create_table(
            m,
            Table::create()
                .table("features")
                .col(string_len("customer_id", 36).primary_key())
                .col(text("data"))
                .col(timestamp_with_time_zone("update_time")),
        )
        .await?;
        create_table(
            m,
            Table::create()
                .table("purchases")
                .col(string_len("purchase_id", 64).primary_key())
                .col(string_len("customer_id", 36))
                .col(timestamp_with_time_zone("occur_time")),
        )
        .await?;
        create_index(
            m,
            "idx_purchases_customer",
            "purchases",
            &["customer_id", "occur_time"],
        )
        .await?;
        create_table(
            m,
            Table::create()
                .table("insights")
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
                .col(text("data")),
        )
        .await?;
        for col in [
            "predicted_clv",
            "historical_margin",
            "p_alive",
            "churn_probability",
            "expected_purchases",
        ] {
            create_index(
                m,
                &format!("idx_insights_{col}"),
                "insights",
                &[col, "customer_id"],
            )
            .await?;
        }
        create_table(
            m,
            Table::create()
                .table("segments")
                .col(string_len("id", 36).primary_key())
                .col(string("display_name"))
                .col(text("description"))
                .col(text("filter"))
                .col(timestamp_with_time_zone("create_time"))
                .col(timestamp_with_time_zone("update_time"))
                .col(big_integer("version")),
        )
        .await?;
        create_table(
            m,
            Table::create()
                .table("segment_members")
                .col(string_len("segment_id", 36))
                .col(string_len("customer_id", 36))
                .col(timestamp_with_time_zone("enter_time"))
                .primary_key(Index::create().col("segment_id").col("customer_id")),
        )
        .await?;
        create_index(
            m,
            "idx_segment_members_customer",
            "segment_members",
            &["customer_id"],
        )
        .await?;
        create_table(
            m,
            Table::create()
                .table("scoring_runs")
                .col(string_len("id", 36).primary_key())
                .col(string_len("state", 16))
                .col(integer("percent_complete"))
                .col(string_len("stage", 16))
                .col(big_integer("customers_scored"))
                .col(timestamp_with_time_zone("create_time"))
                .col(timestamp_with_time_zone_null("end_time"))
                .col(text("error")),
        )
        .await?;
        create_index(m, "idx_scoring_runs_state", "scoring_runs", &["state"]).await?;
        create_table(
            m,
            Table::create()
                .table("calibrations")
                .col(string_len("scoring_run", 36).primary_key())
                .col(timestamp_with_time_zone("fit_time"))
                .col(text("data")),
        )
        .await?;
        create_index(m, "idx_calibrations_time", "calibrations", &["fit_time"]).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(
            m,
            &[
                "calibrations",
                "scoring_runs",
                "segment_members",
                "segments",
                "insights",
                "purchases",
                "features",
            ],
        )
        .await
    }
}

retention_db::migration!(
    /// Tombstones of erased customers: events that arrive after the erasure (a late
    /// SLA breach, a redelivered purchase) must not bring the customer back.
    CreateErasedCustomers,
    "m20261122_000001_create_erased_customers"
);

#[async_trait::async_trait]
impl MigrationTrait for CreateErasedCustomers {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        create_table(
            m,
            Table::create()
                .table("erased_customers")
                .col(string_len("customer_id", 36).primary_key())
                .col(timestamp_with_time_zone("erase_time")),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(m, &["erased_customers"]).await
    }
}

retention_db::migration!(
    /// Where merged-away customers went: events about them that arrive after the
    /// merge (a complaint published before interactions moved it, a redelivered
    /// purchase) belong to the survivor and must not bring the merged record back.
    CreateMergedCustomers,
    "m20261202_000001_create_merged_customers"
);

#[async_trait::async_trait]
impl MigrationTrait for CreateMergedCustomers {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        create_table(
            m,
            Table::create()
                .table("merged_customers")
                .col(string_len("customer_id", 36).primary_key())
                .col(string_len("survivor_id", 36))
                .col(timestamp_with_time_zone("merge_time")),
        )
        .await?;
        create_index(
            m,
            "merged_customers_survivor",
            "merged_customers",
            &["survivor_id"],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(m, &["merged_customers"]).await
    }
}

retention_db::migration!(
    /// Each purchase's margin, so that purchase occasions (the margin of all orders
    /// of one day) can be re-derived from the purchases table.
    AddPurchaseMargins,
    "m20261202_000002_add_purchase_margins"
);

#[async_trait::async_trait]
impl MigrationTrait for AddPurchaseMargins {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        add_columns(m, "purchases", [big_integer_null("margin_minor")]).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        drop_columns(m, "purchases", &["margin_minor"]).await
    }
}

retention_db::migration!(
    /// Backtests are scoring runs with an observation end; their report is kept on
    /// the run. Purchases are read in (customer, purchase) order by a backtest.
    AddBacktests,
    "m20261202_000003_add_backtests"
);

#[async_trait::async_trait]
impl MigrationTrait for AddBacktests {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        add_columns(
            m,
            "scoring_runs",
            [
                timestamp_with_time_zone_null("observation_end"),
                text_null("backtest_report"),
            ],
        )
        .await?;
        create_index(
            m,
            "purchases_by_customer",
            "purchases",
            &["customer_id", "purchase_id"],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        drop_columns(m, "scoring_runs", &["observation_end", "backtest_report"]).await
    }
}

retention_db::migration!(
    /// Each insight's value if the customer stays or is won back, filterable and
    /// sortable like predicted_clv. Rows scored before it hold 0 until the next
    /// scoring run rescores them.
    AddRetainedClv,
    "m20261202_000004_add_retained_clv"
);

#[async_trait::async_trait]
impl MigrationTrait for AddRetainedClv {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        add_columns(
            m,
            "insights",
            [big_integer("retained_clv").default(0).to_owned()],
        )
        .await?;
        create_index(
            m,
            "idx_insights_retained_clv",
            "insights",
            &["retained_clv", "customer_id"],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        drop_index(m, "idx_insights_retained_clv", "insights").await?;
        drop_columns(m, "insights", &["retained_clv"]).await
    }
}

retention_db::migration!(
    /// Scoring runs across replicas (DESIGN §8): at most one active run in the
    /// whole deployment (a unique partial index, so a second insert fails whoever
    /// makes it), the coordinator's lease on its run, and the run's pages as work
    /// items any replica claims with a lease of its own.
    AddScoringLeases,
    "m20261206_000001_add_scoring_leases"
);

#[async_trait::async_trait]
impl MigrationTrait for AddScoringLeases {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        add_columns(
            m,
            "scoring_runs",
            [
                string_len("owner", 100).default("").to_owned(),
                timestamp_with_time_zone_null("lease_until"),
            ],
        )
        .await?;
        let db = m.get_connection();
        // Runs an older process left active would block the index: all but the
        // newest are failed, as that process's start-up would have done.
        db.execute_unprepared(
            "UPDATE scoring_runs SET state = 'FAILED', \
             error = 'interrupted: superseded when runs became one per deployment' \
             WHERE state IN ('PENDING', 'RUNNING') AND id <> \
             (SELECT MAX(id) FROM scoring_runs WHERE state IN ('PENDING', 'RUNNING'))",
        )
        .await?;
        // An index on a constant over the active rows: two of them collide. Both
        // PostgreSQL and SQLite have partial and expression indexes.
        db.execute_unprepared(
            "CREATE UNIQUE INDEX IF NOT EXISTS scoring_runs_one_active ON scoring_runs ((1)) \
             WHERE state IN ('PENDING', 'RUNNING')",
        )
        .await?;
        create_table(
            m,
            Table::create()
                .table("scoring_run_pages")
                .col(string_len("run_id", 36))
                .col(integer("page"))
                .col(string_len_null("after_id", 36))
                .col(string_len_null("upto_id", 36))
                .col(string_len("state", 16))
                .col(string_len("owner", 100).default(""))
                .col(timestamp_with_time_zone_null("lease_until"))
                .col(integer("attempts").default(0))
                .col(big_integer("customers_scored").default(0))
                .primary_key(Index::create().col("run_id").col("page")),
        )
        .await?;
        create_index(
            m,
            "scoring_run_pages_claimable",
            "scoring_run_pages",
            &["state", "run_id", "page"],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(m, &["scoring_run_pages"]).await?;
        drop_index(m, "scoring_runs_one_active", "scoring_runs").await?;
        drop_columns(m, "scoring_runs", &["owner", "lease_until"]).await
    }
}

retention_db::migration!(
    /// PostgreSQL compresses each insight's JSON (about 3 kB, past the TOAST
    /// threshold) with lz4 instead of pglz: pglz was a fifth of the database's
    /// CPU in a scoring run. Values written before keep their compression; a
    /// server built without lz4, and SQLite, keep the default.
    InsightDataLz4,
    "m20261206_000002_insight_data_lz4"
);

#[async_trait::async_trait]
impl MigrationTrait for InsightDataLz4 {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        set_data_compression(m, "lz4").await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        set_data_compression(m, "pglz").await
    }
}

async fn set_data_compression(m: &SchemaManager<'_>, method: &str) -> Result<(), DbErr> {
    let db = m.get_connection();
    if db.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    // A DO block: the server's own list of methods decides (no lz4 without it).
    db.execute_unprepared(&format!(
        "DO $$ BEGIN \
         IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' \
         AND '{method}' = ANY(enumvals)) THEN \
         ALTER TABLE insights ALTER COLUMN data SET COMPRESSION {method}; \
         END IF; END $$"
    ))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Existing databases know the migrations by these names: they never change.
    #[test]
    fn migration_names_stay_as_applied() {
        let names: Vec<String> = super::own().iter().map(|m| m.name().to_string()).collect();
        assert_eq!(
            names,
            [
                "migrations",
                "m20261122_000001_create_erased_customers",
                "m20261202_000001_create_merged_customers",
                "m20261202_000002_add_purchase_margins",
                "m20261202_000003_add_backtests",
                "m20261202_000004_add_retained_clv",
                "m20261206_000001_add_scoring_leases",
                "m20261206_000002_insight_data_lz4",
            ]
        );
    }
}
