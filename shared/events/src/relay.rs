//! The outbox relay and the publishers it hands events to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
    /// The outbox row's sequence number (0 for events not from an outbox).
    pub seq: i64,
    /// Logical stream (the publisher applies its namespace).
    pub stream: String,
    pub event_id: String,
    pub event_type: String,
    /// The encoded [`EventEnvelope`].
    pub envelope: Vec<u8>,
}

/// How far a consumer group is behind the head of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLag {
    pub group: String,
    /// Entries of the stream the group has not acknowledged (Redis: counted
    /// from its oldest unacknowledged entry, so an upper bound).
    pub lag: u64,
}

/// How many more entries a stream takes now, and who holds it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub free: usize,
    /// The slowest declared group, when the stream has any.
    pub slowest: Option<GroupLag>,
}

impl Room {
    pub fn unbounded() -> Self {
        Room {
            free: usize::MAX,
            slowest: None,
        }
    }
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

    /// How many more entries `stream` takes before its slowest consumer group
    /// is further behind than the bound; the relay publishes no more than that.
    /// Unbounded by default.
    fn room<'a>(&'a self, _stream: &'a str) -> BoxFuture<'a, Result<Room, EventsError>> {
        Box::pin(futures::future::ready(Ok(Room::unbounded())))
    }

    /// `false` (the default): an `Ok` from `publish_batch` means the events are
    /// durable, and the relay marks the rows published. `true`: the relay marks
    /// them only as [`take_settled`](Self::take_settled) reports them.
    fn settles_later(&self) -> bool {
        false
    }

    /// The `seq`s of published rows that are now safe to mark published (every
    /// consumer group applied them), since the last call.
    fn take_settled(&self) -> Vec<i64> {
        Vec::new()
    }

    /// Asks a settling publisher to notify the relay when rows settle.
    fn wake_on_settle(&self, _relay: Arc<Notify>) {}
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

/// Publishes to Redis Streams: `XADD <ns:stream> * id .. type .. envelope ..`.
///
/// A stream with declared consumer groups ([`with_groups`](Self::with_groups))
/// is never capped by length: [`room`](Publisher::room) creates missing groups
/// (at the start of the stream, so nothing published before a consumer first
/// starts is skipped), trims with `XTRIM MINID` only what every declared group
/// acknowledged, and reports room only while the stream holds fewer than
/// `max_len` entries, so a stopped consumer holds the relay back instead of
/// losing events. A stream without declared groups is capped with `MAXLEN ~
/// max_len`.
#[derive(Clone)]
pub struct RedisPublisher {
    conn: ConnectionManager,
    namespace: String,
    max_len: usize,
    groups: Arc<HashMap<String, Vec<String>>>,
    /// The last look at each stream, shared by clones: the groups are read at
    /// most every [`ROOM_RECHECK`] while there is plenty of room.
    seen: Arc<Mutex<HashMap<String, Seen>>>,
}

/// What [`RedisPublisher::room`] last found on a stream, counted down by publishes.
#[derive(Clone)]
struct Seen {
    at: Instant,
    room: Room,
}

/// How long a look at a stream's groups stays good while it has room to spare.
const ROOM_RECHECK: Duration = Duration::from_secs(1);

/// A stream entry id (`ms-seq`), ordered as Redis orders them.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

impl RedisPublisher {
    /// `max_len == 0` disables trimming.
    pub fn new(conn: ConnectionManager, namespace: impl Into<String>, max_len: usize) -> Self {
        RedisPublisher {
            conn,
            namespace: namespace.into(),
            max_len,
            groups: Arc::default(),
            seen: Arc::default(),
        }
    }

    /// Declares the consumer groups of each logical stream.
    pub fn with_groups(mut self, groups: Vec<(String, Vec<String>)>) -> Self {
        self.groups = Arc::new(groups.into_iter().filter(|(_, g)| !g.is_empty()).collect());
        self
    }

    /// Looks at the declared groups of `stream`: creates missing ones, trims what
    /// all of them acknowledged, and counts what is left.
    async fn look(&self, stream: &str, groups: &[String]) -> Result<Room, EventsError> {
        let key = stream_key(&self.namespace, stream);
        let mut conn = self.conn.clone();
        let info: Result<redis::streams::StreamInfoGroupsReply, _> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&key)
            .query_async(&mut conn)
            .await;
        let known: HashMap<String, redis::streams::StreamInfoGroup> = match info {
            Ok(reply) => reply
                .groups
                .into_iter()
                .map(|g| (g.name.clone(), g))
                .collect(),
            // No stream yet: the groups below create it.
            Err(e) if e.to_string().contains("no such key") => HashMap::new(),
            Err(e) => return Err(e.into()),
        };
        let mut pending = redis::pipe();
        for g in groups {
            if !known.contains_key(g) {
                create_group(&mut conn, &key, g).await?;
            }
            pending.cmd("XPENDING").arg(&key).arg(g);
        }
        let pending: Vec<redis::streams::StreamPendingReply> =
            pending.query_async(&mut conn).await?;
        // Each group's oldest entry it still needs: its oldest unacknowledged
        // one, or the one after the last delivered.
        let mut oldest: Option<((u64, u64), &str)> = None;
        for (g, p) in groups.iter().zip(&pending) {
            let needs = match p {
                redis::streams::StreamPendingReply::Data(d) if d.count > 0 => {
                    parse_id(&d.start_id).unwrap_or((0, 0))
                }
                _ => known
                    .get(g)
                    .and_then(|i| parse_id(&i.last_delivered_id))
                    .map_or((0, 0), |(ms, seq)| match seq.checked_add(1) {
                        Some(seq) => (ms, seq),
                        None => (ms.saturating_add(1), 0),
                    }),
            };
            if oldest.is_none_or(|(o, _)| needs < o) {
                oldest = Some((needs, g));
            }
        }
        let Some(((ms, seq), slowest)) = oldest else {
            return Ok(Room::unbounded());
        };
        let (len,): (u64,) = redis::pipe()
            .cmd("XTRIM")
            .arg(&key)
            .arg("MINID")
            .arg(format!("{ms}-{seq}"))
            .ignore()
            .cmd("XLEN")
            .arg(&key)
            .query_async(&mut conn)
            .await?;
        Ok(Room {
            free: self
                .max_len
                .saturating_sub(usize::try_from(len).unwrap_or(usize::MAX)),
            slowest: Some(GroupLag {
                group: slowest.to_string(),
                lag: len,
            }),
        })
    }

    /// Each group of `stream` in Redis (and each `declared` one not created yet)
    /// with the entries it has not acknowledged: pending plus not yet delivered.
    pub async fn group_lags(
        &self,
        stream: &str,
        declared: &[String],
    ) -> Result<Vec<GroupLag>, EventsError> {
        let key = stream_key(&self.namespace, stream);
        let mut conn = self.conn.clone();
        let (info, len): (redis::streams::StreamInfoGroupsReply, u64) = match redis::pipe()
            .cmd("XINFO")
            .arg("GROUPS")
            .arg(&key)
            .cmd("XLEN")
            .arg(&key)
            .query_async(&mut conn)
            .await
        {
            Ok(r) => r,
            Err(e) if e.to_string().contains("no such key") => Default::default(),
            Err(e) => return Err(e.into()),
        };
        let mut lags: Vec<GroupLag> = info
            .groups
            .into_iter()
            .map(|g| GroupLag {
                lag: match g.lag {
                    Some(undelivered) => (undelivered + g.pending) as u64,
                    // Redis cannot tell (entries deleted past the group): at most
                    // the whole stream.
                    None => len,
                },
                group: g.name,
            })
            .collect();
        for g in declared {
            if !lags.iter().any(|l| &l.group == g) {
                // Created at the next publish, from the start of the stream.
                lags.push(GroupLag {
                    group: g.clone(),
                    lag: len,
                });
            }
        }
        Ok(lags)
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        // With declared groups, `room` trims to what they all acknowledged.
        if self.max_len > 0 && !self.groups.contains_key(stream) {
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
            let mut seen = self.seen();
            for e in events {
                if let Some(s) = seen.get_mut(&e.stream) {
                    s.room.free = s.room.free.saturating_sub(1);
                }
            }
            Ok(())
        })
    }

    fn room<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<Room, EventsError>> {
        Box::pin(async move {
            let Some(groups) = self.groups.get(stream) else {
                return Ok(Room::unbounded());
            };
            if self.max_len == 0 {
                return Ok(Room::unbounded());
            }
            if let Some(s) = self.seen().get(stream)
                && s.at.elapsed() < ROOM_RECHECK
                && s.room.free >= self.max_len / 2
            {
                return Ok(s.room.clone());
            }
            let room = self.look(stream, groups).await?;
            self.seen().insert(
                stream.to_string(),
                Seen {
                    at: Instant::now(),
                    room: room.clone(),
                },
            );
            Ok(room)
        })
    }
}

/// `XGROUP CREATE key group 0 MKSTREAM`; an existing group (BUSYGROUP) is fine.
pub(crate) async fn create_group(
    conn: &mut ConnectionManager,
    key: &str,
    group: &str,
) -> Result<(), EventsError> {
    let res = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async::<()>(conn)
        .await;
    match res {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(e.into()),
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
