//! Won-back attribution: a target who buys inside the campaign's win window is won
//! back, treated and control alike (the control group shows what would have
//! happened anyway). Each target is won back at most once, by its first purchase
//! in the window.

use chrono::{DateTime, Duration, Utc};

use super::targeting::Arm;

/// What attribution needs of one target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetWindow {
    pub arm: Arm,
    /// When the window opened: the offer's dispatch for treated targets, the
    /// launch for control targets (they get no offer).
    pub start: DateTime<Utc>,
    pub win_window_days: u32,
    pub won_back_time: Option<DateTime<Utc>>,
}

impl TargetWindow {
    pub fn deadline(&self) -> DateTime<Utc> {
        self.start + Duration::days(i64::from(self.win_window_days))
    }

    /// Whether a purchase at `at` wins this target back: strictly after the window
    /// opened (a purchase already under way is not the campaign's doing), at the
    /// latest on the deadline, and not already won back.
    pub fn wins(&self, at: DateTime<Utc>) -> bool {
        self.won_back_time.is_none() && at > self.start && at <= self.deadline()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn window(arm: Arm) -> TargetWindow {
        TargetWindow {
            arm,
            start: Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap(),
            win_window_days: 30,
            won_back_time: None,
        }
    }

    #[test]
    fn purchases_inside_the_window_win_back_treated_and_control_alike() {
        for arm in [Arm::Treated, Arm::Control] {
            let w = window(arm);
            let day = |d: i64| w.start + Duration::days(d);
            assert!(
                !w.wins(w.start),
                "at dispatch: not yet the campaign's doing"
            );
            assert!(!w.wins(day(-1)), "before the window");
            assert!(w.wins(w.start + Duration::seconds(1)));
            assert!(w.wins(day(30)), "on the deadline");
            assert!(
                !w.wins(day(30) + Duration::seconds(1)),
                "after the deadline"
            );
        }
    }

    #[test]
    fn a_target_is_won_back_once() {
        let mut w = window(Arm::Treated);
        let first = w.start + Duration::days(3);
        assert!(w.wins(first));
        w.won_back_time = Some(first);
        assert!(!w.wins(first + Duration::days(1)));
    }
}
