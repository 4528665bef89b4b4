//! Warnings before a breach: a target is at risk once a share of its time has
//! elapsed unanswered (Chatwoot users ask to escalate then, before the customer
//! is let down). Each target warns once, each next-response clock once; the sweep
//! that records breaches also records warnings, so they share its exactly-once
//! claim across replicas.
//!
//! The moments are placed like the due times: in the policy's calendar when it
//! names one, and the resolution warning moves with the resolution clock when
//! the complaint waits on the customer.

use chrono::{DateTime, Duration, Utc};

use super::calendar::{BusinessCalendar, DeadlineBeyondHorizon};
use super::complaint::{Complaint, MAX_ESCALATION_LEVEL, SlaTargets};
use super::enums::{ComplaintState, SlaTarget};

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

/// What the sweep found at risk on one complaint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AtRisk {
    /// Targets to warn about, each once.
    pub targets: Vec<SlaTarget>,
    /// The escalation level was raised for them.
    pub escalated: bool,
}

impl Complaint {
    /// Targets at risk by `now` and not yet recorded; marks them recorded (and
    /// escalates once if the policy says so). A target already past its due time
    /// is left to its breach, which the same sweep records: a warning after the
    /// fact says nothing, and so a recorded warning is always one that was sent.
    pub fn detect_at_risk(&mut self, now: DateTime<Utc>) -> AtRisk {
        let mut out = AtRisk::default();
        if !self.is_unresolved() {
            return out;
        }
        let due = |warn: Option<DateTime<Utc>>, due: Option<DateTime<Utc>>| {
            warn.is_some_and(|w| now >= w) && due.is_some_and(|d| now <= d)
        };
        let w = &mut self.warnings;
        if !w.first_response_at_risk
            && self.first_response_time.is_none()
            && due(w.first_response_time, Some(self.first_response_due))
        {
            w.first_response_at_risk = true;
            out.targets.push(SlaTarget::FirstResponse);
        }
        // Waiting on the customer, the resolution clock stands still.
        if !w.resolution_at_risk
            && self.state != ComplaintState::WaitingOnCustomer
            && due(w.resolution_time, Some(self.resolution_due))
        {
            w.resolution_at_risk = true;
            out.targets.push(SlaTarget::Resolution);
        }
        if !w.next_response_at_risk && due(w.next_response_time, self.next_response_due) {
            w.next_response_at_risk = true;
            out.targets.push(SlaTarget::NextResponse);
        }
        if out.targets.is_empty() {
            return out;
        }
        if w.escalate && self.escalation_level < MAX_ESCALATION_LEVEL {
            self.escalation_level += 1;
            out.escalated = true;
        }
        self.version += 1;
        self.update_time = now;
        out
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::calendar::{CalendarDefinition, Period};
    use crate::domain::complaint::{Action, default_targets};
    use crate::domain::enums::{CustomerTier, Priority};

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2036, 3, 4, h, m, 0).unwrap()
    }

    fn targets(fr: i64, res: i64, percent: i32, escalate: bool) -> SlaTargets {
        SlaTargets {
            first_response: Duration::minutes(fr),
            resolution: Duration::minutes(res),
            next_response: Some(Duration::minutes(60)),
            at_risk_percent: percent,
            escalate_at_risk: escalate,
        }
    }

    fn opened(targets: &SlaTargets, at: DateTime<Utc>) -> Complaint {
        let mut c = crate::domain::complaint::tests::complaint(at);
        c.first_response_due = at + targets.first_response;
        c.resolution_due = at + targets.resolution;
        c.warnings = SlaWarnings::at_open(targets, at, None).unwrap();
        c
    }

    #[test]
    fn warnings_fall_at_the_share_of_each_target() {
        let c = opened(&targets(60, 480, 80, false), t(9, 0));
        assert_eq!(c.warnings.first_response_time, Some(t(9, 48)));
        assert_eq!(c.warnings.resolution_time, Some(t(15, 24)));
    }

    #[test]
    fn each_target_warns_once_and_not_after_it_was_met() {
        let mut c = opened(&targets(60, 480, 80, false), t(9, 0));
        assert_eq!(c.detect_at_risk(t(9, 47)), AtRisk::default());
        let v = c.version;
        assert_eq!(
            c.detect_at_risk(t(9, 48)).targets,
            [SlaTarget::FirstResponse]
        );
        assert_eq!(c.version, v + 1);
        assert_eq!(c.detect_at_risk(t(9, 50)), AtRisk::default());
        assert_eq!(c.version, v + 1, "nothing new, nothing written");
        c.apply(Action::Acknowledge, t(9, 55)).unwrap();
        assert_eq!(c.detect_at_risk(t(15, 30)).targets, [SlaTarget::Resolution]);
        assert_eq!(c.detect_at_risk(t(16, 0)), AtRisk::default());
    }

    #[test]
    fn an_answered_target_never_warns() {
        let mut c = opened(&targets(60, 480, 80, false), t(9, 0));
        c.apply(Action::Acknowledge, t(9, 10)).unwrap();
        assert_eq!(c.detect_at_risk(t(9, 50)), AtRisk::default());
        assert!(!c.warnings.first_response_at_risk);
    }

    #[test]
    fn a_target_found_past_its_due_time_is_left_to_its_breach() {
        let mut c = opened(&targets(60, 480, 80, false), t(9, 0));
        let v = c.version;
        assert_eq!(c.detect_at_risk(t(10, 1)), AtRisk::default());
        assert!(!c.warnings.first_response_at_risk);
        assert_eq!(c.version, v, "nothing recorded");
        assert_eq!(c.detect_breaches(t(10, 1)), [SlaTarget::FirstResponse]);
    }

    #[test]
    fn escalation_on_risk_is_once_per_sweep_and_stops_at_the_top_level() {
        let mut c = opened(&targets(60, 70, 80, true), t(9, 0));
        let r = c.detect_at_risk(t(9, 57));
        assert_eq!(r.targets, [SlaTarget::FirstResponse, SlaTarget::Resolution]);
        assert!(r.escalated);
        assert_eq!(c.escalation_level, 1);
        c.escalation_level = MAX_ESCALATION_LEVEL;
        c.warnings.resolution_at_risk = false;
        let r = c.detect_at_risk(t(9, 58));
        assert_eq!(r.targets, [SlaTarget::Resolution]);
        assert!(!r.escalated);
        assert_eq!(c.escalation_level, MAX_ESCALATION_LEVEL);
    }

    #[test]
    fn the_resolution_warning_moves_with_a_wait() {
        let w = SlaWarnings::at_open(&targets(60, 600, 80, false), t(9, 0), None).unwrap();
        // 500 minutes left: 380 of them still safe (600 - 120 before the last 20 %).
        assert_eq!(
            w.resumed_resolution_time(t(12, 0), Duration::minutes(500), None),
            Some(Ok(t(18, 20)))
        );
        // Inside the last 20 %: at risk the moment it runs again.
        assert_eq!(
            w.resumed_resolution_time(t(12, 0), Duration::minutes(90), None),
            Some(Ok(t(12, 0)))
        );
        let legacy = SlaWarnings::default();
        assert_eq!(
            legacy.resumed_resolution_time(t(12, 0), Duration::minutes(500), None),
            None
        );
    }

    #[test]
    fn a_calendar_places_warnings_in_working_time() {
        let mut def = CalendarDefinition {
            name: "office".into(),
            time_zone: "UTC".into(),
            periods: Default::default(),
            holidays: Default::default(),
        };
        for day in 0..5 {
            def.periods[day] = vec![Period::new(9 * 60, 17 * 60)];
        }
        let cal = BusinessCalendar::new(def).unwrap();
        // Tuesday 16:00 + 80 % of 120 working minutes = Wednesday 09:36.
        let w = SlaWarnings::at_open(&targets(120, 480, 80, false), t(16, 0), Some(&cal)).unwrap();
        assert_eq!(
            w.first_response_time,
            Some(Utc.with_ymd_and_hms(2036, 3, 5, 9, 36, 0).unwrap())
        );
    }

    #[test]
    fn built_in_targets_warn_at_eighty_percent() {
        let d = default_targets(Priority::Urgent, CustomerTier::Ordinary);
        assert_eq!(d.at_risk_percent, DEFAULT_AT_RISK_PERCENT);
        assert!(!d.escalate_at_risk);
    }
}
