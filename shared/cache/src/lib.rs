//! Cache-aside for hot reads (DESIGN §6, §7): Redis shared by all replicas, with a
//! bounded in-process tier in front of it (the near cache), which is also the only
//! tier in embedded mode.
//!
//! A Redis outage never surfaces as an error. Every Redis call is bounded by the
//! connection and response timeouts, and a failure opens a breaker ("down until")
//! that skips Redis entirely for a moment, so during an outage a call costs at most
//! one timeout per breaker window instead of one per call; reads fall through to the
//! loader (the database). Invalidations that cannot reach Redis are remembered and
//! replayed by a background task once it answers, so a stale entry cannot outlive
//! the outage.
//!
//! # The near cache and its coherence
//!
//! With Redis configured, a read is answered from process memory when it can (no
//! round trip), else from Redis, else by the loader; what Redis or the loader
//! returns is kept near for at most [`CacheConfig::near_ttl`] (5 s by default).
//! Replicas keep their near caches coherent over a Redis pub/sub channel,
//! `<namespace>:near:invalidate`, that every replica's cache subscribes to on a
//! connection of its own:
//!
//! - [`Cache::invalidate`] (called after the database commit) removes the key
//!   from this process, then sends `DEL key` and `PUBLISH` of the key in one
//!   pipeline. Redis answers with the number of subscribed replicas (this one
//!   included); each drops the key from its near cache (and marks an in-flight
//!   load of it stale) and acknowledges on the invalidator's own channel.
//!   `invalidate` returns once every replica Redis counted has acknowledged, or
//!   after `response_timeout` at the latest (acknowledgements are sent once per
//!   burst of messages and origin; [`Cache::invalidate_many`] sends a page of
//!   keys in one pipeline with one wait). So when it returns normally, **no
//!   replica holds the old value in its near cache any more**: a read there
//!   that starts afterwards goes to Redis, which the DEL emptied, or to the
//!   database. A load on another replica that read the database before the
//!   commit and stores after the DEL can put the old value back into Redis:
//!   when the invalidation reaches that replica, the load is marked stale if
//!   still in flight, and a value it stored in Redis within the last `near_ttl`
//!   (1 s at least) is taken back (DEL and publish again), so such a value
//!   lives in Redis only until the invalidation has reached its writer.
//!   The wait needs this replica's own subscription to receive the
//!   acknowledgements; while it is down, the others are told but not waited for.
//! - A replica that cannot be told has no near cache to serve from. The near
//!   cache is read and filled only while its subscription is live. When the
//!   subscription connection fails (the stream ends, or a heartbeat PING every
//!   second gets no answer within `response_timeout`), the near cache is cleared
//!   at once and bypassed (reads go to Redis or the database) until the replica
//!   has subscribed again; anything published meanwhile therefore cannot be
//!   missed. A fill races no invalidation: a value read before an invalidation
//!   arrived is not kept (an epoch of the key's shard, taken before the read,
//!   must still hold).
//! - What is not guaranteed: if Redis cannot be reached by the invalidating
//!   replica, or an acknowledgement does not come within `response_timeout` (a
//!   replica stalled but still connected), `invalidate` still returns (the
//!   database change is committed and cannot be undone); the delete and the
//!   publish are then replayed once Redis answers, and every near entry expires
//!   after `near_ttl` regardless, which bounds how long such a replica can serve
//!   the old value. Both cases are counted (`redis_errors`, `unacknowledged`).
//!
//! The near cache holds at most `local_capacity` entries and `local_max_bytes`
//! bytes of keys and values; when full, expired entries go first, then the one
//! closest to expiry (with the near TTL shared by all, the oldest fill).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Notify;

#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// None: in-process only (embedded mode).
    pub redis_url: Option<String>,
    /// Key prefix, e.g. "retention" or a per-test namespace, so suites and tests
    /// sharing one Redis cannot collide.
    pub namespace: String,
    /// TTL when a caller gives none: every entry expires.
    pub default_ttl: Duration,
    /// Bounds each connection attempt, so an unreachable Redis costs milliseconds.
    pub connect_timeout: Duration,
    /// Bounds each command, so a hung Redis costs milliseconds. Also the longest
    /// `invalidate` waits for other replicas' acknowledgements.
    pub response_timeout: Duration,
    /// Most entries the in-process tier (the near cache) holds (0 disables it).
    pub local_capacity: usize,
    /// Most bytes (keys and values) the in-process tier holds.
    pub local_max_bytes: usize,
    /// With Redis: the longest a value stays in the near cache, the second line
    /// of defence should an invalidation be lost (module docs).
    pub near_ttl: Duration,
}

impl CacheConfig {
    /// Redis from `redis.url` (none: in-process only), keys under `redis.namespace`
    /// or "retention".
    pub fn from_settings(s: &retention_config::Settings) -> Self {
        CacheConfig {
            redis_url: s.redis_url().map(String::from),
            namespace: if s.redis.namespace.is_empty() {
                "retention".into()
            } else {
                s.redis.namespace.clone()
            },
            default_ttl: Duration::from_secs(s.cache.ttl_secs),
            connect_timeout: Duration::from_millis(s.redis.connect_timeout_ms),
            response_timeout: Duration::from_millis(s.redis.response_timeout_ms),
            local_capacity: s.cache.local_capacity,
            ..CacheConfig::default()
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            redis_url: None,
            namespace: "retention".into(),
            default_ttl: Duration::from_secs(300),
            connect_timeout: Duration::from_millis(250),
            response_timeout: Duration::from_millis(250),
            local_capacity: 10_000,
            local_max_bytes: 64 << 20,
            near_ttl: Duration::from_secs(5),
        }
    }
}

/// Counters since start, so tests and metrics can tell hits from loads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered by a cache tier.
    pub hits: u64,
    /// Of the hits, those answered from process memory with Redis configured
    /// (the near cache), without a round trip.
    pub near_hits: u64,
    /// Reads no tier could answer.
    pub misses: u64,
    /// Loader runs (one per single-flight group).
    pub loads: u64,
    /// Failed or timed-out Redis calls (each one opened the breaker).
    pub redis_errors: u64,
    /// Invalidations published without every subscribed replica acknowledging
    /// within `response_timeout`.
    pub unacknowledged: u64,
    /// Times the invalidation subscription was lost (each cleared the near cache).
    pub subscription_losses: u64,
}

/// How long the breaker skips Redis after a failure.
const BREAKER_OPEN: Duration = Duration::from_millis(500);
/// Longest TTL honoured: longer ones overflow Redis expiry arithmetic and
/// `Instant`, and a cache entry living a year is a bug anyway.
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Keys per DEL when replaying invalidations.
const REPLAY_CHUNK: usize = 500;
/// Pause between replay attempts when the breaker gives no better hint.
const REPLAY_MIN_PAUSE: Duration = Duration::from_millis(50);
/// How often the subscription connection is checked with a PING.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Pause before subscribing again after the subscription failed.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_millis(200);
/// Most stores remembered for taking back (see `Inner::recent_stores`).
const RECENT_STORES_MAX: usize = 100_000;
/// Most subscription messages applied before their acknowledgements are sent.
const ACK_BATCH: usize = 1_000;

type Bytes = Arc<[u8]>;
/// A load's outcome, shared by all waiters of one flight.
type Loaded = Result<Option<Bytes>, String>;

/// Poisoning only means another thread panicked mid-update of plain maps; the
/// data is still usable, and a cache must not turn that into more panics.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct LocalEntry {
    value: Bytes,
    expires: Instant,
    seq: u64,
}

/// Bounded in-process tier with per-entry TTL. Expired entries go first; when
/// still full (entries or bytes), the entry closest to expiry is evicted (with
/// equal TTLs that is the oldest). Both are O(log n) thanks to the expiry index.
struct LocalTier {
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    entries: HashMap<String, LocalEntry>,
    by_expiry: BTreeMap<(Instant, u64), String>,
    seq: u64,
}

fn entry_size(key: &str, value: &[u8]) -> usize {
    key.len() + value.len()
}

impl LocalTier {
    fn new(capacity: usize, max_bytes: usize) -> Self {
        LocalTier {
            capacity,
            max_bytes,
            bytes: 0,
            entries: HashMap::new(),
            by_expiry: BTreeMap::new(),
            seq: 0,
        }
    }

    fn get(&mut self, key: &str, now: Instant) -> Option<Bytes> {
        let entry = self.entries.get(key)?;
        if entry.expires > now {
            return Some(entry.value.clone());
        }
        self.remove(key);
        None
    }

    fn insert(&mut self, key: &str, value: Bytes, ttl: Duration, now: Instant) {
        self.remove(key);
        let size = entry_size(key, &value);
        if self.capacity == 0 || size > self.max_bytes {
            return;
        }
        while let Some(entry) = self.by_expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let victim = entry.remove();
            self.forget(&victim);
        }
        while self.entries.len() >= self.capacity || self.bytes + size > self.max_bytes {
            match self.by_expiry.pop_first() {
                Some((_, victim)) => self.forget(&victim),
                None => break,
            }
        }
        self.seq += 1;
        let expires = now.checked_add(ttl).unwrap_or(now);
        self.by_expiry.insert((expires, self.seq), key.to_string());
        self.bytes += size;
        self.entries.insert(
            key.to_string(),
            LocalEntry {
                value,
                expires,
                seq: self.seq,
            },
        );
    }

    /// Drops `key` from the map and the byte count (its index entry is gone).
    fn forget(&mut self, key: &str) {
        if let Some(e) = self.entries.remove(key) {
            self.bytes -= entry_size(key, &e.value);
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(e) = self.entries.remove(key) {
            self.bytes -= entry_size(key, &e.value);
            self.by_expiry.remove(&(e.expires, e.seq));
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.by_expiry.clear();
        self.bytes = 0;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The in-process tier and what says whether it may be used.
struct Near {
    tier: LocalTier,
    /// Whether the tier may be read and filled: always without Redis; with
    /// Redis only while the invalidation subscription is live.
    live: bool,
    /// Per shard of keys (by hash), bumped by every invalidation of a key of
    /// the shard seen here: a fill read before it must not be kept. Sharded so
    /// that a burst of invalidations of other keys (a scoring page) does not
    /// keep every fill out.
    epochs: Vec<u64>,
    /// Bumped whenever the whole tier is cleared (subscription gained or lost).
    generation: u64,
}

/// Shards of [`Near::epochs`].
const EPOCH_SHARDS: usize = 256;

/// What a fill must find unchanged to be kept: (generation, shard epoch).
type Epoch = (u64, u64);

fn shard(key: &str) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault};
    let h =
        BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(key);
    (h % EPOCH_SHARDS as u64) as usize
}

impl Near {
    fn epoch(&self, key: &str) -> Epoch {
        (self.generation, self.epochs[shard(key)])
    }

    fn invalidated(&mut self, key: &str) {
        self.epochs[shard(key)] += 1;
        self.tier.remove(key);
    }

    fn clear(&mut self) {
        self.tier.clear();
        self.generation += 1;
    }
}

/// Acknowledgements of one published invalidation.
#[derive(Default)]
struct AckWait {
    got: AtomicUsize,
    /// Set when the subscription that receives acknowledgements was lost.
    abandoned: AtomicBool,
    notify: Notify,
}

/// One in-progress load shared by concurrent misses on a key.
struct Flight {
    id: u64,
    result: Shared<BoxFuture<'static, Loaded>>,
    /// Set by `invalidate`: the load may have read pre-commit data, so its
    /// result must not be cached.
    stale: Arc<AtomicBool>,
}

struct Inner {
    cfg: CacheConfig,
    redis: Option<ConnectionManager>,
    /// This cache's name on the invalidation channel, unique per process and cache.
    id: String,
    /// Breaker: Redis is skipped until this instant.
    down_until: Mutex<Option<Instant>>,
    /// Whether the last Redis call failed, to log transitions rather than every call.
    down: AtomicBool,
    near: Mutex<Near>,
    /// Woken when the subscription goes live or is lost.
    live_changed: Notify,
    /// Published invalidations awaiting acknowledgements, by sequence number.
    acks: Mutex<HashMap<u64, Arc<AckWait>>>,
    next_seq: AtomicU64,
    /// Full keys whose DEL has not reached Redis yet, with the generation of the
    /// latest invalidation (a replay only clears the generation it sent).
    pending: Mutex<HashMap<String, u64>>,
    pending_gen: AtomicU64,
    replaying: AtomicBool,
    flights: Mutex<HashMap<String, Flight>>,
    next_flight: AtomicU64,
    hits: AtomicU64,
    near_hits: AtomicU64,
    misses: AtomicU64,
    loads: AtomicU64,
    redis_errors: AtomicU64,
    unacknowledged: AtomicU64,
    subscription_losses: AtomicU64,
    /// Keys this replica stored in Redis lately, and when: if another
    /// replica's invalidation of one arrives afterwards, the value stored may
    /// predate that replica's commit (its load read the database first, its
    /// SET landed after the DEL), so it is taken back.
    recent_stores: Mutex<HashMap<String, Instant>>,
}

/// Two-tier cache; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("namespace", &self.inner.cfg.namespace)
            .field("redis_configured", &self.inner.redis.is_some())
            .field("redis_available", &self.redis_available())
            .field("near_cache_live", &self.near_cache_live())
            .field("stats", &self.stats())
            .finish()
    }
}

/// A unique id for a cache instance: process id, start time, a counter.
fn instance_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{:x}.{:x}.{}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Cache {
    /// Never fails: with Redis unreachable (or misconfigured) it logs a warning
    /// and serves from the loader; the connection is retried on later calls, at
    /// most once per breaker window. With Redis answering, it returns once the
    /// near cache's invalidation subscription is live (or after the connect and
    /// response timeouts; the near cache is bypassed until it is).
    pub async fn connect(cfg: CacheConfig) -> Cache {
        let mut client = None;
        let redis = match cfg.redis_url.as_deref() {
            None => None,
            // The connection manager spawns its reconnect tasks on Tokio.
            Some(_) if tokio::runtime::Handle::try_current().is_err() => {
                tracing::warn!("no Tokio runtime; caching in process only");
                None
            }
            Some(url) => {
                let manager = redis::Client::open(url).and_then(|c| {
                    client = Some(c.clone());
                    ConnectionManager::new_lazy_with_config(c, manager_config(&cfg))
                });
                match manager {
                    Ok(m) => Some(m),
                    Err(e) => {
                        // The URL may carry a password: log the error only.
                        tracing::warn!(error = %e, "invalid Redis configuration; caching in process only");
                        client = None;
                        None
                    }
                }
            }
        };
        let cache = Cache::build(cfg, redis);
        if cache.inner.redis.is_some() {
            let ping = cache
                .inner
                .redis(|mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await })
                .await;
            if ping.is_some() {
                tracing::info!(namespace = %cache.inner.cfg.namespace, "Redis cache connected");
            } else {
                tracing::warn!(
                    "Redis unreachable at start; serving from the database until it answers"
                );
            }
            if let Some(client) = client
                && cache.inner.cfg.local_capacity > 0
            {
                tokio::spawn(Inner::subscribe(Arc::downgrade(&cache.inner), client));
                if ping.is_some() {
                    cache.wait_near_live(cache.inner.op_deadline()).await;
                }
            }
        }
        cache
    }

    /// Embedded mode: no Redis at all, entries live in this process only.
    pub fn in_process(namespace: impl Into<String>, default_ttl: Duration) -> Cache {
        Cache::build(
            CacheConfig {
                namespace: namespace.into(),
                default_ttl,
                ..CacheConfig::default()
            },
            None,
        )
    }

    fn build(cfg: CacheConfig, redis: Option<ConnectionManager>) -> Cache {
        Cache {
            inner: Arc::new(Inner {
                near: Mutex::new(Near {
                    tier: LocalTier::new(cfg.local_capacity, cfg.local_max_bytes),
                    live: redis.is_none(),
                    epochs: vec![0; EPOCH_SHARDS],
                    generation: 0,
                }),
                cfg,
                redis,
                id: instance_id(),
                down_until: Mutex::new(None),
                down: AtomicBool::new(false),
                live_changed: Notify::new(),
                acks: Mutex::new(HashMap::new()),
                next_seq: AtomicU64::new(0),
                pending: Mutex::new(HashMap::new()),
                pending_gen: AtomicU64::new(0),
                replaying: AtomicBool::new(false),
                flights: Mutex::new(HashMap::new()),
                next_flight: AtomicU64::new(0),
                hits: AtomicU64::new(0),
                near_hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                loads: AtomicU64::new(0),
                redis_errors: AtomicU64::new(0),
                unacknowledged: AtomicU64::new(0),
                subscription_losses: AtomicU64::new(0),
                recent_stores: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The actual Redis key for `key` (namespace + ":" + key).
    pub fn full_key(&self, key: &str) -> String {
        self.inner.full_key(key)
    }

    /// Whether Redis is configured and the breaker is closed (or about to let a
    /// probe through). False means calls are being served without Redis.
    pub fn redis_available(&self) -> bool {
        self.inner.redis.is_some() && !self.inner.breaker_open()
    }

    /// Whether the in-process tier is in use: always without Redis; with Redis,
    /// while the invalidation subscription is live.
    pub fn near_cache_live(&self) -> bool {
        lock(&self.inner.near).live
    }

    /// Waits up to `timeout` for the near cache to be live; true if it is.
    pub async fn wait_near_live(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let changed = self.inner.live_changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if self.near_cache_live() {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    pub fn stats(&self) -> CacheStats {
        let i = &self.inner;
        CacheStats {
            hits: i.hits.load(Ordering::Relaxed),
            near_hits: i.near_hits.load(Ordering::Relaxed),
            misses: i.misses.load(Ordering::Relaxed),
            loads: i.loads.load(Ordering::Relaxed),
            redis_errors: i.redis_errors.load(Ordering::Relaxed),
            unacknowledged: i.unacknowledged.load(Ordering::Relaxed),
            subscription_losses: i.subscription_losses.load(Ordering::Relaxed),
        }
    }
    /// Exports this cache's hits and misses as `retention.cache.requests`
    /// labelled `cache = name`, and its near cache's hits, late
    /// acknowledgements and lost subscriptions as `retention.cache.near_events`,
    /// read at each collection (a stopped cache reports nothing more).
    pub fn report_metrics(&self, name: &'static str) {
        use retention_telemetry::metrics::Attribute;
        let inner = Arc::downgrade(&self.inner);
        // The SDK keeps the callback for as long as the meter provider lives.
        let _registered = retention_telemetry::metrics::meter()
            .u64_observable_counter("retention.cache.requests")
            .with_unit("{request}")
            .with_description("Cache reads, by cache and result (hit or miss)")
            .with_callback(move |observer| {
                let Some(inner) = inner.upgrade() else { return };
                let hits = inner.hits.load(Ordering::Relaxed);
                let misses = inner.misses.load(Ordering::Relaxed);
                observer.observe(
                    hits,
                    &[
                        Attribute::new("cache", name),
                        Attribute::new("result", "hit"),
                    ],
                );
                observer.observe(
                    misses,
                    &[
                        Attribute::new("cache", name),
                        Attribute::new("result", "miss"),
                    ],
                );
            })
            .build();
        let inner = Arc::downgrade(&self.inner);
        let _registered = retention_telemetry::metrics::meter()
            .u64_observable_counter("retention.cache.near_events")
            .with_unit("{event}")
            .with_description(
                "Near cache: hits answered from memory, invalidations not acknowledged \
                 by every replica in time, and subscriptions lost (each clearing it)",
            )
            .with_callback(move |observer| {
                let Some(inner) = inner.upgrade() else { return };
                for (event, counter) in [
                    ("hit", &inner.near_hits),
                    ("unacknowledged", &inner.unacknowledged),
                    ("subscription_lost", &inner.subscription_losses),
                ] {
                    observer.observe(
                        counter.load(Ordering::Relaxed),
                        &[
                            Attribute::new("cache", name),
                            Attribute::new("event", event),
                        ],
                    );
                }
            })
            .build();
    }

    /// Reads the near cache, then Redis when configured and answering (without
    /// Redis: the in-process tier only).
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let found = self.inner.lookup(key).await;
        let counter = if found.is_some() {
            &self.inner.hits
        } else {
            &self.inner.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found.map(|v| v.to_vec())
    }

    /// Stores with a TTL (`None`: the default one); no entry lives forever.
    pub async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) {
        let epoch = self.inner.epoch(key);
        self.inner.store(key, Arc::from(value), ttl, epoch).await;
    }

    /// Call after the database commit. Removes the entry from this process, from
    /// Redis and from every replica's near cache (module docs: returns once each
    /// subscribed replica acknowledged, or after `response_timeout`), and keeps
    /// an in-flight load from caching what it read before the commit. If Redis
    /// cannot be reached, the delete and its publication are replayed once it
    /// answers.
    pub async fn invalidate(&self, key: &str) {
        self.inner.forget_flight(key);
        self.inner.remove(key).await;
    }

    /// [`invalidate`](Self::invalidate) of many keys (e.g. a page of scored
    /// customers) in one round trip and one wait for acknowledgements.
    pub async fn invalidate_many<K: AsRef<str>>(&self, keys: &[K]) {
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        for key in &keys {
            self.inner.forget_flight(key);
        }
        self.inner.remove_many(&keys).await;
    }

    /// Cache-aside with single-flight: concurrent misses on one key in this
    /// process run `load` once and share its result (hence the `String` error,
    /// which every waiter can get a copy of). `None` results are not cached.
    /// Redis errors never surface: they fall back to the loader.
    pub async fn get_or_load<F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        load: F,
    ) -> Result<Option<Vec<u8>>, String>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<Vec<u8>>, String>> + Send + 'static,
    {
        if let Some(v) = self.inner.lookup(key).await {
            self.inner.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(v.to_vec()));
        }
        self.inner.misses.fetch_add(1, Ordering::Relaxed);
        let result = {
            let mut flights = lock(&self.inner.flights);
            match flights.get(key) {
                Some(f) => f.result.clone(),
                None => {
                    let flight = self.new_flight(key, ttl, load);
                    let result = flight.result.clone();
                    flights.insert(key.to_string(), flight);
                    result
                }
            }
        };
        result.await.map(|v| v.map(|b| b.to_vec()))
    }

    fn new_flight<F, Fut>(&self, key: &str, ttl: Option<Duration>, load: F) -> Flight
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<Vec<u8>>, String>> + Send + 'static,
    {
        let id = self.inner.next_flight.fetch_add(1, Ordering::Relaxed);
        let stale = Arc::new(AtomicBool::new(false));
        // Taken before the load reads anything: an invalidation seen since
        // keeps the result out of the near cache.
        let epoch = self.inner.epoch(key);
        // Weak: the flight sits in the cache's own map, and must not keep it alive.
        let weak = Arc::downgrade(&self.inner);
        let key = key.to_string();
        let flag = stale.clone();
        let result = async move {
            if let Some(inner) = weak.upgrade() {
                inner.loads.fetch_add(1, Ordering::Relaxed);
            }
            let loaded: Loaded = load().await.map(|v| v.map(Bytes::from));
            if let Some(inner) = weak.upgrade() {
                if let Ok(Some(v)) = &loaded
                    && !flag.load(Ordering::Acquire)
                {
                    inner.store(&key, v.clone(), ttl, epoch).await;
                    // Invalidated while storing: take back what may be pre-commit data.
                    if flag.load(Ordering::Acquire) {
                        inner.remove(&key).await;
                    }
                }
                // Later misses start a fresh load (or hit what was just stored).
                let mut flights = lock(&inner.flights);
                if flights.get(&key).is_some_and(|f| f.id == id) {
                    flights.remove(&key);
                }
            }
            loaded
        }
        .boxed()
        .shared();
        Flight { id, result, stale }
    }
}

fn manager_config(cfg: &CacheConfig) -> ConnectionManagerConfig {
    // No retries inside the manager: the breaker is the retry policy, and a
    // retry loop would make a single call outlast the timeouts.
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(cfg.connect_timeout))
        .set_response_timeout(Some(cfg.response_timeout))
        .set_number_of_retries(0)
}

/// Replays pending invalidations when dropped armed: covers both a failed DEL
/// and a caller that was cancelled mid-DEL.
struct ReplayOnDrop<'a>(Option<&'a Arc<Inner>>);

impl Drop for ReplayOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            inner.ensure_replayer();
        }
    }
}

/// Forgets a published invalidation's acknowledgements when its wait ends
/// (returned, timed out or cancelled).
struct AckGuard<'a> {
    inner: &'a Inner,
    seq: u64,
}

impl Drop for AckGuard<'_> {
    fn drop(&mut self) {
        lock(&self.inner.acks).remove(&self.seq);
    }
}

/// An invalidation message: `<origin id> <sequence>\n<key>`.
fn invalidation_message(origin: &str, seq: u64, key: &str) -> String {
    format!("{origin} {seq}\n{key}")
}

fn parse_invalidation(payload: &[u8]) -> Option<(&str, u64, &str)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (head, key) = text.split_once('\n')?;
    let (origin, seq) = head.split_once(' ')?;
    Some((origin, seq.parse().ok()?, key))
}

impl Inner {
    fn full_key(&self, key: &str) -> String {
        format!("{}:{key}", self.cfg.namespace)
    }

    /// The channel every replica's near cache subscribes to.
    fn invalidation_channel(&self) -> String {
        format!("{}:near:invalidate", self.cfg.namespace)
    }

    /// The channel acknowledgements of `origin`'s invalidations go to.
    fn ack_channel(&self, origin: &str) -> String {
        format!("{}:near:ack:{origin}", self.cfg.namespace)
    }

    /// Clamped to (0, MAX_TTL]: Redis rejects zero and overflowing expiries.
    fn ttl(&self, ttl: Option<Duration>) -> Duration {
        ttl.unwrap_or(self.cfg.default_ttl)
            .clamp(Duration::from_millis(1), MAX_TTL)
    }

    fn breaker_open(&self) -> bool {
        lock(&self.down_until).is_some_and(|t| Instant::now() < t)
    }

    /// Time left before the breaker lets a call through.
    fn breaker_wait(&self) -> Duration {
        lock(&self.down_until)
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    }

    /// Breaker check. Once the open window has passed, the first caller probes
    /// and the window is extended for the probe's duration, so an outage costs
    /// one timeout per window, not one per concurrent caller.
    fn admit(&self) -> bool {
        let now = Instant::now();
        let mut down = lock(&self.down_until);
        match *down {
            None => true,
            Some(t) if now < t => false,
            Some(_) => {
                *down = Some(now + self.op_deadline());
                true
            }
        }
    }

    /// Outer bound on one call: (re)connecting plus the command. Redis's own
    /// timeouts should fire first; this guards against anything they miss.
    fn op_deadline(&self) -> Duration {
        self.cfg.connect_timeout + self.cfg.response_timeout
    }

    fn trip(&self, err: &dyn fmt::Display) {
        self.redis_errors.fetch_add(1, Ordering::Relaxed);
        *lock(&self.down_until) = Some(Instant::now() + BREAKER_OPEN);
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(error = %err, "Redis call failed; serving from the database while it is down");
        } else {
            tracing::debug!(error = %err, "Redis still failing");
        }
    }

    fn healthy(&self) {
        *lock(&self.down_until) = None;
        if self.down.swap(false, Ordering::AcqRel) {
            tracing::info!("Redis answers again; cache back in service");
        }
    }

    /// Runs one Redis operation within the timeouts; None when Redis is not
    /// configured, the breaker is open, or the call fails (which trips it).
    async fn redis<T, F, Fut>(&self, op: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.redis.as_ref()?;
        if !self.admit() {
            return None;
        }
        match tokio::time::timeout(self.op_deadline(), op(conn.clone())).await {
            Ok(Ok(v)) => {
                self.healthy();
                Some(v)
            }
            Ok(Err(e)) => {
                self.trip(&e);
                None
            }
            Err(_) => {
                self.trip(&"Redis call timed out");
                None
            }
        }
    }

    fn is_pending(&self, full: &str) -> bool {
        let pending = lock(&self.pending);
        !pending.is_empty() && pending.contains_key(full)
    }

    fn epoch(&self, key: &str) -> Epoch {
        lock(&self.near).epoch(key)
    }

    /// Keeps `value` near unless the tier is not live or an invalidation (or a
    /// lost subscription) was seen since `epoch` was taken: the value may then
    /// predate it.
    fn fill_near(&self, key: &str, value: Bytes, ttl: Duration, epoch: Epoch) {
        let mut near = lock(&self.near);
        if near.live && near.epoch(key) == epoch {
            near.tier.insert(key, value, ttl, Instant::now());
        }
    }

    /// Drops `key` from this process's tier and invalidates fills in progress.
    fn forget_near(&self, key: &str) {
        lock(&self.near).invalidated(key);
    }

    /// Marks an in-flight load of `key` stale: it may have read pre-commit data.
    fn forget_flight(&self, key: &str) {
        if let Some(flight) = lock(&self.flights).remove(key) {
            flight.stale.store(true, Ordering::Release);
        }
    }

    // Tiers: the near cache first (always without Redis; with Redis only while
    // the invalidation subscription is live, so that another replica's
    // invalidation cannot be missed), then Redis unless a delete of the key is
    // still pending (Redis may then hold a stale value).
    async fn lookup(&self, key: &str) -> Option<Bytes> {
        let epoch = {
            let mut near = lock(&self.near);
            if near.live
                && let Some(v) = near.tier.get(key, Instant::now())
            {
                if self.redis.is_some() {
                    self.near_hits.fetch_add(1, Ordering::Relaxed);
                }
                return Some(v);
            }
            near.epoch(key)
        };
        self.redis.as_ref()?;
        let full = self.full_key(key);
        if self.is_pending(&full) {
            return None;
        }
        let found = self
            .redis(|mut c| async move { c.get::<_, Option<Vec<u8>>>(full).await })
            .await
            .flatten()
            .map(Bytes::from)?;
        self.fill_near(key, found.clone(), self.cfg.near_ttl, epoch);
        Some(found)
    }

    /// Stores in Redis and near; `epoch` was taken before `value` was read.
    async fn store(&self, key: &str, value: Bytes, ttl: Option<Duration>, epoch: Epoch) {
        let ttl = self.ttl(ttl);
        if self.redis.is_none() {
            lock(&self.near)
                .tier
                .insert(key, value, ttl, Instant::now());
            return;
        }
        let full = self.full_key(key);
        let generation = lock(&self.pending).get(&full).copied();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let key_for_set = full.clone();
        let bytes = value.clone();
        let stored = self
            .redis(|mut c| async move { c.pset_ex::<_, _, ()>(key_for_set, &bytes[..], ms).await })
            .await;
        if stored.is_some() {
            self.note_store(key);
            // The new value supersedes a pending delete queued before it.
            if let Some(g) = generation {
                let mut pending = lock(&self.pending);
                if pending.get(&full) == Some(&g) {
                    pending.remove(&full);
                }
            }
        }
        // Even if Redis refused it: while the subscription is live, other
        // replicas' invalidations of the key still reach the near copy.
        self.fill_near(key, value, ttl.min(self.cfg.near_ttl), epoch);
    }

    /// Removes `key` from this process, Redis and the other replicas' near
    /// caches.
    async fn remove(self: &Arc<Self>, key: &str) {
        self.remove_many(&[key]).await;
    }

    /// Removes `keys` from this process, Redis and the other replicas' near
    /// caches: one pipeline (a DEL of them all, a PUBLISH per key) and one wait
    /// for the acknowledgements. The deletes are queued before they are sent,
    /// so neither a failure nor a cancelled caller can lose them.
    async fn remove_many(self: &Arc<Self>, keys: &[&str]) {
        if keys.is_empty() {
            return;
        }
        for key in keys {
            self.forget_near(key);
        }
        if self.redis.is_none() {
            return;
        }
        let fulls: Vec<String> = keys.iter().map(|k| self.full_key(k)).collect();
        let generation = self.pending_gen.fetch_add(1, Ordering::Relaxed);
        {
            let mut pending = lock(&self.pending);
            for full in &fulls {
                pending.insert(full.clone(), generation);
            }
        }
        let mut replay = ReplayOnDrop(Some(self));
        // Acknowledgements can only be received while our own subscription is
        // live; without it, the others are told but not waited for.
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let wait = if lock(&self.near).live {
            let w = Arc::new(AckWait::default());
            lock(&self.acks).insert(seq, w.clone());
            Some((w, AckGuard { inner: self, seq }))
        } else {
            None
        };
        let mut pipe = redis::pipe();
        pipe.del(&fulls).ignore();
        for key in keys {
            pipe.publish(
                self.invalidation_channel(),
                invalidation_message(&self.id, seq, key),
            );
        }
        let told = self
            .redis(|mut c| async move { pipe.query_async::<Vec<usize>>(&mut c).await })
            .await;
        let Some(receivers) = told else {
            return;
        };
        {
            let mut pending = lock(&self.pending);
            for full in &fulls {
                if pending.get(full) == Some(&generation) {
                    pending.remove(full);
                }
            }
        }
        replay.0 = None;
        if let Some((w, _guard)) = wait {
            self.await_acks(&w, receivers.iter().sum()).await;
        }
    }

    /// Waits until `expected` replicas acknowledged, the subscription is lost,
    /// or `response_timeout` passes (counted as unacknowledged).
    async fn await_acks(&self, w: &AckWait, expected: usize) {
        let all = async {
            loop {
                let changed = w.notify.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if w.got.load(Ordering::Acquire) >= expected || w.abandoned.load(Ordering::Acquire)
                {
                    return;
                }
                changed.await;
            }
        };
        if tokio::time::timeout(self.cfg.response_timeout, all)
            .await
            .is_err()
            || w.abandoned.load(Ordering::Acquire)
        {
            self.unacknowledged.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                expected,
                acknowledged = w.got.load(Ordering::Acquire),
                "not every replica acknowledged a cache invalidation; their near copies expire within the near TTL"
            );
        }
    }

    fn acknowledged(&self, seq: u64) {
        if let Some(w) = lock(&self.acks).get(&seq) {
            w.got.fetch_add(1, Ordering::AcqRel);
            w.notify.notify_waiters();
        }
    }

    /// An invalidation from any replica (this one included): drop the key and
    /// keep a load in progress from caching it. Returns the acknowledgement
    /// owed to another replica (origin, sequence number).
    fn on_invalidation<'a>(self: &Arc<Self>, payload: &'a [u8]) -> Option<(&'a str, u64)> {
        let Some((origin, seq, key)) = parse_invalidation(payload) else {
            // Unreadable: the key is unknown, so forget everything.
            lock(&self.near).clear();
            return None;
        };
        if origin == self.id {
            // Dropped here before it was sent; what was filled since is newer.
            self.acknowledged(seq);
            return None;
        }
        self.forget_flight(key);
        self.forget_near(key);
        if self.stored_lately(key) {
            let inner = self.clone();
            let key = key.to_string();
            tokio::spawn(async move { inner.remove(&key).await });
        }
        Some((origin, seq))
    }

    /// Remembers that `key` was just stored in Redis (see `recent_stores`).
    fn note_store(&self, key: &str) {
        let now = Instant::now();
        let window = self.recent_window();
        let mut recent = lock(&self.recent_stores);
        if recent.len() >= RECENT_STORES_MAX {
            recent.retain(|_, at| now.duration_since(*at) < window);
        }
        if recent.len() < RECENT_STORES_MAX {
            recent.insert(key.to_string(), now);
        }
    }

    /// Whether `key` was stored within the window (forgetting it: it is taken
    /// back once).
    fn stored_lately(&self, key: &str) -> bool {
        let mut recent = lock(&self.recent_stores);
        !recent.is_empty()
            && recent
                .remove(key)
                .is_some_and(|at| at.elapsed() < self.recent_window())
    }

    /// How long a store is suspect after it: a healthy subscription delivers
    /// an invalidation well within it, and near copies expire by then anyway.
    fn recent_window(&self) -> Duration {
        self.cfg.near_ttl.max(Duration::from_secs(1))
    }

    /// Sends acknowledgements, one message per origin (sequence numbers
    /// separated by spaces), in one pipeline, without holding up the caller.
    fn send_acks(self: &Arc<Self>, acks: HashMap<String, Vec<u64>>) {
        if acks.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for (origin, seqs) in acks {
            let list: Vec<String> = seqs.iter().map(u64::to_string).collect();
            pipe.publish(self.ack_channel(&origin), list.join(" "))
                .ignore();
        }
        let inner = self.clone();
        tokio::spawn(async move {
            inner
                .redis(|mut c| async move { pipe.query_async::<()>(&mut c).await })
                .await;
        });
    }

    fn on_ack(&self, payload: &[u8]) {
        let text = std::str::from_utf8(payload).unwrap_or_default();
        for seq in text.split(' ').filter_map(|s| s.parse().ok()) {
            self.acknowledged(seq);
        }
    }

    /// Applies one subscription message, noting any acknowledgement owed.
    fn on_message(
        self: &Arc<Self>,
        msg: &redis::Msg,
        channel: &str,
        acks: &mut HashMap<String, Vec<u64>>,
    ) {
        if msg.get_channel_name() == channel {
            if let Some((origin, seq)) = self.on_invalidation(msg.get_payload_bytes()) {
                acks.entry(origin.to_string()).or_default().push(seq);
            }
        } else {
            self.on_ack(msg.get_payload_bytes());
        }
    }

    /// Clears the near cache (anything in it may have missed an invalidation)
    /// and turns it on or off. Turning it off abandons acknowledgement waits,
    /// since acknowledgements arrive on the lost subscription.
    fn set_live(&self, live: bool) {
        {
            let mut near = lock(&self.near);
            near.clear();
            near.live = live;
        }
        if !live {
            for w in lock(&self.acks).values() {
                w.abandoned.store(true, Ordering::Release);
                w.notify.notify_waiters();
            }
        }
        self.live_changed.notify_waiters();
    }

    /// The near cache's subscription, for the life of the cache: subscribes to
    /// the invalidation channel and this cache's acknowledgement channel on a
    /// connection of its own, turns the near cache on, and applies messages
    /// until the connection fails or a heartbeat goes unanswered; then turns
    /// it off (cleared) and subscribes again.
    async fn subscribe(weak: Weak<Inner>, client: redis::Client) {
        loop {
            let (deadline, response_timeout, channels) = {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let channels = [inner.invalidation_channel(), inner.ack_channel(&inner.id)];
                (inner.op_deadline(), inner.cfg.response_timeout, channels)
            };
            let connected = tokio::time::timeout(deadline, async {
                let (mut sink, stream) = client.get_async_pubsub().await?.split();
                sink.subscribe(&channels).await?;
                redis::RedisResult::Ok((sink, stream))
            })
            .await;
            let (mut sink, mut stream) = match connected {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "near cache subscription failed");
                    tokio::time::sleep(RESUBSCRIBE_PAUSE).await;
                    continue;
                }
                Err(_) => {
                    tracing::debug!("near cache subscription timed out");
                    tokio::time::sleep(RESUBSCRIBE_PAUSE).await;
                    continue;
                }
            };
            match weak.upgrade() {
                Some(inner) => inner.set_live(true),
                None => return,
            }
            tracing::debug!("near cache subscribed to invalidations");
            let mut heartbeat = tokio::time::interval(HEARTBEAT);
            heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            heartbeat.tick().await;
            let lost = loop {
                tokio::select! {
                    msg = stream.next() => {
                        let Some(msg) = msg else {
                            break "connection closed";
                        };
                        let Some(inner) = weak.upgrade() else {
                            return;
                        };
                        // Applies what has already arrived too, so a burst of
                        // invalidations (a scoring page) costs one acknowledgement
                        // per origin rather than one per key.
                        let mut acks = HashMap::new();
                        inner.on_message(&msg, &channels[0], &mut acks);
                        let mut closed = false;
                        for _ in 0..ACK_BATCH {
                            match stream.next().now_or_never() {
                                Some(Some(msg)) => inner.on_message(&msg, &channels[0], &mut acks),
                                Some(None) => {
                                    closed = true;
                                    break;
                                }
                                None => break,
                            }
                        }
                        inner.send_acks(acks);
                        if closed {
                            break "connection closed";
                        }
                    }
                    _ = heartbeat.tick() => {
                        if weak.strong_count() == 0 {
                            return;
                        }
                        let ping = tokio::time::timeout(
                            response_timeout,
                            sink.ping::<redis::Value>(),
                        )
                        .await;
                        if !matches!(ping, Ok(Ok(_))) {
                            break "heartbeat unanswered";
                        }
                    }
                }
            };
            let Some(inner) = weak.upgrade() else {
                return;
            };
            inner.set_live(false);
            inner.subscription_losses.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                reason = lost,
                "near cache subscription lost; near cache cleared and bypassed until subscribed again"
            );
            drop(inner);
            tokio::time::sleep(RESUBSCRIBE_PAUSE).await;
        }
    }
    /// Starts the background replay of pending deletes unless one is running.
    fn ensure_replayer(self: &Arc<Self>) {
        if self.redis.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.replaying.swap(true, Ordering::AcqRel) {
            return;
        }
        runtime.spawn(Inner::replay(Arc::downgrade(self)));
    }

    /// Retries pending deletes until none is left, once per breaker window.
    /// Holds only a weak reference between attempts, so a dropped cache ends it.
    async fn replay(weak: Weak<Inner>) {
        loop {
            let pause = {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                if lock(&inner.pending).is_empty() {
                    inner.replaying.store(false, Ordering::Release);
                    // A delete queued between the check and the store found the
                    // flag still set and left it to us: carry on unless another
                    // replayer has taken over since.
                    if lock(&inner.pending).is_empty()
                        || inner.replaying.swap(true, Ordering::AcqRel)
                    {
                        return;
                    }
                }
                if inner.flush_pending().await {
                    Duration::ZERO
                } else {
                    inner.breaker_wait().max(REPLAY_MIN_PAUSE)
                }
            };
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }

    /// One attempt to send every pending delete; true when all went through.
    async fn flush_pending(&self) -> bool {
        let batch: Vec<(String, u64)> = lock(&self.pending)
            .iter()
            .map(|(k, g)| (k.clone(), *g))
            .collect();
        for chunk in batch.chunks(REPLAY_CHUNK) {
            // The delete and, for other replicas' near caches, the publication
            // (acknowledgements are not waited for: nobody is waiting).
            let prefix = format!("{}:", self.cfg.namespace);
            let mut pipe = redis::pipe();
            pipe.del(chunk.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
                .ignore();
            for (full, _) in chunk {
                let key = full.strip_prefix(&prefix).unwrap_or(full);
                let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
                pipe.publish(
                    self.invalidation_channel(),
                    invalidation_message(&self.id, seq, key),
                )
                .ignore();
            }
            let deleted = self
                .redis(|mut c| async move { pipe.query_async::<()>(&mut c).await })
                .await;
            if deleted.is_none() {
                return false;
            }
            let mut pending = lock(&self.pending);
            for (key, generation) in chunk {
                if pending.get(key) == Some(generation) {
                    pending.remove(key);
                }
            }
            tracing::debug!(
                keys = chunk.len(),
                "replayed invalidations held during a Redis outage"
            );
        }
        true
    }
}

#[cfg(test)]
mod tests;
