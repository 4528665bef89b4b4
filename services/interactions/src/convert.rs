//! proto <-> domain mapping for the interactions API.

use retention_errors::FieldViolations;
use retention_proto::common;
use retention_proto::interactions as pb;

use crate::domain::*;

pub use retention_errors::time::{instant_arg as from_ts, timestamp as ts};

/// Domain and proto enums share variant names, so one list maps both ways: out
/// (domain -> proto) and in (proto number -> domain, 0 = unset, unknown = violation).
macro_rules! enum_pair {
    ($out:ident, $in:ident, $domain:ident, $pb:ident, [$($v:ident),+ $(,)?]) => {
        pub fn $out(x: $domain) -> pb::$pb {
            match x { $($domain::$v => pb::$pb::$v),+ }
        }

        pub fn $in(x: i32, field: &str, v: &mut FieldViolations) -> Option<$domain> {
            match pb::$pb::try_from(x) {
                Ok(pb::$pb::Unspecified) => None,
                $(Ok(pb::$pb::$v) => Some($domain::$v),)+
                Err(_) => {
                    v.add(field, format!("unknown enum value {x}"));
                    None
                }
            }
        }
    };
}

enum_pair!(
    channel,
    channel_in,
    Channel,
    Channel,
    [
        Phone,
        Email,
        Chat,
        WebForm,
        InPerson,
        Social,
        Hotline,
        SuggestionBox
    ]
);
enum_pair!(
    direction,
    direction_in,
    Direction,
    Direction,
    [Inbound, Outbound]
);
enum_pair!(
    kind,
    kind_in,
    CommunicationKind,
    CommunicationKind,
    [Information, Emotion, Idea, Opinion]
);
enum_pair!(
    phase,
    phase_in,
    PurchasePhase,
    PurchasePhase,
    [Before, During, After]
);
enum_pair!(
    state,
    state_in,
    ComplaintState,
    ComplaintState,
    [Open, Acknowledged, InProgress, Resolved, Closed]
);
enum_pair!(
    category,
    category_in,
    ComplaintCategory,
    ComplaintCategory,
    [
        ProductQuality,
        Price,
        ServiceAttitude,
        Delivery,
        Billing,
        IgnoredCustomer,
        CompanyImage,
        Other
    ]
);
enum_pair!(
    severity,
    severity_in,
    Severity,
    Severity,
    [Low, Medium, High, Critical]
);
enum_pair!(
    priority,
    priority_in,
    Priority,
    Priority,
    [Low, Normal, High, Urgent]
);
enum_pair!(
    gap,
    gap_in,
    ServiceGap,
    ServiceGap,
    [Promotion, Understanding, Procedure, Behaviour, Perception]
);
enum_pair!(
    tier,
    tier_in,
    CustomerTier,
    CustomerTier,
    [Key, Suitable, Ordinary, OneOff]
);
enum_pair!(
    outcome,
    outcome_in,
    ResolutionOutcome,
    ResolutionOutcome,
    [Fixed, Compensated, Explained, Rejected, Withdrawn]
);

pub fn money(m: &Money) -> common::Money {
    common::Money {
        currency_code: m.currency.clone(),
        minor_units: m.minor_units,
    }
}

pub fn interaction(i: &Interaction) -> pb::Interaction {
    pb::Interaction {
        name: format!("interactions/{}", i.id),
        customer: format!("customers/{}", i.customer_id),
        channel: channel(i.channel).into(),
        direction: direction(i.direction).into(),
        kind: i.kind.map_or(0, |k| kind(k).into()),
        purchase_phase: i.purchase_phase.map_or(0, |p| phase(p).into()),
        agent: i.agent.clone(),
        summary: i.summary.clone(),
        occur_time: Some(ts(i.occur_time)),
        complaint: i
            .complaint_id
            .as_ref()
            .map(|c| format!("complaints/{c}"))
            .unwrap_or_default(),
    }
}

pub fn resolution(r: &Resolution) -> pb::Resolution {
    pb::Resolution {
        outcome: outcome(r.outcome).into(),
        compensation: r.compensation.as_ref().map(money),
        root_cause: r.root_cause.clone(),
        service_gap: r.service_gap.map_or(0, |g| gap(g).into()),
        resolve_time: Some(ts(r.resolve_time)),
    }
}

pub fn complaint(c: &Complaint) -> pb::Complaint {
    pb::Complaint {
        name: format!("complaints/{}", c.id),
        customer: format!("customers/{}", c.customer_id),
        category: category(c.category).into(),
        severity: severity(c.severity).into(),
        priority: priority(c.priority).into(),
        channel: c.channel.map_or(0, |x| channel(x).into()),
        subject: c.subject.clone(),
        description: c.description.clone(),
        state: state(c.state).into(),
        assignee: c.assignee.clone().unwrap_or_default(),
        escalation_level: c.escalation_level,
        customer_tier: tier(c.customer_tier).into(),
        open_time: Some(ts(c.open_time)),
        first_response_time: c.first_response_time.map(ts),
        first_response_due_time: Some(ts(c.first_response_due)),
        resolution_due_time: Some(ts(c.resolution_due)),
        first_response_breached: c.first_response_breached,
        resolution_breached: c.resolution_breached,
        resolution: c.resolution.as_ref().map(resolution),
        reopen_count: c.reopen_count,
        close_time: c.close_time.map(ts),
        update_time: Some(ts(c.update_time)),
        etag: format!("\"{}\"", c.version),
    }
}

pub fn survey(s: &Survey) -> pb::Survey {
    pb::Survey {
        name: format!("surveys/{}", s.id),
        customer: format!("customers/{}", s.customer_id),
        complaint: s
            .complaint_id
            .as_ref()
            .map(|c| format!("complaints/{c}"))
            .unwrap_or_default(),
        csat: s.csat.unwrap_or(0),
        nps: s.nps,
        expectation: s.expectation.unwrap_or(0),
        perceived: s.perceived.unwrap_or(0),
        occur_time: Some(ts(s.occur_time)),
    }
}

pub fn policy(p: Priority, t: CustomerTier, targets: &SlaTargets) -> pb::SlaPolicy {
    pb::SlaPolicy {
        name: format!(
            "slaPolicies/{}-{}",
            p.as_str().to_lowercase(),
            t.as_str().to_lowercase()
        ),
        priority: priority(p).into(),
        customer_tier: tier(t).into(),
        first_response_minutes: targets.first_response.num_minutes() as i32,
        resolution_minutes: targets.resolution.num_minutes() as i32,
    }
}

pub fn summary(s: &SatisfactionSummary) -> pb::SatisfactionSummary {
    pb::SatisfactionSummary {
        survey_count: s.survey_count,
        csat_mean: s.csat_mean,
        csat_satisfied_share: s.csat_satisfied_share,
        nps: s.nps,
        mean_expectation_gap: s.mean_expectation_gap,
        complaint_count: s.complaint_count,
        complaints_by_category: s
            .by_category
            .values()
            .map(|(c, n)| pb::CategoryCount {
                category: category(*c).into(),
                count: *n,
            })
            .collect(),
        complaints_by_service_gap: s
            .by_service_gap
            .values()
            .map(|(g, n)| pb::ServiceGapCount {
                service_gap: gap(*g).into(),
                count: *n,
            })
            .collect(),
        sla_compliance_rate: s.sla_compliance_rate,
        mean_time_to_resolve_hours: s.mean_time_to_resolve_hours,
    }
}
