//! sea-orm entities of the segmentation database.

macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    };
}

/// One row per known customer: the folded features as JSON.
pub mod feature {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "features")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: String,
        pub data: String,
        pub update_time: ChronoDateTimeUtc,
    }

    no_relations!();
}

/// Purchase ledger for the portfolio's period rates and cohorts.
pub mod purchase {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "purchases")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub purchase_id: String,
        pub customer_id: String,
        pub occur_time: ChronoDateTimeUtc,
        /// None on purchases recorded before margins were kept.
        pub margin_minor: Option<i64>,
    }

    no_relations!();
}

/// The latest insight per customer: filterable columns plus the whole insight as
/// JSON (explanations included) for reads.
pub mod insight {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "insights")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: String,
        pub rfm_recency: Option<i32>,
        pub rfm_frequency: Option<i32>,
        pub rfm_monetary: Option<i32>,
        pub rfm_segment: Option<String>,
        pub value_tier: String,
        pub management_tier: String,
        pub lifecycle_stage: String,
        pub loyalty_stage: String,
        pub account_quadrant: String,
        pub order_type: i32,
        pub size_tier: String,
        pub wallet_stability: String,
        pub p_alive: f64,
        pub churn_probability: f64,
        pub expected_purchases: f64,
        pub churn_risk: String,
        pub predicted_clv: i64,
        /// Added by `AddRetainedClv` (0 on rows scored before it).
        pub retained_clv: i64,
        pub historical_margin: i64,
        pub purchases: i32,
        pub complaints_open: i32,
        pub complaints_breached: i32,
        pub mean_csat: Option<f64>,
        pub score_time: ChronoDateTimeUtc,
        pub scoring_run: String,
        pub data: String,
    }

    no_relations!();
}

pub mod segment {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "segments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub display_name: String,
        pub description: String,
        pub filter: String,
        pub create_time: ChronoDateTimeUtc,
        pub update_time: ChronoDateTimeUtc,
        pub version: i64,
    }

    no_relations!();
}

pub mod member {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "segment_members")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub segment_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: String,
        pub enter_time: ChronoDateTimeUtc,
    }

    no_relations!();
}

pub mod scoring_run {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "scoring_runs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub state: String,
        pub percent_complete: i32,
        pub stage: String,
        pub customers_scored: i64,
        pub create_time: ChronoDateTimeUtc,
        pub end_time: Option<ChronoDateTimeUtc>,
        pub error: String,
        /// Set on backtests.
        pub observation_end: Option<ChronoDateTimeUtc>,
        /// A succeeded backtest's report (JSON).
        pub backtest_report: Option<String>,
        /// The replica coordinating the run, and until when it holds it.
        pub owner: String,
        pub lease_until: Option<ChronoDateTimeUtc>,
    }

    no_relations!();
}

pub mod scoring_run_page {
    use sea_orm::entity::prelude::*;

    /// A run's customers in (after_id, upto_id], claimed and scored by one replica.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "scoring_run_pages")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub run_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub page: i32,
        pub after_id: Option<String>,
        pub upto_id: Option<String>,
        /// `pending` or `done`.
        pub state: String,
        /// The claim holding it (replica and claim id), and until when.
        pub owner: String,
        pub lease_until: Option<ChronoDateTimeUtc>,
        pub attempts: i32,
        pub customers_scored: i64,
    }

    no_relations!();
}

pub mod calibration {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "calibrations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub scoring_run: String,
        pub fit_time: ChronoDateTimeUtc,
        pub data: String,
    }

    no_relations!();
}

pub mod erased {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "erased_customers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: String,
        pub erase_time: ChronoDateTimeUtc,
    }

    no_relations!();
}

pub mod merged {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "merged_customers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: String,
        pub survivor_id: String,
        pub merge_time: ChronoDateTimeUtc,
    }

    no_relations!();
}
