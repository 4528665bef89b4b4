//! User-defined segments, scoring runs, and the membership rule: a customer is in a
//! segment exactly when the segment's filter holds on their latest insight.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use retention_domain::domain_enum;
use retention_errors::FieldViolations;
use retention_filter::Expr;

use super::filter::insight_schema;
use super::scoring::Insight;

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub id: String,
    pub display_name: String,
    pub description: String,
    pub filter: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub version: i64,
}

impl Segment {
    pub fn name(&self) -> String {
        format!("segments/{}", self.id)
    }

    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

pub const MAX_DISPLAY_NAME: usize = 200;
pub const MAX_DESCRIPTION: usize = 2_000;

/// Checks a segment's editable fields; returns the parsed filter.
pub fn validate_segment(
    display_name: &str,
    description: &str,
    filter: &str,
    prefix: &str,
    v: &mut FieldViolations,
) -> Option<Expr> {
    if display_name.trim().is_empty() {
        v.add(format!("{prefix}display_name"), "is required");
    } else if display_name.chars().count() > MAX_DISPLAY_NAME {
        v.add(
            format!("{prefix}display_name"),
            format!("at most {MAX_DISPLAY_NAME} characters"),
        );
    }
    if description.chars().count() > MAX_DESCRIPTION {
        v.add(
            format!("{prefix}description"),
            format!("at most {MAX_DESCRIPTION} characters"),
        );
    }
    if filter.trim().is_empty() {
        v.add(
            format!("{prefix}filter"),
            "is required: a segment is defined by its filter",
        );
        return None;
    }
    match retention_filter::parse_and_check(filter, &insight_schema()) {
        Ok(expr) => expr,
        Err(e) => {
            v.add(format!("{prefix}filter"), e.to_string());
            None
        }
    }
}

/// A segment with its filter parsed, ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledSegment {
    pub id: String,
    pub filter: Expr,
}

impl CompiledSegment {
    /// None for a stored filter that no longer parses (it was valid when saved; a
    /// schema change could break it): such a segment keeps its members unchanged.
    pub fn compile(s: &Segment) -> Option<CompiledSegment> {
        retention_filter::parse_and_check(&s.filter, &insight_schema())
            .ok()
            .flatten()
            .map(|filter| CompiledSegment {
                id: s.id.clone(),
                filter,
            })
    }
}

/// Segments entered and left when a customer's insight becomes `insight`, given the
/// segments they are in now.
pub fn membership_changes(
    segments: &[CompiledSegment],
    insight: &Insight,
    current: &BTreeSet<String>,
) -> (Vec<String>, Vec<String>) {
    let mut entered = Vec::new();
    let mut left = Vec::new();
    for s in segments {
        match (insight_matches(s, insight), current.contains(&s.id)) {
            (true, false) => entered.push(s.id.clone()),
            (false, true) => left.push(s.id.clone()),
            _ => {}
        }
    }
    (entered, left)
}

pub fn insight_matches(s: &CompiledSegment, insight: &Insight) -> bool {
    s.filter.eval(insight)
}

domain_enum!(RunState {
    Pending = "PENDING",
    Running = "RUNNING",
    Succeeded = "SUCCEEDED",
    Failed = "FAILED",
});

/// A full recompute, as an operation resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoringRun {
    pub id: String,
    pub state: RunState,
    pub percent_complete: i32,
    pub stage: String,
    pub customers_scored: i64,
    pub create_time: DateTime<Utc>,
    pub end_time: Option<DateTime<Utc>>,
    pub error: String,
    /// Set on a backtest: the end of its calibration period.
    pub observation_end: Option<DateTime<Utc>>,
    /// A succeeded backtest's report.
    pub backtest: Option<super::backtest::BacktestReport>,
}

impl ScoringRun {
    pub fn name(&self) -> String {
        format!("scoringRuns/{}", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::classify::*;
    use crate::domain::scoring::*;
    use crate::domain::value::ChurnRisk;

    fn insight(p_alive: f64, tier: ValueTier) -> Insight {
        Insight {
            customer_id: "c1".into(),
            rfm: None,
            value_tier: tier,
            management_tier: ManagementTier::Ordinary,
            lifecycle_stage: LifecycleStage::Stability,
            loyalty_stage: LoyaltyStage::Client,
            order_model: OrderModel {
                order_type: 1,
                loyalty_size_rank: 1,
                loyalty_credit_rank: 1,
                size_tier: SizeTier::Small,
                wallet_stability: WalletStability::Stable,
            },
            account_quadrant: AccountQuadrant::Maintenance,
            p_alive,
            expected_purchases: 1.0,
            churn_probability: 1.0 - p_alive,
            churn_risk: ChurnRisk::Low,
            predicted_clv_minor: 0,
            retained_clv_minor: 0,
            historical_margin_minor: 0,
            currency: String::new(),
            purchases: 3,
            complaints_open: 0,
            complaints_breached: 0,
            mean_csat: None,
            explanations: vec![],
            score_time: Utc::now(),
            scoring_run: "r".into(),
        }
    }

    fn seg(id: &str, filter: &str) -> CompiledSegment {
        let mut v = FieldViolations::default();
        let filter = validate_segment("x", "", filter, "segment.", &mut v).unwrap();
        assert!(v.is_empty());
        CompiledSegment {
            id: id.into(),
            filter,
        }
    }

    #[test]
    fn enter_and_exit_follow_the_filter() {
        let at_risk = seg(
            "risky",
            r#"churn_probability > 0.7 && value_tier in ["PLATINUM", "GOLD"]"#,
        );
        let segs = [at_risk];
        let none = BTreeSet::new();
        let member: BTreeSet<String> = ["risky".to_string()].into();
        let i = insight(0.2, ValueTier::Gold);
        assert_eq!(
            membership_changes(&segs, &i, &none),
            (vec!["risky".into()], vec![])
        );
        assert_eq!(membership_changes(&segs, &i, &member), (vec![], vec![]));
        let i = insight(0.3, ValueTier::Gold); // churn probability exactly 0.7: not > 0.7
        assert_eq!(
            membership_changes(&segs, &i, &member),
            (vec![], vec!["risky".into()])
        );
        let i = insight(0.2, ValueTier::Iron);
        assert_eq!(
            membership_changes(&segs, &i, &member).1,
            vec!["risky".to_string()]
        );
    }

    #[test]
    fn invalid_segments_name_the_field() {
        let mut v = FieldViolations::default();
        assert!(validate_segment("", "", "p_alive >", "segment.", &mut v).is_none());
        let fields: Vec<String> = v.iter().map(|(f, _)| f.to_string()).collect();
        assert_eq!(fields, vec!["segment.display_name", "segment.filter"]);
        let mut v = FieldViolations::default();
        validate_segment("ok", "", "", "segment.", &mut v);
        assert_eq!(v.len(), 1, "a filter is required");
    }
}
