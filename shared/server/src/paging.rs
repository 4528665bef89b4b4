//! AIP-158 pagination shared by every List method: page sizes checked the same way
//! and opaque page tokens bound to the query they were issued for.

use base64::Engine;
use chrono::{DateTime, Utc};
use retention_errors::FieldViolations;

pub const MAX_PAGE_SIZE: i32 = 1000;
pub const DEFAULT_PAGE_SIZE: i32 = 50;

/// The effective page size; out-of-range values are recorded as violations.
pub fn page_size(size: i32, v: &mut FieldViolations) -> u64 {
    if !(0..=MAX_PAGE_SIZE).contains(&size) {
        v.add(
            "page_size",
            format!("must be between 0 and {MAX_PAGE_SIZE}"),
        );
    }
    if size == 0 {
        DEFAULT_PAGE_SIZE as u64
    } else {
        size.clamp(1, MAX_PAGE_SIZE) as u64
    }
}

fn engine() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// A token for the page after `cursor`. `kind` names the list and `query` its
/// filter, so a token cannot be replayed against another query and silently skip rows.
pub fn encode_token(kind: &str, query: &str, cursor: &str) -> String {
    engine().encode(serde_json::json!({ "k": kind, "f": query, "c": cursor }).to_string())
}

/// The cursor inside `token` (None for the first page); a foreign or damaged token
/// is recorded as a violation of `page_token`.
pub fn decode_token(
    token: &str,
    kind: &str,
    query: &str,
    v: &mut FieldViolations,
) -> Option<String> {
    if token.is_empty() {
        return None;
    }
    let parsed = engine()
        .decode(token)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    match parsed {
        Some(j) if j["k"] == kind && j["f"] == query => j["c"].as_str().map(String::from),
        Some(j) if j["k"] == kind => {
            v.add("page_token", "was issued for a different filter");
            None
        }
        _ => {
            v.add("page_token", "is not a valid page token");
            None
        }
    }
}

/// Cuts `rows`, fetched with `limit + 1`, to the page; returns the cursor of the
/// next page (None on the last one).
pub fn split_page<T>(
    mut rows: Vec<T>,
    limit: u64,
    cursor: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next = rows.last().filter(|_| more).map(cursor);
    (rows, next)
}

/// The keyset cursor of a newest-first listing: `"<rfc3339>|<id>"`.
pub fn time_key(t: DateTime<Utc>, id: &str) -> String {
    format!("{}|{id}", t.to_rfc3339())
}

/// The (time, id) inside a [`time_key`] cursor; None when it is not one.
pub fn parse_time_key(c: &str) -> Option<(DateTime<Utc>, String)> {
    let (t, id) = c.split_once('|')?;
    Some((
        DateTime::parse_from_rfc3339(t).ok()?.with_timezone(&Utc),
        id.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_query() {
        let t = encode_token("customers", "kind == \"BUSINESS\"", "abc");
        let mut v = FieldViolations::new();
        assert_eq!(
            decode_token(&t, "customers", "kind == \"BUSINESS\"", &mut v).as_deref(),
            Some("abc")
        );
        assert!(v.is_empty());
        assert_eq!(decode_token(&t, "customers", "other", &mut v), None);
        assert_eq!(decode_token("%%%", "customers", "", &mut v), None);
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn pages_split_and_time_keys_round_trip() {
        let (page, next) = split_page(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!((page, next.as_deref()), (vec![1, 2], Some("2")));
        let (page, next) = split_page(vec![1, 2], 2, |n| n.to_string());
        assert_eq!((page, next), (vec![1, 2], None));
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap();
        assert_eq!(parse_time_key(&time_key(t, "a|b")), Some((t, "a|b".into())));
        assert_eq!(parse_time_key("yesterday|x"), None);
    }

    #[test]
    fn page_sizes() {
        let mut v = FieldViolations::new();
        assert_eq!(page_size(0, &mut v), 50);
        assert_eq!(page_size(10, &mut v), 10);
        assert!(v.is_empty());
        page_size(-1, &mut v);
        page_size(1001, &mut v);
        assert_eq!(v.len(), 2);
    }
}
