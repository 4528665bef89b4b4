//! Events: what segmentation publishes on `retention.segmentation.events`
//! ([`publish`], used by the app) and how the profile and interactions events it
//! consumes become feature changes ([`consume`], which calls the app). Applying a
//! change (and the inbox record that makes it exactly-once) is the app's job.

pub mod consume;
pub mod publish;

pub const STREAM: &str = "retention.segmentation.events";
pub const PROFILE_STREAM: &str = "retention.profile.events";
pub const INTERACTIONS_STREAM: &str = "retention.interactions.events";
/// Consumer group name of this service on other services' streams.
pub const CONSUMER: &str = "segmentation";
