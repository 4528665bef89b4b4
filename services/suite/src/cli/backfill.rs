//! `retention-cli backfill <consumer>`: rebuild a read model from its owners. Each
//! owner (profile, interactions) replays the current state of a customer range as
//! events addressed to the one consumer group, a page of customers per call, until
//! the range is done. Consumers apply the replay idempotently, so running it again,
//! or over a read model that lost only some events, changes nothing already there.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use retention_proto::interactions as ipb;
use retention_proto::profile as ppb;
use tonic::Code;

use super::Clients;
use super::show::table;

/// A service whose state a backfill replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    Profile,
    Interactions,
}

impl Owner {
    pub fn name(self) -> &'static str {
        match self {
            Owner::Profile => "profile",
            Owner::Interactions => "interactions",
        }
    }

    pub fn parse(s: &str) -> Option<Owner> {
        match s {
            "profile" => Some(Owner::Profile),
            "interactions" => Some(Owner::Interactions),
            _ => None,
        }
    }

    /// The owners whose streams `consumer` reads: the suite's own consumers as
    /// they are built, both for any other (a new consumer joining late).
    pub fn read_by(consumer: &str) -> Vec<Owner> {
        match consumer {
            "interactions" => vec![Owner::Profile],
            _ => vec![Owner::Profile, Owner::Interactions],
        }
    }
}

/// Which customers a backfill covers, and for which group.
#[derive(Debug, Clone, Default)]
pub struct BackfillPlan {
    /// The consumer group the replay is for, e.g. "segmentation".
    pub consumer: String,
    /// First customer id (inclusive); empty: from the first.
    pub from: String,
    /// Customer id to stop before (exclusive); empty: through the last.
    pub to: String,
    /// Customers per call; 0: the service's default.
    pub page_size: i32,
}

/// What one owner replayed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    pub customers: i64,
    /// Events enqueued per type (full names).
    pub events: BTreeMap<String, i64>,
    pub calls: usize,
}

/// Each call's deadline: one page is one transaction, well inside this (the
/// server also caps a call at its own request timeout).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// A page that failed transiently is asked again (the same page token: a
/// replay enqueued twice changes nothing) this many times.
const RETRIES: u32 = 4;

fn transient(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted
    )
}

/// One page from `owner`: (customers, events by type, next page token).
async fn page(
    c: &Clients,
    owner: Owner,
    plan: &BackfillPlan,
    token: &str,
) -> Result<(i64, BTreeMap<String, i64>, String), tonic::Status> {
    let mut attempt = 0;
    loop {
        let result = match owner {
            Owner::Profile => {
                let mut req = c.req(ppb::BackfillEventsRequest {
                    consumer_group: plan.consumer.clone(),
                    customer_id_from: plan.from.clone(),
                    customer_id_to: plan.to.clone(),
                    page_size: plan.page_size,
                    page_token: token.to_string(),
                });
                req.set_timeout(CALL_TIMEOUT);
                c.profile.clone().backfill_events(req).await.map(|r| {
                    let r = r.into_inner();
                    (r.customer_count, r.event_counts, r.next_page_token)
                })
            }
            Owner::Interactions => {
                let mut req = c.req(ipb::BackfillEventsRequest {
                    consumer_group: plan.consumer.clone(),
                    customer_id_from: plan.from.clone(),
                    customer_id_to: plan.to.clone(),
                    page_size: plan.page_size,
                    page_token: token.to_string(),
                });
                req.set_timeout(CALL_TIMEOUT);
                c.interactions.clone().backfill_events(req).await.map(|r| {
                    let r = r.into_inner();
                    (r.customer_count, r.event_counts, r.next_page_token)
                })
            }
        };
        match result {
            Ok((n, events, next)) => return Ok((n, events.into_iter().collect(), next)),
            Err(s) if transient(&s) && attempt < RETRIES => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
            }
            Err(s) => return Err(s),
        }
    }
}

/// Replays `plan`'s range from `owner`, every page; a running count on stderr
/// when it is a terminal, unless `quiet`.
pub async fn backfill_from(
    c: &Clients,
    owner: Owner,
    plan: &BackfillPlan,
    quiet: bool,
) -> anyhow::Result<Replayed> {
    let quiet = !super::show::draws_progress(quiet, super::show::stderr_is_terminal());
    let mut out = Replayed::default();
    let mut token = String::new();
    loop {
        let (n, events, next) = page(c, owner, plan, &token).await.map_err(|s| {
            anyhow::anyhow!(
                "{} BackfillEvents failed after {} customers: {} ({:?})",
                owner.name(),
                out.customers,
                s.message(),
                s.code()
            )
        })?;
        out.calls += 1;
        out.customers += n;
        for (t, k) in events {
            *out.events.entry(t).or_default() += k;
        }
        if !quiet {
            let total: i64 = out.events.values().sum();
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "\r{:<14} {} customers, {total} events",
                owner.name(),
                out.customers
            );
            let _ = err.flush();
        }
        if next.is_empty() {
            if !quiet {
                eprintln!();
            }
            return Ok(out);
        }
        token = next;
    }
}

/// Replays `plan` from each of `owners` in turn.
pub async fn backfill(
    c: &Clients,
    plan: &BackfillPlan,
    owners: &[Owner],
    quiet: bool,
) -> anyhow::Result<Vec<(Owner, Replayed)>> {
    let mut out = Vec::with_capacity(owners.len());
    for owner in owners {
        out.push((*owner, backfill_from(c, *owner, plan, quiet).await?));
    }
    Ok(out)
}

/// The counts as a table: one row per owner and event type.
pub fn report(consumer: &str, replayed: &[(Owner, Replayed)]) -> String {
    let mut rows = Vec::new();
    for (owner, r) in replayed {
        rows.push(vec![
            owner.name().to_string(),
            "customers".to_string(),
            r.customers.to_string(),
        ]);
        for (t, n) in &r.events {
            let short = t.rsplit('.').next().unwrap_or(t);
            rows.push(vec![
                owner.name().to_string(),
                short.to_string(),
                n.to_string(),
            ]);
        }
    }
    format!(
        "Replayed for consumer group \"{consumer}\" (applied by it alone, idempotently):\n{}",
        table(&["owner", "what", "count"], &rows)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_follow_what_each_consumer_reads() {
        assert_eq!(Owner::read_by("interactions"), vec![Owner::Profile]);
        assert_eq!(
            Owner::read_by("segmentation"),
            vec![Owner::Profile, Owner::Interactions]
        );
        assert_eq!(Owner::read_by("new-consumer").len(), 2);
        assert_eq!(Owner::parse("profile"), Some(Owner::Profile));
        assert_eq!(Owner::parse("winback"), None);
    }

    #[test]
    fn the_report_lists_each_owner_and_event_type() {
        let r = Replayed {
            customers: 2,
            events: BTreeMap::from([("retention.profile.v1.PurchaseRecordedEvent".into(), 5)]),
            calls: 1,
        };
        let text = report("segmentation", &[(Owner::Profile, r)]);
        assert!(text.contains("\"segmentation\""), "{text}");
        assert!(text.contains("PurchaseRecordedEvent"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("profile") && l.ends_with(" 5"))
        );
    }
}
