//! Data for trying the suite: a synthetic population with realistic behaviour
//! (purchases from the BG/NBD process, spend that varies by customer, complaints
//! and surveys for a share of them, customers who have stopped buying), or the
//! customers and purchases of two CSV files. Loaded through the services' own
//! methods: CreateCustomer, UpdateConsent, RecordPurchases (streamed),
//! OpenComplaint, RecordSurvey. Consent is recorded explicitly, as a CRM import
//! carries it: marketing channels are opt-in by default (settings' `consent`), so
//! a customer without a granted consent is not contacted on them.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use retention_domain::sim::{BgNbd, Rng, purchase_weeks};
use retention_proto::common::Money;
use retention_proto::interactions as ipb;
use retention_proto::profile as ppb;

use super::client::Clients;
use super::show::Progress;

#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub customers: usize,
    pub seed: u64,
    /// How far back the oldest customer's first purchase lies.
    pub history_weeks: f64,
    pub complaint_share: f64,
    pub survey_share: f64,
    pub quiet: bool,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            customers: 300,
            seed: 7,
            history_weeks: 104.0,
            complaint_share: 0.12,
            survey_share: 0.3,
            quiet: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    /// "customers/{id}" of every customer loaded, in load order.
    pub customers: Vec<String>,
    pub purchases: i64,
    pub complaints: i64,
    pub surveys: i64,
}

/// A somewhat busier population than CDNOW's, so a two-year history shows every
/// lifecycle stage.
const PROCESS: BgNbd = BgNbd {
    r: 0.6,
    alpha: 4.0,
    a: 0.8,
    b: 3.0,
};

const SURNAMES: &[&str] = &[
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu", "Xu", "Sun",
];
const GIVEN: &[&str] = &[
    "Wei", "Fang", "Na", "Min", "Jing", "Lei", "Qiang", "Yan", "Jun", "Hua", "Ping", "Ling",
];
const CATEGORIES: &[&str] = &["tea", "teaware", "gift box", "snacks"];

pub fn cny(minor_units: i64) -> Option<Money> {
    Some(Money {
        currency_code: "CNY".into(),
        minor_units,
    })
}

pub fn ts(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

/// One synthetic customer: a name and dated purchases (amount, margin, category).
#[derive(Debug, Clone, PartialEq)]
pub struct SynthCustomer {
    pub display_name: String,
    pub purchases: Vec<(DateTime<Utc>, i64, i64, &'static str)>,
    pub complains: bool,
    pub survey: Option<(i32, i32, i32, i32)>,
}

/// The population for `o` as of `now`: the same seed gives the same customers.
pub fn population(o: &SynthOptions, now: DateTime<Utc>) -> Vec<SynthCustomer> {
    let mut rng = Rng::new(o.seed);
    (0..o.customers)
        .map(|_| {
            let pick = |rng: &mut Rng, xs: &[&'static str]| xs[rng.below(xs.len() as u64) as usize];
            let display_name = format!("{} {}", pick(&mut rng, SURNAMES), pick(&mut rng, GIVEN));
            let t_weeks = 2.0 + rng.uniform() * (o.history_weeks - 2.0);
            let first = now - TimeDelta::seconds((t_weeks * 7.0 * 86_400.0) as i64);
            // Spend per order is the customer's own level times some noise.
            let level = 6_000.0 * (0.7 * rng.normal()).exp();
            let margin_rate = 0.2 + 0.2 * rng.uniform();
            let purchases = purchase_weeks(&mut rng, &PROCESS, t_weeks)
                .into_iter()
                .map(|w| {
                    let amount = (level * (0.8 + 0.4 * rng.uniform())).round() as i64;
                    let at = first + TimeDelta::seconds((w * 7.0 * 86_400.0) as i64);
                    (
                        at.min(now),
                        amount,
                        (amount as f64 * margin_rate) as i64,
                        pick(&mut rng, CATEGORIES),
                    )
                })
                .collect();
            let complains = rng.chance(o.complaint_share);
            let survey = rng.chance(o.survey_share).then(|| {
                let csat = if complains {
                    1 + rng.below(3)
                } else {
                    3 + rng.below(3)
                } as i32;
                let expectation = 5 + rng.below(5) as i32;
                let perceived = (expectation + csat - 4).clamp(1, 10);
                (csat, (csat * 2).min(10), expectation, perceived)
            });
            SynthCustomer {
                display_name,
                purchases,
                complains,
                survey,
            }
        })
        .collect()
}

/// Creates the customers, then streams their purchases, then opens complaints and
/// records surveys.
pub async fn load_synthetic(c: &Clients, o: &SynthOptions) -> anyhow::Result<Loaded> {
    let people = population(o, Utc::now());
    let mut loaded = Loaded::default();
    let bar = Progress::new("creating customers", people.len() as u64, o.quiet);
    let mut orders = Vec::new();
    for (i, p) in people.iter().enumerate() {
        let name = create_customer(c, &p.display_name).await?;
        grant_consent(c, &name, SYNTHETIC_CONSENT, "synthetic CRM import").await?;
        for (k, (at, amount, margin, category)) in p.purchases.iter().enumerate() {
            orders.push(ppb::Purchase {
                customer: name.clone(),
                order_id: format!("syn-{}-{i}-{k}", o.seed),
                occur_time: ts(*at),
                amount: cny(*amount),
                gross_margin: cny(*margin),
                product_category: (*category).into(),
                channel: if k % 3 == 0 { "store" } else { "online" }.into(),
                ..Default::default()
            });
        }
        loaded.customers.push(name);
        bar.set(i as u64 + 1);
    }
    bar.finish();
    loaded.purchases = record_purchases(c, orders, o.quiet).await?;
    let mut rng = Rng::new(o.seed ^ 0x00C0_FFEE);
    let bar = Progress::new("complaints and surveys", people.len() as u64, o.quiet);
    for (i, (p, name)) in people.iter().zip(&loaded.customers).enumerate() {
        if p.complains {
            let category = 1 + rng.below(7) as i32;
            let severity = 1 + rng.below(4) as i32;
            c.interactions
                .clone()
                .open_complaint(c.req(ipb::OpenComplaintRequest {
                    complaint: Some(ipb::Complaint {
                        customer: name.clone(),
                        category,
                        severity,
                        subject: "synthetic complaint".into(),
                        description: "generated by retention-cli".into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                }))
                .await?;
            loaded.complaints += 1;
        }
        if let Some((csat, nps, expectation, perceived)) = p.survey {
            c.interactions
                .clone()
                .record_survey(c.req(ipb::RecordSurveyRequest {
                    survey: Some(ipb::Survey {
                        customer: name.clone(),
                        csat,
                        nps: Some(nps),
                        expectation,
                        perceived,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                }))
                .await?;
            loaded.surveys += 1;
        }
        bar.set(i as u64 + 1);
    }
    bar.finish();
    Ok(loaded)
}

/// The channels every synthetic customer consented to: those the demo's
/// campaigns use, and e-mail.
pub const SYNTHETIC_CONSENT: &[ppb::ContactChannel] = &[
    ppb::ContactChannel::Email,
    ppb::ContactChannel::Sms,
    ppb::ContactChannel::Phone,
];

/// Records that `customer` ("customers/{id}") granted consent on each of
/// `channels` (UpdateConsent), from `source`.
pub async fn grant_consent(
    c: &Clients,
    customer: &str,
    channels: &[ppb::ContactChannel],
    source: &str,
) -> anyhow::Result<()> {
    for channel in channels {
        c.profile
            .clone()
            .update_consent(c.req(ppb::UpdateConsentRequest {
                name: customer.into(),
                channel: *channel as i32,
                status: ppb::ConsentStatus::Granted as i32,
                source: source.into(),
            }))
            .await?;
    }
    Ok(())
}

/// The channels of a `consent` cell: names such as `EMAIL;SMS` (`;` or spaces
/// between them, any case); empty: none.
pub fn consent_channels(cell: &str) -> anyhow::Result<Vec<ppb::ContactChannel>> {
    cell.split([';', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            ppb::ContactChannel::from_str_name(&format!(
                "CONTACT_CHANNEL_{}",
                s.to_ascii_uppercase()
            ))
            .filter(|c| *c != ppb::ContactChannel::Unspecified)
            .ok_or_else(|| anyhow::anyhow!("unknown channel {s:?}"))
        })
        .collect()
}

pub async fn create_customer(c: &Clients, display_name: &str) -> anyhow::Result<String> {
    Ok(c.profile
        .clone()
        .create_customer(c.req(ppb::CreateCustomerRequest {
            customer: Some(ppb::Customer {
                kind: ppb::CustomerKind::Individual as i32,
                display_name: display_name.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await?
        .into_inner()
        .name)
}

/// Streams purchases in messages of 1,000 (RecordPurchases); returns how many were
/// recorded (re-sent orders are no-ops, rejections are reported).
pub async fn record_purchases(
    c: &Clients,
    orders: Vec<ppb::Purchase>,
    quiet: bool,
) -> anyhow::Result<i64> {
    let bar = Progress::new("streaming purchases", orders.len() as u64, quiet);
    let mut recorded = 0;
    // One stream per 10,000 so the bar moves and a failure loses little.
    for (n, chunk) in orders.chunks(10_000).enumerate() {
        let messages: Vec<ppb::RecordPurchasesRequest> = chunk
            .chunks(1_000)
            .map(|c| ppb::RecordPurchasesRequest {
                purchases: c.to_vec(),
            })
            .collect();
        let r = c
            .profile
            .clone()
            .record_purchases(c.req(futures::stream::iter(messages)))
            .await?
            .into_inner();
        if let Some(first) = r.rejected.first() {
            anyhow::bail!(
                "{} purchases rejected, first: order {} ({})",
                r.rejected_count,
                first.order_id,
                first.reason
            );
        }
        recorded += r.recorded_count;
        bar.set(((n + 1) * 10_000).min(orders.len()) as u64);
    }
    bar.finish();
    Ok(recorded)
}

/// Splits one CSV line, honouring double quotes (`"a, b"`, `""` inside quotes).
pub fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(ch) = chars.next() {
        match (ch, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_string()).collect()
}

/// Rows of a CSV file as maps from its header names.
pub fn read_csv(path: &str) -> anyhow::Result<Vec<HashMap<String, String>>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = split_csv(
        lines
            .next()
            .ok_or_else(|| anyhow::anyhow!("{path}: empty"))?,
    );
    Ok(lines
        .map(|l| header.iter().cloned().zip(split_csv(l)).collect())
        .collect())
}

/// customers.csv: `id,display_name[,email][,consent]` (id is yours, for
/// purchases.csv; consent: the channels the customer granted, e.g. `EMAIL;SMS`);
/// purchases.csv: `customer_id,order_id,occur_time,amount,gross_margin[,currency][,category]`
/// with RFC 3339 times and amounts in minor units.
pub async fn load_csv(
    c: &Clients,
    customers: &str,
    purchases: Option<&str>,
    quiet: bool,
) -> anyhow::Result<Loaded> {
    let rows = read_csv(customers)?;
    let mut loaded = Loaded::default();
    let mut ids = HashMap::new();
    let bar = Progress::new("creating customers", rows.len() as u64, quiet);
    for (i, r) in rows.iter().enumerate() {
        let get = |k: &str| r.get(k).cloned().unwrap_or_default();
        let consent = consent_channels(&get("consent"))
            .map_err(|e| anyhow::anyhow!("{customers} row {}: consent: {e}", i + 2))?;
        let name = c
            .profile
            .clone()
            .create_customer(c.req(ppb::CreateCustomerRequest {
                customer: Some(ppb::Customer {
                    kind: ppb::CustomerKind::Individual as i32,
                    display_name: get("display_name"),
                    email: get("email"),
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await?
            .into_inner()
            .name;
        grant_consent(c, &name, &consent, "CSV import").await?;
        ids.insert(get("id"), name.clone());
        loaded.customers.push(name);
        bar.set(i as u64 + 1);
    }
    bar.finish();
    if let Some(path) = purchases {
        let mut orders = Vec::new();
        for (line, r) in read_csv(path)?.iter().enumerate() {
            let get = |k: &str| r.get(k).cloned().unwrap_or_default();
            let at = |k: &str| -> anyhow::Result<DateTime<Utc>> {
                Ok(DateTime::parse_from_rfc3339(&get(k))
                    .map_err(|e| anyhow::anyhow!("{path} row {}: {k}: {e}", line + 2))?
                    .with_timezone(&Utc))
            };
            let minor = |k: &str| -> anyhow::Result<i64> {
                get(k)
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{path} row {}: {k}: {e}", line + 2))
            };
            let customer = ids
                .get(&get("customer_id"))
                .ok_or_else(|| anyhow::anyhow!("{path} row {}: unknown customer_id", line + 2))?;
            let currency = Some(get("currency"))
                .filter(|c| !c.is_empty())
                .unwrap_or("CNY".into());
            let money = |m: i64| {
                Some(Money {
                    currency_code: currency.clone(),
                    minor_units: m,
                })
            };
            orders.push(ppb::Purchase {
                customer: customer.clone(),
                order_id: get("order_id"),
                occur_time: ts(at("occur_time")?),
                amount: money(minor("amount")?),
                gross_margin: money(minor("gross_margin")?),
                product_category: get("category"),
                ..Default::default()
            });
        }
        loaded.purchases = record_purchases(c, orders, quiet).await?;
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_cells_name_channels() {
        use ppb::ContactChannel::{Email, Phone, Sms};
        assert_eq!(consent_channels("").unwrap(), vec![]);
        assert_eq!(consent_channels("EMAIL;sms").unwrap(), vec![Email, Sms]);
        assert_eq!(
            consent_channels(" phone  email ").unwrap(),
            vec![Phone, Email]
        );
        let err = consent_channels("EMAIL;FAX").unwrap_err();
        assert!(err.to_string().contains("FAX"), "{err}");
        assert!(consent_channels("UNSPECIFIED").is_err());
    }

    #[test]
    fn csv_lines_split_on_commas_outside_quotes() {
        assert_eq!(
            split_csv(r#"c1,"Li, Lei","say ""hi""",  x "#),
            vec!["c1", "Li, Lei", "say \"hi\"", "x"]
        );
    }

    #[test]
    fn the_population_is_reproducible_and_varied() {
        let o = SynthOptions {
            customers: 400,
            ..Default::default()
        };
        let now = Utc::now();
        let a = population(&o, now);
        assert_eq!(a, population(&o, now));
        let one_off = a.iter().filter(|c| c.purchases.len() == 1).count();
        let loyal = a.iter().filter(|c| c.purchases.len() >= 5).count();
        assert!(
            one_off > 40 && loyal > 20,
            "one-off {one_off}, loyal {loyal}"
        );
        let complainers = a.iter().filter(|c| c.complains).count() as f64 / 400.0;
        assert!((0.06..0.18).contains(&complainers));
        assert!(
            a.iter()
                .all(|c| c.purchases.iter().all(|p| p.0 <= now && p.2 < p.1))
        );
    }
}
