//! What a backfill replays: a complaint's current state as the events that bring
//! a consumer to it, and one customer's complaints and surveys.

use super::{Complaint, ComplaintState, SlaTarget, Survey};

/// The complaints and surveys of one customer, as a backfill replays them.
#[derive(Debug, Clone)]
pub struct ReplayedCustomer {
    pub customer_id: String,
    pub complaints: Vec<Complaint>,
    pub surveys: Vec<Survey>,
}

/// One event of a complaint's replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayStep {
    Opened,
    /// Warned of as at risk (it may have been breached since).
    AtRisk(SlaTarget),
    Breached(SlaTarget),
    Resolved,
    /// A status change from this state to the current one, with the current
    /// escalation level.
    StatusFrom(ComplaintState),
}

/// The events that bring a consumer that knows nothing of complaint `c` to its
/// current state, in order: opened; each SLA target it was warned of; each SLA
/// target it missed; resolved, when it
/// holds a resolution; then, unless it is still OPEN at level 0, a status change to
/// its current state (from RESOLVED for a closed complaint, so no consumer reads it
/// as a reopening; from OPEN otherwise). A reopened complaint replays as open: its
/// earlier resolution is history, not state.
pub fn replay_steps(c: &Complaint) -> Vec<ReplayStep> {
    let mut out = vec![ReplayStep::Opened];
    let w = &c.warnings;
    for (at_risk, target) in [
        (w.first_response_at_risk, SlaTarget::FirstResponse),
        (w.resolution_at_risk, SlaTarget::Resolution),
        (w.next_response_at_risk, SlaTarget::NextResponse),
    ] {
        if at_risk {
            out.push(ReplayStep::AtRisk(target));
        }
    }
    if c.first_response_breached {
        out.push(ReplayStep::Breached(SlaTarget::FirstResponse));
    }
    if c.resolution_breached {
        out.push(ReplayStep::Breached(SlaTarget::Resolution));
    }
    if c.next_response_breached {
        out.push(ReplayStep::Breached(SlaTarget::NextResponse));
    }
    if c.resolution.is_some() {
        out.push(ReplayStep::Resolved);
    }
    match c.state {
        ComplaintState::Open if c.escalation_level == 0 => {}
        ComplaintState::Closed => out.push(ReplayStep::StatusFrom(ComplaintState::Resolved)),
        _ => out.push(ReplayStep::StatusFrom(ComplaintState::Open)),
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::domain::*;

    fn complaint() -> Complaint {
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
        let due = default_targets(Priority::Normal, CustomerTier::Ordinary);
        Complaint {
            id: "c".into(),
            customer_id: "u".into(),
            category: ComplaintCategory::Delivery,
            severity: Severity::Medium,
            priority: Priority::Normal,
            channel: None,
            subject: "late".into(),
            description: String::new(),
            state: ComplaintState::Open,
            assignee: None,
            escalation_level: 0,
            customer_tier: CustomerTier::Ordinary,
            open_time: t,
            first_response_time: None,
            first_response_due: t + due.first_response,
            resolution_due: t + due.resolution,
            first_response_breached: false,
            resolution_breached: false,
            resolution: None,
            reopen_count: 0,
            close_time: None,
            update_time: t,
            version: 1,
            calendar_id: None,
            resolution_remaining: None,
            holds: Vec::new(),
            next_response_target: None,
            next_response_due: None,
            next_response_breached: false,
            team: None,
            warnings: SlaWarnings::default(),
        }
    }

    fn resolution() -> Resolution {
        Resolution {
            outcome: ResolutionOutcome::Fixed,
            compensation: None,
            root_cause: String::new(),
            service_gap: None,
            resolve_time: Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
        }
    }

    #[test]
    fn each_state_replays_as_the_events_that_lead_to_it() {
        use ReplayStep::*;
        let open = complaint();
        assert_eq!(replay_steps(&open), [Opened]);

        let mut escalated = complaint();
        escalated.escalation_level = 2;
        escalated.first_response_breached = true;
        assert_eq!(
            replay_steps(&escalated),
            [
                Opened,
                Breached(SlaTarget::FirstResponse),
                StatusFrom(ComplaintState::Open)
            ]
        );

        // Warnings replay before breaches, also of a target breached since.
        let mut at_risk = complaint();
        at_risk.warnings.first_response_at_risk = true;
        at_risk.warnings.resolution_at_risk = true;
        at_risk.resolution_breached = true;
        assert_eq!(
            replay_steps(&at_risk),
            [
                Opened,
                AtRisk(SlaTarget::FirstResponse),
                AtRisk(SlaTarget::Resolution),
                Breached(SlaTarget::Resolution)
            ]
        );

        let mut resolved = complaint();
        resolved.state = ComplaintState::Resolved;
        resolved.resolution = Some(resolution());
        resolved.resolution_breached = true;
        assert_eq!(
            replay_steps(&resolved),
            [
                Opened,
                Breached(SlaTarget::Resolution),
                Resolved,
                StatusFrom(ComplaintState::Open)
            ]
        );

        let mut closed = resolved.clone();
        closed.state = ComplaintState::Closed;
        assert_eq!(
            replay_steps(&closed),
            [
                Opened,
                Breached(SlaTarget::Resolution),
                Resolved,
                StatusFrom(ComplaintState::Resolved)
            ]
        );

        // Reopened: the resolution was cleared; it replays as an open complaint in
        // progress, never as a reopening.
        let mut reopened = complaint();
        reopened.state = ComplaintState::InProgress;
        reopened.reopen_count = 1;
        assert_eq!(
            replay_steps(&reopened),
            [Opened, StatusFrom(ComplaintState::Open)]
        );
    }
}
