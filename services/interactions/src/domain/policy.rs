//! SLA policies and the business-hour calendars they may count time in.

use chrono::{DateTime, Utc};

use super::calendar::CalendarDefinition;
use super::enums::{CustomerTier, Priority};
use super::targets::SlaTargets;

/// The targets for one priority and customer tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaPolicy {
    pub priority: Priority,
    pub tier: CustomerTier,
    pub targets: SlaTargets,
    /// The calendar whose working time the targets count; None: wall-clock time.
    pub calendar_id: Option<String>,
}

/// A business-hour calendar as the service keeps it: the definition plus the
/// resource bookkeeping (etag version, times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCalendar {
    pub id: String,
    pub definition: CalendarDefinition,
    pub version: i64,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// The resource name of calendar `id`.
pub fn calendar_name(id: &str) -> String {
    format!("calendars/{id}")
}
