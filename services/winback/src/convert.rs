//! Domain <-> proto mapping of win-back resources, shared by the transport
//! (`grpc`) and the published events (`events::publish`); it reads only `domain`.

use retention_proto::common;
use retention_proto::winback as pb;

use crate::domain::campaign::{CampaignKind, CampaignState, OfferKind, Strategy};
use crate::domain::churn::{ChurnType, ReasonCode};
use crate::domain::records::*;
use crate::domain::results::{ArmResults, CampaignResults, StrategyOutcome, Uplift};
use crate::domain::targeting::{Arm, ValueBasis};

pub use retention_errors::time::{instant as from_ts, timestamp as ts};

pub fn money(currency: &str, minor_units: i64) -> Option<common::Money> {
    Some(common::Money {
        currency_code: currency.to_string(),
        minor_units,
    })
}

/// `CHURN_TYPE_FAULT` style proto names map onto the domain's `FAULT`.
fn by_name<T>(full: &str, prefix: &str, parse: fn(&str) -> Option<T>) -> Option<T> {
    full.strip_prefix(prefix).and_then(parse)
}

pub fn churn_type(t: ChurnType) -> pb::ChurnType {
    pb::ChurnType::from_str_name(&format!("CHURN_TYPE_{}", t.as_str())).unwrap_or_default()
}

pub fn churn_type_from(v: i32) -> Option<ChurnType> {
    let t = pb::ChurnType::try_from(v).ok()?;
    by_name(t.as_str_name(), "CHURN_TYPE_", ChurnType::parse)
}

pub fn reason(r: ReasonCode) -> pb::ReasonCode {
    pb::ReasonCode::from_str_name(&format!("REASON_CODE_{}", r.as_str())).unwrap_or_default()
}

pub fn reason_from(v: i32) -> Option<ReasonCode> {
    let r = pb::ReasonCode::try_from(v).ok()?;
    by_name(r.as_str_name(), "REASON_CODE_", ReasonCode::parse)
}

pub fn kind(k: CampaignKind) -> pb::CampaignKind {
    pb::CampaignKind::from_str_name(&format!("CAMPAIGN_KIND_{}", k.as_str())).unwrap_or_default()
}

pub fn kind_from(v: i32) -> Option<CampaignKind> {
    let k = pb::CampaignKind::try_from(v).ok()?;
    by_name(k.as_str_name(), "CAMPAIGN_KIND_", CampaignKind::parse)
}

pub fn strategy(s: Strategy) -> pb::Strategy {
    pb::Strategy::from_str_name(&format!("STRATEGY_{}", s.as_str())).unwrap_or_default()
}

pub fn strategy_from(v: i32) -> Option<Strategy> {
    let s = pb::Strategy::try_from(v).ok()?;
    by_name(s.as_str_name(), "STRATEGY_", Strategy::parse)
}

pub fn offer_kind(o: OfferKind) -> pb::OfferKind {
    pb::OfferKind::from_str_name(&format!("OFFER_KIND_{}", o.as_str())).unwrap_or_default()
}

pub fn offer_kind_from(v: i32) -> Option<OfferKind> {
    let o = pb::OfferKind::try_from(v).ok()?;
    by_name(o.as_str_name(), "OFFER_KIND_", OfferKind::parse)
}

pub fn state(s: CampaignState) -> pb::CampaignState {
    pb::CampaignState::from_str_name(&format!("CAMPAIGN_STATE_{}", s.as_str())).unwrap_or_default()
}

pub fn value_basis(b: ValueBasis) -> pb::ValueBasis {
    pb::ValueBasis::from_str_name(&format!("VALUE_BASIS_{}", b.as_str())).unwrap_or_default()
}

/// None for VALUE_BASIS_UNSPECIFIED (the kind's default applies) and unknown values.
pub fn value_basis_from(v: i32) -> Option<ValueBasis> {
    let b = pb::ValueBasis::try_from(v).ok()?;
    by_name(b.as_str_name(), "VALUE_BASIS_", ValueBasis::parse)
}

pub fn arm(a: Arm) -> pb::Arm {
    match a {
        Arm::Treated => pb::Arm::Treated,
        Arm::Control => pb::Arm::Control,
    }
}

pub fn outcome(o: ContactOutcome) -> pb::ContactOutcome {
    pb::ContactOutcome::from_str_name(&format!("CONTACT_OUTCOME_{}", o.as_str()))
        .unwrap_or_default()
}

pub fn outcome_from(v: i32) -> Option<ContactOutcome> {
    let o = pb::ContactOutcome::try_from(v).ok()?;
    by_name(o.as_str_name(), "CONTACT_OUTCOME_", ContactOutcome::parse)
}

pub fn churn_record(r: &ChurnRecord) -> pb::ChurnRecord {
    pb::ChurnRecord {
        name: churn_name(&r.id),
        customer: format!("customers/{}", r.customer_id),
        churn_type: churn_type(r.churn_type).into(),
        reason_codes: r.reason_codes.iter().map(|c| reason(*c).into()).collect(),
        evidence: r.evidence.clone(),
        churn_time: Some(ts(r.churn_time)),
        value_at_churn: r
            .value_at_churn
            .as_ref()
            .and_then(|m| money(&m.currency, m.minor_units)),
        create_time: Some(ts(r.create_time)),
    }
}

pub fn offer(c: &Campaign) -> pb::Offer {
    pb::Offer {
        kind: offer_kind(c.offer).into(),
        description: c.offer_description.clone(),
        cost: money(&c.currency, c.offer_cost_minor),
    }
}

pub fn campaign(c: &Campaign) -> pb::Campaign {
    pb::Campaign {
        name: campaign_name(&c.id),
        display_name: c.display_name.clone(),
        kind: kind(c.kind).into(),
        strategy: strategy(c.strategy).into(),
        offer: Some(offer(c)),
        channel: c.channel.as_str().into(),
        target_segment: c
            .target_segment
            .as_ref()
            .map(|s| format!("segments/{s}"))
            .unwrap_or_default(),
        target_filter: c.target_filter.clone().unwrap_or_default(),
        budget: money(&c.currency, c.budget_minor),
        max_cost_share_of_value: c.max_cost_share_of_value,
        holdout_share: c.holdout_share,
        seed: c.seed,
        win_window_days: c.win_window_days,
        cool_down_days: c.cool_down_days,
        schedule_time: c.schedule_time.map(ts),
        triggered: c.triggered,
        state: state(c.state).into(),
        create_time: Some(ts(c.create_time)),
        launch_time: c.launch_time.map(ts),
        end_time: c.end_time.map(ts),
        etag: c.etag(),
        value_basis: value_basis(c.value_basis).into(),
    }
}

pub fn target(t: &Target) -> pb::CampaignTarget {
    pb::CampaignTarget {
        name: target_name(&t.campaign_id, &t.customer_id),
        customer: format!("customers/{}", t.customer_id),
        arm: arm(t.arm).into(),
        predicted_clv: money(&t.currency, t.predicted_clv_minor),
        last_outcome: t.last_outcome.map_or(0, |o| outcome(o).into()),
        dispatch_time: t.dispatch_time.map(ts),
        won_back_time: t.won_back_time.map(ts),
        recovered_margin: money(&t.currency, t.recovered_margin_minor),
        retained_clv: t.retained_clv_minor.and_then(|v| money(&t.currency, v)),
    }
}

fn arm_results(a: &ArmResults, currency: &str) -> pb::ArmResults {
    pb::ArmResults {
        targets: a.targets,
        contacted: a.contacted,
        won_back: a.won_back,
        win_back_rate: a.win_back_rate,
        recovered_margin: money(currency, a.recovered_margin_minor),
        recovered_value: money(currency, a.recovered_value_minor),
        mean_days_to_win_back: a.mean_days_to_win_back,
        repeat_rate: a.repeat_rate,
    }
}

/// Without a control group the uplift is unknown: NaN, never a made-up 0.
fn uplift_fields(u: Option<Uplift>) -> (f64, f64, f64) {
    u.map_or((f64::NAN, f64::NAN, f64::NAN), |u| {
        (u.estimate, u.ci_low, u.ci_high)
    })
}

pub fn results(r: &CampaignResults) -> pb::CampaignResults {
    let cur = &r.campaign.currency;
    let (uplift, low, high) = uplift_fields(r.uplift);
    pb::CampaignResults {
        campaign: campaign_name(&r.campaign.id),
        strategy: strategy(r.campaign.strategy).into(),
        treated: Some(arm_results(&r.treated, cur)),
        control: Some(arm_results(&r.control, cur)),
        uplift,
        uplift_ci_low: low,
        uplift_ci_high: high,
        spend: money(cur, r.spend_minor),
        incremental_margin: money(cur, r.incremental_margin_minor),
        roi: r.roi.unwrap_or(f64::NAN),
        value_basis: value_basis(r.campaign.value_basis).into(),
        incremental_value: money(cur, r.incremental_value_minor),
    }
}

pub fn strategy_outcome(s: &StrategyOutcome) -> pb::StrategyOutcome {
    let cur = &s.currency;
    let (uplift, low, high) = uplift_fields(s.uplift);
    pb::StrategyOutcome {
        strategy: strategy(s.strategy).into(),
        campaigns: s.campaigns,
        treated: Some(arm_results(&s.treated, cur)),
        control: Some(arm_results(&s.control, cur)),
        uplift,
        uplift_ci_low: low,
        uplift_ci_high: high,
        spend: money(cur, s.spend_minor),
        incremental_margin: money(cur, s.incremental_margin_minor),
        roi: s.roi.unwrap_or(f64::NAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_domain_value_has_its_proto_twin_and_back() {
        for t in ChurnType::ALL {
            assert_eq!(churn_type_from(churn_type(*t).into()), Some(*t));
        }
        for r in ReasonCode::ALL {
            assert_eq!(reason_from(reason(*r).into()), Some(*r));
        }
        for k in CampaignKind::ALL {
            assert_eq!(kind_from(kind(*k).into()), Some(*k));
        }
        for s in Strategy::ALL {
            assert_eq!(strategy_from(strategy(*s).into()), Some(*s));
        }
        for o in OfferKind::ALL {
            assert_eq!(offer_kind_from(offer_kind(*o).into()), Some(*o));
        }
        for b in ValueBasis::ALL {
            assert_eq!(value_basis_from(value_basis(*b).into()), Some(*b));
        }
        assert_eq!(value_basis_from(0), None, "unspecified: the kind's default");
        for o in ContactOutcome::ALL {
            assert_eq!(outcome_from(outcome(*o).into()), Some(*o));
        }
        for s in CampaignState::ALL {
            assert_ne!(state(*s), pb::CampaignState::Unspecified);
        }
        assert_eq!(churn_type_from(0), None);
        assert_eq!(strategy_from(99), None);
    }
}
