//! Where the relay puts events: the [`Publisher`] trait, what it reports (room
//! on a stream, each group's lag), and Redis Streams as a publisher.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use prost::Message;
use redis::aio::ConnectionManager;
use tokio::sync::Notify;

use crate::{EventEnvelope, EventsError, stream_key};

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
    /// Of those, entries delivered to a consumer of the group and not yet
    /// acknowledged (being applied, retried, or held by a dead consumer until
    /// claimed).
    pub pending: u64,
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
                pending: 0,
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
                pending: g.pending as u64,
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
                    pending: 0,
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

    /// The key prefix of this publisher's streams.
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The (shared, lazily connected) connection this publisher uses.
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.conn.clone()
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
