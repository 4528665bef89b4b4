//! Warnings before a breach: a target is at risk once a share of its time has
//! elapsed unanswered (Chatwoot users ask to escalate then, before the customer
//! is let down). Each target warns once, each next-response clock once; the sweep
//! that records breaches also records warnings, so they share its exactly-once
//! claim across replicas.
//!
//! The moments are placed like the due times (`targets`): in the policy's
//! calendar when it names one, and the resolution warning moves with the
//! resolution clock when the complaint waits on the customer.

use chrono::{DateTime, Utc};

use super::complaint::{Complaint, MAX_ESCALATION_LEVEL};
use super::enums::{ComplaintState, SlaTarget};

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
            w.policy_escalations += 1;
            out.escalated = true;
        }
        self.version += 1;
        self.update_time = now;
        out
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::domain::calendar::{BusinessCalendar, CalendarDefinition, Period};
    use crate::domain::complaint::Action;
    use crate::domain::enums::{CustomerTier, Priority};
    use crate::domain::targets::{
        DEFAULT_AT_RISK_PERCENT, SlaTargets, SlaWarnings, default_targets,
    };

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
        assert_eq!(c.warnings.policy_escalations, 1);
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
