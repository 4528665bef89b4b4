//! The interactions service's events: what it publishes on
//! `retention.interactions.events` ([`publish`], built by the app inside its
//! transactions) and the profile and segmentation events it consumes
//! ([`consume`]).

pub mod consume;
pub mod publish;

pub const STREAM: &str = "retention.interactions.events";
pub const PROFILE_STREAM: &str = "retention.profile.events";
pub const SEGMENTATION_STREAM: &str = "retention.segmentation.events";
/// This service's consumer group on other services' streams (its name).
pub const CONSUMER: &str = "interactions";
