//! Consumer groups on Redis Streams.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use prost::Message;
use redis::Value;
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::publisher::lazy_connection;
use crate::util::Backoff;
use crate::{EventEnvelope, EventHandler, EventsError, HandlerError, dead_letter_key, stream_key};

/// Pages of `XAUTOCLAIM` per claim round, so a huge backlog of abandoned entries
/// does not starve new ones.
const CLAIM_PAGES_PER_ROUND: usize = 10;

/// Which stream a consumer reads, as whom, and how patiently.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Key prefix (see [`stream_key`]); empty in production.
    pub namespace: String,
    /// Logical stream, e.g. `retention.profile.events`.
    pub stream: String,
    /// Consumer group: one per consuming service; each group sees every event.
    pub group: String,
    /// Unique per replica (e.g. the pod name); entries are pending per consumer.
    pub consumer: String,
    /// Entries per read.
    pub batch: usize,
    /// How long one `XREADGROUP` waits for new entries.
    pub block: Duration,
    /// Entries pending longer than this (a dead consumer's, or ones whose handler
    /// asked to retry) are claimed and delivered again. Also the retry delay.
    pub claim_idle: Duration,
    /// Deliveries after which a message goes to the dead-letter stream.
    pub max_deliveries: u64,
    /// Batches one read is split into, handled at once. A customer's entries
    /// (by the envelope's `customer_id`) all go to the same batch, in stream
    /// order, so a customer's events never race each other.
    pub concurrency: usize,
}

impl ConsumerOptions {
    /// Defaults matching `retention_config::EventSettings` (claim after 30 s, dead
    /// letter after 10 deliveries).
    pub fn new(
        namespace: impl Into<String>,
        stream: impl Into<String>,
        group: impl Into<String>,
        consumer: impl Into<String>,
    ) -> Self {
        ConsumerOptions {
            namespace: namespace.into(),
            stream: stream.into(),
            group: group.into(),
            consumer: consumer.into(),
            batch: 64,
            block: Duration::from_secs(2),
            claim_idle: Duration::from_secs(30),
            max_deliveries: 10,
            concurrency: 1,
        }
    }

    /// A service replica's consumer of `stream` in the group `group`, with the
    /// claim and dead-letter limits from the configuration and a unique consumer name.
    pub fn from_settings(settings: &retention_config::Settings, stream: &str, group: &str) -> Self {
        let mut c = ConsumerOptions::new(
            settings.redis.namespace.clone(),
            stream,
            group,
            format!("{group}-{}", uuid::Uuid::new_v4().simple()),
        );
        c.claim_idle = Duration::from_millis(settings.events.claim_idle_ms);
        c.max_deliveries = settings.events.max_deliveries;
        c.concurrency = usize::try_from(settings.events.consumer_concurrency).unwrap_or(1);
        c
    }

    /// How often pending entries are scanned for claiming.
    fn claim_interval(&self) -> Duration {
        (self.claim_idle / 2).clamp(Duration::from_millis(10), Duration::from_secs(30))
    }
}

/// Reads one stream with a consumer group and hands each event to the handler;
/// acknowledges only after the handler returned `Ok` (i.e. after its transaction
/// committed), so nothing acknowledged is lost.
pub struct RedisConsumer {
    client: redis::Client,
    opts: ConsumerOptions,
    handler: Arc<dyn EventHandler>,
}

struct State {
    conn: ConnectionManager,
    key: String,
    dlq: String,
    group_ready: bool,
    claim_cursor: String,
    next_claim: Instant,
}

impl RedisConsumer {
    /// The consumer opens its own connection: a blocking `XREADGROUP` would stall
    /// every other command multiplexed on a shared one.
    pub fn new(
        client: redis::Client,
        opts: ConsumerOptions,
        handler: Arc<dyn EventHandler>,
    ) -> Self {
        let opts = ConsumerOptions {
            batch: opts.batch.max(1),
            max_deliveries: opts.max_deliveries.max(1),
            concurrency: opts.concurrency.max(1),
            ..opts
        };
        RedisConsumer {
            client,
            opts,
            handler,
        }
    }

    pub fn from_url(
        url: &str,
        opts: ConsumerOptions,
        handler: Arc<dyn EventHandler>,
    ) -> Result<Self, EventsError> {
        Ok(Self::new(redis::Client::open(url)?, opts, handler))
    }

    /// [`run`](Self::run) on a task, logging a fatal error.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let stream = self.opts.stream.clone();
            if let Err(e) = self.run(shutdown).await {
                tracing::error!(stream = %stream, error = %e, "event consumer stopped");
            }
        })
    }

    /// Consumes until `shutdown`. Redis outages are logged and retried with
    /// backoff; the only error returned is an invalid configuration.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), EventsError> {
        let conn = lazy_connection(
            self.client.clone(),
            // A blocking read legitimately takes `block`; anything beyond is an outage.
            self.opts.block + Duration::from_secs(2),
        )?;
        let mut st = State {
            conn,
            key: stream_key(&self.opts.namespace, &self.opts.stream),
            dlq: dead_letter_key(&self.opts.namespace, &self.opts.stream),
            group_ready: false,
            claim_cursor: "0-0".into(),
            // Claim right away: our own entries from before a restart, or a dead
            // replica's, should not wait a full interval.
            next_claim: Instant::now(),
        };
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        while !shutdown.is_cancelled() {
            match self.step(&mut st, &shutdown).await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    if matches!(&e, EventsError::Redis(r) if r.code() == Some("NOGROUP")) {
                        // Redis lost the group (restart without persistence): recreate.
                        st.group_ready = false;
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(stream = %st.key, group = %self.opts.group, error = %e,
                        retry_in_ms = delay.as_millis() as u64, "event consumer error; backing off");
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        Ok(())
    }

    async fn step(&self, st: &mut State, shutdown: &CancellationToken) -> Result<(), EventsError> {
        if !st.group_ready {
            self.ensure_group(st).await?;
            st.group_ready = true;
        }
        if Instant::now() >= st.next_claim {
            self.claim_round(st, shutdown).await?;
            st.next_claim = Instant::now() + self.opts.claim_interval();
        }
        // Wake up in time for the next claim round.
        let block = self
            .opts
            .block
            .min(st.next_claim.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1));
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(&self.opts.group)
            .arg(&self.opts.consumer)
            .arg("COUNT")
            .arg(self.opts.batch)
            .arg("BLOCK")
            .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX))
            .arg("STREAMS")
            .arg(&st.key)
            .arg(">");
        let mut conn = st.conn.clone();
        // Entries a cancelled read handed us stay pending and are claimed later.
        let reply: Option<StreamReadReply> = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            r = read.query_async(&mut conn) => r?,
        };
        let entries = reply
            .map(|r| r.keys)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|k| k.ids)
            .map(|entry| (entry, 1))
            .collect();
        self.process(st, entries, shutdown).await
    }

    /// `XGROUP CREATE .. 0 MKSTREAM`: a new group starts at the beginning of the
    /// retained stream, so events published before the consumer first started
    /// are not skipped (the producer creates declared groups before publishing).
    async fn ensure_group(&self, st: &mut State) -> Result<(), EventsError> {
        crate::publisher::create_group(&mut st.conn, &st.key, &self.opts.group).await
    }

    /// Takes over entries pending longer than `claim_idle` (crashed consumers, and
    /// our own retries) and processes them.
    async fn claim_round(
        &self,
        st: &mut State,
        shutdown: &CancellationToken,
    ) -> Result<(), EventsError> {
        let idle_ms = u64::try_from(self.opts.claim_idle.as_millis()).unwrap_or(u64::MAX);
        for _ in 0..CLAIM_PAGES_PER_ROUND {
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&st.key)
                .arg(&self.opts.group)
                .arg(&self.opts.consumer)
                .arg(idle_ms)
                .arg(&st.claim_cursor)
                .arg("COUNT")
                .arg(self.opts.batch)
                .query_async(&mut st.conn)
                .await?;
            st.claim_cursor = reply.next_stream_id;
            if !reply.deleted_ids.is_empty() {
                tracing::warn!(stream = %st.key, group = %self.opts.group, count = reply.deleted_ids.len(),
                    "pending entries were trimmed from the stream before being processed");
            }
            if !reply.claimed.is_empty() {
                let counts = self.delivery_counts(st, &reply.claimed).await?;
                let entries = reply
                    .claimed
                    .into_iter()
                    .map(|entry| {
                        let n = counts.get(&entry.id).copied().unwrap_or(1);
                        (entry, n)
                    })
                    .collect();
                self.process(st, entries, shutdown).await?;
                if shutdown.is_cancelled() {
                    return Ok(());
                }
            }
            if st.claim_cursor == "0-0" {
                break;
            }
        }
        Ok(())
    }

    /// Delivery counters of just-claimed entries (`XAUTOCLAIM` does not return
    /// them): one pipelined `XPENDING key group id id 1` per entry.
    async fn delivery_counts(
        &self,
        st: &mut State,
        entries: &[StreamId],
    ) -> Result<HashMap<String, u64>, EventsError> {
        let mut pipe = redis::pipe();
        for e in entries {
            pipe.cmd("XPENDING")
                .arg(&st.key)
                .arg(&self.opts.group)
                .arg(&e.id)
                .arg(&e.id)
                .arg(1);
        }
        let replies: Vec<StreamPendingCountReply> = pipe.query_async(&mut st.conn).await?;
        Ok(replies
            .into_iter()
            .flat_map(|r| r.ids)
            .map(|p| (p.id, p.times_delivered as u64))
            .collect())
    }

    /// Handles a read's entries (each with its delivery count), then acknowledges
    /// the handled ones with one `XACK`. Entries left unhandled at shutdown, and
    /// those whose handler asked to retry, stay pending and are claimed later.
    async fn process(
        &self,
        st: &mut State,
        entries: Vec<(StreamId, u64)>,
        shutdown: &CancellationToken,
    ) -> Result<(), EventsError> {
        let mut dead = Vec::new();
        let mut skipped = Vec::new();
        // Batches by customer, each in stream order; batches run concurrently.
        let mut batches: Vec<Vec<(StreamId, EventEnvelope, u64)>> =
            (0..self.opts.concurrency).map(|_| Vec::new()).collect();
        for (entry, deliveries) in entries {
            if deliveries > self.opts.max_deliveries {
                let reason = format!(
                    "delivered {deliveries} times, more than max_deliveries {}",
                    self.opts.max_deliveries
                );
                dead.push((entry, reason, deliveries));
                continue;
            }
            match decode_entry(&entry) {
                // A backfill addressed to another group: nothing to apply.
                Ok(env) if !crate::for_group(&env, &self.opts.group) => skipped.push(entry.id),
                Ok(env) => {
                    let batch = batch_of(&env.customer_id, batches.len());
                    batches[batch].push((entry, env, deliveries));
                }
                Err(reason) => dead.push((entry, reason, deliveries)),
            }
        }
        let key = st.key.as_str();
        let handled: Vec<(StreamId, u64, Outcome)> = futures::stream::iter(batches)
            .filter(|b| futures::future::ready(!b.is_empty()))
            .map(|batch| async move {
                if shutdown.is_cancelled() {
                    // Left pending; claimed after a restart.
                    return Vec::new();
                }
                let (entries, envs): (Vec<_>, Vec<_>) = batch
                    .into_iter()
                    .map(|(entry, env, deliveries)| ((entry, deliveries), env))
                    .unzip();
                let outcomes = self.handle(key, &envs, entries[0].1).await;
                entries
                    .into_iter()
                    .zip(outcomes)
                    .map(|((entry, deliveries), outcome)| (entry, deliveries, outcome))
                    .collect::<Vec<_>>()
            })
            .buffer_unordered(self.opts.concurrency)
            .flat_map(futures::stream::iter)
            .collect()
            .await;
        let skipped_count = skipped.len();
        let mut acked = skipped;
        for (entry, deliveries, outcome) in handled {
            match outcome {
                Outcome::Handled => acked.push(entry.id),
                Outcome::Retry => {}
                Outcome::Rejected(reason) => dead.push((entry, reason, deliveries)),
            }
        }
        if !acked.is_empty() {
            redis::cmd("XACK")
                .arg(&st.key)
                .arg(&self.opts.group)
                .arg(&acked)
                .query_async::<()>(&mut st.conn)
                .await?;
            crate::metrics::applied(
                &self.opts.stream,
                &self.opts.group,
                acked.len() - skipped_count,
            );
        }
        for (entry, reason, deliveries) in dead {
            self.dead_letter(st, &entry, &reason, deliveries).await?;
        }
        Ok(())
    }

    /// Runs the handler on a batch inside a consumer span, linked to the trace of
    /// its first event (a span has one parent; each event's id is logged).
    async fn handle(&self, key: &str, envs: &[EventEnvelope], deliveries: u64) -> Vec<Outcome> {
        let first = &envs[0];
        let span = tracing::info_span!(
            "event.consume",
            otel.kind = "consumer",
            event_id = %first.event_id,
            event_type = %first.event_type,
            events = envs.len(),
            stream = %key,
            group = %self.opts.group,
            deliveries,
        );
        retention_telemetry::set_parent(
            &span,
            retention_telemetry::context_from_traceparent(&first.traceparent, &first.tracestate),
        );
        let results = AssertUnwindSafe(self.handler.handle_batch(envs))
            .catch_unwind()
            .instrument(span.clone())
            .await
            .unwrap_or_else(|_| {
                envs.iter()
                    .map(|_| Err(HandlerError::Retry("handler panicked".into())))
                    .collect()
            });
        debug_assert_eq!(results.len(), envs.len());
        envs.iter()
            .zip(results.into_iter().chain(std::iter::repeat_with(|| {
                Err(HandlerError::Retry(
                    "handler returned too few results".into(),
                ))
            })))
            .map(|(env, result)| match result {
                Ok(()) => Outcome::Handled,
                Err(HandlerError::Retry(msg)) => {
                    span.in_scope(|| {
                        tracing::warn!(event_id = %env.event_id, error = %msg,
                            "event handler failed; will be retried after claim_idle")
                    });
                    Outcome::Retry
                }
                Err(HandlerError::Permanent(msg)) => {
                    span.in_scope(|| {
                        tracing::warn!(event_id = %env.event_id, error = %msg,
                            "event rejected; moving to dead-letter stream")
                    });
                    Outcome::Rejected(msg)
                }
            })
            .collect()
    }

    /// Copies the entry to the dead-letter stream (original fields plus reason,
    /// original id, group, consumer, deliveries) and acknowledges it, atomically.
    async fn dead_letter(
        &self,
        st: &mut State,
        entry: &StreamId,
        reason: &str,
        deliveries: u64,
    ) -> Result<(), EventsError> {
        tracing::warn!(stream = %st.key, group = %self.opts.group, entry = %entry.id, reason,
            "message moved to the dead-letter stream");
        let mut add = redis::cmd("XADD");
        add.arg(&st.dlq).arg("*");
        let mut fields: Vec<_> = entry.map.iter().collect();
        fields.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in fields {
            add.arg(k);
            match v {
                Value::BulkString(b) => add.arg(b.as_slice()),
                Value::SimpleString(s) => add.arg(s),
                Value::Int(i) => add.arg(*i),
                other => add.arg(format!("{other:?}")),
            };
        }
        add.arg("reason")
            .arg(reason)
            .arg("original_id")
            .arg(&entry.id)
            .arg("group")
            .arg(&self.opts.group)
            .arg("consumer")
            .arg(&self.opts.consumer)
            .arg("deliveries")
            .arg(deliveries);
        let mut ack = redis::cmd("XACK");
        ack.arg(&st.key).arg(&self.opts.group).arg(&entry.id);
        redis::pipe()
            .atomic()
            .add_command(add)
            .ignore()
            .add_command(ack)
            .ignore()
            .query_async::<()>(&mut st.conn)
            .await?;
        Ok(())
    }
}

/// Which of `batches` a customer's events go to: the same one every time.
pub(crate) fn batch_of(customer_id: &str, batches: usize) -> usize {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same customer lands in the same batch in
    // every replica and every run.
    let mut h = std::hash::DefaultHasher::new();
    customer_id.hash(&mut h);
    (h.finish() % batches.max(1) as u64) as usize
}

/// What became of one handled entry.
enum Outcome {
    /// The handler committed: acknowledge.
    Handled,
    /// Leave it pending; it is claimed and delivered again after `claim_idle`.
    Retry,
    /// The handler refused it for good: dead-letter it, with this reason.
    Rejected(String),
}

/// The envelope of a stream entry, or why it is unreadable (dead-letter reason).
fn decode_entry(entry: &StreamId) -> Result<EventEnvelope, String> {
    match entry.map.get("envelope") {
        Some(Value::BulkString(bytes)) => EventEnvelope::decode(bytes.as_slice())
            .map_err(|e| format!("undecodable envelope: {e}")),
        Some(_) => Err("envelope field is not a bulk string".into()),
        None => Err("entry has no envelope field".into()),
    }
}
