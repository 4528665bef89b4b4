//! An amount of money: minor units of an ISO 4217 currency.

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Money {
    pub currency: String,
    pub minor_units: i64,
}
