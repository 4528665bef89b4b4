//! The SLA report: how the complaints opened in a period fared against their
//! targets, per priority, tier, assignee or team ("% of SLAs met", as help desks
//! report it). Built in one pass so a period of any size streams through it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::calendar::BusinessCalendar;
use super::complaint::Complaint;
use super::enums::ComplaintState;

/// What a report's rows are per.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlaGrouping {
    All,
    Priority,
    CustomerTier,
    Assignee,
    Team,
}

/// One target's outcomes as of the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetOutcomes {
    pub met: i64,
    pub breached: i64,
    pub in_progress: i64,
}

impl TargetOutcomes {
    /// met / (met + breached); 0 when nothing is settled yet.
    pub fn met_share(&self) -> f64 {
        let settled = self.met + self.breached;
        if settled == 0 {
            0.0
        } else {
            self.met as f64 / settled as f64
        }
    }

    fn count(&mut self, o: Outcome) {
        match o {
            Outcome::Met => self.met += 1,
            Outcome::Breached => self.breached += 1,
            Outcome::InProgress => self.in_progress += 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Met,
    Breached,
    InProgress,
}

/// One group's figures. Times are working minutes in the complaint's calendar
/// (wall-clock minutes without one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlaReportRow {
    pub group: String,
    pub complaints: i64,
    pub first_response: TargetOutcomes,
    pub resolution: TargetOutcomes,
    pub responded: i64,
    pub first_response_minutes: f64,
    pub resolved: i64,
    pub resolution_minutes: f64,
}

impl SlaReportRow {
    pub fn mean_first_response_minutes(&self) -> f64 {
        mean(self.first_response_minutes, self.responded)
    }

    pub fn mean_resolution_minutes(&self) -> f64 {
        mean(self.resolution_minutes, self.resolved)
    }

    fn add(&mut self, m: &Measured) {
        self.complaints += 1;
        self.first_response.count(m.first_response);
        self.resolution.count(m.resolution);
        if let Some(x) = m.first_response_minutes {
            self.responded += 1;
            self.first_response_minutes += x;
        }
        if let Some(x) = m.resolution_minutes {
            self.resolved += 1;
            self.resolution_minutes += x;
        }
    }
}

fn mean(sum: f64, n: i64) -> f64 {
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// A complaint's outcomes and times.
struct Measured {
    first_response: Outcome,
    resolution: Outcome,
    first_response_minutes: Option<f64>,
    resolution_minutes: Option<f64>,
}

/// Minutes from `from` to `to` in `calendar`'s working time, else on the wall clock.
fn minutes(from: DateTime<Utc>, to: DateTime<Utc>, calendar: Option<&BusinessCalendar>) -> f64 {
    if to <= from {
        return 0.0;
    }
    match calendar {
        Some(c) => c.working_minutes_between(from, to) as f64,
        None => (to - from).num_seconds() as f64 / 60.0,
    }
}

fn measure(c: &Complaint, calendar: Option<&BusinessCalendar>, as_of: DateTime<Utc>) -> Measured {
    let first_response = match c.first_response_time {
        Some(t) if t <= c.first_response_due && !c.first_response_breached => Outcome::Met,
        Some(_) => Outcome::Breached,
        None if c.first_response_breached || as_of > c.first_response_due => Outcome::Breached,
        None => Outcome::InProgress,
    };
    let resolved = c.resolution.as_ref().map(|r| r.resolve_time);
    // A complaint waiting on the customer has its clock stopped where it waits.
    let clock = match (c.state, c.holds.last()) {
        (ComplaintState::WaitingOnCustomer, Some(h)) => h.start_time,
        _ => as_of,
    };
    let resolution = match resolved {
        Some(t) if t <= c.resolution_due && !c.resolution_breached => Outcome::Met,
        Some(_) => Outcome::Breached,
        None if c.resolution_breached || clock > c.resolution_due => Outcome::Breached,
        None => Outcome::InProgress,
    };
    let resolution_minutes = resolved.map(|t| {
        let waited: f64 = c
            .holds
            .iter()
            .map(|h| minutes(h.start_time, h.end_time.unwrap_or(t).min(t), calendar))
            .sum();
        (minutes(c.open_time, t, calendar) - waited).max(0.0)
    });
    Measured {
        first_response,
        resolution,
        first_response_minutes: c
            .first_response_time
            .map(|t| minutes(c.open_time, t, calendar)),
        resolution_minutes,
    }
}

/// The report being built; [`SlaReportBuilder::add`] each complaint once.
pub struct SlaReportBuilder {
    grouping: SlaGrouping,
    as_of: DateTime<Utc>,
    rows: BTreeMap<String, SlaReportRow>,
    total: SlaReportRow,
}

/// The finished report: a row per group with complaints, ordered by group.
#[derive(Debug, Clone, PartialEq)]
pub struct SlaReport {
    pub as_of: DateTime<Utc>,
    pub rows: Vec<SlaReportRow>,
    pub total: SlaReportRow,
}

impl SlaReportBuilder {
    /// Targets not due by `as_of` count as in progress.
    pub fn new(grouping: SlaGrouping, as_of: DateTime<Utc>) -> Self {
        SlaReportBuilder {
            grouping,
            as_of,
            rows: BTreeMap::new(),
            total: SlaReportRow::default(),
        }
    }

    /// Counts `c`, whose clocks run in `calendar` (the one its policy named).
    pub fn add(&mut self, c: &Complaint, calendar: Option<&BusinessCalendar>) {
        let m = measure(c, calendar, self.as_of);
        self.total.add(&m);
        let group = match self.grouping {
            SlaGrouping::All => return,
            SlaGrouping::Priority => format!("PRIORITY_{}", c.priority.as_str()),
            SlaGrouping::CustomerTier => format!("CUSTOMER_TIER_{}", c.customer_tier.as_str()),
            SlaGrouping::Assignee => c.assignee.clone().unwrap_or_default(),
            SlaGrouping::Team => c.team.clone().unwrap_or_default(),
        };
        let row = self
            .rows
            .entry(group.clone())
            .or_insert_with(|| SlaReportRow {
                group,
                ..SlaReportRow::default()
            });
        row.add(&m);
    }

    pub fn finish(self) -> SlaReport {
        SlaReport {
            as_of: self.as_of,
            rows: self.rows.into_values().collect(),
            total: self.total,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::domain::complaint::tests::complaint;
    use crate::domain::complaint::{Action, Hold, Resolution};
    use crate::domain::enums::{Priority, ResolutionOutcome};

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2036, 3, 4, 0, 0, 0).unwrap() + Duration::hours(h)
    }

    fn resolve(c: &mut Complaint, at: DateTime<Utc>) {
        c.apply(
            Action::Resolve(Resolution {
                outcome: ResolutionOutcome::Fixed,
                compensation: None,
                root_cause: String::new(),
                service_gap: None,
                resolve_time: at,
            }),
            at,
        )
        .unwrap();
    }

    #[test]
    fn outcomes_and_means_per_priority() {
        // Opened at 0 with first response due at 8 and resolution due at 72 hours.
        let mut met = complaint(t(0));
        met.apply(Action::Acknowledge, t(2)).unwrap();
        resolve(&mut met, t(10));
        let mut late = complaint(t(0));
        late.priority = Priority::High;
        late.apply(Action::Acknowledge, t(9)).unwrap();
        resolve(&mut late, t(80));
        let mut open = complaint(t(0));
        open.priority = Priority::High;
        let mut waiting = complaint(t(0));
        waiting.apply(Action::Acknowledge, t(4)).unwrap();
        waiting.state = ComplaintState::WaitingOnCustomer;
        waiting.holds.push(Hold {
            start_time: t(5),
            end_time: None,
            resumed_by: None,
        });

        let mut b = SlaReportBuilder::new(SlaGrouping::Priority, t(100));
        for c in [&met, &late, &open, &waiting] {
            b.add(c, None);
        }
        let r = b.finish();
        assert_eq!(
            r.rows.iter().map(|r| r.group.as_str()).collect::<Vec<_>>(),
            ["PRIORITY_HIGH", "PRIORITY_NORMAL"]
        );
        let high = &r.rows[0];
        assert_eq!(
            (high.first_response, high.resolution),
            (
                TargetOutcomes {
                    met: 0,
                    breached: 2,
                    in_progress: 0
                },
                TargetOutcomes {
                    met: 0,
                    breached: 2,
                    in_progress: 0
                }
            )
        );
        let normal = &r.rows[1];
        assert_eq!(
            normal.resolution,
            TargetOutcomes {
                met: 1,
                breached: 0,
                in_progress: 1
            }
        );
        assert_eq!(normal.mean_first_response_minutes(), 180.0);
        assert_eq!(r.total.complaints, 4);
        assert_eq!(r.total.responded, 3);
        assert_eq!(r.total.mean_first_response_minutes(), 300.0);
        assert_eq!(r.total.resolved, 2);
        assert_eq!(r.total.mean_resolution_minutes(), 45.0 * 60.0);
        assert_eq!(r.total.first_response.met_share(), 2.0 / 4.0);
    }

    #[test]
    fn waits_on_the_customer_do_not_count_as_resolution_time() {
        let mut c = complaint(t(0));
        c.apply(Action::Acknowledge, t(1)).unwrap();
        c.holds.push(Hold {
            start_time: t(2),
            end_time: Some(t(30)),
            resumed_by: None,
        });
        resolve(&mut c, t(40));
        let mut b = SlaReportBuilder::new(SlaGrouping::All, t(50));
        b.add(&c, None);
        let r = b.finish();
        assert!(r.rows.is_empty());
        assert_eq!(r.total.mean_resolution_minutes(), 12.0 * 60.0);
        assert_eq!(r.total.resolution.met, 1);
    }

    #[test]
    fn nothing_settled_is_a_zero_share() {
        assert_eq!(TargetOutcomes::default().met_share(), 0.0);
    }
}
