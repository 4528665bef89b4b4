//! The fields ListCustomers filters accept. PII (names, emails, phones) is not
//! filterable, so a filter cannot be used to probe personal data.

use retention_filter::{FieldType, Schema};

use super::enums::*;

pub fn customer_filter_schema() -> Schema {
    Schema::new()
        .field("kind", FieldType::Enum(CustomerKind::names()))
        .field("gender", FieldType::Enum(Gender::names()))
        .field("birth_year", FieldType::Int)
        .field("education", FieldType::Enum(Education::names()))
        .field("occupation", FieldType::String)
        .field("income_band", FieldType::Enum(IncomeBand::names()))
        .field("region", FieldType::String)
        .field("credit_rating", FieldType::Enum(CreditRating::names()))
        .field(
            "business_condition",
            FieldType::Enum(BusinessCondition::names()),
        )
        .field("annual_revenue", FieldType::Int)
        .field("share_of_wallet", FieldType::Float)
        .field("acquisition_channel", FieldType::String)
        .field("acquire_time", FieldType::Timestamp)
        .field("create_time", FieldType::Timestamp)
        .field("update_time", FieldType::Timestamp)
        .field("tags", FieldType::StringList)
        .field("attributes", FieldType::StringMap)
}
