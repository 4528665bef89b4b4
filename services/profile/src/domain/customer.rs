//! The customer aggregate and its rules: what a valid customer is, which fields an
//! update may touch, how personal data is masked and erased.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use retention_errors::FieldViolations;

use super::enums::*;
use super::money::Money;
use super::validate::*;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Demographics {
    pub gender: Option<Gender>,
    pub birth_year: Option<i32>,
    pub education: Option<Education>,
    pub occupation: Option<String>,
    pub income_band: Option<IncomeBand>,
    pub region: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Firmographics {
    pub annual_revenue: Option<Money>,
    pub credit_rating: Option<CreditRating>,
    pub business_condition: Option<BusinessCondition>,
    /// Share of the customer's category spend that goes to us, 0..=1.
    pub share_of_wallet: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Acquisition {
    pub channel: Option<String>,
    pub acquire_time: Option<DateTime<Utc>>,
    pub cost: Option<Money>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Identity {
    pub namespace: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Consent {
    pub channel: ContactChannel,
    pub status: ConsentStatus,
    pub source: String,
    pub update_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Customer {
    pub id: String,
    pub kind: CustomerKind,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub demographics: Demographics,
    pub firmographics: Firmographics,
    pub acquisition: Acquisition,
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    pub identities: Vec<Identity>,
    pub consents: Vec<Consent>,
    /// Ids of customers merged into this one.
    pub merged_ids: Vec<String>,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub version: i64,
    pub erased: bool,
}

/// The part of a customer a caller supplies on create or in an update patch.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CustomerInput {
    pub kind: Option<CustomerKind>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub demographics: Demographics,
    pub firmographics: Firmographics,
    pub acquisition: Acquisition,
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    pub identities: Vec<Identity>,
}

pub const MAX_TAGS: usize = 50;
pub const MAX_ATTRIBUTES: usize = 50;
pub const MAX_IDENTITIES: usize = 20;

/// Paths UpdateCustomer accepts in its field mask.
pub const UPDATABLE_PATHS: &[&str] = &[
    "kind",
    "display_name",
    "email",
    "phone",
    "demographics",
    "demographics.gender",
    "demographics.birth_year",
    "demographics.education",
    "demographics.occupation",
    "demographics.income_band",
    "demographics.region",
    "firmographics",
    "firmographics.annual_revenue",
    "firmographics.credit_rating",
    "firmographics.business_condition",
    "firmographics.share_of_wallet",
    "acquisition",
    "acquisition.channel",
    "acquisition.acquire_time",
    "acquisition.cost",
    "tags",
    "attributes",
    "identities",
];

/// The form an e-mail address is stored and looked up in: addresses differing
/// only in case or surrounding blanks are the same customer's.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

impl CustomerInput {
    /// Trims, lower-cases emails, compacts phone numbers and dedupes lists, so equal
    /// customers compare and index equal.
    pub fn normalize(&mut self) {
        trim_opt(&mut self.display_name);
        trim_opt(&mut self.email);
        if let Some(e) = self.email.as_mut() {
            *e = normalize_email(e);
        }
        trim_opt(&mut self.phone);
        if let Some(p) = self.phone.as_mut() {
            *p = compact_phone(p);
        }
        trim_opt(&mut self.demographics.occupation);
        trim_opt(&mut self.demographics.region);
        trim_opt(&mut self.acquisition.channel);
        for t in &mut self.tags {
            *t = t.trim().to_string();
        }
        self.tags.sort();
        self.tags.dedup();
        self.identities.sort();
        self.identities.dedup();
    }

    /// Rules for the fields present; `creating` also requires kind and name.
    pub fn validate(&self, prefix: &str, creating: bool, now: DateTime<Utc>) -> FieldViolations {
        let mut v = FieldViolations::new();
        let f = |name: &str| format!("{prefix}.{name}");
        if creating {
            v.check(
                self.kind.is_some(),
                f("kind"),
                "must be INDIVIDUAL or BUSINESS",
            );
            v.check(
                self.display_name.as_deref().is_some_and(|n| !n.is_empty()),
                f("display_name"),
                "must not be empty",
            );
        }
        if let Some(name) = &self.display_name {
            check_len(&mut v, &f("display_name"), name, 1, 200);
        }
        if let Some(email) = &self.email {
            if email.chars().count() > MAX_EMAIL {
                v.add(
                    f("email"),
                    format!("must be at most {MAX_EMAIL} characters"),
                );
            } else if !is_email(email) {
                v.add(
                    f("email"),
                    "is not a valid email address (expected name@domain.tld)",
                );
            }
        }
        if let Some(phone) = &self.phone {
            v.check(
                is_phone(phone),
                f("phone"),
                "must be an international number: optional '+', then 7 to 15 digits",
            );
        }
        let d = &self.demographics;
        if let Some(y) = d.birth_year {
            v.check(
                (1900..=now.year()).contains(&y),
                f("demographics.birth_year"),
                format!("must be between 1900 and {}", now.year()),
            );
        }
        if let Some(o) = &d.occupation {
            check_len(&mut v, &f("demographics.occupation"), o, 1, 100);
        }
        if let Some(r) = &d.region {
            check_len(&mut v, &f("demographics.region"), r, 1, 100);
        }
        let fi = &self.firmographics;
        if let Some(m) = &fi.annual_revenue {
            check_money(&mut v, &f("firmographics.annual_revenue"), m, false);
        }
        if let Some(s) = fi.share_of_wallet {
            v.check(
                s.is_finite() && (0.0..=1.0).contains(&s),
                f("firmographics.share_of_wallet"),
                "must be a fraction between 0 and 1",
            );
        }
        let a = &self.acquisition;
        if let Some(c) = &a.channel {
            check_token(&mut v, &f("acquisition.channel"), c, 64);
        }
        if let Some(t) = a.acquire_time {
            v.check(
                t <= now + chrono::Duration::days(1),
                f("acquisition.acquire_time"),
                "must not be in the future",
            );
        }
        if let Some(m) = &a.cost {
            check_money(&mut v, &f("acquisition.cost"), m, false);
        }
        if self.tags.len() > MAX_TAGS {
            v.add(f("tags"), format!("at most {MAX_TAGS} tags"));
        }
        for (i, t) in self.tags.iter().enumerate() {
            v.check(
                is_tag(t),
                format!("{prefix}.tags[{i}]"),
                "tags are 1-64 characters of a-z, 0-9, '-', '.', ':' and start with a letter or digit",
            );
        }
        if self.attributes.len() > MAX_ATTRIBUTES {
            v.add(
                f("attributes"),
                format!("at most {MAX_ATTRIBUTES} attributes"),
            );
        }
        for (k, val) in &self.attributes {
            v.check(
                is_attribute_key(k),
                format!("{prefix}.attributes[{k:?}]"),
                "keys are 1-64 characters of letters, digits and '_', starting with a letter",
            );
            if val.chars().count() > 1024 {
                v.add(
                    format!("{prefix}.attributes[{k:?}]"),
                    "values are at most 1024 characters",
                );
            }
        }
        if self.identities.len() > MAX_IDENTITIES {
            v.add(
                f("identities"),
                format!("at most {MAX_IDENTITIES} identities"),
            );
        }
        for (i, id) in self.identities.iter().enumerate() {
            check_token(
                &mut v,
                &format!("{prefix}.identities[{i}].namespace"),
                &id.namespace,
                64,
            );
            check_len(
                &mut v,
                &format!("{prefix}.identities[{i}].value"),
                &id.value,
                1,
                256,
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, id) in self.identities.iter().enumerate() {
            if !seen.insert(&id.namespace) {
                v.add(
                    format!("{prefix}.identities[{i}].namespace"),
                    "a customer has at most one identity per namespace",
                );
            }
        }
        v
    }
}

impl Customer {
    /// A new customer from validated input.
    pub fn create(id: String, input: CustomerInput, now: DateTime<Utc>) -> Customer {
        Customer {
            id,
            kind: input.kind.unwrap_or(CustomerKind::Individual),
            display_name: input.display_name,
            email: input.email,
            phone: input.phone,
            demographics: input.demographics,
            firmographics: input.firmographics,
            acquisition: input.acquisition,
            tags: input.tags,
            attributes: input.attributes,
            identities: input.identities,
            consents: Vec::new(),
            merged_ids: Vec::new(),
            create_time: now,
            update_time: now,
            version: 1,
            erased: false,
        }
    }

    pub fn name(&self) -> String {
        customer_name(&self.id)
    }

    /// Opaque version tag (quoted, as in HTTP) for optimistic concurrency.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }

    /// Copies the masked paths of `patch` onto this customer; returns the paths
    /// whose value changed. Unknown paths are reported as violations.
    pub fn apply_update(
        &mut self,
        patch: CustomerInput,
        paths: &[String],
    ) -> Result<Vec<String>, FieldViolations> {
        let mut v = FieldViolations::new();
        if paths.is_empty() {
            v.add("update_mask", "must name at least one path");
        }
        for p in paths {
            if !UPDATABLE_PATHS.contains(&p.as_str()) {
                v.add(
                    "update_mask",
                    format!(
                        "unknown or read-only path {p:?}; updatable: {}",
                        UPDATABLE_PATHS.join(", ")
                    ),
                );
            }
        }
        if paths.iter().any(|p| p == "kind") && patch.kind.is_none() {
            v.add("customer.kind", "must be INDIVIDUAL or BUSINESS");
        }
        if paths.iter().any(|p| p == "display_name")
            && patch.display_name.as_deref().is_none_or(str::is_empty)
        {
            v.add("customer.display_name", "must not be empty");
        }
        if !v.is_empty() {
            return Err(v);
        }
        let before = self.clone();
        let p = patch;
        for path in paths {
            match path.as_str() {
                "kind" => self.kind = p.kind.unwrap_or(self.kind),
                "display_name" => self.display_name = p.display_name.clone(),
                "email" => self.email = p.email.clone(),
                "phone" => self.phone = p.phone.clone(),
                "demographics" => self.demographics = p.demographics.clone(),
                "demographics.gender" => self.demographics.gender = p.demographics.gender,
                "demographics.birth_year" => {
                    self.demographics.birth_year = p.demographics.birth_year
                }
                "demographics.education" => self.demographics.education = p.demographics.education,
                "demographics.occupation" => {
                    self.demographics.occupation = p.demographics.occupation.clone()
                }
                "demographics.income_band" => {
                    self.demographics.income_band = p.demographics.income_band
                }
                "demographics.region" => self.demographics.region = p.demographics.region.clone(),
                "firmographics" => self.firmographics = p.firmographics.clone(),
                "firmographics.annual_revenue" => {
                    self.firmographics.annual_revenue = p.firmographics.annual_revenue.clone()
                }
                "firmographics.credit_rating" => {
                    self.firmographics.credit_rating = p.firmographics.credit_rating
                }
                "firmographics.business_condition" => {
                    self.firmographics.business_condition = p.firmographics.business_condition
                }
                "firmographics.share_of_wallet" => {
                    self.firmographics.share_of_wallet = p.firmographics.share_of_wallet
                }
                "acquisition" => self.acquisition = p.acquisition.clone(),
                "acquisition.channel" => self.acquisition.channel = p.acquisition.channel.clone(),
                "acquisition.acquire_time" => {
                    self.acquisition.acquire_time = p.acquisition.acquire_time
                }
                "acquisition.cost" => self.acquisition.cost = p.acquisition.cost.clone(),
                "tags" => self.tags = p.tags.clone(),
                "attributes" => self.attributes = p.attributes.clone(),
                "identities" => self.identities = p.identities.clone(),
                _ => {}
            }
        }
        let changed = paths
            .iter()
            .filter(|path| field_differs(&before, self, path))
            .cloned()
            .collect();
        Ok(changed)
    }

    /// Replaces personal data with masks for callers without `pii.read`.
    pub fn mask_pii(&mut self) {
        self.display_name = self.display_name.as_deref().map(mask_name);
        self.email = self.email.as_deref().map(mask_email);
        self.phone = self.phone.as_deref().map(mask_phone);
    }

    /// Irreversibly drops personal data, keeping only what anonymous analytics need
    /// (kind, firmographics, acquisition facts).
    pub fn erase(&mut self, now: DateTime<Utc>) {
        self.display_name = None;
        self.email = None;
        self.phone = None;
        self.demographics = Demographics::default();
        self.tags.clear();
        self.attributes.clear();
        self.identities.clear();
        self.consents.clear();
        self.erased = true;
        self.update_time = now;
        self.version += 1;
    }

    /// Sets the consent for one channel; false when nothing changed.
    pub fn set_consent(&mut self, consent: Consent) -> bool {
        match self
            .consents
            .iter_mut()
            .find(|c| c.channel == consent.channel)
        {
            Some(c) if c.status == consent.status && c.source == consent.source => false,
            Some(c) => {
                *c = consent;
                true
            }
            None => {
                self.consents.push(consent);
                self.consents.sort_by_key(|c| c.channel.as_str());
                true
            }
        }
    }
}

fn field_differs(a: &Customer, b: &Customer, path: &str) -> bool {
    match path.split('.').next().unwrap_or("") {
        "kind" => a.kind != b.kind,
        "display_name" => a.display_name != b.display_name,
        "email" => a.email != b.email,
        "phone" => a.phone != b.phone,
        "demographics" => a.demographics != b.demographics,
        "firmographics" => a.firmographics != b.firmographics,
        "acquisition" => a.acquisition != b.acquisition,
        "tags" => a.tags != b.tags,
        "attributes" => a.attributes != b.attributes,
        "identities" => a.identities != b.identities,
        _ => false,
    }
}

pub fn customer_name(id: &str) -> String {
    format!("customers/{id}")
}

/// The id inside "customers/{id}"; ids are UUIDs, so anything else is malformed.
pub fn parse_customer_name(name: &str) -> Option<String> {
    let id = name.strip_prefix("customers/")?;
    uuid::Uuid::parse_str(id)
        .ok()
        .filter(|u| u.hyphenated().to_string() == id)
        .map(|_| id.to_string())
}

fn trim_opt(s: &mut Option<String>) {
    if let Some(v) = s.as_mut() {
        let t = v.trim();
        if t.len() != v.len() {
            *v = t.to_string();
        }
    }
    if s.as_deref() == Some("") {
        *s = None;
    }
}

fn mask_name(n: &str) -> String {
    let first: String = n.chars().take(1).collect();
    format!("{first}***")
}

fn mask_email(e: &str) -> String {
    match e.split_once('@') {
        Some((local, domain)) => {
            format!("{}***@{domain}", local.chars().take(1).collect::<String>())
        }
        None => "***".into(),
    }
}

fn mask_phone(p: &str) -> String {
    let digits: Vec<char> = p.chars().filter(|c| c.is_ascii_digit()).collect();
    let tail: String = digits[digits.len().saturating_sub(2)..].iter().collect();
    format!("***{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> CustomerInput {
        CustomerInput {
            kind: Some(CustomerKind::Individual),
            display_name: Some("  Li Lei ".into()),
            email: Some("Li.Lei@Example.COM".into()),
            phone: Some("+86 138-0013-8000".into()),
            tags: vec!["vip".into(), "vip".into(), "b2c".into()],
            ..Default::default()
        }
    }

    #[test]
    fn normalize_trims_lowercases_and_dedupes() {
        let mut i = input();
        i.normalize();
        assert_eq!(i.display_name.as_deref(), Some("Li Lei"));
        assert_eq!(i.email.as_deref(), Some("li.lei@example.com"));
        assert_eq!(i.phone.as_deref(), Some("+8613800138000"));
        assert_eq!(i.tags, vec!["b2c", "vip"]);
        assert!(i.validate("customer", true, Utc::now()).is_empty());
    }

    #[test]
    fn create_requires_kind_and_name() {
        let v = CustomerInput::default().validate("customer", true, Utc::now());
        let fields: Vec<_> = v.iter().map(|(f, _)| f.to_string()).collect();
        assert_eq!(fields, vec!["customer.kind", "customer.display_name"]);
    }

    #[test]
    fn bad_fields_are_each_reported() {
        let mut i = input();
        i.email = Some("not-an-email".into());
        i.phone = Some("12".into());
        i.demographics.birth_year = Some(1700);
        i.firmographics.share_of_wallet = Some(1.5);
        i.firmographics.annual_revenue = Some(Money {
            currency: "eur".into(),
            minor_units: -1,
        });
        i.display_name = Some("x".repeat(201));
        let v = i.validate("customer", true, Utc::now());
        let fields: Vec<_> = v.iter().map(|(f, _)| f.to_string()).collect();
        for expected in [
            "customer.display_name",
            "customer.email",
            "customer.phone",
            "customer.demographics.birth_year",
            "customer.firmographics.annual_revenue.currency_code",
            "customer.firmographics.annual_revenue.minor_units",
            "customer.firmographics.share_of_wallet",
        ] {
            assert!(
                fields.contains(&expected.to_string()),
                "{expected} missing in {fields:?}"
            );
        }
    }

    #[test]
    fn update_touches_only_masked_paths_and_reports_changes() {
        let mut c = Customer::create("id".into(), input(), Utc::now());
        let patch = CustomerInput {
            email: Some("new@example.com".into()),
            display_name: Some("Ignored".into()),
            ..Default::default()
        };
        let changed = c.apply_update(patch, &["email".into()]).unwrap();
        assert_eq!(changed, vec!["email"]);
        assert_eq!(c.email.as_deref(), Some("new@example.com"));
        assert_eq!(c.display_name.as_deref(), Some("  Li Lei "));
    }

    #[test]
    fn update_rejects_unknown_paths_and_empty_masks() {
        let mut c = Customer::create("id".into(), input(), Utc::now());
        let err = c
            .apply_update(CustomerInput::default(), &["create_time".into()])
            .unwrap_err();
        assert_eq!(err.iter().next().unwrap().0, "update_mask");
        assert!(c.apply_update(CustomerInput::default(), &[]).is_err());
    }

    #[test]
    fn masking_hides_pii() {
        let mut i = input();
        i.normalize();
        let mut c = Customer::create("id".into(), i, Utc::now());
        c.email = Some("li.lei@example.com".into());
        c.phone = Some("+8613800138000".into());
        c.mask_pii();
        assert_eq!(c.display_name.as_deref(), Some("L***"));
        assert_eq!(c.email.as_deref(), Some("l***@example.com"));
        assert_eq!(c.phone.as_deref(), Some("***00"));
    }

    #[test]
    fn erase_removes_personal_data_and_bumps_version() {
        let mut c = Customer::create("id".into(), input(), Utc::now());
        c.identities.push(Identity {
            namespace: "crm".into(),
            value: "42".into(),
        });
        c.erase(Utc::now());
        assert!(c.erased);
        assert!(c.display_name.is_none() && c.email.is_none() && c.phone.is_none());
        assert!(c.identities.is_empty() && c.tags.is_empty());
        assert_eq!(c.version, 2);
    }

    #[test]
    fn customer_names_are_strict() {
        let id = uuid::Uuid::now_v7().to_string();
        assert_eq!(
            parse_customer_name(&format!("customers/{id}")),
            Some(id.clone())
        );
        assert_eq!(parse_customer_name(&id), None);
        assert_eq!(parse_customer_name("customers/xyz"), None);
        assert_eq!(
            parse_customer_name(&format!("customers/{}", id.to_uppercase())),
            None
        );
    }

    #[test]
    fn consent_changes_are_detected() {
        let mut c = Customer::create("id".into(), input(), Utc::now());
        let consent = Consent {
            channel: ContactChannel::Email,
            status: ConsentStatus::Granted,
            source: "web".into(),
            update_time: Utc::now(),
        };
        assert!(c.set_consent(consent.clone()));
        assert!(!c.set_consent(consent.clone()));
        assert!(c.set_consent(Consent {
            status: ConsentStatus::Withdrawn,
            ..consent
        }));
        assert_eq!(c.consents.len(), 1);
    }
}
