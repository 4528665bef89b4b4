//! The in-process bus for embedded mode (no Redis), and [`EventBus`], which lets a
//! service wire publishing and consuming the same way in both modes.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
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
use crate::relay::{Publisher, RedisPublisher};
use crate::util::Backoff;
use crate::{EventEnvelope, EventHandler, EventsError, HandlerError};

/// Entries retained per stream by default (like Redis `MAXLEN`).
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

struct Entry {
    event_id: String,
    envelope: Vec<u8>,
}

#[derive(Default)]
struct StreamLog {
    /// Offset of `entries[0]`; offsets only grow.
    base: u64,
    entries: VecDeque<Arc<Entry>>,
    /// Next offset each consumer group will take.
    groups: HashMap<String, u64>,
}

#[derive(Default)]
struct BusState {
    streams: HashMap<String, StreamLog>,
    dead: Vec<DeadLetter>,
}

struct BusInner {
    state: Mutex<BusState>,
    /// Bumped on every publish; idle consumers wait for a change.
    wake: watch::Sender<u64>,
    max_len: usize,
}

/// Streams and consumer groups in memory, for embedded mode. Same semantics as the
/// Redis path where it matters: every group sees each event once, consumers of one
/// group share the work, a new group starts at the oldest retained entry, handler
/// `Retry` errors are retried with backoff up to `max_deliveries`, then (or on
/// `Permanent`) the message goes to an inspectable dead-letter list.
///
/// Not durable: events published to the bus but not yet handled when the process
/// exits are gone (their outbox rows are already marked published).
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

    /// Retains at most `max_len` entries per stream (oldest dropped first).
    pub fn with_max_len(max_len: usize) -> Self {
        InProcessBus {
            inner: Arc::new(BusInner {
                state: Mutex::new(BusState::default()),
                wake: watch::Sender::new(0),
                max_len: max_len.max(1),
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

    /// Messages given up on, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.state().dead.clone()
    }

    /// Entries currently retained on `stream`.
    pub fn len(&self, stream: &str) -> usize {
        self.state()
            .streams
            .get(stream)
            .map_or(0, |s| s.entries.len())
    }

    pub fn is_empty(&self, stream: &str) -> bool {
        self.len(stream) == 0
    }

    fn push(&self, stream: &str, event_id: &str, envelope: &[u8]) {
        {
            let mut st = self.state();
            let log = st.streams.entry(stream.to_string()).or_default();
            log.entries.push_back(Arc::new(Entry {
                event_id: event_id.to_string(),
                envelope: envelope.to_vec(),
            }));
            while log.entries.len() > self.inner.max_len {
                log.entries.pop_front();
                log.base += 1;
                if log.groups.values().any(|next| *next < log.base) {
                    tracing::warn!(
                        stream,
                        "in-process bus trimmed an entry a group had not consumed"
                    );
                }
            }
        }
        self.inner.wake.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Registers `group` on `stream` (at the oldest retained entry) if new.
    fn join(&self, stream: &str, group: &str) {
        let mut st = self.state();
        let log = st.streams.entry(stream.to_string()).or_default();
        let base = log.base;
        log.groups.entry(group.to_string()).or_insert(base);
    }

    /// The next entry for `group`, advancing the group's cursor.
    fn take(&self, stream: &str, group: &str) -> Option<Arc<Entry>> {
        let mut st = self.state();
        let log = st.streams.entry(stream.to_string()).or_default();
        let base = log.base;
        let next = log.groups.entry(group.to_string()).or_insert(base);
        if *next < base {
            *next = base;
        }
        let idx = usize::try_from(*next - base).ok()?;
        let entry = log.entries.get(idx)?.clone();
        *next += 1;
        Some(entry)
    }

    fn bury(&self, dead: DeadLetter) {
        tracing::warn!(stream = %dead.stream, group = %dead.group, event_id = %dead.event_id,
            reason = %dead.reason, "message moved to the in-process dead-letter list");
        self.state().dead.push(dead);
    }
}

impl Publisher for InProcessBus {
    fn publish<'a>(
        &'a self,
        stream: &'a str,
        event_id: &'a str,
        envelope: &'a [u8],
    ) -> BoxFuture<'a, Result<(), EventsError>> {
        self.push(stream, event_id, envelope);
        Box::pin(futures::future::ready(Ok(())))
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
            match bus.take(&opts.stream, &opts.group) {
                Some(entry) => deliver(&bus, &opts, handler.as_ref(), &entry, &shutdown).await,
                None => {
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return,
                        changed = wake.changed() => {
                            if changed.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        }
    })
}

async fn deliver(
    bus: &InProcessBus,
    opts: &ConsumerOptions,
    handler: &dyn EventHandler,
    entry: &Entry,
    shutdown: &CancellationToken,
) {
    let dead = |reason: String, deliveries: u64| DeadLetter {
        stream: opts.stream.clone(),
        group: opts.group.clone(),
        event_id: entry.event_id.clone(),
        envelope: entry.envelope.clone(),
        reason,
        deliveries,
    };
    let env = match EventEnvelope::decode(entry.envelope.as_slice()) {
        Ok(env) => env,
        Err(e) => return bus.bury(dead(format!("undecodable envelope: {e}"), 0)),
    };
    let max = opts.max_deliveries.max(1);
    let mut backoff = Backoff::new(
        Duration::from_millis(50),
        opts.claim_idle.max(Duration::from_millis(50)),
    );
    for attempt in 1..=max {
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
            Ok(()) => return,
            Err(HandlerError::Permanent(msg)) => return bus.bury(dead(msg, attempt)),
            Err(HandlerError::Retry(msg)) if attempt == max => {
                span.in_scope(|| tracing::warn!(error = %msg, "event handler failed"));
                return bus.bury(dead(
                    format!("delivered {attempt} times, more than max_deliveries {max}: {msg}"),
                    attempt,
                ));
            }
            Err(HandlerError::Retry(msg)) => {
                let delay = backoff.next_delay();
                span.in_scope(|| {
                    tracing::warn!(error = %msg, retry_in_ms = delay.as_millis() as u64, "event handler failed; retrying")
                });
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => {
                        tracing::warn!(event_id = %env.event_id, "shutdown while retrying; in-process event dropped");
                        return;
                    }
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// The bus a service runs on, so wiring is one code path: Redis Streams in
/// production, the in-process bus in embedded mode.
#[derive(Clone)]
pub enum EventBus {
    Redis {
        client: redis::Client,
        publisher: RedisPublisher,
    },
    InProcess(InProcessBus),
}

impl EventBus {
    /// Redis at `url` (connected lazily, so this works while Redis is down);
    /// streams prefixed with `namespace`, trimmed to about `max_len` entries.
    pub fn redis(url: &str, namespace: &str, max_len: usize) -> Result<Self, EventsError> {
        Ok(EventBus::Redis {
            client: redis::Client::open(url)?,
            publisher: RedisPublisher::from_url(url, namespace, max_len)?,
        })
    }

    pub fn in_process() -> Self {
        EventBus::InProcess(InProcessBus::new())
    }

    /// Redis when `redis.url` is set, else in-process (embedded mode).
    pub fn from_settings(settings: &retention_config::Settings) -> Result<Self, EventsError> {
        match settings.redis_url() {
            Some(url) => Self::redis(
                url,
                &settings.redis.namespace,
                settings.events.stream_max_len as usize,
            ),
            None => Ok(Self::in_process()),
        }
    }

    /// What the [`Relay`](crate::Relay) publishes through.
    pub fn publisher(&self) -> Arc<dyn Publisher> {
        match self {
            EventBus::Redis { publisher, .. } => Arc::new(publisher.clone()),
            EventBus::InProcess(bus) => Arc::new(bus.clone()),
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
