//! The win-back service's events: what it publishes on `retention.winback.events`
//! ([`publish`], built by the app inside its transactions) and the events it
//! consumes ([`consume`]): profile's purchases (won-back attribution), consents,
//! merges and erasures; interactions' complaints (churn signals); segmentation's
//! membership changes (triggered campaigns). Each is applied exactly once in
//! effect through the inbox.

pub mod consume;
pub mod publish;

pub const STREAM: &str = "retention.winback.events";
pub const PROFILE_STREAM: &str = "retention.profile.events";
pub const INTERACTIONS_STREAM: &str = "retention.interactions.events";
pub const SEGMENTATION_STREAM: &str = "retention.segmentation.events";
/// This service's consumer group on other services' streams (its name).
pub const CONSUMER: &str = "winback";
