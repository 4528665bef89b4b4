//! sea-orm entities of the win-back database.

pub mod churn_record {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "churn_records")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub customer_id: String,
        pub churn_type: String,
        pub reason_codes: String,
        pub evidence: String,
        pub churn_time: ChronoDateTimeUtc,
        pub value_minor: Option<i64>,
        pub value_currency: Option<String>,
        pub create_time: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod campaign {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "campaigns")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub display_name: String,
        pub kind: String,
        pub strategy: String,
        pub offer_kind: String,
        pub offer_description: String,
        pub offer_cost_minor: i64,
        pub currency: String,
        pub channel: String,
        pub target_segment: Option<String>,
        pub target_filter: Option<String>,
        pub budget_minor: i64,
        pub max_cost_share_of_value: f64,
        pub holdout_share: f64,
        pub seed: i64,
        pub win_window_days: i32,
        pub cool_down_days: i32,
        pub schedule_time: Option<ChronoDateTimeUtc>,
        pub triggered: bool,
        pub state: String,
        pub committed_minor: i64,
        pub create_time: ChronoDateTimeUtc,
        pub launch_time: Option<ChronoDateTimeUtc>,
        pub end_time: Option<ChronoDateTimeUtc>,
        pub update_time: ChronoDateTimeUtc,
        pub version: i64,
        /// Added by `AddValueBasis`: "EXPECTED" on campaigns created before it.
        pub value_basis: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod target {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "campaign_targets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub campaign_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: String,
        pub arm: String,
        pub predicted_clv_minor: i64,
        pub currency: String,
        pub window_start: ChronoDateTimeUtc,
        pub win_deadline: ChronoDateTimeUtc,
        pub dispatch_time: Option<ChronoDateTimeUtc>,
        pub last_outcome: Option<String>,
        pub outcome_time: Option<ChronoDateTimeUtc>,
        pub won_back_time: Option<ChronoDateTimeUtc>,
        pub recovered_margin_minor: i64,
        pub repeat_purchases: i32,
        /// Added by `AddValueBasis`: None on targets enrolled before it.
        pub retained_clv_minor: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod exclusion {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "campaign_exclusions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub campaign_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: String,
        pub reason: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod consent {
    use sea_orm::entity::prelude::*;

    /// Read model of profile's consent per contact channel.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "consents")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub channel: String,
        pub granted: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod complaint_signal {
    use sea_orm::entity::prelude::*;

    /// Read model of interactions' complaints: what churn classification and the
    /// playbook need of each.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "complaint_signals")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub complaint_id: String,
        pub customer_id: String,
        pub unresolved: bool,
        pub breached: bool,
        pub escalated: bool,
        pub update_time: ChronoDateTimeUtc,
        pub at_risk: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod attributed_purchase {
    use sea_orm::entity::prelude::*;

    /// A purchase from profile that was attributed against campaign targets (the
    /// customer had one whose window opened before it): kept so a replay of it (a
    /// backfill) does not count again, as a win or a repeat.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "attributed_purchases")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub purchase_id: String,
        pub customer_id: String,
        pub record_time: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
