//! What a backfill replays: a customer's current state, as the owner holds it.

use super::{Customer, Purchase, Referral};

/// One customer as a backfill replays it: the customer (with the ids merged into
/// it), its purchases in the order they were recorded and the referrals it gave.
/// An erased customer comes as its tombstone, without either.
#[derive(Debug, Clone)]
pub struct ReplayedCustomer {
    pub customer: Customer,
    pub purchases: Vec<Purchase>,
    pub referrals_given: Vec<Referral>,
}
