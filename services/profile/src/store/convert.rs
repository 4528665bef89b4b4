//! Row <-> domain mapping. Stored enum names that no longer parse are dropped to
//! "unset" rather than failing reads of otherwise good rows.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;

use super::entities::{customer, purchase};
use super::pii::{PiiCipher, PiiError};
use crate::domain::*;

pub fn tags_column(tags: &[String]) -> String {
    if tags.is_empty() {
        "|".into()
    } else {
        format!("|{}|", tags.join("|"))
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ConsentRow {
    channel: String,
    status: String,
    source: String,
    update_time: DateTime<Utc>,
}

fn money(minor: Option<i64>, currency: Option<String>) -> Option<Money> {
    Some(Money {
        minor_units: minor?,
        currency: currency?,
    })
}

/// The PII columns of customer `id` sealed under the current key, and the
/// e-mail lookup hash; the inverse of [`open_pii`].
pub fn seal_pii(
    pii: &PiiCipher,
    id: &str,
    [display_name, email, phone]: [&Option<String>; 3],
) -> ([Option<String>; 3], Option<String>) {
    let seal = |column: &str, v: &Option<String>| v.as_deref().map(|p| pii.seal(column, id, p));
    (
        [
            seal("display_name", display_name),
            seal("email", email),
            seal("phone", phone),
        ],
        email.as_deref().map(|e| pii.email_lookup(e)),
    )
}

/// The row of `c`, its PII sealed under the current key.
pub fn customer_to_active(c: &Customer, pii: &PiiCipher) -> customer::ActiveModel {
    let ([display_name, email, phone], email_hash) =
        seal_pii(pii, &c.id, [&c.display_name, &c.email, &c.phone]);
    let consents: Vec<ConsentRow> = c
        .consents
        .iter()
        .map(|x| ConsentRow {
            channel: x.channel.as_str().into(),
            status: x.status.as_str().into(),
            source: x.source.clone(),
            update_time: x.update_time,
        })
        .collect();
    customer::ActiveModel {
        id: Set(c.id.clone()),
        kind: Set(c.kind.as_str().into()),
        display_name: Set(display_name),
        email: Set(email),
        phone: Set(phone),
        email_hash: Set(email_hash),
        gender: Set(c.demographics.gender.map(|g| g.as_str().into())),
        birth_year: Set(c.demographics.birth_year),
        education: Set(c.demographics.education.map(|g| g.as_str().into())),
        occupation: Set(c.demographics.occupation.clone()),
        income_band: Set(c.demographics.income_band.map(|g| g.as_str().into())),
        region: Set(c.demographics.region.clone()),
        revenue_minor: Set(c
            .firmographics
            .annual_revenue
            .as_ref()
            .map(|m| m.minor_units)),
        revenue_currency: Set(c
            .firmographics
            .annual_revenue
            .as_ref()
            .map(|m| m.currency.clone())),
        credit_rating: Set(c.firmographics.credit_rating.map(|g| g.as_str().into())),
        business_condition: Set(c
            .firmographics
            .business_condition
            .map(|g| g.as_str().into())),
        share_of_wallet: Set(c.firmographics.share_of_wallet),
        acquisition_channel: Set(c.acquisition.channel.clone()),
        acquire_time: Set(c.acquisition.acquire_time),
        acquisition_cost_minor: Set(c.acquisition.cost.as_ref().map(|m| m.minor_units)),
        acquisition_cost_currency: Set(c.acquisition.cost.as_ref().map(|m| m.currency.clone())),
        tags: Set(tags_column(&c.tags)),
        attributes: Set(serde_json::to_string(&c.attributes).unwrap_or_else(|_| "{}".into())),
        consents: Set(serde_json::to_string(&consents).unwrap_or_else(|_| "[]".into())),
        version: Set(c.version),
        erased: Set(c.erased),
        erase_time: Set(c.erased.then_some(c.update_time)),
        create_time: Set(c.create_time),
        update_time: Set(c.update_time),
    }
}

/// The PII columns of a row in the clear.
pub fn open_pii(
    pii: &PiiCipher,
    id: &str,
    columns: [Option<String>; 3],
) -> Result<[Option<String>; 3], PiiError> {
    let [display_name, email, phone] = columns;
    let open = |column: &'static str, v: Option<String>| {
        v.map(|stored| pii.open(column, id, &stored)).transpose()
    };
    Ok([
        open("display_name", display_name)?,
        open("email", email)?,
        open("phone", phone)?,
    ])
}

pub fn customer_from_row(
    m: customer::Model,
    identities: Vec<Identity>,
    merged_ids: Vec<String>,
    pii: &PiiCipher,
) -> Result<Customer, PiiError> {
    let [display_name, email, phone] = open_pii(pii, &m.id, [m.display_name, m.email, m.phone])?;
    let consents: Vec<ConsentRow> = serde_json::from_str(&m.consents).unwrap_or_default();
    let attributes: BTreeMap<String, String> =
        serde_json::from_str(&m.attributes).unwrap_or_default();
    Ok(Customer {
        id: m.id,
        kind: CustomerKind::parse(&m.kind).unwrap_or(CustomerKind::Individual),
        display_name,
        email,
        phone,
        demographics: Demographics {
            gender: m.gender.as_deref().and_then(Gender::parse),
            birth_year: m.birth_year,
            education: m.education.as_deref().and_then(Education::parse),
            occupation: m.occupation,
            income_band: m.income_band.as_deref().and_then(IncomeBand::parse),
            region: m.region,
        },
        firmographics: Firmographics {
            annual_revenue: money(m.revenue_minor, m.revenue_currency),
            credit_rating: m.credit_rating.as_deref().and_then(CreditRating::parse),
            business_condition: m
                .business_condition
                .as_deref()
                .and_then(BusinessCondition::parse),
            share_of_wallet: m.share_of_wallet,
        },
        acquisition: Acquisition {
            channel: m.acquisition_channel,
            acquire_time: m.acquire_time,
            cost: money(m.acquisition_cost_minor, m.acquisition_cost_currency),
        },
        tags: m
            .tags
            .split('|')
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        attributes,
        identities,
        consents: consents
            .into_iter()
            .filter_map(|r| {
                Some(Consent {
                    channel: ContactChannel::parse(&r.channel)?,
                    status: ConsentStatus::parse(&r.status)?,
                    source: r.source,
                    update_time: r.update_time,
                })
            })
            .collect(),
        merged_ids,
        create_time: m.create_time,
        update_time: m.update_time,
        version: m.version,
        erased: m.erased,
    })
}

pub fn purchase_to_active(p: &Purchase) -> purchase::ActiveModel {
    purchase::ActiveModel {
        id: Set(p.id.clone()),
        customer_id: Set(p.customer_id.clone()),
        origin_customer_id: Set(p.origin_customer_id.clone()),
        order_id: Set(p.order_id.clone()),
        occur_time: Set(p.occur_time),
        currency: Set(p.amount.currency.clone()),
        amount_minor: Set(p.amount.minor_units),
        margin_minor: Set(p.gross_margin.minor_units),
        discount_minor: Set(p.discount.minor_units),
        product_category: Set(p.product_category.clone()),
        channel: Set(p.channel.clone()),
        create_time: Set(p.create_time),
    }
}

pub fn purchase_from_row(m: purchase::Model) -> Purchase {
    let money = |minor| Money {
        currency: m.currency.clone(),
        minor_units: minor,
    };
    Purchase {
        amount: money(m.amount_minor),
        gross_margin: money(m.margin_minor),
        discount: money(m.discount_minor),
        id: m.id,
        customer_id: m.customer_id,
        origin_customer_id: m.origin_customer_id,
        order_id: m.order_id,
        occur_time: m.occur_time,
        product_category: m.product_category,
        channel: m.channel,
        create_time: m.create_time,
    }
}
