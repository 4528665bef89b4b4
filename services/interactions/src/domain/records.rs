//! Interactions (contact history) and satisfaction surveys.

use chrono::{DateTime, Utc};
use retention_errors::FieldViolations;

use super::enums::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub id: String,
    pub customer_id: String,
    pub channel: Channel,
    pub direction: Direction,
    pub kind: Option<CommunicationKind>,
    pub purchase_phase: Option<PurchasePhase>,
    pub agent: String,
    pub summary: String,
    pub occur_time: DateTime<Utc>,
    pub complaint_id: Option<String>,
}

impl Interaction {
    pub fn validate(&self, prefix: &str, now: DateTime<Utc>) -> FieldViolations {
        let mut v = FieldViolations::new();
        check_text(&mut v, &format!("{prefix}.agent"), &self.agent, 128);
        check_text(&mut v, &format!("{prefix}.summary"), &self.summary, 4000);
        v.check(
            self.occur_time <= now + chrono::Duration::days(1),
            format!("{prefix}.occur_time"),
            "must not be in the future",
        );
        v
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survey {
    pub id: String,
    pub customer_id: String,
    pub complaint_id: Option<String>,
    /// 1..=5, None when not asked.
    pub csat: Option<i32>,
    /// 0..=10.
    pub nps: Option<i32>,
    /// Both 1..=10 or both absent: satisfaction = perceived - expectation.
    pub expectation: Option<i32>,
    pub perceived: Option<i32>,
    pub occur_time: DateTime<Utc>,
}

impl Survey {
    pub fn validate(&self, prefix: &str) -> FieldViolations {
        let mut v = FieldViolations::new();
        let f = |n: &str| format!("{prefix}.{n}");
        if let Some(c) = self.csat {
            v.check(
                (1..=5).contains(&c),
                f("csat"),
                "must be between 1 and 5 (0 = not asked)",
            );
        }
        if let Some(n) = self.nps {
            v.check((0..=10).contains(&n), f("nps"), "must be between 0 and 10");
        }
        for (name, x) in [
            ("expectation", self.expectation),
            ("perceived", self.perceived),
        ] {
            if let Some(x) = x {
                v.check(
                    (1..=10).contains(&x),
                    f(name),
                    "must be between 1 and 10 (0 = not asked)",
                );
            }
        }
        v.check(
            self.expectation.is_some() == self.perceived.is_some(),
            f("perceived"),
            "expectation and perceived are given together",
        );
        v.check(
            self.csat.is_some() || self.nps.is_some() || self.expectation.is_some(),
            f("csat"),
            "a survey needs at least one of csat, nps or expectation/perceived",
        );
        v
    }

    /// Perceived performance minus expectation (DOMAIN §6): < 0 dissatisfied,
    /// 0 satisfied, > 0 delighted.
    pub fn expectation_gap(&self) -> Option<i32> {
        Some(self.perceived? - self.expectation?)
    }
}

pub fn check_text(v: &mut FieldViolations, field: &str, s: &str, max: usize) {
    let n = s.chars().count();
    if n > max {
        v.add(field, format!("must be at most {max} characters (got {n})"));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        v.add(field, "must not contain control characters");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn survey() -> Survey {
        Survey {
            id: "s".into(),
            customer_id: "c".into(),
            complaint_id: None,
            csat: Some(4),
            nps: Some(9),
            expectation: Some(8),
            perceived: Some(6),
            occur_time: Utc::now(),
        }
    }

    #[test]
    fn surveys_are_range_checked() {
        assert!(survey().validate("survey").is_empty());
        assert_eq!(survey().expectation_gap(), Some(-2));
        let bad = Survey {
            csat: Some(6),
            nps: Some(11),
            expectation: Some(0),
            perceived: None,
            ..survey()
        };
        let fields: Vec<String> = bad
            .validate("survey")
            .iter()
            .map(|(f, _)| f.to_string())
            .collect();
        assert_eq!(
            fields,
            vec![
                "survey.csat",
                "survey.nps",
                "survey.expectation",
                "survey.perceived"
            ]
        );
        let empty = Survey {
            csat: None,
            nps: None,
            expectation: None,
            perceived: None,
            ..survey()
        };
        assert_eq!(empty.validate("survey").len(), 1);
    }
}
