//! The complaint state machine and its SLA clock.
//!
//! ```text
//! OPEN --acknowledge--> ACKNOWLEDGED --assign--> IN_PROGRESS --resolve--> RESOLVED --close--> CLOSED
//!   |  \____________assign______________________^     ^                     |
//!   |_________________________resolve__________________|_____________       |
//!                                                      \___reopen__________/
//! escalate: any unresolved state, raises the level, keeps the state
//!
//! OPEN | ACKNOWLEDGED | IN_PROGRESS --pause--> WAITING_ON_CUSTOMER --resume--> IN_PROGRESS
//! (assign and escalate keep a waiting complaint waiting; resolving one resumes it first)
//! ```

use chrono::{DateTime, Duration, Utc};
use retention_errors::FieldViolations;

use super::calendar::{BusinessCalendar, DeadlineBeyondHorizon};
use super::enums::*;
use super::targets::{SlaWarnings, after};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Money {
    pub currency: String,
    pub minor_units: i64,
}

impl Money {
    /// Violations of `field` (e.g. "resolution.compensation"): an ISO 4217 code and
    /// an amount from 0 to [`retention_domain::MAX_MINOR_UNITS`], so sums over many compensations stay
    /// far inside an `i64`.
    pub fn validate_compensation(&self, field: &str, v: &mut FieldViolations) {
        retention_errors::money::check_money(v, field, &self.currency, self.minor_units, false);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub outcome: ResolutionOutcome,
    pub compensation: Option<Money>,
    pub root_cause: String,
    pub service_gap: Option<ServiceGap>,
    pub resolve_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complaint {
    pub id: String,
    pub customer_id: String,
    pub category: ComplaintCategory,
    pub severity: Severity,
    pub priority: Priority,
    pub channel: Option<Channel>,
    pub subject: String,
    pub description: String,
    pub state: ComplaintState,
    pub assignee: Option<String>,
    pub escalation_level: i32,
    pub customer_tier: CustomerTier,
    pub open_time: DateTime<Utc>,
    pub first_response_time: Option<DateTime<Utc>>,
    pub first_response_due: DateTime<Utc>,
    pub resolution_due: DateTime<Utc>,
    pub first_response_breached: bool,
    pub resolution_breached: bool,
    pub resolution: Option<Resolution>,
    pub reopen_count: i32,
    pub close_time: Option<DateTime<Utc>>,
    pub update_time: DateTime<Utc>,
    pub version: i64,
    /// The calendar the SLA policy named when the complaint was opened: a resumed
    /// resolution clock counts working time in it again.
    pub calendar_id: Option<String>,
    /// While waiting on the customer: the resolution time that was left when the
    /// clock stopped (working time with a calendar, whole minutes).
    pub resolution_remaining: Option<Duration>,
    /// Every wait on the customer, oldest first; the last is open while waiting.
    pub holds: Vec<Hold>,
    /// The policy's next-response target when the complaint was opened.
    pub next_response_target: Option<Duration>,
    /// While a customer message waits for an answer: when the answer is due.
    pub next_response_due: Option<DateTime<Utc>>,
    /// The running or last next-response clock missed its due time.
    pub next_response_breached: bool,
    /// The team (help desks' group) of the assignee, for SLA reports.
    pub team: Option<String>,
    /// When each target becomes at risk, and which have warned.
    pub warnings: SlaWarnings,
}

/// A time the complaint waited on the customer, its resolution clock stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub start_time: DateTime<Utc>,
    pub end_time: Option<DateTime<Utc>>,
    /// The inbound interaction whose arrival ended the wait.
    pub resumed_by: Option<String>,
}

pub const MAX_ESCALATION_LEVEL: i32 = 3;

/// What a caller asks of a complaint.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Acknowledge,
    /// Assigns the complaint; a team, when given, replaces the complaint's.
    Assign {
        assignee: String,
        team: Option<String>,
    },
    Escalate,
    Resolve(Resolution),
    Reopen,
    Close,
    /// Stops the resolution clock with `remaining` of the target left
    /// ([`Complaint::remaining_resolution_time`]).
    Pause {
        remaining: Duration,
    },
    /// Runs the resolution clock again, due at `resolution_due`
    /// ([`Complaint::resumed_resolution_due`]) and at risk at `resolution_warn`
    /// ([`SlaWarnings::resumed_resolution_time`]); `by` names the inbound
    /// interaction that ended the wait.
    Resume {
        resolution_due: DateTime<Utc>,
        resolution_warn: Option<DateTime<Utc>>,
        by: Option<String>,
    },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Acknowledge => "acknowledge",
            Action::Assign { .. } => "assign",
            Action::Escalate => "escalate",
            Action::Resolve(_) => "resolve",
            Action::Reopen => "reopen",
            Action::Close => "close",
            Action::Pause { .. } => "pause",
            Action::Resume { .. } => "resume",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a complaint that is {current}")]
pub struct IllegalTransition {
    pub current: ComplaintState,
    pub action: &'static str,
}

impl Complaint {
    pub fn is_unresolved(&self) -> bool {
        matches!(
            self.state,
            ComplaintState::Open
                | ComplaintState::Acknowledged
                | ComplaintState::InProgress
                | ComplaintState::WaitingOnCustomer
        )
    }

    /// The resolution time left at `at`: working time up to the due time in
    /// `calendar` (whole minutes), else wall-clock time; never negative.
    pub fn remaining_resolution_time(
        &self,
        at: DateTime<Utc>,
        calendar: Option<&BusinessCalendar>,
    ) -> Duration {
        let left = match calendar {
            Some(c) => Duration::minutes(c.working_minutes_between(at, self.resolution_due)),
            None => self.resolution_due - at,
        };
        left.max(Duration::zero())
    }

    /// When the answer to a customer message of `at` is due, if that message
    /// starts the next-response clock: the complaint is unresolved and not waiting,
    /// had its first response by then, has a target and no earlier message waiting.
    pub fn next_response_due_for(
        &self,
        at: DateTime<Utc>,
        calendar: Option<&BusinessCalendar>,
    ) -> Option<Result<DateTime<Utc>, DeadlineBeyondHorizon>> {
        let target = self.next_response_target?;
        let starts = matches!(
            self.state,
            ComplaintState::Open | ComplaintState::Acknowledged | ComplaintState::InProgress
        ) && self.first_response_time.is_some_and(|t| t <= at)
            && self.next_response_due.is_none();
        if !starts {
            return None;
        }
        Some(after(at, target, calendar))
    }

    /// Starts the next-response clock, due at `due` and at risk at `warn`.
    pub fn start_next_response(
        &mut self,
        due: DateTime<Utc>,
        warn: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) {
        self.next_response_due = Some(due);
        self.next_response_breached = false;
        self.warnings.next_response_time = warn;
        self.warnings.next_response_at_risk = false;
        self.update_time = now;
        self.version += 1;
    }

    /// Stops the next-response clock with an answer at `at`; returns the due time
    /// it missed when the answer came late and the sweep had not recorded it yet.
    pub fn stop_next_response(
        &mut self,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let due = self.next_response_due.take()?;
        // A stopped clock no longer warns (and the sweep no longer looks at it).
        self.warnings.next_response_time = None;
        let late = at > due && !self.next_response_breached;
        if late {
            self.next_response_breached = true;
        }
        self.update_time = now;
        self.version += 1;
        late.then_some(due)
    }

    /// When the resolution is due if the clock runs again at `at`: the time left
    /// when it stopped, counted from `at` in `calendar`'s working time.
    pub fn resumed_resolution_due(
        &self,
        at: DateTime<Utc>,
        calendar: Option<&BusinessCalendar>,
    ) -> Result<DateTime<Utc>, DeadlineBeyondHorizon> {
        let left = self.resolution_remaining.unwrap_or_else(Duration::zero);
        after(at, left, calendar)
    }

    /// Applies `action`, or explains why the current state forbids it.
    pub fn apply(
        &mut self,
        action: Action,
        now: DateTime<Utc>,
    ) -> Result<ComplaintState, IllegalTransition> {
        use ComplaintState::*;
        let illegal = IllegalTransition {
            current: self.state,
            action: action.name(),
        };
        match (self.state, action) {
            (Open, Action::Acknowledge) => {
                self.state = Acknowledged;
                self.first_response_time.get_or_insert(now);
            }
            (Open | Acknowledged | InProgress, Action::Assign { assignee, team }) => {
                self.assignee = Some(assignee);
                if team.is_some() {
                    self.team = team;
                }
                self.state = InProgress;
                self.first_response_time.get_or_insert(now);
            }
            (WaitingOnCustomer, Action::Assign { assignee, team }) => {
                self.assignee = Some(assignee);
                if team.is_some() {
                    self.team = team;
                }
            }
            (Open | Acknowledged | InProgress | WaitingOnCustomer, Action::Escalate) => {
                if self.escalation_level >= MAX_ESCALATION_LEVEL {
                    return Err(IllegalTransition {
                        current: self.state,
                        action: "escalate beyond the top level",
                    });
                }
                self.escalation_level += 1;
            }
            (Open | Acknowledged | InProgress, Action::Resolve(r)) => {
                self.first_response_time.get_or_insert(r.resolve_time);
                self.resolution = Some(r);
                self.state = Resolved;
            }
            (Resolved, Action::Reopen) => {
                self.state = InProgress;
                self.reopen_count += 1;
                self.resolution = None;
            }
            (Resolved, Action::Close) => {
                self.state = Closed;
                self.close_time = Some(now);
            }
            (Open | Acknowledged | InProgress, Action::Pause { remaining }) => {
                // Asking the customer for more is itself a response.
                self.first_response_time.get_or_insert(now);
                self.state = WaitingOnCustomer;
                self.resolution_remaining = Some(remaining);
                self.holds.push(Hold {
                    start_time: now,
                    end_time: None,
                    resumed_by: None,
                });
            }
            (
                WaitingOnCustomer,
                Action::Resume {
                    resolution_due,
                    resolution_warn,
                    by,
                },
            ) => {
                self.state = InProgress;
                self.resolution_remaining = None;
                self.resolution_due = resolution_due;
                if resolution_warn.is_some() {
                    self.warnings.resolution_time = resolution_warn;
                }
                if let Some(h) = self.holds.last_mut() {
                    h.end_time = Some(now);
                    h.resumed_by = by;
                }
            }
            _ => return Err(illegal),
        }
        self.update_time = now;
        self.version += 1;
        Ok(self.state)
    }

    /// SLA targets missed by `now` and not yet recorded; marks them recorded.
    pub fn detect_breaches(&mut self, now: DateTime<Utc>) -> Vec<SlaTarget> {
        let mut out = Vec::new();
        let responded_by = self.first_response_time;
        if !self.first_response_breached
            && now > self.first_response_due
            && responded_by.is_none_or(|t| t > self.first_response_due)
        {
            self.first_response_breached = true;
            out.push(SlaTarget::FirstResponse);
        }
        let resolved_by = self.resolution.as_ref().map(|r| r.resolve_time);
        // While waiting on the customer the resolution clock stands where it stopped.
        let clock = match (self.state, self.holds.last()) {
            (ComplaintState::WaitingOnCustomer, Some(h)) => h.start_time,
            _ => now,
        };
        if !self.resolution_breached
            && clock > self.resolution_due
            && resolved_by.is_none_or(|t| t > self.resolution_due)
            && self.state != ComplaintState::Closed
        {
            self.resolution_breached = true;
            out.push(SlaTarget::Resolution);
        }
        if !self.next_response_breached
            && self.next_response_due.is_some_and(|due| now > due)
            && self.is_unresolved()
        {
            self.next_response_breached = true;
            out.push(SlaTarget::NextResponse);
        }
        if !out.is_empty() {
            self.version += 1;
            self.update_time = now;
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::targets::*;
    use retention_domain::MAX_MINOR_UNITS;

    pub(crate) fn complaint(now: DateTime<Utc>) -> Complaint {
        let t = default_targets(Priority::Normal, CustomerTier::Ordinary);
        Complaint {
            id: "c".into(),
            customer_id: "u".into(),
            category: ComplaintCategory::Delivery,
            severity: Severity::Medium,
            priority: Priority::Normal,
            channel: None,
            subject: "late".into(),
            description: "parcel late".into(),
            state: ComplaintState::Open,
            assignee: None,
            escalation_level: 0,
            customer_tier: CustomerTier::Ordinary,
            open_time: now,
            first_response_time: None,
            first_response_due: now + t.first_response,
            resolution_due: now + t.resolution,
            first_response_breached: false,
            resolution_breached: false,
            resolution: None,
            reopen_count: 0,
            close_time: None,
            update_time: now,
            version: 1,
            calendar_id: None,
            resolution_remaining: None,
            holds: Vec::new(),
            next_response_target: Some(Duration::hours(2)),
            next_response_due: None,
            next_response_breached: false,
            team: None,
            warnings: SlaWarnings::default(),
        }
    }

    fn compensation_violations(minor_units: i64, currency: &str) -> Vec<(String, String)> {
        let mut v = FieldViolations::new();
        Money {
            currency: currency.into(),
            minor_units,
        }
        .validate_compensation("resolution.compensation", &mut v);
        v.iter()
            .map(|(f, d)| (f.to_string(), d.to_string()))
            .collect()
    }

    #[test]
    fn compensation_is_bounded_and_not_negative() {
        for ok in [0, 1, MAX_MINOR_UNITS] {
            assert!(compensation_violations(ok, "EUR").is_empty(), "{ok}");
        }
        for bad in [
            MAX_MINOR_UNITS + 1,
            1 << 62,
            i64::MAX,
            -MAX_MINOR_UNITS - 1,
            i64::MIN,
        ] {
            let got = compensation_violations(bad, "EUR");
            assert_eq!(got.len(), 1, "{bad}: {got:?}");
            assert_eq!(got[0].0, "resolution.compensation.minor_units");
            assert!(
                got[0].1.contains("1000000000000000") && got[0].1.contains("MAX_MINOR_UNITS"),
                "{got:?}"
            );
        }
        assert_eq!(
            compensation_violations(-1, "eur"),
            vec![
                (
                    "resolution.compensation.minor_units".to_string(),
                    "must not be negative".to_string()
                ),
                (
                    "resolution.compensation.currency_code".to_string(),
                    "must be a three-letter upper-case ISO 4217 code".to_string()
                ),
            ]
        );
    }

    fn resolution(now: DateTime<Utc>) -> Resolution {
        Resolution {
            outcome: ResolutionOutcome::Fixed,
            compensation: None,
            root_cause: "courier".into(),
            service_gap: Some(ServiceGap::Procedure),
            resolve_time: now,
        }
    }

    fn all_actions(now: DateTime<Utc>) -> Vec<Action> {
        vec![
            Action::Acknowledge,
            Action::Assign {
                assignee: "agent".into(),
                team: None,
            },
            Action::Escalate,
            Action::Resolve(resolution(now)),
            Action::Reopen,
            Action::Close,
            Action::Pause {
                remaining: Duration::hours(5),
            },
            Action::Resume {
                resolution_due: now + Duration::hours(5),
                resolution_warn: None,
                by: None,
            },
        ]
    }

    /// The full transition table: (state, action) -> resulting state or illegal.
    fn expected(state: ComplaintState, action: &Action) -> Option<ComplaintState> {
        use ComplaintState::*;
        match (state, action) {
            (Open, Action::Acknowledge) => Some(Acknowledged),
            (Open | Acknowledged | InProgress, Action::Assign { .. }) => Some(InProgress),
            (WaitingOnCustomer, Action::Assign { .. }) => Some(WaitingOnCustomer),
            (s @ (Open | Acknowledged | InProgress | WaitingOnCustomer), Action::Escalate) => {
                Some(s)
            }
            (Open | Acknowledged | InProgress, Action::Pause { .. }) => Some(WaitingOnCustomer),
            (WaitingOnCustomer, Action::Resume { .. }) => Some(InProgress),
            (Open | Acknowledged | InProgress, Action::Resolve(_)) => Some(Resolved),
            (Resolved, Action::Reopen) => Some(InProgress),
            (Resolved, Action::Close) => Some(Closed),
            _ => None,
        }
    }

    #[test]
    fn every_legal_and_illegal_transition() {
        let now = Utc::now();
        for state in ComplaintState::ALL {
            for action in all_actions(now) {
                let mut c = complaint(now);
                c.state = *state;
                let before = c.clone();
                let result = c.apply(action.clone(), now);
                match expected(*state, &action) {
                    Some(next) => {
                        assert_eq!(result, Ok(next), "{state} + {}", action.name());
                        assert_eq!(c.version, before.version + 1);
                    }
                    None => {
                        assert_eq!(
                            result,
                            Err(IllegalTransition {
                                current: *state,
                                action: action.name()
                            }),
                            "{state} + {}",
                            action.name()
                        );
                        assert_eq!(c, before, "an illegal transition changes nothing");
                    }
                }
            }
        }
    }

    #[test]
    fn escalation_is_capped() {
        let now = Utc::now();
        let mut c = complaint(now);
        for _ in 0..MAX_ESCALATION_LEVEL {
            c.apply(Action::Escalate, now).unwrap();
        }
        assert!(c.apply(Action::Escalate, now).is_err());
        assert_eq!(c.escalation_level, MAX_ESCALATION_LEVEL);
    }

    #[test]
    fn key_accounts_get_tighter_targets() {
        let key = default_targets(Priority::High, CustomerTier::Key);
        let ordinary = default_targets(Priority::High, CustomerTier::Ordinary);
        assert_eq!(key.first_response, Duration::hours(2));
        assert_eq!(ordinary.first_response, Duration::hours(4));
        assert_eq!(key.resolution, Duration::hours(12));
        assert!(
            default_targets(Priority::Low, CustomerTier::OneOff).resolution > ordinary.resolution
        );
    }

    #[test]
    fn breaches_are_detected_once_each() {
        let now = Utc::now();
        let mut c = complaint(now);
        assert!(c.detect_breaches(now + Duration::hours(1)).is_empty());
        assert_eq!(
            c.detect_breaches(now + Duration::hours(9)),
            vec![SlaTarget::FirstResponse]
        );
        assert!(
            c.detect_breaches(now + Duration::hours(10)).is_empty(),
            "recorded once"
        );
        assert_eq!(
            c.detect_breaches(now + Duration::hours(73)),
            vec![SlaTarget::Resolution]
        );
        assert!(c.detect_breaches(now + Duration::hours(100)).is_empty());
    }

    #[test]
    fn a_timely_response_is_no_breach() {
        let now = Utc::now();
        let mut c = complaint(now);
        c.apply(Action::Acknowledge, now + Duration::hours(1))
            .unwrap();
        c.apply(
            Action::Resolve(resolution(now + Duration::hours(2))),
            now + Duration::hours(2),
        )
        .unwrap();
        assert!(c.detect_breaches(now + Duration::days(30)).is_empty());
    }

    fn action_strategy() -> impl Strategy<Value = usize> {
        0usize..8
    }

    proptest! {
        /// Any sequence of actions keeps the machine consistent: resolved/closed
        /// complaints have a resolution, unresolved ones do not, closed is terminal.
        #[test]
        fn random_action_sequences_keep_invariants(seq in prop::collection::vec(action_strategy(), 0..40)) {
            let now = Utc::now();
            let mut c = complaint(now);
            let mut closed = false;
            for i in seq {
                let action = all_actions(now).swap_remove(i);
                let result = c.apply(action, now);
                if closed {
                    prop_assert!(result.is_err(), "closed is terminal");
                }
                closed = c.state == ComplaintState::Closed;
                match c.state {
                    ComplaintState::Resolved | ComplaintState::Closed => prop_assert!(c.resolution.is_some()),
                    _ => prop_assert!(c.resolution.is_none()),
                }
                prop_assert!((0..=MAX_ESCALATION_LEVEL).contains(&c.escalation_level));
                if c.state != ComplaintState::Open {
                    prop_assert!(c.first_response_time.is_some());
                }
                let waiting = c.state == ComplaintState::WaitingOnCustomer;
                prop_assert_eq!(waiting, c.resolution_remaining.is_some());
                prop_assert_eq!(waiting, c.holds.last().is_some_and(|h| h.end_time.is_none()));
                prop_assert!(c.holds.iter().rev().skip(1).all(|h| h.end_time.is_some()));
            }
        }
    }

    #[test]
    fn a_waiting_complaint_does_not_breach_its_resolution_target() {
        let now = Utc::now();
        let mut c = complaint(now);
        let at = now + Duration::hours(1);
        let remaining = c.remaining_resolution_time(at, None);
        assert_eq!(remaining, Duration::hours(71));
        c.apply(Action::Pause { remaining }, at).unwrap();
        assert!(c.detect_breaches(now + Duration::days(30)).is_empty());
        let back = now + Duration::days(30);
        let due = c.resumed_resolution_due(back, None).unwrap();
        assert_eq!(due, back + Duration::hours(71));
        c.apply(
            Action::Resume {
                resolution_due: due,
                resolution_warn: None,
                by: Some("i".into()),
            },
            back,
        )
        .unwrap();
        assert_eq!(c.holds.len(), 1);
        assert_eq!(c.holds[0].end_time, Some(back));
        assert!(c.detect_breaches(due).is_empty());
        assert_eq!(
            c.detect_breaches(due + Duration::minutes(1)),
            vec![SlaTarget::Resolution]
        );
    }

    #[test]
    fn the_next_response_clock_breaches_once_per_customer_message() {
        let now = Utc::now();
        let mut c = complaint(now);
        let h = Duration::hours;
        assert_eq!(
            c.next_response_due_for(now, None),
            None,
            "before the first response"
        );
        c.apply(Action::Acknowledge, now).unwrap();
        let due = c.next_response_due_for(now + h(1), None).unwrap().unwrap();
        assert_eq!(due, now + h(3));
        c.start_next_response(due, None, now + h(1));
        assert_eq!(
            c.next_response_due_for(now + h(2), None),
            None,
            "an earlier message still waits"
        );
        assert_eq!(
            c.stop_next_response(now + h(2), now + h(2)),
            None,
            "in time"
        );
        assert!(c.detect_breaches(now + h(4)).is_empty());
        let due = c.next_response_due_for(now + h(5), None).unwrap().unwrap();
        c.start_next_response(due, None, now + h(5));
        assert_eq!(
            c.detect_breaches(now + h(7) + Duration::minutes(1)),
            vec![SlaTarget::NextResponse]
        );
        assert!(c.detect_breaches(now + h(8)).is_empty(), "recorded once");
        assert_eq!(c.stop_next_response(now + h(8), now + h(8)), None);
        assert!(c.next_response_breached);
        let due = c.next_response_due_for(now + h(9), None).unwrap().unwrap();
        c.start_next_response(due, None, now + h(9));
        assert!(!c.next_response_breached, "a new message, a new clock");
        assert_eq!(c.stop_next_response(now + h(12), now + h(12)), Some(due));
        assert!(c.next_response_breached);
    }

    #[test]
    fn a_pause_after_the_due_time_is_a_breach_and_keeps_nothing() {
        let now = Utc::now();
        let mut c = complaint(now);
        let late = now + Duration::hours(80);
        let remaining = c.remaining_resolution_time(late, None);
        assert_eq!(remaining, Duration::zero());
        c.apply(Action::Pause { remaining }, late).unwrap();
        assert_eq!(
            c.detect_breaches(late),
            vec![SlaTarget::FirstResponse, SlaTarget::Resolution]
        );
    }

    #[test]
    fn due_times_count_working_time_only_with_a_calendar() {
        use crate::domain::calendar::{CalendarDefinition, Period};
        use chrono::TimeZone;
        let mut periods: [Vec<Period>; 7] = Default::default();
        for day in &mut periods[..5] {
            day.push(Period::hm(9, 0, 17, 0));
        }
        let calendar = BusinessCalendar::new(CalendarDefinition {
            name: "office".into(),
            time_zone: "Europe/Berlin".into(),
            periods,
            holidays: Default::default(),
        })
        .unwrap();
        let targets = SlaTargets {
            first_response: Duration::minutes(60),
            resolution: Duration::minutes(8 * 60),
            next_response: None,
            at_risk_percent: 80,
            escalate_at_risk: false,
        };
        // Friday 2026-12-04 16:30 in Berlin (UTC+1).
        let open = Utc.with_ymd_and_hms(2026, 12, 4, 15, 30, 0).unwrap();
        let (first, resolution) = targets.due_times(open, Some(&calendar)).unwrap();
        assert_eq!(first, Utc.with_ymd_and_hms(2026, 12, 7, 8, 30, 0).unwrap());
        assert_eq!(
            resolution,
            Utc.with_ymd_and_hms(2026, 12, 7, 15, 30, 0).unwrap()
        );
        let (first, resolution) = targets.due_times(open, None).unwrap();
        assert_eq!(first, open + Duration::minutes(60));
        assert_eq!(resolution, open + Duration::minutes(8 * 60));
    }
}
