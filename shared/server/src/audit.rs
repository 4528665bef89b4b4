//! The audit trail as every service serves and writes it: entries built from the
//! call (caller, request id, trace id), rows recorded before an answer goes out,
//! `ListAuditRecords` (scope `audit.read`) and the retention sweep. The chain
//! itself (hashing, verification) is `retention_db::audit`.
//!
//! Errors: a bad filter, page size or token is INVALID_ARGUMENT with field
//! violations; the database down is UNAVAILABLE.

use std::time::Duration;

use chrono::{DateTime, Utc};
use retention_db::audit::{self as chain, AuditEntry, AuditFilter, AuditRecord};
use retention_db::sea_orm::DatabaseConnection;
use retention_errors::FieldViolations;
use retention_proto::common::{self as pb, ListAuditRecordsResponse};
use tonic::{Request, Response, Status};

use crate::RequestId;
use crate::paging::{decode_token, encode_token, page_size, split_page};

/// The method every service serves its audit records with.
pub const METHOD: &str = "ListAuditRecords";
/// The scope it needs.
pub const SCOPE: &str = "audit.read";
/// The actor of what a service does on its own (sweeps, start-up jobs).
pub const SYSTEM: &str = "system";

const TOKEN_KIND: &str = "audit_records";
const MAX_ACTOR: usize = 255;
const MAX_ACTION: usize = 128;
const MAX_RESOURCE: usize = 512;

/// The entry for `action` on `resources` by the caller of `req`: its token
/// subject, its request id (`x-request-id`; [`AuditEntry::request_id`] replaces it
/// with an AIP-155 one) and the trace the call runs in.
pub fn entry<T>(
    req: &Request<T>,
    action: &str,
    resources: impl IntoIterator<Item = impl Into<String>>,
) -> AuditEntry {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    AuditEntry::new(retention_auth::subject(req), action, resources)
        .request_id(request_id)
        .trace_id(retention_telemetry::current_trace_id().unwrap_or_default())
}

/// Replaces the entry's request id with the call's AIP-155 one, when it has one.
pub fn with_request_id(e: AuditEntry, request_id: &str) -> AuditEntry {
    if request_id.is_empty() {
        e
    } else {
        e.request_id(request_id)
    }
}

/// Writes the log line of a recorded entry (operators may ship the `audit` log
/// target; the row is the record of truth).
pub fn log(e: &AuditEntry) {
    let resources: Vec<&str> = e.resources.iter().map(String::as_str).collect();
    retention_telemetry::audit(&e.actor, &e.action, &resources);
}

/// Records `e` in a transaction of its own and logs it, for audited calls that
/// change nothing (unmasked reads): answer only after this succeeded, so there
/// is never an answer without its record.
pub async fn record(db: &DatabaseConnection, e: &AuditEntry) -> Result<(), Status> {
    chain::record(db, e)
        .await
        .map_err(|err| unavailable(&err))?;
    log(e);
    Ok(())
}

/// The status of a failed audit write or read.
pub fn unavailable(e: &retention_db::sea_orm::DbErr) -> Status {
    tracing::warn!(error = %e, "audit trail not reachable");
    retention_errors::unavailable("the audit trail", Duration::from_secs(1))
}

/// A ListAuditRecords request of any service: its filter and page.
pub trait ListRequest {
    fn actor(&self) -> &str;
    fn action(&self) -> &str;
    fn resource(&self) -> &str;
    fn since(&self) -> Option<&prost_types::Timestamp>;
    fn until(&self) -> Option<&prost_types::Timestamp>;
    fn page(&self) -> (i32, &str);
}

macro_rules! list_requests {
    ($($pb:ident),*) => {$(
        impl ListRequest for retention_proto::$pb::ListAuditRecordsRequest {
            fn actor(&self) -> &str {
                &self.actor
            }
            fn action(&self) -> &str {
                &self.action
            }
            fn resource(&self) -> &str {
                &self.resource
            }
            fn since(&self) -> Option<&prost_types::Timestamp> {
                self.since.as_ref()
            }
            fn until(&self) -> Option<&prost_types::Timestamp> {
                self.until.as_ref()
            }
            fn page(&self) -> (i32, &str) {
                (self.page_size, &self.page_token)
            }
        }
    )*};
}

list_requests!(profile, interactions, segmentation, winback);

/// One service's audit records behind `ListAuditRecords` (cheap to clone).
#[derive(Clone)]
pub struct AuditAdmin {
    db: DatabaseConnection,
}

impl AuditAdmin {
    pub fn new(db: DatabaseConnection) -> Self {
        AuditAdmin { db }
    }

    /// `ListAuditRecords`: a page of the matching records, oldest first.
    pub async fn serve_list<R: ListRequest>(
        &self,
        req: Request<R>,
    ) -> Result<Response<ListAuditRecordsResponse>, Status> {
        let r = req.get_ref();
        let mut v = FieldViolations::new();
        let filter = filter(r, &mut v);
        let (size, token) = r.page();
        let limit = page_size(size, &mut v);
        let after = decode_token(token, TOKEN_KIND, &filter.key(), &mut v);
        let after = match after.map(|c| c.parse::<i64>()) {
            Some(Ok(seq)) => Some(seq),
            Some(Err(_)) => {
                v.add("page_token", "is not a valid page token");
                None
            }
            None => None,
        };
        v.into_result()?;
        let rows = chain::list(&self.db, &filter, after, limit + 1)
            .await
            .map_err(|e| unavailable(&e))?;
        let (rows, next) = split_page(rows, limit, |last| last.seq.to_string());
        Ok(Response::new(ListAuditRecordsResponse {
            audit_records: rows.iter().map(to_proto).collect(),
            next_page_token: next
                .map(|last| encode_token(TOKEN_KIND, &filter.key(), &last))
                .unwrap_or_default(),
        }))
    }
}

fn filter<R: ListRequest>(r: &R, v: &mut FieldViolations) -> AuditFilter {
    for (field, value, max) in [
        ("actor", r.actor(), MAX_ACTOR),
        ("action", r.action(), MAX_ACTION),
        ("resource", r.resource(), MAX_RESOURCE),
    ] {
        v.check(
            value.len() <= max,
            field,
            format!("must be at most {max} bytes"),
        );
    }
    let since = r
        .since()
        .and_then(|t| retention_errors::time::instant_arg(t, "since", v));
    let until = r
        .until()
        .and_then(|t| retention_errors::time::instant_arg(t, "until", v));
    if let (Some(s), Some(u)) = (since, until) {
        v.check(s < u, "until", "must be after since");
    }
    AuditFilter {
        actor: r.actor().to_string(),
        action: r.action().to_string(),
        resource: r.resource().to_string(),
        since,
        until,
    }
}

/// A record as `ListAuditRecords` returns it.
pub fn to_proto(r: &AuditRecord) -> pb::AuditRecord {
    pb::AuditRecord {
        seq: r.seq,
        time: Some(retention_errors::time::timestamp(r.time())),
        actor: r.entry.actor.clone(),
        action: r.entry.action.clone(),
        resources: r.entry.resources.clone(),
        request_id: r.entry.request_id.clone(),
        trace_id: r.entry.trace_id.clone(),
        prev_hash: r.prev_hash.clone(),
        hash: r.hash.clone(),
    }
}

/// A record as a client received it, to check with [`chain::Chain`].
pub fn from_proto(r: &pb::AuditRecord) -> AuditRecord {
    let time_ms = r
        .time
        .as_ref()
        .and_then(retention_errors::time::instant)
        .map_or(i64::MIN, |t: DateTime<Utc>| t.timestamp_millis());
    AuditRecord {
        seq: r.seq,
        time_ms,
        entry: AuditEntry {
            actor: r.actor.clone(),
            action: r.action.clone(),
            resources: r.resources.clone(),
            request_id: r.request_id.clone(),
            trace_id: r.trace_id.clone(),
        },
        prev_hash: r.prev_hash.clone(),
        hash: r.hash.clone(),
    }
}

/// The retention sweep of `settings.audit` for [`crate::host::Wiring::every`]:
/// its period (zero when records are kept forever) and one tick.
pub fn sweeper(
    db: DatabaseConnection,
    settings: &retention_config::AuditSettings,
) -> (
    Duration,
    impl FnMut() -> futures::future::BoxFuture<'static, ()> + Send + 'static,
) {
    let keep = Duration::from_secs(u64::from(settings.retention_days) * 86_400);
    let period = if settings.retention_days == 0 {
        Duration::ZERO
    } else {
        Duration::from_secs(settings.sweep_interval_secs)
    };
    let tick = move || -> futures::future::BoxFuture<'static, ()> {
        let db = db.clone();
        Box::pin(async move {
            match chain::sweep(&db, keep).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(count = n, "swept audit records past retention"),
                Err(e) => tracing::warn!(error = %e, "audit retention sweep failed"),
            }
        })
    };
    (period, tick)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_through_the_proto_and_still_verifies() {
        let e = AuditEntry::new("alice", "customer.erase", ["customers/1"]).request_id("r1");
        let time_ms = 1_765_000_000_123;
        let mut r = AuditRecord {
            seq: 1,
            time_ms,
            entry: e,
            prev_hash: chain::GENESIS.into(),
            hash: String::new(),
        };
        r.hash = r.computed_hash();
        let back = from_proto(&to_proto(&r));
        assert_eq!(back, r);
        assert!(chain::Chain::new().check(&back).is_ok());
    }

    #[test]
    fn bad_filters_are_field_violations() {
        let req = retention_proto::winback::ListAuditRecordsRequest {
            actor: "x".repeat(MAX_ACTOR + 1),
            since: Some(prost_types::Timestamp {
                seconds: 10,
                nanos: 0,
            }),
            until: Some(prost_types::Timestamp {
                seconds: 5,
                nanos: -1,
            }),
            ..Default::default()
        };
        let mut v = FieldViolations::new();
        filter(&req, &mut v);
        let fields: Vec<&str> = v.iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["actor", "until"]);
    }
}
