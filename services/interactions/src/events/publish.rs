//! The events the interactions service publishes, one builder per change; the app
//! writes them to the outbox in the change's transaction.

use retention_events::OutboxEvent;
use retention_proto::interactions as pb;

use super::STREAM;
use crate::convert;
use crate::domain::*;

pub fn interaction_logged(i: &Interaction) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(&i.customer_id),
        &pb::InteractionLoggedEvent {
            interaction_id: i.id.clone(),
            customer_id: i.customer_id.clone(),
            channel: convert::channel(i.channel).into(),
            direction: convert::direction(i.direction).into(),
            kind: i.kind.map_or(0, |k| convert::kind(k).into()),
            purchase_phase: i.purchase_phase.map_or(0, |p| convert::phase(p).into()),
            occur_time: Some(convert::ts(i.occur_time)),
        },
    )
}

pub fn complaint_opened(c: &Complaint) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(&c.customer_id),
        &pb::ComplaintOpenedEvent {
            complaint_id: c.id.clone(),
            customer_id: c.customer_id.clone(),
            category: convert::category(c.category).into(),
            severity: convert::severity(c.severity).into(),
            priority: convert::priority(c.priority).into(),
            customer_tier: convert::tier(c.customer_tier).into(),
            open_time: Some(convert::ts(c.open_time)),
            resolution_due_time: Some(convert::ts(c.resolution_due)),
        },
    )
}

pub fn status_changed(c: &Complaint, from: ComplaintState) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(&c.customer_id),
        &pb::ComplaintStatusChangedEvent {
            complaint_id: c.id.clone(),
            customer_id: c.customer_id.clone(),
            from_state: convert::state(from).into(),
            to_state: convert::state(c.state).into(),
            escalation_level: c.escalation_level,
            policy_escalations: c.warnings.policy_escalations,
        },
    )
}

pub fn complaint_resolved(c: &Complaint, r: &Resolution) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(&c.customer_id),
        &pb::ComplaintResolvedEvent {
            complaint_id: c.id.clone(),
            customer_id: c.customer_id.clone(),
            category: convert::category(c.category).into(),
            outcome: convert::outcome(r.outcome).into(),
            service_gap: r.service_gap.map_or(0, |g| convert::gap(g).into()),
            compensation_minor_units: r.compensation.as_ref().map_or(0, |m| m.minor_units),
            compensation_currency: r
                .compensation
                .as_ref()
                .map(|m| m.currency.clone())
                .unwrap_or_default(),
            resolve_time: Some(convert::ts(r.resolve_time)),
        },
    )
}

fn sla_target(target: SlaTarget) -> pb::SlaTarget {
    match target {
        SlaTarget::FirstResponse => pb::SlaTarget::FirstResponse,
        SlaTarget::Resolution => pb::SlaTarget::Resolution,
        SlaTarget::NextResponse => pb::SlaTarget::NextResponse,
    }
}

fn due_of(c: &Complaint, target: SlaTarget) -> Option<chrono::DateTime<chrono::Utc>> {
    match target {
        SlaTarget::FirstResponse => Some(c.first_response_due),
        SlaTarget::Resolution => Some(c.resolution_due),
        SlaTarget::NextResponse => c.next_response_due,
    }
}

pub fn sla_breached(c: &Complaint, target: SlaTarget) -> OutboxEvent {
    sla_breached_at(c, target, due_of(c, target))
}

/// `target` of `c` is at risk; `escalated`: the warning raised its level.
pub fn sla_at_risk(c: &Complaint, target: SlaTarget, escalated: bool) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(&c.customer_id),
        &pb::ComplaintSlaAtRiskEvent {
            complaint_id: c.id.clone(),
            customer_id: c.customer_id.clone(),
            target: sla_target(target).into(),
            due_time: due_of(c, target).map(convert::ts),
            priority: convert::priority(c.priority).into(),
            customer_tier: convert::tier(c.customer_tier).into(),
            escalation_level: c.escalation_level,
            escalated,
            assignee: c.assignee.clone().unwrap_or_default(),
            team: c.team.clone().unwrap_or_default(),
        },
    )
}

/// A breach of `target` due at `due` (a next-response clock already stopped no
/// longer holds its due time on the complaint).
pub fn sla_breached_at(
    c: &Complaint,
    target: SlaTarget,
    due: Option<chrono::DateTime<chrono::Utc>>,
) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(&c.customer_id),
        &pb::ComplaintSlaBreachedEvent {
            complaint_id: c.id.clone(),
            customer_id: c.customer_id.clone(),
            target: sla_target(target).into(),
            due_time: due.map(convert::ts),
            priority: convert::priority(c.priority).into(),
            customer_tier: convert::tier(c.customer_tier).into(),
        },
    )
}

pub fn survey_recorded(s: &Survey) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(&s.customer_id),
        &pb::SurveyRecordedEvent {
            survey_id: s.id.clone(),
            customer_id: s.customer_id.clone(),
            complaint_id: s.complaint_id.clone().unwrap_or_default(),
            csat: s.csat.unwrap_or(0),
            nps: s.nps,
            expectation: s.expectation.unwrap_or(0),
            perceived: s.perceived.unwrap_or(0),
            occur_time: Some(convert::ts(s.occur_time)),
        },
    )
}

/// A backfill's replay of one customer's complaints and surveys, addressed to
/// `group` alone: each complaint as the events that lead to its current state
/// ([`replay_steps`]), then each survey.
pub fn replay(r: &ReplayedCustomer, group: &str) -> Vec<OutboxEvent> {
    let mut out = Vec::new();
    for c in &r.complaints {
        for step in replay_steps(c) {
            out.push(match step {
                ReplayStep::Opened => complaint_opened(c),
                ReplayStep::AtRisk(target) => sla_at_risk(c, target, false),
                ReplayStep::Breached(target) => sla_breached(c, target),
                ReplayStep::StatusFrom(from) => status_changed(c, from),
                ReplayStep::Resolved => match &c.resolution {
                    Some(res) => complaint_resolved(c, res),
                    None => continue,
                },
            });
        }
    }
    out.extend(r.surveys.iter().map(survey_recorded));
    out.into_iter().map(|e| e.for_group(group)).collect()
}
