//! Schema of the interactions database (sea-query builders: PostgreSQL and SQLite).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The service's own tables, in the order they were added.
pub fn own() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(CreateInteractionTables),
        Box::new(IndexSurveysByCustomer),
        Box::new(AddBusinessCalendars),
        Box::new(AddComplaintHolds),
        Box::new(AddNextResponseTargets),
        Box::new(AddSlaWarningsAndTeams),
    ]
}

#[derive(DeriveMigrationName)]
struct CreateInteractionTables;

#[async_trait::async_trait]
impl MigrationTrait for CreateInteractionTables {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        retention_db::schema::create_table(
            m,
            Table::create()
                .table("interactions")
                .col(string_len("id", 36).primary_key())
                .col(string_len("customer_id", 36))
                .col(string_len("channel", 16))
                .col(string_len("direction", 16))
                .col(string_len_null("kind", 16))
                .col(string_len_null("purchase_phase", 16))
                .col(string("agent"))
                .col(text("summary"))
                .col(timestamp_with_time_zone("occur_time"))
                .col(string_len_null("complaint_id", 36)),
        )
        .await?;
        retention_db::create_index(
            m,
            "idx_interactions_customer_time",
            "interactions",
            &["customer_id", "occur_time"],
        )
        .await?;
        retention_db::schema::create_table(
            m,
            Table::create()
                .table("complaints")
                .col(string_len("id", 36).primary_key())
                .col(string_len("customer_id", 36))
                .col(string_len("category", 32))
                .col(string_len("severity", 16))
                .col(string_len("priority", 16))
                .col(string_len_null("channel", 16))
                .col(string("subject"))
                .col(text("description"))
                .col(string_len("state", 16))
                .col(string_null("assignee"))
                .col(integer("escalation_level"))
                .col(string_len("customer_tier", 16))
                .col(timestamp_with_time_zone("open_time"))
                .col(timestamp_with_time_zone_null("first_response_time"))
                .col(timestamp_with_time_zone("first_response_due"))
                .col(timestamp_with_time_zone("resolution_due"))
                .col(boolean("first_response_breached"))
                .col(boolean("resolution_breached"))
                .col(string_len_null("resolution_outcome", 16))
                .col(big_integer_null("compensation_minor"))
                .col(string_len_null("compensation_currency", 3))
                .col(text_null("root_cause"))
                .col(string_len_null("service_gap", 16))
                .col(timestamp_with_time_zone_null("resolve_time"))
                .col(integer("reopen_count"))
                .col(timestamp_with_time_zone_null("close_time"))
                .col(timestamp_with_time_zone("update_time"))
                .col(big_integer("version")),
        )
        .await?;
        retention_db::create_index(
            m,
            "idx_complaints_customer",
            "complaints",
            &["customer_id", "open_time"],
        )
        .await?;
        retention_db::create_index(
            m,
            "idx_complaints_state_due",
            "complaints",
            &["state", "first_response_due"],
        )
        .await?;
        retention_db::create_index(m, "idx_complaints_open_time", "complaints", &["open_time"])
            .await?;
        retention_db::schema::create_table(
            m,
            Table::create()
                .table("sla_policies")
                .col(string_len("priority", 16))
                .col(string_len("customer_tier", 16))
                .col(integer("first_response_minutes"))
                .col(integer("resolution_minutes"))
                .primary_key(Index::create().col("priority").col("customer_tier")),
        )
        .await?;
        retention_db::schema::create_table(
            m,
            Table::create()
                .table("surveys")
                .col(string_len("id", 36).primary_key())
                .col(string_len("customer_id", 36))
                .col(string_len_null("complaint_id", 36))
                .col(integer_null("csat"))
                .col(integer_null("nps"))
                .col(integer_null("expectation"))
                .col(integer_null("perceived"))
                .col(timestamp_with_time_zone("occur_time")),
        )
        .await?;
        retention_db::create_index(m, "idx_surveys_time", "surveys", &["occur_time"]).await?;
        retention_db::schema::create_table(
            m,
            Table::create()
                .table("customer_tiers")
                .col(string_len("customer_id", 36).primary_key())
                .col(string_len("tier", 16))
                .col(timestamp_with_time_zone("update_time")),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        retention_db::schema::drop_tables(
            m,
            &[
                "customer_tiers",
                "surveys",
                "sla_policies",
                "complaints",
                "interactions",
            ],
        )
        .await
    }
}

// Named explicitly: the derive names a migration after its file, and this file
// already holds one.
retention_db::migration!(
    /// A backfill pages through the customers with complaints or surveys in id order.
    IndexSurveysByCustomer,
    "m20261202_000001_index_surveys_by_customer"
);

#[async_trait::async_trait]
impl MigrationTrait for IndexSurveysByCustomer {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        retention_db::create_index(m, "idx_surveys_customer", "surveys", &["customer_id"]).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        retention_db::schema::drop_index(m, "idx_surveys_customer", "surveys").await
    }
}

retention_db::migration!(
    /// Business-hour calendars, and the calendar an SLA policy counts its targets in
    /// (none: wall-clock time, as before).
    AddBusinessCalendars,
    "m20261207_000001_add_business_calendars"
);

#[async_trait::async_trait]
impl MigrationTrait for AddBusinessCalendars {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        retention_db::schema::create_table(
            m,
            Table::create()
                .table("business_calendars")
                .col(string_len("id", 36).primary_key())
                .col(text("definition"))
                .col(big_integer("version"))
                .col(timestamp_with_time_zone("create_time"))
                .col(timestamp_with_time_zone("update_time")),
        )
        .await?;
        retention_db::schema::add_columns(m, "sla_policies", [string_len_null("calendar_id", 36)])
            .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        retention_db::schema::drop_columns(m, "sla_policies", &["calendar_id"]).await?;
        retention_db::schema::drop_tables(m, &["business_calendars"]).await
    }
}

retention_db::migration!(
    /// Waiting on the customer: the holds of each complaint, the resolution time
    /// kept while it waits, the calendar its clock counts in, and a state column
    /// wide enough for WAITING_ON_CUSTOMER.
    AddComplaintHolds,
    "m20261207_000002_add_complaint_holds"
);

#[async_trait::async_trait]
impl MigrationTrait for AddComplaintHolds {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite does not enforce a VARCHAR length (nor alter a column's type).
        if retention_db::is_postgres(m.get_connection()) {
            m.get_connection()
                .execute_unprepared("ALTER TABLE complaints ALTER COLUMN state TYPE varchar(32)")
                .await?;
        }
        retention_db::schema::add_columns(
            m,
            "complaints",
            [
                string_len_null("calendar_id", 36),
                big_integer_null("resolution_remaining_ms"),
            ],
        )
        .await?;
        retention_db::schema::create_table(
            m,
            Table::create()
                .table("complaint_holds")
                .col(string_len("complaint_id", 36))
                .col(integer("seq"))
                .col(timestamp_with_time_zone("start_time"))
                .col(timestamp_with_time_zone_null("end_time"))
                .col(string_len_null("resumed_by", 36))
                .primary_key(Index::create().col("complaint_id").col("seq")),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        retention_db::schema::drop_tables(m, &["complaint_holds"]).await?;
        retention_db::schema::drop_columns(
            m,
            "complaints",
            &["calendar_id", "resolution_remaining_ms"],
        )
        .await
    }
}

retention_db::migration!(
    /// The next-response target of a policy (none: no clock), copied to each
    /// complaint opened under it, and the complaint's running next-response clock.
    AddNextResponseTargets,
    "m20261207_000003_add_next_response_targets"
);

#[async_trait::async_trait]
impl MigrationTrait for AddNextResponseTargets {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        retention_db::schema::add_columns(
            m,
            "sla_policies",
            [integer_null("next_response_minutes")],
        )
        .await?;
        retention_db::schema::add_columns(
            m,
            "complaints",
            [
                integer_null("next_response_minutes"),
                timestamp_with_time_zone_null("next_response_due"),
                boolean("next_response_breached").default(false).take(),
            ],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        retention_db::schema::drop_columns(
            m,
            "complaints",
            &[
                "next_response_minutes",
                "next_response_due",
                "next_response_breached",
            ],
        )
        .await?;
        retention_db::schema::drop_columns(m, "sla_policies", &["next_response_minutes"]).await
    }
}

retention_db::migration!(
    /// Warnings before a breach: a policy's at-risk share and whether it
    /// escalates, copied to each complaint opened under it with the moments its
    /// targets become at risk, which of them warned and how many levels the policy
    /// escalated; the complaint's team.
    /// Complaints opened before keep percent 0 and no moments: they never warn.
    AddSlaWarningsAndTeams,
    "m20261207_000004_add_sla_warnings_and_teams"
);

#[async_trait::async_trait]
impl MigrationTrait for AddSlaWarningsAndTeams {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        retention_db::schema::add_columns(
            m,
            "sla_policies",
            [
                integer_null("at_risk_percent"),
                boolean("escalate_at_risk").default(false).take(),
            ],
        )
        .await?;
        retention_db::schema::add_columns(
            m,
            "complaints",
            [
                string_len_null("team", 128),
                integer("at_risk_percent").default(0).take(),
                boolean("escalate_at_risk").default(false).take(),
                integer_null("resolution_minutes"),
                timestamp_with_time_zone_null("first_response_warn"),
                timestamp_with_time_zone_null("resolution_warn"),
                timestamp_with_time_zone_null("next_response_warn"),
                boolean("first_response_at_risk").default(false).take(),
                boolean("resolution_at_risk").default(false).take(),
                boolean("next_response_at_risk").default(false).take(),
                integer("policy_escalations").default(0).take(),
            ],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        retention_db::schema::drop_columns(
            m,
            "complaints",
            &[
                "team",
                "at_risk_percent",
                "escalate_at_risk",
                "resolution_minutes",
                "first_response_warn",
                "resolution_warn",
                "next_response_warn",
                "first_response_at_risk",
                "resolution_at_risk",
                "next_response_at_risk",
                "policy_escalations",
            ],
        )
        .await?;
        retention_db::schema::drop_columns(
            m,
            "sla_policies",
            &["at_risk_percent", "escalate_at_risk"],
        )
        .await
    }
}
