//! The audit trail: who did what to which resources, as rows of the service's own
//! database written in the same transaction as the audited change, so a change
//! commits with its record or not at all.
//!
//! Rows are append-only and hash-chained. Row `n` stores `prev_hash` (row `n-1`'s
//! `hash`, or [`GENESIS`] for the first row ever) and `hash` = SHA-256 over the
//! canonical encoding of `prev_hash` and its own fields ([`canonical`]). Altering
//! a row breaks its hash, deleting one leaves a gap in `seq`, and recomputing a
//! forged row's hash breaks the next row's link. Anyone holding the rows can check
//! them again ([`Chain`]): `retention-cli audit verify` does so from
//! `ListAuditRecords` with the same code.
//!
//! Appends are serialized so concurrent writers never fork the chain: on
//! PostgreSQL by a transaction-scoped advisory lock taken before the last row is
//! read; SQLite pools have one connection, so their transactions already run one
//! at a time. The lock is held to the commit: append last in a transaction, after
//! every other write, so a writer waiting for it holds nothing another appender
//! could need.
//!
//! Retention ([`sweep`]) deletes the oldest rows, always a prefix of the chain and
//! never the newest row (the next append links to it). Verification then starts
//! at the oldest remaining row, whose `prev_hash` is taken as the anchor.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, Order, Query, SelectStatement};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, QueryResult, TransactionTrait,
};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The `prev_hash` of the first row ever written.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Prefix of the hashed bytes; a later encoding gets another one.
const DOMAIN: &[u8] = b"retention.audit.v1";

/// The advisory lock key of chain appends ("audit" in ASCII); each service has
/// its own database, so one fixed key serializes exactly one chain.
const APPEND_LOCK: i64 = 0x0061_7564_6974;

/// Rows read per query while verifying.
const VERIFY_BATCH: u64 = 1000;

#[derive(DeriveIden)]
enum AuditRecords {
    Table,
    Seq,
    TimeMs,
    Actor,
    Action,
    Resources,
    RequestId,
    TraceId,
    PrevHash,
    Hash,
}

crate::migration!(
    /// One of the shared tables every service's migrator starts with.
    AuditMigration,
    "m20261206_000001_audit_records"
);

#[async_trait::async_trait]
impl MigrationTrait for AuditMigration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::schema::create_table(
            m,
            Table::create()
                .table(AuditRecords::Table)
                // Assigned by the appender under the lock, not by the database:
                // the hash covers it, so it must be known before the insert.
                .col(big_integer(AuditRecords::Seq).primary_key())
                .col(big_integer(AuditRecords::TimeMs))
                .col(string_len(AuditRecords::Actor, 255))
                .col(string_len(AuditRecords::Action, 128))
                .col(text(AuditRecords::Resources))
                .col(string_len(AuditRecords::RequestId, 128))
                .col(string_len(AuditRecords::TraceId, 64))
                .col(string_len(AuditRecords::PrevHash, 64))
                .col(string_len(AuditRecords::Hash, 64)),
        )
        .await?;
        crate::create_index(
            m,
            "idx_audit_records_time_ms",
            "audit_records",
            &["time_ms"],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::schema::drop_tables(m, &["audit_records"]).await
    }
}

/// What is being recorded: the caller's part of a row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEntry {
    /// The token subject of the caller (`system` for the service's own jobs).
    pub actor: String,
    /// What was done, e.g. `customer.erase`.
    pub action: String,
    /// Resource names (never personal data), e.g. `customers/{id}`.
    pub resources: Vec<String>,
    /// The call's AIP-155 request id, when it had one.
    pub request_id: String,
    /// The W3C trace id of the call, when traced.
    pub trace_id: String,
}

impl AuditEntry {
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        resources: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        AuditEntry {
            actor: actor.into(),
            action: action.into(),
            resources: resources.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = id.into();
        self
    }

    pub fn trace_id(mut self, id: impl Into<String>) -> Self {
        self.trace_id = id.into();
        self
    }
}

/// One stored row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    /// Unix time in milliseconds (UTC).
    pub time_ms: i64,
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRecord {
    pub fn time(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.time_ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// The hash this row's fields and `prev_hash` give.
    pub fn computed_hash(&self) -> String {
        hash_hex(&canonical(
            &self.prev_hash,
            self.seq,
            self.time_ms,
            &self.entry,
        ))
    }
}

/// The bytes a row's hash is computed over, version 1. In order:
///
/// 1. the ASCII prefix `retention.audit.v1`;
/// 2. `prev_hash` as a string;
/// 3. `seq`, then `time_ms`, each as 8 bytes, big-endian two's complement;
/// 4. `actor`, `action` as strings;
/// 5. the number of resources as 8 bytes big-endian, then each resource as a string;
/// 6. `request_id`, `trace_id` as strings (empty when unknown).
///
/// A string is its UTF-8 byte length as 8 bytes big-endian, then the bytes, so
/// no two different rows encode alike. The hash is SHA-256 of these bytes as 64
/// lowercase hex digits; `prev_hash` is hashed as those hex digits.
pub fn canonical(prev_hash: &str, seq: i64, time_ms: i64, e: &AuditEntry) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(DOMAIN);
    string(&mut out, prev_hash);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&time_ms.to_be_bytes());
    string(&mut out, &e.actor);
    string(&mut out, &e.action);
    out.extend_from_slice(&(e.resources.len() as u64).to_be_bytes());
    for r in &e.resources {
        string(&mut out, r);
    }
    string(&mut out, &e.request_id);
    string(&mut out, &e.trace_id);
    out
}

fn hash_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Appends `entry` to the chain inside `txn` (call it after the transaction's
/// other writes, see the module docs); the row commits or rolls back with them.
pub async fn append(txn: &DatabaseTransaction, entry: &AuditEntry) -> Result<AuditRecord, DbErr> {
    lock(txn).await?;
    let last = last_row(txn).await?;
    let (seq, prev_hash, last_ms) = match last {
        Some((seq, hash, ms)) => (seq + 1, hash, ms),
        None => (1, GENESIS.to_string(), i64::MIN),
    };
    // Times never go backwards along the chain, even when replicas' clocks
    // disagree, so a time range is a range of sequence numbers.
    let time_ms = Ord::max(Utc::now().timestamp_millis(), last_ms);
    let record = AuditRecord {
        seq,
        time_ms,
        entry: entry.clone(),
        prev_hash,
        hash: String::new(),
    };
    let record = AuditRecord {
        hash: record.computed_hash(),
        ..record
    };
    let resources = serde_json::to_string(&record.entry.resources)
        .map_err(|e| DbErr::Custom(format!("audit resources not encodable: {e}")))?;
    let stmt = Query::insert()
        .into_table(AuditRecords::Table)
        .columns([
            AuditRecords::Seq,
            AuditRecords::TimeMs,
            AuditRecords::Actor,
            AuditRecords::Action,
            AuditRecords::Resources,
            AuditRecords::RequestId,
            AuditRecords::TraceId,
            AuditRecords::PrevHash,
            AuditRecords::Hash,
        ])
        .values_panic([
            record.seq.into(),
            record.time_ms.into(),
            record.entry.actor.clone().into(),
            record.entry.action.clone().into(),
            resources.into(),
            record.entry.request_id.clone().into(),
            record.entry.trace_id.clone().into(),
            record.prev_hash.clone().into(),
            record.hash.clone().into(),
        ])
        .to_owned();
    txn.execute(&stmt).await?;
    Ok(record)
}

/// [`append`] in a transaction of its own, for audited calls that write nothing
/// else (an unmasked read): the caller answers only once this returned `Ok`.
pub async fn record(db: &DatabaseConnection, entry: &AuditEntry) -> Result<AuditRecord, DbErr> {
    let txn = db.begin().await?;
    let r = append(&txn, entry).await?;
    txn.commit().await?;
    Ok(r)
}

async fn lock(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    if crate::is_postgres(txn) {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({APPEND_LOCK})"))
            .await?;
    }
    Ok(())
}

async fn last_row(txn: &DatabaseTransaction) -> Result<Option<(i64, String, i64)>, DbErr> {
    let stmt = Query::select()
        .columns([AuditRecords::Seq, AuditRecords::Hash, AuditRecords::TimeMs])
        .from(AuditRecords::Table)
        .order_by(AuditRecords::Seq, Order::Desc)
        .limit(1)
        .to_owned();
    match txn.query_one(&stmt).await? {
        Some(row) => Ok(Some((
            row.try_get("", "seq")?,
            row.try_get("", "hash")?,
            row.try_get("", "time_ms")?,
        ))),
        None => Ok(None),
    }
}

/// Which rows [`list`] returns; empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: String,
    pub action: String,
    /// Rows naming this resource among theirs.
    pub resource: String,
    /// From this time on (inclusive).
    pub since: Option<DateTime<Utc>>,
    /// Before this time (exclusive).
    pub until: Option<DateTime<Utc>>,
}

impl AuditFilter {
    /// A stable rendering, for binding page tokens to the filter they page.
    pub fn key(&self) -> String {
        let t = |t: &Option<DateTime<Utc>>| t.map(|t| t.timestamp_millis().to_string());
        format!(
            "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
            self.actor,
            self.action,
            self.resource,
            t(&self.since).unwrap_or_default(),
            t(&self.until).unwrap_or_default()
        )
    }
}

fn select_rows() -> SelectStatement {
    Query::select()
        .columns([
            AuditRecords::Seq,
            AuditRecords::TimeMs,
            AuditRecords::Actor,
            AuditRecords::Action,
            AuditRecords::Resources,
            AuditRecords::RequestId,
            AuditRecords::TraceId,
            AuditRecords::PrevHash,
            AuditRecords::Hash,
        ])
        .from(AuditRecords::Table)
        .order_by(AuditRecords::Seq, Order::Asc)
        .to_owned()
}

fn from_row(row: &QueryResult) -> Result<AuditRecord, DbErr> {
    let resources: String = row.try_get("", "resources")?;
    // A row whose resources column was altered into something that is not a
    // list still has to be listed and reported by verification, not refused.
    let resources = serde_json::from_str(&resources).unwrap_or_else(|_| vec![resources]);
    Ok(AuditRecord {
        seq: row.try_get("", "seq")?,
        time_ms: row.try_get("", "time_ms")?,
        entry: AuditEntry {
            actor: row.try_get("", "actor")?,
            action: row.try_get("", "action")?,
            resources,
            request_id: row.try_get("", "request_id")?,
            trace_id: row.try_get("", "trace_id")?,
        },
        prev_hash: row.try_get("", "prev_hash")?,
        hash: row.try_get("", "hash")?,
    })
}

/// Up to `limit` rows matching `filter` after sequence number `after`, oldest
/// first.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    filter: &AuditFilter,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<AuditRecord>, DbErr> {
    let mut stmt = select_rows();
    if let Some(after) = after {
        stmt.and_where(Expr::col(AuditRecords::Seq).gt(after));
    }
    if !filter.actor.is_empty() {
        stmt.and_where(Expr::col(AuditRecords::Actor).eq(filter.actor.as_str()));
    }
    if !filter.action.is_empty() {
        stmt.and_where(Expr::col(AuditRecords::Action).eq(filter.action.as_str()));
    }
    if let Some(since) = filter.since {
        stmt.and_where(Expr::col(AuditRecords::TimeMs).gte(since.timestamp_millis()));
    }
    if let Some(until) = filter.until {
        stmt.and_where(Expr::col(AuditRecords::TimeMs).lt(until.timestamp_millis()));
    }
    if !filter.resource.is_empty() {
        // The resources column is a JSON list: the quoted name is a substring of
        // exactly the rows naming it (checked again below for the odd escape).
        let quoted =
            serde_json::to_string(&filter.resource).map_err(|e| DbErr::Custom(e.to_string()))?;
        let pattern = format!(
            "%{}%",
            quoted
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        stmt.and_where(
            Expr::col(AuditRecords::Resources).like(LikeExpr::new(pattern).escape('\\')),
        );
    }
    stmt.limit(limit);
    let mut out = Vec::new();
    for row in db.query_all(&stmt).await? {
        let r = from_row(&row)?;
        if filter.resource.is_empty() || r.entry.resources.contains(&filter.resource) {
            out.push(r);
        }
    }
    Ok(out)
}

/// Where a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The first sequence number that does not check out (for a gap: the first
    /// missing one).
    pub seq: i64,
    pub reason: BrokenReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokenReason {
    /// The row's fields do not give its stored hash: it was altered.
    HashMismatch,
    /// The row's `prev_hash` is not the previous row's hash.
    LinkBroken,
    /// Rows are missing before this one.
    Gap,
    /// The first row is not the first ever written, yet its `prev_hash` is the
    /// genesis value (only the chain's first row links to it).
    BadAnchor,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = match self.reason {
            BrokenReason::HashMismatch => "hash does not match the row's fields",
            BrokenReason::LinkBroken => "prev_hash does not match the previous row's hash",
            BrokenReason::Gap => "row missing from the sequence",
            BrokenReason::BadAnchor => "first row links to genesis but is not sequence 1",
        };
        write!(f, "sequence {}: {why}", self.seq)
    }
}

/// Checks rows one at a time in sequence order; the verifier of the service and
/// of the CLI alike.
#[derive(Debug, Default, Clone)]
pub struct Chain {
    last: Option<(i64, String)>,
    first: Option<i64>,
    checked: u64,
}

impl Chain {
    pub fn new() -> Self {
        Chain::default()
    }

    /// Checks the next row; the first failure is where the chain is broken.
    pub fn check(&mut self, r: &AuditRecord) -> Result<(), Broken> {
        let broken = |reason| Err(Broken { seq: r.seq, reason });
        match &self.last {
            None => {
                // After a retention sweep the oldest remaining row's prev_hash
                // is the anchor; only sequence 1 may (and must) start at genesis.
                if (r.seq == 1) != (r.prev_hash == GENESIS) {
                    return if r.seq == 1 {
                        broken(BrokenReason::LinkBroken)
                    } else {
                        broken(BrokenReason::BadAnchor)
                    };
                }
            }
            Some((seq, hash)) => {
                if r.seq != seq + 1 {
                    return Err(Broken {
                        seq: seq + 1,
                        reason: BrokenReason::Gap,
                    });
                }
                if &r.prev_hash != hash {
                    return broken(BrokenReason::LinkBroken);
                }
            }
        }
        if r.computed_hash() != r.hash {
            return broken(BrokenReason::HashMismatch);
        }
        self.first.get_or_insert(r.seq);
        self.last = Some((r.seq, r.hash.clone()));
        self.checked += 1;
        Ok(())
    }

    /// What has been checked so far.
    pub fn report(&self, broken: Option<Broken>) -> VerifyReport {
        VerifyReport {
            checked: self.checked,
            first_seq: self.first,
            last_seq: self.last.as_ref().map(|(s, _)| *s),
            broken,
        }
    }
}

/// The outcome of verifying a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Rows that checked out (before the break, if any).
    pub checked: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    /// The first broken sequence number; `None`: the chain is intact.
    pub broken: Option<Broken>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.broken.is_none()
    }
}

/// Recomputes the whole chain stored in `db`, oldest row first.
pub async fn verify<C: ConnectionTrait>(db: &C) -> Result<VerifyReport, DbErr> {
    let mut chain = Chain::new();
    let mut after = None;
    loop {
        let rows = list(db, &AuditFilter::default(), after, VERIFY_BATCH).await?;
        for r in &rows {
            if let Err(b) = chain.check(r) {
                return Ok(chain.report(Some(b)));
            }
        }
        match rows.last() {
            Some(r) if rows.len() as u64 == VERIFY_BATCH => after = Some(r.seq),
            _ => return Ok(chain.report(None)),
        }
    }
}

/// Deletes the rows older than `older_than`, except the newest row, which the
/// next append links to. Rows go from the start of the chain only, so what
/// remains verifies from its oldest row. Returns the number deleted.
pub async fn sweep(db: &DatabaseConnection, older_than: Duration) -> Result<u64, DbErr> {
    let age = chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
    let cutoff = Utc::now()
        .checked_sub_signed(age)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
        .timestamp_millis();
    let txn = db.begin().await?;
    // Beside appends: the newest row must not be deleted under a writer that has
    // just read it as the one to link to.
    lock(&txn).await?;
    let stmt = Query::select()
        .expr_as(Func::max(Expr::col(AuditRecords::Seq)), Alias::new("old"))
        .from(AuditRecords::Table)
        .and_where(Expr::col(AuditRecords::TimeMs).lt(cutoff))
        .to_owned();
    let old: Option<i64> = match txn.query_one(&stmt).await? {
        Some(row) => row.try_get("", "old")?,
        None => None,
    };
    let newest = last_row(&txn).await?.map(|(seq, _, _)| seq);
    let (Some(old), Some(newest)) = (old, newest) else {
        return Ok(0);
    };
    let upto = Ord::min(old, newest - 1);
    let deleted = txn
        .execute(
            &Query::delete()
                .from_table(AuditRecords::Table)
                .and_where(Expr::col(AuditRecords::Seq).lte(upto))
                .to_owned(),
        )
        .await?
        .rows_affected();
    txn.commit().await?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm_migration::SchemaManager;

    async fn db() -> DatabaseConnection {
        let db = crate::connect(&crate::DbOptions::new("sqlite::memory:"))
            .await
            .unwrap();
        AuditMigration.up(&SchemaManager::new(&db)).await.unwrap();
        db
    }

    fn entry(i: usize) -> AuditEntry {
        AuditEntry::new("alice", "customer.erase", [format!("customers/{i}")])
            .request_id(format!("r{i}"))
    }

    async fn chain_of(n: usize) -> DatabaseConnection {
        let db = db().await;
        for i in 0..n {
            record(&db, &entry(i)).await.unwrap();
        }
        db
    }

    #[test]
    fn the_encoding_is_length_prefixed_and_the_hash_is_fixed() {
        let e = AuditEntry::new("a", "b", ["c"]);
        let bytes = canonical(GENESIS, 1, 2, &e);
        let mut expected = b"retention.audit.v1".to_vec();
        expected.extend_from_slice(&64u64.to_be_bytes());
        expected.extend_from_slice(GENESIS.as_bytes());
        expected.extend_from_slice(&1i64.to_be_bytes());
        expected.extend_from_slice(&2i64.to_be_bytes());
        for s in ["a", "b"] {
            expected.extend_from_slice(&1u64.to_be_bytes());
            expected.extend_from_slice(s.as_bytes());
        }
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.extend_from_slice(b"c");
        expected.extend_from_slice(&0u64.to_be_bytes());
        expected.extend_from_slice(&0u64.to_be_bytes());
        assert_eq!(bytes, expected);
        // Field boundaries count: moving a character between fields changes it.
        let moved = AuditEntry::new("ab", "", ["c"]);
        assert_ne!(canonical(GENESIS, 1, 2, &moved), bytes);
        let split = AuditEntry::new("a", "b", ["", "c"]);
        assert_ne!(canonical(GENESIS, 1, 2, &split), bytes);
        assert_eq!(hash_hex(b"abc").len(), 64);
        assert_eq!(
            hash_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn appends_link_and_an_intact_chain_verifies() {
        let db = chain_of(3).await;
        let rows = list(&db, &AuditFilter::default(), None, 10).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(rows[0].prev_hash, GENESIS);
        assert_eq!(rows[1].prev_hash, rows[0].hash);
        assert_eq!(rows[2].prev_hash, rows[1].hash);
        let report = verify(&db).await.unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!(
            (report.checked, report.first_seq, report.last_seq),
            (3, Some(1), Some(3))
        );
    }

    #[tokio::test]
    async fn an_altered_field_breaks_that_row() {
        let db = chain_of(4).await;
        db.execute_unprepared("UPDATE audit_records SET actor = 'mallory' WHERE seq = 3")
            .await
            .unwrap();
        let b = verify(&db).await.unwrap().broken.unwrap();
        assert_eq!((b.seq, b.reason), (3, BrokenReason::HashMismatch));
    }

    #[tokio::test]
    async fn a_recomputed_forgery_breaks_the_next_link_and_a_deletion_leaves_a_gap() {
        let db = chain_of(4).await;
        let mut rows = list(&db, &AuditFilter::default(), None, 10).await.unwrap();
        rows[1].entry.action = "customer.read".into();
        let forged = rows[1].computed_hash();
        db.execute_unprepared(&format!(
            "UPDATE audit_records SET action = 'customer.read', hash = '{forged}' WHERE seq = 2"
        ))
        .await
        .unwrap();
        let b = verify(&db).await.unwrap().broken.unwrap();
        assert_eq!((b.seq, b.reason), (3, BrokenReason::LinkBroken));

        let db = chain_of(4).await;
        db.execute_unprepared("DELETE FROM audit_records WHERE seq = 2")
            .await
            .unwrap();
        let report = verify(&db).await.unwrap();
        assert_eq!(
            report.broken,
            Some(Broken {
                seq: 2,
                reason: BrokenReason::Gap
            })
        );
        assert_eq!(report.checked, 1);
    }

    #[tokio::test]
    async fn a_sweep_keeps_the_newest_row_and_what_remains_verifies() {
        let db = chain_of(3).await;
        // Nothing is old enough yet.
        assert_eq!(sweep(&db, Duration::from_secs(3600)).await.unwrap(), 0);
        db.execute_unprepared(
            "UPDATE audit_records SET time_ms = time_ms - 7200000 WHERE seq <= 2",
        )
        .await
        .unwrap();
        // The hashes cover the times: re-chain the aged rows so the test sees
        // only what the sweep does.
        rechain(&db).await;
        assert_eq!(sweep(&db, Duration::from_secs(3600)).await.unwrap(), 2);
        let report = verify(&db).await.unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.first_seq, Some(3));
        // Everything old: the newest row stays as the anchor of the next append.
        assert_eq!(sweep(&db, Duration::ZERO).await.unwrap(), 0);
        let next = record(&db, &entry(9)).await.unwrap();
        assert_eq!(next.seq, 4);
        assert!(verify(&db).await.unwrap().ok());
        // Only sequence 1 may link to genesis.
        db.execute_unprepared(&format!(
            "UPDATE audit_records SET prev_hash = '{GENESIS}' WHERE seq = 3"
        ))
        .await
        .unwrap();
        let b = verify(&db).await.unwrap().broken.unwrap();
        assert_eq!((b.seq, b.reason), (3, BrokenReason::BadAnchor));
    }

    async fn rechain(db: &DatabaseConnection) {
        let mut prev = GENESIS.to_string();
        for mut r in list(db, &AuditFilter::default(), None, 100).await.unwrap() {
            r.prev_hash = prev;
            r.hash = r.computed_hash();
            db.execute_unprepared(&format!(
                "UPDATE audit_records SET prev_hash = '{}', hash = '{}' WHERE seq = {}",
                r.prev_hash, r.hash, r.seq
            ))
            .await
            .unwrap();
            prev = r.hash;
        }
    }

    #[tokio::test]
    async fn lists_filter_and_page() {
        let db = db().await;
        record(
            &db,
            &AuditEntry::new("alice", "customer.erase", ["customers/1"]),
        )
        .await
        .unwrap();
        record(
            &db,
            &AuditEntry::new("bob", "customer.merge", ["customers/1", "customers/2"]),
        )
        .await
        .unwrap();
        record(
            &db,
            &AuditEntry::new("bob", "customer.read_pii", ["customers/10"]),
        )
        .await
        .unwrap();
        let seqs = |rows: Vec<AuditRecord>| rows.iter().map(|r| r.seq).collect::<Vec<_>>();
        let by = |f: AuditFilter| {
            let db = db.clone();
            async move { seqs(list(&db, &f, None, 10).await.unwrap()) }
        };
        assert_eq!(
            by(AuditFilter {
                actor: "bob".into(),
                ..Default::default()
            })
            .await,
            [2, 3]
        );
        assert_eq!(
            by(AuditFilter {
                resource: "customers/1".into(),
                ..Default::default()
            })
            .await,
            [1, 2]
        );
        assert_eq!(
            by(AuditFilter {
                action: "customer.merge".into(),
                ..Default::default()
            })
            .await,
            [2]
        );
        let future = Utc::now() + chrono::Duration::hours(1);
        assert_eq!(
            by(AuditFilter {
                since: Some(future),
                ..Default::default()
            })
            .await,
            Vec::<i64>::new()
        );
        assert_eq!(
            by(AuditFilter {
                until: Some(future),
                ..Default::default()
            })
            .await,
            [1, 2, 3]
        );
        assert_eq!(
            seqs(
                list(&db, &AuditFilter::default(), Some(1), 1)
                    .await
                    .unwrap()
            ),
            [2]
        );
    }
}
