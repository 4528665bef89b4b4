//! proto <-> domain mapping for the profile API and its events. Unknown enum
//! numbers and malformed values become field violations here; business rules live
//! in `domain`. Imports only `domain`.

use retention_errors::FieldViolations;
use retention_proto::common;
use retention_proto::profile as pb;

use crate::domain::*;

pub use retention_errors::time::{instant_arg as from_ts, timestamp as ts};

pub fn money(m: &Money) -> common::Money {
    common::Money {
        currency_code: m.currency.clone(),
        minor_units: m.minor_units,
    }
}

fn from_money(m: &common::Money) -> Money {
    Money {
        currency: m.currency_code.clone(),
        minor_units: m.minor_units,
    }
}

/// Maps a proto enum number: 0 is "unset", unknown numbers are violations.
macro_rules! enum_in {
    ($value:expr, $pb:ty, $field:expr, $v:expr, { $($pbv:ident => $dv:expr),+ $(,)? }) => {{
        match <$pb>::try_from($value) {
            Ok(<$pb>::Unspecified) => None,
            $(Ok(<$pb>::$pbv) => Some($dv),)+
            Err(_) => {
                $v.add($field, format!("unknown enum value {}", $value));
                None
            }
        }
    }};
}

pub fn kind_in(x: i32, f: &str, v: &mut FieldViolations) -> Option<CustomerKind> {
    enum_in!(x, pb::CustomerKind, f, v, { Individual => CustomerKind::Individual, Business => CustomerKind::Business })
}

pub fn channel_in(x: i32, f: &str, v: &mut FieldViolations) -> Option<ContactChannel> {
    enum_in!(x, pb::ContactChannel, f, v, {
        Email => ContactChannel::Email, Sms => ContactChannel::Sms, Phone => ContactChannel::Phone,
        Post => ContactChannel::Post, Push => ContactChannel::Push, InPerson => ContactChannel::InPerson,
    })
}

pub fn consent_status_in(x: i32, f: &str, v: &mut FieldViolations) -> Option<ConsentStatus> {
    enum_in!(x, pb::ConsentStatus, f, v, { Granted => ConsentStatus::Granted, Withdrawn => ConsentStatus::Withdrawn })
}

fn nonempty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// The caller-supplied part of a proto customer.
pub fn customer_input(c: &pb::Customer, prefix: &str, v: &mut FieldViolations) -> CustomerInput {
    let f = |n: &str| format!("{prefix}.{n}");
    let d = c.demographics.clone().unwrap_or_default();
    let fi = c.firmographics.clone().unwrap_or_default();
    let a = c.acquisition.clone().unwrap_or_default();
    CustomerInput {
        kind: kind_in(c.kind, &f("kind"), v),
        display_name: nonempty(&c.display_name),
        email: nonempty(&c.email),
        phone: nonempty(&c.phone),
        demographics: Demographics {
            gender: enum_in!(d.gender, pb::Gender, f("demographics.gender"), v, {
                Female => Gender::Female, Male => Gender::Male, Other => Gender::Other,
            }),
            birth_year: d.birth_year,
            education: enum_in!(d.education, pb::Education, f("demographics.education"), v, {
                Primary => Education::Primary, Secondary => Education::Secondary,
                Vocational => Education::Vocational, Bachelor => Education::Bachelor,
                Master => Education::Master, Doctorate => Education::Doctorate,
            }),
            occupation: nonempty(&d.occupation),
            income_band: enum_in!(d.income_band, pb::IncomeBand, f("demographics.income_band"), v, {
                Low => IncomeBand::Low, LowerMiddle => IncomeBand::LowerMiddle, Middle => IncomeBand::Middle,
                UpperMiddle => IncomeBand::UpperMiddle, High => IncomeBand::High,
            }),
            region: nonempty(&d.region),
        },
        firmographics: Firmographics {
            annual_revenue: fi.annual_revenue.as_ref().map(from_money),
            credit_rating: enum_in!(fi.credit_rating, pb::CreditRating, f("firmographics.credit_rating"), v, {
                Best => CreditRating::Best, Good => CreditRating::Good, Fair => CreditRating::Fair,
                Poor => CreditRating::Poor, NoCredit => CreditRating::NoCredit,
            }),
            business_condition: enum_in!(fi.business_condition, pb::BusinessCondition, f("firmographics.business_condition"), v, {
                SpecialGrade => BusinessCondition::SpecialGrade, GradeOne => BusinessCondition::GradeOne,
                GradeTwo => BusinessCondition::GradeTwo, GradeThree => BusinessCondition::GradeThree,
            }),
            share_of_wallet: fi.share_of_wallet,
        },
        acquisition: Acquisition {
            channel: nonempty(&a.channel),
            acquire_time: a
                .acquire_time
                .as_ref()
                .and_then(|t| from_ts(t, &f("acquisition.acquire_time"), v)),
            cost: a.cost.as_ref().map(from_money),
        },
        tags: c.tags.clone(),
        attributes: c.attributes.clone().into_iter().collect(),
        identities: c
            .identities
            .iter()
            .map(|i| Identity {
                namespace: i.namespace.clone(),
                value: i.value.clone(),
            })
            .collect(),
    }
}

fn pb_enum<T: Into<i32>>(x: Option<T>) -> i32 {
    x.map(Into::into).unwrap_or(0)
}

pub fn customer_kind(k: CustomerKind) -> pb::CustomerKind {
    match k {
        CustomerKind::Individual => pb::CustomerKind::Individual,
        CustomerKind::Business => pb::CustomerKind::Business,
    }
}

pub fn demographics(d: &Demographics) -> pb::Demographics {
    pb::Demographics {
        gender: pb_enum(d.gender.map(|g| match g {
            Gender::Female => pb::Gender::Female,
            Gender::Male => pb::Gender::Male,
            Gender::Other => pb::Gender::Other,
        })),
        birth_year: d.birth_year,
        education: pb_enum(d.education.map(|e| match e {
            Education::Primary => pb::Education::Primary,
            Education::Secondary => pb::Education::Secondary,
            Education::Vocational => pb::Education::Vocational,
            Education::Bachelor => pb::Education::Bachelor,
            Education::Master => pb::Education::Master,
            Education::Doctorate => pb::Education::Doctorate,
        })),
        occupation: d.occupation.clone().unwrap_or_default(),
        income_band: pb_enum(d.income_band.map(income_band)),
        region: d.region.clone().unwrap_or_default(),
    }
}

pub fn income_band(i: IncomeBand) -> pb::IncomeBand {
    match i {
        IncomeBand::Low => pb::IncomeBand::Low,
        IncomeBand::LowerMiddle => pb::IncomeBand::LowerMiddle,
        IncomeBand::Middle => pb::IncomeBand::Middle,
        IncomeBand::UpperMiddle => pb::IncomeBand::UpperMiddle,
        IncomeBand::High => pb::IncomeBand::High,
    }
}

pub fn firmographics(f: &Firmographics) -> pb::Firmographics {
    pb::Firmographics {
        annual_revenue: f.annual_revenue.as_ref().map(money),
        credit_rating: pb_enum(f.credit_rating.map(|c| match c {
            CreditRating::Best => pb::CreditRating::Best,
            CreditRating::Good => pb::CreditRating::Good,
            CreditRating::Fair => pb::CreditRating::Fair,
            CreditRating::Poor => pb::CreditRating::Poor,
            CreditRating::NoCredit => pb::CreditRating::NoCredit,
        })),
        business_condition: pb_enum(f.business_condition.map(|c| match c {
            BusinessCondition::SpecialGrade => pb::BusinessCondition::SpecialGrade,
            BusinessCondition::GradeOne => pb::BusinessCondition::GradeOne,
            BusinessCondition::GradeTwo => pb::BusinessCondition::GradeTwo,
            BusinessCondition::GradeThree => pb::BusinessCondition::GradeThree,
        })),
        share_of_wallet: f.share_of_wallet,
    }
}

pub fn acquisition(a: &Acquisition) -> pb::Acquisition {
    pb::Acquisition {
        channel: a.channel.clone().unwrap_or_default(),
        acquire_time: a.acquire_time.map(ts),
        cost: a.cost.as_ref().map(money),
    }
}

pub fn contact_channel(c: ContactChannel) -> pb::ContactChannel {
    match c {
        ContactChannel::Email => pb::ContactChannel::Email,
        ContactChannel::Sms => pb::ContactChannel::Sms,
        ContactChannel::Phone => pb::ContactChannel::Phone,
        ContactChannel::Post => pb::ContactChannel::Post,
        ContactChannel::Push => pb::ContactChannel::Push,
        ContactChannel::InPerson => pb::ContactChannel::InPerson,
    }
}

pub fn consent_status(s: ConsentStatus) -> pb::ConsentStatus {
    match s {
        ConsentStatus::Granted => pb::ConsentStatus::Granted,
        ConsentStatus::Withdrawn => pb::ConsentStatus::Withdrawn,
    }
}

pub fn customer(c: &Customer, masked: bool) -> pb::Customer {
    pb::Customer {
        name: c.name(),
        kind: customer_kind(c.kind).into(),
        display_name: c.display_name.clone().unwrap_or_default(),
        email: c.email.clone().unwrap_or_default(),
        phone: c.phone.clone().unwrap_or_default(),
        demographics: Some(demographics(&c.demographics)),
        firmographics: Some(firmographics(&c.firmographics)),
        acquisition: Some(acquisition(&c.acquisition)),
        tags: c.tags.clone(),
        attributes: c.attributes.clone().into_iter().collect(),
        identities: c
            .identities
            .iter()
            .map(|i| pb::ExternalIdentity {
                namespace: i.namespace.clone(),
                value: i.value.clone(),
            })
            .collect(),
        consents: c
            .consents
            .iter()
            .map(|x| pb::Consent {
                channel: contact_channel(x.channel).into(),
                status: consent_status(x.status).into(),
                source: x.source.clone(),
                update_time: Some(ts(x.update_time)),
            })
            .collect(),
        merged_names: c.merged_ids.iter().map(|id| customer_name(id)).collect(),
        create_time: Some(ts(c.create_time)),
        update_time: Some(ts(c.update_time)),
        etag: c.etag(),
        pii_masked: masked,
    }
}

pub fn purchase_input(p: &pb::Purchase, prefix: &str, v: &mut FieldViolations) -> PurchaseInput {
    PurchaseInput {
        order_id: p.order_id.trim().to_string(),
        occur_time: p
            .occur_time
            .as_ref()
            .and_then(|t| from_ts(t, &format!("{prefix}.occur_time"), v)),
        amount: p.amount.as_ref().map(from_money),
        gross_margin: p.gross_margin.as_ref().map(from_money),
        discount: p.discount.as_ref().map(from_money),
        product_category: nonempty(p.product_category.trim()),
        channel: nonempty(p.channel.trim()),
    }
}

pub fn purchase(p: &Purchase) -> pb::Purchase {
    pb::Purchase {
        name: format!("customers/{}/purchases/{}", p.customer_id, p.id),
        customer: customer_name(&p.customer_id),
        order_id: p.order_id.clone(),
        occur_time: Some(ts(p.occur_time)),
        amount: Some(money(&p.amount)),
        gross_margin: Some(money(&p.gross_margin)),
        discount: Some(money(&p.discount)),
        product_category: p.product_category.clone().unwrap_or_default(),
        channel: p.channel.clone().unwrap_or_default(),
        create_time: Some(ts(p.create_time)),
    }
}

pub fn referral(r: &Referral) -> pb::Referral {
    pb::Referral {
        referrer: customer_name(&r.referrer_id),
        referred: customer_name(&r.referred_id),
        occur_time: Some(ts(r.occur_time)),
    }
}
