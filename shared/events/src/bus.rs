//! The in-process bus for embedded mode (no Redis), and [`EventBus`], which lets a
//! service wire publishing and consuming the same way in both modes.
//!
//! The bus holds an entry until every consumer group of its stream has applied
//! it, and takes no more than `max_len` such entries per stream: a relay that
//! finds no room leaves its rows in the outbox (backpressure instead of loss).
//! Nothing in memory is durable, so the relay marks an outbox row published only
//! once every group applied its entry ([`Publisher::take_settled`]); after a
//! crash the row goes out again and the consumers' inbox drops the repeat.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use prost::Message;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::consumer::{ConsumerOptions, RedisConsumer};
use crate::relay::{GroupLag, OutgoingEvent, Publisher, RedisPublisher, Room};
use crate::util::Backoff;
use crate::{EventEnvelope, EventHandler, EventsError, HandlerError};

/// Entries per stream some group has not applied yet, by default.
const DEFAULT_MAX_LEN: usize = 10_000;

/// A message given up on: handler rejected it, or it failed `max_deliveries` times.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub stream: String,
    pub group: String,
    pub event_id: String,
    /// The encoded envelope as published.
    pub envelope: Vec<u8>,
    pub reason: String,
    pub deliveries: u64,
}

/// Outbox rows (by `seq`) of one publisher whose entries every group applied.
#[derive(Default)]
struct Origin {
    settled: Mutex<Vec<i64>>,
    /// The relay to wake when rows settle.
    waker: std::sync::OnceLock<Arc<tokio::sync::Notify>>,
}

impl Origin {
    fn settle(&self, seq: i64) {
        self.settled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(seq);
        if let Some(w) = self.waker.get() {
            w.notify_one();
        }
    }

    fn take(&self) -> Vec<i64> {
        std::mem::take(
            &mut *self
                .settled
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

struct Entry {
    event_id: String,
    envelope: Vec<u8>,
    /// Who to tell once every group applied it, with the outbox row's seq.
    origin: Option<(Arc<Origin>, i64)>,
}

impl Entry {
    fn settle(&self) {
        if let Some((origin, seq)) = &self.origin {
            origin.settle(*seq);
        }
    }
}

/// A group's position: entries before `applied` are all applied; `next` is the
/// next one to hand out; `done` holds applied offsets past a gap (several
/// consumers of one group finish out of order).
struct Cursor {
    next: u64,
    applied: u64,
    done: BTreeSet<u64>,
}

impl Cursor {
    fn at(offset: u64) -> Self {
        Cursor {
            next: offset,
            applied: offset,
            done: BTreeSet::new(),
        }
    }
}

#[derive(Default)]
struct StreamLog {
    /// Offset of `entries[0]`; offsets only grow.
    base: u64,
    entries: VecDeque<Arc<Entry>>,
    groups: HashMap<String, Cursor>,
    /// Entries before this offset are settled (reported to their publisher).
    settled: u64,
}

impl StreamLog {
    fn head(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// The offset before which every group applied every entry (all of them
    /// on a stream without groups).
    fn floor(&self) -> u64 {
        self.groups
            .values()
            .map(|c| c.applied)
            .min()
            .unwrap_or_else(|| self.head())
    }

    /// Entries some group has not applied yet.
    fn unapplied(&self) -> usize {
        usize::try_from(self.head() - self.floor()).unwrap_or(usize::MAX)
    }

    /// Settles the entries every group applied, and drops applied ones beyond
    /// `max_len` (the rest stay for a group that joins late). An entry some
    /// group has not applied is never dropped.
    fn trim(&mut self, max_len: usize) {
        let floor = self.floor();
        while self.settled < floor {
            if let Some(e) = usize::try_from(self.settled - self.base)
                .ok()
                .and_then(|i| self.entries.get(i))
            {
                e.settle();
            }
            self.settled += 1;
        }
        while self.entries.len() > max_len && self.base < floor {
            self.entries.pop_front();
            self.base += 1;
        }
    }

    /// The group furthest behind and how many entries it has not applied.
    fn slowest(&self) -> Option<GroupLag> {
        let head = self.head();
        self.groups
            .iter()
            .map(|(name, c)| GroupLag {
                group: name.clone(),
                lag: head.saturating_sub(c.applied),
            })
            .max_by(|a, b| a.lag.cmp(&b.lag).then_with(|| b.group.cmp(&a.group)))
    }
}

#[derive(Default)]
struct BusState {
    streams: HashMap<String, StreamLog>,
    dead: Vec<DeadLetter>,
}

struct BusInner {
    state: Mutex<BusState>,
    /// Bumped on every change; idle consumers and publishers waiting for room
    /// wait for a change.
    wake: watch::Sender<u64>,
    max_len: usize,
    /// Entries dropped before a group applied them: only entries of a stream
    /// without groups when one joins late, never with declared groups.
    trimmed_unapplied: AtomicU64,
}

/// Streams and consumer groups in memory, for embedded mode. Same semantics as the
/// Redis path where it matters: every group sees each event once, consumers of one
/// group share the work, a group declared (or joined) before an event was
/// published receives it, handler `Retry` errors are retried with backoff up to
/// `max_deliveries`, then (or on `Permanent`) the message goes to an inspectable
/// dead-letter list.
#[derive(Clone)]
pub struct InProcessBus {
    inner: Arc<BusInner>,
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new()
    }
}

impl InProcessBus {
    pub fn new() -> Self {
        Self::with_max_len(DEFAULT_MAX_LEN)
    }

    /// Holds at most `max_len` entries per stream that some group has not
    /// applied; publishing waits for room beyond that.
    pub fn with_max_len(max_len: usize) -> Self {
        InProcessBus {
            inner: Arc::new(BusInner {
                state: Mutex::new(BusState::default()),
                wake: watch::Sender::new(0),
                max_len: max_len.max(1),
                trimmed_unapplied: AtomicU64::new(0),
            }),
        }
    }

    /// A poisoned lock only means a panic elsewhere; the data is still consistent
    /// (every critical section is a few infallible collection operations).
    fn state(&self) -> MutexGuard<'_, BusState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn changed(&self) {
        self.inner.wake.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Declares `groups` on `stream` before any of them consumes: from now on the
    /// stream keeps every entry until each of them applied it.
    pub fn declare(&self, stream: &str, groups: &[String]) {
        let mut st = self.state();
        let log = st.streams.entry(stream.to_string()).or_default();
        let head = log.head();
        for g in groups {
            log.groups
                .entry(g.clone())
                .or_insert_with(|| Cursor::at(head));
        }
    }

    /// A publisher for one relay: its rows settle through it alone.
    pub fn publisher(&self) -> InProcessPublisher {
        InProcessPublisher {
            bus: self.clone(),
            origin: Arc::default(),
        }
    }

    /// Messages given up on, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.state().dead.clone()
    }

    /// Entries currently retained on `stream` (applied ones too, up to
    /// `max_len`, for a group that joins late).
    pub fn len(&self, stream: &str) -> usize {
        self.state()
            .streams
            .get(stream)
            .map_or(0, |s| s.entries.len())
    }

    /// Entries of `stream` some group has not applied yet.
    pub fn unapplied(&self, stream: &str) -> usize {
        self.state()
            .streams
            .get(stream)
            .map_or(0, StreamLog::unapplied)
    }

    pub fn is_empty(&self, stream: &str) -> bool {
        self.len(stream) == 0
    }

    /// Entries some group has not applied, per group of `stream`.
    pub fn lags(&self, stream: &str) -> Vec<GroupLag> {
        let st = self.state();
        let Some(log) = st.streams.get(stream) else {
            return Vec::new();
        };
        let head = log.head();
        let mut lags: Vec<GroupLag> = log
            .groups
            .iter()
            .map(|(group, c)| GroupLag {
                group: group.clone(),
                lag: head.saturating_sub(c.applied),
            })
            .collect();
        lags.sort_by(|a, b| a.group.cmp(&b.group));
        lags
    }

    /// Entries per stream some group may leave unapplied before publishers wait.
    pub fn max_len(&self) -> usize {
        self.inner.max_len
    }

    /// Entries dropped before some group had applied them (only possible on a
    /// stream whose group joined after the entries outgrew `max_len`).
    pub fn trimmed_unapplied(&self) -> u64 {
        self.inner.trimmed_unapplied.load(Ordering::Relaxed)
    }

    fn room_now(&self, stream: &str) -> Room {
        let st = self.state();
        let Some(log) = st.streams.get(stream) else {
            return Room::unbounded();
        };
        if log.groups.is_empty() {
            return Room::unbounded();
        }
        Room {
            free: self.inner.max_len.saturating_sub(log.unapplied()),
            slowest: log.slowest(),
        }
    }

    /// Appends one entry, waiting while the stream holds `max_len` entries some
    /// group has not applied.
    async fn push(&self, stream: &str, entry: Entry) {
        let mut wake = self.inner.wake.subscribe();
        let mut entry = Some(entry);
        loop {
            wake.borrow_and_update();
            {
                let mut st = self.state();
                let log = st.streams.entry(stream.to_string()).or_default();
                if log.groups.is_empty() || log.unapplied() < self.inner.max_len {
                    log.entries
                        .push_back(Arc::new(entry.take().expect("pushed once")));
                    log.trim(self.inner.max_len);
                    break;
                }
            }
            if wake.changed().await.is_err() {
                return;
            }
        }
        self.changed();
    }

    /// Registers `group` on `stream` (at the oldest retained entry) if new.
    fn join(&self, stream: &str, group: &str) {
        let mut st = self.state();
        let log = st.streams.entry(stream.to_string()).or_default();
        let base = log.base;
        log.groups
            .entry(group.to_string())
            .or_insert_with(|| Cursor::at(base));
    }

    /// The next entry for `group` and its offset, advancing the group's cursor.
    fn take(&self, stream: &str, group: &str) -> Option<(u64, Arc<Entry>)> {
        let mut st = self.state();
        let log = st.streams.entry(stream.to_string()).or_default();
        let base = log.base;
        let cursor = log
            .groups
            .entry(group.to_string())
            .or_insert_with(|| Cursor::at(base));
        if cursor.next < base {
            // Only a group that joined a stream without groups after it was
            // trimmed: the entries are gone.
            self.inner
                .trimmed_unapplied
                .fetch_add(base - cursor.next, Ordering::Relaxed);
            tracing::warn!(
                stream,
                group,
                missed = base - cursor.next,
                "in-process bus trimmed entries a group had not applied"
            );
            cursor.next = base;
            cursor.applied = cursor.applied.max(base);
        }
        let idx = usize::try_from(cursor.next - base).ok()?;
        let entry = log.entries.get(idx)?.clone();
        let offset = cursor.next;
        cursor.next += 1;
        Some((offset, entry))
    }

    /// Up to `max` next entries for `group`, in order, advancing its cursor.
    fn take_many(&self, stream: &str, group: &str, max: usize) -> Vec<(u64, Arc<Entry>)> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.take(stream, group) {
                Some(e) => out.push(e),
                None => break,
            }
        }
        out
    }

    /// `group` is done with the entry at `offset` (applied, skipped or buried).
    fn complete(&self, stream: &str, group: &str, offset: u64) {
        {
            let mut st = self.state();
            let Some(log) = st.streams.get_mut(stream) else {
                return;
            };
            let Some(cursor) = log.groups.get_mut(group) else {
                return;
            };
            cursor.done.insert(offset);
            while cursor.done.remove(&cursor.applied) {
                cursor.applied += 1;
            }
            log.trim(self.inner.max_len);
        }
        self.changed();
    }

    fn bury(&self, dead: DeadLetter) {
        tracing::warn!(stream = %dead.stream, group = %dead.group, event_id = %dead.event_id,
            reason = %dead.reason, "message moved to the in-process dead-letter list");
        self.state().dead.push(dead);
    }

    async fn publish_from(&self, origin: &Arc<Origin>, events: &[OutgoingEvent]) {
        for e in events {
            self.push(
                &e.stream,
                Entry {
                    event_id: e.event_id.clone(),
                    envelope: e.envelope.clone(),
                    origin: Some((origin.clone(), e.seq)),
                },
            )
            .await;
        }
    }
}

/// Publishing on the bus itself marks an entry delivered when it is pushed, as
/// the Redis path does on `XADD`: for tests and tools. A relay publishes through
/// [`InProcessBus::publisher`], which reports rows only once every group applied
/// them.
impl Publisher for InProcessBus {
    fn publish<'a>(
        &'a self,
        stream: &'a str,
        event_id: &'a str,
        envelope: &'a [u8],
    ) -> BoxFuture<'a, Result<(), EventsError>> {
        Box::pin(async move {
            self.push(
                stream,
                Entry {
                    event_id: event_id.to_string(),
                    envelope: envelope.to_vec(),
                    origin: None,
                },
            )
            .await;
            Ok(())
        })
    }

    fn room<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<Room, EventsError>> {
        Box::pin(futures::future::ready(Ok(self.room_now(stream))))
    }
}

/// One relay's way onto the in-process bus (see [`InProcessBus::publisher`]).
#[derive(Clone)]
pub struct InProcessPublisher {
    bus: InProcessBus,
    origin: Arc<Origin>,
}

impl Publisher for InProcessPublisher {
    fn publish<'a>(
        &'a self,
        stream: &'a str,
        event_id: &'a str,
        envelope: &'a [u8],
    ) -> BoxFuture<'a, Result<(), EventsError>> {
        self.bus.publish(stream, event_id, envelope)
    }

    fn publish_batch<'a>(
        &'a self,
        events: &'a [OutgoingEvent],
    ) -> BoxFuture<'a, Result<(), EventsError>> {
        Box::pin(async move {
            self.bus.publish_from(&self.origin, events).await;
            Ok(())
        })
    }

    fn room<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<Room, EventsError>> {
        self.bus.room(stream)
    }

    fn settles_later(&self) -> bool {
        true
    }

    fn take_settled(&self) -> Vec<i64> {
        self.origin.take()
    }

    fn wake_on_settle(&self, relay: Arc<tokio::sync::Notify>) {
        let _ = self.origin.waker.set(relay);
    }
}

/// Consumes `opts.stream` as `opts.group` from the in-process bus until
/// `shutdown` (`namespace`, `batch`, `block` are ignored; `claim_idle` caps the
/// retry backoff). A handler call in progress at shutdown is finished first.
pub fn run_in_process(
    bus: &InProcessBus,
    opts: ConsumerOptions,
    handler: Arc<dyn EventHandler>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    // Join before returning so events published right after are seen by the group.
    bus.join(&opts.stream, &opts.group);
    let bus = bus.clone();
    tokio::spawn(async move {
        let mut wake = bus.inner.wake.subscribe();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            wake.borrow_and_update();
            let batch = bus.take_many(&opts.stream, &opts.group, opts.batch.max(1));
            if batch.is_empty() {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    changed = wake.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
                continue;
            }
            if !deliver_batch(&bus, &opts, handler.as_ref(), batch, &shutdown).await {
                // Shutdown mid-retry: the entry stays unapplied, its outbox row
                // unpublished, and goes out after a restart.
                return;
            }
        }
    })
}

/// Hands what is waiting to the handler in one `handle_batch` (a handler that
/// applies a batch in one transaction catches up far faster than one event a
/// time), then retries each transient failure on its own. `false` when shutdown
/// interrupted the retries.
async fn deliver_batch(
    bus: &InProcessBus,
    opts: &ConsumerOptions,
    handler: &dyn EventHandler,
    batch: Vec<(u64, Arc<Entry>)>,
    shutdown: &CancellationToken,
) -> bool {
    let mut todo = Vec::with_capacity(batch.len());
    for (offset, entry) in batch {
        match EventEnvelope::decode(entry.envelope.as_slice()) {
            Err(e) => {
                bus.bury(dead_letter(
                    opts,
                    &entry,
                    format!("undecodable envelope: {e}"),
                    0,
                ));
                bus.complete(&opts.stream, &opts.group, offset);
            }
            Ok(env) if !crate::for_group(&env, &opts.group) => {
                bus.complete(&opts.stream, &opts.group, offset);
            }
            Ok(env) => todo.push((offset, entry, env)),
        }
    }
    let Some((_, _, first)) = todo.first() else {
        return true;
    };
    let span = tracing::info_span!(
        "event.consume",
        otel.kind = "consumer",
        event_id = %first.event_id,
        event_type = %first.event_type,
        events = todo.len(),
        stream = %opts.stream,
        group = %opts.group,
        deliveries = 1,
    );
    retention_telemetry::set_parent(
        &span,
        retention_telemetry::context_from_traceparent(&first.traceparent, &first.tracestate),
    );
    let envs: Vec<EventEnvelope> = todo.iter().map(|(_, _, env)| env.clone()).collect();
    let results = AssertUnwindSafe(handler.handle_batch(&envs))
        .catch_unwind()
        .instrument(span)
        .await
        .unwrap_or_else(|_| {
            envs.iter()
                .map(|_| Err(HandlerError::Retry("handler panicked".into())))
                .collect()
        });
    let results = results.into_iter().chain(std::iter::repeat_with(|| {
        Err(HandlerError::Retry(
            "handler returned too few results".into(),
        ))
    }));
    for ((offset, entry, _), result) in todo.into_iter().zip(results) {
        match result {
            Ok(()) => {}
            Err(HandlerError::Permanent(msg)) => bus.bury(dead_letter(opts, &entry, msg, 1)),
            Err(HandlerError::Retry(msg)) => {
                tracing::warn!(event_id = %entry.event_id, error = %msg, "event handler failed; retrying");
                if !deliver(bus, opts, handler, &entry, shutdown, 1).await {
                    return false;
                }
            }
        }
        bus.complete(&opts.stream, &opts.group, offset);
    }
    true
}

fn dead_letter(
    opts: &ConsumerOptions,
    entry: &Entry,
    reason: String,
    deliveries: u64,
) -> DeadLetter {
    DeadLetter {
        stream: opts.stream.clone(),
        group: opts.group.clone(),
        event_id: entry.event_id.clone(),
        envelope: entry.envelope.clone(),
        reason,
        deliveries,
    }
}

/// Hands one entry to the handler, retrying transient failures; `false` when
/// shutdown interrupted the retries (the entry is not done with).
async fn deliver(
    bus: &InProcessBus,
    opts: &ConsumerOptions,
    handler: &dyn EventHandler,
    entry: &Entry,
    shutdown: &CancellationToken,
    delivered: u64,
) -> bool {
    let dead = |reason: String, deliveries: u64| dead_letter(opts, entry, reason, deliveries);
    let env = match EventEnvelope::decode(entry.envelope.as_slice()) {
        Ok(env) => env,
        Err(e) => {
            bus.bury(dead(format!("undecodable envelope: {e}"), 0));
            return true;
        }
    };
    let max = opts.max_deliveries.max(1);
    if delivered >= max {
        bus.bury(dead(
            format!("delivered {delivered} times, more than max_deliveries {max}"),
            delivered,
        ));
        return true;
    }
    let mut backoff = Backoff::new(
        Duration::from_millis(50),
        opts.claim_idle.max(Duration::from_millis(50)),
    );
    // The failed delivery just now waits its backoff like any other.
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => return false,
        _ = tokio::time::sleep(backoff.next_delay()) => {}
    }
    for attempt in delivered + 1..=max {
        let span = tracing::info_span!(
            "event.consume",
            otel.kind = "consumer",
            event_id = %env.event_id,
            event_type = %env.event_type,
            stream = %opts.stream,
            group = %opts.group,
            deliveries = attempt,
        );
        retention_telemetry::set_parent(
            &span,
            retention_telemetry::context_from_traceparent(&env.traceparent, &env.tracestate),
        );
        let result = AssertUnwindSafe(handler.handle(&env))
            .catch_unwind()
            .instrument(span.clone())
            .await
            .unwrap_or_else(|_| Err(HandlerError::Retry("handler panicked".into())));
        match result {
            Ok(()) => return true,
            Err(HandlerError::Permanent(msg)) => {
                bus.bury(dead(msg, attempt));
                return true;
            }
            Err(HandlerError::Retry(msg)) if attempt == max => {
                span.in_scope(|| tracing::warn!(error = %msg, "event handler failed"));
                bus.bury(dead(
                    format!("delivered {attempt} times, more than max_deliveries {max}: {msg}"),
                    attempt,
                ));
                return true;
            }
            Err(HandlerError::Retry(msg)) => {
                let delay = backoff.next_delay();
                span.in_scope(|| {
                    tracing::warn!(error = %msg, retry_in_ms = delay.as_millis() as u64, "event handler failed; retrying")
                });
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => {
                        tracing::info!(event_id = %env.event_id, "shutdown while retrying; the event goes out again after a restart");
                        return false;
                    }
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    true
}

/// The bus a service runs on, so wiring is one code path: Redis Streams in
/// production, the in-process bus in embedded mode.
#[derive(Clone)]
pub enum EventBus {
    Redis {
        client: redis::Client,
        publisher: Box<RedisPublisher>,
    },
    InProcess(InProcessBus),
}

impl EventBus {
    /// Redis at `url` (connected lazily, so this works while Redis is down);
    /// streams prefixed with `namespace`. `groups` are the declared consumer
    /// groups per stream (see [`RedisPublisher::with_groups`]).
    pub fn redis(
        url: &str,
        namespace: &str,
        max_len: usize,
        groups: Vec<(String, Vec<String>)>,
    ) -> Result<Self, EventsError> {
        Ok(EventBus::Redis {
            client: redis::Client::open(url)?,
            publisher: Box::new(
                RedisPublisher::from_url(url, namespace, max_len)?.with_groups(groups),
            ),
        })
    }

    /// An in-process bus whose streams know only the groups that join them.
    pub fn in_process() -> Self {
        EventBus::InProcess(InProcessBus::new())
    }

    /// An in-process bus declaring the suite's default consumer groups: for one
    /// process running all four services (tests, tools).
    pub fn in_process_for_suite() -> Self {
        Self::in_process_declaring(&retention_config::Settings::defaults("suite", 0).events)
    }

    fn in_process_declaring(events: &retention_config::EventSettings) -> Self {
        let max_len = usize::try_from(events.stream_max_len).unwrap_or(usize::MAX);
        // In memory the bound is also the bus's footprint.
        let bus = InProcessBus::with_max_len(max_len.clamp(1, DEFAULT_MAX_LEN));
        for (stream, groups) in events.declared_groups() {
            bus.declare(&stream, &groups);
        }
        EventBus::InProcess(bus)
    }

    /// Redis when `redis.url` is set, with the consumer groups
    /// `events.consumer_groups` declares; else (embedded mode) an in-process bus
    /// for this service alone, which only the consumers of this process can
    /// read: they join it as they start.
    pub fn from_settings(settings: &retention_config::Settings) -> Result<Self, EventsError> {
        match settings.redis_url() {
            Some(url) => Self::redis(
                url,
                &settings.redis.namespace,
                usize::try_from(settings.events.stream_max_len).unwrap_or(usize::MAX),
                settings.events.declared_groups(),
            ),
            None => Ok(Self::in_process()),
        }
    }

    /// The bus of the all-in-one process: as [`from_settings`](Self::from_settings),
    /// but an in-process bus declares `events.consumer_groups` up front, since
    /// every consumer runs in this process; events published before a consumer
    /// started wait for it.
    pub fn for_suite(settings: &retention_config::Settings) -> Result<Self, EventsError> {
        match settings.redis_url() {
            Some(_) => Self::from_settings(settings),
            None => Ok(Self::in_process_declaring(&settings.events)),
        }
    }

    /// What one [`Relay`](crate::Relay) publishes through.
    pub fn publisher(&self) -> Arc<dyn Publisher> {
        match self {
            EventBus::Redis { publisher, .. } => Arc::new(publisher.as_ref().clone()),
            EventBus::InProcess(bus) => Arc::new(bus.publisher()),
        }
    }

    /// Each consumer group of `stream` (the `declared` ones, and any other the bus
    /// knows) and the entries it has not acknowledged.
    pub async fn group_lags(
        &self,
        stream: &str,
        declared: &[String],
    ) -> Result<Vec<GroupLag>, EventsError> {
        match self {
            EventBus::Redis { publisher, .. } => publisher.group_lags(stream, declared).await,
            EventBus::InProcess(bus) => {
                let mut lags = bus.lags(stream);
                for g in declared {
                    if !lags.iter().any(|l| &l.group == g) {
                        lags.push(GroupLag {
                            group: g.clone(),
                            lag: 0,
                        });
                    }
                }
                Ok(lags)
            }
        }
    }

    /// Starts a consumer task for `opts` that stops on `shutdown`.
    pub fn spawn_consumer(
        &self,
        opts: ConsumerOptions,
        handler: Arc<dyn EventHandler>,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        match self {
            EventBus::Redis { client, .. } => {
                RedisConsumer::new(client.clone(), opts, handler).spawn(shutdown)
            }
            EventBus::InProcess(bus) => run_in_process(bus, opts, handler, shutdown),
        }
    }
}
