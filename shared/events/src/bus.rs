//! The in-process bus for embedded mode (no Redis).
//!
//! The bus holds an entry until every consumer group of its stream has applied
//! it, and takes no more than `max_len` such entries per stream: a relay that
//! finds no room leaves its rows in the outbox (backpressure instead of loss).
//! Nothing in memory is durable, so the relay marks an outbox row published only
//! once every group applied its entry ([`Publisher::take_settled`]); after a
//! crash the row goes out again and the consumers' inbox drops the repeat.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::EventsError;
use crate::publisher::{GroupLag, OutgoingEvent, Publisher, Room};

/// Entries per stream some group has not applied yet, by default.
pub(crate) const DEFAULT_MAX_LEN: usize = 10_000;

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

pub(crate) struct Entry {
    pub(crate) event_id: String,
    pub(crate) envelope: Vec<u8>,
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
    /// Handed out and not applied yet.
    fn pending(&self) -> u64 {
        self.next
            .saturating_sub(self.applied)
            .saturating_sub(self.done.len() as u64)
    }

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
                pending: c.pending(),
            })
            .max_by(|a, b| a.lag.cmp(&b.lag).then_with(|| b.group.cmp(&a.group)))
    }
}

/// A dead letter as the bus keeps it: numbered (in burial order) and timed, so
/// an operator can page through, replay or discard it.
#[derive(Debug, Clone)]
pub(crate) struct Buried {
    pub(crate) seq: u64,
    pub(crate) at: chrono::DateTime<chrono::Utc>,
    pub(crate) letter: DeadLetter,
}

#[derive(Default)]
struct BusState {
    streams: HashMap<String, StreamLog>,
    dead: Vec<Buried>,
    /// The number the next dead letter gets.
    next_dead: u64,
}

pub(crate) struct BusInner {
    state: Mutex<BusState>,
    /// Bumped on every change; idle consumers and publishers waiting for room
    /// wait for a change.
    pub(crate) wake: watch::Sender<u64>,
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
    pub(crate) inner: Arc<BusInner>,
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
        self.state().dead.iter().map(|b| b.letter.clone()).collect()
    }

    /// Up to `max` dead letters of `group` on `streams`, oldest first, numbered
    /// after `after` (see [`DeadLetters`](crate::DeadLetters)).
    pub(crate) fn buried(
        &self,
        group: &str,
        streams: &[String],
        after: Option<u64>,
        max: usize,
    ) -> Vec<Buried> {
        self.state()
            .dead
            .iter()
            .filter(|b| after.is_none_or(|a| b.seq > a))
            .filter(|b| b.letter.group == group && streams.contains(&b.letter.stream))
            .take(max)
            .cloned()
            .collect()
    }

    /// The dead letter numbered `seq`, if it is `group`'s on `stream`.
    pub(crate) fn buried_one(&self, group: &str, stream: &str, seq: u64) -> Option<Buried> {
        self.state()
            .dead
            .iter()
            .find(|b| b.seq == seq && b.letter.group == group && b.letter.stream == stream)
            .cloned()
    }

    /// Removes the dead letter numbered `seq` if it is `group`'s on `stream`,
    /// and appends `requeue` (an envelope) to `stream` in the same step, so two
    /// removals of one dead letter never both succeed.
    pub(crate) fn unbury(
        &self,
        group: &str,
        stream: &str,
        seq: u64,
        requeue: Option<Vec<u8>>,
    ) -> Option<DeadLetter> {
        let removed = {
            let mut st = self.state();
            let idx = st.dead.iter().position(|b| {
                b.seq == seq && b.letter.group == group && b.letter.stream == stream
            })?;
            let buried = st.dead.remove(idx);
            if let Some(envelope) = requeue {
                // Back on the stream at once, past the bound if need be: one
                // entry, asked for by an operator.
                let log = st.streams.entry(stream.to_string()).or_default();
                log.entries.push_back(Arc::new(Entry {
                    event_id: buried.letter.event_id.clone(),
                    envelope,
                    origin: None,
                }));
                log.trim(self.inner.max_len);
            }
            buried.letter
        };
        self.changed();
        Some(removed)
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
                pending: c.pending(),
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
    pub(crate) fn join(&self, stream: &str, group: &str) {
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
    pub(crate) fn take_many(
        &self,
        stream: &str,
        group: &str,
        max: usize,
    ) -> Vec<(u64, Arc<Entry>)> {
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
    pub(crate) fn complete(&self, stream: &str, group: &str, offset: u64) {
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

    pub(crate) fn bury(&self, dead: DeadLetter) {
        tracing::warn!(stream = %dead.stream, group = %dead.group, event_id = %dead.event_id,
            reason = %dead.reason, "message moved to the in-process dead-letter list");
        let mut st = self.state();
        let seq = st.next_dead;
        st.next_dead += 1;
        st.dead.push(Buried {
            seq,
            at: chrono::Utc::now(),
            letter: dead,
        });
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
