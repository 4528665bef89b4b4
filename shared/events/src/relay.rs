//! The outbox relay and the publishers it hands events to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use prost::Message;
use redis::aio::ConnectionManager;
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, TransactionTrait};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::migration::OutboxEvents;
use crate::util::Backoff;
use crate::{EventEnvelope, EventsError, outbox, stream_key};

/// One outbox row on its way to the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEvent {
    /// Logical stream (the publisher applies its namespace).
    pub stream: String,
    pub event_id: String,
    pub event_type: String,
    /// The encoded [`EventEnvelope`].
    pub envelope: Vec<u8>,
}

/// Where the relay puts events: Redis Streams, the in-process bus, or a test double.
pub trait Publisher: Send + Sync + 'static {
    /// Publishes one encoded envelope. An `Ok` means the event is durably on the bus.
    fn publish<'a>(
        &'a self,
        stream: &'a str,
        event_id: &'a str,
        envelope: &'a [u8],
    ) -> BoxFuture<'a, Result<(), EventsError>>;

    /// Publishes a batch; `Ok` only if all of them were. The default publishes one
    /// by one; Redis pipelines the batch in one round trip.
    fn publish_batch<'a>(
        &'a self,
        events: &'a [OutgoingEvent],
    ) -> BoxFuture<'a, Result<(), EventsError>> {
        Box::pin(async move {
            for e in events {
                self.publish(&e.stream, &e.event_id, &e.envelope).await?;
            }
            Ok(())
        })
    }
}

/// A connection manager with the timeouts DESIGN §7 asks for: connect and response
/// timeouts so an outage fails in milliseconds, and few reconnect retries so one
/// request does not sit through a long reconnect schedule. Connects lazily, so it
/// can be built while Redis is down.
pub(crate) fn lazy_connection(
    client: redis::Client,
    response_timeout: Duration,
) -> Result<ConnectionManager, EventsError> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1));
    Ok(ConnectionManager::new_lazy_with_config(client, config)?)
}

/// Publishes to Redis Streams: `XADD <ns:stream> MAXLEN ~ max_len * id .. type ..
/// envelope ..`. The approximate cap bounds memory; consumer groups lagging more
/// than `max_len` entries behind lose the trimmed ones, so size it generously.
#[derive(Clone)]
pub struct RedisPublisher {
    conn: ConnectionManager,
    namespace: String,
    max_len: usize,
}

impl RedisPublisher {
    /// `max_len == 0` disables trimming.
    pub fn new(conn: ConnectionManager, namespace: impl Into<String>, max_len: usize) -> Self {
        RedisPublisher {
            conn,
            namespace: namespace.into(),
            max_len,
        }
    }

    /// A publisher with its own lazily connected manager (1 s connect timeout, 2 s
    /// response timeout): building it never fails because Redis is down.
    pub fn from_url(
        url: &str,
        namespace: impl Into<String>,
        max_len: usize,
    ) -> Result<Self, EventsError> {
        let client = redis::Client::open(url)?;
        Ok(Self::new(
            lazy_connection(client, Duration::from_secs(2))?,
            namespace,
            max_len,
        ))
    }

    fn xadd(&self, stream: &str, event_id: &str, event_type: &str, envelope: &[u8]) -> redis::Cmd {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(stream_key(&self.namespace, stream));
        if self.max_len > 0 {
            cmd.arg("MAXLEN").arg("~").arg(self.max_len);
        }
        cmd.arg("*")
            .arg("id")
            .arg(event_id)
            .arg("type")
            .arg(event_type)
            .arg("envelope")
            .arg(envelope);
        cmd
    }
}

impl Publisher for RedisPublisher {
    fn publish<'a>(
        &'a self,
        stream: &'a str,
        event_id: &'a str,
        envelope: &'a [u8],
    ) -> BoxFuture<'a, Result<(), EventsError>> {
        Box::pin(async move {
            // The type field lets stream readers filter without decoding protobuf.
            let event_type = EventEnvelope::decode(envelope)
                .map(|e| e.event_type)
                .unwrap_or_default();
            let mut conn = self.conn.clone();
            self.xadd(stream, event_id, &event_type, envelope)
                .query_async::<redis::Value>(&mut conn)
                .await?;
            Ok(())
        })
    }

    fn publish_batch<'a>(
        &'a self,
        events: &'a [OutgoingEvent],
    ) -> BoxFuture<'a, Result<(), EventsError>> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(());
            }
            let mut pipe = redis::pipe();
            for e in events {
                pipe.add_command(self.xadd(&e.stream, &e.event_id, &e.event_type, &e.envelope))
                    .ignore();
            }
            let mut conn = self.conn.clone();
            pipe.query_async::<()>(&mut conn).await?;
            Ok(())
        })
    }
}

/// Relay tuning; mirrors `retention_config::EventSettings`.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Rows claimed and published per round trip.
    pub batch_size: usize,
    /// Poll interval when nobody calls the notifier.
    pub interval: Duration,
    /// Publishing service, for logs.
    pub source: String,
    /// Upper bound of the retry delay while the bus is unreachable.
    pub max_backoff: Duration,
    /// How long shutdown keeps flushing pending rows before giving up (they stay
    /// in the outbox and go out after the next start).
    pub shutdown_flush: Duration,
    /// Published rows older than this are deleted; `None` keeps them.
    pub retain_published: Option<Duration>,
    /// Inbox (`processed_events`) rows older than this are deleted; `None` keeps them.
    pub retain_processed: Option<Duration>,
}

impl RelayOptions {
    pub fn from_settings(s: &retention_config::EventSettings, source: &str) -> Self {
        RelayOptions {
            batch_size: s.relay_batch_size as usize,
            interval: Duration::from_millis(s.relay_interval_ms),
            source: source.into(),
            ..RelayOptions::default()
        }
    }
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            batch_size: 500,
            interval: Duration::from_millis(100),
            source: String::new(),
            max_backoff: Duration::from_secs(5),
            shutdown_flush: Duration::from_secs(5),
            retain_published: Some(Duration::from_secs(7 * 24 * 3600)),
            retain_processed: Some(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

/// The oldest unpublished rows; with `lock`, claimed so that concurrent relays
/// skip them instead of publishing them too.
pub(crate) fn claim_query(batch_size: usize, lock: bool) -> sea_orm::sea_query::SelectStatement {
    let mut select = Query::select();
    select
        .columns([
            OutboxEvents::Seq,
            OutboxEvents::EventId,
            OutboxEvents::Stream,
            OutboxEvents::EventType,
            OutboxEvents::Envelope,
        ])
        .from(OutboxEvents::Table)
        .and_where(Expr::col(OutboxEvents::PublishedAt).is_null())
        .order_by(OutboxEvents::Seq, Order::Asc)
        .limit(u64::try_from(batch_size).unwrap_or(u64::MAX));
    if lock {
        select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    select
}

/// How often the relay purges old outbox/inbox rows.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Moves committed outbox rows to the bus in `seq` order. On PostgreSQL rows are
/// claimed with `FOR UPDATE SKIP LOCKED` inside a transaction, so several replicas
/// can run relays and each row is published by exactly one of them. SQLite
/// (embedded, single process) has one writer and needs no claim.
pub struct Relay {
    db: DatabaseConnection,
    publisher: Arc<dyn Publisher>,
    opts: RelayOptions,
    notify: Arc<Notify>,
}

impl Relay {
    pub fn new(db: DatabaseConnection, publisher: Arc<dyn Publisher>, opts: RelayOptions) -> Self {
        let opts = RelayOptions {
            batch_size: opts.batch_size.max(1),
            ..opts
        };
        Relay {
            db,
            publisher,
            opts,
            notify: Arc::new(Notify::new()),
        }
    }

    /// Call `notify_one()` on it after committing a transaction that enqueued
    /// events, so they go out now instead of at the next poll.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// Publishes at most one batch of unpublished rows and marks them published.
    /// Returns how many were published; on a publish failure nothing is marked
    /// (the rows' `attempts` grow) and the error is returned.
    pub async fn flush_once(&self) -> Result<usize, EventsError> {
        if self.db.get_database_backend() == DbBackend::Postgres {
            let txn = self.db.begin().await?;
            let res = self.publish_batch(&txn, true).await;
            // Commit in both cases: success marks rows published, failure keeps the
            // attempts counter; either way the row locks are released.
            match res {
                Ok(n) => {
                    txn.commit().await?;
                    Ok(n)
                }
                Err(e) => {
                    let _ = txn.commit().await;
                    Err(e)
                }
            }
        } else {
            self.publish_batch(&self.db, false).await
        }
    }

    async fn publish_batch<C: ConnectionTrait>(
        &self,
        conn: &C,
        lock: bool,
    ) -> Result<usize, EventsError> {
        let rows = conn
            .query_all(&claim_query(self.opts.batch_size, lock))
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut seqs = Vec::with_capacity(rows.len());
        let mut batch = Vec::with_capacity(rows.len());
        for row in rows {
            seqs.push(row.try_get::<i64>("", "seq")?);
            batch.push(OutgoingEvent {
                stream: row.try_get("", "stream")?,
                event_id: row.try_get("", "event_id")?,
                event_type: row.try_get("", "event_type")?,
                envelope: row.try_get("", "envelope")?,
            });
        }
        match self.publisher.publish_batch(&batch).await {
            Ok(()) => {
                let update = Query::update()
                    .table(OutboxEvents::Table)
                    .value(OutboxEvents::PublishedAt, chrono::Utc::now())
                    .and_where(Expr::col(OutboxEvents::Seq).is_in(seqs))
                    .to_owned();
                conn.execute(&update).await?;
                tracing::debug!(source = %self.opts.source, count = batch.len(), "outbox rows published");
                Ok(batch.len())
            }
            Err(e) => {
                let update = Query::update()
                    .table(OutboxEvents::Table)
                    .value(
                        OutboxEvents::Attempts,
                        Expr::col(OutboxEvents::Attempts).add(1),
                    )
                    .and_where(Expr::col(OutboxEvents::Seq).is_in(seqs))
                    .to_owned();
                if let Err(db) = conn.execute(&update).await {
                    tracing::debug!(error = %db, "could not count the failed publish attempt");
                }
                Err(e)
            }
        }
    }

    /// Publishes batches until the outbox is empty (or a batch comes back short).
    async fn drain(&self) -> Result<usize, EventsError> {
        let mut total = 0;
        loop {
            let n = self.flush_once().await?;
            total += n;
            if n < self.opts.batch_size {
                return Ok(total);
            }
        }
    }

    async fn purge(&self) {
        if let Some(age) = self.opts.retain_published {
            match outbox::purge_published(&self.db, age).await {
                Ok(n) if n > 0 => tracing::info!(count = n, "purged published outbox rows"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbox purge failed"),
            }
        }
        if let Some(age) = self.opts.retain_processed
            && let Err(e) = outbox::purge_processed(&self.db, age).await
        {
            tracing::warn!(error = %e, "inbox purge failed");
        }
    }

    /// Runs the relay until `shutdown`, then flushes what is pending for at most
    /// `shutdown_flush` and returns. Failures (bus or database down) are logged
    /// and retried with jittered exponential backoff; the rows wait in the outbox.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(self.opts.interval, self.opts.max_backoff);
        let mut last_purge = Instant::now();
        loop {
            match self.drain().await {
                Ok(_) => {
                    backoff.reset();
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => break,
                        _ = self.notify.notified() => {}
                        _ = tokio::time::sleep(self.opts.interval) => {}
                    }
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(source = %self.opts.source, error = %e, retry_in_ms = delay.as_millis() as u64, "outbox relay failed; rows stay pending");
                    // Commits keep notifying while the bus is down; only the backoff
                    // decides when to try again.
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
            if last_purge.elapsed() >= PURGE_EVERY {
                last_purge = Instant::now();
                self.purge().await;
            }
        }
        match tokio::time::timeout(self.opts.shutdown_flush, self.drain()).await {
            Ok(Ok(n)) => tracing::debug!(count = n, "outbox flushed on shutdown"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "outbox flush on shutdown failed; rows go out after restart")
            }
            Err(_) => {
                tracing::warn!("outbox flush on shutdown timed out; rows go out after restart")
            }
        }
    }
}
