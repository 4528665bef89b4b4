//! The operator's handle on one service's dead letters: list, inspect, replay
//! and discard the messages its consumer group gave up on, on either bus.
//!
//! * **Redis** — a consumer moves a poison message to the dead-letter stream of
//!   its source stream ([`dead_letter_key`], `<ns>:<stream>.dlq`) with the
//!   original fields (`id`, `type`, `envelope`) plus `reason`, `original_id`,
//!   `group`, `consumer` and `deliveries`. Every group of a stream shares that
//!   dead-letter stream; a handle sees only its own group's entries. A dead
//!   letter's id is `<stream>/<dead-letter entry id>`, and the entry id is also
//!   when it was buried.
//! * **In-process** — [`InProcessBus`](crate::InProcessBus) numbers its dead
//!   letters in burial order; the id is `<stream>/<number>`.
//!
//! Ids are opaque to callers: pass back what [`DeadLetters::list`] returned.
//!
//! [`DeadLetters::replay`] puts the original event back on its stream addressed
//! to the group alone (the envelope's `target_group`, which every other group
//! skips), and removes the dead letter in the same step, so the group applies
//! it once more; a handler's inbox ([`first_delivery`](crate::first_delivery))
//! keeps a repeated delivery from applying it twice.

use chrono::{DateTime, Utc};
use prost::Message;
use redis::Value;
use redis::aio::ConnectionManager;
use redis::streams::{StreamId, StreamRangeReply};

use crate::bus::Buried;
use crate::{EventBus, EventEnvelope, EventsError, dead_letter_key, stream_key};

/// The most dead letters one [`DeadLetters::list`] call returns.
pub const MAX_DEAD_LETTER_PAGE: usize = 1000;

/// Dead-letter entries read per `XRANGE` while looking for a group's own.
const SCAN_CHUNK: usize = 256;

/// Removes a dead letter and re-adds its event to the source stream, atomically:
/// nothing is added when the dead letter is already gone (replayed or discarded
/// concurrently). KEYS: dead-letter stream, source stream; ARGV: dead letter id,
/// event id, event type, envelope.
const REPLAY_SCRIPT: &str = r"
if redis.call('XDEL', KEYS[1], ARGV[1]) == 1 then
  return redis.call('XADD', KEYS[2], '*', 'id', ARGV[2], 'type', ARGV[3], 'envelope', ARGV[4])
end
return false
";

/// One dead letter as an operator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterView {
    /// Opaque id for [`DeadLetters::get`], `replay`, `discard` and paging.
    pub id: String,
    /// The logical stream the event came from (without namespace).
    pub stream: String,
    /// The consumer group that gave up on it.
    pub group: String,
    /// The event id (empty when the entry carried none).
    pub event_id: String,
    /// The event type (empty when unknown, e.g. an undecodable envelope).
    pub event_type: String,
    /// The customer the envelope is about, if it names one.
    pub customer_id: Option<String>,
    /// Why it was given up on: the handler's message, or the delivery limit.
    pub reason: String,
    /// Deliveries before it was given up on (0: never handed to the handler).
    pub deliveries: u64,
    /// When it was moved to the dead letters.
    pub buried_at: DateTime<Utc>,
}

/// A dead letter with the envelope as published (inspect).
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterDetail {
    pub view: DeadLetterView,
    /// The encoded [`EventEnvelope`]; empty when the entry carried none.
    pub envelope: Vec<u8>,
}

/// Lists, inspects, replays and discards the dead letters of one service: its
/// consumer group on the streams it consumes.
#[derive(Clone)]
pub struct DeadLetters {
    bus: EventBus,
    group: String,
    streams: Vec<String>,
}

impl DeadLetters {
    /// The dead letters of `group` on `streams`, on `bus`.
    pub fn new<S: Into<String>>(
        bus: &EventBus,
        group: &str,
        streams: impl IntoIterator<Item = S>,
    ) -> Self {
        let mut streams: Vec<String> = streams.into_iter().map(Into::into).collect();
        streams.sort();
        streams.dedup();
        DeadLetters {
            bus: bus.clone(),
            group: group.to_string(),
            streams,
        }
    }

    /// The dead letters of `group` on every stream `events.consumer_groups`
    /// says it consumes.
    pub fn for_group(
        bus: &EventBus,
        events: &retention_config::EventSettings,
        group: &str,
    ) -> Self {
        let streams = events
            .declared_groups()
            .into_iter()
            .filter(|(_, groups)| groups.iter().any(|g| g == group))
            .map(|(stream, _)| stream);
        Self::new(bus, group, streams)
    }

    /// The consumer group whose dead letters these are.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The streams the group consumes.
    pub fn streams(&self) -> &[String] {
        &self.streams
    }

    /// Up to `page_size` (1 to [`MAX_DEAD_LETTER_PAGE`]) dead letters, oldest
    /// first, after the one with id `after` (from the start when `None`).
    /// An `after` that is no dead letter id of these streams is an
    /// [`EventsError::InvalidEntry`].
    pub async fn list(
        &self,
        page_size: usize,
        after: Option<&str>,
    ) -> Result<Vec<DeadLetterView>, EventsError> {
        let page = page_size.clamp(1, MAX_DEAD_LETTER_PAGE);
        let after = after
            .map(|a| self.parse_id(a).ok_or_else(|| invalid_id(a)))
            .transpose()?;
        match &self.bus {
            EventBus::InProcess(bus) => {
                let after = after.map(|(_, n)| parse_seq(&n)).transpose()?;
                Ok(bus
                    .buried(&self.group, &self.streams, after, page)
                    .iter()
                    .map(in_process_view)
                    .collect())
            }
            EventBus::Redis { publisher, .. } => {
                let after = after
                    .map(|(stream, n)| Ok::<_, EventsError>((entry_id(&n)?, stream)))
                    .transpose()?;
                let mut conn = publisher.connection();
                let mut all = Vec::new();
                for stream in &self.streams {
                    let dlq = dead_letter_key(publisher.namespace(), stream);
                    let found = self
                        .scan(&mut conn, &dlq, stream, after.as_ref(), page)
                        .await?;
                    all.extend(found);
                }
                all.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.stream.cmp(&b.1.stream)));
                all.truncate(page);
                Ok(all.into_iter().map(|(_, v)| v).collect())
            }
        }
    }

    /// How many dead letters the group has, counting no further than `bound`.
    pub async fn count(&self, bound: usize) -> Result<usize, EventsError> {
        let mut n = 0;
        let mut after: Option<String> = None;
        while n < bound {
            let page = self.list(MAX_DEAD_LETTER_PAGE, after.as_deref()).await?;
            n += page.len();
            match page.last() {
                Some(last) if page.len() == MAX_DEAD_LETTER_PAGE => after = Some(last.id.clone()),
                _ => break,
            }
        }
        Ok(n.min(bound))
    }

    /// Up to `page` of the group's dead letters on one dead-letter stream,
    /// each with its entry id, after `after` in (entry id, stream) order.
    async fn scan(
        &self,
        conn: &mut ConnectionManager,
        dlq: &str,
        stream: &str,
        after: Option<&((u64, u64), String)>,
        page: usize,
    ) -> Result<Vec<((u64, u64), DeadLetterView)>, EventsError> {
        let mut start =
            after.map_or_else(|| "-".to_string(), |((ms, seq), _)| format!("{ms}-{seq}"));
        let mut found = Vec::new();
        loop {
            let reply: StreamRangeReply = redis::cmd("XRANGE")
                .arg(dlq)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(SCAN_CHUNK)
                .query_async(conn)
                .await?;
            let n = reply.ids.len();
            let mut last = None;
            for e in reply.ids {
                let id = entry_id(&e.id)?;
                last = Some(id);
                let past = after.is_none_or(|(a, s)| (id, stream) > (*a, s.as_str()));
                if past && text(&e, "group").as_deref() == Some(self.group.as_str()) {
                    found.push((id, redis_view(stream, &e, id).0));
                }
            }
            match last {
                Some((ms, seq)) if found.len() < page && n == SCAN_CHUNK => {
                    start = format!("{ms}-{}", seq.saturating_add(1));
                }
                _ => break,
            }
        }
        found.truncate(page);
        Ok(found)
    }

    /// The dead letter with id `id` and its envelope; `None` when there is no
    /// such dead letter of this group (any more).
    pub async fn get(&self, id: &str) -> Result<Option<DeadLetterDetail>, EventsError> {
        let Some((stream, n)) = self.parse_id(id) else {
            return Ok(None);
        };
        match &self.bus {
            EventBus::InProcess(bus) => {
                let Ok(seq) = parse_seq(&n) else {
                    return Ok(None);
                };
                Ok(bus
                    .buried_one(&self.group, &stream, seq)
                    .map(|b| DeadLetterDetail {
                        view: in_process_view(&b),
                        envelope: b.letter.envelope,
                    }))
            }
            EventBus::Redis { publisher, .. } => {
                let Ok(entry) = entry_id(&n) else {
                    return Ok(None);
                };
                let mut conn = publisher.connection();
                let dlq = dead_letter_key(publisher.namespace(), &stream);
                let reply: StreamRangeReply = redis::cmd("XRANGE")
                    .arg(&dlq)
                    .arg(&n)
                    .arg(&n)
                    .query_async(&mut conn)
                    .await?;
                Ok(reply
                    .ids
                    .into_iter()
                    .find(|e| text(e, "group").as_deref() == Some(self.group.as_str()))
                    .map(|e| {
                        let (view, envelope) = redis_view(&stream, &e, entry);
                        DeadLetterDetail { view, envelope }
                    }))
            }
        }
    }

    /// Puts the event of dead letter `id` back on its stream, addressed to this
    /// group alone, and removes the dead letter; `false` when there is no such
    /// dead letter (any more), e.g. it was already replayed. A dead letter
    /// without a decodable envelope cannot be replayed
    /// ([`EventsError::InvalidEntry`]; discard it).
    pub async fn replay(&self, id: &str) -> Result<bool, EventsError> {
        let Some(detail) = self.get(id).await? else {
            return Ok(false);
        };
        let mut env = EventEnvelope::decode(detail.envelope.as_slice()).map_err(|e| {
            EventsError::InvalidEntry {
                id: id.to_string(),
                reason: format!("cannot replay, undecodable envelope: {e}"),
            }
        })?;
        env.target_group = self.group.clone();
        let envelope = env.encode_to_vec();
        let (stream, n) = self.parse_id(id).ok_or_else(|| invalid_id(id))?;
        let replayed = match &self.bus {
            EventBus::InProcess(bus) => bus
                .unbury(&self.group, &stream, parse_seq(&n)?, Some(envelope))
                .is_some(),
            EventBus::Redis { publisher, .. } => {
                let mut conn = publisher.connection();
                let ns = publisher.namespace();
                let added: Option<String> = redis::cmd("EVAL")
                    .arg(REPLAY_SCRIPT)
                    .arg(2)
                    .arg(dead_letter_key(ns, &stream))
                    .arg(stream_key(ns, &stream))
                    .arg(&n)
                    .arg(&env.event_id)
                    .arg(&env.event_type)
                    .arg(envelope)
                    .query_async(&mut conn)
                    .await?;
                added.is_some()
            }
        };
        if replayed {
            tracing::info!(stream = %stream, group = %self.group, event_id = %env.event_id,
                dead_letter = %id, "dead letter replayed");
        }
        Ok(replayed)
    }

    /// Removes dead letter `id` for good; `false` when there is no such dead
    /// letter (any more).
    pub async fn discard(&self, id: &str) -> Result<bool, EventsError> {
        let Some(detail) = self.get(id).await? else {
            return Ok(false);
        };
        let (stream, n) = self.parse_id(id).ok_or_else(|| invalid_id(id))?;
        let discarded = match &self.bus {
            EventBus::InProcess(bus) => bus
                .unbury(&self.group, &stream, parse_seq(&n)?, None)
                .is_some(),
            EventBus::Redis { publisher, .. } => {
                let mut conn = publisher.connection();
                let removed: u64 = redis::cmd("XDEL")
                    .arg(dead_letter_key(publisher.namespace(), &stream))
                    .arg(&n)
                    .query_async(&mut conn)
                    .await?;
                removed == 1
            }
        };
        if discarded {
            tracing::info!(stream = %stream, group = %self.group,
                event_id = %detail.view.event_id, dead_letter = %id, "dead letter discarded");
        }
        Ok(discarded)
    }

    /// `<stream>/<n>` of one of our streams → (stream, n).
    fn parse_id(&self, id: &str) -> Option<(String, String)> {
        let (stream, n) = id.rsplit_once('/')?;
        self.streams
            .iter()
            .any(|s| s == stream)
            .then(|| (stream.to_string(), n.to_string()))
    }
}

fn invalid_id(id: &str) -> EventsError {
    EventsError::InvalidEntry {
        id: id.to_string(),
        reason: "not a dead letter id of this service".into(),
    }
}

fn parse_seq(n: &str) -> Result<u64, EventsError> {
    n.parse().map_err(|_| invalid_id(n))
}

/// A stream entry id `ms-seq`.
fn entry_id(id: &str) -> Result<(u64, u64), EventsError> {
    id.split_once('-')
        .and_then(|(ms, seq)| Some((ms.parse().ok()?, seq.parse().ok()?)))
        .ok_or_else(|| invalid_id(id))
}

fn bytes(e: &StreamId, field: &str) -> Option<Vec<u8>> {
    match e.map.get(field)? {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn text(e: &StreamId, field: &str) -> Option<String> {
    bytes(e, field).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The view of a Redis dead-letter entry, and its envelope bytes.
fn redis_view(stream: &str, e: &StreamId, (ms, _): (u64, u64)) -> (DeadLetterView, Vec<u8>) {
    let envelope = bytes(e, "envelope").unwrap_or_default();
    let env = EventEnvelope::decode(envelope.as_slice()).ok();
    let view = DeadLetterView {
        id: format!("{stream}/{}", e.id),
        stream: stream.to_string(),
        group: text(e, "group").unwrap_or_default(),
        event_id: text(e, "id")
            .or_else(|| env.as_ref().map(|v| v.event_id.clone()))
            .unwrap_or_default(),
        event_type: text(e, "type")
            .or_else(|| env.as_ref().map(|v| v.event_type.clone()))
            .unwrap_or_default(),
        customer_id: env
            .as_ref()
            .map(|v| v.customer_id.clone())
            .filter(|c| !c.is_empty()),
        reason: text(e, "reason").unwrap_or_default(),
        deliveries: text(e, "deliveries")
            .and_then(|d| d.parse().ok())
            .unwrap_or(0),
        buried_at: i64::try_from(ms)
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or_default(),
    };
    (view, envelope)
}

fn in_process_view(b: &Buried) -> DeadLetterView {
    let env = EventEnvelope::decode(b.letter.envelope.as_slice()).ok();
    DeadLetterView {
        id: format!("{}/{}", b.letter.stream, b.seq),
        stream: b.letter.stream.clone(),
        group: b.letter.group.clone(),
        event_id: b.letter.event_id.clone(),
        event_type: env
            .as_ref()
            .map(|v| v.event_type.clone())
            .unwrap_or_default(),
        customer_id: env.map(|v| v.customer_id).filter(|c| !c.is_empty()),
        reason: b.letter.reason.clone(),
        deliveries: b.letter.deliveries,
        buried_at: b.at,
    }
}
