//! Campaign lifecycle: draft → scheduled → running ⇄ paused → completed, and
//! cancelled from anything not yet finished. Every other step is refused.

use retention_domain::domain_enum;

domain_enum!(CampaignState {
    Draft = "DRAFT",
    Scheduled = "SCHEDULED",
    Running = "RUNNING",
    Paused = "PAUSED",
    Completed = "COMPLETED",
    Cancelled = "CANCELLED",
});

domain_enum!(
    /// Win back churned customers, or keep at-risk ones.
    CampaignKind { Winback = "WINBACK", Retention = "RETENTION" }
);

domain_enum!(
    /// Which of a customer's values ranks the candidates and caps the offer cost:
    /// the expected value (predicted CLV, weighted by P(alive)) or the value if
    /// the customer stays or comes back (retained CLV, not weighted).
    ValueBasis { Expected = "EXPECTED", IfRetained = "IF_RETAINED" }
);

impl ValueBasis {
    /// Win-back goes after customers who have (probably) left, whose expected
    /// value P(alive) has driven towards 0: what matters is what they are worth
    /// once back (DOMAIN §9, the most profitable lost customers). Retention
    /// (prevention, for customers still active) keeps the expected value.
    pub fn default_for(kind: CampaignKind) -> ValueBasis {
        match kind {
            CampaignKind::Winback => ValueBasis::IfRetained,
            CampaignKind::Retention => ValueBasis::Expected,
        }
    }

    /// The value on this basis of a customer with these values (minor units).
    /// Without a value if retained (an older segmentation, a target kept before
    /// it) the expected value stands in: the lower bound.
    pub fn value_of(self, predicted_clv_minor: i64, retained_clv_minor: Option<i64>) -> i64 {
        match self {
            ValueBasis::Expected => predicted_clv_minor,
            ValueBasis::IfRetained => retained_clv_minor.unwrap_or(predicted_clv_minor),
        }
    }
}

domain_enum!(
    /// The contact channels of profile's consent (a campaign's channel is one).
    ContactChannel {
        Email = "EMAIL",
        Sms = "SMS",
        Phone = "PHONE",
        Post = "POST",
        Push = "PUSH",
        InPerson = "IN_PERSON",
    }
);

domain_enum!(
    /// DOMAIN §1, §9: how the campaign tries to bring customers back.
    Strategy {
        PricePromotion = "PRICE_PROMOTION",
        RelationshipInvestment = "RELATIONSHIP_INVESTMENT",
        ServiceRecovery = "SERVICE_RECOVERY",
        StructuralTie = "STRUCTURAL_TIE",
    }
);

domain_enum!(OfferKind {
    Discount = "DISCOUNT",
    Credit = "CREDIT",
    Gift = "GIFT",
    PersonalOutreach = "PERSONAL_OUTREACH",
    Upgrade = "UPGRADE",
});

domain_enum!(CampaignAction {
    Schedule = "SCHEDULE",
    Launch = "LAUNCH",
    Pause = "PAUSE",
    Resume = "RESUME",
    Complete = "COMPLETE",
    Cancel = "CANCEL",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a campaign that is {from}")]
pub struct IllegalTransition {
    pub from: CampaignState,
    pub action: CampaignAction,
}

impl CampaignState {
    pub fn is_final(self) -> bool {
        matches!(self, CampaignState::Completed | CampaignState::Cancelled)
    }

    /// Targets are live (offers out, outcomes counted) while running or paused.
    pub fn is_live(self) -> bool {
        matches!(self, CampaignState::Running | CampaignState::Paused)
    }
}

/// The state after `action`, or why it is refused. Launching is allowed from a
/// draft (launch now) and from scheduled (the schedule's time came).
pub fn transition(
    from: CampaignState,
    action: CampaignAction,
) -> Result<CampaignState, IllegalTransition> {
    use CampaignAction as A;
    use CampaignState as S;
    let to = match (from, action) {
        (S::Draft, A::Schedule) => S::Scheduled,
        (S::Draft | S::Scheduled, A::Launch) => S::Running,
        (S::Running, A::Pause) => S::Paused,
        (S::Paused, A::Resume) => S::Running,
        (S::Running | S::Paused, A::Complete) => S::Completed,
        (s, A::Cancel) if !s.is_final() => S::Cancelled,
        _ => return Err(IllegalTransition { from, action }),
    };
    Ok(to)
}

/// The settings of a campaign as submitted (CreateCampaign).
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignSpec {
    pub display_name: String,
    pub kind: Option<CampaignKind>,
    pub strategy: Option<Strategy>,
    pub offer: Option<OfferKind>,
    pub offer_cost_minor: i64,
    pub currency: String,
    pub channel: String,
    /// Exactly one of a segment id and an insight filter.
    pub target_segment: Option<String>,
    pub target_filter: Option<String>,
    pub budget_minor: i64,
    pub max_cost_share_of_value: f64,
    /// None: the kind's default ([`ValueBasis::default_for`]).
    pub value_basis: Option<ValueBasis>,
    pub holdout_share: f64,
    pub win_window_days: i32,
    pub cool_down_days: i32,
}

pub const MAX_HOLDOUT_SHARE: f64 = 0.5;

/// Field violations of a spec, named under `prefix` (e.g. "campaign.").
pub fn validate(c: &CampaignSpec, prefix: &str, v: &mut retention_errors::FieldViolations) {
    let f = |name: &str| format!("{prefix}{name}");
    v.check(
        !c.display_name.trim().is_empty(),
        f("display_name"),
        "is required",
    );
    v.check(
        c.kind.is_some(),
        f("kind"),
        "is required: WINBACK or RETENTION",
    );
    v.check(c.strategy.is_some(), f("strategy"), "is required");
    v.check(c.offer.is_some(), f("offer.kind"), "is required");
    v.check(
        c.offer_cost_minor >= 0,
        f("offer.cost"),
        "must not be negative",
    );
    v.check(
        c.currency.len() == 3 && c.currency.chars().all(|ch| ch.is_ascii_uppercase()),
        f("offer.cost.currency_code"),
        "must be an ISO 4217 code such as \"CNY\"",
    );
    v.check(
        ContactChannel::parse(&c.channel).is_some(),
        f("channel"),
        format!("must be one of {}", ContactChannel::names().join(", ")),
    );
    v.check(
        c.target_segment.is_some() != c.target_filter.is_some(),
        f("target_segment"),
        "exactly one of target_segment and target_filter is required",
    );
    if let Some(filter) = &c.target_filter
        && let Err(e) = retention_filter::parse(filter)
    {
        v.add(f("target_filter"), e.to_string());
    }
    v.check(c.budget_minor > 0, f("budget"), "must be positive");
    v.check(
        c.max_cost_share_of_value > 0.0 && c.max_cost_share_of_value <= 1.0,
        f("max_cost_share_of_value"),
        "must be in (0, 1]: an offer never costs more than the customer is worth",
    );
    v.check(
        (0.0..=MAX_HOLDOUT_SHARE).contains(&c.holdout_share),
        f("holdout_share"),
        format!("must be between 0 and {MAX_HOLDOUT_SHARE}"),
    );
    v.check(
        (1..=365).contains(&c.win_window_days),
        f("win_window_days"),
        "must be between 1 and 365",
    );
    v.check(
        (0..=365).contains(&c.cool_down_days),
        f("cool_down_days"),
        "must be between 0 and 365",
    );
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use CampaignAction as A;
    use CampaignState as S;

    #[test]
    fn the_whole_table() {
        let legal = [
            (S::Draft, A::Schedule, S::Scheduled),
            (S::Draft, A::Launch, S::Running),
            (S::Draft, A::Cancel, S::Cancelled),
            (S::Scheduled, A::Launch, S::Running),
            (S::Scheduled, A::Cancel, S::Cancelled),
            (S::Running, A::Pause, S::Paused),
            (S::Running, A::Complete, S::Completed),
            (S::Running, A::Cancel, S::Cancelled),
            (S::Paused, A::Resume, S::Running),
            (S::Paused, A::Complete, S::Completed),
            (S::Paused, A::Cancel, S::Cancelled),
        ];
        for from in S::ALL {
            for action in A::ALL {
                let expected = legal
                    .iter()
                    .find(|(f, a, _)| f == from && a == action)
                    .map(|(_, _, to)| *to);
                match (transition(*from, *action), expected) {
                    (Ok(to), Some(e)) => assert_eq!(to, e, "{from} {action}"),
                    (Err(err), None) => {
                        assert_eq!((err.from, err.action), (*from, *action));
                        assert!(err.to_string().contains(from.as_str()));
                    }
                    (got, e) => panic!("{from} {action}: got {got:?}, expected {e:?}"),
                }
            }
        }
    }

    fn spec() -> CampaignSpec {
        CampaignSpec {
            display_name: "Win back lapsed gold customers".into(),
            kind: Some(CampaignKind::Winback),
            strategy: Some(super::Strategy::RelationshipInvestment),
            offer: Some(OfferKind::PersonalOutreach),
            offer_cost_minor: 2_000,
            currency: "CNY".into(),
            channel: "PHONE".into(),
            target_segment: Some("0190a5e2-7c1d-7000-8000-000000000001".into()),
            target_filter: None,
            budget_minor: 1_000_000,
            max_cost_share_of_value: 0.1,
            value_basis: None,
            holdout_share: 0.2,
            win_window_days: 30,
            cool_down_days: 14,
        }
    }

    fn violations(c: &CampaignSpec) -> Vec<String> {
        let mut v = retention_errors::FieldViolations::new();
        validate(c, "campaign.", &mut v);
        v.iter().map(|(f, _)| f.to_string()).collect()
    }

    #[test]
    fn a_complete_spec_is_valid_and_each_bad_field_is_named() {
        assert!(violations(&spec()).is_empty());
        let both = CampaignSpec {
            target_filter: Some("p_alive < 0.3".into()),
            ..spec()
        };
        assert_eq!(violations(&both), vec!["campaign.target_segment"]);
        let bad = CampaignSpec {
            display_name: " ".into(),
            kind: None,
            offer_cost_minor: -1,
            currency: "cny".into(),
            target_segment: None,
            target_filter: Some("p_alive <".into()),
            budget_minor: 0,
            max_cost_share_of_value: 1.5,
            holdout_share: 0.6,
            win_window_days: 0,
            cool_down_days: -1,
            ..spec()
        };
        assert_eq!(
            violations(&bad),
            vec![
                "campaign.display_name",
                "campaign.kind",
                "campaign.offer.cost",
                "campaign.offer.cost.currency_code",
                "campaign.target_filter",
                "campaign.budget",
                "campaign.max_cost_share_of_value",
                "campaign.holdout_share",
                "campaign.win_window_days",
                "campaign.cool_down_days",
            ]
        );
    }

    fn action() -> impl proptest::strategy::Strategy<Value = CampaignAction> {
        proptest::sample::select(CampaignAction::ALL.to_vec())
    }

    proptest! {
        /// Whatever the sequence: finished campaigns never change again, a
        /// campaign is never live before it was launched, and refusals leave the
        /// state as it was.
        #[test]
        fn sequences_respect_the_lifecycle(actions in proptest::collection::vec(action(), 0..40)) {
            let mut state = CampaignState::Draft;
            let mut launched = false;
            for a in actions {
                match transition(state, a) {
                    Ok(next) => {
                        prop_assert!(!state.is_final(), "{state} changed by {a}");
                        if a == CampaignAction::Launch {
                            launched = true;
                        }
                        state = next;
                    }
                    Err(e) => prop_assert_eq!(e.from, state),
                }
                prop_assert!(!state.is_live() || launched);
                prop_assert!(state != CampaignState::Completed || launched);
            }
        }
    }
}
