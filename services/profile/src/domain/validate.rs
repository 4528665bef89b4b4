//! Field-level syntax rules shared by the customer and purchase rules.

use retention_errors::FieldViolations;

use super::money::Money;

/// The longest e-mail address accepted (RFC 5321's path limit less the brackets).
pub const MAX_EMAIL: usize = 254;

pub fn check_len(v: &mut FieldViolations, field: &str, s: &str, min: usize, max: usize) {
    let n = s.chars().count();
    if n < min {
        v.add(field, "must not be empty");
    } else if n > max {
        v.add(field, format!("must be at most {max} characters (got {n})"));
    }
}

/// Identifiers such as channels and namespaces: printable, no spaces or slashes.
pub fn check_token(v: &mut FieldViolations, field: &str, s: &str, max: usize) {
    let n = s.chars().count();
    if n == 0 {
        v.add(field, "must not be empty");
    } else if n > max {
        v.add(field, format!("must be at most {max} characters (got {n})"));
    } else if !s
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        v.add(
            field,
            "may contain only letters, digits, '-', '_', '.' and ':'",
        );
    }
}

/// A money field: an ISO 4217 code and an amount within [`retention_domain::MAX_MINOR_UNITS`] either
/// way (so sums over many amounts stay far inside an `i64`), not negative unless
/// `allow_negative`.
pub fn check_money(v: &mut FieldViolations, field: &str, m: &Money, allow_negative: bool) {
    retention_errors::money::check_money(v, field, &m.currency, m.minor_units, allow_negative);
}

pub use retention_errors::money::out_of_bounds_message;

pub fn is_currency(c: &str) -> bool {
    c.len() == 3 && c.chars().all(|ch| ch.is_ascii_uppercase())
}

/// Deliberately simple: one '@', a non-empty local part, a dotted domain, no spaces.
/// Deliverability is the mail system's job; this catches typos and garbage.
pub fn is_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && domain.split('.').count() >= 2
        && domain.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

/// Removes the separators people type in phone numbers.
pub fn compact_phone(p: &str) -> String {
    p.chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect()
}

/// E.164-like after compaction.
pub fn is_phone(p: &str) -> bool {
    let digits = p.strip_prefix('+').unwrap_or(p);
    (7..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit())
}

/// Tags are stored as `|a|b|` and matched with LIKE, so they exclude '|' and the
/// LIKE wildcards by construction.
pub fn is_tag(t: &str) -> bool {
    let mut chars = t.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && t.len() <= 64
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':'))
}

pub fn is_attribute_key(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && k.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use retention_domain::MAX_MINOR_UNITS;

    fn money_violations(minor_units: i64, allow_negative: bool) -> Vec<(String, String)> {
        let mut v = FieldViolations::new();
        let m = Money {
            currency: "EUR".into(),
            minor_units,
        };
        check_money(&mut v, "p.amount", &m, allow_negative);
        v.iter()
            .map(|(f, d)| (f.to_string(), d.to_string()))
            .collect()
    }

    #[test]
    fn money_is_bounded_both_ways() {
        for ok in [0, 1, MAX_MINOR_UNITS] {
            assert!(money_violations(ok, false).is_empty(), "{ok}");
        }
        assert!(money_violations(-MAX_MINOR_UNITS, true).is_empty());
        for (bad, allow_negative) in [
            (MAX_MINOR_UNITS + 1, false),
            (1 << 62, false),
            (i64::MAX, true),
            (-MAX_MINOR_UNITS - 1, true),
            (i64::MIN, true),
            // Out of bounds and negative: one violation, the bound.
            (i64::MIN, false),
        ] {
            let got = money_violations(bad, allow_negative);
            assert_eq!(
                got,
                vec![("p.amount.minor_units".to_string(), out_of_bounds_message())],
                "{bad}"
            );
        }
        assert!(out_of_bounds_message().contains("1000000000000000"));
        // The negative rule is unchanged within the bound.
        assert_eq!(
            money_violations(-1, false),
            vec![(
                "p.amount.minor_units".to_string(),
                "must not be negative".to_string()
            )]
        );
    }

    #[test]
    fn emails() {
        assert!(is_email("a@b.co"));
        assert!(is_email("first.last+tag@mail.example.com"));
        for bad in [
            "", "a", "a@", "@b.co", "a@b", "a b@c.de", "a@b..c", "a@@b.co",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn phones() {
        assert!(is_phone(&compact_phone("+86 (138) 0013-8000")));
        assert!(!is_phone("12345"));
        assert!(!is_phone("+12ab5678901"));
    }

    #[test]
    fn tags_and_keys() {
        assert!(is_tag("vip") && is_tag("tier:gold") && is_tag("2024-cohort"));
        assert!(!is_tag("VIP") && !is_tag("a_b") && !is_tag("a|b") && !is_tag("%") && !is_tag(""));
        assert!(
            is_attribute_key("plan_tier")
                && !is_attribute_key("9lives")
                && !is_attribute_key("a-b")
        );
    }
}
