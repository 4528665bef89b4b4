//! Schema of the profile database. Written with sea-query builders only, so the
//! same migrations run on PostgreSQL and SQLite.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(retention_events::EventsMigration),
            Box::new(retention_db::idempotency::IdempotencyMigration),
            Box::new(CreateProfileTables),
            Box::new(AddEmailLookup),
        ]
    }
}

/// PII is sealed from here on (`store::pii`); rows from before are sealed by the
/// startup sweep (`store::reseal`), which also fills their lookup hashes.
struct AddEmailLookup;

// Named by hand: the derived name is the module's, which the first migration
// of this file already has.
impl MigrationName for AddEmailLookup {
    fn name(&self) -> &str {
        "m20261201_000001_customers_email_lookup"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddEmailLookup {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("customers")
                .add_column(string_len_null("email_hash", 64))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_customers_email_hash")
                .table("customers")
                .col("email_hash")
                .if_not_exists()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("idx_customers_email_hash")
                .table("customers")
                .if_exists()
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("customers")
                .drop_column("email_hash")
                .to_owned(),
        )
        .await
    }
}

#[derive(DeriveMigrationName)]
struct CreateProfileTables;

#[async_trait::async_trait]
impl MigrationTrait for CreateProfileTables {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("customers")
                .if_not_exists()
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
                .col(timestamp_with_time_zone("update_time"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("customer_identities")
                .if_not_exists()
                .col(string_len("namespace", 64))
                .col(string_len("value", 256))
                .col(string_len("customer_id", 36))
                .primary_key(Index::create().col("namespace").col("value"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_identities_customer")
                .table("customer_identities")
                .col("customer_id")
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("customer_aliases")
                .if_not_exists()
                .col(string_len("alias_id", 36).primary_key())
                .col(string_len("survivor_id", 36))
                .col(timestamp_with_time_zone("merge_time"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_aliases_survivor")
                .table("customer_aliases")
                .col("survivor_id")
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("purchases")
                .if_not_exists()
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
                .col(timestamp_with_time_zone("create_time"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_purchases_origin_order")
                .table("purchases")
                .col("origin_customer_id")
                .col("order_id")
                .unique()
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_purchases_customer_time")
                .table("purchases")
                .col("customer_id")
                .col("occur_time")
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("referrals")
                .if_not_exists()
                .col(string_len("referrer_id", 36))
                .col(string_len("referred_id", 36))
                .col(timestamp_with_time_zone("occur_time"))
                .primary_key(Index::create().col("referrer_id").col("referred_id"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_referrals_referred")
                .table("referrals")
                .col("referred_id")
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "referrals",
            "purchases",
            "customer_aliases",
            "customer_identities",
            "customers",
        ] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
