//! Who a campaign reaches: exclusions, priority by lifetime value (expected, or if
//! retained: the campaign's value basis), a cost cap per customer and a total
//! budget, and a deterministic random holdout kept as the control group (same
//! seed, same split).

use std::collections::BTreeMap;

use retention_domain::domain_enum;

use super::churn::ChurnType;

/// Defined beside the campaign whose spec holds it.
pub use super::campaign::ValueBasis;

domain_enum!(
    /// Why a candidate was not targeted. OPTED_OUT: withdrew consent for the
    /// campaign's channel; NO_CONSENT: no consent recorded for an opt-in channel.
    Exclusion {
        OptedOut = "OPTED_OUT",
        NoConsent = "NO_CONSENT",
        CoolDown = "COOL_DOWN",
        MaliciousChurn = "MALICIOUS_CHURN",
        InLiveCampaign = "IN_LIVE_CAMPAIGN",
        OverValueShare = "OVER_VALUE_SHARE",
        OverBudget = "OVER_BUDGET",
    }
);

domain_enum!(
    /// A channel's consent policy (DESIGN §8): whether contacting needs a
    /// recorded grant (opt-in) or only the absence of a withdrawal (opt-out).
    ConsentPolicy { OptIn = "OPT_IN", OptOut = "OPT_OUT" }
);

/// A customer's recorded consent for one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    Granted,
    Withdrawn,
}

/// Whether `consent` (None: nothing recorded) allows contacting the customer on
/// a channel under `policy`; the reason they are excluded if not.
pub fn consent_exclusion(policy: ConsentPolicy, consent: Option<Consent>) -> Option<Exclusion> {
    match (consent, policy) {
        (Some(Consent::Granted), _) => None,
        (Some(Consent::Withdrawn), _) => Some(Exclusion::OptedOut),
        (None, ConsentPolicy::OptIn) => Some(Exclusion::NoConsent),
        (None, ConsentPolicy::OptOut) => None,
    }
}

/// A customer the campaign's target selected, with what the exclusions need.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub customer_id: String,
    /// Expected lifetime value (minor units), weighted by P(alive).
    pub predicted_clv_minor: i64,
    /// Lifetime value if the customer stays or comes back (minor units); None
    /// when segmentation did not say (the expected value then stands in).
    pub retained_clv_minor: Option<i64>,
    pub churn_type: Option<ChurnType>,
    /// Recorded consent for the campaign's channel (None: no record); the
    /// rules' consent policy decides what no record means.
    pub consent: Option<Consent>,
    /// Contacted by another campaign within the cool-down.
    pub recently_contacted: bool,
    pub in_live_campaign: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetingRules {
    /// Cost of the offer to one treated customer (minor units).
    pub offer_cost_minor: i64,
    /// Total spend allowed on treated customers (minor units).
    pub budget_minor: i64,
    /// The offer may cost at most this share of the customer's value on `value_basis`.
    pub max_cost_share_of_value: f64,
    /// The value that ranks candidates and caps the offer cost.
    pub value_basis: ValueBasis,
    /// Share of eligible customers kept as the control group, 0..1.
    pub holdout_share: f64,
    pub seed: u64,
    /// The deployment's consent policy for the campaign's channel.
    pub consent_policy: ConsentPolicy,
}

domain_enum!(
    /// Offered the campaign, or kept back as the control group.
    Arm { Treated = "TREATED", Control = "CONTROL" }
);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// In priority order (highest value on the basis first).
    pub targets: Vec<(String, Arm)>,
    pub excluded: BTreeMap<String, Exclusion>,
    /// Offer cost committed for the treated arm.
    pub committed_minor: i64,
}

/// A stable 64-bit hash (FNV-1a, then a SplitMix64 finish) of seed and id: the
/// holdout must not change between launches, processes or library versions.
pub fn stable_hash(seed: u64, id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The control group is decided per customer by the hash alone, so a customer's
/// arm does not depend on who else was selected.
pub fn in_holdout(seed: u64, id: &str, share: f64) -> bool {
    let u = (stable_hash(seed, id) >> 11) as f64 / (1u64 << 53) as f64;
    u < share.clamp(0.0, 1.0)
}

impl Candidate {
    /// The candidate's value on `basis` (minor units).
    pub fn value(&self, basis: ValueBasis) -> i64 {
        basis.value_of(self.predicted_clv_minor, self.retained_clv_minor)
    }
}

/// Applies exclusions, then walks candidates by value on the rules' basis (ties
/// by id): holdout customers join the control group (they cost nothing), treated
/// ones until the budget is spent.
pub fn select(candidates: &[Candidate], rules: &TargetingRules) -> Selection {
    let mut sel = Selection::default();
    let basis = rules.value_basis;
    let mut ordered: Vec<&Candidate> = candidates.iter().collect();
    ordered.sort_by(|a, b| {
        b.value(basis)
            .cmp(&a.value(basis))
            .then_with(|| a.customer_id.cmp(&b.customer_id))
    });
    for c in ordered {
        let excluded = if c.churn_type.is_some_and(|t| !t.targetable()) {
            Some(Exclusion::MaliciousChurn)
        } else if let Some(e) = consent_exclusion(rules.consent_policy, c.consent) {
            Some(e)
        } else if c.recently_contacted {
            Some(Exclusion::CoolDown)
        } else if c.in_live_campaign {
            Some(Exclusion::InLiveCampaign)
        } else if (rules.offer_cost_minor as f64)
            > rules.max_cost_share_of_value * c.value(basis).max(0) as f64
        {
            Some(Exclusion::OverValueShare)
        } else {
            None
        };
        if let Some(e) = excluded {
            sel.excluded.insert(c.customer_id.clone(), e);
            continue;
        }
        if in_holdout(rules.seed, &c.customer_id, rules.holdout_share) {
            sel.targets.push((c.customer_id.clone(), Arm::Control));
        } else if sel.committed_minor + rules.offer_cost_minor <= rules.budget_minor {
            sel.committed_minor += rules.offer_cost_minor;
            sel.targets.push((c.customer_id.clone(), Arm::Treated));
        } else {
            sel.excluded
                .insert(c.customer_id.clone(), Exclusion::OverBudget);
        }
    }
    sel
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::campaign::CampaignKind;

    fn candidate(i: usize, clv: i64) -> Candidate {
        Candidate {
            customer_id: format!("c{i:04}"),
            predicted_clv_minor: clv,
            retained_clv_minor: Some(clv),
            churn_type: Some(ChurnType::Fault),
            consent: Some(Consent::Granted),
            recently_contacted: false,
            in_live_campaign: false,
        }
    }

    fn rules() -> TargetingRules {
        TargetingRules {
            offer_cost_minor: 1_000,
            budget_minor: 1_000_000,
            max_cost_share_of_value: 0.2,
            value_basis: ValueBasis::Expected,
            holdout_share: 0.0,
            seed: 7,
            consent_policy: ConsentPolicy::OptIn,
        }
    }

    #[test]
    fn exclusions_are_honoured_with_their_reason() {
        let mut cs: Vec<Candidate> = (0..6).map(|i| candidate(i, 100_000)).collect();
        cs[0].churn_type = Some(ChurnType::Malicious);
        cs[1].consent = Some(Consent::Withdrawn);
        cs[2].recently_contacted = true;
        cs[3].in_live_campaign = true;
        cs[4].predicted_clv_minor = 4_999; // 20% of it is below the 1,000 offer
        let s = select(&cs, &rules());
        let reason = |i: usize| s.excluded.get(&format!("c{i:04}")).copied();
        assert_eq!(reason(0), Some(Exclusion::MaliciousChurn));
        assert_eq!(reason(1), Some(Exclusion::OptedOut));
        assert_eq!(reason(2), Some(Exclusion::CoolDown));
        assert_eq!(reason(3), Some(Exclusion::InLiveCampaign));
        assert_eq!(reason(4), Some(Exclusion::OverValueShare));
        assert_eq!(s.targets, vec![("c0005".to_string(), Arm::Treated)]);
        let mut at_limit = candidate(9, 5_000);
        at_limit.customer_id = "edge".into();
        assert_eq!(
            select(&[at_limit], &rules()).targets.len(),
            1,
            "exactly 20%: allowed"
        );
    }

    #[test]
    fn consent_is_read_under_the_channel_policy() {
        use ConsentPolicy::{OptIn, OptOut};
        let granted = Some(Consent::Granted);
        let withdrawn = Some(Consent::Withdrawn);
        assert_eq!(consent_exclusion(OptIn, granted), None);
        assert_eq!(consent_exclusion(OptIn, None), Some(Exclusion::NoConsent));
        assert_eq!(
            consent_exclusion(OptIn, withdrawn),
            Some(Exclusion::OptedOut)
        );
        assert_eq!(consent_exclusion(OptOut, granted), None);
        assert_eq!(consent_exclusion(OptOut, None), None);
        assert_eq!(
            consent_exclusion(OptOut, withdrawn),
            Some(Exclusion::OptedOut)
        );
    }

    #[test]
    fn targeting_honours_both_consent_policies() {
        let mut cs: Vec<Candidate> = (0..3).map(|i| candidate(i, 100_000)).collect();
        cs[1].consent = None;
        cs[2].consent = Some(Consent::Withdrawn);
        let ids = |s: &Selection| -> Vec<String> {
            let mut v: Vec<String> = s.targets.iter().map(|(c, _)| c.clone()).collect();
            v.sort();
            v
        };

        let opt_in = select(&cs, &rules());
        assert_eq!(ids(&opt_in), vec!["c0000"], "only the granted one");
        assert_eq!(opt_in.excluded.get("c0001"), Some(&Exclusion::NoConsent));
        assert_eq!(opt_in.excluded.get("c0002"), Some(&Exclusion::OptedOut));

        let opt_out = select(
            &cs,
            &TargetingRules {
                consent_policy: ConsentPolicy::OptOut,
                ..rules()
            },
        );
        assert_eq!(
            ids(&opt_out),
            vec!["c0000", "c0001"],
            "all but the withdrawn"
        );
        assert_eq!(opt_out.excluded.get("c0002"), Some(&Exclusion::OptedOut));
        assert_eq!(opt_out.excluded.len(), 1);
    }

    #[test]
    fn the_value_basis_ranks_and_caps_lapsed_and_active_customers() {
        // A lapsed high-margin customer: P(alive) ≈ 0 leaves nearly no expected
        // value, but 5,000.00 if won back. An active low-value one: about the
        // same on both bases, below the 5,000 the cap needs (1,000 at 20 %).
        // An active valuable one: worth the offer either way.
        let mut lapsed = candidate(1, 300);
        lapsed.retained_clv_minor = Some(500_000);
        let mut small = candidate(2, 3_000);
        small.retained_clv_minor = Some(3_200);
        let mut valuable = candidate(3, 100_000);
        valuable.retained_clv_minor = Some(105_000);
        let cs = [small, valuable, lapsed];
        let reason = |s: &Selection, i: usize| s.excluded.get(&format!("c{i:04}")).copied();
        let ids =
            |s: &Selection| -> Vec<String> { s.targets.iter().map(|(c, _)| c.clone()).collect() };

        let expected = select(&cs, &rules());
        assert_eq!(reason(&expected, 1), Some(Exclusion::OverValueShare));
        assert_eq!(reason(&expected, 2), Some(Exclusion::OverValueShare));
        assert_eq!(ids(&expected), vec!["c0003"]);

        let if_retained = TargetingRules {
            value_basis: ValueBasis::IfRetained,
            ..rules()
        };
        let s = select(&cs, &if_retained);
        assert_eq!(
            reason(&s, 1),
            None,
            "the lapsed customer is worth the offer"
        );
        assert_eq!(
            reason(&s, 2),
            Some(Exclusion::OverValueShare),
            "the small active one is still capped"
        );
        assert_eq!(ids(&s), vec!["c0001", "c0003"], "by value if retained");

        // One offer's budget: it goes to the most valuable on the basis.
        let one = |value_basis| TargetingRules {
            budget_minor: 1_000,
            value_basis,
            ..rules()
        };
        let s = select(&cs, &one(ValueBasis::IfRetained));
        assert_eq!(ids(&s), vec!["c0001"]);
        assert_eq!(reason(&s, 3), Some(Exclusion::OverBudget));
        let s = select(&cs, &one(ValueBasis::Expected));
        assert_eq!(ids(&s), vec!["c0003"]);
    }

    #[test]
    fn win_back_defaults_to_the_value_if_retained_and_retention_to_the_expected() {
        assert_eq!(
            ValueBasis::default_for(CampaignKind::Winback),
            ValueBasis::IfRetained
        );
        assert_eq!(
            ValueBasis::default_for(CampaignKind::Retention),
            ValueBasis::Expected
        );
    }

    #[test]
    fn the_budget_is_never_exceeded_and_goes_to_the_most_valuable() {
        let cs: Vec<Candidate> = (0..10)
            .map(|i| candidate(i, 10_000 * (i as i64 + 1)))
            .collect();
        let r = TargetingRules {
            budget_minor: 3_500,
            ..rules()
        };
        let s = select(&cs, &r);
        assert_eq!(s.committed_minor, 3_000);
        let treated: Vec<&str> = s
            .targets
            .iter()
            .filter(|(_, a)| *a == Arm::Treated)
            .map(|(c, _)| c.as_str())
            .collect();
        assert_eq!(
            treated,
            vec!["c0009", "c0008", "c0007"],
            "highest predicted value first"
        );
        assert_eq!(
            s.excluded
                .values()
                .filter(|e| **e == Exclusion::OverBudget)
                .count(),
            7
        );
    }

    #[test]
    fn the_holdout_is_deterministic_and_near_its_share() {
        let cs: Vec<Candidate> = (0..10_000).map(|i| candidate(i, 1_000_000)).collect();
        let r = TargetingRules {
            holdout_share: 0.2,
            ..rules()
        };
        let a = select(&cs, &r);
        let b = select(&cs, &r);
        assert_eq!(a, b, "same seed, same split");
        let control = a
            .targets
            .iter()
            .filter(|(_, arm)| *arm == Arm::Control)
            .count();
        // Binomial(10000, 0.2): sd = 40, so ±4 sd is 1840..2160.
        assert!((1_840..=2_160).contains(&control), "{control}");
        let other = select(
            &cs,
            &TargetingRules {
                seed: 8,
                ..r.clone()
            },
        );
        assert_ne!(a.targets, other.targets, "another seed, another split");
        assert!(!in_holdout(1, "x", 0.0) && in_holdout(1, "x", 1.0));
        assert_eq!(
            stable_hash(7, "c0001"),
            2_856_015_688_003_048_174,
            "pinned: a changed hash would move customers between arms of live campaigns"
        );
    }
}
