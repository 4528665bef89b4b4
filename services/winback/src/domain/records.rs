//! The win-back resources as the use cases hold them: churn records, campaigns and
//! their targets.

use chrono::{DateTime, Utc};
use retention_domain::domain_enum;

use super::campaign::{CampaignKind, CampaignSpec, CampaignState, OfferKind, Strategy, ValueBasis};
use super::churn::{ChurnType, ReasonCode};
use super::targeting::Arm;

/// Resource name of a churn record.
pub fn churn_name(id: &str) -> String {
    format!("churnRecords/{id}")
}

/// Resource name of a campaign.
pub fn campaign_name(id: &str) -> String {
    format!("campaigns/{id}")
}

/// Resource name of one target of a campaign.
pub fn target_name(campaign_id: &str, customer_id: &str) -> String {
    format!("{}/targets/{customer_id}", campaign_name(campaign_id))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub currency: String,
    pub minor_units: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChurnRecord {
    pub id: String,
    pub customer_id: String,
    pub churn_type: ChurnType,
    pub reason_codes: Vec<ReasonCode>,
    pub evidence: String,
    pub churn_time: DateTime<Utc>,
    /// Predicted lifetime value when the customer left, if known.
    pub value_at_churn: Option<Money>,
    pub create_time: DateTime<Utc>,
}

domain_enum!(
    /// What the delivery system or an agent reports back about one target.
    ContactOutcome {
        Contacted = "CONTACTED",
        Responded = "RESPONDED",
        Declined = "DECLINED",
        OfferRedeemed = "OFFER_REDEEMED",
    }
);

/// Defined beside the campaign spec that checks it.
pub use super::campaign::ContactChannel;

#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    pub id: String,
    pub display_name: String,
    pub kind: CampaignKind,
    pub strategy: Strategy,
    pub offer: OfferKind,
    pub offer_description: String,
    pub offer_cost_minor: i64,
    pub currency: String,
    pub channel: ContactChannel,
    pub target_segment: Option<String>,
    pub target_filter: Option<String>,
    pub budget_minor: i64,
    pub max_cost_share_of_value: f64,
    /// Resolved at creation: never unspecified.
    pub value_basis: ValueBasis,
    pub holdout_share: f64,
    pub seed: i64,
    pub win_window_days: i32,
    pub cool_down_days: i32,
    pub schedule_time: Option<DateTime<Utc>>,
    pub triggered: bool,
    pub state: CampaignState,
    /// Offer cost committed to treated targets: never above the budget.
    pub committed_minor: i64,
    pub create_time: DateTime<Utc>,
    pub launch_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub update_time: DateTime<Utc>,
    pub version: i64,
}

impl Campaign {
    /// A new draft from a validated spec.
    #[allow(clippy::too_many_arguments)]
    pub fn draft(
        id: String,
        spec: &CampaignSpec,
        offer_description: String,
        channel: ContactChannel,
        seed: i64,
        schedule_time: Option<DateTime<Utc>>,
        triggered: bool,
        at: DateTime<Utc>,
    ) -> Option<Campaign> {
        let kind = spec.kind?;
        Some(Campaign {
            id,
            display_name: spec.display_name.trim().to_string(),
            kind,
            strategy: spec.strategy?,
            offer: spec.offer?,
            offer_description,
            offer_cost_minor: spec.offer_cost_minor,
            currency: spec.currency.clone(),
            channel,
            target_segment: spec.target_segment.clone(),
            target_filter: spec.target_filter.clone(),
            budget_minor: spec.budget_minor,
            max_cost_share_of_value: spec.max_cost_share_of_value,
            value_basis: spec
                .value_basis
                .unwrap_or_else(|| ValueBasis::default_for(kind)),
            holdout_share: spec.holdout_share,
            seed,
            win_window_days: spec.win_window_days,
            cool_down_days: spec.cool_down_days,
            schedule_time,
            triggered,
            state: CampaignState::Draft,
            committed_minor: 0,
            create_time: at,
            launch_time: None,
            end_time: None,
            update_time: at,
            version: 1,
        })
    }

    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub campaign_id: String,
    pub customer_id: String,
    pub arm: Arm,
    pub predicted_clv_minor: i64,
    /// None on targets enrolled before the value if retained was kept.
    pub retained_clv_minor: Option<i64>,
    pub currency: String,
    pub window_start: DateTime<Utc>,
    pub win_deadline: DateTime<Utc>,
    /// When the offer went out (treated only).
    pub dispatch_time: Option<DateTime<Utc>>,
    pub last_outcome: Option<ContactOutcome>,
    pub outcome_time: Option<DateTime<Utc>>,
    pub won_back_time: Option<DateTime<Utc>>,
    pub recovered_margin_minor: i64,
    /// Purchases after the winning one: whether the win lasted.
    pub repeat_purchases: i32,
}
