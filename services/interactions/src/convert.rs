//! proto <-> domain mapping for the interactions API.

use chrono::{DateTime, Utc};
use retention_errors::FieldViolations;
use retention_proto::common;
use retention_proto::interactions as pb;

use crate::domain::calendar::{CalendarDefinition, MINUTES_PER_DAY, Period};
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
    [
        Open,
        Acknowledged,
        InProgress,
        Resolved,
        Closed,
        WaitingOnCustomer
    ]
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
        holds: c.holds.iter().map(hold).collect(),
        next_response_due_time: c.next_response_due.map(ts),
        next_response_breached: c.next_response_breached,
        team: c.team.clone().unwrap_or_default(),
        first_response_at_risk: c.warnings.first_response_at_risk,
        resolution_at_risk: c.warnings.resolution_at_risk,
        next_response_at_risk: c.warnings.next_response_at_risk,
    }
}

fn hold(h: &Hold) -> pb::ComplaintHold {
    pb::ComplaintHold {
        start_time: Some(ts(h.start_time)),
        end_time: h.end_time.map(ts),
        resumed_by: h
            .resumed_by
            .as_ref()
            .map(|i| format!("interactions/{i}"))
            .unwrap_or_default(),
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

pub fn policy(p: &SlaPolicy) -> pb::SlaPolicy {
    pb::SlaPolicy {
        name: format!(
            "slaPolicies/{}-{}",
            p.priority.as_str().to_lowercase(),
            p.tier.as_str().to_lowercase()
        ),
        priority: priority(p.priority).into(),
        customer_tier: tier(p.tier).into(),
        first_response_minutes: p.targets.first_response.num_minutes() as i32,
        resolution_minutes: p.targets.resolution.num_minutes() as i32,
        calendar: p
            .calendar_id
            .as_deref()
            .map(calendar_name)
            .unwrap_or_default(),
        next_response_minutes: p
            .targets
            .next_response
            .map_or(0, |d| d.num_minutes() as i32),
        at_risk_percent: p.targets.at_risk_percent,
        escalate_at_risk: p.targets.escalate_at_risk,
    }
}

const WEEK: [pb::DayOfWeek; 7] = [
    pb::DayOfWeek::Monday,
    pb::DayOfWeek::Tuesday,
    pb::DayOfWeek::Wednesday,
    pb::DayOfWeek::Thursday,
    pb::DayOfWeek::Friday,
    pb::DayOfWeek::Saturday,
    pb::DayOfWeek::Sunday,
];

pub fn calendar(c: &StoredCalendar) -> pb::BusinessCalendar {
    let d = &c.definition;
    pb::BusinessCalendar {
        name: calendar_name(&c.id),
        display_name: d.name.clone(),
        time_zone: d.time_zone.clone(),
        periods: WEEK
            .iter()
            .zip(&d.periods)
            .flat_map(|(day, periods)| {
                let mut periods = periods.clone();
                periods.sort_unstable();
                periods.into_iter().map(|p| pb::WorkingPeriod {
                    day_of_week: (*day).into(),
                    start_minute: p.start_minute.into(),
                    end_minute: p.end_minute.into(),
                })
            })
            .collect(),
        holidays: d
            .holidays
            .iter()
            .map(|h| h.format("%Y-%m-%d").to_string())
            .collect(),
        create_time: Some(ts(c.create_time)),
        update_time: Some(ts(c.update_time)),
        etag: format!("\"{}\"", c.version),
    }
}

/// A calendar definition from the wire, with violations of the proto fields under
/// `prefix` (e.g. "calendar") recorded in `v`. The domain's own checks (zone,
/// overlaps, ...) run here too, their field paths translated to the proto's: the
/// domain groups periods by weekday, the proto lists them flat.
pub fn calendar_in(
    c: &pb::BusinessCalendar,
    prefix: &str,
    v: &mut FieldViolations,
) -> CalendarDefinition {
    let f = |n: &str| format!("{prefix}.{n}");
    let mut periods: [Vec<Period>; 7] = Default::default();
    // (weekday, index within the weekday) -> index in `c.periods`.
    let mut origin: [Vec<usize>; 7] = Default::default();
    for (i, p) in c.periods.iter().enumerate() {
        let field = f(&format!("periods[{i}]"));
        let day = match pb::DayOfWeek::try_from(p.day_of_week) {
            Ok(pb::DayOfWeek::Unspecified) => {
                v.add(format!("{field}.day_of_week"), "is required");
                None
            }
            Ok(day) => WEEK.iter().position(|w| *w == day),
            Err(_) => {
                v.add(
                    format!("{field}.day_of_week"),
                    format!("unknown enum value {}", p.day_of_week),
                );
                None
            }
        };
        let minute = |x: i32, name: &str, v: &mut FieldViolations| {
            let m = u16::try_from(x).ok().filter(|m| *m <= MINUTES_PER_DAY);
            if m.is_none() {
                v.add(
                    format!("{field}.{name}"),
                    format!("must be between 0 and {MINUTES_PER_DAY}"),
                );
            }
            m
        };
        let start = minute(p.start_minute, "start_minute", v);
        let end = minute(p.end_minute, "end_minute", v);
        if let (Some(day), Some(start), Some(end)) = (day, start, end) {
            periods[day].push(Period::new(start, end));
            origin[day].push(i);
        }
    }
    let mut holidays = std::collections::BTreeSet::new();
    for (i, h) in c.holidays.iter().enumerate() {
        match chrono::NaiveDate::parse_from_str(h, "%Y-%m-%d") {
            Ok(d) => {
                holidays.insert(d);
            }
            Err(_) => v.add(f(&format!("holidays[{i}]")), "must be a date YYYY-MM-DD"),
        }
    }
    check_text(v, &f("display_name"), &c.display_name, 200);
    let definition = CalendarDefinition {
        name: c.display_name.trim().to_string(),
        time_zone: c.time_zone.trim().to_string(),
        periods,
        holidays,
    };
    if let Err(violations) = definition.validate() {
        for violation in violations {
            v.add(
                proto_field(&violation.field, prefix, &origin),
                proto_description(&violation.description, prefix, &origin),
            );
        }
    }
    definition
}

/// The proto path of a domain violation path: "periods[d][k]" is the k-th period
/// of weekday d, somewhere in the flat list; "name" is the display name.
fn proto_field(domain: &str, prefix: &str, origin: &[Vec<usize>; 7]) -> String {
    let period = domain
        .strip_prefix("periods[")
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|rest| rest.split_once("]["))
        .and_then(|(d, k)| Some((d.parse::<usize>().ok()?, k.parse::<usize>().ok()?)))
        .and_then(|(d, k)| origin.get(d)?.get(k).copied());
    match (domain, period) {
        (_, Some(i)) => format!("{prefix}.periods[{i}]"),
        ("name", _) => format!("{prefix}.display_name"),
        (other, _) => format!("{prefix}.{other}"),
    }
}

/// A domain description naming another period ("overlaps periods[0][0]") with
/// that period's proto path, so the caller finds it in what they sent.
fn proto_description(description: &str, prefix: &str, origin: &[Vec<usize>; 7]) -> String {
    let Some(start) = description.find("periods[") else {
        return description.to_string();
    };
    let rest = &description[start..];
    let end = rest
        .match_indices(']')
        .nth(1)
        .map_or(rest.len(), |(i, _)| i + 1);
    format!(
        "{}{}{}",
        &description[..start],
        proto_field(&rest[..end], prefix, origin),
        &rest[end..]
    )
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

pub fn grouping_in(g: i32, field: &str, v: &mut FieldViolations) -> Option<SlaGrouping> {
    use pb::SlaReportGrouping as G;
    match G::try_from(g) {
        Ok(G::Unspecified) => Some(SlaGrouping::All),
        Ok(G::Priority) => Some(SlaGrouping::Priority),
        Ok(G::CustomerTier) => Some(SlaGrouping::CustomerTier),
        Ok(G::Assignee) => Some(SlaGrouping::Assignee),
        Ok(G::Team) => Some(SlaGrouping::Team),
        Err(_) => {
            v.add(field, format!("unknown grouping {g}"));
            None
        }
    }
}

fn outcomes(o: &TargetOutcomes) -> pb::SlaTargetOutcomes {
    pb::SlaTargetOutcomes {
        met: o.met,
        breached: o.breached,
        in_progress: o.in_progress,
        met_share: o.met_share(),
    }
}

fn report_row(r: &SlaReportRow) -> pb::SlaReportRow {
    pb::SlaReportRow {
        group: r.group.clone(),
        complaints: r.complaints,
        first_response: Some(outcomes(&r.first_response)),
        resolution: Some(outcomes(&r.resolution)),
        mean_first_response_minutes: r.mean_first_response_minutes(),
        responded: r.responded,
        mean_resolution_minutes: r.mean_resolution_minutes(),
        resolved: r.resolved,
    }
}

pub fn sla_report(
    r: &SlaReport,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    group_by: i32,
) -> pb::SlaReport {
    pb::SlaReport {
        start_time: Some(ts(start)),
        end_time: Some(ts(end)),
        group_by,
        as_of_time: Some(ts(r.as_of)),
        rows: r.rows.iter().map(report_row).collect(),
        total: Some(report_row(&r.total)),
    }
}
