//! The insight fields segment filters and ListCustomerInsights accept, and the
//! in-memory view a filter is evaluated on when a customer is rescored (the SQL
//! translation in `store` selects the same customers).

use retention_filter::{FieldType, Record, Schema, Value};

use super::classify::*;
use super::scoring::Insight;
use super::value::ChurnRisk;

pub fn insight_schema() -> Schema {
    Schema::new()
        .field("customer_id", FieldType::String)
        .field("rfm_recency", FieldType::Int)
        .field("rfm_frequency", FieldType::Int)
        .field("rfm_monetary", FieldType::Int)
        .field("rfm_segment", FieldType::Enum(RfmSegment::names()))
        .field("value_tier", FieldType::Enum(ValueTier::names()))
        .field("management_tier", FieldType::Enum(ManagementTier::names()))
        .field("lifecycle_stage", FieldType::Enum(LifecycleStage::names()))
        .field("loyalty_stage", FieldType::Enum(LoyaltyStage::names()))
        .field(
            "account_quadrant",
            FieldType::Enum(AccountQuadrant::names()),
        )
        .field("order_type", FieldType::Int)
        .field("size_tier", FieldType::Enum(SizeTier::names()))
        .field(
            "wallet_stability",
            FieldType::Enum(WalletStability::names()),
        )
        .field("p_alive", FieldType::Float)
        .field("churn_probability", FieldType::Float)
        .field("expected_purchases", FieldType::Float)
        .field("churn_risk", FieldType::Enum(ChurnRisk::names()))
        .field("predicted_clv", FieldType::Int)
        .field("retained_clv", FieldType::Int)
        .field("historical_margin", FieldType::Int)
        .field("purchases", FieldType::Int)
        .field("complaints_open", FieldType::Int)
        .field("complaints_breached", FieldType::Int)
        .field("mean_csat", FieldType::Float)
        .field("score_time", FieldType::Timestamp)
}

fn text(s: &str) -> Value {
    Value::String(s.to_string())
}

impl Record for Insight {
    fn get(&self, field: &str) -> Value {
        let rfm = |f: fn(&super::scoring::Rfm) -> Value| self.rfm.as_ref().map_or(Value::Null, f);
        match field {
            "customer_id" => text(&self.customer_id),
            "rfm_recency" => rfm(|r| Value::Int(r.recency.into())),
            "rfm_frequency" => rfm(|r| Value::Int(r.frequency.into())),
            "rfm_monetary" => rfm(|r| Value::Int(r.monetary.into())),
            "rfm_segment" => rfm(|r| text(r.segment.as_str())),
            "value_tier" => text(self.value_tier.as_str()),
            "management_tier" => text(self.management_tier.as_str()),
            "lifecycle_stage" => text(self.lifecycle_stage.as_str()),
            "loyalty_stage" => text(self.loyalty_stage.as_str()),
            "account_quadrant" => text(self.account_quadrant.as_str()),
            "order_type" => Value::Int(self.order_model.order_type.into()),
            "size_tier" => text(self.order_model.size_tier.as_str()),
            "wallet_stability" => text(self.order_model.wallet_stability.as_str()),
            "p_alive" => Value::Float(self.p_alive),
            "churn_probability" => Value::Float(self.churn_probability),
            "expected_purchases" => Value::Float(self.expected_purchases),
            "churn_risk" => text(self.churn_risk.as_str()),
            "predicted_clv" => Value::Int(self.predicted_clv_minor),
            "retained_clv" => Value::Int(self.retained_clv_minor),
            "historical_margin" => Value::Int(self.historical_margin_minor),
            "purchases" => Value::Int(self.purchases.into()),
            "complaints_open" => Value::Int(self.complaints_open.into()),
            "complaints_breached" => Value::Int(self.complaints_breached.into()),
            "mean_csat" => self.mean_csat.map_or(Value::Null, Value::Float),
            "score_time" => Value::Timestamp {
                seconds: self.score_time.timestamp(),
                nanos: self.score_time.timestamp_subsec_nanos(),
            },
            _ => Value::Null,
        }
    }
}

/// Orderings ListCustomerInsights accepts (ties broken by customer id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderField {
    CustomerId,
    PredictedClv,
    RetainedClv,
    HistoricalMargin,
    PAlive,
    ChurnProbability,
    ExpectedPurchases,
}

impl OrderField {
    pub const ALL: &'static [(&'static str, OrderField)] = &[
        ("customer_id", OrderField::CustomerId),
        ("predicted_clv", OrderField::PredictedClv),
        ("retained_clv", OrderField::RetainedClv),
        ("historical_margin", OrderField::HistoricalMargin),
        ("p_alive", OrderField::PAlive),
        ("churn_probability", OrderField::ChurnProbability),
        ("expected_purchases", OrderField::ExpectedPurchases),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("", |(n, _)| n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderBy {
    pub field: OrderField,
    pub descending: bool,
}

/// Parses AIP-132 `order_by`: one field, optional ` desc` / ` asc`.
pub fn parse_order_by(s: &str) -> Result<OrderBy, String> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let (name, descending) = match words.as_slice() {
        [] => {
            return Ok(OrderBy {
                field: OrderField::CustomerId,
                descending: false,
            });
        }
        [name] => (*name, false),
        [name, dir] if dir.eq_ignore_ascii_case("desc") => (*name, true),
        [name, dir] if dir.eq_ignore_ascii_case("asc") => (*name, false),
        _ => return Err(format!("expected `<field> [asc|desc]`, got {s:?}")),
    };
    OrderField::ALL
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, field)| OrderBy {
            field: *field,
            descending,
        })
        .ok_or_else(|| {
            let names: Vec<&str> = OrderField::ALL.iter().map(|(n, _)| *n).collect();
            format!("cannot order by {name:?}; one of {}", names.join(", "))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_by_accepts_one_known_field_and_a_direction() {
        assert_eq!(
            parse_order_by("predicted_clv desc"),
            Ok(OrderBy {
                field: OrderField::PredictedClv,
                descending: true
            })
        );
        assert_eq!(
            parse_order_by(" p_alive ASC "),
            Ok(OrderBy {
                field: OrderField::PAlive,
                descending: false
            })
        );
        assert_eq!(parse_order_by("").unwrap().field, OrderField::CustomerId);
        assert!(
            parse_order_by("name")
                .unwrap_err()
                .contains("predicted_clv")
        );
        assert_eq!(
            parse_order_by("retained_clv desc").unwrap().field,
            OrderField::RetainedClv
        );
        assert!(parse_order_by("p_alive sideways").is_err());
        assert!(parse_order_by("p_alive desc, customer_id").is_err());
    }

    #[test]
    fn the_schema_rejects_unknown_fields_and_enum_typos() {
        let s = insight_schema();
        assert!(
            retention_filter::parse_and_check(
                "churn_probability > 0.7 && value_tier in [\"PLATINUM\", \"GOLD\"]",
                &s
            )
            .is_ok()
        );
        assert!(
            retention_filter::parse_and_check("retained_clv > 100000 && predicted_clv < 1000", &s)
                .is_ok()
        );
        assert!(retention_filter::parse_and_check("value_tier == \"platinum\"", &s).is_err());
        assert!(retention_filter::parse_and_check("email == \"x\"", &s).is_err());
    }
}
