//! A request's money field checked the same way in every service: an ISO 4217
//! currency code and an amount within [`retention_domain::MAX_MINOR_UNITS`]
//! either way (negative only where the field allows it).

use retention_domain::{MAX_MINOR_UNITS, money_in_bounds};

use crate::FieldViolations;

/// What an amount beyond the bound is told.
pub fn out_of_bounds_message() -> String {
    format!("must be at most {MAX_MINOR_UNITS} in absolute value (MAX_MINOR_UNITS)")
}

/// Records what is wrong with the money field `field` (`<field>.currency_code`,
/// `<field>.minor_units`).
pub fn check_money(
    v: &mut FieldViolations,
    field: &str,
    currency_code: &str,
    minor_units: i64,
    allow_negative: bool,
) {
    if !money_in_bounds(minor_units) {
        v.add(format!("{field}.minor_units"), out_of_bounds_message());
    } else if !allow_negative && minor_units < 0 {
        v.add(format!("{field}.minor_units"), "must not be negative");
    }
    if !(currency_code.len() == 3 && currency_code.chars().all(|c| c.is_ascii_uppercase())) {
        v.add(
            format!("{field}.currency_code"),
            "must be a three-letter upper-case ISO 4217 code",
        );
    }
}
