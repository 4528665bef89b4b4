//! `retention-cli audit list|verify`: a service's audit trail read through
//! `ListAuditRecords` (scope `audit.read`). `verify` pages through every record
//! and recomputes the hash chain here, with the services' own code
//! (`retention_db::audit::Chain`), so the check does not trust the server's.

use chrono::{DateTime, Utc};
use retention_db::audit::{Chain, VerifyReport};
use retention_proto::common::{AuditRecord, ListAuditRecordsResponse};
use retention_proto::interactions as ipb;
use retention_proto::profile as ppb;
use retention_proto::segmentation as spb;
use retention_proto::winback as wpb;

use super::Clients;
use super::show::table;

/// Records per call while listing or verifying everything.
const PAGE: i32 = 1000;

/// The services with an audit trail: all four.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audited {
    Profile,
    Interactions,
    Segmentation,
    Winback,
}

impl Audited {
    /// The names `--service` takes.
    pub const NAMES: [&'static str; 4] = ["profile", "interactions", "segmentation", "winback"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "profile" => Some(Audited::Profile),
            "interactions" => Some(Audited::Interactions),
            "segmentation" => Some(Audited::Segmentation),
            "winback" => Some(Audited::Winback),
            _ => None,
        }
    }
}

/// What `audit list` asks for; empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor: String,
    pub action: String,
    pub resource: String,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

macro_rules! list_call {
    ($client:expr, $c:expr, $pb:ident, $q:expr, $size:expr, $token:expr) => {
        $client
            .clone()
            .list_audit_records($c.req($pb::ListAuditRecordsRequest {
                actor: $q.actor.clone(),
                action: $q.action.clone(),
                resource: $q.resource.clone(),
                since: $q.since.map(timestamp),
                until: $q.until.map(timestamp),
                page_size: $size,
                page_token: $token,
            }))
            .await?
            .into_inner()
    };
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// One page of the service's records matching `q` (`page_token` empty: the first).
pub async fn page(
    c: &Clients,
    service: Audited,
    q: &AuditQuery,
    page_size: i32,
    page_token: &str,
) -> anyhow::Result<ListAuditRecordsResponse> {
    let token = page_token.to_string();
    Ok(match service {
        Audited::Profile => list_call!(c.profile, c, ppb, q, page_size, token),
        Audited::Interactions => list_call!(c.interactions, c, ipb, q, page_size, token),
        Audited::Segmentation => list_call!(c.segmentation, c, spb, q, page_size, token),
        Audited::Winback => list_call!(c.winback, c, wpb, q, page_size, token),
    })
}

/// Every record matching `q`, oldest first (page by page).
pub async fn list(
    c: &Clients,
    service: Audited,
    q: &AuditQuery,
) -> anyhow::Result<Vec<AuditRecord>> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let p = page(c, service, q, PAGE, &token).await?;
        all.extend(p.audit_records);
        if p.next_page_token.is_empty() {
            return Ok(all);
        }
        token = p.next_page_token;
    }
}

/// Recomputes the service's whole chain from its records, oldest first; the
/// report names the first broken sequence number, if any.
pub async fn verify(c: &Clients, service: Audited) -> anyhow::Result<VerifyReport> {
    let mut chain = Chain::new();
    let mut token = String::new();
    loop {
        let p = page(c, service, &AuditQuery::default(), PAGE, &token).await?;
        for r in &p.audit_records {
            if let Err(broken) = chain.check(&retention_server::audit::from_proto(r)) {
                return Ok(chain.report(Some(broken)));
            }
        }
        if p.next_page_token.is_empty() {
            return Ok(chain.report(None));
        }
        token = p.next_page_token;
    }
}

/// A verification's outcome, one line.
pub fn verify_line(service: &str, r: &VerifyReport) -> String {
    let range = match (r.first_seq, r.last_seq) {
        (Some(a), Some(b)) => format!("sequences {a}..={b}"),
        _ => "no records".to_string(),
    };
    match &r.broken {
        None => format!("{service}: OK, {} records ({range})\n", r.checked),
        Some(b) => format!(
            "{service}: BROKEN at {b} ({} records before it check out)\n",
            r.checked
        ),
    }
}

fn time(r: &AuditRecord) -> String {
    r.time
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_default()
}

/// The records as a table, oldest first.
pub fn report(records: &[AuditRecord]) -> String {
    if records.is_empty() {
        return "no audit records\n".to_string();
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.seq.to_string(),
                time(r),
                r.actor.clone(),
                r.action.clone(),
                r.resources.join(" "),
                r.request_id.clone(),
                r.hash.chars().take(12).collect(),
            ]
        })
        .collect();
    table(
        &[
            "seq",
            "time (UTC)",
            "actor",
            "action",
            "resources",
            "request id",
            "hash",
        ],
        &rows,
    )
}
