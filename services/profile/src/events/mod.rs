//! The profile service's events: what it publishes on `retention.profile.events`
//! ([`publish`], built by the app inside its transactions). The profile service
//! consumes no events, so there is no `consume` module.

pub mod publish;

pub const STREAM: &str = "retention.profile.events";
