//! Schema of the profile database. Written with sea-query builders only, so the
//! same migrations run on PostgreSQL and SQLite.

use retention_db::schema::{
    add_columns, create_index, create_table, drop_columns, drop_index, drop_tables,
};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The service's own tables, in the order they were added (the shared ones come
/// from the host).
pub fn own() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(CreateProfileTables), Box::new(AddEmailLookup)]
}

// Named as `DeriveMigrationName` named it when this file held only this
// migration: after the file.
retention_db::migration!(CreateProfileTables, "migrations");

#[async_trait::async_trait]
impl MigrationTrait for CreateProfileTables {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        create_table(
            m,
            Table::create()
                .table("customers")
                .col(string_len("id", 36).primary_key())
                .col(string_len("kind", 16))
                .col(string_null("display_name"))
                .col(string_null("email"))
                .col(string_null("phone"))
                .col(string_len_null("gender", 16))
                .col(integer_null("birth_year"))
                .col(string_len_null("education", 16))
                .col(string_null("occupation"))
                .col(string_len_null("income_band", 16))
                .col(string_null("region"))
                .col(big_integer_null("revenue_minor"))
                .col(string_len_null("revenue_currency", 3))
                .col(string_len_null("credit_rating", 16))
                .col(string_len_null("business_condition", 16))
                .col(double_null("share_of_wallet"))
                .col(string_len_null("acquisition_channel", 64))
                .col(timestamp_with_time_zone_null("acquire_time"))
                .col(big_integer_null("acquisition_cost_minor"))
                .col(string_len_null("acquisition_cost_currency", 3))
                .col(text("tags"))
                .col(text("attributes"))
                .col(text("consents"))
                .col(big_integer("version"))
                .col(boolean("erased"))
                .col(timestamp_with_time_zone_null("erase_time"))
                .col(timestamp_with_time_zone("create_time"))
                .col(timestamp_with_time_zone("update_time")),
        )
        .await?;
        create_table(
            m,
            Table::create()
                .table("customer_identities")
                .col(string_len("namespace", 64))
                .col(string_len("value", 256))
                .col(string_len("customer_id", 36))
                .primary_key(Index::create().col("namespace").col("value")),
        )
        .await?;
        create_index(
            m,
            "idx_identities_customer",
            "customer_identities",
            &["customer_id"],
        )
        .await?;
        create_table(
            m,
            Table::create()
                .table("customer_aliases")
                .col(string_len("alias_id", 36).primary_key())
                .col(string_len("survivor_id", 36))
                .col(timestamp_with_time_zone("merge_time")),
        )
        .await?;
        create_index(
            m,
            "idx_aliases_survivor",
            "customer_aliases",
            &["survivor_id"],
        )
        .await?;
        create_table(
            m,
            Table::create()
                .table("purchases")
                .col(string_len("id", 36).primary_key())
                .col(string_len("customer_id", 36))
                .col(string_len("origin_customer_id", 36))
                .col(string_len("order_id", 128))
                .col(timestamp_with_time_zone("occur_time"))
                .col(string_len("currency", 3))
                .col(big_integer("amount_minor"))
                .col(big_integer("margin_minor"))
                .col(big_integer("discount_minor"))
                .col(string_len_null("product_category", 64))
                .col(string_len_null("channel", 64))
                .col(timestamp_with_time_zone("create_time")),
        )
        .await?;
        retention_db::schema::create_unique_index(
            m,
            "uq_purchases_origin_order",
            "purchases",
            &["origin_customer_id", "order_id"],
        )
        .await?;
        create_index(
            m,
            "idx_purchases_customer_time",
            "purchases",
            &["customer_id", "occur_time"],
        )
        .await?;
        create_table(
            m,
            Table::create()
                .table("referrals")
                .col(string_len("referrer_id", 36))
                .col(string_len("referred_id", 36))
                .col(timestamp_with_time_zone("occur_time"))
                .primary_key(Index::create().col("referrer_id").col("referred_id")),
        )
        .await?;
        create_index(m, "idx_referrals_referred", "referrals", &["referred_id"]).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(
            m,
            &[
                "referrals",
                "purchases",
                "customer_aliases",
                "customer_identities",
                "customers",
            ],
        )
        .await
    }
}

retention_db::migration!(
    /// PII is sealed from here on (`store::pii`); rows from before are sealed by the
    /// startup sweep (`store::reseal`), which also fills their lookup hashes.
    AddEmailLookup,
    "m20261201_000001_customers_email_lookup"
);

#[async_trait::async_trait]
impl MigrationTrait for AddEmailLookup {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        add_columns(m, "customers", [string_len_null("email_hash", 64)]).await?;
        create_index(m, "idx_customers_email_hash", "customers", &["email_hash"]).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        drop_index(m, "idx_customers_email_hash", "customers").await?;
        drop_columns(m, "customers", &["email_hash"]).await
    }
}
