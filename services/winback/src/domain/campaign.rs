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
