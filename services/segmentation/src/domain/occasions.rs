//! Purchase occasions. The BG/NBD and Gamma-Gamma models count *repeat purchase
//! occasions*, not orders: all orders of a customer in one calendar period (a day
//! by default) are one occasion whose margin is their sum, as in Fader, Hardie &
//! Lee (2005), `lifetimes` (`summary_data_from_transaction_data`, `freq="D"`) and
//! PyMC-Marketing. Three orders placed at one checkout are one decision to buy.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use chrono_tz::Tz;

/// The calendar period one occasion covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OccasionPeriod {
    #[default]
    Day,
    /// Monday to Sunday.
    Week,
}

impl OccasionPeriod {
    pub fn days(self) -> i32 {
        match self {
            OccasionPeriod::Day => 1,
            OccasionPeriod::Week => 7,
        }
    }
}

/// Numbers the periods of the business's calendar, so that two orders share an
/// occasion exactly when they share a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OccasionClock {
    pub time_zone: Tz,
    pub period: OccasionPeriod,
}

impl Default for OccasionClock {
    fn default() -> Self {
        OccasionClock {
            time_zone: Tz::UTC,
            period: OccasionPeriod::Day,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error("unknown time zone {0}")]
    TimeZone(String),
    #[error("unknown occasion period {0}: day or week")]
    Period(String),
}

impl OccasionClock {
    /// From `scoring.time_zone` and `scoring.occasion_period`.
    pub fn new(time_zone: &str, period: &str) -> Result<OccasionClock, ClockError> {
        let time_zone =
            Tz::from_str(time_zone).map_err(|_| ClockError::TimeZone(time_zone.into()))?;
        let period = match period {
            "day" => OccasionPeriod::Day,
            "week" => OccasionPeriod::Week,
            other => return Err(ClockError::Period(other.into())),
        };
        Ok(OccasionClock { time_zone, period })
    }

    /// The period `t` falls in: local days since 1970-01-01, or weeks since the
    /// Monday before it.
    pub fn index(&self, t: DateTime<Utc>) -> i32 {
        // 1970-01-01 is day 719,163 of the proleptic Gregorian calendar.
        let day = t.with_timezone(&self.time_zone).num_days_from_ce() - 719_163;
        match self.period {
            OccasionPeriod::Day => day,
            // 1970-01-01 was a Thursday: three days after a Monday.
            OccasionPeriod::Week => (day + 3).div_euclid(7),
        }
    }

    /// When period `index` begins, in UTC (local midnight; at a daylight-saving
    /// gap, the first instant of the day that exists).
    pub fn period_start(&self, index: i32) -> DateTime<Utc> {
        let day = match self.period {
            OccasionPeriod::Day => index,
            OccasionPeriod::Week => index * 7 - 3,
        };
        let date = chrono::NaiveDate::from_num_days_from_ce_opt(day + 719_163)
            .unwrap_or(chrono::NaiveDate::MIN);
        let local = date.and_hms_opt(0, 0, 0).unwrap_or_default();
        match self.time_zone.from_local_datetime(&local) {
            chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
                t.with_timezone(&Utc)
            }
            chrono::LocalResult::None => {
                (local + chrono::Duration::hours(1)).and_utc() - self.offset_at(local)
            }
        }
    }

    fn offset_at(&self, local: chrono::NaiveDateTime) -> chrono::Duration {
        use chrono::Offset;
        let utc = local.and_utc();
        let offset = self.time_zone.offset_from_utc_datetime(&utc.naive_utc());
        chrono::Duration::seconds(i64::from(offset.fix().local_minus_utc()))
    }

    /// Days in one period.
    pub fn period_days(&self) -> f64 {
        f64::from(self.period.days())
    }
}

/// The name a feature row keeps, to tell occasions numbered by another clock.
impl fmt::Display for OccasionClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let period = match self.period {
            OccasionPeriod::Day => "day",
            OccasionPeriod::Week => "week",
        };
        write!(f, "{period}@{}", self.time_zone.name())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    #[test]
    fn days_are_numbered_in_the_business_time_zone() {
        let utc_clock = OccasionClock::default();
        assert_eq!(utc_clock.index(utc(1970, 1, 1, 0)), 0);
        assert_eq!(utc_clock.index(utc(1970, 1, 2, 23)), 1);
        assert_eq!(utc_clock.index(utc(1969, 12, 31, 23)), -1);
        let shanghai = OccasionClock::new("Asia/Shanghai", "day").unwrap();
        // 17:00 UTC is 01:00 the next day in Shanghai (UTC+8).
        assert_eq!(
            shanghai.index(utc(2026, 3, 1, 17)),
            utc_clock.index(utc(2026, 3, 1, 17)) + 1
        );
        assert_eq!(
            shanghai.index(utc(2026, 3, 1, 15)),
            utc_clock.index(utc(2026, 3, 1, 15))
        );
        assert_eq!(shanghai.to_string(), "day@Asia/Shanghai");
        let d = shanghai.index(utc(2026, 3, 1, 17));
        assert_eq!(
            shanghai.period_start(d),
            utc(2026, 3, 1, 16),
            "midnight in Shanghai"
        );
        assert_eq!(shanghai.index(shanghai.period_start(d)), d);
    }

    #[test]
    fn weeks_run_monday_to_sunday() {
        let weeks = OccasionClock::new("UTC", "week").unwrap();
        // 2026-11-30 is a Monday, 2026-12-06 the Sunday after.
        let monday = weeks.index(utc(2026, 11, 30, 0));
        assert_eq!(weeks.index(utc(2026, 12, 6, 23)), monday);
        assert_eq!(weeks.index(utc(2026, 12, 7, 0)), monday + 1);
        assert_eq!(weeks.index(utc(2026, 11, 29, 23)), monday - 1);
        assert_eq!(weeks.period_days(), 7.0);
        assert_eq!(weeks.period_start(monday), utc(2026, 11, 30, 0));
    }

    #[test]
    fn unknown_names_are_refused() {
        assert_eq!(
            OccasionClock::new("Mars/Olympus", "day"),
            Err(ClockError::TimeZone("Mars/Olympus".into()))
        );
        assert_eq!(
            OccasionClock::new("UTC", "month"),
            Err(ClockError::Period("month".into()))
        );
    }
}
