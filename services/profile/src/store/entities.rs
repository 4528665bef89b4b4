//! sea-orm entities of the profile database.

pub mod customer {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "customers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub kind: String,
        /// PII columns hold `enc1:` ciphertexts (`store::pii`).
        pub display_name: Option<String>,
        pub email: Option<String>,
        pub phone: Option<String>,
        /// Keyed hash of the e-mail address, what lookups by address match.
        pub email_hash: Option<String>,
        pub gender: Option<String>,
        pub birth_year: Option<i32>,
        pub education: Option<String>,
        pub occupation: Option<String>,
        pub income_band: Option<String>,
        pub region: Option<String>,
        pub revenue_minor: Option<i64>,
        pub revenue_currency: Option<String>,
        pub credit_rating: Option<String>,
        pub business_condition: Option<String>,
        pub share_of_wallet: Option<f64>,
        pub acquisition_channel: Option<String>,
        pub acquire_time: Option<ChronoDateTimeUtc>,
        pub acquisition_cost_minor: Option<i64>,
        pub acquisition_cost_currency: Option<String>,
        /// `|a|b|`: matched with LIKE on both backends.
        pub tags: String,
        /// JSON object of custom attributes.
        pub attributes: String,
        /// JSON array of consents.
        pub consents: String,
        pub version: i64,
        pub erased: bool,
        pub erase_time: Option<ChronoDateTimeUtc>,
        pub create_time: ChronoDateTimeUtc,
        pub update_time: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod identity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "customer_identities")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub namespace: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub value: String,
        pub customer_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod alias {
    use sea_orm::entity::prelude::*;

    /// A merged-away customer id and the survivor it resolves to.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "customer_aliases")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub alias_id: String,
        pub survivor_id: String,
        pub merge_time: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod purchase {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "purchases")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub customer_id: String,
        pub origin_customer_id: String,
        pub order_id: String,
        pub occur_time: ChronoDateTimeUtc,
        pub currency: String,
        pub amount_minor: i64,
        pub margin_minor: i64,
        pub discount_minor: i64,
        pub product_category: Option<String>,
        pub channel: Option<String>,
        pub create_time: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod referral {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "referrals")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub referrer_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub referred_id: String,
        pub occur_time: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
