//! sea-orm entities of the interactions database.

pub mod interaction {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "interactions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub customer_id: String,
        pub channel: String,
        pub direction: String,
        pub kind: Option<String>,
        pub purchase_phase: Option<String>,
        pub agent: String,
        pub summary: String,
        pub occur_time: ChronoDateTimeUtc,
        pub complaint_id: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod complaint {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "complaints")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub customer_id: String,
        pub category: String,
        pub severity: String,
        pub priority: String,
        pub channel: Option<String>,
        pub subject: String,
        pub description: String,
        pub state: String,
        pub assignee: Option<String>,
        pub escalation_level: i32,
        pub customer_tier: String,
        pub open_time: ChronoDateTimeUtc,
        pub first_response_time: Option<ChronoDateTimeUtc>,
        pub first_response_due: ChronoDateTimeUtc,
        pub resolution_due: ChronoDateTimeUtc,
        pub first_response_breached: bool,
        pub resolution_breached: bool,
        pub resolution_outcome: Option<String>,
        pub compensation_minor: Option<i64>,
        pub compensation_currency: Option<String>,
        pub root_cause: Option<String>,
        pub service_gap: Option<String>,
        pub resolve_time: Option<ChronoDateTimeUtc>,
        pub reopen_count: i32,
        pub close_time: Option<ChronoDateTimeUtc>,
        pub update_time: ChronoDateTimeUtc,
        pub version: i64,
        pub calendar_id: Option<String>,
        pub resolution_remaining_ms: Option<i64>,
        pub next_response_minutes: Option<i32>,
        pub next_response_due: Option<ChronoDateTimeUtc>,
        pub next_response_breached: bool,
        pub team: Option<String>,
        pub at_risk_percent: i32,
        pub escalate_at_risk: bool,
        pub resolution_minutes: Option<i32>,
        pub first_response_warn: Option<ChronoDateTimeUtc>,
        pub resolution_warn: Option<ChronoDateTimeUtc>,
        pub next_response_warn: Option<ChronoDateTimeUtc>,
        pub first_response_at_risk: bool,
        pub resolution_at_risk: bool,
        pub next_response_at_risk: bool,
        pub policy_escalations: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod sla_policy {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sla_policies")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub priority: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_tier: String,
        pub first_response_minutes: i32,
        pub resolution_minutes: i32,
        pub calendar_id: Option<String>,
        pub next_response_minutes: Option<i32>,
        pub at_risk_percent: Option<i32>,
        pub escalate_at_risk: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod business_calendar {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "business_calendars")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The `CalendarDefinition` as JSON: its shape stays the domain's, and a
        /// calendar is always read and written whole.
        #[sea_orm(column_type = "Text")]
        pub definition: String,
        pub version: i64,
        pub create_time: ChronoDateTimeUtc,
        pub update_time: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod survey {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "surveys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub customer_id: String,
        pub complaint_id: Option<String>,
        pub csat: Option<i32>,
        pub nps: Option<i32>,
        pub expectation: Option<i32>,
        pub perceived: Option<i32>,
        pub occur_time: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod customer_tier {
    use sea_orm::entity::prelude::*;

    /// Read model of the management tier segmentation assigns.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "customer_tiers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: String,
        pub tier: String,
        pub update_time: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod complaint_hold {
    use sea_orm::entity::prelude::*;

    /// One wait on the customer; `seq` numbers a complaint's holds from 0.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "complaint_holds")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub complaint_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i32,
        pub start_time: ChronoDateTimeUtc,
        pub end_time: Option<ChronoDateTimeUtc>,
        pub resumed_by: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
