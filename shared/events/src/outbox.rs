//! Writing events into the outbox (producer side) and the inbox check that makes
//! handlers idempotent (consumer side).

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use prost::Message;
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, Func, OnConflict, Query};

use crate::migration::{OutboxEvents, ProcessedEvents};
use crate::{EventEnvelope, EventsError, type_name, util};

/// Rows per multi-row INSERT: 7 bind parameters each stays far below PostgreSQL's
/// 65 535 and SQLite's 32 766 parameter limits.
const INSERT_CHUNK: usize = 1000;

/// A domain event about to be written to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// Logical stream, e.g. `retention.profile.events` (namespaced at publish time).
    pub stream: String,
    pub customer_id: Option<String>,
    pub payload: prost_types::Any,
    /// Only this consumer group applies the event (a backfill's replay); `None`
    /// for live events, which every group applies.
    pub target_group: Option<String>,
}

impl OutboxEvent {
    /// Packs `msg` into an `Any` with the standard `type.googleapis.com/` type URL
    /// (prost's default URL has an empty domain, which some runtimes reject).
    pub fn new<M: prost::Name>(stream: &str, customer_id: Option<&str>, msg: &M) -> Self {
        let mut payload = retention_proto::pack_any(msg);
        if payload.type_url.starts_with('/') {
            payload.type_url = format!("type.googleapis.com{}", payload.type_url);
        }
        OutboxEvent {
            stream: stream.to_string(),
            customer_id: customer_id.map(str::to_string),
            payload,
            target_group: None,
        }
    }

    /// The same event addressed to `group` alone (see [`EventEnvelope::target_group`]).
    pub fn for_group(mut self, group: &str) -> Self {
        self.target_group = Some(group.to_string());
        self
    }
}

struct Row {
    event_id: String,
    stream: String,
    event_type: String,
    customer_id: Option<String>,
    envelope: Vec<u8>,
    created_at: chrono::DateTime<Utc>,
}

/// Builds the envelope: a fresh UUIDv7 (time-ordered, the consumers' idempotency
/// key), the time of the state change and the current span's trace context.
fn envelope_row(source: &str, event: OutboxEvent, tp: &(String, String)) -> Row {
    let now = Utc::now();
    let event_id = uuid::Uuid::now_v7().to_string();
    let event_type = type_name(&event.payload.type_url).to_string();
    let env = EventEnvelope {
        event_id: event_id.clone(),
        event_type: event_type.clone(),
        occurred_at: Some(util::timestamp(now)),
        customer_id: event.customer_id.clone().unwrap_or_default(),
        traceparent: tp.0.clone(),
        tracestate: tp.1.clone(),
        source: source.to_string(),
        payload: Some(event.payload),
        target_group: event.target_group.unwrap_or_default(),
    };
    Row {
        event_id,
        stream: event.stream,
        event_type,
        customer_id: event.customer_id,
        envelope: env.encode_to_vec(),
        created_at: now,
    }
}

async fn insert_rows<C: ConnectionTrait>(conn: &C, rows: Vec<Row>) -> Result<(), EventsError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut stmt = Query::insert();
    stmt.into_table(OutboxEvents::Table).columns([
        OutboxEvents::EventId,
        OutboxEvents::Stream,
        OutboxEvents::EventType,
        OutboxEvents::CustomerId,
        OutboxEvents::Envelope,
        OutboxEvents::CreatedAt,
        OutboxEvents::Attempts,
    ]);
    for r in rows {
        stmt.values([
            r.event_id.into(),
            r.stream.into(),
            r.event_type.into(),
            r.customer_id.into(),
            r.envelope.into(),
            r.created_at.into(),
            0i32.into(),
        ])
        .map_err(query_error)?;
    }
    conn.execute(&stmt).await?;
    Ok(())
}

/// Writes `event` to the outbox. Call it on the caller's open transaction: the
/// event then commits or rolls back with the state change. Returns the event id.
pub async fn enqueue<C: ConnectionTrait>(
    conn: &C,
    source: &str,
    event: OutboxEvent,
) -> Result<String, EventsError> {
    let tp = retention_telemetry::current_traceparent();
    let row = envelope_row(source, event, &tp);
    let id = row.event_id.clone();
    insert_rows(conn, vec![row]).await?;
    Ok(id)
}

/// [`enqueue`] for bulk ingest: multi-row inserts in chunks, ids in input order.
pub async fn enqueue_all<C: ConnectionTrait>(
    conn: &C,
    source: &str,
    events: Vec<OutboxEvent>,
) -> Result<Vec<String>, EventsError> {
    let tp = retention_telemetry::current_traceparent();
    let mut ids = Vec::with_capacity(events.len());
    let mut chunk = Vec::with_capacity(INSERT_CHUNK.min(events.len()));
    for event in events {
        let row = envelope_row(source, event, &tp);
        ids.push(row.event_id.clone());
        chunk.push(row);
        if chunk.len() == INSERT_CHUNK {
            insert_rows(conn, std::mem::take(&mut chunk)).await?;
        }
    }
    insert_rows(conn, chunk).await?;
    Ok(ids)
}

/// Records that `consumer` applies `event_id`; `false` when it already did. Call it
/// inside the handler's transaction before applying effects and skip them on
/// `false`: the row commits with the effects, so a redelivery changes nothing.
pub async fn first_delivery<C: ConnectionTrait>(
    conn: &C,
    consumer: &str,
    event_id: &str,
) -> Result<bool, EventsError> {
    Ok(!first_deliveries(conn, consumer, &[event_id])
        .await?
        .is_empty())
}

/// [`first_delivery`] for a batch: the ids among `event_ids` that `consumer` had
/// not applied yet (now recorded). One multi-row insert per chunk.
pub async fn first_deliveries<C: ConnectionTrait>(
    conn: &C,
    consumer: &str,
    event_ids: &[&str],
) -> Result<HashSet<String>, EventsError> {
    let mut fresh = HashSet::with_capacity(event_ids.len());
    let at = Utc::now();
    for chunk in event_ids.chunks(INSERT_CHUNK) {
        let mut stmt = Query::insert();
        stmt.into_table(ProcessedEvents::Table).columns([
            ProcessedEvents::Consumer,
            ProcessedEvents::EventId,
            ProcessedEvents::ProcessedAt,
        ]);
        for id in chunk {
            stmt.values([consumer.into(), (*id).into(), at.into()])
                .map_err(query_error)?;
        }
        stmt.on_conflict(
            OnConflict::columns([ProcessedEvents::Consumer, ProcessedEvents::EventId])
                .do_nothing()
                .to_owned(),
        )
        .returning_col(ProcessedEvents::EventId);
        for row in conn.query_all(&stmt).await? {
            fresh.insert(row.try_get_by_index::<String>(0)?);
        }
    }
    Ok(fresh)
}

/// Outbox rows not yet published (relay lag; tests and metrics).
pub async fn pending_count<C: ConnectionTrait>(db: &C) -> Result<u64, EventsError> {
    let stmt = Query::select()
        .expr_as(Func::count(Expr::col(OutboxEvents::Seq)), "n")
        .from(OutboxEvents::Table)
        .and_where(Expr::col(OutboxEvents::PublishedAt).is_null())
        .to_owned();
    let n: i64 = match db.query_one(&stmt).await? {
        Some(row) => row.try_get("", "n")?,
        None => 0,
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

/// What one page of a backfill enqueued: the owner's replay of its current state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayCounts {
    /// Customers replayed.
    pub customers: i64,
    /// Events enqueued, by type (`retention.profile.v1.PurchaseRecordedEvent`).
    pub events: std::collections::BTreeMap<String, i64>,
    /// The last customer replayed, when more of the range follows.
    pub next_after: Option<String>,
}

impl ReplayCounts {
    /// The counts of `events` replayed for `customers` customers.
    pub fn of(customers: usize, events: &[OutboxEvent], next_after: Option<String>) -> Self {
        let mut by_type = std::collections::BTreeMap::new();
        for e in events {
            *by_type
                .entry(type_name(&e.payload.type_url).to_string())
                .or_default() += 1;
        }
        ReplayCounts {
            customers: i64::try_from(customers).unwrap_or(i64::MAX),
            events: by_type,
            next_after,
        }
    }
}

/// What waits in an outbox: unpublished rows and how long the oldest has waited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub rows: u64,
    pub oldest_age: Duration,
}

/// The outbox backlog (relay lag): rows not yet published, and the oldest one's age.
pub async fn backlog<C: ConnectionTrait>(db: &C) -> Result<Backlog, EventsError> {
    let stmt = Query::select()
        .expr_as(Func::count(Expr::col(OutboxEvents::Seq)), "n")
        .expr_as(Func::min(Expr::col(OutboxEvents::CreatedAt)), "oldest")
        .from(OutboxEvents::Table)
        .and_where(Expr::col(OutboxEvents::PublishedAt).is_null())
        .to_owned();
    let Some(row) = db.query_one(&stmt).await? else {
        return Ok(Backlog::default());
    };
    let n: i64 = row.try_get("", "n")?;
    let oldest: Option<chrono::DateTime<Utc>> = row.try_get("", "oldest")?;
    Ok(Backlog {
        rows: u64::try_from(n).unwrap_or(0),
        oldest_age: oldest
            .and_then(|t| (Utc::now() - t).to_std().ok())
            .unwrap_or_default(),
    })
}

/// A malformed statement is a bug, but reported as an error rather than a panic.
fn query_error(e: sea_orm::sea_query::error::Error) -> EventsError {
    EventsError::Db(sea_orm::DbErr::Custom(e.to_string()))
}

fn cutoff(older_than: Duration) -> chrono::DateTime<Utc> {
    let age = chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
    Utc::now()
        .checked_sub_signed(age)
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC)
}

/// Deletes published outbox rows older than `older_than`; the table would
/// otherwise grow forever. Returns the number deleted.
pub async fn purge_published<C: ConnectionTrait>(
    db: &C,
    older_than: Duration,
) -> Result<u64, EventsError> {
    let stmt = Query::delete()
        .from_table(OutboxEvents::Table)
        .and_where(Expr::col(OutboxEvents::PublishedAt).is_not_null())
        .and_where(Expr::col(OutboxEvents::PublishedAt).lt(cutoff(older_than)))
        .to_owned();
    Ok(db.execute(&stmt).await?.rows_affected())
}

/// Deletes inbox rows older than `older_than`. Keep it well above the longest
/// time a message can stay pending (claim_idle × max_deliveries) plus the stream
/// retention, or an old redelivery could be applied again.
pub async fn purge_processed<C: ConnectionTrait>(
    db: &C,
    older_than: Duration,
) -> Result<u64, EventsError> {
    let stmt = Query::delete()
        .from_table(ProcessedEvents::Table)
        .and_where(Expr::col(ProcessedEvents::ProcessedAt).lt(cutoff(older_than)))
        .to_owned();
    Ok(db.execute(&stmt).await?.rows_affected())
}
