//! The outbox relay: moves committed outbox rows to a [`Publisher`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, TransactionTrait};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::migration::OutboxEvents;
use crate::publisher::{OutgoingEvent, Publisher, Room};
use crate::util::Backoff;
use crate::{EventsError, outbox};

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
#[cfg(test)]
pub(crate) fn claim_query(batch_size: usize, lock: bool) -> sea_orm::sea_query::SelectStatement {
    claim_after(batch_size, lock, 0)
}

/// [`claim_query`] for rows past `after` (rows up to it are on the bus already).
fn claim_after(batch_size: usize, lock: bool, after: i64) -> sea_orm::sea_query::SelectStatement {
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
    if after > 0 {
        select.and_where(Expr::col(OutboxEvents::Seq).gt(after));
    }
    if lock {
        select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    select
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn mark_published<C: ConnectionTrait>(conn: &C, seqs: &[i64]) -> Result<(), EventsError> {
    let update = Query::update()
        .table(OutboxEvents::Table)
        .value(OutboxEvents::PublishedAt, chrono::Utc::now())
        .and_where(Expr::col(OutboxEvents::Seq).is_in(seqs.iter().copied()))
        .to_owned();
    conn.execute(&update).await?;
    Ok(())
}

/// How often the relay purges old outbox/inbox rows.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Moves committed outbox rows to the bus in `seq` order. On PostgreSQL rows are
/// claimed with `FOR UPDATE SKIP LOCKED` inside a transaction, so several replicas
/// can run relays and each row is published by exactly one of them. SQLite
/// (embedded, single process) has one writer and needs no claim.
///
/// The relay publishes no more than the publisher has room for (see
/// [`Publisher::room`]): while a consumer group is too far behind, rows wait in
/// the outbox, and the relay says so once per episode. Through a publisher that
/// settles later (the in-process bus), rows on the bus are marked published
/// only once every group applied them.
pub struct Relay {
    db: DatabaseConnection,
    publisher: Arc<dyn Publisher>,
    opts: RelayOptions,
    notify: Arc<Notify>,
    /// Settling publishers: the highest seq on the bus, and how many rows are
    /// there unsettled. The next claim starts past `pushed`; once nothing is in
    /// flight it starts from the beginning again, so a row committed out of seq
    /// order is not passed over.
    pushed: AtomicI64,
    in_flight: AtomicUsize,
    /// Settled seqs not yet marked (the update failed).
    unmarked: Mutex<Vec<i64>>,
    /// The stream holding the relay back, since when.
    held: RelayStatus,
}

/// Whether a relay is held back by a slow consumer group, readable while it runs.
#[derive(Clone, Default)]
pub struct RelayStatus(Arc<Mutex<Option<(String, Instant)>>>);

impl RelayStatus {
    /// The stream holding the relay back and for how long, if one does.
    pub fn held(&self) -> Option<(String, Duration)> {
        lock(&self.0)
            .as_ref()
            .map(|(stream, since)| (stream.clone(), since.elapsed()))
    }
}

/// Rows per `UPDATE .. WHERE seq IN (..)`.
const MARK_CHUNK: usize = 1000;

impl Relay {
    pub fn new(db: DatabaseConnection, publisher: Arc<dyn Publisher>, opts: RelayOptions) -> Self {
        let opts = RelayOptions {
            batch_size: opts.batch_size.max(1),
            ..opts
        };
        let notify = Arc::new(Notify::new());
        publisher.wake_on_settle(notify.clone());
        Relay {
            db,
            publisher,
            opts,
            notify,
            pushed: AtomicI64::new(0),
            in_flight: AtomicUsize::new(0),
            unmarked: Mutex::new(Vec::new()),
            held: RelayStatus::default(),
        }
    }

    /// Marks the rows the publisher reports settled as published.
    async fn mark_settled(&self) -> Result<(), EventsError> {
        if !self.publisher.settles_later() {
            return Ok(());
        }
        let seqs = {
            let mut unmarked = lock(&self.unmarked);
            unmarked.extend(self.publisher.take_settled());
            std::mem::take(&mut *unmarked)
        };
        for (i, chunk) in seqs.chunks(MARK_CHUNK).enumerate() {
            if let Err(e) = mark_published(&self.db, chunk).await {
                lock(&self.unmarked).extend_from_slice(&seqs[i * MARK_CHUNK..]);
                return Err(e);
            }
            let before = self
                .in_flight
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    Some(n.saturating_sub(chunk.len()))
                })
                .unwrap_or(0);
            if before <= chunk.len() {
                self.pushed.store(0, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    /// Notes whether `stream` holds the relay back, logging the start and the
    /// end of each episode (not every batch).
    async fn note_hold(&self, hold: Option<(&str, &Room)>) {
        let started = {
            let mut held = lock(&self.held.0);
            match (hold, held.as_ref()) {
                (Some(_), Some(_)) => return,
                (None, None) => return,
                (None, Some((stream, since))) => {
                    tracing::info!(source = %self.opts.source, stream = %stream,
                        held_ms = since.elapsed().as_millis() as u64,
                        "outbox relay resumed; the slow consumer group caught up");
                    *held = None;
                    return;
                }
                (Some((stream, _)), None) => {
                    *held = Some((stream.to_string(), Instant::now()));
                    true
                }
            }
        };
        if let (true, Some((stream, room))) = (started, hold) {
            let backlog = outbox::backlog(&self.db).await.unwrap_or_default();
            let (group, lag) = room
                .slowest
                .as_ref()
                .map_or(("", 0), |g| (g.group.as_str(), g.lag));
            tracing::warn!(source = %self.opts.source, stream, group, lag,
                outbox_rows = backlog.rows, oldest_age_s = backlog.oldest_age.as_secs(),
                "outbox relay held back: a consumer group is behind; events wait in the outbox");
        }
    }

    /// Whether the relay is held back, for [`BacklogProbe`](crate::BacklogProbe).
    pub fn status(&self) -> RelayStatus {
        self.held.clone()
    }

    /// Call `notify_one()` on it after committing a transaction that enqueued
    /// events, so they go out now instead of at the next poll.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// Publishes at most one batch of unpublished rows (no more than the
    /// publisher has room for) and marks them published; through a settling
    /// publisher, marks those every group has applied instead. Returns how many
    /// were published; on a publish failure nothing is marked (the rows'
    /// `attempts` grow) and the error is returned.
    pub async fn flush_once(&self) -> Result<usize, EventsError> {
        self.mark_settled().await?;
        let n = self.claim_and_publish().await?;
        // Entries nobody waits for settle as they are pushed.
        self.mark_settled().await?;
        Ok(n)
    }

    async fn claim_and_publish(&self) -> Result<usize, EventsError> {
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
        let settles_later = self.publisher.settles_later();
        let after = if settles_later {
            self.pushed.load(Ordering::SeqCst)
        } else {
            0
        };
        let rows = conn
            .query_all(&claim_after(self.opts.batch_size, lock, after))
            .await?;
        if rows.is_empty() {
            self.note_hold(None).await;
            return Ok(0);
        }
        let mut seqs = Vec::with_capacity(rows.len());
        let mut batch = Vec::with_capacity(rows.len());
        for row in rows {
            let seq = row.try_get::<i64>("", "seq")?;
            seqs.push(seq);
            batch.push(OutgoingEvent {
                seq,
                stream: row.try_get("", "stream")?,
                event_id: row.try_get("", "event_id")?,
                event_type: row.try_get("", "event_type")?,
                envelope: row.try_get("", "envelope")?,
            });
        }
        // No more than each stream has room for, in seq order.
        let mut rooms: HashMap<String, Room> = HashMap::new();
        let mut take = 0;
        let mut blocked: Option<(String, Room)> = None;
        for e in &batch {
            if !rooms.contains_key(&e.stream) {
                let room = self.publisher.room(&e.stream).await?;
                rooms.insert(e.stream.clone(), room);
            }
            let room = rooms.get_mut(&e.stream).expect("inserted above");
            if room.free == 0 {
                blocked = Some((e.stream.clone(), room.clone()));
                break;
            }
            room.free -= 1;
            take += 1;
        }
        // The episode ends once the outbox is caught up, not at the first batch
        // that fits (a draining backlog would flap between the two).
        let claimed = batch.len();
        match &blocked {
            Some((stream, room)) => self.note_hold(Some((stream.as_str(), room))).await,
            None if claimed < self.opts.batch_size => self.note_hold(None).await,
            None => {}
        }
        if take == 0 {
            return Ok(0);
        }
        batch.truncate(take);
        seqs.truncate(take);
        match self.publisher.publish_batch(&batch).await {
            Ok(()) if settles_later => {
                self.in_flight.fetch_add(take, Ordering::SeqCst);
                self.pushed
                    .fetch_max(*seqs.last().expect("take > 0"), Ordering::SeqCst);
                Ok(take)
            }
            Ok(()) => {
                mark_published(conn, &seqs).await?;
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
