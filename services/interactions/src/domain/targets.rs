//! SLA targets and where they fall: the targets of a priority and tier, their
//! due times, and the moments they become at risk of a breach. Placed once, in
//! wall-clock time or the working time of the policy's calendar, so the state
//! machine and the sweep only compare instants.

use chrono::{DateTime, Duration, Utc};

use super::calendar::{BusinessCalendar, DeadlineBeyondHorizon};
use super::enums::{CustomerTier, Priority, Severity};

/// The at-risk share when a policy sets none.
pub const DEFAULT_AT_RISK_PERCENT: i32 = 80;

/// When each target of a complaint becomes at risk and which were recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlaWarnings {
    /// The policy's at-risk percentage when the complaint was opened; 0 for
    /// complaints opened before warnings existed (they never warn).
    pub percent: i32,
    /// Raise the escalation level when a target becomes at risk.
    pub escalate: bool,
    /// The resolution target, to place the warning again after a wait.
    pub resolution_target: Option<Duration>,
    pub first_response_time: Option<DateTime<Utc>>,
    pub resolution_time: Option<DateTime<Utc>>,
    /// For the running next-response clock; cleared when the clock stops.
    pub next_response_time: Option<DateTime<Utc>>,
    /// Escalation levels raised by the policy on a warning, not by a person.
    pub policy_escalations: i32,
    pub first_response_at_risk: bool,
    pub resolution_at_risk: bool,
    pub next_response_at_risk: bool,
}

/// `d` after `start`: working time in `calendar`, else wall-clock time.
pub fn after(
    start: DateTime<Utc>,
    d: Duration,
    calendar: Option<&BusinessCalendar>,
) -> Result<DateTime<Utc>, DeadlineBeyondHorizon> {
    match calendar {
        Some(c) => {
            let minutes = u32::try_from(d.num_minutes().max(0)).unwrap_or(u32::MAX);
            c.add_working_minutes(start, minutes)
        }
        None => Ok(start + d),
    }
}

/// The part of `target` that elapses before it is at risk (whole minutes).
fn lead_in(target: Duration, percent: i32) -> Duration {
    Duration::minutes(target.num_minutes() * i64::from(percent) / 100)
}

impl SlaWarnings {
    /// The warnings of a complaint opened at `open` under `targets`.
    pub fn at_open(
        targets: &SlaTargets,
        open: DateTime<Utc>,
        calendar: Option<&BusinessCalendar>,
    ) -> Result<SlaWarnings, DeadlineBeyondHorizon> {
        let p = targets.at_risk_percent;
        Ok(SlaWarnings {
            percent: p,
            escalate: targets.escalate_at_risk,
            resolution_target: Some(targets.resolution),
            first_response_time: Some(after(open, lead_in(targets.first_response, p), calendar)?),
            resolution_time: Some(after(open, lead_in(targets.resolution, p), calendar)?),
            ..SlaWarnings::default()
        })
    }

    /// When the resolution is at risk if its clock runs again at `at` with
    /// `remaining` of the target left: at once if less than the at-risk share's
    /// complement is left. None for complaints that do not warn.
    pub fn resumed_resolution_time(
        &self,
        at: DateTime<Utc>,
        remaining: Duration,
        calendar: Option<&BusinessCalendar>,
    ) -> Option<Result<DateTime<Utc>, DeadlineBeyondHorizon>> {
        let target = self.resolution_target.filter(|_| self.percent > 0)?;
        let still_safe = target - lead_in(target, self.percent);
        let left = remaining - still_safe;
        Some(if left <= Duration::zero() {
            Ok(at)
        } else {
            after(at, left, calendar)
        })
    }

    /// When the answer to a customer message of `at` is at risk, given the
    /// next-response `target`. None for complaints that do not warn.
    pub fn next_response_time_for(
        &self,
        at: DateTime<Utc>,
        target: Duration,
        calendar: Option<&BusinessCalendar>,
    ) -> Option<Result<DateTime<Utc>, DeadlineBeyondHorizon>> {
        (self.percent > 0).then(|| after(at, lead_in(target, self.percent), calendar))
    }
}

/// First-response, resolution and (optional) next-response targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaTargets {
    pub first_response: Duration,
    pub resolution: Duration,
    /// From each customer message after the first response to the answer.
    pub next_response: Option<Duration>,
    /// The share of a target's time (percent) after which it is at risk.
    pub at_risk_percent: i32,
    /// Escalate a complaint when one of its targets becomes at risk.
    pub escalate_at_risk: bool,
}

impl SlaTargets {
    /// First-response and resolution due times of a complaint opened at `open`.
    /// Without a calendar the targets are wall-clock time; with one they count
    /// only its working time. Computed once, at open time: a calendar changed
    /// later does not move the due times of complaints already open.
    pub fn due_times(
        &self,
        open: DateTime<Utc>,
        calendar: Option<&BusinessCalendar>,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), DeadlineBeyondHorizon> {
        Ok((
            after(open, self.first_response, calendar)?,
            after(open, self.resolution, calendar)?,
        ))
    }
}

/// Built-in targets when no policy is configured for a priority and tier: key
/// accounts get half the time, one-off customers double (DOMAIN §4: treat customers
/// by their value).
pub fn default_targets(priority: Priority, tier: CustomerTier) -> SlaTargets {
    let (fr_minutes, res_minutes) = match priority {
        Priority::Urgent => (60, 8 * 60),
        Priority::High => (4 * 60, 24 * 60),
        Priority::Normal => (8 * 60, 72 * 60),
        Priority::Low => (24 * 60, 168 * 60),
    };
    let (num, den) = match tier {
        CustomerTier::Key => (1, 2),
        CustomerTier::Suitable => (3, 4),
        CustomerTier::Ordinary => (1, 1),
        CustomerTier::OneOff => (2, 1),
    };
    // No built-in next-response target: a deployment opts in through a policy,
    // so complaints of deployments that never asked for one do not start breaching.
    SlaTargets {
        first_response: Duration::minutes(fr_minutes * num / den),
        resolution: Duration::minutes(res_minutes * num / den),
        next_response: None,
        at_risk_percent: DEFAULT_AT_RISK_PERCENT,
        escalate_at_risk: false,
    }
}

/// Priority derived from severity when the caller gives none.
pub fn default_priority(severity: Severity) -> Priority {
    match severity {
        Severity::Critical => Priority::Urgent,
        Severity::High => Priority::High,
        Severity::Medium => Priority::Normal,
        Severity::Low => Priority::Low,
    }
}
