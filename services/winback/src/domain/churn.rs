//! The churn taxonomy of DOMAIN §8 and the suggestion ClassifyChurn makes from the
//! signals the suite knows about a customer.

use retention_domain::domain_enum;

domain_enum!(
    /// Who ended the relationship.
    ChurnKind { Voluntary = "VOLUNTARY", Involuntary = "INVOLUNTARY" }
);

domain_enum!(
    /// DOMAIN §8: three voluntary and three involuntary types.
    ChurnType {
        Natural = "NATURAL",
        Competitive = "COMPETITIVE",
        Fault = "FAULT",
        NonMalicious = "NON_MALICIOUS",
        Retaliatory = "RETALIATORY",
        Malicious = "MALICIOUS",
    }
);

domain_enum!(
    /// Keaveney's switching causes, as reason codes on a churn record.
    ReasonCode {
        Pricing = "PRICING",
        Inconvenience = "INCONVENIENCE",
        CoreServiceFailure = "CORE_SERVICE_FAILURE",
        ServiceEncounterFailure = "SERVICE_ENCOUNTER_FAILURE",
        ResponseToFailure = "RESPONSE_TO_FAILURE",
        Competition = "COMPETITION",
        EthicalProblems = "ETHICAL_PROBLEMS",
        InvoluntarySwitching = "INVOLUNTARY_SWITCHING",
    }
);

impl ChurnType {
    pub fn kind(self) -> ChurnKind {
        match self {
            ChurnType::Natural | ChurnType::Competitive | ChurnType::Fault => ChurnKind::Voluntary,
            _ => ChurnKind::Involuntary,
        }
    }

    /// Malicious churners (fraud, deliberate default) are never won back.
    pub fn targetable(self) -> bool {
        self != ChurnType::Malicious
    }

    /// The countermeasure DOMAIN §8 gives for the type.
    pub fn countermeasure(self) -> &'static str {
        match self {
            ChurnType::Natural => "widen the network of outlets and branches",
            ChurnType::Competitive => "choose an offensive, defensive or withdrawal strategy",
            ChurnType::Fault => "fix the product, service or image; analyse the complaints",
            ChurnType::NonMalicious => "send reminders and billing notices",
            ChurnType::Retaliatory => "handle complaints promptly and fix the processes",
            ChurnType::Malicious => "credit checks, prepayment, legal action; never win back",
        }
    }
}

/// What the suite knows about a churned customer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChurnSignals {
    pub unresolved_complaints: u32,
    pub breached_complaints: u32,
    /// Unresolved complaints about to miss their SLA (not breached yet).
    pub at_risk_complaints: u32,
    /// The customer complained angrily / escalated (a retaliatory sign).
    pub escalated_complaints: u32,
    pub payment_failed: bool,
    pub fraud_suspected: bool,
    pub credit_default: bool,
    /// A competitor named in an interaction, if any.
    pub competitor_mentioned: Option<String>,
    /// Moved away or no longer needs the product (stated by the customer).
    pub moved_or_no_need: bool,
}

/// A suggested type with the reasons that led to it, strongest first.
#[derive(Debug, Clone, PartialEq)]
pub struct ChurnSuggestion {
    pub churn_type: ChurnType,
    pub reason_codes: Vec<ReasonCode>,
    pub reasons: Vec<String>,
}

/// Suggests a type. Signals are weighed in order of consequence: malice first
/// (it excludes the customer from every campaign), then the company's own faults
/// (the largest share of churn, DOMAIN §8), then a competitor, a missed payment,
/// and finally natural causes.
pub fn classify(s: &ChurnSignals) -> ChurnSuggestion {
    let mut reasons = Vec::new();
    let (churn_type, codes) = if s.fraud_suspected || s.credit_default {
        if s.fraud_suspected {
            reasons.push("fraud suspected".to_string());
        }
        if s.credit_default {
            reasons.push("deliberate credit default".to_string());
        }
        (ChurnType::Malicious, vec![ReasonCode::EthicalProblems])
    } else if s.breached_complaints > 0 && s.escalated_complaints > 0 {
        reasons.push(format!(
            "{} escalated complaint(s) whose SLA was breached",
            s.escalated_complaints.min(s.breached_complaints).max(1)
        ));
        (
            ChurnType::Retaliatory,
            vec![
                ReasonCode::ResponseToFailure,
                ReasonCode::ServiceEncounterFailure,
            ],
        )
    } else if s.unresolved_complaints > 0 || s.breached_complaints > 0 || s.at_risk_complaints > 0 {
        if s.unresolved_complaints > 0 {
            reasons.push(format!(
                "{} unresolved complaint(s)",
                s.unresolved_complaints
            ));
        }
        if s.breached_complaints > 0 {
            reasons.push(format!(
                "{} complaint(s) past their SLA",
                s.breached_complaints
            ));
        }
        if s.at_risk_complaints > 0 {
            reasons.push(format!(
                "{} complaint(s) about to miss their SLA",
                s.at_risk_complaints
            ));
        }
        (
            ChurnType::Fault,
            vec![
                ReasonCode::CoreServiceFailure,
                ReasonCode::ResponseToFailure,
            ],
        )
    } else if let Some(c) = &s.competitor_mentioned {
        reasons.push(format!("competitor mentioned: {c}"));
        (ChurnType::Competitive, vec![ReasonCode::Competition])
    } else if s.payment_failed {
        reasons.push("a payment failed".to_string());
        (
            ChurnType::NonMalicious,
            vec![ReasonCode::InvoluntarySwitching],
        )
    } else {
        reasons.push(if s.moved_or_no_need {
            "moved away or no longer needs the product".to_string()
        } else {
            "no fault, competitor or payment signal".to_string()
        });
        (ChurnType::Natural, vec![ReasonCode::Inconvenience])
    };
    ChurnSuggestion {
        churn_type,
        reason_codes: codes,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suggest(s: ChurnSignals) -> ChurnType {
        classify(&s).churn_type
    }

    #[test]
    fn each_signal_leads_to_its_type() {
        assert_eq!(suggest(ChurnSignals::default()), ChurnType::Natural);
        let moved = ChurnSignals {
            moved_or_no_need: true,
            ..Default::default()
        };
        assert_eq!(suggest(moved), ChurnType::Natural);
        let competitor = ChurnSignals {
            competitor_mentioned: Some("RivalMart".into()),
            ..Default::default()
        };
        let c = classify(&competitor);
        assert_eq!(c.churn_type, ChurnType::Competitive);
        assert!(c.reasons[0].contains("RivalMart"));
        let unpaid = ChurnSignals {
            payment_failed: true,
            ..Default::default()
        };
        assert_eq!(suggest(unpaid), ChurnType::NonMalicious);
        let unresolved = ChurnSignals {
            unresolved_complaints: 1,
            ..Default::default()
        };
        assert_eq!(suggest(unresolved), ChurnType::Fault);
        let at_risk = ChurnSignals {
            at_risk_complaints: 2,
            ..Default::default()
        };
        let c = classify(&at_risk);
        assert_eq!(c.churn_type, ChurnType::Fault);
        assert_eq!(c.reasons, ["2 complaint(s) about to miss their SLA"]);
        let breached = ChurnSignals {
            breached_complaints: 1,
            ..Default::default()
        };
        assert_eq!(suggest(breached), ChurnType::Fault);
        let angry = ChurnSignals {
            breached_complaints: 1,
            escalated_complaints: 2,
            ..Default::default()
        };
        assert_eq!(suggest(angry), ChurnType::Retaliatory);
        let fraud = ChurnSignals {
            fraud_suspected: true,
            ..Default::default()
        };
        assert_eq!(suggest(fraud), ChurnType::Malicious);
        let default = ChurnSignals {
            credit_default: true,
            ..Default::default()
        };
        assert_eq!(suggest(default), ChurnType::Malicious);
    }

    #[test]
    fn stronger_signals_win() {
        let all = ChurnSignals {
            unresolved_complaints: 2,
            breached_complaints: 1,
            at_risk_complaints: 1,
            escalated_complaints: 1,
            payment_failed: true,
            fraud_suspected: true,
            credit_default: false,
            competitor_mentioned: Some("X".into()),
            moved_or_no_need: true,
        };
        assert_eq!(suggest(all.clone()), ChurnType::Malicious, "malice first");
        let no_fraud = ChurnSignals {
            fraud_suspected: false,
            ..all.clone()
        };
        assert_eq!(suggest(no_fraud), ChurnType::Retaliatory);
        let complaints_beat_competitor = ChurnSignals {
            escalated_complaints: 0,
            fraud_suspected: false,
            ..all
        };
        assert_eq!(suggest(complaints_beat_competitor), ChurnType::Fault);
    }

    #[test]
    fn kinds_and_targetability() {
        assert_eq!(ChurnType::Fault.kind(), ChurnKind::Voluntary);
        assert_eq!(ChurnType::Retaliatory.kind(), ChurnKind::Involuntary);
        assert!(!ChurnType::Malicious.targetable());
        assert!(ChurnType::ALL.iter().filter(|t| t.targetable()).count() == 5);
        assert!(ChurnType::Malicious.countermeasure().contains("never"));
    }
}
