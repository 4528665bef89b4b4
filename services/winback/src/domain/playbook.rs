//! RecommendRetentionActions: the playbook of DOMAIN §1, §2, §8 and §9 applied to
//! one customer's situation. Every action says why it was chosen.

use super::campaign::Strategy;
use super::churn::ChurnType;

/// What the suite knows about the customer (names as segmentation publishes them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Situation {
    /// "EXPLORATION", "GROWTH", "STABILITY", "DECLINE", "TERMINATED".
    pub lifecycle_stage: String,
    /// "PLATINUM", "GOLD", "IRON", "LEAD".
    pub value_tier: String,
    /// "LOW", "MEDIUM", "HIGH", "CRITICAL".
    pub churn_risk: String,
    pub open_complaints: u32,
    /// Set once the customer has churned.
    pub churn_type: Option<ChurnType>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub action: &'static str,
    pub reason: String,
    pub strategy: Strategy,
}

fn act(action: &'static str, strategy: Strategy, reason: impl Into<String>) -> Action {
    Action {
        action,
        reason: reason.into(),
        strategy,
    }
}

/// Actions in order of urgency: open complaints first (they are where churn starts),
/// then the churn type's countermeasure, then the lifecycle stage's focus. Lead
/// customers (unprofitable) get no paid offers, malicious churners nothing.
pub fn recommend(s: &Situation) -> Vec<Action> {
    let mut out = Vec::new();
    if s.churn_type == Some(ChurnType::Malicious) {
        return vec![act(
            "NO_WIN_BACK",
            Strategy::StructuralTie,
            "malicious churn (fraud or deliberate default): credit checks or prepayment, never a win-back offer",
        )];
    }
    let valuable = matches!(s.value_tier.as_str(), "PLATINUM" | "GOLD");
    let unprofitable = s.value_tier == "LEAD";
    if s.open_complaints > 0 {
        out.push(act(
            "RESOLVE_OPEN_COMPLAINTS",
            Strategy::ServiceRecovery,
            format!(
                "{} open complaint(s): complaints are the first source of churn causes; resolve them promptly",
                s.open_complaints
            ),
        ));
    }
    match s.churn_type {
        Some(ChurnType::Fault) | Some(ChurnType::Retaliatory) => out.push(act(
            "SERVICE_RECOVERY_CALL",
            Strategy::ServiceRecovery,
            "left because of our failings: apologise, fix the cause, then invite back",
        )),
        Some(ChurnType::Competitive) if valuable => out.push(act(
            "PERSONALISED_WIN_BACK_OFFER",
            Strategy::RelationshipInvestment,
            "a profitable customer poached by a competitor: a personal, relationship-based offer lasts longer than a price cut",
        )),
        Some(ChurnType::Competitive) => out.push(act(
            "MATCH_OFFER_ONCE",
            Strategy::PricePromotion,
            "poached on price: a one-off matching offer, since a price promotion wins back fast but does not keep",
        )),
        Some(ChurnType::NonMalicious) => out.push(act(
            "PAYMENT_REMINDER",
            Strategy::ServiceRecovery,
            "involuntary loss (e.g. a missed payment): remind and make paying easy",
        )),
        Some(ChurnType::Natural) => out.push(act(
            "OFFER_NEAREST_CHANNEL",
            Strategy::StructuralTie,
            "moved or needs changed: point to the nearest outlet or another channel",
        )),
        Some(ChurnType::Malicious) | None => {}
    }
    if s.churn_type.is_none() {
        match s.lifecycle_stage.as_str() {
            "EXPLORATION" => out.push(act(
                "WELCOME_AND_ONBOARD",
                Strategy::RelationshipInvestment,
                "exploration stage: attract and build the relationship",
            )),
            "GROWTH" => out.push(act(
                "CROSS_SELL",
                Strategy::RelationshipInvestment,
                "growth stage: raise value with cross-sell and up-sell",
            )),
            "STABILITY" => out.push(act(
                "LOYALTY_PROGRAMME",
                Strategy::StructuralTie,
                "stability stage: the most profitable; raise satisfaction and extend the stage",
            )),
            "DECLINE" if valuable => out.push(act(
                "PERSONAL_OUTREACH",
                Strategy::RelationshipInvestment,
                "a valuable customer in decline: detect early and recover with personal contact",
            )),
            "DECLINE" => out.push(act(
                "DECIDE_WORTH_KEEPING",
                Strategy::ServiceRecovery,
                "decline stage, not among the most valuable: decide whether to recover or let go",
            )),
            "TERMINATED" if valuable => out.push(act(
                "RECORD_CHURN_AND_WIN_BACK",
                Strategy::RelationshipInvestment,
                "the relationship ended for a profitable customer: record why and plan a win-back",
            )),
            _ => {}
        }
        if matches!(s.churn_risk.as_str(), "HIGH" | "CRITICAL") && !unprofitable {
            out.push(act(
                "RETENTION_OFFER",
                if valuable {
                    Strategy::RelationshipInvestment
                } else {
                    Strategy::PricePromotion
                },
                format!(
                    "churn risk {}: act before the customer leaves",
                    s.churn_risk
                ),
            ));
        }
    }
    if unprofitable {
        out.retain(|a| a.strategy != Strategy::PricePromotion);
        out.push(act(
            "STANDARD_SERVICE_ONLY",
            Strategy::ServiceRecovery,
            "lead tier (unprofitable): standard service, no paid offers",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &Situation) -> Vec<&'static str> {
        recommend(s).iter().map(|a| a.action).collect()
    }

    fn situation(stage: &str, tier: &str, risk: &str) -> Situation {
        Situation {
            lifecycle_stage: stage.into(),
            value_tier: tier.into(),
            churn_risk: risk.into(),
            ..Default::default()
        }
    }

    #[test]
    fn each_stage_gets_its_focus() {
        assert_eq!(
            names(&situation("EXPLORATION", "IRON", "LOW")),
            vec!["WELCOME_AND_ONBOARD"]
        );
        assert_eq!(
            names(&situation("GROWTH", "GOLD", "LOW")),
            vec!["CROSS_SELL"]
        );
        assert_eq!(
            names(&situation("STABILITY", "PLATINUM", "LOW")),
            vec!["LOYALTY_PROGRAMME"]
        );
        assert_eq!(
            names(&situation("DECLINE", "GOLD", "HIGH")),
            vec!["PERSONAL_OUTREACH", "RETENTION_OFFER"]
        );
        assert_eq!(
            names(&situation("DECLINE", "IRON", "LOW")),
            vec!["DECIDE_WORTH_KEEPING"]
        );
    }

    #[test]
    fn complaints_come_first_and_churn_types_bring_their_countermeasure() {
        let mut s = situation("TERMINATED", "GOLD", "CRITICAL");
        s.open_complaints = 2;
        s.churn_type = Some(ChurnType::Retaliatory);
        let a = recommend(&s);
        assert_eq!(a[0].action, "RESOLVE_OPEN_COMPLAINTS");
        assert!(a[0].reason.contains("2 open"));
        assert_eq!(a[1].action, "SERVICE_RECOVERY_CALL");
        s.open_complaints = 0;
        s.churn_type = Some(ChurnType::Competitive);
        assert_eq!(names(&s), vec!["PERSONALISED_WIN_BACK_OFFER"]);
        s.value_tier = "IRON".into();
        assert_eq!(names(&s), vec!["MATCH_OFFER_ONCE"]);
        s.churn_type = Some(ChurnType::NonMalicious);
        assert_eq!(names(&s), vec!["PAYMENT_REMINDER"]);
        s.churn_type = Some(ChurnType::Natural);
        assert_eq!(names(&s), vec!["OFFER_NEAREST_CHANNEL"]);
    }

    #[test]
    fn malicious_and_unprofitable_customers_get_no_offers() {
        let mut s = situation("TERMINATED", "PLATINUM", "CRITICAL");
        s.churn_type = Some(ChurnType::Malicious);
        assert_eq!(names(&s), vec!["NO_WIN_BACK"]);
        let lead = situation("DECLINE", "LEAD", "CRITICAL");
        let a = recommend(&lead);
        assert!(a.iter().all(|x| x.strategy != Strategy::PricePromotion));
        assert_eq!(a.last().unwrap().action, "STANDARD_SERVICE_ONLY");
        assert!(a.iter().all(|x| !x.reason.is_empty()));
    }
}
