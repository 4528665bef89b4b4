//! The request of the owners' BackfillEvents methods (profile, interactions),
//! checked the same way in each: the consumer group the replay is for, the
//! customer id range, and the page of it one call replays.

use retention_db::audit::AuditEntry;
use retention_errors::FieldViolations;

use crate::paging::{decode_token, encode_token};

/// Customers per call when the caller gives no page size.
pub const DEFAULT_BACKFILL_PAGE: i32 = 500;
/// At most this many customers per call: one call is one transaction.
pub const MAX_BACKFILL_PAGE: i32 = 1000;
const MAX_GROUP: usize = 64;
const MAX_BOUND: usize = 64;
const TOKEN_KIND: &str = "backfill";

/// One page of a backfill: which group, which customers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillPage {
    /// The consumer group the replayed events are addressed to.
    pub group: String,
    /// Customer ids from this one (inclusive); `None`: from the first.
    pub from: Option<String>,
    /// Customer ids before this one (exclusive); `None`: through the last.
    pub to: Option<String>,
    /// Customer ids after this one (the previous page's last); `None` on the first page.
    pub after: Option<String>,
    /// Customers in this page.
    pub limit: u64,
}

impl BackfillPage {
    /// Whether customer `id` belongs to this page's part of the range.
    pub fn contains(&self, id: &str) -> bool {
        self.from.as_deref().is_none_or(|f| id >= f)
            && self.to.as_deref().is_none_or(|t| id < t)
            && self.after.as_deref().is_none_or(|a| id > a)
    }

    /// The token of the page after the customer `last`.
    pub fn next_token(&self, last: &str) -> String {
        encode_token(TOKEN_KIND, &self.query(), last)
    }

    fn query(&self) -> String {
        query(
            &self.group,
            self.from.as_deref().unwrap_or_default(),
            self.to.as_deref().unwrap_or_default(),
        )
    }
}

fn query(group: &str, from: &str, to: &str) -> String {
    format!("{group}\u{1f}{from}\u{1f}{to}")
}

/// A consumer group name: 1 to 64 of `a-z`, `0-9`, `_` and `-`.
pub fn valid_group(group: &str) -> bool {
    (1..=MAX_GROUP).contains(&group.len())
        && group
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The page a BackfillEvents request asks for; what is wrong with it is recorded
/// in `v` under the request's field names.
pub fn backfill_page(
    consumer_group: &str,
    customer_id_from: &str,
    customer_id_to: &str,
    page_size: i32,
    page_token: &str,
    v: &mut FieldViolations,
) -> BackfillPage {
    if consumer_group.is_empty() {
        v.add("consumer_group", "is required");
    } else if !valid_group(consumer_group) {
        v.add(
            "consumer_group",
            format!("must be 1 to {MAX_GROUP} of a-z, 0-9, '_' and '-'"),
        );
    }
    for (field, bound) in [
        ("customer_id_from", customer_id_from),
        ("customer_id_to", customer_id_to),
    ] {
        v.check(
            bound.len() <= MAX_BOUND,
            field,
            format!("must be at most {MAX_BOUND} characters"),
        );
    }
    if !customer_id_from.is_empty()
        && !customer_id_to.is_empty()
        && customer_id_from >= customer_id_to
    {
        v.add(
            "customer_id_to",
            "must sort after customer_id_from (the range is [from, to))",
        );
    }
    if !(0..=MAX_BACKFILL_PAGE).contains(&page_size) {
        v.add(
            "page_size",
            format!("must be between 0 and {MAX_BACKFILL_PAGE}"),
        );
    }
    let limit = if page_size == 0 {
        DEFAULT_BACKFILL_PAGE
    } else {
        page_size.clamp(1, MAX_BACKFILL_PAGE)
    } as u64;
    let after = decode_token(
        page_token,
        TOKEN_KIND,
        &query(consumer_group, customer_id_from, customer_id_to),
        v,
    );
    let bound = |s: &str| (!s.is_empty()).then(|| s.to_string());
    BackfillPage {
        group: consumer_group.to_string(),
        from: bound(customer_id_from),
        to: bound(customer_id_to),
        after,
        limit,
    }
}

/// What a BackfillEvents call asks: the same fields in each owner's request.
#[derive(Debug, Clone, Copy)]
pub struct BackfillRequest<'a> {
    pub consumer_group: &'a str,
    pub customer_id_from: &'a str,
    pub customer_id_to: &'a str,
    pub page_size: i32,
    pub page_token: &'a str,
}

/// What a BackfillEvents call answers.
#[derive(Debug, Clone, Default)]
pub struct BackfillAnswer {
    pub customer_count: i64,
    pub event_counts: std::collections::HashMap<String, i64>,
    pub next_page_token: String,
}

/// The owners' requests and responses carry the same fields.
macro_rules! owner_messages {
    ($($pb:ident),*) => {$(
        impl<'a> From<&'a retention_proto::$pb::BackfillEventsRequest> for BackfillRequest<'a> {
            fn from(r: &'a retention_proto::$pb::BackfillEventsRequest) -> Self {
                BackfillRequest {
                    consumer_group: &r.consumer_group,
                    customer_id_from: &r.customer_id_from,
                    customer_id_to: &r.customer_id_to,
                    page_size: r.page_size,
                    page_token: &r.page_token,
                }
            }
        }

        impl From<BackfillAnswer> for retention_proto::$pb::BackfillEventsResponse {
            fn from(a: BackfillAnswer) -> Self {
                retention_proto::$pb::BackfillEventsResponse {
                    customer_count: a.customer_count,
                    event_counts: a.event_counts,
                    next_page_token: a.next_page_token,
                }
            }
        }
    )*};
}

owner_messages!(profile, interactions);

/// The action backfills are audited as.
pub const ACTION: &str = "events.backfill";

/// One BackfillEvents call recorded as `audit` (the caller's entry for
/// [`ACTION`] on the consumer group): the request checked (field violations as
/// INVALID_ARGUMENT), the page replayed by `replay` in one transaction that also
/// appends `audit` to the audit trail, and the token of the next page when more
/// of the range follows.
pub async fn backfill<E>(
    audit: AuditEntry,
    req: BackfillRequest<'_>,
    replay: impl AsyncFnOnce(&BackfillPage, &AuditEntry) -> Result<retention_events::ReplayCounts, E>,
) -> Result<BackfillAnswer, tonic::Status>
where
    tonic::Status: From<E>,
{
    let mut v = FieldViolations::new();
    let page = backfill_page(
        req.consumer_group,
        req.customer_id_from,
        req.customer_id_to,
        req.page_size,
        req.page_token,
        &mut v,
    );
    v.into_result()?;
    let counts = replay(&page, &audit).await?;
    crate::audit::log(&audit);
    Ok(BackfillAnswer {
        customer_count: counts.customers,
        event_counts: counts.events.into_iter().collect(),
        next_page_token: counts
            .next_after
            .map(|last| page.next_token(&last))
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: &FieldViolations) -> Vec<&str> {
        v.iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn a_group_is_required_and_named_like_a_consumer_group() {
        for (group, ok) in [
            ("segmentation", true),
            ("late_joiner-2", true),
            ("", false),
            ("Segmentation", false),
            ("a b", false),
            ("x".repeat(65).as_str(), false),
            ("x".repeat(64).as_str(), true),
        ] {
            let mut v = FieldViolations::new();
            backfill_page(group, "", "", 0, "", &mut v);
            assert_eq!(v.is_empty(), ok, "{group:?}");
            if !ok {
                assert_eq!(fields(&v), ["consumer_group"]);
            }
        }
    }

    #[test]
    fn the_range_is_half_open_and_must_not_be_empty() {
        let mut v = FieldViolations::new();
        backfill_page("g", "b", "b", 0, "", &mut v);
        backfill_page("g", "c", "b", 0, "", &mut v);
        assert_eq!(fields(&v), ["customer_id_to", "customer_id_to"]);
        let mut v = FieldViolations::new();
        let p = backfill_page("g", "b", "d", 0, "", &mut v);
        assert!(v.is_empty());
        assert!(!p.contains("a") && p.contains("b") && p.contains("c") && !p.contains("d"));
        assert_eq!(p.limit, DEFAULT_BACKFILL_PAGE as u64);
    }

    #[test]
    fn a_page_token_continues_only_its_own_range_and_group() {
        let mut v = FieldViolations::new();
        let first = backfill_page("g", "a", "z", 2, "", &mut v);
        let token = first.next_token("m");
        let next = backfill_page("g", "a", "z", 2, &token, &mut v);
        assert!(v.is_empty());
        assert_eq!(next.after.as_deref(), Some("m"));
        assert!(!next.contains("m") && next.contains("n"));
        backfill_page("other", "a", "z", 2, &token, &mut v);
        backfill_page("g", "a", "y", 2, &token, &mut v);
        backfill_page("g", "", "", 1001, "junk", &mut v);
        assert_eq!(
            fields(&v),
            ["page_token", "page_token", "page_size", "page_token"]
        );
    }
}
