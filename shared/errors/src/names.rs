//! Validation of the request fields every service shares: resource names and
//! idempotency keys, reported as field violations.

use crate::FieldViolations;

/// The UUID inside `"<collection>/{uuid}"` (canonical lower-case hyphenated form).
pub fn parse_name(name: &str, collection: &str) -> Option<String> {
    let id = name.strip_prefix(collection)?.strip_prefix('/')?;
    uuid::Uuid::parse_str(id)
        .ok()
        .filter(|u| u.hyphenated().to_string() == id)
        .map(|_| id.to_string())
}

/// As [`parse_name`], recording a violation of `field` (and returning "") when the
/// name is malformed.
pub fn name_arg(name: &str, collection: &str, field: &str, v: &mut FieldViolations) -> String {
    parse_name(name, collection).unwrap_or_else(|| {
        v.add(
            field,
            format!("must be \"{collection}/{{uuid}}\", got {name:?}"),
        );
        String::new()
    })
}

/// `request_id` (AIP-155): optional, short, URL-safe.
pub fn check_request_id(v: &mut FieldViolations, id: &str) {
    v.check(
        id.len() <= 128
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "request_id",
        "must be at most 128 characters of letters, digits, '-' and '_' (a UUID is ideal)",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_canonical_uuids_in_the_collection() {
        let id = "0190a5e2-7c1d-7000-8000-000000000001";
        assert_eq!(
            parse_name(&format!("segments/{id}"), "segments"),
            Some(id.into())
        );
        assert_eq!(
            parse_name(&format!("segments/{}", id.to_uppercase()), "segments"),
            None
        );
        assert_eq!(parse_name(&format!("customers/{id}"), "segments"), None);
        assert_eq!(parse_name("segments/", "segments"), None);
        let mut v = FieldViolations::new();
        assert_eq!(name_arg("x", "segments", "name", &mut v), "");
        check_request_id(&mut v, "ok-1_2");
        check_request_id(&mut v, "not ok");
        let fields: Vec<&str> = v.iter().map(|(f, _)| f).collect();
        assert_eq!(fields, vec!["name", "request_id"]);
    }
}
