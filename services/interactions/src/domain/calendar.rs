//! Business-hour calendars: the working time SLA clocks run on.
//!
//! A calendar names the hours a team works, in one time zone's wall-clock time:
//! periods per weekday plus holidays. An instant is working time when its local
//! wall-clock time falls inside a period of its local weekday and its local date
//! is no holiday. That single rule settles every DST edge:
//!
//! - a period starting inside a spring-forward gap starts counting at the first
//!   instant after the gap, and the skipped wall-clock time is never counted;
//! - wall-clock time repeated at fall-back is worked each time it occurs, so a
//!   period starting at an ambiguous time starts at the earliest occurrence.
//!
//! Elapsed working time is therefore always real time: a 24x7 calendar in any zone
//! gives wall-clock arithmetic on instants.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::ControlFlow;

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Timelike,
    Utc, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

pub const MINUTES_PER_DAY: u16 = 24 * 60;

/// How far after its start a deadline is looked for. Validation guarantees working
/// time every week, but holidays can close a calendar for any span, and a search
/// must end.
pub const SEARCH_HORIZON_DAYS: i64 = 3653;

/// One problem with a calendar definition. Kept local rather than reusing
/// `retention_errors::FieldViolations` so the domain stays free of tonic; the
/// service layer maps these one to one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Every violation of a rejected calendar definition, so a caller fixes all fields
/// in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidCalendar {
    pub violations: Vec<FieldViolation>,
}

impl fmt::Display for InvalidCalendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid business calendar")?;
        for (index, violation) in self.violations.iter().enumerate() {
            f.write_str(if index == 0 { ": " } else { "; " })?;
            write!(f, "{violation}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidCalendar {}

/// The calendar has no room for the requested working time within
/// [`SEARCH_HORIZON_DAYS`] of the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "{minutes} working minutes after {start} end beyond the {SEARCH_HORIZON_DAYS}-day search horizon"
)]
pub struct DeadlineBeyondHorizon {
    pub start: DateTime<Utc>,
    pub minutes: u32,
}

/// Working time within one local day, `[start_minute, end_minute)` in minutes since
/// local midnight. `end_minute` may be [`MINUTES_PER_DAY`] for a period running to
/// midnight; a period never crosses midnight, a night shift is two periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Period {
    pub start_minute: u16,
    pub end_minute: u16,
}

impl Period {
    pub const WHOLE_DAY: Period = Period::new(0, MINUTES_PER_DAY);

    pub const fn new(start_minute: u16, end_minute: u16) -> Self {
        Self {
            start_minute,
            end_minute,
        }
    }

    /// From wall-clock hours and minutes, e.g. `Period::hm(9, 0, 17, 30)`; `24, 0`
    /// ends at midnight.
    pub const fn hm(start_hour: u16, start_minute: u16, end_hour: u16, end_minute: u16) -> Self {
        Self::new(start_hour * 60 + start_minute, end_hour * 60 + end_minute)
    }

    fn is_well_formed(&self) -> bool {
        self.start_minute < self.end_minute && self.end_minute <= MINUTES_PER_DAY
    }

    fn overlaps(&self, other: &Period) -> bool {
        self.start_minute < other.end_minute && other.start_minute < self.end_minute
    }

    fn contains_second(&self, second_of_day: u32) -> bool {
        u32::from(self.start_minute) * 60 <= second_of_day
            && second_of_day < u32::from(self.end_minute) * 60
    }
}

/// A calendar as stored and sent over the wire: plain data, checked by
/// [`CalendarDefinition::validate`] and turned into a [`BusinessCalendar`] by
/// [`BusinessCalendar::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarDefinition {
    pub name: String,
    /// IANA zone name, e.g. "Europe/Berlin".
    pub time_zone: String,
    /// Index 0 is Monday, 6 is Sunday; periods in any order.
    pub periods: [Vec<Period>; 7],
    #[serde(default)]
    pub holidays: BTreeSet<NaiveDate>,
}

impl CalendarDefinition {
    pub fn validate(&self) -> Result<(), Vec<FieldViolation>> {
        let (_, violations) = self.check();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    fn check(&self) -> (Option<Tz>, Vec<FieldViolation>) {
        let mut violations = Vec::new();
        if self.name.trim().is_empty() {
            violations.push(FieldViolation::new("name", "must not be blank"));
        }
        let time_zone = self.time_zone.parse::<Tz>().ok();
        if time_zone.is_none() {
            violations.push(FieldViolation::new(
                "time_zone",
                format!("unknown time zone {:?}", self.time_zone),
            ));
        }
        for (day, periods) in self.periods.iter().enumerate() {
            for (index, period) in periods.iter().enumerate() {
                let field = format!("periods[{day}][{index}]");
                if period.end_minute > MINUTES_PER_DAY {
                    violations.push(FieldViolation::new(
                        field,
                        format!(
                            "end minute {} is past the end of the day ({MINUTES_PER_DAY})",
                            period.end_minute
                        ),
                    ));
                } else if period.start_minute >= period.end_minute {
                    violations.push(FieldViolation::new(
                        field,
                        format!(
                            "start {} is not before end {}",
                            clock(period.start_minute),
                            clock(period.end_minute)
                        ),
                    ));
                } else if let Some(earlier) = periods[..index]
                    .iter()
                    .position(|earlier| earlier.is_well_formed() && earlier.overlaps(period))
                {
                    violations.push(FieldViolation::new(
                        field,
                        format!("overlaps periods[{day}][{earlier}]"),
                    ));
                }
            }
        }
        if self.periods.iter().all(Vec::is_empty) {
            violations.push(FieldViolation::new(
                "periods",
                "no working time on any weekday, so no deadline would ever arrive",
            ));
        }
        (time_zone, violations)
    }
}

fn clock(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// A validated business-hour calendar. Construct with [`BusinessCalendar::new`] or
/// [`BusinessCalendar::always`]; deserializing goes through the same validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CalendarDefinition", into = "CalendarDefinition")]
pub struct BusinessCalendar {
    name: String,
    time_zone: Tz,
    /// Index 0 is Monday; each day sorted by start and free of overlaps, so working
    /// intervals come out in time order.
    periods: [Vec<Period>; 7],
    holidays: BTreeSet<NaiveDate>,
}

impl BusinessCalendar {
    pub fn new(definition: CalendarDefinition) -> Result<Self, InvalidCalendar> {
        let (time_zone, violations) = definition.check();
        let time_zone = match time_zone {
            Some(time_zone) if violations.is_empty() => time_zone,
            _ => return Err(InvalidCalendar { violations }),
        };
        let mut periods = definition.periods;
        for day in &mut periods {
            day.sort_unstable();
        }
        Ok(Self {
            name: definition.name,
            time_zone,
            periods,
            holidays: definition.holidays,
        })
    }

    /// Open 24x7 in UTC with no holidays, so a policy without a calendar keeps
    /// wall-clock deadlines.
    pub fn always(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            time_zone: Tz::UTC,
            periods: std::array::from_fn(|_| vec![Period::WHOLE_DAY]),
            holidays: BTreeSet::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// The day's periods, sorted by start.
    pub fn periods(&self, weekday: Weekday) -> &[Period] {
        &self.periods[weekday.num_days_from_monday() as usize]
    }

    pub fn holidays(&self) -> &BTreeSet<NaiveDate> {
        &self.holidays
    }

    /// Every instant is working time, whatever the zone.
    pub fn is_always_open(&self) -> bool {
        self.holidays.is_empty()
            && self.periods.iter().all(|day| {
                let mut covered_to = 0;
                for period in day {
                    if period.start_minute != covered_to {
                        return false;
                    }
                    covered_to = period.end_minute;
                }
                covered_to == MINUTES_PER_DAY
            })
    }

    pub fn is_working(&self, at: DateTime<Utc>) -> bool {
        let Some(local) = at.naive_utc().checked_add_signed(self.offset_at(at)) else {
            return false;
        };
        let date = local.date();
        !self.holidays.contains(&date)
            && self
                .periods_on(date)
                .iter()
                .any(|period| period.contains_second(local.num_seconds_from_midnight()))
    }

    /// The earliest instant at which `minutes` of working time have elapsed since
    /// `start`. Outside working time the clock starts at the next working instant,
    /// so the deadline always lies inside a period or at its end; zero minutes is
    /// `start` itself. Sub-minute precision of `start` is kept.
    pub fn add_working_minutes(
        &self,
        start: DateTime<Utc>,
        minutes: u32,
    ) -> Result<DateTime<Utc>, DeadlineBeyondHorizon> {
        let beyond = DeadlineBeyondHorizon { start, minutes };
        if minutes == 0 {
            return Ok(start);
        }
        let target = Duration::minutes(i64::from(minutes));
        let horizon = Duration::days(SEARCH_HORIZON_DAYS);
        if self.is_always_open() {
            // Same answer as the walk below, without walking up to ten years of days.
            return if target <= horizon {
                start.checked_add_signed(target).ok_or(beyond)
            } else {
                Err(beyond)
            };
        }
        let until = start
            .checked_add_signed(horizon)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut remaining = target;
        self.for_each_working_interval(start, until, |from, to| {
            let length = to - from;
            if length >= remaining {
                ControlFlow::Break(from + remaining)
            } else {
                remaining -= length;
                ControlFlow::Continue(())
            }
        })
        .ok_or(beyond)
    }

    /// Working time from `from` to `to` in whole minutes, partial minutes rounded
    /// down; 0 when `to` is not after `from`. Cost grows with the days spanned.
    pub fn working_minutes_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        if to <= from {
            return 0;
        }
        if self.is_always_open() {
            return (to - from).num_minutes();
        }
        let mut worked = Duration::zero();
        self.for_each_working_interval(from, to, |start, end| {
            worked += end - start;
            ControlFlow::<()>::Continue(())
        });
        worked.num_minutes()
    }

    fn periods_on(&self, date: NaiveDate) -> &[Period] {
        self.periods(date.weekday())
    }

    fn offset_at(&self, at: DateTime<Utc>) -> Duration {
        let offset = self
            .time_zone
            .offset_from_utc_datetime(&at.naive_utc())
            .fix();
        Duration::seconds(i64::from(offset.local_minus_utc()))
    }

    /// Calls `visit` with each working interval `[start, end)` inside
    /// `[from, until)`, in time order, until it breaks.
    ///
    /// Walks stretches of at most a day over which the zone's offset is constant:
    /// there local time is UTC plus a fixed offset, so each period maps to one UTC
    /// interval by subtraction, and gaps and repeated hours need no special case.
    fn for_each_working_interval<B>(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        mut visit: impl FnMut(DateTime<Utc>, DateTime<Utc>) -> ControlFlow<B>,
    ) -> Option<B> {
        // A margin from chrono's limits keeps local times and their next days
        // representable, so the arithmetic below cannot overflow.
        let margin = Duration::days(3);
        let mut cursor = from.max(DateTime::<Utc>::MIN_UTC + margin);
        let until = until.min(DateTime::<Utc>::MAX_UTC - margin);
        while cursor < until {
            let offset = self.offset_at(cursor);
            let stretch_end = self.stretch_end(cursor, offset, until);
            let local_from = cursor.naive_utc() + offset;
            let local_until = stretch_end.naive_utc() + offset;
            let mut date = local_from.date();
            while date <= local_until.date() {
                if !self.holidays.contains(&date) {
                    let midnight = date.and_time(NaiveTime::MIN);
                    for period in self.periods_on(date) {
                        let start = local_from
                            .max(midnight + Duration::minutes(i64::from(period.start_minute)));
                        let end = local_until
                            .min(midnight + Duration::minutes(i64::from(period.end_minute)));
                        if start < end
                            && let ControlFlow::Break(value) =
                                visit(utc(start - offset), utc(end - offset))
                        {
                            return Some(value);
                        }
                    }
                }
                let Some(next) = date.succ_opt() else {
                    break;
                };
                date = next;
            }
            cursor = stretch_end;
        }
        None
    }

    /// The end of the stretch starting at `from` over which the zone keeps
    /// `offset`: the next offset change, or a day later, or `until`.
    ///
    /// Comparing offsets a day apart misses only two changes within one day that
    /// cancel out, which no zone has in its rules.
    fn stretch_end(
        &self,
        from: DateTime<Utc>,
        offset: Duration,
        until: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let probe = (from + Duration::days(1)).min(until);
        if self.offset_at(probe) == offset {
            return probe;
        }
        // Offsets change on whole seconds: bisect between the last second known to
        // have `offset` and the first known not to.
        let mut kept = from.timestamp();
        let mut changed = probe.timestamp();
        while changed - kept > 1 {
            let middle = kept + (changed - kept) / 2;
            match DateTime::from_timestamp(middle, 0) {
                Some(at) if self.offset_at(at) == offset => kept = middle,
                _ => changed = middle,
            }
        }
        DateTime::from_timestamp(changed, 0)
            .filter(|change| *change > from)
            .unwrap_or(probe)
    }
}

fn utc(local_minus_offset: NaiveDateTime) -> DateTime<Utc> {
    local_minus_offset.and_utc()
}

impl TryFrom<CalendarDefinition> for BusinessCalendar {
    type Error = InvalidCalendar;

    fn try_from(definition: CalendarDefinition) -> Result<Self, Self::Error> {
        Self::new(definition)
    }
}

impl From<BusinessCalendar> for CalendarDefinition {
    fn from(calendar: BusinessCalendar) -> Self {
        Self {
            name: calendar.name,
            time_zone: calendar.time_zone.name().to_owned(),
            periods: calendar.periods,
            holidays: calendar.holidays,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Australia::Lord_Howe, Europe::Berlin};
    use proptest::prelude::*;
    use proptest::test_runner::Config as ProptestConfig;

    fn at_local(zone: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        zone.with_ymd_and_hms(y, m, d, h, min, 0)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn at_utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn local_wall_clock(zone: Tz, at: DateTime<Utc>) -> NaiveDateTime {
        at.with_timezone(&zone).naive_local()
    }

    fn wall(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        date(y, m, d).and_hms_opt(h, min, 0).unwrap()
    }

    fn definition(zone: &str, periods: [Vec<Period>; 7]) -> CalendarDefinition {
        CalendarDefinition {
            name: "support".to_owned(),
            time_zone: zone.to_owned(),
            periods,
            holidays: BTreeSet::new(),
        }
    }

    fn weekdays(day: Vec<Period>) -> [Vec<Period>; 7] {
        std::array::from_fn(|index| if index < 5 { day.clone() } else { Vec::new() })
    }

    fn calendar(zone: &str, periods: [Vec<Period>; 7], holidays: &[NaiveDate]) -> BusinessCalendar {
        let mut definition = definition(zone, periods);
        definition.holidays = holidays.iter().copied().collect();
        BusinessCalendar::new(definition).unwrap()
    }

    fn office_hours(zone: &str, holidays: &[NaiveDate]) -> BusinessCalendar {
        calendar(zone, weekdays(vec![Period::hm(9, 0, 17, 0)]), holidays)
    }

    /// Open around the clock in local time, but not recognisably so, which forces
    /// the interval walk instead of plain addition.
    fn local_24x7_walked(zone: &str) -> BusinessCalendar {
        let calendar = calendar(
            zone,
            std::array::from_fn(|_| vec![Period::WHOLE_DAY]),
            &[date(2040, 1, 1)],
        );
        assert!(!calendar.is_always_open());
        calendar
    }

    fn local_24x7(zone: &str) -> BusinessCalendar {
        let calendar = calendar(zone, std::array::from_fn(|_| vec![Period::WHOLE_DAY]), &[]);
        assert!(calendar.is_always_open());
        calendar
    }

    fn violation_fields(definition: &CalendarDefinition) -> Vec<(String, String)> {
        definition
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|v| (v.field, v.description))
            .collect()
    }

    #[test]
    fn friday_afternoon_complaint_is_due_monday_morning() {
        let calendar = office_hours("Europe/Berlin", &[]);
        let opened = at_local(Berlin, 2026, 1, 16, 16, 30);
        let due = calendar.add_working_minutes(opened, 60).unwrap();
        assert_eq!(due, at_local(Berlin, 2026, 1, 19, 9, 30));
        assert_eq!(calendar.working_minutes_between(opened, due), 60);
    }

    #[test]
    fn holiday_monday_moves_the_deadline_to_tuesday() {
        let calendar = office_hours("Europe/Berlin", &[date(2026, 1, 19)]);
        let opened = at_local(Berlin, 2026, 1, 16, 16, 30);
        let due = calendar.add_working_minutes(opened, 60).unwrap();
        assert_eq!(due, at_local(Berlin, 2026, 1, 20, 9, 30));
        assert!(!calendar.is_working(at_local(Berlin, 2026, 1, 19, 10, 0)));
    }

    #[test]
    fn lunch_break_is_not_working_time() {
        let calendar = calendar(
            "Europe/Berlin",
            weekdays(vec![Period::hm(13, 0, 17, 0), Period::hm(9, 0, 12, 0)]),
            &[],
        );
        let opened = at_local(Berlin, 2026, 1, 14, 11, 30);
        let due = calendar.add_working_minutes(opened, 60).unwrap();
        assert_eq!(due, at_local(Berlin, 2026, 1, 14, 13, 30));
        assert!(!calendar.is_working(at_local(Berlin, 2026, 1, 14, 12, 30)));
    }

    #[test]
    fn clock_starts_at_the_next_opening() {
        let calendar = office_hours("Europe/Berlin", &[]);
        let saturday = at_local(Berlin, 2026, 1, 17, 10, 0);
        assert_eq!(
            calendar.add_working_minutes(saturday, 30).unwrap(),
            at_local(Berlin, 2026, 1, 19, 9, 30)
        );
        let early_tuesday = at_local(Berlin, 2026, 1, 20, 7, 0);
        assert_eq!(
            calendar.add_working_minutes(early_tuesday, 30).unwrap(),
            at_local(Berlin, 2026, 1, 20, 9, 30)
        );
    }

    #[test]
    fn deadline_at_closing_time_stays_on_that_day() {
        let calendar = office_hours("Europe/Berlin", &[]);
        let opened = at_local(Berlin, 2026, 1, 16, 16, 0);
        assert_eq!(
            calendar.add_working_minutes(opened, 60).unwrap(),
            at_local(Berlin, 2026, 1, 16, 17, 0)
        );
    }

    #[test]
    fn zero_minutes_is_due_at_the_start() {
        let calendar = office_hours("Europe/Berlin", &[]);
        let saturday = at_local(Berlin, 2026, 1, 17, 10, 0);
        assert_eq!(calendar.add_working_minutes(saturday, 0).unwrap(), saturday);
    }

    #[test]
    fn seconds_are_kept_and_partial_minutes_round_down() {
        let calendar = office_hours("Europe/Berlin", &[]);
        let opened = at_local(Berlin, 2026, 1, 14, 9, 0) + Duration::seconds(30);
        let due = calendar.add_working_minutes(opened, 60).unwrap();
        assert_eq!(
            due,
            at_local(Berlin, 2026, 1, 14, 10, 0) + Duration::seconds(30)
        );
        assert_eq!(calendar.working_minutes_between(opened, due), 60);
        assert_eq!(
            calendar.working_minutes_between(opened, due - Duration::seconds(1)),
            59
        );
        // 16:59:30 to closing is half a minute: rounds down to nothing.
        let late = at_local(Berlin, 2026, 1, 14, 16, 59) + Duration::seconds(30);
        assert_eq!(
            calendar.working_minutes_between(late, at_local(Berlin, 2026, 1, 14, 18, 0)),
            0
        );
        let due = calendar.add_working_minutes(late, 1).unwrap();
        assert_eq!(
            due,
            at_local(Berlin, 2026, 1, 15, 9, 0) + Duration::seconds(30)
        );
    }

    #[test]
    fn working_minutes_between_is_zero_when_not_after() {
        let calendar = office_hours("Europe/Berlin", &[]);
        let at = at_local(Berlin, 2026, 1, 14, 10, 0);
        assert_eq!(calendar.working_minutes_between(at, at), 0);
        assert_eq!(
            calendar.working_minutes_between(at, at - Duration::hours(1)),
            0
        );
        assert_eq!(
            calendar.working_minutes_between(at, at + Duration::hours(1)),
            60
        );
    }

    #[test]
    fn is_working_respects_period_bounds_and_holidays() {
        let calendar = office_hours("Europe/Berlin", &[date(2026, 1, 15)]);
        assert!(calendar.is_working(at_local(Berlin, 2026, 1, 14, 9, 0)));
        assert!(calendar.is_working(at_local(Berlin, 2026, 1, 14, 16, 59) + Duration::seconds(59)));
        assert!(!calendar.is_working(at_local(Berlin, 2026, 1, 14, 17, 0)));
        assert!(!calendar.is_working(at_local(Berlin, 2026, 1, 14, 8, 59)));
        assert!(!calendar.is_working(at_local(Berlin, 2026, 1, 15, 10, 0)));
        assert!(!calendar.is_working(at_local(Berlin, 2026, 1, 17, 10, 0)));
    }

    #[test]
    fn local_24x7_counts_real_minutes_across_dst_changes() {
        // (zone, local start the evening before the change, real minutes added,
        // expected local wall clock at the deadline)
        let cases = [
            // Berlin springs forward 02:00 -> 03:00 on 29 March 2026.
            (
                "Europe/Berlin",
                Berlin,
                wall(2026, 3, 28, 23, 0),
                240,
                wall(2026, 3, 29, 4, 0),
            ),
            // Berlin falls back 03:00 -> 02:00 on 25 October 2026.
            (
                "Europe/Berlin",
                Berlin,
                wall(2026, 10, 24, 23, 0),
                240,
                wall(2026, 10, 25, 2, 0),
            ),
            // New York springs forward 02:00 -> 03:00 on 8 March 2026.
            (
                "America/New_York",
                New_York,
                wall(2026, 3, 7, 23, 0),
                240,
                wall(2026, 3, 8, 4, 0),
            ),
            // New York falls back 02:00 -> 01:00 on 1 November 2026.
            (
                "America/New_York",
                New_York,
                wall(2026, 10, 31, 23, 0),
                240,
                wall(2026, 11, 1, 2, 0),
            ),
            // Lord Howe moves by half an hour: 02:00 -> 02:30 on 4 October 2026.
            (
                "Australia/Lord_Howe",
                Lord_Howe,
                wall(2026, 10, 3, 23, 0),
                240,
                wall(2026, 10, 4, 3, 30),
            ),
            // And 02:00 -> 01:30 on 5 April 2026.
            (
                "Australia/Lord_Howe",
                Lord_Howe,
                wall(2026, 4, 4, 23, 0),
                240,
                wall(2026, 4, 5, 2, 30),
            ),
        ];
        for (name, zone, start, minutes, expected_wall) in cases {
            let start = zone
                .from_local_datetime(&start)
                .single()
                .unwrap()
                .with_timezone(&Utc);
            for calendar in [local_24x7(name), local_24x7_walked(name)] {
                let due = calendar.add_working_minutes(start, minutes).unwrap();
                assert_eq!(due, start + Duration::minutes(i64::from(minutes)), "{name}");
                assert_eq!(local_wall_clock(zone, due), expected_wall, "{name}");
                assert_eq!(
                    calendar.working_minutes_between(start, due),
                    i64::from(minutes),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn local_24x7_days_of_dst_changes_have_their_real_length() {
        let cases = [
            ("Europe/Berlin", Berlin, date(2026, 3, 29), 23 * 60),
            ("Europe/Berlin", Berlin, date(2026, 10, 25), 25 * 60),
            ("America/New_York", New_York, date(2026, 3, 8), 23 * 60),
            ("America/New_York", New_York, date(2026, 11, 1), 25 * 60),
            (
                "Australia/Lord_Howe",
                Lord_Howe,
                date(2026, 10, 4),
                24 * 60 - 30,
            ),
            (
                "Australia/Lord_Howe",
                Lord_Howe,
                date(2026, 4, 5),
                24 * 60 + 30,
            ),
        ];
        for (name, zone, day, minutes) in cases {
            let midnight = |d: NaiveDate| {
                zone.from_local_datetime(&d.and_time(NaiveTime::MIN))
                    .earliest()
                    .unwrap()
                    .with_timezone(&Utc)
            };
            let (from, to) = (midnight(day), midnight(day + Duration::days(1)));
            let calendar = local_24x7_walked(name);
            assert_eq!(
                calendar.working_minutes_between(from, to),
                minutes,
                "{name} {day}"
            );
            let only_that_day = calendar_open_on(name, day);
            assert_eq!(
                only_that_day
                    .working_minutes_between(from - Duration::days(2), to + Duration::days(2)),
                minutes,
                "{name} {day}"
            );
        }
    }

    /// Open all day on `day`'s weekday only, closed on that weekday a week before
    /// and after.
    fn calendar_open_on(zone: &str, day: NaiveDate) -> BusinessCalendar {
        let mut periods: [Vec<Period>; 7] = Default::default();
        periods[day.weekday().num_days_from_monday() as usize] = vec![Period::WHOLE_DAY];
        calendar(
            zone,
            periods,
            &[day - Duration::days(7), day + Duration::days(7)],
        )
    }

    #[test]
    fn office_hours_after_a_dst_weekend_land_on_local_wall_clock() {
        let cases = [
            (
                "Europe/Berlin",
                Berlin,
                wall(2026, 3, 27, 16, 30),
                wall(2026, 3, 30, 9, 30),
            ),
            (
                "Europe/Berlin",
                Berlin,
                wall(2026, 10, 23, 16, 30),
                wall(2026, 10, 26, 9, 30),
            ),
            (
                "America/New_York",
                New_York,
                wall(2026, 3, 6, 16, 30),
                wall(2026, 3, 9, 9, 30),
            ),
            (
                "America/New_York",
                New_York,
                wall(2026, 10, 30, 16, 30),
                wall(2026, 11, 2, 9, 30),
            ),
        ];
        for (name, zone, opened, expected_wall) in cases {
            let calendar = office_hours(name, &[]);
            let opened = zone
                .from_local_datetime(&opened)
                .single()
                .unwrap()
                .with_timezone(&Utc);
            let due = calendar.add_working_minutes(opened, 60).unwrap();
            assert_eq!(local_wall_clock(zone, due), expected_wall, "{name}");
            assert_eq!(calendar.working_minutes_between(opened, due), 60, "{name}");
        }
        // The spring Monday deadline is one real hour closer than its wall clock
        // suggests: 09:30 CEST is 07:30 UTC where the Friday was 15:30 UTC.
        let calendar = office_hours("Europe/Berlin", &[]);
        assert_eq!(
            calendar
                .add_working_minutes(at_utc(2026, 3, 27, 15, 30), 60)
                .unwrap(),
            at_utc(2026, 3, 30, 7, 30)
        );
    }

    #[test]
    fn period_starting_in_the_spring_forward_gap_starts_after_the_gap() {
        // Sunday 29 March 2026 in Berlin: 02:00-03:00 does not exist.
        let mut periods: [Vec<Period>; 7] = Default::default();
        periods[6] = vec![Period::hm(2, 30, 4, 0)];
        let calendar = calendar("Europe/Berlin", periods, &[]);
        let saturday_evening = at_local(Berlin, 2026, 3, 28, 22, 0);
        // 03:00 CEST, the first instant after the gap, is 01:00 UTC.
        assert!(!calendar.is_working(at_utc(2026, 3, 29, 0, 59)));
        assert!(calendar.is_working(at_utc(2026, 3, 29, 1, 0)));
        assert_eq!(
            calendar.add_working_minutes(saturday_evening, 1).unwrap(),
            at_utc(2026, 3, 29, 1, 1)
        );
        assert_eq!(
            calendar.add_working_minutes(saturday_evening, 60).unwrap(),
            at_utc(2026, 3, 29, 2, 0)
        );
        // Only the hour 03:00-04:00 exists.
        assert_eq!(
            calendar.working_minutes_between(saturday_evening, at_utc(2026, 3, 30, 0, 0)),
            60
        );
    }

    #[test]
    fn repeated_fall_back_hour_is_worked_each_time() {
        // Sunday 25 October 2026 in Berlin: 02:00-03:00 happens in CEST, then CET.
        let mut periods: [Vec<Period>; 7] = Default::default();
        periods[6] = vec![Period::hm(2, 0, 2, 30)];
        let calendar = calendar("Europe/Berlin", periods, &[]);
        let saturday_evening = at_local(Berlin, 2026, 10, 24, 22, 0);
        // The earliest 02:00 is 00:00 UTC (CEST), the second 01:00 UTC (CET).
        assert_eq!(
            calendar.add_working_minutes(saturday_evening, 1).unwrap(),
            at_utc(2026, 10, 25, 0, 1)
        );
        assert_eq!(
            calendar.add_working_minutes(saturday_evening, 30).unwrap(),
            at_utc(2026, 10, 25, 0, 30)
        );
        assert_eq!(
            calendar.add_working_minutes(saturday_evening, 31).unwrap(),
            at_utc(2026, 10, 25, 1, 1)
        );
        assert!(!calendar.is_working(at_utc(2026, 10, 25, 0, 45)));
        assert_eq!(
            calendar.working_minutes_between(saturday_evening, at_utc(2026, 10, 26, 0, 0)),
            60
        );
    }

    #[test]
    fn always_open_calendar_is_utc_and_wall_clock() {
        let calendar = BusinessCalendar::always("default");
        assert_eq!(calendar.name(), "default");
        assert_eq!(calendar.time_zone(), Tz::UTC);
        assert!(calendar.is_always_open());
        let start = at_utc(2026, 3, 29, 0, 30) + Duration::nanoseconds(123_456_789);
        assert_eq!(
            calendar.add_working_minutes(start, 7200).unwrap(),
            start + Duration::minutes(7200)
        );
    }

    #[test]
    fn target_beyond_the_horizon_is_an_error() {
        let start = at_utc(2026, 1, 1, 0, 0);
        // Closed for more than ten years.
        let closed: Vec<NaiveDate> = (0..SEARCH_HORIZON_DAYS + 10)
            .map(|day| date(2025, 12, 31) + Duration::days(day))
            .collect();
        let calendar = office_hours("Europe/Berlin", &closed);
        assert_eq!(
            calendar.add_working_minutes(start, 1),
            Err(DeadlineBeyondHorizon { start, minutes: 1 })
        );
        // The always-open shortcut keeps the same horizon.
        let always = BusinessCalendar::always("default");
        let ten_years = u32::try_from(SEARCH_HORIZON_DAYS * 1440).unwrap();
        assert!(always.add_working_minutes(start, ten_years).is_ok());
        assert!(always.add_working_minutes(start, ten_years + 1).is_err());
        assert!(
            local_24x7_walked("UTC")
                .add_working_minutes(start, ten_years)
                .is_ok()
        );
        assert!(
            local_24x7_walked("UTC")
                .add_working_minutes(start, ten_years + 1)
                .is_err()
        );
    }

    #[test]
    fn long_targets_walk_by_period() {
        // About eight years of office hours; a minute-by-minute walk would take
        // millions of steps.
        let calendar = office_hours("America/New_York", &[]);
        let start = at_utc(2026, 1, 1, 0, 0);
        let due = calendar.add_working_minutes(start, 1_000_000).unwrap();
        assert_eq!(calendar.working_minutes_between(start, due), 1_000_000);
        assert_eq!(due.with_timezone(&New_York).second(), 0);
    }

    #[test]
    fn periods_given_in_any_order_are_sorted() {
        let calendar = calendar(
            "UTC",
            weekdays(vec![Period::hm(13, 0, 17, 0), Period::hm(9, 0, 12, 0)]),
            &[],
        );
        assert_eq!(
            calendar.periods(Weekday::Mon),
            &[Period::hm(9, 0, 12, 0), Period::hm(13, 0, 17, 0)]
        );
        assert!(calendar.periods(Weekday::Sun).is_empty());
    }

    #[test]
    fn adjacent_periods_are_valid_and_seamless() {
        let calendar = calendar(
            "UTC",
            std::array::from_fn(|_| vec![Period::hm(12, 0, 24, 0), Period::hm(0, 0, 12, 0)]),
            &[],
        );
        assert!(calendar.is_always_open());
        let start = at_utc(2026, 5, 1, 11, 30);
        assert_eq!(
            calendar.add_working_minutes(start, 60).unwrap(),
            at_utc(2026, 5, 1, 12, 30)
        );
    }

    #[test]
    fn overlapping_periods_are_a_violation() {
        let mut periods: [Vec<Period>; 7] = Default::default();
        periods[2] = vec![Period::hm(9, 0, 12, 0), Period::hm(11, 0, 14, 0)];
        assert_eq!(
            violation_fields(&definition("Europe/Berlin", periods)),
            [(
                "periods[2][1]".to_owned(),
                "overlaps periods[2][0]".to_owned()
            )]
        );
    }

    #[test]
    fn period_must_start_before_it_ends_and_end_by_midnight() {
        let mut periods: [Vec<Period>; 7] = Default::default();
        periods[0] = vec![
            Period::hm(17, 0, 9, 0),
            Period::hm(10, 0, 10, 0),
            Period::new(1380, 1500),
            Period::hm(9, 0, 17, 0),
        ];
        assert_eq!(
            violation_fields(&definition("Europe/Berlin", periods)),
            [
                (
                    "periods[0][0]".to_owned(),
                    "start 17:00 is not before end 09:00".to_owned()
                ),
                (
                    "periods[0][1]".to_owned(),
                    "start 10:00 is not before end 10:00".to_owned()
                ),
                (
                    "periods[0][2]".to_owned(),
                    "end minute 1500 is past the end of the day (1440)".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn unknown_time_zone_is_a_violation() {
        assert_eq!(
            violation_fields(&definition(
                "Mars/Base",
                weekdays(vec![Period::hm(9, 0, 17, 0)])
            )),
            [(
                "time_zone".to_owned(),
                "unknown time zone \"Mars/Base\"".to_owned()
            )]
        );
    }

    #[test]
    fn calendar_without_working_time_is_a_violation() {
        let fields = violation_fields(&definition("UTC", Default::default()));
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].0, "periods");
        assert!(fields[0].1.starts_with("no working time"));
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let mut definition = definition("Mars/Base", Default::default());
        definition.name = " ".to_owned();
        let error = BusinessCalendar::new(definition).unwrap_err();
        let fields: Vec<&str> = error.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["name", "time_zone", "periods"]);
        assert_eq!(
            error.to_string(),
            "invalid business calendar: name: must not be blank; \
             time_zone: unknown time zone \"Mars/Base\"; \
             periods: no working time on any weekday, so no deadline would ever arrive"
        );
    }

    #[test]
    fn serde_round_trips_and_validates() {
        let calendar = office_hours("America/New_York", &[date(2026, 12, 25)]);
        let json = serde_json::to_value(&calendar).unwrap();
        assert_eq!(json["time_zone"], "America/New_York");
        assert_eq!(json["holidays"][0], "2026-12-25");
        assert_eq!(json["periods"][0][0]["start_minute"], 540);
        let back: BusinessCalendar = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, calendar);

        let mut unknown_zone = json;
        unknown_zone["time_zone"] = "Mars/Base".into();
        let error = serde_json::from_value::<BusinessCalendar>(unknown_zone).unwrap_err();
        assert!(error.to_string().contains("unknown time zone"), "{error}");
    }

    // Property tests against a deliberately naive model: one minute at a time, each
    // judged by its local wall clock.

    const ZONES: [&str; 5] = [
        "Europe/Berlin",
        "America/New_York",
        "Asia/Shanghai",
        "Australia/Lord_Howe",
        "UTC",
    ];

    /// Days around which the zones above change offset in 2026.
    const DST_DAYS: [(u32, u32); 6] = [(3, 8), (3, 29), (4, 5), (10, 4), (10, 25), (11, 1)];

    /// How far the model walks before giving up, in minutes.
    const REFERENCE_LIMIT: u32 = 28 * 1440;

    fn reference_is_working(
        zone: Tz,
        periods: &[Vec<Period>; 7],
        holidays: &BTreeSet<NaiveDate>,
        at: DateTime<Utc>,
    ) -> bool {
        let local = at.with_timezone(&zone);
        if holidays.contains(&local.date_naive()) {
            return false;
        }
        let minute = u16::try_from(local.hour() * 60 + local.minute()).unwrap();
        periods[local.weekday().num_days_from_monday() as usize]
            .iter()
            .any(|p| p.start_minute <= minute && minute < p.end_minute)
    }

    /// The deadline, or the working minutes counted within the walk's limit.
    fn reference_deadline(
        zone: Tz,
        periods: &[Vec<Period>; 7],
        holidays: &BTreeSet<NaiveDate>,
        start: DateTime<Utc>,
        minutes: u32,
    ) -> Result<DateTime<Utc>, u32> {
        if minutes == 0 {
            return Ok(start);
        }
        let mut counted = 0;
        let mut at = start;
        for _ in 0..REFERENCE_LIMIT {
            let next = at + Duration::minutes(1);
            if reference_is_working(zone, periods, holidays, at) {
                counted += 1;
                if counted == minutes {
                    return Ok(next);
                }
            }
            at = next;
        }
        Err(counted)
    }

    fn day_periods() -> impl Strategy<Value = Vec<Period>> {
        (0usize..=3)
            .prop_flat_map(|count| proptest::collection::btree_set(0u16..=96, count * 2))
            .prop_map(|bounds| {
                let bounds: Vec<u16> = bounds.into_iter().collect();
                bounds
                    .chunks(2)
                    .map(|pair| Period::new(pair[0] * 15, pair[1] * 15))
                    .collect()
            })
    }

    fn week_periods() -> impl Strategy<Value = [Vec<Period>; 7]> {
        (proptest::array::uniform7(day_periods()), any::<bool>()).prop_map(
            |(mut week, reversed)| {
                if week.iter().all(Vec::is_empty) {
                    week[0] = vec![Period::hm(9, 0, 17, 0)];
                }
                if reversed {
                    for day in &mut week {
                        day.reverse();
                    }
                }
                week
            },
        )
    }

    fn start_2026() -> impl Strategy<Value = DateTime<Utc>> {
        let year_start = at_utc(2026, 1, 1, 0, 0);
        prop_oneof![
            (0i64..365 * 1440).prop_map(move |minute| year_start + Duration::minutes(minute)),
            (
                proptest::sample::select(DST_DAYS.to_vec()),
                -5 * 1440i64..2 * 1440
            )
                .prop_map(|((month, day), minute)| at_utc(2026, month, day, 0, 0)
                    + Duration::minutes(minute)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 200,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn add_working_minutes_matches_a_minute_by_minute_walk(
            zone_index in 0..ZONES.len(),
            periods in week_periods(),
            start in start_2026(),
            holiday_offsets in proptest::collection::vec(-1i64..21, 0..=5),
            minutes in 0u32..=3000,
            probe_seconds in 0i64..3 * 86_400,
        ) {
            let zone: Tz = ZONES[zone_index].parse().unwrap();
            let holidays: BTreeSet<NaiveDate> = holiday_offsets
                .iter()
                .map(|offset| start.date_naive() + Duration::days(*offset))
                .collect();
            let mut definition = definition(ZONES[zone_index], periods.clone());
            definition.holidays = holidays.clone();
            let calendar = BusinessCalendar::new(definition).unwrap();

            let due = calendar.add_working_minutes(start, minutes).unwrap();
            match reference_deadline(zone, &periods, &holidays, start, minutes) {
                Ok(expected) => prop_assert_eq!(due, expected),
                Err(counted) => {
                    let walked = start + Duration::minutes(i64::from(REFERENCE_LIMIT));
                    prop_assert!(due > walked);
                    prop_assert_eq!(
                        calendar.working_minutes_between(start, walked),
                        i64::from(counted)
                    );
                }
            }
            prop_assert_eq!(
                calendar.working_minutes_between(start, due),
                i64::from(minutes)
            );

            let probe = start + Duration::seconds(probe_seconds);
            prop_assert_eq!(
                calendar.is_working(probe),
                reference_is_working(zone, &periods, &holidays, probe)
            );
        }

        #[test]
        fn always_open_is_wall_clock_and_between_inverts_add(
            start_seconds in 1_700_000_000i64..1_900_000_000,
            nanos in 0u32..1_000_000_000,
            minutes in 0u32..=200_000,
        ) {
            let start = DateTime::from_timestamp(start_seconds, nanos).unwrap();
            let calendar = BusinessCalendar::always("default");
            let due = calendar.add_working_minutes(start, minutes).unwrap();
            prop_assert_eq!(due, start + Duration::minutes(i64::from(minutes)));
            prop_assert_eq!(calendar.working_minutes_between(start, due), i64::from(minutes));
        }

        #[test]
        fn between_inverts_add_for_office_hours(
            zone_index in 0..ZONES.len(),
            start_seconds in 1_767_225_600i64..1_798_761_600,
            nanos in 0u32..1_000_000_000,
            minutes in 0u32..=20_000,
        ) {
            let start = DateTime::from_timestamp(start_seconds, nanos).unwrap();
            let calendar = calendar(
                ZONES[zone_index],
                weekdays(vec![Period::hm(8, 0, 12, 15), Period::hm(13, 0, 17, 45)]),
                &[date(2026, 5, 1), date(2026, 12, 25)],
            );
            let due = calendar.add_working_minutes(start, minutes).unwrap();
            prop_assert_eq!(calendar.working_minutes_between(start, due), i64::from(minutes));
            if minutes > 0 {
                prop_assert!(calendar.is_working(due - Duration::nanoseconds(1)));
                prop_assert_eq!(
                    calendar.working_minutes_between(start, due - Duration::seconds(1)),
                    i64::from(minutes) - 1
                );
            }
        }
    }
}
